//! Authentication and authorization of every keyward.v1 RPC, in one place: [`TABLE`] names, for
//! each RPC, the permission it needs and the request field whose resource it is checked against;
//! [`admit`] authenticates the call (bearer API key, else a mapped client certificate) and checks
//! that permission (and any second resource the request names) before any use case runs. A
//! handler gets its [`Ctx`] only from [`admit`], and [`admit`] takes only requests that have an
//! entry ([`Guarded`]), so an RPC without an entry does not compile; the end-to-end suite also
//! fails when a method of the descriptor set is missing from [`TABLE`].
//!
//! Scopes: a field naming `groups/{g}` or anything below it is checked in group `g`;
//! `principals/{p}` (and below) against principal `p` (a principal reads itself and manages its
//! own API keys); an empty field, or one that names nothing Keyward knows, against the account
//! (only account roles pass: an unparseable name gets PERMISSION_DENIED from a caller without
//! one, INVALID_ARGUMENT from one with one). Field `*` marks listings open to every
//! authenticated caller, which answer only what the caller may read (`groups/-` likewise).
//! PERMISSION_DENIED is decided before the resource is looked up (AIP-211): a caller without the
//! permission cannot tell whether a resource exists.

use keyward_proto::v1 as pb;
use keyward_shared::domain::{CertificateIdentity, GroupId, Permission, PrincipalId, Scope};
use keyward_shared::{Credentials, Ctx, Keyward};
use tonic::{Request, Status};

use crate::status::{code_name, to_status};

/// One RPC's entry: its full method name, the permission it needs and the request field
/// (a dotted path; `""` the account, `"*"` any authenticated caller) naming the resource.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub permission: Permission,
    pub field: &'static str,
}

/// What an RPC's request gives the check.
pub(crate) trait Guarded {
    const RULE: Rule;
    /// The resource named by [`Rule::field`].
    fn resource(&self) -> String;
    /// Further resources the request names, with the permission each needs (CopyKey's target
    /// group, ImportKey's wrapping key, RotateKey's source).
    fn extra(&self) -> Vec<(Permission, String)> {
        Vec::new()
    }
}

macro_rules! table {
    ($( $req:ty => $method:literal, $perm:ident, $field:literal, |$r:ident| $resource:expr $(, extra $extra:expr)? ; )*) => {
        /// Every keyward.v1 RPC, the permission it needs and the field it is checked on.
        pub const TABLE: &[Rule] = &[ $( Rule { method: $method, permission: Permission::$perm, field: $field } ),* ];

        $(
            impl Guarded for $req {
                const RULE: Rule = Rule { method: $method, permission: Permission::$perm, field: $field };
                #[allow(unused_variables)]
                fn resource(&self) -> String {
                    let $r = self;
                    $resource
                }
                $(
                    fn extra(&self) -> Vec<(Permission, String)> {
                        let $r = self;
                        $extra
                    }
                )?
            }
        )*
    };
}

/// UpdateGroup's mask naming `aws_kms` or a field under it: ManageConnections on the account.
fn connection_change(mask: Option<&prost_types::FieldMask>) -> Vec<(Permission, String)> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.iter().any(|p| p == "aws_kms" || p.starts_with("aws_kms.")) {
        vec![(Permission::ManageConnections, String::new())]
    } else {
        Vec::new()
    }
}

fn opt(s: &str) -> Vec<(Permission, String)> {
    if s.is_empty() { Vec::new() } else { vec![(Permission::ManageKeys, s.to_owned())] }
}

table! {
    pb::CreateGroupRequest => "keyward.v1.GroupService/CreateGroup", CreateGroups, "", |r| String::new();
    pb::GetGroupRequest => "keyward.v1.GroupService/GetGroup", ReadGroup, "name", |r| r.name.clone();
    pb::ListGroupsRequest => "keyward.v1.GroupService/ListGroups", ReadGroup, "*", |r| "*".into();
    // Connection settings (`aws_kms.*` in the mask) are the account's: only an ADMIN changes
    // where Keyward sends AWS calls (and with CopyKey, key material).
    pb::UpdateGroupRequest => "keyward.v1.GroupService/UpdateGroup", ManageGroup, "group.name",
        |r| r.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
        extra connection_change(r.update_mask.as_ref());
    pb::DeleteGroupRequest => "keyward.v1.GroupService/DeleteGroup", ManageGroup, "name", |r| r.name.clone();
    // Unsaved settings (`aws_kms`) are checked against the account: only an ADMIN tests them.
    pb::TestConnectionRequest => "keyward.v1.GroupService/TestConnection", ManageGroup, "name",
        |r| match &r.target { Some(pb::test_connection_request::Target::Name(n)) => n.clone(), _ => String::new() };
    pb::SyncKeysRequest => "keyward.v1.GroupService/SyncKeys", ManageKeys, "name", |r| r.name.clone();
    pb::GetSyncRunRequest => "keyward.v1.GroupService/GetSyncRun", ReadGroup, "name", |r| r.name.clone();
    pb::WatchSyncRunRequest => "keyward.v1.GroupService/WatchSyncRun", ReadGroup, "name", |r| r.name.clone();
    pb::ListSyncRunsRequest => "keyward.v1.GroupService/ListSyncRuns", ReadGroup, "parent", |r| r.parent.clone();
    pb::ListKeyDriftsRequest => "keyward.v1.GroupService/ListKeyDrifts", ReadGroup, "parent", |r| r.parent.clone();

    pb::CreateKeyRequest => "keyward.v1.KeyService/CreateKey", ManageKeys, "parent", |r| r.parent.clone();
    pb::GetKeyRequest => "keyward.v1.KeyService/GetKey", ReadGroup, "name", |r| r.name.clone();
    pb::ListKeysRequest => "keyward.v1.KeyService/ListKeys", ReadGroup, "parent", |r| r.parent.clone();
    pb::LookupKeyRequest => "keyward.v1.KeyService/LookupKey", ReadGroup, "parent", |r| r.parent.clone();
    pb::UpdateKeyRequest => "keyward.v1.KeyService/UpdateKey", ManageKeys, "key.name",
        |r| r.key.as_ref().map(|k| k.name.clone()).unwrap_or_default();
    pb::ScheduleKeyDeletionRequest => "keyward.v1.KeyService/ScheduleKeyDeletion", ManageKeys, "name", |r| r.name.clone();
    pb::CancelKeyDeletionRequest => "keyward.v1.KeyService/CancelKeyDeletion", ManageKeys, "name", |r| r.name.clone();
    pb::DeleteKeyRequest => "keyward.v1.KeyService/DeleteKey", ManageKeys, "name", |r| r.name.clone();
    pb::ImportKeyRequest => "keyward.v1.KeyService/ImportKey", ManageKeys, "parent", |r| r.parent.clone(),
        extra if r.wrapping_key.is_empty() { vec![] } else { vec![(Permission::UseKeys, r.wrapping_key.clone())] };
    pb::CopyKeyRequest => "keyward.v1.KeyService/CopyKey", ExportKeys, "source", |r| r.source.clone(),
        extra opt(&r.target_group);
    pb::DeleteKeyMaterialRequest => "keyward.v1.KeyService/DeleteKeyMaterial", ManageKeys, "name", |r| r.name.clone();
    pb::ReimportKeyMaterialRequest => "keyward.v1.KeyService/ReimportKeyMaterial", ManageKeys, "name", |r| r.name.clone();
    pb::RotateKeyRequest => "keyward.v1.KeyService/RotateKey", ManageKeys, "name", |r| r.name.clone(),
        extra match r.to_source.as_ref().and_then(|s| s.source.as_ref()) {
            Some(pb::rotation_source::Source::Key(k)) if !k.is_empty() => vec![(Permission::ExportKeys, k.clone())],
            // A new Keyward key there whose material goes to AWS: as CopyKey out of that group.
            Some(pb::rotation_source::Source::NewKeyInGroup(g)) if !g.is_empty() => {
                vec![(Permission::ManageKeys, g.clone()), (Permission::ExportKeys, g.clone())]
            }
            _ => vec![],
        };
    pb::ListKeyRotationsRequest => "keyward.v1.KeyService/ListKeyRotations", ReadGroup, "name", |r| r.name.clone();

    pb::EncryptRequest => "keyward.v1.CryptoService/Encrypt", UseKeys, "name", |r| r.name.clone();
    pb::DecryptRequest => "keyward.v1.CryptoService/Decrypt", UseKeys, "name", |r| r.name.clone();
    pb::WrapKeyRequest => "keyward.v1.CryptoService/WrapKey", UseKeys, "name", |r| r.name.clone();
    pb::UnwrapKeyRequest => "keyward.v1.CryptoService/UnwrapKey", UseKeys, "name", |r| r.name.clone();
    // A public key is not secret: every reader of the group may have it.
    pb::GetPublicKeyRequest => "keyward.v1.CryptoService/GetPublicKey", ReadGroup, "name", |r| r.name.clone();
    pb::SignRequest => "keyward.v1.CryptoService/Sign", UseKeys, "name", |r| r.name.clone();
    pb::VerifyRequest => "keyward.v1.CryptoService/Verify", UseKeys, "name", |r| r.name.clone();
    pb::GenerateMacRequest => "keyward.v1.CryptoService/GenerateMac", UseKeys, "name", |r| r.name.clone();
    pb::VerifyMacRequest => "keyward.v1.CryptoService/VerifyMac", UseKeys, "name", |r| r.name.clone();
    pb::GenerateDataKeyRequest => "keyward.v1.CryptoService/GenerateDataKey", UseKeys, "name", |r| r.name.clone();
    pb::GenerateDataKeyWithoutPlaintextRequest => "keyward.v1.CryptoService/GenerateDataKeyWithoutPlaintext", UseKeys,
        "name", |r| r.name.clone();
    pb::GenerateDataKeyPairRequest => "keyward.v1.CryptoService/GenerateDataKeyPair", UseKeys, "name", |r| r.name.clone();
    pb::ReEncryptRequest => "keyward.v1.CryptoService/ReEncrypt", UseKeys, "name", |r| r.name.clone(),
        extra if r.source_key.is_empty() { vec![] } else { vec![(Permission::UseKeys, r.source_key.clone())] };
    pb::DeriveSharedSecretRequest => "keyward.v1.CryptoService/DeriveSharedSecret", UseKeys, "name", |r| r.name.clone();

    // Answers only the events of groups where the caller reads audit events.
    pb::ListAuditEventsRequest => "keyward.v1.AuditService/ListAuditEvents", ReadAudit, "*", |r| "*".into();
    pb::VerifyAuditChainRequest => "keyward.v1.AuditService/VerifyAuditChain", ReadAudit, "", |r| String::new();

    pb::GetCurrentPrincipalRequest => "keyward.v1.PrincipalService/GetCurrentPrincipal", ReadPrincipals, "*", |r| "*".into();
    pb::CreatePrincipalRequest => "keyward.v1.PrincipalService/CreatePrincipal", ManagePrincipals, "", |r| String::new();
    pb::GetPrincipalRequest => "keyward.v1.PrincipalService/GetPrincipal", ReadPrincipals, "name", |r| r.name.clone();
    pb::ListPrincipalsRequest => "keyward.v1.PrincipalService/ListPrincipals", ReadPrincipals, "", |r| String::new();
    pb::UpdatePrincipalRequest => "keyward.v1.PrincipalService/UpdatePrincipal", ManagePrincipals, "principal.name",
        |r| r.principal.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    pb::DisablePrincipalRequest => "keyward.v1.PrincipalService/DisablePrincipal", ManagePrincipals, "name", |r| r.name.clone();
    pb::EnablePrincipalRequest => "keyward.v1.PrincipalService/EnablePrincipal", ManagePrincipals, "name", |r| r.name.clone();
    pb::CreateApiKeyRequest => "keyward.v1.PrincipalService/CreateApiKey", ManageApiKeys, "parent", |r| r.parent.clone();
    pb::ListApiKeysRequest => "keyward.v1.PrincipalService/ListApiKeys", ManageApiKeys, "parent", |r| r.parent.clone();
    pb::RevokeApiKeyRequest => "keyward.v1.PrincipalService/RevokeApiKey", ManageApiKeys, "name", |r| r.name.clone();
    pb::CreateMembershipRequest => "keyward.v1.PrincipalService/CreateMembership", ManageMembers, "parent", |r| r.parent.clone();
    pb::ListMembershipsRequest => "keyward.v1.PrincipalService/ListMemberships", ReadGroup, "parent", |r| r.parent.clone();
    pb::UpdateMembershipRequest => "keyward.v1.PrincipalService/UpdateMembership", ManageMembers, "membership.name",
        |r| r.membership.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    pb::DeleteMembershipRequest => "keyward.v1.PrincipalService/DeleteMembership", ManageMembers, "name", |r| r.name.clone();
}

/// What a resource name is checked against; `None`: every authenticated caller.
fn scope(resource: &str) -> Option<Scope> {
    if resource == "*" || resource == "groups/-" || resource.starts_with("groups/-/") {
        return None;
    }
    let id = |rest: &str| rest.split('/').next().and_then(|s| uuid::Uuid::try_parse(s).ok());
    if let Some(g) = resource.strip_prefix("groups/").and_then(id) {
        return Some(Scope::Group(GroupId(g)));
    }
    if let Some(p) = resource.strip_prefix("principals/").and_then(id) {
        return Some(Scope::Principal(PrincipalId(p)));
    }
    Some(Scope::Account)
}

/// The request id from `x-request-id` (1-128 printable ASCII), else a new UUID.
fn request_id<T>(req: &Request<T>) -> String {
    req.metadata()
        .get(crate::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The bearer token of the `authorization` header: `Some("")` when the header is there but is
/// not `Bearer <token>`, or is there more than once (refused, not ignored or picked from).
fn bearer<T>(req: &Request<T>) -> Option<&str> {
    let mut all = req.metadata().get_all("authorization").iter();
    let v = all.next()?;
    if all.next().is_some() {
        return Some("");
    }
    let s = v.to_str().unwrap_or("");
    Some(s.strip_prefix("Bearer ").or_else(|| s.strip_prefix("bearer ")).map_or("", str::trim))
}

/// The identities of the verified client certificate (the leaf) of the call's connection.
pub(crate) fn certificate_identities<T>(req: &Request<T>) -> Vec<CertificateIdentity> {
    let Some(certs) = req.peer_certs() else { return Vec::new() };
    let Some(leaf) = certs.first() else { return Vec::new() };
    identities_of(leaf.as_ref())
}

/// SAN URIs (SPIFFE IDs), DNS names and emails, then the subject DN (RFC 4514), of a DER
/// certificate; nothing for one that does not parse.
pub fn identities_of(der: &[u8]) -> Vec<CertificateIdentity> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => out.push(CertificateIdentity::Uri((*u).to_owned())),
                GeneralName::DNSName(d) => out.push(CertificateIdentity::Dns(d.to_ascii_lowercase())),
                GeneralName::RFC822Name(e) => out.push(CertificateIdentity::Email((*e).to_owned())),
                _ => {}
            }
        }
    }
    if let Some(dn) = rfc4514(cert.subject()) {
        out.push(CertificateIdentity::Subject(dn));
    }
    out
}

/// A name in RFC 4514 form: the last RDN first, `,` between RDNs, `+` within one, special
/// characters escaped. `None` for an empty name or a value that is not a string.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let t = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                .map_or_else(|_| attr.attr_type().to_id_string(), str::to_owned);
            let v = attr.as_str().ok()?;
            parts.push(format!("{t}={}", escape(v)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(",")).filter(|s| !s.is_empty())
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Authenticates the call and checks its table entry; the context to run it under, or the
/// refusal (UNAUTHENTICATED or PERMISSION_DENIED), which is appended to the audit log at a
/// bounded rate.
pub(crate) async fn admit<T: Guarded>(keyward: &Keyward, req: &Request<T>) -> Result<Ctx, Status> {
    let request_id = request_id(req);
    let certificate = certificate_identities(req);
    let creds = Credentials { bearer: bearer(req), certificate };
    let resource = req.get_ref().resource();
    let method = T::RULE.method;
    // Refusals are recorded under the name as Keyward spells it (`keys/x/` is `keys/x`).
    let recorded = crate::convert::canonical_name(&resource);
    let caller = match keyward.authenticate(&creds, request_id.clone(), keyward.now()).await {
        Ok(c) => c,
        Err(e) => {
            let status = to_status(e);
            if status.code() == tonic::Code::Unauthenticated {
                let ctx = keyward.ctx(keyward_shared::domain::Caller::system("(unauthenticated)", request_id));
                keyward
                    .record_access_refusal(&ctx, method, &recorded, code_name(status.code()), status.message())
                    .await;
            }
            return Err(status);
        }
    };
    let ctx = keyward.ctx(caller);
    let checks = std::iter::once((T::RULE.permission, resource)).chain(req.get_ref().extra());
    for (permission, resource) in checks {
        let Some(scope) = scope(&resource) else { continue };
        let named = crate::convert::canonical_name(&resource);
        if let Err(e) = keyward.authorize(&ctx, permission, scope, &named) {
            let status = to_status(e);
            keyward.record_access_refusal(&ctx, method, &named, code_name(status.code()), status.message()).await;
            return Err(status);
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_resource_name() {
        let g = uuid::Uuid::now_v7();
        assert_eq!(scope(&format!("groups/{g}")), Some(Scope::Group(GroupId(g))));
        assert_eq!(scope(&format!("groups/{g}/keys/x")), Some(Scope::Group(GroupId(g))));
        assert_eq!(scope(&format!("principals/{g}/apiKeys/y")), Some(Scope::Principal(PrincipalId(g))));
        assert_eq!(scope("groups/-"), None);
        assert_eq!(scope("*"), None);
        assert_eq!(scope(""), Some(Scope::Account));
        assert_eq!(scope("groups/not-a-uuid"), Some(Scope::Account));
    }

    #[test]
    fn every_method_has_one_entry() {
        let mut methods: Vec<_> = TABLE.iter().map(|r| r.method).collect();
        methods.sort();
        let n = methods.len();
        methods.dedup();
        assert_eq!(methods.len(), n, "an RPC is listed twice");
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }
}

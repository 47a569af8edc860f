//! keyward.v1.PrincipalService: principals, API keys, memberships and `principals/me`, as thin
//! handlers (parse → one use case → convert back), and the translation of their messages.
//! Changes run inside `audited`, which records refusals.

use keyward_proto::v1 as pb;
use keyward_shared::domain::{
    AccountRole, Action, ApiKey, ApiKeyId, CertificateIdentity, FieldViolation, GroupId, GroupRole, Membership,
    Principal, PrincipalId, PrincipalKind,
};
use keyward_shared::{Keyward, NewPrincipal, PrincipalPatch};
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::access::{admit, certificate_identities};
use crate::audited;
use crate::convert::{connection_pb, decode_token, next_token, page_size, parse_group_name, ts};
use crate::status::{invalid, to_status};

pub struct PrincipalService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

// ----- names -----

fn parse_principal_name(field: &str, name: &str) -> Result<PrincipalId, Status> {
    name.strip_prefix("principals/")
        .and_then(PrincipalId::parse)
        .ok_or_else(|| invalid(field, format!("{name:?} is not a principal name principals/{{uuid}}")))
}

fn parse_api_key_name(field: &str, name: &str) -> Result<(PrincipalId, ApiKeyId), Status> {
    let bad = || invalid(field, format!("{name:?} is not an API key name principals/{{uuid}}/apiKeys/{{uuid}}"));
    let rest = name.strip_prefix("principals/").ok_or_else(bad)?;
    let (p, k) = rest.split_once("/apiKeys/").ok_or_else(bad)?;
    Ok((PrincipalId::parse(p).ok_or_else(bad)?, ApiKeyId::parse(k).ok_or_else(bad)?))
}

fn parse_membership_name(field: &str, name: &str) -> Result<(GroupId, PrincipalId), Status> {
    let bad = || invalid(field, format!("{name:?} is not a membership name groups/{{uuid}}/memberships/{{uuid}}"));
    let rest = name.strip_prefix("groups/").ok_or_else(bad)?;
    let (g, p) = rest.split_once("/memberships/").ok_or_else(bad)?;
    Ok((GroupId::parse(g).ok_or_else(bad)?, PrincipalId::parse(p).ok_or_else(bad)?))
}

// ----- enums -----

fn account_role(field: &str, v: i32) -> Result<AccountRole, FieldViolation> {
    match pb::AccountRole::try_from(v) {
        Ok(pb::AccountRole::Admin) => Ok(AccountRole::Admin),
        Ok(pb::AccountRole::Auditor) => Ok(AccountRole::Auditor),
        _ => Err(FieldViolation::new(field, "ACCOUNT_ROLE_ADMIN or ACCOUNT_ROLE_AUDITOR")),
    }
}

fn account_role_pb(r: AccountRole) -> i32 {
    match r {
        AccountRole::Admin => pb::AccountRole::Admin as i32,
        AccountRole::Auditor => pb::AccountRole::Auditor as i32,
    }
}

fn group_role(field: &str, v: i32) -> Result<GroupRole, FieldViolation> {
    match pb::GroupRole::try_from(v) {
        Ok(pb::GroupRole::GroupAdmin) => Ok(GroupRole::GroupAdmin),
        Ok(pb::GroupRole::KeyManager) => Ok(GroupRole::KeyManager),
        Ok(pb::GroupRole::CryptoUser) => Ok(GroupRole::CryptoUser),
        Ok(pb::GroupRole::Auditor) => Ok(GroupRole::Auditor),
        _ => Err(FieldViolation::new(
            field,
            "GROUP_ROLE_GROUP_ADMIN, GROUP_ROLE_KEY_MANAGER, GROUP_ROLE_CRYPTO_USER or GROUP_ROLE_AUDITOR",
        )),
    }
}

fn group_role_pb(r: GroupRole) -> i32 {
    match r {
        GroupRole::GroupAdmin => pb::GroupRole::GroupAdmin as i32,
        GroupRole::KeyManager => pb::GroupRole::KeyManager as i32,
        GroupRole::CryptoUser => pb::GroupRole::CryptoUser as i32,
        GroupRole::Auditor => pb::GroupRole::Auditor as i32,
    }
}

fn all<T>(field: &str, values: &[i32], one: fn(&str, i32) -> Result<T, FieldViolation>) -> Result<Vec<T>, Status> {
    let (ok, bad): (Vec<_>, Vec<_>) =
        values.iter().enumerate().map(|(i, v)| one(&format!("{field}[{i}]"), *v)).partition(Result::is_ok);
    if bad.is_empty() {
        Ok(ok.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(to_status(keyward_shared::Error::InvalidArgument(bad.into_iter().filter_map(Result::err).collect())))
    }
}

fn identity(field: &str, c: &pb::CertificateIdentity) -> Result<CertificateIdentity, Status> {
    use pb::certificate_identity::Identity;
    match c.identity.clone() {
        Some(Identity::Subject(s)) => Ok(CertificateIdentity::Subject(s)),
        Some(Identity::Uri(s)) => Ok(CertificateIdentity::Uri(s)),
        Some(Identity::Dns(s)) => Ok(CertificateIdentity::Dns(s)),
        Some(Identity::Email(s)) => Ok(CertificateIdentity::Email(s)),
        None => Err(invalid(field, "set one of subject, uri, dns, email")),
    }
}

fn identities(field: &str, v: &[pb::CertificateIdentity]) -> Result<Vec<CertificateIdentity>, Status> {
    v.iter().enumerate().map(|(i, c)| identity(&format!("{field}[{i}]"), c)).collect()
}

fn identity_pb(c: &CertificateIdentity) -> pb::CertificateIdentity {
    use pb::certificate_identity::Identity;
    let identity = match c.clone() {
        CertificateIdentity::Subject(s) => Identity::Subject(s),
        CertificateIdentity::Uri(s) => Identity::Uri(s),
        CertificateIdentity::Dns(s) => Identity::Dns(s),
        CertificateIdentity::Email(s) => Identity::Email(s),
    };
    pb::CertificateIdentity { identity: Some(identity) }
}

// ----- resources -----

fn principal_pb(p: &Principal) -> pb::Principal {
    pb::Principal {
        name: p.name(),
        kind: match p.kind {
            PrincipalKind::User => pb::PrincipalKind::User,
            PrincipalKind::ServiceAccount => pb::PrincipalKind::ServiceAccount,
        } as i32,
        display_name: p.display_name.clone(),
        description: p.description.clone(),
        account_roles: p.account_roles.iter().map(|r| account_role_pb(*r)).collect(),
        certificate_identities: p.certificate_identities.iter().map(identity_pb).collect(),
        oidc_subjects: p.oidc_subjects.clone(),
        disabled: p.disabled,
        create_time: Some(ts(p.create_time)),
        update_time: Some(ts(p.update_time)),
        etag: p.etag.clone(),
    }
}

fn api_key_pb(k: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        name: k.name(),
        display_name: k.display_name.clone(),
        create_time: Some(ts(k.create_time)),
        expire_time: k.expire_time.map(ts),
        revoke_time: k.revoke_time.map(ts),
        last_used_time: k.last_used_time.map(ts),
    }
}

fn membership_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        name: m.name(),
        principal: format!("principals/{}", m.principal),
        roles: m.roles.iter().map(|r| group_role_pb(*r)).collect(),
        create_time: Some(ts(m.create_time)),
        update_time: Some(ts(m.update_time)),
    }
}

fn new_principal(p: pb::Principal) -> Result<NewPrincipal, Status> {
    let kind = match pb::PrincipalKind::try_from(p.kind) {
        Ok(pb::PrincipalKind::User) => PrincipalKind::User,
        Ok(pb::PrincipalKind::ServiceAccount) => PrincipalKind::ServiceAccount,
        _ => return Err(invalid("principal.kind", "PRINCIPAL_KIND_USER or PRINCIPAL_KIND_SERVICE_ACCOUNT")),
    };
    Ok(NewPrincipal {
        kind,
        display_name: p.display_name,
        description: p.description,
        account_roles: all("principal.account_roles", &p.account_roles, account_role)?,
        certificate_identities: identities("principal.certificate_identities", &p.certificate_identities)?,
        oidc_subjects: p.oidc_subjects,
    })
}

const PRINCIPAL_PATHS: &str = "display_name, description, account_roles, certificate_identities, oidc_subjects";

fn principal_patch(p: pb::Principal, mask: Option<prost_types::FieldMask>) -> Result<PrincipalPatch, Status> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(invalid("update_mask", format!("required: list the fields to change ({PRINCIPAL_PATHS})")));
    }
    let mut patch = PrincipalPatch::default();
    for path in &paths {
        match path.as_str() {
            "display_name" | "displayName" => patch.display_name = Some(p.display_name.clone()),
            "description" => patch.description = Some(p.description.clone()),
            "account_roles" | "accountRoles" => {
                patch.account_roles = Some(all("principal.account_roles", &p.account_roles, account_role)?)
            }
            "certificate_identities" | "certificateIdentities" => {
                patch.certificate_identities =
                    Some(identities("principal.certificate_identities", &p.certificate_identities)?)
            }
            "oidc_subjects" | "oidcSubjects" => patch.oidc_subjects = Some(p.oidc_subjects.clone()),
            other => {
                return Err(invalid(
                    "update_mask",
                    format!("{other:?} is not a path of Principal; paths: {PRINCIPAL_PATHS}"),
                ));
            }
        }
    }
    Ok(patch)
}

fn time_of(field: &str, t: Option<prost_types::Timestamp>) -> Result<Option<OffsetDateTime>, Status> {
    t.map(|t| {
        OffsetDateTime::from_unix_timestamp(t.seconds)
            .ok()
            .and_then(|s| s.replace_nanosecond(u32::try_from(t.nanos).ok()?).ok())
            .ok_or_else(|| invalid(field, "not a valid timestamp"))
    })
    .transpose()
}

fn roles_of(field: &str, m: &pb::Membership) -> Result<Vec<GroupRole>, Status> {
    all(field, &m.roles, group_role)
}

#[tonic::async_trait]
impl pb::principal_service_server::PrincipalService for PrincipalService {
    async fn get_current_principal(&self, req: Request<pb::GetCurrentPrincipalRequest>) -> R<pb::CurrentPrincipal> {
        let ctx = admit(&self.keyward, &req).await?;
        let presented = certificate_identities(&req);
        // admit() let the call in: a bearer token that is not an API key was an OIDC token.
        let authenticated_by = match req.metadata().get("authorization").map(|v| v.to_str().unwrap_or("")) {
            Some(v) if v.trim_start_matches("Bearer ").trim_start_matches("bearer ").starts_with("kw_") => "api_key",
            Some(_) => "oidc",
            None => "certificate",
        };
        let name = req.into_inner().name;
        if !name.is_empty() && name != "principals/me" {
            return Err(invalid("name", "principals/me (or empty)"));
        }
        let me = self.keyward.current_principal(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::CurrentPrincipal {
            principal: Some(principal_pb(&me.principal)),
            groups: me
                .groups
                .iter()
                .map(|(g, roles)| {
                    let group = crate::convert::group_pb(g);
                    pb::PrincipalGroup {
                        group: group.name,
                        display_name: group.display_name,
                        kind: group.kind,
                        connection: Some(connection_pb(&g.connection)),
                        roles: roles.iter().map(|r| group_role_pb(*r)).collect(),
                    }
                })
                .collect(),
            authenticated_by: authenticated_by.into(),
            presented_identities: presented.iter().map(identity_pb).collect(),
        }))
    }

    async fn create_principal(&self, req: Request<pb::CreatePrincipalRequest>) -> R<pb::Principal> {
        let ctx = admit(&self.keyward, &req).await?;
        let principal = req.into_inner().principal;
        audited(&self.keyward, ctx, Action::CreatePrincipal, "principals", |ctx| async move {
            let new = new_principal(principal.ok_or_else(|| invalid("principal", "required"))?)?;
            let p = self.keyward.create_principal(&ctx, new).await.map_err(to_status)?;
            Ok(Response::new(principal_pb(&p)))
        })
        .await
    }

    async fn get_principal(&self, req: Request<pb::GetPrincipalRequest>) -> R<pb::Principal> {
        let ctx = admit(&self.keyward, &req).await?;
        let id = parse_principal_name("name", &req.into_inner().name)?;
        let p = self.keyward.get_principal(&ctx, id).await.map_err(to_status)?;
        Ok(Response::new(principal_pb(&p)))
    }

    async fn list_principals(&self, req: Request<pb::ListPrincipalsRequest>) -> R<pb::ListPrincipalsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        if !r.filter.is_empty() {
            return Err(invalid("filter", "not supported for principals"));
        }
        let limit = page_size(r.page_size)?;
        let after = decode_token(&r.page_token)?;
        let ps = self.keyward.list_principals(&ctx, after, limit).await.map_err(to_status)?;
        let next_page_token = next_token(ps.len(), limit, ps.last().map(|p| p.id.to_string()));
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: ps.iter().map(principal_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_principal(&self, req: Request<pb::UpdatePrincipalRequest>) -> R<pb::Principal> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let resource = r.principal.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        audited(&self.keyward, ctx, Action::UpdatePrincipal, &resource, |ctx| async move {
            let p = r.principal.ok_or_else(|| invalid("principal", "required"))?;
            let id = parse_principal_name("principal.name", &p.name)?;
            let patch = principal_patch(p, r.update_mask)?;
            let p = self.keyward.update_principal(&ctx, id, patch).await.map_err(to_status)?;
            Ok(Response::new(principal_pb(&p)))
        })
        .await
    }

    async fn disable_principal(&self, req: Request<pb::DisablePrincipalRequest>) -> R<pb::Principal> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        self.set_disabled(ctx, name, true).await
    }

    async fn enable_principal(&self, req: Request<pb::EnablePrincipalRequest>) -> R<pb::Principal> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        self.set_disabled(ctx, name, false).await
    }

    async fn create_api_key(&self, req: Request<pb::CreateApiKeyRequest>) -> R<pb::CreateApiKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::CreateApiKey, &r.parent.clone(), |ctx| async move {
            let principal = parse_principal_name("parent", &r.parent)?;
            let k = r.api_key.unwrap_or_default();
            let expire = time_of("api_key.expire_time", k.expire_time)?;
            let (key, token) =
                self.keyward.create_api_key(&ctx, principal, k.display_name, expire).await.map_err(to_status)?;
            Ok(Response::new(pb::CreateApiKeyResponse {
                api_key: Some(api_key_pb(&key)),
                token: token.expose_secret().to_owned(),
            }))
        })
        .await
    }

    async fn list_api_keys(&self, req: Request<pb::ListApiKeysRequest>) -> R<pb::ListApiKeysResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let principal = parse_principal_name("parent", &r.parent)?;
        let limit = page_size(r.page_size)?;
        let after = decode_token(&r.page_token)?;
        let keys = self.keyward.list_api_keys(&ctx, principal, after, limit).await.map_err(to_status)?;
        let next_page_token = next_token(keys.len(), limit, keys.last().map(|k| k.id.to_string()));
        Ok(Response::new(pb::ListApiKeysResponse { api_keys: keys.iter().map(api_key_pb).collect(), next_page_token }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> R<pb::ApiKey> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        audited(&self.keyward, ctx, Action::RevokeApiKey, &name.clone(), |ctx| async move {
            let (p, k) = parse_api_key_name("name", &name)?;
            let key = self.keyward.revoke_api_key(&ctx, p, k).await.map_err(to_status)?;
            Ok(Response::new(api_key_pb(&key)))
        })
        .await
    }

    async fn create_membership(&self, req: Request<pb::CreateMembershipRequest>) -> R<pb::Membership> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::CreateMembership, &r.parent.clone(), |ctx| async move {
            let group = parse_group_name("parent", &r.parent)?;
            let m = r.membership.ok_or_else(|| invalid("membership", "required"))?;
            let principal = parse_principal_name("membership.principal", &m.principal)?;
            let roles = roles_of("membership.roles", &m)?;
            let m = self.keyward.create_membership(&ctx, group, principal, roles).await.map_err(to_status)?;
            Ok(Response::new(membership_pb(&m)))
        })
        .await
    }

    async fn list_memberships(&self, req: Request<pb::ListMembershipsRequest>) -> R<pb::ListMembershipsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let group = parse_group_name("parent", &r.parent)?;
        let limit = page_size(r.page_size)?;
        let after = decode_token(&r.page_token)?;
        let ms = self.keyward.list_memberships(&ctx, group, after, limit).await.map_err(to_status)?;
        let next_page_token = next_token(ms.len(), limit, ms.last().map(|m| m.principal.to_string()));
        Ok(Response::new(pb::ListMembershipsResponse {
            memberships: ms.iter().map(membership_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_membership(&self, req: Request<pb::UpdateMembershipRequest>) -> R<pb::Membership> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let resource = r.membership.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        audited(&self.keyward, ctx, Action::UpdateMembership, &resource, |ctx| async move {
            let m = r.membership.ok_or_else(|| invalid("membership", "required"))?;
            let (g, p) = parse_membership_name("membership.name", &m.name)?;
            let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            if paths != ["roles"] {
                return Err(invalid("update_mask", "the one path of a membership is roles"));
            }
            let roles = roles_of("membership.roles", &m)?;
            let m = self.keyward.update_membership(&ctx, g, p, roles).await.map_err(to_status)?;
            Ok(Response::new(membership_pb(&m)))
        })
        .await
    }

    async fn delete_membership(&self, req: Request<pb::DeleteMembershipRequest>) -> R<()> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        audited(&self.keyward, ctx, Action::DeleteMembership, &name.clone(), |ctx| async move {
            let (g, p) = parse_membership_name("name", &name)?;
            self.keyward.delete_membership(&ctx, g, p).await.map_err(to_status)?;
            Ok(Response::new(()))
        })
        .await
    }
}

impl PrincipalService {
    async fn set_disabled(&self, ctx: keyward_shared::Ctx, name: String, disabled: bool) -> R<pb::Principal> {
        let action = if disabled { Action::DisablePrincipal } else { Action::EnablePrincipal };
        audited(&self.keyward, ctx, action, &name.clone(), |ctx| async move {
            let id = parse_principal_name("name", &name)?;
            let p = self.keyward.set_principal_disabled(&ctx, id, disabled).await.map_err(to_status)?;
            Ok(Response::new(principal_pb(&p)))
        })
        .await
    }
}

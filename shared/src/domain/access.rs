//! Who may do what: principals (users and service accounts), their credentials (API keys and
//! client-certificate identities), account roles and per-group roles, the permissions each role
//! grants, and [`Grants`], an authenticated caller's roles, which answer "may it do this here".

use std::collections::BTreeMap;

use super::{ApiKeyId, GroupId, PrincipalId};
use time::OffsetDateTime;

/// What a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

/// A role over the whole account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountRole {
    /// Every permission everywhere: groups, keys, crypto, principals, audit.
    Admin,
    /// Reads everything (groups, keys, principals, audit); changes nothing, uses no key.
    Auditor,
}

/// A role in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupRole {
    /// The group's settings and members, its keys (as a key manager) and its audit events.
    GroupAdmin,
    /// Creates, changes, rotates, deletes the group's keys and syncs the group.
    KeyManager,
    /// Encrypt, Decrypt, WrapKey and UnwrapKey with the group's keys.
    CryptoUser,
    /// Reads the group, its keys, its sync runs and its audit events.
    Auditor,
}

/// What one RPC needs, checked against a [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Create groups, test unsaved connection settings (account scope).
    CreateGroups,
    /// Read a group, its keys and its sync runs.
    ReadGroup,
    /// Change or delete a group's settings; test its connection.
    ManageGroup,
    /// Add, change and remove a group's members.
    ManageMembers,
    /// Create, import, copy, change, rotate, delete a group's keys; sync the group.
    ManageKeys,
    /// Send a Keyward key's material out of its group: CopyKey's source, RotateKey onto it.
    /// Whoever holds it decides where the material goes (a copy is used by the target group's
    /// crypto users), so it is the group admin's, not the key manager's.
    ExportKeys,
    /// Change an AWS KMS group's connection settings (`aws_kms.*`: where Keyward sends AWS
    /// calls, copied material included); account scope only, so an ADMIN decides it.
    ManageConnections,
    /// Encrypt, Decrypt, WrapKey, UnwrapKey with a group's keys.
    UseKeys,
    /// Read audit events (of a group, or all of them at account scope).
    ReadAudit,
    /// Read principals and their memberships (a principal may always read itself).
    ReadPrincipals,
    /// Create, change, disable principals and their certificate identities.
    ManagePrincipals,
    /// Create, list and revoke a principal's API keys (a principal may always do this for
    /// itself).
    ManageApiKeys,
}

impl AccountRole {
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Admin => true,
            Self::Auditor => matches!(p, ReadGroup | ReadAudit | ReadPrincipals),
        }
    }
}

impl GroupRole {
    /// Whether the role grants `p` within its group (account-wide permissions never).
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Self::GroupAdmin => {
                matches!(p, ReadGroup | ManageGroup | ManageMembers | ManageKeys | ExportKeys | ReadAudit)
            }
            Self::KeyManager => matches!(p, ReadGroup | ManageKeys),
            Self::CryptoUser => matches!(p, ReadGroup | UseKeys),
            Self::Auditor => matches!(p, ReadGroup | ReadAudit),
        }
    }
}

/// What a permission is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Group(GroupId),
    Principal(PrincipalId),
}

/// A user or service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: PrincipalId,
    pub kind: PrincipalKind,
    pub display_name: String,
    pub description: String,
    pub account_roles: Vec<AccountRole>,
    /// Client-certificate identities that authenticate as this principal (unique across
    /// principals).
    pub certificate_identities: Vec<CertificateIdentity>,
    /// `sub` claims of the configured OIDC issuer's tokens that authenticate as this principal
    /// (unique across principals).
    pub oidc_subjects: Vec<String>,
    /// A disabled principal's credentials are refused (UNAUTHENTICATED).
    pub disabled: bool,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub etag: String,
}

/// The stored form of an OIDC subject (beside certificate identities' `uri:…`, `dns:…`).
pub fn oidc_subject_key(sub: &str) -> String {
    format!("oidc:{sub}")
}

/// Checks an OIDC subject a caller registers: 1-255 characters, none a control character.
pub fn validate_oidc_subject(sub: &str) -> Result<(), String> {
    if sub.is_empty() || sub.chars().count() > 255 {
        return Err("1-255 characters".into());
    }
    if sub.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

impl Principal {
    pub fn name(&self) -> String {
        format!("principals/{}", self.id)
    }
}

/// What in a client certificate names a principal. Compared exactly (after the parse below).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertificateIdentity {
    /// The subject distinguished name in RFC 4514 form, as the server renders it
    /// (`CN=app,O=Example`).
    Subject(String),
    /// A URI subject alternative name, such as a SPIFFE ID (`spiffe://example.org/ns/a/sa/b`).
    Uri(String),
    /// A DNS subject alternative name.
    Dns(String),
    /// An rfc822Name (email) subject alternative name.
    Email(String),
}

impl CertificateIdentity {
    /// The stored form: `subject:…`, `uri:…`, `dns:…` or `email:…`.
    pub fn key(&self) -> String {
        match self {
            Self::Subject(s) => format!("subject:{s}"),
            Self::Uri(s) => format!("uri:{s}"),
            Self::Dns(s) => format!("dns:{s}"),
            Self::Email(s) => format!("email:{s}"),
        }
    }

    pub fn from_key(k: &str) -> Option<Self> {
        let (kind, v) = k.split_once(':')?;
        Some(match kind {
            "subject" => Self::Subject(v.to_owned()),
            "uri" => Self::Uri(v.to_owned()),
            "dns" => Self::Dns(v.to_owned()),
            "email" => Self::Email(v.to_owned()),
            _ => return None,
        })
    }

    /// Checks what a caller registers: 1-1024 printable characters; a URI has a scheme, a
    /// SPIFFE ID has a trust domain and a path; DNS names are lowercase.
    pub fn validate(&self) -> Result<(), String> {
        let v = match self {
            Self::Subject(v) | Self::Uri(v) | Self::Dns(v) | Self::Email(v) => v,
        };
        if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
            return Err("1-1024 characters, none of them control characters".into());
        }
        match self {
            Self::Uri(u) if u.starts_with("spiffe://") => {
                let rest = &u["spiffe://".len()..];
                match rest.split_once('/') {
                    Some((domain, path)) if !domain.is_empty() && !path.is_empty() => Ok(()),
                    _ => Err("a SPIFFE ID is spiffe://<trust domain>/<path>".into()),
                }
            }
            Self::Uri(u) if !u.contains(':') => Err("a URI with a scheme (spiffe://…, https://…)".into()),
            Self::Dns(d) if d.chars().any(|c| c.is_ascii_uppercase() || c.is_whitespace()) => {
                Err("a DNS name in lowercase without spaces".into())
            }
            Self::Email(e) if !e.contains('@') => Err("an email address".into()),
            _ => Ok(()),
        }
    }
}

/// An API key of a principal. The token itself is never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub principal: PrincipalId,
    pub display_name: String,
    pub create_time: OffsetDateTime,
    /// After this time the key is refused (UNAUTHENTICATED). `None`: never expires.
    pub expire_time: Option<OffsetDateTime>,
    /// Set when the key was revoked; a revoked key is refused.
    pub revoke_time: Option<OffsetDateTime>,
    /// When the key last authenticated a call (updated at most once a minute).
    pub last_used_time: Option<OffsetDateTime>,
}

impl ApiKey {
    pub fn name(&self) -> String {
        format!("principals/{}/apiKeys/{}", self.principal, self.id)
    }

    /// Whether it authenticates a call at `now`.
    pub fn usable(&self, now: OffsetDateTime) -> bool {
        self.revoke_time.is_none() && self.expire_time.is_none_or(|t| now < t)
    }
}

/// A principal's roles in one group (`groups/{g}/memberships/{principal}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group: GroupId,
    pub principal: PrincipalId,
    pub roles: Vec<GroupRole>,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}

impl Membership {
    pub fn name(&self) -> String {
        format!("groups/{}/memberships/{}", self.group, self.principal)
    }
}

/// Who an authenticated call comes from and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// Keyward itself: the worker's jobs, start-up tasks and the command line on the server's
    /// machine. Everything.
    System,
    /// A principal, with its roles as read when the call was authenticated.
    Principal { id: PrincipalId, account_roles: Vec<AccountRole>, groups: BTreeMap<GroupId, Vec<GroupRole>> },
}

impl Grants {
    /// Whether `p` is granted on `scope`.
    pub fn allows(&self, p: Permission, scope: Scope) -> bool {
        match self {
            Self::System => true,
            Self::Principal { id, account_roles, groups } => {
                account_roles.iter().any(|r| r.grants(p))
                    || match scope {
                        Scope::Account => false,
                        Scope::Group(g) => groups.get(&g).is_some_and(|roles| roles.iter().any(|r| r.grants(p))),
                        Scope::Principal(other) => {
                            other == *id && matches!(p, Permission::ReadPrincipals | Permission::ManageApiKeys)
                        }
                    }
            }
        }
    }

    /// The groups in which `p` is granted: `None` when it is granted in every group (an
    /// account role or the system), else the groups of the caller's memberships that grant it.
    pub fn groups_with(&self, p: Permission) -> Option<Vec<GroupId>> {
        match self {
            Self::System => None,
            Self::Principal { account_roles, groups, .. } => {
                if account_roles.iter().any(|r| r.grants(p)) {
                    None
                } else {
                    Some(
                        groups.iter().filter(|(_, roles)| roles.iter().any(|r| r.grants(p))).map(|(g, _)| *g).collect(),
                    )
                }
            }
        }
    }

    /// The principal, unless this is the system.
    pub fn principal(&self) -> Option<PrincipalId> {
        match self {
            Self::System => None,
            Self::Principal { id, .. } => Some(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(roles: &[GroupRole], g: GroupId) -> Grants {
        Grants::Principal {
            id: PrincipalId::new(),
            account_roles: vec![],
            groups: BTreeMap::from([(g, roles.to_vec())]),
        }
    }

    #[test]
    fn group_roles_stay_in_their_group() {
        let (g, other) = (GroupId::new(), GroupId::new());
        let km = member(&[GroupRole::KeyManager], g);
        assert!(km.allows(Permission::ManageKeys, Scope::Group(g)));
        assert!(!km.allows(Permission::ManageKeys, Scope::Group(other)));
        assert!(!km.allows(Permission::UseKeys, Scope::Group(g)));
        assert!(!km.allows(Permission::CreateGroups, Scope::Account));
        assert_eq!(km.groups_with(Permission::ReadGroup), Some(vec![g]));
        assert_eq!(km.groups_with(Permission::ReadAudit), Some(vec![]));
    }

    #[test]
    fn account_auditor_reads_everything_and_changes_nothing() {
        let a = Grants::Principal {
            id: PrincipalId::new(),
            account_roles: vec![AccountRole::Auditor],
            groups: BTreeMap::new(),
        };
        let g = Scope::Group(GroupId::new());
        assert!(a.allows(Permission::ReadGroup, g) && a.allows(Permission::ReadAudit, Scope::Account));
        for p in [Permission::ManageKeys, Permission::UseKeys, Permission::ManageGroup, Permission::ManagePrincipals] {
            assert!(!a.allows(p, g), "{p:?}");
        }
        assert_eq!(a.groups_with(Permission::ReadGroup), None);
    }

    #[test]
    fn a_principal_reads_itself_only() {
        let id = PrincipalId::new();
        let me = Grants::Principal { id, account_roles: vec![], groups: BTreeMap::new() };
        assert!(me.allows(Permission::ReadPrincipals, Scope::Principal(id)));
        assert!(!me.allows(Permission::ReadPrincipals, Scope::Principal(PrincipalId::new())));
        assert!(me.allows(Permission::ManageApiKeys, Scope::Principal(id)));
        assert!(!me.allows(Permission::ManageApiKeys, Scope::Principal(PrincipalId::new())));
        assert!(!me.allows(Permission::ManagePrincipals, Scope::Principal(id)));
    }

    #[test]
    fn certificate_identities_parse_and_check() {
        let spiffe = CertificateIdentity::Uri("spiffe://example.org/ns/prod/sa/app".into());
        assert_eq!(CertificateIdentity::from_key(&spiffe.key()), Some(spiffe.clone()));
        assert!(spiffe.validate().is_ok());
        assert!(CertificateIdentity::Uri("spiffe://example.org".into()).validate().is_err());
        assert!(CertificateIdentity::Dns("App.example".into()).validate().is_err());
        assert!(CertificateIdentity::Subject(String::new()).validate().is_err());
        assert_eq!(CertificateIdentity::from_key("ip:1.2.3.4"), None);
    }
}

//! Identity and access use cases: authenticating a call (API key, OIDC token or client-certificate
//! identity), checking a permission, recording refusals, the bootstrap admin; `principals` holds
//! principals, API keys, memberships and the caller's own view (`principals/me`).

use std::collections::BTreeMap;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::support::new_etag;
use super::support::records::ok_event;
use super::{Ctx, Keyward};
use crate::crypto::tokens;
use crate::domain::{
    AccountRole, Action, ApiKey, ApiKeyId, Caller, CertificateIdentity, Grants, GroupId, GroupRole, Permission,
    Principal, PrincipalId, PrincipalKind, Scope, oidc_subject_key,
};
use crate::oidc::Oidc;
use crate::{Error, Result};

mod principals;

pub use principals::{CurrentPrincipal, NewPrincipal, PrincipalPatch};

/// How often an API key's `last_used_time` is written at most.
const LAST_USED_GRANULARITY: time::Duration = time::Duration::minutes(1);

/// Longest lifetime a caller may give an API key (`expire_time` at most this far ahead).
const MAX_API_KEY_LIFETIME: time::Duration = time::Duration::days(2 * 366);

/// What a call presents.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The `authorization` header's value without `Bearer `; `Some("")` for a header that is
    /// not a bearer token.
    pub bearer: Option<&'a str>,
    /// The identities read from a verified client certificate (empty without one).
    pub certificate: Vec<CertificateIdentity>,
}

impl Keyward {
    /// Authenticates a call: its bearer token if it sends one — an API key (`kw_…`), or with
    /// OIDC configured a JWT of the issuer ([`crate::oidc`]) — (a bad one is refused even when a
    /// certificate would map), else the first of its certificate's identities that names a
    /// principal. Missing, malformed, unknown, expired or revoked credentials and disabled
    /// principals → UNAUTHENTICATED, with a message that says which but never echoes the token.
    pub async fn authenticate(
        &self,
        creds: &Credentials<'_>,
        request_id: String,
        now: OffsetDateTime,
    ) -> Result<Caller> {
        let oidc = self
            .oidc
            .as_ref()
            .filter(|_| creds.bearer.is_some_and(|t| !t.starts_with("kw_") && Oidc::looks_like_jwt(t)));
        let key = match (creds.bearer, oidc) {
            (Some(token), Some(oidc)) => self.oidc_principal(oidc, token, now).await?,
            (Some(token), None) => {
                let refused = || Error::Unauthenticated("the bearer token is not a valid Keyward API key".into());
                let presented = tokens::parse(token).ok_or_else(refused)?;
                let id = ApiKeyId(presented.id);
                let fresh = self.access_cache.get(&AccessKey::Api(id), now);
                let entry = match fresh {
                    Some(e) => e,
                    None => {
                        let (key, hash) = self.store.api_key(id).await?.ok_or_else(refused)?;
                        let entry = self.read_grants(key.principal, Some((key, hash))).await?;
                        self.access_cache.put(AccessKey::Api(id), entry.clone(), now);
                        entry
                    }
                };
                let Some((key, hash)) = &entry.api_key else { return Err(refused()) };
                if !presented.matches(hash) {
                    return Err(refused());
                }
                if key.revoke_time.is_some() {
                    return Err(Error::Unauthenticated(format!("{} was revoked", key.name())));
                }
                if !key.usable(now) {
                    return Err(Error::Unauthenticated(format!("{} has expired", key.name())));
                }
                if key.last_used_time.is_none_or(|t| now - t >= LAST_USED_GRANULARITY) {
                    self.store.touch_api_key(key.id, now).await?;
                    self.access_cache.touched(&AccessKey::Api(key.id), now);
                }
                entry
            }
            (None, _) if creds.certificate.is_empty() => {
                return Err(Error::Unauthenticated(
                    "no credentials: send `authorization: Bearer <API key>` or a client certificate".into(),
                ));
            }
            (None, _) => {
                let keys: Vec<String> = creds.certificate.iter().map(CertificateIdentity::key).collect();
                let cache_key = AccessKey::Identities(keys.join("\n"));
                match self.access_cache.get(&cache_key, now) {
                    Some(e) => e,
                    None => {
                        let principal = self.store.principal_by_identity(&keys).await?.ok_or_else(|| {
                            Error::Unauthenticated(format!(
                                "the client certificate names no principal; it presents {}: an admin maps one of them with UpdatePrincipal (certificate_identities)",
                                keys.join(", ")
                            ))
                        })?;
                        let entry = self.read_grants(principal, None).await?;
                        self.access_cache.put(cache_key, entry.clone(), now);
                        entry
                    }
                }
            }
        };
        if key.disabled {
            return Err(Error::Unauthenticated(format!("principals/{} is disabled", key.principal)));
        }
        Ok(Caller::principal(key.principal, key.grants, request_id))
    }

    /// The principal an OIDC token's `sub` names, once the token verifies.
    async fn oidc_principal(&self, oidc: &Oidc, token: &str, now: OffsetDateTime) -> Result<Authenticated> {
        let sub = oidc.verify(token, now).await.map_err(Error::Unauthenticated)?;
        let key = oidc_subject_key(&sub);
        let cache_key = AccessKey::Identities(key.clone());
        if let Some(e) = self.access_cache.get(&cache_key, now) {
            return Ok(e);
        }
        let principal = self.store.principal_by_identity(std::slice::from_ref(&key)).await?.ok_or_else(|| {
            Error::Unauthenticated(format!(
                "the OIDC token's subject {sub:?} names no principal: an admin maps it with UpdatePrincipal (oidc_subjects)"
            ))
        })?;
        let entry = self.read_grants(principal, None).await?;
        self.access_cache.put(cache_key, entry.clone(), now);
        Ok(entry)
    }

    /// A principal's grants (and the API key it authenticated with) as stored now.
    async fn read_grants(&self, id: PrincipalId, api_key: Option<(ApiKey, Vec<u8>)>) -> Result<Authenticated> {
        let p = self.store.get_principal(id).await?;
        let groups: BTreeMap<GroupId, Vec<GroupRole>> =
            self.store.memberships_of(p.id).await?.into_iter().map(|m| (m.group, m.roles)).collect();
        let grants = Grants::Principal { id: p.id, account_roles: p.account_roles.clone(), groups };
        Ok(Authenticated { principal: p.id, disabled: p.disabled, grants, api_key })
    }

    /// PERMISSION_DENIED unless the caller has `p` on `scope`.
    pub fn authorize(&self, ctx: &Ctx, p: Permission, scope: Scope, resource: &str) -> Result<()> {
        if ctx.caller.grants.allows(p, scope) {
            return Ok(());
        }
        Err(Error::Forbidden(format!("{} may not {} on {resource}", ctx.caller.actor, permission_verb(p))))
    }

    /// Appends a refusal of authentication or authorization to the audit log, at most 10 a
    /// second (bursts of 100) per process for calls without a principal and as many for
    /// principals' refusals: a flood of bad calls cannot grow the log without bound, nor hide
    /// a principal's refusals. Those over the rate are counted in the next recorded event's
    /// detail.
    pub async fn record_access_refusal(&self, ctx: &Ctx, method: &str, resource: &str, outcome: &str, why: &str) {
        use std::sync::atomic::Ordering;
        let bucket = match ctx.caller.grants {
            Grants::Principal { .. } => &self.refusals.denied,
            Grants::System => &self.refusals.unauthenticated,
        };
        if bucket.limiter.check().is_err() {
            bucket.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let dropped = bucket.dropped.swap(0, Ordering::Relaxed);
        // A name is the caller's input: a megabyte of it is not kept.
        let (resource, why) = (clip(resource, 256), clip(why, 512));
        let detail = if dropped > 0 {
            format!("{method}: {why} ({dropped} refusals before this one were not recorded: over the rate)")
        } else {
            format!("{method}: {why}")
        };
        if let Err(e) = self.record_refusal(ctx, Action::Authorize, &resource, outcome, &detail).await {
            tracing::error!(error = %e, "could not append an access refusal to the audit log");
        }
    }

    /// On the first start of an empty database: makes the principal `admin` (ACCOUNT_ROLE_ADMIN)
    /// with one API key and hands its token to `deliver` before committing (if `deliver` fails,
    /// nothing is made and the next start tries again). Once only: the mark it leaves (one row,
    /// in the same transaction) makes every later start, and a second server racing this one,
    /// answer false without calling `deliver`.
    pub async fn bootstrap_admin(
        &self,
        ctx: &Ctx,
        deliver: impl FnOnce(&SecretString) -> std::io::Result<()>,
    ) -> Result<bool> {
        if self.store.bootstrapped().await? || self.store.principals_exist().await? {
            return Ok(false);
        }
        let admin = Principal {
            id: PrincipalId::new(),
            kind: PrincipalKind::User,
            display_name: "admin".into(),
            description: "made at the first start of this database".into(),
            account_roles: vec![AccountRole::Admin],
            certificate_identities: vec![],
            oidc_subjects: vec![],
            disabled: false,
            create_time: ctx.now,
            update_time: ctx.now,
            etag: new_etag(),
        };
        let key = ApiKey {
            id: ApiKeyId::new(),
            principal: admin.id,
            display_name: "bootstrap".into(),
            create_time: ctx.now,
            expire_time: None,
            revoke_time: None,
            last_used_time: None,
        };
        let (token, hash) = tokens::new_token(key.id.0).map_err(|_| Error::internal("no random bytes"))?;
        let tx = self.store.begin_audited().await?;
        if !tx.mark_bootstrap(admin.id, ctx.now).await? {
            return Ok(false);
        }
        tx.insert_principal(&admin).await?;
        tx.insert_api_key(&key, &hash).await?;
        ok_event(&tx, &ctx.caller, Action::BootstrapAdmin, admin.name(), format!("API key {}", key.name()), ctx.now)
            .await?;
        deliver(&token)
            .map_err(|e| Error::internal(format!("the bootstrap admin's token could not be handed over: {e}")))?;
        tx.commit().await?;
        tracing::warn!(principal = %admin.name(), api_key = %key.name(), "bootstrap admin made");
        Ok(true)
    }

    /// Appends the change's event, commits it, and forgets every cached credential.
    async fn commit_access_change(
        &self,
        tx: crate::store::Store<sea_orm::DatabaseTransaction>,
        ctx: &Ctx,
        action: Action,
        resource: String,
        detail: String,
    ) -> Result<()> {
        ok_event(&tx, &ctx.caller, action, resource, detail, ctx.now).await?;
        tx.commit().await?;
        self.access_cache.clear();
        Ok(())
    }
}

/// What authenticating a credential found: its principal's grants, as read then.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    principal: PrincipalId,
    disabled: bool,
    grants: Grants,
    /// The API key and its secret's SHA-256 (API-key credentials).
    api_key: Option<(ApiKey, Vec<u8>)>,
}

/// A credential, as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AccessKey {
    Api(ApiKeyId),
    /// A certificate's identities, or an OIDC subject, in their stored form.
    Identities(String),
}

/// Credentials authenticated in the last second, so that a busy caller costs no database read
/// per call. Any change of principals, API keys or memberships made through this process empties
/// it; one made through another server counts here within [`ACCESS_CACHE_TTL`].
#[derive(Default)]
pub(crate) struct AccessCache(std::sync::Mutex<std::collections::HashMap<AccessKey, (OffsetDateTime, Authenticated)>>);

/// How long an authenticated credential is believed without reading it again.
pub(crate) const ACCESS_CACHE_TTL: time::Duration = time::Duration::seconds(1);

/// At most this many credentials are kept (the cache is emptied when full).
const ACCESS_CACHE_MAX: usize = 10_000;

impl AccessCache {
    fn get(&self, k: &AccessKey, now: OffsetDateTime) -> Option<Authenticated> {
        let map = self.0.lock().ok()?;
        let (at, e) = map.get(k)?;
        (now >= *at && now - *at < ACCESS_CACHE_TTL).then(|| e.clone())
    }

    fn put(&self, k: AccessKey, e: Authenticated, now: OffsetDateTime) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= ACCESS_CACHE_MAX {
                map.clear();
            }
            map.insert(k, (now, e));
        }
    }

    fn touched(&self, k: &AccessKey, now: OffsetDateTime) {
        if let Ok(mut map) = self.0.lock()
            && let Some((_, e)) = map.get_mut(k)
            && let Some((key, _)) = &mut e.api_key
        {
            key.last_used_time = Some(now);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

fn permission_verb(p: Permission) -> &'static str {
    match p {
        Permission::CreateGroups => "create groups",
        Permission::ReadGroup => "read",
        Permission::ManageGroup => "change the group's settings",
        Permission::ManageMembers => "manage the group's members",
        Permission::ManageKeys => "manage keys",
        Permission::ExportKeys => "copy key material out",
        Permission::ManageConnections => "change AWS KMS connection settings",
        Permission::UseKeys => "use keys",
        Permission::ReadAudit => "read audit events",
        Permission::ReadPrincipals => "read principals",
        Permission::ManagePrincipals => "manage principals",
        Permission::ManageApiKeys => "manage API keys",
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), marked `…` when cut.
fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

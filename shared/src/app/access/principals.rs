//! Principals, API keys, memberships and the caller's own view (`principals/me`): the
//! PrincipalService use cases. Each change is one audited transaction that also forgets the
//! credentials this process had believed (`commit_access_change`).

use secrecy::SecretString;
use time::OffsetDateTime;

use super::super::support::checks::none_bad;
use super::super::support::new_etag;
use super::MAX_API_KEY_LIFETIME;
use crate::app::{Ctx, Keyward};
use crate::crypto::tokens;
use crate::domain::{
    AccountRole, Action, ApiKey, ApiKeyId, CertificateIdentity, FieldViolation, Group, GroupId, GroupRole, Membership,
    Permission, Principal, PrincipalId, PrincipalKind, validate_display_name, validate_oidc_subject,
};
use crate::{Error, Result};

/// What CreatePrincipal takes.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub kind: PrincipalKind,
    pub display_name: String,
    pub description: String,
    pub account_roles: Vec<AccountRole>,
    pub certificate_identities: Vec<CertificateIdentity>,
    pub oidc_subjects: Vec<String>,
}

/// What UpdatePrincipal changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PrincipalPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub account_roles: Option<Vec<AccountRole>>,
    pub certificate_identities: Option<Vec<CertificateIdentity>>,
    pub oidc_subjects: Option<Vec<String>>,
}

/// The caller's own view: who it is, and its groups with its roles in each (every group, with
/// no roles, for an account role that reads them all).
#[derive(Debug, Clone)]
pub struct CurrentPrincipal {
    pub principal: Principal,
    pub groups: Vec<(Group, Vec<GroupRole>)>,
}

fn principal_fields(p: &Principal) -> Vec<FieldViolation> {
    let (display_name, description, identities) = (&p.display_name, &p.description, &p.certificate_identities);
    let mut bad = Vec::new();
    if let Err(e) = validate_display_name(display_name, 100) {
        bad.push(FieldViolation::new("display_name", e));
    }
    if description.chars().count() > 1000 {
        bad.push(FieldViolation::new("description", "at most 1000 characters"));
    }
    if identities.len() > 20 {
        bad.push(FieldViolation::new("certificate_identities", "at most 20"));
    }
    for (i, id) in identities.iter().enumerate() {
        if let Err(e) = id.validate() {
            bad.push(FieldViolation::new(format!("certificate_identities[{i}]"), e));
        }
        if identities[..i].contains(id) {
            bad.push(FieldViolation::new(format!("certificate_identities[{i}]"), "listed twice"));
        }
    }
    if p.oidc_subjects.len() > 20 {
        bad.push(FieldViolation::new("oidc_subjects", "at most 20"));
    }
    for (i, sub) in p.oidc_subjects.iter().enumerate() {
        if let Err(e) = validate_oidc_subject(sub) {
            bad.push(FieldViolation::new(format!("oidc_subjects[{i}]"), e));
        }
        if p.oidc_subjects[..i].contains(sub) {
            bad.push(FieldViolation::new(format!("oidc_subjects[{i}]"), "listed twice"));
        }
    }
    bad
}

fn dedup<T: Ord + Copy>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

impl Keyward {
    pub async fn create_principal(&self, ctx: &Ctx, new: NewPrincipal) -> Result<Principal> {
        let mut p = Principal {
            id: PrincipalId::new(),
            kind: new.kind,
            display_name: new.display_name,
            description: new.description,
            account_roles: dedup(new.account_roles),
            certificate_identities: new.certificate_identities,
            oidc_subjects: new.oidc_subjects,
            disabled: false,
            create_time: ctx.now,
            update_time: ctx.now,
            etag: new_etag(),
        };
        none_bad(principal_fields(&p))?;
        p.certificate_identities.sort();
        p.oidc_subjects.sort();
        let tx = self.store.begin_audited().await?;
        tx.insert_principal(&p).await?;
        self.commit_access_change(tx, ctx, Action::CreatePrincipal, p.name(), format!("{:?}", p.kind)).await?;
        Ok(p)
    }

    pub async fn get_principal(&self, _ctx: &Ctx, id: PrincipalId) -> Result<Principal> {
        self.store.get_principal(id).await
    }

    /// Principals ordered by id after `after`.
    pub async fn list_principals(&self, _ctx: &Ctx, after: Option<String>, limit: u64) -> Result<Vec<Principal>> {
        self.store.list_principals(after, limit).await
    }

    pub async fn update_principal(&self, ctx: &Ctx, id: PrincipalId, patch: PrincipalPatch) -> Result<Principal> {
        let old = self.store.get_principal(id).await?;
        let mut p = old.clone();
        let changed = crate::domain::names_set(&[
            ("display_name", patch.display_name.is_some()),
            ("description", patch.description.is_some()),
            ("account_roles", patch.account_roles.is_some()),
            ("certificate_identities", patch.certificate_identities.is_some()),
            ("oidc_subjects", patch.oidc_subjects.is_some()),
        ]);
        p.display_name = patch.display_name.unwrap_or(p.display_name);
        p.description = patch.description.unwrap_or(p.description);
        if let Some(roles) = patch.account_roles {
            p.account_roles = dedup(roles);
        }
        if let Some(ids) = patch.certificate_identities {
            p.certificate_identities = ids;
        }
        if let Some(subs) = patch.oidc_subjects {
            p.oidc_subjects = subs;
        }
        none_bad(principal_fields(&p))?;
        p.certificate_identities.sort();
        p.oidc_subjects.sort();
        self.replace_principal(ctx, old, p, Action::UpdatePrincipal, changed.join(", ")).await
    }

    /// DisablePrincipal / EnablePrincipal: a disabled principal's credentials are refused from
    /// the next call on.
    pub async fn set_principal_disabled(&self, ctx: &Ctx, id: PrincipalId, disabled: bool) -> Result<Principal> {
        let old = self.store.get_principal(id).await?;
        if ctx.caller.grants.principal() == Some(id) && disabled {
            return Err(Error::precondition(
                crate::Precondition::OwnPrincipal,
                old.name(),
                "a principal cannot disable itself (another admin can)",
            ));
        }
        let p = Principal { disabled, ..old.clone() };
        let action = if disabled { Action::DisablePrincipal } else { Action::EnablePrincipal };
        self.replace_principal(ctx, old, p, action, String::new()).await
    }

    async fn replace_principal(
        &self,
        ctx: &Ctx,
        old: Principal,
        mut p: Principal,
        action: Action,
        detail: String,
    ) -> Result<Principal> {
        p.update_time = ctx.now;
        p.etag = new_etag();
        let tx = self.store.begin_audited().await?;
        tx.update_principal(&p, &old.etag).await?;
        self.commit_access_change(tx, ctx, action, p.name(), detail).await?;
        Ok(p)
    }

    /// CreateApiKey: a new key of `principal` and its token (answered here only). `expire_time`
    /// must be in the future and at most two years ahead.
    pub async fn create_api_key(
        &self,
        ctx: &Ctx,
        principal: PrincipalId,
        display_name: String,
        expire_time: Option<OffsetDateTime>,
    ) -> Result<(ApiKey, SecretString)> {
        let mut bad = Vec::new();
        if let Err(e) = validate_display_name(&display_name, 100) {
            bad.push(FieldViolation::new("api_key.display_name", e));
        }
        if let Some(t) = expire_time {
            if t <= ctx.now {
                bad.push(FieldViolation::new("api_key.expire_time", "must be in the future"));
            } else if t - ctx.now > MAX_API_KEY_LIFETIME {
                bad.push(FieldViolation::new("api_key.expire_time", "at most two years ahead"));
            }
        }
        none_bad(bad)?;
        let p = self.store.get_principal(principal).await?;
        let key = ApiKey {
            id: ApiKeyId::new(),
            principal,
            display_name,
            create_time: ctx.now,
            expire_time: expire_time.map(crate::domain::to_micros),
            revoke_time: None,
            last_used_time: None,
        };
        let (token, hash) = tokens::new_token(key.id.0).map_err(|_| Error::internal("no random bytes"))?;
        let tx = self.store.begin_audited().await?;
        tx.insert_api_key(&key, &hash).await?;
        self.commit_access_change(tx, ctx, Action::CreateApiKey, key.name(), format!("for {}", p.name())).await?;
        Ok((key, token))
    }

    pub async fn list_api_keys(
        &self,
        _ctx: &Ctx,
        principal: PrincipalId,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<ApiKey>> {
        self.store.get_principal(principal).await?;
        self.store.list_api_keys(principal, after, limit).await
    }

    /// RevokeApiKey: refused from the next call on; revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, ctx: &Ctx, principal: PrincipalId, id: ApiKeyId) -> Result<ApiKey> {
        let name = format!("principals/{principal}/apiKeys/{id}");
        let found = self.store.api_key(id).await?.map(|(k, _)| k).filter(|k| k.principal == principal);
        let key = found.ok_or_else(|| Error::not_found(name.clone()))?;
        let tx = self.store.begin_audited().await?;
        tx.revoke_api_key(id, ctx.now).await?;
        self.commit_access_change(tx, ctx, Action::RevokeApiKey, name, String::new()).await?;
        Ok(ApiKey { revoke_time: key.revoke_time.or(Some(ctx.now)), ..key })
    }

    pub async fn create_membership(
        &self,
        ctx: &Ctx,
        group: GroupId,
        principal: PrincipalId,
        roles: Vec<GroupRole>,
    ) -> Result<Membership> {
        if roles.is_empty() {
            return Err(Error::invalid("membership.roles", "at least one role"));
        }
        self.store.get_group(group).await?;
        self.store
            .get_principal(principal)
            .await
            .map_err(|_| Error::invalid("membership.principal", format!("principals/{principal} does not exist")))?;
        let m = Membership { group, principal, roles: dedup(roles), create_time: ctx.now, update_time: ctx.now };
        let tx = self.store.begin_audited().await?;
        tx.insert_membership(&m).await?;
        self.commit_access_change(tx, ctx, Action::CreateMembership, m.name(), roles_detail(&m.roles)).await?;
        Ok(m)
    }

    pub async fn list_memberships(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<Membership>> {
        self.store.get_group(group).await?;
        self.store.list_memberships(group, after, limit).await
    }

    pub async fn update_membership(
        &self,
        ctx: &Ctx,
        group: GroupId,
        principal: PrincipalId,
        roles: Vec<GroupRole>,
    ) -> Result<Membership> {
        if roles.is_empty() {
            return Err(Error::invalid("membership.roles", "at least one role (DeleteMembership removes them all)"));
        }
        let old = self.store.get_membership(group, principal).await?;
        let m = Membership { roles: dedup(roles), update_time: ctx.now, ..old };
        let tx = self.store.begin_audited().await?;
        tx.update_membership(&m).await?;
        self.commit_access_change(tx, ctx, Action::UpdateMembership, m.name(), roles_detail(&m.roles)).await?;
        Ok(m)
    }

    pub async fn delete_membership(&self, ctx: &Ctx, group: GroupId, principal: PrincipalId) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.delete_membership(group, principal).await?;
        let name = format!("groups/{group}/memberships/{principal}");
        self.commit_access_change(tx, ctx, Action::DeleteMembership, name, String::new()).await?;
        Ok(())
    }

    /// GetCurrentPrincipal. The system caller (the worker) has no principal: NOT_FOUND.
    pub async fn current_principal(&self, ctx: &Ctx) -> Result<CurrentPrincipal> {
        let id = ctx.caller.grants.principal().ok_or_else(|| Error::not_found("principals/me"))?;
        let principal = self.store.get_principal(id).await?;
        let mut groups = Vec::new();
        match ctx.caller.grants.groups_with(Permission::ReadGroup) {
            None => {
                let mut after = None;
                loop {
                    let page = self.store.list_groups(None, after, 1000, None).await?;
                    after = page.last().map(|g| g.id.to_string());
                    let n = page.len();
                    groups.extend(page.into_iter().map(|g| (g, vec![])));
                    if n < 1000 {
                        break;
                    }
                }
            }
            Some(_) => {
                for m in self.store.memberships_of(id).await? {
                    groups.push((self.store.get_group(m.group).await?, m.roles));
                }
                groups.sort_by_key(|(g, _)| g.id);
            }
        }
        Ok(CurrentPrincipal { principal, groups })
    }
}

fn roles_detail(roles: &[GroupRole]) -> String {
    format!("roles {roles:?}")
}

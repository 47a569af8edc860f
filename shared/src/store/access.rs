//! Principals, API keys, certificate identities, memberships and the bootstrap mark.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};
use time::OffsetDateTime;

use super::entities::{api_keys, bootstrap, certificate_identities, memberships, principals};
use super::{Store, unique};
use crate::domain::{
    AccountRole, ApiKey, ApiKeyId, CertificateIdentity, GroupId, GroupRole, Membership, Principal, PrincipalId,
    PrincipalKind, oidc_subject_key,
};
use crate::{Error, Result};

fn account_role_name(r: AccountRole) -> &'static str {
    match r {
        AccountRole::Admin => "ADMIN",
        AccountRole::Auditor => "AUDITOR",
    }
}

fn group_role_name(r: GroupRole) -> &'static str {
    match r {
        GroupRole::GroupAdmin => "GROUP_ADMIN",
        GroupRole::KeyManager => "KEY_MANAGER",
        GroupRole::CryptoUser => "CRYPTO_USER",
        GroupRole::Auditor => "AUDITOR",
    }
}

fn names<T: Copy>(roles: &[T], name: fn(T) -> &'static str) -> String {
    serde_json::to_string(&roles.iter().map(|r| name(*r)).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

fn parse_roles<T: Copy>(json: &str, all: &[T], name: fn(T) -> &'static str) -> Result<Vec<T>> {
    let stored: Vec<String> = serde_json::from_str(json).map_err(Error::internal)?;
    stored
        .iter()
        .map(|s| all.iter().copied().find(|r| name(*r) == s).ok_or_else(|| Error::internal(format!("role {s:?}"))))
        .collect()
}

const ACCOUNT_ROLES: [AccountRole; 2] = [AccountRole::Admin, AccountRole::Auditor];
const GROUP_ROLES: [GroupRole; 4] =
    [GroupRole::GroupAdmin, GroupRole::KeyManager, GroupRole::CryptoUser, GroupRole::Auditor];

fn uuid_of(s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(Error::internal)
}

fn principal(m: principals::Model, identities: Vec<String>) -> Result<Principal> {
    let mut certificate_identities: Vec<_> =
        identities.iter().filter_map(|k| CertificateIdentity::from_key(k)).collect();
    certificate_identities.sort();
    let mut oidc_subjects: Vec<String> =
        identities.iter().filter_map(|k| k.strip_prefix("oidc:")).map(str::to_owned).collect();
    oidc_subjects.sort();
    Ok(Principal {
        id: PrincipalId(uuid_of(&m.id)?),
        kind: if m.kind == "SERVICE_ACCOUNT" { PrincipalKind::ServiceAccount } else { PrincipalKind::User },
        display_name: m.display_name,
        description: m.description,
        account_roles: parse_roles(&m.account_roles, &ACCOUNT_ROLES, account_role_name)?,
        certificate_identities,
        oidc_subjects,
        disabled: m.disabled,
        create_time: m.created_at,
        update_time: m.updated_at,
        etag: m.etag,
    })
}

fn principal_row(p: &Principal) -> principals::ActiveModel {
    principals::ActiveModel {
        id: Set(p.id.to_string()),
        kind: Set(match p.kind {
            PrincipalKind::User => "USER",
            PrincipalKind::ServiceAccount => "SERVICE_ACCOUNT",
        }
        .into()),
        display_name: Set(p.display_name.clone()),
        description: Set(p.description.clone()),
        account_roles: Set(names(&p.account_roles, account_role_name)),
        disabled: Set(p.disabled),
        created_at: Set(p.create_time),
        updated_at: Set(p.update_time),
        etag: Set(p.etag.clone()),
    }
}

fn api_key(m: api_keys::Model) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(uuid_of(&m.id)?),
        principal: PrincipalId(uuid_of(&m.principal_id)?),
        display_name: m.display_name,
        create_time: m.created_at,
        expire_time: m.expires_at,
        revoke_time: m.revoked_at,
        last_used_time: m.last_used_at,
    })
}

fn membership(m: memberships::Model) -> Result<Membership> {
    Ok(Membership {
        group: GroupId(uuid_of(&m.group_id)?),
        principal: PrincipalId(uuid_of(&m.principal_id)?),
        roles: parse_roles(&m.roles, &GROUP_ROLES, group_role_name)?,
        create_time: m.created_at,
        update_time: m.updated_at,
    })
}

impl<C: ConnectionTrait + TransactionTrait> Store<C> {
    /// Whether any principal exists.
    pub async fn principals_exist(&self) -> Result<bool> {
        Ok(principals::Entity::find().limit(1).one(&self.db).await?.is_some())
    }

    /// Inserts a principal and its certificate identities. A display name or identity taken →
    /// ALREADY_EXISTS.
    pub async fn insert_principal(&self, p: &Principal) -> Result<()> {
        principals::Entity::insert(principal_row(p))
            .exec(&self.db)
            .await
            .map_err(|e| unique(e, "principal", &p.display_name))?;
        self.insert_identities(p).await
    }

    /// Its certificate identities and OIDC subjects (`oidc:{sub}`), each naming one principal.
    async fn insert_identities(&self, p: &Principal) -> Result<()> {
        let certificates = p.certificate_identities.iter().map(|i| (i.key(), "certificate identity"));
        let subjects = p.oidc_subjects.iter().map(|s| (oidc_subject_key(s), "OIDC subject"));
        for (key, what) in certificates.chain(subjects) {
            let row =
                certificate_identities::ActiveModel { identity: Set(key.clone()), principal_id: Set(p.id.to_string()) };
            certificate_identities::Entity::insert(row).exec(&self.db).await.map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists {
                    message: format!("the {what} {key} belongs to another principal"),
                    resource: key.clone(),
                },
                _ => Error::from(e),
            })?;
        }
        Ok(())
    }

    async fn identities_of(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        Ok(certificate_identities::Entity::find()
            .filter(certificate_identities::Column::PrincipalId.is_in(ids.iter().cloned()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.principal_id, m.identity))
            .collect())
    }

    pub async fn get_principal(&self, id: PrincipalId) -> Result<Principal> {
        let m = principals::Entity::find_by_id(id.to_string()).one(&self.db).await?;
        let m = m.ok_or_else(|| Error::not_found(format!("principals/{id}")))?;
        let identities = self.identities_of(std::slice::from_ref(&m.id)).await?.into_iter().map(|(_, i)| i).collect();
        principal(m, identities)
    }

    /// Principals ordered by id after `after`, at most `limit`.
    pub async fn list_principals(&self, after: Option<String>, limit: u64) -> Result<Vec<Principal>> {
        let mut q = principals::Entity::find().order_by_asc(principals::Column::Id).limit(limit);
        if let Some(a) = after {
            q = q.filter(principals::Column::Id.gt(a));
        }
        let rows = q.all(&self.db).await?;
        let ids: Vec<String> = rows.iter().map(|m| m.id.clone()).collect();
        let identities = self.identities_of(&ids).await?;
        rows.into_iter()
            .map(|m| {
                let mine = identities.iter().filter(|(p, _)| *p == m.id).map(|(_, i)| i.clone()).collect();
                principal(m, mine)
            })
            .collect()
    }

    /// Replaces a principal (and its identities) if its etag is still `expected_etag`; else
    /// ABORTED. Call inside a transaction.
    pub async fn update_principal(&self, p: &Principal, expected_etag: &str) -> Result<()> {
        let mut row = principal_row(p);
        row.created_at = sea_orm::ActiveValue::NotSet;
        let res = principals::Entity::update_many()
            .set(row)
            .filter(principals::Column::Id.eq(p.id.to_string()))
            .filter(principals::Column::Etag.eq(expected_etag))
            .exec(&self.db)
            .await
            .map_err(|e| unique(e, "principal", &p.display_name))?;
        if res.rows_affected == 0 {
            self.get_principal(p.id).await?;
            return Err(Error::Aborted(format!("principals/{} was changed concurrently; read it again", p.id)));
        }
        certificate_identities::Entity::delete_many()
            .filter(certificate_identities::Column::PrincipalId.eq(p.id.to_string()))
            .exec(&self.db)
            .await?;
        self.insert_identities(p).await
    }

    /// The principal the first of `identities` (stored form) that is registered names.
    pub async fn principal_by_identity(&self, identities: &[String]) -> Result<Option<PrincipalId>> {
        if identities.is_empty() {
            return Ok(None);
        }
        let rows = certificate_identities::Entity::find()
            .filter(certificate_identities::Column::Identity.is_in(identities.iter().cloned()))
            .all(&self.db)
            .await?;
        let first = identities.iter().find_map(|i| rows.iter().find(|r| r.identity == *i));
        first.map(|r| uuid_of(&r.principal_id).map(PrincipalId)).transpose()
    }

    // ----- API keys -----

    pub async fn insert_api_key(&self, k: &ApiKey, secret_sha256: &[u8]) -> Result<()> {
        let row = api_keys::ActiveModel {
            id: Set(k.id.to_string()),
            principal_id: Set(k.principal.to_string()),
            display_name: Set(k.display_name.clone()),
            secret_sha256: Set(secret_sha256.to_vec()),
            created_at: Set(k.create_time),
            expires_at: Set(k.expire_time),
            revoked_at: Set(k.revoke_time),
            last_used_at: Set(k.last_used_time),
        };
        api_keys::Entity::insert(row).exec(&self.db).await?;
        Ok(())
    }

    /// An API key and the SHA-256 of its secret.
    pub async fn api_key(&self, id: ApiKeyId) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let m = api_keys::Entity::find_by_id(id.to_string()).one(&self.db).await?;
        m.map(|m| {
            let hash = m.secret_sha256.clone();
            api_key(m).map(|k| (k, hash))
        })
        .transpose()
    }

    /// A principal's API keys ordered by id after `after`, at most `limit`.
    pub async fn list_api_keys(
        &self,
        principal: PrincipalId,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<ApiKey>> {
        let mut q = api_keys::Entity::find()
            .filter(api_keys::Column::PrincipalId.eq(principal.to_string()))
            .order_by_asc(api_keys::Column::Id)
            .limit(limit);
        if let Some(a) = after {
            q = q.filter(api_keys::Column::Id.gt(a));
        }
        q.all(&self.db).await?.into_iter().map(api_key).collect()
    }

    /// Marks a key revoked at `now` (kept: revoked once, revoked for good).
    pub async fn revoke_api_key(&self, id: ApiKeyId, now: OffsetDateTime) -> Result<()> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, Expr::value(Some(now)))
            .filter(api_keys::Column::Id.eq(id.to_string()))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records a use of the key at `now`.
    pub async fn touch_api_key(&self, id: ApiKeyId, now: OffsetDateTime) -> Result<()> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(Some(now)))
            .filter(api_keys::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ----- memberships -----

    /// Inserts a membership; one per group and principal (ALREADY_EXISTS).
    pub async fn insert_membership(&self, m: &Membership) -> Result<()> {
        let row = memberships::ActiveModel {
            group_id: Set(m.group.to_string()),
            principal_id: Set(m.principal.to_string()),
            roles: Set(names(&m.roles, group_role_name)),
            created_at: Set(m.create_time),
            updated_at: Set(m.update_time),
        };
        memberships::Entity::insert(row).exec(&self.db).await.map_err(|e| unique(e, "membership", &m.name()))?;
        Ok(())
    }

    pub async fn get_membership(&self, group: GroupId, principal: PrincipalId) -> Result<Membership> {
        let m = memberships::Entity::find_by_id((group.to_string(), principal.to_string())).one(&self.db).await?;
        membership(m.ok_or_else(|| Error::not_found(format!("groups/{group}/memberships/{principal}")))?)
    }

    /// A group's memberships ordered by principal after `after`, at most `limit`.
    pub async fn list_memberships(&self, group: GroupId, after: Option<String>, limit: u64) -> Result<Vec<Membership>> {
        let mut q = memberships::Entity::find()
            .filter(memberships::Column::GroupId.eq(group.to_string()))
            .order_by_asc(memberships::Column::PrincipalId)
            .limit(limit);
        if let Some(a) = after {
            q = q.filter(memberships::Column::PrincipalId.gt(a));
        }
        q.all(&self.db).await?.into_iter().map(membership).collect()
    }

    /// Every membership of a principal.
    pub async fn memberships_of(&self, principal: PrincipalId) -> Result<Vec<Membership>> {
        memberships::Entity::find()
            .filter(memberships::Column::PrincipalId.eq(principal.to_string()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(membership)
            .collect()
    }

    pub async fn update_membership(&self, m: &Membership) -> Result<()> {
        memberships::Entity::update_many()
            .col_expr(memberships::Column::Roles, Expr::value(names(&m.roles, group_role_name)))
            .col_expr(memberships::Column::UpdatedAt, Expr::value(m.update_time))
            .filter(memberships::Column::GroupId.eq(m.group.to_string()))
            .filter(memberships::Column::PrincipalId.eq(m.principal.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn delete_membership(&self, group: GroupId, principal: PrincipalId) -> Result<()> {
        let res = memberships::Entity::delete_by_id((group.to_string(), principal.to_string())).exec(&self.db).await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found(format!("groups/{group}/memberships/{principal}")));
        }
        Ok(())
    }

    /// Every membership of a group goes (the group is being deleted).
    pub(super) async fn delete_memberships_of_group(&self, group: GroupId) -> Result<()> {
        memberships::Entity::delete_many()
            .filter(memberships::Column::GroupId.eq(group.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ----- bootstrap -----

    /// Marks that the bootstrap admin `principal` was made; false if it was made before (the
    /// mark is one row: a second start, or a second server racing, finds it taken).
    pub async fn mark_bootstrap(&self, principal: PrincipalId, now: OffsetDateTime) -> Result<bool> {
        let row = bootstrap::ActiveModel { id: Set(1), principal_id: Set(principal.to_string()), created_at: Set(now) };
        match bootstrap::Entity::insert(row).exec(&self.db).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the bootstrap admin was made.
    pub async fn bootstrapped(&self) -> Result<bool> {
        Ok(bootstrap::Entity::find_by_id(1).one(&self.db).await?.is_some())
    }
}

//! The sealed values of the database as a whole: the start-up check that the keyring opens
//! them, and sealing every value again under the current master key (`reseal`).
//!
//! Sealed values: each AWS_KMS group's `secret_access_key` and `client_private_key_pem`, and
//! each Keyward key's material. `master_keys` records the id of every master key that has been
//! current (never a key), so that a start can tell a master key left out of the keyring (its
//! values would not open: the start is refused) from one damaged value (only its owner fails).

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

use super::entities::{groups, keys};
use super::{Store, material_binding, secret_binding};
use crate::crypto::sealed_key_id;
use crate::domain::{GroupId, KeyId};
use crate::{Error, Precondition, Result};

/// One stored sealed value and whose it is.
struct Sealed {
    /// `groups/{g}` or `groups/{g}/keys/{k}`.
    owner: String,
    /// Where it is stored: a group's setting, or a key's material.
    slot: Slot,
    binding: String,
    value: Vec<u8>,
}

enum Slot {
    GroupSecret { id: String, setting: &'static str },
    KeyMaterial { id: String },
}

/// What [`Store::reseal`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// Values sealed again under the current master key.
    pub resealed: usize,
    /// Values under the current key already.
    pub current: usize,
    /// Values that do not open under the keyring (left as they are), by owner.
    pub unopened: Vec<String>,
}

impl<C: ConnectionTrait + TransactionTrait> Store<C> {
    async fn sealed_values(&self) -> Result<Vec<Sealed>> {
        let mut out = Vec::new();
        type GroupSecrets = (String, Option<Vec<u8>>, Option<Vec<u8>>);
        let rows: Vec<GroupSecrets> = groups::Entity::find()
            .select_only()
            .column(groups::Column::Id)
            .column(groups::Column::SecretAccessKeySealed)
            .column(groups::Column::ClientPrivateKeySealed)
            .into_tuple()
            .all(&self.db)
            .await?;
        for (id, secret, private_key) in rows {
            let Some(gid) = GroupId::parse(&id) else { continue };
            for (setting, value) in [("secret_access_key", secret), ("client_private_key_pem", private_key)] {
                if let Some(value) = value {
                    out.push(Sealed {
                        owner: format!("groups/{id}"),
                        slot: Slot::GroupSecret { id: id.clone(), setting },
                        binding: secret_binding(&gid, setting),
                        value,
                    });
                }
            }
        }
        let rows: Vec<(String, String, Option<Vec<u8>>)> = keys::Entity::find()
            .select_only()
            .column(keys::Column::Id)
            .column(keys::Column::GroupId)
            .column(keys::Column::MaterialSealed)
            .filter(keys::Column::MaterialSealed.is_not_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        for (id, group, value) in rows {
            let (Some(kid), Some(value)) = (KeyId::parse(&id), value) else { continue };
            out.push(Sealed {
                owner: format!("groups/{group}/keys/{id}"),
                slot: Slot::KeyMaterial { id: id.clone() },
                binding: material_binding(kid),
                value,
            });
        }
        Ok(out)
    }

    /// Checked at every start, after the migrations: records the current master key's id, then
    /// refuses (FAILED_PRECONDITION, saying which key ids are missing) when values are sealed
    /// under a master key that was once current but is not in the keyring, or when values of
    /// the format without key ids exist and none opens. A single value that does not open for
    /// another reason (damaged) is left to fail its owner only.
    pub async fn check_keyring(&self) -> Result<()> {
        let now = crate::domain::to_micros(time::OffsetDateTime::now_utc());
        let insert = Query::insert()
            .into_table(Alias::new("master_keys"))
            .columns([Alias::new("id"), Alias::new("first_used_at")])
            .values_panic([self.master_key.current_id().into(), now.into()])
            .on_conflict(OnConflict::column(Alias::new("id")).do_nothing().to_owned())
            .to_owned();
        self.db.execute(&insert).await?;
        let select = Query::select().column(Alias::new("id")).from(Alias::new("master_keys")).to_owned();
        let registered: Vec<String> =
            self.db.query_all(&select).await?.iter().filter_map(|r| r.try_get::<String>("", "id").ok()).collect();
        let ring = self.master_key.ids();
        let mut missing: BTreeMap<String, usize> = BTreeMap::new();
        let (mut legacy, mut legacy_open) = (0usize, 0usize);
        for s in self.sealed_values().await? {
            match sealed_key_id(&s.value) {
                Ok(Some(id)) => {
                    let id = hex::encode(id);
                    if registered.contains(&id) && !ring.contains(&id) {
                        *missing.entry(id).or_default() += 1;
                    }
                }
                Ok(None) => {
                    legacy += 1;
                    legacy_open += usize::from(self.master_key.open(&s.value, &s.binding).is_ok());
                }
                Err(_) => {}
            }
        }
        if !missing.is_empty() {
            let list: Vec<String> =
                missing.iter().map(|(id, n)| format!("{id} ({n} value{})", if *n == 1 { "" } else { "s" })).collect();
            return Err(Error::precondition(
                Precondition::SealedValue,
                "master keyring",
                format!(
                    "the database holds values sealed under master key {} that the keyring (keys {}) lacks: start with that key as the master key (KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_FILE) or in KEYWARD_PREVIOUS_MASTER_KEYS",
                    list.join(", "),
                    ring.join(", ")
                ),
            ));
        }
        if legacy > 0 && legacy_open == 0 {
            return Err(Error::precondition(
                Precondition::SealedValue,
                "master keyring",
                format!(
                    "none of the {legacy} values sealed before master key ids opens under the keyring (keys {}): this is not the master key that sealed them",
                    ring.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Seals every value that is not under the current master key again under it. Each value
    /// is replaced only if it is still the one read (a value changed meanwhile is left to its
    /// new writer), so servers may keep running; run it again to finish after an interruption.
    pub async fn reseal(&self) -> Result<ResealReport> {
        let mut report = ResealReport::default();
        for s in self.sealed_values().await? {
            if !self.master_key.needs_reseal(&s.value) {
                report.current += 1;
                continue;
            }
            let Ok(plain) = self.master_key.open(&s.value, &s.binding) else {
                report.unopened.push(s.owner);
                continue;
            };
            let new = self.master_key.seal(&plain, &s.binding).map_err(Error::internal)?;
            let changed = match &s.slot {
                Slot::GroupSecret { id, setting } => {
                    let column = if *setting == "secret_access_key" {
                        groups::Column::SecretAccessKeySealed
                    } else {
                        groups::Column::ClientPrivateKeySealed
                    };
                    groups::Entity::update_many()
                        .col_expr(column, Expr::value(new))
                        .filter(groups::Column::Id.eq(id.clone()))
                        .filter(column.eq(s.value.clone()))
                        .exec(&self.db)
                        .await?
                        .rows_affected
                }
                Slot::KeyMaterial { id } => {
                    keys::Entity::update_many()
                        .col_expr(keys::Column::MaterialSealed, Expr::value(new))
                        .filter(keys::Column::Id.eq(id.clone()))
                        .filter(keys::Column::MaterialSealed.eq(s.value.clone()))
                        .exec(&self.db)
                        .await?
                        .rows_affected
                }
            };
            report.resealed += changed as usize;
        }
        self.wrote_keys();
        Ok(report)
    }
}

//! The estate in numbers, for the metrics: keys by group and state, deletions pending, imported
//! material about to expire, rotations due. Counting is done by the database; only the rows
//! that carry a time in their JSON (keys pending deletion, keys with expiring material) are read.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use time::OffsetDateTime;

use super::entities::keys;
use super::{Store, convert, ms};
use crate::Result;
use crate::domain::KeyState;

/// Counts over every key Keyward holds, at one `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estate {
    /// `(group id, state name, keys)`, for every group and state that has keys.
    pub keys: Vec<(String, String, u64)>,
    /// Keys PENDING_DELETION.
    pub pending_deletion: u64,
    /// The soonest deletion time among them (where AWS told it).
    pub next_deletion: Option<OffsetDateTime>,
    /// Keys whose imported material expires (AWS `ValidTo`) within 30 days of `now`, or has.
    pub material_expiring: u64,
    /// Keys whose scheduled rotation is due at `now`.
    pub rotations_due: u64,
    /// Of those, due for more than a day (the worker is not keeping up, or keeps failing).
    pub rotations_overdue: u64,
    /// Keys whose last scheduled rotation failed.
    pub rotations_failed: u64,
}

impl<C: ConnectionTrait> Store<C> {
    /// The estate at `now`.
    pub async fn estate(&self, now: OffsetDateTime) -> Result<Estate> {
        let counts: Vec<(String, String, i64)> = keys::Entity::find()
            .select_only()
            .column(keys::Column::GroupId)
            .column(keys::Column::State)
            .column_as(keys::Column::Id.count(), "n")
            .group_by(keys::Column::GroupId)
            .group_by(keys::Column::State)
            .into_tuple()
            .all(&self.db)
            .await?;
        let pending = KeyState::PendingDeletion { deletion_time: None }.name();
        let pending_deletion =
            counts.iter().filter(|(_, s, _)| s == pending).map(|(_, _, n)| u64::try_from(*n).unwrap_or(0)).sum();
        let keys = counts.into_iter().map(|(g, s, n)| (g, s, u64::try_from(n).unwrap_or(0))).collect();

        let details = |rows: Vec<Option<String>>| {
            rows.into_iter().flatten().filter_map(|j| convert::aws_details(&j).ok()).collect::<Vec<_>>()
        };
        let pending_rows: Vec<Option<String>> = keys::Entity::find()
            .select_only()
            .column(keys::Column::Aws)
            .filter(keys::Column::State.eq(pending))
            .into_tuple()
            .all(&self.db)
            .await?;
        let next_deletion = details(pending_rows).into_iter().filter_map(|(_, t)| t).min();
        // `valid_to` is written as an RFC 3339 string when set, `null` otherwise.
        let expiring_rows: Vec<Option<String>> = keys::Entity::find()
            .select_only()
            .column(keys::Column::Aws)
            .filter(keys::Column::Aws.like("%\"valid_to\":\"%"))
            .into_tuple()
            .all(&self.db)
            .await?;
        let horizon = now + time::Duration::days(30);
        let material_expiring =
            details(expiring_rows).iter().filter(|(d, _)| d.valid_to.is_some_and(|t| t <= horizon)).count() as u64;

        let due = |by: OffsetDateTime| keys::Entity::find().filter(keys::Column::NextRotationAtMs.lte(ms(by)));
        let rotations_due = due(now).count(&self.db).await?;
        let rotations_overdue = due(now - time::Duration::days(1)).count(&self.db).await?;
        // The policy's JSON ends with its `failures` count.
        let rotations_failed = keys::Entity::find()
            .filter(keys::Column::RotationPolicy.is_not_null())
            .filter(Expr::col(keys::Column::RotationPolicy).not_like("%\"failures\":0}"))
            .count(&self.db)
            .await?;
        Ok(Estate {
            keys,
            pending_deletion,
            next_deletion,
            material_expiring,
            rotations_due,
            rotations_overdue,
            rotations_failed,
        })
    }
}

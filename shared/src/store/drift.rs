//! Sync drift at rest: a run's summary as JSON on `sync_runs.drift`, its changes key by key in
//! `sync_drifts` (written with the run's final state, read page by page).

use std::collections::BTreeMap;

use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use serde::{Deserialize, Serialize};

use super::Store;
use super::convert::corrupt;
use super::entities::sync_drifts;
use crate::Result;
use crate::domain::{DriftChange, DriftKind, DriftSummary, GroupId, KeyDrift, KeyId, SyncRunId};

#[derive(Serialize, Deserialize, Default)]
struct SummaryJson {
    #[serde(default)]
    keys: i64,
    #[serde(default)]
    fields: BTreeMap<String, i64>,
    #[serde(default)]
    not_applied: i64,
}

#[derive(Serialize, Deserialize)]
struct ChangeJson {
    field: String,
    kind: String,
    before: String,
    after: String,
}

pub(super) fn summary_json(s: &DriftSummary) -> String {
    let j = SummaryJson { keys: s.keys, fields: s.fields.clone(), not_applied: s.not_applied };
    serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
}

pub(super) fn summary(text: &str) -> Result<DriftSummary> {
    let j: SummaryJson = serde_json::from_str(text).map_err(|_| corrupt("sync_runs.drift"))?;
    Ok(DriftSummary { keys: j.keys, fields: j.fields, not_applied: j.not_applied })
}

impl<C: ConnectionTrait + TransactionTrait> Store<C> {
    /// Records a run's drift, key by key, numbered from 0 in the order given.
    pub async fn insert_drifts(&self, group: GroupId, run: SyncRunId, drifts: &[KeyDrift]) -> Result<()> {
        let rows: Vec<sync_drifts::ActiveModel> = drifts
            .iter()
            .enumerate()
            .map(|(seq, d)| {
                let changes: Vec<ChangeJson> = d
                    .changes
                    .iter()
                    .map(|c| ChangeJson {
                        field: c.field.clone(),
                        kind: c.kind.name().to_owned(),
                        before: c.before.clone(),
                        after: c.after.clone(),
                    })
                    .collect();
                sync_drifts::ActiveModel {
                    run_id: Set(run.to_string()),
                    seq: Set(seq as i64),
                    group_id: Set(group.to_string()),
                    key_id: Set(d.key_id.map(|k| k.to_string())),
                    key_name: Set(d.key_name.clone()),
                    aws_key_arn: Set(d.aws_key_arn.clone()),
                    changes: Set(serde_json::to_string(&changes).unwrap_or_else(|_| "[]".into())),
                    applied: Set(d.applied),
                }
            })
            .collect();
        // A few hundred rows per statement stay below every database's bind-parameter limit.
        for chunk in rows.chunks(500) {
            sync_drifts::Entity::insert_many(chunk.to_vec()).exec_without_returning(&self.db).await?;
        }
        Ok(())
    }

    /// A run's drift from position `after` on (exclusive; `None`: from the start), at most
    /// `limit`, with each entry's position.
    pub async fn list_drifts(
        &self,
        group: GroupId,
        run: SyncRunId,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<(i64, KeyDrift)>> {
        let mut q = sync_drifts::Entity::find()
            .filter(sync_drifts::Column::RunId.eq(run.to_string()))
            .filter(sync_drifts::Column::GroupId.eq(group.to_string()))
            .order_by_asc(sync_drifts::Column::Seq)
            .limit(limit);
        if let Some(a) = after {
            q = q.filter(sync_drifts::Column::Seq.gt(a));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(|m| {
                let changes: Vec<ChangeJson> =
                    serde_json::from_str(&m.changes).map_err(|_| corrupt("sync_drifts.changes"))?;
                let changes = changes
                    .into_iter()
                    .map(|c| {
                        Ok(DriftChange {
                            kind: DriftKind::from_name(&c.kind).ok_or_else(|| corrupt("sync_drifts.changes"))?,
                            field: c.field,
                            before: c.before,
                            after: c.after,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let key_id = m.key_id.as_deref().map(|k| KeyId::parse(k).ok_or_else(|| corrupt("sync_drifts.key_id")));
                Ok((
                    m.seq,
                    KeyDrift {
                        key_id: key_id.transpose()?,
                        key_name: m.key_name,
                        aws_key_arn: m.aws_key_arn,
                        changes,
                        applied: m.applied,
                    },
                ))
            })
            .collect()
    }
}

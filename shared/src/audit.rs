//! Audit use cases: recording refusals, listing events, verifying the hash chain. Successful
//! changes append their own event inside the transaction of the change (see `Keyward::commit_with_event`).

use time::OffsetDateTime;

use crate::domain::{AuditEvent, Caller, NewAuditEvent, OUTCOME_OK};
use crate::store::{AuditQuery, BrokenLink, Store};
use crate::{Keyward, Result};

/// Longest `detail` kept in an event.
const DETAIL_MAX: usize = 512;

fn cap(mut s: String) -> String {
    if s.len() > DETAIL_MAX {
        let mut end = DETAIL_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Keyward {
    /// Appends the event of a refused mutating call (`outcome` = the gRPC code name,
    /// `detail` = the error message shown to the caller).
    pub async fn record_refusal(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        outcome: &str,
        detail: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.append_event(
            NewAuditEvent {
                caller,
                action,
                resource: cap(resource.to_owned()),
                outcome,
                detail: cap(detail.to_owned()),
            },
            now,
        )
        .await?;
        tx.commit().await
    }

    /// ListAuditEvents: chain order after `after_seq`.
    pub async fn list_audit_events(&self, q: &AuditQuery, after_seq: i64, limit: u64) -> Result<Vec<AuditEvent>> {
        self.store.list_events(q, after_seq, limit).await
    }

    /// Verifies the whole chain: (events checked, first broken link).
    pub async fn verify_audit_chain(&self) -> Result<(i64, Option<BrokenLink>)> {
        self.store.verify_audit_chain().await
    }
}

/// Appends the success event of `action` on `resource` in `tx`.
pub(crate) async fn ok_event(
    tx: &Store<sea_orm::DatabaseTransaction>,
    caller: &Caller,
    action: &str,
    resource: String,
    detail: String,
    now: OffsetDateTime,
) -> Result<()> {
    tx.append_event(NewAuditEvent { caller, action, resource, outcome: OUTCOME_OK, detail: cap(detail) }, now).await?;
    Ok(())
}

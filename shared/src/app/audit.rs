//! Audit use cases: recording refusals, listing events, verifying the hash chain. Successful
//! changes append their own event inside the transaction of the change
//! (`support::records::ok_event`).

use super::support::records::cap;
use super::{Ctx, Keyward};
use crate::domain::{Action, AuditEvent, NewAuditEvent, Permission};
use crate::store::{AuditQuery, BrokenLink};
use crate::{Error, Result};

impl Keyward {
    /// Appends the event of a refused call (`outcome` = the code name of the error, e.g.
    /// `INVALID_ARGUMENT`; `detail` = the message shown to the caller).
    pub async fn record_refusal(
        &self,
        ctx: &Ctx,
        action: Action,
        resource: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        let event = NewAuditEvent {
            caller: &ctx.caller,
            action,
            resource: cap(resource.to_owned()),
            outcome,
            detail: cap(detail.to_owned()),
        };
        tx.append_event(event, ctx.now).await?;
        tx.commit().await
    }

    /// ListAuditEvents: chain order after `after_seq`; only the events of groups where the
    /// caller reads audit events, unless it reads them account-wide. PERMISSION_DENIED when it
    /// reads them nowhere.
    pub async fn list_audit_events(
        &self,
        ctx: &Ctx,
        q: &AuditQuery,
        after_seq: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        let groups = ctx.caller.grants.groups_with(Permission::ReadAudit);
        if groups.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Forbidden(format!("{} may read the audit events of no group", ctx.caller.actor)));
        }
        let q = AuditQuery { groups, ..q.clone() };
        self.store.list_events(&q, after_seq, limit).await
    }

    /// Verifies the whole chain: (events checked, first broken link).
    pub async fn verify_audit_chain(&self, _ctx: &Ctx) -> Result<(i64, Option<BrokenLink>)> {
        self.store.verify_audit_chain().await
    }
}

//! Runs the scheduled sync of every AWS KMS group whose `sync_schedule` is due.
//! With several workers on one database, each due sync is claimed by one conditional
//! UPDATE (`groups.next_sync_at_ms`), and the sync itself holds the group's lease.

use time::OffsetDateTime;

use crate::app::Keyward;
use crate::domain::{Action, GroupId, SyncTrigger};
use crate::{Error, Result};

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Groups synced successfully by this worker.
    pub synced: Vec<GroupId>,
    /// Groups whose sync failed (logged and audited; the next due time is already moved on).
    pub failed: Vec<GroupId>,
    /// Due groups another worker claimed first, or whose sync was already running.
    pub skipped: Vec<GroupId>,
}

/// One pass at `now`. One group's failure never stops the others.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report> {
    let mut report = Report::default();
    let ctx = crate::app::Ctx::worker(now);
    let now = ctx.now;
    for (group, seen_next) in keyward.store.groups_due_for_sync(now).await? {
        if !keyward.store.claim_scheduled_sync(group, seen_next, now).await? {
            report.skipped.push(group);
            continue;
        }
        match keyward.sync_group(&ctx, group, SyncTrigger::Scheduled).await {
            Ok(run) => {
                tracing::info!(group_id = %group, added = run.added, updated = run.updated, "scheduled sync done");
                report.synced.push(group);
            }
            Err(Error::Aborted(m)) => {
                tracing::info!(group_id = %group, reason = %m, "scheduled sync skipped");
                report.skipped.push(group);
            }
            Err(e) => {
                tracing::warn!(group_id = %group, error = %e, "scheduled sync failed");
                let resource = format!("groups/{group}");
                let recorded =
                    keyward.record_refusal(&ctx, Action::ScheduledSync, &resource, e.code_name(), &e.to_string()).await;
                if let Err(a) = recorded {
                    tracing::error!(group_id = %group, error = %a, "could not audit a failed scheduled sync");
                }
                report.failed.push(group);
            }
        }
    }
    Ok(report)
}

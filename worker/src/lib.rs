//! keyward-worker as a library: its jobs, each `run_once(keyward, now) -> Report`. The binary
//! only schedules them; tests call `run_once` with a chosen `now`.

pub mod scheduled_sync {
    //! Runs the scheduled sync of every AWS KMS group whose `sync_schedule` is due.
    //! With several workers on one database, each due sync is claimed by one conditional
    //! UPDATE (`groups.next_sync_at_ms`), and the sync itself holds the group's lease.

    use keyward_shared::domain::{Caller, GroupId, SyncTrigger, actions};
    use keyward_shared::{Error, Keyward};
    use time::OffsetDateTime;

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
    pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report, Error> {
        let mut report = Report::default();
        for (group, seen_next) in keyward.store().groups_due_for_sync(now).await? {
            if !keyward.store().claim_scheduled_sync(group, seen_next, now).await? {
                report.skipped.push(group);
                continue;
            }
            let caller = Caller::worker();
            match keyward.sync_group(group, SyncTrigger::Scheduled, &caller, now).await {
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
                    let recorded = keyward
                        .record_refusal(&caller, actions::SCHEDULED_SYNC, &resource, e.code_name(), &e.to_string(), now)
                        .await;
                    if let Err(a) = recorded {
                        tracing::error!(group_id = %group, error = %a, "could not audit a failed scheduled sync");
                    }
                    report.failed.push(group);
                }
            }
        }
        Ok(report)
    }
}

pub mod deletion_check {
    //! The deletion-window check: virtual keys PENDING_DELETION whose deletion time has passed
    //! are looked up in AWS; gone → DELETED (DeleteKey is then allowed), still there → asked
    //! again an hour later, cancelled outside Keyward → refreshed. See
    //! `Keyward::check_deletion_windows`.

    use keyward_shared::{DeletionCheckReport, Error, Keyward};
    use time::OffsetDateTime;

    /// One pass at `now`.
    pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<DeletionCheckReport, Error> {
        keyward.check_deletion_windows(now).await
    }
}

pub mod recovery {
    //! Recovery of interrupted imports: journal entries (`operations`) left unfinished for ten
    //! minutes — a crash between AWS CreateKey and ImportKeyMaterial, or a compensation AWS
    //! refused — get their AWS key scheduled for deletion and their virtual key marked
    //! PENDING_DELETION. See `Keyward::recover_operations`.

    use keyward_shared::{Error, Keyward, RecoveryReport};
    use time::OffsetDateTime;

    /// One pass at `now`.
    pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<RecoveryReport, Error> {
        keyward.recover_operations(now).await
    }
}

//! Recovery of interrupted journaled operations, entries left open for ten minutes. An import
//! (a crash between AWS CreateKey and ImportKeyMaterial, or a compensation AWS refused) gets its
//! AWS key scheduled for deletion and its virtual key marked PENDING_DELETION. A rotation whose
//! new key exists — a Keyward key's rotation always — is resumed forward from the step it reached
//! (one that stopped for good is undone by the rotation itself).

use time::OffsetDateTime;

use crate::Result;
use crate::app::support::aws_keys::next_check;
use crate::app::support::journal::{self, STALE_OPERATION};
use crate::app::support::records::ok_event;
use crate::app::support::{ABANDONED_WINDOW, new_etag};
use crate::app::{Ctx, Keyward};
use std::time::Duration;

use crate::domain::{Action, GroupId, KeyId, OpKind, OpState, Operation, RotationKind, SyncTrigger};

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Interrupted imports whose AWS key was scheduled for deletion.
    pub compensated: Vec<KeyId>,
    /// Interrupted before AWS answered CreateKey: nothing known to clean up (a sync would list it).
    pub failed: Vec<KeyId>,
    /// Compensation or resumption failed again (or the key was busy); retried on a later pass.
    pub retry: Vec<KeyId>,
    /// Interrupted rotations finished (the rotated key's id).
    pub resumed: Vec<KeyId>,
    /// AWS_KMS groups synced because an entry was interrupted at its first step, where AWS may
    /// have made a key that Keyward had not recorded yet: the sync records it.
    pub synced: Vec<GroupId>,
}

/// One pass at `now`: every journal entry unfinished for [`STALE_OPERATION`] is compensated.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report> {
    let ctx = Ctx::worker(now);
    let now = ctx.now;
    let mut report = Report::default();
    let mut to_sync = Vec::new();
    for mut op in keyward.store.stale_operations(now - STALE_OPERATION).await? {
        if !keyward.store.claim_operation(&op, now).await? {
            continue;
        }
        op.updated_at = now;
        if op.state == OpState::Started {
            for g in aws_groups(&op) {
                if !to_sync.contains(&g) {
                    to_sync.push(g);
                }
            }
        }
        // A Keyward key's rotation holds its new material from the start: always forward.
        if op.plan.as_ref().is_some_and(|p| p.kind == RotationKind::KeywardKey) {
            let Some(lock) = keyward.lock_key_within(op.key_id, Duration::from_secs(5)).await? else {
                report.retry.push(op.key_id);
                continue;
            };
            match keyward.run_keyward_rotation(&ctx, &mut op, lock).await {
                Ok(_) => report.resumed.push(op.key_id),
                Err(e) => {
                    tracing::warn!(key_id = %op.key_id, error = %e, "could not resume a rotation; retried later");
                    report.retry.push(op.key_id);
                }
            }
            continue;
        }
        let Some(aws_id) = op.aws_key_id.clone() else {
            op.fail("interrupted before AWS CreateKey answered; a sync lists any key it made", now);
            journal::record(&keyward.store, &op).await?;
            report.failed.push(op.key_id);
            continue;
        };
        let kms = keyward.group_client(op.group_id).await?;
        if op.kind == OpKind::Rotate {
            let Some(lock) = keyward.lock_key_within(op.key_id, Duration::from_secs(5)).await? else {
                report.retry.push(op.key_id);
                continue;
            };
            match keyward.run_rotation(&ctx, &kms, &mut op, lock).await {
                Ok(_) => report.resumed.push(op.key_id),
                Err(e) => {
                    tracing::warn!(key_id = %op.key_id, error = %e, "could not resume a rotation; retried later");
                    report.retry.push(op.key_id);
                }
            }
            continue;
        }
        let Some(deletion) = keyward.abandon_aws_key(&kms, &aws_id, &[]).await else {
            report.retry.push(op.key_id);
            continue;
        };
        op.compensate("interrupted import; AWS key scheduled for deletion", now);
        let tx = keyward.store.begin_audited().await?;
        if let Ok(mut key) = tx.get_key(op.group_id, op.key_id).await {
            key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
            key.update_time = now;
            let prev_etag = std::mem::replace(&mut key.etag, new_etag());
            tx.replace_key(&key, &prev_etag).await?;
            tx.set_next_check(key.id, next_check(&key, now)).await?;
        }
        journal::record(&tx, &op).await?;
        let resource = format!("groups/{}/keys/{}", op.group_id, op.key_id);
        ok_event(&tx, &ctx.caller, Action::RecoverOperation, resource, op.detail.clone(), now).await?;
        tx.commit().await?;
        report.compensated.push(op.key_id);
    }
    for g in to_sync {
        match keyward.sync_group(&ctx, g, SyncTrigger::Scheduled).await {
            Ok(_) => report.synced.push(g),
            Err(e) => {
                tracing::warn!(group_id = %g, error = %e, "could not sync after an interrupted operation; the scheduled sync will")
            }
        }
    }
    Ok(report)
}

/// The AWS_KMS groups an operation may have made AWS keys in: its own (an import, a new-key
/// rotation) and those of a Keyward key's AWS copies.
fn aws_groups(op: &Operation) -> Vec<GroupId> {
    match &op.plan {
        Some(p) if p.kind == RotationKind::KeywardKey => {
            p.copies.iter().filter(|c| c.skipped.is_none() && c.aws_key_id.is_some()).map(|c| c.group_id).collect()
        }
        _ => vec![op.group_id],
    }
}

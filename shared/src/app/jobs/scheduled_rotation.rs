//! Rotations on schedule: keys whose `rotation_policy` is due are rotated as RotateKey would
//! (by the `worker` principal). Each due key is claimed in the database first — its next
//! rotation time is moved past a retry delay by an etag-conditional write under the key's lock —
//! so two workers never rotate one key; a failure is kept on the policy (`last_error`,
//! `failures`) and retried later with a growing delay, without holding up the other keys.

use std::time::Duration;

use time::OffsetDateTime;

use crate::app::support::new_etag;
use crate::app::{Ctx, Keyward, LinkedCopies, RotateRequest};
use crate::domain::{Action, Key, KeyId, RotationPolicy};
use crate::{Error, Result};

/// Keys looked at in one pass.
const BATCH: u64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Keys rotated (the rotated key's id).
    pub rotated: Vec<KeyId>,
    /// Keys whose rotation failed (kept on the policy; retried later).
    pub failed: Vec<KeyId>,
    /// Due keys another worker claimed first, or under a change.
    pub skipped: Vec<KeyId>,
}

/// One pass at `now`.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report> {
    let ctx = Ctx::worker(now);
    let mut report = Report::default();
    for key in keyward.store.keys_due_for_rotation(ctx.now, BATCH).await? {
        let Some(policy) = claim(keyward, &ctx, &key).await? else {
            report.skipped.push(key.id);
            continue;
        };
        let req = RotateRequest {
            validate_only: false,
            in_place: policy.schedule.in_place,
            old_key_action: policy.schedule.old_key_action,
            to_source: None,
            rotate_linked: policy.schedule.rotate_linked.then_some(LinkedCopies::All),
            key_spec: None,
        };
        match keyward.rotate_key(&ctx, key.group_id, key.id, req).await {
            Ok(_) => report.rotated.push(key.id),
            Err(e) => {
                tracing::warn!(key_id = %key.id, error = %e, "scheduled rotation failed; retried later");
                record_failure(keyward, &ctx, &key, &e).await;
                report.failed.push(key.id);
            }
        }
    }
    Ok(report)
}

/// Claims the due key: under its lock, moves its next rotation past the retry delay with an
/// etag-conditional write (one of several workers wins). `None`: not ours (claimed, changed,
/// no longer due).
async fn claim(keyward: &Keyward, ctx: &Ctx, seen: &Key) -> Result<Option<RotationPolicy>> {
    let Some(lock) = keyward.lock_key_within(seen.id, Duration::ZERO).await? else { return Ok(None) };
    let mut k = keyward.store.get_key(seen.group_id, seen.id).await?;
    let Some(mut policy) = k.rotation_policy.clone().filter(|p| p.next_rotation_time <= ctx.now) else {
        lock.release().await;
        return Ok(None);
    };
    let due = policy.clone();
    policy.next_rotation_time = ctx.now + policy.retry_after();
    k.rotation_policy = Some(policy);
    let prev = std::mem::replace(&mut k.etag, new_etag());
    let claimed = match keyward.store.replace_key(&k, &prev).await {
        Ok(()) => Some(due),
        Err(Error::Aborted(_)) => None,
        Err(e) => return Err(e),
    };
    lock.release().await;
    Ok(claimed)
}

/// Keeps the failure on the key's policy and audits it (best effort, logged).
async fn record_failure(keyward: &Keyward, ctx: &Ctx, key: &Key, e: &Error) {
    let kept = async {
        // Under the key's lock only; if a change holds it, the failure is only audited.
        if let Some(lock) = keyward.lock_key_within(key.id, Duration::from_secs(5)).await? {
            let mut k = keyward.store.get_key(key.group_id, key.id).await?;
            if let Some(p) = k.rotation_policy.as_mut() {
                p.failures = p.failures.saturating_add(1);
                p.last_error = Some(e.to_string().chars().take(500).collect());
                let prev = std::mem::replace(&mut k.etag, new_etag());
                keyward.store.replace_key(&k, &prev).await?;
            }
            lock.release().await;
        }
        keyward.record_refusal(ctx, Action::ScheduledRotation, &key.name(), e.code_name(), &e.to_string()).await
    }
    .await;
    if let Err(err) = kept {
        tracing::error!(key_id = %key.id, error = %err, "could not record a failed scheduled rotation");
    }
}

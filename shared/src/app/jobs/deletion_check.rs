//! The deletion-window check: virtual keys PENDING_DELETION whose deletion time has passed
//! are looked up in AWS; gone → DELETED (DeleteKey is then allowed), still there → asked
//! again an hour later, cancelled outside Keyward → refreshed. One key's failure is counted
//! and never stops the others; with several workers each key is claimed by one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::Result;
use crate::app::support::aws_keys::aws_state;
use crate::app::{Ctx, Keyward};
use crate::domain::{Action, GroupId, Key, KeyId, KeyState};
use crate::kms::{self, Kms};

/// How long the check waits before asking AWS again about a key that is still pending
/// deletion, or whose check failed.
pub const RECHECK_AFTER: Duration = Duration::from_secs(3600);

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Keys AWS no longer has: now DELETED.
    pub deleted: Vec<KeyId>,
    /// Keys still pending deletion in AWS: checked again after [`RECHECK_AFTER`].
    pub still_pending: Vec<KeyId>,
    /// Keys whose deletion was cancelled outside Keyward: refreshed.
    pub refreshed: Vec<KeyId>,
    /// Keys whose check failed (logged; retried after [`RECHECK_AFTER`]).
    pub failed: Vec<KeyId>,
    /// Due keys another worker claimed first, or under a user's change.
    pub skipped: Vec<KeyId>,
}

/// One pass at `now`.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report> {
    let ctx = Ctx::worker(now);
    let now = ctx.now;
    let mut report = Report::default();
    let mut clients: BTreeMap<GroupId, Result<Arc<dyn Kms>>> = BTreeMap::new();
    for (key, seen) in keyward.store.keys_due_for_check(now, 500).await? {
        if !keyward.store.claim_check(key.id, seen, now + RECHECK_AFTER).await? {
            report.skipped.push(key.id);
            continue;
        }
        // A user's change of this key is under way: look again after RECHECK_AFTER.
        let Some(lock) = keyward.lock_key_within(key.id, Duration::from_secs(5)).await? else {
            report.skipped.push(key.id);
            continue;
        };
        // Read again under the lock: the row may have changed since the listing.
        let key = keyward.store.get_key(key.group_id, key.id).await?;
        if !key.state.is_pending_deletion() {
            report.skipped.push(key.id);
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = clients.entry(key.group_id) {
            slot.insert(keyward.group_client(key.group_id).await);
        }
        let kms = match clients.get(&key.group_id) {
            Some(Ok(k)) => k.clone(),
            Some(Err(e)) => {
                tracing::warn!(key_id = %key.id, error = %e, "deletion check: no AWS client");
                report.failed.push(key.id);
                continue;
            }
            None => continue,
        };
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        match kms.describe_key(&aws_id).await {
            Err(kms::Error::NotFound(_)) => {
                let mut k = key.clone();
                k.set_state(KeyState::Deleted);
                if let Some(a) = k.aws.as_mut() {
                    a.aliases.clear();
                    a.managed_aliases.clear();
                }
                store(keyward, &ctx, k, "deleted in AWS").await?;
                report.deleted.push(key.id);
            }
            Ok(meta) if aws_state(&meta).is_pending_deletion() => {
                report.still_pending.push(key.id);
            }
            Ok(meta) => {
                let mut k = key.clone();
                k.state = aws_state(&meta);
                if let Some(a) = k.aws.as_mut() {
                    a.aws_key_state = meta.key_state.clone();
                    a.enabled = meta.enabled;
                }
                store(keyward, &ctx, k, "deletion cancelled outside Keyward").await?;
                report.refreshed.push(key.id);
            }
            Err(e) => {
                tracing::warn!(key_id = %key.id, error = %e, "deletion check failed; retried later");
                report.failed.push(key.id);
            }
        }
        lock.release().await;
    }
    Ok(report)
}

async fn store(keyward: &Keyward, ctx: &Ctx, mut k: Key, detail: &str) -> Result<()> {
    keyward.commit_key_change(ctx, &mut k, Action::DeletionCheck, detail.to_owned()).await
}

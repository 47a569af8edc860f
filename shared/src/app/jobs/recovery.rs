//! Recovery of interrupted journaled operations: entries left open for ten minutes — a crash
//! between AWS CreateKey and ImportKeyMaterial, or a compensation AWS refused — get their AWS
//! key scheduled for deletion and their virtual key marked PENDING_DELETION.

use time::OffsetDateTime;

use crate::Result;
use crate::app::support::aws_keys::next_check;
use crate::app::support::journal::{self, STALE_OPERATION};
use crate::app::support::records::ok_event;
use crate::app::support::{ABANDONED_WINDOW, new_etag};
use crate::app::{Ctx, Keyward};
use crate::domain::{Action, Caller, KeyId};

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Interrupted imports whose AWS key was scheduled for deletion.
    pub compensated: Vec<KeyId>,
    /// Interrupted before AWS answered CreateKey: nothing known to clean up (a sync would list it).
    pub failed: Vec<KeyId>,
    /// Compensation failed again; retried on a later pass.
    pub retry: Vec<KeyId>,
}

/// One pass at `now`: every journal entry unfinished for [`STALE_OPERATION`] is compensated.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Report> {
    let ctx = Ctx { caller: Caller::worker(), now: crate::domain::to_micros(now) };
    let now = ctx.now;
    let mut report = Report::default();
    for mut op in keyward.store.stale_operations(now - STALE_OPERATION).await? {
        if !keyward.store.claim_operation(&op, now).await? {
            continue;
        }
        op.updated_at = now;
        let Some(aws_id) = op.aws_key_id.clone() else {
            op.fail("interrupted before AWS CreateKey answered; a sync lists any key it made", now);
            journal::record(&keyward.store, &op).await?;
            report.failed.push(op.key_id);
            continue;
        };
        let kms = keyward.group_client(op.group_id).await?;
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
    Ok(report)
}

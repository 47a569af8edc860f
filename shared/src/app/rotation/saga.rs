//! The new-key rotation saga: each step journaled once AWS confirmed it, resumed forward after a
//! crash from the step it reached, undone when it stops before the aliases moved.

use std::sync::Arc;
use std::time::Duration;

use super::plan::SOURCE_KEY_OPS;
use super::{RotationOutcome, hand_over};
use crate::app::support::aws_keys::{
    aws_details, aws_state, import_material, move_planned_alias, next_check, rotation_of,
};
use crate::app::support::checks::{KEY_NAME_MAX, refused};
use crate::app::support::journal;
use crate::app::support::locks::KeyLock;
use crate::app::support::new_etag;
use crate::app::support::records::{link, new_record, ok_event, retired_name};
use crate::app::{Ctx, Keyward};
use crate::domain::{
    Action, AwsKeyDetails, Event, Key, KeyId, KeyLinkKind, KeySource, KeyState, OldKeyAction, OpState, Operation,
    RotationPlan, transition,
};
use crate::kms::{self, CreateKeyInput, Kms};
use crate::{Error, Result};

/// Why a rotation stopped, and the aliases it had moved by then.
struct Stop<'a> {
    moved: &'a [String],
    why: &'a str,
}

impl Keyward {
    /// Records a rotation's intent (its journal entry with the plan) and the Keyward keys the
    /// plan makes (`made`, all holding the fresh `material`), in one transaction: the material
    /// exists before any AWS call and whenever the entry does.
    pub(super) async fn begin_rotation(&self, ctx: &Ctx, op: &Operation, made: &[Key], material: &[u8]) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        for key in made {
            tx.insert_key_with_material(key, material).await?;
            let detail = format!("made for the rotation of groups/{}/keys/{}", op.group_id, op.key_id);
            ok_event(&tx, &ctx.caller, Action::CreateKey, key.name(), detail, ctx.now).await?;
        }
        journal::begin(&tx, op).await?;
        tx.commit().await
    }

    /// The Keyward key a rotation onto Keyward-owned material makes, when its plan asks for one.
    pub(super) fn made_source(ctx: &Ctx, plan: &RotationPlan) -> Vec<Key> {
        let Some(s) = plan.source.as_ref() else { return Vec::new() };
        let Some(name) = &s.create_named else { return Vec::new() };
        vec![Key {
            id: s.key_id,
            display_name: name.clone(),
            description: format!("Material of the rotation of {}", plan.aws_key_id),
            key_ops: SOURCE_KEY_OPS.to_vec(),
            ..new_record(s.group_id, &ctx.caller.actor, ctx.now)
        }]
    }

    /// Runs (or resumes) the new-key rotation journaled in `op` from the step it stands at,
    /// holding `lock` (the old key's). The worker's recovery calls it for entries a crash left.
    pub(crate) async fn run_rotation(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        lock: KeyLock,
    ) -> Result<RotationOutcome> {
        let plan = op.plan.clone().ok_or_else(|| Error::internal("a rotation journal entry without its plan"))?;
        let planned = plan.new_key.clone().ok_or_else(|| Error::internal("a new-key rotation plan without its key"))?;
        let old = self.store.get_key(op.group_id, op.key_id).await?;
        // Entries from before the new key's id was assigned at the start have none yet.
        let new_id = match op.subjects.first() {
            Some((_, k)) => *k,
            None => {
                let id = KeyId::new();
                op.subjects.push((op.group_id, id));
                id
            }
        };
        let new_lock = self
            .lock_key_within(new_id, Duration::from_secs(10))
            .await?
            .ok_or_else(|| Error::Aborted(format!("the new key of {} is being changed; try again", old.name())))?;
        let source_lock = match &plan.source {
            Some(s) => Some(self.lock_key_within(s.key_id, Duration::from_secs(10)).await?.ok_or_else(|| {
                Error::Aborted(format!("the source key of the rotation of {} is being changed; try again", old.name()))
            })?),
            None => None,
        };
        let mut held = vec![&lock, &new_lock];
        held.extend(source_lock.as_ref());
        let _renewal = self.keep_alive(&held);
        if op.state == OpState::Started {
            self.create_rotated_key(ctx, kms, op, &old, new_id, &plan).await?;
        }
        let mut new = self.store.get_key(op.group_id, new_id).await?;
        let new_aws = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        if op.state == OpState::AwsKeyCreated && new.state == KeyState::PendingImport {
            self.import_rotated_material(ctx, kms, op, &plan, &mut new).await?;
        }
        if op.state == OpState::AwsKeyCreated {
            self.move_aliases(ctx, kms, op, &plan, &new_aws).await?;
        }
        let mut old = self.store.get_key(op.group_id, op.key_id).await?;
        new = self.store.get_key(op.group_id, new_id).await?;
        match plan.old_key_action {
            OldKeyAction::KeepEnabled => {}
            OldKeyAction::Disable => {
                if old.state == KeyState::Enabled {
                    kms.disable_key(&plan.aws_key_id).await?;
                }
                old.set_state(KeyState::Disabled);
            }
            OldKeyAction::ScheduleDeletion { pending_window_days } => {
                if !old.state.is_pending_deletion() {
                    let deletion = match kms.schedule_key_deletion(&plan.aws_key_id, pending_window_days).await {
                        Ok(d) => d,
                        // Already scheduled by a run that crashed before recording it.
                        Err(kms::Error::InvalidState(_)) => kms.describe_key(&plan.aws_key_id).await?.deletion_date,
                        Err(e) => return Err(e.into()),
                    };
                    let window = Duration::from_secs(pending_window_days as u64 * 86_400);
                    old.mark_pending_deletion(deletion, ctx.now + window);
                }
            }
        }
        let wanted = plan.rename_old_to.clone().unwrap_or_else(|| old.display_name.clone());
        old.display_name = retired_name(&self.store, &old, wanted).await?;
        new.display_name = planned.display_name.clone();
        // The schedule follows the key in service.
        new.rotation_policy = old.rotation_policy.take().map(|p| p.rotated(ctx.now));
        for k in [&mut old, &mut new] {
            k.update_time = ctx.now;
        }
        let (old_etag, new_etag_was) =
            (std::mem::replace(&mut old.etag, new_etag()), std::mem::replace(&mut new.etag, new_etag()));
        op.finish(self.now());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(&old, &old_etag).await?;
        tx.set_next_check(old.id, next_check(&old, ctx.now)).await?;
        tx.replace_key(&new, &new_etag_was).await?;
        tx.insert_link(old.id, &link(KeyLinkKind::RotatedTo, &new, ctx)).await?;
        tx.insert_link(new.id, &link(KeyLinkKind::RotatedFrom, &old, ctx)).await?;
        if let Some(s) = &plan.source {
            let source = tx.get_key(s.group_id, s.key_id).await?;
            tx.insert_link(new.id, &link(KeyLinkKind::CopiedFrom, &source, ctx)).await?;
            tx.insert_link(source.id, &link(KeyLinkKind::CopiedTo, &new, ctx)).await?;
        }
        journal::record(&tx, op).await?;
        let step = format!("old key {}: {}", plan.old_key_action.name(), old.name());
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
        ok_event(&tx, &ctx.caller, Action::RotateKey, old.name(), plan.summary(), ctx.now).await?;
        tx.commit().await?;
        new_lock.release().await;
        if let Some(l) = source_lock {
            l.release().await;
        }
        lock.release().await;
        tracing::info!(old = %old.name(), new = %new.name(), "key rotated");
        let (old, new) =
            (self.store.get_key(old.group_id, old.id).await?, self.store.get_key(new.group_id, new.id).await?);
        Ok(RotationOutcome {
            plan,
            executed: true,
            key: new,
            old_key: Some(old),
            moved_to: Some(new_aws),
            new_copies: Vec::new(),
        })
    }

    /// Step 1: CreateKey as planned, and the new key recorded (under a temporary name) with the
    /// journal's step in one transaction. A failure leaves no AWS key unknown to Keyward.
    async fn create_rotated_key(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        old: &Key,
        new_id: KeyId,
        plan: &RotationPlan,
    ) -> Result<()> {
        let planned =
            plan.new_key.as_ref().ok_or_else(|| Error::internal("a new-key rotation plan without its key"))?;
        // Onto Keyward-owned material: an EXTERNAL key, its material imported next.
        let external = plan.source.is_some();
        let input = CreateKeyInput {
            key_spec: planned.key_spec,
            key_usage: planned.key_usage,
            description: planned.description.clone(),
            tags: planned.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            external,
            policy: planned.key_policy.clone(),
        };
        let meta = journal::create_aws_key(&self.store, kms.as_ref(), op, input, self.now()).await?;
        if let Some(days) = planned.rotation_period_days
            && let Err(e) = kms.enable_key_rotation(&meta.key_id, Some(days)).await
        {
            self.abandon_aws_key(kms, &meta.key_id, &[]).await;
            op.compensate(&format!("EnableKeyRotation of the new key: {e}"), self.now());
            journal::record(&self.store, op).await?;
            return Err(e.into());
        }
        let short: String = new_id.to_string().chars().take(8).collect();
        let temp: String = old.display_name.chars().take(KEY_NAME_MAX - 20).collect();
        let mut new = Key {
            id: new_id,
            display_name: format!("{temp}~rotating-{short}"),
            description: planned.description.clone(),
            key_spec: planned.key_spec,
            key_ops: old.key_ops.clone(),
            state: aws_state(&meta),
            source: if external { KeySource::Keyward } else { KeySource::AwsNative },
            tags: planned.tags.clone(),
            aws: Some(AwsKeyDetails {
                rotation: if external { None } else { rotation_of(kms, &meta).await },
                ..aws_details(&meta, Vec::new(), planned.key_policy.clone())
            }),
            ..new_record(old.group_id, &ctx.caller.actor, ctx.now)
        };
        if external {
            new.set_state(KeyState::PendingImport);
        }
        op.aws_key_id = Some(meta.key_id.clone());
        op.advance(OpState::AwsKeyCreated, self.now());
        let recorded = async {
            let tx = self.store.begin_audited().await?;
            tx.insert_key(&new).await?;
            journal::record(&tx, op).await?;
            let step = format!("created {} for {}", meta.arn, old.name());
            ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            self.abandon_aws_key(kms, &meta.key_id, &[]).await;
            op.compensate(&format!("the new key was not recorded: {e}"), self.now());
            let _ = journal::record(&self.store, op).await;
            return Err(e);
        }
        tracing::info!(old = %old.name(), aws_key_id = %meta.key_id, "rotation: new aws key created");
        Ok(())
    }

    /// Step 1 of a rotation onto Keyward-owned material: the source key's material imported
    /// into the new EXTERNAL key, which becomes ENABLED. Before any alias moved, so a failure
    /// undoes the rotation (the new AWS key scheduled for deletion) instead of leaving it open.
    async fn import_rotated_material(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        plan: &RotationPlan,
        new: &mut Key,
    ) -> Result<()> {
        let source = plan.source.as_ref().ok_or_else(|| Error::internal("an import without its source"))?;
        let new_aws = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let imported = match self.store.key_material(source.key_id).await {
            Ok(material) => import_material(kms, &new_aws, &material, None).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = imported {
            let why =
                format!("the material of groups/{}/keys/{} was not imported: {e}", source.group_id, source.key_id);
            self.undo_rotation(ctx, kms, op, plan, &new_aws, Stop { moved: &[], why: &why }).await;
            return Err(e);
        }
        let state = transition(new.state, Event::ImportMaterial).map_err(|e| refused(new, e))?;
        new.set_state(state);
        new.update_time = ctx.now;
        let prev = std::mem::replace(&mut new.etag, new_etag());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(new, &prev).await?;
        let step = format!("imported the material of groups/{}/keys/{}", source.group_id, source.key_id);
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(new = %new.name(), "rotation: material imported");
        Ok(())
    }

    /// Step 2: each alias of the plan moved to the new key, checking first that it still
    /// targets the old one (already on the new key: moved by a run that crashed). An alias found
    /// elsewhere stops the rotation and undoes it.
    async fn move_aliases(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        plan: &RotationPlan,
        new_aws: &str,
    ) -> Result<()> {
        let mut moved = Vec::new();
        for m in &plan.alias_moves {
            if let Err(why) = move_planned_alias(kms, m, new_aws).await? {
                self.undo_rotation(ctx, kms, op, plan, new_aws, Stop { moved: &moved, why: &why }).await;
                return Err(Error::Aborted(format!(
                    "rotation stopped: {why}; undone where safe: the aliases it had moved go back to the old key while that key is enabled, and then the new key {new_aws} is scheduled for deletion"
                )));
            }
            moved.push(m.alias.clone());
        }
        let mut old = self.store.get_key(op.group_id, op.key_id).await?;
        let (new_group, new_id) =
            op.subjects.first().copied().ok_or_else(|| Error::internal("rotation without a new key"))?;
        let mut new = self.store.get_key(new_group, new_id).await?;
        hand_over(&mut old, &mut new, &moved);
        for k in [&mut old, &mut new] {
            k.update_time = ctx.now;
        }
        let (old_etag, new_etag_was) =
            (std::mem::replace(&mut old.etag, new_etag()), std::mem::replace(&mut new.etag, new_etag()));
        op.advance(OpState::AliasesMoved, self.now());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(&old, &old_etag).await?;
        tx.replace_key(&new, &new_etag_was).await?;
        journal::record(&tx, op).await?;
        let step = format!("moved [{}] to {new_aws}", moved.join(", "));
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
        tx.commit().await
    }

    /// Undoes a rotation stopped while moving aliases: the aliases it moved go back to the old
    /// key, the new key is scheduled for deletion (7 days) and recorded so, the entry compensated.
    async fn undo_rotation(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        plan: &RotationPlan,
        new_aws: &str,
        stop: Stop<'_>,
    ) {
        let Stop { moved, why } = stop;
        // Back only onto an old key that still works: aliases on a disabled or retired key would
        // stop every caller. Otherwise the new key keeps them and stays.
        let old_usable =
            kms.describe_key(&plan.aws_key_id).await.is_ok_and(|m| m.key_state.as_deref() == Some("Enabled"));
        if !old_usable && !moved.is_empty() {
            op.fail(&format!("{why}; the moved aliases stay on {new_aws}: the old key is not enabled"), self.now());
            if let Err(e) = journal::record(&self.store, op).await {
                tracing::error!(error = %e, "could not record a stopped rotation");
            }
            return;
        }
        for alias in moved {
            if let Err(e) = kms.update_alias(alias, &plan.aws_key_id).await {
                tracing::error!(alias = %alias, error = %e, "could not move an alias back after a stopped rotation");
            }
        }
        let deletion = self.abandon_aws_key(kms, new_aws, &[]).await;
        if let Some((g, k)) = op.subjects.first().copied()
            && let Ok(mut new) = self.store.get_key(g, k).await
        {
            self.record_abandoned(&mut new, deletion).await;
        }
        if let Some(s) = plan.source.as_ref().filter(|s| s.create_named.is_some())
            && let Ok(mut made) = self.store.get_key(s.group_id, s.key_id).await
        {
            self.disable_abandoned(ctx, &mut made).await;
        }
        op.compensate(why, self.now());
        if let Err(e) = journal::record(&self.store, op).await {
            tracing::error!(error = %e, "could not record a stopped rotation");
        }
    }
}

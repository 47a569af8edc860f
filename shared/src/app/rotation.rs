//! Rotation use cases: RotateKey (a new AWS key takes over, or AWS rotates in place) with a plan
//! first, and the resumption of a rotation a crash interrupted (the worker's recovery).
//!
//! A new-key rotation is a saga on the journal (`OpKind::Rotate`), executing the plan kept in
//! its entry: intent → CreateKey, the new key recorded (`AwsKeyCreated`) → every alias moved
//! with UpdateAlias (`AliasesMoved`) → the old key's fate, the renames and the links (`Done`).
//! It holds the locks of both keys throughout; from `AwsKeyCreated` on it is resumed forward,
//! before that it is compensated. An alias found elsewhere than the plan expects stops it: the
//! aliases it moved go back, the new key is scheduled for deletion, and the caller is told.

use std::sync::Arc;
use std::time::Duration;

use super::requests::RotateRequest;
use super::support::aws_keys::{Reads, aws_details, aws_state, describe, key_aliases, read_rotation, rotation_of};
use super::support::checks::{KEY_NAME_MAX, mutable, refused};
use super::support::journal;
use super::support::locks::KeyLock;
use super::support::new_etag;
use super::support::records::{link, new_record, ok_event};
use super::{Ctx, Keyward};
use crate::domain::{
    Action, AliasMove, AwsKeyDetails, Event, Key, KeyId, KeyLinkKind, KeySource, KeySpec, KeyState, KeyUsage,
    OldKeyAction, OpKind, OpState, Operation, PlannedKey, RotationKind, RotationPlan, rotated_name, transition,
};
use crate::kms::{self, CreateKeyInput, Kms};
use crate::{Error, Precondition, Result};

/// What RotateKey did (or, with `validate_only`, would do).
#[derive(Debug, Clone)]
pub struct RotationOutcome {
    pub plan: RotationPlan,
    pub executed: bool,
    /// The key holding the aliases and the display name now.
    pub key: Key,
    /// The rotated key afterwards (new-key rotations that ran).
    pub old_key: Option<Key>,
    /// The AWS key id each alias of the plan targets now.
    pub moved_to: Option<String>,
}

/// The refusal of a rotation AWS would refuse or Keyward does not do.
fn cannot(kind: Precondition, k: &Key, why: &str) -> Error {
    Error::precondition(kind, k.name(), format!("{} cannot be rotated: {why}", k.name()))
}

impl Keyward {
    /// RotateKey: see the module docs. Refused before any AWS call: Keyward keys, AWS-managed
    /// keys, keys that are not ENABLED, keys already rotated, keys whose material came from
    /// Keyward or a user, and in-place rotations AWS does not do. A key being changed or
    /// rotated: ABORTED.
    pub async fn rotate_key(
        &self,
        ctx: &Ctx,
        group: crate::domain::GroupId,
        id: KeyId,
        req: RotateRequest,
    ) -> Result<RotationOutcome> {
        if let OldKeyAction::ScheduleDeletion { pending_window_days: d } = req.old_key_action
            && !(7..=30).contains(&d)
        {
            return Err(Error::invalid("pending_window_days", format!("{d} days; AWS allows 7 to 30")));
        }
        if req.in_place && req.old_key_action != OldKeyAction::KeepEnabled {
            return Err(Error::invalid("old_key_action", "an in-place rotation keeps the key; there is no old key"));
        }
        let Some(lock) = self.lock_key_within(id, Duration::ZERO).await? else {
            return Err(Error::Aborted(format!(
                "groups/{group}/keys/{id} is being changed or rotated; try again when that is done"
            )));
        };
        self.refuse_open_rotation(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        let Some(aws) = key.aws.clone() else {
            return Err(cannot(Precondition::NotVirtual, &key, "only virtual keys (AWS_KMS groups) rotate"));
        };
        mutable(&key)?;
        transition(key.state, Event::Rotate).map_err(|e| refused(&key, e))?;
        if let Some(l) = key.links.iter().find(|l| l.kind == KeyLinkKind::RotatedTo) {
            return Err(cannot(
                Precondition::AlreadyRotated,
                &key,
                &format!("it was rotated to groups/{}/keys/{} already; rotate that key", l.group_id, l.key_id),
            ));
        }
        let g = self.store.get_group(group).await?;
        self.check_policies(group, &g.crypto_policy, key.key_spec, &key.key_ops)?;
        let kms = self.connect(&g, crate::kms::Purpose::Work)?;
        let plan = if req.in_place {
            if !aws.aws_can_rotate() {
                return Err(cannot(
                    Precondition::KeySpec,
                    &key,
                    "AWS rotates in place (RotateKeyOnDemand) only symmetric encryption keys whose material AWS generated, not asymmetric, HMAC, imported (EXTERNAL) or custom key store keys",
                ));
            }
            RotationPlan {
                kind: RotationKind::InPlace,
                group_id: group,
                key_id: id,
                aws_key_id: aws.aws_key_id.clone(),
                new_key: None,
                rename_old_to: None,
                alias_moves: Vec::new(),
                old_key_action: OldKeyAction::KeepEnabled,
                aws_calls: vec![format!("RotateKeyOnDemand({})", aws.aws_key_id)],
            }
        } else {
            if key.source != KeySource::AwsNative {
                return Err(cannot(
                    Precondition::KeySource,
                    &key,
                    "its material came from Keyward or a user (source is not AWS_NATIVE); a new AWS key would not carry it",
                ));
            }
            self.plan_new_key(ctx, &kms, &key, req.old_key_action).await?
        };
        if req.validate_only {
            return Ok(RotationOutcome { plan, executed: false, key, old_key: None, moved_to: None });
        }
        match plan.kind {
            RotationKind::InPlace => self.rotate_in_place(ctx, &kms, key, plan).await,
            RotationKind::NewKey => {
                let mut op = Operation::start(OpKind::Rotate, group, id, ctx.now);
                op.plan = Some(plan);
                journal::begin(&self.store, &op).await?;
                // Runs to its end even when the caller goes away (a deadline, a disconnect).
                let (kw, ctx) = (self.clone(), ctx.clone());
                let run = tokio::spawn(async move { kw.run_rotation(&ctx, &kms, &mut op, lock).await });
                run.await.map_err(|e| Error::internal(format!("the rotation task ended: {e}")))?
            }
        }
    }

    /// The plan of a new-key rotation, read fresh from AWS.
    async fn plan_new_key(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        key: &Key,
        action: OldKeyAction,
    ) -> Result<RotationPlan> {
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let d = describe(kms, &aws_id, Reads { policy: true, rotation: true }).await?;
        let aliases = key_aliases(kms, &aws_id).await?;
        let key_spec = KeySpec::from_aws(d.meta.key_spec.as_deref().unwrap_or_default());
        let key_usage = match d.meta.key_usage.as_deref() {
            Some("ENCRYPT_DECRYPT") => KeyUsage::EncryptDecrypt,
            Some("SIGN_VERIFY") => KeyUsage::SignVerify,
            other => {
                let usage = other.unwrap_or("unknown");
                return Err(cannot(
                    Precondition::KeySpec,
                    key,
                    &format!("Keyward does not create keys of usage {usage}"),
                ));
            }
        };
        if key_spec == KeySpec::Other {
            let spec = d.meta.key_spec.as_deref().unwrap_or("unknown");
            return Err(cannot(Precondition::KeySpec, key, &format!("Keyward does not create keys of spec {spec}")));
        }
        let new_key = PlannedKey {
            display_name: key.display_name.clone(),
            key_spec,
            key_usage,
            description: d.meta.description.clone().unwrap_or_default(),
            tags: d.tags.clone(),
            key_policy: d.policy.clone(),
            rotation_period_days: d.rotation.as_ref().filter(|r| r.enabled).map(|r| r.period_days.unwrap_or(365)),
        };
        let mut calls = vec![format!(
            "CreateKey(KeySpec={}, KeyUsage={}, Tags={}{})",
            key_spec.api_name(),
            key_usage.aws_name(),
            new_key.tags.len(),
            if new_key.key_policy.is_some() { ", Policy=copied" } else { "" }
        )];
        if let Some(days) = new_key.rotation_period_days {
            calls.push(format!("EnableKeyRotation(new key, RotationPeriodInDays={days})"));
        }
        calls.extend(aliases.iter().map(|a| format!("UpdateAlias({a} → new key)")));
        match action {
            OldKeyAction::KeepEnabled => {}
            OldKeyAction::Disable => calls.push(format!("DisableKey({aws_id})")),
            OldKeyAction::ScheduleDeletion { pending_window_days } => {
                calls.push(format!("ScheduleKeyDeletion({aws_id}, PendingWindowInDays={pending_window_days})"))
            }
        }
        Ok(RotationPlan {
            kind: RotationKind::NewKey,
            group_id: key.group_id,
            key_id: key.id,
            aws_key_id: aws_id.clone(),
            new_key: Some(new_key),
            rename_old_to: Some(rotated_name(&key.display_name, ctx.now, KEY_NAME_MAX)),
            alias_moves: aliases
                .into_iter()
                .map(|alias| AliasMove { alias, from_aws_key_id: aws_id.clone() })
                .collect(),
            old_key_action: action,
            aws_calls: calls,
        })
    }

    /// RotateKeyOnDemand, then the key as AWS shows it.
    async fn rotate_in_place(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        mut key: Key,
        plan: RotationPlan,
    ) -> Result<RotationOutcome> {
        kms.rotate_key_on_demand(&plan.aws_key_id).await?;
        key.rotation_policy = key.rotation_policy.take().map(|p| p.rotated(ctx.now));
        if let Some(a) = key.aws.as_mut()
            && let Ok(r) = read_rotation(kms, &plan.aws_key_id).await
        {
            a.rotation = Some(r);
        }
        self.commit_key_change(ctx, &mut key, Action::RotateKey, plan.summary()).await?;
        tracing::info!(key = %key.name(), "key rotated in place");
        let moved_to = Some(plan.aws_key_id.clone());
        Ok(RotationOutcome { plan, executed: true, key, old_key: None, moved_to })
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
        let new_id = match op.subjects.first() {
            Some((_, k)) => *k,
            None => KeyId::new(),
        };
        let new_lock = self
            .lock_key_within(new_id, Duration::from_secs(10))
            .await?
            .ok_or_else(|| Error::Aborted(format!("the new key of {} is being changed; try again", old.name())))?;
        let _renewal = self.keep_alive(&[&lock, &new_lock]);
        if op.state == OpState::Started {
            self.create_rotated_key(ctx, kms, op, &old, new_id, &planned).await?;
        }
        let mut new = self.store.get_key(op.group_id, new_id).await?;
        let new_aws = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
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
        let mut rename = plan.rename_old_to.clone().unwrap_or_else(|| old.display_name.clone());
        if rename != old.display_name && self.store.key_name_taken(old.group_id, &rename).await? {
            // Taken meanwhile (a rotation of the same name within the second): the key id makes it unique.
            let short: String = old.id.to_string().chars().take(8).collect();
            rename = format!("{}-{short}", rename.chars().take(KEY_NAME_MAX - 9).collect::<String>());
        }
        old.display_name = rename;
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
        tx.set_next_check(old.id, super::support::aws_keys::next_check(&old, ctx.now)).await?;
        tx.replace_key(&new, &new_etag_was).await?;
        tx.insert_link(old.id, &link(KeyLinkKind::RotatedTo, &new, ctx)).await?;
        tx.insert_link(new.id, &link(KeyLinkKind::RotatedFrom, &old, ctx)).await?;
        journal::record(&tx, op).await?;
        let step = format!("old key {}: {}", plan.old_key_action.name(), old.name());
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
        ok_event(&tx, &ctx.caller, Action::RotateKey, old.name(), plan.summary(), ctx.now).await?;
        tx.commit().await?;
        new_lock.release().await;
        lock.release().await;
        tracing::info!(old = %old.name(), new = %new.name(), "key rotated");
        let (old, new) =
            (self.store.get_key(old.group_id, old.id).await?, self.store.get_key(new.group_id, new.id).await?);
        Ok(RotationOutcome { plan, executed: true, key: new, old_key: Some(old), moved_to: Some(new_aws) })
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
        planned: &PlannedKey,
    ) -> Result<()> {
        let input = CreateKeyInput {
            key_spec: planned.key_spec,
            key_usage: planned.key_usage,
            description: planned.description.clone(),
            tags: planned.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            external: false,
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
        let new = Key {
            id: new_id,
            display_name: format!("{temp}~rotating-{short}"),
            description: planned.description.clone(),
            key_spec: planned.key_spec,
            key_ops: old.key_ops.clone(),
            state: aws_state(&meta),
            source: KeySource::AwsNative,
            tags: planned.tags.clone(),
            aws: Some(AwsKeyDetails {
                rotation: rotation_of(kms, &meta).await,
                ..aws_details(&meta, Vec::new(), planned.key_policy.clone())
            }),
            ..new_record(old.group_id, &ctx.caller.actor, ctx.now)
        };
        op.aws_key_id = Some(meta.key_id.clone());
        op.subjects = vec![(new.group_id, new.id)];
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
            // Where the alias points now (DescribeKey of the alias: one call, whatever the key's
            // number of aliases).
            let target = match kms.describe_key(&m.alias).await {
                Ok(meta) => Some(meta.key_id),
                Err(kms::Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            if target.as_deref() == Some(m.from_aws_key_id.as_str()) {
                kms.update_alias(&m.alias, new_aws).await?;
            } else if target.as_deref() != Some(new_aws) {
                let why = format!("{} no longer targets {} as the plan expected", m.alias, m.from_aws_key_id);
                self.undo_rotation(kms, op, plan, new_aws, &moved, &why).await;
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
        let managed: Vec<String> = old
            .aws
            .as_ref()
            .map(|a| a.managed_aliases.iter().filter(|x| moved.contains(x)).cloned().collect())
            .unwrap_or_default();
        if let Some(a) = old.aws.as_mut() {
            a.aliases.retain(|x| !moved.contains(x));
            a.managed_aliases.retain(|x| !moved.contains(x));
        }
        if let Some(a) = new.aws.as_mut() {
            a.aliases = moved.clone();
            a.aliases.sort();
            a.managed_aliases = managed;
        }
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
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        plan: &RotationPlan,
        new_aws: &str,
        moved: &[String],
        why: &str,
    ) {
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
        op.compensate(why, self.now());
        if let Err(e) = journal::record(&self.store, op).await {
            tracing::error!(error = %e, "could not record a stopped rotation");
        }
    }
}

//! The steps of a Keyward key's rotation with its linked copies after the plan (see
//! `linked`): AWS successors of the copies, their aliases moved, the finish (the old keys'
//! fate, the renames, the links) and the undo.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::hand_over;
use crate::app::support::aws_keys::{aws_details, import_material, key_aliases, move_planned_alias, next_check};
use crate::app::support::checks::refused;
use crate::app::support::journal;
use crate::app::support::new_etag;
use crate::app::support::records::{link, new_record, ok_event, retired_name};
use crate::app::{Ctx, Keyward};
use crate::domain::{
    Action, Event, Key, KeyId, KeyLinkKind, KeySource, KeySpec, KeyState, KeyUsage, OldKeyAction, Operation,
    PlannedCopy, PlannedKey, PlannedSource, RotationPlan, transition,
};
use crate::kms::{self, CreateKeyInput, Kms};
use crate::{Error, Result};

use super::linked::{Clients, rotating_name};

impl Keyward {
    /// An AWS copy's successor: CreateKey EXTERNAL and the record (PENDING_IMPORT) unless a run
    /// before the crash made it, then ImportKeyMaterial and ENABLED unless done already.
    pub(super) async fn make_aws_successor(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        op: &mut Operation,
        c: &PlannedCopy,
        material: &[u8],
    ) -> Result<()> {
        let mut new = match self.store.get_key(c.group_id, c.new_key_id).await {
            Ok(k) => k,
            Err(Error::NotFound { .. }) => {
                let old = self.store.get_key(c.group_id, c.key_id).await?;
                let input = CreateKeyInput {
                    key_spec: KeySpec::SymmetricDefault,
                    key_usage: KeyUsage::EncryptDecrypt,
                    description: c.description.clone(),
                    tags: c.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    external: true,
                    policy: c.key_policy.clone(),
                };
                let meta = kms.create_key(input).await?;
                let mut new = Key {
                    id: c.new_key_id,
                    display_name: rotating_name(&c.display_name, c.new_key_id),
                    description: c.description.clone(),
                    key_spec: KeySpec::SymmetricDefault,
                    key_ops: old.key_ops.clone(),
                    source: KeySource::Keyward,
                    tags: c.tags.clone(),
                    aws: Some(aws_details(&meta, Vec::new(), c.key_policy.clone())),
                    ..new_record(c.group_id, &ctx.caller.actor, ctx.now)
                };
                new.set_state(KeyState::PendingImport);
                let tx = self.store.begin_audited().await?;
                tx.insert_key(&new).await?;
                op.note(&format!("created {} for {}", meta.arn, old.name()), self.now());
                journal::record(&tx, op).await?;
                let step = format!("created {} for the copy {}", meta.arn, old.name());
                ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
                if let Err(e) = tx.commit().await {
                    self.abandon_aws_key(kms, &meta.key_id, &[]).await;
                    return Err(e);
                }
                new
            }
            Err(e) => return Err(e),
        };
        if new.state != KeyState::PendingImport {
            return Ok(());
        }
        let aws_id = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        import_material(kms, &aws_id, material, None).await?;
        let state = transition(new.state, Event::ImportMaterial).map_err(|e| refused(&new, e))?;
        new.set_state(state);
        new.update_time = ctx.now;
        let prev = std::mem::replace(&mut new.etag, new_etag());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(&new, &prev).await?;
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), "imported the new material".into(), ctx.now)
            .await?;
        tx.commit().await
    }

    /// Moves the copy's planned aliases to its successor (each checked first: still on the old
    /// copy → moved; on the successor → moved before a crash); records both keys' aliases.
    /// `Some(why)` when an alias is found elsewhere (nothing more is moved).
    pub(super) async fn move_copy_aliases(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        c: &PlannedCopy,
    ) -> Result<Option<String>> {
        let mut new = self.store.get_key(c.group_id, c.new_key_id).await?;
        let new_aws = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let mut moved = Vec::new();
        for m in &c.alias_moves {
            if let Err(why) = move_planned_alias(kms, m, &new_aws).await? {
                return Ok(Some(why));
            }
            moved.push(m.alias.clone());
        }
        let mut old = self.store.get_key(c.group_id, c.key_id).await?;
        hand_over(&mut old, &mut new, &moved);
        let tx = self.store.begin_audited().await?;
        for k in [&mut old, &mut new] {
            k.update_time = ctx.now;
            let prev = std::mem::replace(&mut k.etag, new_etag());
            tx.replace_key(k, &prev).await?;
        }
        let step = format!("moved [{}] to {new_aws}", moved.join(", "));
        ok_event(&tx, &ctx.caller, Action::RotationStep, new.name(), step, ctx.now).await?;
        tx.commit().await?;
        Ok(None)
    }

    /// The last step: old keys' fate in the records, names handed over, links, the policy moved.
    pub(super) async fn finish_keyward_rotation(
        &self,
        ctx: &Ctx,
        op: &mut Operation,
        plan: &RotationPlan,
        new_key: &PlannedKey,
        source: &PlannedSource,
        deletions: &BTreeMap<KeyId, Option<time::OffsetDateTime>>,
    ) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        let mut old = tx.get_key(plan.group_id, plan.key_id).await?;
        let mut new = tx.get_key(source.group_id, source.key_id).await?;
        let retire_keyward = |k: &mut Key| {
            if plan.old_key_action != OldKeyAction::KeepEnabled && k.state == KeyState::Enabled {
                k.set_state(KeyState::Disabled);
            }
        };
        retire_keyward(&mut old);
        let wanted = plan.rename_old_to.clone().unwrap_or_else(|| old.display_name.clone());
        old.display_name = retired_name(&tx, &old, wanted).await?;
        new.display_name = new_key.display_name.clone();
        new.rotation_policy = old.rotation_policy.take().map(|p| p.rotated(ctx.now));
        let mut pairs = vec![(old, new)];
        for c in plan.copies.iter().filter(|c| c.skipped.is_none()) {
            let mut old_copy = tx.get_key(c.group_id, c.key_id).await?;
            let mut new_copy = tx.get_key(c.group_id, c.new_key_id).await?;
            if old_copy.is_virtual() {
                match plan.old_key_action {
                    OldKeyAction::KeepEnabled => {}
                    OldKeyAction::Disable => old_copy.set_state(KeyState::Disabled),
                    OldKeyAction::ScheduleDeletion { pending_window_days } => {
                        if let Some(deletion) = deletions.get(&c.key_id) {
                            let window = Duration::from_secs(pending_window_days as u64 * 86_400);
                            old_copy.mark_pending_deletion(*deletion, ctx.now + window);
                        }
                    }
                }
            } else {
                retire_keyward(&mut old_copy);
            }
            old_copy.display_name = retired_name(&tx, &old_copy, c.rename_old_to.clone()).await?;
            new_copy.display_name = c.display_name.clone();
            pairs.push((old_copy, new_copy));
        }
        // Renames first to free the names (each group's names are unique).
        for (o, n) in &mut pairs {
            for k in [o, n] {
                k.update_time = ctx.now;
                let prev = std::mem::replace(&mut k.etag, new_etag());
                tx.replace_key(k, &prev).await?;
            }
        }
        let new_source = pairs[0].1.clone();
        for (i, (o, n)) in pairs.iter().enumerate() {
            tx.set_next_check(o.id, next_check(o, ctx.now)).await?;
            tx.insert_link(o.id, &link(KeyLinkKind::RotatedTo, n, ctx)).await?;
            tx.insert_link(n.id, &link(KeyLinkKind::RotatedFrom, o, ctx)).await?;
            if i > 0 {
                tx.insert_link(n.id, &link(KeyLinkKind::CopiedFrom, &new_source, ctx)).await?;
                tx.insert_link(new_source.id, &link(KeyLinkKind::CopiedTo, n, ctx)).await?;
            }
        }
        op.finish(self.now());
        journal::record(&tx, op).await?;
        let (old, _) = &pairs[0];
        ok_event(&tx, &ctx.caller, Action::RotateKey, old.name(), plan.summary(), ctx.now).await?;
        tx.commit().await
    }

    /// Undoes a Keyward key's rotation stopped before its end: aliases back on the old copies
    /// (while those are enabled), new AWS keys scheduled for deletion and shown so, the new
    /// Keyward keys disabled and renamed `~abandoned` (material kept), the entry compensated.
    pub(super) async fn undo_keyward_rotation(
        &self,
        ctx: &Ctx,
        op: &mut Operation,
        plan: &RotationPlan,
        clients: &mut Clients,
        why: &str,
    ) {
        let copies = plan.copies.iter().filter(|c| c.skipped.is_none());
        for c in copies {
            let Ok(mut new) = self.store.get_key(c.group_id, c.new_key_id).await else { continue };
            let Some(new_aws) = new.aws.as_ref().map(|a| a.aws_key_id.clone()) else {
                self.disable_abandoned(ctx, &mut new).await;
                continue;
            };
            let Ok(kms) = clients.get(self, c.group_id).await else { continue };
            let old_aws = c.aws_key_id.clone().unwrap_or_default();
            let old_usable = kms.describe_key(&old_aws).await.is_ok_and(|m| m.key_state.as_deref() == Some("Enabled"));
            let mut on_new = Vec::new();
            for m in &c.alias_moves {
                if kms.describe_key(&m.alias).await.is_ok_and(|meta| meta.key_id == new_aws) {
                    on_new.push(m.alias.clone());
                }
            }
            // Back only onto an old copy that still works; otherwise this successor keeps the
            // aliases and stays in service.
            let keep = !on_new.is_empty() && !old_usable;
            if !keep {
                for alias in &on_new {
                    if let Err(e) = kms.update_alias(alias, &old_aws).await {
                        tracing::error!(alias = %alias, error = %e, "could not move an alias back after a stopped rotation");
                    }
                }
            }
            // Keyward's alias records of both follow what AWS now holds.
            if let Err(e) = self.record_aliases_from_aws(ctx, &kms, c).await {
                tracing::error!(copy = %c.key_id, error = %e, "could not record the aliases after a stopped rotation");
            }
            if keep {
                continue;
            }
            let deletion = self.abandon_aws_key(&kms, &new_aws, &[]).await;
            if let Ok(mut new) = self.store.get_key(c.group_id, c.new_key_id).await {
                self.record_abandoned(&mut new, deletion).await;
            }
        }
        if let Some(s) = &plan.source
            && let Ok(mut new) = self.store.get_key(s.group_id, s.key_id).await
        {
            self.disable_abandoned(ctx, &mut new).await;
        }
        op.compensate(why, self.now());
        if let Err(e) = journal::record(&self.store, op).await {
            tracing::error!(error = %e, "could not record a stopped rotation");
        }
    }

    /// Records the aliases AWS shows on a copy and its successor (ListAliases of each), keeping
    /// which ones Keyward manages.
    pub(super) async fn record_aliases_from_aws(&self, ctx: &Ctx, kms: &Arc<dyn Kms>, c: &PlannedCopy) -> Result<()> {
        let mut old = self.store.get_key(c.group_id, c.key_id).await?;
        let mut new = self.store.get_key(c.group_id, c.new_key_id).await?;
        let managed: Vec<String> = [&old, &new]
            .iter()
            .filter_map(|k| k.aws.as_ref())
            .flat_map(|a| a.managed_aliases.iter().cloned())
            .collect();
        let tx = self.store.begin_audited().await?;
        for k in [&mut old, &mut new] {
            let Some(a) = k.aws.as_mut() else { continue };
            a.aliases = key_aliases(kms, &a.aws_key_id).await?;
            a.managed_aliases = a.aliases.iter().filter(|x| managed.contains(x)).cloned().collect();
            k.update_time = ctx.now;
            let prev = std::mem::replace(&mut k.etag, new_etag());
            tx.replace_key(k, &prev).await?;
        }
        tx.commit().await
    }

    /// A Keyward key a stopped rotation made: DISABLED and renamed `~abandoned`, material kept.
    pub(super) async fn disable_abandoned(&self, ctx: &Ctx, k: &mut Key) {
        k.rename_abandoned();
        k.set_state(KeyState::Disabled);
        k.update_time = self.now();
        let prev = std::mem::replace(&mut k.etag, new_etag());
        let saved = async {
            let tx = self.store.begin_audited().await?;
            tx.replace_key(k, &prev).await?;
            ok_event(
                &tx,
                &ctx.caller,
                Action::RotationStep,
                k.name(),
                "abandoned: the rotation stopped".into(),
                ctx.now,
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = saved {
            tracing::error!(key = %k.name(), error = %e, "could not record an abandoned key");
        }
    }
}

/// The plan, its new key and its new Keyward key, from a Keyward key rotation's entry.
pub(super) fn parts(op: &Operation) -> Result<(&RotationPlan, &PlannedKey, &PlannedSource)> {
    let plan = op.plan.as_ref().ok_or_else(|| Error::internal("a rotation journal entry without its plan"))?;
    let new_key = plan.new_key.as_ref().ok_or_else(|| Error::internal("a rotation plan without its key"))?;
    let source = plan.source.as_ref().ok_or_else(|| Error::internal("a Keyward key rotation without its new key"))?;
    Ok((plan, new_key, source))
}

/// The old AWS copy's fate in AWS (once; a run before a crash may have done it). A scheduled
/// deletion answers AWS's deletion date (`Some`).
pub(super) async fn retire_in_aws(
    kms: &Arc<dyn Kms>,
    aws_id: &str,
    old: &Key,
    action: OldKeyAction,
) -> Result<Option<Option<time::OffsetDateTime>>> {
    match action {
        OldKeyAction::Disable if old.state == KeyState::Enabled => {
            kms.disable_key(aws_id).await?;
            Ok(None)
        }
        OldKeyAction::ScheduleDeletion { pending_window_days } if !old.state.is_pending_deletion() => {
            match kms.schedule_key_deletion(aws_id, pending_window_days).await {
                Ok(d) => Ok(Some(d)),
                // Already scheduled by a run that crashed before recording it.
                Err(kms::Error::InvalidState(_)) => Ok(Some(kms.describe_key(aws_id).await?.deletion_date)),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(None),
    }
}

//! Rotation of a Keyward key with its linked copies (the guide's 5.2).
//!
//! The new Keyward key (fresh material, the old spec or the one asked for) and the successors of
//! REGULAR copies are made with the rotation's intent, in one transaction, under temporary names.
//! Then each AWS copy that follows gets a new EXTERNAL key with the new material (CreateKey,
//! recorded PENDING_IMPORT, ImportKeyMaterial, ENABLED) → `AwsKeyCreated`; then every alias of
//! every AWS copy is moved with UpdateAlias after checking it still targets the old copy →
//! `AliasesMoved`; then the old keys' fate, the renames and the links → `Done`. A crash is
//! resumed forward from the step reached (each step checks what AWS and the records already
//! show); an alias found elsewhere, or an AWS refusal before the aliases moved, undoes it: aliases
//! back, new AWS keys scheduled for deletion, the new Keyward keys disabled and renamed
//! `~abandoned` (their material is kept: nothing is lost). A copy that cannot follow — not
//! chosen, not ENABLED, rotated already, or in AWS when the new key is not AES_256 (AWS imports
//! 256-bit material only) — keeps the old material and is listed in the plan with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{RotationOutcome, hand_over};
use crate::app::requests::{LinkedCopies, RotateRequest};
use crate::app::support::aws_keys::{
    Reads, aws_details, describe, import_material, key_aliases, move_planned_alias, next_check,
};
use crate::app::support::checks::{KEY_NAME_MAX, not_rotated, refused};
use crate::app::support::journal;
use crate::app::support::locks::KeyLock;
use crate::app::support::new_etag;
use crate::app::support::records::{link, new_record, ok_event, retired_name};
use crate::app::{Ctx, Keyward};
use crate::domain::{
    Action, AliasMove, Event, GroupId, Key, KeyId, KeyLinkKind, KeyOp, KeySource, KeySpec, KeyState, KeyUsage,
    OldKeyAction, OpKind, OpState, Operation, Permission, PlannedCopy, PlannedKey, PlannedSource, RotationKind,
    RotationPlan, Scope, rotated_name, transition,
};
use crate::kms::{self, CreateKeyInput, Kms};
use crate::{Error, Result};

/// A temporary name while a rotation runs: `<name>~rotating-<first 8 of the id>`.
fn rotating_name(name: &str, id: KeyId) -> String {
    let short: String = id.to_string().chars().take(8).collect();
    let base: String = name.chars().take(KEY_NAME_MAX - 20).collect();
    format!("{base}~rotating-{short}")
}

/// The AWS clients of the copies' groups, made once per group.
#[derive(Default)]
struct Clients(BTreeMap<GroupId, Arc<dyn Kms>>);

impl Clients {
    async fn get(&mut self, kw: &Keyward, g: GroupId) -> Result<Arc<dyn Kms>> {
        if let Some(k) = self.0.get(&g) {
            return Ok(k.clone());
        }
        let k = kw.group_client(g).await?;
        self.0.insert(g, k.clone());
        Ok(k)
    }
}

impl Keyward {
    /// RotateKey of a Keyward key (see the module docs). `lock` is the key's.
    pub(super) async fn rotate_keyward_key(
        &self,
        ctx: &Ctx,
        key: Key,
        req: RotateRequest,
        lock: KeyLock,
    ) -> Result<RotationOutcome> {
        if req.in_place {
            return Err(Error::invalid("in_place", "a Keyward key rotates to a new Keyward key, not in place"));
        }
        if req.to_source.is_some() {
            return Err(Error::invalid("to_source", "a Keyward key's material is Keyward-owned already"));
        }
        let spec = req.key_spec.unwrap_or(key.key_spec);
        if spec.aes_bytes().is_none() {
            return Err(Error::invalid("key_spec", "a Keyward key rotates to AES_128, AES_192 or AES_256"));
        }
        if spec == KeySpec::Aes192 && key.key_ops.iter().any(|o| matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey)) {
            return Err(Error::invalid(
                "key_spec",
                "this key's key_ops include WRAP_KEY/UNWRAP_KEY and AES_192 keys have no key wrap: rotate to AES_128 or AES_256, or remove them first",
            ));
        }
        transition(key.state, Event::Rotate).map_err(|e| refused(&key, e))?;
        not_rotated(&key)?;
        let group = self.store.get_group(key.group_id).await?;
        self.check_policies(key.group_id, &group.crypto_policy, spec, &key.key_ops)?;
        let plan = self.plan_keyward(ctx, &key, spec, req.rotate_linked.as_ref(), req.old_key_action).await?;
        if req.validate_only {
            return Ok(RotationOutcome::planned(plan, key));
        }
        let made = self.made_keys(ctx, &key, &plan).await?;
        let material = crate::crypto::keys::random_key(spec.aes_bytes().unwrap_or(32)).map_err(Error::internal)?;
        let mut op = Operation::start(OpKind::Rotate, key.group_id, key.id, ctx.now);
        op.subjects = touched(&plan);
        op.plan = Some(plan);
        self.begin_rotation(ctx, &op, &made, &material).await?;
        let (kw, ctx) = (self.clone(), ctx.clone());
        let run = tokio::spawn(async move { kw.run_keyward_rotation(&ctx, &mut op, lock).await });
        run.await.map_err(|e| Error::internal(format!("the rotation task ended: {e}")))?
    }

    /// The plan: the new key, and every linked copy with whether and how it follows.
    async fn plan_keyward(
        &self,
        ctx: &Ctx,
        key: &Key,
        spec: KeySpec,
        linked: Option<&LinkedCopies>,
        action: OldKeyAction,
    ) -> Result<RotationPlan> {
        let copy_links: Vec<(GroupId, KeyId)> =
            key.links.iter().filter(|l| l.kind == KeyLinkKind::CopiedTo).map(|l| (l.group_id, l.key_id)).collect();
        if let Some(LinkedCopies::Only(chosen)) = linked
            && let Some((g, k)) = chosen.iter().find(|c| !copy_links.contains(c))
        {
            return Err(Error::invalid(
                "linked_copies",
                format!("groups/{g}/keys/{k} is not a linked copy of {}", key.name()),
            ));
        }
        let new_id = KeyId::new();
        let mut calls = Vec::new();
        let mut copies = Vec::new();
        let mut clients = Clients::default();
        for (g, k) in copy_links {
            let copy = match self.store.get_key(g, k).await {
                Ok(c) => c,
                // Deleted: its link is left over from before links were removed with keys.
                Err(Error::NotFound { .. }) => {
                    if let Some(LinkedCopies::Only(chosen)) = linked
                        && chosen.contains(&(g, k))
                    {
                        return Err(Error::invalid("linked_copies", format!("groups/{g}/keys/{k} no longer exists")));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let may_manage = ctx.caller.grants.allows(Permission::ManageKeys, Scope::Group(g));
            if !may_manage && matches!(linked, Some(LinkedCopies::Only(chosen)) if chosen.contains(&(g, k))) {
                return Err(Error::Forbidden(format!("{} may not manage keys on groups/{g}", ctx.caller.actor)));
            }
            let skipped = match linked {
                None => Some("rotate_linked is not set: it keeps the old key's material".to_owned()),
                Some(LinkedCopies::Only(chosen)) if !chosen.contains(&(g, k)) => {
                    Some("not in linked_copies: it keeps the old key's material".to_owned())
                }
                _ if !may_manage => Some(format!("{} may not manage keys on groups/{g}", ctx.caller.actor)),
                _ if copy.links.iter().any(|l| l.kind == KeyLinkKind::RotatedTo) => {
                    Some("it was rotated already".to_owned())
                }
                _ if copy.state != KeyState::Enabled => {
                    Some(format!("it is {}; only ENABLED copies follow", copy.state.name()))
                }
                _ if !copy.is_virtual()
                    && spec == KeySpec::Aes192
                    && copy.key_ops.iter().any(|o| matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey)) =>
                {
                    Some("its key_ops include WRAP_KEY/UNWRAP_KEY and AES_192 keys have no key wrap".to_owned())
                }
                _ if copy.is_virtual() && spec != KeySpec::Aes256 => Some(format!(
                    "AWS imports 256-bit symmetric material only and the new key is {}; the copy keeps the old material",
                    spec.api_name()
                )),
                _ => None,
            };
            let mut planned = PlannedCopy {
                group_id: g,
                key_id: k,
                aws_key_id: copy.aws.as_ref().map(|a| a.aws_key_id.clone()),
                skipped,
                new_key_id: KeyId::new(),
                display_name: copy.display_name.clone(),
                rename_old_to: rotated_name(&copy.display_name, ctx.now, KEY_NAME_MAX),
                description: copy.description.clone(),
                tags: copy.tags.clone(),
                key_policy: None,
                alias_moves: Vec::new(),
            };
            if planned.skipped.is_none() {
                let copy_group = self.store.get_group(g).await?;
                let copy_spec = if copy.is_virtual() { KeySpec::SymmetricDefault } else { spec };
                self.check_policies(g, &copy_group.crypto_policy, copy_spec, &copy.key_ops)?;
            }
            if let (None, Some(aws_id)) = (&planned.skipped, planned.aws_key_id.clone()) {
                let kms = clients.get(self, g).await?;
                let d = describe(&kms, &aws_id, Reads { policy: true, rotation: false }).await?;
                planned.description = d.meta.description.clone().unwrap_or_default();
                planned.tags = d.tags;
                planned.key_policy = d.policy;
                let aliases = key_aliases(&kms, &aws_id).await?;
                let name = copy.name();
                calls.push(format!(
                    "CreateKey(Origin=EXTERNAL, KeySpec=SYMMETRIC_DEFAULT, KeyUsage=ENCRYPT_DECRYPT, Tags={}{}) for {name}",
                    planned.tags.len(),
                    if planned.key_policy.is_some() { ", Policy=copied" } else { "" }
                ));
                calls.push(format!("GetParametersForImport(new key of {name}, RSAES_OAEP_SHA_256, RSA_2048)"));
                calls.push(format!(
                    "ImportKeyMaterial(new key of {name}, the new material, KEY_MATERIAL_DOES_NOT_EXPIRE)"
                ));
                calls.extend(aliases.iter().map(|a| format!("UpdateAlias({a} → new key of {name})")));
                match action {
                    OldKeyAction::KeepEnabled => {}
                    OldKeyAction::Disable => calls.push(format!("DisableKey({aws_id})")),
                    OldKeyAction::ScheduleDeletion { pending_window_days } => {
                        calls.push(format!("ScheduleKeyDeletion({aws_id}, PendingWindowInDays={pending_window_days})"))
                    }
                }
                planned.alias_moves =
                    aliases.into_iter().map(|alias| AliasMove { alias, from_aws_key_id: aws_id.clone() }).collect();
            }
            copies.push(planned);
        }
        Ok(RotationPlan {
            kind: RotationKind::KeywardKey,
            group_id: key.group_id,
            key_id: key.id,
            aws_key_id: String::new(),
            new_key: Some(PlannedKey {
                display_name: key.display_name.clone(),
                key_spec: spec,
                key_usage: KeyUsage::EncryptDecrypt,
                description: key.description.clone(),
                tags: key.tags.clone(),
                key_policy: None,
                rotation_period_days: None,
            }),
            rename_old_to: Some(rotated_name(&key.display_name, ctx.now, KEY_NAME_MAX)),
            source: Some(PlannedSource {
                group_id: key.group_id,
                key_id: new_id,
                create_named: Some(rotating_name(&key.display_name, new_id)),
            }),
            copies,
            alias_moves: Vec::new(),
            old_key_action: action,
            aws_calls: calls,
        })
    }

    /// The Keyward keys a Keyward key's rotation makes with its intent: the new key and the
    /// successors of REGULAR copies (temporary names; they share the new material).
    async fn made_keys(&self, ctx: &Ctx, old: &Key, plan: &RotationPlan) -> Result<Vec<Key>> {
        let (Some(new_key), Some(source)) = (&plan.new_key, &plan.source) else {
            return Err(Error::internal("a Keyward key rotation plan without its new key"));
        };
        let mut made = vec![Key {
            id: source.key_id,
            display_name: source.create_named.clone().unwrap_or_default(),
            description: old.description.clone(),
            key_spec: new_key.key_spec,
            key_ops: old.key_ops.clone(),
            source: KeySource::Keyward,
            tags: old.tags.clone(),
            ..new_record(old.group_id, &ctx.caller.actor, ctx.now)
        }];
        for c in plan.copies.iter().filter(|c| c.skipped.is_none() && c.aws_key_id.is_none()) {
            let copy = self.store.get_key(c.group_id, c.key_id).await?;
            made.push(Key {
                id: c.new_key_id,
                display_name: rotating_name(&copy.display_name, c.new_key_id),
                description: copy.description.clone(),
                key_spec: new_key.key_spec,
                key_ops: copy.key_ops.clone(),
                source: KeySource::Keyward,
                tags: copy.tags.clone(),
                ..new_record(c.group_id, &ctx.caller.actor, ctx.now)
            });
        }
        Ok(made)
    }

    /// Runs (or resumes) a Keyward key's rotation from the step its entry stands at, holding
    /// `lock` (the old key's) and then the locks of every other key it touches, by id.
    pub(crate) async fn run_keyward_rotation(
        &self,
        ctx: &Ctx,
        op: &mut Operation,
        lock: KeyLock,
    ) -> Result<RotationOutcome> {
        let (plan, new_key, source) = parts(op)?;
        let (plan, new_key, source) = (plan.clone(), new_key.clone(), source.clone());
        let mut ids: Vec<KeyId> = op.subjects.iter().map(|(_, k)| *k).collect();
        ids.sort();
        let mut locks = Vec::new();
        for id in ids {
            let l = self.lock_key_within(id, Duration::from_secs(10)).await?.ok_or_else(|| {
                Error::Aborted(format!(
                    "groups/{}/keys/{id}, part of this rotation, is being changed; try again",
                    op.group_id
                ))
            })?;
            locks.push(l);
        }
        let mut held: Vec<&KeyLock> = locks.iter().collect();
        held.push(&lock);
        let _renewal = self.keep_alive(&held);
        let mut clients = Clients::default();
        let following: Vec<&PlannedCopy> =
            plan.copies.iter().filter(|c| c.skipped.is_none() && c.aws_key_id.is_some()).collect();

        if op.state == OpState::Started {
            let material = self.store.key_material(source.key_id).await?;
            for c in &following {
                let kms = clients.get(self, c.group_id).await?;
                if let Err(e) = self.make_aws_successor(ctx, &kms, op, c, &material).await {
                    self.undo_keyward_rotation(ctx, op, &plan, &mut clients, &e.to_string()).await;
                    return Err(e);
                }
            }
            op.advance(OpState::AwsKeyCreated, self.now());
            journal::record(&self.store, op).await?;
        }
        if op.state == OpState::AwsKeyCreated {
            for c in &following {
                let kms = clients.get(self, c.group_id).await?;
                if let Some(why) = self.move_copy_aliases(ctx, &kms, c).await? {
                    self.undo_keyward_rotation(ctx, op, &plan, &mut clients, &why).await;
                    return Err(Error::Aborted(format!(
                        "rotation stopped: {why}; undone: aliases back on the old copies, the new AWS keys scheduled for deletion, the new Keyward keys disabled"
                    )));
                }
            }
            op.advance(OpState::AliasesMoved, self.now());
            journal::record(&self.store, op).await?;
        }
        // The old AWS copies' fate, before the records say so.
        let mut deletions = BTreeMap::new();
        for c in &following {
            let kms = clients.get(self, c.group_id).await?;
            let aws_id = c.aws_key_id.clone().unwrap_or_default();
            let old = self.store.get_key(c.group_id, c.key_id).await?;
            if let Some(d) = retire_in_aws(&kms, &aws_id, &old, plan.old_key_action).await? {
                deletions.insert(c.key_id, d);
            }
        }
        self.finish_keyward_rotation(ctx, op, &plan, &new_key, &source, &deletions).await?;
        for l in locks {
            l.release().await;
        }
        lock.release().await;
        let key = self.store.get_key(source.group_id, source.key_id).await?;
        let old_key = Some(self.store.get_key(plan.group_id, plan.key_id).await?);
        let mut new_copies = Vec::new();
        for c in plan.copies.iter().filter(|c| c.skipped.is_none()) {
            new_copies.push(self.store.get_key(c.group_id, c.new_key_id).await?);
        }
        tracing::info!(old = %plan.key_id, new = %key.name(), copies = new_copies.len(), "keyward key rotated");
        Ok(RotationOutcome { plan, executed: true, key, old_key, moved_to: None, new_copies })
    }

    /// An AWS copy's successor: CreateKey EXTERNAL and the record (PENDING_IMPORT) unless a run
    /// before the crash made it, then ImportKeyMaterial and ENABLED unless done already.
    async fn make_aws_successor(
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
    async fn move_copy_aliases(&self, ctx: &Ctx, kms: &Arc<dyn Kms>, c: &PlannedCopy) -> Result<Option<String>> {
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
    async fn finish_keyward_rotation(
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
    async fn undo_keyward_rotation(
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
    async fn record_aliases_from_aws(&self, ctx: &Ctx, kms: &Arc<dyn Kms>, c: &PlannedCopy) -> Result<()> {
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
fn parts(op: &Operation) -> Result<(&RotationPlan, &PlannedKey, &PlannedSource)> {
    let plan = op.plan.as_ref().ok_or_else(|| Error::internal("a rotation journal entry without its plan"))?;
    let new_key = plan.new_key.as_ref().ok_or_else(|| Error::internal("a rotation plan without its key"))?;
    let source = plan.source.as_ref().ok_or_else(|| Error::internal("a Keyward key rotation without its new key"))?;
    Ok((plan, new_key, source))
}

/// Every key a Keyward key's rotation touches but the rotated one: the new key, and each
/// following copy with its successor (the open-rotation gate refuses changes of all of them).
fn touched(plan: &RotationPlan) -> Vec<(GroupId, KeyId)> {
    let mut keys: Vec<(GroupId, KeyId)> = plan.source.iter().map(|s| (s.group_id, s.key_id)).collect();
    for c in plan.copies.iter().filter(|c| c.skipped.is_none()) {
        keys.push((c.group_id, c.key_id));
        keys.push((c.group_id, c.new_key_id));
    }
    keys
}

/// The old AWS copy's fate in AWS (once; a run before a crash may have done it). A scheduled
/// deletion answers AWS's deletion date (`Some`).
async fn retire_in_aws(
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

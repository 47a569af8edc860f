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

use super::RotationOutcome;
use super::linked_steps::{parts, retire_in_aws};
use crate::app::requests::{LinkedCopies, RotateRequest};
use crate::app::support::aws_keys::{Reads, describe, key_aliases};
use crate::app::support::checks::{KEY_NAME_MAX, not_rotated, refused};
use crate::app::support::journal;
use crate::app::support::locks::KeyLock;
use crate::app::support::records::new_record;
use crate::app::{Ctx, Keyward};
use crate::domain::{
    AliasMove, Event, GroupId, Key, KeyId, KeyLinkKind, KeyOp, KeySource, KeySpec, KeyState, KeyUsage, OldKeyAction,
    OpKind, OpState, Operation, Permission, PlannedCopy, PlannedKey, PlannedSource, RotationKind, RotationPlan, Scope,
    rotated_name, transition,
};
use crate::kms::Kms;
use crate::{Error, Result};

/// A temporary name while a rotation runs: `<name>~rotating-<first 8 of the id>`.
pub(super) fn rotating_name(name: &str, id: KeyId) -> String {
    let short: String = id.to_string().chars().take(8).collect();
    let base: String = name.chars().take(KEY_NAME_MAX - 20).collect();
    format!("{base}~rotating-{short}")
}

/// The AWS clients of the copies' groups, made once per group.
#[derive(Default)]
pub(super) struct Clients(BTreeMap<GroupId, Arc<dyn Kms>>);

impl Clients {
    pub(super) async fn get(&mut self, kw: &Keyward, g: GroupId) -> Result<Arc<dyn Kms>> {
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

//! Rotation use cases: RotateKey (a new AWS key takes over — with AWS's material or, with
//! `to_source`, a Keyward key's — or AWS rotates in place) with a plan first (`plan`), and the
//! saga that executes it and resumes it after a crash (`saga`, also run by the worker's recovery).
//!
//! A new-key rotation is a saga on the journal (`OpKind::Rotate`), executing the plan kept in
//! its entry: intent → CreateKey, the new key recorded (`AwsKeyCreated`) → every alias moved
//! with UpdateAlias (`AliasesMoved`) → the old key's fate, the renames and the links (`Done`).
//! It holds the locks of both keys throughout; from `AwsKeyCreated` on it is resumed forward,
//! before that it is compensated. An alias found elsewhere than the plan expects stops it: the
//! aliases it moved go back, the new key is scheduled for deletion, and the caller is told.

mod linked;
mod linked_steps;
mod plan;
mod saga;

use std::sync::Arc;
use std::time::Duration;

use super::requests::RotateRequest;
use super::support::aws_keys::read_rotation;
use super::support::checks::{mutable, not_rotated, refused};
use super::{Ctx, Keyward};
use crate::domain::{
    Action, Event, Key, KeyId, KeySource, OldKeyAction, OpKind, Operation, RotationKind, RotationPlan, transition,
};
use crate::kms::Kms;
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
    /// A Keyward key's rotation: the successors of the copies that followed, in plan order.
    pub new_copies: Vec<Key>,
}

impl RotationOutcome {
    /// A plan answered (`validate_only`): nothing ran.
    fn planned(plan: RotationPlan, key: Key) -> Self {
        Self { plan, executed: false, key, old_key: None, moved_to: None, new_copies: Vec::new() }
    }
}

/// Keyward's alias records after `moved` went from `old` to `new` in AWS: `new` holds exactly
/// them (sorted), `old` no longer, and the ones Keyward managed stay managed.
fn hand_over(old: &mut Key, new: &mut Key, moved: &[String]) {
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
        a.aliases = moved.to_vec();
        a.aliases.sort();
        a.managed_aliases = managed;
    }
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
        if req.in_place && req.to_source.is_some() {
            return Err(Error::invalid(
                "to_source",
                "an in-place rotation keeps AWS's own material; rotating onto Keyward-owned material makes a new key",
            ));
        }
        // A second rotation of the key is refused, not queued; the second's wait only covers the
        // release of a change (or a refused rotation) that has just ended.
        let Some(lock) = self.lock_key_within(id, Duration::from_secs(1)).await? else {
            return Err(Error::Aborted(format!(
                "groups/{group}/keys/{id} is being changed or rotated; try again when that is done"
            )));
        };
        self.refuse_open_rotation(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        let Some(aws) = key.aws.clone() else {
            return self.rotate_keyward_key(ctx, key, req, lock).await;
        };
        if req.rotate_linked.is_some() {
            return Err(Error::invalid(
                "rotate_linked",
                "only a Keyward key (REGULAR group) has linked copies that follow its rotation",
            ));
        }
        if req.key_spec.is_some() {
            return Err(Error::invalid(
                "key_spec",
                "a virtual key's successor keeps its spec; key_spec is for Keyward keys",
            ));
        }
        mutable(&key)?;
        transition(key.state, Event::Rotate).map_err(|e| refused(&key, e))?;
        not_rotated(&key)?;
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
                source: None,
                copies: Vec::new(),
                alias_moves: Vec::new(),
                old_key_action: OldKeyAction::KeepEnabled,
                aws_calls: vec![format!("RotateKeyOnDemand({})", aws.aws_key_id)],
            }
        } else {
            let source = match req.to_source {
                None if key.source != KeySource::AwsNative => {
                    return Err(cannot(
                        Precondition::KeySource,
                        &key,
                        "its material came from Keyward or a user (source is not AWS_NATIVE); a new AWS key would not carry it (to_source rotates it onto a Keyward key's material)",
                    ));
                }
                None => None,
                Some(_) if key.source == KeySource::Keyward => {
                    return Err(cannot(
                        Precondition::KeySource,
                        &key,
                        "its material already comes from a Keyward key (source KEYWARD); rotate that key",
                    ));
                }
                Some(to) => Some(self.plan_source(&key, to).await?),
            };
            self.plan_new_key(ctx, &kms, &key, req.old_key_action, source).await?
        };
        if req.validate_only {
            return Ok(RotationOutcome::planned(plan, key));
        }
        match plan.kind {
            RotationKind::InPlace => self.rotate_in_place(ctx, &kms, key, plan).await,
            RotationKind::KeywardKey => Err(Error::internal("a virtual key planned as a Keyward key rotation")),
            RotationKind::NewKey | RotationKind::ToSource => {
                let made = Self::made_source(ctx, &plan);
                let material = crate::crypto::keys::random_key(32).map_err(Error::internal)?;
                let mut op = Operation::start(OpKind::Rotate, group, id, ctx.now);
                // The keys it touches besides the rotated one, for the open-rotation gate: the
                // new key (its id assigned now), and the Keyward key whose material it takes.
                op.subjects = std::iter::once((group, KeyId::new()))
                    .chain(plan.source.as_ref().map(|s| (s.group_id, s.key_id)))
                    .collect();
                op.plan = Some(plan);
                self.begin_rotation(ctx, &op, &made, &material).await?;
                // Runs to its end even when the caller goes away (a deadline, a disconnect).
                let (kw, ctx) = (self.clone(), ctx.clone());
                let run = tokio::spawn(async move { kw.run_rotation(&ctx, &kms, &mut op, lock).await });
                run.await.map_err(|e| Error::internal(format!("the rotation task ended: {e}")))?
            }
        }
    }

    /// ListKeyRotations of a virtual key: one page (`limit` 1–1000, AWS's default 100) of AWS's
    /// record of its completed rotations, read from AWS on every call, and the marker of the
    /// next page. A Keyward key's rotations are its ROTATED_FROM links instead.
    pub async fn list_key_rotations(
        &self,
        _ctx: &Ctx,
        group: crate::domain::GroupId,
        id: KeyId,
        limit: Option<i32>,
        marker: Option<String>,
    ) -> Result<crate::kms::Page<crate::kms::KeyRotation>> {
        let key = self.store.get_key(group, id).await?;
        let Some(aws) = &key.aws else {
            return Err(Error::precondition(
                Precondition::NotVirtual,
                key.name(),
                format!("{} is a Keyward key; its rotations are its ROTATED_FROM links", key.name()),
            ));
        };
        let kms = self.group_client(group).await?;
        Ok(kms.list_key_rotations(&aws.aws_key_id, limit, marker).await?)
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
        Ok(RotationOutcome { plan, executed: true, key, old_key: None, moved_to, new_copies: vec![] })
    }
}

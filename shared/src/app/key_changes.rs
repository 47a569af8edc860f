//! Key change use cases: UpdateKey, ScheduleKeyDeletion, CancelKeyDeletion, DeleteKey. Each
//! holds the key's lock and asks `domain::transition` before any AWS call.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::requests::KeyPatch;
use super::support::aws_keys::{Reads, alias_taken, describe, key_aliases, read_rotation, refreshed};
use super::support::checks::{self, mutable, none_bad, refused};
use super::support::new_etag;
use super::support::records::ok_event;
use super::{Ctx, Keyward};
use crate::domain::{
    Action, Alias, Event, GroupId, Key, KeyId, KeyLinkKind, KeyState, Permission, RotationPolicy, Scope, transition,
};
use crate::kms::{self, Kms};
use crate::{Error, Precondition, Result};

/// A policy with `rotate_linked` rotates the key's copies later, as the worker: it is set only
/// by a caller who manages keys in every group holding one (a copy made later is made by
/// someone who manages its group, knowing its source's policy).
fn may_rotate_every_copy(ctx: &Ctx, key: &Key) -> Result<()> {
    let copies = key.links.iter().filter(|l| l.kind == KeyLinkKind::CopiedTo);
    match copies.map(|l| l.group_id).find(|g| !ctx.caller.grants.allows(Permission::ManageKeys, Scope::Group(*g))) {
        Some(g) => Err(Error::Forbidden(format!(
            "{} may not manage keys on groups/{g}, which holds a copy of {}: rotate_linked would rotate it",
            ctx.caller.actor,
            key.name()
        ))),
        None => Ok(()),
    }
}

/// What an UpdateKey does to the key's aliases in AWS.
struct AliasChange {
    add: Vec<String>,
    remove: Vec<String>,
}

/// The aliases to add and remove so the key has exactly `want`, refusing to remove an alias
/// Keyward did not put on the key unless the request names it in `allowed_removals`.
fn alias_change(key: &Key, want: Option<&[Alias]>, allowed_removals: &[Alias]) -> Result<AliasChange> {
    let (Some(want), Some(aws)) = (want, &key.aws) else {
        return Ok(AliasChange { add: Vec::new(), remove: Vec::new() });
    };
    let want: BTreeSet<&str> = want.iter().map(Alias::as_str).collect();
    let have: BTreeSet<&str> = aws.aliases.iter().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = allowed_removals.iter().map(Alias::as_str).collect();
    let mut remove = Vec::new();
    for a in have.difference(&want) {
        if !(aws.managed_aliases.iter().any(|m| m == a) || allowed.contains(a)) {
            return Err(Error::precondition(
                Precondition::UnmanagedAlias,
                key.name(),
                format!("{a} was not put on this key by Keyward; name it in remove_aliases to remove it"),
            ));
        }
        remove.push((*a).to_owned());
    }
    Ok(AliasChange { add: want.difference(&have).map(|a| (*a).to_owned()).collect(), remove })
}

/// The request's field violations for `key` (nothing is looked up).
fn patch_violations(key: &Key, patch: &KeyPatch) -> Vec<crate::domain::FieldViolation> {
    let mut bad =
        checks::key_fields(patch.display_name.as_deref(), patch.description.as_deref(), patch.aliases.as_deref());
    bad.extend(patch.key_policy.as_deref().and_then(checks::key_policy));
    if let Some(Some(sched)) = &patch.rotation_schedule {
        let rotates = checks::Rotates::of(key.is_virtual(), key.source);
        bad.extend(checks::rotation_schedule(sched, key.key_spec, rotates));
    }
    if let Some(Some(days)) = patch.rotation
        && days != 0
        && !(90..=2560).contains(&days)
    {
        bad.push(crate::domain::FieldViolation::new(
            "key.aws.rotation_period_days",
            format!("{days} days; AWS allows 90 to 2560 (or 0 for its default, 365)"),
        ));
    }
    match (&patch.key_ops, &key.aws) {
        (Some(ops), None) => {
            bad.extend(checks::keyward_key(key.key_spec, ops, &[]));
            // A key pair's (or HMAC key's) use is fixed when it is made, as AWS's KeyUsage is:
            // one RSA key never both decrypts and signs.
            if key.key_spec.aes_bytes().is_none()
                && let (Ok(now), Ok(asked)) =
                    (key.key_spec.aws_key_usage(&key.key_ops), key.key_spec.aws_key_usage(ops))
                && now != asked
            {
                bad.push(crate::domain::FieldViolation::new(
                    "key.key_ops",
                    format!(
                        "{} is for {}, fixed when it was made; these operations need {}",
                        key.name(),
                        now.aws_name(),
                        asked.aws_name()
                    ),
                ));
            }
        }
        (Some(ops), Some(aws)) => {
            let usage_now = aws.key_usage.as_deref();
            match key.key_spec.aws_key_usage(ops) {
                Ok(u) if Some(u.aws_name()) == usage_now || ops.is_empty() => {}
                Ok(u) => bad.push(crate::domain::FieldViolation::new(
                    "key.key_ops",
                    format!(
                        "the AWS key's usage is {}, these operations need {}",
                        usage_now.unwrap_or("unknown"),
                        u.aws_name()
                    ),
                )),
                Err(e) => bad.push(crate::domain::FieldViolation::new("key.key_ops", e)),
            }
        }
        (None, _) => {}
    }
    bad
}

impl Keyward {
    /// The virtual key `id` and its AWS client, refusing Keyward keys and AWS-managed keys.
    async fn mutable_virtual_key(&self, group: GroupId, id: KeyId) -> Result<(Key, Arc<dyn Kms>)> {
        let key = self.store.get_key(group, id).await?;
        if !key.is_virtual() {
            return Err(Error::precondition(
                Precondition::NotVirtual,
                key.name(),
                format!("{} is held by Keyward, not an AWS KMS key", key.name()),
            ));
        }
        mutable(&key)?;
        let kms = self.group_client(group).await?;
        Ok((key, kms))
    }

    /// UpdateKey: checks everything first (no AWS call on a refusal), then changes AWS field by
    /// field. If AWS fails part-way, Keyward re-reads the key from AWS and stores what AWS holds
    /// before answering with the error, so the two never disagree.
    pub async fn update_key(&self, ctx: &Ctx, group: GroupId, id: KeyId, patch: KeyPatch) -> Result<Key> {
        let lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        if let Some(etag) = &patch.etag
            && etag != &key.etag
        {
            return Err(Error::Aborted(format!("{} has etag {}, not {etag}; read it again", key.name(), key.etag)));
        }
        mutable(&key)?;
        none_bad(patch_violations(&key, &patch))?;
        if let Some(Some(sched)) = &patch.rotation_schedule {
            checks::not_rotated(&key)?;
            if sched.rotate_linked {
                may_rotate_every_copy(ctx, &key)?;
            }
        }
        if !key.is_virtual() && (patch.aliases.is_some() || patch.key_policy.is_some() || patch.rotation.is_some()) {
            return Err(Error::precondition(
                Precondition::NotVirtual,
                key.name(),
                "aliases, key policies and AWS rotation belong to AWS KMS keys; this key is held by Keyward",
            ));
        }
        if patch.rotation.is_some() && !key.aws.as_ref().is_some_and(|a| a.aws_can_rotate()) {
            return Err(Error::precondition(
                Precondition::KeySpec,
                key.name(),
                format!(
                    "AWS rotates automatically only symmetric encryption keys whose material AWS generated; {} is not one (asymmetric, HMAC, imported or custom key store keys are rotated with RotateKey)",
                    key.name()
                ),
            ));
        }
        // Keyward keys change in the database only; virtual keys change in AWS first.
        let touches_aws = key.is_virtual()
            && (patch.description.is_some()
                || patch.tags.is_some()
                || patch.aliases.is_some()
                || patch.key_policy.is_some()
                || patch.rotation.is_some()
                || patch.enabled.is_some());
        if touches_aws {
            transition(key.state, Event::EditInAws).map_err(|e| refused(&key, e))?;
        }
        if patch.rotation.is_some() {
            transition(key.state, Event::SetAwsRotation).map_err(|e| refused(&key, e))?;
        }
        let new_state = match patch.enabled {
            Some(true) => transition(key.state, Event::Enable).map_err(|e| refused(&key, e))?,
            Some(false) => transition(key.state, Event::Disable).map_err(|e| refused(&key, e))?,
            None => key.state,
        };
        if let Some(ops) = &patch.key_ops {
            let g = self.store.get_group(group).await?;
            self.check_policies(group, &g.crypto_policy, key.key_spec, ops)?;
        }
        let aliases = alias_change(&key, patch.aliases.as_deref(), &patch.remove_aliases)?;
        if let Some(n) = &patch.display_name
            && n != &key.display_name
        {
            self.check_name_free(group, n).await?;
        }

        let mut k = key.clone();
        // Checked above (virtual, not AWS-managed): only the client is needed.
        let kms = if touches_aws { Some(self.group_client(group).await?) } else { None };
        if let Some(kms) = &kms {
            if let Err(e) = self.apply_to_aws(kms, &key, &patch, &aliases).await {
                self.reread_after_failure(kms, &key).await;
                return Err(e);
            }
            if let Some(aws) = k.aws.as_mut() {
                let mut all: BTreeSet<String> = aws.aliases.iter().cloned().collect();
                all.retain(|a| !aliases.remove.contains(a));
                all.extend(aliases.add.iter().cloned());
                aws.aliases = all.into_iter().collect();
                aws.managed_aliases.retain(|a| !aliases.remove.contains(a));
                aws.managed_aliases.extend(aliases.add.iter().cloned());
                aws.managed_aliases.sort();
                if let Some(p) = &patch.key_policy {
                    aws.key_policy = Some(p.clone());
                }
                if patch.rotation.is_some() {
                    aws.rotation = read_rotation(kms, &aws.aws_key_id).await.ok();
                }
            }
            if patch.enabled.is_some() {
                k.set_state(new_state);
            }
        }
        let detail = patch.describe();
        if let Some(v) = patch.display_name {
            k.display_name = v;
        }
        if let Some(v) = patch.description {
            k.description = v;
        }
        if let Some(v) = patch.tags {
            k.tags = v.into_map();
        }
        if let Some(v) = patch.key_ops {
            k.key_ops = v;
        }
        if let Some(v) = patch.rotation_schedule {
            k.rotation_policy = v.map(|r| RotationPolicy::new(r, ctx.now));
        }
        k.state = new_state;
        if let Err(e) = self.commit_key_change(ctx, &mut k, Action::UpdateKey, detail).await {
            if let Some(kms) = &kms {
                // AWS already changed: store what it holds so the two agree.
                let current = self.store.get_key(group, id).await.unwrap_or(key);
                self.reread_after_failure(kms, &current).await;
            }
            return Err(e);
        }
        lock.release().await;
        tracing::info!(group_id = %group, key_id = %id, "key updated");
        Ok(k)
    }

    async fn apply_to_aws(&self, kms: &Arc<dyn Kms>, key: &Key, patch: &KeyPatch, aliases: &AliasChange) -> Result<()> {
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.as_str()).unwrap_or_default();
        if let Some(d) = &patch.description
            && d != &key.description
        {
            kms.update_key_description(aws_id, d).await?;
        }
        if let Some(tags) = &patch.tags {
            let want = tags.as_map();
            let gone: Vec<String> = key.tags.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
            let changed: Vec<(String, String)> =
                want.iter().filter(|(k, v)| key.tags.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
            if !gone.is_empty() {
                kms.untag_resource(aws_id, gone).await?;
            }
            if !changed.is_empty() {
                kms.tag_resource(aws_id, changed).await?;
            }
        }
        for a in &aliases.add {
            if let Err(e) = kms.create_alias(a, aws_id).await {
                return Err(match e {
                    kms::Error::AlreadyExists(_) => alias_taken(kms, a).await,
                    other => Error::from(other),
                });
            }
        }
        for a in &aliases.remove {
            match kms.delete_alias(a).await {
                Ok(()) | Err(kms::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(p) = &patch.key_policy {
            kms.put_key_policy(aws_id, p).await.map_err(|e| match e {
                kms::Error::Validation(m) => Error::invalid("key.aws.key_policy", m),
                other => other.into(),
            })?;
        }
        match patch.enabled {
            Some(true) if key.state != KeyState::Enabled => kms.enable_key(aws_id).await?,
            Some(false) if key.state != KeyState::Disabled => kms.disable_key(aws_id).await?,
            _ => {}
        }
        match patch.rotation {
            Some(Some(days)) => kms.enable_key_rotation(aws_id, Some(days).filter(|d| *d != 0)).await?,
            Some(None) => kms.disable_key_rotation(aws_id).await?,
            None => {}
        }
        Ok(())
    }

    /// After a partial failure: store what AWS now holds for the key (best effort, logged).
    async fn reread_after_failure(&self, kms: &Arc<dyn Kms>, key: &Key) {
        let Some(aws) = &key.aws else { return };
        let read = async {
            let d = describe(kms, &aws.aws_key_id, Reads { policy: self.settings.sync_key_policies, rotation: true })
                .await?;
            Ok::<_, kms::Error>((key_aliases(kms, &aws.aws_key_id).await?, d))
        }
        .await;
        match read {
            Ok((aliases, d)) => {
                let mut k = refreshed(key, &d, aliases);
                if k == *key {
                    return; // AWS holds what Keyward knew: nothing to record, the etag stays.
                }
                k.update_time = self.now();
                let prev_etag = std::mem::replace(&mut k.etag, new_etag());
                if let Err(e) = self.store.replace_key(&k, &prev_etag).await {
                    tracing::error!(key_id = %key.id, error = %e, "could not store the key as AWS holds it");
                }
            }
            Err(e) => {
                tracing::error!(key_id = %key.id, error = %e, "could not re-read the key after a failed update; the next sync will")
            }
        }
    }

    /// ScheduleKeyDeletion: `pending_window_days` 7–30 (AWS PendingWindowInDays); refused
    /// unless the lifecycle allows it. Answers the key PENDING_DELETION with AWS's deletion time.
    /// `validate_only`: every check, no AWS call, nothing stored; the key as it would be.
    pub async fn schedule_key_deletion(
        &self,
        ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        pending_window_days: i32,
        validate_only: bool,
    ) -> Result<Key> {
        if !(7..=30).contains(&pending_window_days) {
            return Err(Error::invalid(
                "pending_window_days",
                format!("{pending_window_days} days; AWS allows 7 to 30"),
            ));
        }
        let lock = self.lock_key(group, id).await?;
        let (mut k, kms) = self.mutable_virtual_key(group, id).await?;
        transition(k.state, Event::ScheduleDeletion).map_err(|e| refused(&k, e))?;
        let window = ctx.now + Duration::from_secs(pending_window_days as u64 * 86_400);
        if validate_only {
            k.mark_pending_deletion(None, window);
            return Ok(k);
        }
        let aws_id = k.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let deletion = kms.schedule_key_deletion(&aws_id, pending_window_days).await?;
        k.mark_pending_deletion(deletion, window);
        let detail = format!("pending window {pending_window_days} days");
        self.commit_key_change(ctx, &mut k, Action::ScheduleKeyDeletion, detail).await?;
        lock.release().await;
        tracing::info!(group_id = %group, key_id = %id, days = pending_window_days, "key deletion scheduled");
        Ok(k)
    }

    /// CancelKeyDeletion: only from PENDING_DELETION; the key comes back DISABLED (as in AWS).
    pub async fn cancel_key_deletion(&self, ctx: &Ctx, group: GroupId, id: KeyId) -> Result<Key> {
        let lock = self.lock_key(group, id).await?;
        let (mut k, kms) = self.mutable_virtual_key(group, id).await?;
        let state = transition(k.state, Event::CancelDeletion).map_err(|e| refused(&k, e))?;
        let aws_id = k.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        kms.cancel_key_deletion(&aws_id).await?;
        k.set_state(state);
        self.commit_key_change(ctx, &mut k, Action::CancelKeyDeletion, String::new()).await?;
        lock.release().await;
        tracing::info!(group_id = %group, key_id = %id, "key deletion cancelled");
        Ok(k)
    }

    /// DeleteKey: a virtual key only once AWS has deleted it (state DELETED); a Keyward key
    /// only once DISABLED (its sealed material goes with it) and no copy waits for it. Never
    /// calls AWS.
    pub async fn delete_key(&self, ctx: &Ctx, group: GroupId, id: KeyId) -> Result<()> {
        let lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        let event = if key.is_virtual() { Event::Forget } else { Event::Destroy };
        transition(key.state, event).map_err(|e| {
            Error::precondition(
                Precondition::KeyState,
                key.name(),
                format!("{} is {}; {}", key.name(), key.state.name(), e.reason),
            )
        })?;
        for l in key.links.iter().filter(|l| l.kind == KeyLinkKind::CopiedTo && !key.is_virtual()) {
            if let Ok(copy) = self.store.get_key(l.group_id, l.key_id).await
                && copy.state == KeyState::PendingImport
            {
                return Err(Error::precondition(
                    Precondition::CopyNeedsSource,
                    copy.name(),
                    format!(
                        "{} waits for its material to be reimported from this key; reimport it (or delete it) first",
                        copy.name()
                    ),
                ));
            }
        }
        let tx = self.store.begin_audited().await?;
        tx.delete_key(group, id).await?;
        ok_event(&tx, &ctx.caller, Action::DeleteKey, key.name(), String::new(), ctx.now).await?;
        tx.commit().await?;
        lock.release().await;
        tracing::info!(group_id = %group, key_id = %id, "key deleted");
        Ok(())
    }
}

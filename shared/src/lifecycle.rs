//! Key lifecycle use cases: UpdateKey, ScheduleKeyDeletion, CancelKeyDeletion, DeleteKey, and the
//! worker's deletion-window check. Each asks `domain::transition` before any AWS call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::audit::ok_event;
use crate::domain::{
    Alias, Caller, CryptoPolicy, Event, FieldViolation, GroupId, Key, KeyId, KeyOp, KeySpec, KeyState, Tags, actions,
    transition, validate_display_name,
};
use crate::keys::{DESCRIPTION_MAX, new_etag};
use crate::kms::{self, Kms, Purpose};
use crate::sync::{describe, details, next_check};
use crate::{Error, Keyward, Result};

/// AWS PutKeyPolicy: at most 32 KiB.
const POLICY_MAX: usize = 32 * 1024;

/// How long the deletion-window check waits before asking AWS again about a key that is
/// still pending deletion, or whose check failed.
pub const RECHECK_AFTER: Duration = Duration::from_secs(3600);

/// The fields an UpdateKey changes (`None`: untouched).
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Tags>,
    pub aliases: Option<Vec<Alias>>,
    /// Aliases Keyward did not put on the key that this request may remove.
    pub remove_aliases: Vec<Alias>,
    pub key_policy: Option<String>,
    pub enabled: Option<bool>,
    pub key_ops: Option<Vec<KeyOp>>,
    /// When set, must equal the stored etag (else ABORTED).
    pub etag: Option<String>,
}

impl KeyPatch {
    fn describe(&self) -> String {
        let fields = [
            ("display_name", self.display_name.is_some()),
            ("description", self.description.is_some()),
            ("tags", self.tags.is_some()),
            ("aws.aliases", self.aliases.is_some()),
            ("aws.key_policy", self.key_policy.is_some()),
            ("enabled", self.enabled.is_some()),
            ("key_ops", self.key_ops.is_some()),
        ];
        let changed: Vec<&str> = fields.iter().filter(|(_, set)| *set).map(|(n, _)| *n).collect();
        format!("changed {}", changed.join(", "))
    }
}

/// What one pass of the deletion-window check did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeletionCheckReport {
    /// Keys AWS no longer has: now DELETED.
    pub deleted: Vec<KeyId>,
    /// Keys still pending deletion in AWS: checked again after [`RECHECK_AFTER`].
    pub still_pending: Vec<KeyId>,
    /// Keys whose deletion was cancelled outside Keyward: refreshed.
    pub refreshed: Vec<KeyId>,
    /// Keys whose check failed (logged; retried after [`RECHECK_AFTER`]).
    pub failed: Vec<KeyId>,
    /// Due keys another worker claimed first.
    pub skipped: Vec<KeyId>,
}

fn refused(k: &Key, e: crate::domain::InvalidTransition) -> Error {
    Error::precondition("KEY_STATE", k.name(), format!("{} is {}: {}", k.name(), k.state.name(), e.reason))
}

/// The crypto policies (the group's, then the server's) that refuse `spec` with `ops`.
pub(crate) fn check_policies(
    group: GroupId,
    group_policy: &CryptoPolicy,
    server_policy: &CryptoPolicy,
    spec: KeySpec,
    ops: &[KeyOp],
) -> Result<()> {
    let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
    for (subject, policy) in
        [(format!("groups/{group}/crypto_policy"), group_policy), ("server crypto_policy".to_owned(), server_policy)]
    {
        if !policy.allows(spec, ops) {
            return Err(Error::precondition(
                "CRYPTO_POLICY",
                subject.clone(),
                format!("{subject} does not allow {} with {names:?}", spec.api_name()),
            ));
        }
    }
    Ok(())
}

impl Keyward {
    /// The virtual key `id` and its AWS client, refusing AWS-managed keys (read-only).
    async fn mutable_virtual_key(&self, group: GroupId, id: KeyId) -> Result<(Key, Arc<dyn Kms>)> {
        let key = self.store.get_key(group, id).await?;
        if !key.is_virtual() {
            return Err(Error::precondition(
                "NOT_VIRTUAL",
                key.name(),
                format!("{} is held by Keyward, not an AWS KMS key", key.name()),
            ));
        }
        if !key.is_mutable() {
            return Err(Error::precondition(
                "AWS_MANAGED_KEY",
                key.name(),
                format!("{} is an AWS-managed key; AWS manages it and Keyward never changes it", key.name()),
            ));
        }
        let g = self.store.get_group(group).await?;
        let kms = self.connect(&g, Purpose::Work)?;
        Ok((key, kms))
    }

    /// UpdateKey: checks everything first (no AWS call on a refusal), then changes AWS field by
    /// field. If AWS fails part-way, Keyward re-reads the key from AWS and stores what AWS holds
    /// before answering with the error, so the two never disagree.
    pub async fn update_key(
        &self,
        group: GroupId,
        id: KeyId,
        patch: KeyPatch,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let _lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        if let Some(etag) = &patch.etag
            && etag != &key.etag
        {
            return Err(Error::Aborted(format!("{} has etag {}, not {etag}; read it again", key.name(), key.etag)));
        }
        if !key.is_mutable() {
            return Err(Error::precondition(
                "AWS_MANAGED_KEY",
                key.name(),
                format!("{} is an AWS-managed key; AWS manages it and Keyward never changes it", key.name()),
            ));
        }
        let mut bad = Vec::new();
        if let Some(n) = &patch.display_name
            && let Err(e) = validate_display_name(n, 256)
        {
            bad.push(FieldViolation::new("key.display_name", e));
        }
        if patch.description.as_ref().is_some_and(|d| d.chars().count() > DESCRIPTION_MAX) {
            bad.push(FieldViolation::new(
                "key.description",
                format!("at most {DESCRIPTION_MAX} characters (AWS limit)"),
            ));
        }
        if let Some(p) = &patch.key_policy {
            if p.len() > POLICY_MAX {
                bad.push(FieldViolation::new("key.aws.key_policy", format!("{} bytes; at most {POLICY_MAX}", p.len())));
            } else if !serde_json::from_str::<serde_json::Value>(p).is_ok_and(|v| v.is_object()) {
                bad.push(FieldViolation::new("key.aws.key_policy", "not a JSON object"));
            }
        }
        if let Some(aliases) = &patch.aliases {
            let mut seen = BTreeSet::new();
            for a in aliases {
                if !seen.insert(a) {
                    bad.push(FieldViolation::new("key.aws.aliases", format!("{} is listed twice", a.as_str())));
                }
            }
        }
        if let Some(ops) = &patch.key_ops
            && key.aws.is_none()
        {
            bad.extend(crate::keys::check_keyward_key(key.key_spec, ops, &[]));
        }
        if let Some(ops) = &patch.key_ops
            && let Some(aws) = &key.aws
        {
            let usage_now = aws.key_usage.as_deref();
            match key.key_spec.aws_key_usage(ops) {
                Ok(u) if Some(u.aws_name()) == usage_now || ops.is_empty() => {}
                Ok(u) => bad.push(FieldViolation::new(
                    "key.key_ops",
                    format!(
                        "the AWS key's usage is {}, these operations need {}",
                        usage_now.unwrap_or("unknown"),
                        u.aws_name()
                    ),
                )),
                Err(e) => bad.push(FieldViolation::new("key.key_ops", e)),
            }
        }
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        if !key.is_virtual() && (patch.aliases.is_some() || patch.key_policy.is_some()) {
            return Err(Error::precondition(
                "NOT_VIRTUAL",
                key.name(),
                "aliases and key policies belong to AWS KMS keys; this key is held by Keyward",
            ));
        }
        // Keyward keys change in the database only; virtual keys change in AWS first.
        let touches_aws = key.is_virtual()
            && (patch.description.is_some()
                || patch.tags.is_some()
                || patch.aliases.is_some()
                || patch.key_policy.is_some()
                || patch.enabled.is_some());
        if touches_aws && key.state == KeyState::Deleted {
            return Err(refused(
                &key,
                crate::domain::InvalidTransition {
                    from: key.state,
                    event: Event::Enable,
                    reason: "the key is gone from AWS; only deleting the virtual key is left".into(),
                },
            ));
        }
        let new_state = match patch.enabled {
            Some(true) => transition(key.state, Event::Enable).map_err(|e| refused(&key, e))?,
            Some(false) => transition(key.state, Event::Disable).map_err(|e| refused(&key, e))?,
            None => key.state,
        };
        if let Some(ops) = &patch.key_ops {
            let g = self.store.get_group(group).await?;
            check_policies(group, &g.crypto_policy, &self.settings.server_policy, key.key_spec, ops)?;
        }
        // Aliases: what to add and what to remove, refusing to remove unmanaged ones silently.
        let (to_add, to_remove) = match (&patch.aliases, &key.aws) {
            (Some(want), Some(aws)) => {
                let want: BTreeSet<&str> = want.iter().map(Alias::as_str).collect();
                let have: BTreeSet<&str> = aws.aliases.iter().map(String::as_str).collect();
                let allowed: BTreeSet<&str> = patch.remove_aliases.iter().map(Alias::as_str).collect();
                let mut remove = Vec::new();
                for a in have.difference(&want) {
                    if aws.managed_aliases.iter().any(|m| m == a) || allowed.contains(a) {
                        remove.push((*a).to_owned());
                    } else {
                        return Err(Error::precondition(
                            "UNMANAGED_ALIAS",
                            key.name(),
                            format!("{a} was not put on this key by Keyward; name it in remove_aliases to remove it"),
                        ));
                    }
                }
                let add: Vec<String> = want.difference(&have).map(|a| (*a).to_owned()).collect();
                (add, remove)
            }
            _ => (Vec::new(), Vec::new()),
        };
        if let Some(n) = &patch.display_name
            && n != &key.display_name
            && self.store.key_name_taken(group, n).await?
        {
            return Err(Error::AlreadyExists {
                resource: n.clone(),
                message: format!("a key named {n:?} already exists in groups/{group}"),
            });
        }

        let mut k = key.clone();
        if touches_aws {
            let (_, kms) = self.mutable_virtual_key(group, id).await?;
            let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
            if let Err(e) = self.apply_to_aws(&kms, &aws_id, &key, &patch, &to_add, &to_remove).await {
                self.reread_after_failure(&kms, &key, now).await;
                return Err(e);
            }
            if let Some(aws) = k.aws.as_mut() {
                let mut aliases: BTreeSet<String> = aws.aliases.iter().cloned().collect();
                aliases.retain(|a| !to_remove.contains(a));
                aliases.extend(to_add.iter().cloned());
                aws.aliases = aliases.into_iter().collect();
                aws.managed_aliases.retain(|a| !to_remove.contains(a));
                aws.managed_aliases.extend(to_add.iter().cloned());
                aws.managed_aliases.sort();
                if let Some(p) = &patch.key_policy {
                    aws.key_policy = Some(p.clone());
                }
                if let Some(en) = patch.enabled {
                    aws.enabled = en;
                    aws.aws_key_state = Some(if en { "Enabled" } else { "Disabled" }.to_owned());
                }
            }
        }
        if let Some(v) = patch.display_name.clone() {
            k.display_name = v;
        }
        if let Some(v) = patch.description.clone() {
            k.description = v;
        }
        if let Some(v) = patch.tags.clone() {
            k.tags = v.into_map();
        }
        if let Some(v) = patch.key_ops.clone() {
            k.key_ops = v;
        }
        k.state = new_state;
        if let Err(e) = self.commit_key_change(&mut k, caller, actions::UPDATE_KEY, patch.describe(), now).await {
            if touches_aws && let Ok((_, kms)) = self.mutable_virtual_key(group, id).await {
                // AWS already changed: store what it holds so the two agree.
                let current = self.store.get_key(group, id).await.unwrap_or(key);
                self.reread_after_failure(&kms, &current, now).await;
            }
            return Err(e);
        }
        tracing::info!(group_id = %group, key_id = %id, "key updated");
        Ok(k)
    }

    async fn apply_to_aws(
        &self,
        kms: &Arc<dyn Kms>,
        aws_id: &str,
        key: &Key,
        patch: &KeyPatch,
        to_add: &[String],
        to_remove: &[String],
    ) -> Result<()> {
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
        for a in to_add {
            if let Err(e) = kms.create_alias(a, aws_id).await {
                return Err(match e {
                    kms::Error::AlreadyExists(_) => self.alias_taken(kms, a).await,
                    other => Error::from(other),
                });
            }
        }
        for a in to_remove {
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
        Ok(())
    }

    /// After a partial failure: store what AWS now holds for the key (best effort, logged).
    async fn reread_after_failure(&self, kms: &Arc<dyn Kms>, key: &Key, now: OffsetDateTime) {
        let Some(aws) = &key.aws else { return };
        let result = async {
            let d = describe(kms, &aws.aws_key_id, self.settings.sync_key_policies).await?;
            let mut aliases = Vec::new();
            let mut marker = None;
            for _ in 0..100 {
                let page = kms.list_key_aliases(&aws.aws_key_id, marker.take()).await?;
                aliases.extend(page.items.into_iter().map(|a| a.alias_name));
                match page.next_marker {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
            aliases.sort();
            Ok::<_, kms::Error>((d, aliases))
        }
        .await;
        match result {
            Ok((d, aliases)) => {
                let mut k = key.clone();
                let mut fresh = details(&d.meta, aliases, d.policy.clone().or_else(|| aws.key_policy.clone()));
                fresh.managed_aliases =
                    aws.managed_aliases.iter().filter(|a| fresh.aliases.contains(a)).cloned().collect();
                fresh.rotation_enabled = aws.rotation_enabled;
                let aws_state = KeyState::from_aws(d.meta.key_state.as_deref(), d.meta.enabled);
                k.state = transition(key.state, Event::SyncRefresh(aws_state)).unwrap_or(aws_state);
                k.description = d.meta.description.clone().unwrap_or_default();
                k.tags = d.tags;
                k.aws = Some(fresh);
                k.update_time = now;
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
    pub async fn schedule_key_deletion(
        &self,
        group: GroupId,
        id: KeyId,
        pending_window_days: i32,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        if !(7..=30).contains(&pending_window_days) {
            return Err(Error::invalid(
                "pending_window_days",
                format!("{pending_window_days} days; AWS allows 7 to 30"),
            ));
        }
        let _lock = self.lock_key(group, id).await?;
        let (key, kms) = self.mutable_virtual_key(group, id).await?;
        transition(key.state, Event::ScheduleDeletion).map_err(|e| refused(&key, e))?;
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let deletion = kms.schedule_key_deletion(&aws_id, pending_window_days).await?;
        let mut k = key;
        k.mark_pending_deletion(deletion, now + Duration::from_secs(pending_window_days as u64 * 86_400));
        let detail = format!("pending window {pending_window_days} days");
        self.commit_key_change(&mut k, caller, actions::SCHEDULE_KEY_DELETION, detail, now).await?;
        tracing::info!(group_id = %group, key_id = %id, days = pending_window_days, "key deletion scheduled");
        Ok(k)
    }

    /// CancelKeyDeletion: only from PENDING_DELETION; the key comes back DISABLED (as in AWS).
    pub async fn cancel_key_deletion(
        &self,
        group: GroupId,
        id: KeyId,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let _lock = self.lock_key(group, id).await?;
        let (key, kms) = self.mutable_virtual_key(group, id).await?;
        let state = transition(key.state, Event::CancelDeletion).map_err(|e| refused(&key, e))?;
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        kms.cancel_key_deletion(&aws_id).await?;
        let mut k = key;
        k.state = state;
        if let Some(a) = k.aws.as_mut() {
            a.deletion_time = None;
            a.aws_key_state = Some("Disabled".to_owned());
            a.enabled = false;
        }
        self.commit_key_change(&mut k, caller, actions::CANCEL_KEY_DELETION, String::new(), now).await?;
        tracing::info!(group_id = %group, key_id = %id, "key deletion cancelled");
        Ok(k)
    }

    /// DeleteKey: a virtual key only once AWS has deleted it (state DELETED); a Keyward key
    /// only once DISABLED (its sealed material goes with it). Never calls AWS.
    pub async fn delete_key(&self, group: GroupId, id: KeyId, caller: &Caller, now: OffsetDateTime) -> Result<()> {
        let _lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        if !key.is_virtual() && key.state != KeyState::Disabled {
            return Err(Error::precondition(
                "KEY_STATE",
                key.name(),
                format!(
                    "{} is {}; disable it first (UpdateKey enabled=false): deleting a Keyward key destroys its material",
                    key.name(),
                    key.state.name()
                ),
            ));
        }
        if !key.is_virtual() {
            for l in key.links.iter().filter(|l| l.kind == crate::domain::KeyLinkKind::CopiedTo) {
                if let Ok(copy) = self.store.get_key(l.group_id, l.key_id).await
                    && copy.state == KeyState::PendingImport
                {
                    return Err(Error::precondition(
                        "COPY_NEEDS_SOURCE",
                        copy.name(),
                        format!(
                            "{} waits for its material to be reimported from this key; reimport it (or delete it) first",
                            copy.name()
                        ),
                    ));
                }
            }
        }
        if key.is_virtual() && key.state != KeyState::Deleted {
            let first = match key.state {
                KeyState::PendingDeletion => {
                    "wait until AWS deletes it at the end of its deletion window (the worker's deletion-window check or a sync then marks it DELETED)"
                }
                _ => "schedule its deletion in AWS (ScheduleKeyDeletion) and wait until AWS has deleted it",
            };
            return Err(Error::precondition(
                "KEY_STATE",
                key.name(),
                format!("{} is {}; {first}", key.name(), key.state.name()),
            ));
        }
        let tx = self.store.begin_audited().await?;
        tx.delete_key(group, id).await?;
        ok_event(&tx, caller, actions::DELETE_KEY, key.name(), String::new(), now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %group, key_id = %id, "virtual key deleted");
        Ok(())
    }

    /// The worker's deletion-window check at `now`: for virtual keys PENDING_DELETION whose
    /// deletion time has passed, ask AWS. Gone → DELETED; still pending → asked again after
    /// [`RECHECK_AFTER`]; cancelled outside Keyward → refreshed. One key's failure is counted and
    /// never stops the others; with several workers each key is claimed by one.
    pub async fn check_deletion_windows(&self, now: OffsetDateTime) -> Result<DeletionCheckReport> {
        let now = crate::domain::to_micros(now);
        let caller = Caller::worker();
        let mut report = DeletionCheckReport::default();
        let mut clients: BTreeMap<GroupId, Result<Arc<dyn Kms>>> = BTreeMap::new();
        for (key, seen) in self.store.keys_due_for_check(now, 500).await? {
            if !self.store.claim_check(key.id, seen, now + RECHECK_AFTER).await? {
                report.skipped.push(key.id);
                continue;
            }
            // A user's change of this key is under way: look again after RECHECK_AFTER.
            let Some(_lock) = self.lock_key_within(key.id, Duration::from_secs(5)).await? else {
                report.skipped.push(key.id);
                continue;
            };
            // Read again under the lock: the row may have changed since the listing.
            let key = self.store.get_key(key.group_id, key.id).await?;
            if key.state != KeyState::PendingDeletion {
                report.skipped.push(key.id);
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = clients.entry(key.group_id) {
                let client = match self.store.get_group(key.group_id).await {
                    Ok(g) => self.connect(&g, Purpose::Work),
                    Err(e) => Err(e),
                };
                slot.insert(client);
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
                    k.state = transition(key.state, Event::AwsReportsDeleted).unwrap_or(KeyState::Deleted);
                    if let Some(a) = k.aws.as_mut() {
                        a.aws_key_state = None;
                        a.enabled = false;
                        a.aliases.clear();
                        a.managed_aliases.clear();
                    }
                    self.store_check_result(&k, &caller, "deleted in AWS", now).await?;
                    report.deleted.push(key.id);
                }
                Ok(meta) if meta.key_state.as_deref() == Some("PendingDeletion") => {
                    report.still_pending.push(key.id);
                }
                Ok(meta) => {
                    let mut k = key.clone();
                    let aws_state = KeyState::from_aws(meta.key_state.as_deref(), meta.enabled);
                    k.state = transition(key.state, Event::SyncRefresh(aws_state)).unwrap_or(aws_state);
                    if let Some(a) = k.aws.as_mut() {
                        a.aws_key_state = meta.key_state.clone();
                        a.enabled = meta.enabled;
                        a.deletion_time = meta.deletion_date;
                    }
                    self.store_check_result(&k, &caller, "deletion cancelled outside Keyward", now).await?;
                    report.refreshed.push(key.id);
                }
                Err(e) => {
                    tracing::warn!(key_id = %key.id, error = %e, "deletion check failed; retried later");
                    report.failed.push(key.id);
                }
            }
        }
        Ok(report)
    }

    async fn store_check_result(&self, k: &Key, caller: &Caller, detail: &str, now: OffsetDateTime) -> Result<()> {
        self.commit_key_change(&mut k.clone(), caller, actions::DELETION_CHECK, detail.to_owned(), now).await
    }

    /// Stores a changed key — only if nobody changed it since it was read (its etag), else
    /// ABORTED — with its deletion-check time and its audit event, in one transaction. Gives
    /// the key a new etag and update time.
    pub(crate) async fn commit_key_change(
        &self,
        k: &mut Key,
        caller: &Caller,
        action: &str,
        detail: String,
        now: OffsetDateTime,
    ) -> Result<()> {
        k.update_time = now;
        let prev_etag = std::mem::replace(&mut k.etag, new_etag());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(k, &prev_etag).await?;
        tx.set_next_check(k.id, next_check(k, now)).await?;
        ok_event(&tx, caller, action, k.name(), detail, now).await?;
        tx.commit().await
    }
}

/// How long a key lock lives if its holder dies without releasing it.
const KEY_LOCK_TTL: Duration = Duration::from_secs(120);

/// A lease on one key (`leases` row `key/{id}`): every writer of a key row holds it, so two
/// changes never interleave their AWS calls and writes. Released on drop.
pub(crate) struct KeyLock {
    store: crate::store::Store,
    name: String,
    holder: String,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        let (store, name, holder) =
            (self.store.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.holder));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.release_lease(&name, &holder).await {
                    tracing::warn!(lease = %name, error = %e, "could not release a key lock; it expires by itself");
                }
            });
        }
    }
}

impl Keyward {
    /// The key's lock, or `None` when another change holds it.
    pub(crate) async fn try_lock_key(&self, id: KeyId) -> Result<Option<KeyLock>> {
        self.try_lock_named(&format!("key/{id}")).await
    }

    /// A lease named `name` for this operation, or `None` when another holds it.
    pub(crate) async fn try_lock_named(&self, name: &str) -> Result<Option<KeyLock>> {
        let name = name.to_owned();
        let holder = format!("{}-{}", self.holder, uuid::Uuid::now_v7());
        if self.store.try_lease(&name, &holder, KEY_LOCK_TTL, OffsetDateTime::now_utc()).await? {
            Ok(Some(KeyLock { store: self.store.clone(), name, holder }))
        } else {
            Ok(None)
        }
    }

    /// The key's lock. Waits up to 10 s for another change of the key to finish (changes of
    /// one key queue up), then ABORTED.
    pub(crate) async fn lock_key(&self, group: GroupId, id: KeyId) -> Result<KeyLock> {
        self.lock_key_within(id, Duration::from_secs(10)).await?.ok_or_else(|| {
            Error::Aborted(format!("another change of groups/{group}/keys/{id} is under way; try again"))
        })
    }

    /// The key's lock, waiting up to `wait` for it; `None` if another change still holds it.
    pub(crate) async fn lock_key_within(&self, id: KeyId, wait: Duration) -> Result<Option<KeyLock>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(lock) = self.try_lock_key(id).await? {
                return Ok(Some(lock));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

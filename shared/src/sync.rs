//! Sync of an AWS KMS group: list every key in the region, keep each as a virtual key, refresh
//! the AWS metadata of known ones, mark the ones AWS no longer has as DELETED. Called by
//! GroupService.SyncKeys and by the worker's scheduled job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;

use crate::audit::ok_event;
use crate::domain::{
    AwsKeyDetails, Event, GroupId, GroupKind, Key, KeyId, KeyOp, KeySource, KeySpec, KeyState, SyncRun, SyncRunId,
    SyncRunState, SyncTrigger, SyncWarning, transition,
};
use crate::domain::{Caller, actions};
use crate::keys::{new_etag, tag_map};
use crate::kms::{self, KeyMetadata, Kms, Purpose};
use crate::{Error, Keyward, Result};

/// The outcome of a sync: the stored run.
pub type SyncReport = SyncRun;

/// Upper bound on list pages, so a misbehaving endpoint cannot loop forever
/// (10,000 pages × up to 1,000 keys).
const MAX_PAGES: usize = 10_000;

/// What AWS says about one listed key.
pub(crate) struct Described {
    pub(crate) meta: KeyMetadata,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) policy: Option<String>,
}

impl Keyward {
    /// Syncs one AWS KMS group to completion and stores the run. One sync per group at a
    /// time (a lease in the database): a second one → ABORTED. ListKeys or ListAliases failing
    /// fails the run and changes no key (e.g. AccessDenied → PERMISSION_DENIED); one unreadable
    /// key is a warning and the run goes on.
    pub async fn sync_group(
        &self,
        group_id: GroupId,
        trigger: SyncTrigger,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<SyncReport> {
        let now = crate::domain::to_micros(now);
        let group = self.store.get_group(group_id).await?;
        if group.kind != GroupKind::AwsKms {
            return Err(Error::precondition(
                "NOT_AWS_KMS_GROUP",
                format!("groups/{group_id}"),
                "only AWS_KMS groups can be synced",
            ));
        }
        let lease = format!("sync/{group_id}");
        let ttl = Duration::from_secs(self.settings.sync_lease_seconds.max(1) as u64);
        if !self.store.try_lease(&lease, &self.holder, ttl, OffsetDateTime::now_utc()).await? {
            return Err(Error::Aborted(format!("a sync of groups/{group_id} is already running")));
        }
        let mut run = SyncRun {
            id: SyncRunId::new(),
            group_id,
            state: SyncRunState::Running,
            trigger,
            actor: caller.actor.clone(),
            listed: 0,
            added: 0,
            updated: 0,
            unchanged: 0,
            failed: 0,
            warnings: Vec::new(),
            error: None,
            start_time: now,
            end_time: None,
        };
        // Keep the lease while the sync runs (a large region takes minutes against AWS quotas).
        let renew = {
            let (store, lease, holder) = (self.store.clone(), lease.clone(), self.holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if let Err(e) = store.try_lease(&lease, &holder, ttl, OffsetDateTime::now_utc()).await {
                        tracing::warn!(lease = %lease, error = %e, "could not renew the sync lease");
                    }
                }
            })
        };
        let outcome = async {
            self.store.insert_sync_run(&run).await?;
            let kms = self.connect(&group, Purpose::Work)?;
            self.sync_into(&kms, &mut run, now).await
        }
        .await;
        renew.abort();
        run.end_time = Some(crate::domain::to_micros(OffsetDateTime::now_utc()).max(now));
        run.state = if outcome.is_ok() { SyncRunState::Succeeded } else { SyncRunState::Failed };
        if let Err(e) = &outcome {
            run.error = Some(e.to_string());
        }
        let saved = self.finish_run(&run, caller, now).await;
        if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
            tracing::warn!(group_id = %group_id, error = %e, "could not release sync lease; it expires by itself");
        }
        tracing::info!(
            group_id = %group_id, run = %run.id, listed = run.listed, added = run.added, updated = run.updated,
            unchanged = run.unchanged, failed = run.failed, ok = outcome.is_ok(), "sync finished"
        );
        outcome?;
        saved?;
        Ok(run)
    }

    /// Stores the finished run, and for a successful one its audit event in the same
    /// transaction. A failed run's event is the caller's refusal record (server or worker).
    async fn finish_run(&self, run: &SyncRun, caller: &Caller, now: OffsetDateTime) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.update_sync_run(run).await?;
        if run.state == SyncRunState::Succeeded {
            let action = match run.trigger {
                SyncTrigger::Manual => actions::SYNC_KEYS,
                SyncTrigger::Scheduled => actions::SCHEDULED_SYNC,
            };
            let detail = format!(
                "listed {} added {} updated {} unchanged {} failed {}",
                run.listed, run.added, run.updated, run.unchanged, run.failed
            );
            let name = format!("groups/{}/syncRuns/{}", run.group_id, run.id);
            ok_event(&tx, caller, action, name, detail, now).await?;
        }
        tx.commit().await
    }

    async fn sync_into(&self, kms: &Arc<dyn Kms>, run: &mut SyncRun, now: OffsetDateTime) -> Result<()> {
        let limit = Some(self.settings.aws_page_size);
        // Keyward's view first: a key created or changed after this snapshot is newer than what
        // the listing can tell, so it is neither marked gone nor overwritten (etag guard), and a
        // key AWS made after it (a CreateKey or ImportKey in flight) is left to the next sync.
        let snapshot = OffsetDateTime::now_utc();
        let known: HashMap<String, Key> = self
            .store
            .virtual_keys_of(run.group_id)
            .await?
            .into_iter()
            .filter_map(|k| k.aws.as_ref().map(|a| a.key_arn.clone()).map(|arn| (arn, k)))
            .collect();
        let listed = collect_pages("ListKeys", |m| kms.list_keys(limit, m)).await?;
        // The settings may now reach another account or region (a changed access key or
        // endpoint): then the keys Keyward knows are not "gone", they are elsewhere.
        let place = |arn: &str| arn.split(':').skip(3).take(2).collect::<Vec<_>>().join(":");
        if let (Some(k), Some(l)) = (known.keys().find(|_| true), listed.first())
            && place(k) != place(&l.key_arn)
        {
            return Err(Error::precondition(
                "AWS_ACCOUNT_CHANGED",
                format!("groups/{}", run.group_id),
                format!(
                    "the group's settings now reach {} but its keys are in {}; restore the settings or use another group",
                    place(&l.key_arn),
                    place(k)
                ),
            ));
        }
        // An empty listing while Keyward knows live keys: make sure they are really gone (and the
        // settings do not now reach an empty account) before marking them DELETED.
        if listed.is_empty()
            && let Some(k) = known.values().find(|k| k.state != KeyState::Deleted)
            && let Some(arn) = k.aws.as_ref().map(|a| a.key_arn.clone())
        {
            match kms.describe_key(&arn).await {
                Err(kms::Error::NotFound(_)) => {}
                Ok(_) => {
                    return Err(Error::precondition(
                        "AWS_ACCOUNT_CHANGED",
                        format!("groups/{}", run.group_id),
                        format!(
                            "AWS lists no keys, yet {arn} exists: the group's settings reach another account or region; restore them or use another group"
                        ),
                    ));
                }
                Err(e) => {
                    return Err(Error::precondition(
                        "AWS_ACCOUNT_CHANGED",
                        format!("groups/{}", run.group_id),
                        format!(
                            "AWS lists no keys and {arn} cannot be checked ({e}); not marking the group's keys deleted"
                        ),
                    ));
                }
            }
        }
        let aliases = collect_pages("ListAliases", |m| kms.list_aliases(limit, m)).await?;
        run.listed = listed.len() as i64;
        let mut aliases_of: HashMap<String, Vec<String>> = HashMap::new();
        for a in aliases {
            // Aliases with no target key (AWS-managed aliases not yet used) are skipped.
            if let Some(target) = a.target_key_id {
                aliases_of.entry(target).or_default().push(a.alias_name);
            }
        }

        let read_policy = self.settings.sync_key_policies;
        let described: Vec<(String, std::result::Result<Described, kms::Error>)> =
            futures::stream::iter(listed.iter().cloned())
                .map(|entry| {
                    let kms = kms.clone();
                    async move {
                        let r = describe(&kms, &entry.key_id, read_policy).await;
                        (entry.key_arn, r)
                    }
                })
                .buffer_unordered(self.settings.sync_concurrency.max(1))
                .collect()
                .await;

        let listed_arns: HashSet<&str> = listed.iter().map(|e| e.key_arn.as_str()).collect();

        for (arn, result) in described {
            let d = match result {
                Ok(d) => d,
                Err(kms::Error::NotFound(_)) => {
                    // Deleted between ListKeys and DescribeKey: the next sync marks it.
                    run.warnings.push(SyncWarning { aws_key: arn, message: "listed, then not found".into() });
                    run.failed += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(group_id = %run.group_id, aws_key = %arn, error = %e, "key not readable");
                    run.warnings.push(SyncWarning { aws_key: arn, message: e.to_string() });
                    run.failed += 1;
                    continue;
                }
            };
            let mut key_aliases = aliases_of.remove(&d.meta.key_id).unwrap_or_default();
            key_aliases.sort();
            let details = details(&d.meta, key_aliases, d.policy.clone());
            match known.get(&arn) {
                Some(old) => {
                    let refreshed = refresh(old, &d, details);
                    if refreshed == *old {
                        run.unchanged += 1;
                    } else {
                        let mut k = refreshed;
                        k.update_time = now;
                        let prev_etag = std::mem::replace(&mut k.etag, new_etag());
                        // A user's change of this key is under way (or won meanwhile): it
                        // stands; the next sync refreshes the key.
                        let written = match self.lock_key_within(k.id, Duration::from_secs(2)).await? {
                            Some(_lock) => match self.store.replace_key(&k, &prev_etag).await {
                                Ok(()) => true,
                                Err(Error::Aborted(_)) => false,
                                Err(e) => return Err(e),
                            },
                            None => false,
                        };
                        if !written {
                            run.warnings.push(SyncWarning {
                                aws_key: arn,
                                message: "changed in Keyward during the sync; refreshed by the next sync".into(),
                            });
                            run.unchanged += 1;
                            continue;
                        }
                        if k.state != old.state {
                            self.store.set_next_check(k.id, next_check(&k, now)).await?;
                        }
                        run.updated += 1;
                    }
                }
                None if d.meta.creation_date.is_some_and(|c| c > snapshot) => {
                    run.warnings.push(SyncWarning {
                        aws_key: arn,
                        message: "created in AWS during this sync; the next sync adds it".into(),
                    });
                    run.unchanged += 1;
                }
                None => {
                    let mut key = Key {
                        id: KeyId::new(),
                        group_id: run.group_id,
                        display_name: String::new(),
                        description: d.meta.description.clone().unwrap_or_default(),
                        key_spec: KeySpec::from_aws(d.meta.key_spec.as_deref().unwrap_or_default()),
                        key_ops: KeyOp::for_aws_usage(d.meta.key_usage.as_deref()),
                        state: KeyState::from_aws(d.meta.key_state.as_deref(), d.meta.enabled),
                        source: KeySource::from_aws_origin(d.meta.origin.as_deref()),
                        tags: d.tags.clone(),
                        aws: Some(details),
                        links: Vec::new(),
                        created_by: "sync".to_owned(),
                        create_time: now,
                        update_time: now,
                        etag: new_etag(),
                    };
                    let mut inserted = None;
                    for name in display_names(&key) {
                        key.display_name = name;
                        match self.store.insert_synced_key(&key).await {
                            Ok(added) => {
                                inserted = Some(added);
                                break;
                            }
                            Err(Error::AlreadyExists { .. }) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    match inserted {
                        Some(true) => {
                            if key.state == KeyState::PendingDeletion {
                                self.store.set_next_check(key.id, next_check(&key, now)).await?;
                            }
                            run.added += 1;
                        }
                        Some(false) => run.unchanged += 1,
                        None => {
                            run.warnings.push(SyncWarning { aws_key: arn, message: "no free display name".into() });
                            run.failed += 1;
                        }
                    }
                }
            }
        }

        for (arn, old) in &known {
            if !listed_arns.contains(arn.as_str()) && old.state != KeyState::Deleted {
                let mut k = old.clone();
                k.state = transition(old.state, Event::AwsReportsDeleted).unwrap_or(KeyState::Deleted);
                if let Some(a) = k.aws.as_mut() {
                    a.aws_key_state = None;
                    a.enabled = false;
                    a.aliases.clear();
                }
                k.update_time = now;
                let prev_etag = std::mem::replace(&mut k.etag, new_etag());
                let Some(_lock) = self.lock_key_within(k.id, Duration::from_secs(2)).await? else { continue };
                match self.store.replace_key(&k, &prev_etag).await {
                    Ok(()) => {}
                    Err(Error::Aborted(_)) => continue,
                    Err(e) => return Err(e),
                }
                self.store.set_next_check(k.id, None).await?;
                run.updated += 1;
            }
        }
        Ok(())
    }
}

/// Follows NextMarker until AWS stops sending one. A marker seen before is an error, not a loop.
async fn collect_pages<T, F, Fut>(what: &str, mut call: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = kms::Result<kms::Page<T>>>,
{
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = call(marker.take()).await?;
        items.extend(page.items);
        match page.next_marker {
            None => return Ok(items),
            Some(m) if !seen.insert(m.clone()) => {
                return Err(Error::Unavailable(format!("{what} returned a marker it had returned before; stopped")));
            }
            Some(m) => marker = Some(m),
        }
    }
    Err(Error::Unavailable(format!("{what} did not finish within {MAX_PAGES} pages")))
}

pub(crate) async fn describe(kms: &Arc<dyn Kms>, key_id: &str, read_policy: bool) -> kms::Result<Described> {
    let meta = kms.describe_key(key_id).await?;
    let tags = match collect_pages("ListResourceTags", |m| kms.list_resource_tags(key_id, m)).await {
        Ok(t) => tag_map(t),
        Err(Error::Unavailable(m)) => return Err(kms::Error::Unavailable(m)),
        Err(e) => return Err(kms::Error::Other(e.to_string())),
    };
    // AWS-managed keys and restrictive policies may deny GetKeyPolicy: then it is not shown.
    let policy = if read_policy { kms.get_key_policy(key_id).await.ok() } else { None };
    Ok(Described { meta, tags, policy })
}

pub(crate) fn details(m: &KeyMetadata, aliases: Vec<String>, policy: Option<String>) -> AwsKeyDetails {
    AwsKeyDetails {
        key_arn: m.arn.clone(),
        aws_key_id: m.key_id.clone(),
        aliases,
        managed_aliases: Vec::new(),
        key_policy: policy,
        aws_key_state: m.key_state.clone(),
        key_spec: m.key_spec.clone(),
        origin: m.origin.clone(),
        key_usage: m.key_usage.clone(),
        key_manager: m.key_manager.clone(),
        enabled: m.enabled,
        creation_time: m.creation_date,
        deletion_time: m.deletion_date,
        valid_to: m.valid_to,
        rotation_enabled: false,
    }
}

/// The known key with AWS's current view applied; Keyward-only fields are kept.
fn refresh(old: &Key, d: &Described, mut details: AwsKeyDetails) -> Key {
    let mut k = old.clone();
    if let Some(prev) = &old.aws {
        details.rotation_enabled = prev.rotation_enabled;
        details.managed_aliases =
            prev.managed_aliases.iter().filter(|a| details.aliases.contains(a)).cloned().collect();
        if details.key_policy.is_none() {
            details.key_policy = prev.key_policy.clone();
        }
    }
    let aws_state = KeyState::from_aws(d.meta.key_state.as_deref(), d.meta.enabled);
    k.state = transition(old.state, Event::SyncRefresh(aws_state)).unwrap_or(aws_state);
    k.description = d.meta.description.clone().unwrap_or_default();
    k.tags = d.tags.clone();
    k.aws = Some(details);
    k
}

/// When the deletion-window check should look at `k`: at its deletion time while it is
/// pending deletion (now if AWS gave none), never otherwise.
pub(crate) fn next_check(k: &Key, now: OffsetDateTime) -> Option<OffsetDateTime> {
    (k.state == KeyState::PendingDeletion).then(|| k.aws.as_ref().and_then(|a| a.deletion_time).unwrap_or(now))
}

/// Display names to try for a key found by a sync: its first alias without `alias/`, then the
/// AWS key id, then the key id with a number.
fn display_names(k: &Key) -> Vec<String> {
    let aws = k.aws.as_ref();
    let id = aws.map(|a| a.aws_key_id.clone()).unwrap_or_default();
    let mut names: Vec<String> =
        aws.and_then(|a| a.aliases.first()).map(|a| a.trim_start_matches("alias/").to_owned()).into_iter().collect();
    names.push(id.clone());
    names.extend((2..10).map(|n| format!("{id}-{n}")));
    names
}

//! Sync of an AWS KMS group: list every key in the region, keep each as a virtual key, refresh
//! the AWS metadata of known ones, mark the ones AWS no longer has as DELETED. Called by
//! GroupService.SyncKeys and by the worker's scheduled job; sync runs are read here too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

mod runs;

use super::support::aws_keys::{Described, Reads, all_pages, aws_details, aws_state, describe, next_check, refreshed};
use super::support::new_etag;
use super::support::records::{new_record, ok_event};
use super::{Ctx, Keyward};
use crate::domain::{
    Action, AwsKeyDetails, DriftKind, DriftLog, GroupId, GroupKind, Key, KeyOp, KeySource, KeySpec, KeyState, SyncRun,
    SyncRunState, SyncTrigger, SyncWarning, drift,
};
use crate::kms::{self, Kms, Purpose};
use crate::{Error, Precondition, Result};

impl Keyward {
    /// Syncs one AWS KMS group to completion and answers the ended run (see
    /// [`Keyward::start_sync`]). A run that fails → the error (its record is FAILED with why).
    pub async fn sync_group(&self, ctx: &Ctx, group_id: GroupId, trigger: SyncTrigger) -> Result<SyncRun> {
        let (_, task) = self.begin_sync(ctx, group_id, trigger, false).await?;
        task.await.map_err(|e| Error::internal(format!("the sync task ended: {e}")))?
    }

    /// Starts a sync of one AWS KMS group and answers its RUNNING run at once; a run that fails
    /// later is recorded FAILED and audited as a refusal. One sync per group at a time, in this
    /// process as across processes (a lease in the database held by the run, not the process):
    /// a second one → ABORTED naming the running run. The run belongs to the group: it runs to
    /// its end in its own task even when the caller goes away, and a run left RUNNING by a
    /// process that died is closed FAILED by whoever takes the group's lease next. ListKeys or
    /// ListAliases failing fails the run and changes no key (e.g. AccessDenied →
    /// PERMISSION_DENIED); one unreadable key is a warning and the run goes on.
    pub async fn start_sync(&self, ctx: &Ctx, group_id: GroupId, trigger: SyncTrigger) -> Result<SyncRun> {
        Ok(self.begin_sync(ctx, group_id, trigger, true).await?.0)
    }

    /// Takes the group's lease, closes runs of dead processes, stores the new RUNNING run and
    /// spawns its body. `detached`: nobody awaits the outcome, so a failure is audited here.
    async fn begin_sync(
        &self,
        ctx: &Ctx,
        group_id: GroupId,
        trigger: SyncTrigger,
        detached: bool,
    ) -> Result<(SyncRun, tokio::task::JoinHandle<Result<SyncRun>>)> {
        let group = self.store.get_group(group_id).await?;
        if group.kind != GroupKind::AwsKms {
            return Err(Error::precondition(
                Precondition::NotAwsKmsGroup,
                format!("groups/{group_id}"),
                "only AWS_KMS groups can be synced",
            ));
        }
        let lease = sync_lease(group_id);
        let ttl = Duration::from_secs(self.settings.sync_lease_seconds.max(1) as u64);
        let holder = format!("{}-{}", self.holder, uuid::Uuid::now_v7());
        if !self.store.try_lease(&lease, &holder, ttl, self.now()).await? {
            let running = self.store.list_sync_runs(group_id, None, 1).await?.into_iter().next();
            let running = match running {
                Some(r) if r.state == SyncRunState::Running => {
                    format!(": groups/{group_id}/syncRuns/{} (WatchSyncRun follows it)", r.id)
                }
                _ => String::new(),
            };
            return Err(Error::Aborted(format!("a sync of groups/{group_id} is already running{running}")));
        }
        // Whoever held the lease before us is gone: its run, if left RUNNING, ended with it.
        self.close_dead_runs(group_id).await?;
        let run = SyncRun::started(group_id, trigger, &ctx.caller.actor, ctx.now);
        if let Err(e) = self.store.insert_sync_run(&run).await {
            self.store.release_lease(&lease, &holder).await.ok();
            return Err(e);
        }
        let (kw, ctx, started) = (self.clone(), ctx.clone(), run.clone());
        let task =
            tokio::spawn(async move { kw.run_sync(&ctx, group, run, Lease { lease, holder, ttl }, detached).await });
        Ok((started, task))
    }

    /// Closes the group's runs left RUNNING (FAILED, "the process running it stopped"); call
    /// only while holding the group's sync lease.
    pub(super) async fn close_dead_runs(&self, group_id: GroupId) -> Result<()> {
        let closed = self.store.fail_running_sync_runs(group_id, self.now(), "the process running it stopped").await?;
        if closed > 0 {
            tracing::warn!(group_id = %group_id, runs = closed, "closed sync runs left RUNNING by a process that stopped");
        }
        Ok(())
    }

    /// The body of a sync, holding the group's lease; `run` is stored RUNNING. `detached`: a
    /// failure is audited here, before the run shows FAILED (a watcher that sees the end finds
    /// the refusal recorded).
    async fn run_sync(
        &self,
        ctx: &Ctx,
        group: crate::domain::Group,
        mut run: SyncRun,
        Lease { lease, holder, ttl }: Lease,
        detached: bool,
    ) -> Result<SyncRun> {
        let group_id = group.id;
        // Keep the lease while the sync runs (a large region takes minutes against AWS quotas).
        let renew = {
            let (kw, lease, holder) = (self.clone(), lease.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if let Err(e) = kw.store.try_lease(&lease, &holder, ttl, kw.now()).await {
                        tracing::warn!(lease = %lease, error = %e, "could not renew the sync lease");
                    }
                }
            })
        };
        let took = std::time::Instant::now();
        // The first sync of a group finds every key: only later ones report keys new in AWS.
        let mut drift = DriftLog { report_created: group.last_sync_time.is_some(), ..Default::default() };
        let outcome = async {
            let kms = self.connect(&group, Purpose::Work)?;
            self.sync_into(ctx, &kms, &mut run, &mut drift).await
        }
        .await;
        run.drift = drift.finish();
        renew.abort();
        run.end_time = Some(self.now().max(ctx.now));
        run.state = if outcome.is_ok() { SyncRunState::Succeeded } else { SyncRunState::Failed };
        if let Err(e) = &outcome {
            run.error = Some(e.to_string());
            if detached {
                let action = match run.trigger {
                    SyncTrigger::Manual => Action::SyncKeys,
                    SyncTrigger::Scheduled => Action::ScheduledSync,
                };
                let resource = format!("groups/{group_id}");
                if let Err(a) = self.record_refusal(ctx, action, &resource, e.code_name(), &e.to_string()).await {
                    tracing::error!(group_id = %group_id, error = %a, "could not audit a failed sync");
                }
            }
        }
        let saved = self.finish_run(ctx, &run, &drift).await;
        crate::metrics::sync_run_ended(&run, took.elapsed());
        if let Err(e) = self.store.release_lease(&lease, &holder).await {
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

    /// Stores the finished run with its drift, and for a successful one its audit event in the
    /// same transaction. A failed run's event is the caller's refusal record (server or worker).
    async fn finish_run(&self, ctx: &Ctx, run: &SyncRun, drift: &DriftLog) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.update_sync_run(run).await?;
        tx.insert_drifts(run.group_id, run.id, &drift.keys).await?;
        if run.state == SyncRunState::Succeeded {
            let action = match run.trigger {
                SyncTrigger::Manual => Action::SyncKeys,
                SyncTrigger::Scheduled => Action::ScheduledSync,
            };
            let detail = format!(
                "listed {} added {} updated {} unchanged {} failed {}; {}",
                run.listed,
                run.added,
                run.updated,
                run.unchanged,
                run.failed,
                run.drift.describe()
            );
            let name = format!("groups/{}/syncRuns/{}", run.group_id, run.id);
            ok_event(&tx, &ctx.caller, action, name, detail, ctx.now).await?;
        }
        tx.commit().await
    }

    /// Fails unless the listing comes from the account and region of the keys Keyward knows:
    /// changed settings may reach another account, where Keyward's keys are not "gone".
    async fn check_same_place(
        &self,
        kms: &Arc<dyn Kms>,
        group: GroupId,
        known: &HashMap<String, Key>,
        listed: &[kms::KeyListEntry],
    ) -> Result<()> {
        let changed =
            |why: String| Err(Error::precondition(Precondition::AwsAccountChanged, format!("groups/{group}"), why));
        let place = |arn: &str| arn.split(':').skip(3).take(2).collect::<Vec<_>>().join(":");
        if let (Some(k), Some(l)) = (known.keys().next(), listed.first())
            && place(k) != place(&l.key_arn)
        {
            return changed(format!(
                "the group's settings now reach {} but its keys are in {}; restore the settings or use another group",
                place(&l.key_arn),
                place(k)
            ));
        }
        // An empty listing while Keyward knows live keys: make sure they are really gone (and the
        // settings do not now reach an empty account) before marking them DELETED.
        if listed.is_empty()
            && let Some(arn) = known.iter().find(|(_, k)| k.state != KeyState::Deleted).map(|(arn, _)| arn.clone())
        {
            return match kms.describe_key(&arn).await {
                Err(kms::Error::NotFound(_)) => Ok(()),
                Ok(_) => changed(format!(
                    "AWS lists no keys, yet {arn} exists: the group's settings reach another account or region; restore them or use another group"
                )),
                Err(e) => changed(format!(
                    "AWS lists no keys and {arn} cannot be checked ({e}); not marking the group's keys deleted"
                )),
            };
        }
        Ok(())
    }

    async fn sync_into(&self, ctx: &Ctx, kms: &Arc<dyn Kms>, run: &mut SyncRun, drift: &mut DriftLog) -> Result<()> {
        let now = ctx.now;
        let limit = Some(self.settings.aws_page_size);
        // Keyward's view first: a key created or changed after this snapshot is newer than what
        // the listing can tell, so it is neither marked gone nor overwritten (etag guard), and a
        // key AWS made after it (a CreateKey or ImportKey in flight) is left to the next sync.
        let snapshot = self.now();
        let known: HashMap<String, Key> = self
            .store
            .virtual_keys_of(run.group_id)
            .await?
            .into_iter()
            .filter_map(|k| k.aws.as_ref().map(|a| a.key_arn.clone()).map(|arn| (arn, k)))
            .collect();
        let listed = all_pages("ListKeys", |m| kms.list_keys(limit, m)).await?;
        self.check_same_place(kms, run.group_id, &known, &listed).await?;
        let aliases = all_pages("ListAliases", |m| kms.list_aliases(limit, m)).await?;
        run.listed = listed.len() as i64;
        let mut aliases_of: HashMap<String, Vec<String>> = HashMap::new();
        for a in aliases {
            // Aliases with no target key (AWS-managed aliases not yet used) are skipped.
            if let Some(target) = a.target_key_id {
                aliases_of.entry(target).or_default().push(a.alias_name);
            }
        }

        // Live counts: the run row is written as the sync goes (GetSyncRun, WatchSyncRun).
        let mut progress = Progress::default();
        progress.save(self, run).await;
        let reads = Reads { policy: self.settings.sync_key_policies, rotation: self.settings.sync_rotation_status };
        let listed_arns: HashSet<&str> = listed.iter().map(|e| e.key_arn.as_str()).collect();
        // Two passes: a key AWS was too busy to describe (throttling or 5xx after the SDK's
        // retries) is tried once more after the others, when the in-flight limit has adapted.
        let mut pending: Vec<kms::KeyListEntry> = listed.clone();
        for pass in 0..2 {
            let mut described = futures::stream::iter(std::mem::take(&mut pending))
                .map(|entry| {
                    let kms = kms.clone();
                    async move {
                        let result = describe(&kms, &entry.key_id, reads).await;
                        (entry, result)
                    }
                })
                .buffer_unordered(self.settings.sync_concurrency.max(1));
            while let Some((entry, result)) = described.next().await {
                progress.tick(self, run).await;
                let arn = entry.key_arn.clone();
                let d = match result {
                    Ok(d) => d,
                    Err(kms::Error::Unavailable(_)) if pass == 0 => {
                        pending.push(entry);
                        continue;
                    }
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
                match known.get(&arn) {
                    Some(old) => {
                        let fresh = refreshed(old, &d, key_aliases);
                        if fresh == *old {
                            run.unchanged += 1;
                            continue;
                        }
                        let changes = drift::changes(old, &fresh);
                        let applied = self.store_refreshed(fresh, old, now).await?;
                        drift.record(old, &arn, changes, applied);
                        if applied {
                            run.updated += 1;
                        } else {
                            run.warnings.push(SyncWarning {
                                aws_key: arn,
                                message: "changed in Keyward during the sync; refreshed by the next sync".into(),
                            });
                            run.unchanged += 1;
                        }
                    }
                    None if d.meta.creation_date.is_some_and(|c| c > snapshot) => {
                        run.warnings.push(SyncWarning {
                            aws_key: arn,
                            message: "created in AWS during this sync; the next sync adds it".into(),
                        });
                        run.unchanged += 1;
                    }
                    None => match self.insert_found(run.group_id, &d, key_aliases, now).await? {
                        Found::Added(k) => {
                            drift.created(&k, &arn);
                            run.added += 1
                        }
                        Found::Known => run.unchanged += 1,
                        Found::NoName => {
                            run.warnings.push(SyncWarning { aws_key: arn, message: "no free display name".into() });
                            run.failed += 1;
                        }
                    },
                }
            }
            if pending.is_empty() {
                break;
            }
        }

        for (arn, old) in &known {
            if !listed_arns.contains(arn.as_str()) && old.state != KeyState::Deleted {
                // AWS no longer has it: its deletion window passed, or it vanished.
                let mut k = old.clone();
                k.set_state(KeyState::Deleted);
                if let Some(a) = k.aws.as_mut() {
                    a.aliases.clear();
                }
                let applied = self.store_refreshed(k, old, now).await?;
                drift.whole(Some(old), arn, DriftKind::Deleted, applied);
                if applied {
                    run.updated += 1;
                }
            }
        }
        Ok(())
    }

    /// Stores `fresh` (AWS's view of `old`) under the key's lock, only if nobody changed the
    /// key since the snapshot; `false` when a user's change is under way or won meanwhile (it
    /// stands; the next sync refreshes the key).
    async fn store_refreshed(&self, mut fresh: Key, old: &Key, now: time::OffsetDateTime) -> Result<bool> {
        fresh.update_time = now;
        let prev_etag = std::mem::replace(&mut fresh.etag, new_etag());
        let Some(lock) = self.lock_key_within(fresh.id, Duration::from_secs(2)).await? else { return Ok(false) };
        let written = match self.store.replace_key(&fresh, &prev_etag).await {
            Ok(()) => true,
            Err(Error::Aborted(_)) => false,
            Err(e) => return Err(e),
        };
        if written && fresh.state != old.state {
            self.store.set_next_check(fresh.id, next_check(&fresh, now)).await?;
        }
        lock.release().await;
        Ok(written)
    }

    /// Inserts a key AWS has and Keyward does not know.
    async fn insert_found(
        &self,
        group: GroupId,
        d: &Described,
        aliases: Vec<String>,
        now: time::OffsetDateTime,
    ) -> Result<Found> {
        let mut key = Key {
            description: d.meta.description.clone().unwrap_or_default(),
            key_spec: KeySpec::from_aws(d.meta.key_spec.as_deref().unwrap_or_default()),
            key_ops: KeyOp::for_aws_usage(d.meta.key_usage.as_deref()),
            state: aws_state(&d.meta),
            source: KeySource::from_aws_origin(d.meta.origin.as_deref()),
            tags: d.tags.clone(),
            aws: Some(AwsKeyDetails {
                rotation: d.rotation.clone(),
                ..aws_details(&d.meta, aliases, d.policy.clone())
            }),
            ..new_record(group, "sync", now)
        };
        for name in display_names(&key) {
            key.display_name = name;
            match self.store.insert_synced_key(&key).await {
                Ok(true) => {
                    if key.state.is_pending_deletion() {
                        self.store.set_next_check(key.id, next_check(&key, now)).await?;
                    }
                    return Ok(Found::Added(Box::new(key)));
                }
                Ok(false) => return Ok(Found::Known),
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Found::NoName)
    }
}

/// What inserting a key found in AWS came to.
enum Found {
    Added(Box<Key>),
    /// Another sync added it first.
    Known,
    /// No free display name.
    NoName,
}

/// Writes a running sync's counts at most four times a second.
#[derive(Default)]
struct Progress {
    saved: Option<std::time::Instant>,
}

impl Progress {
    const EVERY: Duration = Duration::from_millis(250);

    async fn tick(&mut self, kw: &Keyward, run: &SyncRun) {
        if self.saved.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            self.save(kw, run).await;
        }
    }

    /// Best effort: a failed write of live counts is logged; the final write is not optional.
    async fn save(&mut self, kw: &Keyward, run: &SyncRun) {
        self.saved = Some(std::time::Instant::now());
        if let Err(e) = kw.store.update_sync_run(run).await {
            tracing::warn!(run = %run.id, error = %e, "could not store a sync's live counts");
        }
    }
}

/// The group's sync lease as one run holds it.
struct Lease {
    lease: String,
    holder: String,
    ttl: Duration,
}

/// The lease a group's sync holds.
fn sync_lease(group: GroupId) -> String {
    format!("sync/{group}")
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

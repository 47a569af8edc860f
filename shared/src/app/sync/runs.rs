//! The read side of sync runs: GetSyncRun, ListSyncRuns, WatchSyncRun (which also closes a run
//! its dead process left RUNNING) and a run's drift report (ListKeyDrifts).

use std::time::Duration;

use super::sync_lease;
use crate::Result;
use crate::app::{Ctx, Keyward};
use crate::domain::{GroupId, KeyDrift, SyncRun, SyncRunId, SyncRunState};

impl Keyward {
    /// WatchSyncRun: the run now, then each change of its counts or state (read from the
    /// database every 250 ms, so a run of another process is followed too), ending after the
    /// run has ended. A run still RUNNING while nobody holds its group's lease belonged to a
    /// process that died: the watcher takes the lease and closes it, as the next sync would.
    pub fn watch_sync_run(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: SyncRunId,
    ) -> impl futures::Stream<Item = Result<SyncRun>> + Send + 'static {
        let kw = self.clone();
        futures::stream::unfold(Some(None::<SyncRun>), move |last| {
            let kw = kw.clone();
            async move {
                let last = last?;
                loop {
                    if last.is_some() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    let run = match kw.read_live_run(group, id).await {
                        Ok(r) => r,
                        Err(e) => return Some((Err(e), None)),
                    };
                    if last.as_ref() == Some(&run) {
                        continue;
                    }
                    let next = (run.state == SyncRunState::Running).then(|| Some(run.clone()));
                    return Some((Ok(run), next));
                }
            }
        })
    }

    /// The run as stored; a RUNNING run whose group's lease is free is closed first.
    async fn read_live_run(&self, group: GroupId, id: SyncRunId) -> Result<SyncRun> {
        let run = self.store.get_sync_run(group, id).await?;
        if run.state != SyncRunState::Running {
            return Ok(run);
        }
        let (lease, holder) = (sync_lease(group), format!("{}-watch-{}", self.holder, uuid::Uuid::now_v7()));
        if !self.store.lease_is_held(&lease, self.now()).await?
            && self.store.try_lease(&lease, &holder, Duration::from_secs(10), self.now()).await?
        {
            let closed = self.close_dead_runs(group).await;
            self.store.release_lease(&lease, &holder).await?;
            closed?;
            return self.store.get_sync_run(group, id).await;
        }
        Ok(run)
    }

    /// GetSyncRun.
    pub async fn get_sync_run(&self, _ctx: &Ctx, group: GroupId, id: SyncRunId) -> Result<SyncRun> {
        self.store.get_sync_run(group, id).await
    }

    /// ListSyncRuns of a group, newest first, before the run id `before`.
    pub async fn list_sync_runs(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        before: Option<String>,
        limit: u64,
    ) -> Result<Vec<SyncRun>> {
        self.store.get_group(group).await?;
        self.store.list_sync_runs(group, before, limit).await
    }

    /// ListKeyDrifts: a run's drift report from position `after` on, at most `limit`, each
    /// entry with its position (for the next page).
    pub async fn list_key_drifts(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        run: SyncRunId,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<(i64, KeyDrift)>> {
        self.store.get_sync_run(group, run).await?;
        self.store.list_drifts(group, run, after, limit).await
    }
}

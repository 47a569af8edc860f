//! keyward-worker: waits for the server's migrations, then runs its jobs on a cron schedule
//! (tokio-cron-scheduler) until SIGTERM or Ctrl-C, with Prometheus metrics on
//! `worker_metrics_listen_addr`.

use std::future::Future;
use std::pin::Pin;

use keyward_shared::{Keyward, startup};
use keyward_worker::{deletion_check, estate, recovery, scheduled_rotation, scheduled_sync};
use time::OffsetDateTime;
use tokio_cron_scheduler::{Job, JobScheduler};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about = "Keyward worker: scheduled syncs, deletion-window checks, recovery of interrupted imports.";
    let Some((config, keyward)) = startup::open_from_args(about, false).await? else { return Ok(()) };
    let metrics_addr = &config.worker_metrics_listen_addr;
    if let Some(addr) = keyward_shared::metrics::listen("worker_metrics_listen_addr", metrics_addr).await? {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let scheduler = JobScheduler::new().await?;
    let jobs: [(&str, JobFn); 5] = [
        ("scheduled sync", |kw, now| {
            Box::pin(async move { report("scheduled sync", scheduled_sync::run_once(&kw, now).await) })
        }),
        ("deletion-window check", |kw, now| {
            Box::pin(async move { report("deletion-window check", deletion_check::run_once(&kw, now).await) })
        }),
        ("recovery", |kw, now| Box::pin(async move { report("recovery", recovery::run_once(&kw, now).await) })),
        ("scheduled rotation", |kw, now| {
            Box::pin(async move { report("scheduled rotation", scheduled_rotation::run_once(&kw, now).await) })
        }),
        // Its report is the same counts every pass: counted, not logged.
        ("estate metrics", |kw, now| {
            Box::pin(async move { report("estate metrics", estate::run_once(&kw, now).await.map(|_| ())) })
        }),
    ];
    for (name, job) in jobs {
        let kw = keyward.clone();
        let job = Job::new_async(config.worker_schedule.as_str(), move |_id, _sched| job(kw.clone(), kw.now()))
            .map_err(|e| anyhow::anyhow!("worker_schedule {:?} for the {name}: {e}", config.worker_schedule))?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    tracing::info!(schedule = %config.worker_schedule, "keyward-worker running");
    startup::shutdown_signal().await;
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;
    tracing::info!("keyward-worker stopped");
    Ok(())
}

/// One job pass, started at `now`; the scheduler only calls it.
type JobFn = fn(Keyward, OffsetDateTime) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Counts the pass in the metrics and logs what it did: nothing when it did nothing, the report
/// otherwise.
fn report<R: std::fmt::Debug + Default + PartialEq>(job: &'static str, r: Result<R, keyward_shared::Error>) {
    keyward_shared::metrics::job_run(job, r.is_ok());
    match r {
        Ok(r) if r == R::default() => {}
        Ok(r) => tracing::info!(job, report = ?r, "job pass done"),
        Err(e) => tracing::warn!(job, error = %e, "job pass failed"),
    }
}

//! keyward-worker: waits for the server's migrations, then runs its jobs on a cron schedule
//! (tokio-cron-scheduler) until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use keyward_shared::Keyward;
use keyward_shared::config::Config;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Keyward worker: scheduled syncs, deletion-window checks, recovery of interrupted imports.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; `KEYWARD_*` variables override it.
    #[arg(long, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.config.as_deref(), std::env::vars().collect())?;
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{},{}", config.log_level, keyward_shared::LOG_CAPS))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (master_key, warning) = config.master_key().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let keyward = Keyward::open(&config, master_key, false).await?;

    let scheduler = JobScheduler::new().await?;
    let kw = keyward.clone();
    scheduler
        .add(Job::new_async(config.worker_schedule.as_str(), move |_id, _sched| {
            let kw = kw.clone();
            Box::pin(async move {
                match keyward_worker::scheduled_sync::run_once(&kw, time::OffsetDateTime::now_utc()).await {
                    Ok(r) if r.synced.is_empty() && r.failed.is_empty() => {}
                    Ok(r) => tracing::info!(synced = r.synced.len(), failed = r.failed.len(), "scheduled syncs"),
                    Err(e) => tracing::warn!(error = %e, "scheduled sync pass failed"),
                }
            })
        })?)
        .await?;
    let kw = keyward.clone();
    scheduler
        .add(Job::new_async(config.worker_schedule.as_str(), move |_id, _sched| {
            let kw = kw.clone();
            Box::pin(async move {
                match keyward_worker::deletion_check::run_once(&kw, time::OffsetDateTime::now_utc()).await {
                    Ok(r) if r.deleted.is_empty() && r.refreshed.is_empty() && r.failed.is_empty() => {}
                    Ok(r) => tracing::info!(
                        deleted = r.deleted.len(),
                        refreshed = r.refreshed.len(),
                        failed = r.failed.len(),
                        "deletion-window check"
                    ),
                    Err(e) => tracing::warn!(error = %e, "deletion-window check failed"),
                }
            })
        })?)
        .await?;
    let kw = keyward.clone();
    scheduler
        .add(Job::new_async(config.worker_schedule.as_str(), move |_id, _sched| {
            let kw = kw.clone();
            Box::pin(async move {
                match keyward_worker::recovery::run_once(&kw, time::OffsetDateTime::now_utc()).await {
                    Ok(r) if r.compensated.is_empty() && r.failed.is_empty() && r.retry.is_empty() => {}
                    Ok(r) => tracing::warn!(
                        compensated = r.compensated.len(),
                        failed = r.failed.len(),
                        retry = r.retry.len(),
                        "recovered interrupted imports"
                    ),
                    Err(e) => tracing::warn!(error = %e, "import recovery pass failed"),
                }
            })
        })?)
        .await?;
    scheduler.start().await?;
    tracing::info!(schedule = %config.worker_schedule, "keyward-worker running");
    shutdown_signal().await;
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;
    tracing::info!("keyward-worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

//! keyward-server: reads configuration (file + `KEYWARD_*`), migrates the database, serves gRPC
//! until SIGTERM or Ctrl-C, then shuts down gracefully.

use std::path::PathBuf;

use clap::Parser;
use keyward_shared::Keyward;
use keyward_shared::config::Config;

/// Keyward gRPC server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (keys as in the README); `KEYWARD_*` variables override it.
    #[arg(long, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.config.as_deref(), std::env::vars().collect())?;
    init_tracing(&config);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (master_key, warning) = config.master_key().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let keyward = Keyward::open(&config, master_key, true).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "keyward-server listening");
    keyward_server::serve(keyward, listener, shutdown_signal()).await?;
    tracing::info!("keyward-server stopped");
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(keyward_shared::log_directives(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
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
    tracing::info!("shutdown requested; draining calls");
}

//! keyward-server: reads configuration (file + `KEYWARD_*`), migrates the database, serves gRPC
//! until SIGTERM or Ctrl-C, then shuts down gracefully.

use std::path::PathBuf;

use clap::Parser;
use keyward_shared::startup;

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
    let (config, keyward) = startup::open(args.config.as_deref(), true).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "keyward-server listening");
    keyward_server::serve(keyward, listener, startup::shutdown_signal()).await?;
    tracing::info!("keyward-server stopped");
    Ok(())
}

//! keyward-server: reads configuration (file + `KEYWARD_*`), migrates the database, serves gRPC
//! until SIGTERM or Ctrl-C, then shuts down gracefully.

use keyward_shared::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((config, keyward)) = startup::open_from_args("Keyward gRPC server.", true).await? else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "keyward-server listening");
    keyward_server::serve(keyward, listener, startup::shutdown_signal()).await?;
    tracing::info!("keyward-server stopped");
    Ok(())
}

//! keyward-server: reads configuration (file + `KEYWARD_*`), migrates the database, serves gRPC
//! — over TLS when given a certificate (reloaded on SIGHUP), plaintext only on a loopback address
//! unless told it is insecure — until SIGTERM or Ctrl-C, then shuts down gracefully.

use keyward_server::tls::{ClientAuth, Tls, TlsFiles};
use keyward_shared::startup;

/// On SIGHUP the certificate and key are taken from their files again (the next connection gets
/// them; a failure keeps the ones in use and is logged).
fn reload_on_sighup(tls: Tls) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays"),
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((config, keyward)) = startup::open_from_args("Keyward gRPC server.", true).await? else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&config.listen_addr).await?;
    let addr = listener.local_addr()?;
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(Tls::new(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca_file.clone(),
            client_auth: ClientAuth::parse(&config.tls_client_auth).unwrap_or(ClientAuth::None),
        })?),
        _ => None,
    };
    match &tls {
        None if !addr.ip().is_loopback() && !config.insecure_plaintext => anyhow::bail!(
            "{addr} is not a loopback address: serve TLS (KEYWARD_TLS_CERT_FILE and KEYWARD_TLS_KEY_FILE), or set KEYWARD_INSECURE_PLAINTEXT=true to send everything in the clear"
        ),
        None => {
            tracing::info!(%addr, "keyward-server listening (plaintext)");
            keyward_server::serve(keyward, listener, startup::shutdown_signal()).await?;
        }
        Some(tls) => {
            tracing::info!(%addr, client_auth = %config.tls_client_auth, "keyward-server listening (TLS)");
            reload_on_sighup(tls.clone());
            keyward_server::serve_tls(keyward, listener, tls, startup::shutdown_signal()).await?;
        }
    }
    tracing::info!("keyward-server stopped");
    Ok(())
}

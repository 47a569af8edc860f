//! keyward-server: reads configuration (file + `KEYWARD_*`), migrates the database, serves gRPC
//! — over TLS when given a certificate (reloaded on SIGHUP), plaintext only on a loopback address
//! unless told it is insecure — until SIGTERM or Ctrl-C, then shuts down gracefully.

use keyward_server::tls::{ClientAuth, Tls, TlsFiles};
use keyward_shared::domain::Caller;
use keyward_shared::startup;
use secrecy::{ExposeSecret, SecretString};

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

/// Hands the bootstrap admin's token over: into `file` when one is configured — a new file of
/// mode 0600 (one left at that path, or a symlink, is removed first, so no older mode or link
/// target applies) — else printed once to stderr, loudly. Never logged.
fn deliver_bootstrap_token(file: Option<&std::path::Path>, token: &SecretString) -> std::io::Result<()> {
    use std::io::Write;
    match file {
        Some(path) => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path)?;
            writeln!(f, "{}", token.expose_secret())?;
            f.sync_all()
        }
        None => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "\n================================================================================")?;
            writeln!(err, "Keyward bootstrap admin (principal `admin`, ACCOUNT_ROLE_ADMIN). Its API token,")?;
            writeln!(err, "shown this once and never again (set KEYWARD_BOOTSTRAP_TOKEN_FILE to get a file):")?;
            writeln!(err, "\n    {}\n", token.expose_secret())?;
            writeln!(err, "Send it as `authorization: Bearer <token>`.")?;
            writeln!(err, "================================================================================\n")
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((config, keyward)) = startup::open_from_args("Keyward gRPC server.", true).await? else {
        return Ok(());
    };
    if let Some(addr) = keyward_shared::metrics::listen("metrics_listen_addr", &config.metrics_listen_addr).await? {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
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
    if tls.is_none() && !addr.ip().is_loopback() && !config.insecure_plaintext {
        anyhow::bail!(
            "{addr} is not a loopback address: serve TLS (KEYWARD_TLS_CERT_FILE and KEYWARD_TLS_KEY_FILE), or set KEYWARD_INSECURE_PLAINTEXT=true to send everything in the clear"
        );
    }
    // Only once every address is bound and TLS is loaded: a start that fails on those does not
    // spend the one-time token of the bootstrap admin.
    let ctx = keyward.ctx(Caller::system("keyward-server", uuid::Uuid::now_v7().to_string()));
    let file = config.bootstrap_token_file.clone();
    let made = keyward.bootstrap_admin(&ctx, |t| deliver_bootstrap_token(file.as_deref(), t)).await?;
    if let (true, Some(f)) = (made, &file) {
        tracing::warn!(file = %f.display(), "bootstrap admin made; its API token is in the file");
    }
    match &tls {
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

// Test code: a failed set-up step should stop the test with its name.
#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_new_and_0600_whatever_was_at_its_path() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("dir");
        let token = SecretString::from("kw_token");
        // A readable file left there: replaced, not reused with its mode.
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "old").expect("old file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        deliver_bootstrap_token(Some(&path), &token).expect("deliver");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "kw_token\n");
        // A symlink there: the link goes, its target is not written.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").expect("target");
        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        deliver_bootstrap_token(Some(&link), &token).expect("deliver");
        assert_eq!(std::fs::read_to_string(&target).expect("target"), "untouched");
        assert!(!std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).expect("read"), "kw_token\n");
    }
}

//! What the server and the worker do first and last: read the configuration, set up tracing,
//! install the TLS crypto provider, open the master key and the use cases; wait for the shutdown
//! signal. (The `keyward` CLI is a client of the API only and links none of this.)

use std::path::PathBuf;

use crate::app::Keyward;
use crate::config::Config;

/// The AWS SDK logs request and response bodies at TRACE (import tokens, wrapped material,
/// ciphertexts): these directives hold it at DEBUG.
const SDK_CAPS: &str =
    "aws_smithy_runtime=debug,aws_smithy_runtime_api=debug,aws_sdk_kms=debug,aws_smithy_http_client=debug";

/// The tracing filter for a configured `log_level`: the level as given, and when it asks for
/// TRACE anywhere, the AWS SDK held at DEBUG (a directive can only set a target's level, so the
/// caps are added only where they lower it).
pub fn log_directives(level: &str) -> String {
    if level.to_ascii_lowercase().contains("trace") { format!("{level},{SDK_CAPS}") } else { level.to_owned() }
}

/// Logs to stderr at the configured level, as `plain` text or `json` lines.
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The command-line option every binary takes (flattened into its own arguments).
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// TOML configuration file (keys as in the README); `KEYWARD_*` variables override it.
    #[arg(long, env = "KEYWARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// A binary's command line: `--config FILE` (or `KEYWARD_CONFIG`), `--help` saying `about`,
/// `--version`, and one-shot commands.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Option<Command>,
}

/// One-shot commands: run, print what was done, exit.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Seal every stored AWS secret and Keyward key material again under the current master
    /// key (KEYWARD_MASTER_KEY), opening them with it or KEYWARD_PREVIOUS_MASTER_KEYS. Servers
    /// may keep running; run again to finish after an interruption. Exits 1 when some values
    /// do not open.
    Reseal,
}

/// [`open`] with the configuration file named on the command line. `None`: a one-shot command
/// ran and the binary should exit.
pub async fn open_from_args(about: &'static str, migrate: bool) -> anyhow::Result<Option<(Config, Keyward)>> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().about(about).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let (config, keyward) = open(&cli.config, migrate).await?;
    match cli.command {
        None => Ok(Some((config, keyward))),
        Some(Command::Reseal) => {
            let caller = crate::domain::Caller::system("keyward-reseal", uuid::Uuid::now_v7().to_string());
            let report = keyward.reseal(&crate::Ctx { caller, now: keyward.now() }).await?;
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "resealed {} values under master key {}; {} were under it already",
                report.resealed,
                keyward.master_key_id(),
                report.current
            );
            if !report.unopened.is_empty() {
                anyhow::bail!(
                    "{} values do not open under the keyring and were left as they are: {}",
                    report.unopened.len(),
                    report.unopened.join(", ")
                );
            }
            Ok(None)
        }
    }
}

/// Reads the configuration (`file`, then the process environment's `KEYWARD_*`), sets up
/// tracing and the rustls provider (aws-lc-rs), opens the master key (warning loudly in dev
/// mode) and the use cases. `migrate`: the server applies migrations, the worker waits for them.
pub async fn open(file: &ConfigArg, migrate: bool) -> anyhow::Result<(Config, Keyward)> {
    let config = Config::load(file.config.as_deref(), std::env::vars().collect())?;
    init_tracing(&config);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (keyring, warning) = config.keyring().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    tracing::info!(master_key = %keyring.current_id(), keys = keyring.ids().len(), "master keyring");
    let keyward = Keyward::open(&config, keyring, migrate).await?;
    Ok((config, keyward))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
    tracing::info!("shutdown requested");
}

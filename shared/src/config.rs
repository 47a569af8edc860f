//! Typed configuration shared by the server and the worker. `main` hands in the environment and
//! an optional file; nothing here reads the process environment itself.
//!
//! Sources, later wins: built-in defaults, the TOML file (`--config` / `KEYWARD_CONFIG`), then
//! `KEYWARD_*` variables (e.g. `KEYWARD_DATABASE_URL`, `KEYWARD_AWS_ATTEMPT_TIMEOUT_SECS`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::crypto::MasterKey;

/// Every setting, with the default each gets when nothing sets it.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Server gRPC address. Default `127.0.0.1:50051`.
    pub listen_addr: String,
    /// Where the SQLite file (and a dev master key) live. Default `./data`.
    pub data_dir: PathBuf,
    /// `sqlite://PATH?mode=rwc` or `postgres://user@host/db`. Default: `<data_dir>/keyward.db`.
    pub database_url: Option<String>,
    /// Master key text (base64 or hex of 32 bytes). Or use `master_key_file`.
    pub master_key: Option<SecretString>,
    /// File holding the master key text.
    pub master_key_file: Option<PathBuf>,
    /// Development mode: without a master key, create `<data_dir>/master.key` (mode 0600).
    pub dev: bool,
    /// `plain` or `json`.
    pub log_format: String,
    /// tracing EnvFilter directive, e.g. `info` or `keyward_shared=debug`.
    pub log_level: String,
    /// TCP (and TLS) connect timeout to AWS KMS, seconds. Default 3.
    pub aws_connect_timeout_secs: u64,
    /// One HTTP attempt to AWS KMS, seconds. Default 10.
    pub aws_attempt_timeout_secs: u64,
    /// A whole AWS call with its retries, seconds. Default 30.
    pub aws_operation_timeout_secs: u64,
    /// Attempts per AWS call (standard retry: exponential backoff with jitter on throttling
    /// and 5xx). Default 3.
    pub aws_max_attempts: u32,
    /// Keys read in parallel during a sync. Default 8.
    pub sync_concurrency: usize,
    /// `Limit` of ListKeys/ListAliases pages (1–1000). Default 1000.
    pub aws_page_size: i32,
    /// Read each key's policy during sync. Default true.
    pub sync_key_policies: bool,
    /// Server-wide crypto policy, narrowing every group's: comma-separated key specs
    /// (`SYMMETRIC_DEFAULT,RSA_2048`, ...); empty allows all. Default empty.
    pub allowed_key_specs: String,
    /// Server-wide crypto policy: comma-separated key operations (`ENCRYPT,DECRYPT`, ...).
    pub allowed_key_ops: String,
    /// Worker: how often it looks for due syncs, as a 6-field cron (seconds first).
    /// Default `*/15 * * * * *`.
    pub worker_schedule: String,
}

impl Config {
    /// Builds the configuration from an optional TOML file and the given environment
    /// (only `KEYWARD_*` keys are read).
    pub fn load(file: Option<&Path>, env: HashMap<String, String>) -> Result<Self, config::ConfigError> {
        let mut b = config::Config::builder()
            .set_default("listen_addr", "127.0.0.1:50051")?
            .set_default("data_dir", "./data")?
            .set_default("dev", false)?
            .set_default("log_format", "plain")?
            .set_default("log_level", "info")?
            .set_default("aws_connect_timeout_secs", 3)?
            .set_default("aws_attempt_timeout_secs", 10)?
            .set_default("aws_operation_timeout_secs", 30)?
            .set_default("aws_max_attempts", 3)?
            .set_default("sync_concurrency", 8)?
            .set_default("aws_page_size", 1000)?
            .set_default("sync_key_policies", true)?
            .set_default("worker_schedule", "*/15 * * * * *")?
            .set_default("allowed_key_specs", "")?
            .set_default("allowed_key_ops", "")?;
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        let env: HashMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("KEYWARD_")).collect();
        b = b.add_source(config::Environment::with_prefix("KEYWARD").try_parsing(true).source(Some(env)));
        b.build()?.try_deserialize()
    }

    /// The server-wide crypto policy from `allowed_key_specs` / `allowed_key_ops`.
    pub fn crypto_policy(&self) -> Result<crate::domain::CryptoPolicy, String> {
        let items =
            |s: &str| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let specs = items(&self.allowed_key_specs)
            .iter()
            .map(|n| match n.as_str() {
                "AES_256" => Ok(crate::domain::KeySpec::Aes256),
                other => Some(crate::domain::KeySpec::from_aws(other))
                    .filter(|s| *s != crate::domain::KeySpec::Other)
                    .ok_or_else(|| format!("allowed_key_specs: {other:?} is not a key spec")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ops = items(&self.allowed_key_ops)
            .iter()
            .map(|n| {
                crate::domain::KeyOp::from_name(n).ok_or_else(|| format!("allowed_key_ops: {n:?} is not an operation"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::domain::CryptoPolicy { allowed_key_specs: specs, allowed_key_ops: ops })
    }

    /// The database URL: the configured one, or the SQLite file under `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("keyward.db").display()))
    }

    /// The master key: `master_key`, else `master_key_file`, else (dev only) a generated
    /// `<data_dir>/master.key` with mode 0600. Production without one: an error.
    /// Returns the key and a warning to print loudly when a dev key is in use.
    pub fn master_key(&self) -> Result<(MasterKey, Option<String>), String> {
        if let Some(text) = &self.master_key {
            return MasterKey::from_text(text.expose_secret()).map(|k| (k, None)).map_err(|e| e.to_string());
        }
        let (path, dev) = match &self.master_key_file {
            Some(p) => (p.clone(), false),
            None if self.dev => (self.data_dir.join("master.key"), true),
            None => {
                return Err("no master key: set KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEY_FILE \
                            (or KEYWARD_DEV=true for a development key)"
                    .to_owned());
            }
        };
        if dev && !path.exists() {
            std::fs::create_dir_all(&self.data_dir).map_err(|e| format!("{}: {e}", self.data_dir.display()))?;
            let text = MasterKey::generate_text().map_err(|e| e.to_string())?;
            write_private(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        let key = MasterKey::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let warning = dev.then(|| {
            format!(
                "DEVELOPMENT MASTER KEY in use ({}): anyone who can read this file can open every sealed secret; \
                 set KEYWARD_MASTER_KEY_FILE for real use",
                path.display()
            )
        });
        Ok((key, warning))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

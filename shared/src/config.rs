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

/// The `keyward` CLI's variables (cli/src/profile.rs), which the server and the worker leave to it.
pub const CLI_VARIABLES: [&str; 8] = [
    "KEYWARD_ADDR",
    "KEYWARD_TOKEN",
    "KEYWARD_PROFILE",
    "KEYWARD_CLI_CONFIG",
    "KEYWARD_CA_FILE",
    "KEYWARD_CERT_FILE",
    "KEYWARD_KEY_FILE",
    "KEYWARD_SERVER_NAME",
];

/// Every setting, with the default each gets when nothing sets it. Unknown keys (a misspelt
/// setting in the file or a `KEYWARD_*` variable) are an error, not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server gRPC address. Default `127.0.0.1:50051`.
    pub listen_addr: String,
    /// Server TLS: PEM certificate chain (leaf first); with `tls_key_file`. Unset: plaintext,
    /// which only a loopback address (or `insecure_plaintext`) allows.
    pub tls_cert_file: Option<PathBuf>,
    /// Server TLS: PEM private key.
    pub tls_key_file: Option<PathBuf>,
    /// Client certificates: `none` (default), `optional` or `required`.
    pub tls_client_auth: String,
    /// PEM CA bundle client certificates are checked against.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Serve plaintext gRPC on a non-loopback address (anyone on the network then sees every
    /// secret and key sent). Default false.
    pub insecure_plaintext: bool,
    /// Where the SQLite file (and a dev master key) live. Default `./data`.
    pub data_dir: PathBuf,
    /// `sqlite://PATH?mode=rwc` or `postgres://user@host/db`. Default: `<data_dir>/keyward.db`.
    pub database_url: Option<String>,
    /// Master key text (base64 or hex of 32 bytes). Or use `master_key_file`.
    pub master_key: Option<SecretString>,
    /// File holding the master key text.
    pub master_key_file: Option<PathBuf>,
    /// Earlier master keys (comma-separated, base64 or hex each) that stored values may still be
    /// sealed under, until `keyward-server reseal` has sealed them under the current one.
    pub previous_master_keys: Option<SecretString>,
    /// Where the server writes the bootstrap admin's API token at the first start of an empty
    /// database (mode 0600, replacing the file). Unset: the token is printed once to stderr.
    pub bootstrap_token_file: Option<PathBuf>,
    /// OIDC / JWT bearer tokens: the `iss` they must carry. With `oidc_audience` and
    /// `oidc_jwks_url`; a token's `sub` names the principal whose `oidc_subjects` hold it.
    /// Unset: API keys and client certificates only.
    pub oidc_issuer: Option<String>,
    /// A value the token's `aud` must hold, e.g. `keyward`.
    pub oidc_audience: Option<String>,
    /// The issuer's JWKS (`jwks_uri` of its discovery document): `https://`, or `http://` on
    /// loopback.
    pub oidc_jwks_url: Option<String>,
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
    /// AWS KMS request quotas of the accounts Keyward reaches, where they differ from AWS's
    /// defaults (raised through Service Quotas): `DescribeKey=4000,ListKeys=1000`, requests per
    /// second by operation (an operation of a shared quota, e.g. `Encrypt`, sets that quota).
    /// Default empty: AWS's published defaults (`shared/src/kms/quota.rs`).
    pub aws_request_quotas: String,
    /// Keys read in parallel during a sync. Default 8.
    pub sync_concurrency: usize,
    /// `Limit` of ListKeys/ListAliases pages (1–1000). Default 1000.
    pub aws_page_size: i32,
    /// Read each key's policy during sync. Default true.
    pub sync_key_policies: bool,
    /// Read AWS's automatic-rotation status of each key AWS can rotate (symmetric, AWS-made
    /// material) during sync: one GetKeyRotationStatus per such key. Default true.
    pub sync_rotation_status: bool,
    /// Server-wide crypto policy, narrowing every group's: comma-separated key specs
    /// (`SYMMETRIC_DEFAULT,RSA_2048`, ...); empty allows all. Default empty.
    pub allowed_key_specs: String,
    /// Server-wide crypto policy: comma-separated key operations (`ENCRYPT,DECRYPT`, ...).
    pub allowed_key_ops: String,
    /// Worker: how often it looks for due syncs, as a 6-field cron (seconds first).
    /// Default `*/15 * * * * *`.
    pub worker_schedule: String,
    /// Server: where Prometheus scrapes `GET /metrics` (plain HTTP; `host:port`). Empty: no
    /// metrics. Default `127.0.0.1:9464`.
    pub metrics_listen_addr: String,
    /// Worker: the same for the worker. Default `127.0.0.1:9465`.
    pub worker_metrics_listen_addr: String,
}

impl Config {
    /// Builds the configuration from an optional TOML file and the given environment
    /// (only `KEYWARD_*` keys are read).
    pub fn load(file: Option<&Path>, env: HashMap<String, String>) -> Result<Self, config::ConfigError> {
        let mut b = config::Config::builder()
            .set_default("listen_addr", "127.0.0.1:50051")?
            .set_default("data_dir", "./data")?
            .set_default("dev", false)?
            .set_default("tls_client_auth", "none")?
            .set_default("insecure_plaintext", false)?
            .set_default("log_format", "plain")?
            .set_default("log_level", "info")?
            .set_default("aws_connect_timeout_secs", 3)?
            .set_default("aws_attempt_timeout_secs", 10)?
            .set_default("aws_operation_timeout_secs", 30)?
            .set_default("aws_max_attempts", 3)?
            .set_default("sync_concurrency", 8)?
            .set_default("aws_request_quotas", "")?
            .set_default("aws_page_size", 1000)?
            .set_default("sync_key_policies", true)?
            .set_default("sync_rotation_status", true)?
            .set_default("worker_schedule", "*/15 * * * * *")?
            .set_default("metrics_listen_addr", "127.0.0.1:9464")?
            .set_default("worker_metrics_listen_addr", "127.0.0.1:9465")?
            .set_default("allowed_key_specs", "")?
            .set_default("allowed_key_ops", "")?;
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        // KEYWARD_CONFIG names the file; KEYWARD_TEST_* belong to the test harness, KEYWARD_DEMO_*
        // to the demo and CLI_VARIABLES to the `keyward` CLI (a shell may hold both).
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("KEYWARD_")
                    && k != "KEYWARD_CONFIG"
                    && !k.starts_with("KEYWARD_TEST_")
                    && !k.starts_with("KEYWARD_DEMO_")
                    && !CLI_VARIABLES.contains(&k.as_str())
            })
            .collect();
        b = b.add_source(config::Environment::with_prefix("KEYWARD").source(Some(env)));
        let c: Self = b.build()?.try_deserialize()?;
        c.check().map_err(config::ConfigError::Message)?;
        Ok(c)
    }

    /// Range checks that serde cannot express; errors name the setting.
    fn check(&self) -> Result<(), String> {
        let oidc = [&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks_url];
        if oidc.iter().any(|o| o.is_some()) {
            if oidc.iter().any(|o| o.is_none()) {
                return Err("oidc_issuer, oidc_audience and oidc_jwks_url (KEYWARD_OIDC_*) go together".into());
            }
            self.oidc().map(|o| o.validate()).transpose()?;
        }
        if !(1..=1000).contains(&self.aws_page_size) {
            return Err(format!(
                "aws_page_size (KEYWARD_AWS_PAGE_SIZE) is {}; AWS allows 1 to 1000",
                self.aws_page_size
            ));
        }
        if self.sync_concurrency == 0 || self.sync_concurrency > 64 {
            return Err(format!("sync_concurrency (KEYWARD_SYNC_CONCURRENCY) is {}; 1 to 64", self.sync_concurrency));
        }
        for (name, v) in [
            ("aws_connect_timeout_secs", self.aws_connect_timeout_secs),
            ("aws_attempt_timeout_secs", self.aws_attempt_timeout_secs),
            ("aws_operation_timeout_secs", self.aws_operation_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1 second"));
            }
        }
        if self.aws_max_attempts == 0 || self.aws_max_attempts > 10 {
            return Err(format!("aws_max_attempts is {}; 1 to 10", self.aws_max_attempts));
        }
        if !matches!(self.tls_client_auth.as_str(), "none" | "optional" | "required") {
            return Err(format!(
                "tls_client_auth (KEYWARD_TLS_CLIENT_AUTH) is {:?}; none, optional or required",
                self.tls_client_auth
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(
                "tls_cert_file and tls_key_file (KEYWARD_TLS_CERT_FILE, KEYWARD_TLS_KEY_FILE) go together".into()
            );
        }
        if self.tls_client_auth == "none" && self.tls_client_ca_file.is_some() {
            return Err("tls_client_ca_file (KEYWARD_TLS_CLIENT_CA_FILE) is set but tls_client_auth is none: \
                        set KEYWARD_TLS_CLIENT_AUTH to optional or required, or drop the CA file"
                .into());
        }
        if self.tls_client_auth != "none" && (self.tls_client_ca_file.is_none() || self.tls_cert_file.is_none()) {
            return Err(format!(
                "tls_client_auth {} needs tls_client_ca_file (KEYWARD_TLS_CLIENT_CA_FILE) and the server's TLS certificate",
                self.tls_client_auth
            ));
        }
        if !matches!(self.log_format.as_str(), "plain" | "json") {
            return Err(format!("log_format is {:?}; plain or json", self.log_format));
        }
        if self.worker_schedule.split_whitespace().count() != 6 {
            return Err(format!(
                "worker_schedule (KEYWARD_WORKER_SCHEDULE) is {:?}; a cron with 6 fields, seconds first, e.g. \"*/15 * * * * *\"",
                self.worker_schedule
            ));
        }
        self.request_quotas()?;
        self.crypto_policy().map(|_| ())
    }

    /// The request quotas from `aws_request_quotas`.
    pub fn request_quotas(&self) -> Result<crate::kms::quota::QuotaOverrides, String> {
        crate::kms::quota::QuotaOverrides::parse(&self.aws_request_quotas)
    }

    /// The OIDC settings, when all three are set.
    pub fn oidc(&self) -> Option<crate::oidc::OidcSettings> {
        Some(crate::oidc::OidcSettings {
            issuer: self.oidc_issuer.clone()?,
            audience: self.oidc_audience.clone()?,
            jwks_url: self.oidc_jwks_url.clone()?,
        })
    }

    /// The server-wide crypto policy from `allowed_key_specs` / `allowed_key_ops`.
    pub fn crypto_policy(&self) -> Result<crate::domain::CryptoPolicy, String> {
        let items =
            |s: &str| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let specs = items(&self.allowed_key_specs)
            .iter()
            .map(|n| {
                Some(n)
                    .and_then(|n| crate::domain::KeySpec::from_api_name(n))
                    .filter(|s| *s != crate::domain::KeySpec::Other)
                    .ok_or_else(|| format!("allowed_key_specs: {n:?} is not a key spec"))
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

    /// The keyring: the current master key ([`Config::master_key`]) and `previous_master_keys`.
    pub fn keyring(&self) -> Result<(crate::crypto::Keyring, Option<String>), String> {
        let (current, warning) = self.master_key()?;
        let mut older = Vec::new();
        if let Some(list) = &self.previous_master_keys {
            for (i, text) in list.expose_secret().split(',').map(str::trim).filter(|t| !t.is_empty()).enumerate() {
                let key = MasterKey::from_text(text)
                    .map_err(|e| format!("previous_master_keys (KEYWARD_PREVIOUS_MASTER_KEYS), key {}: {e}", i + 1))?;
                older.push(key);
            }
        }
        Ok((crate::crypto::Keyring::new(current, older), warning))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_env_and_errors_naming_the_setting() {
        let c = Config::load(None, env(&[("KEYWARD_SYNC_CONCURRENCY", "4"), ("PATH", "/bin")])).unwrap();
        assert_eq!((c.sync_concurrency, c.aws_page_size, c.listen_addr.as_str()), (4, 1000, "127.0.0.1:50051"));
        assert!(Config::load(None, env(&[("KEYWARD_CONFIG", "x.toml"), ("KEYWARD_TEST_DATABASE_URL", "y")])).is_ok());
        // The CLI's and the demo's variables, exported in the same shell, are theirs.
        let theirs: Vec<(&str, &str)> =
            CLI_VARIABLES.iter().map(|v| (*v, "x")).chain([("KEYWARD_DEMO_DIR", "/tmp/d")]).collect();
        assert!(Config::load(None, env(&theirs)).is_ok());
        let e = Config::load(None, env(&[("KEYWARD_SYNC_CONCURENCY", "4")])).unwrap_err().to_string();
        assert!(e.contains("sync_concurency"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_AWS_PAGE_SIZE", "5000")])).unwrap_err().to_string();
        assert!(e.contains("aws_page_size"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_WORKER_SCHEDULE", "every minute")])).unwrap_err().to_string();
        assert!(e.contains("worker_schedule"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_ALLOWED_KEY_SPECS", "RSA_1024")])).unwrap_err().to_string();
        assert!(e.contains("allowed_key_specs"), "{e}");
    }

    #[test]
    fn sdk_logs_are_held_at_debug_only_when_trace_is_asked() {
        assert_eq!(crate::startup::log_directives("info"), "info");
        assert_eq!(crate::startup::log_directives("info,keyward_shared=debug"), "info,keyward_shared=debug");
        let t = crate::startup::log_directives("trace");
        assert!(t.starts_with("trace,") && t.contains("aws_smithy_runtime=debug"), "{t}");
    }

    #[test]
    fn tls_settings_that_would_be_ignored_are_refused() {
        let e = Config::load(None, env(&[("KEYWARD_TLS_CLIENT_CA_FILE", "ca.pem")])).unwrap_err().to_string();
        assert!(e.contains("tls_client_auth is none"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_TLS_CERT_FILE", "c.pem")])).unwrap_err().to_string();
        assert!(e.contains("go together"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_TLS_CLIENT_AUTH", "required")])).unwrap_err().to_string();
        assert!(e.contains("needs tls_client_ca_file"), "{e}");
        let both = [("KEYWARD_TLS_CERT_FILE", "c"), ("KEYWARD_TLS_KEY_FILE", "k"), ("KEYWARD_TLS_CLIENT_CA_FILE", "a")];
        let ok = env(&[both[0], both[1], both[2], ("KEYWARD_TLS_CLIENT_AUTH", "optional")]);
        assert!(Config::load(None, ok).is_ok());
    }

    #[test]
    fn oidc_settings_go_together_and_fetch_keys_over_https_or_loopback() {
        let oidc = |url: &str| {
            env(&[
                ("KEYWARD_OIDC_ISSUER", "https://id.example.com"),
                ("KEYWARD_OIDC_AUDIENCE", "keyward"),
                ("KEYWARD_OIDC_JWKS_URL", url),
            ])
        };
        let c = Config::load(None, oidc("https://id.example.com/jwks")).unwrap();
        assert_eq!(c.oidc().map(|o| o.audience), Some("keyward".to_owned()));
        Config::load(None, oidc("http://127.0.0.1:8080/jwks")).unwrap();
        let e = Config::load(None, oidc("http://id.example.com/jwks")).unwrap_err().to_string();
        assert!(e.contains("oidc_jwks_url"), "{e}");
        let e = Config::load(None, env(&[("KEYWARD_OIDC_ISSUER", "https://id.example.com")])).unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        assert!(Config::load(None, env(&[])).unwrap().oidc().is_none());
    }

    #[test]
    fn master_key_sources() {
        let dir = std::env::temp_dir().join(format!("kw-config-{}", uuid::Uuid::now_v7()));
        let c = Config::load(None, env(&[("KEYWARD_DATA_DIR", dir.to_str().unwrap())])).unwrap();
        assert!(c.master_key().unwrap_err().contains("KEYWARD_MASTER_KEY"), "production start without a key refuses");
        let c =
            Config::load(None, env(&[("KEYWARD_DATA_DIR", dir.to_str().unwrap()), ("KEYWARD_DEV", "true")])).unwrap();
        let (_, warning) = c.master_key().unwrap();
        assert!(warning.unwrap().contains("DEVELOPMENT MASTER KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("master.key")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let c = Config::load(None, env(&[("KEYWARD_MASTER_KEY", "abc")])).unwrap();
        assert!(c.master_key().unwrap_err().contains("base64"));
        // A hex key of digits only stays text (leading zeros and all), and numbers and
        // booleans of other settings are still read from their text.
        let digits = "0123456789".repeat(6) + "0123";
        let c = Config::load(
            None,
            env(&[("KEYWARD_MASTER_KEY", &digits), ("KEYWARD_DEV", "false"), ("KEYWARD_SYNC_CONCURRENCY", "3")]),
        )
        .unwrap();
        assert!(c.master_key().is_ok(), "a 64-digit hex key opens");
        assert_eq!((c.dev, c.sync_concurrency), (false, 3));
        let _ = std::fs::remove_dir_all(dir);
    }
}

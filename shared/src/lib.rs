//! keyward-shared: the domain crate the server and the worker both use.
//!
//! `domain` holds pure types and rules, `kms` the AWS KMS port and adapter, `store` the
//! database, `crypto` sealing at rest; the use cases (`groups`, `keys`, `sync`) are methods of
//! [`Keyward`], which is all the binaries call.

pub mod config;
pub mod crypto;
pub mod domain;
mod error;
pub mod kms;
pub mod store;

mod audit;
mod byok;
mod crypto_ops;
mod groups;
mod keys;
mod lifecycle;
mod sync;

pub use byok::{CopyRequest, ImportRequest, RecoveryReport, STALE_OPERATION};
pub use error::{Error, Result};
pub use groups::{GroupPatch, NewGroup};
pub use keys::{KeyFilter, NewKey};
pub use lifecycle::{DeletionCheckReport, KeyPatch, RECHECK_AFTER};
pub use sync::SyncReport;

use std::sync::Arc;

/// Tunables of the use cases. No `Default`: `main` builds it from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Keys described in parallel during a sync (DescribeKey, ListResourceTags, GetKeyPolicy).
    pub sync_concurrency: usize,
    /// `Limit` sent with ListKeys / ListAliases (AWS: 1–1000).
    pub aws_page_size: i32,
    /// How long a sync holds its lease before another process may take over (seconds).
    pub sync_lease_seconds: i64,
    /// Whether to read each key's policy during sync (one GetKeyPolicy per key).
    pub sync_key_policies: bool,
    /// Server-wide crypto policy: narrows every group's.
    pub server_policy: domain::CryptoPolicy,
}

impl Settings {
    /// Values suited to real AWS quotas (ListKeys 100/s, DescribeKey 1000/s).
    pub fn standard() -> Self {
        Self {
            sync_concurrency: 8,
            aws_page_size: 1000,
            sync_lease_seconds: 600,
            sync_key_policies: true,
            server_policy: domain::CryptoPolicy::default(),
        }
    }
}

/// AWS clients by group: (etag of the group settings they were made from, client).
type ClientCache = std::collections::HashMap<domain::GroupId, (String, Arc<dyn kms::Kms>)>;

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

/// Keyward's use cases over one database and one AWS KMS connector.
#[derive(Clone)]
pub struct Keyward {
    store: store::Store,
    kms: Arc<dyn kms::Connector>,
    settings: Settings,
    /// Identifies this process in leases.
    holder: String,
    /// AWS clients of groups, by group and the etag of the settings they were made from: a
    /// client keeps its connection pool, so calls after the first skip the TLS handshake.
    clients: Arc<std::sync::Mutex<ClientCache>>,
}

impl Keyward {
    pub fn new(store: store::Store, kms: Arc<dyn kms::Connector>, settings: Settings) -> Self {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
        Self { store, kms, settings, holder, clients: Arc::default() }
    }

    pub fn store(&self) -> &store::Store {
        &self.store
    }
}

impl Keyward {
    /// Opens the database named by `config` and the real AWS KMS connector with the configured
    /// timeouts. `migrate`: apply migrations (server) or wait for them (worker, up to 60 s).
    pub async fn open(config: &config::Config, master_key: crypto::MasterKey, migrate: bool) -> Result<Self> {
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).map_err(Error::internal)?;
        }
        let store = store::Store::connect(&config.database_url(), Arc::new(master_key)).await?;
        if migrate {
            store.migrate().await?;
        } else {
            store.wait_for_migrations(std::time::Duration::from_secs(60)).await?;
        }
        let secs = std::time::Duration::from_secs;
        let connector = kms::aws::AwsConnector::new(kms::aws::Timeouts {
            connect: secs(config.aws_connect_timeout_secs),
            attempt: secs(config.aws_attempt_timeout_secs),
            operation: secs(config.aws_operation_timeout_secs),
            max_attempts: config.aws_max_attempts.max(1),
        });
        let settings = Settings {
            sync_concurrency: config.sync_concurrency.max(1),
            aws_page_size: config.aws_page_size.clamp(1, 1000),
            sync_lease_seconds: Settings::standard().sync_lease_seconds,
            sync_key_policies: config.sync_key_policies,
            server_policy: config.crypto_policy().map_err(|e| Error::invalid("allowed_key_specs", e))?,
        };
        Ok(Self::new(store, Arc::new(connector), settings))
    }
}

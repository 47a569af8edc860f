//! The use cases the server, the worker and the CLI call: methods of [`Keyward`], one module per
//! family (groups, keys, key changes, BYOK, sync, crypto, audit), and `jobs` for the worker's
//! `run_once` bodies. They stand on `support`: the AWS client cache, key locks, the journal,
//! AWS-key helpers, shared checks and record writes.
//!
//! Rule (tests/tests/tidy.rs fails without it): a use-case module imports `support`, the domain,
//! the store, the AWS port and the crate root — never another use-case module. Every use case
//! takes a [`Ctx`]: who calls, and the time of the call from the injected [`Clock`].

mod access;
mod audit;
mod byok;
mod crypto;
mod groups;
pub mod jobs;
mod key_changes;
mod keyring;
mod keys;
mod requests;
mod rotation;
mod support;
mod sync;

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

pub use crate::domain::{KeyCursor, KeyFilter, KeyOrder};
pub use crate::store::{AuditQuery, BrokenLink, Estate, ResealReport};
pub use access::{Credentials, CurrentPrincipal, NewPrincipal, PrincipalPatch};
pub use crypto::{
    AWS_AAD_MAX, AWS_CIPHERTEXT_MAX, AWS_PLAINTEXT_MAX, Binding, DataKeyRequest, KEYWARD_DATA_MAX, PublicKey, Signing,
};
pub use requests::{
    CopyRequest, GroupPatch, ImportRequest, KeyPatch, LinkedCopies, NewGroup, NewKey, RotateRequest, RotationSchedule,
    ToSource,
};
pub use rotation::RotationOutcome;

use crate::domain::{self, Caller};
use crate::{Error, Result, config, crypto as sealing, kms, store};

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
    /// Whether to read AWS's rotation status during sync (one GetKeyRotationStatus per key AWS
    /// can rotate).
    pub sync_rotation_status: bool,
    /// Server-wide crypto policy: narrows every group's.
    pub server_policy: domain::CryptoPolicy,
    /// OIDC / JWT bearer tokens accepted besides API keys (`None`: API keys only).
    pub oidc: Option<crate::oidc::OidcSettings>,
}

impl Settings {
    /// Values suited to real AWS quotas (ListKeys 100/s, DescribeKey 1000/s).
    pub fn standard() -> Self {
        Self {
            sync_concurrency: 8,
            aws_page_size: 1000,
            sync_lease_seconds: 600,
            sync_key_policies: true,
            sync_rotation_status: true,
            server_policy: domain::CryptoPolicy::default(),
            oidc: None,
        }
    }
}

/// Where use cases get the time from. The binaries use [`SystemClock`]; tests inject their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The context of one use-case call: who calls, and when (cut to microseconds, what both
/// databases store, so a returned resource equals the one read back later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub caller: Caller,
    pub now: OffsetDateTime,
}

impl Ctx {
    /// The worker's jobs acting at `now` (cut to whole microseconds, as stored).
    pub fn worker(now: OffsetDateTime) -> Self {
        Self { caller: Caller::worker(), now: domain::to_micros(now) }
    }
}

/// AWS clients by group: (etag of the group settings they were made from, client).
type ClientCache = std::collections::HashMap<domain::GroupId, (String, Arc<dyn kms::Kms>)>;

/// Keyward's use cases over one database, one AWS KMS connector and one clock.
#[derive(Clone)]
pub struct Keyward {
    store: store::Store,
    kms: Arc<dyn kms::Connector>,
    settings: Settings,
    /// Identifies this process in leases.
    holder: String,
    /// AWS clients of groups, by group and the etag of the settings they were made from: a
    /// client keeps its connection pool, so calls after the first skip the TLS handshake.
    clients: Arc<Mutex<ClientCache>>,
    clock: Arc<dyn Clock>,
    /// The bounded rate of access refusals written to the audit log.
    refusals: Arc<Refusals>,
    /// Credentials authenticated in the last second.
    access_cache: Arc<access::AccessCache>,
    /// The OIDC issuer's token verifier and its JWKS, when configured.
    oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Groups' `audit_key_use` as read in the last second.
    key_use_flags: Arc<crypto::KeyUseFlags>,
    /// Key records for crypto calls, as read in the last second.
    key_cache: Arc<support::key_cache::KeyCache>,
}

/// Access refusals written to the audit log: at most 10 a second, bursts of 100, for each of
/// unauthenticated calls and refused principals (a flood without credentials does not hide a
/// principal's refusals); those over the rate are counted.
struct Refusals {
    unauthenticated: RefusalBucket,
    denied: RefusalBucket,
}

struct RefusalBucket {
    limiter: governor::DefaultDirectRateLimiter,
    dropped: std::sync::atomic::AtomicU64,
}

impl RefusalBucket {
    fn new() -> Self {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::MIN.saturating_add(9))
            .allow_burst(std::num::NonZeroU32::MIN.saturating_add(99));
        Self { limiter: governor::RateLimiter::direct(quota), dropped: Default::default() }
    }
}

impl Refusals {
    fn new() -> Self {
        Self { unauthenticated: RefusalBucket::new(), denied: RefusalBucket::new() }
    }
}

impl Keyward {
    /// Use cases over `store` and `kms`, on the system clock.
    pub fn new(store: store::Store, kms: Arc<dyn kms::Connector>, settings: Settings) -> Self {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
        let oidc = settings.oidc.clone().map(|o| Arc::new(crate::oidc::Oidc::new(o)));
        Self {
            store,
            kms,
            settings,
            holder,
            clients: Arc::default(),
            clock: Arc::new(SystemClock),
            refusals: Arc::new(Refusals::new()),
            access_cache: Arc::default(),
            key_use_flags: Arc::default(),
            key_cache: Arc::default(),
            oidc,
        }
    }

    /// The same use cases on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The context of a call made now by `caller`.
    pub fn ctx(&self, caller: Caller) -> Ctx {
        Ctx { caller, now: self.now() }
    }

    /// The id of the master key new values are sealed under (never the key).
    pub fn master_key_id(&self) -> String {
        self.store.master_key_id()
    }

    /// The clock's time, cut to microseconds.
    pub fn now(&self) -> OffsetDateTime {
        domain::to_micros(self.clock.now())
    }

    /// The database, for tests that inspect or tamper with it.
    #[cfg(feature = "test-util")]
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// Opens the database named by `config` and the real AWS KMS connector with the configured
    /// timeouts. `migrate`: apply migrations (server) or wait for them (worker, up to 60 s).
    /// Refuses to open (FAILED_PRECONDITION, saying which master key is missing) when the
    /// database holds values the keyring cannot open ([`store::Store::check_keyring`]).
    pub async fn open(config: &config::Config, keyring: sealing::Keyring, migrate: bool) -> Result<Self> {
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).map_err(Error::internal)?;
        }
        let store = store::Store::connect(&config.database_url(), Arc::new(keyring)).await?;
        if migrate {
            store.migrate().await?;
        } else {
            store.wait_for_migrations(std::time::Duration::from_secs(60)).await?;
        }
        store.check_keyring().await?;
        let secs = std::time::Duration::from_secs;
        let timeouts = kms::aws::Timeouts {
            connect: secs(config.aws_connect_timeout_secs),
            attempt: secs(config.aws_attempt_timeout_secs),
            operation: secs(config.aws_operation_timeout_secs),
            max_attempts: config.aws_max_attempts.max(1),
        };
        let quotas = config.request_quotas().map_err(|e| Error::invalid("aws_request_quotas", e))?;
        let connector = kms::aws::AwsConnector::with_quotas(timeouts, quotas);
        let settings = Settings {
            sync_concurrency: config.sync_concurrency.max(1),
            aws_page_size: config.aws_page_size.clamp(1, 1000),
            sync_lease_seconds: Settings::standard().sync_lease_seconds,
            sync_key_policies: config.sync_key_policies,
            sync_rotation_status: config.sync_rotation_status,
            server_policy: config.crypto_policy().map_err(|e| Error::invalid("allowed_key_specs", e))?,
            oidc: config.oidc(),
        };
        Ok(Self::new(store, Arc::new(connector), settings))
    }
}

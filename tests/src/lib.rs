//! keyward-tests: the end-to-end harness. It starts the real AWS KMS emulator (LocalStack's KMS,
//! once per test process, on a free loopback port), a fresh database per test (SQLite file, or
//! PostgreSQL when `KEYWARD_TEST_DATABASE_URL` is set), and the real server in-process on port 0,
//! on a [`TestClock`] the test moves forward. The suites' shared fixtures are in [`fixtures`].
// Test harness: a set-up step that fails must stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod clock;
pub mod emulator;
pub mod fixtures;
pub mod front;
pub mod logs;
pub mod oidc;
pub mod process;
pub mod status;
pub mod tls_front;

use std::sync::Arc;
use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_shared::crypto::{Keyring, MasterKey};
use keyward_shared::domain::Caller;
use keyward_shared::kms::aws::{AwsConnector, Timeouts};
use keyward_shared::kms::faults::FaultyConnector;
use keyward_shared::store::Store;
use keyward_shared::{Keyward, Settings};
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use tonic::transport::Channel;

pub use clock::TestClock;

/// Adds `authorization: Bearer <token>` to every call that does not carry its own.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        // A call that names its own credentials keeps them.
        if !self.0.is_empty() && !r.metadata().contains_key("authorization") {
            r.metadata_mut().insert("authorization", self.0.clone());
        }
        Ok(r)
    }
}

impl Bearer {
    /// Sends no `authorization` header at all.
    pub fn none() -> Self {
        Self(tonic::metadata::MetadataValue::from_static(""))
    }
}

/// A channel whose calls carry an API token.
pub type Conn = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// A lazily connecting plaintext channel to `addr` carrying `token`.
pub fn conn(addr: std::net::SocketAddr, token: &str) -> Conn {
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    let value = format!("Bearer {token}").parse().expect("token is ASCII");
    tonic::service::interceptor::InterceptedService::new(channel, Bearer(value))
}
pub use emulator::Emulator;

/// Region every test group uses.
pub const REGION: &str = "eu-west-1";

/// One test's world: a server on a loopback port over a fresh database, a fresh AWS account in
/// the shared emulator, and clients for both.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Clients authenticated as the bootstrap admin.
    pub groups: pb::group_service_client::GroupServiceClient<Conn>,
    pub keys: pb::key_service_client::KeyServiceClient<Conn>,
    /// The bootstrap admin's API token (ACCOUNT_ROLE_ADMIN).
    pub admin_token: String,
    /// The server's use cases, for driving worker jobs with a chosen `now`.
    pub keyward: Keyward,
    /// The clock every `Keyward` of this test reads (the server's and [`TestApp::second_keyward`]'s).
    pub clock: Arc<TestClock>,
    /// Faults injected here reach every AWS client the server makes.
    pub faults: Arc<FaultyConnector>,
    /// An aws-sdk-kms client of the test's own account, for seeding and checking AWS.
    pub aws: aws_sdk_kms::Client,
    /// The test's account: its access key id (LocalStack takes a 12-digit one as account id).
    pub access_key_id: String,
    pub secret_access_key: String,
    pub emulator_url: String,
    /// SQLite file (when not on PostgreSQL).
    pub sqlite_path: Option<std::path::PathBuf>,
    /// The test database's URL.
    pub db_url: String,
    /// PostgreSQL: (admin URL, database name), dropped when the test ends.
    pg_database: Option<(String, String)>,
    master_key: [u8; 32],
    opts: Options,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Options of [`TestApp::spawn_with`].
#[derive(Clone)]
pub struct Options {
    pub settings: Settings,
    pub timeouts: Timeouts,
    /// Request quotas over AWS's defaults.
    pub quotas: keyward_shared::kms::quota::QuotaOverrides,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: Settings::standard(),
            timeouts: Timeouts {
                connect: Duration::from_secs(2),
                attempt: Duration::from_secs(20),
                operation: Duration::from_secs(60),
                max_attempts: 3,
            },
            quotas: Default::default(),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        logs::install();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let emulator = Emulator::shared();
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, sqlite_path, pg_database) = database_url(&dir).await;
        let mut mk = [0u8; 32];
        for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).enumerate() {
            mk[i] = *b;
        }
        let store = Store::connect(&url, Arc::new(Keyring::from(MasterKey::from_bytes(&mk).expect("master key"))))
            .await
            .expect("connect db");
        store.migrate().await.expect("migrate");
        let faults =
            Arc::new(FaultyConnector::new(Arc::new(AwsConnector::with_quotas(opts.timeouts, opts.quotas.clone()))));
        let clock = Arc::new(TestClock::new());
        let keyward = Keyward::new(store, faults.clone(), opts.settings.clone()).with_clock(clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut admin_token = String::new();
        let made = keyward
            .bootstrap_admin(&keyward.ctx(Caller::system("test-harness", "bootstrap")), |t| {
                admin_token = t.expose_secret().to_owned();
                Ok(())
            })
            .await
            .expect("bootstrap admin");
        assert!(made, "a fresh database makes the bootstrap admin");
        let kw = keyward.clone();
        tokio::spawn(async move {
            let _ = keyward_server::serve(kw, listener, async move {
                let _ = rx.await;
            })
            .await;
        });
        let channel = conn(addr, &admin_token);
        let access_key_id = new_account_id();
        let secret_access_key = format!("kwsecret-{}", uuid::Uuid::new_v4().simple());
        let aws = aws_client(&emulator.url, &access_key_id, &secret_access_key);
        Self {
            addr,
            groups: pb::group_service_client::GroupServiceClient::new(channel.clone()),
            keys: pb::key_service_client::KeyServiceClient::new(channel),
            admin_token,
            keyward,
            clock,
            faults,
            aws,
            access_key_id,
            secret_access_key,
            emulator_url: emulator.url.clone(),
            sqlite_path,
            db_url: url,
            pg_database,
            master_key: mk,
            opts,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    /// The AWS KMS settings of this test's account.
    pub fn aws_kms_config(&self) -> pb::AwsKmsConfig {
        pb::AwsKmsConfig {
            region: REGION.into(),
            endpoint_url: self.emulator_url.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            ..Default::default()
        }
    }

    /// Creates an AWS_KMS group for this test's account.
    pub async fn create_aws_group(&mut self, display_name: &str) -> pb::Group {
        self.try_create_aws_group(display_name).await.expect("create group")
    }

    /// Runs SyncKeys and returns the run.
    pub async fn sync(&mut self, group: &str) -> pb::SyncRun {
        self.groups
            .sync_keys(pb::SyncKeysRequest { name: group.into(), ..Default::default() })
            .await
            .expect("sync")
            .into_inner()
    }

    /// Every key of a parent, following pages.
    pub async fn all_keys(&mut self, parent: &str, filter: &str) -> Vec<pb::Key> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let r = self
                .keys
                .list_keys(pb::ListKeysRequest {
                    parent: parent.into(),
                    page_size: 1000,
                    page_token: token,
                    filter: filter.into(),
                    ..Default::default()
                })
                .await
                .expect("list keys")
                .into_inner();
            out.extend(r.keys);
            if r.next_page_token.is_empty() {
                return out;
            }
            token = r.next_page_token;
        }
    }

    /// Number of keys in this test's AWS account.
    pub async fn aws_key_count(&self) -> usize {
        let mut n = 0;
        let mut marker = None;
        loop {
            let r = self.aws.list_keys().set_marker(marker).limit(1000).send().await.expect("aws list keys");
            n += r.keys().len();
            if !r.truncated() {
                return n;
            }
            marker = r.next_marker().map(str::to_owned);
        }
    }

    /// Another process's view: a second `Keyward` (own pool, own lease holder id) over the
    /// same database and emulator, as a second worker would have, on the same clock.
    pub async fn second_keyward(&self) -> Keyward {
        let store = Store::connect(
            &self.db_url,
            Arc::new(Keyring::from(MasterKey::from_bytes(&self.master_key).expect("key"))),
        )
        .await
        .expect("connect db");
        Keyward::new(
            store,
            Arc::new(AwsConnector::with_quotas(self.opts.timeouts, self.opts.quotas.clone())),
            self.opts.settings.clone(),
        )
        .with_clock(self.clock.clone())
    }

    /// The master key, as hex (for a server process over this test's database).
    pub fn master_key_hex(&self) -> String {
        self.master_key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every byte of the database: the SQLite file with its WAL, or on PostgreSQL every row of
    /// every table as JSON (bytea as `\x` lower hex).
    pub async fn database_dump(&self) -> Vec<u8> {
        match &self.sqlite_path {
            Some(path) => {
                let mut all = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    all.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
                }
                assert!(all.len() > 4096, "read the database file");
                all
            }
            None => {
                let db = self.keyward.store().connection();
                let backend = db.get_database_backend();
                let tables = db
                    .query_all_raw(sea_orm::Statement::from_string(
                        backend,
                        "SELECT table_name::text AS t FROM information_schema.tables \
                         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                    ))
                    .await
                    .expect("tables");
                let tables: Vec<String> = tables.iter().map(|r| r.try_get::<String>("", "t").expect("name")).collect();
                for t in ["keys", "operations", "audit_events", "key_links", "groups"] {
                    assert!(tables.iter().any(|n| n == t), "table {t} in {tables:?}");
                }
                let mut text = String::new();
                for table in tables {
                    let rows = db
                        .query_all_raw(sea_orm::Statement::from_string(
                            backend,
                            format!("SELECT row_to_json(t)::text AS j FROM \"{table}\" t"),
                        ))
                        .await
                        .expect("dump");
                    for r in rows {
                        text.push_str(&r.try_get::<String>("", "j").expect("json"));
                    }
                }
                text.into_bytes()
            }
        }
    }

    /// Runs SQL that returns nothing (tests that tamper with the database).
    pub async fn exec_sql(&self, sql: &str) {
        self.keyward.store().connection().execute_unprepared(sql).await.expect("sql");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Drop the test's PostgreSQL database (its pool may still be open: FORCE).
        if let Some((admin, name)) = self.pg_database.take() {
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async {
                    if let Ok(db) = sea_orm::Database::connect(&admin).await {
                        let _ = db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                        let _ = db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A fresh 12-digit account id (LocalStack: the access key id is the account).
pub fn new_account_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

/// An aws-sdk-kms client for the emulator with static credentials.
pub fn aws_client(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_kms::Client {
    let creds = aws_credential_types::Credentials::new(access_key_id, secret, None, None, "keyward-tests");
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// The database of one test: a new SQLite file, or a new PostgreSQL database when
/// `KEYWARD_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`).
async fn database_url(dir: &tempfile::TempDir) -> (String, Option<std::path::PathBuf>, Option<(String, String)>) {
    match std::env::var("KEYWARD_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let admin = sea_orm::Database::connect(&base).await.expect("connect to KEYWARD_TEST_DATABASE_URL");
            static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
            SWEPT.get_or_init(|| drop_stale_databases(&admin)).await;
            let name = format!("kwtest_{}", uuid::Uuid::now_v7().simple());
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            let _ = admin.close().await;
            let (prefix, _) = base.rsplit_once('/').expect("database url has a /dbname");
            (format!("{prefix}/{name}"), None, Some((base.clone(), name)))
        }
        _ => {
            let path = dir.path().join("keyward.db");
            (format!("sqlite://{}?mode=rwc", path.display()), Some(path), None)
        }
    }
}

/// Drops test databases left by runs that ended more than an hour ago (the name carries a
/// UUID v7, whose first 48 bits are its creation time in unix milliseconds).
async fn drop_stale_databases(admin: &sea_orm::DatabaseConnection) {
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'kwtest\\_%'",
        ))
        .await
        .unwrap_or_default();
    let hour_ago = (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000;
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        let created_ms = name
            .strip_prefix("kwtest_")
            .and_then(|hex| uuid::Uuid::parse_str(hex).ok())
            .map(|u| (u.as_u128() >> 80) as i64)
            .unwrap_or(i64::MAX);
        if created_ms < hour_ago {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

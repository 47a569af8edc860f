//! Groups and the connection settings of an AWS KMS group.

use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::{EndpointUrl, GroupId, KeyOp, KeySpec, Region};

/// What a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// Keys whose material Keyward holds.
    Regular,
    /// Virtual keys: pointers to AWS KMS keys.
    AwsKms,
}

/// How to reach one AWS account and region. Secrets are `SecretString`: they never print.
#[derive(Debug, Clone)]
pub struct AwsKmsConfig {
    pub region: Region,
    /// `None`: the region's public endpoint.
    pub endpoint_url: Option<EndpointUrl>,
    pub access_key_id: String,
    pub secret_access_key: Option<SecretString>,
    /// PEM; `None`: public web PKI roots; set: only this CA is trusted.
    pub ca_certificate_pem: Option<String>,
    /// PEM chain for mTLS (with `client_private_key_pem`).
    pub client_certificate_pem: Option<String>,
    pub client_private_key_pem: Option<SecretString>,
    /// Check the endpoint certificate's name against the host (default true).
    pub validate_host: bool,
    /// Stored secrets that did not open (damaged, or sealed under a master key the keyring
    /// lacks), by setting name (`secret_access_key`, `client_private_key_pem`): the group cannot
    /// reach AWS until they are set again, and its stored values are kept as they are.
    pub unopened: Vec<&'static str>,
}

impl AwsKmsConfig {
    /// Where requests go: `endpoint_url`, or the region's public endpoint.
    pub fn endpoint(&self) -> String {
        match &self.endpoint_url {
            Some(url) => url.as_str().to_owned(),
            None => self.region.public_kms_endpoint(),
        }
    }
}

/// A change of some connection settings (`None`: untouched; `Some(None)`: cleared).
#[derive(Debug, Clone, Default)]
pub struct AwsKmsConfigPatch {
    pub region: Option<Region>,
    pub endpoint_url: Option<Option<EndpointUrl>>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Option<SecretString>>,
    pub ca_certificate_pem: Option<Option<String>>,
    pub client_certificate_pem: Option<Option<String>>,
    pub client_private_key_pem: Option<Option<SecretString>>,
    pub validate_host: Option<bool>,
}

impl AwsKmsConfigPatch {
    /// A patch that replaces every setting with `c`'s.
    pub fn replacing(c: AwsKmsConfig) -> Self {
        Self {
            region: Some(c.region),
            endpoint_url: Some(c.endpoint_url),
            access_key_id: Some(c.access_key_id),
            secret_access_key: Some(c.secret_access_key),
            ca_certificate_pem: Some(c.ca_certificate_pem),
            client_certificate_pem: Some(c.client_certificate_pem),
            client_private_key_pem: Some(c.client_private_key_pem),
            validate_host: Some(c.validate_host),
        }
    }

    /// The request paths of the settings it changes (names only, never values).
    pub fn changed(&self) -> Vec<&'static str> {
        super::names_set(&[
            ("aws_kms.region", self.region.is_some()),
            ("aws_kms.endpoint_url", self.endpoint_url.is_some()),
            ("aws_kms.access_key_id", self.access_key_id.is_some()),
            ("aws_kms.secret_access_key", self.secret_access_key.is_some()),
            ("aws_kms.ca_certificate_pem", self.ca_certificate_pem.is_some()),
            ("aws_kms.client_certificate_pem", self.client_certificate_pem.is_some()),
            ("aws_kms.client_private_key_pem", self.client_private_key_pem.is_some()),
            ("aws_kms.validate_host", self.validate_host.is_some()),
        ])
    }

    /// `c` with the patch applied.
    pub fn apply(self, c: &mut AwsKmsConfig) {
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut c.region, self.region);
        set(&mut c.endpoint_url, self.endpoint_url);
        set(&mut c.access_key_id, self.access_key_id);
        if self.secret_access_key.is_some() {
            c.unopened.retain(|s| *s != "secret_access_key");
        }
        if self.client_private_key_pem.is_some() {
            c.unopened.retain(|s| *s != "client_private_key_pem");
        }
        set(&mut c.secret_access_key, self.secret_access_key);
        set(&mut c.ca_certificate_pem, self.ca_certificate_pem);
        set(&mut c.client_certificate_pem, self.client_certificate_pem);
        set(&mut c.client_private_key_pem, self.client_private_key_pem);
        set(&mut c.validate_host, self.validate_host);
    }
}

/// Whether Keyward reached the endpoint with the stored credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    NotConnected,
    Unknown,
}

/// The outcome of a connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    /// What a person can act on.
    pub message: String,
    pub check_time: Option<OffsetDateTime>,
}

impl ConnectionStatus {
    /// Never tested, or the connection details changed.
    pub fn unknown() -> Self {
        Self { state: ConnectionState::Unknown, message: String::new(), check_time: None }
    }
}

/// Which key specs and operations a group allows; empty = all the kind supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoPolicy {
    pub allowed_key_specs: Vec<KeySpec>,
    pub allowed_key_ops: Vec<KeyOp>,
}

impl CryptoPolicy {
    /// Whether the policy allows a key of `spec` with `ops`.
    pub fn allows(&self, spec: KeySpec, ops: &[KeyOp]) -> bool {
        (self.allowed_key_specs.is_empty() || self.allowed_key_specs.contains(&spec))
            && (self.allowed_key_ops.is_empty() || ops.iter().all(|op| self.allowed_key_ops.contains(op)))
    }
}

/// A group of keys.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: GroupId,
    pub display_name: String,
    pub description: String,
    pub kind: GroupKind,
    /// Set iff `kind == AwsKms`.
    pub aws_kms: Option<AwsKmsConfig>,
    pub connection: ConnectionStatus,
    pub crypto_policy: CryptoPolicy,
    /// How often the worker syncs; `None` = never.
    pub sync_interval: Option<Duration>,
    /// Every CryptoService call with the group's keys is audited (who, key, operation,
    /// outcome; never data). Off by default: data-plane calls are many.
    pub audit_key_use: bool,
    /// When the last successful sync ended; `None`: never synced.
    pub last_sync_time: Option<OffsetDateTime>,
    /// When the worker syncs the group next: set from the schedule at creation and when the
    /// schedule changes, then moved on by each scheduled sync. `None`: no schedule.
    pub next_sync_time: Option<OffsetDateTime>,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    /// Changes on every update; compared on update (mismatch: ABORTED).
    pub etag: String,
}

//! Groups and the connection settings of an AWS KMS group.

use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::{GroupId, KeyOp, KeySpec, Region};

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
    /// `None`: the region's public endpoint. Else an `http://` or `https://` URL.
    pub endpoint_url: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Option<SecretString>,
    /// PEM; `None`: public web PKI roots; set: only this CA is trusted.
    pub ca_certificate_pem: Option<String>,
    /// PEM chain for mTLS (with `client_private_key_pem`).
    pub client_certificate_pem: Option<String>,
    pub client_private_key_pem: Option<SecretString>,
    /// Check the endpoint certificate's name against the host (default true).
    pub validate_host: bool,
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
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    /// Changes on every update; compared on update (mismatch: ABORTED).
    pub etag: String,
}

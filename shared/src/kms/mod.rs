//! The AWS KMS port: a trait in Keyward's terms, its aws-sdk-kms adapter (`aws.rs`, the only
//! file naming `aws_sdk_kms`), the HTTP/TLS client it runs on (`http.rs`) and a fault-injecting
//! wrapper for conditions no emulator produces (`faults.rs`).

pub mod aws;
#[cfg(feature = "test-util")]
pub mod faults;
pub mod http;
mod metered;
pub mod quota;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{AwsKmsConfig, KeySpec, KeyUsage};

/// What went wrong talking to AWS KMS, in the terms a caller decides on.
/// Messages come from AWS or from Keyward; they never contain credentials.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// NotFoundException: the key or alias does not exist.
    #[error("not found in AWS KMS: {0}")]
    NotFound(String),
    /// AlreadyExistsException (an alias name taken).
    #[error("already exists in AWS KMS: {0}")]
    AlreadyExists(String),
    /// AccessDeniedException: the principal may not do this.
    #[error("access denied by AWS KMS: {0}")]
    AccessDenied(String),
    /// UnrecognizedClientException / InvalidSignatureException / expired token: the stored
    /// credentials are not accepted.
    #[error("AWS rejected the credentials: {0}")]
    CredentialsRejected(String),
    /// ValidationException and the other caller-input errors (InvalidAliasName, Tag, Malformed...).
    #[error("AWS KMS rejected the request: {0}")]
    Validation(String),
    /// KMSInvalidStateException / DisabledException: not allowed in the key's current state.
    #[error("not allowed in the key's state: {0}")]
    InvalidState(String),
    /// LimitExceededException.
    #[error("AWS KMS limit exceeded: {0}")]
    LimitExceeded(String),
    /// ConflictException: another change of the key is under way (an automatic rotation).
    #[error("AWS KMS is changing the key now: {0}")]
    Conflict(String),
    /// Throttling or 5xx after the SDK's retries.
    #[error("AWS KMS unavailable: {0}")]
    Unavailable(String),
    /// The endpoint does not implement the operation (HTTP 501, UnsupportedOperationException):
    /// an emulator, or a partition without it.
    #[error("not implemented by this AWS KMS endpoint: {0}")]
    Unsupported(String),
    /// The endpoint could not be reached: refused, DNS, TLS (unknown CA, host mismatch).
    #[error("{0}")]
    Unreachable(String),
    /// Connect, attempt or operation timeout.
    #[error("{0}")]
    Timeout(String),
    /// The group's connection settings cannot make a client (bad PEM, bad URL).
    #[error("invalid connection settings: {0}")]
    Config(String),
    /// An answer Keyward does not expect (an unknown AWS error code, a field AWS documents as
    /// always there missing, a request the SDK cannot build): INTERNAL. The message is safe to
    /// show.
    #[error("AWS KMS error: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One page of a list call. `next_marker` is AWS's NextMarker when Truncated.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// An entry of ListKeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// An entry of ListAliases. `target_key_id` is absent for AWS-managed aliases with no key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    pub alias_name: String,
    pub target_key_id: Option<String>,
}

/// DescribeKey's KeyMetadata, with AWS's spellings kept as strings.
/// A field AWS did not send is `None`: unknown, not a default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyMetadata {
    pub key_id: String,
    pub arn: String,
    pub key_state: Option<String>,
    pub key_spec: Option<String>,
    pub key_usage: Option<String>,
    pub origin: Option<String>,
    pub key_manager: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub creation_date: Option<OffsetDateTime>,
    pub deletion_date: Option<OffsetDateTime>,
    pub valid_to: Option<OffsetDateTime>,
}

/// Input of CreateKey.
#[derive(Debug, Clone)]
pub struct CreateKeyInput {
    /// A spec AWS has ([`KeySpec::aws_name`] is `Some`); others are refused as Validation.
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// Origin EXTERNAL: the key starts PendingImport, waiting for imported material.
    pub external: bool,
    /// The key policy (JSON); `None`: AWS's default policy.
    pub policy: Option<String>,
}

/// GetKeyRotationStatus's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RotationStatus {
    pub enabled: bool,
    /// RotationPeriodInDays (90–2560) while enabled.
    pub period_days: Option<i32>,
    /// NextRotationDate while enabled.
    pub next_rotation: Option<OffsetDateTime>,
}

/// Input of ImportKeyMaterial. The token and the wrapped material are never logged.
pub struct ImportKeyMaterialInput<'a> {
    pub import_token: &'a [u8],
    /// The material wrapped under the import's wrapping key.
    pub encrypted_key_material: &'a [u8],
    /// `None`: KEY_MATERIAL_DOES_NOT_EXPIRE.
    pub valid_to: Option<OffsetDateTime>,
}

/// GetParametersForImport's answer. The import token is opaque and never logged.
pub struct ImportParameters {
    /// DER SubjectPublicKeyInfo of the RSA wrapping key.
    pub public_key_der: Vec<u8>,
    pub import_token: zeroize::Zeroizing<Vec<u8>>,
    /// When the token and wrapping key stop working (AWS: 24 hours).
    pub parameters_valid_to: Option<OffsetDateTime>,
}

impl std::fmt::Debug for ImportParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportParameters")
            .field("parameters_valid_to", &self.parameters_valid_to)
            .finish_non_exhaustive()
    }
}

/// AWS KMS operations Keyward uses, for one account and region.
/// AWS reference: https://docs.aws.amazon.com/kms/latest/APIReference/
#[async_trait]
pub trait Kms: Send + Sync {
    /// ListKeys, one page. `limit` 1–1000 (AWS may return more or fewer).
    async fn list_keys(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<KeyListEntry>>;
    /// ListAliases for the whole region, one page.
    async fn list_aliases(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<AliasEntry>>;
    /// DescribeKey.
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata>;
    /// ListResourceTags, one page.
    async fn list_resource_tags(&self, key_id: &str, marker: Option<String>) -> Result<Page<(String, String)>>;
    /// GetKeyPolicy with policy name `default`.
    async fn get_key_policy(&self, key_id: &str) -> Result<String>;
    /// CreateKey; returns the new key's metadata.
    async fn create_key(&self, input: CreateKeyInput) -> Result<KeyMetadata>;
    /// CreateAlias `alias_name` → `target_key_id`.
    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()>;
    /// DeleteAlias.
    async fn delete_alias(&self, alias_name: &str) -> Result<()>;
    /// ScheduleKeyDeletion; returns AWS's DeletionDate.
    async fn schedule_key_deletion(&self, key_id: &str, pending_window_days: i32) -> Result<Option<OffsetDateTime>>;
    /// CancelKeyDeletion (AWS leaves the key Disabled).
    async fn cancel_key_deletion(&self, key_id: &str) -> Result<()>;
    /// EnableKey.
    async fn enable_key(&self, key_id: &str) -> Result<()>;
    /// DisableKey.
    async fn disable_key(&self, key_id: &str) -> Result<()>;
    /// UpdateKeyDescription.
    async fn update_key_description(&self, key_id: &str, description: &str) -> Result<()>;
    /// TagResource (adds or overwrites).
    async fn tag_resource(&self, key_id: &str, tags: Vec<(String, String)>) -> Result<()>;
    /// UntagResource.
    async fn untag_resource(&self, key_id: &str, tag_keys: Vec<String>) -> Result<()>;
    /// PutKeyPolicy with policy name `default`, never bypassing the lockout safety check.
    async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<()>;
    /// GetParametersForImport with WrappingAlgorithm RSAES_OAEP_SHA_256, WrappingKeySpec RSA_2048.
    async fn get_parameters_for_import(&self, key_id: &str) -> Result<ImportParameters>;
    /// ImportKeyMaterial.
    async fn import_key_material(&self, key_id: &str, input: ImportKeyMaterialInput<'_>) -> Result<()>;
    /// DeleteImportedKeyMaterial (the key becomes PendingImport).
    async fn delete_imported_key_material(&self, key_id: &str) -> Result<()>;
    /// Encrypt; returns the ciphertext blob.
    async fn encrypt(&self, key_id: &str, plaintext: &[u8], sealing: &Sealing<'_>) -> Result<Vec<u8>>;
    /// Decrypt; `key_id` must be the key that encrypted it.
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        sealing: &Sealing<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>>;
    /// ReEncrypt: decrypts under `source` and encrypts under `destination` inside AWS.
    async fn re_encrypt(&self, ciphertext: &[u8], source: Sealed<'_>, destination: Sealed<'_>) -> Result<Vec<u8>>;
    /// GetPublicKey.
    async fn get_public_key(&self, key_id: &str) -> Result<PublicKeyInfo>;
    /// Sign; `message_type` RAW, DIGEST or EXTERNAL_MU, `algorithm` a SigningAlgorithmSpec.
    async fn sign(&self, key_id: &str, message: &[u8], message_type: &str, algorithm: &str) -> Result<Vec<u8>>;
    /// Verify: `Ok(false)` when AWS finds the signature invalid (KMSInvalidSignatureException).
    async fn verify(&self, key_id: &str, message: &[u8], signature: Signature<'_>) -> Result<bool>;
    /// GenerateMac with a MacAlgorithmSpec.
    async fn generate_mac(&self, key_id: &str, message: &[u8], algorithm: &str) -> Result<Vec<u8>>;
    /// VerifyMac: `Ok(false)` when AWS finds the MAC invalid (KMSInvalidMacException).
    async fn verify_mac(&self, key_id: &str, message: &[u8], mac: &[u8], algorithm: &str) -> Result<bool>;
    /// GenerateDataKey, or GenerateDataKeyWithoutPlaintext when `with_plaintext` is false.
    async fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKey>;
    /// GenerateDataKeyPair (or …WithoutPlaintext) of a DataKeyPairSpec.
    async fn generate_data_key_pair(
        &self,
        key_id: &str,
        pair_spec: &str,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKeyPair>;
    /// DeriveSharedSecret with a KeyAgreementAlgorithmSpec and the peer's DER public key.
    async fn derive_shared_secret(
        &self,
        key_id: &str,
        algorithm: &str,
        public_key: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>>;
    /// ListAliases filtered to one key (KeyId), one page.
    async fn list_key_aliases(&self, key_id: &str, marker: Option<String>) -> Result<Page<AliasEntry>>;
    /// UpdateAlias: points `alias_name` at `target_key_id` (atomic; same key type and usage).
    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()>;
    /// RotateKeyOnDemand: new key material behind the same key.
    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<()>;
    /// EnableKeyRotation with RotationPeriodInDays (`None`: AWS's default, 365).
    async fn enable_key_rotation(&self, key_id: &str, period_days: Option<i32>) -> Result<()>;
    /// DisableKeyRotation.
    async fn disable_key_rotation(&self, key_id: &str) -> Result<()>;
    /// GetKeyRotationStatus.
    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus>;
    /// ListKeyRotations: one page of the key's completed rotations (`limit` 1–1000).
    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: Option<String>,
    ) -> Result<Page<KeyRotation>>;
}

/// AWS's encryption context: string pairs bound to a ciphertext (sorted, so requests are
/// stable).
pub type EncryptionContext = std::collections::BTreeMap<String, String>;

/// How Encrypt/Decrypt choose and bind: the EncryptionAlgorithmSpec (`None`: AWS's default,
/// SYMMETRIC_DEFAULT) and the encryption context (symmetric keys only; empty: none sent).
#[derive(Debug, Clone, Copy)]
pub struct Sealing<'a> {
    pub algorithm: Option<&'a str>,
    pub context: &'a EncryptionContext,
}

/// One side of a ReEncrypt: the key id and how it seals.
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    pub key_id: &'a str,
    pub sealing: Sealing<'a>,
}

/// What Verify checks: the signature, its SigningAlgorithmSpec and MessageType.
#[derive(Debug, Clone, Copy)]
pub struct Signature<'a> {
    pub signature: &'a [u8],
    pub algorithm: &'a str,
    pub message_type: &'a str,
}

/// GetPublicKey's answer: the DER SubjectPublicKeyInfo and what AWS says the key does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub der: Vec<u8>,
    pub key_spec: Option<String>,
    pub key_usage: Option<String>,
    pub signing_algorithms: Vec<String>,
    pub encryption_algorithms: Vec<String>,
    pub key_agreement_algorithms: Vec<String>,
}

/// GenerateDataKey's size: a DataKeySpec (`AES_128`, `AES_256`) or NumberOfBytes (1–1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySize {
    Spec(&'static str),
    Bytes(i32),
}

/// A data key: its plaintext (`None` without plaintext) and its ciphertext under the KMS key.
pub struct DataKey {
    pub plaintext: Option<zeroize::Zeroizing<Vec<u8>>>,
    pub ciphertext: Vec<u8>,
}

/// A data key pair: the private key (DER PKCS#8) in plaintext (`None` without plaintext) and
/// encrypted under the KMS key, and the DER public key.
pub struct DataKeyPair {
    pub private_key_plaintext: Option<zeroize::Zeroizing<Vec<u8>>>,
    pub private_key_ciphertext: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// An entry of ListKeyRotations: one completed rotation of a key's material.
/// <https://docs.aws.amazon.com/kms/latest/APIReference/API_RotationsListEntry.html>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    pub rotation_date: Option<OffsetDateTime>,
    /// `AUTOMATIC` or `ON_DEMAND`, as AWS spells it.
    pub rotation_type: Option<String>,
    pub key_material_id: Option<String>,
}

/// Makes the [`Kms`] client of one AWS KMS group from its settings (and unsealed secrets).
/// The server and worker hold one; tests may wrap the real one with [`faults::FaultyConnector`].
pub trait Connector: Send + Sync {
    fn connect(&self, config: &AwsKmsConfig, purpose: Purpose) -> Result<Arc<dyn Kms>>;
}

/// What the client is for; picks timeouts and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// TestConnection: short timeouts, no retries, so a person gets an answer fast.
    Probe,
    /// Everything else: the configured timeouts and retries.
    Work,
}

//! Keys (Keyward keys and virtual keys), their specs, operations, states, and sync runs.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{GroupId, KeyId, SyncRunId};

/// Key type and size, with AWS KMS's names where AWS has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySpec {
    /// AES-256-GCM in AWS KMS.
    SymmetricDefault,
    /// AES-256 held by Keyward.
    Aes256,
    /// AES-128 held by Keyward (stays in REGULAR groups: AWS imports 256-bit material only).
    Aes128,
    /// AES-192 held by Keyward (likewise).
    Aes192,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    EccSecgP256k1,
    /// Ed25519 (signing only).
    EccNistEdwards25519,
    Hmac224,
    Hmac256,
    Hmac384,
    Hmac512,
    /// ML-DSA (FIPS 204) signing keys.
    MlDsa44,
    MlDsa65,
    MlDsa87,
    /// ML-KEM (FIPS 203) key encapsulation keys.
    MlKem512,
    MlKem768,
    MlKem1024,
    /// SM2 (AWS's China Regions only).
    Sm2,
    /// An AWS spec Keyward does not know yet; the AWS name is kept (`aws.key_spec`).
    Other,
}

impl KeySpec {
    /// Every spec AWS KMS has (aws-sdk-kms 1.129's `KeySpec`; AWS's key spec reference:
    /// https://docs.aws.amazon.com/kms/latest/developerguide/symm-asymm-choose-key-spec.html).
    pub const AWS: [KeySpec; 20] = [
        Self::SymmetricDefault,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EccNistP256,
        Self::EccNistP384,
        Self::EccNistP521,
        Self::EccSecgP256k1,
        Self::EccNistEdwards25519,
        Self::Hmac224,
        Self::Hmac256,
        Self::Hmac384,
        Self::Hmac512,
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
        Self::MlKem512,
        Self::MlKem768,
        Self::MlKem1024,
        Self::Sm2,
    ];

    /// AWS's KeySpec string; `None` for specs AWS does not have.
    pub fn aws_name(self) -> Option<&'static str> {
        Some(match self {
            Self::SymmetricDefault => "SYMMETRIC_DEFAULT",
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
            Self::EccNistP256 => "ECC_NIST_P256",
            Self::EccNistP384 => "ECC_NIST_P384",
            Self::EccNistP521 => "ECC_NIST_P521",
            Self::EccSecgP256k1 => "ECC_SECG_P256K1",
            Self::EccNistEdwards25519 => "ECC_NIST_EDWARDS25519",
            Self::Hmac224 => "HMAC_224",
            Self::Hmac256 => "HMAC_256",
            Self::Hmac384 => "HMAC_384",
            Self::Hmac512 => "HMAC_512",
            Self::MlDsa44 => "ML_DSA_44",
            Self::MlDsa65 => "ML_DSA_65",
            Self::MlDsa87 => "ML_DSA_87",
            Self::MlKem512 => "ML_KEM_512",
            Self::MlKem768 => "ML_KEM_768",
            Self::MlKem1024 => "ML_KEM_1024",
            Self::Sm2 => "SM2",
            Self::Aes128 | Self::Aes192 | Self::Aes256 | Self::Other => return None,
        })
    }

    /// Whether keys of this spec are key pairs (RSA, ECC, Ed25519, ML-DSA, ML-KEM, SM2).
    pub fn is_asymmetric(self) -> bool {
        !matches!(
            self,
            Self::SymmetricDefault
                | Self::Aes128
                | Self::Aes192
                | Self::Aes256
                | Self::Hmac224
                | Self::Hmac256
                | Self::Hmac384
                | Self::Hmac512
                | Self::Other
        )
    }

    /// The material length of a Keyward AES key in bytes; `None` for other specs.
    pub fn aes_bytes(self) -> Option<usize> {
        match self {
            Self::Aes128 => Some(16),
            Self::Aes192 => Some(24),
            Self::Aes256 => Some(32),
            _ => None,
        }
    }

    /// The spec for its API name (`AES_128`, `SYMMETRIC_DEFAULT`, `OTHER`, ...).
    pub fn from_api_name(s: &str) -> Option<Self> {
        match s {
            "AES_128" => Some(Self::Aes128),
            "AES_192" => Some(Self::Aes192),
            "AES_256" => Some(Self::Aes256),
            "OTHER" => Some(Self::Other),
            other => Some(Self::from_aws(other)).filter(|k| *k != Self::Other),
        }
    }

    /// The spec for AWS's KeySpec string (unknown names: `Other`).
    pub fn from_aws(s: &str) -> Self {
        Self::AWS.into_iter().find(|k| k.aws_name() == Some(s)).unwrap_or(Self::Other)
    }

    /// Names as in the API (`SYMMETRIC_DEFAULT`, `AES_256`, ...).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Aes128 => "AES_128",
            Self::Aes192 => "AES_192",
            Self::Aes256 => "AES_256",
            Self::Other => "OTHER",
            other => other.aws_name().unwrap_or("OTHER"),
        }
    }

    /// The KeyUsage values AWS allows for a key of this spec (CreateKey's KeyUsage:
    /// https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html#KMS-CreateKey-request-KeyUsage),
    /// the default first when there is one. Empty: AWS has no such spec.
    pub fn aws_usages(self) -> &'static [KeyUsage] {
        use KeyUsage::*;
        match self {
            Self::SymmetricDefault => &[EncryptDecrypt],
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &[EncryptDecrypt, SignVerify],
            Self::EccNistP256 | Self::EccNistP384 | Self::EccNistP521 => &[SignVerify, KeyAgreement],
            Self::EccSecgP256k1 | Self::EccNistEdwards25519 | Self::MlDsa44 | Self::MlDsa65 | Self::MlDsa87 => {
                &[SignVerify]
            }
            Self::Hmac224 | Self::Hmac256 | Self::Hmac384 | Self::Hmac512 => &[GenerateVerifyMac],
            Self::MlKem512 | Self::MlKem768 | Self::MlKem1024 => &[EncapsulateDecapsulate],
            Self::Sm2 => &[EncryptDecrypt, SignVerify, KeyAgreement],
            Self::Aes128 | Self::Aes192 | Self::Aes256 | Self::Other => &[],
        }
    }

    /// Where AWS offers the spec: SM2 only in the China Regions (`cn-*`), ML-KEM everywhere
    /// but there (AWS's key spec reference). The message says why not.
    pub fn offered_in(self, region: &str) -> Result<(), String> {
        let china = region.starts_with("cn-");
        match self {
            Self::Sm2 if !china => Err(format!("AWS offers SM2 keys only in its China Regions, not in {region}")),
            Self::MlKem512 | Self::MlKem768 | Self::MlKem1024 if china => {
                Err(format!("AWS does not offer ML-KEM keys in its China Regions ({region})"))
            }
            _ => Ok(()),
        }
    }

    /// The AWS KeyUsage a key of this spec gets for `ops`, or why none fits: the one usage
    /// `ops` name (EXPORT names none), else the spec's default — SYMMETRIC_DEFAULT
    /// ENCRYPT_DECRYPT, ECC and ML-DSA SIGN_VERIFY, HMAC GENERATE_VERIFY_MAC, ML-KEM
    /// ENCAPSULATE_DECAPSULATE; RSA and SM2 need `ops` to choose.
    pub fn aws_key_usage(self, ops: &[KeyOp]) -> Result<KeyUsage, String> {
        let name = self.api_name();
        let allowed = self.aws_usages();
        if allowed.is_empty() {
            return Err(format!("{name} cannot be generated in AWS KMS"));
        }
        let mut asked: Vec<KeyUsage> = ops.iter().filter_map(|o| o.usage()).collect();
        asked.dedup();
        asked.sort_by_key(|u| u.aws_name());
        asked.dedup();
        let names = |us: &[KeyUsage]| us.iter().map(|u| u.aws_name()).collect::<Vec<_>>().join(" or ");
        match asked.as_slice() {
            [] if allowed.len() == 1 || !matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::Sm2) => {
                Ok(allowed[0])
            }
            [] => Err(format!(
                "{name} needs key_ops naming its use: {}",
                allowed.iter().map(|u| u.ops_phrase()).collect::<Vec<_>>().join(", or ")
            )),
            [u] if allowed.contains(u) => Ok(*u),
            [u] => {
                Err(format!("{name} keys cannot {} in AWS KMS (their KeyUsage is {})", u.ops_phrase(), names(allowed)))
            }
            _ => Err(format!(
                "an AWS key has one KeyUsage, these key_ops need {}: ENCRYPT/DECRYPT/WRAP_KEY/UNWRAP_KEY, SIGN/VERIFY, GENERATE_MAC/VERIFY_MAC, DERIVE_SHARED_SECRET and ENCAPSULATE/DECAPSULATE do not mix",
                names(&asked)
            )),
        }
    }
}

/// What Keyward lets a key be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyOp {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
    Export,
    GenerateMac,
    VerifyMac,
    DeriveSharedSecret,
    Encapsulate,
    Decapsulate,
}

impl KeyOp {
    pub const ALL: [KeyOp; 12] = [
        Self::Encrypt,
        Self::Decrypt,
        Self::WrapKey,
        Self::UnwrapKey,
        Self::Sign,
        Self::Verify,
        Self::Export,
        Self::GenerateMac,
        Self::VerifyMac,
        Self::DeriveSharedSecret,
        Self::Encapsulate,
        Self::Decapsulate,
    ];

    /// The AWS KeyUsage the operation needs (EXPORT: none, it is Keyward's).
    pub fn usage(self) -> Option<KeyUsage> {
        Some(match self {
            Self::Encrypt | Self::Decrypt | Self::WrapKey | Self::UnwrapKey => KeyUsage::EncryptDecrypt,
            Self::Sign | Self::Verify => KeyUsage::SignVerify,
            Self::GenerateMac | Self::VerifyMac => KeyUsage::GenerateVerifyMac,
            Self::DeriveSharedSecret => KeyUsage::KeyAgreement,
            Self::Encapsulate | Self::Decapsulate => KeyUsage::EncapsulateDecapsulate,
            Self::Export => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Encrypt => "ENCRYPT",
            Self::Decrypt => "DECRYPT",
            Self::WrapKey => "WRAP_KEY",
            Self::UnwrapKey => "UNWRAP_KEY",
            Self::Sign => "SIGN",
            Self::Verify => "VERIFY",
            Self::Export => "EXPORT",
            Self::GenerateMac => "GENERATE_MAC",
            Self::VerifyMac => "VERIFY_MAC",
            Self::DeriveSharedSecret => "DERIVE_SHARED_SECRET",
            Self::Encapsulate => "ENCAPSULATE",
            Self::Decapsulate => "DECAPSULATE",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }

    /// The operations an AWS key of `usage` allows (what sync records for keys it finds).
    pub fn for_aws_usage(usage: Option<&str>) -> Vec<KeyOp> {
        let Some(usage) = usage.and_then(KeyUsage::from_aws) else { return Vec::new() };
        Self::ALL.into_iter().filter(|o| o.usage() == Some(usage)).collect()
    }
}

/// AWS KeyUsage (aws-sdk-kms 1.129's `KeyUsageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    EncryptDecrypt,
    SignVerify,
    GenerateVerifyMac,
    KeyAgreement,
    EncapsulateDecapsulate,
}

impl KeyUsage {
    pub const ALL: [KeyUsage; 5] = [
        Self::EncryptDecrypt,
        Self::SignVerify,
        Self::GenerateVerifyMac,
        Self::KeyAgreement,
        Self::EncapsulateDecapsulate,
    ];

    pub fn aws_name(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => "ENCRYPT_DECRYPT",
            Self::SignVerify => "SIGN_VERIFY",
            Self::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
            Self::KeyAgreement => "KEY_AGREEMENT",
            Self::EncapsulateDecapsulate => "ENCAPSULATE_DECAPSULATE",
        }
    }

    pub fn from_aws(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.aws_name() == s)
    }

    /// The key_ops that ask for it, in words.
    fn ops_phrase(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => "ENCRYPT, DECRYPT, WRAP_KEY or UNWRAP_KEY",
            Self::SignVerify => "SIGN or VERIFY",
            Self::GenerateVerifyMac => "GENERATE_MAC or VERIFY_MAC",
            Self::KeyAgreement => "DERIVE_SHARED_SECRET",
            Self::EncapsulateDecapsulate => "ENCAPSULATE or DECAPSULATE",
        }
    }
}

/// Keyward's key state. A key pending deletion carries its deletion time (AWS's DeletionDate;
/// `None` only when AWS reported none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion {
        deletion_time: Option<OffsetDateTime>,
    },
    PendingImport,
    /// Gone from AWS; the virtual key may now be deleted.
    Deleted,
    Unavailable,
}

impl KeyState {
    /// Every state once (`PendingDeletion` without a time), for tables and name lookups.
    pub const ALL: [KeyState; 6] = [
        Self::Enabled,
        Self::Disabled,
        Self::PendingDeletion { deletion_time: None },
        Self::PendingImport,
        Self::Deleted,
        Self::Unavailable,
    ];

    /// From AWS's KeyState and DeletionDate
    /// (https://docs.aws.amazon.com/kms/latest/developerguide/key-state.html).
    /// `Creating`/`Updating` count as the enabled flag says; unknown states are `Unavailable`.
    pub fn from_aws(state: Option<&str>, enabled: bool, deletion_date: Option<OffsetDateTime>) -> Self {
        match state {
            Some("Enabled") => Self::Enabled,
            Some("Disabled") => Self::Disabled,
            Some("PendingDeletion" | "PendingReplicaDeletion") => {
                Self::PendingDeletion { deletion_time: deletion_date }
            }
            Some("PendingImport") => Self::PendingImport,
            Some("Creating" | "Updating") if enabled => Self::Enabled,
            Some("Creating" | "Updating") => Self::Disabled,
            _ => Self::Unavailable,
        }
    }

    /// AWS's KeyState string for this state; `None` where AWS has no such key (DELETED) or
    /// its state is not one Keyward sets (UNAVAILABLE).
    pub fn aws_name(self) -> Option<&'static str> {
        match self {
            Self::Enabled => Some("Enabled"),
            Self::Disabled => Some("Disabled"),
            Self::PendingDeletion { .. } => Some("PendingDeletion"),
            Self::PendingImport => Some("PendingImport"),
            Self::Deleted | Self::Unavailable => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Disabled => "DISABLED",
            Self::PendingDeletion { .. } => "PENDING_DELETION",
            Self::PendingImport => "PENDING_IMPORT",
            Self::Deleted => "DELETED",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    /// The state named `s` (`PENDING_DELETION` without a time: the caller adds it).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn is_pending_deletion(self) -> bool {
        matches!(self, Self::PendingDeletion { .. })
    }

    /// When AWS deletes the key, while it is pending deletion.
    pub fn deletion_time(self) -> Option<OffsetDateTime> {
        match self {
            Self::PendingDeletion { deletion_time } => deletion_time,
            _ => None,
        }
    }
}

/// Where a key's material came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// Generated by AWS KMS.
    AwsNative,
    /// From a Keyward key (copy / BYOK).
    Keyward,
    /// Uploaded by a user.
    Imported,
}

impl KeySource {
    /// From AWS's Origin: EXTERNAL means imported material, everything else AWS made.
    pub fn from_aws_origin(origin: Option<&str>) -> Self {
        if origin == Some("EXTERNAL") { Self::Imported } else { Self::AwsNative }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::AwsNative => "AWS_NATIVE",
            Self::Keyward => "KEYWARD",
            Self::Imported => "IMPORTED",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Self::AwsNative, Self::Keyward, Self::Imported].into_iter().find(|k| k.name() == s)
    }
}

/// What AWS KMS says about the key behind a virtual key. AWS spellings kept as strings;
/// `aws_key_state` and `enabled` are what AWS last reported, or what Keyward's own change made
/// them ([`Key::set_state`]); the deletion time is part of [`KeyState::PendingDeletion`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsKeyDetails {
    pub key_arn: String,
    pub aws_key_id: String,
    /// Sorted full alias names.
    pub aliases: Vec<String>,
    /// The aliases Keyward itself put on the key (a subset of `aliases`); others are removed
    /// only when a request names them.
    pub managed_aliases: Vec<String>,
    /// JSON text of policy `default`; `None` when not read.
    pub key_policy: Option<String>,
    pub aws_key_state: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub key_usage: Option<String>,
    pub key_manager: Option<String>,
    pub enabled: bool,
    pub creation_time: Option<OffsetDateTime>,
    pub valid_to: Option<OffsetDateTime>,
    /// AWS's automatic rotation as last read (GetKeyRotationStatus); `None`: not read (AWS
    /// rotates only symmetric keys whose material it generated).
    pub rotation: Option<AwsRotation>,
}

/// AWS's automatic rotation of a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsRotation {
    pub enabled: bool,
    /// RotationPeriodInDays (90–2560) while enabled.
    pub period_days: Option<i32>,
    /// NextRotationDate while enabled.
    pub next_rotation_time: Option<OffsetDateTime>,
}

impl AwsKeyDetails {
    /// Whether AWS can rotate the key itself (EnableKeyRotation, RotateKeyOnDemand): a
    /// symmetric encryption key whose material AWS generated
    /// (https://docs.aws.amazon.com/kms/latest/developerguide/rotating-keys.html).
    pub fn aws_can_rotate(&self) -> bool {
        self.key_spec.as_deref() == Some("SYMMETRIC_DEFAULT") && self.origin.as_deref() == Some("AWS_KMS")
    }
}

impl AwsKeyDetails {
    /// AWS-managed keys (KeyManager AWS) are kept read-only.
    pub fn is_aws_managed(&self) -> bool {
        self.key_manager.as_deref() == Some("AWS")
    }
}

/// How two keys are related.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyLinkKind {
    /// This key's material was copied from the other key.
    CopiedFrom,
    /// The other key holds a copy of this key's material.
    CopiedTo,
    RotatedFrom,
    RotatedTo,
}

impl KeyLinkKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::CopiedFrom => "COPIED_FROM",
            Self::CopiedTo => "COPIED_TO",
            Self::RotatedFrom => "ROTATED_FROM",
            Self::RotatedTo => "ROTATED_TO",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Self::CopiedFrom, Self::CopiedTo, Self::RotatedFrom, Self::RotatedTo].into_iter().find(|k| k.name() == s)
    }
}

/// A link from a key to another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLink {
    pub kind: KeyLinkKind,
    pub group_id: GroupId,
    pub key_id: KeyId,
    pub actor: String,
    pub create_time: OffsetDateTime,
}

/// A key: a Keyward key, or a virtual key pointing at AWS KMS (`aws` is `Some`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub id: KeyId,
    pub group_id: GroupId,
    pub display_name: String,
    pub description: String,
    pub key_spec: KeySpec,
    pub key_ops: Vec<KeyOp>,
    pub state: KeyState,
    pub source: KeySource,
    pub tags: BTreeMap<String, String>,
    pub aws: Option<AwsKeyDetails>,
    /// Links to copies and sources (loaded with the key; not stored in its row).
    pub links: Vec<KeyLink>,
    /// Rotation on schedule, run by the worker.
    pub rotation_policy: Option<super::RotationPolicy>,
    /// A principal, or `sync`.
    pub created_by: String,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub etag: String,
}

impl Key {
    /// Records `state` as the key's, and for a virtual key AWS's state string and enabled flag
    /// derived from it (what AWS holds after Keyward's own change).
    pub fn set_state(&mut self, state: KeyState) {
        self.state = state;
        if let Some(a) = self.aws.as_mut() {
            a.aws_key_state = state.aws_name().map(str::to_owned);
            a.enabled = state == KeyState::Enabled;
        }
    }

    /// AWS scheduled the key for deletion: PENDING_DELETION with AWS's deletion date, or
    /// `fallback` when AWS gave none.
    pub fn mark_pending_deletion(&mut self, deletion: Option<OffsetDateTime>, fallback: OffsetDateTime) {
        self.set_state(KeyState::PendingDeletion { deletion_time: Some(deletion.unwrap_or(fallback)) });
    }

    /// Renames a key whose creation was undone `<name>~abandoned-<id>`, freeing its name.
    pub fn rename_abandoned(&mut self) {
        let short: String = self.id.to_string().chars().take(8).collect();
        self.display_name = format!("{}~abandoned-{short}", self.display_name);
    }

    /// The resource name, `groups/{group_id}/keys/{key_id}`.
    pub fn name(&self) -> String {
        format!("groups/{}/keys/{}", self.group_id, self.id)
    }

    pub fn is_virtual(&self) -> bool {
        self.aws.is_some()
    }

    /// False for AWS-managed keys, which Keyward never changes.
    pub fn is_mutable(&self) -> bool {
        !self.aws.as_ref().is_some_and(AwsKeyDetails::is_aws_managed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRunState {
    Running,
    Succeeded,
    Failed,
}

impl SyncRunState {
    /// The stored (and metrics) name: `RUNNING`, `SUCCEEDED`, `FAILED`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTrigger {
    Manual,
    Scheduled,
}

/// A problem with one key during a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWarning {
    pub aws_key: String,
    pub message: String,
}

/// One sync of an AWS KMS group with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: SyncRunId,
    pub group_id: GroupId,
    pub state: SyncRunState,
    pub trigger: SyncTrigger,
    pub actor: String,
    pub listed: i64,
    pub added: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub warnings: Vec<SyncWarning>,
    pub error: Option<String>,
    pub start_time: OffsetDateTime,
    pub end_time: Option<OffsetDateTime>,
    /// What changed in AWS behind Keyward's back (set when the run ends).
    pub drift: super::DriftSummary,
}

impl SyncRun {
    /// A new run of `group_id`, RUNNING since `now`, with no counts yet.
    pub fn started(group_id: GroupId, trigger: SyncTrigger, actor: &str, now: OffsetDateTime) -> Self {
        Self {
            id: SyncRunId::new(),
            group_id,
            state: SyncRunState::Running,
            trigger,
            actor: actor.to_owned(),
            listed: 0,
            added: 0,
            updated: 0,
            unchanged: 0,
            failed: 0,
            warnings: Vec::new(),
            error: None,
            start_time: now,
            end_time: None,
            drift: Default::default(),
        }
    }

    /// Listed keys handled so far: each listed key adds one to exactly one of added, updated,
    /// unchanged and failed before the keys gone from AWS are counted (as updated).
    pub fn done(&self) -> i64 {
        (self.added + self.updated + self.unchanged + self.failed).min(self.listed)
    }

    /// While RUNNING with some keys handled: the time left at the pace since `start_time`.
    pub fn estimated_time_remaining(&self, now: OffsetDateTime) -> Option<time::Duration> {
        let done = self.done();
        if self.state != SyncRunState::Running || done == 0 {
            return None;
        }
        let per_key = (now - self.start_time).max(time::Duration::ZERO) / done as f64;
        Some(per_key * (self.listed - done) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_usage_rules() {
        use KeyOp::*;
        assert_eq!(KeySpec::SymmetricDefault.aws_key_usage(&[Encrypt, Decrypt]), Ok(KeyUsage::EncryptDecrypt));
        assert_eq!(KeySpec::SymmetricDefault.aws_key_usage(&[]), Ok(KeyUsage::EncryptDecrypt));
        assert!(KeySpec::SymmetricDefault.aws_key_usage(&[Sign]).is_err());
        assert!(KeySpec::EccNistP256.aws_key_usage(&[Encrypt]).is_err());
        assert_eq!(KeySpec::EccSecgP256k1.aws_key_usage(&[Sign, Verify]), Ok(KeyUsage::SignVerify));
        assert_eq!(KeySpec::EccNistP521.aws_key_usage(&[]), Ok(KeyUsage::SignVerify));
        assert_eq!(KeySpec::Rsa3072.aws_key_usage(&[Encrypt]), Ok(KeyUsage::EncryptDecrypt));
        assert_eq!(KeySpec::Rsa4096.aws_key_usage(&[Verify]), Ok(KeyUsage::SignVerify));
        assert!(KeySpec::Rsa2048.aws_key_usage(&[]).is_err());
        assert!(KeySpec::Rsa2048.aws_key_usage(&[Encrypt, Sign]).is_err());
        assert!(KeySpec::Aes256.aws_key_usage(&[Encrypt]).is_err());
        // The specs AWS added: each with its usages only.
        assert_eq!(KeySpec::Hmac384.aws_key_usage(&[]), Ok(KeyUsage::GenerateVerifyMac));
        assert_eq!(KeySpec::Hmac224.aws_key_usage(&[GenerateMac, VerifyMac]), Ok(KeyUsage::GenerateVerifyMac));
        assert!(KeySpec::Hmac256.aws_key_usage(&[Encrypt]).is_err());
        assert_eq!(KeySpec::EccNistP384.aws_key_usage(&[DeriveSharedSecret]), Ok(KeyUsage::KeyAgreement));
        assert!(KeySpec::EccSecgP256k1.aws_key_usage(&[DeriveSharedSecret]).is_err());
        assert!(KeySpec::EccNistEdwards25519.aws_key_usage(&[DeriveSharedSecret]).is_err());
        assert_eq!(KeySpec::EccNistEdwards25519.aws_key_usage(&[Sign]), Ok(KeyUsage::SignVerify));
        assert_eq!(KeySpec::MlDsa65.aws_key_usage(&[]), Ok(KeyUsage::SignVerify));
        assert_eq!(KeySpec::MlKem768.aws_key_usage(&[Decapsulate]), Ok(KeyUsage::EncapsulateDecapsulate));
        assert!(KeySpec::MlKem512.aws_key_usage(&[Sign]).is_err());
        assert!(KeySpec::Sm2.aws_key_usage(&[]).is_err());
        assert_eq!(KeySpec::Sm2.aws_key_usage(&[DeriveSharedSecret]), Ok(KeyUsage::KeyAgreement));
        assert!(KeySpec::Rsa2048.aws_key_usage(&[GenerateMac]).is_err());
        assert!(KeySpec::EccNistP256.aws_key_usage(&[Sign, DeriveSharedSecret]).is_err());
        assert_eq!(KeySpec::Rsa2048.aws_key_usage(&[Encrypt, Export]), Ok(KeyUsage::EncryptDecrypt));
        assert!(KeySpec::Sm2.offered_in("eu-west-1").is_err());
        assert!(KeySpec::Sm2.offered_in("cn-north-1").is_ok());
        assert!(KeySpec::MlKem1024.offered_in("cn-northwest-1").is_err());
        for op in KeyOp::ALL {
            assert_eq!(KeyOp::from_name(op.name()), Some(op));
        }
        for u in KeyUsage::ALL {
            assert!(KeyOp::for_aws_usage(Some(u.aws_name())).iter().all(|o| o.usage() == Some(u)));
        }
    }

    #[test]
    fn aws_names_round_trip() {
        for spec in KeySpec::AWS {
            assert_eq!(KeySpec::from_aws(spec.aws_name().unwrap_or_default()), spec);
        }
        assert_eq!(KeySpec::from_aws("HMAC_256"), KeySpec::Hmac256);
        assert_eq!(KeySpec::from_aws("A_FUTURE_SPEC"), KeySpec::Other);
    }
}

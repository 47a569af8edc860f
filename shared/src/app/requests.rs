//! What the use cases take, once the edge has parsed a request: proven values (aliases, tags,
//! regions, endpoint URLs already checked). Any use-case module may import these.

use std::time::Duration;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::keys::MaterialFormat;
use crate::domain::{
    Alias, AwsKmsConfig, AwsKmsConfigPatch, CryptoPolicy, GroupId, GroupKind, KeyId, KeyOp, KeySpec, OldKeyAction,
    Tags, names_set,
};

pub use crate::domain::RotationSchedule;

/// What CreateGroup carries once parsed.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub display_name: String,
    pub description: String,
    pub kind: GroupKind,
    pub aws_kms: Option<AwsKmsConfig>,
    pub crypto_policy: CryptoPolicy,
    pub sync_interval: Option<Duration>,
    pub audit_key_use: bool,
}

/// The fields an UpdateGroup changes (`None`: untouched; `Some(None)`: cleared).
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub aws_kms: AwsKmsConfigPatch,
    pub crypto_policy: Option<CryptoPolicy>,
    pub sync_interval: Option<Option<Duration>>,
    pub audit_key_use: Option<bool>,
    /// When set, must equal the stored etag (else ABORTED).
    pub etag: Option<String>,
}

impl GroupPatch {
    /// The fields changed, for the audit log (names only, never values).
    pub(crate) fn describe(&self) -> String {
        let mut changed =
            names_set(&[("display_name", self.display_name.is_some()), ("description", self.description.is_some())]);
        changed.extend(self.aws_kms.changed());
        changed.extend(names_set(&[
            ("crypto_policy", self.crypto_policy.is_some()),
            ("sync_schedule", self.sync_interval.is_some()),
            ("audit_key_use", self.audit_key_use.is_some()),
        ]));
        format!("changed {}", changed.join(", "))
    }
}

/// What CreateKey carries once parsed (aliases and tags already proven valid).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub display_name: String,
    pub description: String,
    pub key_spec: KeySpec,
    pub key_ops: Vec<KeyOp>,
    pub tags: Tags,
    pub aliases: Vec<Alias>,
    /// The AWS key policy (JSON); `None`: AWS's default policy. AWS keys only.
    pub key_policy: Option<String>,
    /// Rotation on schedule (AWS-native virtual keys).
    pub rotation_schedule: Option<RotationSchedule>,
}

/// The Keyward key a rotation onto Keyward-owned material takes its material from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToSource {
    /// An existing AES-256 Keyward key with EXPORT.
    Key(GroupId, KeyId),
    /// A new AES-256 Keyward key, made in this REGULAR group.
    NewKeyIn(GroupId),
}

/// The fields an UpdateKey changes (`None`: untouched).
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Tags>,
    pub aliases: Option<Vec<Alias>>,
    /// Aliases Keyward did not put on the key that this request may remove.
    pub remove_aliases: Vec<Alias>,
    pub key_policy: Option<String>,
    pub enabled: Option<bool>,
    pub key_ops: Option<Vec<KeyOp>>,
    /// Rotation on schedule: `Some(None)` removes the policy.
    pub rotation_schedule: Option<Option<RotationSchedule>>,
    /// AWS's automatic rotation: `Some(None)` off (DisableKeyRotation); `Some(Some(days))` on
    /// (EnableKeyRotation, RotationPeriodInDays 90–2560, 0 = AWS's default of 365).
    pub rotation: Option<Option<i32>>,
    /// When set, must equal the stored etag (else ABORTED).
    pub etag: Option<String>,
}

impl KeyPatch {
    /// The fields changed, for the audit log (names only, never values).
    pub(crate) fn describe(&self) -> String {
        let changed = names_set(&[
            ("display_name", self.display_name.is_some()),
            ("description", self.description.is_some()),
            ("tags", self.tags.is_some()),
            ("aws.aliases", self.aliases.is_some()),
            ("aws.key_policy", self.key_policy.is_some()),
            ("enabled", self.enabled.is_some()),
            ("key_ops", self.key_ops.is_some()),
            ("aws.rotation", self.rotation.is_some()),
            ("rotation_policy", self.rotation_schedule.is_some()),
        ]);
        format!("changed {}", changed.join(", "))
    }
}

/// What ImportKey carries once parsed.
pub struct ImportRequest {
    /// display_name, description, key_ops, tags, aliases; key_spec: AES_256 (REGULAR) or
    /// SYMMETRIC_DEFAULT (AWS_KMS).
    pub key: NewKey,
    pub material: Zeroizing<Vec<u8>>,
    pub format: MaterialFormat,
    pub wrapping_key: Option<(GroupId, KeyId)>,
    pub valid_to: Option<OffsetDateTime>,
}

/// What CopyKey carries once parsed.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub source: (GroupId, KeyId),
    pub target_group: GroupId,
    /// Empty: `<source>_copy<N>`.
    pub display_name: String,
    pub aliases: Vec<crate::domain::Alias>,
    /// Empty: ENCRYPT and DECRYPT.
    pub key_ops: Vec<KeyOp>,
}

/// What RotateKey carries once parsed.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    /// Answer the plan; change nothing.
    pub validate_only: bool,
    /// AWS RotateKeyOnDemand instead of a new key.
    pub in_place: bool,
    pub old_key_action: OldKeyAction,
    /// Rotate onto Keyward-owned material (the new AWS key is EXTERNAL with it).
    pub to_source: Option<ToSource>,
    /// Keyward keys: which linked copies follow (`None`: none).
    pub rotate_linked: Option<LinkedCopies>,
    /// Keyward keys: the new key's spec (AES_128/192/256); `None`: the old key's.
    pub key_spec: Option<KeySpec>,
}

/// The linked copies that follow a Keyward key's rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkedCopies {
    All,
    /// Only these copies (each must be one of the key's).
    Only(Vec<(GroupId, KeyId)>),
}

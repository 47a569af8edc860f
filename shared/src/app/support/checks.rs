//! Checks of requests that several use cases make: the fields of a new key, what a Keyward key
//! may be, crypto policies, a free display name, and the refusals of the lifecycle.

use std::collections::BTreeSet;

use crate::app::Keyward;
use crate::app::requests::{NewKey, RotationSchedule};
use crate::domain::{
    Alias, CryptoPolicy, Event, FieldViolation, GroupId, InvalidTransition, Key, KeyLinkKind, KeyOp, KeySource,
    KeySpec, OldKeyAction, RotationEvery, RotationPolicy, transition, validate_display_name,
};
use crate::{Error, Precondition, Result};

/// Display names of keys: 1–256 characters, unique in the group.
pub(crate) const KEY_NAME_MAX: usize = 256;

/// AWS CreateKey/UpdateKeyDescription: Description is 0–8192 characters.
pub(crate) const DESCRIPTION_MAX: usize = 8192;

/// AWS PutKeyPolicy: at most 32 KiB.
pub(crate) const POLICY_MAX: usize = 32 * 1024;

/// The violations of a key's display name (when given), description (when given) and alias
/// list (when given): what CreateKey, ImportKey, CopyKey and UpdateKey all check.
pub(crate) fn key_fields(
    display_name: Option<&str>,
    description: Option<&str>,
    aliases: Option<&[Alias]>,
) -> Vec<FieldViolation> {
    let mut bad = Vec::new();
    if let Some(n) = display_name
        && let Err(e) = validate_display_name(n, KEY_NAME_MAX)
    {
        bad.push(FieldViolation::new("key.display_name", e));
    }
    if description.is_some_and(|d| d.chars().count() > DESCRIPTION_MAX) {
        bad.push(FieldViolation::new("key.description", format!("at most {DESCRIPTION_MAX} characters (AWS limit)")));
    }
    let mut seen = BTreeSet::new();
    for a in aliases.unwrap_or_default() {
        if !seen.insert(a) {
            bad.push(FieldViolation::new("key.aws.aliases", format!("{} is listed twice", a.as_str())));
        }
    }
    bad
}

/// A rotation schedule for a key of `spec` that is (`native`) or is not an AWS-native virtual
/// key: what the worker could run on it.
pub(crate) fn rotation_schedule(s: &RotationSchedule, spec: KeySpec, rotates: Rotates) -> Vec<FieldViolation> {
    let field = "key.rotation_policy";
    let mut bad = Vec::new();
    if let RotationEvery::Interval(d) = s.every
        && !(RotationPolicy::MIN_INTERVAL..=RotationPolicy::MAX_INTERVAL).contains(&d)
    {
        bad.push(FieldViolation::new(format!("{field}.interval"), "at least 1 day (86400s), at most 3650 days"));
    }
    match rotates {
        Rotates::AwsNative => {}
        Rotates::KeywardKey if s.in_place => bad.push(FieldViolation::new(
            format!("{field}.in_place"),
            "a Keyward key rotates to a new Keyward key, not in place",
        )),
        Rotates::KeywardKey => {}
        Rotates::No => bad.push(FieldViolation::new(
            field,
            "only AWS-native virtual keys and Keyward keys rotate on schedule (a key with imported or copied material rotates with RotateKey to_source, or with its source)",
        )),
    }
    if s.rotate_linked && rotates != Rotates::KeywardKey {
        bad.push(FieldViolation::new(
            format!("{field}.rotate_linked"),
            "only a Keyward key (REGULAR group) has linked copies that follow its rotation",
        ));
    }
    if s.in_place && spec != KeySpec::SymmetricDefault {
        bad.push(FieldViolation::new(
            format!("{field}.in_place"),
            "AWS rotates in place only SYMMETRIC_DEFAULT keys whose material AWS generated",
        ));
    }
    match s.old_key_action {
        OldKeyAction::KeepEnabled => {}
        _ if s.in_place => bad.push(FieldViolation::new(
            format!("{field}.old_key_action"),
            "an in-place rotation keeps the key; there is no old key",
        )),
        OldKeyAction::ScheduleDeletion { pending_window_days: d } if !(7..=30).contains(&d) => bad
            .push(FieldViolation::new(format!("{field}.pending_window_days"), format!("{d} days; AWS allows 7 to 30"))),
        _ => {}
    }
    bad
}

/// A key policy: a JSON object of at most 32 KiB.
pub(crate) fn key_policy(p: &str) -> Option<FieldViolation> {
    if p.len() > POLICY_MAX {
        Some(FieldViolation::new("key.aws.key_policy", format!("{} bytes; at most {POLICY_MAX}", p.len())))
    } else if !serde_json::from_str::<serde_json::Value>(p).is_ok_and(|v| v.is_object()) {
        Some(FieldViolation::new("key.aws.key_policy", "not a JSON object"))
    } else {
        None
    }
}

/// What a new Keyward key (REGULAR group) may be: AES_256, encryption-family operations and
/// EXPORT, no aliases, no key policy.
pub(crate) fn new_keyward_key(new: &NewKey) -> Vec<FieldViolation> {
    let mut bad = keyward_key(new.key_spec, &new.key_ops, &new.aliases);
    if new.key_policy.is_some() {
        bad.push(FieldViolation::new("key.aws.key_policy", "only keys in AWS_KMS groups have an AWS key policy"));
    }
    bad
}

/// The specs a REGULAR group holds: AES keys, and key pairs and HMAC keys made with aws-lc-rs.
pub(crate) const KEYWARD_SPECS: [KeySpec; 14] = [
    KeySpec::Aes128,
    KeySpec::Aes192,
    KeySpec::Aes256,
    KeySpec::Rsa2048,
    KeySpec::Rsa3072,
    KeySpec::Rsa4096,
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccNistEdwards25519,
    KeySpec::Hmac224,
    KeySpec::Hmac256,
    KeySpec::Hmac384,
    KeySpec::Hmac512,
];

/// What a Keyward key (REGULAR group) may be: one of [`KEYWARD_SPECS`], no aliases. AES keys:
/// encryption-family operations and EXPORT (AES_192 without WRAP_KEY/UNWRAP_KEY). Key pairs and
/// HMAC keys: AWS's usage rules for the spec (RSA encrypts or signs, ECC and Ed25519 sign, HMAC
/// makes MACs), without WRAP_KEY/UNWRAP_KEY (AES key wrap), EXPORT (only AES material is copied)
/// or DERIVE_SHARED_SECRET (key agreement runs in AWS only).
pub(crate) fn keyward_key(spec: KeySpec, ops: &[KeyOp], aliases: &[Alias]) -> Vec<FieldViolation> {
    let mut bad = Vec::new();
    let names = |ops: Vec<&KeyOp>| ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ");
    if !KEYWARD_SPECS.contains(&spec) {
        let held = KEYWARD_SPECS.iter().map(|s| s.api_name()).collect::<Vec<_>>().join(", ");
        bad.push(FieldViolation::new("key.key_spec", format!("REGULAR groups hold {held}; not {}", spec.api_name())));
    } else if spec.aes_bytes().is_some() {
        if spec == KeySpec::Aes192 && ops.iter().any(|o| matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey)) {
            bad.push(FieldViolation::new(
                "key.key_ops",
                "AES_192 keys cannot WRAP_KEY or UNWRAP_KEY (no AES-192 key wrap)",
            ));
        }
        let foreign: Vec<&KeyOp> =
            ops.iter().filter(|o| o.usage().is_some_and(|u| u != crate::domain::KeyUsage::EncryptDecrypt)).collect();
        if !foreign.is_empty() {
            bad.push(FieldViolation::new(
                "key.key_ops",
                format!("AES keys cannot {}: they ENCRYPT, DECRYPT, WRAP_KEY, UNWRAP_KEY and EXPORT", names(foreign)),
            ));
        }
    } else {
        let not_here: Vec<&KeyOp> = ops
            .iter()
            .filter(|o| matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey | KeyOp::Export | KeyOp::DeriveSharedSecret))
            .collect();
        if !not_here.is_empty() {
            bad.push(FieldViolation::new(
                "key.key_ops",
                format!(
                    "a Keyward {} key cannot {} (AES key wrap and EXPORT are AES keys'; key agreement runs in AWS)",
                    spec.api_name(),
                    names(not_here)
                ),
            ));
        } else if let Err(e) = spec.aws_key_usage(ops) {
            bad.push(FieldViolation::new("key.key_ops", e));
        }
    }
    if !aliases.is_empty() {
        bad.push(FieldViolation::new("key.aws.aliases", "only keys in AWS_KMS groups have AWS aliases"));
    }
    bad
}

/// How a key can rotate on schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotates {
    /// A virtual key whose material AWS generated: a new AWS key, or in place.
    AwsNative,
    /// A Keyward key: a new Keyward key, its copies with it when asked.
    KeywardKey,
    /// Imported or copied material in AWS: not on schedule.
    No,
}

impl Rotates {
    /// How a key (virtual or not) whose material has `source` rotates.
    pub(crate) fn of(is_virtual: bool, source: KeySource) -> Self {
        match (is_virtual, source) {
            (false, _) => Self::KeywardKey,
            (true, KeySource::AwsNative) => Self::AwsNative,
            (true, _) => Self::No,
        }
    }
}

/// `bad` as one INVALID_ARGUMENT, or nothing when empty.
pub(crate) fn none_bad(bad: Vec<FieldViolation>) -> Result<()> {
    if bad.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(bad)) }
}

/// The lifecycle's refusal as FAILED_PRECONDITION: "<key> is <STATE>: <reason>".
pub(crate) fn refused(k: &Key, e: InvalidTransition) -> Error {
    Error::precondition(Precondition::KeyState, k.name(), format!("{} is {}: {}", k.name(), k.state.name(), e.reason))
}

/// The key's material may be used now (the lifecycle's [`Event::Use`]); otherwise
/// FAILED_PRECONDITION saying `"<key> is <STATE>; <need>"`.
pub(crate) fn usable(k: &Key, need: &str) -> Result<()> {
    transition(k.state, Event::Use).map(|_| ()).map_err(|_| {
        Error::precondition(Precondition::KeyState, k.name(), format!("{} is {}; {need}", k.name(), k.state.name()))
    })
}

/// The key's `key_ops` include `op`; otherwise FAILED_PRECONDITION with `why(key name)`.
pub(crate) fn permits(k: &Key, op: KeyOp, why: impl FnOnce(&str) -> String) -> Result<()> {
    if k.key_ops.contains(&op) {
        return Ok(());
    }
    let name = k.name();
    Err(Error::precondition(Precondition::KeyOps, name.clone(), why(&name)))
}

/// `k` can hand out its material (to a copy, to a rotation): a Keyward AES key that permits
/// EXPORT and is ENABLED. `to` says to what, e.g. "to a copy".
pub(crate) fn copy_source(k: &Key, to: &str) -> Result<()> {
    if k.is_virtual() || k.key_spec.aes_bytes().is_none() {
        return Err(Error::precondition(
            Precondition::CopySource,
            k.name(),
            format!("{} is not a Keyward AES key; only those hand out their material {to}", k.name()),
        ));
    }
    permits(k, KeyOp::Export, |name| {
        format!("{name} does not permit EXPORT; add it to key_ops to hand out its material {to}")
    })?;
    usable(k, &format!("it must be ENABLED to hand out its material {to}"))
}

/// AWS imports 256-bit symmetric material only: `k` (a Keyward key) must be AES_256 to have a
/// copy in AWS; an AES_128 or AES_192 key stays in REGULAR groups.
pub(crate) fn aws_importable(k: &Key) -> Result<()> {
    if k.key_spec == KeySpec::Aes256 {
        return Ok(());
    }
    Err(Error::precondition(
        Precondition::KeySpec,
        k.name(),
        format!(
            "{} is {}; AWS imports 256-bit symmetric material only, so its material stays in REGULAR groups",
            k.name(),
            k.key_spec.api_name()
        ),
    ))
}

/// `k` was not rotated yet (a rotated key's successor is the one to rotate, or to schedule):
/// otherwise FAILED_PRECONDITION ALREADY_ROTATED naming the successor.
pub(crate) fn not_rotated(k: &Key) -> Result<()> {
    match k.links.iter().find(|l| l.kind == KeyLinkKind::RotatedTo) {
        None => Ok(()),
        Some(l) => Err(Error::precondition(
            Precondition::AlreadyRotated,
            k.name(),
            format!("{} was rotated to groups/{}/keys/{} already; rotate that key", k.name(), l.group_id, l.key_id),
        )),
    }
}

/// AWS-managed keys (KeyManager AWS) are read-only.
pub(crate) fn mutable(k: &Key) -> Result<()> {
    if k.is_mutable() {
        return Ok(());
    }
    Err(Error::precondition(
        Precondition::AwsManagedKey,
        k.name(),
        format!("{} is an AWS-managed key; AWS manages it and Keyward never changes it", k.name()),
    ))
}

/// The crypto policies (the group's, then the server's) that refuse `spec` with `ops`.
pub(crate) fn policies(
    group: GroupId,
    group_policy: &CryptoPolicy,
    server_policy: &CryptoPolicy,
    spec: KeySpec,
    ops: &[KeyOp],
) -> Result<()> {
    let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
    for (subject, policy) in
        [(format!("groups/{group}/crypto_policy"), group_policy), ("server crypto_policy".to_owned(), server_policy)]
    {
        if !policy.allows(spec, ops) {
            return Err(Error::precondition(
                Precondition::CryptoPolicy,
                subject.clone(),
                format!("{subject} does not allow {} with {names:?}", spec.api_name()),
            ));
        }
    }
    Ok(())
}

impl Keyward {
    /// ALREADY_EXISTS when a key of `group` is named `name`.
    pub(crate) async fn check_name_free(&self, group: GroupId, name: &str) -> Result<()> {
        if self.store.key_name_taken(group, name).await? {
            return Err(Error::AlreadyExists {
                resource: name.to_owned(),
                message: format!("a key named {name:?} already exists in groups/{group}"),
            });
        }
        Ok(())
    }

    /// [`policies`] with the server's policy.
    pub(crate) fn check_policies(
        &self,
        group: GroupId,
        policy: &CryptoPolicy,
        spec: KeySpec,
        ops: &[KeyOp],
    ) -> Result<()> {
        policies(group, policy, &self.settings.server_policy, spec, ops)
    }
}

//! Key rotation: what a rotation will do (its plan), kept in the journal entry it executes from.
//!
//! A new-key rotation (the guide's 5.1) makes a new AWS key with the old one's spec, usage,
//! description, tags and policy (read fresh from AWS), moves every alias of the old key to it
//! with UpdateAlias (checking before each move that the alias still targets the old key), links
//! the two (`ROTATED_FROM` / `ROTATED_TO`), gives the new key the display name and renames the
//! old one `<name>~rotated-<UTC time as YYYYMMDDTHHMMSSZ>`. An in-place rotation is AWS's
//! RotateKeyOnDemand: new material behind the same key ARN, nothing else changes.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{GroupId, KeyId, KeySpec, KeyUsage};

/// What happens to the old key once its aliases moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyAction {
    /// Stays ENABLED, so that what it encrypted still decrypts (the default).
    KeepEnabled,
    /// DisableKey.
    Disable,
    /// ScheduleKeyDeletion with this PendingWindowInDays (7–30).
    ScheduleDeletion { pending_window_days: i32 },
}

impl OldKeyAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::KeepEnabled => "KEEP_ENABLED",
            Self::Disable => "DISABLE",
            Self::ScheduleDeletion { .. } => "SCHEDULE_DELETION",
        }
    }
}

/// How a key is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationKind {
    /// A new AWS key takes over the aliases (the guide's 5.1).
    NewKey,
    /// AWS's RotateKeyOnDemand: same key, new material.
    InPlace,
}

impl RotationKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::NewKey => "NEW_KEY",
            Self::InPlace => "IN_PLACE",
        }
    }
}

/// The AWS key a new-key rotation creates, as read from the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKey {
    /// The name the new key takes over (the old key's).
    pub display_name: String,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    /// The old key's policy, as GetKeyPolicy returned it; `None`: AWS's default policy.
    pub key_policy: Option<String>,
    /// The old key's AWS automatic rotation period when it is on (EnableKeyRotation on the new
    /// key); `None`: off or not read.
    pub rotation_period_days: Option<i32>,
}

/// One alias to move from the old key to the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    pub alias: String,
    /// The AWS key id the alias targets when the plan was made (the old key).
    pub from_aws_key_id: String,
}

/// What one rotation will do, call by call. A rotation executes exactly its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan {
    pub kind: RotationKind,
    /// The key being rotated.
    pub group_id: GroupId,
    pub key_id: KeyId,
    pub aws_key_id: String,
    /// The new key (new-key rotations).
    pub new_key: Option<PlannedKey>,
    /// The old key's display name afterwards (new-key rotations).
    pub rename_old_to: Option<String>,
    pub alias_moves: Vec<AliasMove>,
    pub old_key_action: OldKeyAction,
    /// The AWS calls in order, e.g. `CreateKey(RSA_2048, SIGN_VERIFY)`, `UpdateAlias(alias/a → new key)`.
    pub aws_calls: Vec<String>,
}

impl RotationPlan {
    /// A one-line summary for the audit log.
    pub fn summary(&self) -> String {
        let aliases: Vec<&str> = self.alias_moves.iter().map(|m| m.alias.as_str()).collect();
        format!(
            "{} rotation of {}: {} AWS calls, aliases [{}], old key {}",
            self.kind.name(),
            self.aws_key_id,
            self.aws_calls.len(),
            aliases.join(", "),
            self.old_key_action.name()
        )
    }
}

/// The display name of a key rotated at `at`: `<name>~rotated-<YYYYMMDDTHHMMSSZ>`, the name
/// cut (at a character boundary) so that the whole stays within `max` characters.
pub fn rotated_name(name: &str, at: OffsetDateTime, max: usize) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let suffix = format!(
        "~rotated-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let keep = max.saturating_sub(suffix.chars().count());
    let base: String = name.chars().take(keep).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_say_when_and_fit() {
        let at = time::macros::datetime!(2026-12-02 01:02:03 UTC);
        assert_eq!(rotated_name("payments", at, 256), "payments~rotated-20261202T010203Z");
        let long = "x".repeat(300);
        let n = rotated_name(&long, at, 256);
        assert_eq!(n.chars().count(), 256);
        assert!(n.ends_with("~rotated-20261202T010203Z"));
    }
}

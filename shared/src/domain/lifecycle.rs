//! The key lifecycle as one pure function, after AWS KMS's key-state table
//! (https://docs.aws.amazon.com/kms/latest/developerguide/key-state.html). Every "may this key
//! do X now" of every use case asks it before calling AWS, so Keyward holds AWS's rules even
//! where an emulator would not.
//!
//! What AWS reports (a sync, a deletion-window check) is not an event: AWS is the truth and its
//! state is recorded as it is.

use super::KeyState;

/// Something Keyward does to a key, or asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// EnableKey.
    Enable,
    /// DisableKey.
    Disable,
    /// ScheduleKeyDeletion. The state returned carries no deletion time: the caller records
    /// AWS's DeletionDate once AWS answered ([`super::Key::mark_pending_deletion`]).
    ScheduleDeletion,
    /// CancelKeyDeletion (AWS leaves the key Disabled).
    CancelDeletion,
    /// DeleteImportedKeyMaterial.
    DeleteMaterial,
    /// ImportKeyMaterial (first import or reimport of the same material).
    ImportMaterial,
    /// Use of the key's material: a crypto operation, a copy or export of it, unwrapping
    /// with it. The state does not change.
    Use,
    /// A change of the key's metadata in AWS (description, tags, aliases, key policy).
    EditInAws,
    /// DeleteKey of a virtual key: Keyward forgets it (nothing happens in AWS).
    Forget,
    /// DeleteKey of a Keyward key: its sealed material is destroyed.
    Destroy,
    /// EnableKeyRotation / DisableKeyRotation (AWS's automatic rotation settings).
    SetAwsRotation,
    /// RotateKey: a new key takes over (or AWS rotates the material in place). The rotated
    /// key's state does not change here; the old key's fate is the rotation's choice.
    Rotate,
}

impl Event {
    /// Every event, for the full table.
    pub const ALL: [Event; 12] = [
        Self::Enable,
        Self::Disable,
        Self::ScheduleDeletion,
        Self::CancelDeletion,
        Self::DeleteMaterial,
        Self::ImportMaterial,
        Self::Use,
        Self::EditInAws,
        Self::Forget,
        Self::Destroy,
        Self::SetAwsRotation,
        Self::Rotate,
    ];
}

/// Why an event is not allowed in a state: says what must happen first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidTransition {
    pub from: KeyState,
    pub event: Event,
    pub reason: String,
}

/// The state after `event`, or why it is not allowed in `state`.
pub fn transition(state: KeyState, event: Event) -> Result<KeyState, InvalidTransition> {
    use Event as E;
    use KeyState as S;
    let refuse = |reason: &str| Err(InvalidTransition { from: state, event, reason: reason.to_owned() });
    const PENDING_DELETION: &str = "the key is pending deletion; cancel the deletion first";
    const NO_MATERIAL: &str = "the key has no key material; import it first";
    match (event, state) {
        (E::Forget, S::Deleted) => Ok(S::Deleted),
        (E::Forget, S::PendingDeletion { .. }) => refuse(
            "wait until AWS deletes it at the end of its deletion window (the worker's deletion-window check or a sync then marks it DELETED)",
        ),
        (E::Forget, _) => {
            refuse("schedule its deletion in AWS (ScheduleKeyDeletion) and wait until AWS has deleted it")
        }
        (E::EditInAws, S::Deleted) => refuse("the key is gone from AWS; only deleting the virtual key is left"),
        (E::EditInAws, s) => Ok(s),

        (_, S::Deleted) => refuse("the key is gone from AWS; only deleting the virtual key is left"),
        (_, S::Unavailable) => refuse("the key is unavailable in AWS; sync it once it is reachable"),

        (E::SetAwsRotation, S::Enabled | S::Disabled) => Ok(state),
        (E::SetAwsRotation, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
        (E::SetAwsRotation, S::PendingImport) => refuse(NO_MATERIAL),

        (E::Rotate, S::Enabled) => Ok(S::Enabled),
        (E::Rotate, S::Disabled) => refuse("the key is disabled; only an ENABLED key is rotated (enable it first)"),
        (E::Rotate, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
        (E::Rotate, S::PendingImport) => refuse(NO_MATERIAL),

        (E::Use, S::Enabled) => Ok(S::Enabled),
        (E::Use, S::Disabled) => refuse("the key is disabled; enable it first"),
        (E::Use, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
        (E::Use, S::PendingImport) => refuse(NO_MATERIAL),

        (E::Destroy, S::Disabled) => Ok(S::Deleted),
        (E::Destroy, _) => {
            refuse("disable it first (UpdateKey enabled=false): deleting a Keyward key destroys its material")
        }

        (E::Enable, S::Enabled | S::Disabled) => Ok(S::Enabled),
        (E::Enable, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
        (E::Enable, S::PendingImport) => refuse(NO_MATERIAL),

        (E::Disable, S::Enabled | S::Disabled) => Ok(S::Disabled),
        (E::Disable, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
        (E::Disable, S::PendingImport) => refuse(NO_MATERIAL),

        (E::ScheduleDeletion, S::Enabled | S::Disabled | S::PendingImport) => {
            Ok(S::PendingDeletion { deletion_time: None })
        }
        (E::ScheduleDeletion, S::PendingDeletion { .. }) => refuse("the key is already pending deletion"),

        (E::CancelDeletion, S::PendingDeletion { .. }) => Ok(S::Disabled),
        (E::CancelDeletion, S::Enabled | S::Disabled | S::PendingImport) => {
            refuse("the key is not pending deletion; there is nothing to cancel")
        }

        (E::DeleteMaterial, S::Enabled | S::Disabled) => Ok(S::PendingImport),
        (E::DeleteMaterial, S::PendingImport) => refuse("the key has no key material already"),
        (E::DeleteMaterial, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),

        (E::ImportMaterial, S::PendingImport | S::Enabled) => Ok(S::Enabled),
        (E::ImportMaterial, S::Disabled) => Ok(S::Disabled),
        (E::ImportMaterial, S::PendingDeletion { .. }) => refuse(PENDING_DELETION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_state_by_event_table() {
        let mut out = String::new();
        for state in KeyState::ALL {
            for event in Event::ALL {
                let cell = match transition(state, event) {
                    Ok(to) => to.name().to_owned(),
                    Err(e) => format!("refused: {e}"),
                };
                out.push_str(&format!("{:<16} {:<40} -> {cell}\n", state.name(), format!("{event:?}")));
            }
        }
        expect_test::expect_file!["lifecycle_table.txt"].assert_eq(&out);
    }
}

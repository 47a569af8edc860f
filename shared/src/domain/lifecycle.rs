//! The key lifecycle as one pure function, after AWS KMS's key-state table
//! (https://docs.aws.amazon.com/kms/latest/developerguide/key-state.html). Every use case asks
//! it before calling AWS, so Keyward holds AWS's rules even where an emulator would not.

use super::KeyState;

/// Something that happens to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// EnableKey.
    Enable,
    /// DisableKey.
    Disable,
    /// ScheduleKeyDeletion.
    ScheduleDeletion,
    /// CancelKeyDeletion (AWS leaves the key Disabled).
    CancelDeletion,
    /// AWS no longer has the key (its deletion window passed, or it vanished).
    AwsReportsDeleted,
    /// DeleteImportedKeyMaterial.
    DeleteMaterial,
    /// ImportKeyMaterial (first import or reimport of the same material).
    ImportMaterial,
    /// A sync read the key's state in AWS: AWS is the truth.
    SyncRefresh(KeyState),
}

impl Event {
    /// Every event kind, with `SyncRefresh` once per state (for the full table).
    pub fn all() -> Vec<Event> {
        let mut v = vec![
            Self::Enable,
            Self::Disable,
            Self::ScheduleDeletion,
            Self::CancelDeletion,
            Self::AwsReportsDeleted,
            Self::DeleteMaterial,
            Self::ImportMaterial,
        ];
        v.extend(KeyState::ALL.into_iter().map(Self::SyncRefresh));
        v
    }
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
    match (event, state) {
        (E::SyncRefresh(to), _) => Ok(to),
        (E::AwsReportsDeleted, _) => Ok(S::Deleted),
        (_, S::Deleted) => refuse("the key is gone from AWS; only deleting the virtual key is left"),
        (_, S::Unavailable) => refuse("the key is unavailable in AWS; sync it once it is reachable"),

        (E::Enable, S::Enabled | S::Disabled) => Ok(S::Enabled),
        (E::Enable, S::PendingDeletion) => refuse("the key is pending deletion; cancel the deletion first"),
        (E::Enable, S::PendingImport) => refuse("the key has no key material; import it first"),

        (E::Disable, S::Enabled | S::Disabled) => Ok(S::Disabled),
        (E::Disable, S::PendingDeletion) => refuse("the key is pending deletion; cancel the deletion first"),
        (E::Disable, S::PendingImport) => refuse("the key has no key material; import it first"),

        (E::ScheduleDeletion, S::Enabled | S::Disabled | S::PendingImport) => Ok(S::PendingDeletion),
        (E::ScheduleDeletion, S::PendingDeletion) => refuse("the key is already pending deletion"),

        (E::CancelDeletion, S::PendingDeletion) => Ok(S::Disabled),
        (E::CancelDeletion, S::Enabled | S::Disabled | S::PendingImport) => {
            refuse("the key is not pending deletion; there is nothing to cancel")
        }

        (E::DeleteMaterial, S::Enabled | S::Disabled) => Ok(S::PendingImport),
        (E::DeleteMaterial, S::PendingImport) => refuse("the key has no key material already"),
        (E::DeleteMaterial, S::PendingDeletion) => refuse("the key is pending deletion; cancel the deletion first"),

        (E::ImportMaterial, S::PendingImport | S::Enabled) => Ok(S::Enabled),
        (E::ImportMaterial, S::Disabled) => Ok(S::Disabled),
        (E::ImportMaterial, S::PendingDeletion) => refuse("the key is pending deletion; cancel the deletion first"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_state_by_event_table() {
        let mut out = String::new();
        for state in KeyState::ALL {
            for event in Event::all() {
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

//! Pure types and rules: ids, groups, keys, key specs and states, validation of what callers send.
//! No IO, no async, nothing from sea-orm, aws-* or tonic.

mod access;
pub mod algorithms;
mod audit;
pub mod drift;
mod filter;
mod group;
mod journal;
mod key;
mod lifecycle;
mod rotation;
mod validate;

pub use access::{
    AccountRole, ApiKey, CertificateIdentity, Grants, GroupRole, Membership, Permission, Principal, PrincipalKind,
    Scope, oidc_subject_key, validate_oidc_subject,
};
pub use audit::{Action, AuditEvent, Caller, NewAuditEvent, OUTCOME_OK};
pub use drift::{DriftChange, DriftKind, DriftLog, DriftSummary, KeyDrift};
pub use filter::{Cmp, KeyCursor, KeyFilter, KeyOrder, KeyOrderField, SortValue, TextMatch, micros};
pub use group::{AwsKmsConfig, AwsKmsConfigPatch, ConnectionState, ConnectionStatus, CryptoPolicy, Group, GroupKind};
pub use journal::{OpKind, OpState, Operation};
pub use key::{
    AwsKeyDetails, AwsRotation, Key, KeyLink, KeyLinkKind, KeyOp, KeySource, KeySpec, KeyState, KeyUsage, SyncRun,
    SyncRunState, SyncTrigger, SyncWarning,
};
pub use lifecycle::{Event, InvalidTransition, transition};
pub use rotation::{
    AliasMove, CronSchedule, OldKeyAction, PlannedCopy, PlannedKey, PlannedSource, RotationEvery, RotationKind,
    RotationPlan, RotationPolicy, RotationSchedule, rotated_name,
};
pub use validate::{Alias, EndpointUrl, FieldViolation, Region, Tags, validate_display_name};

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7).
            #[allow(clippy::new_without_default, reason = "a default id would be a random one; say new()")]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Parses the UUID text form; `None` if it is not a UUID.
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Server-assigned id of a group (`groups/{id}`).
    GroupId
);
id_type!(
    /// Server-assigned id of a key (`groups/{g}/keys/{id}`).
    KeyId
);
id_type!(
    /// Server-assigned id of a sync run (`groups/{g}/syncRuns/{id}`).
    SyncRunId
);
id_type!(
    /// Server-assigned id of a principal (`principals/{id}`).
    PrincipalId
);
id_type!(
    /// Server-assigned id of an API key (`principals/{p}/apiKeys/{id}`).
    ApiKeyId
);

/// The names whose flag is set, in order: which fields a patch changes (for audit details).
pub fn names_set<'a>(fields: &[(&'a str, bool)]) -> Vec<&'a str> {
    fields.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect()
}

/// `t` cut to whole microseconds: what both databases store, so a returned resource equals
/// the one read back later.
pub fn to_micros(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

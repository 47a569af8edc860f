//! Who acts, and the append-only audit events their actions leave.

use time::OffsetDateTime;
use uuid::Uuid;

/// The principal behind a request and the request's id, carried into every mutating use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// From request metadata `x-keyward-actor` (default `anonymous`), or `worker`.
    pub actor: String,
    /// From `x-request-id`, or generated.
    pub request_id: String,
}

impl Caller {
    pub fn new(actor: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self { actor: actor.into(), request_id: request_id.into() }
    }

    /// The worker's scheduled jobs.
    pub fn worker() -> Self {
        Self { actor: "worker".to_owned(), request_id: Uuid::now_v7().to_string() }
    }
}

/// The outcome of an audited action: `OK`, or the gRPC code name of the refusal
/// (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, ...).
pub const OUTCOME_OK: &str = "OK";

/// One entry of the hash-chained audit log. Never holds a secret, key material or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    /// Position in the chain, from 1.
    pub seq: i64,
    pub actor: String,
    /// e.g. `keyward.v1.KeyService/CreateKey`.
    pub action: String,
    /// The resource name acted on (or its parent when refused before it existed).
    pub resource: String,
    pub outcome: String,
    pub request_id: String,
    /// A short, secret-free description (counts, the error message of a refusal).
    pub detail: String,
    pub create_time: OffsetDateTime,
    /// Hex SHA-256 of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and every field above.
    pub hash: String,
}

/// What an action appends; the store adds id, seq, time and hashes.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    pub caller: &'a Caller,
    pub action: &'a str,
    pub resource: String,
    pub outcome: &'a str,
    pub detail: String,
}

/// Action names (gRPC full method names; worker jobs under `keyward.worker`).
pub mod actions {
    pub const CREATE_GROUP: &str = "keyward.v1.GroupService/CreateGroup";
    pub const UPDATE_GROUP: &str = "keyward.v1.GroupService/UpdateGroup";
    pub const DELETE_GROUP: &str = "keyward.v1.GroupService/DeleteGroup";
    pub const TEST_CONNECTION: &str = "keyward.v1.GroupService/TestConnection";
    pub const SYNC_KEYS: &str = "keyward.v1.GroupService/SyncKeys";
    pub const CREATE_KEY: &str = "keyward.v1.KeyService/CreateKey";
    pub const UPDATE_KEY: &str = "keyward.v1.KeyService/UpdateKey";
    pub const SCHEDULE_KEY_DELETION: &str = "keyward.v1.KeyService/ScheduleKeyDeletion";
    pub const CANCEL_KEY_DELETION: &str = "keyward.v1.KeyService/CancelKeyDeletion";
    pub const DELETE_KEY: &str = "keyward.v1.KeyService/DeleteKey";
    pub const IMPORT_KEY: &str = "keyward.v1.KeyService/ImportKey";
    pub const COPY_KEY: &str = "keyward.v1.KeyService/CopyKey";
    pub const DELETE_KEY_MATERIAL: &str = "keyward.v1.KeyService/DeleteKeyMaterial";
    pub const REIMPORT_KEY_MATERIAL: &str = "keyward.v1.KeyService/ReimportKeyMaterial";
    pub const RECOVER_OPERATION: &str = "keyward.worker/RecoverOperation";
    pub const SCHEDULED_SYNC: &str = "keyward.worker/ScheduledSync";
    pub const DELETION_CHECK: &str = "keyward.worker/DeletionWindowCheck";
}

//! Who acts, and the append-only audit events their actions leave.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Grants, PrincipalId};

/// The authenticated principal behind a call, what it may do, and the request's id: carried
/// into every use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who the audit log names: `principals/{id}`, `worker`, or a start-up task's name.
    pub actor: String,
    /// From `x-request-id`, or generated.
    pub request_id: String,
    /// What the caller may do (as read when the call was authenticated).
    pub grants: Grants,
}

impl Caller {
    /// Keyward itself acting as `actor` (a start-up task, a command on the server's machine):
    /// every permission.
    pub fn system(actor: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self { actor: actor.into(), request_id: request_id.into(), grants: Grants::System }
    }

    /// An authenticated principal.
    pub fn principal(id: PrincipalId, grants: Grants, request_id: impl Into<String>) -> Self {
        Self { actor: format!("principals/{id}"), request_id: request_id.into(), grants }
    }

    /// The worker's scheduled jobs: the built-in `worker` principal.
    pub fn worker() -> Self {
        Self::system("worker", Uuid::now_v7().to_string())
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
    pub action: Action,
    pub resource: String,
    pub outcome: &'a str,
    pub detail: String,
}

/// What was done: one use case of the API or one worker job. How a transport names it is the
/// transport's business (the gRPC server names them after its methods); the audit log stores
/// [`Action::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    CreateGroup,
    UpdateGroup,
    DeleteGroup,
    TestConnection,
    SyncKeys,
    CreateKey,
    UpdateKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    DeleteKey,
    ImportKey,
    CopyKey,
    DeleteKeyMaterial,
    ReimportKeyMaterial,
    /// RotateKey (one event per rotation, with the plan's summary).
    RotateKey,
    /// One step of a rotation done (key created, aliases moved, old key handled).
    RotationStep,
    /// Worker: recovery of an interrupted journaled operation.
    RecoverOperation,
    /// Worker: a group's scheduled sync.
    ScheduledSync,
    /// Worker: the deletion-window check of a key.
    DeletionCheck,
    /// Worker: a key's rotation on schedule (refusals and failures; the rotation itself is a
    /// RotateKey event by the worker).
    ScheduledRotation,
    /// `keyward-server reseal`: stored values sealed again under the current master key.
    Reseal,
    CreatePrincipal,
    UpdatePrincipal,
    DisablePrincipal,
    EnablePrincipal,
    CreateApiKey,
    RevokeApiKey,
    CreateMembership,
    UpdateMembership,
    DeleteMembership,
    /// The first start of an empty database made the bootstrap admin.
    BootstrapAdmin,
    /// A call refused before any use case: credentials missing or bad (UNAUTHENTICATED) or a
    /// permission missing (PERMISSION_DENIED). Recorded at a bounded rate.
    Authorize,
    /// CryptoService calls, recorded for the keys of groups with `audit_key_use` only.
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    GetPublicKey,
    Sign,
    Verify,
    GenerateMac,
    VerifyMac,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    GenerateDataKeyPair,
    ReEncrypt,
    DeriveSharedSecret,
}

impl Action {
    pub const ALL: [Action; 46] = [
        Self::CreateGroup,
        Self::UpdateGroup,
        Self::DeleteGroup,
        Self::TestConnection,
        Self::SyncKeys,
        Self::CreateKey,
        Self::UpdateKey,
        Self::ScheduleKeyDeletion,
        Self::CancelKeyDeletion,
        Self::DeleteKey,
        Self::ImportKey,
        Self::CopyKey,
        Self::DeleteKeyMaterial,
        Self::ReimportKeyMaterial,
        Self::RotateKey,
        Self::RotationStep,
        Self::RecoverOperation,
        Self::ScheduledSync,
        Self::DeletionCheck,
        Self::ScheduledRotation,
        Self::Reseal,
        Self::CreatePrincipal,
        Self::UpdatePrincipal,
        Self::DisablePrincipal,
        Self::EnablePrincipal,
        Self::CreateApiKey,
        Self::RevokeApiKey,
        Self::CreateMembership,
        Self::UpdateMembership,
        Self::DeleteMembership,
        Self::BootstrapAdmin,
        Self::Authorize,
        Self::Encrypt,
        Self::Decrypt,
        Self::WrapKey,
        Self::UnwrapKey,
        Self::GetPublicKey,
        Self::Sign,
        Self::Verify,
        Self::GenerateMac,
        Self::VerifyMac,
        Self::GenerateDataKey,
        Self::GenerateDataKeyWithoutPlaintext,
        Self::GenerateDataKeyPair,
        Self::ReEncrypt,
        Self::DeriveSharedSecret,
    ];

    /// The stable name the audit log stores (`CreateKey`, `ScheduledSync`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateGroup => "CreateGroup",
            Self::UpdateGroup => "UpdateGroup",
            Self::DeleteGroup => "DeleteGroup",
            Self::TestConnection => "TestConnection",
            Self::SyncKeys => "SyncKeys",
            Self::CreateKey => "CreateKey",
            Self::UpdateKey => "UpdateKey",
            Self::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Self::CancelKeyDeletion => "CancelKeyDeletion",
            Self::DeleteKey => "DeleteKey",
            Self::ImportKey => "ImportKey",
            Self::CopyKey => "CopyKey",
            Self::DeleteKeyMaterial => "DeleteKeyMaterial",
            Self::ReimportKeyMaterial => "ReimportKeyMaterial",
            Self::RotateKey => "RotateKey",
            Self::RotationStep => "RotationStep",
            Self::RecoverOperation => "RecoverOperation",
            Self::ScheduledSync => "ScheduledSync",
            Self::DeletionCheck => "DeletionWindowCheck",
            Self::ScheduledRotation => "ScheduledRotation",
            Self::Reseal => "Reseal",
            Self::CreatePrincipal => "CreatePrincipal",
            Self::UpdatePrincipal => "UpdatePrincipal",
            Self::DisablePrincipal => "DisablePrincipal",
            Self::EnablePrincipal => "EnablePrincipal",
            Self::CreateApiKey => "CreateApiKey",
            Self::RevokeApiKey => "RevokeApiKey",
            Self::CreateMembership => "CreateMembership",
            Self::UpdateMembership => "UpdateMembership",
            Self::DeleteMembership => "DeleteMembership",
            Self::BootstrapAdmin => "BootstrapAdmin",
            Self::Authorize => "Authorize",
            Self::Encrypt => "Encrypt",
            Self::Decrypt => "Decrypt",
            Self::WrapKey => "WrapKey",
            Self::UnwrapKey => "UnwrapKey",
            Self::GetPublicKey => "GetPublicKey",
            Self::Sign => "Sign",
            Self::Verify => "Verify",
            Self::GenerateMac => "GenerateMac",
            Self::VerifyMac => "VerifyMac",
            Self::GenerateDataKey => "GenerateDataKey",
            Self::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Self::GenerateDataKeyPair => "GenerateDataKeyPair",
            Self::ReEncrypt => "ReEncrypt",
            Self::DeriveSharedSecret => "DeriveSharedSecret",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

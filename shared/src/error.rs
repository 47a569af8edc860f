//! `shared::Error`: the decisions a caller makes, one variant each. The server maps it to gRPC
//! codes in one exhaustive match (server/src/status.rs).

use crate::domain::FieldViolation;
use crate::kms;

/// Result of every use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad caller input, caught before any AWS call, or AWS ValidationException on caller input.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// Unknown resource (`resource` is its name).
    #[error("{resource} not found")]
    NotFound { resource: String },
    /// The name is taken; `message` says by what.
    #[error("{message}")]
    AlreadyExists { resource: String, message: String },
    /// Not allowed in the resource's state or for its type; `kind` says which rule refused it,
    /// `subject` names the resource, `description` what must happen first.
    #[error("{description}")]
    FailedPrecondition { kind: Precondition, subject: String, description: String },
    /// AWS AccessDeniedException.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller's own credentials are missing, malformed, expired or revoked, or its
    /// principal is disabled. Never for AWS-side credential failures.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is authenticated but lacks the permission on the resource.
    #[error("{0}")]
    Forbidden(String),
    /// Throttling or a transient upstream failure after retries; endpoint unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// A timeout.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Lost a concurrent-modification race (etag mismatch, a sync already running).
    #[error("{0}")]
    Aborted(String),
    /// AWS LimitExceededException.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The AWS KMS endpoint does not implement the operation (an emulator).
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or a broken dependency (database). The source is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which rule refused a request (FAILED_PRECONDITION): what a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precondition {
    /// The key was rotated already; its successor is the one to rotate.
    AlreadyRotated,
    /// The group's settings now reach another account or region than its keys'.
    AwsAccountChanged,
    /// The group's connection settings cannot make an AWS client.
    AwsConnectionSettings,
    /// AWS did not accept the group's stored credentials.
    AwsCredentialsRejected,
    /// An AWS key or import token went away during an import.
    AwsImport,
    /// AWS refused the call in the key's state.
    AwsKeyState,
    /// An AWS-managed key: AWS manages it, Keyward never changes it.
    AwsManagedKey,
    /// A copy waits for its material to be reimported from this key.
    CopyNeedsSource,
    /// The key cannot be a copy source (not an AES_256 Keyward key, or not usable now).
    CopySource,
    /// A crypto policy (the group's or the server's) does not allow it.
    CryptoPolicy,
    /// The group still holds keys.
    GroupNotEmpty,
    /// A stored secret or key material does not open under the master keyring.
    SealedValue,
    /// The key's `key_ops` do not include the operation.
    KeyOps,
    /// Not possible for a key of this source.
    KeySource,
    /// Not possible for a key of this spec.
    KeySpec,
    /// Not allowed in the key's state (the lifecycle refused it).
    KeyState,
    /// A principal may not lock itself out (disable itself).
    OwnPrincipal,
    /// Only AWS_KMS groups can do this.
    NotAwsKmsGroup,
    /// Only Keyward keys (REGULAR groups) can do this.
    NotKeywardKey,
    /// Only virtual keys (AWS_KMS groups) can do this.
    NotVirtual,
    /// The key has no linked Keyward source.
    NoSource,
    /// An alias Keyward did not put on the key.
    UnmanagedAlias,
    /// The material could not be restored afterwards; needs an acknowledgement.
    Unrecoverable,
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter().map(|f| format!("{}: {}", f.field, f.description)).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(resource: impl Into<String>) -> Self {
        Self::NotFound { resource: resource.into() }
    }

    pub fn precondition(kind: Precondition, subject: impl Into<String>, description: impl Into<String>) -> Self {
        Self::FailedPrecondition { kind, subject: subject.into(), description: description.into() }
    }

    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    /// The gRPC code name this error maps to (the audit log's outcome of a refusal).
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
            Self::FailedPrecondition { .. } => "FAILED_PRECONDITION",
            Self::PermissionDenied(_) | Self::Forbidden(_) => "PERMISSION_DENIED",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::Aborted(_) => "ABORTED",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::Unimplemented(_) => "UNIMPLEMENTED",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<kms::Error> for Error {
    fn from(e: kms::Error) -> Self {
        let msg = e.to_string();
        match e {
            kms::Error::NotFound(_) => Self::NotFound { resource: msg },
            kms::Error::AlreadyExists(_) => Self::AlreadyExists { resource: String::new(), message: msg },
            kms::Error::AccessDenied(_) => Self::PermissionDenied(msg),
            kms::Error::CredentialsRejected(_) => Self::precondition(Precondition::AwsCredentialsRejected, "", msg),
            kms::Error::Validation(_) => Self::invalid("", msg),
            kms::Error::InvalidState(_) => Self::precondition(Precondition::AwsKeyState, "", msg),
            kms::Error::LimitExceeded(_) => Self::ResourceExhausted(msg),
            kms::Error::Conflict(_) => Self::Aborted(msg),
            kms::Error::Unavailable(_) | kms::Error::Unreachable(_) => Self::Unavailable(msg),
            kms::Error::Other(_) => Self::Internal(msg.into()),
            kms::Error::Timeout(_) => Self::DeadlineExceeded(msg),
            kms::Error::Unsupported(_) => Self::Unimplemented(msg),
            kms::Error::Config(_) => Self::precondition(Precondition::AwsConnectionSettings, "", msg),
        }
    }
}

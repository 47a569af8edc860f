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
    /// Not allowed in the resource's state or for its type; `kind` is a short machine-readable
    /// type (e.g. `GROUP_NOT_EMPTY`), `subject` the resource, `description` what must happen first.
    #[error("{description}")]
    FailedPrecondition { kind: &'static str, subject: String, description: String },
    /// AWS AccessDeniedException.
    #[error("{0}")]
    PermissionDenied(String),
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
    /// A bug or a broken dependency (database). The source is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
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

    pub fn precondition(kind: &'static str, subject: impl Into<String>, description: impl Into<String>) -> Self {
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
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::Aborted(_) => "ABORTED",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
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
            kms::Error::CredentialsRejected(_) => Self::precondition("AWS_CREDENTIALS_REJECTED", "", msg),
            kms::Error::Validation(_) => Self::invalid("", msg),
            kms::Error::InvalidState(_) => Self::precondition("AWS_KEY_STATE", "", msg),
            kms::Error::LimitExceeded(_) => Self::ResourceExhausted(msg),
            kms::Error::Unavailable(_) | kms::Error::Unreachable(_) | kms::Error::Other(_) => Self::Unavailable(msg),
            kms::Error::Timeout(_) => Self::DeadlineExceeded(msg),
            kms::Error::Config(_) => Self::precondition("AWS_CONNECTION_SETTINGS", "", msg),
        }
    }
}

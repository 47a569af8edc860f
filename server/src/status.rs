//! The one map from `shared::Error` to gRPC status, with google.rpc error details.
//! Exhaustive (no `_` arm); logs the cause chain of internal errors; never sends a raw library
//! message to the client.

use keyward_shared::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Domain of `ErrorInfo` details.
const DOMAIN: &str = "keyward.v1";

pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(violations) => {
            let msg = violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
            let details = ErrorDetails::with_bad_request(
                violations.into_iter().map(|v| FieldViolation::new(v.field, v.description)).collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::InvalidArgument, msg, details)
        }
        Error::NotFound { resource } => Status::with_error_details(
            Code::NotFound,
            format!("{resource} not found"),
            ErrorDetails::with_resource_info("", resource, "", "not found"),
        ),
        Error::AlreadyExists { resource, message } => Status::with_error_details(
            Code::AlreadyExists,
            message.clone(),
            ErrorDetails::with_resource_info("", resource, "", message),
        ),
        Error::FailedPrecondition { kind, subject, description } => Status::with_error_details(
            Code::FailedPrecondition,
            description.clone(),
            ErrorDetails::with_precondition_failure_violation(kind, subject, description),
        ),
        Error::PermissionDenied(m) => info(Code::PermissionDenied, m, "AWS_ACCESS_DENIED"),
        Error::Unavailable(m) => info(Code::Unavailable, m, "UPSTREAM_UNAVAILABLE"),
        Error::DeadlineExceeded(m) => info(Code::DeadlineExceeded, m, "TIMEOUT"),
        Error::Aborted(m) => info(Code::Aborted, m, "CONCURRENT_MODIFICATION"),
        Error::ResourceExhausted(m) => info(Code::ResourceExhausted, m, "AWS_LIMIT_EXCEEDED"),
        Error::Internal(source) => {
            let mut chain = source.to_string();
            let mut cur = source.source();
            while let Some(s) = cur {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                cur = s.source();
            }
            tracing::error!(error = %chain, "internal error");
            Status::internal("internal error; see the server log")
        }
    }
}

fn info(code: Code, message: String, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, std::collections::HashMap::<String, String>::new()),
    )
}

/// A request field that does not parse.
pub fn invalid(field: &str, description: impl Into<String>) -> Status {
    to_status(Error::invalid(field, description))
}

//! The one map from `shared::Error` to gRPC status, with google.rpc error details.
//! Exhaustive (no `_` arm); logs the cause chain of internal errors; never sends a raw library
//! message to the client.

use keyward_shared::domain::Action;
use keyward_shared::{Error, Precondition};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Domain of `ErrorInfo` details.
const DOMAIN: &str = "keyward.v1";

/// Longest message or detail text sent: messages may quote caller input, and gRPC carries
/// them in HTTP/2 headers, which clients limit (a 70 KB name must not break the connection).
const MAX_TEXT: usize = 512;

fn cap(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(violations) => {
            let violations: Vec<FieldViolation> = violations
                .into_iter()
                .take(20)
                .map(|v| FieldViolation::new(cap(v.field), cap(v.description)))
                .collect();
            let msg =
                violations
                    .iter()
                    // An AWS refusal of the request as a whole names no field.
                    .map(|v| {
                        if v.field.is_empty() {
                            v.description.clone()
                        } else {
                            format!("{}: {}", v.field, v.description)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
            Status::with_error_details(Code::InvalidArgument, cap(msg), ErrorDetails::with_bad_request(violations))
        }
        Error::NotFound { resource } => {
            let resource = cap(resource);
            Status::with_error_details(
                Code::NotFound,
                format!("{resource} not found"),
                ErrorDetails::with_resource_info("", resource, "", "not found"),
            )
        }
        Error::AlreadyExists { resource, message } => {
            let message = cap(message);
            Status::with_error_details(
                Code::AlreadyExists,
                message.clone(),
                ErrorDetails::with_resource_info("", cap(resource), "", message),
            )
        }
        Error::FailedPrecondition { kind, subject, description } => {
            let description = cap(description);
            Status::with_error_details(
                Code::FailedPrecondition,
                description.clone(),
                ErrorDetails::with_precondition_failure_violation(precondition_type(kind), cap(subject), description),
            )
        }
        Error::PermissionDenied(m) => info(Code::PermissionDenied, m, "AWS_ACCESS_DENIED"),
        Error::Forbidden(m) => info(Code::PermissionDenied, m, "PERMISSION_MISSING"),
        Error::Unauthenticated(m) => info(Code::Unauthenticated, m, "CREDENTIALS_REFUSED"),
        Error::Unavailable(m) => info(Code::Unavailable, m, "UPSTREAM_UNAVAILABLE"),
        Error::DeadlineExceeded(m) => info(Code::DeadlineExceeded, m, "TIMEOUT"),
        Error::Aborted(m) => info(Code::Aborted, m, "CONCURRENT_MODIFICATION"),
        Error::ResourceExhausted(m) => info(Code::ResourceExhausted, m, "AWS_LIMIT_EXCEEDED"),
        Error::Unimplemented(m) => info(Code::Unimplemented, m, "AWS_OPERATION_UNSUPPORTED"),
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
        cap(message),
        ErrorDetails::with_error_info(reason, DOMAIN, std::collections::HashMap::<String, String>::new()),
    )
}

/// The `PreconditionFailure` violation type of a refusal.
pub fn precondition_type(p: Precondition) -> &'static str {
    match p {
        Precondition::AlreadyRotated => "ALREADY_ROTATED",
        Precondition::AwsAccountChanged => "AWS_ACCOUNT_CHANGED",
        Precondition::AwsConnectionSettings => "AWS_CONNECTION_SETTINGS",
        Precondition::AwsCredentialsRejected => "AWS_CREDENTIALS_REJECTED",
        Precondition::AwsImport => "AWS_IMPORT",
        Precondition::AwsKeyState => "AWS_KEY_STATE",
        Precondition::AwsManagedKey => "AWS_MANAGED_KEY",
        Precondition::CopyNeedsSource => "COPY_NEEDS_SOURCE",
        Precondition::CopySource => "COPY_SOURCE",
        Precondition::CryptoPolicy => "CRYPTO_POLICY",
        Precondition::GroupNotEmpty => "GROUP_NOT_EMPTY",
        Precondition::SealedValue => "SEALED_VALUE",
        Precondition::KeyOps => "KEY_OPS",
        Precondition::KeySource => "KEY_SOURCE",
        Precondition::KeySpec => "KEY_SPEC",
        Precondition::KeyState => "KEY_STATE",
        Precondition::OwnPrincipal => "OWN_PRINCIPAL",
        Precondition::NotAwsKmsGroup => "NOT_AWS_KMS_GROUP",
        Precondition::NotKeywardKey => "NOT_KEYWARD_KEY",
        Precondition::NotVirtual => "NOT_VIRTUAL",
        Precondition::NoSource => "NO_SOURCE",
        Precondition::UnmanagedAlias => "UNMANAGED_ALIAS",
        Precondition::Unrecoverable => "UNRECOVERABLE",
    }
}

/// How the audit log shows an action: the full gRPC method name, and `keyward.worker/<Job>`
/// for the worker's jobs.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::CreateGroup => "keyward.v1.GroupService/CreateGroup",
        Action::UpdateGroup => "keyward.v1.GroupService/UpdateGroup",
        Action::DeleteGroup => "keyward.v1.GroupService/DeleteGroup",
        Action::TestConnection => "keyward.v1.GroupService/TestConnection",
        Action::SyncKeys => "keyward.v1.GroupService/SyncKeys",
        Action::CreateKey => "keyward.v1.KeyService/CreateKey",
        Action::UpdateKey => "keyward.v1.KeyService/UpdateKey",
        Action::ScheduleKeyDeletion => "keyward.v1.KeyService/ScheduleKeyDeletion",
        Action::CancelKeyDeletion => "keyward.v1.KeyService/CancelKeyDeletion",
        Action::DeleteKey => "keyward.v1.KeyService/DeleteKey",
        Action::ImportKey => "keyward.v1.KeyService/ImportKey",
        Action::CopyKey => "keyward.v1.KeyService/CopyKey",
        Action::DeleteKeyMaterial => "keyward.v1.KeyService/DeleteKeyMaterial",
        Action::ReimportKeyMaterial => "keyward.v1.KeyService/ReimportKeyMaterial",
        Action::RotateKey => "keyward.v1.KeyService/RotateKey",
        Action::RotationStep => "keyward.rotation/Step",
        Action::RecoverOperation => "keyward.worker/RecoverOperation",
        Action::Reseal => "keyward.admin/Reseal",
        Action::ScheduledSync => "keyward.worker/ScheduledSync",
        Action::DeletionCheck => "keyward.worker/DeletionWindowCheck",
        Action::ScheduledRotation => "keyward.worker/ScheduledRotation",
        Action::CreatePrincipal => "keyward.v1.PrincipalService/CreatePrincipal",
        Action::UpdatePrincipal => "keyward.v1.PrincipalService/UpdatePrincipal",
        Action::DisablePrincipal => "keyward.v1.PrincipalService/DisablePrincipal",
        Action::EnablePrincipal => "keyward.v1.PrincipalService/EnablePrincipal",
        Action::CreateApiKey => "keyward.v1.PrincipalService/CreateApiKey",
        Action::RevokeApiKey => "keyward.v1.PrincipalService/RevokeApiKey",
        Action::CreateMembership => "keyward.v1.PrincipalService/CreateMembership",
        Action::UpdateMembership => "keyward.v1.PrincipalService/UpdateMembership",
        Action::DeleteMembership => "keyward.v1.PrincipalService/DeleteMembership",
        Action::BootstrapAdmin => "keyward.admin/BootstrapAdmin",
        Action::Authorize => "keyward.access/Authorize",
        Action::Encrypt => "keyward.v1.CryptoService/Encrypt",
        Action::Decrypt => "keyward.v1.CryptoService/Decrypt",
        Action::WrapKey => "keyward.v1.CryptoService/WrapKey",
        Action::UnwrapKey => "keyward.v1.CryptoService/UnwrapKey",
        Action::GetPublicKey => "keyward.v1.CryptoService/GetPublicKey",
        Action::Sign => "keyward.v1.CryptoService/Sign",
        Action::Verify => "keyward.v1.CryptoService/Verify",
        Action::GenerateMac => "keyward.v1.CryptoService/GenerateMac",
        Action::VerifyMac => "keyward.v1.CryptoService/VerifyMac",
        Action::GenerateDataKey => "keyward.v1.CryptoService/GenerateDataKey",
        Action::GenerateDataKeyWithoutPlaintext => "keyward.v1.CryptoService/GenerateDataKeyWithoutPlaintext",
        Action::GenerateDataKeyPair => "keyward.v1.CryptoService/GenerateDataKeyPair",
        Action::ReEncrypt => "keyward.v1.CryptoService/ReEncrypt",
        Action::DeriveSharedSecret => "keyward.v1.CryptoService/DeriveSharedSecret",
    }
}

/// A request field that does not parse.
pub fn invalid(field: &str, description: impl Into<String>) -> Status {
    to_status(Error::invalid(field, description))
}

pub use keyward_proto::code_name;

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_shared::domain::FieldViolation as Fv;

    #[test]
    fn every_error_maps_to_the_code_it_names() {
        let errors = vec![
            Error::InvalidArgument(vec![Fv::new("f", "bad")]),
            Error::not_found("groups/x"),
            Error::AlreadyExists { resource: "x".into(), message: "taken".into() },
            Error::precondition(Precondition::KeyState, "s", "d"),
            Error::PermissionDenied("p".into()),
            Error::Forbidden("f".into()),
            Error::Unauthenticated("c".into()),
            Error::Unimplemented("i".into()),
            Error::Unavailable("u".into()),
            Error::DeadlineExceeded("t".into()),
            Error::Aborted("a".into()),
            Error::ResourceExhausted("r".into()),
            Error::internal("boom: secret library text"),
        ];
        for e in errors {
            let name = e.code_name();
            let status = to_status(e);
            assert_eq!(code_name(status.code()), name);
            assert!(!status.message().contains("boom"), "internal text leaked: {}", status.message());
        }
    }

    #[test]
    fn long_texts_are_capped() {
        let s = to_status(Error::invalid("f", "x".repeat(100_000)));
        assert!(s.message().len() < 2 * MAX_TEXT);
    }
}

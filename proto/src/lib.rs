//! Keyward's gRPC API, package `keyward.v1`, generated from `proto/keyward/v1/*.proto`.

/// Messages and services of `keyward.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("keyward.v1");
}

/// The encoded `FileDescriptorSet` of every Keyward proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("keyward_descriptor");

/// The protobuf name of a gRPC code (`INVALID_ARGUMENT`): what the audit log records as an
/// outcome, the metrics label a request with, and the CLI prints.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_names_follow_grpc_numbering() {
        use super::code_name;
        assert_eq!(code_name(tonic::Code::from(0)), "OK");
        assert_eq!(code_name(tonic::Code::from(5)), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::from(16)), "UNAUTHENTICATED");
        assert_eq!(code_name(tonic::Code::from(17)), "UNKNOWN");
        assert_eq!(code_name(tonic::Code::from(-1)), "UNKNOWN");
    }
}

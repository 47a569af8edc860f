//! Assertions on gRPC errors shared by the suites: the code and the google.rpc details.

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// INVALID_ARGUMENT whose BadRequest names `field`; returns the violation's description.
#[track_caller]
pub fn invalid_on(err: &Status, field: &str, what: &str) -> String {
    assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    let details = err.get_error_details();
    let br = details.bad_request().unwrap_or_else(|| panic!("{what}: no BadRequest in {err:?}"));
    let v = br
        .field_violations
        .iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("{what}: no violation on {field:?}: {:?}", br.field_violations));
    v.description.clone()
}

/// FAILED_PRECONDITION with a PreconditionFailure violation of `kind`; returns the message.
#[track_caller]
pub fn precondition(err: &Status, kind: &str, what: &str) -> String {
    assert_eq!(err.code(), Code::FailedPrecondition, "{what}: {err:?}");
    let details = err.get_error_details();
    let pf = details.precondition_failure().unwrap_or_else(|| panic!("{what}: no PreconditionFailure in {err:?}"));
    assert!(pf.violations.iter().any(|v| v.r#type == kind), "{what}: violations {:?}", pf.violations);
    err.message().to_owned()
}

/// The fields named by the BadRequest of `err` (none when it has no BadRequest).
pub fn fields(err: &Status) -> Vec<String> {
    err.get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

//! Every AWS KMS error code of Keyward's table (`kms::aws::AWS_ERRORS`) answered by AWS, as AWS
//! sends it (through an HTTP front before the emulator, so the real SDK parses it), reaches the
//! caller as the gRPC code the README's error table gives it, and changes nothing. Codes the
//! table does not know follow its stated rule: 5xx UNAVAILABLE, anything else INTERNAL.

use std::collections::{BTreeSet, HashMap};

use keyward_proto::v1 as pb;
use keyward_shared::kms::aws::{AWS_ERRORS, Timeouts};
use keyward_tests::fixtures::aws_group;
use keyward_tests::front::KmsFront;
use keyward_tests::{Options, TestApp};
use tonic::Code;

/// The README's table, row by row: AWS error code, the HTTP status AWS sends it with (AWS's
/// model), the gRPC code the caller gets.
const ROWS: &[(&str, u16, Code)] = &[
    ("AlreadyExistsException", 409, Code::AlreadyExists),
    ("CloudHsmClusterInvalidConfigurationException", 400, Code::Internal),
    ("ConflictException", 409, Code::Aborted),
    ("CustomKeyStoreInvalidStateException", 400, Code::Internal),
    ("CustomKeyStoreNotFoundException", 400, Code::Internal),
    ("DependencyTimeoutException", 503, Code::Unavailable),
    ("DisabledException", 409, Code::FailedPrecondition),
    ("DryRunOperationException", 412, Code::Internal),
    ("ExpiredImportTokenException", 400, Code::InvalidArgument),
    ("IncorrectKeyException", 400, Code::InvalidArgument),
    ("IncorrectKeyMaterialException", 400, Code::InvalidArgument),
    ("InvalidAliasNameException", 400, Code::InvalidArgument),
    ("InvalidArnException", 400, Code::InvalidArgument),
    ("InvalidCiphertextException", 400, Code::InvalidArgument),
    ("InvalidGrantTokenException", 400, Code::InvalidArgument),
    ("InvalidImportTokenException", 400, Code::InvalidArgument),
    ("InvalidKeyUsageException", 400, Code::InvalidArgument),
    ("InvalidMarkerException", 400, Code::InvalidArgument),
    ("KMSInternalException", 500, Code::Unavailable),
    ("KMSInvalidMacException", 400, Code::InvalidArgument),
    ("KMSInvalidSignatureException", 400, Code::InvalidArgument),
    ("KMSInvalidStateException", 409, Code::FailedPrecondition),
    ("KeyUnavailableException", 500, Code::Unavailable),
    ("LimitExceededException", 400, Code::ResourceExhausted),
    ("MalformedPolicyDocumentException", 400, Code::InvalidArgument),
    ("NotFoundException", 404, Code::NotFound),
    ("TagException", 400, Code::InvalidArgument),
    ("UnsupportedOperationException", 400, Code::Unimplemented),
    ("XksKeyAlreadyInUseException", 400, Code::Internal),
    ("XksKeyInvalidConfigurationException", 400, Code::Internal),
    ("XksKeyNotFoundException", 400, Code::Internal),
    ("AccessDeniedException", 400, Code::PermissionDenied),
    ("AccessDenied", 403, Code::PermissionDenied),
    ("NotAuthorized", 400, Code::PermissionDenied),
    ("OptInRequired", 403, Code::PermissionDenied),
    ("IncompleteSignature", 400, Code::FailedPrecondition),
    ("InvalidClientTokenId", 403, Code::FailedPrecondition),
    ("UnrecognizedClientException", 400, Code::FailedPrecondition),
    ("InvalidSignatureException", 400, Code::FailedPrecondition),
    ("SignatureDoesNotMatch", 403, Code::FailedPrecondition),
    ("ExpiredTokenException", 400, Code::FailedPrecondition),
    ("MissingAuthenticationToken", 403, Code::FailedPrecondition),
    ("RequestExpired", 400, Code::FailedPrecondition),
    ("InternalFailure", 500, Code::Unavailable),
    ("ServiceUnavailable", 503, Code::Unavailable),
    ("ThrottlingException", 400, Code::Unavailable),
    ("Throttling", 400, Code::Unavailable),
    ("RequestAbortedException", 400, Code::Unavailable),
    ("RequestTimeoutException", 408, Code::DeadlineExceeded),
    ("ValidationError", 400, Code::InvalidArgument),
    ("ValidationException", 400, Code::InvalidArgument),
    ("InvalidParameterValue", 400, Code::InvalidArgument),
    ("InvalidParameterCombination", 400, Code::InvalidArgument),
    ("MissingParameter", 400, Code::InvalidArgument),
    ("MalformedHttpRequestException", 400, Code::InvalidArgument),
    ("RequestEntityTooLargeException", 413, Code::InvalidArgument),
    ("InvalidAction", 400, Code::Unimplemented),
    ("UnknownOperationException", 404, Code::Unimplemented),
];

/// Codes no table row names: by HTTP status.
const UNKNOWN: &[(&str, u16, Code)] = &[
    ("SomethingNewException", 400, Code::Internal),
    ("SomethingNewException", 409, Code::Internal),
    ("SomethingNewFault", 500, Code::Unavailable),
    ("SomethingNewFault", 503, Code::Unavailable),
];

#[test]
fn the_rows_here_are_the_rows_of_the_table() {
    let table: BTreeSet<&str> = AWS_ERRORS.iter().map(|(c, _, _)| *c).collect();
    let here: BTreeSet<&str> = ROWS.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(table.len(), AWS_ERRORS.len(), "a code listed twice in AWS_ERRORS");
    assert_eq!(here.len(), ROWS.len(), "a code listed twice here");
    assert_eq!(table, here, "AWS_ERRORS and this test's rows differ");
    assert!(UNKNOWN.iter().all(|(c, _, _)| !table.contains(c)));
}

#[tokio::test]
async fn every_aws_error_reaches_the_caller_as_its_row_says_and_changes_nothing() {
    // One attempt per call, so retryable rows answer at once.
    let opts = Options { timeouts: Timeouts { max_attempts: 1, ..Options::default().timeouts }, ..Default::default() };
    let mut app = TestApp::spawn_with(opts).await;
    let front = KmsFront::start(&app.emulator_url, HashMap::new()).await;
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    let g = app.create_group(aws_group("errors", cfg)).await.expect("group");
    let key = app.create_sym_key(&g.name, "k").await;
    for &(code, status, expected) in ROWS.iter().chain(UNKNOWN) {
        front.fail_next("UpdateKeyDescription", 1, status, code);
        let mut edit = key.clone();
        edit.description = format!("not after {code}");
        let e = app.update_key(edit, &["description"]).await.expect_err(code);
        assert_eq!(e.code(), expected, "{code} (HTTP {status}): {e:?}");
        // AWS's message reaches the caller, except behind INTERNAL (the server log has it).
        let shown = e.message().contains("from the test front");
        assert_eq!(shown, expected != Code::Internal, "{code}: {}", e.message());
        assert!(!e.message().contains(&app.secret_access_key), "{code}: the secret in {}", e.message());
    }
    let after = app.get_key(&key.name).await;
    assert_eq!(after.description, key.description, "a refused update changed the key");
    assert_eq!(app.aws_meta(&keyward_tests::fixtures::aws_id(&key)).await.description(), Some(&*key.description));
    // The front failed one request per row: the next update goes through to AWS.
    let mut edit = after.clone();
    edit.description = "through".into();
    assert_eq!(app.update_key(edit, &["description"]).await.expect("update").description, "through");
}

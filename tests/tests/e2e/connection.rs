//! TestConnection end to end: the real server over gRPC, the real KMS emulator (plain, or behind a
//! loopback TLS front with its own CA, host name and optional mutual TLS), and endpoints that
//! refuse, never answer or do not resolve. Every outcome is a ConnectionStatus (never INTERNAL)
//! whose message says what to fix.

use std::time::{Duration, Instant};

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_group, mask};
use keyward_tests::tls_front::{FrontOptions, SilentListener, TestCa, TlsFront, closed_port_url, silent_listener};
use tonic_types::StatusExt;

const CONNECTED: i32 = pb::ConnectionState::Connected as i32;
const NOT_CONNECTED: i32 = pb::ConnectionState::NotConnected as i32;
const UNKNOWN: i32 = pb::ConnectionState::Unknown as i32;

/// TestConnection of an unsaved configuration; any gRPC error fails the test.
async fn probe(app: &mut TestApp, config: pb::AwsKmsConfig) -> pb::ConnectionStatus {
    app.groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::AwsKms(config)),
        })
        .await
        .expect("TestConnection of a config answers with a status")
        .into_inner()
}

/// TestConnection of a saved group; any gRPC error fails the test.
async fn probe_group(app: &mut TestApp, name: &str) -> pb::ConnectionStatus {
    app.groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(name.into())),
        })
        .await
        .expect("TestConnection of a group answers with a status")
        .into_inner()
}

/// The test account's settings, pointed at `endpoint_url`.
fn config_for(app: &TestApp, endpoint_url: &str) -> pb::AwsKmsConfig {
    pb::AwsKmsConfig { endpoint_url: endpoint_url.into(), ..app.aws_kms_config() }
}

/// GetGroup shows `status` as the group's connection (the outcome of its last test).
async fn assert_stored(app: &mut TestApp, name: &str, status: &pb::ConnectionStatus) {
    let stored = app.get_group(name).await.connection.expect("stored connection");
    assert_eq!((stored.state, &stored.message), (status.state, &status.message), "{stored:?}");
    // The same instant; PostgreSQL keeps microseconds, so the stored time may lack the
    // returned one's nanoseconds.
    let nanos = |t: &Option<prost_types::Timestamp>| {
        let t = t.expect("check_time");
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
    };
    let drift = (nanos(&stored.check_time) - nanos(&status.check_time)).abs();
    assert!(drift < 1_000, "stored {:?}, returned {:?}", stored.check_time, status.check_time);
}

#[track_caller]
fn assert_connected(status: &pb::ConnectionStatus, endpoint: &str) {
    assert_eq!(status.state, CONNECTED, "{status:?}");
    assert_eq!(status.message, format!("connected to {endpoint} ({})", keyward_tests::REGION), "{status:?}");
    assert!(status.check_time.is_some(), "{status:?}");
}

#[track_caller]
fn assert_not_connected(status: &pb::ConnectionStatus) {
    assert_eq!(status.state, NOT_CONNECTED, "{status:?}");
    assert!(status.check_time.is_some(), "{status:?}");
}

const UNTRUSTED: &str = "TLS: the server certificate is not signed by a trusted CA (";

#[tokio::test]
async fn emulator_config_connects() {
    let mut app = TestApp::spawn().await;
    let config = app.aws_kms_config();
    let status = probe(&mut app, config).await;
    assert_connected(&status, &app.emulator_url);
}

#[tokio::test]
async fn saved_group_connects_and_the_status_is_stored() {
    let mut app = TestApp::spawn().await;
    let group = app.create_aws_group("connection-saved").await;
    let before = group.connection.clone().expect("connection on a new group");
    assert_eq!(before.state, UNKNOWN, "{before:?}");

    let status = probe_group(&mut app, &group.name).await;
    assert_connected(&status, &app.emulator_url);

    assert_stored(&mut app, &group.name, &status).await;
}

#[tokio::test]
async fn tls_front_with_its_ca_connects() {
    let mut app = TestApp::spawn().await;
    let front = TlsFront::start(&app.emulator_url, FrontOptions::default());
    let config = pb::AwsKmsConfig { ca_certificate_pem: front.ca_pem.clone(), ..config_for(&app, &front.url) };
    let status = probe(&mut app, config).await;
    assert_connected(&status, &front.url);
    assert!(front.url.starts_with("https://localhost:"), "{}", front.url);
    assert!(front.handshakes() >= 1, "the call went through the TLS front");
}

#[tokio::test]
async fn tls_front_ca_not_given_is_not_trusted() {
    let mut app = TestApp::spawn().await;
    let front = TlsFront::start(&app.emulator_url, FrontOptions::default());
    // No CA: only the public web PKI roots, which do not know the test CA.
    let config = config_for(&app, &front.url);
    let status = probe(&mut app, config).await;
    assert_not_connected(&status);
    assert!(status.message.starts_with(UNTRUSTED), "{}", status.message);
    assert_eq!(front.handshakes(), 0, "no TLS session may be set up with an untrusted server");
}

#[tokio::test]
async fn tls_front_other_ca_is_not_trusted() {
    let mut app = TestApp::spawn().await;
    let front = TlsFront::start(&app.emulator_url, FrontOptions::default());
    let other = TestCa::new("Some other CA");
    let config = pb::AwsKmsConfig { ca_certificate_pem: other.pem(), ..config_for(&app, &front.url) };
    let status = probe(&mut app, config).await;
    assert_not_connected(&status);
    assert!(status.message.starts_with(UNTRUSTED), "{}", status.message);
    assert_eq!(front.handshakes(), 0, "no TLS session may be set up with an untrusted server");
}

#[tokio::test]
async fn host_mismatch_fails_unless_validate_host_is_off() {
    let mut app = TestApp::spawn().await;
    // The certificate names other.example; the URL says localhost.
    let front = TlsFront::start(&app.emulator_url, FrontOptions::cert_for("other.example"));
    let base = pb::AwsKmsConfig { ca_certificate_pem: front.ca_pem.clone(), ..config_for(&app, &front.url) };
    let mismatch =
        "TLS: the server certificate does not match host localhost (turn validate_host off only if you must)";

    for validate_host in [None, Some(true)] {
        let status = probe(&mut app, pb::AwsKmsConfig { validate_host, ..base.clone() }).await;
        assert_not_connected(&status);
        assert_eq!(status.message, mismatch, "validate_host {validate_host:?}");
    }
    assert_eq!(front.handshakes(), 0);

    let status = probe(&mut app, pb::AwsKmsConfig { validate_host: Some(false), ..base.clone() }).await;
    assert_connected(&status, &front.url);
    assert!(front.handshakes() >= 1);

    // validate_host off skips only the name check: the chain is still verified.
    let other = TestCa::new("Some other CA");
    let status = probe(
        &mut app,
        pb::AwsKmsConfig { validate_host: Some(false), ca_certificate_pem: other.pem(), ..base.clone() },
    )
    .await;
    assert_not_connected(&status);
    assert!(status.message.starts_with(UNTRUSTED), "{}", status.message);
}

#[tokio::test]
async fn closed_port_is_refused() {
    let mut app = TestApp::spawn().await;
    let url = closed_port_url();
    let config = config_for(&app, &url);
    let status = probe(&mut app, config).await;
    assert_not_connected(&status);
    let host_port = url.strip_prefix("http://").expect("http url");
    assert_eq!(status.message, format!("connection refused by {host_port}"));
}

/// Probes `url` (served by `_silent`) and returns the status and how long the call took.
async fn probe_silent(app: &mut TestApp, _silent: &SilentListener, url: &str) -> (pb::ConnectionStatus, Duration) {
    let config = config_for(app, url);
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), probe(app, config))
        .await
        .expect("TestConnection must not hang on a silent endpoint");
    (status, started.elapsed())
}

#[tokio::test]
async fn silent_tls_endpoint_times_out_quickly() {
    let mut app = TestApp::spawn().await;
    let silent = silent_listener();
    let url = silent.https_url();
    // TCP connects, the TLS handshake never completes: the connect timeout (2 s here) ends it.
    let (status, elapsed) = probe_silent(&mut app, &silent, &url).await;
    assert_not_connected(&status);
    assert_eq!(status.message, format!("timed out connecting to {url}"));
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[tokio::test]
async fn silent_http_endpoint_times_out_quickly() {
    let mut app = TestApp::spawn().await;
    let silent = silent_listener();
    let url = silent.http_url();
    // The request is sent, no answer ever comes: the probe's attempt limit (~5 s) ends it.
    let (status, elapsed) = probe_silent(&mut app, &silent, &url).await;
    assert_not_connected(&status);
    assert!(status.message.starts_with(&format!("timed out waiting for {url}")), "{}", status.message);
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[tokio::test]
async fn unknown_host_is_a_dns_failure() {
    let mut app = TestApp::spawn().await;
    // `.invalid` never resolves (RFC 6761).
    let config = config_for(&app, "https://kms.keyward-test.invalid");
    let status = probe(&mut app, config).await;
    assert_not_connected(&status);
    assert_eq!(status.message, "DNS lookup failed for kms.keyward-test.invalid");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let mut app = TestApp::spawn().await;
    let front = TlsFront::start(&app.emulator_url, FrontOptions::mutual_tls());
    let client = front.client.clone().expect("a mutual-TLS front makes a client certificate");
    let base = pb::AwsKmsConfig { ca_certificate_pem: front.ca_pem.clone(), ..config_for(&app, &front.url) };

    let status = probe(&mut app, base.clone()).await;
    assert_not_connected(&status);
    assert_eq!(
        status.message,
        "TLS: received fatal alert: CertificateRequired (the server wants a client certificate)"
    );

    // A client certificate from a CA the server does not trust is refused too.
    let stranger = TestCa::new("Stranger CA").client_cert("keyward-client");
    let status = probe(
        &mut app,
        pb::AwsKmsConfig {
            client_certificate_pem: stranger.cert_pem,
            client_private_key_pem: stranger.key_pem,
            ..base.clone()
        },
    )
    .await;
    assert_not_connected(&status);
    assert_eq!(status.message, "TLS: received fatal alert: UnknownCA");
    assert_eq!(front.handshakes(), 0, "the front accepted no client so far");

    let status = probe(
        &mut app,
        pb::AwsKmsConfig { client_certificate_pem: client.cert_pem, client_private_key_pem: client.key_pem, ..base },
    )
    .await;
    assert_connected(&status, &front.url);
    assert!(front.handshakes() >= 1);
}

#[tokio::test]
async fn saved_mutual_tls_group_connects() {
    let mut app = TestApp::spawn().await;
    let front = TlsFront::start(&app.emulator_url, FrontOptions::mutual_tls());
    let client = front.client.clone().expect("client certificate");
    let config = pb::AwsKmsConfig {
        ca_certificate_pem: front.ca_pem.clone(),
        client_certificate_pem: client.cert_pem,
        client_private_key_pem: client.key_pem,
        ..config_for(&app, &front.url)
    };
    let group = app.create_group(aws_group("connection-mtls", config)).await.expect("create group");
    let aws = group.aws_kms.clone().expect("aws_kms");
    assert!(aws.client_private_key_set && aws.client_private_key_pem.is_empty(), "{aws:?}");

    // The sealed private key is unsealed and presented.
    let status = probe_group(&mut app, &group.name).await;
    assert_connected(&status, &front.url);
    assert_stored(&mut app, &group.name, &status).await;
}

#[tokio::test]
async fn changing_the_endpoint_resets_the_connection_state() {
    let mut app = TestApp::spawn().await;
    let group = app.create_aws_group("connection-reset").await;
    let status = probe_group(&mut app, &group.name).await;
    assert_connected(&status, &app.emulator_url);

    // A change that is not a connection detail keeps the state.
    let updated = app
        .groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.name.clone(),
                description: "still connected".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
        })
        .await
        .expect("update description")
        .into_inner();
    assert_eq!(updated.connection.map(|c| c.state), Some(CONNECTED));

    let closed = closed_port_url();
    let updated = app
        .groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: group.name.clone(),
                aws_kms: Some(pb::AwsKmsConfig { endpoint_url: closed.clone(), ..Default::default() }),
                ..Default::default()
            }),
            update_mask: mask(&["aws_kms.endpoint_url"]),
        })
        .await
        .expect("update endpoint")
        .into_inner();
    assert_eq!(updated.aws_kms.as_ref().map(|a| a.endpoint_url.as_str()), Some(closed.as_str()));
    assert_eq!(updated.connection.as_ref().map(|c| c.state), Some(UNKNOWN), "{:?}", updated.connection);
    let stored = app.get_group(&group.name).await;
    assert_eq!(stored.connection.as_ref().map(|c| c.state), Some(UNKNOWN), "{:?}", stored.connection);
    // Only the endpoint changed: region, credentials are kept.
    let aws = stored.aws_kms.expect("aws_kms");
    assert_eq!((aws.region.as_str(), aws.access_key_id.as_str()), (keyward_tests::REGION, app.access_key_id.as_str()));
    assert!(aws.secret_access_key_set);

    let status = probe_group(&mut app, &group.name).await;
    assert_not_connected(&status);
    assert!(status.message.starts_with("connection refused by 127.0.0.1:"), "{}", status.message);
    assert_stored(&mut app, &group.name, &status).await;
}

#[tokio::test]
async fn bad_region_is_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let config = pb::AwsKmsConfig { region: "EU-WEST-1a".into(), ..app.aws_kms_config() };
    let err = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::AwsKms(config)),
        })
        .await
        .expect_err("a bad region is rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let bad = err.get_details_bad_request().expect("BadRequest details");
    let fields: Vec<&str> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["aws_kms.region"], "{bad:?}");
    assert!(err.message().contains("aws_kms.region"), "{}", err.message());
}

#[tokio::test]
async fn missing_secret_is_not_connected() {
    let mut app = TestApp::spawn().await;
    let expected = "invalid connection settings: secret_access_key is not set";

    let config = pb::AwsKmsConfig { secret_access_key: String::new(), ..app.aws_kms_config() };
    let status = probe(&mut app, config.clone()).await;
    assert_not_connected(&status);
    assert_eq!(status.message, expected);

    // A group saved without a secret: the same answer, stored on the group.
    let group =
        app.create_group(aws_group("connection-no-secret", config)).await.expect("a group saves without its secret");
    assert_eq!(group.aws_kms.as_ref().map(|a| a.secret_access_key_set), Some(false));
    let status = probe_group(&mut app, &group.name).await;
    assert_not_connected(&status);
    assert_eq!(status.message, expected);
    assert_stored(&mut app, &group.name, &status).await;
}

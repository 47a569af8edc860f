//! Prometheus metrics: a real server process serves `/metrics` as Prometheus text, and its
//! counters and gauges move with the requests, AWS calls (a throttled answer included), syncs
//! and estate changes that feed them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::aws_group;
use keyward_tests::front::KmsFront;
use keyward_tests::process::ServerProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const SERVER: &str = env!("CARGO_BIN_EXE_keyward-test-server");

/// `GET path` over HTTP/1.1: the status code and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the metrics listener");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, body.to_owned())
}

/// The scrape, parsed as Prometheus text (a line that does not parse fails the test).
async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    for line in body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("`name value`");
        assert!(name.starts_with("keyward_"), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("not a number in {line:?}"));
    }
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// The value of sample `name` whose labels include `labels` (0 when there is none).
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => *v,
            prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(b) => b.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests_aws_calls_syncs_and_the_estate() {
    let app = TestApp::spawn().await;
    let front = KmsFront::start(&app.emulator_url, HashMap::new()).await;
    let server = ServerProcess::start_metered(SERVER, &app).await;
    let at = server.metrics_addr.expect("a metrics listener");
    let (mut groups, mut keys) = (server.groups(&app), server.keys(&app));
    for _ in 0..3 {
        app.aws.create_key().send().await.expect("seed");
    }
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    let g = groups
        .create_group(pb::CreateGroupRequest { group: Some(aws_group("metered", cfg)) })
        .await
        .expect("group")
        .into_inner();
    let gid = g.name.trim_start_matches("groups/").to_owned();
    let before = scrape(at).await;

    front.throttle_next("ListKeys", 1);
    let run = groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect("sync, the throttled ListKeys retried")
        .into_inner();
    assert_eq!((run.state, run.added), (pb::SyncRunState::Succeeded as i32, 3));
    let missing = format!("{}/keys/{}", g.name, uuid::Uuid::now_v7());
    let e = keys.get_key(pb::GetKeyRequest { name: missing }).await.expect_err("no such key");
    assert_eq!(e.code(), Code::NotFound);
    let listed = keys
        .list_keys(pb::ListKeysRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .keys;
    keys.schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
        name: listed[0].name.clone(),
        pending_window_days: 7,
        ..Default::default()
    })
    .await
    .expect("schedule deletion");

    let after = scrape(at).await;
    let moved = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let sync_keys = [("method", "/keyward.v1.GroupService/SyncKeys"), ("code", "OK")];
    assert_eq!(moved("keyward_grpc_requests_total", &sync_keys), 1.0);
    let get_key = [("method", "/keyward.v1.KeyService/GetKey"), ("code", "NOT_FOUND")];
    assert_eq!(moved("keyward_grpc_requests_total", &get_key), 1.0);
    assert_eq!(moved("keyward_grpc_request_duration_seconds", &[("method", "/keyward.v1.GroupService/SyncKeys")]), 1.0);
    assert_eq!(moved("keyward_aws_throttled_total", &[("operation", "ListKeys")]), 1.0);
    assert!(moved("keyward_aws_calls_total", &[("operation", "ListKeys"), ("outcome", "ok")]) >= 1.0);
    assert!(moved("keyward_aws_calls_total", &[("operation", "DescribeKey"), ("outcome", "ok")]) >= 3.0);
    assert!(moved("keyward_aws_call_duration_seconds", &[("operation", "ScheduleKeyDeletion")]) >= 1.0);
    let group = gid.as_str();
    assert_eq!(value(&after, "keyward_sync_runs_total", &[("group", group), ("state", "SUCCEEDED")]), 1.0);
    assert_eq!(value(&after, "keyward_sync_keys_total", &[("group", group), ("result", "added")]), 3.0);

    // The estate pass (every 100 ms here) sees the key pending deletion.
    let mut estate = after;
    for _ in 0..50 {
        if value(&estate, "keyward_keys_pending_deletion", &[]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        estate = scrape(at).await;
    }
    assert_eq!(value(&estate, "keyward_keys_pending_deletion", &[]), 1.0);
    assert_eq!(value(&estate, "keyward_keys", &[("group", group), ("state", "ENABLED")]), 2.0);
    assert_eq!(value(&estate, "keyward_keys", &[("group", group), ("state", "PENDING_DELETION")]), 1.0);
    let next = value(&estate, "keyward_next_key_deletion_timestamp_seconds", &[]);
    let in_seven_days = (time::OffsetDateTime::now_utc() + time::Duration::days(7)).unix_timestamp() as f64;
    assert!((next - in_seven_days).abs() < 3600.0, "next deletion {next}, expected about {in_seven_days}");
    assert_eq!(value(&estate, "keyward_imported_material_expiring_30d", &[]), 0.0);

    // Only /metrics is served; a path the gRPC server does not know is counted as `other`.
    assert_eq!(get(at, "/").await.0, 404);
    let unknown = keyward_tests::conn(server.addr, &app.admin_token);
    let mut grpc = tonic::client::Grpc::new(unknown);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/keyward.v1.KeyService/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<pb::GetKeyRequest, pb::Key>::default();
    let e =
        grpc.unary(tonic::Request::new(pb::GetKeyRequest::default()), path, codec).await.expect_err("no such method");
    assert_eq!(e.code(), Code::Unimplemented);
    let last = scrape(at).await;
    let other = [("method", "other"), ("code", "UNIMPLEMENTED")];
    assert_eq!(value(&last, "keyward_grpc_requests_total", &other), 1.0);
    assert!(!last.samples.iter().any(|s| s.labels.get("method").is_some_and(|m| m.contains("NoSuchMethod"))));

    // Drift: a key disabled in AWS behind Keyward's back, found by the next sync.
    let aws_key = listed[1].aws.as_ref().expect("aws").aws_key_id.clone();
    app.aws.disable_key().key_id(&aws_key).send().await.expect("disable in AWS");
    let drift = [("group", group), ("field", "state")];
    let was = value(&last, "keyward_sync_drift_changes_total", &drift);
    groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }).await.expect("resync");
    assert_eq!(value(&scrape(at).await, "keyward_sync_drift_changes_total", &drift) - was, 1.0);
}

//! Secrets at rest and in flight: the secret access key and client private key never come back
//! in a response, never sit in the database in plaintext, and never reach a log (TRACE level).

use keyward_proto::v1 as pb;
use keyward_tests::fixtures::{aws_group, mask};
use keyward_tests::{TestApp, logs};
use prost::Message;

#[tokio::test]
async fn secrets_never_leave_sealed() {
    let mut app = TestApp::spawn().await;
    let private_key = format!(
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI{}\n-----END PRIVATE KEY-----\n",
        uuid::Uuid::new_v4().simple()
    );
    let key_marker = private_key.lines().nth(1).expect("body line").to_owned();
    let mut cfg = app.aws_kms_config();
    cfg.client_private_key_pem = private_key.clone();
    let g = app.create_group(aws_group("sealed", cfg.clone())).await.expect("create");
    let plain = app.create_aws_group("plain").await;

    // Exercise every path that touches the secrets.
    app.aws.create_key().send().await.expect("seed");
    app.sync(&plain.name).await;
    let tested = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
        })
        .await
        .expect("test")
        .into_inner();
    let unsaved = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::AwsKms(cfg.clone())),
        })
        .await
        .expect("test unsaved")
        .into_inner();
    let mut responses = Vec::new();
    let got = app.get_group(&g.name).await;
    let aws = got.aws_kms.clone().expect("aws");
    assert!(aws.secret_access_key.is_empty() && aws.secret_access_key_set);
    assert!(aws.client_private_key_pem.is_empty() && aws.client_private_key_set);
    responses.push(got.encode_to_vec());
    let list = app.groups.list_groups(pb::ListGroupsRequest::default()).await.expect("list").into_inner();
    assert_eq!(list.groups.len(), 2);
    responses.push(list.encode_to_vec());
    responses.push(tested.encode_to_vec());
    responses.push(unsaved.encode_to_vec());
    let mut patch = got.clone();
    patch.description = "touched".into();
    let upd = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["description"]) })
        .await
        .expect("update")
        .into_inner();
    assert!(upd.aws_kms.as_ref().is_some_and(|a| a.secret_access_key_set), "secret kept across updates");
    responses.push(upd.encode_to_vec());

    let secret = app.secret_access_key.clone();
    for (i, r) in responses.iter().enumerate() {
        let text = String::from_utf8_lossy(r);
        assert!(!text.contains(&secret), "response {i} carries the secret");
        assert!(!text.contains(&key_marker), "response {i} carries the private key");
    }

    // The database: nothing in plaintext, in any table.
    // The database file (and its WAL) is readable by its owner only.
    #[cfg(unix)]
    if let Some(path) = &app.sqlite_path {
        use std::os::unix::fs::PermissionsExt;
        for f in [path.clone(), path.with_extension("db-wal")] {
            if f.exists() {
                let mode = std::fs::metadata(&f).expect("metadata").permissions().mode();
                assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
            }
        }
    }
    let dump = String::from_utf8_lossy(&app.database_dump().await).into_owned();
    assert!(dump.contains("AWS_KMS"), "the dump holds the groups");
    assert!(!dump.contains(&secret), "database holds the secret in plaintext");
    assert!(!dump.contains(&key_marker), "database holds the private key in plaintext");

    // Logs at TRACE level.
    let logs = logs::captured();
    assert!(logs.contains("group created"), "logs were captured");
    assert!(!logs.contains(&secret), "a log line carries the secret");
    assert!(!logs.contains(&key_marker), "a log line carries the private key");
}

//! The walking skeleton end to end: group, connection test, sync, generate.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;

#[tokio::test]
async fn create_group_test_connection_sync_create_key() {
    let mut app = TestApp::spawn().await;
    for i in 0..3 {
        app.aws.create_key().description(format!("seed {i}")).send().await.expect("seed");
    }
    let g = app.create_aws_group("smoke").await;
    let status = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
        })
        .await
        .expect("test connection")
        .into_inner();
    assert_eq!(status.state, pb::ConnectionState::Connected as i32, "{}", status.message);
    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.failed), (3, 3, 0), "{run:?}");
    let key = app
        .keys
        .create_key(pb::CreateKeyRequest {
            parent: g.name.clone(),
            key: Some(pb::Key {
                display_name: "payments".into(),
                key_spec: pb::KeySpec::SymmetricDefault as i32,
                key_ops: vec![pb::KeyOperation::Encrypt as i32, pb::KeyOperation::Decrypt as i32],
                aws: Some(pb::AwsKeyDetails { aliases: vec!["alias/payments".into()], ..Default::default() }),
                ..Default::default()
            }),
        })
        .await
        .expect("create key")
        .into_inner();
    assert_eq!(key.aws.as_ref().map(|a| a.aliases.clone()), Some(vec!["alias/payments".to_owned()]));
    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.updated, run.unchanged), (4, 0, 0, 4), "{run:?}");
}

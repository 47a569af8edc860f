//! GroupService: create (even with wrong or incomplete connection details), read, list with
//! kind filter and paging, update with update_mask and etag, delete only when empty, and every
//! validation rule refusing bad input without writing anything.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use tonic::Code;
use tonic_types::StatusExt;

fn aws_group(name: &str, cfg: pb::AwsKmsConfig) -> pb::Group {
    pb::Group {
        display_name: name.into(),
        kind: pb::GroupKind::AwsKms as i32,
        aws_kms: Some(cfg),
        ..Default::default()
    }
}

async fn count_groups(app: &mut TestApp) -> usize {
    app.groups
        .list_groups(pb::ListGroupsRequest { page_size: 1000, ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .groups
        .len()
}

fn field_of(err: &tonic::Status) -> Vec<String> {
    err.get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn groups_crud_with_masks_etags_and_delete_rules() {
    let mut app = TestApp::spawn().await;
    // Incomplete connection details are saved; the state is UNKNOWN until tested.
    let incomplete = pb::AwsKmsConfig {
        region: "us-east-1".into(),
        endpoint_url: "http://127.0.0.1:1".into(),
        access_key_id: "AKIAEXAMPLE".into(),
        ..Default::default()
    };
    let g = app
        .groups
        .create_group(pb::CreateGroupRequest { group: Some(aws_group("incomplete", incomplete)) })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(g.kind, pb::GroupKind::AwsKms as i32);
    assert_eq!(g.connection.as_ref().map(|c| c.state), Some(pb::ConnectionState::Unknown as i32));
    assert!(!g.aws_kms.as_ref().expect("aws").secret_access_key_set);
    assert_eq!(g.aws_kms.as_ref().and_then(|a| a.validate_host), Some(true), "validate_host defaults to true");
    assert!(g.name.starts_with("groups/") && !g.etag.is_empty());

    let regular = app
        .groups
        .create_group(pb::CreateGroupRequest {
            group: Some(pb::Group {
                display_name: "vault".into(),
                kind: pb::GroupKind::Regular as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("regular")
        .into_inner();
    let real = app.create_aws_group("real").await;

    // Name taken.
    let err = app
        .groups
        .create_group(pb::CreateGroupRequest { group: Some(aws_group("real", app.aws_kms_config())) })
        .await
        .expect_err("dup");
    assert_eq!(err.code(), Code::AlreadyExists);

    // List: filter by kind, pages of one.
    let aws_only = app
        .groups
        .list_groups(pb::ListGroupsRequest { filter: "kind = AWS_KMS".into(), ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .groups;
    assert_eq!(aws_only.len(), 2);
    assert!(aws_only.iter().all(|g| g.kind == pb::GroupKind::AwsKms as i32 && g.connection.is_some()));
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .groups
            .list_groups(pb::ListGroupsRequest { page_size: 1, page_token: token, filter: String::new() })
            .await
            .expect("page")
            .into_inner();
        names.extend(r.groups.into_iter().map(|g| g.name));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(names.len(), 3);
    assert!(names.contains(&regular.name));

    // Update with a mask: only the named field changes; the etag moves.
    let mut patch = g.clone();
    patch.display_name = "renamed".into();
    patch.description = "not in the mask".into();
    let updated = app
        .groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(patch.clone()),
            update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".into()] }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.display_name, "renamed");
    assert_eq!(updated.description, "");
    assert_ne!(updated.etag, g.etag);
    // A stale etag loses.
    let err = app
        .groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(patch.clone()),
            update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(err.code(), Code::Aborted);
    // No mask, unknown path, bad region in the mask.
    for (what, paths, field) in [
        ("no mask", vec![], "update_mask"),
        ("unknown path", vec!["kind".to_owned()], "update_mask"),
        ("bad region", vec!["aws_kms.region".to_owned()], "group.aws_kms.region"),
    ] {
        let mut p = updated.clone();
        p.aws_kms.as_mut().expect("aws").region = "EU-WEST-1".into();
        let err = app
            .groups
            .update_group(pb::UpdateGroupRequest {
                group: Some(p),
                update_mask: Some(prost_types::FieldMask { paths }),
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
        assert!(field_of(&err).iter().any(|f| f == field), "{what}: {:?}", field_of(&err));
    }
    let unchanged = app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect("get").into_inner();
    assert_eq!(unchanged.etag, updated.etag, "refused updates changed nothing");

    // Delete: refused while the group holds keys.
    app.aws.create_key().send().await.expect("seed");
    app.sync(&real.name).await;
    let err = app.groups.delete_group(pb::DeleteGroupRequest { name: real.name.clone() }).await.expect_err("not empty");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.get_error_details().precondition_failure().is_some());
    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone() }).await.expect("delete empty");
    let err = app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let err = app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone() }).await.expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_groups_are_invalid_argument_naming_the_field_and_nothing_is_saved() {
    let mut app = TestApp::spawn().await;
    let good = app.aws_kms_config();
    let with = |f: &dyn Fn(&mut pb::AwsKmsConfig)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, pb::Group, &str)> = vec![
        ("az as region", aws_group("a", with(&|c| c.region = "us-east-1a".into())), "group.aws_kms.region"),
        ("upper-case region", aws_group("a", with(&|c| c.region = "EU-WEST-1".into())), "group.aws_kms.region"),
        ("empty region", aws_group("a", with(&|c| c.region = String::new())), "group.aws_kms.region"),
        (
            "endpoint not a URL",
            aws_group("a", with(&|c| c.endpoint_url = "kms.local".into())),
            "group.aws_kms.endpoint_url",
        ),
        ("ftp endpoint", aws_group("a", with(&|c| c.endpoint_url = "ftp://x".into())), "group.aws_kms.endpoint_url"),
        ("no name", aws_group("", good.clone()), "group.display_name"),
        ("long name", aws_group(&"n".repeat(129), good.clone()), "group.display_name"),
        ("no kind", pb::Group { display_name: "a".into(), ..Default::default() }, "group.kind"),
        (
            "AWS_KMS without settings",
            pb::Group { display_name: "a".into(), kind: pb::GroupKind::AwsKms as i32, ..Default::default() },
            "group.aws_kms",
        ),
        (
            "REGULAR with settings",
            pb::Group {
                display_name: "a".into(),
                kind: pb::GroupKind::Regular as i32,
                aws_kms: Some(good.clone()),
                ..Default::default()
            },
            "group.aws_kms",
        ),
        (
            "sync interval of 1s",
            pb::Group {
                sync_schedule: Some(pb::SyncSchedule {
                    interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                }),
                ..aws_group("a", good.clone())
            },
            "group.sync_schedule.interval",
        ),
    ];
    for (what, group, field) in cases {
        let err = app.groups.create_group(pb::CreateGroupRequest { group: Some(group) }).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(field_of(&err).iter().any(|f| f == field), "{what}: {:?}", field_of(&err));
    }
    let err = app.groups.create_group(pb::CreateGroupRequest { group: None }).await.expect_err("no group");
    assert_eq!(err.code(), Code::InvalidArgument);
    for name in ["", "groups/", "groups/not-a-uuid", "group/x", "groups/../x"] {
        let err = app.groups.get_group(pb::GetGroupRequest { name: name.into() }).await.expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}");
    }
    assert_eq!(count_groups(&mut app).await, 0, "nothing saved");
}

#[tokio::test]
async fn rejected_credentials_are_not_connected_with_a_message_and_failed_precondition_elsewhere() {
    use keyward_shared::kms::Error as KmsError;
    use keyward_shared::kms::faults::Fault;
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("creds").await;
    // The emulator accepts any credentials; AWS answers UnrecognizedClientException.
    app.faults.inject(Fault::Fail {
        op: "list_keys",
        key: None,
        error: KmsError::CredentialsRejected("The security token included in the request is invalid.".into()),
        times: None,
    });
    let status = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
        })
        .await
        .expect("a failed test is an answer, not an error")
        .into_inner();
    assert_eq!(status.state, pb::ConnectionState::NotConnected as i32);
    assert!(status.message.contains("AWS rejected the credentials"), "{}", status.message);
    let err = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }).await.expect_err("rejected");
    assert_eq!(err.code(), Code::FailedPrecondition, "stored AWS credentials rejected: {err:?}");
}

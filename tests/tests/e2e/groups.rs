//! GroupService: create (even with wrong or incomplete connection details), read, list with
//! kind filter and paging, update with update_mask and etag, delete only when empty, and every
//! validation rule refusing bad input (secrets in the wrong fields without echo) without writing
//! anything; a group holding keys stays in its region and account.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_group, interval, mask};
use keyward_tests::status::{fields, invalid_on, precondition};
use pb::KeyOperation as Op;
use tonic::Code;
use tonic_types::StatusExt;

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

    let regular = app.regular_group("vault").await;
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
        .update_group(pb::UpdateGroupRequest { group: Some(patch.clone()), update_mask: mask(&["display_name"]) })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.display_name, "renamed");
    assert_eq!(updated.description, "");
    assert_ne!(updated.etag, g.etag);
    // A stale etag loses.
    let err = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch.clone()), update_mask: mask(&["description"]) })
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
        assert!(fields(&err).iter().any(|f| f == field), "{what}: {:?}", fields(&err));
    }
    let unchanged = app.get_group(&g.name).await;
    assert_eq!(unchanged.etag, updated.etag, "refused updates changed nothing");
    // An unknown path is answered with the paths there are; JSON's camelCase names the field.
    let err = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(unchanged.clone()), update_mask: mask(&["kind"]) })
        .await
        .expect_err("kind cannot change");
    let said: Vec<String> = err
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.description.clone()).collect())
        .unwrap_or_default();
    assert!(said.iter().any(|d| d.contains("\"kind\"") && d.contains("display_name, description")), "{said:?}");
    let mut camel = unchanged.clone();
    camel.description = "from a camelCase path".into();
    let camel = app
        .groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(camel),
            update_mask: mask(&["description", "syncSchedule.interval"]),
        })
        .await
        .expect("camelCase paths")
        .into_inner();
    assert_eq!(camel.description, "from a camelCase path");

    // Delete: refused while the group holds keys.
    app.aws.create_key().send().await.expect("seed");
    app.sync(&real.name).await;
    let err = app
        .groups
        .delete_group(pb::DeleteGroupRequest { name: real.name.clone(), force: false })
        .await
        .expect_err("not empty");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.get_error_details().precondition_failure().is_some());
    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false }).await.expect("delete empty");
    let err = app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let err =
        app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false }).await.expect_err("gone");
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
            pb::Group { sync_schedule: interval(1), ..aws_group("a", good.clone()) },
            "group.sync_schedule.interval",
        ),
    ];
    for (what, group, field) in cases {
        let err = app.groups.create_group(pb::CreateGroupRequest { group: Some(group) }).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(fields(&err).iter().any(|f| f == field), "{what}: {:?}", fields(&err));
    }
    let err = app.groups.create_group(pb::CreateGroupRequest { group: None }).await.expect_err("no group");
    assert_eq!(err.code(), Code::InvalidArgument);
    for name in ["", "groups/", "groups/not-a-uuid", "group/x", "groups/../x"] {
        let err = app.groups.get_group(pb::GetGroupRequest { name: name.into() }).await.expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}");
    }
    assert_eq!(app.list_groups().await.expect("list").len(), 0, "nothing saved");
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
    let err = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("rejected");
    assert_eq!(err.code(), Code::FailedPrecondition, "stored AWS credentials rejected: {err:?}");
}

/// A sync interval too large for a time span is INVALID_ARGUMENT, and ListGroups still works.
#[tokio::test]
async fn a_huge_sync_interval_is_invalid_argument_and_list_groups_still_works() {
    let mut app = TestApp::spawn().await;
    let group = pb::Group {
        display_name: "huge-interval".into(),
        kind: pb::GroupKind::AwsKms as i32,
        aws_kms: Some(app.aws_kms_config()),
        sync_schedule: interval(9_223_372_036_854_775),
        ..Default::default()
    };
    let err = app.create_group(group).await.expect_err("huge interval");
    invalid_on(&err, "group.sync_schedule.interval", "huge interval");
    let groups = app.list_groups().await.expect("ListGroups still works");
    assert!(groups.is_empty(), "nothing was saved: {groups:?}");
}

/// REGULAR groups are not synced: a sync interval on one is refused.
#[tokio::test]
async fn a_regular_group_with_a_sync_interval_is_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let group = pb::Group {
        display_name: "vault".into(),
        kind: pb::GroupKind::Regular as i32,
        sync_schedule: interval(60),
        ..Default::default()
    };
    let err = app.create_group(group).await.expect_err("regular with interval");
    invalid_on(&err, "group.sync_schedule.interval", "regular with interval");
    assert!(app.list_groups().await.expect("list").is_empty());
}

/// Secrets in the wrong fields (a private key as the certificate, credentials in the endpoint
/// URL) are refused without echoing them.
#[tokio::test]
async fn secrets_in_a_certificate_or_an_endpoint_url_are_refused_without_echo() {
    let mut app = TestApp::spawn().await;
    let mut cfg = app.aws_kms_config();
    cfg.client_certificate_pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n".into();
    let err = app.create_group(aws_group("cert", cfg)).await.expect_err("private key as certificate");
    invalid_on(&err, "group.aws_kms.client_certificate_pem", "private key as certificate");

    let mut cfg = app.aws_kms_config();
    cfg.endpoint_url = "https://AKIA:secret@host:8443".into();
    let err = app.create_group(aws_group("userinfo", cfg)).await.expect_err("credentials in the URL");
    let description = invalid_on(&err, "group.aws_kms.endpoint_url", "credentials in the URL");
    // The URL's user info is not echoed (the advice may name the `secret_access_key` field).
    for text in [err.message(), description.as_str()] {
        assert!(!text.contains("AKIA") && !text.contains(":secret@") && !text.contains("host:8443"), "{text}");
    }
    assert!(app.list_groups().await.expect("list").is_empty());
}

/// A group holding keys cannot move to another region; moved to another account, its sync is
/// refused and its keys are not marked DELETED.
#[tokio::test]
async fn a_group_holding_keys_cannot_move_region_or_account() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("anchored").await;
    let k = app.create_key(&g.name, "kept", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;

    let mut patch = g.clone();
    patch.aws_kms.as_mut().expect("aws").region = "us-east-1".into();
    let err = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["aws_kms.region"]) })
        .await
        .expect_err("region change");
    precondition(&err, "GROUP_NOT_EMPTY", "region change");
    let got = app.get_group(&g.name).await;
    assert_eq!(got.aws_kms.as_ref().map(|a| a.region.as_str()), Some(keyward_tests::REGION));

    // Another account (LocalStack: the access key id is the account), holding a key of its own.
    let other = keyward_tests::new_account_id();
    let other_aws = keyward_tests::aws_client(&app.emulator_url, &other, "x");
    other_aws.create_key().description("elsewhere").send().await.expect("key in the other account");
    let mut patch = got.clone();
    patch.aws_kms.as_mut().expect("aws").access_key_id = other.clone();
    app.groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["aws_kms.access_key_id"]) })
        .await
        .expect("changing the access key is allowed");
    let err = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("other account");
    let msg = precondition(&err, "AWS_ACCOUNT_CHANGED", "other account");
    assert!(msg.contains(&other) && msg.contains(&app.access_key_id), "{msg}");
    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!((keys[0].name.as_str(), keys[0].state), (k.name.as_str(), pb::KeyState::Enabled as i32), "not DELETED");
}

/// A group shows when it was last synced and when the worker syncs it next; renaming it leaves
/// the next sync where it was, a new schedule moves it, no schedule shows none.
#[tokio::test]
async fn groups_show_their_last_and_next_sync_time() {
    let mut app = TestApp::spawn().await;
    let secs = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
    // Stored to the millisecond.
    let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    let g = app
        .create_group(pb::Group { sync_schedule: interval(3600), ..aws_group("timed", app.aws_kms_config()) })
        .await
        .expect("group");
    assert_eq!(g.last_sync_time, None, "never synced");
    let created = secs(&g.create_time).expect("create time");
    assert_eq!(secs(&g.next_sync_time), Some(created + 3600));

    let run = app.sync(&g.name).await;
    let synced = app.get_group(&g.name).await;
    assert_eq!(ms(&synced.last_sync_time), ms(&run.end_time));
    assert_eq!(synced.next_sync_time, g.next_sync_time, "a manual sync leaves the schedule");

    app.clock.advance(std::time::Duration::from_secs(60));
    let mut rename = synced.clone();
    rename.display_name = "timed-renamed".into();
    let renamed = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(rename), update_mask: mask(&["display_name"]) })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.next_sync_time, g.next_sync_time, "a rename does not move the next sync");
    assert_eq!(app.get_group(&g.name).await.next_sync_time, g.next_sync_time);

    let mut daily = renamed.clone();
    daily.sync_schedule = interval(86_400);
    let daily = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(daily), update_mask: mask(&["sync_schedule"]) })
        .await
        .expect("new schedule")
        .into_inner();
    let changed = secs(&daily.update_time).expect("update time");
    assert_eq!(secs(&daily.next_sync_time), Some(changed + 86_400));
    assert_eq!(app.get_group(&g.name).await.next_sync_time, daily.next_sync_time);

    let mut never = daily.clone();
    never.sync_schedule = interval(0);
    let never = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(never), update_mask: mask(&["sync_schedule"]) })
        .await
        .expect("no schedule")
        .into_inner();
    assert_eq!(never.next_sync_time, None);
    assert_eq!(app.get_group(&g.name).await.next_sync_time, None);
    assert_eq!(ms(&app.get_group(&g.name).await.last_sync_time), ms(&run.end_time));
}

/// DeleteGroup with `force` removes an AWS_KMS group that holds virtual keys without touching
/// AWS (its keys stay there, enabled), audited with the count; without `force`, and for a
/// REGULAR group holding keys even with it, the answer is FAILED_PRECONDITION and nothing goes.
#[tokio::test]
async fn force_removes_an_aws_group_and_its_virtual_keys_without_touching_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("to-remove").await;
    for _ in 0..2 {
        app.aws.create_key().send().await.expect("seed");
    }
    assert_eq!(app.sync(&g.name).await.added, 2);
    let keys = app.all_keys(&g.name, "").await;
    let e = app
        .groups
        .delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false })
        .await
        .expect_err("holds keys");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let r = app.regular_group("keeps-material").await;
    app.create_key(&r.name, "held", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let e = app
        .groups
        .delete_group(pb::DeleteGroupRequest { name: r.name.clone(), force: true })
        .await
        .expect_err("material in Keyward");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("REGULAR"), "{}", e.message());
    assert_eq!(app.all_keys(&r.name, "").await.len(), 1, "the REGULAR group's key stays");

    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: true }).await.expect("force");
    let e = app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect_err("gone");
    assert_eq!(e.code(), Code::NotFound);
    let e = app.keys.get_key(pb::GetKeyRequest { name: keys[0].name.clone() }).await.expect_err("key gone");
    assert_eq!(e.code(), Code::NotFound);
    for k in &keys {
        assert_eq!(app.aws_state(&keyward_tests::fixtures::aws_id(k)).await, "Enabled", "AWS untouched");
    }
    let events = app
        .audit_client()
        .list_audit_events(pb::ListAuditEventsRequest {
            filter: format!("resource = \"{}\"", g.name),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    let deleted = events.iter().find(|e| e.action.ends_with("DeleteGroup") && e.outcome == "OK").expect("audited");
    assert!(deleted.detail.contains("2 virtual keys dropped"), "{}", deleted.detail);
    // The account's keys can be taken up by a new group.
    let again = app.create_aws_group("taken-up").await;
    assert_eq!(app.sync(&again.name).await.added, 2);
}

/// CreateGroup (and UpdateGroup) warn in the answer when another group reaches the same AWS
/// account, region and endpoint; a group of another account or region gets no warning.
#[tokio::test]
async fn a_second_group_of_the_same_account_and_region_is_warned_about() {
    let mut app = TestApp::spawn().await;
    let first = app.create_aws_group("first").await;
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let second = app.create_aws_group("second").await;
    assert_eq!(second.warnings.len(), 1, "{:?}", second.warnings);
    assert!(second.warnings[0].contains(&first.name), "{:?}", second.warnings);
    assert!(app.get_group(&second.name).await.warnings.is_empty(), "only the answer of the change warns");
    let other_region = pb::AwsKmsConfig { region: "eu-central-1".into(), ..app.aws_kms_config() };
    let third = app.create_group(aws_group("third", other_region)).await.expect("group");
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    let mut renamed = second.clone();
    renamed.display_name = "second-renamed".into();
    let renamed = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(renamed), update_mask: mask(&["display_name"]) })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.warnings.len(), 1, "{:?}", renamed.warnings);
}

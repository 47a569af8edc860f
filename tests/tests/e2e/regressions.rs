//! Regressions: one test per fixed defect, each failing on the old behaviour it names.

use std::time::Duration;

use futures::StreamExt;
use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::status::{invalid_on, precondition};
use pb::KeyOperation as Op;
use pb::audit_service_client::AuditServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn ops(list: &[Op]) -> Vec<i32> {
    list.iter().map(|o| *o as i32).collect()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

async fn create_group(app: &mut TestApp, group: pb::Group) -> Result<pb::Group, Status> {
    app.groups.create_group(pb::CreateGroupRequest { group: Some(group) }).await.map(|r| r.into_inner())
}

async fn regular_group(app: &mut TestApp, display_name: &str) -> pb::Group {
    let group =
        pb::Group { display_name: display_name.into(), kind: pb::GroupKind::Regular as i32, ..Default::default() };
    create_group(app, group).await.expect("create regular group")
}

async fn list_groups(app: &mut TestApp) -> Result<Vec<pb::Group>, Status> {
    app.groups
        .list_groups(pb::ListGroupsRequest { page_size: 1000, ..Default::default() })
        .await
        .map(|r| r.into_inner().groups)
}

async fn create_key(app: &mut TestApp, parent: &str, name: &str, spec: pb::KeySpec, key_ops: &[Op]) -> pb::Key {
    let key = pb::Key { display_name: name.into(), key_spec: spec as i32, key_ops: ops(key_ops), ..Default::default() };
    app.keys
        .create_key(pb::CreateKeyRequest { parent: parent.into(), key: Some(key) })
        .await
        .unwrap_or_else(|e| panic!("create key {name}: {e:?}"))
        .into_inner()
}

async fn get_key(app: &mut TestApp, name: &str) -> pb::Key {
    app.keys.get_key(pb::GetKeyRequest { name: name.into() }).await.expect("get key").into_inner()
}

async fn update_key(app: &mut TestApp, key: pb::Key, paths: &[&str]) -> Result<pb::Key, Status> {
    app.keys
        .update_key(pb::UpdateKeyRequest { key: Some(key), update_mask: mask(paths), ..Default::default() })
        .await
        .map(|r| r.into_inner())
}

async fn set_enabled(app: &mut TestApp, key: &pb::Key, enabled: bool) -> pb::Key {
    let k = pb::Key { name: key.name.clone(), enabled, ..Default::default() };
    update_key(app, k, &["enabled"]).await.unwrap_or_else(|e| panic!("enabled={enabled} on {}: {e:?}", key.name))
}

async fn reimport(app: &mut TestApp, name: &str) -> Result<pb::Key, Status> {
    app.keys.reimport_key_material(pb::ReimportKeyMaterialRequest { name: name.into() }).await.map(|r| r.into_inner())
}

async fn delete_key(app: &mut TestApp, name: &str) -> Result<(), Status> {
    app.keys.delete_key(pb::DeleteKeyRequest { name: name.into() }).await.map(|_| ())
}

fn aws_id(k: &pb::Key) -> String {
    k.aws.as_ref().map(|a| a.aws_key_id.clone()).filter(|id| !id.is_empty()).expect("an AWS key id")
}

async fn aws_meta(app: &TestApp, id: &str) -> aws_sdk_kms::types::KeyMetadata {
    app.aws.describe_key().key_id(id).send().await.expect("describe").key_metadata().cloned().expect("metadata")
}

/// Seeds `n` plain keys in the test's AWS account, so a sync has work to do.
async fn seed(app: &TestApp, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let aws = app.aws.clone();
            async move { aws.create_key().description(format!("seed {i}")).send().await.expect("seed key") }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
}

fn audit_client(app: &TestApp) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(Channel::from_shared(format!("http://{}", app.addr)).expect("uri").connect_lazy())
}

fn interval(seconds: i64) -> Option<pb::SyncSchedule> {
    Some(pb::SyncSchedule { interval: Some(prost_types::Duration { seconds, nanos: 0 }) })
}

// ---------------------------------------------------------------------------------------------
// 1. A sync interval too large for a time span.

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
    let err = create_group(&mut app, group).await.expect_err("huge interval");
    invalid_on(&err, "group.sync_schedule.interval", "huge interval");
    let groups = list_groups(&mut app).await.expect("ListGroups still works");
    assert!(groups.is_empty(), "nothing was saved: {groups:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. CreateKey during a sync.

#[tokio::test]
async fn a_key_created_while_its_group_syncs_is_not_marked_deleted() {
    let mut app = TestApp::spawn().await;
    seed(&app, 40).await;
    let g = app.create_aws_group("busy-sync").await;
    let mut created = Vec::new();
    for round in 0..5 {
        let mut groups = app.groups.clone();
        let mut keys = app.keys.clone();
        let key = pb::Key {
            display_name: format!("during-sync-{round}"),
            key_spec: pb::KeySpec::SymmetricDefault as i32,
            key_ops: ops(&[Op::Encrypt, Op::Decrypt]),
            ..Default::default()
        };
        let (run, k) = tokio::join!(
            groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }),
            keys.create_key(pb::CreateKeyRequest { parent: g.name.clone(), key: Some(key) })
        );
        let run = run.unwrap_or_else(|e| panic!("round {round}: sync: {e:?}")).into_inner();
        assert_eq!(run.state, pb::SyncRunState::Succeeded as i32, "round {round}: {run:?}");
        created.push(k.unwrap_or_else(|e| panic!("round {round}: create: {e:?}")).into_inner());
        for c in &created {
            let got = get_key(&mut app, &c.name).await;
            assert_eq!(got.state, pb::KeyState::Enabled as i32, "round {round}: {} after the sync: {got:?}", c.name);
        }
    }
    let run = app.sync(&g.name).await;
    assert_eq!(run.added, 0, "the created keys are known: {run:?}");
    let all = app.all_keys(&g.name, "").await;
    assert_eq!(all.len(), 45, "no key twice");
    for c in &created {
        let id = aws_id(c);
        let same: Vec<&pb::Key> = all.iter().filter(|k| k.aws.as_ref().is_some_and(|a| a.aws_key_id == id)).collect();
        assert_eq!(same.len(), 1, "{id} held once: {same:?}");
        assert_eq!(same[0].state, pb::KeyState::Enabled as i32, "{same:?}");
        assert_eq!(aws_meta(&app, &id).await.key_state().map(|s| s.as_str().to_owned()).as_deref(), Some("Enabled"));
    }
    assert!(app.all_keys(&g.name, "state = DELETED").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. UpdateKey during a sync.

#[tokio::test]
async fn an_update_racing_a_sync_is_never_overwritten_with_stale_aws_state() {
    let mut app = TestApp::spawn().await;
    seed(&app, 30).await;
    let g = app.create_aws_group("update-race").await;
    let k = create_key(&mut app, &g.name, "raced", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    let id = aws_id(&k);
    app.sync(&g.name).await;
    for round in 0..6 {
        let enabled = round % 2 == 1;
        let description = format!("round {round}");
        let mut groups = app.groups.clone();
        let mut keys = app.keys.clone();
        let patch = pb::Key { name: k.name.clone(), enabled, description: description.clone(), ..Default::default() };
        let (run, updated) = tokio::join!(
            groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }),
            keys.update_key(pb::UpdateKeyRequest {
                key: Some(patch),
                update_mask: mask(&["enabled", "description"]),
                ..Default::default()
            })
        );
        run.unwrap_or_else(|e| panic!("round {round}: sync: {e:?}"));
        updated.unwrap_or_else(|e| panic!("round {round}: update: {e:?}"));
        let meta = aws_meta(&app, &id).await;
        assert_eq!(meta.enabled(), enabled, "round {round}: AWS took the update");
        assert_eq!(meta.description(), Some(description.as_str()), "round {round}");
        let got = get_key(&mut app, &k.name).await;
        let want = if enabled { pb::KeyState::Enabled } else { pb::KeyState::Disabled };
        assert_eq!(got.state, want as i32, "round {round}: Keyward agrees with AWS: {got:?}");
        assert_eq!(got.enabled, enabled, "round {round}");
        assert_eq!(got.description, description, "round {round}: {got:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. DeleteGroup during a sync.

#[tokio::test]
async fn delete_group_while_a_sync_holds_the_lease_is_aborted() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("leased").await;
    let lease = format!("sync/{}", g.name.trim_start_matches("groups/"));
    let store = app.keyward.store().clone();
    let taken = store
        .try_lease(&lease, "other", Duration::from_secs(60), time::OffsetDateTime::now_utc())
        .await
        .expect("take the lease");
    assert!(taken);
    let err = app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone() }).await.expect_err("syncing");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(list_groups(&mut app).await.expect("list").len(), 1, "the group stays");

    store.release_lease(&lease, "other").await.expect("release");
    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone() }).await.expect("delete after release");
    assert!(list_groups(&mut app).await.expect("list").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. A group's settings reaching another region or account.

#[tokio::test]
async fn a_group_holding_keys_cannot_move_region_or_account() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("anchored").await;
    let k = create_key(&mut app, &g.name, "kept", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;

    let mut patch = g.clone();
    patch.aws_kms.as_mut().expect("aws").region = "us-east-1".into();
    let err = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["aws_kms.region"]) })
        .await
        .expect_err("region change");
    precondition(&err, "GROUP_NOT_EMPTY", "region change");
    let got = app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect("get").into_inner();
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
    let err = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }).await.expect_err("other account");
    let msg = precondition(&err, "AWS_ACCOUNT_CHANGED", "other account");
    assert!(msg.contains(&other) && msg.contains(&app.access_key_id), "{msg}");
    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!((keys[0].name.as_str(), keys[0].state), (k.name.as_str(), pb::KeyState::Enabled as i32), "not DELETED");
}

// ---------------------------------------------------------------------------------------------
// 6. Reimport from a disabled / non-exportable source; deleting a source a copy waits for.

#[tokio::test]
async fn reimport_needs_a_usable_source_and_a_waiting_copy_keeps_its_source() {
    let mut app = TestApp::spawn().await;
    let src = regular_group(&mut app, "src").await;
    let aws = app.create_aws_group("dst").await;
    let all_ops = [Op::Encrypt, Op::Decrypt, Op::Export];
    let source = create_key(&mut app, &src.name, "source", pb::KeySpec::Aes256, &all_ops).await;
    let copy = app
        .keys
        .copy_key(pb::CopyKeyRequest {
            source: source.name.clone(),
            target_group: aws.name.clone(),
            ..Default::default()
        })
        .await
        .expect("copy")
        .into_inner();
    let k = app
        .keys
        .delete_key_material(pb::DeleteKeyMaterialRequest { name: copy.name.clone(), acknowledge_unrecoverable: false })
        .await
        .expect("delete material")
        .into_inner();
    assert_eq!(k.state, pb::KeyState::PendingImport as i32, "{k:?}");

    // A DISABLED source hands out no material.
    set_enabled(&mut app, &source, false).await;
    let err = reimport(&mut app, &copy.name).await.expect_err("disabled source");
    let msg = precondition(&err, "COPY_SOURCE", "disabled source");
    assert!(msg.contains("DISABLED"), "{msg}");
    assert_eq!(get_key(&mut app, &copy.name).await.state, pb::KeyState::PendingImport as i32);

    // Deleting the source would strand the copy: refused, naming the copy.
    let err = delete_key(&mut app, &source.name).await.expect_err("copy waits");
    let msg = precondition(&err, "COPY_NEEDS_SOURCE", "copy waits");
    assert!(msg.contains(&copy.name), "{msg}");
    get_key(&mut app, &source.name).await;

    // An ENABLED source without EXPORT hands out no material either.
    set_enabled(&mut app, &source, true).await;
    let no_export =
        pb::Key { name: source.name.clone(), key_ops: ops(&[Op::Encrypt, Op::Decrypt]), ..Default::default() };
    update_key(&mut app, no_export, &["key_ops"]).await.expect("drop EXPORT");
    let err = reimport(&mut app, &copy.name).await.expect_err("no EXPORT");
    let msg = precondition(&err, "COPY_SOURCE", "no EXPORT");
    assert!(msg.contains("EXPORT"), "{msg}");
    assert_eq!(get_key(&mut app, &copy.name).await.state, pb::KeyState::PendingImport as i32);

    // Restored: the copy is reimported; then the disabled source may go.
    let with_export = pb::Key { name: source.name.clone(), key_ops: ops(&all_ops), ..Default::default() };
    update_key(&mut app, with_export, &["key_ops"]).await.expect("EXPORT back");
    let k = reimport(&mut app, &copy.name).await.expect("reimport");
    assert_eq!(k.state, pb::KeyState::Enabled as i32, "{k:?}");
    set_enabled(&mut app, &source, false).await;
    delete_key(&mut app, &source.name).await.expect("delete the disabled source");
    assert_eq!(get_key(&mut app, &copy.name).await.state, pb::KeyState::Enabled as i32);
}

// ---------------------------------------------------------------------------------------------
// 7. The same alias twice.

#[tokio::test]
async fn import_and_copy_with_an_alias_listed_twice_are_refused_before_aws() {
    let mut app = TestApp::spawn().await;
    let src = regular_group(&mut app, "src").await;
    let aws = app.create_aws_group("dst").await;
    let source =
        create_key(&mut app, &src.name, "source", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt, Op::Export]).await;
    let twice = vec!["alias/dup".to_owned(), "alias/dup".to_owned()];

    let err = app
        .keys
        .import_key(pb::ImportKeyRequest {
            parent: aws.name.clone(),
            key: Some(pb::Key {
                display_name: "imported".into(),
                key_ops: ops(&[Op::Encrypt, Op::Decrypt]),
                aws: Some(pb::AwsKeyDetails { aliases: twice.clone(), ..Default::default() }),
                ..Default::default()
            }),
            material: vec![7u8; 32],
            format: pb::MaterialFormat::Raw as i32,
            wrapping_key: String::new(),
            valid_to: None,
        })
        .await
        .expect_err("import");
    invalid_on(&err, "key.aws.aliases", "import");

    let err = app
        .keys
        .copy_key(pb::CopyKeyRequest {
            source: source.name.clone(),
            target_group: aws.name.clone(),
            aliases: twice,
            ..Default::default()
        })
        .await
        .expect_err("copy");
    invalid_on(&err, "key.aws.aliases", "copy");

    assert_eq!(app.aws_key_count().await, 0, "no AWS key created");
    assert!(app.all_keys(&aws.name, "").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8. SIGN / VERIFY on an AES key by UpdateKey.

#[tokio::test]
async fn update_key_refuses_sign_and_verify_on_an_aes_key() {
    let mut app = TestApp::spawn().await;
    let g = regular_group(&mut app, "vault").await;
    let k = create_key(&mut app, &g.name, "aes", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let patch = pb::Key { name: k.name.clone(), key_ops: ops(&[Op::Sign, Op::Verify]), ..Default::default() };
    let err = update_key(&mut app, patch, &["key_ops"]).await.expect_err("sign on AES");
    invalid_on(&err, "key.key_ops", "sign on AES");
    assert_eq!(get_key(&mut app, &k.name).await.key_ops, ops(&[Op::Encrypt, Op::Decrypt]));
}

// ---------------------------------------------------------------------------------------------
// 9. The audit event's stored time is covered by the chain.

#[tokio::test]
async fn verify_chain_finds_a_changed_event_time() {
    let mut app = TestApp::spawn().await;
    let mut audit = audit_client(&app);
    let mut g = regular_group(&mut app, "timed").await;
    for i in 0..2 {
        let mut p = g.clone();
        p.description = format!("edit {i}");
        g = app
            .groups
            .update_group(pb::UpdateGroupRequest { group: Some(p), update_mask: mask(&["description"]) })
            .await
            .expect("update")
            .into_inner();
    }
    let v = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.expect("verify").into_inner();
    assert_eq!((v.ok, v.checked), (true, 3), "{v:?}");
    app.exec_sql("UPDATE audit_events SET created_at_ms = 0 WHERE seq = 2").await;
    let v = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.expect("verify").into_inner();
    assert_eq!((v.ok, v.first_broken_seq, v.checked), (false, 2, 1), "{v:?}");
    assert!(!v.reason.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 10. A refusal's audit resource is the canonical name.

#[tokio::test]
async fn a_refused_delete_with_a_non_canonical_name_is_audited_under_the_canonical_one() {
    let mut app = TestApp::spawn().await;
    let mut audit = audit_client(&app);
    let g = regular_group(&mut app, "vault").await;
    let k = create_key(&mut app, &g.name, "enabled", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let (gid, kid) = (g.name.trim_start_matches("groups/"), &k.key_id);
    let odd = format!("groups/{}/keys/{}", gid.to_uppercase(), kid.replace('-', ""));
    assert_ne!(odd, k.name);
    let err = delete_key(&mut app, &odd).await.expect_err("enabled");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let found = audit
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 100,
            page_token: String::new(),
            filter: format!("resource = \"{}\"", k.name),
        })
        .await
        .expect("list")
        .into_inner()
        .audit_events;
    let deletes: Vec<&pb::AuditEvent> = found.iter().filter(|e| e.action.ends_with("/DeleteKey")).collect();
    assert_eq!(deletes.len(), 1, "{found:#?}");
    assert_eq!(deletes[0].outcome, "FAILED_PRECONDITION");
}

// ---------------------------------------------------------------------------------------------
// 11. REGULAR groups are not synced.

#[tokio::test]
async fn a_regular_group_with_a_sync_interval_is_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let group = pb::Group {
        display_name: "vault".into(),
        kind: pb::GroupKind::Regular as i32,
        sync_schedule: interval(60),
        ..Default::default()
    };
    let err = create_group(&mut app, group).await.expect_err("regular with interval");
    invalid_on(&err, "group.sync_schedule.interval", "regular with interval");
    assert!(list_groups(&mut app).await.expect("list").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 12. Secrets in the wrong fields.

#[tokio::test]
async fn secrets_in_a_certificate_or_an_endpoint_url_are_refused_without_echo() {
    let mut app = TestApp::spawn().await;
    let mut cfg = app.aws_kms_config();
    cfg.client_certificate_pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n".into();
    let group = |name: &str, cfg: pb::AwsKmsConfig| pb::Group {
        display_name: name.into(),
        kind: pb::GroupKind::AwsKms as i32,
        aws_kms: Some(cfg),
        ..Default::default()
    };
    let err = create_group(&mut app, group("cert", cfg)).await.expect_err("private key as certificate");
    invalid_on(&err, "group.aws_kms.client_certificate_pem", "private key as certificate");

    let mut cfg = app.aws_kms_config();
    cfg.endpoint_url = "https://AKIA:secret@host:8443".into();
    let err = create_group(&mut app, group("userinfo", cfg)).await.expect_err("credentials in the URL");
    let description = invalid_on(&err, "group.aws_kms.endpoint_url", "credentials in the URL");
    // The URL's user info is not echoed (the advice may name the `secret_access_key` field).
    for text in [err.message(), description.as_str()] {
        assert!(!text.contains("AKIA") && !text.contains(":secret@") && !text.contains("host:8443"), "{text}");
    }
    assert!(list_groups(&mut app).await.expect("list").is_empty());
}

#[tokio::test]
async fn settings_that_reach_an_empty_account_do_not_mark_the_keys_deleted() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("moved-to-empty").await;
    let k = create_key(&mut app, &g.name, "kept", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    // Another (empty) account: LocalStack takes the access key id as the account.
    let mut patch = g.clone();
    patch.aws_kms.as_mut().expect("aws").access_key_id = keyward_tests::new_account_id();
    app.groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["aws_kms.access_key_id"]) })
        .await
        .expect("update");
    let err = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }).await.expect_err("empty account");
    let _ = precondition(&err, "AWS_ACCOUNT_CHANGED", "empty listing");
    assert_eq!(get_key(&mut app, &k.name).await.state, pb::KeyState::Enabled as i32, "not marked DELETED");
}

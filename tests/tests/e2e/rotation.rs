//! RotateKey against the real emulator: a new AWS key takes over the aliases (checked behind
//! Keyward's back), plans change nothing, the old key's fate, AWS's own rotation, refusals
//! before any AWS call, single flight, and the worker resuming a rotation AWS interrupted.

use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_id, key};
use keyward_tests::status::{invalid_on, precondition};
use keyward_worker::{recovery, scheduled_rotation};
use pb::KeyOperation as Op;
use tonic::Code;

fn rotate(name: &str) -> pb::RotateKeyRequest {
    pb::RotateKeyRequest { name: name.into(), ..Default::default() }
}

async fn try_rotate(app: &mut TestApp, req: pb::RotateKeyRequest) -> Result<pb::RotateKeyResponse, tonic::Status> {
    app.keys.rotate_key(req).await.map(|r| r.into_inner())
}

fn link_to(k: &pb::Key, kind: pb::KeyLinkKind) -> Option<String> {
    k.links.iter().find(|l| l.kind == kind as i32).map(|l| l.key.clone())
}

/// A SYMMETRIC_DEFAULT key with two aliases and two tags, and a ciphertext made under it in AWS.
async fn payments_key(app: &mut TestApp, group: &str) -> (pb::Key, Vec<u8>) {
    let k = key(
        "payments",
        pb::KeySpec::SymmetricDefault,
        &[Op::Encrypt, Op::Decrypt],
        &["alias/rot/payments", "alias/rot/payments-prod"],
        &[("team", "pay"), ("env", "prod")],
    );
    let k = app.try_create_key(group, k).await.expect("create");
    let ct = app
        .aws
        .encrypt()
        .key_id(aws_id(&k))
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"old secret".to_vec()))
        .send()
        .await
        .expect("encrypt under the old key");
    (k, ct.ciphertext_blob().expect("blob").as_ref().to_vec())
}

#[tokio::test]
async fn a_new_key_takes_over_every_alias_and_both_keys_are_linked() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("rotation").await;
    let (old, ciphertext) = payments_key(&mut app, &g.name).await;
    let old_id = aws_id(&old);
    let mut on = old.clone();
    on.etag.clear();
    on.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, rotation_period_days: 200, ..Default::default() });
    let old = app.update_key(on, &["aws.rotation"]).await.expect("AWS rotation on");
    let old_meta = app.aws_meta(&old_id).await;

    let out = try_rotate(&mut app, rotate(&old.name)).await.expect("rotate");
    assert!(out.executed);
    let new = out.key.clone().expect("new key");
    let new_id = aws_id(&new);
    assert_ne!(new_id, old_id);
    assert_eq!(out.created_keys, vec![new.name.clone()]);
    let moved: Vec<(&str, &str, &str)> = out
        .moved_aliases
        .iter()
        .map(|m| (m.alias.as_str(), m.from_aws_key_id.as_str(), m.to_aws_key_id.as_str()))
        .collect();
    assert_eq!(
        moved,
        vec![
            ("alias/rot/payments", old_id.as_str(), new_id.as_str()),
            ("alias/rot/payments-prod", old_id.as_str(), new_id.as_str())
        ]
    );

    // Behind Keyward's back: every alias on the new key, none left on the old one.
    assert_eq!(app.aws_aliases(&new_id).await, vec!["alias/rot/payments", "alias/rot/payments-prod"]);
    assert!(app.aws_aliases(&old_id).await.is_empty());
    let meta = app.aws_meta(&new_id).await;
    assert_eq!(meta.key_spec(), old_meta.key_spec());
    assert_eq!(meta.key_usage(), old_meta.key_usage());
    assert_eq!(meta.description(), old_meta.description());
    assert_eq!(app.aws_tags(&new_id).await, app.aws_tags(&old_id).await);
    let policy = |id: String| {
        let aws = app.aws.clone();
        async move { aws.get_key_policy().key_id(id).policy_name("default").send().await.expect("policy").policy }
    };
    assert_eq!(policy(new_id.clone()).await, policy(old_id.clone()).await);
    let rotation = app.aws.get_key_rotation_status().key_id(&new_id).send().await.expect("rotation status");
    assert!(rotation.key_rotation_enabled(), "AWS's automatic rotation carries over");
    assert_eq!(rotation.rotation_period_in_days(), Some(200));
    // The old key stays enabled: what it encrypted still decrypts.
    assert_eq!(app.aws_state(&old_id).await, "Enabled");
    let pt = app
        .aws
        .decrypt()
        .key_id(&old_id)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext))
        .send()
        .await
        .expect("old ciphertext decrypts");
    assert_eq!(pt.plaintext().expect("pt").as_ref(), b"old secret");

    // In Keyward: names, links, aliases, states.
    let old_now = app.get_key(&old.name).await;
    let new_now = app.get_key(&new.name).await;
    assert_eq!(new_now.display_name, "payments");
    assert!(old_now.display_name.starts_with("payments~rotated-"), "{}", old_now.display_name);
    assert_eq!(old_now.display_name.len(), "payments~rotated-20261202T010203Z".len());
    assert_eq!(link_to(&old_now, pb::KeyLinkKind::RotatedTo), Some(new.name.clone()));
    assert_eq!(link_to(&new_now, pb::KeyLinkKind::RotatedFrom), Some(old.name.clone()));
    assert_eq!(new_now.aws.as_ref().expect("aws").aliases, vec!["alias/rot/payments", "alias/rot/payments-prod"]);
    assert!(old_now.aws.as_ref().expect("aws").aliases.is_empty());
    assert_eq!(old_now.state, pb::KeyState::Enabled as i32);
    assert_eq!(new_now.state, pb::KeyState::Enabled as i32);
    assert_eq!(new_now.key_ops, old.key_ops);
    assert_eq!(new_now.tags, old.tags);

    // A sync afterwards finds nothing to change or add.
    let run = app.sync(&g.name).await;
    assert_eq!((run.added, run.updated, run.failed), (0, 0, 0), "{run:?}");

    // The audit log: one rotation event with the plan's summary, and its steps.
    let mut audit = app.audit_client();
    let events = audit
        .list_audit_events(pb::ListAuditEventsRequest { page_size: 100, ..Default::default() })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    let rotations: Vec<&pb::AuditEvent> =
        events.iter().filter(|e| e.action == "keyward.v1.KeyService/RotateKey").collect();
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0].resource, old.name);
    assert!(rotations[0].detail.contains("NEW_KEY rotation"), "{}", rotations[0].detail);
    assert_eq!(events.iter().filter(|e| e.action == "keyward.rotation/Step").count(), 3);
}

#[tokio::test]
async fn a_plan_changes_nothing_and_the_rotation_does_what_it_said() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("plans").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    let keys_before = app.aws_key_count().await;

    let mut req = rotate(&old.name);
    req.validate_only = true;
    req.old_key_action = pb::OldKeyAction::Disable as i32;
    let planned = try_rotate(&mut app, req.clone()).await.expect("plan");
    assert!(!planned.executed);
    assert!(planned.created_keys.is_empty() && planned.moved_aliases.is_empty());
    let plan = planned.plan.clone().expect("plan");
    assert_eq!(plan.kind, pb::RotationKind::NewKey as i32);
    assert_eq!(plan.key, old.name);
    let new_key = plan.new_key.clone().expect("planned key");
    assert_eq!(new_key.display_name, "payments");
    assert_eq!(new_key.key_spec, pb::KeySpec::SymmetricDefault as i32);
    assert_eq!(new_key.key_usage, "ENCRYPT_DECRYPT");
    assert!(new_key.copies_key_policy);
    assert_eq!(
        plan.alias_moves.iter().map(|m| m.alias.as_str()).collect::<Vec<_>>(),
        vec!["alias/rot/payments", "alias/rot/payments-prod"]
    );
    assert_eq!(plan.aws_calls.len(), 4, "{:?}", plan.aws_calls);
    assert!(plan.aws_calls[0].starts_with("CreateKey(KeySpec=SYMMETRIC_DEFAULT, KeyUsage=ENCRYPT_DECRYPT"));
    assert!(plan.aws_calls[3].starts_with("DisableKey("));
    // Nothing changed: no AWS key, the same Keyward key.
    assert_eq!(app.aws_key_count().await, keys_before);
    assert_eq!(app.get_key(&old.name).await, old);

    req.validate_only = false;
    let done = try_rotate(&mut app, req).await.expect("rotate");
    let mut executed = done.plan.clone().expect("plan");
    executed.rename_old_to.clear();
    let mut expected = plan.clone();
    expected.rename_old_to.clear();
    assert_eq!(executed, expected, "the rotation executes the plan it showed");
    assert_eq!(app.aws_key_count().await, keys_before + 1);
    assert_eq!(app.aws_state(&aws_id(&old)).await, "Disabled");
    let old_now = done.old_key.expect("old key");
    assert_eq!(old_now.state, pb::KeyState::Disabled as i32);
}

#[tokio::test]
async fn the_old_key_can_be_scheduled_for_deletion() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("fate").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    let mut req = rotate(&old.name);
    req.old_key_action = pb::OldKeyAction::ScheduleDeletion as i32;
    req.pending_window_days = 7;
    let out = try_rotate(&mut app, req).await.expect("rotate");
    assert_eq!(app.aws_state(&aws_id(&old)).await, "PendingDeletion");
    let old_now = out.old_key.expect("old");
    assert_eq!(old_now.state, pb::KeyState::PendingDeletion as i32);
    assert!(old_now.aws.as_ref().and_then(|a| a.deletion_time).is_some());

    // Bad windows and windows without a deletion are refused.
    let other = app
        .try_create_key(&g.name, key("other", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]))
        .await
        .expect("create");
    for (days, action) in [
        (6, pb::OldKeyAction::ScheduleDeletion),
        (31, pb::OldKeyAction::ScheduleDeletion),
        (9, pb::OldKeyAction::Disable),
    ] {
        let mut req = rotate(&other.name);
        req.old_key_action = action as i32;
        req.pending_window_days = days;
        let e = try_rotate(&mut app, req).await.expect_err("bad window");
        invalid_on(&e, "pending_window_days", "window");
    }
}

#[tokio::test]
async fn refusals_come_before_any_aws_call() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("refusals").await;
    let rsa = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]))
        .await
        .expect("rsa");
    let sym = app
        .try_create_key(&g.name, key("sym", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]))
        .await
        .expect("sym");
    let disabled = app
        .try_create_key(&g.name, key("off", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]))
        .await
        .expect("off");
    app.set_enabled(&disabled.name, false).await;
    let imported = app
        .keys
        .import_key(pb::ImportKeyRequest {
            parent: g.name.clone(),
            key: Some(key("imp", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], &[], &[])),
            material: vec![7u8; 32],
            format: pb::MaterialFormat::Raw as i32,
            ..Default::default()
        })
        .await
        .expect("import")
        .into_inner();
    let vault = app.regular_group("vault").await;
    let local = app
        .try_create_key(&vault.name, key("local", pb::KeySpec::Aes256, &[Op::Encrypt], &[], &[]))
        .await
        .expect("local");
    app.faults.inject(Fault::AwsManaged(aws_id(&sym)));
    let managed = {
        app.sync(&g.name).await;
        app.get_key(&sym.name).await
    };
    let before = app.aws_key_count().await;

    let in_place = |name: &str| pb::RotateKeyRequest { name: name.into(), in_place: true, ..Default::default() };
    let e = try_rotate(&mut app, in_place(&rsa.name)).await.expect_err("asymmetric in place");
    assert!(precondition(&e, "KEY_SPEC", "asymmetric").contains("RotateKeyOnDemand"));
    let e = try_rotate(&mut app, in_place(&imported.name)).await.expect_err("imported in place");
    precondition(&e, "KEY_SPEC", "imported");
    let e = try_rotate(&mut app, rotate(&imported.name)).await.expect_err("imported to a new key");
    precondition(&e, "KEY_SOURCE", "imported material");
    let e = try_rotate(&mut app, rotate(&disabled.name)).await.expect_err("disabled");
    precondition(&e, "KEY_STATE", "disabled");
    // A Keyward key rotates to a new Keyward key (rotation_linked.rs), never in place.
    let e = try_rotate(&mut app, in_place(&local.name)).await.expect_err("keyward key in place");
    invalid_on(&e, "in_place", "keyward key");
    let e = try_rotate(&mut app, rotate(&managed.name)).await.expect_err("aws managed");
    precondition(&e, "AWS_MANAGED_KEY", "aws managed");
    let e = try_rotate(&mut app, pb::RotateKeyRequest { old_key_action: 99, ..rotate(&rsa.name) })
        .await
        .expect_err("bad action");
    invalid_on(&e, "old_key_action", "unknown action");
    let e = try_rotate(
        &mut app,
        pb::RotateKeyRequest { old_key_action: pb::OldKeyAction::Disable as i32, ..in_place(&rsa.name) },
    )
    .await
    .expect_err("in place with an old key action");
    invalid_on(&e, "old_key_action", "in place");
    assert_eq!(app.aws_key_count().await, before, "no AWS key was made");

    // Rotated once: the old key is not rotated again.
    let out = try_rotate(&mut app, rotate(&rsa.name)).await.expect("rotate rsa");
    let e = try_rotate(&mut app, rotate(&rsa.name)).await.expect_err("rotated twice");
    assert!(precondition(&e, "ALREADY_ROTATED", "twice").contains(&out.key.expect("new").name));
}

#[tokio::test]
async fn a_key_being_changed_is_not_rotated_meanwhile() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("single-flight").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    let id = old.key_id.clone();
    let now = app.keyward.now();
    assert!(
        app.keyward
            .store()
            .try_lease(&format!("key/{id}"), "another-change", Duration::from_secs(60), now)
            .await
            .expect("lease")
    );
    let before = app.aws_key_count().await;
    let e = try_rotate(&mut app, rotate(&old.name)).await.expect_err("locked");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert_eq!(app.aws_key_count().await, before);
    app.keyward.store().release_lease(&format!("key/{id}"), "another-change").await.expect("release");
    try_rotate(&mut app, rotate(&old.name)).await.expect("rotate once free");
}

#[tokio::test]
async fn a_rotation_aws_interrupts_is_resumed_by_the_worker() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("resume").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    app.faults.inject(Fault::Fail {
        op: "update_alias",
        key: Some("alias/rot/payments-prod".into()),
        error: KmsError::Unavailable("injected update_alias failure".into()),
        times: Some(1),
    });
    let e = try_rotate(&mut app, rotate(&old.name)).await.expect_err("interrupted");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let old_id = aws_id(&old);
    // Half done in AWS: the first alias moved, the second not; Keyward knows the new key.
    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 2, "the new AWS key is recorded");
    assert_eq!(app.aws_aliases(&old_id).await, vec!["alias/rot/payments-prod"]);

    // Until the worker finishes it, neither key can be rotated or retired.
    let new = keys.iter().find(|k| k.name != old.name).expect("new key").clone();
    let e = try_rotate(&mut app, rotate(&old.name)).await.expect_err("open rotation");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let e = app
        .keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: new.name.clone(),
            pending_window_days: 7,
            validate_only: false,
        })
        .await
        .expect_err("the successor of an open rotation");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert_eq!(app.aws_state(&aws_id(&new)).await, "Enabled");

    let report =
        recovery::run_once(&app.keyward, app.keyward.now() + Duration::from_secs(11 * 60)).await.expect("recover");
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    let new_id = aws_id(&new);
    assert_eq!(app.aws_aliases(&new_id).await, vec!["alias/rot/payments", "alias/rot/payments-prod"]);
    assert!(app.aws_aliases(&old_id).await.is_empty());
    let old_now = app.get_key(&old.name).await;
    let new_now = app.get_key(&new.name).await;
    assert_eq!(new_now.display_name, "payments");
    assert!(old_now.display_name.starts_with("payments~rotated-"));
    assert_eq!(link_to(&old_now, pb::KeyLinkKind::RotatedTo), Some(new.name.clone()));
    // Nothing left to resume.
    let again =
        recovery::run_once(&app.keyward, app.keyward.now() + Duration::from_secs(30 * 60)).await.expect("again");
    assert!(again.resumed.is_empty() && again.retry.is_empty(), "{again:?}");
}

#[tokio::test]
async fn in_place_rotation_keeps_the_key_and_its_ciphertexts() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("in-place").await;
    let (k, ciphertext) = payments_key(&mut app, &g.name).await;
    let before = app.aws_key_count().await;
    let out = try_rotate(&mut app, pb::RotateKeyRequest { in_place: true, ..rotate(&k.name) }).await.expect("rotate");
    assert_eq!(out.plan.as_ref().map(|p| p.kind), Some(pb::RotationKind::InPlace as i32));
    let same = out.key.expect("key");
    assert_eq!(same.name, k.name);
    assert_eq!(aws_id(&same), aws_id(&k));
    assert!(out.old_key.is_none() && out.created_keys.is_empty());
    assert_eq!(app.aws_key_count().await, before);
    assert_eq!(app.aws_aliases(&aws_id(&k)).await, vec!["alias/rot/payments", "alias/rot/payments-prod"]);
    let pt = app
        .aws
        .decrypt()
        .key_id(aws_id(&k))
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext))
        .send()
        .await
        .expect("still decrypts");
    assert_eq!(pt.plaintext().expect("pt").as_ref(), b"old secret");
}

#[tokio::test]
async fn aws_rotation_is_set_through_update_key_and_read_by_sync() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("aws-rotation").await;
    let k = app.create_sym_key(&g.name, "auto").await;
    let id = aws_id(&k);

    let mut patch = k.clone();
    patch.etag.clear();
    patch.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, rotation_period_days: 180, ..Default::default() });
    let on =
        app.update_key(patch.clone(), &["aws.rotation_enabled", "aws.rotation_period_days"]).await.expect("enable");
    let status = app.aws.get_key_rotation_status().key_id(&id).send().await.expect("status");
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(180));
    let aws = on.aws.clone().expect("aws");
    assert!(aws.rotation_enabled);
    assert_eq!(aws.rotation_period_days, 180);

    for (days, field) in [(89, "key.aws.rotation_period_days"), (2561, "key.aws.rotation_period_days")] {
        let mut p = patch.clone();
        p.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, rotation_period_days: days, ..Default::default() });
        let e = app.update_key(p, &["aws.rotation"]).await.expect_err("bad period");
        invalid_on(&e, field, "period");
    }
    let status = app.aws.get_key_rotation_status().key_id(&id).send().await.expect("status");
    assert_eq!(status.rotation_period_in_days(), Some(180), "refusals change nothing");

    let rsa = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]))
        .await
        .expect("rsa");
    let mut p = rsa.clone();
    p.etag.clear();
    p.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, ..Default::default() });
    let e = app.update_key(p, &["aws.rotation_enabled"]).await.expect_err("asymmetric");
    precondition(&e, "KEY_SPEC", "asymmetric");

    // Off behind Keyward's back: the next sync reads it.
    app.aws.disable_key_rotation().key_id(&id).send().await.expect("disable in aws");
    app.sync(&g.name).await;
    let synced = app.get_key(&k.name).await;
    assert!(!synced.aws.expect("aws").rotation_enabled);
    // And on again through Keyward.
    let mut p = synced_patch(&app.get_key(&k.name).await);
    p.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, ..Default::default() });
    let on = app.update_key(p, &["aws.rotation"]).await.expect("on");
    assert!(on.aws.expect("aws").rotation_enabled);

    // A key pending deletion: refused by Keyward's lifecycle, before AWS.
    let doomed = app.create_sym_key(&g.name, "doomed").await;
    app.keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: doomed.name.clone(),
            pending_window_days: 7,
            validate_only: false,
        })
        .await
        .expect("schedule");
    let mut p = synced_patch(&app.get_key(&doomed.name).await);
    p.aws = Some(pb::AwsKeyDetails { rotation_enabled: true, ..Default::default() });
    let e = app.update_key(p, &["aws.rotation_enabled"]).await.expect_err("pending deletion");
    let why = precondition(&e, "KEY_STATE", "pending deletion");
    assert!(why.contains("cancel the deletion first") && !why.contains("arn:aws"), "{why}");
}

/// `k` as an UpdateKey input without its etag.
fn synced_patch(k: &pb::Key) -> pb::Key {
    let mut p = k.clone();
    p.etag.clear();
    p
}

#[tokio::test]
async fn validate_only_deletions_change_nothing() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("dry-runs").await;
    let k = app.create_sym_key(&g.name, "doomed").await;
    let answer = app
        .keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: k.name.clone(),
            pending_window_days: 7,
            validate_only: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(answer.state, pb::KeyState::PendingDeletion as i32, "the key as it would be");
    assert!(answer.aws.as_ref().and_then(|a| a.deletion_time).is_some());
    assert_eq!(app.aws_state(&aws_id(&k)).await, "Enabled");
    assert_eq!(app.get_key(&k.name).await, k);
    // Refusals are the real ones: a window AWS does not take.
    let e = app
        .keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: k.name.clone(),
            pending_window_days: 5,
            validate_only: true,
        })
        .await
        .expect_err("bad window");
    invalid_on(&e, "pending_window_days", "window");

    let imported = app
        .keys
        .import_key(pb::ImportKeyRequest {
            parent: g.name.clone(),
            key: Some(key("imp", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], &[], &[])),
            material: vec![9u8; 32],
            format: pb::MaterialFormat::Raw as i32,
            ..Default::default()
        })
        .await
        .expect("import")
        .into_inner();
    let e = app
        .keys
        .delete_key_material(pb::DeleteKeyMaterialRequest {
            name: imported.name.clone(),
            acknowledge_unrecoverable: false,
            validate_only: true,
        })
        .await
        .expect_err("unrecoverable without acknowledgement");
    precondition(&e, "UNRECOVERABLE", "no source");
    let answer = app
        .keys
        .delete_key_material(pb::DeleteKeyMaterialRequest {
            name: imported.name.clone(),
            acknowledge_unrecoverable: true,
            validate_only: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(answer.state, pb::KeyState::PendingImport as i32);
    assert_eq!(app.aws_state(&aws_id(&imported)).await, "Enabled");
    assert_eq!(app.get_key(&imported.name).await, imported);
}

/// A rotation policy of `days` days.
fn every(days: i64) -> pb::RotationPolicy {
    pb::RotationPolicy {
        interval: Some(prost_types::Duration { seconds: days * 86_400, nanos: 0 }),
        ..Default::default()
    }
}

/// A rotation policy on a cron schedule.
fn cron(expr: &str) -> pb::RotationPolicy {
    pb::RotationPolicy { cron: expr.into(), ..Default::default() }
}

#[tokio::test]
async fn policies_rotate_once_when_due_and_never_before() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("policies").await;
    let mut k = key("scheduled", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], &["alias/sched/a"], &[]);
    k.rotation_policy = Some(every(30));
    let k = app.try_create_key(&g.name, k).await.expect("create with a policy");
    let policy = k.rotation_policy.clone().expect("policy shown");
    let next = policy.next_rotation_time.expect("next rotation time");
    let created = k.create_time.expect("create time");
    assert_eq!(next.seconds - created.seconds, 30 * 86_400);
    let now = app.keyward.now();
    let before = app.aws_key_count().await;

    // Not due: nothing happens, no AWS call.
    app.faults.inject(Fault::Fail {
        op: "create_key",
        key: None,
        error: KmsError::Unavailable("no AWS call expected".into()),
        times: None,
    });
    let r = scheduled_rotation::run_once(&app.keyward, now + Duration::from_secs(29 * 86_400)).await.expect("pass");
    assert_eq!(r, scheduled_rotation::Report::default());
    app.faults.clear();

    // Three periods late: one rotation, and the next one an interval after it.
    let late = now + Duration::from_secs(100 * 86_400);
    let r = scheduled_rotation::run_once(&app.keyward, late).await.expect("pass");
    assert_eq!(r.rotated, vec![keyward_shared::domain::KeyId::parse(&k.key_id).expect("id")]);
    assert_eq!(app.aws_key_count().await, before + 1, "one new AWS key");
    let r = scheduled_rotation::run_once(&app.keyward, late + Duration::from_secs(60)).await.expect("again");
    assert_eq!(r, scheduled_rotation::Report::default(), "nothing due right after");
    assert_eq!(app.aws_key_count().await, before + 1);

    let old = app.get_key(&k.name).await;
    assert!(old.rotation_policy.is_none(), "the policy left the retired key");
    let new_name = link_to(&old, pb::KeyLinkKind::RotatedTo).expect("rotated");
    let new = app.get_key(&new_name).await;
    let p = new.rotation_policy.clone().expect("the policy follows the key in service");
    let last = p.last_rotation_time.expect("last rotation");
    assert_eq!(p.next_rotation_time.expect("next").seconds - last.seconds, 30 * 86_400);
    assert_eq!(last.seconds, late.unix_timestamp());
    assert_eq!(app.aws_aliases(&aws_id(&new)).await, vec!["alias/sched/a"]);
    assert_eq!(new.created_by, "worker");
}

#[tokio::test]
async fn a_failing_scheduled_rotation_is_retried_later_without_holding_up_the_others() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("policy-failures").await;
    let mut keys = Vec::new();
    for name in ["bad", "good"] {
        let mut k = key(name, pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]);
        k.rotation_policy = Some(every(1));
        keys.push(app.try_create_key(&g.name, k).await.expect("create"));
    }
    let (bad, good) = (keys[0].clone(), keys[1].clone());
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: Some(aws_id(&bad)),
        error: KmsError::Unavailable("injected describe failure".into()),
        times: None,
    });
    let due = app.keyward.now() + Duration::from_secs(2 * 86_400);
    let r = scheduled_rotation::run_once(&app.keyward, due).await.expect("pass");
    let id = |k: &pb::Key| keyward_shared::domain::KeyId::parse(&k.key_id).expect("id");
    assert_eq!((r.rotated.clone(), r.failed.clone()), (vec![id(&good)], vec![id(&bad)]), "{r:?}");
    let p = app.get_key(&bad.name).await.rotation_policy.expect("policy");
    assert_eq!(p.failures, 1);
    assert!(p.last_error.contains("injected describe failure"), "{}", p.last_error);
    // Retried an hour later, not at once.
    let r = scheduled_rotation::run_once(&app.keyward, due + Duration::from_secs(60)).await.expect("soon");
    assert!(r.failed.is_empty() && r.rotated.is_empty(), "{r:?}");
    app.faults.clear();
    let r = scheduled_rotation::run_once(&app.keyward, due + Duration::from_secs(3700)).await.expect("later");
    assert_eq!(r.rotated, vec![id(&bad)]);
}

#[tokio::test]
async fn policies_are_checked_and_changed_through_update_key() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("policy-input").await;
    for (what, policy, field) in [
        ("half a day", every(0), "key.rotation_policy.interval"),
        ("rotate linked", pb::RotationPolicy { rotate_linked: true, ..every(30) }, "key.rotation_policy.rotate_linked"),
        (
            "in place with an old key action",
            pb::RotationPolicy { in_place: true, old_key_action: pb::OldKeyAction::Disable as i32, ..every(30) },
            "key.rotation_policy.old_key_action",
        ),
        ("cron every minute", cron("* * * * *"), "key.rotation_policy.cron"),
        ("cron hourly", cron("0 * * * *"), "key.rotation_policy.cron"),
        ("cron with seconds", cron("0 0 3 * * *"), "key.rotation_policy.cron"),
        ("not cron", cron("every day"), "key.rotation_policy.cron"),
        ("interval and cron", pb::RotationPolicy { cron: "0 3 * * *".into(), ..every(30) }, "key.rotation_policy.cron"),
        ("neither", pb::RotationPolicy::default(), "key.rotation_policy.interval"),
    ] {
        let mut k = key("p", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]);
        k.rotation_policy = Some(policy);
        let e = app.try_create_key(&g.name, k).await.expect_err(what);
        invalid_on(&e, field, what);
    }
    // AWS's own rotation is not taken on create (it would be ignored): UpdateKey sets it.
    let mut auto = key("auto", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]);
    auto.aws.as_mut().expect("aws").rotation_enabled = true;
    let e = app.try_create_key(&g.name, auto).await.expect_err("rotation on create");
    invalid_on(&e, "key.aws.rotation_enabled", "rotation on create");
    let mut rsa = key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]);
    rsa.rotation_policy = Some(pb::RotationPolicy { in_place: true, ..every(30) });
    let e = app.try_create_key(&g.name, rsa).await.expect_err("in place asymmetric");
    invalid_on(&e, "key.rotation_policy.in_place", "asymmetric");
    // Keyward keys rotate on schedule (with their copies when asked); imported material in
    // AWS does not (it would need a source).
    let vault = app.regular_group("vault").await;
    let mut local = key("local", pb::KeySpec::Aes256, &[Op::Encrypt], &[], &[]);
    local.rotation_policy = Some(pb::RotationPolicy { rotate_linked: true, ..every(30) });
    let local = app.try_create_key(&vault.name, local).await.expect("a Keyward key's policy");
    assert!(local.rotation_policy.as_ref().expect("policy").rotate_linked);
    let imported = app
        .keys
        .import_key(pb::ImportKeyRequest {
            parent: g.name.clone(),
            key: Some(pb::Key {
                rotation_policy: Some(every(30)),
                ..key("imp", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[])
            }),
            material: vec![7u8; 32],
            format: pb::MaterialFormat::Raw as i32,
            ..Default::default()
        })
        .await
        .expect_err("imported material on schedule");
    invalid_on(&imported, "key.rotation_policy", "imported");

    // A cron schedule: the next rotation is its next time (UTC).
    let mut monthly = key("monthly", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]);
    monthly.rotation_policy = Some(cron("0 3 1 * *"));
    let monthly = app.try_create_key(&g.name, monthly).await.expect("cron policy");
    let policy = monthly.rotation_policy.clone().expect("policy");
    assert_eq!(policy.cron, "0 3 1 * *");
    assert!(policy.interval.is_none());
    let next =
        time::OffsetDateTime::from_unix_timestamp(policy.next_rotation_time.expect("next").seconds).expect("time");
    assert_eq!((next.day(), next.hour(), next.minute()), (1, 3, 0), "{next}");
    assert!(next > app.keyward.now() && next - app.keyward.now() <= time::Duration::days(31), "{next}");

    // Set, then remove, through UpdateKey.
    let k = app.create_sym_key(&g.name, "later").await;
    let mut p = synced_patch(&k);
    p.rotation_policy = Some(pb::RotationPolicy { in_place: true, ..every(90) });
    let set = app.update_key(p, &["rotation_policy"]).await.expect("set");
    let policy = set.rotation_policy.clone().expect("policy");
    assert!(policy.in_place);
    assert_eq!(policy.interval.expect("interval").seconds, 90 * 86_400);
    let mut p = synced_patch(&set);
    p.rotation_policy = None;
    let cleared = app.update_key(p, &["rotation_policy"]).await.expect("clear");
    assert!(cleared.rotation_policy.is_none());
    let r = scheduled_rotation::run_once(&app.keyward, app.keyward.now() + Duration::from_secs(400 * 86_400)).await;
    let mut rotated = r.expect("pass").rotated;
    rotated.sort();
    let mut with_policies: Vec<_> =
        [&local.key_id, &monthly.key_id].map(|id| keyward_shared::domain::KeyId::parse(id).expect("id")).into();
    with_policies.sort();
    assert_eq!(rotated, with_policies, "the keys with policies rotate; the one whose policy was removed does not");
}

#[tokio::test]
async fn a_manual_rotation_and_two_workers_racing_make_one_new_key() {
    for round in 0..3 {
        let mut app = TestApp::spawn().await;
        let g = app.create_aws_group("races").await;
        let mut k = key(&format!("raced-{round}"), pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]);
        k.rotation_policy = Some(every(1));
        let k = app.try_create_key(&g.name, k).await.expect("create");
        let other = app.second_keyward().await;
        let due = app.keyward.now() + Duration::from_secs(2 * 86_400);
        let before = app.aws_key_count().await;
        let mut keys = app.keys.clone();
        let manual = rotate(&k.name);
        let (a, b, c) = tokio::join!(
            scheduled_rotation::run_once(&app.keyward, due),
            scheduled_rotation::run_once(&other, due),
            keys.rotate_key(manual),
        );
        let (a, b) = (a.expect("worker a"), b.expect("worker b"));
        let rotations = a.rotated.len() + b.rotated.len() + usize::from(c.is_ok());
        assert_eq!(rotations, 1, "round {round}: {a:?} {b:?} {c:?}");
        assert_eq!(app.aws_key_count().await, before + 1, "round {round}: exactly one new AWS key");
    }
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_stop_the_rotation() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("impatient").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    // The caller's deadline falls after the rotation has begun (authentication and the plan's
    // AWS reads fit well within it) and long before its alias moves end.
    app.faults.inject(Fault::Delay { op: "update_alias", millis: 1500 });
    let mut req = tonic::Request::new(rotate(&old.name));
    req.set_timeout(Duration::from_millis(900));
    let e = app.keys.rotate_key(req).await.expect_err("the caller's deadline");
    assert!(matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled), "{e:?}");
    // The rotation goes on without its caller and ends as if it had waited.
    let mut done = false;
    for _ in 0..200 {
        let k = app.get_key(&old.name).await;
        if k.links.iter().any(|l| l.kind == pb::KeyLinkKind::RotatedTo as i32) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the rotation did not finish");
    let old_now = app.get_key(&old.name).await;
    let new = app.get_key(&link_to(&old_now, pb::KeyLinkKind::RotatedTo).expect("link")).await;
    assert_eq!(app.aws_aliases(&aws_id(&new)).await, vec!["alias/rot/payments", "alias/rot/payments-prod"]);
    assert!(app.aws_aliases(&aws_id(&old)).await.is_empty());
    assert_eq!(new.display_name, "payments");
}

#[tokio::test]
async fn the_old_name_stays_unique_when_a_rotation_repeats_within_the_second() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("same-second").await;
    let (old, _) = payments_key(&mut app, &g.name).await;
    let first = try_rotate(&mut app, rotate(&old.name)).await.expect("first");
    let successor = first.key.expect("new");
    // Rotating the successor at once: the rename of this second is taken by the first one.
    let second = try_rotate(&mut app, rotate(&successor.name)).await.expect("second");
    let (a, b) = (first.old_key.expect("old").display_name, second.old_key.expect("old").display_name);
    assert_ne!(a, b);
    assert!(b.starts_with("payments~rotated-"), "{b}");
    assert_eq!(second.key.expect("newest").display_name, "payments");
}

#[tokio::test]
async fn aws_s_record_of_rotations_is_read_with_list_key_rotations() {
    use keyward_tests::front::{Answer, KmsFront};
    use std::sync::Arc;
    let mut app = TestApp::spawn().await;

    // LocalStack does not implement ListKeyRotations: the caller is told so.
    let g = app.create_aws_group("rotations-emulator").await;
    let k = app.create_sym_key(&g.name, "k").await;
    let list = |name: &str, page_size: i32, page_token: &str| pb::ListKeyRotationsRequest {
        name: name.into(),
        page_size,
        page_token: page_token.into(),
    };
    let e = app.keys.list_key_rotations(list(&k.name, 0, "")).await.expect_err("501 from the emulator");
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    assert!(e.message().contains("not implemented by this AWS KMS endpoint"), "{}", e.message());

    // Through a front answering as AWS documents it: the request Keyward sends, and paging.
    let answer: Answer = Arc::new(|req: &serde_json::Value| match req.get("Marker").and_then(|m| m.as_str()) {
        None => serde_json::json!({
            "Rotations": [{"KeyId": req["KeyId"], "RotationDate": 1.7646336E9, "RotationType": "ON_DEMAND"}],
            "NextMarker": "page-2",
            "Truncated": true
        }),
        Some(_) => serde_json::json!({
            "Rotations": [{"KeyId": req["KeyId"], "RotationDate": 1.7672256E9, "RotationType": "AUTOMATIC", "KeyMaterialId": "m-2"}],
            "Truncated": false
        }),
    });
    let front = KmsFront::start(&app.emulator_url, [("ListKeyRotations", answer)].into()).await;
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    let fronted = app.create_group(keyward_tests::fixtures::aws_group("rotations-front", cfg)).await.expect("group");
    let k = app.create_sym_key(&fronted.name, "fronted").await;
    let first = app.keys.list_key_rotations(list(&k.name, 1, "")).await.expect("first page").into_inner();
    assert_eq!(first.rotations.len(), 1);
    assert_eq!(first.rotations[0].rotation_type, "ON_DEMAND");
    assert_eq!(first.rotations[0].rotation_time.expect("time").seconds, 1_764_633_600);
    assert_eq!(first.next_page_token, "page-2");
    let second = app.keys.list_key_rotations(list(&k.name, 1, "page-2")).await.expect("second page").into_inner();
    assert_eq!(
        (second.rotations[0].rotation_type.as_str(), second.rotations[0].key_material_id.as_str()),
        ("AUTOMATIC", "m-2")
    );
    assert!(second.next_page_token.is_empty());
    let sent = front.requests("ListKeyRotations");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["KeyId"], serde_json::json!(aws_id(&k)));
    assert_eq!(sent[0]["Limit"], serde_json::json!(1));
    assert!(sent[0].get("Marker").is_none());
    assert_eq!(sent[1]["Marker"], serde_json::json!("page-2"));

    // Refused before AWS: a page too large, a Keyward key.
    let e = app.keys.list_key_rotations(list(&k.name, 1001, "")).await.expect_err("page size");
    invalid_on(&e, "page_size", "1001");
    let vault = app.regular_group("rotations-vault").await;
    let local = app.create_key(&vault.name, "local", pb::KeySpec::Aes256, &[Op::Encrypt]).await;
    let e = app.keys.list_key_rotations(list(&local.name, 0, "")).await.expect_err("keyward key");
    precondition(&e, "NOT_VIRTUAL", "keyward key");
    assert_eq!(front.requests("ListKeyRotations").len(), 2, "no AWS call for refusals");
}

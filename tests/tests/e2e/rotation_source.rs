//! RotateKey onto Keyward-owned material (`to_source`, the guide's 5.3) against the real
//! emulator: the new AWS key is EXTERNAL with a Keyward key's material (checked behind
//! Keyward's back), takes over the aliases, names its source; refusals before any AWS call; a
//! plan that changes nothing; a failed import undone.

use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_id, key};
use keyward_tests::status::{invalid_on, precondition};
use pb::KeyOperation as Op;
use pb::rotation_source::Source;
use tonic::Code;

const ALIASES: [&str; 2] = ["alias/src/payments", "alias/src/payments-prod"];

fn onto(name: &str, source: Source) -> pb::RotateKeyRequest {
    pb::RotateKeyRequest {
        name: name.into(),
        to_source: Some(pb::RotationSource { source: Some(source) }),
        ..Default::default()
    }
}

async fn try_rotate(app: &mut TestApp, req: pb::RotateKeyRequest) -> Result<pb::RotateKeyResponse, tonic::Status> {
    app.keys.rotate_key(req).await.map(|r| r.into_inner())
}

fn links(k: &pb::Key, kind: pb::KeyLinkKind) -> Vec<String> {
    k.links.iter().filter(|l| l.kind == kind as i32).map(|l| l.key.clone()).collect()
}

/// An AWS-made SYMMETRIC_DEFAULT key with two aliases, and a ciphertext AWS made under it.
async fn aws_made_key(app: &mut TestApp, group: &str) -> (pb::Key, Vec<u8>) {
    let k = key("payments", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], &ALIASES, &[("team", "pay")]);
    let k = app.try_create_key(group, k).await.expect("create");
    (k.clone(), app.aws_encrypt(&aws_id(&k), b"old secret").await)
}

#[tokio::test]
async fn a_key_rotates_onto_the_material_of_a_keyward_key() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto").await;
    let vault = app.regular_group("onto-vault").await;
    let source = app
        .create_key(&vault.name, "payments-material", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt, Op::Export])
        .await;
    let (old, old_ct) = aws_made_key(&mut app, &g.name).await;
    let old_id = aws_id(&old);

    let out = try_rotate(&mut app, onto(&old.name, Source::Key(source.name.clone()))).await.expect("rotate");
    let plan = out.plan.clone().expect("plan");
    assert_eq!(plan.kind, pb::RotationKind::ToSource as i32);
    let planned = plan.source.clone().expect("planned source");
    assert_eq!((planned.key.as_str(), planned.create), (source.name.as_str(), false));
    assert!(plan.aws_calls[0].starts_with("CreateKey(Origin=EXTERNAL"), "{:?}", plan.aws_calls);
    assert!(plan.aws_calls.iter().any(|c| c.starts_with("ImportKeyMaterial(")), "{:?}", plan.aws_calls);
    let new = out.key.clone().expect("new key");
    let new_id = aws_id(&new);
    assert_eq!(out.created_keys, vec![new.name.clone()]);

    // Behind Keyward's back: an EXTERNAL key holding the aliases; the old key still decrypts.
    let meta = app.aws_meta(&new_id).await;
    assert_eq!(meta.origin().map(|o| o.as_str()), Some("EXTERNAL"));
    assert_eq!(app.aws_state(&new_id).await, "Enabled");
    assert_eq!(app.aws_aliases(&new_id).await, ALIASES.to_vec());
    assert!(app.aws_aliases(&old_id).await.is_empty());
    assert_eq!(app.aws_tags(&new_id).await, app.aws_tags(&old_id).await);
    assert_eq!(app.aws_decrypt(&old_id, &old_ct).await.expect("old ciphertext"), b"old secret");

    // In Keyward: the source is KEYWARD and linked both ways, the rotation links too.
    let new_now = app.get_key(&new.name).await;
    let source_now = app.get_key(&source.name).await;
    let old_now = app.get_key(&old.name).await;
    assert_eq!(new_now.source, pb::KeySource::Keyward as i32);
    assert_eq!(new_now.display_name, "payments");
    assert!(old_now.display_name.starts_with("payments~rotated-"), "{}", old_now.display_name);
    assert_eq!(links(&new_now, pb::KeyLinkKind::CopiedFrom), vec![source.name.clone()]);
    assert_eq!(links(&new_now, pb::KeyLinkKind::RotatedFrom), vec![old.name.clone()]);
    assert_eq!(links(&source_now, pb::KeyLinkKind::CopiedTo), vec![new.name.clone()]);
    assert_eq!(links(&old_now, pb::KeyLinkKind::RotatedTo), vec![new.name.clone()]);

    // The material is the source's: after AWS loses it, a reimport from the source (through the
    // COPIED_FROM link) opens what the new key encrypted before.
    let ct = app.aws_encrypt(&new_id, b"new secret").await;
    app.delete_material(&new.name, false).await.expect("delete material");
    assert!(app.aws_decrypt(&new_id, &ct).await.is_err(), "no material, no decryption");
    app.reimport(&new.name).await.expect("reimport from the source");
    assert_eq!(app.aws_decrypt(&new_id, &ct).await.expect("decrypts again"), b"new secret");
}

#[tokio::test]
async fn a_rotation_can_make_its_keyward_source_first() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto-new").await;
    let vault = app.regular_group("onto-new-vault").await;
    let (old, _) = aws_made_key(&mut app, &g.name).await;

    let out = try_rotate(&mut app, onto(&old.name, Source::NewKeyInGroup(vault.name.clone()))).await.expect("rotate");
    let planned = out.plan.clone().expect("plan").source.expect("planned source");
    assert!(planned.create);
    assert_eq!(planned.display_name, "payments~source");
    let new = out.key.clone().expect("new key");
    assert_eq!(out.created_keys, vec![planned.key.clone(), new.name.clone()]);

    let made = app.all_keys(&vault.name, "").await;
    assert_eq!(made.len(), 1, "{made:?}");
    let source = &made[0];
    assert_eq!(source.name, planned.key);
    assert_eq!(source.display_name, "payments~source");
    assert_eq!(source.key_spec, pb::KeySpec::Aes256 as i32);
    assert_eq!(source.key_ops, vec![Op::Encrypt as i32, Op::Decrypt as i32, Op::Export as i32]);
    assert!(!source.r#virtual);
    assert_eq!(links(source, pb::KeyLinkKind::CopiedTo), vec![new.name.clone()]);
    let new_now = app.get_key(&new.name).await;
    assert_eq!(links(&new_now, pb::KeyLinkKind::CopiedFrom), vec![source.name.clone()]);
    assert_eq!(app.aws_aliases(&aws_id(&new)).await, ALIASES.to_vec());

    // The rotation of another key named payments (in another AWS group) into the same REGULAR
    // group gets a name of its own.
    let g2 = app.create_aws_group("onto-new-2").await;
    let other = app
        .try_create_key(&g2.name, key("payments", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &[], &[]))
        .await
        .expect("a second key named payments");
    let out = try_rotate(&mut app, onto(&other.name, Source::NewKeyInGroup(vault.name.clone()))).await.expect("again");
    let name = out.plan.expect("plan").source.expect("source").display_name;
    assert!(name.starts_with("payments~source-"), "{name}");
}

#[tokio::test]
async fn a_plan_onto_keyward_material_changes_nothing() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto-plan").await;
    let vault = app.regular_group("onto-plan-vault").await;
    let (old, _) = aws_made_key(&mut app, &g.name).await;
    let before = app.aws_key_count().await;

    let req =
        pb::RotateKeyRequest { validate_only: true, ..onto(&old.name, Source::NewKeyInGroup(vault.name.clone())) };
    let shown = try_rotate(&mut app, req).await.expect("plan");
    assert!(!shown.executed);
    assert!(shown.created_keys.is_empty());
    assert_eq!(app.aws_key_count().await, before, "no AWS key");
    assert!(app.all_keys(&vault.name, "").await.is_empty(), "no Keyward key");
    assert_eq!(app.aws_aliases(&aws_id(&old)).await, ALIASES.to_vec());

    let done = try_rotate(&mut app, onto(&old.name, Source::NewKeyInGroup(vault.name.clone()))).await.expect("rotate");
    let (shown, done) = (shown.plan.expect("shown"), done.plan.expect("done"));
    // A plan does not name the Keyward key it would make (its id exists once it is made); the
    // rotation makes the same calls.
    assert!(shown.source.as_ref().expect("source").key.is_empty());
    assert!(!done.source.as_ref().expect("source").key.is_empty());
    assert_eq!(shown.aws_calls, done.aws_calls);
}

#[tokio::test]
async fn refusals_onto_keyward_material_come_before_any_aws_call() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto-refusals").await;
    let vault = app.regular_group("onto-refusals-vault").await;
    let (old, _) = aws_made_key(&mut app, &g.name).await;
    let rsa = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]))
        .await
        .expect("rsa");
    let no_export = app.create_key(&vault.name, "no-export", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let good = app.create_key(&vault.name, "good", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Export]).await;
    let before = app.aws_key_count().await;

    let e = try_rotate(&mut app, onto(&old.name, Source::Key(no_export.name.clone()))).await.expect_err("no EXPORT");
    assert!(precondition(&e, "KEY_OPS", "without EXPORT").contains("EXPORT"));
    let e = try_rotate(&mut app, onto(&old.name, Source::Key(rsa.name.clone()))).await.expect_err("a virtual source");
    precondition(&e, "COPY_SOURCE", "virtual source");
    let e = try_rotate(&mut app, onto(&rsa.name, Source::Key(good.name.clone()))).await.expect_err("asymmetric");
    assert!(precondition(&e, "KEY_SPEC", "asymmetric").contains("SYMMETRIC_DEFAULT"));
    let e = try_rotate(&mut app, onto(&old.name, Source::NewKeyInGroup(g.name.clone()))).await.expect_err("AWS group");
    invalid_on(&e, "to_source.new_key_in_group", "an AWS_KMS group");
    let e = try_rotate(&mut app, onto(&old.name, Source::Key("groups/x/keys/y".into()))).await.expect_err("bad name");
    invalid_on(&e, "to_source.key", "malformed");
    let e = try_rotate(
        &mut app,
        pb::RotateKeyRequest { in_place: true, ..onto(&old.name, Source::Key(good.name.clone())) },
    )
    .await
    .expect_err("in place");
    invalid_on(&e, "to_source", "in place");
    let e = try_rotate(
        &mut app,
        pb::RotateKeyRequest {
            to_source: Some(pb::RotationSource { source: None }),
            ..onto(&old.name, Source::Key(String::new()))
        },
    )
    .await
    .expect_err("empty source");
    invalid_on(&e, "to_source", "empty");
    app.set_enabled(&good.name, false).await;
    let e = try_rotate(&mut app, onto(&old.name, Source::Key(good.name.clone()))).await.expect_err("disabled source");
    precondition(&e, "KEY_STATE", "disabled source");

    assert_eq!(app.aws_key_count().await, before, "no AWS key was made");
    assert_eq!(app.all_keys(&vault.name, "").await.len(), 2, "no Keyward key was made");
    assert_eq!(app.aws_aliases(&aws_id(&old)).await, ALIASES.to_vec());
}

#[tokio::test]
async fn a_failed_import_undoes_the_rotation_and_leaves_nothing_open() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto-fail").await;
    let vault = app.regular_group("onto-fail-vault").await;
    let source = app.create_key(&vault.name, "material", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Export]).await;
    let (old, _) = aws_made_key(&mut app, &g.name).await;
    app.faults.inject(Fault::Fail {
        op: "import_key_material",
        key: None,
        error: KmsError::Unavailable("injected import failure".into()),
        times: Some(1),
    });
    let e = try_rotate(&mut app, onto(&old.name, Source::Key(source.name.clone()))).await.expect_err("import fails");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // The aliases never moved; the new AWS key is scheduled for deletion and shown so.
    assert_eq!(app.aws_aliases(&aws_id(&old)).await, ALIASES.to_vec());
    let keys = app.all_keys(&g.name, "").await;
    let new = keys.iter().find(|k| k.name != old.name).expect("the new key is recorded");
    assert_eq!(new.state, pb::KeyState::PendingDeletion as i32);
    assert_eq!(app.aws_state(&aws_id(new)).await, "PendingDeletion");
    // Nothing is left open: the key rotates again at once.
    let out = try_rotate(&mut app, onto(&old.name, Source::Key(source.name.clone()))).await.expect("rotate again");
    assert_eq!(app.aws_aliases(&aws_id(&out.key.expect("new"))).await, ALIASES.to_vec());
}

#[tokio::test]
async fn the_source_of_an_open_rotation_is_not_changed_and_an_undone_rotation_retires_the_key_it_made() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("onto-open").await;
    let vault = app.regular_group("onto-open-vault").await;
    let source = app.create_key(&vault.name, "material", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Export]).await;
    let (old, _) = aws_made_key(&mut app, &g.name).await;
    // Interrupted after the first alias moved: the rotation is open until the worker resumes it.
    app.faults.inject(Fault::Fail {
        op: "update_alias",
        key: Some(ALIASES[1].into()),
        error: KmsError::Unavailable("injected".into()),
        times: Some(1),
    });
    try_rotate(&mut app, onto(&old.name, Source::Key(source.name.clone()))).await.expect_err("interrupted");
    // The Keyward key whose material it imports is part of it: no change meanwhile.
    let e = app.delete_material(&source.name, true).await;
    assert!(e.is_err());
    let mut off = source.clone();
    off.etag.clear();
    off.enabled = false;
    let e = app.update_key(off, &["enabled"]).await.expect_err("disable the source of an open rotation");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let r =
        keyward_worker::recovery::run_once(&app.keyward, app.keyward.now() + std::time::Duration::from_secs(11 * 60))
            .await
            .expect("recovery");
    assert_eq!(r.resumed.len(), 1, "{r:?}");
    app.set_enabled(&source.name, false).await;

    // A rotation that makes its source and is undone (the import refused): that key is retired.
    let other = app
        .try_create_key(&g.name, key("other", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &["alias/src/other"], &[]))
        .await
        .expect("other");
    app.faults.inject(Fault::Fail {
        op: "import_key_material",
        key: None,
        error: KmsError::Unavailable("injected import failure".into()),
        times: Some(1),
    });
    try_rotate(&mut app, onto(&other.name, Source::NewKeyInGroup(vault.name.clone()))).await.expect_err("undone");
    let made = app.all_keys(&vault.name, "").await.into_iter().find(|k| k.display_name.contains("other~source"));
    let made = made.expect("the key the rotation made");
    assert_eq!(made.state, pb::KeyState::Disabled as i32);
    assert!(made.display_name.contains("~abandoned-"), "{}", made.display_name);
}

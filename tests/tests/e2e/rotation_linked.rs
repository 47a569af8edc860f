//! RotateKey of a Keyward key with its linked copies (the guide's 5.2) against the real emulator:
//! AWS copies get new EXTERNAL keys with the new material and their aliases (checked behind
//! Keyward's back), REGULAR copies new Keyward keys; a size change leaves AWS copies behind with
//! the reason; a chosen list; plans; refusals.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::aws_id;
use keyward_tests::status::invalid_on;
use keyward_worker::scheduled_rotation;
use pb::KeyOperation as Op;

const OPS: [Op; 3] = [Op::Encrypt, Op::Decrypt, Op::Export];

fn links(k: &pb::Key, kind: pb::KeyLinkKind) -> Vec<String> {
    let mut v: Vec<String> = k.links.iter().filter(|l| l.kind == kind as i32).map(|l| l.key.clone()).collect();
    v.sort();
    v
}

fn linked(name: &str) -> pb::RotateKeyRequest {
    pb::RotateKeyRequest { name: name.into(), rotate_linked: true, ..Default::default() }
}

async fn try_rotate(app: &mut TestApp, req: pb::RotateKeyRequest) -> Result<pb::RotateKeyResponse, tonic::Status> {
    app.keys.rotate_key(req).await.map(|r| r.into_inner())
}

async fn copy(app: &mut TestApp, source: &str, group: &str, name: &str, aliases: &[&str]) -> pb::Key {
    let req = pb::CopyKeyRequest {
        source: source.into(),
        target_group: group.into(),
        display_name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    app.keys.copy_key(req).await.expect("copy").into_inner()
}

/// A Keyward key with one AWS copy (two aliases) and one REGULAR copy.
struct Estate {
    aws_group: pb::Group,
    mirror: pb::Group,
    source: pb::Key,
    aws_copy: pb::Key,
    regular_copy: pb::Key,
}

async fn estate(app: &mut TestApp, tag: &str) -> Estate {
    let vault = app.regular_group(&format!("{tag}-vault")).await;
    let mirror = app.regular_group(&format!("{tag}-mirror")).await;
    let aws_group = app.create_aws_group(&format!("{tag}-aws")).await;
    let source = app.create_key(&vault.name, "orders", pb::KeySpec::Aes256, &OPS).await;
    let aliases = [format!("alias/{tag}/orders"), format!("alias/{tag}/orders-prod")];
    let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
    let aws_copy = copy(app, &source.name, &aws_group.name, "orders-aws", &aliases).await;
    let regular_copy = copy(app, &source.name, &mirror.name, "orders-mirror", &[]).await;
    let source = app.get_key(&source.name).await;
    Estate { aws_group, mirror, source, aws_copy, regular_copy }
}

#[tokio::test]
async fn a_keyward_key_rotates_with_all_its_copies() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "lnk").await;
    let mut crypto = app.crypto_client();
    let old_ct = crypto
        .encrypt(pb::EncryptRequest {
            name: e.source.name.clone(),
            plaintext: b"old".to_vec(),
            aad: vec![],
            ..Default::default()
        })
        .await
        .expect("encrypt")
        .into_inner()
        .ciphertext;
    let old_copy_id = aws_id(&e.aws_copy);
    let old_aws_ct = app.aws_encrypt(&old_copy_id, b"old aws").await;

    let out = try_rotate(&mut app, linked(&e.source.name)).await.expect("rotate");
    let plan = out.plan.clone().expect("plan");
    assert_eq!(plan.kind, pb::RotationKind::KeywardKey as i32);
    assert_eq!(plan.copies.len(), 2);
    assert!(plan.copies.iter().all(|c| c.skipped.is_empty()), "{:?}", plan.copies);
    let new = out.key.clone().expect("new key");
    let successor = |old: &pb::Key| plan.copies.iter().find(|c| c.key == old.name).expect("planned").new_key.clone();
    let (new_aws_name, new_regular_name) = (successor(&e.aws_copy), successor(&e.regular_copy));
    let mut created = out.created_keys.clone();
    created.sort();
    let mut want = vec![new.name.clone(), new_aws_name.clone(), new_regular_name.clone()];
    want.sort();
    assert_eq!(created, want);
    assert_eq!(out.moved_aliases.len(), 2);

    // The new Keyward key: the name, the links; the old one still decrypts.
    let (old_now, new_now) = (app.get_key(&e.source.name).await, app.get_key(&new.name).await);
    assert_eq!(new_now.display_name, "orders");
    assert!(old_now.display_name.starts_with("orders~rotated-"), "{}", old_now.display_name);
    assert_eq!(old_now.state, pb::KeyState::Enabled as i32);
    assert_eq!(links(&old_now, pb::KeyLinkKind::RotatedTo), vec![new.name.clone()]);
    assert_eq!(links(&new_now, pb::KeyLinkKind::RotatedFrom), vec![e.source.name.clone()]);
    let mut copies = vec![new_aws_name.clone(), new_regular_name.clone()];
    copies.sort();
    assert_eq!(links(&new_now, pb::KeyLinkKind::CopiedTo), copies);
    let pt = crypto
        .decrypt(pb::DecryptRequest {
            name: e.source.name.clone(),
            ciphertext: old_ct,
            aad: vec![],
            ..Default::default()
        })
        .await
        .expect("the old key still decrypts")
        .into_inner()
        .plaintext;
    assert_eq!(pt, b"old");

    // The AWS copy's successor: EXTERNAL, ENABLED, holding the aliases (behind Keyward's back).
    let new_aws = app.get_key(&new_aws_name).await;
    let new_aws_id = aws_id(&new_aws);
    assert_eq!(app.aws_meta(&new_aws_id).await.origin().map(|o| o.as_str()), Some("EXTERNAL"));
    assert_eq!(app.aws_state(&new_aws_id).await, "Enabled");
    assert_eq!(app.aws_aliases(&new_aws_id).await, vec!["alias/lnk/orders", "alias/lnk/orders-prod"]);
    assert!(app.aws_aliases(&old_copy_id).await.is_empty());
    assert_eq!(new_aws.display_name, "orders-aws");
    assert_eq!(links(&new_aws, pb::KeyLinkKind::CopiedFrom), vec![new.name.clone()]);
    assert_eq!(links(&new_aws, pb::KeyLinkKind::RotatedFrom), vec![e.aws_copy.name.clone()]);
    assert_eq!(app.aws_decrypt(&old_copy_id, &old_aws_ct).await.expect("old copy decrypts"), b"old aws");
    // It holds the new key's material: after AWS loses it, a reimport from the new Keyward key
    // (through COPIED_FROM) opens what it encrypted before.
    let ct = app.aws_encrypt(&new_aws_id, b"new aws").await;
    app.delete_material(&new_aws_name, false).await.expect("delete material");
    app.reimport(&new_aws_name).await.expect("reimport from the new key");
    assert_eq!(app.aws_decrypt(&new_aws_id, &ct).await.expect("decrypts again"), b"new aws");

    // The REGULAR copy's successor.
    let new_regular = app.get_key(&new_regular_name).await;
    assert_eq!(new_regular.group, e.mirror.name);
    assert_eq!(new_regular.display_name, "orders-mirror");
    assert_eq!(new_regular.key_spec, pb::KeySpec::Aes256 as i32);
    assert_eq!(links(&new_regular, pb::KeyLinkKind::CopiedFrom), vec![new.name.clone()]);
    let old_regular = app.get_key(&e.regular_copy.name).await;
    assert!(old_regular.display_name.starts_with("orders-mirror~rotated-"));
    assert_eq!(links(&old_regular, pb::KeyLinkKind::RotatedTo), vec![new_regular_name.clone()]);
}

#[tokio::test]
async fn a_size_change_leaves_aws_copies_behind_with_the_reason() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "size").await;
    let req = pb::RotateKeyRequest { key_spec: pb::KeySpec::Aes128 as i32, ..linked(&e.source.name) };
    let out = try_rotate(&mut app, req).await.expect("rotate to AES_128");
    let plan = out.plan.clone().expect("plan");
    let aws = plan.copies.iter().find(|c| c.key == e.aws_copy.name).expect("aws copy planned");
    assert!(aws.skipped.contains("256-bit"), "{}", aws.skipped);
    assert!(aws.new_key.is_empty());
    let regular = plan.copies.iter().find(|c| c.key == e.regular_copy.name).expect("regular copy planned");
    assert!(regular.skipped.is_empty());
    assert_eq!(out.created_keys.len(), 2, "the new key and the REGULAR copy's: {:?}", out.created_keys);
    let new = app.get_key(&out.key.expect("new").name).await;
    assert_eq!(new.key_spec, pb::KeySpec::Aes128 as i32);
    assert_eq!(app.get_key(&regular.new_key).await.key_spec, pb::KeySpec::Aes128 as i32);
    // The AWS copy is untouched: aliases, name, state, its link to the old key.
    let aws_now = app.get_key(&e.aws_copy.name).await;
    assert_eq!(aws_now.display_name, "orders-aws");
    assert_eq!(app.aws_aliases(&aws_id(&aws_now)).await.len(), 2);
    assert_eq!(links(&aws_now, pb::KeyLinkKind::CopiedFrom), vec![e.source.name.clone()]);
    assert!(links(&aws_now, pb::KeyLinkKind::RotatedTo).is_empty());
    assert_eq!(app.all_keys(&e.aws_group.name, "").await.len(), 1, "no new AWS key");
}

#[tokio::test]
async fn only_the_chosen_copies_follow_and_none_without_rotate_linked() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "pick").await;
    let other = app.create_key(&e.mirror.name, "unrelated", pb::KeySpec::Aes256, &OPS).await;

    // Refusals first, nothing changed.
    let before = app.aws_key_count().await;
    let only = |names: &[&str]| pb::RotateKeyRequest {
        linked_copies: names.iter().map(|n| n.to_string()).collect(),
        ..linked(&e.source.name)
    };
    let err = try_rotate(&mut app, only(&[other.name.as_str()])).await.expect_err("not a copy");
    invalid_on(&err, "linked_copies", "not a copy");
    let err = try_rotate(&mut app, pb::RotateKeyRequest { rotate_linked: false, ..only(&[e.aws_copy.name.as_str()]) })
        .await
        .expect_err("linked_copies without rotate_linked");
    invalid_on(&err, "linked_copies", "without rotate_linked");
    let err = try_rotate(&mut app, linked(&e.aws_copy.name)).await.expect_err("rotate_linked on a virtual key");
    invalid_on(&err, "rotate_linked", "virtual key");
    let err =
        try_rotate(&mut app, pb::RotateKeyRequest { key_spec: pb::KeySpec::Rsa2048 as i32, ..linked(&e.source.name) })
            .await
            .expect_err("RSA for a Keyward key");
    invalid_on(&err, "key_spec", "RSA");
    let err = try_rotate(&mut app, pb::RotateKeyRequest { in_place: true, ..linked(&e.source.name) })
        .await
        .expect_err("in place");
    invalid_on(&err, "in_place", "in place");
    assert_eq!(app.aws_key_count().await, before);

    // A plan changes nothing.
    let shown =
        try_rotate(&mut app, pb::RotateKeyRequest { validate_only: true, ..only(&[e.regular_copy.name.as_str()]) })
            .await
            .expect("plan");
    assert!(!shown.executed);
    let planned = shown.plan.expect("plan");
    assert!(
        planned.copies.iter().all(|c| c.new_key.is_empty()),
        "keys not made yet have no name: {:?}",
        planned.copies
    );
    assert_eq!(planned.source.expect("new key").display_name, "orders");
    assert_eq!(app.all_keys(&e.mirror.name, "").await.len(), 2, "no new Keyward key");
    assert_eq!(app.get_key(&e.source.name).await.display_name, "orders");

    // Only the REGULAR copy follows; the AWS copy is listed, not dropped.
    let out = try_rotate(&mut app, only(&[e.regular_copy.name.as_str()])).await.expect("rotate");
    let plan = out.plan.expect("plan");
    let aws = plan.copies.iter().find(|c| c.key == e.aws_copy.name).expect("aws copy listed");
    assert!(aws.skipped.contains("not in linked_copies"), "{}", aws.skipped);
    assert_eq!(app.aws_key_count().await, before, "no AWS key made");
    assert_eq!(out.created_keys.len(), 2);

    // Without rotate_linked every copy is listed as staying on the old material.
    let next = out.key.expect("new key").name;
    let out = try_rotate(&mut app, pb::RotateKeyRequest { name: next, ..Default::default() }).await.expect("again");
    let plan = out.plan.expect("plan");
    assert_eq!(plan.copies.len(), 1, "the new key has one copy: {:?}", plan.copies);
    assert!(plan.copies[0].skipped.contains("rotate_linked is not set"));
}

#[tokio::test]
async fn a_cron_policy_rotates_a_keyward_key_and_its_copies_once_when_due() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "sched").await;
    let mut p = e.source.clone();
    p.etag.clear();
    p.rotation_policy =
        Some(pb::RotationPolicy { cron: "30 2 * * *".into(), rotate_linked: true, ..Default::default() });
    let set = app.update_key(p, &["rotation_policy"]).await.expect("cron policy");
    let next = set.rotation_policy.expect("policy").next_rotation_time.expect("next").seconds;
    let next = time::OffsetDateTime::from_unix_timestamp(next).expect("time");
    assert_eq!((next.hour(), next.minute()), (2, 30));
    let before = app.aws_key_count().await;

    // Not due yet: nothing.
    let early = scheduled_rotation::run_once(&app.keyward, next - std::time::Duration::from_secs(60)).await;
    assert_eq!(early.expect("pass"), scheduled_rotation::Report::default());
    // Three days of firings missed: one rotation, copies with it.
    let late = next + std::time::Duration::from_secs(3 * 86_400 + 3600);
    let r = scheduled_rotation::run_once(&app.keyward, late).await.expect("pass");
    assert_eq!(r.rotated.len(), 1, "{r:?}");
    assert_eq!(app.aws_key_count().await, before + 1, "the AWS copy's successor");
    let again = scheduled_rotation::run_once(&app.keyward, late + std::time::Duration::from_secs(60)).await;
    assert_eq!(again.expect("pass"), scheduled_rotation::Report::default());

    let old = app.get_key(&e.source.name).await;
    assert!(old.rotation_policy.is_none());
    // The retired key takes no policy: its successor is the one to rotate.
    let mut p = old.clone();
    p.etag.clear();
    p.rotation_policy = Some(pb::RotationPolicy { cron: "0 3 * * *".into(), ..Default::default() });
    let err = app.update_key(p, &["rotation_policy"]).await.expect_err("a policy on a rotated key");
    keyward_tests::status::precondition(&err, "ALREADY_ROTATED", "policy on a rotated key");
    let new = app.get_key(&links(&old, pb::KeyLinkKind::RotatedTo)[0]).await;
    let policy = new.rotation_policy.clone().expect("the policy moved to the new key");
    let next = time::OffsetDateTime::from_unix_timestamp(policy.next_rotation_time.expect("next").seconds).expect("t");
    assert!(next > late && next - late <= time::Duration::days(1), "{next} after {late}");
    assert_eq!(links(&new, pb::KeyLinkKind::CopiedTo).len(), 2, "both copies followed");
    let aws_now = app.get_key(&e.aws_copy.name).await;
    let successor = app.get_key(&links(&aws_now, pb::KeyLinkKind::RotatedTo)[0]).await;
    assert_eq!(app.aws_aliases(&aws_id(&successor)).await.len(), 2);
    assert_eq!(successor.created_by, "worker");
}

#[tokio::test]
async fn an_undone_rotation_leaves_every_alias_and_record_as_before() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "undo").await;
    // A second AWS copy, made after the first: the rotation handles it second.
    let second =
        copy(&mut app, &e.source.name, &e.aws_group.name, "orders-aws-2", &["alias/undo/b1", "alias/undo/b2"]).await;
    let decoy = app.create_sym_key(&e.aws_group.name, "decoy").await;
    app.faults.inject(keyward_shared::kms::faults::Fault::Delay { op: "update_alias", millis: 700 });
    let mut keys = app.keys.clone();
    let req = linked(&e.source.name);
    let run = tokio::spawn(async move { keys.rotate_key(req).await });
    // While the first copy's aliases move, one of the second copy's is moved behind Keyward's back.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    app.aws.update_alias().alias_name("alias/undo/b2").target_key_id(aws_id(&decoy)).send().await.expect("move");
    let err = run.await.expect("join").expect_err("stopped");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    app.faults.clear();

    // AWS: the first copy's aliases are back on it; the second's untouched one still on it.
    assert_eq!(app.aws_aliases(&aws_id(&e.aws_copy)).await, vec!["alias/undo/orders", "alias/undo/orders-prod"]);
    assert_eq!(app.aws_aliases(&aws_id(&second)).await, vec!["alias/undo/b1"]);
    // Keyward's records say the same, and the successors hold nothing.
    let first_now = app.get_key(&e.aws_copy.name).await;
    assert_eq!(first_now.aws.as_ref().expect("aws").aliases, vec!["alias/undo/orders", "alias/undo/orders-prod"]);
    assert_eq!(first_now.display_name, "orders-aws");
    let abandoned: Vec<pb::Key> = app
        .all_keys(&e.aws_group.name, "")
        .await
        .into_iter()
        .filter(|k| k.display_name.contains("~abandoned-"))
        .collect();
    assert_eq!(abandoned.len(), 2, "both copies' successors: {abandoned:?}");
    for k in abandoned {
        assert!(k.aws.as_ref().expect("aws").aliases.is_empty(), "{k:?}");
        assert_eq!(k.state, pb::KeyState::PendingDeletion as i32);
    }
    assert_eq!(app.get_key(&e.source.name).await.display_name, "orders", "the old key keeps its name");
}

#[tokio::test]
async fn copies_and_sizes_that_cannot_follow() {
    let mut app = TestApp::spawn().await;
    let e = estate(&mut app, "edge").await;
    // A key that wraps cannot become AES_192 (no AES-192 key wrap).
    let wrapper = app.create_key(&e.mirror.name, "wrapper", pb::KeySpec::Aes256, &[Op::WrapKey, Op::UnwrapKey]).await;
    let err =
        try_rotate(&mut app, pb::RotateKeyRequest { key_spec: pb::KeySpec::Aes192 as i32, ..linked(&wrapper.name) })
            .await
            .expect_err("AES_192 with WRAP_KEY");
    invalid_on(&err, "key_spec", "wrap");
    // A copy under an open rotation of its source cannot be made meanwhile.
    app.faults.inject(keyward_shared::kms::faults::Fault::Fail {
        op: "update_alias",
        key: None,
        error: keyward_shared::kms::Error::Unavailable("injected".into()),
        times: Some(1),
    });
    try_rotate(&mut app, linked(&e.source.name)).await.expect_err("interrupted");
    let req =
        pb::CopyKeyRequest { source: e.source.name.clone(), target_group: e.mirror.name.clone(), ..Default::default() };
    let err = app.keys.copy_key(req).await.expect_err("copy of a key being rotated");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    let r =
        keyward_worker::recovery::run_once(&app.keyward, app.keyward.now() + std::time::Duration::from_secs(11 * 60))
            .await
            .expect("recovery");
    assert_eq!(r.resumed.len(), 1, "{r:?}");
    // A deleted copy leaves no link behind, so naming it is refused.
    let old_source = app.get_key(&e.source.name).await;
    let new_source = app.get_key(&links(&old_source, pb::KeyLinkKind::RotatedTo)[0]).await;
    let regular_copy = links(&new_source, pb::KeyLinkKind::CopiedTo)
        .into_iter()
        .find(|n| n.starts_with(&e.mirror.name))
        .expect("the REGULAR copy's successor");
    app.set_enabled(&regular_copy, false).await;
    app.delete_key(&regular_copy).await.expect("delete the copy");
    let after = app.get_key(&new_source.name).await;
    assert!(!links(&after, pb::KeyLinkKind::CopiedTo).contains(&regular_copy), "{:?}", after.links);
    let req = pb::RotateKeyRequest { linked_copies: vec![regular_copy.clone()], ..linked(&new_source.name) };
    let err = try_rotate(&mut app, req).await.expect_err("a deleted copy");
    invalid_on(&err, "linked_copies", "deleted copy");
}

//! Crash tests: a real server process rotates a key and is killed with SIGKILL at each step
//! (an AWS call that never answers holds it there); the worker's recovery then runs on the same
//! database. Afterwards Keyward's records equal AWS's: no AWS key Keyward does not know, no alias
//! lost or left on a retired key, no key material lost.

use std::collections::BTreeMap;
use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_id, key};
use keyward_tests::process::ServerProcess;
use keyward_worker::recovery;
use pb::KeyOperation as Op;
use sea_orm::ConnectionTrait;

const SERVER: &str = env!("CARGO_BIN_EXE_keyward-test-server");
const ALIASES: [&str; 2] = ["alias/crash/a", "alias/crash/b"];

/// The state of the test's one rotation journal entry, if there is one.
async fn rotation_state(app: &TestApp) -> Option<String> {
    let db = app.keyward.store().connection();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT state FROM operations WHERE kind = 'ROTATE'",
        ))
        .await
        .expect("query");
    row.map(|r| r.try_get::<String>("", "state").expect("state"))
}

/// How the crashed rotation makes its new key.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// With AWS's material (NEW_KEY).
    AwsMaterial,
    /// Onto a Keyward key's material (TO_SOURCE): the key `source` of a REGULAR group.
    KeywardMaterial,
    /// The rotated key is a Keyward key; the AWS key is its linked copy, which follows.
    LinkedCopy,
}

/// How many keys wait for their material.
async fn pending_imports(app: &TestApp) -> i64 {
    let db = app.keyward.store().connection();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM keys WHERE state = 'PENDING_IMPORT'",
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

/// Rotates a key with two aliases through a server process that hangs at `hang`, waits until
/// the journal shows `step`, kills the process, lets time pass and runs the recovery.
async fn killed_at(
    hang: &str,
    step: &str,
    action: pb::OldKeyAction,
    kind: Kind,
) -> (TestApp, pb::Key, recovery::Report) {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("crash").await;
    let (old, req) = match kind {
        Kind::AwsMaterial | Kind::KeywardMaterial => {
            let k = key(
                "payments",
                pb::KeySpec::SymmetricDefault,
                &[Op::Encrypt, Op::Decrypt],
                &ALIASES,
                &[("team", "pay")],
            );
            let old = app.try_create_key(&g.name, k).await.expect("create");
            let to_source = if kind == Kind::KeywardMaterial {
                let regular = app.regular_group("crash-material").await;
                let ops = [Op::Encrypt, Op::Decrypt, Op::Export];
                let source = app.create_key(&regular.name, "source", pb::KeySpec::Aes256, &ops).await;
                Some(pb::RotationSource { source: Some(pb::rotation_source::Source::Key(source.name)) })
            } else {
                None
            };
            let req = pb::RotateKeyRequest { name: old.name.clone(), to_source, ..Default::default() };
            (old, req)
        }
        Kind::LinkedCopy => {
            let regular = app.regular_group("crash-source").await;
            let ops = [Op::Encrypt, Op::Decrypt, Op::Export];
            let source = app.create_key(&regular.name, "source", pb::KeySpec::Aes256, &ops).await;
            let copy = pb::CopyKeyRequest {
                source: source.name.clone(),
                target_group: g.name.clone(),
                display_name: "payments".into(),
                aliases: ALIASES.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            };
            let old = app.keys.copy_key(copy).await.expect("copy into AWS").into_inner();
            let req = pb::RotateKeyRequest { name: source.name, rotate_linked: true, ..Default::default() };
            (old, req)
        }
    };

    let aws_keys_before = app.aws_key_count().await;
    let server = ServerProcess::start(SERVER, &app, Some(hang)).await;
    let mut keys = server.keys(&app);
    let req = pb::RotateKeyRequest { old_key_action: action as i32, ..req };
    let call = tokio::spawn(async move { keys.rotate_key(req).await });
    let mut seen = None;
    for _ in 0..400 {
        seen = rotation_state(&app).await;
        if seen.as_deref() == Some(step) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen.as_deref(), Some(step), "the rotation did not reach {step}");
    // Held at an import: wait until the new key it imports into is recorded (the step of a
    // Keyward key's rotation stays STARTED while it makes its copies' keys).
    // Held after AWS made the new key: wait until AWS has it (Keyward has not recorded it).
    if hang == "after:create_key" {
        for _ in 0..400 {
            if app.aws_key_count().await > aws_keys_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(app.aws_key_count().await > aws_keys_before, "AWS made no key");
    }
    if hang == "import_key_material" {
        for _ in 0..400 {
            if pending_imports(&app).await > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(pending_imports(&app).await > 0, "no key waits for its material");
    }
    server.kill().await;
    assert!(call.await.expect("join").is_err(), "the killed server answered");

    // Later: the dead process's locks have expired and its journal entry is stale.
    app.clock.advance(Duration::from_secs(11 * 60));
    let report = recovery::run_once(&app.keyward, app.keyward.now()).await.expect("recovery");
    (app, old, report)
}

/// Keyward's records of the group equal what AWS holds, and every alias targets a live key.
async fn records_equal_aws(app: &mut TestApp, group: &str) -> Vec<pb::Key> {
    let keys = app.all_keys(group, "").await;
    let known: BTreeMap<String, &pb::Key> =
        keys.iter().map(|k| (k.aws.as_ref().expect("virtual").key_arn.clone(), k)).collect();
    let listed = app.aws.list_keys().limit(1000).send().await.expect("aws keys");
    for entry in listed.keys() {
        let arn = entry.key_arn().unwrap_or_default();
        assert!(known.contains_key(arn), "AWS key {arn} is unknown to Keyward");
    }
    for k in &keys {
        let id = aws_id(k);
        let aws = k.aws.as_ref().expect("aws");
        assert_eq!(aws.aliases, app.aws_aliases(&id).await, "{}: aliases differ from AWS's", k.name);
        assert_eq!(aws.aws_key_state, app.aws_state(&id).await, "{}: state differs from AWS's", k.name);
    }
    for alias in ALIASES {
        let target = app.aws.describe_key().key_id(alias).send().await.expect("alias resolves");
        let state = target.key_metadata().and_then(|m| m.key_state()).map(|s| s.as_str().to_owned());
        assert_eq!(state.as_deref(), Some("Enabled"), "{alias} is left on a key that is not enabled");
    }
    keys
}

/// After a resumed rotation: the new key holds every alias and the name, both keys are linked.
fn rotated(keys: &[pb::Key], old: &pb::Key) -> (pb::Key, pb::Key) {
    let old_now = keys.iter().find(|k| k.name == old.name).expect("old key").clone();
    let to = old_now.links.iter().find(|l| l.kind == pb::KeyLinkKind::RotatedTo as i32).expect("ROTATED_TO link");
    let new = keys.iter().find(|k| k.name == to.key).expect("new key").clone();
    assert_eq!(new.display_name, "payments");
    assert!(old_now.display_name.starts_with("payments~rotated-"), "{}", old_now.display_name);
    assert_eq!(new.aws.as_ref().expect("aws").aliases, ALIASES.to_vec());
    assert!(new.links.iter().any(|l| l.kind == pb::KeyLinkKind::RotatedFrom as i32 && l.key == old.name));
    (old_now, new)
}

#[tokio::test]
async fn killed_before_aws_created_the_new_key_the_rotation_ends_with_nothing_made() {
    let (mut app, old, report) =
        killed_at("create_key", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::AwsMaterial).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let group = old.group.clone();
    let keys = records_equal_aws(&mut app, &group).await;
    assert_eq!(keys.len(), 1, "no new key");
    assert_eq!(keys[0].aws.as_ref().expect("aws").aliases, ALIASES.to_vec(), "the aliases stay on the old key");
    assert_eq!(rotation_state(&app).await.as_deref(), Some("FAILED"));
}

#[tokio::test]
async fn killed_after_the_new_key_was_recorded_the_rotation_is_resumed() {
    let (mut app, old, report) =
        killed_at("update_alias:alias/crash/a", "AWS_KEY_CREATED", pb::OldKeyAction::KeepEnabled, Kind::AwsMaterial)
            .await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    let (old_now, _) = rotated(&keys, &old);
    assert_eq!(old_now.state, pb::KeyState::Enabled as i32, "the old key keeps decrypting");
    assert_eq!(rotation_state(&app).await.as_deref(), Some("DONE"));
}

#[tokio::test]
async fn killed_between_two_alias_moves_the_rotation_is_resumed() {
    let (mut app, old, report) =
        killed_at("update_alias:alias/crash/b", "AWS_KEY_CREATED", pb::OldKeyAction::KeepEnabled, Kind::AwsMaterial)
            .await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    rotated(&keys, &old);
    assert_eq!(rotation_state(&app).await.as_deref(), Some("DONE"));
}

#[tokio::test]
async fn killed_after_the_aliases_moved_the_old_key_is_still_retired() {
    let (mut app, old, report) =
        killed_at("disable_key", "ALIASES_MOVED", pb::OldKeyAction::Disable, Kind::AwsMaterial).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    let (old_now, _) = rotated(&keys, &old);
    assert_eq!(old_now.state, pb::KeyState::Disabled as i32);
    assert_eq!(app.aws_state(&aws_id(&old)).await, "Disabled");
    assert_eq!(rotation_state(&app).await.as_deref(), Some("DONE"));
}

/// After a resumed rotation onto Keyward material: the new key is EXTERNAL, ENABLED in AWS with
/// the material imported, and names its source.
async fn onto_the_source(app: &mut TestApp, old: &pb::Key) {
    let keys = records_equal_aws(app, &old.group).await;
    let (_, new) = rotated(&keys, old);
    assert_eq!(new.source, pb::KeySource::Keyward as i32);
    assert!(new.links.iter().any(|l| l.kind == pb::KeyLinkKind::CopiedFrom as i32), "{:?}", new.links);
    let meta = app.aws_meta(&aws_id(&new)).await;
    assert_eq!(meta.origin().map(|o| o.as_str()), Some("EXTERNAL"));
    assert_eq!(app.aws_state(&aws_id(&new)).await, "Enabled");
    assert_eq!(rotation_state(app).await.as_deref(), Some("DONE"));
}

#[tokio::test]
async fn killed_before_the_material_was_imported_a_rotation_onto_keyward_material_is_resumed() {
    let (mut app, old, report) =
        killed_at("import_key_material", "AWS_KEY_CREATED", pb::OldKeyAction::KeepEnabled, Kind::KeywardMaterial).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
}

#[tokio::test]
async fn killed_between_two_alias_moves_a_rotation_onto_keyward_material_is_resumed() {
    let (mut app, old, report) = killed_at(
        "update_alias:alias/crash/b",
        "AWS_KEY_CREATED",
        pb::OldKeyAction::KeepEnabled,
        Kind::KeywardMaterial,
    )
    .await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
}

#[tokio::test]
async fn killed_before_aws_created_the_new_key_a_rotation_onto_keyward_material_ends_with_nothing_made() {
    let (mut app, old, report) =
        killed_at("create_key", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::KeywardMaterial).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    assert_eq!(keys.len(), 1, "no new key");
    assert_eq!(rotation_state(&app).await.as_deref(), Some("FAILED"));
}

#[tokio::test]
async fn killed_before_a_copy_s_material_was_imported_a_keyward_key_s_rotation_is_resumed() {
    let (mut app, old, report) =
        killed_at("import_key_material", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::LinkedCopy).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
}

#[tokio::test]
async fn killed_between_a_copy_s_alias_moves_a_keyward_key_s_rotation_is_resumed() {
    let (mut app, old, report) =
        killed_at("update_alias:alias/crash/b", "AWS_KEY_CREATED", pb::OldKeyAction::Disable, Kind::LinkedCopy).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
    assert_eq!(app.aws_state(&aws_id(&old)).await, "Disabled", "the old copy retired");
}

#[tokio::test]
async fn killed_between_aws_making_the_new_key_and_keyward_recording_it_a_sync_records_it() {
    let (mut app, old, report) =
        killed_at("after:create_key", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::AwsMaterial).await;
    assert_eq!((report.failed.len(), report.synced.len()), (1, 1), "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    assert_eq!(keys.len(), 2, "the key AWS made is known");
    let old_now = keys.iter().find(|k| k.name == old.name).expect("old");
    assert_eq!(old_now.aws.as_ref().expect("aws").aliases, ALIASES.to_vec(), "the aliases stay on the old key");
}

#[tokio::test]
async fn killed_after_the_aliases_moved_a_rotation_onto_keyward_material_is_finished() {
    let (mut app, old, report) =
        killed_at("disable_key", "ALIASES_MOVED", pb::OldKeyAction::Disable, Kind::KeywardMaterial).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
    assert_eq!(app.aws_state(&aws_id(&old)).await, "Disabled");
}

#[tokio::test]
async fn killed_before_aws_made_a_copy_s_key_a_keyward_key_s_rotation_is_resumed() {
    let (mut app, old, report) =
        killed_at("create_key", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::LinkedCopy).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
}

#[tokio::test]
async fn killed_between_aws_making_a_copy_s_key_and_keyward_recording_it_nothing_is_left_unknown() {
    let (mut app, old, report) =
        killed_at("after:create_key", "STARTED", pb::OldKeyAction::KeepEnabled, Kind::LinkedCopy).await;
    assert_eq!((report.resumed.len(), report.synced.len()), (1, 1), "{report:?}");
    let keys = records_equal_aws(&mut app, &old.group).await;
    rotated(&keys, &old);
}

#[tokio::test]
async fn killed_after_a_copy_s_aliases_moved_a_keyward_key_s_rotation_is_finished() {
    let (mut app, old, report) =
        killed_at("disable_key", "ALIASES_MOVED", pb::OldKeyAction::Disable, Kind::LinkedCopy).await;
    assert_eq!(report.resumed.len(), 1, "{report:?}");
    onto_the_source(&mut app, &old).await;
    assert_eq!(app.aws_state(&aws_id(&old)).await, "Disabled");
}

#[tokio::test]
async fn killed_during_an_in_place_rotation_the_key_is_as_aws_shows_it_and_rotates_again() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("crash-in-place").await;
    let k = key("payments", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], &ALIASES, &[]);
    let old = app.try_create_key(&g.name, k).await.expect("create");
    let server = ServerProcess::start(SERVER, &app, Some("rotate_key_on_demand")).await;
    let mut keys = server.keys(&app);
    let req = pb::RotateKeyRequest { name: old.name.clone(), in_place: true, ..Default::default() };
    let call = tokio::spawn(async move { keys.rotate_key(req).await });
    // Until the call holds the key's lock (a lease row), then kill.
    let db = app.keyward.store().connection().clone();
    let held = format!("SELECT COUNT(*) AS n FROM leases WHERE name = 'key/{}'", old.key_id);
    let mut locked = false;
    for _ in 0..400 {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), held.clone()))
            .await
            .expect("query")
            .expect("row");
        if row.try_get::<i64>("", "n").expect("n") > 0 {
            locked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(locked, "the rotation never took the key's lock");
    server.kill().await;
    assert!(call.await.expect("join").is_err(), "the killed server answered");

    // Nothing was journaled (one AWS call): the records equal AWS's, and once the dead
    // process's lock has expired the key rotates again.
    app.clock.advance(Duration::from_secs(11 * 60));
    records_equal_aws(&mut app, &g.name).await;
    let again = app
        .keys
        .rotate_key(pb::RotateKeyRequest { name: old.name.clone(), in_place: true, ..Default::default() })
        .await
        .expect("rotates again")
        .into_inner();
    assert!(again.executed);
    records_equal_aws(&mut app, &g.name).await;
}

//! Sync: every key, alias and tag arrives across small pages; re-syncs add nothing; keys
//! created or removed in AWS between syncs are noticed; one unreadable key is a warning;
//! list failures change nothing; one sync per group at a time; keys created or updated while a
//! sync runs, a group deleted while one holds the lease, and settings reaching another account
//! never lose a change nor mark keys DELETED.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::fixtures::{aws_id, mask, ops};
use keyward_tests::status::precondition;
use keyward_tests::{Options, TestApp};
use pb::KeyOperation as Op;
use tonic::Code;

/// Seeds `n` keys: every third with an alias, every second with two tags, a mix of specs.
async fn seed(app: &TestApp, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| {
            let aws = app.aws.clone();
            async move {
                let spec = match i % 5 {
                    0..=2 => aws_sdk_kms::types::KeySpec::SymmetricDefault,
                    3 => aws_sdk_kms::types::KeySpec::EccNistP256,
                    _ => aws_sdk_kms::types::KeySpec::Rsa2048,
                };
                let usage = if i % 5 >= 3 {
                    aws_sdk_kms::types::KeyUsageType::SignVerify
                } else {
                    aws_sdk_kms::types::KeyUsageType::EncryptDecrypt
                };
                let mut req = aws.create_key().key_spec(spec).key_usage(usage).description(format!("seed {i}"));
                if i % 2 == 0 {
                    for (k, v) in [("team", format!("t{}", i % 7)), ("n", i.to_string())] {
                        req =
                            req.tags(aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().expect("tag"));
                    }
                }
                let id = req.send().await.expect("seed key").key_metadata().expect("metadata").key_id().to_owned();
                if i % 3 == 0 {
                    aws.create_alias()
                        .alias_name(format!("alias/seed/{i}"))
                        .target_key_id(&id)
                        .send()
                        .await
                        .expect("alias");
                }
                id
            }
        })
        .buffered(8)
        .collect()
        .await
}

/// Seeds `n` plain keys, so a sync has work to do.
fn small_pages() -> Options {
    let mut o = Options::default();
    o.settings.aws_page_size = 7;
    o
}

#[tokio::test]
async fn sync_250_keys_across_small_pages_then_resync_add_and_remove() {
    let mut app = TestApp::spawn_with(small_pages()).await;
    let ids = seed(&app, 250).await;
    let g = app.create_aws_group("estate").await;

    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.updated, run.unchanged, run.failed), (250, 250, 0, 0, 0), "{run:?}");
    assert_eq!(run.state, pb::SyncRunState::Succeeded as i32);

    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 250);
    let by_aws: BTreeMap<String, pb::Key> =
        keys.into_iter().map(|k| (k.aws.clone().expect("virtual").aws_key_id, k)).collect();
    assert_eq!(by_aws.keys().cloned().collect::<std::collections::BTreeSet<_>>(), ids.iter().cloned().collect());
    for (id, key) in &by_aws {
        let aws = key.aws.as_ref().expect("aws");
        let i: usize = key.description.trim_start_matches("seed ").parse().expect("seed index");
        assert_eq!(id, &ids[i]);
        assert!(key.r#virtual);
        assert_eq!(key.created_by, "sync");
        assert_eq!(key.state, pb::KeyState::Enabled as i32);
        let want_aliases = if i.is_multiple_of(3) { vec![format!("alias/seed/{i}")] } else { vec![] };
        assert_eq!(aws.aliases, want_aliases, "aliases of seed {i}");
        let want_name = if i.is_multiple_of(3) { format!("seed/{i}") } else { id.clone() };
        assert_eq!(key.display_name, want_name, "a synced key is named after its first alias, else its AWS id");
        if i.is_multiple_of(2) {
            assert_eq!(key.tags.get("team"), Some(&format!("t{}", i % 7)));
            assert_eq!(key.tags.get("n"), Some(&i.to_string()));
        } else {
            assert!(key.tags.is_empty(), "seed {i} has no tags");
        }
        assert!(!aws.key_policy.is_empty(), "policy read for seed {i}");
        let want_spec = match i % 5 {
            0..=2 => pb::KeySpec::SymmetricDefault,
            3 => pb::KeySpec::EccNistP256,
            _ => pb::KeySpec::Rsa2048,
        };
        assert_eq!(key.key_spec, want_spec as i32, "spec of seed {i}");
    }

    // Nothing new: nothing added or duplicated.
    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.updated, run.unchanged), (250, 0, 0, 250), "{run:?}");
    assert_eq!(app.all_keys(&g.name, "").await.len(), 250);

    // Created outside Keyward, and changed outside Keyward, between syncs.
    let extra = app.aws.create_key().description("outside").send().await.expect("create");
    let extra_id = extra.key_metadata().expect("meta").key_id().to_owned();
    app.aws.disable_key().key_id(&ids[1]).send().await.expect("disable");
    app.aws.schedule_key_deletion().key_id(&ids[2]).pending_window_in_days(7).send().await.expect("schedule");
    // Removed from AWS (deletion itself takes ≥ 7 days, so the listing hides it).
    app.faults.inject(Fault::HideKey(ids[4].clone()));

    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.updated, run.unchanged), (250, 1, 3, 247), "{run:?}");
    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 251);
    let state_of = |id: &str| {
        keys.iter().find(|k| k.aws.as_ref().is_some_and(|a| a.aws_key_id == id)).map(|k| k.state).expect("key")
    };
    assert_eq!(state_of(&extra_id), pb::KeyState::Enabled as i32);
    assert_eq!(state_of(&ids[1]), pb::KeyState::Disabled as i32);
    assert_eq!(state_of(&ids[2]), pb::KeyState::PendingDeletion as i32);
    assert_eq!(state_of(&ids[4]), pb::KeyState::Deleted as i32);
    let pending = keys.iter().find(|k| k.aws.as_ref().is_some_and(|a| a.aws_key_id == ids[2])).expect("pending");
    assert!(pending.aws.as_ref().and_then(|a| a.deletion_time).is_some(), "deletion time recorded");

    // Filters see the new states.
    assert_eq!(app.all_keys(&g.name, "state = DELETED").await.len(), 1);
    assert_eq!(app.all_keys("groups/-", "state = DISABLED AND virtual = true").await.len(), 1);

    // Runs are stored and listed newest first.
    let runs = app
        .groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("list runs")
        .into_inner()
        .sync_runs;
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].name, run.name);
    assert_eq!(runs[0].trigger, pb::SyncTrigger::Manual as i32);
    let got =
        app.groups.get_sync_run(pb::GetSyncRunRequest { name: run.name.clone() }).await.expect("get").into_inner();
    assert_eq!((got.name, got.listed, got.added, got.updated, got.unchanged), (run.name, 250, 1, 3, 247));
    assert_eq!(got.start_time.map(|t| t.seconds), run.start_time.map(|t| t.seconds));
}

#[tokio::test]
async fn one_unreadable_key_is_a_warning_and_the_rest_sync() {
    let mut app = TestApp::spawn().await;
    let ids = seed(&app, 6).await;
    let g = app.create_aws_group("denied-one").await;
    // An alias with no target key (AWS lists those for AWS-managed aliases) is skipped quietly.
    app.faults.inject(Fault::AliasWithoutTarget("alias/aws/not-yet-used".into()));
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: Some(ids[3].clone()),
        error: KmsError::AccessDenied("not authorized to perform kms:DescribeKey".into()),
        times: None,
    });
    let run = app.sync(&g.name).await;
    assert_eq!((run.listed, run.added, run.failed), (6, 5, 1), "{run:?}");
    assert_eq!(run.warnings.len(), 1, "only the unreadable key warns: {:?}", run.warnings);
    assert!(run.warnings[0].aws_key.contains(&ids[3]), "{:?}", run.warnings);
    let keys = app.all_keys(&g.name, "").await;
    assert!(keys.iter().all(|k| k.aws.as_ref().is_some_and(|a| !a.aliases.iter().any(|x| x.contains("not-yet-used")))));
    assert!(run.warnings[0].message.contains("access denied"), "{:?}", run.warnings);
    assert_eq!(run.state, pb::SyncRunState::Succeeded as i32);
}

#[tokio::test]
async fn list_keys_denied_is_permission_denied_and_changes_nothing() {
    let mut app = TestApp::spawn().await;
    seed(&app, 3).await;
    let g = app.create_aws_group("denied-all").await;
    app.faults.inject(Fault::Fail {
        op: "list_keys",
        key: None,
        error: KmsError::AccessDenied("not authorized to perform kms:ListKeys".into()),
        times: None,
    });
    let err = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(app.all_keys(&g.name, "").await.is_empty());
    let runs = app
        .groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .sync_runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, pb::SyncRunState::Failed as i32);
    assert!(runs[0].error.contains("ListKeys") || runs[0].error.contains("access denied"), "{}", runs[0].error);

    // Started with return_immediately, the failure lands on the run and in the audit log.
    let started = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), return_immediately: true })
        .await
        .expect("started")
        .into_inner();
    assert_eq!(started.state, pb::SyncRunState::Running as i32);
    let last = watch(&mut app, &started.name).await.pop().expect("the end");
    assert_eq!(last.state, pb::SyncRunState::Failed as i32, "{last:?}");
    assert!(app.all_keys(&g.name, "").await.is_empty());
    let events = app
        .audit_client()
        .list_audit_events(pb::ListAuditEventsRequest {
            filter: format!("resource = \"{}\"", g.name),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    let refused: Vec<_> = events.iter().filter(|e| e.action == "keyward.v1.GroupService/SyncKeys").collect();
    assert_eq!(refused.len(), 2, "one refusal per failed run: {events:#?}");
    assert!(refused.iter().all(|e| e.outcome == "PERMISSION_DENIED"), "{refused:#?}");
}

#[tokio::test]
async fn a_marker_that_does_not_advance_stops_the_sync() {
    let mut app = TestApp::spawn_with(small_pages()).await;
    seed(&app, 10).await;
    let g = app.create_aws_group("stuck").await;
    app.faults.inject(Fault::StuckListKeysMarker);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }),
    )
    .await
    .expect("does not loop forever")
    .expect_err("stuck marker is an error");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("marker"), "{}", err.message());
    assert!(app.all_keys(&g.name, "").await.is_empty(), "nothing changed");
}

#[tokio::test]
async fn a_second_sync_while_one_runs_is_aborted() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("busy").await;
    let id = g.name.trim_start_matches("groups/");
    // Another process holds the group's sync lease.
    let taken = app
        .keyward
        .store()
        .try_lease(&format!("sync/{id}"), "another-worker", Duration::from_secs(60), time::OffsetDateTime::now_utc())
        .await
        .expect("lease");
    assert!(taken);
    let err = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("busy");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    // Once it is released (or expires), syncing works again.
    app.keyward.store().release_lease(&format!("sync/{id}"), "another-worker").await.expect("release");
    let run = app.sync(&g.name).await;
    assert_eq!(run.state, pb::SyncRunState::Succeeded as i32);
}

#[tokio::test]
async fn concurrent_syncs_never_duplicate_a_key() {
    let mut app = TestApp::spawn().await;
    seed(&app, 30).await;
    let g = app.create_aws_group("race").await;
    let runs = futures::future::join_all((0..4).map(|_| {
        let mut c = app.groups.clone();
        let name = g.name.clone();
        async move { c.sync_keys(pb::SyncKeysRequest { name, ..Default::default() }).await }
    }))
    .await;
    assert!(runs.iter().any(|r| r.is_ok()), "{runs:?}");
    for r in &runs {
        if let Err(e) = r {
            assert_eq!(e.code(), Code::Aborted, "{e:?}");
        }
    }
    assert_eq!(app.all_keys(&g.name, "").await.len(), 30);
    let run = app.sync(&g.name).await;
    assert_eq!((run.added, run.unchanged), (0, 30));
}

/// CreateKey during a sync: the new key is never marked DELETED nor held twice.
#[tokio::test]
async fn a_key_created_while_its_group_syncs_is_not_marked_deleted() {
    let mut app = TestApp::spawn().await;
    app.seed_aws_keys(40).await;
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
            groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }),
            keys.create_key(pb::CreateKeyRequest { parent: g.name.clone(), key: Some(key) })
        );
        let run = run.unwrap_or_else(|e| panic!("round {round}: sync: {e:?}")).into_inner();
        assert_eq!(run.state, pb::SyncRunState::Succeeded as i32, "round {round}: {run:?}");
        created.push(k.unwrap_or_else(|e| panic!("round {round}: create: {e:?}")).into_inner());
        for c in &created {
            let got = app.get_key(&c.name).await;
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
        assert_eq!(app.aws_meta(&id).await.key_state().map(|s| s.as_str().to_owned()).as_deref(), Some("Enabled"));
    }
    assert!(app.all_keys(&g.name, "state = DELETED").await.is_empty());
}

/// UpdateKey during a sync: the update is never overwritten with stale AWS state.
#[tokio::test]
async fn an_update_racing_a_sync_is_never_overwritten_with_stale_aws_state() {
    let mut app = TestApp::spawn().await;
    app.seed_aws_keys(30).await;
    let g = app.create_aws_group("update-race").await;
    let k = app.create_key(&g.name, "raced", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    let id = aws_id(&k);
    app.sync(&g.name).await;
    for round in 0..6 {
        let enabled = round % 2 == 1;
        let description = format!("round {round}");
        let mut groups = app.groups.clone();
        let mut keys = app.keys.clone();
        let patch = pb::Key { name: k.name.clone(), enabled, description: description.clone(), ..Default::default() };
        let (run, updated) = tokio::join!(
            groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }),
            keys.update_key(pb::UpdateKeyRequest {
                key: Some(patch),
                update_mask: mask(&["enabled", "description"]),
                ..Default::default()
            })
        );
        run.unwrap_or_else(|e| panic!("round {round}: sync: {e:?}"));
        updated.unwrap_or_else(|e| panic!("round {round}: update: {e:?}"));
        let meta = app.aws_meta(&id).await;
        assert_eq!(meta.enabled(), enabled, "round {round}: AWS took the update");
        assert_eq!(meta.description(), Some(description.as_str()), "round {round}");
        let got = app.get_key(&k.name).await;
        let want = if enabled { pb::KeyState::Enabled } else { pb::KeyState::Disabled };
        assert_eq!(got.state, want as i32, "round {round}: Keyward agrees with AWS: {got:?}");
        assert_eq!(got.enabled, enabled, "round {round}");
        assert_eq!(got.description, description, "round {round}: {got:?}");
    }
}

/// DeleteGroup while a sync holds the group's lease is ABORTED; after the release it works.
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
    let err = app
        .groups
        .delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false })
        .await
        .expect_err("syncing");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(app.list_groups().await.expect("list").len(), 1, "the group stays");

    store.release_lease(&lease, "other").await.expect("release");
    app.groups
        .delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false })
        .await
        .expect("delete after release");
    assert!(app.list_groups().await.expect("list").is_empty());
}

/// Settings that reach another, empty account: the sync is refused and the keys are not marked
/// DELETED.
#[tokio::test]
async fn settings_that_reach_an_empty_account_do_not_mark_the_keys_deleted() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("moved-to-empty").await;
    let k = app.create_key(&g.name, "kept", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    // Another (empty) account: LocalStack takes the access key id as the account.
    let mut patch = g.clone();
    patch.aws_kms.as_mut().expect("aws").access_key_id = keyward_tests::new_account_id();
    app.groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["aws_kms.access_key_id"]) })
        .await
        .expect("update");
    let err = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("empty account");
    let _ = precondition(&err, "AWS_ACCOUNT_CHANGED", "empty listing");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::Enabled as i32, "not marked DELETED");
}

async fn runs(app: &mut TestApp, group: &str) -> Vec<pb::SyncRun> {
    app.groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: group.into(), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .sync_runs
}

#[tokio::test]
async fn a_run_belongs_to_its_group_one_at_a_time_to_its_end() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("owned-runs").await;
    app.seed_aws_keys(3).await;
    app.faults.inject(Fault::Delay { op: "list_keys", millis: 1500 });

    // Two SyncKeys on one server: the second is ABORTED while the first runs.
    let mut first = app.groups.clone();
    let name = g.name.clone();
    let running =
        tokio::spawn(async move { first.sync_keys(pb::SyncKeysRequest { name, ..Default::default() }).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("second sync");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    running.await.expect("join").expect("the first sync");

    // A caller that gives up does not stop the run: it ends SUCCEEDED with its counts.
    let mut req = tonic::Request::new(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() });
    req.set_timeout(Duration::from_millis(300));
    let e = app.groups.sync_keys(req).await.expect_err("the caller's deadline");
    assert!(matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled), "{e:?}");
    let mut last = None;
    for _ in 0..100 {
        last = runs(&mut app, &g.name).await.into_iter().next();
        if last.as_ref().is_some_and(|r| r.state != pb::SyncRunState::Running as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = last.expect("a run");
    assert_eq!(last.state, pb::SyncRunState::Succeeded as i32, "{last:?}");
    assert_eq!(last.listed, 3);
    app.faults.clear();

    // A run left RUNNING by a process that died is closed by the next sync of the group.
    let group_id = keyward_shared::domain::GroupId::parse(g.name.trim_start_matches("groups/")).expect("id");
    let dead = keyward_shared::domain::SyncRun::started(
        group_id,
        keyward_shared::domain::SyncTrigger::Manual,
        "gone",
        app.keyward.now(),
    );
    app.keyward.store().insert_sync_run(&dead).await.expect("a run of a dead process");
    app.sync(&g.name).await;
    let closed =
        runs(&mut app, &g.name).await.into_iter().find(|r| r.name.ends_with(&dead.id.to_string())).expect("it");
    assert_eq!(closed.state, pb::SyncRunState::Failed as i32);
    assert!(closed.error.contains("stopped"), "{}", closed.error);
}

/// Every message of a WatchSyncRun until the stream ends.
async fn watch(app: &mut TestApp, run: &str) -> Vec<pb::SyncRun> {
    let mut stream =
        app.groups.watch_sync_run(pb::WatchSyncRunRequest { name: run.into() }).await.expect("watch").into_inner();
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.expect("a message in time");
        match m.expect("a run") {
            Some(run) => seen.push(run),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn return_immediately_then_watch_shows_monotone_live_counts_to_the_end() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("watched").await;
    app.seed_aws_keys(40).await;
    // 40 keys, 8 at a time, 150 ms each: over half a second of progress to watch.
    app.faults.inject(Fault::Delay { op: "describe_key", millis: 150 });
    let started = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), return_immediately: true })
        .await
        .expect("started")
        .into_inner();
    assert_eq!(started.state, pb::SyncRunState::Running as i32, "{started:?}");
    assert_eq!((started.done, started.added), (0, 0));
    assert!(started.end_time.is_none());

    // Meanwhile a second request is ABORTED and names the running run.
    let e = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }).await;
    let e = e.expect_err("one run per group");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(e.message().contains(&started.name), "{}", e.message());

    let seen = watch(&mut app, &started.name).await;
    let running: Vec<_> = seen.iter().filter(|r| r.state == pb::SyncRunState::Running as i32).collect();
    assert!(running.len() >= 2, "live progress, not just the end: {seen:?}");
    assert!(running.iter().any(|r| r.done > 0 && r.done < 40), "counts between start and end: {seen:?}");
    assert!(
        running.iter().any(|r| r.listed == 40 && r.done > 0 && r.estimated_time_remaining.is_some()),
        "an estimate of the time left once keys are done: {seen:?}"
    );
    for pair in seen.windows(2) {
        assert!(pair[1].done >= pair[0].done && pair[1].added >= pair[0].added, "monotone: {pair:?}");
        assert!(pair[1].listed >= pair[0].listed, "monotone: {pair:?}");
    }
    let last = seen.last().expect("the end");
    assert_eq!(last.state, pb::SyncRunState::Succeeded as i32, "{last:?}");
    assert_eq!((last.listed, last.done, last.added), (40, 40, 40));
    assert!(last.estimated_time_remaining.is_none());
    let got =
        app.groups.get_sync_run(pb::GetSyncRunRequest { name: started.name.clone() }).await.expect("get").into_inner();
    assert_eq!(&got, last, "the stream's last message is the stored run");
    // An ended run is streamed once and the stream ends.
    assert_eq!(watch(&mut app, &started.name).await, vec![got]);
    app.faults.clear();

    let e = app
        .groups
        .watch_sync_run(pb::WatchSyncRunRequest { name: format!("{}/syncRuns/{}", g.name, uuid::Uuid::now_v7()) })
        .await
        .expect_err("unknown run");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// Two servers over one database: one run per group across them, and a run of a server killed
/// mid-sync is closed FAILED by whoever takes the group's lease next (here a watcher).
#[tokio::test]
async fn one_run_across_two_servers_and_a_killed_servers_run_is_closed() {
    const SERVER: &str = env!("CARGO_BIN_EXE_keyward-test-server");
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("two-servers").await;
    app.seed_aws_keys(2).await;
    let other = keyward_tests::process::ServerProcess::start(SERVER, &app, Some("list_keys")).await;
    let stuck = other
        .groups(&app)
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), return_immediately: true })
        .await
        .expect("started on the other server")
        .into_inner();
    assert_eq!(stuck.state, pb::SyncRunState::Running as i32);
    let e = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() }).await;
    let e = e.expect_err("the other server's run holds the group");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(e.message().contains(&stuck.name), "{}", e.message());

    other.kill().await;
    // Its lease outlives it until it expires (Settings::standard: 600 s).
    app.clock.advance(Duration::from_secs(601));
    let seen = watch(&mut app, &stuck.name).await;
    let last = seen.last().expect("the run");
    assert_eq!(last.state, pb::SyncRunState::Failed as i32, "{seen:?}");
    assert!(last.error.contains("stopped"), "{}", last.error);
    let run = app.sync(&g.name).await;
    assert_eq!((run.state, run.added), (pb::SyncRunState::Succeeded as i32, 2));
}

//! Sync: every key, alias and tag arrives across small pages; re-syncs add nothing; keys
//! created or removed in AWS between syncs are noticed; one unreadable key is a warning;
//! list failures change nothing; one sync per group at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::{Options, TestApp};
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
    let err = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }).await.expect_err("denied");
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
}

#[tokio::test]
async fn a_marker_that_does_not_advance_stops_the_sync() {
    let mut app = TestApp::spawn_with(small_pages()).await;
    seed(&app, 10).await;
    let g = app.create_aws_group("stuck").await;
    app.faults.inject(Fault::StuckListKeysMarker);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }),
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
    let err = app.groups.sync_keys(pb::SyncKeysRequest { name: g.name.clone() }).await.expect_err("busy");
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
        async move { c.sync_keys(pb::SyncKeysRequest { name }).await }
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

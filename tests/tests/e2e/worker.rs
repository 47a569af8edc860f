//! The worker's scheduled sync: driven by `run_once` with a chosen `now`; due groups only; one
//! worker per due sync when several run on one database; one failing group never stops the rest.

use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_group, interval};
use keyward_worker::scheduled_sync;
use time::OffsetDateTime;

async fn scheduled_group(app: &mut TestApp, name: &str, cfg: pb::AwsKmsConfig, minutes: i64) -> pb::Group {
    app.create_group(pb::Group { sync_schedule: interval(minutes * 60), ..aws_group(name, cfg) }).await.expect("create")
}

fn id_of(g: &pb::Group) -> String {
    g.name.trim_start_matches("groups/").to_owned()
}

#[tokio::test]
async fn scheduled_sync_runs_when_due_once_per_interval() {
    let mut app = TestApp::spawn().await;
    for _ in 0..3 {
        app.aws.create_key().send().await.expect("seed");
    }
    let cfg = app.aws_kms_config();
    let g = scheduled_group(&mut app, "every-5m", cfg, 5).await;
    let unscheduled = app.create_aws_group("manual-only").await;
    let t0 = OffsetDateTime::now_utc();

    let r = scheduled_sync::run_once(&app.keyward, t0).await.expect("pass");
    assert!(r.synced.is_empty() && r.failed.is_empty(), "not due yet: {r:?}");

    let due = t0 + Duration::from_secs(6 * 60);
    let r = scheduled_sync::run_once(&app.keyward, due).await.expect("pass");
    assert_eq!(r.synced.iter().map(|g| g.to_string()).collect::<Vec<_>>(), vec![id_of(&g)]);
    assert_eq!(app.all_keys(&g.name, "").await.len(), 3);
    assert!(app.all_keys(&unscheduled.name, "").await.is_empty(), "groups without a schedule are left alone");

    let r = scheduled_sync::run_once(&app.keyward, due).await.expect("pass");
    assert!(r.synced.is_empty(), "the next one is an interval later: {r:?}");
    let r = scheduled_sync::run_once(&app.keyward, due + Duration::from_secs(5 * 60 + 1)).await.expect("pass");
    assert_eq!(r.synced.len(), 1);

    let runs = app
        .groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .sync_runs;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.trigger == pb::SyncTrigger::Scheduled as i32 && r.actor == "worker"));
    assert_eq!((runs[1].added, runs[0].added, runs[0].unchanged), (3, 0, 3));
}

#[tokio::test]
async fn two_workers_never_run_the_same_scheduled_sync() {
    let mut app = TestApp::spawn().await;
    for _ in 0..20 {
        app.aws.create_key().send().await.expect("seed");
    }
    let cfg = app.aws_kms_config();
    let g = scheduled_group(&mut app, "contended", cfg, 5).await;
    let other = app.second_keyward().await;
    let due = OffsetDateTime::now_utc() + Duration::from_secs(6 * 60);
    let (a, b) = tokio::join!(scheduled_sync::run_once(&app.keyward, due), scheduled_sync::run_once(&other, due));
    let (a, b) = (a.expect("worker a"), b.expect("worker b"));
    assert_eq!(a.synced.len() + b.synced.len(), 1, "exactly one worker synced: {a:?} {b:?}");
    // The other one either lost the claim (skipped) or already saw the group as not due.
    assert!(a.skipped.len() + b.skipped.len() <= 1, "{a:?} {b:?}");
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    let runs = app
        .groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .sync_runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(app.all_keys(&g.name, "").await.len(), 20);
}

#[tokio::test]
async fn one_failing_group_does_not_stop_the_others() {
    let mut app = TestApp::spawn().await;
    app.aws.create_key().send().await.expect("seed");
    let mut broken = app.aws_kms_config();
    broken.endpoint_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let bad = scheduled_group(&mut app, "broken", broken, 5).await;
    let cfg = app.aws_kms_config();
    let good = scheduled_group(&mut app, "fine", cfg, 5).await;
    let due = OffsetDateTime::now_utc() + Duration::from_secs(6 * 60);
    let r = scheduled_sync::run_once(&app.keyward, due).await.expect("pass");
    assert_eq!(r.failed.iter().map(|g| g.to_string()).collect::<Vec<_>>(), vec![id_of(&bad)]);
    assert_eq!(r.synced.iter().map(|g| g.to_string()).collect::<Vec<_>>(), vec![id_of(&good)]);
    assert_eq!(app.all_keys(&good.name, "").await.len(), 1);
}

#[tokio::test]
async fn a_due_sync_is_claimed_once_whoever_asks() {
    let mut app = TestApp::spawn().await;
    let cfg = app.aws_kms_config();
    let g = scheduled_group(&mut app, "claimed", cfg, 5).await;
    let other = app.second_keyward().await;
    let due = OffsetDateTime::now_utc() + Duration::from_secs(6 * 60);
    let seen = app.keyward.store().groups_due_for_sync(due).await.expect("due");
    assert_eq!(seen.iter().map(|(g, _)| g.to_string()).collect::<Vec<_>>(), vec![id_of(&g)]);
    let (group, at) = seen[0];
    // Both workers saw the same due time; only the first conditional UPDATE wins.
    assert!(app.keyward.store().claim_scheduled_sync(group, at, due).await.expect("claim"));
    assert!(!other.store().claim_scheduled_sync(group, at, due).await.expect("claim"));
    assert!(other.store().groups_due_for_sync(due).await.expect("due").is_empty(), "next run an interval later");
}

//! AWS's request quotas, through an HTTP front before the emulator that throttles as AWS does
//! (so the real SDK's retries run): under a configured quota a sync uses at least 90 % of it
//! and is never throttled; with 30 % of AWS's answers throttled a sync completes with every key
//! once and nothing duplicated; against an account that takes fewer requests in flight than
//! Keyward sends, the adaptive limit brings throttling down to a few answers.

use std::collections::{BTreeSet, HashMap};

use keyward_proto::v1 as pb;
use keyward_shared::kms::quota::QuotaOverrides;
use keyward_tests::fixtures::aws_group;
use keyward_tests::front::KmsFront;
use keyward_tests::{Options, TestApp};

async fn group_before(app: &mut TestApp, front: &KmsFront) -> pb::Group {
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    app.create_group(aws_group("behind-a-front", cfg)).await.expect("group")
}

#[tokio::test]
async fn a_sync_uses_at_least_90_percent_of_a_configured_quota_and_is_never_throttled() {
    // Low enough that the sync itself, on a loaded machine, could go faster: the quota decides.
    const RPS: u32 = 5;
    let opts =
        Options { quotas: QuotaOverrides::parse(&format!("DescribeKey={RPS}")).expect("quota"), ..Default::default() };
    let mut app = TestApp::spawn_with(opts).await;
    app.seed_aws_keys(30).await;
    let front = KmsFront::start(&app.emulator_url, HashMap::new()).await;
    front.enforce_quota("DescribeKey", RPS);
    let g = group_before(&mut app, &front).await;

    let run = app.sync(&g.name).await;
    assert_eq!((run.state, run.added, run.failed), (pb::SyncRunState::Succeeded as i32, 30, 0), "{run:?}");
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let seen = front.seen(Some("DescribeKey"));
    assert!(seen.len() >= 30, "{} DescribeKey requests", seen.len());
    assert!(seen.iter().all(|(_, throttled)| !throttled), "Keyward went over the quota");
    let (first, last) = (seen.first().expect("first").0, seen.last().expect("last").0);
    let rate = (seen.len() - 1) as f64 / (last - first).as_secs_f64();
    assert!(rate >= 0.9 * f64::from(RPS), "DescribeKey at {rate:.1}/s, under 90 % of {RPS}/s");
    assert!(rate <= 1.1 * f64::from(RPS), "DescribeKey at {rate:.1}/s, over {RPS}/s");
}

#[tokio::test]
async fn with_30_percent_of_answers_throttled_a_sync_completes_and_duplicates_nothing() {
    let mut app = TestApp::spawn().await;
    app.seed_aws_keys(40).await;
    let front = KmsFront::start(&app.emulator_url, HashMap::new()).await;
    // The first attempt of 43 % of requests: 0.43 / 1.43 = 30 % of the answers.
    front.throttle_share(43);
    let g = group_before(&mut app, &front).await;

    let run = app.sync(&g.name).await;
    assert_eq!((run.state, run.added, run.failed), (pb::SyncRunState::Succeeded as i32, 40, 0), "{run:?}");
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let seen = front.seen(None);
    let share = seen.iter().filter(|(_, t)| *t).count() as f64 / seen.len() as f64;
    assert!((0.2..=0.4).contains(&share), "{:.0} % of {} answers throttled", share * 100.0, seen.len());

    let keys = app.all_keys(&g.name, "").await;
    let ids: BTreeSet<String> = keys.iter().map(keyward_tests::fixtures::aws_id).collect();
    assert_eq!((keys.len(), ids.len()), (40, 40), "every key once");
    let again = app.sync(&g.name).await;
    assert_eq!((again.added, again.unchanged, again.failed), (0, 40, 0), "{again:?}");
    assert_eq!(app.all_keys(&g.name, "").await.len(), 40);
}

#[tokio::test]
async fn an_account_that_takes_two_requests_at_a_time_is_throttled_briefly_not_all_along() {
    // Sixteen keys described at a time, against an account (the front) that throttles every
    // request arriving while two are in flight, each in flight 30 ms.
    let mut opts = Options::default();
    opts.settings.sync_concurrency = 16;
    let mut app = TestApp::spawn_with(opts).await;
    app.seed_aws_keys(60).await;
    let front = KmsFront::start(&app.emulator_url, HashMap::new()).await;
    front.enforce_concurrency(2, std::time::Duration::from_millis(30));
    let g = group_before(&mut app, &front).await;

    let run = app.sync(&g.name).await;
    assert_eq!((run.state, run.added, run.failed), (pb::SyncRunState::Succeeded as i32, 60, 0), "{run:?}");
    let seen = front.seen(None);
    let throttled = seen.iter().filter(|(_, t)| *t).count();
    // Without the limit, 14 of every 16 requests sent at once are throttled, retried and
    // throttled again (measured: 31-33 % of the answers, and keys fail); with it, only the first
    // waves and the limit's probes upwards are (14-16 %).
    let share = throttled as f64 / seen.len() as f64;
    assert!(share < 0.24, "{throttled} of {} answers throttled ({:.0} %)", seen.len(), share * 100.0);
}

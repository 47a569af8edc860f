//! keyward-bench: Keyward's speed and memory as ratios to what bounds them, measured side by
//! side in one run against the real emulator and a real database (`scripts/bench`). Figures,
//! not pass/fail: compare ratios, not absolute numbers, across runs.
//!
//! - Read path: server CPU per call (the server process's CPU time from /proc, all threads,
//!   over `--calls` calls from 4 concurrent clients) of GetKey, a ListKeys page of 100 (plain
//!   and filtered), Encrypt and Decrypt with a Keyward key, next to a bare tonic server's health
//!   check (the transport ceiling) and Keyward's own health check; over `--estate` keys.
//! - Sync: a first sync and a resync of `--keys` emulator keys, next to an ideal client making
//!   the same AWS calls with the same concurrency and nothing else (the floor).
//! - Worker: one pass of each job with nothing due, over the estate.
//! - Memory: the server's peak RSS after read load over the estate.
#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use keyward_proto::v1 as pb;
use keyward_shared::domain::{
    AwsKeyDetails, Caller, GroupId, GroupKind, Key, KeyId, KeyOp, KeySource, KeySpec, KeyState, SyncTrigger, Tags,
};
use keyward_shared::jobs::{deletion_check, estate, recovery, scheduled_rotation, scheduled_sync};
use keyward_shared::{NewGroup, NewKey};
use keyward_tests::process::ServerProcess;
use keyward_tests::{Emulator, TestApp};

/// Keyward benchmarks.
#[derive(Parser)]
struct Args {
    /// Keys to seed in the emulator and sync (the sync figures).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Virtual keys written straight into the database for the read path, the worker pass and
    /// the memory figure.
    #[arg(long, default_value_t = 10_000)]
    estate: usize,
    /// Calls per read-path figure.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Only the read path and memory (no worker pass, no sync).
    #[arg(long)]
    read_only: bool,
}

/// CPU time of every thread of process `pid` so far (schedstat: nanoseconds on a CPU).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// A process's peak resident set (VmHWM), MiB.
fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Server CPU per call (µs) of `calls` calls of `call`, 4 at a time, on the process `pid`.
async fn cpu_per_call<F, Fut>(pid: u32, calls: usize, call: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm up: connections, caches.
    futures::stream::iter(0..calls.min(50)).map(&call).buffer_unordered(4).collect::<Vec<_>>().await;
    let before = cpu_ns(pid);
    futures::stream::iter(0..calls).map(&call).buffer_unordered(4).collect::<Vec<_>>().await;
    (cpu_ns(pid) - before) as f64 / calls as f64 / 1000.0
}

/// A virtual key as a sync would record it, with an alias and a tag, in `group`.
fn virtual_key(group: GroupId, i: usize, now: time::OffsetDateTime) -> Key {
    let aws_key_id = uuid::Uuid::new_v4().to_string();
    Key {
        id: KeyId::new(),
        group_id: group,
        display_name: format!("estate-{i:06}"),
        description: String::new(),
        key_spec: KeySpec::SymmetricDefault,
        key_ops: vec![KeyOp::Encrypt, KeyOp::Decrypt],
        state: KeyState::Enabled,
        source: KeySource::AwsNative,
        tags: BTreeMap::from([("team".to_owned(), format!("t{}", i % 50))]),
        aws: Some(AwsKeyDetails {
            key_arn: format!("arn:aws:kms:eu-west-1:000000000000:key/{aws_key_id}"),
            aliases: vec![format!("alias/estate/{i}")],
            aws_key_id,
            aws_key_state: Some("Enabled".into()),
            key_spec: Some("SYMMETRIC_DEFAULT".into()),
            origin: Some("AWS_KMS".into()),
            key_usage: Some("ENCRYPT_DECRYPT".into()),
            key_manager: Some("CUSTOMER".into()),
            enabled: true,
            ..Default::default()
        }),
        links: Vec::new(),
        rotation_policy: None,
        created_by: "sync".into(),
        create_time: now,
        update_time: now,
        etag: uuid::Uuid::new_v4().to_string(),
    }
}

fn new_group(name: &str, kind: GroupKind, aws_kms: Option<keyward_shared::domain::AwsKmsConfig>) -> NewGroup {
    NewGroup {
        display_name: name.into(),
        description: String::new(),
        kind,
        aws_kms,
        crypto_policy: Default::default(),
        sync_interval: None,
        audit_key_use: false,
    }
}

fn aes_key(name: &str) -> NewKey {
    NewKey {
        display_name: name.into(),
        description: String::new(),
        key_spec: KeySpec::Aes256,
        key_ops: vec![KeyOp::Encrypt, KeyOp::Decrypt],
        tags: Tags::default(),
        aliases: Vec::new(),
        key_policy: None,
        rotation_schedule: None,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = Emulator::shared();
    let app = TestApp::spawn().await;
    let kw = app.keyward.clone();
    let ctx = || kw.ctx(Caller::system("bench", "bench"));
    let exe = std::env::current_exe().expect("exe").with_file_name("keyward-test-server");
    let exe = exe.to_str().expect("path");
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let db = if app.sqlite_path.is_some() { "SQLite" } else { "PostgreSQL" };
    println!(
        "keyward-bench ({profile} build, {db}, LocalStack; {} cores): {} synced keys, an estate of {} keys, {} calls per figure",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.keys,
        args.estate,
        args.calls
    );

    // ----- the estate: virtual keys written straight into the database -----
    let estate_group =
        kw.create_group(&ctx(), new_group("estate", GroupKind::AwsKms, Some(aws_config(&app)))).await.unwrap();
    let t = Instant::now();
    let store = kw.store().clone();
    let now = kw.now();
    futures::stream::iter(0..args.estate)
        .map(|i| {
            let (store, k) = (store.clone(), virtual_key(estate_group.id, i, now));
            async move { store.insert_synced_key(&k).await.expect("insert") }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    println!(
        "  estate written            {:>8.1} s ({:.0} keys/s)",
        t.elapsed().as_secs_f64(),
        args.estate as f64 / t.elapsed().as_secs_f64()
    );
    let vault = kw.create_group(&ctx(), new_group("vault", GroupKind::Regular, None)).await.unwrap();
    let aes = kw.create_key(&ctx(), vault.id, aes_key("k")).await.unwrap();

    // ----- read path: server CPU per call -----
    let echo = ServerProcess::start_echo(exe).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", echo.addr)).unwrap().connect_lazy();
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = |health: &tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>| {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("health");
        }
    };
    let echo_us = cpu_per_call(echo.pid(), args.calls, |_| check(&health)).await;

    let server = ServerProcess::start(exe, &app, None).await;
    let pid = server.pid();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect_lazy();
    let own_health = tonic_health::pb::health_client::HealthClient::new(channel);
    let health_us = cpu_per_call(pid, args.calls, |_| check(&own_health)).await;
    let keys = server.keys(&app);
    let sample: Vec<String> = kw
        .list_keys(&ctx(), Some(estate_group.id), &Default::default(), Default::default(), None, 1000)
        .await
        .unwrap()
        .iter()
        .map(Key::name)
        .collect();
    let get_us = cpu_per_call(pid, args.calls, |i| {
        let (mut keys, name) = (keys.clone(), sample[i % sample.len()].clone());
        async move {
            keys.get_key(pb::GetKeyRequest { name }).await.expect("get");
        }
    })
    .await;
    let list = |filter: &'static str| {
        let (keys, parent) = (keys.clone(), format!("groups/{}", estate_group.id));
        move |_| {
            let (mut keys, parent) = (keys.clone(), parent.clone());
            async move {
                keys.list_keys(pb::ListKeysRequest {
                    parent,
                    page_size: 100,
                    filter: filter.into(),
                    ..Default::default()
                })
                .await
                .expect("list");
            }
        }
    };
    let page_calls = (args.calls / 10).max(20);
    let list_us = cpu_per_call(pid, page_calls, list("")).await;
    let tag_us = cpu_per_call(pid, page_calls, list("tags.team = \"t7\" AND state = ENABLED")).await;
    let prefix_us = cpu_per_call(pid, page_calls, list("display_name = \"estate-00*\"")).await;
    let crypto =
        pb::crypto_service_client::CryptoServiceClient::new(keyward_tests::conn(server.addr, &app.admin_token));
    let aes_name = aes.name();
    let encrypt = |plaintext: Vec<u8>| {
        let (mut c, name) = (crypto.clone(), aes_name.clone());
        async move {
            c.encrypt(pb::EncryptRequest { name, plaintext, ..Default::default() }).await.expect("encrypt").into_inner()
        }
    };
    let sealed = encrypt(vec![7u8; 256]).await.ciphertext;
    let enc_us = cpu_per_call(pid, args.calls, |_| {
        let f = encrypt(vec![7u8; 256]);
        async move {
            f.await;
        }
    })
    .await;
    let dec_us = cpu_per_call(pid, args.calls, |_| {
        let (mut c, name, ciphertext) = (crypto.clone(), aes_name.clone(), sealed.clone());
        async move {
            c.decrypt(pb::DecryptRequest { name, ciphertext, ..Default::default() }).await.expect("decrypt");
        }
    })
    .await;
    println!("  read path, server CPU per call (µs, and × the bare tonic health check):");
    for (what, us) in [
        ("bare tonic health check", echo_us),
        ("Keyward health check", health_us),
        ("GetKey", get_us),
        ("ListKeys page of 100", list_us),
        ("  filter tags.team AND state", tag_us),
        ("  filter display_name prefix", prefix_us),
        ("Encrypt 256 B (Keyward key)", enc_us),
        ("Decrypt (Keyward key)", dec_us),
    ] {
        println!("    {what:<30} {us:>9.1} µs  {:>6.1}×", us / echo_us);
    }

    // ----- memory: the server after reading the whole estate -----
    let mut token = String::new();
    let mut keys_read = 0;
    let mut k = keys.clone();
    loop {
        let r = k
            .list_keys(pb::ListKeysRequest {
                parent: format!("groups/{}", estate_group.id),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        keys_read += r.keys.len();
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    println!(
        "  server peak RSS            {:>8.1} MiB (after reading all {keys_read} keys and the calls above)",
        peak_rss_mib(&pid.to_string())
    );
    drop(server);
    if args.read_only {
        return;
    }

    // ----- worker: one pass of each job with nothing due -----
    let mut passes = Vec::new();
    for _ in 0..3 {
        let now = kw.now();
        let t = Instant::now();
        scheduled_sync::run_once(&kw, now).await.unwrap();
        let a = t.elapsed();
        deletion_check::run_once(&kw, now).await.unwrap();
        let b = t.elapsed();
        recovery::run_once(&kw, now).await.unwrap();
        let c = t.elapsed();
        scheduled_rotation::run_once(&kw, now).await.unwrap();
        let d = t.elapsed();
        estate::run_once(&kw, now).await.unwrap();
        let e = t.elapsed();
        passes.push([a, b - a, c - b, d - c, e - d]);
    }
    let best = |i: usize| passes.iter().map(|p| p[i]).min().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  worker pass, nothing due  {:>8.1} ms: scheduled sync {:.1}, deletion check {:.1}, recovery {:.1}, rotation {:.1} (+ estate metrics {:.1} ms)",
        ms(best(0) + best(1) + best(2) + best(3)),
        ms(best(0)),
        ms(best(1)),
        ms(best(2)),
        ms(best(3)),
        ms(best(4))
    );

    // ----- sync against its floor -----
    let t = Instant::now();
    app.seed_aws_keys(args.keys).await;
    let seed = t.elapsed();
    let group = kw.create_group(&ctx(), new_group("bench", GroupKind::AwsKms, Some(aws_config(&app)))).await.unwrap();
    let t = Instant::now();
    let run = kw.sync_group(&ctx(), group.id, SyncTrigger::Manual).await.expect("sync");
    let first = t.elapsed();
    let t = Instant::now();
    let again = kw.sync_group(&ctx(), group.id, SyncTrigger::Manual).await.expect("resync");
    let second = t.elapsed();
    let settings = keyward_shared::Settings::standard();
    let concurrency = settings.sync_concurrency.max(1);
    let t = Instant::now();
    let calls = ideal_sync(&app.aws, concurrency, settings.aws_page_size).await;
    let floor = t.elapsed();
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "  sync of {} keys ({} AWS calls, {concurrency} at a time; seeding took {:.1} s):",
        args.keys,
        calls,
        s(seed)
    );
    println!("    ideal client (the floor)   {:>8.2} s", s(floor));
    println!(
        "    first sync                 {:>8.2} s  {:>5.2}× the floor (added {})",
        s(first),
        s(first) / s(floor),
        run.added
    );
    println!(
        "    resync, nothing changed    {:>8.2} s  {:>5.2}× the floor, {:.2}× the first sync (unchanged {})",
        s(second),
        s(second) / s(floor),
        s(second) / s(first),
        again.unchanged
    );
    println!("  bench process peak RSS     {:>8.1} MiB", peak_rss_mib("self"));
}

fn aws_config(app: &TestApp) -> keyward_shared::domain::AwsKmsConfig {
    keyward_shared::domain::AwsKmsConfig {
        region: keyward_shared::domain::Region::parse(keyward_tests::REGION).expect("region"),
        endpoint_url: Some(keyward_shared::domain::EndpointUrl::parse(&app.emulator_url).expect("emulator url")),
        access_key_id: app.access_key_id.clone(),
        secret_access_key: Some(app.secret_access_key.clone().into()),
        ca_certificate_pem: None,
        client_certificate_pem: None,
        client_private_key_pem: None,
        validate_host: true,
        unopened: Vec::new(),
    }
}

/// What a sync asks AWS, made by a client that does nothing else: every page of ListKeys and
/// ListAliases, then per key DescribeKey, ListResourceTags, GetKeyPolicy and (symmetric keys
/// with AWS's material) GetKeyRotationStatus, `concurrency` keys at a time. The calls made.
async fn ideal_sync(aws: &aws_sdk_kms::Client, concurrency: usize, page: i32) -> usize {
    let mut ids = Vec::new();
    let mut marker = None;
    let mut calls = 0;
    loop {
        let page = aws.list_keys().limit(page).set_marker(marker).send().await.expect("list keys");
        calls += 1;
        ids.extend(page.keys().iter().filter_map(|k| k.key_id().map(str::to_owned)));
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    let mut marker = None;
    loop {
        let page = aws.list_aliases().limit(page).set_marker(marker).send().await.expect("list aliases");
        calls += 1;
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    let per_key: Vec<usize> = futures::stream::iter(ids)
        .map(|id| {
            let aws = aws.clone();
            async move {
                let meta = aws.describe_key().key_id(&id).send().await.expect("describe");
                aws.list_resource_tags().key_id(&id).send().await.expect("tags");
                aws.get_key_policy().key_id(&id).policy_name("default").send().await.expect("policy");
                let symmetric =
                    meta.key_metadata().and_then(|m| m.key_spec()).map(|s| s.as_str()) == Some("SYMMETRIC_DEFAULT");
                if symmetric {
                    aws.get_key_rotation_status().key_id(&id).send().await.expect("rotation");
                    4
                } else {
                    3
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    calls + per_key.iter().sum::<usize>()
}

//! keyward-bench: prints throughput and memory figures for the hot paths, against the real
//! emulator and a real database (`scripts/bench`). Figures, not pass/fail: compare runs.
//!
//! Measures: a first sync of N keys (keys/s), a resync of the same N (keys/s), CreateKey
//! (calls/s, sequential), Encrypt with a Keyward key (calls/s, in-process), and the process's
//! peak RSS.
#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use keyward_shared::domain::{Caller, EndpointUrl, KeyOp, KeySpec, SyncTrigger, Tags};
use keyward_shared::{NewGroup, NewKey};
use keyward_tests::{Emulator, TestApp};

/// Keyward benchmarks.
#[derive(Parser)]
struct Args {
    /// Keys to seed in the emulator and sync.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// CreateKey and Encrypt calls to time.
    #[arg(long, default_value_t = 50)]
    calls: usize,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = Emulator::shared();
    let app = TestApp::spawn().await;
    let kw = app.keyward.clone();
    let ctx = || kw.ctx(Caller::system("bench", "bench"));

    let t = Instant::now();
    futures::stream::iter(0..args.keys)
        .map(|_| {
            let aws = app.aws.clone();
            async move { aws.create_key().send().await.expect("seed") }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let seed = t.elapsed();

    let cfg = keyward_shared::domain::AwsKmsConfig {
        region: keyward_shared::domain::Region::parse(keyward_tests::REGION).expect("region"),
        endpoint_url: Some(EndpointUrl::parse(&app.emulator_url).expect("emulator url")),
        access_key_id: app.access_key_id.clone(),
        secret_access_key: Some(app.secret_access_key.clone().into()),
        ca_certificate_pem: None,
        client_certificate_pem: None,
        client_private_key_pem: None,
        validate_host: true,
        unopened: Vec::new(),
    };
    let group = kw
        .create_group(
            &ctx(),
            NewGroup {
                display_name: "bench".into(),
                description: String::new(),
                kind: keyward_shared::domain::GroupKind::AwsKms,
                aws_kms: Some(cfg),
                crypto_policy: Default::default(),
                sync_interval: None,
                audit_key_use: false,
            },
        )
        .await
        .expect("group");
    let t = Instant::now();
    let run = kw.sync_group(&ctx(), group.id, SyncTrigger::Manual).await.expect("sync");
    let first = t.elapsed();
    let t = Instant::now();
    let again = kw.sync_group(&ctx(), group.id, SyncTrigger::Manual).await.expect("resync");
    let second = t.elapsed();

    let t = Instant::now();
    for i in 0..args.calls {
        let new = NewKey {
            display_name: format!("bench-{i}"),
            description: String::new(),
            key_spec: KeySpec::EccNistP256,
            key_ops: vec![KeyOp::Sign, KeyOp::Verify],
            tags: Tags::default(),
            aliases: Vec::new(),
            key_policy: None,
            rotation_schedule: None,
        };
        kw.create_key(&ctx(), group.id, new).await.expect("create");
    }
    let create = t.elapsed();

    let regular = kw
        .create_group(
            &ctx(),
            NewGroup {
                display_name: "bench-vault".into(),
                description: String::new(),
                kind: keyward_shared::domain::GroupKind::Regular,
                aws_kms: None,
                crypto_policy: Default::default(),
                sync_interval: None,
                audit_key_use: false,
            },
        )
        .await
        .expect("regular group");
    let key = kw
        .create_key(
            &ctx(),
            regular.id,
            NewKey {
                display_name: "k".into(),
                description: String::new(),
                key_spec: KeySpec::Aes256,
                key_ops: vec![KeyOp::Encrypt, KeyOp::Decrypt],
                tags: Tags::default(),
                aliases: Vec::new(),
                key_policy: None,
                rotation_schedule: None,
            },
        )
        .await
        .expect("keyward key");
    let t = Instant::now();
    let binding = keyward_shared::Binding { aad: b"aad".to_vec(), ..Default::default() };
    for _ in 0..args.calls * 20 {
        kw.encrypt(&ctx(), regular.id, key.id, &[7u8; 256], &binding).await.expect("encrypt");
    }
    let enc = t.elapsed();

    let per_s = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "keyward-bench: {} keys, {} calls ({} build, LocalStack, {})",
        args.keys,
        args.calls,
        if cfg!(debug_assertions) { "dev" } else { "release" },
        if app.sqlite_path.is_some() { "SQLite" } else { "PostgreSQL" }
    );
    println!("  seed through AWS API     {:>8.1} keys/s  ({:.1} s)", per_s(args.keys, seed), seed.as_secs_f64());
    println!(
        "  first sync               {:>8.1} keys/s  ({:.1} s, added {})",
        per_s(args.keys, first),
        first.as_secs_f64(),
        run.added
    );
    println!(
        "  resync (nothing new)     {:>8.1} keys/s  ({:.1} s, unchanged {})",
        per_s(args.keys, second),
        second.as_secs_f64(),
        again.unchanged
    );
    println!("  CreateKey ECC_NIST_P256  {:>8.1} calls/s", per_s(args.calls, create));
    println!("  Encrypt (Keyward key)    {:>8.1} calls/s (256 bytes)", per_s(args.calls * 20, enc));
    println!("  peak RSS                 {:>8.1} MiB", peak_rss_mib());
}

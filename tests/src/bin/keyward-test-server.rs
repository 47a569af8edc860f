//! keyward-test-server: the real server in its own process, for crash tests that kill it with
//! SIGKILL. Like keyward-server, but over the fault-injecting AWS connector, so a test can make
//! one AWS operation hang and kill the process while it waits there.
//!
//! Environment: `KEYWARD_DATABASE_URL`, `KEYWARD_MASTER_KEY` (hex of 32 bytes), and
//! `KEYWARD_TEST_HANG` = `op` or `op:key` (the operation, a `Kms` method name, that never
//! answers); with `KEYWARD_TEST_METRICS` set, Prometheus metrics on a free loopback port
//! (printed as `metrics <addr>`) and the worker's estate pass every 100 ms. It listens on a
//! free loopback port and prints `listening <addr>` on stdout. With `KEYWARD_TEST_ECHO` set
//! it is a bare tonic server with only `grpc.health.v1.Health` (the bench's transport ceiling),
//! and needs nothing else.
#![allow(clippy::expect_used, clippy::print_stdout, reason = "a test helper binary: set-up failures stop it")]

use std::sync::Arc;

use keyward_shared::crypto::{Keyring, MasterKey};
use keyward_shared::kms::aws::{AwsConnector, Timeouts};
use keyward_shared::kms::faults::{Fault, FaultyConnector};
use keyward_shared::store::Store;
use keyward_shared::{Keyward, Settings};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::var("KEYWARD_TEST_ECHO").is_ok() {
        return echo().await;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"));
    let key = hex_key(&var("KEYWARD_MASTER_KEY"));
    let store = Store::connect(
        &var("KEYWARD_DATABASE_URL"),
        Arc::new(Keyring::from(MasterKey::from_bytes(&key).expect("master key"))),
    )
    .await
    .expect("database");
    let faults = FaultyConnector::new(Arc::new(AwsConnector::new(Timeouts::standard())));
    if std::env::var("KEYWARD_TEST_HANG").as_deref() == Ok("after:create_key") {
        faults.inject(Fault::HangAfterCreateKey);
    } else if let Ok(hang) = std::env::var("KEYWARD_TEST_HANG") {
        let (op, key) = match hang.split_once(':') {
            Some((op, key)) => (op.to_owned(), Some(key.to_owned())),
            None => (hang, None),
        };
        faults.inject(Fault::Hang { op, key });
    }
    let keyward = Keyward::new(store, Arc::new(faults), Settings::standard());
    if std::env::var("KEYWARD_TEST_METRICS").is_ok() {
        let addr = keyward_shared::metrics::listen("metrics", "127.0.0.1:0").await.expect("metrics").expect("addr");
        println!("metrics {addr}");
        // What the worker's estate job does each tick, here every 100 ms.
        let kw = keyward.clone();
        tokio::spawn(async move {
            loop {
                let _ = keyward_shared::jobs::estate::run_once(&kw, kw.now()).await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    keyward_server::serve(keyward, listener, std::future::pending()).await.expect("serve");
}

/// A bare tonic server answering health checks only.
async fn echo() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .expect("serve");
}

fn hex_key(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex master key")).collect()
}

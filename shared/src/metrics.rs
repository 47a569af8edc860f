//! Prometheus metrics: the names and labels Keyward records (through the `metrics` facade, a
//! no-op until a binary installs the recorder), the recorder itself and the `/metrics` HTTP
//! listener both binaries run beside their real work.
//!
//! Every name is listed in [`NAMES`] with its help text; labels are bounded sets: gRPC method
//! paths, gRPC code names, AWS operation names, AWS error codes, group ids, key states, job
//! names. No label or value ever carries a secret, key material or a caller's input text.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// gRPC requests answered, by `method` (`/keyward.v1.KeyService/GetKey`) and `code`
/// (`OK`, `NOT_FOUND`, …). Counter.
pub const GRPC_REQUESTS: &str = "keyward_grpc_requests_total";
/// Time from a gRPC request to its response headers (seconds), by `method`. Histogram.
pub const GRPC_DURATION: &str = "keyward_grpc_request_duration_seconds";
/// AWS KMS calls (one SDK operation, retries included), by `operation` (`DescribeKey`) and
/// `outcome` (`ok`, AWS's error code such as `ThrottlingException`, `timeout`, `unreachable`,
/// `error`). Counter.
pub const AWS_CALLS: &str = "keyward_aws_calls_total";
/// Duration of an AWS KMS call, retries included (seconds), by `operation`. Histogram.
pub const AWS_DURATION: &str = "keyward_aws_call_duration_seconds";
/// HTTP attempts AWS answered with throttling (each is retried by the SDK while attempts
/// remain), by `operation`. Counter.
pub const AWS_THROTTLED: &str = "keyward_aws_throttled_total";
/// Sync runs ended, by `group` (id) and `state` (`SUCCEEDED`, `FAILED`). Counter.
pub const SYNC_RUNS: &str = "keyward_sync_runs_total";
/// Duration of ended sync runs (seconds), by `group`. Histogram.
pub const SYNC_DURATION: &str = "keyward_sync_run_duration_seconds";
/// Keys handled by ended sync runs, by `group` and `result` (`added`, `updated`,
/// `unchanged`, `failed`). Counter.
pub const SYNC_KEYS: &str = "keyward_sync_keys_total";
/// Warnings of ended sync runs, by `group`. Counter.
pub const SYNC_WARNINGS: &str = "keyward_sync_warnings_total";
/// Changes found in AWS behind Keyward's back by ended sync runs, by group and field.
pub const SYNC_DRIFT: &str = "keyward_sync_drift_changes_total";
/// Keys Keyward holds, by `group` and `state` (`ENABLED`, `PENDING_DELETION`, …); set by the
/// worker's estate pass. Gauge.
pub const KEYS: &str = "keyward_keys";
/// Keys in PENDING_DELETION. Gauge.
pub const KEYS_PENDING_DELETION: &str = "keyward_keys_pending_deletion";
/// The soonest deletion time of a key pending deletion (Unix seconds; 0 when none). Gauge.
pub const NEXT_DELETION: &str = "keyward_next_key_deletion_timestamp_seconds";
/// Keys whose imported material expires within 30 days. Gauge.
pub const MATERIAL_EXPIRING: &str = "keyward_imported_material_expiring_30d";
/// Rotation policies due now, overdue (due for more than a day) and rotations failed, by
/// `status` (`due`, `overdue`, `failed`). Gauge.
pub const ROTATIONS: &str = "keyward_rotations";
/// Worker job passes, by `job` and `outcome` (`ok`, `error`). Counter.
pub const JOB_RUNS: &str = "keyward_worker_job_runs_total";

/// Every metric: name, kind, help.
pub const NAMES: &[(&str, Kind, &str)] = &[
    (GRPC_REQUESTS, Kind::Counter, "gRPC requests answered, by method and code"),
    (GRPC_DURATION, Kind::Histogram, "time to a gRPC request's response headers, seconds"),
    (AWS_CALLS, Kind::Counter, "AWS KMS calls (retries included), by operation and outcome"),
    (AWS_DURATION, Kind::Histogram, "duration of AWS KMS calls with their retries, seconds"),
    (AWS_THROTTLED, Kind::Counter, "HTTP attempts AWS KMS answered with throttling, by operation"),
    (SYNC_RUNS, Kind::Counter, "sync runs ended, by group and state"),
    (SYNC_DURATION, Kind::Histogram, "duration of ended sync runs, seconds"),
    (SYNC_KEYS, Kind::Counter, "keys handled by ended sync runs, by group and result"),
    (SYNC_WARNINGS, Kind::Counter, "warnings of ended sync runs, by group"),
    (
        SYNC_DRIFT,
        Kind::Counter,
        "changes made in AWS behind Keyward's back found by ended sync runs, by group and field",
    ),
    (KEYS, Kind::Gauge, "keys held, by group and state"),
    (KEYS_PENDING_DELETION, Kind::Gauge, "keys pending deletion"),
    (NEXT_DELETION, Kind::Gauge, "soonest deletion time of a key pending deletion, Unix seconds (0: none)"),
    (MATERIAL_EXPIRING, Kind::Gauge, "keys whose imported material expires within 30 days"),
    (ROTATIONS, Kind::Gauge, "rotation policies due, overdue (over a day) and rotations failed"),
    (JOB_RUNS, Kind::Counter, "worker job passes, by job and outcome"),
];

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Histogram buckets (seconds): 1 ms to 10 min.
const BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];

/// Installs the process-wide recorder and describes every metric. Call once, first thing.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for (name, kind, help) in NAMES {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
        }
    }
}

/// Installs the recorder and serves `/metrics` on `addr` (`host:port`; port 0 picks one) in a
/// background task. `setting` names the configuration key in errors. Empty `addr`: no
/// listener and no recorder (recording is then a no-op). Returns the bound address.
pub async fn listen(setting: &str, addr: &str) -> anyhow::Result<Option<SocketAddr>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("{setting} {addr:?}: {e}"))?;
    let bound = listener.local_addr()?;
    let handle = install()?;
    tokio::spawn(serve(listener, handle));
    Ok(Some(bound))
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4) on `listener` until the task is
/// dropped; any other path is 404. Also runs the recorder's upkeep every 5 s.
pub async fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let handle = handle.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &handle)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer<B>(
    req: &hyper::Request<B>,
    handle: &PrometheusHandle,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, kind, body) = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
        (hyper::StatusCode::OK, "text/plain; version=0.0.4", handle.render())
    } else {
        (hyper::StatusCode::NOT_FOUND, "text/plain", "only GET /metrics is served here\n".to_owned())
    };
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
    resp
}

/// One gRPC request answered.
pub fn grpc_request(method: &str, code: &'static str, took: Duration) {
    metrics::counter!(GRPC_REQUESTS, "method" => method.to_owned(), "code" => code).increment(1);
    metrics::histogram!(GRPC_DURATION, "method" => method.to_owned()).record(took.as_secs_f64());
}

/// A sync run that ended: its state, duration (by the wall clock of the process that ran it),
/// keys by result and warnings.
pub fn sync_run_ended(run: &crate::domain::SyncRun, took: Duration) {
    let group = run.group_id.to_string();
    metrics::counter!(SYNC_RUNS, "group" => group.clone(), "state" => run.state.name()).increment(1);
    metrics::histogram!(SYNC_DURATION, "group" => group.clone()).record(took.as_secs_f64());
    for (result, n) in
        [("added", run.added), ("updated", run.updated), ("unchanged", run.unchanged), ("failed", run.failed)]
    {
        metrics::counter!(SYNC_KEYS, "group" => group.clone(), "result" => result)
            .increment(u64::try_from(n).unwrap_or(0));
    }
    metrics::counter!(SYNC_WARNINGS, "group" => group.clone()).increment(run.warnings.len() as u64);
    for (field, n) in &run.drift.fields {
        metrics::counter!(SYNC_DRIFT, "group" => group.clone(), "field" => field.clone())
            .increment(u64::try_from(*n).unwrap_or(0));
    }
}

/// The estate's gauges from one count at `now`. A group and state counted before but not now is
/// set to 0, so a gauge never keeps a count that is gone.
pub fn record_estate(e: &crate::store::Estate) {
    static SEEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let now: Vec<(String, String)> = e.keys.iter().map(|(g, s, _)| (g.clone(), s.clone())).collect();
    for (g, s) in seen.iter().filter(|l| !now.contains(l)) {
        metrics::gauge!(KEYS, "group" => g.clone(), "state" => s.clone()).set(0.0);
    }
    for (g, s, n) in &e.keys {
        metrics::gauge!(KEYS, "group" => g.clone(), "state" => s.clone()).set(*n as f64);
    }
    *seen = now;
    metrics::gauge!(KEYS_PENDING_DELETION).set(e.pending_deletion as f64);
    metrics::gauge!(NEXT_DELETION).set(e.next_deletion.map_or(0.0, |t| t.unix_timestamp() as f64));
    metrics::gauge!(MATERIAL_EXPIRING).set(e.material_expiring as f64);
    for (status, n) in [("due", e.rotations_due), ("overdue", e.rotations_overdue), ("failed", e.rotations_failed)] {
        metrics::gauge!(ROTATIONS, "status" => status).set(n as f64);
    }
}

/// A worker job pass ended.
pub fn job_run(job: &'static str, ok: bool) {
    metrics::counter!(JOB_RUNS, "job" => job, "outcome" => if ok { "ok" } else { "error" }).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estate_gauges_drop_to_zero_when_a_count_is_gone_and_job_passes_count() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut e = crate::store::Estate {
                keys: vec![("g1".into(), "ENABLED".into(), 2), ("g1".into(), "DISABLED".into(), 1)],
                pending_deletion: 0,
                next_deletion: None,
                material_expiring: 4,
                rotations_due: 3,
                rotations_overdue: 1,
                rotations_failed: 0,
            };
            record_estate(&e);
            e.keys.truncate(1);
            record_estate(&e);
            job_run("recovery", true);
            job_run("recovery", false);
            job_run("recovery", false);
        });
        let text = handle.render();
        for line in [
            r#"keyward_keys{group="g1",state="ENABLED"} 2"#,
            r#"keyward_keys{group="g1",state="DISABLED"} 0"#,
            "keyward_imported_material_expiring_30d 4",
            r#"keyward_rotations{status="due"} 3"#,
            r#"keyward_rotations{status="overdue"} 1"#,
            "keyward_next_key_deletion_timestamp_seconds 0",
            r#"keyward_worker_job_runs_total{job="recovery",outcome="ok"} 1"#,
            r#"keyward_worker_job_runs_total{job="recovery",outcome="error"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn every_name_is_a_prometheus_name_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, _) in NAMES {
            assert!(
                name.starts_with("keyward_")
                    && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(name.ends_with("_total"), *kind == Kind::Counter, "{name}");
            assert!(seen.insert(*name), "{name} twice");
        }
    }
}

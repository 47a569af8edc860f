//! AWS KMS request quotas, respected on Keyward's side: a token bucket (governor) per quota per
//! AWS account and Region, shared by everything one process sends there, so a sync, the worker
//! and API calls together stay under what AWS allows instead of being throttled.
//!
//! Defaults: AWS's published requests-per-second quotas, "Request quotas", AWS KMS Developer
//! Guide, <https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html>
//! (read 2026-12-03; the page states no date; its current table — which lists the
//! ECC_NIST_EDWARDS25519 quota added 2025-11-07 — raised the symmetric cryptographic quota to
//! 10,000 / 20,000 / 100,000 and ImportKeyMaterial, DeleteImportedKeyMaterial and
//! GetParametersForImport since the 2022 page). Each quota is per account per Region and
//! calculated independently of the others; the cryptographic operations share one.
//!
//! Where Keyward cannot tell which quota AWS counts a call against (the RSA, ECC and ML-DSA
//! cryptographic quotas depend on the key, GenerateDataKeyPair's on the pair's spec), the call
//! waits for the bucket named here and AWS's own throttling, retried by the SDK with backoff
//! and jitter, does the rest.
//!
//! Beside the buckets, the requests in flight to one account and Region are held to an adaptive
//! limit (AIMD, as TCP does): AWS throttling an attempt halves it (at most once per 10 ms, and
//! to at most half of what was in flight), and every 500 ms without throttling while the limit
//! is used raises it by one, up to 256. An account whose real quota is lower than the buckets
//! assume (a lowered quota, other clients of the account) is then throttled briefly, not all
//! along.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota};

/// The symmetric cryptographic operations' shared quota (also HMAC's): Decrypt, Encrypt,
/// GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateMac, ReEncrypt, VerifyMac.
pub const SYMMETRIC: &str = "cryptographic operations (symmetric)";
/// Sign, Verify, DeriveSharedSecret: the RSA / ECC and SM2 / ML-DSA quotas, 1,000 each.
pub const ASYMMETRIC: &str = "cryptographic operations (asymmetric)";
/// GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext share the quotas of each spec.
pub const DATA_KEY_PAIR: &str = "GenerateDataKeyPair";

/// Requests per second AWS allows by default, by the quota an operation counts against.
pub const DEFAULTS: &[(&str, f64)] = &[
    ("CancelKeyDeletion", 5.0),
    ("CreateAlias", 5.0),
    ("CreateKey", 5.0),
    ("DeleteAlias", 15.0),
    ("DeleteImportedKeyMaterial", 15.0),
    ("DescribeKey", 2000.0),
    ("DisableKey", 5.0),
    ("DisableKeyRotation", 5.0),
    ("EnableKey", 5.0),
    ("EnableKeyRotation", 15.0),
    ("GetKeyPolicy", 1000.0),
    ("GetKeyRotationStatus", 1000.0),
    ("GetParametersForImport", 1.0),
    ("GetPublicKey", 2000.0),
    ("ImportKeyMaterial", 15.0),
    ("ListAliases", 500.0),
    ("ListKeyRotations", 100.0),
    ("ListKeys", 500.0),
    ("ListResourceTags", 2000.0),
    ("PutKeyPolicy", 15.0),
    ("RotateKeyOnDemand", 5.0),
    ("ScheduleKeyDeletion", 15.0),
    ("TagResource", 10.0),
    ("UntagResource", 5.0),
    ("UpdateAlias", 5.0),
    ("UpdateKeyDescription", 5.0),
    // 10,000 in most Regions; see `symmetric_default` for the Regions with more.
    (SYMMETRIC, 10_000.0),
    (ASYMMETRIC, 1000.0),
    // ECC specs 100 each; RSA 20 (RSA_2048) down to 1 (RSA_4096).
    (DATA_KEY_PAIR, 100.0),
];

/// The quota an operation (`DescribeKey`) counts against.
pub fn quota_of(operation: &str) -> &str {
    match operation {
        "Decrypt"
        | "Encrypt"
        | "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GenerateMac"
        | "ReEncrypt"
        | "VerifyMac"
        | "GenerateRandom" => SYMMETRIC,
        "Sign" | "Verify" | "DeriveSharedSecret" => ASYMMETRIC,
        "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => DATA_KEY_PAIR,
        other => other,
    }
}

/// The symmetric cryptographic quota of `region`: 100,000 in us-east-1, us-west-2 and
/// eu-west-1; 20,000 in us-east-2, ap-southeast-1, ap-southeast-2, ap-northeast-1,
/// eu-central-1 and eu-west-2; 10,000 elsewhere.
fn symmetric_default(region: &str) -> f64 {
    match region {
        "us-east-1" | "us-west-2" | "eu-west-1" => 100_000.0,
        "us-east-2" | "ap-southeast-1" | "ap-southeast-2" | "ap-northeast-1" | "eu-central-1" | "eu-west-2" => 20_000.0,
        _ => 10_000.0,
    }
}

/// Quotas overriding the defaults (an account with raised quotas, or a test's), requests per
/// second by operation or quota name. Parsed from `aws_request_quotas`:
/// `DescribeKey=100,ListKeys=20` (names as in [`DEFAULTS`] or any operation of [`quota_of`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaOverrides(pub Vec<(String, f64)>);

impl QuotaOverrides {
    /// Parses `Name=rps,...`; errors name the item.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, rps) = item
                .split_once('=')
                .ok_or_else(|| format!("aws_request_quotas: {item:?} is not NAME=REQUESTS_PER_SECOND"))?;
            let (name, rps) = (name.trim(), rps.trim());
            let quota = quota_of(name);
            if !DEFAULTS.iter().any(|(n, _)| *n == quota) {
                return Err(format!("aws_request_quotas: {name:?} is not an AWS KMS operation Keyward calls"));
            }
            let rps: f64 =
                rps.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 0.01 && *r <= 1_000_000.0).ok_or_else(
                    || format!("aws_request_quotas: {name}={rps}: requests per second from 0.01 to 1000000"),
                )?;
            out.push((quota.to_owned(), rps));
        }
        Ok(Self(out))
    }
}

/// The buckets of one account and Region, and the adaptive limit of its requests in flight.
#[derive(Debug)]
pub struct Buckets {
    by_quota: HashMap<&'static str, DefaultDirectRateLimiter>,
    pub(crate) in_flight: Arc<AdaptiveLimit>,
}

impl Buckets {
    /// Every quota's bucket for `region`, `overrides` applied.
    pub fn new(region: &str, overrides: &QuotaOverrides) -> Self {
        let by_quota = DEFAULTS
            .iter()
            .map(|(name, rps)| {
                let rps = overrides
                    .0
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, r)| *r)
                    .unwrap_or(if *name == SYMMETRIC { symmetric_default(region) } else { *rps });
                (*name, DefaultDirectRateLimiter::direct(quota(rps)))
            })
            .collect();
        Self { by_quota, in_flight: Arc::default() }
    }

    /// Waits until `operation` may be sent (at once while its bucket holds a token).
    pub async fn acquire(&self, operation: &str) {
        if let Some(b) = self.by_quota.get(quota_of(operation)) {
            b.until_ready().await;
        }
    }
}

/// The AIMD limit of requests in flight to one account and Region (see the module's doc).
#[derive(Debug)]
pub struct AdaptiveLimit {
    state: Mutex<LimitState>,
    freed: tokio::sync::Notify,
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    in_flight: usize,
    /// When the limit last moved (a cut, or a raise).
    moved: Instant,
}

impl AdaptiveLimit {
    pub const MAX: usize = 256;
    const CUT_EVERY: Duration = Duration::from_millis(10);
    const RAISE_EVERY: Duration = Duration::from_millis(500);

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a place under the limit; the place is freed when the permit drops.
    pub async fn acquire(self: &Arc<Self>) -> InFlight {
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return InFlight(self.clone());
                }
            }
            freed.await;
        }
    }

    /// AWS throttled an attempt: halve the limit (and to at most half of what was in flight),
    /// once per 10 ms (the answers of one wave count once).
    pub fn throttled(&self) {
        let mut s = self.lock();
        if s.moved.elapsed() >= Self::CUT_EVERY {
            let cut = (s.limit / 2).min(s.in_flight.div_ceil(2)).max(1);
            if cut < s.limit {
                tracing::debug!(from = s.limit, to = cut, "AWS throttles: fewer requests in flight");
            }
            s.limit = cut;
            s.moved = Instant::now();
        }
    }

    /// An attempt went through: raise the limit by one if it is in use and has not moved for
    /// 500 ms.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        if s.limit < Self::MAX && s.in_flight + 1 >= s.limit && s.moved.elapsed() >= Self::RAISE_EVERY {
            s.limit += 1;
            s.moved = Instant::now();
        }
    }
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        let start = LimitState { limit: Self::MAX, in_flight: 0, moved: Instant::now() };
        Self { state: Mutex::new(start), freed: tokio::sync::Notify::new() }
    }
}

/// A place under an [`AdaptiveLimit`], freed on drop.
pub struct InFlight(Arc<AdaptiveLimit>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.freed.notify_one();
    }
}

/// A bucket refilled at `rps` holding 50 ms of requests (at least one): a second never sees
/// more than 1.05 × `rps`, and high rates are not held to the timer's millisecond.
fn quota(rps: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rps);
    let burst = NonZeroU32::new((rps / 20.0).floor().clamp(1.0, 100_000.0) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

/// Buckets by account and Region, for one process.
#[derive(Debug, Default)]
pub struct QuotaRegistry {
    overrides: QuotaOverrides,
    places: Mutex<HashMap<String, Arc<Buckets>>>,
}

impl QuotaRegistry {
    pub fn new(overrides: QuotaOverrides) -> Self {
        Self { overrides, places: Mutex::default() }
    }

    /// The buckets of the account reached with `access_key_id` at `endpoint` in `region` (an
    /// access key belongs to one account; two groups with the same key and Region share them).
    pub fn buckets(&self, endpoint: &str, region: &str, access_key_id: &str) -> Arc<Buckets> {
        let place = format!("{endpoint} {region} {access_key_id}");
        let mut places = self.places.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        places.entry(place).or_insert_with(|| Arc::new(Buckets::new(region, &self.overrides))).clone()
    }
}

/// An SDK HTTP connector that sends each request (each attempt: AWS counts retries too) only
/// when its operation's bucket allows, the operation read from `X-Amz-Target`.
#[derive(Debug, Clone)]
pub(crate) struct QuotaConnector {
    pub(crate) inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    pub(crate) buckets: Arc<Buckets>,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for QuotaConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let operation =
            request.headers().get("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or_default().to_owned();
        let (inner, buckets) = (self.inner.clone(), self.buckets.clone());
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            buckets.acquire(&operation).await;
            let _in_flight = buckets.in_flight.acquire().await;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_flight_limit_halves_on_throttling_and_holds_callers_at_it() {
        let limit = Arc::new(AdaptiveLimit::default());
        assert_eq!(limit.limit(), AdaptiveLimit::MAX);
        let held: Vec<InFlight> = futures::future::join_all((0..8).map(|_| limit.acquire())).await;
        std::thread::sleep(AdaptiveLimit::CUT_EVERY);
        limit.throttled();
        assert_eq!(limit.limit(), 4, "to half of the 8 in flight");
        limit.throttled();
        assert_eq!(limit.limit(), 4, "one wave's answers cut once");
        drop(held);
        let four: Vec<InFlight> = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        let fifth = tokio::time::timeout(Duration::from_millis(50), limit.acquire()).await;
        assert!(fifth.is_err(), "a fifth caller waits at a limit of 4");
        drop(four);
        assert!(tokio::time::timeout(Duration::from_millis(50), limit.acquire()).await.is_ok());
    }

    #[test]
    fn operations_count_against_their_quota() {
        assert_eq!(quota_of("DescribeKey"), "DescribeKey");
        assert_eq!(quota_of("Encrypt"), SYMMETRIC);
        assert_eq!(quota_of("VerifyMac"), SYMMETRIC);
        assert_eq!(quota_of("Sign"), ASYMMETRIC);
        assert_eq!(quota_of("GenerateDataKeyPairWithoutPlaintext"), DATA_KEY_PAIR);
        assert_eq!(symmetric_default("us-east-1"), 100_000.0);
        assert_eq!(symmetric_default("eu-west-2"), 20_000.0);
        assert_eq!(symmetric_default("eu-north-1"), 10_000.0);
    }

    #[test]
    fn overrides_parse_and_bad_ones_name_the_item() {
        let o = QuotaOverrides::parse(" DescribeKey=50, Encrypt=2.5 ,").expect("parse");
        assert_eq!(o.0, vec![("DescribeKey".to_owned(), 50.0), (SYMMETRIC.to_owned(), 2.5)]);
        assert_eq!(QuotaOverrides::parse("").expect("empty"), QuotaOverrides::default());
        for (bad, says) in [("DescribeKey", "NAME=REQUESTS"), ("Nope=5", "\"Nope\""), ("ListKeys=0", "ListKeys=0")] {
            let e = QuotaOverrides::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn a_bucket_sends_at_its_rate() {
        let b = Buckets::new("eu-west-1", &QuotaOverrides::parse("ListKeys=40").expect("parse"));
        let start = std::time::Instant::now();
        for _ in 0..42 {
            b.acquire("ListKeys").await;
        }
        // 2 at once (50 ms of 40/s), then 40 at 25 ms each: about 1 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.9..1.5).contains(&took), "42 requests at 40/s took {took:.2} s");
        let start = std::time::Instant::now();
        b.acquire("DescribeKey").await;
        assert!(start.elapsed() < Duration::from_millis(50), "another quota's bucket is not this one's");
    }
}

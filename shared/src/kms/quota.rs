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
//! waits for the bucket named here and AWS's own throttling, retried by the SDK with backoff,
//! jitter and its adaptive client rate, does the rest.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The buckets of one account and Region.
#[derive(Debug)]
pub struct Buckets {
    by_quota: HashMap<&'static str, DefaultDirectRateLimiter>,
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
        Self { by_quota }
    }

    /// Waits until `operation` may be sent (at once while its bucket holds a token).
    pub async fn acquire(&self, operation: &str) {
        if let Some(b) = self.by_quota.get(quota_of(operation)) {
            b.until_ready().await;
        }
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
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! OIDC / JWT bearer tokens (RFC 7519, signed per RFC 7515): a token names a principal by its
//! `sub` claim (`Principal.oidc_subjects`) when it is signed by a key of the configured
//! issuer's JWKS (RFC 7517), has that issuer as `iss` and the configured audience in `aud`, and
//! is within `exp` and `nbf` (60 s of clock skew allowed). Checked with `jsonwebtoken` on
//! aws-lc-rs.
//!
//! Only asymmetric keys are used: RSA (RS256/384/512, PS256/384/512), EC P-256 (ES256) and
//! P-384 (ES384), Ed25519 (EdDSA); a JWK's `alg`, when it has one, narrows that. Symmetric
//! (`oct`) keys, `alg: none`, and keys a token carries itself (`jwk`, `jku`) are never used.
//! The JWKS is fetched when first needed, again after an hour, and again when a token names a
//! `kid` it lacks (the issuer rotated its keys) — at most once every 30 s, so tokens with made-up
//! key ids cannot make Keyward hammer the issuer; a failed fetch keeps the keys it had. No lock
//! is held while it runs: a slow issuer delays only the call that fetches. Keys marked for
//! encryption (`use: enc`) or for operations other than `verify` are not signing keys. What a
//! caller hears never quotes the JWKS URL (its log line shows it without user info or query)
//! nor the token's contents.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::RwLock;

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: f64 = 60.0;
/// A JWKS older than this is fetched again.
const JWKS_MAX_AGE: time::Duration = time::Duration::hours(1);
/// Fetches of the JWKS are at least this far apart.
const MIN_REFETCH: time::Duration = time::Duration::seconds(30);
/// A JWKS fetch, connection and body together.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Which tokens are accepted (all three are required together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The `iss` every token must carry, e.g. `https://accounts.example.com`.
    pub issuer: String,
    /// A value the token's `aud` must hold, e.g. `keyward`.
    pub audience: String,
    /// Where the issuer publishes its keys (`jwks_uri` of its discovery document): `https://`,
    /// or `http://` on a loopback address.
    pub jwks_url: String,
}

impl OidcSettings {
    /// Checks the settings; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("oidc_issuer: required with oidc_jwks_url".into());
        }
        if self.audience.trim().is_empty() {
            return Err("oidc_audience: required with oidc_issuer".into());
        }
        let uri: http::Uri = self.jwks_url.parse().map_err(|e| format!("oidc_jwks_url: not a URL ({e})"))?;
        let loopback = uri.host().is_some_and(|h| {
            h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        });
        match uri.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if loopback => Ok(()),
            _ => Err("oidc_jwks_url: https://, or http:// on a loopback address".into()),
        }
    }
}

/// The claims Keyward reads (`iss` and `aud` are checked by `jsonwebtoken`).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// NumericDate (RFC 7519 §2): seconds, possibly with a fraction.
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct Jwks {
    keys: Vec<Arc<Key>>,
    fetched: Option<OffsetDateTime>,
    last_attempt: Option<OffsetDateTime>,
    /// The last fetch failed (why is in the server's log, never in an answer).
    failed: bool,
}

/// The verifier of one issuer's tokens, with its cached JWKS.
pub struct Oidc {
    settings: OidcSettings,
    jwks: RwLock<Jwks>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        Self { settings, jwks: RwLock::default() }
    }

    /// Whether `token` looks like a JWS compact serialization (three base64url parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
            && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// The `sub` of a token valid at `now`, or why it is not (never echoing the token).
    pub async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<String, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "the bearer token is not a valid JWT".to_owned())?;
        let key = self.key_for(header.kid.as_deref(), now).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(format!("the token's alg {:?} does not fit the issuer's key it names", header.alg));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.settings.issuer.as_str()]);
        v.set_audience(&[self.settings.audience.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against Keyward's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| refusal(&e, &self.settings))?.claims;
        let t = now.unix_timestamp() as f64;
        if t > claims.exp + LEEWAY_SECONDS {
            return Err("the token has expired".into());
        }
        if claims.nbf.is_some_and(|nbf| nbf > t + LEEWAY_SECONDS) {
            return Err("the token is not valid yet (nbf)".into());
        }
        if claims.sub.is_empty() {
            return Err("the token's sub is empty".into());
        }
        Ok(claims.sub)
    }

    /// The key a token's `kid` names (without one: the only key), fetching the JWKS when it
    /// is missing, old, or lacks that key, at most every [`MIN_REFETCH`]. The fetch runs with no
    /// lock held: other verifications go on with the keys there are meanwhile.
    async fn key_for(&self, kid: Option<&str>, now: OffsetDateTime) -> Result<Arc<Key>, String> {
        {
            let jwks = self.jwks.read().await;
            let fresh = jwks.fetched.is_some_and(|t| now - t < JWKS_MAX_AGE);
            if let (true, Some(k)) = (fresh, find(&jwks.keys, kid)) {
                return Ok(k);
            }
        }
        let fetch_now = {
            let mut jwks = self.jwks.write().await;
            let fresh = jwks.fetched.is_some_and(|t| now - t < JWKS_MAX_AGE);
            if let (true, Some(k)) = (fresh, find(&jwks.keys, kid)) {
                return Ok(k);
            }
            let due = jwks.last_attempt.is_none_or(|t| now - t >= MIN_REFETCH);
            if due {
                // Claimed under the lock: one fetch at a time, however many callers.
                jwks.last_attempt = Some(now);
            }
            due
        };
        if fetch_now {
            let fetched = fetch(&self.settings.jwks_url).await;
            let mut jwks = self.jwks.write().await;
            match fetched {
                Ok(keys) => {
                    jwks.keys = keys;
                    jwks.fetched = Some(now);
                    jwks.failed = false;
                }
                Err(e) => {
                    tracing::warn!(jwks_url = %crate::kms::http::redacted(&self.settings.jwks_url), error = %e, "could not fetch the OIDC issuer's JWKS; keeping the keys it had");
                    jwks.failed = true;
                }
            }
        }
        let jwks = self.jwks.read().await;
        find(&jwks.keys, kid).ok_or_else(|| match kid {
            _ if jwks.failed && jwks.keys.is_empty() => {
                "the OIDC issuer's keys could not be read (the server's log says why)".to_owned()
            }
            Some(kid) => format!("the token's kid {:?} is not among the OIDC issuer's keys", clip(kid)),
            None => "the token names no kid and the OIDC issuer has more than one key".into(),
        })
    }
}

/// At most 64 characters of a value the caller chose, for a message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn find(keys: &[Arc<Key>], kid: Option<&str>) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
        None if keys.len() == 1 => keys.first().cloned(),
        None => None,
    }
}

/// Why `jsonwebtoken` refused a token, in words (its errors never carry the token).
fn refusal(e: &jsonwebtoken::errors::Error, s: &OidcSettings) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "the token's signature does not verify with the OIDC issuer's key".into(),
        K::InvalidIssuer => format!("the token's iss is not {}", s.issuer),
        K::InvalidAudience => format!("the token's aud does not hold {}", s.audience),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        K::InvalidAlgorithm => "the token's alg does not fit the OIDC issuer's key".into(),
        K::ExpiredSignature => "the token has expired".into(),
        // JSON and encoding errors quote the token's contents: never echoed.
        K::Json(_) | K::Base64(_) | K::Utf8(_) | K::InvalidClaimFormat(_) => {
            "the token's claims are not as RFC 7519 writes them (exp and nbf numbers, sub and iss strings)".into()
        }
        _ => "the bearer token is not a valid JWT".into(),
    }
}

/// Reads the JWKS at `url`: its usable keys (asymmetric, of a supported curve, for signatures).
/// Errors name the URL without its user info and query.
async fn fetch(url: &str) -> Result<Vec<Arc<Key>>, String> {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let shown = crate::kms::http::redacted(url);
    let body = crate::kms::http::get(url, FETCH_TIMEOUT, MAX_JWKS_BYTES).await?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|_| format!("{shown} is not a JWKS document"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // A key the issuer marks for encryption, or for operations other than verifying, is
        // not a signing key (RFC 7517 §4.2, §4.3).
        let for_signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)))
            && jwk.common.key_operations.as_ref().is_none_or(|ops| ops.contains(&KeyOperations::Verify));
        if !for_signing {
            continue;
        }
        let mut algorithms: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            // Symmetric keys and anything else: never.
            _ => continue,
        };
        if let Some(alg) = jwk.common.key_algorithm {
            if alg == KeyAlgorithm::UNKNOWN_ALGORITHM {
                continue;
            }
            let named: Option<Algorithm> = alg.to_string().parse().ok();
            algorithms.retain(|a| named == Some(*a));
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        if !algorithms.is_empty() {
            keys.push(Arc::new(Key { kid: jwk.common.key_id.clone(), key, algorithms }));
        }
    }
    if keys.is_empty() {
        return Err(format!("{shown} holds no usable signing key (RSA, EC P-256/P-384 or Ed25519)"));
    }
    Ok(keys)
}

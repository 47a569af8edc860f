//! A test OIDC issuer on loopback: EC P-256 signing keys (rcgen), their JWKS served over HTTP
//! (fetches counted; the keys can be rotated), and tokens signed with them (jsonwebtoken).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One signing key: its kid, its private key and its JWK.
struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn new() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
        // The public key is the uncompressed point 0x04 || x || y.
        let point = pair.public_key_raw();
        let kid = uuid::Uuid::now_v7().to_string();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { kid, key, jwk }
    }
}

/// A running issuer; stops when dropped.
pub struct Issuer {
    /// `iss` of its tokens.
    pub issuer: String,
    /// Where its JWKS is.
    pub jwks_url: String,
    signer: Mutex<Signer>,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    /// How long the JWKS answer waits, in milliseconds.
    delay_ms: Arc<AtomicU64>,
    /// The HTTP status it answers (200: the JWKS).
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    pub async fn start() -> Self {
        Self::start_at("/jwks.json").await
    }

    /// An issuer whose JWKS URL has `path` (and query) after its address.
    pub async fn start_at(path: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the issuer");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let signer = Signer::new();
        let jwks = Arc::new(Mutex::new(json!({ "keys": [signer.jwk.clone()] })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (delay_ms, status) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU16::new(200)));
        let (served, counted, delay, answer) = (jwks.clone(), fetches.clone(), delay_ms.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (served, counted, delay, answer) = (served.clone(), counted.clone(), delay.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let body = served.lock().expect("lock").to_string();
                        let (wait, code) = (delay.load(Ordering::SeqCst), answer.load(Ordering::SeqCst));
                        async move {
                            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = hyper::StatusCode::from_u16(code).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            issuer: format!("{base}/issuer"),
            jwks_url: format!("{base}{path}"),
            signer: Mutex::new(signer),
            jwks,
            fetches,
            delay_ms,
            status,
            task,
        }
    }

    /// A token of `sub` for `aud`, expiring `exp_in` seconds from now (negative: expired), with
    /// `extra` claims merged over the standard ones.
    pub fn token(&self, sub: &str, aud: &str, exp_in: i64, extra: Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({ "iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + exp_in });
        if let (Some(c), Value::Object(more)) = (claims.as_object_mut(), extra) {
            c.extend(more);
        }
        let kid = self.signer.lock().expect("lock").kid.clone();
        self.sign(&claims, Some(&kid))
    }

    /// `claims` signed with the current key, its header naming `kid`.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let signer = self.signer.lock().expect("lock");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &signer.key).expect("sign")
    }

    /// A new signing key; the JWKS then holds only it.
    pub fn rotate(&self) {
        let next = Signer::new();
        *self.jwks.lock().expect("lock") = json!({ "keys": [next.jwk.clone()] });
        *self.signer.lock().expect("lock") = next;
    }

    /// The JWKS answer waits `ms` milliseconds from now on.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The issuer answers HTTP `code` from now on (200: the JWKS).
    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Sets `field` of the current key's JWK (e.g. `use` to `enc`).
    pub fn set_jwk_field(&self, field: &str, value: Value) {
        if let Some(k) = self.jwks.lock().expect("lock")["keys"].get_mut(0) {
            k[field] = value;
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

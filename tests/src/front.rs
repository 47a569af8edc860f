//! An HTTP front on loopback before the emulator, for AWS KMS operations no emulator implements
//! (LocalStack answers ListKeyRotations with HTTP 501): it answers the operations it is given
//! with AWS's documented response shape, records the requests Keyward sent them, and passes every
//! other request to the emulator unchanged. What such a test shows is the request Keyward sends
//! (checked against the API reference) and how it reads AWS's answer — not AWS's behaviour. It
//! can also throttle an operation's next requests, as AWS does past a quota.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// Makes the JSON answer of an operation from the JSON request.
pub type Answer = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A running front; stops when dropped.
pub struct KmsFront {
    /// `http://127.0.0.1:<port>`: use it as a group's endpoint URL.
    pub url: String,
    recorded: Arc<Mutex<Vec<(String, Value)>>>,
    throttle: Failures,
    task: tokio::task::JoinHandle<()>,
}

/// How the front answers in place of AWS.
#[derive(Default)]
struct Rules {
    /// Requests still to be answered with an AWS error, by operation: how many, status, code.
    fail: HashMap<String, (usize, u16, String)>,
    /// Quotas the front enforces as AWS does, by operation.
    quotas: HashMap<String, governor::DefaultDirectRateLimiter>,
    /// Percent of distinct requests (operation and body) whose first attempt is throttled.
    throttle_share: u64,
    seen: std::collections::HashSet<u64>,
    /// Every request: operation, when, throttled.
    log: Vec<(String, std::time::Instant, bool)>,
    /// At most this many requests in flight (more are throttled), each held this long.
    concurrency: Option<(usize, std::time::Duration)>,
    in_flight: usize,
}

type Failures = Arc<Mutex<Rules>>;

impl Drop for KmsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KmsFront {
    /// Starts a front before `emulator` answering `answers` (by operation name, e.g.
    /// `ListKeyRotations`, as in the `X-Amz-Target: TrentService.<name>` header).
    pub async fn start(emulator: &str, answers: HashMap<&'static str, Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the front");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let recorded: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let throttle: Failures = Arc::default();
        let (rec, emulator) = (recorded.clone(), emulator.trim_end_matches('/').to_owned());
        let thr = throttle.clone();
        let answers = Arc::new(answers);
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (rec, thr, answers, client, emulator) =
                    (rec.clone(), thr.clone(), answers.clone(), client.clone(), emulator.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (rec, thr, answers, client, emulator) =
                            (rec.clone(), thr.clone(), answers.clone(), client.clone(), emulator.clone());
                        async move { Ok::<_, Infallible>(handle(req, &rec, &thr, &answers, &client, &emulator).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, recorded, throttle, task }
    }

    /// Answers the next `n` requests of operation `name` as AWS does when a quota is exceeded:
    /// HTTP 400, `x-amzn-ErrorType: ThrottlingException`, `{"__type":"ThrottlingException"}`
    /// (https://docs.aws.amazon.com/kms/latest/developerguide/throttling.html).
    pub fn throttle_next(&self, name: &str, n: usize) {
        self.fail_next(name, n, 400, "ThrottlingException");
    }

    /// Answers the next `n` requests of operation `name` with AWS error `code` as AWS sends
    /// errors (awsJson1_1: HTTP `status`, `x-amzn-ErrorType` and `{"__type", "message"}`).
    pub fn fail_next(&self, name: &str, n: usize, status: u16, code: &str) {
        self.throttle.lock().expect("lock").fail.insert(name.to_owned(), (n, status, code.to_owned()));
    }

    /// Throttles requests of operation `name` beyond `rps` per second, as AWS enforces a quota
    /// (a bucket of `rps`, holding a tenth of a second of requests plus two: arrival jitter).
    pub fn enforce_quota(&self, name: &str, rps: u32) {
        let rate = std::num::NonZeroU32::new(rps).expect("rps > 0");
        let burst = std::num::NonZeroU32::new(rps / 10 + 2).expect("burst");
        let limiter = governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst));
        self.throttle.lock().expect("lock").quotas.insert(name.to_owned(), limiter);
    }

    /// Throttles every request that arrives while `max` are in flight, as an account whose
    /// capacity other clients use up; each request it passes on is held `hold` (so requests
    /// overlap as they do against a remote Region).
    pub fn enforce_concurrency(&self, max: usize, hold: std::time::Duration) {
        self.throttle.lock().expect("lock").concurrency = Some((max, hold));
    }

    /// Throttles the first attempt of `percent` % of distinct requests (by operation and body;
    /// a retry of one is not throttled again), whatever their rate.
    pub fn throttle_share(&self, percent: u64) {
        self.throttle.lock().expect("lock").throttle_share = percent;
    }

    /// Requests of operation `name` (every one when `None`) seen so far: when, and whether
    /// the front answered it with throttling.
    pub fn seen(&self, name: Option<&str>) -> Vec<(std::time::Instant, bool)> {
        let rules = self.throttle.lock().expect("lock");
        rules.log.iter().filter(|(op, _, _)| name.is_none_or(|n| n == op)).map(|(_, t, th)| (*t, *th)).collect()
    }

    /// The JSON bodies of the requests sent to operation `name`, in order.
    pub fn requests(&self, name: &str) -> Vec<Value> {
        let recorded = self.recorded.lock().expect("lock");
        recorded.iter().filter(|(op, _)| op == name).map(|(_, body)| body.clone()).collect()
    }
}

async fn handle(
    req: Request<Incoming>,
    recorded: &Mutex<Vec<(String, Value)>>,
    throttle: &Mutex<Rules>,
    answers: &HashMap<&'static str, Answer>,
    client: &Client<HttpConnector, Full<Bytes>>,
    emulator: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("TrentService."))
        .unwrap_or_default()
        .to_owned();
    let failure = {
        let mut rules = throttle.lock().expect("lock");
        let mut failure = match rules.fail.get_mut(&op) {
            Some((n, status, code)) if *n > 0 => {
                *n -= 1;
                Some((*status, code.clone()))
            }
            _ => None,
        };
        let over_quota = rules.quotas.get(&op).is_some_and(|q| q.check().is_err());
        let share = rules.throttle_share;
        let first_attempt = share > 0 && {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&op, &body[..]).hash(&mut h);
            let h = h.finish();
            h % 100 < share && rules.seen.insert(h)
        };
        let too_many = rules.concurrency.is_some_and(|(max, _)| rules.in_flight >= max);
        if failure.is_none() && (over_quota || first_attempt || too_many) {
            failure = Some((400, "ThrottlingException".to_owned()));
        }
        let throttled = failure.as_ref().is_some_and(|(_, c)| c == "ThrottlingException");
        rules.log.push((op.clone(), std::time::Instant::now(), throttled));
        if failure.is_none() {
            rules.in_flight += 1;
        }
        failure
    };
    // Passed on: in flight until the answer is made (and held, when the front holds requests).
    let _in_flight = failure.is_none().then(|| InFlight(throttle));
    if let Some(hold) = failure.is_none().then(|| throttle.lock().expect("lock").concurrency.map(|(_, h)| h)).flatten()
    {
        tokio::time::sleep(hold).await;
    }
    if let Some((status, code)) = failure {
        let body = serde_json::json!({"__type": code, "message": format!("{code} from the test front")});
        return Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amzn-ErrorType", code.as_str())
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response");
    }
    if let Some(answer) = answers.get(op.as_str()) {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let out = answer(&json);
        recorded.lock().expect("lock").push((op, json));
        return Response::builder()
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(out.to_string())))
            .expect("response");
    }
    let uri = format!("{emulator}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let forward = forward.body(Full::new(body)).expect("request");
    match client.request(forward).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).expect("response"),
    }
}

/// A request the front passed on, counted in flight until dropped.
struct InFlight<'a>(&'a Mutex<Rules>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("lock").in_flight -= 1;
    }
}

//! An aws-sdk-kms interceptor that records every AWS KMS call in the Prometheus metrics: calls
//! by operation and outcome with their duration (retries included), and each HTTP attempt AWS
//! answered with throttling (which the SDK then retries while attempts remain). It also tells
//! the account and Region's adaptive in-flight limit (`quota::AdaptiveLimit`) how each attempt
//! went.

use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::metrics;

/// The interceptor of one client (the start time of a call lives in the call's config bag).
#[derive(Debug)]
pub(crate) struct AwsCallMetrics {
    /// The in-flight limit of the client's account and Region.
    pub(crate) in_flight: std::sync::Arc<super::quota::AdaptiveLimit>,
}

#[derive(Debug, Clone)]
struct Started(Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsCallMetrics {
    fn name(&self) -> &'static str {
        "keyward-aws-call-metrics"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().and_then(error_code).is_some_and(|c| is_throttling(&c)) {
            ::metrics::counter!(metrics::AWS_THROTTLED, "operation" => operation(cfg)).increment(1);
            self.in_flight.throttled();
        } else if context.response().is_some_and(|r| r.status().is_success()) {
            self.in_flight.succeeded();
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "ok".to_owned(),
            Some(Err(e)) if e.is_timeout_error() => "timeout".to_owned(),
            Some(Err(e)) if e.is_connector_error() => "unreachable".to_owned(),
            _ => context.response().and_then(error_code).unwrap_or_else(|| "error".to_owned()),
        };
        let op = operation(cfg);
        if let Some(Started(t)) = cfg.load::<Started>() {
            ::metrics::histogram!(metrics::AWS_DURATION, "operation" => op.clone()).record(t.elapsed().as_secs_f64());
        }
        ::metrics::counter!(metrics::AWS_CALLS, "operation" => op, "outcome" => outcome).increment(1);
        Ok(())
    }
}

/// The operation's name (`DescribeKey`), from the SDK's metadata of the call.
fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map_or_else(|| "unknown".to_owned(), |m| m.name().to_owned())
}

/// AWS's error code of an error answer: the `x-amzn-ErrorType` header or the JSON body's
/// `__type` (either may be `namespace#Code` or carry `:detail`), kept only when it looks like a
/// code (letters and digits, at most 64), so a label never carries arbitrary text. HTTP 429
/// without a code is `Throttling`.
fn error_code(resp: &HttpResponse) -> Option<String> {
    let status = resp.status().as_u16();
    if status < 400 {
        return None;
    }
    let from_header = resp.headers().get("x-amzn-errortype").map(str::to_owned);
    let from_body = || {
        let body = resp.body().bytes()?;
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        v.get("__type").and_then(|t| t.as_str()).map(str::to_owned)
    };
    let raw = from_header.or_else(from_body);
    let code = raw.as_deref().map(|r| r.rsplit('#').next().unwrap_or(r)).map(|c| c.split(':').next().unwrap_or(c));
    match code {
        Some(c) if !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric()) => {
            Some(c.to_owned())
        }
        _ if status == 429 => Some("Throttling".to_owned()),
        _ => Some(format!("http_{status}")),
    }
}

fn is_throttling(code: &str) -> bool {
    code.starts_with("Throttl") || code == "TooManyRequestsException" || code == "RequestLimitExceeded"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, header: Option<&str>, body: &str) -> HttpResponse {
        let mut r = http::Response::builder().status(status);
        if let Some(h) = header {
            r = r.header("x-amzn-ErrorType", h);
        }
        HttpResponse::try_from(r.body(aws_smithy_types::body::SdkBody::from(body.to_owned())).expect("response"))
            .expect("smithy response")
    }

    #[test]
    fn codes_from_header_or_body_and_only_codes() {
        assert_eq!(error_code(&resp(200, None, "{}")), None);
        assert_eq!(
            error_code(&resp(400, Some("ThrottlingException:http://x"), "")).as_deref(),
            Some("ThrottlingException")
        );
        let body = r#"{"__type":"com.amazonaws.kms#NotFoundException","message":"m"}"#;
        assert_eq!(error_code(&resp(400, None, body)).as_deref(), Some("NotFoundException"));
        assert_eq!(error_code(&resp(429, None, "slow down")).as_deref(), Some("Throttling"));
        assert_eq!(
            error_code(&resp(400, None, r#"{"__type":"has spaces and a secret"}"#)).as_deref(),
            Some("http_400")
        );
        assert!(
            is_throttling("ThrottlingException") && is_throttling("Throttling") && !is_throttling("NotFoundException")
        );
    }
}

//! keyward-server as a library: the tonic services, reflection and health, and [`serve`], which
//! the binary and the end-to-end tests both call.

mod access;
mod audit_service;
mod convert;
mod crypto_service;
mod group_service;
mod key_service;
mod principal_service;
mod status;
pub mod tls;

pub use access::{Rule, TABLE, identities_of};

use std::future::Future;

use keyward_proto::v1 as pb;
use keyward_shared::domain::Action;
use keyward_shared::{Ctx, Keyward};
use tokio::net::TcpListener;
use tonic::Status;

/// Request metadata carrying the caller's request id into the audit log; generated if absent.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Runs the body of a mutating RPC; a refusal is appended to the audit log before it is
/// returned (successes are recorded by the use case, inside the change's transaction).
pub(crate) async fn audited<T, F>(
    keyward: &Keyward,
    ctx: Ctx,
    action: Action,
    resource: &str,
    body: impl FnOnce(Ctx) -> F,
) -> Result<T, Status>
where
    F: Future<Output = Result<T, Status>>,
{
    let resource = convert::canonical_name(resource);
    let resource = resource.as_str();
    let caller = ctx.caller.clone();
    let result = body(ctx).await;
    if let Err(s) = &result {
        let ctx = keyward.ctx(caller);
        if let Err(e) = keyward.record_refusal(&ctx, action, resource, status::code_name(s.code()), s.message()).await {
            tracing::error!(error = %e, action = status::action_name(action), "could not append a refusal to the audit log");
        }
    }
    result
}

/// Serves Keyward's gRPC API, server reflection (v1 and v1alpha) and `grpc.health.v1.Health`
/// on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    keyward: Keyward,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_incoming(keyward, tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown).await
}

/// [`serve`] over TLS: each connection's handshake by `tls` (whose certificate
/// [`tls::Tls::reload`] replaces for the connections that follow).
pub async fn serve_tls(
    keyward: Keyward,
    listener: TcpListener,
    tls: &tls::Tls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_incoming(keyward, tls.incoming(listener), shutdown).await
}

/// Every service, on the connections `incoming` yields, until `shutdown`.
async fn serve_incoming<I, IO, IE>(
    keyward: Keyward,
    incoming: I,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::group_service_server::GroupServiceServer<group_service::GroupService>>().await;
    health_reporter.set_serving::<pb::key_service_server::KeyServiceServer<key_service::KeyService>>().await;
    health_reporter.set_serving::<pb::audit_service_server::AuditServiceServer<audit_service::AuditService>>().await;
    health_reporter
        .set_serving::<pb::crypto_service_server::CryptoServiceServer<crypto_service::CryptoService>>()
        .await;
    health_reporter
        .set_serving::<pb::principal_service_server::PrincipalServiceServer<principal_service::PrincipalService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(keyward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(keyward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(|inner| Edge { inner }))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::group_service_server::GroupServiceServer::new(group_service::GroupService {
            keyward: keyward.clone(),
        }))
        .add_service(pb::key_service_server::KeyServiceServer::new(key_service::KeyService {
            keyward: keyward.clone(),
        }))
        .add_service(pb::crypto_service_server::CryptoServiceServer::new(crypto_service::CryptoService {
            keyward: keyward.clone(),
        }))
        .add_service(pb::principal_service_server::PrincipalServiceServer::new(principal_service::PrincipalService {
            keyward: keyward.clone(),
        }))
        .add_service(pb::audit_service_server::AuditServiceServer::new(audit_service::AuditService { keyward }))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// What every response passes through on its way out:
/// - requests that are not valid protobuf for their method are the caller's error: tonic
///   answers them INTERNAL with the decoder's text; this answers INVALID_ARGUMENT without
///   library text;
/// - the request is counted in the metrics by method and code, with the time to its response
///   headers. The code is the headers' `grpc-status` (an error answer carries it there), else
///   OK; a stream that fails after its first message counts as OK. Paths the server does not
///   serve (UNIMPLEMENTED) are counted as method `other`, so a caller cannot grow the label set.
#[derive(Clone)]
struct Edge<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Edge<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (started, method) = (std::time::Instant::now(), req.uri().path().to_owned());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let headers = resp.headers_mut();
            let decode_error = headers.get("grpc-status").is_some_and(|v| v == "13")
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| m.starts_with("failed%20to%20decode") || m.contains("buffer%20underflow"));
            if decode_error {
                headers.insert("grpc-status", http::HeaderValue::from_static("3"));
                headers.insert(
                    "grpc-message",
                    http::HeaderValue::from_static(
                        "the%20request%20is%20not%20a%20valid%20message%20for%20this%20method",
                    ),
                );
                headers.remove("grpc-status-details-bin");
            }
            let code = headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("OK", |c| keyward_proto::code_name(tonic::Code::from(c)));
            let method = if code == "UNIMPLEMENTED" { "other" } else { method.as_str() };
            keyward_shared::metrics::grpc_request(method, code, started.elapsed());
            Ok(resp)
        })
    }
}

//! keyward-server as a library: the tonic services, reflection and health, and [`serve`], which
//! the binary and the end-to-end tests both call.

mod convert;
mod group_service;
mod key_service;
mod status;

use std::future::Future;

use keyward_proto::v1 as pb;
use keyward_shared::Keyward;
use tokio::net::TcpListener;
use tonic::Status;

/// Request metadata naming the caller until authentication exists; default `anonymous`.
pub const ACTOR_HEADER: &str = "x-keyward-actor";

/// The acting principal of a request: printable ASCII, at most 128 characters.
pub(crate) fn actor<T>(req: &tonic::Request<T>) -> Result<String, Status> {
    match req.metadata().get(ACTOR_HEADER) {
        None => Ok("anonymous".to_owned()),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s.to_owned()),
            _ => Err(status::invalid(ACTOR_HEADER, "1-128 printable ASCII characters without spaces")),
        },
    }
}

/// Serves Keyward's gRPC API, server reflection (v1 and v1alpha) and `grpc.health.v1.Health`
/// on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    keyward: Keyward,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::group_service_server::GroupServiceServer<group_service::GroupService>>().await;
    health_reporter.set_serving::<pb::key_service_server::KeyServiceServer<key_service::KeyService>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(keyward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(keyward_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::group_service_server::GroupServiceServer::new(group_service::GroupService {
            keyward: keyward.clone(),
        }))
        .add_service(pb::key_service_server::KeyServiceServer::new(key_service::KeyService { keyward }))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

//! The connection to the server: one tonic channel (plaintext, TLS or mutual TLS with rustls on
//! aws-lc-rs), every call carrying `authorization: Bearer <token>` when a token is set.

use std::time::Duration;

use keyward_proto::v1 as pb;
use secrecy::ExposeSecret;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Ctx, Failure, deepest_cause};
use crate::profile::Settings;

/// Adds the bearer token (marked sensitive: kept out of HTTP/2 header compression tables).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

pub type Conn = InterceptedService<Channel, Bearer>;

/// Clients of every service over one connection.
pub struct Client {
    conn: Conn,
    pub ctx: Ctx,
}

impl Client {
    /// Connects now, so an unreachable server is one clear error before any call.
    pub async fn connect(settings: &Settings) -> Result<Self, Failure> {
        let ctx = Ctx {
            addr: settings.addr.clone(),
            token_source: settings.token_source.clone(),
            tls: settings.tls.is_some(),
            identity: settings.tls.as_ref().is_some_and(|t| t.identity.is_some()),
        };
        let mut endpoint = Endpoint::from_shared(settings.addr.clone())
            .map_err(|e| Failure::new(format!("the server address {:?} is not a URL: {e}", settings.addr)))?
            .connect_timeout(Duration::from_secs(5))
            // A server that takes the connection and never answers: each call gives up (a
            // stream, once open, is watched by HTTP/2 pings instead).
            .timeout(settings.timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .user_agent(concat!("keyward-cli/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| Failure::new(format!("user agent: {e}")))?;
        if let Some(tls) = &settings.tls {
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca_file {
                Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "CA file")?)),
                None => config.with_webpki_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                config =
                    config.identity(Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?));
            }
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| Failure::new(format!("TLS settings: {}", deepest_cause(&e))))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Failure::unreachable(&ctx.addr, &deepest_cause(&e), ctx.tls, ctx.identity))?;
        let token = match &settings.token {
            Some(t) => {
                let mut v: MetadataValue<Ascii> = format!("Bearer {}", t.expose_secret()).parse().map_err(|_| {
                    Failure::new(format!(
                        "the API token from {} is not printable ASCII",
                        settings.token_source.as_deref().unwrap_or("?")
                    ))
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Self { conn: InterceptedService::new(channel, Bearer(token)), ctx })
    }

    pub fn groups(&self) -> pb::group_service_client::GroupServiceClient<Conn> {
        pb::group_service_client::GroupServiceClient::new(self.conn.clone())
    }

    pub fn keys(&self) -> pb::key_service_client::KeyServiceClient<Conn> {
        pb::key_service_client::KeyServiceClient::new(self.conn.clone())
    }

    pub fn audit(&self) -> pb::audit_service_client::AuditServiceClient<Conn> {
        pb::audit_service_client::AuditServiceClient::new(self.conn.clone())
    }

    pub fn principals(&self) -> pb::principal_service_client::PrincipalServiceClient<Conn> {
        pb::principal_service_client::PrincipalServiceClient::new(self.conn.clone())
    }

    /// A gRPC error as a [`Failure`] naming this server.
    pub fn fail(&self, status: tonic::Status) -> Failure {
        Failure::status(&status, &self.ctx)
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::new(format!("cannot read the {what} {}: {e}", path.display())))
}

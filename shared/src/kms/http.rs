//! The HTTP/TLS client the AWS KMS adapter runs on: hyper 1 + hyper-rustls with Keyward's own
//! rustls configuration (custom CA, mTLS, optional host-name check), bounded connection set-up,
//! and connector errors turned into messages a person can act on.
//!
//! Why not `aws-smithy-http-client`: its 1.5 builder takes no custom `rustls::ClientConfig`, so
//! it can neither present a client certificate nor skip the host-name check. This module
//! implements the SDK's [`HttpConnector`] itself and hands it to the SDK as a
//! [`SharedHttpClient`].
//!
//! TLS always uses rustls with the aws-lc-rs provider, given explicitly (never the process-wide
//! default, never ring). Plain `http://` endpoints (an emulator on loopback) work too.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;

use super::Error;
use crate::domain::AwsKmsConfig;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The TLS settings of one AWS KMS group, borrowed from its [`AwsKmsConfig`].
///
/// A PEM field that is `None` or only whitespace counts as not set. `Debug` never shows the
/// private key (`SecretString` prints as redacted).
#[derive(Debug, Clone, Copy)]
pub struct TlsOptions<'a> {
    /// PEM, one or more CA certificates. `None`: the public web PKI roots (webpki-roots) are
    /// trusted; set: **only** these certificates are trusted.
    pub ca_certificate_pem: Option<&'a str>,
    /// PEM chain presented for mutual TLS, leaf first. Must be set together with
    /// `client_private_key_pem`.
    pub client_certificate_pem: Option<&'a str>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the client certificate.
    pub client_private_key_pem: Option<&'a SecretString>,
    /// `true`: the server certificate must name the endpoint's host. `false`: the chain is still
    /// verified against the trust roots (and for expiry), only the name check is skipped.
    pub validate_host: bool,
}

impl<'a> TlsOptions<'a> {
    /// The TLS settings of `config`.
    pub fn from_config(config: &'a AwsKmsConfig) -> Self {
        Self {
            ca_certificate_pem: config.ca_certificate_pem.as_deref(),
            client_certificate_pem: config.client_certificate_pem.as_deref(),
            client_private_key_pem: config.client_private_key_pem.as_ref(),
            validate_host: config.validate_host,
        }
    }
}

/// The SDK [`HttpConnector`] of one AWS KMS group (wrapped by the quota buckets and shared by
/// every attempt of its client): a hyper 1 client (HTTP/1.1, and HTTP/2 when the server
/// offers it through ALPN) over rustls with the aws-lc-rs provider, for `http://` and `https://`
/// URIs, with a connection pool (idle connections are kept 90 s).
///
/// Failures reach the SDK as [`ConnectorError`]s keeping the whole source chain:
/// `timeout` when `connect_timeout` ran out (DNS + TCP + TLS) or hyper timed out; `io` for a
/// failed connection (refused, DNS, TLS, reset); `user` for a request hyper rejects; `other`
/// for the rest (an incomplete response is `other` with the transient kind, so it is retried).
/// [`describe_dispatch_failure`] turns them into a message.
///
/// # Errors
/// [`Error::Config`] when a PEM field cannot be used (the message names the field and never
/// contains key material) or `connect_timeout` is zero (it bounds DNS, TCP and TLS together).
pub fn http_connector(options: &TlsOptions<'_>, connect_timeout: Duration) -> Result<SharedHttpConnector, Error> {
    if connect_timeout.is_zero() {
        return Err(Error::Config("the connect timeout must be more than zero".to_owned()));
    }
    let tls = client_config(options)?;

    let mut tcp = TcpConnector::new();
    // hyper-rustls picks TLS or plain from the URI's scheme; the inner connector must allow both.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let bounded = BoundedConnector { inner: https, limit: connect_timeout };

    let mut builder = Client::builder(TokioExecutor::new());
    // A timer is needed for the pool's idle timeout to work.
    builder.pool_timer(TokioTimer::new());
    builder.pool_idle_timeout(Duration::from_secs(90));
    let client = builder.build(bounded);

    Ok(SharedHttpConnector::new(KmsHttpConnector { client }))
}

/// GETs `url` (`http://` or `https://` trusting the web PKI roots, with the host-name check):
/// the body of a 200 answer, at most `max_bytes`; the whole exchange bounded by `timeout`.
/// Used for an OIDC issuer's JWKS. The error says what failed, in words.
pub(crate) async fn get(url: &str, timeout: Duration, max_bytes: usize) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let shown = redacted(url);
    let url = url.trim();
    let uri: Uri = url.parse().map_err(|_| format!("{shown} is not a URL"))?;
    let options = TlsOptions {
        ca_certificate_pem: None,
        client_certificate_pem: None,
        client_private_key_pem: None,
        validate_host: true,
    };
    let tls = client_config(&options).map_err(|e| e.to_string())?;
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("{shown}: {e}"))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| describe_dispatch_failure(&e, url))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("{shown} answered HTTP {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|_| format!("reading {shown} failed (at most {max_bytes} bytes are read)"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("timed out fetching {shown}"))?
}

/// `url` for a message or a log line: scheme, host, port and path, without user info or query
/// (which may carry a token or a signature).
pub(crate) fn redacted(url: &str) -> String {
    match url.trim().parse::<Uri>() {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme_str().unwrap_or("?"),
            u.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// A message a person can act on for a connection failure reported by the connector of
/// [`http_connector`] (a `ConnectorError`, an SDK `DispatchFailure`, or any error wrapping
/// one). `endpoint` is the URL that was called; user info and query in it are not shown.
///
/// The source chain is walked (through `std::io::Error` payloads too) and the first match wins:
/// - a rustls error: `TLS: the server certificate is not signed by a trusted CA (<detail>)`,
///   `TLS: the server certificate does not match host <host> (turn validate_host off only if
///   you must)`, or `TLS: <rustls error>`;
/// - a timeout: `timed out connecting to <endpoint>`;
/// - `connection refused by <host:port>`;
/// - `DNS lookup failed for <host>`;
/// - otherwise `cannot reach <endpoint>: <innermost cause>`.
///
/// The texts come from rustls, hyper and the OS; none of them carries credentials.
pub fn describe_dispatch_failure(err: &(dyn StdError + 'static), endpoint: &str) -> String {
    let shown = display_endpoint(endpoint);
    let chain: Vec<&(dyn StdError + 'static)> = error_chain(err).collect();

    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return describe_tls(tls, endpoint);
    }
    if chain.iter().any(|e| is_timeout(*e)) {
        return format!("timed out connecting to {shown}");
    }
    let io_kind = |kind: std::io::ErrorKind| {
        chain.iter().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind))
    };
    if io_kind(std::io::ErrorKind::ConnectionRefused) {
        return format!("connection refused by {}", host_port(endpoint));
    }
    if chain.iter().any(|e| is_dns_failure(*e)) {
        return format!("DNS lookup failed for {}", host(endpoint));
    }
    format!("cannot reach {shown}: {}", short_cause(&chain))
}

/// The connect phase (DNS + TCP + TLS) did not finish within the connect timeout.
#[derive(Debug)]
struct ConnectTimedOut {
    limit: Duration,
}

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection set-up (DNS, TCP, TLS) did not finish within {:?}", self.limit)
    }
}

impl StdError for ConnectTimedOut {}

/// hyper-rustls' connector with one deadline over the whole connection set-up. hyper-util's
/// own connect timeout covers only TCP; a listener that accepts but never speaks TLS would hang.
#[derive(Clone)]
struct BoundedConnector {
    inner: HttpsConnector<TcpConnector>,
    limit: Duration,
}

type Connecting = Pin<Box<dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for BoundedConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = self.limit;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Box::new(ConnectTimedOut { limit }) as BoxError),
            }
        })
    }
}

/// The SDK-facing connector.
#[derive(Clone)]
struct KmsHttpConnector {
    client: Client<BoundedConnector, SdkBody>,
}

impl fmt::Debug for KmsHttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KmsHttpConnector")
    }
}

impl HttpConnector for KmsHttpConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let responding = self.client.request(request);
        HttpConnectorFuture::new(async move {
            match responding.await {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|err| ConnectorError::other(err.into(), None)),
                Err(err) => Err(to_connector_error(err)),
            }
        })
    }
}

/// Classifies a hyper-util client error for the SDK's retry logic, keeping it as the source.
fn to_connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let timed_out = error_chain(&err).any(is_timeout);
    let connect = err.is_connect();
    let hyper = error_chain(&err)
        .find_map(|e| e.downcast_ref::<hyper::Error>())
        .map(|h| (h.is_user(), h.is_closed() || h.is_canceled(), h.is_incomplete_message()));
    let io = error_chain(&err).any(|e| e.is::<std::io::Error>());
    let source: BoxError = Box::new(err);
    if timed_out {
        return ConnectorError::timeout(source);
    }
    if connect {
        return ConnectorError::io(source).never_connected();
    }
    match hyper {
        Some((true, _, _)) => ConnectorError::user(source),
        Some((_, true, _)) => ConnectorError::io(source),
        Some((_, _, true)) => ConnectorError::other(source, Some(ErrorKind::TransientError)),
        _ if io => ConnectorError::io(source),
        _ => ConnectorError::other(source, None),
    }
}

/// Builds the rustls configuration of `options` with the aws-lc-rs provider.
fn client_config(options: &TlsOptions<'_>) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = Arc::new(trust_roots(options.ca_certificate_pem)?);

    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Config(format!("TLS: {err}")))?;
    let builder = if options.validate_host {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|err| Error::Config(format!("ca_certificate_pem: {err}")))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyNameVerifier { inner }))
    };

    let certificate = non_blank(options.client_certificate_pem);
    let key = options.client_private_key_pem.filter(|key| !key.expose_secret().trim().is_empty());
    match (certificate, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(certificate), Some(key)) => {
            let chain = certificates(certificate, "client_certificate_pem")?;
            let key = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes()).map_err(|err| {
                Error::Config(match err {
                    rustls::pki_types::pem::Error::NoItemsFound => {
                        "client_private_key_pem: no private key found (expected PEM PKCS#8, PKCS#1 or SEC1)".to_owned()
                    }
                    // Other PEM errors may quote a line of the key: never shown.
                    _ => "client_private_key_pem: not valid PEM".to_owned(),
                })
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|err| {
                // rustls' messages here name the problem (unsupported key, key/cert mismatch),
                // never the key.
                Error::Config(format!("client_private_key_pem: cannot be used with client_certificate_pem ({err})"))
            })
        }
        (Some(_), None) => Err(Error::Config(
            "client_private_key_pem is not set: a client certificate needs its private key".to_owned(),
        )),
        (None, Some(_)) => Err(Error::Config(
            "client_certificate_pem is not set: a client private key needs its certificate".to_owned(),
        )),
    }
}

/// `ca_pem`'s certificates, or the public web PKI roots when it is not set.
fn trust_roots(ca_pem: Option<&str>) -> Result<RootCertStore, Error> {
    let Some(ca_pem) = non_blank(ca_pem) else {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates(ca_pem, "ca_certificate_pem")?.into_iter().enumerate() {
        roots.add(certificate).map_err(|err| {
            Error::Config(format!("ca_certificate_pem: certificate {} cannot be a trust anchor ({err})", index + 1))
        })?;
    }
    Ok(roots)
}

/// Every `CERTIFICATE` section of `pem`; at least one.
fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Config(format!("{field}: not valid PEM")))?;
    if certificates.is_empty() {
        return Err(Error::Config(format!("{field}: no certificate found")));
    }
    Ok(certificates)
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.trim().is_empty())
}

/// WebPKI verification (chain to the trust roots, validity period, signatures) that accepts a
/// certificate for another name. Used only when `validate_host` is off.
#[derive(Debug)]
struct AnyNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // WebPkiServerVerifier checks the name last, after the chain: a name error means the
        // chain is good.
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `error`, then each error below it. After a `std::io::Error` the next one is its payload
/// (`get_ref`), because `io::Error::source` skips the payload.
fn error_chain<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&error| match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|payload| payload as &(dyn StdError + 'static)),
        None => error.source(),
    })
}

fn is_timeout(error: &(dyn StdError + 'static)) -> bool {
    error.is::<ConnectTimedOut>()
        || error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        || error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
        || error.downcast_ref::<ConnectorError>().is_some_and(ConnectorError::is_timeout)
}

/// hyper-util reports resolver failures as a `ConnectError` whose text is "dns error"; the OS
/// text below it varies ("failed to lookup address information", "Name or service not known").
fn is_dns_failure(error: &(dyn StdError + 'static)) -> bool {
    let text = error.to_string();
    text == "dns error" || text.contains("failed to lookup address") || text.contains("Name or service not known")
}

fn describe_tls(error: &rustls::Error, endpoint: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            format!("TLS: the server certificate is not signed by a trusted CA ({error})")
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS: the server certificate does not match host {} (turn validate_host off only if you must)",
            host(endpoint)
        ),
        rustls::Error::InvalidCertificate(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            format!(
                "TLS: the server presents a CA certificate as its own certificate; it needs a server certificate \
             issued by that CA ({error})"
            )
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            format!("TLS: {error} (the server wants a client certificate)")
        }
        rustls::Error::InvalidMessage(_) => {
            format!("TLS: {error} (does the endpoint speak plain http?)")
        }
        other => format!("TLS: {other}"),
    }
}

/// The innermost cause with a text, at most 200 characters.
fn short_cause(chain: &[&(dyn StdError + 'static)]) -> String {
    let text = chain.iter().rev().map(|e| e.to_string()).find(|t| !t.trim().is_empty()).unwrap_or_default();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `scheme://host[:port]` of `endpoint` (no user info, path or query); when it does not parse,
/// the text after any `user@`.
fn display_endpoint(endpoint: &str) -> String {
    match endpoint.parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            },
            _ => strip_user_info(endpoint).to_owned(),
        },
        Err(_) => strip_user_info(endpoint).to_owned(),
    }
}

fn strip_user_info(endpoint: &str) -> &str {
    match endpoint.rsplit_once('@') {
        Some((_, rest)) => rest,
        None => endpoint,
    }
}

fn host(endpoint: &str) -> String {
    match endpoint.parse::<Uri>() {
        Ok(uri) => uri.host().map(str::to_owned).unwrap_or_else(|| display_endpoint(endpoint)),
        Err(_) => display_endpoint(endpoint),
    }
}

/// `host:port`, with the scheme's default port when none is given.
fn host_port(endpoint: &str) -> String {
    match endpoint.parse::<Uri>() {
        Ok(uri) => {
            let port = uri.port_u16().or(match uri.scheme_str() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => None,
            });
            match (uri.host(), port) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                _ => display_endpoint(endpoint),
            }
        }
        Err(_) => display_endpoint(endpoint),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;
    use std::time::Instant;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{RootCertStore, ServerConfig};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
        }

        fn pem(&self) -> String {
            self.issuer.pem()
        }

        fn der(&self) -> CertificateDer<'static> {
            self.issuer.der().clone()
        }

        /// A leaf for `names` (DNS names or IP addresses): (chain PEM, key PEM).
        fn leaf(&self, names: &[&str]) -> (String, String) {
            let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &*self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    fn options<'a>(ca: Option<&'a str>, validate_host: bool) -> TlsOptions<'a> {
        TlsOptions { ca_certificate_pem: ca, client_certificate_pem: None, client_private_key_pem: None, validate_host }
    }

    /// Reads one request head and answers a minimal HTTP/1.1 200.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let _ = stream.shutdown().await;
    }

    /// A TLS server on 127.0.0.1 presenting `chain_pem`; with `client_ca`, it requires a client
    /// certificate issued by it.
    async fn tls_server(chain_pem: &str, key_pem: &str, client_ca: Option<CertificateDer<'static>>) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder =
            ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(builder.with_single_cert(chain, key).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        answer(tls).await;
                    }
                });
            }
        });
        addr
    }

    /// A plain-HTTP server on 127.0.0.1.
    async fn http_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(answer(tcp));
            }
        });
        addr
    }

    /// POSTs `{}` to `url` through the connector of `options`.
    async fn post(options: &TlsOptions<'_>, url: &str) -> Result<u16, ConnectorError> {
        let connector = http_connector(options, TIMEOUT).unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-amz-json-1.1")
            .body(SdkBody::from("{}"))
            .unwrap();
        let response = connector.call(HttpRequest::try_from(request).unwrap()).await?;
        Ok(response.status().as_u16())
    }

    fn describe(err: &ConnectorError, url: &str) -> String {
        describe_dispatch_failure(err, url)
    }

    #[tokio::test]
    async fn trusted_ca_connects() {
        let ca = Ca::new("Keyward test CA");
        let (chain, key) = ca.leaf(&["127.0.0.1", "localhost"]);
        let addr = tls_server(&chain, &key, None).await;
        let ca_pem = ca.pem();
        assert_eq!(
            post(&options(Some(&ca_pem), true), &format!("https://127.0.0.1:{}/", addr.port())).await.unwrap(),
            200
        );
        assert_eq!(
            post(&options(Some(&ca_pem), true), &format!("https://localhost:{}/", addr.port())).await.unwrap(),
            200
        );
    }

    #[tokio::test]
    async fn plain_http_connects() {
        let addr = http_server().await;
        assert_eq!(post(&options(None, true), &format!("http://{addr}/")).await.unwrap(), 200);
    }

    #[tokio::test]
    async fn untrusted_ca_is_named() {
        let server_ca = Ca::new("server CA");
        let other_ca = Ca::new("another CA").pem();
        let (chain, key) = server_ca.leaf(&["127.0.0.1"]);
        let addr = tls_server(&chain, &key, None).await;
        let url = format!("https://127.0.0.1:{}/", addr.port());
        for ca in [Some(other_ca.as_str()), None] {
            // Only the other CA, or the public roots: neither knows the server's CA.
            let err = post(&options(ca, true), &url).await.unwrap_err();
            assert!(err.is_io(), "{err:?}");
            let message = describe(&err, &url);
            assert!(message.starts_with("TLS: the server certificate is not signed by a trusted CA ("), "{message}");
        }
    }

    #[tokio::test]
    async fn host_mismatch_fails_unless_validate_host_is_off() {
        let ca = Ca::new("Keyward test CA");
        let (chain, key) = ca.leaf(&["kms.other.example"]);
        let addr = tls_server(&chain, &key, None).await;
        let ca_pem = ca.pem();
        let url = format!("https://127.0.0.1:{}/", addr.port());

        let err = post(&options(Some(&ca_pem), true), &url).await.unwrap_err();
        assert_eq!(
            describe(&err, &url),
            "TLS: the server certificate does not match host 127.0.0.1 (turn validate_host off only if you must)"
        );
        assert_eq!(post(&options(Some(&ca_pem), false), &url).await.unwrap(), 200);

        // validate_host off still verifies the chain.
        let other_ca = Ca::new("another CA").pem();
        let err = post(&options(Some(&other_ca), false), &url).await.unwrap_err();
        assert!(describe(&err, &url).contains("not signed by a trusted CA"), "{}", describe(&err, &url));
    }

    #[tokio::test]
    async fn client_certificate_is_presented() {
        let ca = Ca::new("Keyward test CA");
        let (chain, key) = ca.leaf(&["127.0.0.1"]);
        let client_ca = Ca::new("client CA");
        let (client_chain, client_key) = client_ca.leaf(&["keyward-client"]);
        let addr = tls_server(&chain, &key, Some(client_ca.der())).await;
        let ca_pem = ca.pem();
        let url = format!("https://127.0.0.1:{}/", addr.port());

        let client_key = SecretString::from(client_key);
        let mtls = TlsOptions {
            client_certificate_pem: Some(&client_chain),
            client_private_key_pem: Some(&client_key),
            ..options(Some(&ca_pem), true)
        };
        assert_eq!(post(&mtls, &url).await.unwrap(), 200);

        let err = post(&options(Some(&ca_pem), true), &url).await.unwrap_err();
        let message = describe(&err, &url);
        assert!(message.starts_with("TLS: received fatal alert: CertificateRequired"), "{message}");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let err = post(&options(None, true), &url).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
        assert_eq!(describe(&err, &url), format!("connection refused by 127.0.0.1:{port}"));
    }

    #[tokio::test]
    async fn silent_listener_times_out() {
        // Accepts TCP, never speaks TLS.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let url = format!("https://127.0.0.1:{port}/");
        let started = Instant::now();
        let err = post(&options(None, true), &url).await.unwrap_err();
        let elapsed = started.elapsed();
        held.abort();
        assert!(err.is_timeout(), "{err:?}");
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "{elapsed:?}");
        assert_eq!(describe(&err, &url), format!("timed out connecting to https://127.0.0.1:{port}"));
    }

    #[tokio::test]
    async fn unknown_host_is_a_dns_failure() {
        let url = "http://keyward-test.invalid/";
        let err = post(&options(None, true), url).await.unwrap_err();
        assert!(err.is_io() || err.is_timeout(), "{err:?}");
        let message = describe(&err, url);
        // A resolver that does not answer within the timeout gives the timeout message instead.
        assert!(
            message == "DNS lookup failed for keyward-test.invalid" || message.starts_with("timed out connecting to"),
            "{message}"
        );
    }

    #[test]
    fn bad_pem_names_the_field() {
        let config_error = |options: TlsOptions<'_>| match http_connector(&options, TIMEOUT) {
            Err(Error::Config(message)) => message,
            other => panic!("expected a Config error, got {other:?}"),
        };
        assert_eq!(config_error(options(Some("not a certificate"), true)), "ca_certificate_pem: no certificate found");
        assert_eq!(
            config_error(options(Some("-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n"), true)),
            "ca_certificate_pem: not valid PEM"
        );

        let ca = Ca::new("Keyward test CA");
        let (chain, key) = ca.leaf(&["keyward-client"]);
        let secret_line = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        let bad_key = SecretString::from(format!("-----BEGIN PRIVATE KEY-----\n{secret_line}\n"));
        let message = config_error(TlsOptions {
            client_certificate_pem: Some(&chain),
            client_private_key_pem: Some(&bad_key),
            ..options(None, true)
        });
        assert!(message.starts_with("client_private_key_pem: "), "{message}");
        assert!(!message.contains(secret_line), "{message}");

        let other_key = SecretString::from(ca.leaf(&["x"]).1);
        let message = config_error(TlsOptions {
            client_certificate_pem: Some(&chain),
            client_private_key_pem: Some(&other_key),
            ..options(None, true)
        });
        assert!(message.starts_with("client_private_key_pem: cannot be used with client_certificate_pem"), "{message}");

        let key = SecretString::from(key);
        let message = config_error(TlsOptions { client_private_key_pem: Some(&key), ..options(None, true) });
        assert!(message.starts_with("client_certificate_pem is not set"), "{message}");
        let message = config_error(TlsOptions { client_certificate_pem: Some(&chain), ..options(None, true) });
        assert!(message.starts_with("client_private_key_pem is not set"), "{message}");
        let message = config_error(TlsOptions { client_certificate_pem: Some("junk"), ..options(None, true) });
        assert!(message.starts_with("client_private_key_pem is not set"), "{message}");
        let message = config_error(TlsOptions {
            client_certificate_pem: Some("junk"),
            client_private_key_pem: Some(&key),
            ..options(None, true)
        });
        assert_eq!(message, "client_certificate_pem: no certificate found");

        // Blank means not set: public roots.
        assert!(http_connector(&options(Some("  \n"), true), TIMEOUT).is_ok());
    }

    #[test]
    fn endpoint_shown_without_user_info() {
        assert_eq!(display_endpoint("https://user:pw@kms.example:8443/x?y=1"), "https://kms.example:8443");
        assert_eq!(host_port("https://kms.eu-west-1.amazonaws.com"), "kms.eu-west-1.amazonaws.com:443");
        assert_eq!(host_port("http://127.0.0.1:4566"), "127.0.0.1:4566");
    }
}

//! Loopback endpoints for connection tests: a TLS front for the (plain-HTTP) KMS emulator with
//! its own test CA, optional mutual TLS and a chosen certificate host name, plus a closed port
//! and a listener that never answers.
//!
//! The front terminates TLS with tokio-rustls (aws-lc-rs provider, never ring) and copies bytes
//! both ways to the emulator's TCP port, so a group pointed at [`TlsFront::url`] really talks to
//! the emulator over TLS. Certificates come from rcgen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test certificate authority (self-signed, made fresh each time).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA whose subject common name is `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA") }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as `127.0.0.1`).
    pub fn server_cert(&self, names: &[&str]) -> CertAndKey {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS) with common name `name`.
    pub fn client_cert(&self, name: &str) -> CertAndKey {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A client certificate with common name `name` and the URI SAN `uri` (a SPIFFE ID).
    pub fn spiffe_client_cert(&self, name: &str, uri: &str) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().expect("an IA5 URI")));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A client certificate with common name `name` that expired yesterday.
    pub fn expired_client_cert(&self, name: &str) -> CertAndKey {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertAndKey {
        let (cert, key) = self.issue(names, usage);
        CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A server certificate for `names`, as rustls takes it.
    fn server_cert_der(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (cert, key) = self.issue(names, ExtendedKeyUsagePurpose::ServerAuth);
        (vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (rcgen::Certificate, KeyPair) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("leaf params");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert, key)
    }
}

/// How a [`TlsFront`] is set up. The default: certificate for `localhost` and `127.0.0.1`, URL
/// host `localhost`, no client certificate required.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    /// Names on the server certificate (DNS names or IP addresses).
    pub cert_names: Vec<String>,
    /// Host in [`TlsFront::url`]: `localhost` or `127.0.0.1` (the front listens on 127.0.0.1).
    pub url_host: String,
    /// Require a client certificate issued by the front's CA (mutual TLS); one is made and
    /// exposed as [`TlsFront::client`].
    pub require_client_cert: bool,
}

impl Default for FrontOptions {
    fn default() -> Self {
        Self {
            cert_names: vec!["localhost".into(), "127.0.0.1".into()],
            url_host: "localhost".into(),
            require_client_cert: false,
        }
    }
}

impl FrontOptions {
    /// The server certificate names only `host` (e.g. `other.example`, so it does not match
    /// the URL's `localhost`).
    pub fn cert_for(host: &str) -> Self {
        Self { cert_names: vec![host.to_owned()], ..Self::default() }
    }

    /// The default front, requiring a client certificate (mutual TLS).
    pub fn mutual_tls() -> Self {
        Self { require_client_cert: true, ..Self::default() }
    }
}

/// A TLS-terminating proxy on 127.0.0.1 in front of a plain-HTTP upstream. Stops when dropped.
pub struct TlsFront {
    /// `https://<url_host>:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    /// The CA that issued the server certificate (and the client certificate), PEM.
    pub ca_pem: String,
    /// With [`FrontOptions::require_client_cert`]: a client certificate the front accepts.
    pub client: Option<CertAndKey>,
    handshakes: Arc<AtomicUsize>,
    failed_handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for `upstream` (`http://127.0.0.1:PORT`). Call inside a Tokio runtime.
    pub fn start(upstream: &str, opts: FrontOptions) -> Self {
        let upstream = upstream.trim_end_matches('/');
        let upstream = upstream.strip_prefix("http://").unwrap_or(upstream).to_owned();
        let ca = TestCa::new("Keyward test front CA");
        let names: Vec<&str> = opts.cert_names.iter().map(String::as_str).collect();
        let (chain, key) = ca.server_cert_der(&names);

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let (builder, client) = if opts.require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).expect("client CA root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            (builder.with_client_cert_verifier(verifier), Some(ca.client_cert("keyward-client")))
        } else {
            (builder.with_no_client_auth(), None)
        };
        let config = builder.with_single_cert(chain, key).expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TLS front");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("front addr");
        let listener = TcpListener::from_std(std_listener).expect("tokio listener (inside a runtime?)");

        let handshakes = Arc::new(AtomicUsize::new(0));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (ok, failed) = (handshakes.clone(), failed_handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let (ok, failed) = (ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            tracing::debug!(error = %e, "TLS front: handshake failed");
                            return;
                        }
                    };
                    ok.fetch_add(1, Ordering::SeqCst);
                    match TcpStream::connect(&upstream).await {
                        Ok(mut up) => {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, %upstream, "TLS front: upstream unreachable")
                        }
                    }
                });
            }
        });

        Self {
            url: format!("https://{}:{}", opts.url_host, addr.port()),
            addr,
            ca_pem: ca.pem(),
            client,
            handshakes,
            failed_handshakes,
            task,
        }
    }

    /// TLS handshakes completed so far (from the server's side).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far (from the server's side; a client that rejects the
    /// server certificate counts here too).
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `http://127.0.0.1:PORT` of a port nothing listens on (bound, then released): connecting is
/// refused.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A TCP listener on 127.0.0.1 that accepts connections and never sends a byte. Keep it alive
/// for the test: dropping it closes the port and every accepted connection.
pub struct SilentListener {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentListener {
    /// `https://127.0.0.1:PORT`: a TLS handshake never completes.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the request is sent, no response ever comes.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`SilentListener`]. Call inside a Tokio runtime.
pub fn silent_listener() -> SilentListener {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let listener = TcpListener::from_std(std_listener).expect("tokio listener (inside a runtime?)");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    SilentListener { addr, task }
}

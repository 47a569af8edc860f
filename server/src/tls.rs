//! The server's TLS: rustls (aws-lc-rs provider) from PEM certificate and key files, taken again
//! from the files on [`Tls::reload`] (the binary calls it on SIGHUP) without dropping open
//! connections — the next handshake gets the new certificate; client certificates none, optional
//! or required, checked against a CA bundle. Connections are accepted with tokio-rustls and
//! handed to tonic, which puts the peer's certificates into each request's extensions.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Checked when presented.
    Optional,
    Required,
}

impl ClientAuth {
    /// `none`, `optional` or `required`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// Where the server's TLS comes from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle for client certificates (with `client_auth` optional or required).
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The certificate in use, replaced by [`Tls::reload`].
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// A TLS acceptor whose certificate can be taken again from its files.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

fn certified_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", files.cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{}: no certificate in it", files.cert.display());
    }
    // The key's parse error is not shown: it could quote key bytes.
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|_| anyhow::anyhow!("{}: not a PEM private key", files.key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("{}: unusable private key: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!("{} and {} do not belong together: {e}", files.cert.display(), files.key.display())
    })?;
    Ok(certified)
}

impl Tls {
    /// Reads the files and builds the acceptor (HTTP/2 by ALPN); errors name the file.
    pub fn new(files: TlsFiles) -> anyhow::Result<Self> {
        let current = Arc::new(Current(RwLock::new(Arc::new(certified_key(&files)?))));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match files.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let Some(ca) = &files.client_ca else {
                    anyhow::bail!("client certificates {auth:?} need a client CA bundle (tls_client_ca_file)");
                };
                let pem = std::fs::read(ca).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| anyhow::anyhow!("{}: not a PEM bundle: {e}", ca.display()))?;
                    roots.add(c).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    anyhow::bail!("{}: no CA certificate in it", ca.display());
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build()?)
            }
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self { files, current, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Takes the certificate and key from the files again; on an error the one in use stays.
    /// Open connections keep theirs; the next handshake gets the new one.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(&self.files)?);
        if let Ok(mut slot) = self.current.0.write() {
            *slot = key;
        }
        Ok(())
    }

    /// Accepts TCP connections and their TLS handshakes (each in its own task, at most 10 s),
    /// as a stream for tonic. A failed handshake is logged at debug and dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

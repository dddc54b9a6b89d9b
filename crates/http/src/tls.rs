//! TLS termination with rustls (ring): TLS 1.3 and 1.2 with rustls's
//! default suites (ECDHE and AEAD only), HTTP/2 and HTTP/1.1 by ALPN, and
//! the certificate reloaded when its files change, without dropping a
//! connection: each handshake picks up whichever certificate is current.
//!
//! Changes are found by polling the files' metadata once a second rather
//! than by inotify: certificate managers (cert-manager, Kubernetes secret
//! volumes) swap a symlinked directory, which a poll of the resolved files
//! sees the same way as an edit in place, and one `stat` a second per file
//! costs nothing.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use wedge_manifest::TlsFiles;

/// A TLS acceptor whose certificate can change under it.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
    files: TlsFiles,
}

#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM chain and key; `Err` names the file and what is wrong.
fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert_file = files.cert.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{cert_file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{cert_file}: no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "{}: {e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("{} does not fit {cert_file}: {e}", files.key.display()))
}

impl Tls {
    /// Loads the certificate and builds the acceptor.
    pub fn new(files: &TlsFiles) -> Result<Tls, String> {
        let current = Arc::new(Current(ArcSwap::from_pointee(load(files)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            files: files.clone(),
        })
    }

    /// Performs the server side of a handshake.
    pub fn accept(&self, stream: TcpStream) -> tokio_rustls::Accept<TcpStream> {
        self.acceptor.accept(stream)
    }

    /// Reloads the certificate whenever its files change, until dropped.
    /// A broken new pair is logged and the previous one kept.
    pub async fn watch(self, every: Duration) {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = (stamp(&self.files.cert), stamp(&self.files.key));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = (stamp(&self.files.cert), stamp(&self.files.key));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.files) {
                Ok(key) => {
                    self.current.0.store(Arc::new(key));
                    wedge_observe::log::line(
                        "info",
                        "-",
                        "-",
                        &format!("tls: reloaded {}", self.files.cert.display()),
                    );
                }
                Err(e) => wedge_observe::log::line(
                    "warn",
                    "-",
                    "-",
                    &format!("tls: keeping the previous certificate: {e}"),
                ),
            }
        }
    }
}

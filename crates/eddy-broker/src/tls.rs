//! TLS on the broker's listener, and the settings of its links to other
//! brokers. The certificate and key are read again when their contents
//! change, so a renewed certificate takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_proto::ClientTls;
use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::error::BrokerError;

/// The files of a broker's TLS set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This broker's certificate chain (PEM), the leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signed the brokers' certificates (PEM): this broker
    /// checks the other brokers, and its own worker checks it, against it.
    pub ca: PathBuf,
    /// If set, clients may present a certificate signed by this CA
    /// (mutual TLS); a client presenting any other is refused.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// TLS for this broker's connections to brokers (its own included),
    /// presenting its own certificate when clients may present one.
    pub fn client(&self) -> Result<ClientTls, BrokerError> {
        let identity = self
            .client_ca
            .as_ref()
            .map(|_| (self.cert.as_path(), self.key.as_path()));
        ClientTls::from_files(&self.ca, identity).map_err(BrokerError::InvalidRequest)
    }
}

/// rustls over *ring*, as tonic's client side uses (`tls-ring`): a pure
/// build, where aws-lc-rs would compile C. rustls marks it deprecated for
/// lacking post-quantum key exchange; the classical suites it has are
/// rustls's safe defaults.
#[allow(deprecated)]
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Accepts TLS connections with the current certificate.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<ReloadingCert>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.certificate.cert_path)
            .finish()
    }
}

impl Tls {
    /// For the gRPC listener (HTTP/2 by ALPN).
    pub fn new(files: &TlsFiles) -> Result<Tls, BrokerError> {
        Tls::with_alpn(files, vec![b"h2".to_vec()])
    }

    /// For the Kafka listener: the same certificate, client CA and
    /// reloading; Kafka clients negotiate no application protocol.
    pub fn for_kafka(files: &TlsFiles) -> Result<Tls, BrokerError> {
        Tls::with_alpn(files, Vec::new())
    }

    fn with_alpn(files: &TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Tls, BrokerError> {
        let provider = Arc::new(crypto_provider());
        let certificate = Arc::new(ReloadingCert::load(files, &provider)?);
        let verifier = match &files.client_ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(path, "client CA")? {
                    roots.add(cert).map_err(|e| {
                        invalid(format!(
                            "{} is not a usable CA certificate: {e}",
                            path.display()
                        ))
                    })?;
                }
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| invalid(format!("client CA {}: {e}", path.display())))?
            }
            None => WebPkiClientVerifier::no_client_auth(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = alpn;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// Loads the certificate and key again if either file changed; a pair
    /// that does not load is logged and the one in use kept.
    pub fn reload_if_changed(&self) {
        self.certificate.reload_if_changed();
    }
}

/// How often a listener's certificate files are checked for a change.
const CERT_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a listener's certificate again whenever its files change.
pub async fn reload_certificates(tls: Tls) {
    let mut tick = tokio::time::interval(CERT_RELOAD_INTERVAL);
    loop {
        tick.tick().await;
        let t = tls.clone();
        // Reading files blocks; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
    }
}

/// The certificate the listener presents, swapped when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The pair in use, and a digest of the files it was read from.
    current: Mutex<(Arc<CertifiedKey>, [u8; 32])>,
}

impl ReloadingCert {
    fn load(
        files: &TlsFiles,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ReloadingCert, BrokerError> {
        let key = load_pair(&files.cert, &files.key, provider)?;
        Ok(ReloadingCert {
            cert_path: files.cert.clone(),
            key_path: files.key.clone(),
            provider: provider.clone(),
            current: Mutex::new((key, digest(&files.cert, &files.key))),
        })
    }

    fn reload_if_changed(&self) {
        // Contents, not modification times: those can be too coarse to
        // tell two quick writes apart, or copied over with `cp -p`.
        let stamp = digest(&self.cert_path, &self.key_path);
        if stamp == self.current.lock().1 {
            return;
        }
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                *self.current.lock() = (key, stamp);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the one in use");
                // Said once per change, not every check.
                self.current.lock().1 = stamp;
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.lock().0.clone())
    }
}

/// A digest of both files' contents (of nothing for a file not read).
fn digest(cert: &Path, key: &Path) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for path in [cert, key] {
        let bytes = std::fs::read(path).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().into()
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, BrokerError> {
    let chain = read_certs(cert, "certificate")?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        invalid(format!(
            "cannot read a PEM private key from {}: {e}",
            key.display()
        ))
    })?;
    let pair = CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        invalid(format!(
            "{} and {} are not a certificate and its key: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    Ok(Arc::new(pair))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            invalid(format!(
                "cannot read the TLS {what} {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "the TLS {what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The common name of a certificate's subject: who a client certificate
/// says its holder is.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_string())
}

fn invalid(message: String) -> BrokerError {
    BrokerError::InvalidRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 written to `dir`.
    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().to_vec())
    }

    fn served(tls: &Tls) -> Vec<u8> {
        tls.certificate.current.lock().0.cert[0].to_vec()
    }

    #[test]
    fn a_renewed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, first) = write_pair(dir.path(), "broker");
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: cert.clone(),
            client_ca: None,
        };
        let tls = Tls::new(&files).unwrap();
        assert_eq!(served(&tls), first);
        tls.reload_if_changed();
        assert_eq!(served(&tls), first, "unchanged files are not read again");

        let (new_cert, new_key, second) = write_pair(dir.path(), "renewed");
        std::fs::rename(&new_cert, &cert).unwrap();
        std::fs::rename(&new_key, &key).unwrap();
        tls.reload_if_changed();
        assert_eq!(served(&tls), second, "the renewed certificate is served");

        std::fs::write(&cert, "not a certificate").unwrap();
        tls.reload_if_changed();
        assert_eq!(served(&tls), second, "a broken file keeps the one in use");
    }
}

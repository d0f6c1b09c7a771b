//! TLS on the broker's listener, and the settings of its links to other
//! brokers. The certificate and key are read again when their files
//! change, so a renewed certificate takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

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
pub(crate) struct Tls {
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
    pub fn new(files: &TlsFiles) -> Result<Tls, BrokerError> {
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
        config.alpn_protocols = vec![b"h2".to_vec()];
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

/// The certificate the listener presents, swapped when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<(Arc<CertifiedKey>, Option<SystemTime>)>,
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
            current: Mutex::new((key, modified(&files.cert, &files.key))),
        })
    }

    fn reload_if_changed(&self) {
        let stamp = modified(&self.cert_path, &self.key_path);
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
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.lock().0.clone())
    }
}

/// The later of the two files' modification times.
fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    time(cert).max(time(key))
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
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_string())
}

fn invalid(message: String) -> BrokerError {
    BrokerError::InvalidRequest(message)
}

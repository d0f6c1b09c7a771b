//! Certificates for TLS tests, made fresh in a directory: a CA, broker
//! certificates it signs for 127.0.0.1 and localhost, and client
//! certificates for mutual TLS.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority that writes what it signs into `dir`.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate (PEM), to give to whoever checks what it signed.
    pub cert: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/name-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write CA certificate");
        Ca {
            issuer,
            dir: dir.to_path_buf(),
            cert,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, named `name`.
    pub fn server(&self, name: &str) -> Pair {
        self.sign(
            name,
            vec!["127.0.0.1".into(), "localhost".into()],
            // A broker's certificate also serves it as a client of the
            // other brokers under mutual TLS.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate whose subject's common name is `name`.
    pub fn client(&self, name: &str) -> Pair {
        self.sign(name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn sign(&self, name: &str, names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>) -> Pair {
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let pair = Pair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }
}

//! How a gRPC peer reaches a broker: the endpoint, plain or TLS, and the
//! credentials every call carries in the standard `authorization`
//! metadata. Clients, workers and brokers (for their links to each other)
//! all connect through here, so the schemes are spelled in one place.

use std::fmt;
use std::path::Path;

use base64::Engine;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// The metadata key of every credential.
pub const AUTHORIZATION: &str = "authorization";
/// `authorization` scheme of a user name and password (base64 of `user:password`).
pub const BASIC: &str = "Basic";
/// `authorization` scheme of an API token.
pub const BEARER: &str = "Bearer";
/// `authorization` scheme of a broker: `Eddy-Broker <node id>:<cluster secret>`.
pub const BROKER: &str = "Eddy-Broker";

/// A channel whose every call carries [`Credentials`].
pub type AuthChannel = InterceptedService<Channel, Credentials>;

/// What a connection sends to say who it is: nothing, a user's password,
/// a token, or a broker's cluster secret. `Debug` never shows it.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    /// No credentials: a broker without `--auth required` serves them.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// A user name and password (sent over TLS; the broker checks them
    /// against the user's SCRAM-SHA-256 credential).
    pub fn password(user: &str, password: &str) -> Result<Credentials, String> {
        if user.is_empty() || user.contains(':') {
            return Err(format!(
                "user name {user:?} is not valid: it must be non-empty and have no ':'"
            ));
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Credentials::header(&format!("{BASIC} {encoded}"))
    }

    /// An API token, as `eddy token create` printed it.
    pub fn token(token: &str) -> Result<Credentials, String> {
        Credentials::header(&format!("{BEARER} {}", token.trim())).map_err(|_| {
            "the token has characters a token never has; copy it again from `eddy token create`"
                .to_string()
        })
    }

    /// A broker of the cluster, proving it with the cluster secret.
    pub fn broker(node_id: i32, secret: &str) -> Result<Credentials, String> {
        Credentials::header(&format!("{BROKER} {node_id}:{secret}"))
            .map_err(|_| "the cluster secret must be printable ASCII".to_string())
    }

    fn header(text: &str) -> Result<Credentials, String> {
        let mut value: MetadataValue<Ascii> = text
            .parse()
            .map_err(|_| "credentials must be printable ASCII".to_string())?;
        value.set_sensitive(true);
        Ok(Credentials {
            authorization: Some(value),
        })
    }

    /// Whether any credential is sent.
    pub fn is_some(&self) -> bool {
        self.authorization.is_some()
    }

    /// Wraps `channel` so that every call carries these credentials.
    pub fn attach(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.authorization.is_some() {
            "<hidden>"
        } else {
            "none"
        };
        f.debug_struct("Credentials")
            .field("authorization", &shown)
            .finish()
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// TLS for connections to brokers: the CA that signed the brokers'
/// certificates and, for mutual TLS, this side's own certificate.
#[derive(Clone)]
pub struct ClientTls {
    ca: Certificate,
    identity: Option<Identity>,
}

impl ClientTls {
    /// Reads a CA certificate (PEM) and, optionally, a certificate and key
    /// to present (PEM).
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
        };
        let ca_pem = read(ca, "TLS CA certificate")?;
        if !String::from_utf8_lossy(&ca_pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
                ca.display()
            ));
        }
        let identity = match identity {
            Some((cert, key)) => Some(Identity::from_pem(
                read(cert, "TLS certificate")?,
                read(key, "TLS key")?,
            )),
            None => None,
        };
        Ok(ClientTls {
            ca: Certificate::from_pem(ca_pem),
            identity,
        })
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// The endpoint of the broker at `address` (host:port): `https` with the
/// broker's certificate checked against `tls`'s CA when given, else plain.
pub fn endpoint(address: &str, tls: Option<&ClientTls>) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("{address:?} is not a host:port address ({e})"))?;
    let Some(tls) = tls else {
        return Ok(endpoint);
    };
    let mut config = ClientTlsConfig::new()
        .ca_certificate(tls.ca.clone())
        .assume_http2(true);
    if let Some(identity) = &tls.identity {
        config = config.identity(identity.clone());
    }
    endpoint
        .tls_config(config)
        .map_err(|e| format!("TLS settings for {address}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let c = Credentials::password("alice", "s3cret-pass").unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("YWxpY2"),
            "{shown}"
        );
        let c = Credentials::broker(1, "cluster-secret").unwrap();
        assert!(!format!("{c:?}").contains("cluster-secret"));
    }

    #[test]
    fn a_name_with_a_colon_is_refused() {
        assert!(Credentials::password("a:b", "x").is_err());
        assert!(Credentials::password("", "x").is_err());
        assert!(Credentials::token("bad\ntoken").is_err());
    }
}

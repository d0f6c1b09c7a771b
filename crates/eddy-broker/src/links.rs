//! How this broker reaches the others (Raft, heartbeats, replica fetches)
//! and itself (its worker): TLS checked against the cluster's CA when the
//! listener uses TLS, and the broker's credentials on every call.

use eddy_proto::{AuthChannel, ClientTls, Credentials};
use tonic::transport::{Channel, Endpoint};

use crate::config::BrokerConfig;
use crate::error::BrokerError;

#[derive(Debug, Clone)]
pub struct Links {
    tls: Option<ClientTls>,
    credentials: Credentials,
}

impl Links {
    pub fn new(config: &BrokerConfig) -> Result<Links, BrokerError> {
        let tls = match &config.tls {
            Some(files) => Some(files.client()?),
            None => None,
        };
        let credentials = match &config.auth.cluster_secret {
            Some(secret) => Credentials::broker(config.node_id.0, secret.expose())
                .map_err(BrokerError::InvalidRequest)?,
            None => Credentials::none(),
        };
        Ok(Links { tls, credentials })
    }

    /// The endpoint of the broker at `address` (host:port).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        eddy_proto::link::endpoint(address, self.tls.as_ref())
    }

    /// `channel` with this broker's credentials on every call.
    pub fn attach(&self, channel: Channel) -> AuthChannel {
        self.credentials.attach(channel)
    }

    /// TLS settings for a client of this cluster run by this broker.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The credentials this broker presents.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

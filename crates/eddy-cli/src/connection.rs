//! How client commands reach the cluster and say who they are: the
//! bootstrap brokers, TLS, and the credentials every call carries.
//!
//! Secrets never come from the command line, where other users of the
//! machine can read them: a password from `EDDY_PASSWORD` or a file, a
//! token from `EDDY_TOKEN` or a file. The environment variables are read
//! here, not by clap, so `--help` never shows their values.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use eddy_client::{ClientTls, Credentials};

use crate::DEFAULT_ADDRESS;

/// The environment variable holding the password of `--user`.
pub const PASSWORD_ENV: &str = "EDDY_PASSWORD";
/// The environment variable holding an API token.
pub const TOKEN_ENV: &str = "EDDY_TOKEN";
/// The broker id a client holding the cluster secret goes by (the audit
/// log shows it as `Broker:-1`).
const OPERATOR_ID: i32 = -1;

/// How client commands find the cluster.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Brokers of the cluster as HOST:PORT, comma-separated; the first that
    /// answers is used.
    #[arg(long, global = true, env = "EDDY_BOOTSTRAP", default_value = DEFAULT_ADDRESS)]
    pub bootstrap: String,
    /// Connect with TLS, checking the brokers' certificates against this
    /// CA certificate (PEM). `eddy serve` checks the other brokers against it.
    #[arg(long, global = true, env = "EDDY_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca, present this certificate (PEM) to brokers that take
    /// client certificates (mutual TLS); give its key with --tls-client-key.
    #[arg(
        long,
        global = true,
        env = "EDDY_TLS_CLIENT_CERT",
        value_name = "FILE",
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-client-cert.
    #[arg(long, global = true, env = "EDDY_TLS_CLIENT_KEY", value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
    /// Sign in as this user; the password is read from the EDDY_PASSWORD
    /// environment variable or from --password-file.
    #[arg(long, global = true, env = "EDDY_USER", value_name = "USER")]
    pub login: Option<String>,
    /// A file whose first line is the password of --login.
    #[arg(long, global = true, env = "EDDY_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A file holding an API token (see `eddy token create`); the token
    /// may instead be in the EDDY_TOKEN environment variable.
    #[arg(long, global = true, env = "EDDY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A file whose first line is the secret the brokers of a cluster
    /// share (`eddy serve` needs it with --auth required). A client that
    /// gives it acts as the cluster itself, allowed everything: use it to
    /// create the first users.
    #[arg(
        long,
        global = true,
        env = "EDDY_CLUSTER_SECRET_FILE",
        value_name = "FILE"
    )]
    pub cluster_secret_file: Option<PathBuf>,
}

impl Connection {
    /// TLS settings, if --tls-ca is given.
    pub fn tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_client_cert.is_some() {
                bail!(
                    "--tls-client-cert needs --tls-ca (the CA that signed the brokers' certificates)"
                );
            }
            return Ok(None);
        };
        let identity = match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => bail!("give --tls-client-cert and --tls-client-key together"),
        };
        Ok(Some(
            ClientTls::from_files(ca, identity).map_err(anyhow::Error::msg)?,
        ))
    }

    /// The credentials every call carries: a user's password, a token, or none.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let token = match &self.token_file {
            Some(path) => Some(first_line(path, "token")?),
            None => std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        if let Some(path) = &self.cluster_secret_file {
            if self.login.is_some() || token.is_some() {
                bail!("--cluster-secret-file acts as the cluster: give no user or token with it");
            }
            let secret = first_line(path, "cluster secret")?;
            return Credentials::broker(OPERATOR_ID, &secret).map_err(anyhow::Error::msg);
        }
        match (&self.login, token) {
            (Some(_), Some(_)) => bail!(
                "both a user (--login or EDDY_USER) and a token (EDDY_TOKEN or --token-file) are given: use one"
            ),
            (None, Some(token)) => Credentials::token(&token).map_err(anyhow::Error::msg),
            (Some(user), None) => {
                let password = match &self.password_file {
                    Some(path) => first_line(path, "password")?,
                    None => match std::env::var(PASSWORD_ENV) {
                        Ok(p) => p,
                        Err(_) => bail!(
                            "no password for user {user:?}: set {PASSWORD_ENV} or pass --password-file FILE"
                        ),
                    },
                };
                Credentials::password(user, &password).map_err(anyhow::Error::msg)
            }
            (None, None) => Ok(Credentials::none()),
        }
    }

    /// The client settings for these flags.
    pub fn client_config(&self) -> anyhow::Result<eddy_client::ClientConfig> {
        Ok(eddy_client::ClientConfig {
            tls: self.tls()?,
            credentials: self.credentials()?,
            ..eddy_client::ClientConfig::new(self.bootstrap.clone())
        })
    }
}

/// The first line of a secret file, without its line ending.
pub fn first_line(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(line)
}

/// Connects a client to the cluster.
pub async fn connect(conn: &Connection) -> anyhow::Result<eddy_client::Client> {
    Ok(eddy_client::Client::connect(conn.client_config()?).await?)
}

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
use serde::Deserialize;

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
    /// A TOML file with any of these settings for client commands
    /// (`bootstrap`, `tls_ca`, `tls_client_cert`, `tls_client_key`,
    /// `login`, `password_file`, `token_file`, and `password` or `token`
    /// themselves); flags and environment variables win over it. A file
    /// holding a secret should be readable by its owner only.
    #[arg(long, global = true, env = "EDDY_CLIENT_CONFIG", value_name = "FILE")]
    pub client_config: Option<PathBuf>,
}

/// The client config file's shape.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    bootstrap: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_client_cert: Option<PathBuf>,
    tls_client_key: Option<PathBuf>,
    login: Option<String>,
    password_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    password: Option<String>,
    token: Option<String>,
}

/// Secrets written in the client config file itself.
#[derive(Default)]
struct FileSecrets {
    password: Option<String>,
    token: Option<String>,
}

impl Connection {
    /// These settings with the client config file's filling what flags and
    /// the environment left unset.
    fn with_file(&self) -> anyhow::Result<(Connection, FileSecrets)> {
        let Some(path) = &self.client_config else {
            return Ok((self.clone(), FileSecrets::default()));
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the client config {}", path.display()))?;
        let file: ClientFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid client config: {}",
                path.display(),
                e.message()
            )
        })?;
        if file.password.is_some() || file.token.is_some() {
            warn_if_readable_by_others(path);
        }
        let mut merged = self.clone();
        if merged.bootstrap == DEFAULT_ADDRESS
            && let Some(b) = file.bootstrap
        {
            merged.bootstrap = b;
        }
        let fill = |mine: &mut Option<PathBuf>, theirs: Option<PathBuf>| {
            if mine.is_none() {
                *mine = theirs;
            }
        };
        fill(&mut merged.tls_ca, file.tls_ca);
        fill(&mut merged.tls_client_cert, file.tls_client_cert);
        fill(&mut merged.tls_client_key, file.tls_client_key);
        fill(&mut merged.password_file, file.password_file);
        fill(&mut merged.token_file, file.token_file);
        if merged.login.is_none() {
            merged.login = file.login;
        }
        Ok((
            merged,
            FileSecrets {
                password: file.password,
                token: file.token,
            },
        ))
    }

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
    fn credentials(&self, file: FileSecrets) -> anyhow::Result<Credentials> {
        let token = match &self.token_file {
            Some(path) => Some(first_line(path, "token")?),
            None => std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .or(file.token),
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
                    None => match std::env::var(PASSWORD_ENV).ok().or(file.password) {
                        Some(p) => p,
                        None => bail!(
                            "no password for user {user:?}: set {PASSWORD_ENV} or pass --password-file FILE"
                        ),
                    },
                };
                Credentials::password(user, &password).map_err(anyhow::Error::msg)
            }
            (None, None) => Ok(Credentials::none()),
        }
    }

    /// The client settings for these flags, the environment and the
    /// client config file.
    pub fn client_config(&self) -> anyhow::Result<eddy_client::ClientConfig> {
        let (conn, secrets) = self.with_file()?;
        Ok(eddy_client::ClientConfig {
            tls: conn.tls()?,
            credentials: conn.credentials(secrets)?,
            ..eddy_client::ClientConfig::new(conn.bootstrap.clone())
        })
    }
}

/// Secrets in a file others may read are not secret: say so.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} holds a password or token and others may read it; `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
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

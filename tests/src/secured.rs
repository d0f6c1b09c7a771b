//! A broker with `--auth required`, its cluster secret, and users made
//! through it: the set-up the security tests share.

use std::path::PathBuf;

use crate::process::{Out, TestBroker};

/// The super user every secured broker has.
pub const ADMIN: &str = "admin";
/// The password every test user gets.
pub const PASSWORD: &str = "correct-horse-battery";

#[derive(Debug)]
pub struct SecuredBroker {
    pub broker: TestBroker,
    /// The file holding the cluster secret.
    pub secret: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecuredBroker {
    /// A broker requiring authentication, with `admin` as super user
    /// (created with the cluster secret), plus `extra` serve arguments.
    pub fn start(extra: &[&str]) -> SecuredBroker {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("cluster-secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        let secret_arg = secret.to_str().unwrap().to_string();
        let mut args = vec![
            "--auth",
            "required",
            "--cluster-secret-file",
            &secret_arg,
            "--super-users",
            "User:admin",
        ];
        args.extend_from_slice(extra);
        let b = SecuredBroker {
            broker: TestBroker::start_with(&args),
            secret,
            _dir: dir,
        };
        b.as_cluster_ok(
            &["user", "create", ADMIN],
            format!("{PASSWORD}\n").as_bytes(),
        );
        b
    }

    /// Runs `eddy` holding the cluster secret (allowed everything).
    pub fn as_cluster(&self, args: &[&str], input: &[u8]) -> Out {
        let secret = self.secret.to_str().unwrap();
        self.broker
            .eddy_with_env(args, input, &[("EDDY_CLUSTER_SECRET_FILE", secret)])
    }

    pub fn as_cluster_ok(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.as_cluster(args, input);
        assert!(
            out.success,
            "eddy {args:?} with the cluster secret failed:\n{}",
            out.stderr
        );
        out.stdout
    }

    /// Runs `eddy` as `user` with [`PASSWORD`].
    pub fn as_user(&self, user: &str, args: &[&str], input: &[u8]) -> Out {
        self.broker.eddy_with_env(
            args,
            input,
            &[("EDDY_USER", user), ("EDDY_PASSWORD", PASSWORD)],
        )
    }

    pub fn as_user_ok(&self, user: &str, args: &[&str], input: &[u8]) -> String {
        let out = self.as_user(user, args, input);
        assert!(
            out.success,
            "eddy {args:?} as {user} failed:\n{}",
            out.stderr
        );
        out.stdout
    }

    /// Creates `user` with [`PASSWORD`], as admin.
    pub fn create_user(&self, user: &str) {
        self.as_user_ok(
            ADMIN,
            &["user", "create", user],
            format!("{PASSWORD}\n").as_bytes(),
        );
    }

    /// Runs `eddy acl add` as admin.
    pub fn grant(&self, args: &[&str]) {
        let mut all = vec!["acl", "add"];
        all.extend_from_slice(args);
        self.as_user_ok(ADMIN, &all, b"");
    }
}

/// How the clients of a secured cluster (`eddy` commands this harness
/// runs, and Rust clients made with [`client_config`]) connect: the CA to
/// check the brokers against, and a user. Set for a whole run (a secured
/// chaos seed); unset, clients connect in plain text without credentials.
#[derive(Debug, Clone)]
pub struct Access {
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
}

static ACCESS: std::sync::RwLock<Option<Access>> = std::sync::RwLock::new(None);

/// Sets (or clears) how every client of this process connects.
pub fn set_access(access: Option<Access>) {
    *ACCESS.write().unwrap() = access;
}

/// The environment an `eddy` command needs for [`Access`].
pub fn access_env() -> Vec<(String, String)> {
    match &*ACCESS.read().unwrap() {
        Some(a) => vec![
            ("EDDY_TLS_CA".into(), a.ca.to_str().unwrap().into()),
            ("EDDY_USER".into(), a.user.clone()),
            ("EDDY_PASSWORD".into(), a.password.clone()),
        ],
        None => Vec::new(),
    }
}

/// Client settings for `bootstrap` with the current [`Access`].
pub fn client_config(bootstrap: impl Into<String>) -> eddy_client::ClientConfig {
    let config = eddy_client::ClientConfig::new(bootstrap);
    match &*ACCESS.read().unwrap() {
        Some(a) => eddy_client::ClientConfig {
            tls: Some(eddy_client::ClientTls::from_files(&a.ca, None).unwrap()),
            credentials: eddy_client::Credentials::password(&a.user, &a.password).unwrap(),
            ..config
        },
        None => config,
    }
}

/// Certificates and a cluster secret for a secured cluster, in a
/// directory of their own.
#[derive(Debug)]
pub struct SecureCluster {
    pub ca: crate::pki::Ca,
    pub cert: crate::pki::Pair,
    pub secret: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecureCluster {
    pub fn new() -> SecureCluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::Ca::new(dir.path(), "cluster");
        let cert = ca.server("brokers");
        let secret = dir.path().join("cluster-secret");
        std::fs::write(&secret, "c0ffee0123456789c0ffee0123456789\n").unwrap();
        SecureCluster {
            ca,
            cert,
            secret,
            _dir: dir,
        }
    }

    /// `eddy serve` arguments: TLS, `--auth required`, the secret, and
    /// `User:admin` as super user.
    pub fn serve_args(&self) -> Vec<String> {
        let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
        vec![
            "--tls-cert".into(),
            p(&self.cert.cert),
            "--tls-key".into(),
            p(&self.cert.key),
            "--tls-ca".into(),
            p(&self.ca.cert),
            "--auth".into(),
            "required".into(),
            "--cluster-secret-file".into(),
            p(&self.secret),
            "--super-users".into(),
            "User:admin".into(),
        ]
    }

    /// Creates `admin` with the cluster secret (retrying while the cluster
    /// settles), then makes every client of this process sign in as it.
    pub fn sign_in_as_admin(&self, cluster: &crate::cluster::TestCluster) {
        let ca = self.ca.cert.to_str().unwrap().to_string();
        let secret = self.secret.to_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = crate::process::run(
                crate::process::eddy_command()
                    .env("EDDY_TLS_CA", &ca)
                    .args(["user", "create", ADMIN, "--cluster-secret-file", &secret])
                    .args(["--bootstrap", &cluster.bootstrap()]),
                format!("{PASSWORD}\n").as_bytes(),
            );
            if out.success || out.stderr.contains("exists already") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "could not create the admin user: {}",
                out.stderr
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        set_access(Some(Access {
            ca: self.ca.cert.clone(),
            user: ADMIN.into(),
            password: PASSWORD.into(),
        }));
    }
}

impl Default for SecureCluster {
    fn default() -> Self {
        SecureCluster::new()
    }
}

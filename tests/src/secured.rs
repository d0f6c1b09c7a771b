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

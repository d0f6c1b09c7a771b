//! README "A secured cluster", step by step, against three brokers.

use eddy_tests::cluster::TestCluster;

use crate::harness::{eddy, run};

#[test]
fn a_secured_cluster_as_the_readme_sets_it_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    let out = eddy(&[
        "tls",
        "init",
        certs.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
    ]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    // `eddy tls init` never overwrites.
    let again = eddy(&["tls", "init", certs.to_str().unwrap()]);
    assert!(!again.status.success() && crate::stderr(&again).contains("exists already"));
    let secret = dir.join("cluster-secret");
    std::fs::write(&secret, "3f9a1c0d5e7b2a4f6c8d0e1f2a3b4c5d").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (cert, key, ca) = (
        path(&certs.join("broker.pem")),
        path(&certs.join("broker-key.pem")),
        path(&certs.join("ca.pem")),
    );
    let secret_path = path(&secret);
    let mut c = TestCluster::start(
        3,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--auth",
            "required",
            "--cluster-secret-file",
            &secret_path,
            "--super-users",
            "User:admin",
        ],
    );
    c.client_env.push(("EDDY_TLS_CA".into(), ca.clone()));

    let admin_pw = dir.join("admin.pw");
    std::fs::write(&admin_pw, "choose-an-admin-password\n").unwrap();
    c.ok_with_input(
        &[
            "user",
            "create",
            "admin",
            "--new-password-file",
            &path(&admin_pw),
            "--cluster-secret-file",
            &secret_path,
        ],
        b"",
    );
    c.client_env.push(("EDDY_USER".into(), "admin".into()));
    c.client_env
        .push(("EDDY_PASSWORD".into(), "choose-an-admin-password".into()));
    c.ok_with_input(&["user", "create", "alice"], b"alices-password\n");
    c.ok_with_input(&["topic", "create", "orders", "-p", "3", "-r", "3"], b"");
    c.ok_with_input(
        &[
            "acl",
            "add",
            "--allow",
            "User:alice",
            "--operation",
            "read,write",
            "--topic",
            "orders",
        ],
        b"",
    );
    let token = c.ok_with_input(
        &["token", "create", "--user", "alice", "--expires", "30d"],
        b"",
    );
    let token_file = dir.join("alice.token");
    std::fs::write(&token_file, &token).unwrap();

    // A service signs in with the token instead.
    c.client_env.retain(|(k, _)| k == "EDDY_TLS_CA");
    let bootstrap = c.bootstrap();
    let with_token = |args: &[&str], input: &[u8]| {
        run(
            eddy_tests::process::eddy_command()
                .env("EDDY_TLS_CA", &ca)
                .env("EDDY_TOKEN", token.trim())
                .args(args)
                .args(["--bootstrap", &bootstrap]),
            input,
        )
    };
    let first: String = (1..=100).map(|i| format!("{i}\n")).collect();
    let out = with_token(&["produce", "orders"], first.as_bytes());
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        c.ok_with_input(&["--token-file", &path(&token_file), "whoami"], b"")
            .trim(),
        "User:alice"
    );
    let refused = with_token(&["topic", "delete", "orders"], b"");
    assert!(
        !refused.success && refused.stderr.contains("may not delete topic"),
        "{}",
        refused.stderr
    );

    // Kill a broker: the others carry on, over TLS and with the secret.
    let leader = {
        let out = with_token(&["topic", "describe", "orders"], b"");
        assert!(out.success, "{}", out.stderr);
        let row = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("0 "))
            .unwrap()
            .to_string();
        row.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    c.kill9(leader);
    let more: String = (101..=200).map(|i| format!("{i}\n")).collect();
    let out = with_token(&["produce", "orders"], more.as_bytes());
    assert!(out.success, "{}", out.stderr);
    let out = with_token(&["consume", "orders", "-B", "-n", "200"], b"");
    assert!(out.success, "{}", out.stderr);
    let mut got: Vec<u32> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
    got.sort();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());

    // No broker logged a secret, though each logged sign-ins, denials
    // and changes to users, tokens and ACLs.
    let (_, token_secret) = token.trim()["eddy_".len()..].split_once('_').unwrap();
    let mut audited = 0;
    for node in &c.nodes {
        let log = std::fs::read_to_string(node.dir.with_extension("log")).unwrap();
        for secret in [
            "choose-an-admin-password",
            "alices-password",
            token_secret,
            "3f9a1c0d5e7b2a4f",
        ] {
            assert!(!log.contains(secret), "broker {} logged a secret", node.id);
        }
        audited += log.matches("eddy::audit").count();
    }
    assert!(audited > 0, "the audit log names each change and denial");
}

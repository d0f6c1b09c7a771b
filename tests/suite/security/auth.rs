//! Users, tokens and ACLs through the `eddy` command, as the README has it.

use std::time::{Duration, Instant};

use eddy_tests::secured::{ADMIN, PASSWORD, SecuredBroker};

use crate::harness::{eddy_binary, run};

#[test]
fn users_sign_in_with_passwords_and_tokens_and_lose_them_when_revoked() {
    let s = SecuredBroker::start(&[]);
    let b = &s.broker;

    let out = b.eddy(&["topic", "list"]);
    assert!(!out.success);
    assert!(
        out.stderr.contains("requires authentication"),
        "{}",
        out.stderr
    );

    let wrong = b.eddy_with_env(
        &["whoami"],
        b"",
        &[("EDDY_USER", ADMIN), ("EDDY_PASSWORD", "not-the-password")],
    );
    assert!(!wrong.success);
    assert!(wrong.stderr.contains("do not match"), "{}", wrong.stderr);
    assert!(
        !wrong.stderr.contains("not-the-password"),
        "{}",
        wrong.stderr
    );

    s.create_user("alice");
    assert_eq!(s.as_user_ok("alice", &["whoami"], b"").trim(), "User:alice");
    let admin = s.as_user_ok(ADMIN, &["whoami"], b"");
    assert!(
        admin.contains("User:admin") && admin.contains("super user"),
        "{admin}"
    );
    assert!(
        s.as_user_ok(ADMIN, &["user", "list"], b"")
            .contains("alice")
    );
    let denied = s.as_user("alice", &["user", "list"], b"");
    assert!(!denied.success);
    assert!(
        denied.stderr.contains("may not describe cluster")
            && denied.stderr.contains("eddy acl add"),
        "{}",
        denied.stderr
    );

    // A user makes its own token; the cluster shows it only without its secret.
    let token = s.as_user_ok("alice", &["token", "create", "--user", "alice"], b"");
    let token = token.trim().to_string();
    assert!(token.starts_with("eddy_"), "{token}");
    let as_token = |t: &str| b.eddy_with_env(&["whoami"], b"", &[("EDDY_TOKEN", t)]);
    let me = as_token(&token);
    assert!(me.success, "{}", me.stderr);
    assert_eq!(me.stdout.trim(), "User:alice");
    let listed = s.as_user_ok("alice", &["token", "list"], b"");
    // eddy_<id>_<secret>; the secret may itself hold '_'.
    let (_, secret) = token["eddy_".len()..].split_once('_').unwrap();
    assert!(
        listed.contains("alice") && !listed.contains(secret),
        "{listed}"
    );
    let bad_secret = format!("{}x", &token[..token.len() - 1]);
    let out = as_token(&bad_secret);
    assert!(
        !out.success && out.stderr.contains("does not match"),
        "{}",
        out.stderr
    );
    s.as_user_ok("alice", &["token", "revoke", &token], b"");
    let out = as_token(&token);
    assert!(
        !out.success && out.stderr.contains("no such token"),
        "{}",
        out.stderr
    );

    let out = as_token("not-a-token");
    assert!(
        !out.success && out.stderr.contains("malformed"),
        "{}",
        out.stderr
    );

    let short = s.as_user_ok(
        "alice",
        &["token", "create", "--user", "alice", "--expires", "1s"],
        b"",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = as_token(short.trim());
    assert!(
        !out.success && out.stderr.contains("expired"),
        "{}",
        out.stderr
    );

    // A user may change its own password, and then only the new one works.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new-password");
    std::fs::write(&file, "a-brand-new-password\n").unwrap();
    s.as_user_ok(
        "alice",
        &[
            "user",
            "passwd",
            "alice",
            "--new-password-file",
            file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!s.as_user("alice", &["whoami"], b"").success);
    let out = b.eddy_with_env(
        &["whoami"],
        b"",
        &[
            ("EDDY_USER", "alice"),
            ("EDDY_PASSWORD", "a-brand-new-password"),
        ],
    );
    assert!(out.success, "{}", out.stderr);

    // A client config file may hold the sign-in instead.
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        "login = \"alice\"\npassword = \"a-brand-new-password\"\n",
    )
    .unwrap();
    let out = b.eddy(&["whoami", "--client-config", config.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "User:alice");
    assert!(out.stderr.contains("others may read it"), "{}", out.stderr);

    let kept = s.as_user_ok(ADMIN, &["token", "create", "--user", "alice"], b"");
    let deleted = s.as_user(ADMIN, &["user", "delete", "alice"], b"");
    assert!(
        deleted.success && deleted.stderr.contains("revoked its 2 token(s)"),
        "{}",
        deleted.stderr
    );
    assert!(!as_token(kept.trim()).success);
}

#[test]
fn acls_decide_who_reads_and_writes_and_deny_wins() {
    let s = SecuredBroker::start(&[]);
    s.create_user("bob");
    s.as_user_ok(ADMIN, &["topic", "create", "orders"], b"");
    s.as_user_ok(ADMIN, &["topic", "create", "payroll"], b"");

    let out = s.as_user("bob", &["produce", "orders"], b"one\n");
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("User:bob may not describe topic \"orders\"")
            && out.stderr.contains("eddy acl add --allow User:bob"),
        "{}",
        out.stderr
    );
    s.grant(&[
        "--allow",
        "User:bob",
        "--operation",
        "write",
        "--topic",
        "orders",
    ]);
    s.as_user_ok("bob", &["produce", "orders"], b"one\ntwo\n");

    let consume = ["consume", "orders", "-B", "-n", "2"];
    assert!(!s.as_user("bob", &consume, b"").success);
    s.grant(&[
        "--allow",
        "User:bob",
        "--operation",
        "read",
        "--topic",
        "ord",
        "--prefixed",
    ]);
    assert_eq!(s.as_user_ok("bob", &consume, b""), "one\ntwo\n");

    // Only what bob may describe is listed.
    let listed = s.as_user_ok("bob", &["topic", "list"], b"");
    assert!(
        listed.contains("orders") && !listed.contains("payroll"),
        "{listed}"
    );

    s.grant(&[
        "--deny",
        "User:bob",
        "--operation",
        "read",
        "--topic",
        "orders",
    ]);
    let out = s.as_user("bob", &consume, b"");
    assert!(
        !out.success && out.stderr.contains("may not read"),
        "{}",
        out.stderr
    );
    let acls = s.as_user_ok(ADMIN, &["acl", "list", "--principal", "User:bob"], b"");
    assert_eq!(
        acls.lines().count(),
        4,
        "a header and three entries:\n{acls}"
    );
    assert!(acls.contains("deny") && acls.contains("prefixed"), "{acls}");
    s.as_user_ok(
        ADMIN,
        &[
            "acl",
            "remove",
            "--deny",
            "User:bob",
            "--operation",
            "read",
            "--topic",
            "orders",
        ],
        b"",
    );
    assert!(s.as_user("bob", &consume, b"").success);
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    let s = SecuredBroker::start(&[]);
    let attempt = || {
        let started = Instant::now();
        let out = s.broker.eddy_with_env(
            &["whoami"],
            b"",
            &[("EDDY_USER", ADMIN), ("EDDY_PASSWORD", "guess-guess-guess")],
        );
        assert!(!out.success);
        started.elapsed()
    };
    for _ in 0..6 {
        attempt();
    }
    // Past five failures each attempt waits 100 ms, then 200, 400, …
    let slowed = attempt() + attempt();
    assert!(slowed >= Duration::from_millis(300), "{slowed:?}");
    // The right password still works (after its wait).
    assert!(s.as_user("admin", &["whoami"], b"").success);
    let _ = PASSWORD;
}

#[test]
fn an_open_listener_on_the_network_needs_tls_and_auth_or_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        std::process::Command::new(eddy_binary())
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(tmp.path().join("data")),
        b"",
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("refusing to listen on 0.0.0.0")
            && out.stderr.contains("TLS")
            && out.stderr.contains("--auth required")
            && out.stderr.contains("--insecure"),
        "{}",
        out.stderr
    );
    let out = run(
        std::process::Command::new(eddy_binary())
            .args(["serve", "--auth", "required", "--data-dir"])
            .arg(tmp.path().join("data")),
        b"",
    );
    assert!(
        !out.success && out.stderr.contains("--cluster-secret-file"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_slow_producers_and_cap_connections_and_uploads() {
    use eddy_proto::v1::{WhoAmIRequest, security_client::SecurityClient};
    let s = SecuredBroker::start(&[]);
    s.create_user("carol");
    s.as_user_ok(ADMIN, &["topic", "create", "busy"], b"");
    s.grant(&[
        "--allow",
        "User:carol",
        "--operation",
        "write",
        "--topic",
        "busy",
    ]);
    s.grant(&[
        "--allow",
        "User:carol",
        "--operation",
        "upload",
        "--processor",
        "*",
    ]);
    s.as_user_ok(
        ADMIN,
        &[
            "quota",
            "set",
            "User:carol",
            "--produce-bytes-per-sec",
            "50000",
            "--connections",
            "4",
            "--uploads-per-hour",
            "1",
        ],
        b"",
    );
    let listed = s.as_user_ok(ADMIN, &["quota", "list"], b"");
    assert!(
        listed.contains("User:carol") && listed.contains("50000"),
        "{listed}"
    );

    // 300 kB at 50 kB/s, a second of it free: about five seconds of waits.
    let line = format!("{}\n", "x".repeat(999));
    let input = line.repeat(300);
    let started = Instant::now();
    s.as_user_ok("carol", &["produce", "busy"], input.as_bytes());
    let slowed = started.elapsed();
    assert!(
        slowed >= Duration::from_secs(3),
        "throttled to the quota: {slowed:?}"
    );

    // Each channel is a connection; the fifth is refused.
    let connect = || async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.broker.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let credentials = eddy_proto::Credentials::password("carol", PASSWORD).unwrap();
        SecurityClient::new(credentials.attach(channel))
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect().await;
        c.who_am_i(WhoAmIRequest {}).await.unwrap();
        held.push(c);
    }
    let mut fifth = connect().await;
    let refused = fifth.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("connections"), "{refused:?}");
    drop(held);

    let filter = eddy_test_plugins::FILTER;
    s.as_user_ok("carol", &["processor", "upload", "f1", filter], b"");
    let out = s.as_user("carol", &["processor", "upload", "f2", filter], b"");
    assert!(
        !out.success && out.stderr.contains("in the last hour"),
        "{}",
        out.stderr
    );
}

use eddy_tests::cluster::TestCluster;
use eddy_tests::pki::Ca;

use crate::harness::TestBroker;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A broker whose certificate `ca` signed, checking other brokers
/// against `ca`, with `extra` serve arguments.
fn tls_broker(ca: &Ca, extra: &[&str]) -> TestBroker {
    let cert = ca.server("broker-1");
    let mut args = vec![
        "--tls-cert",
        path(&cert.cert),
        "--tls-key",
        path(&cert.key),
        "--tls-ca",
        path(&ca.cert),
    ];
    args.extend_from_slice(extra);
    TestBroker::start_with(&args)
}

#[test]
fn a_tls_broker_serves_clients_that_trust_its_ca_and_refuses_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "cluster");
    let other = Ca::new(tmp.path(), "other");
    // Its own worker reaches it over TLS too: the broker starts only if
    // that connection succeeds.
    let b = tls_broker(&ca, &[]);
    let tls = ["--tls-ca", path(&ca.cert)];
    let with_tls =
        |args: &[&'static str]| -> Vec<&str> { args.iter().chain(&tls).copied().collect() };
    b.ok(&with_tls(&["topic", "create", "secure", "-p", "2"]));
    b.ok_with_input(&with_tls(&["produce", "secure"]), b"one\ntwo\nthree\n");
    let consumed = b.ok(&with_tls(&["consume", "secure", "-B", "-n", "3"]));
    let mut lines: Vec<&str> = consumed.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);

    let plain = b.eddy(&["topic", "list"]);
    assert!(!plain.success, "plain text is refused: {}", plain.stdout);
    assert!(
        plain.stderr.contains("takes only TLS") && plain.stderr.contains("--tls-ca"),
        "the refusal says to use TLS: {}",
        plain.stderr
    );

    let wrong_ca = b.eddy(&["topic", "list", "--tls-ca", path(&other.cert)]);
    assert!(!wrong_ca.success);
    assert!(
        wrong_ca.stderr.contains("certificate") && wrong_ca.stderr.contains("--tls-ca"),
        "the failure names the certificate: {}",
        wrong_ca.stderr
    );
    // The broker keeps serving the clients it should.
    b.ok(&with_tls(&["topic", "list"]));
}

#[test]
fn with_a_client_ca_only_certificates_it_signed_are_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "cluster");
    let clients = Ca::new(tmp.path(), "clients");
    let other = Ca::new(tmp.path(), "other");
    let b = tls_broker(&ca, &["--tls-client-ca", path(&clients.cert)]);
    let alice = clients.client("alice");
    let mallory = other.client("mallory");
    let as_client = |pair: &eddy_tests::pki::Pair| {
        b.eddy(&[
            "topic",
            "list",
            "--tls-ca",
            path(&ca.cert),
            "--tls-client-cert",
            path(&pair.cert),
            "--tls-client-key",
            path(&pair.key),
        ])
    };
    let out = as_client(&alice);
    assert!(
        out.success,
        "a certificate the client CA signed: {}",
        out.stderr
    );
    let out = as_client(&mallory);
    assert!(!out.success, "another CA's certificate is refused");
    // A client may still connect without a certificate (and then needs
    // other credentials once authentication is required).
    b.ok(&["topic", "list", "--tls-ca", path(&ca.cert)]);
}

#[test]
fn three_brokers_replicate_and_elect_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "cluster");
    // One certificate for all three: each is for 127.0.0.1.
    let cert = ca.server("brokers");
    let mut c = TestCluster::start(
        3,
        &[
            "--tls-cert",
            path(&cert.cert),
            "--tls-key",
            path(&cert.key),
            "--tls-ca",
            path(&ca.cert),
        ],
    );
    c.client_env
        .push(("EDDY_TLS_CA".into(), path(&ca.cert).into()));
    c.create_replicated("r", 1);
    let input: String = (0..100).map(|i| format!("v{i}\n")).collect();
    c.ok_with_input(&["produce", "r", "--acks", "all"], input.as_bytes());
    let leader = c.partitions("r")[0].leader;
    c.kill9(leader);
    let consumed = c.ok_with_input(&["consume", "r", "-B", "-n", "100"], b"");
    assert_eq!(
        consumed, input,
        "every acknowledged record survives the kill"
    );
    let controller = c.await_controller(
        if leader == 1 { 2 } else { 1 },
        std::time::Duration::from_secs(20),
    );
    assert_ne!(controller, leader, "a live broker leads the metadata");
}

#[test]
fn a_client_certificate_signs_its_subject_in() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "cluster");
    let clients = Ca::new(tmp.path(), "clients");
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let b = tls_broker(
        &ca,
        &[
            "--tls-client-ca",
            path(&clients.cert),
            "--auth",
            "required",
            "--cluster-secret-file",
            path(&secret),
        ],
    );
    let alice = clients.client("alice");
    let whoami = b.eddy(&[
        "whoami",
        "--tls-ca",
        path(&ca.cert),
        "--tls-client-cert",
        path(&alice.cert),
        "--tls-client-key",
        path(&alice.key),
    ]);
    assert!(whoami.success, "{}", whoami.stderr);
    assert_eq!(whoami.stdout.lines().next(), Some("User:alice"));
    let anonymous = b.eddy(&["whoami", "--tls-ca", path(&ca.cert)]);
    assert!(!anonymous.success && anonymous.stderr.contains("requires authentication"));
}

//! A pipeline runs with the rights of whoever applied it.

use std::time::{Duration, Instant};

use eddy_test_plugins as wasm;
use eddy_tests::secured::{ADMIN, SecuredBroker};

use crate::pipelines::manifest;

fn yaml() -> String {
    let params = "  processor:\n    name: filter\n    params: { field: region, equals: north }\n";
    manifest("north", "filter", &["in"], &["out"], "at-least-once", "")
        .replace("  processor:\n    name: filter\n", params)
}

#[test]
fn a_pipeline_needs_its_owners_rights_and_stops_when_they_are_revoked() {
    let s = SecuredBroker::start(&[]);
    s.create_user("alice");
    s.create_user("mallory");
    s.as_user_ok(ADMIN, &["topic", "create", "in", "-p", "2"], b"");
    s.as_user_ok(ADMIN, &["topic", "create", "out", "-p", "3"], b"");
    s.as_user_ok(ADMIN, &["processor", "upload", "filter", wasm::FILTER], b"");
    let apply = |user: &str| s.as_user(user, &["pipeline", "apply", "-f", "-"], yaml().as_bytes());

    // Mallory may apply pipelines but not read `in`: no pipeline gets it for her.
    s.grant(&[
        "--allow",
        "User:mallory",
        "--operation",
        "apply,describe",
        "--pipeline",
        "*",
    ]);
    let out = apply("mallory");
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("User:mallory may not read topic \"in\""),
        "{}",
        out.stderr
    );

    s.grant(&[
        "--allow",
        "User:alice",
        "--operation",
        "apply,describe",
        "--pipeline",
        "north",
    ]);
    s.grant(&[
        "--allow",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "in",
    ]);
    s.grant(&[
        "--allow",
        "User:alice",
        "--operation",
        "write",
        "--topic",
        "out",
    ]);
    let out = apply("alice");
    assert!(
        !out.success && out.stderr.contains("may not read processor \"filter\""),
        "{}",
        out.stderr
    );
    s.grant(&[
        "--allow",
        "User:alice",
        "--operation",
        "read",
        "--processor",
        "filter",
    ]);
    let out = apply("alice");
    assert!(out.success, "{}", out.stderr);

    let records: String = (0..30)
        .map(|i| {
            format!(
                "{{\"n\":{i},\"region\":\"{}\"}}\n",
                ["north", "south", "east"][i % 3]
            )
        })
        .collect();
    s.as_user_ok(ADMIN, &["produce", "in"], records.as_bytes());
    let out = s.as_user_ok(ADMIN, &["consume", "out", "-B", "-n", "10"], b"");
    assert_eq!(out.lines().count(), 10, "{out}");
    let described = s.as_user_ok("alice", &["pipeline", "describe", "north"], b"");
    assert!(described.contains("runs as User:alice"), "{described}");

    // Revoking the owner's read right stops the pipeline, with the reason.
    s.as_user_ok(
        ADMIN,
        &[
            "acl",
            "remove",
            "--allow",
            "User:alice",
            "--operation",
            "read",
            "--topic",
            "in",
        ],
        b"",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let d = s.as_user_ok(ADMIN, &["pipeline", "describe", "north"], b"");
        if d.contains("failed") {
            break d;
        }
        assert!(Instant::now() < deadline, "the pipeline kept running:\n{d}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        failed.contains("may no longer read topic \"in\"") && failed.contains("(permission)"),
        "{failed}"
    );
    let out = s.as_user(ADMIN, &["pipeline", "resume", "north"], b"");
    assert!(
        !out.success && out.stderr.contains("cannot run"),
        "{}",
        out.stderr
    );
    s.grant(&[
        "--allow",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "in",
    ]);
    s.as_user_ok(ADMIN, &["pipeline", "resume", "north"], b"");
}

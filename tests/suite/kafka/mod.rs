//! Kafka clients against Eddy's Kafka listener: Debian's kcat (librdkafka)
//! and PyPI's confluent-kafka and kafka-python, installed by
//! `scripts/kafka-tools` into the target directory, and raw frames for
//! what no client would send.

mod acls;
mod failover;
mod kcat;
mod protocol;
mod python;
mod raw;

use std::process::Command;

use eddy_tests::kafka::tools_dir;

use crate::harness::{Out, TestBroker, run};

/// A broker with a Kafka listener that creates topics clients name.
pub fn kafka_broker() -> TestBroker {
    TestBroker::start_with(&["--kafka-listen", "127.0.0.1:0", "--auto-create-topics"])
}

/// The Kafka address of a broker started with `--kafka-listen`.
pub fn kafka_addr(b: &TestBroker) -> &str {
    b.kafka.as_deref().expect("the broker has a Kafka listener")
}

/// Runs kcat against `broker` (a Kafka address) with `args`, feeding it
/// `input`.
pub fn kcat(broker: &str, args: &[&str], input: &[u8]) -> Out {
    let dir = tools_dir().join("kcat");
    // Bounded: a client waiting on an answer that never comes fails the
    // test instead of hanging it.
    run(
        Command::new("timeout")
            .arg("60")
            .arg(dir.join("bin/kcat"))
            .env("LD_LIBRARY_PATH", dir.join("lib"))
            .args(["-b", broker])
            .args(args),
        input,
    )
}

pub fn kcat_ok(broker: &str, args: &[&str], input: &[u8]) -> String {
    let out = kcat(broker, args, input);
    assert!(
        out.success,
        "kcat {args:?} failed: {}\n{}",
        out.stderr, out.stdout
    );
    out.stdout
}

//! Damaged and full disks: a torn tail on a replica, a flipped bit in a
//! sealed segment (of a single broker, and of a leader with in-sync
//! followers), a data directory that runs out of space; and the proof
//! that the replica checker notices a replica holding different records.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use eddy_proto::v1 as pb;
use eddy_tests::check::{self, Replica};
use eddy_tests::cluster::TestCluster;
use pb::produce_client::ProduceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::grpc::{eddy_code, produce_batch};
use crate::harness::{TestBroker, files, numbered_lines};

/// Every replica of partition 0, read from its files.
fn replicas(cluster: &TestCluster, topic: &str) -> Vec<Replica> {
    cluster.replicas(topic, &cluster.partitions(topic))
}

#[test]
fn a_leader_torn_mid_batch_while_down_cuts_back_and_catches_up_losing_nothing() {
    let mut cluster = TestCluster::start(3, &["--broker-session-timeout-ms", "2000"]);
    cluster.create_replicated("torn", 1);
    let input = numbered_lines(0, 3000);
    cluster.ok_with_input(&["produce", "torn", "--acks", "all"], input.as_bytes());
    let leader = cluster.await_in_sync("torn", Duration::from_secs(30))[0].leader;
    cluster.kill9(leader);
    // The crash cut the last write short: the active segment ends 7 bytes
    // into what was its last batch.
    let segment = files(&cluster.partition_dir(leader, "torn", 0), "log")
        .pop()
        .unwrap();
    let size = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(size - 7)
        .unwrap();
    // The others carry on without it.
    let more = numbered_lines(3000, 3500);
    cluster.ok_with_input(&["produce", "torn", "--acks", "all"], more.as_bytes());
    cluster.start_again(leader);
    let rows = cluster.await_in_sync("torn", Duration::from_secs(60));
    let out = cluster.ok_with_input(&["consume", "torn", "-B", "-n", "3500"], b"");
    assert_eq!(
        out,
        numbered_lines(0, 3500),
        "every acknowledged record, once, in order"
    );
    let hw = [(0, rows[0].high_watermark)].into();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reps = replicas(&cluster, "torn");
        let agree = check::replicas_agree(&reps, &hw);
        agree.assert_passed();
        if reps
            .iter()
            .all(|r| r.records.len() as u64 >= rows[0].high_watermark)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker {leader} did not catch up to {}: holds {:?}",
            rows[0].high_watermark,
            reps.iter().map(|r| r.records.len()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the replica checker exists for: a replica that acknowledged a
/// write and then holds something else. Here one follower's copy of a
/// record is rewritten in place (its batch CRC made right again, so Eddy
/// itself cannot tell) and the checker must name the offset.
#[test]
fn the_replica_checker_names_a_replica_whose_record_was_changed() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.create_replicated("agree", 1);
    cluster.ok_with_input(
        &["produce", "agree", "--acks", "all"],
        numbered_lines(0, 200).as_bytes(),
    );
    let rows = cluster.await_in_sync("agree", Duration::from_secs(30));
    let hw = [(0, rows[0].high_watermark)].into();
    let follower = *rows[0]
        .replicas
        .iter()
        .find(|&&r| r != rows[0].leader)
        .unwrap();
    check::replicas_agree(&replicas(&cluster, "agree"), &hw).assert_passed();
    cluster.kill9(follower);
    let segment = files(&cluster.partition_dir(follower, "agree", 0), "log")
        .pop()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = find(&bytes, b"record-00123").unwrap();
    bytes[at..at + 12].copy_from_slice(b"record-XXXXX");
    reseal_batch_containing(&mut bytes, at);
    std::fs::write(&segment, &bytes).unwrap();
    let verdict = check::replicas_agree(&replicas(&cluster, "agree"), &hw);
    assert!(!verdict.passed(), "a changed replica went unnoticed");
    assert_eq!(verdict.failures, 1, "{verdict}");
    assert!(
        verdict.examples[0].contains("offset 123")
            && verdict.examples[0].contains(&format!("broker {follower}")),
        "{verdict}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Recomputes the CRC of the stored batch that contains byte `at`.
fn reseal_batch_containing(bytes: &mut [u8], at: usize) {
    let mut pos = 0;
    while pos < bytes.len() {
        let header = eddy_log::BatchHeader::parse(&bytes[pos..]).unwrap();
        let end = pos + header.total_len();
        if at < end {
            // Kafka v2: the CRC (bytes 17..21) covers attributes (21..) to the end.
            let crc = crc32c::crc32c(&bytes[pos + 21..end]);
            bytes[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
            return;
        }
        pos = end;
    }
    panic!("byte {at} is past the last batch");
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_reported_and_the_rest_is_still_served() {
    let mut b = TestBroker::start();
    b.ok(&[
        "topic",
        "create",
        "rot",
        "-p",
        "1",
        "--config",
        "segment.bytes=4096",
    ]);
    for chunk in six_hundred_in_chunks() {
        b.ok_with_input(&["produce", "rot"], chunk.as_bytes());
    }
    b.terminate();
    let segments = files(&b.partition_dir("rot", 0), "log");
    assert!(
        segments.len() >= 3,
        "expected several segments: {segments:?}"
    );
    let sealed = &segments[0];
    flip_a_bit(sealed);
    b.start_again();

    let out = b.eddy(&["consume", "rot", "-B", "-n", "600"]);
    assert!(!out.success, "damaged records were served: {}", out.stdout);
    assert!(
        out.stderr.contains("corrupt")
            && out
                .stderr
                .contains(&sealed.file_name().unwrap().to_string_lossy().to_string()),
        "the error names the damage and the file: {}",
        out.stderr
    );
    // Records in the later segments are still served, and writes go on.
    let second: u64 = segments[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let rest = b.ok(&[
        "consume",
        "rot",
        "-p",
        "0",
        "--offset",
        &second.to_string(),
        "-n",
        &(600 - second).to_string(),
    ]);
    assert_eq!(rest, numbered_lines(second as usize, 600));
    b.ok_with_input(&["produce", "rot"], b"after\n");
}

/// Records 0..600 as six `produce` inputs: in small segments (4 KiB) they
/// fill several.
fn six_hundred_in_chunks() -> Vec<String> {
    numbered_lines(0, 600)
        .lines()
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|c| c.join("\n") + "\n")
        .collect()
}

/// Flips one bit in the middle of `file`, in place (a running broker
/// reading it sees the change).
fn flip_a_bit(file: &std::path::Path) {
    let len = std::fs::metadata(file).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    std::io::Read::read_exact(&mut f, &mut byte).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[byte[0] ^ 0x10]).unwrap();
}

/// A leader whose sealed segment rots under it cannot serve those
/// records: the read that finds the damage hands the partition to an
/// in-sync follower, whose copy is intact, and the old leader cuts its log
/// there and copies the records again.
#[test]
fn a_leader_whose_records_rot_hands_over_and_copies_them_again() {
    let cluster = TestCluster::start(3, &["--broker-session-timeout-ms", "2000"]);
    cluster.ok_at(
        1,
        &[
            "topic",
            "create",
            "rot",
            "-p",
            "1",
            "-r",
            "3",
            "--config",
            "min.insync.replicas=2",
            "--config",
            "segment.bytes=4096",
        ],
    );
    for chunk in six_hundred_in_chunks() {
        cluster.ok_with_input(&["produce", "rot", "--acks", "all"], chunk.as_bytes());
    }
    let before = cluster.await_in_sync("rot", Duration::from_secs(30))[0].clone();
    let damaged = before.leader;
    let segments = files(&cluster.partition_dir(damaged, "rot", 0), "log");
    assert!(
        segments.len() >= 3,
        "expected several segments: {segments:?}"
    );
    flip_a_bit(&segments[0]);

    // The leader finds the damage when a consumer reads it.
    let out = cluster.eddy(&["consume", "rot", "-B", "-n", "600"]);
    assert!(
        !out.success && out.stderr.contains("corrupt"),
        "the first read names the damage: {}{}",
        out.stdout,
        out.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let row = cluster.partitions("rot")[0].clone();
        if row.leader > 0 && row.leader != damaged {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "broker {damaged} kept leading its damaged replica: {row:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(after.epoch > before.epoch, "{after:?} after {before:?}");
    assert_eq!(
        cluster.ok_with_input(&["consume", "rot", "-B", "-n", "600"], b""),
        numbered_lines(0, 600),
        "the new leader serves every record"
    );
    // The old leader copies them again and is back in sync, its files
    // agreeing with the others' at every offset.
    let rows = cluster.await_in_sync("rot", Duration::from_secs(30));
    let reps = replicas(&cluster, "rot");
    check::replicas_agree(&reps, &[(0, rows[0].high_watermark)].into()).assert_passed();
    let copied = reps.iter().find(|r| r.broker == damaged).unwrap();
    assert_eq!(
        copied.records.len() as u64,
        rows[0].high_watermark,
        "broker {damaged} holds every record again"
    );
}

/// A size-limited tmpfs mounted for one test; unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    /// A `size`-byte filesystem, or `None` when this process may not
    /// mount one (not root).
    fn mount(size: &str) -> Option<SmallDisk> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir, _tmp: tmp })
    }

    /// Fills the disk, then gives `keep` bytes back; returns the filler.
    fn fill_leaving(&self, keep: u64) -> PathBuf {
        let filler = self.dir.join(format!("filler-{keep}"));
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        let len = std::fs::metadata(&filler).unwrap().len();
        f.set_len(len.saturating_sub(keep)).unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A broker keeping its data on `disk`, with `extra` `eddy serve`
/// arguments, and a raw gRPC client for its Produce service.
async fn broker_on(disk: &SmallDisk, extra: &[&str]) -> (TestBroker, ProduceClient<Channel>) {
    let data = disk.dir.join("data");
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let b = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        TestBroker::start_in(&data, &extra)
    })
    .await
    .unwrap();
    let channel = Channel::from_shared(format!("http://{}", b.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (b, ProduceClient::new(channel))
}

/// Values `from..from + 100` (about 10 KiB), stamped now, as one acks=all
/// produce request to partition 0 of `topic`.
fn hundred(topic: &str, from: usize) -> (Vec<String>, pb::ProduceRequest) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let values: Vec<String> = (from..from + 100)
        .map(|i| format!("{i:08}-{}", "v".repeat(90)))
        .collect();
    let mut builder = eddy_log::BatchBuilder::new();
    for v in &values {
        builder.push(&eddy_log::RecordRef {
            timestamp: eddy_log::Timestamp(now),
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    let request = produce_batch(topic, 0, builder.finish().unwrap().into(), pb::Acks::All);
    (values, request)
}

/// Sends hundreds from `*next` on until one is refused; returns the
/// refusal and adds what was acknowledged to `acked`.
async fn produce_until_refused(
    produce: &mut ProduceClient<Channel>,
    topic: &str,
    next: &mut usize,
    acked: &mut Vec<String>,
) -> tonic::Status {
    loop {
        let (values, request) = hundred(topic, *next);
        *next += 100;
        match produce.produce(request).await {
            Ok(_) => acked.extend(values),
            Err(status) => return status,
        }
        assert!(*next < 100_000, "3 MiB never filled up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_keeps_reads_and_recovers_losing_nothing() {
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let (b, mut produce) = broker_on(&disk, &[]).await;
    b.ok(&["topic", "create", "full", "-p", "1"]);
    let filler = disk.fill_leaving(3 << 20);
    let mut acked: Vec<String> = Vec::new();
    let mut next = 0usize;
    let refusal = produce_until_refused(&mut produce, "full", &mut next, &mut acked).await;
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert_eq!(eddy_code(&refusal), "STORAGE_ERROR", "{refusal:?}");
    assert!(
        refusal.message().contains("disk is full") && refusal.message().contains("free space"),
        "the refusal says what is wrong and what to do: {}",
        refusal.message()
    );
    assert!(
        acked.len() >= 10_000,
        "only {} records fitted in 3 MiB",
        acked.len()
    );
    // Reads go on while the disk is full.
    let n = acked.len().to_string();
    let read = b.ok(&["consume", "full", "-B", "-n", &n]);
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        acked,
        "every acknowledged record, in order"
    );

    // A metadata change needs the disk too: refused, saying so. (This
    // once stopped openraft's core until the broker was restarted.)
    let rest = disk.fill_leaving(0);
    let refused = b.eddy(&["topic", "create", "while-full", "-p", "1"]);
    assert!(
        !refused.success
            && refused.stderr.contains("could not write the metadata log")
            && refused.stderr.contains("free space"),
        "the refusal says what is wrong and what to do: {}",
        refused.stderr
    );

    // Space comes back: writes go on where they stopped.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&rest).unwrap();
    // The metadata quorum starts again by itself within a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let created = b.eddy(&["topic", "create", "after-full", "-p", "1"]);
        if created.success {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metadata changes still refused after space came back: {}",
            created.stderr
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (values, request) = hundred("full", next);
    produce
        .produce(request)
        .await
        .expect("writes work again once there is space");
    acked.extend(values);
    let n = acked.len().to_string();
    let read = b.ok(&["consume", "full", "-B", "-n", &n]);
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        acked,
        "nothing lost, nothing doubled"
    );
    drop(b);
}

/// Retention is what frees a full disk, so it must run while the other
/// housekeeping writes (flushes, producer snapshots) fail for want of
/// space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_frees_a_full_disk_and_writes_go_on() {
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let (b, mut produce) = broker_on(&disk, &["--retention-check-interval-ms", "200"]).await;
    b.ok(&[
        "topic",
        "create",
        "kept",
        "-p",
        "1",
        "--config",
        "segment.bytes=262144",
        "--config",
        "retention.ms=15000",
    ]);
    disk.fill_leaving(3 << 20);
    // The records are stamped now, so that retention deletes them 15 s
    // from now.
    let mut next = 0;
    let started = std::time::Instant::now();
    let refusal = produce_until_refused(&mut produce, "kept", &mut next, &mut Vec::new()).await;
    assert_eq!(eddy_code(&refusal), "STORAGE_ERROR", "{refusal:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "filling took longer than retention keeps records; the test proves nothing"
    );
    // Nobody frees space by hand: once the first records are 15 s old,
    // retention deletes their segments on the full disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (_, request) = hundred("kept", next);
        next += 100;
        match produce.produce(request).await {
            Ok(_) => break,
            Err(status) => assert!(
                std::time::Instant::now() < deadline,
                "writes still refused 40 s after the disk filled: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(b);
}

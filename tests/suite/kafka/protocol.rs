//! What no well-behaved client sends: versions the broker does not know,
//! malformed and oversized frames. Each is answered as Kafka's protocol
//! says or closes only its own connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{kafka_addr, kafka_broker, kcat_ok};

const API_VERSIONS: i16 = 18;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A request frame: header v1 (key, version, correlation id, client id)
/// and `body`.
fn request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client = b"raw-test";
    let mut frame = Vec::new();
    frame.extend_from_slice(&key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(client.len() as i16).to_be_bytes());
    frame.extend_from_slice(client);
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

/// The next response frame, or `None` if the broker closed the connection.
fn response(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// An ApiVersions v0 answer: (correlation id, error code, (key, min, max)s).
fn api_versions_v0(b: &[u8]) -> (i32, i16, Vec<(i16, i16, i16)>) {
    let correlation = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let error = i16_at(b, 4);
    let n = i32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
    let apis = (0..n)
        .map(|i| {
            let at = 10 + i * 6;
            (i16_at(b, at), i16_at(b, at + 2), i16_at(b, at + 4))
        })
        .collect();
    (correlation, error, apis)
}

#[test]
fn api_versions_answers_every_version_it_knows_and_a_newer_one_with_the_list() {
    let b = kafka_broker();
    let mut s = connect(kafka_addr(&b));
    s.write_all(&request(API_VERSIONS, 0, 7, b"")).unwrap();
    let (correlation, error, apis) = api_versions_v0(&response(&mut s).unwrap());
    assert_eq!((correlation, error), (7, 0));
    let produce = apis.iter().find(|a| a.0 == 0).copied();
    assert_eq!(
        produce.map(|p| p.1),
        Some(0),
        "Produce is advertised from version 0, or librdkafka turns compression off"
    );
    assert!(apis.iter().any(|a| a.0 == 1), "Fetch: {apis:?}");
    assert!(
        !apis.iter().any(|a| (24..=28).contains(&a.0)),
        "no transaction API is advertised: {apis:?}"
    );

    // A version from the future: error 35 and the list, in version 0.
    s.write_all(&request(API_VERSIONS, 99, 8, b"")).unwrap();
    let (correlation, error, newer) = api_versions_v0(&response(&mut s).unwrap());
    assert_eq!((correlation, error), (8, 35));
    assert_eq!(newer, apis);
}

#[test]
fn a_bad_frame_closes_its_own_connection_and_no_other() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    let mut bystander = connect(kafka);

    // A Metadata v1 body cut short.
    let mut s = connect(kafka);
    s.write_all(&request(3, 1, 1, &[0, 0, 0, 5, 0])).unwrap();
    assert!(
        response(&mut s).is_none(),
        "a malformed request closes its connection"
    );

    // An API key no broker has.
    let mut s = connect(kafka);
    s.write_all(&request(999, 0, 1, b"")).unwrap();
    assert!(response(&mut s).is_none());

    // A version of Produce no client may send (below the served 3).
    let mut s = connect(kafka);
    s.write_all(&request(0, 2, 1, b"")).unwrap();
    assert!(response(&mut s).is_none());

    // A frame larger than the broker takes: refused before it is read.
    let mut s = connect(kafka);
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(response(&mut s).is_none());

    // Shorter than a header.
    let mut s = connect(kafka);
    s.write_all(&[0, 0, 0, 2, 0, 18]).unwrap();
    assert!(response(&mut s).is_none());

    bystander
        .write_all(&request(API_VERSIONS, 1, 42, b""))
        .unwrap();
    let answer = response(&mut bystander).expect("the other connection is served");
    assert_eq!(
        i32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]),
        42
    );
    kcat_ok(kafka, &["-L"], b"");
}

/// OffsetForLeaderEpoch, with which a consumer checks that the log it read
/// was not cut back under it: the current epoch ends at the log end, and
/// a client ahead of or behind the leader's epoch is told which.
#[test]
fn offset_for_leader_epoch_answers_where_each_epoch_ended() {
    use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{RequestKind, ResponseKind};

    use super::raw::{Raw, topic_name};

    let b = kafka_broker();
    b.ok(&["topic", "create", "epochs", "-p", "1"]);
    b.ok_with_input(&["produce", "epochs"], b"a\nb\nc\n");
    let mut raw = Raw::connect(kafka_addr(&b));
    let metadata = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("epochs"))),
    ])));
    let ResponseKind::Metadata(m) = raw.send(&metadata, 12) else {
        unreachable!()
    };
    let epoch = m.topics[0].partitions[0].leader_epoch;
    let ask = |current: i32, wanted: i32| {
        RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(topic_name("epochs"))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(wanted),
                    ]),
            ]))
    };
    let mut answer = |request| match raw.send(&request, 4) {
        ResponseKind::OffsetForLeaderEpoch(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.leader_epoch, p.end_offset)
        }
        _ => unreachable!(),
    };
    assert_eq!(answer(ask(epoch, epoch)), (0, epoch, 3));
    assert_eq!(
        answer(ask(-1, epoch + 5)),
        (0, epoch, 3),
        "a newer epoch than any here"
    );
    assert_eq!(answer(ask(epoch + 1, epoch)).0, 75, "UNKNOWN_LEADER_EPOCH");
    if epoch > 0 {
        assert_eq!(answer(ask(epoch - 1, epoch)).0, 74, "FENCED_LEADER_EPOCH");
    }
}

/// ListOffsets by time answers the first record at or after it, with that
/// record's own timestamp (Java's `offsetsForTimes` needs it).
#[test]
fn list_offsets_by_timestamp_answers_the_record_found_and_its_time() {
    use bytes::Bytes;
    use eddy_log::{BatchBuilder, RecordRef, Timestamp};
    use kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    use kafka_protocol::messages::{RequestKind, ResponseKind};

    use super::raw::{Raw, topic_name};

    let b = kafka_broker();
    b.ok(&["topic", "create", "timed", "-p", "1"]);
    let mut raw = Raw::connect(kafka_addr(&b));
    let mut batch = BatchBuilder::new();
    for ts in [1_000, 2_000, 3_000] {
        batch.push(&RecordRef {
            timestamp: Timestamp(ts),
            key: None,
            value: Some(b"x"),
            headers: &[],
        });
    }
    let produce = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name("timed"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(batch.finish().unwrap()))),
                    ]),
            ]),
    );
    let ResponseKind::Produce(p) = raw.send(&produce, 9) else {
        unreachable!()
    };
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    let mut at = |time: i64| {
        let request = RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name("timed"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(time),
                ]),
        ]));
        match raw.send(&request, 6) {
            ResponseKind::ListOffsets(l) => {
                let p = &l.topics[0].partitions[0];
                (p.error_code, p.offset, p.timestamp)
            }
            _ => unreachable!(),
        }
    };
    assert_eq!(at(1_500), (0, 1, 2_000));
    assert_eq!(at(1_000), (0, 0, 1_000));
    assert_eq!(at(9_000), (0, 3, -1), "past every record: the log end");
    assert_eq!(at(-2), (0, 0, -1), "earliest");
    assert_eq!(at(-1), (0, 3, -1), "latest");
}

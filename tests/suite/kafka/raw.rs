//! Raw Kafka requests, encoded and their answers decoded by the
//! `kafka-protocol` crate, for what tests check below any client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

pub fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}

/// A connection speaking raw Kafka requests.
pub struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    /// Signs in as `user` with SASL/PLAIN.
    pub fn sign_in(&mut self, user: &str, password: &str) {
        let handshake = SaslHandshakeRequest::default().with_mechanism(text("PLAIN"));
        let ResponseKind::SaslHandshake(h) = self.send(&RequestKind::SaslHandshake(handshake), 1)
        else {
            unreachable!()
        };
        assert_eq!(h.error_code, 0, "{h:?}");
        let message = format!("\0{user}\0{password}");
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let ResponseKind::SaslAuthenticate(a) = self.send(&RequestKind::SaslAuthenticate(auth), 2)
        else {
            unreachable!()
        };
        assert_eq!(a.error_code, 0, "{a:?}");
    }

    pub fn send(&mut self, request: &RequestKind, version: i16) -> ResponseKind {
        let api = api_key(request);
        self.correlation += 1;
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(text("acl-test")))
            .encode(&mut frame, api.request_header_version(version))
            .unwrap();
        request.encode(&mut frame, version).unwrap();
        self.stream
            .write_all(&(frame.len() as i32).to_be_bytes())
            .unwrap();
        self.stream.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: no answer: {e}"));
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut body,
            api.response_header_version(version),
        )
        .unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        ResponseKind::decode(api, &mut body, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: bad answer: {e}"))
    }
}

pub fn api_key(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::DescribeCluster(_) => ApiKey::DescribeCluster,
        RequestKind::SaslHandshake(_) => ApiKey::SaslHandshake,
        RequestKind::SaslAuthenticate(_) => ApiKey::SaslAuthenticate,
        other => panic!("add {other:?} to api_key"),
    }
}

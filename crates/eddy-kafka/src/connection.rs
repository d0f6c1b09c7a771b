//! One client connection: read a frame, check its API and version, decode
//! it, let its handler answer, write the answer; one request at a time, so
//! answers keep the order of the requests (as Kafka's brokers do).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use eddy_broker::auth::{Principal, Rate};
use eddy_meta::{Operation, ResourceType};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::frame::{self, FrameError};
use crate::sasl::SignIn;
use crate::{
    Shared, admin, configs, fetch, group_admin, groups, metadata, produce, sasl, versions,
};

/// Who is on the other end of a connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub peer: SocketAddr,
    pub principal: Principal,
    /// The client's name for itself, from its latest request header.
    pub client_id: String,
    pub sign_in: SignIn,
    /// Close the connection once this answer is written (a failed sign-in).
    pub close_after_answer: bool,
    /// Read no request for this long after writing the answer: the
    /// principal went past its produce or fetch quota (Kafka mutes the
    /// connection the same way, and says so in `throttle_time_ms`).
    pub mute: Duration,
}

impl Session {
    /// Whether this connection's principal may do `operation` on the
    /// resource; a refusal goes to the audit log, as gRPC's do.
    pub fn may(
        &self,
        shared: &Shared,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> bool {
        let allowed = shared
            .broker
            .authorizer
            .allows(&self.principal, resource, name, operation);
        if !allowed {
            tracing::warn!(
                target: "eddy::audit",
                principal = %self.principal,
                peer = %self.peer,
                %resource,
                name,
                %operation,
                listener = "kafka",
                "denied"
            );
        }
        allowed
    }

    /// Charges `bytes` of `rate` to the principal's quota; past it, the
    /// connection is muted after this answer, for the milliseconds
    /// returned (for the answer's `throttle_time_ms`).
    pub fn throttle(&mut self, shared: &Shared, rate: Rate, bytes: usize) -> i32 {
        self.mute = shared
            .broker
            .authorizer
            .throttle(&self.principal, rate, bytes as u64);
        i32::try_from(self.mute.as_millis()).unwrap_or(i32::MAX)
    }

    /// Kafka's `authorized_operations` bit field: of `operations`, those
    /// the principal may do on the resource (asking is not refused, so
    /// nothing is audited).
    pub fn authorized_operations(
        &self,
        shared: &Shared,
        resource: ResourceType,
        name: &str,
        operations: &[Operation],
    ) -> i32 {
        operations
            .iter()
            .filter(|op| {
                shared
                    .broker
                    .authorizer
                    .allows(&self.principal, resource, name, **op)
            })
            .filter_map(|op| acl_operation_code(*op))
            .fold(0, |bits, code| bits | 1 << code)
    }
}

/// Kafka's code for an ACL operation (`AclOperation`).
fn acl_operation_code(op: Operation) -> Option<i32> {
    Some(match op {
        Operation::All => 2,
        Operation::Read => 3,
        Operation::Write => 4,
        Operation::Create => 5,
        Operation::Delete => 6,
        Operation::Alter => 7,
        Operation::Describe => 8,
        Operation::ClusterAction => 9,
        Operation::Upload | Operation::Apply => return None,
    })
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
enum Closing {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the frame is too short for a request header")]
    Short,
    #[error(
        "API key {0} is not one this broker serves (see ApiVersions); the client must not send it"
    )]
    UnknownApi(i16),
    #[error(
        "{api:?} version {version} is not served here (versions {min}..={max}; see ApiVersions)"
    )]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} v{version} answer: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{0}")]
    Write(std::io::Error),
    #[error("the client failed to sign in")]
    SignInFailed,
    #[error("no handler for a served API (a bug in Eddy; please report it): {0:.200}")]
    NoHandler(String),
}

/// Serves one connection, plain or TLS; `certificate_name` is the common
/// name of the client certificate TLS verified, which is the connection's
/// principal until it signs in with SASL.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    certificate_name: Option<String>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(64 << 10, reader);
    let principal = certificate_name
        .filter(|name| eddy_meta::validate_user_name(name).is_ok())
        .map_or(Principal::Anonymous, Principal::User);
    let mut session = Session {
        peer,
        principal,
        client_id: String::new(),
        sign_in: SignIn::Idle,
        close_after_answer: false,
        mute: Duration::ZERO,
    };
    let closing = loop {
        let frame = tokio::select! {
            f = frame::read(&mut reader, shared.config.frame_bytes_max) => f,
            _ = stopped.changed() => return,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => break Closing::from(e),
        };
        match answer(frame, &shared, &mut session).await {
            Ok(Some(response)) => {
                if let Err(e) = writer.write_all(&response).await {
                    break Closing::Write(e);
                }
                if session.close_after_answer {
                    break Closing::SignInFailed;
                }
            }
            Ok(None) => {}
            Err(e) => break e,
        }
        let mute = std::mem::take(&mut session.mute);
        if !mute.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(mute) => {}
                _ = stopped.changed() => return,
            }
        }
    };
    match closing {
        Closing::Frame(FrameError::Io(_)) | Closing::Write(_) => {
            tracing::debug!(%peer, reason = %closing, "Kafka connection lost");
        }
        _ => tracing::warn!(%peer, reason = %closing, "closing a Kafka connection"),
    }
}

/// The encoded answer to one request frame; `None` for a request that
/// gets none (Produce with acks=0).
async fn answer(
    frame: Bytes,
    shared: &Shared,
    session: &mut Session,
) -> Result<Option<BytesMut>, Closing> {
    if frame.len() < 8 {
        return Err(Closing::Short);
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|()| Closing::UnknownApi(key))?;
    let Some(served) = versions::lookup(api) else {
        return Err(Closing::UnknownApi(key));
    };
    if !served.serves(version) {
        if api == ApiKey::ApiVersions {
            // Kafka's rule: a newer client learns what is served from a
            // version 0 answer it can always read.
            let response = ResponseKind::ApiVersions(versions::api_versions(
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
            ));
            return encode(api, 0, correlation_id, &response).map(Some);
        }
        return Err(Closing::UnsupportedVersion {
            api,
            version,
            min: served.min,
            max: served.max,
        });
    }
    let malformed = |e: anyhow::Error| Closing::Malformed {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let mut body = frame;
    let header =
        RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(malformed)?;
    let request = RequestKind::decode(api, &mut body, version).map_err(malformed)?;
    if let Some(client) = &header.client_id
        && client.as_str() != session.client_id
    {
        session.client_id = client.to_string();
    }
    let response = handle(request, version, shared, session).await?;
    match response {
        Some(r) => encode(api, version, header.correlation_id, &r).map(Some),
        None => Ok(None),
    }
}

/// Lets the request's handler answer it; `None`: it gets no answer.
async fn handle(
    request: RequestKind,
    version: i16,
    shared: &Shared,
    session: &mut Session,
) -> Result<Option<ResponseKind>, Closing> {
    Ok(Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(versions::api_versions(0)),
        RequestKind::SaslHandshake(r) => {
            ResponseKind::SaslHandshake(sasl::handshake(r, shared, session))
        }
        RequestKind::SaslAuthenticate(r) => {
            ResponseKind::SaslAuthenticate(sasl::authenticate(r, shared, session).await)
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(r, version, shared, session).await)
        }
        RequestKind::Produce(r) => {
            let bytes: usize = r
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .filter_map(|p| p.records.as_ref().map(|b| b.len()))
                .sum();
            let answer = produce::handle(r, version, shared, session).await;
            let throttle = session.throttle(shared, Rate::Produce, bytes);
            match answer {
                Some(response) => ResponseKind::Produce(response.with_throttle_time_ms(throttle)),
                None => return Ok(None),
            }
        }
        RequestKind::Fetch(r) => {
            let response = fetch::fetch(r, version, shared, session).await;
            let bytes: usize = response
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.records.as_ref().map(|b| b.len()))
                .sum();
            let throttle = session.throttle(shared, Rate::Fetch, bytes);
            ResponseKind::Fetch(response.with_throttle_time_ms(throttle))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            groups::find_coordinator(r, version, shared, session).await,
        ),
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join_group(r, version, shared, session).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(r, version, shared, session).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::heartbeat(r, shared, session).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(r, version, shared, session).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(r, shared, session).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(r, version, shared, session).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(produce::init_producer_id(r, shared, session).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(r, version, shared, session).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(r, version, shared, session).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(fetch::list_offsets(r, version, shared, session).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(fetch::offset_for_leader_epoch(r, shared, session))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(group_admin::list_groups(r, version, shared, session).await)
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            group_admin::describe_groups(r, version, shared, session).await,
        ),
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe_configs(r, version, shared, session))
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(r, shared, session).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(r, version, shared, session))
        }
        // `versions::lookup` lets through only the APIs above.
        other => return Err(Closing::NoHandler(format!("{other:?}"))),
    }))
}

/// A response frame: length, header, body.
fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<BytesMut, Closing> {
    let failed = |e: anyhow::Error| Closing::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .map_err(failed)?;
    response.encode(&mut out, version).map_err(failed)?;
    let len = i32::try_from(out.len() - 4).map_err(|_| Closing::Encode {
        api,
        version,
        reason: "the answer is larger than 2 GiB".into(),
    })?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

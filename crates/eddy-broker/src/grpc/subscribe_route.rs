//! `Consume/Subscribe` served without copying the batches it streams.
//!
//! tonic encodes every streamed message into one contiguous buffer, so each
//! megabyte of stored batches a subscription sends would be copied once
//! more (into freshly faulted-in memory) before the socket copy. This route
//! answers Subscribe itself: each message goes out as three pieces — the
//! gRPC frame header with the `batches` field's tag and length, the stored
//! batches `Bytes` exactly as the log returned them, and the message's other
//! fields encoded by prost — which HTTP/2 hands to the socket with vectored
//! writes. The wire format is unchanged: any gRPC client decodes it. Every
//! other Consume method goes to the generated server.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use eddy_proto::v1::{SubscribeRequest, SubscribeResponse, consume_server::ConsumeServer};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use super::Service;
use crate::broker::Broker;

const SUBSCRIBE_PATH: &str = "/eddy.v1.Consume/Subscribe";
/// `SubscribeResponse.batches` is field 1, length-delimited.
const BATCHES_KEY: u8 = (1 << 3) | 2;
/// gRPC frame header: a compression flag and a big-endian length.
const FRAME_HEADER_BYTES: usize = 5;

/// The Consume service: Subscribe by hand, the rest generated.
#[derive(Debug, Clone)]
pub(crate) struct ConsumeRoutes {
    generated: ConsumeServer<Service>,
    broker: Arc<Broker>,
}

impl ConsumeRoutes {
    pub fn new(generated: ConsumeServer<Service>, broker: Arc<Broker>) -> ConsumeRoutes {
        ConsumeRoutes { generated, broker }
    }
}

impl NamedService for ConsumeRoutes {
    const NAME: &'static str = <ConsumeServer<Service> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for ConsumeRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != SUBSCRIBE_PATH {
            let mut generated = self.generated.clone();
            return Box::pin(async move { tower::Service::call(&mut generated, req).await });
        }
        let broker = self.broker.clone();
        Box::pin(async move {
            Ok(match subscribe(broker, req).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            })
        })
    }
}

async fn subscribe(
    broker: Arc<Broker>,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let caller = crate::auth::Caller::of_http(&req)?;
    let limit = broker.config.limits.request_bytes_max;
    let body = http_body_util::Limited::new(req.into_body(), limit + FRAME_HEADER_BYTES)
        .collect()
        .await
        .map_err(|e| {
            Status::invalid_argument(format!(
                "cannot read the Subscribe request ({e}); requests are limited to {limit} bytes (request_bytes_max)"
            ))
        })?
        .to_bytes();
    let request = decode_request(&body)?;
    caller.check([request.topic.as_str()])?;
    let rx =
        crate::auth::quota::throttled(super::data::subscribe(&broker, &request).await?, &caller);
    let mut response = http::Response::new(Body::new(SubscribeBody {
        rx,
        pending: VecDeque::new(),
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// The one uncompressed gRPC message of a unary request.
fn decode_request(body: &[u8]) -> Result<SubscribeRequest, Status> {
    let malformed =
        |why: &str| Status::invalid_argument(format!("malformed Subscribe request: {why}"));
    if body.len() < FRAME_HEADER_BYTES {
        return Err(malformed("shorter than a gRPC frame header"));
    }
    if body[0] != 0 {
        return Err(Status::unimplemented(
            "compressed Subscribe requests are not supported; send it uncompressed",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = body
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)
        .ok_or_else(|| malformed("the frame is shorter than its length says"))?;
    if body.len() != FRAME_HEADER_BYTES + len {
        return Err(malformed("a unary call carries exactly one message"));
    }
    SubscribeRequest::decode(message).map_err(|e| malformed(&e.to_string()))
}

/// The streamed response: each message as its pieces, then the trailers.
struct SubscribeBody {
    rx: mpsc::Receiver<Result<SubscribeResponse, Status>>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl http_body::Body for SubscribeBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(piece) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let status = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(message))) => {
                self.pending = encode_pieces(message);
                let first = self.pending.pop_front().unwrap_or_default();
                return Poll::Ready(Some(Ok(Frame::data(first))));
            }
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            trailers.clear();
            let _ = Status::internal(format!("cannot encode the stream's status: {e}"))
                .add_header(&mut trailers);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

/// One gRPC message in pieces, the batches not copied: frame header plus
/// the `batches` field's key and length, the batches, the other fields.
fn encode_pieces(mut message: SubscribeResponse) -> VecDeque<Bytes> {
    let batches = std::mem::take(&mut message.batches);
    let rest = message.encode_to_vec();
    let mut head = BytesMut::with_capacity(FRAME_HEADER_BYTES + 1 + 10);
    let field_len = if batches.is_empty() {
        0
    } else {
        1 + prost::encoding::encoded_len_varint(batches.len() as u64) + batches.len()
    };
    let message_len = field_len + rest.len();
    head.put_u8(0);
    // Batches are capped far below 4 GiB (fetch_bytes_max), so this fits.
    head.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
    if !batches.is_empty() {
        head.put_u8(BATCHES_KEY);
        prost::encoding::encode_varint(batches.len() as u64, &mut head);
    }
    let mut pieces = VecDeque::with_capacity(3);
    pieces.push_back(head.freeze());
    if !batches.is_empty() {
        pieces.push_back(batches);
    }
    if !rest.is_empty() {
        pieces.push_back(Bytes::from(rest));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pieces_decode_as_the_message_prost_would_have_sent() {
        let message = SubscribeResponse {
            batches: Bytes::from(vec![7u8; 300]),
            records: Vec::new(),
            high_watermark: 12,
            next_offset: 9,
        };
        let joined: Vec<u8> = encode_pieces(message.clone())
            .into_iter()
            .flat_map(|b| b.to_vec())
            .collect();
        let len = u32::from_be_bytes([joined[1], joined[2], joined[3], joined[4]]) as usize;
        assert_eq!(joined[0], 0);
        assert_eq!(len, joined.len() - FRAME_HEADER_BYTES);
        let decoded = SubscribeResponse::decode(&joined[FRAME_HEADER_BYTES..]);
        assert_eq!(decoded.ok(), Some(message));
    }
}

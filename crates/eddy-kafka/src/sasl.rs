//! Signing in: SaslHandshake picks a mechanism, SaslAuthenticate carries
//! its messages. SCRAM-SHA-256 (the password never crosses the wire) and
//! PLAIN check the same users, with the same slowdown after failures, as
//! gRPC's passwords. PLAIN sends the password itself, so it is offered
//! only where nobody can listen in: on a loopback listener.
//!
//! A connection that never signs in is `User:ANONYMOUS`, which under
//! `--auth required` may do nothing. A failed sign-in is answered and
//! the connection closed, as Kafka's brokers do.

use bytes::Bytes;
use eddy_broker::auth::{Principal, ScramExchange};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::protocol::StrBytes;

use crate::Shared;
use crate::connection::Session;

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
const PLAIN: &str = "PLAIN";

/// Where a connection is in signing in.
#[derive(Debug, Default)]
pub(crate) enum SignIn {
    /// No mechanism chosen yet.
    #[default]
    Idle,
    Plain,
    /// SCRAM, waiting for the client's first message.
    ScramFirst,
    /// SCRAM, waiting for the client's proof.
    ScramFinal(Box<ScramExchange>),
    /// Signed in (or failed, and the connection is closing).
    Done,
}

/// The mechanisms this listener offers.
fn mechanisms(shared: &Shared) -> Vec<&'static str> {
    if shared.plain_allowed {
        vec![SCRAM_SHA_256, PLAIN]
    } else {
        vec![SCRAM_SHA_256]
    }
}

pub(crate) fn handshake(
    request: SaslHandshakeRequest,
    shared: &Shared,
    session: &mut Session,
) -> SaslHandshakeResponse {
    let offered = mechanisms(shared);
    let answer = SaslHandshakeResponse::default().with_mechanisms(
        offered
            .iter()
            .map(|m| StrBytes::from_static_str(m))
            .collect(),
    );
    if !matches!(session.sign_in, SignIn::Idle) {
        session.close_after_answer = true;
        return answer.with_error_code(ResponseError::IllegalSaslState.code());
    }
    let asked = request.mechanism.as_str();
    session.sign_in = match asked {
        SCRAM_SHA_256 => SignIn::ScramFirst,
        PLAIN if shared.plain_allowed => SignIn::Plain,
        _ => {
            tracing::warn!(peer = %session.peer, mechanism = asked, "Kafka client asked for a SASL mechanism not offered");
            return answer.with_error_code(ResponseError::UnsupportedSaslMechanism.code());
        }
    };
    answer
}

pub(crate) async fn authenticate(
    request: SaslAuthenticateRequest,
    shared: &Shared,
    session: &mut Session,
) -> SaslAuthenticateResponse {
    let authorizer = &shared.broker.authorizer;
    let peer = session.peer;
    let outcome: Result<(Option<Principal>, Bytes), String> =
        match std::mem::take(&mut session.sign_in) {
            SignIn::Plain => authorizer
                .authenticate_plain(&request.auth_bytes, peer)
                .await
                .map(|p| (Some(p), Bytes::new())),
            SignIn::ScramFirst => authorizer.scram_start(&request.auth_bytes, peer).await.map(
                |(exchange, server_first)| {
                    session.sign_in = SignIn::ScramFinal(Box::new(exchange));
                    (None, Bytes::from(server_first))
                },
            ),
            SignIn::ScramFinal(exchange) => authorizer
                .scram_finish(*exchange, &request.auth_bytes, peer)
                .map(|(p, server_final)| (Some(p), Bytes::from(server_final))),
            SignIn::Idle | SignIn::Done => {
                Err("SaslAuthenticate without a SaslHandshake choosing a mechanism first".into())
            }
        };
    match outcome {
        Ok((principal, reply)) => {
            if let Some(principal) = principal {
                tracing::debug!(%peer, %principal, "Kafka client signed in");
                session.principal = principal;
                session.sign_in = SignIn::Done;
            }
            SaslAuthenticateResponse::default().with_auth_bytes(reply)
        }
        Err(reason) => {
            session.sign_in = SignIn::Done;
            session.close_after_answer = true;
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(reason)))
        }
    }
}

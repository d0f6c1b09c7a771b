use eddy_proto::v1::{ErrorCode, PartitionError};
use tonic::{Code, Status};

/// What went wrong talking to Eddy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {address}: {reason}; is a broker running there? (start one with `eddy dev`)"
    )]
    Connect { address: String, reason: String },
    /// The broker refused or failed the request; its message says why.
    #[error("{message}")]
    Broker {
        code: ErrorCode,
        grpc: Code,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the producer is closed")]
    Closed,
}

impl ClientError {
    /// The kind of failure as the broker named it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Broker { code, .. } => *code,
            ClientError::Connect { .. } => ErrorCode::Unavailable,
            ClientError::Invalid(_) => ErrorCode::InvalidRequest,
            ClientError::Closed => ErrorCode::Unavailable,
        }
    }

    /// Whether trying again (after refreshing metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.code(),
            ErrorCode::Unavailable
                | ErrorCode::NotLeader
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::NotCoordinator
                | ErrorCode::NotController
                | ErrorCode::StreamAborted
        ) || matches!(
            self,
            ClientError::Broker {
                grpc: Code::Unavailable | Code::Cancelled,
                ..
            }
        )
    }

    pub(crate) fn partition(e: &PartitionError) -> ClientError {
        ClientError::Broker {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal),
            grpc: Code::Unknown,
            message: e.message.clone(),
        }
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> ClientError {
        let named = s
            .metadata()
            .get(eddy_proto::ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::from_str_name);
        // Statuses without an Eddy error code did not come from the broker's
        // logic: a dropped connection or a reset stream is worth a retry.
        let code = named.unwrap_or(match s.code() {
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => {
                ErrorCode::Unavailable
            }
            Code::NotFound => ErrorCode::UnknownTopic,
            Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidRequest,
            _ => ErrorCode::Internal,
        });
        let message = if s.message().is_empty() {
            format!("the broker is unavailable ({})", s.code())
        } else {
            s.message().to_string()
        };
        ClientError::Broker {
            code,
            grpc: s.code(),
            message,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

//! The pipeline crate's errors and how they reach clients: a gRPC status
//! whose message says what to do, with the `eddy-error` metadata entry
//! naming the [`ErrorCode`], as the broker's own errors do.

use eddy_broker::BrokerError;
use eddy_proto::v1::ErrorCode;
use tonic::{Code, Status};

/// What can go wrong in the registry, the pipeline service or a worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A component the registry will not store; the message names the problem.
    #[error("{0}")]
    InvalidProcessor(String),
    /// A manifest or request that cannot be applied.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Client(#[from] eddy_client::ClientError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The machine-readable kind.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidProcessor(_) => ErrorCode::InvalidProcessor,
            Error::Invalid(_) => ErrorCode::InvalidRequest,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::LimitExceeded(_) => ErrorCode::LimitExceeded,
            Error::Broker(e) => e.code(),
            Error::Client(e) => e.code(),
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// As a gRPC status with the code name in `eddy-error` metadata.
    pub fn to_status(&self) -> Status {
        if let Error::Broker(e) = self {
            return e.to_status();
        }
        let grpc = match self.code() {
            ErrorCode::InvalidProcessor | ErrorCode::InvalidRequest => Code::InvalidArgument,
            ErrorCode::NotFound | ErrorCode::UnknownTopic => Code::NotFound,
            ErrorCode::LimitExceeded => Code::ResourceExhausted,
            ErrorCode::TopicExists => Code::AlreadyExists,
            ErrorCode::Unavailable => Code::Unavailable,
            _ => Code::Internal,
        };
        let mut status = Status::new(grpc, self.to_string());
        if let Ok(v) = self.code().as_str_name().parse() {
            status
                .metadata_mut()
                .insert(eddy_proto::ERROR_CODE_METADATA, v);
        }
        status
    }
}

impl From<eddy_meta::MetaError> for Error {
    fn from(e: eddy_meta::MetaError) -> Error {
        Error::Broker(BrokerError::Meta(e))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        e.to_status()
    }
}

//! `eddy-proto`: Eddy's gRPC API, package `eddy.v1`.
//!
//! The `.proto` files in `proto/` are the contract; this crate holds only
//! the types and service stubs generated from them. Architecture invariant:
//! no business logic here, and no other crate defines wire types — they
//! convert at their boundary.

#[allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("eddy.v1");
}

/// The encoded `FileDescriptorSet` of every Eddy proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("eddy_descriptor");

/// Name of the gRPC metadata key carrying an [`v1::ErrorCode`] name on failed calls.
pub const ERROR_CODE_METADATA: &str = "eddy-error";

pub mod link;
pub use link::{AuthChannel, ClientTls, Credentials};

//! Security: TLS on the listener and between brokers, users, tokens and
//! ACLs on every RPC.

mod auth;
mod pipelines;
mod readme;
mod rpcs;
mod tls;

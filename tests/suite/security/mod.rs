//! Security: TLS on the listener and between brokers.

mod tls;

//! From `authorization` metadata to a principal, and from a principal to
//! a decision.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use eddy_meta::{Acls, MetaState, Operation, Quota, ResourceType};
use eddy_proto::link::{BASIC, BEARER, BROKER};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::Status;

use super::quota::Quotas;
use super::scram::Exchange as ScramExchange;
use super::{AuthConfig, Principal, scram};

/// Verified passwords remembered at once (each a hash of name and
/// password, so the cache holds no password).
const VERIFIED_MAX: usize = 4096;
/// Failures from one address within this window count together…
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// …and past this many, each further attempt from it waits, doubling…
const FAILURES_FREE: u32 = 5;
/// …from this…
const FAILURE_DELAY_MIN: Duration = Duration::from_millis(100);
/// …to at most this.
const FAILURE_DELAY_MAX: Duration = Duration::from_secs(5);
/// Addresses with failures tracked at once.
const FAILING_ADDRESSES_MAX: usize = 10_000;

/// Checks credentials and ACLs for one broker.
pub struct Authorizer {
    config: AuthConfig,
    meta: watch::Receiver<Arc<MetaState>>,
    /// Hash of (user, password) → the stored key it was verified against.
    verified: Mutex<HashMap<[u8; 32], [u8; 32]>>,
    /// Recent authentication failures by address: (count, first in window).
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    pub(crate) quotas: Quotas,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("required", &self.config.required)
            .field("super_users", &self.config.super_users)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(config: AuthConfig, meta: watch::Receiver<Arc<MetaState>>) -> Authorizer {
        Authorizer {
            config,
            meta,
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            quotas: Quotas::default(),
        }
    }

    /// The quota that applies to `principal` (`User:NAME`), if any.
    pub fn quota_of(&self, principal: &str) -> Option<Quota> {
        self.state().security.quota_of(principal).copied()
    }

    /// Counts `connection` as one of `principal`'s, within its quota.
    pub(crate) fn admit_connection(
        &self,
        principal: &Principal,
        connection: u64,
    ) -> Result<(), Status> {
        if matches!(principal, Principal::Broker(_)) {
            return Ok(());
        }
        let who = principal.to_string();
        let quota = self.quota_of(&who);
        self.quotas
            .admit_connection(&who, quota.as_ref(), connection)
    }

    /// Forgets a closed connection.
    pub(crate) fn connection_closed(&self, connection: u64) {
        self.quotas.connection_closed(connection);
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn state(&self) -> Arc<MetaState> {
        self.meta.borrow().clone()
    }

    /// Who the call with this `authorization` value (if any), on a
    /// connection that presented a client certificate for `certificate`
    /// (its subject's common name, if any), comes from: credentials in the
    /// call first, then the certificate. A failure is `UNAUTHENTICATED`
    /// with what is wrong or missing, never which part of a password;
    /// repeated failures from one address are slowed down.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<Principal, Status> {
        let Some(value) = authorization else {
            if let Some(name) = certificate {
                return match eddy_meta::validate_user_name(name) {
                    Ok(()) => Ok(Principal::User(name.to_string())),
                    Err(_) => Err(Status::unauthenticated(format!(
                        "the client certificate's subject {name:?} is not a valid user name (letters, digits, '.', '_', '-', '@')"
                    ))),
                };
            }
            if self.config.required {
                return Err(Status::unauthenticated(
                    "this broker requires authentication: sign in as a user (--login or EDDY_USER, with EDDY_PASSWORD or --password-file) or a token (EDDY_TOKEN or --token-file)",
                ));
            }
            return Ok(Principal::Anonymous);
        };
        if let Some(delay) = peer.and_then(|p| self.delay_for(p.ip())) {
            tokio::time::sleep(delay).await;
        }
        let result = self.check(value).await;
        match (&result, peer) {
            (Ok(_), _) => {}
            (Err(e), peer) => {
                tracing::warn!(target: "eddy::audit", peer = ?peer, reason = e.message(), "authentication failed");
                if let Some(p) = peer {
                    self.record_failure(p.ip());
                }
            }
        }
        result
    }

    async fn check(&self, value: &[u8]) -> Result<Principal, Status> {
        let text = std::str::from_utf8(value)
            .map_err(|_| malformed("it is not text"))?
            .trim();
        let (scheme, rest) = text
            .split_once(' ')
            .ok_or_else(|| malformed("expected SCHEME CREDENTIALS"))?;
        match scheme {
            s if s.eq_ignore_ascii_case(BASIC) => self.check_password(rest.trim()).await,
            s if s.eq_ignore_ascii_case(BEARER) => self.check_token(rest.trim()),
            s if s == BROKER => self.check_broker(rest.trim()),
            other => Err(malformed(&format!(
                "unknown scheme {other:?} (use Basic for a user's password or Bearer for a token)"
            ))),
        }
    }

    async fn check_password(&self, encoded: &str) -> Result<Principal, Status> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed("Basic credentials are not base64"))?;
        let text =
            String::from_utf8(decoded).map_err(|_| malformed("Basic credentials are not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| malformed("Basic credentials are not USER:PASSWORD"))?;
        let refused = || {
            Status::unauthenticated(format!(
                "user {user:?} and this password do not match a user of this cluster"
            ))
        };
        let Ok(known) = self.state().user(user).cloned() else {
            // As slow as a wrong password, so timing does not tell which
            // names exist.
            let password = password.to_string();
            let _ = tokio::task::spawn_blocking(move || {
                let dummy = eddy_meta::ScramCredential {
                    salt: vec![0; 24],
                    iterations: scram::ITERATIONS,
                    stored_key: [0; 32],
                    server_key: [0; 32],
                };
                scram::verify(&password, &dummy)
            })
            .await;
            return Err(refused());
        };
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.finalize().into()
        };
        if let Some(stored) = self.verified.lock().get(&key)
            && bool::from(stored.ct_eq(&known.credential.stored_key))
        {
            return Ok(Principal::User(user.to_string()));
        }
        let password = password.to_string();
        let credential = known.credential.clone();
        let ok = tokio::task::spawn_blocking(move || scram::verify(&password, &credential))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key, known.credential.stored_key);
        Ok(Principal::User(user.to_string()))
    }

    fn check_token(&self, token: &str) -> Result<Principal, Status> {
        let (id, secret) = split_token(token).ok_or_else(|| {
            malformed("a token looks like eddy_ID_SECRET, as `eddy token create` printed it")
        })?;
        let state = self.state();
        let refused = |why: &str| Status::unauthenticated(format!("token {id}: {why}"));
        let Some(known) = state.security.tokens.get(id) else {
            return Err(refused("no such token (revoked, or its user deleted)"));
        };
        if !bool::from(token_hash(secret).ct_eq(&known.hash)) {
            return Err(refused("the secret does not match"));
        }
        if known.expires_ms.is_some_and(|at| now_ms() >= at) {
            return Err(refused(
                "expired; create a new one with `eddy token create`",
            ));
        }
        Ok(Principal::User(known.user.clone()))
    }

    fn check_broker(&self, rest: &str) -> Result<Principal, Status> {
        let (id, secret) = rest
            .split_once(':')
            .ok_or_else(|| malformed("broker credentials are ID:SECRET"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| malformed("broker credentials are ID:SECRET"))?;
        let Some(expected) = &self.config.cluster_secret else {
            return Err(Status::unauthenticated(
                "this broker has no cluster secret: broker credentials are refused",
            ));
        };
        if !bool::from(secret.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(Status::unauthenticated(format!(
                "broker {id}: wrong cluster secret (every broker needs the same --cluster-secret-file)"
            )));
        }
        Ok(Principal::Broker(id))
    }

    /// Kafka's SASL/PLAIN: `[authzid] NUL user NUL password`, checked as
    /// a gRPC password is (same slowdown after failures, same audit).
    pub async fn authenticate_plain(
        &self,
        message: &[u8],
        peer: SocketAddr,
    ) -> Result<Principal, String> {
        let text = std::str::from_utf8(message)
            .map_err(|_| "malformed SASL/PLAIN message: it is not UTF-8".to_string())?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "malformed SASL/PLAIN message: expected [authzid] NUL user NUL password".into(),
            );
        };
        if !authzid.is_empty() && authzid != user {
            return Err(format!("user {user:?} may not act as another user"));
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authenticate(
            Some(format!("{BASIC} {basic}").as_bytes()),
            None,
            Some(peer),
        )
        .await
        .map_err(|e| e.message().to_string())
    }

    /// Kafka's SASL/SCRAM-SHA-256, first round: the server's first message.
    pub async fn scram_start(
        &self,
        client_first: &[u8],
        peer: SocketAddr,
    ) -> Result<(ScramExchange, String), String> {
        if let Some(delay) = self.delay_for(peer.ip()) {
            tokio::time::sleep(delay).await;
        }
        let started = std::str::from_utf8(client_first)
            .map_err(|_| "malformed SCRAM client-first message: it is not UTF-8".to_string())
            .and_then(|first| {
                let state = self.state();
                ScramExchange::start(first, |user| {
                    state.user(user).ok().map(|u| u.credential.clone())
                })
            });
        if let Err(reason) = &started {
            self.failed(peer, reason);
        }
        started
    }

    /// Kafka's SASL/SCRAM-SHA-256, second round: the user signed in, and
    /// the server's final message.
    pub fn scram_finish(
        &self,
        exchange: ScramExchange,
        client_final: &[u8],
        peer: SocketAddr,
    ) -> Result<(Principal, String), String> {
        let user = exchange.user().to_string();
        let finished = std::str::from_utf8(client_final)
            .map_err(|_| "malformed SCRAM client-final message: it is not UTF-8".to_string())
            .and_then(|last| exchange.finish(last));
        match finished {
            Ok(server_final) => Ok((Principal::User(user), server_final)),
            Err(reason) => {
                self.failed(peer, &reason);
                Err(reason)
            }
        }
    }

    fn failed(&self, peer: SocketAddr, reason: &str) {
        tracing::warn!(target: "eddy::audit", peer = %peer, reason, "authentication failed");
        self.record_failure(peer.ip());
    }

    /// How long to hold `principal` back after it moved `bytes` of `rate`:
    /// zero within its quota (brokers have none).
    pub fn throttle(&self, principal: &Principal, rate: super::Rate, bytes: u64) -> Duration {
        if matches!(principal, Principal::Broker(_)) {
            return Duration::ZERO;
        }
        let who = principal.to_string();
        let quota = self.quota_of(&who);
        self.quotas.charge(&who, quota.as_ref(), rate, bytes)
    }

    /// Whether `principal` may do `operation` on the resource.
    pub fn allows(
        &self,
        principal: &Principal,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> bool {
        self.decide(principal, |who, acls| {
            acls.allows(who, resource, name, operation)
        })
    }

    /// Whether `principal` may do `operation` on some resource of this type.
    pub fn allows_some(
        &self,
        principal: &Principal,
        resource: ResourceType,
        operation: Operation,
    ) -> bool {
        self.decide(principal, |who, acls| {
            acls.allows_some(who, resource, operation)
        })
    }

    /// Everything is allowed without `--auth required`, to brokers and to
    /// super users; nothing to the anonymous; a user what its ACLs allow.
    fn decide(&self, principal: &Principal, acls_allow: impl FnOnce(&str, &Acls) -> bool) -> bool {
        if !self.config.required {
            return true;
        }
        match principal {
            Principal::Broker(_) => true,
            Principal::Anonymous => false,
            Principal::User(_) => {
                let who = principal.to_string();
                self.config.super_users.contains(&who)
                    || acls_allow(&who, &self.state().security.acls)
            }
        }
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.config.super_users.contains(&principal.to_string())
    }

    fn delay_for(&self, ip: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock();
        let (count, since) = failures.get(&ip)?;
        if since.elapsed() > FAILURE_WINDOW || *count <= FAILURES_FREE {
            return None;
        }
        let doublings = (*count - FAILURES_FREE - 1).min(16);
        Some((FAILURE_DELAY_MIN * 2u32.pow(doublings)).min(FAILURE_DELAY_MAX))
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock();
        if failures.len() >= FAILING_ADDRESSES_MAX {
            failures.retain(|_, (_, since)| since.elapsed() <= FAILURE_WINDOW);
            if failures.len() >= FAILING_ADDRESSES_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() > FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

fn malformed(why: &str) -> Status {
    Status::unauthenticated(format!("malformed authorization metadata: {why}"))
}

/// The prefix of every token.
pub(crate) const TOKEN_PREFIX: &str = "eddy_";

/// A token's id and secret: `eddy_<id>_<secret>`.
pub(crate) fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// What the cluster keeps of a token's secret.
pub(crate) fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

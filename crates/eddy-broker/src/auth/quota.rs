//! Per-principal quotas on one broker: produce and fetch byte rates
//! (throttled as Kafka does, by delaying the answer, never refusing it),
//! connections open at once, and processor uploads per hour.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use eddy_meta::Quota;
use parking_lot::Mutex;
use tonic::Status;

/// How much a principal may send at once before its rate applies: this
/// long at its rate.
const BURST: Duration = Duration::from_secs(1);
/// Longest one answer is delayed (Kafka's throttle is bounded the same way).
const DELAY_MAX: Duration = Duration::from_secs(30);
/// Principals with rate state kept at once; the idle are dropped first.
const PRINCIPALS_MAX: usize = 100_000;
const HOUR: Duration = Duration::from_secs(3600);

/// What a quota measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    Produce,
    Fetch,
}

#[derive(Debug, Default)]
pub struct Quotas {
    /// (principal, rate) → when its use so far is paid off at its rate.
    paid_off: Mutex<HashMap<(String, Rate), Instant>>,
    /// Connection id → the principals that called on it.
    connections: Mutex<HashMap<u64, BTreeSet<String>>>,
    /// Principal → when its uploads in the last hour began.
    uploads: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Quotas {
    /// Records `bytes` of `rate` use by `principal` and returns how long to
    /// delay the answer so that it keeps to `quota` (zero within it).
    pub fn charge(
        &self,
        principal: &str,
        quota: Option<&Quota>,
        rate: Rate,
        bytes: u64,
    ) -> Duration {
        let limit = quota.and_then(|q| match rate {
            Rate::Produce => q.produce_bytes_per_sec,
            Rate::Fetch => q.fetch_bytes_per_sec,
        });
        let Some(per_sec) = limit.filter(|&r| r > 0) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / per_sec as f64);
        let mut paid_off = self.paid_off.lock();
        if paid_off.len() >= PRINCIPALS_MAX {
            paid_off.retain(|_, at| *at > now);
        }
        let at = paid_off.entry((principal.to_string(), rate)).or_insert(now);
        *at = (*at).max(now) + cost;
        at.saturating_duration_since(now + BURST).min(DELAY_MAX)
    }

    /// Counts `connection` as one of `principal`'s; refuses it if that
    /// would pass the principal's connection quota.
    pub fn admit_connection(
        &self,
        principal: &str,
        quota: Option<&Quota>,
        connection: u64,
    ) -> Result<(), Status> {
        let mut connections = self.connections.lock();
        if connections
            .get(&connection)
            .is_some_and(|p| p.contains(principal))
        {
            return Ok(());
        }
        if let Some(max) = quota.and_then(|q| q.connections).filter(|&m| m > 0) {
            let open = connections
                .values()
                .filter(|p| p.contains(principal))
                .count();
            if open >= max as usize {
                return Err(Status::resource_exhausted(format!(
                    "{principal} has {open} connections open to this broker, its quota; close one or ask for a larger quota (`eddy quota set`)"
                )));
            }
        }
        connections
            .entry(connection)
            .or_default()
            .insert(principal.to_string());
        Ok(())
    }

    /// Forgets a closed connection.
    pub fn connection_closed(&self, connection: u64) {
        self.connections.lock().remove(&connection);
    }

    /// Counts an upload by `principal`; refuses it past its hourly quota.
    pub fn charge_upload(&self, principal: &str, quota: Option<&Quota>) -> Result<(), Status> {
        let Some(max) = quota.and_then(|q| q.uploads_per_hour).filter(|&m| m > 0) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut uploads = self.uploads.lock();
        if uploads.len() >= PRINCIPALS_MAX {
            uploads.retain(|_, times| times.back().is_some_and(|t| now - *t < HOUR));
        }
        let times = uploads.entry(principal.to_string()).or_default();
        while times.front().is_some_and(|t| now - *t >= HOUR) {
            times.pop_front();
        }
        if times.len() >= max as usize {
            return Err(Status::resource_exhausted(format!(
                "{principal} made {} processor uploads to this broker in the last hour, its quota; try again later or ask for a larger quota (`eddy quota set`)",
                times.len()
            )));
        }
        times.push_back(now);
        Ok(())
    }
}

/// `rx` with each message's bytes charged to `caller`'s fetch quota, the
/// next one held back while the caller is over it. Without a fetch quota,
/// `rx` itself.
pub fn throttled<T: prost::Message + Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
    caller: &super::Caller,
) -> tokio::sync::mpsc::Receiver<Result<T, Status>> {
    if !caller.has_quota(Rate::Fetch) {
        return rx;
    }
    let caller = caller.clone();
    let (tx, throttled) = tokio::sync::mpsc::channel(1);
    let mut rx = rx;
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let bytes = message.as_ref().map_or(0, |m| m.encoded_len() as u64);
            if tx.send(message).await.is_err() {
                return;
            }
            let delay = caller.throttle(Rate::Fetch, bytes);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    });
    throttled
}

/// Waits out `delay`, if any.
pub async fn wait(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_sec: u64) -> Quota {
        Quota {
            produce_bytes_per_sec: Some(per_sec),
            ..Quota::default()
        }
    }

    #[test]
    fn a_rate_lets_a_second_through_then_delays_by_the_overage() {
        let q = Quotas::default();
        let quota = quota(1000);
        assert_eq!(
            q.charge("User:a", Some(&quota), Rate::Produce, 1000),
            Duration::ZERO
        );
        let delay = q.charge("User:a", Some(&quota), Rate::Produce, 500);
        assert!(
            delay > Duration::from_millis(400) && delay <= Duration::from_millis(500),
            "{delay:?}"
        );
        assert_eq!(
            q.charge("User:b", Some(&quota), Rate::Produce, 1000),
            Duration::ZERO,
            "per principal"
        );
        assert_eq!(
            q.charge("User:a", Some(&quota), Rate::Fetch, 10_000),
            Duration::ZERO,
            "no fetch quota"
        );
        assert_eq!(
            q.charge("User:a", None, Rate::Produce, 10_000),
            Duration::ZERO
        );
    }

    #[test]
    fn connections_and_uploads_are_counted_per_principal() {
        let q = Quotas::default();
        let quota = Quota {
            connections: Some(2),
            uploads_per_hour: Some(1),
            ..Quota::default()
        };
        q.admit_connection("User:a", Some(&quota), 1).unwrap();
        q.admit_connection("User:a", Some(&quota), 1).unwrap();
        q.admit_connection("User:a", Some(&quota), 2).unwrap();
        assert_eq!(
            q.admit_connection("User:a", Some(&quota), 3)
                .unwrap_err()
                .code(),
            tonic::Code::ResourceExhausted
        );
        q.admit_connection("User:b", Some(&quota), 3).unwrap();
        q.connection_closed(1);
        q.admit_connection("User:a", Some(&quota), 3).unwrap();
        q.charge_upload("User:a", Some(&quota)).unwrap();
        assert!(q.charge_upload("User:a", Some(&quota)).is_err());
        q.charge_upload("User:b", Some(&quota)).unwrap();
    }
}

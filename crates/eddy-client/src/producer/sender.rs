//! The sender task: takes sealed batches (retries first), groups them by
//! leader into requests on one pipelined `ProduceStream` per broker, and
//! completes, retries or fails them as answers come back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eddy_proto::v1::{
    Acks, ErrorCode, PartitionProduceData, ProduceRequest, ProduceResponse, TopicProduceData,
};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::accumulator::{ReadyBatch, take_ready};
use super::renewal::{renew_identity, renews};
use super::{PARTITION_IN_FLIGHT_MAX, ProducerConfig, REQUEST_BYTES_TARGET, Shared};
use crate::error::{ClientError, Result};

/// One request in flight, awaiting its response.
struct InFlight {
    batches: Vec<ReadyBatch>,
    sent: Instant,
    _permit: OwnedSemaphorePermit,
}

/// A pipelined stream to one broker. Once `dead` (a request failed or the
/// stream broke) nothing more is sent on it; the broker writes nothing
/// after a failed request either, so its in-flight batches are resent, in
/// order, on a new stream.
struct Connection {
    id: u64,
    tx: mpsc::Sender<ProduceRequest>,
    pending: Arc<Mutex<Pending>>,
    slots: Arc<Semaphore>,
}

#[derive(Default)]
struct Pending {
    requests: VecDeque<(u64, InFlight)>,
    dead: bool,
}

/// The background task: seals lingering batches and sends ready ones.
pub(super) async fn sender(s: Arc<Shared>) {
    let mut connections: HashMap<String, Connection> = HashMap::new();
    loop {
        let backoff = *s.backoff_until.lock();
        if let Some(until) = backoff.filter(|u| *u > Instant::now()) {
            step(&s, "backing off");
            tokio::time::sleep_until(until).await;
        }
        if s.refresh.swap(false, Ordering::AcqRel) {
            step(&s, "refreshing metadata");
            let topics: Vec<String> = s
                .partition_counts
                .lock()
                .keys()
                .map(|t| t.to_string())
                .collect();
            if let Err(e) = s.client.refresh_metadata(&topics).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        if s.renew.load(Ordering::Acquire) {
            if s.acc.lock().closed && s.pending.load(Ordering::Acquire) == 0 {
                // Closed with nothing left to send: no identity is needed,
                // and an unreachable broker must not keep the sender alive.
                s.renew.store(false, Ordering::Release);
            } else if s.in_flight.lock().is_empty() {
                step(&s, "asking for a new producer id");
                renew_identity(&s).await;
            } else {
                // What is on its way lands, fails or comes back to `retry`
                // first: none of it may be stamped anew while it can land.
                step(&s, "waiting for what is in flight before a new id");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            continue;
        }
        let (ready, next_deadline, closed) = take_ready(&s);
        if ready.is_empty() {
            if closed {
                step(&s, "stopped");
                return;
            }
            step(&s, "waiting for batches");
            match next_deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = s.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => s.wake.notified().await,
            }
            continue;
        }
        connections.retain(|_, c| !c.pending.lock().dead);
        let (groups, held) = group_by_leader(&s, ready, &connections);
        for (address, batches) in groups {
            send_request(&s, &mut connections, &address, batches).await;
        }
        if !held.is_empty() {
            // Their partitions still have batches in flight elsewhere; try
            // again when those complete.
            {
                let mut retry = s.retry.lock();
                for b in held.into_iter().rev() {
                    retry.push_front(b);
                }
            }
            // Woken when an answer frees a partition (or shortly after).
            step(&s, "holding batches of partitions in flight elsewhere");
            tokio::select! {
                () = s.wake.notified() => {}
                () = tokio::time::sleep(HELD_RECHECK) => {}
            }
        }
    }
}

/// Records what the sender is doing, for [`super::Producer::diagnosis`].
fn step(s: &Shared, what: &'static str) {
    *s.sender_step.lock() = what;
}

/// How long held batches wait at most before the sender looks again.
const HELD_RECHECK: Duration = Duration::from_millis(20);

/// Groups batches by their leader's address; batches of a partition that
/// has batches in flight on another connection (a dead one included: they
/// are on their way back to `retry`) are held back.
fn group_by_leader(
    s: &Shared,
    ready: Vec<ReadyBatch>,
    connections: &HashMap<String, Connection>,
) -> (Vec<(String, Vec<ReadyBatch>)>, Vec<ReadyBatch>) {
    let mut groups: Vec<(String, Vec<ReadyBatch>)> = Vec::new();
    let mut held = Vec::new();
    let in_flight = s.in_flight.lock();
    let mut held_partitions: HashSet<(Arc<str>, u32)> = HashSet::new();
    // Batches grouped in this pass count toward the per-partition limit too.
    let mut grouped: HashMap<(Arc<str>, u32), usize> = HashMap::new();
    for batch in ready {
        let key = (batch.topic.clone(), batch.partition);
        let leader = s.client.leader_address(&batch.topic, batch.partition);
        let current = connections.get(&leader).map(|c| c.id);
        let (elsewhere, sent) = in_flight
            .get(&key)
            .map_or((false, 0), |&(id, n)| (n > 0 && Some(id) != current, n));
        let now = grouped.entry(key.clone()).or_default();
        if elsewhere || sent + *now >= PARTITION_IN_FLIGHT_MAX || held_partitions.contains(&key) {
            held_partitions.insert(key);
            held.push(batch);
            continue;
        }
        *now += 1;
        match groups.iter_mut().find(|(a, _)| *a == leader) {
            Some((_, v)) => v.push(batch),
            None => groups.push((leader, vec![batch])),
        }
    }
    (groups, held)
}

/// Sends `batches` in as few requests as the request size limit allows.
async fn send_request(
    s: &Arc<Shared>,
    connections: &mut HashMap<String, Connection>,
    address: &str,
    mut batches: Vec<ReadyBatch>,
) {
    while !batches.is_empty() {
        // Several moderate requests keep the broker busy while the next
        // one travels; one huge request would leave nothing in flight.
        let request_max = REQUEST_BYTES_TARGET.min(s.client.config().request_bytes_max);
        let mut size = 0usize;
        let take = batches
            .iter()
            .take_while(|b| {
                size += b.bytes.len() + 64;
                size <= request_max
            })
            .count()
            .max(1);
        let rest = batches.split_off(take);
        let chunk = std::mem::replace(&mut batches, rest);
        if let Err(unsent) = send_one(s, connections, address, chunk).await {
            // The connection failed: keep this request and everything after it, in order.
            requeue(
                s,
                unsent.into_iter().chain(batches.drain(..)).collect(),
                None,
            );
            return;
        }
    }
}

/// Sends one request; gives the batches back if it could not be sent.
async fn send_one(
    s: &Arc<Shared>,
    connections: &mut HashMap<String, Connection>,
    address: &str,
    batches: Vec<ReadyBatch>,
) -> Result<(), Vec<ReadyBatch>> {
    if !connections.contains_key(address) {
        step(s, "opening a produce stream");
        match open_connection(s, address).await {
            Ok(c) => {
                connections.insert(address.to_string(), c);
            }
            Err(e) => {
                tracing::debug!(%address, error = %e, "cannot open a produce stream");
                return Err(batches);
            }
        }
    }
    let Some(conn) = connections.get(address) else {
        return Err(batches);
    };
    step(s, "waiting for a free request slot");
    let Ok(permit) = conn.slots.clone().acquire_owned().await else {
        return Err(batches);
    };
    let correlation_id = s.correlation.fetch_add(1, Ordering::Relaxed);
    let request = build_request(correlation_id, s.config.acks, &batches);
    {
        let mut pending = conn.pending.lock();
        if pending.dead {
            return Err(batches);
        }
        let mut in_flight = s.in_flight.lock();
        for b in &batches {
            let entry = in_flight
                .entry((b.topic.clone(), b.partition))
                .or_insert((conn.id, 0));
            entry.0 = conn.id;
            entry.1 += 1;
        }
        drop(in_flight);
        pending.requests.push_back((
            correlation_id,
            InFlight {
                batches,
                sent: Instant::now(),
                _permit: permit,
            },
        ));
    }
    // The slot held leaves room in the channel, which holds no more
    // requests than there are slots, unless the stream died just now and
    // no longer drains it: waiting for room then would wait for ever.
    if conn.tx.try_send(request).is_err() {
        // Its reader requeues whatever was pending; this request too.
        kill(s, &conn.pending, Vec::new(), None);
    }
    Ok(())
}

fn build_request(correlation_id: u64, acks: Acks, batches: &[ReadyBatch]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for b in batches {
        let data = PartitionProduceData {
            partition: b.partition,
            batch: b.bytes.clone(),
            records: Vec::new(),
        };
        match topics.iter_mut().find(|t| *t.topic == *b.topic) {
            Some(t) => t.partitions.push(data),
            None => topics.push(TopicProduceData {
                topic: b.topic.to_string(),
                partitions: vec![data],
                records: Vec::new(),
            }),
        }
    }
    ProduceRequest {
        correlation_id,
        acks: acks as i32,
        timeout_ms: 0,
        topics,
    }
}

async fn open_connection(s: &Arc<Shared>, address: &str) -> Result<Connection> {
    // Its own connection: acknowledgements must never queue behind
    // another component's unread data (see `Client::dedicated`).
    let channel = s.client.dedicated(address)?;
    let (tx, rx) = mpsc::channel(s.config.requests_in_flight_max);
    let mut client = s.client.produce_client(channel);
    let opened = async { Ok(client.produce_stream(ReceiverStream::new(rx)).await?) };
    let responses = bounded(&s.config, opened).await?.into_inner();
    let pending: Arc<Mutex<Pending>> = Arc::default();
    tokio::spawn(receive(s.clone(), responses, pending.clone()));
    Ok(Connection {
        id: s.connection_ids.fetch_add(1, Ordering::Relaxed),
        tx,
        pending,
        slots: Arc::new(Semaphore::new(s.config.requests_in_flight_max)),
    })
}

/// Awaits `call` for at most `request_timeout_ms`, then fails it as
/// retriable: a broker that takes a call and never answers it (while its
/// connection stays alive) holds the sender no longer. (Calls any broker
/// can answer are bounded by the client's own `request_timeout_ms`.)
async fn bounded<T>(
    config: &ProducerConfig,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer,
        Err(_) => Err(unavailable(&format!(
            "no answer within request_timeout_ms ({} ms)",
            config.request_timeout_ms
        ))),
    }
}

/// Matches responses (which arrive in request order) to their batches.
async fn receive(
    s: Arc<Shared>,
    mut responses: tonic::Streaming<ProduceResponse>,
    pending: Arc<Mutex<Pending>>,
) {
    let timeout = Duration::from_millis(s.config.request_timeout_ms);
    loop {
        let message = tokio::select! {
            m = responses.message() => m,
            () = overdue(&pending, timeout) => {
                let e = unavailable(&format!(
                    "no answer within request_timeout_ms ({} ms); resending on a new stream",
                    s.config.request_timeout_ms
                ));
                kill(&s, &pending, Vec::new(), Some(e));
                return;
            }
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => {
                let e = unavailable("the broker closed the produce stream");
                kill(&s, &pending, Vec::new(), Some(e));
                return;
            }
            Err(status) => {
                kill(&s, &pending, Vec::new(), Some(ClientError::from(status)));
                return;
            }
        };
        let Some((id, f)) = pending.lock().requests.pop_front() else {
            continue;
        };
        if id != response.correlation_id {
            // Responses come in request order; anything else is a broker bug,
            // and guessing which batches it answers could lose records.
            let e = unavailable(&format!(
                "the broker answered request {} when {id} was next; resending on a new stream",
                response.correlation_id
            ));
            kill(&s, &pending, f.batches, Some(e));
            return;
        }
        match &response.error {
            None => {
                release(&s, &f.batches);
                complete(&s, f, response);
            }
            Some(e) => {
                let e = ClientError::partition(e);
                let mut resend = Vec::new();
                // A leader that does not know the topic yet has not applied
                // the metadata that created it: brokers apply it a moment
                // apart (the producer checked that the topic exists).
                let propagating = matches!(
                    e.code(),
                    ErrorCode::UnknownTopic | ErrorCode::UnknownPartition
                );
                if e.is_retriable() || propagating {
                    resend = f.batches;
                } else if e.code() == ErrorCode::OutOfOrderSequence && renews(&s) {
                    // The leader lost track of this producer's sequences (or
                    // a batch before these failed): sent again under a new
                    // identity, they land in order.
                    s.renew.store(true, Ordering::Release);
                    resend = f.batches;
                } else {
                    release(&s, &f.batches);
                    for b in f.batches {
                        fail(&s, b, e.clone());
                    }
                }
                // The broker wrote nothing after this request: resend the rest.
                kill(&s, &pending, resend, Some(e));
                return;
            }
        }
    }
}

/// Returns once the oldest request pending on a stream has waited
/// `timeout` for its answer.
async fn overdue(pending: &Mutex<Pending>, timeout: Duration) {
    loop {
        let oldest = pending.lock().requests.front().map(|(_, f)| f.sent);
        match oldest {
            Some(sent) if sent.elapsed() >= timeout => return,
            Some(sent) => tokio::time::sleep_until(sent + timeout).await,
            None => tokio::time::sleep(timeout).await,
        }
    }
}

/// Marks a connection dead and requeues `first` (batches of its answered
/// request that must be resent) and everything still pending on it. They
/// are in `retry` before their in-flight counts drop, so the sender never
/// sees a partition as free while one of its batches is on its way back.
fn kill(s: &Shared, pending: &Mutex<Pending>, first: Vec<ReadyBatch>, cause: Option<ClientError>) {
    let mut retry = s.retry.lock();
    let drained: Vec<ReadyBatch> = {
        let mut p = pending.lock();
        p.dead = true;
        let rest = p.requests.drain(..).flat_map(|(_, f)| f.batches);
        first.into_iter().chain(rest).collect()
    };
    // The counts must drop for exactly the batches drained, before
    // `requeue_into` fails the expired ones.
    release(s, &drained);
    requeue_into(s, &mut retry, drained, cause);
}

/// Forgets batches' in-flight counts, and wakes the sender: batches it
/// held back for these partitions may go now.
fn release(s: &Shared, batches: &[ReadyBatch]) {
    let mut in_flight = s.in_flight.lock();
    for b in batches {
        let key = (b.topic.clone(), b.partition);
        if let Some(entry) = in_flight.get_mut(&key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                in_flight.remove(&key);
            }
        }
    }
    drop(in_flight);
    s.wake.notify_one();
}

/// Puts batches back to be sent again (in order, after a backoff and a
/// metadata refresh), or fails those past their delivery timeout.
fn requeue(s: &Shared, batches: Vec<ReadyBatch>, cause: Option<ClientError>) {
    let mut retry = s.retry.lock();
    requeue_into(s, &mut retry, batches, cause);
}

fn requeue_into(
    s: &Shared,
    retry: &mut VecDeque<ReadyBatch>,
    batches: Vec<ReadyBatch>,
    cause: Option<ClientError>,
) {
    if batches.is_empty() {
        return;
    }
    let timeout = Duration::from_millis(s.config.delivery_timeout_ms);
    let cause = cause.unwrap_or_else(|| unavailable("the connection to the broker failed"));
    let mut attempts = 0;
    for mut b in batches {
        if b.created.elapsed() >= timeout {
            let e = ClientError::Invalid(format!(
                "not acknowledged within delivery_timeout_ms ({} ms); last error: {cause}",
                s.config.delivery_timeout_ms
            ));
            fail(s, b, e);
            continue;
        }
        b.attempts += 1;
        attempts = attempts.max(b.attempts);
        retry.push_back(b);
    }
    let shift = attempts.saturating_sub(1).min(16);
    let backoff = (s.config.retry_backoff_ms << shift).min(s.config.retry_backoff_ms_max);
    *s.backoff_until.lock() = Some(Instant::now() + Duration::from_millis(backoff));
    s.refresh.store(true, Ordering::Release);
    s.wake.notify_one();
    tracing::debug!(%cause, backoff_ms = backoff, "produce failed; retrying");
}

fn unavailable(message: &str) -> ClientError {
    ClientError::Broker {
        code: eddy_proto::v1::ErrorCode::Unavailable,
        grpc: tonic::Code::Unavailable,
        message: message.to_string(),
    }
}

fn complete(s: &Shared, f: InFlight, response: ProduceResponse) {
    let mut results: HashMap<(String, u32), VecDeque<Option<u64>>> = HashMap::new();
    for t in response.topics {
        for p in t.partitions {
            results
                .entry((t.topic.clone(), p.partition))
                .or_default()
                // A duplicate too old for the broker to remember where it
                // landed: written once, offsets unknown.
                .push_back((!p.offsets_unknown).then_some(p.base_offset));
        }
    }
    for b in f.batches {
        let key = (b.topic.to_string(), b.partition);
        let base = results.get_mut(&key).and_then(|q| q.pop_front()).flatten();
        finish(s, b, Ok(base));
    }
}

pub(super) fn fail(s: &Shared, b: ReadyBatch, e: ClientError) {
    s.first_error.lock().get_or_insert_with(|| e.clone());
    s.unflushed_error.lock().get_or_insert_with(|| e.clone());
    if renews(s) {
        s.renew.store(true, Ordering::Release);
    }
    finish(s, b, Err(e));
}

pub(super) fn finish(s: &Shared, b: ReadyBatch, result: Result<Option<u64>>) {
    b.state.complete(result);
    s.buffer.add_permits(b.permits as usize);
    let before = s.pending.fetch_sub(u64::from(b.records), Ordering::AcqRel);
    if before == u64::from(b.records) {
        s.idle.notify_waiters();
    }
}

//! A fresh producer identity after a batch failed for good (KIP-360's
//! recovery): a new producer id, every partition's sequences from 0, and
//! the waiting batches stamped anew — all but those their leaders already
//! hold, which keep their stamp so that they are answered as duplicates.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{BatchHeader, ProducerStamp, Sequence, restamp};
use eddy_proto::v1::Acks;
use tokio::time::Instant;

use super::accumulator::ReadyBatch;
use super::sender::fail;
use super::{Shared, ask_producer_id};
use crate::error::{ClientError, Result};

/// Whether this producer takes a new identity after a failed batch: an
/// idempotent one without a stable name. A stable-name producer's
/// sequences are its owner's to set (an exactly-once task starts again
/// from its commit instead).
pub(super) fn renews(s: &Shared) -> bool {
    s.config.idempotence && s.config.acks == Acks::All && s.config.stable_name.is_none()
}

/// The last sequence a partition's leader holds of a producer, by
/// (producer id, topic, partition).
type Held = HashMap<(i64, Arc<str>, u32), i32>;

/// Takes a new producer id and starts every partition's sequences again
/// at 0, stamping anew the waiting batches (nothing is in flight).
///
/// After a batch failed for good (its delivery timed out, or the leader
/// refused it), the leader may or may not hold it, so the next batch's
/// sequence may leave a gap and every later batch would be refused out
/// of order. Kafka's KIP-360 has the producer bump its epoch and reset its
/// sequences; Eddy's leaders carry sequences across the epochs of one id
/// (an exactly-once task's outputs continue through its take-overs), so
/// the fresh start is a new id.
///
/// A batch sent before may have landed although its answer never came, or
/// came as the failure of a request that wrote the batches before the one
/// refused; stamped anew it would land a second time. So the leaders of
/// such batches are asked first what they hold of the identity each was
/// sent under, and a batch they hold keeps its stamp: sent again, it is
/// answered as a duplicate once it is replicated.
pub(super) async fn renew_identity(s: &Arc<Shared>) {
    let asked = async {
        let held = held_by_leaders(s).await?;
        Ok::<_, ClientError>((held, ask_producer_id(s, String::new()).await?))
    };
    let (held, stamp) = match asked.await {
        Ok(asked) => asked,
        Err(e) => {
            tracing::debug!(error = %e, "renewing the producer identity failed; retrying");
            back_off(s, &e);
            return;
        }
    };
    let mut kept = 0;
    let mut retry = s.retry.lock();
    let mut acc = s.acc.lock();
    let acc = &mut *acc;
    acc.identity = Some(stamp);
    acc.sequences.clear();
    let mut waiting: Vec<&mut ReadyBatch> = retry.iter_mut().chain(acc.ready.iter_mut()).collect();
    waiting.sort_by_key(|b| b.order);
    for b in waiting {
        if held_already(b, &held) {
            kept += 1;
            continue;
        }
        let next = acc
            .sequences
            .entry((b.topic.clone(), b.partition))
            .or_insert(0);
        let restamped = restamp(
            &b.bytes,
            ProducerStamp {
                base_sequence: Sequence(*next),
                ..stamp
            },
        );
        match restamped {
            Ok(bytes) => b.bytes = Bytes::from(bytes),
            // Built by this producer, so never; sent as it is, the leader
            // refuses it and its records fail.
            Err(e) => tracing::warn!(error = %e, "cannot stamp a batch anew"),
        }
        *next = ((i64::from(*next) + i64::from(b.records)) % (i64::from(i32::MAX) + 1)) as i32;
    }
    s.renew.store(false, Ordering::Release);
    s.wake.notify_one();
    tracing::info!(
        producer_id = stamp.producer_id.0,
        kept,
        "a batch failed for good: took a new producer id, sequences start again"
    );
}

/// What the leaders of the partitions with batches sent before hold of
/// the identities those batches carry.
async fn held_by_leaders(s: &Shared) -> Result<Held> {
    let sent: BTreeSet<(i64, Arc<str>, u32)> = s
        .retry
        .lock()
        .iter()
        .filter(|b| b.attempts > 0)
        .filter_map(|b| {
            let h = BatchHeader::parse(&b.bytes).ok()?;
            Some((h.producer_id.0, b.topic.clone(), b.partition))
        })
        .collect();
    let mut held = Held::new();
    let producers: BTreeSet<i64> = sent.iter().map(|(id, _, _)| *id).collect();
    for producer in producers {
        let partitions: Vec<(Arc<str>, u32)> = sent
            .iter()
            .filter(|(id, _, _)| *id == producer)
            .map(|(_, t, p)| (t.clone(), *p))
            .collect();
        let asked: Vec<(String, u32)> = partitions
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect();
        let known = s.client.describe_producer(producer, &asked).await?;
        for ((topic, partition), k) in partitions.into_iter().zip(known) {
            if let Some((_, last)) = k {
                held.insert((producer, topic, partition), last);
            }
        }
    }
    Ok(held)
}

/// Whether `b`'s leader holds it under the identity it carries: every
/// sequence of it at or below the last the leader has (batches are sent
/// again unchanged and in order, so one is held whole or not at all).
fn held_already(b: &ReadyBatch, held: &Held) -> bool {
    if b.attempts == 0 {
        return false;
    }
    let Ok(h) = BatchHeader::parse(&b.bytes) else {
        return false;
    };
    held.get(&(h.producer_id.0, b.topic.clone(), b.partition))
        .is_some_and(|&last| h.last_sequence().0 <= last)
}

/// Backs off before the next try at a renewal, failing the waiting batches
/// that are past their delivery timeout meanwhile.
fn back_off(s: &Shared, cause: &ClientError) {
    expire_waiting(s, cause);
    let backoff = Duration::from_millis(s.config.retry_backoff_ms);
    *s.backoff_until.lock() = Some(Instant::now() + backoff);
}

/// Fails the batches waiting for a new identity that are past their
/// delivery timeout: nothing is sent before it comes, and a flush must not
/// wait longer than the timeout however long it takes.
fn expire_waiting(s: &Shared, cause: &ClientError) {
    let timeout = Duration::from_millis(s.config.delivery_timeout_ms);
    let expired: Vec<ReadyBatch> = {
        let mut retry = s.retry.lock();
        let mut acc = s.acc.lock();
        let mut expired = Vec::new();
        for queue in [&mut *retry, &mut acc.ready] {
            let (gone, kept): (VecDeque<ReadyBatch>, VecDeque<ReadyBatch>) = std::mem::take(queue)
                .into_iter()
                .partition(|b| b.created.elapsed() >= timeout);
            *queue = kept;
            expired.extend(gone);
        }
        expired
    };
    for b in expired {
        let e = ClientError::Invalid(format!(
            "not acknowledged within delivery_timeout_ms ({} ms): the producer could not take a new identity after an earlier batch failed; last error: {cause}",
            s.config.delivery_timeout_ms
        ));
        fail(s, b, e);
    }
}

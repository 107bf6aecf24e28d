//! Producing a query's results so that a passing failure does not end the query: a
//! delivery Kafka refused for a transient cause (the broker unreachable, a leader moving,
//! a request timing out, …) is sent again after a growing wait; a refusal that would
//! repeat every time (a record too large, a topic deleted or not ours to write) fails the
//! query, which then shows as ERROR. librdkafka already retries within
//! `message.timeout.ms`; this is what comes after, as ksqlDB restarts a query after a
//! transient error.
//!
//! Only the failed records are sent again, so nothing Kafka acknowledged is written twice
//! by the retry; the batch's input offsets are committed only once every record is
//! acknowledged (at-least-once: a resent record may land after a later one of its batch).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;
use tracing::warn;

use super::ToSend;
use crate::error::{Result, RuntimeError};
use crate::metrics::QueryMetrics;

/// Whether a production error with `code` may go away by itself: Kafka's retriable errors
/// and librdkafka's local equivalents (timeouts, a full queue, brokers down). Every other
/// code fails the same way when sent again.
pub fn transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageTimedOut
            | C::QueueFull
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::Resolve
            | C::Retry
            | C::ISRInsufficient
            | C::WaitingForCoordinator
            | C::InvalidMessage
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::EligibleLeadersNotAvailable
            | C::ThrottlingQuotaExceeded
            | C::ConcurrentTransactions
    )
}

/// Whether a failed delivery is worth sending again (see [`transient`]).
fn retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageProduction(code) if transient(*code))
}

/// How a query waits between attempts, and when it stops waiting.
#[derive(Clone)]
pub(super) struct Retry {
    /// Turns true when the query's reader stops (it was told to, or another worker
    /// failed): a retry then gives up. Nothing is committed past what was acknowledged,
    /// so a restart sends it again.
    stop: watch::Receiver<bool>,
    metrics: Arc<QueryMetrics>,
    id: String,
    first: Duration,
    max: Duration,
}

/// The first wait after a transient failure; each next one doubles, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

impl Retry {
    pub(super) fn new(stop: watch::Receiver<bool>, metrics: Arc<QueryMetrics>, id: &str) -> Self {
        Retry {
            stop,
            metrics,
            id: id.to_string(),
            first: RETRY_FIRST,
            max: RETRY_MAX,
        }
    }

    /// Waits `d`; false when the query was stopped first.
    async fn wait(&mut self, d: Duration) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        let stopped = async {
            // A sender that is gone never stops the query (its last value stands).
            if self.stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = stopped => false,
        }
    }
}

/// Where a query's results go: its sink topic, through the producer, riding out
/// transient failures.
pub(super) struct Sink {
    producer: FutureProducer,
    topic: String,
    retry: Retry,
}

impl Sink {
    pub(super) fn new(producer: FutureProducer, topic: &str, retry: Retry) -> Self {
        Sink {
            producer,
            topic: topic.to_string(),
            retry,
        }
    }

    /// Produces `records` (partitioned by key) until each is acknowledged; returns how
    /// many were, or `None` when the query was stopped while waiting to send again.
    pub(super) async fn send(&mut self, records: Vec<ToSend<'_>>) -> Result<Option<u64>> {
        let Sink {
            producer,
            topic,
            retry,
        } = self;
        deliver(records, topic, retry, |batch| {
            send_once(producer, topic, None, batch)
        })
        .await
    }
}

/// Produces `records` to one partition so that they land in the order given, riding out
/// transient failures: when any fails, all are sent again, in order, after a growing wait
/// (a changelog's records must not be reordered, and writing one again is harmless).
/// Returns false when the query was stopped while waiting to send again.
pub(super) async fn send_in_order(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    records: Vec<ToSend<'_>>,
    retry: &mut Retry,
) -> Result<bool> {
    let mut wait = retry.first;
    loop {
        let (_, failed) = send_once(producer, topic, Some(partition), records.clone()).await;
        let Some((_, first)) = failed.first() else {
            return Ok(true);
        };
        if let Some((_, fatal)) = failed.iter().find(|(_, e)| !retriable(e)) {
            return Err(RuntimeError::Production {
                topic: topic.to_string(),
                source: fatal.clone(),
            });
        }
        warn!(
            query = %retry.id, topic, partition, failed = failed.len(), error = %first,
            "changelog write failed for a transient cause; writing it again in {wait:?}"
        );
        retry.metrics.add_retries(failed.len() as u64);
        if !retry.wait(wait).await {
            return Ok(false);
        }
        wait = (wait * 2).min(retry.max);
    }
}

/// The retry loop over `send`, which sends records and reports how many were acknowledged
/// and which failed (by index into what it was given).
async fn deliver<'a, F, Fut>(
    records: Vec<ToSend<'a>>,
    topic: &str,
    retry: &mut Retry,
    mut send: F,
) -> Result<Option<u64>>
where
    F: FnMut(Vec<ToSend<'a>>) -> Fut,
    Fut: Future<Output = (u64, Vec<(usize, KafkaError)>)>,
{
    let mut pending = records;
    let mut acked = 0;
    let mut wait = retry.first;
    loop {
        let (ok, failed) = send(pending.clone()).await;
        acked += ok;
        let Some((_, first)) = failed.first() else {
            return Ok(Some(acked));
        };
        if let Some((_, fatal)) = failed.iter().find(|(_, e)| !retriable(e)) {
            return Err(RuntimeError::Production {
                topic: topic.to_string(),
                source: fatal.clone(),
            });
        }
        warn!(
            query = %retry.id, topic, failed = failed.len(), error = %first,
            "delivery failed for a transient cause; sending again in {wait:?}"
        );
        retry.metrics.add_retries(failed.len() as u64);
        if !retry.wait(wait).await {
            return Ok(None);
        }
        wait = (wait * 2).min(retry.max);
        pending = failed
            .iter()
            .filter_map(|(i, _)| pending.get(*i).copied())
            .collect();
    }
}

/// One attempt: every record is sent, every delivery awaited. A full producer queue waits
/// for the oldest delivery first (the backpressure on the source).
async fn send_once(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    records: Vec<ToSend<'_>>,
) -> (u64, Vec<(usize, KafkaError)>) {
    let mut deliveries: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    let mut acked = 0u64;
    let mut failed = Vec::new();
    for (i, (key, value, timestamp)) in records.into_iter().enumerate() {
        loop {
            let rec = record(topic, partition, key, value, timestamp);
            match producer.send_result(rec) {
                Ok(d) => {
                    deliveries.push_back((i, d));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match deliveries.pop_front() {
                        Some((j, d)) => outcome(j, d, &mut acked, &mut failed).await,
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => {
                    failed.push((i, e));
                    break;
                }
            }
        }
    }
    for (j, d) in deliveries {
        outcome(j, d, &mut acked, &mut failed).await;
    }
    failed.sort_by_key(|(i, _)| *i);
    (acked, failed)
}

async fn outcome(
    i: usize,
    d: DeliveryFuture,
    acked: &mut u64,
    failed: &mut Vec<(usize, KafkaError)>,
) {
    match d.await {
        Ok(Ok(_)) => *acked += 1,
        Ok(Err((e, _))) => failed.push((i, e)),
        // The producer is gone (the server is shutting down): nothing will come back.
        Err(_) => failed.push((i, KafkaError::Canceled)),
    }
}

/// The record to produce: to `partition` when given (else the producer's partitioner), with
/// whichever of timestamp, key and value there is (no value: a tombstone).
pub(crate) fn record<'a>(
    topic: &'a str,
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: Option<i64>,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut rec: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(p) = partition {
        rec = rec.partition(p);
    }
    if let Some(ts) = timestamp {
        rec = rec.timestamp(ts);
    }
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn retry() -> (watch::Sender<bool>, Retry) {
        let (tx, rx) = watch::channel(false);
        let mut r = Retry::new(rx, Arc::new(QueryMetrics::new()), "Q");
        r.first = Duration::from_millis(1);
        r.max = Duration::from_millis(2);
        (tx, r)
    }

    fn produce_error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn transient_codes_are_kafkas_retriable_ones() {
        use RDKafkaErrorCode as C;
        let cases = [
            (C::MessageTimedOut, true),
            (C::QueueFull, true),
            (C::AllBrokersDown, true),
            (C::BrokerTransportFailure, true),
            (C::LeaderNotAvailable, true),
            (C::NotLeaderForPartition, true),
            (C::RequestTimedOut, true),
            (C::NotEnoughReplicas, true),
            (C::MessageSizeTooLarge, false),
            (C::TopicAuthorizationFailed, false),
            (C::ClusterAuthorizationFailed, false),
            (C::UnknownTopicOrPartition, false),
            (C::UnknownTopic, false),
            (C::UnknownPartition, false),
            (C::InvalidRecord, false),
            (C::Fatal, false),
            (C::OutOfOrderSequenceNumber, false),
        ];
        for (code, want) in cases {
            assert_eq!(transient(code), want, "{code:?}");
        }
        assert!(!retriable(&KafkaError::Canceled));
    }

    /// A sender that fails record `value` with `code` the first `times` it sees it, and
    /// counts what it sent.
    struct Flaky {
        failures: BTreeMap<u8, (RDKafkaErrorCode, usize)>,
        sent: Vec<u8>,
    }

    impl Flaky {
        fn send(&mut self, batch: Vec<ToSend<'_>>) -> (u64, Vec<(usize, KafkaError)>) {
            let mut ok = 0;
            let mut failed = Vec::new();
            for (i, (_, v, _)) in batch.iter().enumerate() {
                let v = v.and_then(|v| v.first().copied()).unwrap_or(0);
                self.sent.push(v);
                match self.failures.get_mut(&v) {
                    Some((code, n)) if *n > 0 => {
                        *n -= 1;
                        failed.push((i, produce_error(*code)));
                    }
                    _ => ok += 1,
                }
            }
            (ok, failed)
        }
    }

    fn values() -> Vec<[u8; 1]> {
        (0..5u8).map(|v| [v]).collect()
    }

    #[tokio::test]
    async fn transient_failures_are_sent_again_and_only_they() {
        let values = values();
        let records: Vec<ToSend<'_>> = values.iter().map(|v| (None, Some(&v[..]), None)).collect();
        let mut flaky = Flaky {
            failures: BTreeMap::from([
                (1, (RDKafkaErrorCode::MessageTimedOut, 2)),
                (3, (RDKafkaErrorCode::NotLeaderForPartition, 1)),
            ]),
            sent: Vec::new(),
        };
        let (_stop, mut r) = retry();
        let acked = deliver(records, "t", &mut r, |b| std::future::ready(flaky.send(b))).await;
        assert!(matches!(acked, Ok(Some(5))), "{acked:?}");
        // 0..5, then 1 and 3 again, then 1 a third time: nothing acknowledged twice.
        assert_eq!(flaky.sent, vec![0, 1, 2, 3, 4, 1, 3, 1]);
        assert_eq!(r.metrics.snapshot().production_retries, 3);
    }

    #[tokio::test]
    async fn a_fatal_failure_is_the_querys_error() {
        let values = values();
        let records: Vec<ToSend<'_>> = values.iter().map(|v| (None, Some(&v[..]), None)).collect();
        let mut flaky = Flaky {
            failures: BTreeMap::from([
                (1, (RDKafkaErrorCode::MessageTimedOut, 1)),
                (2, (RDKafkaErrorCode::MessageSizeTooLarge, usize::MAX)),
            ]),
            sent: Vec::new(),
        };
        let (_stop, mut r) = retry();
        let acked = deliver(records, "t", &mut r, |b| std::future::ready(flaky.send(b))).await;
        match acked {
            Err(RuntimeError::Production { topic, source }) => {
                assert_eq!(topic, "t");
                assert_eq!(source, produce_error(RDKafkaErrorCode::MessageSizeTooLarge));
            }
            other => panic!("{other:?}"),
        }
        // Not retried: the fatal failure ends the attempt's batch.
        assert_eq!(flaky.sent, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_stop_ends_the_retries() {
        let values = values();
        let records: Vec<ToSend<'_>> = values.iter().map(|v| (None, Some(&v[..]), None)).collect();
        let mut flaky = Flaky {
            failures: BTreeMap::from([(0, (RDKafkaErrorCode::AllBrokersDown, usize::MAX))]),
            sent: Vec::new(),
        };
        let (stop, mut r) = retry();
        let mut attempts = 0;
        let acked = deliver(records, "t", &mut r, |b| {
            attempts += 1;
            if attempts == 3 {
                let _ = stop.send(true);
            }
            std::future::ready(flaky.send(b))
        })
        .await;
        assert!(matches!(acked, Ok(None)), "{acked:?}");
        assert_eq!(attempts, 3);
    }
}

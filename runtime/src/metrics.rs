//! Live counters of a persistent query, written by its Kafka task and read by whoever
//! reports on it (the server's `/metrics`). Atomics rather than a channel: a scrape must
//! not wait for the task, and the task must never wait for a scrape.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;
use std::sync::Arc;

/// How often librdkafka reports the statistics the consumer lag is taken from.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// One query's counters. Relaxed ordering throughout: each value is read on its own, and a
/// scrape that sees a batch's input a moment before its output is harmless.
#[derive(Debug)]
pub struct QueryMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    /// Records dropped as late (see [`MetricsSnapshot::late`]).
    late: AtomicU64,
    /// Records in the input topics not yet committed, per worker of the query (each
    /// consumer's statistics cover only its own partitions); absent while unknown.
    consumer_lag: Mutex<BTreeMap<usize, i64>>,
    paused: AtomicBool,
    /// Deliveries sent again after a transient failure (see `task::delivery`).
    retries: AtomicU64,
    /// Why the query stopped for good, once it has (ksqlDB's ERROR state).
    failure: Mutex<Option<QueryFailure>>,
}

/// What stopped a query for good: ksqlDB's `QueryError` (REST's `queryErrors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFailure {
    /// When, in milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
    pub kind: FailureKind,
}

/// ksqlDB's `QueryError.Type`: whether retrying could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The query's own doing or its setup's (a record too large for the topic, a topic
    /// deleted under it, no permission to write): it fails again when restarted as is.
    User,
    /// The environment (the cluster) failed in a way the query could not ride out.
    System,
    Unknown,
}

impl FailureKind {
    /// ksqlDB's name for it.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::User => "USER",
            FailureKind::System => "SYSTEM",
            FailureKind::Unknown => "UNKNOWN",
        }
    }

    /// What kind of failure `e` is, by its variant and Kafka's error code (as ksqlDB's
    /// classifiers: a record too large, a missing topic and refused authorization are the
    /// user's).
    pub fn of(e: &crate::RuntimeError) -> FailureKind {
        use rdkafka::types::RDKafkaErrorCode as C;
        let code = match e {
            crate::RuntimeError::Production { source, .. } => source.rdkafka_error_code(),
            crate::RuntimeError::Kafka(k) => k.rdkafka_error_code(),
            _ => return FailureKind::Unknown,
        };
        match code {
            Some(
                C::MessageSizeTooLarge
                | C::MessageBatchTooLarge
                | C::InvalidMessageSize
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::InvalidTopic
                | C::InvalidRecord
                | C::PolicyViolation,
            ) => FailureKind::User,
            _ => FailureKind::System,
        }
    }
}

impl Default for QueryMetrics {
    fn default() -> Self {
        QueryMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            late: AtomicU64::new(0),
            consumer_lag: Mutex::new(BTreeMap::new()),
            paused: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub records_in: u64,
    pub records_out: u64,
    /// Records skipped because they did not decode or evaluate (the processing log).
    pub errors: u64,
    /// Records dropped because they arrived after their window closed (by their input
    /// partition's stream time): `Processed::late`, Kafka Streams' dropped records.
    pub late: u64,
    pub consumer_lag: Option<i64>,
    pub paused: bool,
    /// Deliveries sent again after a transient failure.
    pub production_retries: u64,
    /// The query stopped for good on an error (see [`QueryMetrics::failure`]).
    pub failed: bool,
}

impl QueryMetrics {
    pub fn new() -> Self {
        QueryMetrics::default()
    }

    /// Counts one processed batch.
    pub fn add_batch(&self, records_in: u64, records_out: u64, errors: u64) {
        self.records_in.fetch_add(records_in, Ordering::Relaxed);
        self.records_out.fetch_add(records_out, Ordering::Relaxed);
        self.errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Counts records dropped as late (`Processed::late` of a batch).
    pub fn add_late(&self, late: u64) {
        self.late.fetch_add(late, Ordering::Relaxed);
    }

    pub fn set_consumer_lag(&self, lag: Option<i64>) {
        self.set_worker_lag(0, lag);
    }

    /// The lag of one worker's partitions; the query's lag is the sum over its workers.
    pub fn set_worker_lag(&self, worker: usize, lag: Option<i64>) {
        // A poisoned lock only means a panicking writer; the map is still consistent.
        let mut lags = self.consumer_lag.lock().unwrap_or_else(|e| e.into_inner());
        match lag {
            Some(l) => lags.insert(worker, l),
            None => lags.remove(&worker),
        };
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Counts deliveries sent again after a transient failure.
    pub fn add_retries(&self, n: u64) {
        self.retries.fetch_add(n, Ordering::Relaxed);
    }

    /// The query stopped for good with `e` (the first error stands).
    pub fn set_failed(&self, e: &crate::RuntimeError) {
        let failure = QueryFailure {
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            message: e.to_string(),
            kind: FailureKind::of(e),
        };
        let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(failure);
    }

    /// Why the query stopped for good, if it has.
    pub fn failure(&self) -> Option<QueryFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let lags = self.consumer_lag.lock().unwrap_or_else(|e| e.into_inner());
        let lag = (!lags.is_empty()).then(|| lags.values().sum());
        MetricsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            consumer_lag: lag,
            paused: self.paused.load(Ordering::Relaxed),
            production_retries: self.retries.load(Ordering::Relaxed),
            failed: self
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some(),
        }
    }
}

/// The query consumer's rdkafka context: librdkafka's periodic statistics carry each
/// partition's lag behind its high watermark, which costs nothing extra to obtain (no
/// metadata requests per scrape).
pub struct LagContext {
    metrics: Arc<QueryMetrics>,
    worker: usize,
}

impl LagContext {
    pub fn new(metrics: Arc<QueryMetrics>) -> Self {
        Self::for_worker(metrics, 0)
    }

    /// The context of one of a query's parallel consumers.
    pub fn for_worker(metrics: Arc<QueryMetrics>, worker: usize) -> Self {
        LagContext { metrics, worker }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        self.metrics
            .set_worker_lag(self.worker, consumer_lag(&statistics));
    }
}

impl ConsumerContext for LagContext {}

/// The summed lag of every partition whose lag librdkafka knows; `None` when it knows none
/// (nothing committed yet, or no fetch answered yet).
fn consumer_lag(statistics: &Statistics) -> Option<i64> {
    let mut total = None;
    for topic in statistics.topics.values() {
        for (p, part) in &topic.partitions {
            // Partition -1 is librdkafka's placeholder for not-yet-assigned messages.
            if *p >= 0 && part.consumer_lag >= 0 {
                *total.get_or_insert(0) += part.consumer_lag;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_and_lag_starts_unknown() {
        let m = QueryMetrics::new();
        assert_eq!(m.snapshot().consumer_lag, None);
        m.add_batch(10, 7, 3);
        m.add_batch(5, 5, 0);
        m.add_late(2);
        m.add_late(1);
        m.set_consumer_lag(Some(4));
        m.set_paused(true);
        assert_eq!(
            m.snapshot(),
            MetricsSnapshot {
                records_in: 15,
                records_out: 12,
                errors: 3,
                late: 3,
                consumer_lag: Some(4),
                paused: true,
                production_retries: 0,
                failed: false,
            }
        );
        m.set_consumer_lag(None);
        assert_eq!(m.snapshot().consumer_lag, None);
        // Parallel workers each report their own partitions' lag; the query's is the sum.
        m.set_worker_lag(0, Some(3));
        m.set_worker_lag(1, Some(5));
        assert_eq!(m.snapshot().consumer_lag, Some(8));
        m.set_worker_lag(1, None);
        assert_eq!(m.snapshot().consumer_lag, Some(3));
    }

    #[test]
    fn the_first_failure_stands_and_says_whose_it_is() {
        use crate::RuntimeError;
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        let produced = |code| RuntimeError::Production {
            topic: "T".into(),
            source: KafkaError::MessageProduction(code),
        };
        let cases = [
            (produced(C::MessageSizeTooLarge), FailureKind::User),
            (produced(C::TopicAuthorizationFailed), FailureKind::User),
            (produced(C::UnknownTopicOrPartition), FailureKind::User),
            (produced(C::Fatal), FailureKind::System),
            (
                RuntimeError::Kafka(KafkaError::MessageProduction(C::UnknownTopic)),
                FailureKind::User,
            ),
            (RuntimeError::State("lost".into()), FailureKind::Unknown),
        ];
        for (e, kind) in &cases {
            assert_eq!(FailureKind::of(e), *kind, "{e}");
        }
        let m = QueryMetrics::new();
        assert_eq!((m.failure(), m.snapshot().failed), (None, false));
        m.set_failed(&cases[0].0);
        m.set_failed(&cases[5].0);
        let f = m.failure().expect("failed");
        assert_eq!((f.kind.name(), m.snapshot().failed), ("USER", true));
        assert!(f.message.contains("topic T") && f.timestamp > 0, "{f:?}");
    }

    #[test]
    fn lag_sums_known_partitions_only() {
        let json = r#"{"name":"c","client_id":"c","type":"consumer","ts":0,"time":0,"age":0,
            "replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"tx":0,
            "tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,
            "rxmsg_bytes":0,"simple_cnt":0,"metadata_cache_cnt":0,"brokers":{},
            "topics":{"t":{"topic":"t","age":0,"metadata_age":0,"batchsize":{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
            "batchcnt":{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
            "partitions":{
              "0":{"partition":0,"broker":1,"leader":1,"desired":true,"unknown":false,"msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"active","query_offset":0,"next_offset":0,"app_offset":0,"stored_offset":0,"committed_offset":3,"eof_offset":0,"lo_offset":0,"hi_offset":5,"ls_offset":5,"consumer_lag":2,"consumer_lag_stored":2,"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0},
              "1":{"partition":1,"broker":1,"leader":1,"desired":true,"unknown":false,"msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"active","query_offset":0,"next_offset":0,"app_offset":0,"stored_offset":0,"committed_offset":-1001,"eof_offset":0,"lo_offset":0,"hi_offset":5,"ls_offset":5,"consumer_lag":-1,"consumer_lag_stored":-1,"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0},
              "-1":{"partition":-1,"broker":-1,"leader":-1,"desired":false,"unknown":false,"msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"none","query_offset":0,"next_offset":0,"app_offset":0,"stored_offset":0,"committed_offset":0,"eof_offset":0,"lo_offset":0,"hi_offset":0,"ls_offset":0,"consumer_lag":9,"consumer_lag_stored":9,"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}}}}}"#;
        let stats: Statistics = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => panic!("statistics do not parse: {e}"),
        };
        assert_eq!(consumer_lag(&stats), Some(2));
        let mut none = stats.clone();
        none.topics.clear();
        assert_eq!(consumer_lag(&none), None);
    }
}

//! ksqlDB's processing log as a Kafka topic: one JSON entry per record a query could not
//! process, in ksqlDB's log schema (`docs/ksqldb-docs/reference/processing-log.md`), so
//! the `KSQL_PROCESSING_LOG` stream over the topic reads as ksqlDB's does.
//!
//! ksqlDB writes the log through log4j and sends it to Kafka only when configured
//! (`ksql.logging.processing.topic.auto.create`); Brook likewise logs every skipped record
//! as a warning, and writes it to the topic when the server is configured so. Entries
//! also carry the record's partition and offset (fields ksqlDB leaves out), so the bad
//! record can be found.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tracing::debug;

use crate::rows::Record;

/// ksqlDB's default topic name: the service id (`default_`), then `ksql_processing_log`.
pub const DEFAULT_TOPIC: &str = "default_ksql_processing_log";

/// The stream ksqlDB declares over the topic (`ksql.logging.processing.stream.auto.create`).
pub const STREAM_NAME: &str = "KSQL_PROCESSING_LOG";

/// The processing log's topic and how entries get there.
pub struct ProcessingLog {
    topic: String,
    producer: FutureProducer,
    /// `ksql.logging.processing.rows.include`: entries carry the record (Base64).
    include_rows: bool,
}

impl std::fmt::Debug for ProcessingLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingLog")
            .field("topic", &self.topic)
            .field("include_rows", &self.include_rows)
            .finish_non_exhaustive()
    }
}

impl ProcessingLog {
    pub fn new(topic: &str, producer: FutureProducer, include_rows: bool) -> Self {
        ProcessingLog {
            topic: topic.to_string(),
            producer,
            include_rows,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Logs that query `query` skipped `record` of `topic` for `error`: a deserialization
    /// error when the decoder said which part failed (`key: …`, `value: …`), else a record
    /// processing error. The entry is sent without waiting: a log that cannot be written
    /// must not hold the query back.
    pub fn skipped(&self, query: &str, topic: &str, record: &Record, error: &str) {
        let (target, message) = match error.split_once(": ") {
            Some(("key", m)) => ("key", m),
            Some(("value", m)) => ("value", m),
            _ => return self.processing_error(query, topic, record, error),
        };
        let payload = if target == "key" {
            &record.key
        } else {
            &record.value
        };
        let b64 = self.include_rows.then(|| {
            payload
                .as_deref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
        });
        let entry = json!({
            "level": "ERROR",
            "logger": format!("processing.{query}.KsqlTopic.Source.deserializer"),
            "time": now_ms(),
            "message": {
                "type": 0,
                "deserializationError": {
                    "target": target,
                    "errorMessage": format!("Failed to deserialize {target} from topic: {topic}. {message}"),
                    "recordB64": b64.flatten(),
                    "cause": [message],
                    "topic": topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
                "recordProcessingError": null,
                "productionError": null,
                "serializationError": null,
                "kafkaStreamsThreadError": null,
            },
        })
        .to_string();
        self.send(&entry);
    }

    fn processing_error(&self, query: &str, topic: &str, record: &Record, error: &str) {
        self.send(&processing_entry(
            query,
            error,
            error,
            topic,
            record.partition,
            record.offset,
        ));
    }

    /// Logs that an expression of query `query` failed on a row, which went on with NULL
    /// (ksqlDB's RECORD_PROCESSING_ERROR: its message names what was computed, its cause
    /// why it failed).
    pub fn row_error(&self, query: &str, e: &crate::eval::RowError) {
        self.send(&processing_entry(
            query,
            &e.message,
            &e.cause,
            &e.topic,
            e.partition,
            e.offset,
        ));
    }

    fn send(&self, entry: &str) {
        let rec: FutureRecord<'_, (), str> = FutureRecord::to(&self.topic).payload(entry);
        if let Err((e, _)) = self.producer.send_result(rec) {
            debug!(error = %e, "processing log entry not written");
        }
    }
}

/// A type 1 entry (RECORD_PROCESSING_ERROR). `record` stays null: ksqlDB puts the row there
/// only with `ksql.logging.processing.rows.include`, and Brook names it by topic,
/// partition and offset instead.
fn processing_entry(
    query: &str,
    message: &str,
    cause: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> String {
    json!({
        "level": "ERROR",
        "logger": format!("processing.{query}"),
        "time": now_ms(),
        "message": {
            "type": 1,
            "deserializationError": null,
            "recordProcessingError": {
                "errorMessage": message,
                "record": null,
                "cause": [cause],
                "topic": topic,
                "partition": partition,
                "offset": offset,
            },
            "productionError": null,
            "serializationError": null,
            "kafkaStreamsThreadError": null,
        },
    })
    .to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The `CREATE STREAM` ksqlDB runs over the processing log topic (its schema, as in
/// ksqlDB's `ProcessingLogMessageSchema`, with Brook's partition and offset).
pub fn stream_ddl(topic: &str) -> String {
    format!(
        "CREATE STREAM {STREAM_NAME} (logger VARCHAR, level VARCHAR, time BIGINT, \
         message STRUCT<type INT, \
         deserializationError STRUCT<target VARCHAR, errorMessage VARCHAR, recordB64 VARCHAR, \
         cause ARRAY<VARCHAR>, `topic` VARCHAR, `partition` INT, `offset` BIGINT>, \
         recordProcessingError STRUCT<errorMessage VARCHAR, record VARCHAR, cause ARRAY<VARCHAR>, \
         `topic` VARCHAR, `partition` INT, `offset` BIGINT>, \
         productionError STRUCT<errorMessage VARCHAR>, \
         serializationError STRUCT<target VARCHAR, errorMessage VARCHAR, record VARCHAR, \
         cause ARRAY<VARCHAR>, `topic` VARCHAR>, \
         kafkaStreamsThreadError STRUCT<errorMessage VARCHAR, threadName VARCHAR, \
         cause ARRAY<VARCHAR>>>) \
         WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON');"
    )
}

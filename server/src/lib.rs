//! The Brook service: today it owns the Kafka connection (the embedded broker by default);
//! statement execution, the REST and gRPC APIs and the command log build on it.

pub mod engine;
pub mod schema_registry;

/// The gRPC API's messages, client and server, generated from `proto/brook/v1/brook.proto`
/// (the service itself lives beside the REST API in the `brook-server` binary).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("brook.v1");

    /// The API's encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("brook_descriptor");
}

use std::time::Duration;

use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::RuntimeError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot reach Kafka at {bootstrap}: {reason}")]
    KafkaUnreachable { bootstrap: String, reason: String },
    #[error("no Kafka: pass --bootstrap-servers (this build has no embedded broker)")]
    NoKafka,
    #[error(transparent)]
    Statement(#[from] brook_runtime::session::StatementError),
    /// ksqlDB's `ksql.max.push.queries` (its message, with Brook's option named).
    #[error("Not executing statement(s) as it would cause the number of active, push queries to exceed the configured limit. Terminate existing PUSH queries, or increase the 'ksql.max.push.queries' setting (brook-server --max-push-queries). Current push query count: {count}. Configured limit: {limit}.")]
    TooManyPushQueries { count: u64, limit: u64 },
    /// The consumer push queries on a source share could not start or go on.
    #[error("push queries on {source_name}: {reason}")]
    SharedConsumer { source_name: String, reason: String },
}

/// Asks Kafka for its metadata, so a wrong address fails at start with a clear message
/// rather than later inside a query.
pub async fn check_kafka(bootstrap: &str, timeout: Duration) -> Result<usize, ServerError> {
    let bootstrap = bootstrap.to_string();
    let b = bootstrap.clone();
    let res = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = brook_runtime::kafka::client_config(&b)
            .create()
            .map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    res.map_err(|reason| ServerError::KafkaUnreachable { bootstrap, reason })
}

//! The Brook service: today it owns the Kafka connection (the embedded broker by default);
//! statement execution, the REST and gRPC APIs and the command log build on it.

pub mod bodies;
pub mod config_file;
pub mod engine;
pub mod kafka_security;
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
    /// A record of the command log cannot be replayed: the server does not start, rather
    /// than start with part of its catalog.
    #[error("the command log {topic} holds a command at offset {offset} that cannot be replayed: {reason}. The server did not start, rather than start without the streams, tables and queries recorded after it. Restore the record, or copy the topic without it and start with --command-topic naming the copy.")]
    UnreadableCommand {
        topic: String,
        offset: i64,
        reason: engine::UnreadableCommand,
    },
    /// The consumer push queries on a source share could not start or go on.
    #[error("push queries on {source_name}: {reason}")]
    SharedConsumer { source_name: String, reason: String },
}

/// Asks Kafka for its metadata, so a wrong address fails at start with a clear message
/// rather than later inside a query, and a refused login or TLS handshake at once, naming
/// it ([`RuntimeError::KafkaAuthentication`], [`RuntimeError::KafkaTls`]), not as a timeout.
pub async fn check_kafka(
    kafka: &brook_runtime::kafka::Kafka,
    timeout: Duration,
) -> Result<usize, ServerError> {
    let k = kafka.clone();
    let checked =
        tokio::task::spawn_blocking(move || brook_runtime::kafka::check_connection(&k, timeout))
            .await
            .map_err(|e| ServerError::KafkaUnreachable {
                bootstrap: kafka.bootstrap().to_string(),
                reason: e.to_string(),
            })?;
    match checked {
        Ok(brokers) => Ok(brokers),
        Err(RuntimeError::KafkaUnreachable { bootstrap, reason }) => {
            Err(ServerError::KafkaUnreachable { bootstrap, reason })
        }
        Err(e) => Err(e.into()),
    }
}

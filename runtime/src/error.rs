use thiserror::Error;

/// Errors of Brook's runtime: Kafka I/O, the embedded broker, and data that does not decode.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: creating topic `{topic}` failed: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("embedded broker: {0}")]
    Broker(String),
    #[error("embedded broker: {addr} is already in use; pass another port, or --bootstrap-servers to use a running Kafka")]
    BrokerAddressInUse { addr: std::net::SocketAddr },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

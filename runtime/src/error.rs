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
    #[error("{0}")]
    Plan(String),
    #[error("evaluating an expression: {0}")]
    Eval(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A record's key or value that does not decode with its format and columns.
    #[error("{format} {part}: {reason}")]
    Decode {
        format: brook_planner::format::FormatKind,
        part: crate::format::Part,
        reason: String,
    },
    /// A row that cannot be written in its format.
    #[error("{format} {part}: cannot encode: {reason}")]
    Encode {
        format: brook_planner::format::FormatKind,
        part: crate::format::Part,
        reason: String,
    },
    /// Columns or options a format cannot carry (checked when a codec is built).
    #[error("{reason}")]
    FormatSchema { reason: String },
    /// Operator state that cannot be saved to or restored from its changelog.
    #[error("state: {0}")]
    State(String),
    #[error("the {0} format is not supported yet")]
    FormatNotSupported(brook_planner::format::FormatKind),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

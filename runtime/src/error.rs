use thiserror::Error;

/// Errors of Brook's runtime: Kafka I/O, the embedded broker, and data that does not decode.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: creating topic `{topic}` failed: {reason}")]
    CreateTopic { topic: String, reason: String },
    /// A Kafka client setting librdkafka refuses (a secret's value is never shown).
    #[error("kafka setting `{key}` = `{value}`: {reason}")]
    KafkaSetting {
        key: String,
        value: String,
        reason: String,
    },
    /// The cluster refused Brook's SASL login: wrong user, password or mechanism.
    #[error("Kafka at {bootstrap} refused authentication with SASL {mechanism}: {reason}. Check the user name and password (sasl.jaas.config, or sasl.username and sasl.password) and sasl.mechanism.")]
    KafkaAuthentication {
        bootstrap: String,
        mechanism: String,
        reason: String,
    },
    /// The TLS handshake with the cluster failed (untrusted certificate, wrong host name,
    /// a TLS client on a plaintext listener …).
    #[error("TLS with Kafka at {bootstrap} failed: {reason}. Check security.protocol and the CA certificate (ssl.ca.location or ssl.truststore.location).")]
    KafkaTls { bootstrap: String, reason: String },
    /// No answer from the cluster in time; `reason` is librdkafka's last complaint.
    #[error("cannot reach Kafka at {bootstrap}: {reason}")]
    KafkaUnreachable { bootstrap: String, reason: String },
    /// A query's result Kafka refused for good (a record too large, a topic deleted or
    /// not ours to write): the query stops with this error. Transient refusals are retried.
    #[error("Error sending record to topic {topic}: {source}")]
    Production {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
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
    /// An internal topic that must keep every record (the command log) has settings that
    /// would lose some, or a shape Brook cannot read, and cannot be corrected.
    #[error("internal topic `{topic}`: {reason}")]
    InternalTopic { topic: String, reason: String },
    #[error("the {0} format is not supported yet")]
    FormatNotSupported(brook_planner::format::FormatKind),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

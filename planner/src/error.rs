use thiserror::Error;

/// Errors found while checking or planning a statement.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    #[error("unknown type `{0}`; register it with CREATE TYPE first")]
    UnknownType(String),
    #[error("Unknown format: {0}")]
    UnknownFormat(String),
    #[error("{0} does not exist.")]
    UnknownSource(String),
    #[error("Invalid value for property {name}: {reason}")]
    InvalidProperty { name: String, reason: String },
    /// A statement that is well-formed but not allowed, with ksqlDB's message.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    DataFusion(String),
    #[error("DECIMAL precision must be between 1 and 38 and scale between 0 and the precision, got DECIMAL({precision}, {scale})")]
    InvalidDecimal { precision: u32, scale: u32 },
}

use thiserror::Error;

/// Errors found while checking or planning a statement.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    #[error("unknown type `{0}`; register it with CREATE TYPE first")]
    UnknownType(String),
    #[error("unknown format `{0}`")]
    UnknownFormat(String),
    #[error("DECIMAL precision must be between 1 and 38 and scale between 0 and the precision, got DECIMAL({precision}, {scale})")]
    InvalidDecimal { precision: u32, scale: u32 },
}

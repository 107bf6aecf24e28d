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
    /// A type that, its `CREATE TYPE` names replaced, has more parts than the limit.
    #[error("Type {name} is too large: it has {nodes} parts once custom types are replaced, more than the limit of {limit}")]
    TypeTooLarge {
        name: String,
        nodes: usize,
        limit: usize,
    },
    /// A type that, its `CREATE TYPE` names replaced, is nested deeper than the limit.
    #[error("Type {name} is nested too deeply once custom types are replaced: more than {limit} levels of ARRAY, MAP or STRUCT")]
    TypeTooDeep { name: String, limit: usize },
    /// A statement whose types (columns, CASTs) together have more parts than the limit.
    #[error("The statement's types are too large: more than {limit} parts once custom types are replaced")]
    StatementTypesTooLarge { limit: usize },
    /// An expression whose compilation takes more steps than the limit.
    #[error("The expression is too complex to plan: more than {limit} steps")]
    TooComplex { limit: usize },
    #[error("DECIMAL precision must be between 1 and 38 and scale between 0 and the precision, got DECIMAL({precision}, {scale})")]
    InvalidDecimal { precision: u32, scale: u32 },
}

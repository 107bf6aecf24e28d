use thiserror::Error;

/// A statement that does not parse: where, what was found and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending token.
    pub line: u64,
    /// 1-based column (in characters) of the offending token.
    pub column: u64,
    /// What was expected and what was found, e.g. `Expected: FROM, found: WHERE`.
    pub message: String,
}

impl ParseError {
    pub fn new(line: u64, column: u64, message: impl Into<String>) -> Self {
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}

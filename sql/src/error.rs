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
    /// Why, for callers that treat a limit differently from a syntax error.
    pub kind: ParseErrorKind,
}

/// Why a statement does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Not the grammar: an unexpected token, an unterminated string, an unknown variable.
    Syntax,
    /// Nested deeper than `limit` levels (`crate::limits`).
    NestedTooDeeply { limit: usize },
    /// More than `limit` units (tokens of a statement, bytes of a substituted text).
    TooLarge { limit: usize },
}

impl ParseError {
    pub fn new(line: u64, column: u64, message: impl Into<String>) -> Self {
        ParseError {
            line,
            column,
            message: message.into(),
            kind: ParseErrorKind::Syntax,
        }
    }

    pub fn nested_too_deeply(
        line: u64,
        column: u64,
        message: impl Into<String>,
        limit: usize,
    ) -> Self {
        ParseError {
            kind: ParseErrorKind::NestedTooDeeply { limit },
            ..ParseError::new(line, column, message)
        }
    }

    pub fn too_large(line: u64, column: u64, message: impl Into<String>, limit: usize) -> Self {
        ParseError {
            kind: ParseErrorKind::TooLarge { limit },
            ..ParseError::new(line, column, message)
        }
    }
}

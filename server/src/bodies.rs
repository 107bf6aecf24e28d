//! The REST API's request bodies, read without a server: the JSON bodies of `/ksql`,
//! `/query`, `/query-stream` and `/close-query`, and the lines of `/inserts-stream` (its
//! first line naming the target, then one row per line). Pure functions, so that the
//! `rest_bodies` fuzz target and unit tests reach exactly what the endpoints run.
//!
//! JSON nesting is bounded by serde_json's recursion limit (128 levels), which is on: no
//! crate of the workspace enables its `unbounded_depth` feature.

mod insert_row;

pub use insert_row::{identifier, insert_statement, RowError};

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a request body was refused (the messages are ksqlDB's).
#[derive(Debug, Error)]
pub enum BodyError {
    /// `/ksql`, `/query`, `/query-stream`: not the JSON object the endpoint expects.
    #[error("Invalid request body: {0}")]
    Invalid(#[from] serde_json::Error),
    /// `/close-query` and `/inserts-stream`'s first line: not JSON.
    #[error("Invalid JSON in request args")]
    InvalidArgs,
    #[error("No target in arguments")]
    NoTarget,
    #[error("No queryId in arguments")]
    NoQueryId,
}

/// The body of `/ksql` and `/query` (and the `request` parameter of `/ws/query`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KsqlRequest {
    pub ksql: String,
    #[serde(default)]
    pub streams_properties: Map<String, Value>,
}

/// The body of `/query-stream`.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamRequest {
    pub sql: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

pub fn ksql_request(body: &[u8]) -> Result<KsqlRequest, BodyError> {
    Ok(serde_json::from_slice(body)?)
}

pub fn stream_request(body: &[u8]) -> Result<StreamRequest, BodyError> {
    Ok(serde_json::from_slice(body)?)
}

/// The query id a `/close-query` body names.
pub fn close_query_request(body: &[u8]) -> Result<String, BodyError> {
    let args: Value = serde_json::from_slice(body).map_err(|_| BodyError::InvalidArgs)?;
    args.get("queryId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(BodyError::NoQueryId)
}

/// The stream `/inserts-stream`'s first line names, as an identifier (upper-cased unless
/// back-quoted).
pub fn inserts_target(line: &[u8]) -> Result<String, BodyError> {
    let args: Value = serde_json::from_slice(line).map_err(|_| BodyError::InvalidArgs)?;
    args.get("target")
        .and_then(Value::as_str)
        .map(identifier)
        .ok_or(BodyError::NoTarget)
}

/// A line of a streamed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its newline.
    Complete(Vec<u8>),
    /// A line longer than the limit: reported once, as soon as it is too long, and its
    /// bytes up to the next newline are dropped as they arrive.
    TooLong,
}

/// Splits a body into lines as its chunks arrive, each byte looked at once, holding at
/// most one line of at most `max` bytes: a body's size does not decide the memory it takes.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    /// Inside a line already reported as too long.
    skipping: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// The lines `chunk` ends (and a too-long report for a line it makes too long).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let part = &rest[..nl];
            rest = &rest[nl + 1..];
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if self.partial.len() + part.len() > self.max {
                self.partial = Vec::new();
                out.push(Line::TooLong);
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(part);
            out.push(Line::Complete(line));
        }
        if !self.skipping && !rest.is_empty() {
            if self.partial.len() + rest.len() > self.max {
                self.partial = Vec::new();
                self.skipping = true;
                out.push(Line::TooLong);
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
        out
    }

    /// The last line, when the body did not end with a newline.
    pub fn finish(&mut self) -> Option<Line> {
        if std::mem::take(&mut self.skipping) || self.partial.is_empty() {
            return None;
        }
        Some(Line::Complete(std::mem::take(&mut self.partial)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out: Vec<Line> = chunks.iter().flat_map(|c| s.push(c)).collect();
        out.extend(s.finish());
        out
    }

    fn complete(s: &str) -> Line {
        Line::Complete(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_across_chunks() {
        // The chunks a body arrives in, the line limit, the lines expected.
        type Case<'a> = (Vec<&'a [u8]>, usize, Vec<Line>);
        let cases: Vec<Case> = vec![
            (
                vec![b"a\nb", b"c\n", b"d"],
                10,
                vec![complete("a"), complete("bc"), complete("d")],
            ),
            (vec![b"\n\n"], 10, vec![complete(""), complete("")]),
            (
                vec![b"abc", b"def\nok\n"],
                5,
                vec![Line::TooLong, complete("ok")],
            ),
            (
                vec![b"abcdef", b"ghi", b"\nok"],
                5,
                vec![Line::TooLong, complete("ok")],
            ),
            (vec![b"abcde\n"], 5, vec![complete("abcde")]),
            (vec![b"abcdef"], 5, vec![Line::TooLong]),
            (vec![b"ab", b"cd", b"ef\n"], 5, vec![Line::TooLong]),
        ];
        for (chunks, max, want) in cases {
            assert_eq!(split(&chunks, max), want, "{chunks:?} max {max}");
        }
    }

    #[test]
    fn a_line_too_long_is_never_held() {
        let mut s = LineSplitter::new(1024);
        let chunk = vec![b'x'; 64 * 1024];
        let first = s.push(&chunk);
        assert_eq!(first, vec![Line::TooLong]);
        for _ in 0..100 {
            assert!(s.push(&chunk).is_empty());
            assert_eq!(s.partial.capacity(), 0, "nothing of the long line is kept");
        }
        assert_eq!(s.push(b"\n{}\n"), vec![complete("{}")]);
    }

    #[test]
    fn request_bodies() {
        let r = ksql_request(br#"{"ksql":"SHOW STREAMS;","streamsProperties":{"a":1}}"#);
        assert_eq!(r.ok().map(|r| r.ksql), Some("SHOW STREAMS;".to_string()));
        assert!(matches!(ksql_request(b"{}"), Err(BodyError::Invalid(_))));
        assert_eq!(
            stream_request(br#"{"sql":"x"}"#).ok().map(|r| r.sql),
            Some("x".into())
        );
        assert_eq!(
            close_query_request(br#"{"queryId":"q1"}"#).ok(),
            Some("q1".into())
        );
        assert!(matches!(
            close_query_request(b"{"),
            Err(BodyError::InvalidArgs)
        ));
        assert!(matches!(
            close_query_request(b"{}"),
            Err(BodyError::NoQueryId)
        ));
        assert_eq!(inserts_target(br#"{"target":"s"}"#).ok(), Some("S".into()));
        assert!(matches!(inserts_target(b"[]"), Err(BodyError::NoTarget)));
    }

    #[test]
    fn json_nesting_is_bounded() {
        let deep = format!(
            r#"{{"ksql":"x","streamsProperties":{{"a":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = ksql_request(deep.as_bytes()).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("recursion limit")),
            "{e:?}"
        );
    }
}

//! `/inserts-stream`: rows streamed into a stream, one JSON object per line after a first
//! line naming the target, each answered with an ack (or an error) carrying its sequence
//! number. The body is read as it arrives, a line at a time: a line longer than
//! `brook.inserts.stream.max.row.bytes` is answered with an error row as soon as it is too
//! long, and its bytes are dropped unread, so no body holds more than one row in memory.
//!
//! A row becomes an `INSERT INTO … VALUES` statement (`brook_server::bodies`), planned and
//! encoded by the session like any other.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use brook_planner::catalog::{Catalog, Source};
use brook_runtime::session::StatementError;
use brook_server::bodies::{self, Line, LineSplitter};
use brook_sql::SourceKind;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::limits::INSERTS_MAX_ROW_BYTES;
use super::{
    accepts, generic_error, Api, BAD_REQUEST, BAD_STATEMENT, DELIMITED, JSON, PAYLOAD_TOO_LARGE,
};

pub(super) use brook_server::bodies::identifier;

/// An error for one row: ksqlDB's `InsertError`.
pub(super) struct RowError {
    pub(super) code: u32,
    pub(super) message: String,
}

impl From<bodies::RowError> for RowError {
    fn from(e: bodies::RowError) -> Self {
        RowError {
            code: BAD_REQUEST,
            message: e.to_string(),
        }
    }
}

impl RowError {
    /// A row longer than the limit.
    pub(super) fn too_large(limit: usize) -> Self {
        RowError {
            code: PAYLOAD_TOO_LARGE,
            message: format!(
                "Row too large: a row holds at most {limit} bytes ({INSERTS_MAX_ROW_BYTES})"
            ),
        }
    }
}

/// How acks are framed: one per line (the default) or one JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Delimited,
    JsonArray,
}

/// A request body's lines as they arrive.
struct Lines {
    body: axum::body::BodyDataStream,
    splitter: LineSplitter,
    ready: VecDeque<Line>,
    done: bool,
}

impl Lines {
    fn new(body: Body, max: usize) -> Self {
        Lines {
            body: body.into_data_stream(),
            splitter: LineSplitter::new(max),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The next line that is not blank (a last line without a newline counts too).
    async fn next_nonblank(&mut self) -> Option<Result<Line, axum::Error>> {
        loop {
            match self.ready.pop_front() {
                Some(Line::Complete(l)) if l.iter().all(u8::is_ascii_whitespace) => continue,
                Some(line) => return Some(Ok(line)),
                None if self.done => return None,
                None => {}
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.ready.extend(self.splitter.push(&chunk)),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.done = true;
                    self.ready.extend(self.splitter.finish());
                }
            }
        }
    }
}

pub(super) async fn inserts_stream(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let framing = if accepts(&headers, JSON) && !accepts(&headers, DELIMITED) {
        Framing::JsonArray
    } else {
        Framing::Delimited
    };
    let max = api.limits.inserts_max_row_bytes;
    let mut lines = Lines::new(body, max);
    let target = match lines.next_nonblank().await {
        Some(Ok(Line::Complete(l))) => bodies::inserts_target(&l),
        Some(Ok(Line::TooLong)) => {
            let e = RowError::too_large(max);
            return generic_error(StatusCode::PAYLOAD_TOO_LARGE, e.code, &e.message);
        }
        Some(Err(e)) => return bad_args(&format!("Cannot read the request: {e}")),
        None => Err(bodies::BodyError::NoTarget),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => return bad_args(&e.to_string()),
    };
    let catalog = api.engine.catalog().await;
    let source = match insertable(&catalog, &target) {
        Ok(s) => s.clone(),
        Err(message) => {
            return generic_error(StatusCode::BAD_REQUEST, BAD_STATEMENT, &message);
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut seq: i64 = 0;
        let mut first = true;
        if framing == Framing::JsonArray && tx.send(Bytes::from_static(b"[")).await.is_err() {
            return;
        }
        while let Some(line) = lines.next_nonblank().await {
            let ack = match line {
                Ok(Line::Complete(l)) => insert_row(&api, &source, &catalog, &l, seq).await,
                Ok(Line::TooLong) => ack_line(seq, Err(RowError::too_large(max))),
                Err(e) => {
                    // The request broke off: nothing more will arrive.
                    debug!(error = %e, "inserts-stream request ended early");
                    break;
                }
            };
            let text = match framing {
                Framing::Delimited => format!("{ack}\n"),
                Framing::JsonArray if first => ack.to_string(),
                Framing::JsonArray => format!(",{ack}"),
            };
            first = false;
            seq += 1;
            if tx.send(Bytes::from(text)).await.is_err() {
                return;
            }
        }
        if framing == Framing::JsonArray {
            let _ = tx.send(Bytes::from_static(b"]")).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let content_type = match framing {
        Framing::Delimited => DELIMITED,
        Framing::JsonArray => JSON,
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response()
}

fn bad_args(message: &str) -> Response {
    generic_error(StatusCode::BAD_REQUEST, BAD_REQUEST, message)
}

/// The stream rows may be inserted into, or ksqlDB's reason why not.
pub(super) fn insertable<'a>(catalog: &'a Catalog, target: &str) -> Result<&'a Source, String> {
    let source = catalog
        .sources
        .get(target)
        .ok_or_else(|| format!("Cannot insert values into an unknown stream: {target}"))?;
    if source.kind == SourceKind::Table {
        return Err("Cannot insert into a table".into());
    }
    if source.window.is_some() {
        return Err("Cannot insert values into windowed stream".into());
    }
    if source.read_only {
        return Err(format!(
            "Cannot insert values into read-only topic: {}",
            source.topic
        ));
    }
    Ok(source)
}

/// One row: its ack, or its error, as the JSON line to send.
async fn insert_row(
    api: &Api,
    source: &Source,
    catalog: &Catalog,
    line: &[u8],
    seq: i64,
) -> String {
    ack_line(seq, insert_one(api, source, catalog, line).await)
}

/// A row's ack (or error) line.
fn ack_line(seq: i64, result: Result<(), RowError>) -> String {
    // Written by hand to keep ksqlDB's field order (serde_json's maps sort their keys).
    match result {
        Ok(()) => format!(r#"{{"status":"ok","seq":{seq}}}"#),
        Err(e) => format!(
            r#"{{"status":"error","seq":{seq},"error_code":{},"message":{}}}"#,
            e.code,
            Value::String(e.message)
        ),
    }
}

/// One row (a JSON object) into `source`; shared with gRPC's Insert.
pub(super) async fn insert_one(
    api: &Api,
    source: &Source,
    catalog: &Catalog,
    line: &[u8],
) -> Result<(), RowError> {
    // Like ksqlDB, the record's timestamp is the time of the insert.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let sql = bodies::insert_statement(source, catalog, line, now)?;
    run(api, &sql).await
}

async fn run(api: &Api, sql: &str) -> Result<(), RowError> {
    let statements = brook_sql::parse(sql).map_err(|e| {
        warn!(statement = %sql, error = %e, "inserts-stream: generated INSERT does not parse");
        RowError {
            code: BAD_REQUEST,
            message: e.to_string(),
        }
    })?;
    let [ps] = statements.as_slice() else {
        return Err(RowError {
            code: BAD_REQUEST,
            message: "Expected one row".into(),
        });
    };
    api.engine.insert_values(ps).await.map_err(|e| match e {
        StatementError::Runtime(_) => {
            warn!(error = %e, "inserts-stream: insert failed");
            RowError {
                code: super::SERVER_ERROR,
                message: "Error in processing inserts. Check server logs for details.".into(),
            }
        }
        other => RowError {
            code: BAD_REQUEST,
            message: other.to_string(),
        },
    })?;
    Ok(())
}

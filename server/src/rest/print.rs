//! PRINT: a topic's records as ksqlDB prints them, from a consumer of the statement's own.
//!
//! ksqlDB does not know a topic's formats when it prints it: it tries every format it knows
//! on each key and value, drops a format the first time it fails, and shows a record in the
//! first format still standing. The `Key format:` / `Value format:` lines (on `/query` only)
//! list what is left whenever that changes. This module reproduces that guessing, so the
//! output matches ksqlDB's byte for byte for the formats Brook writes. Schema-registry
//! formats (AVRO, PROTOBUF, JSON_SR) never match here: without a registry their
//! deserializers fail on every record, in ksqlDB too.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_sql::{ResourceName, Statement};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{accepts, generic_error, ksql_content_type, Api, BAD_REQUEST, BAD_STATEMENT};

/// How long a `/query` PRINT waits for records before it writes an empty line: ksqlDB's
/// `ksql.query.stream.disconnect.check` (the blank line is also how it notices a client
/// that went away).
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The most records formatted as one batch (ksqlDB formats what one `poll` returned).
const MAX_BATCH: usize = 500;

/// Which endpoint the PRINT came through; they frame the output differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/query`: format lines, the records, and an empty line whenever nothing arrived.
    Query,
    /// `/query-stream`: only the records, one per line.
    QueryStream,
}

/// A parsed PRINT.
#[derive(Debug, Clone)]
struct PrintTopic {
    topic: String,
    from_beginning: bool,
    interval: u64,
    limit: Option<u64>,
}

/// Answers `sql` when it is a single PRINT statement; `None` for anything else (the caller
/// runs it as a query, which reports parse errors as usual).
pub(super) async fn maybe_print(
    api: &Api,
    sql: &str,
    properties: &Map<String, Value>,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Option<Response> {
    let statements = brook_sql::parse(sql).ok()?;
    let [ps] = statements.as_slice() else {
        return None;
    };
    let Statement::Print {
        topic,
        from_beginning,
        interval,
        limit,
    } = &ps.statement
    else {
        return None;
    };
    let print = PrintTopic {
        topic: match topic {
            ResourceName::Ident(i) => i.value.clone(),
            ResourceName::String(s) => s.clone(),
        },
        from_beginning: *from_beginning,
        interval: interval.unwrap_or(1),
        limit: *limit,
    };
    Some(print_response(api, print, properties, headers, endpoint).await)
}

async fn print_response(
    api: &Api,
    print: PrintTopic,
    properties: &Map<String, Value>,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Response {
    // ksqlDB's HTTP/2 endpoint prints only as delimited text.
    if endpoint == Endpoint::QueryStream
        && accepts(headers, super::JSON)
        && !accepts(headers, super::DELIMITED)
    {
        return generic_error(
            StatusCode::NOT_ACCEPTABLE,
            BAD_REQUEST,
            "PRINT is only supported with the application/vnd.ksqlapi.delimited.v1 content type",
        );
    }
    if print.interval < 1 {
        return generic_error(
            StatusCode::BAD_REQUEST,
            BAD_STATEMENT,
            &format!(
                "INTERVAL must be greater than one, but was: {}",
                print.interval
            ),
        );
    }
    let topics = match api.engine.topics().await {
        Ok(t) => t,
        Err(e) => {
            return generic_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                super::SERVER_ERROR,
                &e.to_string(),
            )
        }
    };
    let Some(&partitions) = topics.get(&print.topic) else {
        return unknown_topic(&print.topic, topics.keys(), endpoint);
    };
    // Each PRINT has a consumer of its own: their number is bounded.
    let Some(slot) = api.print_slots.try_take() else {
        return generic_error(
            StatusCode::TOO_MANY_REQUESTS,
            super::TOO_MANY_REQUESTS,
            &format!(
                "Not executing statement(s) as it would cause the number of active PRINT \
                 statements to exceed the configured limit. Stop a running PRINT, or increase \
                 the '{}' setting. Current PRINT count: {}. Configured limit: {}.",
                super::limits::PRINT_MAX_CONCURRENT,
                api.print_slots.in_use(),
                api.print_slots.limit()
            ),
        );
    };
    let earliest = print.from_beginning
        || properties
            .get("auto.offset.reset")
            .or_else(|| properties.get("ksql.streams.auto.offset.reset"))
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("earliest"));
    let consumer = match print_consumer(&api.bootstrap, &print.topic, partitions, earliest) {
        Ok(c) => c,
        Err(e) => {
            return generic_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                super::SERVER_ERROR,
                &e.to_string(),
            )
        }
    };
    info!(topic = %print.topic, "printing topic");
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let stopping = api.engine.stopping_signal();
    tokio::spawn(async move {
        let topic = print.topic.clone();
        run(&consumer, print, endpoint, tx, stopping).await;
        debug!(topic = %topic, "PRINT ended");
        // Closing a consumer blocks on librdkafka: off the runtime's worker threads.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        drop(slot);
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let content_type = match endpoint {
        Endpoint::Query => ksql_content_type(headers),
        Endpoint::QueryStream => super::DELIMITED,
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response()
}

/// ksqlDB's answers for a topic that does not exist, per endpoint.
fn unknown_topic<'a>(
    topic: &str,
    existing: impl Iterator<Item = &'a String>,
    endpoint: Endpoint,
) -> Response {
    if endpoint == Endpoint::QueryStream {
        return generic_error(
            StatusCode::BAD_REQUEST,
            BAD_STATEMENT,
            &format!("Topic does not exist: {topic}"),
        );
    }
    let mut similar: Vec<&String> = existing.filter(|t| t.eq_ignore_ascii_case(topic)).collect();
    similar.sort();
    let mut message = format!(
        "Could not find topic '{topic}', or the KSQL user does not have permissions to list \
         the topic. Topic names are case-sensitive."
    );
    if !similar.is_empty() {
        message.push_str("\nDid you mean:");
        for t in similar {
            message.push_str(&format!("\n\tprint {t};"));
        }
    }
    generic_error(StatusCode::BAD_REQUEST, BAD_REQUEST, &message)
}

/// A consumer assigned every partition of `topic` (no group membership: PRINT commits
/// nothing), at the start of each or at its end.
fn print_consumer(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
    partitions: i32,
    earliest: bool,
) -> Result<StreamConsumer, brook_runtime::rdkafka::error::KafkaError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let consumer: StreamConsumer =
        brook_runtime::kafka::consumer_config(bootstrap, &format!("_brook_print_{nanos}"))
            .create()?;
    let offset = if earliest {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// One consumed record, as PRINT needs it.
struct Raw {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    partition: i32,
}

/// Consumes until the LIMIT, the client going away, or the server stopping.
async fn run(
    consumer: &StreamConsumer,
    print: PrintTopic,
    endpoint: Endpoint,
    tx: mpsc::Sender<Bytes>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut formatter = RecordFormatter::new();
    let mut tracker = FormatsTracker::default();
    let mut polled: u64 = 0;
    let mut written: u64 = 0;
    let limit_reached = |written: u64| print.limit.is_some_and(|l| written >= l);
    while !limit_reached(written) {
        if *stopping.borrow() {
            return;
        }
        let first = tokio::select! {
            _ = tx.closed() => return,
            _ = stopping.changed() => return,
            m = tokio::time::timeout(KEEPALIVE, consumer.recv()) => m,
        };
        let first = match first {
            Err(_) => {
                if endpoint == Endpoint::Query && tx.send(Bytes::from_static(b"\n")).await.is_err()
                {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => {
                warn!(topic = %print.topic, error = %e, "PRINT: consume failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(Ok(m)) => raw(&m),
        };
        // Whatever else has already arrived forms one batch with it, as one poll would.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(raw(&m)),
                _ => break,
            }
        }
        let lines = formatter.format(&batch);
        let mut out = String::new();
        if endpoint == Endpoint::Query {
            tracker.update(&formatter, &mut out);
        }
        for line in lines {
            if polled.is_multiple_of(print.interval) {
                written += 1;
                out.push_str(&line);
                out.push('\n');
            }
            polled += 1;
            if limit_reached(written) {
                break;
            }
        }
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
    }
}

fn raw(m: &brook_runtime::rdkafka::message::BorrowedMessage<'_>) -> Raw {
    Raw {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().to_millis(),
        partition: m.partition(),
    }
}

/// Prints the possible formats when they change (and always before the first records).
#[derive(Default)]
struct FormatsTracker {
    keys: Option<Vec<String>>,
    values: Option<Vec<String>>,
}

impl FormatsTracker {
    fn update(&mut self, formatter: &RecordFormatter, out: &mut String) {
        Self::one(
            &mut self.keys,
            formatter.keys.possible(),
            "Key format: ",
            out,
        );
        Self::one(
            &mut self.values,
            formatter.values.possible(),
            "Value format: ",
            out,
        );
    }

    fn one(
        previous: &mut Option<Vec<String>>,
        current: Vec<String>,
        prefix: &str,
        out: &mut String,
    ) {
        if previous.as_ref() == Some(&current) {
            return;
        }
        out.push_str(prefix);
        if current.is_empty() {
            out.push_str(
                " does not match any supported format. It may be a STRING with encoding other \
                 than UTF8, or some other format.",
            );
        } else {
            out.push_str(&current.join(" or "));
        }
        out.push('\n');
        *previous = Some(current);
    }
}

/// ksqlDB's `RecordFormatter`: the format guessing for keys and values.
struct RecordFormatter {
    keys: Deserializers,
    values: Deserializers,
}

impl RecordFormatter {
    fn new() -> Self {
        RecordFormatter {
            keys: Deserializers::new(true),
            values: Deserializers::new(false),
        }
    }

    /// One line per record. A batch that rules out the format its first records were shown
    /// in is formatted again, so that every line of a batch uses the same format.
    fn format(&mut self, records: &[Raw]) -> Vec<String> {
        let active_key = self.keys.possible().into_iter().next();
        let active_value = self.values.possible().into_iter().next();
        let lines = self.format_records(records);
        let still = |active: &Option<String>, now: Vec<String>| match active {
            Some(a) => now.contains(a),
            None => true,
        };
        if still(&active_key, self.keys.possible()) && still(&active_value, self.values.possible())
        {
            return lines;
        }
        self.format_records(records)
    }

    fn format_records(&mut self, records: &[Raw]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                format!(
                    "rowtime: {}, key: {}, value: {}, partition: {}",
                    r.timestamp.map(rowtime).unwrap_or_else(|| "N/A".into()),
                    self.keys.format(r.key.as_deref()),
                    self.values.format(r.value.as_deref()),
                    r.partition
                )
            })
            .collect()
    }
}

/// The plain formats, in ksqlDB's order (`RecordFormatter.Format`, without the
/// schema-registry ones, which cannot match here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    Json,
    KafkaInt,
    KafkaBigint,
    KafkaDouble,
    KafkaString,
}

impl Plain {
    const ALL: [Plain; 5] = [
        Plain::Json,
        Plain::KafkaInt,
        Plain::KafkaBigint,
        Plain::KafkaDouble,
        Plain::KafkaString,
    ];

    fn name(self) -> &'static str {
        match self {
            Plain::Json => "JSON",
            Plain::KafkaInt => "KAFKA_INT",
            Plain::KafkaBigint => "KAFKA_BIGINT",
            Plain::KafkaDouble => "KAFKA_DOUBLE",
            Plain::KafkaString => "KAFKA_STRING",
        }
    }

    fn deserialize(self, data: &[u8]) -> Option<String> {
        match self {
            Plain::Json => {
                let text = utf8_text(data)?;
                serde_json::from_str::<serde::de::IgnoredAny>(&text).ok()?;
                Some(text)
            }
            Plain::KafkaInt => Some(i32::from_be_bytes(data.try_into().ok()?).to_string()),
            Plain::KafkaBigint => Some(i64::from_be_bytes(data.try_into().ok()?).to_string()),
            Plain::KafkaDouble => Some(java_double(f64::from_be_bytes(data.try_into().ok()?))),
            Plain::KafkaString => utf8_text(data),
        }
    }
}

/// Non-empty text without invalid UTF-8 (Java decodes invalid bytes to U+FFFD, and ksqlDB
/// rejects any text holding one).
fn utf8_text(data: &[u8]) -> Option<String> {
    if data.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(data);
    (!text.contains('\u{FFFD}')).then(|| text.into_owned())
}

/// A key format may be a windowed one (Kafka Streams' windowed key layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Session,
    Hopping,
    Tumbling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Windowed(Window, Plain),
    Plain(Plain),
}

impl Candidate {
    fn name(self) -> String {
        match self {
            Candidate::Plain(p) => p.name().to_string(),
            Candidate::Windowed(w, p) => {
                let w = match w {
                    Window::Session => "SESSION",
                    Window::Hopping => "HOPPING",
                    Window::Tumbling => "TUMBLING",
                };
                format!("{w}({})", p.name())
            }
        }
    }

    fn deserialize(self, data: &[u8]) -> Option<String> {
        match self {
            Candidate::Plain(p) => p.deserialize(data),
            // Kafka Streams' windowed deserializers read no key at all from empty bytes.
            Candidate::Windowed(..) if data.is_empty() => Some("<null>".into()),
            Candidate::Windowed(Window::Session, p) => {
                let split = data.len().checked_sub(16)?;
                let end = i64::from_be_bytes(data[split..split + 8].try_into().ok()?);
                let start = i64::from_be_bytes(data[split + 8..].try_into().ok()?);
                if start < 0 || end < start {
                    return None;
                }
                let key = p.deserialize(&data[..split])?;
                Some(format!("[{key}@{start}/{end}]"))
            }
            Candidate::Windowed(_, p) => {
                let split = data.len().checked_sub(8)?;
                let start = i64::from_be_bytes(data[split..].try_into().ok()?);
                // A window of 1 ms from `start`: negative, or one that cannot end, is invalid.
                if start < 0 || start == i64::MAX {
                    return None;
                }
                let key = p.deserialize(&data[..split])?;
                Some(format!("[{key}@{start}/-]"))
            }
        }
    }
}

/// The formats still possible for keys (or values), narrowed by every record seen.
struct Deserializers {
    candidates: Vec<Candidate>,
    seen_data: bool,
}

impl Deserializers {
    fn new(windowed: bool) -> Self {
        let mut candidates = Vec::new();
        for p in Plain::ALL {
            if windowed {
                for w in [Window::Session, Window::Hopping, Window::Tumbling] {
                    candidates.push(Candidate::Windowed(w, p));
                }
            }
            candidates.push(Candidate::Plain(p));
        }
        Deserializers {
            candidates,
            seen_data: false,
        }
    }

    fn possible(&self) -> Vec<String> {
        if !self.seen_data {
            return vec!["¯\\_(ツ)_/¯ - no data processed".to_string()];
        }
        self.candidates.iter().map(|c| c.name()).collect()
    }

    fn format(&mut self, data: Option<&[u8]>) -> String {
        let Some(data) = data else {
            return "<null>".into();
        };
        self.seen_data = true;
        let mut first = None;
        self.candidates.retain(|c| match c.deserialize(data) {
            Some(text) => {
                first.get_or_insert(text);
                true
            }
            None => false,
        });
        // No format fits: the bytes as Kafka's `Bytes.toString` shows them.
        first.unwrap_or_else(|| escaped_bytes(data))
    }
}

/// Kafka's `Bytes.toString`: printable ASCII as is, everything else (and `\`) as `\xHH`.
fn escaped_bytes(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        if (b' '..=b'~').contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02X}"));
        }
    }
    s
}

/// Java's `Double.toString`: plain notation in [1e-3, 1e7), else `d.dddE±n`.
fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = d.abs();
    if (1e-3..1e7).contains(&a) {
        let s = d.to_string();
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{d:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exp}")
        } else {
            format!("{mantissa}.0E{exp}")
        }
    }
}

/// `yyyy/MM/dd HH:mm:ss.SSS Z` in UTC, as ksqlDB shows a record's timestamp.
fn rowtime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:03} Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: Option<&[u8]>, value: Option<&[u8]>) -> Raw {
        Raw {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            timestamp: Some(1_589_278_505_123),
            partition: 0,
        }
    }

    #[test]
    fn rowtimes() {
        assert_eq!(rowtime(1_589_278_505_123), "2020/05/12 10:15:05.123 Z");
        assert_eq!(rowtime(0), "1970/01/01 00:00:00.000 Z");
        assert_eq!(rowtime(-1), "1969/12/31 23:59:59.999 Z");
    }

    #[test]
    fn doubles_as_java_prints_them() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.25e-5), "1.25E-5");
        assert_eq!(java_double(-3.5e10), "-3.5E10");
        assert_eq!(java_double(f64::NAN), "NaN");
    }

    #[test]
    fn string_keys_and_json_values() {
        let mut f = RecordFormatter::new();
        let lines = f.format(&[raw(Some(b"1"), Some(br#"{"a":1}"#))]);
        assert_eq!(
            lines,
            vec![r#"rowtime: 2020/05/12 10:15:05.123 Z, key: 1, value: {"a":1}, partition: 0"#]
        );
        assert_eq!(f.keys.possible(), vec!["JSON", "KAFKA_STRING"]);
        assert_eq!(f.values.possible(), vec!["JSON", "KAFKA_STRING"]);
        let mut out = String::new();
        FormatsTracker::default().update(&f, &mut out);
        assert_eq!(
            out,
            "Key format: JSON or KAFKA_STRING\nValue format: JSON or KAFKA_STRING\n"
        );
    }

    #[test]
    fn a_batch_is_reformatted_when_its_format_is_ruled_out() {
        let mut f = RecordFormatter::new();
        // "1" reads as JSON first; "x" rules JSON out, so both print as KAFKA_STRING.
        let lines = f.format(&[raw(Some(b"1"), None), raw(Some(b"x"), None)]);
        assert!(lines[0].contains("key: 1, value: <null>"), "{lines:?}");
        assert_eq!(f.keys.possible(), vec!["KAFKA_STRING"]);
        assert_eq!(f.values.possible(), vec!["¯\\_(ツ)_/¯ - no data processed"]);
    }

    #[test]
    fn numbers_windows_and_unreadable_bytes() {
        let mut d = Deserializers::new(true);
        assert_eq!(d.format(Some(&7i32.to_be_bytes())), "7");
        assert!(d.possible().contains(&"KAFKA_INT".to_string()));

        let mut key = b"k".to_vec();
        // 100 ends in an ASCII byte, so the whole key is also valid text.
        key.extend_from_slice(&100i64.to_be_bytes());
        let mut d = Deserializers::new(true);
        assert_eq!(d.format(Some(&key)), "[k@100/-]");
        assert_eq!(
            d.possible(),
            vec![
                "HOPPING(KAFKA_STRING)",
                "TUMBLING(KAFKA_STRING)",
                "KAFKA_STRING"
            ]
        );

        let mut d = Deserializers::new(false);
        assert_eq!(d.format(Some(&[0xff, b'\\', b'a'])), "\\xFF\\x5Ca");
        assert!(d.possible().is_empty());
    }
}

//! `GET /metrics`: Prometheus' text exposition format (version 0.0.4). Per persistent query:
//! records in and out, processing-log errors (records skipped because they did not decode,
//! rows an expression failed on), consumer lag, whether it is paused or failed, deliveries
//! retried; push queries running; and the
//! process basics Prometheus' own clients export. A hand-written encoder: a dozen families
//! of plain counters and gauges do not need a metrics library.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Api;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(State(api): State<Api>) -> Response {
    let mut out = Families::default();
    let queries = api.engine.query_metrics().await;
    out.family(
        "brook_query_records_in_total",
        "counter",
        "Records a persistent query consumed from its input topics.",
        queries.iter().map(|q| (q, q.metrics.records_in as f64)),
    );
    out.family(
        "brook_query_records_out_total",
        "counter",
        "Records a persistent query wrote to its sink topic.",
        queries.iter().map(|q| (q, q.metrics.records_out as f64)),
    );
    out.family(
        "brook_query_processing_errors_total",
        "counter",
        "Processing-log entries of a persistent query: records skipped because they did not decode, and rows an expression failed on (which went on with NULL).",
        queries.iter().map(|q| (q, q.metrics.errors as f64)),
    );
    out.family(
        "brook_query_late_records_total",
        "counter",
        "Records a persistent query dropped because every window they fall in had closed in their partition's stream time (window end plus grace passed).",
        queries.iter().map(|q| (q, q.metrics.late as f64)),
    );
    out.family(
        "brook_query_consumer_lag",
        "gauge",
        "Records in a persistent query's input topics after its committed offsets, from librdkafka's statistics (absent until known; not refreshed while paused).",
        queries
            .iter()
            .filter_map(|q| q.metrics.consumer_lag.map(|l| (q, l as f64))),
    );
    out.family(
        "brook_query_paused",
        "gauge",
        "1 while a persistent query is paused (PAUSE), else 0.",
        queries
            .iter()
            .map(|q| (q, if q.metrics.paused { 1.0 } else { 0.0 })),
    );
    out.family(
        "brook_query_failed",
        "gauge",
        "1 once a persistent query stopped for good on an error (ksqlDB's ERROR state; the error is in SHOW QUERIES and DESCRIBE), else 0.",
        queries
            .iter()
            .map(|q| (q, if q.metrics.failed { 1.0 } else { 0.0 })),
    );
    out.family(
        "brook_query_production_retries_total",
        "counter",
        "Results a persistent query sent to Kafka again after a transient delivery failure (a broker or leader unavailable, a timeout).",
        queries
            .iter()
            .map(|q| (q, q.metrics.production_retries as f64)),
    );
    let (active, started) = api.engine.push_queries();
    out.single(
        "brook_push_queries_active",
        "gauge",
        "Push queries running now (each has one subscriber).",
        active as f64,
    );
    out.single(
        "brook_push_queries_started_total",
        "counter",
        "Push queries started since the server started.",
        started as f64,
    );
    let fanout = api.engine.fanout_stats();
    out.single(
        "brook_push_shared_consumers",
        "gauge",
        "Consumers shared by latest-offset push queries (one per source read).",
        fanout.consumers as f64,
    );
    out.single(
        "brook_push_shared_subscribers",
        "gauge",
        "Push queries reading through a shared consumer.",
        fanout.subscribers as f64,
    );
    out.single(
        "brook_push_queries_cut_off_total",
        "counter",
        "Push queries disconnected for falling more than --push-query-buffer rows behind.",
        fanout.cut_off as f64,
    );
    limit_metrics(&api, &mut out);
    process_metrics(&mut out);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        out.text,
    )
        .into_response()
}

#[derive(Default)]
struct Families {
    text: String,
}

impl Families {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // `writeln!` into a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl Iterator<Item = (&'a brook_server::engine::QueryMetricsInfo, f64)>,
    ) {
        self.header(name, kind, help);
        for (q, v) in samples {
            let _ = writeln!(
                self.text,
                "{name}{{query_id=\"{}\",sink=\"{}\"}} {v}",
                escape(&q.id),
                escape(&q.sink)
            );
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.header(name, kind, help);
        let _ = writeln!(self.text, "{name} {v}");
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The resource limits' gauges and counters (docs/limits.md).
fn limit_metrics(api: &Api, out: &mut Families) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &api.connections;
    let singles = [
        ("brook_pull_queries_active", "gauge", "Pull queries running now (ksql.query.pull.max.concurrent.requests bounds them).", api.pull_slots.in_use() as u64),
        ("brook_print_active", "gauge", "PRINT statements running now (brook.query.print.max.concurrent bounds them).", api.print_slots.in_use() as u64),
        ("brook_healthcheck_kafka_probes_total", "counter", "Times /healthcheck asked Kafka (at most once per ksql.healthcheck.interval.ms, on the server's own client).", api.health.probes.load(Relaxed)),
        ("brook_http_connections_accepted_total", "counter", "Connections accepted on the REST/gRPC port.", c.accepted.load(Relaxed)),
        ("brook_http_connections_refused_total", "counter", "Connections answered 429 because brook.http.max.connections were open.", c.refused.load(Relaxed)),
        ("brook_http_header_timeouts_total", "counter", "Connections closed for not sending a request's headers within brook.http.header.read.timeout.ms.", c.header_timeouts.load(Relaxed)),
        ("brook_http_idle_closed_total", "counter", "Connections closed after ksql.idle.connection.timeout.seconds without a byte either way.", c.idle_closed.load(Relaxed)),
    ];
    for (name, kind, help, v) in singles {
        out.single(name, kind, help, v as f64);
    }
}

/// What `/proc/self` tells for free (Linux); elsewhere nothing.
fn process_metrics(out: &mut Families) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    if let Some(kb) = field("VmRSS:") {
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            kb * 1024.0,
        );
    }
    if let Some(n) = field("Threads:") {
        out.single("process_threads", "gauge", "Number of OS threads.", n);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    // utime and stime, fields 14 and 15, counted after the command name (which may hold
    // spaces, hence the split at its closing parenthesis), in USER_HZ ticks: 100 on Linux.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    if let Some((_, rest)) = stat.rsplit_once(')') {
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(u), Some(s)) = (
            f.get(11).and_then(|v| v.parse::<f64>().ok()),
            f.get(12).and_then(|v| v.parse::<f64>().ok()),
        ) {
            out.single(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (u + s) / 100.0,
            );
        }
        // starttime (field 22) is in ticks since boot; boot time is `btime` in /proc/stat.
        let boot = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let (Some(start), Some(boot)) = (f.get(19).and_then(|v| v.parse::<f64>().ok()), boot) {
            out.single(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot + start / 100.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

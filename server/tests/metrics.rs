//! `GET /metrics` over a real `brook-server`: a CSAS over known records (some filtered out,
//! some undecodable) must show exactly its records in, records out and processing errors,
//! a consumer lag that reaches 0, its paused state, and the push queries running.

use std::time::{Duration, Instant};

use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

mod common;
use common::{client, free_port, ksql, Options, Server};

async fn scrape(c: &reqwest::Client, api: &str) -> String {
    let resp = c
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text().await.expect("body")
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `series` has the value `want` (a minute at most); returns the last scrape.
async fn wait_for(c: &reqwest::Client, api: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(c, api).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_query_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(Options {
        data_dir: dir.path(),
        broker_port: free_port(),
        broker_in_memory: true,
    });
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();

    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=1);
         CREATE STREAM OUT AS SELECT ID, V FROM SRC WHERE ID > 2 EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body[1]["commandStatus"]["queryId"]
        .as_str()
        .expect("query id")
        .to_string();
    let labels = format!("{{query_id=\"{id}\",sink=\"OUT\"}}");
    let series = |name: &str| format!("{name}{labels}");

    // Five rows (three pass the filter) and two values that are not JSON.
    for i in 1..=5 {
        let sql = format!("INSERT INTO SRC (ID, V) VALUES ({i}, 'v{i}');");
        let (status, body) = ksql(&c, &api, &sql).await;
        assert_eq!((status, &body), (200, &json!([])), "{sql}");
    }
    let producer: BaseProducer = brook_runtime::kafka::producer_config(&server.bootstrap)
        .create()
        .expect("producer");
    for bad in [&b"{not json"[..], &b"\x00\x01"[..]] {
        producer
            .send(BaseRecord::to("src").key(&[0u8, 0, 0, 9][..]).payload(bad))
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    let text = wait_for(&c, &api, &series("brook_query_records_in_total"), 7.0).await;
    assert_eq!(
        sample(&text, &series("brook_query_records_out_total")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("brook_query_processing_errors_total")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("brook_query_paused")),
        Some(0.0),
        "{text}"
    );
    for family in [
        "# TYPE brook_query_records_in_total counter",
        "# TYPE brook_query_consumer_lag gauge",
        "# TYPE brook_push_queries_active gauge",
        "# HELP brook_query_processing_errors_total ",
    ] {
        assert!(text.contains(family), "no `{family}` in:\n{text}");
    }
    // Process basics, where /proc has them.
    if cfg!(target_os = "linux") {
        for name in ["process_resident_memory_bytes", "process_cpu_seconds_total"] {
            assert!(
                sample(&text, name).is_some_and(|v| v > 0.0),
                "{name}:\n{text}"
            );
        }
    }
    // Everything is consumed and committed: librdkafka's statistics say so within seconds.
    wait_for(&c, &api, &series("brook_query_consumer_lag"), 0.0).await;

    // A push query is one subscriber while its response streams.
    assert_eq!(
        sample(&text, "brook_push_queries_active"),
        Some(0.0),
        "{text}"
    );
    let mut resp = c
        .post(format!("{api}/query-stream"))
        .body(json!({"sql": "SELECT * FROM SRC EMIT CHANGES;", "properties": {}}).to_string())
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200);
    let header = resp.chunk().await.expect("header chunk");
    assert!(header.is_some());
    let text = wait_for(&c, &api, "brook_push_queries_active", 1.0).await;
    assert_eq!(
        sample(&text, "brook_push_queries_started_total"),
        Some(1.0),
        "{text}"
    );
    drop(resp);
    wait_for(&c, &api, "brook_push_queries_active", 0.0).await;

    let (status, body) = ksql(&c, &api, &format!("PAUSE {id};")).await;
    assert_eq!(status, 200, "{body}");
    wait_for(&c, &api, &series("brook_query_paused"), 1.0).await;
    server.stop();
}

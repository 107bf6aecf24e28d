//! `brook-soak`: the orders pipeline on a real `brook-server` for as long as asked, with
//! malformed records mixed in, watching the server's memory, then checking that every good
//! record reached its outputs and every bad one the processing log (`docs/soak.md`).
//!
//! The server runs as a child process on its default embedded broker (SQLite under a
//! temporary data directory), as a user would start it; everything goes through its REST
//! API and Kafka, as a user's clients would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_runtime::kafka::{consumer_config, producer_config, Kafka};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

use crate::BenchError;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "brook-soak",
    about = "The orders pipeline on brook-server, with bad records, for a long time"
)]
pub struct SoakArgs {
    /// The brook-server binary (default: beside this one).
    #[arg(long)]
    pub server: Option<std::path::PathBuf>,
    /// Minutes of input.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Records per second.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// One record in this many is malformed.
    #[arg(long, default_value_t = 100)]
    pub bad_every: u64,
    /// Minutes of warm-up before memory counts (RSS must then stay within 10 %).
    #[arg(long, default_value_t = 5)]
    pub warmup_minutes: u64,
}

/// A record read back: its key and value bytes (None for null).
type Record = (Option<Vec<u8>>, Option<Vec<u8>>);

const CUSTOMERS: u64 = 1_000;
/// The pipeline's persistent queries that read `orders`.
const QUERIES_ON_ORDERS: u64 = 2;

const PIPELINE: &str = "
CREATE STREAM orders (id STRING KEY, customer STRING, total DOUBLE)
  WITH (KAFKA_TOPIC='orders', PARTITIONS=2, VALUE_FORMAT='JSON');
CREATE STREAM big_orders AS SELECT id, customer, total FROM orders WHERE total > 1000;
CREATE TABLE spend AS SELECT customer, COUNT(*) AS n, SUM(total) AS amount
  FROM orders WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 3 MINUTES, GRACE PERIOD 30 SECONDS)
  GROUP BY customer;";

/// What the soak saw, for the report.
#[derive(Debug, Default)]
struct Figures {
    produced: u64,
    bad: u64,
    big: u64,
    rss_kib: Vec<(u64, u64)>,
    pulls: Vec<f64>,
    pull_errors: u64,
    push_rows: Arc<AtomicU64>,
}

pub fn main_with_args(args: Vec<String>) -> std::process::ExitCode {
    let args = SoakArgs::parse_from(args);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brook-soak: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("brook-soak: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server child, killed when dropped.
struct Server {
    child: Child,
    api: String,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &SoakArgs) -> Result<Server, BenchError> {
    let bin = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("brook-server"),
    };
    let dir = tempfile::tempdir()?;
    let (api, broker) = (free_port()?, free_port()?);
    let child = Command::new(&bin)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{api}"))
        .arg("--broker-listen")
        .arg(format!("127.0.0.1:{broker}"))
        .args(["--config", "ksql.logging.processing.topic.auto.create=true"])
        .args([
            "--config",
            "ksql.logging.processing.stream.auto.create=true",
        ])
        .env("BROOK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BenchError::Setup(format!("{}: {e}", bin.display())))?;
    Ok(Server {
        child,
        api: format!("http://127.0.0.1:{api}"),
        bootstrap: format!("127.0.0.1:{broker}"),
        _dir: dir,
    })
}

async fn ksql(http: &reqwest::Client, api: &str, sql: &str) -> Result<Value, BenchError> {
    let resp = http
        .post(format!("{api}/ksql"))
        .header("content-type", "application/vnd.ksql.v1+json")
        .body(json!({ "ksql": sql }).to_string())
        .send()
        .await
        .map_err(|e| BenchError::Setup(format!("/ksql: {e}")))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| BenchError::Setup(format!("/ksql: {e}")))?;
    if !status.is_success() {
        return Err(BenchError::Setup(format!("/ksql {status}: {text}")));
    }
    Ok(serde_json::from_str(&text)?)
}

async fn wait_ready(http: &reqwest::Client, api: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{api}/healthcheck")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::Setup(
        "the server did not answer /healthcheck".into(),
    ))
}

/// Order `n`: good, or malformed in one of three ways (not JSON, cut short, a total
/// that is not a number).
fn order(n: u64, bad_every: u64) -> (String, String, bool) {
    let id = format!("o{n}");
    if n % bad_every == bad_every - 1 {
        let v = match (n / bad_every) % 3 {
            0 => "not json at all".to_string(),
            1 => format!("{{\"customer\":\"c{}\",\"total\":", n % CUSTOMERS),
            _ => format!("{{\"customer\":\"c{}\",\"total\":\"lots\"}}", n % CUSTOMERS),
        };
        return (id, v, false);
    }
    let total = (n * 7919 % 2000) as f64 + 0.5;
    let v = json!({ "customer": format!("c{}", n % CUSTOMERS), "total": total }).to_string();
    (id, v, true)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A push query on big_orders, counting its rows until the server closes it.
fn push_query(http: reqwest::Client, api: String, rows: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let body = json!({ "sql": "SELECT * FROM big_orders EMIT CHANGES;", "properties": {} });
        let Ok(mut resp) = http
            .post(format!("{api}/query-stream"))
            .body(body.to_string())
            .send()
            .await
        else {
            return;
        };
        let mut lines = 0u64;
        while let Ok(Some(chunk)) = resp.chunk().await {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            // The first line is the header.
            rows.store(lines.saturating_sub(1), Ordering::Relaxed);
        }
    });
}

async fn pull_once(http: &reqwest::Client, api: &str, customer: u64) -> Result<f64, BenchError> {
    let sql = format!("SELECT * FROM spend WHERE customer = 'c{customer}';");
    let start = Instant::now();
    let resp = http
        .post(format!("{api}/query-stream"))
        .body(json!({ "sql": sql, "properties": {} }).to_string())
        .send()
        .await
        .map_err(|e| BenchError::Setup(format!("pull: {e}")))?;
    let ok = resp.status().is_success();
    let text = resp
        .text()
        .await
        .map_err(|e| BenchError::Setup(format!("pull: {e}")))?;
    if !ok || text.contains("\"error_code\"") {
        return Err(BenchError::Wrong(format!("pull query: {text}")));
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

async fn run(args: SoakArgs) -> Result<bool, BenchError> {
    let server = start_server(&args)?;
    let http = reqwest::Client::new();
    wait_ready(&http, &server.api).await?;
    ksql(&http, &server.api, PIPELINE).await?;
    let mut figures = Figures::default();
    push_query(http.clone(), server.api.clone(), figures.push_rows.clone());
    let producer: FutureProducer = producer_config(&Kafka::plaintext(server.bootstrap.clone()))
        .set("enable.idempotence", "false")
        .create()?;
    let total = args.minutes * 60 * args.rate;
    let start = Instant::now();
    let mut next_sample = Instant::now();
    let mut pending = Vec::new();
    for n in 0..total {
        let (id, value, good) = order(n, args.bad_every);
        figures.produced += 1;
        if !good {
            figures.bad += 1;
        } else if big(&value) {
            figures.big += 1;
        }
        let p = producer.clone();
        pending.push(tokio::spawn(async move {
            p.send(
                FutureRecord::to("orders").key(&id).payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        }));
        // Paced: record n goes out at n / rate seconds.
        let due = start + Duration::from_secs_f64((n + 1) as f64 / args.rate as f64);
        if pending.len() >= 1_000 || due > Instant::now() + Duration::from_millis(5) {
            for h in pending.drain(..) {
                h.await.map_err(|e| BenchError::Setup(e.to_string()))??;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            figures
                .rss_kib
                .push((start.elapsed().as_secs(), rss_kib(server.child.id())));
            match pull_once(&http, &server.api, n % CUSTOMERS).await {
                Ok(ms) => figures.pulls.push(ms),
                Err(e) => {
                    eprintln!("{e}");
                    figures.pull_errors += 1;
                }
            }
            if figures.rss_kib.len() % 6 == 0 {
                eprintln!(
                    "soak: {} s, {} records, RSS {} MiB, push rows {}",
                    start.elapsed().as_secs(),
                    n + 1,
                    rss_kib(server.child.id()) / 1024,
                    figures.push_rows.load(Ordering::Relaxed)
                );
            }
        }
    }
    for h in pending.drain(..) {
        h.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    check(&args, &server, &figures).await
}

fn big(value: &str) -> bool {
    serde_json::from_str::<Value>(value)
        .ok()
        .and_then(|v| v["total"].as_f64())
        .is_some_and(|t| t > 1000.0)
}

/// Reads a topic to its end: each record's key and value.
fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Record>, BenchError> {
    let consumer: BaseConsumer =
        consumer_config(&Kafka::plaintext(bootstrap), &format!("soak-{topic}")).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut out = Vec::new();
    for p in parts {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        if high <= low {
            continue;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut next = low;
        while next < high && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m?;
                next = m.offset() + 1;
                out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
            }
        }
    }
    Ok(out)
}

/// Waits until `topic` holds at least `want` records (or a deadline); returns them.
async fn settle(
    bootstrap: &str,
    topic: &str,
    want: impl Fn(&[Record]) -> bool,
) -> Result<Vec<Record>, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (b, t) = (bootstrap.to_string(), topic.to_string());
        let got = tokio::task::spawn_blocking(move || read_topic(&b, &t))
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))??;
        if want(&got) || Instant::now() > deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn check(args: &SoakArgs, server: &Server, f: &Figures) -> Result<bool, BenchError> {
    let good = f.produced - f.bad;
    let big = settle(&server.bootstrap, "BIG_ORDERS", |r| r.len() as u64 >= f.big).await?;
    let ids: HashSet<Vec<u8>> = big.iter().filter_map(|(k, _)| k.clone()).collect();
    // Both queries read every malformed record: one entry each.
    let want_log = QUERIES_ON_ORDERS * f.bad;
    let log = settle(&server.bootstrap, "default_ksql_processing_log", |r| {
        r.len() as u64 >= want_log
    })
    .await?;
    let logged = distinct_entries(&log);
    let spend = settle(&server.bootstrap, "SPEND", |_| true).await?;
    // The push query's rows arrive through their own consumer: give them a moment.
    let waited = Instant::now();
    while f.push_rows.load(Ordering::Relaxed) < f.big && waited.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counted = latest_counts(&spend);
    let rss = memory_line(args, &f.rss_kib);
    let mut pulls = f.pulls.clone();
    pulls.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        pulls
            .get(((pulls.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!("| figure | value |\n|---|---|");
    println!(
        "| records produced | {} ({} good, {} malformed) |",
        f.produced, good, f.bad
    );
    println!(
        "| big_orders outputs | {} records, {} distinct ids, {} expected |",
        big.len(),
        ids.len(),
        f.big
    );
    println!(
        "| processing log entries | {} ({} distinct by query and offset; {} malformed records, read by {QUERIES_ON_ORDERS} queries) |",
        log.len(),
        logged,
        f.bad
    );
    println!("| spend: sum of final per-window counts | {counted} ({good} good records) |");
    println!(
        "| push query rows (on big_orders) | {} ({} expected) |",
        f.push_rows.load(Ordering::Relaxed),
        f.big
    );
    println!(
        "| pull queries | {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms |",
        pulls.len(),
        f.pull_errors,
        pct(0.5),
        pct(0.99)
    );
    println!("| server RSS | {} |", rss.0);
    // The push query on big_orders started before the first record: it sees every one.
    let ok = ids.len() as u64 == f.big
        && f.push_rows.load(Ordering::Relaxed) == f.big
        && logged == want_log
        && counted == good
        && f.pull_errors == 0
        && rss.1;
    println!("| verdict | {} |", if ok { "pass" } else { "FAIL" });
    Ok(ok)
}

/// The processing log's entries, counted once per query and record.
fn distinct_entries(records: &[Record]) -> u64 {
    let seen: HashSet<(String, i64, i64)> = records
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Value>(v.as_deref()?).ok())
        .map(|v| {
            let e = &v["message"]["deserializationError"];
            (
                v["logger"].as_str().unwrap_or_default().to_string(),
                e["partition"].as_i64().unwrap_or(-1),
                e["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.len() as u64
}

/// The sum of each (customer, window)'s latest COUNT in the windowed table's topic.
fn latest_counts(records: &[Record]) -> u64 {
    let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
    for (k, v) in records {
        let (Some(k), Some(v)) = (k, v) else { continue };
        let n = serde_json::from_slice::<Value>(v)
            .ok()
            .and_then(|v| v["N"].as_u64())
            .unwrap_or(0);
        latest.insert(k.clone(), n);
    }
    latest.values().sum()
}

/// RSS after the warm-up: its range, and whether it stayed within 10 % of its first value.
fn memory_line(args: &SoakArgs, samples: &[(u64, u64)]) -> (String, bool) {
    let warm: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= args.warmup_minutes * 60)
        .map(|(_, kib)| *kib)
        .collect();
    let (Some(first), Some(min), Some(max)) = (warm.first(), warm.iter().min(), warm.iter().max())
    else {
        return ("no samples after the warm-up".into(), false);
    };
    let by_minute: BTreeMap<u64, u64> = samples.iter().map(|(t, k)| (t / 60, k / 1024)).collect();
    let flat = (*max as f64) <= (*first as f64) * 1.10 && (*min as f64) >= (*first as f64) * 0.90;
    (
        format!(
            "after warm-up: first {} MiB, min {} MiB, max {} MiB (MiB by minute: {:?})",
            first / 1024,
            min / 1024,
            max / 1024,
            by_minute.values().collect::<Vec<_>>()
        ),
        flat,
    )
}

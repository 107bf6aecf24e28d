//! Runs through the embedded broker: the persistent query as the server runs it (the
//! runtime's Kafka task), against a plain rdkafka consume→produce copy of the same topic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use brook_runtime::embedded::{EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::{consumer_config, create_topic, producer_config};
use brook_runtime::pipeline::Pipeline;
use brook_runtime::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use brook_runtime::rdkafka::error::KafkaError;
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::types::RDKafkaErrorCode;
use brook_runtime::shared::SharedInputs;
use brook_runtime::task::{self, TaskConfig, TaskStats};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::plan;
use crate::gen::{self, delivered, produce, OrdersGen};
use crate::table::{median, rate, thousands, Row};
use crate::{BenchError, Scale};

/// CPU time of the whole process (every thread, the embedded broker's included).
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name, which may hold spaces, closed by the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let field = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(14) + field(15);
    // CLK_TCK is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// The `fetch.wait.max.ms` brook-server gives persistent queries on the embedded broker,
/// which answers a waiting fetch only at its deadline (docs/embedded-broker.md); the copy
/// uses it too, so both sides wait alike. `BROOK_BENCH_FETCH_WAIT_MS` overrides it for
/// both (the experiment that shows how much of the latency is the fetch wait).
pub(crate) fn fetch_wait_ms() -> String {
    std::env::var("BROOK_BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "50".into())
}

fn with_fetch_wait(
    mut c: brook_runtime::rdkafka::ClientConfig,
) -> brook_runtime::rdkafka::ClientConfig {
    c.set("fetch.wait.max.ms", fetch_wait_ms());
    c
}

/// The latency reader is the measuring instrument: it waits as little as the push
/// queries' consumers do, so it adds next to nothing to what it measures.
fn reader_config(
    bootstrap: &brook_runtime::kafka::Kafka,
    group: &str,
) -> brook_runtime::rdkafka::ClientConfig {
    let mut c = consumer_config(bootstrap, group);
    c.set("fetch.wait.max.ms", "10");
    c
}

/// The workers brook-server gives a stateless query: one per core, at most one per
/// partition (the bench topics have 4).
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

async fn start_broker() -> Result<EmbeddedBroker, BenchError> {
    Ok(EmbeddedBroker::start(EmbeddedBrokerConfig::for_tests()).await?)
}

/// The big_orders query over `input`, writing `output`, with its own consumer group.
/// The query's pipelines, one per worker.
fn big_orders_pipeline(id: &str, input: &str, output: &str) -> Result<Vec<Pipeline>, BenchError> {
    let ddl = gen::ORDERS_DDL.replace("KAFKA_TOPIC='orders'", &format!("KAFKA_TOPIC='{input}'"));
    let query = gen::BIG_ORDERS.replace(
        "CREATE STREAM big_orders AS",
        &format!("CREATE STREAM big_orders WITH (KAFKA_TOPIC='{output}') AS"),
    );
    (0..workers())
        .map(|_| {
            let mut p = plan(&ddl, &query)?;
            // The consumer group is named after the id: each run starts from the earliest
            // offset.
            p.id = id.to_string();
            Ok(p)
        })
        .collect()
}

/// A running query or copy, stopped through its watch.
struct Running {
    /// Brook's query (which keeps the big orders) rather than the copy (which keeps all).
    brook: bool,
    stop: watch::Sender<bool>,
    stats: watch::Receiver<TaskStats>,
    handle: JoinHandle<Result<(), BenchError>>,
}

impl Running {
    fn brook(pipelines: Vec<Pipeline>, bootstrap: &brook_runtime::kafka::Kafka) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(TaskStats::default());
        let mut config = TaskConfig::new(bootstrap);
        config
            .consumer_overrides
            .push(("fetch.wait.max.ms".into(), fetch_wait_ms()));
        // As brook-server: the query reads through a shared reader
        // (BROOK_BENCH_OWN_CONSUMER=1: its own consumer, to compare; not a standard run).
        let own = std::env::var("BROOK_BENCH_OWN_CONSUMER").is_ok_and(|v| v == "1");
        let producer = (!own)
            .then(|| producer_config(bootstrap).create::<FutureProducer>().ok())
            .flatten();
        if let Some(producer) = producer {
            config.shared = Some(std::sync::Arc::new(SharedInputs::new(
                bootstrap,
                config.max_batch,
                config.linger,
                producer,
            )));
        }
        let (_never_paused, paused) = watch::channel(false);
        let control = task::Control {
            stop: stop_rx,
            paused,
            stats: stats_tx,
            metrics: std::sync::Arc::new(brook_runtime::metrics::QueryMetrics::new()),
        };
        let handle = tokio::task::spawn_local(async move {
            let _paused_stays_open = _never_paused;
            task::run_parallel(pipelines, config, control)
                .await
                .map_err(BenchError::from)
        });
        Running {
            brook: true,
            stop,
            stats,
            handle,
        }
    }

    fn copy(bootstrap: &brook_runtime::kafka::Kafka, from: &str, to: &str, group: &str) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(TaskStats::default());
        let (b, f, t, g) = (
            bootstrap.clone(),
            from.to_string(),
            to.to_string(),
            group.to_string(),
        );
        let handle =
            tokio::task::spawn_local(async move { copy(&b, &f, &t, &g, stop_rx, stats_tx).await });
        Running {
            brook: false,
            stop,
            stats,
            handle,
        }
    }

    /// Waits until `records_in` reaches `n` (or the deadline passes).
    async fn wait_in(&mut self, n: u64, deadline: Duration) -> Result<TaskStats, BenchError> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let s = self.stats.borrow().clone();
            if s.records_in >= n {
                return Ok(s);
            }
            if self.handle.is_finished() {
                return Err(BenchError::Setup(format!(
                    "the task stopped after {} of {n} records",
                    s.records_in
                )));
            }
            match tokio::time::timeout_at(until, self.stats.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(BenchError::Setup(format!(
                        "only {} of {n} records consumed within {deadline:?}",
                        self.stats.borrow().records_in
                    )))
                }
            }
        }
    }

    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(true);
        match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(BenchError::Setup(format!("task panicked: {e}"))),
        }
    }
}

/// The plain rdkafka copy: consume `from`, produce every record to `to`; a batch (up to
/// 4,096 records, 5 ms linger, as the task's) counts once its deliveries are acknowledged
/// and its offsets are committed, like Brook's task minus the SQL.
async fn copy(
    bootstrap: &brook_runtime::kafka::Kafka,
    from: &str,
    to: &str,
    group: &str,
    mut stop: watch::Receiver<bool>,
    stats: watch::Sender<TaskStats>,
) -> Result<(), BenchError> {
    let consumer: StreamConsumer = with_fetch_wait(consumer_config(bootstrap, group)).create()?;
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    consumer.subscribe(&[from])?;
    let config = TaskConfig::new(bootstrap);
    let mut totals = TaskStats::default();
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            m = consumer.recv() => m?,
        };
        let mut pending = VecDeque::new();
        let mut count = 0u64;
        let mut last = None;
        let deadline = tokio::time::Instant::now() + config.linger;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            loop {
                let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(to);
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                if let Some(ts) = m.timestamp().to_millis() {
                    rec = rec.timestamp(ts);
                }
                match producer.send_result(rec) {
                    Ok(d) => {
                        pending.push_back(d);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        match pending.pop_front() {
                            Some(d) => delivered(d).await?,
                            None => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            count += 1;
            last = Some((m.topic().to_string(), m.partition(), m.offset()));
            drop(m);
            if count as usize >= config.max_batch {
                break;
            }
            if let Ok(Ok(m)) = tokio::time::timeout_at(deadline, consumer.recv()).await {
                next = Some(m);
            }
        }
        for d in pending {
            delivered(d).await?;
        }
        // Committing the last record's partition only is enough for a benchmark: nothing
        // resumes from these offsets.
        if let Some((t, p, o)) = last {
            let mut tpl = brook_runtime::rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(&t, p, brook_runtime::rdkafka::Offset::Offset(o + 1))?;
            consumer.commit(&tpl, CommitMode::Async)?;
        }
        totals.records_in += count;
        totals.records_out += count;
        let _ = stats.send(totals.clone());
    }
    Ok(())
}

/// The big_orders query end to end against the rdkafka copy of the same topic.
pub async fn e2e(s: &Scale) -> Result<Row, BenchError> {
    let broker = start_broker().await?;
    let bootstrap = broker.kafka();
    let g = OrdersGen::default();
    let n = s.e2e_records;
    let want = g.big_orders(n);
    let deadline = Duration::from_secs(600);
    let (mut brook, mut base) = (Vec::new(), Vec::new());
    let mut cores = Vec::new();
    for run in 0..s.runs {
        let input = format!("e2e_orders_{run}");
        let output = format!("e2e_big_orders_{run}");
        let copied = format!("e2e_copy_{run}");
        for t in [&input, &output, &copied] {
            create_topic(&bootstrap, t, 4, 1).await?;
        }
        produce(&bootstrap, &input, g.records(0..n, 4), None, 5).await?;

        let pipeline = big_orders_pipeline(&format!("bench_e2e_{run}"), &input, &output)?;
        let (cpu0, t0) = (process_cpu(), Instant::now());
        let mut q = Running::brook(pipeline, &bootstrap);
        let stats = q.wait_in(n, deadline).await?;
        let wall = t0.elapsed();
        let cpu = process_cpu().saturating_sub(cpu0);
        q.stop().await?;
        if stats.records_out != want {
            return Err(BenchError::Wrong(format!(
                "e2e: {} outputs acknowledged, expected {want}",
                stats.records_out
            )));
        }
        brook.push(n as f64 / wall.as_secs_f64());
        cores.push(cpu.as_secs_f64() / wall.as_secs_f64());

        let t0 = Instant::now();
        let mut c = Running::copy(&bootstrap, &input, &copied, &format!("bench_copy_{run}"));
        c.wait_in(n, deadline).await?;
        base.push(n as f64 / t0.elapsed().as_secs_f64());
        c.stop().await?;
    }
    drop(broker);
    let fig = median(brook);
    let bas = median(base);
    Ok(Row {
        workload: "big_orders end to end, embedded broker".into(),
        records: n,
        cores: format!("{:.1}", median(cores)),
        figure: Some(fig),
        figure_text: rate(fig, "rec/s"),
        baseline: Some(bas),
        baseline_text: rate(bas, "rec/s"),
        ratio: Some(fig / bas),
        notes: format!(
            "start of query to last output acked ({} outputs); baseline: rdkafka consume->produce copy; cores = process CPU/wall, broker included",
            thousands(want)
        ),
    })
}

/// The tumbling aggregation (COUNT and SUM per customer per minute) over `input`, writing
/// `output`, as `partitions` state partitions (routed by customer: docs/parallelism.md).
fn tumbling_pipelines(
    id: &str,
    input: &str,
    output: &str,
    partitions: usize,
) -> Result<Vec<Pipeline>, BenchError> {
    let ddl = gen::ORDERS_DDL.replace("KAFKA_TOPIC='orders'", &format!("KAFKA_TOPIC='{input}'"));
    let query = crate::table::TUMBLING.replace(
        "CREATE TABLE order_stats AS",
        &format!("CREATE TABLE order_stats WITH (KAFKA_TOPIC='{output}') AS"),
    );
    (0..partitions)
        .map(|_| {
            let mut p = plan(&ddl, &query)?;
            p.id = id.to_string();
            Ok(p)
        })
        .collect()
}

/// The tumbling aggregation end to end as the server runs it — one state partition per
/// core (at most one per input partition) — against the same query as one state
/// partition: what splitting a stateful query's state buys.
pub async fn e2e_aggregate(s: &Scale) -> Result<Row, BenchError> {
    let broker = start_broker().await?;
    let bootstrap = broker.kafka();
    let g = OrdersGen::default();
    let n = s.e2e_records;
    let deadline = Duration::from_secs(600);
    let split = workers();
    let (mut parallel, mut single) = (Vec::new(), Vec::new());
    let mut cores = Vec::new();
    for run in 0..s.runs {
        let input = format!("agg_orders_{run}");
        create_topic(&bootstrap, &input, 4, 1).await?;
        produce(&bootstrap, &input, g.records(0..n, 4), None, 5).await?;
        // Alternating which goes first, so neither always meets a warmer broker.
        let order = if run % 2 == 0 { [split, 1] } else { [1, split] };
        for partitions in order {
            let output = format!("agg_stats_{run}_{partitions}");
            create_topic(&bootstrap, &output, 4, 1).await?;
            let id = format!("bench_agg_{run}_{partitions}");
            let pipelines = tumbling_pipelines(&id, &input, &output, partitions)?;
            let (cpu0, t0) = (process_cpu(), Instant::now());
            let mut q = Running::brook(pipelines, &bootstrap);
            let stats = q.wait_in(n, deadline).await?;
            let wall = t0.elapsed();
            let cpu = process_cpu().saturating_sub(cpu0);
            q.stop().await?;
            if stats.records_out == 0 || stats.errors > 0 {
                return Err(BenchError::Wrong(format!(
                    "aggregation: {} outputs, {} errors",
                    stats.records_out, stats.errors
                )));
            }
            let r = n as f64 / wall.as_secs_f64();
            if partitions == 1 {
                single.push(r);
            } else {
                parallel.push(r);
                cores.push(cpu.as_secs_f64() / wall.as_secs_f64());
            }
        }
    }
    drop(broker);
    let fig = median(parallel);
    let bas = median(single);
    Ok(Row {
        workload: format!("tumbling aggregation end to end, {split} state partitions"),
        records: n,
        cores: format!("{:.1}", median(cores)),
        figure: Some(fig),
        figure_text: rate(fig, "rec/s"),
        baseline: Some(bas),
        baseline_text: rate(bas, "rec/s"),
        ratio: Some(fig / bas),
        notes: "start of query to last input applied (outputs and changelog acked); baseline: the same query as 1 state partition; cores = process CPU/wall, broker included".into(),
    })
}

/// Offsets of the latency runs' warm-up orders, far from the measured ones.
const WARM: u64 = 1_000_000_000;

/// Latencies (ms) of one run: input produced at `rate` through `running`, outputs read
/// back from `output` by a plain consumer.
async fn latency_run(
    s: &Scale,
    bootstrap: &brook_runtime::kafka::Kafka,
    input: &str,
    output: &str,
    mut running: Running,
    reader_group: &str,
) -> Result<Vec<f64>, BenchError> {
    let g = OrdersGen::default();
    let reader: StreamConsumer = reader_config(bootstrap, reader_group).create()?;
    reader.subscribe(&[output])?;
    // Warm-up: the query and the reader have joined their groups and move records.
    let warm: Vec<_> = g.records(WARM..WARM + 200, 4);
    let warm_out = warm.iter().filter(|r| running_keeps(&running, r)).count();
    produce(bootstrap, input, warm, None, 0).await?;
    running.wait_in(200, Duration::from_secs(60)).await?;
    let mut seen = 0;
    while seen < warm_out {
        tokio::time::timeout(Duration::from_secs(60), reader.recv())
            .await
            .map_err(|_| BenchError::Setup("warm-up outputs did not arrive".into()))??;
        seen += 1;
    }
    let n = s.rate * s.latency_secs;
    let records = g.records(0..n, 4);
    let expected = records
        .iter()
        .filter(|r| running_keeps(&running, r))
        .count();
    let (b, i) = (bootstrap.clone(), input.to_string());
    let rate = s.rate;
    let producing = tokio::spawn(async move { produce(&b, &i, records, Some(rate), 0).await });
    let mut arrived: Vec<(u64, Instant)> = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(s.latency_secs * 3 + 60);
    while arrived.len() < expected {
        let m = match tokio::time::timeout_at(deadline, reader.recv()).await {
            Ok(m) => m?,
            Err(_) => break,
        };
        let now = Instant::now();
        let idx = m
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix("order-"))
            .and_then(|k| k.parse::<u64>().ok());
        if let Some(idx) = idx.filter(|i| *i < WARM) {
            arrived.push((idx, now));
        }
    }
    let sent = producing
        .await
        .map_err(|e| BenchError::Setup(format!("producer task: {e}")))??;
    running.stop().await?;
    if arrived.len() < expected {
        return Err(BenchError::Wrong(format!(
            "latency: {} of {expected} outputs read back",
            arrived.len()
        )));
    }
    Ok(arrived
        .into_iter()
        .filter_map(|(i, at)| {
            sent.get(i as usize)
                .map(|s| at.saturating_duration_since(*s).as_secs_f64() * 1e3)
        })
        .collect())
}

/// Whether the run passes this record on: the copy passes all, the query the big orders.
fn running_keeps(r: &Running, rec: &brook_runtime::rows::Record) -> bool {
    if !r.brook {
        return true;
    }
    rec.value
        .as_deref()
        .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .and_then(|v| v["total"].as_f64())
        .is_some_and(|t| t > 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50, p99, max of the latencies.
fn summary(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(|a, b| a.total_cmp(b));
    [
        percentile(&v, 0.50),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    ]
}

/// End-to-end latency at a fixed input rate: big_orders against the rdkafka copy.
pub async fn latency(s: &Scale) -> Result<Row, BenchError> {
    let broker = start_broker().await?;
    let bootstrap = broker.kafka();
    let (mut brook, mut base) = (Vec::new(), Vec::new());
    for run in 0..s.runs {
        let input = format!("lat_orders_{run}");
        let output = format!("lat_big_orders_{run}");
        let copied = format!("lat_copy_{run}");
        for t in [&input, &output, &copied] {
            create_topic(&bootstrap, t, 4, 1).await?;
        }
        let pipeline = big_orders_pipeline(&format!("bench_lat_{run}"), &input, &output)?;
        let q = Running::brook(pipeline, &bootstrap);
        brook.push(summary(
            latency_run(
                s,
                &bootstrap,
                &input,
                &output,
                q,
                &format!("lat_reader_{run}"),
            )
            .await?,
        ));
        let input2 = format!("lat_orders_copy_{run}");
        create_topic(&bootstrap, &input2, 4, 1).await?;
        let c = Running::copy(&bootstrap, &input2, &copied, &format!("lat_copy_{run}"));
        base.push(summary(
            latency_run(
                s,
                &bootstrap,
                &input2,
                &copied,
                c,
                &format!("lat_copy_reader_{run}"),
            )
            .await?,
        ));
    }
    drop(broker);
    let med = |v: &[[f64; 3]], k: usize| median(v.iter().map(|x| x[k]).collect());
    let text = |v: &[[f64; 3]]| {
        format!(
            "p50 {:.1} / p99 {:.1} / max {:.1} ms",
            med(v, 0),
            med(v, 1),
            med(v, 2)
        )
    };
    Ok(Row {
        workload: format!("latency at {} rec/s, big_orders", thousands(s.rate)),
        records: s.rate * s.latency_secs,
        cores: "2".into(),
        figure: Some(med(&brook, 1)),
        figure_text: text(&brook),
        baseline: Some(med(&base, 1)),
        baseline_text: text(&base),
        ratio: Some(med(&brook, 1) / med(&base, 1)),
        notes: "produce call to output read back by a consumer; ratio of p99s; baseline: rdkafka copy; medians of runs".into(),
    })
}

//! Server memory with idle persistent queries: a child process runs the embedded broker and
//! the persistent queries the way the server's engine starts them (session plan, sink topic
//! through long-lived admin clients, one Kafka task each, sharing the server's producer and
//! one reader of the input topic), and the parent reads its VmRSS once they are up and idle.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brook_runtime::embedded::{EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::{producer_config, Admin};
use brook_runtime::metrics::QueryMetrics;
use brook_runtime::pipeline::Pipeline;
use brook_runtime::rdkafka::producer::FutureProducer;
use brook_runtime::session::{Action, Session};
use brook_runtime::shared::SharedInputs;
use brook_runtime::task::{self, TaskConfig, TaskStats};
use tokio::sync::watch;

use crate::gen::ORDERS_DDL;
use crate::table::{median, thousands, Row};
use crate::{BenchError, Scale};

/// The child: starts `n` queries, says READY with the seconds it took, then idles until its
/// standard input closes.
pub fn child(n: usize) -> Result<(), BenchError> {
    // As brook-server: a multi-threaded runtime with a worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let broker = EmbeddedBroker::start(EmbeddedBrokerConfig::for_tests()).await?;
        let bootstrap = broker.kafka();
        let mut session = Session::new();
        // As brook-server: one producer shared by every query, one reader per input topic
        // shared by its stateless queries, which split over a worker per core (at most
        // one per partition), the embedded broker's fetch wait.
        let producer: FutureProducer = producer_config(&bootstrap).create()?;
        let defaults = TaskConfig::new(&bootstrap);
        let admin = Admin::new(&bootstrap)?;
        let shared = std::sync::Arc::new(SharedInputs::new(
            &bootstrap,
            defaults.max_batch,
            defaults.linger,
            producer.clone(),
        ));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let t0 = Instant::now();
        let mut stops = Vec::new();
        let mut sql = vec![ORDERS_DDL.to_string()];
        sql.extend((0..n).map(|i| {
            format!(
                "CREATE STREAM q{i} AS SELECT orderId, customerId, total FROM orders \
                 WHERE total > 1000 EMIT CHANGES;"
            )
        }));
        for text in sql {
            for ps in brook_sql::parse(&text)? {
                // What the engine does per statement: look the topics up, plan, create
                // the topic, start the task.
                let partitions = admin.topic_partitions(Duration::from_secs(30)).await?;
                match session.plan(&ps, &|t: &str| partitions.get(t).copied())? {
                    Action::CreateSource {
                        source,
                        partitions: p,
                    } => {
                        admin.create_topic(&source.topic, p.unwrap_or(1), 1).await?;
                    }
                    Action::StartQuery(spec) => {
                        if let Some(p) = spec.sink_partitions {
                            admin.create_topic(&spec.sink.topic, p, 1).await?;
                        }
                        let workers = cores
                            .min(partitions.get(&spec.input.topic).map_or(1, |p| *p as usize))
                            .max(1);
                        let pipelines = (0..workers)
                            .map(|_| Pipeline::new((*spec).clone(), &session.catalog))
                            .collect::<Result<Vec<_>, _>>()?;
                        let (stop, stop_rx) = watch::channel(false);
                        let (stats_tx, stats) = watch::channel(TaskStats::default());
                        let (paused_tx, paused) = watch::channel(false);
                        let config = TaskConfig {
                            producer: Some(producer.clone()),
                            shared: Some(shared.clone()),
                            consumer_overrides: vec![(
                                "fetch.wait.max.ms".into(),
                                crate::kafka::fetch_wait_ms(),
                            )],
                            ..defaults.clone()
                        };
                        let control = task::Control {
                            stop: stop_rx,
                            paused,
                            stats: stats_tx,
                            metrics: std::sync::Arc::new(QueryMetrics::new()),
                        };
                        tokio::task::spawn_local(async move {
                            let _ = task::run_parallel(pipelines, config, control).await;
                        });
                        stops.push((stop, stats, paused_tx));
                    }
                    _ => {}
                }
            }
        }
        let mut out = std::io::stdout();
        writeln!(out, "READY {:.1}", t0.elapsed().as_secs_f64())?;
        out.flush()?;
        // Idle until the parent is done measuring.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        drop(stops);
        drop(broker);
        Ok(())
    })
}

/// A field of /proc/PID/status, in the unit the file gives (kB for memory).
fn status_field(pid: u32, name: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

struct Sample {
    rss_mib: f64,
    threads: u64,
    startup_s: f64,
}

fn finish(mut c: Child) {
    // Closing stdin ends the child; a child that does not end is killed (it is ours).
    drop(c.stdin.take());
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn sample(n: usize, settle: Duration) -> Result<Sample, BenchError> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe)
        .arg("--memory-child")
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = c.id();
    let line = {
        let Some(stdout) = c.stdout.take() else {
            finish(c);
            return Err(BenchError::Setup("no stdout from the memory child".into()));
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        line
    };
    let Some(secs) = line.trim().strip_prefix("READY ") else {
        finish(c);
        return Err(BenchError::Setup(format!(
            "the memory child with {n} queries did not start: {line:?}"
        )));
    };
    let startup_s = secs.parse().unwrap_or(f64::NAN);
    std::thread::sleep(settle);
    let rss = status_field(pid, "VmRSS");
    let threads = status_field(pid, "Threads").unwrap_or(0);
    finish(c);
    let rss = rss.ok_or_else(|| BenchError::Setup("no VmRSS for the memory child".into()))?;
    Ok(Sample {
        rss_mib: rss as f64 / 1024.0,
        threads,
        startup_s,
    })
}

/// Rows for each query count, against the same server with none.
pub fn rows(s: &Scale) -> Result<Vec<Row>, BenchError> {
    let settle = Duration::from_secs(5);
    let mut base = Vec::new();
    let mut by_n: Vec<Vec<Sample>> = s.queries.iter().map(|_| Vec::new()).collect();
    for _ in 0..s.runs {
        base.push(sample(0, settle)?.rss_mib);
        for (k, n) in s.queries.iter().enumerate() {
            let smp = sample(*n, settle)?;
            eprintln!(
                "memory: {n} queries: {:.0} MiB, {} threads, {:.1} s to start",
                smp.rss_mib, smp.threads, smp.startup_s
            );
            by_n[k].push(smp);
        }
    }
    let b = median(base);
    Ok(s.queries
        .iter()
        .zip(by_n)
        .map(|(n, v)| {
            let rss = median(v.iter().map(|x| x.rss_mib).collect());
            let threads = median(v.iter().map(|x| x.threads as f64).collect());
            let startup = median(v.iter().map(|x| x.startup_s).collect());
            Row {
                workload: format!("server RSS, {} idle persistent queries", thousands(*n as u64)),
                records: *n as u64,
                cores: "-".into(),
                figure: Some(rss),
                figure_text: format!("{rss:.0} MiB"),
                baseline: Some(b),
                baseline_text: format!("{b:.0} MiB (0 queries)"),
                ratio: Some(rss / b),
                notes: format!(
                    "{:.2} MiB per query; {threads:.0} threads; {startup:.0} s to start them; engine + embedded broker in one process",
                    (rss - b) / (*n as f64).max(1.0)
                ),
            }
        })
        .collect())
}

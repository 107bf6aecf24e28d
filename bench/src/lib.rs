//! Brook's benchmarks: each workload measured together with its baseline in the same run,
//! at least three times, medians and ratios printed in one table.
//!
//! The data generators in [`gen`] (the README's orders stream, Nexmark's events) are meant
//! for demos too: they produce in-memory records or write into any Kafka topic.

pub mod engine;
pub mod gen;
pub mod kafka;
pub mod memory;
pub mod soak;
pub mod table;

use std::process::ExitCode;

use clap::Parser;

pub use table::Row;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("parse: {0}")]
    Parse(#[from] brook_sql::ParseError),
    #[error("statement: {0}")]
    Statement(#[from] brook_runtime::session::StatementError),
    #[error("runtime: {0}")]
    Runtime(#[from] brook_runtime::RuntimeError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("kafka: {0}")]
    Kafka(#[from] brook_runtime::rdkafka::error::KafkaError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
    /// A run's result is not what the workload must give (e.g. the filter kept the wrong
    /// number of records): its figure would be meaningless.
    #[error("wrong result: {0}")]
    Wrong(String),
}

/// The workloads, by the names `--only` takes.
pub const WORKLOADS: &[&str] = &[
    "stateless",
    "e2e",
    "e2e-agg",
    "tumbling",
    "join",
    "latency",
    "nexmark",
    "memory",
];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "brook-bench",
    about = "Brook's benchmarks: each figure with its baseline measured in the same run"
)]
pub struct Args {
    /// A small smoke run: small counts, 3 runs each.
    #[arg(long)]
    pub quick: bool,

    /// Run only these workloads (comma-separated): stateless, e2e, e2e-agg, tumbling, join,
    /// latency, nexmark, memory.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,

    /// Runs per figure (the median is reported); at least 3.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    /// Records per engine-only run (default 1,000,000; 20,000 with --quick).
    #[arg(long)]
    pub records: Option<u64>,

    /// Records per end-to-end run through the embedded broker (default 200,000; 10,000
    /// with --quick).
    #[arg(long)]
    pub e2e_records: Option<u64>,

    /// Seconds of input per latency run at --rate (default 10; 2 with --quick).
    #[arg(long)]
    pub latency_secs: Option<u64>,

    /// Input rate of the latency runs, records per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,

    /// Idle persistent queries for the memory rows (default 100,1000; 10,20 with --quick).
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<usize>,

    /// Internal: run as the memory workload's child server with this many queries.
    #[arg(long, hide = true)]
    pub memory_child: Option<usize>,
}

/// Counts a run uses, from the flags.
#[derive(Debug, Clone)]
pub struct Scale {
    pub runs: usize,
    pub records: u64,
    pub e2e_records: u64,
    pub latency_secs: u64,
    pub rate: u64,
    pub queries: Vec<usize>,
}

impl Args {
    pub fn scale(&self) -> Scale {
        let q = self.quick;
        Scale {
            runs: self.runs.max(3),
            records: self.records.unwrap_or(if q { 20_000 } else { 1_000_000 }),
            e2e_records: self.e2e_records.unwrap_or(if q { 10_000 } else { 200_000 }),
            latency_secs: self.latency_secs.unwrap_or(if q { 2 } else { 10 }),
            rate: self.rate.max(1),
            queries: if self.queries.is_empty() {
                if q {
                    vec![10, 20]
                } else {
                    vec![100, 1000]
                }
            } else {
                self.queries.clone()
            },
        }
    }

    fn selected(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(name))
    }
}

/// The engine-only workloads (no broker), as rows.
pub fn engine_rows(args: &Args) -> Result<Vec<Row>, BenchError> {
    let s = args.scale();
    let mut rows = Vec::new();
    if args.selected("stateless") {
        rows.push(table::stateless(&s)?);
    }
    if args.selected("tumbling") {
        rows.push(table::tumbling(&s)?);
    }
    if args.selected("join") {
        rows.push(table::join(&s)?);
    }
    if args.selected("nexmark") {
        rows.extend(table::nexmark(&s)?);
    }
    Ok(rows)
}

/// Runs the selected workloads and prints the table; what the binary and `brook bench` run.
pub fn run(args: Args) -> Result<Vec<Row>, BenchError> {
    if let Some(n) = args.memory_child {
        memory::child(n)?;
        return Ok(Vec::new());
    }
    for o in &args.only {
        if !WORKLOADS.iter().any(|w| w.eq_ignore_ascii_case(o)) {
            return Err(BenchError::Setup(format!(
                "unknown workload {o}; one of {}",
                WORKLOADS.join(", ")
            )));
        }
    }
    let s = args.scale();
    let mut rows = Vec::new();
    let print = |rows: &mut Vec<Row>, new: Vec<Row>| {
        for r in &new {
            eprintln!("{}", r.line());
        }
        rows.extend(new);
    };
    let engine = engine_rows(&args)?;
    print(&mut rows, engine);
    let wants_kafka = ["e2e", "e2e-agg", "latency"]
        .iter()
        .any(|w| args.selected(w));
    if wants_kafka {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Query tasks run on a LocalSet: a query's future need not be Send that way, and it
        // is one sequential future either way.
        let local = tokio::task::LocalSet::new();
        let kafka_rows = local.block_on(&rt, async {
            let mut out = Vec::new();
            if args.selected("e2e") {
                out.push(kafka::e2e(&s).await?);
            }
            if args.selected("e2e-agg") {
                out.push(kafka::e2e_aggregate(&s).await?);
            }
            if args.selected("latency") {
                out.push(kafka::latency(&s).await?);
            }
            Ok::<_, BenchError>(out)
        })?;
        print(&mut rows, kafka_rows);
    }
    if args.selected("memory") {
        let mem = memory::rows(&s)?;
        print(&mut rows, mem);
    }
    println!("{}", table::render(&rows));
    Ok(rows)
}

/// `brook-bench ARGS…` (and `brook bench ARGS…`): the first item is the program name.
pub fn main_with_args(args: Vec<String>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brook-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

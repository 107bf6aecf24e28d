//! The table's rows, the engine-only workloads that fill them, and the plain-text table.

use crate::engine::{
    self, plan, run_baseline, run_pipeline, Baseline, FilterBaseline, JoinBaseline,
    NexmarkBaseline, Timed, TumblingBaseline,
};
use crate::gen::{self, NexmarkTopic, OrdersGen};
use crate::{BenchError, Scale};

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    /// Records (or events, or queries) per run.
    pub records: u64,
    pub cores: String,
    /// The median figure, and as shown (with its unit).
    pub figure: Option<f64>,
    pub figure_text: String,
    pub baseline: Option<f64>,
    pub baseline_text: String,
    /// figure / baseline.
    pub ratio: Option<f64>,
    pub notes: String,
}

impl Row {
    /// A row for a workload Brook cannot run; the reason goes in the notes.
    pub fn unsupported(workload: &str, why: &str) -> Row {
        Row {
            workload: workload.into(),
            records: 0,
            cores: "-".into(),
            figure: None,
            figure_text: "not run".into(),
            baseline: None,
            baseline_text: "-".into(),
            ratio: None,
            notes: why.into(),
        }
    }

    fn cells(&self) -> [String; 7] {
        [
            self.workload.clone(),
            if self.records == 0 {
                "-".into()
            } else {
                thousands(self.records)
            },
            self.cores.clone(),
            self.figure_text.clone(),
            self.baseline_text.clone(),
            self.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            self.notes.clone(),
        ]
    }

    /// The row as one progress line.
    pub fn line(&self) -> String {
        self.cells().join(" | ")
    }
}

const HEADER: [&str; 7] = [
    "workload", "records", "cores", "figure", "baseline", "ratio", "notes",
];

/// The rows as a Markdown table (readable as plain text, pasteable into the docs).
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(Row::cells).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |items: Vec<String>| -> String {
        let padded: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![
        line(HEADER.iter().map(|h| h.to_string()).collect()),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    for r in cells {
        out.push(line(r.to_vec()));
    }
    out.join("\n")
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with k/M, e.g. "1.23 M rec/s".
pub fn rate(v: f64, unit: &str) -> String {
    if v >= 1e6 {
        format!("{:.2} M {unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k {unit}", v / 1e3)
    } else {
        format!("{v:.0} {unit}")
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `brook` and `base` alternately, `runs` times each, so drifts in the machine's load
/// hit both alike.
fn alternate(
    runs: usize,
    mut brook: impl FnMut() -> Result<Timed, BenchError>,
    mut base: impl FnMut() -> Result<Timed, BenchError>,
) -> Result<(Vec<Timed>, Vec<Timed>), BenchError> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..runs {
        a.push(brook()?);
        b.push(base()?);
    }
    Ok((a, b))
}

/// A row of an engine-only workload from Brook's runs and the baseline's.
fn engine_row(workload: &str, brook: &[Timed], base: Option<&[Timed]>, notes: String) -> Row {
    let fig = median(brook.iter().map(Timed::per_core).collect());
    let bas = base.map(|b| median(b.iter().map(Timed::per_core).collect()));
    Row {
        workload: workload.into(),
        records: brook.first().map(|t| t.records).unwrap_or(0),
        cores: "1".into(),
        figure: Some(fig),
        figure_text: rate(fig, "rec/s/core"),
        baseline: bas,
        baseline_text: bas
            .map(|b| rate(b, "rec/s/core"))
            .unwrap_or_else(|| "-".into()),
        ratio: bas.map(|b| fig / b),
        notes,
    }
}

fn check_outputs(what: &str, runs: &[Timed], want: u64) -> Result<(), BenchError> {
    for t in runs {
        if t.records == 0 {
            return Err(BenchError::Wrong(format!("{what}: no input records")));
        }
        if t.outputs != want || t.errors != 0 {
            return Err(BenchError::Wrong(format!(
                "{what}: {} outputs and {} skipped records, expected {want} outputs",
                t.outputs, t.errors
            )));
        }
    }
    Ok(())
}

/// The README's big_orders filter+project, engine only, against arrow-json by hand.
pub fn stateless(s: &Scale) -> Result<Row, BenchError> {
    let g = OrdersGen::default();
    let records = g.records(0..s.records, 4);
    let want = g.big_orders(s.records);
    let ddl = gen::ORDERS_DDL;
    let (brook, base) = alternate(
        s.runs,
        || run_pipeline(&mut plan(ddl, gen::BIG_ORDERS)?, &[], &records),
        || run_baseline(&mut FilterBaseline, &records),
    )?;
    check_outputs("big_orders (Brook)", &brook, want)?;
    check_outputs("big_orders (baseline)", &base, want)?;
    Ok(engine_row(
        "stateless filter+project (big_orders), engine only",
        &brook,
        Some(&base),
        format!(
            "{} of {} kept; baseline: arrow-json decode, filter, arrow-json encode",
            thousands(want),
            thousands(s.records)
        ),
    ))
}

pub const TUMBLING: &str = "CREATE TABLE order_stats AS SELECT customerId, COUNT(*) AS n, \
     SUM(total) AS revenue FROM orders WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY customerId \
     EMIT CHANGES;";

/// COUNT and SUM per customer (10,000 keys) in one-minute tumbling windows.
pub fn tumbling(s: &Scale) -> Result<Row, BenchError> {
    let g = OrdersGen::default();
    let records = g.records(0..s.records, 4);
    let (brook, base) = alternate(
        s.runs,
        || run_pipeline(&mut plan(gen::ORDERS_DDL, TUMBLING)?, &[], &records),
        || run_baseline(&mut TumblingBaseline::default(), &records),
    )?;
    check_outputs("tumbling (Brook)", &brook, s.records)?;
    check_outputs("tumbling (baseline)", &base, s.records)?;
    Ok(engine_row(
        "tumbling COUNT/SUM by key (10,000 keys), engine only",
        &brook,
        Some(&base),
        format!(
            "1-minute windows, one update per record; baseline: arrow-json + HashMap; {}",
            engine::describe(&brook[0])
        ),
    ))
}

pub const JOIN: &str = "CREATE STREAM enriched AS SELECT o.customerId AS cid, o.orderId, \
     c.name, o.total FROM orders o JOIN customers c ON o.customerId = c.id EMIT CHANGES;";

/// Orders joined with the customers table (10,000 rows, loaded before the timed part).
pub fn join(s: &Scale) -> Result<Row, BenchError> {
    let g = OrdersGen::default();
    let records = g.records(0..s.records, 4);
    let customers = gen::customer_records(g.customers, 4);
    let ddl = format!("{}\n{}", gen::ORDERS_DDL, gen::CUSTOMERS_DDL);
    let mut base_op = JoinBaseline::new(&customers)?;
    let (brook, base) = alternate(
        s.runs,
        || run_pipeline(&mut plan(&ddl, JOIN)?, &customers, &records),
        || run_baseline(&mut base_op, &records),
    )?;
    check_outputs("join (Brook)", &brook, s.records)?;
    check_outputs("join (baseline)", &base, s.records)?;
    Ok(engine_row(
        "stream-table join (orders x 10,000 customers), engine only",
        &brook,
        Some(&base),
        "inner join, re-keyed by customer; baseline: arrow-json + HashMap lookup".into(),
    ))
}

pub const NEXMARK_Q0: &str = "CREATE STREAM nexmark_q0 AS SELECT * FROM bid EMIT CHANGES;";
pub const NEXMARK_Q1: &str = "CREATE STREAM nexmark_q1 AS SELECT auction, bidder, \
     0.908 * price AS price, dateTime, extra FROM bid EMIT CHANGES;";
pub const NEXMARK_Q2: &str = "CREATE STREAM nexmark_q2 AS SELECT auction, price FROM bid \
     WHERE auction % 123 = 0 EMIT CHANGES;";
/// q5's first stage (bids per auction in hopping windows); the full query also needs each
/// window's maximum joined back, which ksqlDB's dialect cannot say in one query.
pub const NEXMARK_Q5_COUNTS: &str = "CREATE TABLE nexmark_q5_counts AS SELECT auction, \
     COUNT(*) AS num FROM bid WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 2 SECONDS) \
     GROUP BY auction EMIT CHANGES;";
/// q8: people who created an auction within 10 s of registering (a windowed stream–stream
/// join).
pub const NEXMARK_Q8: &str = "CREATE STREAM nexmark_q8 AS SELECT p.id AS id, p.name AS name, \
     a.reserve AS reserve FROM person p JOIN auction a WITHIN 10 SECONDS ON p.id = a.seller \
     EMIT CHANGES;";

/// Nexmark q0, q1, q2 with baselines; q5's first stage; q5, q7 and q8 where they plan.
pub fn nexmark(s: &Scale) -> Result<Vec<Row>, BenchError> {
    let events = gen::nexmark_records(s.records as usize);
    let bids: Vec<_> = events
        .iter()
        .filter(|(t, _)| *t == NexmarkTopic::Bid)
        .map(|(_, r)| r.clone())
        .collect();
    let note = format!(
        "{} bids of {} events (default mix)",
        thousands(bids.len() as u64),
        thousands(s.records)
    );
    let mut rows = Vec::new();
    let simple: [(&str, &str, NexmarkBaseline); 3] = [
        ("nexmark q0 (pass-through)", NEXMARK_Q0, NexmarkBaseline::Q0),
        (
            "nexmark q1 (currency conversion)",
            NEXMARK_Q1,
            NexmarkBaseline::Q1,
        ),
        ("nexmark q2 (selection)", NEXMARK_Q2, NexmarkBaseline::Q2),
    ];
    for (name, sql, mut b) in simple {
        let (brook, base) = alternate(
            s.runs,
            || run_pipeline(&mut plan(gen::NEXMARK_DDL, sql)?, &[], &bids),
            || run_baseline(&mut b as &mut dyn Baseline, &bids),
        )?;
        let want = base[0].outputs;
        check_outputs(name, &brook, want)?;
        rows.push(engine_row(
            &format!("{name}, engine only"),
            &brook,
            Some(&base),
            format!("{note}; {}", engine::describe(&brook[0])),
        ));
    }
    match plan(gen::NEXMARK_DDL, NEXMARK_Q5_COUNTS) {
        Ok(_) => {
            let mut runs = Vec::new();
            for _ in 0..s.runs {
                runs.push(run_pipeline(
                    &mut plan(gen::NEXMARK_DDL, NEXMARK_Q5_COUNTS)?,
                    &[],
                    &bids,
                )?);
            }
            rows.push(engine_row(
                "nexmark q5 stage 1 (hopping COUNT by auction), engine only",
                &runs,
                None,
                format!(
                    "{note}; {}; no baseline written",
                    engine::describe(&runs[0])
                ),
            ));
        }
        Err(e) => rows.push(Row::unsupported("nexmark q5 stage 1", &e.to_string())),
    }
    rows.push(Row::unsupported(
        "nexmark q5 (hot items)",
        "needs each window's MAX joined back to the counts: no subqueries, and no join of \
         windowed tables",
    ));
    rows.push(Row::unsupported(
        "nexmark q7 (highest bid)",
        "needs a tumbling MAX joined back to the bids: a join of a windowed table with a \
         stream, which ksqlDB's dialect cannot say",
    ));
    // q8 reads persons (input 0) and auctions (input 1), interleaved in event order.
    let people_and_auctions: Vec<(usize, _)> = events
        .iter()
        .filter_map(|(t, r)| match t {
            NexmarkTopic::Person => Some((0, r.clone())),
            NexmarkTopic::Auction => Some((1, r.clone())),
            NexmarkTopic::Bid => None,
        })
        .collect();
    match plan(gen::NEXMARK_DDL, NEXMARK_Q8) {
        Ok(_) => {
            let mut runs = Vec::new();
            for _ in 0..s.runs {
                runs.push(engine::run_inputs(
                    &mut plan(gen::NEXMARK_DDL, NEXMARK_Q8)?,
                    &people_and_auctions,
                )?);
            }
            check_outputs("nexmark q8", &runs, runs[0].outputs)?;
            rows.push(engine_row(
                "nexmark q8 (new users: person x auction within 10 s), engine only",
                &runs,
                None,
                format!(
                    "{} persons and auctions of {} events; {}; no baseline written",
                    thousands(people_and_auctions.len() as u64),
                    thousands(s.records),
                    engine::describe(&runs[0])
                ),
            ));
        }
        Err(e) => rows.push(Row::unsupported(
            "nexmark q8 (new users)",
            &format!("refused: {e}"),
        )),
    }
    Ok(rows)
}

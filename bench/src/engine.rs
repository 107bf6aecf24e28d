//! Engine-only runs: queries planned by the same `Session` the server uses, run by the same
//! `Pipeline` (formats, operators) over in-memory records, and the hand-written arrow-json
//! loops they are compared with.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, Schema, SchemaRef};
use arrow::json::writer::{make_encoder, EncoderOptions};
use brook_runtime::pipeline::{Output, Pipeline};
use brook_runtime::rows::Record;
use brook_runtime::session::{Action, Session};

use crate::BenchError;

/// Records per `Pipeline::process` call: the Kafka task's `max_batch`.
pub const BATCH: usize = 4096;

/// CPU time of the calling thread. Engine-only runs are single-threaded, so records per
/// CPU-second is records per second per core, and other work on this shared machine does
/// not count against the figure the way wall time would.
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// What one timed run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timed {
    pub records: u64,
    pub outputs: u64,
    pub errors: u64,
    pub cpu: Duration,
    pub wall: Duration,
}

impl Timed {
    /// Records per CPU-second (falls back to wall time where the CPU clock is missing).
    pub fn per_core(&self) -> f64 {
        let t = if self.cpu > Duration::ZERO {
            self.cpu
        } else {
            self.wall
        };
        self.records as f64 / t.as_secs_f64().max(1e-9)
    }
}

/// Plans `ddl` then `query` (one CSAS/CTAS) in a fresh session and returns its pipeline.
pub fn plan(ddl: &str, query: &str) -> Result<Pipeline, BenchError> {
    let mut session = Session::new();
    let mut spec = None;
    for ps in brook_sql::parse(&format!("{ddl}\n{query}"))? {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(4))? {
            spec = Some(s);
        }
    }
    let spec = spec.ok_or_else(|| BenchError::Setup(format!("no query in {query}")))?;
    Ok(Pipeline::new(*spec, &session.catalog)?)
}

/// Feeds `table` (untimed: a join's table) then `stream` through the pipeline in batches
/// of [`BATCH`], the way the Kafka task hands it consumed records.
pub fn run_pipeline(
    pipeline: &mut Pipeline,
    table: &[Record],
    stream: &[Record],
) -> Result<Timed, BenchError> {
    for chunk in table.chunks(BATCH) {
        pipeline.process_table(chunk)?;
    }
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut t = Timed::default();
    for chunk in stream.chunks(BATCH) {
        let done = pipeline.process(chunk)?;
        t.outputs += done.outputs.len() as u64;
        t.errors += done.errors.len() as u64;
        // The outputs are dropped here, as the task drops them once produced.
    }
    t.records = stream.len() as u64;
    t.cpu = thread_cpu().saturating_sub(cpu0);
    t.wall = wall0.elapsed();
    Ok(t)
}

/// Feeds records of several inputs (a join's), each tagged with its input's index, in
/// order through the pipeline in batches of [`BATCH`]; all of them are timed.
pub fn run_inputs(
    pipeline: &mut Pipeline,
    records: &[(usize, Record)],
) -> Result<Timed, BenchError> {
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut t = Timed::default();
    for chunk in records.chunks(BATCH) {
        // Runs of one input, in order, as the Kafka task splits a consumed batch.
        let mut start = 0;
        while start < chunk.len() {
            let input = chunk[start].0;
            let mut end = start + 1;
            while end < chunk.len() && chunk[end].0 == input {
                end += 1;
            }
            let run: Vec<Record> = chunk[start..end].iter().map(|(_, r)| r.clone()).collect();
            let done = pipeline.process_input(input, &run)?;
            t.outputs += done.outputs.len() as u64;
            t.errors += done.errors.len() as u64;
            start = end;
        }
    }
    t.records = records.len() as u64;
    t.cpu = thread_cpu().saturating_sub(cpu0);
    t.wall = wall0.elapsed();
    Ok(t)
}

/// The orders' value columns as arrow-json reads them.
pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customerId", DataType::Utf8, true),
        Field::new(
            "items",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("total", DataType::Float64, true),
        Field::new("createdAt", DataType::Int64, true),
    ]))
}

/// Nexmark's bid as arrow-json reads it.
pub fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("dateTime", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ]))
}

/// Decodes the values of `records` with arrow-json into one batch.
fn decode_values(
    decoder: &mut arrow::json::reader::Decoder,
    records: &[Record],
) -> Result<RecordBatch, BenchError> {
    for r in records {
        if let Some(v) = &r.value {
            decoder.decode(v)?;
        }
    }
    decoder
        .flush()?
        .ok_or_else(|| BenchError::Setup("arrow-json decoded nothing".into()))
}

fn decoder(schema: SchemaRef) -> Result<arrow::json::reader::Decoder, BenchError> {
    Ok(arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(BATCH)
        .build_decoder()?)
}

/// Encodes each row of `columns` as one JSON object (the value of one output record).
fn encode_rows(columns: Vec<(&str, ArrayRef)>) -> Result<Vec<Vec<u8>>, BenchError> {
    let rows = columns.first().map(|(_, a)| a.len()).unwrap_or(0);
    let fields: Fields = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    let s: ArrayRef = Arc::new(StructArray::try_new(fields, arrays, None)?);
    let field = Arc::new(Field::new("v", s.data_type().clone(), false));
    let options = EncoderOptions::default();
    let mut enc = make_encoder(&field, s.as_ref(), &options)?;
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut v = Vec::with_capacity(64);
        enc.encode(i, &mut v);
        out.push(v);
    }
    Ok(out)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, BenchError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| BenchError::Setup(format!("no column {name}")))
}

/// A baseline: the same bytes decoded with arrow-json, the query's work done by hand, the
/// results encoded with arrow-json's encoders, one output record each.
pub trait Baseline {
    fn schema(&self) -> SchemaRef;
    fn batch(
        &mut self,
        records: &[Record],
        batch: &RecordBatch,
        out: &mut Vec<Output>,
    ) -> Result<(), BenchError>;
}

pub fn run_baseline(b: &mut dyn Baseline, stream: &[Record]) -> Result<Timed, BenchError> {
    let mut dec = decoder(b.schema())?;
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut t = Timed::default();
    for chunk in stream.chunks(BATCH) {
        let batch = decode_values(&mut dec, chunk)?;
        let mut out = Vec::new();
        b.batch(chunk, &batch, &mut out)?;
        t.outputs += out.len() as u64;
    }
    t.records = stream.len() as u64;
    t.cpu = thread_cpu().saturating_sub(cpu0);
    t.wall = wall0.elapsed();
    Ok(t)
}

/// `WHERE total > 1000`, then orderId (the key), customerId and total.
pub struct FilterBaseline;

impl Baseline for FilterBaseline {
    fn schema(&self) -> SchemaRef {
        orders_schema()
    }

    fn batch(
        &mut self,
        records: &[Record],
        batch: &RecordBatch,
        out: &mut Vec<Output>,
    ) -> Result<(), BenchError> {
        let total = column(batch, "total")?;
        let mask = arrow::compute::kernels::cmp::gt(total, &Float64Array::new_scalar(1000.0))?;
        let kept = arrow::compute::filter_record_batch(batch, &mask)?;
        let values = encode_rows(vec![
            ("CUSTOMERID", column(&kept, "customerId")?.clone()),
            ("TOTAL", column(&kept, "total")?.clone()),
        ])?;
        let ts = column(&kept, "createdAt")?.as_primitive::<Int64Type>();
        let keys = records
            .iter()
            .zip(mask.iter())
            .filter(|(_, m)| *m == Some(true))
            .map(|(r, _)| r.key.clone());
        for (i, (key, value)) in keys.zip(values).enumerate() {
            out.push(Output {
                key,
                value: Some(value),
                timestamp: ts.value(i),
            });
        }
        Ok(())
    }
}

/// Tumbling one-minute windows per customer: COUNT(*) and SUM(total), one update per input
/// row (EMIT CHANGES without caching), keyed by customer plus window start.
#[derive(Default)]
pub struct TumblingBaseline {
    state: HashMap<i64, HashMap<String, (i64, f64)>>,
}

impl Baseline for TumblingBaseline {
    fn schema(&self) -> SchemaRef {
        orders_schema()
    }

    fn batch(
        &mut self,
        _records: &[Record],
        batch: &RecordBatch,
        out: &mut Vec<Output>,
    ) -> Result<(), BenchError> {
        let cust = column(batch, "customerId")?.as_string::<i32>();
        let total = column(batch, "total")?.as_primitive::<Float64Type>();
        let ts = column(batch, "createdAt")?.as_primitive::<Int64Type>();
        let mut counts = Vec::with_capacity(batch.num_rows());
        let mut sums = Vec::with_capacity(batch.num_rows());
        let mut keys = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            let start = t - t.rem_euclid(60_000);
            let c = cust.value(i);
            let v = total.value(i);
            let window = self.state.entry(start).or_default();
            // Looked up by &str first so a known key costs no allocation.
            let (n, sum) = if let Some(slot) = window.get_mut(c) {
                slot.0 += 1;
                slot.1 += v;
                *slot
            } else {
                window.insert(c.to_string(), (1, v));
                (1, v)
            };
            counts.push(n);
            sums.push(sum);
            let mut k = Vec::with_capacity(c.len() + 8);
            k.extend_from_slice(c.as_bytes());
            k.extend_from_slice(&start.to_be_bytes());
            keys.push(k);
        }
        let values = encode_rows(vec![
            ("N", Arc::new(Int64Array::from(counts)) as ArrayRef),
            ("REVENUE", Arc::new(Float64Array::from(sums))),
        ])?;
        for (i, (k, v)) in keys.into_iter().zip(values).enumerate() {
            out.push(Output {
                key: Some(k),
                value: Some(v),
                timestamp: ts.value(i),
            });
        }
        Ok(())
    }
}

/// Orders joined with their customer's name (inner), re-keyed by customer.
pub struct JoinBaseline {
    pub names: HashMap<String, String>,
}

impl JoinBaseline {
    /// The table side, from the customers' JSON records (not timed).
    pub fn new(table: &[Record]) -> Result<Self, BenchError> {
        let mut names = HashMap::new();
        for r in table {
            let (Some(k), Some(v)) = (&r.key, &r.value) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(v)?;
            names.insert(
                String::from_utf8_lossy(k).to_string(),
                v["name"].as_str().unwrap_or_default().to_string(),
            );
        }
        Ok(JoinBaseline { names })
    }
}

impl Baseline for JoinBaseline {
    fn schema(&self) -> SchemaRef {
        orders_schema()
    }

    fn batch(
        &mut self,
        records: &[Record],
        batch: &RecordBatch,
        out: &mut Vec<Output>,
    ) -> Result<(), BenchError> {
        let cust = column(batch, "customerId")?.as_string::<i32>();
        let total = column(batch, "total")?.as_primitive::<Float64Type>();
        let ts = column(batch, "createdAt")?.as_primitive::<Int64Type>();
        let mut order_ids = Vec::new();
        let mut names = Vec::new();
        let mut totals = Vec::new();
        let mut meta = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let c = cust.value(i);
            if let Some(name) = self.names.get(c) {
                order_ids.push(String::from_utf8_lossy(
                    r.key.as_deref().unwrap_or_default(),
                ));
                names.push(name.as_str());
                totals.push(total.value(i));
                meta.push((c.as_bytes().to_vec(), ts.value(i)));
            }
        }
        let values = encode_rows(vec![
            (
                "ORDERID",
                Arc::new(StringArray::from_iter_values(order_ids.iter())) as ArrayRef,
            ),
            ("NAME", Arc::new(StringArray::from(names))),
            ("TOTAL", Arc::new(Float64Array::from(totals))),
        ])?;
        for ((key, timestamp), v) in meta.into_iter().zip(values) {
            out.push(Output {
                key: Some(key),
                value: Some(v),
                timestamp,
            });
        }
        Ok(())
    }
}

/// Nexmark q0 (pass-through), q1 (price in euros) and q2 (a selection of auctions).
pub enum NexmarkBaseline {
    Q0,
    Q1,
    Q2,
}

impl Baseline for NexmarkBaseline {
    fn schema(&self) -> SchemaRef {
        bid_schema()
    }

    fn batch(
        &mut self,
        _records: &[Record],
        batch: &RecordBatch,
        out: &mut Vec<Output>,
    ) -> Result<(), BenchError> {
        let upper = |b: &RecordBatch, names: &[&str]| -> Result<Vec<(String, ArrayRef)>, _> {
            names
                .iter()
                .map(|n| Ok((n.to_uppercase(), column(b, n)?.clone())))
                .collect::<Result<Vec<_>, BenchError>>()
        };
        let (cols, ts) = match self {
            NexmarkBaseline::Q0 => (
                upper(
                    batch,
                    &[
                        "auction", "bidder", "price", "channel", "url", "dateTime", "extra",
                    ],
                )?,
                column(batch, "dateTime")?.clone(),
            ),
            NexmarkBaseline::Q1 => {
                let price = arrow::compute::cast(column(batch, "price")?, &DataType::Float64)?;
                let euros = arrow::compute::kernels::numeric::mul(
                    &price,
                    &Float64Array::new_scalar(0.908),
                )?;
                let mut cols = upper(batch, &["auction", "bidder"])?;
                cols.push(("PRICE".into(), euros));
                cols.extend(upper(batch, &["dateTime", "extra"])?);
                (cols, column(batch, "dateTime")?.clone())
            }
            NexmarkBaseline::Q2 => {
                let auction = column(batch, "auction")?;
                let rem =
                    arrow::compute::kernels::numeric::rem(auction, &Int64Array::new_scalar(123))?;
                let mask = arrow::compute::kernels::cmp::eq(&rem, &Int64Array::new_scalar(0))?;
                let kept = arrow::compute::filter_record_batch(batch, &mask)?;
                (
                    upper(&kept, &["auction", "price"])?,
                    column(&kept, "dateTime")?.clone(),
                )
            }
        };
        let ts = ts.as_primitive::<Int64Type>().clone();
        let values = encode_rows(cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())?;
        for (i, v) in values.into_iter().enumerate() {
            out.push(Output {
                key: None,
                value: Some(v),
                timestamp: ts.value(i),
            });
        }
        Ok(())
    }
}

/// A one-line description of a run's outputs, for the table's notes.
pub fn describe(t: &Timed) -> String {
    let mut s = String::new();
    let _ = write!(s, "{} outputs", t.outputs);
    if t.errors > 0 {
        let _ = write!(s, ", {} records skipped", t.errors);
    }
    s
}

//! GROUP BY aggregation: keyed state of accumulators, one update emitted per input row
//! (ksqlDB's tests run with caching off; the server may later coalesce a batch's updates
//! per key, as ksqlDB's cache does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch, interleave};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brook_planner::aggregate::{AggCall, AggKind, AggregatePlan};
use brook_planner::types::{arrow_type, TypeRegistry};
use datafusion::common::ScalarValue;

use crate::error::{Result, RuntimeError};
use crate::eval::{self, Purpose, RowError};
use crate::operator::Operator;
use crate::state::{
    owned_row, read_scalar_key, scalar_key, Dirty, FastMap, Reader, StateChange, Writer,
};

/// A session's (start, end).
type Span = (i64, i64);

/// The column that marks an output row as a tombstone (the key's row is gone).
pub const TOMBSTONE: &str = "__TOMBSTONE";

#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    Sum(ScalarValue),
    MinMax(ScalarValue),
    Avg(f64, i64),
    ByOffset(ScalarValue),
    /// Every value seen (in offset order), for the functions that need more than one.
    Values(Vec<ScalarValue>),
    /// A user-defined aggregate's state, which only its hooks read.
    Udaf(ScalarValue),
}

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

fn udaf_err(e: brook_planner::udaf::UdafError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

/// The function of a UDAF's call (a plan whose `Udaf` call lacks it is malformed).
fn udaf_of(call: &AggCall) -> Result<&brook_planner::aggregate::UdafCall> {
    call.udaf
        .as_ref()
        .ok_or_else(|| RuntimeError::Eval("a user-defined aggregate without its function".into()))
}

/// The expressions an aggregate reads per row: a UDAF's column arguments, else the one
/// argument of a built-in function (none for COUNT(*)).
fn arg_exprs(call: &AggCall) -> Vec<&Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    match &call.udaf {
        Some(u) => u.args.iter().collect(),
        None => call.arg.iter().collect(),
    }
}

/// Evaluates every aggregate's arguments over a batch: per aggregate, one array per argument.
/// An argument that fails on a row is NULL there (which aggregates skip), as ksqlDB's
/// projection ahead of the aggregation makes it.
fn eval_args(
    aggs: &[AggCall],
    batch: &RecordBatch,
    errors: &mut Vec<RowError>,
) -> Result<Vec<Vec<ArrayRef>>> {
    let mut index = 0;
    aggs.iter()
        .map(|a| {
            arg_exprs(a)
                .into_iter()
                .map(|e| {
                    index += 1;
                    eval::evaluate(e, batch, Purpose::AggregateArgument(index - 1), errors)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

/// One row's values of an aggregate's arguments.
fn row_args(cols: &[ArrayRef], row: usize) -> Result<Vec<ScalarValue>> {
    cols.iter()
        .map(|c| ScalarValue::try_from_array(c, row).map_err(eval_err))
        .collect()
}

impl Acc {
    fn new(call: &AggCall, dt: &DataType, retracting: bool) -> Result<Acc> {
        Ok(match call.kind {
            AggKind::Udaf => Acc::Udaf(udaf_of(call)?.function.initialize().map_err(udaf_err)?),
            // Retraction needs every value for the functions that pick one of them.
            AggKind::Min | AggKind::Max | AggKind::EarliestByOffset | AggKind::LatestByOffset
                if retracting =>
            {
                Acc::Values(Vec::new())
            }
            AggKind::CountRows | AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(ScalarValue::new_zero(dt).map_err(eval_err)?),
            AggKind::Min | AggKind::Max => {
                Acc::MinMax(ScalarValue::try_from(dt).map_err(eval_err)?)
            }
            AggKind::Avg => Acc::Avg(0.0, 0),
            // One value that may itself be NULL (nulls not ignored) needs the Values form:
            // ByOffset takes NULL for "nothing yet".
            AggKind::EarliestByOffset | AggKind::LatestByOffset
                if call.n.is_none() && call.ignore_nulls =>
            {
                Acc::ByOffset(ScalarValue::try_from(dt).map_err(eval_err)?)
            }
            _ => Acc::Values(Vec::new()),
        })
    }

    /// Adds one row's argument values (none for COUNT(*); a UDAF's column arguments).
    fn add(&mut self, call: &AggCall, args: Vec<ScalarValue>) -> Result<()> {
        match self {
            Acc::Udaf(state) => {
                let f = &udaf_of(call)?.function;
                let old = std::mem::replace(state, ScalarValue::Null);
                *state = f.aggregate(&args, old).map_err(udaf_err)?;
                Ok(())
            }
            _ => self.update(call, args.into_iter().next()),
        }
    }

    /// Takes one row's argument values back out (a table row replaced or deleted).
    fn take_back(&mut self, call: &AggCall, args: Vec<ScalarValue>) -> Result<()> {
        match self {
            Acc::Udaf(state) => {
                let f = &udaf_of(call)?.function;
                let old = std::mem::replace(state, ScalarValue::Null);
                *state = f.undo(&args, old).map_err(udaf_err)?;
                Ok(())
            }
            _ => self.undo(call, args.into_iter().next()),
        }
    }

    fn update(&mut self, call: &AggCall, v: Option<ScalarValue>) -> Result<()> {
        let kind = call.kind;
        match (self, kind) {
            (Acc::Udaf(_), _) => {
                return Err(RuntimeError::Eval(
                    "a user-defined aggregate takes its arguments through `add`".into(),
                ))
            }
            (Acc::Values(vals), _) => {
                if let Some(v) = v {
                    let skip_null = match kind {
                        AggKind::EarliestByOffset | AggKind::LatestByOffset => call.ignore_nulls,
                        AggKind::CollectList | AggKind::CollectSet | AggKind::Attr => false,
                        _ => true,
                    };
                    if !(v.is_null() && skip_null) {
                        vals.push(v);
                    }
                }
            }
            (Acc::Count(n), AggKind::CountRows) => *n += 1,
            (Acc::Count(n), _) => {
                if v.as_ref().is_some_and(|v| !v.is_null()) {
                    *n += 1
                }
            }
            (Acc::Sum(s), _) => {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    let v = if v.data_type() == s.data_type() {
                        v
                    } else {
                        v.cast_to(&s.data_type()).map_err(eval_err)?
                    };
                    *s = s.add_checked(&v).or_else(|_| s.add(&v)).map_err(eval_err)?;
                }
            }
            (Acc::MinMax(cur), k) => {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    let replace = cur.is_null()
                        || match v.partial_cmp(cur) {
                            Some(std::cmp::Ordering::Less) => k == AggKind::Min,
                            Some(std::cmp::Ordering::Greater) => k == AggKind::Max,
                            _ => false,
                        };
                    if replace {
                        *cur = v;
                    }
                }
            }
            (Acc::Avg(sum, n), _) => {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    let f = match v.cast_to(&DataType::Float64).map_err(eval_err)? {
                        ScalarValue::Float64(Some(f)) => f,
                        _ => return Ok(()),
                    };
                    *sum += f;
                    *n += 1;
                }
            }
            (Acc::ByOffset(cur), k) => {
                if let Some(v) = v {
                    if v.is_null() && call.ignore_nulls {
                        return Ok(());
                    }
                    if k == AggKind::LatestByOffset || cur.is_null() {
                        *cur = v;
                    }
                }
            }
        }
        Ok(())
    }

    /// Folds another accumulator of the same call into this one (sessions merging).
    fn merge(&mut self, other: &Acc, call: &AggCall) -> Result<()> {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => {
                if !b.is_null() {
                    *a = a.add(b).map_err(eval_err)?;
                }
            }
            (Acc::Avg(s1, n1), Acc::Avg(s2, n2)) => {
                *s1 += s2;
                *n1 += n2;
            }
            (Acc::MinMax(a), Acc::MinMax(b)) => {
                let replace = !b.is_null()
                    && (a.is_null()
                        || match b.partial_cmp(a) {
                            Some(std::cmp::Ordering::Less) => call.kind == AggKind::Min,
                            Some(std::cmp::Ordering::Greater) => call.kind == AggKind::Max,
                            _ => false,
                        });
                if replace {
                    *a = b.clone();
                }
            }
            (Acc::ByOffset(a), Acc::ByOffset(b)) => {
                // Sessions merge oldest first.
                if !b.is_null() && (call.kind == AggKind::LatestByOffset || a.is_null()) {
                    *a = b.clone();
                }
            }
            (Acc::Values(a), Acc::Values(b)) => a.extend(b.iter().cloned()),
            (Acc::Udaf(a), Acc::Udaf(b)) => {
                let f = &udaf_of(call)?.function;
                let older = std::mem::replace(a, ScalarValue::Null);
                *a = f.merge(older, b.clone()).map_err(udaf_err)?;
            }
            _ => return Err(RuntimeError::Eval("aggregate states do not match".into())),
        }
        Ok(())
    }

    /// Takes a value back out (a table row replaced or deleted).
    fn undo(&mut self, call: &AggCall, v: Option<ScalarValue>) -> Result<()> {
        match self {
            Acc::Count(n) => {
                let counted =
                    call.kind == AggKind::CountRows || v.as_ref().is_some_and(|v| !v.is_null());
                if counted {
                    *n -= 1;
                }
            }
            Acc::Sum(s) => {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    let v = if v.data_type() == s.data_type() {
                        v
                    } else {
                        v.cast_to(&s.data_type()).map_err(eval_err)?
                    };
                    *s = s.sub(&v).map_err(eval_err)?;
                }
            }
            Acc::Avg(sum, n) => {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    if let ScalarValue::Float64(Some(f)) =
                        v.cast_to(&DataType::Float64).map_err(eval_err)?
                    {
                        *sum -= f;
                        *n -= 1;
                    }
                }
            }
            Acc::Values(vals) => {
                if let Some(v) = v {
                    if let Some(i) = vals.iter().position(|x| *x == v) {
                        vals.remove(i);
                    }
                }
            }
            Acc::MinMax(_) | Acc::ByOffset(_) | Acc::Udaf(_) => {
                return Err(RuntimeError::Eval(
                    "this aggregate cannot take a value back".into(),
                ))
            }
        }
        Ok(())
    }

    fn value(&self, call: &AggCall, dt: &DataType) -> Result<ScalarValue> {
        let list = |vals: Vec<ScalarValue>| -> Result<ScalarValue> {
            let item = match dt {
                DataType::List(f) => f.data_type().clone(),
                other => other.clone(),
            };
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &vals, &item,
            )))
        };
        let distinct = |vals: &[ScalarValue]| {
            let mut out: Vec<ScalarValue> = Vec::new();
            for v in vals {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            out
        };
        // TOPK with other columns collects STRUCTs ordered by their first field,
        // `sort_col`; a row whose sort_col is NULL is ignored, as a NULL value is. The sort
        // is stable: equal values keep their arrival order.
        let sort_key = |v: &ScalarValue| match v {
            ScalarValue::Struct(s) if s.num_columns() > 0 => {
                ScalarValue::try_from_array(s.column(0), 0).unwrap_or(ScalarValue::Null)
            }
            other => other.clone(),
        };
        let desc = |vals: Vec<ScalarValue>| {
            let mut keyed: Vec<(ScalarValue, ScalarValue)> = vals
                .into_iter()
                .map(|v| (sort_key(&v), v))
                .filter(|(k, _)| !k.is_null())
                .collect();
            keyed.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            keyed.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
        };
        if let Acc::Values(vals) = self {
            let n = call.n.unwrap_or(1);
            return match call.kind {
                AggKind::Min | AggKind::Max => {
                    let pick = vals.iter().filter(|v| !v.is_null()).fold(
                        None,
                        |acc: Option<&ScalarValue>, v| match acc {
                            None => Some(v),
                            Some(a) => {
                                let better = match v.partial_cmp(a) {
                                    Some(std::cmp::Ordering::Less) => call.kind == AggKind::Min,
                                    Some(std::cmp::Ordering::Greater) => call.kind == AggKind::Max,
                                    _ => false,
                                };
                                Some(if better { v } else { a })
                            }
                        },
                    );
                    match pick {
                        Some(v) => Ok(v.clone()),
                        None => ScalarValue::try_from(dt).map_err(eval_err),
                    }
                }
                AggKind::EarliestByOffset | AggKind::LatestByOffset if call.n.is_none() => {
                    let v = if call.kind == AggKind::EarliestByOffset {
                        vals.first()
                    } else {
                        vals.last()
                    };
                    match v {
                        Some(v) => Ok(v.clone()),
                        None => ScalarValue::try_from(dt).map_err(eval_err),
                    }
                }
                AggKind::CollectList => list(vals.clone()),
                AggKind::CollectSet => list(distinct(vals)),
                AggKind::TopK => list(desc(vals.clone()).into_iter().take(n).collect()),
                AggKind::TopKDistinct => list(desc(distinct(vals)).into_iter().take(n).collect()),
                AggKind::EarliestByOffset => list(vals.iter().take(n).cloned().collect()),
                AggKind::LatestByOffset => list(vals[vals.len().saturating_sub(n)..].to_vec()),
                AggKind::CountDistinct => Ok(ScalarValue::Int64(Some(distinct(vals).len() as i64))),
                AggKind::Histogram => {
                    // Counts per distinct value, in first-seen order, keys as text.
                    let mut counts: Vec<(String, i64)> = Vec::new();
                    for v in vals.iter().filter(|v| !v.is_null()) {
                        let k = v.to_string();
                        match counts.iter_mut().find(|(x, _)| *x == k) {
                            Some((_, n)) => *n += 1,
                            None => counts.push((k, 1)),
                        }
                    }
                    let mut b = arrow::array::MapBuilder::new(
                        None,
                        arrow::array::StringBuilder::new(),
                        arrow::array::Int64Builder::new(),
                    );
                    for (k, n) in counts {
                        b.keys().append_value(k);
                        b.values().append_value(n);
                    }
                    b.append(true)?;
                    let map = b.finish();
                    let map = if map.data_type() == dt {
                        Arc::new(map) as ArrayRef
                    } else {
                        cast(&map, dt)?
                    };
                    ScalarValue::try_from_array(&map, 0).map_err(eval_err)
                }
                AggKind::Attr => {
                    let d = distinct(vals);
                    Ok(if d.len() == 1 {
                        d[0].clone()
                    } else {
                        ScalarValue::try_from(dt).map_err(eval_err)?
                    })
                }
                AggKind::Correlation => {
                    // Pearson's r over the pairs with both values; NaN below two pairs.
                    let (mut n, mut sx, mut sy, mut sxy, mut sxx, mut syy) =
                        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
                    for v in vals {
                        let ScalarValue::Struct(s) = v else { continue };
                        let field = |i: usize| {
                            s.column(i)
                                .as_any()
                                .downcast_ref::<arrow::array::Float64Array>()
                                .filter(|a| !a.is_empty() && !a.is_null(0))
                                .map(|a| a.value(0))
                        };
                        let (Some(x), Some(y)) = (field(0), field(1)) else {
                            continue;
                        };
                        n += 1.0;
                        sx += x;
                        sy += y;
                        sxy += x * y;
                        sxx += x * x;
                        syy += y * y;
                    }
                    let r = if n < 2.0 {
                        f64::NAN
                    } else {
                        (n * sxy - sx * sy)
                            / ((n * sxx - sx * sx).sqrt() * (n * syy - sy * sy).sqrt())
                    };
                    Ok(ScalarValue::Float64(Some(r)))
                }
                AggKind::StddevSamp => {
                    let xs: Vec<f64> = vals
                        .iter()
                        .filter_map(|v| match v.cast_to(&DataType::Float64) {
                            Ok(ScalarValue::Float64(Some(f))) => Some(f),
                            _ => None,
                        })
                        .collect();
                    if xs.len() < 2 {
                        return Ok(ScalarValue::Float64(Some(0.0)));
                    }
                    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
                    let var =
                        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
                    Ok(ScalarValue::Float64(Some(var.sqrt())))
                }
                _ => Err(RuntimeError::Eval("unexpected aggregate state".into())),
            };
        }
        Ok(match self {
            Acc::Count(n) => ScalarValue::Int64(Some(*n)),
            Acc::Sum(s) | Acc::MinMax(s) | Acc::ByOffset(s) => s.clone(),
            Acc::Avg(sum, n) => {
                if *n == 0 {
                    ScalarValue::Float64(None)
                } else {
                    ScalarValue::Float64(Some(sum / *n as f64))
                }
            }
            Acc::Values(_) => ScalarValue::Null,
            Acc::Udaf(state) => udaf_of(call)?.function.map(state).map_err(udaf_err)?,
        })
    }
}

struct Group {
    accs: Vec<Acc>,
    /// Whether the key's row has been emitted (and so needs a tombstone if HAVING drops it).
    emitted: bool,
    /// The newest record time of a window's rows: its result's ROWTIME, as Kafka Streams
    /// stamps windowed aggregates (a session's end; `i64::MIN` for unwindowed groups).
    max_ts: i64,
    /// The input partition whose stream time closes this window (see [`StreamTimes`]).
    lane: i32,
}

/// Stream time per input partition. Kafka Streams runs a task per input partition, and a
/// task's stream time is the largest record timestamp *that task* has seen: a record is
/// late, and a window closes, against the stream time of its own partition, never against
/// another partition that was read further ahead.
///
/// Which partition: the record's source partition (ROWPARTITION), read from a column the
/// batch already has. When a query groups by the source's key (and always for a join,
/// whose inputs are co-partitioned) that is exactly ksqlDB's task. When a GROUP BY
/// repartitions, ksqlDB's task is the repartition topic's partition the group key hashes
/// to (`murmur2(serialized key) % partitions`), whose stream time mixes all source
/// partitions in whatever order the source tasks happened to write it: not deterministic,
/// and it drops records only because another source partition was read further ahead,
/// which per-partition stream time exists to avoid. Hashing the serialized group key would
/// also cost a key encoding per row (and the input's partition count, which the operator
/// does not know). So Brook keeps the source partition there too, with one rule that
/// keeps a window in one place: a window belongs to the partition of the record that
/// opened it, and later records of that window count toward that partition (see
/// `AggregateOperator::lane_for`), since Brook keeps one window per group where Kafka
/// Streams would keep one per task.
#[derive(Debug, Clone)]
pub(crate) struct StreamTimes {
    times: BTreeMap<i32, i64>,
    /// The one stream time of a changelog written before stream time was kept per
    /// partition: where a partition not seen since starts (`i64::MIN`: nothing seen).
    base: i64,
}

impl Default for StreamTimes {
    fn default() -> Self {
        StreamTimes {
            times: BTreeMap::new(),
            base: i64::MIN,
        }
    }
}

impl StreamTimes {
    /// The stream time of partition `p` (`i64::MIN` before its first record).
    pub(crate) fn get(&self, p: i32) -> i64 {
        self.times.get(&p).copied().unwrap_or(self.base)
    }

    /// A record of partition `p` at `ts`; whether that moved its stream time on.
    pub(crate) fn observe(&mut self, p: i32, ts: i64) -> bool {
        if ts > self.get(p) {
            self.times.insert(p, ts);
            return true;
        }
        false
    }

    /// The time of a partition not seen yet (see `base`).
    pub(crate) fn base(&self) -> i64 {
        self.base
    }

    /// Whether any partition has a stream time yet.
    pub(crate) fn any(&self) -> bool {
        self.base != i64::MIN || self.times.values().any(|t| *t != i64::MIN)
    }

    /// The partitions with a stream time of their own.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.times.keys().copied()
    }

    /// The largest stream time over all partitions.
    pub(crate) fn max(&self) -> i64 {
        self.times.values().copied().fold(self.base, i64::max)
    }

    /// Every partition's stream time moves on by `by` (an idle input, see `on_idle`).
    pub(crate) fn advance_all(&mut self, by: i64) {
        for t in self
            .times
            .values_mut()
            .chain(std::iter::once(&mut self.base))
        {
            if *t != i64::MIN {
                *t = t.saturating_add(by);
            }
        }
    }

    /// Writes the per-partition times after whatever the entry starts with.
    pub(crate) fn write_partitions(&self, w: &mut Writer) {
        w.u32(self.times.len() as u32);
        for (p, t) in &self.times {
            w.u32(*p as u32);
            w.i64(*t);
        }
    }

    /// Reads what [`StreamTimes::write_partitions`] wrote; `base` is the entry's single
    /// time (all an entry written before per-partition times holds).
    pub(crate) fn read(base: i64, r: &mut Reader<'_>, more: bool) -> Result<StreamTimes> {
        let mut times = BTreeMap::new();
        if more {
            let n = r.u32()?;
            for _ in 0..n {
                let p = r.u32()? as i32;
                times.insert(p, r.i64()?);
            }
        }
        Ok(StreamTimes { times, base })
    }
}

/// The input partition of a row (its ROWPARTITION; 0 when the column is missing).
pub(crate) fn partition_of(batch: &RecordBatch, row: usize) -> i32 {
    batch
        .columns()
        .get(1)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int32Array>())
        .filter(|a| row < a.len() && !a.is_null(row))
        .map(|a| a.value(row))
        .unwrap_or(0)
}

/// EMIT FINAL's progress in one partition (Kafka Streams keeps it per task).
#[derive(Debug, Clone, Copy)]
struct EmitState {
    /// The window close time of the last emission pass (Kafka Streams'
    /// `lastEmitWindowCloseTime`); the next pass emits the windows closed since.
    last: Option<i64>,
    /// Time windows: the newest window start stored; windows starting a retention period
    /// before it have left Kafka Streams' window store unemitted.
    max_start: i64,
}

impl Default for EmitState {
    fn default() -> Self {
        EmitState {
            last: None,
            max_start: i64::MIN,
        }
    }
}

/// Windows in time order (time windows by start, sessions by end), per partition.
type WindowIndex = BTreeMap<i32, BTreeMap<i64, Vec<Vec<ScalarValue>>>>;

pub struct AggregateOperator {
    plan: AggregatePlan,
    agg_types: Vec<DataType>,
    output_schema: SchemaRef,
    state: FastMap<Vec<ScalarValue>, Group>,
    /// The largest ROWTIME seen per input partition: windows that ended a grace period
    /// before their partition's stream time are closed.
    times: StreamTimes,
    /// Over a table: each source key's current row (that passed WHERE), to retract.
    previous: FastMap<Vec<ScalarValue>, RecordBatch>,
    /// Session windows: each group's open sessions as (start, end).
    sessions: FastMap<Vec<ScalarValue>, Vec<(i64, i64)>>,
    /// Entries changed since the changelog last took them: (namespace, key).
    dirty: Dirty,
    /// Rows emitted by the batch being processed.
    pending: Pending,
    /// Every window in `state`, per partition, for closing them in time order: time
    /// windows by start, sessions by end (a session's entry goes stale when it grows or
    /// merges; an entry counts only while `sessions` still holds that span). Closed windows
    /// leave `state`, so it stays bounded by the windows still open.
    windows: WindowIndex,
    /// EMIT FINAL's progress per partition, and that of a changelog written before it was
    /// kept per partition (where a partition without its own starts).
    emits: BTreeMap<i32, EmitState>,
    emit_base: EmitState,
    /// Each partition's last input row, whose ROWPARTITION and ROWOFFSET rows emitted on
    /// idle carry.
    last_rows: BTreeMap<i32, RecordBatch>,
    /// Records dropped as late (every window they fall in had closed); shared with the
    /// pipeline, which reports them (the `Operator` trait has no say in this).
    late: Arc<AtomicU64>,
    /// Rows an expression failed on, until [`Operator::take_row_errors`].
    errors: Vec<RowError>,
}

/// Changelog namespaces of the aggregation's maps.
const NS_GROUP: u8 = b'g';
const NS_PREVIOUS: u8 = b'p';
const NS_SESSIONS: u8 = b's';
const NS_TIME: u8 = b't';
const NS_EMIT: u8 = b'e';

impl AggregateOperator {
    pub fn new(plan: AggregatePlan, types: &dyn TypeRegistry) -> Result<Self> {
        let plan_err = |e: brook_planner::PlanError| RuntimeError::Plan(e.to_string());
        let agg_types = plan
            .aggs
            .iter()
            .map(|a| arrow_type(&a.result_type, types).map_err(plan_err))
            .collect::<Result<Vec<_>>>()?;
        let row = plan
            .output
            .row_schema(plan.window.is_some(), types)
            .map_err(plan_err)?;
        let mut fields: Vec<Field> = row.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(TOMBSTONE, DataType::Boolean, false));
        Ok(AggregateOperator {
            plan,
            agg_types,
            output_schema: Arc::new(Schema::new(fields)),
            state: FastMap::default(),
            times: StreamTimes::default(),
            previous: FastMap::default(),
            sessions: FastMap::default(),
            dirty: Dirty::default(),
            pending: Pending::default(),
            windows: BTreeMap::new(),
            emits: BTreeMap::new(),
            emit_base: EmitState::default(),
            last_rows: BTreeMap::new(),
            late: Arc::new(AtomicU64::new(0)),
            errors: Vec::new(),
        })
    }

    /// The count of records dropped as late, which the pipeline reads and resets.
    pub fn late_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.late)
    }

    fn count_late(&self) {
        self.late.fetch_add(1, Ordering::Relaxed);
    }

    fn emit_state(&self, lane: i32) -> EmitState {
        self.emits.get(&lane).copied().unwrap_or(self.emit_base)
    }

    fn set_emit_state(&mut self, lane: i32, e: EmitState) {
        self.emits.insert(lane, e);
        self.dirty.mark(NS_EMIT, &[]);
    }

    /// The partition whose stream time a row of group `keys` at `ts` goes by: that of an
    /// open window of the group the row falls in (a session window: any open session of
    /// the group), else the row's own. Brook keeps one window per group where Kafka Streams
    /// keeps one per task, so a window belongs to one partition, the one its first record
    /// came from; a group's records normally all come from one partition (the one its key
    /// hashes to), and then this is simply the row's partition.
    fn lane_for(&self, keys: &[ScalarValue], ts: i64, own: i32) -> i32 {
        let Some(w) = self.plan.window else {
            return own;
        };
        let lane_of = |start: i64| {
            let mut k = keys.to_vec();
            k.push(ScalarValue::Int64(Some(start)));
            self.state.get(&k).map(|g| g.lane)
        };
        if w.is_session() {
            return self
                .sessions
                .get(keys)
                .and_then(|spans| spans.iter().find_map(|(s, _)| lane_of(*s)))
                .unwrap_or(own);
        }
        let mut start = ts - ts.rem_euclid(w.advance_ms);
        while start > ts - w.size_ms && start >= 0 {
            if let Some(lane) = lane_of(start) {
                return lane;
            }
            start -= w.advance_ms;
        }
        own
    }

    /// Files a window under its partition, at `at` (a time window's start, a session's
    /// end).
    fn index_window(&mut self, lane: i32, at: i64, keys: Vec<ScalarValue>) {
        self.windows
            .entry(lane)
            .or_default()
            .entry(at)
            .or_default()
            .push(keys);
    }

    fn emit_row(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        keys: &[ScalarValue],
        window: Option<(i64, i64)>,
    ) -> Result<()> {
        self.emit(batch, row, keys, window, None)
    }

    /// Emits a group's row; `retired` (a merged-away session, with its own timestamp)
    /// emits its tombstone instead. The row is only recorded here: `flush` builds all of a
    /// batch's rows at once, because one RecordBatch (and one projection) per update cost
    /// far more than the update itself.
    fn emit(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        keys: &[ScalarValue],
        window: Option<(i64, i64)>,
        retired: Option<i64>,
    ) -> Result<()> {
        let Some(group) = self.state.get(keys) else {
            return Ok(());
        };
        let rowtime = match retired {
            Some(ts) => ts,
            None if group.max_ts != i64::MIN => group.max_ts,
            None => batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(row))
                .unwrap_or(0),
        };
        let group_keys = if window.is_some() {
            &keys[..keys.len() - 1]
        } else {
            keys
        };
        let mut values = Vec::with_capacity(group.accs.len());
        for ((acc, dt), call) in group.accs.iter().zip(&self.agg_types).zip(&self.plan.aggs) {
            let v = acc.value(call, dt)?;
            values.push(if v.data_type() == *dt {
                v
            } else {
                v.cast_to(dt).map_err(eval_err)?
            });
        }
        // HAVING decides per update whether the key's row exists, and the next update of
        // the same key depends on that: it is evaluated row by row, the rest is batched.
        let passes = match &self.plan.having {
            None => true,
            Some(h) => {
                let mut cols: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(vec![rowtime])),
                    batch.column(1).slice(row, 1),
                    batch.column(2).slice(row, 1),
                ];
                if let Some((start, end)) = window {
                    cols.push(Arc::new(Int64Array::from(vec![start])));
                    cols.push(Arc::new(Int64Array::from(vec![end])));
                }
                for v in group_keys.iter().chain(&values) {
                    cols.push(v.to_array().map_err(eval_err)?);
                }
                let agg_row = RecordBatch::try_new(self.plan.agg_schema.clone(), cols)?;
                let v = eval::predicate(h, &agg_row, &mut self.errors)?;
                !v.is_null(0) && v.value(0)
            }
        };
        if retired.is_some() && !group.emitted {
            return Ok(());
        }
        let passes = passes && retired.is_none();
        if !passes && !group.emitted {
            return Ok(());
        }
        if let Some(group) = self.state.get_mut(keys) {
            group.emitted = passes;
        }
        self.dirty.mark(NS_GROUP, keys);
        self.pending
            .push(batch, row, rowtime, window, group_keys, values, passes);
        Ok(())
    }

    /// Builds the rows `emit` recorded into one output batch.
    fn flush(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.pending.rowtime.is_empty() {
            return Ok(());
        }
        let p = std::mem::take(&mut self.pending);
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(p.rowtime))];
        for c in [1, 2] {
            let arrays: Vec<&dyn Array> = p.batches.iter().map(|b| b.column(c).as_ref()).collect();
            cols.push(interleave(&arrays, &p.sources)?);
        }
        if self.plan.window.is_some() {
            cols.push(Arc::new(Int64Array::from(p.starts)));
            cols.push(Arc::new(Int64Array::from(p.ends)));
        }
        for values in p.keys.into_iter().chain(p.aggs) {
            cols.push(ScalarValue::iter_to_array(values).map_err(eval_err)?);
        }
        let agg_rows = RecordBatch::try_new(self.plan.agg_schema.clone(), cols)?;
        let rows = agg_rows.num_rows();
        let pseudo = if self.plan.window.is_some() { 5 } else { 3 };
        let mut out_cols: Vec<ArrayRef> = agg_rows.columns()[..pseudo].to_vec();
        let all_pass = p.passes.iter().all(|p| *p);
        let passes = BooleanArray::from(p.passes);
        // A tombstone's value columns are NULL, and are not computed: its aggregates may
        // not satisfy what the projection assumes.
        let passing = if all_pass {
            None
        } else {
            Some(filter_record_batch(&agg_rows, &passes)?)
        };
        for (i, proj) in self.plan.projections.iter().enumerate() {
            let want = self.output_schema.field(pseudo + i).data_type();
            let purpose = Purpose::Column(&proj.column.name, i);
            let errors = &mut self.errors;
            let mut eval = |b: &RecordBatch| -> Result<ArrayRef> {
                let a = eval::evaluate(&proj.expr, b, purpose, errors)?;
                Ok(if a.data_type() == want {
                    a
                } else {
                    cast(&a, want)?
                })
            };
            let a = match &passing {
                Some(passing) if proj.column.namespace != brook_planner::schema::Namespace::Key => {
                    let values = eval(passing)?;
                    let nulls = arrow::array::new_null_array(want, 1);
                    let mut next = 0;
                    let indices: Vec<(usize, usize)> = passes
                        .iter()
                        .map(|p| {
                            if p == Some(true) {
                                next += 1;
                                (0, next - 1)
                            } else {
                                (1, 0)
                            }
                        })
                        .collect();
                    interleave(&[values.as_ref(), nulls.as_ref()], &indices)?
                }
                _ => eval(&agg_rows)?,
            };
            debug_assert_eq!(a.len(), rows);
            out_cols.push(a);
        }
        out_cols.push(Arc::new(arrow::compute::not(&passes)?));
        out.push(RecordBatch::try_new(self.output_schema.clone(), out_cols)?);
        Ok(())
    }
}

/// Output rows recorded by `emit`, column by column, until `flush`.
#[derive(Default)]
struct Pending {
    /// The input batches the rows came from, and per row (batch, row): ROWPARTITION and
    /// ROWOFFSET are taken from there.
    batches: Vec<RecordBatch>,
    sources: Vec<(usize, usize)>,
    rowtime: Vec<i64>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Per GROUP BY column, then per aggregate: one value per row.
    keys: Vec<Vec<ScalarValue>>,
    aggs: Vec<Vec<ScalarValue>>,
    passes: Vec<bool>,
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        rowtime: i64,
        window: Option<(i64, i64)>,
        keys: &[ScalarValue],
        aggs: Vec<ScalarValue>,
        passes: bool,
    ) {
        let same = self.batches.last().is_some_and(|b| {
            b.num_rows() == batch.num_rows() && Arc::ptr_eq(b.column(0), batch.column(0))
        });
        if !same {
            self.batches.push(batch.clone());
        }
        self.sources.push((self.batches.len() - 1, row));
        self.rowtime.push(rowtime);
        if let Some((start, end)) = window {
            self.starts.push(start);
            self.ends.push(end);
        }
        if self.keys.is_empty() {
            self.keys = vec![Vec::new(); keys.len()];
            self.aggs = vec![Vec::new(); aggs.len()];
        }
        for (col, k) in self.keys.iter_mut().zip(keys) {
            col.push(k.clone());
        }
        for (col, v) in self.aggs.iter_mut().zip(aggs) {
            col.push(v);
        }
        self.passes.push(passes);
    }
}

impl AggregateOperator {
    fn source_key(&self, batch: &RecordBatch, row: usize) -> Result<Option<Vec<ScalarValue>>> {
        let Some(idx) = &self.plan.retract_by else {
            return Ok(None);
        };
        idx.iter()
            .map(|i| ScalarValue::try_from_array(batch.column(*i), row).map_err(eval_err))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Undoes a table key's previous row, emitting its group's new state.
    /// Undoes a table key's previous row and returns its group; the caller emits the
    /// group's row, unless the new row lands in the same group (then ksqlDB, as Kafka
    /// Streams' table aggregation, emits once, after both).
    fn retract(&mut self, source_key: &[ScalarValue]) -> Result<Option<Vec<ScalarValue>>> {
        let Some(old) = self.previous.remove(source_key) else {
            return Ok(None);
        };
        self.dirty.mark(NS_PREVIOUS, source_key);
        // Failures on the old row were logged when it arrived; they are not logged again.
        let mut logged = Vec::new();
        let keys: Vec<ScalarValue> = self
            .plan
            .group_by
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let a = eval::evaluate(g, &old, Purpose::GroupBy(i), &mut logged)?;
                ScalarValue::try_from_array(&a, 0).map_err(eval_err)
            })
            .collect::<Result<_>>()?;
        if keys.iter().any(ScalarValue::is_null) {
            return Ok(None);
        }
        let args = eval_args(&self.plan.aggs, &old, &mut logged)?
            .iter()
            .map(|cols| row_args(cols, 0))
            .collect::<Result<Vec<_>>>()?;
        if let Some(group) = self.state.get_mut(&keys) {
            for ((acc, call), v) in group.accs.iter_mut().zip(&self.plan.aggs).zip(args) {
                acc.take_back(call, v)?;
            }
            self.dirty.mark(NS_GROUP, &keys);
        }
        Ok(Some(keys))
    }

    /// A table's deleted rows: their contributions are taken back.
    pub fn delete(&mut self, batch: &RecordBatch) -> Result<()> {
        for row in 0..batch.num_rows() {
            if let Some(k) = self.source_key(batch, row)? {
                if let Some(old) = self.retract(&k)? {
                    self.emit_row(batch, row, &old, None)?;
                }
            }
        }
        Ok(())
    }
}

impl AggregateOperator {
    /// Session windows (Kafka Streams' rules): the row's session absorbs every session of
    /// its group within the gap; each absorbed session leaves as a tombstone first.
    #[allow(clippy::too_many_arguments)]
    fn session_row(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        keys: Vec<ScalarValue>,
        ts: i64,
        w: brook_planner::aggregate::WindowPlan,
        arg_cols: &[Vec<ArrayRef>],
        lane: i32,
    ) -> Result<()> {
        let gap = w.size_ms;
        // Sessions that ended longer ago than gap + grace (by the stream time of the row's
        // partition) have expired from the store.
        let expiry = self.times.get(lane).saturating_sub(w.grace_ms + gap);
        let all = self.sessions.get(&keys).cloned().unwrap_or_default();
        let (list, expired): (Vec<Span>, Vec<Span>) =
            all.into_iter().partition(|(_, e)| *e >= expiry);
        for (s, _) in expired {
            let mut k = keys.clone();
            k.push(ScalarValue::Int64(Some(s)));
            self.state.remove(&k);
            self.dirty.mark(NS_GROUP, &k);
        }
        let (mut merging, keep): (Vec<Span>, Vec<Span>) = list
            .into_iter()
            .partition(|(s, e)| *e + gap >= ts && *s - gap <= ts);
        let start = merging.iter().map(|m| m.0).min().unwrap_or(ts).min(ts);
        let end = merging.iter().map(|m| m.1).max().unwrap_or(ts).max(ts);
        if end < expiry {
            // Late: its session closed a grace period ago.
            self.count_late();
            return Ok(());
        }
        let aggs = self.plan.aggs.clone();
        let mut accs = aggs
            .iter()
            .zip(&self.agg_types)
            .map(|(a, dt)| Acc::new(a, dt, false))
            .collect::<Result<Vec<_>>>()?;
        merging.sort();
        let grown = merging.as_slice() != [(start, end)];
        for (s, e) in &merging {
            let mut k = keys.clone();
            k.push(ScalarValue::Int64(Some(*s)));
            if !self.plan.emit_final {
                self.emit(batch, row, &k, Some((*s, *e)), Some(*e))?;
            }
            if let Some(g) = self.state.remove(&k) {
                for ((a, b), call) in accs.iter_mut().zip(&g.accs).zip(&aggs) {
                    a.merge(b, call)?;
                }
            }
            self.dirty.mark(NS_GROUP, &k);
        }
        for ((acc, call), cols) in accs.iter_mut().zip(&aggs).zip(arg_cols) {
            acc.add(call, row_args(cols, row)?)?;
        }
        let mut k = keys.clone();
        k.push(ScalarValue::Int64(Some(start)));
        // Kafka Streams stamps a session's result with the session's end (its newest
        // record), also when a late record merges sessions.
        self.state.insert(
            k.clone(),
            Group {
                accs,
                emitted: false,
                max_ts: end,
                lane,
            },
        );
        let mut list = keep;
        list.push((start, end));
        self.dirty.mark(NS_GROUP, &k);
        self.dirty.mark(NS_SESSIONS, &keys);
        self.sessions.insert(keys, list);
        if grown {
            self.index_window(lane, end, k.clone());
        }
        if self.plan.emit_final {
            return Ok(());
        }
        self.emit(batch, row, &k, Some((start, end)), None)
    }
}

impl Operator for AggregateOperator {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn process_deletes(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let deleted = self.delete(&batch);
        self.flush(out)?;
        deleted
    }

    fn stateful(&self) -> bool {
        true
    }

    fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for (ns, keys) in self.dirty.take() {
            let key = scalar_key(ns, &keys)?;
            let value = match ns {
                NS_GROUP => self.state.get(&keys).map(encode_group).transpose()?,
                NS_PREVIOUS => match self.previous.get(&keys) {
                    Some(b) => {
                        let mut w = Writer::default();
                        w.batch(b)?;
                        Some(w.buf)
                    }
                    None => None,
                },
                NS_SESSIONS => self.sessions.get(&keys).map(|spans| {
                    let mut w = Writer::default();
                    w.u32(spans.len() as u32);
                    for (s, e) in spans {
                        w.i64(*s);
                        w.i64(*e);
                    }
                    w.buf
                }),
                // The base state first: all an entry written before EMIT FINAL's progress
                // was kept per partition holds.
                NS_EMIT => {
                    let mut w = Writer::default();
                    w.i64(self.emit_base.last.unwrap_or(i64::MIN));
                    w.i64(self.emit_base.max_start);
                    w.u32(self.emits.len() as u32);
                    for (p, e) in &self.emits {
                        w.u32(*p as u32);
                        w.i64(e.last.unwrap_or(i64::MIN));
                        w.i64(e.max_start);
                    }
                    Some(w.buf)
                }
                _ => {
                    let mut w = Writer::default();
                    w.i64(self.times.base);
                    self.times.write_partitions(&mut w);
                    Some(w.buf)
                }
            };
            out.push(StateChange { key, value });
        }
        Ok(())
    }

    fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (ns, keys) = read_scalar_key(key)?;
        let mut r = Reader::new(value);
        match ns {
            NS_GROUP => {
                let group = decode_group(&mut r)?;
                // Windows are indexed from their group entries (a session's by its end, its
                // newest record time; stale spans are skipped when closing).
                match self.plan.window {
                    Some(w) if w.is_session() => {
                        self.index_window(group.lane, group.max_ts, keys.clone())
                    }
                    Some(_) => {
                        if let Some(ScalarValue::Int64(Some(start))) = keys.last() {
                            self.index_window(group.lane, *start, keys.clone());
                        }
                    }
                    None => {}
                }
                self.state.insert(keys, group);
            }
            NS_PREVIOUS => {
                self.previous.insert(keys, r.batch()?);
            }
            NS_SESSIONS => {
                let n = r.u32()?;
                let spans = (0..n)
                    .map(|_| Ok((r.i64()?, r.i64()?)))
                    .collect::<Result<Vec<_>>>()?;
                self.sessions.insert(keys, spans);
            }
            // A single time (8 bytes) is an entry written before stream time was kept per
            // partition: it becomes every partition's starting point.
            NS_TIME => {
                let base = r.i64()?;
                self.times = StreamTimes::read(base, &mut r, value.len() > 8)?;
            }
            NS_EMIT => {
                let state = |last: i64, max_start: i64| EmitState {
                    last: (last != i64::MIN).then_some(last),
                    max_start,
                };
                self.emit_base = state(r.i64()?, r.i64()?);
                self.emits.clear();
                // Two values (16 bytes): an entry from before per-partition progress.
                if value.len() > 16 {
                    let n = r.u32()?;
                    for _ in 0..n {
                        let p = r.u32()? as i32;
                        let e = state(r.i64()?, r.i64()?);
                        self.emits.insert(p, e);
                    }
                }
            }
            _ => {
                return Err(RuntimeError::State(format!(
                    "unknown aggregation state namespace {ns}"
                )))
            }
        }
        Ok(())
    }

    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        // Rows emitted before an error still leave, as they did when each left at once.
        let processed = self.process_rows(batch);
        self.flush(out)?;
        processed
    }

    fn take_row_errors(&mut self, out: &mut Vec<RowError>) {
        out.append(&mut self.errors);
    }

    fn idle_timeout_ms(&self) -> Option<u64> {
        (self.plan.emit_final && self.plan.window.is_some() && self.plan.idle_timeout_ms > 0)
            .then_some(self.plan.idle_timeout_ms)
    }

    fn on_idle(&mut self, elapsed_ms: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        // Nothing seen yet: there is no stream time to move on from.
        if !self.plan.emit_final || !self.times.any() || elapsed_ms <= 0 {
            return Ok(());
        }
        // Every partition's stream time moves on, and every partition's windows close.
        self.times.advance_all(elapsed_ms);
        self.dirty.mark(NS_TIME, &[]);
        let lanes: BTreeSet<i32> = self
            .times
            .partitions()
            .chain(self.windows.keys().copied())
            .collect();
        let mut closed = Ok(());
        for lane in lanes {
            let at = match self.last_rows.get(&lane) {
                Some(b) => b.clone(),
                None => self.placeholder_row(lane)?,
            };
            closed = self.close_windows(lane, &at, 0);
            if closed.is_err() {
                break;
            }
        }
        self.flush(out)?;
        closed
    }
}

impl AggregateOperator {
    fn process_rows(&mut self, batch: RecordBatch) -> Result<()> {
        // Over a table, every incoming row first takes its key's previous row back: a
        // batch may update one key twice, so a table's rows go one at a time.
        if self.plan.retract_by.is_some() && batch.num_rows() > 1 {
            for row in 0..batch.num_rows() {
                self.process_rows(batch.slice(row, 1))?;
            }
            return Ok(());
        }
        // The group the row's previous version left, emitted before the new version's
        // group unless that is the same group.
        let mut retracted = None;
        if self.plan.retract_by.is_some() && batch.num_rows() == 1 {
            if let Some(k) = self.source_key(&batch, 0)? {
                retracted = self.retract(&k)?.map(|old| (old, batch.clone()));
            }
        }
        self.add_rows(batch, &mut retracted)?;
        if let Some((old, at)) = retracted {
            self.emit_row(&at, 0, &old, None)?;
        }
        Ok(())
    }

    fn add_rows(
        &mut self,
        batch: RecordBatch,
        retracted: &mut Option<(Vec<ScalarValue>, RecordBatch)>,
    ) -> Result<()> {
        let batch = match &self.plan.filter {
            None => batch,
            Some(f) => {
                let mask = eval::predicate(f, &batch, &mut self.errors)?;
                filter_record_batch(&batch, &mask)?
            }
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        // A GROUP BY expression that fails on a row makes its key NULL: the row is left
        // out below, as ksqlDB excludes it.
        let group_cols: Vec<ArrayRef> = self
            .plan
            .group_by
            .iter()
            .enumerate()
            .map(|(i, g)| eval::evaluate(g, &batch, Purpose::GroupBy(i), &mut self.errors))
            .collect::<Result<_>>()?;
        let arg_cols = eval_args(&self.plan.aggs, &batch, &mut self.errors)?;
        // EMIT FINAL: each partition's last row in this batch (kept for `on_idle`); one
        // slice per partition and batch rather than one per row.
        let mut last_of: Vec<(i32, usize)> = Vec::new();
        for row in 0..rows {
            if let Some(k) = self.source_key(&batch, row)? {
                self.dirty.mark(NS_PREVIOUS, &k);
                self.previous.insert(k, owned_row(&batch, row)?);
            }
            let keys: Vec<ScalarValue> = group_cols
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<std::result::Result<_, _>>()
                .map_err(eval_err)?;
            // ksqlDB drops rows whose grouping expression is NULL.
            if keys.iter().any(ScalarValue::is_null) {
                continue;
            }
            if let Some((old, at)) = retracted.take() {
                if old != keys {
                    self.emit_row(&at, 0, &old, None)?;
                }
            }
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .map(|a| a.value(row))
                .unwrap_or(0);
            // Lateness and closing go by the stream time of the row's partition (or that
            // of the open window it joins, see `lane_for`).
            let lane = self.lane_for(&keys, ts, partition_of(&batch, row));
            if self.plan.window.is_some() {
                if self.times.observe(lane, ts) {
                    self.dirty.mark(NS_TIME, &[]);
                }
                if self.plan.emit_final {
                    match last_of.iter_mut().find(|(l, _)| *l == lane) {
                        Some(last) => last.1 = row,
                        None => last_of.push((lane, row)),
                    }
                }
            }
            // The windows this row falls in (one for tumbling, size/advance for hopping),
            // oldest first, less those already closed.
            if let Some(w) = self.plan.window.filter(|w| w.is_session()) {
                // Sessions that closed go (emitted first under EMIT FINAL) before the row
                // looks for sessions to merge with.
                self.close_windows(lane, &batch, row)?;
                self.session_row(&batch, row, keys, ts, w, &arg_cols, lane)?;
                continue;
            }
            let windows: Vec<Option<(i64, i64)>> = match self.plan.window {
                None => vec![None],
                Some(w) => {
                    let time = self.times.get(lane);
                    let last = ts - ts.rem_euclid(w.advance_ms);
                    let mut starts = Vec::new();
                    let mut s = last;
                    while s > ts - w.size_ms {
                        if s >= 0 {
                            starts.push(s);
                        }
                        s -= w.advance_ms;
                    }
                    starts.reverse();
                    let any = !starts.is_empty();
                    let open: Vec<Option<(i64, i64)>> = starts
                        .into_iter()
                        .filter(|s| s + w.size_ms + w.grace_ms > time)
                        .map(|s| Some((s, s + w.size_ms)))
                        .collect();
                    // Every window the record falls in has closed: it is dropped as late
                    // (a hopping record some of whose windows are still open is not).
                    if any && open.is_empty() {
                        self.count_late();
                    }
                    open
                }
            };
            for window in windows {
                let mut keys = keys.clone();
                if let Some((start, _)) = window {
                    keys.push(ScalarValue::Int64(Some(start)));
                }
                self.dirty.mark(NS_GROUP, &keys);
                if !self.state.contains_key(&keys) {
                    let accs = self
                        .plan
                        .aggs
                        .iter()
                        .zip(&self.agg_types)
                        .map(|(a, dt)| Acc::new(a, dt, self.plan.retract_by.is_some()))
                        .collect::<Result<Vec<_>>>()?;
                    let group = Group {
                        accs,
                        emitted: false,
                        max_ts: i64::MIN,
                        lane,
                    };
                    self.state.insert(keys.clone(), group);
                    if let Some((start, _)) = window {
                        self.index_window(lane, start, keys.clone());
                        let e = self.emit_state(lane);
                        if self.plan.emit_final && start > e.max_start {
                            self.set_emit_state(
                                lane,
                                EmitState {
                                    max_start: start,
                                    ..e
                                },
                            );
                        }
                    }
                }
                let Some(group) = self.state.get_mut(&keys) else {
                    continue;
                };
                if window.is_some() {
                    group.max_ts = group.max_ts.max(ts);
                }
                for ((acc, call), cols) in group.accs.iter_mut().zip(&self.plan.aggs).zip(&arg_cols)
                {
                    acc.add(call, row_args(cols, row)?)?;
                }
                if !self.plan.emit_final {
                    self.emit_row(&batch, row, &keys, window)?;
                }
            }
            self.close_windows(lane, &batch, row)?;
        }
        for (lane, row) in last_of {
            self.last_rows.insert(lane, batch.slice(row, 1));
        }
        Ok(())
    }
}

/// The (first, last) start of the windows holding `t` (Kafka Streams' `windowsFor`).
fn windows_for(t: i64, size: i64, advance: i64) -> (i64, i64) {
    let first = (t - size + advance).max(0) / advance * advance;
    (first, t - t.rem_euclid(advance))
}

fn cmp_keys(a: &[ScalarValue], b: &[ScalarValue]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

impl AggregateOperator {
    /// Drops the windows that closed (end + grace passed by stream time); under EMIT FINAL
    /// each is emitted first, as Kafka Streams' emit-on-window-close does: one pass per
    /// advance of the close time, over the windows closed since the last pass, in window
    /// order, less those that fell out of the store's retention. `at` is the row that
    /// moved stream time on (its ROWPARTITION and ROWOFFSET go with the emitted rows).
    /// Only partition `lane`'s windows, by its stream time and its emission progress.
    fn close_windows(&mut self, lane: i32, at: &RecordBatch, row: usize) -> Result<()> {
        let Some(w) = self.plan.window else {
            return Ok(());
        };
        let time = self.times.get(lane);
        if time == i64::MIN {
            return Ok(());
        }
        if w.is_session() {
            return self.close_sessions(lane, at, row, w);
        }
        let close = time.saturating_sub(w.grace_ms);
        // Windows starting at or before `upper` have ended by the close time.
        let upper = close.saturating_sub(w.size_ms);
        let mut emit_from = None;
        let e = self.emit_state(lane);
        if self.plan.emit_final && e.last.is_none_or(|l| l < close) && upper >= 0 {
            let lower = match e.last {
                None => 0,
                Some(l) => l.saturating_sub(w.size_ms).max(0) + 1,
            };
            // A pass that finds no new window leaves the last close time as it was.
            let new_windows = e.last.is_none()
                || windows_for(lower - 1, w.size_ms, w.advance_ms)
                    != windows_for(upper, w.size_ms, w.advance_ms);
            if new_windows {
                emit_from = Some(lower.max(e.max_start.saturating_sub(w.retention_ms)));
                self.set_emit_state(
                    lane,
                    EmitState {
                        last: Some(close),
                        ..e
                    },
                );
            }
        }
        while let Some(entry) = self.windows.get_mut(&lane).and_then(|i| i.first_entry()) {
            if *entry.key() > upper {
                break;
            }
            let (start, mut keys) = entry.remove_entry();
            if emit_from.is_some_and(|from| start >= from) {
                keys.sort_by(|a, b| cmp_keys(a, b));
                for k in &keys {
                    self.emit(at, row, k, Some((start, start + w.size_ms)), None)?;
                }
            }
            for k in keys {
                self.state.remove(&k);
                self.dirty.mark(NS_GROUP, &k);
            }
        }
        Ok(())
    }

    /// Sessions whose end is a gap and grace before stream time are closed: emitted under
    /// EMIT FINAL (stamped with their end), then dropped.
    fn close_sessions(
        &mut self,
        lane: i32,
        at: &RecordBatch,
        row: usize,
        w: brook_planner::aggregate::WindowPlan,
    ) -> Result<()> {
        let close = self
            .times
            .get(lane)
            .saturating_sub(w.grace_ms)
            .saturating_sub(w.size_ms);
        let e = self.emit_state(lane);
        let emitting = self.plan.emit_final && e.last.is_none_or(|l| l < close);
        if emitting && close > 0 {
            self.set_emit_state(
                lane,
                EmitState {
                    last: Some(close),
                    ..e
                },
            );
        }
        while let Some(entry) = self.windows.get_mut(&lane).and_then(|i| i.first_entry()) {
            if *entry.key() >= close {
                break;
            }
            let (end, mut keys) = entry.remove_entry();
            keys.sort_by(|a, b| cmp_keys(a, b));
            keys.dedup();
            for k in keys {
                let Some((ScalarValue::Int64(Some(start)), group)) = k.split_last() else {
                    continue;
                };
                let start = *start;
                // A stale entry: the session grew or merged since.
                let live = self
                    .sessions
                    .get(group)
                    .is_some_and(|l| l.contains(&(start, end)));
                if !live {
                    continue;
                }
                if emitting && end >= 0 {
                    self.emit(at, row, &k, Some((start, end)), None)?;
                }
                let group = group.to_vec();
                if let Some(list) = self.sessions.get_mut(&group) {
                    list.retain(|span| *span != (start, end));
                    if list.is_empty() {
                        self.sessions.remove(&group);
                    }
                }
                self.dirty.mark(NS_SESSIONS, &group);
                self.state.remove(&k);
                self.dirty.mark(NS_GROUP, &k);
            }
        }
        Ok(())
    }

    /// A one-row stand-in for the input row when rows are emitted on idle before any
    /// input of partition `lane` arrived in this run (only the pseudo columns are read
    /// from it).
    fn placeholder_row(&self, lane: i32) -> Result<RecordBatch> {
        let schema = Schema::new(vec![
            Field::new(brook_planner::schema::ROWTIME, DataType::Int64, false),
            Field::new(brook_planner::schema::ROWPARTITION, DataType::Int32, false),
            Field::new(brook_planner::schema::ROWOFFSET, DataType::Int64, false),
        ]);
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![self.times.get(lane)])),
                Arc::new(arrow::array::Int32Array::from(vec![lane])),
                Arc::new(Int64Array::from(vec![-1])),
            ],
        )?)
    }
}

fn encode_group(g: &Group) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    // Bit 0: emitted; bit 1: the partition follows (entries written before stream time
    // was kept per partition have neither bit 1 nor the partition).
    w.u8(g.emitted as u8 | GROUP_HAS_LANE);
    w.u32(g.lane as u32);
    w.i64(g.max_ts);
    w.u32(g.accs.len() as u32);
    for a in &g.accs {
        match a {
            Acc::Count(n) => {
                w.u8(0);
                w.i64(*n);
            }
            Acc::Sum(v) => {
                w.u8(1);
                w.scalar(v)?;
            }
            Acc::MinMax(v) => {
                w.u8(2);
                w.scalar(v)?;
            }
            Acc::Avg(sum, n) => {
                w.u8(3);
                w.f64(*sum);
                w.i64(*n);
            }
            Acc::ByOffset(v) => {
                w.u8(4);
                w.scalar(v)?;
            }
            Acc::Values(vs) => {
                w.u8(5);
                w.scalars(vs)?;
            }
            Acc::Udaf(v) => {
                w.u8(6);
                w.scalar(v)?;
            }
        }
    }
    Ok(w.buf)
}

fn decode_group(r: &mut Reader<'_>) -> Result<Group> {
    let flags = r.u8()?;
    let emitted = flags & 1 != 0;
    // An entry without its partition predates per-partition stream time: partition 0,
    // which every single-partition input's records are in.
    let lane = if flags & GROUP_HAS_LANE != 0 {
        r.u32()? as i32
    } else {
        0
    };
    let max_ts = r.i64()?;
    let n = r.u32()?;
    let accs = (0..n)
        .map(|_| {
            Ok(match r.u8()? {
                0 => Acc::Count(r.i64()?),
                1 => Acc::Sum(r.scalar()?),
                2 => Acc::MinMax(r.scalar()?),
                3 => Acc::Avg(r.f64()?, r.i64()?),
                4 => Acc::ByOffset(r.scalar()?),
                5 => Acc::Values(r.scalars()?),
                6 => Acc::Udaf(r.scalar()?),
                t => {
                    return Err(RuntimeError::State(format!(
                        "unknown aggregate state tag {t}"
                    )))
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Group {
        accs,
        emitted,
        max_ts,
        lane,
    })
}

/// The flag of a group entry that carries its partition.
const GROUP_HAS_LANE: u8 = 2;

/// User-defined aggregates registered through `brook_planner::udaf`, run by the driver.
#[cfg(test)]
mod udaf_tests {
    use std::sync::Arc;

    use brook_planner::udaf::{
        bind_first, register, rejected, Param, Resolved, Signature, Udaf, UdafArg, UdafError,
        UdafFunction,
    };
    use brook_planner::PlanError;
    use brook_sql::Type;
    use datafusion::common::ScalarValue;

    use crate::driver::Driver;

    /// `<name>(x INTEGER, s STRING...)`: the sum of x and the lengths of s, NULLs counting 0,
    /// from an optional literal start value given after the columns (`init` overload).
    #[derive(Debug)]
    struct SumLen {
        name: &'static str,
        undo: bool,
    }

    #[derive(Debug)]
    struct SumLenFn {
        start: i64,
        undo: bool,
    }

    fn amount(args: &[ScalarValue]) -> i64 {
        args.iter()
            .map(|a| match a {
                ScalarValue::Int32(Some(n)) => i64::from(*n),
                ScalarValue::Utf8(Some(s)) => s.len() as i64,
                _ => 0,
            })
            .sum()
    }

    fn long(v: &ScalarValue) -> Result<i64, UdafError> {
        match v {
            ScalarValue::Int64(Some(n)) => Ok(*n),
            other => Err(UdafError::failed("SUM_LEN", format!("state {other:?}"))),
        }
    }

    impl Udaf for SumLen {
        fn name(&self) -> &str {
            self.name
        }

        fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError> {
            let int = || Param::of(Type::Int);
            let strings = || Param::of(Type::String).variadic();
            // Overloads: columns only, or columns then a BIGINT start value.
            let overloads = [
                Signature::new(vec![int(), strings()], Vec::new()),
                Signature::new(vec![int(), strings()], vec![Param::of(Type::Bigint)]),
            ];
            let (_, binding) =
                bind_first(&overloads, args).ok_or_else(|| rejected(self.name, args))?;
            let start = match args.len() - binding.columns {
                0 => 0,
                _ => match UdafArg::init_value(args, binding.columns, self.name)? {
                    ScalarValue::Int64(Some(n)) => *n,
                    ScalarValue::Int32(Some(n)) => i64::from(*n),
                    _ => 0,
                },
            };
            Ok(Resolved {
                columns: binding.column_types,
                aggregate_type: Type::Bigint,
                return_type: Type::Bigint,
                function: Arc::new(SumLenFn {
                    start,
                    undo: self.undo,
                }),
            })
        }
    }

    impl UdafFunction for SumLenFn {
        fn initialize(&self) -> Result<ScalarValue, UdafError> {
            Ok(ScalarValue::Int64(Some(self.start)))
        }

        fn aggregate(
            &self,
            args: &[ScalarValue],
            state: ScalarValue,
        ) -> Result<ScalarValue, UdafError> {
            Ok(ScalarValue::Int64(Some(long(&state)? + amount(args))))
        }

        fn merge(&self, a: ScalarValue, b: ScalarValue) -> Result<ScalarValue, UdafError> {
            Ok(ScalarValue::Int64(Some(long(&a)? + long(&b)?)))
        }

        fn map(&self, state: &ScalarValue) -> Result<ScalarValue, UdafError> {
            Ok(state.clone())
        }

        fn supports_undo(&self) -> bool {
            self.undo
        }

        fn undo(&self, args: &[ScalarValue], state: ScalarValue) -> Result<ScalarValue, UdafError> {
            Ok(ScalarValue::Int64(Some(long(&state)? - amount(args))))
        }
    }

    fn setup() {
        register(Arc::new(SumLen {
            name: "TEST_SUM_LEN",
            undo: true,
        }));
        register(Arc::new(SumLen {
            name: "TEST_SUM_LEN_STREAMS",
            undo: false,
        }));
    }

    fn json(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    /// The topic's records as (key, value) text.
    fn records(d: &Driver, topic: &str) -> Vec<(String, Option<String>)> {
        d.topic(topic)
            .map(|t| {
                t.records
                    .iter()
                    .map(|r| {
                        (
                            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default())
                                .to_string(),
                            r.value
                                .as_deref()
                                .map(|v| String::from_utf8_lossy(v).to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn run_stream(restart: bool) -> Vec<(String, Option<String>)> {
        setup();
        let mut d = Driver::new();
        d.restart_every_record = restart;
        d.execute(
            "CREATE STREAM s (id STRING KEY, v INT, a STRING, b STRING) \
             WITH (kafka_topic='s', value_format='JSON', partitions=1);",
        )
        .expect("stream");
        d.execute(
            "CREATE TABLE out AS SELECT id, TEST_SUM_LEN(v, a, b) AS total, \
             test_sum_len(v, 100) AS started FROM s GROUP BY id;",
        )
        .expect("query");
        let rows = [
            ("x", r#"{"V":1,"A":"aa","B":"bbb"}"#),
            ("y", r#"{"V":10,"A":null,"B":"b"}"#),
            ("x", r#"{"V":null,"A":"a","B":null}"#),
            ("x", r#"{"V":5,"A":"","B":"cc"}"#),
        ];
        for (i, (k, v)) in rows.iter().enumerate() {
            d.produce("s", json(k), json(v), i as i64, Vec::new(), None);
        }
        assert!(d.processing_log.is_empty(), "{:?}", d.processing_log);
        records(&d, "OUT")
    }

    #[test]
    fn a_registered_udaf_aggregates_groups_across_restarts() {
        let want: Vec<(String, Option<String>)> = [
            ("x", r#"{"TOTAL":6,"STARTED":101}"#),
            ("y", r#"{"TOTAL":11,"STARTED":110}"#),
            ("x", r#"{"TOTAL":7,"STARTED":101}"#),
            ("x", r#"{"TOTAL":14,"STARTED":106}"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
        assert_eq!(run_stream(false), want);
        // Restarted after every record, from the changelog alone: the same results.
        assert_eq!(run_stream(true), want);
    }

    #[test]
    fn a_table_aggregation_undoes_replaced_and_deleted_rows() {
        setup();
        for restart in [false, true] {
            let mut d = Driver::new();
            d.restart_every_record = restart;
            d.execute(
                "CREATE TABLE t (id STRING PRIMARY KEY, region STRING, v INT) \
                 WITH (kafka_topic='t', value_format='JSON', partitions=1);",
            )
            .expect("table");
            d.execute(
                "CREATE TABLE out AS SELECT region, TEST_SUM_LEN(v) AS total FROM t \
                 GROUP BY region;",
            )
            .expect("query");
            d.produce(
                "t",
                json("a"),
                json(r#"{"REGION":"e","V":1}"#),
                0,
                vec![],
                None,
            );
            d.produce(
                "t",
                json("b"),
                json(r#"{"REGION":"e","V":2}"#),
                1,
                vec![],
                None,
            );
            d.produce(
                "t",
                json("a"),
                json(r#"{"REGION":"w","V":4}"#),
                2,
                vec![],
                None,
            );
            d.produce("t", json("b"), None, 3, vec![], None);
            let got: Vec<String> = records(&d, "OUT")
                .into_iter()
                .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
                .collect();
            assert_eq!(
                got,
                [
                    r#"e={"TOTAL":1}"#,
                    r#"e={"TOTAL":3}"#,
                    r#"e={"TOTAL":2}"#,
                    r#"w={"TOTAL":4}"#,
                    r#"e={"TOTAL":0}"#,
                ],
                "restart: {restart}"
            );
        }
    }

    #[test]
    fn a_udaf_without_undo_is_refused_over_a_table() {
        setup();
        let mut d = Driver::new();
        d.execute(
            "CREATE TABLE t (id STRING PRIMARY KEY, region STRING, v INT) \
             WITH (kafka_topic='t', value_format='JSON', partitions=1);",
        )
        .expect("table");
        let e = d
            .execute(
                "CREATE TABLE out AS SELECT region, TEST_SUM_LEN_STREAMS(v) AS total FROM t \
                 GROUP BY region;",
            )
            .expect_err("refused");
        assert!(
            e.to_string().contains(
                "The aggregation function TEST_SUM_LEN_STREAMS cannot be applied to a table \
                 source, only to a stream source."
            ),
            "{e}"
        );
    }

    #[test]
    fn arguments_no_overload_takes_are_refused_and_init_arguments_must_be_literals() {
        setup();
        let mut d = Driver::new();
        d.execute(
            "CREATE STREAM s (id STRING KEY, v INT, a STRING, n BIGINT) \
             WITH (kafka_topic='s', value_format='JSON', partitions=1);",
        )
        .expect("stream");
        let e = d
            .execute("CREATE TABLE o1 AS SELECT id, TEST_SUM_LEN(a, v) FROM s GROUP BY id;")
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("Function 'TEST_SUM_LEN' does not accept parameters (STRING, INTEGER)."),
            "{e}"
        );
        let e = d
            .execute("CREATE TABLE o2 AS SELECT id, TEST_SUM_LEN(v, n) FROM s GROUP BY id;")
            .expect_err("refused");
        assert!(
            e.to_string().contains(
                "Parameter 2 passed to function TEST_SUM_LEN must be a literal constant."
            ),
            "{e}"
        );
    }

    #[test]
    fn session_windows_merge_udaf_states() {
        setup();
        for restart in [false, true] {
            let mut d = Driver::new();
            d.restart_every_record = restart;
            d.execute(
                "CREATE STREAM s (id STRING KEY, v INT) \
                 WITH (kafka_topic='s', value_format='JSON', partitions=1);",
            )
            .expect("stream");
            d.execute(
                "CREATE TABLE out AS SELECT id, TEST_SUM_LEN(v) AS total FROM s \
                 WINDOW SESSION (10 SECONDS) GROUP BY id;",
            )
            .expect("query");
            d.produce("s", json("k"), json(r#"{"V":1}"#), 0, vec![], None);
            d.produce("s", json("k"), json(r#"{"V":2}"#), 16_000, vec![], None);
            // Within the gap of both sessions: one session of the three rows.
            d.produce("s", json("k"), json(r#"{"V":4}"#), 8_000, vec![], None);
            let last = records(&d, "OUT").pop().and_then(|(_, v)| v);
            assert_eq!(
                last.as_deref(),
                Some(r#"{"TOTAL":7}"#),
                "restart: {restart}"
            );
        }
    }
}

#[cfg(test)]
mod partition_tests {
    use super::*;

    #[test]
    fn group_entries_carry_their_partition_and_old_ones_still_read() {
        let group = Group {
            accs: vec![Acc::Count(5)],
            emitted: true,
            max_ts: 42,
            lane: 3,
        };
        let bytes = encode_group(&group).expect("encode");
        let back = decode_group(&mut Reader::new(&bytes)).expect("decode");
        assert_eq!((back.emitted, back.max_ts, back.lane), (true, 42, 3));
        assert!(matches!(back.accs.as_slice(), [Acc::Count(5)]));
        // An entry written before groups had a partition: emitted flag, time, states.
        let mut w = Writer::default();
        w.u8(1);
        w.i64(42);
        w.u32(1);
        w.u8(0);
        w.i64(5);
        let old = decode_group(&mut Reader::new(&w.buf)).expect("decode");
        assert_eq!((old.emitted, old.max_ts, old.lane), (true, 42, 0));
    }

    #[test]
    fn stream_times_are_per_partition_from_a_common_start() {
        let mut t = StreamTimes::default();
        assert!(!t.any());
        assert!(t.observe(1, 10));
        assert!(!t.observe(1, 5));
        assert_eq!((t.get(0), t.get(1), t.max()), (i64::MIN, 10, 10));
        t.advance_all(5);
        assert_eq!((t.get(0), t.get(1)), (i64::MIN, 15));
        // An entry from before: one time, where every partition starts.
        let legacy = StreamTimes::read(100, &mut Reader::new(&[]), false).expect("read");
        assert_eq!((legacy.get(0), legacy.get(7)), (100, 100));
        let mut w = Writer::default();
        t.write_partitions(&mut w);
        let back = StreamTimes::read(i64::MIN, &mut Reader::new(&w.buf), true).expect("read");
        assert_eq!((back.get(0), back.get(1)), (i64::MIN, 15));
    }
}

//! GROUP BY aggregation: keyed state of accumulators, one update emitted per input row
//! (ksqlDB's tests run with caching off; the server may later coalesce a batch's updates
//! per key, as ksqlDB's cache does).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brook_planner::aggregate::{AggCall, AggKind, AggregatePlan};
use brook_planner::types::{arrow_type, TypeRegistry};
use datafusion::common::ScalarValue;

use crate::error::{Result, RuntimeError};
use crate::operator::Operator;
use crate::state::{read_scalar_key, scalar_key, Reader, StateChange, Writer};

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
}

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

impl Acc {
    fn new(call: &AggCall, dt: &DataType, retracting: bool) -> Result<Acc> {
        Ok(match call.kind {
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
            AggKind::EarliestByOffset | AggKind::LatestByOffset if call.n.is_none() => {
                Acc::ByOffset(ScalarValue::try_from(dt).map_err(eval_err)?)
            }
            _ => Acc::Values(Vec::new()),
        })
    }

    fn update(&mut self, call: &AggCall, v: Option<ScalarValue>) -> Result<()> {
        let kind = call.kind;
        match (self, kind) {
            (Acc::Values(vals), _) => {
                if let Some(v) = v {
                    let skip_null = match kind {
                        AggKind::EarliestByOffset | AggKind::LatestByOffset => call.ignore_nulls,
                        AggKind::CollectList => false,
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
            Acc::MinMax(_) | Acc::ByOffset(_) => {
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
        let desc = |mut vals: Vec<ScalarValue>| {
            vals.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
            vals
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
        })
    }
}

struct Group {
    accs: Vec<Acc>,
    /// Whether the key's row has been emitted (and so needs a tombstone if HAVING drops it).
    emitted: bool,
    /// The newest record time of a time window's rows: its result's ROWTIME, as Kafka
    /// Streams stamps windowed aggregates (`i64::MIN` for other groups).
    max_ts: i64,
}

pub struct AggregateOperator {
    plan: AggregatePlan,
    agg_types: Vec<DataType>,
    output_schema: SchemaRef,
    state: HashMap<Vec<ScalarValue>, Group>,
    /// The largest ROWTIME seen: windows that ended a grace period before it are closed.
    stream_time: i64,
    /// Over a table: each source key's current row (that passed WHERE), to retract.
    previous: HashMap<Vec<ScalarValue>, RecordBatch>,
    /// Session windows: each group's open sessions as (start, end).
    sessions: HashMap<Vec<ScalarValue>, Vec<(i64, i64)>>,
    /// Entries changed since the changelog last took them: (namespace, key).
    dirty: HashSet<(u8, Vec<ScalarValue>)>,
}

/// Changelog namespaces of the aggregation's maps.
const NS_GROUP: u8 = b'g';
const NS_PREVIOUS: u8 = b'p';
const NS_SESSIONS: u8 = b's';
const NS_TIME: u8 = b't';

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
            state: HashMap::new(),
            stream_time: i64::MIN,
            previous: HashMap::new(),
            sessions: HashMap::new(),
            dirty: HashSet::new(),
        })
    }

    fn emit_row(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        keys: &[ScalarValue],
        window: Option<(i64, i64)>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        self.emit(batch, row, keys, window, None, out)
    }

    /// Emits a group's row; `retired` (a merged-away session, with its own timestamp)
    /// emits its tombstone instead.
    fn emit(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        keys: &[ScalarValue],
        window: Option<(i64, i64)>,
        retired: Option<i64>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let Some(group) = self.state.get_mut(keys) else {
            return Ok(());
        };
        let mut cols: Vec<ArrayRef> = batch.columns()[..3]
            .iter()
            .map(|c| c.slice(row, 1))
            .collect();
        if let Some(ts) = retired {
            cols[0] = Arc::new(arrow::array::Int64Array::from(vec![ts]));
        } else if group.max_ts != i64::MIN {
            cols[0] = Arc::new(arrow::array::Int64Array::from(vec![group.max_ts]));
        }
        if let Some((start, end)) = window {
            cols.push(Arc::new(arrow::array::Int64Array::from(vec![start])));
            cols.push(Arc::new(arrow::array::Int64Array::from(vec![end])));
        }
        let group_keys = if window.is_some() {
            &keys[..keys.len() - 1]
        } else {
            keys
        };
        for k in group_keys {
            cols.push(k.to_array().map_err(eval_err)?);
        }
        for ((acc, dt), call) in group.accs.iter().zip(&self.agg_types).zip(&self.plan.aggs) {
            let v = acc.value(call, dt)?;
            let v = if v.data_type() == *dt {
                v
            } else {
                v.cast_to(dt).map_err(eval_err)?
            };
            cols.push(v.to_array().map_err(eval_err)?);
        }
        let agg_row = RecordBatch::try_new(self.plan.agg_schema.clone(), cols)?;
        let passes = match &self.plan.having {
            None => true,
            Some(h) => {
                let v = h
                    .evaluate(&agg_row)
                    .and_then(|v| v.into_array(1))
                    .map_err(eval_err)?;
                v.as_any()
                    .downcast_ref::<BooleanArray>()
                    .is_some_and(|b| !b.is_null(0) && b.value(0))
            }
        };
        if retired.is_some() && !group.emitted {
            return Ok(());
        }
        let passes = passes && retired.is_none();
        if !passes && !group.emitted {
            return Ok(());
        }
        group.emitted = passes;
        self.dirty.insert((NS_GROUP, keys.to_vec()));
        let pseudo = if window.is_some() { 5 } else { 3 };
        let mut out_cols: Vec<ArrayRef> = agg_row.columns()[..pseudo].to_vec();
        for (i, p) in self.plan.projections.iter().enumerate() {
            let want = self.output_schema.field(pseudo + i).data_type();
            let a = if passes || p.column.namespace == brook_planner::schema::Namespace::Key {
                p.expr
                    .evaluate(&agg_row)
                    .and_then(|v| v.into_array(1))
                    .map_err(eval_err)?
            } else {
                arrow::array::new_null_array(want, 1)
            };
            out_cols.push(if a.data_type() == want {
                a
            } else {
                cast(&a, want)?
            });
        }
        out_cols.push(Arc::new(BooleanArray::from(vec![!passes])));
        out.push(RecordBatch::try_new(self.output_schema.clone(), out_cols)?);
        Ok(())
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
    fn retract(
        &mut self,
        source_key: &[ScalarValue],
        at: &RecordBatch,
        row: usize,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let Some(old) = self.previous.remove(source_key) else {
            return Ok(());
        };
        self.dirty.insert((NS_PREVIOUS, source_key.to_vec()));
        let keys: Vec<ScalarValue> = self
            .plan
            .group_by
            .iter()
            .map(|g| {
                g.evaluate(&old)
                    .and_then(|v| v.into_array(1))
                    .and_then(|a| ScalarValue::try_from_array(&a, 0))
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(eval_err)?;
        if keys.iter().any(ScalarValue::is_null) {
            return Ok(());
        }
        let args: Vec<Option<ScalarValue>> = self
            .plan
            .aggs
            .iter()
            .map(|a| match &a.arg {
                Some(e) => e
                    .evaluate(&old)
                    .and_then(|v| v.into_array(1))
                    .and_then(|a| ScalarValue::try_from_array(&a, 0))
                    .map(Some),
                None => Ok(None),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(eval_err)?;
        if let Some(group) = self.state.get_mut(&keys) {
            for ((acc, call), v) in group.accs.iter_mut().zip(&self.plan.aggs).zip(args) {
                acc.undo(call, v)?;
            }
            self.dirty.insert((NS_GROUP, keys.clone()));
        }
        self.emit_row(at, row, &keys, None, out)
    }

    /// A table's deleted rows: their contributions are taken back.
    pub fn delete(&mut self, batch: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        for row in 0..batch.num_rows() {
            if let Some(k) = self.source_key(batch, row)? {
                self.retract(&k, batch, row, out)?;
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
        arg_cols: &[Option<ArrayRef>],
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let gap = w.size_ms;
        // Sessions that ended longer ago than gap + grace have expired from the store.
        let expiry = self.stream_time.saturating_sub(w.grace_ms + gap);
        let all = self.sessions.get(&keys).cloned().unwrap_or_default();
        let (list, expired): (Vec<Span>, Vec<Span>) =
            all.into_iter().partition(|(_, e)| *e >= expiry);
        for (s, _) in expired {
            let mut k = keys.clone();
            k.push(ScalarValue::Int64(Some(s)));
            self.state.remove(&k);
            self.dirty.insert((NS_GROUP, k));
        }
        let (mut merging, keep): (Vec<Span>, Vec<Span>) = list
            .into_iter()
            .partition(|(s, e)| *e + gap >= ts && *s - gap <= ts);
        let start = merging.iter().map(|m| m.0).min().unwrap_or(ts).min(ts);
        let end = merging.iter().map(|m| m.1).max().unwrap_or(ts).max(ts);
        if end < expiry {
            // Late: its session closed a grace period ago.
            return Ok(());
        }
        let aggs = self.plan.aggs.clone();
        let mut accs = aggs
            .iter()
            .zip(&self.agg_types)
            .map(|(a, dt)| Acc::new(a, dt, false))
            .collect::<Result<Vec<_>>>()?;
        merging.sort();
        for (s, e) in &merging {
            let mut k = keys.clone();
            k.push(ScalarValue::Int64(Some(*s)));
            self.emit(batch, row, &k, Some((*s, *e)), Some(*e), out)?;
            if let Some(g) = self.state.remove(&k) {
                for ((a, b), call) in accs.iter_mut().zip(&g.accs).zip(&aggs) {
                    a.merge(b, call)?;
                }
            }
            self.dirty.insert((NS_GROUP, k));
        }
        for ((acc, call), arg) in accs.iter_mut().zip(&aggs).zip(arg_cols) {
            let v = match arg {
                Some(a) => Some(ScalarValue::try_from_array(a, row).map_err(eval_err)?),
                None => None,
            };
            acc.update(call, v)?;
        }
        let mut k = keys.clone();
        k.push(ScalarValue::Int64(Some(start)));
        self.state.insert(
            k.clone(),
            Group {
                accs,
                emitted: false,
                max_ts: i64::MIN,
            },
        );
        let mut list = keep;
        list.push((start, end));
        self.dirty.insert((NS_GROUP, k.clone()));
        self.dirty.insert((NS_SESSIONS, keys.clone()));
        self.sessions.insert(keys, list);
        self.emit(batch, row, &k, Some((start, end)), None, out)
    }
}

impl Operator for AggregateOperator {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn process_deletes(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        self.delete(&batch, out)
    }

    fn stateful(&self) -> bool {
        true
    }

    fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for (ns, keys) in std::mem::take(&mut self.dirty) {
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
                _ => {
                    let mut w = Writer::default();
                    w.i64(self.stream_time);
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
            NS_TIME => self.stream_time = self.stream_time.max(r.i64()?),
            _ => {
                return Err(RuntimeError::State(format!(
                    "unknown aggregation state namespace {ns}"
                )))
            }
        }
        Ok(())
    }

    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        // Over a table, every incoming row first takes its key's previous row back.
        if self.plan.retract_by.is_some() {
            for row in 0..batch.num_rows() {
                if let Some(k) = self.source_key(&batch, row)? {
                    self.retract(&k, &batch, row, out)?;
                }
            }
        }
        let batch = match &self.plan.filter {
            None => batch,
            Some(f) => {
                let mask = f
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(eval_err)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| RuntimeError::Eval("WHERE did not give a BOOLEAN".into()))?;
                filter_record_batch(&batch, mask)?
            }
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let group_cols: Vec<ArrayRef> = self
            .plan
            .group_by
            .iter()
            .map(|g| g.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<std::result::Result<_, _>>()
            .map_err(eval_err)?;
        let arg_cols: Vec<Option<ArrayRef>> = self
            .plan
            .aggs
            .iter()
            .map(|a| match &a.arg {
                Some(e) => e
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(rows))
                    .map(Some),
                None => Ok(None),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(eval_err)?;
        for row in 0..rows {
            if let Some(k) = self.source_key(&batch, row)? {
                self.dirty.insert((NS_PREVIOUS, k.clone()));
                self.previous.insert(k, batch.slice(row, 1));
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
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .map(|a| a.value(row))
                .unwrap_or(0);
            if ts > self.stream_time {
                self.stream_time = ts;
                self.dirty.insert((NS_TIME, Vec::new()));
            }
            // The windows this row falls in (one for tumbling, size/advance for hopping),
            // oldest first, less those already closed.
            if let Some(w) = self.plan.window.filter(|w| w.is_session()) {
                self.session_row(&batch, row, keys, ts, w, &arg_cols, out)?;
                continue;
            }
            let windows: Vec<Option<(i64, i64)>> = match self.plan.window {
                None => vec![None],
                Some(w) => {
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
                    starts
                        .into_iter()
                        .filter(|s| s + w.size_ms + w.grace_ms > self.stream_time)
                        .map(|s| Some((s, s + w.size_ms)))
                        .collect()
                }
            };
            for window in windows {
                let mut keys = keys.clone();
                if let Some((start, _)) = window {
                    keys.push(ScalarValue::Int64(Some(start)));
                }
                if !self.state.contains_key(&keys) {
                    let accs = self
                        .plan
                        .aggs
                        .iter()
                        .zip(&self.agg_types)
                        .map(|(a, dt)| Acc::new(a, dt, self.plan.retract_by.is_some()))
                        .collect::<Result<Vec<_>>>()?;
                    self.state.insert(
                        keys.clone(),
                        Group {
                            accs,
                            emitted: false,
                            max_ts: i64::MIN,
                        },
                    );
                }
                self.dirty.insert((NS_GROUP, keys.clone()));
                if let Some(group) = self.state.get_mut(&keys) {
                    if window.is_some() {
                        group.max_ts = group.max_ts.max(ts);
                    }
                    for ((acc, call), arg) in
                        group.accs.iter_mut().zip(&self.plan.aggs).zip(&arg_cols)
                    {
                        let v = match arg {
                            Some(a) => Some(ScalarValue::try_from_array(a, row).map_err(eval_err)?),
                            None => None,
                        };
                        acc.update(call, v)?;
                    }
                }
                self.emit_row(&batch, row, &keys, window, out)?;
            }
        }
        Ok(())
    }
}

fn encode_group(g: &Group) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u8(g.emitted as u8);
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
        }
    }
    Ok(w.buf)
}

fn decode_group(r: &mut Reader<'_>) -> Result<Group> {
    let emitted = r.u8()? != 0;
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
    })
}

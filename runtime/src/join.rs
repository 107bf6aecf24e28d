//! Joins of two or more inputs, left to right. Each step joins the rows joined so far with
//! one more input:
//! - stream–stream: both sides are buffered by key for the join window; a new row on either
//!   side joins every buffered row of the other side within the window. Outer rows without
//!   a match are emitted at once (no grace period: ksqlDB's "eager" legacy join) or when
//!   their window closes (with a grace period), as Kafka Streams does.
//! - stream–table: stream rows look up the table's current row by key.
//! - table–table (primary key): either side's change emits the key's new joined row, or a
//!   tombstone when it no longer exists.
//! - foreign key: a left-table column refers to the right table's primary key; a right-side
//!   change re-emits every left row referring to it.
//!
//! Rows travel between steps as one-row batches of the joined schema (every input's
//! columns, NULL where an input has not joined yet), with the key the step produced.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use brook_planner::join::{JoinPlan, StepKind};
use brook_planner::types::TypeRegistry;
use brook_sql::{JoinKind, SourceKind};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::aggregate::{partition_of, StreamTimes};
use crate::error::{Result, RuntimeError};
use crate::eval::{self, Purpose, RowError};
use crate::state::{
    owned_row, read_scalar_key, scalar_key, Dirty, FastMap, FastSet, Reader, StateChange, Writer,
};

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

/// Kafka Streams' grace period for join windows declared without one (`JoinWindows.of`):
/// 24 hours less the window.
const LEGACY_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// A row between steps: a one-row batch of the joined schema (ROWTIME is its timestamp),
/// the key it is joined under, and whether it deletes that key (tables only).
#[derive(Debug, Clone)]
struct Row {
    batch: RecordBatch,
    key: Vec<ScalarValue>,
    deleted: bool,
    /// A deletion that is forwarded even when the key has no row (a foreign-key join's
    /// deletions, as Kafka Streams propagates them).
    force: bool,
}

fn ts_of(b: &RecordBatch) -> i64 {
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .filter(|a| !a.is_empty() && !a.is_null(0))
        .map(|a| a.value(0))
        .unwrap_or(0)
}

/// The key rows of a stream–stream join are matched under: the join key, plus, for windowed
/// inputs, the window (its start, and its end for session windows), read from `row`'s
/// fields at the given indexes.
fn window_key(
    kv: &ScalarValue,
    row: &RecordBatch,
    window: Option<(usize, usize, bool)>,
) -> Result<ScalarValue> {
    let Some((start, end, session)) = window else {
        return Ok(kv.clone());
    };
    let at = |i: usize| -> Result<ScalarValue> {
        ScalarValue::try_from_array(row.column(i), 0).map_err(eval_err)
    };
    let mut parts = vec![kv.clone(), at(start)?];
    if session {
        parts.push(at(end)?);
    }
    // Debug text keeps each part's type, so different keys never meet.
    Ok(ScalarValue::Utf8(Some(format!("{parts:?}"))))
}

/// What [`JoinOperator::emit_joined`] needs of each joined row besides its columns.
#[derive(Debug, Clone)]
struct Meta {
    key: Vec<ScalarValue>,
    deleted: bool,
    force: bool,
}

/// A buffered row of a stream–stream join side: timestamp, arrival sequence, row.
type Buffered = (i64, u64, RecordBatch);

#[derive(Debug, Default)]
struct StreamStream {
    left: FastMap<ScalarValue, Vec<Buffered>>,
    right: FastMap<ScalarValue, Vec<Buffered>>,
    /// Outer rows waiting for their window to close: (timestamp, sequence) → (left side?,
    /// key, row).
    outer: BTreeMap<(i64, u64), (bool, ScalarValue, RecordBatch)>,
    /// Stream time per partition: a join's inputs are co-partitioned, and Kafka Streams
    /// joins partition p of one with partition p of the other in one task, whose stream
    /// time (shared by both sides) decides windows, grace and retention. A row's partition
    /// is its ROWPARTITION (a joined row's: the row that triggered it).
    times: StreamTimes,
    seq: u64,
}

#[derive(Debug, Default)]
struct Tables {
    left: FastMap<ScalarValue, RecordBatch>,
    right: FastMap<ScalarValue, RecordBatch>,
}

#[derive(Debug, Default)]
struct ForeignKey {
    /// Left rows by their primary key: the foreign key they refer to, and the row.
    left: FastMap<Vec<ScalarValue>, (ScalarValue, RecordBatch)>,
    right: FastMap<ScalarValue, RecordBatch>,
    /// Left primary keys by the foreign key they refer to, in arrival order.
    by_fk: FastMap<ScalarValue, Vec<Vec<ScalarValue>>>,
}

#[derive(Debug)]
enum StepState {
    StreamStream(StreamStream),
    StreamTable(FastMap<ScalarValue, RecordBatch>),
    Tables(Tables),
    ForeignKey(ForeignKey),
}

impl StepState {
    /// The right table's current rows by key, when the right side is a table.
    fn right_rows(&mut self) -> Option<&mut FastMap<ScalarValue, RecordBatch>> {
        match self {
            StepState::StreamStream(_) => None,
            StepState::StreamTable(t) => Some(t),
            StepState::Tables(t) => Some(&mut t.right),
            StepState::ForeignKey(fk) => Some(&mut fk.right),
        }
    }
}

/// Changelog namespaces: step × part.
const NS_SS_LEFT: u8 = 0;
const NS_SS_RIGHT: u8 = 1;
const NS_SS_OUTER: u8 = 2;
const NS_SS_TIME: u8 = 3;
const NS_LEFT: u8 = 4;
const NS_RIGHT: u8 = 5;
/// Keys of the result table whose row was emitted (and so need a tombstone to go).
const NS_EMITTED: u8 = 255;

fn ns(step: usize, part: u8) -> u8 {
    (step as u8) * 8 + part
}

pub struct JoinOperator {
    plan: JoinPlan,
    output_schema: SchemaRef,
    steps: Vec<StepState>,
    /// A NULL of every joined field, to pad rows with.
    nulls: Vec<ArrayRef>,
    /// Input 0's key columns (its rows' key when it is a table).
    first_keys: Vec<usize>,
    emitted: FastSet<Vec<ScalarValue>>,
    dirty: Dirty,
    /// For joined rows that feed another operator: whether each batch emitted since the
    /// last [`JoinOperator::take_deleted_runs`] holds deletions.
    deleted_runs: Vec<bool>,
    /// Stream–stream rows that arrived past their window store's retention (by their
    /// partition's stream time), which Kafka Streams' store drops and counts, since the
    /// last [`JoinOperator::take_late`].
    late: u64,
    /// Rows an expression failed on, until [`JoinOperator::take_row_errors`].
    errors: Vec<RowError>,
}

impl JoinOperator {
    pub fn new(plan: JoinPlan, types: &dyn TypeRegistry) -> Result<Self> {
        let plan_err = |e: brook_planner::PlanError| RuntimeError::Plan(e.to_string());
        let windowed = plan.window().is_some() && !plan.rows_only;
        let mut output_schema = plan.output.row_schema(windowed, types).map_err(plan_err)?;
        if plan.tables {
            let mut fields: Vec<arrow::datatypes::FieldRef> =
                output_schema.fields().iter().cloned().collect();
            fields.push(Arc::new(arrow::datatypes::Field::new(
                crate::aggregate::TOMBSTONE,
                arrow::datatypes::DataType::Boolean,
                false,
            )));
            output_schema = Arc::new(arrow::datatypes::Schema::new(fields));
        }
        let steps = plan
            .steps
            .iter()
            .map(|s| match s.kind {
                StepKind::StreamStream { .. } => StepState::StreamStream(Default::default()),
                StepKind::StreamTable => StepState::StreamTable(Default::default()),
                StepKind::TableTable => StepState::Tables(Default::default()),
                StepKind::ForeignKey => StepState::ForeignKey(Default::default()),
            })
            .collect();
        let nulls = plan
            .joined_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        let first = &plan.inputs[0];
        let first_keys = first
            .source
            .schema
            .key_columns()
            .filter_map(|c| first.schema.index_of(&c.name).ok())
            .collect();
        Ok(JoinOperator {
            plan,
            output_schema,
            steps,
            nulls,
            first_keys,
            emitted: Default::default(),
            dirty: Dirty::default(),
            deleted_runs: Vec::new(),
            late: 0,
            errors: Vec::new(),
        })
    }

    /// The rows dropped as late since the last call.
    pub fn take_late(&mut self) -> u64 {
        std::mem::take(&mut self.late)
    }

    /// Appends the rows an expression failed on since the last call (see
    /// [`crate::operator::Operator::take_row_errors`]).
    pub fn take_row_errors(&mut self, out: &mut Vec<RowError>) {
        out.append(&mut self.errors);
    }

    /// Rows of input `input` (`deleted`: tombstones of a table input).
    pub fn process_input(
        &mut self,
        input: usize,
        batch: &RecordBatch,
        deleted: bool,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut rows = Vec::new();
        if input == 0
            && !deleted
            && self.plan.steps.len() == 1
            && self.plan.steps[0].kind == StepKind::StreamTable
            && self.plan.synthetic_key.is_none()
        {
            return self.stream_table_batch(batch, out);
        }
        if input == 0 {
            let wide = self.widen_first(batch)?;
            for r in 0..batch.num_rows() {
                let key = self
                    .first_keys
                    .iter()
                    .map(|&c| ScalarValue::try_from_array(batch.column(c), r))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(eval_err)?;
                rows.push(Row {
                    batch: wide.slice(r, 1),
                    key,
                    deleted,
                    force: false,
                });
            }
            self.cascade(1, rows, out)
        } else {
            for r in 0..batch.num_rows() {
                let row = batch.slice(r, 1);
                self.right_arrival(input, &row, deleted, &mut rows)?;
            }
            self.cascade(input + 1, rows, out)
        }
    }

    /// A two-way stream–table join's stream rows, a batch at a time: keys evaluated over
    /// the batch, the table's rows gathered with `interleave`, one joined batch out.
    fn stream_table_batch(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let wide = self.widen_first(batch)?;
        let step = &self.plan.steps[0];
        let keys = eval::evaluate(&step.left_key, &wide, Purpose::JoinKey, &mut self.errors)?;
        let StepState::StreamTable(table) = &self.steps[0] else {
            return Err(RuntimeError::Plan(
                "a join step's state does not fit its kind".into(),
            ));
        };
        let left_outer = step.join == JoinKind::Left;
        // Per output row: its stream row, and its table row (0: none, i: found[i - 1]).
        let mut take = Vec::with_capacity(n);
        let mut pick = Vec::with_capacity(n);
        let mut found: Vec<&RecordBatch> = Vec::new();
        let mut metas = Vec::with_capacity(n);
        for r in 0..n {
            let kv = ScalarValue::try_from_array(&keys, r).map_err(eval_err)?;
            let row = if kv.is_null() { None } else { table.get(&kv) };
            match row {
                Some(b) => {
                    found.push(b);
                    pick.push(found.len());
                }
                None if left_outer => pick.push(0),
                None => continue,
            }
            take.push(r as u32);
            metas.push(Meta {
                key: vec![kv],
                deleted: false,
                force: false,
            });
        }
        if take.is_empty() {
            return Ok(());
        }
        let left = take_record_batch(&wide, &UInt32Array::from(take))?;
        let input = &self.plan.inputs[1];
        let (off, width) = (input.offset, input.schema.fields().len());
        let schema = self.plan.joined_schema.clone();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (j, f) in schema.fields().iter().enumerate() {
            if j < off || j >= off + width {
                cols.push(left.column(j).clone());
                continue;
            }
            let mut sources: Vec<ArrayRef> = vec![self.nulls[j].clone()];
            for b in &found {
                let c = b.column(j - off);
                sources.push(if c.data_type() == f.data_type() {
                    c.clone()
                } else {
                    cast(c, f.data_type())?
                });
            }
            let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
            let indices: Vec<(usize, usize)> = pick.iter().map(|&p| (p, 0)).collect();
            cols.push(arrow::compute::interleave(&refs, &indices)?);
        }
        let joined = RecordBatch::try_new(schema, cols)?;
        self.emit_joined(joined, &metas, out)
    }

    /// Input 0's rows as joined rows: its columns in place, NULL for every other input.
    fn widen_first(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let first = &self.plan.inputs[0];
        let width = first.schema.fields().len();
        let schema = &self.plan.joined_schema;
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (j, f) in schema.fields().iter().enumerate() {
            let c = if j < 3 {
                Some(batch.column(j).clone())
            } else if j >= first.offset && j < first.offset + width {
                Some(batch.column(j - first.offset).clone())
            } else {
                None
            };
            cols.push(match c {
                Some(c) if c.data_type() == f.data_type() => c,
                Some(c) => cast(&c, f.data_type())?,
                None => new_null_array(f.data_type(), n),
            });
        }
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }

    /// The joined row of `left` (a joined row, or none) and `right` (a row of input `k`, or
    /// none), with timestamp `ts`; partition and offset come from `trigger`.
    fn merge(
        &self,
        k: usize,
        left: Option<&RecordBatch>,
        right: Option<&RecordBatch>,
        ts: i64,
        trigger: &RecordBatch,
    ) -> Result<RecordBatch> {
        let schema = &self.plan.joined_schema;
        let input = &self.plan.inputs[k];
        let (off, width) = (input.offset, input.schema.fields().len());
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        cols.push(Arc::new(Int64Array::from(vec![ts])));
        cols.push(trigger.column(1).clone());
        cols.push(trigger.column(2).clone());
        for (j, f) in schema.fields().iter().enumerate().skip(3) {
            let c = if j >= off && j < off + width {
                right.map(|r| r.column(j - off).clone())
            } else if j < off {
                left.map(|l| l.column(j).clone())
            } else {
                None
            };
            cols.push(match c {
                Some(c) if c.data_type() == f.data_type() => c,
                Some(c) => cast(&c, f.data_type())?,
                None => self.nulls[j].clone(),
            });
        }
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }

    /// A row's join key; NULL (which joins nothing) where the expression fails on it.
    fn key_of(
        expr: &Arc<dyn PhysicalExpr>,
        row: &RecordBatch,
        errors: &mut Vec<RowError>,
    ) -> Result<ScalarValue> {
        let a = eval::evaluate(expr, row, Purpose::JoinKey, errors)?;
        ScalarValue::try_from_array(&a, 0).map_err(eval_err)
    }

    /// Runs rows through steps `from..`, and emits what comes out of the last.
    fn cascade(
        &mut self,
        from: usize,
        mut rows: Vec<Row>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut k = from;
        while k <= self.plan.steps.len() && !rows.is_empty() {
            let mut next = Vec::new();
            for row in rows {
                self.left_arrival(k, row, &mut next)?;
            }
            rows = next;
            k += 1;
        }
        if !rows.is_empty() {
            self.emit(rows, out)?;
        }
        Ok(())
    }

    /// A row of the left side of step `k` (joining input `k`).
    fn left_arrival(&mut self, k: usize, row: Row, next: &mut Vec<Row>) -> Result<()> {
        let step = self.plan.steps[k - 1].clone();
        let kv = Self::key_of(&step.left_key, &row.batch, &mut self.errors)?;
        let ts = ts_of(&row.batch);
        let mut state = std::mem::replace(
            &mut self.steps[k - 1],
            StepState::StreamTable(Default::default()),
        );
        let result = (|| -> Result<()> {
            match (&mut state, step.kind) {
                (StepState::StreamTable(table), _) => {
                    if row.deleted {
                        return Ok(());
                    }
                    let found = if kv.is_null() { None } else { table.get(&kv) };
                    if found.is_none() && step.join != JoinKind::Left {
                        return Ok(());
                    }
                    let batch = self.merge(k, Some(&row.batch), found, ts, &row.batch)?;
                    next.push(Row {
                        batch,
                        key: vec![kv],
                        deleted: false,
                        force: false,
                    });
                }
                (
                    StepState::StreamStream(ss),
                    StepKind::StreamStream {
                        before,
                        after,
                        grace,
                    },
                ) => {
                    if row.deleted || kv.is_null() {
                        return Ok(());
                    }
                    let mk = window_key(&kv, &row.batch, step.window)?;
                    self.stream_stream(
                        k,
                        ss,
                        true,
                        (kv, mk),
                        row.batch,
                        ts,
                        (before, after, grace),
                        step.join,
                        next,
                    )?;
                }
                (StepState::Tables(t), _) => {
                    if kv.is_null() {
                        return Ok(());
                    }
                    if row.deleted {
                        t.left.remove(&kv);
                    } else {
                        t.left.insert(kv.clone(), owned_row(&row.batch, 0)?);
                    }
                    self.dirty.mark(ns(k, NS_LEFT), std::slice::from_ref(&kv));
                    self.tables_changed(k, t, &kv, step.join, &row.batch, next)?;
                }
                (StepState::ForeignKey(fk), _) => {
                    let id = row.key.clone();
                    let existed = match fk.left.remove(&id) {
                        Some((old, _)) => {
                            if let Some(ids) = fk.by_fk.get_mut(&old) {
                                ids.retain(|x| *x != id);
                                if ids.is_empty() {
                                    fk.by_fk.remove(&old);
                                }
                            }
                            true
                        }
                        None => false,
                    };
                    self.dirty.mark(ns(k, NS_LEFT), &id);
                    if row.deleted {
                        if existed {
                            let batch = self.merge(k, Some(&row.batch), None, ts, &row.batch)?;
                            next.push(Row {
                                batch,
                                key: id,
                                deleted: true,
                                force: true,
                            });
                        }
                        return Ok(());
                    }
                    fk.left
                        .insert(id.clone(), (kv.clone(), owned_row(&row.batch, 0)?));
                    if !kv.is_null() {
                        fk.by_fk.entry(kv.clone()).or_default().push(id.clone());
                    }
                    // A new left row without a match emits nothing; an updated one
                    // retracts its previous result.
                    self.fk_emit(k, fk, &id, step.join, &row.batch, existed, next)?;
                }
                (StepState::StreamStream(_), _) => {
                    return Err(RuntimeError::Plan(
                        "a join step's state does not fit its kind".into(),
                    ))
                }
            }
            Ok(())
        })();
        self.steps[k - 1] = state;
        result
    }

    /// A row of input `k` (the right side of step `k`).
    fn right_arrival(
        &mut self,
        k: usize,
        row: &RecordBatch,
        deleted: bool,
        next: &mut Vec<Row>,
    ) -> Result<()> {
        let step = self.plan.steps[k - 1].clone();
        let kv = Self::key_of(&step.right_key, row, &mut self.errors)?;
        let ts = ts_of(row);
        let mut state = std::mem::replace(
            &mut self.steps[k - 1],
            StepState::StreamTable(Default::default()),
        );
        let result = (|| -> Result<()> {
            // A table on the right: its current row per key changes first.
            if let Some(rows) = state.right_rows() {
                if kv.is_null() {
                    return Ok(());
                }
                if deleted {
                    rows.remove(&kv);
                } else {
                    rows.insert(kv.clone(), owned_row(row, 0)?);
                }
                self.dirty.mark(ns(k, NS_RIGHT), std::slice::from_ref(&kv));
            }
            match (&mut state, step.kind) {
                // Stream rows look the table up; its changes emit nothing.
                (StepState::StreamTable(_), _) => {}
                (
                    StepState::StreamStream(ss),
                    StepKind::StreamStream {
                        before,
                        after,
                        grace,
                    },
                ) => {
                    if deleted || kv.is_null() {
                        return Ok(());
                    }
                    // A right row's window bounds follow its pseudo columns.
                    let window = step.window.map(|(_, _, session)| (3, 4, session));
                    let mk = window_key(&kv, row, window)?;
                    self.stream_stream(
                        k,
                        ss,
                        false,
                        (kv, mk),
                        row.clone(),
                        ts,
                        (before, after, grace),
                        step.join,
                        next,
                    )?;
                }
                (StepState::Tables(t), _) => {
                    self.tables_changed(k, t, &kv, step.join, row, next)?;
                }
                (StepState::ForeignKey(fk), _) => {
                    let ids = fk.by_fk.get(&kv).cloned().unwrap_or_default();
                    for id in ids {
                        self.fk_emit(k, fk, &id, step.join, row, true, next)?;
                    }
                }
                (StepState::StreamStream(_), _) => {
                    return Err(RuntimeError::Plan(
                        "a join step's state does not fit its kind".into(),
                    ))
                }
            }
            Ok(())
        })();
        self.steps[k - 1] = state;
        result
    }

    /// A stream–stream join row of either side.
    #[allow(clippy::too_many_arguments)]
    fn stream_stream(
        &mut self,
        k: usize,
        ss: &mut StreamStream,
        is_left: bool,
        (kv, mk): (ScalarValue, ScalarValue),
        row: RecordBatch,
        ts: i64,
        (before, after, grace): (i64, i64, Option<i64>),
        join: JoinKind,
        next: &mut Vec<Row>,
    ) -> Result<()> {
        let effective_grace = grace.unwrap_or_else(|| (LEGACY_GRACE_MS - before - after).max(0));
        let retention = before + after + effective_grace;
        let lane = partition_of(&row, 0);
        ss.times.observe(lane, ts);
        // The sequence number moves on below, so the entry is written either way.
        self.dirty.mark(ns(k, NS_SS_TIME), &[]);
        let stream_time = ss.times.get(lane);
        // Outer rows whose window has closed go first, as in Kafka Streams.
        if grace.is_some() && ts == stream_time {
            self.emit_closed(k, ss, before, after, effective_grace, next)?;
        }
        // The other side's rows within the window, in timestamp order.
        let (from, to) = if is_left {
            (ts - before, ts + after)
        } else {
            (ts - after, ts + before)
        };
        let live_from = stream_time.saturating_sub(retention);
        let others = if is_left { &ss.right } else { &ss.left };
        let mut matches: Vec<(i64, u64, RecordBatch)> = others
            .get(&mk)
            .map(|v| {
                v.iter()
                    .filter(|(t, _, _)| *t >= from && *t <= to && *t > live_from)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        matches.sort_by_key(|(t, s, _)| (*t, *s));
        let outer_here = match join {
            JoinKind::Inner => false,
            JoinKind::Left => is_left,
            JoinKind::Right => !is_left,
            JoinKind::Full => true,
        };
        for (ot, _, other) in &matches {
            // The other side's row found a match: it no longer waits as an outer row.
            if grace.is_some() {
                let gone: Vec<(i64, u64)> = ss
                    .outer
                    .range((*ot, 0)..=(*ot, u64::MAX))
                    .filter(|(_, (side, key, _))| *side != is_left && *key == mk)
                    .map(|(k, _)| *k)
                    .collect();
                for g in gone {
                    ss.outer.remove(&g);
                    self.dirty.mark(
                        ns(k, NS_SS_OUTER),
                        &[
                            ScalarValue::Int64(Some(g.0)),
                            ScalarValue::UInt64(Some(g.1)),
                        ],
                    );
                }
            }
            let (l, r) = if is_left {
                (&row, other)
            } else {
                (other, &row)
            };
            let batch = self.merge(k, Some(l), Some(r), ts.max(*ot), &row)?;
            next.push(Row {
                batch,
                key: vec![kv.clone()],
                deleted: false,
                force: false,
            });
        }
        ss.seq += 1;
        let seq = ss.seq;
        if matches.is_empty() && outer_here {
            if grace.is_none() || (if is_left { ts + after } else { ts + before }) < stream_time {
                let batch = if is_left {
                    self.merge(k, Some(&row), None, ts, &row)?
                } else {
                    self.merge(k, None, Some(&row), ts, &row)?
                };
                next.push(Row {
                    batch,
                    key: vec![kv.clone()],
                    deleted: false,
                    force: false,
                });
            } else {
                ss.outer
                    .insert((ts, seq), (is_left, mk.clone(), owned_row(&row, 0)?));
                self.dirty.mark(
                    ns(k, NS_SS_OUTER),
                    &[ScalarValue::Int64(Some(ts)), ScalarValue::UInt64(Some(seq))],
                );
            }
        }
        // Buffer the row unless it is already past retention: then Kafka Streams' window
        // store drops it (and counts it as dropped).
        if ts <= live_from {
            self.late += 1;
        } else {
            let own = if is_left { &mut ss.left } else { &mut ss.right };
            let list = own.entry(mk.clone()).or_default();
            list.retain(|(t, _, _)| *t > live_from);
            list.push((ts, seq, owned_row(&row, 0)?));
            let part = if is_left { NS_SS_LEFT } else { NS_SS_RIGHT };
            self.dirty.mark(ns(k, part), std::slice::from_ref(&mk));
        }
        Ok(())
    }

    /// Emits the outer rows whose join window (and grace period) has passed.
    fn emit_closed(
        &mut self,
        k: usize,
        ss: &mut StreamStream,
        before: i64,
        after: i64,
        grace: i64,
        next: &mut Vec<Row>,
    ) -> Result<()> {
        let mut done = Vec::new();
        let step = self.plan.steps[k - 1].clone();
        // Each outer row closes by its own partition's stream time; none after the first
        // that not even the newest partition's time closes can have closed.
        let newest = ss.times.max();
        for (&(t, s), (is_left, _, row)) in &ss.outer {
            if t.saturating_add(before.min(after)).saturating_add(grace) >= newest {
                break;
            }
            let look = if *is_left { after } else { before };
            if t + look + grace >= ss.times.get(partition_of(row, 0)) {
                continue;
            }
            // The outer store holds the matching key; the result is keyed by the join key.
            // A failure was logged when the row arrived.
            let logged = &mut Vec::new();
            let kv = if *is_left {
                Self::key_of(&step.left_key, row, logged)?
            } else {
                Self::key_of(&step.right_key, row, logged)?
            };
            let batch = if *is_left {
                self.merge(k, Some(row), None, t, row)?
            } else {
                self.merge(k, None, Some(row), t, row)?
            };
            next.push(Row {
                batch,
                key: vec![kv],
                deleted: false,
                force: false,
            });
            done.push((t, s));
        }
        for d in done {
            ss.outer.remove(&d);
            self.dirty.mark(
                ns(k, NS_SS_OUTER),
                &[
                    ScalarValue::Int64(Some(d.0)),
                    ScalarValue::UInt64(Some(d.1)),
                ],
            );
        }
        Ok(())
    }

    /// The joined row of a key after a change on either side of a table–table join, or its
    /// tombstone.
    fn tables_changed(
        &self,
        k: usize,
        t: &Tables,
        kv: &ScalarValue,
        join: JoinKind,
        trigger: &RecordBatch,
        next: &mut Vec<Row>,
    ) -> Result<()> {
        let l = t.left.get(kv);
        let r = t.right.get(kv);
        let alive = match join {
            JoinKind::Inner => l.is_some() && r.is_some(),
            JoinKind::Left => l.is_some(),
            JoinKind::Right => r.is_some(),
            JoinKind::Full => l.is_some() || r.is_some(),
        };
        let ts = if alive {
            l.map(ts_of)
                .unwrap_or(i64::MIN)
                .max(r.map(ts_of).unwrap_or(i64::MIN))
        } else {
            ts_of(trigger)
        };
        let batch = self.merge(k, l, r, ts, trigger)?;
        next.push(Row {
            batch,
            key: vec![kv.clone()],
            deleted: !alive,
            force: false,
        });
        Ok(())
    }

    /// The joined row of a left row of a foreign-key join (timestamped by the change that
    /// caused it), or, when `retract`, its tombstone.
    #[allow(clippy::too_many_arguments)]
    fn fk_emit(
        &self,
        k: usize,
        fk: &ForeignKey,
        id: &[ScalarValue],
        join: JoinKind,
        trigger: &RecordBatch,
        retract: bool,
        next: &mut Vec<Row>,
    ) -> Result<()> {
        let Some((fkv, l)) = fk.left.get(id) else {
            return Ok(());
        };
        let r = if fkv.is_null() {
            None
        } else {
            fk.right.get(fkv)
        };
        let alive = r.is_some() || join == JoinKind::Left;
        if !alive && !retract {
            return Ok(());
        }
        let batch = self.merge(k, Some(l), r, ts_of(trigger), trigger)?;
        next.push(Row {
            batch,
            key: id.to_vec(),
            deleted: !alive,
            force: true,
        });
        Ok(())
    }

    /// The last step's rows: WHERE, then the projection; a table result also tracks which
    /// keys have a row, so that deletions become tombstones only for those.
    fn emit(&mut self, rows: Vec<Row>, out: &mut Vec<RecordBatch>) -> Result<()> {
        let schema = self.plan.joined_schema.clone();
        let mut batches = Vec::with_capacity(rows.len());
        for r in &rows {
            match self.plan.synthetic_key {
                Some(i) => {
                    let mut cols = r.batch.columns().to_vec();
                    let key = r.key.first().cloned().unwrap_or(ScalarValue::Null);
                    let a = key.to_array().map_err(eval_err)?;
                    let want = schema.field(i).data_type();
                    cols[i] = if a.data_type() == want {
                        a
                    } else {
                        cast(&a, want)?
                    };
                    batches.push(RecordBatch::try_new(schema.clone(), cols)?);
                }
                None => batches.push(r.batch.clone()),
            }
        }
        let joined = concat_batches(&schema, &batches)?;
        let metas: Vec<Meta> = rows
            .into_iter()
            .map(|r| Meta {
                key: r.key,
                deleted: r.deleted,
                force: r.force,
            })
            .collect();
        self.emit_joined(joined, &metas, out)
    }

    /// [`JoinOperator::emit`] of joined rows already in one batch, `rows` saying each one's
    /// key and whether it deletes.
    fn emit_joined(
        &mut self,
        joined: RecordBatch,
        rows: &[Meta],
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        if self.plan.rows_only {
            // The joined rows feed another operator, which applies WHERE itself; runs of
            // changes and deletions go separately, in order.
            let mut start = 0;
            while start < rows.len() {
                let deleted = rows[start].deleted;
                let mut end = start + 1;
                while end < rows.len() && rows[end].deleted == deleted {
                    end += 1;
                }
                out.push(joined.slice(start, end - start));
                self.deleted_runs.push(deleted);
                start = end;
            }
            return Ok(());
        }
        let n = joined.num_rows();
        let passes: Vec<bool> = match &self.plan.filter {
            None => vec![true; n],
            Some(f) => {
                let m = eval::predicate(f, &joined, &mut self.errors)?;
                (0..n).map(|i| !m.is_null(i) && m.value(i)).collect()
            }
        };
        let mut take = Vec::new();
        let mut tombstones = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if !self.plan.tables {
                if passes[i] && !r.deleted {
                    take.push(i as u32);
                }
                continue;
            }
            if !r.deleted && passes[i] {
                if self.emitted.insert(r.key.clone()) {
                    self.dirty.mark(NS_EMITTED, &r.key);
                }
                take.push(i as u32);
                tombstones.push(false);
            } else if self.emitted.remove(&r.key) || (r.deleted && r.force) {
                self.dirty.mark(NS_EMITTED, &r.key);
                take.push(i as u32);
                tombstones.push(true);
            }
        }
        if take.is_empty() {
            return Ok(());
        }
        let chosen = take_record_batch(&joined, &UInt32Array::from(take.clone()))?;
        let m = chosen.num_rows();
        let mut cols: Vec<ArrayRef> = chosen.columns()[..3].to_vec();
        // A windowed result's bounds: the first input's window.
        let bounds = if self.plan.window().is_some() {
            let off = self.plan.inputs[0].offset;
            cols.push(chosen.column(off + 3).clone());
            cols.push(chosen.column(off + 4).clone());
            2
        } else {
            0
        };
        let key_count = self
            .plan
            .output
            .columns
            .iter()
            .filter(|c| c.namespace == brook_planner::schema::Namespace::Key)
            .count();
        for (j, p) in self.plan.projections.iter().enumerate() {
            let want = self.output_schema.field(3 + bounds + j).data_type();
            let a = if j < key_count && !self.plan.partitioned {
                // Key columns hold the join's key.
                let vals: Vec<ScalarValue> = take
                    .iter()
                    .map(|&i| {
                        rows[i as usize]
                            .key
                            .get(j)
                            .cloned()
                            .unwrap_or(ScalarValue::Null)
                    })
                    .collect();
                if vals.iter().all(|v| v.is_null()) {
                    new_null_array(want, m)
                } else {
                    ScalarValue::iter_to_array(vals.into_iter().map(|v| {
                        if v.is_null() {
                            ScalarValue::try_from(want).unwrap_or(ScalarValue::Null)
                        } else {
                            v
                        }
                    }))
                    .map_err(eval_err)?
                }
            } else {
                let purpose = Purpose::Column(&p.column.name, j);
                eval::evaluate(&p.expr, &chosen, purpose, &mut self.errors)?
            };
            cols.push(if a.data_type() == want {
                a
            } else {
                cast(&a, want)?
            });
        }
        if self.plan.tables {
            cols.push(Arc::new(BooleanArray::from(tombstones)));
        }
        out.push(RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(m)),
        )?);
        Ok(())
    }

    /// Which of the batches emitted since the last call hold deletions (a table join
    /// feeding an aggregation).
    pub fn take_deleted_runs(&mut self) -> Vec<bool> {
        std::mem::take(&mut self.deleted_runs)
    }

    /// Whether a changelog entry's namespace is the join's (an aggregation fed by the join
    /// uses letters).
    pub fn owns_namespace(space: u8) -> bool {
        space == NS_EMITTED || space < b'a'
    }

    /// Whether input `k` is a table (its null values delete).
    pub fn input_is_table(&self, k: usize) -> bool {
        self.plan
            .inputs
            .get(k)
            .is_some_and(|i| i.source.kind == SourceKind::Table)
    }
}

impl JoinOperator {
    /// The state entries changed since the last call (see [`crate::state`]).
    pub fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for (space, keys) in self.dirty.take() {
            let key = scalar_key(space, &keys)?;
            let value = self.entry(space, &keys)?;
            out.push(StateChange { key, value });
        }
        Ok(())
    }

    /// The bytes of one state entry, or `None` when it is gone.
    fn entry(&self, space: u8, keys: &[ScalarValue]) -> Result<Option<Vec<u8>>> {
        if space == NS_EMITTED {
            return Ok(self.emitted.contains(keys).then(Vec::new));
        }
        let k = (space / 8) as usize;
        let part = space % 8;
        let Some(state) = self.steps.get(k.wrapping_sub(1)) else {
            return Ok(None);
        };
        let one = keys.first();
        let mut w = Writer::default();
        let batch_value = |b: Option<&RecordBatch>, mut w: Writer| -> Result<Option<Vec<u8>>> {
            match b {
                Some(b) => {
                    w.batch(b)?;
                    Ok(Some(w.buf))
                }
                None => Ok(None),
            }
        };
        match (state, part) {
            (StepState::StreamStream(ss), NS_SS_LEFT | NS_SS_RIGHT) => {
                let side = if part == NS_SS_LEFT {
                    &ss.left
                } else {
                    &ss.right
                };
                let Some(list) = one.and_then(|kv| side.get(kv)).filter(|l| !l.is_empty()) else {
                    return Ok(None);
                };
                w.u32(list.len() as u32);
                for (t, s, b) in list {
                    w.i64(*t);
                    w.i64(*s as i64);
                    w.batch(b)?;
                }
                Ok(Some(w.buf))
            }
            (StepState::StreamStream(ss), NS_SS_OUTER) => {
                let (Some(ScalarValue::Int64(Some(t))), Some(ScalarValue::UInt64(Some(s)))) =
                    (keys.first(), keys.get(1))
                else {
                    return Ok(None);
                };
                let Some((is_left, kv, b)) = ss.outer.get(&(*t, *s)) else {
                    return Ok(None);
                };
                w.u8(*is_left as u8);
                w.scalar(kv)?;
                w.batch(b)?;
                Ok(Some(w.buf))
            }
            (StepState::StreamStream(ss), NS_SS_TIME) => {
                // The single time of entries from before per-partition stream time, the
                // sequence, then each partition's time.
                w.i64(ss.times.base());
                w.i64(ss.seq as i64);
                ss.times.write_partitions(&mut w);
                Ok(Some(w.buf))
            }
            (StepState::StreamTable(t), NS_RIGHT) => batch_value(one.and_then(|kv| t.get(kv)), w),
            (StepState::Tables(t), NS_LEFT) => batch_value(one.and_then(|kv| t.left.get(kv)), w),
            (StepState::Tables(t), NS_RIGHT) => batch_value(one.and_then(|kv| t.right.get(kv)), w),
            (StepState::ForeignKey(fk), NS_LEFT) => match fk.left.get(keys) {
                Some((fkv, b)) => {
                    w.scalar(fkv)?;
                    w.batch(b)?;
                    Ok(Some(w.buf))
                }
                None => Ok(None),
            },
            (StepState::ForeignKey(fk), NS_RIGHT) => {
                batch_value(one.and_then(|kv| fk.right.get(kv)), w)
            }
            _ => Ok(None),
        }
    }

    /// Puts back an entry of a previous run's changelog.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (space, keys) = read_scalar_key(key)?;
        if space == NS_EMITTED {
            self.emitted.insert(keys);
            return Ok(());
        }
        let k = (space / 8) as usize;
        let part = space % 8;
        let bad = || RuntimeError::State(format!("unknown join state namespace {space}"));
        let state = self.steps.get_mut(k.wrapping_sub(1)).ok_or_else(bad)?;
        let mut r = Reader::new(value);
        let one = keys.first().cloned().unwrap_or(ScalarValue::Null);
        match (state, part) {
            (StepState::StreamStream(ss), NS_SS_LEFT | NS_SS_RIGHT) => {
                let n = r.u32()?;
                let mut list = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let t = r.i64()?;
                    let s = r.i64()? as u64;
                    list.push((t, s, r.batch()?));
                }
                let side = if part == NS_SS_LEFT {
                    &mut ss.left
                } else {
                    &mut ss.right
                };
                side.insert(one, list);
            }
            (StepState::StreamStream(ss), NS_SS_OUTER) => {
                let (Some(ScalarValue::Int64(Some(t))), Some(ScalarValue::UInt64(Some(s)))) =
                    (keys.first(), keys.get(1))
                else {
                    return Err(bad());
                };
                let is_left = r.u8()? != 0;
                let kv = r.scalar()?;
                ss.outer.insert((*t, *s), (is_left, kv, r.batch()?));
            }
            (StepState::StreamStream(ss), NS_SS_TIME) => {
                let base = r.i64()?;
                ss.seq = r.i64()? as u64;
                // Two values (16 bytes): an entry from before per-partition stream time,
                // whose one time becomes every partition's starting point.
                ss.times = StreamTimes::read(base, &mut r, value.len() > 16)?;
            }
            (StepState::StreamTable(t), NS_RIGHT) => {
                t.insert(one, r.batch()?);
            }
            (StepState::Tables(t), NS_LEFT) => {
                t.left.insert(one, r.batch()?);
            }
            (StepState::Tables(t), NS_RIGHT) => {
                t.right.insert(one, r.batch()?);
            }
            (StepState::ForeignKey(fk), NS_LEFT) => {
                let fkv = r.scalar()?;
                let b = r.batch()?;
                if !fkv.is_null() {
                    fk.by_fk.entry(fkv.clone()).or_default().push(keys.clone());
                }
                fk.left.insert(keys, (fkv, b));
            }
            (StepState::ForeignKey(fk), NS_RIGHT) => {
                fk.right.insert(one, r.batch()?);
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
}

//! A persistent query's processing step, shared by the deterministic driver and the Kafka
//! task: records of the input topic in, encoded records for the sink topic out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use brook_planner::catalog::{Catalog, Source};

use crate::aggregate::AggregateOperator;
use crate::error::{Result, RuntimeError};
use crate::join::JoinOperator;
use crate::materialized::{Materialized, Shared, NS_MATERIALIZED};
use crate::operator::{FilterProject, Operator};
use crate::rows::{decode_records, encode_batch_with, Record};
use crate::session::{QueryPlan, QuerySpec};

/// A record to write to the sink topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// The outcome of one batch: outputs in order, and the input records (by index) that could
/// not be processed, with the reason (ksqlDB's processing log).
#[derive(Debug, Default)]
pub struct Processed {
    pub outputs: Vec<Output>,
    pub errors: Vec<(usize, String)>,
    /// A capturing pipeline's results as row batches (see [`Pipeline::capture`]).
    pub batches: Vec<RecordBatch>,
    /// Input records dropped as late: a windowed aggregation's record whose windows had
    /// all closed by its partition's stream time, a stream–stream join's record past the
    /// join window's retention (Kafka Streams' dropped-records count).
    pub late: u64,
    /// Rows an expression failed on: unlike `errors`, their records were processed, with
    /// NULL for what failed (or left out by a predicate or GROUP BY), as in ksqlDB. Each
    /// is one processing-log entry.
    pub row_errors: Vec<crate::eval::RowError>,
}

pub struct Pipeline {
    pub id: String,
    pub source: Source,
    pub sink: Source,
    /// A join's inputs after the first (`source`), in FROM order.
    pub others: Vec<Source>,
    operator: Box<dyn Operator>,
    join: Option<JoinOperator>,
    /// A record without a value never passes a filter.
    filters: bool,
    /// Records without a value delete their key's row (an aggregation over a table).
    deletes: bool,
    /// The catalog's `CREATE TYPE`s (its sources are left out: every pipeline keeping a
    /// copy of every source made a server's memory grow with the square of its queries).
    types: Catalog,
    /// A table sink's current rows, for pull queries.
    materialized: Option<Shared>,
    /// Whether results are written to the sink topic; a source table's materialization
    /// only keeps them for pull queries.
    emits: bool,
    /// PARTITION BY re-keys every row (see [`encode_batch_with`]).
    rekeyed: bool,
    /// The join's rows go on to `operator` (an aggregation of a join).
    join_feeds: bool,
    /// Results stay row batches in [`Processed::batches`] (a transient push query).
    capture: bool,
    /// The aggregation's count of late records (see [`AggregateOperator::late_counter`]).
    late: Option<Arc<AtomicU64>>,
    /// How the input splits among state partitions (see [`Route`]).
    route: Route,
}

/// How a stateful query's input splits among its state partitions, each a pipeline with
/// its own state (`docs/parallelism.md`): a record must reach the partition that holds
/// the state it updates.
#[derive(Clone)]
pub enum Route {
    /// One state partition only: a join (its sides' keys need not line up with their
    /// partitions) or an aggregation of a table by other than its key (a row's old and new
    /// groups may differ, and its retraction must meet the row's previous group).
    Single,
    /// The input partition decides: the state is keyed by the source's own key, so
    /// Kafka's partitioner already put each key's records in one partition (where ksqlDB
    /// needs no repartition).
    ByPartition,
    /// The key decides — an aggregation's GROUP BY values, a join's expressions on each
    /// side: ksqlDB's repartition topic, done in process.
    ByKey(Arc<KeyRoute>),
}

/// What routing by key needs, per input (`None`: that input's records go by partition).
pub struct KeyRoute {
    sides: Vec<Option<SideKey>>,
}

/// An input's decoding and the expressions, over its own row, whose values route it.
struct SideKey {
    source: Source,
    types: Catalog,
    exprs: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
}

impl Route {
    /// The aggregation's route: by partition where the GROUP BY is the source's own key
    /// (an unwindowed source: a windowed key's partition depends on its window too).
    fn of_aggregate(
        p: &brook_planner::aggregate::AggregatePlan,
        source: &Source,
        types: &Catalog,
    ) -> Route {
        if p.join.is_some() {
            return Route::Single;
        }
        let mut grouped: Vec<&str> = p
            .group_by
            .iter()
            .filter_map(|e| {
                e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                    .map(|c| c.name())
            })
            .collect();
        let mut keys: Vec<&str> = source
            .schema
            .key_columns()
            .map(|c| c.name.as_str())
            .collect();
        grouped.sort_unstable();
        keys.sort_unstable();
        if source.window.is_none() && grouped.len() == p.group_by.len() && grouped == keys {
            return Route::ByPartition;
        }
        if p.retract_by.is_some() {
            return Route::Single;
        }
        Route::ByKey(Arc::new(KeyRoute {
            sides: vec![Some(SideKey {
                source: source.clone(),
                types: types_only(types),
                exprs: p.group_by.clone(),
            })],
        }))
    }

    /// A join's route. Two unwindowed inputs joined key to key (one key column each, of
    /// one type and format): by partition, since Kafka's partitioner put a key's rows of
    /// both topics in the same partition number — ksqlDB's co-partitioning, which the
    /// engine also checks by the topics' partition counts. Joined on a column of the
    /// left input (a stream) instead: by key, each side by the value of its side of the
    /// ON clause (ksqlDB repartitions the stream). Any other join (foreign key, N-way,
    /// windowed inputs, an expression) stays one partition.
    fn of_join(p: &brook_planner::join::JoinPlan, types: &Catalog) -> Route {
        use brook_planner::join::StepKind;
        let ([step], [left, right]) = (p.steps.as_slice(), p.inputs.as_slice()) else {
            return Route::Single;
        };
        if matches!(step.kind, StepKind::ForeignKey)
            || left.source.window.is_some()
            || right.source.window.is_some()
            || left.source.key_format != right.source.key_format
        {
            return Route::Single;
        }
        let key = |input: &brook_planner::join::JoinInput| {
            let keys: Vec<_> = input.source.schema.key_columns().collect();
            match keys.as_slice() {
                [k] => input
                    .schema
                    .index_of(&k.name)
                    .ok()
                    .map(|i| (i, k.ty.clone())),
                _ => None,
            }
        };
        let column = |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .map(|c| c.index())
        };
        match (key(left), key(right)) {
            (Some((l, lt)), Some((r, rt)))
                if lt == rt
                    && column(&step.left_key) == Some(l + left.offset)
                    && column(&step.right_key) == Some(r) =>
            {
                return Route::ByPartition;
            }
            _ => {}
        }
        // The left key as a column of the left input's own row.
        let width = left.schema.fields().len();
        let (Some(l), Some(_)) = (column(&step.left_key), column(&step.right_key)) else {
            return Route::Single;
        };
        let Some(own) = l.checked_sub(left.offset).filter(|i| *i < width) else {
            return Route::Single;
        };
        let name = left.schema.field(own).name();
        let left_key: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
            datafusion::physical_expr::expressions::Column::new(name, own),
        );
        let side = |input: &brook_planner::join::JoinInput, key| SideKey {
            source: input.source.clone(),
            types: types_only(types),
            exprs: vec![key],
        };
        Route::ByKey(Arc::new(KeyRoute {
            sides: vec![
                Some(side(left, left_key)),
                Some(side(right, step.right_key.clone())),
            ],
        }))
    }

    /// Whether more than one state partition can share the input.
    pub fn splits(&self) -> bool {
        !matches!(self, Route::Single)
    }

    /// The state partition (of `n`) of each record; `sides` says which input each is of
    /// (a join reads two). A record whose key cannot be computed (it does not decode: its
    /// partition's pipeline logs it) goes by its partition.
    pub fn assign(&self, records: &[Record], sides: &[usize], n: usize) -> Vec<usize> {
        let by_partition = |r: &Record| usize::try_from(r.partition).map_or(0, |p| p % n.max(1));
        let mut out: Vec<usize> = records.iter().map(by_partition).collect();
        if let Route::ByKey(k) = self {
            if n > 1 {
                k.assign(records, sides, n, &mut out);
            }
        }
        out
    }
}

impl KeyRoute {
    fn assign(&self, records: &[Record], sides: &[usize], n: usize, out: &mut [usize]) {
        for (side, key) in self.sides.iter().enumerate() {
            let Some(key) = key else { continue };
            let side_of = |i: usize| sides.get(i).copied().unwrap_or(0);
            let mine: Vec<usize> = (0..records.len()).filter(|i| side_of(*i) == side).collect();
            if mine.is_empty() {
                continue;
            }
            let mut slots = vec![0; mine.len()];
            // Best effort by design: a record left by partition is reported by the
            // pipeline that gets it.
            let routed = if mine.len() == records.len() {
                key.assign(records, n, &mut slots)
            } else {
                let subset: Vec<Record> = mine.iter().map(|i| records[*i].clone()).collect();
                key.assign(&subset, n, &mut slots)
            };
            if routed.is_ok() {
                for (i, slot) in mine.into_iter().zip(slots) {
                    out[i] = slot;
                }
            }
        }
    }
}

impl SideKey {
    /// Fills `out` with each record's state partition: a record that does not decode
    /// keeps the slot it had.
    fn assign(&self, records: &[Record], n: usize, out: &mut [usize]) -> Result<()> {
        for (slot, r) in out.iter_mut().zip(records) {
            *slot = usize::try_from(r.partition).map_or(0, |p| p % n.max(1));
        }
        let decoded = decode_records(&self.source, records, &self.types)?;
        let Some(batch) = decoded.batch else {
            return Ok(());
        };
        let failed: std::collections::HashSet<usize> =
            decoded.errors.iter().map(|(i, _)| *i).collect();
        let rows: Vec<usize> = (0..records.len()).filter(|i| !failed.contains(i)).collect();
        // A key that fails on a row is NULL, as the pipeline computes it (and logs it).
        let mut logged_by_pipeline = Vec::new();
        let keys = self
            .exprs
            .iter()
            .map(|e| {
                let purpose = crate::eval::Purpose::JoinKey;
                crate::eval::evaluate(e, &batch, purpose, &mut logged_by_pipeline)
            })
            .collect::<Result<Vec<_>>>()?;
        for (row, i) in rows.into_iter().enumerate() {
            let mut hash = Fnv::default();
            for k in &keys {
                if k.is_null(row) {
                    hash.write(&[0]);
                } else {
                    hash.write(&[1]);
                    let text = arrow::util::display::array_value_to_string(k, row)
                        .map_err(|e| RuntimeError::Eval(e.to_string()))?;
                    hash.write(text.as_bytes());
                }
            }
            if let Some(slot) = out.get_mut(i) {
                *slot = (hash.0 % n as u64) as usize;
            }
        }
        Ok(())
    }
}

/// FNV-1a: a key's state partition must stay the same across restarts and Brook
/// versions (its state lives in that partition of the changelog), which the standard
/// library's hasher does not promise.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What decoding needs of a catalog: its types.
fn types_only(catalog: &Catalog) -> Catalog {
    Catalog {
        sources: Default::default(),
        types: catalog.types.clone(),
    }
}

/// The store a table sink's rows are kept in, keyed by its key columns (and window start).
/// A windowed aggregation's store keeps its windows for the window's retention, as Kafka
/// Streams' window store does; other tables keep their rows until deleted.
fn materialized_for(
    sink: &Source,
    types: &Catalog,
    window: Option<&brook_planner::aggregate::WindowPlan>,
) -> Result<Option<Shared>> {
    if sink.kind != brook_sql::SourceKind::Table {
        return Ok(None);
    }
    let windowed = sink.window.is_some();
    let schema = sink
        .schema
        .row_schema(windowed, types)
        .map_err(|e| RuntimeError::Plan(e.to_string()))?;
    let first = if windowed { 5 } else { 3 };
    let mut keys: Vec<usize> = sink
        .schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.namespace == brook_planner::schema::Namespace::Key)
        .map(|(i, _)| i + first)
        .collect();
    if windowed {
        keys.push(3);
    }
    let mut m = Materialized::new(schema, keys);
    if let (true, Some(w)) = (windowed, window) {
        // WINDOWSTART, or WINDOWEND for sessions: what Kafka Streams' key schemas
        // segment (and so expire) by.
        let time_column = if w.is_session() { 4 } else { 3 };
        m = m.with_retention(w.retention_ms, time_column);
    }
    Ok(Some(m.shared()))
}

impl Pipeline {
    pub fn new(spec: QuerySpec, types: &Catalog) -> Result<Pipeline> {
        // An aggregation of a join: the join's rows feed the aggregation.
        let mut spec = spec;
        let feeding = match &mut spec.plan {
            QueryPlan::Aggregate(p) => p.join.take(),
            _ => None,
        };
        // An aggregation skips records without a value, as a filter would.
        let deletes = matches!(&spec.plan, QueryPlan::Aggregate(p) if p.retract_by.is_some());
        let window = match &spec.plan {
            QueryPlan::Aggregate(p) => p.window,
            _ => None,
        };
        let materialized = materialized_for(&spec.sink, types, window.as_ref())?;
        if let QueryPlan::Join(p) = spec.plan {
            let route = Route::of_join(&p, types);
            let others = p.inputs[1..].iter().map(|i| i.source.clone()).collect();
            let tables = p.tables;
            let rekeyed = p.partitioned;
            return Ok(Pipeline {
                id: spec.id,
                source: spec.input,
                sink: spec.sink,
                others,
                operator: Box::new(crate::operator::Nothing),
                join: Some(JoinOperator::new(*p, types)?),
                // A table–table join takes deletions from both sides.
                filters: !tables,
                deletes: tables,
                types: types_only(types),
                materialized,
                emits: true,
                rekeyed,
                join_feeds: false,
                capture: false,
                late: None,
                route,
            });
        }
        let rekeyed = matches!(&spec.plan, QueryPlan::Stateless(p) if p.rekeyed)
            || matches!(&spec.plan, QueryPlan::Join(p) if p.partitioned);
        let mut late = None;
        // A table's key stays a stateless query's key: each input partition's rows keep
        // to one state partition.
        let mut route = Route::ByPartition;
        let (filters, operator): (bool, Box<dyn Operator>) = match spec.plan {
            // Over a table, a deleted row (no value) is forwarded as a deletion, whatever
            // the filter says, and a row the filter drops becomes a deletion too.
            QueryPlan::Stateless(p) if spec.input.kind == brook_sql::SourceKind::Table => {
                (false, Box::new(FilterProject::for_table(p, types)?))
            }
            QueryPlan::Stateless(p) => {
                (p.filter.is_some(), Box::new(FilterProject::new(p, types)?))
            }
            QueryPlan::Aggregate(p) => {
                let table = p.retract_by.is_some();
                route = Route::of_aggregate(&p, &spec.input, types);
                let aggregate = AggregateOperator::new(p, types)?;
                late = Some(aggregate.late_counter());
                (!table, Box::new(aggregate))
            }
            QueryPlan::Join(_) => unreachable_join()?,
        };
        let others = feeding
            .as_ref()
            .map(|j| j.inputs[1..].iter().map(|i| i.source.clone()).collect())
            .unwrap_or_default();
        let join_feeds = feeding.is_some();
        let join = feeding.map(|j| JoinOperator::new(*j, types)).transpose()?;
        Ok(Pipeline {
            id: spec.id,
            source: spec.input,
            sink: spec.sink,
            others,
            operator,
            join,
            join_feeds,
            capture: false,
            filters,
            deletes,
            types: types_only(types),
            materialized,
            emits: true,
            rekeyed,
            late,
            route,
        })
    }

    /// Moves the rows expressions failed on since the last call into `done`, as rows of
    /// records of `topic`.
    fn take_row_errors(&mut self, topic: &str, done: &mut Processed) {
        let start = done.row_errors.len();
        if let Some(j) = &mut self.join {
            j.take_row_errors(&mut done.row_errors);
        }
        self.operator.take_row_errors(&mut done.row_errors);
        for e in &mut done.row_errors[start..] {
            e.topic = topic.to_string();
        }
    }

    /// The records dropped as late since the last call.
    fn take_late(&mut self) -> u64 {
        let joined = self.join.as_mut().map_or(0, |j| j.take_late());
        let aggregated = self
            .late
            .as_ref()
            .map_or(0, |c| c.swap(0, Ordering::Relaxed));
        joined + aggregated
    }

    /// Processes records of the input topic in order.
    pub fn process(&mut self, records: &[Record]) -> Result<Processed> {
        let mut done = Processed::default();
        // A stream record without a value travels on as one (re-keyed if the query
        // re-keys), unless a filter stands in its way. Runs of records with and without
        // values are processed separately so that order is kept.
        let mut start = 0;
        while start < records.len() {
            let null_run = records[start].value.is_none();
            let mut end = start + 1;
            while end < records.len() && records[end].value.is_none() == null_run {
                end += 1;
            }
            if !(null_run && self.filters) {
                self.run(&records[start..end], start, null_run, &mut done)?;
            }
            start = end;
        }
        done.late = self.take_late();
        Ok(done)
    }

    fn run(
        &mut self,
        records: &[Record],
        offset: usize,
        null_values: bool,
        done: &mut Processed,
    ) -> Result<()> {
        let decoded = decode_records(&self.source, records, &self.types)?;
        done.errors
            .extend(decoded.errors.into_iter().map(|(i, e)| (i + offset, e)));
        let Some(batch) = decoded.batch else {
            return Ok(());
        };
        let mut out = Vec::new();
        if let Some(j) = &mut self.join {
            j.process_input(0, &batch, null_values && self.deletes, &mut out)?;
            if self.join_feeds {
                let deleted = j.take_deleted_runs();
                feed(self.operator.as_mut(), &mut out, &deleted)?;
            }
        } else if null_values && self.deletes {
            self.operator.process_deletes(batch, &mut out)?;
        } else {
            self.operator.process(batch, &mut out)?;
        }
        let topic = self.source.topic.clone();
        self.take_row_errors(&topic, done);
        if self.capture {
            done.batches.extend(out);
            return Ok(());
        }
        self.emit(out, null_values && !self.deletes, done)
    }

    /// Keeps result rows in the table sink's store and encodes them for the sink topic:
    /// every path that produces results goes through here, so that each honours PARTITION
    /// BY's re-keying — a stream–stream join's result is completed by either input's
    /// record, and must be keyed the same either way (issue 17). `deleted`: the rows came
    /// of records without a value, and delete (and are written without a value).
    fn emit(&self, out: Vec<RecordBatch>, deleted: bool, done: &mut Processed) -> Result<()> {
        for b in out {
            if let Some(m) = &self.materialized {
                write(m)?.apply(&b, deleted)?;
            }
            if !self.emits {
                continue;
            }
            for (key, value, timestamp) in encode_batch_with(&self.sink, &b, self.rekeyed)? {
                // Kafka takes no negative timestamps: such a result is dropped, as
                // ksqlDB's producer would fail it.
                if timestamp < 0 {
                    continue;
                }
                done.outputs.push(Output {
                    key,
                    value: if deleted { None } else { value },
                    timestamp,
                });
            }
        }
        Ok(())
    }
}

impl Pipeline {
    /// Keeps results as row batches instead of encoding them for the sink topic: a
    /// transient push query runs a pipeline and streams its rows to the subscriber.
    pub fn capture(mut self) -> Self {
        self.capture = true;
        self.emits = false;
        self
    }

    /// A source table's materialization (ksqlDB's `CST_…` query): the table's rows are kept
    /// for pull queries and nothing is written.
    pub fn materialize(spec: QuerySpec, types: &Catalog) -> Result<Pipeline> {
        let mut p = Pipeline::new(spec, types)?;
        p.emits = false;
        Ok(p)
    }

    /// Whether the query keeps state, which then lives in a changelog topic too.
    pub fn stateful(&self) -> bool {
        self.join.is_some() || self.operator.stateful() || self.materialized.is_some()
    }

    /// How the input splits among state partitions.
    pub fn route(&self) -> Route {
        self.route.clone()
    }

    /// The table sink's rows, which pull queries read (`None` when the sink is a stream).
    pub fn materialized(&self) -> Option<Shared> {
        self.materialized.clone()
    }

    /// The state entries changed since the last call.
    pub fn take_changes(&mut self) -> Result<Vec<crate::state::StateChange>> {
        let mut out = Vec::new();
        if let Some(j) = &mut self.join {
            j.take_changes(&mut out)?;
        }
        if self.join.is_none() || self.join_feeds {
            self.operator.take_changes(&mut out)?;
        }
        if let Some(m) = &self.materialized {
            write(m)?.take_changes(&mut out)?;
        }
        Ok(out)
    }

    /// Puts back a state entry from the changelog (before any input is processed).
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.first() == Some(&NS_MATERIALIZED) {
            if let Some(m) = &self.materialized {
                let mut m = write(m)?;
                m.restore(key, value)?;
                m.clear_changes();
            }
            return Ok(());
        }
        match &mut self.join {
            Some(j)
                if !self.join_feeds
                    || key
                        .first()
                        .is_some_and(|&ns| JoinOperator::owns_namespace(ns)) =>
            {
                j.restore(key, value)
            }
            _ => self.operator.restore(key, value),
        }
    }
}

/// A join's rows into the operator it feeds (deletions of a table join as deletions);
/// `out` then holds the operator's results.
fn feed(operator: &mut dyn Operator, out: &mut Vec<RecordBatch>, deleted: &[bool]) -> Result<()> {
    let joined = std::mem::take(out);
    for (i, b) in joined.into_iter().enumerate() {
        if deleted.get(i).copied().unwrap_or(false) {
            operator.process_deletes(b, out)?;
        } else {
            operator.process(b, out)?;
        }
    }
    Ok(())
}

fn write(m: &Shared) -> Result<std::sync::RwLockWriteGuard<'_, Materialized>> {
    m.write()
        .map_err(|_| RuntimeError::State("a materialized table's lock is poisoned".into()))
}

fn unreachable_join() -> Result<(bool, Box<dyn Operator>)> {
    Err(RuntimeError::Plan(
        "a join plan reached the single-input path".into(),
    ))
}

impl Pipeline {
    /// Processes records of the join's second input (the table of a stream–table join).
    pub fn process_table(&mut self, records: &[Record]) -> Result<Processed> {
        self.process_input(1, records)
    }

    /// The topic each input reads: index 0 is `source`, then the join's other inputs.
    pub fn input_topics(&self) -> Vec<String> {
        std::iter::once(self.source.topic.clone())
            .chain(self.others.iter().map(|s| s.topic.clone()))
            .collect()
    }

    /// Processes records of input `input` (0 is `source`, as [`Pipeline::process`]).
    pub fn process_input(&mut self, input: usize, records: &[Record]) -> Result<Processed> {
        if input == 0 {
            return self.process(records);
        }
        let mut done = Processed::default();
        let processed = self.process_other(input, records, &mut done);
        done.late = self.take_late();
        processed.map(|()| done)
    }

    /// [`Pipeline::process_input`] of an input after the first.
    fn process_other(
        &mut self,
        input: usize,
        records: &[Record],
        done: &mut Processed,
    ) -> Result<()> {
        let Some(source) = self.others.get(input - 1) else {
            return Ok(());
        };
        if self.join.is_none() {
            return Ok(());
        }
        let is_table = source.kind == brook_sql::SourceKind::Table;
        let mut start = 0;
        while start < records.len() {
            let deleted = records[start].value.is_none();
            let mut end = start + 1;
            while end < records.len() && records[end].value.is_none() == deleted {
                end += 1;
            }
            // A stream's record without a value joins nothing.
            if deleted && !is_table {
                start = end;
                continue;
            }
            let decoded = decode_records(source, &records[start..end], &self.types)?;
            done.errors
                .extend(decoded.errors.into_iter().map(|(i, e)| (i + start, e)));
            if let (Some(batch), Some(join)) = (decoded.batch, self.join.as_mut()) {
                let mut out = Vec::new();
                join.process_input(input, &batch, deleted, &mut out)?;
                if self.join_feeds {
                    let runs = join.take_deleted_runs();
                    feed(self.operator.as_mut(), &mut out, &runs)?;
                }
                let logged = done.row_errors.len();
                join.take_row_errors(&mut done.row_errors);
                self.operator.take_row_errors(&mut done.row_errors);
                for e in &mut done.row_errors[logged..] {
                    e.topic.clone_from(&source.topic);
                }
                if self.capture {
                    done.batches.extend(out);
                    start = end;
                    continue;
                }
                self.emit(out, false, done)?;
            }
            start = end;
        }
        Ok(())
    }
}

impl Pipeline {
    /// How long the input must be quiet before [`Pipeline::on_idle`] is worth calling
    /// (EMIT FINAL aggregations); `None` when the query's output never waits on time.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        if self.join.is_some() {
            return None;
        }
        self.operator
            .idle_timeout_ms()
            .map(std::time::Duration::from_millis)
    }

    /// The input has been quiet for `elapsed_ms` more wall-clock milliseconds: stream time
    /// moves on by as much, and the windows that closed meanwhile are emitted.
    pub fn on_idle(&mut self, elapsed_ms: i64) -> Result<Processed> {
        let mut done = Processed::default();
        if self.join.is_some() {
            return Ok(done);
        }
        let mut out = Vec::new();
        self.operator.on_idle(elapsed_ms, &mut out)?;
        let topic = self.source.topic.clone();
        self.take_row_errors(&topic, &mut done);
        self.emit(out, false, &mut done)?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Action, Session};
    use std::collections::BTreeMap;

    /// The pipeline of the last persistent query in `sql` (topics have two partitions).
    fn pipeline(sql: &str) -> Pipeline {
        let mut session = Session::new();
        let mut last = None;
        for s in brook_sql::parse(sql).expect("parses") {
            if let Action::StartQuery(spec) = session.plan(&s, &|_| Some(2)).expect("plans") {
                last = Some(*spec);
            }
        }
        Pipeline::new(last.expect("a query"), &session.catalog).expect("pipeline")
    }

    fn record(partition: i32, key: &str, value: &str) -> Record {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            timestamp: 0,
            headers: Vec::new(),
            partition,
            offset: 0,
        }
    }

    const ORDERS: &str = "CREATE STREAM orders (id STRING KEY, customer STRING, amount INT) \
        WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2);";

    #[test]
    fn a_group_by_value_routes_by_key_and_by_the_source_key_by_partition() {
        let by_customer = pipeline(&format!(
            "{ORDERS} CREATE TABLE t AS SELECT customer, COUNT(*) AS n FROM orders \
             WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY customer;"
        ));
        assert!(matches!(by_customer.route(), Route::ByKey(_)));
        let records: Vec<Record> = (0..40)
            .map(|i| {
                record(
                    i % 2,
                    &format!("o{i}"),
                    &format!("{{\"customer\":\"c{}\"}}", i % 8),
                )
            })
            .collect();
        let slots = by_customer.route().assign(&records, &[0; 40], 2);
        // Each customer in one state partition, and both partitions used.
        let mut of: BTreeMap<i32, usize> = BTreeMap::new();
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(
                *of.entry(i as i32 % 8).or_insert(*s),
                *s,
                "customer c{}",
                i % 8
            );
        }
        assert!(slots.contains(&0) && slots.contains(&1), "{slots:?}");

        let by_id = pipeline(&format!(
            "{ORDERS} CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM orders GROUP BY id;"
        ));
        assert!(matches!(by_id.route(), Route::ByPartition));
        assert_eq!(
            by_id.route().assign(&records[..4], &[0; 4], 2),
            vec![0, 1, 0, 1]
        );

        let joined = pipeline(&format!(
            "{ORDERS} CREATE TABLE c (id STRING PRIMARY KEY, name STRING) WITH \
             (KAFKA_TOPIC='c', VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM j AS SELECT * FROM orders o JOIN c ON o.customer = c.id;"
        ));
        // Joined on a value column of the stream: each side by its side of the ON clause,
        // so an order and its customer's row meet in one state partition.
        assert!(matches!(joined.route(), Route::ByKey(_)));
        let mut both: Vec<Record> = (0..8)
            .map(|i| {
                record(
                    i % 2,
                    &format!("o{i}"),
                    &format!("{{\"customer\":\"c{i}\"}}"),
                )
            })
            .collect();
        both.extend((0..8).map(|i| record((i + 1) % 2, &format!("c{i}"), "{\"name\":\"x\"}")));
        let sides: Vec<usize> = (0..16).map(|i| i / 8).collect();
        let slots = joined.route().assign(&both, &sides, 2);
        assert_eq!(slots[..8], slots[8..], "{slots:?}");
        assert!(slots.contains(&0) && slots.contains(&1), "{slots:?}");
        let by_key = pipeline(&format!(
            "{ORDERS} CREATE TABLE c (id STRING PRIMARY KEY, name STRING) WITH \
             (KAFKA_TOPIC='c', VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM j AS SELECT * FROM orders o JOIN c ON o.id = c.id;"
        ));
        assert!(matches!(by_key.route(), Route::ByPartition));
    }
}

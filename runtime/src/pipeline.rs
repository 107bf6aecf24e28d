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
use crate::rows::{decode_records, encode_batch, encode_batch_with, Record};
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
}

/// What decoding needs of a catalog: its types.
fn types_only(catalog: &Catalog) -> Catalog {
    Catalog {
        sources: Default::default(),
        types: catalog.types.clone(),
    }
}

/// The store a table sink's rows are kept in, keyed by its key columns (and window start).
fn materialized_for(sink: &Source, types: &Catalog) -> Result<Option<Shared>> {
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
    Ok(Some(Materialized::new(schema, keys).shared()))
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
        let materialized = materialized_for(&spec.sink, types)?;
        if let QueryPlan::Join(p) = spec.plan {
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
            });
        }
        let rekeyed = matches!(&spec.plan, QueryPlan::Stateless(p) if p.rekeyed)
            || matches!(&spec.plan, QueryPlan::Join(p) if p.partitioned);
        let mut late = None;
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
        })
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
        if self.capture {
            done.batches.extend(out);
            return Ok(());
        }
        for b in out {
            if let Some(m) = &self.materialized {
                write(m)?.apply(&b, null_values && !self.deletes)?;
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
                    value: if null_values && !self.deletes {
                        None
                    } else {
                        value
                    },
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
        let (Some(source), Some(join)) = (self.others.get(input - 1), &mut self.join) else {
            return Ok(());
        };
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
            if let Some(batch) = decoded.batch {
                let mut out = Vec::new();
                join.process_input(input, &batch, deleted, &mut out)?;
                if self.join_feeds {
                    let runs = join.take_deleted_runs();
                    feed(self.operator.as_mut(), &mut out, &runs)?;
                }
                if self.capture {
                    done.batches.extend(out);
                    start = end;
                    continue;
                }
                for b in out {
                    if let Some(m) = &self.materialized {
                        write(m)?.apply(&b, false)?;
                    }
                    for (key, value, timestamp) in encode_batch(&self.sink, &b)? {
                        if timestamp < 0 {
                            continue;
                        }
                        done.outputs.push(Output {
                            key,
                            value,
                            timestamp,
                        });
                    }
                }
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
        for b in out {
            if let Some(m) = &self.materialized {
                write(m)?.apply(&b, false)?;
            }
            if !self.emits {
                continue;
            }
            for (key, value, timestamp) in encode_batch(&self.sink, &b)? {
                if timestamp < 0 {
                    continue;
                }
                done.outputs.push(Output {
                    key,
                    value,
                    timestamp,
                });
            }
        }
        Ok(done)
    }
}

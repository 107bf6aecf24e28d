//! A persistent query's processing step, shared by the deterministic driver and the Kafka
//! task: records of the input topic in, encoded records for the sink topic out.

use brook_planner::catalog::{Catalog, Source};

use crate::aggregate::AggregateOperator;
use crate::error::{Result, RuntimeError};
use crate::join::JoinOperator;
use crate::materialized::{Materialized, Shared, NS_MATERIALIZED};
use crate::operator::{FilterProject, Operator};
use crate::rows::{decode_records, encode_batch, Record};
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
}

pub struct Pipeline {
    pub id: String,
    pub source: Source,
    pub sink: Source,
    /// A join's second input (the table of a stream–table join).
    pub table: Option<Source>,
    operator: Box<dyn Operator>,
    join: Option<JoinOperator>,
    /// A record without a value never passes a filter.
    filters: bool,
    /// Records without a value delete their key's row (an aggregation over a table).
    deletes: bool,
    types: Catalog,
    /// A table sink's current rows, for pull queries.
    materialized: Option<Shared>,
    /// Whether results are written to the sink topic; a source table's materialization
    /// only keeps them for pull queries.
    emits: bool,
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
        // An aggregation skips records without a value, as a filter would.
        let deletes = matches!(&spec.plan, QueryPlan::Aggregate(p) if p.retract_by.is_some());
        let materialized = materialized_for(&spec.sink, types)?;
        if let QueryPlan::Join(p) = spec.plan {
            let table = Some(p.table.clone());
            let tables = p.tables;
            return Ok(Pipeline {
                id: spec.id,
                source: spec.input,
                sink: spec.sink,
                table,
                operator: Box::new(crate::operator::Nothing),
                join: Some(JoinOperator::new(*p, types)?),
                // A table–table join takes deletions from both sides.
                filters: !tables,
                deletes: tables,
                types: types.clone(),
                materialized,
                emits: true,
            });
        }
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
                (!table, Box::new(AggregateOperator::new(p, types)?))
            }
            QueryPlan::Join(_) => unreachable_join()?,
        };
        Ok(Pipeline {
            id: spec.id,
            source: spec.input,
            sink: spec.sink,
            table: None,
            operator,
            join: None,
            filters,
            deletes,
            types: types.clone(),
            materialized,
            emits: true,
        })
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
            if self.deletes {
                j.left_rows(&batch, null_values, &mut out)?;
            } else {
                j.stream_rows(&batch, &mut out)?;
            }
        } else if null_values && self.deletes {
            self.operator.process_deletes(batch, &mut out)?;
        } else {
            self.operator.process(batch, &mut out)?;
        }
        for b in out {
            if let Some(m) = &self.materialized {
                write(m)?.apply(&b, null_values && !self.deletes)?;
            }
            if !self.emits {
                continue;
            }
            for (key, value, timestamp) in encode_batch(&self.sink, &b)? {
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
        match &mut self.join {
            Some(j) => j.take_changes(&mut out)?,
            None => self.operator.take_changes(&mut out)?,
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
            Some(j) => j.restore(key, value),
            None => self.operator.restore(key, value),
        }
    }
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
    /// Processes records of the join's table topic: they update the table's state and
    /// produce nothing (a stream–table join emits on stream records only).
    pub fn process_table(&mut self, records: &[Record]) -> Result<Processed> {
        let mut done = Processed::default();
        let (Some(table), Some(join)) = (&self.table, &mut self.join) else {
            return Ok(done);
        };
        let mut start = 0;
        while start < records.len() {
            let deleted = records[start].value.is_none();
            let mut end = start + 1;
            while end < records.len() && records[end].value.is_none() == deleted {
                end += 1;
            }
            let decoded = decode_records(table, &records[start..end], &self.types)?;
            done.errors
                .extend(decoded.errors.into_iter().map(|(i, e)| (i + start, e)));
            if let Some(batch) = decoded.batch {
                let mut out = Vec::new();
                join.table_rows(&batch, deleted, &mut out)?;
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
        Ok(done)
    }
}

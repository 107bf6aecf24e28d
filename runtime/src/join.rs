//! Stream–table join: the table side is kept as keyed state (its current row per primary
//! key); each stream row looks its key up and joins the row found (or NULLs for LEFT).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions,
};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use brook_planner::join::JoinPlan;
use brook_planner::types::TypeRegistry;
use datafusion::common::ScalarValue;

use crate::error::{Result, RuntimeError};
use crate::state::{owned_row, read_scalar_key, scalar_key, Reader, StateChange, Writer};

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

pub struct JoinOperator {
    plan: JoinPlan,
    output_schema: SchemaRef,
    table: HashMap<ScalarValue, RecordBatch>,
    /// Table–table joins: the left table's current rows, by key.
    left: HashMap<ScalarValue, RecordBatch>,
    /// Table–table joins: keys whose joined row was emitted (and so need a tombstone).
    emitted: std::collections::HashSet<ScalarValue>,
    left_schema: SchemaRef,
    /// The table's row schema, for NULL padding.
    table_schema: SchemaRef,
    /// Entries changed since the changelog last took them: (namespace, key).
    dirty: HashSet<(u8, ScalarValue)>,
}

/// Changelog namespaces of the join's maps.
const NS_TABLE: u8 = b'r';
const NS_LEFT: u8 = b'l';
const NS_EMITTED: u8 = b'e';

impl JoinOperator {
    pub fn new(plan: JoinPlan, types: &dyn TypeRegistry) -> Result<Self> {
        let plan_err = |e: brook_planner::PlanError| RuntimeError::Plan(e.to_string());
        let mut output_schema = plan.output.row_schema(false, types).map_err(plan_err)?;
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
        let table_schema = plan
            .table
            .schema
            .row_schema(false, types)
            .map_err(plan_err)?;
        let left_schema = plan
            .stream
            .schema
            .row_schema(false, types)
            .map_err(plan_err)?;
        Ok(JoinOperator {
            plan,
            output_schema,
            table: HashMap::new(),
            left: HashMap::new(),
            emitted: Default::default(),
            left_schema,
            table_schema,
            dirty: HashSet::new(),
        })
    }

    /// Rows of the (right) table: upserts (deletes when `deleted`). In a table–table join
    /// they emit the key's new joined row.
    pub fn table_rows(
        &mut self,
        batch: &RecordBatch,
        deleted: bool,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let keys = batch.column(self.plan.table_key);
        for row in 0..batch.num_rows() {
            let k = ScalarValue::try_from_array(keys, row).map_err(eval_err)?;
            if k.is_null() {
                continue;
            }
            if deleted {
                self.table.remove(&k);
            } else {
                self.table.insert(k.clone(), owned_row(batch, row)?);
            }
            self.dirty.insert((NS_TABLE, k.clone()));
            if self.plan.tables {
                let trigger = batch.slice(row, 1);
                self.emit_tables(&k, &trigger, out)?;
            }
        }
        Ok(())
    }

    /// Rows of the left table (deletes when `deleted`), for table–table joins.
    pub fn left_rows(
        &mut self,
        batch: &RecordBatch,
        deleted: bool,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self
            .plan
            .stream_key
            .evaluate(batch)
            .and_then(|v| v.into_array(rows))
            .map_err(eval_err)?;
        for row in 0..rows {
            let k = ScalarValue::try_from_array(&keys, row).map_err(eval_err)?;
            if k.is_null() {
                continue;
            }
            if deleted {
                self.left.remove(&k);
            } else {
                self.left.insert(k.clone(), owned_row(batch, row)?);
            }
            self.dirty.insert((NS_LEFT, k.clone()));
            let trigger = batch.slice(row, 1);
            self.emit_tables(&k, &trigger, out)?;
        }
        Ok(())
    }

    /// The joined row of a key after a change on either side, or its tombstone.
    fn emit_tables(
        &mut self,
        k: &ScalarValue,
        trigger: &RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let left = self.left.get(k).cloned();
        let right = self.table.get(k).cloned();
        self.dirty.insert((NS_EMITTED, k.clone()));
        let alive = left.is_some() && (right.is_some() || self.plan.left_outer);
        if !alive {
            if self.emitted.remove(k) {
                let cols = self.joined_columns(trigger, left.as_ref(), right.as_ref(), Some(k))?;
                self.project(cols, true, out)?;
            }
            return Ok(());
        }
        let cols = self.joined_columns(trigger, left.as_ref(), right.as_ref(), None)?;
        if !self.passes(&cols)? {
            // A row WHERE drops is gone from the result table.
            if self.emitted.remove(k) {
                let gone = self.joined_columns(trigger, left.as_ref(), right.as_ref(), Some(k))?;
                self.project(gone, true, out)?;
            }
            return Ok(());
        }
        self.emitted.insert(k.clone());
        self.project(cols, false, out)
    }

    /// The joined row: the trigger's pseudo columns, the left row's columns (or NULLs, with
    /// the key filled in for tombstones), the right row's (or NULLs).
    fn joined_columns(
        &self,
        trigger: &RecordBatch,
        left: Option<&RecordBatch>,
        right: Option<&RecordBatch>,
        key: Option<&ScalarValue>,
    ) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = trigger.columns()[..3].to_vec();
        let side = |row: Option<&RecordBatch>, schema: &SchemaRef| -> Vec<ArrayRef> {
            match row {
                Some(r) => r.columns().to_vec(),
                None => schema
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), 1))
                    .collect(),
            }
        };
        let mut lcols = side(left, &self.left_schema);
        if let (None, Some(k)) = (left, key) {
            // A tombstone still needs its key, which the projection reads from the left.
            if let Some(i) = self
                .plan
                .stream
                .schema
                .key_columns()
                .next()
                .and_then(|c| self.left_schema.index_of(&c.name).ok())
            {
                lcols[i] = k.to_array().map_err(eval_err)?;
            }
        }
        cols.extend(lcols);
        cols.extend(side(right, &self.table_schema));
        let cols: Vec<ArrayRef> = cols
            .into_iter()
            .zip(self.plan.joined_schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(RecordBatch::try_new(self.plan.joined_schema.clone(), cols)?)
    }

    fn project(
        &self,
        joined: RecordBatch,
        tombstone: bool,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut out_cols: Vec<ArrayRef> = joined.columns()[..3].to_vec();
        for (i, p) in self.plan.projections.iter().enumerate() {
            let a = p
                .expr
                .evaluate(&joined)
                .and_then(|v| v.into_array(1))
                .map_err(eval_err)?;
            let want = self.output_schema.field(3 + i).data_type();
            out_cols.push(if a.data_type() == want {
                a
            } else {
                cast(&a, want)?
            });
        }
        if self.plan.tables {
            out_cols.push(Arc::new(BooleanArray::from(vec![tombstone])));
        }
        out.push(RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            out_cols,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?);
        Ok(())
    }

    /// Rows of the stream: each joined with the table's current row for its key.
    pub fn stream_rows(&mut self, batch: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self
            .plan
            .stream_key
            .evaluate(batch)
            .and_then(|v| v.into_array(rows))
            .map_err(eval_err)?;
        for row in 0..rows {
            let k = ScalarValue::try_from_array(&keys, row).map_err(eval_err)?;
            let found = if k.is_null() {
                None
            } else {
                self.table.get(&k).cloned()
            };
            if found.is_none() && !self.plan.left_outer {
                continue;
            }
            let stream_row = batch.slice(row, 1);
            let joined =
                self.joined_columns(&stream_row, Some(&stream_row), found.as_ref(), None)?;
            if self.passes(&joined)? {
                self.project(joined, false, out)?;
            }
        }
        Ok(())
    }

    /// Whether the joined row passes WHERE.
    fn passes(&self, joined: &RecordBatch) -> Result<bool> {
        let Some(f) = &self.plan.filter else {
            return Ok(true);
        };
        let m = f
            .evaluate(joined)
            .and_then(|v| v.into_array(1))
            .map_err(eval_err)?;
        let m = m
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| RuntimeError::Eval("WHERE did not give a BOOLEAN".into()))?;
        Ok(!m.is_null(0) && m.value(0))
    }
}

impl JoinOperator {
    /// The state entries changed since the last call (see [`crate::state`]).
    pub fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for (ns, k) in std::mem::take(&mut self.dirty) {
            let key = scalar_key(ns, std::slice::from_ref(&k))?;
            let row = match ns {
                NS_TABLE => self.table.get(&k),
                NS_LEFT => self.left.get(&k),
                _ => None,
            };
            let value = match (ns, row) {
                (NS_EMITTED, _) => self.emitted.contains(&k).then(Vec::new),
                (_, Some(b)) => {
                    let mut w = Writer::default();
                    w.batch(b)?;
                    Some(w.buf)
                }
                (_, None) => None,
            };
            out.push(StateChange { key, value });
        }
        Ok(())
    }

    /// Puts back an entry of a previous run's changelog.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (ns, mut keys) = read_scalar_key(key)?;
        let k = keys
            .pop()
            .ok_or_else(|| RuntimeError::State("a join state key is empty".into()))?;
        match ns {
            NS_TABLE => {
                self.table.insert(k, Reader::new(value).batch()?);
            }
            NS_LEFT => {
                self.left.insert(k, Reader::new(value).batch()?);
            }
            NS_EMITTED => {
                self.emitted.insert(k);
            }
            _ => {
                return Err(RuntimeError::State(format!(
                    "unknown join state namespace {ns}"
                )))
            }
        }
        Ok(())
    }
}

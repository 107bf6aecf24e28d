//! Stream–table join: the table side is kept as keyed state (its current row per primary
//! key); each stream row looks its key up and joins the row found (or NULLs for LEFT).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use brook_planner::join::JoinPlan;
use brook_planner::types::TypeRegistry;
use datafusion::common::ScalarValue;

use crate::error::{Result, RuntimeError};

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

pub struct JoinOperator {
    plan: JoinPlan,
    output_schema: SchemaRef,
    table: HashMap<ScalarValue, RecordBatch>,
    /// The table's row schema, for NULL padding.
    table_schema: SchemaRef,
}

impl JoinOperator {
    pub fn new(plan: JoinPlan, types: &dyn TypeRegistry) -> Result<Self> {
        let plan_err = |e: brook_planner::PlanError| RuntimeError::Plan(e.to_string());
        let output_schema = plan.output.row_schema(false, types).map_err(plan_err)?;
        let table_schema = plan
            .table
            .schema
            .row_schema(false, types)
            .map_err(plan_err)?;
        Ok(JoinOperator {
            plan,
            output_schema,
            table: HashMap::new(),
            table_schema,
        })
    }

    /// Rows of the table: upserts (deletes when `deleted`).
    pub fn table_rows(&mut self, batch: &RecordBatch, deleted: bool) -> Result<()> {
        let keys = batch.column(self.plan.table_key);
        for row in 0..batch.num_rows() {
            let k = ScalarValue::try_from_array(keys, row).map_err(eval_err)?;
            if k.is_null() {
                continue;
            }
            if deleted {
                self.table.remove(&k);
            } else {
                self.table.insert(k, batch.slice(row, 1));
            }
        }
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
            let mut cols: Vec<ArrayRef> = batch.columns()[..3]
                .iter()
                .map(|c| c.slice(row, 1))
                .collect();
            cols.extend(batch.columns().iter().map(|c| c.slice(row, 1)));
            match &found {
                Some(t) => cols.extend(t.columns().iter().cloned()),
                None => cols.extend(
                    self.table_schema
                        .fields()
                        .iter()
                        .map(|f| new_null_array(f.data_type(), 1)),
                ),
            }
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
            let joined = RecordBatch::try_new(self.plan.joined_schema.clone(), cols)?;
            let joined = match &self.plan.filter {
                None => joined,
                Some(f) => {
                    let m = f
                        .evaluate(&joined)
                        .and_then(|v| v.into_array(1))
                        .map_err(eval_err)?;
                    let m = m
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| RuntimeError::Eval("WHERE did not give a BOOLEAN".into()))?;
                    filter_record_batch(&joined, m)?
                }
            };
            if joined.num_rows() == 0 {
                continue;
            }
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
            out.push(RecordBatch::try_new_with_options(
                Arc::clone(&self.output_schema),
                out_cols,
                &RecordBatchOptions::new().with_row_count(Some(1)),
            )?);
        }
        Ok(())
    }
}

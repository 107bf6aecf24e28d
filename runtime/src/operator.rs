//! Streaming operators over Arrow record batches.
//!
//! An operator receives batches of rows (the row schema of `LogicalSchema::row_schema`:
//! ROWTIME, ROWPARTITION, ROWOFFSET, then the columns) and emits batches. The same
//! operators run in the deterministic driver, the server and the benchmarks.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use brook_planner::query::StatelessPlan;
use brook_planner::types::TypeRegistry;

use crate::error::{Result, RuntimeError};

/// A step of a query's pipeline. Hooks beyond `process` (timers, watermarks, checkpoints)
/// have default no-op implementations so stateless operators stay small.
pub trait Operator: Send {
    fn name(&self) -> &'static str;

    /// Handles one batch, appending any output batches to `out`.
    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()>;

    /// Called when the input ends (a bounded source, or a query being stopped).
    fn on_close(&mut self, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }
}

/// WHERE then SELECT: evaluates DataFusion physical expressions over each batch.
pub struct FilterProject {
    plan: StatelessPlan,
    output_schema: SchemaRef,
}

impl FilterProject {
    pub fn new(plan: StatelessPlan, types: &dyn TypeRegistry) -> Result<Self> {
        let output_schema = plan
            .output
            .row_schema(false, types)
            .map_err(|e| RuntimeError::Plan(e.to_string()))?;
        Ok(FilterProject {
            plan,
            output_schema,
        })
    }

    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }
}

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

impl Operator for FilterProject {
    fn name(&self) -> &'static str {
        "FilterProject"
    }

    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
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
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.columns()[..3].to_vec();
        for (i, p) in self.plan.projections.iter().enumerate() {
            let array = p
                .expr
                .evaluate(&batch)
                .and_then(|v| v.into_array(rows))
                .map_err(eval_err)?;
            let want = self.output_schema.field(3 + i).data_type();
            let array = if array.data_type() == want {
                array
            } else {
                cast(&array, want)?
            };
            columns.push(array);
        }
        let out_batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        out.push(out_batch);
        Ok(())
    }
}

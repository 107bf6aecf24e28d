//! Streaming operators over Arrow record batches.
//!
//! An operator receives batches of rows (the row schema of `LogicalSchema::row_schema`:
//! ROWTIME, ROWPARTITION, ROWOFFSET, then the columns) and emits batches. The same
//! operators run in the deterministic driver, the server and the benchmarks.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use brook_planner::query::{StatelessPlan, TableFunction, TableFunctionKind};
use brook_planner::types::TypeRegistry;

use crate::error::{Result, RuntimeError};
use crate::eval::{self, Purpose, RowError};

/// A step of a query's pipeline. Hooks beyond `process` (timers, watermarks, checkpoints)
/// have default no-op implementations so stateless operators stay small.
pub trait Operator: Send {
    fn name(&self) -> &'static str;

    /// Handles one batch, appending any output batches to `out`.
    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()>;

    /// Handles rows of a table that were deleted (records without a value); operators
    /// that keep no per-key state ignore them.
    fn process_deletes(&mut self, _batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }

    /// Called when the input ends (a bounded source, or a query being stopped).
    fn on_close(&mut self, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }

    /// Whether the operator keeps state that must outlive the process (a changelog).
    fn stateful(&self) -> bool {
        false
    }

    /// Appends the state entries changed since the last call, each once, in any order.
    fn take_changes(&mut self, _out: &mut Vec<crate::state::StateChange>) -> Result<()> {
        Ok(())
    }

    /// Puts back one entry a previous run reported through `take_changes` (its latest
    /// value). Called before any input is processed.
    fn restore(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Ok(())
    }

    /// How long (wall-clock milliseconds) the input must stay quiet before `on_idle` is
    /// called; `None` for operators whose output never waits on time passing.
    fn idle_timeout_ms(&self) -> Option<u64> {
        None
    }

    /// The input has been quiet: `elapsed_ms` more wall-clock time passed without a record
    /// since the last call (or the last record). Only the Kafka task calls it; the
    /// deterministic driver never does, so tests replay exactly.
    fn on_idle(&mut self, _elapsed_ms: i64, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }

    /// Appends the rows an expression failed on since the last call: they went on with
    /// NULL (or were left out), as in ksqlDB, and each is one processing-log entry.
    fn take_row_errors(&mut self, _out: &mut Vec<RowError>) {}
}

/// WHERE then SELECT: evaluates DataFusion physical expressions over each batch.
pub struct FilterProject {
    plan: StatelessPlan,
    output_schema: SchemaRef,
    /// Over a table a row that fails WHERE is not dropped: its key's row is deleted, so it
    /// leaves as a tombstone (marked in the last column).
    table: bool,
    /// Rows an expression failed on, until [`Operator::take_row_errors`].
    errors: Vec<RowError>,
}

impl FilterProject {
    pub fn new(plan: StatelessPlan, types: &dyn TypeRegistry) -> Result<Self> {
        Self::build(plan, types, false)
    }

    /// For a query over a table: filtered-out rows become tombstones.
    pub fn for_table(plan: StatelessPlan, types: &dyn TypeRegistry) -> Result<Self> {
        Self::build(plan, types, true)
    }

    fn build(plan: StatelessPlan, types: &dyn TypeRegistry, table: bool) -> Result<Self> {
        let mut output_schema = plan
            .output
            .row_schema(plan.window.is_some(), types)
            .map_err(|e| RuntimeError::Plan(e.to_string()))?;
        if table {
            let mut fields: Vec<arrow::datatypes::FieldRef> =
                output_schema.fields().iter().cloned().collect();
            fields.push(Arc::new(arrow::datatypes::Field::new(
                crate::aggregate::TOMBSTONE,
                DataType::Boolean,
                false,
            )));
            output_schema = Arc::new(arrow::datatypes::Schema::new(fields));
        }
        Ok(FilterProject {
            plan,
            output_schema,
            table,
            errors: Vec::new(),
        })
    }

    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }
}

impl Operator for FilterProject {
    fn name(&self) -> &'static str {
        "FilterProject"
    }

    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let mut dead: Option<BooleanArray> = None;
        // A row WHERE fails on does not pass (ksqlDB's predicate defaults to false).
        let batch = match &self.plan.filter {
            None => batch,
            Some(f) if self.table => {
                let mask = eval::predicate(f, &batch, &mut self.errors)?;
                dead = Some(mask.iter().map(|m| Some(m != Some(true))).collect());
                batch
            }
            Some(f) => {
                let mask = eval::predicate(f, &batch, &mut self.errors)?;
                filter_record_batch(&batch, &mask)?
            }
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if self.plan.table_functions.is_empty() {
            batch
        } else {
            explode(&self.plan.table_functions, &batch, &mut self.errors)?
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows();
        let pseudo = if self.plan.window.is_some() { 5 } else { 3 };
        let mut columns: Vec<ArrayRef> = batch.columns()[..pseudo].to_vec();
        for (i, p) in self.plan.projections.iter().enumerate() {
            let purpose = Purpose::Column(&p.column.name, i);
            let array = eval::evaluate(&p.expr, &batch, purpose, &mut self.errors)?;
            let want = self.output_schema.field(pseudo + i).data_type();
            let array = if array.data_type() == want {
                array
            } else {
                cast(&array, want)?
            };
            columns.push(array);
        }
        if self.table {
            columns.push(Arc::new(
                dead.unwrap_or_else(|| BooleanArray::from(vec![false; rows])),
            ));
        }
        let out_batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        out.push(out_batch);
        Ok(())
    }

    fn take_row_errors(&mut self, out: &mut Vec<RowError>) {
        out.append(&mut self.errors);
    }
}

/// Applies table functions: row `i` becomes `n_i` rows, `n_i` the longest result of the
/// functions on it (shorter results pad with NULL; NULL or empty arrays give no rows), and
/// each function's elements are appended as a column. A row whose argument fails to
/// evaluate has a NULL argument, so yields no rows (ksqlDB's `TableFunctionApplier`).
fn explode(
    tfs: &[TableFunction],
    batch: &RecordBatch,
    errors: &mut Vec<RowError>,
) -> Result<RecordBatch> {
    use arrow::array::{new_null_array, Int64Array as Idx, ListArray, UInt32Array};
    let rows = batch.num_rows();
    // Each function's per-row results, as (list of element arrays).
    let mut results: Vec<Vec<Vec<ArrayRef>>> = Vec::new();
    for (i, tf) in tfs.iter().enumerate() {
        let arr = eval::evaluate(&tf.arg, batch, Purpose::TableFunction(i), errors)?;
        let list = arr
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| RuntimeError::Eval("table function argument is not an ARRAY".into()))?;
        let mut per_row = Vec::with_capacity(rows);
        for i in 0..rows {
            if list.is_null(i) {
                per_row.push(Vec::new());
                continue;
            }
            let values = list.value(i);
            match tf.kind {
                TableFunctionKind::Explode => {
                    per_row.push((0..values.len()).map(|j| values.slice(j, 1)).collect())
                }
                TableFunctionKind::CubeExplode => {
                    let n = values.len().min(20);
                    let mut combos = Vec::with_capacity(1 << n);
                    for mask in 0..(1u32 << n) {
                        let take: Vec<Option<u32>> = (0..n)
                            .map(|j| (mask & (1 << (n - 1 - j)) != 0).then_some(j as u32))
                            .collect();
                        let picked = arrow::compute::take(&values, &UInt32Array::from(take), None)?;
                        let offsets = arrow::buffer::OffsetBuffer::from_lengths([picked.len()]);
                        let field = match list.data_type() {
                            DataType::List(f) => f.clone(),
                            _ => return Err(RuntimeError::Eval("not a list".into())),
                        };
                        let one = ListArray::try_new(field, offsets, picked, None)?;
                        combos.push(Arc::new(one) as ArrayRef);
                    }
                    per_row.push(combos);
                }
            }
        }
        results.push(per_row);
    }
    let mut take_idx: Vec<i64> = Vec::new();
    let mut counts = Vec::with_capacity(rows);
    for i in 0..rows {
        let n = results.iter().map(|r| r[i].len()).max().unwrap_or(0);
        counts.push(n);
        take_idx.extend(std::iter::repeat_n(i as i64, n));
    }
    let idx = Idx::from(take_idx);
    let mut columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &idx, None))
        .collect::<std::result::Result<_, _>>()?;
    let mut fields: Vec<arrow::datatypes::FieldRef> =
        batch.schema().fields().iter().cloned().collect();
    for (tf, per_row) in tfs.iter().zip(&results) {
        let dt = per_row
            .iter()
            .flatten()
            .next()
            .map(|a| a.data_type().clone())
            .unwrap_or(DataType::Null);
        let mut parts: Vec<ArrayRef> = Vec::new();
        for (i, items) in per_row.iter().enumerate() {
            for j in 0..counts[i] {
                parts.push(match items.get(j) {
                    Some(a) => a.clone(),
                    None => new_null_array(&dt, 1),
                });
            }
        }
        let col = if parts.is_empty() {
            new_null_array(&dt, 0)
        } else {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            arrow::compute::concat(&refs)?
        };
        fields.push(Arc::new(arrow::datatypes::Field::new(
            &tf.column,
            col.data_type().clone(),
            true,
        )));
        columns.push(col);
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(counts.iter().sum())),
    )?)
}

/// An operator that passes nothing on (for pipelines whose work is done elsewhere).
pub struct Nothing;

impl Operator for Nothing {
    fn name(&self) -> &'static str {
        "Nothing"
    }

    fn process(&mut self, _batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }
}

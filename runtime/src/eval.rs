//! Evaluating a query's expressions the way ksqlDB does: an expression that fails on a
//! row (a cast of `'abc'` to INT, an integer divided by zero, …) gives NULL for that row
//! and one processing-log entry (ksqlDB's RECORD_PROCESSING_ERROR); the other rows of
//! the batch, and the query, go on. ksqlDB evaluates row by row; Brook evaluates a whole
//! batch and, only when that fails, halves the batch until the failing rows are found,
//! so a clean batch costs one evaluation and a batch with `k` bad rows of `n` about
//! `2k·log2(n)`.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};

/// An expression that failed on one row, which went on with NULL in its place (or, for a
/// predicate or a GROUP BY key, was left out, as ksqlDB does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The input topic of the record the row came from: set by the pipeline, which knows
    /// which input it is processing (empty until then).
    pub topic: String,
    /// The record's partition and offset (the row's ROWPARTITION and ROWOFFSET).
    pub partition: i32,
    pub offset: i64,
    /// What was being computed, in ksqlDB's words (its `errorMessage`).
    pub message: String,
    /// Why it failed (ksqlDB's `cause`).
    pub cause: String,
}

/// What an expression is evaluated for, which names it in the processing log as ksqlDB's
/// messages do.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// A SELECT column: its name and index among the output columns.
    Column(&'a str, usize),
    /// WHERE or HAVING: a row it fails on does not pass.
    Predicate,
    /// GROUP BY's `index`th expression: a row it fails on is left out of the aggregation.
    GroupBy(usize),
    /// An aggregate function's `index`th argument (over all of the query's aggregates): NULL
    /// where it fails, which the aggregate skips.
    AggregateArgument(usize),
    /// A table function's argument: a row it fails on yields no rows.
    TableFunction(usize),
    /// A join's key: a row it fails on has a NULL key, which joins nothing.
    JoinKey,
}

impl Purpose<'_> {
    /// ksqlDB's `errorMessage` for a failure of `expr` (DataFusion's rendering of it: the
    /// SQL text is not kept in the plan).
    fn message(&self, expr: &dyn PhysicalExpr) -> String {
        match self {
            Purpose::Column(name, i) => {
                format!("Error computing expression {expr} for column {name} with index {i}")
            }
            Purpose::Predicate => format!("Error evaluating predicate {expr}"),
            Purpose::GroupBy(i) => format!(
                "Error calculating group-by column with index {i}. \
                 The source row will be excluded from the table."
            ),
            Purpose::AggregateArgument(i) => {
                format!("Error computing expression {expr} for aggregate argument with index {i}")
            }
            Purpose::TableFunction(i) => {
                format!("Failed to evaluate table function parameter {i}")
            }
            Purpose::JoinKey => format!("Error computing join key from expression {expr}"),
        }
    }
}

/// Evaluates `expr` over every row of `batch`. Rows it fails on are NULL in the result,
/// and each adds a [`RowError`] to `errors`. Only an expression whose type cannot be
/// resolved at all (a planning fault, not data) is an error.
pub fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    purpose: Purpose<'_>,
    errors: &mut Vec<RowError>,
) -> Result<ArrayRef> {
    let rows = batch.num_rows();
    if let Ok(a) = once(expr, batch) {
        return Ok(a);
    }
    let dt = expr
        .data_type(batch.schema_ref())
        .map_err(|e| RuntimeError::Eval(e.to_string()))?;
    if rows == 0 {
        return Ok(new_null_array(&dt, 0));
    }
    let mut pieces = Vec::new();
    bisect(expr, batch, 0, rows, &mut |at, outcome| match outcome {
        Ok(a) => pieces.push(a),
        Err(cause) => {
            errors.push(row_error(batch, at, purpose.message(expr.as_ref()), cause));
            pieces.push(new_null_array(&dt, 1));
        }
    });
    join(pieces, &dt)
}

/// Evaluates a predicate: true where it holds; NULL where it is NULL or failed (a failure
/// also adds a [`RowError`]), so that the row does not pass, as in ksqlDB.
pub fn predicate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    errors: &mut Vec<RowError>,
) -> Result<arrow::array::BooleanArray> {
    let a = evaluate(expr, batch, Purpose::Predicate, errors)?;
    a.as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .cloned()
        .ok_or_else(|| RuntimeError::Eval("WHERE did not give a BOOLEAN".into()))
}

fn once(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef, String> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| e.to_string())
}

/// Hands `found` the result of rows `start..start + len` in order: whole runs that
/// evaluate, and each failing row on its own with its error.
fn bisect(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    start: usize,
    len: usize,
    found: &mut dyn FnMut(usize, Result<ArrayRef, String>),
) {
    match once(expr, &batch.slice(start, len)) {
        Ok(a) => found(start, Ok(a)),
        Err(e) if len == 1 => found(start, Err(e)),
        Err(_) => {
            let half = len / 2;
            bisect(expr, batch, start, half, found);
            bisect(expr, batch, start + half, len - half, found);
        }
    }
}

/// The pieces as one array. Nulls stand in with the expression's declared type, which
/// may differ in detail (a list's field) from what evaluation returns: they take the
/// evaluated pieces' type.
fn join(pieces: Vec<ArrayRef>, declared: &DataType) -> Result<ArrayRef> {
    let want = pieces
        .iter()
        .find(|p| p.null_count() < p.len())
        .map_or_else(|| declared.clone(), |p| p.data_type().clone());
    let pieces = pieces
        .into_iter()
        .map(|p| {
            if p.data_type() == &want {
                Ok(p)
            } else {
                arrow::compute::cast(&p, &want)
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let refs: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
    Ok(arrow::compute::concat(&refs)?)
}

fn row_error(batch: &RecordBatch, row: usize, message: String, cause: String) -> RowError {
    let partition = batch
        .columns()
        .get(1)
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .filter(|a| row < a.len() && !a.is_null(row))
        .map_or(-1, |a| a.value(row));
    let offset = batch
        .columns()
        .get(2)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .filter(|a| row < a.len() && !a.is_null(row))
        .map_or(-1, |a| a.value(row));
    RowError {
        topic: String::new(),
        partition,
        offset,
        message,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::{col, CastExpr};

    /// ROWTIME, ROWPARTITION, ROWOFFSET and one text column `S`.
    fn rows(values: &[&str]) -> RecordBatch {
        let n = values.len();
        let schema = Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWPARTITION", DataType::Int32, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
            Field::new("S", DataType::Utf8, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![0; n])),
            Arc::new(Int32Array::from(vec![3; n])),
            Arc::new(Int64Array::from_iter_values(100..100 + n as i64)),
            Arc::new(StringArray::from(values.to_vec())),
        ];
        match RecordBatch::try_new(schema, cols) {
            Ok(b) => b,
            Err(e) => panic!("batch: {e}"),
        }
    }

    fn cast_to_int(batch: &RecordBatch) -> Arc<dyn PhysicalExpr> {
        let s = match col("S", batch.schema_ref()) {
            Ok(s) => s,
            Err(e) => panic!("column: {e}"),
        };
        Arc::new(CastExpr::new(s, DataType::Int32, None))
    }

    #[test]
    fn failing_rows_are_null_and_reported_once_each() {
        // (values, the rows that do not cast)
        let cases: &[(&[&str], &[usize])] = &[
            (&["1", "2", "3"], &[]),
            (&["x"], &[0]),
            (&["1", "x", "3", "y", "5", "6", "7"], &[1, 3]),
            (&["a", "b", "c", "d"], &[0, 1, 2, 3]),
            (&[], &[]),
        ];
        for (values, bad) in cases {
            let batch = rows(values);
            let expr = cast_to_int(&batch);
            let mut errors = Vec::new();
            let out = match evaluate(&expr, &batch, Purpose::Column("C", 1), &mut errors) {
                Ok(a) => a,
                Err(e) => panic!("{values:?}: {e}"),
            };
            let out = out.as_any().downcast_ref::<Int32Array>().cloned();
            let Some(out) = out else {
                panic!("{values:?}: not INT");
            };
            let want: Vec<Option<i32>> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (!bad.contains(&i)).then(|| v.parse().unwrap_or(0)))
                .collect();
            assert_eq!(out.iter().collect::<Vec<_>>(), want, "{values:?}");
            let offsets: Vec<i64> = errors.iter().map(|e| e.offset).collect();
            let want: Vec<i64> = bad.iter().map(|i| 100 + *i as i64).collect();
            assert_eq!(offsets, want, "{values:?}");
            for e in &errors {
                assert_eq!(e.partition, 3);
                assert!(e.message.contains("for column C with index 1"), "{e:?}");
                assert!(!e.cause.is_empty(), "{e:?}");
            }
        }
    }

    #[test]
    fn a_failing_predicate_does_not_pass() {
        let batch = rows(&["1", "x", "0"]);
        let s = cast_to_int(&batch);
        let zero = Arc::new(datafusion::physical_expr::expressions::Literal::new(
            datafusion::common::ScalarValue::Int32(Some(0)),
        ));
        let gt: Arc<dyn PhysicalExpr> =
            Arc::new(datafusion::physical_expr::expressions::BinaryExpr::new(
                s,
                datafusion::logical_expr::Operator::Gt,
                zero,
            ));
        let mut errors = Vec::new();
        let mask = match predicate(&gt, &batch, &mut errors) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            mask.iter().collect::<Vec<_>>(),
            vec![Some(true), None, Some(false)]
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("Error evaluating predicate"));
    }
}

//! Comparisons and NULL helpers that use one of their operands more than once, as
//! functions that take each operand once: a plan that copied an operand would double with
//! every level of nesting (`a BETWEEN … BETWEEN …`, `COALESCE(COALESCE(…), …)`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::kernels::boolean::{and_kleene, not};
use arrow::compute::{cast_with_options, is_not_null};
use arrow::datatypes::DataType;
use datafusion::common::format::DEFAULT_CAST_OPTIONS;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Expr, Operator};
use datafusion::physical_expr_common::datum::apply_cmp;

use super::udf::{call_batch, exec_err};

/// `x [NOT] BETWEEN lo AND hi` from `[x, lo, hi]`: `x` is cast to `casts[0]` to meet `lo`
/// and to `casts[1]` to meet `hi` (`None`: as it is), as the planner's casts would.
pub(crate) fn between(args: [Expr; 3], casts: [Option<DataType>; 2], negated: bool) -> Expr {
    call_batch(
        "BETWEEN",
        DataType::Boolean,
        args.into(),
        move |arrays, n| {
            let [x, lo, hi] = arrays else {
                return Err(exec_err("BETWEEN takes three arguments"));
            };
            let ge = compare(Operator::GtEq, &cast(x, &casts[0])?, lo, n)?;
            let le = compare(Operator::LtEq, &cast(x, &casts[1])?, hi, n)?;
            let inside = and_kleene(&ge, &le)?;
            let out = if negated { not(&inside)? } else { inside };
            Ok(Arc::new(out) as ArrayRef)
        },
    )
}

fn cast(a: &ArrayRef, to: &Option<DataType>) -> DfResult<ArrayRef> {
    match to {
        Some(t) if a.data_type() != t => Ok(cast_with_options(a, t, &DEFAULT_CAST_OPTIONS)?),
        _ => Ok(Arc::clone(a)),
    }
}

/// `l op r` as DataFusion's comparison computes it (nested types too); NULL when a side is
/// an untyped NULL.
fn compare(op: Operator, l: &ArrayRef, r: &ArrayRef, n: usize) -> DfResult<BooleanArray> {
    if l.data_type() == &DataType::Null || r.data_type() == &DataType::Null {
        return Ok(BooleanArray::new_null(n));
    }
    let out = apply_cmp(
        op,
        &ColumnarValue::Array(Arc::clone(l)),
        &ColumnarValue::Array(Arc::clone(r)),
    )?
    .into_array(n)?;
    out.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| exec_err("a comparison did not give a BOOLEAN"))
}

/// COALESCE of arguments of one type `dt`: each row's first non-NULL value. All arguments
/// are evaluated, as ksqlDB's COALESCE (a function) evaluates its arguments.
pub(crate) fn coalesce(args: Vec<Expr>, dt: DataType) -> Expr {
    call_batch("COALESCE", dt, args, |arrays, _| {
        let Some((last, rest)) = arrays.split_last() else {
            return Err(exec_err("COALESCE needs an argument"));
        };
        let mut out = Arc::clone(last);
        for a in rest.iter().rev() {
            if a.data_type() == &DataType::Null {
                continue;
            }
            let out_typed = cast(&out, &Some(a.data_type().clone()))?;
            out = arrow::compute::kernels::zip::zip(&is_not_null(a)?, a, &out_typed)?;
        }
        Ok(out)
    })
}

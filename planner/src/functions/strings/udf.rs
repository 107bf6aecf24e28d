//! A DataFusion scalar function built from a Rust closure, for ksqlDB functions whose
//! semantics (null handling, Java string rules, 1-based indexes) DataFusion lacks.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{new_empty_array, ArrayRef};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Evaluates a batch: the argument arrays (all of the batch's length) and the row count.
pub(crate) type ArrayFn = dyn Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync;

/// Evaluates one row: the arguments' values, typed as the compiler cast them.
pub(crate) type RowFn = dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

pub(crate) struct ClosureUdf {
    name: String,
    signature: Signature,
    ret: DataType,
    f: Arc<ArrayFn>,
}

impl fmt::Debug for ClosureUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClosureUdf")
            .field("name", &self.name)
            .field("ret", &self.ret)
            .finish()
    }
}

impl PartialEq for ClosureUdf {
    fn eq(&self, other: &Self) -> bool {
        // Two instances are the same function only if they share the closure: the same
        // name can carry different constant arguments baked in.
        self.name == other.name && self.ret == other.ret && Arc::ptr_eq(&self.f, &other.f)
    }
}

impl Eq for ClosureUdf {}

impl Hash for ClosureUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.ret.hash(state);
    }
}

impl ScalarUDFImpl for ClosureUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.ret.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let volatile = self.signature.volatility == Volatility::Volatile;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        // Constant arguments are evaluated once, unless the function is random.
        let rows = if all_scalar && !volatile { 1 } else { n };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let out = (self.f)(&arrays, rows)?;
        let out = if out.data_type() != &self.ret {
            arrow::compute::cast(&out, &self.ret)?
        } else {
            out
        };
        if all_scalar && !volatile {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// Calls a batch-level function.
pub(crate) fn call_array(
    name: &str,
    ret: DataType,
    volatility: Volatility,
    args: Vec<Expr>,
    f: Arc<ArrayFn>,
) -> Expr {
    let signature = if args.is_empty() {
        Signature::nullary(volatility)
    } else {
        Signature::variadic_any(volatility)
    };
    let udf = ScalarUDF::new_from_impl(ClosureUdf {
        name: name.to_lowercase(),
        signature,
        ret,
        f,
    });
    udf.call(args)
}

/// Calls a row-at-a-time function. Results that are NULL may be untyped.
pub(crate) fn call_rows(
    name: &str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> Expr {
    let f: Arc<RowFn> = Arc::new(f);
    let ret2 = ret.clone();
    let batch = move |arrays: &[ArrayRef], n: usize| -> DfResult<ArrayRef> {
        rows_to_array(&ret2, arrays, n, f.as_ref())
    };
    call_array(name, ret, Volatility::Immutable, args, Arc::new(batch))
}

/// Like [`call_rows`], but any NULL argument gives NULL without calling `f`.
pub(crate) fn call_strict(
    name: &str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> Expr {
    call_rows(name, ret, args, move |row| {
        if row.iter().any(|v| v.is_null()) {
            return Ok(ScalarValue::Null);
        }
        f(row)
    })
}

fn rows_to_array(ret: &DataType, arrays: &[ArrayRef], n: usize, f: &RowFn) -> DfResult<ArrayRef> {
    if n == 0 {
        return Ok(new_empty_array(ret));
    }
    let typed_null = ScalarValue::try_from(ret)?;
    let mut out = Vec::with_capacity(n);
    let mut row = Vec::with_capacity(arrays.len());
    for i in 0..n {
        row.clear();
        for a in arrays {
            row.push(ScalarValue::try_from_array(a, i)?);
        }
        let v = f(&row)?;
        out.push(if v.is_null() { typed_null.clone() } else { v });
    }
    let nested = matches!(
        ret,
        DataType::List(_) | DataType::Map(..) | DataType::Struct(_)
    );
    if !nested {
        return ScalarValue::iter_to_array(out);
    }
    // Nested values may differ from `ret` in field names or nullability; each is
    // brought to `ret` before they are joined.
    let parts = out
        .iter()
        .map(|v| {
            let a = v.to_array_of_size(1)?;
            if a.data_type() == ret {
                Ok(a)
            } else {
                Ok(arrow::compute::cast(&a, ret)?)
            }
        })
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::concat(&refs)?)
}

/// An evaluation error, surfaced to ksqlDB's processing log by the runtime.
pub(crate) fn exec_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

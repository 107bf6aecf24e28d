//! DataFusion scalar functions built from Rust closures, shared by the function families:
//! ksqlDB's semantics (Java null handling, 1-based indexes, Java
//! date patterns) are stated plainly as per-batch or per-row code.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{new_empty_array, Array, ArrayRef};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Evaluates a batch: the argument arrays (all of the batch's length) and the row count.
pub(crate) type ArrayFn = dyn Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync;

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
        // The same name can carry different compiled lambdas or constants: only a shared
        // closure makes two instances the same function.
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
        // Constant arguments are evaluated once, unless the function reads the clock.
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
    ScalarUDF::new_from_impl(ClosureUdf {
        name: name.to_lowercase(),
        signature,
        ret,
        f,
    })
    .call(args)
}

/// Calls a batch-level function that is deterministic.
pub(crate) fn call_batch(
    name: &str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> Expr {
    call_array(name, ret, Volatility::Immutable, args, Arc::new(f))
}

/// Calls a row-at-a-time function; a NULL it returns may be untyped.
pub(crate) fn call_rows(
    name: &str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> Expr {
    let ret2 = ret.clone();
    call_batch(name, ret, args, move |arrays, n| {
        let mut out = Vec::with_capacity(n);
        let mut row = Vec::with_capacity(arrays.len());
        for i in 0..n {
            row.clear();
            for a in arrays {
                row.push(ScalarValue::try_from_array(a, i)?);
            }
            out.push(f(&row)?);
        }
        scalars_to_array(&ret2, out)
    })
}

/// Like [`call_strict`], for a function that can make a large value from small arguments:
/// the values it makes for one batch may take at most [`crate::limits::MAX_BATCH_BYTES`]
/// (each value is bounded by `f` itself).
pub(crate) fn call_strict_bounded(
    name: &'static str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> Expr {
    let ret2 = ret.clone();
    call_batch(name, ret, args, move |arrays, n| {
        let mut budget = crate::limits::BatchBudget::new(name);
        let mut out = Vec::with_capacity(n);
        let mut row = Vec::with_capacity(arrays.len());
        for i in 0..n {
            row.clear();
            for a in arrays {
                row.push(ScalarValue::try_from_array(a, i)?);
            }
            let v = if row.iter().any(ScalarValue::is_null) {
                ScalarValue::Null
            } else {
                f(&row)?
            };
            budget.take(v.size())?;
            out.push(v);
        }
        scalars_to_array(&ret2, out)
    })
}

/// Like [`call_rows`], but any NULL argument gives NULL without calling `f`.
pub(crate) fn call_strict(
    name: &str,
    ret: DataType,
    args: Vec<Expr>,
    f: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> Expr {
    call_rows(name, ret, args, move |row| {
        if row.iter().any(ScalarValue::is_null) {
            return Ok(ScalarValue::Null);
        }
        f(row)
    })
}

/// Joins per-row values into an array of type `ret`; untyped NULLs take that type.
pub(crate) fn scalars_to_array(ret: &DataType, values: Vec<ScalarValue>) -> DfResult<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(ret));
    }
    let typed_null = ScalarValue::try_from(ret)?;
    let values: Vec<ScalarValue> = values
        .into_iter()
        .map(|v| {
            if v == ScalarValue::Null {
                typed_null.clone()
            } else {
                v
            }
        })
        .collect();
    let nested = matches!(
        ret,
        DataType::List(_) | DataType::Map(..) | DataType::Struct(_)
    );
    if !nested {
        let out = ScalarValue::iter_to_array(values)?;
        return if out.data_type() == ret {
            Ok(out)
        } else {
            Ok(arrow::compute::cast(&out, ret)?)
        };
    }
    // Nested values may differ from `ret` in field names or nullability; each is brought
    // to `ret` before they are joined.
    let parts = values
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
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::concat(&refs)?)
}

/// An evaluation error, reported by the runtime for the record that caused it.
pub(crate) fn exec_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

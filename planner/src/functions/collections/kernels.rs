//! Array and map building blocks: rows of lists and maps are read by offsets, and results
//! are rebuilt by taking element indices, so one kernel serves every element type
//! (nested ones included).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, MapArray, StructArray, UInt64Array};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use crate::functions::udf::exec_err;

pub(crate) fn list(a: &ArrayRef) -> DfResult<&ListArray> {
    a.as_list_opt::<i32>()
        .ok_or_else(|| exec_err(format!("expected an ARRAY, got {}", a.data_type())))
}

pub(crate) fn map(a: &ArrayRef) -> DfResult<&MapArray> {
    a.as_map_opt()
        .ok_or_else(|| exec_err(format!("expected a MAP, got {}", a.data_type())))
}

/// Row `i`'s element positions in the list's (or map's) flattened values.
pub(crate) fn range(offsets: &[i32], i: usize) -> Range<usize> {
    let start = offsets[i].max(0) as usize;
    let end = offsets[i + 1].max(0) as usize;
    start..end.max(start)
}

/// The elements of a range as scalars, for comparing and hashing.
pub(crate) fn scalars(values: &ArrayRef, r: Range<usize>) -> DfResult<Vec<ScalarValue>> {
    r.map(|j| ScalarValue::try_from_array(values, j)).collect()
}

fn take(values: &ArrayRef, idx: Vec<u64>) -> DfResult<ArrayRef> {
    Ok(arrow::compute::take(
        values.as_ref(),
        &UInt64Array::from(idx),
        None,
    )?)
}

/// Splits per-row index lists into flattened indices, lengths and validity.
fn flatten(rows: Vec<Option<Vec<usize>>>) -> (Vec<u64>, Vec<usize>, Vec<bool>) {
    let mut idx = Vec::new();
    let mut lengths = Vec::with_capacity(rows.len());
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        match r {
            Some(v) => {
                lengths.push(v.len());
                idx.extend(v.into_iter().map(|i| i as u64));
                valid.push(true);
            }
            None => {
                lengths.push(0);
                valid.push(false);
            }
        }
    }
    (idx, lengths, valid)
}

/// A list whose row `i` holds `values[k]` for each `k` of `rows[i]`, or NULL for `None`.
pub(crate) fn build_list(values: &ArrayRef, rows: Vec<Option<Vec<usize>>>) -> DfResult<ArrayRef> {
    let (idx, lengths, valid) = flatten(rows);
    let taken = take(values, idx)?;
    list_from_parts(taken, lengths, valid)
}

/// A list from its flattened values, per-row lengths and validity.
pub(crate) fn list_from_parts(
    values: ArrayRef,
    lengths: Vec<usize>,
    valid: Vec<bool>,
) -> DfResult<ArrayRef> {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::from_lengths(lengths),
        values,
        Some(NullBuffer::from(valid)),
    )?))
}

/// A map whose row `i` holds the entries `(keys[k], values[k])` for each `k` of `rows[i]`.
pub(crate) fn build_map(
    keys: &ArrayRef,
    values: &ArrayRef,
    rows: Vec<Option<Vec<usize>>>,
) -> DfResult<ArrayRef> {
    let (idx, lengths, valid) = flatten(rows);
    let k = take(keys, idx.clone())?;
    let v = take(values, idx)?;
    map_from_parts(k, v, lengths, valid)
}

/// A map from its flattened keys and values, per-row lengths and validity. The field
/// names are those of `types::arrow_type`, so the result needs no cast.
pub(crate) fn map_from_parts(
    keys: ArrayRef,
    values: ArrayRef,
    lengths: Vec<usize>,
    valid: Vec<bool>,
) -> DfResult<ArrayRef> {
    let fields = Fields::from(vec![
        Field::new("key", keys.data_type().clone(), false),
        Field::new("value", values.data_type().clone(), true),
    ]);
    let entries = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
    let entries_field = Arc::new(Field::new("entries", DataType::Struct(fields), false));
    Ok(Arc::new(MapArray::try_new(
        entries_field,
        OffsetBuffer::from_lengths(lengths),
        entries,
        Some(NullBuffer::from(valid)),
        false,
    )?))
}

/// Flattened values of two lists, so one index space addresses both: the second's
/// elements start at the returned offset.
pub(crate) fn concat_values(a: &ListArray, b: &ListArray) -> DfResult<(ArrayRef, usize)> {
    let av = a.values().clone();
    let bv = b.values().clone();
    let shift = av.len();
    let bv = if bv.data_type() == av.data_type() {
        bv
    } else {
        arrow::compute::cast(&bv, av.data_type())?
    };
    Ok((arrow::compute::concat(&[av.as_ref(), bv.as_ref()])?, shift))
}

/// `Double.toString`: `1.0`, `1.0E10`, `1.5E-4`.
pub(crate) fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    if mantissa.contains('.') {
        format!("{mantissa}E{exp}")
    } else {
        format!("{mantissa}.0E{exp}")
    }
}

/// `BigDecimal.toPlainString` of an unscaled value and scale.
pub(crate) fn decimal_string(unscaled: i128, scale: i8) -> String {
    let neg = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    let body = if scale <= 0 {
        format!("{digits}{}", "0".repeat((-scale) as usize))
    } else {
        let s = scale as usize;
        let padded = if digits.len() <= s {
            format!("{}{digits}", "0".repeat(s + 1 - digits.len()))
        } else {
            digits
        };
        let (whole, frac) = padded.split_at(padded.len() - s);
        format!("{whole}.{frac}")
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// How Java's `String.valueOf` shows a primitive element (ARRAY_JOIN).
pub(crate) fn java_string(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Float64(Some(f)) => java_double(*f),
        ScalarValue::Float32(Some(f)) => java_double(*f as f64),
        ScalarValue::Decimal128(Some(u), _, s) => decimal_string(*u, *s),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_number_text() {
        let doubles = [
            (0.0, "0.0"),
            (1.23, "1.23"),
            (-23.42, "-23.42"),
            (2.0, "2.0"),
            (1e10, "1.0E10"),
            (1.5e-4, "1.5E-4"),
            (1234567.0, "1234567.0"),
        ];
        for (v, want) in doubles {
            assert_eq!(java_double(v), want, "{v}");
        }
        let decimals = [
            (12345, 2, "123.45"),
            (-5, 1, "-0.5"),
            (5, 3, "0.005"),
            (7, 0, "7"),
        ];
        for (u, s, want) in decimals {
            assert_eq!(decimal_string(u, s), want);
        }
    }

    #[test]
    fn lists_are_rebuilt_from_indices() {
        let values: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![1, 2, 3]));
        let out = build_list(&values, vec![Some(vec![2, 0]), None, Some(vec![])]).expect("builds");
        let l = out.as_list::<i32>();
        assert_eq!(l.len(), 3);
        assert!(l.is_null(1));
        assert_eq!(
            l.value(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values(),
            &[3, 1]
        );
        assert_eq!(l.value(2).len(), 0);
    }
}

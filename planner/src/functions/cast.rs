//! ksqlDB's CAST where Arrow's cast disagrees with it: integers narrow the way Java's
//! `intValue()` does (wrapping, not failing), a value too wide for a DECIMAL becomes
//! NULL, structs convert field by field by name (fields the source lacks are NULL), and
//! maps and structs become text the way their Java `toString` writes them.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, ListArray, MapArray, StringBuilder, StructArray,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int32Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;

use super::collections::kernels::java_string;
use super::udf::{call_batch, exec_err};

/// Whether converting `from` to `to` needs [`cast_array`] rather than Arrow's cast.
pub(crate) fn needs_ksql_cast(from: &DataType, to: &DataType) -> bool {
    if from == to {
        return false;
    }
    match (from, to) {
        (DataType::Int64, DataType::Int32)
        | (DataType::Float64, DataType::Int32 | DataType::Int64)
        | (DataType::Decimal128(..), DataType::Int32 | DataType::Int64) => true,
        (f, DataType::Decimal128(..)) => f.is_numeric(),
        (DataType::List(_) | DataType::Map(..) | DataType::Struct(_), _) => true,
        _ => false,
    }
}

/// `CAST(expr AS to)` with ksqlDB's semantics.
pub(crate) fn ksql_cast(expr: Expr, to: DataType) -> Expr {
    let target = to.clone();
    call_batch("ksql_cast", to, vec![expr], move |args, _| match args {
        [a] => cast_array(a, &target),
        _ => Err(exec_err("ksql_cast takes one argument")),
    })
}

fn arrow_cast(a: &ArrayRef, to: &DataType, safe: bool) -> DfResult<ArrayRef> {
    let options = CastOptions {
        safe,
        ..Default::default()
    };
    Ok(cast_with_options(a, to, &options)?)
}

/// Converts every row of `a` to `to`.
pub(crate) fn cast_array(a: &ArrayRef, to: &DataType) -> DfResult<ArrayRef> {
    let from = a.data_type();
    if from == to {
        return Ok(a.clone());
    }
    Ok(match (from, to) {
        // Java's narrowing keeps the low-order bits; a double saturates (NaN is 0), as
        // Rust's `as` does.
        (DataType::Int64, DataType::Int32) => Arc::new(
            a.as_primitive::<Int64Type>()
                .unary::<_, Int32Type>(|v| v as i32),
        ),
        (DataType::Float64, DataType::Int32) => Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Int32Type>(|v| v as i32),
        ),
        (DataType::Float64, DataType::Int64) => Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Int64Type>(|v| v as i64),
        ),
        (DataType::Decimal128(_, s), DataType::Int32 | DataType::Int64) => {
            let divisor = 10i128.checked_pow((*s).max(0) as u32).unwrap_or(i128::MAX);
            let whole = a
                .as_primitive::<Decimal128Type>()
                .unary::<_, Int64Type>(|v| (v / divisor) as i64);
            let whole: ArrayRef = Arc::new(whole);
            if *to == DataType::Int32 {
                cast_array(&whole, to)?
            } else {
                whole
            }
        }
        (f, DataType::Decimal128(..)) if f.is_numeric() => arrow_cast(a, to, true)?,
        (DataType::List(_), DataType::List(item)) => {
            let l = a.as_list::<i32>();
            let values = cast_array(l.values(), item.data_type())?;
            Arc::new(ListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        (DataType::Map(..), DataType::Map(entries, sorted)) => {
            let m = a.as_map();
            let DataType::Struct(fields) = entries.data_type() else {
                return Err(exec_err(format!("malformed MAP type {to}")));
            };
            let (Some(kf), Some(vf)) = (fields.first(), fields.get(1)) else {
                return Err(exec_err(format!("malformed MAP type {to}")));
            };
            let keys = cast_array(m.keys(), kf.data_type())?;
            let values = cast_array(m.values(), vf.data_type())?;
            let entries_array = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
            Arc::new(MapArray::try_new(
                entries.clone(),
                m.offsets().clone(),
                entries_array,
                m.nulls().cloned(),
                *sorted,
            )?)
        }
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = a.as_struct();
            let columns = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => cast_array(c, f.data_type()),
                    None => Ok(new_null_array(f.data_type(), s.len())),
                })
                .collect::<DfResult<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                s.nulls().cloned(),
            )?)
        }
        (DataType::List(_) | DataType::Map(..) | DataType::Struct(_), DataType::Utf8) => {
            let mut out = StringBuilder::with_capacity(a.len(), a.len() * 16);
            let mut text = String::new();
            for i in 0..a.len() {
                if a.is_null(i) {
                    out.append_null();
                } else {
                    text.clear();
                    java_text(a, i, &mut text)?;
                    out.append_value(&text);
                }
            }
            Arc::new(out.finish())
        }
        _ => arrow_cast(a, to, false)?,
    })
}

/// Row `i` as Java's `toString` writes the value ksqlDB holds: `[1, 2]` for a list,
/// `{k=v, k2=v2}` for a map, and Connect's `Struct{A=1,B=x}` (NULL fields left out).
pub(crate) fn java_text(a: &ArrayRef, i: usize, out: &mut String) -> DfResult<()> {
    if a.is_null(i) {
        out.push_str("null");
        return Ok(());
    }
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let values = l.values();
            let offsets = l.value_offsets();
            out.push('[');
            for (n, j) in (offsets[i] as usize..offsets[i + 1] as usize).enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                java_text(values, j, out)?;
            }
            out.push(']');
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let offsets = m.value_offsets();
            out.push('{');
            for (n, j) in (offsets[i] as usize..offsets[i + 1] as usize).enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                java_text(m.keys(), j, out)?;
                out.push('=');
                java_text(m.values(), j, out)?;
            }
            out.push('}');
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            out.push_str("Struct{");
            let mut first = true;
            for (f, c) in fields.iter().zip(s.columns()) {
                if c.is_null(i) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(f.name());
                out.push('=');
                java_text(c, i, out)?;
            }
            out.push('}');
        }
        _ => out.push_str(&java_string(&ScalarValue::try_from_array(a, i)?)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{arrow_type, NoTypes};
    use arrow::array::{Int32Array, Int64Array, MapBuilder, StringArray};
    use arrow::datatypes::{Field, Fields};

    fn ty(sql: &str) -> DataType {
        arrow_type(&brook_sql::parse_type(sql).expect("type parses"), &NoTypes).expect("arrow")
    }

    #[test]
    fn bigint_to_int_wraps_like_java() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(2147483648), None]));
        let out = cast_array(&a, &DataType::Int32).unwrap();
        let out = out.as_primitive::<Int32Type>();
        assert_eq!(out.value(0), 1);
        assert_eq!(out.value(1), i32::MIN);
        assert!(out.is_null(2));
    }

    #[test]
    fn decimal_overflow_is_null() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 10]));
        let out = cast_array(&a, &DataType::Decimal128(2, 1)).unwrap();
        assert!(out.is_valid(0));
        assert!(out.is_null(1));
    }

    #[test]
    fn struct_gains_missing_fields_as_null() {
        let from = ty("STRUCT<A BIGINT>");
        let DataType::Struct(fields) = from else {
            panic!("not a struct")
        };
        let a: ArrayRef = Arc::new(StructArray::new(
            fields,
            vec![Arc::new(Int64Array::from(vec![5]))],
            None,
        ));
        let out = cast_array(&a, &ty("STRUCT<A INT, B BIGINT>")).unwrap();
        let s = out.as_struct();
        assert_eq!(s.column(0).as_primitive::<Int32Type>().value(0), 5);
        assert!(s.column(1).is_null(0));
    }

    #[test]
    fn maps_and_structs_as_text() {
        let mut b = MapBuilder::new(None, arrow::array::StringBuilder::new(), {
            arrow::array::Int32Builder::new()
        });
        b.keys().append_value("this");
        b.values().append_value(1);
        b.append(true).unwrap();
        let m: ArrayRef = Arc::new(b.finish());
        let out = cast_array(&m, &DataType::Utf8).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "{this=1}");

        let fields = Fields::from(vec![
            Field::new("F0", DataType::Int32, true),
            Field::new("f1", DataType::Utf8, true),
            Field::new("G", DataType::Int32, true),
        ]);
        let s: ArrayRef = Arc::new(StructArray::new(
            fields,
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(Int32Array::from(vec![None])),
            ],
            None,
        ));
        let out = cast_array(&s, &DataType::Utf8).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "Struct{F0=1,f1=x}");
    }
}

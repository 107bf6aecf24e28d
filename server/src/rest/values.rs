//! Row values as ksqlDB writes them in query responses: numbers as JSON numbers (DECIMAL
//! with its scale, so `1.50` stays `1.50`), BYTES as base64, TIMESTAMP/DATE/TIME as ISO
//! text, STRUCT and MAP as objects. The JSON text is written directly rather than through
//! `serde_json::Value`, which would turn decimals into binary floats.

use std::fmt::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int32Type, Int64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;

use super::Framing;

/// The rows of an output batch (pseudo columns first, as operators emit them), framed for
/// the wire, each preceded by its separator.
pub(super) fn rows_chunk(batch: &RecordBatch, framing: Framing) -> String {
    let mut out = String::new();
    // ROWTIME, ROWPARTITION and ROWOFFSET lead every row batch; they are not selected.
    let (columns, tombstones) = selected(batch);
    for row in 0..batch.num_rows() {
        match framing {
            Framing::Delimited => {}
            Framing::JsonArray => out.push(','),
            Framing::Legacy => out.push_str(",\n{\"row\":{\"columns\":"),
            Framing::LegacyLines => out.push_str("{\"row\":{\"columns\":"),
        }
        out.push('[');
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_value(&mut out, c.as_ref(), row);
        }
        out.push(']');
        match framing {
            Framing::Delimited => out.push('\n'),
            Framing::JsonArray => {}
            // A deleted row of a table is marked as ksqlDB marks it.
            Framing::Legacy | Framing::LegacyLines
                if tombstones.is_some_and(|t| t.is_valid(row) && t.value(row)) =>
            {
                out.push_str(if framing == Framing::Legacy {
                    ",\"tombstone\":true}}"
                } else {
                    ",\"tombstone\":true}},\n"
                })
            }
            Framing::Legacy => out.push_str("}}"),
            Framing::LegacyLines => out.push_str("}},\n"),
        }
    }
    out
}

/// The columns a row batch shows (after the pseudo columns), and its tombstone flags: a
/// push query over a table marks deleted rows with a trailing `TOMBSTONE` column.
pub(super) fn selected(
    batch: &RecordBatch,
) -> (
    &[arrow::array::ArrayRef],
    Option<&arrow::array::BooleanArray>,
) {
    let n = batch.num_columns();
    let last = batch.schema().fields().last().map(|f| f.name().clone());
    if n > 3 && last.as_deref() == Some(brook_runtime::aggregate::TOMBSTONE) {
        (
            &batch.columns()[3..n - 1],
            batch.column(n - 1).as_any().downcast_ref(),
        )
    } else {
        (&batch.columns()[3.min(n)..], None)
    }
}

fn write_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail; the fallback keeps the output valid JSON regardless.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "null".into()));
}

/// Text through Arrow's formatter, for the temporal types.
fn formatted(array: &dyn Array, i: usize) -> Option<String> {
    let opts = FormatOptions::new()
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"))
        .with_time_format(Some("%H:%M:%S%.3f"))
        .with_date_format(Some("%Y-%m-%d"));
    ArrayFormatter::try_new(array, &opts)
        .ok()
        .map(|f| f.value(i).to_string())
}

pub(super) fn write_value(out: &mut String, array: &dyn Array, i: usize) {
    if array.is_null(i) {
        out.push_str("null");
        return;
    }
    match array.data_type() {
        DataType::Boolean => out.push_str(if array.as_boolean().value(i) {
            "true"
        } else {
            "false"
        }),
        DataType::Int32 => {
            let _ = write!(out, "{}", array.as_primitive::<Int32Type>().value(i));
        }
        DataType::Int64 => {
            let _ = write!(out, "{}", array.as_primitive::<Int64Type>().value(i));
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(i);
            // serde_json writes `1.0` for 1.0, as Jackson does; NaN and infinities have no
            // JSON number and become null.
            out.push_str(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into()));
        }
        DataType::Decimal128(_, _) => {
            out.push_str(&array.as_primitive::<Decimal128Type>().value_as_string(i))
        }
        DataType::Utf8 => write_str(out, array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => write_str(out, array.as_string::<i64>().value(i)),
        DataType::Utf8View => write_str(out, array.as_string_view().value(i)),
        DataType::Binary => write_str(
            out,
            &base64::engine::general_purpose::STANDARD.encode(array.as_binary::<i32>().value(i)),
        ),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(i);
            out.push('[');
            for j in 0..items.len() {
                if j > 0 {
                    out.push(',');
                }
                write_value(out, items.as_ref(), j);
            }
            out.push(']');
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push('{');
            for j in 0..entries.len() {
                if j > 0 {
                    out.push(',');
                }
                // JSON keys are text: a STRING key as is, any other key as its JSON text.
                if let Some(s) = keys.as_string_opt::<i32>() {
                    write_str(out, s.value(j));
                } else {
                    let mut k = String::new();
                    write_value(&mut k, keys.as_ref(), j);
                    write_str(out, &k);
                }
                out.push(':');
                write_value(out, values.as_ref(), j);
            }
            out.push('}');
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            out.push('{');
            for (j, (f, c)) in fields.iter().zip(s.columns()).enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_str(out, f.name());
                out.push(':');
                write_value(out, c.as_ref(), i);
            }
            out.push('}');
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Time32(_) => {
            match formatted(array, i) {
                Some(t) => write_str(out, &t),
                None => out.push_str("null"),
            }
        }
        // Types Brook's columns never have; their display text keeps the row readable.
        _ => match formatted(array, i) {
            Some(t) => write_str(out, &t),
            None => out.push_str("null"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Decimal128Array, Float64Array, StringArray};

    use super::*;

    fn one(array: &dyn Array) -> String {
        let mut s = String::new();
        write_value(&mut s, array, 0);
        s
    }

    #[test]
    fn a_trailing_tombstone_column_marks_rows_and_is_not_shown() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("ROWTIME", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("ROWPARTITION", arrow::datatypes::DataType::Int32, false),
            arrow::datatypes::Field::new("ROWOFFSET", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("K", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new(
                brook_runtime::aggregate::TOMBSTONE,
                arrow::datatypes::DataType::Boolean,
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
                Arc::new(arrow::array::Int32Array::from(vec![0, 0])),
                Arc::new(arrow::array::Int64Array::from(vec![0, 1])),
                Arc::new(arrow::array::Int64Array::from(vec![10, 10])),
                Arc::new(arrow::array::BooleanArray::from(vec![false, true])),
            ],
        )
        .expect("batch");
        assert_eq!(
            rows_chunk(&batch, Framing::LegacyLines),
            "{\"row\":{\"columns\":[10]}},\n{\"row\":{\"columns\":[10],\"tombstone\":true}},\n"
        );
    }

    #[test]
    fn values_are_written_as_ksqldb_does() {
        let dec = Decimal128Array::from(vec![150])
            .with_precision_and_scale(4, 2)
            .expect("valid decimal");
        assert_eq!(one(&dec), "1.50");
        assert_eq!(one(&Float64Array::from(vec![1.0])), "1.0");
        assert_eq!(one(&BinaryArray::from(vec![&b"hi"[..]])), "\"aGk=\"");
        assert_eq!(one(&StringArray::from(vec!["a\"b"])), "\"a\\\"b\"");
        let ts = arrow::array::TimestampMillisecondArray::from(vec![1]);
        assert_eq!(one(&ts), "\"1970-01-01T00:00:00.001\"");
        let nulls: Arc<dyn Array> = Arc::new(StringArray::from(vec![None::<&str>]));
        assert_eq!(one(nulls.as_ref()), "null");
    }
}

//! Between Kafka records and Arrow row batches: decoding keys, values, headers and
//! timestamps into the row schema operators work on, and encoding results back.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use brook_planner::catalog::{Catalog, Source};
use brook_planner::schema::{Column, Namespace};

use crate::error::{Result, RuntimeError};
use crate::format::{self, Part};

/// A record in the in-memory log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub partition: i32,
    pub offset: i64,
}

/// Rows decoded from records, and the records that did not decode.
#[derive(Debug)]
pub struct DecodedRows {
    /// The rows of the records that decoded, in order (None when none did).
    pub batch: Option<RecordBatch>,
    /// Per record that did not decode: its index in the input and why.
    pub errors: Vec<(usize, String)>,
}

/// Decodes records of a source into one row batch in the row schema. Records that fail to
/// decode are left out and reported, never fatal: a bad record must not stop a query.
pub fn decode_records(source: &Source, records: &[Record], types: &Catalog) -> Result<DecodedRows> {
    let schema = source
        .schema
        .row_schema(source.window.is_some(), types)
        .map_err(|e| RuntimeError::Plan(e.to_string()))?;
    let keys: Vec<Column> = source.schema.key_columns().cloned().collect();
    let values: Vec<Column> = source.schema.value_columns().cloned().collect();
    // A windowed source's keys end with their window (Kafka Streams' layout).
    let mut bounds: Vec<(i64, i64)> = Vec::new();
    let key_payloads: Vec<Option<&[u8]>> = records
        .iter()
        .map(|r| match (source.window, r.key.as_deref()) {
            (Some(w), Some(k)) => {
                let (k, b) = split_windowed_key(w, k);
                bounds.push(b);
                Some(k)
            }
            (Some(_), None) => {
                bounds.push((0, 0));
                None
            }
            (None, k) => k,
        })
        .collect();
    let value_payloads: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
    let k =
        format::Codec::new(&source.key_format, Part::Key, &keys, types)?.decode(&key_payloads)?;
    let v = format::Codec::new(&source.value_format, Part::Value, &values, types)?
        .decode(&value_payloads)?;
    let mut errors: Vec<(usize, String)> = Vec::new();
    // Per record, whether it failed: looked up per row below, where searching `errors`
    // would make a batch of many bad records quadratic.
    let mut failed = vec![false; records.len()];
    for (i, failed) in failed.iter_mut().enumerate() {
        if let Some(Some(e)) = k.errors.get(i) {
            errors.push((i, format!("key: {e}")));
            *failed = true;
        } else if let Some(Some(e)) = v.errors.get(i) {
            errors.push((i, format!("value: {e}")));
            *failed = true;
        }
    }
    let mut key_arrays = k.columns.into_iter();
    let mut value_arrays = v.columns.into_iter();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.timestamp),
        )),
        Arc::new(Int32Array::from_iter_values(
            records.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.offset),
        )),
    ];
    if source.window.is_some() {
        cols.push(Arc::new(Int64Array::from_iter_values(
            bounds.iter().map(|b| b.0),
        )));
        cols.push(Arc::new(Int64Array::from_iter_values(
            bounds.iter().map(|b| b.1),
        )));
    }
    for c in &source.schema.columns {
        let dt = brook_planner::types::arrow_type(&c.ty, types)
            .map_err(|e| RuntimeError::Plan(e.to_string()))?;
        let arr = match &c.namespace {
            Namespace::Key => key_arrays.next(),
            Namespace::Value => value_arrays.next(),
            Namespace::Headers | Namespace::Header(_) => Some(headers_array(c, records, &dt)?),
        }
        .ok_or_else(|| RuntimeError::Plan(format!("no data decoded for column {}", c.name)))?;
        cols.push(arr);
    }
    let mut batch = RecordBatch::try_new(schema, cols)?;
    if let Some((col, _)) = &source.timestamp {
        let mut ts = Vec::with_capacity(batch.num_rows());
        for (i, failed) in failed.iter_mut().enumerate() {
            if *failed {
                ts.push(0);
                continue;
            }
            let t = match row_timestamp(source, &batch, i) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    errors.push((i, format!("the TIMESTAMP column {col} is null")));
                    *failed = true;
                    0
                }
                Err(e) => {
                    errors.push((i, e.to_string()));
                    *failed = true;
                    0
                }
            };
            ts.push(t);
        }
        let mut cols = batch.columns().to_vec();
        cols[0] = Arc::new(Int64Array::from(ts));
        batch = RecordBatch::try_new(batch.schema(), cols)?;
    }
    if errors.len() == records.len() {
        return Ok(DecodedRows {
            batch: None,
            errors,
        });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|(i, _)| *i);
        let mask: arrow::array::BooleanArray = failed.iter().map(|f| Some(!f)).collect();
        batch = arrow::compute::filter_record_batch(&batch, &mask)?;
    }
    Ok(DecodedRows {
        batch: Some(batch),
        errors,
    })
}

fn headers_array(c: &Column, records: &[Record], dt: &DataType) -> Result<ArrayRef> {
    use arrow::array::BinaryArray;
    match &c.namespace {
        Namespace::Header(k) => {
            let vals: Vec<Option<&[u8]>> = records
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .rev()
                        .find(|(hk, _)| hk == k)
                        .and_then(|(_, v)| v.as_deref())
                })
                .collect();
            Ok(Arc::new(BinaryArray::from(vals)))
        }
        _ => {
            // ARRAY<STRUCT<KEY STRING, VALUE BYTES>>: built through JSON-free scalar values.
            use datafusion::common::ScalarValue;
            let DataType::List(item) = dt else {
                return Err(RuntimeError::Plan(format!(
                    "HEADERS column {} must be ARRAY<STRUCT<KEY STRING, VALUE BYTES>>",
                    c.name
                )));
            };
            let DataType::Struct(fields) = item.data_type() else {
                return Err(RuntimeError::Plan("HEADERS items must be structs".into()));
            };
            let mut lists = Vec::new();
            for r in records {
                let mut items = Vec::new();
                for (k, v) in &r.headers {
                    let s = ScalarValue::Struct(Arc::new(arrow::array::StructArray::try_new(
                        fields.clone(),
                        vec![
                            Arc::new(arrow::array::StringArray::from(vec![k.as_str()])),
                            Arc::new(BinaryArray::from(vec![v.as_deref()])),
                        ],
                        None,
                    )?));
                    items.push(s);
                }
                lists.push(ScalarValue::List(ScalarValue::new_list_nullable(
                    &items,
                    item.data_type(),
                )));
            }
            ScalarValue::iter_to_array(lists).map_err(|e| RuntimeError::Eval(e.to_string()))
        }
    }
}

/// ROWTIME from the source's TIMESTAMP column.
pub fn row_timestamp(source: &Source, batch: &RecordBatch, row: usize) -> Result<Option<i64>> {
    let Some((col, fmt)) = &source.timestamp else {
        return Ok(None);
    };
    let Some(idx) = batch.schema().index_of(col).ok() else {
        return Err(RuntimeError::Plan(format!("no TIMESTAMP column {col}")));
    };
    let arr = batch.column(idx);
    if arr.is_null(row) {
        return Ok(None);
    }
    match arr.data_type() {
        DataType::Int64 => Ok(arr
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(row))),
        DataType::Timestamp(_, _) => {
            let c = arrow::compute::cast(arr, &DataType::Int64)?;
            Ok(c.as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(row)))
        }
        DataType::Utf8 => {
            let s = arr
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .map(|a| a.value(row).to_string())
                .unwrap_or_default();
            let Some(pattern) = fmt else {
                return Err(RuntimeError::Plan(format!(
                    "the TIMESTAMP column {col} is a STRING: give its TIMESTAMP_FORMAT"
                )));
            };
            brook_planner::functions::parse_timestamp(pattern, &s)
                .map(Some)
                .map_err(|e| {
                    RuntimeError::Plan(format!(
                        "TIMESTAMP column {col}: cannot parse {s:?} with '{pattern}': {e}"
                    ))
                })
        }
        other => Err(RuntimeError::Plan(format!(
            "TIMESTAMP column {col} has unsupported type {other}"
        ))),
    }
}

pub type EncodedRow = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// Encodes a row batch of a source's schema into key and value payloads.
pub fn encode_batch(sink: &Source, batch: &RecordBatch) -> Result<Vec<EncodedRow>> {
    encode_batch_with(sink, batch, false)
}

/// [`encode_batch`]; `rekeyed`: the rows were given new keys (PARTITION BY), so a
/// multi-column key of NULLs is written as one (in object formats) rather than as no key.
pub fn encode_batch_with(
    sink: &Source,
    batch: &RecordBatch,
    rekeyed: bool,
) -> Result<Vec<EncodedRow>> {
    let schema = batch.schema();
    let pick = |cols: &[Column]| -> Result<Vec<ArrayRef>> {
        cols.iter()
            .map(|c| {
                schema
                    .index_of(&c.name)
                    .map(|i| batch.column(i).clone())
                    .map_err(RuntimeError::from)
            })
            .collect()
    };
    let keys: Vec<Column> = sink.schema.key_columns().cloned().collect();
    let values: Vec<Column> = sink
        .schema
        .columns
        .iter()
        .filter(|c| c.namespace != Namespace::Key)
        .cloned()
        .collect();
    let rows = batch.num_rows();
    let key_arrays = pick(&keys)?;
    let object_format = matches!(
        sink.key_format.kind,
        brook_planner::format::FormatKind::Json
            | brook_planner::format::FormatKind::JsonSr
            | brook_planner::format::FormatKind::Avro
            | brook_planner::format::FormatKind::Protobuf
            | brook_planner::format::FormatKind::ProtobufNoSr
    );
    let keep_nulls = rekeyed && object_format && key_arrays.len() > 1;
    let mut k = format::encode_with(
        &sink.key_format,
        Part::Key,
        &keys,
        &key_arrays,
        0..rows,
        !keep_nulls,
    )?;
    // A key whose columns are all NULL is a null key, whatever the format.
    for (i, slot) in k.iter_mut().enumerate() {
        // (A multi-column key in an object format keeps its fields, as NULLs.)
        let object_format = matches!(
            sink.key_format.kind,
            brook_planner::format::FormatKind::Json
                | brook_planner::format::FormatKind::JsonSr
                | brook_planner::format::FormatKind::Avro
                | brook_planner::format::FormatKind::Protobuf
                | brook_planner::format::FormatKind::ProtobufNoSr
        );
        if !key_arrays.is_empty()
            && (key_arrays.len() == 1 || !object_format)
            && key_arrays.iter().all(|a| a.is_null(i))
        {
            *slot = None;
        }
    }
    let v = format::encode(
        &sink.value_format,
        Part::Value,
        &values,
        &pick(&values)?,
        0..rows,
    )?;
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| RuntimeError::Plan("ROWTIME must be BIGINT".into()))?;
    // A sink's TIMESTAMP column, when given, sets its records' timestamps.
    let sink_ts: Vec<Option<i64>> = if sink.timestamp.is_some() {
        (0..rows)
            .map(|i| row_timestamp(sink, batch, i).ok().flatten())
            .collect()
    } else {
        Vec::new()
    };
    // Windowed keys carry their window as Kafka Streams writes it: the key, then the
    // window start (and for sessions the end first), each 8 bytes big-endian.
    if sink.window.is_some() {
        let col = |n: &str| {
            schema.index_of(n).ok().and_then(|i| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
            })
        };
        if let (Some(starts), Some(ends)) = (
            col(brook_planner::schema::WINDOWSTART),
            col(brook_planner::schema::WINDOWEND),
        ) {
            for (i, key) in k.iter_mut().enumerate() {
                let mut bytes = key.take().unwrap_or_default();
                if matches!(
                    sink.window,
                    Some(brook_planner::catalog::WindowType::Session)
                ) {
                    bytes.extend_from_slice(&ends.value(i).to_be_bytes());
                }
                bytes.extend_from_slice(&starts.value(i).to_be_bytes());
                *key = Some(bytes);
            }
        }
    }
    // Aggregations mark rows whose key is gone: those are tombstones.
    let tombstones = schema
        .index_of(crate::aggregate::TOMBSTONE)
        .ok()
        .and_then(|i| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<arrow::array::BooleanArray>()
                .cloned()
        });
    Ok(k.into_iter()
        .zip(v)
        .enumerate()
        .map(|(i, (k, v))| {
            let dead = tombstones.as_ref().is_some_and(|t| t.value(i));
            (
                k,
                if dead { None } else { v },
                sink_ts.get(i).copied().flatten().unwrap_or(ts.value(i)),
            )
        })
        .collect())
}

/// Splits a windowed key into the key and its window (start, end): time windows append the
/// start, session windows the end then the start, each 8 bytes big-endian.
pub fn split_windowed_key(w: brook_planner::catalog::WindowType, k: &[u8]) -> (&[u8], (i64, i64)) {
    use brook_planner::catalog::WindowType;
    let be = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    };
    let n = k.len();
    match w {
        WindowType::Session if n >= 16 => (&k[..n - 16], (be(&k[n - 8..]), be(&k[n - 16..n - 8]))),
        WindowType::Tumbling { size_ms } | WindowType::Hopping { size_ms } if n >= 8 => {
            let start = be(&k[n - 8..]);
            (&k[..n - 8], (start, start + size_ms as i64))
        }
        _ => (k, (0, 0)),
    }
}

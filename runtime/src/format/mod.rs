//! Key and value serialization formats: Kafka record bytes to Arrow columns and back, with
//! ksqlDB's semantics (see `docs/reference/serialization.md` of ksqlDB).
//!
//! A [`Codec`] is built once per source or sink from its [`FormatSpec`], whether it handles
//! the key or the value ([`Part`]) and the columns that part carries. It then decodes
//! batches of payloads into one Arrow array per column, reporting records that do not decode
//! one by one, and encodes rows of Arrow arrays into payloads.
//!
//! Implemented: JSON (and JSON_SR, without Schema Registry framing on write), DELIMITED,
//! KAFKA, NONE, AVRO (with a [`registry::SchemaRegistry`]), PROTOBUF and PROTOBUF_NOSR.
//! The registry also holds PROTOBUF and JSON_SR schemas, from which `CREATE STREAM/TABLE`
//! infers columns ([`registry::ksql_columns`]).

mod avro;
mod avro_datum;
mod builder;
mod delimited;
mod json;
mod json_schema;
mod kafka;
mod proto_schema;
mod protobuf;
pub mod registry;
pub mod registry_client;
mod scalar;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, Field, Fields};
use brook_planner::format::{FormatKind, FormatSpec};
use brook_planner::schema::{Column, SchemaType};
use brook_planner::types::{arrow_type, NoTypes, TypeRegistry};
use brook_sql::Type;

use crate::{Result, RuntimeError};

use builder::Builder;

/// Which half of a Kafka record a codec reads and writes. Formats treat them differently:
/// a single key column is written bare, a single value column inside an object by default,
/// and a key without columns is always a null key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Key,
    Value,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Key => "key",
            Part::Value => "value",
        })
    }
}

/// The result of decoding a batch of payloads.
#[derive(Debug)]
pub struct Decoded {
    /// One array per column, each with one row per payload. Rows that failed to decode (and
    /// null payloads) are null in every column.
    pub columns: Vec<ArrayRef>,
    /// Per payload: why it did not decode, or `None` if it did.
    pub errors: Vec<Option<RuntimeError>>,
}

impl Decoded {
    /// How many payloads failed to decode.
    pub fn error_count(&self) -> usize {
        self.errors.iter().filter(|e| e.is_some()).count()
    }

    /// `true` for rows that decoded, `false` for failed ones; `None` when all decoded, so
    /// the common case costs nothing. Suitable for `arrow::compute::filter_record_batch`.
    pub fn ok_mask(&self) -> Option<BooleanArray> {
        if self.errors.iter().all(Option::is_none) {
            return None;
        }
        Some(self.errors.iter().map(|e| Some(e.is_none())).collect())
    }
}

/// A column as a codec sees it: name, ksqlDB type with `CREATE TYPE` names resolved, and the
/// Arrow type its values are decoded into.
#[derive(Debug, Clone)]
struct ColumnSpec {
    name: String,
    ty: Type,
    data_type: DataType,
}

/// Decodes and encodes one part (key or value) of records in one format.
#[derive(Debug, Clone)]
pub struct Codec {
    kind: FormatKind,
    part: Part,
    delimiter: char,
    /// Whether a single column is written bare rather than as a one-field object/record.
    unwrapped: bool,
    columns: Vec<ColumnSpec>,
    /// AVRO's writer schema and registry; `None` for other formats.
    avro: Option<avro::AvroState>,
}

impl Codec {
    /// Checks that the format can carry the columns (types, column count, wrapping option)
    /// and resolves their types.
    pub fn new(
        spec: &FormatSpec,
        part: Part,
        columns: &[Column],
        types: &dyn TypeRegistry,
    ) -> Result<Codec> {
        let mut specs = Vec::with_capacity(columns.len());
        for c in columns {
            let ty = resolve(&c.ty, types)?;
            let data_type = arrow_type(&ty, types).map_err(|e| RuntimeError::FormatSchema {
                reason: format!("column `{}`: {e}", c.name),
            })?;
            specs.push(ColumnSpec {
                name: c.name.clone(),
                ty,
                data_type,
            });
        }
        let kind = spec.kind;
        let schema_err = |reason: String| Err(RuntimeError::FormatSchema { reason });
        let single = specs.len() == 1;
        // WRAP_SINGLE_VALUE is a value option: a single key column is always bare (a key
        // that wants wrapping is declared as a STRUCT). A value with several columns cannot
        // honour it, so a caller resolving `ksql.persistence.wrap.single.values` must only
        // apply that default to single-column values, as ksqlDB does.
        let wrap = match part {
            Part::Key => None,
            Part::Value => spec.wrap_single_value,
        };
        if wrap.is_some() && specs.len() > 1 {
            return schema_err(
                "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas".into(),
            );
        }
        let unwrapped = match kind {
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                if wrap == Some(false) {
                    return schema_err(format!(
                        "Format '{kind}' does not support 'WRAP_SINGLE_VALUE' set to 'false'."
                    ));
                }
                for c in &specs {
                    protobuf::check_type(kind, &c.ty).map_err(|reason| {
                        RuntimeError::FormatSchema {
                            reason: format!("column `{}`: {reason}", c.name),
                        }
                    })?;
                }
                // Single keys and values are always messages in PROTOBUF.
                false
            }
            FormatKind::None => {
                if !specs.is_empty() {
                    return schema_err(format!(
                        "The 'NONE' format can only be used when no columns are defined. Got: [{}]",
                        describe_columns(&specs, part)
                    ));
                }
                false
            }
            FormatKind::Json | FormatKind::JsonSr | FormatKind::Avro => {
                for c in &specs {
                    let checked = match kind {
                        FormatKind::Avro => avro::check_type(&c.ty),
                        _ => json::check_type(&c.ty),
                    };
                    checked.map_err(|reason| RuntimeError::FormatSchema {
                        reason: format!("column `{}`: {reason}", c.name),
                    })?;
                }
                single
                    && match part {
                        Part::Key => true,
                        Part::Value => wrap == Some(false),
                    }
            }
            FormatKind::Delimited | FormatKind::Kafka => {
                if wrap == Some(true) {
                    return schema_err(format!(
                        "Format '{kind}' does not support 'WRAP_SINGLE_VALUE' set to 'true'."
                    ));
                }
                for c in &specs {
                    let supported = match kind {
                        FormatKind::Kafka => kafka::supports(&c.ty),
                        _ => delimited::supports(&c.ty),
                    };
                    if !supported {
                        let reason = format!(
                            "The '{kind}' format does not support type '{}', column: `{}`",
                            base_type_name(&c.ty),
                            c.name
                        );
                        return schema_err(match part {
                            Part::Value => reason,
                            // ksqlDB's wording for keys, which names the whole key schema.
                            Part::Key => format!(
                                "Key format does not support schema.\nformat: {kind}\n\
                                 schema: Persistence{{columns=[{}], features=[]}}\n\
                                 reason: {reason}",
                                describe_columns(&specs, part)
                            ),
                        });
                    }
                }
                // A key without columns is a null key in any format; a value needs one.
                if kind == FormatKind::Kafka
                    && (specs.len() > 1 || (specs.is_empty() && part == Part::Value))
                {
                    return schema_err(format!(
                        "The 'KAFKA' format only supports a single field. Got: [{}]",
                        describe_columns(&specs, part)
                    ));
                }
                true
            }
        };
        if kind == FormatKind::Delimited && matches!(spec.delimiter, '"' | '\r' | '\n') {
            return schema_err(format!(
                "{:?} cannot be used as a delimiter",
                spec.delimiter
            ));
        }
        let avro = match kind {
            FormatKind::Avro => Some(avro::AvroState::new(&specs, unwrapped)?),
            _ => None,
        };
        Ok(Codec {
            kind,
            part,
            delimiter: spec.delimiter,
            unwrapped,
            columns: specs,
            avro,
        })
    }

    /// Uses `registry` for AVRO schemas, registering the writer schema under
    /// `<topic>-key` / `<topic>-value`. Without this, AVRO codecs share one in-memory
    /// registry per process ([`registry::default_registry`]) and register under a subject
    /// named after the record, which is enough for everything one process writes and reads:
    /// readers find schemas by the id in the payload. Other formats ignore it.
    pub fn with_registry(
        mut self,
        registry: Arc<dyn registry::SchemaRegistry>,
        topic: &str,
    ) -> Codec {
        if let Some(state) = &mut self.avro {
            state.set_registry(registry, topic);
        }
        self
    }

    /// The Avro schema AVRO writes, as JSON text; `None` for other formats.
    pub fn avro_schema(&self) -> Option<String> {
        self.avro
            .as_ref()
            .and_then(|s| serde_json::to_string(s.schema()).ok())
    }

    pub fn kind(&self) -> FormatKind {
        self.kind
    }

    pub fn part(&self) -> Part {
        self.part
    }

    /// Whether a single column is read and written bare (`10`) rather than wrapped
    /// (`{"V": 10}`).
    pub fn is_unwrapped(&self) -> bool {
        self.unwrapped
    }

    /// The Arrow fields of the decoded columns, in order (all nullable).
    pub fn fields(&self) -> Fields {
        self.columns
            .iter()
            .map(|c| Arc::new(Field::new(&c.name, c.data_type.clone(), true)))
            .collect()
    }

    /// Decodes a batch of payloads. A `None` payload gives nulls in every column for its row
    /// (tombstone semantics are the caller's); a payload that does not decode gives nulls too,
    /// and its error in [`Decoded::errors`].
    pub fn decode(&self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        let mut builders = self
            .columns
            .iter()
            .map(|c| Builder::new(&c.data_type, payloads.len()))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| RuntimeError::FormatSchema { reason })?;
        let mut errors = Vec::with_capacity(payloads.len());
        // Keys without columns (and NONE) ignore whatever bytes the record carries.
        if builders.is_empty() {
            errors.resize_with(payloads.len(), || None);
            return Ok(Decoded {
                columns: Vec::new(),
                errors,
            });
        }
        let mut row_decoder = match self.kind {
            FormatKind::Delimited => RowDecoder::Delimited(delimited::Decoder::new(self)),
            FormatKind::Kafka => RowDecoder::Kafka,
            FormatKind::Avro => RowDecoder::Avro(avro::Decoder::new()),
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => RowDecoder::Protobuf,
            _ => RowDecoder::Json,
        };
        for (row, payload) in payloads.iter().enumerate() {
            let Some(bytes) = payload else {
                builders.iter_mut().for_each(Builder::push_null);
                errors.push(None);
                continue;
            };
            let result = match &mut row_decoder {
                RowDecoder::Json => json::decode_row(self, bytes, &mut builders),
                RowDecoder::Delimited(d) => d.decode_row(self, bytes, &mut builders),
                RowDecoder::Kafka => kafka::decode_row(bytes, &mut builders[0])
                    .map_err(|f| f.in_column(&self.columns[0].name)),
                RowDecoder::Avro(d) => d.decode_row(self, bytes, &mut builders),
                RowDecoder::Protobuf => protobuf::decode_row(self, bytes, &mut builders),
            };
            match result {
                Ok(()) => errors.push(None),
                Err(fail) => {
                    // Every builder held exactly `row` values before this payload; dropping
                    // what the failed payload appended keeps the columns aligned.
                    for b in &mut builders {
                        b.truncate(row);
                        b.push_null();
                    }
                    errors.push(Some(self.decode_err(fail.to_string())));
                }
            }
        }
        let columns = builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Decoded { columns, errors })
    }

    /// Encodes rows `rows` of the column arrays (one per column, in order). `None` is a null
    /// payload: always for NONE and for a key without columns, for a key whose columns are
    /// all null, and for a null bare single value. Whether a row is a tombstone (null value)
    /// is the caller's to decide. Arrays of another Arrow type than the column's are cast
    /// first.
    pub fn encode(&self, arrays: &[ArrayRef], rows: Range<usize>) -> Result<Vec<Option<Vec<u8>>>> {
        self.encode_with(arrays, rows, true)
    }

    /// [`Codec::encode`]; `null_keys`: a key whose columns are all NULL is a null key
    /// (false: it is written like any other, e.g. a JSON object of NULLs).
    pub fn encode_with(
        &self,
        arrays: &[ArrayRef],
        rows: Range<usize>,
        null_keys: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        if arrays.len() != self.columns.len() {
            return Err(self.encode_err(format!(
                "expected {} column arrays, got {}",
                self.columns.len(),
                arrays.len()
            )));
        }
        let mut cast = Vec::with_capacity(arrays.len());
        for (a, c) in arrays.iter().zip(&self.columns) {
            if rows.end > a.len() {
                return Err(self.encode_err(format!(
                    "rows {rows:?} out of bounds for column `{}` of {} rows",
                    c.name,
                    a.len()
                )));
            }
            if a.data_type() == &c.data_type {
                cast.push(Arc::clone(a));
            } else {
                let converted = arrow::compute::cast(a, &c.data_type).map_err(|e| {
                    self.encode_err(format!(
                        "column `{}`: cannot convert {} to {}: {e}",
                        c.name,
                        a.data_type(),
                        c.ty
                    ))
                })?;
                cast.push(converted);
            }
        }
        if self.kind == FormatKind::None || (self.part == Part::Key && self.columns.is_empty()) {
            return Ok(vec![None; rows.len()]);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut delimited = delimited::Encoder::new(self.delimiter);
        // Registered once per batch rather than per row.
        let avro_id = match &self.avro {
            Some(state) => Some(state.writer_id(self.part)?),
            None => None,
        };
        for row in rows {
            // A key whose columns are all null is a null key (a row keyed by a null),
            // whatever the format would otherwise write for null columns.
            if null_keys && self.part == Part::Key && cast.iter().all(|a| a.is_null(row)) {
                out.push(None);
                continue;
            }
            let payload = match self.kind {
                FormatKind::Delimited => delimited.encode_row(&cast, row).map(Some),
                FormatKind::Kafka => kafka::encode_value(&cast[0], row),
                FormatKind::Avro => match avro_id {
                    Some(id) => avro::encode_row(self, id, &cast, row),
                    None => Err("no Avro schema for this codec".to_string()),
                },
                FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                    protobuf::encode_row(self, &cast, row)
                }
                _ => json::encode_row(self, &cast, row),
            };
            out.push(payload.map_err(|r| self.encode_err(r))?);
        }
        Ok(out)
    }

    /// The payload ksqlDB's test driver produces for a test record's `key` or `value`
    /// written as JSON: JSON text for JSON (JSON `null` is a null payload), the string's
    /// bytes for DELIMITED, the Kafka serializer's bytes of the single column for KAFKA
    /// (BYTES given as base64), nothing for NONE, and for AVRO the value read as JSON reads
    /// it, written in Avro with this codec's schema.
    pub fn json_to_payload(&self, value: &serde_json::Value) -> Result<Option<Vec<u8>>> {
        let keyless = self.part == Part::Key && self.columns.is_empty();
        if value.is_null() || self.kind == FormatKind::None || keyless {
            return Ok(None);
        }
        match self.kind {
            FormatKind::Delimited => Ok(Some(match value {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            })),
            FormatKind::Kafka => match self.columns.first() {
                Some(c) => kafka::json_to_payload(&c.ty, value)
                    .map(Some)
                    .map_err(|r| self.encode_err(format!("column `{}`: {r}", c.name))),
                None => Ok(None),
            },
            FormatKind::Avro => avro::json_to_payload(self, value),
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                protobuf::json_to_payload(self, value)
            }
            _ => serde_json::to_vec(value)
                .map(Some)
                .map_err(|e| self.encode_err(e.to_string())),
        }
    }

    /// A payload as a test record's `key` or `value` is written, to compare with expected
    /// records: parsed JSON for JSON, a JSON string of the text for DELIMITED, a number or
    /// string per the column's type for KAFKA (BYTES as base64), AVRO decoded and shown as
    /// JSON would write it; `null` for a null payload and for NONE.
    pub fn payload_to_json(&self, payload: Option<&[u8]>) -> Result<serde_json::Value> {
        let Some(bytes) = payload else {
            return Ok(serde_json::Value::Null);
        };
        match self.kind {
            FormatKind::None => Ok(serde_json::Value::Null),
            FormatKind::Delimited => Ok(serde_json::Value::String(
                String::from_utf8_lossy(bytes).into_owned(),
            )),
            FormatKind::Kafka => match self.columns.first() {
                Some(c) => kafka::payload_to_json(&c.ty, bytes)
                    .map_err(|f| self.decode_err(f.in_column(&c.name).to_string())),
                None => Ok(serde_json::Value::Null),
            },
            FormatKind::Avro => avro::payload_to_json(self, bytes),
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                protobuf::payload_to_json(self, bytes)
            }
            _ => serde_json::from_slice(json::strip_sr_framing(self.kind, bytes))
                .map_err(|e| self.decode_err(format!("invalid JSON: {e}"))),
        }
    }

    fn decode_err(&self, reason: String) -> RuntimeError {
        RuntimeError::Decode {
            format: self.kind,
            part: self.part,
            reason,
        }
    }

    fn encode_err(&self, reason: String) -> RuntimeError {
        RuntimeError::Encode {
            format: self.kind,
            part: self.part,
            reason,
        }
    }
}

enum RowDecoder {
    Json,
    Delimited(delimited::Decoder),
    Kafka,
    Avro(avro::Decoder),
    Protobuf,
}

/// Decodes `payloads` with a one-off [`Codec`] (no `CREATE TYPE` names); build a codec once
/// instead when decoding many batches of one source.
pub fn decode(
    spec: &FormatSpec,
    part: Part,
    columns: &[Column],
    payloads: &[Option<&[u8]>],
) -> Result<Decoded> {
    Codec::new(spec, part, columns, &NoTypes)?.decode(payloads)
}

/// Encodes rows of `arrays` with a one-off [`Codec`]; see [`Codec::encode`].
pub fn encode(
    spec: &FormatSpec,
    part: Part,
    columns: &[Column],
    arrays: &[ArrayRef],
    rows: Range<usize>,
) -> Result<Vec<Option<Vec<u8>>>> {
    Codec::new(spec, part, columns, &NoTypes)?.encode(arrays, rows)
}

/// See [`Codec::encode_with`].
pub fn encode_with(
    spec: &FormatSpec,
    part: Part,
    columns: &[Column],
    arrays: &[ArrayRef],
    rows: Range<usize>,
    null_keys: bool,
) -> Result<Vec<Option<Vec<u8>>>> {
    Codec::new(spec, part, columns, &NoTypes)?.encode_with(arrays, rows, null_keys)
}

/// See [`Codec::json_to_payload`].
pub fn json_to_payload(
    spec: &FormatSpec,
    part: Part,
    columns: &[Column],
    value: &serde_json::Value,
) -> Result<Option<Vec<u8>>> {
    Codec::new(spec, part, columns, &NoTypes)?.json_to_payload(value)
}

/// See [`Codec::payload_to_json`].
pub fn payload_to_json(
    spec: &FormatSpec,
    part: Part,
    columns: &[Column],
    payload: Option<&[u8]>,
) -> Result<serde_json::Value> {
    Codec::new(spec, part, columns, &NoTypes)?.payload_to_json(payload)
}

/// A type with `CREATE TYPE` names replaced by what they stand for.
fn resolve(ty: &Type, types: &dyn TypeRegistry) -> Result<Type> {
    Ok(match ty {
        Type::Custom(name) => {
            let t = types
                .resolve(&name.value)
                .ok_or_else(|| RuntimeError::FormatSchema {
                    reason: format!("unknown type `{}`", name.value),
                })?;
            resolve(&t, types)?
        }
        Type::Array(t) => Type::Array(Box::new(resolve(t, types)?)),
        Type::Map(k, v) => Type::Map(Box::new(resolve(k, types)?), Box::new(resolve(v, types)?)),
        Type::Struct(fields) => Type::Struct(
            fields
                .iter()
                .map(|f| {
                    Ok(brook_sql::StructField {
                        name: f.name.clone(),
                        ty: resolve(&f.ty, types)?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// ksqlDB's name of a type's kind, as its format errors print it (`ARRAY`, not the element).
fn base_type_name(ty: &Type) -> String {
    match ty {
        Type::Array(_) => "ARRAY".into(),
        Type::Map(..) => "MAP".into(),
        Type::Struct(_) => "STRUCT".into(),
        Type::Decimal { .. } => "DECIMAL".into(),
        other => other.to_string(),
    }
}

fn describe_columns(columns: &[ColumnSpec], part: Part) -> String {
    columns
        .iter()
        .map(|c| {
            let key = if part == Part::Key { " KEY" } else { "" };
            format!("`{}` {}{key}", c.name, SchemaType(&c.ty))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a value did not decode, and where in the record: built only on failure.
#[derive(Debug)]
pub(crate) struct Fail {
    /// Innermost last while unwinding; printed outermost first.
    path: Vec<PathSeg>,
    reason: Reason,
}

#[derive(Debug)]
enum PathSeg {
    Column(String),
    Field(String),
    Index(usize),
    Key(String),
}

#[derive(Debug)]
enum Reason {
    /// The value's kind does not fit the column's type.
    Mismatch {
        expected: String,
        found: String,
    },
    Other(String),
}

impl Fail {
    pub(crate) fn mismatch(expected: impl Into<String>, found: impl Into<String>) -> Fail {
        Fail {
            path: Vec::new(),
            reason: Reason::Mismatch {
                expected: expected.into(),
                found: found.into(),
            },
        }
    }

    pub(crate) fn other(reason: impl Into<String>) -> Fail {
        Fail {
            path: Vec::new(),
            reason: Reason::Other(reason.into()),
        }
    }

    pub(crate) fn in_column(mut self, name: &str) -> Fail {
        self.path.push(PathSeg::Column(name.to_string()));
        self
    }

    pub(crate) fn in_field(mut self, name: &str) -> Fail {
        self.path.push(PathSeg::Field(name.to_string()));
        self
    }

    pub(crate) fn at_index(mut self, i: usize) -> Fail {
        self.path.push(PathSeg::Index(i));
        self
    }

    pub(crate) fn at_key(mut self, k: &str) -> Fail {
        self.path.push(PathSeg::Key(k.to_string()));
        self
    }

    fn path_text(&self) -> Option<String> {
        if self.path.is_empty() {
            return None;
        }
        let mut s = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                PathSeg::Column(n) => s.push_str(&format!("`{n}`")),
                PathSeg::Field(n) => s.push_str(&format!(".`{n}`")),
                PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
                PathSeg::Key(k) => s.push_str(&format!("[{k:?}]")),
            }
        }
        Some(s)
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path_text();
        match (&self.reason, path) {
            (Reason::Mismatch { expected, found }, Some(p)) => {
                write!(f, "expected {expected} for column {p}, found {found}")
            }
            (Reason::Mismatch { expected, found }, None) => {
                write!(f, "expected {expected}, found {found}")
            }
            (Reason::Other(r), Some(p)) => write!(f, "column {p}: {r}"),
            (Reason::Other(r), None) => f.write_str(r),
        }
    }
}

/// A value as error messages show it: strings quoted and cut short, so that a message names
/// the offending value without copying a whole record into logs.
pub(crate) fn show_text(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests;

//! AVRO: Avro binary in Confluent's wire format (a zero byte, the writer schema's id as a
//! 4-byte big-endian number, then the datum), with the schemas ksqlDB generates.
//!
//! Writing uses the schema generated from the columns: a record
//! `io.confluent.ksql.avro_schemas.KsqlDataSourceSchema` with an optional field per column
//! (or the bare type of an unwrapped single column), nested STRUCTs as records named
//! `KsqlDataSourceSchema_<FIELD>` after their path. Reading uses whatever schema the payload
//! names in the registry, matching record fields to columns case-insensitively and coercing
//! values as ksqlDB does, so data from other producers reads too.
//!
//! The encoder is our own rather than `apache_avro::to_avro_datum`: it writes straight from
//! Arrow arrays, and writes map entries in their order (apache-avro's `Value::Map` is a
//! `HashMap`, which would make the bytes differ from run to run). Reading decodes into
//! apache-avro's values with a decoder of our own ([`super::avro_datum`]) that bounds every
//! count and length by the bytes at hand and refuses recursive writer schemas.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimeUnit, TimestampMillisecondType,
};
use brook_planner::format::FormatKind;
use brook_sql::Type;

use super::avro_datum::WriterSchema;
use super::builder::{Builder, Kind};
use super::registry::{default_registry, subject, SchemaRegistry};
use super::scalar::{parse_decimal, push_java_double};
use super::{show_text, Codec, ColumnSpec, Fail, Part};
use crate::{Result, RuntimeError};

pub(super) const NAMESPACE: &str = "io.confluent.ksql.avro_schemas";
pub(super) const RECORD_NAME: &str = "KsqlDataSourceSchema";

/// The first byte of a payload in Confluent's wire format.
const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// What an AVRO codec holds besides its columns: its writer schema and where to register
/// and find schemas.
#[derive(Debug, Clone)]
pub(super) struct AvroState {
    schema: Arc<Schema>,
    registry: Arc<dyn SchemaRegistry>,
    /// `None` until a topic is given; see [`AvroState::subject`].
    topic: Option<String>,
}

impl AvroState {
    /// The writer schema for the columns, in the process-wide registry and without a topic
    /// until [`Codec::with_registry`] says otherwise.
    pub(super) fn new(columns: &[ColumnSpec], unwrapped: bool) -> Result<AvroState> {
        let json =
            schema_json(columns, unwrapped).map_err(|reason| RuntimeError::FormatSchema {
                reason: format!("Schema is not compatible with Avro: {reason}"),
            })?;
        let schema = Schema::parse(&json).map_err(|e| RuntimeError::FormatSchema {
            reason: format!("Schema is not compatible with Avro: {e}"),
        })?;
        Ok(AvroState {
            schema: Arc::new(schema),
            registry: default_registry(),
            topic: None,
        })
    }

    pub(super) fn set_registry(&mut self, registry: Arc<dyn SchemaRegistry>, topic: &str) {
        self.registry = registry;
        self.topic = Some(topic.to_string());
    }

    pub(super) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// `<topic>-key` / `<topic>-value`; a codec built without a topic registers under the
    /// record's full name instead, which only matters for `latest` lookups (readers find
    /// schemas by id).
    fn subject(&self, part: Part) -> String {
        match &self.topic {
            Some(t) => subject(t, part),
            None => subject(&format!("{NAMESPACE}.{RECORD_NAME}"), part),
        }
    }

    /// Registers the writer schema (idempotent) and returns its id.
    pub(super) fn writer_id(&self, part: Part) -> Result<u32> {
        self.registry.register(&self.subject(part), &self.schema)
    }
}

/// Types Avro cannot carry: maps with other than STRING keys, at any depth (ksqlDB's
/// wording).
pub(super) fn check_type(ty: &Type) -> Result<(), String> {
    match ty {
        Type::Map(k, v) => {
            if **k != Type::String {
                return Err("Avro only supports MAPs with STRING keys".into());
            }
            check_type(v)
        }
        Type::Array(t) => check_type(t),
        Type::Struct(fields) => fields.iter().try_for_each(|f| check_type(&f.ty)),
        _ => Ok(()),
    }
}

/// The writer schema as JSON: a record of optional fields, or the bare type of an unwrapped
/// single column.
fn schema_json(columns: &[ColumnSpec], unwrapped: bool) -> Result<serde_json::Value, String> {
    if unwrapped {
        if let Some(c) = columns.first() {
            let mut t = type_json(&c.ty, RECORD_NAME)?;
            if let Some(obj) = t.as_object_mut() {
                if obj.get("type").and_then(|t| t.as_str()) == Some("record") {
                    obj.insert("namespace".into(), NAMESPACE.into());
                }
            }
            return Ok(t);
        }
    }
    let fields = columns
        .iter()
        .map(|c| field_json(&c.name, &c.ty, RECORD_NAME))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::json!({
        "type": "record",
        "name": RECORD_NAME,
        "namespace": NAMESPACE,
        "fields": fields,
    }))
}

fn field_json(name: &str, ty: &Type, record: &str) -> Result<serde_json::Value, String> {
    check_name(name)?;
    let t = type_json(ty, &format!("{record}_{name}"))?;
    Ok(serde_json::json!({ "name": name, "type": ["null", t], "default": null }))
}

/// The Avro type of a ksqlDB type; `name` names the record if it is a STRUCT.
fn type_json(ty: &Type, name: &str) -> Result<serde_json::Value, String> {
    use serde_json::json;
    Ok(match ty {
        Type::Boolean => json!("boolean"),
        Type::Int => json!("int"),
        Type::Bigint => json!("long"),
        Type::Double => json!("double"),
        Type::String => json!("string"),
        Type::Bytes => json!("bytes"),
        Type::Decimal { precision, scale } => json!({
            "type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale,
        }),
        Type::Date => json!({ "type": "int", "logicalType": "date" }),
        Type::Time => json!({ "type": "int", "logicalType": "time-millis" }),
        Type::Timestamp => json!({ "type": "long", "logicalType": "timestamp-millis" }),
        Type::Array(item) => json!({ "type": "array", "items": ["null", type_json(item, name)?] }),
        Type::Map(k, v) => {
            if **k != Type::String {
                return Err("Avro only supports MAPs with STRING keys".into());
            }
            json!({ "type": "map", "values": ["null", type_json(v, name)?] })
        }
        Type::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|f| field_json(&f.name.value, &f.ty, name))
                .collect::<Result<Vec<_>, _>>()?;
            json!({ "type": "record", "name": name, "fields": fields })
        }
        Type::Custom(n) => return Err(format!("unresolved type `{}`", n.value)),
    })
}

/// Avro names are `[A-Za-z_][A-Za-z0-9_]*`; the messages are Avro's (Java) own, which
/// ksqlDB passes on.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return Err(format!("Illegal initial character: {name}")),
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
        return Err(format!("Illegal character in: {name}"));
    }
    Ok(())
}

/// Splits a payload into its schema id and Avro body.
pub(super) fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "payload of {} bytes is shorter than the 5-byte Schema Registry header",
            bytes.len()
        ));
    }
    if bytes[0] != MAGIC {
        return Err(format!(
            "Unknown magic byte {} (expected 0): not in the Schema Registry wire format",
            bytes[0]
        ));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Decodes payloads of one batch, caching the writer schemas it has looked up (and why
/// one could not be used, so that a batch of records naming it is refused quickly).
pub(super) struct Decoder {
    schemas: HashMap<u32, Result<Arc<Writer>, String>>,
}

/// A writer schema as the registry gave it, checked and ready to decode with.
struct Writer {
    schema: Arc<Schema>,
    reader: WriterSchema,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            schemas: HashMap::new(),
        }
    }

    fn writer_schema(&mut self, codec: &Codec, id: u32) -> Result<Arc<Writer>, Fail> {
        if let Some(s) = self.schemas.get(&id) {
            return s.clone().map_err(Fail::other);
        }
        let state = codec
            .avro
            .as_ref()
            .ok_or_else(|| Fail::other("no Avro schema for this codec"))?;
        let schema = state
            .registry
            .schema_by_id(id)
            .map_err(|e| Fail::other(format!("schema registry: {e}")))?
            .ok_or_else(|| Fail::other(format!("schema id {id} is not in the schema registry")))?;
        // A schema registered before recursive schemas were refused, or served by an
        // external registry, is checked here too.
        let writer = WriterSchema::new(&schema)
            .map(|reader| Arc::new(Writer { schema, reader }))
            .map_err(|e| format!("schema id {id} cannot be read: {e}"));
        self.schemas.insert(id, writer.clone());
        writer.map_err(Fail::other)
    }

    /// Decodes one payload into one value per builder.
    pub(super) fn decode_row(
        &mut self,
        codec: &Codec,
        bytes: &[u8],
        builders: &mut [Builder],
    ) -> Result<(), Fail> {
        let (id, body) = split_header(bytes).map_err(Fail::other)?;
        let writer = self.writer_schema(codec, id)?;
        let value = writer
            .reader
            .decode(&writer.schema, body, HEADER_LEN)
            .map_err(|e| Fail::other(format!("invalid Avro data for schema id {id}: {e}")))?;
        put_row(codec, &value, Some(&writer.schema), builders)
    }
}

fn put_row(
    codec: &Codec,
    value: &Value,
    schema: Option<&Schema>,
    builders: &mut [Builder],
) -> Result<(), Fail> {
    if codec.unwrapped {
        return put(&mut builders[0], value, schema)
            .map_err(|f| f.in_column(&codec.columns[0].name));
    }
    let (value, schema) = strip_union(value, schema);
    match value {
        Value::Null => {
            builders.iter_mut().for_each(Builder::push_null);
            Ok(())
        }
        Value::Record(fields) => {
            let record = record_schema(schema);
            for (b, c) in builders.iter_mut().zip(&codec.columns) {
                match find_field(fields, &c.name) {
                    Some(i) => put(b, &fields[i].1, field_schema(record, i))
                        .map_err(|f| f.in_column(&c.name))?,
                    None => b.push_null(),
                }
            }
            Ok(())
        }
        other => Err(Fail::mismatch("an Avro record", found(other))),
    }
}

/// The index of the record field for a column or struct field: an exact match, else the
/// first whose name matches ignoring case, as ksqlDB matches.
fn find_field(fields: &[(String, Value)], name: &str) -> Option<usize> {
    fields.iter().position(|(k, _)| k == name).or_else(|| {
        fields
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name) || k.to_uppercase() == name)
    })
}

fn record_schema(schema: Option<&Schema>) -> Option<&RecordSchema> {
    match schema {
        Some(Schema::Record(r)) => Some(r),
        _ => None,
    }
}

fn field_schema(record: Option<&RecordSchema>, i: usize) -> Option<&Schema> {
    record.and_then(|r| r.fields.get(i)).map(|f| &f.schema)
}

/// The value inside any unions, with the schema of the branch taken. Schemas are only used
/// for DECIMAL scales; where one is not known (named references) the column's is assumed.
fn strip_union<'v, 's>(
    mut value: &'v Value,
    mut schema: Option<&'s Schema>,
) -> (&'v Value, Option<&'s Schema>) {
    while let Value::Union(i, inner) = value {
        schema = match schema {
            Some(Schema::Union(u)) => u.variants().get(*i as usize),
            _ => None,
        };
        value = inner;
    }
    (value, schema)
}

/// How an Avro value is named in error messages.
fn found(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Int(n) => format!("int {n}"),
        Value::Long(n) => format!("long {n}"),
        Value::Float(f) => format!("float {f}"),
        Value::Double(f) => format!("double {f}"),
        Value::String(s) => format!("string {}", show_text(s)),
        Value::Enum(_, s) => format!("enum {}", show_text(s)),
        Value::Bytes(_) | Value::Fixed(..) => "bytes".into(),
        Value::Array(_) => "an array".into(),
        Value::Map(_) => "a map".into(),
        Value::Record(_) => "a record".into(),
        Value::Union(_, v) => found(v),
        Value::Date(_) => "a date".into(),
        Value::Decimal(_) | Value::BigDecimal(_) => "a decimal".into(),
        Value::TimeMillis(_) | Value::TimeMicros(_) => "a time".into(),
        Value::Duration(_) => "a duration".into(),
        Value::Uuid(_) => "a uuid".into(),
        _ => "a timestamp".into(),
    }
}

fn mismatch(kind: Kind, v: &Value) -> Fail {
    let expected = match kind {
        Kind::Bytes => "BYTES".into(),
        Kind::Map => "a MAP".into(),
        Kind::Struct => "a STRUCT (a record)".into(),
        other => other.describe(),
    };
    Fail::mismatch(expected, found(v))
}

fn out_of_range(text: String, kind: Kind) -> Fail {
    Fail::other(format!("{text} is out of range for {}", kind.name()))
}

/// Appends `v` (written with `schema`, where known), coerced to the builder's type as
/// ksqlDB's Avro converter coerces.
fn put(b: &mut Builder, v: &Value, schema: Option<&Schema>) -> Result<(), Fail> {
    let (v, schema) = strip_union(v, schema);
    if let Value::Null = v {
        b.push_null();
        return Ok(());
    }
    let kind = b.kind();
    let int32 = |n: i64| i32::try_from(n).map_err(|_| out_of_range(n.to_string(), kind));
    match b {
        Builder::Boolean(x) => match v {
            Value::Boolean(t) => x.push(*t),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Int(x) => match v {
            Value::Int(n) => x.push(*n),
            Value::Long(n) => x.push(int32(*n)?),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Bigint(x) => match v {
            Value::Int(n) => x.push((*n).into()),
            Value::Long(n) => x.push(*n),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Double(x) => match v {
            Value::Double(f) => x.push(*f),
            Value::Float(f) => x.push((*f).into()),
            Value::Int(n) => x.push((*n).into()),
            Value::Long(n) => x.push(*n as f64),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Decimal {
            values,
            precision,
            scale,
        } => {
            let d = match v {
                Value::Decimal(d) => decimal_value(d, schema, *precision, *scale),
                Value::BigDecimal(d) => parse_decimal(&d.to_string(), *precision, *scale),
                Value::Int(n) => parse_decimal(&n.to_string(), *precision, *scale),
                Value::Long(n) => parse_decimal(&n.to_string(), *precision, *scale),
                Value::Double(f) => parse_decimal(&f.to_string(), *precision, *scale),
                Value::Float(f) => parse_decimal(&f.to_string(), *precision, *scale),
                Value::String(s) => parse_decimal(s, *precision, *scale),
                _ => return Err(mismatch(kind, v)),
            };
            values.push(d.map_err(Fail::other)?);
        }
        Builder::String(x) => match v {
            Value::String(s) | Value::Enum(_, s) => x.push(s.as_bytes())?,
            Value::Int(n) => x.push(n.to_string().as_bytes())?,
            Value::Long(n) => x.push(n.to_string().as_bytes())?,
            Value::Boolean(t) => x.push(if *t { b"true" } else { b"false" })?,
            Value::Double(f) => {
                push_java_double(x.data_mut(), *f);
                x.close_value()?;
            }
            Value::Float(f) => {
                push_java_double(x.data_mut(), (*f).into());
                x.close_value()?;
            }
            Value::Uuid(u) => x.push(u.to_string().as_bytes())?,
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Bytes(x) => match v {
            Value::Bytes(bytes) | Value::Fixed(_, bytes) => x.push(bytes)?,
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Time(x) => match v {
            Value::TimeMillis(n) | Value::Int(n) => x.push(*n),
            Value::TimeMicros(n) => x.push(int32(n.div_euclid(1_000))?),
            Value::Long(n) => x.push(int32(*n)?),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Date(x) => match v {
            Value::Date(n) | Value::Int(n) => x.push(*n),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Timestamp(x) => match v {
            Value::TimestampMillis(n) | Value::LocalTimestampMillis(n) | Value::Long(n) => {
                x.push(*n)
            }
            Value::TimestampMicros(n) | Value::LocalTimestampMicros(n) => {
                x.push(n.div_euclid(1_000))
            }
            Value::TimestampNanos(n) | Value::LocalTimestampNanos(n) => {
                x.push(n.div_euclid(1_000_000))
            }
            Value::Int(n) => x.push((*n).into()),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Array { entries, items, .. } => {
            let Value::Array(elements) = v else {
                return Err(mismatch(kind, v));
            };
            let item_schema = match schema {
                Some(Schema::Array(a)) => Some(a.items.as_ref()),
                _ => None,
            };
            for (i, e) in elements.iter().enumerate() {
                put(items, e, item_schema).map_err(|f| f.at_index(i))?;
            }
            entries.close(items.len())?;
        }
        Builder::Map {
            entries,
            keys,
            values,
            ..
        } => {
            match v {
                Value::Map(map) => {
                    let value_schema = match schema {
                        Some(Schema::Map(m)) => Some(m.types.as_ref()),
                        _ => None,
                    };
                    // The decoder gives a HashMap: sorting makes the entries' order the
                    // same from run to run.
                    let mut sorted: Vec<_> = map.iter().collect();
                    sorted.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, e) in sorted {
                        put(keys, &Value::String(k.clone()), None).map_err(|f| f.at_key(k))?;
                        put(values, e, value_schema).map_err(|f| f.at_key(k))?;
                    }
                }
                // Kafka Connect writes maps whose keys may be null as arrays of key/value
                // records; ksqlDB reads those as maps too.
                Value::Array(items) => {
                    let entry_schema = match schema {
                        Some(Schema::Array(a)) => record_schema(Some(a.items.as_ref())),
                        _ => None,
                    };
                    for (i, item) in items.iter().enumerate() {
                        let (item, _) = strip_union(item, None);
                        let Value::Record(fields) = item else {
                            return Err(mismatch(kind, v));
                        };
                        let (Some(ki), Some(vi)) =
                            (find_field(fields, "key"), find_field(fields, "value"))
                        else {
                            return Err(mismatch(kind, v));
                        };
                        put(keys, &fields[ki].1, None).map_err(|f| f.at_index(i))?;
                        put(values, &fields[vi].1, field_schema(entry_schema, vi))
                            .map_err(|f| f.at_index(i))?;
                    }
                }
                _ => return Err(mismatch(kind, v)),
            }
            entries.close(keys.len())?;
        }
        Builder::Struct {
            fields: struct_fields,
            nulls,
            children,
        } => {
            let Value::Record(fields) = v else {
                return Err(mismatch(kind, v));
            };
            let record = record_schema(schema);
            for (child, f) in children.iter_mut().zip(struct_fields.iter()) {
                match find_field(fields, f.name()) {
                    Some(i) => put(child, &fields[i].1, field_schema(record, i))
                        .map_err(|e| e.in_field(f.name()))?,
                    None => child.push_null(),
                }
            }
            nulls.append_non_null();
        }
    }
    Ok(())
}

/// An Avro decimal (written with `schema`, where known) as an unscaled value at the
/// column's scale.
fn decimal_value(
    d: &apache_avro::Decimal,
    schema: Option<&Schema>,
    precision: u8,
    scale: i8,
) -> Result<i128, String> {
    let bytes = <Vec<u8>>::try_from(d).map_err(|e| format!("invalid decimal: {e}"))?;
    let writer_scale = match schema {
        Some(Schema::Decimal(ds)) => ds.scale,
        _ => scale.max(0) as usize,
    };
    let unscaled = unscaled_from_bytes(&bytes)
        .ok_or_else(|| format!("decimal of {} bytes is too large", bytes.len()))?;
    rescale(unscaled, writer_scale, precision, scale)
}

/// A big-endian two's complement integer, if it fits an `i128`.
fn unscaled_from_bytes(bytes: &[u8]) -> Option<i128> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xFF } else { 0x00 };
    let (extra, rest) = bytes.split_at(bytes.len().saturating_sub(16));
    // Bytes beyond 16 must only extend the sign, and the sign must survive the cut.
    if !extra.is_empty()
        && (extra.iter().any(|b| *b != fill)
            || rest.first().is_some_and(|b| (b & 0x80 != 0) != negative))
    {
        return None;
    }
    let mut buf = [fill; 16];
    buf[16 - rest.len()..].copy_from_slice(rest);
    Some(i128::from_be_bytes(buf))
}

/// The minimal big-endian two's complement bytes of `v`, as Java's
/// `BigInteger.toByteArray` writes decimals.
fn unscaled_to_bytes(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// An unscaled value at `from` decimals at the column's scale (HALF_UP, as ksqlDB rounds),
/// checked against its precision.
fn rescale(unscaled: i128, from: usize, precision: u8, scale: i8) -> Result<i128, String> {
    let to = scale.max(0) as usize;
    let overflow = || {
        format!(
            "Numeric field overflow: A field with precision {precision} and scale {scale} \
             must round to an absolute value less than 10^{}",
            precision as i64 - scale as i64
        )
    };
    let v = if to >= from {
        u32::try_from(to - from)
            .ok()
            .and_then(|d| 10i128.checked_pow(d))
            .and_then(|f| unscaled.checked_mul(f))
            .ok_or_else(overflow)?
    } else {
        let d = u32::try_from(from - to).map_err(|_| overflow())?;
        match 10i128.checked_pow(d) {
            Some(f) => {
                let (q, r) = (unscaled / f, unscaled % f);
                if r.unsigned_abs() * 2 >= f.unsigned_abs() {
                    q + unscaled.signum()
                } else {
                    q
                }
            }
            // Dividing by more than any i128 leaves nothing.
            None => 0,
        }
    };
    let limit = 10i128.checked_pow(precision.into()).ok_or_else(overflow)?;
    if v.unsigned_abs() >= limit.unsigned_abs() {
        return Err(overflow());
    }
    Ok(v)
}

/// Encodes row `row` of the columns with the writer schema `id`: a record of optional
/// fields, or the bare value of an unwrapped single column (`None` when it is null).
pub(super) fn encode_row(
    codec: &Codec,
    id: u32,
    arrays: &[ArrayRef],
    row: usize,
) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * arrays.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    if codec.unwrapped {
        let Some(a) = arrays.first() else {
            return Ok(None);
        };
        if a.is_null(row) {
            return Ok(None);
        }
        write_value(&mut out, a.as_ref(), row)?;
        return Ok(Some(out));
    }
    for (a, c) in arrays.iter().zip(&codec.columns) {
        write_optional(&mut out, a.as_ref(), row)
            .map_err(|e| format!("column `{}`: {e}", c.name))?;
    }
    Ok(Some(out))
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A `["null", T]` union: branch 0 for null, else branch 1 and the value.
fn write_optional(out: &mut Vec<u8>, array: &dyn Array, i: usize) -> Result<(), String> {
    if array.is_null(i) {
        write_long(out, 0);
        Ok(())
    } else {
        write_long(out, 1);
        write_value(out, array, i)
    }
}

/// Appends the Avro binary of non-null `array[i]` in the schema [`type_json`] gives its type.
fn write_value(out: &mut Vec<u8>, array: &dyn Array, i: usize) -> Result<(), String> {
    let dt = array.data_type();
    let wrong = || format!("array does not match its type {dt}");
    match dt {
        DataType::Boolean => {
            let v = array.as_boolean_opt().ok_or_else(wrong)?.value(i);
            out.push(v.into());
        }
        DataType::Int32 => {
            let v = array.as_primitive_opt::<Int32Type>().ok_or_else(wrong)?;
            write_long(out, v.value(i).into());
        }
        DataType::Int64 => {
            let v = array.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?;
            write_long(out, v.value(i));
        }
        DataType::Float64 => {
            let v = array.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?;
            out.extend_from_slice(&v.value(i).to_le_bytes());
        }
        DataType::Decimal128(..) => {
            let v = array
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(wrong)?;
            write_bytes(out, &unscaled_to_bytes(v.value(i)));
        }
        DataType::Utf8 => {
            let v = array.as_string_opt::<i32>().ok_or_else(wrong)?;
            write_bytes(out, v.value(i).as_bytes());
        }
        DataType::Binary => {
            let v = array.as_binary_opt::<i32>().ok_or_else(wrong)?;
            write_bytes(out, v.value(i));
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            let v = array
                .as_primitive_opt::<Time32MillisecondType>()
                .ok_or_else(wrong)?;
            write_long(out, v.value(i).into());
        }
        DataType::Date32 => {
            let v = array.as_primitive_opt::<Date32Type>().ok_or_else(wrong)?;
            write_long(out, v.value(i).into());
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let v = array
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(wrong)?;
            write_long(out, v.value(i));
        }
        DataType::List(_) => {
            let list = array.as_list_opt::<i32>().ok_or_else(wrong)?;
            let offsets = list.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let items = list.values();
            if end > start {
                write_long(out, (end - start) as i64);
                for j in start..end {
                    write_optional(out, items.as_ref(), j)?;
                }
            }
            write_long(out, 0);
        }
        DataType::Map(..) => {
            let map = array.as_map_opt().ok_or_else(wrong)?;
            let offsets = map.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let keys = map
                .keys()
                .as_string_opt::<i32>()
                .ok_or_else(|| "Avro only supports MAPs with STRING keys".to_string())?;
            let values = map.values();
            if end > start {
                write_long(out, (end - start) as i64);
                for j in start..end {
                    write_bytes(out, keys.value(j).as_bytes());
                    write_optional(out, values.as_ref(), j)?;
                }
            }
            write_long(out, 0);
        }
        DataType::Struct(fields) => {
            let s = array.as_struct_opt().ok_or_else(wrong)?;
            for k in 0..fields.len() {
                write_optional(out, s.column(k).as_ref(), i)?;
            }
        }
        other => return Err(format!("cannot write Arrow type {other} as Avro")),
    }
    Ok(())
}

/// A JSON codec over the same columns and wrapping: the tests' JSON form of AVRO records is
/// what JSON reads and writes.
fn json_twin(codec: &Codec) -> Codec {
    Codec {
        kind: FormatKind::Json,
        avro: None,
        ..codec.clone()
    }
}

/// See [`Codec::json_to_payload`]: the JSON value read as JSON would read it, then written
/// as Avro.
pub(super) fn json_to_payload(codec: &Codec, value: &serde_json::Value) -> Result<Option<Vec<u8>>> {
    let text = serde_json::to_vec(value).map_err(|e| codec.encode_err(e.to_string()))?;
    let decoded = json_twin(codec).decode(&[Some(&text)])?;
    if let Some(Some(e)) = decoded.errors.into_iter().next() {
        return Err(codec.encode_err(e.to_string()));
    }
    Ok(codec
        .encode(&decoded.columns, 0..1)?
        .into_iter()
        .next()
        .flatten())
}

/// See [`Codec::payload_to_json`]: the payload decoded, then written as JSON would write it
/// (DECIMAL as a number, BYTES as base64, maps as objects).
pub(super) fn payload_to_json(codec: &Codec, bytes: &[u8]) -> Result<serde_json::Value> {
    let decoded = codec.decode(&[Some(bytes)])?;
    if let Some(Some(e)) = decoded.errors.into_iter().next() {
        return Err(e);
    }
    let json = json_twin(codec).encode(&decoded.columns, 0..1)?;
    match json.into_iter().next().flatten() {
        Some(text) => serde_json::from_slice(&text)
            .map_err(|e| codec.decode_err(format!("cannot show the record as JSON: {e}"))),
        None => Ok(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as Avro;
    use brook_planner::format::FormatSpec;
    use brook_planner::schema::{Column, Namespace};
    use brook_planner::types::NoTypes;
    use serde_json::json;

    use super::super::registry::{InMemoryRegistry, RegisteredSchema};
    use super::*;

    fn cols(decl: &[(&str, &str)]) -> Vec<Column> {
        decl.iter()
            .map(|(n, t)| {
                let ty = brook_sql::parse_type(t).expect("test type parses");
                Column::new(*n, ty, Namespace::Value)
            })
            .collect()
    }

    fn codec(part: Part, wrap: Option<bool>, decl: &[(&str, &str)]) -> Codec {
        let spec = FormatSpec {
            wrap_single_value: wrap,
            ..FormatSpec::new(FormatKind::Avro)
        };
        Codec::new(&spec, part, &cols(decl), &NoTypes).expect("codec builds")
    }

    /// JSON → Avro payload → JSON, which must give the JSON back.
    fn round_trip(c: &Codec, v: serde_json::Value) -> Vec<u8> {
        let payload = c.json_to_payload(&v).expect("encodes").expect("not null");
        let back = c.payload_to_json(Some(&payload)).expect("decodes");
        assert_eq!(back, v, "round trip of {v}");
        payload
    }

    const ALL_TYPES: &[(&str, &str)] = &[
        ("B", "BOOLEAN"),
        ("I", "INT"),
        ("L", "BIGINT"),
        ("D", "DOUBLE"),
        ("DEC", "DECIMAL(6, 4)"),
        ("S", "STRING"),
        ("BY", "BYTES"),
        ("T", "TIME"),
        ("DT", "DATE"),
        ("TS", "TIMESTAMP"),
        ("A", "ARRAY<INT>"),
        ("M", "MAP<STRING, DOUBLE>"),
        ("ST", "STRUCT<F0 INT, `lower` STRING>"),
    ];

    #[test]
    fn every_type_round_trips() {
        let c = codec(Part::Value, None, ALL_TYPES);
        round_trip(
            &c,
            json!({
                "B": true, "I": -7, "L": 998877665544332211i64, "D": 1.5, "DEC": 12.365,
                "S": "héllo", "BY": "dmFyaWF0aW9ucw==", "T": 3_600_000, "DT": 19_000,
                "TS": 1_700_000_000_000i64, "A": [1, null, 3], "M": {"a": 1.1, "b": null},
                "ST": {"F0": 1, "lower": "x"},
            }),
        );
        let nulls: serde_json::Map<_, _> = ALL_TYPES
            .iter()
            .map(|(n, _)| (n.to_string(), serde_json::Value::Null))
            .collect();
        round_trip(&c, serde_json::Value::Object(nulls));
        round_trip(
            &c,
            json!({
                "B": false, "I": 0, "L": -1, "D": -0.25, "DEC": -0.0001, "S": "", "BY": "",
                "T": 0, "DT": -1, "TS": -1, "A": [], "M": {}, "ST": {"F0": null, "lower": null},
            }),
        );
    }

    #[test]
    fn nested_types_round_trip() {
        let c = codec(
            Part::Value,
            None,
            &[
                ("A", "ARRAY<STRUCT<X ARRAY<MAP<STRING, DECIMAL(4, 2)>>>>"),
                ("M", "MAP<STRING, ARRAY<STRUCT<Y STRUCT<Z BYTES>>>>"),
            ],
        );
        round_trip(
            &c,
            json!({
                "A": [{"X": [{"k": 1.5, "n": null}, null, {}]}, null, {"X": null}],
                "M": {"a": [{"Y": {"Z": "AAE="}}, {"Y": null}, null], "b": null},
            }),
        );
    }

    #[test]
    fn writer_schema_is_ksqldbs() {
        let c = codec(
            Part::Value,
            None,
            &[("DEC", "DECIMAL(4, 2)"), ("S", "STRUCT<F0 STRUCT<G INT>>")],
        );
        let schema: serde_json::Value =
            serde_json::from_str(&c.avro_schema().expect("AVRO has a schema")).unwrap();
        assert_eq!(schema["name"], json!("KsqlDataSourceSchema"));
        assert_eq!(schema["namespace"], json!("io.confluent.ksql.avro_schemas"));
        let dec = &schema["fields"][0];
        assert_eq!(dec["name"], json!("DEC"));
        assert_eq!(dec["type"][0], json!("null"));
        assert_eq!(dec["type"][1]["logicalType"], json!("decimal"));
        assert_eq!(dec["type"][1]["precision"], json!(4));
        assert_eq!(dec["type"][1]["scale"], json!(2));
        let s = &schema["fields"][1]["type"][1];
        // Nested records inherit the namespace.
        assert_eq!(s["name"], json!("KsqlDataSourceSchema_S"));
        assert_eq!(
            s["fields"][0]["type"][1]["name"],
            json!("KsqlDataSourceSchema_S_F0")
        );
        // An unwrapped primitive is the bare type, not a union.
        let k = codec(Part::Key, None, &[("K", "INT")]);
        assert_eq!(k.avro_schema().as_deref(), Some(r#""int""#));
    }

    #[test]
    fn encoded_bytes_are_what_apache_avro_reads() {
        let c = codec(
            Part::Value,
            None,
            &[("I", "INT"), ("M", "MAP<STRING, STRING>")],
        );
        let payload = round_trip(&c, json!({"I": 150, "M": {"a": "b"}}));
        let (_, mut body) = split_header(&payload).unwrap();
        let state = c.avro.as_ref().unwrap();
        let v = apache_avro::from_avro_datum(state.schema(), &mut body, None).unwrap();
        let map = [(
            "a".to_string(),
            Avro::Union(1, Box::new(Avro::String("b".into()))),
        )];
        assert_eq!(
            v,
            Avro::Record(vec![
                ("I".into(), Avro::Union(1, Box::new(Avro::Int(150)))),
                (
                    "M".into(),
                    Avro::Union(1, Box::new(Avro::Map(map.into_iter().collect())))
                ),
            ])
        );
        assert!(body.is_empty(), "all bytes read");
    }

    #[test]
    fn single_values_unwrap_as_configured() {
        let key = codec(Part::Key, None, &[("K", "STRING")]);
        assert!(key.is_unwrapped());
        let p = round_trip(&key, json!("foo"));
        // Header, then the string's zigzag length (3 → 6) and its bytes.
        assert_eq!(&p[5..], b"\x06foo");
        let value = codec(Part::Value, Some(false), &[("V", "ARRAY<INT>")]);
        assert!(value.is_unwrapped());
        round_trip(&value, json!([1, 2]));
        let wrapped = codec(Part::Value, None, &[("V", "INT")]);
        assert!(!wrapped.is_unwrapped());
        round_trip(&wrapped, json!({"V": 1}));
        let multi_key = codec(Part::Key, None, &[("K1", "INT"), ("K2", "STRING")]);
        round_trip(&multi_key, json!({"K1": 1, "K2": "x"}));
        // A null bare value is no payload at all.
        let arr: ArrayRef = Arc::new(arrow::array::ListArray::new_null(
            Arc::new(arrow::datatypes::Field::new("item", DataType::Int32, true)),
            1,
        ));
        assert_eq!(value.encode(&[arr], 0..1).unwrap(), vec![None]);
    }

    #[test]
    fn header_names_the_registered_schema() {
        let registry = Arc::new(InMemoryRegistry::new());
        let c = codec(Part::Value, None, &[("V", "INT")])
            .with_registry(Arc::clone(&registry) as Arc<dyn SchemaRegistry>, "orders");
        let p = round_trip(&c, json!({"V": 1}));
        let (id, latest) = registry
            .latest("orders-value")
            .unwrap()
            .expect("registered");
        assert_eq!(p[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes([p[1], p[2], p[3], p[4]]), id);
        assert_eq!(&*latest, c.avro.as_ref().unwrap().schema());
        // Another registry does not know the id.
        let other = codec(Part::Value, None, &[("V", "INT")])
            .with_registry(Arc::new(InMemoryRegistry::new()), "orders");
        let d = other.decode(&[Some(&p)]).unwrap();
        let e = d.errors[0].as_ref().expect("fails").to_string();
        assert!(
            e.contains("schema id 1 is not in the schema registry"),
            "{e}"
        );
    }

    #[test]
    fn malformed_payloads_are_errors_naming_the_cause() {
        let c = codec(Part::Value, None, &[("V", "STRING"), ("W", "INT")]);
        let good = c
            .json_to_payload(&json!({"V": "abc", "W": 5}))
            .unwrap()
            .unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = 1;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "shorter than the 5-byte"),
            (vec![0, 0, 0], "shorter than the 5-byte"),
            (b"{\"V\":1}".to_vec(), "magic byte"),
            (bad_magic, "Unknown magic byte 1"),
            // Cut inside a value, and just before a union (which apache-avro read as null).
            (good[..good.len() - 1].to_vec(), "invalid Avro data"),
            (good[..10].to_vec(), "truncated number at byte 10"),
            (
                vec![0, 0xFF, 0xFF, 0xFF, 0xFF, 2],
                "not in the schema registry",
            ),
            // Union branch 7 of a two-branch union.
            ([&good[..5], &[14u8][..]].concat(), "invalid Avro data"),
            // A string claiming a huge length.
            (
                [&good[..5], &[2u8, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F][..]].concat(),
                "invalid Avro data",
            ),
        ];
        let payloads: Vec<Option<&[u8]>> = cases.iter().map(|(p, _)| Some(p.as_slice())).collect();
        let d = c.decode(&payloads).unwrap();
        for (i, (_, cause)) in cases.iter().enumerate() {
            let e = d.errors[i]
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.starts_with("AVRO value: ") && e.contains(cause),
                "case {i}: {e}"
            );
            assert!(d.columns.iter().all(|a| a.is_null(i)));
        }
        assert!(c.payload_to_json(Some(b"\x01")).is_err());
    }

    /// A registry holding one schema, whatever it is (the in-process registries refuse
    /// recursive ones, an external one might not).
    #[derive(Debug)]
    struct OneSchema(Arc<Schema>);

    impl SchemaRegistry for OneSchema {
        fn register_schema(&self, _: &str, _: RegisteredSchema, _: Option<u32>) -> Result<u32> {
            Ok(1)
        }
        fn get(&self, id: u32) -> Result<Option<RegisteredSchema>> {
            Ok((id == 1).then(|| RegisteredSchema::Avro(Arc::clone(&self.0))))
        }
        fn latest_schema(&self, _: &str) -> Result<Option<(u32, RegisteredSchema)>> {
            Ok(None)
        }
        fn subjects(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn versions(&self, _: &str) -> Result<Vec<u32>> {
            Ok(Vec::new())
        }
        fn delete_subject(&self, _: &str) -> Result<Vec<u32>> {
            Ok(Vec::new())
        }
    }

    /// The records of issue 20: each failed without aborting the process or overflowing
    /// the stack only because the decoder bounds what the bytes claim.
    #[test]
    fn poison_records_are_errors_naming_the_cause() {
        let registry = Arc::new(InMemoryRegistry::new());
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "V", "type": "int"},
                {"name": "A", "type": {"type": "array", "items": "long"}}]}"#,
        )
        .unwrap();
        let id = registry.register("t-value", &schema).unwrap();
        let c = codec(Part::Value, None, &[("V", "INT"), ("A", "ARRAY<BIGINT>")])
            .with_registry(registry, "t");
        // 14 bytes: the header, V = 1, then an array block claiming 500,000,000 items
        // (apache-avro reserved 28 GB for it and the process aborted), one item, the end.
        let mut poison = vec![0];
        poison.extend_from_slice(&id.to_be_bytes());
        poison.extend_from_slice(&[2, 0x80, 0x94, 0xEB, 0xDC, 0x03, 2, 0, 0]);
        assert_eq!(poison.len(), 14);
        let e = c.payload_to_json(Some(&poison)).unwrap_err().to_string();
        assert!(
            e.contains("an array block at byte 6 claims more items than the 3 bytes left"),
            "{e}"
        );

        // A recursive schema from a registry that let it in: each record is refused,
        // naming the type, instead of recursing once per byte.
        let list = Arc::new(
            Schema::parse_str(
                r#"{"type": "record", "name": "L", "fields": [
                    {"name": "V", "type": "int"}, {"name": "next", "type": ["null", "L"]}]}"#,
            )
            .unwrap(),
        );
        let c =
            codec(Part::Value, None, &[("V", "INT")]).with_registry(Arc::new(OneSchema(list)), "t");
        let mut deep = vec![0, 0, 0, 0, 1];
        deep.extend(std::iter::repeat_n([2u8, 2], 500_000).flatten());
        let d = c.decode(&[Some(&deep), Some(&deep[..7])]).unwrap();
        for e in &d.errors {
            let e = e.as_ref().expect("refused").to_string();
            assert!(
                e.contains("schema id 1 cannot be read: recursive type `L`"),
                "{e}"
            );
        }
    }

    #[test]
    fn foreign_writer_schemas_are_read_leniently() {
        let registry = Arc::new(InMemoryRegistry::new());
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "blah", "fields": [
                {"name": "c1", "type": "float"},
                {"name": "Suit", "type": {"type": "enum", "name": "S", "symbols": ["H", "S"]}},
                {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal",
                    "precision": 5, "scale": 3}},
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "m", "type": {"type": "array", "items": {"type": "record",
                    "name": "E", "fields": [{"name": "key", "type": "string"},
                                            {"name": "value", "type": "int"}]}}},
                {"name": "ignored", "type": "string"}
            ]}"#,
        )
        .unwrap();
        let id = registry.register("t-value", &schema).unwrap();
        let record = Avro::Record(vec![
            ("c1".into(), Avro::Float(4.0)),
            ("Suit".into(), Avro::Enum(1, "S".into())),
            (
                "dec".into(),
                Avro::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])),
            ),
            ("ts".into(), Avro::TimestampMicros(1_500_999)),
            (
                "m".into(),
                Avro::Array(vec![Avro::Record(vec![
                    ("key".into(), Avro::String("k".into())),
                    ("value".into(), Avro::Int(3)),
                ])]),
            ),
            ("ignored".into(), Avro::String("x".into())),
        ]);
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend(apache_avro::to_avro_datum(&schema, record).unwrap());
        let c = codec(
            Part::Value,
            None,
            &[
                ("C1", "DOUBLE"),
                ("SUIT", "STRING"),
                ("DEC", "DECIMAL(6, 2)"),
                ("TS", "TIMESTAMP"),
                ("M", "MAP<STRING, INT>"),
                ("MISSING", "INT"),
            ],
        )
        .with_registry(registry, "t");
        assert_eq!(
            c.payload_to_json(Some(&payload)).unwrap(),
            // 12.345 at scale 2 rounds half up.
            json!({"C1": 4.0, "SUIT": "S", "DEC": 12.35, "TS": 1500, "M": {"k": 3},
                   "MISSING": null})
        );
    }

    #[test]
    fn values_that_do_not_fit_are_errors() {
        let registry = Arc::new(InMemoryRegistry::new());
        let schema = Schema::parse_str(r#""long""#).unwrap();
        let id = registry.register("t-key", &schema).unwrap();
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend(apache_avro::to_avro_datum(&schema, Avro::Long(1 << 40)).unwrap());
        let c = codec(Part::Key, None, &[("K", "INT")]).with_registry(registry, "t");
        let e = c.payload_to_json(Some(&payload)).unwrap_err().to_string();
        assert!(
            e.contains("1099511627776 is out of range for INTEGER"),
            "{e}"
        );
        let c = codec(Part::Value, None, &[("D", "DECIMAL(3, 1)")]);
        let e = c
            .json_to_payload(&json!({"D": 1000}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Numeric field overflow"), "{e}");
    }

    #[test]
    fn schemas_avro_cannot_carry_are_rejected() {
        let spec = FormatSpec::new(FormatKind::Avro);
        let cases: &[(&str, &str, &str)] = &[
            (
                "M",
                "MAP<INT, STRING>",
                "Avro only supports MAPs with STRING keys",
            ),
            (
                "A",
                "ARRAY<MAP<BIGINT, INT>>",
                "Avro only supports MAPs with STRING keys",
            ),
            (
                "1Avro",
                "DOUBLE",
                "Schema is not compatible with Avro: Illegal initial character: 1Avro",
            ),
            (
                "a-b",
                "INT",
                "Schema is not compatible with Avro: Illegal character in: a-b",
            ),
        ];
        for (name, ty, msg) in cases {
            let e = Codec::new(&spec, Part::Value, &cols(&[(name, ty)]), &NoTypes)
                .unwrap_err()
                .to_string();
            assert!(e.contains(msg), "{name} {ty}: {e}");
        }
    }

    #[test]
    fn decimals_convert_exactly() {
        for v in [
            0i128,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i128::MAX,
            i128::MIN,
        ] {
            let bytes = unscaled_to_bytes(v);
            assert_eq!(unscaled_from_bytes(&bytes), Some(v), "{v}");
            let java_len =
                (128 - if v < 0 {
                    v.leading_ones()
                } else {
                    v.leading_zeros()
                }) / 8
                    + 1;
            assert_eq!(bytes.len(), java_len.min(16) as usize, "{v}");
        }
        assert_eq!(unscaled_from_bytes(&[0xFF; 20]), Some(-1));
        assert_eq!(unscaled_from_bytes(&[1; 17]), None);
        assert_eq!(unscaled_from_bytes(&[]), Some(0));
        assert_eq!(rescale(12345, 3, 6, 2), Ok(1235));
        assert_eq!(rescale(-12345, 3, 6, 2), Ok(-1235));
        assert_eq!(rescale(5, 0, 4, 2), Ok(500));
        assert!(rescale(100, 0, 3, 1).is_err());
    }
}

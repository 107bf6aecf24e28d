//! Reading Avro binary datums into apache-avro [`Value`]s, bounded by the bytes at hand.
//!
//! apache-avro's own decoder trusts the counts a datum claims: an array block claiming
//! 5×10⁸ items made it reserve 28 GB before reading any of them (the process aborts), and
//! a recursive writer schema let a datum recurse once per byte until the stack overflowed.
//! This decoder gives the same values, but:
//!
//! - a string, bytes or fixed value must fit in the bytes left, checked before allocating;
//! - array and map blocks are charged against an item budget of one item per byte of the
//!   datum (every item of a non-empty type takes at least one byte of its own) plus
//!   [`ZERO_WIDTH_ITEMS`] for items of empty types (`null`, records of nothing), so a block
//!   claiming more than the datum can hold is refused before anything is built;
//! - recursive writer schemas (a named type containing itself, directly or through other
//!   types) are refused when loaded ([`check_schema`], also run when a schema is
//!   registered), and schemas nesting deeper than [`MAX_DEPTH`] with them;
//! - running out of bytes anywhere is an error (apache-avro read some truncated values as
//!   nulls), naming the byte where it happened.

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, RecordSchema, ResolvedSchema, Schema};
use apache_avro::types::Value;

/// How deep a writer schema may nest records, arrays, maps and unions (named references
/// followed): deeper ones are refused, so that decoding them cannot exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 128;

/// Items of empty types (which take no bytes) a datum may hold beyond one per byte.
pub(crate) const ZERO_WIDTH_ITEMS: usize = 4096;

/// A writer schema checked and ready to decode with: its named types by full name, which
/// `Schema::Ref`s resolve to.
#[derive(Debug)]
pub(crate) struct WriterSchema {
    names: HashMap<Name, Schema>,
}

impl WriterSchema {
    /// Checks `schema` ([`check_schema`]) and collects its named types.
    pub(crate) fn new(schema: &Schema) -> Result<WriterSchema, String> {
        let names = named_types(schema)?;
        check_names(schema, &names)?;
        Ok(WriterSchema { names })
    }

    /// Decodes the datum at the start of `bytes` (bytes after it are ignored, as Avro's
    /// readers ignore them). `offset` is where `bytes` starts in the payload, for messages.
    pub(crate) fn decode(
        &self,
        schema: &Schema,
        bytes: &[u8],
        offset: usize,
    ) -> Result<Value, String> {
        let mut d = Datum {
            bytes,
            pos: 0,
            offset,
            items_left: bytes.len().saturating_add(ZERO_WIDTH_ITEMS),
            names: &self.names,
        };
        d.value(schema, &None, 0)
    }
}

/// Refuses writer schemas that cannot be decoded safely: recursive ones (naming the type
/// that contains itself), ones nesting deeper than [`MAX_DEPTH`], and ones referring to
/// types they do not define.
pub(crate) fn check_schema(schema: &Schema) -> Result<(), String> {
    check_names(schema, &named_types(schema)?)
}

/// Parses an Avro schema given as JSON, then checks it as [`check_schema`] does.
///
/// apache-avro's parser unwraps its own name checks: a record named `-` (or such an alias,
/// or such a type reference) panics instead of failing. Names are checked here first, and
/// any other panic of the parser is caught and reported, so that a schema sent to the
/// Schema Registry API is refused, never a crash.
pub(crate) fn parse_schema(json: &serde_json::Value) -> Result<Schema, String> {
    check_json_names(json, 0)?;
    let parsed = std::panic::catch_unwind(|| Schema::parse(json)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        format!("the Avro schema parser failed: {why}")
    })?;
    let schema = parsed.map_err(|e| e.to_string())?;
    check_schema(&schema)?;
    Ok(schema)
}

/// Checks every name in a schema's JSON where apache-avro expects one (a named type's
/// `name` and `aliases`, a type referred to by name) against Avro's rule for full names:
/// dot-separated identifiers (`[A-Za-z_][A-Za-z0-9_]*`), optionally after a lone dot.
fn check_json_names(json: &serde_json::Value, depth: usize) -> Result<(), String> {
    use serde_json::Value as J;
    if depth > 2 * MAX_DEPTH {
        return Err(too_deep());
    }
    let name = |v: &J| match v.as_str() {
        Some(n) if !is_full_name(n) => Err(format!(
            "invalid name {}: Avro names are identifiers ([A-Za-z_][A-Za-z0-9_]*) joined by dots",
            super::show_text(n)
        )),
        _ => Ok(()),
    };
    match json {
        J::String(_) => name(json),
        J::Array(items) => items
            .iter()
            .try_for_each(|i| check_json_names(i, depth + 1)),
        J::Object(o) => {
            for (k, v) in o {
                match k.as_str() {
                    "name" => name(v)?,
                    "aliases" => v.as_array().into_iter().flatten().try_for_each(name)?,
                    // Defaults and custom attributes are data, not names.
                    "type" | "items" | "values" | "fields" => check_json_names(v, depth + 1)?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn is_full_name(n: &str) -> bool {
    let ident = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match n.strip_prefix('.') {
        Some(rest) => ident(rest),
        None => n.split('.').all(ident),
    }
}

fn named_types(schema: &Schema) -> Result<HashMap<Name, Schema>, String> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect())
}

fn check_names(schema: &Schema, names: &HashMap<Name, Schema>) -> Result<(), String> {
    let mut walk = Walk {
        names,
        path: Vec::new(),
        heights: HashMap::new(),
    };
    walk.height(schema, &None, 0).map(drop)
}

/// A depth-first walk of a schema through its references, remembering the height of each
/// record it has finished (so a type referred to many times is walked once).
struct Walk<'n> {
    names: &'n HashMap<Name, Schema>,
    /// The records being walked, outermost first.
    path: Vec<Name>,
    heights: HashMap<Name, usize>,
}

impl Walk<'_> {
    /// How many levels `schema`, met at `depth`, nests below itself.
    fn height(&mut self, schema: &Schema, ns: &Namespace, depth: usize) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        match schema {
            Schema::Array(a) => Ok(self.height(&a.items, ns, depth + 1)? + 1),
            Schema::Map(m) => Ok(self.height(&m.types, ns, depth + 1)? + 1),
            Schema::Union(u) => {
                let mut h = 0;
                for v in u.variants() {
                    h = h.max(self.height(v, ns, depth + 1)? + 1);
                }
                Ok(h)
            }
            Schema::Record(r) => self.record(r.name.fully_qualified_name(ns), r, depth),
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                match self.names.get(&full) {
                    Some(Schema::Record(r)) => self.record(full, r, depth),
                    Some(_) => Ok(0),
                    None => Err(format!("unknown type `{}`", full.fullname(None))),
                }
            }
            _ => Ok(0),
        }
    }

    fn record(&mut self, full: Name, r: &RecordSchema, depth: usize) -> Result<usize, String> {
        if self.path.contains(&full) {
            return Err(format!(
                "recursive type `{}`: it contains itself, which Brook cannot read",
                full.fullname(None)
            ));
        }
        if let Some(h) = self.heights.get(&full) {
            return if depth + h > MAX_DEPTH {
                Err(too_deep())
            } else {
                Ok(*h)
            };
        }
        self.path.push(full.clone());
        let mut h = 0;
        for f in &r.fields {
            h = h.max(self.height(&f.schema, &full.namespace, depth + 1)? + 1);
        }
        self.path.pop();
        self.heights.insert(full, h);
        Ok(h)
    }
}

fn too_deep() -> String {
    format!("the schema nests deeper than {MAX_DEPTH} levels")
}

/// A datum being read.
struct Datum<'a, 'n> {
    bytes: &'a [u8],
    pos: usize,
    /// Where `bytes` starts in the payload.
    offset: usize,
    /// Array and map items the rest of the datum may still hold.
    items_left: usize,
    names: &'n HashMap<Name, Schema>,
}

impl<'a> Datum<'a, '_> {
    fn at(&self) -> usize {
        self.offset + self.pos
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "{what} of {n} bytes at byte {}, but only {} bytes are left",
                self.at(),
                self.left()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A zigzag varint `long` (at most 10 bytes).
    fn long(&mut self) -> Result<i64, String> {
        let start = self.at();
        let mut z = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(format!("truncated number at byte {start}"));
            };
            self.pos += 1;
            z |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(format!("number longer than 10 bytes at byte {start}"))
    }

    fn int(&mut self) -> Result<i32, String> {
        let start = self.at();
        let n = self.long()?;
        i32::try_from(n).map_err(|_| format!("{n} at byte {start} is out of range for an int"))
    }

    /// A length-prefixed byte string that must fit in what is left.
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let start = self.at();
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("{what} of length {n} at byte {start}"))?;
        self.take(n, what)
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.at();
        let s = self.bytes("a string")?;
        String::from_utf8(s.to_vec())
            .map_err(|e| format!("invalid UTF-8 in the string at byte {start}: {e}"))
    }

    /// The item count of the next array or map block (0: the end), charged against the
    /// datum's item budget.
    fn block(&mut self, what: &str) -> Result<usize, String> {
        let start = self.at();
        let n = self.long()?;
        let n = if n < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
            n.checked_neg()
        } else {
            Some(n)
        };
        let n = n
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= self.items_left)
            .ok_or_else(|| {
                format!(
                    "{what} block at byte {start} claims more items than the {} bytes left \
                     can hold",
                    self.left()
                )
            })?;
        self.items_left -= n;
        Ok(n)
    }

    fn value(&mut self, schema: &Schema, ns: &Namespace, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => {
                let at = self.at();
                match self.array::<1>("a boolean")? {
                    [0] => Value::Boolean(false),
                    [1] => Value::Boolean(true),
                    [b] => return Err(format!("invalid boolean {b} at byte {at}")),
                }
            }
            Schema::Int => Value::Int(self.int()?),
            Schema::Long => Value::Long(self.long()?),
            Schema::Float => Value::Float(f32::from_le_bytes(self.array("a float")?)),
            Schema::Double => Value::Double(f64::from_le_bytes(self.array("a double")?)),
            Schema::Bytes => Value::Bytes(self.bytes("bytes")?.to_vec()),
            Schema::String => Value::String(self.string()?),
            Schema::Fixed(f) => Value::Fixed(f.size, self.take(f.size, "a fixed")?.to_vec()),
            Schema::Enum(e) => {
                let at = self.at();
                let i = self.int()?;
                let symbol = usize::try_from(i).ok().and_then(|i| e.symbols.get(i));
                match symbol {
                    Some(s) => Value::Enum(i as u32, s.clone()),
                    None => return Err(format!("enum index {i} at byte {at} is out of range")),
                }
            }
            Schema::Union(u) => {
                let at = self.at();
                let i = self.long()?;
                let Some(variant) = usize::try_from(i).ok().and_then(|i| u.variants().get(i))
                else {
                    return Err(format!(
                        "union branch {i} at byte {at}, of a union of {}",
                        u.variants().len()
                    ));
                };
                Value::Union(i as u32, Box::new(self.value(variant, ns, depth + 1)?))
            }
            Schema::Array(a) => {
                let mut items = Vec::new();
                loop {
                    let n = self.block("an array")?;
                    if n == 0 {
                        break Value::Array(items);
                    }
                    items.reserve(n.min(self.left()));
                    for _ in 0..n {
                        items.push(self.value(&a.items, ns, depth + 1)?);
                    }
                }
            }
            Schema::Map(m) => {
                let mut entries = HashMap::new();
                loop {
                    let n = self.block("a map")?;
                    if n == 0 {
                        break Value::Map(entries);
                    }
                    for _ in 0..n {
                        let k = self.string()?;
                        let v = self.value(&m.types, ns, depth + 1)?;
                        entries.insert(k, v);
                    }
                }
            }
            Schema::Record(r) => {
                let full = r.name.fully_qualified_name(ns);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let v = self.value(&f.schema, &full.namespace, depth + 1)?;
                    fields.push((f.name.clone(), v));
                }
                Value::Record(fields)
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                let names = self.names;
                let Some(named) = names.get(&full) else {
                    return Err(format!("unknown type `{}`", full.fullname(None)));
                };
                self.value(named, &full.namespace, depth + 1)?
            }
            other => self.logical(other)?,
        })
    }

    /// The logical types: their values as apache-avro gives them.
    fn logical(&mut self, schema: &Schema) -> Result<Value, String> {
        Ok(match schema {
            Schema::Decimal(d) => {
                let unscaled = match d.inner.as_ref() {
                    Schema::Fixed(f) => self.take(f.size, "a decimal")?,
                    Schema::Bytes => self.bytes("a decimal")?,
                    other => return Err(format!("a decimal cannot be a {other:?}")),
                };
                Value::Decimal(apache_avro::Decimal::from(unscaled))
            }
            Schema::BigDecimal => self.big_decimal()?,
            Schema::Uuid => {
                let at = self.at();
                let b = self.bytes("a uuid")?;
                let uuid = if b.len() == 16 {
                    apache_avro::Uuid::from_slice(b).ok()
                } else {
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| apache_avro::Uuid::parse_str(s).ok())
                };
                Value::Uuid(uuid.ok_or_else(|| format!("invalid uuid at byte {at}"))?)
            }
            Schema::Date => Value::Date(self.int()?),
            Schema::TimeMillis => Value::TimeMillis(self.int()?),
            Schema::TimeMicros => Value::TimeMicros(self.long()?),
            Schema::TimestampMillis => Value::TimestampMillis(self.long()?),
            Schema::TimestampMicros => Value::TimestampMicros(self.long()?),
            Schema::TimestampNanos => Value::TimestampNanos(self.long()?),
            Schema::LocalTimestampMillis => Value::LocalTimestampMillis(self.long()?),
            Schema::LocalTimestampMicros => Value::LocalTimestampMicros(self.long()?),
            Schema::LocalTimestampNanos => Value::LocalTimestampNanos(self.long()?),
            Schema::Duration => {
                Value::Duration(apache_avro::Duration::from(self.array::<12>("a duration")?))
            }
            other => return Err(format!("cannot read Avro type {other:?}")),
        })
    }

    /// A `big-decimal`: bytes holding the unscaled value's bytes and the scale. Their
    /// lengths are checked here, then apache-avro (which would trust them) builds the value.
    fn big_decimal(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let at = self.at();
        let inner = self.bytes("a big-decimal")?;
        let mut check = Datum {
            bytes: inner,
            pos: 0,
            offset: self.at() - inner.len(),
            items_left: 0,
            names: self.names,
        };
        check.bytes("a big-decimal's unscaled value")?;
        check.long()?;
        let mut whole = &self.bytes[start..self.pos];
        apache_avro::from_avro_datum(&Schema::BigDecimal, &mut whole, None)
            .map_err(|e| format!("invalid big-decimal at byte {at}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as V;
    use serde_json::json;

    use super::*;

    fn schema(v: serde_json::Value) -> Schema {
        Schema::parse(&v).expect("valid schema")
    }

    fn decode(s: &Schema, bytes: &[u8]) -> Result<Value, String> {
        WriterSchema::new(s)?.decode(s, bytes, 0)
    }

    /// Values of every type, written by apache-avro's encoder: this decoder reads them
    /// back as apache-avro's decoder does, and refuses every cut short.
    #[test]
    fn reads_what_apache_avro_reads() {
        let inner =
            json!({"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]});
        let cases: Vec<(serde_json::Value, Value)> = vec![
            (json!("null"), V::Null),
            (json!("boolean"), V::Boolean(true)),
            (json!("int"), V::Int(-150)),
            (json!("long"), V::Long(i64::MIN)),
            (json!("long"), V::Long(i64::MAX)),
            (json!("float"), V::Float(1.5)),
            (json!("double"), V::Double(-0.25)),
            (json!("bytes"), V::Bytes(vec![0, 1, 255])),
            (json!("string"), V::String("héllo".into())),
            (
                json!({"type": "fixed", "name": "F", "size": 3}),
                V::Fixed(3, vec![1, 2, 3]),
            ),
            (
                json!({"type": "enum", "name": "E", "symbols": ["A", "B"]}),
                V::Enum(1, "B".into()),
            ),
            (
                json!(["null", "string"]),
                V::Union(1, Box::new(V::String("x".into()))),
            ),
            (json!(["null", "string"]), V::Union(0, Box::new(V::Null))),
            (
                json!({"type": "array", "items": "long"}),
                V::Array(vec![V::Long(1), V::Long(-2), V::Long(3)]),
            ),
            (
                json!({"type": "array", "items": "null"}),
                V::Array(vec![V::Null; 3]),
            ),
            (
                json!({"type": "map", "values": "int"}),
                V::Map([("a".to_string(), V::Int(1)), ("b".into(), V::Int(2))].into()),
            ),
            (
                json!({"type": "record", "name": "R", "namespace": "n", "fields": [
                    {"name": "a", "type": inner},
                    {"name": "b", "type": {"type": "array", "items": "In"}},
                    {"name": "c", "type": ["null", "n.In"]}
                ]}),
                V::Record(vec![
                    ("a".into(), V::Record(vec![("x".into(), V::Int(7))])),
                    (
                        "b".into(),
                        V::Array(vec![V::Record(vec![("x".into(), V::Int(8))])]),
                    ),
                    (
                        "c".into(),
                        V::Union(1, Box::new(V::Record(vec![("x".into(), V::Int(9))]))),
                    ),
                ]),
            ),
            (
                json!({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}),
                V::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])),
            ),
            (
                json!({"type": {"type": "fixed", "name": "D", "size": 2}, "logicalType": "decimal",
                       "precision": 4, "scale": 1}),
                V::Decimal(apache_avro::Decimal::from(vec![0xFF, 0x85])),
            ),
            (
                json!({"type": "bytes", "logicalType": "big-decimal"}),
                V::BigDecimal("-12.345".parse().expect("decimal")),
            ),
            (
                json!({"type": "string", "logicalType": "uuid"}),
                V::Uuid(
                    "550e8400-e29b-41d4-a716-446655440000"
                        .parse()
                        .expect("uuid"),
                ),
            ),
            (
                json!({"type": "int", "logicalType": "date"}),
                V::Date(19_000),
            ),
            (
                json!({"type": "int", "logicalType": "time-millis"}),
                V::TimeMillis(3_600_000),
            ),
            (
                json!({"type": "long", "logicalType": "time-micros"}),
                V::TimeMicros(1),
            ),
            (
                json!({"type": "long", "logicalType": "timestamp-millis"}),
                V::TimestampMillis(-1),
            ),
            (
                json!({"type": "long", "logicalType": "timestamp-micros"}),
                V::TimestampMicros(2),
            ),
            (
                json!({"type": "long", "logicalType": "timestamp-nanos"}),
                V::TimestampNanos(3),
            ),
            (
                json!({"type": "long", "logicalType": "local-timestamp-millis"}),
                V::LocalTimestampMillis(4),
            ),
            (
                json!({"type": {"type": "fixed", "name": "Du", "size": 12},
                       "logicalType": "duration"}),
                V::Duration(apache_avro::Duration::from([1u8; 12])),
            ),
        ];
        for (s, v) in cases {
            let s = schema(s);
            let bytes = apache_avro::to_avro_datum(&s, v.clone()).expect("encodes");
            let theirs = apache_avro::from_avro_datum(&s, &mut &bytes[..], None).expect("reads");
            assert_eq!(theirs, v, "{s:?}");
            assert_eq!(decode(&s, &bytes), Ok(v), "{s:?}");
            for cut in 0..bytes.len() {
                let short = decode(&s, &bytes[..cut]);
                assert!(short.is_err(), "{s:?} cut at {cut}: {short:?}");
            }
        }
    }

    /// Datums that claim more than they hold: each is refused before anything is
    /// allocated for it, with a message naming the cause and the byte.
    #[test]
    fn counts_and_lengths_are_bounded_by_the_bytes_left() {
        // 500,000,000 as a zigzag varint: apache-avro reserved 28 GB for this array.
        let huge = [0x80, 0x94, 0xEB, 0xDC, 0x03];
        let with = |prefix: &[u8], suffix: &[u8]| [prefix, &huge[..], suffix].concat();
        let cases: Vec<(serde_json::Value, Vec<u8>, &str)> = vec![
            (
                json!({"type": "array", "items": "int"}),
                with(&[], &[2, 0]),
                "an array block at byte 0 claims more items than the 2 bytes left can hold",
            ),
            (
                json!({"type": "array", "items": "null"}),
                with(&[], &[0]),
                "an array block at byte 0 claims more items",
            ),
            (
                json!({"type": "map", "values": "null"}),
                with(&[], &[]),
                "a map block at byte 0 claims more items",
            ),
            (
                json!({"type": "record", "name": "R", "fields": [
                    {"name": "v", "type": "int"},
                    {"name": "a", "type": {"type": "array", "items": "long"}}]}),
                with(&[2], &[2, 0]),
                "an array block at byte 1 claims more items",
            ),
            // A negative count (followed by the block's size) as large as it gets.
            (
                json!({"type": "array", "items": "int"}),
                vec![
                    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0,
                ],
                "claims more items",
            ),
            (
                json!("string"),
                with(&[], b"abc"),
                "a string of 500000000 bytes at byte 5, but only 3 bytes are left",
            ),
            (json!("bytes"), with(&[], &[]), "bytes of 500000000 bytes"),
            (json!("string"), vec![1], "a string of length -1 at byte 0"),
            (
                json!({"type": "fixed", "name": "F", "size": 1_000_000_000_000u64}),
                vec![1, 2],
                "a fixed of 1000000000000 bytes at byte 0, but only 2 bytes are left",
            ),
            (
                json!({"type": "bytes", "logicalType": "big-decimal"}),
                with(&[10], &[]),
                "a big-decimal's unscaled value of 500000000 bytes",
            ),
            (
                json!(["null", "int"]),
                vec![4],
                "union branch 2 at byte 0, of a union of 2",
            ),
            (
                json!("int"),
                vec![0x80, 0x80, 0x80, 0x80, 0x10],
                "out of range for an int",
            ),
            (
                json!("long"),
                vec![0xFF; 11],
                "number longer than 10 bytes at byte 0",
            ),
            (json!("boolean"), vec![2], "invalid boolean 2 at byte 0"),
            (
                json!("string"),
                vec![2, 0xC3],
                "invalid UTF-8 in the string at byte 0",
            ),
            (
                json!({"type": "enum", "name": "E", "symbols": ["A"]}),
                vec![2],
                "enum index 1 at byte 0 is out of range",
            ),
        ];
        for (s, bytes, want) in cases {
            let s = schema(s);
            let got = decode(&s, &bytes);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{s:?}: {got:?}"
            );
        }
    }

    /// Items of empty types take no bytes: a few thousand per datum are read, more are
    /// refused, across blocks too.
    #[test]
    fn empty_items_have_a_budget() {
        let nulls = schema(json!({"type": "array", "items": "null"}));
        let block = |n: i64| {
            let z = ((n << 1) ^ (n >> 63)) as u64;
            let mut out = Vec::new();
            let mut z = z;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
            out
        };
        let ok = [block(4000), block(0)].concat();
        assert_eq!(decode(&nulls, &ok), Ok(V::Array(vec![V::Null; 4000])));
        let too_many = [block(4000), block(4000), block(0)].concat();
        assert!(decode(&nulls, &too_many).is_err_and(|e| e.contains("claims more items")));
    }

    #[test]
    fn recursive_and_too_deep_schemas_are_refused() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                json!({"type": "record", "name": "Node", "namespace": "ns", "fields": [
                    {"name": "next", "type": ["null", "Node"]}]}),
                "recursive type `ns.Node`",
            ),
            (
                json!({"type": "record", "name": "A", "fields": [
                    {"name": "b", "type": {"type": "record", "name": "B", "fields": [
                        {"name": "a", "type": {"type": "array", "items": "A"}}]}}]}),
                "recursive type `A`",
            ),
            (
                json!({"type": "record", "name": "A", "fields": [
                    {"name": "m", "type": {"type": "map", "values": {"type": "record",
                        "name": "B", "fields": [{"name": "c", "type": {"type": "record",
                            "name": "C", "fields": [{"name": "b", "type": ["null", "B"]}]}}]}}}]}),
                "recursive type `B`",
            ),
        ];
        for (s, want) in cases {
            let s = schema(s);
            let got = check_schema(&s);
            assert!(got.as_ref().is_err_and(|e| e.contains(want)), "{got:?}");
            assert!(WriterSchema::new(&s).is_err());
        }
        // Deeper than MAX_DEPTH through references to one type nested 100 deep.
        let mut t = json!("int");
        for _ in 0..100 {
            t = json!({"type": "array", "items": t});
        }
        let mut u = json!("T");
        for _ in 0..30 {
            u = json!({"type": "array", "items": u});
        }
        let deep = json!({"type": "record", "name": "R", "fields": [
            {"name": "a", "type": {"type": "record", "name": "T", "fields": [{"name": "x", "type": t}]}},
            {"name": "b", "type": {"type": "record", "name": "U", "fields": [{"name": "y", "type": u}]}}
        ]});
        let got = check_schema(&schema(deep));
        assert!(
            got.as_ref().is_err_and(|e| e.contains("deeper than 128")),
            "{got:?}"
        );
    }

    /// Schemas apache-avro's parser panicked on (an unwrapped name check) instead of
    /// refusing: the first was found by `cargo fuzz run decode_avro`. Each is an error.
    #[test]
    fn schemas_with_invalid_names_are_refused_not_a_panic() {
        let cases = [
            json!({"type": "record", "name": "-", "fields": [{"name": "a", "type": "int"}]}),
            json!({"type": "record", "name": "R", "aliases": ["a-b"], "fields": []}),
            json!({"type": "enum", "name": "E", "aliases": [".x.y"], "symbols": ["A"]}),
            json!({"type": "record", "name": "R", "fields": [
                {"name": "f", "type": {"type": "fixed", "name": "1x", "size": 1}}]}),
            json!({"type": "record", "name": "R", "fields": [
                {"name": "f", "type": ["null", "no such-type"]}]}),
            json!({"type": "array", "items": {"type": "record", "name": "a..b", "fields": []}}),
        ];
        for s in cases {
            let e = parse_schema(&s).unwrap_err();
            assert!(e.starts_with("invalid name "), "{s}: {e}");
        }
        for ok in ["a", "_a1", "ns.a", "a.b_2.C", ".a"] {
            assert!(is_full_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a.", ".a.b", "a..b", "a-b", "é"] {
            assert!(!is_full_name(bad), "{bad}");
        }
        let fine = json!({"type": "record", "name": "n.R", "aliases": ["Old"], "fields": [
            {"name": "f", "type": "string", "default": "not-a-name"}]});
        assert!(parse_schema(&fine).is_ok());
    }

    /// A type used many times is walked once: 40 levels of records each using the next
    /// twice would be 2^40 visits otherwise.
    #[test]
    fn shared_types_are_accepted_and_walked_once() {
        let mut fields = vec![json!({"name": "x", "type": "int"})];
        let mut defs = Vec::new();
        for i in 0..40 {
            let name = format!("T{i}");
            defs.push(json!({"type": "record", "name": name, "fields": fields}));
            fields = vec![
                json!({"name": "a", "type": defs.last().cloned()}),
                json!({"name": "b", "type": name}),
            ];
        }
        let root = json!({"type": "record", "name": "Root", "fields": fields});
        let s = schema(root);
        assert_eq!(check_schema(&s), Ok(()));
    }
}

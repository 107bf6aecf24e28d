//! JSON and JSON_SR: objects with a field per column (or a bare value for an unwrapped
//! single column), read leniently as ksqlDB's `KsqlJsonDeserializer` does.
//!
//! Payloads are parsed by a small parser of our own rather than serde_json's `Value`: it
//! borrows strings from the payload and keeps numbers as text, so DECIMAL and BIGINT values
//! arrive exactly (serde_json would round them through `f64`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::num::IntErrorKind;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimeUnit, TimestampMillisecondType,
};
use brook_planner::format::FormatKind;
use brook_sql::Type;

use super::builder::{Builder, Kind};
use super::scalar::{
    decode_base64_into, parse_decimal, parse_java_double, push_base64, push_decimal,
    push_java_double,
};
use super::{show_text, Codec, Fail};

/// JSON_SR payloads written through Schema Registry start with a zero byte and a 4-byte
/// schema id; JSON text never starts with a zero byte, so both forms are accepted.
pub(super) fn strip_sr_framing(kind: FormatKind, bytes: &[u8]) -> &[u8] {
    if kind == FormatKind::JsonSr && bytes.len() >= 5 && bytes[0] == 0 {
        &bytes[5..]
    } else {
        bytes
    }
}

/// JSON object keys are strings, so maps (at any depth) need STRING keys.
pub(super) fn check_type(ty: &Type) -> Result<(), String> {
    match ty {
        Type::Map(k, v) => {
            if **k != Type::String {
                return Err("JSON only supports MAP types with STRING keys".into());
            }
            check_type(v)
        }
        Type::Array(t) => check_type(t),
        Type::Struct(fields) => fields.iter().try_for_each(|f| check_type(&f.ty)),
        _ => Ok(()),
    }
}

/// A parsed JSON value, borrowing from the payload.
#[derive(Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's text, exactly as written.
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Fields in payload order, duplicates kept (lookups take the last, as Jackson does).
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Deeper documents are rejected rather than risking the stack.
const MAX_DEPTH: usize = 200;

pub(crate) fn parse(bytes: &[u8]) -> Result<Json<'_>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("invalid JSON: not UTF-8 at byte {}", e.valid_up_to()))?;
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    if p.pos == text.len() {
        return Err("invalid JSON: empty payload".into());
    }
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("unexpected data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        // Whatever was expected, running out of data is the clearer cause.
        let what = if self.pos >= self.text.len() {
            "unexpected end"
        } else {
            what
        };
        format!("invalid JSON: {what} at byte {}", self.pos)
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end")),
        }
    }

    fn literal(&mut self, word: &str, v: Json<'a>) -> Result<Json<'a>, String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("unexpected character"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json<'a>, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(Json::Num(&self.text[start..self.pos]))
    }

    /// A string at the opening quote. Borrowed unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        let b = self.bytes();
        self.pos += 1;
        let start = self.pos;
        loop {
            match b.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => self.pos += 1,
            }
        }
        let mut owned = String::with_capacity(self.pos - start + 16);
        owned.push_str(&self.text[start..self.pos]);
        loop {
            match b.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    let escape = b.get(self.pos + 1).copied();
                    self.pos += 2;
                    match escape {
                        Some(b'"') => owned.push('"'),
                        Some(b'\\') => owned.push('\\'),
                        Some(b'/') => owned.push('/'),
                        Some(b'b') => owned.push('\u{8}'),
                        Some(b'f') => owned.push('\u{c}'),
                        Some(b'n') => owned.push('\n'),
                        Some(b'r') => owned.push('\r'),
                        Some(b't') => owned.push('\t'),
                        Some(b'u') => {
                            let ch = self.unicode_escape()?;
                            owned.push(ch);
                        }
                        _ => {
                            self.pos -= 2;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(c) if *c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => {
                    let run = self.pos;
                    while let Some(&c) = b.get(self.pos) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    owned.push_str(&self.text[run..self.pos]);
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining surrogate pairs; a lone
    /// surrogate becomes U+FFFD as Java's decoders make it.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi)
            && self.bytes().get(self.pos) == Some(&b'\\')
            && self.bytes().get(self.pos + 1) == Some(&b'u')
        {
            let save = self.pos;
            self.pos += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Ok(char::from_u32(cp).unwrap_or('\u{FFFD}'));
            }
            self.pos = save;
        }
        Ok(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes()
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.err("invalid \\u escape"))?;
        let v = digits.iter().fold(0u32, |acc, &h| {
            acc * 16 + (h as char).to_digit(16).unwrap_or(0)
        });
        self.pos += 4;
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.pos += 1;
        let mut fields = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Obj(fields));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a field name"));
            }
            let name = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            fields.push((name, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Obj(fields));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

/// Decodes one payload into one value per builder.
pub(super) fn decode_row(
    codec: &Codec,
    bytes: &[u8],
    builders: &mut [Builder],
) -> Result<(), Fail> {
    let v = parse(strip_sr_framing(codec.kind, bytes)).map_err(Fail::other)?;
    if codec.unwrapped {
        return put(&mut builders[0], &v).map_err(|f| f.in_column(&codec.columns[0].name));
    }
    match &v {
        Json::Null => {
            builders.iter_mut().for_each(Builder::push_null);
            Ok(())
        }
        Json::Obj(fields) => {
            let null = Json::Null;
            for (b, c) in builders.iter_mut().zip(&codec.columns) {
                let v = find_field(fields, &c.name).unwrap_or(&null);
                put(b, v).map_err(|f| f.in_column(&c.name))?;
            }
            Ok(())
        }
        other => Err(Fail::mismatch("a JSON object", found(other))),
    }
}

/// The field for a column or struct field: an exact name match, else a field whose
/// upper-cased name is the column's (unquoted names are upper-case), as ksqlDB matches.
/// The last of duplicate fields wins, as with Jackson's object nodes.
fn find_field<'v, 'a>(fields: &'v [(Cow<'a, str>, Json<'a>)], name: &str) -> Option<&'v Json<'a>> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .or_else(|| fields.iter().rev().find(|(k, _)| upper_eq(k, name)))
        .map(|(_, v)| v)
}

fn upper_eq(key: &str, name: &str) -> bool {
    if key.is_ascii() {
        key.len() == name.len()
            && key
                .bytes()
                .zip(name.bytes())
                .all(|(k, n)| k.to_ascii_uppercase() == n)
    } else {
        key.to_uppercase() == name
    }
}

/// How a JSON value is named in error messages.
fn found(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Num(t) => show_text(t).trim_matches('"').to_string(),
        Json::Str(s) => show_text(s),
        Json::Arr(_) => "an array".into(),
        Json::Obj(_) => "an object".into(),
    }
}

fn mismatch(kind: Kind, v: &Json) -> Fail {
    Fail::mismatch(kind.describe(), found(v))
}

/// Appends `v`, coerced to the builder's type as ksqlDB coerces JSON values.
fn put(b: &mut Builder, v: &Json) -> Result<(), Fail> {
    if let Json::Null = v {
        b.push_null();
        return Ok(());
    }
    let kind = b.kind();
    let int = |min: i64, max: i64| {
        integer(v, min, max, kind).map_err(|r| r.unwrap_or_else(|| mismatch(kind, v)))
    };
    match b {
        Builder::Boolean(x) => match v {
            Json::Bool(t) => x.push(*t),
            Json::Str(s) if s.eq_ignore_ascii_case("true") => x.push(true),
            Json::Str(s) if s.eq_ignore_ascii_case("false") => x.push(false),
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Int(x) => x.push(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Builder::Bigint(x) => x.push(int(i64::MIN, i64::MAX)?),
        Builder::Time(x) => x.push(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Builder::Date(x) => x.push(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Builder::Timestamp(x) => x.push(int(i64::MIN, i64::MAX)?),
        Builder::Double(x) => {
            let d = match v {
                Json::Num(t) => t.parse::<f64>().ok(),
                Json::Str(s) => parse_java_double(s),
                _ => None,
            };
            x.push(d.ok_or_else(|| mismatch(kind, v))?);
        }
        Builder::Decimal {
            values,
            precision,
            scale,
        } => {
            let text: &str = match v {
                Json::Num(t) => t,
                Json::Str(s) => s,
                _ => return Err(mismatch(kind, v)),
            };
            let d = parse_decimal(text, *precision, *scale).map_err(|e| {
                if looks_numeric(text) {
                    Fail::other(e)
                } else {
                    mismatch(kind, v)
                }
            })?;
            values.push(d);
        }
        Builder::String(x) => match v {
            Json::Str(s) => x.push(s.as_bytes())?,
            Json::Num(t) => x.push(t.as_bytes())?,
            Json::Bool(t) => x.push(if *t { b"true" } else { b"false" })?,
            Json::Null | Json::Arr(_) | Json::Obj(_) => {
                // ksqlDB keeps nested JSON in a STRING column as text: objects as JSON,
                // arrays as Java prints a list of the elements' texts.
                java_text(x.data_mut(), v);
                x.close_value()?;
            }
        },
        Builder::Bytes(x) => match v {
            Json::Str(s) => {
                if let Err(e) = decode_base64_into(s, x.data_mut()) {
                    x.abandon_value();
                    return Err(Fail::other(format!("{}: {e}", show_text(s))));
                }
                x.close_value()?;
            }
            _ => return Err(mismatch(kind, v)),
        },
        Builder::Array { entries, items, .. } => {
            let Json::Arr(elements) = v else {
                return Err(mismatch(kind, v));
            };
            for (i, e) in elements.iter().enumerate() {
                put(items, e).map_err(|f| f.at_index(i))?;
            }
            entries.close(items.len())?;
        }
        Builder::Map {
            entries,
            keys,
            values,
            ..
        } => {
            let Json::Obj(fields) = v else {
                return Err(mismatch(kind, v));
            };
            let last = LastOccurrence::new(fields);
            for (i, (k, e)) in fields.iter().enumerate() {
                if !last.is_last(fields, i) {
                    continue;
                }
                put(keys, &Json::Str(Cow::Borrowed(k))).map_err(|f| f.at_key(k))?;
                put(values, e).map_err(|f| f.at_key(k))?;
            }
            entries.close(keys.len())?;
        }
        Builder::Struct {
            fields: struct_fields,
            nulls,
            children,
        } => {
            let Json::Obj(fields) = v else {
                return Err(mismatch(kind, v));
            };
            let null = Json::Null;
            for (child, f) in children.iter_mut().zip(struct_fields.iter()) {
                let v = find_field(fields, f.name()).unwrap_or(&null);
                put(child, v).map_err(|e| e.in_field(f.name()))?;
            }
            nulls.append_non_null();
        }
    }
    Ok(())
}

/// Whether text is shaped like a number, so that a DECIMAL that does not fit reports the
/// overflow rather than a kind mismatch.
fn looks_numeric(text: &str) -> bool {
    text.bytes().any(|c| c.is_ascii_digit())
        && text
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
}

/// An integer from a JSON number (fractions truncated, as Jackson's `intValue` does) or a
/// string of digits. `Err(None)` is a kind mismatch, `Err(Some(_))` a value out of range.
fn integer(v: &Json, min: i64, max: i64, kind: Kind) -> Result<i64, Option<Fail>> {
    let out_of_range = |text: &str| {
        Some(Fail::other(format!(
            "{} is out of range for {}",
            show_text(text).trim_matches('"'),
            kind.name()
        )))
    };
    let n = match v {
        Json::Num(t) if t.contains(['.', 'e', 'E']) => {
            let f = t.parse::<f64>().map_err(|_| None)?.trunc();
            if f < min as f64 || f > max as f64 {
                return Err(out_of_range(t));
            }
            f as i64
        }
        // A JSON integer that does not parse can only be too large.
        Json::Num(t) => t.parse::<i64>().map_err(|_| out_of_range(t))?,
        Json::Str(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
                ) =>
            {
                return Err(out_of_range(s))
            }
            Err(_) => return Err(None),
        },
        _ => return Err(None),
    };
    if n < min || n > max {
        return Err(out_of_range(&n.to_string()));
    }
    Ok(n)
}

/// Which of an object's fields are the last with their name (Jackson keeps the last of
/// duplicate keys).
struct LastOccurrence<'a> {
    /// Only built for large objects; small ones are checked by scanning.
    index: Option<HashMap<&'a str, usize>>,
}

impl<'a> LastOccurrence<'a> {
    fn new(fields: &'a [(Cow<'a, str>, Json<'a>)]) -> Self {
        const SCAN_LIMIT: usize = 32;
        let index = (fields.len() > SCAN_LIMIT).then(|| {
            fields
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.as_ref(), i))
                .collect()
        });
        LastOccurrence { index }
    }

    fn is_last(&self, fields: &[(Cow<'_, str>, Json<'_>)], i: usize) -> bool {
        let key = &fields[i].0;
        match &self.index {
            Some(index) => index.get(key.as_ref()) == Some(&i),
            None => !fields[i + 1..].iter().any(|(k, _)| k == key),
        }
    }
}

/// Text of a nested value in a STRING column, as ksqlDB makes it: objects as compact JSON,
/// arrays as `[a, b]` of their elements' texts, strings bare.
fn java_text(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(t) => out.extend_from_slice(if *t { b"true" } else { b"false" }),
        Json::Num(t) => out.extend_from_slice(t.as_bytes()),
        Json::Str(s) => out.extend_from_slice(s.as_bytes()),
        Json::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                java_text(out, item);
            }
            out.push(b']');
        }
        Json::Obj(_) => compact(out, v),
    }
}

fn compact(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null | Json::Bool(_) | Json::Num(_) => java_text(out, v),
        Json::Str(s) => push_json_string(out, s),
        Json::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                compact(out, item);
            }
            out.push(b']');
        }
        Json::Obj(fields) => {
            out.push(b'{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_string(out, k);
                out.push(b':');
                compact(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{c:04X}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Encodes row `row` of the columns: an object with a field per column, or the bare value
/// of an unwrapped single column (`None` when it is null, as ksqlDB writes no payload).
pub(super) fn encode_row(
    codec: &Codec,
    arrays: &[ArrayRef],
    row: usize,
) -> Result<Option<Vec<u8>>, String> {
    if codec.unwrapped {
        let Some(a) = arrays.first() else {
            return Ok(None);
        };
        if a.is_null(row) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(16);
        write_value(&mut out, a.as_ref(), row)?;
        return Ok(Some(out));
    }
    let mut out = Vec::with_capacity(16 * arrays.len() + 2);
    out.push(b'{');
    for (i, (a, c)) in arrays.iter().zip(&codec.columns).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(&mut out, &c.name);
        out.push(b':');
        write_value(&mut out, a.as_ref(), row).map_err(|e| format!("column `{}`: {e}", c.name))?;
    }
    out.push(b'}');
    Ok(Some(out))
}

fn wrong_array(dt: &DataType) -> String {
    format!("array does not match its type {dt}")
}

/// Appends the JSON of `array[i]`: DECIMAL as an exact number, BYTES as base64, TIME,
/// DATE and TIMESTAMP as numbers, non-finite doubles as strings (as Jackson quotes them).
pub(crate) fn write_value(out: &mut Vec<u8>, array: &dyn Array, i: usize) -> Result<(), String> {
    if array.is_null(i) {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    let dt = array.data_type();
    let wrong = || wrong_array(dt);
    match dt {
        DataType::Boolean => {
            let v = array.as_boolean_opt().ok_or_else(wrong)?.value(i);
            out.extend_from_slice(if v { b"true" } else { b"false" });
        }
        DataType::Int32 => {
            let v = array
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Int64 => {
            let v = array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Float64 => {
            let v = array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(wrong)?
                .value(i);
            if v.is_finite() {
                push_java_double(out, v);
            } else {
                out.push(b'"');
                push_java_double(out, v);
                out.push(b'"');
            }
        }
        DataType::Decimal128(_, scale) => {
            let v = array
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(wrong)?
                .value(i);
            push_decimal(out, v, *scale);
        }
        DataType::Utf8 => {
            let v = array.as_string_opt::<i32>().ok_or_else(wrong)?.value(i);
            push_json_string(out, v);
        }
        DataType::Binary => {
            let v = array.as_binary_opt::<i32>().ok_or_else(wrong)?.value(i);
            out.push(b'"');
            push_base64(out, v);
            out.push(b'"');
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            let v = array
                .as_primitive_opt::<Time32MillisecondType>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Date32 => {
            let v = array
                .as_primitive_opt::<Date32Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let v = array
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::List(_) => {
            let list = array.as_list_opt::<i32>().ok_or_else(wrong)?;
            let offsets = list.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let items = list.values();
            out.push(b'[');
            for j in start..end {
                if j > start {
                    out.push(b',');
                }
                write_value(out, items.as_ref(), j)?;
            }
            out.push(b']');
        }
        DataType::Map(..) => {
            let map = array.as_map_opt().ok_or_else(wrong)?;
            let offsets = map.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let keys = map
                .keys()
                .as_string_opt::<i32>()
                .ok_or_else(|| "JSON only supports MAP types with STRING keys".to_string())?;
            let values = map.values();
            out.push(b'{');
            for j in start..end {
                if j > start {
                    out.push(b',');
                }
                push_json_string(out, keys.value(j));
                out.push(b':');
                write_value(out, values.as_ref(), j)?;
            }
            out.push(b'}');
        }
        DataType::Struct(fields) => {
            let s = array.as_struct_opt().ok_or_else(wrong)?;
            out.push(b'{');
            for (k, f) in fields.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                push_json_string(out, f.name());
                out.push(b':');
                write_value(out, s.column(k).as_ref(), i)?;
            }
            out.push(b'}');
        }
        other => return Err(format!("cannot write Arrow type {other} as JSON")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_agrees_with_serde_json() {
        let docs = [
            r#"{"a": 1, "b": [true, false, null], "c": {"d": "e"}}"#,
            r#"  [1, -2.5, 3e10, -0.0, 1E-2]  "#,
            r#""esc\"aped \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00""#,
            r#"{"dup": 1, "dup": 2}"#,
            "\"ünïcödé ☺\"",
            "{}",
            "[]",
            "null",
            "0",
        ];
        for doc in docs {
            let ours = parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
            let theirs: serde_json::Value = serde_json::from_str(doc).expect("serde parses");
            assert_eq!(to_serde(&ours), theirs, "{doc}");
        }
    }

    fn to_serde(v: &Json) -> serde_json::Value {
        match v {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::Num(t) => serde_json::from_str(t).expect("number"),
            Json::Str(s) => serde_json::Value::String(s.to_string()),
            Json::Arr(items) => items.iter().map(to_serde).collect(),
            Json::Obj(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), to_serde(v)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn parser_rejects_invalid_json() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"[1,]",
            b"{\"a\" 1}",
            b"{a: 1}",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"tru",
            b"\"unterminated",
            b"\"bad \\x escape\"",
            b"\"bad \\u12g4\"",
            b"\"raw \n newline\"",
            b"1 2",
            b"{\"a\":1}}",
            b"\xff",
            b"NaN",
        ];
        for doc in bad {
            let r = parse(doc);
            assert!(
                r.is_err(),
                "{:?} parsed as {r:?}",
                String::from_utf8_lossy(doc)
            );
            assert!(r.unwrap_err().starts_with("invalid JSON"));
        }
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("too deep"));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let v = parse(br#""a\ud800b\udc00""#).unwrap();
        assert_eq!(v, Json::Str(Cow::Owned("a\u{FFFD}b\u{FFFD}".into())));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        assert!(matches!(
            parse(br#""plain""#),
            Ok(Json::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(parse(br#""a\nb""#), Ok(Json::Str(Cow::Owned(_)))));
    }

    #[test]
    fn json_strings_escape_as_json() {
        let mut out = Vec::new();
        push_json_string(&mut out, "q\"b\\n\nt\tc\u{1}é");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#""q\"b\\n\nt\tc\u0001é""#);
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "q\"b\\n\nt\tc\u{1}é");
    }
}

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
use super::{show_text, Codec, ColumnSpec, Fail};

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
    parse_with(bytes, |p| p.value(0))
}

/// Parses one whole JSON document with `top` reading its (non-empty) value, checking the
/// text around it.
fn parse_with<'a, T>(
    bytes: &'a [u8],
    top: impl FnOnce(&mut Parser<'a>) -> Result<T, String>,
) -> Result<T, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("invalid JSON: not UTF-8 at byte {}", e.valid_up_to()))?;
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    if p.pos == text.len() {
        return Err("invalid JSON: empty payload".into());
    }
    let v = top(&mut p)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("unexpected data after the JSON value"));
    }
    Ok(v)
}

/// A record's payload as the columns read it: for a top-level object, the checked text,
/// where [`Pick`]s locate the fields' values; anything else is kept whole.
enum Record<'a> {
    Value(Json<'a>),
    Object(&'a str),
}

/// Per column, where the value starts of the last field whose name is the column's
/// exactly, and of the last whose upper-cased name is (as [`find_field`] chooses).
#[derive(Clone, Copy, Default)]
struct Pick {
    exact: Option<usize>,
    upper: Option<usize>,
}

impl Pick {
    fn get(self) -> Option<usize> {
        self.exact.or(self.upper)
    }
}

/// Records in `picks` the columns that top-level field `key`, whose value starts at byte
/// `slot`, matches.
fn pick_key(key: &str, columns: &[ColumnSpec], picks: &mut [Pick], slot: usize) {
    if key.is_ascii() {
        let k = key.as_bytes();
        for (c, pick) in columns.iter().zip(picks.iter_mut()) {
            let n = c.name.as_bytes();
            if k.len() != n.len() {
                continue;
            }
            if k == n {
                pick.exact = Some(slot);
            } else if k.iter().zip(n).all(|(k, n)| k.to_ascii_uppercase() == *n) {
                pick.upper = Some(slot);
            }
        }
    } else {
        let upper = key.to_uppercase();
        for (c, pick) in columns.iter().zip(picks.iter_mut()) {
            if key == c.name {
                pick.exact = Some(slot);
            } else if upper == c.name {
                pick.upper = Some(slot);
            }
        }
    }
}

/// The index of the first byte at or after `i` that ends a run of plain string text: a
/// quote, a backslash or a control character (`b.len()` if none), tested 8 bytes at a time.
#[inline]
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set when it is zero (or below 0x20 for `w`); borrows only
        // flag bytes above a true match, so the lowest flag is the first match.
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGHS;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
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

    /// Skips whitespace up to an object's next field name, which must follow.
    fn field_name_starts(&mut self) -> Result<(), String> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a field name"));
        }
        Ok(())
    }

    /// Skips the `:` after a field name, and the whitespace around it.
    fn colon(&mut self) -> Result<(), String> {
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':'"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
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
        self.word(word).map(|()| v)
    }

    fn word(&mut self, word: &str) -> Result<(), String> {
        if self.text.as_bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }

    /// Passes over a value, checking it exactly as [`Parser::value`] does (the same errors
    /// at the same bytes) without building it.
    fn skip(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => self.skip_object(depth),
            Some(b'[') => self.skip_array(depth),
            Some(b'"') => self.skip_string(),
            Some(b't') => self.word("true"),
            Some(b'f') => self.word("false"),
            Some(b'n') => self.word("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end")),
        }
    }

    /// Appends the (already checked) value here to `b` as [`put`] appends it, reading an
    /// ARRAY's elements straight into its items rather than building the array.
    fn put_value(&mut self, b: &mut Builder, depth: usize) -> Result<(), Fail> {
        let Builder::Array { entries, items, .. } = b else {
            let v = self.value(depth).map_err(Fail::other)?;
            return put(b, &v);
        };
        if self.peek() != Some(b'[') {
            let v = self.value(depth).map_err(Fail::other)?;
            return put(b, &v);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            let mut i = 0;
            loop {
                self.skip_ws();
                self.put_value(items, depth + 1)
                    .map_err(|f| f.at_index(i))?;
                i += 1;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Fail::other(self.err("expected ',' or ']'"))),
                }
            }
        }
        entries.close(items.len())
    }

    /// [`Parser::string`] without keeping the text.
    fn skip_string(&mut self) -> Result<(), String> {
        let b = self.bytes();
        self.pos += 1;
        loop {
            self.pos = plain_run_end(b, self.pos);
            match b.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let escape = b.get(self.pos + 1).copied();
                    self.pos += 2;
                    match escape {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        // A surrogate pair is two escapes checked one after the other, as
                        // `unicode_escape` checks them.
                        Some(b'u') => {
                            self.hex4()?;
                        }
                        _ => {
                            self.pos -= 2;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(c) if *c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), String> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.skip(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn skip_object(&mut self, depth: usize) -> Result<(), String> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.field_name_starts()?;
            self.skip_string()?;
            self.colon()?;
            self.skip(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    /// A record's value at the top level. An object (checked as [`Parser::object`] checks
    /// it) is not built: `picks` (one per column) gets where each column's value starts.
    fn record(&mut self, columns: &[ColumnSpec], picks: &mut [Pick]) -> Result<Record<'a>, String> {
        if self.peek() != Some(b'{') {
            return self.value(0).map(Record::Value);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Record::Object(self.text));
        }
        loop {
            self.field_name_starts()?;
            let name = self.string()?;
            self.colon()?;
            pick_key(&name, columns, picks, self.pos);
            self.skip(1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Record::Object(self.text));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
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
        self.pos = plain_run_end(b, start);
        match b.get(self.pos) {
            None => return Err(self.err("unterminated string")),
            Some(b'"') => {
                let s = &self.text[start..self.pos];
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            // What else ends a run of plain text: a control character.
            Some(_) => return Err(self.err("control character in string")),
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
                    self.pos = plain_run_end(b, self.pos);
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
            self.field_name_starts()?;
            let name = self.string()?;
            self.colon()?;
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
    let bytes = strip_sr_framing(codec.kind, bytes);
    if codec.unwrapped {
        let v = parse(bytes).map_err(Fail::other)?;
        return put(&mut builders[0], &v).map_err(|f| f.in_column(&codec.columns[0].name));
    }
    let row = builders.first().map_or(0, Builder::len);
    if decode_object_at_once(&codec.columns, bytes, builders).is_some() {
        return Ok(());
    }
    // Whatever the one-pass attempt appended goes; the careful path decides the outcome.
    for b in builders.iter_mut() {
        b.truncate(row);
    }
    // The whole payload is checked first (its errors come before any column's), noting
    // where each column's field is; only those values are then built, in column order.
    const ON_STACK: usize = 16;
    let mut on_stack = [Pick::default(); ON_STACK];
    let mut on_heap = Vec::new();
    let picks = if codec.columns.len() <= ON_STACK {
        &mut on_stack[..codec.columns.len()]
    } else {
        on_heap.resize(codec.columns.len(), Pick::default());
        &mut on_heap[..]
    };
    let record = parse_with(bytes, |p| p.record(&codec.columns, picks)).map_err(Fail::other)?;
    match &record {
        Record::Value(Json::Null) => {
            builders.iter_mut().for_each(Builder::push_null);
            Ok(())
        }
        Record::Object(text) => {
            for ((b, c), pick) in builders.iter_mut().zip(&codec.columns).zip(picks.iter()) {
                match pick.get() {
                    None => b.push_null(),
                    Some(pos) => {
                        let mut p = Parser { text, pos };
                        p.put_value(b, 1).map_err(|f| f.in_column(&c.name))?;
                    }
                }
            }
            Ok(())
        }
        Record::Value(other) => Err(Fail::mismatch("a JSON object", found(other))),
    }
}

/// Which columns a top-level field's name matches (exactly or upper-cased, see
/// [`find_field`]).
enum Match {
    None,
    One(usize),
    Many,
}

fn match_key(key: &str, columns: &[ColumnSpec]) -> Match {
    let mut found = Match::None;
    let mut hit = |j| {
        found = match found {
            Match::None => Match::One(j),
            _ => Match::Many,
        }
    };
    if key.is_ascii() {
        let k = key.as_bytes();
        for (j, c) in columns.iter().enumerate() {
            let n = c.name.as_bytes();
            if k.len() != n.len() {
                continue;
            }
            // An exact match or an upper-cased one (each over the whole name, not a mix),
            // compared in one branch-free pass: names are short.
            let (mut exact, mut upper) = (true, true);
            for (&k, &n) in k.iter().zip(n) {
                exact &= k == n;
                upper &= k.to_ascii_uppercase() == n;
            }
            if exact || upper {
                hit(j);
            }
        }
    } else {
        let upper = key.to_uppercase();
        for (j, c) in columns.iter().enumerate() {
            if key == c.name || upper == c.name {
                hit(j);
            }
        }
    }
    found
}

/// The common case in one pass: a valid top-level object whose fields each match at most
/// one column, no column matched twice, and every value one its column takes, put straight
/// into the builders as the fields come. `None` as soon as anything else shows (what was
/// appended is then for the caller to drop): the two passes of [`decode_row`] then give
/// the outcome, with errors in the order they report them.
fn decode_object_at_once(
    columns: &[ColumnSpec],
    bytes: &[u8],
    builders: &mut [Builder],
) -> Option<()> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return None;
    }
    const ON_STACK: usize = 32;
    let mut on_stack = [false; ON_STACK];
    let mut on_heap = Vec::new();
    let filled = if columns.len() <= ON_STACK {
        &mut on_stack[..columns.len()]
    } else {
        on_heap.resize(columns.len(), false);
        &mut on_heap[..]
    };
    p.pos += 1;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            if p.peek() != Some(b'"') {
                return None;
            }
            let name = p.string().ok()?;
            p.skip_ws();
            if p.peek() != Some(b':') {
                return None;
            }
            p.pos += 1;
            p.skip_ws();
            match match_key(&name, columns) {
                Match::None => p.skip(1).ok()?,
                Match::One(j) if !filled[j] => {
                    filled[j] = true;
                    p.put_value(&mut builders[j], 1).ok()?;
                }
                // A duplicate, or a field that several columns read.
                Match::One(_) | Match::Many => return None,
            }
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    p.skip_ws();
    if p.pos != text.len() {
        return None;
    }
    for (b, filled) in builders.iter_mut().zip(filled.iter()) {
        if !filled {
            b.push_null();
        }
    }
    Some(())
}

/// The field for a column or struct field: an exact name match, else a field whose
/// upper-cased name is the column's (unquoted names are upper-case), as ksqlDB matches.
/// The last of duplicate fields wins, as with Jackson's object nodes.
fn find_field<'v, 'a>(fields: &'v [(Cow<'a, str>, Json<'a>)], name: &str) -> Option<&'v Json<'a>> {
    // One pass: the last exact match, else the last upper-case match seen on the way.
    let mut upper = None;
    for (k, v) in fields.iter().rev() {
        if k == name {
            return Some(v);
        }
        if upper.is_none() && upper_eq(k, name) {
            upper = Some(v);
        }
    }
    upper
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

    /// Documents that are not JSON.
    const INVALID: &[&[u8]] = &[
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

    #[test]
    fn parser_rejects_invalid_json() {
        for doc in INVALID {
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

    /// Documents, valid and not, for checking the skipping and picking parsers against the
    /// building one (with [`INVALID`] too).
    const CORPUS: &[&[u8]] = &[
        br#"{"a": 1, "b": [true, false, null], "c": {"d": "e"}}"#,
        br#"  [1, -2.5, 3e10, -0.0, 1E-2]  "#,
        br#""esc\"aped \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00""#,
        br#"{"dup": 1, "dup": 2}"#,
        "\"ünïcödé ☺\"".as_bytes(),
        b"{}",
        b"[]",
        b"null",
        b"0",
        br#"{"ID": 1, "x": [1, {"y": [tru]}]}"#,
        br#"{"ID": 1, "x": [1, {"y": "\q"}]}"#,
        br#"{"ID": 1, "x": "\ud800\uZZZZ"}"#,
        br#"{"ID": 1, "x": "\ud800\udc0"}"#,
        br#"{"ID": 1, "x": "\ud800\u0041"}"#,
        br#"{"ID": 1, "x": "\"#,
        br#"{"ID": 1, "x": "\u12"#,
        br#"{"ID": 1, "x": {"a" 1}}"#,
        br#"{"ID": 1, "x": {"a": 1,}}"#,
        br#"{"ID": 1, "x": {1: 1}}"#,
        br#"{"ID": 1, "x": [1 2]}"#,
        br#"{"ID": 1, "x": -}"#,
        br#"{"ID": 1, "x": 1.e5}"#,
        br#"{"ID": 1, "x": fals}"#,
        br#"{"ID": 1, "x": nul"#,
        br#"{"ID": 1, "x": @}"#,
        br#"{"ID": 1, "x": "#,
        br#"{"ID": 1, "x" "#,
        br#"{"ID": 1, "x": 1"#,
        br#"{"ID": 1, "x": [1, 2"#,
        br#"{"ID": 1, "x": "tab	in string"}"#,
        br#"{"ID": 1 "x": 2}"#,
        br#"{"ID": 1, "x": 2} x"#,
        br#"{"ID": 1, "x": {"k": [null, true, false, -1.5e-3, "s\u00e9\n"]}}"#,
        br#"{"id": 1, "ID": 2, "Id": 3}"#,
        br#"{"iD": 1}"#,
        br#"{"ab": 1}"#,
        br#"{"ab": 1, "aB": 2}"#,
        br#"{"aB": 2, "ab": 1}"#,
        br#"{"Id": 1, "iD": 2}"#,
        br#"{"iD": 2, "Id": 1}"#,
        br#"{"ID": 1, "id": 2}"#,
        br#"{"id": "7", "name": "bob", "NAME": "alice", "extra": {"nested": [1, 2]}}"#,
        br#"{"name": null, "id": [1], "s": {"F0": 1, "f1": "x", "f1": "y"}}"#,
        br#"{"s": {"f0": 1, "F0": 2}, "m": {"a": 1, "a": 2, "b": null}}"#,
        br#"{"s": "not a struct", "m": [1]}"#,
        br#"{"\u0069d": 5, "na\u006De": "esc"}"#,
        "{\"ıd\": 5, \"ﬁ\": 1}".as_bytes(),
        "{\"é\": 5, \"É\": 6}".as_bytes(),
        br#"[1, 2]"#,
        br#""just a string""#,
        br#"12.5"#,
        br#"true"#,
        br#"{"X": ["a", "bb", null, 1, true, [1, "x"], {"k": "v"}], "ID": 3}"#,
        br#"{"X": [[1, 2], [], null, [3, "4"]], "ID": 3}"#,
        br#"{"X": [[1, 2], [3, "four"]], "ID": 3}"#,
        br#"{"X": [{"a": 1, "A": 2}, {"A": "x"}, null], "ID": 3}"#,
        br#"{"X": [ ], "x": [1, 2 ] , "ID": 3}"#,
        br#"{"x": [1, 2], "X": 5, "ID": 3}"#,
        br#"{"X": "a long string of plain text, then \"escapes\" \u00e9 and more text"}"#,
        br#"{"X": ["0123456789abcdef\n", "0123456\"89abcdef", "01234567\\9abcdef"]}"#,
        "{\"X\": [\"0123456789\u{1}bcdef\"]}".as_bytes(),
        "{\"X\": [\"01234567\u{1f}\"]}".as_bytes(),
        "{\"X\": \"ünïcödé ☺ ünïcödé ☺ ünïcödé ☺\", \"ID\": 1}".as_bytes(),
        br#"{"X": [1, 2, 3000000000], "ID": 3}"#,
        br#"{"X": [1, 2, 3], "ID": "three"}"#,
        br#"{"ID": "three", "X": [1, 2, 3000000000]}"#,
        br#"{"ID": 3, "X": [1, 2, 3] "#,
        br#"{"ID": 3, "X": [1, 2, 3]] "#,
    ];

    #[test]
    fn plain_runs_end_at_quotes_backslashes_and_controls() {
        let mut text = Vec::new();
        for i in 0..40u8 {
            text.extend_from_slice("ab\u{e9}☺".as_bytes());
            text.push(match i % 5 {
                0 => b'"',
                1 => b'\\',
                2 => i % 0x20,
                3 => 0x7f,
                _ => 0x20,
            });
        }
        for from in 0..text.len() {
            let naive = (from..text.len())
                .find(|&i| matches!(text[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(text.len());
            assert_eq!(plain_run_end(&text, from), naive, "from {from}");
        }
    }

    #[test]
    fn skipping_checks_as_parsing_does() {
        for doc in CORPUS.iter().chain(INVALID) {
            let built = parse(doc).map(drop);
            let skipped = parse_with(doc, |p| p.skip(0));
            assert_eq!(skipped, built, "{:?}", String::from_utf8_lossy(doc));
        }
        for n in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2] {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let doc = format!("{{\"x\": {}1{}}}", open.repeat(n), close.repeat(n));
                let built = parse(doc.as_bytes()).map(drop);
                let skipped = parse_with(doc.as_bytes(), |p| p.skip(0));
                assert_eq!(skipped, built, "{n} {open}");
            }
        }
    }

    /// The decoding before fields no column reads were skipped: the whole value built, and
    /// each column's field looked up by name.
    fn reference_decode_row(
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
                    let v = fields
                        .iter()
                        .rev()
                        .find(|(k, _)| k == &c.name)
                        .or_else(|| fields.iter().rev().find(|(k, _)| upper_eq(k, &c.name)))
                        .map(|(_, v)| v)
                        .unwrap_or(&null);
                    put(b, v).map_err(|f| f.in_column(&c.name))?;
                }
                Ok(())
            }
            other => Err(Fail::mismatch("a JSON object", found(other))),
        }
    }

    type DecodeRow = fn(&Codec, &[u8], &mut [Builder]) -> Result<(), Fail>;

    #[test]
    fn decoding_agrees_with_building_whole_values() {
        use brook_planner::format::FormatSpec;
        use brook_planner::schema::{Column, Namespace};
        use brook_planner::types::NoTypes;

        use crate::format::Part;

        let schemas: &[&[(&str, &str)]] = &[
            &[("ID", "INT")],
            &[("ID", "INT"), ("NAME", "STRING")],
            &[("id", "STRING"), ("ID", "STRING"), ("Id", "STRING")],
            &[("aB", "INT"), ("AB", "INT")],
            &[("aB", "INT"), ("X", "INT")],
            &[("X", "STRING"), ("ID", "BIGINT")],
            &[
                ("S", "STRUCT<F0 INT, `f1` STRING>"),
                ("M", "MAP<STRING, INT>"),
                ("NAME", "STRING"),
            ],
            &[("ÍD", "INT"), ("É", "INT"), ("FI", "INT"), ("ﬁ", "INT")],
            &[("A", "INT")],
            &[("X", "ARRAY<STRING>"), ("ID", "INT")],
            &[("X", "ARRAY<INT>"), ("ID", "INT")],
            &[("X", "ARRAY<ARRAY<INT>>"), ("ID", "INT")],
            &[("X", "ARRAY<STRUCT<A INT>>"), ("ID", "INT")],
            &[("X", "ARRAY<STRING>")],
            &[("X", "STRING"), ("ID", "STRING")],
        ];
        for decl in schemas {
            let columns: Vec<Column> = decl
                .iter()
                .map(|(n, t)| {
                    let ty = brook_sql::parse_type(t).expect("test type parses");
                    Column::new(*n, ty, Namespace::Value)
                })
                .collect();
            for wrap in [None, Some(false)] {
                let spec = FormatSpec {
                    wrap_single_value: wrap,
                    ..FormatSpec::new(FormatKind::Json)
                };
                let Ok(codec) = Codec::new(&spec, Part::Value, &columns, &NoTypes) else {
                    continue;
                };
                // All the documents one after the other into the same builders, as
                // `Codec::decode` runs rows (a failed row's values dropped for a null).
                let run = |decode: DecodeRow| {
                    let mut builders: Vec<Builder> = codec
                        .columns
                        .iter()
                        .map(|c| Builder::new(&c.data_type, 1).unwrap())
                        .collect();
                    let mut results = Vec::new();
                    for (row, doc) in CORPUS.iter().chain(INVALID).enumerate() {
                        let r = decode(&codec, doc, &mut builders).map_err(|f| f.to_string());
                        if r.is_err() {
                            for b in &mut builders {
                                b.truncate(row);
                                b.push_null();
                            }
                        }
                        results.push((String::from_utf8_lossy(doc).into_owned(), r));
                    }
                    let arrays: Vec<_> = builders
                        .iter_mut()
                        .map(|b| b.finish().unwrap().to_data())
                        .collect();
                    (results, arrays)
                };
                let ours = run(decode_row);
                let reference = run(reference_decode_row);
                for (ours, reference) in ours.0.iter().zip(&reference.0) {
                    assert_eq!(ours, reference, "{decl:?} {wrap:?}");
                }
                assert_eq!(ours.1, reference.1, "{decl:?} {wrap:?}");
            }
        }
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

//! PROTOBUF and PROTOBUF_NOSR: Protocol Buffers (proto3) messages in the shape ksqlDB
//! generates from the columns, written and read by hand from the wire format.
//!
//! The message has one field per column, numbered 1..n in column order: INT `int32`,
//! BIGINT `int64`, DOUBLE `double`, BOOLEAN `bool`, STRING `string`, BYTES `bytes`, ARRAY
//! `repeated` (numeric elements packed), MAP repeated entry messages (key = 1, value = 2),
//! STRUCT a nested message, DECIMAL `confluent.type.Decimal` (value = 1: big-endian two's
//! complement unscaled bytes, precision = 2, scale = 3), DATE `google.type.Date` (year = 1,
//! month = 2, day = 3), TIME `google.type.TimeOfDay` (hours = 1, minutes = 2, seconds = 3,
//! nanos = 4) and TIMESTAMP `google.protobuf.Timestamp` (seconds = 1, nanos = 2). Protobuf
//! cannot nest a repeated field directly in another, so an ARRAY element that is itself an
//! ARRAY or MAP is a message whose field 1 holds it.
//!
//! Protobuf has no nulls. As proto3 does, scalars equal to their default (0, "", false,
//! empty bytes) are not written, and an absent scalar reads as its default; so a NULL
//! scalar reads back as its default, and a NULL ARRAY or MAP as an empty one, which is what
//! ksqlDB's conformance tests expect. Message-typed values (STRUCT, DECIMAL, DATE, TIME,
//! TIMESTAMP) keep NULL as an absent field. Array elements cannot be absent: NULL elements
//! are written as their type's default (an empty message for message types; an empty
//! `google.type.Date` reads back as NULL).
//!
//! PROTOBUF frames the message as Confluent's serializer does: a zero byte, a 4-byte schema
//! id, then the message-index path (a single zero byte for the file's first message).
//! Codecs do not register the message they write, so the id written is [`UNREGISTERED_ID`];
//! readers ignore the id and path and read fields by number, which also reads payloads
//! written with a schema registered for inference.
//! PROTOBUF_NOSR is the bare message. Values are never unwrapped (ksqlDB's PROTOBUF does not
//! support it) and keys are always messages.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimeUnit, TimestampMillisecondType,
};
use brook_planner::format::FormatKind;
use brook_sql::Type;

use super::builder::{Builder, Kind};
use super::{Codec, Fail};
use crate::Result;

/// The first byte of a payload in Confluent's wire format.
const MAGIC: u8 = 0;
/// Written where Confluent's serializer writes the registered schema's id; no registered
/// schema has id 0 (Confluent's ids start at 1).
pub(super) const UNREGISTERED_ID: u32 = 0;

/// Maps need STRING keys, at any depth (ksqlDB's wording, with the format's name).
pub(super) fn check_type(kind: FormatKind, ty: &Type) -> Result<(), String> {
    match ty {
        Type::Map(k, v) => {
            if **k != Type::String {
                return Err(format!(
                    "{kind} format only supports MAP types with STRING keys"
                ));
            }
            check_type(kind, v)
        }
        Type::Array(t) => check_type(kind, t),
        Type::Struct(fields) => fields.iter().try_for_each(|f| check_type(kind, &f.ty)),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Wire primitives

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn wire_name(wire: u8) -> &'static str {
    match wire {
        VARINT => "wire type 0 (varint)",
        FIXED64 => "wire type 1 (64-bit)",
        LEN => "wire type 2 (length-delimited)",
        FIXED32 => "wire type 5 (32-bit)",
        3 | 4 => "a group (wire type 3/4)",
        _ => "an unknown wire type",
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A field's value as it is on the wire, before its column's type gives it meaning.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl Raw<'_> {
    fn wire(&self) -> u8 {
        match self {
            Raw::Varint(_) => VARINT,
            Raw::Fixed64(_) => FIXED64,
            Raw::Fixed32(_) => FIXED32,
            Raw::Bytes(_) => LEN,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {start}"));
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a 64-bit value.
            if shift == 63 && b > 1 {
                return Err(format!("varint longer than 64 bits at byte {start}"));
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {start}"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes needed at byte {} but only {} left",
                    self.pos,
                    self.buf.len() - self.pos.min(self.buf.len())
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn fixed32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    /// The next field: its number and raw value.
    fn field(&mut self) -> Result<(u64, Raw<'a>), String> {
        let at = self.pos;
        let tag = self.varint()?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        if number == 0 {
            return Err(format!("field number 0 at byte {at}"));
        }
        let raw = match wire {
            VARINT => Raw::Varint(self.varint()?),
            FIXED64 => Raw::Fixed64(self.fixed64()?),
            FIXED32 => Raw::Fixed32(self.fixed32()?),
            LEN => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
                Raw::Bytes(self.take(n)?)
            }
            other => {
                return Err(format!(
                    "field {number} at byte {at} has {}, which PROTOBUF does not read",
                    wire_name(other)
                ))
            }
        };
        Ok((number, raw))
    }
}

/// The fields numbered 1..=`count` of a message given as one or more byte strings (several
/// occurrences of a singular message field merge, which for the fields read here is the
/// same as reading their concatenation). Other fields are skipped.
fn scan<'a>(parts: &[&'a [u8]], count: usize) -> Result<Vec<Vec<Raw<'a>>>, Fail> {
    let mut fields = vec![Vec::new(); count];
    for part in parts {
        let mut r = Reader::new(part);
        while !r.at_end() {
            let (number, raw) = r
                .field()
                .map_err(|e| Fail::other(format!("invalid Protobuf data: {e}")))?;
            if let Some(slot) = usize::try_from(number)
                .ok()
                .and_then(|n| fields.get_mut(n - 1))
            {
                slot.push(raw);
            }
        }
    }
    Ok(fields)
}

/// Splits a PROTOBUF payload into its message body, checking the framing.
fn strip_framing(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 6 {
        return Err(format!(
            "payload of {} bytes is shorter than the 6-byte Schema Registry header",
            bytes.len()
        ));
    }
    if bytes[0] != MAGIC {
        return Err(format!(
            "Unknown magic byte {} (expected 0): not in the Schema Registry wire format",
            bytes[0]
        ));
    }
    // The message-index path: a zigzag count, then that many zigzag indexes (a count of 0
    // stands for the path [0]).
    let mut r = Reader::new(&bytes[5..]);
    let bad = |e: String| format!("invalid message-index path: {e}");
    let count = zigzag(r.varint().map_err(bad)?);
    if !(0..=100).contains(&count) {
        return Err(bad(format!("{count} indexes")));
    }
    for _ in 0..count {
        r.varint().map_err(bad)?;
    }
    Ok(&bytes[5 + r.pos..])
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes one payload into one value per builder.
pub(super) fn decode_row(
    codec: &Codec,
    bytes: &[u8],
    builders: &mut [Builder],
) -> Result<(), Fail> {
    let body = match codec.kind {
        FormatKind::Protobuf => strip_framing(bytes).map_err(Fail::other)?,
        _ => bytes,
    };
    let fields = scan(&[body], builders.len())?;
    for ((b, c), raws) in builders.iter_mut().zip(&codec.columns).zip(&fields) {
        put_field(b, raws).map_err(|f| f.in_column(&c.name))?;
    }
    Ok(())
}

/// Whether values of the builder's type are messages (absent means NULL).
fn is_message(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Struct | Kind::Decimal(..) | Kind::Date | Kind::Time | Kind::Timestamp
    )
}

/// Whether arrays of the builder's type are written packed.
fn is_packable(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Boolean | Kind::Int | Kind::Bigint | Kind::Double
    )
}

fn wire_mismatch(kind: Kind, raw: &Raw) -> Fail {
    let wanted = match kind {
        Kind::Boolean | Kind::Int | Kind::Bigint => VARINT,
        Kind::Double => FIXED64,
        _ => LEN,
    };
    Fail::mismatch(
        format!("{} for {}", wire_name(wanted), kind.describe()),
        wire_name(raw.wire()),
    )
}

/// Appends the value of a field from all its occurrences (none when absent).
fn put_field(b: &mut Builder, raws: &[Raw]) -> Result<(), Fail> {
    let kind = b.kind();
    match b {
        Builder::Array { entries, items, .. } => {
            let start = items.len();
            for raw in raws {
                put_item(items, raw).map_err(|f| f.at_index(items.len() - start))?;
            }
            entries.close(items.len())?;
        }
        Builder::Map {
            entries,
            keys,
            values,
            ..
        } => {
            let mut scanned = Vec::with_capacity(raws.len());
            for (i, raw) in raws.iter().enumerate() {
                let Raw::Bytes(entry) = raw else {
                    return Err(wire_mismatch(kind, raw).at_index(i));
                };
                let mut kv = scan(&[entry], 2).map_err(|f| f.at_index(i))?;
                let v = kv.pop().unwrap_or_default();
                let k = kv.pop().unwrap_or_default();
                let key: &[u8] = match k.last() {
                    Some(Raw::Bytes(s)) => s,
                    Some(other) => return Err(wire_mismatch(Kind::String, other).at_index(i)),
                    None => b"",
                };
                scanned.push((key, v));
            }
            // Of entries with the same key the last wins, as protobuf maps merge.
            let last: HashMap<&[u8], usize> = scanned
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect();
            for (i, (key, v)) in scanned.iter().enumerate() {
                if last.get(key) != Some(&i) {
                    continue;
                }
                let shown = String::from_utf8_lossy(key);
                put_field(keys, &[Raw::Bytes(key)]).map_err(|f| f.at_key(&shown))?;
                put_field(values, v).map_err(|f| f.at_key(&shown))?;
            }
            entries.close(keys.len())?;
        }
        _ if is_message(kind) => {
            if raws.is_empty() {
                b.push_null();
                return Ok(());
            }
            let mut parts = Vec::with_capacity(raws.len());
            for raw in raws {
                match raw {
                    Raw::Bytes(s) => parts.push(*s),
                    other => return Err(wire_mismatch(kind, other)),
                }
            }
            put_message(b, &parts)?;
        }
        _ => match raws.last() {
            Some(raw) => put_scalar(b, raw)?,
            None => put_default(b)?,
        },
    }
    Ok(())
}

/// Appends one element of a repeated field: a packed run of numbers, a wrapped nested
/// ARRAY or MAP, or one value.
fn put_item(items: &mut Builder, raw: &Raw) -> Result<(), Fail> {
    let kind = items.kind();
    match (kind, raw) {
        (k, Raw::Bytes(packed)) if is_packable(k) => {
            let mut r = Reader::new(packed);
            while !r.at_end() {
                let v = match k {
                    Kind::Double => r.fixed64().map(Raw::Fixed64),
                    _ => r.varint().map(Raw::Varint),
                }
                .map_err(|e| Fail::other(format!("invalid packed repeated field: {e}")))?;
                put_scalar(items, &v)?;
            }
            Ok(())
        }
        (Kind::Array | Kind::Map, Raw::Bytes(wrapper)) => {
            let fields = scan(&[wrapper], 1)?;
            put_field(items, fields.first().map_or(&[][..], Vec::as_slice))
        }
        (Kind::Array | Kind::Map, other) => Err(wire_mismatch(kind, other)),
        _ => put_field(items, std::slice::from_ref(raw)),
    }
}

fn put_default(b: &mut Builder) -> Result<(), Fail> {
    match b {
        Builder::Boolean(x) => x.push(false),
        Builder::Int(x) => x.push(0),
        Builder::Bigint(x) => x.push(0),
        Builder::Double(x) => x.push(0.0),
        Builder::String(x) | Builder::Bytes(x) => x.push(b"")?,
        other => other.push_null(),
    }
    Ok(())
}

fn put_scalar(b: &mut Builder, raw: &Raw) -> Result<(), Fail> {
    let kind = b.kind();
    match (b, raw) {
        (Builder::Boolean(x), Raw::Varint(v)) => x.push(*v != 0),
        // Java's int32 reads the low 32 bits of the varint.
        (Builder::Int(x), Raw::Varint(v)) => x.push(*v as i32),
        (Builder::Bigint(x), Raw::Varint(v)) => x.push(*v as i64),
        (Builder::Double(x), Raw::Fixed64(v)) => x.push(f64::from_bits(*v)),
        // A `float` field reads as a DOUBLE, as ksqlDB infers it.
        (Builder::Double(x), Raw::Fixed32(v)) => x.push(f32::from_bits(*v).into()),
        (Builder::String(x), Raw::Bytes(s)) => {
            let text = std::str::from_utf8(s).map_err(|e| {
                Fail::other(format!(
                    "invalid UTF-8 in a string at byte {}",
                    e.valid_up_to()
                ))
            })?;
            x.push(text.as_bytes())?;
        }
        (Builder::Bytes(x), Raw::Bytes(s)) => x.push(s)?,
        (_, other) => return Err(wire_mismatch(kind, other)),
    }
    Ok(())
}

/// The last varint of a message's field, or 0 when absent.
fn varint_field(fields: &[Vec<Raw>], number: usize, name: &str) -> Result<u64, Fail> {
    match fields.get(number - 1).and_then(|f| f.last()) {
        None => Ok(0),
        Some(Raw::Varint(v)) => Ok(*v),
        Some(other) => {
            Err(Fail::mismatch(wire_name(VARINT), wire_name(other.wire())).in_field(name))
        }
    }
}

/// Appends a message-typed value from the bytes of its occurrences.
fn put_message(b: &mut Builder, parts: &[&[u8]]) -> Result<(), Fail> {
    if let Builder::Date(_) = b {
        match date_days(parts)? {
            None => b.push_null(),
            Some(days) => {
                if let Builder::Date(x) = b {
                    x.push(days);
                }
            }
        }
        return Ok(());
    }
    match b {
        Builder::Struct {
            fields: struct_fields,
            nulls,
            children,
        } => {
            let fields = scan(parts, children.len())?;
            for ((child, f), raws) in children.iter_mut().zip(struct_fields.iter()).zip(&fields) {
                put_field(child, raws).map_err(|e| e.in_field(f.name()))?;
            }
            nulls.append_non_null();
        }
        Builder::Decimal {
            values,
            precision,
            scale,
        } => {
            let fields = scan(parts, 3)?;
            let unscaled = match fields[0].last() {
                None => 0,
                Some(Raw::Bytes(s)) => unscaled_from_bytes(s).ok_or_else(|| {
                    Fail::other(format!("decimal of {} bytes is too large", s.len()))
                })?,
                Some(other) => {
                    return Err(
                        Fail::mismatch(wire_name(LEN), wire_name(other.wire())).in_field("value")
                    )
                }
            };
            let writer_scale = varint_field(&fields, 3, "scale")? as i32;
            values.push(rescale(unscaled, writer_scale, *precision, *scale).map_err(Fail::other)?);
        }
        Builder::Time(x) => {
            let fields = scan(parts, 4)?;
            let h = varint_field(&fields, 1, "hours")? as i32;
            let m = varint_field(&fields, 2, "minutes")? as i32;
            let s = varint_field(&fields, 3, "seconds")? as i32;
            let n = varint_field(&fields, 4, "nanos")? as i32;
            if !(0..24).contains(&h)
                || !(0..60).contains(&m)
                || !(0..60).contains(&s)
                || !(0..1_000_000_000).contains(&n)
            {
                return Err(Fail::other(format!(
                    "invalid time of day {h}:{m}:{s}.{n:09}"
                )));
            }
            x.push(h * 3_600_000 + m * 60_000 + s * 1_000 + n / 1_000_000);
        }
        Builder::Timestamp(x) => {
            let fields = scan(parts, 2)?;
            let secs = varint_field(&fields, 1, "seconds")? as i64;
            let nanos = varint_field(&fields, 2, "nanos")? as i32;
            let millis = secs
                .checked_mul(1_000)
                .and_then(|ms| ms.checked_add(i64::from(nanos).div_euclid(1_000_000)))
                .ok_or_else(|| Fail::other(format!("timestamp of {secs} s is out of range")))?;
            x.push(millis);
        }
        other => {
            return Err(Fail::other(format!(
                "{} is not a message type",
                other.kind().name()
            )))
        }
    }
    Ok(())
}

/// The days since 1970-01-01 of a `google.type.Date`; `None` for an empty one, which is
/// "no date".
fn date_days(parts: &[&[u8]]) -> Result<Option<i32>, Fail> {
    let fields = scan(parts, 3)?;
    let year = varint_field(&fields, 1, "year")? as i32;
    let month = varint_field(&fields, 2, "month")? as i32;
    let day = varint_field(&fields, 3, "day")? as i32;
    if (year, month, day) == (0, 0, 0) {
        return Ok(None);
    }
    let days = days_from_civil(year.into(), month, day)
        .ok_or_else(|| Fail::other(format!("invalid date {year}-{month}-{day}")))?;
    i32::try_from(days)
        .map(Some)
        .map_err(|_| Fail::other(format!("date {year}-{month}-{day} is out of range")))
}

/// Days since 1970-01-01 of a proleptic Gregorian date, if it is one.
fn days_from_civil(year: i64, month: i32, day: i32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Days past the month's end (31 February) do not come back as the same date.
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// The proleptic Gregorian date of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i32, i32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as i32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as i32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A big-endian two's complement integer, if it fits an `i128` (empty is 0).
fn unscaled_from_bytes(bytes: &[u8]) -> Option<i128> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xFF } else { 0x00 };
    let (extra, rest) = bytes.split_at(bytes.len().saturating_sub(16));
    // Bytes beyond 16 may only extend the sign, and the sign must survive the cut.
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
/// `BigInteger.toByteArray` writes them.
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

/// An unscaled value at scale `from` at the column's scale (HALF_UP, as ksqlDB rounds),
/// checked against its precision.
fn rescale(unscaled: i128, from: i32, precision: u8, scale: i8) -> Result<i128, String> {
    // In i64: the writer's scale comes off the wire, and `to - from` must not overflow.
    let (to, from) = (i64::from(scale), i64::from(from));
    let overflow = || {
        format!(
            "Numeric field overflow: A field with precision {precision} and scale {scale} \
             must round to an absolute value less than 10^{}",
            i32::from(precision) - i32::from(scale)
        )
    };
    let pow = |d: i64| u32::try_from(d).ok().and_then(|d| 10i128.checked_pow(d));
    let v = if to >= from {
        pow(to - from)
            .and_then(|f| unscaled.checked_mul(f))
            .ok_or_else(overflow)?
    } else {
        match pow(from - to) {
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

// ---------------------------------------------------------------------------------------
// Encoding

/// Encodes row `row` of the columns as a message (framed for PROTOBUF). Always a payload:
/// a row of defaults is an empty message, not a null record.
pub(super) fn encode_row(
    codec: &Codec,
    arrays: &[ArrayRef],
    row: usize,
) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(8 + 8 * arrays.len());
    if codec.kind == FormatKind::Protobuf {
        out.push(MAGIC);
        out.extend_from_slice(&UNREGISTERED_ID.to_be_bytes());
        // The message-index path [0], which Confluent writes as a single zero.
        out.push(0);
    }
    for (k, (a, c)) in arrays.iter().zip(&codec.columns).enumerate() {
        write_field(&mut out, field_number(k)?, a.as_ref(), row)
            .map_err(|e| format!("column `{}`: {e}", c.name))?;
    }
    Ok(Some(out))
}

fn field_number(index: usize) -> Result<u32, String> {
    u32::try_from(index + 1)
        .ok()
        .filter(|n| *n < 1 << 29)
        .ok_or_else(|| format!("{} fields are too many for a Protobuf message", index + 1))
}

fn wrong(dt: &DataType) -> String {
    format!("array does not match its type {dt}")
}

/// Appends field `no` holding `array[i]`: nothing for NULL and for scalar defaults (as
/// proto3 writes them), a repeated field for ARRAY and MAP.
fn write_field(out: &mut Vec<u8>, no: u32, array: &dyn Array, i: usize) -> Result<(), String> {
    if array.is_null(i) {
        return Ok(());
    }
    let dt = array.data_type();
    match dt {
        DataType::Boolean => {
            if array.as_boolean_opt().ok_or_else(|| wrong(dt))?.value(i) {
                put_tag(out, no, VARINT);
                put_varint(out, 1);
            }
        }
        DataType::Int32 => {
            let v = array
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            if v != 0 {
                put_tag(out, no, VARINT);
                // Negative int32 values are sign-extended to ten bytes, as protobuf does.
                put_varint(out, i64::from(v) as u64);
            }
        }
        DataType::Int64 => {
            let v = array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            if v != 0 {
                put_tag(out, no, VARINT);
                put_varint(out, v as u64);
            }
        }
        DataType::Float64 => {
            let v = array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            // -0.0 is not the default: proto3 compares the bits.
            if v.to_bits() != 0 {
                put_tag(out, no, FIXED64);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        DataType::Utf8 => {
            let v = array
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            if !v.is_empty() {
                put_len_delimited(out, no, v.as_bytes());
            }
        }
        DataType::Binary => {
            let v = array
                .as_binary_opt::<i32>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            if !v.is_empty() {
                put_len_delimited(out, no, v);
            }
        }
        DataType::List(_) => {
            let list = array.as_list_opt::<i32>().ok_or_else(|| wrong(dt))?;
            let offsets = list.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let items = list.values();
            if start == end {
                return Ok(());
            }
            if is_packable_type(items.data_type()) {
                let mut packed = Vec::with_capacity(8 * (end - start));
                for j in start..end {
                    write_packed(&mut packed, items.as_ref(), j)?;
                }
                put_len_delimited(out, no, &packed);
            } else {
                for j in start..end {
                    write_element(out, no, items.as_ref(), j)?;
                }
            }
        }
        DataType::Map(..) => {
            let map = array.as_map_opt().ok_or_else(|| wrong(dt))?;
            let offsets = map.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let (keys, values) = (map.keys(), map.values());
            let mut entry = Vec::new();
            for j in start..end {
                entry.clear();
                write_field(&mut entry, 1, keys.as_ref(), j)?;
                write_field(&mut entry, 2, values.as_ref(), j)?;
                put_len_delimited(out, no, &entry);
            }
        }
        _ => {
            let mut body = Vec::new();
            write_message(&mut body, array, i)?;
            put_len_delimited(out, no, &body);
        }
    }
    Ok(())
}

fn is_packable_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Boolean | DataType::Int32 | DataType::Int64 | DataType::Float64
    )
}

/// Appends `array[j]` to a packed run; NULL elements are the default (protobuf has none).
fn write_packed(out: &mut Vec<u8>, array: &dyn Array, j: usize) -> Result<(), String> {
    let dt = array.data_type();
    let null = array.is_null(j);
    match dt {
        DataType::Boolean => {
            let v = !null && array.as_boolean_opt().ok_or_else(|| wrong(dt))?.value(j);
            put_varint(out, v.into());
        }
        DataType::Int32 => {
            let a = array
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| wrong(dt))?;
            let v = if null { 0 } else { a.value(j) };
            put_varint(out, i64::from(v) as u64);
        }
        DataType::Int64 => {
            let a = array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(dt))?;
            put_varint(out, if null { 0 } else { a.value(j) as u64 });
        }
        DataType::Float64 => {
            let a = array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| wrong(dt))?;
            let v = if null { 0.0 } else { a.value(j) };
            out.extend_from_slice(&v.to_le_bytes());
        }
        other => return Err(format!("cannot pack Arrow type {other}")),
    }
    Ok(())
}

/// Appends one non-packed element of repeated field `no`. Unlike a singular field, an
/// element is written even when it is the default (or NULL, written as the default).
fn write_element(out: &mut Vec<u8>, no: u32, items: &dyn Array, j: usize) -> Result<(), String> {
    let dt = items.data_type();
    let mut body = Vec::new();
    match dt {
        DataType::Utf8 => {
            if !items.is_null(j) {
                let s = items.as_string_opt::<i32>().ok_or_else(|| wrong(dt))?;
                body.extend_from_slice(s.value(j).as_bytes());
            }
        }
        DataType::Binary => {
            if !items.is_null(j) {
                let s = items.as_binary_opt::<i32>().ok_or_else(|| wrong(dt))?;
                body.extend_from_slice(s.value(j));
            }
        }
        // A repeated field cannot hold another: the wrapper message's field 1 does.
        DataType::List(_) | DataType::Map(..) => write_field(&mut body, 1, items, j)?,
        _ => {
            if !items.is_null(j) {
                write_message(&mut body, items, j)?;
            }
        }
    }
    put_len_delimited(out, no, &body);
    Ok(())
}

/// Appends the fields of the message that non-null `array[i]` is: STRUCT, DECIMAL, DATE,
/// TIME or TIMESTAMP.
fn write_message(out: &mut Vec<u8>, array: &dyn Array, i: usize) -> Result<(), String> {
    let dt = array.data_type();
    let varint = |out: &mut Vec<u8>, no: u32, v: i64| {
        if v != 0 {
            put_tag(out, no, VARINT);
            put_varint(out, v as u64);
        }
    };
    match dt {
        DataType::Struct(fields) => {
            let s = array.as_struct_opt().ok_or_else(|| wrong(dt))?;
            for k in 0..fields.len() {
                write_field(out, field_number(k)?, s.column(k).as_ref(), i)?;
            }
        }
        DataType::Decimal128(_, scale) => {
            let v = array
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            // As Confluent's DecimalUtils writes a BigDecimal: its unscaled bytes, its own
            // precision (digits of the unscaled value, at least 1) and scale.
            put_len_delimited(out, 1, &unscaled_to_bytes(v));
            let digits = v.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1);
            varint(out, 2, digits.into());
            varint(out, 3, (*scale).into());
        }
        DataType::Date32 => {
            let days = array
                .as_primitive_opt::<Date32Type>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            let (y, m, d) = civil_from_days(days.into());
            varint(out, 1, y);
            varint(out, 2, m.into());
            varint(out, 3, d.into());
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            let ms = array
                .as_primitive_opt::<Time32MillisecondType>()
                .ok_or_else(|| wrong(dt))?
                .value(i)
                .rem_euclid(86_400_000);
            varint(out, 1, (ms / 3_600_000).into());
            varint(out, 2, (ms / 60_000 % 60).into());
            varint(out, 3, (ms / 1_000 % 60).into());
            varint(out, 4, (ms % 1_000 * 1_000_000).into());
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let ms = array
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| wrong(dt))?
                .value(i);
            varint(out, 1, ms.div_euclid(1_000));
            varint(out, 2, ms.rem_euclid(1_000) * 1_000_000);
        }
        other => return Err(format!("cannot write Arrow type {other} as Protobuf")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The tests' JSON form

/// A JSON codec over the same columns: the tests' JSON form of PROTOBUF records is what
/// JSON reads and writes (DECIMAL as a number, BYTES base64, DATE days, TIME and TIMESTAMP
/// milliseconds).
fn json_twin(codec: &Codec) -> Codec {
    Codec {
        kind: FormatKind::Json,
        ..codec.clone()
    }
}

/// See [`Codec::json_to_payload`]: the JSON value read as JSON would read it, then written
/// as Protobuf. Unlike [`Codec::encode`], a key of NULLs is a message (of defaults), as
/// ksqlDB's test driver writes it.
pub(super) fn json_to_payload(codec: &Codec, value: &serde_json::Value) -> Result<Option<Vec<u8>>> {
    let text = serde_json::to_vec(value).map_err(|e| codec.encode_err(e.to_string()))?;
    let decoded = json_twin(codec).decode(&[Some(&text)])?;
    if let Some(Some(e)) = decoded.errors.into_iter().next() {
        return Err(codec.encode_err(e.to_string()));
    }
    encode_row(codec, &decoded.columns, 0).map_err(|r| codec.encode_err(r))
}

/// See [`Codec::payload_to_json`]: the payload decoded, then written as JSON would write it.
pub(super) fn payload_to_json(codec: &Codec, bytes: &[u8]) -> Result<serde_json::Value> {
    let decoded = codec.decode(&[Some(bytes)])?;
    if let Some(Some(e)) = decoded.errors.into_iter().next() {
        return Err(e);
    }
    let twin = json_twin(codec);
    let text = super::json::encode_row(&twin, &decoded.columns, 0)
        .map_err(|r| codec.decode_err(r))?
        .unwrap_or_else(|| b"null".to_vec());
    serde_json::from_slice(&text)
        .map_err(|e| codec.decode_err(format!("cannot show the record as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use brook_planner::format::FormatSpec;
    use brook_planner::schema::{Column, Namespace};
    use brook_planner::types::NoTypes;
    use serde_json::json;

    use super::super::Part;
    use super::*;

    fn cols(decl: &[(&str, &str)]) -> Vec<Column> {
        decl.iter()
            .map(|(n, t)| {
                let ty = brook_sql::parse_type(t).expect("test type parses");
                Column::new(*n, ty, Namespace::Value)
            })
            .collect()
    }

    fn codec_of(kind: FormatKind, part: Part, decl: &[(&str, &str)]) -> Codec {
        Codec::new(&FormatSpec::new(kind), part, &cols(decl), &NoTypes).expect("codec builds")
    }

    fn nosr(decl: &[(&str, &str)]) -> Codec {
        codec_of(FormatKind::ProtobufNoSr, Part::Value, decl)
    }

    /// JSON → payload → JSON, which must give `back`.
    fn round_trip_to(c: &Codec, v: serde_json::Value, back: serde_json::Value) -> Vec<u8> {
        let payload = c.json_to_payload(&v).expect("encodes").expect("not null");
        let got = c.payload_to_json(Some(&payload)).expect("decodes");
        assert_eq!(got, back, "round trip of {v}");
        payload
    }

    fn round_trip(c: &Codec, v: serde_json::Value) -> Vec<u8> {
        round_trip_to(c, v.clone(), v)
    }

    fn body(c: &Codec, v: serde_json::Value) -> Vec<u8> {
        c.json_to_payload(&v).expect("encodes").expect("not null")
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
    fn every_type_round_trips_in_both_formats() {
        for kind in [FormatKind::Protobuf, FormatKind::ProtobufNoSr] {
            let c = codec_of(kind, Part::Value, ALL_TYPES);
            round_trip(
                &c,
                json!({
                    "B": true, "I": -7, "L": 998877665544332211i64, "D": 1.5, "DEC": 12.365,
                    "S": "héllo", "BY": "dmFyaWF0aW9ucw==", "T": 3_723_004, "DT": 19_782,
                    "TS": 1_700_000_000_123i64, "A": [1, 0, -3], "M": {"a": 1.1, "b": 0.0},
                    "ST": {"F0": 1, "lower": "x"},
                }),
            );
            // Extremes and values before the epoch.
            round_trip(
                &c,
                json!({
                    "B": false, "I": i32::MIN, "L": i64::MIN, "D": -0.25, "DEC": -99.9999,
                    "S": "", "BY": "", "T": 86_399_999, "DT": -719_162, "TS": -1,
                    "A": [i32::MAX], "M": {}, "ST": {"F0": 0, "lower": ""},
                }),
            );
        }
    }

    #[test]
    fn nested_types_round_trip() {
        let c = nosr(&[
            ("A", "ARRAY<STRUCT<X ARRAY<MAP<STRING, DECIMAL(4, 2)>>>>"),
            ("M", "MAP<STRING, ARRAY<STRUCT<Y STRUCT<Z BYTES>>>>"),
            ("AA", "ARRAY<ARRAY<STRING>>"),
            ("AM", "ARRAY<MAP<STRING, TIMESTAMP>>"),
            ("S", "STRUCT<D DATE, T TIME, N STRUCT<L BIGINT>>"),
        ]);
        round_trip(
            &c,
            json!({
                "A": [{"X": [{"k": 1.5, "n": 0.5}, {}]}, {"X": []}],
                "M": {"a": [{"Y": {"Z": "AAE="}}, {"Y": null}], "b": []},
                "AA": [["a", ""], [], ["b"]],
                "AM": [{"t": 5}, {}],
                "S": {"D": 0, "T": 0, "N": {"L": 3}},
            }),
        );
    }

    #[test]
    fn nulls_read_back_as_protobuf_defaults() {
        let c = nosr(ALL_TYPES);
        let nulls: serde_json::Map<_, _> = ALL_TYPES
            .iter()
            .map(|(n, _)| (n.to_string(), serde_json::Value::Null))
            .collect();
        let p = round_trip_to(
            &c,
            serde_json::Value::Object(nulls),
            // Scalars are their defaults, ARRAY and MAP empty, message types stay NULL.
            json!({
                "B": false, "I": 0, "L": 0, "D": 0.0, "DEC": null, "S": "", "BY": "",
                "T": null, "DT": null, "TS": null, "A": [], "M": {}, "ST": null,
            }),
        );
        assert!(p.is_empty(), "nothing written: {p:?}");
        // Inside structs and maps too; null array elements are written as defaults.
        let c = nosr(&[
            ("ST", "STRUCT<A INT, B STRING>"),
            ("M", "MAP<STRING, INT>"),
            ("A", "ARRAY<BIGINT>"),
            ("AS", "ARRAY<STRING>"),
            ("AD", "ARRAY<DATE>"),
        ]);
        round_trip_to(
            &c,
            json!({"ST": {}, "M": {"k": null}, "A": [1, null], "AS": [null], "AD": [null, 1]}),
            json!({"ST": {"A": 0, "B": ""}, "M": {"k": 0}, "A": [1, 0], "AS": [""],
                   "AD": [null, 1]}),
        );
    }

    #[test]
    fn keys_and_single_values_are_always_messages() {
        let key = codec_of(FormatKind::Protobuf, Part::Key, &[("K", "STRING")]);
        assert!(!key.is_unwrapped());
        let p = round_trip(&key, json!({"K": "foo"}));
        assert_eq!(p, b"\0\0\0\0\0\0\x0a\x03foo");
        // A key of NULLs is still a message, which reads back as defaults (qtt "STRUCT INT
        // - key - no inference").
        let key = codec_of(FormatKind::Protobuf, Part::Key, &[("F1", "INT")]);
        round_trip_to(&key, json!({"F1": null}), json!({"F1": 0}));
        let value = codec_of(FormatKind::ProtobufNoSr, Part::Value, &[("V", "INT")]);
        assert!(!value.is_unwrapped());
        round_trip(&value, json!({"V": 1}));
        let spec = FormatSpec {
            wrap_single_value: Some(false),
            ..FormatSpec::new(FormatKind::Protobuf)
        };
        let e = Codec::new(&spec, Part::Value, &cols(&[("V", "INT")]), &NoTypes).unwrap_err();
        assert!(
            e.to_string()
                .contains("Format 'PROTOBUF' does not support 'WRAP_SINGLE_VALUE' set to 'false'."),
            "{e}"
        );
        let spec = FormatSpec {
            wrap_single_value: Some(true),
            ..FormatSpec::new(FormatKind::Protobuf)
        };
        assert!(Codec::new(&spec, Part::Value, &cols(&[("V", "INT")]), &NoTypes).is_ok());
    }

    #[test]
    fn maps_need_string_keys() {
        for ty in ["MAP<INT, DOUBLE>", "ARRAY<STRUCT<M MAP<BIGINT, STRING>>>"] {
            let spec = FormatSpec::new(FormatKind::Protobuf);
            let e = Codec::new(&spec, Part::Value, &cols(&[("M", ty)]), &NoTypes)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("PROTOBUF format only supports MAP types with STRING keys"),
                "{ty}: {e}"
            );
        }
    }

    #[test]
    fn wire_bytes_are_protobufs() {
        // The examples of the protobuf encoding guide: 150 in field 1, "testing" in field
        // 2, packed [3, 270, 86942] in field 4.
        let c = nosr(&[
            ("A", "INT"),
            ("B", "STRING"),
            ("C", "BOOLEAN"),
            ("D", "ARRAY<INT>"),
        ]);
        assert_eq!(
            body(
                &c,
                json!({"A": 150, "B": "testing", "C": true, "D": [3, 270, 86942]})
            ),
            b"\x08\x96\x01\x12\x07testing\x18\x01\x22\x06\x03\x8e\x02\x9e\xa7\x05"
        );
        // Negative int32 values take ten bytes; doubles are little-endian fixed64.
        let c = nosr(&[("I", "INT"), ("D", "DOUBLE"), ("S", "ARRAY<STRING>")]);
        assert_eq!(
            body(&c, json!({"I": -1, "D": 1.0, "S": ["", "a"]})),
            [
                &[0x08][..],
                &[0xFF; 9],
                &[0x01, 0x11],
                &1.0f64.to_le_bytes(),
                // Repeated strings are written even when empty.
                b"\x1a\x00\x1a\x01a",
            ]
            .concat()
        );
        // DECIMAL(4, 2) 12.34: unscaled 1234 = 0x04D2, precision 4, scale 2.
        let c = nosr(&[("D", "DECIMAL(4, 2)")]);
        assert_eq!(
            body(&c, json!({"D": 12.34})),
            b"\x0a\x08\x0a\x02\x04\xd2\x10\x04\x18\x02"
        );
        // -0.05: unscaled -5 = 0xFB, precision 1.
        assert_eq!(
            body(&c, json!({"D": -0.05})),
            b"\x0a\x07\x0a\x01\xfb\x10\x01\x18\x02"
        );
        // 2024-02-29 is day 19782: year 2024 = varint E8 0F.
        let c = nosr(&[("D", "DATE"), ("T", "TIME"), ("TS", "TIMESTAMP")]);
        assert_eq!(
            body(&c, json!({"D": 19_782, "T": 3_723_004, "TS": 1_500})),
            [
                &b"\x0a\x07\x08\xe8\x0f\x10\x02\x18\x1d"[..],
                // 01:02:03.004: nanos 4,000,000 = varint 80 92 F4 01.
                b"\x12\x0b\x08\x01\x10\x02\x18\x03\x20\x80\x92\xf4\x01",
                // 1.5 s: seconds 1, nanos 500,000,000 = varint 80 CA B5 EE 01.
                b"\x1a\x08\x08\x01\x10\x80\xca\xb5\xee\x01",
            ]
            .concat()
        );
        // Maps are repeated key/value entry messages; structs nested messages.
        let c = nosr(&[("M", "MAP<STRING, INT>"), ("S", "STRUCT<X INT, Y STRING>")]);
        assert_eq!(
            body(&c, json!({"M": {"a": 1, "b": 0}, "S": {"X": 2, "Y": ""}})),
            b"\x0a\x05\x0a\x01a\x10\x01\x0a\x03\x0a\x01b\x12\x02\x08\x02"
        );
        // Schema Registry framing: magic, id, message-index path [0].
        let c = codec_of(FormatKind::Protobuf, Part::Value, &[("A", "INT")]);
        assert_eq!(body(&c, json!({"A": 150})), b"\0\0\0\0\0\0\x08\x96\x01");
    }

    fn decode_one(c: &Codec, payload: &[u8]) -> std::result::Result<serde_json::Value, String> {
        c.payload_to_json(Some(payload)).map_err(|e| e.to_string())
    }

    #[test]
    fn other_writers_payloads_read_as_protobuf_reads_them() {
        let c = nosr(&[
            ("I", "INT"),
            ("A", "ARRAY<INT>"),
            ("M", "MAP<STRING, STRING>"),
            ("S", "STRUCT<X INT, Y INT>"),
            ("D", "DOUBLE"),
        ]);
        let payload = [
            // Unknown fields of every wire type are skipped.
            &b"\x30\x05\x39\x01\x02\x03\x04\x05\x06\x07\x08\x42\x01z\x4d\x01\x02\x03\x04"[..],
            // Unpacked repeated ints, then a packed run: both read.
            b"\x10\x01\x10\x02\x12\x02\x03\x04",
            // Fields out of order, and a repeated singular field: the last wins.
            b"\x08\x01\x08\x07",
            // Duplicate map keys: the last wins.
            b"\x1a\x06\x0a\x01k\x12\x01a\x1a\x06\x0a\x01k\x12\x01b",
            // A singular message twice merges.
            b"\x22\x02\x08\x01\x22\x02\x10\x02",
            // A float where a DOUBLE is expected.
            b"\x2d",
            &1.5f32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(
            decode_one(&c, &payload).unwrap(),
            json!({"I": 7, "A": [1, 2, 3, 4], "M": {"k": "b"}, "S": {"X": 1, "Y": 2}, "D": 1.5})
        );
        // A message-index path other than [0] is accepted (fields are read by number).
        let c = codec_of(FormatKind::Protobuf, Part::Value, &[("I", "INT")]);
        assert_eq!(
            decode_one(&c, b"\0\0\0\0\x07\x04\x02\x04\x08\x05").unwrap(),
            json!({"I": 5})
        );
        // A decimal at another scale is rescaled, rounding half up.
        let c = nosr(&[("D", "DECIMAL(5, 2)")]);
        assert_eq!(
            decode_one(&c, b"\x0a\x06\x0a\x02\x30\x39\x18\x03").unwrap(),
            json!({"D": 12.35})
        );
    }

    #[test]
    fn malformed_payloads_are_errors_naming_the_cause() {
        let c = nosr(&[
            ("I", "INT"),
            ("S", "STRING"),
            ("D", "DATE"),
            ("T", "TIME"),
            ("A", "ARRAY<BIGINT>"),
        ]);
        let cases: &[(&[u8], &str)] = &[
            (b"\x08", "truncated varint at byte 1"),
            (
                b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
                "longer than 64 bits",
            ),
            (b"\x12\x05ab", "5 bytes needed at byte 2 but only 2 left"),
            (b"\x0b", "a group (wire type 3/4)"),
            (b"\x00\x01", "field number 0"),
            (
                b"\x0a\x01a",
                "expected wire type 0 (varint) for an INTEGER for column `I`, \
                 found wire type 2 (length-delimited)",
            ),
            (
                b"\x12\x02\xc3\x28",
                "column `S`: invalid UTF-8 in a string at byte 0",
            ),
            (
                b"\x1a\x05\x08\xe8\x0f\x10\x0d",
                "column `D`: invalid date 2024-13-0",
            ),
            (
                b"\x1a\x07\x08\xe8\x0f\x10\x02\x18\x1e",
                "invalid date 2024-2-30",
            ),
            (
                b"\x22\x02\x08\x18",
                "column `T`: invalid time of day 24:0:0",
            ),
            (
                b"\x1a\x01\x08",
                "column `D`: invalid Protobuf data: truncated varint",
            ),
            (
                b"\x2a\x01\x80",
                "column `A`[0]: invalid packed repeated field",
            ),
            (b"\x18\x01", "found wire type 0 (varint)"),
        ];
        let payloads: Vec<Option<&[u8]>> = cases.iter().map(|(p, _)| Some(*p)).collect();
        let d = c.decode(&payloads).unwrap();
        for (i, (_, cause)) in cases.iter().enumerate() {
            let e = d.errors[i]
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.starts_with("PROTOBUF_NOSR value: ") && e.contains(cause),
                "case {i}: {e}"
            );
            assert!(d.columns.iter().all(|a| a.is_null(i)), "case {i}");
        }
        let sr = codec_of(FormatKind::Protobuf, Part::Key, &[("K", "INT")]);
        for (p, cause) in [
            (&b""[..], "shorter than the 6-byte Schema Registry header"),
            (b"\x08\x96\x01", "shorter than the 6-byte"),
            (b"\x01\0\0\0\0\0\x08\x01", "Unknown magic byte 1"),
            (b"\0\0\0\0\0\x01", "invalid message-index path: -1 indexes"),
            (
                b"\0\0\0\0\0\x04\x02",
                "invalid message-index path: truncated varint",
            ),
        ] {
            let e = decode_one(&sr, p).unwrap_err();
            assert!(e.starts_with("PROTOBUF key: ") && e.contains(cause), "{e}");
        }
    }

    #[test]
    fn values_that_do_not_fit_are_errors() {
        let c = nosr(&[("D", "DECIMAL(3, 1)")]);
        let e = decode_one(&c, b"\x0a\x04\x0a\x02\x27\x10").unwrap_err();
        assert!(e.contains("Numeric field overflow"), "{e}");
        let e = decode_one(&c, &[&b"\x0a\x13\x0a\x11"[..], &[0x7F; 17]].concat()).unwrap_err();
        assert!(e.contains("decimal of 17 bytes is too large"), "{e}");
        // A writer scale of i32::MIN (scale = 3, as a sign-extended varint): 1 - i32::MIN
        // overflowed an i32 (a panic in debug builds); it is a value too large instead.
        let min_scale = [
            &b"\x0a\x0e\x0a\x01\x01\x18"[..],
            &[0x80, 0x80, 0x80, 0x80, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ]
        .concat();
        let e = decode_one(&c, &min_scale).unwrap_err();
        assert!(e.contains("Numeric field overflow"), "{e}");
        // The largest scale leaves nothing of the value.
        let max_scale = [
            &b"\x0a\x09\x0a\x01\x01\x18"[..],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0x07],
        ]
        .concat();
        assert_eq!(
            decode_one(&c, &max_scale).unwrap(),
            serde_json::json!({"D": 0.0})
        );
    }

    #[test]
    fn dates_convert_exactly() {
        for days in [-719_162i64, -1, 0, 59, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 0, 1), None);
        for v in [0i128, 1, -1, 127, 128, -128, -129, i128::MAX, i128::MIN] {
            assert_eq!(unscaled_from_bytes(&unscaled_to_bytes(v)), Some(v), "{v}");
        }
        assert_eq!(unscaled_from_bytes(&[]), Some(0));
    }
}

//! ksqlDB's CAST where Arrow's cast disagrees with it: integers narrow the way Java's
//! `intValue()` does (wrapping, not failing), a value too wide for a DECIMAL becomes
//! NULL, structs convert field by field by name (fields the source lacks are NULL), maps
//! and structs become text the way their Java `toString` writes them, and text is read
//! with the Java parsers ksqlDB's CastEvaluator calls (see [`cast_text`]).

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array,
    Float64Array, Int32Array, Int64Array, ListArray, MapArray, StringBuilder, StructArray,
    Time32MillisecondArray, TimestampMillisecondArray,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
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
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, t) => text_target(t),
        (f, DataType::Decimal128(..)) => f.is_numeric(),
        (DataType::List(_) | DataType::Map(..) | DataType::Struct(_), _) => true,
        _ => false,
    }
}

/// The types ksqlDB's CAST reads text as (CastEvaluator's rows from STRING).
fn text_target(to: &DataType) -> bool {
    matches!(
        to,
        DataType::Boolean
            | DataType::Int32
            | DataType::Int64
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Date32
            | DataType::Time32(TimeUnit::Millisecond)
            | DataType::Timestamp(TimeUnit::Millisecond, _)
    )
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
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, t) if text_target(t) => {
            cast_text(a, t)?
        }
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

/// Reads every row of the text array `a` as `to` (one of [`text_target`]) the way
/// ksqlDB's CastEvaluator does: the text is trimmed as Java's `String.trim` trims, then
/// read by `Integer.parseInt`, `Long.parseLong`, `SqlDoubles.parseDouble`,
/// `DecimalUtil.cast`, `SqlBooleans.parseBoolean`, `SqlTimeTypes.parseDate`, `parseTime`
/// or `parseTimestamp`. Where ksqlDB's parser throws, this fails for the whole batch with
/// the value and the type; the runtime then finds the failing rows, gives each NULL and a
/// processing-log entry, as ksqlDB does for an expression that throws. NULL stays NULL.
fn cast_text(a: &ArrayRef, to: &DataType) -> DfResult<ArrayRef> {
    let utf8;
    let text = match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>(),
        _ => {
            utf8 = arrow_cast(a, &DataType::Utf8, false)?;
            utf8.as_string::<i32>()
        }
    };
    let rows = text.iter().map(|v| v.map(java_trim));
    Ok(match to {
        // ksqlDB's BOOLEAN never fails: what is not `true` is `false`.
        DataType::Boolean => Arc::new(rows.map(|v| v.map(java_boolean)).collect::<BooleanArray>()),
        DataType::Int32 => Arc::new(
            each(rows, to, |t| {
                java_integer(t)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| for_input_string(t))
            })
            .collect::<DfResult<Int32Array>>()?,
        ),
        DataType::Int64 => Arc::new(
            each(rows, to, |t| {
                java_integer(t)
                    .and_then(|v| i64::try_from(v).ok())
                    .ok_or_else(|| for_input_string(t))
            })
            .collect::<DfResult<Int64Array>>()?,
        ),
        DataType::Float64 => {
            Arc::new(each(rows, to, ksql_double).collect::<DfResult<Float64Array>>()?)
        }
        DataType::Decimal128(p, s) => Arc::new(
            each(rows, to, |t| java_decimal(t, *p, *s))
                .collect::<DfResult<Decimal128Array>>()?
                .with_precision_and_scale(*p, *s)?,
        ),
        DataType::Date32 => Arc::new(
            each(rows, to, |t| {
                iso_date_days(&complete_date(t)).ok_or_else(|| {
                    format!(
                        "Text '{t}' could not be parsed. Required format is: \"yyyy-MM-dd\", \
                         for example '2020-05-26'. Partials are also supported, for example \
                         '2020-05'"
                    )
                })
            })
            .collect::<DfResult<Date32Array>>()?,
        ),
        DataType::Time32(TimeUnit::Millisecond) => Arc::new(
            each(rows, to, |t| {
                iso_time_millis(t).ok_or_else(|| {
                    format!(
                        "Text '{t}' could not be parsed. Required format is: \"HH:mm:ss.SSS\", \
                         for example: '01:34:20.123' or '01:34:20'. Partials are also \
                         supported, for example '01:34'"
                    )
                })
            })
            .collect::<DfResult<Time32MillisecondArray>>()?,
        ),
        DataType::Timestamp(TimeUnit::Millisecond, zone) => Arc::new(
            each(rows, to, |t| {
                super::datetime::partial_timestamp_millis(t).ok_or_else(|| {
                    "Required format is: \"yyyy-MM-dd'T'HH:mm:ss.SSS\", with an optional \
                     numeric 4-digit timezone, for example: '2020-05-26T23:59:58.000' or with \
                     tz: '2020-05-26T23:59:58.000+0200'. A trailing 'Z' instead of tz \
                     indicates the zero UTC offset. Partials are also supported, for example \
                     \"2020-05-26\""
                        .to_string()
                })
            })
            .collect::<DfResult<TimestampMillisecondArray>>()?
            .with_timezone_opt(zone.clone()),
        ),
        other => {
            return Err(exec_err(format!(
                "Cast of STRING to {other} is not supported"
            )))
        }
    })
}

/// Each row of `rows` read by `read`; a text it refuses is the batch's error.
fn each<'a, T: 'a>(
    rows: impl Iterator<Item = Option<&'a str>> + 'a,
    to: &'a DataType,
    read: impl Fn(&str) -> Result<T, String> + 'a,
) -> impl Iterator<Item = DfResult<Option<T>>> + 'a {
    rows.map(move |v| {
        v.map(|t| read(t).map_err(|why| cast_failed(t, to, &why)))
            .transpose()
    })
}

/// The error for text ksqlDB's CAST throws on, naming the text and the type as ksqlDB's
/// parsers do (`Failed to parse date '…'`), with the parser's own reason.
fn cast_failed(text: &str, to: &DataType, why: &str) -> DataFusionError {
    let name = match to {
        DataType::Int32 => "INTEGER".to_string(),
        DataType::Int64 => "BIGINT".to_string(),
        DataType::Float64 => "DOUBLE".to_string(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Date32 => "DATE".to_string(),
        DataType::Time32(_) => "TIME".to_string(),
        DataType::Timestamp(..) => "TIMESTAMP".to_string(),
        other => other.to_string(),
    };
    match to {
        DataType::Date32 | DataType::Time32(_) | DataType::Timestamp(..) => exec_err(format!(
            "Failed to parse {} '{text}': {why}",
            name.to_lowercase()
        )),
        _ => exec_err(format!("Failed to cast '{text}' to {name}: {why}")),
    }
}

/// Java's `NumberFormatException.forInputString`.
fn for_input_string(text: &str) -> String {
    format!("For input string: \"{text}\"")
}

/// Java's `String.trim`: strips every character up to U+0020 from both ends (control
/// characters included, Unicode spaces such as U+00A0 not).
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// `Integer.parseInt` / `Long.parseLong` before the range check: an optional sign, then
/// one or more digits, nothing else. `None` when it does not read (or exceeds i128).
fn java_integer(t: &str) -> Option<i128> {
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(if negative { -v } else { v })
}

/// `SqlBooleans.parseBoolean`: true for a non-empty, case-insensitive prefix of `true`
/// or `yes` (`t`, `Tru`, `Y`), false for anything else.
fn java_boolean(t: &str) -> bool {
    // Java's `equalsIgnoreCase`, one character at a time: equal, or equal upper-cased,
    // or equal lower-cased after that.
    fn same(a: char, b: char) -> bool {
        let upper = |c: char| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        };
        let lower = |c: char| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        };
        a == b || upper(a) == upper(b) || lower(upper(a)) == lower(upper(b))
    }
    let prefix_of = |word: &str| {
        t.chars().count() <= word.len() && t.chars().zip(word.chars()).all(|(a, b)| same(a, b))
    };
    !t.is_empty() && (prefix_of("true") || prefix_of("yes"))
}

/// `SqlDoubles.parseDouble`: Java's `Double.parseDouble` (decimal or hexadecimal, with an
/// optional `d`/`f` suffix), rejecting infinities and NaN, a value too large included.
fn ksql_double(t: &str) -> Result<f64, String> {
    if t.is_empty() {
        return Err("empty String".into());
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if matches!(unsigned, "Infinity" | "NaN") {
        return Err(format!("Invalid double value: {t}"));
    }
    let body = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    let v = if unsigned.starts_with("0x") || unsigned.starts_with("0X") {
        java_hex_double(body)
    } else if body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        // Within these characters Rust's grammar for a float is Java's.
        body.parse::<f64>().ok()
    } else {
        None
    };
    match v {
        Some(v) if v.is_finite() => Ok(v),
        Some(_) => Err(format!("Invalid double value: {t}")),
        None => Err(for_input_string(t)),
    }
}

/// A Java hexadecimal floating-point literal: `[sign]0x<hex digits>[.<hex digits>]p[sign]<digits>`.
fn java_hex_double(t: &str) -> Option<f64> {
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let rest = rest.get(2..)?;
    let (mantissa, exponent) = rest.split_once(['p', 'P'])?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let exponent: i64 = {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Beyond any double's range either way: keep the sign, bound the size.
        exponent
            .parse::<i64>()
            .unwrap_or(if exponent.starts_with('-') {
                -100_000
            } else {
                100_000
            })
    };
    // The first 16 significant hex digits (64 bits); a later nonzero digit only marks the
    // value as above them (the lowest bit, so that rounding to 53 bits sees it).
    let mut bits: u64 = 0;
    let mut taken = 0u32;
    let mut sticky = false;
    let mut scale: i64 = 0;
    for (c, in_fraction) in whole
        .chars()
        .map(|c| (c, false))
        .chain(fraction.chars().map(|c| (c, true)))
    {
        let d = u64::from(c.to_digit(16)?);
        if taken == 0 && d == 0 {
            if in_fraction {
                scale -= 4;
            }
            continue;
        }
        if taken < 16 {
            bits = bits << 4 | d;
            taken += 1;
            if in_fraction {
                scale -= 4;
            }
        } else {
            sticky |= d != 0;
            if !in_fraction {
                scale += 4;
            }
        }
    }
    if sticky {
        bits |= 1;
    }
    let power = (exponent + scale).clamp(-2_000, 2_000) as i32;
    // Two steps, so that neither factor underflows or overflows on its own.
    let half = power / 2;
    let v = bits as f64 * 2f64.powi(half) * 2f64.powi(power - half);
    Some(if negative { -v } else { v })
}

/// `DecimalUtil.cast(String, precision, scale)`: `new BigDecimal(text)` (an optional
/// sign, digits with an optional point, an optional exponent), failing when its absolute
/// value is not below `10^(precision - scale)`, then rounded half up to `scale`. The
/// unscaled value.
fn java_decimal(t: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let not_a_number = || format!("Character array is not a decimal number: \"{t}\"");
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_a_number());
            }
            // BigDecimal's exponent is an int.
            (
                m,
                e.parse::<i32>()
                    .map_err(|_| "Exponent overflow.".to_string())?,
            )
        }
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(not_a_number());
    }
    // value = 0.<digits> × 10^point, the digits without leading zeros.
    let all: String = whole.chars().chain(fraction.chars()).collect();
    let digits = all.trim_start_matches('0');
    let point = digits.len() as i64 - fraction.len() as i64 + i64::from(exponent);
    let whole_digits = i64::from(precision) - i64::from(scale);
    let overflow = || {
        let sign = if negative { "-" } else { "" };
        format!(
            "Numeric field overflow: A field with precision {precision} and scale {scale} \
             must round to an absolute value less than 10^{whole_digits}. Got {sign}{}",
            plain(digits, point)
        )
    };
    if digits.is_empty() {
        return Ok(0);
    }
    if point > whole_digits {
        return Err(overflow());
    }
    // unscaled = 0.<digits> × 10^shift: the first `shift` digits (zeros past the end),
    // plus one when the next digit is 5 or more (HALF_UP). With no overflow, shift is
    // at most the precision, so this fits. A negative shift leaves 0, the next digit a
    // zero.
    let shift = point + i64::from(scale);
    let digit = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.as_bytes().get(i))
            .map_or(0, |b| b - b'0')
    };
    let mut unscaled: i128 = 0;
    for i in 0..shift.max(0) {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|u| u.checked_add(i128::from(digit(i))))
            .ok_or_else(overflow)?;
    }
    if digit(shift) >= 5 {
        unscaled = unscaled.checked_add(1).ok_or_else(overflow)?;
    }
    // Rounding up can reach 10^(precision - scale), which the type cannot hold.
    if 10i128
        .checked_pow(u32::from(precision))
        .is_some_and(|limit| unscaled >= limit)
    {
        return Err(overflow());
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// `digits × 10^(point - len)` written out as BigDecimal's `toPlainString` does.
fn plain(digits: &str, point: i64) -> String {
    if digits.is_empty() {
        return "0".into();
    }
    let len = digits.len() as i64;
    if point >= len {
        format!("{digits}{}", "0".repeat((point - len) as usize))
    } else if point > 0 {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    }
}

/// `PartialStringToTimestampParser.completeDate`: a year alone is its first of January,
/// a year and month the month's first day. (`String.split` drops trailing empty parts.)
fn complete_date(t: &str) -> String {
    let mut parts: Vec<&str> = t.split('-').collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    match parts.len() {
        1 => format!("{t}-01-01"),
        2 => format!("{t}-01"),
        _ => t.to_string(),
    }
}

/// `LocalDate.parse` (ISO_LOCAL_DATE, strict): a four-digit year (more digits only after
/// `+`, a `-` for years before 1), two-digit month and day, a day the month has. Days
/// since 1970-01-01; `None` also for a date beyond what DATE holds.
fn iso_date_days(t: &str) -> Option<i32> {
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (Some(1), &t[1..]),
        Some(b'-') => (Some(-1), &t[1..]),
        _ => (None, t),
    };
    let year_len = rest.bytes().take_while(u8::is_ascii_digit).count().min(10);
    let year: i64 = rest[..year_len].parse().ok()?;
    let sign_ok = match sign {
        None => year_len == 4,
        Some(1) => year_len > 4,
        // Java refuses a negative zero.
        _ => year_len >= 4 && year != 0,
    };
    if !sign_ok {
        return None;
    }
    let year = year * sign.unwrap_or(1);
    let md = &rest.as_bytes()[year_len..];
    let two = |at: usize| -> Option<u32> {
        let (a, b) = (md.get(at)?, md.get(at + 1)?);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| u32::from((a - b'0') * 10 + (b - b'0')))
    };
    if md.len() != 6 || md[0] != b'-' || md[3] != b'-' {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, two(1)?, two(4)?)?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(date.signed_duration_since(epoch).num_days()).ok()
}

/// `LocalTime.parse` (ISO_LOCAL_TIME, strict): `HH:mm`, optionally `:ss`, optionally
/// `.` and up to nine digits of fraction; milliseconds of the day (the fraction
/// truncated, as ksqlDB's `toNanoOfDay() / 1000000`).
fn iso_time_millis(t: &str) -> Option<i32> {
    let b = t.as_bytes();
    let two = |at: usize| -> Option<u32> {
        let (x, y) = (b.get(at)?, b.get(at + 1)?);
        (x.is_ascii_digit() && y.is_ascii_digit()).then(|| u32::from((x - b'0') * 10 + (y - b'0')))
    };
    let hour = two(0)?;
    if b.get(2) != Some(&b':') {
        return None;
    }
    let minute = two(3)?;
    let (mut second, mut nanos) = (0, 0);
    if b.len() > 5 {
        if b[5] != b':' {
            return None;
        }
        second = two(6)?;
        if b.len() > 8 {
            if b[8] != b'.' {
                return None;
            }
            // Java's fraction takes zero to nine digits after the point.
            let fraction = &t[9..];
            if fraction.len() > 9 || !fraction.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            nanos = format!("{fraction:0<9}").parse::<u32>().ok()?;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    i32::try_from((hour * 3600 + minute * 60 + second) * 1000 + nanos / 1_000_000).ok()
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

    /// `CAST` of each text to `to`: the values, or the error's text.
    fn read(to: &str, texts: &[Option<&str>]) -> Result<ArrayRef, String> {
        let a: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
        cast_array(&a, &ty(to)).map_err(|e| e.to_string())
    }

    /// One text that ksqlDB's CAST throws on: the batch fails, naming it and the type.
    fn refused(to: &str, text: &str) -> String {
        match read(to, &[None, Some(text)]) {
            Ok(a) => panic!("{text:?} as {to} read as {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn text_to_integers_as_java_parses_them() {
        for to in [
            "INT",
            "BIGINT",
            "DOUBLE",
            "DECIMAL(2, 1)",
            "BOOLEAN",
            "DATE",
            "TIME",
            "TIMESTAMP",
        ] {
            assert!(needs_ksql_cast(&DataType::Utf8, &ty(to)), "{to}");
        }
        let out = read(
            "INT",
            &[
                Some(" 42 "),
                Some("+7"),
                Some("-2147483648"),
                Some("\t5\n"),
                None,
            ],
        )
        .unwrap();
        let out = out.as_primitive::<Int32Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(42), Some(7), Some(i32::MIN), Some(5), None]
        );
        for bad in [
            "abc",
            "",
            "1.0",
            "2147483648",
            "+",
            "1 2",
            "\u{a0}5",
            "0x10",
        ] {
            let e = refused("INT", bad);
            assert!(
                e.contains(&format!("'{}' to INTEGER", java_trim(bad))),
                "{e}"
            );
            assert!(e.contains("For input string"), "{e}");
        }
        let out = read("BIGINT", &[Some("9223372036854775807"), Some("-0")]).unwrap();
        assert_eq!(
            out.as_primitive::<Int64Type>().values().to_vec(),
            vec![i64::MAX, 0]
        );
        assert!(refused("BIGINT", "9223372036854775808").contains("to BIGINT"));
    }

    #[test]
    fn text_to_double_as_java_parses_it() {
        let texts = [
            " 1.5 ", "-2e3", "1.5d", "2F", ".5", "5.", "0x1p3", "-0x1.8P1", "1e-400",
        ];
        let out = read("DOUBLE", &texts.map(Some)).unwrap();
        assert_eq!(
            out.as_primitive::<Float64Type>().values().to_vec(),
            vec![1.5, -2000.0, 1.5, 2.0, 0.5, 5.0, 8.0, -3.0, 0.0]
        );
        for (bad, why) in [
            ("abc", "For input string: \"abc\""),
            ("", "empty String"),
            ("NaN", "Invalid double value: NaN"),
            ("-Infinity", "Invalid double value: -Infinity"),
            ("1e400", "Invalid double value: 1e400"),
            ("inf", "For input string"),
            ("1.5dd", "For input string"),
            ("0x10", "For input string"),
        ] {
            let e = refused("DOUBLE", bad);
            assert!(e.contains(&format!("'{bad}' to DOUBLE: {why}")), "{e}");
        }
    }

    #[test]
    fn text_to_decimal_rounds_half_up_and_refuses_overflow() {
        let texts = [
            "0.99", "0.05", "-0.05", "1E-1", " 9.94 ", "0.04", "-0", "0e99999",
        ];
        let out = read("DECIMAL(2, 1)", &texts.map(Some)).unwrap();
        assert_eq!(out.data_type(), &DataType::Decimal128(2, 1));
        assert_eq!(
            out.as_primitive::<Decimal128Type>().values().to_vec(),
            vec![10, 1, -1, 1, 99, 0, 0, 0]
        );
        let out = read("DECIMAL(6, 2)", &[Some("1.5e2"), Some("-12.345")]).unwrap();
        assert_eq!(
            out.as_primitive::<Decimal128Type>().values().to_vec(),
            vec![15000, -1235]
        );
        let e = refused("DECIMAL(2, 1)", "10");
        assert!(
            e.contains(
                "'10' to DECIMAL(2, 1): Numeric field overflow: A field with precision 2 and \
                 scale 1 must round to an absolute value less than 10^1. Got 10"
            ),
            "{e}"
        );
        assert!(refused("DECIMAL(2, 1)", "-1.2E1").contains("Got -12"));
        // 9.99 rounds to 10.0, which DECIMAL(2, 1) cannot hold.
        assert!(refused("DECIMAL(2, 1)", "9.99").contains("overflow"));
        for bad in ["abc", "", ".", "1e", "1.5d", "0x1", "1,5"] {
            assert!(refused("DECIMAL(2, 1)", bad).contains("to DECIMAL(2, 1)"));
        }
    }

    #[test]
    fn text_to_boolean_is_never_refused() {
        let texts = [
            "true", "T", " yes ", "Y", "tRu", "ye", "", "truex", "1", "abc", "no", "false",
        ];
        let out = read("BOOLEAN", &texts.map(Some)).unwrap();
        let got: Vec<bool> = out.as_boolean().iter().map(|v| v.unwrap()).collect();
        let want = [
            true, true, true, true, true, true, false, false, false, false, false, false,
        ];
        assert_eq!(got, want);
        assert!(read("BOOLEAN", &[None]).unwrap().is_null(0));
    }

    #[test]
    fn text_to_date_time_and_timestamp_as_ksqldb_parses_them() {
        let out = read(
            "DATE",
            &[
                Some("2020-05-26"),
                Some("2020-05"),
                Some(" 2020 "),
                Some("1969-12-31"),
                Some("+12020-01-01"),
            ],
        )
        .unwrap();
        let days = out.as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(days.values()[..4].to_vec(), vec![18408, 18383, 18262, -1]);
        for bad in [
            "2020-02-30",
            "20-05-26",
            "2020-5-26",
            "12020-01-01",
            "2020-",
            "abc",
            "",
            "2020-05-26T00:00",
        ] {
            let e = refused("DATE", bad);
            assert!(e.contains(&format!("Failed to parse date '{bad}'")), "{e}");
        }

        let out = read(
            "TIME",
            &[
                Some("01:34:20.123"),
                Some("01:34"),
                Some("01:34:20"),
                Some("23:59:59.999999999"),
                Some("00:00:00."),
            ],
        )
        .unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Time32MillisecondType>()
                .values()
                .to_vec(),
            vec![5_660_123, 5_640_000, 5_660_000, 86_399_999, 0]
        );
        for bad in [
            "24:00",
            "1:34",
            "01:60",
            "01:34:20.1234567890",
            "01:34:",
            "abc",
            "",
        ] {
            let e = refused("TIME", bad);
            assert!(e.contains(&format!("Failed to parse time '{bad}'")), "{e}");
        }

        let out = read(
            "TIMESTAMP",
            &[
                Some("2022-04-28T21:44:47.943Z"),
                Some(" 2022-04-28T21:44:47.943 "),
            ],
        )
        .unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                .values()
                .to_vec(),
            vec![1651182287943, 1651182287943]
        );
        let e = refused("TIMESTAMP", "abc");
        assert!(e.contains("Failed to parse timestamp 'abc'"), "{e}");
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

//! The row-level implementations behind [`super::compile`]. Each builds a DataFusion
//! expression over already-typed arguments (the compiler casts them first).

use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, MapBuilder, MapFieldNames, StringBuilder};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimestampMillisecondType,
};
use base64::Engine;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, Volatility};
use regex::Regex;

use super::json::{self, Json};
use crate::functions::udf::{call_array, call_rows, call_strict, call_strict_bounded, exec_err};
use crate::limits::{too_large, MAX_VALUE_BYTES};

type Sv = ScalarValue;

fn s(v: &Sv) -> Option<&str> {
    match v {
        Sv::Utf8(Some(s)) | Sv::LargeUtf8(Some(s)) | Sv::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

fn i(v: &Sv) -> Option<i64> {
    match v {
        Sv::Int8(Some(x)) => Some(*x as i64),
        Sv::Int16(Some(x)) => Some(*x as i64),
        Sv::Int32(Some(x)) => Some(*x as i64),
        Sv::Int64(Some(x)) => Some(*x),
        _ => None,
    }
}

fn d(v: &Sv) -> Option<f64> {
    match v {
        Sv::Float64(Some(x)) => Some(*x),
        Sv::Float32(Some(x)) => Some(*x as f64),
        other => i(other).map(|x| x as f64),
    }
}

fn b(v: &Sv) -> Option<&[u8]> {
    match v {
        Sv::Binary(Some(b)) | Sv::LargeBinary(Some(b)) | Sv::BinaryView(Some(b)) => Some(b),
        Sv::FixedSizeBinary(_, Some(b)) => Some(b),
        _ => None,
    }
}

fn out_s(x: impl Into<String>) -> Sv {
    Sv::Utf8(Some(x.into()))
}

fn out_i(x: i64) -> Sv {
    Sv::Int32(Some(x as i32))
}

/// A string or bytes value, as the same kind it came in.
fn out_like(dt: &DataType, bytes: Vec<u8>) -> DfResult<Sv> {
    if *dt == DataType::Binary {
        return Ok(Sv::Binary(Some(bytes)));
    }
    String::from_utf8(bytes)
        .map(out_s)
        .map_err(|e| exec_err(e.to_string()))
}

/// The value's content as bytes: UTF-8 for strings.
fn raw(v: &Sv) -> Option<Vec<u8>> {
    s(v).map(|x| x.as_bytes().to_vec())
        .or_else(|| b(v).map(<[u8]>::to_vec))
}

// ---------------------------------------------------------------- math

pub(super) fn sign(e: Expr) -> Expr {
    call_strict("sign", DataType::Int32, vec![e], |r| {
        let sign = match &r[0] {
            Sv::Decimal128(Some(v), _, _) => v.signum() as i64,
            v => match d(v) {
                Some(x) if x > 0.0 => 1,
                Some(x) if x < 0.0 => -1,
                Some(_) => 0,
                None => return Ok(Sv::Null),
            },
        };
        Ok(out_i(sign))
    })
}

pub(super) fn abs_ceil_floor(name: &str, dt: DataType, e: Expr) -> Expr {
    let op = name.to_string();
    call_strict(name, dt, vec![e], move |r| {
        Ok(match (&r[0], op.as_str()) {
            (Sv::Int32(Some(x)), "ABS") => Sv::Int32(Some(x.wrapping_abs())),
            (Sv::Int64(Some(x)), "ABS") => Sv::Int64(Some(x.wrapping_abs())),
            (Sv::Float64(Some(x)), "ABS") => Sv::Float64(Some(x.abs())),
            (Sv::Float64(Some(x)), "CEIL") => Sv::Float64(Some(x.ceil())),
            (Sv::Float64(Some(x)), _) => Sv::Float64(Some(x.floor())),
            (Sv::Decimal128(Some(v), p, s), op) => {
                let f = pow10(*s as i32);
                let v = match op {
                    "ABS" => v.wrapping_abs(),
                    "CEIL" => v.div_euclid(f) * f + if v.rem_euclid(f) != 0 { f } else { 0 },
                    _ => v.div_euclid(f) * f,
                };
                Sv::Decimal128(Some(v), *p, *s)
            }
            (other, _) => other.clone(),
        })
    })
}

fn pow10(n: i32) -> i128 {
    if n <= 0 {
        1
    } else {
        10i128.checked_pow(n as u32).unwrap_or(i128::MAX)
    }
}

/// Rounds (HALF_UP) or truncates an unscaled decimal to `places` digits after the point,
/// keeping its scale.
fn decimal_places(v: i128, scale: i32, places: i64, round: bool) -> i128 {
    let drop = scale as i64 - places;
    if drop <= 0 {
        return v;
    }
    if drop > 38 {
        return 0;
    }
    let f = pow10(drop as i32);
    let q = v / f;
    let r = v % f;
    // Ties round toward positive infinity (ksqlDB's "rounded up, in the positive
    // direction"), so -1.5 rounds to -1.
    let twice = r.unsigned_abs() * 2;
    let up = twice > f.unsigned_abs() || (twice == f.unsigned_abs() && v > 0);
    let q = if round && up { q + v.signum() } else { q };
    q.saturating_mul(f)
}

/// Rounds (ties toward positive infinity) or truncates `x` to `places` decimal places,
/// working on the shortest decimal text of `x` as Java's `BigDecimal.valueOf` does, so
/// 1.005 rounds the way users expect.
pub(super) fn double_places(x: f64, places: i64, round: bool) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let text = format!("{:e}", x.abs());
    let Some((mantissa, exp)) = text.split_once('e') else {
        return x;
    };
    let Ok(exp) = exp.parse::<i64>() else {
        return x;
    };
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    // Digits kept: those before the point (exp + 1) plus `places` after it.
    let keep = exp + 1 + places;
    if keep >= digits.len() as i64 {
        return x;
    }
    let mut kept: Vec<u8> = if keep > 0 {
        digits[..keep as usize].to_vec()
    } else {
        Vec::new()
    };
    let next = if keep >= 0 {
        digits[keep as usize]
    } else {
        b'0'
    };
    let rest_nonzero = keep >= 0 && digits[keep as usize + 1..].iter().any(|&c| c != b'0');
    let up = next > b'5' || (next == b'5' && (x > 0.0 || rest_nonzero || keep < 0));
    if round && up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    if kept.is_empty() {
        return 0.0;
    }
    let text = format!("{}e{}", String::from_utf8_lossy(&kept), -places);
    let v: f64 = text.parse().unwrap_or(0.0);
    if x < 0.0 {
        -v
    } else {
        v
    }
}

pub(super) fn round_trunc(name: &str, round: bool, dt: DataType, args: Vec<Expr>) -> Expr {
    let ret = dt.clone();
    call_strict(name, dt, args, move |r| {
        let places = r.get(1).and_then(i);
        Ok(match (&r[0], places) {
            (Sv::Int32(_) | Sv::Int64(_), None) => r[0].clone(),
            (Sv::Float64(Some(x)), None) => {
                let v = if round { (x + 0.5).floor() } else { x.trunc() };
                Sv::Int64(Some(v as i64))
            }
            (Sv::Float64(Some(x)), Some(p)) => Sv::Float64(Some(double_places(*x, p, round))),
            (Sv::Decimal128(Some(v), _, s), p) => {
                let s = *s as i32;
                let rounded = decimal_places(*v, s, p.unwrap_or(0), round);
                match &ret {
                    DataType::Decimal128(rp, rs) => {
                        // Rescale to the result's scale (0 without places, else unchanged).
                        let v = if (*rs as i32) < s {
                            rounded / pow10(s - *rs as i32)
                        } else {
                            rounded
                        };
                        Sv::Decimal128(Some(v), *rp, *rs)
                    }
                    _ => Sv::Null,
                }
            }
            _ => Sv::Null,
        })
    })
}

pub(super) fn unary_math(name: &str, e: Expr) -> Expr {
    let f: fn(f64) -> f64 = match name {
        "SQRT" => f64::sqrt,
        "EXP" => f64::exp,
        "LN" => f64::ln,
        "CBRT" => f64::cbrt,
        "ACOS" => f64::acos,
        "ASIN" => f64::asin,
        "ATAN" => f64::atan,
        "COS" => f64::cos,
        "COSH" => f64::cosh,
        "COT" => |x| 1.0 / x.tan(),
        "DEGREES" => f64::to_degrees,
        "RADIANS" => f64::to_radians,
        "SIN" => f64::sin,
        "SINH" => f64::sinh,
        "TAN" => f64::tan,
        _ => f64::tanh,
    };
    call_strict(name, DataType::Float64, vec![e], move |r| {
        Ok(Sv::Float64(d(&r[0]).map(f)))
    })
}

pub(super) fn binary_math(name: &str, args: Vec<Expr>) -> Expr {
    let op = name.to_string();
    call_strict(name, DataType::Float64, args, move |r| {
        let a = d(&r[0]).unwrap_or(f64::NAN);
        let v = match (op.as_str(), r.get(1).and_then(d)) {
            ("LOG", None) => a.ln(),
            ("LOG", Some(x)) => x.ln() / a.ln(),
            ("ATAN2", Some(x)) => a.atan2(x),
            ("POWER", Some(x)) => a.powf(x),
            _ => return Ok(Sv::Null),
        };
        Ok(Sv::Float64(Some(v)))
    })
}

pub(super) fn geo_distance(args: Vec<Expr>) -> Expr {
    call_rows("geo_distance", DataType::Float64, args, |r| {
        let (Some(lat1), Some(lon1), Some(lat2), Some(lon2)) =
            (d(&r[0]), d(&r[1]), d(&r[2]), d(&r[3]))
        else {
            return Ok(Sv::Null);
        };
        let radius = match r.get(4).and_then(s).map(|u| u.trim().to_lowercase()) {
            None => 6371.0,
            Some(u) if u == "km" || u == "kilometers" || u == "kilometres" => 6371.0,
            Some(u) if u == "mi" || u == "miles" => 3959.0,
            Some(u) => {
                return Err(exec_err(format!(
                    "GeoDistance function in units of '{u}' is not supported. Valid units are: 'miles', 'mi', 'kilometers', 'kilometres', 'km'."
                )))
            }
        };
        if !(-90.0..=90.0).contains(&lat1) || !(-90.0..=90.0).contains(&lat2) {
            return Err(exec_err("valid latitude values for GeoDistance function are in the range of -90 to 90 decimal degrees"));
        }
        if !(-180.0..=180.0).contains(&lon1) || !(-180.0..=180.0).contains(&lon2) {
            return Err(exec_err("valid longitude values for GeoDistance function are in the range of -180 to +180 decimal degrees"));
        }
        // The haversine formula, with Java 8's `toRadians` (divide, then multiply) and
        // ksqlDB's order of operations, so results match to the last bit.
        let rad = |deg: f64| deg / 180.0 * std::f64::consts::PI;
        let haversin = |v: f64| (v / 2.0).sin().powi(2);
        let a = haversin(rad(lat2 - lat1))
            + haversin(rad(lon2 - lon1)) * rad(lat1).cos() * rad(lat2).cos();
        let c = 2.0 * a.sqrt().asin();
        Ok(Sv::Float64(Some(c * radius)))
    })
}

pub(super) fn extremum(greatest: bool, dt: DataType, args: Vec<Expr>) -> Expr {
    let name = if greatest { "greatest" } else { "least" };
    call_rows(name, dt, args, move |r| {
        let mut best: Option<&Sv> = None;
        for v in r.iter().filter(|v| !v.is_null()) {
            best = match best {
                None => Some(v),
                Some(b) => {
                    let better = match v.partial_cmp(b) {
                        Some(std::cmp::Ordering::Greater) => greatest,
                        Some(std::cmp::Ordering::Less) => !greatest,
                        _ => false,
                    };
                    Some(if better { v } else { b })
                }
            };
        }
        Ok(best.cloned().unwrap_or(Sv::Null))
    })
}

// ---------------------------------------------------------------- strings

/// Java's `String.trim`: every character up to U+0020 counts as space.
fn java_trim(x: &str) -> &str {
    x.trim_matches(|c: char| c <= ' ')
}

fn initcap(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut start = true;
    for c in x.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = c.is_whitespace();
    }
    out
}

pub(super) fn string_to_string(name: &str, e: Expr) -> Expr {
    let op = name.to_string();
    call_strict(name, DataType::Utf8, vec![e], move |r| {
        let x = s(&r[0]).unwrap_or_default();
        Ok(match op.as_str() {
            "UCASE" => out_s(x.to_uppercase()),
            "LCASE" => out_s(x.to_lowercase()),
            "TRIM" => out_s(java_trim(x)),
            "LTRIM" => out_s(x.trim_start_matches(|c: char| c <= ' ')),
            "RTRIM" => out_s(x.trim_end_matches(|c: char| c <= ' ')),
            "INITCAP" => out_s(initcap(x)),
            "URL_DECODE_PARAM" => match url_decode(x, true) {
                Some(v) => out_s(v),
                None => Sv::Null,
            },
            "URL_ENCODE_PARAM" => out_s(url_encode(x)),
            "URL_EXTRACT_FRAGMENT" => opt_s(Uri::parse(x).and_then(|u| decode_part(u.fragment))),
            "URL_EXTRACT_HOST" => opt_s(Uri::parse(x).and_then(|u| u.host).map(str::to_string)),
            "URL_EXTRACT_PATH" => opt_s(Uri::parse(x).and_then(|u| decode_part(Some(u.path)))),
            "URL_EXTRACT_PROTOCOL" => {
                opt_s(Uri::parse(x).and_then(|u| u.scheme).map(str::to_string))
            }
            _ => opt_s(Uri::parse(x).and_then(|u| decode_part(u.query))),
        })
    })
}

fn opt_s(x: Option<String>) -> Sv {
    Sv::Utf8(x)
}

pub(super) fn len(e: Expr) -> Expr {
    call_strict("len", DataType::Int32, vec![e], |r| {
        Ok(match (s(&r[0]), b(&r[0])) {
            (Some(x), _) => out_i(x.chars().count() as i64),
            (_, Some(x)) => out_i(x.len() as i64),
            _ => Sv::Null,
        })
    })
}

pub(super) fn concat(ws: bool, dt: DataType, args: Vec<Expr>) -> Expr {
    let name = if ws { "concat_ws" } else { "concat" };
    let ret = dt.clone();
    call_rows(name, dt, args, move |r| {
        let (sep, items) = if ws {
            let Some(sep) = raw(&r[0]) else {
                return Ok(Sv::Null);
            };
            (sep, &r[1..])
        } else {
            (Vec::new(), r)
        };
        let parts: Vec<Vec<u8>> = items.iter().filter_map(raw).collect();
        // The separator repeats between every two parts: bound what it makes.
        let len = parts.iter().map(Vec::len).sum::<usize>()
            + sep.len().saturating_mul(parts.len().saturating_sub(1));
        if ws && len > MAX_VALUE_BYTES {
            return Err(too_large("CONCAT_WS", "bytes", len, MAX_VALUE_BYTES));
        }
        out_like(&ret, parts.join(&sep[..]))
    })
}

/// The string's units for padding and slicing: characters for strings, bytes for bytes.
enum Units {
    Chars(Vec<char>),
    Bytes(Vec<u8>),
}

impl Units {
    fn of(v: &Sv) -> Option<Units> {
        s(v).map(|x| Units::Chars(x.chars().collect()))
            .or_else(|| b(v).map(|x| Units::Bytes(x.to_vec())))
    }
}

pub(super) fn pad(left: bool, dt: DataType, args: Vec<Expr>) -> Expr {
    let name = if left { "LPAD" } else { "RPAD" };
    call_strict_bounded(name, dt, args, move |r| {
        let Some(len) = i(&r[1]) else {
            return Ok(Sv::Null);
        };
        // ksqlDB answers NULL for a negative length; it has no upper bound (Java runs out
        // of memory), Brook refuses a result longer than a record can be.
        if len < 0 {
            return Ok(Sv::Null);
        }
        let len = len as usize;
        if len > MAX_VALUE_BYTES {
            let what = if b(&r[0]).is_some() {
                "bytes"
            } else {
                "characters"
            };
            return Err(too_large(name, what, len, MAX_VALUE_BYTES));
        }
        fn padded<T: Clone>(x: &[T], p: &[T], len: usize, left: bool) -> Option<Vec<T>> {
            if p.is_empty() {
                return None;
            }
            if x.len() >= len {
                return Some(x[..len].to_vec());
            }
            let fill: Vec<T> = p.iter().cycle().take(len - x.len()).cloned().collect();
            Some(if left {
                [fill, x.to_vec()].concat()
            } else {
                [x.to_vec(), fill].concat()
            })
        }
        Ok(match (Units::of(&r[0]), Units::of(&r[2])) {
            (Some(Units::Chars(x)), Some(Units::Chars(p))) => {
                opt_s(padded(&x, &p, len, left).map(|v| v.into_iter().collect()))
            }
            (Some(Units::Bytes(x)), Some(Units::Bytes(p))) => Sv::Binary(padded(&x, &p, len, left)),
            _ => Sv::Null,
        })
    })
}

/// ksqlDB's SUBSTRING: 1-based, negative positions count from the end, out-of-range
/// bounds are clamped.
pub(super) fn slice_range(n: usize, pos: i64, len: Option<i64>) -> (usize, usize) {
    let n = n as i64;
    let start = if pos > 0 {
        (pos - 1).min(n)
    } else if pos == 0 {
        0
    } else {
        (n + pos).max(0)
    };
    let end = match len {
        None => n,
        Some(l) => (start + l).min(n).max(start),
    };
    (start as usize, end as usize)
}

pub(super) fn substring(dt: DataType, args: Vec<Expr>) -> Expr {
    call_strict("substring", dt, args, |r| {
        let Some(pos) = i(&r[1]) else {
            return Ok(Sv::Null);
        };
        let len = r.get(2).and_then(i);
        Ok(match Units::of(&r[0]) {
            Some(Units::Chars(x)) => {
                let (a, z) = slice_range(x.len(), pos, len);
                out_s(x[a..z].iter().collect::<String>())
            }
            Some(Units::Bytes(x)) => {
                let (a, z) = slice_range(x.len(), pos, len);
                Sv::Binary(Some(x[a..z].to_vec()))
            }
            None => Sv::Null,
        })
    })
}

fn list(items: Vec<Sv>, item: &DataType) -> Sv {
    Sv::List(Sv::new_list_nullable(&items, item))
}

pub(super) fn split(dt: DataType, args: Vec<Expr>) -> Expr {
    let item = match &dt {
        DataType::List(f) => f.data_type().clone(),
        _ => DataType::Utf8,
    };
    call_strict("split", dt, args, move |r| {
        let (Some(x), Some(sep)) = (raw(&r[0]), raw(&r[1])) else {
            return Ok(Sv::Null);
        };
        let parts: Vec<Vec<u8>> = if item == DataType::Utf8 && sep.is_empty() {
            // Splitting a string on '' gives its characters.
            let text = String::from_utf8_lossy(&x).into_owned();
            if text.is_empty() {
                vec![Vec::new()]
            } else {
                text.chars().map(|c| c.to_string().into_bytes()).collect()
            }
        } else if sep.is_empty() {
            if x.is_empty() {
                vec![Vec::new()]
            } else {
                x.iter().map(|c| vec![*c]).collect()
            }
        } else {
            split_bytes(&x, &sep)
        };
        let items = parts
            .into_iter()
            .map(|p| out_like(&item, p))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(list(items, &item))
    })
}

fn split_bytes(x: &[u8], sep: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= x.len() {
        if &x[i..i + sep.len()] == sep {
            out.push(x[start..i].to_vec());
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(x[start..].to_vec());
    out
}

fn map_of(entries: Vec<(String, Option<String>)>) -> DfResult<Sv> {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut m = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for (k, v) in entries {
        m.keys().append_value(k);
        m.values().append_option(v);
    }
    m.append(true)?;
    Ok(Sv::Map(Arc::new(m.finish())))
}

pub(super) fn split_to_map(dt: DataType, args: Vec<Expr>) -> Expr {
    call_strict("split_to_map", dt, args, |r| {
        let (Some(x), Some(entry), Some(kv)) = (s(&r[0]), s(&r[1]), s(&r[2])) else {
            return Ok(Sv::Null);
        };
        if entry.is_empty() || kv.is_empty() || entry == kv {
            return Ok(Sv::Null);
        }
        let mut entries: Vec<(String, Option<String>)> = Vec::new();
        for part in x.split(entry).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = part.split_once(kv) {
                // A later entry for the same key wins, as in a Java map.
                entries.retain(|(ek, _)| ek != k);
                entries.push((k.to_string(), Some(v.to_string())));
            }
        }
        map_of(entries)
    })
}

pub(super) fn chr(e: Expr) -> Expr {
    call_strict("chr", DataType::Utf8, vec![e], |r| {
        if let Some(code) = i(&r[0]) {
            return Ok(opt_s(
                u32::try_from(code)
                    .ok()
                    .and_then(char::from_u32)
                    .map(String::from),
            ));
        }
        let Some(x) = s(&r[0]) else {
            return Ok(Sv::Null);
        };
        // Only Java unicode escapes (`\u004b`, surrogate pairs as two) are read.
        let mut units = Vec::new();
        let mut rest = x;
        while !rest.is_empty() {
            let Some(hex) = rest.strip_prefix("\\u").and_then(|h| h.get(..4)) else {
                return Ok(Sv::Null);
            };
            let Ok(u) = u16::from_str_radix(hex, 16) else {
                return Ok(Sv::Null);
            };
            units.push(u);
            rest = &rest[6..];
        }
        if units.is_empty() {
            return Ok(Sv::Null);
        }
        let text: Result<String, _> = char::decode_utf16(units).collect();
        Ok(opt_s(text.ok()))
    })
}

pub(super) fn instr(args: Vec<Expr>) -> Expr {
    call_strict("instr", DataType::Int32, args, |r| {
        let (Some(x), Some(sub)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let pos = r.get(2).and_then(i).unwrap_or(1);
        let occurrence = r.get(3).and_then(i).unwrap_or(1).max(1);
        let hay: Vec<char> = x.chars().collect();
        let needle: Vec<char> = sub.chars().collect();
        let n = hay.len() as i64;
        let m = needle.len() as i64;
        let at = |k: i64| k >= 0 && k + m <= n && hay[k as usize..(k + m) as usize] == needle[..];
        let mut found = 0;
        if pos >= 0 {
            let mut k = (pos - 1).max(0);
            while k + m <= n {
                if at(k) {
                    found += 1;
                    if found == occurrence {
                        return Ok(out_i(k + 1));
                    }
                }
                k += 1;
            }
        } else {
            let mut k = (n + pos).min(n - m);
            while k >= 0 {
                if at(k) {
                    found += 1;
                    if found == occurrence {
                        return Ok(out_i(k + 1));
                    }
                }
                k -= 1;
            }
        }
        Ok(out_i(0))
    })
}

/// Compiles patterns once per distinct text, remembering the last one: patterns are
/// almost always literals.
struct RegexCache(Mutex<Option<(String, Regex)>>);

impl RegexCache {
    fn new() -> Self {
        RegexCache(Mutex::new(None))
    }

    fn get(&self, pattern: &str) -> DfResult<Regex> {
        let mut slot = self
            .0
            .lock()
            .map_err(|_| exec_err("regex cache poisoned"))?;
        if let Some((p, r)) = slot.as_ref() {
            if p == pattern {
                return Ok(r.clone());
            }
        }
        let r = Regex::new(pattern).map_err(|e| {
            exec_err(format!(
                "Invalid regular expression pattern: {pattern}. {e}"
            ))
        })?;
        *slot = Some((pattern.to_string(), r.clone()));
        Ok(r)
    }
}

/// Java's replacement syntax (`$1`, `\$`) in the regex crate's (`${1}`, `$$`).
fn java_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len());
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(x) => out.push(x),
                None => {}
            },
            '$' => {
                let mut num = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    num.push(*d);
                    chars.next();
                }
                if num.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{num}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

pub(super) fn replace(regex: bool, args: Vec<Expr>) -> Expr {
    let cache = RegexCache::new();
    let name = if regex { "REGEXP_REPLACE" } else { "REPLACE" };
    call_strict_bounded(name, DataType::Utf8, args, move |r| {
        let (Some(x), Some(p), Some(rep)) = (s(&r[0]), s(&r[1]), s(&r[2])) else {
            return Ok(Sv::Null);
        };
        if !regex {
            // Every match grows the text by the replacement (an empty pattern matches
            // between all characters): the result's length is known before it is made.
            let matches = if p.is_empty() {
                x.chars().count() + 1
            } else {
                x.matches(p).count()
            };
            let len =
                (x.len() - matches * p.len()).saturating_add(matches.saturating_mul(rep.len()));
            if len > MAX_VALUE_BYTES {
                return Err(too_large(name, "bytes", len, MAX_VALUE_BYTES));
            }
            return Ok(out_s(x.replace(p, rep)));
        }
        let re = cache.get(p)?;
        let rep = java_replacement(rep);
        // `replace_all`, a match at a time, stopping once the result is too long.
        let mut out = String::new();
        let mut last = 0;
        for caps in re.captures_iter(x) {
            let Some(m) = caps.get(0) else { continue };
            out.push_str(&x[last..m.start()]);
            caps.expand(&rep, &mut out);
            last = m.end();
            if out.len() > MAX_VALUE_BYTES {
                return Err(too_large(
                    name,
                    "bytes",
                    format!("over {}", out.len()),
                    MAX_VALUE_BYTES,
                ));
            }
        }
        out.push_str(&x[last..]);
        if out.len() > MAX_VALUE_BYTES {
            return Err(too_large(name, "bytes", out.len(), MAX_VALUE_BYTES));
        }
        Ok(out_s(out))
    })
}

pub(super) fn regexp_extract(args: Vec<Expr>) -> Expr {
    let cache = RegexCache::new();
    call_strict("regexp_extract", DataType::Utf8, args, move |r| {
        let (Some(p), Some(x)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let group = r.get(2).and_then(i).unwrap_or(0);
        let re = cache.get(p)?;
        let m = re
            .captures(x)
            .and_then(|c| c.get(usize::try_from(group).ok()?))
            .map(|m| m.as_str().to_string());
        Ok(opt_s(m))
    })
}

pub(super) fn regexp_extract_all(dt: DataType, args: Vec<Expr>) -> Expr {
    let cache = RegexCache::new();
    call_strict("regexp_extract_all", dt, args, move |r| {
        let (Some(p), Some(x)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let group = usize::try_from(r.get(2).and_then(i).unwrap_or(0)).unwrap_or(usize::MAX);
        let re = cache.get(p)?;
        let items: Vec<Sv> = re
            .captures_iter(x)
            .map(|c| Sv::Utf8(c.get(group).map(|m| m.as_str().to_string())))
            .collect();
        Ok(list(items, &DataType::Utf8))
    })
}

pub(super) fn regexp_split(dt: DataType, args: Vec<Expr>) -> Expr {
    let cache = RegexCache::new();
    call_strict("regexp_split_to_array", dt, args, move |r| {
        let (Some(x), Some(p)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let re = cache.get(p)?;
        let items: Vec<Sv> = re.split(x).map(out_s).collect();
        Ok(list(items, &DataType::Utf8))
    })
}

pub(super) fn mask(name: &str, args: Vec<Expr>) -> Expr {
    let op = name.to_string();
    let counted = name != "MASK";
    // ksqlDB's replacement characters: upper, lower, digit, other; NULL keeps the class.
    call_rows(name, DataType::Utf8, args, move |r| {
        let Some(x) = s(&r[0]) else {
            return Ok(Sv::Null);
        };
        let (n, rest) = if counted {
            let Some(n) = i(&r[1]) else {
                return Ok(Sv::Null);
            };
            if n < 0 {
                return Err(exec_err(format!(
                    "function {} requires a non-negative number",
                    op.to_lowercase()
                )));
            }
            (n as usize, &r[2..])
        } else {
            (0, &r[1..])
        };
        let defaults = [Some('X'), Some('x'), Some('n'), Some('-')];
        let mut repl = defaults;
        for (k, v) in rest.iter().enumerate().take(4) {
            repl[k] = s(v).and_then(|t| t.chars().next());
        }
        let chars: Vec<char> = x.chars().collect();
        let len = chars.len();
        let masked = |k: usize| match op.as_str() {
            "MASK" => true,
            "MASK_KEEP_LEFT" => k >= n,
            "MASK_KEEP_RIGHT" => k + n < len,
            "MASK_LEFT" => k < n,
            _ => k + n >= len,
        };
        let out: String = chars
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                if !masked(k) {
                    return c;
                }
                let class = if c.is_uppercase() {
                    0
                } else if c.is_lowercase() {
                    1
                } else if c.is_ascii_digit() {
                    2
                } else {
                    3
                };
                repl[class].unwrap_or(c)
            })
            .collect();
        Ok(out_s(out))
    })
}

// ---------------------------------------------------------------- bytes and encodings

fn hex_decode(x: &str) -> Option<Vec<u8>> {
    if !x.len().is_multiple_of(2) {
        return None;
    }
    (0..x.len())
        .step_by(2)
        .map(|k| u8::from_str_radix(x.get(k..k + 2)?, 16).ok())
        .collect()
}

fn hex_encode(x: &[u8], upper: bool) -> String {
    x.iter()
        .map(|c| {
            if upper {
                format!("{c:02X}")
            } else {
                format!("{c:02x}")
            }
        })
        .collect()
}

fn decode_as(x: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_lowercase().as_str() {
        "hex" => hex_decode(x),
        "utf8" => Some(x.as_bytes().to_vec()),
        // Java encodes a non-ASCII character as '?'.
        "ascii" => Some(
            x.chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
        ),
        "base64" => base64::engine::general_purpose::STANDARD.decode(x).ok(),
        _ => None,
    }
}

fn encode_as(x: &[u8], encoding: &str, hex_upper: bool) -> Option<String> {
    match encoding.to_lowercase().as_str() {
        "hex" => Some(hex_encode(x, hex_upper)),
        "utf8" => Some(String::from_utf8_lossy(x).into_owned()),
        "ascii" => Some(
            x.iter()
                .map(|&c| {
                    if c.is_ascii() {
                        c as char
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect(),
        ),
        "base64" => Some(base64::engine::general_purpose::STANDARD.encode(x)),
        _ => None,
    }
}

pub(super) fn to_bytes(args: Vec<Expr>) -> Expr {
    call_strict("to_bytes", DataType::Binary, args, |r| {
        let (Some(x), Some(enc)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        if !["hex", "utf8", "ascii", "base64"].contains(&enc.to_lowercase().as_str()) {
            return Err(exec_err(format!(
                "Supported encodings are: hex, utf8, ascii and base64, got '{enc}'"
            )));
        }
        Ok(Sv::Binary(decode_as(x, enc)))
    })
}

pub(super) fn from_bytes(args: Vec<Expr>) -> Expr {
    call_strict("from_bytes", DataType::Utf8, args, |r| {
        let (Some(x), Some(enc)) = (b(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        match encode_as(x, enc, true) {
            Some(v) => Ok(out_s(v)),
            None => Err(exec_err(format!(
                "Supported encodings are: hex, utf8, ascii and base64, got '{enc}'"
            ))),
        }
    })
}

pub(super) fn encode(args: Vec<Expr>) -> Expr {
    call_strict("encode", DataType::Utf8, args, |r| {
        let (Some(x), Some(from), Some(into)) = (s(&r[0]), s(&r[1]), s(&r[2])) else {
            return Ok(Sv::Null);
        };
        let x = if from.eq_ignore_ascii_case("hex") {
            // Hex input may be written `0x…`, `X'…'` or `x'…'`.
            if let Some(h) = x.strip_prefix("0x") {
                h
            } else if let Some(h) = x
                .strip_prefix("X'")
                .or_else(|| x.strip_prefix("x'"))
                .and_then(|h| h.strip_suffix('\''))
            {
                h
            } else if x.starts_with("X'") || x.starts_with("x'") {
                return Ok(Sv::Null);
            } else {
                x
            }
        } else {
            x
        };
        let bytes = decode_as(x, from);
        Ok(opt_s(bytes.and_then(|v| encode_as(&v, into, false))))
    })
}

pub(super) fn number_from_bytes(dt: DataType, args: Vec<Expr>) -> Expr {
    let ret = dt.clone();
    call_strict("from_bytes", dt, args, move |r| {
        let Some(x) = b(&r[0]) else {
            return Ok(Sv::Null);
        };
        let little = match r.get(1).and_then(s) {
            None => false,
            Some(o) if o.eq_ignore_ascii_case("BIG_ENDIAN") => false,
            Some(o) if o.eq_ignore_ascii_case("LITTLE_ENDIAN") => true,
            Some(o) => {
                return Err(exec_err(format!(
                    "Byte order must be BIG_ENDIAN or LITTLE_ENDIAN, got '{o}'"
                )))
            }
        };
        let size = if ret == DataType::Int32 { 4 } else { 8 };
        if x.len() != size {
            return Err(exec_err(format!(
                "Number of bytes must be equal to {size}, but found {}",
                x.len()
            )));
        }
        let mut buf = [0u8; 8];
        buf[..size].copy_from_slice(x);
        Ok(match (&ret, little) {
            (DataType::Int32, false) => {
                out_i(i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64)
            }
            (DataType::Int32, true) => {
                out_i(i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64)
            }
            (DataType::Int64, false) => Sv::Int64(Some(i64::from_be_bytes(buf))),
            (DataType::Int64, true) => Sv::Int64(Some(i64::from_le_bytes(buf))),
            (_, false) => Sv::Float64(Some(f64::from_be_bytes(buf))),
            (_, true) => Sv::Float64(Some(f64::from_le_bytes(buf))),
        })
    })
}

pub(super) fn uuid_from_bytes(e: Expr) -> Expr {
    call_strict("uuid", DataType::Utf8, vec![e], |r| {
        let Some(x) = b(&r[0]) else {
            return Ok(Sv::Null);
        };
        if x.len() != 16 {
            return Ok(Sv::Null);
        }
        let h = hex_encode(x, false);
        Ok(out_s(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )))
    })
}

// ---------------------------------------------------------------- JSON

pub(super) fn extract_json_field(args: Vec<Expr>) -> Expr {
    call_strict("extractjsonfield", DataType::Utf8, args, |r| {
        let (Some(x), Some(p)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let Some(root) = json::parse(x) else {
            return Ok(Sv::Null);
        };
        Ok(match json::path(&root, p) {
            None | Some(Json::Null) => Sv::Null,
            Some(v) => out_s(v.as_text()),
        })
    })
}

pub(super) fn is_json_string(e: Expr) -> Expr {
    call_rows("is_json_string", DataType::Boolean, vec![e], |r| {
        Ok(Sv::Boolean(Some(s(&r[0]).and_then(json::parse).is_some())))
    })
}

pub(super) fn json_array_length(e: Expr) -> Expr {
    call_strict("json_array_length", DataType::Int32, vec![e], |r| {
        Ok(match s(&r[0]).and_then(json::parse) {
            Some(Json::Arr(items)) => out_i(items.len() as i64),
            _ => Sv::Null,
        })
    })
}

pub(super) fn json_concat(args: Vec<Expr>) -> Expr {
    call_strict("json_concat", DataType::Utf8, args, |r| {
        let mut docs = Vec::new();
        for v in r {
            match s(v).and_then(json::parse) {
                Some(j) => docs.push(j),
                None => return Ok(Sv::Null),
            }
        }
        let all_objects = docs.iter().all(|j| matches!(j, Json::Obj(_)));
        let out = if all_objects {
            let mut fields: Vec<(String, Json)> = Vec::new();
            for j in docs {
                if let Json::Obj(fs) = j {
                    for (k, v) in fs {
                        fields.retain(|(fk, _)| *fk != k);
                        fields.push((k, v));
                    }
                }
            }
            Json::Obj(fields)
        } else {
            let mut items = Vec::new();
            for j in docs {
                match j {
                    Json::Arr(xs) => items.extend(xs),
                    other => items.push(other),
                }
            }
            Json::Arr(items)
        };
        Ok(out_s(out.to_text()))
    })
}

pub(super) fn json_list(keys: bool, dt: DataType, e: Expr) -> Expr {
    let name = if keys { "json_keys" } else { "json_items" };
    call_strict(name, dt, vec![e], move |r| {
        let items: Vec<Sv> = match (s(&r[0]).and_then(json::parse), keys) {
            (Some(Json::Obj(fields)), true) => fields.into_iter().map(|(k, _)| out_s(k)).collect(),
            (Some(Json::Arr(items)), false) => items.iter().map(|j| out_s(j.to_text())).collect(),
            _ => return Ok(Sv::Null),
        };
        Ok(list(items, &DataType::Utf8))
    })
}

pub(super) fn json_records(dt: DataType, e: Expr) -> Expr {
    call_strict("json_records", dt, vec![e], |r| {
        match s(&r[0]).and_then(json::parse) {
            Some(Json::Obj(fields)) => map_of(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, Some(v.as_text())))
                    .collect(),
            ),
            _ => Ok(Sv::Null),
        }
    })
}

pub(super) fn json_array_contains(args: Vec<Expr>) -> Expr {
    call_rows("json_array_contains", DataType::Boolean, args, |r| {
        let Some(Json::Arr(items)) = s(&r[0]).and_then(json::parse) else {
            return Ok(Sv::Boolean(Some(false)));
        };
        let want = &r[1];
        let hit = items.iter().any(|j| match (j, want) {
            (Json::Null, w) => w.is_null(),
            (Json::Bool(x), Sv::Boolean(Some(y))) => x == y,
            (Json::Str(x), w) => s(w) == Some(x.as_str()),
            (Json::Num(n), w) => match (n.parse::<i64>().ok(), i(w), d(w)) {
                (Some(a), Some(b), _) => a == b,
                (None, Some(_), _) => false,
                (_, None, Some(b)) => n.parse::<f64>().ok() == Some(b),
                _ => false,
            },
            _ => false,
        });
        Ok(Sv::Boolean(Some(hit)))
    })
}

pub(super) fn to_json_string(e: Expr) -> Expr {
    let f = |arrays: &[ArrayRef], n: usize| -> DfResult<ArrayRef> {
        let mut out = StringBuilder::new();
        for row in 0..n {
            out.append_value(value_json(arrays[0].as_ref(), row)?.to_text());
        }
        Ok(Arc::new(out.finish()))
    };
    call_array(
        "to_json_string",
        DataType::Utf8,
        Volatility::Immutable,
        vec![e],
        Arc::new(f),
    )
}

/// One Arrow value as ksqlDB writes it in JSON.
fn value_json(a: &dyn arrow::array::Array, row: usize) -> DfResult<Json> {
    if a.is_null(row) {
        return Ok(Json::Null);
    }
    Ok(match a.data_type() {
        DataType::Boolean => Json::Bool(a.as_boolean().value(row)),
        DataType::Int32 => Json::Num(a.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => Json::Num(a.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::Float64 => {
            let v = a.as_primitive::<Float64Type>().value(row);
            if v.is_finite() {
                Json::Num(format!("{v:?}"))
            } else {
                Json::Str(format!("{v:?}"))
            }
        }
        DataType::Decimal128(_, scale) => {
            let v = a.as_primitive::<Decimal128Type>().value(row);
            Json::Num(decimal_text(v, *scale))
        }
        DataType::Utf8 => Json::Str(a.as_string::<i32>().value(row).to_string()),
        DataType::Binary => Json::Str(
            base64::engine::general_purpose::STANDARD.encode(a.as_binary::<i32>().value(row)),
        ),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(row);
            let date = chrono_free_date(days as i64);
            Json::Str(date)
        }
        DataType::Time32(_) => {
            let ms = a.as_primitive::<Time32MillisecondType>().value(row) as i64;
            Json::Str(time_text(ms))
        }
        DataType::Timestamp(_, _) => {
            let ms = a.as_primitive::<TimestampMillisecondType>().value(row);
            let days = ms.div_euclid(86_400_000);
            let rest = ms.rem_euclid(86_400_000);
            Json::Str(format!("{}T{}", chrono_free_date(days), time_text(rest)))
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let items = l.value(row);
            (0..items.len())
                .map(|k| value_json(items.as_ref(), k))
                .collect::<DfResult<Vec<_>>>()
                .map(Json::Arr)?
        }
        DataType::Struct(fields) => {
            let st = a.as_struct();
            let mut out = Vec::new();
            for (f, col) in fields.iter().zip(st.columns()) {
                out.push((f.name().clone(), value_json(col.as_ref(), row)?));
            }
            Json::Obj(out)
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let entries = m.value(row);
            let keys = entries.column(0);
            let values = entries.column(1);
            let mut out = Vec::new();
            for k in 0..entries.len() {
                let key = value_json(keys.as_ref(), k)?.as_text();
                out.push((key, value_json(values.as_ref(), k)?));
            }
            Json::Obj(out)
        }
        other => return Err(exec_err(format!("TO_JSON_STRING does not support {other}"))),
    })
}

fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * pow10(-(scale as i32))).to_string();
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, frac) = padded.split_at(padded.len() - scale);
    format!("{}{whole}.{frac}", if neg { "-" } else { "" })
}

/// `yyyy-MM-dd` of days since the epoch (Howard Hinnant's civil-from-days).
fn chrono_free_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

fn time_text(ms: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

// ---------------------------------------------------------------- URLs

/// The parts of a URI, split the way `java.net.URI` does (raw, not decoded).
struct Uri<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<i64>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Uri<'a> {
    fn parse(x: &'a str) -> Option<Uri<'a>> {
        // java.net.URI rejects spaces and most other unescaped specials.
        if x.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>' || c == '\\')
        {
            return None;
        }
        let (rest, fragment) = match x.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (x, None),
        };
        let scheme_end = rest.find(':').filter(|&k| {
            let sch = &rest[..k];
            sch.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && sch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let (scheme, rest) = match scheme_end {
            Some(k) => (Some(&rest[..k]), &rest[k + 1..]),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (host, port, path) = match rest.strip_prefix("//") {
            Some(auth_path) => {
                let end = auth_path.find('/').unwrap_or(auth_path.len());
                let (auth, path) = auth_path.split_at(end);
                let hostport = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
                let (host, port) = match hostport.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                        h,
                        if p.is_empty() {
                            None
                        } else {
                            Some(p.parse::<i64>().ok()?)
                        },
                    ),
                    _ => (hostport, None),
                };
                (Some(host).filter(|h| !h.is_empty()), port, path)
            }
            None => (None, None, rest),
        };
        Some(Uri {
            scheme,
            host,
            port,
            path,
            query,
            fragment,
        })
    }
}

fn decode_part(x: Option<&str>) -> Option<String> {
    url_decode(x?, false)
}

/// Percent-decoding; `plus` also reads `+` as a space (form encoding).
fn url_decode(x: &str, plus: bool) -> Option<String> {
    let b = x.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        match b[k] {
            b'%' => {
                let h = x.get(k + 1..k + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                k += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                k += 1;
            }
            c => {
                out.push(c);
                k += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `java.net.URLEncoder.encode(x, UTF_8)`.
fn url_encode(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    for &c in x.as_bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            c => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

pub(super) fn url_port(e: Expr) -> Expr {
    call_strict("url_extract_port", DataType::Int32, vec![e], |r| {
        Ok(match s(&r[0]).and_then(Uri::parse).and_then(|u| u.port) {
            Some(p) => out_i(p),
            None => Sv::Null,
        })
    })
}

pub(super) fn url_parameter(args: Vec<Expr>) -> Expr {
    call_strict("url_extract_parameter", DataType::Utf8, args, |r| {
        let (Some(x), Some(name)) = (s(&r[0]), s(&r[1])) else {
            return Ok(Sv::Null);
        };
        let Some(query) = Uri::parse(x).and_then(|u| u.query) else {
            return Ok(Sv::Null);
        };
        for part in query.split('&') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            if k == name {
                return Ok(out_s(v));
            }
        }
        Ok(Sv::Null)
    })
}

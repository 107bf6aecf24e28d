//! Date, time and timestamp functions.
//!
//! Formats are Java `DateTimeFormatter` patterns (see [`pattern`]). As in ksqlDB, a value
//! that cannot be parsed or formatted gives NULL for that expression rather than failing
//! the record.

pub(crate) mod pattern;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, Int32Array, Int64Array};
use arrow::datatypes::{DataType, TimeUnit};
use brook_sql::sqlparser::ast::{Expr as SqlExpr, FunctionArg, FunctionArgExpr};
use brook_sql::Type;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Volatility};

use crate::expr::{Scope, Typed};
use crate::PlanError;

use super::udf::{call_array, call_strict};
use super::{rejected, type_names, Lookup};
use pattern::Zone;

const DAY_MS: i64 = 86_400_000;

/// Compiles `name(args)` if this family has the function.
pub(crate) fn call(scope: &Scope, name: &str, args: &mut Vec<Typed>) -> Lookup {
    const NAMES: &[&str] = &[
        "CONVERT_TZ",
        "FORMAT_DATE",
        "FORMAT_TIME",
        "FORMAT_TIMESTAMP",
        "FROM_DAYS",
        "FROM_UNIXTIME",
        "PARSE_DATE",
        "PARSE_TIME",
        "PARSE_TIMESTAMP",
        "UNIX_DATE",
        "UNIX_TIMESTAMP",
        "DATETOSTRING",
        "STRINGTODATE",
        "STRINGTOTIMESTAMP",
        "TIMESTAMPTOSTRING",
    ];
    if !NAMES.contains(&name) {
        return None;
    }
    Some(compile(scope, name, std::mem::take(args)))
}

/// Checks the arguments against one of the overloads (each a list of allowed types per
/// position; an untyped NULL fits anything) and casts them to it.
fn resolve(
    scope: &Scope,
    name: &str,
    args: Vec<Typed>,
    overloads: &[&[Type]],
) -> Result<Vec<Expr>, PlanError> {
    let fits = |o: &[Type]| {
        o.len() == args.len()
            && args
                .iter()
                .zip(o)
                .all(|(a, t)| a.ty.as_ref().is_none_or(|at| at == t))
    };
    let Some(o) = overloads.iter().find(|o| fits(o)) else {
        return Err(rejected(name, &args));
    };
    args.into_iter()
        .zip(o.iter())
        .map(|(a, t)| scope.coerce_pub(a, t).map(|t| t.expr))
        .collect()
}

fn utf8(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

/// The number in a row value, whichever integer or temporal type carries it.
fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int32(Some(x)) | ScalarValue::Date32(Some(x)) => Some(*x as i64),
        ScalarValue::Time32Millisecond(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) | ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x),
        _ => None,
    }
}

/// The optional zone argument at `i` (UTC when absent); `None` for an unknown zone.
fn zone_arg(row: &[ScalarValue], i: usize) -> Option<Zone> {
    match row.get(i) {
        None => Some(Zone::UTC),
        Some(v) => utf8(v).and_then(Zone::parse),
    }
}

fn ts_value(ms: i64) -> ScalarValue {
    ScalarValue::TimestampMillisecond(Some(ms), None)
}

fn compile(scope: &Scope, name: &str, args: Vec<Typed>) -> Result<Typed, PlanError> {
    use Type::{Bigint, Date, Int, String as Str, Time, Timestamp};
    let ts_dt = DataType::Timestamp(TimeUnit::Millisecond, None);
    let (ty, expr) = match name {
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => {
            let from = if name == "FORMAT_TIMESTAMP" {
                Timestamp
            } else {
                Bigint
            };
            let exprs = resolve(
                scope,
                name,
                args,
                &[&[from.clone(), Str], &[from.clone(), Str, Str]],
            )?;
            let e = call_strict(name, DataType::Utf8, exprs, |row| {
                let (Some(ms), Some(fmt), Some(zone)) =
                    (int(&row[0]), utf8(&row[1]), zone_arg(row, 2))
                else {
                    return Ok(ScalarValue::Null);
                };
                Ok(ScalarValue::Utf8(
                    pattern::format_timestamp(fmt, ms, zone).ok(),
                ))
            });
            (Str, e)
        }
        "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" => {
            let exprs = resolve(scope, name, args, &[&[Str, Str], &[Str, Str, Str]])?;
            let to_ts = name == "PARSE_TIMESTAMP";
            let (ty, dt) = if to_ts {
                (Timestamp, ts_dt)
            } else {
                (Bigint, DataType::Int64)
            };
            let e = call_strict(name, dt, exprs, move |row| {
                let (Some(text), Some(fmt), Some(zone)) =
                    (utf8(&row[0]), utf8(&row[1]), zone_arg(row, 2))
                else {
                    return Ok(ScalarValue::Null);
                };
                Ok(match pattern::parse_timestamp(fmt, text.trim(), zone) {
                    Ok(ms) if to_ts => ts_value(ms),
                    Ok(ms) => ScalarValue::Int64(Some(ms)),
                    Err(_) => ScalarValue::Null,
                })
            });
            (ty, e)
        }
        "FORMAT_DATE" | "DATETOSTRING" => {
            let from = if name == "FORMAT_DATE" { Date } else { Int };
            let exprs = resolve(scope, name, args, &[&[from, Str]])?;
            let e = call_strict(name, DataType::Utf8, exprs, |row| {
                let (Some(days), Some(fmt)) = (int(&row[0]), utf8(&row[1])) else {
                    return Ok(ScalarValue::Null);
                };
                Ok(ScalarValue::Utf8(
                    pattern::format_date(fmt, days as i32).ok(),
                ))
            });
            (Str, e)
        }
        "PARSE_DATE" | "STRINGTODATE" => {
            let exprs = resolve(scope, name, args, &[&[Str, Str]])?;
            let to_date = name == "PARSE_DATE";
            let (ty, dt) = if to_date {
                (Date, DataType::Date32)
            } else {
                (Int, DataType::Int32)
            };
            let e = call_strict(name, dt, exprs, move |row| {
                let (Some(text), Some(fmt)) = (utf8(&row[0]), utf8(&row[1])) else {
                    return Ok(ScalarValue::Null);
                };
                let parsed = if to_date {
                    pattern::parse_date_prefix(fmt, text.trim())
                } else {
                    pattern::parse_date(fmt, text.trim())
                };
                Ok(match parsed {
                    Ok(d) if to_date => ScalarValue::Date32(Some(d)),
                    Ok(d) => ScalarValue::Int32(Some(d)),
                    Err(_) => ScalarValue::Null,
                })
            });
            (ty, e)
        }
        "FORMAT_TIME" => {
            let exprs = resolve(scope, name, args, &[&[Time, Str]])?;
            let e = call_strict(name, DataType::Utf8, exprs, |row| {
                let (Some(ms), Some(fmt)) = (int(&row[0]), utf8(&row[1])) else {
                    return Ok(ScalarValue::Null);
                };
                Ok(ScalarValue::Utf8(pattern::format_time(fmt, ms as i32).ok()))
            });
            (Str, e)
        }
        "PARSE_TIME" => {
            let exprs = resolve(scope, name, args, &[&[Str, Str]])?;
            let e = call_strict(
                name,
                DataType::Time32(TimeUnit::Millisecond),
                exprs,
                |row| {
                    let (Some(text), Some(fmt)) = (utf8(&row[0]), utf8(&row[1])) else {
                        return Ok(ScalarValue::Null);
                    };
                    Ok(ScalarValue::Time32Millisecond(
                        pattern::parse_time(fmt, text.trim()).ok(),
                    ))
                },
            );
            (Time, e)
        }
        "CONVERT_TZ" => {
            let exprs = resolve(scope, name, args, &[&[Timestamp, Str, Str]])?;
            let e = call_strict(name, ts_dt, exprs, |row| {
                let (Some(ms), Some(from), Some(to)) = (
                    int(&row[0]),
                    utf8(&row[1]).and_then(Zone::parse),
                    utf8(&row[2]).and_then(Zone::parse),
                ) else {
                    return Ok(ScalarValue::Null);
                };
                // As ksqlDB: both offsets are taken at the instant `ms` read as UTC.
                let Some(at) = chrono::DateTime::from_timestamp_millis(ms) else {
                    return Ok(ScalarValue::Null);
                };
                let at = at.naive_utc();
                let shift = (to.at_utc(&at).0 - from.at_utc(&at).0) as i64 * 1000;
                Ok(ts_value(ms + shift))
            });
            (Timestamp, e)
        }
        "FROM_DAYS" => {
            let exprs = resolve(scope, name, args, &[&[Int]])?;
            (
                Date,
                datafusion::logical_expr::cast(one(exprs)?, DataType::Date32),
            )
        }
        "FROM_UNIXTIME" => {
            let exprs = resolve(scope, name, args, &[&[Bigint]])?;
            (
                Timestamp,
                datafusion::logical_expr::cast(one(exprs)?, ts_dt),
            )
        }
        "UNIX_DATE" | "UNIX_TIMESTAMP" => {
            let date = name == "UNIX_DATE";
            let (ret_ty, dt, from) = if date {
                (Int, DataType::Int32, Date)
            } else {
                (Bigint, DataType::Int64, Timestamp)
            };
            if args.is_empty() {
                // The current time: volatile, so it is read for every batch.
                let dt2 = dt.clone();
                let e = call_array(
                    name,
                    dt,
                    Volatility::Volatile,
                    vec![],
                    Arc::new(move |_, n| {
                        let ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_millis() as i64)
                            .unwrap_or(0);
                        let out: ArrayRef = if dt2 == DataType::Int32 {
                            Arc::new(Int32Array::from(vec![ms.div_euclid(DAY_MS) as i32; n]))
                        } else {
                            Arc::new(Int64Array::from(vec![ms; n]))
                        };
                        Ok(out)
                    }),
                );
                (ret_ty, e)
            } else {
                let exprs = resolve(scope, name, args, &[&[from]])?;
                (ret_ty, datafusion::logical_expr::cast(one(exprs)?, dt))
            }
        }
        _ => {
            return Err(PlanError::Invalid(format!(
                "Can't find any functions with the name '{name}'"
            )))
        }
    };
    Ok(Typed { expr, ty: Some(ty) })
}

fn one(mut exprs: Vec<Expr>) -> Result<Expr, PlanError> {
    exprs
        .pop()
        .ok_or_else(|| PlanError::Invalid("expected one argument".into()))
}

/// Java's `TimeUnit`, as DATEADD and friends name it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Nanos,
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        Some(match s.to_ascii_uppercase().as_str() {
            "NANOSECONDS" | "NANOSECOND" => Unit::Nanos,
            "MICROSECONDS" | "MICROSECOND" => Unit::Micros,
            "MILLISECONDS" | "MILLISECOND" => Unit::Millis,
            "SECONDS" | "SECOND" => Unit::Seconds,
            "MINUTES" | "MINUTE" => Unit::Minutes,
            "HOURS" | "HOUR" => Unit::Hours,
            "DAYS" | "DAY" => Unit::Days,
            _ => return None,
        })
    }

    /// `TimeUnit.toMillis`: truncates toward zero.
    fn to_millis(self, v: i64) -> i64 {
        match self {
            Unit::Nanos => v / 1_000_000,
            Unit::Micros => v / 1000,
            Unit::Millis => v,
            Unit::Seconds => v.saturating_mul(1000),
            Unit::Minutes => v.saturating_mul(60_000),
            Unit::Hours => v.saturating_mul(3_600_000),
            Unit::Days => v.saturating_mul(DAY_MS),
        }
    }

    /// `TimeUnit.toDays`: truncates toward zero.
    fn to_days(self, v: i64) -> i64 {
        match self {
            Unit::Days => v,
            other => other.to_millis(v) / DAY_MS,
        }
    }
}

/// DATEADD, DATESUB, TIMEADD, TIMESUB, TIMESTAMPADD and TIMESTAMPSUB, whose first
/// argument is a bare time unit rather than an expression.
/// ksqlDB's reading of a string compared with ROWTIME, WINDOWSTART or WINDOWEND: a
/// possibly partial `yyyy-MM-dd'T'HH:mm:ss.SSS` (`2018`, `2019-01-01T00:00`), optionally
/// followed by a zone (`+0445`, `Z`); UTC unless given. Epoch milliseconds.
pub(crate) fn partial_timestamp_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time, zone) = match text.split_once('T') {
        Some((date, rest)) => {
            let zone_at = rest.find(['+', '-']).or_else(|| rest.find('Z'));
            let (time, zone) = rest.split_at(zone_at.unwrap_or(rest.len()));
            (date.to_string(), time, zone)
        }
        None => {
            let date = match text.split('-').count() {
                1 => format!("{text}-01-01"),
                2 => format!("{text}-01"),
                _ => text.to_string(),
            };
            (date, "", "")
        }
    };
    let time = match time.len() {
        0 => "00:00:00.000".to_string(),
        2 => format!("{time}:00:00.000"),
        5 => format!("{time}:00.000"),
        8 => format!("{time}.000"),
        _ => time.to_string(),
    };
    // Java's resolver reads hour 24 at exactly midnight as the end of the day: the next
    // day's 00:00 (ksqlDB accepts `2020-02-24T24`).
    let (time, next_day) = match time.strip_prefix("24:") {
        Some(rest) if rest.chars().all(|c| matches!(c, '0' | ':' | '.')) => {
            (format!("00:{rest}"), true)
        }
        _ => (time, false),
    };
    let mut local =
        chrono::NaiveDateTime::parse_from_str(&format!("{date}T{time}"), "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?;
    if next_day {
        local = local.checked_add_days(chrono::Days::new(1))?;
    }
    let zone = if zone.is_empty() {
        Zone::UTC
    } else {
        Zone::parse(zone)?
    };
    Some(zone.utc_of(&local).and_utc().timestamp_millis())
}

pub(crate) fn unit_call(
    scope: &Scope,
    name: &str,
    args: &[&FunctionArg],
) -> Result<Typed, PlanError> {
    let raw: Vec<&SqlExpr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(PlanError::Invalid(format!(
                "Unsupported argument {other} to {name}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let unit = match raw.first() {
        Some(SqlExpr::Identifier(id)) => Unit::parse(&id.value),
        _ => None,
    };
    let Some(unit) = unit.filter(|_| raw.len() == 3) else {
        // Not a unit: ksqlDB reports the argument types it saw.
        let compiled = raw
            .iter()
            .map(|e| scope.compile(e))
            .collect::<Result<Vec<_>, _>>()?;
        return Err(rejected(name, &compiled));
    };
    let mut rest = raw[1..]
        .iter()
        .map(|e| scope.compile(e))
        .collect::<Result<Vec<_>, _>>()?;
    let target = match name {
        "DATEADD" | "DATESUB" => Type::Date,
        "TIMEADD" | "TIMESUB" => Type::Time,
        _ => Type::Timestamp,
    };
    let fits = matches!(rest[0].ty, None | Some(Type::Int))
        && rest[1].ty.as_ref().is_none_or(|t| *t == target);
    if !fits {
        let mut shown = vec![Typed {
            expr: datafusion::logical_expr::lit(ScalarValue::Null),
            ty: None,
        }];
        shown.append(&mut rest);
        return Err(PlanError::Invalid(format!(
            "Function '{}' does not accept parameters (INTERVALUNIT, {}).",
            name.to_lowercase(),
            type_names(&shown[1..])
        )));
    }
    let value = scope.coerce_pub(rest.remove(1), &target)?.expr;
    let interval = scope.coerce_pub(rest.remove(0), &Type::Int)?.expr;
    let sign: i64 = if name.ends_with("SUB") { -1 } else { 1 };
    let dt = crate::types::arrow_type(&target, scope.types)?;
    let kind = target.clone();
    let e = call_strict(name, dt, vec![interval, value], move |row| {
        let (Some(n), Some(v)) = (int(&row[0]), int(&row[1])) else {
            return Ok(ScalarValue::Null);
        };
        let n = n * sign;
        Ok(match kind {
            Type::Date => ScalarValue::Date32(Some((v + unit.to_days(n)) as i32)),
            Type::Time => ScalarValue::Time32Millisecond(Some(
                (v + unit.to_millis(n)).rem_euclid(DAY_MS) as i32,
            )),
            _ => ts_value(v.saturating_add(unit.to_millis(n))),
        })
    });
    Ok(Typed {
        expr: e,
        ty: Some(target),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_timestamps_fill_in_the_rest() {
        assert_eq!(partial_timestamp_millis("2018"), Some(1514764800000));
        assert_eq!(
            partial_timestamp_millis("2018-01-01T00:00:00.001"),
            Some(1514764800001)
        );
        assert_eq!(
            partial_timestamp_millis("2018-01-01T00:00:01"),
            Some(1514764801000)
        );
        // 2019-01-01T00:00 at +04:45 is 2018-12-31T19:15Z.
        assert_eq!(
            partial_timestamp_millis("2019-01-01T00:00:00+0445"),
            Some(1546283700000)
        );
        assert_eq!(partial_timestamp_millis("not a time"), None);
        // Hour 24 is the end of the day, as Java reads it; only at exactly midnight.
        assert_eq!(
            partial_timestamp_millis("2020-02-24T24"),
            partial_timestamp_millis("2020-02-25")
        );
        assert_eq!(partial_timestamp_millis("2020-02-24T24:30"), None);
    }

    #[test]
    fn units_truncate_like_java() {
        let cases = [
            (Unit::Millis, 10, 10, 0),
            (Unit::Seconds, -2, -2000, 0),
            (Unit::Hours, 25, 90_000_000, 1),
            (Unit::Hours, -25, -90_000_000, -1),
            (Unit::Nanos, 1_500_000, 1, 0),
            (Unit::Days, 3, 3 * DAY_MS, 3),
        ];
        for (unit, v, millis, days) in cases {
            assert_eq!(unit.to_millis(v), millis, "{unit:?} {v}");
            assert_eq!(unit.to_days(v), days, "{unit:?} {v}");
        }
        assert_eq!(Unit::parse("milliseconds"), Some(Unit::Millis));
        assert_eq!(Unit::parse("WEEKS"), None);
    }
}

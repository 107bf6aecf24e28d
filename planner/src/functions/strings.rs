//! String, bytes, math, null-handling, JSON and URL functions.
//!
//! Most are DataFusion closures over one row's values (see [`super::udf`]): ksqlDB's rules
//! (Java string semantics, NULL for bad input instead of errors, HALF_UP rounding) differ
//! from DataFusion's built-ins in many small ways, and a per-row closure states them
//! plainly.

mod impls;
mod json;

#[cfg(test)]
mod tests;

use arrow::datatypes::DataType;
use brook_sql::Type;
use datafusion::functions::expr_fn as f;
use datafusion::logical_expr::{cast, lit, Expr};

use crate::expr::{common_type, is_numeric, Scope, Typed};
use crate::types::arrow_type;
use crate::PlanError;

use super::{arity, Lookup};

/// Compiles `name(args)` if this family has the function.
pub(crate) fn call(scope: &Scope, name: &str, args: &mut Vec<Typed>) -> Lookup {
    // Cloned, not taken: names this family does not own go on to the next family with
    // their arguments intact (planning-time cost only).
    match compile(scope, name, args.clone()) {
        Ok(Some(t)) => {
            args.clear();
            Some(Ok(t))
        }
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

fn typed(ty: Type, expr: Expr) -> Result<Option<Typed>, PlanError> {
    Ok(Some(Typed { expr, ty: Some(ty) }))
}

fn type_names(args: &[Typed]) -> String {
    args.iter()
        .map(|a| {
            a.ty.as_ref()
                .map(|t| t.to_string())
                .unwrap_or("null".into())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// ksqlDB's message when no overload takes these argument types.
fn rejected(name: &str, args: &[Typed]) -> PlanError {
    PlanError::Invalid(format!(
        "Function '{}' does not accept parameters ({}).",
        name.to_lowercase(),
        type_names(args)
    ))
}

fn ambiguous(name: &str, args: &[Typed]) -> PlanError {
    PlanError::Invalid(format!(
        "Function '{}' cannot be resolved due to ambiguous method parameters ({}).",
        name.to_lowercase(),
        type_names(args)
    ))
}

/// Checks each argument against the allowed types (untyped NULL fits anything).
fn check(name: &str, args: &[Typed], ok: &[fn(&Type) -> bool]) -> Result<(), PlanError> {
    for (a, f) in args.iter().zip(ok) {
        if let Some(t) = &a.ty {
            if !f(t) {
                return Err(rejected(name, args));
            }
        }
    }
    Ok(())
}

fn is_str(t: &Type) -> bool {
    *t == Type::String
}
fn is_bytes(t: &Type) -> bool {
    *t == Type::Bytes
}
fn is_int(t: &Type) -> bool {
    matches!(t, Type::Int | Type::Bigint)
}
fn is_num(t: &Type) -> bool {
    is_numeric(t)
}
fn any(_: &Type) -> bool {
    true
}

fn arrow(scope: &Scope, t: &Type) -> Result<DataType, PlanError> {
    arrow_type(t, scope.types)
}

fn to(scope: &Scope, a: Typed, t: &Type) -> Result<Expr, PlanError> {
    Ok(scope.coerce_pub(a, t)?.expr)
}

fn all_to(scope: &Scope, args: Vec<Typed>, t: &Type) -> Result<Vec<Expr>, PlanError> {
    args.into_iter().map(|a| to(scope, a, t)).collect()
}

/// The string-or-bytes type of a function that has both overloads (STRING when unknown).
fn str_or_bytes(name: &str, args: &[Typed]) -> Result<Type, PlanError> {
    let mut found: Option<Type> = None;
    for a in args {
        match (&a.ty, &found) {
            (None, _) => {}
            (Some(t), _) if !(is_str(t) || is_bytes(t)) => return Err(rejected(name, args)),
            (Some(t), None) => found = Some(t.clone()),
            (Some(t), Some(f)) if t != f => return Err(rejected(name, args)),
            _ => {}
        }
    }
    Ok(found.unwrap_or(Type::String))
}

fn compile(scope: &Scope, name: &str, mut args: Vec<Typed>) -> Result<Option<Typed>, PlanError> {
    use impls as m;
    let n = name;
    match name {
        // ---- math ----
        "ABS" | "CEIL" | "FLOOR" | "SIGN" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_num])?;
            let ty = args[0].ty.clone().unwrap_or(Type::Double);
            let e = to(scope, args.remove(0), &ty)?;
            if name == "SIGN" {
                return typed(Type::Int, m::sign(e));
            }
            let dt = arrow(scope, &ty)?;
            typed(ty, m::abs_ceil_floor(name, dt, e))
        }
        "ROUND" | "TRUNC" => {
            arity(n, &args, 1, 2)?;
            check(n, &args, &[is_num, is_int])?;
            let ty = args[0].ty.clone().unwrap_or(Type::Double);
            let places = if args.len() == 2 {
                Some(to(scope, args.remove(1), &Type::Int)?)
            } else {
                None
            };
            let round = name == "ROUND";
            let (arg_ty, ret) = match (&ty, places.is_some()) {
                (Type::Int | Type::Bigint, false) => (ty.clone(), ty.clone()),
                (Type::Decimal { precision, scale }, false) => (
                    ty.clone(),
                    Type::Decimal {
                        precision: precision.saturating_sub(*scale).max(1),
                        scale: 0,
                    },
                ),
                (Type::Decimal { .. }, true) => (ty.clone(), ty.clone()),
                (_, false) => (Type::Double, Type::Bigint),
                (_, true) => (Type::Double, Type::Double),
            };
            let e = to(scope, args.remove(0), &arg_ty)?;
            let dt = arrow(scope, &ret)?;
            let mut call_args = vec![e];
            call_args.extend(places);
            typed(ret, m::round_trunc(name, round, dt, call_args))
        }
        "SQRT" | "EXP" | "LN" | "CBRT" | "ACOS" | "ASIN" | "ATAN" | "COS" | "COSH" | "COT"
        | "DEGREES" | "RADIANS" | "SIN" | "SINH" | "TAN" | "TANH" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_num])?;
            let e = to(scope, args.remove(0), &Type::Double)?;
            typed(Type::Double, m::unary_math(name, e))
        }
        "LOG" | "ATAN2" | "POWER" => {
            let min = if name == "LOG" { 1 } else { 2 };
            arity(n, &args, min, 2)?;
            check(n, &args, &[is_num, is_num])?;
            let es = all_to(scope, args, &Type::Double)?;
            typed(Type::Double, m::binary_math(name, es))
        }
        "PI" => {
            arity(n, &args, 0, 0)?;
            typed(Type::Double, lit(std::f64::consts::PI))
        }
        "RANDOM" => {
            arity(n, &args, 0, 0)?;
            typed(Type::Double, f::random())
        }
        "GEO_DISTANCE" => {
            arity(n, &args, 4, 5)?;
            check(n, &args, &[is_num, is_num, is_num, is_num, is_str])?;
            let unit = if args.len() == 5 {
                Some(to(scope, args.remove(4), &Type::String)?)
            } else {
                None
            };
            let mut es = all_to(scope, args, &Type::Double)?;
            es.extend(unit);
            typed(Type::Double, m::geo_distance(es))
        }
        "GREATEST" | "LEAST" => {
            if args.is_empty() {
                return Err(rejected(n, &args));
            }
            let ty = extremum_type(n, &args)?;
            let dt = arrow(scope, &ty)?;
            let es = all_to(scope, args, &ty)?;
            typed(ty, m::extremum(name == "GREATEST", dt, es))
        }

        // ---- strings and bytes ----
        "UCASE"
        | "LCASE"
        | "TRIM"
        | "LTRIM"
        | "RTRIM"
        | "INITCAP"
        | "URL_DECODE_PARAM"
        | "URL_ENCODE_PARAM"
        | "URL_EXTRACT_FRAGMENT"
        | "URL_EXTRACT_HOST"
        | "URL_EXTRACT_PATH"
        | "URL_EXTRACT_PROTOCOL"
        | "URL_EXTRACT_QUERY" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(Type::String, m::string_to_string(name, e))
        }
        "URL_EXTRACT_PORT" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(Type::Int, m::url_port(e))
        }
        "URL_EXTRACT_PARAMETER" => {
            arity(n, &args, 2, 2)?;
            check(n, &args, &[is_str, is_str])?;
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::String, m::url_parameter(es))
        }
        "MD5" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let e = to(scope, args.remove(0), &Type::String)?;
            // DataFusion's md5 answers a Utf8View.
            typed(Type::String, cast(f::md5(e), DataType::Utf8))
        }
        "LEN" => {
            arity(n, &args, 1, 1)?;
            let ty = str_or_bytes(n, &args)?;
            let e = to(scope, args.remove(0), &ty)?;
            typed(Type::Int, m::len(e))
        }
        "CONCAT" | "CONCAT_WS" => {
            let min = if name == "CONCAT" { 1 } else { 2 };
            if args.len() < min {
                return Err(rejected(n, &args));
            }
            let ty = str_or_bytes(n, &args)?;
            let dt = arrow(scope, &ty)?;
            let es = all_to(scope, args, &ty)?;
            typed(ty, m::concat(name == "CONCAT_WS", dt, es))
        }
        "LPAD" | "RPAD" => {
            arity(n, &args, 3, 3)?;
            let ty = str_or_bytes(n, &[args[0].clone(), args[2].clone()])
                .map_err(|_| rejected(n, &args))?;
            check(n, &args, &[any, is_int, any])?;
            let pad = to(scope, args.remove(2), &ty)?;
            let len = to(scope, args.remove(1), &Type::Int)?;
            let s = to(scope, args.remove(0), &ty)?;
            let dt = arrow(scope, &ty)?;
            typed(ty, m::pad(name == "LPAD", dt, vec![s, len, pad]))
        }
        "SUBSTRING" | "SUBSTR" => {
            arity(n, &args, 2, 3)?;
            check(n, &args, &[any, is_int, is_int])?;
            let ty = str_or_bytes(n, &args[..1]).map_err(|_| rejected(n, &args))?;
            let mut es = vec![to(scope, args.remove(0), &ty)?];
            es.extend(all_to(scope, args, &Type::Int)?);
            let dt = arrow(scope, &ty)?;
            typed(ty, m::substring(dt, es))
        }
        "SPLIT" => {
            arity(n, &args, 2, 2)?;
            let ty = str_or_bytes(n, &args)?;
            let ret = Type::Array(Box::new(ty.clone()));
            let dt = arrow(scope, &ret)?;
            let es = all_to(scope, args, &ty)?;
            typed(ret, m::split(dt, es))
        }
        "SPLIT_TO_MAP" => {
            arity(n, &args, 3, 3)?;
            check(n, &args, &[is_str, is_str, is_str])?;
            let ret = Type::Map(Box::new(Type::String), Box::new(Type::String));
            let dt = arrow(scope, &ret)?;
            let es = all_to(scope, args, &Type::String)?;
            typed(ret, m::split_to_map(dt, es))
        }
        "CHR" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[|t| is_str(t) || *t == Type::Int])?;
            let ty = args[0].ty.clone().unwrap_or(Type::Int);
            let e = to(scope, args.remove(0), &ty)?;
            typed(Type::String, m::chr(e))
        }
        "INSTR" => {
            arity(n, &args, 2, 4)?;
            check(n, &args, &[is_str, is_str, is_int, is_int])?;
            let mut es = vec![
                to(scope, args.remove(0), &Type::String)?,
                to(scope, args.remove(0), &Type::String)?,
            ];
            es.extend(all_to(scope, args, &Type::Int)?);
            typed(Type::Int, m::instr(es))
        }
        "REPLACE" | "REGEXP_REPLACE" => {
            arity(n, &args, 3, 3)?;
            check(n, &args, &[is_str, is_str, is_str])?;
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::String, m::replace(name == "REGEXP_REPLACE", es))
        }
        "REGEXP_EXTRACT" | "REGEXP_EXTRACT_ALL" => {
            arity(n, &args, 2, 3)?;
            check(n, &args, &[is_str, is_str, is_int])?;
            let group = if args.len() == 3 {
                Some(to(scope, args.remove(2), &Type::Int)?)
            } else {
                None
            };
            let mut es = all_to(scope, args, &Type::String)?;
            es.extend(group);
            if name == "REGEXP_EXTRACT" {
                typed(Type::String, m::regexp_extract(es))
            } else {
                let ret = Type::Array(Box::new(Type::String));
                typed(ret.clone(), m::regexp_extract_all(arrow(scope, &ret)?, es))
            }
        }
        "REGEXP_SPLIT_TO_ARRAY" => {
            arity(n, &args, 2, 2)?;
            check(n, &args, &[is_str, is_str])?;
            let ret = Type::Array(Box::new(Type::String));
            let es = all_to(scope, args, &Type::String)?;
            typed(ret.clone(), m::regexp_split(arrow(scope, &ret)?, es))
        }
        "MASK" | "MASK_KEEP_LEFT" | "MASK_KEEP_RIGHT" | "MASK_LEFT" | "MASK_RIGHT" => {
            let counted = name != "MASK";
            let fixed = if counted { 2 } else { 1 };
            arity(n, &args, fixed, fixed + 4)?;
            let mut kinds: Vec<fn(&Type) -> bool> = vec![is_str];
            if counted {
                kinds.push(is_int);
            }
            kinds.extend([is_str as fn(&Type) -> bool; 4]);
            check(n, &args, &kinds)?;
            let mut es = Vec::new();
            for (i, a) in args.into_iter().enumerate() {
                let t = if counted && i == 1 {
                    Type::Int
                } else {
                    Type::String
                };
                es.push(to(scope, a, &t)?);
            }
            typed(Type::String, m::mask(name, es))
        }
        "TO_BYTES" => {
            arity(n, &args, 2, 2)?;
            check(n, &args, &[is_str, is_str])?;
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::Bytes, m::to_bytes(es))
        }
        "FROM_BYTES" => {
            arity(n, &args, 2, 2)?;
            check(n, &args, &[is_bytes, is_str])?;
            let enc = to(scope, args.remove(1), &Type::String)?;
            let b = to(scope, args.remove(0), &Type::Bytes)?;
            typed(Type::String, m::from_bytes(vec![b, enc]))
        }
        "ENCODE" => {
            arity(n, &args, 3, 3)?;
            check(n, &args, &[is_str, is_str, is_str])?;
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::String, m::encode(es))
        }
        "INT_FROM_BYTES" | "BIGINT_FROM_BYTES" | "DOUBLE_FROM_BYTES" => {
            arity(n, &args, 1, 2)?;
            check(n, &args, &[is_bytes, is_str])?;
            let order = if args.len() == 2 {
                Some(to(scope, args.remove(1), &Type::String)?)
            } else {
                None
            };
            let mut es = vec![to(scope, args.remove(0), &Type::Bytes)?];
            es.extend(order);
            let ret = match name {
                "INT_FROM_BYTES" => Type::Int,
                "BIGINT_FROM_BYTES" => Type::Bigint,
                _ => Type::Double,
            };
            typed(ret.clone(), m::number_from_bytes(arrow(scope, &ret)?, es))
        }
        "UUID" => {
            arity(n, &args, 0, 1)?;
            if args.is_empty() {
                return typed(Type::String, f::uuid());
            }
            check(n, &args, &[is_bytes])?;
            let e = to(scope, args.remove(0), &Type::Bytes)?;
            typed(Type::String, m::uuid_from_bytes(e))
        }

        // ---- NULL helpers ----
        "COALESCE" | "IFNULL" => {
            if name == "COALESCE" && args.is_empty() {
                // ksqlDB names this function upper-case in this one message.
                return Err(PlanError::Invalid(
                    "Function 'COALESCE' does not accept parameters ().".into(),
                ));
            }
            if name == "IFNULL" {
                arity(n, &args, 2, 2)?;
            }
            let Some(ty) = args.iter().find_map(|a| a.ty.clone()) else {
                return Err(ambiguous(n, &args));
            };
            if args.iter().any(|a| a.ty.as_ref().is_some_and(|t| *t != ty)) {
                return Err(ambiguous(n, &args));
            }
            let es = all_to(scope, args, &ty)?;
            let dt = arrow(scope, &ty)?;
            typed(ty, super::compare::coalesce(es, dt))
        }
        "NULLIF" => {
            arity(n, &args, 2, 2)?;
            let Some(ty) = args[0].ty.clone().or(args[1].ty.clone()) else {
                return Err(ambiguous(n, &args));
            };
            if let Some(t) = &args[1].ty {
                if common_type(&ty, t).is_none() {
                    return Err(rejected(n, &args));
                }
            }
            let b = to(scope, args.remove(1), &ty)?;
            let a = to(scope, args.remove(0), &ty)?;
            // DataFusion's NULLIF takes `a` once (a CASE would copy it, doubling the plan
            // with every NULLIF nested in it).
            typed(ty, datafusion::functions::core::expr_fn::nullif(a, b))
        }

        // ---- JSON ----
        "EXTRACTJSONFIELD" => {
            arity(n, &args, 2, 2)?;
            check(n, &args, &[is_str, is_str])?;
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::String, m::extract_json_field(es))
        }
        "IS_JSON_STRING" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(Type::Boolean, m::is_json_string(e))
        }
        "JSON_ARRAY_LENGTH" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(Type::Int, m::json_array_length(e))
        }
        "JSON_CONCAT" => {
            if args.is_empty() {
                return Err(rejected(n, &args));
            }
            if args
                .iter()
                .any(|a| a.ty.as_ref().is_some_and(|t| !is_str(t)))
            {
                return Err(rejected(n, &args));
            }
            let es = all_to(scope, args, &Type::String)?;
            typed(Type::String, m::json_concat(es))
        }
        "JSON_KEYS" | "JSON_ITEMS" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let ret = Type::Array(Box::new(Type::String));
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(
                ret.clone(),
                m::json_list(name == "JSON_KEYS", arrow(scope, &ret)?, e),
            )
        }
        "JSON_RECORDS" => {
            arity(n, &args, 1, 1)?;
            check(n, &args, &[is_str])?;
            let ret = Type::Map(Box::new(Type::String), Box::new(Type::String));
            let e = to(scope, args.remove(0), &Type::String)?;
            typed(ret.clone(), m::json_records(arrow(scope, &ret)?, e))
        }
        "JSON_ARRAY_CONTAINS" => {
            arity(n, &args, 2, 2)?;
            check(
                n,
                &args,
                &[is_str, |t| {
                    is_numeric(t) || matches!(t, Type::String | Type::Boolean)
                }],
            )?;
            let v = args.remove(1);
            let v = match &v.ty {
                Some(Type::Decimal { .. }) => to(scope, v, &Type::Double)?,
                Some(_) => v.expr,
                None => to(scope, v, &Type::String)?,
            };
            let j = to(scope, args.remove(0), &Type::String)?;
            typed(Type::Boolean, m::json_array_contains(vec![j, v]))
        }
        "TO_JSON_STRING" => {
            arity(n, &args, 1, 1)?;
            let a = args.remove(0);
            let e = match &a.ty {
                Some(_) => a.expr,
                None => to(scope, a, &Type::String)?,
            };
            typed(Type::String, m::to_json_string(e))
        }
        _ => Ok(None),
    }
}

/// The type GREATEST and LEAST compare in, by ksqlDB's overload resolution: one type for
/// all, DOUBLE when any is DOUBLE, DECIMALs widened, strings read as dates and times.
fn extremum_type(name: &str, args: &[Typed]) -> Result<Type, PlanError> {
    let types: Vec<&Type> = args.iter().filter_map(|a| a.ty.as_ref()).collect();
    let Some(first) = types.first() else {
        return Err(ambiguous(name, args));
    };
    if types.iter().all(|t| t == first) {
        return Ok((*first).clone());
    }
    if types.iter().all(|t| is_numeric(t)) {
        if types.contains(&&Type::Double) {
            return Ok(Type::Double);
        }
        if types.iter().all(|t| matches!(t, Type::Decimal { .. })) {
            let mut acc = (*first).clone();
            for t in &types[1..] {
                acc = common_type(&acc, t).ok_or_else(|| ambiguous(name, args))?;
            }
            return Ok(acc);
        }
        return Err(ambiguous(name, args));
    }
    let temporal: Vec<&&Type> = types
        .iter()
        .filter(|t| matches!(t, Type::Date | Type::Time | Type::Timestamp))
        .collect();
    if let Some(t) = temporal.first() {
        if types.iter().all(|x| x == *t || **x == Type::String) {
            return Ok((**t).clone());
        }
    }
    Err(rejected(name, args))
}

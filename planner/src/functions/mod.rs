//! ksqlDB's scalar functions, mapped onto DataFusion's where their semantics agree.
//!
//! Each entry checks argument types the way ksqlDB resolves a function and gives the
//! ksqlDB result type. Functions not listed here are reported as unknown, by name.

use arrow::datatypes::DataType;
use brook_sql::Type;
use datafusion::functions::expr_fn as f;
use datafusion::logical_expr::{cast, lit, Expr};

use crate::expr::{is_numeric, Scope, Typed};
use crate::PlanError;

mod collections;
mod datetime;
mod strings;

/// The result of a family's lookup: `None` when the family has no function of that name.
pub(crate) type Lookup = Option<Result<Typed, PlanError>>;

pub(crate) fn arity(name: &str, args: &[Typed], min: usize, max: usize) -> Result<(), PlanError> {
    if args.len() < min || args.len() > max {
        let types: Vec<String> = args
            .iter()
            .map(|a| a.ty.as_ref().map(|t| t.to_string()).unwrap_or("NULL".into()))
            .collect();
        return Err(PlanError::Invalid(format!(
            "Function '{}' does not accept parameters ({}).",
            name.to_lowercase(),
            types.join(", ")
        )));
    }
    Ok(())
}

pub(crate) fn expect(name: &str, a: &Typed, ok: impl Fn(&Type) -> bool, what: &str) -> Result<(), PlanError> {
    match &a.ty {
        None => Ok(()),
        Some(t) if ok(t) => Ok(()),
        Some(t) => Err(PlanError::Invalid(format!(
            "Function '{}' does not accept parameters of type {t}: expected {what}.",
            name.to_lowercase()
        ))),
    }
}

pub(crate) fn string(scope: &Scope, t: Typed) -> Result<Expr, PlanError> {
    Ok(scope.coerce_pub(t, &Type::String)?.expr)
}

/// `COALESCE` as a CASE: DataFusion's own coalesce must be rewritten by its optimizer
/// before it can run, and Brook plans expressions without that pass.
pub(crate) fn coalesce(mut exprs: Vec<Expr>) -> Result<Expr, PlanError> {
    let Some(last) = exprs.pop() else {
        return Err(PlanError::Invalid("COALESCE needs an argument".into()));
    };
    if exprs.is_empty() {
        return Ok(last);
    }
    let mut builder: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> =
        None;
    for e in exprs {
        let cond = datafusion::logical_expr::is_not_null(e.clone());
        builder = Some(match builder {
            None => datafusion::logical_expr::when(cond, e),
            Some(mut b) => b.when(cond, e),
        });
    }
    match builder {
        Some(mut b) => b
            .otherwise(last)
            .map_err(|e| PlanError::DataFusion(e.to_string())),
        None => Ok(last),
    }
}

/// Calls ksqlDB function `name` (upper-case) on compiled arguments.
pub fn call(scope: &Scope, name: &str, mut args: Vec<Typed>) -> Result<Typed, PlanError> {
    // Each family owns its functions; the first that knows the name answers.
    let families: [fn(&Scope, &str, &mut Vec<Typed>) -> Lookup; 3] =
        [strings::call, collections::call, datetime::call];
    for family in families {
        if let Some(r) = family(scope, name, &mut args) {
            return r;
        }
    }
    let s = |t: Type, e: Expr| Ok(Typed { expr: e, ty: Some(t) });
    match name {
        "UCASE" | "LCASE" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], |t| *t == Type::String, "STRING")?;
            let a = string(scope, args.remove(0))?;
            s(Type::String, if name == "UCASE" { f::upper(a) } else { f::lower(a) })
        }
        "TRIM" | "LTRIM" | "RTRIM" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], |t| *t == Type::String, "STRING")?;
            let a = string(scope, args.remove(0))?;
            s(
                Type::String,
                match name {
                    "TRIM" => f::btrim(vec![a]),
                    "LTRIM" => f::ltrim(vec![a]),
                    _ => f::rtrim(vec![a]),
                },
            )
        }
        "LEN" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], |t| matches!(t, Type::String | Type::Bytes), "STRING or BYTES")?;
            let a = args.remove(0);
            let e = if a.ty == Some(Type::Bytes) {
                f::octet_length(a.expr)
            } else {
                f::character_length(string(scope, a)?)
            };
            s(Type::Int, cast(e, DataType::Int32))
        }
        "CONCAT" => {
            if args.is_empty() {
                arity(name, &args, 1, usize::MAX)?;
            }
            let exprs = args
                .into_iter()
                .map(|a| string(scope, a))
                .collect::<Result<Vec<_>, _>>()?;
            s(Type::String, f::concat(exprs))
        }
        "ABS" | "CEIL" | "FLOOR" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], is_numeric, "a number")?;
            let a = args.remove(0);
            let ty = a.ty.clone().unwrap_or(Type::Double);
            let e = match name {
                "ABS" => f::abs(a.expr),
                "CEIL" => f::ceil(a.expr),
                _ => f::floor(a.expr),
            };
            let dt = crate::types::arrow_type(&ty, scope.types)?;
            s(ty, cast(e, dt))
        }
        "SQRT" | "EXP" | "LN" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], is_numeric, "a number")?;
            let a = scope.coerce_pub(args.remove(0), &Type::Double)?.expr;
            s(
                Type::Double,
                match name {
                    "SQRT" => f::sqrt(a),
                    "EXP" => f::exp(a),
                    _ => f::ln(a),
                },
            )
        }
        "COALESCE" | "IFNULL" => {
            if name == "IFNULL" {
                arity(name, &args, 2, 2)?;
            } else {
                arity(name, &args, 1, usize::MAX)?;
            }
            let ty = args
                .iter()
                .find_map(|a| a.ty.clone())
                .unwrap_or(Type::String);
            let exprs = args
                .into_iter()
                .map(|a| {
                    if a.ty.is_some() && a.ty.as_ref() != Some(&ty) {
                        return Err(PlanError::Invalid(format!(
                            "Function '{}' cannot be resolved due to ambiguous method parameters",
                            name.to_lowercase()
                        )));
                    }
                    scope.coerce_pub(a, &ty).map(|t| t.expr)
                })
                .collect::<Result<Vec<_>, _>>()?;
            s(ty, coalesce(exprs)?)
        }
        "NULLIF" => {
            arity(name, &args, 2, 2)?;
            let ty = args[0].ty.clone().or(args[1].ty.clone()).unwrap_or(Type::String);
            let b = scope.coerce_pub(args.remove(1), &ty)?.expr;
            let a = scope.coerce_pub(args.remove(0), &ty)?.expr;
            s(ty, f::nullif(a, b))
        }
        "AS_VALUE" => {
            arity(name, &args, 1, 1)?;
            Ok(args.remove(0))
        }
        "ARRAY_LENGTH" => {
            arity(name, &args, 1, 1)?;
            expect(name, &args[0], |t| matches!(t, Type::Array(_)), "an ARRAY")?;
            let a = args.remove(0);
            s(
                Type::Int,
                cast(datafusion::functions_nested::expr_fn::cardinality(a.expr), DataType::Int32),
            )
        }
        "ARRAY_CONTAINS" => {
            arity(name, &args, 2, 2)?;
            let Some(Type::Array(item)) = args[0].ty.clone() else {
                return Err(PlanError::Invalid(
                    "Function 'array_contains' expects an ARRAY as its first argument".into(),
                ));
            };
            let needle = scope.coerce_pub(args.remove(1), &item)?.expr;
            let hay = args.remove(0).expr;
            let has = datafusion::functions_nested::expr_fn::array_has(hay.clone(), needle);
            // ksqlDB answers false, not NULL, for a NULL array.
            s(Type::Boolean, coalesce(vec![has, lit(false)])?)
        }
        _ => Err(PlanError::Invalid(format!(
            "Can't find any functions with the name '{name}'"
        ))),
    }
}

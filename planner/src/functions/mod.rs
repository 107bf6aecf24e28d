//! ksqlDB's scalar functions, mapped onto DataFusion's where their semantics agree.
//!
//! Each entry checks argument types the way ksqlDB resolves a function and gives the
//! ksqlDB result type. Functions not listed here are reported as unknown, by name.

use crate::expr::{Scope, Typed};
use crate::PlanError;

pub(crate) mod cast;
pub(crate) mod collections;
pub(crate) mod compare;
pub(crate) mod datetime;
mod strings;
pub(crate) mod udf;

/// The result of a family's lookup: `None` when the family has no function of that name.
pub(crate) type Lookup = Option<Result<Typed, PlanError>>;

/// Argument types as ksqlDB lists them in messages.
pub(crate) fn type_names(args: &[Typed]) -> String {
    args.iter()
        .map(|a| {
            a.ty.as_ref()
                .map(|t| t.to_string())
                .unwrap_or("NULL".into())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// ksqlDB's message when no overload takes these argument types.
pub(crate) fn rejected(name: &str, args: &[Typed]) -> PlanError {
    PlanError::Invalid(format!(
        "Function '{}' does not accept parameters ({}).",
        name.to_lowercase(),
        type_names(args)
    ))
}

pub(crate) fn arity(name: &str, args: &[Typed], min: usize, max: usize) -> Result<(), PlanError> {
    if args.len() < min || args.len() > max {
        return Err(rejected(name, args));
    }
    Ok(())
}

/// Calls ksqlDB function `name` (upper-case) on compiled arguments.
pub fn call(scope: &Scope, name: &str, mut args: Vec<Typed>) -> Result<Typed, PlanError> {
    // AS_VALUE copies a value unchanged; what it changes is where the planner puts the
    // column (a value, not a key), which the planner decides from the call itself.
    if name == "AS_VALUE" {
        arity(name, &args, 1, 1)?;
        return Ok(args.remove(0));
    }
    // Each family owns its functions; the first that knows the name answers.
    let families: [Family; 3] = [strings::call, collections::call, datetime::call];
    for family in families {
        if let Some(r) = family(scope, name, &mut args) {
            return r;
        }
    }
    Err(PlanError::Invalid(format!(
        "Can't find any functions with the name '{name}'"
    )))
}

type Family = fn(&Scope, &str, &mut Vec<Typed>) -> Lookup;

/// Parses `text` with a Java DateTimeFormatter pattern (as TIMESTAMP_FORMAT gives it) into
/// epoch milliseconds; UTC unless the text names a zone.
pub fn parse_timestamp(pattern: &str, text: &str) -> Result<i64, String> {
    let zone = datetime::pattern::Zone::parse("UTC").ok_or("the UTC zone is unknown")?;
    datetime::pattern::parse_timestamp(pattern, text, zone)
}

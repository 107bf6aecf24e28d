//! ARRAY and MAP functions, lambdas (TRANSFORM, REDUCE, FILTER) and struct helpers.

use crate::expr::{Scope, Typed};

use super::Lookup;

/// Compiles `name(args)` if this family has the function.
pub(crate) fn call(_scope: &Scope, name: &str, _args: &mut Vec<Typed>) -> Lookup {
    match name {
        _ => None,
    }
}

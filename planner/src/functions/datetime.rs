//! Date, time and timestamp functions.

use crate::expr::{Scope, Typed};

use super::Lookup;

/// Compiles `name(args)` if this family has the function.
pub(crate) fn call(_scope: &Scope, name: &str, _args: &mut Vec<Typed>) -> Lookup {
    match name {
        _ => None,
    }
}

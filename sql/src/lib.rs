//! The ksqlDB SQL dialect for Brook.
//!
//! `parse` turns text into [`ParsedStatement`]s: Brook's own tree for ksqlDB's statements
//! ([`Statement`], [`Query`]) around sqlparser's expressions ([`sqlparser::ast::Expr`]).
//! Every statement displays back to SQL that parses to the same tree.

pub mod ast;
pub mod dialect;
mod error;
pub mod limits;
mod parser;
pub mod types;
mod vars;

pub use ast::*;
pub use dialect::{KsqlDialect, LAMBDA_OP};
pub use error::{ParseError, ParseErrorKind};
pub use parser::{is_literal, parse, parse_expr, parse_one, parse_type, ParsedStatement};
pub use sqlparser;
pub use types::{cast_type, StructField, Type};
pub use vars::substitute;

use sqlparser::ast::{BinaryOperator, Expr, Ident};

/// `x => body` / `(x, y) => body`: the parameters and the body.
pub fn as_lambda(e: &Expr) -> Option<(Vec<&Ident>, &Expr)> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Custom(op),
            right,
        } if op == LAMBDA_OP => {
            let params = match left.as_ref() {
                Expr::Identifier(i) => vec![i],
                Expr::Tuple(items) => items
                    .iter()
                    .map(|i| match i {
                        Expr::Identifier(i) => Some(i),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            Some((params, right))
        }
        _ => None,
    }
}

/// `base -> *`: the struct expression whose fields are all selected.
pub fn as_struct_all(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Arrow,
            right,
        } if matches!(right.as_ref(), Expr::Wildcard(_)) => Some(left),
        _ => None,
    }
}

/// `base -> field`: the struct expression and the field name.
pub fn as_dereference(e: &Expr) -> Option<(&Expr, &Ident)> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Arrow,
            right,
        } => match right.as_ref() {
            Expr::Identifier(f) => Some((left, f)),
            _ => None,
        },
        _ => None,
    }
}

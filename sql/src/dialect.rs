//! The ksqlDB dialect as sqlparser hooks.
//!
//! ksqlDB's expression grammar differs from ANSI in three places that sqlparser cannot be
//! configured for, so this dialect takes them over:
//! - `a -> b` dereferences a struct field and binds as tightly as `.`; it is kept as a
//!   [`BinaryOperator::Arrow`] whose right side is the field's identifier.
//! - lambdas `x => body` and `(x, y) => body` become a [`BinaryOperator::Custom`] `=>` whose
//!   left side is the parameter (or a tuple of parameters); sqlparser's own lambda node
//!   displays with `->`, which ksqlDB reads as a dereference.
//! - `CAST(e AS type)` takes ksqlDB's types (`MAP<K, V>`, `STRUCT<f T>` …), kept as a custom
//!   data type whose name is the type's canonical text (see [`crate::cast_type`]).

use sqlparser::ast::{
    helpers::attached_token::AttachedToken, AccessExpr, BinaryOperator, CastKind, DataType, Expr,
    Ident, ObjectName, Subscript,
};
use sqlparser::dialect::{Dialect, Precedence};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::types::parse_type_tokens;

/// The operator text used for lambdas in the syntax tree.
pub const LAMBDA_OP: &str = "=>";

#[derive(Debug, Default, Clone, Copy)]
pub struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    /// ksqlDB's DIGIT_IDENTIFIER: `1R` is a name.
    fn supports_numeric_prefix(&self) -> bool {
        true
    }

    /// ksqlDB has no named arguments: `name := value` in STRUCT(…) and MAP(…) is parsed
    /// as an expression (a [`BinaryOperator::Assignment`]). Telling sqlparser there are
    /// named arguments made it parse every argument twice (once to look for a name), which
    /// doubled with each nested call: `f(f(f(…)))` took exponential time.
    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        false
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        false
    }

    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        false
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        if lambda_ahead(parser) {
            return Some(parse_lambda(parser));
        }
        let [first, second] = parser.peek_tokens();
        if let Token::Word(w) = &first {
            if w.quote_style.is_none() && w.value == "CAST" && second == Token::LParen {
                return Some(parse_cast(parser));
            }
        }
        None
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow | Token::LBracket => Some(Ok(self.prec_value(Precedence::Period))),
            _ => None,
        }
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow | Token::LBracket => Some(parse_access_chain(parser, expr.clone())),
            _ => None,
        }
    }
}

/// `base->field`, `base->*` and `base[index]`, as many as follow one another. sqlparser
/// hands an infix hook its left side by reference: the whole chain is taken here so that
/// the base is copied once, not once per step (which made `a->b->…` quadratic).
fn parse_access_chain(parser: &mut Parser, mut expr: Expr) -> Result<Expr, ParserError> {
    loop {
        match parser.peek_token_ref().token {
            Token::Arrow => {
                parser.next_token();
                // `s->*` selects every field of the struct, and ends the chain.
                if let Token::Mul = parser.peek_token_ref().token {
                    let star = parser.next_token();
                    return Ok(Expr::BinaryOp {
                        left: Box::new(expr),
                        op: BinaryOperator::Arrow,
                        right: Box::new(Expr::Wildcard(AttachedToken(star))),
                    });
                }
                let field = parser.parse_identifier()?;
                expr = Expr::BinaryOp {
                    left: Box::new(expr),
                    op: BinaryOperator::Arrow,
                    right: Box::new(Expr::Identifier(field)),
                };
            }
            Token::LBracket => expr = parse_subscript(parser, expr)?,
            _ => return Ok(expr),
        }
    }
}

fn parse_subscript(parser: &mut Parser, root: Expr) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::LBracket)?;
    let index = parser.parse_expr()?;
    parser.expect_token(&Token::RBracket)?;
    let access = AccessExpr::Subscript(Subscript::Index { index });
    Ok(match root {
        Expr::CompoundFieldAccess {
            root,
            mut access_chain,
        } => {
            access_chain.push(access);
            Expr::CompoundFieldAccess { root, access_chain }
        }
        other => Expr::CompoundFieldAccess {
            root: Box::new(other),
            access_chain: vec![access],
        },
    })
}

/// Looks ahead for `x =>` or `(x, y, …) =>` without consuming anything.
fn lambda_ahead(parser: &Parser) -> bool {
    let is_word = |n: usize| matches!(parser.peek_nth_token_ref(n).token, Token::Word(_));
    if is_word(0) {
        return parser.peek_nth_token_ref(1).token == Token::RArrow;
    }
    if parser.peek_nth_token_ref(0).token != Token::LParen {
        return false;
    }
    let mut n = 1;
    loop {
        if !is_word(n) {
            return false;
        }
        n += 1;
        match parser.peek_nth_token_ref(n).token {
            Token::Comma => n += 1,
            Token::RParen => break,
            _ => return false,
        }
    }
    parser.peek_nth_token_ref(n + 1).token == Token::RArrow
}

fn parse_lambda(parser: &mut Parser) -> Result<Expr, ParserError> {
    let left = if parser.consume_token(&Token::LParen) {
        let ids = parser.parse_comma_separated(|p| p.parse_identifier())?;
        parser.expect_token(&Token::RParen)?;
        Expr::Tuple(ids.into_iter().map(Expr::Identifier).collect())
    } else {
        Expr::Identifier(parser.parse_identifier()?)
    };
    parser.expect_token(&Token::RArrow)?;
    let body = parser.parse_expr()?;
    Ok(Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::Custom(LAMBDA_OP.to_string()),
        right: Box::new(body),
    })
}

fn parse_cast(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.next_token(); // CAST
    parser.expect_token(&Token::LParen)?;
    let expr = parser.parse_expr()?;
    parser.expect_keyword_is(sqlparser::keywords::Keyword::AS)?;
    let ty = parse_type_tokens(parser)?;
    parser.expect_token(&Token::RParen)?;
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type: DataType::Custom(ObjectName::from(vec![Ident::new(ty.to_string())]), vec![]),
        array: false,
        format: None,
    })
}

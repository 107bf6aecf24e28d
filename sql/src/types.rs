//! ksqlDB's SQL types.

use std::fmt;

use sqlparser::ast::{DataType, Ident};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::ast::display_ident;
use crate::limits::MAX_TYPE_DEPTH;

/// A ksqlDB column or CAST type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    Boolean,
    Int,
    Bigint,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    String,
    Bytes,
    Time,
    Date,
    Timestamp,
    Array(Box<Type>),
    Map(Box<Type>, Box<Type>),
    Struct(Vec<StructField>),
    /// A type registered with `CREATE TYPE`, resolved by the planner.
    Custom(Ident),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StructField {
    pub name: Ident,
    pub ty: Type,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Boolean => f.write_str("BOOLEAN"),
            Type::Int => f.write_str("INTEGER"),
            Type::Bigint => f.write_str("BIGINT"),
            Type::Double => f.write_str("DOUBLE"),
            Type::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            Type::String => f.write_str("STRING"),
            Type::Bytes => f.write_str("BYTES"),
            Type::Time => f.write_str("TIME"),
            Type::Date => f.write_str("DATE"),
            Type::Timestamp => f.write_str("TIMESTAMP"),
            Type::Array(t) => write!(f, "ARRAY<{t}>"),
            Type::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            Type::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} {}", display_ident(&field.name), field.ty)?;
                }
                f.write_str(">")
            }
            Type::Custom(name) => f.write_str(&display_ident(name)),
        }
    }
}

/// The start of the message of a type nested deeper than [`MAX_TYPE_DEPTH`], which
/// `parser::convert` turns into [`crate::ParseErrorKind::NestedTooDeeply`].
pub(crate) const TYPE_TOO_DEEP: &str = "The type is nested too deeply";

/// Parses a type at the parser's position.
pub(crate) fn parse_type_tokens(p: &mut Parser) -> Result<Type, ParserError> {
    parse_nested(p, 0)
}

/// Parses a type inside `depth` ARRAY, MAP or STRUCT constructors. The depth is checked
/// before going deeper, so neither this recursion nor anything walking the type later can
/// exhaust the stack.
fn parse_nested(p: &mut Parser, depth: usize) -> Result<Type, ParserError> {
    let tok = p.next_token();
    let Token::Word(w) = &tok.token else {
        return p.expected("a type", tok);
    };
    if w.quote_style.is_some() {
        return Ok(Type::Custom(Ident::with_quote(
            w.quote_style.unwrap_or('`'),
            w.value.clone(),
        )));
    }
    let ty = match w.value.to_ascii_uppercase().as_str() {
        "BOOLEAN" => Type::Boolean,
        "INT" | "INTEGER" => Type::Int,
        "BIGINT" => Type::Bigint,
        "DOUBLE" => Type::Double,
        "VARCHAR" | "STRING" => {
            // ksqlDB's grammar lets any base type take parameters; for strings they carry
            // no meaning (`VARCHAR(STRING)` is accepted and is a STRING).
            if p.consume_token(&Token::LParen) {
                let mut open = 1;
                while open > 0 {
                    match p.next_token().token {
                        Token::LParen => open += 1,
                        Token::RParen => open -= 1,
                        Token::EOF => return p.expected(")", p.peek_token()),
                        _ => {}
                    }
                }
            }
            Type::String
        }
        "BYTES" => Type::Bytes,
        "TIME" => Type::Time,
        "DATE" => Type::Date,
        "TIMESTAMP" => Type::Timestamp,
        "DECIMAL" => {
            p.expect_token(&Token::LParen)?;
            let precision = parse_u32(p)?;
            p.expect_token(&Token::Comma)?;
            let scale = parse_u32(p)?;
            p.expect_token(&Token::RParen)?;
            Type::Decimal { precision, scale }
        }
        "ARRAY" | "MAP" | "STRUCT" if depth >= MAX_TYPE_DEPTH => {
            let at = tok.span.start;
            return Err(ParserError::ParserError(format!(
                "{TYPE_TOO_DEEP}: more than {MAX_TYPE_DEPTH} levels of ARRAY, MAP or STRUCT at Line: {}, Column: {}",
                at.line, at.column
            )));
        }
        "ARRAY" => {
            p.expect_token(&Token::Lt)?;
            let t = parse_nested(p, depth + 1)?;
            p.expect_token(&Token::Gt)?;
            Type::Array(Box::new(t))
        }
        "MAP" => {
            p.expect_token(&Token::Lt)?;
            let k = parse_nested(p, depth + 1)?;
            p.expect_token(&Token::Comma)?;
            let v = parse_nested(p, depth + 1)?;
            p.expect_token(&Token::Gt)?;
            Type::Map(Box::new(k), Box::new(v))
        }
        "STRUCT" => {
            p.expect_token(&Token::Lt)?;
            let mut fields = Vec::new();
            if !p.consume_token(&Token::Gt) {
                loop {
                    let name = p.parse_identifier()?;
                    let ty = parse_nested(p, depth + 1)?;
                    fields.push(StructField { name, ty });
                    if p.consume_token(&Token::Comma) {
                        continue;
                    }
                    p.expect_token(&Token::Gt)?;
                    break;
                }
            }
            Type::Struct(fields)
        }
        // Reserved words are never type names.
        "NULL" | "SELECT" | "FROM" | "AS" | "TRUE" | "FALSE" => return p.expected("a type", tok),
        _ => Type::Custom(Ident::new(w.value.clone())),
    };
    Ok(ty)
}

fn parse_u32(p: &mut Parser) -> Result<u32, ParserError> {
    let tok = p.peek_token();
    let n = p.parse_literal_uint()?;
    u32::try_from(n).or_else(|_| p.expected("a small integer", tok))
}

/// The ksqlDB type of a `CAST` target in the syntax tree (see [`crate::dialect`]).
pub fn cast_type(data_type: &DataType) -> Result<Type, crate::ParseError> {
    match data_type {
        DataType::Custom(name, _) => crate::parse_type(&name.to_string()),
        other => crate::parse_type(&other.to_string()),
    }
}

//! One `/inserts-stream` row (a JSON object) as the `INSERT INTO … VALUES` statement it
//! stands for. A row takes the path of `INSERT INTO … VALUES`: it is checked against the
//! stream's columns with ksqlDB's coercion rules (`KeyValueExtractor`), written as an
//! INSERT statement of typed literals, and planned and encoded by the session like any
//! other.

use base64::Engine as _;
use brook_planner::catalog::{Catalog, Source};
use brook_planner::schema::{Namespace, SchemaType};
use brook_sql::Type;
use serde_json::Value;
use thiserror::Error;

/// Why a row cannot be inserted (ksqlDB's `InsertError` messages).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowError {
    #[error("Invalid JSON in inserts stream")]
    InvalidJson,
    #[error("Key field must be specified: {0}")]
    MissingKey(String),
    /// A value the column's type cannot hold: ksqlDB's coercion failure, naming the value
    /// as the Java type it would have been.
    #[error("Can't coerce a field of type {class} ({shown}) into type {ty}")]
    Coercion {
        class: &'static str,
        shown: String,
        ty: String,
    },
}

/// The row `line` (a JSON object) as an `INSERT INTO` statement of `source`, its record
/// timestamped `now_ms`.
pub fn insert_statement(
    source: &Source,
    catalog: &Catalog,
    line: &[u8],
    now_ms: i64,
) -> Result<String, RowError> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(row)) => statement(source, catalog, &row, now_ms),
        _ => Err(RowError::InvalidJson),
    }
}

/// The row as `INSERT INTO … (ROWTIME, cols…) VALUES (now, literals…)`. Like ksqlDB, the
/// record's timestamp is the time of the insert; a key column must have a value, a value
/// column without one is null, and fields that are no column are ignored.
fn statement(
    source: &Source,
    catalog: &Catalog,
    row: &serde_json::Map<String, Value>,
    now: i64,
) -> Result<String, RowError> {
    let row: Vec<(String, &Value)> = row.iter().map(|(k, v)| (identifier(k), v)).collect();
    let get = |name: &str| {
        row.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    };
    let mut columns = vec!["ROWTIME".to_string()];
    let mut values = vec![format!("CAST({now} AS BIGINT)")];
    for c in &source.schema.columns {
        let value = get(&c.name);
        match (&c.namespace, value) {
            (Namespace::Key, None) => return Err(RowError::MissingKey(c.name.clone())),
            (Namespace::Key | Namespace::Value, Some(v)) => {
                let ty = catalog.resolve_type(&c.ty).unwrap_or_else(|_| c.ty.clone());
                columns.push(quoted(&c.name));
                values.push(literal(v, &ty)?);
            }
            _ => {}
        }
    }
    Ok(format!(
        "INSERT INTO {} ({}) VALUES ({});",
        quoted(&source.name),
        columns.join(", "),
        values.join(", ")
    ))
}

/// ksqlDB's rule for names given as text: back-quoted keeps its case, anything else is
/// upper-cased.
pub fn identifier(name: &str) -> String {
    match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(quoted) if !quoted.is_empty() => quoted.to_string(),
        _ => name.to_uppercase(),
    }
}

fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// ksqlDB's coercion failure, naming the value as the Java type it would have been.
fn cannot_coerce(v: &Value, ty: &Type) -> RowError {
    let class = match v {
        Value::Bool(_) => "class java.lang.Boolean",
        Value::Number(n) if n.is_f64() => "class java.lang.Double",
        Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
            "class java.lang.Integer"
        }
        Value::Number(_) => "class java.lang.Long",
        Value::String(_) => "class java.lang.String",
        Value::Array(_) => "class io.vertx.core.json.JsonArray",
        Value::Object(_) => "class io.vertx.core.json.JsonObject",
        Value::Null => "null",
    };
    let shown = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    RowError::Coercion {
        class,
        shown,
        ty: SchemaType(ty).to_string(),
    }
}

/// `v` as an SQL expression of exactly type `ty`, or why it cannot be one.
fn literal(v: &Value, ty: &Type) -> Result<String, RowError> {
    if v.is_null() {
        return Ok(format!("CAST(NULL AS {ty})"));
    }
    let fail = || cannot_coerce(v, ty);
    let lit = match ty {
        Type::Boolean => match v {
            Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            _ => return Err(fail()),
        },
        Type::Int => {
            let i = v
                .as_i64()
                .filter(|i| i32::try_from(*i).is_ok())
                .ok_or_else(fail)?;
            format!("CAST({i} AS INTEGER)")
        }
        Type::Bigint => format!("CAST({} AS BIGINT)", v.as_i64().ok_or_else(fail)?),
        Type::Double => {
            let d = v.as_f64().filter(|_| v.is_number()).ok_or_else(fail)?;
            format!("CAST({} AS DOUBLE)", numeric_text(d))
        }
        Type::Decimal { .. } => {
            // ksqlDB reads a decimal from a number or from a string holding one.
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().to_string(),
                _ => return Err(fail()),
            };
            if let Type::Decimal { precision, scale } = ty {
                if !fits_decimal(&text, *precision, *scale) {
                    return Err(fail());
                }
            }
            if text.contains(['e', 'E']) {
                // A literal with an exponent is a DOUBLE in ksqlDB's grammar.
                format!("CAST({} AS {ty})", string_literal(&text))
            } else {
                format!("CAST({text} AS {ty})")
            }
        }
        Type::String => match v {
            Value::String(s) => string_literal(s),
            _ => return Err(fail()),
        },
        Type::Bytes => match v {
            Value::String(s) => {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| fail())?;
                format!("TO_BYTES({}, 'base64')", string_literal(s))
            }
            _ => return Err(fail()),
        },
        Type::Date | Type::Time | Type::Timestamp => match v {
            Value::String(s) => format!("CAST({} AS {ty})", string_literal(s)),
            _ => return Err(fail()),
        },
        Type::Array(item) => match v {
            // The planner types no empty ARRAY[]: slice a typed one down to nothing.
            Value::Array(items) if items.is_empty() => {
                format!("SLICE(ARRAY[CAST(NULL AS {item})], 1, 0)")
            }
            Value::Array(items) => {
                let items: Result<Vec<String>, RowError> =
                    items.iter().map(|i| literal(i, item)).collect();
                format!("ARRAY[{}]", items?.join(", "))
            }
            _ => return Err(fail()),
        },
        Type::Map(k, val) => match v {
            // Nor an empty MAP(): build one from empty key and value arrays.
            Value::Object(entries) if entries.is_empty() => format!(
                "AS_MAP(SLICE(ARRAY[CAST(NULL AS {k})], 1, 0), \
                 SLICE(ARRAY[CAST(NULL AS {val})], 1, 0))"
            ),
            Value::Object(entries) => {
                let mut parts = Vec::new();
                for (key, value) in entries {
                    let key = literal(&Value::String(key.clone()), k)?;
                    parts.push(format!("{key} := {}", literal(value, val)?));
                }
                format!("MAP({})", parts.join(", "))
            }
            _ => return Err(fail()),
        },
        Type::Struct(fields) => match v {
            Value::Object(entries) => {
                let mut parts = Vec::new();
                for f in fields {
                    // Struct fields match case-insensitively, as ksqlDB's coercer does.
                    let value = entries
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&f.name.value))
                        .map(|(_, v)| v)
                        .unwrap_or(&Value::Null);
                    parts.push(format!(
                        "{} := {}",
                        field_name(&f.name.value),
                        literal(value, &f.ty)?
                    ));
                }
                format!("STRUCT({})", parts.join(", "))
            }
            _ => return Err(fail()),
        },
        Type::Custom(_) => return Err(fail()),
    };
    Ok(lit)
}

/// A struct field as the catalog's type names it: the planner compares field names with
/// their quoting, and the catalog quotes only names that need it.
fn field_name(name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if simple {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// Whether a decimal number's integer part fits DECIMAL(precision, scale).
fn fits_decimal(text: &str, precision: u32, scale: u32) -> bool {
    let Ok(v) = text.parse::<f64>() else {
        return false;
    };
    let integer_digits = v.abs().trunc().to_string().trim_start_matches('0').len() as u32;
    integer_digits <= precision.saturating_sub(scale)
}

/// A double as an SQL literal that reads back as the same value.
fn numeric_text(d: f64) -> String {
    if d.is_finite() {
        format!("{d:?}")
    } else {
        // NaN and infinities have no literal; the cast from text yields them.
        format!("'{d}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers() {
        assert_eq!(identifier("riders"), "RIDERS");
        assert_eq!(identifier("`riders`"), "riders");
    }

    #[test]
    fn literals_follow_ksqldb_coercion() {
        assert_eq!(
            literal(&json!(5), &Type::Int).ok(),
            Some("CAST(5 AS INTEGER)".into())
        );
        assert!(literal(&json!(5_000_000_000i64), &Type::Int).is_err());
        assert!(literal(&json!("5"), &Type::Int).is_err());
        assert!(literal(&json!(1.5), &Type::Bigint).is_err());
        assert_eq!(
            literal(&json!(2), &Type::Double).ok(),
            Some("CAST(2.0 AS DOUBLE)".into())
        );
        assert_eq!(
            literal(&json!("it's"), &Type::String).ok(),
            Some("'it''s'".into())
        );
        assert_eq!(
            literal(&json!([1, 2]), &Type::Array(Box::new(Type::Int))).ok(),
            Some("ARRAY[CAST(1 AS INTEGER), CAST(2 AS INTEGER)]".into())
        );
        let dec = Type::Decimal {
            precision: 4,
            scale: 2,
        };
        assert!(literal(&json!(12.345), &dec).is_ok());
        assert!(literal(&json!("12.5"), &dec).is_ok());
        assert!(literal(&json!(123.4), &dec).is_err());
        let e = literal(&json!("abc"), &Type::Int)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Can't coerce a field of type class java.lang.String (abc) into type INTEGER")
        );
    }
}

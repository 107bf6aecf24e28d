//! ksqlDB types as Arrow types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use brook_sql::Type;

use crate::limits::MAX_TYPE_NODES;
use crate::PlanError;
use brook_sql::limits::MAX_TYPE_DEPTH;

/// Resolves `CREATE TYPE` names.
pub trait TypeRegistry {
    fn resolve(&self, name: &str) -> Option<Type>;

    /// Calls `f` with the definition of `name`, without copying it where the registry can;
    /// false when there is no such type.
    fn visit(&self, name: &str, f: &mut dyn FnMut(&Type)) -> bool {
        match self.resolve(name) {
            Some(t) => {
                f(&t);
                true
            }
            None => false,
        }
    }
}

/// No registered types.
pub struct NoTypes;

impl TypeRegistry for NoTypes {
    fn resolve(&self, _name: &str) -> Option<Type> {
        None
    }
}

/// `ty` with its `CREATE TYPE` names replaced by their definitions (which the catalog
/// keeps resolved). Refused when the result would have more than
/// [`crate::limits::MAX_TYPE_NODES`] parts or more than
/// [`brook_sql::limits::MAX_TYPE_DEPTH`] levels: each name may stand for a large type, and
/// types made of names made of names grow exponentially. Nothing is copied before the
/// limits are checked.
pub fn resolve_bounded(ty: &Type, types: &dyn TypeRegistry) -> Result<Type, PlanError> {
    let mut nodes = 0;
    resolve_into(ty, types, 0, &mut nodes).map_err(|e| match e {
        Exceeded::Nodes(n) => PlanError::TypeTooLarge {
            name: shown(ty),
            nodes: n,
            limit: MAX_TYPE_NODES,
        },
        Exceeded::Depth => PlanError::TypeTooDeep {
            name: shown(ty),
            limit: MAX_TYPE_DEPTH,
        },
        Exceeded::Statement => PlanError::StatementTypesTooLarge {
            limit: crate::limits::MAX_STATEMENT_TYPE_NODES,
        },
        Exceeded::Plan(e) => e,
    })
}

enum Exceeded {
    Nodes(usize),
    Depth,
    Statement,
    Plan(PlanError),
}

/// A type as messages name it: its text, shortened.
fn shown(ty: &Type) -> String {
    let text = ty.to_string();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Resolves `ty`, found `depth` levels down, counting parts into `nodes`.
fn resolve_into(
    ty: &Type,
    types: &dyn TypeRegistry,
    depth: usize,
    nodes: &mut usize,
) -> Result<Type, Exceeded> {
    Ok(match ty {
        // The definition is copied a part at a time, each counted: a copy stops at the
        // limit, however large the definition (or a cycle of them) would make it.
        Type::Custom(name) => {
            let mut out = None;
            if !types.visit(&name.value, &mut |t| {
                out = Some(resolve_into(t, types, depth, nodes));
            }) {
                return Err(Exceeded::Plan(PlanError::UnknownType(name.value.clone())));
            }
            out.unwrap_or_else(|| Err(Exceeded::Plan(PlanError::UnknownType(name.value.clone()))))?
        }
        Type::Array(_) | Type::Map(..) | Type::Struct(_) if depth >= MAX_TYPE_DEPTH => {
            return Err(Exceeded::Depth)
        }
        Type::Array(t) => {
            count(nodes)?;
            Type::Array(Box::new(resolve_into(t, types, depth + 1, nodes)?))
        }
        Type::Map(k, v) => {
            count(nodes)?;
            Type::Map(
                Box::new(resolve_into(k, types, depth + 1, nodes)?),
                Box::new(resolve_into(v, types, depth + 1, nodes)?),
            )
        }
        Type::Struct(fields) => {
            count(nodes)?;
            Type::Struct(
                fields
                    .iter()
                    .map(|f| {
                        Ok(brook_sql::StructField {
                            name: f.name.clone(),
                            ty: resolve_into(&f.ty, types, depth + 1, nodes)?,
                        })
                    })
                    .collect::<Result<_, Exceeded>>()?,
            )
        }
        other => {
            count(nodes)?;
            other.clone()
        }
    })
}

/// One more part of a type being resolved.
fn count(nodes: &mut usize) -> Result<(), Exceeded> {
    *nodes += 1;
    if *nodes > MAX_TYPE_NODES {
        return Err(Exceeded::Nodes(*nodes));
    }
    if !crate::limits::take_type_node() {
        return Err(Exceeded::Statement);
    }
    Ok(())
}

/// The Arrow type Brook uses for a ksqlDB type. TIMESTAMP is milliseconds (ksqlDB's
/// precision), TIME milliseconds since midnight, DATE days since the epoch.
pub fn arrow_type(ty: &Type, types: &dyn TypeRegistry) -> Result<DataType, PlanError> {
    Ok(match ty {
        Type::Boolean => DataType::Boolean,
        Type::Int => DataType::Int32,
        Type::Bigint => DataType::Int64,
        Type::Double => DataType::Float64,
        Type::Decimal { precision, scale } => {
            // Arrow's Decimal256 would hold ksqlDB's wider decimals, but the formats have no
            // codec for it: such a column is refused here rather than every record later.
            if *precision == 0 || *precision > 38 || scale > precision {
                return Err(PlanError::InvalidDecimal {
                    precision: *precision,
                    scale: *scale,
                });
            }
            DataType::Decimal128(*precision as u8, *scale as i8)
        }
        Type::String => DataType::Utf8,
        Type::Bytes => DataType::Binary,
        Type::Time => DataType::Time32(TimeUnit::Millisecond),
        Type::Date => DataType::Date32,
        Type::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        Type::Array(item) => {
            DataType::List(Arc::new(Field::new("item", arrow_type(item, types)?, true)))
        }
        Type::Map(k, v) => {
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", arrow_type(k, types)?, false),
                    Field::new("value", arrow_type(v, types)?, true),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        Type::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Ok(Field::new(&f.name.value, arrow_type(&f.ty, types)?, true)))
                .collect::<Result<Vec<_>, PlanError>>()?
                .into(),
        ),
        Type::Custom(name) => {
            let resolved = types
                .resolve(&name.value)
                .ok_or_else(|| PlanError::UnknownType(name.value.clone()))?;
            arrow_type(&resolved, types)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(sql: &str) -> Result<DataType, PlanError> {
        arrow_type(&brook_sql::parse_type(sql).expect("type parses"), &NoTypes)
    }

    #[test]
    fn scalar_and_nested_types() {
        assert_eq!(arrow("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(arrow("decimal(4, 2)").unwrap(), DataType::Decimal128(4, 2));
        let s = arrow("STRUCT<a INT, `b` ARRAY<STRING>>").unwrap();
        let DataType::Struct(fields) = s else {
            panic!("not a struct: {s:?}")
        };
        assert_eq!(fields[0].name(), "A");
        assert_eq!(fields[1].name(), "b");
        assert!(matches!(
            arrow("MAP<STRING, DOUBLE>").unwrap(),
            DataType::Map(..)
        ));
    }

    #[test]
    fn bad_types_are_errors() {
        assert!(matches!(
            arrow("DECIMAL(50, 2)"),
            Err(PlanError::InvalidDecimal { .. })
        ));
        assert!(matches!(arrow("ADDRESS"), Err(PlanError::UnknownType(n)) if n == "ADDRESS"));
    }
}

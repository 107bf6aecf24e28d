//! ksqlDB types as Arrow types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use brook_sql::Type;

use crate::PlanError;

/// Resolves `CREATE TYPE` names.
pub trait TypeRegistry {
    fn resolve(&self, name: &str) -> Option<Type>;
}

/// No registered types.
pub struct NoTypes;

impl TypeRegistry for NoTypes {
    fn resolve(&self, _name: &str) -> Option<Type> {
        None
    }
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

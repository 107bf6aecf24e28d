//! Logical schemas: the columns of a stream or table, as ksqlDB describes them.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use brook_sql::Type;

use crate::types::{arrow_type, TypeRegistry};
use crate::PlanError;

/// Where a column's value comes from in a Kafka record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    Key,
    Value,
    /// All headers, as `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
    Headers,
    /// The last value of one header key, as BYTES.
    Header(String),
}

/// A column: its name (already case-normalized: unquoted names are upper-case), its ksqlDB
/// type and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    pub namespace: Namespace,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: Type, namespace: Namespace) -> Self {
        Column {
            name: name.into(),
            ty,
            namespace,
        }
    }
}

/// The pseudo columns every row carries (not part of the schema ksqlDB prints).
pub const ROWTIME: &str = "ROWTIME";
pub const ROWPARTITION: &str = "ROWPARTITION";
pub const ROWOFFSET: &str = "ROWOFFSET";
pub const WINDOWSTART: &str = "WINDOWSTART";
pub const WINDOWEND: &str = "WINDOWEND";

/// Key, value and header columns of a source, in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogicalSchema {
    pub columns: Vec<Column>,
}

impl LogicalSchema {
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| c.namespace == Namespace::Key)
    }

    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| c.namespace == Namespace::Value)
    }

    pub fn header_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| matches!(c.namespace, Namespace::Headers | Namespace::Header(_)))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of rows flowing through operators: the pseudo columns ROWTIME,
    /// ROWPARTITION, ROWOFFSET (and WINDOWSTART/WINDOWEND for windowed sources) first,
    /// then key, value and header columns in declaration order.
    pub fn row_schema(
        &self,
        windowed: bool,
        types: &dyn TypeRegistry,
    ) -> Result<SchemaRef, PlanError> {
        let mut fields = vec![
            Field::new(ROWTIME, DataType::Int64, false),
            Field::new(ROWPARTITION, DataType::Int32, false),
            Field::new(ROWOFFSET, DataType::Int64, false),
        ];
        if windowed {
            fields.push(Field::new(WINDOWSTART, DataType::Int64, false));
            fields.push(Field::new(WINDOWEND, DataType::Int64, false));
        }
        for c in &self.columns {
            fields.push(Field::new(&c.name, arrow_type(&c.ty, types)?, true));
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// ksqlDB's schema text, e.g. `` `ID` BIGINT KEY, `NAME` STRING ``: the form `DESCRIBE`
/// and the conformance tests' `post` checks use.
impl fmt::Display for LogicalSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{}` {}", c.name, SchemaType(&c.ty))?;
            match &c.namespace {
                Namespace::Key => f.write_str(" KEY")?,
                Namespace::Value => {}
                Namespace::Headers => f.write_str(" HEADERS")?,
                Namespace::Header(k) => write!(f, " HEADER('{k}')")?,
            }
        }
        Ok(())
    }
}

/// A type as ksqlDB prints it in schemas: struct fields back-quoted.
pub struct SchemaType<'a>(pub &'a Type);

impl fmt::Display for SchemaType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Type::Array(t) => write!(f, "ARRAY<{}>", SchemaType(t)),
            Type::Map(k, v) => write!(f, "MAP<{}, {}>", SchemaType(k), SchemaType(v)),
            Type::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, fl) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}` {}", fl.name.value, SchemaType(&fl.ty))?;
                }
                f.write_str(">")
            }
            other => write!(f, "{other}"),
        }
    }
}

/// The Arrow type used for timestamps in rows (milliseconds since the epoch).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

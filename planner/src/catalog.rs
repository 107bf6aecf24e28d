//! The catalog: streams, tables and types, and how CREATE STREAM/TABLE become sources.

use std::collections::BTreeMap;

use brook_sql::{ColumnConstraint, Literal, Properties, SourceKind, TableElement, Type};

use crate::format::{FormatKind, FormatSpec};
use crate::schema::{
    Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART,
};
use crate::types::TypeRegistry;
use crate::PlanError;

/// Windowing of a source's key (a windowed table from an aggregation, or a source declared
/// with `WINDOW_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowType {
    Tumbling { size_ms: u64 },
    Hopping { size_ms: u64 },
    Session,
}

/// A stream or table.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub schema: LogicalSchema,
    pub topic: String,
    pub key_format: FormatSpec,
    pub value_format: FormatSpec,
    /// The column ROWTIME is taken from, and its format when it is a STRING.
    pub timestamp: Option<(String, Option<String>)>,
    pub window: Option<WindowType>,
    /// `CREATE SOURCE …`: read-only, materialized.
    pub read_only: bool,
    /// Partition count given in WITH, if any.
    pub partitions: Option<i32>,
    pub sql: String,
}

/// Settings that fill in what a statement leaves out.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub key_format: Option<String>,
    pub value_format: Option<String>,
    pub wrap_single_values: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub sources: BTreeMap<String, Source>,
    pub types: BTreeMap<String, Type>,
}

impl TypeRegistry for Catalog {
    fn resolve(&self, name: &str) -> Option<Type> {
        self.types.get(name).cloned()
    }

    fn visit(&self, name: &str, f: &mut dyn FnMut(&Type)) -> bool {
        match self.types.get(name) {
            Some(t) => {
                f(t);
                true
            }
            None => false,
        }
    }
}

impl Catalog {
    pub fn source(&self, name: &str) -> Result<&Source, PlanError> {
        self.sources
            .get(name)
            .ok_or_else(|| PlanError::UnknownSource(name.to_string()))
    }

    /// Replaces `CREATE TYPE` names by their definitions, within the limits of
    /// [`crate::types::resolve_bounded`]: a type made of types made of types (`CREATE TYPE
    /// t2 AS STRUCT<a t1, b t1>` …) doubles with every step, and is refused at the limit.
    pub fn resolve_type(&self, ty: &Type) -> Result<Type, PlanError> {
        crate::types::resolve_bounded(ty, self)
    }
}

pub fn prop_text(props: &Properties, name: &str) -> Option<String> {
    props.get(name).and_then(Literal::as_text)
}

pub fn prop_int(props: &Properties, name: &str) -> Result<Option<i64>, PlanError> {
    match props.get(name) {
        None | Some(Literal::Null) => Ok(None),
        Some(l) => l
            .as_text()
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| PlanError::InvalidProperty {
                name: name.to_string(),
                reason: format!("expected a number, got {l}"),
            }),
    }
}

const KNOWN_PROPERTIES: &[&str] = &[
    "KAFKA_TOPIC",
    "KEY_FORMAT",
    "VALUE_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "WRAP_SINGLE_VALUE",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "KEY_PROTOBUF_NULLABLE_REPRESENTATION",
    "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
    "RETENTION_MS",
    "CLEANUP_POLICY",
    "SOURCE_CONNECTOR",
];

/// Formats from `WITH (…)` and the session defaults.
pub fn formats(
    props: &Properties,
    defaults: &Defaults,
) -> Result<(FormatSpec, FormatSpec), PlanError> {
    for (k, _) in &props.0 {
        if !KNOWN_PROPERTIES.contains(&k.as_str()) {
            return Err(PlanError::InvalidProperty {
                name: k.clone(),
                reason: "unknown property".to_string(),
            });
        }
    }
    let format = prop_text(props, "FORMAT");
    let key = prop_text(props, "KEY_FORMAT");
    let value = prop_text(props, "VALUE_FORMAT");
    if format.is_some() && (key.is_some() || value.is_some()) {
        return Err(PlanError::Invalid(
            "Cannot supply both 'FORMAT' and 'KEY_FORMAT' or 'VALUE_FORMAT' properties".into(),
        ));
    }
    let key = key
        .or_else(|| format.clone())
        .or_else(|| defaults.key_format.clone())
        .unwrap_or_else(|| "KAFKA".to_string());
    let value = value
        .or(format)
        .or_else(|| defaults.value_format.clone())
        .ok_or_else(|| {
            PlanError::Invalid(
                "Missing required property \"VALUE_FORMAT\" which has no default value.".into(),
            )
        })?;
    let mut key = FormatSpec::new(FormatKind::parse(&key)?);
    let mut value = FormatSpec::new(FormatKind::parse(&value)?);
    if let Some(d) = prop_text(props, "VALUE_DELIMITER") {
        value.delimiter = delimiter(&d)?;
    }
    if let Some(d) = prop_text(props, "KEY_DELIMITER") {
        key.delimiter = delimiter(&d)?;
    }
    value.wrap_single_value = match props.get("WRAP_SINGLE_VALUE") {
        Some(Literal::Boolean(b)) => Some(*b),
        Some(l) => match l.as_text().map(|t| t.to_ascii_lowercase()).as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                return Err(PlanError::InvalidProperty {
                    name: "WRAP_SINGLE_VALUE".into(),
                    reason: format!("expected true or false, got {l}"),
                })
            }
        },
        None => defaults.wrap_single_values,
    };
    Ok((key, value))
}

fn delimiter(d: &str) -> Result<char, PlanError> {
    match d.to_ascii_uppercase().as_str() {
        "TAB" => Ok('\t'),
        "SPACE" => Ok(' '),
        _ => {
            let mut chars = d.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(PlanError::InvalidProperty {
                    name: "VALUE_DELIMITER".into(),
                    reason: format!("Invalid delimiter value: '{d}'. Delimiter must be a single character or TAB/SPACE"),
                }),
            }
        }
    }
}

const RESERVED: &[&str] = &[ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND];

/// The schema of `CREATE STREAM/TABLE name (elements)`.
pub fn schema_from_elements(
    kind: SourceKind,
    elements: &[TableElement],
    catalog: &Catalog,
) -> Result<LogicalSchema, PlanError> {
    let mut columns: Vec<Column> = Vec::new();
    // A set, not a scan of the columns so far: a statement may list many thousands.
    let mut names: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for e in elements {
        let name = e.name.value.clone();
        if RESERVED.contains(&name.as_str()) {
            return Err(PlanError::Invalid(format!(
                "'{name}' is a reserved column name. You cannot use it as a name for a column."
            )));
        }
        if !names.insert(&e.name.value) {
            return Err(PlanError::Invalid(format!(
                "Duplicate column names: {name}"
            )));
        }
        // Each column may name a large custom type: the statement's budget bounds them all
        // (`limits::StatementBudget`).
        let ty = catalog.resolve_type(&e.ty)?;
        let namespace = match &e.constraint {
            None => Namespace::Value,
            Some(ColumnConstraint::Key) => {
                if kind == SourceKind::Table {
                    return Err(PlanError::Invalid(format!(
                        "Column `{name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints."
                    )));
                }
                Namespace::Key
            }
            Some(ColumnConstraint::PrimaryKey) => {
                if kind == SourceKind::Stream {
                    return Err(PlanError::Invalid(format!(
                        "Column `{name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints."
                    )));
                }
                Namespace::Key
            }
            Some(ColumnConstraint::Headers) => Namespace::Headers,
            Some(ColumnConstraint::Header(k)) => Namespace::Header(k.clone()),
        };
        columns.push(Column::new(name, ty, namespace));
    }
    Ok(LogicalSchema { columns })
}

/// Plans `CREATE [SOURCE] STREAM|TABLE … WITH (…)` into a source.
#[allow(clippy::too_many_arguments)]
pub fn plan_create_source(
    catalog: &Catalog,
    defaults: &Defaults,
    kind: SourceKind,
    name: &str,
    elements: &[TableElement],
    props: &Properties,
    read_only: bool,
    sql: &str,
) -> Result<Source, PlanError> {
    let schema = schema_from_elements(kind, elements, catalog)?;
    if kind == SourceKind::Table && schema.key_columns().next().is_none() {
        return Err(PlanError::Invalid(
            "Tables require a PRIMARY KEY. Please define the PRIMARY KEY.".into(),
        ));
    }
    let topic = prop_text(props, "KAFKA_TOPIC").ok_or_else(|| {
        PlanError::Invalid(
            "Missing required property \"KAFKA_TOPIC\" which has no default value.".into(),
        )
    })?;
    let (key_format, value_format) = formats(props, defaults)?;
    let timestamp = match prop_text(props, "TIMESTAMP") {
        None => None,
        Some(ts) => {
            let col = ts.to_uppercase();
            let c = schema
                .column(&col)
                .or_else(|| schema.column(&ts))
                .ok_or_else(|| PlanError::Invalid(format!("The TIMESTAMP column set in the WITH clause does not exist in the schema: '{col}'")))?;
            Some((c.name.clone(), prop_text(props, "TIMESTAMP_FORMAT")))
        }
    };
    let window = match prop_text(props, "WINDOW_TYPE") {
        None => None,
        Some(w) => Some(match w.to_ascii_uppercase().as_str() {
            "SESSION" => WindowType::Session,
            "TUMBLING" | "HOPPING" => {
                let size = prop_text(props, "WINDOW_SIZE").ok_or_else(|| {
                    PlanError::Invalid(format!("{w} windows require 'WINDOW_SIZE' to be provided in the WITH clause. For example: 'WINDOW_SIZE'='10 SECONDS'"))
                })?;
                let size_ms = parse_window_size(&size)?;
                if w.eq_ignore_ascii_case("TUMBLING") {
                    WindowType::Tumbling { size_ms }
                } else {
                    WindowType::Hopping { size_ms }
                }
            }
            _ => {
                return Err(PlanError::InvalidProperty {
                    name: "WINDOW_TYPE".into(),
                    reason: format!("unknown window type {w}"),
                })
            }
        }),
    };
    let partitions = prop_int(props, "PARTITIONS")?.map(|p| p as i32);
    Ok(Source {
        name: name.to_string(),
        kind,
        schema,
        topic,
        key_format,
        value_format,
        timestamp,
        window,
        read_only,
        partitions,
        sql: sql.to_string(),
    })
}

fn parse_window_size(text: &str) -> Result<u64, PlanError> {
    let mut parts = text.split_whitespace();
    let n: u64 = parts
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| PlanError::Invalid(format!("Invalid WINDOW_SIZE: {text}")))?;
    let unit = parts
        .next()
        .and_then(brook_sql::TimeUnit::from_word)
        .ok_or_else(|| PlanError::Invalid(format!("Invalid WINDOW_SIZE: {text}")))?;
    Ok(n * unit.millis())
}

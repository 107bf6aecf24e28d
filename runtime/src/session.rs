//! Statements against the catalog: checks, planning and catalog changes, shared by the
//! deterministic driver and the server's Kafka engine. What a statement needs beyond the
//! catalog (a topic, a running query, records to write) comes back as an [`Action`] for
//! the backend to carry out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use brook_planner::aggregate::{is_aggregation, plan_aggregate, AggregatePlan};
use brook_planner::catalog::{
    formats, plan_create_source, prop_int, prop_text, Catalog, Defaults, Source,
};
use brook_planner::format::FormatKind;
use brook_planner::query::{plan_stateless, StatelessPlan, Target};
use brook_planner::schema::{Column, LogicalSchema, Namespace};
use brook_planner::types::NoTypes;
use brook_planner::PlanError;
use brook_sql::{
    ColumnConstraint, ParsedStatement, Properties, SourceKind, Statement, TableElement,
};

use crate::error::RuntimeError;
use crate::format::registry::{default_registry, SchemaRegistry};
use crate::format::{self, Part};
use crate::rows::{encode_batch, row_timestamp, EncodedRow};

/// Why a statement was refused, with ksqlDB's split between statements that cannot be
/// parsed, statements that are not valid, and failures while carrying them out.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("{0}")]
    Parse(#[from] brook_sql::ParseError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

/// A persistent query to start: read `input`, run `plan`, write `sink`.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub id: String,
    pub input: Source,
    pub sink: Source,
    pub plan: QueryPlan,
    /// Partitions of the sink topic when the query creates it (CSAS/CTAS); `None` when it
    /// writes into an existing source (INSERT INTO).
    pub sink_partitions: Option<i32>,
}

/// How a query computes its output.
#[derive(Debug, Clone)]
pub enum QueryPlan {
    Stateless(StatelessPlan),
    Aggregate(AggregatePlan),
    Join(Box<brook_planner::join::JoinPlan>),
}

impl QueryPlan {
    pub fn output(&self) -> &brook_planner::schema::LogicalSchema {
        match self {
            QueryPlan::Stateless(p) => &p.output,
            QueryPlan::Aggregate(p) => &p.output,
            QueryPlan::Join(p) => &p.output,
        }
    }

    pub fn window(&self) -> Option<brook_planner::catalog::WindowType> {
        match self {
            QueryPlan::Stateless(p) => p.window,
            QueryPlan::Aggregate(p) => p.window.map(|w| w.window_type()),
            QueryPlan::Join(p) => p.window(),
        }
    }

    pub fn source(&self) -> &str {
        match self {
            QueryPlan::Stateless(p) => &p.source,
            QueryPlan::Aggregate(p) => &p.source,
            QueryPlan::Join(p) => &p.first().name,
        }
    }
}

/// What a backend must do after a statement was planned.
#[derive(Debug, Clone)]
pub enum Action {
    /// Nothing beyond the catalog change (types, properties, IF NOT EXISTS …).
    None,
    /// A stream or table was registered; its topic must exist, created with `partitions`
    /// when it does not (and refused when it does not and no partition count was given).
    CreateSource {
        source: Source,
        partitions: Option<i32>,
    },
    StartQuery(Box<QuerySpec>),
    /// Encoded records to append to a source's topic (INSERT INTO … VALUES).
    Insert {
        source: Source,
        rows: Vec<EncodedRow>,
    },
    /// A source was dropped; queries writing to it must stop.
    Drop(String),
}

/// Drops the quotes from struct field names at any depth where the name reads the same
/// without them (a plain upper-case identifier), so that inferred types are the ones a
/// written column list would give; names that keep their case stay quoted.
fn unquote_fields(ty: &mut brook_sql::Type) {
    use brook_sql::Type;
    match ty {
        Type::Struct(fields) => {
            for f in fields {
                let v = &f.name.value;
                let plain = v
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                    && v.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if plain {
                    f.name.quote_style = None;
                }
                unquote_fields(&mut f.ty);
            }
        }
        Type::Array(t) => unquote_fields(t),
        Type::Map(k, v) => {
            unquote_fields(k);
            unquote_fields(v);
        }
        _ => {}
    }
}

/// Formats whose schemas live in Schema Registry, from which columns can be inferred.
fn infers_schemas(kind: FormatKind) -> bool {
    matches!(
        kind,
        FormatKind::Avro | FormatKind::Protobuf | FormatKind::JsonSr
    )
}

/// `KEY` / `VALUE`, as property names spell the part.
fn part_word(part: Part) -> &'static str {
    match part {
        Part::Key => "KEY",
        Part::Value => "VALUE",
    }
}

/// `KEY_SCHEMA_ID` / `VALUE_SCHEMA_ID`.
fn schema_id(props: &Properties, part: Part) -> Result<Option<u32>, StatementError> {
    let name = format!("{}_SCHEMA_ID", part_word(part));
    match prop_int(props, &name)? {
        None => Ok(None),
        Some(id) => u32::try_from(id).map(Some).map_err(|_| {
            PlanError::InvalidProperty {
                name,
                reason: format!("{id} is not a schema id"),
            }
            .into()
        }),
    }
}

/// `KEY_SCHEMA_FULL_NAME` / `VALUE_SCHEMA_FULL_NAME` (or `VALUE_AVRO_SCHEMA_FULL_NAME`),
/// trimmed.
fn full_schema_name(props: &Properties, part: Part) -> Option<String> {
    let names: &[&str] = match part {
        Part::Key => &["KEY_SCHEMA_FULL_NAME"],
        Part::Value => &["VALUE_SCHEMA_FULL_NAME", "VALUE_AVRO_SCHEMA_FULL_NAME"],
    };
    names
        .iter()
        .find_map(|n| prop_text(props, n))
        .map(|n| n.trim().to_string())
}

/// A full schema name must name something, and only formats with registered schemas have
/// one (ksqlDB's wording: the format's `fullSchemaName` config).
fn check_full_schema_names(
    props: &Properties,
    key: &brook_planner::format::FormatSpec,
    value: &brook_planner::format::FormatSpec,
) -> Result<(), StatementError> {
    for (part, format) in [(Part::Key, key), (Part::Value, value)] {
        let Some(name) = full_schema_name(props, part) else {
            continue;
        };
        if !infers_schemas(format.kind) {
            return Err(PlanError::Invalid(format!(
                "{} does not support the following configs: [fullSchemaName]",
                format.kind
            ))
            .into());
        }
        if name.is_empty() {
            return Err(PlanError::Invalid(
                "fullSchemaName cannot be empty. Format configuration: {fullSchemaName=}".into(),
            )
            .into());
        }
    }
    Ok(())
}

/// The catalog and session settings.
#[derive(Debug, Clone)]
pub struct Session {
    pub catalog: Catalog,
    pub defaults: Defaults,
    pub properties: BTreeMap<String, String>,
    query_seq: usize,
    /// The id the next query must take (a replayed command's recorded id).
    recorded_id: Option<String>,
    /// Where `CREATE STREAM/TABLE` without columns finds the topic's schemas.
    pub registry: Arc<dyn SchemaRegistry>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            catalog: Catalog::default(),
            defaults: Defaults::default(),
            properties: BTreeMap::new(),
            query_seq: 0,
            recorded_id: None,
            registry: default_registry(),
        }
    }
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// Sets a ksqlDB property (`ksql.persistence.default.format.value` …).
    pub fn set_property(&mut self, name: &str, value: &str) {
        match name {
            "ksql.persistence.default.format.key" => self.defaults.key_format = Some(value.into()),
            "ksql.persistence.default.format.value" => {
                self.defaults.value_format = Some(value.into())
            }
            "ksql.persistence.wrap.single.values" => {
                self.defaults.wrap_single_values = value.parse().ok()
            }
            _ => {}
        }
        self.properties.insert(name.to_string(), value.to_string());
    }

    /// The columns a `CREATE STREAM/TABLE` leaves out, taken from the schemas registered for
    /// its topic when its formats have schemas (as ksqlDB infers them): value columns when
    /// none are given, key columns when no key is given. The schema is the one
    /// `KEY_SCHEMA_ID` / `VALUE_SCHEMA_ID` names (field names kept as they are), else the
    /// latest under `<topic>-key` / `<topic>-value` (field names upper-cased);
    /// `*_SCHEMA_FULL_NAME` picks a protobuf message. `None` when nothing is inferred.
    fn infer_elements(
        &self,
        kind: SourceKind,
        elements: &[TableElement],
        props: &Properties,
    ) -> Result<Option<Vec<TableElement>>, StatementError> {
        let Some(topic) = prop_text(props, "KAFKA_TOPIC") else {
            return Ok(None);
        };
        // Bad formats are reported by the planner with its own wording.
        let Ok((key_format, value_format)) = formats(props, &self.defaults) else {
            return Ok(None);
        };
        check_full_schema_names(props, &key_format, &value_format)?;
        let has_keys = elements.iter().any(|e| {
            matches!(
                e.constraint,
                Some(ColumnConstraint::Key) | Some(ColumnConstraint::PrimaryKey)
            )
        });
        // Header columns are neither key nor value columns.
        let has_values = elements.iter().any(|e| e.constraint.is_none());
        let key_id = schema_id(props, Part::Key)?;
        let value_id = schema_id(props, Part::Value)?;
        for (part, id, format, given) in [
            (Part::Key, key_id, &key_format, has_keys),
            (Part::Value, value_id, &value_format, has_values),
        ] {
            let word = part_word(part);
            if id.is_some() && !infers_schemas(format.kind) {
                return Err(PlanError::Invalid(format!(
                    "{word}_FORMAT should support schema inference when {word}_SCHEMA_ID is provided. Current format is {}.",
                    format.kind
                ))
                .into());
            }
            if id.is_some() && given {
                return Err(PlanError::Invalid(format!(
                    "Table elements and {word}_SCHEMA_ID cannot both exist for create statement."
                ))
                .into());
            }
        }
        let key_name = full_schema_name(props, Part::Key);
        let value_name = full_schema_name(props, Part::Value);
        let keys = if infers_schemas(key_format.kind) && !has_keys {
            let how = format::registry::Inference {
                // Protobuf keys are always messages, whose fields are the key columns; other
                // formats' keys are a single column, whatever the schema.
                unwrapped: key_format.kind != FormatKind::Protobuf,
                single: "ROWKEY",
                upper: key_id.is_none(),
                full_name: key_name.as_deref(),
            };
            self.registered_columns(&topic, Part::Key, key_format.kind, key_id, &how)?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let values = if infers_schemas(value_format.kind) && !has_values {
            let how = format::registry::Inference {
                unwrapped: value_format.wrap_single_value == Some(false),
                single: "ROWVAL",
                upper: value_id.is_none(),
                full_name: value_name.as_deref(),
            };
            match self.registered_columns(&topic, Part::Value, value_format.kind, value_id, &how)? {
                Some(columns) => columns,
                None => {
                    return Err(PlanError::Invalid(format!(
                        "Schema for message values on topic '{topic}' does not exist in the Schema Registry.\nSubject: {}",
                        format::registry::subject(&topic, Part::Value)
                    ))
                    .into())
                }
            }
        } else {
            Vec::new()
        };
        if keys.is_empty() && values.is_empty() {
            return Ok(None);
        }
        let constraint = match kind {
            SourceKind::Stream => "KEY",
            SourceKind::Table => "PRIMARY KEY",
        };
        let mut decls: Vec<String> = keys
            .iter()
            .map(|(n, t)| format!("`{n}` {t} {constraint}"))
            .collect();
        decls.extend(elements.iter().map(|e| e.to_string()));
        decls.extend(values.iter().map(|(n, t)| format!("`{n}` {t}")));
        // The declarations go through the parser so that inferred types are exactly the
        // ones a written column list would give.
        let sql = format!(
            "CREATE STREAM X ({}) WITH (KAFKA_TOPIC='x');",
            decls.join(", ")
        );
        match brook_sql::parse_one(&sql)? {
            Statement::CreateSource { mut elements, .. } => {
                // Field names were quoted only to survive the parser; as columns they are
                // the plain names ksqlDB infers.
                for e in &mut elements {
                    unquote_fields(&mut e.ty);
                }
                Ok(Some(elements))
            }
            _ => Ok(None),
        }
    }

    /// The columns the schema for `topic`'s `part` gives: the one with id `id`, else the
    /// latest under the topic's subject (`None` when there is none).
    fn registered_columns(
        &self,
        topic: &str,
        part: Part,
        format: FormatKind,
        id: Option<u32>,
        how: &format::registry::Inference,
    ) -> Result<Option<Vec<(String, String)>>, StatementError> {
        let registry_err = |e: RuntimeError| PlanError::Invalid(e.to_string());
        let schema = match id {
            Some(id) => {
                let schema = self.registry.get(id).map_err(registry_err)?;
                Some(schema.ok_or_else(|| {
                    PlanError::Invalid(format!(
                        "Schema with id {id} for message {}s on topic '{topic}' does not exist in the Schema Registry.",
                        part
                    ))
                })?)
            }
            None => self
                .registry
                .latest_schema(&format::registry::subject(topic, part))
                .map_err(registry_err)?
                .map(|(_, s)| s),
        };
        let Some(schema) = schema else {
            return Ok(None);
        };
        let incompatible = |reason: String| {
            StatementError::Plan(PlanError::Invalid(format!(
                "Unable to verify if the schema for topic: {topic} is compatible with ksqlDB: {reason}"
            )))
        };
        if schema.format() != format {
            return Err(incompatible(format!(
                "the registered {part} schema is a {} schema, but the {part} format is {format}",
                schema.format()
            )));
        }
        format::registry::ksql_columns(&schema, how)
            .map(Some)
            .map_err(incompatible)
    }

    /// Checks and plans a statement, updating the catalog; what must happen outside the
    /// catalog (topics, queries, records) is returned as an [`Action`] for the backend.
    /// Plans `ps` as [`Session::plan`] does, giving a query it starts the id `query_id`
    /// rather than the next of the session's sequence: a replayed statement takes the id it
    /// was first given, whatever failed in between. Later ids come after it.
    pub fn plan_with_id(
        &mut self,
        ps: &ParsedStatement,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        query_id: Option<&str>,
    ) -> Result<Action, StatementError> {
        self.recorded_id = query_id.map(str::to_string);
        let planned = self.plan(ps, partitions_of);
        self.recorded_id = None;
        planned
    }

    /// The id of the query a statement starts: the recorded one when replaying, else
    /// `prefix` and the next number of the session's sequence.
    fn next_query_id(&mut self, prefix: &str) -> String {
        if let Some(id) = self.recorded_id.take() {
            // Ids end in their sequence number; new ones must not meet a replayed one.
            if let Some(n) = id.rsplit('_').next().and_then(|n| n.parse::<usize>().ok()) {
                self.query_seq = self.query_seq.max(n.saturating_add(1));
            }
            return id;
        }
        let id = format!("{prefix}{}", self.query_seq);
        self.query_seq += 1;
        id
    }

    pub fn plan(
        &mut self,
        ps: &ParsedStatement,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
    ) -> Result<Action, StatementError> {
        // The types one statement resolves (columns, CASTs of custom types) are bounded
        // together, however often it names a large CREATE TYPE.
        let _types = brook_planner::limits::StatementBudget::start();
        match &ps.statement {
            Statement::CreateSource {
                or_replace,
                source,
                kind,
                if_not_exists,
                name,
                elements,
                properties,
            } => {
                let name = name.value.clone();
                if *or_replace && *source {
                    return Err(PlanError::Invalid(format!(
                        "Cannot add {} '{name}': CREATE OR REPLACE is not supported on source {}s.",
                        kind_word(*kind),
                        kind_word(*kind)
                    ))
                    .into());
                }
                if let Some(existing) = self.catalog.sources.get(&name) {
                    if *if_not_exists {
                        return Ok(Action::None);
                    }
                    if !*or_replace {
                        return Err(PlanError::Invalid(format!(
                            "Cannot add {} '{name}': A {} with the same name already exists",
                            kind_word(*kind),
                            kind_word(existing.kind)
                        ))
                        .into());
                    }
                    if *source || existing.read_only {
                        return Err(PlanError::Invalid(format!(
                            "Cannot add {} '{name}': CREATE OR REPLACE is not supported on source {}s.",
                            kind_word(*kind),
                            kind_word(*kind)
                        ))
                        .into());
                    }
                }
                let inferred = self.infer_elements(*kind, elements, properties)?;
                let src = plan_create_source(
                    &self.catalog,
                    &self.defaults,
                    *kind,
                    &name,
                    inferred.as_deref().unwrap_or(elements),
                    properties,
                    *source,
                    &ps.text,
                )?;
                check_formats(&src)?;
                let partitions = src.partitions;
                self.catalog.sources.insert(name.clone(), src.clone());
                Ok(Action::CreateSource {
                    source: src,
                    partitions,
                })
            }
            Statement::CreateAsSelect {
                or_replace: _,
                kind,
                if_not_exists,
                name,
                properties,
                query,
            } => {
                let name = name.value.clone();
                if self.catalog.sources.contains_key(&name) {
                    if *if_not_exists {
                        return Ok(Action::None);
                    }
                    return Err(PlanError::Invalid(format!(
                        "Cannot add {} '{name}': A {} with the same name already exists",
                        kind_word(*kind),
                        kind_word(self.catalog.sources[&name].kind)
                    ))
                    .into());
                }
                if query.emit == Some(brook_sql::Emit::Final) && !is_aggregation(query) {
                    return Err(PlanError::Invalid(
                        brook_planner::aggregate::EMIT_FINAL_UNWINDOWED.into(),
                    )
                    .into());
                }
                if query.limit.is_some() {
                    return Err(PlanError::Invalid(format!(
                        "CREATE {} AS SELECT statements don't support LIMIT clause.",
                        kind_word(*kind).to_uppercase()
                    ))
                    .into());
                }
                let plan = if !query.joins.is_empty() && !is_aggregation(query) {
                    let p = brook_planner::join::plan_join(query, &self.catalog, &name)?;
                    let produces = if p.tables {
                        SourceKind::Table
                    } else {
                        SourceKind::Stream
                    };
                    if *kind != produces {
                        let (what, use_) = if p.tables {
                            ("TABLE", "CREATE TABLE AS SELECT")
                        } else {
                            ("STREAM", "CREATE STREAM AS SELECT")
                        };
                        return Err(PlanError::Invalid(format!(
                            "Invalid result type. Your SELECT query produces a {what}. Please use {use_} statement instead."
                        ))
                        .into());
                    }
                    QueryPlan::Join(Box::new(p))
                } else if is_aggregation(query) {
                    if *kind == SourceKind::Stream {
                        return Err(PlanError::Invalid(
                            "Invalid result type. Your SELECT query produces a TABLE. Please use CREATE TABLE AS SELECT statement instead.".into(),
                        )
                        .into());
                    }
                    let mut p = plan_aggregate(query, &self.catalog, &name)?;
                    if let Some(v) = self
                        .properties
                        .get(brook_planner::aggregate::EMIT_FINAL_IDLE_TIMEOUT)
                    {
                        p.idle_timeout_ms = v.trim().parse().map_err(|_| {
                            PlanError::Invalid(format!(
                                "{} must be a number of milliseconds, not '{v}'",
                                brook_planner::aggregate::EMIT_FINAL_IDLE_TIMEOUT
                            ))
                        })?;
                    }
                    QueryPlan::Aggregate(p)
                } else {
                    QueryPlan::Stateless(plan_stateless(query, &self.catalog, Target::Sink(&name))?)
                };
                let input = self.catalog.source(plan.source())?.clone();
                if matches!(plan, QueryPlan::Stateless(_)) && input.kind != *kind {
                    let (produces, use_) = if input.kind == SourceKind::Stream {
                        ("STREAM", "CREATE STREAM AS SELECT")
                    } else {
                        ("TABLE", "CREATE TABLE AS SELECT")
                    };
                    return Err(PlanError::Invalid(format!(
                        "Invalid result type. Your SELECT query produces a {produces}. Please use {use_} statement instead."
                    ))
                    .into());
                }
                let mut sink =
                    self.sink_source(&name, *kind, plan.output(), properties, &input, &ps.text)?;
                sink.window = plan.window();
                check_formats(&sink)?;
                let partitions = prop_int(properties, "PARTITIONS")?
                    .map(|p| p as i32)
                    .or_else(|| partitions_of(&input.topic))
                    .unwrap_or(1);
                let kind_prefix = if *kind == SourceKind::Stream {
                    "CSAS"
                } else {
                    "CTAS"
                };
                let id = self.next_query_id(&format!("{kind_prefix}_{name}_"));
                self.catalog.sources.insert(name.clone(), sink.clone());
                Ok(Action::StartQuery(Box::new(QuerySpec {
                    id,
                    input,
                    sink,
                    plan,
                    sink_partitions: Some(partitions),
                })))
            }
            Statement::InsertInto {
                target,
                properties: _,
                query,
            } => {
                let target = self.catalog.source(&target.value)?.clone();
                if target.kind == SourceKind::Table {
                    return Err(PlanError::Invalid(format!(
                        "INSERT INTO can only be used to insert into a stream. {} is a table.",
                        target.name
                    ))
                    .into());
                }
                if target.read_only {
                    return Err(PlanError::Invalid(format!(
                        "Cannot insert into read-only {}: {}",
                        kind_word(target.kind),
                        target.name
                    ))
                    .into());
                }
                if target.schema.header_columns().next().is_some() {
                    return Err(PlanError::Invalid(format!(
                        "Cannot insert into {} because it has header columns",
                        target.name
                    ))
                    .into());
                }
                if is_aggregation(query) {
                    return Err(PlanError::Unsupported(
                        "INSERT INTO with an aggregation is not supported yet".into(),
                    )
                    .into());
                }
                let plan = if query.joins.is_empty() {
                    QueryPlan::Stateless(plan_stateless(
                        query,
                        &self.catalog,
                        Target::Sink(&target.name),
                    )?)
                } else {
                    let p = brook_planner::join::plan_join(query, &self.catalog, &target.name)?;
                    if p.tables {
                        return Err(PlanError::Invalid(format!(
                            "INSERT INTO can only be used to insert into a stream. {} is a table.",
                            target.name
                        ))
                        .into());
                    }
                    QueryPlan::Join(Box::new(p))
                };
                let input = self.catalog.source(plan.source())?.clone();
                let output = plan.output();
                if output.columns.len() != target.schema.columns.len()
                    || output
                        .columns
                        .iter()
                        .zip(&target.schema.columns)
                        .any(|(a, b)| a.ty != b.ty || a.namespace != b.namespace)
                {
                    return Err(PlanError::Invalid(format!(
                        "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
                        output, target.schema
                    ))
                    .into());
                }
                let id = self.next_query_id("INSERTQUERY_");
                Ok(Action::StartQuery(Box::new(QuerySpec {
                    id,
                    input,
                    sink: target,
                    plan,
                    sink_partitions: None,
                })))
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => {
                let (source, rows) = self.insert_values(&target.value, columns, values)?;
                Ok(Action::Insert { source, rows })
            }
            Statement::Drop {
                name,
                if_exists,
                delete_topic,
                ..
            } => {
                let name = name.value.clone();
                if *delete_topic && self.catalog.sources.get(&name).is_some_and(|s| s.read_only) {
                    return Err(PlanError::Invalid(format!(
                        "Cannot delete topic for read-only source: {name}"
                    ))
                    .into());
                }
                if self.catalog.sources.remove(&name).is_none() && !*if_exists {
                    return Err(PlanError::UnknownSource(format!("Source {name}")).into());
                }
                Ok(Action::Drop(name))
            }
            Statement::AlterSource {
                kind,
                name,
                add_columns,
            } => {
                let word = kind_word(*kind);
                let src = self.catalog.source(&name.value)?.clone();
                if src.read_only {
                    return Err(PlanError::Invalid(format!(
                        "Cannot alter {word} '{}': ALTER operations are not supported on source {word}s.",
                        src.name
                    ))
                    .into());
                }
                if src.kind != *kind {
                    return Err(PlanError::Invalid(format!(
                        "Incompatible data source type is {}, but statement was ALTER {}",
                        kind_word(src.kind).to_uppercase(),
                        word.to_uppercase()
                    ))
                    .into());
                }
                let mut updated = src.clone();
                for (c, t) in add_columns {
                    if updated.schema.column(&c.value).is_some() {
                        return Err(PlanError::Invalid(format!(
                            "Cannot add column `{}` to schema. A column with the same name already exists.",
                            c.value
                        ))
                        .into());
                    }
                    let ty = self.catalog.resolve_type(t)?;
                    updated
                        .schema
                        .columns
                        .push(Column::new(c.value.clone(), ty, Namespace::Value));
                }
                self.catalog.sources.insert(updated.name.clone(), updated);
                Ok(Action::None)
            }
            Statement::CreateType {
                name,
                ty,
                if_not_exists,
            } => {
                let n = name.value.clone();
                if self.catalog.types.contains_key(&n) && !*if_not_exists {
                    return Err(PlanError::Invalid(format!(
                        "Cannot register custom type '{n}' since it is already registered with type: {}",
                        self.catalog.types[&n]
                    ))
                    .into());
                }
                let resolved = self.catalog.resolve_type(ty)?;
                self.catalog.types.insert(n.clone(), resolved);
                Ok(Action::None)
            }
            Statement::DropType { name, if_exists } => {
                if self.catalog.types.remove(&name.value).is_none() && !*if_exists {
                    return Err(
                        PlanError::Invalid(format!("Type {} does not exist.", name.value)).into(),
                    );
                }
                Ok(Action::None)
            }
            Statement::Set { name, value } => {
                self.set_property(name, value);
                Ok(Action::None)
            }
            Statement::Unset { name } => {
                self.properties.remove(name);
                Ok(Action::None)
            }
            other => Err(PlanError::Unsupported(format!(
                "statement not supported by the driver yet: {}",
                first_words(&other.to_string())
            ))
            .into()),
        }
    }

    fn sink_source(
        &self,
        name: &str,
        kind: SourceKind,
        schema: &LogicalSchema,
        props: &Properties,
        input: &Source,
        sql: &str,
    ) -> Result<Source, StatementError> {
        let topic = prop_text(props, "KAFKA_TOPIC").unwrap_or_else(|| {
            let prefix = self
                .properties
                .get("ksql.output.topic.name.prefix")
                .cloned()
                .unwrap_or_default();
            format!("{prefix}{name}")
        });
        let has = |k: &str| props.get(k).is_some();
        let mut defaults = Defaults {
            key_format: Some(input.key_format.kind.name().to_string()),
            value_format: Some(input.value_format.kind.name().to_string()),
            wrap_single_values: self.defaults.wrap_single_values,
        };
        if has("FORMAT") {
            defaults.key_format = None;
            defaults.value_format = None;
        }
        let (mut key_format, mut value_format) = brook_planner::catalog::formats(props, &defaults)?;
        if !has("FORMAT") && !has("KEY_FORMAT") {
            key_format.delimiter = input.key_format.delimiter;
            // An inherited key format that cannot carry the new key changes, as in ksqlDB:
            // KAFKA takes one column (several go to JSON), NONE takes none.
            use brook_planner::format::{FormatKind, FormatSpec};
            let keys = schema.key_columns().count();
            if keys > 1 && key_format.kind == FormatKind::Kafka {
                key_format = FormatSpec::new(FormatKind::Json);
            } else if keys > 0 && key_format.kind == FormatKind::None {
                key_format = FormatSpec::new(if keys > 1 {
                    FormatKind::Json
                } else {
                    FormatKind::Kafka
                });
            } else if keys == 0 && key_format.kind != FormatKind::None && !has("KEY_FORMAT") {
                key_format = FormatSpec::new(FormatKind::None);
            }
        } else if has("KEY_FORMAT")
            && schema.key_columns().count() == 0
            && key_format.kind != brook_planner::format::FormatKind::None
        {
            return Err(PlanError::Invalid(
                "Key format specified for stream without key columns.".into(),
            )
            .into());
        }
        if !has("FORMAT") && !has("VALUE_FORMAT") && !has("VALUE_DELIMITER") {
            value_format.delimiter = input.value_format.delimiter;
        }
        let timestamp = prop_text(props, "TIMESTAMP")
            .map(|t| (t.to_uppercase(), prop_text(props, "TIMESTAMP_FORMAT")));
        Ok(Source {
            name: name.to_string(),
            kind,
            schema: schema.clone(),
            topic,
            key_format,
            value_format,
            timestamp,
            window: None,
            read_only: false,
            partitions: prop_int(props, "PARTITIONS")?.map(|p| p as i32),
            sql: sql.to_string(),
        })
    }

    fn insert_values(
        &mut self,
        target: &str,
        columns: &[brook_sql::sqlparser::ast::Ident],
        values: &[brook_sql::sqlparser::ast::Expr],
    ) -> Result<(Source, Vec<EncodedRow>), StatementError> {
        let Ok(source) = self.catalog.source(target).cloned() else {
            // A name that differs only in case: ksqlDB hints at the quoting.
            let hint = self
                .catalog
                .sources
                .keys()
                .find(|n| n.eq_ignore_ascii_case(target))
                .map(|n| {
                    if n.to_uppercase() == *n {
                        format!("\nDid you mean {n}? Hint: try removing double quotes from the source name.")
                    } else {
                        format!("\nDid you mean \"{n}\"? Hint: wrap the source name in double quotes to make it case-sensitive.")
                    }
                })
                .unwrap_or_default();
            return Err(PlanError::Invalid(format!(
                "Cannot insert values into an unknown stream/table: `{target}`{hint}"
            ))
            .into());
        };
        if source.read_only {
            return Err(PlanError::Invalid(format!(
                "Cannot insert values into read-only {}: {}",
                kind_word(source.kind),
                source.name
            ))
            .into());
        }
        let all: Vec<String> = if columns.is_empty() {
            let mut v = vec!["ROWTIME".to_string()];
            v.extend(
                source
                    .schema
                    .key_columns()
                    .chain(source.schema.value_columns())
                    .map(|c| c.name.clone()),
            );
            if values.len() == v.len() - 1 {
                v.remove(0);
            }
            v
        } else {
            columns.iter().map(|c| c.value.clone()).collect()
        };
        if all.len() != values.len() {
            return Err(PlanError::Invalid(format!(
                "Expected a value for each column. Expected Columns: [{}]. Got [{}]",
                all.join(", "),
                values
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        let scope = brook_planner::expr::Scope {
            columns: Vec::new(),
            types: &self.catalog,
        };
        let empty = Arc::new(arrow::datatypes::Schema::empty());
        let one_row = RecordBatch::try_new_with_options(
            empty.clone(),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(RuntimeError::from)?;
        let mut timestamp: Option<i64> = None;
        let mut arrays: BTreeMap<String, ArrayRef> = BTreeMap::new();
        for (name, v) in all.iter().zip(values) {
            if matches!(name.as_str(), "ROWPARTITION" | "ROWOFFSET") {
                return Err(PlanError::Invalid(format!(
                    "Inserting into column `{name}` is not allowed."
                ))
                .into());
            }
            let (ty, dt) = if name == "ROWTIME" {
                (brook_sql::Type::Bigint, DataType::Int64)
            } else {
                let c = source.schema.column(name).ok_or_else(|| {
                    PlanError::Invalid(format!("Column name {name} does not exist."))
                })?;
                if matches!(c.namespace, Namespace::Headers | Namespace::Header(_)) {
                    return Err(PlanError::Invalid(format!(
                        "Cannot insert into HEADER columns: {name}"
                    ))
                    .into());
                }
                (
                    c.ty.clone(),
                    brook_planner::types::arrow_type(&c.ty, &self.catalog)?,
                )
            };
            let t = scope.compile(v)?;
            let t = scope_coerce(&scope, t, &ty)?;
            let phys = brook_planner::expr::physical(&t.expr, &empty)?;
            let arr = phys
                .evaluate(&one_row)
                .and_then(|c| c.into_array(1))
                .map_err(|e| RuntimeError::Eval(e.to_string()))?;
            let arr = if arr.data_type() != &dt {
                arrow::compute::cast(&arr, &dt).map_err(RuntimeError::from)?
            } else {
                arr
            };
            if name == "ROWTIME" {
                timestamp = arr
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .and_then(|a| (!a.is_null(0)).then(|| a.value(0)));
            } else {
                arrays.insert(name.clone(), arr);
            }
        }
        let schema = source.schema.row_schema(false, &self.catalog)?;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![timestamp.unwrap_or(0)])),
            Arc::new(Int32Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![0i64])),
        ];
        for c in &source.schema.columns {
            let dt = brook_planner::types::arrow_type(&c.ty, &self.catalog)?;
            cols.push(
                arrays
                    .remove(&c.name)
                    .unwrap_or_else(|| arrow::array::new_null_array(&dt, 1)),
            );
        }
        let batch = RecordBatch::try_new(schema, cols).map_err(RuntimeError::from)?;
        let ts = match (&source.timestamp, timestamp) {
            (_, Some(t)) => t,
            (Some(_), None) => row_timestamp(&source, &batch, 0)?.unwrap_or(0),
            (None, None) => 0,
        };
        let encoded = encode_batch(&source, &batch)?
            .into_iter()
            .map(|(k, v, _)| (k, v, ts))
            .collect();
        Ok((source, encoded))
    }
}

fn scope_coerce(
    scope: &brook_planner::expr::Scope,
    t: brook_planner::expr::Typed,
    ty: &brook_sql::Type,
) -> Result<brook_planner::expr::Typed, PlanError> {
    if let Some(from) = &t.ty {
        if !assignable(from, ty) {
            return Err(PlanError::Invalid(format!(
                "Expected type {ty} for field but got {} ({from})",
                t.expr
            )));
        }
    }
    scope.coerce_pub(t, ty)
}

/// Whether a value of type `from` goes into a column of type `to` as ksqlDB's INSERT VALUES
/// coerces it: the same type, a number widened, or a container whose elements are (a
/// literal `MAP('a':=0)` into a `MAP<STRING, BIGINT>`, a struct's fields by name).
fn assignable(from: &brook_sql::Type, to: &brook_sql::Type) -> bool {
    use brook_sql::Type;
    if from == to || brook_planner::expr::common_type(from, to).as_ref() == Some(to) {
        return true;
    }
    match (from, to) {
        (Type::Array(a), Type::Array(b)) => assignable(a, b),
        (Type::Map(ak, av), Type::Map(bk, bv)) => assignable(ak, bk) && assignable(av, bv),
        (Type::Struct(a), Type::Struct(b)) => a.iter().all(|f| {
            b.iter()
                .find(|g| g.name.value.eq_ignore_ascii_case(&f.name.value))
                .is_some_and(|g| assignable(&f.ty, &g.ty))
        }),
        _ => false,
    }
}

fn kind_word(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "stream",
        SourceKind::Table => "table",
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn contains_map(t: &brook_sql::Type) -> bool {
    use brook_sql::Type;
    match t {
        Type::Map(..) => true,
        Type::Array(i) => contains_map(i),
        Type::Struct(fs) => fs.iter().any(|f| contains_map(&f.ty)),
        _ => false,
    }
}

/// Rejects column types a format cannot carry, with ksqlDB's messages.
fn check_formats(src: &Source) -> Result<(), PlanError> {
    use brook_planner::schema::SchemaType;
    for c in src.schema.columns.iter() {
        match &c.namespace {
            Namespace::Key if contains_map(&c.ty) => {
                return Err(PlanError::Invalid(format!(
                    "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{}`. Column type: {}. See https://github.com/confluentinc/ksql/issues/6621 for more.",
                    c.name,
                    SchemaType(&c.ty)
                )));
            }
            Namespace::Header(_) if c.ty != brook_sql::Type::Bytes => {
                return Err(PlanError::Invalid(format!(
                    "Invalid type for HEADER('key') column: expected BYTES, got {}",
                    SchemaType(&c.ty)
                )));
            }
            Namespace::Headers => {
                let ok = matches!(&c.ty, brook_sql::Type::Array(item) if matches!(item.as_ref(),
                    brook_sql::Type::Struct(fs) if fs.len() == 2
                        && fs[0].name.value == "KEY" && fs[0].ty == brook_sql::Type::String
                        && fs[1].name.value == "VALUE" && fs[1].ty == brook_sql::Type::Bytes));
                if !ok {
                    return Err(PlanError::Invalid(format!(
                        "Invalid type for HEADERS column: expected ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>>, got {}",
                        SchemaType(&c.ty)
                    )));
                }
            }
            _ => {}
        }
    }
    let keys: Vec<Column> = src.schema.key_columns().cloned().collect();
    let values: Vec<Column> = src.schema.value_columns().cloned().collect();
    format::Codec::new(&src.key_format, Part::Key, &keys, &NoTypes)
        .and_then(|_| format::Codec::new(&src.value_format, Part::Value, &values, &NoTypes))
        .map(|_| ())
        .map_err(|e| PlanError::Invalid(e.to_string()))
}

//! The deterministic driver: statements run against an in-memory log of topics, with the
//! planner, operators and formats the server uses, and no Kafka.
//!
//! Each produced record is pushed through every query that reads its topic before the next
//! one is taken, the way ksqlDB's tests run with record caching off; outputs land in the
//! sink topics (and flow on to the queries reading those).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use brook_planner::catalog::{
    plan_create_source, prop_int, prop_text, Catalog, Defaults, Source,
};
use brook_planner::format::FormatSpec;
use brook_planner::query::{plan_stateless, Target};
use brook_planner::schema::{Column, LogicalSchema, Namespace};
use brook_planner::PlanError;
use brook_sql::{ParsedStatement, Properties, SourceKind, Statement};

use crate::error::{Result, RuntimeError};
use crate::format::{self, Part};
use brook_planner::types::NoTypes;
use crate::kafka::partition_for_key;
use crate::operator::{FilterProject, Operator};

/// A record in the in-memory log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub struct Topic {
    pub partitions: i32,
    /// Every record in the order it was appended (offsets are per partition).
    pub records: Vec<Record>,
    next_offsets: Vec<i64>,
}

impl Topic {
    fn new(partitions: i32) -> Self {
        let partitions = partitions.max(1);
        Topic {
            partitions,
            records: Vec::new(),
            next_offsets: vec![0; partitions as usize],
        }
    }
}

/// What a statement did, for callers that report it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    SourceCreated(String),
    QueryStarted { id: String, sink: String },
    Inserted,
    Dropped(String),
    TypeRegistered(String),
    PropertySet,
    Done,
}

struct RunningQuery {
    id: String,
    /// Whether the query filters rows: a record without a value never passes a filter.
    filters: bool,
    source_topic: String,
    source: Source,
    sink: Source,
    operator: Box<dyn Operator>,
}

/// Errors of statements, with ksqlDB's split between statements that cannot be parsed or
/// planned and failures while running.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Parse(#[from] brook_sql::ParseError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

#[derive(Default)]
pub struct Driver {
    pub catalog: Catalog,
    pub defaults: Defaults,
    pub properties: BTreeMap<String, String>,
    topics: BTreeMap<String, Topic>,
    queries: Vec<RunningQuery>,
    query_seq: usize,
    /// Records that could not be processed, as the processing log would show them.
    pub processing_log: Vec<String>,
}

impl Driver {
    pub fn new() -> Self {
        Driver::default()
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

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        self.topics
            .entry(name.to_string())
            .or_insert_with(|| Topic::new(partitions));
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// Parses and runs every statement of `sql`, stopping at the first error.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>, DriverError> {
        let stmts = brook_sql::parse(sql)?;
        let mut out = Vec::new();
        for s in stmts {
            out.push(self.execute_parsed(&s)?);
        }
        Ok(out)
    }

    pub fn execute_parsed(&mut self, ps: &ParsedStatement) -> Result<Outcome, DriverError> {
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
                if let Some(existing) = self.catalog.sources.get(&name) {
                    if *if_not_exists {
                        return Ok(Outcome::Done);
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
                let src = plan_create_source(
                    &self.catalog,
                    &self.defaults,
                    *kind,
                    &name,
                    elements,
                    properties,
                    *source,
                    &ps.text,
                )?;
                check_formats(&src)?;
                let partitions = src.partitions.unwrap_or(1);
                self.create_topic(&src.topic, partitions);
                self.catalog.sources.insert(name.clone(), src);
                Ok(Outcome::SourceCreated(name))
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
                        return Ok(Outcome::Done);
                    }
                    return Err(PlanError::Invalid(format!(
                        "Cannot add {} '{name}': A {} with the same name already exists",
                        kind_word(*kind),
                        kind_word(self.catalog.sources[&name].kind)
                    ))
                    .into());
                }
                let plan = plan_stateless(query, &self.catalog, Target::Sink(&name))?;
                let input = self.catalog.source(&plan.source)?.clone();
                if input.kind != *kind {
                    return Err(PlanError::Unsupported(format!(
                        "CREATE {} AS SELECT from a {} is not supported yet",
                        kind_word(*kind),
                        kind_word(input.kind)
                    ))
                    .into());
                }
                let sink = self.sink_source(&name, *kind, &plan.output, properties, &input, &ps.text)?;
                check_formats(&sink)?;
                let partitions = prop_int(properties, "PARTITIONS")?
                    .map(|p| p as i32)
                    .or_else(|| self.topics.get(&input.topic).map(|t| t.partitions))
                    .unwrap_or(1);
                self.create_topic(&sink.topic, partitions);
                let id = format!(
                    "{}_{}_{}",
                    if *kind == SourceKind::Stream { "CSAS" } else { "CTAS" },
                    name,
                    self.query_seq
                );
                self.query_seq += 1;
                let filters = plan.filter.is_some();
                let operator = FilterProject::new(plan, &self.catalog)?;
                self.catalog.sources.insert(name.clone(), sink.clone());
                self.start_query(id.clone(), input, sink, Box::new(operator), filters)?;
                Ok(Outcome::QueryStarted { id, sink: name })
            }
            Statement::InsertInto {
                target,
                properties: _,
                query,
            } => {
                let target = self.catalog.source(&target.value)?.clone();
                let plan = plan_stateless(query, &self.catalog, Target::Sink(&target.name))?;
                let input = self.catalog.source(&plan.source)?.clone();
                if plan.output.columns.len() != target.schema.columns.len()
                    || plan
                        .output
                        .columns
                        .iter()
                        .zip(&target.schema.columns)
                        .any(|(a, b)| a.ty != b.ty || a.namespace != b.namespace)
                {
                    return Err(PlanError::Invalid(format!(
                        "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
                        plan.output, target.schema
                    ))
                    .into());
                }
                let id = format!("INSERTQUERY_{}", self.query_seq);
                self.query_seq += 1;
                let filters = plan.filter.is_some();
                let operator = FilterProject::new(plan, &self.catalog)?;
                self.start_query(id.clone(), input, target.clone(), Box::new(operator), filters)?;
                Ok(Outcome::QueryStarted {
                    id,
                    sink: target.name,
                })
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => {
                self.insert_values(&target.value, columns, values)?;
                Ok(Outcome::Inserted)
            }
            Statement::Drop {
                name, if_exists, ..
            } => {
                let name = name.value.clone();
                if self.catalog.sources.remove(&name).is_none() && !*if_exists {
                    return Err(PlanError::UnknownSource(format!("Source {name}")).into());
                }
                self.queries.retain(|q| q.sink.name != name);
                Ok(Outcome::Dropped(name))
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
                Ok(Outcome::TypeRegistered(n))
            }
            Statement::DropType { name, if_exists } => {
                if self.catalog.types.remove(&name.value).is_none() && !*if_exists {
                    return Err(PlanError::Invalid(format!(
                        "Type {} does not exist.",
                        name.value
                    ))
                    .into());
                }
                Ok(Outcome::Done)
            }
            Statement::Set { name, value } => {
                self.set_property(name, value);
                Ok(Outcome::PropertySet)
            }
            Statement::Unset { name } => {
                self.properties.remove(name);
                Ok(Outcome::PropertySet)
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
    ) -> Result<Source, DriverError> {
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
        }
        if !has("FORMAT") && !has("VALUE_FORMAT") && !has("VALUE_DELIMITER") {
            value_format.delimiter = input.value_format.delimiter;
        }
        let timestamp = prop_text(props, "TIMESTAMP").map(|t| {
            (t.to_uppercase(), prop_text(props, "TIMESTAMP_FORMAT"))
        });
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

    fn start_query(
        &mut self,
        id: String,
        source: Source,
        sink: Source,
        operator: Box<dyn Operator>,
        filters: bool,
    ) -> Result<(), DriverError> {
        let topic = source.topic.clone();
        self.queries.push(RunningQuery {
            id,
            filters,
            source_topic: topic.clone(),
            source,
            sink,
            operator,
        });
        // Queries start from the earliest offset: records already in the topic flow now.
        let idx = self.queries.len() - 1;
        let existing: Vec<Record> = self
            .topics
            .get(&topic)
            .map(|t| t.records.clone())
            .unwrap_or_default();
        let mut work = VecDeque::new();
        for r in existing {
            self.run_query(idx, &r, &mut work);
        }
        self.drain(work);
        Ok(())
    }

    /// Appends a record to a topic and runs it through every query downstream.
    pub fn produce(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        headers: Vec<(String, Option<Vec<u8>>)>,
        partition: Option<i32>,
    ) {
        let rec = self.append(topic, key, value, timestamp, headers, partition);
        let mut work = VecDeque::new();
        work.push_back((topic.to_string(), rec));
        self.drain(work);
    }

    fn append(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        headers: Vec<(String, Option<Vec<u8>>)>,
        partition: Option<i32>,
    ) -> Record {
        let t = self
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| Topic::new(1));
        let partition = partition
            .unwrap_or_else(|| match &key {
                Some(k) => partition_for_key(k, t.partitions),
                None => 0,
            })
            .rem_euclid(t.partitions);
        let offset = t.next_offsets[partition as usize];
        t.next_offsets[partition as usize] += 1;
        let rec = Record {
            key,
            value,
            timestamp,
            headers,
            partition,
            offset,
        };
        t.records.push(rec.clone());
        rec
    }

    fn drain(&mut self, mut work: VecDeque<(String, Record)>) {
        while let Some((topic, rec)) = work.pop_front() {
            for i in 0..self.queries.len() {
                if self.queries[i].source_topic == topic {
                    self.run_query(i, &rec, &mut work);
                }
            }
        }
    }

    fn run_query(&mut self, idx: usize, rec: &Record, work: &mut VecDeque<(String, Record)>) {
        let result = self.run_query_inner(idx, rec);
        match result {
            Ok(outputs) => {
                for (topic, key, value, ts, partition) in outputs {
                    let r = self.append(&topic, key, value, ts, Vec::new(), partition);
                    work.push_back((topic, r));
                }
            }
            Err(e) => {
                let q = &self.queries[idx];
                self.processing_log.push(format!(
                    "query {}: topic {} partition {} offset {}: {e}",
                    q.id, q.source_topic, rec.partition, rec.offset
                ));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn run_query_inner(
        &mut self,
        idx: usize,
        rec: &Record,
    ) -> Result<Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>, i64, Option<i32>)>> {
        let types = self.catalog.clone();
        let q = &mut self.queries[idx];
        // A stream record without a value travels on as one (re-keyed if the query
        // re-keys), unless a filter stands in its way.
        let null_value = rec.value.is_none();
        if null_value && q.filters {
            return Ok(Vec::new());
        }
        let batch = decode_records(&q.source, std::slice::from_ref(rec), &types)?;
        let Some(batch) = batch else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        q.operator.process(batch, &mut out)?;
        let sink_partitions = self
            .topics
            .get(&q.sink.topic)
            .map(|t| t.partitions)
            .unwrap_or(1);
        let mut records = Vec::new();
        for b in out {
            let encoded = encode_batch(&q.sink, &b)?;
            for (key, value, ts) in encoded {
                let value = if null_value { None } else { value };
                let partition = match &key {
                    Some(k) => Some(partition_for_key(k, sink_partitions)),
                    None => Some(rec.partition % sink_partitions),
                };
                records.push((q.sink.topic.clone(), key, value, ts, partition));
            }
        }
        Ok(records)
    }

    fn insert_values(
        &mut self,
        target: &str,
        columns: &[brook_sql::sqlparser::ast::Ident],
        values: &[brook_sql::sqlparser::ast::Expr],
    ) -> Result<(), DriverError> {
        let source = self.catalog.source(target)?.clone();
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
                values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
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
        let schema = source
            .schema
            .row_schema(false, &self.catalog)?;
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
        let encoded = encode_batch(&source, &batch)?;
        for (key, value, _) in encoded {
            self.produce(&source.topic, key, value, ts, Vec::new(), None);
        }
        Ok(())
    }

    /// The ids of running queries.
    pub fn query_ids(&self) -> Vec<String> {
        self.queries.iter().map(|q| q.id.clone()).collect()
    }
}

fn scope_coerce(
    scope: &brook_planner::expr::Scope,
    t: brook_planner::expr::Typed,
    ty: &brook_sql::Type,
) -> Result<brook_planner::expr::Typed, PlanError> {
    if let Some(from) = &t.ty {
        if from != ty
            && brook_planner::expr::common_type(from, ty).as_ref() != Some(ty)
        {
            return Err(PlanError::Invalid(format!(
                "Expected type {ty} for field but got {} ({from})",
                t.expr
            )));
        }
    }
    scope.coerce_pub(t, ty)
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

/// Decodes records of a source into one row batch (None when no record decoded).
pub fn decode_records(
    source: &Source,
    records: &[Record],
    types: &Catalog,
) -> Result<Option<RecordBatch>> {
    let schema = source
        .schema
        .row_schema(false, types)
        .map_err(|e| RuntimeError::Plan(e.to_string()))?;
    let keys: Vec<Column> = source.schema.key_columns().cloned().collect();
    let values: Vec<Column> = source.schema.value_columns().cloned().collect();
    let key_payloads: Vec<Option<&[u8]>> = records.iter().map(|r| r.key.as_deref()).collect();
    let value_payloads: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
    let k = format::Codec::new(&source.key_format, Part::Key, &keys, types)?.decode(&key_payloads)?;
    let v = format::Codec::new(&source.value_format, Part::Value, &values, types)?
        .decode(&value_payloads)?;
    if let Some(Some(e)) = k.errors.iter().find(|e| e.is_some()) {
        return Err(RuntimeError::Plan(format!("key: {e}")));
    }
    if let Some(Some(e)) = v.errors.iter().find(|e| e.is_some()) {
        return Err(RuntimeError::Plan(format!("value: {e}")));
    }
    let mut key_arrays = k.columns.into_iter();
    let mut value_arrays = v.columns.into_iter();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.timestamp))),
        Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.partition))),
        Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.offset))),
    ];
    for c in &source.schema.columns {
        let dt = brook_planner::types::arrow_type(&c.ty, types)
            .map_err(|e| RuntimeError::Plan(e.to_string()))?;
        let arr = match &c.namespace {
            Namespace::Key => key_arrays.next(),
            Namespace::Value => value_arrays.next(),
            Namespace::Headers | Namespace::Header(_) => Some(headers_array(c, records, &dt)?),
        }
        .ok_or_else(|| RuntimeError::Plan(format!("no data decoded for column {}", c.name)))?;
        cols.push(arr);
    }
    let mut batch = RecordBatch::try_new(schema, cols)?;
    if source.timestamp.is_some() {
        let mut ts = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            ts.push(row_timestamp(source, &batch, i)?.ok_or_else(|| {
                RuntimeError::Plan(format!(
                    "the TIMESTAMP column {} is null",
                    source.timestamp.as_ref().map(|t| t.0.as_str()).unwrap_or("")
                ))
            })?);
        }
        let mut cols = batch.columns().to_vec();
        cols[0] = Arc::new(Int64Array::from(ts));
        batch = RecordBatch::try_new(batch.schema(), cols)?;
    }
    Ok(Some(batch))
}

fn headers_array(c: &Column, records: &[Record], dt: &DataType) -> Result<ArrayRef> {
    use arrow::array::BinaryArray;
    match &c.namespace {
        Namespace::Header(k) => {
            let vals: Vec<Option<&[u8]>> = records
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .rev()
                        .find(|(hk, _)| hk == k)
                        .and_then(|(_, v)| v.as_deref())
                })
                .collect();
            Ok(Arc::new(BinaryArray::from(vals)))
        }
        _ => {
            // ARRAY<STRUCT<KEY STRING, VALUE BYTES>>: built through JSON-free scalar values.
            use datafusion::common::ScalarValue;
            let DataType::List(item) = dt else {
                return Err(RuntimeError::Plan(format!(
                    "HEADERS column {} must be ARRAY<STRUCT<KEY STRING, VALUE BYTES>>",
                    c.name
                )));
            };
            let DataType::Struct(fields) = item.data_type() else {
                return Err(RuntimeError::Plan("HEADERS items must be structs".into()));
            };
            let mut lists = Vec::new();
            for r in records {
                let mut items = Vec::new();
                for (k, v) in &r.headers {
                    let s = ScalarValue::Struct(Arc::new(
                        arrow::array::StructArray::try_new(
                            fields.clone(),
                            vec![
                                Arc::new(arrow::array::StringArray::from(vec![k.as_str()])),
                                Arc::new(BinaryArray::from(vec![v.as_deref()])),
                            ],
                            None,
                        )?,
                    ));
                    items.push(s);
                }
                lists.push(ScalarValue::List(ScalarValue::new_list_nullable(
                    &items,
                    item.data_type(),
                )));
            }
            ScalarValue::iter_to_array(lists).map_err(|e| RuntimeError::Eval(e.to_string()))
        }
    }
}

/// ROWTIME from the source's TIMESTAMP column.
fn row_timestamp(source: &Source, batch: &RecordBatch, row: usize) -> Result<Option<i64>> {
    let Some((col, fmt)) = &source.timestamp else {
        return Ok(None);
    };
    let Some(idx) = batch.schema().index_of(col).ok() else {
        return Err(RuntimeError::Plan(format!("no TIMESTAMP column {col}")));
    };
    let arr = batch.column(idx);
    if arr.is_null(row) {
        return Ok(None);
    }
    match arr.data_type() {
        DataType::Int64 => Ok(arr
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(row))),
        DataType::Timestamp(_, _) => {
            let c = arrow::compute::cast(arr, &DataType::Int64)?;
            Ok(c.as_any().downcast_ref::<Int64Array>().map(|a| a.value(row)))
        }
        DataType::Utf8 => {
            let s = arr
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .map(|a| a.value(row).to_string())
                .unwrap_or_default();
            Err(RuntimeError::Plan(format!(
                "TIMESTAMP_FORMAT parsing is not supported yet ({s:?} with format {fmt:?})"
            )))
        }
        other => Err(RuntimeError::Plan(format!(
            "TIMESTAMP column {col} has unsupported type {other}"
        ))),
    }
}

type EncodedRow = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// Encodes a row batch of a source's schema into key and value payloads.
pub fn encode_batch(sink: &Source, batch: &RecordBatch) -> Result<Vec<EncodedRow>> {
    let schema = batch.schema();
    let pick = |cols: &[Column]| -> Result<Vec<ArrayRef>> {
        cols.iter()
            .map(|c| {
                schema
                    .index_of(&c.name)
                    .map(|i| batch.column(i).clone())
                    .map_err(RuntimeError::from)
            })
            .collect()
    };
    let keys: Vec<Column> = sink.schema.key_columns().cloned().collect();
    let values: Vec<Column> = sink
        .schema
        .columns
        .iter()
        .filter(|c| c.namespace != Namespace::Key)
        .cloned()
        .collect();
    let rows = batch.num_rows();
    let key_arrays = pick(&keys)?;
    let mut k = format::encode(&sink.key_format, Part::Key, &keys, &key_arrays, 0..rows)?;
    // A key whose columns are all NULL is a null key, whatever the format.
    for (i, slot) in k.iter_mut().enumerate() {
        if !key_arrays.is_empty() && key_arrays.iter().all(|a| a.is_null(i)) {
            *slot = None;
        }
    }
    let v = format::encode(&sink.value_format, Part::Value, &values, &pick(&values)?, 0..rows)?;
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| RuntimeError::Plan("ROWTIME must be BIGINT".into()))?;
    Ok(k.into_iter()
        .zip(v)
        .enumerate()
        .map(|(i, (k, v))| (k, v, ts.value(i)))
        .collect())
}

/// Formats of a source as (key, value) pairs, for callers that convert test data.
pub fn source_formats(s: &Source) -> (&FormatSpec, &FormatSpec) {
    (&s.key_format, &s.value_format)
}

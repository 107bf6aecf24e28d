//! Schema Registry: where writers register their schemas (AVRO, PROTOBUF, JSON_SR) and
//! readers find the schema a payload names by id, as Confluent's Schema Registry serves them;
//! `CREATE STREAM/TABLE` without columns infers them from a topic's registered schemas.
//!
//! [`InMemoryRegistry`] is the one the deterministic driver and the tests share (brook-server
//! keeps one, logged to its data directory, and serves it over Confluent's REST API);
//! [`super::registry_client`] is a client of such a REST API (Confluent's Schema Registry,
//! or a Brook server), with the same trait. [`set_default_registry`] picks the process's.
//! [`wire`] turns schemas into the REST API's shapes and back.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::Schema;
use brook_planner::format::FormatKind;

use super::{json_schema, proto_schema};
use crate::{Result, RuntimeError};

/// A `.proto` schema with the files it imports, as Schema Registry's references give them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtobufSchema {
    pub text: String,
    /// (import name, file text) of each file the schema imports, directly or through
    /// another import: everything a reader needs to parse the schema.
    pub references: Vec<(String, String)>,
    /// The direct imports as the registry names them (import name, subject, version),
    /// when the schema was registered with references to other subjects; empty when the
    /// imports came as texts. Not part of the schema's identity: the texts are.
    pub named: Vec<SchemaReference>,
}

/// A schema's reference to another one registered under `subject` at `version`, imported
/// under `name` (Confluent's `references` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// A schema in one of the formats Schema Registry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisteredSchema {
    Avro(Arc<Schema>),
    Protobuf(Arc<ProtobufSchema>),
    Json(Arc<serde_json::Value>),
}

impl RegisteredSchema {
    /// The serialization format whose schemas these are.
    pub fn format(&self) -> FormatKind {
        match self {
            RegisteredSchema::Avro(_) => FormatKind::Avro,
            RegisteredSchema::Protobuf(_) => FormatKind::Protobuf,
            RegisteredSchema::Json(_) => FormatKind::JsonSr,
        }
    }

    /// What tells two schemas apart: the format and the schema's full text. Not Avro's
    /// Parsing Canonical Form: it drops logical types, so DECIMAL(4,2) and DECIMAL(4,3)
    /// would share an id and be read at the wrong scale.
    fn identity(&self) -> Result<String> {
        Ok(match self {
            RegisteredSchema::Avro(s) => {
                let json =
                    serde_json::to_string(s.as_ref()).map_err(|e| RuntimeError::FormatSchema {
                        reason: format!("cannot register an Avro schema: {e}"),
                    })?;
                format!("AVRO:{json}")
            }
            RegisteredSchema::Protobuf(p) => {
                let mut key = format!("PROTOBUF:{}", p.text);
                for (name, text) in &p.references {
                    key.push_str(&format!("\0{name}\0{text}"));
                }
                key
            }
            RegisteredSchema::Json(v) => format!("JSON:{v}"),
        })
    }
}

/// Subjects map to versions of schemas; every distinct schema has one id, whichever subjects
/// it is registered under (as Confluent's registry assigns them).
pub trait SchemaRegistry: fmt::Debug + Send + Sync {
    /// Registers `schema` under `subject` (a new version unless it is already the latest)
    /// and returns its id: `id` when given (refused when another schema has it), else the
    /// schema's existing id or a new one.
    fn register_schema(
        &self,
        subject: &str,
        schema: RegisteredSchema,
        id: Option<u32>,
    ) -> Result<u32>;

    /// The schema with id `id`, if any.
    fn get(&self, id: u32) -> Result<Option<RegisteredSchema>>;

    /// The latest schema registered under `subject`, with its id.
    fn latest_schema(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>>;

    /// Every subject with at least one version, sorted.
    fn subjects(&self) -> Result<Vec<String>>;

    /// The ids of `subject`'s versions, version 1 first; empty for an unknown subject.
    fn versions(&self, subject: &str) -> Result<Vec<u32>>;

    /// Forgets `subject` and returns the version numbers it had (empty when unknown). The
    /// schemas keep their ids, so records written with them stay readable, as after
    /// Confluent's (soft) delete.
    fn delete_subject(&self, subject: &str) -> Result<Vec<u32>>;

    /// Registers an Avro schema; see [`SchemaRegistry::register_schema`].
    fn register(&self, subject: &str, schema: &Schema) -> Result<u32> {
        self.register_schema(
            subject,
            RegisteredSchema::Avro(Arc::new(schema.clone())),
            None,
        )
    }

    /// The Avro schema with id `id`, if any (`None` for other formats' ids too).
    fn schema_by_id(&self, id: u32) -> Result<Option<Arc<Schema>>> {
        Ok(match self.get(id)? {
            Some(RegisteredSchema::Avro(s)) => Some(s),
            _ => None,
        })
    }

    /// The latest schema under `subject` when it is an Avro one, with its id.
    fn latest(&self, subject: &str) -> Result<Option<(u32, Arc<Schema>)>> {
        Ok(match self.latest_schema(subject)? {
            Some((id, RegisteredSchema::Avro(s))) => Some((id, s)),
            _ => None,
        })
    }
}

/// Refuses schemas that readers could not decode safely: recursive Avro schemas, and Avro
/// schemas nesting too deep (see [`super::avro_datum::check_schema`]).
fn check_readable(schema: &RegisteredSchema) -> std::result::Result<(), String> {
    match schema {
        RegisteredSchema::Avro(s) => super::avro_datum::check_schema(s),
        RegisteredSchema::Protobuf(_) | RegisteredSchema::Json(_) => Ok(()),
    }
}

/// A registry held in memory. Ids start at 1, as Confluent's do.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    schemas: HashMap<u32, RegisteredSchema>,
    /// Ids by [`RegisteredSchema::identity`].
    ids: HashMap<String, u32>,
    /// Ids of each subject's versions, oldest first.
    subjects: HashMap<String, Vec<u32>>,
    /// The highest id given so far; new ids count up from it.
    last_id: u32,
}

impl InMemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every update
        // is a single insert or push), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id [`SchemaRegistry::register_schema`] would give `schema` under `subject`,
    /// without registering it (the same checks, the same refusals): a durable registry
    /// records the schema under that id first and publishes it only once recorded.
    pub fn id_for(&self, subject: &str, schema: &RegisteredSchema, id: Option<u32>) -> Result<u32> {
        let key = schema.identity()?;
        choose_id(&self.lock(), subject, schema, &key, id)
    }
}

/// The id a registration takes: the one asked for (unless another schema has it), the
/// schema's own when it is known, else the next free one.
fn choose_id(
    inner: &Inner,
    subject: &str,
    schema: &RegisteredSchema,
    key: &str,
    id: Option<u32>,
) -> Result<u32> {
    if !inner.ids.contains_key(key) {
        check_readable(schema).map_err(|reason| RuntimeError::FormatSchema {
            reason: format!("cannot register a schema under `{subject}`: {reason}"),
        })?;
    }
    match id {
        Some(id) => match inner.schemas.get(&id) {
            Some(existing) if existing.identity()? != key => Err(RuntimeError::FormatSchema {
                reason: format!(
                    "cannot register a schema under `{subject}` with id {id}: another schema has that id"
                ),
            }),
            _ => Ok(id),
        },
        None => match inner.ids.get(key) {
            Some(id) => Ok(*id),
            None => inner
                .last_id
                .checked_add(1)
                .ok_or_else(|| RuntimeError::FormatSchema {
                    reason: "the schema registry is full".into(),
                }),
        },
    }
}

impl SchemaRegistry for InMemoryRegistry {
    fn register_schema(
        &self,
        subject: &str,
        schema: RegisteredSchema,
        id: Option<u32>,
    ) -> Result<u32> {
        let key = schema.identity()?;
        let mut inner = self.lock();
        let id = choose_id(&inner, subject, &schema, &key, id)?;
        inner.last_id = inner.last_id.max(id);
        inner.schemas.entry(id).or_insert(schema);
        inner.ids.entry(key).or_insert(id);
        // A schema the subject already has keeps its version, as in Confluent's registry:
        // registering is idempotent, and writers register on every batch.
        let versions = inner.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    fn get(&self, id: u32) -> Result<Option<RegisteredSchema>> {
        Ok(self.lock().schemas.get(&id).cloned())
    }

    fn latest_schema(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        let inner = self.lock();
        let Some(id) = inner.subjects.get(subject).and_then(|v| v.last()).copied() else {
            return Ok(None);
        };
        Ok(inner.schemas.get(&id).cloned().map(|s| (id, s)))
    }

    fn subjects(&self) -> Result<Vec<String>> {
        let mut subjects: Vec<String> = self
            .lock()
            .subjects
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        subjects.sort();
        Ok(subjects)
    }

    fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        Ok(self
            .lock()
            .subjects
            .get(subject)
            .cloned()
            .unwrap_or_default())
    }

    fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let removed = self.lock().subjects.remove(subject).unwrap_or_default();
        Ok((1..=removed.len())
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
            .collect())
    }
}

static DEFAULT: OnceLock<Arc<dyn SchemaRegistry>> = OnceLock::new();

/// The registry codecs and sessions use unless given another: one per process, so that what
/// a codec writes any other codec of the process can read. An [`InMemoryRegistry`] unless
/// [`set_default_registry`] chose another first.
pub fn default_registry() -> Arc<dyn SchemaRegistry> {
    let registry = DEFAULT.get_or_init(|| Arc::new(InMemoryRegistry::new()));
    Arc::clone(registry)
}

/// Makes `registry` the process's default (e.g. a client of an external Schema Registry).
/// Only before anything used the default: codecs already built hold the old one, so a late
/// change would split the process between two registries. Err when it is too late.
pub fn set_default_registry(registry: Arc<dyn SchemaRegistry>) -> Result<()> {
    DEFAULT
        .set(registry)
        .map_err(|_| RuntimeError::FormatSchema {
            reason: "the schema registry was chosen already: set it before any statement runs"
                .into(),
        })
}

/// A registry of one owner (a driver, a test), as a fresh Schema Registry would be: its
/// own subjects and its own ids, counting from 1, so that statements naming schemas by id
/// (`VALUE_SCHEMA_ID=1`) find the ones their owner registered, and one owner's
/// `<topic>-value` never shadows another's. Codecs do not read through it: they find the
/// schemas they write by id in the process-wide registry.
#[derive(Debug, Default)]
pub struct ScopedRegistry {
    own: InMemoryRegistry,
}

impl ScopedRegistry {
    pub fn new() -> Self {
        Self::default()
    }
}

impl SchemaRegistry for ScopedRegistry {
    fn register_schema(
        &self,
        subject: &str,
        schema: RegisteredSchema,
        id: Option<u32>,
    ) -> Result<u32> {
        self.own.register_schema(subject, schema, id)
    }

    fn get(&self, id: u32) -> Result<Option<RegisteredSchema>> {
        self.own.get(id)
    }

    fn latest_schema(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        self.own.latest_schema(subject)
    }

    fn subjects(&self) -> Result<Vec<String>> {
        self.own.subjects()
    }

    fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        self.own.versions(subject)
    }

    fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        self.own.delete_subject(subject)
    }
}

/// Registers an Avro schema given as JSON (as tests and REST clients give them) under
/// `subject`.
pub fn register_json(
    registry: &dyn SchemaRegistry,
    subject: &str,
    schema: &serde_json::Value,
) -> Result<u32> {
    register_for_format(registry, subject, FormatKind::Avro, schema, &[], None)
}

/// Registers a schema of `format` as tests and REST clients give them: AVRO schemas and
/// JSON schemas as JSON, PROTOBUF ones as `.proto` text with the text of the files they
/// import in `references` (import name, text). `id` asks for a given id.
pub fn register_for_format(
    registry: &dyn SchemaRegistry,
    subject: &str,
    format: FormatKind,
    schema: &serde_json::Value,
    references: &[(String, String)],
    id: Option<u32>,
) -> Result<u32> {
    let err = |reason: String| RuntimeError::FormatSchema {
        reason: format!("cannot register a schema under `{subject}`: {reason}"),
    };
    let schema = match format {
        FormatKind::Avro => RegisteredSchema::Avro(Arc::new(
            super::avro_datum::parse_schema(schema).map_err(err)?,
        )),
        FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
            let text = schema
                .as_str()
                .ok_or_else(|| err("a protobuf schema is `.proto` text".into()))?;
            RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
                text: text.to_string(),
                references: references.to_vec(),
                named: Vec::new(),
            }))
        }
        FormatKind::Json | FormatKind::JsonSr => RegisteredSchema::Json(Arc::new(schema.clone())),
        other => return Err(err(format!("{other} has no schemas"))),
    };
    registry.register_schema(subject, schema, id)
}

/// Schemas in the shapes of Confluent Schema Registry's REST API: `schemaType` names, the
/// schema as text, `references` entries; shared by brook-server's endpoints and the client.
pub mod wire {
    use std::sync::Arc;

    use serde_json::{json, Map, Value};

    use super::{ProtobufSchema, RegisteredSchema, SchemaReference, SchemaRegistry};

    /// How deep references may nest: a cycle or a runaway chain is refused, not followed.
    const MAX_REFERENCE_DEPTH: usize = 32;

    /// Confluent's `schemaType`: `AVRO`, `PROTOBUF` or `JSON`.
    pub fn schema_type(schema: &RegisteredSchema) -> &'static str {
        match schema {
            RegisteredSchema::Avro(_) => "AVRO",
            RegisteredSchema::Protobuf(_) => "PROTOBUF",
            RegisteredSchema::Json(_) => "JSON",
        }
    }

    /// The schema as the REST API's `schema` string carries it: Avro and JSON Schema as JSON
    /// text, protobuf as `.proto` text.
    pub fn schema_text(schema: &RegisteredSchema) -> Result<String, String> {
        match schema {
            RegisteredSchema::Avro(s) => serde_json::to_string(s.as_ref())
                .map_err(|e| format!("cannot write the Avro schema as JSON: {e}")),
            RegisteredSchema::Protobuf(p) => Ok(p.text.clone()),
            RegisteredSchema::Json(v) => Ok(v.to_string()),
        }
    }

    /// The `references` entries of a schema (only protobuf schemas registered with
    /// references to other subjects have any).
    pub fn references_json(schema: &RegisteredSchema) -> Vec<Value> {
        match schema {
            RegisteredSchema::Protobuf(p) => p
                .named
                .iter()
                .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `{"schema": …, "schemaType": …, "references": […]}` as Confluent answers for a
    /// schema: no `schemaType` for AVRO (its default), no `references` when there are none.
    pub fn schema_body(schema: &RegisteredSchema) -> Result<Map<String, Value>, String> {
        let mut body = Map::new();
        if !matches!(schema, RegisteredSchema::Avro(_)) {
            body.insert("schemaType".into(), schema_type(schema).into());
        }
        body.insert("schema".into(), schema_text(schema)?.into());
        let refs = references_json(schema);
        if !refs.is_empty() {
            body.insert("references".into(), Value::Array(refs));
        }
        Ok(body)
    }

    /// The `references` of a request or answer.
    pub fn parse_references(v: &Value) -> Result<Vec<SchemaReference>, String> {
        let Some(list) = v.as_array() else {
            return match v {
                Value::Null => Ok(Vec::new()),
                _ => Err("`references` must be a list".into()),
            };
        };
        list.iter()
            .map(|r| {
                let name = r["name"].as_str().ok_or("a reference needs a `name`")?;
                let subject = r["subject"]
                    .as_str()
                    .ok_or("a reference needs a `subject`")?;
                let version = r["version"]
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v > 0)
                    .ok_or("a reference needs a positive `version`")?;
                Ok(SchemaReference {
                    name: name.to_string(),
                    subject: subject.to_string(),
                    version,
                })
            })
            .collect()
    }

    /// A schema of `schema_type` (`None`: AVRO, as Confluent defaults) from its text.
    /// `named` are its references as the registry names them and `resolved` the texts of
    /// every file they bring in (see [`resolve_references`]); only protobuf schemas may
    /// have references here.
    pub fn parse(
        schema_type: Option<&str>,
        text: &str,
        named: Vec<SchemaReference>,
        resolved: Vec<(String, String)>,
    ) -> Result<RegisteredSchema, String> {
        let kind = schema_type.unwrap_or("AVRO").to_ascii_uppercase();
        if kind != "PROTOBUF" && !named.is_empty() {
            return Err(format!(
                "references are only supported for PROTOBUF schemas, not {kind}"
            ));
        }
        match kind.as_str() {
            "AVRO" => {
                let json = serde_json::from_str::<Value>(text)
                    .map_err(|e| format!("Invalid schema: not JSON: {e}"))?;
                let schema = super::super::avro_datum::parse_schema(&json)
                    .map_err(|e| format!("Invalid schema: {e}"))?;
                Ok(RegisteredSchema::Avro(Arc::new(schema)))
            }
            "JSON" => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("Invalid schema: not JSON: {e}"))
                .and_then(|v| match v {
                    Value::Object(_) | Value::Bool(_) => Ok(RegisteredSchema::Json(Arc::new(v))),
                    _ => Err("Invalid schema: a JSON schema is an object or a boolean".into()),
                }),
            "PROTOBUF" => {
                if text.trim().is_empty() {
                    return Err("Invalid schema: empty protobuf schema".into());
                }
                Ok(RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
                    text: text.to_string(),
                    references: resolved,
                    named,
                })))
            }
            other => Err(format!(
                "Invalid schema type {other}: expected AVRO, PROTOBUF or JSON"
            )),
        }
    }

    /// The (import name, text) of every file `refs` bring in, their own imports included
    /// (each once), looked up in `registry` by subject and version.
    pub fn resolve_references(
        registry: &dyn SchemaRegistry,
        refs: &[SchemaReference],
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        resolve_into(registry, refs, &mut out, 0)?;
        Ok(out)
    }

    fn resolve_into(
        registry: &dyn SchemaRegistry,
        refs: &[SchemaReference],
        out: &mut Vec<(String, String)>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err("references nest too deep (a cycle?)".into());
        }
        for r in refs {
            if out.iter().any(|(n, _)| *n == r.name) {
                continue;
            }
            let versions = registry.versions(&r.subject).map_err(|e| e.to_string())?;
            let id = usize::try_from(r.version)
                .ok()
                .and_then(|v| versions.get(v.checked_sub(1)?))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "Invalid schema: reference `{}`: subject '{}' has no version {}",
                        r.name, r.subject, r.version
                    )
                })?;
            match registry.get(id).map_err(|e| e.to_string())? {
                Some(RegisteredSchema::Protobuf(p)) => {
                    out.push((r.name.clone(), p.text.clone()));
                    for (name, text) in &p.references {
                        if !out.iter().any(|(n, _)| n == name) {
                            out.push((name.clone(), text.clone()));
                        }
                    }
                    resolve_into(registry, &p.named, out, depth + 1)?;
                }
                Some(other) => {
                    return Err(format!(
                        "Invalid schema: reference `{}` is a {} schema; a protobuf schema imports protobuf files",
                        r.name,
                        schema_type(&other)
                    ))
                }
                None => {
                    return Err(format!(
                        "Invalid schema: reference `{}`: schema {id} not found",
                        r.name
                    ))
                }
            }
        }
        Ok(())
    }
}

/// How [`ksql_columns`] turns a schema into columns.
#[derive(Debug, Clone, Copy)]
pub struct Inference<'a> {
    /// The whole schema is the single column `single` (an unwrapped key or value), rather
    /// than a record's fields being the columns.
    pub unwrapped: bool,
    /// The single column's name (`ROWKEY`, `ROWVAL`), also used when the schema is not a
    /// record.
    pub single: &'a str,
    /// Upper-case field names, as inference from a subject's latest schema does; inference
    /// from a schema id keeps them as the schema has them.
    pub upper: bool,
    /// The protobuf message to use (`*_SCHEMA_FULL_NAME`), else the schema's first.
    pub full_name: Option<&'a str>,
}

fn cased(name: &str, upper: bool) -> String {
    if upper {
        name.to_uppercase()
    } else {
        name.to_string()
    }
}

/// The ksqlDB type of an Avro schema, as SQL text (`STRUCT<`F1` INT>`), the way ksqlDB infers
/// columns from a registered schema: names upper-cased (when `upper`), unions with null as
/// the other branch, enums as STRING, fixed as BYTES.
pub fn ksql_type(schema: &Schema, upper: bool) -> std::result::Result<String, String> {
    Ok(match schema {
        Schema::Boolean => "BOOLEAN".into(),
        Schema::Int => "INT".into(),
        Schema::Long => "BIGINT".into(),
        Schema::Float | Schema::Double => "DOUBLE".into(),
        Schema::String | Schema::Enum(_) | Schema::Uuid => "STRING".into(),
        Schema::Bytes | Schema::Fixed(_) => "BYTES".into(),
        Schema::Decimal(d) => format!("DECIMAL({}, {})", d.precision, d.scale),
        Schema::Date => "DATE".into(),
        Schema::TimeMillis => "TIME".into(),
        Schema::TimestampMillis => "TIMESTAMP".into(),
        Schema::Array(a) => format!("ARRAY<{}>", ksql_type(&a.items, upper)?),
        Schema::Map(m) => format!("MAP<STRING, {}>", ksql_type(&m.types, upper)?),
        Schema::Record(r) => {
            let fields = r
                .fields
                .iter()
                .map(|f| {
                    Ok(format!(
                        "`{}` {}",
                        cased(&f.name, upper),
                        ksql_type(&f.schema, upper)?
                    ))
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            format!("STRUCT<{}>", fields.join(", "))
        }
        Schema::Union(u) => {
            let non_null: Vec<&Schema> = u
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .collect();
            match non_null.as_slice() {
                [one] => ksql_type(one, upper)?,
                _ => return Err("unions other than with null are not supported".into()),
            }
        }
        other => return Err(format!("Avro type {other:?} is not supported")),
    })
}

/// Column declarations (`` `C1` INT, `C2` STRING ``) inferred from a registered schema: a
/// record's (message's, object's) fields, or the single column `how.single` when the
/// schema is not a record or `how.unwrapped` says the record is the column.
pub fn ksql_columns(
    schema: &RegisteredSchema,
    how: &Inference,
) -> std::result::Result<Vec<(String, String)>, String> {
    let single = |t: String| Ok(vec![(how.single.to_string(), t)]);
    match schema {
        RegisteredSchema::Avro(s) => match s.as_ref() {
            Schema::Record(r) if !how.unwrapped => r
                .fields
                .iter()
                .map(|f| Ok((cased(&f.name, how.upper), ksql_type(&f.schema, how.upper)?)))
                .collect(),
            other => single(ksql_type(other, how.upper)?),
        },
        RegisteredSchema::Protobuf(p) => {
            let fields = proto_schema::columns(&p.text, &p.references, how.full_name, how.upper)?;
            if how.unwrapped {
                let decls: Vec<String> = fields.iter().map(|(n, t)| format!("`{n}` {t}")).collect();
                single(format!("STRUCT<{}>", decls.join(", ")))
            } else {
                Ok(fields)
            }
        }
        RegisteredSchema::Json(v) => {
            if json_schema::is_object(v) && !how.unwrapped {
                json_schema::columns(v, how.upper)
            } else {
                single(json_schema::single_type(v, how.upper)?)
            }
        }
    }
}

/// The subject a topic's key or value schema is registered under (Confluent's
/// `TopicNameStrategy`).
pub fn subject(topic: &str, part: super::Part) -> String {
    format!("{topic}-{part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(json: &str) -> Schema {
        Schema::parse_str(json).expect("valid schema")
    }

    fn inference(unwrapped: bool, single: &str) -> Inference<'_> {
        Inference {
            unwrapped,
            single,
            upper: true,
            full_name: None,
        }
    }

    #[test]
    fn ids_are_per_schema_and_subjects_keep_versions() {
        let r = InMemoryRegistry::new();
        let int = schema(r#""int""#);
        let long = schema(r#""long""#);
        assert_eq!(r.latest("t-value").unwrap(), None);
        let a = r.register("t-value", &int).unwrap();
        assert_eq!(a, 1);
        // The same schema under another subject keeps its id.
        assert_eq!(r.register("u-key", &int).unwrap(), a);
        assert_eq!(r.register("t-value", &int).unwrap(), a);
        let b = r.register("t-value", &long).unwrap();
        assert_eq!(b, 2);
        assert_eq!(r.latest("t-value").unwrap().map(|(id, _)| id), Some(b));
        assert_eq!(r.latest("u-key").unwrap().map(|(id, _)| id), Some(a));
        assert_eq!(r.schema_by_id(a).unwrap().as_deref(), Some(&int));
        assert_eq!(r.schema_by_id(b).unwrap().as_deref(), Some(&long));
        assert_eq!(r.schema_by_id(0).unwrap(), None);
        assert_eq!(r.schema_by_id(99).unwrap(), None);
    }

    #[test]
    fn logical_types_tell_schemas_apart() {
        let r = InMemoryRegistry::new();
        let d = |s: u32| {
            schema(&format!(
                r#"{{"type":"bytes","logicalType":"decimal","precision":4,"scale":{s}}}"#
            ))
        };
        let a = r.register("s", &d(2)).unwrap();
        let b = r.register("s", &d(3)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn explicit_ids_are_kept_and_not_reused() {
        let r = InMemoryRegistry::new();
        let proto = serde_json::json!("syntax = \"proto3\"; message M { int32 a = 1; }");
        let id = register_for_format(&r, "t-value", FormatKind::Protobuf, &proto, &[], Some(101))
            .unwrap();
        assert_eq!(id, 101);
        assert_eq!(
            r.get(101).unwrap().map(|s| s.format()),
            Some(FormatKind::Protobuf)
        );
        // The same schema again keeps its id; another one cannot take it.
        assert_eq!(
            register_for_format(&r, "u-value", FormatKind::Protobuf, &proto, &[], None).unwrap(),
            101
        );
        let json = serde_json::json!({"type": "string"});
        assert!(
            register_for_format(&r, "t-key", FormatKind::JsonSr, &json, &[], Some(101)).is_err()
        );
        // New ids count on from the highest given.
        assert_eq!(
            register_for_format(&r, "t-key", FormatKind::JsonSr, &json, &[], None).unwrap(),
            102
        );
        // Avro lookups do not see other formats' schemas.
        assert_eq!(r.schema_by_id(101).unwrap(), None);
        assert_eq!(r.latest("t-key").unwrap(), None);
        assert!(r.latest_schema("t-key").unwrap().is_some());
    }

    #[test]
    fn scoped_registries_have_their_own_subjects_and_ids() {
        let a = ScopedRegistry::new();
        let b = ScopedRegistry::new();
        let s = schema(r#"{"type":"record","name":"r","fields":[{"name":"x","type":"int"}]}"#);
        let id = a.register("scoped-t-value", &s).unwrap();
        // A fresh registry's first id, whatever the process registered elsewhere.
        assert_eq!(id, 1);
        assert!(b.latest("scoped-t-value").unwrap().is_none());
        assert_eq!(a.schema_by_id(id).unwrap().as_deref(), Some(&s));
        assert_eq!(b.schema_by_id(id).unwrap(), None);
    }

    #[test]
    fn columns_are_inferred_as_ksqldb_does() {
        let s = schema(
            r#"{"type":"record","name":"r","fields":[
                {"name":"c1","type":["null","long"]},
                {"name":"c2","type":{"type":"map","values":{"type":"enum","name":"e","symbols":["A"]}}},
                {"name":"c3","type":{"type":"record","name":"n","fields":[{"name":"f1","type":"float"}]}},
                {"name":"c4","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}}]}"#,
        );
        let s = RegisteredSchema::Avro(Arc::new(s));
        let cols = ksql_columns(&s, &inference(false, "ROWVAL")).unwrap();
        let want = [
            ("C1", "BIGINT"),
            ("C2", "MAP<STRING, STRING>"),
            ("C3", "STRUCT<`F1` DOUBLE>"),
            ("C4", "DECIMAL(4, 2)"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(cols, want);
        // With a schema id, names keep their case.
        let kept = ksql_columns(
            &s,
            &Inference {
                upper: false,
                ..inference(false, "ROWVAL")
            },
        )
        .unwrap();
        assert_eq!(
            kept[2],
            ("c3".to_string(), "STRUCT<`f1` DOUBLE>".to_string())
        );
        let int = RegisteredSchema::Avro(Arc::new(schema(r#""int""#)));
        let single = ksql_columns(&int, &inference(true, "ROWKEY")).unwrap();
        assert_eq!(single, vec![("ROWKEY".to_string(), "INT".to_string())]);
    }

    #[test]
    fn protobuf_and_json_schemas_give_columns() {
        let p = RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
            text: "syntax = \"proto3\"; message K1 { uint32 a = 1; } message K2 { string k = 1; }"
                .into(),
            ..ProtobufSchema::default()
        }));
        let named = Inference {
            full_name: Some("K2"),
            ..inference(false, "ROWKEY")
        };
        assert_eq!(
            ksql_columns(&p, &named).unwrap(),
            vec![("K".to_string(), "STRING".to_string())]
        );
        assert_eq!(
            ksql_columns(&p, &inference(false, "ROWKEY")).unwrap(),
            vec![("A".to_string(), "BIGINT".to_string())]
        );
        let j = RegisteredSchema::Json(Arc::new(serde_json::json!(
            {"type": "object", "properties": {"f1": {"type": "string"}}}
        )));
        assert_eq!(
            ksql_columns(&j, &inference(false, "ROWVAL")).unwrap(),
            vec![("F1".to_string(), "STRING".to_string())]
        );
        // An unwrapped key is the whole object.
        assert_eq!(
            ksql_columns(&j, &inference(true, "ROWKEY")).unwrap(),
            vec![("ROWKEY".to_string(), "STRUCT<`F1` STRING>".to_string())]
        );
        let int = RegisteredSchema::Json(Arc::new(serde_json::json!(
            {"oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}]}
        )));
        assert_eq!(
            ksql_columns(&int, &inference(false, "ROWVAL")).unwrap(),
            vec![("ROWVAL".to_string(), "INT".to_string())]
        );
    }

    #[test]
    fn subjects_list_their_versions_and_can_be_deleted() {
        let r = InMemoryRegistry::new();
        let int = schema(r#""int""#);
        let long = schema(r#""long""#);
        let a = r.register("b-value", &int).unwrap();
        let b = r.register("b-value", &long).unwrap();
        // An older schema registered again keeps its version, as in Confluent's registry.
        assert_eq!(r.register("b-value", &int).unwrap(), a);
        assert_eq!(r.versions("b-value").unwrap(), vec![a, b]);
        assert_eq!(r.latest("b-value").unwrap().map(|(id, _)| id), Some(b));
        r.register("a-key", &long).unwrap();
        assert_eq!(r.subjects().unwrap(), vec!["a-key", "b-value"]);
        assert_eq!(r.delete_subject("b-value").unwrap(), vec![1, 2]);
        assert!(r.delete_subject("b-value").unwrap().is_empty());
        assert!(r.versions("b-value").unwrap().is_empty());
        assert_eq!(r.latest_schema("b-value").unwrap(), None);
        assert_eq!(r.subjects().unwrap(), vec!["a-key"]);
        // Ids stay readable: records written with them still decode.
        assert_eq!(r.schema_by_id(a).unwrap().as_deref(), Some(&int));
    }

    #[test]
    fn schemas_round_trip_through_the_rest_shapes() {
        let avro = RegisteredSchema::Avro(Arc::new(schema(
            r#"{"type":"record","name":"r","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}}]}"#,
        )));
        let json = RegisteredSchema::Json(Arc::new(serde_json::json!({"type": "object"})));
        for s in [&avro, &json] {
            let body = wire::schema_body(s).unwrap();
            let back = wire::parse(
                body.get("schemaType").and_then(|t| t.as_str()),
                body["schema"].as_str().unwrap(),
                Vec::new(),
                Vec::new(),
            )
            .unwrap();
            assert_eq!(back.identity().unwrap(), s.identity().unwrap());
        }
        assert!(wire::schema_body(&avro)
            .unwrap()
            .get("schemaType")
            .is_none());
        assert_eq!(wire::schema_body(&json).unwrap()["schemaType"], "JSON");
        let bad = wire::parse(None, r#"{"type": "nope"}"#, Vec::new(), Vec::new());
        assert!(bad.unwrap_err().starts_with("Invalid schema"));
        let refs = vec![SchemaReference {
            name: "x.proto".into(),
            subject: "x".into(),
            version: 1,
        }];
        assert!(wire::parse(Some("AVRO"), r#""int""#, refs, Vec::new()).is_err());
        assert!(wire::parse(Some("XML"), "<a/>", Vec::new(), Vec::new()).is_err());
        assert!(
            wire::parse_references(&serde_json::json!([{"name": "a", "subject": "a"}])).is_err()
        );
    }

    #[test]
    fn protobuf_references_resolve_through_subjects() {
        let r = InMemoryRegistry::new();
        let proto = |text: &str, named: Vec<SchemaReference>, references| {
            RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
                text: text.into(),
                references,
                named,
            }))
        };
        let base = "syntax = \"proto3\"; message B { int64 t = 1; }";
        let mid = "syntax = \"proto3\"; import \"b.proto\"; message M { B b = 1; }";
        r.register_schema("b", proto(base, Vec::new(), Vec::new()), None)
            .unwrap();
        let to_b = vec![SchemaReference {
            name: "b.proto".into(),
            subject: "b".into(),
            version: 1,
        }];
        let resolved = wire::resolve_references(&r, &to_b).unwrap();
        assert_eq!(resolved, vec![("b.proto".to_string(), base.to_string())]);
        r.register_schema("m", proto(mid, to_b.clone(), resolved), None)
            .unwrap();
        // A reference to `m` brings in what `m` imports too.
        let to_m = vec![SchemaReference {
            name: "m.proto".into(),
            subject: "m".into(),
            version: 1,
        }];
        let names: Vec<String> = wire::resolve_references(&r, &to_m)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["m.proto", "b.proto"]);
        let missing = SchemaReference {
            version: 2,
            ..to_b[0].clone()
        };
        assert!(wire::resolve_references(&r, &[missing]).is_err());
        r.register("avro", &schema(r#""int""#)).unwrap();
        let not_proto = SchemaReference {
            name: "a".into(),
            subject: "avro".into(),
            version: 1,
        };
        assert!(wire::resolve_references(&r, &[not_proto]).is_err());
    }

    #[test]
    fn subjects_follow_the_topic_name_strategy() {
        assert_eq!(subject("orders", super::super::Part::Key), "orders-key");
        assert_eq!(subject("orders", super::super::Part::Value), "orders-value");
    }

    /// A recursive Avro schema is refused wherever it would come in: the REST shapes (so
    /// the server answers 422 naming the type), registration, and tests' JSON.
    #[test]
    fn recursive_avro_schemas_are_refused() {
        let text = r#"{"type": "record", "name": "Node", "namespace": "n", "fields": [
            {"name": "v", "type": "int"},
            {"name": "children", "type": {"type": "array", "items": "Node"}}]}"#;
        let want = "recursive type `n.Node`";
        let e = wire::parse(None, text, Vec::new(), Vec::new()).unwrap_err();
        assert!(e.starts_with("Invalid schema: ") && e.contains(want), "{e}");
        let r = InMemoryRegistry::new();
        let e = r
            .register("t-value", &schema(text))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot register a schema under `t-value`") && e.contains(want),
            "{e}"
        );
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let e = register_json(&r, "t-value", &json).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert!(r.subjects().unwrap().is_empty());
        // A name apache-avro's parser would panic on (the Schema Registry API passes
        // whatever a client sends).
        let e = wire::parse(
            None,
            r#"{"type":"record","name":"-","fields":[]}"#,
            Vec::new(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(e.starts_with("Invalid schema: invalid name \"-\""), "{e}");
        // The same type used twice without containing itself is fine.
        let shared = r#"{"type": "record", "name": "P", "fields": [
            {"name": "a", "type": {"type": "record", "name": "Pt", "fields": [{"name": "x", "type": "int"}]}},
            {"name": "b", "type": "Pt"}]}"#;
        assert!(wire::parse(None, shared, Vec::new(), Vec::new()).is_ok());
        assert_eq!(r.register("p-value", &schema(shared)).unwrap(), 1);
    }
}

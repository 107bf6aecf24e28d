//! Schema Registry: where writers register their schemas (AVRO, PROTOBUF, JSON_SR) and
//! readers find the schema a payload names by id, as Confluent's Schema Registry serves them;
//! `CREATE STREAM/TABLE` without columns infers them from a topic's registered schemas.
//!
//! Only an in-memory registry exists so far, which the deterministic driver, the tests and a
//! single Brook process share; a client of a real registry would implement the same trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::Schema;
use brook_planner::format::FormatKind;

use super::{json_schema, proto_schema};
use crate::{Result, RuntimeError};

/// A `.proto` schema with the files it imports, as Schema Registry's references give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtobufSchema {
    pub text: String,
    /// (import name, file text) of each file the schema imports.
    pub references: Vec<(String, String)>,
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
        let id =
            match id {
                Some(id) => {
                    if let Some(existing) = inner.schemas.get(&id) {
                        if existing.identity()? != key {
                            return Err(RuntimeError::FormatSchema {
                                reason: format!(
                                    "cannot register a schema under `{subject}` with id {id}: \
                                 another schema has that id"
                                ),
                            });
                        }
                    }
                    inner.schemas.insert(id, schema);
                    inner.ids.entry(key).or_insert(id);
                    inner.last_id = inner.last_id.max(id);
                    id
                }
                None => match inner.ids.get(&key) {
                    Some(id) => *id,
                    None => {
                        let id = inner.last_id.checked_add(1).ok_or_else(|| {
                            RuntimeError::FormatSchema {
                                reason: "the schema registry is full".into(),
                            }
                        })?;
                        inner.last_id = id;
                        inner.schemas.insert(id, schema);
                        inner.ids.insert(key, id);
                        id
                    }
                },
            };
        let versions = inner.subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
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
}

/// The registry codecs use unless given another: one per process, so that what a codec
/// writes any other codec of the process can read.
pub fn default_registry() -> Arc<dyn SchemaRegistry> {
    static DEFAULT: OnceLock<Arc<InMemoryRegistry>> = OnceLock::new();
    let registry = DEFAULT.get_or_init(|| Arc::new(InMemoryRegistry::new()));
    Arc::clone(registry) as Arc<dyn SchemaRegistry>
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
            Schema::parse(schema).map_err(|e| err(e.to_string()))?,
        )),
        FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
            let text = schema
                .as_str()
                .ok_or_else(|| err("a protobuf schema is `.proto` text".into()))?;
            RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
                text: text.to_string(),
                references: references.to_vec(),
            }))
        }
        FormatKind::Json | FormatKind::JsonSr => RegisteredSchema::Json(Arc::new(schema.clone())),
        other => return Err(err(format!("{other} has no schemas"))),
    };
    registry.register_schema(subject, schema, id)
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
            references: Vec::new(),
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
    fn subjects_follow_the_topic_name_strategy() {
        assert_eq!(subject("orders", super::super::Part::Key), "orders-key");
        assert_eq!(subject("orders", super::super::Part::Value), "orders-value");
    }
}

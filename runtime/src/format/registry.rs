//! Schema Registry: where AVRO writers register their schemas and readers find the schema a
//! payload names by id, as Confluent's Schema Registry serves them.
//!
//! Only an in-memory registry exists so far, which the deterministic driver, the tests and a
//! single Brook process share; a client of a real registry would implement the same trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::Schema;

use crate::{Result, RuntimeError};

/// Subjects map to versions of schemas; every distinct schema has one id, whichever subjects
/// it is registered under (as Confluent's registry assigns them).
pub trait SchemaRegistry: fmt::Debug + Send + Sync {
    /// Registers `schema` under `subject` (a new version unless it is already the latest)
    /// and returns its id.
    fn register(&self, subject: &str, schema: &Schema) -> Result<u32>;

    /// The schema with id `id`, if any.
    fn schema_by_id(&self, id: u32) -> Result<Option<Arc<Schema>>>;

    /// The latest schema registered under `subject`, with its id.
    fn latest(&self, subject: &str) -> Result<Option<(u32, Arc<Schema>)>>;
}

/// A registry held in memory. Ids start at 1, as Confluent's do.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Schema of id `i + 1`.
    schemas: Vec<Arc<Schema>>,
    /// Ids by the schema's full JSON. Not the Parsing Canonical Form: it drops logical types,
    /// so DECIMAL(4,2) and DECIMAL(4,3) would share an id and be read at the wrong scale.
    ids: HashMap<String, u32>,
    /// Ids of each subject's versions, oldest first.
    subjects: HashMap<String, Vec<u32>>,
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
    fn register(&self, subject: &str, schema: &Schema) -> Result<u32> {
        let key = serde_json::to_string(schema).map_err(|e| RuntimeError::FormatSchema {
            reason: format!("cannot register a schema under `{subject}`: {e}"),
        })?;
        let mut inner = self.lock();
        let id = match inner.ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(inner.schemas.len() + 1).map_err(|_| {
                    RuntimeError::FormatSchema {
                        reason: "the schema registry is full".into(),
                    }
                })?;
                inner.schemas.push(Arc::new(schema.clone()));
                inner.ids.insert(key, id);
                id
            }
        };
        let versions = inner.subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    fn schema_by_id(&self, id: u32) -> Result<Option<Arc<Schema>>> {
        let inner = self.lock();
        Ok(usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| inner.schemas.get(i))
            .cloned())
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, Arc<Schema>)>> {
        let inner = self.lock();
        let Some(id) = inner.subjects.get(subject).and_then(|v| v.last()).copied() else {
            return Ok(None);
        };
        let schema = (id as usize)
            .checked_sub(1)
            .and_then(|i| inner.schemas.get(i))
            .cloned();
        Ok(schema.map(|s| (id, s)))
    }
}

/// The registry codecs use unless given another: one per process, so that what a codec
/// writes any other codec of the process can read.
pub fn default_registry() -> Arc<dyn SchemaRegistry> {
    static DEFAULT: OnceLock<Arc<InMemoryRegistry>> = OnceLock::new();
    let registry = DEFAULT.get_or_init(|| Arc::new(InMemoryRegistry::new()));
    Arc::clone(registry) as Arc<dyn SchemaRegistry>
}

/// A registry whose subjects belong to one owner (a driver, a test) while ids and schemas
/// are the process-wide registry's: codecs built without a registry find by id whatever
/// this one registers, yet one owner's `<topic>-value` never shadows another's.
#[derive(Debug)]
pub struct ScopedRegistry {
    shared: Arc<dyn SchemaRegistry>,
    subjects: Mutex<HashMap<String, Vec<u32>>>,
}

impl ScopedRegistry {
    pub fn new() -> Self {
        ScopedRegistry {
            shared: default_registry(),
            subjects: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for ScopedRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaRegistry for ScopedRegistry {
    fn register(&self, subject: &str, schema: &Schema) -> Result<u32> {
        // The shared subject is never looked up; it only gives the schema an id there.
        let id = self.shared.register("brook-scoped", schema)?;
        // Consistent after a panic for the same reason as `InMemoryRegistry::lock`.
        let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        let versions = subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    fn schema_by_id(&self, id: u32) -> Result<Option<Arc<Schema>>> {
        self.shared.schema_by_id(id)
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, Arc<Schema>)>> {
        let id = {
            let subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
            subjects.get(subject).and_then(|v| v.last()).copied()
        };
        let Some(id) = id else {
            return Ok(None);
        };
        Ok(self.shared.schema_by_id(id)?.map(|s| (id, s)))
    }
}

/// Registers an Avro schema given as JSON (as tests and REST clients give them) under
/// `subject`.
pub fn register_json(
    registry: &dyn SchemaRegistry,
    subject: &str,
    schema: &serde_json::Value,
) -> Result<u32> {
    let schema = Schema::parse(schema).map_err(|e| RuntimeError::FormatSchema {
        reason: format!("cannot register a schema under `{subject}`: {e}"),
    })?;
    registry.register(subject, &schema)
}

/// The ksqlDB type of an Avro schema, as SQL text (`STRUCT<`F1` INT>`), the way ksqlDB infers
/// columns from a registered schema: names upper-cased, unions with null as the other
/// branch, enums as STRING, fixed as BYTES.
pub fn ksql_type(schema: &Schema) -> std::result::Result<String, String> {
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
        Schema::Array(a) => format!("ARRAY<{}>", ksql_type(&a.items)?),
        Schema::Map(m) => format!("MAP<STRING, {}>", ksql_type(&m.types)?),
        Schema::Record(r) => {
            let fields = r
                .fields
                .iter()
                .map(|f| {
                    Ok(format!(
                        "`{}` {}",
                        f.name.to_uppercase(),
                        ksql_type(&f.schema)?
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
                [one] => ksql_type(one)?,
                _ => return Err("unions other than with null are not supported".into()),
            }
        }
        other => return Err(format!("Avro type {other:?} is not supported")),
    })
}

/// Column declarations (`` `C1` INT, `C2` STRING ``) inferred from a registered schema: a
/// record's fields, or the single column `single` when the schema is not a record or
/// `unwrapped` says the record is the column.
pub fn ksql_columns(
    schema: &Schema,
    unwrapped: bool,
    single: &str,
) -> std::result::Result<Vec<(String, String)>, String> {
    match schema {
        Schema::Record(r) if !unwrapped => r
            .fields
            .iter()
            .map(|f| Ok((f.name.to_uppercase(), ksql_type(&f.schema)?)))
            .collect(),
        other => Ok(vec![(single.to_string(), ksql_type(other)?)]),
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
    fn scoped_registries_share_ids_but_not_subjects() {
        let a = ScopedRegistry::new();
        let b = ScopedRegistry::new();
        let s = schema(r#"{"type":"record","name":"r","fields":[{"name":"x","type":"int"}]}"#);
        let id = a.register("scoped-t-value", &s).unwrap();
        assert!(b.latest("scoped-t-value").unwrap().is_none());
        assert_eq!(
            default_registry().schema_by_id(id).unwrap().as_deref(),
            Some(&s)
        );
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
        let cols = ksql_columns(&s, false, "ROWVAL").unwrap();
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
        let single = ksql_columns(&schema(r#""int""#), true, "ROWKEY").unwrap();
        assert_eq!(single, vec![("ROWKEY".to_string(), "INT".to_string())]);
    }

    #[test]
    fn subjects_follow_the_topic_name_strategy() {
        assert_eq!(subject("orders", super::super::Part::Key), "orders-key");
        assert_eq!(subject("orders", super::super::Part::Value), "orders-value");
    }
}

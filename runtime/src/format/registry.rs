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
    fn subjects_follow_the_topic_name_strategy() {
        assert_eq!(subject("orders", super::super::Part::Key), "orders-key");
        assert_eq!(subject("orders", super::super::Part::Value), "orders-value");
    }
}

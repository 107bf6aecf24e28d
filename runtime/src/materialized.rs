//! A table's current rows, by key: what pull queries read.
//!
//! A query whose sink is a table keeps its result here as it writes it (an upsert per
//! output row, a deletion per tombstone), shared with the server behind a lock. The rows are
//! in the sink's row schema (ROWTIME, ROWPARTITION, ROWOFFSET, window bounds for windowed
//! tables, then the columns), so a pull query is the same filter and projection a push query
//! runs, over a snapshot. The store is operator state like any other: its changes go to the
//! query's changelog (namespace `M`), so it survives a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use crate::aggregate::TOMBSTONE;
use crate::error::{Result, RuntimeError};
use crate::state::{read_scalar_key, scalar_key, Reader, StateChange, Writer};

/// The changelog namespace of materialized rows.
pub const NS_MATERIALIZED: u8 = b'M';

/// A materialized table shared between its query and the server's pull queries.
pub type Shared = Arc<RwLock<Materialized>>;

#[derive(Debug)]
pub struct Materialized {
    schema: SchemaRef,
    /// Columns that make a row's key: the key columns, and the window start if windowed.
    key_columns: Vec<usize>,
    /// Rows in the order their keys first appeared (the order a scan returns them).
    rows: BTreeMap<u64, RecordBatch>,
    slots: HashMap<Vec<ScalarValue>, u64>,
    next_slot: u64,
    dirty: HashSet<Vec<ScalarValue>>,
}

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

impl Materialized {
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>) -> Self {
        Materialized {
            schema,
            key_columns,
            rows: BTreeMap::new(),
            slots: HashMap::new(),
            next_slot: 0,
            dirty: HashSet::new(),
        }
    }

    pub fn shared(self) -> Shared {
        Arc::new(RwLock::new(self))
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn key_of(&self, batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>> {
        self.key_columns
            .iter()
            .map(|i| ScalarValue::try_from_array(batch.column(*i), row).map_err(eval_err))
            .collect()
    }

    fn put(&mut self, key: Vec<ScalarValue>, row: RecordBatch) {
        let slot = match self.slots.get(&key) {
            Some(s) => *s,
            None => {
                let s = self.next_slot;
                self.next_slot += 1;
                self.slots.insert(key.clone(), s);
                s
            }
        };
        self.rows.insert(slot, row);
        self.dirty.insert(key);
    }

    fn delete(&mut self, key: Vec<ScalarValue>) {
        if let Some(slot) = self.slots.remove(&key) {
            self.rows.remove(&slot);
        }
        self.dirty.insert(key);
    }

    /// Applies a query's output rows: in the sink's row schema, optionally followed by the
    /// tombstone column; every row is a deletion when `deleted`.
    pub fn apply(&mut self, batch: &RecordBatch, deleted: bool) -> Result<()> {
        let width = self.schema.fields().len();
        if batch.num_columns() < width {
            return Err(RuntimeError::State(format!(
                "a materialized row has {} columns, its table {width}",
                batch.num_columns()
            )));
        }
        let tombstones = batch.schema().index_of(TOMBSTONE).ok().and_then(|i| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
        });
        let columns = batch.columns()[..width]
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rows = RecordBatch::try_new(self.schema.clone(), columns)?;
        for row in 0..rows.num_rows() {
            let key = self.key_of(&rows, row)?;
            let gone = deleted || tombstones.as_ref().is_some_and(|t| t.value(row));
            if gone {
                self.delete(key);
            } else {
                self.put(key, rows.slice(row, 1));
            }
        }
        Ok(())
    }

    /// Every row, in one batch (`None` when the table is empty).
    pub fn snapshot(&self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(
            &self.schema,
            self.rows.values(),
        )?))
    }

    /// The row of one key (with the window start last, for windowed tables).
    pub fn get(&self, key: &[ScalarValue]) -> Option<RecordBatch> {
        self.slots.get(key).and_then(|s| self.rows.get(s)).cloned()
    }

    /// The rows whose key (without window) equals `key`: every window of a windowed key.
    pub fn get_prefix(&self, key: &[ScalarValue]) -> Result<Option<RecordBatch>> {
        let rows: Vec<&RecordBatch> = self
            .slots
            .iter()
            .filter(|(k, _)| k.starts_with(key))
            .filter_map(|(_, s)| self.rows.get(s).map(|r| (*s, r)))
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(&self.schema, rows)?))
    }

    pub fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for key in std::mem::take(&mut self.dirty) {
            let value = match self.slots.get(&key).and_then(|s| self.rows.get(s)) {
                Some(b) => {
                    let mut w = Writer::default();
                    w.batch(b)?;
                    Some(w.buf)
                }
                None => None,
            };
            out.push(StateChange {
                key: scalar_key(NS_MATERIALIZED, &key)?,
                value,
            });
        }
        Ok(())
    }

    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (_, key) = read_scalar_key(key)?;
        let row = Reader::new(value).batch()?;
        self.put(key, row);
        Ok(())
    }

    /// Forgets what changed (restored rows are already in the changelog).
    pub fn clear_changes(&mut self) {
        self.dirty.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWPARTITION", DataType::Int32, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
            Field::new("ID", DataType::Utf8, true),
            Field::new("N", DataType::Int64, true),
        ]))
    }

    fn rows(ids: &[&str], ns: &[i64], tomb: &[bool]) -> RecordBatch {
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(TOMBSTONE, DataType::Boolean, false));
        let n = ids.len();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(Int64Array::from(vec![0; n])),
                Arc::new(arrow::array::Int32Array::from(vec![0; n])),
                Arc::new(Int64Array::from(vec![0; n])),
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(ns.to_vec())),
                Arc::new(BooleanArray::from(tomb.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids(m: &Materialized) -> Vec<String> {
        match m.snapshot().unwrap() {
            None => vec![],
            Some(b) => {
                let a = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
                a.iter().map(|v| v.unwrap_or("").to_string()).collect()
            }
        }
    }

    #[test]
    fn upserts_deletes_and_keeps_first_seen_order() {
        let mut m = Materialized::new(schema(), vec![3]);
        m.apply(
            &rows(&["b", "a", "b"], &[1, 2, 3], &[false, false, false]),
            false,
        )
        .unwrap();
        assert_eq!(ids(&m), vec!["b", "a"]);
        let b = m.get(&[ScalarValue::Utf8(Some("b".into()))]).unwrap();
        assert_eq!(
            b.column(4)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            3
        );
        m.apply(&rows(&["b"], &[0], &[true]), false).unwrap();
        assert_eq!(ids(&m), vec!["a"]);
        m.apply(&rows(&["a"], &[0], &[false]), true).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn changes_restore_an_equal_table() {
        let mut m = Materialized::new(schema(), vec![3]);
        m.apply(
            &rows(&["x", "y", "z"], &[1, 2, 3], &[false, false, false]),
            false,
        )
        .unwrap();
        m.apply(&rows(&["y"], &[0], &[true]), false).unwrap();
        let mut changes = Vec::new();
        m.take_changes(&mut changes).unwrap();
        let mut back = Materialized::new(schema(), vec![3]);
        for c in &changes {
            if let Some(v) = &c.value {
                back.restore(&c.key, v).unwrap();
            }
        }
        let mut want = ids(&m);
        let mut got = ids(&back);
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
}

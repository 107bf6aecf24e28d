//! A table's current rows, by key: what pull queries read.
//!
//! A query whose sink is a table keeps its result here as it writes it (an upsert per
//! output row, a deletion per tombstone), shared with the server behind a lock. The rows are
//! in the sink's row schema (ROWTIME, ROWPARTITION, ROWOFFSET, window bounds for windowed
//! tables, then the columns), so a pull query is the same filter and projection a push query
//! runs, over a snapshot. The store is operator state like any other: its changes go to the
//! query's changelog (namespace `M`), so it survives a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use crate::aggregate::{partition_of, TOMBSTONE};
use crate::error::{Result, RuntimeError};
use crate::state::{read_scalar_key, scalar_key, FastMap, FastSet, Reader, StateChange, Writer};

/// The changelog namespace of materialized rows.
pub const NS_MATERIALIZED: u8 = b'M';

/// A materialized table shared between its query and the server's pull queries.
pub type Shared = Arc<RwLock<Materialized>>;

#[derive(Debug)]
pub struct Materialized {
    schema: SchemaRef,
    /// Columns that make a row's key: the key columns, and the window start if windowed.
    key_columns: Vec<usize>,
    /// The batches rows are kept in, as they came (no copy per row); an overwritten row
    /// stays until its chunk has no live row left or `compact` rewrites the live ones.
    chunks: Vec<Option<Chunk>>,
    /// Rows held by the chunks, live or not, and the chunks not yet dropped: what
    /// compaction bounds.
    held: usize,
    open: usize,
    /// Each key's row as (chunk, row), in the order keys first appeared (a scan's order).
    rows: BTreeMap<u64, (usize, usize)>,
    slots: FastMap<Vec<ScalarValue>, u64>,
    /// A windowed table's slots by key without the window start, so that a pull query
    /// reads one key's windows without a scan (`None` for tables without windows).
    windows: Option<FastMap<Vec<ScalarValue>, BTreeSet<u64>>>,
    next_slot: u64,
    dirty: FastSet<Vec<ScalarValue>>,
    /// A windowed aggregation's retention: windows past it leave the store (`None`: rows
    /// stay until deleted).
    retention: Option<Retention>,
}

/// How long a windowed table keeps its windows, as Kafka Streams' segmented window and
/// session stores do (`AbstractRocksDBSegmentedBytesStore`): each store (one per task, that
/// is input partition) observes as its stream time the largest window time written to it
/// (window start; a session's end), and serves no window whose time is below
/// `observed - retention + 1`. Without this a windowed table's store grows forever.
#[derive(Debug)]
struct Retention {
    ms: i64,
    /// The column of a row's window time: WINDOWSTART, or WINDOWEND for sessions (Kafka
    /// Streams' `SessionKeySchema` segments by session end).
    time_column: usize,
    /// Each partition's observed stream time.
    observed: BTreeMap<i32, i64>,
    /// Live rows by (partition, window time, slot): what expires first comes first.
    by_time: BTreeSet<(i32, i64, u64)>,
    /// Each live row's entry in `by_time`.
    of_slot: FastMap<u64, (i32, i64)>,
}

impl Retention {
    /// The earliest window time a partition still keeps.
    fn earliest(&self, partition: i32) -> Option<i64> {
        self.observed
            .get(&partition)
            .map(|t| t.saturating_sub(self.ms).saturating_add(1))
    }

    fn forget(&mut self, slot: u64) {
        if let Some((p, t)) = self.of_slot.remove(&slot) {
            self.by_time.remove(&(p, t, slot));
        }
    }
}

#[derive(Debug)]
struct Chunk {
    batch: RecordBatch,
    live: usize,
}

fn eval_err(e: datafusion::error::DataFusionError) -> RuntimeError {
    RuntimeError::Eval(e.to_string())
}

/// A row's window time (WINDOWSTART or WINDOWEND), when the column holds one.
fn window_time(batch: &RecordBatch, row: usize, column: usize) -> Option<i64> {
    batch
        .columns()
        .get(column)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .filter(|a| row < a.len() && !a.is_null(row))
        .map(|a| a.value(row))
}

impl Materialized {
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>) -> Self {
        let windowed = key_columns.len() > 1
            && key_columns.last().is_some_and(|i| {
                schema
                    .fields()
                    .get(*i)
                    .is_some_and(|f| f.name() == "WINDOWSTART")
            });
        Materialized {
            windows: windowed.then(FastMap::default),
            schema,
            key_columns,
            chunks: Vec::new(),
            held: 0,
            open: 0,
            rows: BTreeMap::new(),
            slots: FastMap::default(),
            next_slot: 0,
            dirty: FastSet::default(),
            retention: None,
        }
    }

    /// Keeps a windowed table's windows only for `ms` back from each partition's newest
    /// window time, read from column `time_column` (see [`Retention`]). A table without
    /// windows ignores it: its rows have no window to expire.
    pub fn with_retention(mut self, ms: i64, time_column: usize) -> Self {
        if self.windows.is_some() {
            self.retention = Some(Retention {
                ms,
                time_column,
                observed: BTreeMap::new(),
                by_time: BTreeSet::new(),
                of_slot: FastMap::default(),
            });
        }
        self
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

    /// A new chunk, pinned (one extra live count) until its caller has put its rows and
    /// calls `release((chunk, 0))`: a deletion among those rows must not drop it early.
    fn add_chunk(&mut self, batch: RecordBatch) -> usize {
        self.held += batch.num_rows();
        self.open += 1;
        self.chunks.push(Some(Chunk { batch, live: 1 }));
        self.chunks.len() - 1
    }

    /// A row no longer lives at `at`: its chunk goes when it was the last one.
    fn release(&mut self, (chunk, _): (usize, usize)) {
        if let Some(slot) = self.chunks.get_mut(chunk) {
            if let Some(c) = slot {
                c.live -= 1;
                if c.live == 0 {
                    self.held -= c.batch.num_rows();
                    self.open -= 1;
                    *slot = None;
                }
            }
        }
    }

    fn put(&mut self, key: Vec<ScalarValue>, at: (usize, usize)) {
        let slot = match self.slots.get(&key) {
            Some(s) => *s,
            None => {
                let s = self.next_slot;
                self.next_slot += 1;
                self.slots.insert(key.clone(), s);
                if let Some(windows) = &mut self.windows {
                    let unwindowed = key[..key.len() - 1].to_vec();
                    windows.entry(unwindowed).or_default().insert(s);
                }
                s
            }
        };
        if let Some(Some(c)) = self.chunks.get_mut(at.0) {
            c.live += 1;
        }
        if let Some(old) = self.rows.insert(slot, at) {
            self.release(old);
        }
        if let Some(r) = &mut self.retention {
            r.forget(slot);
            if let Some(Some(c)) = self.chunks.get(at.0) {
                if let Some(t) = window_time(&c.batch, at.1, r.time_column) {
                    let p = partition_of(&c.batch, at.1);
                    r.by_time.insert((p, t, slot));
                    r.of_slot.insert(slot, (p, t));
                }
            }
        }
        self.dirty.insert(key);
    }

    fn delete(&mut self, key: Vec<ScalarValue>) {
        if let Some(slot) = self.slots.remove(&key) {
            if let Some(old) = self.rows.remove(&slot) {
                self.release(old);
            }
            if let Some(r) = &mut self.retention {
                r.forget(slot);
            }
            if let Some(windows) = &mut self.windows {
                let unwindowed = &key[..key.len().saturating_sub(1)];
                if let Some(set) = windows.get_mut(unwindowed) {
                    set.remove(&slot);
                    if set.is_empty() {
                        windows.remove(unwindowed);
                    }
                }
            }
        }
        self.dirty.insert(key);
    }

    fn row(&self, (chunk, row): (usize, usize)) -> Option<RecordBatch> {
        match self.chunks.get(chunk) {
            Some(Some(c)) => Some(c.batch.slice(row, 1)),
            _ => None,
        }
    }

    /// The rows at `at`, in that order, in one batch.
    fn gather(&self, at: impl Iterator<Item = (usize, usize)>) -> Result<Option<RecordBatch>> {
        // interleave takes dense source indices: the chunks in use, numbered.
        let mut dense: HashMap<usize, usize> = HashMap::new();
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut indices = Vec::new();
        for (chunk, row) in at {
            let Some(Some(c)) = self.chunks.get(chunk) else {
                return Err(RuntimeError::State(format!(
                    "materialized row in missing chunk {chunk}"
                )));
            };
            let i = *dense.entry(chunk).or_insert_with(|| {
                sources.push(&c.batch);
                sources.len() - 1
            });
            indices.push((i, row));
        }
        if indices.is_empty() {
            return Ok(None);
        }
        let columns = (0..self.schema.fields().len())
            .map(|col| {
                let arrays: Vec<&dyn Array> =
                    sources.iter().map(|b| b.column(col).as_ref()).collect();
                arrow::compute::interleave(&arrays, &indices)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    /// Rewrites the live rows into one chunk once the chunks hold twice as many rows as
    /// are live (and more than a few), so overwritten rows cost at most as much again; or
    /// once most chunk numbers are of dropped chunks.
    fn compact(&mut self) -> Result<()> {
        let live = self.rows.len();
        if self.held <= 2 * live + 4096 && self.chunks.len() <= 2 * self.open + 64 {
            return Ok(());
        }
        let batch = self.gather(self.rows.values().copied())?;
        self.chunks.clear();
        self.held = 0;
        self.open = 0;
        if let Some(batch) = batch {
            let chunk = self.add_chunk(batch);
            for (i, at) in self.rows.values_mut().enumerate() {
                *at = (chunk, i);
            }
            // Exactly the live rows: this chunk is not pinned, nothing releases a pin.
            if let Some(Some(c)) = self.chunks.get_mut(chunk) {
                c.live = live;
            }
        }
        Ok(())
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
        let chunk = self.add_chunk(rows.clone());
        for row in 0..rows.num_rows() {
            let key = self.key_of(&rows, row)?;
            let gone = deleted || tombstones.as_ref().is_some_and(|t| t.value(row));
            if gone {
                self.delete(key);
            } else {
                self.put(key, (chunk, row));
            }
            // Deletions advance stream time too, as Kafka Streams' `remove` does.
            self.observe(&rows, row);
        }
        // A write already past retention goes again here: Kafka Streams drops a write to
        // an expired segment, and the changelog gets its deletion.
        self.expire()?;
        // Unpinned: a chunk whose rows were all deleted or overwritten goes now.
        self.release((chunk, 0));
        self.compact()
    }

    /// Advances the observed stream time of the row's partition to the row's window time.
    fn observe(&mut self, batch: &RecordBatch, row: usize) {
        if let Some(r) = &mut self.retention {
            if let Some(t) = window_time(batch, row, r.time_column) {
                let seen = r.observed.entry(partition_of(batch, row)).or_insert(t);
                *seen = (*seen).max(t);
            }
        }
    }

    /// Deletes the windows older than their partition's retention, oldest first (each
    /// call costs only the rows it removes, plus a look per partition).
    fn expire(&mut self) -> Result<()> {
        let Some(r) = &self.retention else {
            return Ok(());
        };
        let mut expired = Vec::new();
        for &p in r.observed.keys() {
            let Some(earliest) = r.earliest(p) else {
                continue;
            };
            expired.extend(
                r.by_time
                    .range((p, i64::MIN, 0)..(p, earliest, 0))
                    .map(|(_, _, slot)| *slot),
            );
        }
        for slot in expired {
            let key = match self.rows.get(&slot).copied() {
                Some((chunk, row)) => match self.chunks.get(chunk) {
                    Some(Some(c)) => Some(self.key_of(&c.batch, row)?),
                    _ => None,
                },
                None => None,
            };
            match key {
                Some(key) => self.delete(key),
                // An index entry without a row: nothing to delete but the entry.
                None => {
                    if let Some(r) = &mut self.retention {
                        r.forget(slot);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every row, in one batch (`None` when the table is empty).
    pub fn snapshot(&self) -> Result<Option<RecordBatch>> {
        self.gather(self.rows.values().copied())
    }

    /// The row of one key (with the window start last, for windowed tables).
    pub fn get(&self, key: &[ScalarValue]) -> Option<RecordBatch> {
        self.slots
            .get(key)
            .and_then(|s| self.rows.get(s))
            .and_then(|at| self.row(*at))
    }

    /// The rows of these keys, key by key in the order given (a key given twice is read
    /// once). A key is the key columns' values: in a windowed table it has a row per
    /// window, in the order the windows first appeared.
    pub fn get_many(&self, keys: &[Vec<ScalarValue>]) -> Result<Option<RecordBatch>> {
        let mut slots: Vec<u64> = Vec::new();
        let mut read: FastSet<u64> = FastSet::default();
        for key in keys {
            let found: Vec<u64> = match &self.windows {
                Some(windows) => windows
                    .get(key.as_slice())
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
                None => self
                    .slots
                    .get(key.as_slice())
                    .copied()
                    .into_iter()
                    .collect(),
            };
            slots.extend(found.into_iter().filter(|s| read.insert(*s)));
        }
        self.gather(slots.iter().filter_map(|s| self.rows.get(s).copied()))
    }

    pub fn take_changes(&mut self, out: &mut Vec<StateChange>) -> Result<()> {
        for key in std::mem::take(&mut self.dirty) {
            let row = self
                .slots
                .get(&key)
                .and_then(|s| self.rows.get(s))
                .and_then(|at| self.row(*at));
            let value = match row {
                Some(b) => {
                    let mut w = Writer::default();
                    w.batch(&b)?;
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
        self.observe(&row, 0);
        let chunk = self.add_chunk(row);
        self.put(key, (chunk, 0));
        // The same bound as when the rows were written: a window that expired before the
        // restart (or expires by what the changelog holds) does not come back.
        self.expire()?;
        self.release((chunk, 0));
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
        // A key written then deleted in one batch, then another key (a session window
        // merged away and its successor): the batch's chunk must outlive the deletion.
        m.apply(
            &rows(&["s1", "s1", "s2"], &[1, 0, 2], &[false, true, false]),
            false,
        )
        .unwrap();
        assert_eq!(ids(&m), vec!["s2"]);
        assert!(m.get(&[ScalarValue::Utf8(Some("s2".into()))]).is_some());
    }

    #[test]
    fn looks_keys_up_with_every_window() {
        let windowed = Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWPARTITION", DataType::Int32, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
            Field::new("WINDOWSTART", DataType::Int64, false),
            Field::new("WINDOWEND", DataType::Int64, false),
            Field::new("ID", DataType::Utf8, true),
            Field::new(TOMBSTONE, DataType::Boolean, false),
        ]));
        let batch = |ids: &[&str], starts: &[i64], tomb: &[bool]| {
            let n = ids.len();
            RecordBatch::try_new(
                windowed.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![0; n])),
                    Arc::new(arrow::array::Int32Array::from(vec![0; n])),
                    Arc::new(Int64Array::from(vec![0; n])),
                    Arc::new(Int64Array::from(starts.to_vec())),
                    Arc::new(Int64Array::from(vec![0; n])),
                    Arc::new(StringArray::from(ids.to_vec())),
                    Arc::new(BooleanArray::from(tomb.to_vec())),
                ],
            )
            .unwrap()
        };
        let fields: Vec<Field> = windowed.fields()[..6]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut m = Materialized::new(Arc::new(Schema::new(fields)), vec![5, 3]);
        m.apply(
            &batch(&["a", "b", "a", "c"], &[1, 1, 2, 1], &[false; 4]),
            false,
        )
        .unwrap();
        let key = |k: &str| vec![ScalarValue::Utf8(Some(k.into()))];
        let starts = |m: &Materialized, keys: &[Vec<ScalarValue>]| -> Vec<i64> {
            match m.get_many(keys).unwrap() {
                None => vec![],
                Some(b) => {
                    let a = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
                    a.values().to_vec()
                }
            }
        };
        assert_eq!(starts(&m, &[key("a")]), vec![1, 2]);
        assert_eq!(starts(&m, &[key("c"), key("a"), key("c")]), vec![1, 1, 2]);
        assert!(starts(&m, &[key("zz")]).is_empty());
        m.apply(&batch(&["a"], &[1], &[true]), false).unwrap();
        assert_eq!(starts(&m, &[key("a")]), vec![2]);
        m.apply(&batch(&["a"], &[2], &[true]), false).unwrap();
        assert!(starts(&m, &[key("a")]).is_empty());
        assert!(m
            .windows
            .as_ref()
            .is_some_and(|w| !w.contains_key(&key("a"))));

        // Without windows a key is the whole key.
        let mut plain = Materialized::new(schema(), vec![3]);
        plain
            .apply(&rows(&["x", "y"], &[1, 2], &[false, false]), false)
            .unwrap();
        let got = plain
            .get_many(&[key("y"), key("x"), key("q")])
            .unwrap()
            .unwrap();
        let ns = got.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ns.values().to_vec(), vec![2, 1]);
    }

    /// A windowed table's schema.
    fn windowed() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWPARTITION", DataType::Int32, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
            Field::new("WINDOWSTART", DataType::Int64, false),
            Field::new("WINDOWEND", DataType::Int64, false),
            Field::new("ID", DataType::Utf8, true),
        ]))
    }

    /// Rows of the windowed table: (id, partition, window start).
    fn batch(rows: &[(&str, i32, i64)]) -> RecordBatch {
        let n = rows.len();
        let starts: Vec<i64> = rows.iter().map(|r| r.2).collect();
        let ends: Vec<i64> = starts.iter().map(|t| t + 10).collect();
        RecordBatch::try_new(
            windowed(),
            vec![
                Arc::new(Int64Array::from(starts.clone())),
                Arc::new(arrow::array::Int32Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![0; n])),
                Arc::new(Int64Array::from(starts)),
                Arc::new(Int64Array::from(ends)),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn windows_of(m: &Materialized) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = match m.snapshot().unwrap() {
            None => vec![],
            Some(b) => {
                let starts = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
                let ids = b.column(5).as_any().downcast_ref::<StringArray>().unwrap();
                ids.iter()
                    .zip(starts.values().iter())
                    .map(|(id, t)| (id.unwrap_or("").to_string(), *t))
                    .collect()
            }
        };
        out.sort();
        out
    }

    #[test]
    fn windows_past_retention_leave_the_store_and_the_changelog() {
        let schema = windowed();
        // Retention 100: with stream time T a partition keeps windows from T - 99 on.
        let mut m = Materialized::new(schema.clone(), vec![5, 3]).with_retention(100, 3);
        m.apply(&batch(&[("a", 0, 0), ("b", 0, 50), ("c", 1, 0)]), false)
            .unwrap();
        let mut first = Vec::new();
        m.take_changes(&mut first).unwrap();
        assert_eq!(first.len(), 3);
        // Partition 0 reaches 100: window 0 expires there (0 < 1), window 50 stays;
        // partition 1 has not moved, so its window 0 stays (a store per task).
        m.apply(&batch(&[("a", 0, 100)]), false).unwrap();
        assert_eq!(
            windows_of(&m),
            vec![("a".into(), 100), ("b".into(), 50), ("c".into(), 0)]
        );
        assert!(m
            .get(&[
                ScalarValue::Utf8(Some("a".into())),
                ScalarValue::Int64(Some(0))
            ])
            .is_none());
        let mut changes = Vec::new();
        m.take_changes(&mut changes).unwrap();
        let gone = scalar_key(
            NS_MATERIALIZED,
            &[
                ScalarValue::Utf8(Some("a".into())),
                ScalarValue::Int64(Some(0)),
            ],
        )
        .unwrap();
        assert!(changes.iter().any(|c| c.key == gone && c.value.is_none()));
        // A write already past retention is not kept (its changelog entry is a deletion).
        m.apply(&batch(&[("z", 0, 0)]), false).unwrap();
        assert!(!windows_of(&m).contains(&("z".into(), 0)));
        m.apply(&batch(&[("d", 0, 149)]), false).unwrap();
        assert_eq!(
            windows_of(&m),
            vec![
                ("a".into(), 100),
                ("b".into(), 50),
                ("c".into(), 0),
                ("d".into(), 149)
            ]
        );
        m.apply(&batch(&[("e", 0, 150)]), false).unwrap();
        assert!(!windows_of(&m).contains(&("b".into(), 50)));
        assert_eq!(m.retention.as_ref().map(|r| r.by_time.len()), Some(m.len()));
        m.take_changes(&mut changes).unwrap();

        // Restoring the whole changelog (deletions included) gives the same table; a
        // changelog holding rows that expire by its own newest window drops them too.
        let mut log: Vec<StateChange> = first;
        log.extend(changes);
        let mut back = Materialized::new(schema.clone(), vec![5, 3]).with_retention(100, 3);
        let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for c in log {
            latest.insert(c.key, c.value);
        }
        for (k, v) in &latest {
            if let Some(v) = v {
                back.restore(k, v).unwrap();
            }
        }
        back.clear_changes();
        assert_eq!(windows_of(&back), windows_of(&m));
        let mut stale = Materialized::new(schema.clone(), vec![5, 3]).with_retention(100, 3);
        let mut source = Materialized::new(schema, vec![5, 3]);
        source
            .apply(&batch(&[("old", 0, 0), ("new", 0, 500)]), false)
            .unwrap();
        let mut raw = Vec::new();
        source.take_changes(&mut raw).unwrap();
        for c in &raw {
            if let Some(v) = &c.value {
                stale.restore(&c.key, v).unwrap();
            }
        }
        assert_eq!(windows_of(&stale), vec![("new".into(), 500)]);
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

    #[test]
    fn overwritten_rows_do_not_pile_up() {
        let mut m = Materialized::new(schema(), vec![3]);
        let keys = ["k0", "k1", "k2", "k3", "k4"];
        // The scan order a user sees: keys in the order they (re)appeared.
        let mut order: Vec<&str> = Vec::new();
        for round in 0..3000i64 {
            // Batches of 3 rows over 5 keys: every chunk keeps a live row for a while.
            let ids: Vec<&str> = (0..3)
                .map(|j| keys[((round * 3 + j) % 5) as usize])
                .collect();
            let ns: Vec<i64> = (0..3).map(|j| round * 3 + j).collect();
            let tomb = [false, round % 7 == 0, false];
            m.apply(&rows(&ids, &ns, &tomb), false).unwrap();
            for (id, gone) in ids.iter().zip(tomb) {
                order.retain(|k| k != id || !gone);
                if !gone && !order.contains(id) {
                    order.push(id);
                }
            }
            assert!(m.held <= 2 * m.len() + 4096 + 3, "held {}", m.held);
            assert!(
                m.chunks.len() <= 2 * m.open + 64 + 1,
                "{} chunks",
                m.chunks.len()
            );
        }
        // The order survives compaction; each key has its newest value.
        assert_eq!(ids(&m), order);
        for k in keys {
            let got = m.get(&[ScalarValue::Utf8(Some(k.to_string()))]).unwrap();
            let v = got.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
            let i: i64 = k[1..].parse().unwrap();
            // The newest write of key i: the last n below 9000 with n % 5 == i.
            assert_eq!(v.value(0), (9000 - 5..9000).find(|n| n % 5 == i).unwrap());
        }
    }
}

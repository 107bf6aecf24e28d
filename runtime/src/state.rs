//! Keyed operator state as bytes, for changelog topics.
//!
//! A stateful operator reports the entries it changed since the last batch as
//! [`StateChange`]s (a key, and the entry's new bytes or `None` once it is gone); the Kafka
//! task writes them to the query's compacted changelog topic and, on restart, hands them
//! back to [`crate::operator::Operator::restore`]. The encoding is Brook's own and private
//! to a query: a compact tagged form for the scalar types aggregation state mostly holds,
//! and Arrow IPC for everything else (nested values, whole rows), which keeps every Arrow
//! type exact without a codec per type.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;

use crate::error::{Result, RuntimeError};

/// One changed state entry: its new value, or `None` when it was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

fn corrupt(what: &str) -> RuntimeError {
    RuntimeError::State(format!("a changelog entry does not decode: {what}"))
}

/// Appends bytes to a buffer in the changelog's encoding.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new(tag: u8) -> Self {
        Writer { buf: vec![tag] }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }

    pub fn scalar(&mut self, v: &ScalarValue) -> Result<()> {
        // Tags: 1 Int64, 2 Int32, 3 Float64, 4 Utf8, 5 Boolean (then a null flag); 0 IPC.
        let (tag, null) = match v {
            ScalarValue::Int64(x) => (1, x.is_none()),
            ScalarValue::Int32(x) => (2, x.is_none()),
            ScalarValue::Float64(x) => (3, x.is_none()),
            ScalarValue::Utf8(x) => (4, x.is_none()),
            ScalarValue::Boolean(x) => (5, x.is_none()),
            other => {
                self.u8(0);
                let array = other
                    .to_array()
                    .map_err(|e| RuntimeError::Eval(e.to_string()))?;
                let bytes = array_bytes(array)?;
                self.bytes(&bytes);
                return Ok(());
            }
        };
        self.u8(tag);
        self.u8(null as u8);
        match v {
            ScalarValue::Int64(Some(x)) => self.i64(*x),
            ScalarValue::Int32(Some(x)) => self.i64(*x as i64),
            ScalarValue::Float64(Some(x)) => self.f64(*x),
            ScalarValue::Utf8(Some(s)) => self.bytes(s.as_bytes()),
            ScalarValue::Boolean(Some(b)) => self.u8(*b as u8),
            _ => {}
        }
        Ok(())
    }

    pub fn scalars(&mut self, vs: &[ScalarValue]) -> Result<()> {
        self.u32(vs.len() as u32);
        for v in vs {
            self.scalar(v)?;
        }
        Ok(())
    }

    /// A whole row (or rows), schema included.
    pub fn batch(&mut self, b: &RecordBatch) -> Result<()> {
        let bytes = batch_bytes(b)?;
        self.bytes(&bytes);
        Ok(())
    }
}

/// Reads what a [`Writer`] wrote.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| corrupt("it ends early"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    pub fn f64(&mut self) -> Result<f64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(a))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn scalar(&mut self) -> Result<ScalarValue> {
        let tag = self.u8()?;
        if tag == 0 {
            let array = bytes_array(self.bytes()?)?;
            return ScalarValue::try_from_array(&array, 0).map_err(|e| corrupt(&e.to_string()));
        }
        let null = self.u8()? != 0;
        Ok(match (tag, null) {
            (1, true) => ScalarValue::Int64(None),
            (1, false) => ScalarValue::Int64(Some(self.i64()?)),
            (2, true) => ScalarValue::Int32(None),
            (2, false) => ScalarValue::Int32(Some(self.i64()? as i32)),
            (3, true) => ScalarValue::Float64(None),
            (3, false) => ScalarValue::Float64(Some(self.f64()?)),
            (4, true) => ScalarValue::Utf8(None),
            (4, false) => ScalarValue::Utf8(Some(
                String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("text"))?,
            )),
            (5, true) => ScalarValue::Boolean(None),
            (5, false) => ScalarValue::Boolean(Some(self.u8()? != 0)),
            _ => return Err(corrupt("unknown value tag")),
        })
    }

    pub fn scalars(&mut self) -> Result<Vec<ScalarValue>> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.scalar()).collect()
    }

    pub fn batch(&mut self) -> Result<RecordBatch> {
        bytes_batch(self.bytes()?)
    }
}

/// One row of `batch` in buffers of its own. State kept per key must not be a slice: a
/// slice holds the whole batch it came from, so a table whose keys each kept one row of a
/// different batch would hold every batch it ever read.
pub fn owned_row(batch: &RecordBatch, row: usize) -> Result<RecordBatch> {
    let index = arrow::array::UInt32Array::from(vec![row as u32]);
    Ok(arrow::compute::take_record_batch(batch, &index)?)
}

/// Keyed state is hashed on every record: a fast non-cryptographic hasher (state keys are
/// not attacker-chosen in a way that matters more than SipHash's cost on every update).
pub type FastHasher = foldhash::fast::RandomState;
pub type FastMap<K, V> = HashMap<K, V, FastHasher>;
pub type FastSet<K> = HashSet<K, FastHasher>;

/// State entries changed since the changelog last took them, per namespace. Marking a key
/// already marked costs a lookup, not a copy of the key.
#[derive(Debug, Default)]
pub struct Dirty {
    entries: Vec<(u8, FastSet<Vec<ScalarValue>>)>,
}

impl Dirty {
    pub fn mark(&mut self, ns: u8, key: &[ScalarValue]) {
        let i = match self.entries.iter().position(|(n, _)| *n == ns) {
            Some(i) => i,
            None => {
                self.entries.push((ns, FastSet::default()));
                self.entries.len() - 1
            }
        };
        let set = &mut self.entries[i].1;
        if !set.contains(key) {
            set.insert(key.to_vec());
        }
    }

    /// Every marked (namespace, key), unmarking them.
    pub fn take(&mut self) -> Vec<(u8, Vec<ScalarValue>)> {
        let mut out = Vec::new();
        for (ns, set) in &mut self.entries {
            out.extend(set.drain().map(|k| (*ns, k)));
        }
        out
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A key of scalars under a one-byte namespace, so one operator can keep several maps.
pub fn scalar_key(ns: u8, keys: &[ScalarValue]) -> Result<Vec<u8>> {
    let mut w = Writer::new(ns);
    w.scalars(keys)?;
    Ok(w.buf)
}

/// The namespace and scalars of a key written by [`scalar_key`].
pub fn read_scalar_key(key: &[u8]) -> Result<(u8, Vec<ScalarValue>)> {
    let (&ns, rest) = key.split_first().ok_or_else(|| corrupt("empty key"))?;
    Ok((ns, Reader::new(rest).scalars()?))
}

fn batch_bytes(b: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &b.schema())?;
    w.write(b)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

fn bytes_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let mut r = StreamReader::try_new(Cursor::new(bytes), None)?;
    match r.next() {
        Some(b) => Ok(b?),
        None => Err(corrupt("a row is missing")),
    }
}

fn array_bytes(array: ArrayRef) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        array.data_type().clone(),
        true,
    )]));
    batch_bytes(&RecordBatch::try_new(schema, vec![array])?)
}

fn bytes_array(bytes: &[u8]) -> Result<ArrayRef> {
    let b = bytes_batch(bytes)?;
    if b.num_columns() != 1 || b.num_rows() == 0 {
        return Err(corrupt("a value is missing"));
    }
    Ok(b.column(0).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn scalars_round_trip_with_their_types() {
        let list = ScalarValue::List(ScalarValue::new_list_nullable(
            &[ScalarValue::Int32(Some(1)), ScalarValue::Int32(None)],
            &arrow::datatypes::DataType::Int32,
        ));
        let values = vec![
            ScalarValue::Int64(Some(-7)),
            ScalarValue::Int64(None),
            ScalarValue::Int32(Some(3)),
            ScalarValue::Float64(Some(1.5)),
            ScalarValue::Utf8(Some("héllo".into())),
            ScalarValue::Utf8(None),
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Decimal128(Some(12345), 10, 2),
            ScalarValue::Decimal128(None, 4, 1),
            list,
        ];
        let key = scalar_key(b'g', &values).unwrap();
        let (ns, back) = read_scalar_key(&key).unwrap();
        assert_eq!(ns, b'g');
        assert_eq!(back, values);
        for (a, b) in back.iter().zip(&values) {
            assert_eq!(a.data_type(), b.data_type());
        }
    }

    #[test]
    fn rows_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("A", arrow::datatypes::DataType::Int64, true),
            Field::new("B", arrow::datatypes::DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1)])),
                Arc::new(StringArray::from(vec![None::<&str>])),
            ],
        )
        .unwrap();
        let mut w = Writer::new(b'p');
        w.batch(&b).unwrap();
        let mut r = Reader::new(&w.buf[1..]);
        assert_eq!(r.batch().unwrap(), b);
    }

    #[test]
    fn truncated_entries_are_errors_not_panics() {
        let key = scalar_key(b'g', &[ScalarValue::Utf8(Some("abc".into()))]).unwrap();
        for n in 0..key.len() {
            assert!(read_scalar_key(&key[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}

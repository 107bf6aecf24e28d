//! A stateful query's changelog topic: every state change, then a position marker.
//!
//! After each batch the task writes the state entries the batch changed, waits for their
//! acknowledgement, then writes a *position marker*: the next input offset of every
//! partition the query has read. A marker commits the changes before it. A restarted task
//! reads the topic to its end, applies changes only up to the last marker, resumes its input
//! exactly at the marker's offsets, and so counts no input twice. Changes after the last
//! marker come from a run that died mid-batch; they are dropped, and their keys are written
//! again with the restored values before new work starts, so that compaction (which keeps
//! only a key's latest record) can never leave a dropped value as a key's last word.
//!
//! The topic is compacted: the marker has one key, so only the latest survives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::error::{Result, RuntimeError};
use crate::kafka::client_config;

/// The key of position markers. State keys start with a namespace letter, never `#`.
pub const MARKER_KEY: &[u8] = b"#position";

/// Input positions: (topic, partition) → the next offset to read.
pub type Positions = BTreeMap<(String, i32), i64>;

/// The changelog topic of a query.
pub fn topic_name(query_id: &str) -> String {
    format!("_brook_query_{query_id}_changelog")
}

/// What a changelog holds for a restarting task.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The state as of the last marker: each entry's latest value.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Where the input resumes.
    pub positions: Positions,
    /// Keys changed after the last marker, to write again with their restored values.
    pub stale: BTreeSet<Vec<u8>>,
}

/// The marker's value.
pub fn marker_value(positions: &Positions) -> Vec<u8> {
    let list: Vec<Value> = positions
        .iter()
        .map(|((t, p), o)| json!([t, p, o]))
        .collect();
    Value::Array(list).to_string().into_bytes()
}

/// Positions as [`marker_value`] wrote them.
pub fn parse_marker(value: &[u8]) -> Result<Positions> {
    let bad = || RuntimeError::State("a changelog position marker does not decode".into());
    let v: Value = serde_json::from_slice(value).map_err(|_| bad())?;
    let mut out = Positions::new();
    for e in v.as_array().ok_or_else(bad)? {
        let (Some(t), Some(p), Some(o)) = (e[0].as_str(), e[1].as_i64(), e[2].as_i64()) else {
            return Err(bad());
        };
        out.insert((t.to_string(), p as i32), o);
    }
    Ok(out)
}

/// Folds changelog records, in log order, into what a restarting task needs.
pub fn fold<I>(records: I) -> Result<Restored>
where
    I: IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    let mut restored = Restored::default();
    let mut pending: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for (key, value) in records {
        if key == MARKER_KEY {
            if let Some(v) = value {
                restored.positions = parse_marker(&v)?;
            }
            for (k, v) in pending.drain(..) {
                match v {
                    Some(v) => restored.entries.insert(k, v),
                    None => restored.entries.remove(&k),
                };
            }
        } else {
            pending.push((key, value));
        }
    }
    restored.stale = pending.into_iter().map(|(k, _)| k).collect();
    Ok(restored)
}

/// Reads a changelog topic to its current end (blocking: run it off the async runtime).
pub fn read(bootstrap: &str, topic: &str, timeout: Duration) -> Result<Restored> {
    fold(read_records(bootstrap, topic, timeout)?)
}

/// A record's key and value (`None`: a tombstone).
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// Every keyed record of a one-partition topic, in log order, up to its current end
/// (blocking: run it off the async runtime).
pub fn read_records(bootstrap: &str, topic: &str, timeout: Duration) -> Result<Vec<KeyedRecord>> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "_brook_changelog_reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, 0, timeout)?;
    if high <= low {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    let mut next = low;
    while next < high {
        if std::time::Instant::now() > deadline {
            return Err(RuntimeError::State(format!(
                "the topic {topic} could not be read to its end ({next} of {high})"
            )));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            next = m.offset() + 1;
            if let Some(k) = m.key() {
                records.push((k.to_vec(), m.payload().map(<[u8]>::to_vec)));
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    fn marker(offset: i64) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut p = Positions::new();
        p.insert(("orders".into(), 0), offset);
        (MARKER_KEY.to_vec(), Some(marker_value(&p)))
    }

    #[test]
    fn changes_count_only_up_to_the_last_marker() {
        let r = fold(vec![
            rec("ga", Some("1")),
            rec("gb", Some("1")),
            marker(2),
            rec("ga", Some("2")),
            rec("gb", None),
            marker(4),
            // A run that died before its marker.
            rec("ga", Some("3")),
            rec("gc", Some("1")),
        ])
        .unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[b"ga".as_slice()], b"2".to_vec());
        assert_eq!(r.positions[&("orders".to_string(), 0)], 4);
        let stale: Vec<&[u8]> = r.stale.iter().map(Vec::as_slice).collect();
        assert_eq!(stale, vec![b"ga".as_slice(), b"gc".as_slice()]);
    }

    #[test]
    fn a_rewritten_tail_is_superseded_in_log_order() {
        // After a crash the restarted run wrote the stale key again, then its marker.
        let r = fold(vec![
            rec("ga", Some("1")),
            marker(1),
            rec("ga", Some("9")),
            rec("ga", Some("1")),
            marker(1),
        ])
        .unwrap();
        assert_eq!(r.entries[b"ga".as_slice()], b"1".to_vec());
        assert!(r.stale.is_empty());
    }

    #[test]
    fn an_empty_changelog_restores_nothing() {
        assert_eq!(fold(Vec::new()).unwrap(), Restored::default());
    }

    #[test]
    fn a_corrupt_marker_is_an_error() {
        let e = fold(vec![(MARKER_KEY.to_vec(), Some(b"{".to_vec()))]).unwrap_err();
        assert!(e.to_string().contains("marker"), "{e}");
    }
}

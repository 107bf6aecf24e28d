//! A stateful query's changelog topic: every state change, then a position marker.
//!
//! After each batch a state partition writes the state entries the batch changed, waits
//! for their acknowledgement, then writes a *position marker*: the batch's sequence number
//! and the next input offset of every partition it has seen. A marker commits the changes
//! before it. A restarted partition reads its changelog partition to the end, takes each
//! entry's value as of the last marker, resumes its input exactly at the marker's offsets,
//! and so counts no input twice.
//!
//! The topic is compacted, and compaction keeps only a key's latest record — which, after
//! a crash between a batch's changes and its marker, is a value that must be dropped. (The
//! embedded broker compacts a topic's newest records too, at every start; Apache Kafka
//! never compacts the active segment, which makes the case rare there but not impossible.)
//! So an entry's committed value is never overwritten in place: each entry has two slots,
//! two record keys ([`slot_key`]), and a change goes to the slot that does not hold the
//! committed value. Each value carries its batch's sequence number; a restart takes, per
//! entry, the slot with the highest number the last marker covers, and clears the other if
//! it holds a value of a batch that never got its marker. A deleted entry's slots are
//! cleared once its deletion is committed.
//!
//! Changelogs written before slots (entries under their bare keys, markers without a
//! sequence number) are read as before and moved into slots on the first restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::error::{Result, RuntimeError};
use crate::kafka::{client_config, Kafka};

/// The key of position markers. State keys start with a namespace letter, never `#`.
pub const MARKER_KEY: &[u8] = b"#position";

/// Input positions: (topic, partition) → the next offset to read.
pub type Positions = BTreeMap<(String, i32), i64>;

/// The changelog topic of a query.
pub fn topic_name(query_id: &str) -> String {
    format!("_brook_query_{query_id}_changelog")
}

/// The marker's value (positions only: what [`crate::shared::OffsetStore`] stores).
pub fn marker_value(positions: &Positions) -> Vec<u8> {
    Value::Array(positions_json(positions))
        .to_string()
        .into_bytes()
}

fn positions_json(positions: &Positions) -> Vec<Value> {
    positions
        .iter()
        .map(|((t, p), o)| json!([t, p, o]))
        .collect()
}

/// Positions as [`marker_value`] (or [`state_marker`]) wrote them.
pub fn parse_marker(value: &[u8]) -> Result<Positions> {
    parse_state_marker(value).map(|(p, _)| p)
}

fn positions_of(v: &Value) -> Result<Positions> {
    let bad = || RuntimeError::State("a changelog position marker does not decode".into());
    let mut out = Positions::new();
    for e in v.as_array().ok_or_else(bad)? {
        let (Some(t), Some(p), Some(o)) = (e[0].as_str(), e[1].as_i64(), e[2].as_i64()) else {
            return Err(bad());
        };
        out.insert((t.to_string(), p as i32), o);
    }
    Ok(out)
}

/// A state partition's marker: the batch's sequence number and the input positions.
pub fn state_marker(positions: &Positions, seq: u64) -> Vec<u8> {
    json!({ "seq": seq, "positions": positions_json(positions) })
        .to_string()
        .into_bytes()
}

/// A marker's positions and sequence number (0 for a marker written before slots).
pub fn parse_state_marker(value: &[u8]) -> Result<(Positions, u64)> {
    let bad = || RuntimeError::State("a changelog position marker does not decode".into());
    let v: Value = serde_json::from_slice(value).map_err(|_| bad())?;
    match v {
        Value::Object(o) => {
            let seq = o.get("seq").and_then(Value::as_u64).ok_or_else(bad)?;
            let list = o.get("positions").ok_or_else(bad)?;
            Ok((positions_of(list)?, seq))
        }
        list => Ok((positions_of(&list)?, 0)),
    }
}

/// The first byte of a slot record's key; state keys start with a namespace letter and the
/// marker with `#`, so this never begins a key written before slots.
pub const SLOT_TAG: u8 = 0xFF;

/// The record key of `slot` (0 or 1) of state entry `key`.
pub fn slot_key(key: &[u8], slot: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(SLOT_TAG);
    k.push(slot & 1);
    k.extend_from_slice(key);
    k
}

/// A slot record's value: the batch's sequence number, then the entry's value or its
/// deletion.
pub fn slot_value(seq: u64, value: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + value.map_or(0, <[u8]>::len));
    v.extend_from_slice(&seq.to_be_bytes());
    match value {
        Some(x) => {
            v.push(1);
            v.extend_from_slice(x);
        }
        None => v.push(0),
    }
    v
}

fn split_slot_value(v: &[u8]) -> Result<(u64, Option<Vec<u8>>)> {
    let bad = || RuntimeError::State("a changelog slot value does not decode".into());
    if v.len() < 9 {
        return Err(bad());
    }
    let (seq, rest) = v.split_at(8);
    let seq = u64::from_be_bytes(seq.try_into().map_err(|_| bad())?);
    match rest[0] {
        1 => Ok((seq, Some(rest[1..].to_vec()))),
        0 => Ok((seq, None)),
        _ => Err(bad()),
    }
}

/// What a changelog holds for a restarting state partition.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The state as of the last marker: each entry's value.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Where the input resumes.
    pub positions: Positions,
    /// The last marker's sequence number: the next batch's is one more.
    pub seq: u64,
    /// The slot holding each entry's value.
    pub slots: BTreeMap<Vec<u8>, u8>,
    /// Entries whose committed value is their deletion, with the slot holding it: their
    /// slots are to be cleared.
    pub deleted: BTreeMap<Vec<u8>, u8>,
    /// Records to write before new work: slots holding values of a batch that never got
    /// its marker are cleared (`None`), and entries of a changelog written before slots
    /// move into slots (their bare keys cleared).
    pub rewrite: Vec<KeyedRecord>,
}

/// A changelog record's key and value (`None`: a tombstone).
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// Folds changelog records, in log order, into what a restarting partition needs.
pub fn fold<I>(records: I) -> Result<Restored>
where
    I: IntoIterator<Item = KeyedRecord>,
{
    let mut restored = Restored::default();
    // Entries under bare keys (written before slots): committed by the next marker.
    let mut legacy: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut pending: Vec<KeyedRecord> = Vec::new();
    let mut bare: BTreeSet<Vec<u8>> = BTreeSet::new();
    // Each entry's two slots: their latest records (None: cleared).
    let mut slotted: BTreeMap<Vec<u8>, [Option<Vec<u8>>; 2]> = BTreeMap::new();
    for (key, value) in records {
        if key == MARKER_KEY {
            if let Some(v) = value {
                (restored.positions, restored.seq) = parse_state_marker(&v)?;
            }
            for (k, v) in pending.drain(..) {
                match v {
                    Some(v) => legacy.insert(k, v),
                    None => legacy.remove(&k),
                };
            }
        } else if key.first() == Some(&SLOT_TAG) && key.len() >= 2 {
            let slot = usize::from(key[1] & 1);
            slotted.entry(key[2..].to_vec()).or_default()[slot] = value;
        } else {
            if value.is_some() {
                bare.insert(key.clone());
            }
            pending.push((key, value));
        }
    }
    let seq = restored.seq;
    for (key, value) in &legacy {
        if !slotted.contains_key(key) {
            restored.entries.insert(key.clone(), value.clone());
            restored.slots.insert(key.clone(), 0);
            restored
                .rewrite
                .push((slot_key(key, 0), Some(slot_value(seq, Some(value)))));
        }
    }
    // Bare keys are cleared once their entries are in slots (a changed one's value after
    // the last marker was never committed).
    for key in bare {
        restored.rewrite.push((key, None));
    }
    for (key, slots) in slotted {
        let mut best: Option<(u64, u8, Option<Vec<u8>>)> = None;
        for (slot, record) in (0u8..).zip(slots.iter()) {
            let Some(record) = record else { continue };
            let (s, v) = split_slot_value(record)?;
            if s > seq {
                // A value of a batch that never got its marker.
                restored.rewrite.push((slot_key(&key, slot), None));
            } else if best.as_ref().is_none_or(|b| s > b.0) {
                best = Some((s, slot, v));
            }
        }
        match best {
            Some((_, slot, Some(v))) => {
                restored.entries.insert(key.clone(), v);
                restored.slots.insert(key, slot);
            }
            Some((_, slot, None)) => {
                restored.entries.remove(&key);
                restored.deleted.insert(key, slot);
            }
            None => {}
        }
    }
    Ok(restored)
}

/// The slot scheme's bookkeeping for one changelog partition: which slot holds each
/// entry's committed value, and which deleted entries still have slots to clear. Pure, so
/// every crash point of every sequence of changes can be tested without a broker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Slots {
    /// The last marker's sequence number.
    pub seq: u64,
    slots: std::collections::HashMap<Vec<u8>, u8>,
    /// Entries whose deletion is committed, with the slot holding the deletion.
    deleted: Vec<(Vec<u8>, u8)>,
}

/// The records of one batch, in three steps each written (and acknowledged) before the
/// next, and the slot each change went to (for [`Slots::committed`]).
#[derive(Debug)]
pub struct SlotBatch {
    /// Clears the slots holding deleted entries' old values.
    pub clear_old: Vec<KeyedRecord>,
    /// Then clears the slots holding their deletions, and writes the batch's changes.
    pub records: Vec<KeyedRecord>,
    /// Then the marker that commits them.
    pub marker: KeyedRecord,
    placed: Vec<u8>,
}

impl Slots {
    pub fn restored(r: &Restored) -> Slots {
        Slots {
            seq: r.seq,
            slots: r.slots.iter().map(|(k, s)| (k.clone(), *s)).collect(),
            deleted: r.deleted.iter().map(|(k, s)| (k.clone(), *s)).collect(),
        }
    }

    /// The records of the next batch: first the slots of committed deletions are cleared,
    /// then each change goes to the slot not holding its entry's committed value; then the
    /// marker that commits them. A deleted entry's slot holding its old value is cleared
    /// (and acknowledged) before the slot holding the deletion: cleared the other way
    /// round, a crash between the two would leave the old value alone in its slot, and
    /// bring it back.
    pub fn batch(&self, changes: &[crate::state::StateChange], positions: &Positions) -> SlotBatch {
        let seq = self.seq + 1;
        let clear_old = self
            .deleted
            .iter()
            .map(|(key, deletion)| (slot_key(key, 1 - deletion), None))
            .collect();
        let mut records = Vec::with_capacity(changes.len() + self.deleted.len());
        for (key, deletion) in &self.deleted {
            records.push((slot_key(key, *deletion), None));
        }
        let mut placed = Vec::with_capacity(changes.len());
        for c in changes {
            let slot = self.slots.get(&c.key).map_or(0, |s| 1 - s);
            placed.push(slot);
            records.push((
                slot_key(&c.key, slot),
                Some(slot_value(seq, c.value.as_deref())),
            ));
        }
        let marker = (MARKER_KEY.to_vec(), Some(state_marker(positions, seq)));
        SlotBatch {
            clear_old,
            records,
            marker,
            placed,
        }
    }

    /// The batch's marker is acknowledged: the slots written now hold the entries' values.
    pub fn committed(&mut self, changes: Vec<crate::state::StateChange>, batch: SlotBatch) {
        self.seq += 1;
        self.deleted.clear();
        for (c, slot) in changes.into_iter().zip(batch.placed) {
            if c.value.is_some() {
                self.slots.insert(c.key, slot);
            } else {
                self.slots.remove(&c.key);
                self.deleted.push((c.key, slot));
            }
        }
    }
}

/// Reads one partition of a changelog topic (one state partition's) to its current end
/// (blocking: run it off the async runtime).
pub fn read(bootstrap: &Kafka, topic: &str, partition: i32, timeout: Duration) -> Result<Restored> {
    fold(read_partition(bootstrap, topic, partition, timeout)?)
}

/// Every keyed record of a one-partition topic, in log order, up to its current end
/// (blocking: run it off the async runtime).
pub fn read_records(bootstrap: &Kafka, topic: &str, timeout: Duration) -> Result<Vec<KeyedRecord>> {
    read_partition(bootstrap, topic, 0, timeout)
}

/// Every keyed record of one partition of a topic, in log order, up to its current end
/// (blocking: run it off the async runtime).
pub fn read_partition(
    bootstrap: &Kafka,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<KeyedRecord>> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "_brook_changelog_reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
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

    fn bare(k: &str, v: Option<&str>) -> KeyedRecord {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    fn slot(k: &str, slot: u8, seq: u64, v: Option<&str>) -> KeyedRecord {
        (
            slot_key(k.as_bytes(), slot),
            Some(slot_value(seq, v.map(str::as_bytes))),
        )
    }

    fn cleared(k: &str, slot: u8) -> KeyedRecord {
        (slot_key(k.as_bytes(), slot), None)
    }

    fn positions(offset: i64) -> Positions {
        let mut p = Positions::new();
        p.insert(("orders".into(), 0), offset);
        p
    }

    fn marker(offset: i64, seq: u64) -> KeyedRecord {
        (
            MARKER_KEY.to_vec(),
            Some(state_marker(&positions(offset), seq)),
        )
    }

    fn legacy_marker(offset: i64) -> KeyedRecord {
        (MARKER_KEY.to_vec(), Some(marker_value(&positions(offset))))
    }

    /// What a compacting broker leaves: each key's latest record only, in log order.
    fn compact(log: &[KeyedRecord]) -> Vec<KeyedRecord> {
        let last: BTreeMap<&[u8], usize> = log
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_slice(), i))
            .collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, _))| last[k.as_slice()] == *i)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn text(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<(String, String)> {
        m.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// Three batches as a state partition writes them; the third died before its marker.
    fn crashed_log() -> Vec<KeyedRecord> {
        vec![
            slot("ga", 0, 1, Some("1")),
            slot("gb", 0, 1, Some("1")),
            marker(2, 1),
            slot("ga", 1, 2, Some("2")),
            slot("gb", 1, 2, None),
            marker(4, 2),
            // Batch 3 clears the deleted entry's slots, then changes, and dies.
            cleared("gb", 0),
            cleared("gb", 1),
            slot("ga", 0, 3, Some("3")),
            slot("gc", 0, 3, Some("1")),
        ]
    }

    #[test]
    fn entries_are_their_values_as_of_the_last_marker() {
        let r = fold(crashed_log()).unwrap();
        assert_eq!(text(&r.entries), vec![("ga".into(), "2".into())]);
        assert_eq!(r.positions, positions(4));
        assert_eq!(r.seq, 2);
        assert_eq!(r.slots.get(b"ga".as_slice()), Some(&1));
        assert!(r.deleted.is_empty(), "gb's slots were already cleared");
        // The dead batch's values are cleared before new work.
        assert_eq!(r.rewrite, vec![cleared("ga", 0), cleared("gc", 0)]);
    }

    #[test]
    fn compaction_never_loses_a_committed_value() {
        // A compacting broker keeps only ga's dead value in slot 0, but its committed
        // value lives on in slot 1.
        let log = crashed_log();
        let full = fold(log.clone()).unwrap();
        let compacted = fold(compact(&log)).unwrap();
        assert_eq!(compacted.entries, full.entries);
        assert_eq!(compacted.positions, full.positions);
        assert_eq!(compacted.slots, full.slots);
        // Cut anywhere, then compacted: the state is the last marker's.
        for cut in 0..=log.len() {
            let head = &log[..cut];
            assert_eq!(
                fold(compact(head)).unwrap().entries,
                fold(head.to_vec()).unwrap().entries,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_committed_deletion_is_reported_until_its_slots_are_cleared() {
        let r = fold(crashed_log()[..6].to_vec()).unwrap();
        assert_eq!(text(&r.entries), vec![("ga".into(), "2".into())]);
        assert_eq!(
            r.deleted
                .iter()
                .map(|(k, s)| (k.clone(), *s))
                .collect::<Vec<_>>(),
            vec![(b"gb".to_vec(), 1)]
        );
    }

    #[test]
    fn a_changelog_from_before_slots_moves_into_slots() {
        let r = fold(vec![
            bare("ga", Some("1")),
            bare("gb", Some("1")),
            legacy_marker(2),
            bare("ga", Some("2")),
            bare("gb", None),
            legacy_marker(4),
            // A run that died before its marker.
            bare("ga", Some("3")),
            bare("gc", Some("1")),
        ])
        .unwrap();
        assert_eq!(text(&r.entries), vec![("ga".into(), "2".into())]);
        assert_eq!(r.positions, positions(4));
        assert_eq!(r.seq, 0);
        assert_eq!(
            r.rewrite,
            vec![
                slot("ga", 0, 0, Some("2")),
                bare("ga", None),
                bare("gb", None),
                bare("gc", None),
            ]
        );
        // Once rewritten (and a marker written), the bare keys are gone and the state stays.
        let mut log = vec![bare("ga", Some("2"))];
        log.extend(r.rewrite.clone());
        log.push(marker(4, 0));
        let again = fold(compact(&log)).unwrap();
        assert_eq!(text(&again.entries), vec![("ga".into(), "2".into())]);
        assert!(again.rewrite.is_empty(), "{:?}", again.rewrite);
    }

    /// A change to one key in a batch: put the next value, delete, or leave it.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Put,
        Delete,
        Keep,
    }

    /// Every sequence of `batches` batches over `keys` keys.
    fn sequences(keys: usize, batches: usize) -> Vec<Vec<Vec<Op>>> {
        let per_batch: Vec<Vec<Op>> = (0..3usize.pow(keys as u32))
            .map(|mut n| {
                (0..keys)
                    .map(|_| {
                        let op = [Op::Put, Op::Delete, Op::Keep][n % 3];
                        n /= 3;
                        op
                    })
                    .collect()
            })
            .collect();
        let mut out = vec![Vec::new()];
        for _ in 0..batches {
            out = out
                .into_iter()
                .flat_map(|seq: Vec<Vec<Op>>| {
                    per_batch.iter().map(move |b| {
                        let mut s = seq.clone();
                        s.push(b.clone());
                        s
                    })
                })
                .collect();
        }
        out
    }

    type State = BTreeMap<Vec<u8>, Vec<u8>>;

    /// Writes `batches` as a state partition does, after `log`; returns the log and, at
    /// each length of it, the state its last marker committed.
    fn write_batches(
        mut log: Vec<KeyedRecord>,
        mut slots: Slots,
        mut state: State,
        batches: &[Vec<Op>],
    ) -> (Vec<KeyedRecord>, Vec<State>) {
        let mut committed = vec![state.clone(); log.len() + 1];
        for (n, batch) in batches.iter().enumerate() {
            let changes: Vec<crate::state::StateChange> = batch
                .iter()
                .enumerate()
                .filter_map(|(k, op)| {
                    let key = format!("k{k}").into_bytes();
                    let value = match op {
                        Op::Put => Some(format!("v{}", slots.seq + 1).into_bytes()),
                        Op::Delete => None,
                        Op::Keep => return None,
                    };
                    Some(crate::state::StateChange { key, value })
                })
                .collect();
            let b = slots.batch(&changes, &positions(n as i64));
            for c in &changes {
                match &c.value {
                    Some(v) => state.insert(c.key.clone(), v.clone()),
                    None => state.remove(&c.key),
                };
            }
            let before = committed.last().cloned().unwrap_or_default();
            log.extend(b.clear_old.iter().cloned());
            log.extend(b.records.iter().cloned());
            committed.resize(log.len() + 1, before);
            log.push(b.marker.clone());
            committed.push(state.clone());
            slots.committed(changes, b);
        }
        (log, committed)
    }

    /// Compacted as Kafka leaves a log: each key's latest record; `drop_tombstones` also
    /// removes latest records that are tombstones (after `delete.retention.ms`).
    fn compacted(log: &[KeyedRecord], drop_tombstones: bool) -> Vec<KeyedRecord> {
        compact(log)
            .into_iter()
            .filter(|(_, v)| !drop_tombstones || v.is_some())
            .collect()
    }

    /// Every way a log can be read back after a crash at `cut`: as written, compacted,
    /// compacted with its tombstones gone.
    fn readings(log: &[KeyedRecord]) -> [Vec<KeyedRecord>; 3] {
        [log.to_vec(), compacted(log, false), compacted(log, true)]
    }

    #[test]
    fn every_crash_point_of_every_change_sequence_restores_the_committed_state() {
        let mut runs = 0;
        for (keys, batches) in [(1, 5), (2, 3)] {
            for seq in sequences(keys, batches) {
                let (log, committed) =
                    write_batches(Vec::new(), Slots::default(), State::new(), &seq);
                for cut in 0..=log.len() {
                    for read in readings(&log[..cut]) {
                        let r = fold(read.clone()).unwrap();
                        assert_eq!(r.entries, committed[cut], "{seq:?} cut at {cut}");
                        // Restarted there: the rewrite, then two more batches (every key
                        // put, then every key deleted), crashed anywhere again.
                        let mut resumed = read;
                        resumed.extend(r.rewrite.iter().cloned());
                        let more = [vec![Op::Put; keys], vec![Op::Delete; keys]];
                        let (log2, committed2) = write_batches(
                            resumed.clone(),
                            Slots::restored(&r),
                            r.entries.clone(),
                            &more,
                        );
                        for cut2 in resumed.len()..=log2.len() {
                            for read2 in readings(&log2[..cut2]) {
                                assert_eq!(
                                    fold(read2).unwrap().entries,
                                    committed2[cut2],
                                    "{seq:?} cut at {cut}, restarted, cut at {cut2}"
                                );
                                runs += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(runs > 10_000, "{runs}");
    }

    #[test]
    fn an_empty_changelog_restores_nothing() {
        assert_eq!(fold(Vec::new()).unwrap(), Restored::default());
    }

    #[test]
    fn a_corrupt_marker_is_an_error() {
        assert!(fold(vec![bare("#position", Some("not json"))]).is_err());
        assert!(fold(vec![(slot_key(b"ga", 0), Some(vec![1, 2]))]).is_err());
    }
}

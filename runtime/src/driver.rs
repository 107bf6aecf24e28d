//! The deterministic driver: statements run against an in-memory log of topics, with the
//! planner, operators and formats the server uses, and no Kafka.
//!
//! Each produced record is pushed through every query that reads its topic before the next
//! one is taken, the way ksqlDB's tests run with record caching off; outputs land in the
//! sink topics (and flow on to the queries reading those).

use std::collections::{BTreeMap, VecDeque};

use brook_sql::ParsedStatement;

use crate::error::Result;
use crate::kafka::partition_for_key;
use crate::pipeline::Pipeline;
pub use crate::rows::Record;
pub use crate::session::{Action, QuerySpec, Session, StatementError};

/// The driver's statement error (the session's).
pub type DriverError = StatementError;

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

struct RunningQuery {
    source_topic: String,
    pipeline: Pipeline,
    /// What started the query, to build it again (restart checks).
    spec: QuerySpec,
    /// The query's changelog as a compacted topic would hold it: each key's latest value.
    changelog: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Default)]
pub struct Driver {
    pub session: Session,
    topics: BTreeMap<String, Topic>,
    queries: Vec<RunningQuery>,
    /// Records that could not be processed, as the processing log would show them.
    pub processing_log: Vec<String>,
    /// Restart every stateful query after each record, from its changelog alone: a query
    /// whose results change under this keeps state its changelog does not carry.
    pub restart_every_record: bool,
    /// Records the queries dropped as late (`Processed::late`), over all queries.
    pub late: u64,
}

impl Driver {
    /// A driver whose schema subjects are its own (ids are shared with the process-wide
    /// registry the pipelines' codecs use), so one test's registered schemas never leak into
    /// another's inference.
    pub fn new() -> Self {
        let mut driver = Driver::default();
        driver.session.registry =
            std::sync::Arc::new(crate::format::registry::ScopedRegistry::new());
        driver
    }

    /// The registry this driver's statements infer columns from.
    pub fn registry(&self) -> std::sync::Arc<dyn crate::format::registry::SchemaRegistry> {
        std::sync::Arc::clone(&self.session.registry)
    }

    pub fn catalog(&self) -> &brook_planner::catalog::Catalog {
        &self.session.catalog
    }

    pub fn set_property(&mut self, name: &str, value: &str) {
        self.session.set_property(name, value);
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
    pub fn execute(&mut self, sql: &str) -> Result<(), DriverError> {
        for s in brook_sql::parse(sql)? {
            self.execute_parsed(&s)?;
        }
        Ok(())
    }

    pub fn execute_parsed(&mut self, ps: &ParsedStatement) -> Result<(), DriverError> {
        let topics = &self.topics;
        let action = self
            .session
            .plan(ps, &|t: &str| topics.get(t).map(|t| t.partitions))?;
        match action {
            Action::None => {}
            Action::CreateSource { source, partitions } => {
                self.create_topic(&source.topic, partitions.unwrap_or(1));
            }
            Action::StartQuery(spec) => {
                if let Some(p) = spec.sink_partitions {
                    self.create_topic(&spec.sink.topic, p);
                }
                let pipeline = Pipeline::new((*spec).clone(), &self.session.catalog)?;
                self.start_query(pipeline, *spec);
            }
            Action::Insert { source, rows } => {
                for (key, value, ts) in rows {
                    self.produce(&source.topic, key, value, ts, Vec::new(), None);
                }
            }
            Action::Drop(name) => self.queries.retain(|q| q.pipeline.sink.name != name),
        }
        Ok(())
    }

    fn start_query(&mut self, pipeline: Pipeline, spec: QuerySpec) {
        let topic = pipeline.source.topic.clone();
        self.queries.push(RunningQuery {
            source_topic: topic.clone(),
            pipeline,
            spec,
            changelog: BTreeMap::new(),
        });
        // Queries start from the earliest offset: records already in the topic flow now
        // (a join's table first, so stream records find the rows that came before them).
        let idx = self.queries.len() - 1;
        let others: Vec<String> = self.queries[idx]
            .pipeline
            .others
            .iter()
            .map(|t| t.topic.clone())
            .collect();
        for (k, other_topic) in others.iter().enumerate() {
            let rows: Vec<Record> = self
                .topics
                .get(other_topic)
                .map(|t| t.records.clone())
                .unwrap_or_default();
            let mut work = VecDeque::new();
            for r in rows {
                self.run_table(idx, k + 1, &r, &mut work);
            }
            self.drain(work);
        }
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
                    self.restart_check(i);
                }
                let inputs: Vec<usize> = self.queries[i]
                    .pipeline
                    .others
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.topic == topic)
                    .map(|(k, _)| k + 1)
                    .collect();
                for k in inputs {
                    self.run_table(i, k, &rec, &mut work);
                    self.restart_check(i);
                }
            }
        }
    }

    /// With `restart_every_record`: the query's changes go to its changelog, and the query
    /// is built again from its plan and that changelog, as a restarted server would.
    fn restart_check(&mut self, idx: usize) {
        if !self.restart_every_record || !self.queries[idx].pipeline.stateful() {
            return;
        }
        let result = (|| -> Result<()> {
            let q = &mut self.queries[idx];
            for c in q.pipeline.take_changes()? {
                match c.value {
                    Some(v) => q.changelog.insert(c.key, v),
                    None => q.changelog.remove(&c.key),
                };
            }
            let mut fresh = Pipeline::new(q.spec.clone(), &self.session.catalog)?;
            for (k, v) in &q.changelog {
                fresh.restore(k, v)?;
            }
            q.pipeline = fresh;
            Ok(())
        })();
        if let Err(e) = result {
            self.processing_log
                .push(format!("query {}: restart: {e}", self.queries[idx].spec.id));
        }
    }

    fn run_table(
        &mut self,
        idx: usize,
        input: usize,
        rec: &Record,
        work: &mut VecDeque<(String, Record)>,
    ) {
        let result = self.queries[idx]
            .pipeline
            .process_input(input, std::slice::from_ref(rec))
            .and_then(|p| {
                self.late += p.late;
                self.log_row_errors(idx, &p.row_errors);
                match p.errors.first() {
                    Some((_, e)) => Err(crate::error::RuntimeError::Plan(e.clone())),
                    None => Ok(p.outputs),
                }
            });
        match result {
            Ok(outputs) => {
                // A table–table join emits on its right side's changes too.
                let sink_topic = self.queries[idx].pipeline.sink.topic.clone();
                let partitions = self
                    .topics
                    .get(&sink_topic)
                    .map(|t| t.partitions)
                    .unwrap_or(1);
                for o in outputs {
                    let partition = match &o.key {
                        Some(k) => Some(partition_for_key(k, partitions)),
                        None => Some(rec.partition % partitions),
                    };
                    let r = self.append(
                        &sink_topic,
                        o.key,
                        o.value,
                        o.timestamp,
                        Vec::new(),
                        partition,
                    );
                    work.push_back((sink_topic.clone(), r));
                }
            }
            Err(e) => {
                let q = &self.queries[idx];
                self.processing_log.push(format!(
                    "query {}: table record partition {} offset {}: {e}",
                    q.pipeline.id, rec.partition, rec.offset
                ));
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
                    q.pipeline.id, q.source_topic, rec.partition, rec.offset
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
        let sink_topic = self.queries[idx].pipeline.sink.topic.clone();
        let sink_partitions = self
            .topics
            .get(&sink_topic)
            .map(|t| t.partitions)
            .unwrap_or(1);
        let processed = self.queries[idx]
            .pipeline
            .process(std::slice::from_ref(rec))?;
        self.late += processed.late;
        self.log_row_errors(idx, &processed.row_errors);
        if let Some((_, e)) = processed.errors.first() {
            return Err(crate::error::RuntimeError::Plan(e.clone()));
        }
        Ok(processed
            .outputs
            .into_iter()
            .map(|o| {
                let partition = match &o.key {
                    Some(k) => Some(partition_for_key(k, sink_partitions)),
                    None => Some(rec.partition % sink_partitions),
                };
                (sink_topic.clone(), o.key, o.value, o.timestamp, partition)
            })
            .collect())
    }

    /// Rows whose expressions failed went on (with NULL where they failed); each is an
    /// entry of the processing log, as in ksqlDB.
    fn log_row_errors(&mut self, idx: usize, errors: &[crate::eval::RowError]) {
        let id = &self.queries[idx].pipeline.id;
        for e in errors {
            self.processing_log.push(format!(
                "query {id}: topic {} partition {} offset {}: {}: {}",
                e.topic, e.partition, e.offset, e.message, e.cause
            ));
        }
    }

    /// The ids of running queries.
    pub fn query_ids(&self) -> Vec<String> {
        self.queries.iter().map(|q| q.pipeline.id.clone()).collect()
    }
}

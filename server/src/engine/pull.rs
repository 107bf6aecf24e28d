//! Pull queries: `SELECT … FROM table [WHERE …] [LIMIT n];` without EMIT, answered from the
//! table's materialized rows (kept by the query that writes the table), not by reading its
//! topic. The WHERE clause decides, as in ksqlDB (`brook_planner::pull`), whether the query
//! looks keys up or scans the table, and refuses what ksqlDB refuses (table scans may be
//! disabled per request); the filter and projection are the ones a push query runs, over the
//! rows read. A scan reads the rows in ksqlDB's order, which is what a LIMIT keeps.

use brook_planner::query::{plan_stateless, Target};
use brook_planner::PlanError;
use brook_runtime::operator::{FilterProject, Operator};
use brook_runtime::session::StatementError;
use brook_runtime::RuntimeError;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use brook_planner::pull::{Access, PullOptions};
use brook_planner::schema::{Column, LogicalSchema, Namespace, WINDOWEND, WINDOWSTART};
use brook_sql::sqlparser::ast::{BinaryOperator, Expr};
use brook_sql::Type;
use tokio::sync::mpsc;

use super::{Engine, PushQuery};

fn refused(what: &str) -> StatementError {
    PlanError::Invalid(format!(
        "Pull queries don't support {what} clauses. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
    ))
    .into()
}

impl Engine {
    /// Runs a pull query; its rows arrive on the returned query's channel, which then closes.
    pub async fn pull_query(&self, query: &brook_sql::Query) -> Result<PushQuery, StatementError> {
        self.pull_query_with(query, &serde_json::Map::new()).await
    }

    /// [`Engine::pull_query`] with a request's properties, which override the server's and
    /// the session's (`ksql.query.pull.table.scan.enabled` …).
    pub async fn pull_query_with(
        &self,
        query: &brook_sql::Query,
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<PushQuery, StatementError> {
        if !query.group_by.is_empty() {
            return Err(refused("GROUP BY"));
        }
        if query.window.is_some() {
            return Err(refused("WINDOW"));
        }
        if !query.joins.is_empty() {
            return Err(refused("JOIN"));
        }
        let catalog = self.catalog().await;
        let source = catalog.source(&query.from.name.value)?.clone();
        check_columns(query, source.window.is_some())?;
        let store = self
            .queries
            .lock()
            .await
            .values()
            .find(|q| q.sink == source.name)
            .map(|q| q.materialized.clone())
            .filter(|stores| !stores.is_empty());
        if store.is_none() && source.kind == brook_sql::SourceKind::Stream {
            return self.pull_stream(query, &catalog, &source).await;
        }
        let plan = plan_pull(query, &catalog)?;
        let mut options = PullOptions::default();
        for (k, v) in &self.session.lock().await.properties {
            options.set(k, v);
        }
        for (k, v) in properties {
            match v {
                serde_json::Value::String(s) => options.set(k, s),
                other => options.set(k, &other.to_string()),
            }
        }
        let access =
            brook_planner::pull::analyze(query.selection.as_ref(), &source, &catalog, options)?;
        let Some(store) = store else {
            let n = &source.name;
            return Err(PlanError::Invalid(format!(
                "The `{n}` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_{n} AS SELECT * FROM {n}'. See https://cnfl.io/queries for more info."
            ))
            .into());
        };
        let mut schema = plan.output.clone();
        let only_star = matches!(
            query.projection.as_slice(),
            [brook_sql::sqlparser::ast::SelectItem::Wildcard(_)]
        );
        if only_star && source.window.is_none() && source.schema.header_columns().next().is_some() {
            // `SELECT *` answers with the table's own schema, which ksqlDB prints keys,
            // headers, then values, while each row has the headers last (as the store holds
            // them): only the schema's text moves the header columns.
            schema = LogicalSchema {
                columns: source
                    .schema
                    .key_columns()
                    .chain(source.schema.header_columns())
                    .chain(source.schema.value_columns())
                    .cloned()
                    .collect(),
            };
        }
        let mut operator = FilterProject::new(plan, &catalog)?;
        // One store per state partition: their rows together are the table.
        let mut parts = Vec::with_capacity(store.len());
        for store in &store {
            let store = store.read().map_err(|_| {
                RuntimeError::State("a materialized table's lock is poisoned".into())
            })?;
            // A lookup reads its keys' rows only; the WHERE clause still filters them.
            let part = match &access {
                Access::Lookup(keys) => store.get_many(keys)?,
                Access::Scan => store.snapshot()?,
            };
            parts.extend(part);
        }
        let snapshot = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(
                arrow::compute::concat_batches(&parts[0].schema(), &parts)
                    .map_err(|e| RuntimeError::State(format!("merging a table's rows: {e}")))?,
            ),
        };
        // ksqlDB's scan order decides which rows a LIMIT keeps; without one (or with one
        // that keeps every row) any order is as good, and the store's costs nothing.
        let cut = match (query.limit, &snapshot) {
            (Some(n), Some(rows)) => n < rows.num_rows() as u64,
            _ => false,
        };
        let snapshot = match (snapshot, &access) {
            (Some(rows), Access::Scan) if cut && rows.num_rows() > 1 => {
                let partitions = self.partition_count(&source.topic).await;
                // Keys that cannot be encoded here (a format needing a registry) keep the
                // store's order: the rows are the same, only a LIMIT may pick others.
                Some(scan_order(&rows, &source, partitions).unwrap_or(rows))
            }
            (rows, _) => rows,
        };
        let mut out = Vec::new();
        if let Some(rows) = snapshot {
            operator.process(rows, &mut out)?;
        }
        if source.window.is_some() {
            let star = query
                .projection
                .iter()
                .any(|p| matches!(p, brook_sql::sqlparser::ast::SelectItem::Wildcard(_)));
            out = window_bounds(out, &mut schema, star, star_offset(query))?;
        }
        let rx = limited(out, query.limit).await;
        let seq = self
            .transient_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PushQuery {
            id: format!("pull_{}_{seq}", source.name),
            schema,
            rows: rx,
            // The rows are already cut to the LIMIT, and a pull query's response ends
            // without ksqlDB's push-query "Limit Reached" message.
            limit: None,
            pull: true,
            completed: false,
        })
    }

    /// The partitions of `topic`, as the broker knows them now (`None` if it cannot say).
    async fn partition_count(&self, topic: &str) -> Option<usize> {
        use brook_runtime::rdkafka::producer::Producer;
        let producer = self.producer.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), std::time::Duration::from_secs(5))
                .ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (!t.partitions().is_empty()).then(|| t.partitions().len())
        })
        .await
        .ok()
        .flatten()
    }

    /// A pull query over a stream: its topic read from the beginning up to the end it had
    /// when the query came, filtered and projected as a push query would be. The rows are
    /// streamed out as they are read: a slow client slows the reading, and only a few
    /// batches are held at a time, whatever the topic's size.
    async fn pull_stream(
        &self,
        query: &brook_sql::Query,
        catalog: &brook_planner::catalog::Catalog,
        source: &brook_planner::catalog::Source,
    ) -> Result<PushQuery, StatementError> {
        let plan = plan_stateless(query, catalog, Target::Transient)?;
        let schema = plan.output.clone();
        let operator = FilterProject::new(plan, catalog)?;
        let reader = StreamReader::open(self.bootstrap.clone(), source.topic.clone()).await?;
        let (records_tx, records_rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || reader.run(&records_tx));
        let (tx, rx) = mpsc::channel(2);
        let rows = StreamRows {
            operator,
            source: source.clone(),
            catalog: catalog.clone(),
            left: query.limit.unwrap_or(u64::MAX),
        };
        tokio::spawn(rows.run(records_rx, tx));
        let seq = self
            .transient_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PushQuery {
            id: format!("pull_{}_{seq}", source.name),
            schema,
            rows: rx,
            // Streams end their response as push queries do: "Limit Reached" when the
            // LIMIT cut the rows, "Query Completed" otherwise.
            limit: query.limit,
            pull: true,
            completed: true,
        })
    }
}

/// The rows of a pull query over a stream: records decoded, filtered and projected a batch
/// at a time, up to the LIMIT.
struct StreamRows {
    operator: FilterProject,
    source: brook_planner::catalog::Source,
    catalog: brook_planner::catalog::Catalog,
    left: u64,
}

impl StreamRows {
    async fn run(
        mut self,
        mut records: mpsc::Receiver<Result<Vec<brook_runtime::rows::Record>, String>>,
        tx: mpsc::Sender<Result<RecordBatch, String>>,
    ) {
        while self.left > 0 {
            let chunk = tokio::select! {
                _ = tx.closed() => return,
                chunk = records.recv() => chunk,
            };
            let rows = match chunk {
                None => return,
                Some(Ok(chunk)) => self.rows(&chunk),
                Some(Err(message)) => Err(message),
            };
            let batches = match rows {
                Ok(b) => b,
                Err(message) => {
                    let _ = tx.send(Err(message)).await;
                    return;
                }
            };
            for b in batches {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        }
    }

    /// A chunk's rows, cut to what is left of the LIMIT.
    fn rows(&mut self, chunk: &[brook_runtime::rows::Record]) -> Result<Vec<RecordBatch>, String> {
        let decoded = brook_runtime::rows::decode_records(&self.source, chunk, &self.catalog)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        if let Some(batch) = decoded.batch {
            self.operator
                .process(batch, &mut out)
                .map_err(|e| e.to_string())?;
        }
        let mut kept = Vec::with_capacity(out.len());
        for mut b in out {
            if self.left == 0 {
                break;
            }
            if b.num_rows() as u64 > self.left {
                b = b.slice(0, self.left as usize);
            }
            self.left -= b.num_rows() as u64;
            if b.num_rows() > 0 {
                kept.push(b);
            }
        }
        Ok(kept)
    }
}

/// A pull query's rows, cut to its LIMIT, on a channel that holds them all (so filling it
/// never waits) and closes after the last.
async fn limited(
    out: Vec<RecordBatch>,
    limit: Option<u64>,
) -> mpsc::Receiver<Result<RecordBatch, String>> {
    let mut left = limit.unwrap_or(u64::MAX);
    let (tx, rx) = mpsc::channel(out.len().max(1));
    for mut b in out {
        if left == 0 {
            break;
        }
        if b.num_rows() as u64 > left {
            b = b.slice(0, left as usize);
        }
        left -= b.num_rows() as u64;
        if b.num_rows() > 0 {
            let _ = tx.send(Ok(b)).await;
        }
    }
    rx
}

/// A table scan's rows in ksqlDB's order, which decides what a LIMIT keeps: partition by
/// partition (a row's partition is its serialized key's, as Kafka's producer picks it), and
/// within one by serialized key bytes then window, as its state store iterates them.
fn scan_order(
    rows: &RecordBatch,
    source: &brook_planner::catalog::Source,
    partitions: Option<usize>,
) -> Result<RecordBatch, StatementError> {
    use arrow::array::{Array, Int64Array};
    let keys: Vec<Column> = source.schema.key_columns().cloned().collect();
    let schema = rows.schema();
    let arrays = keys
        .iter()
        .map(|c| schema.index_of(&c.name).map(|i| rows.column(i).clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RuntimeError::from)?;
    let n = rows.num_rows();
    let encoded = brook_runtime::format::encode_with(
        &source.key_format,
        brook_runtime::format::Part::Key,
        &keys,
        &arrays,
        0..n,
        true,
    )?;
    let bound = |name: &str| {
        schema.index_of(name).ok().and_then(|i| {
            rows.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
        })
    };
    let (start, end) = match source.window {
        Some(_) => (bound(WINDOWSTART), bound(WINDOWEND)),
        None => (None, None),
    };
    let session = matches!(
        source.window,
        Some(brook_planner::catalog::WindowType::Session)
    );
    let at = |a: &Option<Int64Array>, i: usize| {
        a.as_ref()
            .and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
            .unwrap_or(0)
    };
    let mut order: Vec<(usize, &[u8], i64, i64, usize)> = (0..n)
        .map(|i| {
            let key = encoded[i].as_deref().unwrap_or_default();
            let partition = match partitions {
                Some(p) if p > 1 => (brook_runtime::kafka::murmur2(key) & 0x7fff_ffff) as usize % p,
                _ => 0,
            };
            // Session stores order a key's sessions by end, then start.
            let (w1, w2) = match session {
                true => (at(&end, i), at(&start, i)),
                false => (at(&start, i), 0),
            };
            (partition, key, w1, w2, i)
        })
        .collect();
    order.sort();
    let indices = arrow::array::UInt32Array::from_iter_values(order.iter().map(|o| o.4 as u32));
    let columns = rows
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RuntimeError::from)?;
    Ok(RecordBatch::try_new(schema.clone(), columns).map_err(RuntimeError::from)?)
}

/// Records a chunk handed on holds at most, in number and in bytes.
const CHUNK_RECORDS: usize = 1024;
const CHUNK_BYTES: usize = 1 << 20;
/// Records (and bytes) waiting in one partition's queue before its fetching pauses: the
/// others are behind it in time, and are what the merge needs next.
const PARTITION_QUEUE: usize = 4096;
const PARTITION_QUEUE_BYTES: usize = 2 << 20;
/// How long the topic may send nothing while records up to its end are still missing.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a topic from its beginning to the end offsets it had when opened, its partitions'
/// records merged by timestamp as Kafka Streams merges them (the partition whose next
/// record is oldest goes first; within a partition, offset order), handed on in chunks.
struct StreamReader {
    consumer: brook_runtime::rdkafka::consumer::BaseConsumer,
    topic: String,
    merge: Merge,
}

impl StreamReader {
    async fn open(
        kafka: brook_runtime::kafka::Kafka,
        topic: String,
    ) -> Result<StreamReader, StatementError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&kafka, topic))
            .await
            .map_err(|e| RuntimeError::Broker(e.to_string()))?
            .map_err(StatementError::from)
    }

    fn open_blocking(
        kafka: &brook_runtime::kafka::Kafka,
        topic: String,
    ) -> Result<StreamReader, RuntimeError> {
        use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
        use brook_runtime::rdkafka::{Offset, TopicPartitionList};
        let timeout = std::time::Duration::from_secs(30);
        let consumer: BaseConsumer = brook_runtime::kafka::client_config(kafka)
            .set("group.id", "_brook_pull_stream")
            .set("enable.auto.commit", "false")
            // The end of each partition is reported, so that offsets missing at its end
            // (transaction markers) do not leave the query waiting for them.
            .set("enable.partition.eof", "true")
            // librdkafka's prefetch (64 MiB a partition by default) bounded too.
            .set("queued.max.messages.kbytes", "2048")
            .set("fetch.max.bytes", "1048576")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut ends = std::collections::BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, *p, timeout)?;
            if high > low {
                ends.insert(*p, high);
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
            }
        }
        if !ends.is_empty() {
            consumer.assign(&tpl)?;
        }
        Ok(StreamReader {
            consumer,
            topic,
            merge: Merge::new(ends),
        })
    }

    /// Reads to the end, or until `out` is closed (the query ended); a failure is the last
    /// item sent.
    fn run(mut self, out: &mpsc::Sender<Result<Vec<brook_runtime::rows::Record>, String>>) {
        let mut chunk = Chunk::default();
        let mut progress = std::time::Instant::now();
        loop {
            while let Some(record) = self.merge.pop() {
                if chunk.add(record) && out.blocking_send(Ok(chunk.take())).is_err() {
                    return;
                }
            }
            if self.merge.done() {
                break;
            }
            if out.is_closed() {
                return;
            }
            match self.poll() {
                Ok(true) => progress = std::time::Instant::now(),
                Ok(false) if progress.elapsed() < STALL => {}
                Ok(false) => {
                    let _ = out.blocking_send(Err(format!(
                        "topic {} could not be read to its end for a pull query: nothing \
                         arrived for {}s",
                        self.topic,
                        STALL.as_secs()
                    )));
                    return;
                }
                Err(e) => {
                    let _ = out.blocking_send(Err(e.to_string()));
                    return;
                }
            }
        }
        if !chunk.records.is_empty() {
            let _ = out.blocking_send(Ok(chunk.take()));
        }
    }

    /// Takes one message (or partition end) from the consumer; false when none came.
    fn poll(&mut self) -> Result<bool, RuntimeError> {
        use brook_runtime::rdkafka::error::KafkaError;
        use brook_runtime::rdkafka::message::Message;
        // Before polling: a paused partition may be the one the merge waits for now.
        self.pace()?;
        let Some(m) = self.consumer.poll(std::time::Duration::from_millis(200)) else {
            return Ok(false);
        };
        match m {
            Ok(m) => {
                let (partition, offset) = (m.partition(), m.offset());
                let record = brook_runtime::task::to_record(&m);
                self.merge.push(partition, offset, record);
            }
            Err(KafkaError::PartitionEOF(p)) => self.merge.end_of(p),
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }

    /// Pauses a partition whose queue is long, resumes it once it is short again.
    fn pace(&mut self) -> Result<(), RuntimeError> {
        use brook_runtime::rdkafka::consumer::Consumer;
        use brook_runtime::rdkafka::TopicPartitionList;
        for (p, pause) in self.merge.pacing() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, p);
            if pause {
                self.consumer.pause(&tpl)?;
            } else {
                self.consumer.resume(&tpl)?;
            }
        }
        Ok(())
    }
}

/// Records on their way to a pull query, bounded in number and bytes.
#[derive(Default)]
struct Chunk {
    records: Vec<brook_runtime::rows::Record>,
    bytes: usize,
}

impl Chunk {
    /// Adds `r`; true when the chunk is full.
    fn add(&mut self, r: brook_runtime::rows::Record) -> bool {
        self.bytes += size(&r);
        self.records.push(r);
        self.records.len() >= CHUNK_RECORDS || self.bytes >= CHUNK_BYTES
    }

    fn take(&mut self) -> Vec<brook_runtime::rows::Record> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }
}

/// A record's key and value bytes.
fn size(r: &brook_runtime::rows::Record) -> usize {
    r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)
}

/// One partition's place in the merge.
struct PartitionQueue {
    /// Records read and not yet handed on, in offset order, and their size.
    queue: std::collections::VecDeque<brook_runtime::rows::Record>,
    bytes: usize,
    /// The offset after the last record read.
    next: i64,
    /// The end offset when the query came: records from it on are not the query's.
    end: i64,
    paused: bool,
}

impl PartitionQueue {
    /// Every record up to the end has been read.
    fn read(&self) -> bool {
        self.next >= self.end
    }
}

/// Kafka Streams' merge of a topic's partitions: the next record is the oldest head of
/// the partitions' queues, chosen only once every partition still being read has a head.
struct Merge {
    partitions: std::collections::BTreeMap<i32, PartitionQueue>,
}

impl Merge {
    fn new(ends: std::collections::BTreeMap<i32, i64>) -> Merge {
        let partitions = ends
            .into_iter()
            .map(|(p, end)| {
                let queue = PartitionQueue {
                    queue: Default::default(),
                    bytes: 0,
                    next: 0,
                    end,
                    paused: false,
                };
                (p, queue)
            })
            .collect();
        Merge { partitions }
    }

    fn push(&mut self, partition: i32, offset: i64, record: brook_runtime::rows::Record) {
        let Some(q) = self.partitions.get_mut(&partition) else {
            return;
        };
        q.next = q.next.max(offset + 1);
        // A record without a value has no row to show; one past the end came after the query.
        if offset < q.end && record.value.is_some() {
            q.bytes += size(&record);
            q.queue.push_back(record);
        }
    }

    /// The partition has no records after those read.
    fn end_of(&mut self, partition: i32) {
        if let Some(q) = self.partitions.get_mut(&partition) {
            q.next = q.next.max(q.end);
        }
    }

    fn pop(&mut self) -> Option<brook_runtime::rows::Record> {
        let mut oldest: Option<(i64, i32)> = None;
        for (p, q) in &self.partitions {
            match q.queue.front() {
                Some(r) if oldest.is_none_or(|(ts, _)| r.timestamp < ts) => {
                    oldest = Some((r.timestamp, *p));
                }
                Some(_) => {}
                // This partition's next record could be older than any head.
                None if !q.read() => return None,
                None => {}
            }
        }
        let (_, p) = oldest?;
        let q = self.partitions.get_mut(&p)?;
        let record = q.queue.pop_front()?;
        q.bytes -= size(&record);
        Some(record)
    }

    fn done(&self) -> bool {
        self.partitions
            .values()
            .all(|q| q.read() && q.queue.is_empty())
    }

    /// Partitions to pause (true) or resume (false) now.
    fn pacing(&mut self) -> Vec<(i32, bool)> {
        let mut changes = Vec::new();
        for (p, q) in self.partitions.iter_mut() {
            let long = q.queue.len() >= PARTITION_QUEUE || q.bytes >= PARTITION_QUEUE_BYTES;
            let short =
                q.queue.len() <= PARTITION_QUEUE / 2 && q.bytes <= PARTITION_QUEUE_BYTES / 2;
            if long && !q.paused && !q.read() {
                q.paused = true;
                changes.push((*p, true));
            } else if short && q.paused {
                q.paused = false;
                changes.push((*p, false));
            }
        }
        changes
    }
}

/// Rows of a windowed table carry the window bounds after the pseudo columns. `SELECT *`
/// shows them as key columns after the table's key (ksqlDB's layout); otherwise they are
/// shown only where selected by name (as ordinary columns), so the leading pair goes.
fn window_bounds(
    batches: Vec<RecordBatch>,
    schema: &mut LogicalSchema,
    star: bool,
    lead: usize,
) -> Result<Vec<RecordBatch>, StatementError> {
    // With `SELECT ROWTIME, *` the bounds follow the key after the leading column.
    let keys = lead
        + schema
            .columns
            .iter()
            .filter(|c| c.namespace == Namespace::Key)
            .count();
    // Window bounds are part of a windowed table's key, wherever they are selected.
    for c in schema.columns.iter_mut() {
        if c.name == WINDOWSTART || c.name == WINDOWEND {
            c.namespace = Namespace::Key;
        }
    }
    window_columns(schema, star, keys, Namespace::Key);
    batches
        .into_iter()
        .map(|b| {
            window_rows(b, star, keys).map_err(|e| StatementError::Runtime(RuntimeError::Arrow(e)))
        })
        .collect()
}

/// The output columns selected before `*` (`SELECT ROWTIME, * …`), which a windowed
/// source's window bounds also follow; 0 when an item before it is itself expanded.
pub(super) fn star_offset(query: &brook_sql::Query) -> usize {
    use brook_sql::sqlparser::ast::SelectItem;
    let mut n = 0;
    for item in &query.projection {
        match item {
            SelectItem::Wildcard(_) => return n,
            SelectItem::UnnamedExpr(e) if brook_sql::as_struct_all(e).is_none() => n += 1,
            SelectItem::ExprWithAlias { .. } => n += 1,
            _ => return 0,
        }
    }
    0
}

/// `SELECT *` over a windowed source: WINDOWSTART and WINDOWEND follow the first `keys`
/// columns (as keys in a pull query's answer, as values in a push query's).
pub(super) fn window_columns(schema: &mut LogicalSchema, star: bool, keys: usize, ns: Namespace) {
    if star {
        for (i, name) in [WINDOWSTART, WINDOWEND].iter().enumerate() {
            let at = (keys + i).min(schema.columns.len());
            schema
                .columns
                .insert(at, Column::new(*name, Type::Bigint, ns.clone()));
        }
    }
}

/// A windowed source's row as [`window_columns`] lays its columns out: the leading window
/// bounds move after the first `keys` columns for `SELECT *`, and go otherwise.
pub(super) fn window_rows(
    b: RecordBatch,
    star: bool,
    keys: usize,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let cols = b.columns();
    if cols.len() < 5 {
        return Ok(b);
    }
    let mut picked: Vec<(String, ArrayRef)> = Vec::new();
    let field = |i: usize| (b.schema().field(i).name().clone(), cols[i].clone());
    picked.extend((0..3).map(field));
    let rest: Vec<usize> = (5..cols.len()).collect();
    let (key_cols, value_cols) = rest.split_at(keys.min(rest.len()));
    picked.extend(key_cols.iter().map(|i| field(*i)));
    if star {
        picked.push(field(3));
        picked.push(field(4));
    }
    picked.extend(value_cols.iter().map(|i| field(*i)));
    let fields: Vec<Field> = picked
        .iter()
        .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        picked.into_iter().map(|(_, a)| a).collect(),
    )
}

/// A pull query's plan over a table, with ksqlDB's messages for a WHERE clause it cannot
/// compile.
fn plan_pull(
    query: &brook_sql::Query,
    catalog: &brook_planner::catalog::Catalog,
) -> Result<brook_planner::query::StatelessPlan, StatementError> {
    let with_statement = |m: String| match &query.selection {
        Some(w) => PlanError::Invalid(format!("{m}\nStatement: ({w})")),
        None => PlanError::Invalid(m),
    };
    match plan_stateless(query, catalog, Target::Pull) {
        Ok(plan) => Ok(plan),
        Err(PlanError::Invalid(m)) if m.starts_with(WHERE_ERROR) => {
            // ksqlDB type-checks a BETWEEN when it compiles the two comparisons it stands
            // for, and names that step ("Invalid expression") rather than the WHERE clause.
            if let Some(rewritten) = query.selection.as_ref().and_then(without_between) {
                let mut q = query.clone();
                q.selection = Some(rewritten);
                if let Err(PlanError::Invalid(m2)) = plan_stateless(&q, catalog, Target::Pull) {
                    if let Some(rest) = m2.strip_prefix(WHERE_ERROR) {
                        let rest = rest.trim_start().trim_end_matches('.');
                        return Err(
                            PlanError::Invalid(format!("Invalid expression: {rest}")).into()
                        );
                    }
                }
            }
            Err(with_statement(m).into())
        }
        Err(PlanError::Invalid(m)) if m.starts_with("Duplicate column name '") => {
            // ksqlDB builds a pull query's schema before it looks at names, and reports a
            // column selected twice as a duplicate in that schema.
            let name = m["Duplicate column name '".len()..].split('\'').next();
            let source = catalog.source(&query.from.name.value)?;
            match name.and_then(|n| source.schema.column(n)) {
                Some(c) if c.namespace == brook_planner::schema::Namespace::Value => {
                    Err(PlanError::Invalid(format!(
                        "Duplicate value columns found in schema: `{}` {}",
                        c.name,
                        brook_planner::schema::SchemaType(&c.ty)
                    ))
                    .into())
                }
                _ => Err(PlanError::Invalid(m).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

const WHERE_ERROR: &str = "Error in WHERE expression:";

/// `e` with every BETWEEN written as the comparisons it stands for; `None` when it has none.
fn without_between(e: &Expr) -> Option<Expr> {
    let boxed = |e: &Expr| without_between(e).map(Box::new);
    match e {
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let cmp = |op, bound: &Expr| Expr::BinaryOp {
                left: expr.clone(),
                op,
                right: Box::new(bound.clone()),
            };
            let (lo, hi, join) = match negated {
                false => (
                    BinaryOperator::GtEq,
                    BinaryOperator::LtEq,
                    BinaryOperator::And,
                ),
                true => (BinaryOperator::Lt, BinaryOperator::Gt, BinaryOperator::Or),
            };
            Some(Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(cmp(lo, low)),
                op: join,
                right: Box::new(cmp(hi, high)),
            })))
        }
        Expr::Nested(inner) => boxed(inner).map(Expr::Nested),
        Expr::UnaryOp { op, expr } => boxed(expr).map(|expr| Expr::UnaryOp { op: *op, expr }),
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (without_between(left), without_between(right));
            if l.is_none() && r.is_none() {
                return None;
            }
            Some(Expr::BinaryOp {
                left: Box::new(l.unwrap_or_else(|| (**left).clone())),
                op: op.clone(),
                right: Box::new(r.unwrap_or_else(|| (**right).clone())),
            })
        }
        _ => None,
    }
}

/// The upper-cased identifiers an expression's text mentions.
fn identifiers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_uppercase)
        .collect()
}

/// Columns a pull query may not use: the pseudo columns that only a stream's records
/// have, and window bounds of a table that has no windows.
fn check_columns(query: &brook_sql::Query, windowed: bool) -> Result<(), StatementError> {
    const PSEUDO: [&str; 2] = ["ROWPARTITION", "ROWOFFSET"];
    let select: Vec<String> = query
        .projection
        .iter()
        .flat_map(|p| identifiers(&p.to_string()))
        .collect();
    let filter: Vec<String> = query
        .selection
        .iter()
        .flat_map(|w| identifiers(&w.to_string()))
        .collect();
    for (clause, words) in [("SELECT", &select), ("WHERE", &filter)] {
        let used: Vec<String> = PSEUDO
            .iter()
            .filter(|p| words.iter().any(|w| w == *p))
            .map(|p| format!("`{p}`"))
            .collect();
        if !used.is_empty() {
            return Err(PlanError::Invalid(format!(
                "Pull queries don't support the following columns in {clause} clauses: {}",
                used.join(", ")
            ))
            .into());
        }
    }
    if !windowed {
        for bound in [WINDOWSTART, WINDOWEND] {
            if filter.iter().any(|w| w == bound) {
                return Err(PlanError::Invalid(format!(
                    "WHERE column '{bound}' cannot be resolved"
                ))
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, timestamp: i64) -> brook_runtime::rows::Record {
        brook_runtime::rows::Record {
            key: None,
            value: Some(format!("{partition}@{offset}").into_bytes()),
            timestamp,
            headers: Vec::new(),
            partition,
            offset,
        }
    }

    fn popped(merge: &mut Merge) -> Vec<String> {
        std::iter::from_fn(|| merge.pop())
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into())
            .collect()
    }

    #[test]
    fn partitions_merge_by_timestamp_once_each_has_a_head() {
        let mut merge = Merge::new([(0, 3), (1, 2)].into_iter().collect());
        merge.push(0, 0, record(0, 0, 10));
        merge.push(0, 1, record(0, 1, 30));
        assert!(
            popped(&mut merge).is_empty(),
            "partition 1 may hold older records"
        );
        merge.push(1, 0, record(1, 0, 20));
        assert_eq!(popped(&mut merge), ["0@0", "1@0"]);
        merge.push(1, 1, record(1, 1, 5));
        // Within a partition, offset order: 1@1 is older than 0@1 and goes first.
        assert_eq!(popped(&mut merge), ["1@1", "0@1"]);
        assert!(!merge.done(), "partition 0 has a record left to read");
        // Records past the end the query saw are not its own.
        merge.push(1, 2, record(1, 2, 1));
        merge.end_of(0);
        assert!(popped(&mut merge).is_empty());
        assert!(merge.done());
    }

    #[test]
    fn a_long_queue_pauses_its_partition_until_it_drains() {
        let mut merge = Merge::new([(0, 10_000), (1, 10)].into_iter().collect());
        for o in 0..PARTITION_QUEUE as i64 {
            merge.push(0, o, record(0, o, o));
        }
        assert_eq!(merge.pacing(), [(0, true)]);
        assert!(merge.pacing().is_empty(), "paused once");
        merge.push(1, 0, record(1, 0, i64::MAX));
        let drained = popped(&mut merge).len();
        assert_eq!(drained, PARTITION_QUEUE, "partition 0's records, all older");
        assert_eq!(merge.pacing(), [(0, false)]);
    }
}

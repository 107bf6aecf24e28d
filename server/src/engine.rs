//! Statement execution over Kafka: the catalog session plans each statement and the engine
//! carries out its action — creating topics, starting and stopping persistent queries,
//! writing inserted rows — with the same pipelines the deterministic driver runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use brook_planner::catalog::{Catalog, Source};
use brook_planner::query::{plan_stateless, Target};
use brook_planner::schema::LogicalSchema;
use brook_planner::PlanError;
use brook_runtime::kafka::{consumer_config, producer_config, Admin};
use brook_runtime::metrics::{MetricsSnapshot, QueryMetrics};
use brook_runtime::operator::{FilterProject, Operator};
use brook_runtime::pipeline::Pipeline;
use brook_runtime::processing_log::ProcessingLog;
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rows::decode_records;
use brook_runtime::session::{Action, Session, StatementError};
use brook_runtime::shared::SharedInputs;
use brook_runtime::task::{self, TaskConfig, TaskStats};
use brook_runtime::RuntimeError;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::ServerError;
use command_log::{read_log, Command};

mod command_log;
mod fanout;
mod pull;
mod push_pipeline;

pub use command_log::UnreadableCommand;
pub use fanout::FanoutStats;

/// An encoded INSERT VALUES row: key, value, timestamp.
type InsertRow = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// What a statement did, for the API layers to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    Done,
    SourceCreated(String),
    QueryStarted { id: String, sink: String },
    Inserted(usize),
    Dropped(String),
}

struct RunningQuery {
    sink: String,
    /// The statement that started the query (SHOW QUERIES' `queryString`).
    statement: String,
    stop: watch::Sender<bool>,
    /// PAUSE / RESUME: true while the query consumes nothing.
    pause: watch::Sender<bool>,
    metrics: Arc<QueryMetrics>,
    stats: watch::Receiver<TaskStats>,
    handle: JoinHandle<()>,
    /// A table sink's current rows (pull queries read them).
    /// A table sink's rows, one store per state partition (their keys are disjoint).
    materialized: Vec<brook_runtime::materialized::Shared>,
}

/// A running query as listed by SHOW QUERIES.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub id: String,
    pub sink: String,
    pub running: bool,
    /// Paused by PAUSE (ksqlDB's `PAUSED` state).
    pub paused: bool,
    pub stats: TaskStats,
    /// Why the query stopped for good (ksqlDB's `ERROR` state and its `queryErrors`).
    pub error: Option<brook_runtime::metrics::QueryFailure>,
}

/// A persistent query's counters, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMetricsInfo {
    pub id: String,
    pub sink: String,
    pub metrics: MetricsSnapshot,
}

/// Where a transient push query starts reading when its consumer group has no offsets
/// (always: every push query has a group of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Only records produced after the query started (ksqlDB's default).
    #[default]
    Latest,
    Earliest,
}

/// A running transient push query: its output columns, and its rows as they are produced.
/// Dropping it (or its receiver) cancels the query and releases its consumer.
pub struct PushQuery {
    pub id: String,
    /// The output columns (none are key columns: a push query's result has no key).
    pub schema: LogicalSchema,
    /// Output batches in the row schema of `schema` (ROWTIME, ROWPARTITION, ROWOFFSET
    /// first). An `Err` is the last item: the query failed.
    pub rows: mpsc::Receiver<Result<RecordBatch, String>>,
    /// The LIMIT, if any: the channel closes once that many rows were sent.
    pub limit: Option<u64>,
    /// A pull query: its rows are all there at once, and `/query` sends them as one JSON
    /// array rather than a push query's stream of row lines.
    pub pull: bool,
    /// The response ends with ksqlDB's "Query Completed" when the rows ran out (a pull
    /// query over a stream).
    pub completed: bool,
}

pub struct Engine {
    bootstrap: brook_runtime::kafka::Kafka,
    session: Mutex<Session>,
    queries: Mutex<BTreeMap<String, RunningQuery>>,
    producer: FutureProducer,
    /// Metadata and topic creation for every statement, on long-lived clients.
    admin: Admin,
    task_config: TaskConfig,
    transient_seq: AtomicU64,
    /// Turns true at shutdown so push queries end and their HTTP responses complete.
    stopping: watch::Sender<bool>,
    /// The Kafka topic every accepted DDL and persistent-query statement is appended to
    /// before it takes effect, so a restarted server rebuilds its catalog and queries.
    command_topic: Option<String>,
    /// Set while the command log is replayed: replayed statements are not appended again.
    replaying: std::sync::atomic::AtomicBool,
    /// Push queries running now (their subscribers), and started since the server started.
    push_active: Arc<AtomicU64>,
    push_started: AtomicU64,
    /// The consumers latest-offset push queries share, one per source.
    fanout: Arc<fanout::Hub>,
    /// `PushLimits::max_push_queries`.
    max_push_queries: AtomicU64,
    /// `PushLimits::buffer`.
    push_buffer: AtomicUsize,
    /// `ksql.query.push.v2.enabled` in the server's configuration.
    push_v2: std::sync::atomic::AtomicBool,
    /// The processing log topic, when the configuration asks for one.
    processing_log: std::sync::OnceLock<Arc<ProcessingLog>>,
}

/// ksqlDB's processing-log settings (`reference/processing-log.md`).
pub const PROCESSING_TOPIC_AUTO_CREATE: &str = "ksql.logging.processing.topic.auto.create";
pub const PROCESSING_TOPIC_NAME: &str = "ksql.logging.processing.topic.name";
pub const PROCESSING_TOPIC_PARTITIONS: &str = "ksql.logging.processing.topic.partitions";
pub const PROCESSING_STREAM_AUTO_CREATE: &str = "ksql.logging.processing.stream.auto.create";
pub const PROCESSING_ROWS_INCLUDE: &str = "ksql.logging.processing.rows.include";

/// Marks every row of a push query's batch as a deletion (a trailing TOMBSTONE column, which
/// the REST layer shows as ksqlDB's `"tombstone": true`).
fn with_tombstones(b: RecordBatch) -> Result<RecordBatch, RuntimeError> {
    let mut fields: Vec<arrow::datatypes::FieldRef> = b.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        brook_runtime::aggregate::TOMBSTONE,
        arrow::datatypes::DataType::Boolean,
        false,
    )));
    let mut cols = b.columns().to_vec();
    cols.push(Arc::new(arrow::array::BooleanArray::from(vec![
        true;
        b.num_rows()
    ])));
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        cols,
    )?)
}

/// Kafka Streams' threads per query in ksqlDB; in Brook, the workers a stateless query's
/// input partitions are split among (default: the machine's cores).
pub const NUM_STREAM_THREADS: &str = "ksql.streams.num.stream.threads";
/// The Kafka consumer's longest fetch wait, as ksqlDB passes it on to its queries'
/// consumers (librdkafka's `fetch.wait.max.ms`).
pub const FETCH_MAX_WAIT: &str = "ksql.streams.fetch.max.wait.ms";
pub const FETCH_MAX_WAIT_CONSUMER: &str = "ksql.streams.consumer.fetch.max.wait.ms";

/// How many workers a stateless query may use under `properties`.
/// How many pipelines a query runs as. Workers: one per stream thread, at most one per
/// input partition. A stateless query runs that many; a stateful one whose input can be
/// split ([`brook_runtime::pipeline::Route`]) as many state partitions as its changelog
/// has (a restart on a machine with other cores restores the same way), else that many
/// for a new one; any other stateful query, one.
fn pipeline_count(
    first: &Pipeline,
    properties: &BTreeMap<String, String>,
    partitions: &std::collections::HashMap<String, i32>,
) -> usize {
    let workers = stream_threads(properties)
        .min(
            partitions
                .get(&first.source.topic)
                .map_or(1, |p| *p as usize),
        )
        .max(1);
    if !first.stateful() {
        return workers;
    }
    // A join routed by partition needs its topics co-partitioned (as ksqlDB does).
    let counts: Vec<Option<&i32>> = first
        .input_topics()
        .iter()
        .map(|t| partitions.get(t))
        .collect();
    let route = first.route();
    let copartitioned = !counts.windows(2).any(|w| w[0] != w[1]);
    if !route.splits()
        || (matches!(route, brook_runtime::pipeline::Route::ByPartition) && !copartitioned)
    {
        return 1;
    }
    partitions
        .get(&brook_runtime::changelog::topic_name(&first.id))
        .and_then(|p| usize::try_from(*p).ok())
        .unwrap_or(workers)
        .max(1)
}

/// A planned statement with everything that can fail done: what is left is to make it
/// take effect (see `Engine::prepare`).
enum Prepared {
    Done,
    Source {
        name: String,
        /// A source table's materialization, to start.
        table: Option<(Vec<Pipeline>, TaskConfig)>,
    },
    Query {
        id: String,
        sink: String,
        pipelines: Vec<Pipeline>,
        config: TaskConfig,
    },
    Insert {
        topic: String,
        rows: Vec<InsertRow>,
    },
    Drop(String),
}

impl Prepared {
    /// The id of the query the statement starts, recorded with it.
    fn query_id(&self) -> Option<String> {
        match self {
            Prepared::Query { id, .. } => Some(id.clone()),
            _ => None,
        }
    }
}

/// Whether a statement goes in the command log: one that changes the catalog or starts a
/// query, and SET/UNSET, which shape every later statement (e.g. EMIT FINAL's idle
/// timeout), so a replay must see them where they came.
fn is_durable(action: &Action, statement: &brook_sql::Statement) -> bool {
    match action {
        Action::CreateSource { .. } | Action::StartQuery(_) | Action::Drop(_) => true,
        Action::None => matches!(
            statement,
            brook_sql::Statement::CreateType { .. }
                | brook_sql::Statement::DropType { .. }
                | brook_sql::Statement::Set { .. }
                | brook_sql::Statement::Unset { .. }
        ),
        Action::Insert { .. } => false,
    }
}

/// The settings of a topic CREATE STREAM/TABLE creates, as ksqlDB's `TopicCreateInjector`
/// chooses them: a table's topic is compacted (only each key's latest row matters), a
/// stream's keeps the broker's delete policy.
fn source_topic_config(kind: brook_sql::SourceKind) -> Vec<(&'static str, String)> {
    match kind {
        brook_sql::SourceKind::Table => vec![("cleanup.policy", "compact".into())],
        brook_sql::SourceKind::Stream => vec![("cleanup.policy", "delete".into())],
    }
}

/// The settings of the sink topic a CREATE … AS SELECT creates, as ksqlDB's
/// `TopicCreateInjector` chooses them: a stream's deletes old records; a table's is
/// compacted; a windowed table's is compacted and also deletes windows past their
/// retention (and no sooner than Kafka's default week).
fn sink_topic_config(spec: &brook_runtime::session::QuerySpec) -> Vec<(&'static str, String)> {
    if spec.sink.kind == brook_sql::SourceKind::Stream {
        return vec![("cleanup.policy", "delete".into())];
    }
    let retention = match &spec.plan {
        brook_runtime::session::QueryPlan::Aggregate(p) => {
            p.window.as_ref().map(|w| w.retention_ms)
        }
        _ => None,
    };
    match retention {
        None => vec![("cleanup.policy", "compact".into())],
        Some(ms) => vec![
            ("cleanup.policy", "compact,delete".into()),
            (
                "retention.ms",
                ms.max(KAFKA_DEFAULT_RETENTION_MS).to_string(),
            ),
        ],
    }
}

/// Topic settings as the admin client takes them.
fn borrowed<'a>(configs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    configs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Kafka's `log.retention.ms` default, seven days.
const KAFKA_DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

fn stream_threads(properties: &BTreeMap<String, String>) -> usize {
    properties
        .get(NUM_STREAM_THREADS)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// ksqlDB's switch for scalable (v2) push queries.
pub const PUSH_V2_ENABLED: &str = "ksql.query.push.v2.enabled";

/// Bounds on push queries: how many may run at once, and how far behind its source one may
/// fall before it is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushLimits {
    /// ksqlDB's `ksql.max.push.queries` (default 100): a push query beyond it is refused.
    pub max_push_queries: u64,
    /// Rows a subscriber of a shared consumer may have queued; one with more is cut off
    /// (ksqlDB's "Dropped rows") rather than buffered without bound or slowing the others.
    pub buffer: usize,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_push_queries: 100,
            buffer: 10_000,
        }
    }
}

impl Engine {
    pub fn new(bootstrap: &brook_runtime::kafka::Kafka) -> Result<Arc<Engine>, ServerError> {
        Self::build(bootstrap, None)
    }

    fn build(
        bootstrap: &brook_runtime::kafka::Kafka,
        command_topic: Option<&str>,
    ) -> Result<Arc<Engine>, ServerError> {
        let producer: FutureProducer = producer_config(bootstrap)
            .create()
            .map_err(|e| ServerError::Runtime(e.into()))?;
        let limits = PushLimits::default();
        let defaults = TaskConfig::new(bootstrap);
        Ok(Arc::new(Engine {
            bootstrap: bootstrap.clone(),
            session: Mutex::new(Session::new()),
            queries: Mutex::new(BTreeMap::new()),
            producer: producer.clone(),
            admin: Admin::new(bootstrap).map_err(ServerError::Runtime)?,
            task_config: TaskConfig {
                // One producer for every query's outputs and changelogs, and one reader
                // per input topic for its stateless queries: a client per query would
                // cost each idle query its own threads and buffers, and the broker a
                // fetch per query.
                producer: Some(producer.clone()),
                shared: Some(Arc::new(SharedInputs::new(
                    bootstrap,
                    defaults.max_batch,
                    defaults.linger,
                    producer.clone(),
                ))),
                ..defaults
            },
            transient_seq: AtomicU64::new(0),
            stopping: watch::channel(false).0,
            command_topic: command_topic.map(str::to_string),
            replaying: std::sync::atomic::AtomicBool::new(false),
            push_active: Arc::default(),
            push_started: AtomicU64::new(0),
            fanout: Arc::new(fanout::Hub::new(bootstrap)),
            max_push_queries: AtomicU64::new(limits.max_push_queries),
            push_buffer: AtomicUsize::new(limits.buffer),
            push_v2: std::sync::atomic::AtomicBool::new(false),
            processing_log: std::sync::OnceLock::new(),
        }))
    }

    /// A server configuration property (`--config KEY=VALUE`, as in ksqlDB's server
    /// properties): `ksql.query.push.v2.enabled` for the server, any other as the default
    /// every statement is planned with (as a `SET` would make it).
    pub async fn set_config(&self, name: &str, value: &str) {
        if name == PUSH_V2_ENABLED {
            self.push_v2
                .store(value.eq_ignore_ascii_case("true"), Ordering::Relaxed);
        } else {
            self.session.lock().await.set_property(name, value);
        }
    }

    /// With `ksql.logging.processing.topic.auto.create=true` in the configuration, creates
    /// the processing log topic and has every query started from now on write the records
    /// it skips there (call it before [`Engine::recover`], so restored queries do too).
    /// Returns the topic, if any.
    pub async fn configure_processing_log(&self) -> Result<Option<String>, ServerError> {
        let (enabled, topic, partitions, rows) = {
            let session = self.session.lock().await;
            let get = |k: &str| session.properties.get(k).map(|v| v.trim().to_string());
            let on = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            (
                on(PROCESSING_TOPIC_AUTO_CREATE),
                get(PROCESSING_TOPIC_NAME)
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| brook_runtime::processing_log::DEFAULT_TOPIC.to_string()),
                get(PROCESSING_TOPIC_PARTITIONS)
                    .and_then(|p| p.parse::<i32>().ok())
                    .filter(|p| *p > 0)
                    .unwrap_or(1),
                on(PROCESSING_ROWS_INCLUDE),
            )
        };
        if !enabled {
            return Ok(None);
        }
        self.admin
            .create_topic(&topic, partitions, 1)
            .await
            .map_err(ServerError::Runtime)?;
        let log = ProcessingLog::new(&topic, self.producer.clone(), rows);
        let _ = self.processing_log.set(Arc::new(log));
        info!(topic = %topic, "processing log: records queries skip are written to {topic}");
        Ok(Some(topic))
    }

    /// With `ksql.logging.processing.stream.auto.create=true` and a processing log topic,
    /// declares ksqlDB's `KSQL_PROCESSING_LOG` stream over it unless it exists (call it
    /// after [`Engine::recover`]: a declared one comes back from the command log).
    pub async fn create_processing_log_stream(&self) -> Result<(), StatementError> {
        let Some(log) = self.processing_log.get() else {
            return Ok(());
        };
        let wanted = self
            .property(PROCESSING_STREAM_AUTO_CREATE)
            .await
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let exists = self
            .catalog()
            .await
            .sources
            .contains_key(brook_runtime::processing_log::STREAM_NAME);
        if wanted && !exists {
            self.execute(&brook_runtime::processing_log::stream_ddl(log.topic()))
                .await?;
        }
        Ok(())
    }

    /// Sets the push-query bounds (they apply to queries started from now on).
    pub fn set_push_limits(&self, limits: PushLimits) {
        self.max_push_queries
            .store(limits.max_push_queries, Ordering::Relaxed);
        self.push_buffer
            .store(limits.buffer.max(1), Ordering::Relaxed);
    }

    /// An engine whose statements are durable: recorded in `command_topic` and replayed by
    /// [`Engine::recover`] when the server starts again.
    pub fn with_command_log(
        bootstrap: &brook_runtime::kafka::Kafka,
        command_topic: &str,
    ) -> Result<Arc<Engine>, ServerError> {
        Self::build(bootstrap, Some(command_topic))
    }

    /// Appends `command` to the command log (nothing while replaying, or without a log).
    async fn append(&self, command: &Command) -> Result<(), StatementError> {
        let Some(topic) = &self.command_topic else {
            return Ok(());
        };
        if self.replaying.load(Ordering::SeqCst) {
            return Ok(());
        }
        let payload = command.encode();
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&payload);
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| StatementError::Runtime(e.into()))?;
        Ok(())
    }

    /// Marks the recorded statement `id` as not taken effect; a replay skips it. When even
    /// this cannot be recorded, the statement may come back after a restart: say so.
    async fn abort(&self, id: &str, statement: &str) {
        let abort = Command::Abort { id: id.to_string() };
        if let Err(e) = self.append(&abort).await {
            error!(%statement, error = %e, "a failed statement may have been recorded in the command log and could take effect after a restart");
        }
    }

    /// Replays the command log: streams, tables, types and persistent queries come back
    /// with the ids they had, and the queries resume from their committed offsets. Returns
    /// how many commands took effect. The command topic is created, or checked, to keep
    /// every record; a record that cannot be read stops the start-up. A statement that
    /// fails again (its topic deleted since, say) is logged and skipped.
    pub async fn recover(&self) -> Result<usize, ServerError> {
        let Some(topic) = self.command_topic.clone() else {
            return Ok(0);
        };
        brook_runtime::internal_topic::ensure(&self.admin, &topic).await?;
        let records = read_log(&self.bootstrap, &topic).await?;
        let mut commands = Vec::with_capacity(records.len());
        for (offset, payload) in &records {
            let command = Command::decode(payload.as_deref()).map_err(|reason| {
                ServerError::UnreadableCommand {
                    topic: topic.clone(),
                    offset: *offset,
                    reason,
                }
            })?;
            commands.push(command);
        }
        let aborted: std::collections::HashSet<String> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Abort { id } => Some(id.clone()),
                _ => None,
            })
            .collect();
        self.replaying.store(true, Ordering::SeqCst);
        // Queries start paused during the replay (none consumes before the log's PAUSEs are
        // known); these are the ones that stay paused after it.
        let mut paused = std::collections::BTreeSet::new();
        let mut replayed = 0;
        for command in &commands {
            replayed += self.replay(command, &aborted, &mut paused).await;
        }
        self.replaying.store(false, Ordering::SeqCst);
        for (id, q) in self.queries.lock().await.iter() {
            let _ = q.pause.send(paused.contains(id));
        }
        info!(commands = replayed, topic = %topic, "command log replayed");
        Ok(replayed)
    }

    /// Replays one command; returns how many statements took effect.
    async fn replay(
        &self,
        command: &Command,
        aborted: &std::collections::HashSet<String>,
        paused: &mut std::collections::BTreeSet<String>,
    ) -> usize {
        match command {
            Command::Statement {
                id,
                statement,
                query_id,
            } => {
                if aborted.contains(id) {
                    return 0;
                }
                self.replay_text(statement, query_id.as_deref(), paused)
                    .await
            }
            Command::Legacy(text) => self.replay_text(text, None, paused).await,
            Command::Terminate { query_id } => {
                self.end_query(query_id).await;
                paused.remove(query_id);
                1
            }
            Command::Pause { query_id } => usize::from(paused.insert(query_id.clone())),
            Command::Resume { query_id } => usize::from(paused.remove(query_id)),
            Command::Abort { .. } => 0,
        }
    }

    /// Replays statement text (one statement, or several in a log written before records
    /// were versioned, where TERMINATE, PAUSE and RESUME were text too).
    async fn replay_text(
        &self,
        text: &str,
        query_id: Option<&str>,
        paused: &mut std::collections::BTreeSet<String>,
    ) -> usize {
        use brook_sql::{QueryTarget, Statement};
        // Decoding parsed it already.
        let Ok(statements) = brook_sql::parse(text) else {
            return 0;
        };
        let mut replayed = 0;
        for ps in statements {
            let done = match &ps.statement {
                Statement::Terminate(QueryTarget::Query(id)) => {
                    let id = self.known_query_id(&id.value).await;
                    paused.remove(&id);
                    self.end_query(&id).await
                }
                Statement::Pause(QueryTarget::Query(id)) => {
                    paused.insert(self.known_query_id(&id.value).await)
                }
                Statement::Resume(QueryTarget::Query(id)) => {
                    paused.remove(&self.known_query_id(&id.value).await)
                }
                _ => match self.execute_recorded(&ps, query_id).await {
                    Ok(_) => true,
                    Err(e) => {
                        error!(statement = %ps.text, error = %e, "command log entry failed on replay; skipped");
                        false
                    }
                },
            };
            replayed += usize::from(done);
        }
        replayed
    }

    /// A running query's id spelled as `id` or, as older logs upper-cased it, in other case.
    async fn known_query_id(&self, id: &str) -> String {
        let queries = self.queries.lock().await;
        if queries.contains_key(id) {
            return id.to_string();
        }
        queries
            .keys()
            .find(|k| k.eq_ignore_ascii_case(id))
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Runs every statement of `sql` in order, stopping at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Executed>, StatementError> {
        let mut out = Vec::new();
        for ps in brook_sql::parse(sql)? {
            out.push(self.execute_one(&ps).await?);
        }
        Ok(out)
    }

    /// Runs one parsed statement (the REST API reports on each statement of a request).
    pub async fn execute_statement(
        &self,
        ps: &brook_sql::ParsedStatement,
    ) -> Result<Executed, StatementError> {
        self.execute_one(ps).await
    }

    async fn execute_one(
        &self,
        ps: &brook_sql::ParsedStatement,
    ) -> Result<Executed, StatementError> {
        match &ps.statement {
            brook_sql::Statement::Pause(t) => {
                self.set_paused(t, true).await?;
                return Ok(Executed::Done);
            }
            brook_sql::Statement::Resume(t) => {
                self.set_paused(t, false).await?;
                return Ok(Executed::Done);
            }
            _ => {}
        }
        self.execute_recorded(ps, None).await
    }

    /// Plans and carries out a statement, recording it in the command log when it changes
    /// the catalog or starts a query. Everything that can fail (planning, topics, building
    /// the pipelines) happens before the record is written, so a statement the user saw
    /// fail is never replayed; the record is written before the statement takes effect, so
    /// nothing the user saw succeed is lost. `query_id` is a replayed statement's recorded
    /// query id.
    async fn execute_recorded(
        &self,
        ps: &brook_sql::ParsedStatement,
        query_id: Option<&str>,
    ) -> Result<Executed, StatementError> {
        let partitions = self.admin.topic_partitions(Duration::from_secs(30)).await?;
        let mut session = self.session.lock().await;
        let before = session.catalog.clone();
        let prepared =
            match session.plan_with_id(ps, &|t: &str| partitions.get(t).copied(), query_id) {
                Ok(action) => {
                    let durable = is_durable(&action, &ps.statement);
                    self.prepare(&session, action, &partitions, &ps.text)
                        .await
                        .map(|p| (durable, p))
                }
                Err(e) => Err(e),
            };
        let (durable, prepared) = match prepared {
            Ok(p) => p,
            Err(e) => {
                // The statement did not take effect: neither may its catalog change.
                session.catalog = before;
                return Err(e);
            }
        };
        if durable {
            let command = Command::statement(&format!("{};", ps.text), prepared.query_id());
            if let Err(e) = self.append(&command).await {
                session.catalog = before;
                // The record may have reached the log even though the send failed.
                if let Command::Statement { id, .. } = &command {
                    self.abort(id, &ps.text).await;
                }
                return Err(e);
            }
        }
        drop(session);
        self.commit(prepared, &ps.text).await
    }

    /// Does everything a planned statement needs that can fail: creates its topics and
    /// builds its pipelines. Nothing visible has changed when it fails.
    async fn prepare(
        &self,
        session: &Session,
        action: Action,
        partitions: &std::collections::HashMap<String, i32>,
        statement: &str,
    ) -> Result<Prepared, StatementError> {
        match action {
            Action::None => Ok(Prepared::Done),
            Action::CreateSource {
                source,
                partitions: wanted,
            } => {
                if !partitions.contains_key(&source.topic) {
                    let Some(p) = wanted else {
                        return Err(PlanError::Invalid(format!(
                            "Topic '{}' does not exist. If you want to create a new topic for the {} please re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). For example: CREATE {} {} (...) WITH (KAFKA_TOPIC='{}', PARTITIONS=2, ...);",
                            source.topic,
                            kind_word(source.kind),
                            source.kind,
                            source.name,
                            source.topic
                        ))
                        .into());
                    };
                    let configs = source_topic_config(source.kind);
                    self.admin
                        .create_topic_with(&source.topic, p, 1, &borrowed(&configs))
                        .await?;
                }
                let table = if source.read_only && source.kind == brook_sql::SourceKind::Table {
                    Some(self.materialize_pipelines(session, &source).await?)
                } else {
                    None
                };
                Ok(Prepared::Source {
                    name: source.name,
                    table,
                })
            }
            Action::StartQuery(spec) => {
                if let Some(p) = spec.sink_partitions {
                    if !partitions.contains_key(&spec.sink.topic) {
                        let configs = sink_topic_config(&spec);
                        self.admin
                            .create_topic_with(&spec.sink.topic, p, 1, &borrowed(&configs))
                            .await?;
                    }
                }
                let id = spec.id.clone();
                let sink = spec.sink.name.clone();
                let first = Pipeline::new((*spec).clone(), &session.catalog)?;
                let count = pipeline_count(&first, &session.properties, partitions);
                let mut pipelines = vec![first];
                for _ in 1..count {
                    pipelines.push(Pipeline::new((*spec).clone(), &session.catalog)?);
                }
                let config = self.query_task_config(&session.properties);
                let _ = statement;
                Ok(Prepared::Query {
                    id,
                    sink,
                    pipelines,
                    config,
                })
            }
            Action::Insert { source, rows } => Ok(Prepared::Insert {
                topic: source.topic,
                rows,
            }),
            Action::Drop(name) => Ok(Prepared::Drop(name)),
        }
    }

    /// Makes a prepared statement take effect.
    async fn commit(
        &self,
        prepared: Prepared,
        statement: &str,
    ) -> Result<Executed, StatementError> {
        match prepared {
            Prepared::Done => Ok(Executed::Done),
            Prepared::Source { name, table } => {
                if let Some((pipelines, config)) = table {
                    self.start(pipelines, config, statement).await;
                }
                Ok(Executed::SourceCreated(name))
            }
            Prepared::Query {
                id,
                sink,
                pipelines,
                config,
            } => {
                self.start(pipelines, config, statement).await;
                Ok(Executed::QueryStarted { id, sink })
            }
            Prepared::Insert { topic, rows } => {
                let n = rows.len();
                self.write_rows(&topic, rows).await?;
                Ok(Executed::Inserted(n))
            }
            Prepared::Drop(name) => {
                let ids: Vec<String> = self
                    .queries
                    .lock()
                    .await
                    .iter()
                    .filter(|(_, q)| q.sink == name)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    self.end_query(&id).await;
                }
                Ok(Executed::Dropped(name))
            }
        }
    }

    /// The task settings of a query started under `properties`: the server's, with the
    /// consumer's fetch wait from `ksql.streams[.consumer].fetch.max.wait.ms` if set.
    fn query_task_config(&self, properties: &BTreeMap<String, String>) -> TaskConfig {
        let mut config = self.task_config.clone();
        config.processing_log = self.processing_log.get().cloned();
        // A query restored from the command log may have run before shared readers.
        config.group_offsets = self.replaying.load(Ordering::SeqCst);
        let wait = [FETCH_MAX_WAIT_CONSUMER, FETCH_MAX_WAIT]
            .iter()
            .find_map(|k| properties.get(*k))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if let Some(ms) = wait {
            config
                .consumer_overrides
                .push(("fetch.wait.max.ms".into(), ms.to_string()));
        }
        config
    }

    async fn start(&self, pipelines: Vec<Pipeline>, config: TaskConfig, statement: &str) {
        let Some(pipeline) = pipelines.first() else {
            return;
        };
        let id = pipeline.id.clone();
        let sink = pipeline.sink.name.clone();
        // Each state partition keeps its own keys' rows.
        let materialized: Vec<_> = pipelines
            .iter()
            .filter_map(Pipeline::materialized)
            .collect();
        let workers = pipelines.len();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stats_tx, stats_rx) = watch::channel(TaskStats::default());
        // A replayed query waits for the whole log: a later PAUSE in it must find the query
        // before it has consumed anything.
        let replaying = self.replaying.load(std::sync::atomic::Ordering::SeqCst);
        let (pause_tx, pause_rx) = watch::channel(replaying);
        let metrics = Arc::new(QueryMetrics::new());
        let control = task::Control {
            stop: stop_rx,
            paused: pause_rx,
            stats: stats_tx,
            metrics: metrics.clone(),
        };
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = task::run_parallel(pipelines, config, control).await {
                error!(query = %task_id, error = %e, "query stopped");
            }
        });
        info!(query = %id, sink = %sink, workers, "query started");
        self.queries.lock().await.insert(
            id,
            RunningQuery {
                sink,
                statement: statement.to_string(),
                stop: stop_tx,
                pause: pause_tx,
                metrics,
                stats: stats_rx,
                handle,
                materialized,
            },
        );
    }

    /// CREATE SOURCE TABLE: a query (ksqlDB's `CST_…`) keeps the table's rows for pull
    /// queries; it writes nothing. Its id depends only on the table, so a restarted
    /// server finds its changelog again. Returns its pipelines, to start once recorded.
    async fn materialize_pipelines(
        &self,
        session: &Session,
        source: &Source,
    ) -> Result<(Vec<Pipeline>, TaskConfig), StatementError> {
        let brook_sql::Statement::Query(q) =
            brook_sql::parse_one(&format!("SELECT * FROM `{}`;", source.name))?
        else {
            return Err(PlanError::Invalid("a source table's scan did not parse".into()).into());
        };
        let plan = plan_stateless(&q, &session.catalog, Target::Pull)?;
        let spec = brook_runtime::session::QuerySpec {
            id: format!("CST_{}", source.name),
            input: source.clone(),
            sink: source.clone(),
            plan: brook_runtime::session::QueryPlan::Stateless(plan),
            sink_partitions: None,
        };
        let first = Pipeline::materialize(spec.clone(), &session.catalog)?;
        let partitions = self.admin.topic_partitions(Duration::from_secs(30)).await?;
        let count = pipeline_count(&first, &session.properties, &partitions);
        let mut pipelines = vec![first];
        for _ in 1..count {
            pipelines.push(Pipeline::materialize(spec.clone(), &session.catalog)?);
        }
        Ok((pipelines, self.query_task_config(&session.properties)))
    }

    /// Writes INSERT VALUES rows (key, value, timestamp) and waits until Kafka has each.
    async fn write_rows(&self, topic: &str, rows: Vec<InsertRow>) -> Result<(), StatementError> {
        for (key, value, ts) in rows {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).timestamp(ts);
            if let Some(k) = &key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &value {
                rec = rec.payload(v.as_slice());
            }
            self.producer
                .send(rec, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| StatementError::Runtime(e.into()))?;
        }
        Ok(())
    }

    /// TERMINATE: stops a query for good (recorded in the command log, so a restarted
    /// server does not bring it back).
    pub async fn terminate(&self, id: &str) -> bool {
        if !self.queries.lock().await.contains_key(id) {
            return false;
        }
        let command = Command::Terminate {
            query_id: id.to_string(),
        };
        if let Err(e) = self.append(&command).await {
            error!(query = %id, error = %e, "cannot record TERMINATE in the command log");
            return false;
        }
        self.end_query(id).await
    }

    /// Stops a query for good: its stored input positions go too, so nothing of it is
    /// left to resume.
    async fn end_query(&self, id: &str) -> bool {
        let stopped = self.stop_query(id).await;
        if let Some(shared) = &self.task_config.shared {
            if let Err(e) = shared.offsets.forget(id).await {
                warn!(query = %id, error = %e, "cannot forget the query's input positions");
            }
        }
        stopped
    }

    /// Stops a query and waits for its last commit.
    async fn stop_query(&self, id: &str) -> bool {
        let Some(q) = self.queries.lock().await.remove(id) else {
            return false;
        };
        let _ = q.stop.send(true);
        let _ = q.handle.await;
        info!(query = %id, "query terminated");
        true
    }

    /// PAUSE (`paused`) or RESUME a query, or all of them: recorded in the command log
    /// first (as ksqlDB records them in its command topic), so a restarted server keeps the
    /// query paused. Returns the ids it applied to; an unknown id is refused.
    pub async fn set_paused(
        &self,
        target: &brook_sql::QueryTarget,
        paused: bool,
    ) -> Result<Vec<String>, StatementError> {
        let ids: Vec<String> = {
            let queries = self.queries.lock().await;
            match target {
                brook_sql::QueryTarget::All => queries.keys().cloned().collect(),
                // Ids are printed upper-case; a quoted id keeps its case, a bare one was
                // upper-cased by the parser, so both spellings are tried.
                brook_sql::QueryTarget::Query(id) => {
                    let upper = id.value.to_uppercase();
                    let found = [&id.value, &upper]
                        .into_iter()
                        .find(|i| queries.contains_key(i.as_str()))
                        .cloned();
                    match found {
                        Some(i) => vec![i],
                        None => {
                            return Err(PlanError::Invalid(format!(
                                "Unknown queryId: {}",
                                id.value
                            ))
                            .into())
                        }
                    }
                }
            }
        };
        for id in &ids {
            let query_id = id.clone();
            let command = if paused {
                Command::Pause { query_id }
            } else {
                Command::Resume { query_id }
            };
            self.append(&command).await?;
        }
        let queries = self.queries.lock().await;
        for id in &ids {
            if let Some(q) = queries.get(id) {
                let _ = q.pause.send(paused);
            }
        }
        Ok(ids)
    }

    /// Every persistent query's counters.
    pub async fn query_metrics(&self) -> Vec<QueryMetricsInfo> {
        self.queries
            .lock()
            .await
            .iter()
            .map(|(id, q)| QueryMetricsInfo {
                id: id.clone(),
                sink: q.sink.clone(),
                metrics: q.metrics.snapshot(),
            })
            .collect()
    }

    /// Push queries running now (one per subscriber), and started since the server did.
    pub fn push_queries(&self) -> (u64, u64) {
        (
            self.push_active.load(Ordering::Relaxed),
            self.push_started.load(Ordering::Relaxed),
        )
    }

    pub async fn queries(&self) -> Vec<QueryInfo> {
        self.queries
            .lock()
            .await
            .iter()
            .map(|(id, q)| QueryInfo {
                id: id.clone(),
                sink: q.sink.clone(),
                running: !q.handle.is_finished(),
                paused: *q.pause.borrow(),
                stats: q.stats.borrow().clone(),
                error: q.metrics.failure(),
            })
            .collect()
    }

    /// The statement that started a running query.
    pub async fn query_statement(&self, id: &str) -> Option<String> {
        self.queries
            .lock()
            .await
            .get(id)
            .map(|q| q.statement.clone())
    }

    /// A snapshot of the catalog, for the statements answered without the session
    /// (SHOW, LIST, DESCRIBE).
    pub async fn catalog(&self) -> Catalog {
        self.session.lock().await.catalog.clone()
    }

    /// A property `SET` (or `--config`) gave the session, if any.
    pub async fn property(&self, name: &str) -> Option<String> {
        self.session.lock().await.properties.get(name).cloned()
    }

    /// Topic names and partition counts, as Kafka reports them.
    pub async fn topics(&self) -> Result<std::collections::HashMap<String, i32>, RuntimeError> {
        self.admin.topic_partitions(Duration::from_secs(30)).await
    }

    /// Whether Kafka answers a metadata request within `timeout`, asked on the engine's
    /// long-lived client (`/healthcheck`: a client per check cost threads and connections).
    pub async fn kafka_reachable(&self, timeout: Duration) -> bool {
        self.admin.topic_partitions(timeout).await.is_ok()
    }

    /// Starts a transient push query (`SELECT … FROM source [WHERE …] EMIT CHANGES [LIMIT n]`).
    /// From the latest offsets (the default) it joins the source's shared consumer, which
    /// decodes each record once for all its subscribers; from the earliest it reads the
    /// topic with a consumer group of its own. Either way its rows go to a bounded channel.
    pub async fn push_query(
        &self,
        query: &brook_sql::Query,
        reset: OffsetReset,
    ) -> Result<PushQuery, ServerError> {
        self.push_query_with(query, reset, None).await
    }

    /// [`Engine::push_query`], with the query's own `ksql.query.push.v2.enabled`, if given.
    /// A scalable (v2) push query is one ksqlDB would run as such: enabled, from the
    /// latest offsets, stateless, over a source exactly one persistent query writes. It
    /// runs like any latest-offset push query here (on its source's shared consumer), and
    /// is named `SCALABLE_PUSH_QUERY_…` as ksqlDB names it.
    pub async fn push_query_with(
        &self,
        query: &brook_sql::Query,
        reset: OffsetReset,
        push_v2: Option<bool>,
    ) -> Result<PushQuery, ServerError> {
        if !query.joins.is_empty() || brook_planner::aggregate::is_aggregation(query) {
            return self.push_stateful(query, reset).await;
        }
        let scalable = push_v2.unwrap_or(self.push_v2.load(Ordering::Relaxed))
            && reset == OffsetReset::Latest
            && query.window.is_none()
            && query.partition_by.is_empty()
            && {
                let source = query.from.name.value.as_str();
                let writers = self
                    .queries
                    .lock()
                    .await
                    .values()
                    .filter(|q| q.sink == source)
                    .count();
                writers == 1
            };
        let catalog = self.catalog().await;
        let plan =
            plan_stateless(query, &catalog, Target::Transient).map_err(StatementError::from)?;
        let source = catalog
            .source(&plan.source)
            .map_err(StatementError::from)?
            .clone();
        let mut schema = plan.output.clone();
        // A windowed source's rows carry their window bounds (shown by `SELECT *`).
        let window = source.window.map(|_| {
            let star = query
                .projection
                .iter()
                .any(|p| matches!(p, brook_sql::sqlparser::ast::SelectItem::Wildcard(_)));
            let keys = pull::star_offset(query) + source.schema.key_columns().count();
            pull::window_columns(
                &mut schema,
                star,
                keys,
                brook_planner::schema::Namespace::Value,
            );
            (star, keys)
        });
        let operator = FilterProject::new(plan, &catalog).map_err(StatementError::from)?;
        let active = ActiveGuard::admit(
            self.push_active.clone(),
            self.max_push_queries.load(Ordering::Relaxed),
        )?;
        let seq = self.transient_seq.fetch_add(1, Ordering::Relaxed);
        // A fresh id per query (and per server run, through the clock) so that no group
        // ever has committed offsets to resume from.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000_000)
            .unwrap_or(0);
        let id = if scalable {
            format!("SCALABLE_PUSH_QUERY_{}_{}{}", source.name, nanos, seq)
        } else {
            format!("transient_{}_{}{}", source.name, nanos, seq)
        };
        let feed = match reset {
            OffsetReset::Latest => {
                let buffer = self.push_buffer.load(Ordering::Relaxed);
                let sub = self
                    .fanout
                    .subscribe(&source, &catalog, buffer, self.stopping.subscribe())
                    .await?;
                Feed::Shared(sub)
            }
            OffsetReset::Earliest => {
                let mut cc = consumer_config(&self.bootstrap, &format!("_brook_{id}"));
                cc.set("auto.offset.reset", "earliest");
                let consumer: StreamConsumer = cc.create().map_err(RuntimeError::from)?;
                consumer
                    .subscribe(&[&source.topic])
                    .map_err(RuntimeError::from)?;
                Feed::Own { consumer, catalog }
            }
        };
        // A shared feed's rows wait in its queue, bounded in rows; batches here would be
        // rows beyond that bound, so only one waits.
        let capacity = if matches!(feed, Feed::Shared(_)) {
            1
        } else {
            16
        };
        let (tx, rx) = mpsc::channel(capacity);
        let limit = query.limit;
        let stopping = self.stopping.subscribe();
        let task_id = id.clone();
        self.push_started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let run = Transient {
                id: task_id.clone(),
                source,
                operator,
                limit,
                window,
                active: Some(active),
                sent: 0,
                skip_null_keys: scalable,
            };
            let feed = match run.run(feed, tx, stopping).await {
                (Ok(()), feed) => {
                    debug!(query = %task_id, "push query ended");
                    feed
                }
                (Err(e), feed) => {
                    warn!(query = %task_id, error = %e, "push query failed");
                    feed
                }
            };
            // Closing a consumer leaves its group, which blocks (seconds, when a join is
            // still in flight): off the runtime's worker threads. A subscription just
            // leaves its shared consumer.
            if let Feed::Own { consumer, .. } = feed {
                let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            }
        });
        info!(query = %id, "push query started");
        Ok(PushQuery {
            id,
            schema,
            rows: rx,
            limit,
            pull: false,
            completed: false,
        })
    }

    /// A push query with GROUP BY or joins: the persistent query's pipeline over a consumer
    /// of its own, its result rows (updates of an aggregate, joined rows) streamed.
    async fn push_stateful(
        &self,
        query: &brook_sql::Query,
        reset: OffsetReset,
    ) -> Result<PushQuery, ServerError> {
        let session = self.session.lock().await.clone();
        let seq = self.transient_seq.fetch_add(1, Ordering::Relaxed);
        let mut planned = push_pipeline::plan(&session, query, &format!("__BROOK_PUSH_{seq}"))?;
        let active = ActiveGuard::admit(
            self.push_active.clone(),
            self.max_push_queries.load(Ordering::Relaxed),
        )?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000_000)
            .unwrap_or(0);
        let kind = if query.joins.is_empty() {
            "AGGREGATE"
        } else {
            "JOIN"
        };
        let id = format!("transient_{kind}_{nanos}{seq}");
        let mut cc = consumer_config(&self.bootstrap, &format!("_brook_{id}"));
        cc.set(
            "auto.offset.reset",
            match reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        );
        let consumer: StreamConsumer = cc.create().map_err(RuntimeError::from)?;
        let topics: Vec<&str> = planned.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(RuntimeError::from)?;
        let schema = planned.schema.clone();
        let (tx, rx) = mpsc::channel(16);
        let limit = query.limit;
        let mut stopping = self.stopping.subscribe();
        let task_id = id.clone();
        self.push_started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _active = active;
            let mut sent = 0u64;
            'run: while limit != Some(0) && !*stopping.borrow() {
                let msg = tokio::select! {
                    _ = tx.closed() => break,
                    _ = stopping.changed() => break,
                    m = consumer.recv() => m,
                };
                let (input, record) = match msg {
                    Ok(m) => (
                        planned
                            .topics
                            .iter()
                            .position(|t| t == brook_runtime::rdkafka::Message::topic(&m))
                            .unwrap_or(0),
                        brook_runtime::task::to_record(&m),
                    ),
                    Err(e) => {
                        warn!(query = %task_id, error = %e, "consume failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let done = match planned.pipeline.process_input(input, &[record]) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        break;
                    }
                };
                for (_, e) in &done.errors {
                    warn!(query = %task_id, "record skipped: {e}");
                }
                for b in done.batches {
                    let rows = match planned.rows(b) {
                        Ok(Some(r)) => r,
                        Ok(None) => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string())).await;
                            break 'run;
                        }
                    };
                    // LIMIT: only the rows still owed.
                    let rows = match limit {
                        Some(l) if sent + rows.num_rows() as u64 > l => {
                            rows.slice(0, (l - sent) as usize)
                        }
                        _ => rows,
                    };
                    sent += rows.num_rows() as u64;
                    if tx.send(Ok(rows)).await.is_err() {
                        break 'run;
                    }
                    if limit.is_some_and(|l| sent >= l) {
                        break 'run;
                    }
                }
            }
            debug!(query = %task_id, "push query ended");
            // Closing a consumer leaves its group, which blocks: off the worker threads.
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        });
        info!(query = %id, "push query started");
        Ok(PushQuery {
            id,
            schema,
            rows: rx,
            limit,
            pull: false,
            completed: false,
        })
    }

    /// Shared consumers, their subscribers, and subscribers cut off for falling behind.
    pub fn fanout_stats(&self) -> FanoutStats {
        self.fanout.stats()
    }

    /// Stops every query (graceful shutdown: each commits what it has written).
    pub async fn shutdown(&self) {
        let _ = self.stopping.send(true);
        let ids: Vec<String> = self.queries.lock().await.keys().cloned().collect();
        for id in ids {
            self.stop_query(&id).await;
        }
    }
}

/// Where a push query's rows come from.
enum Feed {
    /// A consumer of its own (earliest offsets), whose records it decodes itself.
    Own {
        consumer: StreamConsumer,
        catalog: Catalog,
    },
    /// Rows decoded by its source's shared consumer.
    Shared(fanout::Subscription),
    /// Left its shared consumer already (cut off).
    Gone,
}

/// What became of a batch offered to the subscriber.
enum Sent {
    /// Sent; more may follow.
    More,
    /// The query is over: LIMIT reached, subscriber gone, or server stopping.
    Done,
    /// Cut off by the shared consumer while waiting for the subscriber.
    Ended(fanout::End),
}

/// The consuming side of a push query.
/// `batch` without the rows whose key columns are all NULL (`None` when none is left); a
/// source without key columns keeps every row.
fn without_null_keys(
    source: &Source,
    batch: RecordBatch,
) -> Result<Option<RecordBatch>, RuntimeError> {
    use arrow::array::Array;
    let schema = batch.schema();
    let keys: Vec<usize> = source
        .schema
        .key_columns()
        .filter_map(|c| schema.index_of(&c.name).ok())
        .collect();
    if keys.is_empty() {
        return Ok(Some(batch));
    }
    let keep: arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|row| Some(keys.iter().any(|k| !batch.column(*k).is_null(row))))
        .collect();
    if keep.true_count() == batch.num_rows() {
        return Ok(Some(batch));
    }
    let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
    Ok((kept.num_rows() > 0).then_some(kept))
}

struct Transient {
    id: String,
    source: Source,
    operator: FilterProject,
    limit: Option<u64>,
    /// A windowed source: whether the query is `SELECT *`, and its key column count.
    window: Option<(bool, usize)>,
    /// Counts the query among those running until it ends or is cut off.
    active: Option<ActiveGuard>,
    sent: u64,
    /// A scalable push query: as ksqlDB's, it does not see rows without a key.
    skip_null_keys: bool,
}

impl Transient {
    /// Runs until the LIMIT is reached, the subscriber goes away, the server stops or the
    /// shared consumer cuts the query off; gives the feed back for closing.
    async fn run(
        mut self,
        mut feed: Feed,
        tx: mpsc::Sender<Result<RecordBatch, String>>,
        mut stopping: watch::Receiver<bool>,
    ) -> (Result<(), RuntimeError>, Feed) {
        if self.limit == Some(0) {
            return (Ok(()), feed);
        }
        let result = loop {
            if *stopping.borrow() {
                break Ok(());
            }
            let sent = match &mut feed {
                Feed::Own { consumer, catalog } => {
                    let msg = tokio::select! {
                        _ = tx.closed() => break Ok(()),
                        _ = stopping.changed() => break Ok(()),
                        m = consumer.recv() => m,
                    };
                    let record = match msg {
                        Ok(m) => brook_runtime::task::to_record(&m),
                        Err(e) => {
                            warn!(query = %self.id, error = %e, "consume failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    // A stream record without a value carries no row to show; a table's
                    // deletes its key (and a table row needs a key).
                    let table = self.source.kind == brook_sql::SourceKind::Table;
                    if (record.value.is_none() && !table) || (table && record.key.is_none()) {
                        continue;
                    }
                    let tombstone = record.value.is_none();
                    let decoded = match decode_records(&self.source, &[record], catalog) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string())).await;
                            break Err(e);
                        }
                    };
                    for (_, e) in &decoded.errors {
                        warn!(query = %self.id, topic = %self.source.topic, "record skipped: {e}");
                    }
                    let Some(batch) = decoded.batch else {
                        continue;
                    };
                    match self.emit(batch, &tx, None, tombstone).await {
                        Ok(sent) => sent,
                        Err(e) => break Err(e),
                    }
                }
                Feed::Shared(sub) => {
                    let sent = tokio::select! {
                        _ = tx.closed() => break Ok(()),
                        _ = stopping.changed() => break Ok(()),
                        end = &mut sub.end => match end {
                            Ok(end) => Sent::Ended(end),
                            // The shared consumer is gone (the server is stopping).
                            Err(_) => break Ok(()),
                        },
                        item = sub.rows.recv() => match item {
                            Some(item) => {
                                // The rows keep their place in the bound until sent on.
                                let batch = item.batch.clone();
                                let tombstone = item.tombstone;
                                match self.emit(batch, &tx, Some(&mut sub.end), tombstone).await {
                                    Ok(sent) => sent,
                                    Err(e) => break Err(e),
                                }
                            }
                            None => break Ok(()),
                        },
                    };
                    sent
                }
                Feed::Gone => break Ok(()),
            };
            match sent {
                Sent::More => {}
                Sent::Done => break Ok(()),
                Sent::Ended(end) => {
                    let feed = std::mem::replace(&mut feed, Feed::Gone);
                    self.ended(end, feed, &tx, &mut stopping).await;
                    break Ok(());
                }
            }
        };
        (result, feed)
    }

    /// Cut off or failed: leaves the shared consumer at once (its queue is freed, and the
    /// query stops counting as running), then tells the subscriber why, as the last item.
    async fn ended(
        &mut self,
        end: fanout::End,
        feed: Feed,
        tx: &mpsc::Sender<Result<RecordBatch, String>>,
        stopping: &mut watch::Receiver<bool>,
    ) {
        drop(feed);
        drop(self.active.take());
        let message = match end {
            fanout::End::Behind { buffer } => {
                warn!(query = %self.id, source = %self.source.name, buffer, "push query fell behind; disconnected");
                format!(
                    "Dropped rows: push query {} fell more than {buffer} rows behind {} and was disconnected; read its rows faster, or raise --push-query-buffer",
                    self.id, self.source.name
                )
            }
            fanout::End::Failed(reason) => reason,
        };
        // The subscriber may not be reading at all: it gets the message if it comes back,
        // and the task ends when it goes away (or the server stops).
        tokio::select! {
            _ = tx.closed() => {}
            _ = stopping.wait_for(|s| *s) => {}
            _ = tx.send(Err(message)) => {}
        }
    }

    /// Filters, projects and sends one decoded batch (up to the LIMIT).
    async fn emit(
        &mut self,
        batch: RecordBatch,
        tx: &mpsc::Sender<Result<RecordBatch, String>>,
        mut end: Option<&mut oneshot::Receiver<fanout::End>>,
        tombstone: bool,
    ) -> Result<Sent, RuntimeError> {
        let batch = if self.skip_null_keys {
            match without_null_keys(&self.source, batch)? {
                Some(b) => b,
                None => return Ok(Sent::More),
            }
        } else {
            batch
        };
        let mut out = Vec::new();
        if let Err(e) = self.operator.process(batch, &mut out) {
            // ksqlDB logs a row that fails to evaluate and goes on.
            warn!(query = %self.id, "row skipped: {e}");
            return Ok(Sent::More);
        }
        for mut b in out {
            if let Some((star, keys)) = self.window {
                b = pull::window_rows(b, star, keys)?;
            }
            if tombstone {
                b = with_tombstones(b)?;
            }
            if let Some(limit) = self.limit {
                let left = limit.saturating_sub(self.sent) as usize;
                if b.num_rows() > left {
                    b = b.slice(0, left);
                }
            }
            let n = b.num_rows() as u64;
            if n > 0 {
                let delivered = match end.as_deref_mut() {
                    None => tx.send(Ok(b)).await.is_ok(),
                    // Waiting on a slow subscriber, the query may be cut off meanwhile.
                    Some(end) => tokio::select! {
                        sent = tx.send(Ok(b)) => sent.is_ok(),
                        e = end => return Ok(match e {
                            Ok(e) => Sent::Ended(e),
                            Err(_) => Sent::Done,
                        }),
                    },
                };
                if !delivered {
                    return Ok(Sent::Done);
                }
            }
            self.sent += n;
            if self.limit.is_some_and(|l| self.sent >= l) {
                return Ok(Sent::Done);
            }
        }
        Ok(Sent::More)
    }
}

/// Counts a running push query for as long as it lives (however its task ends).
struct ActiveGuard(Arc<AtomicU64>);

impl ActiveGuard {
    /// Counts one more push query, unless `limit` are running already.
    fn admit(counter: Arc<AtomicU64>, limit: u64) -> Result<Self, ServerError> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|count| ServerError::TooManyPushQueries { count, limit })?;
        Ok(ActiveGuard(counter))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn kind_word(k: brook_sql::SourceKind) -> &'static str {
    match k {
        brook_sql::SourceKind::Stream => "stream",
        brook_sql::SourceKind::Table => "table",
    }
}

/// What the REST layer's streaming endpoints (PRINT, `/inserts-stream`) need beyond
/// statements.
impl Engine {
    /// Turns true when the server shuts down, so a long-running response can end.
    pub fn stopping_signal(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Runs one `INSERT INTO … VALUES` and waits until Kafka has its records. Unlike
    /// [`Engine::execute_statement`] it does not ask Kafka for topic metadata first: an
    /// insert creates no topic, and `/inserts-stream` runs one statement per row.
    pub async fn insert_values(
        &self,
        ps: &brook_sql::ParsedStatement,
    ) -> Result<usize, StatementError> {
        let not_insert = || PlanError::Invalid("Expected an INSERT INTO … VALUES statement".into());
        if !matches!(ps.statement, brook_sql::Statement::InsertValues { .. }) {
            return Err(not_insert().into());
        }
        // Whatever fails before a record is written is the row's fault (a value the column
        // cannot hold), not the server's.
        let action = self
            .session
            .lock()
            .await
            .plan(ps, &|_: &str| None)
            .map_err(|e| match e {
                StatementError::Runtime(r) => PlanError::Invalid(r.to_string()).into(),
                other => other,
            })?;
        let Action::Insert { source, rows } = action else {
            return Err(not_insert().into());
        };
        let n = rows.len();
        self.write_rows(&source.topic, rows).await?;
        Ok(n)
    }
}

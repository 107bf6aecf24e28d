//! Statement execution over Kafka: the catalog session plans each statement and the engine
//! carries out its action — creating topics, starting and stopping persistent queries,
//! writing inserted rows — with the same pipelines the deterministic driver runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brook_planner::PlanError;
use brook_runtime::kafka::{create_topic, producer_config, topic_partitions};
use brook_runtime::pipeline::Pipeline;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::session::{Action, Session, StatementError};
use brook_runtime::task::{self, TaskConfig, TaskStats};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::ServerError;

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
    stop: watch::Sender<bool>,
    stats: watch::Receiver<TaskStats>,
    handle: JoinHandle<()>,
}

/// A running query as listed by SHOW QUERIES.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub id: String,
    pub sink: String,
    pub running: bool,
    pub stats: TaskStats,
}

pub struct Engine {
    bootstrap: String,
    session: Mutex<Session>,
    queries: Mutex<BTreeMap<String, RunningQuery>>,
    producer: FutureProducer,
    task_config: TaskConfig,
}

impl Engine {
    pub fn new(bootstrap: &str) -> Result<Arc<Engine>, ServerError> {
        let producer: FutureProducer = producer_config(bootstrap)
            .create()
            .map_err(|e| ServerError::Runtime(e.into()))?;
        Ok(Arc::new(Engine {
            bootstrap: bootstrap.to_string(),
            session: Mutex::new(Session::new()),
            queries: Mutex::new(BTreeMap::new()),
            producer,
            task_config: TaskConfig::new(bootstrap),
        }))
    }

    /// Runs every statement of `sql` in order, stopping at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Executed>, StatementError> {
        let mut out = Vec::new();
        for ps in brook_sql::parse(sql)? {
            out.push(self.execute_one(&ps).await?);
        }
        Ok(out)
    }

    async fn execute_one(
        &self,
        ps: &brook_sql::ParsedStatement,
    ) -> Result<Executed, StatementError> {
        let partitions = topic_partitions(&self.bootstrap, Duration::from_secs(30)).await?;
        let mut session = self.session.lock().await;
        let before = session.catalog.clone();
        let action = session.plan(ps, &|t: &str| partitions.get(t).copied())?;
        let result = self.carry_out(&mut session, action, &partitions).await;
        if result.is_err() {
            // The statement did not take effect: neither may its catalog change.
            session.catalog = before;
        }
        result
    }

    async fn carry_out(
        &self,
        session: &mut Session,
        action: Action,
        partitions: &std::collections::HashMap<String, i32>,
    ) -> Result<Executed, StatementError> {
        match action {
            Action::None => Ok(Executed::Done),
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
                    create_topic(&self.bootstrap, &source.topic, p, 1).await?;
                }
                Ok(Executed::SourceCreated(source.name))
            }
            Action::StartQuery(spec) => {
                if let Some(p) = spec.sink_partitions {
                    if !partitions.contains_key(&spec.sink.topic) {
                        create_topic(&self.bootstrap, &spec.sink.topic, p, 1).await?;
                    }
                }
                let id = spec.id.clone();
                let sink = spec.sink.name.clone();
                let pipeline = Pipeline::new(*spec, &session.catalog)?;
                self.start(pipeline).await;
                Ok(Executed::QueryStarted { id, sink })
            }
            Action::Insert { source, rows } => {
                let n = rows.len();
                for (key, value, ts) in rows {
                    let mut rec: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(&source.topic).timestamp(ts);
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
                Ok(Executed::Inserted(n))
            }
            Action::Drop(name) => {
                let ids: Vec<String> = self
                    .queries
                    .lock()
                    .await
                    .iter()
                    .filter(|(_, q)| q.sink == name)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    self.terminate(&id).await;
                }
                Ok(Executed::Dropped(name))
            }
        }
    }

    async fn start(&self, pipeline: Pipeline) {
        let id = pipeline.id.clone();
        let sink = pipeline.sink.name.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stats_tx, stats_rx) = watch::channel(TaskStats::default());
        let config = self.task_config.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = task::run(pipeline, config, stop_rx, stats_tx).await {
                error!(query = %task_id, error = %e, "query stopped");
            }
        });
        info!(query = %id, sink = %sink, "query started");
        self.queries.lock().await.insert(
            id,
            RunningQuery {
                sink,
                stop: stop_tx,
                stats: stats_rx,
                handle,
            },
        );
    }

    /// Stops a query and waits for its last commit.
    pub async fn terminate(&self, id: &str) -> bool {
        let Some(q) = self.queries.lock().await.remove(id) else {
            return false;
        };
        let _ = q.stop.send(true);
        let _ = q.handle.await;
        info!(query = %id, "query terminated");
        true
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
                stats: q.stats.borrow().clone(),
            })
            .collect()
    }

    /// Stops every query (graceful shutdown: each commits what it has written).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.queries.lock().await.keys().cloned().collect();
        for id in ids {
            self.terminate(&id).await;
        }
    }
}

fn kind_word(k: brook_sql::SourceKind) -> &'static str {
    match k {
        brook_sql::SourceKind::Stream => "stream",
        brook_sql::SourceKind::Table => "table",
    }
}

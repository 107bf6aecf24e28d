//! ksqlDB's REST API: `/ksql` for statements, `/query-stream` and `/query` for push queries,
//! `/info` and `/healthcheck`. Response bodies follow ksqlDB's wire shapes (`@type`
//! entities, `error_code`s) so that ksqlDB's clients and tools can talk to Brook.

// The gRPC API: the second transport of the same `Api`, on the same port.
#[path = "grpc.rs"]
mod grpc;
pub(crate) mod guard;
pub(crate) mod http;
mod inserts;
pub(crate) mod limits;
mod metrics;
mod pause;
mod print;
mod status;
mod transient;
mod values;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use brook_planner::catalog::{Catalog, Source};
use brook_planner::schema::{Namespace, SchemaType};
use brook_runtime::session::StatementError;
use brook_server::bodies::{self, KsqlRequest};
use brook_server::engine::{Engine, Executed, OffsetReset, PushQuery, QueryInfo};
use brook_server::ServerError;
use brook_sql::{ListKind, ParsedStatement, QueryTarget, SourceKind, Statement, Type};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use limits::{Limits, Slots};

/// ksqlDB's error codes (`io.confluent.ksql.rest.Errors`).
const BAD_REQUEST: u32 = 40000;
const BAD_STATEMENT: u32 = 40001;
const QUERY_ENDPOINT: u32 = 40002;
/// `ksql.max.push.queries` reached.
const MAX_PUSH_QUERIES_EXCEEDED: u32 = 40003;
/// A request body not sent in time (`brook.rest.request.body.timeout.ms`).
const REQUEST_TIMEOUT: u32 = 40800;
/// A request body or row over its size limit.
const PAYLOAD_TOO_LARGE: u32 = 41300;
/// A concurrency limit reached (ksqlDB's `ERROR_CODE_TOO_MANY_REQUESTS`).
const TOO_MANY_REQUESTS: u32 = 42900;
const SERVER_ERROR: u32 = 50000;

const KSQL_V1_JSON: &str = "application/vnd.ksql.v1+json";
const DELIMITED: &str = "application/vnd.ksqlapi.delimited.v1";
const JSON: &str = "application/json";

/// What `/info` reports.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub kafka_cluster_id: String,
    pub service_id: String,
}

#[derive(Clone)]
struct Api {
    engine: Arc<Engine>,
    info: Arc<ServerInfo>,
    bootstrap: brook_runtime::kafka::Kafka,
    /// ksqlDB numbers the commands it runs; clients may wait on a number.
    command_seq: Arc<AtomicI64>,
    /// What `/status` reports.
    statuses: Arc<status::CommandStatuses>,
    /// The `/query-stream` queries `/close-query` can end.
    transient: Arc<transient::TransientQueries>,
    limits: Arc<Limits>,
    /// Pull queries running (`ksql.query.pull.max.concurrent.requests`).
    pull_slots: Slots,
    /// PRINTs running (`brook.query.print.max.concurrent`).
    print_slots: Slots,
    /// Held while a statement that starts a persistent query is checked against
    /// `ksql.query.persistent.active.limit` and run, so two cannot both take the last place.
    persistent_start: Arc<tokio::sync::Mutex<()>>,
    health: Arc<HealthCache>,
    connections: Arc<http::ConnectionStats>,
}

/// `/healthcheck`'s last answer about Kafka, reused for `ksql.healthcheck.interval.ms`.
#[derive(Default)]
struct HealthCache {
    /// Held while Kafka is asked, so a burst of checks waits for one answer.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Times Kafka was asked (`/metrics`).
    probes: std::sync::atomic::AtomicU64,
}

pub fn router(
    engine: Arc<Engine>,
    info: ServerInfo,
    bootstrap: &brook_runtime::kafka::Kafka,
    limits: Limits,
    connections: Arc<http::ConnectionStats>,
    guard: guard::Guard,
) -> Router {
    let request_max = limits.request_max_bytes;
    let api = Api {
        engine,
        info: Arc::new(info),
        bootstrap: bootstrap.clone(),
        command_seq: Arc::new(AtomicI64::new(0)),
        statuses: Arc::default(),
        transient: Arc::default(),
        pull_slots: Slots::new(limits.pull_max_concurrent),
        print_slots: Slots::new(limits.print_max_concurrent),
        limits: Arc::new(limits),
        persistent_start: Arc::default(),
        health: Arc::default(),
        connections,
    };
    Router::new()
        .route("/ksql", post(ksql))
        .route("/query-stream", post(query_stream))
        .route("/query", post(query))
        .route("/info", get(server_info))
        .route("/healthcheck", get(healthcheck))
        .route("/metrics", get(metrics::metrics))
        .route("/ws/query", get(ws::ws_query))
        .route("/close-query", post(transient::close_query))
        .route("/inserts-stream", post(inserts::inserts_stream))
        .route("/status", get(status::statuses))
        .route("/status/{*command_id}", get(status::status))
        .route("/is_valid_property/{name}", get(status::is_valid_property))
        .with_state(api.clone())
        .merge(grpc::routes(api))
        // Confluent Schema Registry's API over the process's registry (`/subjects`,
        // `/schemas`, `/config`), so clients need no registry of their own.
        .merge(brook_server::schema_registry::routes(
            brook_runtime::format::registry::default_registry(),
        ))
        // The bound of every body read whole through axum's extractors (the Schema
        // Registry's); the REST handlers read theirs with `read_body`, under the same bound.
        .layer(DefaultBodyLimit::max(request_max))
        // Outermost: credentials and cross-site checks come before any handler reads a
        // byte of the body (rest/guard.rs).
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
}

/// A request body read whole: at most `brook.rest.request.max.bytes`, sent within
/// `brook.rest.request.body.timeout.ms` (a client that trickles it is answered 408).
async fn read_body(api: &Api, body: Body) -> Result<Bytes, Response> {
    let max = api.limits.request_max_bytes;
    let wait = api.limits.request_body_timeout;
    match tokio::time::timeout(wait, collect(body, max)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyRead::TooLarge)) => Err(generic_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            &format!(
                "Request body too large: at most {max} bytes are read ({})",
                limits::REQUEST_MAX_BYTES
            ),
        )),
        Ok(Err(BodyRead::Failed(e))) => Err(generic_error(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            &format!("Cannot read the request body: {e}"),
        )),
        Err(_) => Err(generic_error(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
            &format!(
                "Request body not received within {} ms ({})",
                wait.as_millis(),
                limits::REQUEST_BODY_TIMEOUT_MS
            ),
        )),
    }
}

enum BodyRead {
    TooLarge,
    Failed(axum::Error),
}

/// The body's bytes, refused as soon as they pass `max` (nothing beyond is read).
async fn collect(body: Body, max: usize) -> Result<Bytes, BodyRead> {
    let mut chunks = body.into_data_stream();
    let mut out: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyRead::Failed)?;
        if out.len() + chunk.len() > max {
            drain(chunks, out.len() + chunk.len()).await;
            return Err(BodyRead::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// At most this much of a refused body is read and thrown away (and for at most
/// [`DRAIN_WAIT`]) before the refusal is sent.
const DRAIN_MAX: usize = 16 << 20;
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Reads and discards what is left of a refused body, within bounds. Closing a connection
/// whose request has unread bytes makes the kernel reset it, and a client still sending
/// then loses the answer (it sees a reset, not the 413); a body far past the bound is cut
/// off anyway.
async fn drain(
    mut chunks: impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
    mut seen: usize,
) {
    let _ = tokio::time::timeout(DRAIN_WAIT, async {
        while seen < DRAIN_MAX {
            match chunks.next().await {
                Some(Ok(chunk)) => seen += chunk.len(),
                _ => break,
            }
        }
    })
    .await;
}

/// The Kafka cluster id, for `/info` (empty when the cluster does not say).
pub async fn kafka_cluster_id(bootstrap: &brook_runtime::kafka::Kafka) -> String {
    use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
    let cfg = brook_runtime::kafka::client_config(bootstrap);
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = cfg.create().ok()?;
        c.client().fetch_cluster_id(Duration::from_secs(10))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// A refused statement: ksqlDB's error code and message.
struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: BAD_STATEMENT,
            message: message.into(),
        }
    }

    /// A concurrency limit reached: 429, ksqlDB's rate-limit answer.
    fn too_many(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: TOO_MANY_REQUESTS,
            message: message.into(),
        }
    }

    /// `KsqlStatementErrorMessage`: the statement and what ran before it (a limit reached
    /// is not the statement's fault: ksqlDB answers it with a plain error message).
    fn statement(self, text: &str, entities: Vec<Value>) -> Response {
        if self.code == TOO_MANY_REQUESTS {
            return generic_error(self.status, self.code, &self.message);
        }
        json_response(
            self.status,
            JSON,
            json!({
                "@type": "statement_error",
                "error_code": self.code,
                "message": self.message,
                "statementText": text,
                "entities": entities,
            }),
        )
    }
}

impl From<StatementError> for Refusal {
    fn from(e: StatementError) -> Self {
        match e {
            StatementError::Parse(_) | StatementError::Plan(_) => Refusal::bad(e.to_string()),
            StatementError::Runtime(_) => Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: SERVER_ERROR,
                message: e.to_string(),
            },
        }
    }
}

impl From<ServerError> for Refusal {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Statement(e) => Refusal::from(e),
            ServerError::TooManyPushQueries { .. } => Refusal {
                status: StatusCode::BAD_REQUEST,
                code: MAX_PUSH_QUERIES_EXCEEDED,
                message: e.to_string(),
            },
            other => Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: SERVER_ERROR,
                message: other.to_string(),
            },
        }
    }
}

fn generic_error(status: StatusCode, code: u32, message: &str) -> Response {
    json_response(
        status,
        JSON,
        json!({"@type": "generic_error", "error_code": code, "message": message}),
    )
}

fn json_response(status: StatusCode, content_type: &'static str, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.to_string(),
    )
        .into_response()
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(media))
}

/// ksqlDB answers in the versioned media type when the client asks for it.
fn ksql_content_type(headers: &HeaderMap) -> &'static str {
    if accepts(headers, KSQL_V1_JSON) {
        KSQL_V1_JSON
    } else {
        JSON
    }
}

/// A `/ksql` or `/query` body, or the answer refusing it.
async fn ksql_body(api: &Api, body: Body) -> Result<KsqlRequest, Response> {
    let bytes = read_body(api, body).await?;
    bodies::ksql_request(&bytes)
        .map_err(|e| generic_error(StatusCode::BAD_REQUEST, BAD_REQUEST, &e.to_string()))
}

async fn ksql(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let req = match ksql_body(&api, body).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    // Properties apply per request in ksqlDB's REST API; the statements run here read
    // none of them yet, so they are accepted and not applied.
    let _ = &req.streams_properties;
    let statements = match brook_sql::parse(&req.ksql) {
        Ok(s) => s,
        Err(e) => return Refusal::bad(e.to_string()).statement(&req.ksql, Vec::new()),
    };
    let mut entities = Vec::new();
    for ps in &statements {
        let text = format!("{};", ps.text);
        match api.statement(ps, &text).await {
            Ok(Some(entity)) => entities.push(entity),
            Ok(None) => {}
            Err(refusal) => return refusal.statement(&text, entities),
        }
    }
    json_response(
        StatusCode::OK,
        ksql_content_type(&headers),
        Value::Array(entities),
    )
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

fn kind_lower(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "stream",
        SourceKind::Table => "table",
    }
}

impl Api {
    fn current_status(
        &self,
        text: &str,
        command_id: String,
        message: String,
        query_id: Option<&str>,
    ) -> Value {
        let seq = self.command_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.statuses.record(
            &command_id,
            &json!({"status": "SUCCESS", "message": message, "queryId": query_id}),
        );
        json!({
            "@type": "currentStatus",
            "statementText": text,
            "commandId": command_id,
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
            "commandSequenceNumber": seq,
            "warnings": [],
        })
    }

    /// One statement of a `/ksql` request: its entity, none (INSERT VALUES, SET), or why
    /// it was refused.
    async fn statement(&self, ps: &ParsedStatement, text: &str) -> Result<Option<Value>, Refusal> {
        match &ps.statement {
            Statement::Query(_) | Statement::Print { .. } => Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: QUERY_ENDPOINT,
                message: "The following statement types should be issued to the websocket endpoint '/query':\n\t* PRINT\n\t* SELECT".into(),
            }),
            Statement::List { kind, extended } => self.list(*kind, *extended, text).await.map(Some),
            Statement::Describe { name, extended } => {
                let catalog = self.engine.catalog().await;
                let source = catalog.sources.get(&name.value).ok_or_else(|| {
                    Refusal::bad(format!(
                        "Could not find STREAM/TABLE '{}' in the Metastore",
                        name.value
                    ))
                })?;
                let description = self.describe(source, *extended).await;
                Ok(Some(json!({
                    "@type": "sourceDescription",
                    "statementText": text,
                    "sourceDescription": description,
                    "warnings": [],
                })))
            }
            Statement::Terminate(target) => self.terminate(target, text).await.map(Some),
            Statement::Pause(t) => self.pause_resume(t, true, text).await.map(Some),
            Statement::Resume(t) => self.pause_resume(t, false, text).await.map(Some),
            Statement::Set { .. } | Statement::Unset { .. } => {
                self.engine.execute_statement(ps).await?;
                Ok(None)
            }
            _ => self.execute(ps, text).await,
        }
    }

    async fn execute(&self, ps: &ParsedStatement, text: &str) -> Result<Option<Value>, Refusal> {
        let _starting = if self.starts_persistent_query(&ps.statement).await {
            let guard = self.persistent_start.lock().await;
            self.check_persistent_capacity().await?;
            Some(guard)
        } else {
            None
        };
        // DROP reports the topic of what it dropped, which is gone from the catalog after.
        let before = match &ps.statement {
            Statement::Drop { name, .. } => self
                .engine
                .catalog()
                .await
                .sources
                .get(&name.value)
                .cloned(),
            _ => None,
        };
        let done = self.engine.execute_statement(ps).await?;
        let entity = match (&ps.statement, done) {
            (_, Executed::Inserted(_)) => return Ok(None),
            (Statement::CreateSource { kind, .. }, Executed::SourceCreated(name)) => self
                .current_status(
                    text,
                    format!("{}/`{name}`/create", kind_lower(*kind)),
                    format!("{} created", capitalized(*kind)),
                    None,
                ),
            (st, Executed::QueryStarted { id, sink }) => {
                let kind = match st {
                    Statement::CreateAsSelect { kind, .. } => *kind,
                    _ => SourceKind::Stream,
                };
                self.current_status(
                    text,
                    format!("{}/`{sink}`/create", kind_lower(kind)),
                    format!("Created query with ID {id}"),
                    Some(&id),
                )
            }
            (Statement::Drop { kind, .. }, Executed::Dropped(name)) => {
                let message = match &before {
                    Some(s) => format!("Source `{name}` (topic: {}) was dropped.", s.topic),
                    None => format!("Source `{name}` does not exist."),
                };
                self.current_status(
                    text,
                    format!("{}/`{name}`/drop", kind_lower(*kind)),
                    message,
                    None,
                )
            }
            (Statement::CreateType { name, ty, .. }, _) => self.current_status(
                text,
                format!("type/`{}`/create", name.value),
                format!(
                    "Registered custom type with name '{}' and SQL type {ty}",
                    name.value
                ),
                None,
            ),
            (Statement::DropType { name, .. }, _) => self.current_status(
                text,
                format!("type/`{}`/drop", name.value),
                format!("Dropped type '{}'", name.value),
                None,
            ),
            (Statement::CreateSource { kind, name, .. }, _) => self.current_status(
                text,
                format!("{}/`{}`/create", kind_lower(*kind), name.value),
                format!(
                    "Cannot add {} `{}`: A {} with the same name already exists.",
                    kind_lower(*kind),
                    name.value,
                    kind_lower(*kind)
                ),
                None,
            ),
            (_, _) => self.current_status(
                text,
                "statement/execute".to_string(),
                "Statement executed".to_string(),
                None,
            ),
        };
        Ok(Some(entity))
    }

    /// Whether `statement` would start one more persistent query (a replaced one, or a
    /// source that exists with IF NOT EXISTS, starts none).
    async fn starts_persistent_query(&self, statement: &Statement) -> bool {
        let (name, or_replace, if_not_exists) = match statement {
            Statement::InsertInto { .. } => return true,
            Statement::CreateAsSelect {
                name,
                or_replace,
                if_not_exists,
                ..
            } => (name, *or_replace, *if_not_exists),
            Statement::CreateSource {
                source: true,
                kind: SourceKind::Table,
                name,
                or_replace,
                if_not_exists,
                ..
            } => (name, *or_replace, *if_not_exists),
            _ => return false,
        };
        if !(or_replace || if_not_exists) {
            return true;
        }
        let catalog = self.engine.catalog().await;
        !catalog.sources.contains_key(&name.value)
    }

    /// ksqlDB's `ksql.query.persistent.active.limit` (its message, counting the query the
    /// statement would start, as ksqlDB counts it in its sandbox).
    async fn check_persistent_capacity(&self) -> Result<(), Refusal> {
        let limit = self.limits.persistent_active_limit;
        let count = self.engine.queries().await.len() + 1;
        if count <= limit {
            return Ok(());
        }
        Err(Refusal::bad(format!(
            "Not executing statement(s) as it would cause the number of active, persistent \
             queries to exceed the configured limit. Use the TERMINATE command to terminate \
             existing queries, or increase the '{}' setting via the \
             'ksql-server.properties' file. Current persistent query count: {count}. \
             Configured limit: {limit}.",
            limits::PERSISTENT_ACTIVE_LIMIT
        )))
    }

    async fn list(&self, kind: ListKind, extended: bool, text: &str) -> Result<Value, Refusal> {
        match kind {
            ListKind::Streams | ListKind::Tables => {
                let want = if kind == ListKind::Streams {
                    SourceKind::Stream
                } else {
                    SourceKind::Table
                };
                let catalog = self.engine.catalog().await;
                let sources = catalog.sources.values().filter(|s| s.kind == want);
                if extended {
                    let mut descriptions = Vec::new();
                    for s in sources {
                        descriptions.push(self.describe(s, true).await);
                    }
                    return Ok(json!({
                        "@type": "source_descriptions",
                        "statementText": text,
                        "sourceDescriptions": descriptions,
                        "warnings": [],
                    }));
                }
                let items: Vec<Value> = sources
                    .map(|s| {
                        json!({
                            "type": kind_name(s.kind),
                            "name": s.name,
                            "topic": s.topic,
                            "keyFormat": s.key_format.kind.name(),
                            "valueFormat": s.value_format.kind.name(),
                            "isWindowed": s.window.is_some(),
                        })
                    })
                    .collect();
                let field = if want == SourceKind::Stream {
                    "streams"
                } else {
                    "tables"
                };
                let mut entity = json!({"@type": field, "statementText": text, "warnings": []});
                entity[field] = Value::Array(items);
                Ok(entity)
            }
            ListKind::Queries => {
                let catalog = self.engine.catalog().await;
                let mut queries = Vec::new();
                for q in self.engine.queries().await {
                    queries.push(self.running_query(&q, &catalog).await);
                }
                Ok(json!({
                    "@type": "queries",
                    "statementText": text,
                    "queries": queries,
                    "warnings": [],
                }))
            }
            ListKind::Topics { all } => {
                let topics = self
                    .engine
                    .topics()
                    .await
                    .map_err(|e| Refusal::from(StatementError::Runtime(e)))?;
                let mut names: Vec<(&String, &i32)> = topics
                    .iter()
                    // Internal topics (`__consumer_offsets`, `_brook…`) only with ALL.
                    .filter(|(n, _)| all || !n.starts_with('_'))
                    .collect();
                names.sort();
                let items: Vec<Value> = names
                    .into_iter()
                    .map(|(n, p)| json!({"name": n, "replicaInfo": vec![1; (*p).max(0) as usize]}))
                    .collect();
                Ok(json!({
                    "@type": "kafka_topics",
                    "statementText": text,
                    "topics": items,
                    "warnings": [],
                }))
            }
            ListKind::Types => {
                let catalog = self.engine.catalog().await;
                let types: Map<String, Value> = catalog
                    .types
                    .iter()
                    .map(|(n, t)| (n.clone(), schema_info(t, &catalog)))
                    .collect();
                Ok(json!({
                    "@type": "type_list",
                    "statementText": text,
                    "types": types,
                    "warnings": [],
                }))
            }
            other => Err(Refusal::bad(format!(
                "SHOW {} is not supported yet",
                format!("{other:?}").to_uppercase()
            ))),
        }
    }

    async fn running_query(&self, q: &QueryInfo, catalog: &Catalog) -> Value {
        let statement = self.engine.query_statement(&q.id).await.unwrap_or_default();
        let topic = catalog
            .sources
            .get(&q.sink)
            .map(|s| s.topic.clone())
            .unwrap_or_default();
        let state = match (q.running && q.error.is_none(), q.paused) {
            (false, _) => "ERROR",
            (true, true) => "PAUSED",
            (true, false) => "RUNNING",
        };
        let mut query = json!({
            "queryString": statement,
            "sinks": [q.sink],
            "sinkKafkaTopics": [topic],
            "id": q.id,
            "statusCount": {state: 1},
            "queryType": "PERSISTENT",
            "state": state,
        });
        // Why a query stopped, in the shape of ksqlDB's `QueryError` (its EXPLAIN's
        // `queryErrors`); only a failed query has the field.
        if let Some(e) = &q.error {
            query["queryErrors"] = json!([{
                "timestamp": e.timestamp,
                "errorMessage": e.message,
                "type": e.kind.name(),
            }]);
        }
        query
    }

    async fn describe(&self, s: &Source, extended: bool) -> Value {
        let catalog = self.engine.catalog().await;
        let mut writers = Vec::new();
        for q in self.engine.queries().await {
            if q.sink == s.name {
                writers.push(self.running_query(&q, &catalog).await);
            }
        }
        let partitions = if extended {
            self.engine
                .topics()
                .await
                .ok()
                .and_then(|t| t.get(&s.topic).copied())
                .unwrap_or(0)
        } else {
            0
        };
        let fields: Vec<Value> = s
            .schema
            .columns
            .iter()
            .map(|c| {
                let mut f = json!({"name": c.name, "schema": schema_info(&c.ty, &catalog)});
                match &c.namespace {
                    Namespace::Key => f["type"] = json!("KEY"),
                    Namespace::Headers | Namespace::Header(_) => f["type"] = json!("HEADER"),
                    Namespace::Value => {}
                }
                if let Namespace::Header(k) = &c.namespace {
                    f["headerKey"] = json!(k);
                }
                f
            })
            .collect();
        let window = s.window.map(|w| match w {
            brook_planner::catalog::WindowType::Tumbling { .. } => "TUMBLING",
            brook_planner::catalog::WindowType::Hopping { .. } => "HOPPING",
            brook_planner::catalog::WindowType::Session => "SESSION",
        });
        json!({
            "name": s.name,
            "windowType": window,
            "readQueries": [],
            "writeQueries": writers,
            "fields": fields,
            "type": kind_name(s.kind),
            "timestamp": s.timestamp.as_ref().map(|(c, _)| c.clone()).unwrap_or_default(),
            "statistics": "",
            "errorStats": "",
            "extended": extended,
            "keyFormat": s.key_format.kind.name(),
            "valueFormat": s.value_format.kind.name(),
            "topic": s.topic,
            "partitions": partitions,
            "replication": if extended { 1 } else { 0 },
            "statement": s.sql,
            "queryOffsetSummaries": [],
            "sourceConstraints": [],
            "clusterStatistics": [],
            "clusterErrorStats": [],
        })
    }

    async fn terminate(&self, target: &QueryTarget, text: &str) -> Result<Value, Refusal> {
        match target {
            QueryTarget::All => {
                for q in self.engine.queries().await {
                    self.engine.terminate(&q.id).await;
                }
                Ok(self.current_status(
                    text,
                    "terminate/ALL/execute".into(),
                    "Query terminated.".into(),
                    None,
                ))
            }
            QueryTarget::Query(id) => {
                // Ids are printed upper-case; a quoted id keeps its case, a bare one was
                // upper-cased by the parser, so both spellings are tried.
                let found = self.engine.terminate(&id.value).await
                    || self.engine.terminate(&id.value.to_uppercase()).await;
                if !found {
                    return Err(Refusal::bad(format!("Unknown queryId: {}", id.value)));
                }
                Ok(self.current_status(
                    text,
                    format!("terminate/{}/execute", id.value),
                    "Query terminated.".into(),
                    Some(&id.value),
                ))
            }
        }
    }

    /// Parses and starts a push query; refusals are answered as ksqlDB does.
    async fn start_push(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<PushQuery, Response> {
        self.start_select(sql, properties)
            .await
            .map_err(|(mut refusal, text)| {
                // ksqlDB's `/query` and `/ws/query` refuse a push query beyond the limit
                // as a bad statement (only `/query-stream` has a code of its own).
                if refusal.code == MAX_PUSH_QUERIES_EXCEEDED {
                    refusal.code = BAD_STATEMENT;
                }
                refusal.statement(&text, vec![])
            })
    }

    /// `start_push` for both transports: the refusal comes with the statement it refuses.
    async fn start_select(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<PushQuery, (Refusal, String)> {
        let statements =
            brook_sql::parse(sql).map_err(|e| (Refusal::bad(e.to_string()), sql.to_string()))?;
        let [ps] = statements.as_slice() else {
            let refusal = Refusal::bad("Expected exactly one SELECT statement");
            return Err((refusal, sql.to_string()));
        };
        let text = format!("{};", ps.text);
        let Statement::Query(q) = &ps.statement else {
            return Err((
                Refusal::bad(
                    "The /query endpoints run only SELECT statements; use /ksql for the others",
                ),
                text,
            ));
        };
        if q.emit.is_none() {
            let Some(slot) = self.pull_slots.try_take() else {
                return Err((self.pull_limit_reached(), text));
            };
            return self
                .engine
                .pull_query_with(q, properties)
                .await
                .map(|pq| holding(pq, slot))
                .map_err(|e| (Refusal::from(e), text));
        }
        if q.emit != Some(brook_sql::Emit::Changes) {
            let refusal = Refusal::bad("EMIT FINAL is not supported yet for push queries");
            return Err((refusal, text));
        }
        let reset = match properties
            .get("auto.offset.reset")
            .or_else(|| properties.get("ksql.streams.auto.offset.reset"))
            .and_then(Value::as_str)
        {
            Some(v) if v.eq_ignore_ascii_case("earliest") => OffsetReset::Earliest,
            _ => OffsetReset::Latest,
        };
        let push_v2 = properties
            .get(brook_server::engine::PUSH_V2_ENABLED)
            .and_then(|v| match v {
                Value::Bool(b) => Some(*b),
                Value::String(s) => s.parse().ok(),
                _ => None,
            });
        self.engine
            .push_query_with(q, reset, push_v2)
            .await
            .map_err(|e| (Refusal::from(e), text))
    }
}

impl Api {
    /// ksqlDB's `ConcurrencyLimiter` refusal.
    fn pull_limit_reached(&self) -> Refusal {
        Refusal::too_many(format!(
            "Host is at concurrency limit for pull queries. Currently set to {} maximum \
             concurrent operations.",
            self.pull_slots.limit()
        ))
    }
}

/// `pq` with `slot` held until its rows are all taken, or its reader goes away.
fn holding(mut pq: PushQuery, slot: OwnedSemaphorePermit) -> PushQuery {
    let (tx, rx) = mpsc::channel(1);
    let mut rows = std::mem::replace(&mut pq.rows, rx);
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            let item = tokio::select! {
                _ = tx.closed() => break,
                item = rows.recv() => item,
            };
            let Some(item) = item else { break };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    pq
}

fn capitalized(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "Stream",
        SourceKind::Table => "Table",
    }
}

/// ksqlDB's `SchemaInfo`: a column type as DESCRIBE reports it.
fn schema_info(ty: &Type, catalog: &Catalog) -> Value {
    let resolved = catalog.resolve_type(ty).unwrap_or_else(|_| ty.clone());
    let base = |t: &str| json!({"type": t, "fields": null, "memberSchema": null});
    match &resolved {
        Type::Boolean => base("BOOLEAN"),
        Type::Int => base("INTEGER"),
        Type::Bigint => base("BIGINT"),
        Type::Double => base("DOUBLE"),
        Type::String => base("STRING"),
        Type::Bytes => base("BYTES"),
        Type::Time => base("TIME"),
        Type::Date => base("DATE"),
        Type::Timestamp => base("TIMESTAMP"),
        Type::Decimal { precision, scale } => json!({
            "type": "DECIMAL",
            "fields": null,
            "memberSchema": null,
            "parameters": {"precision": precision, "scale": scale},
        }),
        Type::Array(item) => json!({
            "type": "ARRAY",
            "fields": null,
            "memberSchema": schema_info(item, catalog),
        }),
        Type::Map(_, v) => json!({
            "type": "MAP",
            "fields": null,
            "memberSchema": schema_info(v, catalog),
        }),
        Type::Struct(fs) => json!({
            "type": "STRUCT",
            "fields": fs
                .iter()
                .map(|f| json!({"name": f.name.value, "schema": schema_info(&f.ty, catalog)}))
                .collect::<Vec<_>>(),
            "memberSchema": null,
        }),
        Type::Custom(name) => base(&name.value),
    }
}

/// How a push query's rows are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `/query-stream`, delimited: a header object, then one array per line.
    Delimited,
    /// `/query-stream`, `application/json`: one JSON array of the header and the rows.
    JsonArray,
    /// `/query`: a JSON array of `{"header"}`, `{"row"}` … `{"finalMessage"}` objects.
    Legacy,
    /// `/query` for a push query, as ksqlDB writes it: every element is followed by
    /// `,\n` as soon as it is written, so a line-reading client sees each row at once.
    LegacyLines,
}

async fn query_stream(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&api, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let req = match bodies::stream_request(&body) {
        Ok(r) => r,
        Err(e) => return generic_error(StatusCode::BAD_REQUEST, BAD_REQUEST, &e.to_string()),
    };
    let print = print::Endpoint::QueryStream;
    if let Some(r) = print::maybe_print(&api, &req.sql, &req.properties, &headers, print).await {
        return r;
    }
    // Delimited is the default; JSON only when asked for (and delimited is not).
    let framing = if accepts(&headers, JSON) && !accepts(&headers, DELIMITED) {
        Framing::JsonArray
    } else {
        Framing::Delimited
    };
    match api.start_select(&req.sql, &req.properties).await {
        Ok(pq) => stream_response(api.transient.track(pq), framing, None),
        // ksqlDB's HTTP/2 API answers the limit with a generic error of its own.
        Err((refusal, _)) if refusal.code == MAX_PUSH_QUERIES_EXCEEDED => generic_error(
            refusal.status,
            refusal.code,
            "Maximum number of push queries exceeded",
        ),
        Err((refusal, text)) => refusal.statement(&text, vec![]),
    }
}

async fn query(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let req = match ksql_body(&api, body).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let (sql, props) = (&req.ksql, &req.streams_properties);
    if let Some(r) = print::maybe_print(&api, sql, props, &headers, print::Endpoint::Query).await {
        return r;
    }
    match api.start_push(&req.ksql, &req.streams_properties).await {
        Ok(pq) => stream_response(pq, Framing::Legacy, Some(ksql_content_type(&headers))),
        Err(r) => r,
    }
}

/// The streamed body: the header at once, then each batch of rows as it arrives. Dropping
/// the body (the client went away) drops the receiver, which ends the query.
fn stream_response(
    pq: PushQuery,
    framing: Framing,
    content_type: Option<&'static str>,
) -> Response {
    let names: Vec<&str> = pq.schema.columns.iter().map(|c| c.name.as_str()).collect();
    let types: Vec<String> = pq
        .schema
        .columns
        .iter()
        .map(|c| SchemaType(&c.ty).to_string())
        .collect();
    let head = match framing {
        Framing::Delimited => format!(
            "{}\n",
            json!({"queryId": pq.id, "columnNames": names, "columnTypes": types})
        ),
        Framing::JsonArray => format!(
            "[{}",
            json!({"queryId": pq.id, "columnNames": names, "columnTypes": types})
        ),
        // ksqlDB ends each line of a push query's `/query` response as it writes it
        // (`{row},\n`), and clients read it line by line; a pull query's rows come at once
        // as one JSON array.
        Framing::Legacy if pq.pull => format!(
            "[{}",
            json!({"header": {"queryId": pq.id, "schema": pq.schema.to_string()}})
        ),
        Framing::Legacy | Framing::LegacyLines => format!(
            "[{},\n",
            json!({"header": {"queryId": pq.id, "schema": pq.schema.to_string()}})
        ),
    };
    let framing = match framing {
        Framing::Legacy if !pq.pull => Framing::LegacyLines,
        other => other,
    };
    let content_type = content_type.unwrap_or(match framing {
        Framing::Delimited => DELIMITED,
        Framing::JsonArray | Framing::Legacy | Framing::LegacyLines => JSON,
    });
    let state = RowState {
        rows: pq.rows,
        limit: pq.limit,
        completed: pq.completed,
        sent: 0,
        framing,
        done: false,
    };
    let rows = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let chunk = match st.rows.recv().await {
            Some(Ok(batch)) => {
                st.sent += batch.num_rows() as u64;
                values::rows_chunk(&batch, st.framing)
            }
            Some(Err(message)) => {
                st.done = true;
                st.error_tail(&message)
            }
            None => {
                st.done = true;
                st.tail()
            }
        };
        Some((
            Ok::<Bytes, std::convert::Infallible>(Bytes::from(chunk)),
            st,
        ))
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rows);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response()
}

struct RowState {
    rows: tokio::sync::mpsc::Receiver<Result<arrow::array::RecordBatch, String>>,
    limit: Option<u64>,
    /// End with "Query Completed" when no LIMIT cut the rows (a pull query over a stream).
    completed: bool,
    sent: u64,
    framing: Framing,
    done: bool,
}

impl RowState {
    fn tail(&self) -> String {
        let limit_reached = self.limit.is_some_and(|l| self.sent >= l);
        match self.framing {
            Framing::Delimited => String::new(),
            Framing::JsonArray => "]".into(),
            Framing::Legacy if limit_reached => ",\n{\"finalMessage\":\"Limit Reached\"}]\n".into(),
            Framing::Legacy if self.completed => {
                ",\n{\"finalMessage\":\"Query Completed\"}]\n".into()
            }
            Framing::Legacy => "]\n".into(),
            Framing::LegacyLines if limit_reached => {
                "{\"finalMessage\":\"Limit Reached\"}]\n".into()
            }
            Framing::LegacyLines => "]\n".into(),
        }
    }

    fn error_tail(&self, message: &str) -> String {
        let error =
            json!({"@type": "generic_error", "error_code": SERVER_ERROR, "message": message});
        match self.framing {
            Framing::Delimited => format!("{error}\n"),
            Framing::JsonArray => format!(",{error}]"),
            Framing::Legacy => format!(",\n{}]\n", json!({"errorMessage": error})),
            Framing::LegacyLines => format!("{}]\n", json!({"errorMessage": error})),
        }
    }
}

async fn server_info(State(api): State<Api>) -> Response {
    json_response(
        StatusCode::OK,
        JSON,
        json!({"KsqlServerInfo": {
            "version": api.info.version,
            "kafkaClusterId": api.info.kafka_cluster_id,
            "ksqlServiceId": api.info.service_id,
            "serverStatus": "RUNNING",
        }}),
    )
}

/// How long `/healthcheck` waits for Kafka's answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

impl Api {
    /// Whether Kafka answers, asked at most once per `ksql.healthcheck.interval.ms` (as
    /// ksqlDB caches its health checks) on the engine's long-lived client.
    async fn kafka_healthy(&self) -> bool {
        let mut last = self.health.last.lock().await;
        if let Some((at, healthy)) = *last {
            if at.elapsed() < self.limits.healthcheck_interval {
                return healthy;
            }
        }
        self.health.probes.fetch_add(1, Ordering::Relaxed);
        let healthy = self.engine.kafka_reachable(HEALTHCHECK_TIMEOUT).await;
        *last = Some((Instant::now(), healthy));
        healthy
    }
}

async fn healthcheck(State(api): State<Api>) -> Response {
    let kafka = api.kafka_healthy().await;
    let status = if kafka {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let details: HashMap<&str, Value> = [
        ("metastore", json!({"isHealthy": true})),
        ("kafka", json!({"isHealthy": kafka})),
    ]
    .into_iter()
    .collect();
    json_response(
        status,
        JSON,
        json!({"isHealthy": kafka, "details": details}),
    )
}

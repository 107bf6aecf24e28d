//! The gRPC API (`proto/brook/v1/brook.proto`): the REST API's second transport. Each call
//! goes through the same `Api` as its REST counterpart (`/ksql`, `/query-stream`,
//! `/inserts-stream`, `/close-query`), so statements, rows, acks and error messages are the
//! same; only the framing differs. Served on the REST port (gRPC is HTTP/2, routed by its
//! `/brook.v1.Brook/…` paths), with server reflection (v1 and v1alpha).

use std::convert::Infallible;
use std::pin::Pin;

use axum::http;
use axum::Router;
use brook_planner::schema::{Namespace, SchemaType};
use brook_server::proto::brook_server::{Brook, BrookServer};
use brook_server::proto::{
    query_response, CloseQueryRequest, CloseQueryResponse, DescribeRequest, DescribeResponse,
    ExecuteRequest, ExecuteResponse, Field, Finished, InfoRequest, InfoResponse, InsertAck,
    InsertRequest, ListQueriesRequest, ListQueriesResponse, PrintLine, PrintRequest,
    QueryDescription, QueryHeader, QueryRequest, QueryResponse, Row,
};
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::{
    inserts, print, values, Api, Framing, Refusal, MAX_PUSH_QUERIES_EXCEEDED, QUERY_ENDPOINT,
    SERVER_ERROR, TOO_MANY_REQUESTS,
};

/// The binary metadata key of a refusal's ksqlDB `statement_error` entity (JSON).
const ERROR_METADATA: &str = "ksql-error-bin";

/// The gRPC services as routes to merge into the REST router: `Brook` and reflection.
pub(super) fn routes(api: Api) -> Router {
    // A message is bounded as a REST request body is (`brook.rest.request.max.bytes`).
    let max = api.limits.request_max_bytes;
    let brook = BrookServer::new(Grpc { api }).max_decoding_message_size(max);
    let router = add(Router::new(), brook);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(brook_server::proto::FILE_DESCRIPTOR_SET)
    };
    let router = match reflection().build_v1() {
        Ok(svc) => add(router, svc),
        Err(e) => {
            warn!("gRPC reflection (v1) is off: {e}");
            router
        }
    };
    match reflection().build_v1alpha() {
        Ok(svc) => add(router, svc),
        Err(e) => {
            warn!("gRPC reflection (v1alpha) is off: {e}");
            router
        }
    }
}

/// Routes every method of `svc` (`/package.Service/Method`) to it.
fn add<S>(router: Router, svc: S) -> Router
where
    S: tonic::codegen::Service<
            http::Request<axum::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    router.route_service(&format!("/{}/{{*method}}", S::NAME), svc)
}

struct Grpc {
    api: Api,
}

/// What REST answers with an error entity, as a gRPC status with the same message. The
/// entity itself (`statement_error`: ksqlDB's error code, the refused statement and the
/// entities of the statements run before it) rides along as `ksql-error-bin` metadata.
fn refused(refusal: Refusal, statement: &str, entities: Vec<Value>) -> Status {
    let Refusal { code, message, .. } = refusal;
    let entity = json!({
        "@type": "statement_error",
        "error_code": code,
        "message": message,
        "statementText": statement,
        "entities": entities,
    });
    let mut status = if code == SERVER_ERROR {
        Status::internal(message)
    } else if code == QUERY_ENDPOINT {
        Status::invalid_argument(
            "SELECT statements run through the Query call, PRINT through Print",
        )
    } else if code == MAX_PUSH_QUERIES_EXCEEDED || code == TOO_MANY_REQUESTS {
        Status::resource_exhausted(message)
    } else if message.starts_with("Unknown queryId") || message.starts_with("Could not find") {
        Status::not_found(message)
    } else if message.starts_with("The /query endpoints run only SELECT") {
        Status::invalid_argument(
            "Query runs only SELECT statements; PRINT runs through Print, the others through \
             Execute",
        )
    } else {
        Status::invalid_argument(message)
    };
    status.metadata_mut().insert_bin(
        ERROR_METADATA,
        MetadataValue::from_bytes(entity.to_string().as_bytes()),
    );
    status
}

/// gRPC's string properties as the JSON map REST reads them from.
fn string_properties(p: std::collections::HashMap<String, String>) -> Map<String, Value> {
    p.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn texts(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// REST's `RunningQuery` entity, as the proto message.
fn query_description(q: &Value) -> QueryDescription {
    QueryDescription {
        id: text(q, "id"),
        query_string: text(q, "queryString"),
        sinks: texts(q, "sinks"),
        sink_kafka_topics: texts(q, "sinkKafkaTopics"),
        state: text(q, "state"),
        query_type: text(q, "queryType"),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A push or pull query's rows as they arrive.
struct Rows {
    id: String,
    rows: mpsc::Receiver<Result<arrow::array::RecordBatch, String>>,
    limit: Option<u64>,
    sent: u64,
    done: bool,
}

impl Drop for Rows {
    fn drop(&mut self) {
        if !self.done {
            // Dropping the receiver ends the query and releases its consumer.
            info!(query = %self.id, "gRPC client went away; its query ends");
        }
    }
}

fn row_message(values_json: &str) -> Result<QueryResponse, Status> {
    Ok(QueryResponse {
        message: Some(query_response::Message::Row(Row {
            values_json: values_json.to_string(),
        })),
    })
}

#[tonic::async_trait]
impl Brook for Grpc {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let req = request.into_inner();
        // As in `/ksql`, properties are accepted and not applied yet.
        let _ = &req.properties;
        let statements = brook_sql::parse(&req.sql)
            .map_err(|e| refused(Refusal::bad(e.to_string()), &req.sql, Vec::new()))?;
        let mut entities = Vec::new();
        for ps in &statements {
            let text = format!("{};", ps.text);
            match self.api.statement(ps, &text).await {
                Ok(Some(entity)) => entities.push(entity),
                Ok(None) => {}
                Err(refusal) => return Err(refused(refusal, &text, entities)),
            }
        }
        Ok(Response::new(ExecuteResponse {
            entities_json: entities.iter().map(Value::to_string).collect(),
        }))
    }

    type QueryStream = BoxStream<QueryResponse>;

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let req = request.into_inner();
        let properties = string_properties(req.properties);
        let pq = self
            .api
            .start_select(&req.sql, &properties)
            .await
            .map_err(|(refusal, text)| refused(refusal, &text, Vec::new()))?;
        // Closable by CloseQuery (and `/close-query`); a cancelled call drops the stream,
        // and with it the receiver, which ends the query and releases its consumer.
        let pq = self.api.transient.track(pq);
        let header = QueryHeader {
            query_id: pq.id.clone(),
            column_names: pq.schema.columns.iter().map(|c| c.name.clone()).collect(),
            column_types: pq
                .schema
                .columns
                .iter()
                .map(|c| SchemaType(&c.ty).to_string())
                .collect(),
            schema: pq.schema.to_string(),
        };
        let head = QueryResponse {
            message: Some(query_response::Message::Header(header)),
        };
        let state = Rows {
            id: pq.id.clone(),
            rows: pq.rows,
            limit: pq.limit,
            sent: 0,
            done: false,
        };
        let rows = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let items: Vec<Result<QueryResponse, Status>> = match st.rows.recv().await {
                Some(Ok(batch)) => {
                    st.sent += batch.num_rows() as u64;
                    // One JSON array per line, written as REST writes rows.
                    values::rows_chunk(&batch, Framing::Delimited)
                        .lines()
                        .map(row_message)
                        .collect()
                }
                Some(Err(message)) => {
                    st.done = true;
                    vec![Err(Status::internal(message))]
                }
                None => {
                    st.done = true;
                    if st.limit.is_some_and(|l| st.sent >= l) {
                        vec![Ok(QueryResponse {
                            message: Some(query_response::Message::Finished(Finished {
                                message: "Limit Reached".into(),
                            })),
                        })]
                    } else {
                        Vec::new()
                    }
                }
            };
            Some((futures::stream::iter(items), st))
        })
        .flatten();
        let stream = futures::stream::once(async move { Ok(head) }).chain(rows);
        Ok(Response::new(Box::pin(stream)))
    }

    type InsertStream = BoxStream<InsertAck>;

    async fn insert(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<Self::InsertStream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .filter(|m| !m.target.trim().is_empty())
            .ok_or_else(|| Status::invalid_argument("No target in arguments"))?;
        // The target is case-insensitive unless back-quoted, like any identifier.
        let target = inserts::identifier(first.target.trim());
        let catalog = self.api.engine.catalog().await;
        let source = inserts::insertable(&catalog, &target)
            .map_err(Status::invalid_argument)?
            .clone();
        let api = self.api.clone();
        let (tx, rx) = mpsc::channel::<Result<InsertAck, Status>>(64);
        tokio::spawn(async move {
            let mut seq: i64 = 0;
            let mut pending = Some(first.row_json);
            loop {
                let row = match pending.take() {
                    Some(r) => r,
                    None => match input.message().await {
                        Ok(Some(m)) => m.row_json,
                        Ok(None) => break,
                        Err(e) => {
                            // The call broke off: nothing more will arrive.
                            debug!(error = %e, "gRPC Insert ended early");
                            break;
                        }
                    },
                };
                if row.trim().is_empty() {
                    continue;
                }
                let result = if row.len() > api.limits.inserts_max_row_bytes {
                    Err(inserts::RowError::too_large(
                        api.limits.inserts_max_row_bytes,
                    ))
                } else {
                    inserts::insert_one(&api, &source, &catalog, row.as_bytes()).await
                };
                let ack = match result {
                    Ok(()) => InsertAck {
                        seq,
                        ok: true,
                        ..InsertAck::default()
                    },
                    Err(e) => InsertAck {
                        seq,
                        ok: false,
                        error_code: e.code,
                        message: e.message,
                    },
                };
                seq += 1;
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        let acks =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|ack| (ack, rx)) },
            );
        Ok(Response::new(Box::pin(acks)))
    }

    async fn close_query(
        &self,
        request: Request<CloseQueryRequest>,
    ) -> Result<Response<CloseQueryResponse>, Status> {
        let id = request.into_inner().query_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("No queryId in arguments"));
        }
        if !self.api.transient.close(&id) {
            return Err(Status::not_found(format!("No query with id {id}")));
        }
        info!(query = %id, "push query closed by gRPC CloseQuery");
        Ok(Response::new(CloseQueryResponse {}))
    }

    async fn list_queries(
        &self,
        _request: Request<ListQueriesRequest>,
    ) -> Result<Response<ListQueriesResponse>, Status> {
        let catalog = self.api.engine.catalog().await;
        let mut queries = Vec::new();
        for q in self.api.engine.queries().await {
            queries.push(query_description(
                &self.api.running_query(&q, &catalog).await,
            ));
        }
        Ok(Response::new(ListQueriesResponse { queries }))
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let req = request.into_inner();
        let name = inserts::identifier(req.source.trim());
        let catalog = self.api.engine.catalog().await;
        let Some(source) = catalog.sources.get(&name) else {
            return Err(Status::not_found(format!(
                "Could not find STREAM/TABLE '{name}' in the Metastore"
            )));
        };
        let d = self.api.describe(source, req.extended).await;
        let fields = source
            .schema
            .columns
            .iter()
            .map(|c| Field {
                name: c.name.clone(),
                r#type: SchemaType(&c.ty).to_string(),
                kind: match c.namespace {
                    Namespace::Key => "KEY",
                    Namespace::Headers | Namespace::Header(_) => "HEADER",
                    Namespace::Value => "",
                }
                .to_string(),
            })
            .collect();
        let write_queries = d
            .get("writeQueries")
            .and_then(Value::as_array)
            .map(|qs| qs.iter().map(query_description).collect())
            .unwrap_or_default();
        Ok(Response::new(DescribeResponse {
            name: text(&d, "name"),
            r#type: text(&d, "type"),
            topic: text(&d, "topic"),
            key_format: text(&d, "keyFormat"),
            value_format: text(&d, "valueFormat"),
            window_type: text(&d, "windowType"),
            timestamp: text(&d, "timestamp"),
            statement: text(&d, "statement"),
            fields,
            write_queries,
            partitions: d
                .get("partitions")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
            source_description_json: d.to_string(),
        }))
    }

    type PrintStream = BoxStream<PrintLine>;

    async fn print(
        &self,
        request: Request<PrintRequest>,
    ) -> Result<Response<Self::PrintStream>, Status> {
        let req = request.into_inner();
        let properties = string_properties(req.properties);
        // REST's `/query` PRINT (format lines, then records), read back as lines.
        let endpoint = print::Endpoint::Query;
        let headers = http::HeaderMap::new();
        let Some(resp) =
            print::maybe_print(&self.api, &req.sql, &properties, &headers, endpoint).await
        else {
            return Err(Status::invalid_argument(
                "Print runs only PRINT statements; SELECT runs through Query",
            ));
        };
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let error: Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = text(&error, "message");
            return Err(if parts.status.is_server_error() {
                Status::internal(message)
            } else if message.starts_with("Could not find") {
                Status::not_found(message)
            } else {
                Status::invalid_argument(message)
            });
        }
        let state = (body.into_data_stream(), Vec::<u8>::new(), false);
        let lines = futures::stream::unfold(state, |(mut body, mut buf, mut done)| async move {
            loop {
                if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line).trim_end().to_string();
                    // Blank lines are `/query`'s keep-alives.
                    if line.trim().is_empty() {
                        continue;
                    }
                    return Some((Ok(PrintLine { line }), (body, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    buf.push(b'\n');
                    continue;
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let status = Status::internal(format!("PRINT failed: {e}"));
                        return Some((Err(status), (body, Vec::new(), true)));
                    }
                    None => done = true,
                }
            }
        });
        Ok(Response::new(Box::pin(lines)))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let info = &self.api.info;
        Ok(Response::new(InfoResponse {
            version: info.version.clone(),
            kafka_cluster_id: info.kafka_cluster_id.clone(),
            ksql_service_id: info.service_id.clone(),
            server_status: "RUNNING".into(),
        }))
    }
}

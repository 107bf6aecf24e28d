//! The gRPC API over a real `brook-server`, on the REST API's port: reflection lists the
//! services, Execute runs statements, Insert acks each row, Query streams a header and rows
//! (push with LIMIT, pull), ListQueries, Describe, CloseQuery, and errors map to status
//! codes with REST's messages. Every wait is bounded.

use std::time::Duration;

use brook_server::proto::brook_client::BrookClient;
use brook_server::proto::{
    query_response, CloseQueryRequest, DescribeRequest, ExecuteRequest, InfoRequest, InsertRequest,
    ListQueriesRequest, PrintRequest, QueryHeader, QueryRequest, QueryResponse,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

mod common;
use common::{free_port, Options, Server};

const WAIT: Duration = Duration::from_secs(30);

async fn connect(api: &str) -> Channel {
    Channel::from_shared(api.to_string())
        .expect("a valid URI")
        .connect_timeout(WAIT)
        .connect()
        .await
        .expect("the gRPC API answers on the REST port")
}

async fn execute(c: &mut BrookClient<Channel>, sql: &str) -> Vec<Value> {
    let resp = tokio::time::timeout(
        WAIT,
        c.execute(ExecuteRequest {
            sql: sql.into(),
            ..Default::default()
        }),
    )
    .await
    .expect("Execute answers in time")
    .unwrap_or_else(|s| panic!("Execute {sql} failed: {s:?}"));
    resp.into_inner()
        .entities_json
        .iter()
        .map(|e| serde_json::from_str(e).expect("entities are JSON"))
        .collect()
}

/// Reads a Query call to its end: the header, the rows (each a JSON array) and the final
/// message, if any.
async fn query_all(
    c: &mut BrookClient<Channel>,
    sql: &str,
    earliest: bool,
) -> Result<(QueryHeader, Vec<Value>, Option<String>), tonic::Status> {
    let mut req = QueryRequest {
        sql: sql.into(),
        ..Default::default()
    };
    if earliest {
        req.properties
            .insert("auto.offset.reset".into(), "earliest".into());
    }
    let mut stream = tokio::time::timeout(WAIT, c.query(req))
        .await
        .expect("Query answers in time")?
        .into_inner();
    let mut header = None;
    let mut rows = Vec::new();
    let mut finished = None;
    let read = async {
        while let Some(msg) = stream.next().await {
            match msg?.message {
                Some(query_response::Message::Header(h)) => {
                    assert!(header.is_none(), "one header");
                    assert!(rows.is_empty(), "the header comes first");
                    header = Some(h);
                }
                Some(query_response::Message::Row(r)) => {
                    rows.push(serde_json::from_str(&r.values_json).expect("rows are JSON"))
                }
                Some(query_response::Message::Finished(f)) => finished = Some(f.message),
                None => panic!("a message without content"),
            }
        }
        Ok::<(), tonic::Status>(())
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{sql}: the stream did not end; rows so far: {rows:?}"))?;
    Ok((header.expect("a header"), rows, finished))
}

/// REST's `statement_error` entity that a refusal carries.
fn error_entity(s: &tonic::Status) -> Value {
    let bytes = s
        .metadata()
        .get_bin("ksql-error-bin")
        .unwrap_or_else(|| panic!("no ksql-error-bin in {s:?}"))
        .to_bytes()
        .expect("valid metadata");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(Options {
        data_dir: dir.path(),
        broker_port: free_port(),
        broker_in_memory: true,
    });
    server.wait_for("brook-server ready");
    let channel = connect(&server.api).await;

    // --- reflection: grpcurl's `list` ---------------------------------------------------
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut r = ServerReflectionClient::new(channel.clone());
        let requests = futures::stream::iter([
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "brook.v1.Brook".into(),
                )),
            },
        ]);
        let mut answers = tokio::time::timeout(WAIT, r.server_reflection_info(requests))
            .await
            .expect("reflection answers in time")
            .expect("reflection is on")
            .into_inner();
        let first = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("not a service list: {first:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"brook.v1.Brook"), "{names:?}");
        assert!(
            names.contains(&"grpc.reflection.v1.ServerReflection"),
            "{names:?}"
        );
        let second = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("no file descriptor for brook.v1.Brook: {second:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    let mut c = BrookClient::new(channel.clone());
    let info = c.info(InfoRequest {}).await.expect("Info").into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.server_status, "RUNNING");

    // --- errors -------------------------------------------------------------------------
    let err = c
        .execute(ExecuteRequest {
            sql: "CREATE STREAMS oops (;".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad SQL is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("line 1:"), "{err:?}");
    assert_eq!(error_entity(&err)["error_code"], 40001);
    // Statements before the refused one ran; their entities come with the refusal.
    let err = c
        .execute(ExecuteRequest {
            sql: "SHOW STREAMS; DESCRIBE nope; SHOW TABLES;".into(),
            ..Default::default()
        })
        .await
        .expect_err("DESCRIBE of nothing is refused");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(
        err.message(),
        "Could not find STREAM/TABLE 'NOPE' in the Metastore"
    );
    let entity = error_entity(&err);
    assert_eq!(entity["statementText"], "DESCRIBE nope;", "{entity}");
    assert_eq!(entity["entities"][0]["@type"], "streams", "{entity}");
    assert_eq!(entity["entities"].as_array().map(Vec::len), Some(1));
    let err = query_all(&mut c, "SELECT * FROM nope EMIT CHANGES;", false)
        .await
        .expect_err("an unknown source is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("NOPE"), "{err:?}");
    let err = c
        .execute(ExecuteRequest {
            sql: "SELECT * FROM x EMIT CHANGES;".into(),
            ..Default::default()
        })
        .await
        .expect_err("SELECT is for Query");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .execute(ExecuteRequest {
            sql: "TERMINATE CTAS_NOPE_0;".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown query");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "Unknown queryId: CTAS_NOPE_0");

    // --- Execute ------------------------------------------------------------------------
    let entities = execute(
        &mut c,
        "CREATE STREAM rides (id INT KEY, name STRING, speed DOUBLE) \
         WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0]["@type"], "currentStatus", "{entities:?}");
    assert_eq!(
        entities[0]["commandStatus"]["message"], "Stream created",
        "{entities:?}"
    );
    let shown = execute(&mut c, "SHOW STREAMS;").await;
    assert_eq!(shown[0]["@type"], "streams");
    assert_eq!(shown[0]["streams"][0]["name"], "RIDES", "{shown:?}");

    // --- Insert, with an ack per row ----------------------------------------------------
    let rows = [
        json!({"ID": 1, "NAME": "alice", "SPEED": 1.5}),
        json!({"id": 2, "name": "bob", "speed": 2}),
        json!({"NAME": "no key"}),
        json!({"ID": 3, "NAME": "alice", "SPEED": 3.25}),
    ];
    let mut requests: Vec<InsertRequest> = rows
        .iter()
        .map(|r| InsertRequest {
            target: String::new(),
            row_json: r.to_string(),
        })
        .collect();
    requests[0].target = "rides".into();
    let acks = tokio::time::timeout(WAIT, async {
        let mut stream = c
            .insert(futures::stream::iter(requests))
            .await
            .expect("Insert accepted")
            .into_inner();
        let mut acks = Vec::new();
        while let Some(a) = stream.next().await {
            acks.push(a.expect("an ack"));
        }
        acks
    })
    .await
    .expect("every row acked in time");
    assert_eq!(acks.len(), 4, "{acks:?}");
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a.seq, i as i64, "{acks:?}");
    }
    assert!(acks[0].ok && acks[1].ok && acks[3].ok, "{acks:?}");
    assert!(!acks[2].ok, "{acks:?}");
    assert_eq!(acks[2].error_code, 40000);
    assert_eq!(acks[2].message, "Key field must be specified: ID");
    let err = c
        .insert(futures::stream::iter([InsertRequest {
            target: "nope".into(),
            row_json: String::new(),
        }]))
        .await
        .expect_err("unknown target");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        "Cannot insert values into an unknown stream: NOPE"
    );

    // --- Print --------------------------------------------------------------------------
    let lines = tokio::time::timeout(WAIT, async {
        let mut stream = c
            .print(PrintRequest {
                sql: "PRINT 'rides' FROM BEGINNING LIMIT 2;".into(),
                ..Default::default()
            })
            .await
            .expect("Print starts")
            .into_inner();
        let mut lines = Vec::new();
        while let Some(l) = stream.next().await {
            lines.push(l.expect("a line").line);
        }
        lines
    })
    .await
    .expect("PRINT ends at its LIMIT");
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("Key format: "), "{lines:?}");
    assert!(lines[1].starts_with("Value format: "), "{lines:?}");
    assert!(
        lines[2].contains(r#"value: {"NAME":"alice","SPEED":1.5}"#),
        "{lines:?}"
    );
    assert!(lines[3].contains("key: 2, "), "{lines:?}");
    let err = c
        .print(PrintRequest {
            sql: "PRINT 'no_such_topic';".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown topic");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .starts_with("Could not find topic 'no_such_topic'"),
        "{err:?}"
    );

    // --- Query: a push query with LIMIT -------------------------------------------------
    let (header, rows, finished) = query_all(
        &mut c,
        "SELECT id, name, speed FROM rides EMIT CHANGES LIMIT 3;",
        true,
    )
    .await
    .expect("the push query runs");
    assert!(
        header.query_id.starts_with("transient_RIDES_"),
        "{header:?}"
    );
    assert_eq!(header.column_names, ["ID", "NAME", "SPEED"]);
    assert_eq!(header.column_types, ["INTEGER", "STRING", "DOUBLE"]);
    assert_eq!(header.schema, "`ID` INTEGER, `NAME` STRING, `SPEED` DOUBLE");
    assert_eq!(
        rows,
        [
            json!([1, "alice", 1.5]),
            json!([2, "bob", 2.0]),
            json!([3, "alice", 3.25])
        ]
    );
    assert_eq!(finished.as_deref(), Some("Limit Reached"));

    // --- a persistent query, a pull query, ListQueries, Describe -------------------------
    let created = execute(
        &mut c,
        "CREATE TABLE per_name AS SELECT name, COUNT(*) AS n FROM rides GROUP BY name;",
    )
    .await;
    let query_id = created[0]["commandStatus"]["queryId"]
        .as_str()
        .unwrap_or_else(|| panic!("a query id: {created:?}"))
        .to_string();
    // The table catches up with the three rows: poll until the counts are final.
    let want = [json!(["alice", 2]), json!(["bob", 1])];
    let deadline = tokio::time::Instant::now() + WAIT;
    let (pulled_header, pulled_rows) = loop {
        let (header, mut rows, _) = query_all(&mut c, "SELECT * FROM per_name;", false)
            .await
            .expect("the pull query runs");
        rows.sort_by_key(|r| r.to_string());
        if rows == want || tokio::time::Instant::now() > deadline {
            break (header, rows);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pulled_header.column_names, ["NAME", "N"]);
    assert_eq!(pulled_rows, want);

    let listed = c
        .list_queries(ListQueriesRequest {})
        .await
        .expect("ListQueries")
        .into_inner();
    assert_eq!(listed.queries.len(), 1, "{listed:?}");
    let q = &listed.queries[0];
    assert_eq!(q.id, query_id);
    assert_eq!(q.sinks, ["PER_NAME"]);
    assert_eq!(q.state, "RUNNING");
    assert_eq!(q.query_type, "PERSISTENT");
    assert!(q.query_string.contains("GROUP BY"), "{q:?}");

    let d = c
        .describe(DescribeRequest {
            source: "per_name".into(),
            extended: false,
        })
        .await
        .expect("Describe")
        .into_inner();
    assert_eq!(d.name, "PER_NAME");
    assert_eq!(d.r#type, "TABLE");
    let fields: Vec<(&str, &str, &str)> = d
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.r#type.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        fields,
        [("NAME", "STRING", "KEY"), ("N", "BIGINT", "")],
        "{d:?}"
    );
    assert_eq!(d.write_queries.len(), 1);
    assert_eq!(d.write_queries[0].id, query_id);
    let full: Value = serde_json::from_str(&d.source_description_json).expect("JSON");
    assert_eq!(full["name"], "PER_NAME");
    let err = c
        .describe(DescribeRequest {
            source: "nope".into(),
            extended: false,
        })
        .await
        .expect_err("unknown source");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(
        err.message(),
        "Could not find STREAM/TABLE 'NOPE' in the Metastore"
    );

    // --- CloseQuery ends a push query's stream ------------------------------------------
    let mut stream = c
        .query(QueryRequest {
            sql: "SELECT * FROM rides EMIT CHANGES;".into(),
            ..Default::default()
        })
        .await
        .expect("the push query starts")
        .into_inner();
    let id = match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(QueryResponse {
            message: Some(query_response::Message::Header(h)),
        }))) => h.query_id,
        other => panic!("no header: {other:?}"),
    };
    c.close_query(CloseQueryRequest {
        query_id: id.clone(),
    })
    .await
    .expect("CloseQuery");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        while let Some(m) = stream.next().await {
            m.expect("the stream ends cleanly");
            n += 1;
        }
        n
    })
    .await
    .expect("closing ends the stream");
    assert_eq!(rest, 0, "no rows arrived after the header (latest offsets)");
    let err = c
        .close_query(CloseQueryRequest { query_id: id })
        .await
        .expect_err("already closed");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // --- a client going away ends its push query ---------------------------------------
    let mut stream = c
        .query(QueryRequest {
            sql: "SELECT * FROM rides EMIT CHANGES;".into(),
            ..Default::default()
        })
        .await
        .expect("the push query starts")
        .into_inner();
    let id = match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(QueryResponse {
            message: Some(query_response::Message::Header(h)),
        }))) => h.query_id,
        other => panic!("no header: {other:?}"),
    };
    drop(stream);
    let seen = server.wait_for("gRPC client went away");
    let last = seen.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains(&id), "{last}");

    // REST sees what gRPC did: one transport, one engine.
    let resp = common::client()
        .post(format!("{}/ksql", server.api))
        .body(json!({"ksql": "SHOW QUERIES;"}).to_string())
        .send()
        .await
        .expect("REST answers");
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(body[0]["queries"][0]["id"], query_id.as_str(), "{body}");

    drop(c);
    drop(channel);
    server.stop();
}

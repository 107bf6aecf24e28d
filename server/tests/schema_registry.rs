//! brook-server's Schema Registry API (Confluent's REST API on the ksqlDB port), used as a
//! user's own producers and consumers use it: a schema registered over HTTP, a record framed
//! with its id produced by a plain Kafka producer, a stream created without columns (they
//! come from the schema) and queried; what a query writes read back with the schema the
//! record's id names. Also the errors, protobuf references, the registry client
//! (`RegistryClient`) against the server, and the registry across a restart.

use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use brook_runtime::format::registry::{self, RegisteredSchema, SchemaRegistry};
use brook_runtime::format::registry_client::RegistryClient;
use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

const SR: &str = "application/vnd.schemaregistry.v1+json";

fn start(data_dir: &std::path::Path) -> Server {
    Server::start(Options {
        data_dir,
        broker_port: free_port(),
        broker_in_memory: true,
    })
}

/// One Schema Registry request; the status and the JSON body.
async fn sr(c: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = c.request(method, url).header("Accept", SR);
    if let Some(b) = body {
        req = req.header("Content-Type", SR).body(b.to_string());
    }
    let resp = req.send().await.expect("the registry answers");
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, SR, "content type of {url}");
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// Confluent's wire format: magic byte 0, the schema id (big-endian), the Avro body.
/// Produces one record, as a user's own producer would, and waits for its acknowledgement.
async fn produce(producer: &FutureProducer, topic: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::<(), [u8]>::to(topic).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

fn framed(id: u32, schema: &Schema, value: Avro) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).expect("the record fits its schema"));
    out
}

const ORDER_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "item", "type": "string"},
    {"name": "price", "type": ["null", "double"], "default": null}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_producers_and_consumers_share_the_servers_registry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    // Register as Confluent's serializer does (no schemaType: AVRO).
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/orders-value/versions"),
        Some(json!({ "schema": ORDER_SCHEMA })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().expect("an id") as u32;
    // Registering again is idempotent.
    let (_, again) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/orders-value/versions"),
        Some(json!({ "schema": ORDER_SCHEMA })),
    )
    .await;
    assert_eq!(again["id"], json!(id));
    let (_, subjects) = sr(&c, "GET", &format!("{api}/subjects"), None).await;
    assert!(
        subjects
            .as_array()
            .is_some_and(|s| s.contains(&json!("orders-value"))),
        "{subjects}"
    );
    let (_, versions) = sr(
        &c,
        "GET",
        &format!("{api}/subjects/orders-value/versions"),
        None,
    )
    .await;
    assert_eq!(versions, json!([1]));
    let (status, latest) = sr(
        &c,
        "GET",
        &format!("{api}/subjects/orders-value/versions/latest"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["subject"], "orders-value");
    assert_eq!(latest["version"], 1);
    assert_eq!(latest["id"], json!(id));
    let (status, by_id) = sr(&c, "GET", &format!("{api}/schemas/ids/{id}"), None).await;
    assert_eq!(status, 200, "{by_id}");
    assert!(
        by_id.get("schemaType").is_none(),
        "AVRO is implied: {by_id}"
    );
    let schema = Schema::parse_str(by_id["schema"].as_str().expect("schema text"))
        .expect("the served schema parses");
    assert_eq!(schema, Schema::parse_str(ORDER_SCHEMA).expect("schema"));
    let (status, found) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/orders-value"),
        Some(json!({ "schema": ORDER_SCHEMA })),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (found["id"].clone(), found["version"].clone()),
        (json!(id), json!(1))
    );

    // A plain Kafka producer writes a framed record, as Confluent's serializer would.
    let bootstrap = server.bootstrap.clone();
    brook_runtime::kafka::create_topic(&bootstrap, "orders", 1, 1)
        .await
        .expect("topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap.bootstrap())
        .create()
        .expect("producer");
    let record = |i: i64, item: &str, price: Option<f64>| {
        Avro::Record(vec![
            ("id".into(), Avro::Long(i)),
            ("item".into(), Avro::String(item.into())),
            (
                "price".into(),
                match price {
                    Some(p) => Avro::Union(1, Box::new(Avro::Double(p))),
                    None => Avro::Union(0, Box::new(Avro::Null)),
                },
            ),
        ])
    };
    for (i, item, price) in [
        (1, "apple", Some(0.5)),
        (2, "pear", None),
        (3, "melon", Some(3.0)),
    ] {
        let payload = framed(id, &schema, record(i, item, price));
        produce(&producer, "orders", &payload).await;
    }

    // No columns: they are inferred from the latest schema of `orders-value`.
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ksql(&c, &api, "DESCRIBE ORDERS;").await;
    assert_eq!(status, 200, "{body}");
    let fields: Vec<(String, String)> = body[0]["sourceDescription"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_string(),
                f["schema"]["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("ID", "BIGINT"), ("ITEM", "STRING"), ("PRICE", "DOUBLE")]
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(fields, want, "{body}");

    let resp = c
        .post(format!("{api}/query-stream"))
        .header("Accept", "application/vnd.ksqlapi.delimited.v1")
        .body(
            json!({
                "sql": "SELECT ID, ITEM, PRICE FROM ORDERS EMIT CHANGES LIMIT 3;",
                "properties": {"auto.offset.reset": "earliest"},
            })
            .to_string(),
        )
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the query ends at its LIMIT")
        .expect("body");
    let rows: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        rows,
        vec![
            json!([1, "apple", 0.5]),
            json!([2, "pear", null]),
            json!([3, "melon", 3.0])
        ],
        "{text}"
    );

    // What Brook writes in AVRO, a consumer reads with the schema its id names.
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM CHEAP WITH (KAFKA_TOPIC='cheap', VALUE_FORMAT='AVRO') AS \
         SELECT ID, ITEM FROM ORDERS WHERE PRICE < 1.0;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let payload = tokio::task::spawn_blocking(move || first_record(&bootstrap, "cheap"))
        .await
        .expect("reader");
    assert_eq!(payload[0], 0, "magic byte");
    let written_id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let (status, body) = sr(&c, "GET", &format!("{api}/schemas/ids/{written_id}"), None).await;
    assert_eq!(status, 200, "{body}");
    let writer = Schema::parse_str(body["schema"].as_str().expect("schema")).expect("parses");
    let value = apache_avro::from_avro_datum(&writer, &mut &payload[5..], None).expect("decodes");
    let Avro::Record(fields) = value else {
        panic!("a record: {value:?}");
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ID", "ITEM"]);
    assert_eq!(
        fields[1].1,
        Avro::Union(1, Box::new(Avro::String("apple".into())))
    );
}

/// The first record of `topic`'s partition 0, waiting for it up to a minute.
fn first_record(bootstrap: &brook_runtime::kafka::Kafka, topic: &str) -> Vec<u8> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap.bootstrap())
        .set("group.id", "schema-registry-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        if consumer.assign(&tpl).is_ok() {
            while Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    if let Some(p) = m.payload() {
                        return p.to_vec();
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no record on {topic}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_references_and_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    let (status, body) = sr(&c, "GET", &format!("{api}/subjects/nope/versions"), None).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (404, json!(40401)),
        "{body}"
    );
    assert_eq!(body["message"], "Subject 'nope' not found.");
    let (status, body) = sr(&c, "GET", &format!("{api}/schemas/ids/999"), None).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (404, json!(40403)),
        "{body}"
    );
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/t-value/versions"),
        Some(json!({"schema": "{\"type\": \"recordd\"}"})),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (422, json!(42201)),
        "{body}"
    );
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/t-value/versions"),
        Some(json!({"schema": "\"int\""})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sr(
        &c,
        "GET",
        &format!("{api}/subjects/t-value/versions/2"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (404, json!(40402)),
        "{body}"
    );
    let (status, body) = sr(
        &c,
        "GET",
        &format!("{api}/subjects/t-value/versions/x"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (422, json!(42202)),
        "{body}"
    );

    // A protobuf schema importing another subject's.
    let event = "syntax = \"proto3\";\nmessage Event { int64 TIMESTAMP = 1; }";
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/event.proto/versions"),
        Some(json!({"schema": event, "schemaType": "PROTOBUF"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let logistics =
        "syntax = \"proto3\";\nimport \"event.proto\";\nmessage Logistics { Event EVENT = 1; }";
    let refs = json!([{"name": "event.proto", "subject": "event.proto", "version": 1}]);
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/logistics-value/versions"),
        Some(json!({"schema": logistics, "schemaType": "PROTOBUF", "references": refs})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().expect("id");
    let (_, body) = sr(&c, "GET", &format!("{api}/schemas/ids/{id}"), None).await;
    assert_eq!(body["schemaType"], "PROTOBUF");
    assert_eq!(body["references"], refs);
    let (status, body) = sr(
        &c,
        "POST",
        &format!("{api}/subjects/bad-value/versions"),
        Some(json!({"schema": logistics, "schemaType": "PROTOBUF",
            "references": [{"name": "event.proto", "subject": "event.proto", "version": 9}]})),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (422, json!(42201)),
        "{body}"
    );
    // Columns come from the message and its import.
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM LOGISTICS WITH (KAFKA_TOPIC='logistics', VALUE_FORMAT='PROTOBUF', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = ksql(&c, &api, "DESCRIBE LOGISTICS;").await;
    assert_eq!(
        body[0]["sourceDescription"]["fields"][0]["name"], "EVENT",
        "{body}"
    );

    // The client: what it registers the server serves, and the other way round.
    let api2 = api.clone();
    tokio::task::spawn_blocking(move || {
        let client = RegistryClient::new(&api2).expect("client");
        let proto = RegisteredSchema::Protobuf(std::sync::Arc::new(registry::ProtobufSchema {
            text: "syntax = \"proto3\";\nimport \"a.proto\";\nmessage M { A a = 1; }".into(),
            references: vec![(
                "a.proto".into(),
                "syntax = \"proto3\";\nmessage A { string s = 1; }".into(),
            )],
            named: Vec::new(),
        }));
        let id = client
            .register_schema("m-value", proto, Some(500))
            .expect("registers");
        assert_eq!(id, 500);
        // Through a fresh client, so nothing comes from the cache.
        let fresh = RegistryClient::new(&api2).expect("client");
        let Some(RegisteredSchema::Protobuf(p)) = fresh.get(500).expect("get") else {
            panic!("a protobuf schema");
        };
        assert_eq!(p.references.len(), 1);
        assert_eq!(p.named[0].subject, "a.proto");
        assert!(fresh
            .subjects()
            .expect("subjects")
            .contains(&"a.proto".to_string()));
        let (latest, _) = fresh
            .latest_schema("m-value")
            .expect("latest")
            .expect("some");
        assert_eq!(latest, 500);
        assert_eq!(fresh.versions("m-value").expect("versions"), vec![500]);
        assert_eq!(fresh.delete_subject("m-value").expect("deleted"), vec![1]);
        assert!(fresh.latest_schema("m-value").expect("latest").is_none());
        // Deleting a subject keeps its schemas readable by id.
        assert!(fresh.get(500).expect("get").is_some());
        assert!(fresh.get(4242).expect("get").is_none());
    })
    .await
    .expect("client checks");
    let (status, body) = sr(&c, "DELETE", &format!("{api}/subjects/m-value"), None).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (404, json!(40401)),
        "{body}"
    );

    // The registry outlives the server: a restart on the same data directory serves the
    // same ids and subjects.
    server.stop();
    let server = start(dir.path());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let (status, body) = sr(&c, "GET", &format!("{api}/schemas/ids/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["references"], refs);
    let (_, subjects) = sr(&c, "GET", &format!("{api}/subjects"), None).await;
    assert_eq!(
        subjects,
        json!(["a.proto", "event.proto", "logistics-value", "t-value"])
    );
    let (status, body) = sr(&c, "GET", &format!("{api}/schemas/ids/500"), None).await;
    assert_eq!(status, 200, "deleted subjects keep their ids: {body}");
}

/// A server pointed at another's registry (`ksql.schema.registry.url`, as at an external
/// Confluent Schema Registry) infers columns from it, decodes records by its ids, registers
/// what it writes there, and passes its own `/subjects…` requests through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_registry_is_used_through_the_client() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let registry_server = start(dir_a.path());
    registry_server.wait_for("brook-server ready");
    let registry_url = registry_server.api.clone();
    let dir_b = tempfile::tempdir().expect("temp dir");
    let config = format!("ksql.schema.registry.url={registry_url}");
    let server = Server::start_with(
        Options {
            data_dir: dir_b.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &["--config", &config],
    );
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    let (status, body) = sr(
        &c,
        "POST",
        &format!("{registry_url}/subjects/orders-value/versions"),
        Some(json!({ "schema": ORDER_SCHEMA })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().expect("an id") as u32;
    let schema = Schema::parse_str(ORDER_SCHEMA).expect("schema");
    let bootstrap = server.bootstrap.clone();
    brook_runtime::kafka::create_topic(&bootstrap, "orders", 1, 1)
        .await
        .expect("topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap.bootstrap())
        .create()
        .expect("producer");
    let payload = framed(
        id,
        &schema,
        Avro::Record(vec![
            ("id".into(), Avro::Long(7)),
            ("item".into(), Avro::String("fig".into())),
            ("price".into(), Avro::Union(0, Box::new(Avro::Null))),
        ]),
    );
    produce(&producer, "orders", &payload).await;

    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM ORDERS WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='AVRO');",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM FIGS WITH (KAFKA_TOPIC='figs', VALUE_FORMAT='AVRO') AS \
         SELECT ID, ITEM FROM ORDERS;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let payload = tokio::task::spawn_blocking(move || first_record(&bootstrap, "figs"))
        .await
        .expect("reader");
    let written_id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    // The writer schema is in the external registry, and the server's own API passes
    // through to it.
    for base in [&registry_url, &api] {
        let (status, body) = sr(&c, "GET", &format!("{base}/schemas/ids/{written_id}"), None).await;
        assert_eq!(status, 200, "{base}: {body}");
        let writer = Schema::parse_str(body["schema"].as_str().expect("schema")).expect("parses");
        let value =
            apache_avro::from_avro_datum(&writer, &mut &payload[5..], None).expect("decodes");
        let Avro::Record(fields) = value else {
            panic!("a record: {value:?}");
        };
        assert_eq!(fields[0].1, Avro::Union(1, Box::new(Avro::Long(7))));
    }
    let (_, subjects) = sr(&c, "GET", &format!("{api}/subjects"), None).await;
    assert!(
        subjects
            .as_array()
            .is_some_and(|s| s.contains(&json!("orders-value"))),
        "{subjects}"
    );
}

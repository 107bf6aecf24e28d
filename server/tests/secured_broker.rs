//! brook-server on its embedded broker secured with TLS and SASL SCRAM-SHA-512, its own
//! Kafka clients configured as ksqlDB's users write it: a `ksql-server.properties` file
//! (the only argument, as `ksql-server-start` takes it) with `sasl.jaas.config` and a PEM
//! truststore, the password read from another file through `${file:…}`. The orders
//! pipeline runs end to end (CSAS output, a push query, a pull query on a CTAS, PRINT); the same
//! server with a wrong password stops at once, naming authentication. Certificates are made
//! with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use brook_runtime::kafka::{ClientSecurity, Kafka};
use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

const USER: &str = "brook";
const PASSWORD: &str = "s3cret-Pa55-for-tests";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and the broker's certificate from it for 127.0.0.1 and localhost: (CA, certificate,
/// key), PEM files in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Brook test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("san.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("broker.pem"),
        dir.join("broker.key"),
    )
}

/// Starts a server whose broker knows `USER` with `PASSWORD` and whose clients log in with
/// `password`; returns it and the CA file.
fn start(dir: &Path, password: &str) -> (Server, PathBuf) {
    let (ca, cert, key) = certificates(dir);
    let users = dir.join("users.properties");
    std::fs::write(&users, format!("{USER}={PASSWORD}\n")).expect("users");
    let secrets = dir.join("secrets.properties");
    std::fs::write(&secrets, format!("kafka.password={password}\n")).expect("secrets");
    let properties = dir.join("ksql-server.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n\
             \x20   username=\"{USER}\" \\\n\
             \x20   password=\"${{file:{}:kafka.password}}\";\n\
             ssl.truststore.location={}\n\
             ssl.truststore.type=PEM\n",
            secrets.display(),
            ca.display()
        ),
    )
    .expect("properties");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let server = Server::start_with(
        Options {
            data_dir: &dir.join("data"),
            broker_port: free_port(),
            broker_in_memory: false,
        },
        &[
            "--broker-tls-cert",
            &path(&cert),
            "--broker-tls-key",
            &path(&key),
            "--broker-scram-users",
            &path(&users),
            &path(&properties),
        ],
    );
    (server, ca)
}

/// The test's own client of the secured broker.
fn secured(server: &Server, ca: &Path) -> Kafka {
    let mut s = ClientSecurity::new();
    s.set("security.protocol", "sasl_ssl")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD)
        .set("ssl.ca.location", ca.display().to_string());
    Kafka::new(server.bootstrap.bootstrap(), s)
}

const ORDERS: [(&str, &str, f64); 6] = [
    ("o1", "alice", 50.0),
    ("o2", "bob", 150.0),
    ("o3", "alice", 200.0),
    ("o4", "carol", 99.5),
    ("o5", "bob", 101.0),
    ("o6", "alice", 300.0),
];

fn produce(kafka: &Kafka) {
    let producer: BaseProducer = brook_runtime::kafka::producer_config(kafka)
        .create()
        .expect("producer");
    for (id, customer, amount) in ORDERS {
        let value = json!({"customer": customer, "amount": amount}).to_string();
        producer
            .send(BaseRecord::to("orders").key(id).payload(&value))
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

/// `topic`'s first `n` records: (key, value).
fn read(kafka: &Kafka, topic: &str, n: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(kafka, "secured-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("a record");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON");
        got.push((key, value));
    }
    got
}

/// One `/query-stream` request's lines after the header, read until `n` rows came.
async fn query_rows(
    http: &reqwest::Client,
    api: &str,
    sql: &str,
    properties: Value,
    n: usize,
) -> Vec<Value> {
    let mut resp = http
        .post(format!("{api}/query-stream"))
        .header("Accept", "application/vnd.ksqlapi.delimited.v1")
        .body(json!({"sql": sql, "properties": properties}).to_string())
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200, "{sql}");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while text.lines().filter(|l| !l.trim().is_empty()).count() < n + 1 {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break,
            other => panic!("{sql}: rows stopped at {text:?}: {other:?}"),
        }
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A `/query-stream` response's whole text, read to its end.
async fn query_rows_text(http: &reqwest::Client, api: &str, sql: &str) -> String {
    let mut resp = http
        .post(format!("{api}/query-stream"))
        .header("Accept", "application/vnd.ksqlapi.delimited.v1")
        .body(json!({"sql": sql, "properties": {}}).to_string())
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200, "{sql}");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return text,
            other => panic!("{sql}: the response stopped at {text:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_pipeline_runs_over_tls_and_scram_sha_512() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ca) = start(dir.path(), PASSWORD);
    let mut log = server.wait_for("brook-server ready");
    let http = client();
    let (status, body) = ksql(
        &http,
        &server.api,
        "CREATE STREAM orders (id STRING KEY, customer STRING, amount DOUBLE) \
         WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);
         CREATE STREAM big_orders AS SELECT id, customer, amount FROM orders WHERE amount > 100;
         CREATE TABLE per_customer AS SELECT customer, COUNT(*) AS n, SUM(amount) AS total \
         FROM orders GROUP BY customer;",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // From the earliest offset: it sees each big order, whenever its consumer starts.
    let push = {
        let (http, api) = (http.clone(), server.api.clone());
        tokio::spawn(async move {
            let sql = "SELECT id, amount FROM big_orders EMIT CHANGES;";
            query_rows(
                &http,
                &api,
                sql,
                json!({"auto.offset.reset": "earliest"}),
                4,
            )
            .await
        })
    };

    let kafka = secured(&server, &ca);
    let k = kafka.clone();
    tokio::task::spawn_blocking(move || produce(&k))
        .await
        .expect("producer thread");

    let k = kafka.clone();
    let big = tokio::task::spawn_blocking(move || read(&k, "BIG_ORDERS", 4))
        .await
        .expect("reader thread");
    let want: Vec<(String, Value)> = ORDERS
        .iter()
        .filter(|(_, _, amount)| *amount > 100.0)
        .map(|(id, customer, amount)| {
            (
                id.to_string(),
                json!({"CUSTOMER": customer, "AMOUNT": amount}),
            )
        })
        .collect();
    assert_eq!(big, want);

    let rows = tokio::time::timeout(Duration::from_secs(60), push)
        .await
        .expect("the push query's rows in time")
        .expect("push task");
    assert_eq!(
        rows,
        vec![
            json!(["o2", 150.0]),
            json!(["o3", 200.0]),
            json!(["o5", 101.0]),
            json!(["o6", 300.0])
        ]
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let sql = "SELECT customer, n, total FROM per_customer WHERE customer = 'alice';";
    loop {
        let rows = query_rows(&http, &server.api, sql, json!({}), 1).await;
        if rows == vec![json!(["alice", 3, 550.0])] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's total never came: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // PRINT reads the topic through a consumer of its own; LIMIT ends the response.
    let printed = query_rows_text(
        &http,
        &server.api,
        "PRINT 'BIG_ORDERS' FROM BEGINNING LIMIT 4;",
    )
    .await;
    let lines: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{printed}");
    for (line, id) in lines.iter().zip(["o2", "o3", "o5", "o6"]) {
        assert!(line.contains(&format!("key: {id},")), "{printed}");
    }

    // A client that does not trust the broker's CA is told so at once, not after a timeout.
    let mut untrusting = ClientSecurity::new();
    for k in kafka.security().keys().filter(|k| *k != "ssl.ca.location") {
        untrusting.set(k, kafka.security().get(k).unwrap_or_default());
    }
    let untrusting = Kafka::new(kafka.bootstrap(), untrusting);
    let checked = tokio::task::spawn_blocking(move || {
        brook_runtime::kafka::check_connection(&untrusting, Duration::from_secs(30))
    })
    .await
    .expect("check thread");
    match checked {
        Err(e @ brook_runtime::RuntimeError::KafkaTls { .. }) => {
            let text = e.to_string();
            assert!(text.contains("certificate"), "{text}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }

    log.extend(server.drain());
    for line in &log {
        assert!(
            !line.contains(PASSWORD),
            "the password is in the log: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_server_at_once_naming_authentication() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let (mut server, _ca) = start(dir.path(), "not-the-password");
    let log = server.wait_for("refused authentication");
    let took = started.elapsed();
    let line = log.last().expect("the line");
    assert!(line.contains("SCRAM-SHA-512"), "{line}");
    assert!(line.contains(server.bootstrap.bootstrap()), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
    // Kafka is waited for 30 s: a refusal must not wait that out.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let status = server
        .exited_within(Duration::from_secs(20))
        .expect("the server exits");
    assert!(!status.success(), "{status}");
}

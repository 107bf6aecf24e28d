//! `brook-server` with no Kafka given: it starts its embedded broker, says where, and any
//! Kafka client can produce to and consume from it; its log survives a restart.

use std::time::Duration;

use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brook_runtime::rdkafka::Message;

mod common;
use common::{free_port, Options, Server};

fn start(data_dir: &std::path::Path, port: u16) -> Server {
    Server::start(Options {
        data_dir,
        broker_port: port,
        broker_in_memory: false,
    })
}

fn read_all(
    kafka: &brook_runtime::kafka::Kafka,
    topic: &str,
    want: usize,
) -> Vec<(String, String)> {
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(kafka, "reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want && std::time::Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("record");
            got.push((
                String::from_utf8_lossy(msg.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string(),
            ));
        }
    }
    got
}

#[test]
fn serves_any_kafka_client_and_keeps_its_log_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");

    let server = start(dir.path(), port);
    let seen = server.wait_for("brook-server ready");
    assert!(
        seen.iter()
            .any(|l| l.contains("embedded Kafka broker listening") && l.contains(&bootstrap)),
        "the log names where the broker listens"
    );

    let kafka = brook_runtime::kafka::Kafka::plaintext(&bootstrap);
    let producer: BaseProducer = brook_runtime::kafka::producer_config(&kafka)
        .create()
        .expect("producer");
    for i in 0..10 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        producer
            .send(BaseRecord::to("greetings").key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    let got = read_all(&kafka, "greetings", 10);
    assert_eq!(got.len(), 10);
    server.stop();

    // The default storage is a file under --data-dir: the records are still there.
    assert!(dir.path().join("broker.db").exists());
    let server = start(dir.path(), port);
    server.wait_for("brook-server ready");
    let again = read_all(&kafka, "greetings", 10);
    let mut a = got.clone();
    let mut b = again.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "records survive a restart");
    server.stop();
}

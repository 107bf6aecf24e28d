//! `brook-server` with no Kafka given: it starts its embedded broker, says where, and any
//! Kafka client can produce to and consume from it; its log survives a restart.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brook_runtime::rdkafka::Message;

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &std::path::Path, port: u16) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_brook-server"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{port}"))
            // A free port for the REST API too, so the test never collides with a server.
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("BROOK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("brook-server starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[brook-server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines: rx }
    }

    /// Waits for a log line containing `text`; returns every line seen so far.
    fn wait_for(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(text);
                    seen.push(line);
                    if hit {
                        return seen;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "brook-server never logged `{text}`; it logged:\n{}",
            seen.join("\n")
        );
    }

    fn stop(mut self) {
        // SIGTERM, as a service manager would send it.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("brook-server exits");
        assert!(status.success(), "brook-server exited with {status}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn read_all(bootstrap: &str, topic: &str, want: usize) -> Vec<(String, String)> {
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, "reader")
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

    let server = Server::start(dir.path(), port);
    let seen = server.wait_for("brook-server ready");
    assert!(
        seen.iter()
            .any(|l| l.contains("embedded Kafka broker listening") && l.contains(&bootstrap)),
        "the log names where the broker listens"
    );

    let producer: BaseProducer = brook_runtime::kafka::producer_config(&bootstrap)
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
    let got = read_all(&bootstrap, "greetings", 10);
    assert_eq!(got.len(), 10);
    server.stop();

    // The default storage is a file under --data-dir: the records are still there.
    assert!(dir.path().join("broker.db").exists());
    let server = Server::start(dir.path(), port);
    server.wait_for("brook-server ready");
    let again = read_all(&bootstrap, "greetings", 10);
    let mut a = got.clone();
    let mut b = again.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "records survive a restart");
    server.stop();
}

//! A `brook-server` process for tests: started on free ports, its log echoed and searchable,
//! stopped with SIGTERM (or killed) and always reaped, so a failing test cannot leak it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The REST API's base URL.
    pub api: String,
    /// The embedded broker's address.
    pub bootstrap: brook_runtime::kafka::Kafka,
}

/// How to start a server.
pub struct Options<'a> {
    pub data_dir: &'a std::path::Path,
    pub broker_port: u16,
    /// The broker keeps its log in memory (gone with the process) instead of `data_dir`.
    pub broker_in_memory: bool,
}

impl Server {
    pub fn start(o: Options<'_>) -> Server {
        Server::start_with(o, &[])
    }

    /// `start` with more command-line arguments.
    pub fn start_with(o: Options<'_>, extra: &[&str]) -> Server {
        let api_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook-server"));
        cmd.arg("--data-dir")
            .arg(o.data_dir)
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{}", o.broker_port))
            .arg("--listen")
            .arg(format!("127.0.0.1:{api_port}"))
            // Brook at info; the embedded broker logs every request at info, too much to read.
            .env("BROOK_LOG", "warn,brook_server=info,brook_runtime=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if o.broker_in_memory {
            cmd.arg("--broker-in-memory");
        }
        cmd.args(extra);
        let mut child = cmd.spawn().expect("brook-server starts");
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
        Server {
            child,
            lines: rx,
            api: format!("http://127.0.0.1:{api_port}"),
            bootstrap: brook_runtime::kafka::Kafka::plaintext(format!(
                "127.0.0.1:{}",
                o.broker_port
            )),
        }
    }

    /// Waits for a log line containing `text`; returns every line seen so far.
    pub fn wait_for(&self, text: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
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
        panic!("brook-server never logged `{text}`:\n{}", seen.join("\n"));
    }

    /// The server process's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// The server process's thread count.
    pub fn threads(&self) -> u64 {
        self.proc_status("Threads:")
    }

    /// A number from the server process's `/proc/<pid>/status` (the test runs it as a
    /// child process, so not `/proc/self`).
    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// SIGTERM, as a service manager sends it; the server must exit cleanly.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("brook-server exits");
        assert!(status.success(), "brook-server exited with {status}");
    }

    /// The log lines not yet taken by [`Server::wait_for`].
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The process's exit status, once it has exited, waiting at most `within`.
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process gets no chance to flush or commit anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("http client")
}

/// POSTs statements to `/ksql`; returns the status and the JSON body.
pub async fn ksql(c: &reqwest::Client, api: &str, sql: &str) -> (u16, Value) {
    let resp = c
        .post(format!("{api}/ksql"))
        .header("Content-Type", "application/vnd.ksql.v1+json")
        .header("Accept", "application/vnd.ksql.v1+json")
        .body(json!({"ksql": sql, "streamsProperties": {}}).to_string())
        .send()
        .await
        .expect("/ksql answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// A record read back by [`read_until`].
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl Read {
    /// The value as JSON (`null` for a tombstone or a value that is not JSON).
    pub fn json(&self) -> Value {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or(Value::Null)
    }
}

/// Reads every partition of `topic` from its start (assigned, no group joined) until
/// `done` holds for what was read (a minute at most, then the test fails with it), then on
/// to the partitions' end offsets of that moment, so that whatever was written before
/// `done` held is read too. A negative check ("nothing else arrived") waits for a
/// marker this way, never for a quiet period. Blocking: call it from a blocking thread.
pub fn read_until(
    kafka: &brook_runtime::kafka::Kafka,
    topic: &str,
    done: impl Fn(&[Read]) -> bool,
) -> Vec<Read> {
    use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
    use brook_runtime::rdkafka::{Message, Offset, TopicPartitionList};

    let group = format!("check-{topic}-{}", free_port());
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(kafka, &group)
        .create()
        .unwrap_or_else(|e| panic!("a consumer of {topic}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let partitions = || -> Vec<i32> {
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ids = partitions();
    while ids.is_empty() {
        assert!(Instant::now() < deadline, "topic {topic} does not exist");
        std::thread::sleep(Duration::from_millis(100));
        ids = partitions();
    }
    let mut tpl = TopicPartitionList::new();
    for p in &ids {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{topic} [{p}]: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    let mut got: Vec<Read> = Vec::new();
    let poll = |got: &mut Vec<Read>| {
        assert!(
            Instant::now() < deadline,
            "{topic}: what was expected did not arrive within a minute; read: {got:?}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
            got.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
    };
    while !done(&got) {
        poll(&mut got);
    }
    let ends: Vec<(i32, i64)> = ids
        .iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{topic} [{p}]: end offset: {e}"));
            (*p, high)
        })
        .collect();
    let at_end = |got: &[Read]| {
        ends.iter().all(|(p, high)| {
            *high == 0
                || got
                    .iter()
                    .any(|r| r.partition == *p && r.offset + 1 >= *high)
        })
    };
    while !at_end(&got) {
        poll(&mut got);
    }
    got
}

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
    pub bootstrap: String,
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
            bootstrap: format!("127.0.0.1:{}", o.broker_port),
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

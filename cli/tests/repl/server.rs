//! A live `brook-server` for the REPL's tests: its embedded broker in memory, both ports
//! free ones, stopped when dropped. Every wait is bounded so a failure cannot hang.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub api: String,
    _dir: tempfile::TempDir,
}

/// The `brook` binary under test.
pub fn brook() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brook"))
}

/// `brook-server` from the same target directory as `brook`. `cargo test --workspace`
/// builds it; a test run of this package alone builds it here when it is missing.
fn server_binary() -> PathBuf {
    let bin = brook().with_file_name(format!("brook-server{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        return bin;
    }
    let target_dir = bin
        .parent()
        .and_then(Path::parent)
        .expect("brook lives in <target>/<profile>/");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "brook-server",
            "--bin",
            "brook-server",
            "--target-dir",
        ])
        .arg(target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building brook-server failed");
    assert!(bin.exists(), "brook-server is not at {}", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    // Not every test binary that includes this file starts a plain server.
    #[allow(dead_code)]
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// `start` with more arguments (the API's TLS and users files, say); `api` stays
    /// `http://…` with the port.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let api_port = free_port();
        let mut child = Command::new(server_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--broker-in-memory")
            .arg("--listen")
            .arg(format!("127.0.0.1:{api_port}"))
            .args(extra)
            .env(
                "BROOK_LOG",
                "info,nisshi=warn,nisshi_storage_dynostore=warn",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("brook-server starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let server = Server {
            child,
            lines: rx,
            api: format!("http://127.0.0.1:{api_port}"),
            _dir: dir,
        };
        server.wait_for("brook-server ready");
        server
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(text);
                    seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("brook-server never logged `{text}`:\n{}", seen.join("\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
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

//! The REST/gRPC port secured (docs/security.md, "API"): HTTPS with HTTP/2 and HTTP/1.1
//! chosen by ALPN, HTTP Basic logins from an htpasswd file (401 with `WWW-Authenticate`
//! without them, `/healthcheck` open), gRPC and WebSocket logins, failed logins logged and
//! limited per address, client certificates, bodies a cross-site form could send refused
//! (415), cross-origin writes and WebSocket upgrades refused (403), plain HTTP on the TLS
//! port refused, and the port bound to loopback unless authenticated or opened on purpose.
//! Certificates are made with the `openssl` command, curl is run as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use brook_server::proto::brook_client::BrookClient;
use brook_server::proto::InfoRequest;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod common;
use common::{free_port, Options, Server};

const USER: &str = "alice";
const PASSWORD: &str = "wonder-Land 1";
const KSQL: &str = "application/vnd.ksql.v1+json";

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

/// PEM files in `dir`: a CA, the server's certificate from it for 127.0.0.1 and localhost,
/// and a client's certificate from it.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn issue(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    let mut req = vec!["req"];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &req);
    std::fs::write(dir.join(&ext), extensions).expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ],
    );
}

fn certificates(dir: &Path) -> Certs {
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
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
    issue(
        dir,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        dir,
        "client",
        "/CN=brook-client",
        "extendedKeyUsage=clientAuth\n",
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// An htpasswd file with one bcrypt line, as `htpasswd -nbB` writes it.
fn users_file(dir: &Path) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let path = dir.join("users");
    std::fs::write(&path, format!("# the API's users\n{USER}:{hash}\n")).expect("users");
    path
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn https(server: &Server) -> String {
    server.api.replacen("http://", "https://", 1)
}

/// An HTTPS client trusting only the test CA; `h1`: HTTP/1.1 only (else ALPN may pick h2).
fn tls_client(ca: &Path, h1: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca.pem");
    let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("CA certificates");
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .tls_certs_only(certs);
    if h1 {
        b = b.http1_only();
    }
    b.build().expect("https client")
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    content_type: Option<&str>,
    login: Option<(&str, &str)>,
    body: &str,
) -> reqwest::Response {
    let mut req = c.post(url).body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some((u, p)) = login {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.expect("an answer")
}

async fn json_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const SHOW: &str = r#"{"ksql":"SHOW STREAMS;","streamsProperties":{}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_logins_answers_only_users_and_refuses_cross_site_bodies() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = certificates(dir.path());
    let users = users_file(dir.path());
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &[
            "--tls-cert",
            path(&certs.cert),
            "--tls-key",
            path(&certs.key),
            "--users",
            path(&users),
        ],
    );
    let seen = server.wait_for("brook-server ready").join("\n");
    assert!(
        seen.contains("REST API listening on https://127.0.0.1:"),
        "{seen}"
    );
    let api = https(&server);
    let h2 = tls_client(&certs.ca, false);
    let h1 = tls_client(&certs.ca, true);

    // The health check answers anyone; everything else wants a login.
    let health = h2
        .get(format!("{api}/healthcheck"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let refused = post(&h2, &format!("{api}/ksql"), Some(KSQL), None, SHOW).await;
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Basic realm=\"Brook\""
    );
    assert_eq!(
        json_body(refused).await,
        json!({"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"})
    );
    for (user, password) in [(USER, "wrong"), ("mallory", PASSWORD)] {
        let r = post(
            &h2,
            &format!("{api}/ksql"),
            Some(KSQL),
            Some((user, password)),
            SHOW,
        )
        .await;
        assert_eq!(r.status().as_u16(), 401, "{user}/{password}");
    }
    for path in ["/info", "/metrics", "/status", "/subjects", "/no-such-path"] {
        let r = h1.get(format!("{api}{path}")).send().await.expect(path);
        assert_eq!(r.status().as_u16(), 401, "{path} without a login");
    }

    // With the login, over HTTP/2 and HTTP/1.1 as ALPN chose.
    for (client, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        let ok = post(
            client,
            &format!("{api}/ksql"),
            Some(KSQL),
            Some((USER, PASSWORD)),
            SHOW,
        )
        .await;
        assert_eq!(ok.version(), version);
        assert_eq!(ok.status().as_u16(), 200);
        assert_eq!(json_body(ok).await[0]["@type"], "streams");
    }

    // Bodies a page of another site could make a browser send: 415, even logged in.
    for (path, ct) in [
        ("/ksql", "text/plain;charset=UTF-8"),
        ("/ksql", "application/x-www-form-urlencoded"),
        ("/query", "multipart/form-data; boundary=x"),
        ("/query-stream", "text/plain"),
        ("/inserts-stream", "application/x-www-form-urlencoded"),
    ] {
        let r = post(
            &h2,
            &format!("{api}{path}"),
            Some(ct),
            Some((USER, PASSWORD)),
            SHOW,
        )
        .await;
        assert_eq!(r.status().as_u16(), 415, "{path} {ct}");
        let body = json_body(r).await;
        assert_eq!(body["error_code"], 41500, "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("application/json")),
            "{body}"
        );
    }
    // A write from a page of another origin: 403.
    let cross = h2
        .post(format!("{api}/ksql"))
        .basic_auth(USER, Some(PASSWORD))
        .header("Content-Type", "application/json")
        .header("Origin", "https://evil.example")
        .body(SHOW)
        .send()
        .await
        .expect("answer");
    assert_eq!(cross.status().as_u16(), 403);

    curl_as_a_user_would(&api, &certs.ca);
    plain_http_on_the_tls_port_is_refused(&server.api);
}

/// curl with the CA, with and without `-u`, and with its default form content type.
fn curl_as_a_user_would(api: &str, ca: &Path) {
    let curl = |extra: &[&str]| -> (String, String) {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", path(ca), "-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("{api}/ksql"))
            .output()
            .expect("the curl command runs (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let errors = String::from_utf8_lossy(&out.stderr);
        (code.trim().to_string(), format!("{body}{errors}"))
    };
    let login = format!("{USER}:{PASSWORD}");
    let json = [
        "-H",
        "Content-Type: application/vnd.ksql.v1+json",
        "-d",
        SHOW,
    ];
    let (code, body) = curl(&[&["-u", login.as_str()][..], &json[..]].concat());
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"@type\":\"streams\""), "{body}");
    let (code, body) = curl(&json);
    assert_eq!(code, "401", "{body}");
    // curl's default for -d is a form body: refused, saying what to send instead.
    let (code, body) = curl(&["-u", login.as_str(), "-d", SHOW]);
    assert_eq!(code, "415", "{body}");
    assert!(body.contains("Content-Type: application/json"), "{body}");
}

/// A plain-HTTP request on the TLS port is answered in plain text: use https://.
fn plain_http_on_the_tls_port_is_refused(http_url: &str) {
    let addr = http_url.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    tcp.write_all(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("answer, then close");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_websockets_take_the_login_and_failures_are_logged_and_limited() {
    let dir = tempfile::tempdir().expect("dir");
    let users = users_file(dir.path());
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &[
            "--users",
            path(&users),
            "--config",
            "brook.authentication.max.failures=3",
        ],
    );
    let seen = server.wait_for("brook-server ready").join("\n");
    assert!(seen.contains("only this machine can reach it"), "{seen}");
    let api = server.api.clone();

    // gRPC: the `authorization` metadata, as REST's header.
    let channel = tonic::transport::Channel::from_shared(api.clone())
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connects");
    let mut grpc = BrookClient::new(channel);
    let status = grpc.info(InfoRequest {}).await.expect_err("no login");
    // The gate's own gRPC status, not tonic's reading of an HTTP 401.
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "Unauthorized", "{status:?}");
    let mut req = tonic::Request::new(InfoRequest {});
    let value = basic(USER, PASSWORD).parse().expect("metadata");
    req.metadata_mut().insert("authorization", value);
    let info = grpc.info(req).await.expect("logged in").into_inner();
    assert_eq!(info.server_status, "RUNNING");

    websocket_upgrades(&api).await;

    // Failed logins: logged with the client's address; past the limit, refused unchecked
    // (even with the right password) for the rest of the window.
    let c = common::client();
    for n in 1..=3 {
        let r = post(
            &c,
            &format!("{api}/ksql"),
            Some(KSQL),
            Some((USER, "guess")),
            SHOW,
        )
        .await;
        assert_eq!(r.status().as_u16(), 401, "guess {n}");
    }
    let lines = server.wait_for("refused unchecked").join("\n");
    assert!(
        lines.contains("authentication failed for user \"alice\" from 127.0.0.1:"),
        "{lines}"
    );
    let blocked = post(
        &c,
        &format!("{api}/ksql"),
        Some(KSQL),
        Some((USER, PASSWORD)),
        SHOW,
    )
    .await;
    assert_eq!(blocked.status().as_u16(), 429);
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(json_body(blocked).await["error_code"], 42900);
}

/// `/ws/query` takes the login on its upgrade, and refuses other sites' pages.
async fn websocket_upgrades(api: &str) {
    let host = api.trim_start_matches("http://");
    let request = json!({"ksql": "SHOW STREAMS;"}).to_string();
    let url = format!("ws://{host}/ws/query?request={}", url_encode(&request));
    let upgrade = |origin: Option<String>, login: bool| {
        let mut req = url.as_str().into_client_request().expect("request");
        if let Some(o) = origin {
            req.headers_mut()
                .insert("Origin", o.parse().expect("origin"));
        }
        if login {
            let value = basic(USER, PASSWORD).parse().expect("header");
            req.headers_mut().insert("Authorization", value);
        }
        tokio_tungstenite::connect_async(req)
    };
    let status = |r: Result<_, tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
    };
    assert_eq!(status(upgrade(None, false).await), 401, "no login");
    let evil = Some("http://evil.example".to_string());
    assert_eq!(status(upgrade(evil, true).await), 403, "cross-origin");
    let own = Some(format!("http://{host}"));
    assert_eq!(status(upgrade(own, true).await), 101, "same origin");
    assert_eq!(
        status(upgrade(None, true).await),
        101,
        "no Origin: not a browser"
    );
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = certificates(dir.path());
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &[
            "--tls-cert",
            path(&certs.cert),
            "--tls-key",
            path(&certs.key),
            "--tls-client-ca",
            path(&certs.ca),
        ],
    );
    let seen = server.wait_for("brook-server ready").join("\n");
    assert!(seen.contains("client certificates required"), "{seen}");
    let api = https(&server);
    let without = tls_client(&certs.ca, false)
        .get(format!("{api}/info"))
        .send()
        .await;
    assert!(
        without.is_err(),
        "answered without a client certificate: {without:?}"
    );
    let mut identity = std::fs::read(&certs.client_cert).expect("client.pem");
    identity.extend(std::fs::read(&certs.client_key).expect("client.key"));
    let pem = std::fs::read(&certs.ca).expect("ca.pem");
    let with = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA"))
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .build()
        .expect("client")
        .get(format!("{api}/info"))
        .send()
        .await
        .expect("answered with a client certificate");
    assert_eq!(with.status().as_u16(), 200);
}

/// `brook-server` with `args`, its log lines as they come; killed when dropped.
struct Process {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    fn start(dir: &Path, args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_brook-server"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--broker-in-memory")
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(args)
            .env("BROOK_LOG", "warn,brook_server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("brook-server starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[brook-server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, lines }
    }

    /// Log lines until one holds `text` or the process exits; all of them, and whether
    /// `text` came.
    fn lines_until(&self, text: &str) -> (String, bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(text);
                    seen.push(line);
                    if hit {
                        return (seen.join("\n"), true);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        (seen.join("\n"), false)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_network_address_without_authentication_needs_insecure_listen() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let open = format!("0.0.0.0:{port}");
    let refused = Process::start(dir.path(), &["--listen", &open]);
    let (log, _) = refused.lines_until("brook-server ready");
    assert!(
        log.contains(&format!("the API would listen on {open}"))
            && log.contains("--insecure-listen"),
        "{log}"
    );
    let mut refused = refused;
    let status = refused.child.wait().expect("exits");
    assert_eq!(status.code(), Some(2), "{log}");

    let opened = Process::start(dir.path(), &["--listen", &open, "--insecure-listen"]);
    let (log, ready) = opened.lines_until("brook-server ready");
    assert!(ready, "{log}");
    assert!(
        log.contains("WITHOUT authentication (--insecure-listen)"),
        "{log}"
    );
    let info = blocking_status(&format!("http://127.0.0.1:{port}/info"));
    assert_eq!(info, 200);
}

/// A GET's status (0: no answer), from a runtime of its own (the test is not async).
fn blocking_status(url: &str) -> u16 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        common::client()
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
}

//! The REPL's client. For `http://` and `https://` servers, ksqlDB's REST API: `/ksql`
//! for statements, `/query-stream` (delimited) for push queries, `/query` for PRINT,
//! `/info` for the version. For `grpc://host:port` (`grpcs://` over TLS), Brook's gRPC API
//! (see `grpc`), which answers with the same entities and rows. The rest of the REPL sees
//! one `Client` either way. A user and password go with every request as HTTP Basic
//! credentials (gRPC: the `authorization` metadata), as ksql's `--user`/`--password` do.

mod grpc;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::ReplError;

/// What a refused request said: ksqlDB's error entity.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerError {
    pub status: u16,
    pub code: Option<u64>,
    pub message: String,
    /// The statement the server refused, as it received it.
    pub statement: Option<String>,
}

impl ServerError {
    /// Reads ksqlDB's `generic_error`/`statement_error` shapes; any other body is shown
    /// as it came, so nothing the server says is lost.
    pub fn from_body(status: u16, body: &str) -> ServerError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match parsed {
            Some(v) if v.get("message").is_some() => ServerError {
                status,
                code: v.get("error_code").and_then(Value::as_u64),
                message: field(&v, "message").unwrap_or_default(),
                statement: field(&v, "statementText"),
            },
            _ => ServerError {
                status,
                code: None,
                message: if body.trim().is_empty() {
                    format!("the server answered HTTP {status}")
                } else {
                    body.trim().to_string()
                },
                statement: None,
            },
        }
    }
}

/// How to log in to the server: ksql's `--user`/`--password`, and the CA to check its TLS
/// certificate against (`--ca`; else the system's CAs).
#[derive(Clone, Default)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("ca", &self.ca)
            .finish()
    }
}

impl Login {
    /// The user and password, when there is a user.
    fn basic(&self) -> Option<(String, String)> {
        let user = self.user.clone()?;
        Some((user, self.password.clone().unwrap_or_default()))
    }

    /// The `--ca` file's certificates.
    fn ca_pem(&self) -> Result<Option<Vec<u8>>, ReplError> {
        let Some(path) = &self.ca else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|source| ReplError::Io {
                path: path.display().to_string(),
                source,
            })
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Set for a `grpc://` or `grpcs://` server: every call goes through it instead of `http`.
    grpc: Option<grpc::Grpc>,
    basic: Option<(String, String)>,
}

impl Client {
    pub fn new(url: &str, login: &Login) -> Result<Client, ReplError> {
        let base = normalize_url(url)?;
        let ca = login.ca_pem()?;
        let grpc = if base.starts_with("grpc://") || base.starts_with("grpcs://") {
            Some(grpc::Grpc::new(&base, login, ca.as_deref())?)
        } else {
            None
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A local server must not be reached through a proxy from the environment.
            .no_proxy();
        if let Some(pem) = &ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ReplError::Usage(format!("--ca: no PEM certificate could be read: {e}"))
            })?;
            // As ksql's truststore: the server's certificate must chain to these.
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| ReplError::Connect {
            url: base.clone(),
            reason: error_chain(&e),
        })?;
        Ok(Client {
            base,
            http,
            grpc,
            basic: login.basic(),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ReplError {
        ReplError::Connect {
            url: self.base.clone(),
            reason: error_chain(&e),
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.login(self.http.post(format!("{}{path}", self.base)))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.login(self.http.get(format!("{}{path}", self.base)))
    }

    fn login(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.basic {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// A refusal, with what to do about a login the server did not accept.
    fn refused(&self, status: u16, body: &str) -> ReplError {
        refused(ServerError::from_body(status, body), self.basic.as_ref())
    }

    /// Runs statements through `/ksql`; the entities the server answered with.
    pub async fn ksql(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<Vec<Value>, ReplError> {
        if let Some(g) = &self.grpc {
            return g.ksql(sql, properties).await;
        }
        let body = json!({"ksql": sql, "streamsProperties": properties});
        let resp = self
            .post("/ksql")
            .header("Content-Type", "application/vnd.ksql.v1+json")
            .header("Accept", "application/vnd.ksql.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !(200..300).contains(&status) {
            return Err(self.refused(status, &text));
        }
        match serde_json::from_str(&text) {
            Ok(Value::Array(entities)) => Ok(entities),
            Ok(other) => Ok(vec![other]),
            Err(e) => Err(ReplError::Protocol(format!("/ksql answered {e}: {text}"))),
        }
    }

    /// Starts a push query through `/query-stream`; its header has been read.
    pub async fn query(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<PushStream, ReplError> {
        if let Some(g) = &self.grpc {
            let (header, rows) = g.query(sql, properties).await?;
            return Ok(PushStream {
                source: RowSource::Grpc(rows),
                query_id: header.query_id,
                columns: header.column_names,
                types: header.column_types,
            });
        }
        let body = json!({"sql": sql, "properties": properties});
        let resp = self
            .post("/query-stream")
            .header("Content-Type", "application/json")
            .header("Accept", "application/vnd.ksqlapi.delimited.v1")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.text().await.map_err(|e| self.unreachable(e))?;
            return Err(self.refused(status, &text));
        }
        let mut stream = PushStream {
            source: RowSource::Rest {
                resp,
                buf: Vec::new(),
            },
            query_id: String::new(),
            columns: Vec::new(),
            types: Vec::new(),
        };
        let head = match stream.next_line().await? {
            Some(line) => line,
            None => {
                return Err(ReplError::Protocol(
                    "the push query ended before its header".into(),
                ))
            }
        };
        if head.get("message").is_some() {
            return Err(ReplError::Server(ServerError::from_body(
                status,
                &head.to_string(),
            )));
        }
        let strings = |k: &str| -> Vec<String> {
            head.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        stream.columns = strings("columnNames");
        stream.types = strings("columnTypes");
        stream.query_id = head
            .get("queryId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(stream)
    }

    /// Starts a PRINT through `/query`, where (as for ksqlDB's CLI) the server streams
    /// plain text lines: the format lines, then one line per record.
    pub async fn print(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<TextStream, ReplError> {
        if let Some(g) = &self.grpc {
            return Ok(TextStream {
                source: TextSource::Grpc(g.print(sql, properties).await?),
            });
        }
        let body = json!({"ksql": sql, "streamsProperties": properties});
        let resp = self
            .post("/query")
            .header("Content-Type", "application/vnd.ksql.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.text().await.map_err(|e| self.unreachable(e))?;
            return Err(self.refused(status, &text));
        }
        Ok(TextStream {
            source: TextSource::Rest {
                resp,
                buf: Vec::new(),
            },
        })
    }

    /// `/info`: the server's `KsqlServerInfo`.
    pub async fn info(&self) -> Result<Value, ReplError> {
        if let Some(g) = &self.grpc {
            return g.info().await;
        }
        let resp = self
            .get("/info")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !(200..300).contains(&status) {
            return Err(self.refused(status, &text));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ReplError::Protocol(format!("/info answered {e}: {text}")))?;
        Ok(v.get("KsqlServerInfo").cloned().unwrap_or(v))
    }
}

/// The schemes the client speaks: REST and gRPC, each plain or over TLS.
const SCHEMES: [&str; 4] = ["http://", "https://", "grpc://", "grpcs://"];

/// Accepts `host:port` as well as a full URL (`http://…`, `https://…`, or
/// `grpc://host:port` / `grpcs://host:port` for the gRPC API), and drops a trailing `/`
/// so paths join.
pub fn normalize_url(url: &str) -> Result<String, ReplError> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(ReplError::Usage("the server address is empty".into()));
    }
    if SCHEMES.iter().any(|s| url.starts_with(s)) {
        Ok(url.to_string())
    } else if url.contains("://") {
        Err(ReplError::Usage(format!(
            "{url}: only http:// and https:// (REST), grpc:// and grpcs:// (gRPC) servers \
             are supported"
        )))
    } else {
        Ok(format!("http://{url}"))
    }
}

/// `error`, with what to do when the server refused the login (401) or stopped checking
/// logins from this address (429).
fn refused(mut error: ServerError, basic: Option<&(String, String)>) -> ReplError {
    let hint = match (error.status, basic) {
        (401, None) => Some(
            "the server requires a user name and password: brook --user NAME (the password \
             is asked for, or give --password or BROOK_PASSWORD)"
                .to_string(),
        ),
        (401, Some((user, _))) => Some(format!(
            "the server did not accept user {user:?} with that password"
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        error.message = format!("{}: {hint}", error.message);
    }
    ReplError::Server(error)
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A running push query: its header, then rows as the server sends them. Dropping it
/// closes the connection, which ends the query on the server.
pub struct PushStream {
    source: RowSource,
    pub query_id: String,
    pub columns: Vec<String>,
    pub types: Vec<String>,
}

/// PRINT's output: text lines as the server sends them. Dropping it closes the
/// connection, which ends the PRINT on the server.
pub struct TextStream {
    source: TextSource,
}

/// Where a push query's rows come from.
enum RowSource {
    /// `/query-stream`'s body, one JSON value per line.
    Rest {
        resp: reqwest::Response,
        buf: Vec<u8>,
    },
    Grpc(grpc::Rows),
}

/// Where PRINT's lines come from.
enum TextSource {
    Rest {
        resp: reqwest::Response,
        buf: Vec<u8>,
    },
    Grpc(grpc::Lines),
}

impl TextStream {
    /// The next non-empty line (blank lines are the server's keep-alives), or `None` at
    /// the end.
    pub async fn next_line(&mut self) -> Result<Option<String>, ReplError> {
        let (resp, buf) = match &mut self.source {
            TextSource::Rest { resp, buf } => (resp, buf),
            TextSource::Grpc(lines) => return lines.next_line().await,
        };
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.trim().is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            match resp.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    buf.push(b'\n');
                }
                Err(e) => {
                    return Err(ReplError::Protocol(format!(
                        "PRINT's stream broke: {}",
                        error_chain(&e)
                    )))
                }
            }
        }
    }
}

/// One line of a push query after its header.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Row(Vec<Value>),
    /// The query failed on the server after it started.
    Error(String),
}

impl PushStream {
    /// The next row, or `None` when the server ended the query (its LIMIT was reached).
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ReplError> {
        if let RowSource::Grpc(rows) = &mut self.source {
            return rows.next().await;
        }
        loop {
            let Some(line) = self.next_line().await? else {
                return Ok(None);
            };
            match line {
                Value::Array(values) => return Ok(Some(StreamItem::Row(values))),
                Value::Object(o) if o.contains_key("message") => {
                    let message = o
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    return Ok(Some(StreamItem::Error(message)));
                }
                // Anything else (a final message from a newer server) is not a row.
                _ => continue,
            }
        }
    }

    /// The next non-empty line of the body, parsed as JSON.
    async fn next_line(&mut self) -> Result<Option<Value>, ReplError> {
        let RowSource::Rest { resp, buf } = &mut self.source else {
            return Err(ReplError::Protocol(
                "a gRPC query has no lines to read".into(),
            ));
        };
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_str(line).map(Some).map_err(|e| {
                    ReplError::Protocol(format!("bad row from the server ({e}): {line}"))
                });
            }
            match resp.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    // A last line without its newline.
                    buf.push(b'\n');
                }
                Err(e) => {
                    return Err(ReplError::Protocol(format!(
                        "the push query's stream broke: {}",
                        error_chain(&e)
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            normalize_url("localhost:8088").ok().as_deref(),
            Some("http://localhost:8088")
        );
        assert_eq!(
            normalize_url("http://h:1/").ok().as_deref(),
            Some("http://h:1")
        );
        assert_eq!(
            normalize_url("https://h:1/").ok().as_deref(),
            Some("https://h:1")
        );
        assert_eq!(
            normalize_url("grpcs://h:1").ok().as_deref(),
            Some("grpcs://h:1")
        );
        assert_eq!(
            normalize_url("grpc://h:1/").ok().as_deref(),
            Some("grpc://h:1")
        );
        assert!(normalize_url("ftp://h:1").is_err());
    }

    #[test]
    fn server_errors() {
        let e = ServerError::from_body(
            400,
            r#"{"@type":"statement_error","error_code":40001,"message":"line 1:8: bad","statementText":"CREATE X;","entities":[]}"#,
        );
        assert_eq!(e.code, Some(40001));
        assert_eq!(e.message, "line 1:8: bad");
        assert_eq!(e.statement.as_deref(), Some("CREATE X;"));
        let e = ServerError::from_body(502, "Bad Gateway");
        assert_eq!(e.message, "Bad Gateway");
        let e = ServerError::from_body(500, "");
        assert_eq!(e.message, "the server answered HTTP 500");
    }
}

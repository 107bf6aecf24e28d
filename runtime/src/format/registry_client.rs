//! A client of Confluent Schema Registry's REST API (or of brook-server's, which serves the
//! same subset), as a [`SchemaRegistry`]: brook-server uses it when pointed at an external
//! registry (`ksql.schema.registry.url`), tests use it to share a server's registry.
//!
//! The trait is synchronous because codecs call it while decoding a batch; the HTTP calls
//! run on a thread of the client's own (with a small tokio runtime for reqwest), and a caller
//! on a multi-threaded tokio runtime waits through `block_in_place`, so it does not stall the
//! other tasks of its worker. Schemas by id never change, so they are cached for good, as
//! are registrations (codecs register their writer schema once per batch).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::registry::{wire, ProtobufSchema, RegisteredSchema, SchemaReference, SchemaRegistry};
use crate::kafka::REDACTED;
use crate::{Result, RuntimeError};

/// Confluent's media type; it also accepts `application/json`.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long one request may take before the caller gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How deep protobuf references may nest before the client stops following them.
const MAX_REFERENCE_DEPTH: usize = 32;

type Reply = std::result::Result<(u16, Value), String>;

struct Job {
    method: Method,
    url: Url,
    body: Option<Value>,
    auth: Option<(String, String)>,
    reply: mpsc::SyncSender<Reply>,
}

/// How the client reaches a registry over HTTPS, and as whom (ksqlDB's
/// `ksql.schema.registry.ssl.*` and `…basic.auth.*` settings, read by the server).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// PEM certificates of the CAs to trust, instead of the system's (as a Java truststore
    /// replaces the JVM's).
    pub ca_pem: Option<Vec<u8>>,
    /// The client's certificate chain and unencrypted private key, PEM (mutual TLS).
    pub identity_pem: Option<Vec<u8>>,
    /// HTTP basic authentication: user and password.
    pub basic_auth: Option<(String, String)>,
    /// Accepts a certificate for another host name (Java's empty
    /// `ssl.endpoint.identification.algorithm`); the chain is still verified.
    pub skip_hostname_verification: bool,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "…"))
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| REDACTED),
            )
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| (user, REDACTED)),
            )
            .field(
                "skip_hostname_verification",
                &self.skip_hostname_verification,
            )
            .finish()
    }
}

/// A Schema Registry reached over HTTP or HTTPS.
pub struct RegistryClient {
    base: Url,
    /// HTTP basic authentication (user, password), from the URL's user info or
    /// [`RegistryClient::with_basic_auth`].
    auth: Option<(String, String)>,
    jobs: Mutex<mpsc::Sender<Job>>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// The password is left out: `Debug` output reaches logs.
impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base.as_str())
            .field("user", &self.auth.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Cache {
    by_id: HashMap<u32, RegisteredSchema>,
    /// Ids of schemas this client registered, by (subject, schema text and references).
    registered: HashMap<(String, String), u32>,
}

fn err(reason: impl Into<String>) -> RuntimeError {
    RuntimeError::FormatSchema {
        reason: reason.into(),
    }
}

impl RegistryClient {
    /// A client of the registry at `url` (`http[s]://[user:password@]host:port[/prefix]`;
    /// user info is sent as HTTP basic authentication), trusting the system's CAs.
    pub fn new(url: &str) -> Result<RegistryClient> {
        RegistryClient::with_options(url, RegistryOptions::default())
    }

    /// A client of the registry at `url` with `options` (whose basic authentication wins
    /// over the URL's user info).
    pub fn with_options(url: &str, options: RegistryOptions) -> Result<RegistryClient> {
        let mut base = parse_base(url)?;
        let from_url = (!base.username().is_empty()).then(|| {
            (
                base.username().to_string(),
                base.password().unwrap_or_default().to_string(),
            )
        });
        // Kept out of the URLs that error messages show.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let auth = options.basic_auth.clone().or(from_url);
        let (tx, rx) = mpsc::channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(format!("schema registry client: {e}")))?;
        let http = http_client(&options)?;
        std::thread::Builder::new()
            .name("schema-registry-client".into())
            .spawn(move || {
                // Ends when the client (the only sender) is dropped; the runtime is dropped
                // here, off any async context.
                while let Ok(job) = rx.recv() {
                    let reply = runtime.block_on(send(&http, &job));
                    let _ = job.reply.send(reply);
                }
            })
            .map_err(|e| err(format!("schema registry client thread: {e}")))?;
        Ok(RegistryClient {
            base,
            auth,
            jobs: Mutex::new(tx),
            cache: Mutex::default(),
        })
    }

    /// Sends `user:password` as HTTP basic authentication (ksqlDB's
    /// `ksql.schema.registry.basic.auth.user.info`).
    #[must_use]
    pub fn with_basic_auth(mut self, user_info: &str) -> RegistryClient {
        let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache only ever gains complete entries, so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `base` + `segments`, each percent-encoded (subjects may hold `/`, `:` …).
    fn url_of(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| err(format!("schema registry URL `{}` has no path", self.base)))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// One request; the status and the JSON body (`null` when empty).
    fn call(&self, method: Method, segments: &[&str], body: Option<Value>) -> Result<(u16, Value)> {
        let url = self.url_of(segments)?;
        let what = format!("{method} {url}");
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Job {
                method,
                url,
                body,
                auth: self.auth.clone(),
                reply: tx,
            })
            .map_err(|_| err("the schema registry client has stopped"))?;
        let wait = || rx.recv_timeout(REQUEST_TIMEOUT + Duration::from_secs(5));
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let reply = if multi_thread {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        };
        match reply {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(err(format!("schema registry: {what}: {e}"))),
            Err(_) => Err(err(format!("schema registry: {what}: no answer"))),
        }
    }

    /// [`RegistryClient::call`], with statuses other than 2xx as errors (Confluent's
    /// `error_code` and `message` in the text), and 404 as `None` when `missing_ok`.
    fn call_ok(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
        missing_ok: bool,
    ) -> Result<Option<Value>> {
        let (status, value) = self.call(method.clone(), segments, body)?;
        if (200..300).contains(&status) {
            return Ok(Some(value));
        }
        if status == 404 && missing_ok {
            return Ok(None);
        }
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        let code = value["error_code"]
            .as_i64()
            .map(|c| format!(" (error {c})"))
            .unwrap_or_default();
        Err(err(format!(
            "schema registry: {method} /{}: {status}{code}: {message}",
            segments.join("/")
        )))
    }

    /// A schema from an answer carrying `schema`, `schemaType` and `references`, with the
    /// files its references bring in fetched.
    fn schema_from(&self, body: &Value, depth: usize) -> Result<RegisteredSchema> {
        let text = body["schema"].as_str().ok_or_else(|| {
            err(format!(
                "schema registry: an answer without `schema`: {body}"
            ))
        })?;
        let named = wire::parse_references(&body["references"])
            .map_err(|e| err(format!("schema registry: {e}")))?;
        let mut resolved = Vec::new();
        self.resolve(&named, &mut resolved, depth)?;
        wire::parse(body["schemaType"].as_str(), text, named, resolved)
            .map_err(|e| err(format!("schema registry: {e}")))
    }

    fn resolve(
        &self,
        refs: &[SchemaReference],
        out: &mut Vec<(String, String)>,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(err("schema registry: references nest too deep"));
        }
        for r in refs {
            if out.iter().any(|(n, _)| *n == r.name) {
                continue;
            }
            let version = r.version.to_string();
            let body = self
                .call_ok(
                    Method::GET,
                    &["subjects", &r.subject, "versions", &version],
                    None,
                    false,
                )?
                .unwrap_or_default();
            match self.schema_from(&body, depth + 1)? {
                RegisteredSchema::Protobuf(p) => {
                    out.push((r.name.clone(), p.text.clone()));
                    for (name, text) in &p.references {
                        if !out.iter().any(|(n, _)| n == name) {
                            out.push((name.clone(), text.clone()));
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "schema registry: reference `{}` is a {} schema",
                        r.name,
                        wire::schema_type(&other)
                    )))
                }
            }
        }
        Ok(())
    }

    /// The references to send for a protobuf schema whose imports came as texts: each
    /// imported file is registered under a subject named after it (Confluent's convention
    /// for references), and referred to at the version it got.
    fn register_imports(&self, p: &ProtobufSchema) -> Result<Vec<SchemaReference>> {
        let mut named = Vec::new();
        for (name, text) in &p.references {
            let import = RegisteredSchema::Protobuf(Arc::new(ProtobufSchema {
                text: text.clone(),
                ..ProtobufSchema::default()
            }));
            let body = self.request_body(&import, &[], None)?;
            self.call_ok(
                Method::POST,
                &["subjects", name, "versions"],
                Some(body.clone()),
                false,
            )?;
            let found = self
                .call_ok(Method::POST, &["subjects", name], Some(body), false)?
                .unwrap_or_default();
            let version = found["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    err(format!(
                        "schema registry: no version for the import `{name}`: {found}"
                    ))
                })?;
            named.push(SchemaReference {
                name: name.clone(),
                subject: name.clone(),
                version,
            });
        }
        Ok(named)
    }

    fn request_body(
        &self,
        schema: &RegisteredSchema,
        named: &[SchemaReference],
        id: Option<u32>,
    ) -> Result<Value> {
        let text = wire::schema_text(schema).map_err(err)?;
        let mut body = json!({"schema": text});
        if !matches!(schema, RegisteredSchema::Avro(_)) {
            body["schemaType"] = wire::schema_type(schema).into();
        }
        if !named.is_empty() {
            body["references"] = named
                .iter()
                .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
                .collect();
        }
        if let Some(id) = id {
            body["id"] = id.into();
        }
        Ok(body)
    }
}

/// `url` as the base of every request: http or https, with a trailing `/`. The message of a
/// bad URL leaves out its user info.
fn parse_base(url: &str) -> Result<Url> {
    let trimmed = url.trim().trim_end_matches('/');
    let base = Url::parse(&format!("{trimmed}/")).map_err(|e| {
        err(format!(
            "schema registry URL `{}`: {e}",
            without_user_info(trimmed)
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(err(format!(
            "schema registry URL `{}`: only http:// and https:// are supported",
            without_user_info(trimmed)
        )));
    }
    Ok(base)
}

/// `url` without anything between `//` and `@` (a password may be there).
fn without_user_info(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}//{}", &url[..start], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The HTTP client, trusting `options`' CAs (or the system's) and presenting its
/// certificate.
fn http_client(options: &RegistryOptions) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
    if let Some(pem) = &options.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| err(format!("schema registry CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(err(
                "schema registry CA certificates: no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some(pem) = &options.identity_pem {
        // reqwest's message does not quote the key.
        let identity = reqwest::Identity::from_pem(pem).map_err(|e| {
            err(format!(
                "schema registry client certificate: {e} (a PEM certificate and an unencrypted \
                 PEM private key are expected)"
            ))
        })?;
        builder = builder.identity(identity);
    }
    if options.skip_hostname_verification {
        builder = builder.tls_danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|e| err(format!("schema registry client: {}", causes(&e))))
}

/// An error with its causes: reqwest's own text leaves out why a TLS handshake failed.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

async fn send(http: &reqwest::Client, job: &Job) -> Reply {
    let mut req = http
        .request(job.method.clone(), job.url.clone())
        .header("Accept", format!("{MEDIA_TYPE}, application/json"));
    if let Some((user, password)) = &job.auth {
        req = req.basic_auth(user, Some(password));
    }
    if let Some(body) = &job.body {
        req = req
            .header("Content-Type", MEDIA_TYPE)
            .body(body.to_string());
    }
    let resp = req.send().await.map_err(|e| causes(&e))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| causes(&e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Value::Null));
    }
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        // Not JSON (a proxy's error page): keep the text for the error message.
        json!({"message": String::from_utf8_lossy(&bytes)})
    });
    Ok((status, value))
}

impl SchemaRegistry for RegistryClient {
    fn register_schema(
        &self,
        subject: &str,
        schema: RegisteredSchema,
        id: Option<u32>,
    ) -> Result<u32> {
        let text = wire::schema_text(&schema).map_err(err)?;
        let key = (
            subject.to_string(),
            format!("{}\0{text}\0{:?}", wire::schema_type(&schema), id),
        );
        if let Some(id) = self.cache().registered.get(&key) {
            return Ok(*id);
        }
        let named = match &schema {
            RegisteredSchema::Protobuf(p) if p.named.is_empty() && !p.references.is_empty() => {
                self.register_imports(p)?
            }
            RegisteredSchema::Protobuf(p) => p.named.clone(),
            _ => Vec::new(),
        };
        let body = self.request_body(&schema, &named, id)?;
        let answer = self
            .call_ok(
                Method::POST,
                &["subjects", subject, "versions"],
                Some(body),
                false,
            )?
            .unwrap_or_default();
        let got = answer["id"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| err(format!("schema registry: no id in the answer {answer}")))?;
        let mut cache = self.cache();
        cache.registered.insert(key, got);
        cache.by_id.entry(got).or_insert(schema);
        Ok(got)
    }

    fn get(&self, id: u32) -> Result<Option<RegisteredSchema>> {
        if let Some(s) = self.cache().by_id.get(&id) {
            return Ok(Some(s.clone()));
        }
        let id_text = id.to_string();
        let Some(body) = self.call_ok(Method::GET, &["schemas", "ids", &id_text], None, true)?
        else {
            return Ok(None);
        };
        let schema = self.schema_from(&body, 0)?;
        self.cache().by_id.insert(id, schema.clone());
        Ok(Some(schema))
    }

    fn latest_schema(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        let Some(body) = self.call_ok(
            Method::GET,
            &["subjects", subject, "versions", "latest"],
            None,
            true,
        )?
        else {
            return Ok(None);
        };
        let id = body["id"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| err(format!("schema registry: no id in the answer {body}")))?;
        let schema = self.schema_from(&body, 0)?;
        self.cache().by_id.insert(id, schema.clone());
        Ok(Some((id, schema)))
    }

    fn subjects(&self) -> Result<Vec<String>> {
        let body = self
            .call_ok(Method::GET, &["subjects"], None, false)?
            .unwrap_or_default();
        let mut subjects: Vec<String> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        subjects.sort();
        Ok(subjects)
    }

    fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        let Some(body) =
            self.call_ok(Method::GET, &["subjects", subject, "versions"], None, true)?
        else {
            return Ok(Vec::new());
        };
        // The REST API lists version numbers; the trait wants each version's id.
        let mut ids = Vec::new();
        for v in body.as_array().into_iter().flatten() {
            let version = v.to_string();
            let answer = self
                .call_ok(
                    Method::GET,
                    &["subjects", subject, "versions", &version],
                    None,
                    false,
                )?
                .unwrap_or_default();
            let id = answer["id"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| err(format!("schema registry: no id in the answer {answer}")))?;
            ids.push(id);
        }
        Ok(ids)
    }

    fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let Some(body) = self.call_ok(Method::DELETE, &["subjects", subject], None, true)? else {
            return Ok(Vec::new());
        };
        self.cache().registered.retain(|(s, _), _| s != subject);
        Ok(body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Answers one request with `status` and `body`; returns the request's head.
    fn serve_once(
        listener: TcpListener,
        status: &'static str,
        body: &'static str,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("a connection");
            let mut buf = vec![0u8; 8192];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("reads");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {MEDIA_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).expect("writes");
            String::from_utf8_lossy(&head).into_owned()
        })
    }

    #[test]
    fn user_info_is_sent_as_basic_auth_and_errors_carry_confluents_codes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let server = serve_once(listener, "200 OK", r#"["a-value"]"#);
        let client =
            RegistryClient::new(&format!("http://user:secret@127.0.0.1:{port}/")).expect("client");
        assert!(!client.url().contains("secret"));
        assert_eq!(client.subjects().expect("subjects"), vec!["a-value"]);
        let head = server.join().expect("served").to_ascii_lowercase();
        assert!(head.starts_with("get /subjects "), "{head}");
        // base64("user:secret")
        assert!(
            head.contains("authorization: basic dxnlcjpzzwnyzxq="),
            "{head}"
        );

        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let server = serve_once(
            listener,
            "500 Internal Server Error",
            r#"{"error_code": 50001, "message": "store down"}"#,
        );
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}"))
            .expect("client")
            .with_basic_auth("k:v");
        let e = client
            .get(3)
            .expect_err("a server error is an error")
            .to_string();
        assert!(e.contains("50001") && e.contains("store down"), "{e}");
        let head = server.join().expect("served").to_ascii_lowercase();
        assert!(head.starts_with("get /schemas/ids/3 "), "{head}");
        assert!(head.contains("authorization: basic azp2"), "{head}");
        let e = RegistryClient::new("ftp://user:secret@registry:8081")
            .expect_err("only http and https")
            .to_string();
        assert!(
            e.contains("only http:// and https://") && !e.contains("secret"),
            "{e}"
        );
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate from it (PEM,
    /// made with the openssl command): (CA, server chain, server key, client cert+key).
    fn pki(dir: &std::path::Path) -> [Vec<u8>; 4] {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command runs (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = "ec_paramgen_curve:prime256v1";
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            ec,
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("san");
        // Extensions also make the client's an X.509 v3 certificate, which rustls requires.
        std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for (name, ext) in [("server", "san.cnf"), ("client", "client.cnf")] {
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                ec,
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        let read = |n: &str| std::fs::read(dir.join(n)).expect("pem");
        let mut client = read("client.pem");
        client.extend(read("client.key"));
        [
            read("ca.pem"),
            read("server.pem"),
            read("server.key"),
            client,
        ]
    }

    /// Answers one HTTPS request, requiring a client certificate from `ca`; returns the
    /// request's head.
    fn serve_tls_once(
        listener: TcpListener,
        [ca, chain, key]: [Vec<u8>; 3],
    ) -> std::thread::JoinHandle<String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.expect("ca")).expect("root");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let certs = CertificateDer::pem_slice_iter(&chain)
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("chain");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, PrivateKeyDer::from_pem_slice(&key).expect("key"))
            .expect("server config");
        std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("a connection");
            let conn = rustls::ServerConnection::new(Arc::new(config)).expect("tls");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return String::from_utf8_lossy(&head).into_owned(),
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"["a-value"]"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {MEDIA_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(answer.as_bytes());
            let _ = tls.flush();
            String::from_utf8_lossy(&head).into_owned()
        })
    }

    #[test]
    fn https_with_a_custom_ca_a_client_certificate_and_basic_auth() {
        let dir = tempfile::tempdir().expect("dir");
        let [ca, chain, key, client] = pki(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let server = serve_tls_once(listener, [ca.clone(), chain.clone(), key.clone()]);
        let options = RegistryOptions {
            ca_pem: Some(ca.clone()),
            identity_pem: Some(client.clone()),
            basic_auth: Some(("sr-user".into(), "sr-secret".into())),
            skip_hostname_verification: false,
        };
        let c = RegistryClient::with_options(&url, options.clone()).expect("client");
        assert_eq!(c.subjects().expect("subjects"), vec!["a-value"]);
        let head = server.join().expect("served").to_ascii_lowercase();
        assert!(head.starts_with("get /subjects "), "{head}");
        // base64("sr-user:sr-secret")
        assert!(
            head.contains("authorization: basic c3itdxnlcjpzci1zzwnyzxq="),
            "{head}"
        );
        assert!(!format!("{c:?} {options:?}").contains("sr-secret"));

        // Without the CA (the system's trust the test CA not) the handshake fails, and
        // says why, without the password.
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let server = serve_tls_once(listener, [ca, chain, key]);
        let untrusting = RegistryOptions {
            ca_pem: None,
            ..options
        };
        let e = RegistryClient::with_options(&url, untrusting)
            .expect("client")
            .subjects()
            .expect_err("an unknown CA")
            .to_string();
        assert!(e.to_ascii_lowercase().contains("certificate"), "{e}");
        assert!(!e.contains("sr-secret"), "{e}");
        let _ = server.join();

        let e = RegistryClient::with_options(
            "https://127.0.0.1:1",
            RegistryOptions {
                ca_pem: Some(b"no certificate here".to_vec()),
                ..RegistryOptions::default()
            },
        )
        .expect_err("no CA certificate")
        .to_string();
        assert!(e.contains("CA certificates"), "{e}");
    }
}

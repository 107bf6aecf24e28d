//! The process's schema registry served over Confluent Schema Registry's REST API, on the
//! ksqlDB REST port: producers and consumers with Confluent's serializers (and ksqlDB's
//! tools) use `schema.registry.url=http://<brook>:8088` to register the schemas Brook reads
//! and to find those it writes. The paths (`/subjects…`, `/schemas…`, `/config`) do not
//! clash with ksqlDB's.
//!
//! The subset clients use: register (`POST /subjects/{s}/versions`, with `schemaType`,
//! `references` and, as in Confluent's IMPORT mode, an optional `id`), look up
//! (`POST /subjects/{s}`), read by id and by subject version, list, and delete a subject.
//! Errors are Confluent's `{"error_code": 40401, "message": "…"}`. No compatibility checks:
//! `/config` says `NONE`.
//!
//! [`FileRegistry`] is the server's own registry: in memory, with every new subject version
//! and deletion appended to a file in the data directory and replayed at start, so ids
//! survive a restart (records in topics keep naming them).

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use brook_runtime::format::registry::{wire, InMemoryRegistry, RegisteredSchema, SchemaRegistry};
use brook_runtime::{Result as RuntimeResult, RuntimeError};
use serde_json::{json, Value};

/// Confluent's media type, which its clients send and accept.
pub const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

// Confluent's error codes (`io.confluent.kafka.schemaregistry.rest.exceptions.Errors`).
const SUBJECT_NOT_FOUND: u32 = 40401;
const VERSION_NOT_FOUND: u32 = 40402;
const SCHEMA_NOT_FOUND: u32 = 40403;
const INVALID_SCHEMA: u32 = 42201;
const INVALID_VERSION: u32 = 42202;
const OPERATION_NOT_PERMITTED: u32 = 42205;
const STORE_ERROR: u32 = 50001;

/// The Schema Registry routes over `registry`.
pub fn routes(registry: Arc<dyn SchemaRegistry>) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route(
            "/subjects/{subject}",
            axum::routing::post(lookup).delete(delete_subject),
        )
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/schemas/ids/{id}/schema", get(get_by_id_schema))
        .route("/schemas/ids/{id}/versions", get(get_id_versions))
        .route("/schemas/types", get(schema_types))
        .route("/config", get(config))
        .with_state(registry)
}

type Registry = State<Arc<dyn SchemaRegistry>>;

/// A failed request, answered as Confluent answers it.
struct Failure {
    status: StatusCode,
    code: u32,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code,
            message: message.into(),
        }
    }

    fn subject_not_found(subject: &str) -> Failure {
        Failure::new(
            StatusCode::NOT_FOUND,
            SUBJECT_NOT_FOUND,
            format!("Subject '{subject}' not found."),
        )
    }

    fn invalid_schema(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, INVALID_SCHEMA, message)
    }

    /// The registry itself failed (a client of an external one that cannot reach it).
    fn store(e: impl std::fmt::Display) -> Failure {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            STORE_ERROR,
            e.to_string(),
        )
    }
}

type Answer = Result<Value, Failure>;

/// `application/json` for a client that asks only for it, else Confluent's media type.
fn content_type(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("application/json") && !accept.contains("schemaregistry") {
        "application/json"
    } else {
        MEDIA_TYPE
    }
}

fn respond(headers: &HeaderMap, answer: Answer) -> Response {
    let ct = HeaderValue::from_static(content_type(headers));
    match answer {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, ct)],
            body.to_string(),
        )
            .into_response(),
        Err(f) => (
            f.status,
            [(header::CONTENT_TYPE, ct)],
            json!({"error_code": f.code, "message": f.message}).to_string(),
        )
            .into_response(),
    }
}

/// The request body as JSON (Confluent's clients send `application/vnd.schemaregistry.v1+json`
/// or `application/json`; the header is not checked).
fn parse_body(body: &Bytes) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            400,
            format!("Unrecognized JSON in the request body: {e}"),
        )
    })
}

/// The schema a register or lookup request describes, its references resolved.
fn requested_schema(
    registry: &dyn SchemaRegistry,
    body: &Value,
) -> Result<RegisteredSchema, Failure> {
    let text = match &body["schema"] {
        Value::String(s) if !s.trim().is_empty() => s.as_str(),
        Value::Null | Value::String(_) => return Err(Failure::invalid_schema("Empty schema")),
        _ => return Err(Failure::invalid_schema("`schema` must be a string")),
    };
    let schema_type = match &body["schemaType"] {
        Value::String(t) => Some(t.as_str()),
        Value::Null => None,
        _ => return Err(Failure::invalid_schema("`schemaType` must be a string")),
    };
    let named = wire::parse_references(&body["references"]).map_err(Failure::invalid_schema)?;
    let resolved = wire::resolve_references(registry, &named).map_err(Failure::invalid_schema)?;
    wire::parse(schema_type, text, named, resolved).map_err(Failure::invalid_schema)
}

/// What makes two schemas the same for a lookup: their type, text and references.
fn same(a: &RegisteredSchema, b: &RegisteredSchema) -> bool {
    let refs = |s: &RegisteredSchema| match s {
        RegisteredSchema::Protobuf(p) => p.references.clone(),
        _ => Vec::new(),
    };
    wire::schema_type(a) == wire::schema_type(b)
        && wire::schema_text(a).ok() == wire::schema_text(b).ok()
        && refs(a) == refs(b)
}

/// `{"subject", "version", "id", "schema", …}`, as Confluent describes a subject's version.
fn version_body(subject: &str, version: usize, id: u32, schema: &RegisteredSchema) -> Answer {
    let mut body = wire::schema_body(schema).map_err(Failure::store)?;
    body.insert("subject".into(), subject.into());
    body.insert("version".into(), version.into());
    body.insert("id".into(), id.into());
    Ok(Value::Object(body))
}

fn versions_of(registry: &dyn SchemaRegistry, subject: &str) -> Result<Vec<u32>, Failure> {
    let versions = registry.versions(subject).map_err(Failure::store)?;
    if versions.is_empty() {
        return Err(Failure::subject_not_found(subject));
    }
    Ok(versions)
}

/// The version `version` names (a number from 1, `latest` or `-1`) and its id.
fn pick_version(
    registry: &dyn SchemaRegistry,
    subject: &str,
    version: &str,
) -> Result<(usize, u32), Failure> {
    let versions = versions_of(registry, subject)?;
    let n = match version {
        "latest" | "-1" => versions.len(),
        v => match v.parse::<i64>() {
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => {
                usize::try_from(n).unwrap_or(usize::MAX)
            }
            _ => {
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    INVALID_VERSION,
                    format!(
                        "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
                    ),
                ))
            }
        },
    };
    let id = versions.get(n - 1).copied().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            VERSION_NOT_FOUND,
            format!("Version {version} not found."),
        )
    })?;
    Ok((n, id))
}

fn schema_of(registry: &dyn SchemaRegistry, id: u32) -> Result<RegisteredSchema, Failure> {
    registry.get(id).map_err(Failure::store)?.ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            SCHEMA_NOT_FOUND,
            format!("Schema {id} not found"),
        )
    })
}

fn parse_id(id: &str) -> Result<u32, Failure> {
    id.parse().map_err(|_| {
        Failure::new(
            StatusCode::NOT_FOUND,
            SCHEMA_NOT_FOUND,
            format!("Schema {id} not found"),
        )
    })
}

async fn list_subjects(State(registry): Registry, headers: HeaderMap) -> Response {
    let answer = registry
        .subjects()
        .map(|s| json!(s))
        .map_err(Failure::store);
    respond(&headers, answer)
}

async fn list_versions(
    State(registry): Registry,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = versions_of(registry.as_ref(), &subject)
        .map(|v| Value::from((1..=v.len()).collect::<Vec<_>>()));
    respond(&headers, answer)
}

async fn register(
    State(registry): Registry,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        &headers,
        register_answer(registry.as_ref(), &subject, &body),
    )
}

fn register_answer(registry: &dyn SchemaRegistry, subject: &str, body: &Bytes) -> Answer {
    let body = parse_body(body)?;
    let schema = requested_schema(registry, &body)?;
    let id = match &body["id"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .filter(|i| *i > 0)
                .ok_or_else(|| Failure::invalid_schema("`id` must be a positive integer"))?,
        ),
    };
    // An id asked for (Confluent's IMPORT mode) must not replace another schema.
    if let Some(id) = id {
        if let Some(existing) = registry.get(id).map_err(Failure::store)? {
            if !same(&existing, &schema) {
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    OPERATION_NOT_PERMITTED,
                    format!("Overwrite new schema with id {id} is not permitted."),
                ));
            }
        }
    }
    let id = registry
        .register_schema(subject, schema, id)
        .map_err(Failure::store)?;
    Ok(json!({ "id": id }))
}

async fn lookup(
    State(registry): Registry,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&headers, lookup_answer(registry.as_ref(), &subject, &body))
}

fn lookup_answer(registry: &dyn SchemaRegistry, subject: &str, body: &Bytes) -> Answer {
    let body = parse_body(body)?;
    let wanted = requested_schema(registry, &body)?;
    let versions = versions_of(registry, subject)?;
    for (i, id) in versions.iter().enumerate() {
        let schema = schema_of(registry, *id)?;
        if same(&schema, &wanted) {
            return version_body(subject, i + 1, *id, &schema);
        }
    }
    Err(Failure::new(
        StatusCode::NOT_FOUND,
        SCHEMA_NOT_FOUND,
        "Schema not found",
    ))
}

async fn delete_subject(
    State(registry): Registry,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = match registry.delete_subject(&subject) {
        Err(e) => Err(Failure::store(e)),
        Ok(deleted) if deleted.is_empty() => Err(Failure::subject_not_found(&subject)),
        Ok(deleted) => Ok(json!(deleted)),
    };
    respond(&headers, answer)
}

async fn get_version(
    State(registry): Registry,
    Path((subject, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let answer = pick_version(registry.as_ref(), &subject, &version).and_then(|(n, id)| {
        let schema = schema_of(registry.as_ref(), id)?;
        version_body(&subject, n, id, &schema)
    });
    respond(&headers, answer)
}

/// The bare schema: Avro and JSON Schema as JSON, protobuf as text (a JSON string).
fn bare(schema: &RegisteredSchema) -> Answer {
    let text = wire::schema_text(schema).map_err(Failure::store)?;
    Ok(match schema {
        RegisteredSchema::Protobuf(_) => Value::String(text),
        _ => serde_json::from_str(&text).map_err(Failure::store)?,
    })
}

async fn get_version_schema(
    State(registry): Registry,
    Path((subject, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let answer = pick_version(registry.as_ref(), &subject, &version)
        .and_then(|(_, id)| bare(&schema_of(registry.as_ref(), id)?));
    respond(&headers, answer)
}

async fn get_by_id(
    State(registry): Registry,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = parse_id(&id)
        .and_then(|id| schema_of(registry.as_ref(), id))
        .and_then(|schema| {
            wire::schema_body(&schema)
                .map(Value::Object)
                .map_err(Failure::store)
        });
    respond(&headers, answer)
}

async fn get_by_id_schema(
    State(registry): Registry,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = parse_id(&id)
        .and_then(|id| schema_of(registry.as_ref(), id))
        .and_then(|schema| bare(&schema));
    respond(&headers, answer)
}

/// The subject versions that hold schema `id`.
async fn get_id_versions(
    State(registry): Registry,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(&headers, id_versions(registry.as_ref(), &id))
}

fn id_versions(registry: &dyn SchemaRegistry, id: &str) -> Answer {
    let id = parse_id(id)?;
    schema_of(registry, id)?;
    let mut found = Vec::new();
    for subject in registry.subjects().map_err(Failure::store)? {
        let versions = registry.versions(&subject).map_err(Failure::store)?;
        for (i, v) in versions.iter().enumerate() {
            if *v == id {
                found.push(json!({"subject": subject, "version": i + 1}));
            }
        }
    }
    Ok(Value::Array(found))
}

async fn schema_types(headers: HeaderMap) -> Response {
    respond(&headers, Ok(json!(["JSON", "PROTOBUF", "AVRO"])))
}

/// Brook checks no compatibility between a subject's versions.
async fn config(headers: HeaderMap) -> Response {
    respond(&headers, Ok(json!({"compatibilityLevel": "NONE"})))
}

/// The server's registry: an [`InMemoryRegistry`] whose changes are appended, one JSON line
/// each, to a file that [`FileRegistry::open`] replays: `{"subject", "id", "schemaType",
/// "schema", "references", "imports"}` for a new version, `{"delete": subject}` for a
/// deletion. Re-registering what a subject already has (writers do, every batch) writes
/// nothing.
#[derive(Debug)]
pub struct FileRegistry {
    inner: InMemoryRegistry,
    path: PathBuf,
    log: Mutex<std::fs::File>,
}

impl FileRegistry {
    /// Replays `path` (when it exists) and appends to it from then on. A last line without
    /// its newline was torn by a crash mid-write (its schema was never published: a line is
    /// written before its schema is): it is cut off, so the next line does not join it. Any
    /// other line that does not replay is an error naming it — skipping it would lose a
    /// schema id that records on Kafka may carry.
    pub fn open(path: &FsPath) -> RuntimeResult<FileRegistry> {
        let inner = InMemoryRegistry::new();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            let text = std::fs::read(path)?;
            let whole = repair_torn_tail(path, &text)?;
            for (n, line) in text[..whole].split(|b| *b == b'\n').enumerate() {
                let line = String::from_utf8_lossy(line);
                if line.trim().is_empty() {
                    continue;
                }
                replay(&inner, &line).map_err(|e| RuntimeError::FormatSchema {
                    reason: format!(
                        "schema registry file {}: line {} cannot be read ({e}); restore it \
                         from a backup (schemas it holds may be in use)",
                        path.display(),
                        n + 1
                    ),
                })?;
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(FileRegistry {
            inner,
            path: path.to_path_buf(),
            log: Mutex::new(log),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, std::fs::File> {
        // Every write is one `write_all`: a poisoned lock leaves the file as consistent as a
        // crash would, which `open` repairs.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, log: &mut std::fs::File, entry: &Value) -> RuntimeResult<()> {
        let mut line = entry.to_string();
        line.push('\n');
        log.write_all(line.as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(|e| RuntimeError::FormatSchema {
                reason: format!("cannot record a schema in {}: {e}", self.path.display()),
            })
    }
}

/// The length of `text`'s whole lines. A torn last line is cut off the file (and logged).
fn repair_torn_tail(path: &FsPath, text: &[u8]) -> RuntimeResult<usize> {
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        tracing::warn!(
            "schema registry file {}: its last line was torn by a crash mid-write ({} bytes); cut off",
            path.display(),
            text.len() - whole
        );
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(whole as u64)?;
        file.sync_data()?;
    }
    Ok(whole)
}

fn replay(registry: &InMemoryRegistry, line: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if let Some(subject) = v["delete"].as_str() {
        registry
            .delete_subject(subject)
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let subject = v["subject"].as_str().ok_or("no subject")?;
    let id = v["id"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("no id")?;
    let text = v["schema"].as_str().ok_or("no schema")?;
    let named = wire::parse_references(&v["references"])?;
    let imports: Vec<(String, String)> = v["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i[0].as_str()?.to_string(), i[1].as_str()?.to_string())))
        .collect();
    let schema = wire::parse(v["schemaType"].as_str(), text, named, imports)?;
    registry
        .register_schema(subject, schema, Some(id))
        .map_err(|e| e.to_string())?;
    Ok(())
}

impl SchemaRegistry for FileRegistry {
    fn register_schema(
        &self,
        subject: &str,
        schema: RegisteredSchema,
        id: Option<u32>,
    ) -> RuntimeResult<u32> {
        // One registration at a time, each recorded before it is published: an id that is
        // handed out is an id a restart gives back.
        let mut log = self.log();
        let before = self.inner.versions(subject)?;
        let entry = |id: u32| -> RuntimeResult<Value> {
            let text = wire::schema_text(&schema)
                .map_err(|reason| RuntimeError::FormatSchema { reason })?;
            let imports: Vec<Value> = match &schema {
                RegisteredSchema::Protobuf(p) => {
                    p.references.iter().map(|(n, t)| json!([n, t])).collect()
                }
                _ => Vec::new(),
            };
            Ok(json!({
                "subject": subject,
                "id": id,
                "schemaType": wire::schema_type(&schema),
                "schema": text,
                "references": wire::references_json(&schema),
                "imports": imports,
            }))
        };
        let id = self.inner.id_for(subject, &schema, id)?;
        if !before.contains(&id) {
            self.append(&mut log, &entry(id)?)?;
        }
        self.inner.register_schema(subject, schema, Some(id))
    }

    fn get(&self, id: u32) -> RuntimeResult<Option<RegisteredSchema>> {
        self.inner.get(id)
    }

    fn latest_schema(&self, subject: &str) -> RuntimeResult<Option<(u32, RegisteredSchema)>> {
        self.inner.latest_schema(subject)
    }

    fn subjects(&self) -> RuntimeResult<Vec<String>> {
        self.inner.subjects()
    }

    fn versions(&self, subject: &str) -> RuntimeResult<Vec<u32>> {
        self.inner.versions(subject)
    }

    fn delete_subject(&self, subject: &str) -> RuntimeResult<Vec<u32>> {
        let mut log = self.log();
        if self.inner.versions(subject)?.is_empty() {
            return Ok(Vec::new());
        }
        self.append(&mut log, &json!({ "delete": subject }))?;
        self.inner.delete_subject(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_registry_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("schemas.jsonl");
        let proto = "syntax = \"proto3\"; message M { int32 a = 1; }";
        {
            let r = FileRegistry::open(&path).expect("opens");
            let avro = wire::parse(None, r#""int""#, Vec::new(), Vec::new()).expect("avro");
            assert_eq!(r.register_schema("a-value", avro.clone(), None).unwrap(), 1);
            // Again: no new line.
            assert_eq!(r.register_schema("a-value", avro, None).unwrap(), 1);
            let p = wire::parse(Some("PROTOBUF"), proto, Vec::new(), Vec::new()).expect("proto");
            assert_eq!(r.register_schema("p-value", p, Some(40)).unwrap(), 40);
            let long = wire::parse(None, r#""long""#, Vec::new(), Vec::new()).expect("avro");
            r.register_schema("gone", long, None).unwrap();
            r.delete_subject("gone").unwrap();
        }
        let text = std::fs::read_to_string(&path).expect("the file");
        assert_eq!(text.lines().count(), 4, "{text}");
        // A torn last line is cut off.
        std::fs::write(&path, format!("{text}{{\"subject\": \"x")).expect("write");
        let r = FileRegistry::open(&path).expect("reopens");
        assert_eq!(std::fs::read_to_string(&path).expect("the file"), text);
        assert_eq!(r.subjects().unwrap(), vec!["a-value", "p-value"]);
        assert_eq!(
            r.latest_schema("p-value").unwrap().map(|(id, _)| id),
            Some(40)
        );
        assert!(matches!(r.get(1).unwrap(), Some(RegisteredSchema::Avro(_))));
        assert!(
            r.get(41).unwrap().is_some(),
            "deleted subjects keep their ids"
        );
        // New ids go on from the highest replayed.
        let json = wire::parse(Some("JSON"), "{}", Vec::new(), Vec::new()).expect("json");
        assert_eq!(r.register_schema("j", json, None).unwrap(), 42);
        drop(r);
        // What was appended after the repair is read back (it did not join the torn line).
        let r = FileRegistry::open(&path).expect("reopens");
        assert_eq!(r.subjects().unwrap(), vec!["a-value", "j", "p-value"]);
    }

    #[test]
    fn a_damaged_line_before_the_last_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("schemas.jsonl");
        std::fs::write(&path, "{\"subject\": \"x\n{\"delete\": \"y\"}\n").expect("write");
        let e = FileRegistry::open(&path).expect_err("refused").to_string();
        assert!(e.contains("line 1 cannot be read"), "{e}");
    }

    #[test]
    fn a_schema_is_published_only_once_recorded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("schemas.jsonl");
        std::fs::write(&path, "").expect("write");
        // A log that refuses writes, as a full disk would.
        let r = FileRegistry {
            inner: InMemoryRegistry::new(),
            path: path.clone(),
            log: Mutex::new(std::fs::File::open(&path).expect("read-only")),
        };
        let avro = wire::parse(None, r#""int""#, Vec::new(), Vec::new()).expect("avro");
        let e = r.register_schema("a-value", avro.clone(), None);
        assert!(e.is_err(), "{e:?}");
        assert!(
            r.get(1).unwrap().is_none(),
            "an unrecorded id was handed out"
        );
        assert!(r.subjects().unwrap().is_empty());
        // Once the log takes writes again, the same id is given.
        *r.log() = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("log");
        assert_eq!(r.register_schema("a-value", avro, None).unwrap(), 1);
        assert!(r.delete_subject("a-value").is_ok());
        *r.log() = std::fs::File::open(&path).expect("read-only");
        let long = wire::parse(None, r#""long""#, Vec::new(), Vec::new()).expect("avro");
        assert!(r.register_schema("b", long, None).is_err());
    }
}

//! Runs ksqlDB's query-validation tests (QTT) on the deterministic driver.
//!
//! Each test file holds entries with statements, input records and expected output
//! records; entries expand over their `format` and `config` lists. Outputs are compared the
//! way ksqlDB's test driver compares them: per topic, in order, object fields by name,
//! doubles within 1e-6, timestamps only when given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use brook_planner::catalog::Source;
use brook_planner::schema::{Column, Namespace};
use brook_runtime::driver::{Driver, DriverError};
use brook_runtime::format;
use serde_json::Value;

/// The outcome of one expanded test case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `file.json: test name[ - FORMAT][ - CONFIG]`
    pub id: String,
    pub outcome: Outcome,
}

/// Where the suite lives: `BROOK_QTT_DIR`, else `../shared/qtt` from the workspace root.
pub fn default_dir() -> PathBuf {
    std::env::var_os("BROOK_QTT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../shared/qtt"))
}

/// The test files under a path (a file, a QTT root or its `query-validation-tests`).
pub fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let dir = if path.join("query-validation-tests").is_dir() {
        path.join("query-validation-tests")
    } else {
        path.to_path_buf()
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How cases run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Restart every stateful query after each input record from its changelog alone
    /// (see `Driver::restart_every_record`): results must not change.
    pub restart_every_record: bool,
}

/// Runs every case of one file.
pub fn run_file(path: &Path) -> Vec<CaseResult> {
    run_file_with(path, Options::default())
}

/// Runs every case of one file, as `options` say.
pub fn run_file_with(path: &Path, options: Options) -> Vec<CaseResult> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let json: Value = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(j) => j,
        Err(e) => {
            return vec![CaseResult {
                id: format!("{file}: <file>"),
                outcome: Outcome::Fail(format!("cannot read: {e}")),
            }]
        }
    };
    let mut results = Vec::new();
    for test in json["tests"].as_array().into_iter().flatten() {
        let name = test["name"].as_str().unwrap_or("?");
        let formats: Vec<Option<String>> = match test["format"].as_array() {
            Some(f) => f.iter().map(|v| v.as_str().map(str::to_string)).collect(),
            None => vec![None],
        };
        let configs: Vec<Option<String>> = match test["config"].as_array() {
            Some(c) => c.iter().map(|v| v.as_str().map(str::to_string)).collect(),
            None => vec![None],
        };
        for fmt in &formats {
            for cfg in &configs {
                let mut id = format!("{file}: {name}");
                if let Some(f) = fmt {
                    id.push_str(&format!(" - {f}"));
                }
                if let Some(c) = cfg {
                    id.push_str(&format!(" - {c}"));
                }
                let outcome = if test["enabled"] == Value::Bool(false) {
                    Outcome::Skip("disabled".into())
                } else {
                    // A panic is a bug in Brook, but it must not stop the other cases.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case_with(test, fmt.as_deref(), cfg.as_deref(), options)
                    }))
                    .unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Outcome::Fail(format!("panic: {msg}"))
                    })
                };
                results.push(CaseResult { id, outcome });
            }
        }
    }
    results
}

fn substitute(s: &str, fmt: Option<&str>, cfg: Option<&str>) -> String {
    let mut s = s.to_string();
    if let Some(f) = fmt {
        s = s.replace("{FORMAT}", f);
    }
    if let Some(c) = cfg {
        s = s.replace("{CONFIG}", c);
    }
    s
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs one expanded case.
pub fn run_case(test: &Value, fmt: Option<&str>, cfg: Option<&str>) -> Outcome {
    run_case_with(test, fmt, cfg, Options::default())
}

/// Runs one expanded case, as `options` say.
pub fn run_case_with(
    test: &Value,
    fmt: Option<&str>,
    cfg: Option<&str>,
    options: Options,
) -> Outcome {
    // ksqlDB runs these cases with its test jar's UDAFs on the classpath.
    crate::test_functions::register();
    let mut driver = Driver::new();
    driver.restart_every_record = options.restart_every_record;
    if let Some(props) = test["properties"].as_object() {
        for (k, v) in props {
            driver.set_property(k, &substitute(&json_text(v), fmt, cfg));
        }
    }
    for t in test["topics"].as_array().into_iter().flatten() {
        if let Some(name) = t["name"].as_str() {
            let partitions = t["partitions"].as_i64().unwrap_or(1) as i32;
            driver.create_topic(name, partitions);
            register_schemas(&driver, name, t);
        }
    }
    let expected_error = test.get("expectedException");
    for stmt in test["statements"].as_array().into_iter().flatten() {
        let sql = substitute(stmt.as_str().unwrap_or_default(), fmt, cfg);
        if let Err(e) = driver.execute(&sql) {
            return match expected_error {
                Some(exp) => check_exception(exp, &e),
                None => Outcome::Fail(format!("statement failed: {sql}\n  {e}")),
            };
        }
    }
    // Inputs.
    for input in test["inputs"].as_array().into_iter().flatten() {
        let topic = input["topic"].as_str().unwrap_or_default();
        let source = source_for_topic(&driver, topic);
        let key = match to_payload(source.as_ref(), true, &input["key"]) {
            Ok(k) => k,
            Err(e) => return Outcome::Fail(format!("input key {}: {e}", input["key"])),
        };
        // A windowed input key carries its window, as Kafka Streams writes it.
        let key = match (source.as_ref().and_then(|s| s.window), input.get("window")) {
            (Some(w), Some(win)) => {
                let start = win["start"].as_i64().unwrap_or(0);
                let end = win["end"].as_i64().unwrap_or(0);
                let mut k = key.unwrap_or_default();
                if w == brook_planner::catalog::WindowType::Session {
                    k.extend_from_slice(&end.to_be_bytes());
                }
                k.extend_from_slice(&start.to_be_bytes());
                Some(k)
            }
            _ => key,
        };
        let value = match to_payload(source.as_ref(), false, &input["value"]) {
            Ok(v) => v,
            Err(e) => return Outcome::Fail(format!("input value {}: {e}", input["value"])),
        };
        let headers = input["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let k = h["KEY"].as_str().unwrap_or_default().to_string();
                let v = h["VALUE"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                (k, v)
            })
            .collect();
        let ts = input["timestamp"].as_i64().unwrap_or(0);
        let partition = input["partition"].as_i64().map(|p| p as i32);
        driver.produce(topic, key, value, ts, headers, partition);
    }
    if let Some(log) = driver
        .processing_log
        .iter()
        .find(|l| l.contains(": restart: "))
    {
        return Outcome::Fail(log.clone());
    }
    if let Some(exp) = expected_error {
        if let Some(log) = driver.processing_log.first() {
            let msg = exp["message"].as_str().unwrap_or_default();
            if log.contains(msg) {
                return Outcome::Pass;
            }
        }
        return Outcome::Fail(format!(
            "expected an error containing {:?}, but every statement ran",
            exp["message"].as_str().unwrap_or_default()
        ));
    }
    // Outputs, per topic in order.
    let mut expected: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for o in test["outputs"].as_array().into_iter().flatten() {
        expected
            .entry(o["topic"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(o);
    }
    for (topic, want) in &expected {
        let source = source_for_topic(&driver, topic);
        let got = driver
            .topic(topic)
            .map(|t| t.records.clone())
            .unwrap_or_default();
        for (i, w) in want.iter().enumerate() {
            let Some(g) = got.get(i) else {
                return Outcome::Fail(format!(
                    "topic {topic}: expected {} records, got {}; first missing: {}{}",
                    want.len(),
                    got.len(),
                    w,
                    log_hint(&driver)
                ));
            };
            // A windowed key ends with its window (Kafka Streams' layout).
            let (key_bytes, window) = split_window(source.as_ref(), g.key.as_deref());
            if let (Some(want), Some((start, end))) = (w.get("window"), window) {
                let ok = want["start"].as_i64().is_none_or(|s| s == start)
                    && want["end"].as_i64().is_none_or(|e| e == end);
                if !ok {
                    return Outcome::Fail(format!(
                        "topic {topic} record {i}: expected window {want}, got start={start} end={end}"
                    ));
                }
            }
            let key = from_payload(source.as_ref(), true, key_bytes);
            let value = from_payload(source.as_ref(), false, g.value.as_deref());
            let (key, value) = match (key, value) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(e), _) | (_, Err(e)) => {
                    return Outcome::Fail(format!("topic {topic} record {i}: cannot read: {e}"))
                }
            };
            let ts_ok = w["timestamp"].as_i64().is_none_or(|t| t == g.timestamp);
            if !json_eq(&w["key"], &key) || !value_eq(&w["value"], &value) || !ts_ok {
                return Outcome::Fail(format!(
                    "topic {topic} record {i}: expected key={} value={} timestamp={}, got key={key} value={value} timestamp={}",
                    w["key"], w["value"], w["timestamp"], g.timestamp
                ));
            }
        }
        if got.len() > want.len() {
            return Outcome::Fail(format!(
                "topic {topic}: expected {} records, got {}; first extra: {:?}",
                want.len(),
                got.len(),
                got[want.len()]
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).to_string())
            ));
        }
    }
    // Post conditions on sources.
    for s in test["post"]["sources"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        let Some(src) = driver.catalog().sources.get(name) else {
            return Outcome::Fail(format!("post: source {name} does not exist"));
        };
        if let Some(t) = s["type"].as_str() {
            let kind = match src.kind {
                brook_sql::SourceKind::Stream => "stream",
                brook_sql::SourceKind::Table => "table",
            };
            if !t.eq_ignore_ascii_case(kind) {
                return Outcome::Fail(format!("post: {name} is a {kind}, expected a {t}"));
            }
        }
        if let Some(schema) = s["schema"].as_str() {
            match schema_matches(schema, src) {
                Ok(true) => {}
                Ok(false) => {
                    return Outcome::Fail(format!(
                        "post: {name} has schema {}, expected {schema}",
                        src.schema
                    ))
                }
                Err(e) => return Outcome::Fail(format!("post: cannot read schema {schema}: {e}")),
            }
        }
        for (field, spec) in [
            ("keyFormat", &src.key_format),
            ("valueFormat", &src.value_format),
        ] {
            if let Some(f) = s[field].as_str() {
                if !f.eq_ignore_ascii_case(spec.kind.name()) {
                    return Outcome::Fail(format!(
                        "post: {name} {field} is {}, expected {f}",
                        spec.kind
                    ));
                }
            }
        }
    }
    Outcome::Pass
}

/// Registers a test topic's `keySchema` / `valueSchema` (with its `…SchemaId` and, for
/// PROTOBUF, its `…SchemaReferences`) under `<topic>-key` / `<topic>-value`, as ksqlDB's
/// test driver does before running the statements. The topic's format says which kind of
/// schema it is (AVRO when not given; JSON topics hold JSON schemas).
fn register_schemas(driver: &Driver, topic: &str, t: &Value) {
    let registry = driver.registry();
    for (prefix, fmt, p) in [
        ("key", "keyFormat", format::Part::Key),
        ("value", "valueFormat", format::Part::Value),
    ] {
        let Some(schema) = t.get(format!("{prefix}Schema")).filter(|s| !s.is_null()) else {
            continue;
        };
        let kind = t[fmt].as_str().unwrap_or("AVRO");
        let Ok(kind) = brook_planner::format::FormatKind::parse(kind) else {
            continue;
        };
        let id = t[format!("{prefix}SchemaId")]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok());
        let references: Vec<(String, String)> = t[format!("{prefix}SchemaReferences")]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["name"].as_str()?.to_string(),
                    r["schema"].as_str()?.to_string(),
                ))
            })
            .collect();
        let subject = format::registry::subject(topic, p);
        // A schema its format cannot read is left out, as a registry would refuse it.
        let _ = format::registry::register_for_format(
            registry.as_ref(),
            &subject,
            kind,
            schema,
            &references,
            id,
        );
    }
}

fn split_window<'a>(
    source: Option<&Source>,
    key: Option<&'a [u8]>,
) -> (Option<&'a [u8]>, Option<(i64, i64)>) {
    use brook_planner::catalog::WindowType;
    let Some(window) = source.and_then(|s| s.window) else {
        return (key, None);
    };
    let Some(k) = key else {
        return (None, None);
    };
    let be = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    };
    match window {
        WindowType::Session if k.len() >= 16 => {
            let n = k.len();
            let end = be(&k[n - 16..n - 8]);
            let start = be(&k[n - 8..]);
            (Some(&k[..n - 16]), Some((start, end)))
        }
        WindowType::Tumbling { size_ms } | WindowType::Hopping { size_ms } if k.len() >= 8 => {
            let n = k.len();
            let start = be(&k[n - 8..]);
            (Some(&k[..n - 8]), Some((start, start + size_ms as i64)))
        }
        _ => (key, None),
    }
}

fn log_hint(driver: &Driver) -> String {
    match driver.processing_log.first() {
        Some(l) => format!(" (processing log: {l})"),
        None => String::new(),
    }
}

fn check_exception(exp: &Value, e: &DriverError) -> Outcome {
    let ty = exp["type"].as_str().unwrap_or_default();
    let msg = exp["message"].as_str().unwrap_or_default();
    let ours = e.to_string();
    if ty.ends_with("ParseFailedException") {
        // ksqlDB's syntax messages come from ANTLR; Brook's name the same position in its own
        // words, so only the kind of error is compared.
        return if matches!(e, DriverError::Parse(_)) {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("expected a syntax error, got: {ours}"))
        };
    }
    if matches!(
        e,
        DriverError::Plan(brook_planner::PlanError::Unsupported(_))
    ) {
        return Outcome::Fail(format!("expected {msg:?}, but: {ours}"));
    }
    if ours.contains(msg) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("expected an error containing {msg:?}, got: {ours}"))
    }
}

fn source_for_topic(driver: &Driver, topic: &str) -> Option<Source> {
    driver
        .catalog()
        .sources
        .values()
        .find(|s| s.topic == topic)
        .cloned()
}

fn columns(source: &Source, key: bool) -> Vec<Column> {
    source
        .schema
        .columns
        .iter()
        .filter(|c| {
            (c.namespace == Namespace::Key) == key
                && !matches!(c.namespace, Namespace::Headers | Namespace::Header(_))
        })
        .cloned()
        .collect()
}

fn part(key: bool) -> format::Part {
    if key {
        format::Part::Key
    } else {
        format::Part::Value
    }
}

fn to_payload(source: Option<&Source>, key: bool, v: &Value) -> Result<Option<Vec<u8>>, String> {
    match source {
        Some(s) => {
            let spec = if key { &s.key_format } else { &s.value_format };
            format::json_to_payload(spec, part(key), &columns(s, key), v).map_err(|e| e.to_string())
        }
        None => Ok(match v {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(other.to_string().into_bytes()),
        }),
    }
}

fn from_payload(source: Option<&Source>, key: bool, p: Option<&[u8]>) -> Result<Value, String> {
    match source {
        Some(s) => {
            let spec = if key { &s.key_format } else { &s.value_format };
            format::payload_to_json(spec, part(key), &columns(s, key), p).map_err(|e| e.to_string())
        }
        None => Ok(match p {
            None => Value::Null,
            Some(b) => serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).to_string())),
        }),
    }
}

/// Compares a record's value: ksqlDB's test driver reads the expected value through the
/// sink's deserializer, which finds a row's columns whatever the case of the field names
/// (`{"json_v": …}` is column `JSON_V`); nested maps and structs compare exactly.
fn value_eq(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| {
                    b.get(k)
                        .or_else(|| b.get(&k.to_uppercase()))
                        .is_some_and(|w| json_eq(v, w))
                })
        }
        _ => json_eq(want, got),
    }
}

/// Compares JSON as ksqlDB's test driver does: numbers within 1e-6, objects by field.
pub fn json_eq(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-6 * x.abs().max(1.0),
            _ => a == b,
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_eq(v, w)))
        }
        // A number written as text by one side (DELIMITED, KAFKA keys) compares as text.
        (Value::String(a), Value::Number(b)) | (Value::Number(b), Value::String(a)) => {
            a.parse::<f64>().ok() == b.as_f64()
        }
        _ => want == got,
    }
}

/// Compares ksqlDB's schema text (`ID INT KEY, NAME STRING`) with a source's columns.
fn schema_matches(text: &str, src: &Source) -> Result<bool, String> {
    let sql = format!("CREATE STREAM X ({text});");
    let stmt = brook_sql::parse_one(&sql).map_err(|e| e.to_string())?;
    let brook_sql::Statement::CreateSource { elements, .. } = stmt else {
        return Err("not a column list".into());
    };
    if elements.len() != src.schema.columns.len() {
        return Ok(false);
    }
    Ok(elements.iter().zip(&src.schema.columns).all(|(e, c)| {
        let is_key = matches!(
            e.constraint,
            Some(brook_sql::ColumnConstraint::Key) | Some(brook_sql::ColumnConstraint::PrimaryKey)
        );
        e.name.value == c.name && e.ty == c.ty && is_key == (c.namespace == Namespace::Key)
    }))
}

/// Counts of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Totals {
    pub fn add(&mut self, r: &CaseResult) {
        match r.outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail(_) => self.failed += 1,
            Outcome::Skip(_) => self.skipped += 1,
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! Loading ksqlDB's REST query-validation tests and expanding each entry over its `format`
//! and `config` lists, the way the QTT harness (`cli/src/qtt.rs`) names its cases.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The outcome of one expanded case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One expanded case: an entry of a file with one format and one config substituted.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file.json: test name[ - FORMAT][ - CONFIG]`
    pub id: String,
    pub test: Value,
    pub format: Option<String>,
    pub config: Option<String>,
}

impl Case {
    /// `{FORMAT}` and `{CONFIG}` replaced by this case's values.
    pub fn substitute(&self, s: &str) -> String {
        let mut s = s.to_string();
        if let Some(f) = &self.format {
            s = s.replace("{FORMAT}", f);
        }
        if let Some(c) = &self.config {
            s = s.replace("{CONFIG}", c);
        }
        s
    }

    pub fn statements(&self) -> Vec<String> {
        self.test["statements"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| self.substitute(s.as_str().unwrap_or_default()))
            .collect()
    }

    /// The case's properties as the REST client sends them; values keep their JSON types.
    pub fn properties(&self) -> serde_json::Map<String, Value> {
        self.test["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => Value::String(self.substitute(s)),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// The QTT root: `BROOK_QTT_DIR`, else `../shared/qtt` next to the workspace.
pub fn default_dir() -> PathBuf {
    std::env::var_os("BROOK_QTT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../shared/qtt"))
}

/// The REST suite under a QTT root (or the directory itself when it holds the files).
pub fn rest_dir(root: &Path) -> PathBuf {
    let sub = root.join("rest-query-validation-tests");
    if sub.is_dir() {
        sub
    } else {
        root.to_path_buf()
    }
}

/// Every case of every file of `dir`, files in name order, entries in file order.
pub fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let json: Value = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|e| format!("{file}: cannot read: {e}"))?;
        for test in json["tests"].as_array().into_iter().flatten() {
            let name = test["name"].as_str().unwrap_or("?");
            let list = |field: &str| -> Vec<Option<String>> {
                match test[field].as_array() {
                    Some(a) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
                    None => vec![None],
                }
            };
            for format in list("format") {
                for config in list("config") {
                    let mut id = format!("{file}: {name}");
                    if let Some(f) = &format {
                        id.push_str(&format!(" - {f}"));
                    }
                    if let Some(c) = &config {
                        id.push_str(&format!(" - {c}"));
                    }
                    cases.push(Case {
                        id,
                        test: test.clone(),
                        format: format.clone(),
                        config,
                    });
                }
            }
        }
    }
    Ok(cases)
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

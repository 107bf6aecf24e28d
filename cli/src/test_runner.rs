//! `brook test-runner`: command-line compatible with ksqlDB's `ksql-test-runner`.
//!
//! `-s` a file of statements, `-i` a JSON file `{"inputs": [...]}`, `-o` a JSON file
//! `{"outputs": [...]}` with records shaped as in ksqlDB's docs (topic, key, value,
//! timestamp, window, headers).

use std::path::Path;

use serde_json::{json, Value};

use crate::qtt::{run_case, Outcome};

/// Runs a test; `Ok` carries the pass line, `Err` the reason it failed.
pub fn run(
    sql_file: &Path,
    input_file: Option<&Path>,
    output_file: &Path,
) -> Result<String, String> {
    // As ksqlDB's runner, with the test jar's UDAFs available to the statements.
    crate::test_functions::register();
    let sql = std::fs::read_to_string(sql_file)
        .map_err(|e| format!("cannot read {}: {e}", sql_file.display()))?;
    let stmts = brook_sql::parse(&sql).map_err(|e| {
        format!(
            "Test failed: {}\n{}",
            sql_file.display(),
            crate::render_error(&sql, &e)
        )
    })?;
    let read_json = |p: &Path| -> Result<Value, String> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", p.display()))
    };
    let inputs = match input_file {
        Some(p) => read_json(p)?["inputs"].clone(),
        None => json!([]),
    };
    let outputs = read_json(output_file)?["outputs"].clone();
    let test = json!({
        "name": "test-runner",
        "statements": stmts.iter().map(|s| format!("{};", s.text)).collect::<Vec<_>>(),
        "inputs": inputs,
        "outputs": outputs,
    });
    match run_case(&test, None, None) {
        Outcome::Pass => Ok("\t >>> Test passed!".to_string()),
        Outcome::Fail(why) => Err(format!("\t >>> Test failed: {why}")),
        Outcome::Skip(why) => Err(format!("\t >>> Test skipped: {why}")),
    }
}

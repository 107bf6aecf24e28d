//! Parses every statement of ksqlDB's conformance suites (`../shared/qtt`, or
//! `BROOK_QTT_DIR`) and checks that each displays back to SQL that parses to the same tree.
//! Every statement of an entry that expects no error parses: all of them do, so there is no
//! allowance (a statement that stops parsing is a regression).
//!
//! Without the suites the test skips with a line on stderr, except under CI (`CI` set, as
//! `.ci/run` sets it): there it fails, since a skipped corpus checks nothing.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

/// The suites whose statements are parsed; each must be there.
const SUITES: [&str; 2] = ["query-validation-tests", "rest-query-validation-tests"];

fn qtt_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BROOK_QTT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../shared/qtt"));
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!("no QTT suite at {} (set BROOK_QTT_DIR)", dir.display());
    assert!(
        !under_ci(),
        "parser: {why}; under CI the suite must be there"
    );
    // Straight to stderr: the harness captures `eprintln!`, and a skip must show.
    let _ = writeln!(std::io::stderr(), "parser: SKIPPED: {why}");
    None
}

/// `CI` set to anything but empty, `0` or `false` (CI services set `CI=true`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

struct Case {
    file: String,
    name: String,
    expects_error: bool,
    sql: String,
}

fn cases(dir: &std::path::Path) -> Vec<Case> {
    let mut out = Vec::new();
    for suite in SUITES {
        let entries = std::fs::read_dir(dir.join(suite))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(suite).display()));
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for path in files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&path).expect("readable test file");
            let json: Value = serde_json::from_str(&text).expect("valid JSON test file");
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            for test in json["tests"].as_array().into_iter().flatten() {
                let expects_error =
                    test.get("expectedException").is_some() || test.get("expectedError").is_some();
                let format = test["format"]
                    .as_array()
                    .and_then(|f| f.first())
                    .and_then(|f| f.as_str())
                    .unwrap_or("JSON");
                let config = test["config"]
                    .as_array()
                    .and_then(|f| f.first())
                    .and_then(|f| f.as_str())
                    .unwrap_or("");
                for stmt in test["statements"].as_array().into_iter().flatten() {
                    let sql = stmt
                        .as_str()
                        .unwrap_or_default()
                        .replace("{FORMAT}", format)
                        .replace("{CONFIG}", config);
                    out.push(Case {
                        file: file.clone(),
                        name: test["name"].as_str().unwrap_or("?").to_string(),
                        expects_error,
                        sql,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn every_qtt_statement_parses_and_round_trips() {
    let Some(dir) = qtt_dir() else {
        return;
    };
    let cases = cases(&dir);
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut round_trip = Vec::new();
    let mut error_cases_rejected = 0usize;
    for case in &cases {
        let parsed = brook_sql::parse(&case.sql);
        if case.expects_error {
            if parsed.is_err() {
                error_cases_rejected += 1;
            }
            continue;
        }
        match parsed {
            Ok(stmts) => {
                passed += 1;
                for s in stmts {
                    let shown = s.statement.to_string();
                    match brook_sql::parse_one(&shown) {
                        Ok(again) if again == s.statement => {}
                        Ok(_) => round_trip.push(format!("{}\n    shown: {shown}", case.sql)),
                        Err(e) => {
                            round_trip.push(format!("{}\n    shown: {shown}\n    {e}", case.sql))
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                failures.push(format!(
                    "{} / {}: {e}\n    {}",
                    case.file, case.name, case.sql
                ));
            }
        }
    }
    for f in &failures {
        println!("parse failure: {f}");
    }
    for f in &round_trip {
        println!("round-trip failure: {f}");
    }
    println!(
        "statements of entries expecting an error that the parser already rejects: {error_cases_rejected}"
    );
    // Straight to stderr, past the test harness's capture: the summary belongs in CI's log.
    let _ = writeln!(
        std::io::stderr(),
        "parser: {passed} passed, {failed} failed"
    );
    assert!(
        passed + failed > 0,
        "no statements found under {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{failed} of {} QTT statements do not parse:\n{}",
        passed + failed,
        failures.join("\n")
    );
    assert!(
        round_trip.is_empty(),
        "{} statements do not round-trip",
        round_trip.len()
    );
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

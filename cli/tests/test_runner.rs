//! `brook test-runner` against hand-written cases in `tests/test-runner/`: it must pass and
//! fail exactly as ksqlDB's ksql-test-runner would.

use std::path::PathBuf;
use std::process::Command;

fn case(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = manifest_dir().join("tests/test-runner").join(name);
    (
        dir.join("statements.sql"),
        dir.join("input.json"),
        dir.join("output.json"),
    )
}

fn run(name: &str) -> (i32, String) {
    let (s, i, o) = case(name);
    let out = Command::new(env!("CARGO_BIN_EXE_brook"))
        .args(["test-runner", "-s"])
        .arg(&s)
        .arg("-i")
        .arg(&i)
        .arg("-o")
        .arg(&o)
        .output()
        .expect("brook runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn passing_case_exits_zero() {
    let (code, text) = run("high-value-orders");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Test passed!"), "{text}");
}

#[test]
fn failing_case_exits_one_and_shows_the_difference() {
    let (code, text) = run("wrong-expectation");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Test failed"), "{text}");
    // The first differing record is shown, expected against actual.
    assert!(text.contains("4999"), "{text}");
    assert!(text.contains("5000"), "{text}");
}

#[test]
fn bad_sql_fails_with_its_position() {
    let dir = std::env::temp_dir().join(format!("brook-tr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("s.sql"),
        "CREATE STREAM s (a INT) WITH (kafka_topic='t';\n",
    )
    .expect("write");
    std::fs::write(dir.join("o.json"), "{\"outputs\": []}").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_brook"))
        .args(["test-runner", "-s"])
        .arg(dir.join("s.sql"))
        .arg("-o")
        .arg(dir.join("o.json"))
        .output()
        .expect("brook runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("line 1:"), "{text}");
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

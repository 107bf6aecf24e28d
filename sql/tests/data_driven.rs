//! Data-driven parser tests: `cases/display.txt` (how statements display, and that the
//! display parses back to the same tree) and `cases/errors.txt` (malformed statements and
//! the position and text of their errors).

struct Case {
    line: usize,
    input: String,
    expect: String,
}

fn read_cases(name: &str, marker: char) -> Vec<Case> {
    let path = manifest_dir().join("tests/cases").join(name);
    let text = std::fs::read_to_string(&path).expect("case file");
    let mut cases = Vec::new();
    let mut input: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("> ") {
            // An input without its expectation would check nothing.
            if let Some((line, _)) = &input {
                panic!("{name}:{line}: no `{marker}` line follows this input");
            }
            input = Some((n + 1, rest.replace("\\n", "\n")));
        } else if let Some(rest) = line.strip_prefix(marker) {
            let (line, input) = input.take().expect("an expectation follows a `>` line");
            cases.push(Case {
                line,
                input,
                expect: rest.trim().to_string(),
            });
        }
    }
    if let Some((line, _)) = input {
        panic!("{name}:{line}: no `{marker}` line follows this input");
    }
    assert!(!cases.is_empty(), "no cases in {name}");
    cases
}

#[test]
fn statements_display_and_round_trip() {
    let mut failures = Vec::new();
    for case in read_cases("display.txt", '=') {
        match brook_sql::parse_one(&case.input) {
            Ok(stmt) => {
                let shown = stmt.to_string();
                if shown != case.expect {
                    failures.push(format!(
                        "line {}: displayed\n  {shown}\nexpected\n  {}",
                        case.line, case.expect
                    ));
                }
                match brook_sql::parse_one(&shown) {
                    Ok(again) if again == stmt => {}
                    other => failures.push(format!(
                        "line {}: display does not parse back to the same tree: {other:?}",
                        case.line
                    )),
                }
            }
            Err(e) => failures.push(format!("line {}: {e}", case.line)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_statements_name_their_position() {
    let cases = read_cases("errors.txt", '!');
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let (pos, text) = case.expect.split_once(' ').unwrap_or((&case.expect, ""));
        let (line, col) = pos.split_once(':').expect("LINE:COLUMN");
        let (line, col): (u64, u64) = (line.parse().unwrap(), col.parse().unwrap());
        match brook_sql::parse(&case.input) {
            Ok(s) => failures.push(format!("line {}: parsed, but should not: {s:?}", case.line)),
            Err(e) => {
                if (e.line, e.column) != (line, col) || !e.message.contains(text) {
                    failures.push(format!(
                        "line {}: got `{e}`, expected {line}:{col} with `{text}`",
                        case.line
                    ));
                }
                if !e.to_string().starts_with(&format!("line {line}:{col}: ")) {
                    failures.push(format!(
                        "line {}: display `{e}` lacks the position",
                        case.line
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn identifiers_follow_ksqldb_case_rules() {
    let stmt = brook_sql::parse_one("SELECT abc, `aBc`, \"aBc\" FROM Src").unwrap();
    let brook_sql::Statement::Query(q) = stmt else {
        panic!("not a query")
    };
    assert_eq!(q.from.name.value, "SRC");
    let names: Vec<String> = q.projection.iter().map(|p| p.to_string()).collect();
    assert_eq!(names, ["ABC", "`aBc`", "\"aBc\""]);
}

#[test]
fn lambda_and_dereference_helpers() {
    let e = brook_sql::parse_expr("(k, v) => k->f").unwrap();
    let (params, body) = brook_sql::as_lambda(&e).expect("a lambda");
    assert_eq!(params.len(), 2);
    let (base, field) = brook_sql::as_dereference(body).expect("a dereference");
    assert_eq!(
        (base.to_string().as_str(), field.value.as_str()),
        ("K", "F")
    );
    let ty = brook_sql::parse_type("map<string, struct<a int>>").unwrap();
    assert_eq!(ty.to_string(), "MAP<STRING, STRUCT<A INTEGER>>");
}

#[test]
fn statement_text_and_position_are_kept() {
    let all = brook_sql::parse("SHOW STREAMS;\n  SELECT *\n  FROM s EMIT CHANGES;").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].text, "SELECT *\n  FROM s EMIT CHANGES");
    assert_eq!((all[1].line, all[1].column), (2, 3));
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! How ksqlDB's `RestTestExecutor` judges responses: expected objects name only the fields
//! they check, `key|startsWith` compares a prefix, `{STATEMENT}` stands for the statement,
//! and a query's rows are compared as a multiset (its `verifyOrder` is off in every file).

use serde_json::Value;

/// Checks `actual` against `expected` (an admin entity or one streamed element). Row
/// `columns` are not compared here but collected into `rows`, to be compared as a multiset
/// once every element was seen.
pub fn match_fields(
    actual: &Value,
    expected: &Value,
    statement: &str,
    path: &str,
    rows: &mut Rows,
) -> Result<(), String> {
    let Some(expected) = expected.as_object() else {
        return Err(format!("{path}: the expected response is not an object"));
    };
    for (key, want) in expected {
        let (name, starts_with) = match key.split_once('|') {
            // ksqlDB reads the operator with `MatchOperator.valueOf(op.toUpperCase())`.
            Some((n, op)) if op.eq_ignore_ascii_case("STARTS_WITH") => (n, true),
            Some((n, op)) => return Err(format!("{path}: unknown match operator {op} on {n}")),
            None => (key.as_str(), false),
        };
        let Some(got) = actual.get(name) else {
            return Err(format!("{path}: no field `{name}` in {actual}"));
        };
        let want = match want {
            Value::String(s) => Value::String(s.replace("{STATEMENT}", statement)),
            other => other.clone(),
        };
        let here = format!("{path}->{name}");
        if want.is_object() {
            match_fields(got, &want, statement, &here, rows)?;
        } else if starts_with {
            let ok = matches!((got, &want), (Value::String(g), Value::String(w)) if g.starts_with(w.as_str()));
            if !ok {
                return Err(format!("{here}: expected to start with {want}, got {got}"));
            }
        } else if name.eq_ignore_ascii_case("columns") && here.contains("row") {
            rows.actual.push(got.clone());
            rows.expected.push(want);
        } else if !wire_eq(&want, got) {
            return Err(format!("{here}: expected {want}, got {got}"));
        }
    }
    Ok(())
}

/// The rows of one query response, expected and received.
#[derive(Debug, Default)]
pub struct Rows {
    pub actual: Vec<Value>,
    pub expected: Vec<Value>,
}

impl Rows {
    /// Equal as multisets: every row received as often as expected.
    pub fn check(&self, path: &str) -> Result<(), String> {
        let mut left: Vec<&Value> = self.expected.iter().collect();
        let mut extra = Vec::new();
        for got in &self.actual {
            match left.iter().position(|w| wire_eq(w, got)) {
                Some(i) => {
                    left.swap_remove(i);
                }
                None => extra.push(got),
            }
        }
        if extra.is_empty() && left.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{path}: rows differ; unexpected: {}; missing: {}",
            list(&extra),
            list(&left)
        ))
    }
}

fn list(values: &[&Value]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Equality of what two JSON texts say as ksqlDB's test reads them with Jackson: an integer
/// never equals a fraction (`1` is not `1.0`), fractions compare by value (`1.50` is `1.5`),
/// objects by field whatever the order.
pub fn wire_eq(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => {
            let int = |n: &serde_json::Number| n.is_i64() || n.is_u64();
            match (int(a), int(b)) {
                (true, true) => a == b,
                (false, false) => a.as_f64() == b.as_f64(),
                _ => false,
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| wire_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| wire_eq(v, w)))
        }
        _ => want == got,
    }
}

/// Equality of records read back from a topic, as ksqlDB's `ExpectedRecordComparator`
/// allows: numbers by value (doubles within 1e-6), a number written as text by one side
/// (KAFKA or DELIMITED keys) equal to the number.
pub fn record_eq(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-6 * x.abs().max(1.0),
            _ => a == b,
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| record_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| record_eq(v, w)))
        }
        (Value::String(a), Value::Number(b)) | (Value::Number(b), Value::String(a)) => {
            a.parse::<f64>().ok() == b.as_f64()
        }
        _ => want == got,
    }
}

/// Checks an error response against `expectedError` (`type`, `message`, `status`), as
/// ksqlDB's `ExpectedErrorNode` builds its matcher: a `KsqlStatementErrorMessage` must
/// also name the case's last statement.
pub fn check_error(
    expected: &Value,
    status: u16,
    body: &Value,
    last_statement: &str,
) -> Result<(), String> {
    let actual = format!("status {status}: {body}");
    if let Some(want) = expected["status"].as_u64() {
        if u64::from(status) != want {
            return Err(format!("expected status {want}, got {actual}"));
        }
    }
    if let Some(want) = expected["message"].as_str() {
        let got = body["message"].as_str().unwrap_or_default();
        if !got.contains(want) && !same_syntax_error(want, got) {
            return Err(format!(
                "expected an error containing {want:?}, got {actual}"
            ));
        }
    }
    if let Some(ty) = expected["type"].as_str() {
        if ty.ends_with("KsqlStatementErrorMessage") {
            if body["@type"] != "statement_error" {
                return Err(format!("expected a statement_error, got {actual}"));
            }
            let text = body["statementText"].as_str().unwrap_or_default();
            if !text.contains(last_statement) {
                return Err(format!(
                    "expected the error's statementText to contain {last_statement:?}, got {actual}"
                ));
            }
        } else if body["message"].is_null() {
            return Err(format!("expected an error message, got {actual}"));
        }
    }
    Ok(())
}

/// ksqlDB's syntax errors are ANTLR's (`line 1:24: Syntax Error…`); Brook names the same
/// position in its own words, so only the position is compared, as the QTT harness
/// compares only the kind of a syntax error.
fn same_syntax_error(want: &str, got: &str) -> bool {
    let position = |m: &str| -> Option<String> {
        let rest = m.strip_prefix("line ")?;
        let (pos, _) = rest.split_once(": ")?;
        Some(pos.to_string())
    };
    want.split_once(": ")
        .is_some_and(|(_, what)| what.starts_with("Syntax Error"))
        && position(want).is_some()
        && position(want) == position(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_fractions_differ_on_the_wire() {
        assert!(wire_eq(&json!(1), &json!(1)));
        assert!(!wire_eq(&json!(1), &json!(1.0)));
        assert!(wire_eq(&json!(1.5), &json!(1.50)));
        assert!(record_eq(&json!(1), &json!(1.0)));
        assert!(record_eq(&json!("10"), &json!(10)));
    }

    #[test]
    fn only_the_given_fields_are_checked_and_rows_are_a_multiset() {
        let mut rows = Rows::default();
        let got = json!({"header": {"queryId": "q1", "schema": "`K` STRING"}});
        let want = json!({"header": {"schema": "`K` STRING"}});
        assert!(match_fields(&got, &want, "", "r", &mut rows).is_ok());
        for (g, w) in [(json!(["a"]), json!(["b"])), (json!(["b"]), json!(["a"]))] {
            let got = json!({"row": {"columns": g}});
            let want = json!({"row": {"columns": w}});
            assert!(match_fields(&got, &want, "", "r", &mut rows).is_ok());
        }
        assert!(rows.check("r").is_ok());
        rows.actual.push(json!(["a"]));
        rows.expected.push(json!(["c"]));
        assert!(rows.check("r").is_err());
    }

    #[test]
    fn starts_with_and_statement_macro() {
        let mut rows = Rows::default();
        let got = json!({"statementText": "CREATE STREAM S (A INT);", "x": "abcdef"});
        let want = json!({"statementText": "{STATEMENT}", "x|starts_with": "abc"});
        assert!(match_fields(&got, &want, "CREATE STREAM S (A INT);", "r", &mut rows).is_ok());
    }

    #[test]
    fn statement_errors_name_the_last_statement() {
        let body = json!({"@type": "statement_error", "message": "Bad thing here", "statementText": "SELECT 1;"});
        let want = json!({"type": "io.confluent.ksql.rest.entity.KsqlStatementErrorMessage", "message": "Bad thing", "status": 400});
        assert!(check_error(&want, 400, &body, "SELECT 1;").is_ok());
        assert!(check_error(&want, 500, &body, "SELECT 1;").is_err());
        assert!(check_error(&want, 400, &body, "SELECT 2;").is_err());
    }

    #[test]
    fn syntax_errors_compare_by_position() {
        let want = "line 1:24: Syntax Error\n\nStatement: SELECT * FROM S1 ORDER BY MYKEY DESC;";
        assert!(same_syntax_error(
            want,
            "line 1:24: Expected: ';', found: BY"
        ));
        assert!(!same_syntax_error(
            want,
            "line 1:25: Expected: ';', found: BY"
        ));
        assert!(!same_syntax_error(
            "line 1:24: Unknown column",
            "line 1:24: x"
        ));
    }
}

//! Shared pieces of the `brook` command line: error rendering, the QTT harness, the
//! ksql-test-runner-compatible runner and the REPL.

pub mod qtt;
pub mod repl;
pub mod test_functions;
pub mod test_runner;

use brook_sql::ParseError;

/// An error with the offending line and a caret under its column:
///
/// ```text
/// line 1:15: Expected: FROM, found: WHERE
///   SELECT * FROM WHERE
///                 ^
/// ```
pub fn render_error(text: &str, e: &ParseError) -> String {
    let mut out = e.to_string();
    if let Some(line) = text.lines().nth((e.line.max(1) - 1) as usize) {
        let col = (e.column.max(1) - 1) as usize;
        let pad: String = line
            .chars()
            .take(col)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n  {line}\n  {pad}^"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_column() {
        let text = "SHOW STREAMS;\nSELECT * FROM s EMIT SOON;";
        let e = brook_sql::parse(text).unwrap_err();
        let shown = render_error(text, &e);
        assert_eq!(
            shown,
            "line 2:22: Expected: CHANGES or FINAL, found: SOON\n  SELECT * FROM s EMIT SOON;\n                       ^"
        );
    }
}

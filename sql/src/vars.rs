//! `${name}` variable substitution, as DEFINE sets variables for later statements.

use std::collections::HashMap;

use crate::limits::MAX_SUBSTITUTED_BYTES;
use crate::ParseError;

/// Replaces every `${name}` whose name is defined (names compare case-insensitively, as
/// ksqlDB's identifiers do). A reference to an undefined variable is an error naming it and
/// its position, and so is a text that grows past [`MAX_SUBSTITUTED_BYTES`] (a long value
/// referenced many times).
pub fn substitute(text: &str, vars: &HashMap<String, String>) -> Result<String, ParseError> {
    let mut out = String::with_capacity(text.len());
    let mut line = 1u64;
    let mut col = 1u64;
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        let (before, after) = rest.split_at(pos);
        for ch in before.chars() {
            if ch == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        out.push_str(before);
        let Some(end) = after.find('}') else {
            return Err(ParseError::new(
                line,
                col,
                "Expected: '}' to end the variable reference, found: EOF",
            ));
        };
        let name = &after[2..end];
        let value = vars
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.trim()))
            .map(|(_, v)| v);
        match value {
            Some(v) if out.len() + v.len() > MAX_SUBSTITUTED_BYTES => {
                return Err(ParseError::too_large(
                    line,
                    col,
                    format!(
                        "The statement is too large once its variables are substituted: more than {MAX_SUBSTITUTED_BYTES} bytes"
                    ),
                    MAX_SUBSTITUTED_BYTES,
                ))
            }
            Some(v) => out.push_str(v),
            None => {
                return Err(ParseError::new(
                    line,
                    col,
                    format!("Undefined variable: {name}"),
                ))
            }
        }
        col += after[..=end].chars().count() as u64;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_case_insensitively() {
        let vars = HashMap::from([("TOPIC".to_string(), "orders".to_string())]);
        let s = substitute("CREATE STREAM s WITH (kafka_topic='${topic}');", &vars).unwrap();
        assert_eq!(s, "CREATE STREAM s WITH (kafka_topic='orders');");
    }

    #[test]
    fn substituted_text_is_bounded() {
        let vars = HashMap::from([("X".to_string(), "y".repeat(1 << 20))]);
        let text = "${x}".repeat(8);
        let err = substitute(&text, &vars).unwrap_err();
        assert_eq!(
            err.kind,
            crate::ParseErrorKind::TooLarge {
                limit: MAX_SUBSTITUTED_BYTES
            }
        );
        // The fifth reference is the one that does not fit.
        assert_eq!((err.line, err.column), (1, 17));
        assert!(substitute(&"${x}".repeat(4), &vars).is_ok());
    }

    #[test]
    fn undefined_variable_names_position() {
        let err = substitute("SELECT *\nFROM ${src};", &HashMap::new()).unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert!(err.message.contains("src"), "{err}");
    }
}

//! How results look: ksqlDB's entities as aligned tables (the ksql CLI's layout), push query
//! rows streamed into a table with fixed column widths, and errors with a caret under the
//! position the server named.

use comfy_table::{ContentArrangement, Table};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// Display columns of `s` (wide characters take two).
fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// The ksql CLI's look: a rule under the header and one after the last row, `|` between
/// columns, no outer frame.
const KSQL_STYLE: &str = "     -- |          ";

/// A table of `header` and `rows`, wrapped to `max_width` columns.
pub fn table(header: &[&str], rows: &[Vec<String>], max_width: usize) -> String {
    let mut t = Table::new();
    t.load_preset(KSQL_STYLE)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(max_width.clamp(20, u16::MAX as usize) as u16)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r.clone());
    }
    let body: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
    let rule = "-".repeat(body.iter().map(|l| width(l)).max().unwrap_or(0));
    // comfy-table draws the rule under the header; the closing one is the CLI's.
    let mut out = body.join("\n");
    out.push('\n');
    out.push_str(&rule);
    out
}

/// A value as a cell shows it: strings bare, everything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// ksqlDB's `SchemaInfo` (as DESCRIBE reports a column type) in the CLI's spelling.
pub fn schema_type(schema: &Value) -> String {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("?");
    match ty {
        "STRING" => "VARCHAR(STRING)".to_string(),
        "ARRAY" => format!(
            "ARRAY<{}>",
            schema_type(schema.get("memberSchema").unwrap_or(&Value::Null))
        ),
        "MAP" => format!(
            "MAP<STRING, {}>",
            schema_type(schema.get("memberSchema").unwrap_or(&Value::Null))
        ),
        "STRUCT" => {
            let fields: Vec<String> = schema
                .get("fields")
                .and_then(Value::as_array)
                .map(|fs| {
                    fs.iter()
                        .map(|f| {
                            format!(
                                "{} {}",
                                f.get("name").and_then(Value::as_str).unwrap_or("?"),
                                schema_type(f.get("schema").unwrap_or(&Value::Null))
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("STRUCT<{}>", fields.join(", "))
        }
        "DECIMAL" => {
            let p = &schema["parameters"];
            match (p.get("precision"), p.get("scale")) {
                (Some(precision), Some(scale)) => format!("DECIMAL({precision}, {scale})"),
                _ => "DECIMAL".to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// One `/ksql` entity as the CLI prints it; `None` for entities that print nothing.
pub fn entity(e: &Value, max_width: usize) -> Option<String> {
    let kind = text(e, "@type");
    let out = match kind {
        "currentStatus" => {
            let message = e
                .pointer("/commandStatus/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            table(&["Message"], &[vec![message.to_string()]], max_width)
        }
        "streams" | "tables" => {
            let (key, name) = if kind == "streams" {
                ("streams", "Stream Name")
            } else {
                ("tables", "Table Name")
            };
            let rows: Vec<Vec<String>> = items(e, key)
                .iter()
                .map(|s| {
                    vec![
                        text(s, "name").to_string(),
                        text(s, "topic").to_string(),
                        text(s, "keyFormat").to_string(),
                        text(s, "valueFormat").to_string(),
                        cell(s.get("isWindowed").unwrap_or(&Value::Bool(false))),
                    ]
                })
                .collect();
            table(
                &[
                    name,
                    "Kafka Topic",
                    "Key Format",
                    "Value Format",
                    "Windowed",
                ],
                &rows,
                max_width,
            )
        }
        "queries" => {
            let rows: Vec<Vec<String>> = items(e, "queries")
                .iter()
                .map(|q| {
                    let joined =
                        |k: &str| items(q, k).iter().map(cell).collect::<Vec<_>>().join(",");
                    vec![
                        text(q, "id").to_string(),
                        text(q, "queryType").to_string(),
                        text(q, "state").to_string(),
                        joined("sinks"),
                        joined("sinkKafkaTopics"),
                        text(q, "queryString").to_string(),
                    ]
                })
                .collect();
            let mut t = table(
                &[
                    "Query ID",
                    "Query Type",
                    "Status",
                    "Sink Name",
                    "Sink Kafka Topic",
                    "Query String",
                ],
                &rows,
                max_width,
            );
            t.push_str("\nFor detailed information on a Query run: EXPLAIN <Query ID>;");
            t
        }
        "sourceDescription" => description(e.get("sourceDescription")?, max_width),
        "source_descriptions" => items(e, "sourceDescriptions")
            .iter()
            .map(|d| description(d, max_width))
            .collect::<Vec<_>>()
            .join("\n\n"),
        "kafka_topics" => {
            let rows: Vec<Vec<String>> = items(e, "topics")
                .iter()
                .map(|t| {
                    let replicas = items(t, "replicaInfo");
                    vec![
                        text(t, "name").to_string(),
                        replicas.len().to_string(),
                        replicas.iter().map(cell).collect::<Vec<_>>().join(" "),
                    ]
                })
                .collect();
            table(
                &["Kafka Topic", "Partitions", "Partition Replicas"],
                &rows,
                max_width,
            )
        }
        "type_list" => {
            let rows: Vec<Vec<String>> = e
                .get("types")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(n, s)| vec![n.clone(), schema_type(s)])
                        .collect()
                })
                .unwrap_or_default();
            table(&["Type Name", "Schema"], &rows, max_width)
        }
        "properties" => {
            let rows: Vec<Vec<String>> = items(e, "properties")
                .iter()
                .map(|p| {
                    vec![
                        text(p, "name").to_string(),
                        text(p, "scope").to_string(),
                        cell(p.get("value").unwrap_or(&Value::Null)),
                    ]
                })
                .collect();
            table(&["Property", "Scope", "Value"], &rows, max_width)
        }
        // Anything the CLI has no layout for yet is still shown, as the server sent it.
        _ => serde_json::to_string_pretty(e).unwrap_or_else(|_| e.to_string()),
    };
    Some(out)
}

/// DESCRIBE's layout: the name, a Field | Type table, and with EXTENDED the details.
fn description(d: &Value, max_width: usize) -> String {
    let extended = d.get("extended").and_then(Value::as_bool).unwrap_or(false);
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: &str| {
        out.push_str(&format!("{label:<21}: {value}\n"));
    };
    line(&mut out, "Name", text(d, "name"));
    if extended {
        line(&mut out, "Type", text(d, "type"));
        let ts = text(d, "timestamp");
        line(
            &mut out,
            "Timestamp field",
            if ts.is_empty() {
                "Not set - using <ROWTIME>"
            } else {
                ts
            },
        );
        line(&mut out, "Key format", text(d, "keyFormat"));
        line(&mut out, "Value format", text(d, "valueFormat"));
        line(
            &mut out,
            "Kafka topic",
            &format!(
                "{} (partitions: {}, replication: {})",
                text(d, "topic"),
                cell(d.get("partitions").unwrap_or(&Value::Null)),
                cell(d.get("replication").unwrap_or(&Value::Null)),
            ),
        );
        line(&mut out, "Statement", text(d, "statement"));
    }
    let rows: Vec<Vec<String>> = items(d, "fields")
        .iter()
        .map(|f| {
            let mut ty = schema_type(f.get("schema").unwrap_or(&Value::Null));
            match text(f, "type") {
                "KEY" => ty.push_str("  (key)"),
                "HEADER" => match f.get("headerKey").and_then(Value::as_str) {
                    Some(k) => ty.push_str(&format!("  (header('{k}'))")),
                    None => ty.push_str("  (headers)"),
                },
                _ => {}
            }
            vec![text(f, "name").to_string(), ty]
        })
        .collect();
    out.push_str(&table(&["Field", "Type"], &rows, max_width));
    if extended {
        let writers = items(d, "writeQueries");
        if !writers.is_empty() {
            out.push_str("\n\nQueries that write from this ");
            out.push_str(text(d, "type"));
            out.push_str("\n-----------------------------------\n");
            for q in writers {
                out.push_str(&format!(
                    "{} ({}) : {}\n",
                    text(q, "id"),
                    text(q, "state"),
                    text(q, "queryString")
                ));
            }
        }
    } else {
        out.push_str(
            "\nFor runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;",
        );
    }
    out
}

/// A push query's rows as a table whose column widths are fixed up front (the rows are
/// printed as they arrive, before the longest is known); longer values wrap in their cell.
#[derive(Debug, Clone)]
pub struct StreamTable {
    widths: Vec<usize>,
}

impl StreamTable {
    /// Widths from the column names and types, shrunk to fit `max_width` when they can be.
    pub fn new(columns: &[String], types: &[String], max_width: usize) -> StreamTable {
        let mut widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ty = types.get(i).map(String::as_str).unwrap_or("");
                width(c).max(type_width(ty))
            })
            .collect();
        let frame = 3 * widths.len() + 1;
        let total = |w: &[usize]| w.iter().sum::<usize>() + frame;
        // Narrow the widest column first, never below its name or 4 characters.
        while total(&widths) > max_width {
            let Some((i, _)) = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > width(&columns[*i]).max(4))
                .max_by_key(|(_, w)| **w)
            else {
                break;
            };
            widths[i] -= 1;
        }
        StreamTable { widths }
    }

    pub fn rule(&self) -> String {
        let mut s = String::from("+");
        for w in &self.widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    }

    /// The opening rule, the column names, and the rule under them.
    pub fn header(&self, columns: &[String]) -> String {
        let names: Vec<String> = columns.to_vec();
        format!(
            "{}\n{}\n{}",
            self.rule(),
            self.row_text(&names),
            self.rule()
        )
    }

    /// One row; a value wider than its column continues on the next lines.
    pub fn row(&self, values: &[Value]) -> String {
        let cells: Vec<String> = values.iter().map(cell).collect();
        self.row_text(&cells)
    }

    fn row_text(&self, cells: &[String]) -> String {
        let wrapped: Vec<Vec<String>> = self
            .widths
            .iter()
            .enumerate()
            .map(|(i, w)| wrap(cells.get(i).map(String::as_str).unwrap_or(""), *w))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut lines = Vec::with_capacity(height);
        for l in 0..height {
            let mut s = String::from("|");
            for (i, w) in self.widths.iter().enumerate() {
                let part = wrapped[i].get(l).map(String::as_str).unwrap_or("");
                s.push(' ');
                s.push_str(part);
                s.push_str(&" ".repeat(w.saturating_sub(width(part))));
                s.push_str(" |");
            }
            lines.push(s);
        }
        lines.join("\n")
    }
}

/// A column's starting width from its type: enough for typical values.
fn type_width(ty: &str) -> usize {
    let base = ty.split('<').next().unwrap_or("");
    match base {
        "BOOLEAN" => 7,
        "INTEGER" | "INT" => 11,
        "BIGINT" => 20,
        "DOUBLE" | "DECIMAL" => 12,
        "STRING" | "VARCHAR" | "BYTES" => 16,
        "TIMESTAMP" => 24,
        "DATE" | "TIME" => 12,
        "ARRAY" | "MAP" | "STRUCT" => 30,
        _ => 12,
    }
}

/// Splits `s` into lines of at most `w` display columns (at least one line).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut lines = Vec::new();
    for raw in s.split('\n') {
        let mut cur = String::new();
        let mut cur_w = 0;
        for ch in raw.chars() {
            let cw = width(ch.encode_utf8(&mut [0; 4]));
            if cur_w + cw > w && !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                cur_w = 0;
            }
            cur.push(ch);
            cur_w += cw;
        }
        lines.push(cur);
    }
    lines
}

/// Where a statement starts in a file: its name, line and column.
pub type Origin<'a> = Option<(&'a str, usize, usize)>;

/// A failed statement: the message, then the statement's line with a caret under the
/// column when the message starts with ksqlDB's `line L:C:`. `origin` is where the
/// statement starts in a file (name, line, column), to name the position in the file.
pub fn failure(statement: &str, message: &str, origin: Origin<'_>) -> String {
    let Some((line, column, rest)) = split_position(message) else {
        let mut out = message.to_string();
        let shown = statement.trim();
        if !shown.is_empty() && !message.contains(shown) {
            let place = origin
                .map(|(f, l, c)| format!(" ({f}:{l}:{c})"))
                .unwrap_or_default();
            out.push_str(&format!("\nStatement{place}: {shown}"));
        }
        return out;
    };
    let mut out = match origin {
        Some((file, l, c)) => {
            let (fl, fc) = if line == 1 {
                (l, c + column - 1)
            } else {
                (l + line - 1, column)
            };
            format!("{file}:{fl}:{fc}: {rest}")
        }
        None => message.to_string(),
    };
    if let Some(text) = statement.lines().nth(line.saturating_sub(1)) {
        let pad: String = text
            .chars()
            .take(column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n  {text}\n  {pad}^"));
    }
    out
}

/// `line 3:15: rest` → (3, 15, "rest").
fn split_position(message: &str) -> Option<(usize, usize, &str)> {
    let after = message.strip_prefix("line ")?;
    let (pos, rest) = after.split_once(": ")?;
    let (l, c) = pos.split_once(':')?;
    Some((l.parse().ok()?, c.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entities_render_as_the_cli_shows_them() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"@type": "currentStatus", "commandStatus": {"status": "SUCCESS", "message": "Stream created"}}),
                " Message\n----------------\n Stream created\n----------------",
            ),
            (
                json!({"@type": "streams", "streams": [
                    {"type": "STREAM", "name": "ORDERS", "topic": "orders", "keyFormat": "KAFKA", "valueFormat": "JSON", "isWindowed": false}
                ]}),
                " Stream Name | Kafka Topic | Key Format | Value Format | Windowed\n\
                 ------------------------------------------------------------------\n \
                 ORDERS      | orders      | KAFKA      | JSON         | false\n\
                 ------------------------------------------------------------------",
            ),
            (
                json!({"@type": "sourceDescription", "sourceDescription": {
                "name": "ORDERS", "extended": false, "fields": [
                    {"name": "ORDERID", "type": "KEY", "schema": {"type": "STRING"}},
                    {"name": "ITEMS", "schema": {"type": "ARRAY", "memberSchema": {"type": "STRING"}}},
                    {"name": "TOTAL", "schema": {"type": "DECIMAL", "parameters": {"precision": 4, "scale": 2}}}
                ]}}),
                "Name                 : ORDERS\n \
                 Field   | Type\n\
                 ----------------------------------\n \
                 ORDERID | VARCHAR(STRING)  (key)\n \
                 ITEMS   | ARRAY<VARCHAR(STRING)>\n \
                 TOTAL   | DECIMAL(4, 2)\n\
                 ----------------------------------\n\
                 For runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;",
            ),
            (
                json!({"@type": "kafka_topics", "topics": [{"name": "orders", "replicaInfo": [1, 1]}]}),
                " Kafka Topic | Partitions | Partition Replicas\n\
                 -----------------------------------------------\n \
                 orders      | 2          | 1 1\n\
                 -----------------------------------------------",
            ),
        ];
        for (e, want) in cases {
            let got = entity(&e, 120).unwrap_or_default();
            assert_eq!(got, want, "\n{got}\n---- for {e}");
        }
    }

    #[test]
    fn unknown_entities_are_shown_as_json() {
        let e = json!({"@type": "somethingNew", "x": 1});
        let got = entity(&e, 80).unwrap_or_default();
        assert!(got.contains("\"somethingNew\""), "{got}");
    }

    #[test]
    fn long_cells_wrap_to_the_width() {
        let long = "x".repeat(100);
        let got = table(&["Message"], &[vec![long]], 40);
        assert!(got.lines().all(|l| width(l) <= 40), "{got}");
        assert_eq!(got.matches('x').count(), 100, "{got}");
    }

    #[test]
    fn streamed_rows() {
        let cols = vec!["ORDERID".to_string(), "TOTAL".to_string()];
        let types = vec!["STRING".to_string(), "DOUBLE".to_string()];
        let t = StreamTable::new(&cols, &types, 120);
        assert_eq!(
            t.header(&cols),
            "+------------------+--------------+\n\
             | ORDERID          | TOTAL        |\n\
             +------------------+--------------+"
        );
        assert_eq!(
            t.row(&[json!("o1"), json!(12.5)]),
            "| o1               | 12.5         |"
        );
        // A value wider than its column wraps inside it.
        let t = StreamTable::new(&cols, &types, 30);
        let row = t.row(&[json!("abcdefghijklmnopqrstuvwxyz"), Value::Null]);
        let lines: Vec<&str> = row.lines().collect();
        assert!(lines.len() > 1, "{row}");
        assert!(lines.iter().all(|l| width(l) <= 30), "{row}");
        assert!(lines[0].contains("null"), "{row}");
    }

    #[test]
    fn failures_point_at_the_position() {
        let cases: &[(&str, &str, Origin<'_>, &str)] = &[
            (
                "CREATE STREM x;",
                "line 1:8: Expected: STREAM, found: STREM",
                None,
                "line 1:8: Expected: STREAM, found: STREM\n  CREATE STREM x;\n         ^",
            ),
            (
                "SELECT *\nFROM s EMIT SOON;",
                "line 2:13: Expected: CHANGES or FINAL, found: SOON",
                Some(("script.sql", 10, 3)),
                "script.sql:11:13: Expected: CHANGES or FINAL, found: SOON\n  FROM s EMIT SOON;\n              ^",
            ),
            (
                "CREATE STREM x;",
                "line 1:8: Expected: STREAM, found: STREM",
                Some(("s.sql", 4, 5)),
                "s.sql:4:12: Expected: STREAM, found: STREM\n  CREATE STREM x;\n         ^",
            ),
            (
                "DESCRIBE nope;",
                "Could not find STREAM/TABLE 'NOPE' in the Metastore",
                None,
                "Could not find STREAM/TABLE 'NOPE' in the Metastore\nStatement: DESCRIBE nope;",
            ),
        ];
        for (stmt, message, origin, want) in cases {
            assert_eq!(failure(stmt, message, *origin), *want);
        }
    }

    #[test]
    fn schema_types() {
        let s = json!({"type": "STRUCT", "fields": [
            {"name": "A", "schema": {"type": "INTEGER"}},
            {"name": "B", "schema": {"type": "MAP", "memberSchema": {"type": "BIGINT"}}}
        ]});
        assert_eq!(schema_type(&s), "STRUCT<A INTEGER, B MAP<STRING, BIGINT>>");
    }
}

//! The line editor's helper: tab completion (keywords, the server's streams, tables and
//! columns, functions, properties, client commands), keyword and string colours, and a
//! hint for the rest of a statement where there is only one sensible ending.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::lexer::{self, Kind};

/// ksqlDB's keywords, for completion and highlighting.
pub const KEYWORDS: &[&str] = &[
    "ADVANCE",
    "ALL",
    "ALTER",
    "AND",
    "ARRAY",
    "AS",
    "ASSERT",
    "AT",
    "BEGINNING",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "BYTES",
    "CASE",
    "CAST",
    "CHANGES",
    "CONNECTOR",
    "CONNECTORS",
    "CREATE",
    "DATE",
    "DAY",
    "DAYS",
    "DECIMAL",
    "DEFINE",
    "DELETE",
    "DESCRIBE",
    "DISTINCT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXISTS",
    "EXPLAIN",
    "EXTENDED",
    "FALSE",
    "FINAL",
    "FROM",
    "FULL",
    "FUNCTION",
    "FUNCTIONS",
    "GRACE",
    "GROUP",
    "HAVING",
    "HEADER",
    "HEADERS",
    "HOPPING",
    "HOUR",
    "HOURS",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INT",
    "INTEGER",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LIST",
    "MAP",
    "MILLISECOND",
    "MILLISECONDS",
    "MINUTE",
    "MINUTES",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "OUTER",
    "PARTITION",
    "PARTITIONS",
    "PAUSE",
    "PRIMARY",
    "PRINT",
    "PROPERTIES",
    "QUERIES",
    "QUERY",
    "REPLACE",
    "RESUME",
    "RETENTION",
    "RIGHT",
    "SCRIPT",
    "SECOND",
    "SECONDS",
    "SELECT",
    "SESSION",
    "SET",
    "SHOW",
    "SINK",
    "SIZE",
    "SOURCE",
    "STREAM",
    "STREAMS",
    "STRING",
    "STRUCT",
    "TABLE",
    "TABLES",
    "TERMINATE",
    "THEN",
    "TIME",
    "TIMESTAMP",
    "TO",
    "TOPIC",
    "TOPICS",
    "TRUE",
    "TUMBLING",
    "TYPE",
    "TYPES",
    "UNDEFINE",
    "UNSET",
    "VALUES",
    "VARCHAR",
    "VARIABLES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WINDOWEND",
    "WINDOWSTART",
    "WITH",
    "WITHIN",
];

/// ksqlDB's built-in function names: the server has no SHOW FUNCTIONS yet.
pub const FUNCTIONS: &[&str] = &[
    "ABS",
    "ARRAY_CONCAT",
    "ARRAY_CONTAINS",
    "ARRAY_DISTINCT",
    "ARRAY_EXCEPT",
    "ARRAY_INTERSECT",
    "ARRAY_JOIN",
    "ARRAY_LENGTH",
    "ARRAY_MAX",
    "ARRAY_MIN",
    "ARRAY_REMOVE",
    "ARRAY_SORT",
    "ARRAY_UNION",
    "AS_MAP",
    "AS_VALUE",
    "AVG",
    "CBRT",
    "CEIL",
    "CHR",
    "COALESCE",
    "COLLECT_LIST",
    "COLLECT_SET",
    "CONCAT",
    "CONCAT_WS",
    "CONVERT_TZ",
    "COUNT",
    "COUNT_DISTINCT",
    "CUBE_EXPLODE",
    "DATEADD",
    "DATESUB",
    "DATETOSTRING",
    "EARLIEST_BY_OFFSET",
    "ELT",
    "ENCODE",
    "ENTRIES",
    "EXP",
    "EXPLODE",
    "EXTRACTJSONFIELD",
    "FIELD",
    "FILTER",
    "FLOOR",
    "FORMAT_DATE",
    "FORMAT_TIME",
    "FORMAT_TIMESTAMP",
    "FROM_BYTES",
    "FROM_DAYS",
    "FROM_UNIXTIME",
    "GENERATE_SERIES",
    "GEO_DISTANCE",
    "GREATEST",
    "HISTOGRAM",
    "IFNULL",
    "INITCAP",
    "INSTR",
    "IS_JSON_STRING",
    "JSON_ARRAY_CONTAINS",
    "JSON_ARRAY_LENGTH",
    "JSON_CONCAT",
    "JSON_ITEMS",
    "JSON_KEYS",
    "JSON_RECORDS",
    "JSON_TO_STRING",
    "LATEST_BY_OFFSET",
    "LCASE",
    "LEAST",
    "LEN",
    "LN",
    "LPAD",
    "MAP_KEYS",
    "MAP_UNION",
    "MAP_VALUES",
    "MASK",
    "MASK_KEEP_LEFT",
    "MASK_KEEP_RIGHT",
    "MASK_LEFT",
    "MASK_RIGHT",
    "MAX",
    "MIN",
    "NULLIF",
    "PARSE_DATE",
    "PARSE_TIME",
    "PARSE_TIMESTAMP",
    "POWER",
    "RANDOM",
    "REDUCE",
    "REGEXP_EXTRACT",
    "REGEXP_EXTRACT_ALL",
    "REGEXP_REPLACE",
    "REGEXP_SPLIT_TO_ARRAY",
    "REPLACE",
    "ROUND",
    "RPAD",
    "SIGN",
    "SLICE",
    "SPLIT",
    "SPLIT_TO_MAP",
    "SQRT",
    "STDDEV_SAMP",
    "STRINGTODATE",
    "STRINGTOTIMESTAMP",
    "SUBSTRING",
    "SUM",
    "TIMESTAMPADD",
    "TIMESTAMPSUB",
    "TIMESTAMPTOSTRING",
    "TOPK",
    "TOPKDISTINCT",
    "TO_BYTES",
    "TRANSFORM",
    "TRIM",
    "TRUNC",
    "UCASE",
    "UNIX_DATE",
    "UNIX_TIMESTAMP",
    "URL_DECODE_PARAM",
    "URL_ENCODE_PARAM",
    "URL_EXTRACT_FRAGMENT",
    "URL_EXTRACT_HOST",
    "URL_EXTRACT_PARAMETER",
    "URL_EXTRACT_PATH",
    "URL_EXTRACT_PORT",
    "URL_EXTRACT_PROTOCOL",
    "URL_EXTRACT_QUERY",
    "UUID",
];

/// Properties worth completing inside SET '…'.
pub const PROPERTIES: &[&str] = &[
    "auto.offset.reset",
    "ksql.streams.auto.offset.reset",
    "ksql.streams.cache.max.bytes.buffering",
    "ksql.streams.commit.interval.ms",
    "ksql.streams.num.stream.threads",
    "ksql.query.pull.table.scan.enabled",
    "processing.guarantee",
    "cache.max.bytes.buffering",
    "commit.interval.ms",
];

/// The client-side commands, completed at the start of a line.
pub const COMMANDS: &[&str] = &[
    "help",
    "clear",
    "exit",
    "quit",
    "history",
    "version",
    "server",
    "output",
    "spool",
    "run script",
];

/// Whole statements the hint offers once what was typed names exactly one of them.
const TEMPLATES: &[&str] = &[
    "SHOW STREAMS;",
    "SHOW TABLES;",
    "SHOW QUERIES;",
    "SHOW TOPICS;",
    "SHOW TYPES;",
    "SHOW VARIABLES;",
    "LIST STREAMS;",
    "LIST TABLES;",
    "LIST QUERIES;",
    "LIST TOPICS;",
    "SET 'auto.offset.reset'='earliest';",
    "TERMINATE ALL;",
];

/// What the server has: filled after connecting and after each CREATE or DROP.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub sources: Vec<String>,
    pub columns: Vec<String>,
}

pub type SharedNames = Arc<Mutex<Names>>;

pub struct BrookHelper {
    names: SharedNames,
    /// Colours only on a terminal that takes them (NO_COLOR respected).
    color: bool,
}

impl BrookHelper {
    pub fn new(names: SharedNames, color: bool) -> BrookHelper {
        BrookHelper { names, color }
    }

    fn names(&self) -> Names {
        // A panic elsewhere must not take completion down with it.
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Completion candidates for the word that ends at `pos`: `(start, candidates)`.
pub fn candidates(line: &str, pos: usize, names: &Names) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let toks = lexer::tokens(before);
    // Inside an open string after SET/UNSET: property names.
    if let Some(last) = toks.last() {
        if last.kind == (Kind::Str { closed: false }) {
            let words: Vec<String> = toks
                .iter()
                .filter(|t| t.kind == Kind::Word)
                .map(|t| before[t.span.clone()].to_ascii_uppercase())
                .collect();
            if words.last().is_some_and(|w| w == "SET" || w == "UNSET") {
                let start = last.span.start + 1;
                let prefix = &before[start..];
                let found = PROPERTIES
                    .iter()
                    .filter(|p| p.starts_with(prefix))
                    .map(|p| p.to_string())
                    .collect();
                return (start, found);
            }
            return (pos, Vec::new());
        }
    }
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
        .last()
        .map_or(pos, |(i, _)| i);
    let prefix = &before[start..];
    let upper = prefix.to_ascii_uppercase();
    // Lower-case typing gets lower-case keywords back; names keep the server's case.
    let lower = !prefix.is_empty() && prefix.chars().all(|c| !c.is_ascii_uppercase());
    let previous = toks
        .iter()
        .rev()
        .filter(|t| !t.kind.is_trivia() && t.span.end <= start)
        .find(|t| t.kind == Kind::Word)
        .map(|t| before[t.span.clone()].to_ascii_uppercase());
    let wants_source = matches!(
        previous.as_deref(),
        Some("FROM" | "JOIN" | "INTO" | "DESCRIBE" | "STREAM" | "TABLE" | "EXISTS" | "PRINT")
    );
    let first_word = before[..start].trim().is_empty();
    let mut out: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if c.to_ascii_uppercase().starts_with(&upper) && !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    };
    for s in &names.sources {
        add(s);
    }
    if !wants_source {
        if first_word {
            for c in COMMANDS {
                if c.starts_with(&prefix.to_ascii_lowercase()) {
                    add(c);
                }
            }
        }
        for c in &names.columns {
            add(c);
        }
        for k in KEYWORDS {
            if lower {
                add(&k.to_ascii_lowercase());
            } else {
                add(k);
            }
        }
        if !first_word {
            for f in FUNCTIONS {
                add(f);
            }
        }
    }
    (start, out)
}

/// The rest of a statement when it can only end one way.
pub fn hint(line: &str) -> Option<String> {
    if line.trim().is_empty() {
        return None;
    }
    let upper = line.to_ascii_uppercase();
    let matching: Vec<&&str> = TEMPLATES
        .iter()
        .filter(|t| t.len() > line.len() && t.starts_with(&upper))
        .collect();
    if let [only] = matching.as_slice() {
        // Typed at least the first word, so the hint is a completion, not a guess.
        if line.contains(' ') || line.len() >= 4 {
            return Some(only[line.len()..].to_string());
        }
    }
    // A SELECT with its FROM but no EMIT or ';' yet: a push query needs EMIT CHANGES.
    let split = lexer::split(line);
    if split.statements.is_empty() && !line.ends_with(char::is_whitespace) {
        let words: Vec<String> = lexer::tokens(line)
            .iter()
            .filter(|t| t.kind == Kind::Word)
            .map(|t| line[t.span.clone()].to_ascii_uppercase())
            .collect();
        let has = |w: &str| words.iter().any(|x| x == w);
        if words.first().is_some_and(|w| w == "SELECT")
            && has("FROM")
            && !has("EMIT")
            && words.last().is_some_and(|w| w != "FROM")
            && !lexer::tokens(line).last().is_some_and(|t| t.kind.is_open())
        {
            return Some(" EMIT CHANGES;".to_string());
        }
    }
    None
}

/// The line with ANSI colours: keywords bold blue, strings green, numbers yellow,
/// comments grey, variables magenta. The visible text is unchanged.
pub fn highlight(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 32);
    for t in lexer::tokens(line) {
        let text = &line[t.span.clone()];
        let colour = match t.kind {
            Kind::Word if is_keyword(text) => Some("1;34"),
            Kind::Str { .. } => Some("32"),
            Kind::Number => Some("33"),
            Kind::LineComment | Kind::BlockComment { .. } => Some("90"),
            Kind::Variable => Some("35"),
            _ => None,
        };
        match colour {
            Some(c) => out.push_str(&format!("\x1b[{c}m{text}\x1b[0m")),
            None => out.push_str(text),
        }
    }
    out
}

pub fn is_keyword(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    KEYWORDS.binary_search(&upper.as_str()).is_ok()
}

impl Completer for BrookHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = candidates(line, pos, &self.names());
        Ok((
            start,
            found
                .into_iter()
                .map(|c| Pair {
                    display: c.clone(),
                    replacement: c,
                })
                .collect(),
        ))
    }
}

impl Hinter for BrookHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        hint(line)
    }
}

impl Highlighter for BrookHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.color {
            Cow::Owned(highlight(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Any edit can turn a word into a keyword or open a string.
        self.color && kind != CmdKind::MoveCursor
    }
}

impl Validator for BrookHelper {}

impl Helper for BrookHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_list_is_sorted_for_binary_search() {
        let mut sorted = KEYWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, KEYWORDS);
    }

    fn names() -> Names {
        Names {
            sources: vec!["ORDERS".into(), "ORDER_TOTALS".into()],
            columns: vec!["ORDERID".into(), "TOTAL".into()],
        }
    }

    #[test]
    fn completes_in_context() {
        // (line, expected start, must contain, must not contain)
        let cases: &[(&str, usize, &[&str], &[&str])] = &[
            ("SEL", 0, &["SELECT"], &[]),
            ("sel", 0, &["select"], &["SELECT"]),
            ("SELECT * FROM OR", 14, &["ORDERS", "ORDER_TOTALS"], &["OR"]),
            ("DESCRIBE ORD", 9, &["ORDERS"], &["ORDERID"]),
            ("SELECT TOT", 7, &["TOTAL"], &[]),
            ("SELECT COUNT_D", 7, &["COUNT_DISTINCT"], &[]),
            ("SET 'auto.off", 5, &["auto.offset.reset"], &[]),
            ("spo", 0, &["spool"], &[]),
            ("SELECT 'abc", 11, &[], &["ABS"]),
        ];
        for (line, start, has, lacks) in cases {
            let (s, got) = candidates(line, line.len(), &names());
            assert_eq!(s, *start, "start for {line:?}: {got:?}");
            for h in *has {
                assert!(got.iter().any(|g| g == h), "{line:?} offers {h}: {got:?}");
            }
            for l in *lacks {
                assert!(!got.iter().any(|g| g == l), "{line:?} offers {l}: {got:?}");
            }
        }
    }

    #[test]
    fn hints() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SHOW STR", Some("EAMS;")),
            ("show tab", Some("LES;")),
            ("SHOW", None),
            ("SELECT * FROM orders", Some(" EMIT CHANGES;")),
            ("SELECT * FROM orders EMIT CHANGES", None),
            ("SELECT * FROM", None),
            ("SELECT * FROM orders;", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(hint(line).as_deref(), *want, "hint for {line:?}");
        }
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "SELECT 'a', 1 FROM s -- c";
        let h = highlight(line);
        assert!(h.contains("\x1b[1;34mSELECT\x1b[0m"), "{h}");
        assert!(h.contains("\x1b[32m'a'\x1b[0m"), "{h}");
        let plain: String = strip_ansi(&h);
        assert_eq!(plain, line);
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }
}

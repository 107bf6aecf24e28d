//! A small lexer for what the REPL reads: enough of ksqlDB's lexical rules to split input
//! into statements at `;`, to tell whether a statement is still open (so the REPL asks for
//! another line), and to colour keywords and strings. It never fails: text that the server
//! would reject is still split, so that the server can report the error with its position.

use std::ops::Range;

/// What a run of input text is, for splitting and highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Whitespace,
    /// `-- …` up to the end of the line.
    LineComment,
    /// `/* … */`; `closed` is false when the input ends inside it.
    BlockComment {
        closed: bool,
    },
    /// `'…'` with `''` for a quote inside.
    Str {
        closed: bool,
    },
    /// `"…"` or `` `…` ``: a quoted identifier.
    QuotedIdent {
        closed: bool,
    },
    /// A keyword or an unquoted identifier.
    Word,
    Number,
    /// `${name}`, replaced by DEFINE's value before the statement is sent.
    Variable,
    Semicolon,
    /// Any other character: operators, parentheses, commas.
    Punct,
}

impl Kind {
    /// Whitespace and comments separate tokens and never make a statement.
    pub fn is_trivia(self) -> bool {
        matches!(
            self,
            Kind::Whitespace | Kind::LineComment | Kind::BlockComment { .. }
        )
    }

    /// Whether the input ended inside this token (a quote or comment left open).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Kind::BlockComment { closed: false }
                | Kind::Str { closed: false }
                | Kind::QuotedIdent { closed: false }
        )
    }
}

/// A token: its kind and its byte range in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub span: Range<usize>,
}

/// Splits `text` into tokens that cover it completely, in order.
pub fn tokens(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                Kind::Whitespace
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                Kind::LineComment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                let closed = match text[i..].find("*/") {
                    Some(end) => {
                        i += end + 2;
                        true
                    }
                    None => {
                        i = bytes.len();
                        false
                    }
                };
                Kind::BlockComment { closed }
            }
            b'\'' => Kind::Str {
                closed: quoted(bytes, &mut i, b'\''),
            },
            b'"' | b'`' => Kind::QuotedIdent {
                closed: quoted(bytes, &mut i, c),
            },
            b'$' if bytes.get(i + 1) == Some(&b'{') => match text[i..].find('}') {
                Some(end) => {
                    i += end + 1;
                    Kind::Variable
                }
                None => {
                    i += 1;
                    Kind::Punct
                }
            },
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Kind::Number
            }
            _ if is_word_byte(c) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                Kind::Word
            }
            _ => {
                // One character, whatever its UTF-8 length.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Punct
            }
        };
        out.push(Token {
            kind,
            span: start..i,
        });
    }
    out
}

/// Identifier characters; non-ASCII letters count, as ksqlDB accepts them unquoted.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Advances past a quoted run starting at `*i` (on the opening quote); a doubled quote is
/// an escaped one. Returns whether the closing quote was found.
fn quoted(bytes: &[u8], i: &mut usize, quote: u8) -> bool {
    *i += 1;
    while *i < bytes.len() {
        if bytes[*i] == quote {
            if bytes.get(*i + 1) == Some(&quote) {
                *i += 2;
                continue;
            }
            *i += 1;
            return true;
        }
        *i += 1;
    }
    false
}

/// One statement of the input: its text without the closing `;` (leading whitespace and
/// comments dropped) and where it starts (1-based line and column in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub line: usize,
    pub column: usize,
}

/// The input split at `;`: the finished statements, and the text after the last `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<Piece>,
    /// What follows the last `;`.
    pub rest: String,
    /// Whether `rest` holds the start of a statement (or an open quote or comment), so the
    /// REPL should read another line before running it.
    pub pending: bool,
}

/// Splits input into statements, respecting quotes and comments.
pub fn split(text: &str) -> Split {
    split_inner(text, false)
}

/// Splits a whole script: the end of the text also ends its last statement, so one left
/// without its `;` (or with an open quote) still runs and the server can say what is wrong.
pub fn split_all(text: &str) -> Vec<Piece> {
    split_inner(text, true).statements
}

fn split_inner(text: &str, close_at_end: bool) -> Split {
    let mut statements = Vec::new();
    // Byte offset where the current statement's first real token begins.
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut rest_from = 0;
    let mut open = false;
    for t in tokens(text) {
        open = t.kind.is_open();
        match t.kind {
            Kind::Semicolon => {
                if let Some(s) = start.take() {
                    statements.push(piece(text, s, end));
                }
                rest_from = t.span.end;
            }
            k if k.is_trivia() => {}
            _ => {
                start.get_or_insert(t.span.start);
                end = t.span.end;
            }
        }
    }
    if close_at_end {
        if let Some(s) = start.take() {
            statements.push(piece(text, s, end));
            rest_from = text.len();
            open = false;
        }
    }
    Split {
        statements,
        rest: text[rest_from..].to_string(),
        pending: start.is_some() || open,
    }
}

fn piece(text: &str, start: usize, end: usize) -> Piece {
    let (line, column) = position(text, start);
    Piece {
        text: text[start..end].to_string(),
        line,
        column,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, statements as text@line:col, pending)
    const SPLITS: &[(&str, &[&str], bool)] = &[
        ("", &[], false),
        ("   \n  ", &[], false),
        ("SHOW STREAMS;", &["SHOW STREAMS@1:1"], false),
        ("SHOW STREAMS", &[], true),
        (
            "SHOW STREAMS;\nSHOW TABLES;",
            &["SHOW STREAMS@1:1", "SHOW TABLES@2:1"],
            false,
        ),
        ("  SHOW STREAMS ;  SHOW", &["SHOW STREAMS@1:3"], true),
        (";;;", &[], false),
        // A `;` inside a string, a quoted identifier or a comment does not end the statement.
        ("SELECT 'a;b' FROM s;", &["SELECT 'a;b' FROM s@1:1"], false),
        (
            "SELECT 'it''s;' FROM s;",
            &["SELECT 'it''s;' FROM s@1:1"],
            false,
        ),
        (
            "SELECT \"a;b\" FROM s;",
            &["SELECT \"a;b\" FROM s@1:1"],
            false,
        ),
        ("SELECT `a;b` FROM s;", &["SELECT `a;b` FROM s@1:1"], false),
        ("SELECT 'open;", &[], true),
        ("SELECT 1 -- no; not yet\n;", &["SELECT 1@1:1"], false),
        ("SELECT /* ; */ 1;", &["SELECT /* ; */ 1@1:1"], false),
        ("SELECT /* still ; open", &[], true),
        // A comment after the last statement leaves nothing pending.
        ("SHOW TOPICS; -- done", &["SHOW TOPICS@1:1"], false),
        ("SHOW TOPICS; /* open", &["SHOW TOPICS@1:1"], true),
        // Leading comments are not part of the statement, and its position is its own.
        (
            "-- intro\n/* x */  LIST STREAMS;",
            &["LIST STREAMS@2:10"],
            false,
        ),
        (
            "CREATE STREAM s (\n  id INT\n) WITH (kafka_topic='t');",
            &["CREATE STREAM s (\n  id INT\n) WITH (kafka_topic='t')@1:1"],
            false,
        ),
        (
            "DEFINE x = 'a';SELECT ${x};",
            &["DEFINE x = 'a'@1:1", "SELECT ${x}@1:16"],
            false,
        ),
        (
            "SELECT 'é;', `ü` FROM s; é",
            &["SELECT 'é;', `ü` FROM s@1:1"],
            true,
        ),
    ];

    #[test]
    fn splits_statements() {
        for (input, want, pending) in SPLITS {
            let got = split(input);
            let shown: Vec<String> = got
                .statements
                .iter()
                .map(|p| format!("{}@{}:{}", p.text, p.line, p.column))
                .collect();
            assert_eq!(&shown, want, "statements of {input:?}");
            assert_eq!(got.pending, *pending, "pending after {input:?}");
        }
    }

    #[test]
    fn a_script_ends_its_last_statement() {
        let pieces = split_all("SHOW STREAMS;\n  SHOW TABLES\n");
        let shown: Vec<(&str, usize, usize)> = pieces
            .iter()
            .map(|p| (p.text.as_str(), p.line, p.column))
            .collect();
        assert_eq!(shown, vec![("SHOW STREAMS", 1, 1), ("SHOW TABLES", 2, 3)]);
        let open = split_all("SELECT 'oops FROM s;");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].text, "SELECT 'oops FROM s;");
    }

    #[test]
    fn the_rest_is_what_follows_the_last_semicolon() {
        let s = split("SHOW STREAMS;\nSELECT *\n  FROM s");
        assert_eq!(s.rest, "\nSELECT *\n  FROM s");
        assert!(s.pending);
    }

    #[test]
    fn tokens_cover_the_input() {
        let text = "SELECT 'x', \"Y\", 1.5e3, ${v} /* c */ -- d\nFROM s;";
        let toks = tokens(text);
        let mut at = 0;
        for t in &toks {
            assert_eq!(t.span.start, at, "{toks:?}");
            at = t.span.end;
        }
        assert_eq!(at, text.len());
        let kinds: Vec<(Kind, &str)> = toks
            .iter()
            .filter(|t| t.kind != Kind::Whitespace)
            .map(|t| (t.kind, &text[t.span.clone()]))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Word, "SELECT"),
                (Kind::Str { closed: true }, "'x'"),
                (Kind::Punct, ","),
                (Kind::QuotedIdent { closed: true }, "\"Y\""),
                (Kind::Punct, ","),
                (Kind::Number, "1.5e3"),
                (Kind::Punct, ","),
                (Kind::Variable, "${v}"),
                (Kind::BlockComment { closed: true }, "/* c */"),
                (Kind::LineComment, "-- d"),
                (Kind::Word, "FROM"),
                (Kind::Word, "s"),
                (Kind::Semicolon, ";"),
            ]
        );
    }
}

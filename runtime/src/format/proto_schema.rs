//! Protobuf schemas as Schema Registry holds them (`.proto` text, with the files it imports
//! given as references), read far enough to infer ksqlDB columns from one of their
//! messages, as ksqlDB's schema inference does through Confluent's `ProtobufData`:
//!
//! - `int32`, `sint32`, `sfixed32` are INT; the other integers (unsigned ones too, which an
//!   INT cannot hold) are BIGINT; `float` and `double` are DOUBLE; enums are STRING.
//! - `repeated` fields are ARRAYs, `map<K, V>` MAPs, messages STRUCTs.
//! - The well-known wrappers (`google.protobuf.Int32Value` …) are their primitive,
//!   `google.protobuf.Timestamp` TIMESTAMP, `google.type.Date` DATE, `google.type.TimeOfDay`
//!   TIME and `confluent.type.Decimal` a DECIMAL with the precision and scale its
//!   `confluent.field_meta` parameters give.
//! - Fields of types ksqlDB cannot represent are left out, as ksqlDB ignores them.
//!
//! The value's message is the one named by `*_SCHEMA_FULL_NAME` (package-qualified, nested
//! messages joined with dots) or else the file's first message.

use std::collections::HashMap;

/// How deep messages may nest, in the text (`message A { message B { …`) and as column
/// types (a message field of a message field …): deeper schemas are refused rather than
/// risking the stack.
const MAX_DEPTH: usize = 64;

/// How many types inferring one message's columns may expand: a message using another
/// twice, which uses another twice, and so on, would otherwise expand exponentially.
const MAX_EXPANDED: usize = 100_000;

/// A field's type as written in the schema.
#[derive(Debug, Clone, PartialEq)]
enum FieldType {
    Named(String),
    Map(String, String),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    ty: FieldType,
    repeated: bool,
    /// `confluent.field_meta` parameters (`precision`, `scale` …).
    params: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Member {
    Field(Field),
    /// A `oneof`: ProtobufData makes it a struct of its fields, named `<name>_0`.
    OneOf(String, Vec<Field>),
}

#[derive(Debug, Clone, PartialEq)]
enum Definition {
    /// Members, in declaration order.
    Message(Vec<Member>),
    Enum,
}

/// The definitions of a file and of every file it imports, by full name (no leading dot).
#[derive(Debug, Default)]
struct Definitions {
    types: HashMap<String, Definition>,
    /// Full names of the main file's top-level messages, in order.
    top_level: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Sym(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated string in the protobuf schema".into());
            }
            i += 1;
            out.push(Token::Str(s));
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '+' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-' | '+'))
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Sym(c));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Result<Token, String> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("unexpected end of the protobuf schema")?;
        self.pos += 1;
        Ok(t)
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Word(w) => Ok(w),
            other => Err(format!(
                "expected a name in the protobuf schema, got {other:?}"
            )),
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next()? {
            Token::Sym(s) if s == c => Ok(()),
            other => Err(format!(
                "expected `{c}` in the protobuf schema, got {other:?}"
            )),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips to the end of the current statement: past the next `;` at this nesting level,
    /// or past a balanced `{…}` block.
    fn skip_statement(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Token::Sym('{') => depth += 1,
                Token::Sym('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        // A block may still be followed by a `;`.
                        self.eat(';');
                        return Ok(());
                    }
                }
                Token::Sym(';') if depth == 0 => return Ok(()),
                _ => {}
            }
        }
    }

    /// The tokens of a `[…]` option list, the opening bracket already read.
    fn options(&mut self) -> Result<Vec<Token>, String> {
        let mut depth = 1usize;
        let mut out = Vec::new();
        loop {
            let t = self.next()?;
            match t {
                Token::Sym('[') => depth += 1,
                Token::Sym(']') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                _ => {}
            }
            out.push(t);
        }
    }
}

/// `key: "precision", value: "4"` pairs anywhere in a field's options.
fn field_params(options: &[Token]) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut key = None;
    let mut value = None;
    let mut i = 0;
    while i < options.len() {
        match &options[i] {
            Token::Word(w) if (w == "key" || w == "value") => {
                let mut j = i + 1;
                if options.get(j) == Some(&Token::Sym(':')) {
                    j += 1;
                }
                if let Some(Token::Str(s)) = options.get(j) {
                    if w == "key" {
                        key = Some(s.clone());
                    } else {
                        value = Some(s.clone());
                    }
                    i = j;
                }
            }
            Token::Sym('}') => {
                if let (Some(k), Some(v)) = (key.take(), value.take()) {
                    params.insert(k, v);
                }
                key = None;
                value = None;
            }
            _ => {}
        }
        i += 1;
    }
    params
}

/// Parses one file's definitions into `defs`, qualified by its package; returns the full
/// names of its top-level messages in order.
fn parse_file(text: &str, defs: &mut Definitions) -> Result<Vec<String>, String> {
    let mut p = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    let mut package = String::new();
    let mut top = Vec::new();
    while let Some(t) = p.peek().cloned() {
        match t {
            Token::Word(w) if w == "package" => {
                p.pos += 1;
                package = p.word()?;
                p.expect(';')?;
            }
            Token::Word(w) if w == "message" => {
                p.pos += 1;
                let name = p.word()?;
                let full = qualify(&package, &name);
                parse_message(&mut p, &full, defs, 1)?;
                top.push(full);
            }
            Token::Word(w) if w == "enum" => {
                p.pos += 1;
                let name = p.word()?;
                defs.types
                    .insert(qualify(&package, &name), Definition::Enum);
                p.skip_statement()?;
            }
            Token::Sym(';') => p.pos += 1,
            // syntax, import, option, service, extend: nothing a column needs.
            _ => p.skip_statement()?,
        }
    }
    Ok(top)
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// Parses a message body (`{…}`) named `full`, with its nested types; `depth` counts the
/// messages it is in, itself included.
fn parse_message(
    p: &mut Parser,
    full: &str,
    defs: &mut Definitions,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "message {full} is nested more than {MAX_DEPTH} messages deep"
        ));
    }
    p.expect('{')?;
    let mut members = Vec::new();
    loop {
        let Some(t) = p.peek().cloned() else {
            return Err(format!("message {full} is not closed"));
        };
        match t {
            Token::Sym('}') => {
                p.pos += 1;
                break;
            }
            Token::Sym(';') => p.pos += 1,
            Token::Word(w) => match w.as_str() {
                "message" => {
                    p.pos += 1;
                    let name = p.word()?;
                    parse_message(p, &qualify(full, &name), defs, depth + 1)?;
                }
                "enum" => {
                    p.pos += 1;
                    let name = p.word()?;
                    defs.types.insert(qualify(full, &name), Definition::Enum);
                    p.skip_statement()?;
                }
                "oneof" => {
                    p.pos += 1;
                    let name = p.word()?;
                    p.expect('{')?;
                    let mut fields = Vec::new();
                    while !p.eat('}') {
                        if p.eat(';') {
                            continue;
                        }
                        if p.peek() == Some(&Token::Word("option".into())) {
                            p.skip_statement()?;
                            continue;
                        }
                        fields.push(parse_field(p)?);
                    }
                    members.push(Member::OneOf(name, fields));
                }
                "option" | "reserved" | "extensions" | "extend" => p.skip_statement()?,
                _ => members.push(Member::Field(parse_field(p)?)),
            },
            other => return Err(format!("unexpected {other:?} in message {full}")),
        }
    }
    defs.types
        .insert(full.to_string(), Definition::Message(members));
    Ok(())
}

/// `[repeated|optional|required] type name = N [options];` or `map<K, V> name = N …;`.
fn parse_field(p: &mut Parser) -> Result<Field, String> {
    let mut word = p.word()?;
    let mut repeated = false;
    if matches!(word.as_str(), "repeated" | "optional" | "required") {
        repeated = word == "repeated";
        word = p.word()?;
    }
    let ty = if word == "map" && p.eat('<') {
        let k = p.word()?;
        p.expect(',')?;
        let v = p.word()?;
        p.expect('>')?;
        FieldType::Map(k, v)
    } else {
        FieldType::Named(word)
    };
    let name = p.word()?;
    p.expect('=')?;
    p.word()?;
    let params = if p.eat('[') {
        field_params(&p.options()?)
    } else {
        HashMap::new()
    };
    p.expect(';')?;
    Ok(Field {
        name,
        ty,
        repeated,
        params,
    })
}

// ---------------------------------------------------------------------------------------
// Columns

/// How inferred names are written.
struct Naming {
    /// Upper-case field names (inference without a schema id does; with one, names are
    /// kept as the schema has them).
    upper: bool,
}

impl Naming {
    fn name(&self, n: &str) -> String {
        if self.upper {
            n.to_uppercase()
        } else {
            n.to_string()
        }
    }
}

/// Resolves a type reference made inside `scope` (a message's full name) as protobuf does:
/// innermost scope first, a leading dot meaning fully qualified.
fn resolve<'a>(defs: &'a Definitions, scope: &str, name: &str) -> Option<(String, &'a Definition)> {
    if let Some(abs) = name.strip_prefix('.') {
        return defs.types.get(abs).map(|d| (abs.to_string(), d));
    }
    let mut scope = scope.to_string();
    loop {
        let candidate = qualify(&scope, name);
        if let Some(d) = defs.types.get(&candidate) {
            return Some((candidate, d));
        }
        if scope.is_empty() {
            return None;
        }
        scope = match scope.rfind('.') {
            Some(i) => scope[..i].to_string(),
            None => String::new(),
        };
    }
}

fn scalar(name: &str) -> Option<&'static str> {
    Some(match name {
        "double" | "float" => "DOUBLE",
        "int32" | "sint32" | "sfixed32" => "INT",
        "int64" | "sint64" | "sfixed64" | "uint32" | "fixed32" | "uint64" | "fixed64" => "BIGINT",
        "bool" => "BOOLEAN",
        "string" => "STRING",
        "bytes" => "BYTES",
        _ => return None,
    })
}

/// Well-known message types ksqlDB reads as one of its own types.
fn well_known(full: &str, params: &HashMap<String, String>) -> Option<Result<String, String>> {
    let t = match full.trim_start_matches('.') {
        "google.protobuf.BoolValue" => "BOOLEAN",
        "google.protobuf.Int32Value" => "INT",
        "google.protobuf.Int64Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value" => "BIGINT",
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => "DOUBLE",
        "google.protobuf.StringValue" => "STRING",
        "google.protobuf.BytesValue" => "BYTES",
        "google.protobuf.Timestamp" => "TIMESTAMP",
        "google.type.Date" => "DATE",
        "google.type.TimeOfDay" => "TIME",
        "confluent.type.Decimal" => {
            let num = |k: &str| params.get(k).and_then(|v| v.trim().parse::<u32>().ok());
            return Some(match (num("precision"), num("scale")) {
                (Some(p), s) => Ok(format!("DECIMAL({p}, {})", s.unwrap_or(0))),
                _ => Err("confluent.type.Decimal without a precision".into()),
            });
        }
        _ => return None,
    };
    Some(Ok(t.to_string()))
}

/// Where inferring columns is: the messages being expanded (outermost first), and how
/// many types were expanded so far.
struct Expansion {
    stack: Vec<String>,
    expanded: usize,
}

/// The ksqlDB type of a named protobuf type referenced from `scope`; `Ok(None)` when ksqlDB
/// cannot represent it (the field is then left out).
fn named_type(
    defs: &Definitions,
    scope: &str,
    name: &str,
    params: &HashMap<String, String>,
    naming: &Naming,
    stack: &mut Expansion,
) -> Result<Option<String>, String> {
    stack.expanded += 1;
    if stack.expanded > MAX_EXPANDED {
        return Err(format!(
            "the message's columns expand to more than {MAX_EXPANDED} types"
        ));
    }
    if let Some(s) = scalar(name) {
        return Ok(Some(s.to_string()));
    }
    match resolve(defs, scope, name) {
        Some((_, Definition::Enum)) => Ok(Some("STRING".into())),
        Some((full, Definition::Message(members))) => {
            if let Some(t) = well_known(&full, params) {
                return t.map(Some);
            }
            if stack.stack.contains(&full) {
                return Err(format!("recursive message {full} cannot be a column type"));
            }
            if stack.stack.len() >= MAX_DEPTH {
                return Err(format!(
                    "message {full} nests more than {MAX_DEPTH} messages deep"
                ));
            }
            stack.stack.push(full.clone());
            let fields = struct_fields(defs, &full, members, naming, stack)?;
            stack.stack.pop();
            Ok(Some(format!("STRUCT<{}>", fields.join(", "))))
        }
        // Well-known types are usually imported, not given as references.
        None => match well_known(name, params) {
            Some(t) => t.map(Some),
            None => Err(format!("unknown protobuf type {name}")),
        },
    }
}

fn field_type(
    defs: &Definitions,
    scope: &str,
    f: &Field,
    naming: &Naming,
    stack: &mut Expansion,
) -> Result<Option<String>, String> {
    let t = match &f.ty {
        FieldType::Named(n) => named_type(defs, scope, n, &f.params, naming, stack)?,
        FieldType::Map(k, v) => {
            let none = HashMap::new();
            match (
                named_type(defs, scope, k, &none, naming, stack)?,
                named_type(defs, scope, v, &none, naming, stack)?,
            ) {
                (Some(k), Some(v)) => Some(format!("MAP<{k}, {v}>")),
                _ => None,
            }
        }
    };
    // A repeated map is not a thing in protobuf; `repeated` only applies to named types.
    Ok(
        match (t, f.repeated && matches!(f.ty, FieldType::Named(_))) {
            (Some(t), true) => Some(format!("ARRAY<{t}>")),
            (t, _) => t,
        },
    )
}

/// `` `NAME` TYPE `` declarations for a message's fields, skipping unrepresentable ones.
fn struct_fields(
    defs: &Definitions,
    scope: &str,
    members: &[Member],
    naming: &Naming,
    stack: &mut Expansion,
) -> Result<Vec<String>, String> {
    Ok(columns_of(defs, scope, members, naming, stack)?
        .into_iter()
        .map(|(n, t)| format!("`{n}` {t}"))
        .collect())
}

fn columns_of(
    defs: &Definitions,
    scope: &str,
    members: &[Member],
    naming: &Naming,
    stack: &mut Expansion,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for m in members {
        match m {
            Member::Field(f) => {
                if let Some(t) = field_type(defs, scope, f, naming, stack)? {
                    out.push((naming.name(&f.name), t));
                }
            }
            Member::OneOf(name, fields) => {
                let mut inner = Vec::new();
                for f in fields {
                    if let Some(t) = field_type(defs, scope, f, naming, stack)? {
                        inner.push(format!("`{}` {t}", naming.name(&f.name)));
                    }
                }
                if !inner.is_empty() {
                    out.push((
                        naming.name(&format!("{name}_0")),
                        format!("STRUCT<{}>", inner.join(", ")),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The columns of a message of a registered protobuf schema: `text` is the schema, with the
/// files it imports in `references` (import name, text); `full_name` picks the message
/// (else the file's first). Names are upper-cased when `upper`.
pub fn columns(
    text: &str,
    references: &[(String, String)],
    full_name: Option<&str>,
    upper: bool,
) -> Result<Vec<(String, String)>, String> {
    let mut defs = Definitions::default();
    for (name, r) in references {
        parse_file(r, &mut defs).map_err(|e| format!("reference {name}: {e}"))?;
    }
    defs.top_level = parse_file(text, &mut defs)?;
    let full = match full_name {
        Some(n) => n.trim_start_matches('.').to_string(),
        None => defs
            .top_level
            .first()
            .cloned()
            .ok_or("the protobuf schema defines no message")?,
    };
    let Some(Definition::Message(members)) = defs.types.get(&full) else {
        return Err(format!("the protobuf schema has no message named {full}"));
    };
    let naming = Naming { upper };
    let mut expansion = Expansion {
        stack: vec![full.clone()],
        expanded: 0,
    };
    columns_of(&defs, &full, members, &naming, &mut expansion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(text: &str, name: Option<&str>, upper: bool) -> Vec<(String, String)> {
        columns(text, &[], name, upper).expect("infers")
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn scalars_map_as_ksqldb_infers_them() {
        let got = cols(
            "syntax = \"proto3\"; message M {float c1 = 1; uint32 c2 = 2; uint64 c3 = 3; \
             sint32 c4 = 4; sint64 c5 = 5; bool c6 = 6; string c7 = 7; bytes c8 = 8; \
             int32 c9 = 9; double c10 = 10;}",
            None,
            true,
        );
        assert_eq!(
            got,
            pairs(&[
                ("C1", "DOUBLE"),
                ("C2", "BIGINT"),
                ("C3", "BIGINT"),
                ("C4", "INT"),
                ("C5", "BIGINT"),
                ("C6", "BOOLEAN"),
                ("C7", "STRING"),
                ("C8", "BYTES"),
                ("C9", "INT"),
                ("C10", "DOUBLE"),
            ])
        );
    }

    #[test]
    fn wrappers_enums_nested_and_decimals() {
        let got = cols(
            r#"syntax = "proto3";
               import 'google/protobuf/wrappers.proto';
               import "confluent/type/decimal.proto";
               // a comment
               message V {
                 enum Suit { SPADES = 0; HEARTS = 1; }
                 message Inner { int32 f1 = 1; repeated string tags = 2; }
                 google.protobuf.Int64Value w = 1;
                 Suit s = 2;
                 Inner n = 3;
                 map<string, Inner> m = 4;
                 repeated int64 a = 5 [packed = true];
                 confluent.type.Decimal d = 6 [(confluent.field_meta) = { params: [{ value: "4", key: "precision" }, { value: "2", key: "scale" }]}];
                 google.protobuf.Timestamp ts = 7;
               }"#,
            None,
            false,
        );
        assert_eq!(
            got,
            pairs(&[
                ("w", "BIGINT"),
                ("s", "STRING"),
                ("n", "STRUCT<`f1` INT, `tags` ARRAY<STRING>>"),
                ("m", "MAP<STRING, STRUCT<`f1` INT, `tags` ARRAY<STRING>>>"),
                ("a", "ARRAY<BIGINT>"),
                ("d", "DECIMAL(4, 2)"),
                ("ts", "TIMESTAMP"),
            ])
        );
    }

    #[test]
    fn full_names_pick_the_message() {
        let text = "syntax = \"proto3\"; package p.q; message A {int32 a = 1;} \
                    message B {string b = 1; message C {bool c = 1;}}";
        assert_eq!(cols(text, None, true), pairs(&[("A", "INT")]));
        assert_eq!(cols(text, Some("p.q.B"), true), pairs(&[("B", "STRING")]));
        assert_eq!(
            cols(text, Some("p.q.B.C"), true),
            pairs(&[("C", "BOOLEAN")])
        );
        assert!(columns(text, &[], Some("B"), true).is_err());
    }

    #[test]
    fn references_resolve_imports() {
        let main = "syntax = \"proto3\";\nimport \"event.proto\";\nmessage Logistics {\n Event event = 1;\n}";
        let event = "syntax = \"proto3\";\nmessage Event {\n int64 timestamp = 1;\n}";
        let refs = vec![("event.proto".to_string(), event.to_string())];
        assert_eq!(
            columns(main, &refs, None, true).unwrap(),
            pairs(&[("EVENT", "STRUCT<`TIMESTAMP` BIGINT>")])
        );
        // Without the reference the type is unknown.
        assert!(columns(main, &[], None, true).is_err());
    }

    #[test]
    fn recursive_messages_are_refused() {
        let r = columns("message N { N next = 1; }", &[], None, true);
        assert!(r.is_err(), "{r:?}");
    }

    /// Schemas built to exhaust the stack or the memory of inference are refused with an
    /// error saying why (each overflowed the stack or ran for hours before).
    #[test]
    fn schemas_too_deep_or_too_large_are_refused() {
        let nested = format!(
            "syntax = \"proto3\"; {} int32 x = 1; {}",
            (0..100_000)
                .map(|i| format!("message M{i} {{"))
                .collect::<String>(),
            "}".repeat(100_000)
        );
        let chain: String = (0..10_000)
            .map(|i| format!("message M{i} {{ M{} f = 1; }}\n", i + 1))
            .chain(std::iter::once(
                "message M10000 { int32 x = 1; }".to_string(),
            ))
            .collect();
        // Each message uses the next twice: 2^30 fields if expanded.
        let doubling: String = (0..30)
            .map(|i| format!("message D{i} {{ D{0} a = 1; D{0} b = 2; }}\n", i + 1))
            .chain(std::iter::once("message D30 { int32 x = 1; }".to_string()))
            .collect();
        let cases = [
            (nested, "message M0.M1.M2"),
            (chain, "nests more than 64 messages deep"),
            (doubling, "expand to more than 100000 types"),
        ];
        for (text, want) in cases {
            let r = columns(&text, &[], None, true);
            assert!(r.as_ref().is_err_and(|e| e.contains(want)), "{want}: {r:?}");
        }
        // 64 deep is fine.
        let ok: String = (0..63)
            .map(|i| format!("message M{i} {{ M{} f = 1; }}\n", i + 1))
            .chain(std::iter::once("message M63 { int32 x = 1; }".to_string()))
            .collect();
        assert!(columns(&ok, &[], None, true).is_ok());
    }
}

//! ksqlDB statements on sqlparser's tokenizer and expression parser.

use sqlparser::ast::{Expr, Ident, Value};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use crate::ast::*;
use crate::dialect::KsqlDialect;
use crate::error::ParseError;
use crate::limits;
use crate::types::{parse_type_tokens, Type, TYPE_TOO_DEEP};

/// A parsed statement with the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedStatement {
    pub statement: Statement,
    /// The statement's source text, without the closing `;`.
    pub text: String,
    pub line: u64,
    pub column: u64,
}

type PResult<T> = Result<T, ParserError>;

/// Tokenizes with ksqlDB's lexical rules: unquoted identifiers and keywords are upper-cased;
/// `>>`/`<<` are split, since ksqlDB has no shift operators but nests `ARRAY<MAP<…>>`.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, ParseError> {
    let dialect = KsqlDialect;
    let raw = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| ParseError::new(e.location.line, e.location.column, e.message))?;
    let mut out = Vec::with_capacity(raw.len());
    for t in raw {
        match t.token {
            Token::Word(mut w) if w.quote_style.is_none() => {
                w.value = w.value.to_uppercase();
                out.push(TokenWithSpan::new(Token::Word(w), t.span));
            }
            Token::ShiftRight | Token::ShiftLeft => {
                let tok = if t.token == Token::ShiftRight {
                    Token::Gt
                } else {
                    Token::Lt
                };
                let s = t.span.start;
                let mid = Location::new(s.line, s.column + 1);
                out.push(TokenWithSpan::new(tok.clone(), Span::new(s, mid)));
                out.push(TokenWithSpan::new(tok, Span::new(mid, t.span.end)));
            }
            _ => out.push(t),
        }
    }
    Ok(out)
}

/// Parses one or more `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>, ParseError> {
    let tokens = tokenize(sql)?;
    let scan = limits::scan(&tokens)?;
    with_stack(scan.depth, || parse_tokens(sql, tokens))
}

/// Parses tokens that passed [`limits::scan`].
fn parse_tokens(sql: &str, tokens: Vec<TokenWithSpan>) -> Result<Vec<ParsedStatement>, ParseError> {
    let dialect = KsqlDialect;
    let mut p = Parser::new(&dialect)
        .with_recursion_limit(limits::MAX_PARSER_RECURSION)
        .with_tokens_with_locations(tokens.clone());
    let lines = LineIndex::new(sql);
    let mut out = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let first = p.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let statement = parse_statement(&mut p).map_err(|e| convert(e, &p, sql, &tokens))?;
        let end = last_consumed_end(&tokens, p.get_current_index());
        let next = p.peek_token();
        if next.token != Token::SemiColon && next.token != Token::EOF {
            let err = p.expected::<()>("';' or the end of the statement", next);
            return Err(convert(err.unwrap_err(), &p, sql, &tokens));
        }
        let text = lines.slice(sql, first.span.start, end).to_string();
        out.push(ParsedStatement {
            statement,
            text,
            line: first.span.start.line,
            column: first.span.start.column,
        });
    }
    Ok(out)
}

/// Stack one level of nesting may take while parsing, in a debug build: sqlparser's
/// data-type parser is its deepest (about 26 KiB a level), and it does not grow the stack
/// itself as its expression parser does.
const STACK_PER_LEVEL: usize = 32 * 1024;

/// Runs `f` where the stack has room for `depth` levels of parsing: on the caller's stack
/// when it has, else on a stack of its own (a tokio worker has 2 MiB).
fn with_stack<T>(depth: usize, f: impl FnOnce() -> T) -> T {
    let need = (depth + 16) * STACK_PER_LEVEL;
    stacker::maybe_grow(need, need, f)
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_one(sql: &str) -> Result<Statement, ParseError> {
    let mut all = parse(sql)?;
    match all.len() {
        1 => Ok(all.remove(0).statement),
        0 => Err(ParseError::new(1, 1, "Expected: a statement, found: EOF")),
        _ => {
            let second = &all[1];
            Err(ParseError::new(
                second.line,
                second.column,
                "Expected: one statement, found: a second statement",
            ))
        }
    }
}

/// Parses a standalone expression, e.g. a `WHERE` clause typed by a user.
pub fn parse_expr(sql: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(sql)?;
    let scan = limits::scan(&tokens)?;
    with_stack(scan.depth, || parse_expr_tokens(sql, tokens))
}

fn parse_expr_tokens(sql: &str, tokens: Vec<TokenWithSpan>) -> Result<Expr, ParseError> {
    let dialect = KsqlDialect;
    let mut p = Parser::new(&dialect)
        .with_recursion_limit(limits::MAX_PARSER_RECURSION)
        .with_tokens_with_locations(tokens.clone());
    let e = p.parse_expr().map_err(|e| convert(e, &p, sql, &tokens))?;
    let next = p.peek_token();
    if next.token != Token::EOF {
        let err = p.expected::<()>("the end of the expression", next);
        return Err(convert(err.unwrap_err(), &p, sql, &tokens));
    }
    Ok(e)
}

/// Parses a ksqlDB type such as `STRUCT<A INT, B ARRAY<STRING>>`.
pub fn parse_type(sql: &str) -> Result<Type, ParseError> {
    let tokens = tokenize(sql)?;
    limits::scan(&tokens)?;
    let dialect = KsqlDialect;
    let mut p = Parser::new(&dialect)
        .with_recursion_limit(limits::MAX_PARSER_RECURSION)
        .with_tokens_with_locations(tokens.clone());
    let t = parse_type_tokens(&mut p).map_err(|e| convert(e, &p, sql, &tokens))?;
    let next = p.peek_token();
    if next.token != Token::EOF {
        let err = p.expected::<()>("the end of the type", next);
        return Err(convert(err.unwrap_err(), &p, sql, &tokens));
    }
    Ok(t)
}

fn last_consumed_end(tokens: &[TokenWithSpan], index: usize) -> Location {
    tokens[..(index + 1).min(tokens.len())]
        .iter()
        .rev()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.span.end)
        .unwrap_or(Location::new(1, 1))
}

/// Byte offsets of line/column positions. Statements are sliced in order: the last offset
/// found is where the next search starts, so a script of many statements on one line is
/// not walked from the line's start for each (quadratic).
struct LineIndex {
    starts: Vec<usize>,
    /// The last position found: its line, column and byte offset.
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl LineIndex {
    fn new(s: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(s.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            last: std::cell::Cell::new((0, 0, 0)),
        }
    }

    fn offset(&self, s: &str, loc: Location) -> usize {
        let line = (loc.line.max(1) - 1) as usize;
        let Some(&start) = self.starts.get(line) else {
            return s.len();
        };
        // Columns count characters, not bytes.
        let col = (loc.column.max(1) - 1) as usize;
        let (from_col, from) = match self.last.get() {
            (l, c, b) if l == line && c <= col => (c, b),
            _ => (0, start),
        };
        let found = s[from..]
            .char_indices()
            .nth(col - from_col)
            .map(|(i, _)| from + i)
            .unwrap_or(s.len());
        self.last.set((line, col, found));
        found
    }

    fn slice<'a>(&self, s: &'a str, from: Location, to: Location) -> &'a str {
        let a = self.offset(s, from);
        let b = self.offset(s, to).max(a);
        &s[a..b]
    }
}

/// sqlparser reports positions inside its message text; lift them into the error's fields.
fn convert(e: ParserError, p: &Parser, sql: &str, tokens: &[TokenWithSpan]) -> ParseError {
    let error = convert_at(e, p, sql, tokens);
    if error.message.starts_with(TYPE_TOO_DEEP) {
        let ParseError {
            line,
            column,
            message,
            ..
        } = error;
        return ParseError::nested_too_deeply(line, column, message, limits::MAX_TYPE_DEPTH);
    }
    error
}

fn convert_at(e: ParserError, p: &Parser, sql: &str, tokens: &[TokenWithSpan]) -> ParseError {
    let msg = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => {
            // Where the parser stopped: the token one level too deep.
            let tok = p.peek_token();
            let loc = if tok.token == Token::EOF || tok.span.start.line == 0 {
                end_location(sql)
            } else {
                tok.span.start
            };
            return ParseError::nested_too_deeply(
                loc.line,
                loc.column,
                format!(
                    "The statement is nested too deeply: more than {} levels of parentheses, \
                     function calls or sub-expressions",
                    limits::MAX_PARSER_RECURSION
                ),
                limits::MAX_PARSER_RECURSION,
            );
        }
    };
    let (text, reported) = match msg.rfind(" at Line: ") {
        Some(idx) => {
            let tail = &msg[idx + " at Line: ".len()..];
            let mut parts = tail.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let col = parts.next().and_then(|c| c.trim().parse().ok());
            match (line, col) {
                (Some(line), Some(col)) => (msg[..idx].to_string(), Some(Location::new(line, col))),
                _ => (msg.clone(), None),
            }
        }
        None => (msg.clone(), None),
    };
    // sqlparser sometimes reports the position of a later token, or none at all: prefer the
    // token the message names, searching back from where the parser stopped.
    if let Some((_, found)) = text.rsplit_once("found: ") {
        let at_reported = reported.is_some_and(|loc| {
            tokens
                .iter()
                .any(|t| t.span.start == loc && t.token.to_string() == found)
        });
        if !at_reported {
            let idx = p.get_current_index().min(tokens.len().saturating_sub(1));
            let lo = idx.saturating_sub(32);
            let hit = tokens[lo..(idx + 1).min(tokens.len())]
                .iter()
                .rev()
                .find(|t| t.token.to_string() == found && t.span.start.line > 0);
            if let Some(t) = hit {
                return ParseError::new(t.span.start.line, t.span.start.column, tidy(&text));
            }
        }
    }
    if let Some(loc) = reported {
        return ParseError::new(loc.line, loc.column, tidy(&text));
    }
    let tok = p.peek_token();
    let loc = if tok.token == Token::EOF || tok.span.start.line == 0 {
        end_location(sql)
    } else {
        tok.span.start
    };
    ParseError::new(loc.line, loc.column, tidy(&text))
}

/// `Expected: ,, found: >` reads badly: quote punctuation tokens.
fn tidy(msg: &str) -> String {
    let quote = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| !c.is_alphanumeric() && c != ' ') {
            format!("'{s}'")
        } else {
            s.to_string()
        }
    };
    if let Some(rest) = msg.strip_prefix("Expected: ") {
        if let Some((expected, found)) = rest.rsplit_once(", found: ") {
            return format!("Expected: {}, found: {}", quote(expected), quote(found));
        }
    }
    msg.to_string()
}

fn end_location(sql: &str) -> Location {
    let line = sql.lines().count().max(1) as u64;
    let last = sql.lines().last().unwrap_or("");
    Location::new(line, last.chars().count() as u64 + 1)
}

// ---- keyword helpers: ksqlDB has keywords sqlparser does not know, so compare words.

fn peek_word(p: &Parser, n: usize) -> Option<String> {
    match &p.peek_nth_token_ref(n).token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.clone()),
        _ => None,
    }
}

fn peek_kw(p: &Parser, kw: &str) -> bool {
    peek_word(p, 0).as_deref() == Some(kw)
}

fn kw(p: &mut Parser, kw: &str) -> bool {
    if peek_kw(p, kw) {
        p.next_token();
        true
    } else {
        false
    }
}

fn kws(p: &mut Parser, words: &[&str]) -> bool {
    if words
        .iter()
        .enumerate()
        .all(|(i, w)| peek_word(p, i).as_deref() == Some(*w))
    {
        for _ in words {
            p.next_token();
        }
        true
    } else {
        false
    }
}

fn expect_kw(p: &mut Parser, word: &str) -> PResult<()> {
    if kw(p, word) {
        Ok(())
    } else {
        p.expected(word, p.peek_token())
    }
}

fn expect_one_of<'a>(p: &mut Parser, words: &[&'a str]) -> PResult<&'a str> {
    for w in words {
        if kw(p, w) {
            return Ok(w);
        }
    }
    p.expected(&words.join(" or "), p.peek_token())
}

fn string_lit(p: &mut Parser) -> PResult<String> {
    let tok = p.next_token();
    match tok.token {
        Token::SingleQuotedString(s) => Ok(s),
        _ => p.expected("a quoted string", tok),
    }
}

fn uint(p: &mut Parser) -> PResult<u64> {
    p.parse_literal_uint()
}

/// A query's LIMIT: a non-negative integer. ksqlDB's grammar takes any number there and
/// refuses the others with these messages (a pull query names its negative LIMIT).
fn limit(p: &mut Parser, pull: bool) -> PResult<u64> {
    let here = p.peek_token();
    let at = format!(
        " at Line: {}, Column: {}",
        here.span.start.line, here.span.start.column
    );
    match (&here.token, &p.peek_nth_token(1).token) {
        (Token::Minus, Token::Number(..)) if pull => Err(ParserError::ParserError(format!(
            "Pull queries don't support negative integers in the LIMIT clause. See https://cnfl.io/queries for more info.{at}"
        ))),
        (Token::Number(n, _), _) if n.parse::<u64>().is_err() => {
            Err(ParserError::ParserError(format!(
                "Failed to prepare statement: Value must be integer for command: LIMIT{at}"
            )))
        }
        _ => uint(p),
    }
}

// ---- statements

pub(crate) fn parse_statement(p: &mut Parser) -> PResult<Statement> {
    let Some(first) = peek_word(p, 0) else {
        return p.expected("a statement", p.peek_token());
    };
    match first.as_str() {
        "SELECT" => Ok(Statement::Query(Box::new(parse_query(p)?))),
        "CREATE" => parse_create(p),
        "INSERT" => parse_insert(p),
        "DROP" => parse_drop(p),
        "TERMINATE" => {
            p.next_token();
            Ok(Statement::Terminate(query_target(p)?))
        }
        "PAUSE" => {
            p.next_token();
            Ok(Statement::Pause(query_target(p)?))
        }
        "RESUME" => {
            p.next_token();
            Ok(Statement::Resume(query_target(p)?))
        }
        "SHOW" | "LIST" => {
            p.next_token();
            parse_list(p)
        }
        "DESCRIBE" => {
            p.next_token();
            parse_describe(p)
        }
        "EXPLAIN" => {
            p.next_token();
            match peek_word(p, 0).as_deref() {
                Some("SELECT" | "CREATE" | "INSERT") => {
                    Ok(Statement::Explain(Box::new(parse_statement(p)?)))
                }
                _ => Ok(Statement::ExplainQuery(p.parse_identifier()?)),
            }
        }
        "PRINT" => {
            p.next_token();
            parse_print(p)
        }
        "SET" => {
            p.next_token();
            let name = string_lit(p)?;
            p.expect_token(&Token::Eq)?;
            let value = string_lit(p)?;
            Ok(Statement::Set { name, value })
        }
        "UNSET" => {
            p.next_token();
            Ok(Statement::Unset {
                name: string_lit(p)?,
            })
        }
        "ALTER" => {
            p.next_token();
            parse_alter(p)
        }
        "DEFINE" => {
            p.next_token();
            let name = p.parse_identifier()?;
            p.expect_token(&Token::Eq)?;
            let value = string_lit(p)?;
            Ok(Statement::Define { name, value })
        }
        "UNDEFINE" => {
            p.next_token();
            Ok(Statement::Undefine(p.parse_identifier()?))
        }
        "ASSERT" => {
            p.next_token();
            parse_assert(p)
        }
        "RUN" => {
            p.next_token();
            expect_kw(p, "SCRIPT")?;
            Ok(Statement::RunScript(string_lit(p)?))
        }
        _ => p.expected(
            "a statement (SELECT, CREATE, INSERT, DROP, SHOW, DESCRIBE, ...)",
            p.peek_token(),
        ),
    }
}

fn query_target(p: &mut Parser) -> PResult<QueryTarget> {
    if kw(p, "ALL") {
        Ok(QueryTarget::All)
    } else {
        Ok(QueryTarget::Query(p.parse_identifier()?))
    }
}

fn source_kind(p: &mut Parser) -> PResult<SourceKind> {
    match expect_one_of(p, &["STREAM", "TABLE"])? {
        "STREAM" => Ok(SourceKind::Stream),
        _ => Ok(SourceKind::Table),
    }
}

fn parse_create(p: &mut Parser) -> PResult<Statement> {
    expect_kw(p, "CREATE")?;
    if kw(p, "TYPE") {
        let if_not_exists = kws(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_identifier()?;
        expect_kw(p, "AS")?;
        let ty = parse_type_tokens(p)?;
        return Ok(Statement::CreateType {
            if_not_exists,
            name,
            ty,
        });
    }
    if peek_kw(p, "SINK")
        || (peek_kw(p, "SOURCE") && peek_word(p, 1).as_deref() == Some("CONNECTOR"))
    {
        let source = expect_one_of(p, &["SOURCE", "SINK"])? == "SOURCE";
        expect_kw(p, "CONNECTOR")?;
        let if_not_exists = kws(p, &["IF", "NOT", "EXISTS"]);
        let name = p.parse_identifier()?;
        let properties = parse_with(p)?.unwrap_or_default();
        return Ok(Statement::CreateConnector {
            source,
            if_not_exists,
            name,
            properties,
        });
    }
    let or_replace = kws(p, &["OR", "REPLACE"]);
    let source = kw(p, "SOURCE");
    let kind = source_kind(p)?;
    let if_not_exists = kws(p, &["IF", "NOT", "EXISTS"]);
    let name = p.parse_identifier()?;
    let elements = if p.peek_token().token == Token::LParen {
        parse_elements(p)?
    } else {
        Vec::new()
    };
    let properties = parse_with(p)?.unwrap_or_default();
    if peek_kw(p, "AS") {
        if !elements.is_empty() {
            return p.expected("no column list in CREATE ... AS SELECT", p.peek_token());
        }
        if source {
            return p.expected("no SOURCE in CREATE ... AS SELECT", p.peek_token());
        }
        p.next_token();
        let query = parse_query(p)?;
        return Ok(Statement::CreateAsSelect {
            or_replace,
            kind,
            if_not_exists,
            name,
            properties,
            query: Box::new(query),
        });
    }
    Ok(Statement::CreateSource {
        or_replace,
        source,
        kind,
        if_not_exists,
        name,
        elements,
        properties,
    })
}

fn parse_elements(p: &mut Parser) -> PResult<Vec<TableElement>> {
    p.expect_token(&Token::LParen)?;
    let els = p.parse_comma_separated(|p| {
        let name = p.parse_identifier()?;
        let ty = parse_type_tokens(p)?;
        let constraint = if kws(p, &["PRIMARY", "KEY"]) {
            Some(ColumnConstraint::PrimaryKey)
        } else if kw(p, "KEY") {
            Some(ColumnConstraint::Key)
        } else if kw(p, "HEADERS") {
            Some(ColumnConstraint::Headers)
        } else if kw(p, "HEADER") {
            p.expect_token(&Token::LParen)?;
            let k = string_lit(p)?;
            p.expect_token(&Token::RParen)?;
            Some(ColumnConstraint::Header(k))
        } else {
            None
        };
        Ok(TableElement {
            name,
            ty,
            constraint,
        })
    })?;
    p.expect_token(&Token::RParen)?;
    Ok(els)
}

fn parse_with(p: &mut Parser) -> PResult<Option<Properties>> {
    if !kw(p, "WITH") {
        return Ok(None);
    }
    p.expect_token(&Token::LParen)?;
    let props = p.parse_comma_separated(|p| {
        let tok = p.next_token();
        let name = match tok.token {
            Token::Word(w) => w.value.to_uppercase(),
            Token::SingleQuotedString(s) => s.to_uppercase(),
            _ => return p.expected("a property name", tok),
        };
        p.expect_token(&Token::Eq)?;
        Ok((name, parse_literal(p)?))
    })?;
    p.expect_token(&Token::RParen)?;
    Ok(Some(Properties(props)))
}

fn parse_literal(p: &mut Parser) -> PResult<Literal> {
    let tok = p.next_token();
    match tok.token {
        Token::SingleQuotedString(s) => Ok(Literal::String(s)),
        Token::Number(n, _) => Ok(Literal::Number(n)),
        Token::Minus => {
            let t = p.next_token();
            match t.token {
                Token::Number(n, _) => Ok(Literal::Number(format!("-{n}"))),
                _ => p.expected("a number", t),
            }
        }
        Token::Word(w) if w.quote_style.is_none() && w.value == "TRUE" => {
            Ok(Literal::Boolean(true))
        }
        Token::Word(w) if w.quote_style.is_none() && w.value == "FALSE" => {
            Ok(Literal::Boolean(false))
        }
        Token::Word(w) if w.quote_style.is_none() && w.value == "NULL" => Ok(Literal::Null),
        _ => p.expected("a literal (a quoted string, a number or a boolean)", tok),
    }
}

fn parse_insert(p: &mut Parser) -> PResult<Statement> {
    expect_kw(p, "INSERT")?;
    expect_kw(p, "INTO")?;
    let target = p.parse_identifier()?;
    if p.peek_token().token == Token::LParen || peek_kw(p, "VALUES") {
        let (columns, values) = parse_columns_values(p)?;
        return Ok(Statement::InsertValues {
            target,
            columns,
            values,
        });
    }
    let properties = parse_with(p)?.unwrap_or_default();
    let query = parse_query(p)?;
    Ok(Statement::InsertInto {
        target,
        properties,
        query: Box::new(query),
    })
}

fn parse_columns_values(p: &mut Parser) -> PResult<(Vec<Ident>, Vec<Expr>)> {
    let columns = if p.consume_token(&Token::LParen) {
        let c = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        c
    } else {
        Vec::new()
    };
    expect_kw(p, "VALUES")?;
    p.expect_token(&Token::LParen)?;
    let values = if p.peek_token().token == Token::RParen {
        Vec::new()
    } else {
        p.parse_comma_separated(|p| p.parse_expr())?
    };
    p.expect_token(&Token::RParen)?;
    Ok((columns, values))
}

fn parse_drop(p: &mut Parser) -> PResult<Statement> {
    expect_kw(p, "DROP")?;
    if kw(p, "TYPE") {
        let if_exists = kws(p, &["IF", "EXISTS"]);
        return Ok(Statement::DropType {
            if_exists,
            name: p.parse_identifier()?,
        });
    }
    if kw(p, "CONNECTOR") {
        let if_exists = kws(p, &["IF", "EXISTS"]);
        return Ok(Statement::DropConnector {
            if_exists,
            name: p.parse_identifier()?,
        });
    }
    let kind = source_kind(p)?;
    let if_exists = kws(p, &["IF", "EXISTS"]);
    let name = p.parse_identifier()?;
    let delete_topic = kws(p, &["DELETE", "TOPIC"]);
    Ok(Statement::Drop {
        kind,
        if_exists,
        name,
        delete_topic,
    })
}

fn parse_list(p: &mut Parser) -> PResult<Statement> {
    let kind = if kw(p, "PROPERTIES") {
        ListKind::Properties
    } else if kws(p, &["ALL", "TOPICS"]) {
        ListKind::Topics { all: true }
    } else if kw(p, "TOPICS") {
        ListKind::Topics { all: false }
    } else if kw(p, "STREAMS") {
        ListKind::Streams
    } else if kw(p, "TABLES") {
        ListKind::Tables
    } else if kw(p, "QUERIES") {
        ListKind::Queries
    } else if kw(p, "FUNCTIONS") {
        ListKind::Functions
    } else if kw(p, "TYPES") {
        ListKind::Types
    } else if kw(p, "VARIABLES") {
        ListKind::Variables
    } else if kw(p, "CONNECTORS") {
        ListKind::Connectors
    } else if kws(p, &["SOURCE", "CONNECTORS"]) {
        ListKind::SourceConnectors
    } else if kws(p, &["SINK", "CONNECTORS"]) {
        ListKind::SinkConnectors
    } else if kws(p, &["CONNECTOR", "PLUGINS"]) {
        ListKind::ConnectorPlugins
    } else {
        return p.expected(
            "STREAMS, TABLES, QUERIES, TOPICS, FUNCTIONS, PROPERTIES, TYPES, VARIABLES or CONNECTORS",
            p.peek_token(),
        );
    };
    let extended = matches!(
        kind,
        ListKind::Streams | ListKind::Tables | ListKind::Queries | ListKind::Topics { .. }
    ) && kw(p, "EXTENDED");
    Ok(Statement::List { kind, extended })
}

fn parse_describe(p: &mut Parser) -> PResult<Statement> {
    let at_end = |p: &Parser, n: usize| {
        matches!(p.peek_nth_token_ref(n).token, Token::EOF | Token::SemiColon)
            || peek_word(p, n).as_deref() == Some("EXTENDED")
    };
    if peek_kw(p, "FUNCTION") && !at_end(p, 1) {
        p.next_token();
        return Ok(Statement::DescribeFunction(p.parse_identifier()?));
    }
    if peek_kw(p, "CONNECTOR") && !at_end(p, 1) {
        p.next_token();
        return Ok(Statement::DescribeConnector(p.parse_identifier()?));
    }
    for (word, kind) in [
        ("STREAMS", SourceKind::Stream),
        ("TABLES", SourceKind::Table),
    ] {
        if peek_kw(p, word) {
            p.next_token();
            return Ok(Statement::DescribeAll {
                kind,
                extended: kw(p, "EXTENDED"),
            });
        }
    }
    let name = p.parse_identifier()?;
    Ok(Statement::Describe {
        name,
        extended: kw(p, "EXTENDED"),
    })
}

fn resource_name(p: &mut Parser) -> PResult<ResourceName> {
    if let Token::SingleQuotedString(_) = p.peek_token().token {
        Ok(ResourceName::String(string_lit(p)?))
    } else {
        Ok(ResourceName::Ident(p.parse_identifier()?))
    }
}

fn parse_print(p: &mut Parser) -> PResult<Statement> {
    let topic = resource_name(p)?;
    let from_beginning = kws(p, &["FROM", "BEGINNING"]);
    let interval = if kw(p, "INTERVAL") || kw(p, "SAMPLE") {
        Some(uint(p)?)
    } else {
        None
    };
    let limit = if kw(p, "LIMIT") { Some(uint(p)?) } else { None };
    Ok(Statement::Print {
        topic,
        from_beginning,
        interval,
        limit,
    })
}

fn parse_alter(p: &mut Parser) -> PResult<Statement> {
    if kw(p, "SYSTEM") {
        let name = string_lit(p)?;
        p.expect_token(&Token::Eq)?;
        let value = string_lit(p)?;
        return Ok(Statement::AlterSystem { name, value });
    }
    let kind = source_kind(p)?;
    let name = p.parse_identifier()?;
    let add_columns = p.parse_comma_separated(|p| {
        expect_kw(p, "ADD")?;
        kw(p, "COLUMN");
        let c = p.parse_identifier()?;
        let t = parse_type_tokens(p)?;
        Ok((c, t))
    })?;
    Ok(Statement::AlterSource {
        kind,
        name,
        add_columns,
    })
}

fn parse_timeout(p: &mut Parser) -> PResult<Option<Duration>> {
    if kw(p, "TIMEOUT") {
        Ok(Some(parse_duration(p)?))
    } else {
        Ok(None)
    }
}

fn parse_assert(p: &mut Parser) -> PResult<Statement> {
    let not_exists = kws(p, &["NOT", "EXISTS"]);
    if kw(p, "TOPIC") {
        let name = resource_name(p)?;
        let properties = parse_with(p)?.unwrap_or_default();
        let timeout = parse_timeout(p)?;
        return Ok(Statement::AssertTopic {
            not_exists,
            name,
            properties,
            timeout,
        });
    }
    if kw(p, "SCHEMA") {
        let subject = if kw(p, "SUBJECT") {
            Some(resource_name(p)?)
        } else {
            None
        };
        let id = if kw(p, "ID") { Some(uint(p)?) } else { None };
        let timeout = parse_timeout(p)?;
        if subject.is_none() && id.is_none() {
            return p.expected("SUBJECT or ID", p.peek_token());
        }
        return Ok(Statement::AssertSchema {
            not_exists,
            subject,
            id,
            timeout,
        });
    }
    if not_exists {
        return p.expected("TOPIC or SCHEMA", p.peek_token());
    }
    let null = kw(p, "NULL");
    if kw(p, "VALUES") {
        let target = p.parse_identifier()?;
        let (columns, values) = parse_columns_values(p)?;
        return Ok(Statement::AssertValues {
            null,
            target,
            columns,
            values,
        });
    }
    if null {
        return p.expected("VALUES", p.peek_token());
    }
    let kind = match expect_one_of(p, &["STREAM", "TABLE", "TOPIC", "SCHEMA", "VALUES"])? {
        "STREAM" => SourceKind::Stream,
        _ => SourceKind::Table,
    };
    let name = p.parse_identifier()?;
    let elements = if p.peek_token().token == Token::LParen {
        parse_elements(p)?
    } else {
        Vec::new()
    };
    let properties = parse_with(p)?.unwrap_or_default();
    Ok(Statement::AssertSource {
        kind,
        name,
        elements,
        properties,
    })
}

// ---- SELECT

/// Words that end a source reference, so they are never taken as its alias.
const CLAUSE_WORDS: &[&str] = &[
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "WINDOW",
    "WHERE",
    "GROUP",
    "PARTITION",
    "HAVING",
    "EMIT",
    "LIMIT",
    "ON",
    "WITHIN",
];

fn parse_aliased_source(p: &mut Parser) -> PResult<AliasedSource> {
    let name = p.parse_identifier()?;
    let alias = if kw(p, "AS") {
        Some(p.parse_identifier()?)
    } else {
        match &p.peek_token_ref().token {
            Token::Word(w)
                if w.quote_style.is_some() || !CLAUSE_WORDS.contains(&w.value.as_str()) =>
            {
                Some(p.parse_identifier()?)
            }
            _ => None,
        }
    };
    Ok(AliasedSource { name, alias })
}

fn parse_duration(p: &mut Parser) -> PResult<Duration> {
    let value = uint(p)?;
    let tok = p.next_token();
    let unit = match &tok.token {
        Token::Word(w) if w.quote_style.is_none() => TimeUnit::from_word(&w.value),
        _ => None,
    };
    match unit {
        Some(unit) => Ok(Duration { value, unit }),
        None => p.expected(
            "a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS)",
            tok,
        ),
    }
}

fn parse_window(p: &mut Parser) -> PResult<WindowExpr> {
    // ksqlDB allows (and ignores) a name before the window type.
    if !matches!(
        peek_word(p, 0).as_deref(),
        Some("TUMBLING" | "HOPPING" | "SESSION")
    ) && matches!(
        peek_word(p, 1).as_deref(),
        Some("TUMBLING" | "HOPPING" | "SESSION")
    ) {
        p.next_token();
    }
    let kind_word = expect_one_of(p, &["TUMBLING", "HOPPING", "SESSION"])?;
    p.expect_token(&Token::LParen)?;
    let kind = match kind_word {
        "TUMBLING" => {
            expect_kw(p, "SIZE")?;
            WindowKind::Tumbling {
                size: parse_duration(p)?,
            }
        }
        "HOPPING" => {
            expect_kw(p, "SIZE")?;
            let size = parse_duration(p)?;
            p.expect_token(&Token::Comma)?;
            expect_kw(p, "ADVANCE")?;
            expect_kw(p, "BY")?;
            WindowKind::Hopping {
                size,
                advance: parse_duration(p)?,
            }
        }
        _ => WindowKind::Session {
            gap: parse_duration(p)?,
        },
    };
    let mut retention = None;
    let mut grace = None;
    while p.consume_token(&Token::Comma) {
        if retention.is_none() && kw(p, "RETENTION") {
            retention = Some(parse_duration(p)?);
        } else if grace.is_none() && kws(p, &["GRACE", "PERIOD"]) {
            grace = Some(parse_duration(p)?);
        } else {
            return p.expected("RETENTION or GRACE PERIOD", p.peek_token());
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(WindowExpr {
        kind,
        retention,
        grace,
    })
}

fn parse_within(p: &mut Parser) -> PResult<Within> {
    let (before, after) = if p.consume_token(&Token::LParen) {
        let b = parse_duration(p)?;
        p.expect_token(&Token::Comma)?;
        let a = parse_duration(p)?;
        p.expect_token(&Token::RParen)?;
        (b, Some(a))
    } else {
        (parse_duration(p)?, None)
    };
    let grace = if kws(p, &["GRACE", "PERIOD"]) {
        Some(parse_duration(p)?)
    } else {
        None
    };
    Ok(Within {
        before,
        after,
        grace,
    })
}

fn expr_list(p: &mut Parser) -> PResult<Vec<Expr>> {
    let mut list = p.parse_comma_separated(|p| p.parse_expr())?;
    // `GROUP BY (a, b)` is the list a, b.
    if let [Expr::Tuple(items)] = list.as_mut_slice() {
        return Ok(std::mem::take(items));
    }
    Ok(list)
}

pub(crate) fn parse_query(p: &mut Parser) -> PResult<Query> {
    expect_kw(p, "SELECT")?;
    let projection = p.parse_projection()?;
    expect_kw(p, "FROM")?;
    let from = parse_aliased_source(p)?;
    let mut joins = Vec::new();
    loop {
        let kind = if kw(p, "JOIN") || kws(p, &["INNER", "JOIN"]) {
            JoinKind::Inner
        } else if kw(p, "LEFT") {
            kw(p, "OUTER");
            expect_kw(p, "JOIN")?;
            JoinKind::Left
        } else if kw(p, "RIGHT") {
            kw(p, "OUTER");
            expect_kw(p, "JOIN")?;
            JoinKind::Right
        } else if kw(p, "FULL") {
            kw(p, "OUTER");
            expect_kw(p, "JOIN")?;
            JoinKind::Full
        } else if kw(p, "OUTER") {
            expect_kw(p, "JOIN")?;
            JoinKind::Full
        } else {
            break;
        };
        let source = parse_aliased_source(p)?;
        let within = if kw(p, "WITHIN") {
            Some(parse_within(p)?)
        } else {
            None
        };
        expect_kw(p, "ON")?;
        let on = p.parse_expr()?;
        joins.push(Join {
            kind,
            source,
            within,
            on,
        });
    }
    let window = if kw(p, "WINDOW") {
        Some(parse_window(p)?)
    } else {
        None
    };
    let selection = if kw(p, "WHERE") {
        Some(p.parse_expr()?)
    } else {
        None
    };
    let group_by = if kws(p, &["GROUP", "BY"]) {
        expr_list(p)?
    } else {
        Vec::new()
    };
    let partition_by = if kws(p, &["PARTITION", "BY"]) {
        if p.peek_token().token == Token::LParen && p.peek_nth_token(1).token == Token::RParen {
            // `PARTITION BY ()`: an empty list, which the planner rejects with ksqlDB's
            // message.
            p.next_token();
            p.next_token();
            vec![Expr::Tuple(Vec::new())]
        } else {
            expr_list(p)?
        }
    } else {
        Vec::new()
    };
    let having = if kw(p, "HAVING") {
        Some(p.parse_expr()?)
    } else {
        None
    };
    let emit = if kw(p, "EMIT") {
        match expect_one_of(p, &["CHANGES", "FINAL"])? {
            "CHANGES" => Some(Emit::Changes),
            _ => Some(Emit::Final),
        }
    } else {
        None
    };
    let limit = if kw(p, "LIMIT") {
        Some(limit(p, emit.is_none())?)
    } else {
        None
    };
    Ok(Query {
        projection,
        from,
        joins,
        window,
        selection,
        group_by,
        partition_by,
        having,
        emit,
        limit,
    })
}

/// Is this expression a literal value (used by INSERT VALUES checks)?
pub fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if !matches!(v.value, Value::Placeholder(_)))
}

//! Brook's syntax tree for ksqlDB statements. Expressions and select items are sqlparser's;
//! everything around them is ksqlDB's own grammar.

use std::fmt;

use sqlparser::ast::{Expr, Ident, SelectItem};

use crate::types::Type;

/// Displays an identifier so that it reads back as the same identifier.
pub fn display_ident(id: &Ident) -> String {
    match id.quote_style {
        None => id.value.clone(),
        Some(_) => format!("`{}`", id.value.replace('`', "``")),
    }
}

struct Id<'a>(&'a Ident);
impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_ident(self.0))
    }
}

fn comma<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Stream,
    Table,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        })
    }
}

/// A literal in a `WITH (…)` property list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    String(String),
    Number(String),
    Boolean(bool),
    Null,
}

impl Literal {
    /// The value as text, as ksqlDB reads a property whatever its literal kind.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Literal::String(s) | Literal::Number(s) => Some(s.clone()),
            Literal::Boolean(b) => Some(b.to_string()),
            Literal::Null => None,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => f.write_str(&quote_str(s)),
            Literal::Number(n) => f.write_str(n),
            Literal::Boolean(b) => f.write_str(if *b { "true" } else { "false" }),
            Literal::Null => f.write_str("NULL"),
        }
    }
}

/// `WITH (NAME = literal, …)`; names are upper-cased, as ksqlDB reads them case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Properties(pub Vec<(String, Literal)>);

impl Properties {
    pub fn get(&self, name: &str) -> Option<&Literal> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WITH (")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_str(")")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnConstraint {
    Key,
    PrimaryKey,
    Headers,
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableElement {
    pub name: Ident,
    pub ty: Type,
    pub constraint: Option<ColumnConstraint>,
}

impl fmt::Display for TableElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", Id(&self.name), self.ty)?;
        match &self.constraint {
            None => Ok(()),
            Some(ColumnConstraint::Key) => f.write_str(" KEY"),
            Some(ColumnConstraint::PrimaryKey) => f.write_str(" PRIMARY KEY"),
            Some(ColumnConstraint::Headers) => f.write_str(" HEADERS"),
            Some(ColumnConstraint::Header(k)) => write!(f, " HEADER({})", quote_str(k)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
}

impl TimeUnit {
    pub fn millis(self) -> u64 {
        match self {
            TimeUnit::Millisecond => 1,
            TimeUnit::Second => 1_000,
            TimeUnit::Minute => 60_000,
            TimeUnit::Hour => 3_600_000,
            TimeUnit::Day => 86_400_000,
        }
    }

    pub fn from_word(w: &str) -> Option<TimeUnit> {
        Some(match w.to_ascii_uppercase().as_str() {
            "MILLISECOND" | "MILLISECONDS" => TimeUnit::Millisecond,
            "SECOND" | "SECONDS" => TimeUnit::Second,
            "MINUTE" | "MINUTES" => TimeUnit::Minute,
            "HOUR" | "HOURS" => TimeUnit::Hour,
            "DAY" | "DAYS" => TimeUnit::Day,
            _ => return None,
        })
    }
}

/// `n UNIT`, as in `SIZE 30 SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Duration {
    pub value: u64,
    pub unit: TimeUnit,
}

impl Duration {
    pub fn millis(&self) -> u64 {
        self.value.saturating_mul(self.unit.millis())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            TimeUnit::Millisecond => "MILLISECONDS",
            TimeUnit::Second => "SECONDS",
            TimeUnit::Minute => "MINUTES",
            TimeUnit::Hour => "HOURS",
            TimeUnit::Day => "DAYS",
        };
        write!(f, "{} {unit}", self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Tumbling { size: Duration },
    Hopping { size: Duration, advance: Duration },
    Session { gap: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowExpr {
    pub kind: WindowKind,
    pub retention: Option<Duration>,
    pub grace: Option<Duration>,
}

impl fmt::Display for WindowExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WindowKind::Tumbling { size } => write!(f, "TUMBLING (SIZE {size}")?,
            WindowKind::Hopping { size, advance } => {
                write!(f, "HOPPING (SIZE {size}, ADVANCE BY {advance}")?
            }
            WindowKind::Session { gap } => write!(f, "SESSION ({gap}")?,
        }
        if let Some(r) = &self.retention {
            write!(f, ", RETENTION {r}")?;
        }
        if let Some(g) = &self.grace {
            write!(f, ", GRACE PERIOD {g}")?;
        }
        f.write_str(")")
    }
}

/// `WITHIN n UNIT` or `WITHIN (before, after)`, with an optional grace period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Within {
    pub before: Duration,
    /// `None` for the single-size form, where after equals before.
    pub after: Option<Duration>,
    pub grace: Option<Duration>,
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.after {
            None => write!(f, "WITHIN {}", self.before)?,
            Some(a) => write!(f, "WITHIN ({}, {a})", self.before)?,
        }
        if let Some(g) = &self.grace {
            write!(f, " GRACE PERIOD {g}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AliasedSource {
    pub name: Ident,
    pub alias: Option<Ident>,
}

impl fmt::Display for AliasedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Id(&self.name))?;
        if let Some(a) = &self.alias {
            write!(f, " {}", Id(a))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Join {
    pub kind: JoinKind,
    pub source: AliasedSource,
    pub within: Option<Within>,
    pub on: Expr,
}

impl fmt::Display for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            JoinKind::Inner => "INNER JOIN ",
            JoinKind::Left => "LEFT OUTER JOIN ",
            JoinKind::Right => "RIGHT OUTER JOIN ",
            JoinKind::Full => "FULL OUTER JOIN ",
        })?;
        write!(f, "{}", self.source)?;
        if let Some(w) = &self.within {
            write!(f, " {w}")?;
        }
        write!(f, " ON {}", self.on)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Emit {
    Changes,
    Final,
}

/// A ksqlDB SELECT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub projection: Vec<SelectItem>,
    pub from: AliasedSource,
    pub joins: Vec<Join>,
    pub window: Option<WindowExpr>,
    pub selection: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub emit: Option<Emit>,
    pub limit: Option<u64>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        comma(f, &self.projection)?;
        write!(f, " FROM {}", self.from)?;
        for j in &self.joins {
            write!(f, " {j}")?;
        }
        if let Some(w) = &self.window {
            write!(f, " WINDOW {w}")?;
        }
        if let Some(s) = &self.selection {
            write!(f, " WHERE {s}")?;
        }
        if !self.group_by.is_empty() {
            f.write_str(" GROUP BY ")?;
            comma(f, &self.group_by)?;
        }
        if !self.partition_by.is_empty() {
            f.write_str(" PARTITION BY ")?;
            comma(f, &self.partition_by)?;
        }
        if let Some(h) = &self.having {
            write!(f, " HAVING {h}")?;
        }
        match self.emit {
            Some(Emit::Changes) => f.write_str(" EMIT CHANGES")?,
            Some(Emit::Final) => f.write_str(" EMIT FINAL")?,
            None => {}
        }
        if let Some(l) = self.limit {
            write!(f, " LIMIT {l}")?;
        }
        Ok(())
    }
}

/// What `SHOW`/`LIST` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Streams,
    Tables,
    Queries,
    Topics { all: bool },
    Functions,
    Properties,
    Types,
    Variables,
    Connectors,
    SourceConnectors,
    SinkConnectors,
    ConnectorPlugins,
}

/// The target of TERMINATE / PAUSE / RESUME.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueryTarget {
    All,
    Query(Ident),
}

impl fmt::Display for QueryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryTarget::All => f.write_str("ALL"),
            QueryTarget::Query(id) => write!(f, "{}", Id(id)),
        }
    }
}

/// A topic named in PRINT: an identifier or a quoted string (which keeps its case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceName {
    Ident(Ident),
    String(String),
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceName::Ident(i) => write!(f, "{}", Id(i)),
            ResourceName::String(s) => f.write_str(&quote_str(s)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Statement {
    Query(Box<Query>),
    CreateSource {
        or_replace: bool,
        source: bool,
        kind: SourceKind,
        if_not_exists: bool,
        name: Ident,
        elements: Vec<TableElement>,
        properties: Properties,
    },
    CreateAsSelect {
        or_replace: bool,
        kind: SourceKind,
        if_not_exists: bool,
        name: Ident,
        properties: Properties,
        query: Box<Query>,
    },
    InsertInto {
        target: Ident,
        properties: Properties,
        query: Box<Query>,
    },
    InsertValues {
        target: Ident,
        columns: Vec<Ident>,
        values: Vec<Expr>,
    },
    Drop {
        kind: SourceKind,
        if_exists: bool,
        name: Ident,
        delete_topic: bool,
    },
    CreateType {
        if_not_exists: bool,
        name: Ident,
        ty: Type,
    },
    DropType {
        if_exists: bool,
        name: Ident,
    },
    AlterSource {
        kind: SourceKind,
        name: Ident,
        add_columns: Vec<(Ident, Type)>,
    },
    Terminate(QueryTarget),
    Pause(QueryTarget),
    Resume(QueryTarget),
    List {
        kind: ListKind,
        extended: bool,
    },
    Describe {
        name: Ident,
        extended: bool,
    },
    /// `DESCRIBE STREAMS` / `DESCRIBE TABLES`.
    DescribeAll {
        kind: SourceKind,
        extended: bool,
    },
    DescribeFunction(Ident),
    DescribeConnector(Ident),
    Explain(Box<Statement>),
    ExplainQuery(Ident),
    Print {
        topic: ResourceName,
        from_beginning: bool,
        interval: Option<u64>,
        limit: Option<u64>,
    },
    Set {
        name: String,
        value: String,
    },
    Unset {
        name: String,
    },
    AlterSystem {
        name: String,
        value: String,
    },
    Define {
        name: Ident,
        value: String,
    },
    Undefine(Ident),
    AssertTopic {
        not_exists: bool,
        name: ResourceName,
        properties: Properties,
        timeout: Option<Duration>,
    },
    AssertSchema {
        not_exists: bool,
        subject: Option<ResourceName>,
        id: Option<u64>,
        timeout: Option<Duration>,
    },
    /// The test runner's `ASSERT [NULL] VALUES source (cols) VALUES (…)`.
    AssertValues {
        null: bool,
        target: Ident,
        columns: Vec<Ident>,
        values: Vec<Expr>,
    },
    /// The test runner's `ASSERT STREAM|TABLE name (elements) WITH (…)`.
    AssertSource {
        kind: SourceKind,
        name: Ident,
        elements: Vec<TableElement>,
        properties: Properties,
    },
    CreateConnector {
        source: bool,
        if_not_exists: bool,
        name: Ident,
        properties: Properties,
    },
    DropConnector {
        if_exists: bool,
        name: Ident,
    },
    RunScript(String),
}

fn opt(f: &mut fmt::Formatter<'_>, cond: bool, text: &str) -> fmt::Result {
    if cond {
        f.write_str(text)?;
    }
    Ok(())
}

fn elements(f: &mut fmt::Formatter<'_>, els: &[TableElement]) -> fmt::Result {
    if !els.is_empty() {
        f.write_str(" (")?;
        comma(f, els)?;
        f.write_str(")")?;
    }
    Ok(())
}

fn props(f: &mut fmt::Formatter<'_>, p: &Properties) -> fmt::Result {
    if !p.is_empty() {
        write!(f, " {p}")?;
    }
    Ok(())
}

fn columns_values(f: &mut fmt::Formatter<'_>, columns: &[Ident], values: &[Expr]) -> fmt::Result {
    if !columns.is_empty() {
        f.write_str(" (")?;
        let ids: Vec<Id> = columns.iter().map(Id).collect();
        comma(f, &ids)?;
        f.write_str(")")?;
    }
    f.write_str(" VALUES (")?;
    comma(f, values)?;
    f.write_str(")")
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Query(q) => write!(f, "{q}"),
            Statement::CreateSource {
                or_replace,
                source,
                kind,
                if_not_exists,
                name,
                elements: els,
                properties,
            } => {
                f.write_str("CREATE ")?;
                opt(f, *or_replace, "OR REPLACE ")?;
                opt(f, *source, "SOURCE ")?;
                write!(f, "{kind} ")?;
                opt(f, *if_not_exists, "IF NOT EXISTS ")?;
                write!(f, "{}", Id(name))?;
                elements(f, els)?;
                props(f, properties)
            }
            Statement::CreateAsSelect {
                or_replace,
                kind,
                if_not_exists,
                name,
                properties,
                query,
            } => {
                f.write_str("CREATE ")?;
                opt(f, *or_replace, "OR REPLACE ")?;
                write!(f, "{kind} ")?;
                opt(f, *if_not_exists, "IF NOT EXISTS ")?;
                write!(f, "{}", Id(name))?;
                props(f, properties)?;
                write!(f, " AS {query}")
            }
            Statement::InsertInto {
                target,
                properties,
                query,
            } => {
                write!(f, "INSERT INTO {}", Id(target))?;
                props(f, properties)?;
                write!(f, " {query}")
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => {
                write!(f, "INSERT INTO {}", Id(target))?;
                columns_values(f, columns, values)
            }
            Statement::Drop {
                kind,
                if_exists,
                name,
                delete_topic,
            } => {
                write!(f, "DROP {kind} ")?;
                opt(f, *if_exists, "IF EXISTS ")?;
                write!(f, "{}", Id(name))?;
                opt(f, *delete_topic, " DELETE TOPIC")
            }
            Statement::CreateType {
                if_not_exists,
                name,
                ty,
            } => {
                f.write_str("CREATE TYPE ")?;
                opt(f, *if_not_exists, "IF NOT EXISTS ")?;
                write!(f, "{} AS {ty}", Id(name))
            }
            Statement::DropType { if_exists, name } => {
                f.write_str("DROP TYPE ")?;
                opt(f, *if_exists, "IF EXISTS ")?;
                write!(f, "{}", Id(name))
            }
            Statement::AlterSource {
                kind,
                name,
                add_columns,
            } => {
                write!(f, "ALTER {kind} {}", Id(name))?;
                for (i, (c, t)) in add_columns.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "ADD COLUMN {} {t}", Id(c))?;
                }
                Ok(())
            }
            Statement::Terminate(t) => write!(f, "TERMINATE {t}"),
            Statement::Pause(t) => write!(f, "PAUSE {t}"),
            Statement::Resume(t) => write!(f, "RESUME {t}"),
            Statement::List { kind, extended } => {
                f.write_str("SHOW ")?;
                f.write_str(match kind {
                    ListKind::Streams => "STREAMS",
                    ListKind::Tables => "TABLES",
                    ListKind::Queries => "QUERIES",
                    ListKind::Topics { all: false } => "TOPICS",
                    ListKind::Topics { all: true } => "ALL TOPICS",
                    ListKind::Functions => "FUNCTIONS",
                    ListKind::Properties => "PROPERTIES",
                    ListKind::Types => "TYPES",
                    ListKind::Variables => "VARIABLES",
                    ListKind::Connectors => "CONNECTORS",
                    ListKind::SourceConnectors => "SOURCE CONNECTORS",
                    ListKind::SinkConnectors => "SINK CONNECTORS",
                    ListKind::ConnectorPlugins => "CONNECTOR PLUGINS",
                })?;
                opt(f, *extended, " EXTENDED")
            }
            Statement::Describe { name, extended } => {
                write!(f, "DESCRIBE {}", Id(name))?;
                opt(f, *extended, " EXTENDED")
            }
            Statement::DescribeAll { kind, extended } => {
                write!(f, "DESCRIBE {kind}S")?;
                opt(f, *extended, " EXTENDED")
            }
            Statement::DescribeFunction(n) => write!(f, "DESCRIBE FUNCTION {}", Id(n)),
            Statement::DescribeConnector(n) => write!(f, "DESCRIBE CONNECTOR {}", Id(n)),
            Statement::Explain(s) => write!(f, "EXPLAIN {s}"),
            Statement::ExplainQuery(q) => write!(f, "EXPLAIN {}", Id(q)),
            Statement::Print {
                topic,
                from_beginning,
                interval,
                limit,
            } => {
                write!(f, "PRINT {topic}")?;
                opt(f, *from_beginning, " FROM BEGINNING")?;
                if let Some(i) = interval {
                    write!(f, " INTERVAL {i}")?;
                }
                if let Some(l) = limit {
                    write!(f, " LIMIT {l}")?;
                }
                Ok(())
            }
            Statement::Set { name, value } => {
                write!(f, "SET {}={}", quote_str(name), quote_str(value))
            }
            Statement::Unset { name } => write!(f, "UNSET {}", quote_str(name)),
            Statement::AlterSystem { name, value } => {
                write!(f, "ALTER SYSTEM {}={}", quote_str(name), quote_str(value))
            }
            Statement::Define { name, value } => {
                write!(f, "DEFINE {} = {}", Id(name), quote_str(value))
            }
            Statement::Undefine(n) => write!(f, "UNDEFINE {}", Id(n)),
            Statement::AssertTopic {
                not_exists,
                name,
                properties,
                timeout,
            } => {
                f.write_str("ASSERT ")?;
                opt(f, *not_exists, "NOT EXISTS ")?;
                write!(f, "TOPIC {name}")?;
                props(f, properties)?;
                if let Some(t) = timeout {
                    write!(f, " TIMEOUT {t}")?;
                }
                Ok(())
            }
            Statement::AssertSchema {
                not_exists,
                subject,
                id,
                timeout,
            } => {
                f.write_str("ASSERT ")?;
                opt(f, *not_exists, "NOT EXISTS ")?;
                f.write_str("SCHEMA")?;
                if let Some(s) = subject {
                    write!(f, " SUBJECT {s}")?;
                }
                if let Some(i) = id {
                    write!(f, " ID {i}")?;
                }
                if let Some(t) = timeout {
                    write!(f, " TIMEOUT {t}")?;
                }
                Ok(())
            }
            Statement::AssertValues {
                null,
                target,
                columns,
                values,
            } => {
                f.write_str("ASSERT ")?;
                opt(f, *null, "NULL ")?;
                write!(f, "VALUES {}", Id(target))?;
                columns_values(f, columns, values)
            }
            Statement::AssertSource {
                kind,
                name,
                elements: els,
                properties,
            } => {
                write!(f, "ASSERT {kind} {}", Id(name))?;
                elements(f, els)?;
                props(f, properties)
            }
            Statement::CreateConnector {
                source,
                if_not_exists,
                name,
                properties,
            } => {
                f.write_str(if *source {
                    "CREATE SOURCE CONNECTOR "
                } else {
                    "CREATE SINK CONNECTOR "
                })?;
                opt(f, *if_not_exists, "IF NOT EXISTS ")?;
                write!(f, "{}", Id(name))?;
                props(f, properties)
            }
            Statement::DropConnector { if_exists, name } => {
                f.write_str("DROP CONNECTOR ")?;
                opt(f, *if_exists, "IF EXISTS ")?;
                write!(f, "{}", Id(name))
            }
            Statement::RunScript(path) => write!(f, "RUN SCRIPT {}", quote_str(path)),
        }
    }
}

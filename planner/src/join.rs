//! Planning of joins: two or more sources joined left to right (`A JOIN B ON … JOIN C ON …`),
//! each step a stream–stream (windowed, `WITHIN`), stream–table, or table–table (primary- or
//! foreign-key) join.
//!
//! Operators see a joined row: ROWTIME, ROWPARTITION, ROWOFFSET of the row, then for every
//! input in FROM order its whole row (pseudo columns included) as `<A>_<COL>`, where `<A>` is
//! the source's alias (or name); a synthetic key (`ROWKEY`) comes last when the join has one.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brook_sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, SelectItem};
use brook_sql::{JoinKind, Query, SourceKind, Type};
use datafusion::logical_expr::Expr as DfExpr;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::{Catalog, Source};
use crate::expr::{physical, Scope, ScopeColumn};
use crate::query::{scope_for, Projection};
use crate::schema::{
    Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART,
};
use crate::types::arrow_type;
use crate::PlanError;

/// One source of a join, and where its row sits in the joined row.
#[derive(Debug, Clone)]
pub struct JoinInput {
    pub source: Source,
    pub alias: String,
    /// Index of the input's first field in the joined row.
    pub offset: usize,
    /// The input's own row schema (as decoded from its topic).
    pub schema: SchemaRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Rows of both sides match when their timestamps are at most `before` (right earlier)
    /// or `after` (right later) apart. With a grace period, unmatched outer rows wait for
    /// their window to close; without one, they are emitted at once (ksqlDB's legacy,
    /// "eager" outer join).
    StreamStream {
        before: i64,
        after: i64,
        grace: Option<i64>,
    },
    /// Left stream rows look up the right table's current row.
    StreamTable,
    /// Both sides are tables joined on the right table's primary key.
    TableTable,
    /// A left-table column joined to the right table's primary key (1:N).
    ForeignKey,
}

/// One binary join: the rows joined so far (inputs `0..k`) with input `k`.
#[derive(Debug, Clone)]
pub struct JoinStep {
    pub kind: StepKind,
    pub join: JoinKind,
    /// The left side's join expression, over the joined row.
    pub left_key: Arc<dyn PhysicalExpr>,
    /// The right side's join expression, over input `k`'s own row.
    pub right_key: Arc<dyn PhysicalExpr>,
    /// Windowed inputs: rows match only within the same window. The left's
    /// WINDOWSTART/WINDOWEND fields in the joined row, and whether ends must match too
    /// (session windows; time windows are identified by their start).
    pub window: Option<(usize, usize, bool)>,
}

#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub inputs: Vec<JoinInput>,
    pub steps: Vec<JoinStep>,
    /// The result is a table (every input is a table).
    pub tables: bool,
    /// For a foreign-key join: the left table's key columns' indexes in its own row; the
    /// result is keyed by them.
    pub left_key_columns: Vec<usize>,
    /// Index of the synthetic key's field in the joined row, if the join has one.
    pub synthetic_key: Option<usize>,
    /// `PARTITION BY`: the key columns are the partitioning expressions' values rather
    /// than the join's key.
    pub partitioned: bool,
    /// The joined rows themselves are the output (they feed an aggregation).
    pub rows_only: bool,
    pub joined_schema: SchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Key projections first (their values are the join's key), then value projections.
    pub projections: Vec<Projection>,
    pub output: LogicalSchema,
}

impl JoinPlan {
    /// The first input (the FROM source).
    pub fn first(&self) -> &Source {
        &self.inputs[0].source
    }

    /// The result's windowing: a join of windowed streams is windowed like its first input.
    pub fn window(&self) -> Option<crate::catalog::WindowType> {
        self.inputs[0].source.window
    }
}

const PSEUDO: &[&str] = &[ROWTIME, ROWPARTITION, ROWOFFSET];

fn ident(name: &str) -> SqlExpr {
    SqlExpr::Identifier(brook_sql::sqlparser::ast::Ident::with_quote('`', name))
}

fn strip(e: &SqlExpr) -> &SqlExpr {
    match e {
        SqlExpr::Nested(x) => strip(x),
        other => other,
    }
}

fn join_words(k: JoinKind) -> &'static str {
    match k {
        JoinKind::Inner => "[INNER] JOIN",
        JoinKind::Left => "LEFT [OUTER] JOIN",
        JoinKind::Right => "RIGHT [OUTER] JOIN",
        JoinKind::Full => "[FULL] OUTER JOIN",
    }
}

fn window_word(s: &Source) -> &'static str {
    match &s.window {
        Some(crate::catalog::WindowType::Tumbling { .. }) => "TUMBLING",
        Some(crate::catalog::WindowType::Hopping { .. }) => "HOPPING",
        Some(crate::catalog::WindowType::Session) => "SESSION",
        None => "",
    }
}

fn contains_map(t: &Type) -> bool {
    match t {
        Type::Map(..) => true,
        Type::Array(x) => contains_map(x),
        Type::Struct(fields) => fields.iter().any(|f| contains_map(&f.ty)),
        _ => false,
    }
}

/// Whether two compiled expressions are the same expression (functions compare by name).
fn same(a: &DfExpr, b: &DfExpr) -> bool {
    a == b || a.to_string() == b.to_string()
}

/// The field names a compiled expression reads.
fn fields_of(e: &DfExpr) -> Vec<String> {
    e.column_refs().iter().map(|c| c.name.clone()).collect()
}

struct Planner<'a> {
    catalog: &'a Catalog,
    inputs: Vec<JoinInput>,
    /// The joined scope: each input's columns, qualified by its name and alias.
    scope: Scope<'a>,
    /// Joined-row field → input index.
    owner: HashMap<String, usize>,
}

impl<'a> Planner<'a> {
    /// ksqlDB's text of an ON side in messages: columns qualified by their source.
    fn text(&self, e: &SqlExpr) -> String {
        match strip(e) {
            SqlExpr::Identifier(i) => match self.scope.compile(e) {
                Ok(t) => match fields_of(&t.expr).first().and_then(|f| self.owner.get(f)) {
                    Some(&k) => format!("{}.{}", self.inputs[k].alias, i.value),
                    None => i.value.clone(),
                },
                Err(_) => i.value.clone(),
            },
            SqlExpr::CompoundIdentifier(p) => p
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join("."),
            SqlExpr::BinaryOp { left, op, right } if brook_sql::as_dereference(e).is_none() => {
                format!("({} {op} {})", self.text(left), self.text(right))
            }
            other => self.qualified(other).to_string(),
        }
    }

    /// An expression with its bare column names qualified by their source.
    fn qualified(&self, e: &SqlExpr) -> SqlExpr {
        use brook_sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments, Ident};
        match e {
            SqlExpr::Identifier(i) => match self.scope.compile(e) {
                Ok(t) => match fields_of(&t.expr).first().and_then(|f| self.owner.get(f)) {
                    Some(&k) => SqlExpr::CompoundIdentifier(vec![
                        Ident::new(self.inputs[k].alias.clone()),
                        i.clone(),
                    ]),
                    None => e.clone(),
                },
                Err(_) => e.clone(),
            },
            SqlExpr::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => SqlExpr::Cast {
                kind: kind.clone(),
                expr: Box::new(self.qualified(expr)),
                data_type: data_type.clone(),
                array: *array,
                format: format.clone(),
            },
            SqlExpr::Nested(x) => SqlExpr::Nested(Box::new(self.qualified(x))),
            SqlExpr::UnaryOp { op, expr } => SqlExpr::UnaryOp {
                op: *op,
                expr: Box::new(self.qualified(expr)),
            },
            SqlExpr::BinaryOp { left, op, right } => SqlExpr::BinaryOp {
                left: Box::new(self.qualified(left)),
                op: op.clone(),
                right: Box::new(self.qualified(right)),
            },
            SqlExpr::Function(f) => {
                let mut f = f.clone();
                if let FunctionArguments::List(list) = &mut f.args {
                    for a in &mut list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                            *x = self.qualified(x);
                        }
                    }
                }
                SqlExpr::Function(f)
            }
            other => other.clone(),
        }
    }

    /// Compiles an ON side: its expression over the joined row, its type, and the inputs
    /// it reads.
    fn on_side(&self, e: &SqlExpr) -> Result<(DfExpr, Type, Vec<usize>), PlanError> {
        let t = self.scope.compile(e).map_err(|err| match err {
            PlanError::Invalid(m) if m.starts_with("Column '") => {
                PlanError::Invalid(format!("JOIN ON column '{}", &m["Column '".len()..]))
            }
            other => other,
        })?;
        let mut inputs: Vec<usize> = fields_of(&t.expr)
            .iter()
            .filter_map(|f| self.owner.get(f).copied())
            .collect();
        inputs.sort_unstable();
        inputs.dedup();
        Ok((t.expr, t.ty.unwrap_or(Type::String), inputs))
    }

    /// The single column an expression is, if it is a plain column reference.
    fn column_field(&self, e: &DfExpr) -> Option<String> {
        match e {
            DfExpr::Column(c) => Some(c.name.clone()),
            _ => None,
        }
    }
}

/// The two sides of a join's ON equality, checked: which is the new input's (right) and
/// which the inputs' joined so far (left).
struct Sides {
    a: SqlExpr,
    b: SqlExpr,
    at: Type,
    bt: Type,
    left_e: DfExpr,
    left_t: Type,
    left_sql: SqlExpr,
    right_sql: SqlExpr,
    right_t: Type,
}

impl Planner<'_> {
    fn sides(&self, k: usize, join: &brook_sql::Join) -> Result<Sides, PlanError> {
        let p = self;
        let right = &p.inputs[k].source;
        let on = strip(&join.on);
        let SqlExpr::BinaryOp {
            left: a,
            op: BinaryOperator::Eq,
            right: b,
        } = on
        else {
            if let SqlExpr::BinaryOp {
                op: BinaryOperator::And,
                ..
            } = on
            {
                return Err(PlanError::Invalid(format!(
                    "Invalid join condition: joins on multiple conditions are not yet supported. Got {}.",
                    p.text(on)
                )));
            }
            return Err(PlanError::Invalid(format!(
                "Unsupported join expression: {}; only an equality of the two sides is supported.",
                join.on
            )));
        };
        let (ae, at, ai) = p.on_side(a)?;
        let (be, bt, bi) = p.on_side(b)?;
        let names = |ix: &[usize]| -> String {
            ix.iter()
                .map(|&x| p.inputs[x].source.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if ai.len() != 1 || bi.len() != 1 {
            let bad = if ai.len() != 1 { a } else { b };
            return Err(PlanError::Invalid(format!(
                "Invalid comparison expression '{}' in join '{}'. Each side of the join comparision must contain references from exactly one source.",
                p.text(bad),
                p.text(on)
            )));
        }
        if ai == bi {
            return Err(PlanError::Invalid(format!(
                "Each side of the join must reference exactly one source and not the same source. Left side references `{}` and right references `{}`",
                names(&ai),
                names(&bi)
            )));
        }
        let (left_e, left_t, left_sql, right_sql, right_t) = if bi[0] == k && ai[0] < k {
            (ae, at.clone(), a.as_ref(), b.as_ref(), bt.clone())
        } else if ai[0] == k && bi[0] < k {
            (be, bt.clone(), b.as_ref(), a.as_ref(), at.clone())
        } else {
            return Err(PlanError::Invalid(format!(
                "A join criteria is expected to reference the source (`{}`) in the FROM clause, instead the right source references `{}` and the left source references `{}`",
                right.name,
                names(&bi),
                names(&ai)
            )));
        };
        Ok(Sides {
            a: a.as_ref().clone(),
            b: b.as_ref().clone(),
            at,
            bt,
            left_e,
            left_t,
            left_sql: left_sql.clone(),
            right_sql: right_sql.clone(),
            right_t,
        })
    }
}

/// Plans `SELECT … FROM a JOIN b ON … [JOIN c ON …] [WHERE …]`.
pub fn plan_join(q: &Query, catalog: &Catalog, sink: &str) -> Result<JoinPlan, PlanError> {
    if q.window.is_some() || !q.group_by.is_empty() {
        return Err(PlanError::Unsupported(
            "joins with windows or GROUP BY are not supported yet".into(),
        ));
    }
    plan(q, catalog, sink, false).map(|(plan, _)| plan)
}

/// A join whose joined rows feed another operator (an aggregation): the plan, without
/// WHERE or projection, and the joined row's scope for the operator's expressions.
pub fn plan_join_rows<'a>(
    q: &Query,
    catalog: &'a Catalog,
) -> Result<(JoinPlan, Scope<'a>), PlanError> {
    let (plan, scope) = plan(q, catalog, "", true)?;
    if plan.tables && plan.synthetic_key.is_none() {
        return Err(PlanError::Unsupported(
            "aggregating a foreign-key join is not supported yet".into(),
        ));
    }
    Ok((plan, scope))
}

fn plan<'a>(
    q: &Query,
    catalog: &'a Catalog,
    sink: &str,
    rows_only: bool,
) -> Result<(JoinPlan, Scope<'a>), PlanError> {
    let partitioned = !q.partition_by.is_empty();
    // The inputs, in FROM order.
    let mut named: Vec<(Source, String)> = Vec::new();
    let from = catalog.source(&q.from.name.value)?.clone();
    let from_alias = q
        .from
        .alias
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or(from.name.clone());
    named.push((from, from_alias));
    for j in &q.joins {
        let s = catalog.source(&j.source.name.value)?.clone();
        let alias = j
            .source
            .alias
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or(s.name.clone());
        if let Some((first, _)) = named.iter().find(|(n, _)| n.name == s.name) {
            return Err(PlanError::Invalid(if q.joins.len() == 1 {
                format!(
                    "Can not join '{}' to '{}': self joins are not yet supported.",
                    first.name, s.name
                )
            } else {
                format!(
                    "N-way joins do not support multiple occurrences of the same source. Source: '{}'",
                    s.name
                )
            }));
        }
        named.push((s, alias));
    }
    let kafka: Vec<&str> = named
        .iter()
        .filter(|(s, _)| s.value_format.kind == crate::format::FormatKind::Kafka)
        .map(|(s, _)| s.name.as_str())
        .collect();
    if !kafka.is_empty() {
        return Err(PlanError::Invalid(format!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support JOIN.",
            kafka.join(", ")
        )));
    }
    let windowed: Vec<&Source> = named
        .iter()
        .filter(|(s, _)| s.window.is_some())
        .map(|(s, _)| s)
        .collect();
    if !windowed.is_empty() {
        if let Some((plain, _)) = named.iter().find(|(s, _)| s.window.is_none()) {
            return Err(PlanError::Invalid(format!(
                "Can not join windowed source to non-windowed source.\n`{}` is {} windowed\n`{}` is not windowed",
                windowed[0].name,
                window_word(windowed[0]),
                plain.name
            )));
        }
    }
    let windowed = !windowed.is_empty();
    // The joined row and its scope.
    let mut fields = vec![
        Field::new(ROWTIME, DataType::Int64, false),
        Field::new(ROWPARTITION, DataType::Int32, false),
        Field::new(ROWOFFSET, DataType::Int64, false),
    ];
    let mut scope = Scope {
        columns: Vec::new(),
        types: catalog,
    };
    let mut owner = HashMap::new();
    let mut inputs = Vec::new();
    for (k, (source, alias)) in named.into_iter().enumerate() {
        let schema = source.schema.row_schema(source.window.is_some(), catalog)?;
        let offset = fields.len();
        let own = scope_for(&source, Some(&alias), catalog);
        for c in own.columns {
            let field = format!("{alias}_{}", c.name);
            fields.push(Field::new(&field, arrow_type(&c.ty, catalog)?, true));
            owner.insert(field.clone(), k);
            scope.columns.push(ScopeColumn {
                name: c.name,
                qualifiers: c.qualifiers,
                ty: c.ty,
                field,
            });
        }
        inputs.push(JoinInput {
            source,
            alias,
            offset,
            schema,
        });
    }
    let mut p = Planner {
        catalog,
        inputs,
        scope,
        owner,
    };

    // Every join's sides are checked before any step is planned, as ksqlDB does.
    for (i, join) in q.joins.iter().enumerate() {
        p.sides(i + 1, join)?;
    }
    // The steps.
    let mut steps = Vec::new();
    let mut left_kind = p.inputs[0].source.kind;
    // The columns the result so far is keyed by (as ON text and joined field), or None
    // when its key is synthetic.
    let mut viable: Option<Vec<(String, String)>> = None;
    // The expressions the result so far is keyed by (equal by the join condition).
    let mut equiv: Vec<(String, DfExpr)> = Vec::new();
    let mut key_type = Type::String;
    let mut left_key_columns = Vec::new();
    let mut fk = false;
    for (i, join) in q.joins.iter().enumerate() {
        let k = i + 1;
        let right = p.inputs[k].source.clone();
        let right_alias = p.inputs[k].alias.clone();
        let left_name = if k == 1 {
            p.inputs[0].source.name.clone()
        } else {
            // An intermediate result has no name; ksqlDB names its sides' first source.
            p.inputs[0].source.name.clone()
        };
        let Sides {
            a,
            b,
            at,
            bt,
            left_e,
            left_t,
            left_sql,
            right_sql,
            right_t,
        } = p.sides(k, join)?;
        let (a, b, left_sql, right_sql) = (&a, &b, &left_sql, &right_sql);
        if contains_map(&left_t) {
            let name = match p.column_field(&left_e) {
                Some(f) => f,
                None => "ROWKEY".into(),
            };
            return Err(PlanError::Invalid(format!(
                "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{name}`. Column type: {}. See https://github.com/confluentinc/ksql/issues/6621 for more.",
                crate::schema::SchemaType(&left_t)
            )));
        }
        let right_kind = right.kind;
        let kind = match (left_kind, right_kind, &join.within) {
            (SourceKind::Table, SourceKind::Stream, _) => {
                return Err(PlanError::Invalid(format!(
                    "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {} {} {}.",
                    left_name,
                    join_words(join.kind),
                    right.name
                )))
            }
            (SourceKind::Stream, SourceKind::Stream, None) => {
                return Err(PlanError::Invalid(
                    "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how to specify a WITHIN clause with a stream-stream join, please visit: https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select".into(),
                ))
            }
            (SourceKind::Stream, SourceKind::Stream, Some(w)) => {
                let before = w.before.millis() as i64;
                StepKind::StreamStream {
                    before,
                    after: w.after.as_ref().map(|d| d.millis() as i64).unwrap_or(before),
                    grace: w.grace.as_ref().map(|d| d.millis() as i64),
                }
            }
            (SourceKind::Stream, SourceKind::Table, Some(_)) => {
                return Err(PlanError::Invalid(
                    "A window definition was provided for a Stream-Table join. These joins are not windowed. Please drop the window definition (ie. the WITHIN clause) and try to execute your join again.".into(),
                ))
            }
            (SourceKind::Table, SourceKind::Table, Some(_)) => {
                return Err(PlanError::Invalid(
                    "A window definition was provided for a Table-Table join. These joins are not windowed. Please drop the window definition (i.e. the WITHIN clause) and try to execute your join again.".into(),
                ))
            }
            (SourceKind::Stream, SourceKind::Table, None) => StepKind::StreamTable,
            (SourceKind::Table, SourceKind::Table, None) => StepKind::TableTable,
        };
        // The right side of a stream–table or table–table join is the table's primary key.
        let right_compiled = scope_for(&right, Some(&right_alias), p.catalog).compile(right_sql)?;
        if kind != (StepKind::StreamTable) && !matches!(kind, StepKind::TableTable) {
            // stream–stream: any expression.
        } else {
            let keys: Vec<&Column> = right.schema.key_columns().collect();
            let is_pk = keys.len() == 1
                && matches!(&right_compiled.expr, DfExpr::Column(c) if c.name == keys[0].name);
            if !is_pk {
                let (x, y) = (p.text(a), p.text(b));
                return Err(PlanError::Invalid(if kind == StepKind::TableTable {
                    format!(
                        "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {x} = {y}."
                    )
                } else {
                    format!(
                        "Invalid join condition: stream-table joins require to join on the table's primary key. Got {x} = {y}."
                    )
                }));
            }
        }
        if left_t != right_t {
            return Err(PlanError::Invalid(format!(
                "Invalid join condition: types don't match. Got {}{{{}}} = {}{{{}}}.",
                p.text(a),
                at,
                p.text(b),
                bt,
            )));
        }
        // Primary or foreign key, for table–table joins.
        let left_field = p.column_field(&left_e);
        let mut kind = kind;
        if kind == StepKind::TableTable {
            let is_left_key = match (&left_field, &viable) {
                (Some(f), _) if k == 1 => {
                    let keys: Vec<&Column> = p.inputs[0].source.schema.key_columns().collect();
                    keys.len() == 1 && *f == format!("{}_{}", p.inputs[0].alias, keys[0].name)
                }
                _ if k > 1 => equiv.iter().any(|(_, x)| same(x, &left_e)),
                _ => false,
            };
            if !is_left_key {
                if k > 1 {
                    return Err(PlanError::Invalid(format!(
                        "Invalid join condition: foreign-key table-table joins are not supported as part of n-way joins. Got {} = {}.",
                        p.text(left_sql),
                        p.text(right_sql)
                    )));
                }
                match join.kind {
                    JoinKind::Right => {
                        return Err(PlanError::Invalid(
                            "RIGHT OUTER JOIN on a foreign key is not supported".into(),
                        ))
                    }
                    JoinKind::Full => {
                        return Err(PlanError::Invalid(
                            "FULL OUTER JOIN on a foreign key is not supported".into(),
                        ))
                    }
                    _ => {}
                }
                kind = StepKind::ForeignKey;
            }
        }
        if kind == StepKind::StreamTable && matches!(join.kind, JoinKind::Right | JoinKind::Full) {
            let word = if join.kind == JoinKind::Full {
                "full-outer"
            } else {
                "right"
            };
            return Err(PlanError::Invalid(format!(
                "Invalid join type: {word} join not supported for stream-table join. Got {} {} {}.",
                left_name,
                join_words(join.kind),
                right.name
            )));
        }
        // What the result is keyed by.
        let right_joined = p.scope.compile(right_sql)?.expr;
        fk = false;
        if kind == StepKind::ForeignKey {
            fk = true;
            let first = &p.inputs[0];
            let mut v = Vec::new();
            for c in first.source.schema.key_columns() {
                let f = format!("{}_{}", first.alias, c.name);
                v.push((format!("{}.{}", first.alias, c.name), f));
                left_key_columns.push(
                    first
                        .schema
                        .index_of(&c.name)
                        .map_err(|e| PlanError::DataFusion(e.to_string()))?,
                );
            }
            equiv = v
                .iter()
                .map(|(t, f)| {
                    (
                        t.clone(),
                        DfExpr::Column(datafusion::common::Column::new_unqualified(f.clone())),
                    )
                })
                .collect();
            viable = Some(v);
            key_type = left_t.clone();
        } else {
            // The result is keyed by the join's value: both sides, and whatever the left
            // side was keyed by when its expression is that key.
            let mut e: Vec<(String, DfExpr)> = Vec::new();
            if k > 1 && equiv.iter().any(|(_, x)| same(x, &left_e)) {
                e.extend(equiv.iter().cloned());
            }
            for (t, x) in [
                (p.text(left_sql), left_e.clone()),
                (p.text(right_sql), right_joined.clone()),
            ] {
                if !e.iter().any(|(_, y)| same(y, &x)) {
                    e.push((t, x));
                }
            }
            let v: Vec<(String, String)> = e
                .iter()
                .filter_map(|(t, x)| p.column_field(x).map(|f| (t.clone(), f)))
                .collect();
            equiv = e;
            viable = if join.kind == JoinKind::Full || v.is_empty() {
                None
            } else {
                Some(v)
            };
            key_type = left_t.clone();
        }
        // Windowed sources join on their keys only (ksqlDB cannot repartition them).
        if windowed && kind == StepKind::ForeignKey {
            return Err(PlanError::Invalid(
                "Foreign-key table-table joins are not supported on windowed tables.".into(),
            ));
        }
        let window = if windowed {
            let is_key = |e: &DfExpr, input: &JoinInput| {
                let keys: Vec<&Column> = input.source.schema.key_columns().collect();
                keys.len() == 1
                    && matches!(e, DfExpr::Column(c) if c.name == format!("{}_{}", input.alias, keys[0].name))
            };
            let left_input = &p.inputs[0];
            if !is_key(&left_e, left_input) || !is_key(&right_joined, &p.inputs[k]) {
                return Err(PlanError::Invalid(
                    "Implicit repartitioning of windowed sources is not supported. See https://github.com/confluentinc/ksql/issues/4385.".into(),
                ));
            }
            Some((
                left_input.offset + 3,
                left_input.offset + 4,
                left_input.source.window == Some(crate::catalog::WindowType::Session),
            ))
        } else {
            None
        };
        steps.push(JoinStep {
            kind,
            window,
            join: join.kind,
            left_key: physical(&left_e, &Arc::new(Schema::new(fields.clone())))?,
            right_key: physical(&right_compiled.expr, &p.inputs[k].schema)?,
        });
        left_kind = if left_kind == SourceKind::Table && right_kind == SourceKind::Table {
            SourceKind::Table
        } else {
            SourceKind::Stream
        };
    }
    let tables = left_kind == SourceKind::Table;
    // Viable keys in ON order; ksqlDB lists the left side first.
    if let Some(v) = &mut viable {
        let order = |f: &String| p.owner.get(f).copied().unwrap_or(usize::MAX);
        if !fk {
            v.sort_by_key(|(_, f)| order(f));
        }
    }

    // A synthetic key column: named ROWKEY, or ROWKEY_n when a source has that name.
    let mut synthetic_key = None;
    let mut synthetic_name = String::new();
    if viable.is_none() {
        let taken = |n: &str| p.inputs.iter().any(|i| i.source.schema.column(n).is_some());
        synthetic_name = "ROWKEY".to_string();
        let mut n = 1;
        while taken(&synthetic_name) {
            synthetic_name = format!("ROWKEY_{n}");
            n += 1;
        }
        let field = format!("__JOIN_{synthetic_name}");
        synthetic_key = Some(fields.len());
        fields.push(Field::new(&field, arrow_type(&key_type, catalog)?, true));
        p.scope.columns.push(ScopeColumn {
            name: synthetic_name.clone(),
            qualifiers: Vec::new(),
            ty: key_type.clone(),
            field,
        });
    } else if rows_only && tables && !fk {
        // An aggregation of a table join retracts by the joined row's key: the row carries
        // it in a field of its own (not in scope).
        synthetic_key = Some(fields.len());
        fields.push(Field::new(
            "__JOIN_KEY",
            arrow_type(&key_type, catalog)?,
            true,
        ));
    }
    let joined_schema: SchemaRef = Arc::new(Schema::new(fields));
    if rows_only {
        let scope = Scope {
            columns: p.scope.columns.clone(),
            types: catalog,
        };
        return Ok((
            JoinPlan {
                inputs: p.inputs,
                steps,
                tables,
                left_key_columns,
                synthetic_key,
                partitioned: false,
                rows_only: true,
                joined_schema,
                filter: None,
                projections: Vec::new(),
                output: LogicalSchema::default(),
            },
            scope,
        ));
    }

    let filter = match &q.selection {
        None => None,
        Some(w) => Some(physical(&p.scope.compile(w)?.expr, &joined_schema)?),
    };

    // The projection's items, named.
    // Pseudo columns belong to every input.
    let count = |col: &str| {
        if PSEUDO.contains(&col) {
            return p.inputs.len();
        }
        p.inputs
            .iter()
            .filter(|i| i.source.schema.column(col).is_some())
            .count()
    };
    // After a repartition (PARTITION BY) `*` also holds the pseudo columns, and each
    // input's key columns come after its values, as ksqlDB's repartitioned schema has them.
    let star = |i: &JoinInput| -> Vec<(String, SqlExpr)> {
        let field = |n: &str| {
            let f = format!("{}_{n}", i.alias);
            (f.clone(), ident(&f))
        };
        if !partitioned {
            // A windowed source's window bounds come after its key columns.
            let mut v: Vec<(String, SqlExpr)> = i
                .source
                .schema
                .key_columns()
                .map(|c| field(&c.name))
                .collect();
            if i.source.window.is_some() {
                v.extend([WINDOWSTART, WINDOWEND].iter().map(|n| field(n)));
            }
            v.extend(i.source.schema.value_columns().map(|c| field(&c.name)));
            v.extend(i.source.schema.header_columns().map(|c| field(&c.name)));
            return v;
        }
        let mut v: Vec<(String, SqlExpr)> = i
            .source
            .schema
            .value_columns()
            .map(|c| field(&c.name))
            .collect();
        v.extend(PSEUDO.iter().map(|n| field(n)));
        v.extend(i.source.schema.key_columns().map(|c| field(&c.name)));
        v
    };
    let mut items: Vec<(String, SqlExpr)> = Vec::new();
    let sources: Vec<&Source> = p.inputs.iter().map(|i| &i.source).collect();
    let mut synthetic = crate::query::ColumnNames::new(sources);
    for item in &q.projection {
        match item {
            SelectItem::Wildcard(_) => {
                // `*` includes the key, synthetic or not.
                if viable.is_none() {
                    items.push((synthetic_name.clone(), ident(&synthetic_name)));
                }
                for i in &p.inputs {
                    items.extend(star(i));
                }
            }
            SelectItem::QualifiedWildcard(kq, _) => {
                let qn = kq.to_string().trim_end_matches(".*").to_string();
                let Some(i) = p
                    .inputs
                    .iter()
                    .find(|i| i.alias == qn || i.source.name == qn)
                else {
                    return Err(PlanError::Invalid(format!(
                        "'{qn}' is not a valid stream/table name or alias."
                    )));
                };
                items.extend(star(i));
            }
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    SqlExpr::Identifier(i) => i.value.clone(),
                    // A column several sources have is named after its source, as ksqlDB does.
                    SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                        let col = &parts[1].value;
                        if count(col) > 1 {
                            format!("{}_{}", parts[0].value, col)
                        } else {
                            col.clone()
                        }
                    }
                    _ => match brook_sql::as_dereference(e) {
                        Some((_, f)) => f.value.clone(),
                        None => synthetic.next_name(),
                    },
                };
                items.push((name, e.clone()));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((alias.value.clone(), expr.clone()))
            }
            other => return Err(PlanError::Unsupported(format!("select item {other}"))),
        }
    }
    for (name, _) in &items {
        if [ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND].contains(&name.as_str()) {
            return Err(PlanError::Invalid(format!(
                "Reserved column name in select: `{name}`. Please remove or alias the column."
            )));
        }
    }
    // Field references produced by `*` resolve against the joined fields directly.
    let mut field_scope = Scope {
        columns: p.scope.columns.clone(),
        types: catalog,
    };
    for c in &p.scope.columns {
        field_scope.columns.push(ScopeColumn {
            name: c.field.clone(),
            qualifiers: Vec::new(),
            ty: c.ty.clone(),
            field: c.field.clone(),
        });
    }
    let key_fields: Vec<String> = match (&viable, synthetic_key) {
        (_, Some(i)) => vec![joined_schema.field(i).name().clone()],
        (Some(v), None) => v.iter().map(|(_, f)| f.clone()).collect(),
        (None, None) => Vec::new(),
    };
    // One key column (a foreign-key join: the left table's key columns).
    let wanted = if fk { key_fields.len() } else { 1 };
    let mut keys: Vec<(String, Projection)> = Vec::new();
    let mut values = Vec::new();
    let mut compiled = Vec::new();
    for (name, e) in &items {
        let t = field_scope.compile(e)?;
        let field = match &t.expr {
            DfExpr::Column(c) => Some(c.name.clone()),
            _ => None,
        };
        compiled.push((name, t, field));
    }
    // The key: a foreign-key join's are the left table's key columns; otherwise the first
    // of the join's key columns (in ON order) that the projection selects.
    // PARTITION BY: the projection's items that are the partitioning expressions.
    let mut partition_keys: Vec<usize> = Vec::new();
    if partitioned {
        if tables {
            return Err(PlanError::Invalid(
                "Invalid result type. Your SELECT query produces a TABLE. Please use CREATE TABLE AS SELECT statement instead.".into(),
            ));
        }
        let mut missing = Vec::new();
        for e in &q.partition_by {
            let t = field_scope.compile(e)?;
            match compiled.iter().position(|(_, c, _)| same(&c.expr, &t.expr)) {
                Some(i) if !partition_keys.contains(&i) => partition_keys.push(i),
                Some(_) => {}
                None => missing.push(p.text(e)),
            }
        }
        if !missing.is_empty() {
            let (what, list) = if missing.len() == 1 {
                ("expression", missing[0].clone())
            } else {
                let last = missing.pop().unwrap_or_default();
                ("expressions", format!("{} and {last}", missing.join(", ")))
            };
            return Err(PlanError::Invalid(format!(
                "The query used to build `{sink}` must include the partitioning {what} {list} in its projection (eg, SELECT {list}...)."
            )));
        }
    }
    let chosen: Vec<String> = if fk {
        key_fields.clone()
    } else {
        key_fields
            .iter()
            .find(|f| compiled.iter().any(|(_, _, cf)| cf.as_ref() == Some(*f)))
            .cloned()
            .into_iter()
            .collect()
    };
    let wanted = if partitioned {
        partition_keys.len()
    } else {
        wanted
    };
    for (i, (name, t, field)) in compiled.into_iter().enumerate() {
        let ty = t.ty.clone().unwrap_or(Type::String);
        let is_key = if partitioned {
            partition_keys.contains(&i)
        } else {
            keys.len() < wanted
                && field
                    .as_ref()
                    .is_some_and(|f| chosen.contains(f) && !keys.iter().any(|(kf, _)| kf == f))
        };
        if values
            .iter()
            .chain(keys.iter().map(|(_, p)| p))
            .any(|p: &Projection| p.column.name == **name)
        {
            return Err(PlanError::Invalid(format!(
                "Duplicate column name '{name}' in the projection; alias one of them."
            )));
        }
        let projection = Projection {
            column: Column::new(
                name.clone(),
                ty,
                if is_key {
                    Namespace::Key
                } else {
                    Namespace::Value
                },
            ),
            expr: physical(&t.expr, &joined_schema)?,
        };
        if is_key {
            keys.push((
                if partitioned {
                    format!(
                        "{:08}",
                        partition_keys.iter().position(|&x| x == i).unwrap_or(0)
                    )
                } else {
                    field.unwrap_or_default()
                },
                projection,
            ));
        } else {
            values.push(projection);
        }
    }
    if keys.len() < wanted {
        let prefix = "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n";
        return Err(PlanError::Invalid(match (&viable, fk) {
            (Some(v), true) => {
                let missing: Vec<String> = v
                    .iter()
                    .filter(|(_, f)| !keys.iter().any(|(kf, _)| kf == f))
                    .map(|(t, _)| format!("`{}`", t.rsplit('.').next().unwrap_or(t)))
                    .collect();
                let table = &p.inputs[0].source.name;
                if missing.len() == 1 {
                    format!(
                        "Primary key column missing in projection. For foreign-key table-table joins, the projection must include all primary key columns from the left input table (`{table}`). Missing column: {}.",
                        missing[0]
                    )
                } else {
                    format!(
                        "Primary key columns missing in projection. For foreign-key table-table joins, the projection must include all primary key columns from the left input table (`{table}`). Missing columns: {}.",
                        missing.join(", ")
                    )
                }
            }
            (Some(v), false) => {
                let texts: Vec<&str> = v.iter().map(|(t, _)| t.as_str()).collect();
                let list = match texts.len() {
                    0 => String::new(),
                    1 => format!("expression {}", texts[0]),
                    n => format!(
                        "expressions {} or {}",
                        texts[..n - 1].join(", "),
                        texts[n - 1]
                    ),
                };
                format!(
                    "{prefix}The query used to build `{sink}` must include the join {list} in its projection (eg, SELECT {}...).",
                    texts.first().copied().unwrap_or("")
                )
            }
            (None, _) => format!(
                "{prefix}The query used to build `{sink}` must include the join expression {synthetic_name} in its projection (eg, SELECT {synthetic_name}...).\n{synthetic_name} was added as a synthetic key column because the join criteria did not match any source column. This expression must be included in the projection and may be aliased."
            ),
        }));
    }
    if fk {
        // Key columns in the left table's order.
        keys.sort_by_key(|(f, _)| key_fields.iter().position(|k| k == f));
    } else if partitioned {
        // Key columns in PARTITION BY order.
        keys.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut projections: Vec<Projection> = keys.into_iter().map(|(_, p)| p).collect();
    projections.extend(values);
    let output = LogicalSchema {
        columns: projections.iter().map(|p| p.column.clone()).collect(),
    };
    let scope = Scope {
        columns: p.scope.columns.clone(),
        types: catalog,
    };
    Ok((
        JoinPlan {
            inputs: p.inputs,
            steps,
            tables,
            left_key_columns,
            synthetic_key,
            partitioned,
            rows_only: false,
            joined_schema,
            filter,
            projections,
            output,
        },
        scope,
    ))
}

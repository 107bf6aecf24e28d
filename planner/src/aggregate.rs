//! Planning of GROUP BY aggregations (without windows) into a table.
//!
//! The input row is filtered (WHERE), grouped by the GROUP BY expressions, and each group's
//! aggregates are updated. The projection and HAVING then run over an "aggregate row":
//! ROWTIME, ROWPARTITION, ROWOFFSET, the group keys `__K<i>` and the aggregates `__A<i>`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brook_sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem,
};
use brook_sql::{Query, Type};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::Catalog;
use crate::expr::{physical, Scope, ScopeColumn};
use crate::query::{scope_for, Projection};
use crate::schema::{Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME};
use crate::types::arrow_type;
use crate::PlanError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// COUNT(*) / COUNT() / COUNT(literal): every row.
    CountRows,
    /// COUNT(x): rows where x is not NULL.
    Count,
    Sum,
    Min,
    Max,
    Avg,
    EarliestByOffset,
    LatestByOffset,
    CollectList,
    CollectSet,
    TopK,
    TopKDistinct,
    CountDistinct,
    StddevSamp,
    /// CORRELATION(x, y): over STRUCT(x, y) values as DOUBLEs.
    Correlation,
    Attr,
    Histogram,
    /// A registered user-defined aggregate ([`crate::udaf`]): [`AggCall::udaf`] says which.
    Udaf,
}

/// A call of a registered UDAF, resolved for its arguments.
#[derive(Debug, Clone)]
pub struct UdafCall {
    /// The name as the function declares it (ksqlDB's messages quote it so).
    pub name: String,
    pub function: Arc<dyn crate::udaf::UdafFunction>,
    /// The column arguments, evaluated per row and handed to the hooks in this order.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// The state's type between rows.
    pub aggregate_type: Type,
}

/// One aggregate call: its kind, argument and ksqlDB types.
#[derive(Debug, Clone)]
pub struct AggCall {
    pub kind: AggKind,
    /// How many values (TOPK's k, EARLIEST_BY_OFFSET's n); `None` for a single value.
    pub n: Option<usize>,
    /// Whether NULL arguments are skipped (the `*_BY_OFFSET` functions' option).
    pub ignore_nulls: bool,
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    pub arg_type: Option<Type>,
    pub result_type: Type,
    /// For [`AggKind::Udaf`]: the function and its arguments (`arg` is then `None`).
    pub udaf: Option<UdafCall>,
}

#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub source: String,
    /// A join whose joined rows are the aggregation's input (`input_schema` is then the
    /// joined row's schema).
    pub join: Option<Box<crate::join::JoinPlan>>,
    pub input_schema: SchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub group_by: Vec<Arc<dyn PhysicalExpr>>,
    pub group_types: Vec<Type>,
    pub aggs: Vec<AggCall>,
    /// The aggregate row the projections and HAVING read.
    pub agg_schema: SchemaRef,
    pub projections: Vec<Projection>,
    pub having: Option<Arc<dyn PhysicalExpr>>,
    pub output: LogicalSchema,
    pub window: Option<WindowPlan>,
    /// Over a table each key's previous row is retracted (its contribution undone) before
    /// its new row counts: the input row schema's indexes of the table's key columns.
    pub retract_by: Option<Vec<usize>>,
    /// EMIT FINAL: a window's row is emitted once, when the window closes, instead of on
    /// every update.
    pub emit_final: bool,
    /// EMIT FINAL over Kafka: after this long (wall-clock ms) without input, stream time
    /// advances by the idle time so windows close without waiting for the next record;
    /// 0 turns that off. Set from [`EMIT_FINAL_IDLE_TIMEOUT`].
    pub idle_timeout_ms: u64,
}

/// ksqlDB's refusal of EMIT FINAL anywhere but on a windowed aggregation.
pub const EMIT_FINAL_UNWINDOWED: &str = "EMIT FINAL is only supported for windowed aggregations.";

/// The property (Brook's own) that sets [`AggregatePlan::idle_timeout_ms`].
pub const EMIT_FINAL_IDLE_TIMEOUT: &str = "brook.emit.final.idle.timeout.ms";
/// Its default: a few seconds, so a quiet input delays final results only that long.
pub const DEFAULT_EMIT_FINAL_IDLE_TIMEOUT_MS: u64 = 3_000;

/// A time window (tumbling when `advance_ms == size_ms`), or a session window when
/// `advance_ms` is 0 (then `size_ms` is the inactivity gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlan {
    pub size_ms: i64,
    pub advance_ms: i64,
    /// How long after its end a window still takes records (ksqlDB's default: 24 hours).
    pub grace_ms: i64,
    /// How long a window stays in the store, counted back from the newest window start
    /// (Kafka Streams' default: size + grace; ksqlDB's RETENTION sets it). EMIT FINAL
    /// never emits a window that fell out of it.
    pub retention_ms: i64,
}

impl WindowPlan {
    pub fn is_session(&self) -> bool {
        self.advance_ms == 0
    }

    pub fn window_type(&self) -> crate::catalog::WindowType {
        if self.is_session() {
            crate::catalog::WindowType::Session
        } else if self.size_ms == self.advance_ms {
            crate::catalog::WindowType::Tumbling {
                size_ms: self.size_ms as u64,
            }
        } else {
            crate::catalog::WindowType::Hopping {
                size_ms: self.size_ms as u64,
            }
        }
    }
}

fn agg_kind(name: &str, args: &[SqlExpr]) -> Option<AggKind> {
    Some(match name {
        "COUNT" => {
            if args.is_empty()
                || matches!(
                    args.first(),
                    Some(SqlExpr::Value(_)) | Some(SqlExpr::Wildcard(_))
                )
            {
                AggKind::CountRows
            } else {
                AggKind::Count
            }
        }
        "SUM" => AggKind::Sum,
        "MIN" => AggKind::Min,
        "MAX" => AggKind::Max,
        "AVG" => AggKind::Avg,
        "EARLIEST_BY_OFFSET" => AggKind::EarliestByOffset,
        "LATEST_BY_OFFSET" => AggKind::LatestByOffset,
        "COLLECT_LIST" => AggKind::CollectList,
        "COLLECT_SET" => AggKind::CollectSet,
        "TOPK" => AggKind::TopK,
        "TOPKDISTINCT" => AggKind::TopKDistinct,
        "COUNT_DISTINCT" => AggKind::CountDistinct,
        "STDDEV_SAMP" | "STDDEV_SAMPLE" => AggKind::StddevSamp,
        "CORRELATION" => AggKind::Correlation,
        "ATTR" => AggKind::Attr,
        "HISTOGRAM" => AggKind::Histogram,
        _ => return None,
    })
}

/// Whether a name is an aggregate function (so a SELECT with one is an aggregation): a
/// built-in one or a registered UDAF.
pub fn is_aggregate(name: &str) -> bool {
    is_builtin_aggregate(name) || crate::udaf::lookup(name).is_some()
}

/// Whether a name is one of ksqlDB's built-in aggregate functions.
pub fn is_builtin_aggregate(name: &str) -> bool {
    matches!(
        name,
        "COUNT"
            | "SUM"
            | "MIN"
            | "MAX"
            | "AVG"
            | "EARLIEST_BY_OFFSET"
            | "LATEST_BY_OFFSET"
            | "COLLECT_LIST"
            | "COLLECT_SET"
            | "COUNT_DISTINCT"
            | "HISTOGRAM"
            | "CORRELATION"
            | "TOPK"
            | "TOPKDISTINCT"
            | "STDDEV_SAMP"
            | "STDDEV_SAMPLE"
            | "ATTR"
    )
}

fn call_args(f: &brook_sql::sqlparser::ast::Function) -> Vec<SqlExpr> {
    match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x.clone()),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Some(SqlExpr::Wildcard(
                    brook_sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn ident(name: &str) -> SqlExpr {
    SqlExpr::Identifier(brook_sql::sqlparser::ast::Ident::with_quote('`', name))
}

struct Rewriter<'a> {
    scope: &'a Scope<'a>,
    groups: &'a [datafusion::logical_expr::Expr],
    /// The GROUP BY expressions as written, for functions whose compiled forms do not
    /// compare equal (each compile makes a new UDF instance).
    group_sql: Vec<String>,
    aggs: Vec<PendingAgg>,
}

/// An aggregate call found in the query, before its arguments are compiled.
struct PendingAgg {
    kind: AggKind,
    /// The function's name (upper-case) as called.
    name: String,
    arg: Option<SqlExpr>,
    /// The call's text, so that repeated calls share one aggregate.
    key: String,
    /// Literal parameters after the argument; a UDAF's arguments, all of them.
    extra: Vec<SqlExpr>,
}

impl Rewriter<'_> {
    /// Replaces aggregate calls by `__A<i>` and grouping expressions by `__K<j>`.
    fn rewrite(&mut self, e: &SqlExpr) -> Result<SqlExpr, PlanError> {
        if let SqlExpr::Function(f) = e {
            let name = f.name.to_string().to_uppercase();
            if is_aggregate(&name) {
                let args = call_args(f);
                let kind = match agg_kind(&name, &args) {
                    Some(kind) => kind,
                    None if crate::udaf::lookup(&name).is_some() => AggKind::Udaf,
                    None => {
                        return Err(PlanError::Unsupported(format!(
                            "aggregate function {name} is not supported yet"
                        )))
                    }
                };
                let (arg, extra) = match kind {
                    AggKind::CountRows => (None, Vec::new()),
                    // A UDAF's arguments are all resolved together, by the function.
                    AggKind::Udaf => (None, args.clone()),
                    // CORRELATION(x, y): each row's pair as one STRUCT of DOUBLEs.
                    AggKind::Correlation => {
                        let [x, y] = args.as_slice() else {
                            return Err(PlanError::Invalid(format!(
                                "Function 'correlation' does not accept {} parameters.",
                                args.len()
                            )));
                        };
                        let text = format!(
                            "STRUCT(`x` := CAST({x} AS DOUBLE), `y` := CAST({y} AS DOUBLE))"
                        );
                        let arg = brook_sql::parse_expr(&text).map_err(|e| {
                            PlanError::Invalid(format!("CORRELATION's columns: {e}: {text}"))
                        })?;
                        (Some(arg), Vec::new())
                    }
                    // TOPK(col1, otherCols..., k): the top K rows by col1, each a STRUCT of
                    // `sort_col` and the other columns as `col0`, `col1` …
                    AggKind::TopK if args.len() > 2 => {
                        let Some((k, cols)) = args.split_last() else {
                            return Err(PlanError::Invalid("TOPK needs its K".into()));
                        };
                        let fields: Vec<String> = cols
                            .iter()
                            .enumerate()
                            .map(|(i, c)| match i {
                                0 => format!("`sort_col` := {c}"),
                                i => format!("`col{}` := {c}", i - 1),
                            })
                            .collect();
                        let text = format!("STRUCT({})", fields.join(", "));
                        let arg = brook_sql::parse_expr(&text).map_err(|e| {
                            PlanError::Invalid(format!("TOPK's columns: {e}: {text}"))
                        })?;
                        (Some(arg), vec![k.clone()])
                    }
                    _ => {
                        let max_extra = match kind {
                            AggKind::EarliestByOffset | AggKind::LatestByOffset => 2,
                            AggKind::TopK | AggKind::TopKDistinct => 1,
                            _ => 0,
                        };
                        if args.is_empty() || args.len() > 1 + max_extra {
                            return Err(PlanError::Invalid(format!(
                                "Function '{}' does not accept {} parameters.",
                                name.to_lowercase(),
                                args.len()
                            )));
                        }
                        (Some(args[0].clone()), args[1..].to_vec())
                    }
                };
                let key = format!(
                    "{}({}{})",
                    match kind {
                        AggKind::Udaf => name.clone(),
                        other => format!("{other:?}"),
                    },
                    arg.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    extra.iter().map(|e| format!(", {e}")).collect::<String>()
                );
                let idx = match self.aggs.iter().position(|a| a.key == key) {
                    Some(i) => i,
                    None => {
                        self.aggs.push(PendingAgg {
                            kind,
                            name: name.clone(),
                            arg,
                            key,
                            extra,
                        });
                        self.aggs.len() - 1
                    }
                };
                return Ok(ident(&format!("__A{idx}")));
            }
        }
        if let Some(j) = self.group_sql.iter().position(|g| *g == e.to_string()) {
            return Ok(ident(&format!("__K{j}")));
        }
        // AS_VALUE(key) compiles to the key itself, but it is a value column: only its
        // argument is the grouping expression (unless the query groups by AS_VALUE(…)).
        let as_value = matches!(e, SqlExpr::Function(f)
            if f.name.to_string().eq_ignore_ascii_case("AS_VALUE"));
        if !as_value {
            if let Ok(t) = self.scope.compile(e) {
                if let Some(j) = self.groups.iter().position(|g| *g == t.expr) {
                    return Ok(ident(&format!("__K{j}")));
                }
            }
        }
        Ok(match e {
            SqlExpr::BinaryOp { left, op, right } => SqlExpr::BinaryOp {
                left: Box::new(self.rewrite(left)?),
                op: op.clone(),
                right: if brook_sql::as_dereference(e).is_some() {
                    right.clone()
                } else {
                    Box::new(self.rewrite(right)?)
                },
            },
            SqlExpr::UnaryOp { op, expr } => SqlExpr::UnaryOp {
                op: *op,
                expr: Box::new(self.rewrite(expr)?),
            },
            SqlExpr::Nested(x) => SqlExpr::Nested(Box::new(self.rewrite(x)?)),
            SqlExpr::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => SqlExpr::Cast {
                kind: kind.clone(),
                expr: Box::new(self.rewrite(expr)?),
                data_type: data_type.clone(),
                array: *array,
                format: format.clone(),
            },
            SqlExpr::Function(f) => {
                let mut f = f.clone();
                if let FunctionArguments::List(l) = &mut f.args {
                    for a in &mut l.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                            *x = self.rewrite(x)?;
                        }
                    }
                }
                SqlExpr::Function(f)
            }
            SqlExpr::IsNull(x) => SqlExpr::IsNull(Box::new(self.rewrite(x)?)),
            SqlExpr::IsNotNull(x) => SqlExpr::IsNotNull(Box::new(self.rewrite(x)?)),
            other => self.rewrite_inside(other)?,
        })
    }

    /// The other expressions with sub-expressions (SUBSTRING and TRIM parse as their own
    /// forms, not as function calls): a grouping expression inside them is a key too.
    fn rewrite_inside(&mut self, e: &SqlExpr) -> Result<SqlExpr, PlanError> {
        let mut out = e.clone();
        let mut each = |x: &mut Box<SqlExpr>| -> Result<(), PlanError> {
            let r = self.rewrite(x)?;
            **x = r;
            Ok(())
        };
        match &mut out {
            SqlExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                each(expr)?;
                if let Some(x) = substring_from {
                    each(x)?;
                }
                if let Some(x) = substring_for {
                    each(x)?;
                }
            }
            SqlExpr::Trim {
                expr, trim_what, ..
            } => {
                each(expr)?;
                if let Some(x) = trim_what {
                    each(x)?;
                }
            }
            SqlExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(x) = operand {
                    each(x)?;
                }
                for c in conditions {
                    c.condition = self.rewrite(&c.condition)?;
                    c.result = self.rewrite(&c.result)?;
                }
                if let Some(x) = else_result {
                    let r = self.rewrite(x)?;
                    **x = r;
                }
            }
            SqlExpr::Between {
                expr, low, high, ..
            } => {
                each(expr)?;
                each(low)?;
                each(high)?;
            }
            SqlExpr::InList { expr, list, .. } => {
                each(expr)?;
                for x in list {
                    *x = self.rewrite(x)?;
                }
            }
            SqlExpr::Like { expr, pattern, .. } | SqlExpr::ILike { expr, pattern, .. } => {
                each(expr)?;
                each(pattern)?;
            }
            SqlExpr::IsDistinctFrom(a, b) | SqlExpr::IsNotDistinctFrom(a, b) => {
                each(a)?;
                each(b)?;
            }
            _ => {}
        }
        Ok(out)
    }
}

/// Does the query aggregate (GROUP BY, or an aggregate function in SELECT/HAVING)?
pub fn is_aggregation(q: &Query) -> bool {
    if !q.group_by.is_empty() || q.having.is_some() {
        return true;
    }
    fn has_agg(e: &SqlExpr) -> bool {
        match e {
            SqlExpr::Function(f) => {
                is_aggregate(&f.name.to_string().to_uppercase()) || call_args(f).iter().any(has_agg)
            }
            SqlExpr::BinaryOp { left, right, .. } => has_agg(left) || has_agg(right),
            SqlExpr::Nested(x) | SqlExpr::UnaryOp { expr: x, .. } => has_agg(x),
            SqlExpr::Cast { expr, .. } => has_agg(expr),
            _ => false,
        }
    }
    q.projection.iter().any(|i| match i {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_agg(e),
        _ => false,
    })
}

/// Plans `SELECT … FROM stream [WHERE …] GROUP BY … [HAVING …]` for a sink table.
pub fn plan_aggregate(
    q: &Query,
    catalog: &Catalog,
    sink: &str,
) -> Result<AggregatePlan, PlanError> {
    let window = match &q.window {
        None => None,
        Some(w) => {
            let grace_ms = w.grace.map(|g| g.millis() as i64).unwrap_or(24 * 3_600_000);
            let retention = |size: i64| {
                w.retention
                    .map(|r| r.millis() as i64)
                    .unwrap_or(size.saturating_add(grace_ms))
            };
            match &w.kind {
                brook_sql::WindowKind::Tumbling { size } => Some(WindowPlan {
                    size_ms: size.millis() as i64,
                    advance_ms: size.millis() as i64,
                    grace_ms,
                    retention_ms: retention(size.millis() as i64),
                }),
                brook_sql::WindowKind::Hopping { size, advance } => {
                    if advance.millis() > size.millis() || advance.millis() == 0 {
                        return Err(PlanError::Invalid(
                            "Window advance must be greater than zero and not larger than the window size".into(),
                        ));
                    }
                    Some(WindowPlan {
                        size_ms: size.millis() as i64,
                        advance_ms: advance.millis() as i64,
                        grace_ms,
                        retention_ms: retention(size.millis() as i64),
                    })
                }
                brook_sql::WindowKind::Session { gap } => Some(WindowPlan {
                    size_ms: gap.millis() as i64,
                    advance_ms: 0,
                    grace_ms,
                    retention_ms: retention(gap.millis() as i64),
                }),
            }
        }
    };
    if !q.partition_by.is_empty() {
        return Err(PlanError::Invalid(
            "PARTITION BY and GROUP BY in the same query is not supported".into(),
        ));
    }
    if q.group_by.is_empty() {
        // ksqlDB's messages: the non-aggregate items first, else the aggregates.
        let mut plain = Vec::new();
        let mut aggs = Vec::new();
        for item in &q.projection {
            let e = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => continue,
            };
            match e {
                SqlExpr::Function(f) if is_aggregate(&f.name.to_string().to_uppercase()) => {
                    let name = f.name.to_string().to_uppercase();
                    let args: Vec<String> = call_args(f).iter().map(ksql_text).collect();
                    let args = if args.is_empty() || args == ["*"] {
                        "ROWTIME".to_string()
                    } else {
                        args.join(", ")
                    };
                    aggs.push(format!("{name}({args})"));
                }
                other => plain.push(ksql_text(other).to_uppercase()),
            }
        }
        if !plain.is_empty() {
            return Err(PlanError::Invalid(format!(
                "Non-aggregate SELECT expression(s) not part of GROUP BY: {}",
                plain.join(", ")
            )));
        }
        return Err(PlanError::Invalid(format!(
            "CREATE TABLE AS SELECT statement does not support aggregate function [{}] without a GROUP BY clause.",
            aggs.join(", ")
        )));
    }
    // What the aggregation reads: the FROM source's rows, or a join's joined rows.
    let (join, scope, input_schema, sources, table_input, retract_keys) = if q.joins.is_empty() {
        let source = catalog.source(&q.from.name.value)?;
        let input_schema = source.schema.row_schema(false, catalog)?;
        let alias = q.from.alias.as_ref().map(|a| a.value.as_str());
        let retract: Vec<usize> = source
            .schema
            .key_columns()
            .filter_map(|c| input_schema.index_of(&c.name).ok())
            .collect();
        (
            None,
            scope_for(source, alias, catalog),
            input_schema,
            vec![source.clone()],
            source.kind == brook_sql::SourceKind::Table,
            retract,
        )
    } else {
        let (plan, scope) = crate::join::plan_join_rows(q, catalog)?;
        let schema = plan.joined_schema.clone();
        let sources: Vec<crate::catalog::Source> =
            plan.inputs.iter().map(|i| i.source.clone()).collect();
        // A table join's rows change and go: they are retracted by the join's key.
        let (tables, retract) = match (plan.tables, plan.synthetic_key) {
            (true, Some(k)) => (true, vec![k]),
            _ => (false, Vec::new()),
        };
        (
            Some(Box::new(plan)),
            scope,
            schema,
            sources,
            tables,
            retract,
        )
    };
    let kafka: Vec<&str> = sources
        .iter()
        .filter(|s| s.value_format.kind == crate::format::FormatKind::Kafka)
        .map(|s| s.name.as_str())
        .collect();
    if !kafka.is_empty() {
        return Err(PlanError::Invalid(format!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support GROUP BY.",
            kafka.join(", ")
        )));
    }
    if table_input && q.window.is_some() {
        return Err(PlanError::Unsupported(
            "windowed aggregation of a table is not supported yet".into(),
        ));
    }
    let filter = match &q.selection {
        None => None,
        Some(w) => Some(physical(&scope.compile(w)?.expr, &input_schema)?),
    };
    // Window bounds exist only on the aggregate's output.
    let bounds = |e: &SqlExpr| {
        let t = e.to_string();
        [crate::schema::WINDOWSTART, crate::schema::WINDOWEND]
            .into_iter()
            .find(|b| {
                t.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == *b)
            })
    };
    for e in q.group_by.iter().chain(q.having.iter()) {
        if let Some(b) = bounds(e) {
            return Err(PlanError::Invalid(format!(
                "Window bounds column {b} can only be used in the SELECT clause of windowed aggregations and can not be passed to aggregate functions."
            )));
        }
    }
    let mut groups = Vec::new();
    let mut group_types = Vec::new();
    let mut group_exprs = Vec::new();
    for g in &q.group_by {
        if let Some(name) = nested_aggregate(g) {
            return Err(PlanError::Invalid(format!(
                "GROUP BY does not support aggregate functions: {name} is an aggregate function."
            )));
        }
        let t = scope.compile(g)?;
        if group_exprs.contains(&t.expr) {
            return Err(PlanError::Invalid(format!(
                "Duplicate GROUP BY expression: {}",
                ksql_text(g).to_uppercase()
            )));
        }
        let ty =
            t.ty.clone()
                .ok_or_else(|| PlanError::Invalid("GROUP BY NULL is not supported".into()))?;
        groups.push(physical(&t.expr, &input_schema)?);
        group_types.push(ty);
        group_exprs.push(t.expr);
    }
    let mut rw = Rewriter {
        scope: &scope,
        groups: &group_exprs,
        group_sql: q.group_by.iter().map(|g| g.to_string()).collect(),
        aggs: Vec::new(),
    };
    // Projection items, rewritten over the aggregate row.
    let mut items = Vec::new();
    let mut synthetic = crate::query::ColumnNames::new(sources.iter());
    for item in &q.projection {
        let (name, e) = match item {
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    SqlExpr::Identifier(i) => i.value.clone(),
                    SqlExpr::CompoundIdentifier(p) => {
                        p.last().map(|i| i.value.clone()).unwrap_or_default()
                    }
                    _ => match brook_sql::as_dereference(e) {
                        Some((_, f)) => f.value.clone(),
                        None => synthetic.next_name(),
                    },
                };
                (name, e.clone())
            }
            SelectItem::ExprWithAlias { expr, alias } => (alias.value.clone(), expr.clone()),
            _ => {
                return Err(PlanError::Unsupported(
                    "SELECT * with GROUP BY is not supported".into(),
                ))
            }
        };
        items.push((name, rw.rewrite(&e)?, e));
    }
    let having = match &q.having {
        Some(h) => Some(rw.rewrite(h)?),
        None => None,
    };
    if rw.aggs.is_empty() {
        return Err(PlanError::Invalid(
            "GROUP BY requires aggregate functions in either the SELECT or HAVING clause.".into(),
        ));
    }
    let emit_final = q.emit == Some(brook_sql::Emit::Final);
    if emit_final && window.is_none() {
        return Err(PlanError::Invalid(EMIT_FINAL_UNWINDOWED.into()));
    }
    // Aggregates and the aggregate row.
    let mut aggs = Vec::new();
    let mut fields = vec![
        Field::new(ROWTIME, DataType::Int64, false),
        Field::new(ROWPARTITION, DataType::Int32, false),
        Field::new(ROWOFFSET, DataType::Int64, false),
    ];
    let mut agg_scope = Scope {
        columns: Vec::new(),
        types: catalog,
    };
    if window.is_some() {
        for n in [crate::schema::WINDOWSTART, crate::schema::WINDOWEND] {
            fields.push(Field::new(n, DataType::Int64, false));
            agg_scope.columns.push(ScopeColumn {
                name: n.to_string(),
                qualifiers: Vec::new(),
                ty: Type::Bigint,
                field: n.to_string(),
            });
        }
    }
    for (j, ty) in group_types.iter().enumerate() {
        let n = format!("__K{j}");
        fields.push(Field::new(&n, arrow_type(ty, catalog)?, true));
        agg_scope.columns.push(ScopeColumn {
            name: n.clone(),
            qualifiers: Vec::new(),
            ty: ty.clone(),
            field: n,
        });
    }
    // UDAFs without `undo` that meet a table: refused together, as ksqlDB does.
    let mut not_for_tables: Vec<String> = Vec::new();
    for (i, pending) in rw.aggs.iter().enumerate() {
        let PendingAgg {
            kind, arg, extra, ..
        } = pending;
        if *kind == AggKind::Udaf {
            let (call, result_type) = plan_udaf(&pending.name, extra, &scope, &input_schema)?;
            if table_input && !call.function.supports_undo() && !not_for_tables.contains(&call.name)
            {
                not_for_tables.push(call.name.clone());
            }
            let field = format!("__A{i}");
            fields.push(Field::new(&field, arrow_type(&result_type, catalog)?, true));
            agg_scope.columns.push(ScopeColumn {
                name: field.clone(),
                qualifiers: Vec::new(),
                ty: result_type.clone(),
                field,
            });
            aggs.push(AggCall {
                kind: AggKind::Udaf,
                n: None,
                ignore_nulls: false,
                arg: None,
                arg_type: None,
                result_type,
                udaf: Some(call),
            });
            continue;
        }
        // Literal parameters: a count (TOPK's k, *_BY_OFFSET's n) and/or ignoreNulls.
        let mut n = None;
        let mut ignore_nulls = true;
        for x in extra {
            match x {
                SqlExpr::Value(v) => match &v.value {
                    brook_sql::sqlparser::ast::Value::Number(t, _) => {
                        n = Some(t.parse::<usize>().map_err(|_| {
                            PlanError::Invalid(format!("Invalid count parameter {t}"))
                        })?)
                    }
                    brook_sql::sqlparser::ast::Value::Boolean(b) => ignore_nulls = *b,
                    other => {
                        return Err(PlanError::Invalid(format!(
                            "Invalid aggregate parameter {other}"
                        )))
                    }
                },
                other => {
                    return Err(PlanError::Invalid(format!(
                        "Aggregate parameters must be literals, got {other}"
                    )))
                }
            }
        }
        let (arg_phys, arg_type) = match arg {
            Some(a) => {
                let t = scope.compile(a)?;
                (Some(physical(&t.expr, &input_schema)?), t.ty)
            }
            None => (None, None),
        };
        let result_type = match kind {
            AggKind::CountRows | AggKind::Count | AggKind::CountDistinct => Type::Bigint,
            AggKind::Avg | AggKind::StddevSamp | AggKind::Correlation => Type::Double,
            AggKind::Histogram => Type::Map(Box::new(Type::String), Box::new(Type::Bigint)),
            AggKind::CollectList | AggKind::CollectSet | AggKind::TopK | AggKind::TopKDistinct => {
                Type::Array(Box::new(arg_type.clone().unwrap_or(Type::String)))
            }
            AggKind::EarliestByOffset | AggKind::LatestByOffset if n.is_some() => {
                Type::Array(Box::new(arg_type.clone().unwrap_or(Type::String)))
            }
            AggKind::Sum => match &arg_type {
                Some(t @ (Type::Int | Type::Bigint | Type::Double | Type::Decimal { .. })) => {
                    t.clone()
                }
                other => {
                    return Err(PlanError::Invalid(format!(
                        "Function 'sum' does not accept parameters ({}).",
                        other
                            .as_ref()
                            .map(|t| t.to_string())
                            .unwrap_or("NULL".into())
                    )))
                }
            },
            _ => arg_type.clone().unwrap_or(Type::String),
        };
        let field = format!("__A{i}");
        fields.push(Field::new(&field, arrow_type(&result_type, catalog)?, true));
        agg_scope.columns.push(ScopeColumn {
            name: field.clone(),
            qualifiers: Vec::new(),
            ty: result_type.clone(),
            field,
        });
        aggs.push(AggCall {
            kind: *kind,
            n,
            ignore_nulls,
            arg: arg_phys,
            arg_type,
            result_type,
            udaf: None,
        });
    }
    if !not_for_tables.is_empty() {
        let names = match not_for_tables.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("s {} and {last}", rest.join(", ")),
            _ => format!(" {}", not_for_tables.join("")),
        };
        return Err(PlanError::Invalid(format!(
            "The aggregation function{names} cannot be applied to a table source, only to a stream source."
        )));
    }
    // The aggregation's state is kept in the source's value format; DELIMITED holds no
    // ARRAY, MAP or STRUCT, which these functions' intermediate values are.
    let complex_state = aggs.iter().any(|a| {
        let udaf_state = a.udaf.as_ref().map(|u| &u.aggregate_type);
        matches!(
            udaf_state,
            Some(Type::Array(_) | Type::Map(..) | Type::Struct(_))
        ) || matches!(
            a.kind,
            AggKind::Avg
                | AggKind::StddevSamp
                | AggKind::Correlation
                | AggKind::TopK
                | AggKind::TopKDistinct
                | AggKind::CollectList
                | AggKind::CollectSet
                | AggKind::Histogram
                | AggKind::EarliestByOffset
                | AggKind::LatestByOffset
        )
    });
    if complex_state
        && sources
            .iter()
            .any(|s| s.value_format.kind == crate::format::FormatKind::Delimited)
    {
        return Err(PlanError::Invalid(
            "One of the functions used in the statement has an intermediate type that the \
             value format can not handle. Please remove the function or change the format."
                .into(),
        ));
    }
    let agg_schema: SchemaRef = Arc::new(Schema::new(fields));
    // Every projected expression that is neither grouped nor aggregated, named together.
    let mut not_grouped: Vec<String> = Vec::new();
    let mut keys: Vec<(usize, Projection)> = Vec::new();
    let mut values: Vec<Projection> = Vec::new();
    let mut key_names: Vec<Option<String>> = vec![None; groups.len()];
    for (name, e, original) in &items {
        let t = match agg_scope.compile(e) {
            Ok(t) => t,
            Err(PlanError::Invalid(m)) if m.contains("cannot be resolved") => {
                not_grouped.push(ksql_text(original));
                continue;
            }
            Err(other) => return Err(other),
        };
        let ty = t.ty.clone().unwrap_or(Type::String);
        let p = Projection {
            column: Column::new(name.clone(), ty, Namespace::Value),
            expr: physical(&t.expr, &agg_schema)?,
        };
        // A bare grouping expression is the table's key.
        let key_index = match e {
            SqlExpr::Identifier(i) => i
                .value
                .strip_prefix("__K")
                .and_then(|n| n.parse::<usize>().ok()),
            _ => None,
        };
        match key_index {
            Some(j) if key_names[j].is_none() => {
                key_names[j] = Some(name.clone());
                let mut p = p;
                p.column.namespace = Namespace::Key;
                keys.push((j, p));
            }
            Some(j) => {
                let first = key_names[j].clone().unwrap_or_default();
                return Err(PlanError::Invalid(format!(
                    "The projection contains a key column more than once: `{first}` and `{name}`."
                )));
            }
            None => values.push(p),
        }
    }
    if !not_grouped.is_empty() {
        return Err(PlanError::Invalid(format!(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: {}\n\
             Either add the column(s) to the GROUP BY or remove them from the SELECT.",
            not_grouped.join(", ")
        )));
    }
    let missing: Vec<String> = key_names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.is_none())
        .map(|(j, _)| match &q.group_by[j] {
            SqlExpr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect();
    if !missing.is_empty() {
        let example = missing.join(", ");
        let (what, list) = match missing.split_last() {
            Some((last, rest)) if !rest.is_empty() => {
                ("expressions", format!("{} and {last}", rest.join(", ")))
            }
            _ => ("expression", example.clone()),
        };
        return Err(PlanError::Invalid(format!(
            "The query used to build `{sink}` must include the grouping {what} {list} in its projection (eg, SELECT {example}...)."
        )));
    }
    // A value column may not share a key column's name.
    for v in &values {
        if keys.iter().any(|(_, k)| k.column.name == v.column.name) {
            return Err(PlanError::Invalid(format!(
                "Duplicate value columns found in schema: `{}` {}",
                v.column.name,
                crate::schema::SchemaType(&v.column.ty)
            )));
        }
    }
    if values.is_empty() {
        return Err(PlanError::Invalid(
            "The projection contains no value columns.".into(),
        ));
    }
    let having = match having {
        Some(h) => {
            let t = agg_scope.compile(&h).map_err(|e| match e {
                // A source column HAVING reads outside of an aggregate.
                PlanError::Invalid(m)
                    if m.starts_with("Column '") && m.ends_with("' cannot be resolved.") =>
                {
                    let col = &m["Column '".len()..m.len() - "' cannot be resolved.".len()];
                    if scope
                        .compile(&brook_sql::parse_expr(col).unwrap_or(SqlExpr::Value(
                            brook_sql::sqlparser::ast::Value::Null.into(),
                        )))
                        .is_ok()
                    {
                        PlanError::Invalid(format!(
                            "Non-aggregate HAVING expression not part of GROUP BY: {col}"
                        ))
                    } else {
                        PlanError::Invalid(m)
                    }
                }
                other => other,
            })?;
            Some(physical(&t.expr, &agg_schema)?)
        }
        None => None,
    };
    // The key's columns come in GROUP BY order, whatever order the projection has them in.
    keys.sort_by_key(|(j, _)| *j);
    let mut projections: Vec<_> = keys.into_iter().map(|(_, p)| p).collect();
    projections.extend(values);
    let output = LogicalSchema {
        columns: projections.iter().map(|p| p.column.clone()).collect(),
    };
    Ok(AggregatePlan {
        source: sources[0].name.clone(),
        input_schema,
        filter,
        group_by: groups,
        group_types,
        aggs,
        agg_schema,
        projections,
        having,
        output,
        window,
        retract_by: table_input.then_some(retract_keys),
        join,
        emit_final,
        idle_timeout_ms: DEFAULT_EMIT_FINAL_IDLE_TIMEOUT_MS,
    })
}

/// The name of an aggregate function called anywhere inside `e`.
fn nested_aggregate(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Function(f) => {
            let name = f.name.to_string().to_uppercase();
            if is_aggregate(&name) {
                return Some(name);
            }
            call_args(f).iter().find_map(nested_aggregate)
        }
        SqlExpr::BinaryOp { left, right, .. } => {
            nested_aggregate(left).or_else(|| nested_aggregate(right))
        }
        SqlExpr::UnaryOp { expr, .. } | SqlExpr::Nested(expr) | SqlExpr::Cast { expr, .. } => {
            nested_aggregate(expr)
        }
        SqlExpr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => nested_aggregate(expr)
            .or_else(|| substring_from.as_deref().and_then(nested_aggregate))
            .or_else(|| substring_for.as_deref().and_then(nested_aggregate)),
        _ => None,
    }
}

/// An expression as ksqlDB prints it in messages: binary operations in parentheses.
fn ksql_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::BinaryOp { left, op, right } if brook_sql::as_dereference(e).is_none() => {
            format!("({} {op} {})", ksql_text(left), ksql_text(right))
        }
        SqlExpr::Nested(x) => ksql_text(x),
        SqlExpr::Function(f) => {
            let args: Vec<String> = call_args(f).iter().map(ksql_text).collect();
            format!("{}({})", f.name.to_string().to_uppercase(), args.join(", "))
        }
        other => other.to_string(),
    }
}

/// Resolves a registered UDAF's call: compiles its arguments, lets the function choose its
/// overload (and take its init arguments' values), and casts the column arguments to the
/// types the overload takes. Gives the call and its result type.
fn plan_udaf(
    name: &str,
    args: &[SqlExpr],
    scope: &Scope,
    input_schema: &SchemaRef,
) -> Result<(UdafCall, Type), PlanError> {
    let udaf = crate::udaf::lookup(name).ok_or_else(|| {
        PlanError::Invalid(format!("Can't find any functions with the name '{name}'"))
    })?;
    // Constant arguments are evaluated here, over a row of no columns: init arguments are
    // given to the function as values.
    let no_columns: SchemaRef = Arc::new(Schema::empty());
    let one_row = arrow::array::RecordBatch::try_new_with_options(
        no_columns.clone(),
        Vec::new(),
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| PlanError::DataFusion(e.to_string()))?;
    let mut compiled = Vec::with_capacity(args.len());
    let mut udaf_args = Vec::with_capacity(args.len());
    for a in args {
        let t = scope.compile(a)?;
        let phys = physical(&t.expr, input_schema)?;
        let data_type = phys
            .data_type(input_schema)
            .map_err(|e| PlanError::DataFusion(e.to_string()))?;
        let literal = if t.expr.column_refs().is_empty() {
            physical(&t.expr, &no_columns)
                .ok()
                .and_then(|p| p.evaluate(&one_row).ok())
                .and_then(|v| match v {
                    datafusion::logical_expr::ColumnarValue::Scalar(s) => Some(s),
                    datafusion::logical_expr::ColumnarValue::Array(a) => {
                        datafusion::common::ScalarValue::try_from_array(&a, 0).ok()
                    }
                })
        } else {
            None
        };
        udaf_args.push(crate::udaf::UdafArg {
            ty: t.ty.clone(),
            data_type,
            literal,
        });
        compiled.push(t);
    }
    let resolved = udaf.resolve(&udaf_args)?;
    if resolved.columns.len() > compiled.len() {
        return Err(PlanError::Invalid(format!(
            "Function '{}' resolved {} column arguments of {}",
            udaf.name(),
            resolved.columns.len(),
            compiled.len()
        )));
    }
    // The arguments after the columns configure the function once: ksqlDB takes only
    // literals there, whether or not the function read them.
    for i in resolved.columns.len()..udaf_args.len() {
        crate::udaf::UdafArg::init_value(&udaf_args, i, udaf.name())?;
    }
    let mut phys_args = Vec::with_capacity(resolved.columns.len());
    for (t, cast) in compiled.iter().zip(&resolved.columns) {
        let expr = match cast {
            Some(to) if t.ty.as_ref() != Some(to) => {
                datafusion::logical_expr::Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(t.expr.clone()),
                    arrow_type(to, scope.types)?,
                ))
            }
            _ => t.expr.clone(),
        };
        phys_args.push(physical(&expr, input_schema)?);
    }
    let call = UdafCall {
        name: udaf.name().to_string(),
        function: resolved.function,
        args: phys_args,
        aggregate_type: resolved.aggregate_type,
    };
    Ok((call, resolved.return_type))
}

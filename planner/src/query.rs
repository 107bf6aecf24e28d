//! Planning of stateless queries: WHERE and projection over one source.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use brook_sql::sqlparser::ast::{Expr as SqlExpr, SelectItem};
use brook_sql::{Query, SourceKind, Type};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::{Catalog, Source};
use crate::expr::{physical, Scope, ScopeColumn};
use crate::schema::{Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART};
use crate::PlanError;

/// One output column and how it is computed from an input row.
#[derive(Debug, Clone)]
pub struct Projection {
    pub column: Column,
    pub expr: Arc<dyn PhysicalExpr>,
}

/// A query that maps each input row to at most one output row.
#[derive(Debug, Clone)]
pub struct StatelessPlan {
    pub source: String,
    /// The row schema operators receive (see `LogicalSchema::row_schema`).
    pub input_schema: SchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Key columns first, then value columns.
    pub projections: Vec<Projection>,
    pub output: LogicalSchema,
    pub kind: SourceKind,
}

/// Whether the result is written to a sink (names are checked as ksqlDB checks sinks) or
/// pushed to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Sink(&'a str),
    Transient,
}

pub fn scope_for<'a>(source: &Source, alias: Option<&str>, catalog: &'a Catalog) -> Scope<'a> {
    let mut quals = vec![source.name.clone()];
    if let Some(a) = alias {
        quals.push(a.to_string());
    }
    let mut columns: Vec<ScopeColumn> = [ROWTIME, ROWPARTITION, ROWOFFSET]
        .iter()
        .map(|n| ScopeColumn {
            name: n.to_string(),
            qualifiers: quals.clone(),
            ty: if *n == ROWPARTITION { Type::Int } else { Type::Bigint },
            field: n.to_string(),
        })
        .collect();
    if source.window.is_some() {
        for n in [WINDOWSTART, WINDOWEND] {
            columns.push(ScopeColumn {
                name: n.to_string(),
                qualifiers: quals.clone(),
                ty: Type::Bigint,
                field: n.to_string(),
            });
        }
    }
    for c in &source.schema.columns {
        columns.push(ScopeColumn {
            name: c.name.clone(),
            qualifiers: quals.clone(),
            ty: c.ty.clone(),
            field: c.name.clone(),
        });
    }
    Scope {
        columns,
        types: catalog,
    }
}

const RESERVED: &[&str] = &[ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND];

/// Plans a SELECT without joins, windows, GROUP BY or PARTITION BY.
pub fn plan_stateless(q: &Query, catalog: &Catalog, target: Target) -> Result<StatelessPlan, PlanError> {
    if !q.joins.is_empty() || q.window.is_some() || !q.group_by.is_empty() || q.having.is_some() {
        return Err(PlanError::Unsupported(
            "joins, windows and aggregations are not supported yet".into(),
        ));
    }
    if !q.partition_by.is_empty() {
        return Err(PlanError::Unsupported("PARTITION BY is not supported yet".into()));
    }
    let source = catalog.source(&q.from.name.value)?;
    let alias = q.from.alias.as_ref().map(|a| a.value.as_str());
    let scope = scope_for(source, alias, catalog);
    let input_schema = source.schema.row_schema(source.window.is_some(), catalog)?;

    let filter = match &q.selection {
        None => None,
        Some(w) => {
            let t = scope.compile(w).map_err(|e| prefix("Error in WHERE expression: ", e))?;
            if !matches!(t.ty, None | Some(Type::Boolean)) {
                return Err(PlanError::Invalid(format!(
                    "Type error in WHERE expression: Should be BOOLEAN but is {} for expression: {w}",
                    t.ty.map(|t| t.to_string()).unwrap_or_default()
                )));
            }
            Some(physical(&t.expr, &input_schema)?)
        }
    };

    // Expand the projection into (name, expression) pairs.
    let mut items: Vec<(String, SqlExpr, bool)> = Vec::new();
    let mut synthetic = 0usize;
    let quals: Vec<String> = std::iter::once(source.name.clone())
        .chain(alias.map(str::to_string))
        .collect();
    for item in &q.projection {
        match item {
            SelectItem::Wildcard(_) => {
                for c in source.schema.key_columns().chain(source.schema.value_columns()).chain(source.schema.header_columns()) {
                    items.push((c.name.clone(), ident(&c.name), false));
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let q = kind.to_string();
                if !quals.iter().any(|x| *x == q) {
                    return Err(PlanError::Invalid(format!(
                        "'{q}' is not a valid stream/table name or alias."
                    )));
                }
                for c in source.schema.key_columns().chain(source.schema.value_columns()).chain(source.schema.header_columns()) {
                    items.push((c.name.clone(), ident(&c.name), false));
                }
            }
            SelectItem::UnnamedExpr(e) => {
                if let Some(base) = brook_sql::as_struct_all(e) {
                    let t = scope.compile(base)?;
                    let Some(Type::Struct(fields)) = t.ty else {
                        return Err(PlanError::Invalid(format!("{base} is not a STRUCT")));
                    };
                    for f in fields {
                        let deref = SqlExpr::BinaryOp {
                            left: Box::new(base.clone()),
                            op: brook_sql::sqlparser::ast::BinaryOperator::Arrow,
                            right: Box::new(SqlExpr::Identifier(f.name.clone())),
                        };
                        items.push((f.name.value.clone(), deref, false));
                    }
                    continue;
                }
                let name = match e {
                    SqlExpr::Identifier(i) => i.value.clone(),
                    SqlExpr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()).unwrap_or_default(),
                    _ => match brook_sql::as_dereference(e) {
                        Some((_, f)) => f.value.clone(),
                        None => {
                            let n = format!("KSQL_COL_{synthetic}");
                            synthetic += 1;
                            n
                        }
                    },
                };
                items.push((name, e.clone(), false));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((alias.value.clone(), expr.clone(), true));
            }
            other => return Err(PlanError::Unsupported(format!("select item {other}"))),
        }
    }

    let mut keys: Vec<Projection> = Vec::new();
    let mut values: Vec<Projection> = Vec::new();
    let mut key_aliases: Vec<(String, Vec<String>)> = Vec::new();
    for (name, e, _aliased) in items {
        if let Target::Sink(_) = target {
            if RESERVED.contains(&name.as_str()) {
                return Err(PlanError::Invalid(format!(
                    "Reserved column name in select: `{name}`. Please remove or alias the column."
                )));
            }
        }
        let t = scope.compile(&e)?;
        let ty = t.ty.clone().ok_or_else(|| {
            PlanError::Invalid(format!(
                "Can't infer a type of null. Please explicitly cast it to the required type, e.g. CAST(null AS VARCHAR)."
            ))
        })?;
        let phys = physical(&t.expr, &input_schema)?;
        // A bare reference to a key column keeps it a key (under its alias).
        let key_ref = match &e {
            SqlExpr::Identifier(i) => Some(i.value.clone()),
            SqlExpr::CompoundIdentifier(p) if p.len() == 2 => Some(p[1].value.clone()),
            _ => None,
        }
        .filter(|n| source.schema.column(n).is_some_and(|c| c.namespace == Namespace::Key));
        let is_key = key_ref.is_some() && target != Target::Transient;
        if let Some(k) = &key_ref {
            match key_aliases.iter_mut().find(|(kk, _)| kk == k) {
                Some((_, names)) => names.push(name.clone()),
                None => key_aliases.push((k.clone(), vec![name.clone()])),
            }
        }
        if keys.iter().chain(values.iter()).any(|p| p.column.name == name) {
            return Err(PlanError::Invalid(format!(
                "Duplicate column name '{name}' in the projection; alias one of them."
            )));
        }
        let col = Column::new(name, ty, if is_key { Namespace::Key } else { Namespace::Value });
        let p = Projection { column: col, expr: phys };
        if is_key && !keys.iter().any(|k| k.column.name == p.column.name) {
            keys.push(p);
        } else {
            values.push(p);
        }
    }

    if let Target::Sink(sink) = target {
        for (k, names) in &key_aliases {
            if names.len() > 1 {
                return Err(PlanError::Invalid(format!(
                    "The projection contains a key column (`{k}`) more than once, aliased as: {}.",
                    names.join(" and ")
                )));
            }
        }
        for k in source.schema.key_columns() {
            if !key_aliases.iter().any(|(n, _)| *n == k.name) {
                return Err(PlanError::Invalid(format!(
                    "The query used to build `{sink}` must include the key column {} in its projection (eg, SELECT {}...).",
                    k.name, k.name
                )));
            }
        }
        if values.is_empty() {
            return Err(PlanError::Invalid("The projection contains no value columns.".into()));
        }
    }
    let mut projections = keys;
    projections.extend(values);
    let output = LogicalSchema {
        columns: projections.iter().map(|p| p.column.clone()).collect(),
    };
    Ok(StatelessPlan {
        source: source.name.clone(),
        input_schema,
        filter,
        projections,
        output,
        kind: source.kind,
    })
}

fn ident(name: &str) -> SqlExpr {
    SqlExpr::Identifier(brook_sql::sqlparser::ast::Ident::with_quote('`', name))
}

fn prefix(p: &str, e: PlanError) -> PlanError {
    match e {
        PlanError::Invalid(m) if !m.starts_with(p) => PlanError::Invalid(format!("{p}{m}")),
        other => other,
    }
}

//! Planning of stream–table joins: each stream row looks up the table's current row by the
//! table's primary key (INNER drops rows without a match, LEFT pads them with NULLs).
//!
//! Operators see a joined row: ROWTIME, ROWPARTITION, ROWOFFSET of the stream record, then
//! every column of the stream (pseudo columns included) as `<S>_<COL>`, then the table's as
//! `<T>_<COL>`, where `<S>`/`<T>` are the sources' aliases (or names).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brook_sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, SelectItem};
use brook_sql::{JoinKind, Query, SourceKind, Type};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::{Catalog, Source};
use crate::expr::{physical, Scope, ScopeColumn};
use crate::query::{scope_for, Projection};
use crate::schema::{Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME};
use crate::types::arrow_type;
use crate::PlanError;

#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub stream: Source,
    pub table: Source,
    pub left_outer: bool,
    /// Both inputs are tables (a primary-key join): either side's changes emit.
    pub tables: bool,
    /// The stream side's join expression, over the stream's row schema.
    pub stream_key: Arc<dyn PhysicalExpr>,
    /// The table's key column's index in the table's row schema.
    pub table_key: usize,
    pub joined_schema: SchemaRef,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub projections: Vec<Projection>,
    pub output: LogicalSchema,
}

/// A column of one side: its name, type, joined-row field and qualifiers.
type SideColumn = (String, Type, String, Vec<String>);

fn side_columns(
    source: &Source,
    alias: &str,
    catalog: &Catalog,
) -> Result<Vec<SideColumn>, PlanError> {
    let quals = vec![source.name.clone(), alias.to_string()];
    let mut cols = vec![
        (ROWTIME.to_string(), Type::Bigint),
        (ROWPARTITION.to_string(), Type::Int),
        (ROWOFFSET.to_string(), Type::Bigint),
    ];
    for c in &source.schema.columns {
        cols.push((c.name.clone(), c.ty.clone()));
    }
    let _ = catalog;
    Ok(cols
        .into_iter()
        .map(|(n, t)| {
            let field = format!("{alias}_{n}");
            (n, t, field, quals.clone())
        })
        .collect())
}

fn ident(name: &str) -> SqlExpr {
    SqlExpr::Identifier(brook_sql::sqlparser::ast::Ident::with_quote('`', name))
}

/// Plans `SELECT … FROM stream [LEFT] JOIN table ON … [WHERE …]`.
pub fn plan_join(q: &Query, catalog: &Catalog, sink: &str) -> Result<JoinPlan, PlanError> {
    if q.joins.len() != 1 {
        return Err(PlanError::Unsupported(
            "joins of more than two sources are not supported yet".into(),
        ));
    }
    if q.window.is_some() || !q.group_by.is_empty() || !q.partition_by.is_empty() {
        return Err(PlanError::Unsupported(
            "joins with windows, GROUP BY or PARTITION BY are not supported yet".into(),
        ));
    }
    let join = &q.joins[0];
    let left = catalog.source(&q.from.name.value)?.clone();
    let right = catalog.source(&join.source.name.value)?.clone();
    let la = q
        .from
        .alias
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or(left.name.clone());
    let ra = join
        .source
        .alias
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or(right.name.clone());
    match (left.kind, right.kind) {
        (SourceKind::Stream, SourceKind::Table) | (SourceKind::Table, SourceKind::Table) => {}
        (SourceKind::Table, SourceKind::Stream) => {
            return Err(PlanError::Invalid(format!(
                "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {} {} {}.",
                left.name,
                join_words(join.kind),
                right.name
            )))
        }
        _ => {
            return Err(PlanError::Unsupported(
                "stream-stream joins are not supported yet".into(),
            ))
        }
    }
    let tables = left.kind == SourceKind::Table;
    let left_outer = match join.kind {
        JoinKind::Inner => false,
        JoinKind::Left => true,
        JoinKind::Full if tables => {
            return Err(PlanError::Unsupported(
                "FULL OUTER table-table joins are not supported yet".into(),
            ))
        }
        _ => {
            return Err(PlanError::Invalid(format!(
            "Invalid join type: full-outer join not supported for stream-table join. Got {} {} {}.",
            left.name,
            join_words(join.kind),
            right.name
        )))
        }
    };
    // The joined scope and row schema.
    let lcols = side_columns(&left, &la, catalog)?;
    let rcols = side_columns(&right, &ra, catalog)?;
    let mut fields = vec![
        Field::new(ROWTIME, DataType::Int64, false),
        Field::new(ROWPARTITION, DataType::Int32, false),
        Field::new(ROWOFFSET, DataType::Int64, false),
    ];
    let mut scope = Scope {
        columns: Vec::new(),
        types: catalog,
    };
    for (n, t, f, quals) in lcols.iter().chain(rcols.iter()) {
        fields.push(Field::new(f, arrow_type(t, catalog)?, true));
        scope.columns.push(ScopeColumn {
            name: n.clone(),
            qualifiers: quals.clone(),
            ty: t.clone(),
            field: f.clone(),
        });
    }
    let joined_schema: SchemaRef = Arc::new(Schema::new(fields));
    // ON stream_expr = table_key.
    let SqlExpr::BinaryOp {
        left: a,
        op: BinaryOperator::Eq,
        right: b,
    } = strip(&join.on)
    else {
        return Err(PlanError::Invalid(format!(
            "Unsupported join expression: {}; only an equality of the two sides is supported.",
            join.on
        )));
    };
    let table_key_col = right
        .schema
        .key_columns()
        .next()
        .ok_or_else(|| PlanError::Invalid("the table has no PRIMARY KEY".into()))?
        .name
        .clone();
    let table_key_field = format!("{ra}_{table_key_col}");
    let is_table_key = |e: &SqlExpr| -> bool {
        matches!(scope.compile(e), Ok(t) if t.expr == datafusion::logical_expr::Expr::Column(datafusion::common::Column::new_unqualified(table_key_field.clone())))
    };
    let (stream_side, _) = if is_table_key(b) {
        (a.as_ref(), b.as_ref())
    } else if is_table_key(a) {
        (b.as_ref(), a.as_ref())
    } else {
        let qualify = |e: &SqlExpr| -> String {
            match e {
                SqlExpr::Identifier(i) => {
                    let owner = if left.schema.column(&i.value).is_some() {
                        &left.name
                    } else {
                        &right.name
                    };
                    format!("{owner}.{}", i.value)
                }
                SqlExpr::CompoundIdentifier(p) if p.len() == 2 => {
                    let q = &p[0].value;
                    let owner = if *q == la || *q == left.name {
                        &left.name
                    } else {
                        &right.name
                    };
                    format!("{owner}.{}", p[1].value)
                }
                other => other.to_string(),
            }
        };
        return Err(PlanError::Invalid(if tables {
            format!(
                "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {} = {}.",
                qualify(a),
                qualify(b)
            )
        } else {
            format!(
                "Invalid join condition: stream-table joins require to join on the table's primary key. Got {} = {}.",
                qualify(a),
                qualify(b)
            )
        }));
    };
    if tables {
        let left_key = left.schema.key_columns().next().map(|c| c.name.clone());
        let is_left_pk = match (strip(stream_side), &left_key) {
            (SqlExpr::Identifier(i), Some(k)) => i.value == *k,
            (SqlExpr::CompoundIdentifier(p), Some(k)) if p.len() == 2 => p[1].value == *k,
            _ => false,
        };
        if !is_left_pk {
            return Err(PlanError::Unsupported(
                "foreign-key table-table joins are not supported yet".into(),
            ));
        }
    }
    let left_scope = scope_for(&left, Some(&la), catalog);
    let left_schema = left.schema.row_schema(left.window.is_some(), catalog)?;
    let sk = left_scope.compile(stream_side)?;
    let stream_key = physical(&sk.expr, &left_schema)?;
    let stream_key_joined = scope.compile(stream_side)?;
    let table_key = right
        .schema
        .row_schema(false, catalog)?
        .index_of(&table_key_col)
        .map_err(|e| PlanError::DataFusion(e.to_string()))?;

    let filter = match &q.selection {
        None => None,
        Some(w) => Some(physical(&scope.compile(w)?.expr, &joined_schema)?),
    };
    // Projection.
    let mut items: Vec<(String, SqlExpr)> = Vec::new();
    let mut synthetic = crate::query::ColumnNames::new([&left, &right]);
    for item in &q.projection {
        match item {
            SelectItem::Wildcard(_) => {
                for (n, _, f, _) in lcols.iter().chain(rcols.iter()) {
                    if !PSEUDO.contains(&n.as_str()) {
                        items.push((f.clone(), ident_field(f)));
                    }
                }
            }
            SelectItem::QualifiedWildcard(k, _) => {
                let qn = k.to_string();
                let side = if qn == la || qn == left.name {
                    &lcols
                } else if qn == ra || qn == right.name {
                    &rcols
                } else {
                    return Err(PlanError::Invalid(format!(
                        "'{qn}' is not a valid stream/table name or alias."
                    )));
                };
                for (n, _, f, _) in side.iter() {
                    if !PSEUDO.contains(&n.as_str()) {
                        items.push((f.clone(), ident_field(f)));
                    }
                }
            }
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    SqlExpr::Identifier(i) => i.value.clone(),
                    // A column both sides have is named after its source, as ksqlDB does.
                    SqlExpr::CompoundIdentifier(p) if p.len() == 2 => {
                        let col = &p[1].value;
                        let both =
                            left.schema.column(col).is_some() && right.schema.column(col).is_some();
                        if both {
                            format!("{}_{}", p[0].value, col)
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
    // Field references produced by `*` resolve against the joined fields directly.
    let mut field_scope = Scope {
        columns: scope.columns.clone(),
        types: catalog,
    };
    for (_, t, f, _) in lcols.iter().chain(rcols.iter()) {
        field_scope.columns.push(ScopeColumn {
            name: f.clone(),
            qualifiers: Vec::new(),
            ty: t.clone(),
            field: f.clone(),
        });
    }
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for (name, e) in &items {
        let t = field_scope.compile(e)?;
        let ty = t.ty.clone().unwrap_or(Type::String);
        let is_key = keys.is_empty()
            && (t.expr == stream_key_joined.expr
                || t.expr
                    == datafusion::logical_expr::Expr::Column(
                        datafusion::common::Column::new_unqualified(table_key_field.clone()),
                    ));
        if values
            .iter()
            .chain(keys.iter())
            .any(|p: &Projection| p.column.name == *name)
        {
            return Err(PlanError::Invalid(format!(
                "Duplicate column name '{name}' in the projection; alias one of them."
            )));
        }
        if is_key {
            // The key comes from the stream side: with LEFT JOIN the table side may be NULL.
            keys.push(Projection {
                column: Column::new(name.clone(), ty, Namespace::Key),
                expr: physical(&stream_key_joined.expr, &joined_schema)?,
            });
        } else {
            values.push(Projection {
                column: Column::new(name.clone(), ty, Namespace::Value),
                expr: physical(&t.expr, &joined_schema)?,
            });
        }
    }
    if keys.is_empty() {
        return Err(PlanError::Invalid(format!(
            "The query used to build `{sink}` must include the join expression {stream_side} in its projection (eg, SELECT {stream_side}...)."
        )));
    }
    let mut projections = keys;
    projections.extend(values);
    let output = LogicalSchema {
        columns: projections.iter().map(|p| p.column.clone()).collect(),
    };
    Ok(JoinPlan {
        stream: left,
        table: right,
        left_outer,
        tables,
        stream_key,
        table_key,
        joined_schema,
        filter,
        projections,
        output,
    })
}

const PSEUDO: &[&str] = &[ROWTIME, ROWPARTITION, ROWOFFSET];

fn join_words(k: JoinKind) -> &'static str {
    match k {
        JoinKind::Inner => "[INNER] JOIN",
        JoinKind::Left => "LEFT [OUTER] JOIN",
        JoinKind::Right => "RIGHT [OUTER] JOIN",
        JoinKind::Full => "[FULL] OUTER JOIN",
    }
}

fn ident_field(f: &str) -> SqlExpr {
    ident(f)
}

fn strip(e: &SqlExpr) -> &SqlExpr {
    match e {
        SqlExpr::Nested(x) => strip(x),
        other => other,
    }
}

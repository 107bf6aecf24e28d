//! Planning of stateless queries: WHERE and projection over one source.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use brook_sql::sqlparser::ast::{Expr as SqlExpr, SelectItem};
use brook_sql::{Query, SourceKind, Type};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::{Catalog, Source};
use crate::expr::{physical, Scope, ScopeColumn};
use crate::schema::{
    Column, LogicalSchema, Namespace, ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART,
};
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
    /// Table functions (EXPLODE …), evaluated after the filter: each input row becomes as
    /// many rows as the longest result; the projections then see their elements as extra
    /// columns appended to the input row.
    pub table_functions: Vec<TableFunction>,
    /// Key columns first, then value columns.
    pub projections: Vec<Projection>,
    pub output: LogicalSchema,
    pub kind: SourceKind,
    /// The source's windowing: rows carry WINDOWSTART/WINDOWEND and so do the results.
    pub window: Option<crate::catalog::WindowType>,
    /// PARTITION BY gave every row a new key: a multi-column key of NULLs is still a key
    /// (an object of NULLs), not a missing one.
    pub rekeyed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFunctionKind {
    Explode,
    CubeExplode,
}

/// A table function call: its kind and its (array) argument.
#[derive(Debug, Clone)]
pub struct TableFunction {
    pub kind: TableFunctionKind,
    pub arg: Arc<dyn PhysicalExpr>,
    /// The column its elements appear as in the projections' input.
    pub column: String,
}

/// Replaces table function calls by references to the columns their elements will fill.
fn extract_table_functions(
    e: &SqlExpr,
    found: &mut Vec<(TableFunctionKind, SqlExpr)>,
) -> Result<SqlExpr, PlanError> {
    use brook_sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    Ok(match e {
        SqlExpr::Function(f) => {
            let name = f.name.to_string().to_uppercase();
            let kind = match name.as_str() {
                "EXPLODE" => Some(TableFunctionKind::Explode),
                "CUBE_EXPLODE" => Some(TableFunctionKind::CubeExplode),
                _ => None,
            };
            let args: Vec<SqlExpr> = match &f.args {
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            match kind {
                Some(kind) => {
                    if args.len() != 1 {
                        return Err(PlanError::Invalid(format!(
                            "Function '{}' does not accept parameters of that number ({}).",
                            name.to_lowercase(),
                            args.len()
                        )));
                    }
                    found.push((kind, args[0].clone()));
                    ident(&format!("__TF_{}", found.len() - 1))
                }
                None => {
                    let mut f = f.clone();
                    if let FunctionArguments::List(l) = &mut f.args {
                        for a in &mut l.args {
                            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                                *x = extract_table_functions(x, found)?;
                            }
                        }
                    }
                    SqlExpr::Function(f)
                }
            }
        }
        SqlExpr::BinaryOp { left, op, right } => SqlExpr::BinaryOp {
            left: Box::new(extract_table_functions(left, found)?),
            op: op.clone(),
            right: Box::new(if brook_sql::as_dereference(e).is_some() {
                (**right).clone()
            } else {
                extract_table_functions(right, found)?
            }),
        },
        SqlExpr::Nested(x) => SqlExpr::Nested(Box::new(extract_table_functions(x, found)?)),
        SqlExpr::CompoundFieldAccess { root, access_chain } => SqlExpr::CompoundFieldAccess {
            root: Box::new(extract_table_functions(root, found)?),
            access_chain: access_chain.clone(),
        },
        other => other.clone(),
    })
}

/// Whether the result is written to a sink (names are checked as ksqlDB checks sinks),
/// pushed to a client, or a pull query's answer (which, unlike a push query's rows, keeps
/// the table's key columns marked as keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Sink(&'a str),
    Transient,
    Pull,
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
            ty: if *n == ROWPARTITION {
                Type::Int
            } else {
                Type::Bigint
            },
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
pub fn plan_stateless(
    q: &Query,
    catalog: &Catalog,
    target: Target,
) -> Result<StatelessPlan, PlanError> {
    if !q.joins.is_empty() {
        return Err(PlanError::Unsupported("joins are not supported yet".into()));
    }
    if q.window.is_some() {
        return Err(PlanError::Invalid(
            "WINDOW clause requires a GROUP BY clause.".into(),
        ));
    }
    let source = catalog.source(&q.from.name.value)?;
    if source.kind == brook_sql::SourceKind::Table && source.window.is_some() {
        if let Target::Sink(_) = target {
            return Err(PlanError::Invalid(
                "KSQL does not support persistent queries on windowed tables.".into(),
            ));
        }
    }
    let alias = q.from.alias.as_ref().map(|a| a.value.as_str());
    let scope = scope_for(source, alias, catalog);
    let input_schema = source.schema.row_schema(source.window.is_some(), catalog)?;

    let filter = match &q.selection {
        None => None,
        Some(w) => {
            let t = scope.compile(w).map_err(|e| match e {
                // ksqlDB names the clause an unknown column was used in.
                PlanError::Invalid(m)
                    if m.starts_with("Column '") && m.ends_with("cannot be resolved.") =>
                {
                    PlanError::Invalid(format!("WHERE c{}", &m[1..]))
                }
                other => prefix("Error in WHERE expression: ", other),
            })?;
            if !matches!(t.ty, None | Some(Type::Boolean)) {
                return Err(PlanError::Invalid(format!(
                    "Type error in WHERE expression: Should evaluate to boolean but is {} ({}) instead.",
                    crate::expr::ksql_text(w),
                    t.ty.map(|t| crate::schema::SchemaType(&t).to_string()).unwrap_or_default()
                )));
            }
            Some(physical(&t.expr, &input_schema)?)
        }
    };

    // Expand the projection into (name, expression) pairs.
    let mut items: Vec<(String, SqlExpr, bool)> = Vec::new();
    let mut synthetic = ColumnNames::new([source]);
    let mut has_star = false;
    let quals: Vec<String> = std::iter::once(source.name.clone())
        .chain(alias.map(str::to_string))
        .collect();
    let partitioned = !q.partition_by.is_empty();
    let star_columns = |items: &mut Vec<(String, SqlExpr, bool)>| {
        // With PARTITION BY the old key columns become values, after the value columns.
        let cols: Vec<&Column> = if partitioned {
            source
                .schema
                .value_columns()
                .chain(source.schema.header_columns())
                .chain(source.schema.key_columns())
                .collect()
        } else {
            source
                .schema
                .key_columns()
                .chain(source.schema.value_columns())
                .chain(source.schema.header_columns())
                .collect()
        };
        for c in cols {
            items.push((c.name.clone(), ident(&c.name), true));
        }
    };
    for item in &q.projection {
        match item {
            SelectItem::Wildcard(_) => {
                has_star = true;
                star_columns(&mut items);
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let q = kind.to_string().trim_end_matches(".*").to_string();
                if !quals.contains(&q) {
                    return Err(PlanError::Invalid(format!(
                        "'{q}' is not a valid stream/table name or alias."
                    )));
                }
                has_star = true;
                star_columns(&mut items);
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
                let name = implicit_name(e, &mut synthetic);
                items.push((name, e.clone(), false));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((alias.value.clone(), expr.clone(), true));
            }
            other => return Err(PlanError::Unsupported(format!("select item {other}"))),
        }
    }

    // Table functions: their arguments are compiled against the input, their elements
    // become columns the projections read.
    let mut found = Vec::new();
    let mut rewritten = Vec::with_capacity(items.len());
    for (name, e, star) in items {
        let r = extract_table_functions(&e, &mut found)?;
        rewritten.push((name, r, star));
    }
    let items = rewritten;
    let mut table_functions = Vec::new();
    let mut scope = scope;
    let row_schema = input_schema.clone();
    let mut input_schema = input_schema;
    if !found.is_empty() {
        if source.kind == SourceKind::Table {
            return Err(PlanError::Invalid(
                "Table source is not supported with table functions".into(),
            ));
        }
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            input_schema.fields().iter().cloned().collect();
        let mut extra = Vec::new();
        for (i, (kind, arg)) in found.iter().enumerate() {
            let t = scope.compile(arg)?;
            let item = match (&t.ty, kind) {
                (Some(Type::Array(item)), TableFunctionKind::Explode) => (**item).clone(),
                (Some(Type::Array(item)), TableFunctionKind::CubeExplode) => {
                    Type::Array(item.clone())
                }
                (other, _) => {
                    let fname = match kind {
                        TableFunctionKind::Explode => "explode",
                        TableFunctionKind::CubeExplode => "cube_explode",
                    };
                    return Err(PlanError::Invalid(format!(
                        "Function '{fname}' does not accept parameters ({}).",
                        other
                            .as_ref()
                            .map(|t| crate::schema::SchemaType(t).to_string())
                            .unwrap_or("NULL".into())
                    )));
                }
            };
            let column = format!("__TF_{i}");
            let dt = crate::types::arrow_type(&item, catalog)?;
            fields.push(Arc::new(arrow::datatypes::Field::new(&column, dt, true)));
            table_functions.push(TableFunction {
                kind: *kind,
                arg: physical(&t.expr, &input_schema)?,
                column: column.clone(),
            });
            extra.push(ScopeColumn {
                name: column.clone(),
                qualifiers: Vec::new(),
                ty: item,
                field: column,
            });
        }
        scope.columns.extend(extra);
        input_schema = Arc::new(arrow::datatypes::Schema::new(fields));
    }

    // Compile every item once.
    let mut compiled: Vec<(String, SqlExpr, crate::expr::Typed)> = Vec::new();
    let mut from_star: Vec<bool> = Vec::new();
    for (name, e, star) in items {
        from_star.push(star);
        if let Target::Sink(_) = target {
            if RESERVED.contains(&name.as_str()) {
                return Err(PlanError::Invalid(format!(
                    "Reserved column name in select: `{name}`. Please remove or alias the column."
                )));
            }
        }
        let t = scope.compile(&e).map_err(|err| match err {
            // ksqlDB names the clause an unknown column was used in.
            PlanError::Invalid(m)
                if m.starts_with("Column '") && m.ends_with("cannot be resolved.") =>
            {
                PlanError::Invalid(format!("SELECT c{}", &m[1..]))
            }
            // An unsupported CAST is found by ksqlDB's code generation, which names the
            // clause it was compiling.
            PlanError::Invalid(m) if m.starts_with("Cast of ") => {
                PlanError::Invalid(format!("Invalid Select: {m}"))
            }
            other => other,
        })?;
        if t.ty.is_none() {
            return Err(PlanError::Invalid(
                "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR).".into(),
            ));
        }
        compiled.push((name, e, t));
    }

    let mut keys: Vec<Projection> = Vec::new();
    let mut values: Vec<Projection> = Vec::new();
    let mut key_aliases: Vec<(String, Vec<String>)> = Vec::new();
    let push = |list: &mut Vec<Projection>,
                name: String,
                t: &crate::expr::Typed,
                ns: Namespace|
     -> Result<(), PlanError> {
        let ty = t.ty.clone().unwrap_or(Type::String);
        let phys = physical(&t.expr, &input_schema)?;
        list.push(Projection {
            column: Column::new(name, ty, ns),
            expr: phys,
        });
        Ok(())
    };
    if q.partition_by
        .iter()
        .any(|e| matches!(e, SqlExpr::Tuple(v) if v.is_empty()))
    {
        return Err(PlanError::Invalid(
            "PARTITION BY requires at least one expression".into(),
        ));
    }
    let partition_null = q.partition_by.len() == 1
        && matches!(&q.partition_by[0], SqlExpr::Value(v) if v.value == brook_sql::sqlparser::ast::Value::Null);
    if partitioned && !partition_null {
        let mut used = vec![false; compiled.len()];
        let mut missing = Vec::new();
        for p in &q.partition_by {
            if let SqlExpr::Identifier(id) = p {
                if scope.compile(p).is_err() {
                    return Err(PlanError::Invalid(format!(
                        "PARTITION BY column '{}' cannot be resolved. '{}' must be a column in the source schema since PARTITION BY is applied on the input.",
                        id.value, id.value
                    )));
                }
            }
            let pt = scope.compile(p)?;
            let matching: Vec<usize> = compiled
                .iter()
                .enumerate()
                .filter(|(i, (_, e, t))| {
                    !used[*i] && (t.expr == pt.expr || e.to_string() == p.to_string())
                })
                .map(|(i, _)| i)
                .collect();
            let explicit: Vec<usize> = matching
                .iter()
                .copied()
                .filter(|i| !from_star[*i])
                .collect();
            if has_star && explicit.is_empty() {
                // `*` does not name an expression: a bare column keeps its name (and leaves
                // the values), anything else gets a name of its own.
                let name = implicit_name(p, &mut synthetic);
                if let Some(&i) = matching.iter().find(|&&i| compiled[i].0 == name) {
                    used[i] = true;
                }
                push(&mut keys, name, &pt, Namespace::Key)?;
                continue;
            }
            let matching = if has_star { explicit } else { matching };
            match matching.first() {
                Some(&i) => {
                    used[i] = true;
                    let (name, _, t) = &compiled[i];
                    let dup: Vec<String> = compiled
                        .iter()
                        .enumerate()
                        .filter(|(j, (_, _, t2))| *j != i && t2.expr == t.expr && !has_star)
                        .map(|(_, (n, _, _))| n.clone())
                        .collect();
                    if !dup.is_empty() {
                        if let SqlExpr::Identifier(id) = p {
                            return Err(PlanError::Invalid(format!(
                                "The projection contains a key column (`{}`) more than once, aliased as: {} and {}.",
                                id.value,
                                name,
                                dup.join(" and ")
                            )));
                        }
                    }
                    push(&mut keys, name.clone(), t, Namespace::Key)?;
                }
                None => missing.push(qualify(p, &source.name).to_string()),
            }
        }
        if !missing.is_empty() {
            if let Target::Sink(sink) = target {
                // ksqlDB names every partitioning expression, not only the missing ones.
                let mut all: Vec<String> = q
                    .partition_by
                    .iter()
                    .map(|p| qualify(p, &source.name).to_string())
                    .collect();
                let example = all.join(", ");
                let (what, list) = if all.len() == 1 {
                    ("expression", all[0].clone())
                } else {
                    let last = all.pop().unwrap_or_default();
                    ("expressions", format!("{} and {last}", all.join(", ")))
                };
                return Err(PlanError::Invalid(format!(
                    "The query used to build `{sink}` must include the partitioning {what} {list} in its projection (eg, SELECT {example}...)."
                )));
            }
        }
        for (i, (name, _, t)) in compiled.iter().enumerate() {
            if !used[i] {
                if keys
                    .iter()
                    .chain(values.iter())
                    .any(|p| p.column.name == *name)
                {
                    continue;
                }
                push(&mut values, name.clone(), t, Namespace::Value)?;
            }
        }
    } else {
        for (name, e, t) in &compiled {
            // A bare reference to a key column keeps it a key (under its alias).
            let key_ref = match e {
                SqlExpr::Identifier(i) => Some(i.value.clone()),
                SqlExpr::CompoundIdentifier(p) if p.len() == 2 => Some(p[1].value.clone()),
                _ => None,
            }
            .filter(|n| {
                source
                    .schema
                    .column(n)
                    .is_some_and(|c| c.namespace == Namespace::Key)
            });
            let is_key = key_ref.is_some() && target != Target::Transient && !partition_null;
            if let Some(k) = &key_ref {
                match key_aliases.iter_mut().find(|(kk, _)| kk == k) {
                    Some((_, names)) => names.push(name.clone()),
                    None => key_aliases.push((k.clone(), vec![name.clone()])),
                }
            }
            if keys
                .iter()
                .chain(values.iter())
                .any(|p| p.column.name == *name)
            {
                return Err(PlanError::Invalid(format!(
                    "Duplicate column name '{name}' in the projection; alias one of them."
                )));
            }
            if is_key && !keys.iter().any(|k| k.column.name == *name) {
                push(&mut keys, name.clone(), t, Namespace::Key)?;
            } else {
                push(&mut values, name.clone(), t, Namespace::Value)?;
            }
        }
    }

    if let Target::Sink(sink) = target {
        if !partitioned {
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
        }
        if values.is_empty() {
            return Err(PlanError::Invalid(
                "The projection contains no value columns.".into(),
            ));
        }
    }
    let mut projections = keys;
    projections.extend(values);
    if target == Target::Pull {
        // A pull query's columns come in the order selected, keys wherever they are.
        let at = |n: &str| {
            compiled
                .iter()
                .position(|(c, _, _)| c == n)
                .unwrap_or(usize::MAX)
        };
        projections.sort_by_key(|p| at(&p.column.name));
    }
    let output = LogicalSchema {
        columns: projections.iter().map(|p| p.column.clone()).collect(),
    };
    Ok(StatelessPlan {
        source: source.name.clone(),
        input_schema: row_schema,
        filter,
        table_functions,
        projections,
        output,
        kind: source.kind,
        window: source.window,
        rekeyed: partitioned && !partition_null,
    })
}

/// The name ksqlDB gives an unaliased expression: a column's name, a struct field's name,
/// or `KSQL_COL_n`.
fn implicit_name(e: &SqlExpr, synthetic: &mut ColumnNames) -> String {
    match e {
        SqlExpr::Identifier(i) => i.value.clone(),
        SqlExpr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()).unwrap_or_default(),
        _ => match brook_sql::as_dereference(e) {
            Some((_, f)) => f.value.clone(),
            None => synthetic.next_name(),
        },
    }
}

/// Names for unaliased expressions, `KSQL_COL_0`, `KSQL_COL_1` …, skipping the names the
/// sources' columns already have, as ksqlDB's alias generator does.
pub(crate) struct ColumnNames {
    next: usize,
    taken: std::collections::HashSet<String>,
}

impl ColumnNames {
    pub(crate) fn new<'a>(sources: impl IntoIterator<Item = &'a crate::catalog::Source>) -> Self {
        ColumnNames {
            next: 0,
            taken: sources
                .into_iter()
                .flat_map(|s| s.schema.columns.iter().map(|c| c.name.clone()))
                .collect(),
        }
    }

    pub(crate) fn next_name(&mut self) -> String {
        loop {
            let n = format!("KSQL_COL_{}", self.next);
            self.next += 1;
            if !self.taken.contains(&n) {
                return n;
            }
        }
    }
}

/// Qualifies bare column names with the source, as ksqlDB prints expressions in errors.
fn qualify(e: &SqlExpr, source: &str) -> SqlExpr {
    use brook_sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments, Ident};
    match e {
        SqlExpr::Identifier(i) => SqlExpr::CompoundIdentifier(vec![Ident::new(source), i.clone()]),
        SqlExpr::BinaryOp { left, op, right } if brook_sql::as_dereference(e).is_none() => {
            SqlExpr::BinaryOp {
                left: Box::new(qualify(left, source)),
                op: op.clone(),
                right: Box::new(qualify(right, source)),
            }
        }
        SqlExpr::BinaryOp { left, op, right } => SqlExpr::BinaryOp {
            left: Box::new(qualify(left, source)),
            op: op.clone(),
            right: right.clone(),
        },
        SqlExpr::Nested(x) => SqlExpr::Nested(Box::new(qualify(x, source))),
        SqlExpr::Function(f) => {
            let mut f = f.clone();
            if let FunctionArguments::List(l) = &mut f.args {
                for a in &mut l.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        *x = qualify(x, source);
                    }
                }
            }
            SqlExpr::Function(f)
        }
        other => other.clone(),
    }
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

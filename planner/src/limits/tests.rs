//! Planning stays linear in the statement and within the stack: shapes that used to copy
//! an operand per level, expressions as deep as the parser allows, and types made of types.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use brook_sql::Type;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;

use super::*;
use crate::catalog::Catalog;
use crate::expr::{physical, Scope, ScopeColumn, Typed};
use crate::types::{arrow_type, NoTypes};

fn columns() -> Vec<(&'static str, Type, ArrayRef)> {
    vec![
        (
            "A",
            Type::Int,
            Arc::new(Int32Array::from(vec![Some(1), None])),
        ),
        (
            "S",
            Type::String,
            Arc::new(StringArray::from(vec![Some("x"), None])),
        ),
    ]
}

fn scope(cols: &[(&'static str, Type, ArrayRef)]) -> Scope<'static> {
    Scope {
        columns: cols
            .iter()
            .map(|(n, t, _)| ScopeColumn {
                name: n.to_string(),
                qualifiers: vec![],
                ty: t.clone(),
                field: n.to_string(),
            })
            .collect(),
        types: &NoTypes,
    }
}

/// Compiles `sql`: the result and the compile steps it took.
fn compile_counted(sql: &str) -> (Typed, usize) {
    let e = brook_sql::parse_expr(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let cols = columns();
    let outer = CompileStep::take().expect("a budget");
    let t = scope(&cols)
        .compile(&e)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let left = COMPILE_STEPS.with(|s| s.get()).unwrap_or(0);
    drop(outer);
    (t, MAX_COMPILE_STEPS - left)
}

fn nodes(e: &Expr) -> usize {
    let mut n = 0;
    let _ = e.apply(|_| {
        n += 1;
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// Evaluates a compiled expression on the two-row input, as text.
fn evaluate(t: &Typed) -> Vec<String> {
    let cols = columns();
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, _)| Field::new(*n, arrow_type(t, &NoTypes).expect("type"), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), cols.iter().map(|c| c.2.clone()).collect())
        .expect("batch");
    let out = physical(&t.expr, &schema)
        .expect("plans")
        .evaluate(&batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .expect("evaluates");
    let options = FormatOptions::default().with_null("NULL");
    let f = ArrayFormatter::try_new(out.as_ref(), &options).expect("formatter");
    (0..out.len()).map(|i| f.value(i).to_string()).collect()
}

fn nest(n: usize, seed: &str, wrap: impl Fn(&str) -> String) -> String {
    (0..n).fold(seed.to_string(), |e, _| wrap(&e))
}

/// Each shape copied an operand per level (or compiled it again), so 20 levels made a
/// plan, or took steps, in the millions. Now both grow with the text, and the values are
/// those of the copying plans.
#[test]
fn nested_shapes_plan_in_linear_size() {
    let n = 20;
    let array_type = |k: usize| format!("{}INT{}", "ARRAY<".repeat(k), ">".repeat(k));
    let cases: Vec<(&str, String, [&str; 2])> = vec![
        (
            "comparisons",
            format!("A = 1{}", " = (A = 1)".repeat(n)),
            // NULL compares false: false = false is true, true = false is false, …
            ["true", "false"],
        ),
        (
            "BETWEEN",
            format!("A BETWEEN 1 AND 2{}", " BETWEEN FALSE AND TRUE".repeat(n)),
            ["true", "NULL"],
        ),
        (
            "NOT BETWEEN with casts",
            nest(n, "A", |e| {
                format!("CASE WHEN {e} NOT BETWEEN 0.5 AND 0.75 THEN 1 ELSE 0 END")
            }),
            // NULL is not NOT BETWEEN: the first level gives 0, the next ones 1.
            ["1", "1"],
        ),
        (
            "COALESCE",
            nest(n, "A", |e| format!("COALESCE({e}, 7)")),
            ["1", "7"],
        ),
        (
            "NULLIF",
            nest(n, "A", |e| format!("NULLIF({e}, 2)")),
            ["1", "NULL"],
        ),
        (
            "CASE operand",
            nest(n, "A", |e| {
                format!("CASE {e} WHEN 1 THEN 1 WHEN 2.5 THEN 3 ELSE 0 END")
            }),
            ["1", "0"],
        ),
        (
            "constructors",
            (1..=n).fold("ARRAY[1]".to_string(), |e, k| {
                format!("ARRAY[CAST(NULL AS {}), {e}]", array_type(k))
            }),
            ["", ""],
        ),
        (
            "lambda arithmetic",
            format!(
                "TRANSFORM(ARRAY[A], x => {})",
                nest(n, "x", |e| format!("x + ({e})"))
            ),
            ["[21]", "NULL"],
        ),
    ];
    for (name, sql, want) in cases {
        let (t, steps) = compile_counted(&sql);
        let size = nodes(&t.expr);
        assert!(
            size < 40 * n && steps < 40 * n,
            "{name}: {size} nodes, {steps} steps"
        );
        let got = evaluate(&t);
        if !want[0].is_empty() {
            assert_eq!(got, want, "{name}");
        }
    }
}

/// Runs `f` on a thread with a tokio worker's stack, where an overflow would abort.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("no panic")
}

/// Expressions as deep as the parser accepts compile, plan and evaluate on a worker's
/// stack (a debug build takes tens of KiB a level in each).
#[test]
fn deepest_expressions_run_on_a_worker_stack() {
    let depth = brook_sql::limits::MAX_NESTING_DEPTH;
    let shapes = [
        vec!["A"; depth].join(" + "),
        vec!["A * 1.5"; depth / 2].join(" - "),
        (0..depth - 1)
            .map(|i| format!("A = {i}"))
            .collect::<Vec<_>>()
            .join(" OR "),
        nest(45, "A", |e| format!("ABS({e})")),
        nest(30, "A", |e| format!("CASE WHEN {e} > 0 THEN A END")),
        nest(12, "ARRAY[A]", |e| format!("TRANSFORM({e}, x => x + 1)")),
        format!("S{}", " + S".repeat(depth - 1)),
    ];
    for sql in shapes {
        let rows = on_worker_stack(move || {
            let (t, _) = compile_counted(&sql);
            evaluate(&t).len()
        });
        assert_eq!(rows, 2);
    }
}

/// Deep physical expressions are guarded every [`GUARD_EVERY`] levels, never at the root.
#[test]
fn deep_plans_grow_the_stack_where_they_must() {
    let (t, _) = compile_counted(&vec!["A"; 100].join(" + "));
    let cols = columns();
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, _)| Field::new(*n, arrow_type(t, &NoTypes).expect("type"), true))
            .collect::<Vec<_>>(),
    ));
    let p = physical(&t.expr, &schema).expect("plans");
    assert!(p.downcast_ref::<GrowStack>().is_none());
    let mut guards = 0;
    let mut stack = vec![p];
    while let Some(e) = stack.pop() {
        guards += usize::from(e.downcast_ref::<GrowStack>().is_some());
        stack.extend(e.children().into_iter().cloned());
    }
    assert_eq!(guards, 99 / GUARD_EVERY);
    assert_eq!(evaluate(&t), ["100", "NULL"]);
}

#[test]
fn compile_budget_is_per_expression() {
    let outer = CompileStep::take().expect("first step");
    let mut held = Vec::new();
    for _ in 0..MAX_COMPILE_STEPS {
        held.push(CompileStep::take().expect("within budget"));
    }
    assert_eq!(
        CompileStep::take().err(),
        Some(PlanError::TooComplex {
            limit: MAX_COMPILE_STEPS
        })
    );
    drop(held);
    drop(outer);
    // The next expression has a budget of its own.
    assert!(CompileStep::take().is_ok());
}

#[test]
fn batch_budget_stops_a_batch() {
    let mut b = BatchBudget::new("LPAD");
    assert!(b.take(MAX_BATCH_BYTES).is_ok());
    let err = b.take(1).unwrap_err().to_string();
    assert!(err.contains("LPAD: the results for one batch"), "{err}");
}

fn struct_of(t: &str) -> Type {
    brook_sql::parse_type(&format!("STRUCT<a {t}, b {t}>")).expect("type")
}

/// `CREATE TYPE t1 AS STRUCT<a t0, b t0>` and so on doubles with every type: it stops at
/// the limit, without making the large type first.
#[test]
fn types_made_of_types_stop_at_the_limit() {
    let mut catalog = Catalog::default();
    catalog.types.insert("T0".into(), Type::Int);
    let mut refused = None;
    for k in 1..40 {
        match catalog.resolve_type(&struct_of(&format!("T{}", k - 1))) {
            Ok(t) => {
                catalog.types.insert(format!("T{k}"), t);
            }
            Err(e) => {
                refused = Some((k, e));
                break;
            }
        }
    }
    let Some((k, PlanError::TypeTooLarge { nodes, limit, .. })) = refused else {
        panic!("not refused: {refused:?}")
    };
    // 2^k leaves and 2^k - 1 structs: T12 has 8191 parts, T13 would have 16383.
    assert_eq!(k, 13);
    assert_eq!(limit, MAX_TYPE_NODES);
    assert!(
        nodes > MAX_TYPE_NODES && nodes < 2 * MAX_TYPE_NODES,
        "{nodes}"
    );

    // Depth adds up the same way.
    catalog.types.insert(
        "DEEP".into(),
        brook_sql::parse_type(&format!("{}INT{}", "ARRAY<".repeat(30), ">".repeat(30)))
            .expect("type"),
    );
    let err = catalog
        .resolve_type(&brook_sql::parse_type("ARRAY<ARRAY<ARRAY<DEEP>>>").expect("type"))
        .unwrap_err();
    assert!(
        matches!(err, PlanError::TypeTooDeep { limit: 32, .. }),
        "{err}"
    );
    assert!(catalog
        .resolve_type(&brook_sql::parse_type("ARRAY<ARRAY<DEEP>>").expect("type"))
        .is_ok());

    // Many columns of a large type: the statement's limit.
    let _statement = StatementBudget::start();
    let elements: Vec<brook_sql::TableElement> = (0..40)
        .map(|i| brook_sql::TableElement {
            name: brook_sql::sqlparser::ast::Ident::new(format!("C{i}")),
            ty: Type::Custom(brook_sql::sqlparser::ast::Ident::new("T12")),
            constraint: None,
        })
        .collect();
    let err =
        crate::catalog::schema_from_elements(brook_sql::SourceKind::Stream, &elements, &catalog)
            .unwrap_err();
    assert!(
        matches!(
            err,
            PlanError::StatementTypesTooLarge {
                limit: MAX_STATEMENT_TYPE_NODES
            }
        ),
        "{err}"
    );
}

//! The bound itself, and hostile statements: each is refused with the limit it passes, on
//! a 2 MiB stack (a tokio worker's), never by a stack overflow.

use super::*;

fn depth(sql: &str) -> Result<usize, ParseError> {
    let tokens = crate::parser::tokenize(sql)?;
    scan(&tokens).map(|s| s.depth)
}

/// The bound is the real depth for the usual shapes, and counts the statement's own
/// keywords (SELECT, FROM) as one level each.
#[test]
fn bound_follows_the_shape() {
    for (expr, want) in [
        ("a", 0),
        ("a + b", 1),
        ("a + b + c + d", 3),
        ("f(g(x))", 2),
        ("x = 1 OR x = 2 OR x = 3", 3),
        ("a = 1 AND b = 2 OR c = 3", 3),
        ("(a + b) * c", 3),
        ("CASE WHEN a = 1 THEN b + c WHEN d THEN e ELSE f END", 2),
        ("s->a->b", 2),
        ("a[1][2]", 3),
        ("x IN (1, 2, 3, 4, 5, 6, 7, 8)", 2),
        ("CAST(x AS ARRAY<MAP<STRING, INT>>)", 6),
        ("NOT a", 1),
    ] {
        assert_eq!(depth(expr).unwrap(), want, "{expr}");
    }
    assert_eq!(depth("SELECT a + b FROM s;").unwrap(), 3);
}

/// Long flat lists are not deep.
#[test]
fn lists_are_not_deep() {
    let items = vec!["1"; 10_000].join(", ");
    assert!(depth(&format!("SELECT x IN ({items}) FROM s;")).unwrap() < 10);
    let whens = "WHEN a = 1 THEN 2 ".repeat(5_000);
    assert!(depth(&format!("SELECT CASE {whens} END FROM s;")).unwrap() < 10);
}

/// Each statement of a script has its own bound.
#[test]
fn statements_are_scanned_apart() {
    let chain = vec!["a"; 100].join(" + ");
    let script = format!("SELECT {chain} FROM s; SELECT {chain} FROM s;");
    assert!(depth(&script).unwrap() < MAX_NESTING_DEPTH);
}

#[test]
fn too_deep_names_the_limit_and_the_token() {
    let chain = vec!["a"; MAX_NESTING_DEPTH + 10].join("\n+ ");
    let err = depth(&format!("SELECT {chain} FROM s;")).unwrap_err();
    assert_eq!(
        err.kind,
        crate::ParseErrorKind::NestedTooDeeply {
            limit: MAX_NESTING_DEPTH
        }
    );
    assert!(err.message.contains("128"), "{err}");
    // `SELECT` counts one level: the first `+` too many starts line 129.
    assert_eq!((err.line, err.column), (MAX_NESTING_DEPTH as u64 + 1, 1));
}

#[test]
fn too_many_tokens() {
    let items = vec!["1"; MAX_STATEMENT_TOKENS].join(", ");
    let err = depth(&format!("SELECT {items} FROM s;")).unwrap_err();
    assert_eq!(
        err.kind,
        crate::ParseErrorKind::TooLarge {
            limit: MAX_STATEMENT_TOKENS
        }
    );
}

/// Unbalanced brackets never lower the bound.
#[test]
fn unbalanced_brackets_count() {
    let deep = format!("{}a{}", "(".repeat(200), "]".repeat(200));
    assert!(depth(&deep).is_err());
    let deep = format!("{}a", "END + ".repeat(200));
    assert!(depth(&deep).is_err());
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

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// Statements nested far past every limit, each well under the REST API's 2 MiB: the error
/// names the limit; nothing deeper than the limit is ever built.
#[test]
fn hostile_statements_are_refused_with_the_limit() {
    let n = 100_000;
    let cases: Vec<(&str, String)> = vec![
        (
            "nested ARRAY<",
            format!(
                "CREATE STREAM s (a {}) WITH (kafka_topic='t');",
                nested("ARRAY<", "INT", ">", n)
            ),
        ),
        (
            "long a+a+…",
            format!("SELECT {} FROM s;", vec!["a"; 2 * n].join("+")),
        ),
        ("long ->", format!("SELECT s{} FROM s;", "->x".repeat(n))),
        ("long [i]", format!("SELECT s{} FROM s;", "[1]".repeat(n))),
        (
            "parentheses",
            format!("SELECT {} FROM s;", nested("(", "1", ")", n)),
        ),
        ("unclosed parentheses", format!("SELECT {}", "(".repeat(n))),
        (
            "NOT NOT …",
            format!("SELECT {}TRUE FROM s;", "NOT ".repeat(n)),
        ),
        ("- - …", format!("SELECT {}1 FROM s;", "- ".repeat(n))),
        (
            "nested CASE",
            format!(
                "SELECT {} FROM s;",
                nested("CASE WHEN ", "TRUE", " THEN 1 END", n)
            ),
        ),
        (
            "nested ARRAY[",
            format!("SELECT {} FROM s;", nested("ARRAY[", "1", "]", n)),
        ),
        (
            "nested lambdas",
            format!(
                "SELECT {} FROM s;",
                nested("TRANSFORM(a, x => ", "x", ")", n)
            ),
        ),
        (
            ":: type",
            format!("SELECT x::{} FROM s;", nested("ARRAY<", "INT", ">", n)),
        ),
        (
            "TRY_CAST type",
            format!(
                "SELECT TRY_CAST(x AS {}) FROM s;",
                nested("ARRAY<", "INT", ">", n)
            ),
        ),
        (
            "CAST type",
            format!(
                "SELECT CAST(x AS {}) FROM s;",
                nested("ARRAY<", "INT", ">", n)
            ),
        ),
        (
            "UNION chain",
            format!("SELECT (SELECT 1{}) FROM s;", " UNION SELECT 1".repeat(n)),
        ),
        (
            "TABLE( types",
            format!("SELECT {} FROM s;", nested("TABLE(a ", "INT", ")", n)),
        ),
    ];
    for (name, sql) in cases {
        let err = on_worker_stack(move || crate::parse(&sql)).expect_err(name);
        assert_eq!(
            err.kind,
            crate::ParseErrorKind::NestedTooDeeply {
                limit: MAX_NESTING_DEPTH
            },
            "{name}: {err}"
        );
    }
}

/// Types have a limit of their own, below the statement's.
#[test]
fn types_nested_past_their_limit() {
    let ty = |n| nested("STRUCT<a ", "INT", ">", n);
    let create = |n| format!("CREATE STREAM s (a {}) WITH (kafka_topic='t');", ty(n));
    assert!(crate::parse(&create(MAX_TYPE_DEPTH)).is_ok());
    let err = crate::parse(&create(MAX_TYPE_DEPTH + 1)).unwrap_err();
    assert_eq!(
        err.kind,
        crate::ParseErrorKind::NestedTooDeeply {
            limit: MAX_TYPE_DEPTH
        }
    );
    assert!(
        err.message.contains("32 levels of ARRAY, MAP or STRUCT"),
        "{err}"
    );
    // The innermost STRUCT, the 33rd, is the one named.
    let column = 1 + "CREATE STREAM s (a ".len() + MAX_TYPE_DEPTH * "STRUCT<a ".len();
    assert_eq!((err.line, err.column), (1, column as u64));
    for sql in [
        format!("SELECT CAST(x AS {}) FROM s;", ty(MAX_TYPE_DEPTH + 1)),
        format!("CREATE TYPE t AS {};", ty(MAX_TYPE_DEPTH + 1)),
    ] {
        let err = crate::parse(&sql).unwrap_err();
        assert!(
            matches!(
                err.kind,
                crate::ParseErrorKind::NestedTooDeeply { limit: 32 }
            ),
            "{err}"
        );
    }
    assert!(crate::parse_type(&ty(MAX_TYPE_DEPTH + 1)).is_err());
}

/// sqlparser's own limit on nested parentheses and calls, shallower than the bound.
#[test]
fn parser_recursion_limit_is_named() {
    let sql = format!("SELECT {} FROM s;", nested("(", "1", ")", 60));
    let err = crate::parse(&sql).unwrap_err();
    assert_eq!(
        err.kind,
        crate::ParseErrorKind::NestedTooDeeply {
            limit: MAX_PARSER_RECURSION
        }
    );
    assert!(err.message.contains("more than 50 levels"), "{err}");
    assert_eq!(err.line, 1);
}

/// At the limit a statement parses, and the tree it gives can be copied, shown and dropped
/// on a worker's stack; one level more is refused.
#[test]
fn at_the_limit_everything_works() {
    // `SELECT` and `FROM` are a level each.
    let chain = |pluses: usize| format!("SELECT {} FROM s;", vec!["a"; pluses + 1].join(" + "));
    let deepest = chain(MAX_NESTING_DEPTH - 2);
    on_worker_stack(move || {
        let parsed = crate::parse(&deepest).expect("parses at the limit");
        let copy = parsed.clone();
        assert_eq!(
            copy[0].statement.to_string(),
            parsed[0].statement.to_string()
        );
    });
    let err = crate::parse(&chain(MAX_NESTING_DEPTH - 1)).unwrap_err();
    assert!(matches!(
        err.kind,
        crate::ParseErrorKind::NestedTooDeeply { .. }
    ));
    // sqlparser's data-type parser recurses without growing the stack: a type as deep as
    // the bound allows still parses on a worker's stack.
    let cast = format!("SELECT x::{} FROM s;", nested("ARRAY<", "INT", ">", 120));
    on_worker_stack(move || crate::parse(&cast).map(|p| p.len())).expect("parses");
}

/// Nested calls parse in linear time: sqlparser parsed each argument twice when the
/// dialect had named arguments, doubling with every level (`f(f(f(…)))` 40 deep took
/// hours). The tree is the one `name := value` always gave: an assignment expression.
#[test]
fn nested_calls_parse_once() {
    let sql = format!("SELECT {} FROM s;", nested("ABS(", "1", ")", 45));
    let parsed = on_worker_stack(move || crate::parse(&sql)).expect("parses");
    assert_eq!(parsed.len(), 1);
    let e = crate::parse_expr("STRUCT(a := MAP('k' := 1))").expect("parses");
    let text = e.to_string();
    assert_eq!(text, "STRUCT(A := MAP('k' := 1))");
    let sqlparser::ast::Expr::Function(f) = e else {
        panic!("not a call: {text}")
    };
    let sqlparser::ast::FunctionArguments::List(args) = f.args else {
        panic!("no arguments: {text}")
    };
    assert!(matches!(
        &args.args[0],
        sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(
            sqlparser::ast::Expr::BinaryOp {
                op: sqlparser::ast::BinaryOperator::Assignment,
                ..
            }
        ))
    ));
}

/// A script of many statements on one line is sliced into statements in linear time
/// (each statement's text was found by walking the line from its start).
#[test]
fn many_statements_on_one_line() {
    let n = 100_000;
    let script = "SHOW STREAMS;".repeat(n);
    let parsed = crate::parse(&script).expect("parses");
    assert_eq!(parsed.len(), n);
    let last = &parsed[n - 1];
    assert_eq!(
        (last.text.as_str(), last.line, last.column),
        ("SHOW STREAMS", 1, 1 + 13 * (n as u64 - 1))
    );
    // Positions on later lines, and characters wider than a byte, still slice right.
    let parsed = crate::parse("SHOW STREAMS;\n  SELECT 'é' FROM s; LIST TOPICS;").expect("parses");
    let texts: Vec<&str> = parsed.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["SHOW STREAMS", "SELECT 'é' FROM s", "LIST TOPICS"]);
}

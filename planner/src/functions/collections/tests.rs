//! Compiles collection functions and lambdas against a three-row input and checks each
//! row's value, NULL handling included.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int32Builder, Int64Array, ListArray, MapBuilder, MapFieldNames,
    RecordBatch, StringBuilder,
};
use arrow::datatypes::{Field, Int32Type, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use brook_sql::Type;

use crate::expr::{physical, Scope, ScopeColumn};
use crate::types::{arrow_type, NoTypes};

/// One map row's entries, or `None` for a NULL map.
type MapRow<'a> = Option<&'a [(&'a str, Option<i32>)]>;

fn int_map(rows: &[MapRow]) -> ArrayRef {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), Int32Builder::new());
    for r in rows {
        match r {
            Some(entries) => {
                for (k, v) in entries.iter() {
                    b.keys().append_value(k);
                    b.values().append_option(*v);
                }
                b.append(true).expect("map row");
            }
            None => b.append(false).expect("null map row"),
        }
    }
    Arc::new(b.finish())
}

fn columns() -> Vec<(&'static str, Type, ArrayRef)> {
    let int = || Box::new(Type::Int);
    vec![
        (
            "NUMS",
            Type::Array(int()),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(3), Some(6)]),
                Some(vec![Some(5), None]),
                None,
            ])),
        ),
        (
            "M",
            Type::Map(Box::new(Type::String), int()),
            int_map(&[
                Some(&[("a", Some(15)), ("abc", Some(7))]),
                Some(&[("abcd", None), ("abcde", Some(25))]),
                None,
            ]),
        ),
        ("A", Type::Int, Arc::new(Int32Array::from(vec![30, 1, 2]))),
        (
            "STATE",
            Type::Bigint,
            Arc::new(Int64Array::from(vec![None, Some(1), Some(2)])),
        ),
    ]
}

/// Evaluates `sql` on the input: each row's value as text, and the ksqlDB type.
fn eval(sql: &str) -> Result<(Vec<String>, Type), String> {
    let cols = columns();
    let scope = Scope {
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
    };
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, _)| Field::new(*n, arrow_type(t, &NoTypes).expect("type"), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), cols.iter().map(|c| c.2.clone()).collect())
        .expect("batch");
    let e = brook_sql::parse_expr(sql).map_err(|e| e.to_string())?;
    let t = scope.compile(&e).map_err(|e| e.to_string())?;
    let ty = t.ty.clone().expect("typed result");
    let out = physical(&t.expr, &schema)
        .map_err(|e| e.to_string())?
        .evaluate(&batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| e.to_string())?;
    assert_eq!(
        out.data_type(),
        &arrow_type(&ty, &NoTypes).expect("type"),
        "{sql}: the value's type is the ksqlDB type's"
    );
    let options = FormatOptions::default().with_null("NULL");
    let f = ArrayFormatter::try_new(out.as_ref(), &options).map_err(|e| e.to_string())?;
    let rows = (0..out.len()).map(|i| f.value(i).to_string()).collect();
    Ok((rows, ty))
}

#[test]
fn functions_and_lambdas_per_row() {
    let cases: &[(&str, [&str; 3])] = &[
        // Arithmetic on a NULL element fails the lambda, so the whole value is NULL.
        ("TRANSFORM(NUMS, x => x + 5)", ["[8, 11]", "NULL", "NULL"]),
        // Outer columns are visible inside the body.
        ("TRANSFORM(NUMS, x => x * A)", ["[90, 180]", "NULL", "NULL"]),
        (
            "TRANSFORM(NUMS, x => x IS NULL)",
            ["[false, false]", "[false, true]", "NULL"],
        ),
        ("FILTER(NUMS, x => x > 4)", ["[6]", "[5]", "NULL"]),
        ("REDUCE(NUMS, 2, (s, x) => s + x)", ["11", "NULL", "2"]),
        // A NULL state gives NULL; a NULL array gives the state.
        (
            "REDUCE(NUMS, STATE, (s, x) => s + x)",
            ["NULL", "NULL", "2"],
        ),
        ("REDUCE(M, 0, (s, k, v) => s + v)", ["22", "NULL", "0"]),
        (
            "REDUCE(FILTER(M, (k, v) => LEN(k) * 5 > 15 AND v % 5 = 0), 0, (s, k, v) => s + 1)",
            ["0", "0", "0"],
        ),
        (
            "MAP_KEYS(TRANSFORM(M, (k, v) => UCASE(k), (k, v) => LEN(k)))",
            ["[A, ABC]", "[ABCD, ABCDE]", "NULL"],
        ),
        // Nested lambdas see the outer lambda's parameters.
        (
            "TRANSFORM(NUMS, x => REDUCE(ARRAY[1, 2], x, (s, y) => s * y))",
            ["[6, 12]", "[10, NULL]", "NULL"],
        ),
        ("ARRAY_LENGTH(NUMS)", ["2", "2", "NULL"]),
        ("ARRAY_MAX(NUMS)", ["6", "5", "NULL"]),
        ("ARRAY_SORT(NUMS, 'DESC')", ["[6, 3]", "[5, NULL]", "NULL"]),
        (
            "ARRAY_CONTAINS(NUMS, CAST(NULL AS INT))",
            ["false", "true", "false"],
        ),
        ("ARRAY_JOIN(NUMS, '|')", ["3|6", "5|null", "NULL"]),
        (
            "ARRAY_CONCAT(NUMS, ARRAY[7])",
            ["[3, 6, 7]", "[5, NULL, 7]", "[7]"],
        ),
        (
            "ARRAY_UNION(NUMS, ARRAY[6, 7])",
            ["[3, 6, 7]", "[5, NULL, 6, 7]", "NULL"],
        ),
        ("ARRAY_EXCEPT(NUMS, ARRAY[6])", ["[3]", "[5, NULL]", "NULL"]),
        ("SLICE(NUMS, 2, 2)", ["[6]", "[NULL]", "NULL"]),
        ("SLICE(NUMS, 2, 3)", ["NULL", "NULL", "NULL"]),
        (
            "GENERATE_SERIES(A, A - 1)",
            ["[30, 29]", "[1, 0]", "[2, 1]"],
        ),
        ("ELT(A, 'x', 'y')", ["NULL", "x", "y"]),
        ("FIELD('y', 'x', 'y')", ["2", "2", "2"]),
    ];
    for (sql, want) in cases {
        let got = eval(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).0;
        assert_eq!(got, *want, "{sql}");
    }
}

#[test]
fn result_types_and_errors() {
    let types: &[(&str, &str)] = &[
        ("TRANSFORM(NUMS, x => CAST(x AS STRING))", "ARRAY<STRING>"),
        (
            "TRANSFORM(M, (k, v) => v, (k, v) => k)",
            "MAP<INTEGER, STRING>",
        ),
        ("REDUCE(NUMS, STATE, (s, x) => s + x)", "BIGINT"),
        ("ENTRIES(M, true)", "ARRAY<STRUCT<K STRING, V INTEGER>>"),
        ("AS_MAP(ARRAY['a'], NUMS)", "MAP<STRING, INTEGER>"),
    ];
    for (sql, want) in types {
        let ty = eval(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).1;
        assert_eq!(ty.to_string(), *want, "{sql}");
    }
    let errors: &[(&str, &str)] = &[
        ("TRANSFORM(NUMS, (x, y) => x)", "expects 1 argument"),
        ("FILTER(NUMS, x => x + 1)", "must return BOOLEAN"),
        (
            "ARRAY_MAX(ARRAY[NUMS])",
            "Function 'array_max' does not accept parameters",
        ),
        (
            "SLICE(NUMS, 'a', 2)",
            "Function 'slice' does not accept parameters",
        ),
    ];
    for (sql, want) in errors {
        match eval(sql) {
            Ok(v) => panic!("{sql}: expected an error, got {v:?}"),
            Err(e) => assert!(e.contains(want), "{sql}: {e}"),
        }
    }
}

/// GENERATE_SERIES, ARRAY_JOIN and lambdas that build large values from small ones stop
/// at a limit with an error naming it; at the limit they work.
#[test]
fn amplifying_functions_have_limits() {
    let limit = crate::limits::MAX_ARRAY_ELEMENTS;
    for (sql, want) in [
        (
            "GENERATE_SERIES(0, 9000000000000000000)".to_string(),
            "GENERATE_SERIES: the result would be 9000000000000000001 elements, more than the limit of 1048576",
        ),
        (
            "GENERATE_SERIES(-2147483648, 2147483647)".to_string(),
            "the result would be 4294967296 elements",
        ),
        (
            "ARRAY_JOIN(ARRAY[1, 2, 3], LPAD('', 600000, 'y'))".to_string(),
            "ARRAY_JOIN: the result would be 1200003 bytes",
        ),
        // The state doubles with every element.
        (
            "REDUCE(GENERATE_SERIES(1, 40), 'ab', (s, x) => s + s)".to_string(),
            "REDUCE: the result would be",
        ),
    ] {
        match eval(&sql) {
            Err(e) => assert!(e.contains(want), "{sql}: want {want:?}, got {e:?}"),
            Ok((rows, _)) => panic!("{sql}: want an error, got {} rows", rows.len()),
        }
    }
    let (rows, _) =
        eval(&format!("ARRAY_LENGTH(GENERATE_SERIES(1, {limit}))")).expect("at the limit");
    assert_eq!(rows[0], limit.to_string());
    // A lambda that doubles its parameter, nested: each level's result is checked.
    let mut doubling = "ARRAY[LPAD('', 1000000, 'y')]".to_string();
    for _ in 0..7 {
        doubling = format!("TRANSFORM({doubling}, x => x + x)");
    }
    let (rows, _) = eval(&format!("ARRAY_LENGTH({doubling})")).expect("evaluates");
    // A failing lambda makes the value NULL, as any lambda error does.
    assert_eq!(rows, ["NULL", "NULL", "NULL"]);
}

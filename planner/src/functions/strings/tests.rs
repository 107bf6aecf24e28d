//! Compiles ksqlDB expressions against a one-row input and checks the values and types.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Decimal128Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{Field, Schema};
use brook_sql::Type;
use datafusion::common::ScalarValue;

use crate::expr::{physical, Scope, ScopeColumn};
use crate::types::{arrow_type, NoTypes};

fn columns() -> Vec<(&'static str, Type, ArrayRef)> {
    vec![
        (
            "S",
            Type::String,
            Arc::new(StringArray::from(vec![Some("Hello World")])),
        ),
        (
            "NS",
            Type::String,
            Arc::new(StringArray::from(vec![None::<&str>])),
        ),
        ("I", Type::Int, Arc::new(Int32Array::from(vec![Some(7)]))),
        ("NI", Type::Int, Arc::new(Int32Array::from(vec![None]))),
        (
            "L",
            Type::Bigint,
            Arc::new(Int64Array::from(vec![Some(-12345)])),
        ),
        (
            "D",
            Type::Double,
            Arc::new(Float64Array::from(vec![Some(-2.5)])),
        ),
        ("ND", Type::Double, Arc::new(Float64Array::from(vec![None]))),
        (
            "DEC",
            Type::Decimal {
                precision: 5,
                scale: 2,
            },
            Arc::new(
                Decimal128Array::from(vec![Some(-12345i128)])
                    .with_precision_and_scale(5, 2)
                    .expect("valid decimal"),
            ),
        ),
        (
            "B",
            Type::Bytes,
            Arc::new(BinaryArray::from(vec![Some(&b"yes"[..])])),
        ),
        (
            "J",
            Type::String,
            Arc::new(StringArray::from(vec![Some(
                r#"{"a": {"b": [1, 2.50, "x"]}, "k": null, "z": true}"#,
            )])),
        ),
        (
            "U",
            Type::String,
            Arc::new(StringArray::from(vec![Some(
                "https://user@example.com:8080/a%20b/c?x=1&y=two#frag",
            )])),
        ),
    ]
}

/// Evaluates `sql` on the one-row input: the value as text and the ksqlDB type.
fn eval(sql: &str) -> Result<(String, Type), String> {
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
    // `CALL NAME|arg|arg` calls the function directly: sqlparser turns SUBSTRING and TRIM into
    // their own syntax nodes, which the compiler routes here by name.
    let t = if let Some((name, list)) = sql.strip_prefix("CALL ").and_then(|c| c.split_once('|')) {
        let mut args = Vec::new();
        for a in list.split('|') {
            let e = brook_sql::parse_expr(a).map_err(|e| e.to_string())?;
            args.push(scope.compile(&e).map_err(|e| e.to_string())?);
        }
        crate::functions::call(&scope, name, args).map_err(|e| e.to_string())?
    } else {
        let e = brook_sql::parse_expr(sql).map_err(|e| e.to_string())?;
        scope.compile(&e).map_err(|e| e.to_string())?
    };
    let ty = t.ty.clone().expect("typed result");
    let p = physical(&t.expr, &schema).map_err(|e| e.to_string())?;
    let dt = p.data_type(&schema).map_err(|e| e.to_string())?;
    assert_eq!(
        dt,
        arrow_type(&ty, &NoTypes).expect("type"),
        "type of {sql}"
    );
    let v = p.evaluate(&batch).map_err(|e| e.to_string())?;
    let arr = v.into_array(1).map_err(|e| e.to_string())?;
    assert_eq!(arr.data_type(), &dt, "evaluated type of {sql}");
    let s = ScalarValue::try_from_array(&arr, 0).map_err(|e| e.to_string())?;
    let text = match &s {
        ScalarValue::Binary(Some(b)) => format!(
            "0x{}",
            b.iter().map(|c| format!("{c:02x}")).collect::<String>()
        ),
        other if other.is_null() => "NULL".to_string(),
        other => other.to_string(),
    };
    Ok((text, ty))
}

fn check(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (sql, want) in cases {
        match eval(sql) {
            Ok((got, _)) if got == *want => {}
            Ok((got, _)) => failures.push(format!("{sql}: want {want}, got {got}")),
            Err(e) => failures.push(format!("{sql}: error {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn types(cases: &[(&str, &str)]) {
    for (sql, want) in cases {
        let (_, ty) = eval(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(ty.to_string(), *want, "{sql}");
    }
}

fn errors(cases: &[(&str, &str)]) {
    for (sql, want) in cases {
        match eval(sql) {
            Err(e) => assert!(
                e.contains(want),
                "{sql}: want error containing {want:?}, got {e:?}"
            ),
            Ok((v, _)) => panic!("{sql}: want error {want:?}, got value {v}"),
        }
    }
}

#[test]
fn math() {
    check(&[
        ("ABS(L)", "12345"),
        ("ABS(D)", "2.5"),
        ("ABS(DEC)", "123.45"),
        ("ABS(NI)", "NULL"),
        ("SIGN(D)", "-1"),
        ("SIGN(I)", "1"),
        ("SIGN(ND)", "NULL"),
        ("ROUND(D)", "-2"),
        ("ROUND(2.5E0)", "3"),
        ("ROUND(D, 0)", "-2"),
        ("ROUND(1.005E0, 2)", "1.01"),
        ("ROUND(111E0, -1)", "110"),
        ("ROUND(DEC)", "-123"),
        ("ROUND(DEC, 1)", "-123.40"),
        ("ROUND(I)", "7"),
        ("ROUND(ND, 2)", "NULL"),
        ("TRUNC(D)", "-2"),
        ("TRUNC(DEC, 1)", "-123.40"),
        ("TRUNC(DEC)", "-123"),
        ("TRUNC(1.239E0, 2)", "1.23"),
        ("SQRT(-1)", "NaN"),
        ("SQRT(I)", "2.6457513110645907"),
        ("LN(0)", "-inf"),
        ("LOG(100)", "4.605170185988092"),
        ("LOG(10, 100)", "2"),
        ("POWER(2, 10)", "1024"),
        ("ATAN2(NI, 1)", "NULL"),
        ("CBRT(27)", "3"),
        ("PI()", "3.141592653589793"),
        ("GREATEST(I, 3, NULL)", "7"),
        ("LEAST(I, 3, NULL)", "3"),
        ("LEAST(NI, NULL)", "NULL"),
        ("GREATEST('a', S, NS)", "a"),
        ("GREATEST(I, D)", "7"),
        (
            "GEO_DISTANCE(39.18660374, -76.73262144, 39.18660374, -76.73222145)",
            "0.03447366811448324",
        ),
        (
            "GEO_DISTANCE(37.4439, -122.1663, 51.5257, -0.1122, 'MI')",
            "5365.659729188262",
        ),
    ]);
    types(&[
        ("ROUND(D)", "BIGINT"),
        ("ROUND(D, 1)", "DOUBLE"),
        ("ROUND(DEC)", "DECIMAL(3, 0)"),
        ("ROUND(DEC, 1)", "DECIMAL(5, 2)"),
        ("ABS(I)", "INTEGER"),
        ("SIGN(DEC)", "INTEGER"),
        ("LEAST(I, L, D)", "DOUBLE"),
    ]);
    errors(&[
        ("GREATEST()", "Function 'greatest' does not accept parameters ()."),
        (
            "GREATEST(I, L)",
            "Function 'greatest' cannot be resolved due to ambiguous method parameters (INTEGER, BIGINT).",
        ),
        ("GREATEST(S, I)", "Function 'greatest' does not accept parameters (STRING, INTEGER)."),
        (
            "LEAST(NULL, NULL)",
            "Function 'least' cannot be resolved due to ambiguous method parameters (null, null).",
        ),
        ("GEO_DISTANCE(D, D, 'foo', 0)", "Function 'geo_distance' does not accept parameters"),
        ("ABS(S)", "Function 'abs' does not accept parameters (STRING)."),
    ]);
}

#[test]
fn strings() {
    check(&[
        ("UCASE(S)", "HELLO WORLD"),
        ("LCASE(NS)", "NULL"),
        ("LTRIM(' \tx \t')", "x \t"),
        ("CALL TRIM|' \tx \t'", "x"),
        ("CALL SUBSTRING|S|0|2", "He"),
        ("CALL SUBSTRING|NULL|1", "NULL"),
        ("INITCAP('the   quick bR0WN')", "The   Quick Br0wn"),
        ("LEN(S)", "11"),
        ("LEN(B)", "3"),
        ("LEN(NS)", "NULL"),
        ("CONCAT(S, NS, '!')", "Hello World!"),
        ("CONCAT_WS('-', 'a', NS, 'b')", "a-b"),
        ("CONCAT_WS(NS, 'a', 'b')", "NULL"),
        ("CONCAT_WS(B, B, B)", "0x796573796573796573"),
        ("CHR(75)", "K"),
        ("CHR(-1)", "NULL"),
        ("CHR('\\u004b')", "K"),
        ("CHR('75')", "NULL"),
        ("INSTR('CORPORATE FLOOR', 'OR')", "2"),
        ("INSTR('CORPORATE FLOOR', 'OR', 3, 2)", "14"),
        ("INSTR('CORPORATE FLOOR', 'OR', -3)", "5"),
        ("INSTR('CORPORATE FLOOR', 'OR', -4, 2)", "2"),
        ("INSTR('short', 'or', 4)", "0"),
        ("LPAD('foo', 7, 'Bar')", "BarBfoo"),
        ("LPAD('foo', 2, 'Bar')", "fo"),
        ("RPAD('foo', 7, 'Bar')", "fooBarB"),
        ("RPAD('foo', -1, 'Bar')", "NULL"),
        ("RPAD('foo', 5, '')", "NULL"),
        ("LPAD(B, 5, B)", "0x7965796573"),
        ("CALL SUBSTRING|S|7", "World"),
        ("CALL SUBSTRING|S|2|3", "ell"),
        ("CALL SUBSTRING|S|-5|2", "Wo"),
        ("CALL SUBSTRING|S|20", ""),
        ("CALL SUBSTRING|S|NI", "NULL"),
        ("CALL SUBSTRING|B|2", "0x6573"),
        ("REPLACE(S, 'o', '0')", "Hell0 W0rld"),
        ("REGEXP_REPLACE(S, '(\\w+) (\\w+)', '$2 $1')", "World Hello"),
        ("REGEXP_EXTRACT('(.*) (.*)', S, 2)", "World"),
        ("REGEXP_EXTRACT('z+', S)", "NULL"),
        ("ARRAY_LENGTH(REGEXP_EXTRACT_ALL('o.', S))", "2"),
        ("ARRAY_LENGTH(SPLIT('a.b..c.', '.'))", "5"),
        ("SPLIT('a.b', '.')[2]", "b"),
        ("SPLIT('abc', '')[3]", "c"),
        (
            "ARRAY_LENGTH(REGEXP_SPLIT_TO_ARRAY('aabcda', '(ab|cd)'))",
            "3",
        ),
        ("SPLIT_TO_MAP('a=1;b=2;c', ';', '=')['b']", "2"),
        ("SPLIT_TO_MAP(NS, ';', '=')['b']", "NULL"),
        ("MASK('AbC-12')", "XxX-nn"),
        ("MASK('AbC-12', NULL, '*')", "A*C-nn"),
        ("MASK_KEEP_LEFT('AbC-12', 2)", "AbX-nn"),
        ("MASK_KEEP_RIGHT('AbC-12', 2)", "XxX-12"),
        ("MASK_LEFT('AbC-12', 2)", "XxC-12"),
        ("MASK_RIGHT('AbC-12', 2, '#', '#', '#', '#')", "AbC-##"),
        ("MD5('r1')", "7c92cf1eee8d99cc85f8355a3d6e4b86"),
        ("MD5(NS)", "NULL"),
        ("LEN(UUID())", "36"),
    ]);
    types(&[
        ("SPLIT(B, B)", "ARRAY<BYTES>"),
        ("SPLIT_TO_MAP(S, ',', '=')", "MAP<STRING, STRING>"),
        ("LPAD(B, 1, B)", "BYTES"),
    ]);
    errors(&[
        (
            "LPAD(S, 1, B)",
            "Function 'lpad' does not accept parameters (STRING, INTEGER, BYTES).",
        ),
        (
            "UCASE(I)",
            "Function 'ucase' does not accept parameters (INTEGER).",
        ),
    ]);
}

#[test]
fn bytes_and_encodings() {
    check(&[
        ("TO_BYTES('1aB2', 'hex')", "0x1ab2"),
        ("FROM_BYTES(TO_BYTES('1aB2', 'hex'), 'hex')", "1AB2"),
        ("FROM_BYTES(B, 'base64')", "eWVz"),
        ("FROM_BYTES(B, 'utf8')", "yes"),
        ("TO_BYTES('eWVz', 'base64')", "0x796573"),
        ("TO_BYTES('zz', 'hex')", "NULL"),
        ("INT_FROM_BYTES(TO_BYTES('000007E5', 'hex'))", "2021"),
        (
            "INT_FROM_BYTES(TO_BYTES('E5070000', 'hex'), 'LITTLE_ENDIAN')",
            "2021",
        ),
        (
            "BIGINT_FROM_BYTES(TO_BYTES('000000012A05F200', 'hex'))",
            "5000000000",
        ),
        (
            "DOUBLE_FROM_BYTES(TO_BYTES('QICm/ZvJ9YI=', 'base64'))",
            "532.8738323",
        ),
        ("ENCODE('4578616d706C6521', 'hex', 'utf8')", "Example!"),
        (
            "ENCODE('0x4578616d706C6521', 'hex', 'base64')",
            "RXhhbXBsZSE=",
        ),
        ("ENCODE('X''4578''', 'hex', 'ascii')", "Ex"),
        (
            "ENCODE('RXhhbXBsZSE=', 'base64', 'hex')",
            "4578616d706c6521",
        ),
        ("ENCODE('c39c', 'hex', 'ascii')", "\u{fffd}\u{fffd}"),
        ("ENCODE('0x0x', 'hex', 'utf8')", "NULL"),
        ("ENCODE(S, 'null', 'utf8')", "NULL"),
        (
            "UUID(TO_BYTES('00112233445566778899aabbccddeeff', 'hex'))",
            "00112233-4455-6677-8899-aabbccddeeff",
        ),
    ]);
    errors(&[(
        "INT_FROM_BYTES(S)",
        "Function 'int_from_bytes' does not accept parameters (STRING).",
    )]);
}

#[test]
fn null_helpers() {
    check(&[
        ("COALESCE(NS, NULL, 'x')", "x"),
        ("COALESCE(NS)", "NULL"),
        ("IFNULL(NI, 10)", "10"),
        ("IFNULL(I, 10)", "7"),
        ("NULLIF(I, 7)", "NULL"),
        ("NULLIF(I, 8)", "7"),
        ("NULLIF(NI, 8)", "NULL"),
    ]);
    errors(&[
        (
            "COALESCE()",
            "Function 'COALESCE' does not accept parameters ()",
        ),
        ("IFNULL(I, 'x')", "ambiguous method parameters"),
    ]);
}

#[test]
fn json() {
    check(&[
        ("EXTRACTJSONFIELD(J, '$.a.b[1]')", "2.50"),
        ("EXTRACTJSONFIELD(J, '$.a.b[2]')", "x"),
        ("EXTRACTJSONFIELD(J, '$.a')", r#"{"b":[1,2.50,"x"]}"#),
        ("EXTRACTJSONFIELD(J, '$.a.b[-1]')", "NULL"),
        ("EXTRACTJSONFIELD(J, '$.k')", "NULL"),
        ("EXTRACTJSONFIELD(J, '$.missing')", "NULL"),
        ("EXTRACTJSONFIELD('{\"a\": 1}}', '$.a')", "1"),
        ("EXTRACTJSONFIELD('not json', '$.a')", "NULL"),
        ("IS_JSON_STRING(J)", "true"),
        ("IS_JSON_STRING('abc')", "false"),
        ("IS_JSON_STRING('')", "false"),
        ("IS_JSON_STRING(NS)", "false"),
        ("JSON_ARRAY_LENGTH('[1, [2], 3]')", "3"),
        ("JSON_ARRAY_LENGTH('{}')", "NULL"),
        (
            "JSON_CONCAT('{\"a\": 1}', '{\"b\": 2}')",
            r#"{"a":1,"b":2}"#,
        ),
        ("JSON_CONCAT('[1, 2]', '{\"a\": 1}')", r#"[1,2,{"a":1}]"#),
        ("JSON_CONCAT('null', 'null')", "[null,null]"),
        ("JSON_CONCAT('1', '')", "NULL"),
        ("JSON_KEYS(J)[1]", "a"),
        ("JSON_KEYS(J)[3]", "z"),
        ("JSON_KEYS('[]')", "NULL"),
        ("JSON_ITEMS('[{\"a\": 1}, 2]')[1]", r#"{"a":1}"#),
        ("JSON_RECORDS('{\"a\": \"x\", \"b\": [1]}')['a']", "x"),
        ("JSON_RECORDS('{\"a\": \"x\", \"b\": [1]}')['b']", "[1]"),
        ("JSON_ARRAY_CONTAINS('[1, 2, 3]', 3)", "true"),
        ("JSON_ARRAY_CONTAINS('[1, 2, 3]', 4)", "false"),
        ("JSON_ARRAY_CONTAINS('[\"a\", null]', 'a')", "true"),
        ("JSON_ARRAY_CONTAINS('[1.5]', 1.5E0)", "true"),
        ("JSON_ARRAY_CONTAINS('{}', 1)", "false"),
        ("TO_JSON_STRING(S)", "\"Hello World\""),
        ("TO_JSON_STRING(NI)", "null"),
        ("TO_JSON_STRING(DEC)", "-123.45"),
        ("TO_JSON_STRING(D)", "-2.5"),
        ("TO_JSON_STRING(B)", "\"eWVz\""),
        ("TO_JSON_STRING(ARRAY[1, 2])", "[1,2]"),
        (
            "TO_JSON_STRING(STRUCT(A := 1, B := 'x'))",
            r#"{"A":1,"B":"x"}"#,
        ),
        ("TO_JSON_STRING(MAP('k' := 1.5E0))", r#"{"k":1.5}"#),
    ]);
}

#[test]
fn urls() {
    check(&[
        ("URL_EXTRACT_PROTOCOL(U)", "https"),
        ("URL_EXTRACT_HOST(U)", "example.com"),
        ("URL_EXTRACT_PORT(U)", "8080"),
        ("URL_EXTRACT_PATH(U)", "/a b/c"),
        ("URL_EXTRACT_QUERY(U)", "x=1&y=two"),
        ("URL_EXTRACT_FRAGMENT(U)", "frag"),
        ("URL_EXTRACT_PARAMETER(U, 'y')", "two"),
        ("URL_EXTRACT_PARAMETER(U, 'q')", "NULL"),
        ("URL_EXTRACT_PROTOCOL('www.confluent.io')", "NULL"),
        ("URL_EXTRACT_PATH('http://www.test.com?query')", ""),
        ("URL_EXTRACT_PORT('http://test@confluent.io')", "NULL"),
        ("URL_EXTRACT_FRAGMENT('http://x.com/')", "NULL"),
        ("URL_EXTRACT_HOST('not a url')", "NULL"),
        ("URL_DECODE_PARAM('%3Ffoo+%24bar')", "?foo $bar"),
        ("URL_ENCODE_PARAM('?foo $bar')", "%3Ffoo+%24bar"),
        ("URL_DECODE_PARAM(NS)", "NULL"),
    ]);
}

#[test]
fn double_rounding_ties_go_up() {
    use super::impls::double_places;
    let cases = [
        (1.5, 0, true, 2.0),
        (-1.5, 0, true, -1.0),
        (-1.55, 1, true, -1.5),
        (-1.551, 1, true, -1.6),
        (0.05, 0, true, 0.0),
        (0.5, 0, true, 1.0),
        (9.99, 1, true, 10.0),
        (1234.5, -2, true, 1200.0),
        (1.239, 2, false, 1.23),
        (-1.239, 2, false, -1.23),
        (5e-324, 3, true, 0.0),
    ];
    for (x, places, round, want) in cases {
        assert_eq!(
            double_places(x, places, round),
            want,
            "{x} {places} {round}"
        );
    }
}

#[test]
fn substring_bounds() {
    use super::impls::slice_range;
    assert_eq!(slice_range(5, 0, Some(2)), (0, 2));
    assert_eq!(slice_range(5, 6, None), (5, 5));
    assert_eq!(slice_range(5, -9, Some(2)), (0, 2));
    assert_eq!(slice_range(5, 2, Some(-1)), (1, 1));
}

/// Functions that can make a large value from small arguments stop at a limit, with an
/// error naming the function and the limit; at the limit they work. ksqlDB answers NULL
/// for a negative length and has no upper bound (it runs out of memory).
#[test]
fn amplifying_functions_have_limits() {
    let limit = crate::limits::MAX_VALUE_BYTES;
    errors(&[
        (
            "LPAD(S, 2000000000, 'y')",
            "LPAD: the result would be 2000000000 characters, more than the limit of 1048576",
        ),
        (
            "RPAD(B, 2000000000, TO_BYTES('y', 'utf8'))",
            "RPAD: the result would be 2000000000 bytes",
        ),
        // Each of 11 characters and the ends grows by 100000 bytes.
        (
            "REPLACE(S, '', LPAD('', 100000, 'y'))",
            "REPLACE: the result would be 1200011 bytes, more than the limit of 1048576",
        ),
        (
            "REGEXP_REPLACE(S, 'o|l', LPAD('', 400000, 'y'))",
            "REGEXP_REPLACE: the result would be over",
        ),
        (
            "CONCAT_WS(LPAD('', 600000, 'y'), 'a', 'b', 'c')",
            "CONCAT_WS: the result would be 1200003 bytes",
        ),
    ]);
    check(&[
        ("LPAD(S, -1, 'y')", "NULL"),
        (&format!("LEN(LPAD(S, {limit}, 'y'))"), &limit.to_string()),
        (&format!("LEN(RPAD(S, {limit}, 'y'))"), &limit.to_string()),
        ("LEN(REPLACE(S, 'o', LPAD('', 500000, 'y')))", "1000009"),
    ]);
}

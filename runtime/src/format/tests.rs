//! Codec tests, mostly tables of payload → decoded row (shown as ksqlDB's JSON) or error.
//! Cases marked "qtt" come from ksqlDB's conformance tests.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float64Array, Int32Array, Int64Array, LargeStringArray, StringArray, Time32MillisecondArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{Decimal128Type, Int32Type};
use brook_planner::schema::Namespace;
use serde_json::{json, Value};

use super::*;

fn col(name: &str, ty: &str) -> Column {
    Column::new(
        name,
        brook_sql::parse_type(ty).expect("test type parses"),
        Namespace::Value,
    )
}

/// Columns from `"NAME TYPE, NAME TYPE"` (types without top-level commas, or one column).
fn cols(decl: &str) -> Vec<Column> {
    if decl.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in decl.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&decl[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&decl[start..]);
    out.iter()
        .map(|c| {
            let c = c.trim();
            let (name, ty) = c.split_once(' ').expect("NAME TYPE");
            col(name.trim_matches('`'), ty)
        })
        .collect()
}

fn spec(kind: FormatKind, wrap: Option<bool>) -> FormatSpec {
    FormatSpec {
        wrap_single_value: wrap,
        ..FormatSpec::new(kind)
    }
}

fn codec(kind: FormatKind, part: Part, decl: &str) -> Codec {
    Codec::new(&spec(kind, None), part, &cols(decl), &NoTypes).expect("codec")
}

/// Decoded rows shown as ksqlDB's JSON values would be written (a wrapped object per row),
/// or the error of rows that failed.
fn show_rows(columns: &[Column], decoded: &Decoded) -> Vec<Result<Value, String>> {
    let json = Codec::new(
        &spec(FormatKind::Json, (columns.len() == 1).then_some(true)),
        Part::Value,
        columns,
        &NoTypes,
    )
    .expect("json codec");
    let rows = decoded
        .columns
        .first()
        .map_or(decoded.errors.len(), |c| c.len());
    let encoded = json.encode(&decoded.columns, 0..rows).expect("encodes");
    encoded
        .into_iter()
        .zip(&decoded.errors)
        .map(|(payload, err)| match err {
            Some(e) => Err(e.to_string()),
            None => Ok(serde_json::from_slice(&payload.expect("wrapped payload")).expect("json")),
        })
        .collect()
}

fn decode_one(kind: FormatKind, part: Part, decl: &str, payload: &[u8]) -> Result<Value, String> {
    let c = codec(kind, part, decl);
    let decoded = c.decode(&[Some(payload)]).expect("decodes");
    show_rows(&cols(decl), &decoded).remove(0)
}

type Case<'a> = (&'a str, &'a str, Result<Value, &'a str>);

/// (part, WRAP_SINGLE_VALUE, columns, payload read, row, payload written)
type WrapCase<'a> = (Part, Option<bool>, &'a str, &'a str, Value, Option<&'a str>);

/// (format, part, columns, test-file value, payload)
type PayloadCase<'a> = (FormatKind, Part, &'a str, Value, Option<&'a [u8]>);

fn check_decode(kind: FormatKind, part: Part, cases: &[Case]) {
    for (decl, payload, expected) in cases {
        let got = decode_one(kind, part, decl, payload.as_bytes());
        match (expected, &got) {
            (Ok(v), Ok(g)) => assert_eq!(g, v, "{kind} {decl} <- {payload}"),
            (Err(msg), Err(g)) => assert!(g.contains(msg), "{kind} {decl} <- {payload}: {g}"),
            _ => panic!("{kind} {decl} <- {payload}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn json_values_are_coerced_leniently() {
    let cases: &[Case] = &[
        ("ID INT", r#"{"ID": 1}"#, Ok(json!({"ID": 1}))),
        ("ID INT", r#"{"id": "1"}"#, Ok(json!({"ID": 1}))),
        ("ID INT", r#"{"ID": "-7"}"#, Ok(json!({"ID": -7}))),
        ("ID INT", r#"{"ID": 1.9}"#, Ok(json!({"ID": 1}))),
        (
            "ID INT",
            r#"{"ID": 2147483647}"#,
            Ok(json!({"ID": 2147483647})),
        ),
        (
            "ID BIGINT",
            r#"{"ID": 998877665544332211}"#,
            Ok(json!({"ID": 998877665544332211_i64})),
        ),
        (
            "ID BIGINT",
            r#"{"ID": "10827272222"}"#,
            Ok(json!({"ID": 10827272222_i64})),
        ),
        ("D DOUBLE", r#"{"D": 10}"#, Ok(json!({"D": 10.0}))),
        ("D DOUBLE", r#"{"D": "1.5"}"#, Ok(json!({"D": 1.5}))),
        ("D DOUBLE", r#"{"D": 654.321}"#, Ok(json!({"D": 654.321}))),
        ("S STRING", r#"{"S": "hello"}"#, Ok(json!({"S": "hello"}))),
        ("S STRING", r#"{"S": 12.50}"#, Ok(json!({"S": "12.50"}))),
        ("S STRING", r#"{"S": 10}"#, Ok(json!({"S": "10"}))),
        ("S STRING", r#"{"S": true}"#, Ok(json!({"S": "true"}))),
        (
            "S STRING",
            r#"{"S": {"a": 1, "b": [1, "x"]}}"#,
            Ok(json!({"S": r#"{"a":1,"b":[1,"x"]}"#})),
        ),
        (
            "S STRING",
            r#"{"S": [1, "x", null]}"#,
            Ok(json!({"S": "[1, x, null]"})),
        ),
        (
            "S STRING",
            r#"{"S": "esc\"aped\n"}"#,
            Ok(json!({"S": "esc\"aped\n"})),
        ),
        ("B BOOLEAN", r#"{"B": true}"#, Ok(json!({"B": true}))),
        ("B BOOLEAN", r#"{"B": "true"}"#, Ok(json!({"B": true}))),
        ("B BOOLEAN", r#"{"B": "FALSE"}"#, Ok(json!({"B": false}))),
        (
            "DEC DECIMAL(4,2)",
            r#"{"DEC": 10.1}"#,
            Ok(json!({"DEC": 10.1})),
        ),
        (
            "DEC DECIMAL(4,2)",
            r#"{"DEC": "12.345"}"#,
            Ok(json!({"DEC": 12.35})),
        ),
        (
            "DEC DECIMAL(6,4)",
            r#"{"DEC": 10}"#,
            Ok(json!({"DEC": 10.0})),
        ),
        (
            "DEC DECIMAL(6,4)",
            r#"{"DEC": 0.0001}"#,
            Ok(json!({"DEC": 0.0001})),
        ),
        ("TIME TIMESTAMP", r#"{"time": 10}"#, Ok(json!({"TIME": 10}))),
        ("T TIMESTAMP", r#"{"T": "1000"}"#, Ok(json!({"T": 1000}))),
        ("T TIME", r#"{"T": 1000}"#, Ok(json!({"T": 1000}))),
        ("D DATE", r#"{"D": -10}"#, Ok(json!({"D": -10}))),
        (
            "B BYTES",
            r#"{"B": "dmFyaWF0aW9ucw=="}"#,
            Ok(json!({"B": "dmFyaWF0aW9ucw=="})),
        ),
        ("B BYTES", r#"{"B": "ew"}"#, Ok(json!({"B": "ew=="}))),
        (
            "A ARRAY<STRING>",
            r#"{"A": [1, 2, 3]}"#,
            Ok(json!({"A": ["1", "2", "3"]})),
        ),
        (
            "A ARRAY<STRING>",
            r#"{"A": ["a", null]}"#,
            Ok(json!({"A": ["a", null]})),
        ),
        (
            "A ARRAY<BYTES>",
            r#"{"A": ["ew==", "ew=="]}"#,
            Ok(json!({"A": ["ew==", "ew=="]})),
        ),
        (
            "M MAP<STRING, INT>",
            r#"{"M": {"a": 1, "b": "2", "c": null}}"#,
            Ok(json!({"M": {"a": 1, "b": 2, "c": null}})),
        ),
        (
            "M MAP<STRING, INT>",
            r#"{"M": {"a": 1, "a": 2}}"#,
            Ok(json!({"M": {"a": 2}})),
        ),
        (
            "S STRUCT<F0 INT, `f1` STRING>",
            r#"{"S": {"f0": 1, "f1": "x"}}"#,
            Ok(json!({"S": {"F0": 1, "f1": "x"}})),
        ),
        // A quoted lower-case field only matches exactly, as in ksqlDB.
        (
            "S STRUCT<F0 INT, `f1` STRING>",
            r#"{"S": {"F1": "x"}}"#,
            Ok(json!({"S": {"F0": null, "f1": null}})),
        ),
        (
            "ID INT, NAME STRING",
            r#"{"id": 1, "Name": "bob", "extra": 0}"#,
            Ok(json!({"ID": 1, "NAME": "bob"})),
        ),
        (
            "ID INT, NAME STRING",
            r#"{"id": 1}"#,
            Ok(json!({"ID": 1, "NAME": null})),
        ),
        // An exact match wins over a case-insensitive one.
        ("ID INT", r#"{"ID": 2, "id": 1}"#, Ok(json!({"ID": 2}))),
        (
            "`@TIMESTAMP` BIGINT, `FROM` BIGINT",
            r#"{"@timestamp": 4, "from": 5}"#,
            Ok(json!({"@TIMESTAMP": 4, "FROM": 5})),
        ),
        (
            "ID INT, NAME STRING",
            "null",
            Ok(json!({"ID": null, "NAME": null})),
        ),
        // Errors name the column (or the path inside it) and the cause.
        (
            "ID INT",
            r#"{"ID": "abc"}"#,
            Err("JSON value: expected an INTEGER for column `ID`, found \"abc\""),
        ),
        (
            "ID INT",
            r#"{"ID": 3000000000}"#,
            Err("column `ID`: 3000000000 is out of range for INTEGER"),
        ),
        (
            "ID INT",
            r#"{"ID": "3000000000"}"#,
            Err("out of range for INTEGER"),
        ),
        (
            "ID BIGINT",
            r#"{"ID": 99999999999999999999}"#,
            Err("out of range for BIGINT"),
        ),
        (
            "ID INT",
            r#"{"ID": true}"#,
            Err("expected an INTEGER for column `ID`, found true"),
        ),
        ("ID INT", r#"{"ID": [1]}"#, Err("found an array")),
        (
            "B BOOLEAN",
            r#"{"B": 1}"#,
            Err("expected a BOOLEAN for column `B`, found 1"),
        ),
        ("B BOOLEAN", r#"{"B": "yes"}"#, Err("expected a BOOLEAN")),
        (
            "D DOUBLE",
            r#"{"D": "x"}"#,
            Err("expected a DOUBLE for column `D`, found \"x\""),
        ),
        (
            "DEC DECIMAL(4,2)",
            r#"{"DEC": 100}"#,
            Err("Numeric field overflow: A field with precision 4 and scale 2"),
        ),
        (
            "DEC DECIMAL(4,2)",
            r#"{"DEC": "abc"}"#,
            Err("expected a DECIMAL(4, 2) for column `DEC`"),
        ),
        (
            "B BYTES",
            r#"{"B": 123}"#,
            Err("expected BYTES as a base64 string"),
        ),
        (
            "B BYTES",
            r#"{"B": "!!"}"#,
            Err("column `B`: \"!!\": not valid base64"),
        ),
        (
            "A ARRAY<INT>",
            r#"{"A": [1, "x"]}"#,
            Err("for column `A`[1], found \"x\""),
        ),
        (
            "A ARRAY<INT>",
            r#"{"A": 1}"#,
            Err("expected an ARRAY for column `A`, found 1"),
        ),
        (
            "M MAP<STRING, INT>",
            r#"{"M": {"k": "v"}}"#,
            Err("for column `M`[\"k\"]"),
        ),
        (
            "S STRUCT<F0 INT>",
            r#"{"S": {"F0": "x"}}"#,
            Err("for column `S`.`F0`, found \"x\""),
        ),
        (
            "S STRUCT<F0 INT>",
            r#"{"S": "x"}"#,
            Err("expected a STRUCT (an object)"),
        ),
        (
            "ID INT, NAME STRING",
            "10",
            Err("JSON value: expected a JSON object, found 10"),
        ),
        (
            "ID INT",
            "{",
            Err("JSON value: invalid JSON: unexpected end at byte 1"),
        ),
        ("ID INT", "", Err("invalid JSON: empty payload")),
        (
            "ID INT",
            r#"{"ID": 1} x"#,
            Err("unexpected data after the JSON value"),
        ),
    ];
    check_decode(FormatKind::Json, Part::Value, cases);
}

#[test]
fn single_columns_are_bare_keys_and_wrapped_values_by_default() {
    use Part::{Key, Value as Val};
    let cases: &[WrapCase] = &[
        (
            Key,
            None,
            "K BIGINT",
            "998877665544332211",
            json!({"K": 998877665544332211_i64}),
            Some("998877665544332211"),
        ),
        (
            Key,
            None,
            "K STRING",
            "\"Hey\"",
            json!({"K": "Hey"}),
            Some("\"Hey\""),
        ),
        (
            Key,
            None,
            "K ARRAY<DOUBLE>",
            "[10.1]",
            json!({"K": [10.1]}),
            Some("[10.1]"),
        ),
        (
            Key,
            None,
            "K STRUCT<F1 INT>",
            r#"{"f1": 1}"#,
            json!({"K": {"F1": 1}}),
            Some(r#"{"F1":1}"#),
        ),
        (
            Key,
            None,
            "K1 STRING, K2 STRING",
            r#"{"K1": "foo", "K2": "bar"}"#,
            json!({"K1": "foo", "K2": "bar"}),
            Some(r#"{"K1":"foo","K2":"bar"}"#),
        ),
        (Key, None, "K INT", "null", json!({"K": null}), None),
        (
            Val,
            None,
            "V INT",
            r#"{"V": 0}"#,
            json!({"V": 0}),
            Some(r#"{"V":0}"#),
        ),
        (
            Val,
            None,
            "FOO BOOLEAN",
            r#"{"FOO": null}"#,
            json!({"FOO": null}),
            Some(r#"{"FOO":null}"#),
        ),
        (
            Val,
            Some(true),
            "FOO INT",
            r#"{"FOO": 10}"#,
            json!({"FOO": 10}),
            Some(r#"{"FOO":10}"#),
        ),
        (
            Val,
            Some(false),
            "V BIGINT",
            "10827272222",
            json!({"V": 10827272222_i64}),
            Some("10827272222"),
        ),
        (
            Val,
            Some(false),
            "V STRING",
            "\"hello\"",
            json!({"V": "hello"}),
            Some("\"hello\""),
        ),
        (
            Val,
            Some(false),
            "V DECIMAL(4,2)",
            "10.1",
            json!({"V": 10.1}),
            Some("10.10"),
        ),
        (
            Val,
            Some(false),
            "V MAP<STRING, INT>",
            r#"{"a": 1, "c": null}"#,
            json!({"V": {"a": 1, "c": null}}),
            Some(r#"{"a":1,"c":null}"#),
        ),
        (
            Val,
            Some(false),
            "FOO STRUCT<F1 STRING>",
            r#"{"F1": "bar"}"#,
            json!({"FOO": {"F1": "bar"}}),
            Some(r#"{"F1":"bar"}"#),
        ),
        // A null bare value is a null payload (qtt: "serialize anonymous primitive - value").
        (
            Val,
            Some(false),
            "FOO BOOLEAN",
            "null",
            json!({"FOO": null}),
            None,
        ),
    ];
    for (part, wrap, decl, input, row, output) in cases {
        let columns = cols(decl);
        let c = Codec::new(&spec(FormatKind::Json, *wrap), *part, &columns, &NoTypes).unwrap();
        let decoded = c.decode(&[Some(input.as_bytes())]).unwrap();
        assert_eq!(
            show_rows(&columns, &decoded),
            vec![Ok(row.clone())],
            "{decl} <- {input}"
        );
        let written = c.encode(&decoded.columns, 0..1).unwrap().remove(0);
        assert_eq!(
            written.as_deref(),
            output.map(str::as_bytes),
            "{decl} -> {:?}",
            written.as_deref().map(String::from_utf8_lossy)
        );
    }

    // A wrapped single value does not take a bare one, nor a bare key an object.
    let wrapped = codec(FormatKind::Json, Val, "V INT");
    let err = wrapped.decode(&[Some(b"10")]).unwrap().errors.remove(0);
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("JSON value: expected a JSON object, found 10")
    );
    let key = codec(FormatKind::Json, Key, "K INT");
    let err = key
        .decode(&[Some(br#"{"K": 1}"#)])
        .unwrap()
        .errors
        .remove(0);
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("JSON key: expected an INTEGER for column `K`, found an object")
    );

    // WRAP_SINGLE_VALUE is a value option: keys ignore it (FORMAT may set both parts).
    let two_keys = cols("K1 INT, K2 INT");
    assert!(Codec::new(
        &spec(FormatKind::Json, Some(false)),
        Key,
        &two_keys,
        &NoTypes
    )
    .is_ok());
    let one_key = Codec::new(
        &spec(FormatKind::Json, Some(true)),
        Key,
        &cols("K INT"),
        &NoTypes,
    );
    assert!(one_key.unwrap().is_unwrapped());

    // WRAP_SINGLE_VALUE only applies to single value columns.
    for wrap in [Some(true), Some(false)] {
        let e = Codec::new(
            &spec(FormatKind::Json, wrap),
            Val,
            &cols("A INT, B INT"),
            &NoTypes,
        );
        let e = e.unwrap_err().to_string();
        assert_eq!(
            e,
            "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"
        );
    }
    // DELIMITED and KAFKA cannot wrap.
    for kind in [FormatKind::Delimited, FormatKind::Kafka] {
        let e = Codec::new(&spec(kind, Some(true)), Val, &cols("A INT"), &NoTypes).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Format '{kind}' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
        );
        assert!(Codec::new(&spec(kind, Some(false)), Val, &cols("A INT"), &NoTypes).is_ok());
    }
}

#[test]
fn keys_without_columns_are_null_keys() {
    for kind in [
        FormatKind::Json,
        FormatKind::JsonSr,
        FormatKind::Delimited,
        FormatKind::Kafka,
        FormatKind::None,
    ] {
        let c = codec(kind, Part::Key, "");
        let decoded = c
            .decode(&[Some(b"data that should be ignored"), None])
            .unwrap();
        assert!(decoded.columns.is_empty());
        assert_eq!(decoded.error_count(), 0);
        assert_eq!(c.encode(&[], 0..2).unwrap(), vec![None, None], "{kind}");
        assert_eq!(c.json_to_payload(&json!("ignored")).unwrap(), None);
        assert_eq!(c.payload_to_json(None).unwrap(), Value::Null);
    }
    // A JSON value without columns is an empty object.
    let c = codec(FormatKind::Json, Part::Value, "");
    assert_eq!(c.encode(&[], 0..1).unwrap(), vec![Some(b"{}".to_vec())]);
}

#[test]
fn keys_with_only_null_columns_are_null_keys() {
    // qtt delimited.json "multi-column key" and "STRING - key": a null key stays null.
    let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("foo"), None]));
    let more: ArrayRef = Arc::new(StringArray::from(vec![Some("bar"), None]));
    let cases: &[(FormatKind, &str, Vec<ArrayRef>, &str)] = &[
        (
            FormatKind::Delimited,
            "K STRING",
            vec![Arc::clone(&strings)],
            "foo",
        ),
        (
            FormatKind::Delimited,
            "K1 STRING, K2 STRING",
            vec![Arc::clone(&strings), Arc::clone(&more)],
            "foo,bar",
        ),
        (
            FormatKind::Json,
            "K STRING",
            vec![Arc::clone(&strings)],
            "\"foo\"",
        ),
        (
            FormatKind::Json,
            "K1 STRING, K2 STRING",
            vec![Arc::clone(&strings), Arc::clone(&more)],
            r#"{"K1":"foo","K2":"bar"}"#,
        ),
        (
            FormatKind::Kafka,
            "K STRING",
            vec![Arc::clone(&strings)],
            "foo",
        ),
    ];
    for (kind, decl, arrays, first) in cases {
        let key = codec(*kind, Part::Key, decl);
        let out = key.encode(arrays, 0..2).unwrap();
        assert_eq!(
            out,
            vec![Some(first.as_bytes().to_vec()), None],
            "{kind} {decl}"
        );
    }
    // A value keeps its null columns: DELIMITED writes an empty field, JSON an object.
    let value = codec(FormatKind::Delimited, Part::Value, "K1 STRING, K2 STRING");
    let out = value.encode(&[strings, more], 1..2).unwrap();
    assert_eq!(out, vec![Some(b",".to_vec())]);
}

#[test]
fn none_format_carries_no_columns() {
    let c = codec(FormatKind::None, Part::Value, "");
    assert_eq!(c.decode(&[Some(b"x")]).unwrap().columns.len(), 0);
    assert_eq!(c.payload_to_json(Some(b"x")).unwrap(), Value::Null);
    let keyed = vec![Column::new("K", Type::String, Namespace::Key)];
    let e = Codec::new(&spec(FormatKind::None, None), Part::Key, &keyed, &NoTypes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "The 'NONE' format can only be used when no columns are defined. Got: [`K` STRING KEY]"
    );
}

#[test]
fn protobuf_formats_are_supported() {
    // Their behaviour is tested in `protobuf.rs`.
    for kind in [FormatKind::Protobuf, FormatKind::ProtobufNoSr] {
        let c = Codec::new(&spec(kind, None), Part::Value, &cols("A INT"), &NoTypes).unwrap();
        assert_eq!(c.kind(), kind);
    }
}

#[test]
fn formats_reject_types_they_cannot_carry() {
    let cases: &[(FormatKind, &str, &str)] = &[
        (
            FormatKind::Delimited,
            "FOO ARRAY<INT>",
            "The 'DELIMITED' format does not support type 'ARRAY'",
        ),
        (
            FormatKind::Delimited,
            "FOO MAP<STRING, INT>",
            "does not support type 'MAP'",
        ),
        (
            FormatKind::Delimited,
            "FOO STRUCT<F1 DOUBLE>",
            "does not support type 'STRUCT'",
        ),
        (
            FormatKind::Kafka,
            "V0 BOOLEAN",
            "The 'KAFKA' format does not support type 'BOOLEAN'",
        ),
        (
            FormatKind::Kafka,
            "V0 DECIMAL(4,2)",
            "does not support type 'DECIMAL'",
        ),
        (
            FormatKind::Kafka,
            "V0 INT, V1 STRING",
            "The 'KAFKA' format only supports a single field. Got: [`V0` INTEGER, `V1` STRING]",
        ),
        (
            FormatKind::Json,
            "M MAP<INT, DOUBLE>",
            "JSON only supports MAP types with STRING keys",
        ),
        (
            FormatKind::Json,
            "S STRUCT<M MAP<INT, INT>>",
            "JSON only supports MAP types with STRING keys",
        ),
    ];
    for (kind, decl, msg) in cases {
        let e = Codec::new(&spec(*kind, None), Part::Value, &cols(decl), &NoTypes).unwrap_err();
        assert!(e.to_string().contains(msg), "{kind} {decl}: {e}");
    }
    // Keys get ksqlDB's wording, which names the key schema.
    let e = Codec::new(
        &spec(FormatKind::Kafka, None),
        Part::Key,
        &cols("K BOOLEAN"),
        &NoTypes,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Key format does not support schema.\nformat: KAFKA\nschema: \
         Persistence{columns=[`K` BOOLEAN KEY], features=[]}\nreason: \
         The 'KAFKA' format does not support type 'BOOLEAN', column: `K`"
    );
}

#[test]
fn delimited_fields_decode_as_ksqldb_reads_them() {
    let cases: &[Case] = &[
        ("K BOOLEAN", "true", Ok(json!({"K": true}))),
        ("K BOOLEAN", "\"true\"", Ok(json!({"K": true}))),
        ("K BOOLEAN", "FALSE", Ok(json!({"K": false}))),
        // Java's Boolean.parseBoolean: anything else is false.
        ("K BOOLEAN", "yes", Ok(json!({"K": false}))),
        ("K STRING", "\"You\"", Ok(json!({"K": "You"}))),
        ("K DECIMAL(6,4)", "\"12.0\"", Ok(json!({"K": 12.0}))),
        (
            "DEC DECIMAL(21,19)",
            "10.1234512345123451234",
            Ok(json!({"DEC": 10.123451234512345})),
        ),
        (
            "K1 STRING, K2 STRING",
            "\"foo\",\"bar\"",
            Ok(json!({"K1": "foo", "K2": "bar"})),
        ),
        (
            "ID BIGINT, NAME STRING, VALUE INT",
            "0,zero,0",
            Ok(json!({"ID": 0, "NAME": "zero", "VALUE": 0})),
        ),
        (
            "ID INT, V INT, NAME STRING",
            ",1,bar",
            Ok(json!({"ID": null, "V": 1, "NAME": "bar"})),
        ),
        ("A STRING, B STRING", ",", Ok(json!({"A": null, "B": null}))),
        (
            "A STRING, B STRING",
            "\"say \"\"hi\"\"\",x",
            Ok(json!({"A": "say \"hi\"", "B": "x"})),
        ),
        ("D DOUBLE", "2.5", Ok(json!({"D": 2.5}))),
        ("T TIME", "10", Ok(json!({"T": 10}))),
        ("D DATE", "-10", Ok(json!({"D": -10}))),
        ("T TIMESTAMP", "1000", Ok(json!({"T": 1000}))),
        ("B BYTES", "IQ==", Ok(json!({"B": "IQ=="}))),
        (
            "ID BIGINT, NAME STRING, VALUE INT",
            "1,2",
            Err("DELIMITED value: column count mismatch: expected 3 fields, found 2"),
        ),
        ("ID INT", "1,2", Err("expected 1 fields, found 2")),
        (
            "ID INT",
            "abc",
            Err("DELIMITED value: expected an INTEGER for column `ID`, found \"abc\""),
        ),
        (
            "ID INT",
            " 1",
            Err("expected an INTEGER for column `ID`, found \" 1\""),
        ),
        (
            "ID INT",
            "3000000000",
            Err("column `ID`: 3000000000 is out of range for INTEGER"),
        ),
        ("D DOUBLE", "x", Err("expected a DOUBLE for column `D`")),
        ("DEC DECIMAL(4,2)", "100", Err("Numeric field overflow")),
        ("B BYTES", "!", Err("not valid base64")),
        (
            "A STRING, B STRING",
            "\"open,b",
            Err("field 1 has no closing quote"),
        ),
    ];
    check_decode(FormatKind::Delimited, Part::Value, cases);

    let pipes = Codec::new(
        &FormatSpec {
            delimiter: '|',
            ..FormatSpec::new(FormatKind::Delimited)
        },
        Part::Value,
        &cols("ID BIGINT, NAME STRING, VALUE INT"),
        &NoTypes,
    )
    .unwrap();
    let decoded = pipes
        .decode(&[Some(b"0|zero|0"), Some(b"0,zero,0")])
        .unwrap();
    let rows = show_rows(&cols("ID BIGINT, NAME STRING, VALUE INT"), &decoded);
    assert_eq!(rows[0], Ok(json!({"ID": 0, "NAME": "zero", "VALUE": 0})));
    assert!(rows[1]
        .as_ref()
        .is_err_and(|e| e.contains("expected 3 fields, found 1")));
}

#[test]
fn delimited_rows_encode_as_ksqldb_writes_them() {
    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }
    // (columns, arrays, delimiter, expected record)
    let cases: Vec<(&str, Vec<ArrayRef>, char, &str)> = vec![
        (
            "ID BIGINT, NAME STRING, VALUE INT",
            vec![
                Arc::new(Int64Array::from(vec![0])),
                strings(&[Some("zero")]),
                Arc::new(Int32Array::from(vec![0])),
            ],
            '$',
            "0$zero$0",
        ),
        (
            "A STRING, B BYTES, C STRING",
            vec![
                strings(&[Some("!")]),
                Arc::new(BinaryArray::from(vec![&b"!"[..]])),
                strings(&[Some("!")]),
            ],
            ',',
            "\"!\",IQ==,\"!\"",
        ),
        (
            "A STRING, B STRING, C INT, D STRING, E INT",
            vec![
                strings(&[None]),
                strings(&[None]),
                Arc::new(Int32Array::from(vec![100])),
                strings(&[Some("newblah")]),
                Arc::new(Int32Array::from(vec![150])),
            ],
            ',',
            ",,100,newblah,150",
        ),
        (
            "D DATE",
            vec![Arc::new(Date32Array::from(vec![-10]))],
            ',',
            "\"-10\"",
        ),
        (
            "D DATE",
            vec![Arc::new(Date32Array::from(vec![10]))],
            ',',
            "10",
        ),
        (
            "K DECIMAL(6,4)",
            vec![Arc::new(
                Decimal128Array::from(vec![120000_i128])
                    .with_precision_and_scale(6, 4)
                    .unwrap(),
            )],
            ',',
            "12.0000",
        ),
        (
            "A DOUBLE, B DOUBLE, C BOOLEAN",
            vec![
                Arc::new(Float64Array::from(vec![2.0])),
                Arc::new(Float64Array::from(vec![1e10])),
                Arc::new(BooleanArray::from(vec![true])),
            ],
            ' ',
            "2.0 1.0E10 true",
        ),
        (
            "A STRING, B STRING",
            vec![strings(&[Some("x")]), strings(&[Some("a\"b, c")])],
            ',',
            "x,\"a\"\"b, c\"",
        ),
        (
            "T TIME, TS TIMESTAMP",
            vec![
                Arc::new(Time32MillisecondArray::from(vec![10])),
                Arc::new(TimestampMillisecondArray::from(vec![1000])),
            ],
            '\t',
            "10\t1000",
        ),
        ("A STRING", vec![strings(&[None])], ',', ""),
    ];
    for (decl, arrays, delimiter, expected) in cases {
        let spec = FormatSpec {
            delimiter,
            ..FormatSpec::new(FormatKind::Delimited)
        };
        let c = Codec::new(&spec, Part::Value, &cols(decl), &NoTypes).unwrap();
        let out = c.encode(&arrays, 0..1).unwrap().remove(0).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), expected, "{decl}");
        // What was written reads back as the same row.
        let back = c.decode(&[Some(&out)]).unwrap();
        assert_eq!(back.error_count(), 0, "{expected}: {:?}", back.errors);
        if expected.is_empty() {
            continue;
        }
        assert_eq!(back.columns, arrays, "{decl}");
    }
}

#[test]
fn kafka_payloads_are_kafka_serializer_bytes() {
    // (type, payload, decoded row, test-file representation)
    let cases: &[(&str, &[u8], Value, Value)] = &[
        ("INT", &[0, 0, 0, 2], json!({"V": 2}), json!(2)),
        (
            "INT",
            &[0xff, 0xff, 0xff, 0xfe],
            json!({"V": -2}),
            json!(-2),
        ),
        (
            "BIGINT",
            &[0, 0, 0, 0, 0, 0, 0, 1],
            json!({"V": 1}),
            json!(1),
        ),
        (
            "DOUBLE",
            &2.2f64.to_be_bytes(),
            json!({"V": 2.2}),
            json!(2.2),
        ),
        ("STRING", b"bar", json!({"V": "bar"}), json!("bar")),
        ("STRING", b"", json!({"V": ""}), json!("")),
        (
            "BYTES",
            b"variations",
            json!({"V": "dmFyaWF0aW9ucw=="}),
            json!("dmFyaWF0aW9ucw=="),
        ),
    ];
    for (ty, payload, row, test_value) in cases {
        let decl = format!("V {ty}");
        let c = codec(FormatKind::Kafka, Part::Value, &decl);
        let decoded = c.decode(&[Some(payload), None]).unwrap();
        let rows = show_rows(&cols(&decl), &decoded);
        assert_eq!(rows, vec![Ok(row.clone()), Ok(json!({"V": null}))], "{ty}");
        assert_eq!(
            c.encode(&decoded.columns, 0..2).unwrap(),
            vec![Some(payload.to_vec()), None],
            "{ty}"
        );
        assert_eq!(
            c.payload_to_json(Some(payload)).unwrap(),
            *test_value,
            "{ty}"
        );
        assert_eq!(
            c.json_to_payload(test_value).unwrap().as_deref(),
            Some(*payload),
            "{ty}"
        );
    }
    let errors: &[(&str, &[u8], &str)] = &[
        (
            "INT",
            &[0, 0, 1],
            "KAFKA value: column `V`: expected 4 bytes for an INTEGER, found 3",
        ),
        (
            "BIGINT",
            &[0, 0, 0, 1],
            "expected 8 bytes for a BIGINT, found 4",
        ),
        ("DOUBLE", &[], "expected 8 bytes for a DOUBLE, found 0"),
    ];
    for (ty, payload, msg) in errors {
        let c = codec(FormatKind::Kafka, Part::Value, &format!("V {ty}"));
        let decoded = c.decode(&[Some(payload)]).unwrap();
        let err = decoded.errors[0]
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(msg), "{ty}: {err}");
        assert!(decoded.columns[0].is_null(0));
        assert!(c.payload_to_json(Some(payload)).is_err());
    }
}

#[test]
fn test_records_convert_to_payloads_and_back() {
    use Part::{Key, Value as Val};
    let cases: &[PayloadCase] = &[
        (
            FormatKind::Json,
            Val,
            "FOO INT",
            json!({"foo": 10}),
            Some(br#"{"foo":10}"#),
        ),
        (FormatKind::Json, Val, "FOO INT", Value::Null, None),
        (FormatKind::JsonSr, Key, "K INT", json!(42), Some(b"42")),
        (
            FormatKind::Delimited,
            Val,
            "A INT, B STRING",
            json!("0,zero"),
            Some(b"0,zero"),
        ),
        (
            FormatKind::Delimited,
            Key,
            "K BOOLEAN",
            json!("\"true\""),
            Some(b"\"true\""),
        ),
        (FormatKind::Delimited, Val, "A INT", Value::Null, None),
        (
            FormatKind::Kafka,
            Key,
            "K STRING",
            json!("hello"),
            Some(b"hello"),
        ),
        (
            FormatKind::Kafka,
            Key,
            "K INT",
            json!(1),
            Some(&[0, 0, 0, 1]),
        ),
        (
            FormatKind::Kafka,
            Key,
            "K BIGINT",
            json!(3),
            Some(&[0, 0, 0, 0, 0, 0, 0, 3]),
        ),
        (
            FormatKind::Kafka,
            Key,
            "K DOUBLE",
            json!(1.1),
            Some(&[0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]),
        ),
        (FormatKind::Kafka, Key, "K INT", Value::Null, None),
        (
            FormatKind::None,
            Key,
            "",
            json!("data that should be ignored"),
            None,
        ),
    ];
    for (kind, part, decl, value, payload) in cases {
        let c = codec(*kind, *part, decl);
        assert_eq!(
            c.json_to_payload(value).unwrap().as_deref(),
            *payload,
            "{kind} {decl} {value}"
        );
        let back = c.payload_to_json(*payload).unwrap();
        let expected = if *kind == FormatKind::None {
            Value::Null
        } else {
            value.clone()
        };
        assert_eq!(back, expected, "{kind} {decl}");
    }
    // JSON_SR payloads framed by Schema Registry (magic byte + schema id) read too.
    let sr = codec(FormatKind::JsonSr, Part::Value, "V INT");
    let framed = [&[0u8, 0, 0, 0, 7][..], br#"{"V": 5}"#].concat();
    assert_eq!(sr.payload_to_json(Some(&framed)).unwrap(), json!({"V": 5}));
    let decoded = sr.decode(&[Some(&framed)]).unwrap();
    assert_eq!(decoded.columns[0].as_primitive::<Int32Type>().value(0), 5);

    let kafka = codec(FormatKind::Kafka, Part::Key, "K INT");
    assert!(kafka.json_to_payload(&json!("x")).is_err());
    assert!(kafka.json_to_payload(&json!(3000000000_i64)).is_err());
}

#[test]
fn failed_records_become_null_rows_and_the_others_go_on() {
    let decl = "ID INT, A ARRAY<STRUCT<X INT, S STRING>>, M MAP<STRING, STRING>";
    let c = codec(FormatKind::Json, Part::Value, decl);
    let payloads: Vec<Option<&[u8]>> = vec![
        Some(br#"{"ID": 1, "A": [{"X": 1, "S": "a"}], "M": {"k": "v"}}"#),
        // Fails on the third array item, after appending items, strings and a map.
        Some(br#"{"ID": 2, "M": {"k": "v"}, "A": [{"X": 2, "S": "b"}, {"X": 3, "S": "c"}, {"X": "bad"}]}"#),
        None,
        Some(br#"{"ID": 4, "A": [{"X": 4, "S": "d"}], "M": {}}"#),
        Some(b"not json"),
    ];
    let decoded = c.decode(&payloads).unwrap();
    assert_eq!(decoded.error_count(), 2);
    let rows = show_rows(&cols(decl), &decoded);
    assert_eq!(
        rows[0],
        Ok(json!({"ID": 1, "A": [{"X": 1, "S": "a"}], "M": {"k": "v"}}))
    );
    assert_eq!(
        rows[1],
        Err("JSON value: expected an INTEGER for column `A`[2].`X`, found \"bad\"".to_string())
    );
    assert_eq!(rows[2], Ok(json!({"ID": null, "A": null, "M": null})));
    assert_eq!(
        rows[3],
        Ok(json!({"ID": 4, "A": [{"X": 4, "S": "d"}], "M": {}}))
    );
    assert!(rows[4].as_ref().is_err_and(|e| e.contains("invalid JSON")));
    for column in &decoded.columns {
        assert_eq!(column.len(), 5);
        assert!(column.is_null(1) && column.is_null(2) && column.is_null(4));
    }
    // Items of the failed record were dropped, so the next record's are its own.
    assert_eq!(
        decoded.columns[1].as_list::<i32>().value_offsets(),
        &[0, 1, 1, 1, 2, 2]
    );
    let mask = decoded.ok_mask().unwrap();
    assert_eq!(
        mask.iter().collect::<Vec<_>>(),
        [true, false, true, true, false].map(Some).to_vec()
    );
    assert!(c.decode(&payloads[..1]).unwrap().ok_mask().is_none());
}

#[test]
fn json_round_trips_every_type() {
    let decl = "B BOOLEAN, I INT, L BIGINT, D DOUBLE, DEC DECIMAL(10,3), S STRING, BY BYTES, \
                T TIME, DT DATE, TS TIMESTAMP, A ARRAY<ARRAY<INT>>, M MAP<STRING, DECIMAL(4,2)>, \
                ST STRUCT<`in` STRING, N STRUCT<Z BIGINT>>";
    let columns = cols(decl);
    let c = codec(FormatKind::Json, Part::Value, decl);
    let payloads: Vec<&[u8]> = vec![
        br#"{"B": true, "I": -5, "L": 9007199254740993, "D": 1.0E-10, "DEC": "-1234567.891",
             "S": "\u00e9\ud83d\ude00 \"q\" \\ \t", "BY": "AAEC/w==", "T": 86399999, "DT": 19000,
             "TS": -1, "A": [[1, null], null, []], "M": {"x": 1.5, "y": null},
             "ST": {"in": "v", "N": {"Z": 7}}}"#,
        br#"{"D": NaN}"#,
        br#"{"D": "NaN", "B": false, "S": "", "A": [], "M": {}, "ST": {}}"#,
        b"{}",
    ];
    let payloads: Vec<Option<&[u8]>> = payloads.into_iter().map(Some).collect();
    let first = c.decode(&payloads).unwrap();
    // NaN is not JSON: only the quoted form decodes.
    assert_eq!(first.error_count(), 1, "{:?}", first.errors);
    let written = c.encode(&first.columns, 0..payloads.len()).unwrap();
    let again: Vec<Option<&[u8]>> = written.iter().map(|p| p.as_deref()).collect();
    let second = c.decode(&again).unwrap();
    assert_eq!(second.error_count(), 0, "{:?}", second.errors);
    for (a, b) in first.columns.iter().zip(&second.columns) {
        // NaN != NaN, so compare doubles by their text.
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
    let text = String::from_utf8(written[0].clone().unwrap()).unwrap();
    assert!(text.contains(r#""L":9007199254740993"#), "{text}");
    assert!(text.contains(r#""D":1.0E-10"#), "{text}");
    assert!(text.contains(r#""DEC":-1234567.891"#), "{text}");
    assert!(text.contains(r#""M":{"x":1.50,"y":null}"#), "{text}");
    assert!(text.contains(r#""ST":{"in":"v","N":{"Z":7}}"#), "{text}");
    let nan = String::from_utf8(written[2].clone().unwrap()).unwrap();
    assert!(nan.contains(r#""D":"NaN""#), "{nan}");
    assert_eq!(
        show_rows(&columns, &second)[3],
        Ok(
            json!({"B": null, "I": null, "L": null, "D": null, "DEC": null, "S": null,
                  "BY": null, "T": null, "DT": null, "TS": null, "A": null, "M": null,
                  "ST": null})
        )
    );
}

#[test]
fn decoded_columns_have_the_planner_arrow_types() {
    let decl = "B BOOLEAN, DEC DECIMAL(6,4), TS TIMESTAMP, M MAP<STRING, INT>";
    let c = codec(FormatKind::Json, Part::Value, decl);
    let decoded = c
        .decode(&[Some(br#"{"B": true, "DEC": 1.5, "TS": 3, "M": {"a": 1}}"#)])
        .unwrap();
    for (array, field) in decoded.columns.iter().zip(c.fields().iter()) {
        assert_eq!(array.data_type(), field.data_type(), "{}", field.name());
    }
    let dec = decoded.columns[1].as_primitive::<Decimal128Type>();
    assert_eq!((dec.value(0), dec.precision(), dec.scale()), (15000, 6, 4));
}

#[test]
fn encode_converts_arrays_of_other_types_and_checks_shapes() {
    let c = codec(FormatKind::Json, Part::Value, "I INT, S STRING");
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2])),
        Arc::new(LargeStringArray::from(vec!["a", "b"])),
    ];
    let out = c.encode(&arrays, 1..2).unwrap();
    assert_eq!(out, vec![Some(br#"{"I":2,"S":"b"}"#.to_vec())]);
    let e = c.encode(&arrays[..1], 0..1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "JSON value: cannot encode: expected 2 column arrays, got 1"
    );
    assert!(c.encode(&arrays, 0..3).is_err());
    let bad: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from(vec![&b"x"[..]])),
        Arc::new(StringArray::from(vec!["a"])),
    ];
    let e = c.encode(&bad, 0..1).unwrap_err();
    assert!(
        e.to_string()
            .contains("column `I`: cannot convert Binary to INTEGER"),
        "{e}"
    );
}

#[test]
fn custom_types_resolve_through_the_registry() {
    struct Address;
    impl TypeRegistry for Address {
        fn resolve(&self, name: &str) -> Option<Type> {
            (name == "ADDRESS").then(|| brook_sql::parse_type("STRUCT<CITY STRING>").unwrap())
        }
    }
    let columns = vec![col("A", "ADDRESS")];
    let c = Codec::new(
        &spec(FormatKind::Json, None),
        Part::Value,
        &columns,
        &Address,
    )
    .unwrap();
    let decoded = c.decode(&[Some(br#"{"a": {"city": "Oslo"}}"#)]).unwrap();
    let s = decoded.columns[0].as_struct();
    assert_eq!(s.column(0).as_string::<i32>().value(0), "Oslo");
    let e = Codec::new(
        &spec(FormatKind::Json, None),
        Part::Value,
        &columns,
        &NoTypes,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "unknown type `ADDRESS`");
}

// ---------------------------------------------------------------------------------------
// Schema inference: `CREATE STREAM/TABLE` without columns, through a driver's registry.

mod inference {
    use super::registry::register_for_format;
    use super::*;
    use crate::driver::Driver;

    /// `NAME TYPE [KEY]` of a source's columns, as ksqlDB's DESCRIBE lists them.
    fn described(d: &Driver, source: &str) -> Vec<String> {
        let src = &d.catalog().sources[source];
        src.schema
            .columns
            .iter()
            .map(|c| {
                let key = if c.namespace == Namespace::Key {
                    " KEY"
                } else {
                    ""
                };
                format!(
                    "{} {}{key}",
                    c.name,
                    brook_planner::schema::SchemaType(&c.ty)
                )
            })
            .collect()
    }

    fn register(d: &Driver, subject: &str, kind: FormatKind, schema: Value, id: Option<u32>) {
        register_for_format(d.registry().as_ref(), subject, kind, &schema, &[], id)
            .expect("registers");
    }

    const KEYS: &str =
        "syntax = \"proto3\"; message K1 { uint32 a = 1; } message K2 { string k = 1; }";
    const VALUES: &str = "syntax = \"proto3\"; message V1 { float c1 = 1; } message V2 { uint64 id = 1; string name = 2; }";

    #[test]
    fn protobuf_columns_come_from_the_topics_subjects() {
        let mut d = Driver::new();
        register(&d, "t-key", FormatKind::Protobuf, json!(KEYS), None);
        register(&d, "t-value", FormatKind::Protobuf, json!(VALUES), None);
        d.execute("CREATE TABLE T WITH (kafka_topic='t', format='PROTOBUF', partitions=1);")
            .expect("infers");
        // The first message of each schema, fields upper-cased; protobuf keys are messages
        // whose fields are the key columns.
        assert_eq!(described(&d, "T"), ["A BIGINT KEY", "C1 DOUBLE"]);
        d.execute(
            "CREATE TABLE U WITH (kafka_topic='t', format='PROTOBUF', \
             KEY_SCHEMA_FULL_NAME='K2', VALUE_SCHEMA_FULL_NAME='V2');",
        )
        .expect("infers");
        assert_eq!(
            described(&d, "U"),
            ["K STRING KEY", "ID BIGINT", "NAME STRING"]
        );
    }

    #[test]
    fn schema_ids_name_the_schema_and_keep_field_names() {
        let mut d = Driver::new();
        register(
            &d,
            "other-key",
            FormatKind::JsonSr,
            json!({"type": "integer", "connect.type": "int32"}),
            Some(7),
        );
        register(
            &d,
            "other-value",
            FormatKind::JsonSr,
            json!({"type": "object", "properties": {"name": {"type": "string"}, "s": {"type": "object", "properties": {"f": {"type": "number"}}}}}),
            Some(8),
        );
        d.execute(
            "CREATE STREAM S WITH (kafka_topic='s', format='JSON_SR', KEY_SCHEMA_ID=7, VALUE_SCHEMA_ID=8, partitions=1);",
        )
        .expect("infers");
        // JSON_SR keys are a single ROWKEY column.
        assert_eq!(
            described(&d, "S"),
            ["ROWKEY INTEGER KEY", "name STRING", "s STRUCT<`f` DOUBLE>"]
        );
    }

    #[test]
    fn inference_errors_are_ksqldbs() {
        let mut d = Driver::new();
        register(&d, "t-key", FormatKind::Protobuf, json!(KEYS), None);
        register(&d, "t-value", FormatKind::Protobuf, json!(VALUES), None);
        let err = |d: &mut Driver, sql: &str| match d.execute(sql) {
            Ok(()) => panic!("{sql} should fail"),
            Err(e) => e.to_string(),
        };
        let e = err(
            &mut d,
            "CREATE STREAM A WITH (kafka_topic='t', key_format='KAFKA', value_format='PROTOBUF', KEY_SCHEMA_ID=1);",
        );
        assert!(e.contains("KEY_FORMAT should support schema inference when KEY_SCHEMA_ID is provided. Current format is KAFKA."), "{e}");
        let e = err(
            &mut d,
            "CREATE STREAM A (C INT) WITH (kafka_topic='t', format='PROTOBUF', VALUE_SCHEMA_ID=2);",
        );
        assert!(
            e.contains(
                "Table elements and VALUE_SCHEMA_ID cannot both exist for create statement."
            ),
            "{e}"
        );
        let e = err(
            &mut d,
            "CREATE STREAM A WITH (kafka_topic='nothing', value_format='PROTOBUF');",
        );
        assert!(e.contains("Schema for message values on topic 'nothing' does not exist in the Schema Registry."), "{e}");
        let e = err(
            &mut d,
            "CREATE STREAM A WITH (kafka_topic='t', value_format='PROTOBUF', VALUE_SCHEMA_FULL_NAME='Missing');",
        );
        assert!(e.contains("no message named Missing"), "{e}");
        let e = err(
            &mut d,
            "CREATE STREAM A WITH (kafka_topic='t', value_format='JSON_SR');",
        );
        assert!(
            e.contains("PROTOBUF schema, but the value format is JSON_SR"),
            "{e}"
        );
        let e = err(
            &mut d,
            "CREATE STREAM A (V INT) WITH (kafka_topic='t', value_format='JSON', VALUE_AVRO_SCHEMA_FULL_NAME='x.y');",
        );
        assert!(
            e.contains("JSON does not support the following configs: [fullSchemaName]"),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bytes written by Confluent's serializers

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A payload written by Confluent's serializer, what Brook reads from it, and whether
/// Brook writes the same bytes for that row (AVRO with the same schema; PROTOBUF after the
/// framing, whose schema id and message indexes differ).
struct Vector<'a> {
    kind: FormatKind,
    part: Part,
    columns: &'a str,
    /// The AVRO writer schema, registered as id 1 (the id the payload names).
    avro_schema: Option<&'a str>,
    hex: &'a str,
    row: Value,
    same_bytes: bool,
}

/// ksqlDB's writer schema of `confluent_vector_columns` (what Brook generates too).
const KSQL_AVRO_SCHEMA: &str = r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[{"name":"B","type":["null","boolean"],"default":null},{"name":"I","type":["null","int"],"default":null},{"name":"L","type":["null","long"],"default":null},{"name":"D","type":["null","double"],"default":null},{"name":"DEC","type":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":4}],"default":null},{"name":"S","type":["null","string"],"default":null},{"name":"BY","type":["null","bytes"],"default":null},{"name":"T","type":["null",{"type":"int","logicalType":"time-millis"}],"default":null},{"name":"DT","type":["null",{"type":"int","logicalType":"date"}],"default":null},{"name":"TS","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},{"name":"A","type":["null",{"type":"array","items":["null","int"]}],"default":null},{"name":"M","type":["null",{"type":"map","values":["null","double"]}],"default":null},{"name":"ST","type":["null",{"type":"record","name":"KsqlDataSourceSchema_ST","fields":[{"name":"F0","type":["null","int"],"default":null},{"name":"lower","type":["null","string"],"default":null}]}],"default":null}]}"#;

const FOREIGN_AVRO_SCHEMA: &str = r#"{"type":"record","name":"blah","fields":[{"name":"c1","type":"float"},{"name":"Suit","type":{"type":"enum","name":"S","symbols":["H","S"]}},{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":5,"scale":3}},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"m","type":{"type":"array","items":{"type":"record","name":"E","fields":[{"name":"key","type":"string"},{"name":"value","type":"int"}]}}},{"name":"ignored","type":"string"}]}"#;

/// Fixed vectors written by confluent-kafka 2.16.1's AvroSerializer and ProtobufSerializer
/// against its mock Schema Registry (ids from 1): `runtime/tests/data/confluent_vectors.py`
/// writes them. Unlike round trips through Brook's own codec, they catch an encoder and
/// decoder that agree with each other but not with Confluent.
#[test]
fn confluent_serializers_bytes_decode() {
    const AVRO_COLUMNS: &str = "B BOOLEAN, I INT, L BIGINT, D DOUBLE, DEC DECIMAL(6, 4), \
        S STRING, BY BYTES, T TIME, DT DATE, TS TIMESTAMP, A ARRAY<INT>, \
        M MAP<STRING, DOUBLE>, ST STRUCT<F0 INT, `lower` STRING>";
    const PROTO_COLUMNS: &str = "I INT, L BIGINT, D DOUBLE, B BOOLEAN, S STRING, BY BYTES, \
        A ARRAY<INT>, M MAP<STRING, DOUBLE>, ST STRUCT<F0 INT, `lower` STRING>, \
        DEC DECIMAL(6, 4), DT DATE, T TIME, TS TIMESTAMP";
    let all = json!({
        "B": true, "I": -7, "L": 998877665544332211i64, "D": 1.5, "DEC": 12.365,
        "S": "héllo", "BY": "dmFyaWF0aW9ucw==", "T": 3_600_000, "DT": 19_000,
        "TS": 1_700_000_000_000i64, "A": [1, null, 3], "M": {"a": 1.1, "b": null},
        "ST": {"F0": 1, "lower": "x"},
    });
    let nulls: serde_json::Map<String, Value> = cols(AVRO_COLUMNS)
        .iter()
        .map(|c| (c.name.clone(), Value::Null))
        .collect();
    let vectors = [
        Vector {
            kind: FormatKind::Avro,
            part: Part::Value,
            columns: AVRO_COLUMNS,
            avro_schema: Some(KSQL_AVRO_SCHEMA),
            hex: "00000000010201020d02e68ebbcdb9fcdcdc1b02000000000000f83f020601e302020c68c3a96c\
                  6c6f0214766172696174696f6e730280bab70302f0a8020280a0abfef962020602020002060002\
                  040261029a9999999999f13f02620000020202020278",
            row: all,
            same_bytes: true,
        },
        Vector {
            kind: FormatKind::Avro,
            part: Part::Value,
            columns: AVRO_COLUMNS,
            avro_schema: Some(KSQL_AVRO_SCHEMA),
            hex: "000000000100000000000000000000000000",
            row: Value::Object(nulls),
            same_bytes: true,
        },
        Vector {
            kind: FormatKind::Avro,
            part: Part::Key,
            columns: "K STRING",
            avro_schema: Some(r#""string""#),
            hex: "000000000106666f6f",
            row: json!("foo"),
            same_bytes: true,
        },
        Vector {
            kind: FormatKind::Avro,
            part: Part::Value,
            columns: "C1 DOUBLE, SUIT STRING, DEC DECIMAL(6, 2), TS TIMESTAMP, \
                      M MAP<STRING, INT>",
            avro_schema: Some(FOREIGN_AVRO_SCHEMA),
            hex: "000000000100008040020430398e9db70102026b06000278",
            // 12.345 at scale 2 rounds half up; microseconds truncate to milliseconds.
            row: json!({"C1": 4.0, "SUIT": "S", "DEC": 12.35, "TS": 1500, "M": {"k": 3}}),
            same_bytes: false,
        },
        // The message is the file's second: the message-index path is [1].
        Vector {
            kind: FormatKind::Protobuf,
            part: Part::Value,
            columns: PROTO_COLUMNS,
            avro_schema: None,
            hex: "0000000001020208f9ffffffffffffffff0110b3c7dde69cbeaeee0d19000000000000f83f2001\
                  2a0668c3a96c6c6f320a766172696174696f6e733a03010003420c0a0161119a9999999999f13f\
                  4a05080112017852090a0301e302100618045a0708e60f10011808620208016a060880e2cfaa06",
            row: json!({
                "I": -7, "L": 998877665544332211i64, "D": 1.5, "B": true, "S": "héllo",
                "BY": "dmFyaWF0aW9ucw==", "A": [1, 0, 3], "M": {"a": 1.1},
                "ST": {"F0": 1, "lower": "x"}, "DEC": 12.365, "DT": 19_000, "T": 3_600_000,
                "TS": 1_700_000_000_000i64,
            }),
            same_bytes: true,
        },
        Vector {
            kind: FormatKind::Protobuf,
            part: Part::Value,
            columns: PROTO_COLUMNS,
            avro_schema: None,
            hex: "00000000010202",
            row: json!({
                "I": 0, "L": 0, "D": 0.0, "B": false, "S": "", "BY": "", "A": [], "M": {},
                "ST": null, "DEC": null, "DT": null, "T": null, "TS": null,
            }),
            same_bytes: true,
        },
        // A nested message: the message-index path is [1, 0].
        Vector {
            kind: FormatKind::Protobuf,
            part: Part::Value,
            columns: "F0 INT, `lower` STRING",
            avro_schema: None,
            hex: "00000000010402000805120179",
            row: json!({"F0": 5, "lower": "y"}),
            same_bytes: true,
        },
    ];
    for v in vectors {
        let what = format!("{} {} {}", v.kind, v.part, v.columns);
        let registry = Arc::new(registry::InMemoryRegistry::new());
        if let Some(s) = v.avro_schema {
            let s = serde_json::from_str(s).expect("schema JSON");
            assert_eq!(
                registry::register_json(registry.as_ref(), "other", &s).unwrap(),
                1
            );
        }
        let c = codec(v.kind, v.part, v.columns).with_registry(registry, "t");
        let payload = unhex(v.hex);
        assert_eq!(c.payload_to_json(Some(&payload)).unwrap(), v.row, "{what}");
        if v.same_bytes {
            let ours = c.json_to_payload(&v.row).unwrap().expect("a payload");
            let (theirs, ours) = match v.kind {
                // Confluent frames with id 1 and the message's index path; Brook with id 0
                // and [0]. The messages must be the same bytes.
                // (The vectors' index paths are short: a count and indexes of a byte each.)
                FormatKind::Protobuf => (&payload[6 + usize::from(payload[5] / 2)..], &ours[6..]),
                _ => (&payload[..], &ours[..]),
            };
            assert_eq!(theirs, ours, "{what}");
        }
    }
}

/// Documents nested 100,000 deep, in every place a decoder meets them (a column's value,
/// a field no column reads, a bare value, an ARRAY read element by element, nested JSON
/// kept as text): each record fails alone, naming the byte, without exhausting the stack.
#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    const DEEP: usize = 100_000;
    let arrays = format!("{}1{}", "[".repeat(DEEP), "]".repeat(DEEP));
    let objects = format!("{}1{}", "{\"a\":".repeat(DEEP), "}".repeat(DEEP));
    let unclosed = "[".repeat(DEEP);
    let cases: Vec<(FormatKind, Part, &str, String)> = vec![
        (
            FormatKind::Json,
            Part::Value,
            "V STRING",
            format!("{{\"V\": {arrays}}}"),
        ),
        (
            FormatKind::Json,
            Part::Value,
            "V STRING, W INT",
            format!("{{\"X\": {objects}, \"W\": 1}}"),
        ),
        (
            FormatKind::Json,
            Part::Value,
            "V ARRAY<ARRAY<INT>>",
            format!("{{\"V\": {arrays}}}"),
        ),
        (FormatKind::Json, Part::Key, "K STRING", arrays.clone()),
        (
            FormatKind::Json,
            Part::Key,
            "K STRUCT<A INT>",
            objects.clone(),
        ),
        (
            FormatKind::JsonSr,
            Part::Value,
            "V STRING",
            format!("\0\0\0\0\x01{{\"V\":{unclosed}"),
        ),
        (FormatKind::Json, Part::Value, "V STRING", unclosed.clone()),
    ];
    for (kind, part, decl, payload) in &cases {
        let c = codec(*kind, *part, decl);
        let d = c
            .decode(&[Some(payload.as_bytes()), Some(b"null")])
            .expect("decodes");
        let e = d.errors[0]
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("invalid JSON: nesting too deep at byte"),
            "{kind} {decl}: {e}"
        );
        assert!(
            d.errors[1].is_none(),
            "{kind} {decl}: the next record decodes"
        );
    }
}

//! SQL expressions: arbitrary UTF-8 as the expression of `SELECT … FROM` a stream with a
//! column of every type, compiled by the planner (`Scope::compile`), planned onto
//! DataFusion (`expr::physical`) and evaluated on a batch of two rows (values, then NULLs),
//! on a thread with a tokio worker's 2 MiB stack. The value must have the Arrow type of
//! the ksqlDB type the planner gave it.
#![no_main]
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use brook_planner::expr::{physical, Scope, ScopeColumn};
use brook_planner::format::{FormatKind, FormatSpec};
use brook_planner::schema::{Column, Namespace};
use brook_planner::types::{arrow_type, NoTypes};
use brook_runtime::format::{Codec, Part};
use libfuzzer_sys::fuzz_target;

/// The columns, with the values of the first row (the second is all NULL).
const COLUMNS: &[(&str, &str, &str)] = &[
    ("S", "STRING", r#""Hello World""#),
    ("I", "INT", "7"),
    ("L", "BIGINT", "-12345"),
    ("D", "DOUBLE", "-2.5"),
    ("DEC", "DECIMAL(5, 2)", "-123.45"),
    ("BO", "BOOLEAN", "true"),
    ("B", "BYTES", r#""eWVz""#),
    (
        "J",
        "STRING",
        r#""{\"a\": {\"b\": [1, 2.5, \"x\"]}, \"k\": null}""#,
    ),
    ("T", "TIME", "3600000"),
    ("DT", "DATE", "19000"),
    ("TS", "TIMESTAMP", "1700000000000"),
    ("NUMS", "ARRAY<INT>", "[3, 6, null]"),
    ("STRS", "ARRAY<STRING>", r#"["a", "bc"]"#),
    ("M", "MAP<STRING, INT>", r#"{"a": 15, "abc": 7}"#),
    (
        "ST",
        "STRUCT<X INT, Y ARRAY<STRING>, Z STRUCT<W DOUBLE>>",
        r#"{"X": 1, "Y": ["q"], "Z": {"W": 0.5}}"#,
    ),
];

struct Input {
    columns: Vec<ScopeColumn>,
    schema: SchemaRef,
    batch: RecordBatch,
}

fn input() -> &'static Input {
    static INPUT: OnceLock<Input> = OnceLock::new();
    INPUT.get_or_init(|| {
        let cols: Vec<Column> = COLUMNS
            .iter()
            .map(|(n, t, _)| {
                let ty = brook_sql::parse_type(t).expect("fuzz column types parse");
                Column::new(*n, ty, Namespace::Value)
            })
            .collect();
        let codec = Codec::new(
            &FormatSpec::new(FormatKind::Json),
            Part::Value,
            &cols,
            &NoTypes,
        )
        .expect("a JSON codec");
        let row = COLUMNS
            .iter()
            .map(|(n, _, v)| format!("\"{n}\": {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = format!("{{{row}}}");
        let nulls = "{}";
        let decoded = codec
            .decode(&[Some(row.as_bytes()), Some(nulls.as_bytes())])
            .expect("the fuzz rows decode");
        assert!(
            decoded.errors.iter().all(Option::is_none),
            "{:?}",
            decoded.errors
        );
        let fields: Vec<Field> = cols
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(&c.ty, &NoTypes).expect("type"), true))
            .collect();
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let arrays: Vec<ArrayRef> = decoded.columns;
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).expect("the fuzz batch");
        let columns = cols
            .iter()
            .map(|c| ScopeColumn {
                name: c.name.clone(),
                qualifiers: vec!["S".into()],
                ty: c.ty.clone(),
                field: c.name.clone(),
            })
            .collect();
        Input {
            columns,
            schema,
            batch,
        }
    })
}

fn check(text: String) {
    let input = input();
    // The expression as a statement's projection: the statement's limits apply.
    let Ok(mut parsed) = brook_sql::parse(&format!("SELECT {text} FROM S;")) else {
        return;
    };
    let Some(brook_sql::Statement::Query(q)) = parsed.pop().map(|p| p.statement) else {
        return;
    };
    let Some(brook_sql::sqlparser::ast::SelectItem::UnnamedExpr(e)) = q.projection.first() else {
        return;
    };
    let scope = Scope {
        columns: input.columns.clone(),
        types: &NoTypes,
    };
    let Ok(t) = scope.compile(e) else {
        return;
    };
    let Ok(p) = physical(&t.expr, &input.schema) else {
        return;
    };
    let Ok(v) = p.evaluate(&input.batch) else {
        return;
    };
    let Ok(out) = v.into_array(input.batch.num_rows()) else {
        return;
    };
    if let Some(ty) = &t.ty {
        let want = arrow_type(ty, &NoTypes).expect("a planned type has an Arrow type");
        // Field names and nullability of nested types may differ; the shape may not.
        assert!(
            out.data_type().equals_datatype(&want) || same_shape(out.data_type(), &want),
            "{text}: {ty} planned as {want}, evaluated to {}",
            out.data_type()
        );
    }
}

fn same_shape(a: &arrow::datatypes::DataType, b: &arrow::datatypes::DataType) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_string();
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(text))
        .expect("thread starts");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
});

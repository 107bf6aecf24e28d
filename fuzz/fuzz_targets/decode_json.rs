//! JSON and JSON_SR payloads: arbitrary bytes through `Codec::decode` for a few column
//! layouts, and JSON_SR schemas (text, a zero byte, then the payload) through column
//! inference and then decoding.
#![no_main]
use std::sync::Arc;

use brook_planner::format::FormatKind;
use brook_runtime::format::registry::{self, InMemoryRegistry, Inference, SchemaRegistry};
use brook_runtime::format::Part;
use libfuzzer_sys::fuzz_target;

mod decode_common;
use decode_common::{check, codec, columns, inferred};

const LAYOUTS: &[&[(&str, &str)]] = &[
    &[
        ("B", "BOOLEAN"),
        ("I", "INT"),
        ("L", "BIGINT"),
        ("D", "DOUBLE"),
        ("S", "STRING"),
    ],
    &[
        ("DEC", "DECIMAL(10, 3)"),
        ("BY", "BYTES"),
        ("T", "TIME"),
        ("DT", "DATE"),
        ("TS", "TIMESTAMP"),
    ],
    &[
        ("A", "ARRAY<ARRAY<INT>>"),
        ("M", "MAP<STRING, ARRAY<DOUBLE>>"),
    ],
    &[
        (
            "ST",
            "STRUCT<A STRUCT<B ARRAY<STRUCT<C STRING>>>, `d` MAP<STRING, INT>>",
        ),
        ("S", "STRING"),
    ],
    &[("V", "ARRAY<STRING>")],
    &[("V", "DECIMAL(38, 38)")],
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x80 != 0 {
        return json_schema(rest);
    }
    let layout = columns(LAYOUTS[usize::from(first) % LAYOUTS.len()]);
    let kind = if first & 0x40 != 0 {
        FormatKind::JsonSr
    } else {
        FormatKind::Json
    };
    // Single columns are read wrapped and bare.
    let wrap = (layout.len() == 1).then_some(first & 0x20 != 0);
    if let Some(c) = codec(kind, Part::Value, wrap, &layout) {
        check(&c, rest);
    }
});

/// A JSON schema, a zero byte, a payload: the schema's columns, then the payload.
fn json_schema(data: &[u8]) {
    let (text, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(schema) = registry::wire::parse(Some("JSON"), text, Vec::new(), Vec::new()) else {
        return;
    };
    let r: Arc<dyn SchemaRegistry> = Arc::new(InMemoryRegistry::new());
    if r.register_schema("fuzz-value", schema.clone(), None)
        .is_err()
    {
        return;
    }
    for unwrapped in [false, true] {
        let how = Inference {
            unwrapped,
            single: "ROWVAL",
            upper: true,
            full_name: None,
        };
        let Some(cols) = registry::ksql_columns(&schema, &how)
            .ok()
            .and_then(|d| inferred(&d))
        else {
            continue;
        };
        if let Some(c) = codec(
            FormatKind::JsonSr,
            Part::Value,
            unwrapped.then_some(false),
            &cols,
        ) {
            check(&c, payload);
        }
    }
}

//! PROTOBUF and PROTOBUF_NOSR payloads. Brook reads fields by number with the columns'
//! types (the message's descriptor, in effect). The first byte picks the mode:
//! - below 0x80: one of a fixed set of column layouts (nested messages, repeated
//!   messages, maps of arrays, the well-known types), PROTOBUF with 0x40 set (framed),
//!   else PROTOBUF_NOSR;
//! - from 0x80: a `.proto` schema as text, a zero byte, then the message: the schema's
//!   first message gives the columns (as `CREATE STREAM` infers them, which refuses
//!   recursive and too deeply nested messages), then the message is decoded.
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
        ("BY", "BYTES"),
    ],
    &[
        ("DEC", "DECIMAL(10, 3)"),
        ("T", "TIME"),
        ("DT", "DATE"),
        ("TS", "TIMESTAMP"),
    ],
    &[
        ("A", "ARRAY<ARRAY<INT>>"),
        ("M", "MAP<STRING, ARRAY<DOUBLE>>"),
        ("AM", "ARRAY<MAP<STRING, BOOLEAN>>"),
    ],
    &[(
        "ST",
        "STRUCT<A STRUCT<B ARRAY<STRUCT<C STRING, D DECIMAL(4, 2)>>>, `d` MAP<STRING, DATE>>",
    )],
    &[("K", "STRING")],
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x80 != 0 {
        return schema_and_message(rest);
    }
    let cols = columns(LAYOUTS[usize::from(first & 0x3F) % LAYOUTS.len()]);
    let kind = if first & 0x40 != 0 {
        FormatKind::Protobuf
    } else {
        FormatKind::ProtobufNoSr
    };
    for part in [Part::Value, Part::Key] {
        if let Some(c) = codec(kind, part, None, &cols) {
            check(&c, rest);
        }
    }
});

/// A `.proto` schema, a zero byte, a framed message.
fn schema_and_message(data: &[u8]) {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let Ok(schema) = registry::wire::parse(Some("PROTOBUF"), text, Vec::new(), Vec::new()) else {
        return;
    };
    let r: Arc<dyn SchemaRegistry> = Arc::new(InMemoryRegistry::new());
    if r.register_schema("fuzz-value", schema.clone(), None)
        .is_err()
    {
        return;
    }
    let how = Inference {
        unwrapped: false,
        single: "ROWVAL",
        upper: true,
        full_name: None,
    };
    let Some(cols) = registry::ksql_columns(&schema, &how)
        .ok()
        .and_then(|d| inferred(&d))
    else {
        return;
    };
    if let Some(c) = codec(FormatKind::Protobuf, Part::Value, None, &cols) {
        check(&c, &data[split + 1..]);
    }
}

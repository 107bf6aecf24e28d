//! AVRO payloads. The first byte picks the mode:
//! - below 0x80: one of a fixed set of writer schemas (registered in the codec's registry),
//!   the rest is the datum after the header naming it (or, with 0x40 set, the whole
//!   payload, header included);
//! - from 0x80: a writer schema given as text, a zero byte, then the datum: the schema goes
//!   through registration (the REST API's parsing and checks), column inference, and then
//!   decoding.
#![no_main]
use std::sync::Arc;

use brook_planner::format::FormatKind;
use brook_runtime::format::registry::{self, InMemoryRegistry, Inference, SchemaRegistry};
use brook_runtime::format::Part;
use libfuzzer_sys::fuzz_target;

mod decode_common;
use decode_common::{check, codec, columns, inferred, with_registry};

/// (writer schema, columns read from it, unwrapped)
const SCHEMAS: &[(&str, &[(&str, &str)], bool)] = &[
    (
        r#"{"type":"record","name":"R","fields":[{"name":"V","type":"int"},
           {"name":"A","type":{"type":"array","items":"long"}},
           {"name":"M","type":{"type":"map","values":["null","string"]}}]}"#,
        &[
            ("V", "INT"),
            ("A", "ARRAY<BIGINT>"),
            ("M", "MAP<STRING, STRING>"),
        ],
        false,
    ),
    (
        r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[
           {"name":"B","type":["null","boolean"],"default":null},
           {"name":"D","type":["null","double"],"default":null},
           {"name":"DEC","type":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":4}],"default":null},
           {"name":"S","type":["null","string"],"default":null},
           {"name":"BY","type":["null","bytes"],"default":null},
           {"name":"T","type":["null",{"type":"int","logicalType":"time-millis"}],"default":null},
           {"name":"DT","type":["null",{"type":"int","logicalType":"date"}],"default":null},
           {"name":"TS","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
           {"name":"ST","type":["null",{"type":"record","name":"KsqlDataSourceSchema_ST","fields":[
              {"name":"F0","type":["null","int"],"default":null}]}],"default":null}]}"#,
        &[
            ("B", "BOOLEAN"),
            ("D", "DOUBLE"),
            ("DEC", "DECIMAL(6, 4)"),
            ("S", "STRING"),
            ("BY", "BYTES"),
            ("T", "TIME"),
            ("DT", "DATE"),
            ("TS", "TIMESTAMP"),
            ("ST", "STRUCT<F0 INT>"),
        ],
        false,
    ),
    (
        r#"{"type":"record","name":"F","fields":[{"name":"f","type":"float"},
           {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
           {"name":"x","type":{"type":"fixed","name":"X","size":4}},
           {"name":"d","type":{"type":{"type":"fixed","name":"DX","size":3},"logicalType":"decimal","precision":6,"scale":2}},
           {"name":"big","type":{"type":"bytes","logicalType":"big-decimal"}},
           {"name":"u","type":{"type":"string","logicalType":"uuid"}},
           {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
           {"name":"kv","type":{"type":"array","items":{"type":"record","name":"KV","fields":[
              {"name":"key","type":["null","string"]},{"name":"value","type":"int"}]}}},
           {"name":"again","type":["null","KV"]}]}"#,
        &[
            ("F", "DOUBLE"),
            ("E", "STRING"),
            ("X", "BYTES"),
            ("D", "DECIMAL(8, 1)"),
            ("BIG", "DECIMAL(20, 5)"),
            ("U", "STRING"),
            ("US", "TIMESTAMP"),
            ("KV", "MAP<STRING, INT>"),
            ("AGAIN", "STRUCT<KEY STRING, VALUE INT>"),
        ],
        false,
    ),
    (
        r#"{"type":"array","items":{"type":"array","items":["null",{"type":"map","values":"null"}]}}"#,
        &[("V", "ARRAY<ARRAY<MAP<STRING, STRING>>>")],
        true,
    ),
    (
        r#"["null","string","long","double"]"#,
        &[("V", "STRING")],
        true,
    ),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x80 != 0 {
        return schema_and_datum(rest);
    }
    let r: Arc<dyn SchemaRegistry> = Arc::new(InMemoryRegistry::new());
    let (schema, decl, unwrapped) = SCHEMAS[usize::from(first & 0x3F) % SCHEMAS.len()];
    let json = serde_json::from_str(schema).expect("the fuzz schemas are JSON");
    let id = registry::register_json(r.as_ref(), "fuzz-value", &json).expect("registers");
    let Some(c) = codec(
        FormatKind::Avro,
        Part::Value,
        unwrapped.then_some(false),
        &columns(decl),
    ) else {
        return;
    };
    let c = with_registry(c, &r);
    if first & 0x40 != 0 {
        check(&c, rest);
    } else {
        check(&c, &framed(id, rest));
    }
});

fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut p = vec![0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(datum);
    p
}

/// A writer schema as text, a zero byte, a datum.
fn schema_and_datum(data: &[u8]) {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let Ok(schema) = registry::wire::parse(None, text, Vec::new(), Vec::new()) else {
        return;
    };
    let r: Arc<dyn SchemaRegistry> = Arc::new(InMemoryRegistry::new());
    let Ok(id) = r.register_schema("fuzz-value", schema.clone(), None) else {
        return;
    };
    let payload = framed(id, &data[split + 1..]);
    for unwrapped in [false, true] {
        let how = Inference {
            unwrapped,
            single: "ROWVAL",
            upper: false,
            full_name: None,
        };
        let cols = registry::ksql_columns(&schema, &how)
            .ok()
            .and_then(|d| inferred(&d))
            // Columns that cannot be inferred still decode the datum before failing.
            .unwrap_or_else(|| columns(&[("ROWVAL", "STRING")]));
        if let Some(c) = codec(
            FormatKind::Avro,
            Part::Value,
            unwrapped.then_some(false),
            &cols,
        ) {
            check(&with_registry(c, &r), &payload);
        }
    }
}

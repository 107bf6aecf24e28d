//! DELIMITED payloads: arbitrary bytes through `Codec::decode`, with the delimiter and the
//! columns chosen by the first byte.
#![no_main]
use brook_planner::format::{FormatKind, FormatSpec};
use brook_planner::types::NoTypes;
use brook_runtime::format::{Codec, Part};
use libfuzzer_sys::fuzz_target;

mod decode_common;
use decode_common::{check, columns};

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
    &[("S", "STRING")],
    &[("A", "STRING"), ("B", "STRING"), ("C", "DECIMAL(38, 0)")],
];

const DELIMITERS: &[char] = &[',', '|', '\t', ' ', 'é', '€', '😀', ';'];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cols = columns(LAYOUTS[usize::from(first & 0x0F) % LAYOUTS.len()]);
    let spec = FormatSpec {
        delimiter: DELIMITERS[usize::from(first >> 4) % DELIMITERS.len()],
        ..FormatSpec::new(FormatKind::Delimited)
    };
    for part in [Part::Value, Part::Key] {
        if let Ok(c) = Codec::new(&spec, part, &cols, &NoTypes) {
            check(&c, rest);
        }
    }
});

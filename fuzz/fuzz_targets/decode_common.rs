//! What the decode targets share: codecs built through Brook's public API, and the checks
//! every decoded batch must pass whatever the bytes were.
#![allow(dead_code)] // Each target uses its part.

use std::sync::Arc;

use brook_planner::format::{FormatKind, FormatSpec};
use brook_planner::schema::{Column, Namespace};
use brook_planner::types::NoTypes;
use brook_runtime::format::registry::SchemaRegistry;
use brook_runtime::format::{Codec, Part};

/// Columns from `(name, SQL type)` pairs.
pub fn columns(decl: &[(&str, &str)]) -> Vec<Column> {
    decl.iter()
        .map(|(n, t)| {
            let ty = brook_sql::parse_type(t).expect("fuzz column types parse");
            Column::new(*n, ty, Namespace::Value)
        })
        .collect()
}

/// Columns inferred from a registered schema, as `CREATE STREAM` without columns infers
/// them; `None` when there are none or a type does not parse.
pub fn inferred(decls: &[(String, String)]) -> Option<Vec<Column>> {
    if decls.is_empty() {
        return None;
    }
    decls
        .iter()
        .map(|(n, t)| {
            Some(Column::new(
                n,
                brook_sql::parse_type(t).ok()?,
                Namespace::Value,
            ))
        })
        .collect()
}

pub fn codec(kind: FormatKind, part: Part, wrap: Option<bool>, cols: &[Column]) -> Option<Codec> {
    let spec = FormatSpec {
        wrap_single_value: wrap,
        ..FormatSpec::new(kind)
    };
    Codec::new(&spec, part, cols, &NoTypes).ok()
}

pub fn with_registry(codec: Codec, registry: &Arc<dyn SchemaRegistry>) -> Codec {
    codec.with_registry(Arc::clone(registry), "fuzz")
}

/// Decodes `payload` twice in one batch, with a null payload between: the rows must stay
/// aligned and both copies must get the same outcome. A row that decoded is written back
/// with the same codec, which must read its own bytes.
pub fn check(codec: &Codec, payload: &[u8]) {
    let d = codec
        .decode(&[Some(payload), None, Some(payload)])
        .expect("a batch decodes (bad records are per-row errors)");
    assert_eq!(d.errors.len(), 3);
    for c in &d.columns {
        assert_eq!(c.len(), 3, "every column has a row per payload");
    }
    assert!(d.errors[1].is_none());
    assert_eq!(
        d.errors[0].as_ref().map(|e| e.to_string()),
        d.errors[2].as_ref().map(|e| e.to_string()),
        "the same bytes decode the same way"
    );
    if d.errors[0].is_some() {
        return;
    }
    let Ok(written) = codec.encode(&d.columns, 0..1) else {
        return;
    };
    if let Some(Some(again)) = written.first() {
        let back = codec.decode(&[Some(again)]).expect("decodes");
        assert!(
            back.errors[0].is_none(),
            "Brook cannot read what it wrote: {:?} from {again:?}",
            back.errors[0]
        );
    }
}

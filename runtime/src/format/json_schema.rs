//! JSON Schemas as Schema Registry holds them for JSON_SR, read far enough to infer ksqlDB
//! types, as ksqlDB's schema inference does through Confluent's `JsonSchemaData`:
//!
//! - `integer` is BIGINT unless `connect.type` says `int8`/`int16`/`int32` (INT); `number`
//!   is DOUBLE; `string` STRING (BYTES with `connect.type: bytes`); `boolean` BOOLEAN.
//! - Connect's logical types, named by `title` (`org.apache.kafka.connect.data.Decimal` …),
//!   are DECIMAL, DATE, TIME and TIMESTAMP.
//! - `array` is an ARRAY of its `items` (a MAP when `connect.type` is `map`); an `object`
//!   with `properties` a STRUCT, one whose only schema is `additionalProperties` (or with
//!   `connect.type: map`) a MAP with STRING keys.
//! - `oneOf` / `anyOf` / a type list with `null` as the only other branch is that branch.
//! - `$ref`s into the schema's own `definitions` / `$defs` are followed.
//! - Properties are ordered by `connect.index` where given, else by name; properties of
//!   types ksqlDB cannot represent are left out, as ksqlDB ignores them.

use std::cell::Cell;

use serde_json::Value;

/// A type ksqlDB cannot represent; the field holding it is left out.
const UNSUPPORTED: Result<Option<String>, String> = Ok(None);

/// How many types inferring one schema may expand: `$ref`s to a definition using another
/// twice, which uses another twice, and so on, would otherwise expand exponentially.
const MAX_EXPANDED: usize = 100_000;

struct Ctx<'a> {
    root: &'a Value,
    upper: bool,
    /// Types expanded so far.
    expanded: Cell<usize>,
}

impl<'a> Ctx<'a> {
    fn new(root: &'a Value, upper: bool) -> Self {
        Ctx {
            root,
            upper,
            expanded: Cell::new(0),
        }
    }

    fn name(&self, n: &str) -> String {
        if self.upper {
            n.to_uppercase()
        } else {
            n.to_string()
        }
    }

    /// Follows a local `$ref` (`#/definitions/X`, `#/$defs/X`, any JSON pointer).
    fn deref<'v>(&'v self, schema: &'v Value, depth: usize) -> Result<&'v Value, String> {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            return Ok(schema);
        };
        if depth > 32 {
            return Err(format!("$ref {r} is recursive"));
        }
        let pointer = r
            .strip_prefix('#')
            .ok_or_else(|| format!("$ref {r} points outside the schema"))?;
        let target = self
            .root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {r} points to nothing"))?;
        self.deref(target, depth + 1)
    }
}

fn connect_type(schema: &Value) -> Option<&str> {
    schema.get("connect.type").and_then(Value::as_str)
}

/// The non-null branches of a `oneOf` / `anyOf`.
fn branches(schema: &Value) -> Option<Vec<&Value>> {
    let list = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    Some(
        list.iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .collect(),
    )
}

fn ksql_type(ctx: &Ctx, schema: &Value, depth: usize) -> Result<Option<String>, String> {
    if depth > 64 {
        return Err("the JSON schema nests too deeply (recursive $ref?)".into());
    }
    ctx.expanded.set(ctx.expanded.get() + 1);
    if ctx.expanded.get() > MAX_EXPANDED {
        return Err(format!(
            "the JSON schema expands to more than {MAX_EXPANDED} types"
        ));
    }
    let schema = ctx.deref(schema, 0)?;
    if schema.as_bool() == Some(true) {
        return UNSUPPORTED;
    }
    if let Some(b) = branches(schema) {
        return match b.as_slice() {
            [one] => ksql_type(ctx, one, depth + 1),
            [] => UNSUPPORTED,
            _ => Err("oneOf/anyOf with more than one non-null branch is not supported".into()),
        };
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => {
            let non_null: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            match non_null.as_slice() {
                [one] => Some(*one),
                [] => return UNSUPPORTED,
                _ => return Err("a type list with more than one non-null type".into()),
            }
        }
        _ if schema.get("properties").is_some() => Some("object"),
        _ => None,
    };
    let title = schema.get("title").and_then(Value::as_str).unwrap_or("");
    match title {
        "org.apache.kafka.connect.data.Decimal" => {
            let params = schema.get("connect.parameters");
            let num = |k: &str| {
                params.and_then(|p| p.get(k)).and_then(|v| match v {
                    Value::String(s) => s.parse::<u32>().ok(),
                    other => other.as_u64().and_then(|n| u32::try_from(n).ok()),
                })
            };
            let precision = num("connect.decimal.precision").unwrap_or(64);
            let scale = num("scale").unwrap_or(0);
            return Ok(Some(format!("DECIMAL({precision}, {scale})")));
        }
        "org.apache.kafka.connect.data.Date" => return Ok(Some("DATE".into())),
        "org.apache.kafka.connect.data.Time" => return Ok(Some("TIME".into())),
        "org.apache.kafka.connect.data.Timestamp" => return Ok(Some("TIMESTAMP".into())),
        _ => {}
    }
    let t = match ty {
        Some("integer") => match connect_type(schema) {
            Some("int8" | "int16" | "int32") => "INT".to_string(),
            _ => "BIGINT".to_string(),
        },
        Some("number") => "DOUBLE".to_string(),
        Some("boolean") => "BOOLEAN".to_string(),
        Some("string") => match connect_type(schema) {
            Some("bytes") => "BYTES".to_string(),
            _ => "STRING".to_string(),
        },
        Some("array") => {
            let Some(items) = schema.get("items") else {
                return UNSUPPORTED;
            };
            if connect_type(schema) == Some("map") {
                // Connect writes maps with non-string keys as arrays of key/value pairs.
                let items = ctx.deref(items, 0)?;
                let props = items.get("properties");
                let k = props.and_then(|p| p.get("key"));
                let v = props.and_then(|p| p.get("value"));
                let (Some(k), Some(v)) = (k, v) else {
                    return UNSUPPORTED;
                };
                match (ksql_type(ctx, k, depth + 1)?, ksql_type(ctx, v, depth + 1)?) {
                    (Some(k), Some(v)) => format!("MAP<{k}, {v}>"),
                    _ => return UNSUPPORTED,
                }
            } else {
                match ksql_type(ctx, items, depth + 1)? {
                    Some(t) => format!("ARRAY<{t}>"),
                    None => return UNSUPPORTED,
                }
            }
        }
        Some("object") => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let is_map = connect_type(schema) == Some("map")
                || (props.is_none_or(|p| p.is_empty()) && additional.is_some());
            if is_map {
                let Some(v) = additional else {
                    return UNSUPPORTED;
                };
                match ksql_type(ctx, v, depth + 1)? {
                    Some(v) => format!("MAP<STRING, {v}>"),
                    None => return UNSUPPORTED,
                }
            } else {
                let fields = object_fields(ctx, schema, depth)?;
                if fields.is_empty() {
                    return UNSUPPORTED;
                }
                let decls: Vec<String> = fields
                    .into_iter()
                    .map(|(n, t)| format!("`{n}` {t}"))
                    .collect();
                format!("STRUCT<{}>", decls.join(", "))
            }
        }
        _ => return UNSUPPORTED,
    };
    Ok(Some(t))
}

/// An object schema's properties as (name, type), in `connect.index` order, then by name.
fn object_fields(ctx: &Ctx, schema: &Value, depth: usize) -> Result<Vec<(String, String)>, String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut ordered: Vec<(u64, &String, &Value)> = props
        .iter()
        .map(|(n, s)| {
            let index = s
                .get("connect.index")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            (index, n, s)
        })
        .collect();
    // A stable sort keeps name order among properties without an index.
    ordered.sort_by_key(|(i, _, _)| *i);
    let mut out = Vec::new();
    for (_, name, s) in ordered {
        if let Some(t) = ksql_type(ctx, s, depth + 1)? {
            out.push((ctx.name(name), t));
        }
    }
    Ok(out)
}

/// Whether a JSON schema describes an object with properties (columns), rather than a
/// single value.
pub fn is_object(root: &Value) -> bool {
    let ctx = Ctx::new(root, false);
    let Ok(s) = ctx.deref(root, 0) else {
        return false;
    };
    let s = match branches(s).as_deref() {
        Some([one]) => ctx.deref(one, 0).unwrap_or(one),
        _ => s,
    };
    s.get("properties").is_some_and(Value::is_object) && connect_type(s) != Some("map")
}

/// The ksqlDB type of a whole JSON schema (for a single, unwrapped column).
pub fn single_type(root: &Value, upper: bool) -> Result<String, String> {
    let ctx = Ctx::new(root, upper);
    ksql_type(&ctx, root, 0)?.ok_or_else(|| "the JSON schema has no type ksqlDB supports".into())
}

/// The columns of an object schema: its properties.
pub fn columns(root: &Value, upper: bool) -> Result<Vec<(String, String)>, String> {
    let ctx = Ctx::new(root, upper);
    let s = ctx.deref(root, 0)?;
    let s = match branches(s).as_deref() {
        Some([one]) => ctx.deref(one, 0)?,
        _ => s,
    };
    object_fields(&ctx, s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn properties_map_as_ksqldb_infers_them() {
        let s = json!({"type": "object", "properties": {
            "b": {"connect.index": 0, "oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}]},
            "a": {"connect.index": 1, "type": "integer"},
            "c": {"connect.index": 2, "type": ["null", "number"]},
            "d": {"connect.index": 3, "type": "array", "items": {"type": "string"}},
            "e": {"connect.index": 4, "type": "object", "additionalProperties": {"type": "boolean"}},
            "f": {"connect.index": 5, "type": "object", "properties": {"x": {"type": "string", "connect.type": "bytes"}}},
            "g": {"connect.index": 6, "type": "number", "title": "org.apache.kafka.connect.data.Decimal",
                  "connect.parameters": {"connect.decimal.precision": "4", "scale": "2"}},
            "h": {"connect.index": 7, "$ref": "#/definitions/T"},
            "i": {"connect.index": 8, "type": "null"}
        }, "definitions": {"T": {"type": "integer", "title": "org.apache.kafka.connect.data.Timestamp"}}});
        assert!(is_object(&s));
        assert_eq!(
            columns(&s, true).unwrap(),
            pairs(&[
                ("B", "INT"),
                ("A", "BIGINT"),
                ("C", "DOUBLE"),
                ("D", "ARRAY<STRING>"),
                ("E", "MAP<STRING, BOOLEAN>"),
                ("F", "STRUCT<`X` BYTES>"),
                ("G", "DECIMAL(4, 2)"),
                ("H", "TIMESTAMP"),
            ])
        );
        // Without an index, properties come in name order; names keep their case on demand.
        let s = json!({"properties": {"z": {"type": "string"}, "y": {"type": "boolean"}}});
        assert_eq!(
            columns(&s, false).unwrap(),
            pairs(&[("y", "BOOLEAN"), ("z", "STRING")])
        );
    }

    #[test]
    fn single_values() {
        let s = json!({"oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int64"}]});
        assert!(!is_object(&s));
        assert_eq!(single_type(&s, true).unwrap(), "BIGINT");
        let s = json!({"type": "object", "properties": {"f1": {"type": "string"}}});
        assert_eq!(single_type(&s, true).unwrap(), "STRUCT<`F1` STRING>");
        assert!(single_type(&json!({"type": "null"}), true).is_err());
        assert!(single_type(
            &json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            true
        )
        .is_err());
    }

    /// Definitions each using the next twice would expand to 2^40 types; they are
    /// refused instead of exhausting time and memory.
    #[test]
    fn exponential_expansion_is_refused() {
        let mut defs = serde_json::Map::new();
        for i in 0..40 {
            let next = format!("#/definitions/D{}", i + 1);
            defs.insert(
                format!("D{i}"),
                json!({"type": "object", "properties": {"a": {"$ref": next}, "b": {"$ref": next}}}),
            );
        }
        defs.insert("D40".into(), json!({"type": "integer"}));
        let s = json!({"type": "object", "properties": {"top": {"$ref": "#/definitions/D0"}},
                       "definitions": defs});
        let e = columns(&s, true).unwrap_err();
        assert!(e.contains("expands to more than 100000 types"), "{e}");
    }
}

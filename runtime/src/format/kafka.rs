//! KAFKA: a single column in the byte layout of Kafka's standard serializers (INT and
//! BIGINT big-endian, DOUBLE as big-endian IEEE 754 bits, STRING as UTF-8, BYTES as is).
//! No coercion: a payload of the wrong length does not decode.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use brook_sql::Type;

use super::builder::Builder;
use super::scalar::{decode_base64_into, BASE64};
use super::Fail;
use base64::Engine as _;

pub(super) fn supports(ty: &Type) -> bool {
    matches!(
        ty,
        Type::Int | Type::Bigint | Type::Double | Type::String | Type::Bytes
    )
}

fn exact<const N: usize>(bytes: &[u8], type_name: &str) -> Result<[u8; N], Fail> {
    bytes.try_into().map_err(|_| {
        Fail::other(format!(
            "expected {N} bytes for {type_name}, found {}",
            bytes.len()
        ))
    })
}

pub(super) fn decode_row(bytes: &[u8], b: &mut Builder) -> Result<(), Fail> {
    match b {
        Builder::Int(x) => x.push(i32::from_be_bytes(exact(bytes, "an INTEGER")?)),
        Builder::Bigint(x) => x.push(i64::from_be_bytes(exact(bytes, "a BIGINT")?)),
        Builder::Double(x) => x.push(f64::from_be_bytes(exact(bytes, "a DOUBLE")?)),
        // Kafka's StringDeserializer replaces invalid UTF-8 rather than failing.
        Builder::String(x) => x.push(String::from_utf8_lossy(bytes).as_bytes())?,
        Builder::Bytes(x) => x.push(bytes)?,
        other => {
            return Err(Fail::other(format!(
                "the KAFKA format does not support type {}",
                other.kind().name()
            )))
        }
    }
    Ok(())
}

/// The payload of `array[row]`, `None` when it is null.
pub(super) fn encode_value(array: &ArrayRef, row: usize) -> Result<Option<Vec<u8>>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let dt = array.data_type();
    let wrong = || format!("array does not match its type {dt}");
    Ok(Some(match dt {
        DataType::Int32 => array
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(wrong)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Int64 => array
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(wrong)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Float64 => array
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(wrong)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Utf8 => array
            .as_string_opt::<i32>()
            .ok_or_else(wrong)?
            .value(row)
            .as_bytes()
            .to_vec(),
        DataType::Binary => array
            .as_binary_opt::<i32>()
            .ok_or_else(wrong)?
            .value(row)
            .to_vec(),
        other => return Err(format!("the KAFKA format cannot write {other}")),
    }))
}

/// The bytes Kafka's serializer for the column's type makes of a test record's value.
pub(super) fn json_to_payload(ty: &Type, v: &serde_json::Value) -> Result<Vec<u8>, String> {
    let integer = |min: i64, max: i64| -> Result<i64, String> {
        let n = match v {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        n.filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{v} is not a {ty}"))
    };
    Ok(match ty {
        Type::Int => (integer(i32::MIN.into(), i32::MAX.into())? as i32)
            .to_be_bytes()
            .to_vec(),
        Type::Bigint => integer(i64::MIN, i64::MAX)?.to_be_bytes().to_vec(),
        Type::Double => {
            let d = match v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => super::scalar::parse_java_double(s),
                _ => None,
            };
            d.ok_or_else(|| format!("{v} is not a DOUBLE"))?
                .to_be_bytes()
                .to_vec()
        }
        Type::String => match v {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        },
        Type::Bytes => {
            let serde_json::Value::String(s) = v else {
                return Err(format!("{v} is not a base64 string"));
            };
            let mut out = Vec::new();
            decode_base64_into(s, &mut out)?;
            out
        }
        other => return Err(format!("the KAFKA format does not support type {other}")),
    })
}

/// A payload as a test record shows it: numbers for INT/BIGINT/DOUBLE, strings for STRING
/// and (base64) BYTES.
pub(super) fn payload_to_json(ty: &Type, bytes: &[u8]) -> Result<serde_json::Value, Fail> {
    Ok(match ty {
        Type::Int => i32::from_be_bytes(exact(bytes, "an INTEGER")?).into(),
        Type::Bigint => i64::from_be_bytes(exact(bytes, "a BIGINT")?).into(),
        Type::Double => {
            let d = f64::from_be_bytes(exact(bytes, "a DOUBLE")?);
            serde_json::Number::from_f64(d)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| {
                    let mut text = Vec::new();
                    super::scalar::push_java_double(&mut text, d);
                    serde_json::Value::String(String::from_utf8_lossy(&text).into_owned())
                })
        }
        Type::String => String::from_utf8_lossy(bytes).into_owned().into(),
        Type::Bytes => BASE64.encode(bytes).into(),
        other => {
            return Err(Fail::other(format!(
                "the KAFKA format does not support type {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::scalar::push_base64;
    use super::*;

    #[test]
    fn base64_helper_matches_engine() {
        let mut out = Vec::new();
        push_base64(&mut out, b"variations");
        assert_eq!(out, BASE64.encode(b"variations").as_bytes());
        assert_eq!(out, b"dmFyaWF0aW9ucw==");
    }
}

//! DELIMITED: one field per column, separated by the delimiter, quoted as CSV (Apache
//! Commons CSV's default format, which ksqlDB uses): a field may be enclosed in double
//! quotes, `""` inside quotes is a quote, and an empty field is null.

use std::io::Write as _;
use std::num::IntErrorKind;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimeUnit, TimestampMillisecondType,
};
use brook_sql::Type;

use super::builder::{Builder, Kind};
use super::scalar::{
    decode_base64_into, parse_decimal, parse_java_double, push_base64, push_decimal,
    push_java_double,
};
use super::{show_text, Codec, Fail};

/// DELIMITED carries scalars only.
pub(super) fn supports(ty: &Type) -> bool {
    !matches!(
        ty,
        Type::Array(_) | Type::Map(..) | Type::Struct(_) | Type::Custom(_)
    )
}

/// A field of the record being decoded, as a byte range of its text.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: usize,
    end: usize,
    /// Quoted with `""` inside, which stands for `"`.
    escaped: bool,
}

/// Decodes records one by one, reusing its buffers across records.
pub(super) struct Decoder {
    spans: Vec<Span>,
    unescaped: String,
}

impl Decoder {
    pub(super) fn new(codec: &Codec) -> Decoder {
        Decoder {
            spans: Vec::with_capacity(codec.columns.len()),
            unescaped: String::new(),
        }
    }

    pub(super) fn decode_row(
        &mut self,
        codec: &Codec,
        bytes: &[u8],
        builders: &mut [Builder],
    ) -> Result<(), Fail> {
        // Java decodes the bytes with replacement characters, so do we.
        let text = String::from_utf8_lossy(bytes);
        split_record(&text, codec.delimiter, &mut self.spans).map_err(Fail::other)?;
        if self.spans.len() != builders.len() {
            return Err(Fail::other(format!(
                "column count mismatch: expected {} fields, found {}",
                builders.len(),
                self.spans.len()
            )));
        }
        for ((span, b), c) in self.spans.iter().zip(builders).zip(&codec.columns) {
            let raw = &text[span.start..span.end];
            let field = if span.escaped {
                self.unescaped.clear();
                let mut rest = raw;
                while let Some(i) = rest.find("\"\"") {
                    self.unescaped.push_str(&rest[..=i]);
                    rest = &rest[i + 2..];
                }
                self.unescaped.push_str(rest);
                self.unescaped.as_str()
            } else {
                raw
            };
            put(b, field).map_err(|f| f.in_column(&c.name))?;
        }
        Ok(())
    }
}

/// Splits the first record of `text` into `spans`. Like Commons CSV (with ksqlDB's
/// settings): leading empty lines are skipped, whitespace may follow a closing quote, and
/// anything after the first line break ends the record.
fn split_record(text: &str, delimiter: char, spans: &mut Vec<Span>) -> Result<(), String> {
    spans.clear();
    let b = text.as_bytes();
    let mut buf = [0u8; 4];
    let delim = delimiter.encode_utf8(&mut buf).as_bytes();
    let mut pos = 0;
    while let Some(b'\r' | b'\n') = b.get(pos) {
        pos += 1;
    }
    loop {
        if b.get(pos) == Some(&b'"') {
            let start = pos + 1;
            let mut i = start;
            let mut escaped = false;
            loop {
                match b.get(i) {
                    None => return Err(format!("field {} has no closing quote", spans.len() + 1)),
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            spans.push(Span {
                start,
                end: i,
                escaped,
            });
            pos = i + 1;
            loop {
                if pos >= b.len() || b[pos] == b'\r' || b[pos] == b'\n' {
                    return Ok(());
                }
                if b[pos..].starts_with(delim) {
                    pos += delim.len();
                    break;
                }
                if b[pos] == b' ' || b[pos] == b'\t' {
                    pos += 1;
                } else {
                    return Err(format!(
                        "unexpected character after the closing quote of field {}",
                        spans.len()
                    ));
                }
            }
        } else {
            let start = pos;
            let mut i = pos;
            loop {
                if i >= b.len() || b[i] == b'\r' || b[i] == b'\n' {
                    spans.push(Span {
                        start,
                        end: i,
                        escaped: false,
                    });
                    return Ok(());
                }
                if b[i..].starts_with(delim) {
                    spans.push(Span {
                        start,
                        end: i,
                        escaped: false,
                    });
                    pos = i + delim.len();
                    break;
                }
                i += 1;
            }
        }
    }
}

fn int<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    field: &str,
    kind: Kind,
) -> Result<T, Fail> {
    field.parse::<T>().map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
            Fail::other(format!("{field} is out of range for {}", kind.name()))
        }
        _ => Fail::mismatch(kind.describe(), show_text(field)),
    })
}

/// Appends a field's value, parsed as ksqlDB's delimited deserializer parses it.
fn put(b: &mut Builder, field: &str) -> Result<(), Fail> {
    if field.is_empty() {
        b.push_null();
        return Ok(());
    }
    let kind = b.kind();
    match b {
        // Java's `Boolean.parseBoolean`: anything but "true" is false.
        Builder::Boolean(x) => x.push(field.eq_ignore_ascii_case("true")),
        Builder::Int(x) => x.push(int(field, kind)?),
        Builder::Bigint(x) => x.push(int(field, kind)?),
        Builder::Time(x) => x.push(int(field, kind)?),
        Builder::Date(x) => x.push(int(field, kind)?),
        Builder::Timestamp(x) => x.push(int(field, kind)?),
        Builder::Double(x) => x.push(
            parse_java_double(field)
                .ok_or_else(|| Fail::mismatch(kind.describe(), show_text(field)))?,
        ),
        Builder::Decimal {
            values,
            precision,
            scale,
        } => values.push(parse_decimal(field, *precision, *scale).map_err(Fail::other)?),
        Builder::String(x) => x.push(field.as_bytes())?,
        Builder::Bytes(x) => {
            if let Err(e) = decode_base64_into(field, x.data_mut()) {
                x.abandon_value();
                return Err(Fail::other(format!("{}: {e}", show_text(field))));
            }
            x.close_value()?;
        }
        Builder::Array { .. } | Builder::Map { .. } | Builder::Struct { .. } => {
            return Err(Fail::other(format!(
                "the DELIMITED format does not support type {}",
                kind.name()
            )))
        }
    }
    Ok(())
}

/// Encodes rows, reusing a buffer for the field being quoted.
pub(super) struct Encoder {
    delimiter: char,
    field: Vec<u8>,
}

impl Encoder {
    pub(super) fn new(delimiter: char) -> Encoder {
        Encoder {
            delimiter,
            field: Vec::new(),
        }
    }

    /// The record of row `row`: nulls are empty fields; other fields are quoted when
    /// Commons CSV 1.4 (ksqlDB's) would quote them, so that ksqlDB consumers see the same
    /// bytes (e.g. `"-10"` as a first field).
    pub(super) fn encode_row(
        &mut self,
        arrays: &[ArrayRef],
        row: usize,
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(8 * arrays.len());
        let mut buf = [0u8; 4];
        let delim = self.delimiter.encode_utf8(&mut buf).as_bytes();
        for (i, a) in arrays.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(delim);
            }
            if a.is_null(row) {
                continue;
            }
            self.field.clear();
            write_text(&mut self.field, a.as_ref(), row)?;
            if needs_quotes(&self.field, i == 0, delim) {
                out.push(b'"');
                for &c in &self.field {
                    if c == b'"' {
                        out.push(b'"');
                    }
                    out.push(c);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(&self.field);
            }
        }
        Ok(out)
    }
}

/// Commons CSV 1.4's `QuoteMode.MINIMAL` rule.
fn needs_quotes(field: &[u8], first: bool, delim: &[u8]) -> bool {
    let Some(&c) = field.first() else {
        // An empty first field is quoted so that the record is not an empty line.
        return first;
    };
    if first && !c.is_ascii_alphanumeric() {
        return true;
    }
    if c <= b'#' {
        return true;
    }
    if field.iter().any(|&c| c == b'\n' || c == b'\r' || c == b'"')
        || field.windows(delim.len()).any(|w| w == delim)
    {
        return true;
    }
    field.last().is_some_and(|&c| c <= b' ')
}

/// The text of a scalar as ksqlDB writes it in DELIMITED: DECIMAL in plain notation,
/// DOUBLE as Java prints it, BYTES in base64, TIME/DATE/TIMESTAMP as numbers.
fn write_text(out: &mut Vec<u8>, array: &dyn Array, i: usize) -> Result<(), String> {
    let dt = array.data_type();
    let wrong = || format!("array does not match its type {dt}");
    match dt {
        DataType::Boolean => {
            let v = array.as_boolean_opt().ok_or_else(wrong)?.value(i);
            out.extend_from_slice(if v { b"true" } else { b"false" });
        }
        DataType::Int32 => {
            let v = array
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Int64 => {
            let v = array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Float64 => {
            let v = array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(wrong)?
                .value(i);
            push_java_double(out, v);
        }
        DataType::Decimal128(_, scale) => {
            let v = array
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(wrong)?
                .value(i);
            push_decimal(out, v, *scale);
        }
        DataType::Utf8 => {
            let v = array.as_string_opt::<i32>().ok_or_else(wrong)?.value(i);
            out.extend_from_slice(v.as_bytes());
        }
        DataType::Binary => {
            let v = array.as_binary_opt::<i32>().ok_or_else(wrong)?.value(i);
            push_base64(out, v);
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            let v = array
                .as_primitive_opt::<Time32MillisecondType>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Date32 => {
            let v = array
                .as_primitive_opt::<Date32Type>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let v = array
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(wrong)?
                .value(i);
            let _ = write!(out, "{v}");
        }
        other => return Err(format!("the DELIMITED format cannot write {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str, delimiter: char) -> Result<Vec<String>, String> {
        let mut spans = Vec::new();
        split_record(text, delimiter, &mut spans)?;
        Ok(spans
            .iter()
            .map(|s| {
                let raw = &text[s.start..s.end];
                if s.escaped {
                    raw.replace("\"\"", "\"")
                } else {
                    raw.to_string()
                }
            })
            .collect())
    }

    #[test]
    fn records_split_as_commons_csv_does() {
        let cases: &[(&str, char, &[&str])] = &[
            ("a,b,c", ',', &["a", "b", "c"]),
            ("a", ',', &["a"]),
            ("", ',', &[""]),
            (",", ',', &["", ""]),
            ("a,", ',', &["a", ""]),
            (",,100,x,150", ',', &["", "", "100", "x", "150"]),
            ("\"foo\",\"bar\"", ',', &["foo", "bar"]),
            ("\"a,b\",c", ',', &["a,b", "c"]),
            ("\"say \"\"hi\"\"\",x", ',', &["say \"hi\"", "x"]),
            ("\"\",x", ',', &["", "x"]),
            ("\"q\"  ,x", ',', &["q", "x"]),
            ("ab\"c,d", ',', &["ab\"c", "d"]),
            (" a , b ", ',', &[" a ", " b "]),
            ("a|b", '|', &["a", "b"]),
            ("0 zero 0", ' ', &["0", "zero", "0"]),
            ("0\tzero\t0", '\t', &["0", "zero", "0"]),
            ("x☺y☺z", '☺', &["x", "y", "z"]),
            ("\"multi\nline\",x", ',', &["multi\nline", "x"]),
            ("a,b\r\nc,d", ',', &["a", "b"]),
            ("\n\na,b", ',', &["a", "b"]),
        ];
        for (text, delim, expected) in cases {
            assert_eq!(
                fields(text, *delim).unwrap(),
                expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{text:?}"
            );
        }
        assert!(fields("\"open", ',')
            .unwrap_err()
            .contains("no closing quote"));
        assert!(fields("\"a\"b,c", ',')
            .unwrap_err()
            .contains("after the closing quote"));
    }

    #[test]
    fn fields_are_quoted_as_ksqldb_writes_them() {
        // (field, first in the record, quoted?) — cases from the conformance tests.
        let cases: &[(&str, bool, bool)] = &[
            ("-10", true, true),
            ("-10", false, false),
            ("!", true, true),
            ("!", false, true),
            ("#", false, true),
            ("IQ==", false, false),
            (" \t with white space \t", true, true),
            (" \t WITH WHITE SPACE \t", false, true),
            ("with white space", false, false),
            ("\t wit", false, true),
            ("ends with space ", false, true),
            ("\" + code + \"", false, true),
            ("a,b", false, true),
            ("line\nbreak", false, true),
            ("", true, true),
            ("", false, false),
            ("zero", true, false),
            ("0.05", true, false),
            ("é", true, true),
            ("xé", false, false),
        ];
        for (field, first, quoted) in cases {
            assert_eq!(
                needs_quotes(field.as_bytes(), *first, b","),
                *quoted,
                "{field:?} first={first}"
            );
        }
        assert!(needs_quotes(b"a|b", false, b"|"));
        assert!(needs_quotes("a☺b".as_bytes(), false, "☺".as_bytes()));
    }
}

//! Scalar conversions shared by the text formats, written to match the Java behaviour
//! ksqlDB's output has: `BigDecimal` parsing and plain printing, `Double.toString`, base64.

use std::io::Write as _;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Standard base64; padding is written, and optional when reading (Java's decoders differ
/// on this, producers too).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Appends the base64 text of `bytes`.
pub(crate) fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = BASE64.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Appends the bytes `text` encodes in base64 to `out`, or explains why it is not base64.
pub(crate) fn decode_base64_into(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.resize(start + base64::decoded_len_estimate(text.len()), 0);
    match BASE64.decode_slice(text.as_bytes(), &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(format!("not valid base64 ({e})"))
        }
    }
}

/// Parses a decimal number (`BigDecimal`'s syntax: sign, digits, optional fraction and
/// exponent) into the unscaled value at `scale`, rounding half up as ksqlDB does, and fails
/// when it does not fit `precision`.
pub(crate) fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let not_a_number = || format!("{} is not a decimal number", super::show_text(text));
    let b = text.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &b[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &b[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(not_a_number());
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_text = std::str::from_utf8(&b[i..]).map_err(|_| not_a_number())?;
        exponent = exp_text.parse::<i32>().map_err(|_| not_a_number())? as i64;
        i = b.len();
    }
    if i != b.len() {
        return Err(not_a_number());
    }
    // value = digits × 10^(exponent - fraction length); unscaled = digits × 10^shift.
    let shift = scale as i64 + exponent - frac_digits.len() as i64;
    let digits = int_digits
        .iter()
        .chain(frac_digits)
        .map(|d| (d - b'0') as i128);
    let overflow = || {
        format!(
            "Numeric field overflow: A field with precision {precision} and scale {scale} \
             must round to an absolute value less than 10^{}. Got {text}",
            precision as i64 - scale as i64
        )
    };
    let limit = 10i128.checked_pow(precision as u32).ok_or_else(overflow)?;
    let n_digits = int_digits.len() + frac_digits.len();
    let mut unscaled: i128 = 0;
    if shift >= 0 {
        for d in digits {
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|u| u.checked_add(d))
                .ok_or_else(overflow)?;
        }
        if unscaled != 0 {
            let factor = u32::try_from(shift)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
                .ok_or_else(overflow)?;
            unscaled = unscaled.checked_mul(factor).ok_or_else(overflow)?;
        }
    } else {
        let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
        let keep = n_digits.saturating_sub(drop);
        let mut round_up = false;
        for (k, d) in digits.enumerate() {
            if k < keep {
                unscaled = unscaled
                    .checked_mul(10)
                    .and_then(|u| u.checked_add(d))
                    .ok_or_else(overflow)?;
            } else {
                // Only the first dropped digit decides HALF_UP rounding; it exists only
                // when the dropped digits start within the number.
                round_up = k + drop == n_digits && d >= 5;
                break;
            }
        }
        if round_up {
            unscaled += 1;
        }
    }
    if unscaled >= limit {
        return Err(overflow());
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// Appends `unscaled × 10^-scale` in plain notation with exactly `scale` decimals, as
/// `BigDecimal.toPlainString` does (`12.3650` for DECIMAL(6,4)).
pub(crate) fn push_decimal(out: &mut Vec<u8>, unscaled: i128, scale: i8) {
    let mut buf = [0u8; 48];
    let digits = {
        let mut cur = &mut buf[..];
        let _ = write!(cur, "{}", unscaled.unsigned_abs());
        let left = cur.len();
        &buf[..48 - left]
    };
    if unscaled < 0 {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits);
    } else {
        let point = digits.len() - scale;
        out.extend_from_slice(&digits[..point]);
        out.push(b'.');
        out.extend_from_slice(&digits[point..]);
    }
}

/// Appends a double as Java's `Double.toString` writes it (`2.0`, `1.0E10`, `1.5E-4`,
/// `NaN`, `Infinity`): what ksqlDB writes in DELIMITED and JSON.
pub(crate) fn push_java_double(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let a = v.abs();
    if a.is_infinite() {
        out.extend_from_slice(b"Infinity");
        return;
    }
    if a == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Java (17+) does.
    let mut buf = [0u8; 48];
    let text = {
        let mut cur = &mut buf[..];
        let _ = write!(cur, "{a:e}");
        let left = cur.len();
        &buf[..48 - left]
    };
    let e_at = text.iter().position(|&c| c == b'e').unwrap_or(text.len());
    let exponent: i32 = std::str::from_utf8(text.get(e_at + 1..).unwrap_or(b"0"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 40];
    let mut n = 0;
    for &c in &text[..e_at] {
        if c.is_ascii_digit() && n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    let digits = &digits[..n.max(1)];
    if (1e-3..1e7).contains(&a) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if digits.len() > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        out.push(b'E');
        let _ = write!(out, "{exponent}");
    }
}

/// Parses a double as Java's `Double.parseDouble` accepts it for the common cases:
/// surrounding whitespace, `NaN`, `Infinity`, and a trailing `d`/`f` type suffix.
pub(crate) fn parse_java_double(text: &str) -> Option<f64> {
    let t = text.trim_matches(|c: char| c <= ' ');
    if let Ok(v) = t.parse::<f64>() {
        // Rust also takes "inf"/"infinity" in any case; Java only "Infinity".
        if v.is_infinite() && !t.ends_with("Infinity") && !t.contains(['e', 'E']) {
            return None;
        }
        if v.is_nan() && !t.ends_with("NaN") {
            return None;
        }
        return Some(v);
    }
    let stripped = t.strip_suffix(['d', 'D', 'f', 'F'])?;
    if stripped.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
        stripped.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_with_half_up_rounding_and_precision_checks() {
        let cases: &[(&str, u8, i8, Result<i128, ()>)] = &[
            ("12.365", 6, 4, Ok(123650)),
            ("12.0", 6, 4, Ok(120000)),
            ("-0.5", 4, 2, Ok(-50)),
            ("+1", 4, 2, Ok(100)),
            ("1.005", 4, 2, Ok(101)),
            ("1.004", 4, 2, Ok(100)),
            ("-1.005", 4, 2, Ok(-101)),
            ("0.0001", 6, 4, Ok(1)),
            ("0.00005", 6, 4, Ok(1)),
            ("0.00004", 6, 4, Ok(0)),
            ("1e2", 5, 2, Ok(10000)),
            ("1.5E-1", 3, 2, Ok(15)),
            (".5", 2, 1, Ok(5)),
            ("7.", 2, 1, Ok(70)),
            ("10.1234512345123451234", 21, 19, Ok(101234512345123451234)),
            ("99.99", 4, 2, Ok(9999)),
            ("99.995", 4, 2, Err(())),
            ("100", 4, 2, Err(())),
            ("", 4, 2, Err(())),
            ("abc", 4, 2, Err(())),
            ("1.2.3", 4, 2, Err(())),
            ("1e", 4, 2, Err(())),
            (" 1", 4, 2, Err(())),
            ("1e999999", 38, 0, Err(())),
            ("0e999999", 38, 0, Ok(0)),
            ("123456789012345678901234567890123456789012", 38, 0, Err(())),
        ];
        for (text, p, s, expected) in cases {
            let got = parse_decimal(text, *p, *s).map_err(|_| ());
            assert_eq!(&got, expected, "{text} as DECIMAL({p},{s})");
        }
        let msg = parse_decimal("100", 4, 2).unwrap_err();
        assert!(msg.contains("precision 4 and scale 2"), "{msg}");
    }

    #[test]
    fn decimals_print_plain_with_their_scale() {
        let cases: &[(i128, i8, &str)] = &[
            (123650, 4, "12.3650"),
            (-50, 2, "-0.50"),
            (1, 4, "0.0001"),
            (0, 2, "0.00"),
            (42, 0, "42"),
            (-7, 0, "-7"),
        ];
        for (v, s, expected) in cases {
            let mut out = Vec::new();
            push_decimal(&mut out, *v, *s);
            assert_eq!(String::from_utf8_lossy(&out), *expected);
        }
    }

    #[test]
    fn doubles_print_as_java_does() {
        let cases: &[(f64, &str)] = &[
            (2.0, "2.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (654.321, "654.321"),
            (-1.5, "-1.5"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1234567.0, "1234567.0"),
            (1e7, "1.0E7"),
            (1.2345e10, "1.2345E10"),
            (22026.465794806718, "22026.465794806718"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, expected) in cases {
            let mut out = Vec::new();
            push_java_double(&mut out, *v);
            assert_eq!(String::from_utf8_lossy(&out), *expected, "{v}");
            if v.is_finite() {
                let back = parse_java_double(expected).expect("parses back");
                assert_eq!(back.to_bits(), v.to_bits());
            }
        }
    }

    #[test]
    fn doubles_parse_as_java_does() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1.5", Some(1.5)),
            (" 1.5 ", Some(1.5)),
            ("1e3", Some(1000.0)),
            ("2d", Some(2.0)),
            ("2.5F", Some(2.5)),
            ("Infinity", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("inf", None),
            ("abc", None),
            ("", None),
            ("d", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_java_double(text), *expected, "{text:?}");
        }
        assert!(parse_java_double("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn base64_round_trips_and_accepts_missing_padding() {
        let mut out = Vec::new();
        push_base64(&mut out, b"abc{");
        assert_eq!(out, b"YWJjew==");
        let mut back = Vec::new();
        decode_base64_into("YWJjew==", &mut back).unwrap();
        decode_base64_into("YWJjew", &mut back).unwrap();
        assert_eq!(back, b"abc{abc{");
        assert!(decode_base64_into("not base64!", &mut back).is_err());
        assert_eq!(
            back, b"abc{abc{",
            "a failed decode leaves the buffer as it was"
        );
    }
}

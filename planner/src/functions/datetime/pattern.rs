//! Java `DateTimeFormatter` patterns (`yyyy-MM-dd''T''HH:mm:ss.SSSX`), as ksqlDB's date
//! and time functions take them, formatted and parsed with chrono's calendar.
//!
//! chrono's own `strftime` parsing differs too much (no case-insensitive month names,
//! no zone names, no fixed-width adjacent fields) for a translation to be faithful, so
//! the pattern is tokenized once and each field is written or read as Java does.
//! Parsing is case-insensitive and missing fields default to 1970-01-01 00:00:00, as in
//! ksqlDB's parsers.

use chrono::{
    Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike,
};
use chrono_tz::{OffsetName, Tz};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Lit(String),
    Field(char, usize),
}

const LETTERS: &str = "GuyYDMLdQqwWEecFaBhKkHmsSAnNVvzOXxZ";

/// Splits a pattern into literals and fields (a run of one letter).
pub(crate) fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // `''` is a quote; otherwise text up to the closing quote is literal.
            if chars.get(i + 1) == Some(&'\'') {
                lit.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "Pattern ends with an incomplete string literal: {pattern}"
                        ))
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        lit.push(ch);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            if !LETTERS.contains(c) {
                return Err(format!("Unknown pattern letter: {c}"));
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            if !lit.is_empty() {
                out.push(Token::Lit(std::mem::take(&mut lit)));
            }
            out.push(Token::Field(c, n));
            i += n;
            continue;
        }
        if c == '[' || c == ']' {
            // Optional sections: Brook treats their content as required.
            i += 1;
            continue;
        }
        lit.push(c);
        i += 1;
    }
    if !lit.is_empty() {
        out.push(Token::Lit(lit));
    }
    Ok(out)
}

/// A time zone as `java.util.TimeZone` IDs name them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Zone {
    Tz(Tz),
    /// Seconds east of UTC.
    Fixed(i32),
}

/// Common abbreviations, resolved to the region Java associates with them (so `PST`
/// in May means Pacific daylight time, as Java's parser reads it).
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("MST", "America/Denver"),
    ("MDT", "America/Denver"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("EST", "America/New_York"),
    ("EDT", "America/New_York"),
    ("AKST", "America/Anchorage"),
    ("AKDT", "America/Anchorage"),
    ("HST", "Pacific/Honolulu"),
    ("BST", "Europe/London"),
    ("CET", "Europe/Paris"),
    ("CEST", "Europe/Paris"),
    ("EET", "Europe/Athens"),
    ("EEST", "Europe/Athens"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
];

impl Zone {
    pub(crate) const UTC: Zone = Zone::Fixed(0);

    /// Reads a zone ID: a region (`Europe/London`), `UTC`/`GMT`/`Z`, an abbreviation, or
    /// an offset (`+05:30`, `GMT-8`, `UTC+01:00`).
    pub(crate) fn parse(id: &str) -> Option<Zone> {
        let id = id.trim();
        let upper = id.to_ascii_uppercase();
        if matches!(upper.as_str(), "UTC" | "GMT" | "Z" | "UT" | "ZULU") {
            return Some(Zone::UTC);
        }
        if let Ok(tz) = id.parse::<Tz>() {
            return Some(Zone::Tz(tz));
        }
        if let Some((_, region)) = ABBREVIATIONS.iter().find(|(a, _)| *a == upper) {
            return region.parse::<Tz>().ok().map(Zone::Tz);
        }
        let rest = ["UTC", "GMT", "UT"]
            .iter()
            .find_map(|p| upper.strip_prefix(p))
            .unwrap_or(&upper);
        parse_offset(rest).map(Zone::Fixed)
    }

    /// The offset (seconds east of UTC) and abbreviation at a UTC instant.
    pub(crate) fn at_utc(&self, utc: &NaiveDateTime) -> (i32, String) {
        match self {
            Zone::Fixed(0) => (0, "UTC".into()),
            Zone::Fixed(s) => (*s, offset_text(*s, true, true)),
            Zone::Tz(tz) => {
                let off = tz.offset_from_utc_datetime(utc);
                let secs = off.fix().local_minus_utc();
                let name = off
                    .abbreviation()
                    .map(str::to_string)
                    .unwrap_or_else(|| offset_text(secs, true, true));
                (secs, name)
            }
        }
    }

    /// The UTC instant of a local time: the earlier offset in an overlap, and the offset
    /// before the transition in a gap (Java moves such times forward by the gap).
    pub(crate) fn utc_of(&self, local: &NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Fixed(s) => *local - Duration::seconds(*s as i64),
            Zone::Tz(tz) => match tz.from_local_datetime(local) {
                LocalResult::Single(t) => t.naive_utc(),
                LocalResult::Ambiguous(a, _) => a.naive_utc(),
                LocalResult::None => {
                    let before = tz
                        .offset_from_utc_datetime(&(*local - Duration::days(1)))
                        .fix()
                        .local_minus_utc();
                    *local - Duration::seconds(before as i64)
                }
            },
        }
    }

    fn id(&self) -> String {
        match self {
            Zone::Tz(tz) => tz.name().to_string(),
            Zone::Fixed(0) => "Z".into(),
            Zone::Fixed(s) => offset_text(*s, true, true),
        }
    }
}

/// `+HH`, `+HHMM`, `+HH:MM` (and with seconds) or an empty string for UTC.
fn parse_offset(s: &str) -> Option<i32> {
    if s.is_empty() {
        return Some(0);
    }
    let sign = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body: String = s[1..].chars().filter(|c| *c != ':').collect();
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m, sec) = match body.len() {
        1 | 2 => (body.parse::<i32>().ok()?, 0, 0),
        3 => (body[..1].parse().ok()?, body[1..].parse().ok()?, 0),
        4 => (body[..2].parse().ok()?, body[2..].parse().ok()?, 0),
        6 => (
            body[..2].parse().ok()?,
            body[2..4].parse().ok()?,
            body[4..].parse().ok()?,
        ),
        _ => return None,
    };
    if h > 18 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

fn offset_text(secs: i32, colon: bool, minutes: bool) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
    let mut out = format!("{sign}{h:02}");
    if minutes || m != 0 || s != 0 {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{m:02}"));
    }
    if s != 0 {
        if colon {
            out.push(':');
        }
        out.push_str(&format!("{s:02}"));
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// What a value to format has: a DATE has no time of day, a TIME no date, and only a
/// TIMESTAMP has a zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Date,
    Time,
    Timestamp,
}

fn pad(v: i64, width: usize) -> String {
    if v < 0 {
        format!("-{:0width$}", -v)
    } else {
        format!("{v:0width$}")
    }
}

/// Formats a local date-time (`zone` gives the offset and names for zone fields).
pub(crate) fn format(
    tokens: &[Token],
    t: &NaiveDateTime,
    kind: Kind,
    zone: Option<(Zone, i32, &str)>,
) -> Result<String, String> {
    let mut out = String::new();
    for tok in tokens {
        let (c, n) = match tok {
            Token::Lit(s) => {
                out.push_str(s);
                continue;
            }
            Token::Field(c, n) => (*c, *n),
        };
        let needs_date = "GuyYDMLdQqwWEecF".contains(c);
        let needs_time = "aBhKkHmsSAnN".contains(c);
        let needs_zone = "VvzOXxZ".contains(c);
        if (needs_date && kind == Kind::Time)
            || (needs_time && kind == Kind::Date)
            || (needs_zone && zone.is_none())
        {
            return Err(format!(
                "Unsupported field for this value: {}",
                c.to_string().repeat(n)
            ));
        }
        let hour = t.hour() as i64;
        let text = match c {
            'G' => if t.year() > 0 { "AD" } else { "BC" }.to_string(),
            'y' | 'u' | 'Y' => {
                let y = t.year() as i64;
                if n == 2 {
                    pad(y.rem_euclid(100), 2)
                } else {
                    pad(y, n)
                }
            }
            'M' | 'L' => {
                let m = t.month() as usize;
                match n {
                    1 | 2 => pad(m as i64, n),
                    3 => MONTHS[m - 1][..3].to_string(),
                    4 => MONTHS[m - 1].to_string(),
                    _ => MONTHS[m - 1][..1].to_string(),
                }
            }
            'd' => pad(t.day() as i64, n),
            'D' => pad(t.ordinal() as i64, n),
            'Q' | 'q' => pad(((t.month() - 1) / 3 + 1) as i64, n),
            'E' | 'e' | 'c' => {
                let d = t.weekday().num_days_from_monday() as usize;
                if (c == 'e' || c == 'c') && n <= 2 {
                    // Localized day-of-week number, weeks starting on Sunday (en-US).
                    pad(((d + 1) % 7 + 1) as i64, n)
                } else {
                    match n {
                        1..=3 => DAYS[d][..3].to_string(),
                        4 => DAYS[d].to_string(),
                        _ => DAYS[d][..1].to_string(),
                    }
                }
            }
            'a' => if hour < 12 { "AM" } else { "PM" }.to_string(),
            'H' => pad(hour, n),
            'k' => pad(if hour == 0 { 24 } else { hour }, n),
            'K' => pad(hour % 12, n),
            'h' => pad(if hour % 12 == 0 { 12 } else { hour % 12 }, n),
            'm' => pad(t.minute() as i64, n),
            's' => pad(t.second() as i64, n),
            'S' => {
                let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                if n <= 9 {
                    nanos[..n].to_string()
                } else {
                    format!("{nanos}{}", "0".repeat(n - 9))
                }
            }
            'A' => pad(
                (t.num_seconds_from_midnight() as i64) * 1000 + (t.nanosecond() / 1_000_000) as i64,
                n,
            ),
            'n' => pad(t.nanosecond() as i64, n),
            'N' => pad(
                (t.num_seconds_from_midnight() as i64) * 1_000_000_000 + t.nanosecond() as i64,
                n,
            ),
            _ => {
                let Some((z, secs, abbr)) = zone else {
                    return Err("no zone".into());
                };
                match c {
                    'z' if n < 4 => abbr.to_string(),
                    'z' | 'v' | 'V' => z.id(),
                    'O' => {
                        if secs == 0 {
                            "GMT".into()
                        } else if n == 4 {
                            format!("GMT{}", offset_text(secs, true, true))
                        } else {
                            let sign = if secs < 0 { '-' } else { '+' };
                            let a = secs.abs();
                            let mut s = format!("GMT{sign}{}", a / 3600);
                            if a % 3600 != 0 {
                                s.push_str(&format!(":{:02}", (a / 60) % 60));
                            }
                            s
                        }
                    }
                    'X' | 'x' => {
                        if secs == 0 && c == 'X' {
                            "Z".into()
                        } else {
                            match n {
                                1 => offset_text(secs, false, false),
                                2 | 4 => offset_text(secs, false, true),
                                _ => offset_text(secs, true, true),
                            }
                        }
                    }
                    _ => match n {
                        1..=3 => offset_text(secs, false, true),
                        4 if secs == 0 => "GMT".into(),
                        4 => format!("GMT{}", offset_text(secs, true, true)),
                        _ if secs == 0 => "Z".into(),
                        _ => offset_text(secs, true, true),
                    },
                }
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// What a parse found; absent fields take ksqlDB's defaults.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub year: Option<i32>,
    pub two_digit_year: bool,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub day_of_year: Option<u32>,
    pub hour: Option<u32>,
    pub hour12: Option<u32>,
    pub pm: Option<bool>,
    pub minute: Option<u32>,
    pub second: Option<u32>,
    pub nanos: Option<u32>,
    pub zone: Option<Zone>,
}

impl Parsed {
    pub(crate) fn date(&self) -> Result<NaiveDate, String> {
        let mut year = self.year.unwrap_or(1970);
        if self.two_digit_year {
            year += 2000;
        }
        let d = match self.day_of_year {
            Some(doy) => NaiveDate::from_yo_opt(year, doy),
            None => NaiveDate::from_ymd_opt(year, self.month.unwrap_or(1), self.day.unwrap_or(1)),
        };
        d.ok_or_else(|| "Invalid date".to_string())
    }

    pub(crate) fn time(&self) -> Result<NaiveTime, String> {
        let hour = match (self.hour, self.hour12, self.pm) {
            (Some(h), _, _) => h % 24,
            (None, Some(h), Some(pm)) => h % 12 + if pm { 12 } else { 0 },
            (None, Some(h), None) => h % 12,
            (None, None, Some(true)) => 12,
            _ => 0,
        };
        NaiveTime::from_hms_nano_opt(
            hour,
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0),
            self.nanos.unwrap_or(0),
        )
        .ok_or_else(|| "Invalid time".to_string())
    }
}

fn is_numeric_field(c: char) -> bool {
    "uyYDMLdQqhKkHmsSAnN".contains(c)
}

/// Fixed digits a numeric field takes (`None` when its width varies).
fn fixed_width(c: char, n: usize) -> Option<usize> {
    match c {
        'S' => Some(n),
        'y' | 'u' | 'Y' => (n == 2).then_some(2),
        'M' | 'L' | 'Q' | 'q' if n >= 3 => None,
        _ if n >= 2 => Some(n),
        _ => None,
    }
}

fn max_width(c: char) -> usize {
    match c {
        'y' | 'u' | 'Y' | 'A' | 'n' => 9,
        'N' => 14,
        'D' => 3,
        _ => 2,
    }
}

/// Matches the longest of `names` (case-insensitively) at the start of `s`.
fn match_name(s: &str, names: &[String]) -> Option<(usize, usize)> {
    let lower = s.to_lowercase();
    let mut best: Option<(usize, usize)> = None;
    for (i, name) in names.iter().enumerate() {
        let n = name.to_lowercase();
        if lower.starts_with(&n) && best.is_none_or(|(_, len)| n.len() > len) {
            best = Some((i, n.len()));
        }
    }
    best
}

/// Parses `text` against the whole pattern.
pub(crate) fn parse(tokens: &[Token], text: &str) -> Result<Parsed, String> {
    let (p, pos) = parse_prefix(tokens, text)?;
    if pos != text.len() {
        return Err(format!(
            "Text '{text}' could not be parsed, unparsed text found at index {pos}"
        ));
    }
    Ok(p)
}

/// Parses the start of `text` against the pattern; also gives where the match ended.
fn parse_prefix(tokens: &[Token], text: &str) -> Result<(Parsed, usize), String> {
    let mut p = Parsed::default();
    let mut pos = 0;
    let bad = |pos: usize| format!("Text '{text}' could not be parsed at index {pos}");
    for (ti, tok) in tokens.iter().enumerate() {
        let rest = &text[pos..];
        let (c, n) = match tok {
            Token::Lit(s) => {
                let len = s.len();
                match rest.get(..len) {
                    Some(head) if head.eq_ignore_ascii_case(s) => {
                        pos += len;
                        continue;
                    }
                    _ => return Err(bad(pos)),
                }
            }
            Token::Field(c, n) => (*c, *n),
        };
        if is_numeric_field(c) && !(matches!(c, 'M' | 'L') && n >= 3) {
            // Adjacent numeric fields share a digit run: a variable-width field leaves
            // the following fixed-width fields their digits, as Java's parser does.
            let reserved: usize = tokens[ti + 1..]
                .iter()
                .map_while(|t| match t {
                    Token::Field(c2, n2) if is_numeric_field(*c2) => fixed_width(*c2, *n2),
                    _ => None,
                })
                .sum();
            let negative = matches!(c, 'y' | 'u' | 'Y') && rest.starts_with('-');
            let digits_at = if negative { 1 } else { 0 };
            let avail = rest[digits_at..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let take = match fixed_width(c, n) {
                Some(w) => w,
                None => avail.saturating_sub(reserved).min(max_width(c)),
            };
            if take == 0 || take > avail {
                return Err(bad(pos));
            }
            let digits = &rest[digits_at..digits_at + take];
            let v: i64 = digits.parse().map_err(|_| bad(pos))?;
            let v32 = u32::try_from(v).map_err(|_| bad(pos))?;
            match c {
                'y' | 'u' | 'Y' => {
                    p.year = Some(if negative { -(v as i32) } else { v as i32 });
                    p.two_digit_year = n == 2;
                }
                'M' | 'L' => p.month = Some(v32),
                'd' => p.day = Some(v32),
                'D' => p.day_of_year = Some(v32),
                'H' => p.hour = Some(v32),
                'k' => p.hour = Some(v32 % 24),
                'h' | 'K' => p.hour12 = Some(v32),
                'm' => p.minute = Some(v32),
                's' => p.second = Some(v32),
                'S' => {
                    // A fraction: scale the digits read to nanoseconds.
                    let scaled = if take <= 9 {
                        v * 10i64.pow((9 - take) as u32)
                    } else {
                        digits[..9].parse().map_err(|_| bad(pos))?
                    };
                    p.nanos = Some(scaled as u32);
                }
                'n' => p.nanos = Some(v32),
                'A' => {
                    let ms = v32;
                    p.hour = Some(ms / 3_600_000);
                    p.minute = Some((ms / 60_000) % 60);
                    p.second = Some((ms / 1000) % 60);
                    p.nanos = Some((ms % 1000) * 1_000_000);
                }
                _ => {}
            }
            pos += digits_at + take;
            continue;
        }
        match c {
            'M' | 'L' => {
                let names: Vec<String> = if n == 3 {
                    MONTHS.iter().map(|m| m[..3].to_string()).collect()
                } else {
                    MONTHS.iter().map(|m| m.to_string()).collect()
                };
                let (i, len) = match_name(rest, &names).ok_or_else(|| bad(pos))?;
                p.month = Some(i as u32 + 1);
                pos += len;
            }
            'E' | 'e' | 'c' => {
                let mut names: Vec<String> = DAYS.iter().map(|d| d.to_string()).collect();
                names.extend(DAYS.iter().map(|d| d[..3].to_string()));
                let (_, len) = match_name(rest, &names).ok_or_else(|| bad(pos))?;
                pos += len;
            }
            'a' => {
                let names = vec!["AM".to_string(), "PM".to_string()];
                let (i, len) = match_name(rest, &names).ok_or_else(|| bad(pos))?;
                p.pm = Some(i == 1);
                pos += len;
            }
            'G' => {
                let names = vec!["AD".to_string(), "BC".to_string()];
                let (_, len) = match_name(rest, &names).ok_or_else(|| bad(pos))?;
                pos += len;
            }
            'X' | 'x' | 'Z' => {
                if (c == 'X' || (c == 'Z' && n == 5)) && rest.starts_with(['Z', 'z']) {
                    p.zone = Some(Zone::UTC);
                    pos += 1;
                    continue;
                }
                let mut start = 0;
                for prefix in ["GMT", "UTC"] {
                    if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(prefix) {
                        start = 3;
                    }
                }
                let len = rest[start..]
                    .char_indices()
                    .take_while(|(i, ch)| {
                        (*i == 0 && (*ch == '+' || *ch == '-'))
                            || (*i > 0 && (ch.is_ascii_digit() || *ch == ':'))
                    })
                    .count();
                let secs = parse_offset(&rest[start..start + len]).ok_or_else(|| bad(pos))?;
                p.zone = Some(Zone::Fixed(secs));
                pos += start + len;
            }
            'z' | 'v' | 'V' | 'O' => {
                let len = rest
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphanumeric() || "/_+-:".contains(*ch))
                    .count();
                // The longest prefix that names a zone.
                let found = (1..=len)
                    .rev()
                    .find_map(|l| Zone::parse(&rest[..l]).map(|z| (z, l)));
                let (z, l) = found.ok_or_else(|| bad(pos))?;
                p.zone = Some(z);
                pos += l;
            }
            _ => return Err(format!("Unsupported pattern letter for parsing: {c}")),
        }
    }
    Ok((p, pos))
}

/// Epoch milliseconds of a parsed timestamp; a zone in the text wins over `zone`.
pub(crate) fn parse_timestamp(pattern: &str, text: &str, zone: Zone) -> Result<i64, String> {
    let p = parse(&tokenize(pattern)?, text)?;
    let local = NaiveDateTime::new(p.date()?, p.time()?);
    let utc = p.zone.unwrap_or(zone).utc_of(&local);
    Ok(utc.and_utc().timestamp_millis())
}

/// Formats epoch milliseconds in a zone.
pub(crate) fn format_timestamp(pattern: &str, millis: i64, zone: Zone) -> Result<String, String> {
    let utc = chrono::DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("Timestamp out of range: {millis}"))?
        .naive_utc();
    let (secs, abbr) = zone.at_utc(&utc);
    let local = utc + Duration::seconds(secs as i64);
    format(
        &tokenize(pattern)?,
        &local,
        Kind::Timestamp,
        Some((zone, secs, &abbr)),
    )
}

pub(crate) const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

pub(crate) fn format_date(pattern: &str, days: i32) -> Result<String, String> {
    let d = EPOCH
        .checked_add_signed(Duration::days(days as i64))
        .ok_or_else(|| format!("Date out of range: {days}"))?;
    format(
        &tokenize(pattern)?,
        &d.and_time(NaiveTime::MIN),
        Kind::Date,
        None,
    )
}

pub(crate) fn parse_date(pattern: &str, text: &str) -> Result<i32, String> {
    let p = parse(&tokenize(pattern)?, text)?;
    Ok((p.date()? - EPOCH).num_days() as i32)
}

/// PARSE_DATE reads with Java's `SimpleDateFormat`, which ignores text after the
/// pattern's end (`2003-12-24-01-01` as `yyyy-MM-dd` is 2003-12-24).
pub(crate) fn parse_date_prefix(pattern: &str, text: &str) -> Result<i32, String> {
    let (p, _) = parse_prefix(&tokenize(pattern)?, text)?;
    Ok((p.date()? - EPOCH).num_days() as i32)
}

pub(crate) fn format_time(pattern: &str, millis: i32) -> Result<String, String> {
    let t = NaiveTime::MIN + Duration::milliseconds(millis.rem_euclid(86_400_000) as i64);
    format(&tokenize(pattern)?, &EPOCH.and_time(t), Kind::Time, None)
}

pub(crate) fn parse_time(pattern: &str, text: &str) -> Result<i32, String> {
    let p = parse(&tokenize(pattern)?, text)?;
    let t = p.time()?;
    Ok((t.num_seconds_from_midnight() * 1000 + t.nanosecond() / 1_000_000) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la() -> Zone {
        Zone::parse("America/Los_Angeles").expect("zone")
    }

    #[test]
    fn parse_date_prefix_ignores_trailing_text() {
        assert_eq!(
            parse_date_prefix("yyyy-MM-dd", "2003-12-24-01-01"),
            Ok(12410)
        );
        assert!(parse_date("yyyy-MM-dd", "2003-12-24-01-01").is_err());
        assert!(parse_date_prefix("yyyy-MM-dd", "2004").is_err());
    }

    #[test]
    fn tokenizes_quotes_and_runs() {
        assert_eq!(
            tokenize("yyyy-MM-dd'T'HH 'o''clock'''").expect("ok"),
            vec![
                Token::Field('y', 4),
                Token::Lit("-".into()),
                Token::Field('M', 2),
                Token::Lit("-".into()),
                Token::Field('d', 2),
                Token::Lit("T".into()),
                Token::Field('H', 2),
                Token::Lit(" o'clock'".into()),
            ]
        );
        assert_eq!(
            tokenize("dd-MM-yyyy'Sophia'").expect("ok").last(),
            Some(&Token::Lit("Sophia".into()))
        );
        assert!(tokenize("yyyy-MM-dd'T").is_err());
        assert!(tokenize("yyyy-bb").is_err());
    }

    #[test]
    fn formats_timestamps() {
        let cases: &[(&str, i64, Zone, &str)] = &[
            (
                "yyyy-MM-dd HH:mm:ss",
                1526075913000,
                Zone::UTC,
                "2018-05-11 21:58:33",
            ),
            (
                "yyyy-MM-dd HH:mm:ss zzz",
                1526075913000,
                la(),
                "2018-05-11 14:58:33 PDT",
            ),
            (
                "yyyy-MM-dd HH:mm:ss zzz",
                1526075913000,
                Zone::parse("Europe/London").expect("zone"),
                "2018-05-11 22:58:33 BST",
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSX",
                1526075913012,
                Zone::UTC,
                "2018-05-11T21:58:33.012Z",
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ssXXX",
                1526075913000,
                la(),
                "2018-05-11T14:58:33-07:00",
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ssZ",
                1526075913000,
                la(),
                "2018-05-11T14:58:33-0700",
            ),
            (
                "EEE, d MMM yy hh:mm a",
                1526075913000,
                Zone::UTC,
                "Fri, 11 May 18 09:58 PM",
            ),
            ("yyyy-MM-dd", -1, Zone::UTC, "1969-12-31"),
        ];
        for (pattern, millis, zone, want) in cases {
            assert_eq!(
                format_timestamp(pattern, *millis, *zone).as_deref(),
                Ok(*want),
                "{pattern}"
            );
        }
    }

    #[test]
    fn parses_timestamps() {
        let cases: &[(&str, &str, Zone, i64)] = &[
            (
                "yyyy-MM-dd'T'HH:mm:ssX",
                "2018-05-11T21:58:33Z",
                Zone::UTC,
                1526075913000,
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ssX",
                "2020-05-11T21:58:33z",
                Zone::UTC,
                1589234313000,
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss zzz",
                "2018-05-11T21:58:33 PST",
                Zone::UTC,
                1526101113000,
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SX",
                "2019-08-27T13:31:09.2+0000",
                Zone::UTC,
                1566912669200,
            ),
            (
                "yyyy-MM-dd HH:mm:ss.SSS",
                "2018-05-11 21:58:33.012",
                Zone::UTC,
                1526075913012,
            ),
            (
                "yyyy-MM-dd HH:mm:ss",
                "2018-05-11 14:58:33",
                la(),
                1526075913000,
            ),
            ("yyyyMMddHHmmss", "20180511215833", Zone::UTC, 1526075913000),
            (
                "yyyy-MM-dd'T'HH:mm:ssXXX",
                "2018-05-11T14:58:33-07:00",
                Zone::UTC,
                1526075913000,
            ),
        ];
        for (pattern, text, zone, want) in cases {
            assert_eq!(
                parse_timestamp(pattern, text, *zone),
                Ok(*want),
                "{pattern} {text}"
            );
        }
        assert!(parse_timestamp("yyyy-MM-dd", "2018-05-11x", Zone::UTC).is_err());
        assert!(parse_timestamp("yyyyMMdd", "foo", Zone::UTC).is_err());
    }

    #[test]
    fn dates_and_times() {
        let dates: &[(&str, &str, i32)] = &[
            ("yyyy-MM-dd'Lit'", "2018-05-11Lit", 17662),
            ("dd/MM/yyyy", "11/05/2019", 18027),
            ("dd-MMM-yyyy", "01-Jan-2022", 18993),
            ("dd-MMM-yyyy", "01-JAN-2022", 18993),
            ("MMM-yyyy", "JAN-2022", 18993),
            ("dd-MM-yyyy", "01-01-1970", 0),
        ];
        for (pattern, text, days) in dates {
            assert_eq!(parse_date(pattern, text), Ok(*days), "{pattern}");
        }
        assert_eq!(
            format_date("dd-MMM-yyyy", 18993).as_deref(),
            Ok("01-Jan-2022")
        );
        assert_eq!(
            format_date("dd-MM-yyyy'Sophia'", -1).as_deref(),
            Ok("31-12-1969Sophia")
        );
        assert!(format_date("yyyy HH", 0).is_err());

        let times: &[(&str, &str, i32)] = &[
            ("HH:mm:ss'Lit'", "00:01:05Lit", 65000),
            ("HH/mm/ss", "11/05/19", 39919000),
            ("hh:mm:ss a", "01:00:00 PM", 46800000),
            ("hh:mm:ss a", "01:00:00 Pm", 46800000),
            ("hh:mm:ss a", "12:00:00 AM", 0),
        ];
        for (pattern, text, millis) in times {
            assert_eq!(parse_time(pattern, text), Ok(*millis), "{pattern}");
        }
        assert_eq!(
            format_time("HH_mm_ss_SSS", 65000).as_deref(),
            Ok("00_01_05_000")
        );
        assert_eq!(
            format_time("HHmmss'AAAAA'", 1234567).as_deref(),
            Ok("002034AAAAA")
        );
        assert!(format_time("yyyy", 0).is_err());
    }

    #[test]
    fn zone_ids() {
        assert_eq!(Zone::parse("UTC"), Some(Zone::UTC));
        assert_eq!(Zone::parse("+05:30"), Some(Zone::Fixed(19800)));
        assert_eq!(Zone::parse("GMT-8"), Some(Zone::Fixed(-28800)));
        assert_eq!(Zone::parse("PST"), Some(la()));
        assert_eq!(Zone::parse("Not/AZone"), None);
    }
}

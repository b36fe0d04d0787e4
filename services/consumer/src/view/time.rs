//! Readable timestamps, as ksqlDB's `TIMESTAMPTOSTRING(ts, 'yyyy-MM-dd HH:mm:ss.SSS', 'UTC')`
//! gives them. Users come with Java `DateTimeFormatter` patterns from ksqlDB, so those are
//! accepted as they are; strftime patterns (anything with a `%`) work too. The zone is an IANA
//! name or a fixed offset, and the same zone reads the times a `--where` compares against.

use chrono::format::{Item, StrftimeItems};
use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc,
};

/// How a timestamp is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// ISO 8601 with milliseconds and the offset (`Z` in UTC): the default.
    Iso,
    /// Milliseconds since the Unix epoch, as ksqlDB shows a BIGINT timestamp.
    EpochMillis,
    /// A strftime pattern, checked when it is parsed.
    Pattern(String),
}

impl TimeFormat {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "iso" | "iso8601" | "" => return Ok(TimeFormat::Iso),
            "epoch-ms" | "epoch_millis" => return Ok(TimeFormat::EpochMillis),
            _ => {}
        }
        let pattern = if text.contains('%') {
            text.to_owned()
        } else {
            java_to_strftime(text)?
        };
        if StrftimeItems::new(&pattern).any(|item| item == Item::Error) {
            return Err(format!("{text:?} is not a valid time format"));
        }
        Ok(TimeFormat::Pattern(pattern))
    }
}

/// The zone times are shown in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    pub fn parse(text: &str) -> Result<Self, String> {
        if matches!(text, "UTC" | "utc" | "Z" | "z") {
            return Ok(Zone::Fixed(Utc.fix()));
        }
        if let Ok(tz) = text.parse::<chrono_tz::Tz>() {
            return Ok(Zone::Named(tz));
        }
        parse_offset(text).map(Zone::Fixed).ok_or_else(|| {
            format!("{text:?} is neither a time zone name (Europe/London) nor an offset (+02:00)")
        })
    }

    /// Renders `at` in this zone.
    pub fn render(&self, at: DateTime<Utc>, format: &TimeFormat) -> String {
        match self {
            Zone::Named(tz) => render_in(at.with_timezone(tz), format),
            Zone::Fixed(offset) => render_in(at.with_timezone(offset), format),
        }
    }

    /// Reads a time given on the command line: RFC 3339 with its own offset, or a date and
    /// time (or a date alone, meaning midnight) in this zone.
    pub fn read(&self, text: &str) -> Result<DateTime<Utc>, String> {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(at.with_timezone(&Utc));
        }
        let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(|| {
                format!("{text:?} is not a time like 2024-05-01, 2024-05-01 09:30:00 or 2024-05-01T09:30:00Z")
            })?;
        let local = match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.to_utc()),
            Zone::Fixed(offset) => offset
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.to_utc()),
        };
        local.ok_or_else(|| format!("{text:?} does not exist in this time zone (a DST gap)"))
    }
}

fn render_in<Tz: TimeZone>(at: DateTime<Tz>, format: &TimeFormat) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match format {
        TimeFormat::Iso => at.to_rfc3339_opts(SecondsFormat::Millis, true),
        TimeFormat::EpochMillis => at.timestamp_millis().to_string(),
        TimeFormat::Pattern(pattern) => at.format(pattern).to_string(),
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let seconds = hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * seconds)
}

/// Translates a Java `DateTimeFormatter` pattern (as ksqlDB takes) into strftime. Letters are
/// pattern letters and text in single quotes is literal, as in Java; a letter we do not know
/// is refused rather than printed wrongly.
fn java_to_strftime(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        if c == '\'' {
            let close = chars[i + 1..].iter().position(|&d| d == '\'');
            match close {
                Some(0) => out.push('\''),
                Some(n) => chars[i + 1..i + 1 + n]
                    .iter()
                    .for_each(|&d| push_literal(&mut out, d)),
                None => return Err(format!("{pattern:?} has an unclosed quote")),
            }
            i += close.map_or(chars.len(), |n| n + 2);
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        out.push_str(java_letter(c, run).ok_or_else(|| {
            format!(
                "{pattern:?}: the pattern letters {:?} are not supported",
                c.to_string().repeat(run)
            )
        })?);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

fn java_letter(c: char, run: usize) -> Option<&'static str> {
    Some(match (c, run) {
        ('y' | 'u', 2) => "%y",
        ('y' | 'u', _) => "%Y",
        ('M', 1) => "%-m",
        ('M', 2) => "%m",
        ('M', 3) => "%b",
        ('M', _) => "%B",
        ('d', 1) => "%-d",
        ('d', _) => "%d",
        ('D', _) => "%j",
        ('E', 1..=3) => "%a",
        ('E', _) => "%A",
        ('a', _) => "%p",
        ('H', 1) => "%-H",
        ('H', _) => "%H",
        ('h', 1) => "%-I",
        ('h', _) => "%I",
        ('m', 1) => "%-M",
        ('m', _) => "%M",
        ('s', 1) => "%-S",
        ('s', _) => "%S",
        ('S', 1..=3) => "%3f",
        ('S', 4..=6) => "%6f",
        ('S', _) => "%9f",
        ('X', 1) => "%#z",
        ('X' | 'x', 2) | ('Z', 1..=3) => "%z",
        ('X' | 'x', _) | ('Z', _) => "%:z",
        ('z', _) => "%Z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_618_269_963, 655_000_000).unwrap_or_default()
    }

    #[test]
    fn java_patterns_print_as_ksqldb_prints_them() {
        let utc = Zone::parse("UTC").unwrap_or(Zone::Fixed(Utc.fix()));
        let format = TimeFormat::parse("yyyy-MM-dd HH:mm:ss.SSS");
        assert_eq!(
            format.as_ref().map(|f| utc.render(at(), f)),
            Ok("2021-04-12 23:26:03.655".into())
        );
        let format = TimeFormat::parse("yyyy-MM-dd'T'HH:mm:ssXXX 'at' h a");
        assert_eq!(
            format.map(|f| utc.render(at(), &f)),
            Ok("2021-04-12T23:26:03+00:00 at 11 PM".into())
        );
        assert!(
            TimeFormat::parse("yyyy-MM-dd G").is_err(),
            "an unknown letter is refused"
        );
        assert!(TimeFormat::parse("yyyy 'oops").is_err());
    }

    #[test]
    fn the_default_is_iso_with_milliseconds_and_the_zone_applies() {
        let paris = Zone::parse("Europe/Paris").unwrap_or(Zone::Fixed(Utc.fix()));
        assert_eq!(
            paris.render(at(), &TimeFormat::Iso),
            "2021-04-13T01:26:03.655+02:00"
        );
        let utc = Zone::parse("UTC").unwrap_or(Zone::Fixed(Utc.fix()));
        assert_eq!(
            utc.render(at(), &TimeFormat::Iso),
            "2021-04-12T23:26:03.655Z"
        );
        assert_eq!(utc.render(at(), &TimeFormat::EpochMillis), "1618269963655");
        let fixed = Zone::parse("-0530").unwrap_or(Zone::Fixed(Utc.fix()));
        assert_eq!(
            fixed.render(at(), &TimeFormat::Iso),
            "2021-04-12T17:56:03.655-05:30"
        );
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+99:00").is_err());
        let strftime = TimeFormat::parse("%d/%m/%Y %H:%M");
        assert_eq!(
            strftime.map(|f| utc.render(at(), &f)),
            Ok("12/04/2021 23:26".into())
        );
        assert!(TimeFormat::parse("%Q").is_err());
    }

    #[test]
    fn times_on_the_command_line_are_read_in_the_zone() {
        let paris = Zone::parse("Europe/Paris").unwrap_or(Zone::Fixed(Utc.fix()));
        let expect = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.to_utc())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            paris.read("2021-04-13 01:26:03.655"),
            expect("2021-04-12T23:26:03.655Z")
        );
        assert_eq!(paris.read("2021-04-13"), expect("2021-04-12T22:00:00Z"));
        assert_eq!(
            paris.read("2021-04-12T23:26:03Z"),
            expect("2021-04-12T23:26:03Z")
        );
        assert!(
            paris.read("2021-03-28 02:30").is_err(),
            "a time in the DST gap does not exist"
        );
        assert!(paris.read("yesterday").is_err());
    }
}

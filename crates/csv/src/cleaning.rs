//! Cleaning of CSV fields, as the original tutorial did for descriptions and amounts, plus dates
//! and kinds. Pure functions: every rule is a unit test away. Each failure is a sentence that
//! names the field and the value, because it ends up in the rejects file for a person to read.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Trims, collapses runs of whitespace to one space, and drops control characters.
pub fn clean_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// How amounts write their decimal separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalStyle {
    /// `1,234.50`
    #[default]
    Point,
    /// `1.234,50`
    Comma,
}

/// Parses an amount into signed cents: `$1,234.50` -> 123450, ` 12.5 ` -> 1250, `-3.10` -> -310,
/// `(12.00)` -> -1200 (accounting negative). Currency symbols are ignored; thousands separators
/// must group by three; more than two decimals is an error, never rounded.
pub fn parse_amount_cents(raw: &str, style: DecimalStyle) -> Result<i64, String> {
    let shown = clean_text(raw);
    let mut s: &str = &shown;
    if s.is_empty() {
        return Err("amount is empty".into());
    }
    let mut negative = false;
    if let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        negative = true;
        s = inner.trim();
    }
    let s = s.trim_matches(|c: char| matches!(c, '$' | '€' | '£' | '¥') || c.is_whitespace());
    let (sign_negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let s = s.trim_start_matches(|c: char| matches!(c, '$' | '€' | '£' | '¥') || c.is_whitespace());
    if negative && sign_negative {
        return Err(format!("amount {shown:?} is negative twice"));
    }
    negative |= sign_negative;

    let (thousands, decimal) = match style {
        DecimalStyle::Point => (',', '.'),
        DecimalStyle::Comma => ('.', ','),
    };
    let (whole, fraction) = match s.split_once(decimal) {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("amount {shown:?} has no digits"));
    }
    let groups: Vec<&str> = whole.split(thousands).collect();
    let grouped_ok = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    if !grouped_ok {
        let hint = match style {
            DecimalStyle::Point => " (for 1.234,50-style amounts use --decimal-comma)",
            DecimalStyle::Comma => "",
        };
        return Err(format!(
            "amount {shown:?} has a misplaced thousands separator{hint}"
        ));
    }
    let digits: String = groups.concat();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!("amount {shown:?} is not a number"));
    }
    if fraction.len() > 2 {
        return Err(format!(
            "amount {shown:?} has {} decimal places; at most 2 are allowed (no rounding)",
            fraction.len()
        ));
    }
    let whole_value: i64 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| format!("amount {shown:?} is too large"))?
    };
    let fraction_value: i64 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let cents = whole_value
        .checked_mul(100)
        .and_then(|c| c.checked_add(fraction_value))
        .ok_or_else(|| format!("amount {shown:?} is too large"))?;
    Ok(if negative { -cents } else { cents })
}

/// Deposit or withdrawal, from a kind column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Deposit,
    Withdrawal,
}

pub fn parse_kind(raw: &str) -> Result<Direction, String> {
    match clean_text(raw).to_ascii_lowercase().as_str() {
        "deposit" | "credit" | "cr" | "d" | "in" | "transaction_kind_deposit" => {
            Ok(Direction::Deposit)
        }
        "withdrawal"
        | "withdraw"
        | "debit"
        | "dr"
        | "w"
        | "out"
        | "transaction_kind_withdrawal" => Ok(Direction::Withdrawal),
        "" => Err("kind is empty".into()),
        other => Err(format!(
            "kind {other:?} is not one of deposit/credit or withdrawal/debit"
        )),
    }
}

/// The direction and positive amount of a row. Without a kind column the sign decides; with one,
/// the kind decides and a sign that contradicts it (a negative deposit) is an error.
pub fn direction_and_amount(
    signed_cents: i64,
    kind: Option<Direction>,
) -> Result<(Direction, i64), String> {
    if signed_cents == 0 {
        return Err("amount is zero; a transaction moves money".into());
    }
    let magnitude = signed_cents.unsigned_abs() as i64;
    match kind {
        None if signed_cents > 0 => Ok((Direction::Deposit, magnitude)),
        None => Ok((Direction::Withdrawal, magnitude)),
        Some(Direction::Deposit) if signed_cents < 0 => {
            Err("amount is negative but kind says deposit".into())
        }
        Some(direction) => Ok((direction, magnitude)),
    }
}

/// Which way round `a/b/yyyy` dates are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlashDates {
    /// `03/04/2025` is March 4th (US).
    #[default]
    MonthFirst,
    /// `03/04/2025` is April 3rd.
    DayFirst,
}

/// Parses the common date formats: RFC 3339 / ISO 8601 with offset, `YYYY-MM-DD[ T]HH:MM[:SS]`
/// (UTC), `YYYY-MM-DD`, `YYYY/MM/DD`, `DD.MM.YYYY`, and `a/b/YYYY [HH:MM[:SS]]` per `slash`.
/// Dates without a time are midnight UTC.
pub fn parse_date(raw: &str, slash: SlashDates) -> Result<DateTime<Utc>, String> {
    let s = clean_text(raw);
    if s.is_empty() {
        return Err("date is empty".into());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(&s) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%:z"] {
        if let Ok(dt) = DateTime::parse_from_str(&s, format) {
            return Ok(dt.with_timezone(&Utc));
        }
    }
    let slash_formats: &[&str] = match slash {
        SlashDates::MonthFirst => &["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M"],
        SlashDates::DayFirst => &["%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"],
    };
    let datetime_formats = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%d.%m.%Y %H:%M:%S",
    ];
    for format in datetime_formats.iter().chain(slash_formats) {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&s, format) {
            return Ok(Utc.from_utc_datetime(&naive));
        }
    }
    let slash_date = match slash {
        SlashDates::MonthFirst => "%m/%d/%Y",
        SlashDates::DayFirst => "%d/%m/%Y",
    };
    for format in ["%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", slash_date] {
        if let Ok(date) = NaiveDate::parse_from_str(&s, format) {
            return Ok(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists")));
        }
    }
    let hint = if s.contains('/') {
        match slash {
            SlashDates::MonthFirst => {
                " (slash dates are read month/day/year; use --day-first for day/month/year)"
            }
            SlashDates::DayFirst => " (slash dates are read day/month/year)",
        }
    } else {
        ""
    };
    Err(format!("date {s:?} is not in a known format{hint}"))
}

/// An ISO 4217 code: three ASCII letters, upper-cased.
pub fn parse_currency(raw: &str) -> Result<String, String> {
    let s = clean_text(raw).to_ascii_uppercase();
    if s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(s)
    } else {
        Err(format!("currency {s:?} is not a 3-letter ISO 4217 code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecimalStyle::{Comma, Point};

    #[test]
    fn text_is_trimmed_collapsed_and_stripped() {
        assert_eq!(clean_text("  coffee \t  shop\n"), "coffee shop");
        assert_eq!(clean_text("a\u{0007}b\u{0000}c"), "abc");
        assert_eq!(clean_text("\r\n"), "");
        assert_eq!(clean_text("café  crème"), "café crème");
    }

    #[test]
    fn amounts_normalise_like_the_tutorial() {
        assert_eq!(parse_amount_cents("$1,234.50", Point), Ok(123_450));
        assert_eq!(parse_amount_cents(" 12.5 ", Point), Ok(1_250));
        assert_eq!(parse_amount_cents("-3.10", Point), Ok(-310));
        assert_eq!(parse_amount_cents("(12.00)", Point), Ok(-1_200));
        assert_eq!(parse_amount_cents("($5)", Point), Ok(-500));
        assert_eq!(parse_amount_cents("-$7.05", Point), Ok(-705));
        assert_eq!(parse_amount_cents("+8", Point), Ok(800));
        assert_eq!(parse_amount_cents(".75", Point), Ok(75));
        assert_eq!(parse_amount_cents("1,000,000.01", Point), Ok(100_000_001));
        assert_eq!(parse_amount_cents("1.234,50", Comma), Ok(123_450));
        assert_eq!(parse_amount_cents("€ 12,5", Comma), Ok(1_250));
        assert_eq!(parse_amount_cents("-0,01", Comma), Ok(-1));
    }

    #[test]
    fn bad_amounts_are_explained() {
        let err = |s: &str, style| parse_amount_cents(s, style).unwrap_err();
        assert!(err("1.005", Point).contains("3 decimal places"));
        assert!(err("", Point).contains("empty"));
        assert!(err("abc", Point).contains("not a number"));
        assert!(err("12,5", Point).contains("--decimal-comma"));
        assert!(err("1,23.00", Point).contains("thousands separator"));
        assert!(err("1.2.3", Point).contains("not a number"));
        assert!(
            err("-(3.00)", Point).contains("not a number")
                || err("-(3.00)", Point).contains("twice")
        );
        assert!(err("99999999999999999999", Point).contains("too large"));
        assert!(err("$", Point).contains("no digits"));
    }

    #[test]
    fn sign_or_kind_decides_direction() {
        use Direction::*;
        assert_eq!(direction_and_amount(500, None), Ok((Deposit, 500)));
        assert_eq!(direction_and_amount(-500, None), Ok((Withdrawal, 500)));
        assert_eq!(
            direction_and_amount(500, Some(Withdrawal)),
            Ok((Withdrawal, 500))
        );
        assert_eq!(
            direction_and_amount(-500, Some(Withdrawal)),
            Ok((Withdrawal, 500))
        );
        assert!(direction_and_amount(-500, Some(Deposit)).is_err());
        assert!(direction_and_amount(0, None).unwrap_err().contains("zero"));
        assert_eq!(parse_kind(" Debit "), Ok(Withdrawal));
        assert_eq!(parse_kind("CR"), Ok(Deposit));
        assert!(parse_kind("refund?").unwrap_err().contains("refund?"));
    }

    #[test]
    fn dates_in_common_formats() {
        let at = |s: &str| parse_date(s, SlashDates::MonthFirst).unwrap().to_rfc3339();
        assert_eq!(at("2024-03-04T10:11:12Z"), "2024-03-04T10:11:12+00:00");
        assert_eq!(at("2024-03-04T10:11:12+02:00"), "2024-03-04T08:11:12+00:00");
        assert_eq!(at("2024-03-04 10:11:12"), "2024-03-04T10:11:12+00:00");
        assert_eq!(at("2024-03-04"), "2024-03-04T00:00:00+00:00");
        assert_eq!(at("2024/03/04"), "2024-03-04T00:00:00+00:00");
        assert_eq!(at("04.03.2024"), "2024-03-04T00:00:00+00:00");
        assert_eq!(at("03/04/2024"), "2024-03-04T00:00:00+00:00");
        assert_eq!(at("03/04/2024 09:30"), "2024-03-04T09:30:00+00:00");
        let day_first = parse_date("03/04/2024", SlashDates::DayFirst).unwrap();
        assert_eq!(day_first.to_rfc3339(), "2024-04-03T00:00:00+00:00");
        let err = parse_date("13/01/2024", SlashDates::MonthFirst).unwrap_err();
        assert!(err.contains("--day-first"), "{err}");
        assert!(parse_date("yesterday", SlashDates::MonthFirst).is_err());
        assert!(parse_date("2024-02-30", SlashDates::MonthFirst).is_err());
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert_eq!(parse_currency(" usd "), Ok("USD".into()));
        assert!(parse_currency("US$").is_err());
    }
}

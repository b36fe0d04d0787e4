//! Money is exact: integer minor units (cents) everywhere, decimals only for display.

use crate::pb::{Transaction, TransactionKind};

/// The signed effect of a transaction on its account's balance, in cents: `+amount` for a
/// deposit, `-amount` for a withdrawal. `None` for a kind that is not a valid direction.
pub fn signed_amount_cents(tx: &Transaction) -> Option<i64> {
    match TransactionKind::try_from(tx.kind).ok()? {
        TransactionKind::Deposit => Some(tx.amount_cents),
        TransactionKind::Withdrawal => tx.amount_cents.checked_neg(),
        TransactionKind::Unspecified => None,
    }
}

/// Formats cents as a decimal with two places: `123456` -> `"1234.56"`, `-5` -> `"-0.05"`.
/// Takes `i128` so that sums of many `i64` amounts can be shown without overflow.
pub fn format_cents(cents: impl Into<i128>) -> String {
    let cents = cents.into();
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses a plain decimal amount such as `-5000.00`, `12.5` or `300` into cents. Strict: an
/// optional sign, digits, and at most two decimals (for configuration, not for messy input).
pub fn parse_cents(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 2
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(format!("{text:?} is not an amount like -5000.00"));
    }
    let cents = whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(100))
        .and_then(|w| w.checked_add(format!("{fraction:0<2}").parse::<i64>().unwrap_or(0)))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    Ok(if negative { -cents } else { cents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configured_amounts() {
        assert_eq!(parse_cents("-5000.00"), Ok(-500_000));
        assert_eq!(parse_cents("12.5"), Ok(1_250));
        assert_eq!(parse_cents("300"), Ok(30_000));
        assert!(parse_cents("1.005").is_err());
        assert!(parse_cents("abc").is_err());
        assert!(parse_cents("").is_err());
    }

    #[test]
    fn formats_with_two_places_and_sign() {
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_cents(123_456), "1234.56");
        assert_eq!(format_cents(-100), "-1.00");
        assert_eq!(format_cents(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn kind_gives_the_sign() {
        let mut tx = Transaction {
            amount_cents: 250,
            kind: TransactionKind::Deposit as i32,
            ..Default::default()
        };
        assert_eq!(signed_amount_cents(&tx), Some(250));
        tx.kind = TransactionKind::Withdrawal as i32;
        assert_eq!(signed_amount_cents(&tx), Some(-250));
        tx.kind = TransactionKind::Unspecified as i32;
        assert_eq!(signed_amount_cents(&tx), None);
        tx.kind = 42;
        assert_eq!(signed_amount_cents(&tx), None);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

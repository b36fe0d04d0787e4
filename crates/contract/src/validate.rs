//! The rules of the contract that protobuf's types cannot express. A decoded event that breaks
//! one is poison: a consumer dead-letters it with the violation as the reason.

use crate::pb::{Customer, Transaction, TransactionKind};

/// What is wrong with an event, as a sentence for a dead-letter header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Violation {
    pub field: &'static str,
    pub problem: String,
}

fn violation(field: &'static str, problem: impl Into<String>) -> Violation {
    Violation {
        field,
        problem: problem.into(),
    }
}

/// The largest amount one transaction may carry: 10^15 minor units (ten trillion dollars). A
/// balance of even a billion such transactions stays far inside `i64` (and the ledger checks
/// every sum anyway), while no real movement of money comes near it.
pub const MAX_AMOUNT_CENTS: i64 = 1_000_000_000_000_000;

/// Longest accepted text per field, in bytes of UTF-8 (what the databases store and index).
pub const MAX_ACCOUNT_NUMBER: usize = 64;
pub const MAX_REFERENCE: usize = 128;
pub const MAX_NAME: usize = 200;
pub const MAX_EMAIL: usize = 254;
pub const MAX_DESCRIPTION: usize = 16_384;

/// `google.protobuf.Timestamp`'s documented range, 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z, which PostgreSQL and SQLite both store.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Puts fields that have one canonical form into it, so that every role agrees on what counts
/// as the same event: the transaction id as lower-case UUID text.
pub fn canonicalize(tx: &mut Transaction) {
    if tx.transaction_id.bytes().any(|b| b.is_ascii_uppercase()) {
        tx.transaction_id.make_ascii_lowercase();
    }
}

/// [`canonicalize`], then [`transaction`]: what a consumer accepts, in the form it compares.
pub fn canonical_transaction(mut tx: Transaction) -> Result<Transaction, Violation> {
    canonicalize(&mut tx);
    transaction(&tx)?;
    Ok(tx)
}

pub fn transaction(tx: &Transaction) -> Result<(), Violation> {
    if uuid_like(&tx.transaction_id).is_none() {
        return Err(violation(
            "transaction_id",
            format!("{:?} is not a UUID", shorten(&tx.transaction_id)),
        ));
    }
    account_number(&tx.account_number)?;
    text(
        "transaction_reference",
        &tx.transaction_reference,
        MAX_REFERENCE,
        false,
    )?;
    text("description", &tx.description, MAX_DESCRIPTION, true)?;
    match TransactionKind::try_from(tx.kind) {
        Ok(TransactionKind::Deposit | TransactionKind::Withdrawal) => {}
        _ => {
            return Err(violation(
                "kind",
                format!("{} is not DEPOSIT or WITHDRAWAL", tx.kind),
            ));
        }
    }
    if tx.amount_cents <= 0 {
        return Err(violation(
            "amount_cents",
            format!(
                "{} is not positive (the kind carries the sign)",
                tx.amount_cents
            ),
        ));
    }
    if tx.amount_cents > MAX_AMOUNT_CENTS {
        return Err(violation(
            "amount_cents",
            format!(
                "{} is above the limit of {MAX_AMOUNT_CENTS}",
                tx.amount_cents
            ),
        ));
    }
    if tx.currency.len() != 3 || !tx.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(violation(
            "currency",
            format!("{:?} is not an ISO 4217 code", shorten(&tx.currency)),
        ));
    }
    match &tx.transaction_datetime {
        None => return Err(violation("transaction_datetime", "is missing")),
        Some(at) => timestamp("transaction_datetime", at)?,
    }
    Ok(())
}

pub fn customer(c: &Customer) -> Result<(), Violation> {
    account_number(&c.account_number)?;
    text("first_name", &c.first_name, MAX_NAME, false)?;
    text("last_name", &c.last_name, MAX_NAME, false)?;
    text("email", &c.email, MAX_EMAIL, false)?;
    if let Some(at) = &c.created_at {
        timestamp("created_at", at)?;
    }
    if let Some(at) = &c.updated_at {
        timestamp("updated_at", at)?;
    }
    Ok(())
}

fn account_number(account: &str) -> Result<(), Violation> {
    if account.trim().is_empty() {
        return Err(violation("account_number", "is empty"));
    }
    if account.trim() != account {
        return Err(violation(
            "account_number",
            format!("{:?} has leading or trailing spaces", shorten(account)),
        ));
    }
    text("account_number", account, MAX_ACCOUNT_NUMBER, false)
}

/// Text the databases store as given: no NUL (PostgreSQL refuses it in text), no other control
/// characters (tab, line feed and carriage return allowed in free text only), at most `max`
/// bytes.
fn text(field: &'static str, value: &str, max: usize, free_text: bool) -> Result<(), Violation> {
    if value.len() > max {
        return Err(violation(
            field,
            format!("is {} bytes long, above the limit of {max}", value.len()),
        ));
    }
    let allowed = |c: char| free_text && matches!(c, '\t' | '\n' | '\r');
    if let Some((at, c)) = value
        .char_indices()
        .find(|(_, c)| c.is_control() && !allowed(*c))
    {
        return Err(violation(
            field,
            format!(
                "holds the control character U+{:04X} at byte {at}",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn timestamp(field: &'static str, at: &prost_types::Timestamp) -> Result<(), Violation> {
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(violation(
            field,
            format!("nanos {} is outside 0..=999999999", at.nanos),
        ));
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&at.seconds) {
        return Err(violation(
            field,
            format!(
                "{} s is outside 0001-01-01..9999-12-31 (google.protobuf.Timestamp's range)",
                at.seconds
            ),
        ));
    }
    Ok(())
}

/// At most 64 characters of a value for a message (a hostile value may be megabytes long).
fn shorten(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Canonical UUID text: 36 characters, lower-case hex digits and dashes at 8-4-4-4-12.
fn uuid_like(s: &str) -> Option<()> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    for (i, b) in bytes.iter().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        let hex = b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if dash != (*b == b'-') || (!dash && !hex) {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Transaction {
        Transaction {
            transaction_id: "0b6f2d0e-8a0c-4a53-9a43-9c1c1f1f0001".into(),
            account_number: "ACC-1".into(),
            kind: TransactionKind::Deposit as i32,
            amount_cents: 1,
            currency: "USD".into(),
            transaction_datetime: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_valid_transaction() {
        assert_eq!(transaction(&good()), Ok(()));
    }

    #[test]
    fn names_each_violation() {
        let field = |f: fn(&mut Transaction)| {
            let mut tx = good();
            f(&mut tx);
            transaction(&tx).unwrap_err().field
        };
        assert_eq!(field(|t| t.transaction_id = "42".into()), "transaction_id");
        assert_eq!(field(|t| t.account_number = " ".into()), "account_number");
        assert_eq!(field(|t| t.kind = 0), "kind");
        assert_eq!(field(|t| t.amount_cents = -5), "amount_cents");
        assert_eq!(field(|t| t.amount_cents = 0), "amount_cents");
        assert_eq!(field(|t| t.currency = "usd".into()), "currency");
        assert_eq!(
            field(|t| t.transaction_datetime = None),
            "transaction_datetime"
        );
        assert!(customer(&Customer::default()).is_err());
    }

    /// Every string field, every limit: what the databases refuse never reaches them.
    #[test]
    fn strings_are_bounded_and_free_of_control_characters() {
        let field = |f: fn(&mut Transaction)| {
            let mut tx = good();
            f(&mut tx);
            transaction(&tx).err().map(|v| v.field)
        };
        assert_eq!(
            field(|t| t.description = "a\u{0}b".into()),
            Some("description")
        );
        assert_eq!(field(|t| t.description = "tab\tnew\nline\r".into()), None);
        assert_eq!(
            field(|t| t.description = "\u{1b}[31m".into()),
            Some("description")
        );
        assert_eq!(
            field(|t| t.description = "é".repeat(MAX_DESCRIPTION / 2)),
            None
        );
        assert_eq!(
            field(|t| t.description = "x".repeat(MAX_DESCRIPTION + 1)),
            Some("description")
        );
        assert_eq!(
            field(|t| t.transaction_reference = "R\u{0}".into()),
            Some("transaction_reference")
        );
        assert_eq!(
            field(|t| t.transaction_reference = "r".repeat(129)),
            Some("transaction_reference")
        );
        assert_eq!(
            field(|t| t.account_number = "ACC\u{0}1".into()),
            Some("account_number")
        );
        assert_eq!(
            field(|t| t.account_number = "ACC\n1".into()),
            Some("account_number")
        );
        assert_eq!(
            field(|t| t.account_number = " ACC-1".into()),
            Some("account_number")
        );
        assert_eq!(
            field(|t| t.account_number = "A".repeat(65)),
            Some("account_number")
        );
        assert_eq!(field(|t| t.account_number = "A".repeat(64)), None);

        let customer_field = |f: fn(&mut Customer)| {
            let mut c = Customer {
                account_number: "ACC-1".into(),
                ..Default::default()
            };
            f(&mut c);
            customer(&c).err().map(|v| v.field)
        };
        assert_eq!(
            customer_field(|c| c.first_name = "Ada\u{0}".into()),
            Some("first_name")
        );
        assert_eq!(
            customer_field(|c| c.last_name = "L".repeat(201)),
            Some("last_name")
        );
        assert_eq!(
            customer_field(|c| c.email = "e\u{7f}".into()),
            Some("email")
        );
        assert_eq!(customer_field(|c| c.email = "e".repeat(255)), Some("email"));
        assert_eq!(customer_field(|c| c.first_name = "Zoë 李".into()), None);
    }

    #[test]
    fn amounts_and_timestamps_stay_in_range() {
        let field = |f: fn(&mut Transaction)| {
            let mut tx = good();
            f(&mut tx);
            transaction(&tx).err().map(|v| v.field)
        };
        assert_eq!(field(|t| t.amount_cents = MAX_AMOUNT_CENTS), None);
        assert_eq!(
            field(|t| t.amount_cents = MAX_AMOUNT_CENTS + 1),
            Some("amount_cents")
        );
        assert_eq!(field(|t| t.amount_cents = i64::MAX), Some("amount_cents"));
        assert_eq!(field(|t| t.amount_cents = i64::MIN), Some("amount_cents"));
        let at = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
        let with_time = |ts: Option<prost_types::Timestamp>| {
            let mut tx = good();
            tx.transaction_datetime = ts;
            transaction(&tx).err().map(|v| v.field)
        };
        assert_eq!(with_time(at(MAX_TIMESTAMP_SECONDS, 999_999_999)), None);
        assert_eq!(with_time(at(MIN_TIMESTAMP_SECONDS, 0)), None);
        assert_eq!(
            with_time(at(MAX_TIMESTAMP_SECONDS + 1, 0)),
            Some("transaction_datetime")
        );
        assert_eq!(
            with_time(at(MIN_TIMESTAMP_SECONDS - 1, 0)),
            Some("transaction_datetime")
        );
        assert_eq!(with_time(at(0, -1)), Some("transaction_datetime"));
        assert_eq!(
            with_time(at(0, 1_000_000_000)),
            Some("transaction_datetime")
        );
        assert_eq!(with_time(at(i64::MIN, 0)), Some("transaction_datetime"));
        let mut c = Customer {
            account_number: "ACC-1".into(),
            updated_at: at(i64::MAX, 0),
            ..Default::default()
        };
        assert_eq!(customer(&c).unwrap_err().field, "updated_at");
        c.updated_at = None;
        c.created_at = at(0, -5);
        assert_eq!(customer(&c).unwrap_err().field, "created_at");
    }

    #[test]
    fn transaction_ids_have_one_canonical_form() {
        let mut tx = good();
        tx.transaction_id = "0B6F2D0E-8A0C-4A53-9A43-9C1C1F1F0001".into();
        assert_eq!(transaction(&tx).unwrap_err().field, "transaction_id");
        canonicalize(&mut tx);
        assert_eq!(tx.transaction_id, good().transaction_id);
        assert_eq!(transaction(&tx), Ok(()));
        for bad in [
            "{0b6f2d0e-8a0c-4a53-9a43-9c1c1f1f0001}",
            "0b6f2d0e8a0c4a539a439c1c1f1f0001",
            "0b6f2d0e-8a0c-4a53-9a43-9c1c1f1f000g",
        ] {
            tx.transaction_id = bad.into();
            canonicalize(&mut tx);
            assert_eq!(
                transaction(&tx).unwrap_err().field,
                "transaction_id",
                "{bad}"
            );
        }
    }
}

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

pub fn transaction(tx: &Transaction) -> Result<(), Violation> {
    if uuid_like(&tx.transaction_id).is_none() {
        return Err(violation(
            "transaction_id",
            format!("{:?} is not a UUID", tx.transaction_id),
        ));
    }
    account_number(&tx.account_number)?;
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
    if tx.currency.len() != 3 || !tx.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(violation(
            "currency",
            format!("{:?} is not an ISO 4217 code", tx.currency),
        ));
    }
    if tx.transaction_datetime.is_none() {
        return Err(violation("transaction_datetime", "is missing"));
    }
    Ok(())
}

pub fn customer(c: &Customer) -> Result<(), Violation> {
    account_number(&c.account_number)
}

fn account_number(account: &str) -> Result<(), Violation> {
    if account.trim().is_empty() {
        return Err(violation("account_number", "is empty"));
    }
    if account.len() > 64 {
        return Err(violation("account_number", "is longer than 64 characters"));
    }
    Ok(())
}

/// Canonical UUID text: 36 characters, hex digits and dashes at 8-4-4-4-12.
fn uuid_like(s: &str) -> Option<()> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    for (i, b) in bytes.iter().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        if dash != (*b == b'-') || (!dash && !b.is_ascii_hexdigit()) {
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
}

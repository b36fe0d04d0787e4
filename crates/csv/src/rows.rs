//! From a CSV row to a `Transaction`: column mapping and the cleaning rules, no I/O.

use bank_contract::pb::{Transaction, TransactionKind};
use bank_contract::time::timestamp;
use csv::StringRecord;

use crate::cleaning::{
    DecimalStyle, Direction, SlashDates, clean_text, direction_and_amount, parse_amount_cents,
    parse_currency, parse_date, parse_kind,
};

/// Header names of the columns, as given by flags (matched case-insensitively, trimmed).
#[derive(Debug, Clone, clap::Args)]
pub struct ColumnNames {
    /// Column holding the account number.
    #[arg(
        id = "account_column",
        long = "account-column",
        env = "CSV_ACCOUNT_COLUMN",
        default_value = "account_number"
    )]
    pub account: String,
    /// Column holding the amount ($1,234.50, -3.10, (12.00), ...).
    #[arg(
        id = "amount_column",
        long = "amount-column",
        env = "CSV_AMOUNT_COLUMN",
        default_value = "amount"
    )]
    pub amount: String,
    /// Column holding the date.
    #[arg(
        id = "date_column",
        long = "date-column",
        env = "CSV_DATE_COLUMN",
        default_value = "date"
    )]
    pub date: String,
    /// Column holding the description (optional).
    #[arg(
        id = "description_column",
        long = "description-column",
        env = "CSV_DESCRIPTION_COLUMN",
        default_value = "description"
    )]
    pub description: String,
    /// Column holding deposit/withdrawal (optional; without it the amount's sign decides).
    #[arg(
        id = "kind_column",
        long = "kind-column",
        env = "CSV_KIND_COLUMN",
        default_value = "kind"
    )]
    pub kind: String,
    /// Column holding the bank's reference (optional).
    #[arg(
        id = "reference_column",
        long = "reference-column",
        env = "CSV_REFERENCE_COLUMN",
        default_value = "transaction_reference"
    )]
    pub reference: String,
    /// Column holding a UUID transaction id (optional; without it the id is derived from the row).
    #[arg(
        id = "id_column",
        long = "id-column",
        env = "CSV_ID_COLUMN",
        default_value = "transaction_id"
    )]
    pub id: String,
    /// Column holding the ISO 4217 currency (optional; default --currency).
    #[arg(
        id = "currency_column",
        long = "currency-column",
        env = "CSV_CURRENCY_COLUMN",
        default_value = "currency"
    )]
    pub currency: String,
    /// Column holding the branch id (optional; default: derived from the account number).
    #[arg(
        id = "branch_column",
        long = "branch-column",
        env = "CSV_BRANCH_COLUMN",
        default_value = "branch_id"
    )]
    pub branch: String,
}

/// Where each field is in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub width: usize,
    account: usize,
    amount: usize,
    date: usize,
    description: Option<usize>,
    kind: Option<usize>,
    reference: Option<usize>,
    id: Option<usize>,
    currency: Option<usize>,
    branch: Option<usize>,
}

impl Columns {
    pub fn from_header(header: &StringRecord, names: &ColumnNames) -> Result<Columns, String> {
        let find = |name: &str| {
            header.iter().position(|h| {
                clean_text(h.trim_start_matches('\u{feff}')).eq_ignore_ascii_case(name.trim())
            })
        };
        let required = |name: &str| {
            find(name).ok_or_else(|| {
                format!(
                    "the header has no column {name:?} (columns: {}); map it with the matching --*-column flag",
                    header.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        Ok(Columns {
            width: header.len(),
            account: required(&names.account)?,
            amount: required(&names.amount)?,
            date: required(&names.date)?,
            description: find(&names.description),
            kind: find(&names.kind),
            reference: find(&names.reference),
            id: find(&names.id),
            currency: find(&names.currency),
            branch: find(&names.branch),
        })
    }
}

/// Rules for turning rows into transactions.
#[derive(Debug, Clone)]
pub struct RowRules {
    pub decimal: DecimalStyle,
    pub slash_dates: SlashDates,
    pub default_currency: String,
    pub branches: u32,
}

impl RowRules {
    /// Decimal points, month-first slashes, USD, 3 branches: what the tests and the fuzz target
    /// read rows with (the CLI builds its rules from its flags).
    pub fn standard() -> RowRules {
        RowRules {
            decimal: DecimalStyle::Point,
            slash_dates: SlashDates::MonthFirst,
            default_currency: "USD".into(),
            branches: 3,
        }
    }
}

/// Ids derived from rows live in their own UUIDv5 namespace.
const ROW_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6ba7_b8a0_9dad_11d1_80b4_00c0_4fd4_30c8);

/// Cleans one row (found at `line` of the file) into a transaction, or says why it cannot be.
pub fn clean_row(
    record: &StringRecord,
    line: u64,
    columns: &Columns,
    rules: &RowRules,
) -> Result<Transaction, String> {
    if record.len() != columns.width {
        return Err(format!(
            "row has {} fields, the header has {}",
            record.len(),
            columns.width
        ));
    }
    let field = |i: usize| record.get(i).unwrap_or_default();
    let optional = |i: Option<usize>| i.map(|i| clean_text(field(i))).unwrap_or_default();

    let account_number = clean_text(field(columns.account));
    if account_number.is_empty() {
        return Err("account_number is empty".into());
    }
    let signed = parse_amount_cents(field(columns.amount), rules.decimal)?;
    let kind = match columns.kind {
        Some(i) if !clean_text(field(i)).is_empty() => Some(parse_kind(field(i))?),
        _ => None,
    };
    let (direction, amount_cents) = direction_and_amount(signed, kind)?;
    let at = parse_date(field(columns.date), rules.slash_dates)?;
    let description = optional(columns.description);
    let reference = optional(columns.reference);
    let currency = match columns.currency {
        Some(i) if !clean_text(field(i)).is_empty() => parse_currency(field(i))?,
        _ => rules.default_currency.clone(),
    };
    let branch_id = match columns.branch {
        Some(i) if !clean_text(field(i)).is_empty() => {
            clean_text(field(i)).parse::<u32>().map_err(|_| {
                format!(
                    "branch_id {:?} is not a non-negative integer",
                    clean_text(field(i))
                )
            })?
        }
        _ => branch_of(&account_number, rules.branches),
    };
    let kind = match direction {
        Direction::Deposit => TransactionKind::Deposit,
        Direction::Withdrawal => TransactionKind::Withdrawal,
    };
    let transaction_id = match columns.id.map(|i| clean_text(field(i))) {
        Some(id) if !id.is_empty() => uuid::Uuid::parse_str(&id)
            .map_err(|_| format!("transaction_id {id:?} is not a UUID"))?
            .to_string(),
        // The line number keeps two identical legitimate rows apart; everything else makes the
        // id a function of the row, so re-running the file produces the same ids.
        _ => uuid::Uuid::new_v5(
            &ROW_ID_NAMESPACE,
            format!(
                "{line}|{account_number}|{}|{}|{amount_cents}|{currency}|{description}|{reference}",
                at.to_rfc3339(),
                kind.as_str_name()
            )
            .as_bytes(),
        )
        .to_string(),
    };
    let tx = Transaction {
        transaction_id,
        account_number,
        transaction_reference: reference,
        transaction_datetime: Some(timestamp(at)),
        kind: kind as i32,
        amount_cents,
        currency,
        branch_id,
        description,
    };
    // The contract's own limits (lengths, amount, time range), so that what the cleaning
    // accepts is never dead-lettered downstream.
    bank_contract::validate::canonical_transaction(tx).map_err(|violation| violation.to_string())
}

/// A stable branch for an account with no branch column: FNV-1a of the account number, so the
/// same account lands on the same branch in every run and every file.
pub fn branch_of(account_number: &str, branches: u32) -> u32 {
    let hash = account_number.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % branches.max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        names: ColumnNames,
    }

    fn rules() -> RowRules {
        RowRules::standard()
    }

    fn columns(header: &[&str]) -> Result<Columns, String> {
        let names = Flags::parse_from(["x"]).names;
        Columns::from_header(&StringRecord::from(header.to_vec()), &names)
    }

    #[test]
    fn header_maps_columns_case_insensitively() {
        let c = columns(&["\u{feff}Date", " Account_Number ", "AMOUNT", "description"]).unwrap();
        let row = StringRecord::from(vec!["2024-01-02", "ACC-1", "-5.00", "  tea  "]);
        let tx = clean_row(&row, 2, &c, &rules()).unwrap();
        assert_eq!(tx.account_number, "ACC-1");
        assert_eq!(tx.kind, TransactionKind::Withdrawal as i32);
        assert_eq!(tx.amount_cents, 500);
        assert_eq!(tx.description, "tea");
        assert_eq!(tx.currency, "USD");
        assert_eq!(tx.branch_id, branch_of("ACC-1", 3));
    }

    #[test]
    fn missing_required_column_is_named() {
        let err = columns(&["account_number", "date"]).unwrap_err();
        assert!(
            err.contains("\"amount\"") && err.contains("--*-column"),
            "{err}"
        );
    }

    #[test]
    fn ids_are_stable_and_distinct_per_line() {
        let c = columns(&["account_number", "amount", "date"]).unwrap();
        let row = StringRecord::from(vec!["ACC-1", "5", "2024-01-02"]);
        let a = clean_row(&row, 2, &c, &rules()).unwrap();
        let again = clean_row(&row, 2, &c, &rules()).unwrap();
        let next_line = clean_row(&row, 3, &c, &rules()).unwrap();
        assert_eq!(a.transaction_id, again.transaction_id);
        assert_ne!(a.transaction_id, next_line.transaction_id);
    }

    #[test]
    fn explicit_fields_win_and_are_validated() {
        let c = columns(&[
            "transaction_id",
            "account_number",
            "amount",
            "date",
            "kind",
            "currency",
            "branch_id",
        ])
        .unwrap();
        let id = "0b6f2d0e-8a0c-4a53-9a43-9c1c1f1f0001";
        let row = StringRecord::from(vec![id, "A", "7.5", "2024-01-02", "debit", "eur", "9"]);
        let tx = clean_row(&row, 2, &c, &rules()).unwrap();
        assert_eq!(tx.transaction_id, id);
        assert_eq!(
            (tx.kind, tx.amount_cents),
            (TransactionKind::Withdrawal as i32, 750)
        );
        assert_eq!((tx.currency.as_str(), tx.branch_id), ("EUR", 9));
        let bad = StringRecord::from(vec!["nope", "A", "7.5", "2024-01-02", "", "", ""]);
        assert!(
            clean_row(&bad, 2, &c, &rules())
                .unwrap_err()
                .contains("not a UUID")
        );
        let short = StringRecord::from(vec!["A", "7.5"]);
        assert!(
            clean_row(&short, 2, &c, &rules())
                .unwrap_err()
                .contains("2 fields")
        );
    }

    #[test]
    fn branches_are_stable_and_in_range() {
        for account in ["ACC-1", "ACC-2", "x", ""] {
            let b = branch_of(account, 3);
            assert!((1..=3).contains(&b));
            assert_eq!(b, branch_of(account, 3));
        }
    }
}

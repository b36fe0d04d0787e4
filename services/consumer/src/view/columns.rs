//! The columns a view can show or filter on: the fields of each stream's event, plus the Kafka
//! record's own (`rowtime`, `partition`, `offset`), as ksqlDB exposes ROWTIME, ROWPARTITION
//! and ROWOFFSET. Every column has one type, which decides how it prints and how a `--where`
//! value is read, so `amount>1000.00` compares exact cents and `kind=withdrawal` a kind.

use std::borrow::Cow;

use bank_contract::money;
use bank_contract::pb::{Customer, Transaction, TransactionKind};
use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// Which topic a view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    Transactions,
    Customers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    TransactionId,
    AccountNumber,
    Kind,
    Amount,
    SignedAmount,
    AmountCents,
    Currency,
    TransactionDatetime,
    BranchId,
    TransactionReference,
    Description,
    FirstName,
    LastName,
    Email,
    CreatedAt,
    UpdatedAt,
    Rowtime,
    Partition,
    Offset,
}

/// How a column's values print and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    /// DEPOSIT or WITHDRAWAL; compared without case or the `TRANSACTION_KIND_` prefix.
    Kind,
    /// Exact cents, shown as a decimal with two places.
    Money,
    Integer,
    Time,
}

/// One value of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Text(Cow<'a, str>),
    Money(i128),
    Integer(i64),
    /// `None` when the event has no such timestamp: it prints empty and matches no comparison.
    Time(Option<DateTime<Utc>>),
}

/// An event with where it was read.
#[derive(Debug)]
pub struct Row {
    pub event: Event,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka record's timestamp, in milliseconds.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug)]
pub enum Event {
    Transaction(Transaction),
    Customer(Customer),
}

const TRANSACTION_COLUMNS: &[Column] = &[
    Column::TransactionId,
    Column::AccountNumber,
    Column::Kind,
    Column::Amount,
    Column::Currency,
    Column::TransactionDatetime,
    Column::BranchId,
    Column::TransactionReference,
    Column::Description,
];

const CUSTOMER_COLUMNS: &[Column] = &[
    Column::AccountNumber,
    Column::FirstName,
    Column::LastName,
    Column::Email,
    Column::CreatedAt,
    Column::UpdatedAt,
    Column::BranchId,
];

const RECORD_COLUMNS: &[Column] = &[Column::Rowtime, Column::Partition, Column::Offset];

impl Stream {
    /// What `*` means: the event's fields, in the order of its schema.
    pub fn all_columns(self) -> &'static [Column] {
        match self {
            Stream::Transactions => TRANSACTION_COLUMNS,
            Stream::Customers => CUSTOMER_COLUMNS,
        }
    }

    fn has(self, column: Column) -> bool {
        self.all_columns().contains(&column)
            || RECORD_COLUMNS.contains(&column)
            || (self == Stream::Transactions
                && matches!(column, Column::SignedAmount | Column::AmountCents))
    }

    /// Resolves a `--columns` list: names separated by commas, `*` for all the event's fields.
    pub fn columns(self, list: &str) -> Result<Vec<Column>, String> {
        let mut columns = Vec::new();
        for name in list.split(',').map(str::trim) {
            if name == "*" {
                columns.extend_from_slice(self.all_columns());
            } else {
                columns.push(self.column(name)?);
            }
        }
        Ok(columns)
    }

    /// A column by name, case-insensitive, as SQL identifiers are.
    pub fn column(self, name: &str) -> Result<Column, String> {
        let lower = name.to_ascii_lowercase();
        let known = ALL.iter().find(|c| c.name() == lower).copied();
        match known {
            Some(column) if self.has(column) => Ok(column),
            _ => Err(format!(
                "{name:?} is not a column of {}; they are: {}",
                self.name(),
                self.column_names().join(", ")
            )),
        }
    }

    fn column_names(self) -> Vec<&'static str> {
        ALL.iter()
            .filter(|c| self.has(**c))
            .map(|c| c.name())
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Transactions => "transactions",
            Stream::Customers => "customers",
        }
    }
}

const ALL: &[Column] = &[
    Column::TransactionId,
    Column::AccountNumber,
    Column::Kind,
    Column::Amount,
    Column::SignedAmount,
    Column::AmountCents,
    Column::Currency,
    Column::TransactionDatetime,
    Column::BranchId,
    Column::TransactionReference,
    Column::Description,
    Column::FirstName,
    Column::LastName,
    Column::Email,
    Column::CreatedAt,
    Column::UpdatedAt,
    Column::Rowtime,
    Column::Partition,
    Column::Offset,
];

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::TransactionId => "transaction_id",
            Column::AccountNumber => "account_number",
            Column::Kind => "kind",
            Column::Amount => "amount",
            Column::SignedAmount => "signed_amount",
            Column::AmountCents => "amount_cents",
            Column::Currency => "currency",
            Column::TransactionDatetime => "transaction_datetime",
            Column::BranchId => "branch_id",
            Column::TransactionReference => "transaction_reference",
            Column::Description => "description",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Email => "email",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::Rowtime => "rowtime",
            Column::Partition => "partition",
            Column::Offset => "offset",
        }
    }

    pub fn kind(self) -> Type {
        match self {
            Column::Kind => Type::Kind,
            Column::Amount | Column::SignedAmount => Type::Money,
            Column::AmountCents | Column::BranchId | Column::Partition | Column::Offset => {
                Type::Integer
            }
            Column::TransactionDatetime
            | Column::CreatedAt
            | Column::UpdatedAt
            | Column::Rowtime => Type::Time,
            _ => Type::Text,
        }
    }

    /// The width a table gives this column before any value is seen (values that are longer
    /// are printed whole, never cut).
    pub fn usual_width(self) -> usize {
        match self {
            Column::TransactionId => 36,
            Column::AccountNumber => 14,
            Column::Kind => 10,
            Column::Amount | Column::SignedAmount | Column::AmountCents => 12,
            Column::Currency => 8,
            Column::BranchId | Column::Partition => 9,
            Column::Offset => 10,
            Column::TransactionReference => 20,
            Column::Description => 30,
            Column::FirstName | Column::LastName => 14,
            Column::Email => 28,
            // Times are as wide as their format makes them; see `output`.
            Column::TransactionDatetime
            | Column::CreatedAt
            | Column::UpdatedAt
            | Column::Rowtime => 0,
        }
    }

    /// This column's value in `row`. The stream was checked when the column was resolved, so a
    /// field of the other event type cannot be asked for; it would read as empty.
    pub fn cell(self, row: &Row) -> Cell<'_> {
        match (self, &row.event) {
            (Column::Rowtime, _) => {
                Cell::Time(row.timestamp_ms.and_then(DateTime::from_timestamp_millis))
            }
            (Column::Partition, _) => Cell::Integer(row.partition.into()),
            (Column::Offset, _) => Cell::Integer(row.offset),
            (_, Event::Transaction(tx)) => self.transaction_cell(tx),
            (_, Event::Customer(c)) => self.customer_cell(c),
        }
    }

    fn transaction_cell(self, tx: &Transaction) -> Cell<'_> {
        match self {
            Column::TransactionId => text(&tx.transaction_id),
            Column::AccountNumber => text(&tx.account_number),
            Column::Kind => Cell::Text(kind_name(tx.kind)),
            Column::Amount => Cell::Money(tx.amount_cents.into()),
            // Widened, so that the withdrawal of i64::MIN cents still has a sign to show.
            Column::SignedAmount => Cell::Money(match TransactionKind::try_from(tx.kind) {
                Ok(TransactionKind::Withdrawal) => -i128::from(tx.amount_cents),
                _ => money::signed_amount_cents(tx)
                    .unwrap_or(tx.amount_cents)
                    .into(),
            }),
            Column::AmountCents => Cell::Integer(tx.amount_cents),
            Column::Currency => text(&tx.currency),
            Column::TransactionDatetime => time(tx.transaction_datetime.as_ref()),
            Column::BranchId => Cell::Integer(tx.branch_id.into()),
            Column::TransactionReference => text(&tx.transaction_reference),
            Column::Description => text(&tx.description),
            _ => text(""),
        }
    }

    fn customer_cell(self, c: &Customer) -> Cell<'_> {
        match self {
            Column::AccountNumber => text(&c.account_number),
            Column::FirstName => text(&c.first_name),
            Column::LastName => text(&c.last_name),
            Column::Email => text(&c.email),
            Column::CreatedAt => time(c.created_at.as_ref()),
            Column::UpdatedAt => time(c.updated_at.as_ref()),
            Column::BranchId => Cell::Integer(c.branch_id.into()),
            _ => text(""),
        }
    }
}

fn text(s: &str) -> Cell<'_> {
    Cell::Text(Cow::Borrowed(s))
}

fn time(ts: Option<&Timestamp>) -> Cell<'static> {
    Cell::Time(ts.and_then(|ts| {
        u32::try_from(ts.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
    }))
}

/// DEPOSIT, WITHDRAWAL, or the number of a kind this build does not know.
fn kind_name(kind: i32) -> Cow<'static, str> {
    match TransactionKind::try_from(kind) {
        Ok(TransactionKind::Deposit) => "DEPOSIT".into(),
        Ok(TransactionKind::Withdrawal) => "WITHDRAWAL".into(),
        Ok(TransactionKind::Unspecified) => "UNSPECIFIED".into(),
        Err(_) => format!("KIND_{kind}").into(),
    }
}

/// Reads a kind as a user types it: `withdrawal`, `WITHDRAWAL` or `TRANSACTION_KIND_WITHDRAWAL`.
pub fn normalise_kind(text: &str) -> String {
    let upper = text.trim().to_ascii_uppercase();
    upper
        .strip_prefix("TRANSACTION_KIND_")
        .map(str::to_owned)
        .unwrap_or(upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_resolve_by_name_per_stream() {
        let tx = Stream::Transactions;
        assert_eq!(
            tx.columns("account_number, AMOUNT,rowtime"),
            Ok(vec![Column::AccountNumber, Column::Amount, Column::Rowtime])
        );
        assert_eq!(
            tx.columns("*").map(|c| c.len()),
            Ok(TRANSACTION_COLUMNS.len())
        );
        let error = tx.columns("account_number,email").unwrap_err();
        assert!(
            error.contains("\"email\" is not a column of transactions"),
            "{error}"
        );
        assert!(
            error.contains("signed_amount"),
            "the error lists the columns: {error}"
        );
        assert!(Stream::Customers.column("amount").is_err());
        assert_eq!(Stream::Customers.column("email"), Ok(Column::Email));
    }

    #[test]
    fn a_withdrawal_of_the_largest_amount_keeps_its_sign() {
        let tx = Transaction {
            kind: TransactionKind::Withdrawal as i32,
            amount_cents: i64::MIN,
            transaction_datetime: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        };
        let row = Row {
            event: Event::Transaction(tx),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        };
        assert_eq!(
            Column::SignedAmount.cell(&row),
            Cell::Money(-i128::from(i64::MIN))
        );
        assert_eq!(
            Column::TransactionDatetime.cell(&row),
            Cell::Time(None),
            "bad nanos: no time"
        );
        assert_eq!(Column::Rowtime.cell(&row), Cell::Time(None));
        assert_eq!(normalise_kind(" transaction_kind_Deposit"), "DEPOSIT");
    }
}

//! `--where column OP value`: the WHERE of `select ... emit changes`, one comparison per flag,
//! all of which must hold. The value is read once, at start, in the column's type (exact cents
//! for money, a time in `--tz` for timestamps), so a typo fails before anything is read.

use chrono::{DateTime, Utc};

use super::columns::{Cell, Column, Row, Stream, Type, normalise_kind};
use super::time::Zone;
use bank_contract::money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(i128),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    column: Column,
    op: Op,
    value: Literal,
}

/// Longest first, so that `<=` is not read as `<` followed by `=value`.
const OPERATORS: &[(&str, Op)] = &[
    ("!=", Op::Ne),
    ("<>", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("==", Op::Eq),
    ("=", Op::Eq),
    ("<", Op::Lt),
    (">", Op::Gt),
];

impl Condition {
    pub fn parse(text: &str, stream: Stream, zone: &Zone) -> Result<Self, String> {
        let fail = |why: String| format!("--where {text:?}: {why}");
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let (name, rest) = text.split_at(name_end);
        let rest = rest.trim_start();
        let (op, value) = OPERATORS
            .iter()
            .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|v| (*op, v)))
            .ok_or_else(|| {
                fail(
                    "expected column, operator (= != < <= > >=) and value, as in amount>1000.00"
                        .into(),
                )
            })?;
        let column = stream.column(name.trim()).map_err(fail)?;
        let value = unquote(value.trim());
        let value = match column.kind() {
            Type::Text => Literal::Text(value.to_owned()),
            Type::Kind => Literal::Text(normalise_kind(value)),
            Type::Money => Literal::Number(money::parse_cents(value).map_err(fail)?.into()),
            Type::Integer => Literal::Number(
                value
                    .parse::<i64>()
                    .map_err(|_| fail(format!("{value:?} is not an integer")))?
                    .into(),
            ),
            Type::Time => Literal::Time(zone.read(value).map_err(fail)?),
        };
        Ok(Condition { column, op, value })
    }

    pub fn holds(&self, row: &Row) -> bool {
        let ordering = match (&self.value, self.column.cell(row)) {
            (Literal::Text(want), Cell::Text(have)) if self.column.kind() == Type::Kind => {
                normalise_kind(&have).as_str().cmp(want.as_str())
            }
            (Literal::Text(want), Cell::Text(have)) => have.as_ref().cmp(want.as_str()),
            (Literal::Number(want), Cell::Money(have)) => have.cmp(want),
            (Literal::Number(want), Cell::Integer(have)) => i128::from(have).cmp(want),
            (Literal::Time(want), Cell::Time(Some(have))) => have.cmp(want),
            // A missing time is SQL's NULL: no comparison with it holds.
            _ => return false,
        };
        match self.op {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }
}

/// `'ACC-1'` and `"ACC-1"` mean `ACC-1`, as users used to SQL will type them.
fn unquote(value: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::columns::Event;
    use bank_contract::pb::{Transaction, TransactionKind};

    fn row(kind: TransactionKind, cents: i64, seconds: Option<i64>) -> Row {
        let tx = Transaction {
            account_number: "ACC-000001".into(),
            kind: kind as i32,
            amount_cents: cents,
            transaction_datetime: seconds
                .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        Row {
            event: Event::Transaction(tx),
            partition: 2,
            offset: 7,
            timestamp_ms: Some(0),
        }
    }

    fn holds(condition: &str, row: &Row) -> bool {
        let zone = Zone::parse("UTC").expect("UTC");
        Condition::parse(condition, Stream::Transactions, &zone)
            .expect("a valid condition")
            .holds(row)
    }

    #[test]
    fn comparisons_are_typed() {
        let big = row(TransactionKind::Withdrawal, 100_001, Some(1_700_000_000));
        assert!(holds("amount>1000.00", &big));
        assert!(!holds("amount > 1000.01", &big));
        assert!(holds("amount>=1000.01", &big));
        assert!(holds("signed_amount<0", &big));
        assert!(holds("kind=withdrawal", &big));
        assert!(holds("KIND = 'TRANSACTION_KIND_WITHDRAWAL'", &big));
        assert!(holds("kind!=deposit", &big));
        assert!(holds("account_number=ACC-000001", &big));
        assert!(holds("account_number<>'ACC-000002'", &big));
        assert!(holds("partition=2", &big));
        assert!(holds("offset<=7", &big));
        assert!(holds("transaction_datetime>=2023-11-14T22:13:20Z", &big));
        assert!(!holds("transaction_datetime<2023-11-14", &big));
        assert!(!holds("account_number=acc-000001", &big), "text is exact");
    }

    #[test]
    fn a_missing_time_matches_nothing() {
        let undated = row(TransactionKind::Deposit, 1, None);
        assert!(!holds("transaction_datetime<2100-01-01", &undated));
        assert!(!holds("transaction_datetime!=2100-01-01", &undated));
    }

    #[test]
    fn a_bad_condition_says_what_is_wrong() {
        let zone = Zone::parse("UTC").expect("UTC");
        let error = |text| Condition::parse(text, Stream::Transactions, &zone).unwrap_err();
        assert!(error("amount>1000.005").contains("--where \"amount>1000.005\""));
        assert!(error("amount 1000").contains("expected column, operator"));
        assert!(error("email=x").contains("not a column of transactions"));
        assert!(error("branch_id=one").contains("not an integer"));
        assert!(error("rowtime>soon").contains("is not a time"));
    }
}

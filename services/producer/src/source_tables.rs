//! The relational side of the seed's pipeline: the tables `generate --into-database` fills and
//! `producer table` reads by default. One list of their columns, their DDL on both backends, and
//! the quoting of names that come from the command line.
//!
//! Amounts are exact decimals (`NUMERIC(20,2)` on PostgreSQL, text on SQLite, whose NUMERIC
//! affinity would turn `12.50` into a float). Times are `TIMESTAMPTZ` on PostgreSQL and, on
//! SQLite, UTC text in SQLite's own `YYYY-MM-DD HH:MM:SS.SSS` form, so text order is time order.
//! `updated_at` is set by the database (`clock_timestamp()`, or SQLite's clock) at each write.

use bank_storage::connect::Backend;

/// Default table names: not `customers`/`transactions`, which are the ledger's own, so both may
/// live in one database.
pub const CUSTOMERS_TABLE: &str = "source_customers";
pub const TRANSACTIONS_TABLE: &str = "source_transactions";

/// The columns of the transactions table, after `id`, in insert order.
pub const TRANSACTION_COLUMNS: &[&str] = &[
    "transaction_id",
    "account_number",
    "transaction_reference",
    "transaction_datetime",
    "kind",
    "amount",
    "currency",
    "branch_id",
    "description",
];

/// The columns of the customers table, after `id`, in insert order.
pub const CUSTOMER_COLUMNS: &[&str] = &[
    "account_number",
    "first_name",
    "last_name",
    "email",
    "branch_id",
    "created_at",
];

/// A table or column name from the command line, quoted for SQL. Only plain identifiers (and
/// `schema.table`) are accepted: a name is never a way to inject SQL.
pub fn quoted(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    let plain = |p: &&str| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && p.len() <= 63
    };
    if parts.len() > 2 || !parts.iter().all(plain) {
        return Err(format!(
            "{name:?} is not a plain SQL name (letters, digits and _, optionally schema.table)"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// The database's clock, as each backend writes `updated_at`.
pub fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "clock_timestamp()",
        Backend::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    }
}

/// `CREATE TABLE IF NOT EXISTS` for both tables, with the (updated_at, id) index that
/// `producer table` reads by.
pub fn ddl(backend: Backend, customers: &str, transactions: &str) -> Result<Vec<String>, String> {
    let (id, time, money) = match backend {
        Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ", "NUMERIC(20,2)"),
        Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "TEXT"),
    };
    let index = |table: &str| -> Result<String, String> {
        let bare = table.rsplit('.').next().unwrap_or(table);
        Ok(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (updated_at, id)",
            quoted(&format!("{bare}_updated_at_id"))?,
            quoted(table)?
        ))
    };
    Ok(vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id {id}, account_number TEXT NOT NULL UNIQUE, \
             first_name TEXT NOT NULL, last_name TEXT NOT NULL, email TEXT NOT NULL, \
             branch_id INTEGER NOT NULL, created_at {time} NOT NULL, updated_at {time} NOT NULL)",
            quoted(customers)?
        ),
        index(customers)?,
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id {id}, transaction_id TEXT NOT NULL UNIQUE, \
             account_number TEXT NOT NULL, transaction_reference TEXT NOT NULL, \
             transaction_datetime {time} NOT NULL, kind TEXT NOT NULL, amount {money} NOT NULL, \
             currency TEXT NOT NULL, branch_id INTEGER NOT NULL, description TEXT NOT NULL, \
             updated_at {time} NOT NULL)",
            quoted(transactions)?
        ),
        index(transactions)?,
    ])
}

/// The placeholder of the `n`th bound value (from 1).
pub fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("${n}"),
        Backend::Sqlite => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_or_refused() {
        assert_eq!(
            quoted("source_transactions"),
            Ok("\"source_transactions\"".into())
        );
        assert_eq!(quoted("bank.Tx_1"), Ok("\"bank\".\"Tx_1\"".into()));
        for bad in ["", "a b", "t; drop table x", "t\"", "1t", "a.b.c", "é"] {
            assert!(quoted(bad).is_err(), "{bad:?} refused");
        }
    }
}

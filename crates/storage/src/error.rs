//! What a failed ledger write means for the caller: retry it, or give up on these rows.
//!
//! The writer's policy hangs on one question, asked of every error: can retrying the same
//! statement with the same rows ever succeed? A lost connection, a serialization failure, a
//! deadlock or a full connection table can; a row the database refuses (a data exception,
//! SQLSTATE class 22, or an integrity violation, class 23) cannot, and retrying it forever
//! wedges every partition behind it. Anything not known to be the rows' fault is treated as
//! transient: an operator can fix a dropped table or a permission, nobody can fix a record by
//! waiting. Fencing is its own case: the rows are fine, the writer no longer owns them.

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Why a ledger write failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another writer has moved this partition since this share was read: the share is stale
    /// and must be dropped, and the partition re-read from the database's offset.
    #[error(
        "fenced on {topic}[{partition}]: the share continues from {expected:?} but the ledger \
         stores {found:?} (another instance wrote this partition)"
    )]
    Fenced {
        topic: String,
        partition: i32,
        expected: Option<i64>,
        found: Option<i64>,
    },
    #[error("database: {source}")]
    Database {
        #[from]
        source: DbErr,
    },
    /// A posting would take an account's balance outside a 64-bit integer of cents.
    #[error("the balance of {account} would leave the range of a 64-bit integer of cents")]
    Overflow { account: String },
    /// Rows of the batch the ledger refuses for good (found by bisection, or conflicting
    /// duplicates). Nothing was written: dead-letter them, then apply the rest again.
    #[error("{} row(s) refused for good", .0.len())]
    Refused(Vec<Refusal>),
    /// Another writer changed what this write was computed from (a role's counted ids): compute
    /// it again and retry.
    #[error("contended: {0}")]
    Contended(String),
}

/// One event of a batch the ledger will never apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub item: Item,
    /// The dead-letter reason: `database-rejected`, `balance-overflow` or
    /// `conflicting-duplicate`.
    pub kind: &'static str,
    /// SQLSTATE, or SQLite's extended result code, when the database refused it.
    pub code: Option<String>,
    pub message: String,
}

/// An event of a [`crate::ledger::Batch`], by its index in `customers` or `transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    Customer(usize),
    Transaction(usize),
}

/// How a database error should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Retry with backoff: the same rows may well succeed later.
    Retry,
    /// The database refuses these rows for good (`code`: SQLSTATE, or SQLite's extended code).
    Rejected { code: String, message: String },
}

impl ApplyError {
    /// Whether retrying the same share may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Fenced { .. } | ApplyError::Overflow { .. } | ApplyError::Refused(_) => {
                false
            }
            ApplyError::Database { source } => classify(source) == Disposition::Retry,
            ApplyError::Contended(_) => true,
        }
    }

    /// Whether some rows are at fault (the database refuses them, or a balance would
    /// overflow): bisection can find them.
    pub fn is_row_fault(&self) -> bool {
        match self {
            ApplyError::Overflow { .. } => true,
            ApplyError::Database { source } => {
                matches!(classify(source), Disposition::Rejected { .. })
            }
            _ => false,
        }
    }

    pub fn is_fenced(&self) -> bool {
        matches!(self, ApplyError::Fenced { .. })
    }

    pub fn disposition(&self) -> Option<Disposition> {
        match self {
            ApplyError::Fenced { .. } | ApplyError::Refused(_) => None,
            ApplyError::Overflow { account } => Some(Disposition::Rejected {
                code: "22003".into(),
                message: format!("the balance of {account} would overflow"),
            }),
            ApplyError::Database { source } => Some(classify(source)),
            ApplyError::Contended(_) => Some(Disposition::Retry),
        }
    }

    /// What a single event that failed with this error is refused as.
    pub fn refusal(&self, item: Item) -> Refusal {
        let (code, message) = match self.disposition() {
            Some(Disposition::Rejected { code, message }) => (Some(code), message),
            _ => (None, self.to_string()),
        };
        // PostgreSQL: "bigint out of range" on the balance; SQLite: the guard that turns an
        // overflowing sum into NULL (see `move_balances`).
        let overflow = matches!(self, ApplyError::Overflow { .. })
            || code.as_deref() == Some("22003")
            || message.contains("accounts.balance_cents");
        Refusal {
            item,
            kind: if overflow {
                "balance-overflow"
            } else {
                "database-rejected"
            },
            code,
            message,
        }
    }
}

/// Classifies a database error (see the module documentation).
pub fn classify(error: &DbErr) -> Disposition {
    let runtime = match error {
        DbErr::Exec(runtime) | DbErr::Query(runtime) | DbErr::Conn(runtime) => runtime,
        _ => return Disposition::Retry,
    };
    let RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return Disposition::Retry;
    };
    let sqlx::Error::Database(database) = sqlx_error.as_ref() else {
        // I/O, TLS, protocol, pool timeouts: the connection, not the rows.
        return Disposition::Retry;
    };
    let Some(code) = database.code() else {
        return Disposition::Retry;
    };
    let rejected = match database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        Some(_) => sqlite_rejects(&code),
        None => postgres_rejects(&code),
    };
    if rejected {
        Disposition::Rejected {
            code: code.into_owned(),
            message: database.message().to_owned(),
        }
    } else {
        Disposition::Retry
    }
}

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
fn postgres_rejects(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || sqlstate.starts_with("23")
}

/// SQLite's primary result codes: SQLITE_TOOBIG (18), SQLITE_CONSTRAINT (19), SQLITE_MISMATCH
/// (20), SQLITE_RANGE (25). sqlx reports the extended code, whose low byte is the primary one.
fn sqlite_rejects(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|extended| matches!(extended & 0xff, 18 | 19 | 20 | 25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_classes() {
        assert!(postgres_rejects("22021"), "invalid byte sequence (NUL)");
        assert!(postgres_rejects("22003"), "numeric value out of range");
        assert!(postgres_rejects("23503"), "foreign key violation");
        assert!(!postgres_rejects("40001"), "serialization failure");
        assert!(!postgres_rejects("40P01"), "deadlock");
        assert!(!postgres_rejects("53300"), "too many connections");
        assert!(!postgres_rejects("57P01"), "admin shutdown");
        assert!(!postgres_rejects("08006"), "connection failure");
        assert!(
            !postgres_rejects("42P01"),
            "undefined table: an operator's problem"
        );
    }

    #[test]
    fn sqlite_codes() {
        assert!(sqlite_rejects("2067"), "SQLITE_CONSTRAINT_UNIQUE");
        assert!(sqlite_rejects("787"), "SQLITE_CONSTRAINT_FOREIGNKEY");
        assert!(sqlite_rejects("18"), "SQLITE_TOOBIG");
        assert!(!sqlite_rejects("5"), "SQLITE_BUSY");
        assert!(!sqlite_rejects("517"), "SQLITE_BUSY_SNAPSHOT");
        assert!(!sqlite_rejects("6"), "SQLITE_LOCKED");
        assert!(!sqlite_rejects("13"), "SQLITE_FULL");
    }

    #[test]
    fn connection_errors_are_transient() {
        let error = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(
            sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(classify(&error), Disposition::Retry);
        let apply = ApplyError::from(error);
        assert!(apply.is_transient());
        let fenced = ApplyError::Fenced {
            topic: "t".into(),
            partition: 0,
            expected: Some(1),
            found: Some(5),
        };
        assert!(!fenced.is_transient() && fenced.is_fenced());
    }
}

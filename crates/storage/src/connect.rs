//! Opening the database named by a URL (`sqlite://…` or `postgres://…`).

use std::time::Duration;

use anyhow::Context;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Backend> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            _ => anyhow::bail!(
                "unsupported database URL {:?}: expected sqlite://FILE or postgres://USER:PASSWORD@HOST/DB",
                redact(url)
            ),
        }
    }
}

/// Opens a pool for `url`.
///
/// SQLite gets one connection (SQLite has one writer anyway; one connection means no
/// `database is locked` between our own tasks), WAL so readers such as `sqlite3` or a dashboard do
/// not block the writer, a busy timeout for those outside readers, and the file is created when
/// missing. `synchronous=NORMAL` is safe here: a crash can only lose whole transactions, and every
/// transaction carries its own Kafka offsets, so a lost one is simply consumed again.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let backend = Backend::of_url(url)?;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        // Short, so that an unreachable database fails an attempt quickly and the caller's own
        // retry loop (with its readiness reporting) takes over.
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5));
    match backend {
        Backend::Sqlite => {
            options
                .max_connections(1)
                .min_connections(1)
                .map_sqlx_sqlite_opts(|o| {
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(30))
                        .foreign_keys(true)
                });
        }
        Backend::Postgres => {
            options
                .max_connections(max_connections.max(1))
                .map_sqlx_postgres_opts(|o| {
                    // A writer frozen inside a transaction (SIGSTOP, a paused VM, a partition)
                    // holds its partitions' offset rows locked; the new owner must not wait on
                    // it for ever. The server ends such a session after 15 s, which releases
                    // the locks (and the fencing makes the zombie's work void), and a statement
                    // waits at most 10 s for a lock before failing (retried with backoff).
                    o.options([
                        ("idle_in_transaction_session_timeout", "15s"),
                        ("lock_timeout", "10s"),
                    ])
                });
        }
    }
    Database::connect(options)
        .await
        .with_context(|| format!("cannot open database {}", redact(url)))
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    bank_contract::redact::url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_backend_or_refuses() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported") && !err.contains("pw"), "{err}");
    }
}

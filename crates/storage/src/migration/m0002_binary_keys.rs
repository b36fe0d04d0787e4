//! PostgreSQL: compare the ledger's keys byte by byte.
//!
//! Account numbers and transaction ids are identifiers, not words: nobody sorts them by a
//! language's rules, yet with the database's default collation (en_US.UTF-8, C.UTF-8, ...)
//! every index lookup and insert on them calls the locale's string comparison. Declaring the
//! key columns `COLLATE "C"` makes those comparisons plain `memcmp`; profiling the ledger showed
//! locale comparisons in about a sixth of PostgreSQL's time. Equality, and therefore every
//! primary key, foreign key and duplicate check, is unchanged. SQLite already compares bytes.

use sea_orm_migration::prelude::{DbErr, DeriveMigrationName, async_trait};
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{MigrationTrait, SchemaManager};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, column)` of every key column; the referenced column (customers) goes first so the
/// foreign keys see one collation throughout.
const KEY_COLUMNS: [(&str, &str); 6] = [
    ("customers", "account_number"),
    ("accounts", "account_number"),
    ("transactions", "account_number"),
    ("transactions", "transaction_id"),
    ("parked_transactions", "account_number"),
    ("parked_transactions", "transaction_id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, column) in KEY_COLUMNS {
            db.execute_unprepared(&format!(
                r#"ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar COLLATE "C""#
            ))
            .await?;
        }
        Ok(())
    }
}

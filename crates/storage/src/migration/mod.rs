//! The database schema, one migration per change, applied in order by [`Migrator`].
//! Never edit a migration that has shipped: add a new one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m0001_ledger;
mod m0002_binary_keys;
mod m0003_customer_versions;
mod m0004_role_checkpoints;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_ledger::Migration),
            Box::new(m0002_binary_keys::Migration),
            Box::new(m0003_customer_versions::Migration),
            Box::new(m0004_role_checkpoints::Migration),
        ]
    }
}

/// Applies every pending migration. Idempotent, and safe when several instances start at once:
/// on PostgreSQL the migrations run in one transaction holding an advisory lock, so instances
/// take turns and the later ones find nothing left to do.
pub async fn run(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    /// An arbitrary key naming "bankstream migrations" among advisory locks.
    const MIGRATION_LOCK: i64 = 0x0062_616e_6b6d_6967;
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

//! The database schema, one migration per change, applied in order by [`Migrator`].
//! Never edit a migration that has shipped: add a new one.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m0001_ledger;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m0001_ledger::Migration)]
    }
}

/// Applies every pending migration. Idempotent; safe to run from several instances at start.
pub async fn run(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    Migrator::up(db, None).await
}

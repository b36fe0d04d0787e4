//! Checkpoints of the analytics roles (summary, limits watcher).
//!
//! Those roles used to keep every transaction id they had counted in memory and replay the whole
//! transactions topic at every start, so their memory and start time grew with the history of
//! the bank. They now store, in the same transaction as the offsets they have absorbed (the
//! ledger's `consumer_offsets`, under their own consumer group):
//!
//! - `role_state`: the role's state per partition, as `(key, value)` text pairs (the summary's
//!   accumulators, the watcher's balance per account), so a restart resumes from the checkpoint;
//! - `role_counted`: the ids of the transactions each group has counted, so a transaction
//!   delivered twice (by the producer, on any partition) is counted once, as in the ledger,
//!   without any of them held in memory. Ids are canonical UUIDs, kept as their 16 bytes.

use sea_orm_migration::prelude::{
    DbErr, DeriveIden, DeriveMigrationName, Index, Table, async_trait,
};
use sea_orm_migration::sea_query::ColumnDef;
use sea_orm_migration::{MigrationTrait, SchemaManager};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoleState::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoleState::GroupId).string().not_null())
                    .col(ColumnDef::new(RoleState::Topic).string().not_null())
                    .col(ColumnDef::new(RoleState::Partition).integer().not_null())
                    .col(ColumnDef::new(RoleState::Key).string().not_null())
                    .col(ColumnDef::new(RoleState::Value).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(RoleState::GroupId)
                            .col(RoleState::Topic)
                            .col(RoleState::Partition)
                            .col(RoleState::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoleCounted::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoleCounted::GroupId).string().not_null())
                    .col(
                        ColumnDef::new(RoleCounted::TransactionId)
                            .binary()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RoleCounted::GroupId)
                            .col(RoleCounted::TransactionId),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum RoleState {
    Table,
    GroupId,
    Topic,
    Partition,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum RoleCounted {
    Table,
    GroupId,
    TransactionId,
}

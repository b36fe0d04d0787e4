//! Customers: newer wins, whatever the order of delivery.
//!
//! A customer row used to be overwritten by whichever event was applied last, so a replay, a
//! former owner of the partition (paused by GC, SIGSTOP, a network partition) or two writers
//! racing could put an older version back for good. Each row now keeps the version of the event
//! that wrote it, and an upsert only replaces it with a strictly newer one. The version is the
//! triple `(version_micros, source_partition, source_offset)`, compared as a row value:
//!
//! - `version_micros`: the event's `updated_at` in microseconds since the epoch, or `i64::MIN`
//!   when the producer did not set it (events of older producers, and rows written before this
//!   migration, are older than any versioned event);
//! - `(source_partition, source_offset)`: where the event was read; an account's events share a
//!   partition (key = account, partition = branch), so between two unversioned events of one
//!   account the later one in the log wins.
//!
//! Taking the maximum of a total order does not depend on the order of arrival, which is the
//! whole point.

use sea_orm_migration::prelude::{DbErr, DeriveIden, DeriveMigrationName, Table, async_trait};
use sea_orm_migration::sea_query::ColumnDef;
use sea_orm_migration::{MigrationTrait, SchemaManager};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        let columns = [
            ColumnDef::new(Customers::VersionMicros)
                .big_integer()
                .not_null()
                .default(i64::MIN)
                .to_owned(),
            ColumnDef::new(Customers::SourcePartition)
                .integer()
                .not_null()
                .default(-1)
                .to_owned(),
            ColumnDef::new(Customers::SourceOffset)
                .big_integer()
                .not_null()
                .default(-1)
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Customers::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    VersionMicros,
    SourcePartition,
    SourceOffset,
}

//! The ledger: customers, their transactions, account balances, parked transactions and the
//! Kafka positions the database has absorbed.
//!
//! Money columns are BIGINT cents. Kafka positions live in the same database as the rows they
//! produced, written in the same transaction: that is what makes ingestion exactly-once.

use sea_orm_migration::prelude::{
    DbErr, DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table, async_trait,
};
use sea_orm_migration::sea_query::{ColumnDef, TableCreateStatement};
use sea_orm_migration::{MigrationTrait, SchemaManager};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per account opened (Customer event).
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Customers::AccountNumber)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Customers::FirstName).string().not_null())
                    .col(ColumnDef::new(Customers::LastName).string().not_null())
                    .col(ColumnDef::new(Customers::Email).string().not_null())
                    .col(
                        ColumnDef::new(Customers::CreatedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Customers::BranchId).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        // One row per movement of money, keyed by its id so a redelivery cannot insert twice.
        // The foreign key holds at all times: transactions of unknown customers are parked.
        manager
            .create_table(
                Table::create()
                    .table(Transactions::Table)
                    .if_not_exists()
                    .with_transaction_columns()
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transactions_customer")
                            .from(Transactions::Table, Transactions::AccountNumber)
                            .to(Customers::Table, Customers::AccountNumber)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_transactions_account")
                    .table(Transactions::Table)
                    .col(Transactions::AccountNumber)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        // The durable balance of each account: the sum of signed amounts of its transactions.
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Accounts::AccountNumber)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Accounts::BalanceCents)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Accounts::TransactionCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_accounts_customer")
                            .from(Accounts::Table, Accounts::AccountNumber)
                            .to(Customers::Table, Customers::AccountNumber)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        // Transactions that arrived before their customer, waiting in arrival order. Same columns
        // as `transactions`, so posting them is one INSERT ... SELECT.
        manager
            .create_table(
                Table::create()
                    .table(ParkedTransactions::Table)
                    .if_not_exists()
                    .with_transaction_columns()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_parked_account")
                    .table(ParkedTransactions::Table)
                    .col(Transactions::AccountNumber)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        // The next offset to read, per consumer group and partition, written in the same
        // transaction as the rows those offsets produced.
        manager
            .create_table(
                Table::create()
                    .table(ConsumerOffsets::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ConsumerOffsets::GroupId).string().not_null())
                    .col(ColumnDef::new(ConsumerOffsets::Topic).string().not_null())
                    .col(
                        ColumnDef::new(ConsumerOffsets::Partition)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsumerOffsets::NextOffset)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ConsumerOffsets::GroupId)
                            .col(ConsumerOffsets::Topic)
                            .col(ConsumerOffsets::Partition),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

/// The columns of a transaction, shared by `transactions` and `parked_transactions` so that
/// posting a parked row stays a plain INSERT ... SELECT.
trait TransactionColumns {
    fn with_transaction_columns(&mut self) -> &mut Self;
}

impl TransactionColumns for TableCreateStatement {
    fn with_transaction_columns(&mut self) -> &mut Self {
        self
            // UUID text; the primary key, so a redelivery cannot insert twice.
            .col(
                ColumnDef::new(Transactions::TransactionId)
                    .string()
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(Transactions::AccountNumber)
                    .string()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::TransactionReference)
                    .string()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::TransactionDatetime)
                    .timestamp_with_time_zone()
                    .null(),
            )
            // 'DEPOSIT' or 'WITHDRAWAL'.
            .col(ColumnDef::new(Transactions::Kind).string_len(16).not_null())
            // Always > 0; the kind carries the sign.
            .col(
                ColumnDef::new(Transactions::AmountCents)
                    .big_integer()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::Currency)
                    .string_len(3)
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::BranchId)
                    .big_integer()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::Description)
                    .string()
                    .not_null(),
            )
            // Where the event was read from, for audits and replays.
            .col(
                ColumnDef::new(Transactions::SourcePartition)
                    .integer()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Transactions::SourceOffset)
                    .big_integer()
                    .not_null(),
            )
    }
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    AccountNumber,
    FirstName,
    LastName,
    Email,
    CreatedAt,
    BranchId,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    TransactionId,
    AccountNumber,
    TransactionReference,
    TransactionDatetime,
    Kind,
    AmountCents,
    Currency,
    BranchId,
    Description,
    SourcePartition,
    SourceOffset,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    AccountNumber,
    BalanceCents,
    TransactionCount,
}

#[derive(DeriveIden)]
enum ParkedTransactions {
    Table,
}

#[derive(DeriveIden)]
enum ConsumerOffsets {
    Table,
    GroupId,
    Topic,
    Partition,
    NextOffset,
}

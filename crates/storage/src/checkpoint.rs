//! Checkpoints of the analytics roles: their state per partition, the transaction ids they have
//! counted, and the offsets both correspond to, written in one database transaction.
//!
//! The same exactly-once argument as the ledger's: a checkpoint moves each partition's stored
//! offset from where its batch was read to where it ends (compare-and-set, so a former owner of
//! the partition cannot write), together with the state that batch produced. A crash before the
//! commit loses the batch and its offsets; after a restart the role loads the state and resumes
//! from the offsets, so memory and start time no longer grow with the history of the topic.
//! Counted ids live only in the database (the role asks which of a batch's ids it has seen).

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    IsolationLevel, Statement, TransactionTrait, Value,
};

use crate::error::ApplyError;
use crate::ledger::{OffsetSpan, advance_offsets};

/// Rows per multi-row statement: well under both backends' bind-parameter limits.
const CHUNK: usize = 5_000;

/// One `(key, value)` pair of a partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub topic: String,
    pub partition: i32,
    pub key: String,
    pub value: String,
}

/// What one batch of a role stores.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// `(topic, partition) ->` the stored offset the batch continues from and the next one.
    pub offsets: BTreeMap<(String, i32), OffsetSpan>,
    /// Transactions this batch counted for the first time.
    pub counted: Vec<uuid::Uuid>,
    /// State entries the batch changed (others keep their stored value).
    pub entries: Vec<StateEntry>,
}

/// A partition's stored checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The next offset to consume (None: never checkpointed, read from the beginning).
    pub next: Option<i64>,
    pub entries: Vec<(String, String)>,
}

/// The checkpoints of one consumer group.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    group: String,
}

impl Checkpoints {
    pub fn new(group: impl Into<String>) -> Self {
        Checkpoints {
            group: group.into(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The stored state of a partition, and the offset it corresponds to.
    pub async fn load(
        &self,
        db: &DatabaseConnection,
        topic: &str,
        partition: i32,
    ) -> Result<Stored, DbErr> {
        let key = (topic.to_owned(), partition);
        Ok(self
            .read(db, Some(&key))
            .await?
            .remove(&key)
            .unwrap_or_default())
    }

    /// Every partition this group has checkpointed.
    pub async fn load_all(
        &self,
        db: &DatabaseConnection,
    ) -> Result<HashMap<(String, i32), Stored>, DbErr> {
        self.read(db, None).await
    }

    async fn read(
        &self,
        db: &DatabaseConnection,
        only: Option<&(String, i32)>,
    ) -> Result<HashMap<(String, i32), Stored>, DbErr> {
        // One snapshot (REPEATABLE READ: under PostgreSQL's default READ COMMITTED each statement
        // sees its own), so the entries belong to the offsets read with them.
        let txn = db
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?;
        let mut stored: HashMap<(String, i32), Stored> = HashMap::new();
        let offsets = Query::select()
            .columns(["topic", "partition", "next_offset"])
            .from("consumer_offsets")
            .and_where(Expr::col("group_id").eq(self.group.as_str()))
            .to_owned();
        let mut state = Query::select()
            .columns(["topic", "partition", "key", "value"])
            .from("role_state")
            .and_where(Expr::col("group_id").eq(self.group.as_str()))
            .to_owned();
        if let Some((topic, partition)) = only {
            state
                .and_where(Expr::col("topic").eq(topic.as_str()))
                .and_where(Expr::col("partition").eq(*partition));
        }
        for row in txn.query_all(&offsets).await? {
            let key: (String, i32) = (row.try_get("", "topic")?, row.try_get("", "partition")?);
            if only.is_none_or(|only| *only == key) {
                stored.entry(key).or_default().next = Some(row.try_get("", "next_offset")?);
            }
        }
        for row in txn.query_all(&state).await? {
            let key = (row.try_get("", "topic")?, row.try_get("", "partition")?);
            stored
                .entry(key)
                .or_default()
                .entries
                .push((row.try_get("", "key")?, row.try_get("", "value")?));
        }
        txn.commit().await?;
        Ok(stored)
    }

    /// Which of `ids` this group has already counted.
    pub async fn counted(
        &self,
        db: &impl ConnectionTrait,
        ids: &[uuid::Uuid],
    ) -> Result<HashSet<uuid::Uuid>, DbErr> {
        let mut found = HashSet::new();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        for chunk in ids.chunks(CHUNK) {
            let rows = if postgres {
                // One array parameter, so one prepared statement whatever the batch size: a
                // list of N parameters would be a new statement for every N, each kept in the
                // connection's statement cache.
                db.query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT transaction_id FROM role_counted \
                     WHERE group_id = $1 AND transaction_id = ANY($2::bytea[])",
                    [self.group.as_str().into(), bytes_array(chunk)],
                ))
                .await?
            } else {
                let select = Query::select()
                    .column("transaction_id")
                    .from("role_counted")
                    .and_where(Expr::col("group_id").eq(self.group.as_str()))
                    .and_where(
                        Expr::col("transaction_id")
                            .is_in(chunk.iter().map(|id| id.as_bytes().to_vec())),
                    )
                    .to_owned();
                db.query_all(&select).await?
            };
            for row in rows {
                let bytes: Vec<u8> = row.try_get("", "transaction_id")?;
                if let Ok(id) = uuid::Uuid::from_slice(&bytes) {
                    found.insert(id);
                }
            }
        }
        Ok(found)
    }

    /// Stores `checkpoint` atomically. [`ApplyError::Fenced`]: another instance moved a
    /// partition; [`ApplyError::Contended`]: another instance counted one of these ids since
    /// [`Checkpoints::counted`] was asked (recompute the batch and try again).
    pub async fn commit(
        &self,
        db: &DatabaseConnection,
        checkpoint: &Checkpoint,
    ) -> Result<(), ApplyError> {
        let txn = db.begin().await?;
        advance_offsets(&txn, &self.group, &checkpoint.offsets).await?;
        let mut inserted = 0;
        for chunk in checkpoint.counted.chunks(CHUNK) {
            inserted += self.insert_counted(&txn, chunk).await?;
        }
        if inserted != checkpoint.counted.len() as u64 {
            return Err(ApplyError::Contended(format!(
                "{} of {} transaction ids were counted by another instance meanwhile",
                checkpoint.counted.len() as u64 - inserted,
                checkpoint.counted.len()
            )));
        }
        for chunk in checkpoint.entries.chunks(CHUNK) {
            self.upsert_entries(&txn, chunk).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

impl Checkpoints {
    /// Inserts counted ids; returns how many were new.
    async fn insert_counted(
        &self,
        txn: &DatabaseTransaction,
        ids: &[uuid::Uuid],
    ) -> Result<u64, DbErr> {
        if txn.get_database_backend() == DbBackend::Postgres {
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO role_counted (group_id, transaction_id) \
                 SELECT $1, id FROM UNNEST($2::bytea[]) AS ids(id) \
                 ON CONFLICT (group_id, transaction_id) DO NOTHING",
                [self.group.as_str().into(), bytes_array(ids)],
            );
            return Ok(txn.execute_raw(statement).await?.rows_affected());
        }
        let mut insert = Query::insert()
            .into_table("role_counted")
            .columns(["group_id", "transaction_id"])
            .on_conflict(
                OnConflict::columns(["group_id", "transaction_id"])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        for id in ids {
            insert.values_panic([self.group.as_str().into(), id.as_bytes().to_vec().into()]);
        }
        Ok(txn.execute(&insert).await?.rows_affected())
    }

    /// Writes state entries, replacing stored values.
    async fn upsert_entries(
        &self,
        txn: &DatabaseTransaction,
        entries: &[StateEntry],
    ) -> Result<(), DbErr> {
        if txn.get_database_backend() == DbBackend::Postgres {
            let array = |ty: ArrayType, items: Vec<Value>| Value::Array(ty, Some(Box::new(items)));
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"INSERT INTO role_state (group_id, topic, "partition", "key", "value")
                   SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::text[], $5::text[])
                   ON CONFLICT (group_id, topic, "partition", "key")
                   DO UPDATE SET "value" = excluded."value""#,
                [
                    self.group.as_str().into(),
                    array(
                        ArrayType::String,
                        entries.iter().map(|e| e.topic.as_str().into()).collect(),
                    ),
                    array(
                        ArrayType::Int,
                        entries.iter().map(|e| e.partition.into()).collect(),
                    ),
                    array(
                        ArrayType::String,
                        entries.iter().map(|e| e.key.as_str().into()).collect(),
                    ),
                    array(
                        ArrayType::String,
                        entries.iter().map(|e| e.value.as_str().into()).collect(),
                    ),
                ],
            );
            txn.execute_raw(statement).await?;
            return Ok(());
        }
        let mut upsert = Query::insert()
            .into_table("role_state")
            .columns(["group_id", "topic", "partition", "key", "value"])
            .on_conflict(
                OnConflict::columns(["group_id", "topic", "partition", "key"])
                    .update_column("value")
                    .to_owned(),
            )
            .to_owned();
        for entry in entries {
            upsert.values_panic([
                self.group.as_str().into(),
                entry.topic.as_str().into(),
                entry.partition.into(),
                entry.key.as_str().into(),
                entry.value.as_str().into(),
            ]);
        }
        txn.execute(&upsert).await?;
        Ok(())
    }
}

fn bytes_array(ids: &[uuid::Uuid]) -> Value {
    Value::Array(
        ArrayType::Bytes,
        Some(Box::new(
            ids.iter()
                .map(|id| Value::Bytes(Some(id.as_bytes().to_vec())))
                .collect(),
        )),
    )
}

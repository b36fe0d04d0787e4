//! The analytics roles' state, held per partition and checkpointed with its offsets.
//!
//! The summary and the limits watcher used to replay the whole transactions topic at every start
//! and remember every transaction id they had counted, so memory and start time grew with the
//! bank's history. Now each partition's state lives in memory beside the offset it corresponds
//! to, and every batch is checkpointed in one database transaction (see
//! [`bank_storage::checkpoint`]): state entries, the ids it counted, the offsets. After a
//! restart, a rebalance or a fenced write, a partition whose held offset is not the one its next
//! batch continues from is loaded again from the database, so what a role computes from is
//! always what the database holds. Everything stored is loaded at start, so the figures are
//! whole before the first batch. Counted ids are looked up in the database per batch, never
//! kept: memory grows with accounts (the watcher's balances), not with transactions.
//!
//! A role computes a batch on scratch copies and touches its held state only once
//! [`Book::commit`] succeeded, so a failed write leaves nothing half-applied.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use bank_storage::checkpoint::{Checkpoint, Checkpoints, StateEntry};
use sea_orm::DatabaseConnection;

use crate::pipeline::{Decoded, WriteError};
use crate::source::PartitionKey;
use crate::stored_offsets::DatabaseOffsets;

/// A role's state of one partition.
pub trait PartitionState: Default + Send + Sync + 'static {
    /// Rebuilds the state from its stored entries.
    fn restore(entries: Vec<(String, String)>) -> anyhow::Result<Self>;
}

/// What [`Book::prepare`] found out about a batch.
#[derive(Debug)]
pub struct Prepared {
    /// Per transaction of the batch, in order: counted for the first time (not by an earlier
    /// batch, not earlier in this one).
    pub fresh: Vec<bool>,
    /// The ids of the fresh transactions, to pass to [`Book::commit`].
    pub counted: Vec<uuid::Uuid>,
    /// Whether some partition was (re)loaded from the database.
    pub loaded: bool,
}

struct Held<S> {
    /// The stored offset this state corresponds to (None: nothing stored yet).
    next: Option<i64>,
    state: S,
}

pub struct Book<S> {
    db: DatabaseConnection,
    checkpoints: Checkpoints,
    partitions: HashMap<PartitionKey, Held<S>>,
}

impl<S: PartitionState> Book<S> {
    /// Connects to `url` and brings its schema up to date.
    pub async fn open(url: &str, group: &str) -> anyhow::Result<Self> {
        let shown = bank_storage::connect::redact(url);
        let db = bank_storage::connect(url, 2).await?;
        bank_storage::migration::run(&db)
            .await
            .with_context(|| format!("migrating {shown}"))?;
        let checkpoints = Checkpoints::new(group);
        // Everything stored, now: the role's figures are whole before its first batch, and a
        // partition resumed at its stored offset needs no load later.
        let partitions: HashMap<PartitionKey, Held<S>> = restore_all(&db, &checkpoints)
            .await
            .with_context(|| format!("loading the checkpoints of {group}"))?
            .into_iter()
            .map(|(key, next, state)| (key, Held { next, state }))
            .collect();
        tracing::info!(
            database = %shown,
            group,
            partitions = partitions.len(),
            "checkpoints loaded"
        );
        Ok(Book {
            db,
            checkpoints,
            partitions,
        })
    }

    /// The checkpoint database (for a role's own bookkeeping beside its checkpoints).
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Where the source reads each partition's stored offset at assignment.
    pub fn offsets(&self) -> DatabaseOffsets {
        DatabaseOffsets::new(self.db.clone(), self.checkpoints.group())
    }

    /// Loads every partition of `batch` whose held state is not at the offset the batch
    /// continues from, and finds which of its transactions are counted for the first time.
    pub async fn prepare(&mut self, batch: &Decoded) -> Result<Prepared, WriteError> {
        let mut loaded = false;
        for (key, span) in &batch.events.offsets {
            if self
                .partitions
                .get(key)
                .is_some_and(|held| held.next == span.expected)
            {
                continue;
            }
            let stored = tokio::time::timeout(
                Duration::from_secs(30),
                self.checkpoints.load(&self.db, &key.0, key.1),
            )
            .await
            .context("timed out loading a checkpoint")?
            .with_context(|| format!("loading the checkpoint of {}[{}]", key.0, key.1))?;
            if stored.next != span.expected {
                return Err(WriteError::Fenced(format!(
                    "{}[{}] was read from {:?} but the checkpoint is at {:?}",
                    key.0, key.1, span.expected, stored.next
                )));
            }
            let state = S::restore(stored.entries)
                .with_context(|| format!("reading the stored state of {}[{}]", key.0, key.1))?;
            self.partitions.insert(
                key.clone(),
                Held {
                    next: stored.next,
                    state,
                },
            );
            loaded = true;
        }
        let ids: Vec<Option<uuid::Uuid>> = batch
            .events
            .transactions
            .iter()
            .map(|tx| uuid::Uuid::parse_str(&tx.transaction_id).ok())
            .collect();
        let all: Vec<uuid::Uuid> = ids.iter().flatten().copied().collect();
        let known = self
            .checkpoints
            .counted(&self.db, &all)
            .await
            .context("reading counted transaction ids")?;
        let mut counted = Vec::new();
        let mut this_batch = HashSet::new();
        let fresh = ids
            .iter()
            .map(|id| match id {
                // Validation lets only canonical UUIDs through; anything else counts nowhere.
                None => false,
                Some(id) => {
                    let first = !known.contains(id) && this_batch.insert(*id);
                    if first {
                        counted.push(*id);
                    }
                    first
                }
            })
            .collect();
        Ok(Prepared {
            fresh,
            counted,
            loaded,
        })
    }

    /// Every partition's state as stored now, this instance's and other instances' alike: what
    /// a role's global figures are made of when several instances share the partitions.
    pub async fn stored_states(&self) -> anyhow::Result<Vec<(PartitionKey, S)>> {
        stored_states(&self.db, &self.checkpoints).await
    }

    /// The held state of a partition of the batch last prepared.
    pub fn state(&self, key: &PartitionKey) -> Option<&S> {
        self.partitions.get(key).map(|held| &held.state)
    }

    /// Every partition's held state (those this instance has read, including any it no longer
    /// owns since a rebalance: a role's figures are those of the partitions it has seen).
    pub fn states(&self) -> impl Iterator<Item = (&PartitionKey, &S)> {
        self.partitions.iter().map(|(key, held)| (key, &held.state))
    }

    /// Checkpoints `batch`: its offsets, the ids [`Book::prepare`] found fresh and the changed
    /// entries. On success the held offsets move on; the caller then updates the held states
    /// ([`Book::state_mut`]) to what it stored.
    pub async fn commit(
        &mut self,
        batch: &Decoded,
        counted: Vec<uuid::Uuid>,
        entries: Vec<StateEntry>,
    ) -> Result<(), WriteError> {
        let checkpoint = Checkpoint {
            offsets: batch.events.offsets.clone(),
            counted,
            entries,
        };
        self.checkpoints.commit(&self.db, &checkpoint).await?;
        for (key, span) in &batch.events.offsets {
            if let Some(held) = self.partitions.get_mut(key) {
                held.next = Some(span.next);
            }
        }
        Ok(())
    }

    pub fn state_mut(&mut self, key: &PartitionKey) -> Option<&mut S> {
        self.partitions.get_mut(key).map(|held| &mut held.state)
    }
}

async fn stored_states<S: PartitionState>(
    db: &DatabaseConnection,
    checkpoints: &Checkpoints,
) -> anyhow::Result<Vec<(PartitionKey, S)>> {
    Ok(restore_all(db, checkpoints)
        .await?
        .into_iter()
        .map(|(key, _, state)| (key, state))
        .collect())
}

/// Every stored partition of the group: its stored next offset and its restored state.
async fn restore_all<S: PartitionState>(
    db: &DatabaseConnection,
    checkpoints: &Checkpoints,
) -> anyhow::Result<Vec<(PartitionKey, Option<i64>, S)>> {
    checkpoints
        .load_all(db)
        .await
        .context("reading the stored checkpoints")?
        .into_iter()
        .map(|(key, stored)| {
            let state = S::restore(stored.entries)
                .with_context(|| format!("reading the stored state of {}[{}]", key.0, key.1))?;
            Ok((key, stored.next, state))
        })
        .collect()
}

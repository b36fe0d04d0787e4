//! Where a role resumes each partition: the next offset stored in its database, beside the data
//! it produced (the ledger's rows, or an analytics role's checkpoint), never Kafka's committed
//! offset, which is written after the fact and may be behind or ahead of the data.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use bank_storage::ledger::load_offsets;
use sea_orm::DatabaseConnection;

use crate::source::{OffsetStore, PartitionKey};

pub struct DatabaseOffsets {
    db: DatabaseConnection,
    group: String,
    runtime: tokio::runtime::Handle,
}

impl DatabaseOffsets {
    /// Must be called inside the Tokio runtime the database connection belongs to.
    pub fn new(db: DatabaseConnection, group: &str) -> Self {
        DatabaseOffsets {
            db,
            group: group.to_owned(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl OffsetStore for DatabaseOffsets {
    fn load(&self, partitions: &[PartitionKey]) -> anyhow::Result<HashMap<PartitionKey, i64>> {
        crate::fault::offsets_failure_point()?;
        // Runs on the Kafka polling thread, outside the runtime, so blocking here is allowed.
        self.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                load_offsets(&self.db, &self.group, partitions),
            )
            .await
            .context("timed out reading offsets")?
            .context("reading offsets")
        })
    }
}

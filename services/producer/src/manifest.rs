//! The run's manifest: what Kafka acknowledged, per topic and per account, with the expected
//! `sum(amount)` of every account in cents. Tests and the demo reconcile the ledger against it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub topics: BTreeMap<String, TopicCounts>,
    pub accounts: BTreeMap<String, AccountTotals>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCounts {
    pub partitions: i32,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTotals {
    /// Transactions of the account acknowledged by Kafka.
    pub transactions: u64,
    /// Their signed sum in cents: the balance the ledger must show.
    pub sum_cents: i64,
    /// The same sum as a decimal, for people reading the file.
    pub sum: String,
}

impl AccountTotals {
    pub fn new(transactions: u64, sum_cents: i64) -> Self {
        AccountTotals {
            transactions,
            sum_cents,
            sum: bank_contract::money::format_cents(sum_cents),
        }
    }
}

impl Manifest {
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("writing manifest {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading manifest {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", path.display()))
    }
}

//! Transactions already counted, by id, so a redelivered transaction is not counted twice by
//! the in-memory roles. Ids are UUIDs kept as 16-byte integers: a million cost about 32 MiB.

use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct SeenTransactions {
    ids: HashSet<u128>,
}

impl SeenTransactions {
    /// Whether `transaction_id` is new (and remember it). Ids that are not UUIDs cannot occur:
    /// the contract validation dead-letters them first.
    pub fn first_time(&mut self, transaction_id: &str) -> bool {
        match uuid::Uuid::parse_str(transaction_id) {
            Ok(id) => self.ids.insert(id.as_u128()),
            Err(_) => true,
        }
    }
}

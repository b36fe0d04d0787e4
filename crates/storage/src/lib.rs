//! The ledger's database, the second document other teams read (after `proto/`).
//!
//! - [`array_literal`]: a column of a batch bound to PostgreSQL as one text value;
//! - [`migration`]: the schema, as SeaORM migrations that run on PostgreSQL and SQLite alike;
//! - [`entity`]: one SeaORM entity per table;
//! - [`ledger`]: applying a batch of events atomically (the exactly-once write path);
//! - [`checkpoint`]: the analytics roles' state, stored with the offsets it corresponds to;
//! - [`error`]: whether a failed write may be retried, or the rows are refused for good;
//! - [`connect`]: opening a database from a URL with the settings each backend needs;
//! - [`scratch`]: throwaway databases for tests and benchmarks.

pub mod array_literal;
pub mod checkpoint;
pub mod connect;
pub mod entity;
pub mod error;
pub mod ledger;
pub mod migration;
pub mod scratch;

pub use connect::{Backend, connect};

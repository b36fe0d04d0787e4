//! One SeaORM entity per table of [`crate::migration`].

pub mod account;
pub mod consumer_offset;
pub mod customer;
pub mod parked_transaction;
pub mod transaction;

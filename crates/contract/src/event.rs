//! What each event type carries besides its fields: the schema it is registered under, its
//! fully-qualified protobuf name, and the Kafka key it is partitioned by.

use crate::pb::{Customer, LimitAlert, Transaction};

/// The `.proto` source of a message, as registered in the schema registry.
#[derive(Debug, Clone, Copy)]
pub struct SchemaSource {
    /// Fully-qualified protobuf name, e.g. `bank.v1.Transaction`.
    pub full_name: &'static str,
    /// The import path other schemas would use to reference this file.
    pub file_name: &'static str,
    /// The .proto text itself: compiled into the binary so a deployed service always registers
    /// exactly the schema its code was generated from.
    pub text: &'static str,
}

/// An event type of the contract.
pub trait Event: prost::Message + Default + Clone + Send + Sync + 'static {
    const SCHEMA: SchemaSource;
    /// The message key: events of one account share a key, hence a partition and an order.
    fn key(&self) -> &str;
}

impl Event for Transaction {
    const SCHEMA: SchemaSource = SchemaSource {
        full_name: "bank.v1.Transaction",
        file_name: "bank/v1/transaction.proto",
        text: include_str!("../../../proto/bank/v1/transaction.proto"),
    };
    fn key(&self) -> &str {
        &self.account_number
    }
}

impl Event for Customer {
    const SCHEMA: SchemaSource = SchemaSource {
        full_name: "bank.v1.Customer",
        file_name: "bank/v1/customer.proto",
        text: include_str!("../../../proto/bank/v1/customer.proto"),
    };
    fn key(&self) -> &str {
        &self.account_number
    }
}

impl Event for LimitAlert {
    const SCHEMA: SchemaSource = SchemaSource {
        full_name: "bank.v1.LimitAlert",
        file_name: "bank/v1/alert.proto",
        text: include_str!("../../../proto/bank/v1/alert.proto"),
    };
    fn key(&self) -> &str {
        &self.account_number
    }
}

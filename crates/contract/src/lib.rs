//! The wire contract between the producer and the consumer.
//!
//! Other teams read `proto/bank/v1/*.proto`; this crate is the Rust side of that document:
//! - [`pb`]: the generated protobuf types (`Transaction`, `Customer`, `TransactionKind`);
//! - [`event`]: what every event type knows about itself (schema text, full name, Kafka key);
//! - [`wire`]: the Confluent framing (magic byte, schema id, message indexes) around a payload;
//! - [`registry`]: registering schemas and resolving schema ids against a Confluent-compatible
//!   schema registry, through `schema_registry_converter`;
//! - [`decode`]: from framed bytes to a typed event, with errors that say whether to retry or to
//!   dead-letter;
//! - [`json`]: events as proto3 JSON, for tools and tests;
//! - [`money`]: signed amounts in integer cents and their decimal display;
//! - [`redact`]: URLs without their passwords, for logs and errors;
//! - [`time`]: protobuf timestamps from `chrono` instants;
//! - [`topics`]: default topic names and the subject naming strategy;
//! - [`validate`]: the rules protobuf cannot express (positive amounts, UUID ids, ...).
//!
//! `registry` and `decode` sit behind the default feature `registry`, the only part that needs
//! HTTP and TLS.

#[cfg(feature = "registry")]
pub mod decode;
pub mod event;
pub mod json;
pub mod money;
pub mod redact;
#[cfg(feature = "registry")]
pub mod registry;
pub mod time;
pub mod topics;
pub mod validate;
pub mod wire;

/// Types generated from `proto/bank/v1` by `build.rs`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/bank.v1.rs"));
}

#[cfg(feature = "registry")]
pub use decode::{DecodeError, Decoder};
pub use event::Event;
#[cfg(feature = "registry")]
pub use registry::{Registry, RegistryConfig, RegistryError, SchemaId};

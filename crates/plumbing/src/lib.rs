//! The plumbing every service of the pipeline shares, so that the producer, the ledger and the
//! analytics roles read the same flags, talk to Kafka and the registry the same way, log the same
//! way and stop the same way.
//!
//! - [`kafka`]: connection flags (`-b`, `--kafka-config`, properties files) into rdkafka configs;
//! - [`registry`]: schema registry flags (`-s`, credentials from the environment or a file);
//! - [`telemetry`]: the tracing subscriber;
//! - [`shutdown`]: SIGINT/SIGTERM and the stop signal every task selects on;
//! - [`backoff`]: the one retry pause.

pub mod backoff;
pub mod kafka;
pub mod registry;
pub mod shutdown;
pub mod telemetry;

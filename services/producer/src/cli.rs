//! Command-line interface. Short flags keep the spelling of the original tutorial
//! (`-b`, `-s`, `-t`, `-i`); every flag also reads an environment variable.

use bank_runtime::kafka::KafkaArgs;
use bank_runtime::registry::RegistryArgs;

#[derive(Debug, clap::Parser)]
#[command(name = "producer", version, about = "Produce bank events to Kafka")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register the schemas and send one Customer and one Transaction: a smoke test of the
    /// whole path (broker, registry, wire format).
    Sample(SampleArgs),
}

/// Where events go: the connection and the two topics.
#[derive(Debug, Clone, clap::Args)]
pub struct Destination {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Topic of Transaction events.
    #[arg(short = 't', long = "topic", env = "TRANSACTIONS_TOPIC", default_value = bank_contract::topics::TRANSACTIONS)]
    pub transactions_topic: String,
    /// Topic of Customer events.
    #[arg(long = "customers-topic", env = "CUSTOMERS_TOPIC", default_value = bank_contract::topics::CUSTOMERS)]
    pub customers_topic: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub destination: Destination,
    /// Print what was sent as JSON lines (proto3 JSON mapping) instead of readable text.
    #[arg(long)]
    pub json: bool,
}

//! Command-line interface. Short flags keep the spelling of the original tutorial (`-b`, `-s`,
//! `-t`, `-g`); every flag also reads an environment variable.

use bank_runtime::kafka::KafkaArgs;
use bank_runtime::registry::RegistryArgs;

#[derive(Debug, clap::Parser)]
#[command(name = "consumer", version, about = "Consume bank events from Kafka")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print decoded events from the topics, like kafka-protobuf-console-consumer. Reads from
    /// the beginning and commits nothing.
    Dump(Box<DumpArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate(MigrateArgs),
}

/// Where events come from: the connection and the two topics.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
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
pub struct DumpArgs {
    #[command(flatten)]
    pub source: Source,
    /// Stop after this many events (default: run until interrupted).
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Give up if no event arrives for this many seconds (default: wait forever).
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Print events as JSON lines (proto3 JSON mapping) instead of readable text.
    #[arg(long)]
    pub json: bool,
}

/// The ledger database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://FILE (embedded, the default) or postgres://USER:PASSWORD@HOST/DB.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite://bank.db",
        hide_env_values = true
    )]
    pub url: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

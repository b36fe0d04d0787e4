//! Command-line interface. Short flags keep the spelling of the original tutorial
//! (`-b`, `-s`, `-t`, `-i`); every flag also reads an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use bank_plumbing::kafka::KafkaArgs;
use bank_plumbing::registry::RegistryArgs;

use crate::pacing::Pace;
use crate::synthetic::GeneratorConfig;
use crate::topics::TopicLayout;
use bank_csv::cleaning::{DecimalStyle, SlashDates};
use bank_csv::rows::{ColumnNames, RowRules};

#[derive(Debug, clap::Parser)]
#[command(name = "producer", version, about = "Produce bank events to Kafka")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Synthetic traffic: customers first, then transactions on their accounts.
    Generate(Box<GenerateArgs>),
    /// Ingest a CSV file of transactions, cleaning each row; bad rows go to a rejects file.
    Csv(Box<CsvArgs>),
    /// Publish the rows of a database table (PostgreSQL or SQLite), then each new or changed
    /// row, like Kafka Connect's JDBC source in timestamp+incrementing mode.
    Table(Box<TableArgs>),
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

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub destination: Destination,
    #[command(flatten)]
    pub layout: TopicLayout,
    /// Number of customers (accounts); a Customer event is sent for each before any transaction.
    #[arg(long, env = "CUSTOMERS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub customers: u32,
    /// Number of transactions to send.
    #[arg(
        short = 'n',
        long,
        env = "COUNT",
        default_value_t = 1000,
        conflicts_with = "continuous"
    )]
    pub count: u64,
    /// Send transactions until interrupted (SIGINT/SIGTERM) instead of --count.
    #[arg(long, env = "CONTINUOUS")]
    pub continuous: bool,
    /// Transactions per second (default: as fast as the broker takes them).
    #[arg(long, env = "RATE", conflicts_with = "interval_ms")]
    pub rate: Option<f64>,
    /// Pause between transactions in milliseconds, jittered +-50% like the tutorial generators.
    #[arg(long = "interval-ms", env = "INTERVAL_MS")]
    pub interval_ms: Option<u64>,
    /// Seed of the generator: the same seed sends the same customers, ids, amounts and order.
    /// Without one a random seed is chosen and logged.
    #[arg(long, env = "SEED")]
    pub seed: Option<u64>,
    /// Time of the first transaction (RFC 3339). Default: a fixed date when --seed is given (so
    /// runs are byte-identical), now otherwise.
    #[arg(long, env = "START_TIME")]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// ISO 4217 currency of the generated amounts.
    #[arg(long, env = "CURRENCY", default_value = "USD")]
    pub currency: String,
    /// Pad every transaction's description to this many bytes (for benchmarks of large
    /// records; the contract allows up to 16384).
    #[arg(long = "description-bytes", env = "DESCRIPTION_BYTES", default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=16_384))]
    pub description_bytes: usize,
    /// Do not print a line per event.
    #[arg(long, env = "SILENT")]
    pub silent: bool,
    /// Write a JSON summary of what was delivered (per topic, and per account the transaction
    /// count and expected sum in cents) to this file.
    #[arg(long, env = "MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Write the customers and transactions as rows of a database (sqlite://FILE or
    /// postgres://...) instead of events on Kafka, creating the tables when missing: the seed's
    /// make_fake_data.py, for `producer table` to read.
    #[arg(
        long = "into-database",
        value_name = "URL",
        env = "GENERATE_INTO_DATABASE",
        hide_env_values = true
    )]
    pub into_database: Option<String>,
    /// With --into-database: the customers table.
    #[arg(long = "customers-table", env = "CUSTOMERS_TABLE", default_value = crate::source_tables::CUSTOMERS_TABLE)]
    pub customers_table: String,
    /// With --into-database: the transactions table.
    #[arg(long = "transactions-table", env = "TRANSACTIONS_TABLE", default_value = crate::source_tables::TRANSACTIONS_TABLE)]
    pub transactions_table: String,
}

impl GenerateArgs {
    pub fn generator_config(&self) -> GeneratorConfig {
        let seeded_start = || {
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("a valid constant")
                .into()
        };
        GeneratorConfig {
            customers: self.customers,
            branches: self.layout.branches,
            seed: self.seed.unwrap_or_else(rand::random),
            start: self.start.unwrap_or_else(|| match self.seed {
                Some(_) => seeded_start(),
                None => chrono::Utc::now(),
            }),
            currency: self.currency.clone(),
            description_bytes: self.description_bytes,
        }
    }

    pub fn pace(&self) -> Pace {
        match (self.rate, self.interval_ms) {
            (Some(rate), _) if rate > 0.0 => Pace::Rate(rate),
            (_, Some(ms)) => Pace::Interval(Duration::from_millis(ms)),
            _ => Pace::Unlimited,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CsvArgs {
    #[command(flatten)]
    pub destination: Destination,
    #[command(flatten)]
    pub layout: TopicLayout,
    /// The CSV file to ingest (`-` for stdin). It needs a header row.
    #[arg(short = 'i', long = "input", env = "INPUT")]
    pub input: PathBuf,
    /// Where rejected rows go (line, reason, raw row). Default: <input>.rejects.csv beside it.
    #[arg(long, env = "REJECTS")]
    pub rejects: Option<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnNames,
    /// Field delimiter.
    #[arg(long, env = "CSV_DELIMITER", default_value_t = ',')]
    pub delimiter: char,
    /// Amounts use a decimal comma and dot thousands separators (1.234,50).
    #[arg(long = "decimal-comma", env = "CSV_DECIMAL_COMMA")]
    pub decimal_comma: bool,
    /// Read a/b/yyyy dates as day/month/year (default month/day/year).
    #[arg(long = "day-first", env = "CSV_DAY_FIRST")]
    pub day_first: bool,
    /// Currency of rows without a currency column.
    #[arg(long, env = "CURRENCY", default_value = "USD")]
    pub currency: String,
    /// Rows per chunk: new customers of a chunk are acknowledged before its transactions go out.
    #[arg(long = "chunk-size", env = "CSV_CHUNK_SIZE", default_value_t = 10_000)]
    pub chunk_size: usize,
    /// Do not print a line per event.
    #[arg(long, env = "SILENT")]
    pub silent: bool,
    /// Write a JSON summary of what was delivered to this file.
    #[arg(long, env = "MANIFEST")]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub destination: Destination,
    #[command(flatten)]
    pub layout: TopicLayout,
    /// The source database: postgres://USER:PASSWORD@HOST/DB or sqlite://FILE.
    #[arg(
        long = "database-url",
        value_name = "URL",
        env = "SOURCE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,
    /// The table to read (`schema.table` on PostgreSQL).
    #[arg(long, env = "SOURCE_TABLE", default_value = crate::source_tables::TRANSACTIONS_TABLE)]
    pub table: String,
    /// What the rows are: transactions (Transaction events) or customers (Customer events).
    #[arg(
        long,
        value_enum,
        env = "SOURCE_EVENTS",
        default_value = "transactions"
    )]
    pub events: crate::table::mapping::Events,
    /// The column that changes on every insert and update (TIMESTAMP or TIMESTAMPTZ; on SQLite,
    /// UTC text as SQLite writes it).
    #[arg(
        long = "timestamp-column",
        env = "SOURCE_TIMESTAMP_COLUMN",
        default_value = "updated_at"
    )]
    pub timestamp_column: String,
    /// A strictly increasing integer column (the primary key), the tie-breaker between rows of
    /// one timestamp.
    #[arg(
        long = "incrementing-column",
        env = "SOURCE_INCREMENTING_COLUMN",
        default_value = "id"
    )]
    pub incrementing_column: String,
    /// Read only rows whose timestamp is older than the database's clock minus this delay, so a
    /// row that commits late with an earlier timestamp is not skipped.
    #[arg(
        long = "timestamp-delay-ms",
        env = "SOURCE_TIMESTAMP_DELAY_MS",
        default_value_t = 0
    )]
    pub timestamp_delay_ms: u64,
    /// How often to look for new rows once caught up.
    #[arg(
        long = "poll-interval-ms",
        env = "SOURCE_POLL_INTERVAL_MS",
        default_value_t = 500
    )]
    pub poll_interval_ms: u64,
    /// Rows per query; each batch is acknowledged by Kafka before the position moves past it.
    #[arg(long = "batch-size", env = "SOURCE_BATCH_SIZE", default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub batch_size: usize,
    /// Which column feeds a field, where the names differ: `--column account_number=acct_no`
    /// (repeatable). Fields of transactions: account_number, amount, transaction_datetime,
    /// description, kind, transaction_reference, transaction_id, currency, branch_id; of
    /// customers: account_number, first_name, last_name, email, created_at, updated_at, branch_id.
    #[arg(long = "column", value_name = "FIELD=COLUMN")]
    pub columns: Vec<String>,
    /// Where the position is stored. Default: <table>.position.json.
    #[arg(long = "state-file", env = "SOURCE_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Where rows that cannot be mapped are logged (JSON lines). Default: <table>.rejects.jsonl.
    #[arg(long, env = "SOURCE_REJECTS")]
    pub rejects: Option<PathBuf>,
    /// Currency of rows without a currency column.
    #[arg(long, env = "CURRENCY", default_value = "USD")]
    pub currency: String,
    /// Address of /metrics and /healthz.
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9091")]
    pub http_addr: std::net::SocketAddr,
    /// Exit once every row there is has been published, instead of polling for more.
    #[arg(long = "stop-when-caught-up", env = "SOURCE_STOP_WHEN_CAUGHT_UP")]
    pub stop_when_caught_up: bool,
    /// Do not print a line per event.
    #[arg(long, env = "SILENT")]
    pub silent: bool,
}

impl TableArgs {
    pub fn row_rules(&self) -> RowRules {
        RowRules {
            decimal: DecimalStyle::Point,
            slash_dates: SlashDates::MonthFirst,
            default_currency: self.currency.to_ascii_uppercase(),
            branches: self.layout.branches,
        }
    }
}

impl CsvArgs {
    pub fn row_rules(&self) -> RowRules {
        RowRules {
            decimal: if self.decimal_comma {
                DecimalStyle::Comma
            } else {
                DecimalStyle::Point
            },
            slash_dates: if self.day_first {
                SlashDates::DayFirst
            } else {
                SlashDates::MonthFirst
            },
            default_currency: self.currency.to_ascii_uppercase(),
            branches: self.layout.branches,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

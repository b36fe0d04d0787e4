//! Command-line interface. Short flags keep the spelling of the original tutorial (`-b`, `-s`,
//! `-t`, `-g`); every flag also reads an environment variable.

use bank_plumbing::kafka::KafkaArgs;
use bank_plumbing::registry::RegistryArgs;

#[derive(Debug, clap::Parser)]
#[command(name = "consumer", version, about = "Consume bank events from Kafka")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The ledger: persist every customer and transaction exactly once, log running sums.
    Ledger(Box<LedgerArgs>),
    /// Running count, mean and standard deviation of deposits and withdrawals.
    Summary(Box<SummaryArgs>),
    /// Watch balances against an overdraft limit; alert on each crossing.
    Limits(Box<LimitsArgs>),
    /// Print decoded events from the topics, like kafka-protobuf-console-consumer. Reads from
    /// the beginning and commits nothing.
    Dump(Box<DumpArgs>),
    /// A streaming view of one topic, like ksqlDB's `select ... from stream emit changes`:
    /// chosen columns, readable times, filters; as a table, CSV or JSON lines. Commits nothing.
    View(Box<ViewArgs>),
    /// The data lake: customers and transactions as Parquet files, Hive-partitioned by date,
    /// in a directory or S3-compatible storage, exactly once.
    Lake(Box<LakeArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate(MigrateArgs),
    /// Compare the ledger's balances with a producer manifest; exit 0 only if all match.
    Reconcile(ReconcileArgs),
    /// Exit 0 if the HTTP endpoint of a running role answers /healthz (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
}

/// Where events come from: the connection and the two topics.
#[derive(Debug, Clone, clap::Args)]
pub struct Input {
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
    pub input: Input,
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

#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub input: Input,
    /// Which stream to show.
    #[arg(value_enum, default_value = "transactions")]
    pub stream: crate::view::columns::Stream,
    /// Columns to show, separated by commas; `*` is every field of the event. Also: rowtime
    /// (the Kafka timestamp), partition, offset; for transactions signed_amount and amount_cents.
    #[arg(long, default_value = "*")]
    pub columns: String,
    /// Show only events where `COLUMN OP VALUE` holds (OP: = != < <= > >=), e.g.
    /// account_number=ACC-000001, kind=withdrawal, amount>1000.00,
    /// transaction_datetime>=2024-05-01. Repeat for AND.
    #[arg(long = "where", value_name = "CONDITION")]
    pub conditions: Vec<String>,
    /// How times print: `iso` (ISO 8601 with milliseconds and offset), `epoch-ms`, a Java
    /// pattern as in ksqlDB's TIMESTAMPTOSTRING (`yyyy-MM-dd HH:mm:ss.SSS`) or strftime (`%F %T`).
    #[arg(long = "time-format", default_value = "iso")]
    pub time_format: String,
    /// Time zone for printing times and for reading them in --where: an IANA name
    /// (America/Sao_Paulo) or an offset (+02:00).
    #[arg(long = "tz", default_value = "UTC")]
    pub tz: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::view::output::Format,
    /// `latest`: only events appended after the view starts (ksqlDB's default); `earliest`:
    /// the whole topic first.
    #[arg(long, value_enum, default_value = "latest")]
    pub from: ViewFrom,
    /// Stop after showing this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop (exit 0) once no event arrives for this many seconds.
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LakeArgs {
    #[command(flatten)]
    pub input: Input,
    /// Consumer group (for lag monitoring: the lake's own files say where it resumes).
    #[arg(
        short = 'g',
        long = "group",
        env = "CONSUMER_GROUP",
        default_value = "bank-lake"
    )]
    pub group: String,
    /// Where the lake is: a directory, file://DIR, or s3://BUCKET/PREFIX (credentials, region
    /// and endpoint from the standard AWS environment variables).
    #[arg(long = "lake", env = "LAKE_URL", default_value = "lake")]
    pub lake: String,
    /// Also partition by branch: dt=YYYY-MM-DD/branch=N/.
    #[arg(long = "partition-by-branch", env = "LAKE_PARTITION_BY_BRANCH")]
    pub partition_by_branch: bool,
    /// Cut a partition's files (one per date, and branch) once they hold this many rows.
    #[arg(long = "flush-records", env = "LAKE_FLUSH_RECORDS", default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub flush_records: usize,
    /// Cut a partition's files once their rows weigh about this many bytes.
    #[arg(long = "flush-bytes", env = "LAKE_FLUSH_BYTES", default_value_t = 64 << 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1_024..=4_294_967_296))]
    pub flush_bytes: usize,
    /// Cut a partition's files before its rows would open one more than this: bounds the
    /// memory of rows spread over many dates; rows of up to this many dates interleaved (a
    /// backfill, a stream crossing midnight) still share files.
    #[arg(long = "max-open-files", env = "LAKE_MAX_OPEN_FILES", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_open_files: usize,
    /// Cut a partition's files once their oldest row has waited this long.
    #[arg(
        long = "flush-interval-ms",
        env = "LAKE_FLUSH_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub flush_interval_ms: u64,
    /// Address of the HTTP endpoint (/healthz, /readyz, /metrics).
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: std::net::SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewFrom {
    Earliest,
    Latest,
}

/// The ledger database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://FILE (embedded, the default) or postgres://USER:PASSWORD@HOST/DB.
    #[arg(
        id = "database_url",
        value_name = "URL",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite://bank.db",
        hide_env_values = true
    )]
    pub url: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub input: Input,
    /// Consumer group; instances of one group share the partitions (branches).
    #[arg(
        short = 'g',
        long = "group",
        env = "CONSUMER_GROUP",
        default_value = "bank-ledger"
    )]
    pub group: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Most records read per batch; a batch is split among the writers, one database
    /// transaction each.
    #[arg(long = "batch-size", env = "BATCH_SIZE", default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub batch_size: usize,
    /// Most bytes a batch holds in memory, whatever its count: its records (keys, values,
    /// headers) and their decoded rows, estimated. Records in flight are bounded to two batches'
    /// worth (committing, and the next one gathering), so large records cannot exhaust memory.
    #[arg(long = "max-batch-bytes", env = "MAX_BATCH_BYTES", default_value_t = 16 << 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65_536..=1_073_741_824))]
    pub max_batch_bytes: usize,
    /// 0 (the default): group commit, a batch goes to a writer as soon as it has finished its
    /// previous one, with whatever arrived meanwhile, so batches grow with the load. Otherwise
    /// the longest wait, in milliseconds, for a batch to fill before it is committed anyway.
    #[arg(long = "batch-linger-ms", env = "BATCH_LINGER_MS", default_value_t = 0)]
    pub batch_linger_ms: u64,
    /// Database writers working at once, each on its own connection: partition p of both topics
    /// goes to writer p % writers. PostgreSQL only; SQLite always has a single writer.
    #[arg(long = "writers", env = "LEDGER_WRITERS", default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=32))]
    pub writers: usize,
    /// Address of the HTTP endpoint (/healthz, /readyz, /metrics).
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: std::net::SocketAddr,
    /// Where the (account_number, sum(amount)) tuples go: `-` for stdout, or a file to append to.
    #[arg(long = "tuple-log", env = "TUPLE_LOG", default_value = "-")]
    pub tuple_log: std::path::PathBuf,
    /// Do not log the per-transaction tuples.
    #[arg(long = "no-tuple-log", env = "NO_TUPLE_LOG")]
    pub no_tuple_log: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub input: Input,
    /// Consumer group; its checkpoint (state and offsets) is kept under this name.
    #[arg(
        short = 'g',
        long = "group",
        env = "CONSUMER_GROUP",
        default_value = "bank-summary"
    )]
    pub group: String,
    /// Where the summary checkpoints its state with its offsets: sqlite://FILE (embedded, the
    /// default) or postgres://USER:PASSWORD@HOST/DB (may be the ledger's database).
    #[arg(
        id = "database_url",
        value_name = "URL",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite://summary.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Print the summary every N transactions (1: after each one).
    #[arg(long, env = "SUMMARY_EVERY", default_value_t = 1)]
    pub every: u64,
    /// Print at most every T milliseconds instead (for heavy traffic).
    #[arg(long = "every-ms", env = "SUMMARY_EVERY_MS")]
    pub every_ms: Option<u64>,
    /// Address of the HTTP endpoint (/healthz, /readyz, /metrics, /summary).
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: std::net::SocketAddr,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    #[command(flatten)]
    pub input: Input,
    /// Consumer group; its checkpoint (balances and offsets) is kept under this name.
    #[arg(
        short = 'g',
        long = "group",
        env = "CONSUMER_GROUP",
        default_value = "bank-limits"
    )]
    pub group: String,
    /// Where the watcher checkpoints its state with its offsets: sqlite://FILE (embedded, the
    /// default) or postgres://USER:PASSWORD@HOST/DB (may be the ledger's database).
    #[arg(
        id = "database_url",
        value_name = "URL",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite://limits.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// The limit, in currency units: an account is in breach at or below it (e.g. -5000.00).
    #[arg(long, env = "OVERDRAFT_LIMIT", allow_hyphen_values = true)]
    pub limit: String,
    /// Topic of LimitAlert events.
    #[arg(long = "alerts-topic", env = "ALERTS_TOPIC", default_value = bank_contract::topics::ALERTS)]
    pub alerts_topic: String,
    /// Address of the HTTP endpoint (/healthz, /readyz, /metrics, /breaches).
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: std::net::SocketAddr,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The manifest written by `producer generate --manifest` or `producer csv --manifest`.
    #[arg(long)]
    pub manifest: std::path::PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Wait up to this many seconds for the ledger to catch up before comparing.
    #[arg(long = "wait-secs", default_value_t = 0)]
    pub wait_secs: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The role's HTTP address; the port is what matters (an unspecified host means 127.0.0.1).
    #[arg(long = "http-addr", env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: std::net::SocketAddr,
    /// Path to check: /healthz (alive) or /readyz (ready).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
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

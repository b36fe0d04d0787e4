//! `consumer view`: a streaming view of one topic, what ksqlDB's
//! `select <columns> from <stream> where ... emit changes` gives, without a ksqlDB server.
//!
//! A view is read-only and leaves no trace: it assigns itself every partition of the topic
//! instead of joining a group, and commits nothing. `--from latest` starts at each partition's
//! end as fetched when the view starts, so every event appended after that instant is shown
//! (with a group's `auto.offset.reset=latest`, events appended before the assignment completes
//! would be silently skipped). Partitions added to the topic while a view runs are not seen.
//!
//! - [`columns`]: what can be shown and filtered on, and each column's type;
//! - [`filter`]: `--where`; [`time`]: `--time-format` and `--tz`; [`output`]: table, CSV, JSON.

pub mod columns;
pub mod filter;
pub mod output;
pub mod time;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use bank_contract::pb::{Customer, Transaction};
use bank_contract::{Decoder, Registry};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::cli::{ViewArgs, ViewFrom};
use columns::{Event, Row, Stream};
use filter::Condition;
use output::Printer;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a view was asked for, checked before Kafka is contacted.
struct Query {
    stream: Stream,
    conditions: Vec<Condition>,
    printer: Printer<std::io::BufWriter<std::io::StdoutLock<'static>>>,
}

impl Query {
    fn parse(args: &ViewArgs) -> anyhow::Result<Self> {
        let stream = args.stream;
        let zone = time::Zone::parse(&args.tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        let time_format = time::TimeFormat::parse(&args.time_format)
            .map_err(|e| anyhow::anyhow!("--time-format: {e}"))?;
        let columns = stream
            .columns(&args.columns)
            .map_err(|e| anyhow::anyhow!("--columns: {e}"))?;
        let conditions = args
            .conditions
            .iter()
            .map(|text| Condition::parse(text, stream, &zone))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        let printer = Printer::new(out, args.format, columns, zone, time_format);
        Ok(Query {
            stream,
            conditions,
            printer,
        })
    }
}

pub async fn run(args: ViewArgs) -> anyhow::Result<()> {
    let mut query = Query::parse(&args)?;
    let topic = match query.stream {
        Stream::Transactions => args.input.transactions_topic.clone(),
        Stream::Customers => args.input.customers_topic.clone(),
    };
    let registry = Registry::new(&args.input.registry.registry_config()?)?;
    let decoder = Decoder::new(registry.into());
    let group = format!("bank-view-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer =
        bank_plumbing::kafka::manual_commit_consumer_config(&args.input.kafka, &group)?
            .create()
            .context("creating the Kafka consumer")?;
    assign(&consumer, &topic, args.from)?;
    let stop = bank_plumbing::shutdown::Stop::new();
    stop.on_signal();

    let result = stream_rows(&consumer, &decoder, &mut query, &args, &stop).await;
    bank_plumbing::kafka::close_consumer(consumer, Duration::from_secs(10)).await;
    match result.and_then(|()| Ok(query.printer.footer()?)) {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        other => other,
    }
}

/// Assigns every partition of `topic`, at its start or at its end as of now.
fn assign(consumer: &StreamConsumer, topic: &str, from: ViewFrom) -> anyhow::Result<()> {
    let partitions = partitions_of(consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        let offset = match from {
            ViewFrom::Earliest => Offset::Beginning,
            ViewFrom::Latest => {
                let (_, high) = fetch_watermarks(consumer, topic, partition)?;
                Offset::Offset(high)
            }
        };
        list.add_partition_offset(topic, partition, offset)
            .with_context(|| format!("assigning {topic}[{partition}]"))?;
    }
    consumer.assign(&list).context("assigning the partitions")
}

fn partitions_of(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    // librdkafka's metadata calls block; this runs once, before anything else is under way.
    let metadata =
        tokio::task::block_in_place(|| consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT))
            .with_context(|| format!("fetching the metadata of topic {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist (or has no partitions)");
    }
    Ok(partitions)
}

fn fetch_watermarks(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(i64, i64)> {
    tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT))
        .with_context(|| format!("fetching the end offset of {topic}[{partition}]"))
}

async fn stream_rows(
    consumer: &StreamConsumer,
    decoder: &Decoder,
    query: &mut Query,
    args: &ViewArgs,
    stop: &bank_plumbing::shutdown::Stop,
) -> anyhow::Result<()> {
    query.printer.header()?;
    let idle = args.idle_timeout_secs.map(Duration::from_secs);
    let mut shown = 0u64;
    while args.limit.is_none_or(|limit| shown < limit) {
        let message = tokio::select! {
            _ = stop.requested() => return Ok(()),
            message = next(consumer, idle) => message,
        };
        let Some(message) = message else {
            note(&format!(
                "no event for {}s; {shown} shown",
                args.idle_timeout_secs.unwrap_or(0)
            ));
            return Ok(());
        };
        let message = message.context("reading from Kafka")?;
        let Some(row) = decode(decoder, query.stream, &message).await else {
            continue;
        };
        if query.conditions.iter().all(|c| c.holds(&row)) {
            query.printer.row(&row)?;
            shown += 1;
        }
    }
    Ok(())
}

/// The next record, or `None` once `idle` passes without one.
async fn next(
    consumer: &StreamConsumer,
    idle: Option<Duration>,
) -> Option<rdkafka::error::KafkaResult<BorrowedMessage<'_>>> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, consumer.recv()).await.ok(),
        None => Some(consumer.recv().await),
    }
}

/// A row for the record, or `None` (said on stderr, with where it is) when it cannot be read:
/// a view shows what it can and keeps going, as `emit changes` does.
async fn decode(decoder: &Decoder, stream: Stream, message: &BorrowedMessage<'_>) -> Option<Row> {
    let position = format!(
        "{}[{}]@{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let Some(bytes) = message.payload() else {
        note(&format!("{position} has no value (a tombstone); skipped"));
        return None;
    };
    let event = match stream {
        Stream::Transactions => decoder
            .decode::<Transaction>(bytes)
            .await
            .map(Event::Transaction),
        Stream::Customers => decoder.decode::<Customer>(bytes).await.map(Event::Customer),
    };
    match event {
        Ok(event) => Some(Row {
            event,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
        }),
        Err(error) => {
            note(&format!(
                "{position} cannot be decoded ({}); skipped: {error}",
                error.kind()
            ));
            None
        }
    }
}

/// A line on stderr, which may be gone (a closed terminal): never a reason to stop.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

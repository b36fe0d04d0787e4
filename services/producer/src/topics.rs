//! Making sure the topics exist with a partition per branch.
//!
//! Branches map to partitions (`branch_id mod partitions`), so a topic needs at least as many
//! partitions as there are branches, or two branches would share a partition and a consumer could
//! not own one branch. Missing topics are created; an existing topic with too few partitions is
//! an error that says how to fix it, never silently used.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// How topics are laid out.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicLayout {
    /// Number of bank branches; every account belongs to one, and branch b's events go to
    /// partition b mod (partition count). New topics get this many partitions.
    #[arg(long, env = "BRANCHES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub branches: u32,

    /// Replication factor of topics this tool creates (-1: the broker's default).
    #[arg(long, env = "REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i32,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates `topic` with `layout.branches` partitions unless it exists; returns its partition
/// count, which is at least the number of branches.
pub async fn ensure_topic(
    base: &ClientConfig,
    topic: &str,
    layout: &TopicLayout,
) -> anyhow::Result<i32> {
    let admin: AdminClient<DefaultClientContext> =
        base.create().context("creating the Kafka admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let wanted = layout.branches as i32;
    let new_topic = NewTopic::new(
        topic,
        wanted,
        TopicReplication::Fixed(layout.replication_factor),
    );
    let bootstrap = base.get("bootstrap.servers").unwrap_or("?").to_owned();
    let unreachable = || {
        anyhow::anyhow!(
            "Kafka at {bootstrap} did not answer within {ADMIN_TIMEOUT:?} while creating topic {topic}: is the broker reachable?"
        )
    };
    let results = tokio::time::timeout(
        ADMIN_TIMEOUT + Duration::from_secs(5),
        admin.create_topics([&new_topic], &options),
    )
    .await
    .map_err(|_| unreachable())?
    .map_err(|error| match error {
        rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => unreachable(),
        other => anyhow::Error::new(other)
            .context(format!("creating topic {topic} on Kafka at {bootstrap}")),
    })?;
    match results.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(topic, partitions = wanted, "created topic");
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
        Some(Err((_, code))) => bail!("cannot create topic {topic}: {code}"),
        None => bail!("cannot create topic {topic}: no answer from the broker"),
    }
    let partitions = partition_count(&admin, topic, wanted).await?;
    if partitions < wanted {
        bail!(
            "topic {topic} has {partitions} partitions, fewer than the {wanted} branches: two branches would share a partition. \
             Add partitions (kafka-topics.sh --alter --topic {topic} --partitions {wanted}) or run with --branches {partitions}"
        );
    }
    Ok(partitions)
}

/// The topic's partition count as the broker reports it, waiting (bounded) for a just-created
/// topic's metadata to show all of them.
async fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    wanted: i32,
) -> anyhow::Result<i32> {
    let deadline = tokio::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .with_context(|| format!("reading metadata of topic {topic}"))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0);
        if count >= wanted || (count > 0 && tokio::time::Instant::now() >= deadline) {
            return Ok(count);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "topic {topic} has no partitions in the broker's metadata after {ADMIN_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Kafka connection settings shared by every service.
//!
//! Anything librdkafka accepts can be passed through, so SASL and SSL need no code of ours:
//! `--kafka-config security.protocol=SASL_SSL --kafka-config sasl.mechanism=PLAIN ...`, or a Java-style
//! properties file (`--kafka-config-file client.properties`, the file Confluent Cloud hands out).
//! Values of secret-looking keys never reach a log line.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;

/// Connection flags. Every flag also reads an environment variable, for containers.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        short = 'b',
        long = "bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,

    /// Extra librdkafka setting as key=value (repeatable), e.g. security.protocol=SASL_SSL.
    /// The environment variable takes a comma-separated list.
    #[arg(
        long = "kafka-config",
        env = "KAFKA_CONFIG",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        hide_env_values = true
    )]
    pub settings: Vec<String>,

    /// A properties file of librdkafka settings (key=value lines, # comments), applied before
    /// --kafka-config. Keep SASL passwords here or in the environment, not on the command line.
    #[arg(long = "kafka-config-file", env = "KAFKA_CONFIG_FILE")]
    pub settings_file: Option<PathBuf>,
}

impl KafkaArgs {
    /// Args pointing at `bootstrap_servers` with nothing else set: for tests and tools.
    pub fn with_bootstrap(bootstrap_servers: impl Into<String>) -> Self {
        KafkaArgs {
            bootstrap_servers: bootstrap_servers.into(),
            settings: Vec::new(),
            settings_file: None,
        }
    }

    /// The base client configuration: bootstrap servers, then the file, then the flags.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        if let Some(path) = &self.settings_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read Kafka config file {}", path.display()))?;
            for (line_no, line) in text.lines().enumerate() {
                if let Some((key, value)) = parse_property(line)
                    .with_context(|| format!("{}:{}", path.display(), line_no + 1))?
                {
                    config.set(key, value);
                }
            }
        }
        for setting in &self.settings {
            match parse_property(setting).context("in --kafka-config")? {
                Some((key, value)) => config.set(key, value),
                None => bail!("empty --kafka-config value"),
            };
        }
        Ok(config)
    }
}

/// Settings of an idempotent producer: no duplicates from retries, every write acknowledged by all
/// in-sync replicas. Services add their own tuning on top.
pub fn idempotent_producer_config(args: &KafkaArgs) -> anyhow::Result<ClientConfig> {
    let mut config = args.client_config()?;
    config.set("enable.idempotence", "true").set("acks", "all");
    Ok(config)
}

/// Settings of a consumer in `group` that commits nothing by itself: each service decides when
/// an offset counts as processed.
pub fn manual_commit_consumer_config(
    args: &KafkaArgs,
    group: &str,
) -> anyhow::Result<ClientConfig> {
    let mut config = args.client_config()?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    Ok(config)
}

/// Leaves the group and destroys `consumer`, waiting at most `limit`.
///
/// librdkafka's destroy was seen to hang now and then when a subscribed consumer is dropped, so the
/// consumer unsubscribes first and the drop runs on a blocking thread: a hang costs a leaked
/// thread and a warning, never a stuck shutdown. Returns whether the close finished in time.
pub async fn close_consumer<C, X>(consumer: C, limit: Duration) -> bool
where
    C: Consumer<X> + Send + 'static,
    X: rdkafka::consumer::ConsumerContext + 'static,
{
    consumer.unsubscribe();
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    match tokio::time::timeout(limit, closing).await {
        Ok(_) => true,
        Err(_) => {
            tracing::warn!(
                ?limit,
                "Kafka consumer did not close in time; abandoning it"
            );
            false
        }
    }
}

/// Whether a librdkafka setting holds a secret and must not be logged.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "key.pem", "private"]
        .iter()
        .any(|marker| key.contains(marker))
}

/// The settings of `config` fit for a log line: secrets replaced by `***`.
pub fn describe(config: &ClientConfig) -> String {
    let mut pairs: Vec<_> = config
        .config_map()
        .iter()
        .map(|(k, v)| {
            if is_secret_key(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// One `key=value` line of a properties file: `None` for blanks and comments.
fn parse_property(line: &str) -> anyhow::Result<Option<(&str, &str)>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
        return Ok(None);
    }
    let (key, value) = line
        .split_once('=')
        .with_context(|| format!("expected key=value, got {:?}", redact_line(line)))?;
    let key = key.trim();
    if key.is_empty() {
        bail!("empty key in {:?}", redact_line(line));
    }
    Ok(Some((key, value.trim())))
}

fn redact_line(line: &str) -> String {
    match line.split_once('=') {
        Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
        _ if is_secret_key(line) => "***".into(),
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka is built with its configure script and without libcurl (so a fresh machine
    /// needs no CMake and no curl headers): TLS and every SASL mechanism must still be in.
    #[test]
    fn librdkafka_has_tls_and_sasl_built_in() {
        let native = rdkafka::ClientConfig::new()
            .create_native_config()
            .expect("default config");
        let features = native.get("builtin.features").expect("builtin.features");
        let features: Vec<&str> = features.split(',').collect();
        for wanted in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "gzip",
            "lz4",
            "snappy",
        ] {
            assert!(
                features.contains(&wanted),
                "librdkafka lacks {wanted}: {features:?}"
            );
        }
        let client: Result<rdkafka::producer::BaseProducer, _> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "u")
            .set("sasl.password", "p")
            .create();
        assert!(client.is_ok(), "a SASL_SSL client can be configured");
    }

    #[test]
    fn file_then_flags_and_secrets_hidden() {
        let dir = std::env::temp_dir().join(format!("bank-plumbing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("client.properties");
        std::fs::write(
            &file,
            "# Confluent Cloud style\nsecurity.protocol=SASL_SSL\nsasl.password = s3cret\n\nlinger.ms=5\n",
        )
        .unwrap();
        let args = KafkaArgs {
            bootstrap_servers: "broker:9092".into(),
            settings: vec!["linger.ms=20".into()],
            settings_file: Some(file),
        };
        let config = args.client_config().unwrap();
        assert_eq!(config.get("bootstrap.servers"), Some("broker:9092"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(
            config.get("linger.ms"),
            Some("20"),
            "flags override the file"
        );
        let shown = describe(&config);
        assert!(shown.contains("sasl.password=***"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn bad_lines_name_the_problem_without_the_secret() {
        let args = KafkaArgs {
            settings: vec!["sasl.password".into()],
            ..KafkaArgs::with_bootstrap("b:1")
        };
        let error = format!("{:#}", args.client_config().unwrap_err());
        assert!(error.contains("--kafka-config"), "{error}");
        assert!(error.contains("expected key=value"), "{error}");
    }
}

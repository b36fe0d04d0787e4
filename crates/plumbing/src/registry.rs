//! Schema registry flags. The URL may be passed anywhere; the password only through the
//! environment or a file (never a flag, which `ps` would show).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bank_contract::RegistryConfig;
use secrecy::SecretString;

#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Base URL of the Confluent-compatible schema registry API (Confluent's registry, or
    /// Apicurio's /apis/ccompat/v7).
    #[arg(
        id = "schema_registry_url",
        value_name = "URL",
        short = 's',
        long = "schema-registry",
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub url: String,

    /// User for HTTP basic auth against the registry (an API key on Confluent Cloud).
    #[arg(
        id = "schema_registry_user",
        long = "schema-registry-user",
        env = "SCHEMA_REGISTRY_USERNAME"
    )]
    pub user: Option<String>,

    /// File holding the registry password; or set SCHEMA_REGISTRY_PASSWORD.
    #[arg(
        id = "schema_registry_password_file",
        value_name = "FILE",
        long = "schema-registry-password-file",
        env = "SCHEMA_REGISTRY_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// Timeout of each registry call, in seconds.
    #[arg(
        id = "schema_registry_timeout_secs",
        value_name = "SECONDS",
        long = "schema-registry-timeout-secs",
        env = "SCHEMA_REGISTRY_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub timeout_secs: u64,
}

impl RegistryArgs {
    pub fn with_url(url: impl Into<String>) -> Self {
        RegistryArgs {
            url: url.into(),
            user: None,
            password_file: None,
            timeout_secs: 10,
        }
    }

    pub fn registry_config(&self) -> anyhow::Result<RegistryConfig> {
        let mut config = RegistryConfig::new(&self.url);
        config.timeout = Duration::from_secs(self.timeout_secs.max(1));
        if let Some(user) = &self.user {
            let password = match &self.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| {
                        format!("cannot read registry password file {}", path.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => std::env::var("SCHEMA_REGISTRY_PASSWORD").unwrap_or_default(),
            };
            config.basic_auth = Some((user.clone(), SecretString::from(password)));
        }
        Ok(config)
    }
}

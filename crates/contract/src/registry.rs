//! Talking to a Confluent-compatible schema registry (Confluent's own, or Apicurio's `ccompat`
//! API) through `schema_registry_converter`.
//!
//! Two jobs: register our schemas at startup (idempotent: the registry returns the existing id for
//! a schema it already holds), and resolve the schema id and message indexes found in a framed
//! value to the protobuf message name they denote. Failures are sorted into what a caller can act
//! on: retry later ([`RegistryError::Unavailable`]), or give up on this input.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use prost::Message;
use schema_registry_converter::async_impl::proto_raw::ProtoRawDecoder;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use secrecy::{ExposeSecret, SecretString};

use crate::event::Event;
use crate::topics::value_subject;
use crate::wire;

/// The id the registry assigned to a schema; written into every framed value.
pub type SchemaId = u32;

/// Where the registry is and how to authenticate. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`
    /// for Apicurio or `http://schema-registry:8081` for Confluent's registry.
    pub url: String,
    /// HTTP basic-auth credentials (Confluent Cloud API key and secret, for instance).
    pub basic_auth: Option<(String, SecretString)>,
    /// Bound on every HTTP call, so an unreachable registry is reported instead of waited on.
    pub timeout: Duration,
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig {
            url: url.into(),
            basic_auth: None,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Transport failure, timeout or a 5xx answer: the same call may succeed later.
    #[error("schema registry at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The registry answered that the schema id or subject does not exist.
    #[error("schema registry has no {what}")]
    NotFound { what: String },
    /// The registry refused a schema (incompatible with the subject's history, or invalid).
    #[error("schema registry rejected the schema for subject {subject}: {detail}")]
    Rejected { subject: String, detail: String },
    /// The registry refused our credentials: retrying will not help until configuration changes.
    #[error("schema registry at {url} refused the credentials (HTTP {status})")]
    Unauthorized { url: String, status: u16 },
    /// The URL does not serve a Confluent-compatible registry API.
    #[error("schema registry URL {url} is wrong: {detail}")]
    Misconfigured { url: String, detail: String },
    /// Anything else the registry or the converter reported, e.g. message indexes that do not
    /// name a message of the schema.
    #[error("schema registry lookup failed: {detail}")]
    Invalid { detail: String },
}

impl RegistryError {
    /// Whether the same call is worth repeating after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

/// A registry client shared by every task of a service (cheap to share behind an `Arc`).
pub struct Registry {
    url: String,
    /// `url` without its password, for logs and errors.
    shown: String,
    config: RegistryConfig,
    http: reqwest::Client,
    settings: SrSettings,
    /// Resolves schema ids to message names, caching what it fetched: a registry outage does not
    /// stop decoding of schemas seen before.
    resolver: ProtoRawDecoder,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.shown)
            .finish()
    }
}

/// An error and its causes on one line: reqwest's own text ("error sending request") hides
/// what OpenSSL or the resolver said.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Registry {
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let url = config.url.trim_end_matches('/').to_owned();
        let mut builder = SrSettings::new_builder(url.clone());
        builder.set_timeout(config.timeout);
        if let Some((user, password)) = &config.basic_auth {
            builder.set_basic_authorization(user, Some(password.expose_secret()));
        }
        let settings = builder.build().map_err(|e| RegistryError::Invalid {
            detail: format!(
                "cannot build a client for {}: {}",
                crate::redact::url(&url),
                e.error
            ),
        })?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| RegistryError::Invalid {
                detail: format!(
                    "cannot build an HTTP client for {}: {e}",
                    crate::redact::url(&url)
                ),
            })?;
        Ok(Registry {
            shown: crate::redact::url(&url),
            url,
            config: config.clone(),
            http,
            resolver: ProtoRawDecoder::new(settings.clone()),
            settings,
        })
    }

    /// Asks the registry for its subjects: proves the URL serves a Confluent-compatible API
    /// and the credentials work. A 404 means a wrong URL (Apicurio's API is under
    /// `/apis/ccompat/v7`), never a missing schema; it and a refused login are not transient.
    pub async fn probe(&self) -> Result<(), RegistryError> {
        let mut request = self.http.get(format!("{}/subjects", self.url));
        if let Some((user, password)) = &self.config.basic_auth {
            request = request.basic_auth(user, Some(password.expose_secret()));
        }
        let response = request.send().await.map_err(|e| self.send_failure(e))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(RegistryError::Unauthorized {
                url: self.shown.clone(),
                status,
            }),
            500.. | 408 | 429 => Err(RegistryError::Unavailable {
                url: self.shown.clone(),
                detail: format!("GET /subjects answered HTTP {status}"),
            }),
            _ => Err(RegistryError::Misconfigured {
                url: self.shown.clone(),
                detail: format!(
                    "GET /subjects answered HTTP {status}: no Confluent-compatible schema registry \
                     API there (for Apicurio the URL ends in /apis/ccompat/v7)"
                ),
            }),
        }
    }

    /// A request that got no answer: an outage to wait out, unless the registry's certificate
    /// was refused, which waiting does not mend.
    fn send_failure(&self, e: reqwest::Error) -> RegistryError {
        let detail = self.scrub(error_chain(&e.without_url()));
        if detail.contains("certificate verify failed") {
            RegistryError::Misconfigured {
                url: self.shown.clone(),
                detail: format!(
                    "its TLS certificate is not trusted ({detail}); add its CA to the system's \
                     store or name it in SSL_CERT_FILE"
                ),
            }
        } else {
            RegistryError::Unavailable {
                url: self.shown.clone(),
                detail,
            }
        }
    }

    /// The registry's URL without its password, for logs.
    pub fn display_url(&self) -> &str {
        &self.shown
    }

    /// Registers the schema of `E` as the value schema of `topic` and returns its id. Safe to call
    /// on every start: an identical schema gets its existing id back.
    ///
    /// Imports of `google/protobuf/*` are registered without references: Confluent's registry
    /// (and Apicurio) resolve the well-known types themselves, as Confluent's own serializers
    /// assume.
    pub async fn register<E: Event>(&self, topic: &str) -> Result<SchemaId, RegistryError> {
        let subject = value_subject(topic);
        let schema = SuppliedSchema::new(
            Some(E::SCHEMA.full_name.to_owned()),
            SchemaType::Protobuf,
            E::SCHEMA.text.to_owned(),
        );
        self.register_text(&subject, schema).await
    }

    /// Registers arbitrary protobuf schema text under `subject`: for tools and tests that need a
    /// schema other than the compiled-in ones (a v2 of the contract, say).
    pub async fn register_schema_text(
        &self,
        subject: &str,
        full_name: &str,
        text: &str,
    ) -> Result<SchemaId, RegistryError> {
        let schema = SuppliedSchema::new(
            Some(full_name.to_owned()),
            SchemaType::Protobuf,
            text.to_owned(),
        );
        self.register_text(subject, schema).await
    }

    async fn register_text(
        &self,
        subject: &str,
        schema: SuppliedSchema,
    ) -> Result<SchemaId, RegistryError> {
        let e = match post_schema(&self.settings, subject.to_owned(), schema).await {
            Ok(registered) => return Ok(registered.id),
            Err(e) => self.classify(&e),
        };
        // The converter says only "error sending request"; the probe says why, and a refused
        // certificate is a misconfiguration, not an outage to wait out.
        if e.is_transient()
            && let Err(refused @ RegistryError::Misconfigured { .. }) = self.probe().await
        {
            return Err(refused);
        }
        Err(match e {
            RegistryError::Invalid { detail } => RegistryError::Rejected {
                subject: subject.to_owned(),
                detail,
            },
            RegistryError::NotFound { what } => RegistryError::Rejected {
                subject: subject.to_owned(),
                detail: format!("registry answered 'not found' ({what})"),
            },
            other => other,
        })
    }

    /// The fully-qualified name of the message type a framed value declares (schema id plus
    /// message indexes). Fetches the schema on first sight of an id, then answers from cache.
    pub async fn resolve_message_name(&self, framed: &[u8]) -> Result<Arc<String>, RegistryError> {
        match self.resolver.decode(Some(framed)).await {
            Ok(Some(resolved)) => Ok(resolved.full_name),
            Ok(None) => Err(RegistryError::Invalid {
                detail: "empty value".into(),
            }),
            Err(e) => {
                let error = self.classify(&e);
                if error.is_transient() {
                    // The converter caches some failures; a transient one must not stick.
                    self.resolver.remove_errors_from_cache();
                }
                match error {
                    // The converter reads .proto text only. Confluent's serializers register a
                    // base64 FileDescriptorProto instead, and some registries (Apicurio) hand
                    // that back verbatim: read it ourselves.
                    RegistryError::Invalid { detail }
                        if detail.contains("parse protobuf schema") =>
                    {
                        self.resolve_from_descriptor(framed).await
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn resolve_from_descriptor(&self, framed: &[u8]) -> Result<Arc<String>, RegistryError> {
        let invalid = |detail: String| RegistryError::Invalid { detail };
        let parsed = wire::parse(framed).map_err(|e| invalid(e.to_string()))?;
        let registered = get_schema_by_id(parsed.schema_id, &self.settings)
            .await
            .map_err(|e| self.classify(&e))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(registered.schema.trim())
            .map_err(|_| {
                invalid(format!(
                    "schema {} is neither .proto text nor a base64 FileDescriptorProto",
                    parsed.schema_id
                ))
            })?;
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
            invalid(format!(
                "schema {} is not a FileDescriptorProto: {e}",
                parsed.schema_id
            ))
        })?;
        let indexes = wire::decode_message_indexes(parsed.message_indexes)
            .map_err(|e| invalid(e.to_string()))?;
        message_name_at(&file, &indexes)
            .map(Arc::new)
            .ok_or_else(|| {
                invalid(format!(
                    "message indexes {indexes:?} name no message of schema {}",
                    parsed.schema_id
                ))
            })
    }

    /// `text` (a client library's error) without the URL's password, should it quote the URL.
    fn scrub(&self, text: String) -> String {
        let text = text.replace(&self.url, &self.shown);
        match self.url.split_once("://").and_then(|(_, rest)| {
            let authority = rest.split(['/', '?']).next()?;
            let (userinfo, _) = authority.rsplit_once('@')?;
            userinfo
                .split_once(':')
                .map(|(_, password)| password.to_owned())
        }) {
            Some(password) if !password.is_empty() => text.replace(&password, "***"),
            _ => text,
        }
    }

    fn classify(&self, e: &SRCError) -> RegistryError {
        let detail = self.scrub(match &e.cause {
            Some(cause) => format!("{}: {cause}", e.error),
            None => e.error.clone(),
        });
        match http_status(e) {
            _ if e.retriable => RegistryError::Unavailable {
                url: self.shown.clone(),
                detail,
            },
            // Anything but "not found" and a refused login pauses and retries: a proxy's 400 or a
            // gateway's 405 is a misconfiguration or an outage, never the record's fault.
            // (409 and 422 are the registry's verdict on a schema we register: not transient.)
            Some(status) if !matches!(status, 401 | 403 | 404 | 409 | 422) => {
                RegistryError::Unavailable {
                    url: self.shown.clone(),
                    detail,
                }
            }
            Some(404) => RegistryError::NotFound { what: detail },
            Some(status @ (401 | 403)) => RegistryError::Unauthorized {
                url: self.shown.clone(),
                status,
            },
            _ => RegistryError::Invalid { detail },
        }
    }
}

/// The fully-qualified name of the message at an index path (`[0]` = first top-level message,
/// `[1, 0]` = first nested message of the second) in a file descriptor.
fn message_name_at(file: &prost_types::FileDescriptorProto, indexes: &[i32]) -> Option<String> {
    let (first, rest) = indexes.split_first()?;
    let mut message = file.message_type.get(usize::try_from(*first).ok()?)?;
    let mut name = match file.package() {
        "" => message.name().to_owned(),
        package => format!("{package}.{}", message.name()),
    };
    for index in rest {
        message = message.nested_type.get(usize::try_from(*index).ok()?)?;
        name = format!("{name}.{}", message.name());
    }
    Some(name)
}

/// The converter reports HTTP failures as "... failed with status 404 Not Found"; the status is
/// what tells a missing schema (give up on the message) from a sick registry (retry).
fn http_status(e: &SRCError) -> Option<u16> {
    let (_, rest) = e.error.split_once("failed with status ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_from_converter_errors() {
        let e = SRCError::new(
            "HTTP request to schema registry failed with status 404 Not Found",
            None,
            false,
        );
        assert_eq!(http_status(&e), Some(404));
        let e = SRCError::new("http call to schema registry failed", None, true);
        assert_eq!(http_status(&e), None);
    }

    #[test]
    fn names_messages_by_index_path() {
        use prost_types::{DescriptorProto, FileDescriptorProto};
        let message = |name: &str, nested: Vec<DescriptorProto>| DescriptorProto {
            name: Some(name.into()),
            nested_type: nested,
            ..Default::default()
        };
        let file = FileDescriptorProto {
            package: Some("bank.v1".into()),
            message_type: vec![
                message("Transaction", vec![]),
                message("Batch", vec![message("Entry", vec![])]),
            ],
            ..Default::default()
        };
        assert_eq!(
            message_name_at(&file, &[0]).as_deref(),
            Some("bank.v1.Transaction")
        );
        assert_eq!(
            message_name_at(&file, &[1, 0]).as_deref(),
            Some("bank.v1.Batch.Entry")
        );
        assert_eq!(message_name_at(&file, &[2]), None);
        assert_eq!(message_name_at(&file, &[0, 0]), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut config = RegistryConfig::new("http://registry:8081");
        config.basic_auth = Some(("key".into(), SecretString::from("hunter2")));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

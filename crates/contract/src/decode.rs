//! From framed bytes on a topic to a typed event.
//!
//! Every failure says which way to go: [`DecodeError::is_transient`] errors (the registry is
//! unreachable while an unseen schema id needs resolving) mean "pause and retry this message";
//! every other error means the bytes themselves are bad and the message belongs in a dead-letter
//! topic. Good data is never dead-lettered because a dependency was down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::event::Event;
use crate::registry::{Registry, RegistryError, SchemaId};
use crate::wire::{self, WireError};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("schema id {schema_id} is not known to the schema registry")]
    UnknownSchema { schema_id: SchemaId },
    #[error("value declares message type {found}, this topic carries {expected}")]
    WrongMessageType {
        expected: &'static str,
        found: String,
    },
    #[error("schema id {schema_id} cannot be used: {source}")]
    UnusableSchema {
        schema_id: SchemaId,
        source: RegistryError,
    },
    #[error("payload is not a valid {message}: {source}")]
    Payload {
        message: &'static str,
        source: prost::DecodeError,
    },
    #[error("cannot resolve schema id {schema_id} now: {source}")]
    RegistryUnavailable {
        schema_id: SchemaId,
        source: RegistryError,
    },
}

impl DecodeError {
    /// Retrying the same bytes later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }

    /// A short stable label for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Wire(_) => "not-framed",
            DecodeError::UnknownSchema { .. } => "unknown-schema",
            DecodeError::WrongMessageType { .. } => "wrong-message-type",
            DecodeError::UnusableSchema { .. } => "unusable-schema",
            DecodeError::Payload { .. } => "bad-payload",
            DecodeError::RegistryUnavailable { .. } => "registry-unavailable",
        }
    }
}

/// Message names already resolved for a schema id, by raw message-index bytes. A schema id
/// rarely has more than one or two index paths in use, so a short list beats a map.
type ResolvedNames = Vec<(Box<[u8]>, Arc<String>)>;

/// Decodes framed values into typed events. Each (schema id, message indexes) pair is resolved
/// through the registry once; after that decoding touches no lock but a shared read.
#[derive(Debug)]
pub struct Decoder {
    registry: Arc<Registry>,
    resolved: RwLock<HashMap<SchemaId, ResolvedNames>>,
}

impl Decoder {
    pub fn new(registry: Arc<Registry>) -> Self {
        Decoder {
            registry,
            resolved: RwLock::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Decodes `bytes` as an `E`, checking that the writer's schema declares that same message.
    pub async fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E, DecodeError> {
        let framed = wire::parse(bytes)?;
        let name = match self.cached_name(framed.schema_id, framed.message_indexes) {
            Some(name) => name,
            None => self.resolve(bytes, &framed).await?,
        };
        if name.as_str() != E::SCHEMA.full_name {
            return Err(DecodeError::WrongMessageType {
                expected: E::SCHEMA.full_name,
                found: name.to_string(),
            });
        }
        E::decode(framed.payload).map_err(|source| DecodeError::Payload {
            message: E::SCHEMA.full_name,
            source,
        })
    }

    fn cached_name(&self, schema_id: SchemaId, indexes: &[u8]) -> Option<Arc<String>> {
        let resolved = self.resolved.read().unwrap_or_else(|e| e.into_inner());
        resolved
            .get(&schema_id)?
            .iter()
            .find(|(known, _)| known.as_ref() == indexes)
            .map(|(_, name)| name.clone())
    }

    async fn resolve(
        &self,
        bytes: &[u8],
        framed: &wire::Framed<'_>,
    ) -> Result<Arc<String>, DecodeError> {
        let schema_id = framed.schema_id;
        let name = match self.registry.resolve_message_name(bytes).await {
            Ok(name) => name,
            // A 404 is only "this schema does not exist" if the registry itself answers there;
            // a wrong URL or path 404s for every id, and must pause, not dead-letter a topic.
            Err(RegistryError::NotFound { .. }) => {
                return Err(match self.registry.probe().await {
                    Ok(()) => DecodeError::UnknownSchema { schema_id },
                    Err(source) => DecodeError::RegistryUnavailable { schema_id, source },
                });
            }
            Err(
                e @ (RegistryError::Unavailable { .. }
                | RegistryError::Unauthorized { .. }
                | RegistryError::Misconfigured { .. }),
            ) => {
                return Err(DecodeError::RegistryUnavailable {
                    schema_id,
                    source: e,
                });
            }
            Err(e) => {
                return Err(DecodeError::UnusableSchema {
                    schema_id,
                    source: e,
                });
            }
        };
        let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        let entry = resolved.entry(schema_id).or_default();
        if !entry
            .iter()
            .any(|(k, _)| k.as_ref() == framed.message_indexes)
        {
            entry.push((framed.message_indexes.into(), name.clone()));
        }
        Ok(name)
    }
}

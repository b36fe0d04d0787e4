//! The Confluent wire format for protobuf values:
//!
//! ```text
//! byte 0      magic byte, always 0
//! bytes 1..5  schema id, 32-bit big-endian, as assigned by the registry
//! then        message indexes: the path of the message type inside its .proto file, as a
//!             zig-zag varint count followed by zig-zag varint indexes; the common path [0]
//!             (first message of the file) is written as the single byte 0
//! then        the protobuf-encoded message
//! ```
//!
//! Framing happens on every event, so it is done here without allocation beyond the output
//! buffer; which schema id to write is the registry's business (see [`crate::registry`]).

use prost::Message;
use prost::encoding::{decode_varint, encode_varint};

/// The first byte of every framed value.
pub const MAGIC_BYTE: u8 = 0;

/// A framed value split into its parts. Borrows from the original bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: u32,
    /// The raw message-index bytes (still varint-encoded), exactly as on the wire.
    pub message_indexes: &'a [u8],
    pub payload: &'a [u8],
}

/// Why bytes are not a framed protobuf value. Never retryable: the bytes will not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty value: a framed protobuf value has at least 6 bytes")]
    Empty,
    #[error("value of {len} bytes is too short for the 5-byte Confluent header")]
    TooShort { len: usize },
    #[error("magic byte is {found:#04x}, expected 0x00 (not Confluent-framed)")]
    BadMagic { found: u8 },
    #[error("message indexes after the schema id are malformed: {reason}")]
    BadIndexes { reason: &'static str },
}

/// Splits a framed value into schema id, message indexes and payload.
pub fn parse(bytes: &[u8]) -> Result<Framed<'_>, WireError> {
    match bytes {
        [] => Err(WireError::Empty),
        [first, ..] if *first != MAGIC_BYTE => Err(WireError::BadMagic { found: *first }),
        _ if bytes.len() < 6 => Err(WireError::TooShort { len: bytes.len() }),
        _ => {
            let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            let rest = &bytes[5..];
            let index_len = message_indexes_len(rest)?;
            Ok(Framed {
                schema_id,
                message_indexes: &rest[..index_len],
                payload: &rest[index_len..],
            })
        }
    }
}

/// Decodes the message-index bytes into the list of indexes (`[0]` for the first message).
pub fn decode_message_indexes(mut raw: &[u8]) -> Result<Vec<i32>, WireError> {
    let count = read_zigzag(&mut raw)?;
    if count == 0 {
        return Ok(vec![0]);
    }
    (0..count).map(|_| read_zigzag(&mut raw)).collect()
}

/// Appends `[magic][schema id][0]` and the encoded message to `out`: the framing of the first
/// message type of a schema file, which is what every event of this contract is.
pub fn frame_into(out: &mut Vec<u8>, schema_id: u32, message: &impl Message) {
    out.reserve(6 + message.encoded_len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    // A count of zero means "the single index 0", Confluent's shorthand for the first message.
    encode_varint(0, out);
    message
        .encode(out)
        .expect("a Vec grows, so encoding into it cannot run out of space");
}

/// Convenience for [`frame_into`] into a fresh buffer.
pub fn frame(schema_id: u32, message: &impl Message) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(&mut out, schema_id, message);
    out
}

fn message_indexes_len(rest: &[u8]) -> Result<usize, WireError> {
    let mut cursor = rest;
    let count = read_zigzag(&mut cursor)?;
    for _ in 0..count {
        read_zigzag(&mut cursor)?;
    }
    Ok(rest.len() - cursor.len())
}

fn read_zigzag(cursor: &mut &[u8]) -> Result<i32, WireError> {
    if cursor.is_empty() {
        return Err(WireError::BadIndexes {
            reason: "value ends inside the message indexes",
        });
    }
    let raw = decode_varint(cursor).map_err(|_| WireError::BadIndexes {
        reason: "invalid varint",
    })?;
    let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    i32::try_from(value)
        .ok()
        .filter(|v| *v >= 0 && *v < 1 << 16)
        .ok_or(WireError::BadIndexes {
            reason: "index out of range",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::Customer;

    fn customer() -> Customer {
        Customer {
            account_number: "ACC-1".into(),
            first_name: "Ada".into(),
            ..Default::default()
        }
    }

    #[test]
    fn frames_first_message_with_single_zero_index() {
        let bytes = frame(0x0102_0304, &customer());
        assert_eq!(&bytes[..6], &[0, 1, 2, 3, 4, 0]);
        assert_eq!(&bytes[6..], customer().encode_to_vec().as_slice());
    }

    #[test]
    fn parse_inverts_frame() {
        let bytes = frame(77, &customer());
        let framed = parse(&bytes).unwrap();
        assert_eq!(framed.schema_id, 77);
        assert_eq!(framed.message_indexes, &[0]);
        assert_eq!(decode_message_indexes(framed.message_indexes).unwrap(), [0]);
        assert_eq!(Customer::decode(framed.payload).unwrap(), customer());
    }

    #[test]
    fn parses_explicit_index_paths() {
        // count 2 (zigzag 4), indexes 1 (2) and 0 (0): the first nested message of message 1.
        let bytes = [0, 0, 0, 0, 9, 4, 2, 0, 0x0a, 0x00];
        let framed = parse(&bytes).unwrap();
        assert_eq!(framed.schema_id, 9);
        assert_eq!(
            decode_message_indexes(framed.message_indexes).unwrap(),
            [1, 0]
        );
        assert_eq!(framed.payload, &[0x0a, 0x00]);
    }

    #[test]
    fn rejects_what_is_not_framed() {
        assert_eq!(parse(&[]), Err(WireError::Empty));
        assert_eq!(
            parse(b"{\"json\":1}"),
            Err(WireError::BadMagic { found: b'{' })
        );
        assert_eq!(parse(&[0, 0, 0, 1]), Err(WireError::TooShort { len: 4 }));
        assert!(matches!(
            parse(&[0, 0, 0, 0, 1, 4, 2]),
            Err(WireError::BadIndexes { .. })
        ));
        assert!(matches!(
            parse(&[
                0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            Err(WireError::BadIndexes { .. })
        ));
    }
}

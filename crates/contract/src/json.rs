//! Events as JSON, following the proto3 JSON mapping with proto field names (what
//! `MessageToDict(preserving_proto_field_name=True)` gives in Python): 64-bit integers as strings,
//! enums by name, timestamps in RFC 3339. Default values are printed too, so the output is a
//! stable shape for scripts and tests.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;
use serde_json::{Value, json};

use crate::pb::{Customer, Transaction, TransactionKind};

pub fn transaction(tx: &Transaction) -> Value {
    let kind = TransactionKind::try_from(tx.kind)
        .map(|k| Value::String(k.as_str_name().to_owned()))
        .unwrap_or(Value::from(tx.kind));
    json!({
        "transaction_id": tx.transaction_id,
        "account_number": tx.account_number,
        "transaction_reference": tx.transaction_reference,
        "transaction_datetime": timestamp(tx.transaction_datetime.as_ref()),
        "kind": kind,
        "amount_cents": tx.amount_cents.to_string(),
        "currency": tx.currency,
        "branch_id": tx.branch_id,
        "description": tx.description,
    })
}

pub fn customer(c: &Customer) -> Value {
    let mut value = json!({
        "account_number": c.account_number,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "email": c.email,
        "created_at": timestamp(c.created_at.as_ref()),
        "branch_id": c.branch_id,
    });
    // Omitted when unset, as protobuf's JSON printer does for a message field: events of older
    // producers have none.
    if let (Some(at), Some(fields)) = (&c.updated_at, value.as_object_mut()) {
        fields.insert("updated_at".into(), timestamp(Some(at)));
    }
    value
}

/// RFC 3339 in UTC with `Z`, as many fractional digits as needed (0, 3, 6 or 9), like protobuf's
/// own JSON printer; `null` when unset.
pub fn timestamp(ts: Option<&Timestamp>) -> Value {
    ts.and_then(|ts| DateTime::<Utc>::from_timestamp(ts.seconds, ts.nanos.max(0) as u32))
        .map(|dt| Value::String(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_proto3_json_mapping() {
        let tx = Transaction {
            transaction_id: "id".into(),
            kind: TransactionKind::Withdrawal as i32,
            amount_cents: 9_007_199_254_740_993,
            transaction_datetime: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 120_000_000,
            }),
            ..Default::default()
        };
        let v = transaction(&tx);
        assert_eq!(v["kind"], "TRANSACTION_KIND_WITHDRAWAL");
        assert_eq!(v["amount_cents"], "9007199254740993");
        assert_eq!(v["transaction_datetime"], "2023-11-14T22:13:20.120Z");
        assert_eq!(v["description"], "");
        assert_eq!(customer(&Customer::default())["created_at"], Value::Null);
    }
}

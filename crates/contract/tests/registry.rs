//! The contract against a real schema registry (the native stack's Apicurio, or
//! `SCHEMA_REGISTRY_URL`): registration, framing, decoding errors, and schema evolution.

use std::sync::Arc;

use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::registry::RegistryError;
use bank_contract::{DecodeError, Decoder, Event, Registry, RegistryConfig, topics, wire};
use prost::Message;
use schema_registry_converter::async_impl::proto_raw::ProtoRawEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::prost_reflect::{DynamicMessage, Value};
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned())
}

fn registry() -> Registry {
    Registry::new(&RegistryConfig::new(registry_url())).expect("registry client")
}

fn fresh_topic(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::new_v4().simple())
}

fn sample_transaction() -> Transaction {
    Transaction {
        transaction_id: "0b6f2d0e-8a0c-4a53-9a43-9c1c1f1f0001".into(),
        account_number: "ACC-000042".into(),
        transaction_reference: "REF-1".into(),
        transaction_datetime: Some(prost_types::Timestamp {
            seconds: 1_763_800_000,
            nanos: 5_000,
        }),
        kind: TransactionKind::Withdrawal as i32,
        amount_cents: 1_234_567,
        currency: "EUR".into(),
        branch_id: 7,
        description: "rent".into(),
    }
}

#[tokio::test]
async fn registration_is_idempotent_and_framing_matches_the_converter() {
    let registry = registry();
    let topic = fresh_topic("framing");
    let id = registry.register::<Transaction>(&topic).await.unwrap();
    assert_eq!(registry.register::<Transaction>(&topic).await.unwrap(), id);

    let tx = sample_transaction();
    let ours = wire::frame(id, &tx);
    let converter = ProtoRawEncoder::new(SrSettings::new(registry_url()));
    let theirs = converter
        .encode_single_message(
            &tx.encode_to_vec(),
            SubjectNameStrategy::TopicNameStrategy(topic.clone(), false),
        )
        .await
        .unwrap();
    assert_eq!(
        ours, theirs,
        "our framing is byte-identical to schema_registry_converter's"
    );

    let decoder = Decoder::new(Arc::new(registry));
    assert_eq!(decoder.decode::<Transaction>(&ours).await.unwrap(), tx);
    // Second decode is served from cache; same answer.
    assert_eq!(decoder.decode::<Transaction>(&ours).await.unwrap(), tx);
}

#[tokio::test]
async fn decoding_errors_say_what_is_wrong() {
    let registry = Arc::new(registry());
    let topic = fresh_topic("errors");
    let id = registry.register::<Transaction>(&topic).await.unwrap();
    let decoder = Decoder::new(registry.clone());

    let unknown = wire::frame(2_000_000_000, &sample_transaction());
    let err = decoder.decode::<Transaction>(&unknown).await.unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnknownSchema {
                schema_id: 2_000_000_000
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());

    let framed = wire::frame(id, &sample_transaction());
    let err = decoder.decode::<Customer>(&framed).await.unwrap_err();
    assert!(
        matches!(&err, DecodeError::WrongMessageType { found, .. } if found == "bank.v1.Transaction"),
        "{err:?}"
    );

    let err = decoder
        .decode::<Transaction>(b"plain text")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not-framed");

    let mut truncated = framed.clone();
    truncated.truncate(framed.len() - 3);
    let err = decoder.decode::<Transaction>(&truncated).await.unwrap_err();
    assert_eq!(err.kind(), "bad-payload", "{err:?}");
}

#[tokio::test]
async fn an_unreachable_registry_is_transient_not_poison() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let registry =
        Registry::new(&RegistryConfig::new("http://127.0.0.1:9/apis/ccompat/v7")).unwrap();
    let err = registry.register::<Customer>("t").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err:?}");
    let decoder = Decoder::new(Arc::new(registry));
    let err = decoder
        .decode::<Transaction>(&wire::frame(1, &sample_transaction()))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// A URL that reaches a web server but not the registry API (Apicurio without its
/// `/apis/ccompat/v7` path) answers 404 for every id: that must pause, never dead-letter a topic
/// as "unknown schema", and the startup probe must name the URL.
#[tokio::test]
async fn a_wrong_registry_path_is_a_misconfiguration_not_unknown_schemas() {
    let base = registry_url();
    let origin = base.split("/apis/").next().unwrap_or(&base).to_owned();
    let wrong = Registry::new(&RegistryConfig::new(format!("{origin}/no/such/api"))).unwrap();
    let err = wrong.probe().await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Misconfigured { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/no/such/api"),
        "names the URL: {err}"
    );
    let decoder = Decoder::new(Arc::new(wrong));
    let err = decoder
        .decode::<Transaction>(&wire::frame(1, &sample_transaction()))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "a misconfiguration pauses: {err:?}");
    assert_ne!(err.kind(), "unknown-schema");

    // The right URL and an id it has never issued: that one is unknown.
    let right = registry();
    right.probe().await.expect("the real registry answers");
    let decoder = Decoder::new(Arc::new(right));
    let err = decoder
        .decode::<Transaction>(&wire::frame(1_999_999_999, &sample_transaction()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown-schema", "{err:?}");
}

/// v2 of transaction.proto: v1 plus one new field, the only kind of change the contract allows.
fn transaction_v2_text() -> String {
    let v1 = Transaction::SCHEMA.text;
    let end = v1.rfind('}').expect("closing brace of Transaction");
    format!(
        "{}  // Added in v2: the channel the money moved through (\"atm\", \"online\", ...).\n  string channel = 16;\n}}\n",
        &v1[..end]
    )
}

fn compile_v2() -> schema_registry_converter::prost_reflect::MessageDescriptor {
    let dir = std::env::temp_dir().join(format!("bank-v2-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("bank/v1")).unwrap();
    std::fs::write(dir.join("bank/v1/transaction.proto"), transaction_v2_text()).unwrap();
    let mut compiler = protox::Compiler::new([&dir]).unwrap();
    compiler.open_file("bank/v1/transaction.proto").unwrap();
    compiler
        .descriptor_pool()
        .get_message_by_name("bank.v1.Transaction")
        .expect("v2 Transaction")
}

#[tokio::test]
async fn schema_evolution_adding_a_field_is_backward_compatible() {
    let registry = Arc::new(registry());
    let topic = fresh_topic("evolution");
    let subject = topics::value_subject(&topic);

    // Make the rule explicit on this subject, whatever the registry's global default.
    let http = reqwest::Client::new();
    let response = http
        .put(format!("{}/config/{subject}", registry_url()))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"BACKWARD"}"#)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "set compatibility: {}",
        response.status()
    );

    let v1_id = registry.register::<Transaction>(&topic).await.unwrap();
    let v2_id = registry
        .register_schema_text(&subject, "bank.v1.Transaction", &transaction_v2_text())
        .await
        .expect("the registry accepts a v2 that adds a field");
    assert_ne!(v1_id, v2_id);

    // Retyping a field is what the rules forbid, and the registry must refuse it.
    let breaking = Transaction::SCHEMA
        .text
        .replace("int64 amount_cents = 6;", "string amount_cents = 6;");
    let err = registry
        .register_schema_text(&subject, "bank.v1.Transaction", &breaking)
        .await
        .expect_err("an incompatible change is refused");
    assert!(matches!(err, RegistryError::Rejected { .. }), "{err:?}");

    let v2 = compile_v2();
    let channel = v2.get_field_by_name("channel").unwrap();

    // v1 bytes read by v2 code: every field, and the new one at its default.
    let v1_tx = sample_transaction();
    let read_by_v2 = DynamicMessage::decode(v2.clone(), v1_tx.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        read_by_v2
            .get_field_by_name("amount_cents")
            .unwrap()
            .as_i64(),
        Some(v1_tx.amount_cents)
    );
    assert_eq!(
        read_by_v2
            .get_field_by_name("account_number")
            .unwrap()
            .as_str(),
        Some(v1_tx.account_number.as_str())
    );
    assert_eq!(read_by_v2.get_field(&channel).as_str(), Some(""));

    // v2 bytes read by v1 code: every v1 field, the new one skipped.
    let mut v2_tx = read_by_v2.clone();
    v2_tx.set_field(&channel, Value::String("atm".into()));
    let v2_payload = v2_tx.encode_to_vec();
    assert_eq!(Transaction::decode(v2_payload.as_slice()).unwrap(), v1_tx);

    // And through the wire format: a v2 writer's event decodes in our v1 consumer.
    let mut framed = vec![0];
    framed.extend_from_slice(&v2_id.to_be_bytes());
    framed.push(0);
    framed.extend_from_slice(&v2_payload);
    let decoder = Decoder::new(registry);
    assert_eq!(decoder.decode::<Transaction>(&framed).await.unwrap(), v1_tx);
}

//! Bytes from the wire, as the consumer sees them: the Confluent frame (magic byte, schema id,
//! message indexes), the protobuf payload, then the contract's validation. Nothing may panic, and
//! whatever validation accepts must be what the databases can store and frame back unchanged.
#![no_main]

use bank_contract::pb::{Customer, Transaction};
use bank_contract::{validate, wire};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn no_control_chars(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}

fuzz_target!(|data: &[u8]| {
    let Ok(framed) = wire::parse(data) else {
        return;
    };
    let _ = wire::decode_message_indexes(framed.message_indexes);
    if let Ok(tx) = Transaction::decode(framed.payload) {
        if let Ok(tx) = validate::canonical_transaction(tx) {
            assert!(tx.amount_cents > 0 && tx.amount_cents <= validate::MAX_AMOUNT_CENTS);
            assert!(!tx.description.contains('\0') && !tx.account_number.contains('\0'));
            assert!(no_control_chars(&tx.account_number));
            assert!(tx.description.len() <= validate::MAX_DESCRIPTION);
            assert_eq!(tx.transaction_id, tx.transaction_id.to_lowercase());
            let at = tx
                .transaction_datetime
                .expect("validated transactions have a time");
            assert!(
                (validate::MIN_TIMESTAMP_SECONDS..=validate::MAX_TIMESTAMP_SECONDS)
                    .contains(&at.seconds)
            );
            assert!((0..1_000_000_000).contains(&at.nanos));
            // A second pass changes nothing, and the framed bytes decode to the same event.
            assert_eq!(
                validate::canonical_transaction(tx.clone()).as_ref(),
                Ok(&tx)
            );
            let again = wire::frame(7, &tx);
            let reparsed = wire::parse(&again).expect("our own framing parses");
            assert_eq!(reparsed.schema_id, 7);
            assert_eq!(Transaction::decode(reparsed.payload).as_ref(), Ok(&tx));
        }
    }
    if let Ok(customer) = Customer::decode(framed.payload) {
        if validate::customer(&customer).is_ok() {
            assert!(!customer.email.contains('\0') && !customer.first_name.contains('\0'));
            assert!(customer.email.len() <= validate::MAX_EMAIL);
        }
    }
});

//! A CSV file as a bank exports it, through the producer's cleaner: header mapping, then every
//! row cleaned with both decimal styles and both date orders. Nothing may panic; a row the
//! cleaner accepts has a positive amount and an account number free of control characters, and
//! cleaning is a function of the row (the same row gives the same transaction, id included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use bank_csv::cleaning::{DecimalStyle, SlashDates, clean_text, parse_amount_cents, parse_date};
use bank_csv::rows::{ColumnNames, Columns, RowRules, clean_row};

fn names() -> ColumnNames {
    ColumnNames {
        account: "account_number".into(),
        amount: "amount".into(),
        date: "date".into(),
        description: "description".into(),
        kind: "type".into(),
        reference: "reference".into(),
        id: "transaction_id".into(),
        currency: "currency".into(),
        branch: "branch_id".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The single-field cleaners on the raw text, whatever it is.
    let cleaned = clean_text(text);
    assert_eq!(clean_text(&cleaned), cleaned, "cleaning is idempotent");
    for style in [DecimalStyle::Point, DecimalStyle::Comma] {
        let _ = parse_amount_cents(text, style);
    }
    for slash in [SlashDates::MonthFirst, SlashDates::DayFirst] {
        let _ = parse_date(text, slash);
    }
    // The text as a file: a fixed header the fuzzer can learn, or its own first line.
    for file in [
        format!("account_number,amount,date,description,type,currency\n{text}"),
        text.to_owned(),
    ] {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(file.as_bytes());
        let Ok(header) = reader.headers().cloned() else {
            continue;
        };
        let Ok(columns) = Columns::from_header(&header, &names()) else {
            continue;
        };
        for (line, record) in reader.records().enumerate() {
            let Ok(record) = record else {
                break;
            };
            for decimal in [DecimalStyle::Point, DecimalStyle::Comma] {
                let rules = RowRules {
                    decimal,
                    ..RowRules::standard()
                };
                if let Ok(tx) = clean_row(&record, line as u64 + 2, &columns, &rules) {
                    assert!(tx.amount_cents > 0, "{tx:?}");
                    assert!(!tx.account_number.is_empty());
                    assert!(!tx.account_number.chars().any(char::is_control), "{tx:?}");
                    let again = clean_row(&record, line as u64 + 2, &columns, &rules);
                    assert_eq!(again.as_ref(), Ok(&tx));
                }
            }
        }
    }
});

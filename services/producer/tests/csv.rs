//! `producer csv` against the real stack: a fixture with good rows and every kind of bad row.

mod support;

use std::collections::BTreeSet;

use bank_contract::json;
use support::{Event, destination, fresh_topics, read_back, run_producer};

const FIXTURE: &str = "\
transaction_reference,account_number,date,amount,description,kind
R1,ACC-1,2024-01-05,\"$1,234.50\",  Salary   January ,
R2,ACC-1,2024-01-06 10:00:00,-3.10,coffee\u{7}shop,
R3,ACC-2,01/07/2024,(12.00),Refund reversal,
R4,ACC-2,2024-01-08, 12.5 ,   ,deposit
R5,ACC-3,2024-01-09T08:30:00+01:00,7.25,rent,Withdrawal
R6,ACC-3,2024-01-09,1.005,too precise,
R7,,2024-01-09,5.00,no account,
R8,ACC-4,not a date,5.00,bad date,
R9,ACC-4,2024-01-09,abc,bad amount,
R10,ACC-4,2024-01-09,0.00,zero,
R11,ACC-4,2024-01-09,-5.00,negative deposit,deposit
R12,ACC-4,2024-01-09,5.00,bad kind,refund
R13,ACC-4,2024-01-09
R14,ACC-4,13/01/2024,5.00,ambiguous,
R15,ACC-4,2024-01-09,\"12,5\",comma,
";

const EXPECTED_REJECTS: &str = "\
line,reason,raw
7,\"amount \"\"1.005\"\" has 3 decimal places; at most 2 are allowed (no rounding)\",\"R6,ACC-3,2024-01-09,1.005,too precise,\"
8,account_number is empty,\"R7,,2024-01-09,5.00,no account,\"
9,\"date \"\"not a date\"\" is not in a known format\",\"R8,ACC-4,not a date,5.00,bad date,\"
10,\"amount \"\"abc\"\" is not a number\",\"R9,ACC-4,2024-01-09,abc,bad amount,\"
11,amount is zero; a transaction moves money,\"R10,ACC-4,2024-01-09,0.00,zero,\"
12,amount is negative but kind says deposit,\"R11,ACC-4,2024-01-09,-5.00,negative deposit,deposit\"
13,\"kind \"\"refund\"\" is not one of deposit/credit or withdrawal/debit\",\"R12,ACC-4,2024-01-09,5.00,bad kind,refund\"
14,\"row has 3 fields, the header has 6\",\"R13,ACC-4,2024-01-09\"
15,\"date \"\"13/01/2024\"\" is not in a known format (slash dates are read month/day/year; use --day-first for day/month/year)\",\"R14,ACC-4,13/01/2024,5.00,ambiguous,\"
16,\"amount \"\"12,5\"\" has a misplaced thousands separator (for 1.234,50-style amounts use --decimal-comma)\",\"R15,ACC-4,2024-01-09,\"\"12,5\"\",comma,\"
";

#[tokio::test]
async fn good_rows_are_sent_bad_rows_are_rejected_exactly() {
    let (tx_topic, customer_topic) = fresh_topics("csv");
    let dir = std::env::temp_dir().join(format!("bank-csv-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("statement.csv");
    let rejects = dir.join("rejects.csv");
    std::fs::write(&input, FIXTURE).unwrap();

    let mut args = vec!["csv".to_owned(), "-i".into(), input.display().to_string()];
    args.extend(destination(&tx_topic, &customer_topic));
    args.extend([
        "--rejects".into(),
        rejects.display().to_string(),
        "--silent".into(),
    ]);
    args.extend(["--chunk-size".into(), "2".into()]);
    let error = run_producer(args.clone())
        .await
        .expect_err("rejected rows make the run fail");
    assert_eq!(error.to_string(), "10 rows were rejected");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap(), EXPECTED_REJECTS);

    let events = read_back(&tx_topic, &customer_topic, 5 + 3).await;
    let mut customers = BTreeSet::new();
    let mut sent = BTreeSet::new();
    for received in &events {
        match &received.event {
            Event::Customer(c) => {
                assert_eq!(
                    (
                        c.first_name.as_str(),
                        c.last_name.as_str(),
                        c.email.as_str()
                    ),
                    ("", "", "")
                );
                customers.insert(c.account_number.clone());
            }
            Event::Transaction(tx) => {
                let v = json::transaction(tx);
                sent.insert(format!(
                    "{} {} {} {} {} {:?}",
                    v["transaction_reference"].as_str().unwrap(),
                    v["account_number"].as_str().unwrap(),
                    v["transaction_datetime"].as_str().unwrap(),
                    v["kind"].as_str().unwrap(),
                    v["amount_cents"].as_str().unwrap(),
                    v["description"].as_str().unwrap(),
                ));
            }
        }
    }
    assert_eq!(
        customers,
        ["ACC-1", "ACC-2", "ACC-3"].map(String::from).into()
    );
    let expected: BTreeSet<String> = [
        "R1 ACC-1 2024-01-05T00:00:00Z TRANSACTION_KIND_DEPOSIT 123450 \"Salary January\"",
        "R2 ACC-1 2024-01-06T10:00:00Z TRANSACTION_KIND_WITHDRAWAL 310 \"coffeeshop\"",
        "R3 ACC-2 2024-01-07T00:00:00Z TRANSACTION_KIND_WITHDRAWAL 1200 \"Refund reversal\"",
        "R4 ACC-2 2024-01-08T00:00:00Z TRANSACTION_KIND_DEPOSIT 1250 \"\"",
        "R5 ACC-3 2024-01-09T07:30:00Z TRANSACTION_KIND_WITHDRAWAL 725 \"rent\"",
    ]
    .map(String::from)
    .into();
    assert_eq!(sent, expected);

    // Re-running the file derives the same transaction ids.
    let ids = |events: &[support::Received]| -> BTreeSet<String> {
        events
            .iter()
            .filter_map(|r| match &r.event {
                Event::Transaction(tx) => Some(tx.transaction_id.clone()),
                _ => None,
            })
            .collect()
    };
    let (tx_again, customers_again) = fresh_topics("csv-again");
    let mut again = vec!["csv".to_owned(), "-i".into(), input.display().to_string()];
    again.extend(destination(&tx_again, &customers_again));
    again.extend([
        "--rejects".into(),
        rejects.display().to_string(),
        "--silent".into(),
    ]);
    run_producer(again).await.expect_err("same rejects");
    assert_eq!(
        ids(&read_back(&tx_again, &customers_again, 8).await),
        ids(&events)
    );
}

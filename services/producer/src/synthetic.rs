//! Synthetic bank traffic: a population of customers and an endless stream of plausible
//! transactions on their accounts. Plain Rust, no I/O: the same seed gives the same customers,
//! ids, amounts, times and order, byte for byte.

use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::time::timestamp;
use chrono::{DateTime, Utc};
use fake::Fake;
use fake::faker::internet::en::SafeEmail;
use fake::faker::name::en::{FirstName, LastName};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub customers: u32,
    pub branches: u32,
    pub seed: u64,
    /// Time of the first transaction; later ones follow at random gaps of 1 s to 2 min.
    pub start: DateTime<Utc>,
    pub currency: String,
    /// Pad each description to at least this many bytes (benchmarks of large records).
    pub description_bytes: usize,
}

const DEPOSIT_DESCRIPTIONS: &[&str] = &[
    "salary",
    "transfer in",
    "cash deposit",
    "refund",
    "interest",
];
const WITHDRAWAL_DESCRIPTIONS: &[&str] = &[
    "groceries",
    "rent",
    "atm withdrawal",
    "utilities",
    "restaurant",
    "online purchase",
    "transfer out",
];

pub struct Generator {
    rng: ChaCha8Rng,
    customers: Vec<Customer>,
    currency: String,
    description_bytes: usize,
    next_sequence: u64,
    clock: DateTime<Utc>,
}

impl Generator {
    pub fn new(config: &GeneratorConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let branches = config.branches.max(1);
        let customers = (0..config.customers)
            .map(|i| {
                let first_name: String = FirstName().fake_with_rng(&mut rng);
                let last_name: String = LastName().fake_with_rng(&mut rng);
                let email: String = SafeEmail().fake_with_rng(&mut rng);
                let opened_days_ago = rng.random_range(30..3650);
                let created_at = Some(timestamp(
                    config.start - chrono::Duration::days(opened_days_ago),
                ));
                Customer {
                    account_number: account_number(i),
                    first_name,
                    last_name,
                    email,
                    updated_at: created_at,
                    created_at,
                    branch_id: i % branches + 1,
                }
            })
            .collect();
        Generator {
            rng,
            customers,
            currency: config.currency.clone(),
            description_bytes: config.description_bytes,
            next_sequence: 1,
            clock: config.start,
        }
    }

    /// Every customer, each with the account its transactions will use.
    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    /// The next transaction on a random account. Deposits and withdrawals come in a 55/45 mix;
    /// amounts are skewed towards small values like real card and cash traffic.
    pub fn next_transaction(&mut self) -> Transaction {
        let customer = &self.customers[self.rng.random_range(0..self.customers.len())];
        let deposit = self.rng.random_bool(0.55);
        let (kind, max_cents, descriptions) = if deposit {
            (TransactionKind::Deposit, 500_000, DEPOSIT_DESCRIPTIONS)
        } else {
            (
                TransactionKind::Withdrawal,
                200_000,
                WITHDRAWAL_DESCRIPTIONS,
            )
        };
        // The square of a uniform variable: most amounts small, a few large, all >= 1.00.
        let u: f64 = self.rng.random();
        let amount_cents = 100 + (u * u * (max_cents - 100) as f64) as i64;
        let description = descriptions[self.rng.random_range(0..descriptions.len())];
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        self.clock += chrono::Duration::seconds(self.rng.random_range(1..120));
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        Transaction {
            transaction_id: id.to_string(),
            account_number: customer.account_number.clone(),
            transaction_reference: format!("TXN-{sequence:010}"),
            transaction_datetime: Some(timestamp(self.clock)),
            kind: kind as i32,
            amount_cents,
            currency: self.currency.clone(),
            branch_id: customer.branch_id,
            description: padded(description, self.description_bytes),
        }
    }
}

/// `text`, then ` .` repeated up to `bytes` (ASCII, so any cut is a character boundary).
fn padded(text: &str, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes.max(text.len()));
    out.push_str(text);
    while out.len() < bytes {
        out.push_str(if out.len().is_multiple_of(2) {
            " "
        } else {
            "."
        });
    }
    out
}

/// Account numbers are stable across runs: the n-th customer is always `ACC-<n+1, 6 digits>`.
pub fn account_number(index: u32) -> String {
    format!("ACC-{:06}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn config(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            description_bytes: 0,
            customers: 20,
            branches: 3,
            seed,
            start: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .into(),
            currency: "USD".into(),
        }
    }

    fn encoded_run(seed: u64) -> Vec<u8> {
        let mut generator = Generator::new(&config(seed));
        let mut bytes: Vec<u8> = generator
            .customers()
            .iter()
            .flat_map(|c| c.encode_to_vec())
            .collect();
        for _ in 0..500 {
            bytes.extend(generator.next_transaction().encode_to_vec());
        }
        bytes
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(encoded_run(7), encoded_run(7));
        assert_ne!(encoded_run(7), encoded_run(8));
    }

    #[test]
    fn transactions_are_valid_and_spread_over_branches() {
        let mut generator = Generator::new(&config(1));
        let customers = generator.customers().to_vec();
        assert_eq!(customers.len(), 20);
        assert!(
            customers
                .iter()
                .all(|c| !c.first_name.is_empty() && c.email.contains('@'))
        );
        let branches: std::collections::BTreeSet<_> =
            customers.iter().map(|c| c.branch_id).collect();
        assert_eq!(branches, [1, 2, 3].into());
        let mut last_time = 0;
        let mut kinds = [0; 3];
        for _ in 0..2000 {
            let tx = generator.next_transaction();
            let owner = customers
                .iter()
                .find(|c| c.account_number == tx.account_number)
                .unwrap();
            assert_eq!(tx.branch_id, owner.branch_id);
            assert!(tx.amount_cents >= 100 && tx.amount_cents <= 500_000);
            assert!(uuid::Uuid::parse_str(&tx.transaction_id).is_ok());
            let at = tx.transaction_datetime.unwrap().seconds;
            assert!(at > last_time, "time moves forward");
            last_time = at;
            kinds[tx.kind as usize] += 1;
        }
        assert_eq!(kinds[0], 0, "never UNSPECIFIED");
        assert!(
            kinds[1] > 900 && kinds[2] > 700,
            "a mix of both kinds: {kinds:?}"
        );
    }
}

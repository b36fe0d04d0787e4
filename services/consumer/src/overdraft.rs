//! The overdraft-limit rule: an account is in breach while its balance is at or below the limit.
//! Crossing downwards raises one alert, crossing back above raises one recovery; staying on one
//! side raises nothing. Plain Rust, no I/O.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    Breached,
    Recovered,
}

#[derive(Debug, Clone)]
pub struct LimitWatcher {
    limit_cents: i64,
    balances: HashMap<String, i64>,
    breached: BTreeMap<String, i64>,
}

impl LimitWatcher {
    /// `limit_cents`: e.g. `-500_000` for a 5,000.00 overdraft limit.
    pub fn new(limit_cents: i64) -> Self {
        LimitWatcher {
            limit_cents,
            balances: HashMap::new(),
            breached: BTreeMap::new(),
        }
    }

    pub fn limit_cents(&self) -> i64 {
        self.limit_cents
    }

    /// Applies a signed amount to `account`; returns the crossing it caused, with the new balance.
    pub fn apply(&mut self, account: &str, signed_cents: i64) -> Option<(Crossing, i64)> {
        // An account not seen before has no position relative to the limit yet: its first
        // transaction crosses if it lands at or below it (matters for positive limits).
        let before = self.balances.get(account).copied();
        // Checked: a transaction that would take the balance outside 64 bits is refused by the
        // ledger (dead-lettered as balance-overflow), so it moves nothing here either.
        let Some(after) = before.unwrap_or(0).checked_add(signed_cents) else {
            tracing::warn!(
                account,
                signed_cents,
                "skipping a transaction that would overflow the balance"
            );
            return None;
        };
        self.balances.insert(account.to_owned(), after);
        let was_in = before.is_some_and(|b| b <= self.limit_cents);
        let is_in = after <= self.limit_cents;
        if is_in {
            self.breached.insert(account.to_owned(), after);
        } else {
            self.breached.remove(account);
        }
        match (was_in, is_in) {
            (false, true) => Some((Crossing::Breached, after)),
            (true, false) => Some((Crossing::Recovered, after)),
            _ => None,
        }
    }

    /// Accounts currently at or below the limit, with their balances.
    pub fn breaches(&self) -> &BTreeMap<String, i64> {
        &self.breached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_transaction_moves_nothing() {
        let mut watcher = LimitWatcher::new(0);
        assert_eq!(watcher.apply("A", i64::MAX - 1), None);
        assert_eq!(
            watcher.apply("A", 2),
            None,
            "refused, not wrapped to a breach"
        );
        assert!(watcher.breaches().is_empty());
        assert_eq!(
            watcher.apply("A", -i64::MAX),
            Some((Crossing::Breached, -1))
        );
    }

    #[test]
    fn down_stay_recover_down_again() {
        let mut w = LimitWatcher::new(-5_000);
        assert_eq!(w.apply("A", -4_000), None, "above the limit");
        assert_eq!(
            w.apply("A", -1_000),
            Some((Crossing::Breached, -5_000)),
            "at the limit is a breach"
        );
        assert_eq!(w.apply("A", -10), None, "staying in breach: no repeat");
        assert_eq!(w.breaches().get("A"), Some(&-5_010));
        assert_eq!(w.apply("A", 6_000), Some((Crossing::Recovered, 990)));
        assert!(w.breaches().is_empty());
        assert_eq!(w.apply("A", 500), None);
        assert_eq!(w.apply("A", -7_000), Some((Crossing::Breached, -5_510)));
        assert_eq!(w.apply("B", 100), None, "accounts are independent");
    }

    #[test]
    fn a_positive_limit_works_too() {
        let mut w = LimitWatcher::new(1_000);
        assert_eq!(
            w.apply("A", 500),
            Some((Crossing::Breached, 500)),
            "starting at 0 is already at or below"
        );
        assert_eq!(w.apply("A", 600), Some((Crossing::Recovered, 1_100)));
    }
}

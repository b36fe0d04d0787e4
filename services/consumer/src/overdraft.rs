//! The overdraft-limit rule: an account is in breach while its balance is at or below the limit.
//! Crossing downwards raises one alert, crossing back above raises one recovery; staying on one
//! side raises nothing. Plain Rust, no I/O.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    Breached,
    Recovered,
}

/// Applies a signed amount to an account's balance (`None`: not seen before); returns the new
/// balance and the crossing it caused, or `None` if the balance would leave 64 bits (the ledger
/// refuses such a transaction as balance-overflow, so it moves nothing here either).
pub fn step(
    limit_cents: i64,
    before: Option<i64>,
    signed_cents: i64,
) -> Option<(i64, Option<Crossing>)> {
    let after = before.unwrap_or(0).checked_add(signed_cents)?;
    // An account not seen before has no position relative to the limit yet: its first
    // transaction crosses if it lands at or below it (matters for positive limits).
    let was_in = before.is_some_and(|b| b <= limit_cents);
    let is_in = after <= limit_cents;
    let crossing = match (was_in, is_in) {
        (false, true) => Some(Crossing::Breached),
        (true, false) => Some(Crossing::Recovered),
        _ => None,
    };
    Some((after, crossing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Balances of several accounts, stepped one transaction at a time.
    struct Accounts {
        limit: i64,
        balances: HashMap<&'static str, i64>,
    }

    impl Accounts {
        fn new(limit: i64) -> Self {
            Accounts {
                limit,
                balances: HashMap::new(),
            }
        }

        fn apply(&mut self, account: &'static str, signed: i64) -> Option<(Crossing, i64)> {
            let before = self.balances.get(account).copied();
            let (after, crossing) = step(self.limit, before, signed)?;
            self.balances.insert(account, after);
            crossing.map(|c| (c, after))
        }
    }

    #[test]
    fn an_overflowing_transaction_moves_nothing() {
        assert_eq!(
            step(0, Some(i64::MAX - 1), 2),
            None,
            "refused, not wrapped to a breach"
        );
        assert_eq!(step(0, Some(i64::MIN), -1), None);
        let mut w = Accounts::new(0);
        assert_eq!(w.apply("A", i64::MAX - 1), None);
        assert_eq!(w.apply("A", 2), None);
        assert_eq!(w.balances["A"], i64::MAX - 1);
        assert_eq!(w.apply("A", -i64::MAX), Some((Crossing::Breached, -1)));
    }

    #[test]
    fn down_stay_recover_down_again() {
        let mut w = Accounts::new(-5_000);
        assert_eq!(w.apply("A", -4_000), None, "above the limit");
        assert_eq!(
            w.apply("A", -1_000),
            Some((Crossing::Breached, -5_000)),
            "at the limit is a breach"
        );
        assert_eq!(w.apply("A", -10), None, "staying in breach: no repeat");
        assert_eq!(w.balances["A"], -5_010);
        assert_eq!(w.apply("A", 6_000), Some((Crossing::Recovered, 990)));
        assert_eq!(w.apply("A", 500), None);
        assert_eq!(w.apply("A", -7_000), Some((Crossing::Breached, -5_510)));
        assert_eq!(w.apply("B", 100), None, "accounts are independent");
    }

    #[test]
    fn a_positive_limit_works_too() {
        let mut w = Accounts::new(1_000);
        assert_eq!(
            w.apply("A", 500),
            Some((Crossing::Breached, 500)),
            "starting at 0 is already at or below"
        );
        assert_eq!(w.apply("A", 600), Some((Crossing::Recovered, 1_100)));
    }
}

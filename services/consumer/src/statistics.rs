//! Running summary statistics of amounts: count, mean and population standard deviation.
//!
//! Two accumulators side by side: exact integer sums (count and sum of cents in `i128`, so the
//! mean is exact however long the stream) and Welford's online algorithm for the variance, which
//! stays accurate where the naive `sum(x²)/n - mean²` cancels catastrophically. The standard
//! deviation is the population one (divide by n): the summary describes every transaction the
//! system has seen, not a sample of them.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningStats {
    count: u64,
    sum_cents: i128,
    /// Welford's running mean and sum of squared deviations, in cents.
    mean: f64,
    m2: f64,
}

impl RunningStats {
    pub fn push(&mut self, cents: i64) {
        self.count += 1;
        self.sum_cents += i128::from(cents);
        let x = cents as f64;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in cents, from the exact sum.
    pub fn mean_cents(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_cents as f64 / self.count as f64
        }
    }

    /// The statistics of two disjoint sets of values together (Chan, Golub and LeVeque's
    /// pairwise update), so per-partition states combine into one summary.
    pub fn merge(&self, other: &RunningStats) -> RunningStats {
        if other.count == 0 {
            return *self;
        }
        if self.count == 0 {
            return *other;
        }
        let count = self.count + other.count;
        let (a, b, n) = (self.count as f64, other.count as f64, count as f64);
        let delta = other.mean - self.mean;
        RunningStats {
            count,
            sum_cents: self.sum_cents + other.sum_cents,
            mean: self.mean + delta * b / n,
            m2: self.m2 + other.m2 + delta * delta * a * b / n,
        }
    }

    /// The state as stored in a checkpoint: JSON, the exact sum as a decimal string (it may
    /// exceed what JSON readers take as a number), the floating accumulators both readable and
    /// as their exact bits, so a restored state continues bit for bit where it stopped (and so
    /// every instance of a group computes the same figures).
    pub fn encode(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "sum_cents": self.sum_cents.to_string(),
            "mean": self.mean,
            "m2": self.m2,
            "mean_bits": format!("{:016x}", self.mean.to_bits()),
            "m2_bits": format!("{:016x}", self.m2.to_bits()),
        })
    }

    pub fn decode(value: &serde_json::Value) -> anyhow::Result<RunningStats> {
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("missing {name:?}"))
        };
        let float = |name: &str| -> anyhow::Result<f64> {
            if let Some(bits) = value.get(format!("{name}_bits")).and_then(|b| b.as_str()) {
                return Ok(f64::from_bits(u64::from_str_radix(bits, 16)?));
            }
            field(name)?
                .as_f64()
                .ok_or_else(|| anyhow::anyhow!("{name:?} is not a number"))
        };
        Ok(RunningStats {
            count: field("count")?
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("\"count\" is not a count"))?,
            sum_cents: field("sum_cents")?
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("\"sum_cents\" is not a string"))?
                .parse()?,
            mean: float("mean")?,
            m2: float("m2")?,
        })
    }

    /// Population standard deviation in cents.
    pub fn stddev_cents(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }
}

/// Cents as currency units with two decimals: `123456.0` -> `"1234.56"`.
pub fn format_units(cents: f64) -> String {
    format!("{:.2}", cents / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook two-pass computation, in exact-ish f64 over small data.
    fn two_pass(values: &[i64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn matches_two_pass_on_random_data() {
        let mut seed = 42;
        for size in [1usize, 2, 10, 1_000, 100_000] {
            let values: Vec<i64> = (0..size)
                .map(|_| (lcg(&mut seed) % 500_000) as i64 + 1)
                .collect();
            let mut stats = RunningStats::default();
            values.iter().for_each(|v| stats.push(*v));
            let (mean, sd) = two_pass(&values);
            assert_eq!(stats.count(), size as u64);
            assert!(
                (stats.mean_cents() - mean).abs() < 1e-6 * mean.abs().max(1.0),
                "mean {size}"
            );
            assert!(
                (stats.stddev_cents() - sd).abs() < 1e-6 * sd.max(1.0),
                "sd {size}: {} vs {sd}",
                stats.stddev_cents()
            );
        }
    }

    #[test]
    fn stays_accurate_with_a_large_offset_and_many_values() {
        // Values near 10^12 cents with a spread of a few cents: the naive one-pass formula loses
        // every significant digit here; Welford must not.
        let mut stats = RunningStats::default();
        let base = 1_000_000_000_000i64;
        let n = 2_000_000;
        for i in 0..n {
            stats.push(base + (i % 3) as i64); // 0, 1, 2 repeating: sd = sqrt(2/3)
        }
        assert_eq!(stats.count(), n as u64);
        assert!((stats.mean_cents() - (base as f64 + 1.0)).abs() < 0.01);
        assert!(
            (stats.stddev_cents() - (2.0f64 / 3.0).sqrt()).abs() < 1e-3,
            "{}",
            stats.stddev_cents()
        );
    }

    #[test]
    fn merged_parts_equal_the_whole() {
        let mut seed = 7;
        let values: Vec<i64> = (0..10_000)
            .map(|_| (lcg(&mut seed) % 900_000) as i64 + 1)
            .collect();
        let mut whole = RunningStats::default();
        values.iter().for_each(|v| whole.push(*v));
        let mut merged = RunningStats::default();
        for part in values.chunks(1_234) {
            let mut stats = RunningStats::default();
            part.iter().for_each(|v| stats.push(*v));
            merged = merged.merge(&stats);
        }
        assert_eq!(merged.count(), whole.count());
        assert_eq!(merged.sum_cents, whole.sum_cents);
        assert!((merged.stddev_cents() - whole.stddev_cents()).abs() < 1e-6 * whole.stddev_cents());
        assert_eq!(RunningStats::default().merge(&whole), whole);
    }

    #[test]
    fn a_checkpoint_round_trips() {
        let mut stats = RunningStats::default();
        for cents in [1, 99_999_999_999_999, 42] {
            stats.push(cents);
        }
        let stored = serde_json::to_string(&stats.encode()).unwrap();
        let back = RunningStats::decode(&serde_json::from_str(&stored).unwrap()).unwrap();
        assert_eq!(back, stats, "bit for bit");
        assert_eq!(back.count(), 3);
        assert_eq!(back.sum_cents, stats.sum_cents);
        assert_eq!(
            format_units(back.stddev_cents()),
            format_units(stats.stddev_cents())
        );
        assert!(RunningStats::decode(&serde_json::json!({"count": 1})).is_err());
    }

    #[test]
    fn known_small_case() {
        let mut stats = RunningStats::default();
        for cents in [200, 400, 400, 400, 500, 500, 700, 900] {
            stats.push(cents);
        }
        assert_eq!(format_units(stats.mean_cents()), "5.00");
        assert_eq!(format_units(stats.stddev_cents()), "2.00");
        assert_eq!(RunningStats::default().stddev_cents(), 0.0);
    }
}

//! How fast events go out: as fast as possible, at a fixed rate, or with a pause between events
//! jittered like the original tutorial's generators (uniform between 50% and 150% of the pause).

use std::time::{Duration, Instant};

use bank_plumbing::shutdown::Stop;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Unlimited,
    /// Events per second, spread evenly.
    Rate(f64),
    /// A pause between events, jittered.
    Interval(Duration),
}

pub struct Pacer {
    pace: Pace,
    next_at: Instant,
    jitter: ChaCha8Rng,
}

impl Pacer {
    pub fn new(pace: Pace, seed: u64) -> Self {
        Pacer {
            pace,
            next_at: Instant::now(),
            jitter: ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Blocks until the next event is due; returns false when a stop was requested meanwhile.
    pub fn wait(&mut self, stop: &Stop) -> bool {
        let delay = match self.pace {
            Pace::Unlimited => return !stop.is_requested(),
            Pace::Rate(per_second) => {
                self.next_at += Duration::from_secs_f64(1.0 / per_second);
                self.next_at.saturating_duration_since(Instant::now())
            }
            Pace::Interval(pause) => pause.mul_f64(self.jitter.random_range(0.5..1.5)),
        };
        if delay.is_zero() {
            return !stop.is_requested();
        }
        !stop.wait_timeout(delay)
    }
}

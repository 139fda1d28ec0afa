//! The time the store lives by: the system's, or one a test can move.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
///
/// Expiry, day keys and `send_after` all read time from here and never from the system
/// directly, so tests can jump a month ahead without waiting.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that only moves when told to.
    Manual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    /// A manual clock that reads `start` until moved.
    pub fn manual(start: Timestamp) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Moves a manual clock by `by`; a system clock cannot be moved and ignores this.
    pub fn advance(&self, by: SignedDuration) {
        if let Clock::Manual(t) = self {
            let mut t = t.lock().unwrap_or_else(PoisonError::into_inner);
            *t = t.saturating_add(by).unwrap_or(*t);
        }
    }
}

/// Seconds in a UTC day.
pub const DAY_SECONDS: i64 = 86_400;

/// The UTC day number (days since 1970-01-01) that `t` falls in.
pub fn utc_day(t: Timestamp) -> i64 {
    t.as_second().div_euclid(DAY_SECONDS)
}

/// The first instant of UTC day `day`.
pub fn day_start(day: i64) -> Timestamp {
    Timestamp::from_second(day.saturating_mul(DAY_SECONDS)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Timestamp::from_second(1_700_000_000).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_hours(24));
        assert_eq!(clock.now().as_second(), 1_700_000_000 + DAY_SECONDS);
    }

    #[test]
    fn days_split_at_utc_midnight() {
        let t = Timestamp::from_second(3 * DAY_SECONDS - 1).unwrap();
        assert_eq!(utc_day(t), 2);
        assert_eq!(utc_day(day_start(3)), 3);
        assert_eq!(utc_day(Timestamp::from_second(-1).unwrap()), -1);
    }
}

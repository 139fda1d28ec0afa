//! Report periods: calendar months, quarters and years (UTC), and when each is released.
//!
//! A month is released `reports.settle_days` days after it ends; a quarter or a year once
//! its last month is. Reports show released periods only, never the live month, and what a
//! released month counts never changes afterwards: answers and opt-outs that come later for
//! it count in the month in which they come ([`counting_month`]).

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::ledger::month_of;

/// A report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// One calendar month: `2026-11`.
    Month {
        /// The year.
        year: i32,
        /// 1 to 12.
        month: u8,
    },
    /// One calendar quarter: `2026-Q4`.
    Quarter {
        /// The year.
        year: i32,
        /// 1 to 4.
        quarter: u8,
    },
    /// One calendar year: `2026`.
    Year {
        /// The year.
        year: i32,
    },
}

/// A period that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("period must be a month (2026-11), a quarter (2026-Q4) or a year (2026)")]
pub struct PeriodError;

/// The month index of `YYYY-MM` (year * 12 + month - 1), if it is one.
pub fn month_index(month: &str) -> Option<i32> {
    let (year, number) = month.split_once('-')?;
    if year.len() != 4 || number.len() != 2 {
        return None;
    }
    let (year, number) = (year.parse::<i32>().ok()?, number.parse::<i32>().ok()?);
    (1..=12).contains(&number).then_some(year * 12 + number - 1)
}

/// `YYYY-MM` of a month index.
pub fn month_at(index: i32) -> String {
    format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

impl Period {
    /// Reads `2026-11`, `2026-Q4` or `2026`.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let text = text.trim();
        if let Some(index) = month_index(text) {
            let month = u8::try_from(index.rem_euclid(12) + 1).map_err(|_| PeriodError)?;
            return Ok(Period::Month { year: index.div_euclid(12), month });
        }
        if let Some((year, quarter)) = text.split_once("-Q") {
            let year = year.parse::<i32>().map_err(|_| PeriodError)?;
            let quarter = quarter.parse::<u8>().map_err(|_| PeriodError)?;
            if year.to_string().len() == 4 && (1..=4).contains(&quarter) {
                return Ok(Period::Quarter { year, quarter });
            }
            return Err(PeriodError);
        }
        match text.parse::<i32>() {
            Ok(year) if (1000..=9999).contains(&year) => Ok(Period::Year { year }),
            _ => Err(PeriodError),
        }
    }

    /// The month that holds `month` (`YYYY-MM`).
    pub fn month(month: &str) -> Option<Period> {
        Period::parse(month).ok().filter(|p| matches!(p, Period::Month { .. }))
    }

    /// The quarter of a month period, the year of a quarter; `None` for a year.
    pub fn parent(self) -> Option<Period> {
        match self {
            Period::Month { year, month } => Some(Period::Quarter { year, quarter: (month - 1) / 3 + 1 }),
            Period::Quarter { year, .. } => Some(Period::Year { year }),
            Period::Year { .. } => None,
        }
    }

    /// The month indexes it spans, first to last.
    fn span(self) -> (i32, i32) {
        match self {
            Period::Month { year, month } => {
                let index = year * 12 + i32::from(month) - 1;
                (index, index)
            }
            Period::Quarter { year, quarter } => {
                let first = year * 12 + 3 * (i32::from(quarter) - 1);
                (first, first + 2)
            }
            Period::Year { year } => (year * 12, year * 12 + 11),
        }
    }

    /// Its months (`YYYY-MM`), oldest first.
    pub fn months(self) -> Vec<String> {
        let (first, last) = self.span();
        (first..=last).map(month_at).collect()
    }

    /// Whether it is released at `now`: its last month ended `settle_days` days ago or more.
    pub fn released(self, now: Timestamp, settle_days: u32) -> bool {
        self.span().1 < settled_index(now, settle_days)
    }

    /// `month`, `quarter` or `year`.
    pub fn kind(self) -> &'static str {
        match self {
            Period::Month { .. } => "month",
            Period::Quarter { .. } => "quarter",
            Period::Year { .. } => "year",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            Period::Year { year } => write!(f, "{year:04}"),
        }
    }
}

/// The index of the first month not yet released at `now`.
fn settled_index(now: Timestamp, settle_days: u32) -> i32 {
    let settled = now.checked_sub(SignedDuration::from_hours(24 * i64::from(settle_days))).unwrap_or(now);
    month_index(&month_of(settled)).unwrap_or(i32::MIN)
}

/// Whether `month` (`YYYY-MM`) is released at `now`; a month that cannot be read is not.
pub fn month_released(month: &str, now: Timestamp, settle_days: u32) -> bool {
    month_index(month).is_some_and(|index| index < settled_index(now, settle_days))
}

/// The latest released month at `now`.
pub fn latest_released_month(now: Timestamp, settle_days: u32) -> String {
    month_at(settled_index(now, settle_days) - 1)
}

/// The month a response or an opt-out for an invitation of `month` counts in at `now`: its
/// own, unless that is released already, then the month it comes in.
pub fn counting_month(month: &str, now: Timestamp, settle_days: u32) -> String {
    if month_released(month, now, settle_days) { month_of(now) } else { month.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn periods_read_and_write_the_same() {
        for text in ["2026-11", "2026-01", "2026-Q4", "2026-Q1", "2026"] {
            assert_eq!(Period::parse(text).unwrap().to_string(), text);
        }
        for bad in ["2026-13", "2026-00", "2026-Q5", "2026-Q0", "26", "2026-1", "x", "", "2026-Qx"] {
            assert_eq!(Period::parse(bad), Err(PeriodError), "{bad}");
        }
    }

    #[test]
    fn periods_span_their_months_and_nest() {
        assert_eq!(Period::parse("2026-Q4").unwrap().months(), ["2026-10", "2026-11", "2026-12"]);
        assert_eq!(Period::parse("2025").unwrap().months().len(), 12);
        assert_eq!(Period::parse("2026-11").unwrap().parent(), Period::parse("2026-Q4").ok());
        assert_eq!(Period::parse("2026-Q4").unwrap().parent(), Period::parse("2026").ok());
        assert_eq!(Period::parse("2026").unwrap().parent(), None);
    }

    #[test]
    fn a_month_is_released_settle_days_after_it_ends() {
        let november = Period::parse("2026-11").unwrap();
        assert!(!november.released(at("2026-11-30T23:59:59Z"), 7));
        assert!(!november.released(at("2026-12-07T23:59:59Z"), 7));
        assert!(november.released(at("2026-12-08T00:00:00Z"), 7));
        assert!(november.released(at("2026-12-01T00:00:00Z"), 0));
        // A quarter and a year wait for their last month.
        let q4 = Period::parse("2026-Q4").unwrap();
        assert!(!q4.released(at("2026-12-20T00:00:00Z"), 7));
        assert!(q4.released(at("2027-01-08T00:00:00Z"), 7));
        assert!(!Period::parse("2026").unwrap().released(at("2026-12-31T00:00:00Z"), 0));
        assert_eq!(latest_released_month(at("2026-12-03T00:00:00Z"), 7), "2026-10");
        assert_eq!(latest_released_month(at("2026-12-08T00:00:00Z"), 7), "2026-11");
        assert_eq!(latest_released_month(at("2027-01-01T00:00:00Z"), 0), "2026-12");
    }

    #[test]
    fn late_counts_go_to_the_month_they_come_in() {
        let now = at("2026-12-20T10:00:00Z");
        assert_eq!(counting_month("2026-12", now, 7), "2026-12");
        assert_eq!(counting_month("2026-11", now, 7), "2026-12", "November is released");
        assert_eq!(counting_month("2026-11", at("2026-12-03T00:00:00Z"), 7), "2026-11", "not yet");
        assert!(!month_released("junk", now, 7));
    }
}

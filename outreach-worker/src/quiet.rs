//! Quiet hours: messages go out only inside a daily window of the patient's local time
//! (09:00 to 20:00 by default), so that nobody is woken by a survey invitation.

use jiff::{Timestamp, ToSpan, civil::Time, tz::TimeZone};

use crate::config::Window;

impl Window {
    /// Whether `local` falls inside the window. A window whose end comes before its start
    /// runs over midnight.
    pub fn contains(&self, local: Time) -> bool {
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// `None` when `now` is inside the window in `tz`; otherwise the moment the window next
    /// opens there. On a day whose opening time does not exist (a daylight-saving gap) the
    /// opening moves forward by the length of the gap.
    pub fn next_opening(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = now.to_zoned_datetime(tz.clone());
        if self.contains(local.time()) {
            return None;
        }
        let mut date = local.date();
        // Today's opening if it is still ahead, else tomorrow's (two days cover any gap).
        for _ in 0..3 {
            let opening = tz.to_ambiguous_zoned_datetime(date.to_datetime(self.start)).compatible().ok()?;
            if opening.timestamp() > now {
                return Some(opening.timestamp());
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }
}

/// The patient's time zone, or `default` when this machine's time-zone data lacks it.
pub fn time_zone(name: &str, default: &TimeZone) -> TimeZone {
    TimeZone::get(name).unwrap_or_else(|_| default.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: (i8, i8), end: (i8, i8)) -> Window {
        Window { start: Time::constant(start.0, start.1, 0, 0), end: Time::constant(end.0, end.1, 0, 0) }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn inside_the_window_sends_now() {
        let tz = TimeZone::get("America/Toronto").unwrap();
        let w = window((9, 0), (20, 0));
        // 14:00 UTC is 09:00 in Toronto in winter (EST, UTC-5): the window has just opened.
        assert_eq!(w.next_opening(at("2026-11-26T14:00:00Z"), &tz), None);
        // 00:59 UTC is 19:59 the evening before.
        assert_eq!(w.next_opening(at("2026-11-27T00:59:00Z"), &tz), None);
    }

    #[test]
    fn outside_the_window_waits_for_the_next_opening_in_the_patients_zone() {
        let w = window((9, 0), (20, 0));
        let toronto = TimeZone::get("America/Toronto").unwrap();
        // 01:00 UTC is 20:00 in Toronto: closed until 09:00 the next morning (14:00 UTC).
        assert_eq!(w.next_opening(at("2026-11-27T01:00:00Z"), &toronto), Some(at("2026-11-27T14:00:00Z")));
        // 13:59 UTC is 08:59: opens in a minute.
        assert_eq!(w.next_opening(at("2026-11-26T13:59:00Z"), &toronto), Some(at("2026-11-26T14:00:00Z")));
        // The same instant is 06:59 in Vancouver (UTC-8): it opens at 17:00 UTC there.
        let vancouver = TimeZone::get("America/Vancouver").unwrap();
        assert_eq!(w.next_opening(at("2026-11-26T14:59:00Z"), &vancouver), Some(at("2026-11-26T17:00:00Z")));
        // And in St. John's (UTC-3:30) 03:00 UTC is 23:30: opens 09:00 local = 12:30 UTC.
        let st_johns = TimeZone::get("America/St_Johns").unwrap();
        assert_eq!(w.next_opening(at("2026-11-27T03:00:00Z"), &st_johns), Some(at("2026-11-27T12:30:00Z")));
    }

    #[test]
    fn the_opening_follows_daylight_saving_time() {
        let w = window((9, 0), (20, 0));
        let tz = TimeZone::get("America/Toronto").unwrap();
        // The night clocks spring forward (2026-03-08): 09:00 EDT is 13:00 UTC, not 14:00.
        assert_eq!(w.next_opening(at("2026-03-08T04:00:00Z"), &tz), Some(at("2026-03-08T13:00:00Z")));
        // A window opening at 02:30 (inside the gap) opens an hour later that day, 03:30 EDT.
        let early = window((2, 30), (20, 0));
        assert_eq!(early.next_opening(at("2026-03-08T05:00:00Z"), &tz), Some(at("2026-03-08T07:30:00Z")));
    }

    #[test]
    fn a_window_may_run_over_midnight() {
        let w = window((22, 0), (6, 0));
        assert!(w.contains(Time::constant(23, 0, 0, 0)));
        assert!(w.contains(Time::constant(5, 59, 0, 0)));
        assert!(!w.contains(Time::constant(6, 0, 0, 0)));
        assert_eq!(
            w.next_opening(at("2026-11-26T12:00:00Z"), &TimeZone::UTC),
            Some(at("2026-11-26T22:00:00Z"))
        );
    }

    #[test]
    fn an_unknown_zone_falls_back() {
        let default = TimeZone::get("America/Toronto").unwrap();
        assert_eq!(time_zone("Mars/Olympus", &default), default);
        assert_eq!(time_zone("Europe/Paris", &default), TimeZone::get("Europe/Paris").unwrap());
    }
}

//! Working time: when a deadline falls, given business hours, holidays and a time zone.
//!
//! Pure. A [`Calendar`] is either every hour of every day, or business hours: a weekly
//! schedule of opening intervals in a time zone plus holiday dates. Intervals are civil times
//! converted to instants day by day through the zone, so a daylight-saving change moves
//! nothing that is open (09:00 stays 09:00) and a night shift across the change is an hour
//! shorter or longer, as the wall clock says.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead [`Calendar::add`] looks for working time before it gives up (a schedule with
/// opening hours but every day a holiday): ten years.
const HORIZON_DAYS: u32 = 3660;

/// One opening interval of a weekday, `[open, close)`; `close` of `None` is midnight at the
/// end of the day (written `24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub open: Time,
    pub close: Option<Time>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    pub timezone: TimeZone,
    /// Monday first.
    pub week: [Vec<Opening>; 7],
    pub holidays: BTreeSet<Date>,
}

/// When the clock of a deadline runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Calendar {
    /// Around the clock, every day.
    #[default]
    Always,
    Business(BusinessHours),
}

impl Calendar {
    /// The instant at which `wait` of working time has passed after `start`. With business
    /// hours and no wait, that is the next opening (or `start` when open).
    pub fn add(&self, start: Timestamp, wait: Duration) -> Timestamp {
        let hours = match self {
            Calendar::Always => return plus(start, wait),
            Calendar::Business(hours) => hours,
        };
        let mut remaining = SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
        let mut date = start.to_zoned(hours.timezone.clone()).date();
        for _ in 0..HORIZON_DAYS {
            for (open, close) in hours.intervals(date) {
                let open = open.max(start);
                if close <= open {
                    continue;
                }
                let span = close.duration_since(open);
                if span >= remaining {
                    return open.checked_add(remaining).unwrap_or(Timestamp::MAX);
                }
                remaining -= span;
            }
            let Some(next) = date.tomorrow().ok() else {
                break;
            };
            date = next;
        }
        Timestamp::MAX
    }

    /// Working time between `from` and `to` (zero when `to` is not after `from`).
    pub fn between(&self, from: Timestamp, to: Timestamp) -> Duration {
        if to <= from {
            return Duration::ZERO;
        }
        let hours = match self {
            Calendar::Always => return to.duration_since(from).unsigned_abs(),
            Calendar::Business(hours) => hours,
        };
        let mut total = SignedDuration::ZERO;
        let mut date = from.to_zoned(hours.timezone.clone()).date();
        let last = to.to_zoned(hours.timezone.clone()).date();
        while date <= last {
            for (open, close) in hours.intervals(date) {
                let (open, close) = (open.max(from), close.min(to));
                if close > open {
                    total += close.duration_since(open);
                }
            }
            let Some(next) = date.tomorrow().ok() else {
                break;
            };
            date = next;
        }
        total.unsigned_abs()
    }

    /// Whether the clock runs at all: a business schedule with no opening hours never does.
    pub fn has_working_time(&self) -> bool {
        match self {
            Calendar::Always => true,
            Calendar::Business(hours) => hours.week.iter().any(|day| !day.is_empty()),
        }
    }
}

impl BusinessHours {
    /// The opening intervals of `date` as instants, in order; none on a holiday.
    fn intervals(&self, date: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let day = if self.holidays.contains(&date) {
            &[][..]
        } else {
            &self.week[usize::from(date.weekday().to_monday_zero_offset().unsigned_abs())][..]
        };
        day.iter().filter_map(move |opening| {
            let open = self.instant(date, opening.open)?;
            let close = match opening.close {
                Some(close) => self.instant(date, close)?,
                None => self.instant(date.tomorrow().ok()?, Time::midnight())?,
            };
            Some((open, close))
        })
    }

    /// A civil time of `date` in the zone. A time that does not exist (skipped by a DST
    /// change) is the instant after the gap; an ambiguous one is its first occurrence.
    fn instant(&self, date: Date, time: Time) -> Option<Timestamp> {
        self.timezone
            .to_ambiguous_timestamp(date.to_datetime(time))
            .compatible()
            .ok()
    }
}

/// `at + wait`, saturating at the end of time rather than failing.
pub fn plus(at: Timestamp, wait: Duration) -> Timestamp {
    SignedDuration::try_from(wait)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn berlin_office(holidays: &[&str]) -> Calendar {
        let day = vec![Opening {
            open: Time::constant(9, 0, 0, 0),
            close: Some(Time::constant(17, 0, 0, 0)),
        }];
        Calendar::Business(BusinessHours {
            timezone: TimeZone::get("Europe/Berlin").unwrap(),
            week: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
        })
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn always_is_plain_addition() {
        let c = Calendar::Always;
        assert_eq!(
            c.add(at("2026-11-23T10:00:00Z"), 24 * HOUR),
            at("2026-11-24T10:00:00Z")
        );
        assert_eq!(
            c.between(at("2026-11-23T10:00:00Z"), at("2026-11-23T12:30:00Z")),
            Duration::from_secs(9000)
        );
        assert_eq!(
            c.add(at("2026-11-23T10:00:00Z"), Duration::MAX),
            Timestamp::MAX
        );
    }

    #[test]
    fn friday_afternoon_rolls_over_the_weekend() {
        let c = berlin_office(&[]);
        // Friday 2026-11-27 16:00 CET (15:00Z): one hour left on Friday, seven on Monday.
        let due = c.add(at("2026-11-27T15:00:00Z"), 8 * HOUR);
        assert_eq!(due, at("2026-11-30T15:00:00Z"), "Monday 16:00 CET");
        assert_eq!(c.between(at("2026-11-27T15:00:00Z"), due), 8 * HOUR);
    }

    #[test]
    fn mail_at_night_starts_the_clock_at_opening() {
        let c = berlin_office(&[]);
        // Saturday night: the clock starts Monday 09:00 CET.
        assert_eq!(
            c.add(at("2026-11-28T22:00:00Z"), 2 * HOUR),
            at("2026-11-30T10:00:00Z")
        );
        assert_eq!(
            c.add(at("2026-11-28T22:00:00Z"), Duration::ZERO),
            at("2026-11-30T08:00:00Z")
        );
    }

    #[test]
    fn holidays_are_skipped() {
        let c = berlin_office(&["2026-12-24", "2026-12-25"]);
        // Wednesday 23 Dec 16:00 CET with 4 h: 1 h on Wednesday, Thursday and Friday are
        // holidays, weekend, 3 h on Monday 28 Dec.
        assert_eq!(
            c.add(at("2026-12-23T15:00:00Z"), 4 * HOUR),
            at("2026-12-28T11:00:00Z")
        );
    }

    #[test]
    fn office_hours_keep_their_wall_clock_across_dst() {
        let c = berlin_office(&[]);
        // Friday 27 March 2026 16:00 CET (UTC+1); clocks go forward on Sunday 29 March.
        // Monday 09:00 is now CEST (UTC+2), i.e. 07:00Z.
        assert_eq!(
            c.add(at("2026-03-27T15:00:00Z"), 2 * HOUR),
            at("2026-03-30T08:00:00Z")
        );
        // And back in October: Friday 23 Oct 16:00 CEST, Monday 09:00 CET = 08:00Z.
        assert_eq!(
            c.add(at("2026-10-23T14:00:00Z"), 2 * HOUR),
            at("2026-10-26T09:00:00Z")
        );
    }

    #[test]
    fn a_round_the_clock_schedule_counts_the_short_dst_night() {
        let all_day = vec![Opening {
            open: Time::midnight(),
            close: None,
        }];
        let c = Calendar::Business(BusinessHours {
            timezone: TimeZone::get("Europe/Athens").unwrap(),
            week: std::array::from_fn(|_| all_day.clone()),
            holidays: BTreeSet::new(),
        });
        // Sunday 29 March 2026 in Athens has 23 hours: 48 h of working time from Saturday
        // midnight local end at Monday 01:00 local (EEST), not at midnight.
        let start = at("2026-03-27T22:00:00Z"); // Saturday 00:00 EET
        let due = c.add(start, 48 * HOUR);
        assert_eq!(due, at("2026-03-29T22:00:00Z"));
        assert_eq!(
            due.to_zoned(TimeZone::get("Europe/Athens").unwrap()).hour(),
            1
        );
        assert_eq!(c.between(start, due), 48 * HOUR);
    }

    #[test]
    fn between_counts_only_open_time() {
        let c = berlin_office(&[]);
        // Monday 12:00 CET to Tuesday 12:00 CET: 5 h on Monday, 3 h on Tuesday.
        assert_eq!(
            c.between(at("2026-11-23T11:00:00Z"), at("2026-11-24T11:00:00Z")),
            8 * HOUR
        );
        assert_eq!(
            c.between(at("2026-11-24T11:00:00Z"), at("2026-11-23T11:00:00Z")),
            Duration::ZERO
        );
    }

    #[test]
    fn a_schedule_without_hours_never_comes_due() {
        let c = Calendar::Business(BusinessHours {
            timezone: TimeZone::UTC,
            week: Default::default(),
            holidays: BTreeSet::new(),
        });
        assert!(!c.has_working_time());
        assert_eq!(c.add(at("2026-11-23T10:00:00Z"), HOUR), Timestamp::MAX);
    }
}

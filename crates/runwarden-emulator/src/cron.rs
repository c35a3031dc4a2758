//! A unix-cron evaluator for Cloud Scheduler: five fields (minute, hour, day of month, month,
//! day of week) with `*`, values, ranges `a-b`, steps `*/n`, `a-b/n`, `a/n`, lists `a,b`, month
//! and day names (`JAN`, `MON`), day of week 0–7 (0 and 7 are Sunday). As in Vixie cron, when both
//! day fields are restricted a day matches either. Times are evaluated in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::civil_from_days;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses a five-field unix-cron schedule; `None` when it is not one.
    pub(crate) fn parse(s: &str) -> Option<Cron> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        let (days, days_restricted) = field(f[2], 1, 31, &[])?;
        let (mut weekdays, weekdays_restricted) = field(f[4], 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Some(Cron {
            minutes: field(f[0], 0, 59, &[])?.0,
            hours: field(f[1], 0, 23, &[])?.0,
            days,
            months: field(f[3], 1, 12, &MONTHS)?.0,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    /// The first minute strictly after `t` that the schedule names (within five years).
    pub(crate) fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let first = secs / 60 + 1;
        let (first_day, first_minute) = ((first / 1440) as i64, first % 1440);
        for day in first_day..first_day + 5 * 366 {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { first_minute } else { 0 };
            for minute_of_day in from..1440 {
                let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                    let at = day as u64 * 86_400 + minute_of_day * 60;
                    return Some(UNIX_EPOCH + Duration::from_secs(at));
                }
            }
        }
        None
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = civil_from_days(day);
        let weekday = (day + 4).rem_euclid(7);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let by_dom = self.days & (1 << dom) != 0;
        let by_dow = self.weekdays & (1 << weekday) != 0;
        if self.days_restricted && self.weekdays_restricted {
            by_dom || by_dow
        } else {
            by_dom && by_dow
        }
    }
}

/// One field as a bit set of the values it names, and whether it restricts anything (not `*`).
fn field(s: &str, min: u32, max: u32, names: &[&str]) -> Option<(u64, bool)> {
    let mut bits = 0u64;
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().ok().filter(|n| *n > 0)?),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, min, names)?, value(b, min, names)?)
        } else {
            let v = value(range, min, names)?;
            (v, if item.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Some((bits, s != "*"))
}

/// A number or a name (`JAN` is the first value of its field).
fn value(s: &str, min: u32, names: &[&str]) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    names
        .iter()
        .position(|n| *n == upper)
        .map(|i| i as u32 + min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn parses_and_refuses() {
        for ok in [
            "* * * * *",
            "*/5 0-6,22 1 JAN-MAR mon-fri",
            "0 3 * * 7",
            "5/15 * * * *",
        ] {
            assert!(Cron::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "every 5 minutes",
            "* * * 13 *",
            "a * * * *",
        ] {
            assert!(Cron::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn next_runs() {
        // 1970-01-01 was a Thursday.
        let c = Cron::parse("0 3 * * *").unwrap();
        assert_eq!(c.next_after(at(0)), Some(at(3 * 3600)));
        assert_eq!(c.next_after(at(3 * 3600)), Some(at(86_400 + 3 * 3600)));
        let c = Cron::parse("*/15 * * * *").unwrap();
        assert_eq!(c.next_after(at(61)), Some(at(15 * 60)));
        let c = Cron::parse("0 0 * * MON").unwrap();
        assert_eq!(c.next_after(at(0)), Some(at(4 * 86_400)));
        // Both day fields restricted: either matches (the 2nd, a Friday, before Monday the 5th).
        let c = Cron::parse("0 0 2 * 1").unwrap();
        assert_eq!(c.next_after(at(0)), Some(at(86_400)));
        let c = Cron::parse("0 0 1 FEB *").unwrap();
        assert_eq!(c.next_after(at(0)), Some(at(31 * 86_400)));
    }
}

//! `on.schedule` cron lines as GitHub reads them: POSIX cron's five fields (minute, hour,
//! day of month, month, day of week) in UTC, each `*`, a value, a range `a-b`, a step `*/n` or
//! `a-b/n` (`a/n` runs from `a` to the field's end), or a comma list of those; months and days
//! of the week also by name (`JAN`, `MON`, any case). When both day fields are restricted a day
//! matches if either matches (POSIX's OR rule); a field written from `*` (`*`, `*/2`) counts as
//! unrestricted, as in Vixie cron. Pure: no clock, no time zone.

/// One parsed cron line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    line: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether each day field was written from `*` (unrestricted for the OR rule).
    days_star: bool,
    weekdays_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(self.min + i as u32);
        }
        let n: u32 = text.parse().map_err(|_| {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(
                    " or a name {}-{}",
                    self.names[0],
                    self.names[self.names.len() - 1]
                )
            };
            format!(
                "{} '{text}' is not a number from {} to {}{names}",
                self.name, self.min, self.max
            )
        })?;
        if n < self.min || n > self.max {
            return Err(format!(
                "{} {n} is out of range: {} to {}",
                self.name, self.min, self.max
            ));
        }
        Ok(n)
    }

    /// The set of values a field allows, as bits, and whether it was written from `*`.
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut bits = 0u64;
        for part in text.split(',') {
            if part.is_empty() {
                return Err(format!("{} '{text}' has an empty list item", self.name));
            }
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{} step '{s}' is not a whole number above 0", self.name)
                    })?;
                    (r, Some(step))
                }
                None => (part, None),
            };
            let (from, to) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!(
                        "{} range '{range}' runs backwards ({a} is after {b})",
                        self.name
                    ));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `a/n` means from a to the end, as Vixie cron reads it.
                (a, if step.is_some() { self.max } else { a })
            };
            let step = step.unwrap_or(1);
            let mut v = from;
            while v <= to {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, text.starts_with('*')))
    }
}

impl Cron {
    /// Parses a cron line; the error names the field and says what it allows.
    pub fn parse(line: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "cron '{line}' must have five fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        };
        let wrap = |e: String| format!("cron '{line}': {e}");
        let (minutes, _) = MINUTE.parse(minute).map_err(wrap)?;
        let (hours, _) = HOUR.parse(hour).map_err(wrap)?;
        let (days, days_star) = DAY.parse(day).map_err(wrap)?;
        let (months, _) = MONTH.parse(month).map_err(wrap)?;
        let (weekdays, weekdays_star) = WEEKDAY.parse(weekday).map_err(wrap)?;
        Ok(Cron {
            line: line.to_string(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }

    /// The line as written (what `github.event.schedule` holds).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Whether the line fires at this minute: `month` 1-12, `day` 1-31, `weekday` 0 (Sunday)
    /// to 6.
    pub fn matches(&self, minute: u32, hour: u32, day: u32, month: u32, weekday: u32) -> bool {
        let has = |bits: u64, v: u32| v < 64 && bits & (1 << v) != 0;
        has(self.minutes, minute) && has(self.hours, hour) && self.day_matches(day, month, weekday)
    }

    /// Whether the line fires on some minute of this day.
    pub fn day_matches(&self, day: u32, month: u32, weekday: u32) -> bool {
        let has = |bits: u64, v: u32| v < 64 && bits & (1 << v) != 0;
        if !has(self.months, month) {
            return false;
        }
        let (d, w) = (has(self.days, day), has(self.weekdays, weekday));
        match (self.days_star, self.weekdays_star) {
            (false, false) => d || w,
            _ => d && w,
        }
    }

    /// Whether the line fires at some minute of this hour of a matching day.
    pub fn hour_matches(&self, hour: u32) -> bool {
        hour < 64 && self.hours & (1 << hour) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(line: &str, at: (u32, u32, u32, u32, u32)) -> bool {
        Cron::parse(line)
            .unwrap()
            .matches(at.0, at.1, at.2, at.3, at.4)
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        for m in [0, 15, 30, 45] {
            assert!(fires("*/15 * * * *", (m, 3, 1, 1, 4)), "{m}");
        }
        assert!(!fires("*/15 * * * *", (14, 3, 1, 1, 4)));
        assert!(fires("5-20/5 * * * *", (20, 0, 1, 1, 0)));
        assert!(!fires("5-20/5 * * * *", (25, 0, 1, 1, 0)));
        assert!(fires("10/20 * * * *", (50, 0, 1, 1, 0)));
        assert!(!fires("10/20 * * * *", (0, 0, 1, 1, 0)));
        assert!(fires("0 9 * * MON-FRI", (0, 9, 7, 12, 1)));
        assert!(!fires("0 9 * * mon-fri", (0, 9, 6, 12, 0)));
        assert!(fires("0 0 1 JAN,jul *", (0, 0, 1, 7, 3)));
        assert!(!fires("0 0 1 JAN,JUL *", (0, 0, 1, 8, 3)));
        assert!(fires("30 4,16 * * *", (30, 16, 9, 9, 2)));
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 13th, or any Friday.
        assert!(fires("0 0 13 * 5", (0, 0, 13, 3, 2)));
        assert!(fires("0 0 13 * 5", (0, 0, 14, 3, 5)));
        assert!(!fires("0 0 13 * 5", (0, 0, 14, 3, 4)));
        // A day field written from `*` is unrestricted: both must hold.
        assert!(!fires("0 0 */2 * 5", (0, 0, 2, 3, 4)));
        assert!(fires("0 0 */2 * 5", (0, 0, 3, 3, 5)));
        assert!(!fires("0 0 * * 5", (0, 0, 13, 3, 4)));
    }

    #[test]
    fn bad_lines_name_the_field() {
        let err = |l: &str| Cron::parse(l).unwrap_err();
        assert!(err("* * * *").contains("five fields"), "{}", err("* * * *"));
        assert!(
            err("60 * * * *").contains("minute 60 is out of range: 0 to 59"),
            "{}",
            err("60 * * * *")
        );
        assert!(err("* * 0 * *").contains("day of month 0 is out of range"));
        assert!(
            err("* * * FOO *")
                .contains("month 'FOO' is not a number from 1 to 12 or a name JAN-DEC")
        );
        assert!(err("* * * * 7").contains("day of week 7 is out of range: 0 to 6"));
        assert!(err("*/0 * * * *").contains("minute step '0'"));
        assert!(err("5-1 * * * *").contains("runs backwards"));
        assert!(err("1,,2 * * * *").contains("empty list item"));
    }
}

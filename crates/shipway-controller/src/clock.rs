//! Time for controllers: one `Clock` in the context, backed by tokio's clock, so a test with
//! `start_paused = true` moves every timestamp, deadline and pause a controller computes.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

/// Wall-clock time that follows tokio's clock. Created from the real wall clock once; from then
/// on it advances with `tokio::time::Instant`, so on paused time it advances only when the test
/// (or tokio's auto-advance) moves time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: OffsetDateTime,
    at: Instant,
}

impl Clock {
    /// Starts at the current wall-clock time.
    pub fn new() -> Clock {
        Clock::starting_at(OffsetDateTime::now_utc())
    }

    /// Starts at `wall` (tests pin the date so timestamps are exact).
    pub fn starting_at(wall: OffsetDateTime) -> Clock {
        Clock {
            wall,
            at: Instant::now(),
        }
    }

    /// The current time (UTC).
    pub fn now(&self) -> OffsetDateTime {
        self.wall + Instant::now().saturating_duration_since(self.at)
    }

    /// `now` as Kubernetes writes timestamps: RFC 3339, UTC, whole seconds.
    pub fn timestamp(&self) -> String {
        format_timestamp(self.now())
    }

    /// How long ago `timestamp` (RFC 3339) was; zero for a time in the future, `None` when it
    /// does not parse.
    pub fn since(&self, timestamp: &str) -> Option<Duration> {
        let then = OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .ok()?;
        Some((self.now() - then).try_into().unwrap_or(Duration::ZERO))
    }

    /// Sleeps for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// RFC 3339, UTC, whole seconds (`2026-12-02T04:00:00Z`).
pub fn format_timestamp(t: OffsetDateTime) -> String {
    use time::macros::format_description;
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[tokio::test(start_paused = true)]
    async fn the_clock_moves_with_paused_time_only() {
        let clock = Clock::starting_at(datetime!(2026-12-02 04:00:00 UTC));
        assert_eq!(clock.timestamp(), "2026-12-02T04:00:00Z");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(clock.timestamp(), "2026-12-02T04:10:00Z");
        assert_eq!(
            clock.since("2026-12-02T04:09:30Z"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(clock.since("2026-12-02T05:00:00Z"), Some(Duration::ZERO));
        assert_eq!(clock.since("yesterday"), None);
    }
}

//! Speed-to-lead reporting, defined once for the CLI and the JSON API: [`LeadFacts`] (the
//! compact per-lead record every store keeps beside the lead), the figures computed from them
//! ([`speed_to_lead`]), the handoff audit ([`audit()`]) and the scheduled [`digest`]. Pure:
//! the stores read the facts, the callers pass them in. The formulas are written out in
//! docs/reports.md.

mod audit;
pub mod digest;
mod facts;
mod figures;
pub mod rollup;

use jiff::{SignedDuration, Timestamp};

pub use audit::{audit, Audit, Misrouted, Unmatched, Untouched};
pub use facts::{LeadFacts, MisrouteFact};
pub use figures::{
    bucket, percentile, speed_to_lead, BucketRow, Dimension, Directory, Group, Handoff, Hours,
    Params, RuleAccuracy, SpeedToLead, Spread, TierSla, BUCKETS,
};
pub use rollup::{Records, RecordsError, ReportRecord};

/// Why a report's window could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is neither a duration like 30m, 12h or 7d nor an RFC 3339 instant")]
    Unreadable(String),
    #[error("the window ends ({to}) before it starts ({from})")]
    Backwards { from: Timestamp, to: Timestamp },
    #[error("the window is {days} days long; a report covers at most {MAX_WINDOW_DAYS} days")]
    TooLong { days: i64 },
}

/// The longest window a report reads: a year and a month. On DynamoDB a report queries each
/// day's index partitions, so an unbounded window (`--since 100y`) would be tens of thousands
/// of queries.
pub const MAX_WINDOW_DAYS: i64 = 400;

/// An instant given as an age before `now` (`7d`, `12h`, `30m`) or as RFC 3339.
pub fn parse_instant(text: &str, now: Timestamp) -> Result<Timestamp, WindowError> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let unreadable = || WindowError::Unreadable(text.to_owned());
    let span: jiff::Span = text.parse().map_err(|_| unreadable())?;
    let age: SignedDuration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| unreadable())?;
    now.checked_sub(age.abs()).map_err(|_| unreadable())
}

/// `[from, to)` from `--since` and `--until` (default: now).
pub fn window(
    since: &str,
    until: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), WindowError> {
    let from = parse_instant(since, now)?;
    let to = match until {
        Some(until) => parse_instant(until, now)?,
        None => now,
    };
    if to < from {
        return Err(WindowError::Backwards { from, to });
    }
    let days = to.duration_since(from).as_hours() / 24;
    if days > MAX_WINDOW_DAYS {
        return Err(WindowError::TooLong { days });
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_longer_than_the_cap_is_refused_before_any_read() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().expect("time");
        assert!(window("400d", None, now).is_ok());
        assert_eq!(
            window("5000d", None, now),
            Err(WindowError::TooLong { days: 5000 })
        );
        assert!(matches!(
            window("2020-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z"), now),
            Err(WindowError::TooLong { .. })
        ));
    }

    #[test]
    fn windows_read_ages_and_instants() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("ts");
        assert_eq!(
            window("7d", None, now),
            Ok(("2026-11-23T12:00:00Z".parse().expect("ts"), now))
        );
        assert_eq!(
            window("2026-11-01T00:00:00Z", Some("1d"), now),
            Ok((
                "2026-11-01T00:00:00Z".parse().expect("ts"),
                "2026-11-29T12:00:00Z".parse().expect("ts")
            ))
        );
        assert!(matches!(
            window("yesterday", None, now),
            Err(WindowError::Unreadable(_))
        ));
        assert!(matches!(
            window("1d", Some("7d"), now),
            Err(WindowError::Backwards { .. })
        ));
    }
}

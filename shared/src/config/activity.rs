//! `[activity]`: how events after the alert (touches, meetings, outcomes) find their lead.

use serde::Deserialize;

use super::{Interval, MAX_MERGE_WINDOW_HOURS};

/// How activity events are matched to leads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// An event that carries no leadrelay lead id is matched by the prospect's e-mail to their
    /// latest lead captured within this window; older or unknown, it is kept as unmatched.
    pub match_window: Interval,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            match_window: Interval::from_secs(30 * 86_400),
        }
    }
}

impl ActivityConfig {
    /// The match window may not outlast the contact index, which keeps each person's latest
    /// lead for the longest merge window (DynamoDB expires the entries then): a longer window
    /// would match by e-mail on one store and not the other.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        let max = std::time::Duration::from_secs(u64::from(MAX_MERGE_WINDOW_HOURS) * 3600);
        if self.match_window.0 > max {
            return Err((
                "activity.match_window",
                format!(
                    "at most {} days: the contact index that matches events by e-mail keeps a \
                     person's latest lead that long",
                    MAX_MERGE_WINDOW_HOURS / 24
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_window_longer_than_the_contact_index_keeps_is_refused() {
        let long = ActivityConfig {
            match_window: Interval::from_secs(31 * 86_400),
        };
        let (key, message) = long.check().expect_err("refused");
        assert_eq!(key, "activity.match_window");
        assert!(message.contains("at most 30 days"), "{message}");
        assert!(ActivityConfig::default().check().is_ok());
    }
}

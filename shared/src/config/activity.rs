//! `[activity]`: how events after the alert (touches, meetings, outcomes) find their lead.

use serde::Deserialize;

use super::Interval;

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

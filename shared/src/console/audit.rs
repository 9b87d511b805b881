//! The console's audit log: one entry per change made through it (sign-in, claim, re-route,
//! close, availability, dead-letter replay, what-if), with who and when.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How long the audit log keeps an entry: a little over a year, so last year's same month can
/// be looked up. Both stores drop older entries (DynamoDB by TTL, SQLite as it writes).
pub const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleAction {
    pub at: Timestamp,
    /// The account's login; `-` for a refused sign-in of an unknown login.
    pub login: String,
    /// What was done: `sign-in`, `sign-in-refused`, `sign-out`, `claim`, `reroute`, `close`,
    /// `away`, `back`, `replay`, `what-if`.
    pub action: String,
    /// What it was done to: a lead id, a rep id, a dead letter's message id.
    pub target: String,
    /// The outcome in words (`claimed`, `refused: not yours`, `away until 2026-12-01`).
    pub detail: String,
}

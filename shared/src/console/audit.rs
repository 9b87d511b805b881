//! The console's audit log: one entry per change made through it (sign-in, claim, re-route,
//! close, availability, dead-letter replay, what-if), with who and when.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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

//! What changes together with a lead in one atomic write: the counters, pool ledgers and
//! contact index entry a routing decision (or a claim, an escalation, a close) guards and moves.
//! The stores apply them ([`crate::ports::LeadStore::advance_lead`]); routing only describes them.

use jiff::Timestamp;

use super::ledger::PoolLedger;

/// What changes together with a lead, in one atomic write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub counters: Vec<CounterBump>,
    pub ledgers: Vec<LedgerWrite>,
    /// Counters to take one from (never below zero), such as an owner's open leads when a
    /// lead is closed.
    pub releases: Vec<String>,
    /// Makes the lead its contact's open lead, for merging that person's next lead into it.
    pub contact: Option<ContactWrite>,
    /// Counters set back to zero, such as a rep's run of missed SLAs when they claim a lead.
    pub resets: Vec<String>,
}

impl Effects {
    pub fn none() -> Self {
        Effects::default()
    }
}

/// Adds one to a counter; with a limit, only while the counter is below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterBump {
    pub name: String,
    pub limit: Option<i64>,
}

/// Replaces a pool's ledger for one period, only if nobody changed it since it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerWrite {
    pub pool: String,
    /// The reset period the ledger belongs to, such as `2026-W48` or `all`.
    pub period: String,
    /// The version read; the write fails with
    /// [`StoreError::Contended`](crate::ports::StoreError::Contended) if it moved. Its
    /// `ledger.version` is this plus one.
    pub ledger: PoolLedger,
}

/// Points a contact (a normalised e-mail address) at the lead just routed for it, only if the
/// index still holds what the router read: two leads from one person routed at once cannot
/// both become the open lead (the loser decides again and merges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactWrite {
    pub contact: String,
    pub lead_id: String,
    pub routed_at: Timestamp,
    /// The lead id the index held when read (`None`: no entry); the write fails with
    /// [`StoreError::Contended`](crate::ports::StoreError::Contended) if it changed.
    pub replaces: Option<String>,
}

//! Round-robin fairness that people can read: one ledger per pool and reset period, holding for
//! each member how many leads they received and how many they were owed.
//!
//! Each lead the pool hands out is owed to the members who accrue it, in proportion to their
//! weights; the member furthest behind (owed minus received) gets it. Who accrues is the
//! pool's catch-up policy: with catch-up, every member (so a rep back from leave is owed what
//! they missed); without, only members who could take a lead right then (so a return starts
//! level with everyone else). Adding a member adds a row at zero and touches no other row.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Owed leads are counted in millionths so that weighted shares stay exact integers.
pub const MICROS_PER_LEAD: i64 = 1_000_000;

/// One pool's tallies for one period. `version` moves on every write: routers compare it to
/// decide again when another router changed the ledger first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLedger {
    pub version: u64,
    pub members: BTreeMap<String, MemberTally>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTally {
    /// Leads given to this member by the rotation in this period.
    pub received: u64,
    /// Leads routed to this member by account ownership that count toward the rotation.
    #[serde(default)]
    pub account_owned: u64,
    /// The member's fair share of the pool's leads so far, in millionths of a lead.
    pub owed_micros: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Timestamp>,
}

impl MemberTally {
    /// How far behind their share the member is, in millionths of a lead (negative: ahead).
    pub fn behind_micros(&self) -> i64 {
        let taken = i64::try_from(self.received + self.account_owned).unwrap_or(i64::MAX);
        self.owed_micros
            .saturating_sub(taken.saturating_mul(MICROS_PER_LEAD))
    }
}

impl PoolLedger {
    pub fn tally(&self, rep: &str) -> MemberTally {
        self.members.get(rep).cloned().unwrap_or_default()
    }

    /// Shares one lead among `accruing` (rep, weight) in proportion to weight. The last member
    /// takes what the integer division leaves, so the shares always sum to exactly one lead.
    pub fn accrue(&mut self, accruing: &[(&str, u32)]) {
        let total: i64 = accruing.iter().map(|(_, w)| i64::from(*w)).sum();
        if total == 0 {
            return;
        }
        let mut left = MICROS_PER_LEAD;
        for (index, (rep, weight)) in accruing.iter().enumerate() {
            let share = if index + 1 == accruing.len() {
                left
            } else {
                MICROS_PER_LEAD * i64::from(*weight) / total
            };
            left -= share;
            self.members
                .entry((*rep).to_owned())
                .or_default()
                .owed_micros += share;
        }
    }

    /// Records a lead given to `rep` by the rotation.
    pub fn record_turn(&mut self, rep: &str, at: Timestamp) {
        let tally = self.members.entry(rep.to_owned()).or_default();
        tally.received += 1;
        tally.last_at = Some(at);
    }

    /// Records a lead routed to `rep` by account ownership, in a pool that counts those.
    pub fn record_account_owned(&mut self, rep: &str, at: Timestamp) {
        let tally = self.members.entry(rep.to_owned()).or_default();
        tally.account_owned += 1;
        tally.last_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accrual_shares_one_lead_exactly_by_weight() {
        let mut ledger = PoolLedger::default();
        ledger.accrue(&[("a", 2), ("b", 1)]);
        let owed: i64 = ledger.members.values().map(|t| t.owed_micros).sum();
        assert_eq!(owed, MICROS_PER_LEAD);
        assert_eq!(ledger.tally("a").owed_micros, 666_666);
        assert_eq!(ledger.tally("b").owed_micros, 333_334);
    }

    #[test]
    fn a_turn_moves_the_member_ahead_of_their_share() {
        let mut ledger = PoolLedger::default();
        ledger.accrue(&[("a", 1), ("b", 1)]);
        ledger.record_turn("a", Timestamp::UNIX_EPOCH);
        assert_eq!(ledger.tally("a").behind_micros(), -500_000);
        assert_eq!(ledger.tally("b").behind_micros(), 500_000);
    }
}

//! Qualification and routing without a store: counters and ledgers held in memory, applied
//! exactly as a store applies [`Effects`](crate::routing::effects::Effects). It backs
//! `leadrelay rules test`, `leadrelay explain` on a lead file and `leadrelay rules diff`, which
//! replays stored leads through two configurations and reports what would move, without
//! writing anything. It sits above both [`crate::rulebook`] and [`crate::routing`], which
//! import neither it nor each other.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use crate::model::{Assignment, Lead};
use crate::routing::ledger::PoolLedger;
use crate::routing::{Router, Snapshot};
use crate::rulebook::Rulebook;

/// A store's routing figures, in memory.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    counters: HashMap<String, i64>,
    ledgers: HashMap<(String, String), PoolLedger>,
}

impl Replay {
    pub fn new() -> Self {
        Replay::default()
    }

    /// Starts from figures read elsewhere (a store), so a what-if sees today's load.
    pub fn with_counter(mut self, name: &str, value: i64) -> Self {
        self.counters.insert(name.to_owned(), value);
        self
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Plans, reads what the plan needs from memory, chooses, and applies the writes.
    pub fn route(&mut self, router: &Router, lead: &Lead, now: Timestamp) -> Assignment {
        let plan = router.plan(lead, now);
        let needs = router.needs(&plan);
        let counters = needs
            .counter_names()
            .iter()
            .map(|n| self.counter(n))
            .collect();
        let ledgers = needs
            .ledgers
            .iter()
            .map(|key| self.ledgers.get(key).cloned().unwrap_or_default())
            .collect();
        let decision = router.choose(&plan, &Snapshot::new(&needs, counters, ledgers));
        // One writer: the guards the stores enforce cannot fail here.
        for bump in decision.effects.counters {
            *self.counters.entry(bump.name).or_insert(0) += 1;
        }
        for write in decision.effects.ledgers {
            self.ledgers
                .insert((write.pool, write.period), write.ledger);
        }
        decision.assignment
    }
}

/// Where a lead ends up, at the level rules decide: the pool it was shared in, else its owner.
pub fn destination(assignment: &Assignment) -> String {
    match &assignment.pool {
        Some(pool) => format!("pool:{pool}"),
        None => assignment.owner.key(),
    }
}

/// One lead whose destination differs between the two configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub lead_id: String,
    pub captured_at: Option<Timestamp>,
    pub before: String,
    pub before_rule: String,
    pub after: String,
    pub after_rule: String,
}

/// What a configuration change would have done to a set of leads.
#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    pub leads: usize,
    /// Leads that would go to another pool, queue or rep.
    pub moved: Vec<Moved>,
    /// Leads that stay in the same pool but reach another member because the rotation shifted.
    pub reshuffled: usize,
    /// Leads per destination (`pool:x`, `queue:y`, `rep:z`): before, after.
    pub destinations: BTreeMap<String, (u64, u64)>,
    /// Leads per rep: before, after.
    pub reps: BTreeMap<String, (u64, u64)>,
}

/// A configuration as the replay needs it.
pub struct Rules<'a> {
    pub rulebook: &'a Rulebook,
    pub router: &'a Router,
}

/// Replays `leads` (captured order) through both configurations, each from a blank ledger, at
/// each lead's capture time. Enrichment is the stored one; qualification and routing are each
/// configuration's own.
pub fn diff(before: Rules<'_>, after: Rules<'_>, leads: &[Lead]) -> DiffReport {
    let mut report = DiffReport {
        leads: leads.len(),
        ..DiffReport::default()
    };
    let (mut replay_before, mut replay_after) = (Replay::new(), Replay::new());
    for lead in leads {
        let at = lead.timeline.captured_at.unwrap_or_else(Timestamp::now);
        let decide = |rules: &Rules<'_>, replay: &mut Replay| {
            let mut lead = lead.clone();
            lead.qualification = Some(rules.rulebook.qualify(&lead));
            replay.route(rules.router, &lead, at)
        };
        let old = decide(&before, &mut replay_before);
        let new = decide(&after, &mut replay_after);
        let (from, to) = (destination(&old), destination(&new));
        report.destinations.entry(from.clone()).or_default().0 += 1;
        report.destinations.entry(to.clone()).or_default().1 += 1;
        if let crate::model::Owner::Rep(rep) = &old.owner {
            report.reps.entry(rep.clone()).or_default().0 += 1;
        }
        if let crate::model::Owner::Rep(rep) = &new.owner {
            report.reps.entry(rep.clone()).or_default().1 += 1;
        }
        if from != to {
            report.moved.push(Moved {
                lead_id: lead.id.clone(),
                captured_at: lead.timeline.captured_at,
                before: from,
                before_rule: old.rule,
                after: to,
                after_rule: new.rule,
            });
        } else if old.owner != new.owner {
            report.reshuffled += 1;
        }
    }
    report
}

//! Who may claim a lead: `owner`, `team` or `anyone`, set where the lead sits (its queue, or
//! the pool it was picked from), else on the rule that routed it, else `[claim] default`, else
//! by who holds it (`owner` for a rep, `anyone` for a queue or a broadcast pool).
//!
//! Under `owner` the reps who may claim are the lead's owners (as routed, and each escalation
//! target since), their backups, and the manager of their team queue; a queue's manager; a
//! pool's members. `team` adds every rep of those owners' teams. `anyone` is every rep.

use std::collections::BTreeSet;

use crate::config::{ClaimPolicy, Config};
use crate::model::{Lead, Owner};
use crate::routing::Router;

/// A claim the policy allows: the policy, where it was set, and the claimer's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub policy: ClaimPolicy,
    pub set_by: String,
    pub why: String,
}

impl Permit {
    /// As recorded on the lead: `owner (pool "amer-ae"): their backup`.
    pub fn describe(&self) -> String {
        format!("{} ({}): {}", self.policy.as_str(), self.set_by, self.why)
    }
}

/// A claim the policy refuses: who holds the lead, and why this rep may not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The current owner's display name.
    pub owner: String,
    pub policy: ClaimPolicy,
    /// The sentence shown to the refused rep.
    pub why: String,
}

/// The policy that applies to `lead`, and where it was set.
pub fn policy_for(config: &Config, lead: &Lead) -> (ClaimPolicy, String) {
    let Some(assignment) = &lead.assignment else {
        return (ClaimPolicy::Anyone, "nobody owns the lead".to_owned());
    };
    let sits = match &assignment.owner {
        Owner::Queue(queue) => config
            .queue(queue)
            .and_then(|q| q.claim)
            .map(|p| (p, format!("queue {queue:?}"))),
        Owner::Pool(pool) => pool_policy(config, pool),
        Owner::Rep(_) => None,
    };
    sits.or_else(|| {
        assignment
            .pool
            .as_deref()
            .and_then(|p| pool_policy(config, p))
    })
    .or_else(|| {
        config
            .rules
            .iter()
            .map(|r| r.get_ref())
            .find(|r| r.name == assignment.rule)
            .and_then(|r| r.claim.map(|p| (p, format!("rule {:?}", r.name))))
    })
    .or_else(|| {
        config
            .claim
            .default
            .map(|p| (p, "[claim] default".to_owned()))
    })
    .unwrap_or_else(|| match assignment.owner {
        Owner::Rep(_) => (
            ClaimPolicy::Owner,
            "the default for a lead a rep owns".to_owned(),
        ),
        Owner::Queue(_) | Owner::Pool(_) => (
            ClaimPolicy::Anyone,
            "the default for a lead in a queue or pool".to_owned(),
        ),
    })
}

fn pool_policy(config: &Config, pool: &str) -> Option<(ClaimPolicy, String)> {
    config
        .pool(pool)
        .and_then(|p| p.claim)
        .map(|policy| (policy, format!("pool {pool:?}")))
}

/// Who routing gave the lead to, before any escalation moved it.
pub fn routed_owner(lead: &Lead) -> Option<Owner> {
    lead.escalations
        .first()
        .map(|e| e.from.clone())
        .or_else(|| lead.assignment.as_ref().map(|a| a.owner.clone()))
}

/// Everyone who has held the lead: the routed owner, each escalation target, the owner now.
fn holders(lead: &Lead) -> Vec<Owner> {
    let mut holders: Vec<Owner> = Vec::new();
    let chain = routed_owner(lead)
        .into_iter()
        .chain(lead.escalations.iter().map(|e| e.to.clone()))
        .chain(lead.assignment.as_ref().map(|a| a.owner.clone()));
    for owner in chain {
        if !holders.contains(&owner) {
            holders.push(owner);
        }
    }
    holders
}

/// Whether `rep` may claim `lead`, and why (or why not).
pub fn check(config: &Config, router: &Router, lead: &Lead, rep: &str) -> Result<Permit, Refusal> {
    let (policy, set_by) = policy_for(config, lead);
    let permit = |why: String| Permit {
        policy,
        set_by: set_by.clone(),
        why,
    };
    if policy == ClaimPolicy::Anyone {
        return Ok(permit("anyone may claim it".to_owned()));
    }
    let holders = holders(lead);
    if let Some(why) = owner_part(config, router, lead, &holders, rep) {
        return Ok(permit(why));
    }
    let teams = teams_of(config, &holders);
    if policy == ClaimPolicy::Team {
        let team = config.rep(rep).and_then(|r| r.team.as_deref());
        if let Some(team) = team.filter(|t| teams.contains(*t)) {
            let name = config.team(team).map_or(team, |t| t.name.as_str());
            return Ok(permit(format!("a member of {name}")));
        }
    }
    let owner = lead
        .assignment
        .as_ref()
        .map_or_else(|| "nobody".to_owned(), |a| a.owner_name.clone());
    let mut who = "the owner, their backup, an escalation target or their manager".to_owned();
    if policy == ClaimPolicy::Team && !teams.is_empty() {
        let names: Vec<&str> = teams
            .iter()
            .map(|t| config.team(t).map_or(t.as_str(), |t| t.name.as_str()))
            .collect();
        who.push_str(&format!(", or a member of {}", names.join(" or ")));
    }
    Err(Refusal {
        why: format!(
            "{owner} owns this lead. Only {who} may claim it (claim = \"{}\", {set_by}).",
            policy.as_str()
        ),
        owner,
        policy,
    })
}

/// The rep's part under `owner`, if they have one.
fn owner_part(
    config: &Config,
    router: &Router,
    lead: &Lead,
    holders: &[Owner],
    rep: &str,
) -> Option<String> {
    let current = lead.assignment.as_ref().map(|a| &a.owner);
    let me = Owner::Rep(rep.to_owned());
    if current == Some(&me) {
        return Some("the owner".to_owned());
    }
    if holders.first() == Some(&me) {
        return Some("the routed owner".to_owned());
    }
    if holders.contains(&me) {
        return Some("an escalation target".to_owned());
    }
    for holder in holders {
        let queue = match holder {
            Owner::Rep(owner) => {
                if router.backup_of(owner) == Some(rep) {
                    return Some(format!("the backup of {}", router.owner_name(holder)));
                }
                Some(router.team_queue_of(owner).to_owned())
            }
            Owner::Queue(queue) => Some(queue.clone()),
            Owner::Pool(pool) => match config.pool(pool) {
                Some(pool) if pool.members.iter().any(|m| m.get_ref().rep == rep) => {
                    return Some(format!("a member of {}", pool.name));
                }
                Some(pool) => pool
                    .team
                    .as_deref()
                    .and_then(|t| config.team(t))
                    .and_then(|t| t.queue.clone()),
                None => None,
            },
        };
        let queue = queue.as_deref().and_then(|q| config.queue(q));
        if let Some(queue) = queue {
            if queue.manager.as_ref().is_some_and(|m| m.get_ref() == rep) {
                return Some(format!("the manager of {}", queue.name));
            }
        }
    }
    None
}

/// The teams of everyone who has held the lead: a rep's team, a pool's team, and every team
/// whose queue a queue is.
fn teams_of(config: &Config, holders: &[Owner]) -> BTreeSet<String> {
    let mut teams = BTreeSet::new();
    for holder in holders {
        match holder {
            Owner::Rep(rep) => teams.extend(config.rep(rep).and_then(|r| r.team.clone())),
            Owner::Pool(pool) => teams.extend(config.pool(pool).and_then(|p| p.team.clone())),
            Owner::Queue(queue) => teams.extend(
                config
                    .teams
                    .iter()
                    .map(|t| t.get_ref())
                    .filter(|t| t.queue.as_deref() == Some(queue.as_str()))
                    .map(|t| t.id.clone()),
            ),
        }
    }
    teams
}

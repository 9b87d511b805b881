//! Routing: rules over the enriched, qualified lead pick a target; reality checks
//! (availability, capacity, fairness) pick the owner along the target's fallback chain.
//!
//! Routing is pure and runs in two steps so that the store is read only for what matters:
//! [`Router::plan`] tries the rules and applies the after-hours policy (config and clock only),
//! and names what it [`Needs`] from the store (open-lead counters, pool ledgers);
//! [`Router::choose`] then walks the fallback chain over that [`Snapshot`] and returns the
//! assignment with the guarded writes that make it stick ([`effects`]). A guard that fails
//! under concurrency means: read again, choose again.
//!
//! Working hours come from [`crate::calendar`], topics from [`crate::topics`]; routing imports
//! no port: the stores apply its [`effects`], and the stages call it.

mod conditions;
pub mod duplicates;
pub mod effects;
pub mod explain;
pub mod ledger;

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::calendar::{self, parse_date_range, parse_time_zone, Schedule, WeeklyHours};
use crate::config::{AfterHoursPolicy, Config, ResetPeriod, Strategy, TargetConfig};
use crate::model::{
    AfterHoursNote, Assignment, CandidateTrace, GateAction, Lead, Owner, RoutingTrace, RuleTrial,
    StepTrace,
};
use crate::topics::{self, TopicMatcher};
use conditions::{Cond, Facts};
use effects::{CounterBump, Effects, LedgerWrite};
use ledger::{PoolLedger, MICROS_PER_LEAD};

/// The rule name a lead sent to the review queue by a validation gate is recorded under.
pub const REVIEW_RULE: &str = "validation review";

/// Rule trials kept on a stored lead; longer rule sets keep a count of the rest.
const STORED_TRIALS: usize = 50;

/// A rep's open-lead counter is this and the rep's id.
const OPEN_LEADS_OF_REP: &str = "open_leads:rep:";
/// A rep's missed-SLA streak counter is this and the rep's id.
const SLA_STREAK_OF_REP: &str = "sla_streak:rep:";
/// A rep's out-of-office end (Unix seconds; 0 or past: available) is this and the rep's id.
const AWAY_UNTIL_OF_REP: &str = "away_until:rep:";

/// The per-owner counter of open leads.
pub fn open_leads_counter(owner: &Owner) -> String {
    match owner {
        Owner::Rep(id) => format!("{OPEN_LEADS_OF_REP}{id}"),
        Owner::Queue(id) => format!("open_leads:queue:{id}"),
        Owner::Pool(id) => format!("open_leads:pool:{id}"),
    }
}

/// A rep's run of leads in a row that passed their SLA unclaimed; at
/// `[escalation] pause_after_breaches` the rep gets no new leads until it is reset.
pub fn sla_streak_counter(rep: &str) -> String {
    format!("{SLA_STREAK_OF_REP}{rep}")
}

/// The counter holding the end of a rep's out-of-office set in the console, in Unix seconds.
/// It lives in the store beside the open-lead counter, so routing on every instance honours
/// it from the next lead on, without a restart or a configuration change.
pub fn away_until_counter(rep: &str) -> String {
    format!("{AWAY_UNTIL_OF_REP}{rep}")
}

/// A place in a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Rep(String),
    Pool(String),
    Queue(String),
}

impl Target {
    pub fn key(&self) -> String {
        match self {
            Target::Rep(id) => format!("rep:{id}"),
            Target::Pool(id) => format!("pool:{id}"),
            Target::Queue(id) => format!("queue:{id}"),
        }
    }
}

struct Rule {
    name: String,
    when: Cond,
    target: RuleTarget,
}

enum RuleTarget {
    Fixed(Target),
    AccountOwner,
}

struct Rep {
    name: String,
    team: Option<String>,
    schedule: Schedule,
    capacity: Option<u32>,
    backup: Option<String>,
}

struct Pool {
    name: String,
    team: Option<String>,
    strategy: Strategy,
    members: Vec<(String, u32)>,
    catch_up: bool,
    reset: ResetPeriod,
    count_account_owned: bool,
    overflow_queue: Option<String>,
    tz: TimeZone,
}

struct Team {
    name: String,
    schedule: Schedule,
    queue: Option<String>,
    after_hours: AfterHoursPolicy,
    on_call: Option<Target>,
}

/// The routing configuration compiled for the hot path.
pub struct Router {
    rules: Vec<Rule>,
    reps: HashMap<String, Rep>,
    pools: HashMap<String, Pool>,
    teams: HashMap<String, Team>,
    queue_names: HashMap<String, String>,
    named_accounts: HashMap<String, String>,
    topics: TopicMatcher,
    detect_topics: bool,
    /// Whether any rule tests a form field.
    reads_form_fields: bool,
    fallback_queue: String,
    /// Where leads a `review` gate stopped go instead of to the rules.
    review_queue: Option<String>,
    /// For each rep, the pools where leads they get by account ownership count as turns.
    counting_pools: HashMap<String, Vec<String>>,
    /// Missed SLAs in a row that pause a rep; 0 never pauses.
    pause_after: u32,
}

/// The rules' verdict and the after-hours policy: everything that needs no store read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rule: String,
    pub reason: String,
    pub by_account: bool,
    /// When candidates are checked: now, or the team's next opening under `hold`.
    pub at: Timestamp,
    pub decided_at: Timestamp,
    pub held_until: Option<Timestamp>,
    pub chain: Vec<Target>,
    /// Reps who said "not mine" to this lead, with their reason: never offered it again.
    pub excluded: Vec<(String, String)>,
    trace: RoutingTrace,
}

/// What [`Router::choose`] reads from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Reps whose open-lead counter matters (capacity or least-loaded).
    pub reps: Vec<String>,
    /// Reps whose run of missed SLAs matters (every candidate, while pausing is on).
    pub streaks: Vec<String>,
    /// (pool, period) ledgers.
    pub ledgers: Vec<(String, String)>,
    /// Reps whose out-of-office end set in the console matters (every candidate).
    pub away: Vec<String>,
}

impl Needs {
    /// Adds what `other` needs that this does not: one read serves several plans.
    pub fn add(&mut self, other: &Needs) {
        fn union<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
            for item in from {
                if !into.contains(item) {
                    into.push(item.clone());
                }
            }
        }
        union(&mut self.reps, &other.reps);
        union(&mut self.streaks, &other.streaks);
        union(&mut self.ledgers, &other.ledgers);
        union(&mut self.away, &other.away);
    }

    /// The open-lead counters of `reps`, then the SLA streaks of `streaks`, then the
    /// out-of-office ends of `away`.
    pub fn counter_names(&self) -> Vec<String> {
        self.reps
            .iter()
            .map(|rep| open_leads_counter(&Owner::Rep(rep.clone())))
            .chain(self.streaks.iter().map(|rep| sla_streak_counter(rep)))
            .chain(self.away.iter().map(|rep| away_until_counter(rep)))
            .collect()
    }
}

/// The store's figures a decision is made on.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub open: HashMap<String, i64>,
    /// Each rep's run of missed SLAs.
    pub streaks: HashMap<String, i64>,
    pub ledgers: HashMap<String, (String, PoolLedger)>,
    /// Each rep's out-of-office end set in the console (Unix seconds; absent or 0: none).
    pub away: HashMap<String, i64>,
}

impl Snapshot {
    /// Pairs the values read for `needs` (counters in `needs.counter_names()` order).
    pub fn new(needs: &Needs, mut counters: Vec<i64>, ledgers: Vec<PoolLedger>) -> Self {
        let mut streaks = counters.split_off(needs.reps.len().min(counters.len()));
        let away = streaks.split_off(needs.streaks.len().min(streaks.len()));
        Snapshot {
            open: needs.reps.iter().cloned().zip(counters).collect(),
            streaks: needs.streaks.iter().cloned().zip(streaks).collect(),
            away: needs.away.iter().cloned().zip(away).collect(),
            ledgers: needs
                .ledgers
                .iter()
                .cloned()
                .zip(ledgers)
                .map(|((pool, period), ledger)| (pool, (period, ledger)))
                .collect(),
        }
    }
}

impl Snapshot {
    /// When the rep's out-of-office set in the console ends, if it has not ended by `at`.
    pub fn away_until(&self, rep: &str, at: Timestamp) -> Option<Timestamp> {
        let until = self.away.get(rep).copied().unwrap_or(0);
        (until > at.as_second())
            .then(|| Timestamp::from_second(until).ok())
            .flatten()
    }

    /// The figures as they are once `effects` are written: the next decision of a batch
    /// routed on one read sees the leads decided before it, as the store's guards will.
    pub fn apply(&mut self, effects: &Effects) {
        let rep_of = |name: &str, prefix: &str| name.strip_prefix(prefix).map(str::to_owned);
        for bump in &effects.counters {
            if let Some(open) =
                rep_of(&bump.name, OPEN_LEADS_OF_REP).and_then(|rep| self.open.get_mut(&rep))
            {
                *open += 1;
            } else if let Some(streak) =
                rep_of(&bump.name, SLA_STREAK_OF_REP).and_then(|rep| self.streaks.get_mut(&rep))
            {
                *streak += 1;
            }
        }
        for name in &effects.releases {
            if let Some(open) =
                rep_of(name, OPEN_LEADS_OF_REP).and_then(|rep| self.open.get_mut(&rep))
            {
                *open = (*open - 1).max(0);
            }
        }
        for name in &effects.resets {
            if let Some(streak) =
                rep_of(name, SLA_STREAK_OF_REP).and_then(|rep| self.streaks.get_mut(&rep))
            {
                *streak = 0;
            }
        }
        for write in &effects.ledgers {
            self.ledgers.insert(
                write.pool.clone(),
                (write.period.clone(), write.ledger.clone()),
            );
        }
    }
}

/// An owner, and the writes that must succeed together with the lead for it to stick.
#[derive(Debug, Clone)]
pub struct Decision {
    pub assignment: Assignment,
    pub effects: Effects,
}

/// How one candidate rep fared at an instant.
enum Check {
    Free,
    Skip(String),
}

impl Router {
    pub fn new(config: &Config) -> Self {
        let regions: HashMap<String, Vec<String>> = config
            .routing
            .regions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let topics = TopicMatcher::new(&config.topics);
        let utc = TimeZone::UTC;
        let days = |list: &[String]| -> Vec<_> {
            list.iter()
                .filter_map(|d| parse_date_range(d).ok())
                .collect()
        };
        let hours = |lines: &[String]| WeeklyHours::parse(lines).ok().filter(|_| !lines.is_empty());

        let mut teams = HashMap::new();
        for team in &config.teams {
            let t = team.get_ref();
            let tz = parse_time_zone(&t.timezone).unwrap_or(utc.clone());
            teams.insert(
                t.id.clone(),
                Team {
                    name: t.name.clone(),
                    schedule: Schedule::new(tz, hours(&t.hours)).with_holidays(days(&t.holidays)),
                    queue: t.queue.clone(),
                    after_hours: t.after_hours,
                    on_call: t.on_call.as_ref().and_then(|o| fixed_target(o.get_ref())),
                },
            );
        }
        let mut reps = HashMap::new();
        for rep in &config.reps {
            let r = rep.get_ref();
            let team = r.team.as_ref().and_then(|t| config.team(t));
            let tz = r
                .timezone
                .as_deref()
                .or(team.map(|t| t.timezone.as_str()))
                .and_then(|name| parse_time_zone(name).ok())
                .unwrap_or(utc.clone());
            let rep_hours = match (&r.hours, team) {
                (Some(own), _) => hours(own),
                (None, Some(team)) => hours(&team.hours),
                (None, None) => None,
            };
            let holidays = team.map(|t| days(&t.holidays)).unwrap_or_default();
            reps.insert(
                r.id.clone(),
                Rep {
                    name: r.name.clone(),
                    team: r.team.clone(),
                    schedule: Schedule::new(tz, rep_hours)
                        .with_holidays(holidays)
                        .with_leave(days(&r.out_of_office)),
                    capacity: r.capacity,
                    backup: r.backup.clone(),
                },
            );
        }
        let mut pools = HashMap::new();
        let mut counting_pools: HashMap<String, Vec<String>> = HashMap::new();
        for pool in &config.pools {
            let p = pool.get_ref();
            let tz = p
                .team
                .as_ref()
                .and_then(|t| teams.get(t))
                .map(|t: &Team| t.schedule.tz.clone())
                .unwrap_or(utc.clone());
            let members: Vec<(String, u32)> = p
                .members
                .iter()
                .map(|m| (m.get_ref().rep.clone(), m.get_ref().weight))
                .collect();
            if p.count_account_owned && p.strategy != Strategy::Broadcast {
                for (rep, _) in &members {
                    counting_pools
                        .entry(rep.clone())
                        .or_default()
                        .push(p.id.clone());
                }
            }
            pools.insert(
                p.id.clone(),
                Pool {
                    name: p.name.clone(),
                    team: p.team.clone(),
                    strategy: p.strategy,
                    members,
                    catch_up: p.catch_up,
                    reset: p.reset,
                    count_account_owned: p.count_account_owned,
                    overflow_queue: p.overflow_queue.clone(),
                    tz,
                },
            );
        }
        let rules: Vec<Rule> = config
            .rules
            .iter()
            .map(|r| {
                let r = r.get_ref();
                Rule {
                    name: r.name.clone(),
                    when: Cond::compile(&r.when, &regions, &topics),
                    target: match fixed_target(r.assign.get_ref()) {
                        Some(target) => RuleTarget::Fixed(target),
                        None => RuleTarget::AccountOwner,
                    },
                }
            })
            .collect();
        Router {
            detect_topics: rules.iter().any(|r| r.when.uses_topics()),
            reads_form_fields: rules.iter().any(|r| r.when.uses_form_fields()),
            rules,
            reps,
            pools,
            teams,
            queue_names: config
                .queues
                .iter()
                .map(|q| (q.get_ref().id.clone(), q.get_ref().name.clone()))
                .collect(),
            named_accounts: config
                .routing
                .named_accounts
                .iter()
                .map(|a| {
                    (
                        a.get_ref().domain.to_ascii_lowercase(),
                        a.get_ref().owner.clone(),
                    )
                })
                .collect(),
            topics,
            fallback_queue: config.routing.fallback_queue.get_ref().clone(),
            review_queue: config
                .validation
                .review_queue
                .as_ref()
                .map(|q| q.get_ref().clone()),
            counting_pools,
            pause_after: config.escalation.pause_after_breaches,
        }
    }

    /// The topics detected in a lead's question and transcript, by name.
    pub fn topics_of(&self, lead: &Lead) -> Vec<String> {
        self.detect(lead)
            .into_iter()
            .map(|(t, _)| self.topics.name(t).to_owned())
            .collect()
    }

    fn detect(&self, lead: &Lead) -> Vec<(usize, String)> {
        self.topics.detect(topics::prospect_texts(lead))
    }

    fn facts(&self, lead: &Lead) -> Facts {
        let enrichment = lead.enrichment.as_ref();
        let domain = enrichment.and_then(|e| e.domain.as_deref());
        Facts {
            country: enrichment
                .and_then(|e| e.country.as_ref())
                .map(|c| c.to_ascii_uppercase()),
            employees: enrichment.and_then(|e| e.employees),
            industry: enrichment
                .and_then(|e| e.industry.as_ref())
                .map(|i| i.to_lowercase()),
            tier: lead.qualification.as_ref().map(|q| q.tier),
            score: lead.qualification.as_ref().map(|q| q.score),
            source: lead.source.clone(),
            event: lead.capture.event,
            page: lead.capture.metadata.page_path(),
            topics: if self.detect_topics {
                self.detect(lead)
            } else {
                Vec::new()
            },
            free_mail: enrichment.is_some_and(|e| e.free_mail),
            incomplete: lead.incomplete,
            named_owner: domain.and_then(|d| self.named_owner(d)).map(str::to_owned),
            existing_owner: enrichment.and_then(|e| e.account_owner.clone()),
            form_fields: if self.reads_form_fields {
                form_answers(&lead.capture.form_fields)
            } else {
                Vec::new()
            },
        }
    }

    /// The ABM owner of a domain or of one of its parents (`eu.acme.com` → `acme.com`).
    fn named_owner(&self, domain: &str) -> Option<&str> {
        crate::cleaning::domain_and_parents(domain)
            .find_map(|candidate| self.named_accounts.get(candidate))
            .map(String::as_str)
    }

    /// Tries the rules in order and applies the target team's after-hours policy.
    pub fn plan(&self, lead: &Lead, now: Timestamp) -> Plan {
        let mut plan = self.plan_rules(lead, now);
        plan.excluded = lead
            .misroutes
            .iter()
            .map(|m| (m.rep.clone(), m.reason.clone()))
            .collect();
        plan
    }

    fn plan_rules(&self, lead: &Lead, now: Timestamp) -> Plan {
        let facts = self.facts(lead);
        let mut trace = RoutingTrace {
            decided_at: Some(now),
            topics: facts
                .topics
                .iter()
                .map(|(t, _)| self.topics.name(*t).to_owned())
                .collect(),
            ..RoutingTrace::default()
        };
        if let Some(plan) = self.review(lead, now, &mut trace) {
            return plan;
        }
        let mut chosen = None;
        for rule in &self.rules {
            let matched = rule.when.holds(&facts);
            let owner = match (&rule.target, matched) {
                (_, false) => None,
                (RuleTarget::Fixed(target), true) => Some((target.clone(), false)),
                (RuleTarget::AccountOwner, true) => facts
                    .named_owner
                    .clone()
                    .or_else(|| facts.existing_owner.clone())
                    .map(|rep| (Target::Rep(rep), true)),
            };
            // The matched rule's reason is always worked out, even past the stored trials, so
            // the decision never lacks its "why".
            let keep = trace.rules.len() < STORED_TRIALS;
            if keep || owner.is_some() {
                let detail = match rule.when.explain(&facts, &self.topics) {
                    Ok(why) if matched && owner.is_none() => {
                        format!("{why}; but the company has no account owner")
                    }
                    Ok(why) => why,
                    Err(failed) => failed,
                };
                if keep {
                    trace.rules.push(RuleTrial {
                        rule: rule.name.clone(),
                        matched: owner.is_some(),
                        detail: detail.clone(),
                    });
                } else {
                    trace.rules_omitted += 1;
                }
                if let Some((target, by_account)) = owner {
                    chosen = Some((rule.name.clone(), detail, target, by_account));
                    break;
                }
            } else {
                trace.rules_omitted += 1;
            }
        }
        let (rule, reason, mut target, mut by_account) = chosen.unwrap_or_else(|| {
            (
                "fallback".to_owned(),
                "no rule matched".to_owned(),
                Target::Queue(self.fallback_queue.clone()),
                false,
            )
        });

        let mut at = now;
        let mut held_until = None;
        if let Some((team_id, team)) = self.team_of(&target) {
            if let Some(closed) = team.schedule.closed_at(now) {
                let opening = team.schedule.next_opening(now);
                let when = opening
                    .map(|o| format!("opens {}", local(o, &team.schedule.tz)))
                    .unwrap_or_else(|| "no opening within a year".into());
                let mut note = AfterHoursNote {
                    team: team_id.to_owned(),
                    policy: team.after_hours.as_str().to_owned(),
                    detail: format!("{} is closed ({closed}; {when})", team.name),
                };
                match (team.after_hours, &team.on_call, opening) {
                    (AfterHoursPolicy::OnCall, Some(on_call), _) => {
                        note.detail
                            .push_str(&format!(": routed now to on-call {}", on_call.key()));
                        target = on_call.clone();
                        // The on-call cover is not the account owner: the lead is a turn like
                        // any other, never an account-owned one.
                        by_account = false;
                    }
                    (AfterHoursPolicy::Hold, _, Some(opening)) => {
                        note.detail
                            .push_str(": alert held until the opening, where the SLA starts");
                        at = opening;
                        held_until = Some(opening);
                    }
                    _ => note
                        .detail
                        .push_str(": unavailable reps are skipped along the fallback chain"),
                }
                trace.after_hours = Some(note);
            }
        }
        Plan {
            chain: self.chain(&target),
            rule,
            reason,
            by_account,
            at,
            decided_at: now,
            held_until,
            excluded: Vec::new(),
            trace,
        }
    }

    /// A lead a `review` gate stopped goes to the review queue before any rule is tried: a
    /// person checks it before a rep spends time on it. The trace names the gates.
    fn review(&self, lead: &Lead, now: Timestamp, trace: &mut RoutingTrace) -> Option<Plan> {
        let queue = self.review_queue.as_ref()?;
        let gates: Vec<String> = lead
            .flags
            .iter()
            .filter(|f| f.action == GateAction::Review)
            .map(|f| format!("{} ({})", f.code, f.detail))
            .collect();
        if gates.is_empty() {
            return None;
        }
        let reason = format!("validation gate set to review: {}", gates.join("; "));
        trace.rules.push(RuleTrial {
            rule: REVIEW_RULE.to_owned(),
            matched: true,
            detail: reason.clone(),
        });
        let target = Target::Queue(queue.clone());
        Some(Plan {
            chain: self.chain(&target),
            rule: REVIEW_RULE.to_owned(),
            reason,
            by_account: false,
            at: now,
            decided_at: now,
            held_until: None,
            excluded: Vec::new(),
            trace: std::mem::take(trace),
        })
    }

    fn team_of(&self, target: &Target) -> Option<(&str, &Team)> {
        let team = match target {
            Target::Rep(id) => self.reps.get(id)?.team.as_ref()?,
            Target::Pool(id) => self.pools.get(id)?.team.as_ref()?,
            Target::Queue(_) => return None,
        };
        self.teams.get(team).map(|t| (team.as_str(), t))
    }

    /// target → backup → team queue → default queue, without repeats.
    fn chain(&self, target: &Target) -> Vec<Target> {
        let mut chain = vec![target.clone()];
        match target {
            Target::Rep(id) => {
                if let Some(backup) = self.reps.get(id).and_then(|r| r.backup.clone()) {
                    chain.push(Target::Rep(backup));
                }
                if let Some(queue) = self.team_of(target).and_then(|(_, t)| t.queue.clone()) {
                    chain.push(Target::Queue(queue));
                }
            }
            Target::Pool(id) => {
                let overflow = self
                    .pools
                    .get(id)
                    .and_then(|p| p.overflow_queue.clone())
                    .or_else(|| self.team_of(target).and_then(|(_, t)| t.queue.clone()));
                if let Some(queue) = overflow {
                    chain.push(Target::Queue(queue));
                }
            }
            Target::Queue(_) => return chain,
        }
        chain.push(Target::Queue(self.fallback_queue.clone()));
        chain.dedup();
        chain
    }

    /// The counters and ledgers [`Router::choose`] will look at for this plan.
    pub fn needs(&self, plan: &Plan) -> Needs {
        let mut needs = Needs::default();
        let pausing = self.pause_after > 0;
        let want_rep = |needs: &mut Needs, rep: &str, always: bool| {
            let capped = self.reps.get(rep).is_some_and(|r| r.capacity.is_some());
            if (capped || always) && !needs.reps.iter().any(|r| r == rep) {
                needs.reps.push(rep.to_owned());
            }
            if pausing && !needs.streaks.iter().any(|r| r == rep) {
                needs.streaks.push(rep.to_owned());
            }
            if !needs.away.iter().any(|r| r == rep) {
                needs.away.push(rep.to_owned());
            }
        };
        for step in &plan.chain {
            match step {
                Target::Rep(rep) => {
                    want_rep(&mut needs, rep, false);
                    if plan.by_account {
                        for pool in self.counting_pools.get(rep).into_iter().flatten() {
                            self.want_ledger(&mut needs, pool, plan.decided_at);
                        }
                    }
                }
                Target::Pool(id) => {
                    let Some(pool) = self.pools.get(id) else {
                        continue;
                    };
                    for (rep, _) in &pool.members {
                        want_rep(&mut needs, rep, pool.strategy == Strategy::LeastLoaded);
                    }
                    if pool.strategy != Strategy::Broadcast {
                        self.want_ledger(&mut needs, id, plan.decided_at);
                    }
                }
                Target::Queue(_) => {}
            }
        }
        needs
    }

    fn want_ledger(&self, needs: &mut Needs, pool: &str, now: Timestamp) {
        if needs.ledgers.iter().any(|(p, _)| p == pool) {
            return;
        }
        if let Some(p) = self.pools.get(pool) {
            needs
                .ledgers
                .push((pool.to_owned(), period_key(p.reset, &p.tz, now)));
        }
    }

    /// Walks the fallback chain over the store's figures. Always returns an owner: the chain
    /// ends at the default queue, which takes every lead.
    pub fn choose(&self, plan: &Plan, snapshot: &Snapshot) -> Decision {
        let mut trace = plan.trace.clone();
        let mut effects = Effects::none();
        let mut picked: Option<(Owner, Option<String>)> = None;
        for step in &plan.chain {
            match step {
                Target::Rep(rep) => {
                    let check = self.check_for(plan, rep, snapshot);
                    let (outcome, candidate) = match &check {
                        Check::Free => (
                            "assigned".to_owned(),
                            CandidateTrace {
                                rep: rep.clone(),
                                picked: true,
                                reason: self.free_reason(rep, snapshot),
                            },
                        ),
                        Check::Skip(why) => (
                            format!("skipped: {why}"),
                            CandidateTrace {
                                rep: rep.clone(),
                                picked: false,
                                reason: why.clone(),
                            },
                        ),
                    };
                    trace.steps.push(StepTrace {
                        target: step.key(),
                        outcome,
                        candidates: vec![candidate],
                    });
                    if let Check::Free = check {
                        picked = Some((Owner::Rep(rep.clone()), None));
                        break;
                    }
                }
                Target::Pool(id) => {
                    let Some(pool) = self.pools.get(id) else {
                        continue;
                    };
                    if let Some(owner) =
                        self.pick_from_pool(id, pool, plan, snapshot, &mut trace, &mut effects)
                    {
                        // A broadcast pool owns the lead itself; otherwise a rep was picked
                        // from the pool.
                        let from_pool = matches!(owner, Owner::Rep(_)).then(|| id.clone());
                        picked = Some((owner, from_pool));
                        break;
                    }
                }
                Target::Queue(queue) => {
                    trace.steps.push(StepTrace {
                        target: step.key(),
                        outcome: "assigned".into(),
                        candidates: Vec::new(),
                    });
                    picked = Some((Owner::Queue(queue.clone()), None));
                    break;
                }
            }
        }
        // The chain always ends at the default queue; this only guards a chain cut short.
        let (owner, pool) =
            picked.unwrap_or_else(|| (Owner::Queue(self.fallback_queue.clone()), None));

        // The owner's open-lead counter, capped for a capped rep: the cap holds under
        // concurrency because the write fails if another router got there first.
        let limit = match &owner {
            Owner::Rep(rep) => self.reps.get(rep).and_then(|r| r.capacity).map(i64::from),
            _ => None,
        };
        effects.counters.push(CounterBump {
            name: open_leads_counter(&owner),
            limit,
        });
        // A lead routed by account ownership is a turn outside the rotation, whether the
        // account owner or their backup takes it; pools that count such leads record it.
        if let (Owner::Rep(rep), true) = (&owner, plan.by_account) {
            for pool_id in self.counting_pools.get(rep).into_iter().flatten() {
                // One write per ledger per lead: a second would fail its own version check.
                if effects.ledgers.iter().any(|w| &w.pool == pool_id) {
                    continue;
                }
                if let Some((period, ledger)) = snapshot.ledgers.get(pool_id) {
                    let mut next = ledger.clone();
                    next.version += 1;
                    next.record_account_owned(rep, plan.decided_at);
                    effects.ledgers.push(LedgerWrite {
                        pool: pool_id.clone(),
                        period: period.clone(),
                        ledger: next,
                    });
                }
            }
        }
        let owner_name = self.owner_name(&owner);
        Decision {
            assignment: Assignment {
                owner,
                owner_name,
                rule: plan.rule.clone(),
                reason: plan.reason.clone(),
                pool,
                held_until: plan.held_until,
                trace: Some(trace),
            },
            effects,
        }
    }

    fn pick_from_pool(
        &self,
        id: &str,
        pool: &Pool,
        plan: &Plan,
        snapshot: &Snapshot,
        trace: &mut RoutingTrace,
        effects: &mut Effects,
    ) -> Option<Owner> {
        let checks: Vec<(&str, u32, Check)> = pool
            .members
            .iter()
            .map(|(rep, weight)| (rep.as_str(), *weight, self.check_for(plan, rep, snapshot)))
            .collect();
        let eligible: Vec<(&str, u32)> = checks
            .iter()
            .filter(|(_, _, c)| matches!(c, Check::Free))
            .map(|(r, w, _)| (*r, *w))
            .collect();
        let mut step = StepTrace {
            target: format!("pool:{id}"),
            outcome: String::new(),
            candidates: Vec::new(),
        };
        let skipped = |step: &mut StepTrace, checks: &[(&str, u32, Check)]| {
            for (rep, _, check) in checks {
                if let Check::Skip(why) = check {
                    step.candidates.push(CandidateTrace {
                        rep: (*rep).to_owned(),
                        picked: false,
                        reason: why.clone(),
                    });
                }
            }
        };
        if eligible.is_empty() {
            step.outcome = "nobody available".into();
            skipped(&mut step, &checks);
            trace.steps.push(step);
            return None;
        }
        if pool.strategy == Strategy::Broadcast {
            step.outcome = format!(
                "broadcast to {} members; the first to claim owns the lead",
                eligible.len()
            );
            for (rep, _) in &eligible {
                step.candidates.push(CandidateTrace {
                    rep: (*rep).to_owned(),
                    picked: true,
                    reason: "available: alerted".into(),
                });
            }
            skipped(&mut step, &checks);
            trace.steps.push(step);
            return Some(Owner::Pool(id.to_owned()));
        }

        let (period, read) = snapshot.ledgers.get(id).cloned().unwrap_or_else(|| {
            (
                period_key(pool.reset, &pool.tz, plan.decided_at),
                PoolLedger::default(),
            )
        });
        let mut ledger = read.clone();
        // With catch-up, members who cannot take the lead are owed it all the same.
        let all: Vec<(&str, u32)> = pool.members.iter().map(|(r, w)| (r.as_str(), *w)).collect();
        ledger.accrue(if pool.catch_up { &all } else { &eligible });
        let total_weight: u32 = eligible.iter().map(|(_, w)| *w).sum();

        let order = |rep: &str| {
            pool.members
                .iter()
                .position(|(r, _)| r == rep)
                .unwrap_or(usize::MAX)
        };
        let rank = |rep: &str| {
            let tally = ledger.tally(rep);
            let open = snapshot.open.get(rep).copied().unwrap_or(0);
            let load = if pool.strategy == Strategy::LeastLoaded {
                open
            } else {
                0
            };
            // Lowest load, then furthest behind, then longest since the last lead, then order.
            (
                load,
                std::cmp::Reverse(tally.behind_micros()),
                tally.last_at,
                order(rep),
            )
        };
        let chosen = eligible
            .iter()
            .map(|(rep, _)| *rep)
            .min_by_key(|rep| rank(rep))?;
        for (rep, weight) in &eligible {
            let tally = ledger.tally(rep);
            let behind = tally.behind_micros() as f64 / MICROS_PER_LEAD as f64;
            let share = f64::from(*weight) * 100.0 / f64::from(total_weight.max(1));
            // One string per candidate, written in place: this runs for every eligible member.
            let verdict = if *rep == chosen {
                match pool.strategy {
                    Strategy::LeastLoaded => "picked: fewest open leads; ",
                    _ => "picked: their turn, furthest behind their share; ",
                }
            } else {
                "not their turn: "
            };
            let mut reason = String::with_capacity(128);
            reason.push_str(verdict);
            // Writing to a String cannot fail.
            let _ = write!(
                reason,
                "weight {weight} ({share:.0}% share), received {}, {behind:+.2} leads against their share",
                tally.received + tally.account_owned
            );
            if let Some(open) = snapshot.open.get(*rep) {
                let _ = write!(reason, ", {open} open");
            }
            step.candidates.push(CandidateTrace {
                rep: (*rep).to_owned(),
                picked: *rep == chosen,
                reason,
            });
        }
        skipped(&mut step, &checks);
        step.outcome = format!("{} picked by {}", chosen, pool.strategy.as_str());
        trace.steps.push(step);

        ledger.record_turn(chosen, plan.decided_at);
        ledger.version = read.version + 1;
        effects.ledgers.push(LedgerWrite {
            pool: id.to_owned(),
            period,
            ledger,
        });
        Some(Owner::Rep(chosen.to_owned()))
    }

    /// Whether a rep can take a lead at `at`: working, not away, under their cap.
    /// [`Router::check`] for this plan's lead: a rep who said "not mine" to it is skipped.
    fn check_for(&self, plan: &Plan, rep: &str, snapshot: &Snapshot) -> Check {
        match plan.excluded.iter().find(|(r, _)| r == rep) {
            Some((_, reason)) => Check::Skip(format!("said not mine: {reason}")),
            None => self.check(rep, plan.at, snapshot),
        }
    }

    fn check(&self, rep: &str, at: Timestamp, snapshot: &Snapshot) -> Check {
        let Some(r) = self.reps.get(rep) else {
            return Check::Skip("not a configured rep".into());
        };
        if let Some(closed) = r.schedule.closed_at(at) {
            return Check::Skip(match closed {
                calendar::Closed::OffHours => {
                    let next = r
                        .schedule
                        .next_opening(at)
                        .map(|o| format!("; back {}", local(o, &r.schedule.tz)))
                        .unwrap_or_default();
                    format!("outside working hours{next}")
                }
                other => other.to_string(),
            });
        }
        if let Some(until) = snapshot.away_until(rep, at) {
            return Check::Skip(format!(
                "out of office until {} (set in the console)",
                local(until, &r.schedule.tz)
            ));
        }
        if self.pause_after > 0 {
            let missed = snapshot.streaks.get(rep).copied().unwrap_or(0);
            if missed >= i64::from(self.pause_after) {
                return Check::Skip(format!(
                    "paused: let {missed} leads in a row pass their SLA (leadrelay reps resume {rep})"
                ));
            }
        }
        if let Some(cap) = r.capacity {
            let open = snapshot.open.get(rep).copied().unwrap_or(0);
            if open >= i64::from(cap) {
                return Check::Skip(format!("at capacity {open}/{cap} open leads"));
            }
        }
        Check::Free
    }

    /// Whether a rep can take a lead at `at` (working, not away, not paused, under their cap),
    /// or why not: what escalation asks of a backup.
    pub fn can_take(&self, rep: &str, at: Timestamp, snapshot: &Snapshot) -> Result<(), String> {
        match self.check(rep, at, snapshot) {
            Check::Free => Ok(()),
            Check::Skip(why) => Err(why),
        }
    }

    /// A rep's backup, as configured.
    pub fn backup_of(&self, rep: &str) -> Option<&str> {
        self.reps.get(rep).and_then(|r| r.backup.as_deref())
    }

    /// The queue of a rep's team, else the fallback queue.
    pub fn team_queue_of(&self, rep: &str) -> &str {
        self.reps
            .get(rep)
            .and_then(|r| r.team.as_ref())
            .and_then(|t| self.teams.get(t))
            .and_then(|t| t.queue.as_deref())
            .unwrap_or(&self.fallback_queue)
    }

    fn free_reason(&self, rep: &str, snapshot: &Snapshot) -> String {
        match self.reps.get(rep).and_then(|r| r.capacity) {
            Some(cap) => format!(
                "available, {}/{cap} open leads",
                snapshot.open.get(rep).copied().unwrap_or(0)
            ),
            None => "available".into(),
        }
    }

    pub fn owner_name(&self, owner: &Owner) -> String {
        let name = match owner {
            Owner::Rep(id) => self.reps.get(id).map(|r| r.name.clone()),
            Owner::Queue(id) => self.queue_names.get(id).cloned(),
            Owner::Pool(id) => self.pools.get(id).map(|p| p.name.clone()),
        };
        name.unwrap_or_else(|| owner.id().to_owned())
    }

    /// The hours an owner keeps, for telling a prospect when to expect an answer: a rep's own
    /// schedule, a pool's team's; `None` for a queue (always open) or an owner without hours.
    pub fn owner_schedule(&self, owner: &Owner) -> Option<&Schedule> {
        let schedule = match owner {
            Owner::Rep(id) => self.reps.get(id).map(|r| &r.schedule),
            Owner::Pool(id) => self
                .pools
                .get(id)
                .and_then(|p| p.team.as_ref())
                .and_then(|t| self.teams.get(t))
                .map(|t| &t.schedule),
            Owner::Queue(_) => None,
        };
        schedule.filter(|s| !s.is_always_open())
    }

    /// The time zone to tell a prospect times in: the owner's team's (the office they deal
    /// with), else a rep's own; `None` for a queue.
    pub fn owner_time_zone(&self, owner: &Owner) -> Option<TimeZone> {
        let team = match owner {
            Owner::Rep(id) => self.reps.get(id).and_then(|r| r.team.as_ref()),
            Owner::Pool(id) => self.pools.get(id).and_then(|p| p.team.as_ref()),
            Owner::Queue(_) => None,
        };
        match (team.and_then(|t| self.teams.get(t)), owner) {
            (Some(team), _) => Some(team.schedule.tz.clone()),
            (None, Owner::Rep(id)) => self.reps.get(id).map(|r| r.schedule.tz.clone()),
            _ => None,
        }
    }

    /// The ledger period a pool is in at `now`.
    pub fn pool_period(&self, pool: &str, now: Timestamp) -> Option<String> {
        self.pools
            .get(pool)
            .map(|p| period_key(p.reset, &p.tz, now))
    }

    /// Each pool's ledger as people read it: per member, weight, leads received this period,
    /// expected share, open leads and whether they could take a lead now.
    pub fn pool_report(
        &self,
        pool: &str,
        now: Timestamp,
        snapshot: &Snapshot,
    ) -> Option<PoolReport> {
        let p = self.pools.get(pool)?;
        let (period, ledger) = snapshot
            .ledgers
            .get(pool)
            .cloned()
            .unwrap_or_else(|| (period_key(p.reset, &p.tz, now), PoolLedger::default()));
        let total_weight: u32 = p.members.iter().map(|(_, w)| *w).sum();
        let members = p
            .members
            .iter()
            .map(|(rep, weight)| {
                let tally = ledger.tally(rep);
                MemberReport {
                    rep: rep.clone(),
                    name: self
                        .reps
                        .get(rep)
                        .map(|r| r.name.clone())
                        .unwrap_or_default(),
                    weight: *weight,
                    received: tally.received,
                    account_owned: tally.account_owned,
                    share_percent: f64::from(*weight) * 100.0 / f64::from(total_weight.max(1)),
                    owed: tally.owed_micros as f64 / MICROS_PER_LEAD as f64,
                    open: snapshot.open.get(rep).copied(),
                    capacity: self.reps.get(rep).and_then(|r| r.capacity),
                    now: match self.check(rep, now, snapshot) {
                        Check::Free => "available".into(),
                        Check::Skip(why) => why,
                    },
                }
            })
            .collect();
        Some(PoolReport {
            pool: pool.to_owned(),
            name: p.name.clone(),
            strategy: p.strategy,
            catch_up: p.catch_up,
            reset: p.reset,
            count_account_owned: p.count_account_owned,
            period,
            version: ledger.version,
            members,
        })
    }

    /// Pool ids in configuration order.
    pub fn pool_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.pools.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// What [`Router::pool_report`] reads: every member's counter and the current ledger.
    pub fn pool_needs(&self, pool: &str, now: Timestamp) -> Needs {
        let mut needs = Needs::default();
        if let Some(p) = self.pools.get(pool) {
            needs.reps = p.members.iter().map(|(r, _)| r.clone()).collect();
            // Each member's availability as routing would see it: paused, out of office.
            needs.streaks = needs.reps.clone();
            needs.away = needs.reps.clone();
            needs
                .ledgers
                .push((pool.to_owned(), period_key(p.reset, &p.tz, now)));
        }
        needs
    }

    /// A decision with no guards, for when contention never settles: the default queue.
    pub fn last_resort(&self, plan: &Plan) -> Decision {
        let owner = Owner::Queue(self.fallback_queue.clone());
        let mut trace = plan.trace.clone();
        trace.steps.push(StepTrace {
            target: format!("queue:{}", self.fallback_queue),
            outcome: "assigned: the chosen owner kept changing under concurrent routing".into(),
            candidates: Vec::new(),
        });
        Decision {
            effects: Effects {
                counters: vec![CounterBump {
                    name: open_leads_counter(&owner),
                    limit: None,
                }],
                ..Effects::none()
            },
            assignment: Assignment {
                owner_name: self.owner_name(&owner),
                owner,
                rule: plan.rule.clone(),
                reason: plan.reason.clone(),
                pool: None,
                held_until: plan.held_until,
                trace: Some(trace),
            },
        }
    }
}

/// One pool's ledger, for `leadrelay pools`.
#[derive(Debug, Clone)]
pub struct PoolReport {
    pub pool: String,
    pub name: String,
    pub strategy: Strategy,
    pub catch_up: bool,
    pub reset: ResetPeriod,
    pub count_account_owned: bool,
    pub period: String,
    pub version: u64,
    pub members: Vec<MemberReport>,
}

#[derive(Debug, Clone)]
pub struct MemberReport {
    pub rep: String,
    pub name: String,
    pub weight: u32,
    pub received: u64,
    pub account_owned: u64,
    /// The member's share of the pool's weight, in percent.
    pub share_percent: f64,
    /// Leads owed to them this period (their fair share so far).
    pub owed: f64,
    pub open: Option<i64>,
    pub capacity: Option<u32>,
    /// `available`, or why not.
    pub now: String,
}

fn fixed_target(target: &TargetConfig) -> Option<Target> {
    if let Some(rep) = &target.rep {
        Some(Target::Rep(rep.clone()))
    } else if let Some(pool) = &target.pool {
        Some(Target::Pool(pool.clone()))
    } else {
        target.queue.as_ref().map(|q| Target::Queue(q.clone()))
    }
}

/// The reset period containing `now` in the pool's time zone.
pub fn period_key(reset: ResetPeriod, tz: &TimeZone, now: Timestamp) -> String {
    let date = now.to_zoned(tz.clone()).date();
    match reset {
        ResetPeriod::Never => "all".to_owned(),
        ResetPeriod::Daily => date.to_string(),
        ResetPeriod::Weekly => {
            let week = date.iso_week_date();
            format!("{}-W{:02}", week.year(), week.week())
        }
        ResetPeriod::Monthly => format!("{}-{:02}", date.year(), date.month()),
    }
}

fn local(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone())
        .strftime("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

#[cfg(test)]
mod tests;

/// Each form field with its answers as trimmed lower-case text: a list gives one answer per
/// item, an object none.
fn form_answers(
    fields: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<(String, Vec<String>)> {
    use serde_json::Value;
    let answer = |v: &Value| match v {
        Value::Array(_) | Value::Object(_) | Value::Null => None,
        other => crate::json_path::text_of(other).map(|t| t.to_lowercase()),
    };
    fields
        .iter()
        .map(|(name, value)| {
            let answers = match value {
                Value::Array(items) => items.iter().filter_map(answer).collect(),
                other => answer(other).into_iter().collect(),
            };
            (name.clone(), answers)
        })
        .collect()
}

//! The routing engine's behaviour, over a small team and an in-memory stand-in for the store's
//! counters and ledgers (the real stores' guards are proven by the conformance suite and the
//! concurrent routing test).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::config::Config;
use crate::model::{
    CaptureEvent, Enrichment, EventKind, GateAction, Lead, LeadState, Qualification, Timeline,
};

const TEAM: &str = r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]

[[sources]]
id = "forms"
scheme = "body_hmac"
secrets = ["forms-secret-0123456789"]

[[teams]]
id = "emea"
name = "EMEA"
timezone = "Europe/London"
hours = ["mon-fri 09:00-17:00"]
holidays = ["2026-12-25"]
queue = "emea-queue"
after_hours = "hold"

[[teams]]
id = "amer"
name = "Americas"
timezone = "America/New_York"
hours = ["mon-fri 09:00-17:00"]
queue = "inbox"
after_hours = "on_call"
on_call.pool = "sun"

[[teams]]
id = "apac"
name = "APAC"
timezone = "Australia/Sydney"
hours = ["mon-fri 09:00-17:00"]
queue = "inbox"

[[reps]]
id = "ann"
name = "Ann"
team = "emea"
capacity = 2
backup = "ben"

[[reps]]
id = "ben"
name = "Ben"
team = "emea"
out_of_office = ["2026-11-23..2026-11-27"]

[[reps]]
id = "cat"
name = "Cat"
team = "emea"

[[reps]]
id = "dev"
name = "Dev"
team = "apac"

[[reps]]
id = "eve"
name = "Eve"
team = "amer"
backup = "ann"

[[reps]]
id = "mgr"
name = "Manager"

[[pools]]
id = "emea"
name = "EMEA pool"
team = "emea"
members = [{ rep = "ann", weight = 2 }, { rep = "cat" }]

[[pools]]
id = "loaded"
name = "Least loaded"
strategy = "least_loaded"
members = [{ rep = "ann" }, { rep = "cat" }]

[[pools]]
id = "sun"
name = "Follow the sun"
strategy = "broadcast"
members = [{ rep = "ann" }, { rep = "dev" }]

[[queues]]
id = "inbox"
name = "Inbox"
manager = "mgr"

[[queues]]
id = "emea-queue"
name = "EMEA queue"

[[queues]]
id = "sdr"
name = "SDR"

[[rules]]
name = "partial"
when.incomplete = true
assign.queue = "sdr"

[[rules]]
name = "abm"
when.named_account = true
assign.account_owner = true

[[rules]]
name = "existing"
when.existing_account = true
assign.account_owner = true

[[rules]]
name = "big fintech, not from the forms"
when.all = [{ min_employees = 1000 }, { industries = ["Fintech"] }]
when.not = { sources = ["forms"] }
assign.pool = "loaded"

[[rules]]
name = "technical"
when.any = [{ topics = ["api"] }, { pages = ["/docs/*"] }]
assign.rep = "cat"

[[rules]]
name = "hot and scored"
when.tiers = [1]
when.min_score = 50
when.max_employees = 999
assign.rep = "ann"

[[rules]]
name = "pricing page"
when.pages = ["/pricing/enterprise*"]
when.events = ["lead_capture"]
assign.rep = "ann"

[[rules]]
name = "EMEA"
when.regions = ["EMEA"]
assign.pool = "emea"

[[rules]]
name = "Americas"
when.countries = ["US"]
assign.rep = "eve"

[[rules]]
name = "APAC"
when.countries = ["AU"]
assign.rep = "dev"

[routing]
fallback_queue = "inbox"

[routing.regions]
EMEA = ["GB", "DE"]

[[routing.named_accounts]]
domain = "target.com"
owner = "ben"
"#;

/// Monday 2026-11-23, 10:00 in London (open), 05:00 in New York (closed), 21:00 in Sydney.
const MONDAY_MORNING_LONDON: &str = "2026-11-23T10:00:00Z";
/// Tuesday 2026-11-24, 22:00 in London.
const TUESDAY_NIGHT_LONDON: &str = "2026-11-24T22:00:00Z";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn config(text: &str) -> Config {
    Config::parse(text, "team.toml", &|_| None).expect("valid config")
}

fn router() -> Router {
    Router::new(&config(TEAM))
}

/// A lead as routing sees it: enriched and qualified.
#[derive(Clone)]
struct LeadSpec {
    country: Option<&'static str>,
    employees: Option<u32>,
    industry: Option<&'static str>,
    domain: &'static str,
    owner: Option<&'static str>,
    tier: u8,
    score: i32,
    source: &'static str,
    event: EventKind,
    page: Option<&'static str>,
    question: Option<&'static str>,
}

impl Default for LeadSpec {
    fn default() -> Self {
        LeadSpec {
            country: Some("GB"),
            employees: Some(200),
            industry: None,
            domain: "acme.co.uk",
            owner: None,
            tier: 2,
            score: 30,
            source: "website",
            event: EventKind::LeadCapture,
            page: None,
            question: None,
        }
    }
}

impl LeadSpec {
    fn lead(&self) -> Lead {
        Lead {
            id: "lead-1".into(),
            source: self.source.into(),
            event_id: "evt".into(),
            trace_id: "trace".into(),
            state: LeadState::Enriched,
            capture: CaptureEvent {
                event: Some(self.event),
                timestamp: None,
                visitor_id: None,
                conversation_id: None,
                captured_email: Some(format!("x@{}", self.domain)),
                name: None,
                company: None,
                phone: None,
                job_title: None,
                trigger_query: self.question.map(str::to_owned),
                conversation_transcript_url: None,
                transcript: Vec::new(),
                form_fields: Default::default(),
                metadata: crate::model::Metadata {
                    source_url: self
                        .page
                        .map(|p| format!("https://www.yourco.example{p}?utm=x")),
                    ..Default::default()
                },
            },
            incomplete: self.event == EventKind::LeadCapturePartial,
            flags: Vec::new(),
            enrichment: Some(Enrichment {
                domain: Some(self.domain.into()),
                country: self.country.map(str::to_owned),
                employees: self.employees,
                industry: self.industry.map(str::to_owned),
                account_owner: self.owner.map(str::to_owned),
                ..Enrichment::default()
            }),
            qualification: Some(Qualification {
                tier: self.tier,
                score: self.score,
                sla_minutes: 5,
                breakdown: Vec::new(),
            }),
            assignment: None,
            timeline: Timeline::default(),
            last_failure: None,
            close_reason: None,
            merged_into: None,
            claim: None,
            escalations: Vec::new(),
            activities: Vec::new(),
            misroutes: Vec::new(),
            reroutes: Vec::new(),
            revision: 0,
        }
    }
}

/// Counters and ledgers applied exactly as a store applies `Effects`, guards included.
#[derive(Default)]
struct FakeStore {
    counters: HashMap<String, i64>,
    ledgers: HashMap<(String, String), PoolLedger>,
}

impl FakeStore {
    fn route(&mut self, router: &Router, lead: &Lead, now: Timestamp) -> Assignment {
        let plan = router.plan(lead, now);
        let needs = router.needs(&plan);
        let counters = needs
            .counter_names()
            .iter()
            .map(|n| self.counters.get(n).copied().unwrap_or(0))
            .collect();
        let ledgers = needs
            .ledgers
            .iter()
            .map(|key| self.ledgers.get(key).cloned().unwrap_or_default())
            .collect();
        let decision = router.choose(&plan, &Snapshot::new(&needs, counters, ledgers));
        for bump in &decision.effects.counters {
            let value = self.counters.entry(bump.name.clone()).or_insert(0);
            assert!(
                bump.limit.is_none_or(|l| *value < l),
                "cap guard would fail"
            );
            *value += 1;
        }
        for write in &decision.effects.ledgers {
            let key = (write.pool.clone(), write.period.clone());
            let current = self.ledgers.get(&key).map(|l| l.version).unwrap_or(0);
            assert_eq!(current + 1, write.ledger.version, "ledger guard would fail");
            self.ledgers.insert(key, write.ledger.clone());
        }
        decision.assignment
    }

    fn close(&mut self, owner: &str) {
        if let Some(value) = self.counters.get_mut(&format!("open_leads:rep:{owner}")) {
            *value -= 1;
        }
    }
}

fn route_at(spec: &LeadSpec, now: &str) -> Assignment {
    FakeStore::default().route(&router(), &spec.lead(), at(now))
}

fn owner_key(assignment: &Assignment) -> String {
    assignment.owner.key()
}

fn explain(assignment: &Assignment) -> String {
    serde_json::to_string_pretty(&assignment.trace).expect("trace serialises")
}

// ------------------------------------------------------------------------------ conditions

#[test]
fn partial_captures_go_to_the_sdr_queue() {
    let spec = LeadSpec {
        event: EventKind::LeadCapturePartial,
        ..LeadSpec::default()
    };
    let assignment = route_at(&spec, MONDAY_MORNING_LONDON);
    assert_eq!(owner_key(&assignment), "queue:sdr");
    assert_eq!(assignment.rule, "partial");
}

#[test]
fn a_named_account_goes_to_its_abm_owner_even_from_a_subdomain() {
    let spec = LeadSpec {
        domain: "eu.sales.target.com",
        country: Some("US"),
        ..LeadSpec::default()
    };
    // Ben is the ABM owner but out of office this week: his backup chain starts at him.
    let assignment = route_at(&spec, "2026-11-30T10:00:00Z");
    assert_eq!(assignment.rule, "abm");
    assert_eq!(owner_key(&assignment), "rep:ben");
}

#[test]
fn an_existing_account_stays_with_its_owner_and_a_company_without_one_falls_through() {
    let owned = LeadSpec {
        owner: Some("cat"),
        country: Some("US"),
        ..LeadSpec::default()
    };
    let assignment = route_at(&owned, MONDAY_MORNING_LONDON);
    assert_eq!(
        (assignment.rule.as_str(), owner_key(&assignment).as_str()),
        ("existing", "rep:cat")
    );

    let unowned = LeadSpec {
        country: Some("AU"),
        ..LeadSpec::default()
    };
    let assignment = route_at(&unowned, "2026-11-23T00:00:00Z");
    assert_eq!(assignment.rule, "APAC");
}

#[test]
fn all_and_not_combine_conditions() {
    let fintech = LeadSpec {
        employees: Some(5000),
        industry: Some("fintech"),
        ..LeadSpec::default()
    };
    assert_eq!(
        route_at(&fintech, MONDAY_MORNING_LONDON).rule,
        "big fintech, not from the forms"
    );
    let from_forms = LeadSpec {
        source: "forms",
        ..fintech.clone()
    };
    let assignment = route_at(&from_forms, MONDAY_MORNING_LONDON);
    assert_eq!(assignment.rule, "EMEA");
    let trial = &assignment.trace.as_ref().expect("trace").rules[3];
    assert!(!trial.matched);
    assert!(
        trial.detail.contains("not wanted: source forms in forms"),
        "{}",
        trial.detail
    );
}

#[test]
fn any_matches_a_topic_in_the_question_or_a_docs_page() {
    let api = LeadSpec {
        question: Some("Do your APIs support batch processing for over 1 million records?"),
        ..LeadSpec::default()
    };
    let assignment = route_at(&api, MONDAY_MORNING_LONDON);
    assert_eq!(
        (assignment.rule.as_str(), owner_key(&assignment).as_str()),
        ("technical", "rep:cat")
    );
    assert_eq!(
        assignment.trace.as_ref().expect("trace").topics,
        ["api", "scale"]
    );

    let docs = LeadSpec {
        page: Some("/docs/webhooks"),
        ..LeadSpec::default()
    };
    assert_eq!(route_at(&docs, MONDAY_MORNING_LONDON).rule, "technical");
    let rapid = LeadSpec {
        question: Some("We need a rapid rollout"),
        ..LeadSpec::default()
    };
    assert_eq!(route_at(&rapid, MONDAY_MORNING_LONDON).rule, "EMEA");
}

#[test]
fn tier_score_and_size_bands_combine() {
    let hot = LeadSpec {
        tier: 1,
        score: 60,
        ..LeadSpec::default()
    };
    assert_eq!(route_at(&hot, MONDAY_MORNING_LONDON).rule, "hot and scored");
    let cooler = LeadSpec {
        score: 40,
        ..hot.clone()
    };
    assert_eq!(route_at(&cooler, MONDAY_MORNING_LONDON).rule, "EMEA");
    let bigger = LeadSpec {
        employees: Some(1000),
        ..hot
    };
    assert_eq!(route_at(&bigger, MONDAY_MORNING_LONDON).rule, "EMEA");
}

#[test]
fn a_page_glob_matches_the_path_of_a_full_url_and_the_event_kind_counts() {
    let pricing = LeadSpec {
        page: Some("/pricing/enterprise-plans"),
        ..LeadSpec::default()
    };
    assert_eq!(
        route_at(&pricing, MONDAY_MORNING_LONDON).rule,
        "pricing page"
    );
    let fallback_event = LeadSpec {
        event: EventKind::LeadCaptureFallback,
        ..pricing
    };
    assert_eq!(
        route_at(&fallback_event, MONDAY_MORNING_LONDON).rule,
        "EMEA"
    );
}

#[test]
fn no_matching_rule_goes_to_the_default_queue() {
    let nowhere = LeadSpec {
        country: Some("BR"),
        ..LeadSpec::default()
    };
    let assignment = route_at(&nowhere, MONDAY_MORNING_LONDON);
    assert_eq!(
        (assignment.rule.as_str(), owner_key(&assignment).as_str()),
        ("fallback", "queue:inbox")
    );
    let unknown_country = LeadSpec {
        country: None,
        ..LeadSpec::default()
    };
    let assignment = route_at(&unknown_country, MONDAY_MORNING_LONDON);
    assert_eq!(owner_key(&assignment), "queue:inbox");
    let trial = &assignment.trace.as_ref().expect("trace").rules[7];
    assert!(
        trial.detail.contains("country unknown not in region EMEA"),
        "{}",
        trial.detail
    );
}

// ------------------------------------------------------------------- outcomes and fallbacks

#[test]
fn weighted_round_robin_honours_weights_exactly() {
    let router = router();
    let mut store = FakeStore::default();
    let mut got = HashMap::<String, u32>::new();
    for _ in 0..30 {
        let assignment = store.route(
            &router,
            &LeadSpec::default().lead(),
            at(MONDAY_MORNING_LONDON),
        );
        assert_eq!(assignment.pool.as_deref(), Some("emea"));
        let rep = assignment.owner.id().to_owned();
        store.close(&rep); // keep Ann under her cap of 2
        *got.entry(rep).or_default() += 1;
    }
    assert_eq!(got["ann"], 20);
    assert_eq!(got["cat"], 10);
}

#[test]
fn every_prefix_of_a_weighted_rotation_stays_within_one_lead_of_each_share() {
    for weights in [[2, 1, 2], [1, 1, 3], [3, 2, 1]] {
        let members = ["a", "b", "d"]
            .iter()
            .zip(weights)
            .map(|(rep, w)| format!("{{ rep = \"{rep}\", weight = {w} }}"))
            .collect::<Vec<_>>()
            .join(", ");
        let router = Router::new(&pool_config(&members, false));
        let total: u32 = weights.iter().sum();
        let mut store = FakeStore::default();
        let mut got = HashMap::<String, u32>::new();
        for leads in 1..=40u32 {
            let assignment = store.route(
                &router,
                &LeadSpec::default().lead(),
                at(MONDAY_MORNING_LONDON),
            );
            *got.entry(assignment.owner.id().to_owned()).or_default() += 1;
            for (rep, weight) in ["a", "b", "d"].iter().zip(weights) {
                let share = f64::from(leads * weight) / f64::from(total);
                let have = f64::from(got.get(*rep).copied().unwrap_or(0));
                assert!(
                    (have - share).abs() <= 1.0,
                    "{rep} has {have} after {leads} leads, share {share:.2} (weights {weights:?})"
                );
            }
        }
    }
}

#[test]
fn a_rep_at_capacity_is_skipped_and_the_explanation_says_so() {
    let router = router();
    let mut store = FakeStore::default();
    let hot = LeadSpec {
        tier: 1,
        score: 60,
        ..LeadSpec::default()
    };
    assert_eq!(
        owner_key(&store.route(&router, &hot.lead(), at(MONDAY_MORNING_LONDON))),
        "rep:ann"
    );
    assert_eq!(
        owner_key(&store.route(&router, &hot.lead(), at(MONDAY_MORNING_LONDON))),
        "rep:ann"
    );
    // Ann is at her cap of 2; Ben, her backup, is out of office: the team queue takes it.
    let third = store.route(&router, &hot.lead(), at(MONDAY_MORNING_LONDON));
    assert_eq!(owner_key(&third), "queue:emea-queue");
    let steps = &third.trace.as_ref().expect("trace").steps;
    assert_eq!(steps[0].candidates[0].reason, "at capacity 2/2 open leads");
    assert_eq!(
        steps[1].candidates[0].reason,
        "out of office until 2026-11-27"
    );
    assert_eq!(steps[2].outcome, "assigned");
    let text = explain(&third);
    assert!(text.contains("at capacity 2/2"), "{text}");
}

#[test]
fn the_backup_takes_over_when_the_rep_cannot() {
    let router = router();
    let mut store = FakeStore::default();
    store.counters.insert("open_leads:rep:ann".into(), 2);
    let hot = LeadSpec {
        tier: 1,
        score: 60,
        ..LeadSpec::default()
    };
    // The week after Ben's leave.
    let assignment = store.route(&router, &hot.lead(), at("2026-11-30T10:00:00Z"));
    assert_eq!(owner_key(&assignment), "rep:ben");
}

#[test]
fn the_chain_ends_at_the_default_queue() {
    let router = router();
    let mut store = FakeStore::default();
    store.counters.insert("open_leads:rep:ann".into(), 2);
    let spec = LeadSpec {
        country: Some("US"),
        ..LeadSpec::default()
    };
    // Eve (Americas) is on holiday? No: New York is closed at 05:00, so the on-call pool is
    // tried first; make it unavailable too by filling Ann and checking Sydney's night.
    let assignment = store.route(&router, &spec.lead(), at("2026-11-23T14:00:00Z"));
    // 09:00 in New York: Eve is working.
    assert_eq!(owner_key(&assignment), "rep:eve");
    let night = store.route(&router, &spec.lead(), at("2026-11-24T03:00:00Z"));
    // 22:00 New York → on call: Ann (London 03:00) and Dev (Sydney 14:00) → Dev alone.
    assert_eq!(owner_key(&night), "pool:sun");
    let step = &night.trace.as_ref().expect("trace").steps[0];
    let alerted: Vec<&str> = step
        .candidates
        .iter()
        .filter(|c| c.picked)
        .map(|c| c.rep.as_str())
        .collect();
    assert_eq!(alerted, ["dev"]);
    // Saturday 03:00 UTC: nobody on call is working → the inbox.
    let weekend = store.route(&router, &spec.lead(), at("2026-11-28T03:00:00Z"));
    assert_eq!(owner_key(&weekend), "queue:inbox");
    assert_eq!(
        weekend.trace.as_ref().expect("trace").steps[0].outcome,
        "nobody available"
    );
}

#[test]
fn least_loaded_picks_the_rep_with_fewest_open_leads() {
    let router = router();
    let mut store = FakeStore::default();
    store.counters.insert("open_leads:rep:ann".into(), 1);
    let spec = LeadSpec {
        employees: Some(5000),
        industry: Some("Fintech"),
        ..LeadSpec::default()
    };
    let assignment = store.route(&router, &spec.lead(), at(MONDAY_MORNING_LONDON));
    assert_eq!(owner_key(&assignment), "rep:cat");
    let reasons: Vec<&str> = assignment.trace.as_ref().expect("trace").steps[0]
        .candidates
        .iter()
        .map(|c| c.reason.as_str())
        .collect();
    assert!(
        reasons[1].starts_with("picked: fewest open leads"),
        "{reasons:?}"
    );
}

// ------------------------------------------------------------------------------ after hours

#[test]
fn hold_keeps_the_owner_and_starts_the_clock_at_the_opening() {
    let assignment = route_at(&LeadSpec::default(), TUESDAY_NIGHT_LONDON);
    assert_eq!(assignment.pool.as_deref(), Some("emea"));
    assert_eq!(assignment.held_until, Some(at("2026-11-25T09:00:00Z")));
    let note = assignment
        .trace
        .as_ref()
        .and_then(|t| t.after_hours.clone())
        .expect("note");
    assert_eq!(note.policy, "hold");
    assert!(
        note.detail
            .contains("EMEA is closed (outside working hours"),
        "{}",
        note.detail
    );
}

#[test]
fn on_call_routes_now_and_records_the_policy() {
    let spec = LeadSpec {
        country: Some("US"),
        ..LeadSpec::default()
    };
    let assignment = route_at(&spec, MONDAY_MORNING_LONDON);
    assert_eq!(owner_key(&assignment), "pool:sun");
    assert_eq!(assignment.held_until, None);
    let note = assignment
        .trace
        .as_ref()
        .and_then(|t| t.after_hours.clone())
        .expect("note");
    assert_eq!(note.policy, "on_call");
}

#[test]
fn the_on_call_cover_of_an_account_owner_takes_the_lead_as_a_turn_not_as_the_account() {
    // Eve owns the account, but New York is closed: the lead goes to the on-call pool, and it
    // must not be booked as an account-owned lead anywhere.
    let spec = LeadSpec {
        country: Some("US"),
        owner: Some("eve"),
        ..LeadSpec::default()
    };
    let plan = router().plan(&spec.lead(), at(MONDAY_MORNING_LONDON));
    assert_eq!(plan.rule, "existing");
    assert!(!plan.by_account);
    let assignment = route_at(&spec, MONDAY_MORNING_LONDON);
    assert_eq!(owner_key(&assignment), "pool:sun");
}

#[test]
fn the_matched_rule_keeps_its_reason_past_the_stored_trials() {
    // Sixty rules nobody matches before the one that does: the trace keeps the first fifty
    // trials, but the decision still says why it was made.
    let mut extra = String::new();
    for i in 0..60 {
        extra.push_str(&format!(
            "[[rules]]\nname = \"filler {i}\"\nwhen.industries = [\"Industry {i}\"]\nassign.rep = \"dev\"\n\n"
        ));
    }
    extra.push_str(
        "[[rules]]\nname = \"New Zealand\"\nwhen.countries = [\"NZ\"]\nassign.rep = \"dev\"\n\n",
    );
    let text = TEAM.replace("[routing]\n", &format!("{extra}[routing]\n"));
    let router = Router::new(&config(&text));
    let spec = LeadSpec {
        country: Some("NZ"),
        ..LeadSpec::default()
    };
    let assignment = FakeStore::default().route(&router, &spec.lead(), at(MONDAY_MORNING_LONDON));
    assert_eq!(assignment.rule, "New Zealand");
    assert!(
        assignment.reason.contains("NZ"),
        "reason: {:?}",
        assignment.reason
    );
    let trace = assignment.trace.expect("trace");
    assert_eq!(trace.rules.len(), STORED_TRIALS);
    assert!(trace.rules_omitted > 0);
}

#[test]
fn the_seed_question_scores_its_concepts_once_each_and_is_tier_one() {
    let rulebook = crate::rulebook::Rulebook::new(&config(TEAM));
    let spec = LeadSpec {
        page: Some("/pricing/enterprise"),
        question: Some("Does your API support batch processing for over 1 million records? The API docs say batch."),
        ..LeadSpec::default()
    };
    let q = rulebook.qualify(&spec.lead());
    assert_eq!(q.tier, 1);
    let concepts: Vec<&str> = q
        .breakdown
        .iter()
        .filter(|item| item.signal.starts_with("asked about"))
        .map(|item| item.signal.as_str())
        .collect();
    assert_eq!(concepts.len(), 2, "{concepts:?}");
    assert!(
        concepts.iter().any(|c| c.starts_with("asked about api")),
        "{concepts:?}"
    );
    assert!(
        concepts.iter().any(|c| c.starts_with("asked about scale")),
        "{concepts:?}"
    );
    assert!(q
        .breakdown
        .iter()
        .filter(|i| i.signal.starts_with("asked about"))
        .all(|i| i.points == 10));
}

#[test]
fn seniority_comes_from_the_job_title_first_listed_level_first() {
    let rulebook = crate::rulebook::Rulebook::new(&config(TEAM));
    let seniority = |title: Option<&str>| -> Option<(String, i32)> {
        let mut lead = LeadSpec::default().lead();
        lead.capture.job_title = title.map(str::to_owned);
        rulebook
            .qualify(&lead)
            .breakdown
            .into_iter()
            .find(|item| item.signal.contains(" title ("))
            .map(|item| (item.signal, item.points))
    };
    assert_eq!(
        seniority(Some("VP of Engineering")),
        Some(("executive title (\"vp\")".to_owned(), 15))
    );
    assert_eq!(
        seniority(Some("Head of Data Platforms")),
        Some(("executive title (\"head of\")".to_owned(), 15))
    );
    assert_eq!(
        seniority(Some("Engineering Manager")),
        Some(("manager title (\"manager\")".to_owned(), 8))
    );
    // Juniors are listed first: an intern in the CEO's office is an intern.
    assert_eq!(
        seniority(Some("Intern, Office of the CEO")),
        Some(("junior title (\"intern\")".to_owned(), -10))
    );
    // Word boundaries: "MVP" is not "VP"; no title, no signal.
    assert_eq!(seniority(Some("MVP Developer")), None);
    assert_eq!(seniority(Some("Senior Software Engineer")), None);
    assert_eq!(seniority(None), None);
}

#[test]
fn a_hand_raiser_glob_matches_the_path_of_a_full_url() {
    let rulebook = crate::rulebook::Rulebook::new(&config(TEAM));
    let on_pricing = LeadSpec {
        page: Some("/pricing/enterprise"),
        ..LeadSpec::default()
    };
    let on_blog = LeadSpec {
        page: Some("/blog/pricing"),
        ..LeadSpec::default()
    };
    let signals = |spec: &LeadSpec| -> Vec<String> {
        let q = rulebook.qualify(&spec.lead());
        assert!(q.tier >= 1);
        q.breakdown.into_iter().map(|item| item.signal).collect()
    };
    assert!(signals(&on_pricing)
        .iter()
        .any(|s| s == "on a hand-raiser page"));
    assert_eq!(rulebook.qualify(&on_pricing.lead()).tier, 1);
    assert!(!signals(&on_blog)
        .iter()
        .any(|s| s == "on a hand-raiser page"));
}

#[test]
fn a_team_holiday_closes_the_team() {
    let assignment = route_at(&LeadSpec::default(), "2026-12-25T10:00:00Z");
    assert_eq!(assignment.held_until, Some(at("2026-12-28T09:00:00Z")));
}

#[test]
fn fallback_policy_skips_reps_off_shift() {
    let spec = LeadSpec {
        country: Some("AU"),
        ..LeadSpec::default()
    };
    // 21:00 in Sydney: Dev is off, APAC has no backup for him → APAC's queue (the inbox).
    let assignment = route_at(&spec, MONDAY_MORNING_LONDON);
    assert_eq!(owner_key(&assignment), "queue:inbox");
    let steps = &assignment.trace.as_ref().expect("trace").steps;
    assert!(
        steps[0].candidates[0]
            .reason
            .starts_with("outside working hours; back Tue 2026-11-24 09:00"),
        "{:?}",
        steps[0]
    );
}

// -------------------------------------------------------------------------------- fairness

fn pool_config(members: &str, catch_up: bool) -> Config {
    config(&format!(
        r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]

[[reps]]
id = "a"
name = "A"
[[reps]]
id = "b"
name = "B"
[[reps]]
id = "c"
name = "C"
out_of_office = ["2026-11-23..2026-11-25"]
[[reps]]
id = "d"
name = "D"

[[pools]]
id = "p"
name = "P"
reset = "never"
catch_up = {catch_up}
members = [{members}]

[[queues]]
id = "inbox"
name = "Inbox"

[[rules]]
name = "all"
assign.pool = "p"

[routing]
fallback_queue = "inbox"
"#
    ))
}

/// Routes `per_day` leads a day from Monday 2026-11-23 for `days`, spread over working hours.
fn simulate(
    router: &Router,
    store: &mut FakeStore,
    from_day: i64,
    days: i64,
    per_day: i64,
) -> HashMap<String, u32> {
    let mut got = HashMap::new();
    for day in from_day..from_day + days {
        for n in 0..per_day {
            let now = at("2026-11-23T09:00:00Z")
                + SignedDuration::from_hours(24 * day)
                + SignedDuration::from_mins(n * 8 * 60 / per_day);
            let assignment = store.route(router, &LeadSpec::default().lead(), now);
            *got.entry(assignment.owner.id().to_owned()).or_insert(0) += 1;
        }
    }
    got
}

#[test]
fn adding_a_member_mid_period_resets_nobody() {
    let before = Router::new(&pool_config(r#"{ rep = "a" }, { rep = "b" }"#, false));
    let mut store = FakeStore::default();
    simulate(&before, &mut store, 0, 1, 10);
    let ledger_before = store.ledgers.values().next().cloned().expect("ledger");
    let after = Router::new(&pool_config(
        r#"{ rep = "a" }, { rep = "b" }, { rep = "d" }"#,
        false,
    ));
    let got = simulate(&after, &mut store, 1, 1, 12);
    let ledger_after = store.ledgers.values().next().cloned().expect("ledger");
    for rep in ["a", "b"] {
        assert_eq!(
            ledger_after.tally(rep).received,
            ledger_before.tally(rep).received + 4,
            "{rep} kept their count"
        );
    }
    // The newcomer starts level: a fair third of the new leads, no flood.
    assert_eq!(got["d"], 4);
}

#[test]
fn a_rep_back_from_leave_starts_level_without_catch_up() {
    let router = Router::new(&pool_config(
        r#"{ rep = "a" }, { rep = "b" }, { rep = "c" }"#,
        false,
    ));
    let mut store = FakeStore::default();
    // Mon–Wed C is away: A and B share. Thu–Fri C is back.
    let away = simulate(&router, &mut store, 0, 3, 10);
    assert_eq!((away["a"], away["b"], away.get("c")), (15, 15, None));
    let back = simulate(&router, &mut store, 3, 2, 9);
    assert_eq!(
        (back["a"], back["b"], back["c"]),
        (6, 6, 6),
        "an equal third from the return"
    );
}

#[test]
fn a_rep_back_from_leave_is_owed_their_share_with_catch_up() {
    let router = Router::new(&pool_config(
        r#"{ rep = "a" }, { rep = "b" }, { rep = "c" }"#,
        true,
    ));
    let mut store = FakeStore::default();
    simulate(&router, &mut store, 0, 3, 10);
    let back = simulate(&router, &mut store, 3, 2, 15);
    // Over the week C is owed a third of 60 = 20; C gets every lead until level, then rotation.
    let ledger = store.ledgers.values().next().cloned().expect("ledger");
    assert_eq!(ledger.tally("c").received, 20);
    assert_eq!(back["c"], 20);
    assert_eq!(ledger.tally("a").received, 20);
    assert_eq!(ledger.tally("b").received, 20);
}

#[test]
fn account_owned_leads_count_as_turns_where_the_pool_says_so() {
    let text = TEAM.replace(
        "id = \"emea\"\nname = \"EMEA pool\"\nteam = \"emea\"",
        "id = \"emea\"\nname = \"EMEA pool\"\nteam = \"emea\"\ncount_account_owned = true",
    );
    let router = Router::new(&config(&text));
    let mut store = FakeStore::default();
    let owned = LeadSpec {
        owner: Some("cat"),
        ..LeadSpec::default()
    };
    store.route(&router, &owned.lead(), at(MONDAY_MORNING_LONDON));
    let ledger = store
        .ledgers
        .values()
        .next()
        .cloned()
        .expect("ledger written");
    assert_eq!(ledger.tally("cat").account_owned, 1);
    assert_eq!(ledger.tally("cat").behind_micros(), -MICROS_PER_LEAD);
}

#[test]
fn the_pool_report_shows_the_ledger() {
    let router = router();
    let mut store = FakeStore::default();
    for _ in 0..3 {
        let a = store.route(
            &router,
            &LeadSpec::default().lead(),
            at(MONDAY_MORNING_LONDON),
        );
        store.close(a.owner.id());
    }
    let needs = router.pool_needs("emea", at(MONDAY_MORNING_LONDON));
    let counters = needs
        .counter_names()
        .iter()
        .map(|n| store.counters.get(n).copied().unwrap_or(0))
        .collect();
    let ledgers = needs
        .ledgers
        .iter()
        .map(|k| store.ledgers.get(k).cloned().unwrap_or_default())
        .collect();
    let report = router
        .pool_report(
            "emea",
            at(MONDAY_MORNING_LONDON),
            &Snapshot::new(&needs, counters, ledgers),
        )
        .expect("pool");
    assert_eq!(report.period, "2026-W48");
    let ann = &report.members[0];
    assert_eq!((ann.rep.as_str(), ann.weight, ann.received), ("ann", 2, 2));
    assert!((ann.share_percent - 66.666).abs() < 0.01);
    assert_eq!(report.members[1].received, 1);
    assert_eq!(report.members[1].now, "available");
}

// --------------------------------------------------------------------- validation gates

#[test]
fn a_review_gate_sends_the_lead_to_the_review_queue_before_any_rule() {
    let shipped = include_str!("../../../config/leadrelay.toml");
    let router = Router::new(&config(shipped));
    // A named account (rule: its owner, erin) from a role address.
    let mut lead = LeadSpec {
        domain: "globex-logistics.com",
        country: Some("US"),
        employees: Some(5200),
        ..LeadSpec::default()
    }
    .lead();
    let before = FakeStore::default().route(&router, &lead, at(MONDAY_MORNING_LONDON));
    assert_eq!(owner_key(&before), "rep:erin");

    lead.flags.push(crate::model::Flag {
        code: "role_address".into(),
        detail: "a role address, not a person's: info@".into(),
        action: GateAction::Review,
    });
    let reviewed = FakeStore::default().route(&router, &lead, at(MONDAY_MORNING_LONDON));
    assert_eq!(owner_key(&reviewed), "queue:review");
    assert_eq!(reviewed.rule, REVIEW_RULE);
    assert!(
        reviewed.reason.contains("role_address"),
        "{}",
        reviewed.reason
    );
    assert!(reviewed.reason.contains("info@"), "{}", reviewed.reason);
    let trace = reviewed.trace.as_ref().expect("trace");
    assert_eq!(trace.rules.len(), 1, "{}", explain(&reviewed));
    assert!(trace.rules[0].matched);
    assert_eq!(trace.steps[0].target, "queue:review");

    // Flag and nurture route by the rules as before.
    for action in [GateAction::Flag, GateAction::Nurture] {
        lead.flags[0].action = action;
        let routed = FakeStore::default().route(&router, &lead, at(MONDAY_MORNING_LONDON));
        assert_eq!(owner_key(&routed), "rep:erin", "{action:?}");
    }
}

#[test]
fn a_review_gate_needs_a_configured_review_queue() {
    let with = |validation: &str| {
        TEAM.replace(
            "[routing]",
            &format!("[validation]\n{validation}\n\n[routing]"),
        )
    };
    let error = refused(&with("role_addresses = \"review\""));
    assert!(
        error.contains("validation.role_addresses: \"review\" needs validation.review_queue"),
        "{error}"
    );
    let error = refused(&with(
        "role_addresses = \"review\"\nreview_queue = \"nowhere\"",
    ));
    assert!(
        error.contains("validation.review_queue: unknown queue \"nowhere\""),
        "{error}"
    );
    // The error names the line of the key.
    let line = with("review_queue = \"nowhere\"")
        .lines()
        .position(|l| l.starts_with("review_queue"))
        .expect("line")
        + 1;
    let error = refused(&with("review_queue = \"nowhere\""));
    assert!(error.starts_with(&format!("team.toml:{line}:")), "{error}");
    let error = refused(&with("own_domain_list = [\"yourco\"]"));
    assert!(
        error.contains("validation.own_domain_list[0]: \"yourco\" is not a domain"),
        "{error}"
    );
    let error = refused(&with("required_fields = [\"fax\"]"));
    assert!(error.contains("unknown variant `fax`"), "{error}");
    config(&with(
        "role_addresses = \"review\"\nreview_queue = \"inbox\"\ncompetitor_domain_list = [\" Rival.IO \"]",
    ));
    // Listed domains, junk addresses and roles are kept in the form the gates compare in:
    // IDNA to ASCII, lower case, no trailing dot; local parts NFKC and lower case.
    let lists = config(&with(
        "own_domain_list = [\"YourCo.COM.\", \"Bücher.de\"]\ncompetitor_domain_list = [\"ｒival.io\"]\njunk_address_list = [\"Ｎobody@Bücher.DE\"]\nrole_address_list = [\"ＥＩＮＫＡＵＦ\"]",
    ))
    .validation;
    assert_eq!(lists.own_domain_list, ["yourco.com", "xn--bcher-kva.de"]);
    assert_eq!(lists.competitor_domain_list, ["rival.io"]);
    assert_eq!(lists.junk_address_list, ["nobody@xn--bcher-kva.de"]);
    assert_eq!(lists.role_address_list, ["einkauf"]);
}

// --------------------------------------------------------------------------- validation

fn refused(text: &str) -> String {
    Config::parse(text, "team.toml", &|_| None)
        .expect_err("refused")
        .to_string()
}

#[test]
fn validation_refuses_unknown_references_and_empty_pools() {
    assert!(
        refused(&TEAM.replace("assign.pool = \"emea\"", "assign.pool = \"nope\""))
            .contains("unknown pool \"nope\"")
    );
    assert!(
        refused(&TEAM.replace("backup = \"ben\"", "backup = \"zed\""))
            .contains("backup: unknown rep \"zed\"")
    );
    let error = refused(&TEAM.replace(
        "members = [{ rep = \"ann\" }, { rep = \"dev\" }]",
        "members = []",
    ));
    assert!(
        error.contains("a pool needs at least one member"),
        "{error}"
    );
    assert!(
        refused(&TEAM.replace("when.regions = [\"EMEA\"]", "when.regions = [\"Mars\"]"))
            .contains("unknown region \"Mars\"")
    );
    assert!(refused(&TEAM.replace(
        "timezone = \"Europe/London\"",
        "timezone = \"Europe/Londn\""
    ))
    .contains("not a known IANA time zone"));
    // "UK" is the usual slip for GB: two letters, but not an assigned code.
    let error = refused(&TEAM.replace("when.countries = [\"US\"]", "when.countries = [\"UK\"]"));
    assert!(
        error.contains("\"UK\" is not an ISO 3166-1 alpha-2 country code"),
        "{error}"
    );
}

#[test]
fn validation_refuses_an_unreachable_rule_naming_both_lines() {
    let text = TEAM.replace(
        "[routing]\nfallback_queue",
        "[[rules]]\nname = \"UK only\"\nwhen.countries = [\"GB\"]\nassign.rep = \"cat\"\n\n[routing]\nfallback_queue",
    );
    let error = refused(&text);
    assert!(error.contains("rules[10] (\"UK only\")"), "{error}");
    assert!(
        error.contains("unreachable: every lead it matches is taken first by rule \"EMEA\" (line"),
        "{error}"
    );
}

#[test]
fn validation_refuses_rules_that_partly_overlap_on_the_same_field() {
    let text = TEAM.replace(
        "when.countries = [\"AU\"]",
        "when.countries = [\"AU\", \"US\"]",
    );
    let error = refused(&text);
    assert!(error.contains("overlaps rule \"Americas\""), "{error}");
    assert!(error.contains("country US"), "{error}");
}

#[test]
fn the_shipped_example_team_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
    let text = std::fs::read_to_string(path).expect("example config");
    let router = Router::new(&config(&text));
    assert!(router.pool_ids().contains(&"follow-the-sun".to_owned()));
}

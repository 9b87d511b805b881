//! Routing per lead, pure CPU and no I/O: `plan` (rules and after-hours policy) and the whole
//! decision (`plan` + `needs` + `choose` over an empty store), for the sample events under the
//! example configuration, and for a generated configuration of 1,000 rules and 500 reps where
//! the lead matches an early, a middle or a late rule, or none.
//!
//! `cargo bench -p leadrelay-shared --bench routing`. Prints figures; asserts no timing.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use jiff::Timestamp;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{Enrichment, EventKind, Lead, LeadState, Owner, Qualification};
use leadrelay_shared::routing::ledger::PoolLedger;
use leadrelay_shared::routing::{Decision, Router, Snapshot};
use leadrelay_shared::rulebook::Rulebook;
use leadrelay_shared::validate;

/// A fixed Tuesday afternoon (10:00 in New York, 15:00 in London, 02:00 in Sydney), so hours
/// and after-hours policies give the same decisions whenever the benchmark runs.
const NOW: &str = "2026-11-17T15:00:00Z";
/// Iterations of the plain timed loop behind each summary line.
const SUMMARY_ITERATIONS: usize = 20_000;

const SYNTHETIC_RULES: usize = 1_000;
const SYNTHETIC_REPS: usize = 500;
const POOL_SIZE: usize = 10;
const SYNTHETIC_POOLS: usize = SYNTHETIC_REPS / POOL_SIZE;
/// (id, time zone, after-hours policy line). APAC is closed at `NOW`.
const TEAMS: [(&str, &str, &str); 5] = [
    ("amer", "America/New_York", "after_hours = \"fallback\""),
    ("emea", "Europe/London", "after_hours = \"hold\""),
    ("apac", "Australia/Sydney", "after_hours = \"fallback\""),
    (
        "latam",
        "America/Sao_Paulo",
        "after_hours = \"on_call\"\non_call.queue = \"inbox\"",
    ),
    ("central", "America/Chicago", "after_hours = \"hold\""),
];
/// The synthetic leads: which rule each must land on (`None`: no rule, the fallback queue).
/// All three rules target round-robin pools of open teams, so the figures differ by how far
/// down the rule list the match is, not by what the target does.
const CASES: [(&str, Option<usize>); 4] = [
    ("early_rule_10", Some(10)),
    ("middle_rule_510", Some(510)),
    ("late_rule_990", Some(990)),
    ("no_rule_fallback", None),
];

/// One routing decision over an empty store, as the route stage makes it.
fn route(router: &Router, lead: &Lead, now: Timestamp) -> Decision {
    let plan = router.plan(lead, now);
    let needs = router.needs(&plan);
    let snapshot = Snapshot::new(
        &needs,
        vec![0; needs.reps.len()],
        vec![PoolLedger::default(); needs.ledgers.len()],
    );
    router.choose(&plan, &snapshot)
}

fn now() -> Timestamp {
    NOW.parse().expect("a valid instant")
}

/// The sample events, parsed, enriched and qualified as the ingest and enrich stages do.
fn sample_leads(config: &Config, now: Timestamp) -> Vec<(String, Lead)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rulebook = Rulebook::new(config);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("events/webhooks"))
        .expect("events/webhooks exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no sample events in events/webhooks");
    files
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let body = std::fs::read(path).expect("readable sample event");
            let capture = validate::parse_capture(&body).expect("the sample parses");
            let flags =
                validate::check(&capture, &config.validation).expect("the sample passes the gates");
            let mut lead = Lead::captured(
                format!("lead-bench-{i:02}"),
                format!("trace-bench-{i:02}"),
                "website".to_owned(),
                format!("msg_bench_{i:02}"),
                capture,
                flags,
                now,
            );
            lead.enrichment = Some(rulebook.enrich(&lead));
            lead.qualification = Some(rulebook.qualify(&lead));
            lead.state = LeadState::Enriched;
            (name, lead)
        })
        .collect()
}

fn rep_id(rep: usize) -> String {
    format!("rep-{rep:03}")
}

/// A team's id for rep `rep`: reps come in blocks of a pool's size, one team per block in turn,
/// so every pool's members share its team.
fn team_of_rep(rep: usize) -> &'static str {
    TEAMS[(rep / POOL_SIZE) % TEAMS.len()].0
}

/// The rule's target: every fourth rule a rep, one in twenty a team queue, the rest a pool.
fn rule_target(rule: usize) -> String {
    if rule % 4 == 3 {
        format!("assign.rep = \"{}\"", rep_id(rule * 37 % SYNTHETIC_REPS))
    } else if rule % 20 == 9 {
        format!("assign.queue = \"queue-{}\"", TEAMS[rule % TEAMS.len()].0)
    } else {
        format!("assign.pool = \"pool-{:02}\"", rule % SYNTHETIC_POOLS)
    }
}

/// 1,000 rules and 500 reps in 5 teams and 50 pools of 10, as TOML text. Each rule is keyed on
/// its own industry (so validation finds no overlap or dead rule) and adds some of country,
/// size, tier, page or an `any` with a topic, which the synthetic leads all satisfy: only the
/// industry decides, and every earlier rule is tried and fails on it.
fn synthetic_config() -> String {
    let mut out = String::from(
        r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE="]

[[queues]]
id = "inbox"
name = "Sales inbox"
manager = "rep-000"
"#,
    );
    for (id, tz, after_hours) in TEAMS {
        out.push_str(&format!(
            r#"
[[queues]]
id = "queue-{id}"
name = "Queue {id}"

[[teams]]
id = "{id}"
name = "Team {id}"
timezone = "{tz}"
hours = ["mon-fri 08:00-18:00"]
holidays = ["2026-12-25", "2027-01-01"]
queue = "queue-{id}"
{after_hours}
"#
        ));
    }
    for rep in 0..SYNTHETIC_REPS {
        let id = rep_id(rep);
        out.push_str(&format!(
            "\n[[reps]]\nid = \"{id}\"\nname = \"Rep {rep}\"\nteam = \"{}\"\n",
            team_of_rep(rep)
        ));
        // Pairs back each other up, within a pool and a team.
        out.push_str(&format!("backup = \"{}\"\n", rep_id(rep ^ 1)));
        if rep % 3 == 0 {
            out.push_str("capacity = 20\n");
        }
        if rep % 10 == 9 {
            out.push_str("hours = [\"mon-thu 09:00-17:00\"]\n");
        }
        if rep % 25 == 7 {
            // Away at `NOW`: a pool member routing skips.
            out.push_str("out_of_office = [\"2026-11-16..2026-11-20\"]\n");
        }
    }
    for pool in 0..SYNTHETIC_POOLS {
        let strategy = if pool % 3 == 2 {
            "least_loaded"
        } else {
            "round_robin"
        };
        let members: Vec<String> = (pool * POOL_SIZE..(pool + 1) * POOL_SIZE)
            .map(|rep| format!("{{ rep = \"{}\", weight = {} }}", rep_id(rep), 1 + rep % 3))
            .collect();
        out.push_str(&format!(
            r#"
[[pools]]
id = "pool-{pool:02}"
name = "Pool {pool}"
team = "{team}"
strategy = "{strategy}"
members = [{members}]
catch_up = {catch_up}
reset = "{reset}"
"#,
            team = team_of_rep(pool * POOL_SIZE),
            members = members.join(", "),
            catch_up = pool % 2 == 0,
            reset = if pool % 2 == 0 { "weekly" } else { "monthly" },
        ));
    }
    for rule in 0..SYNTHETIC_RULES {
        out.push_str(&format!("\n[[rules]]\nname = \"rule {rule:04}\"\n"));
        if rule % 10 == 8 {
            // Rules with `any` are not compared by validation; the topic makes every plan
            // run topic detection, as the example configuration does.
            out.push_str(&format!(
                "when.any = [{{ industries = [\"Industry {rule}\"] }}, {{ topics = [\"migration\"] }}]\n"
            ));
        } else {
            out.push_str(&format!("when.industries = [\"Industry {rule}\"]\n"));
        }
        if rule % 3 == 0 {
            out.push_str("when.countries = [\"US\", \"CA\", \"GB\", \"DE\", \"BR\"]\n");
        }
        if rule % 5 == 0 {
            out.push_str("when.min_employees = 50\n");
        }
        if rule % 7 == 0 {
            out.push_str("when.tiers = [1, 2]\n");
        }
        if rule % 10 == 4 {
            out.push_str("when.pages = [\"/pricing*\", \"/demo*\"]\n");
        }
        out.push_str(&rule_target(rule));
        out.push('\n');
    }
    out.push_str("\n[routing]\nfallback_queue = \"inbox\"\n");
    out
}

/// A lead every synthetic rule's extra conditions accept, in `industry`.
fn synthetic_lead(base: &Lead, industry: &str) -> Lead {
    let mut lead = base.clone();
    lead.incomplete = false;
    lead.capture.event = Some(EventKind::LeadCapture);
    lead.capture.trigger_query = Some("Can we get a quote for 40 seats?".to_owned());
    lead.capture.transcript.clear();
    lead.capture.metadata.source_url =
        Some("https://www.yourco.example/pricing/team?utm_source=ads".to_owned());
    lead.enrichment = Some(Enrichment {
        domain: Some("synthetic-corp.com".to_owned()),
        company: Some("Synthetic Corp".to_owned()),
        employees: Some(200),
        industry: Some(industry.to_owned()),
        country: Some("US".to_owned()),
        sources: vec!["domain_table".to_owned()],
        ..Enrichment::default()
    });
    lead.qualification = Some(Qualification {
        tier: 2,
        score: 40,
        sla_minutes: 15,
        breakdown: Vec::new(),
    });
    lead
}

/// Everything the benchmark routes: both routers and their leads.
struct Fixture {
    now: Timestamp,
    example: Router,
    samples: Vec<(String, Lead)>,
    synthetic: Router,
    /// One lead per entry of `CASES`.
    cases: Vec<(&'static str, Lead)>,
}

impl Fixture {
    fn load() -> Fixture {
        let now = now();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config =
            Config::load(&root.join("config/leadrelay.toml")).expect("config/leadrelay.toml loads");
        let example = Router::new(&config);
        let samples = sample_leads(&config, now);

        let text = synthetic_config();
        let started = Instant::now();
        let synthetic_config = Config::parse(&text, "synthetic.toml", &|_| None)
            .expect("the synthetic config is valid");
        let parsed = started.elapsed();
        let started = Instant::now();
        let synthetic = Router::new(&synthetic_config);
        let compiled = started.elapsed();
        println!(
            "routing: synthetic config ({SYNTHETIC_RULES} rules, {SYNTHETIC_REPS} reps, {SYNTHETIC_POOLS} pools, {} KiB of TOML): parse + validate {:.1} ms, Router::new {:.1} ms",
            text.len() / 1024,
            parsed.as_secs_f64() * 1e3,
            compiled.as_secs_f64() * 1e3,
        );

        let base = &samples.first().expect("at least one sample").1;
        let cases = CASES
            .iter()
            .map(|(name, rule)| {
                let industry = match rule {
                    Some(n) => format!("Industry {n}"),
                    None => "Industry nobody sells to".to_owned(),
                };
                (*name, synthetic_lead(base, &industry))
            })
            .collect();
        let fixture = Fixture {
            now,
            example,
            samples,
            synthetic,
            cases,
        };
        fixture.check();
        fixture
    }

    /// Each synthetic lead must land on the rule it was made for, and on a member of that
    /// rule's pool, or the figures mean nothing.
    fn check(&self) {
        for ((name, lead), (_, rule)) in self.cases.iter().zip(CASES) {
            let assignment = route(&self.synthetic, lead, self.now).assignment;
            match rule {
                Some(n) => {
                    assert_eq!(assignment.rule, format!("rule {n:04}"), "{name}");
                    assert_eq!(
                        assignment.pool,
                        Some(format!("pool-{:02}", n % SYNTHETIC_POOLS)),
                        "{name}: {:?}",
                        assignment.owner
                    );
                    assert!(matches!(assignment.owner, Owner::Rep(_)), "{name}");
                }
                None => {
                    assert_eq!(assignment.rule, "fallback", "{name}");
                    assert_eq!(assignment.owner, Owner::Queue("inbox".to_owned()), "{name}");
                }
            }
        }
        // The example rules must decide some of the samples, not send them all to the inbox.
        assert!(
            self.samples
                .iter()
                .any(
                    |(_, lead)| route(&self.example, lead, self.now).assignment.rule != "fallback"
                ),
            "no sample lead matched an example rule"
        );
    }
}

fn benches(c: &mut Criterion, fx: &Fixture) {
    let samples = &fx.samples;
    let n = samples.len();
    let mut group = c.benchmark_group("routing");

    // The samples take turns, so the example figures are the mix's average.
    group.bench_function("example/plan", |b| {
        let mut i = 0;
        b.iter(|| {
            let lead = &samples[i % n].1;
            i += 1;
            fx.example.plan(black_box(lead), fx.now)
        })
    });
    group.bench_function("example/plan_needs_choose", |b| {
        let mut i = 0;
        b.iter(|| {
            let lead = &samples[i % n].1;
            i += 1;
            route(&fx.example, black_box(lead), fx.now)
        })
    });

    for (name, lead) in &fx.cases {
        group.bench_function(format!("synthetic_1000_rules/{name}"), |b| {
            b.iter(|| route(&fx.synthetic, black_box(lead), fx.now))
        });
    }
    group.finish();
}

/// Microseconds per call of `work` over `leads` in turn, from a plain timed loop.
fn per_lead<T>(leads: &[&Lead], iterations: usize, work: impl Fn(&Lead) -> T) -> f64 {
    let n = leads.len();
    // A short warm-up so the first touches of the allocator and caches are not counted.
    for i in 0..iterations.min(1_000) {
        black_box(work(leads[i % n]));
    }
    let started = Instant::now();
    for i in 0..iterations {
        black_box(work(black_box(leads[i % n])));
    }
    started.elapsed().as_secs_f64() * 1e6 / iterations as f64
}

/// One plain line per case for CI logs.
fn summary(fx: &Fixture, iterations: usize) {
    let samples: Vec<&Lead> = fx.samples.iter().map(|(_, lead)| lead).collect();
    let n = samples.len();
    let plan = per_lead(&samples, iterations, |lead| fx.example.plan(lead, fx.now));
    println!(
        "routing example/plan: {plan:.2} µs per lead ({iterations} leads over {n} sample events)"
    );
    let whole = per_lead(&samples, iterations, |lead| {
        route(&fx.example, lead, fx.now)
    });
    println!(
        "routing example/plan_needs_choose: {whole:.2} µs per lead ({iterations} leads over {n} sample events)"
    );
    for (name, lead) in &fx.cases {
        let whole = per_lead(&[lead], iterations, |lead| {
            route(&fx.synthetic, lead, fx.now)
        });
        let plan = per_lead(&[lead], iterations, |lead| fx.synthetic.plan(lead, fx.now));
        println!(
            "routing synthetic_1000_rules/{name}: {whole:.2} µs per lead (plan + needs + choose; plan alone {plan:.2} µs; {iterations} leads)"
        );
    }
}

fn main() {
    let fixture = Fixture::load();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    benches(&mut criterion, &fixture);
    criterion.final_summary();
    // Test mode as criterion reads it: `cargo test --benches` passes no `--bench`, and
    // `cargo bench -- --test` passes `--test`. Keep the summary quick there too.
    let args: Vec<String> = std::env::args().collect();
    let test_mode =
        args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench");
    summary(&fixture, if test_mode { 100 } else { SUMMARY_ITERATIONS });
}

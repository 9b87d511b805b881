//! The stage logic per lead, pure CPU and no I/O: signature verification, parsing and the
//! validation gates, enrichment, qualification, routing and alert rendering, over the sample
//! events in `events/webhooks/` and the example configuration `config/leadrelay.toml`.
//!
//! `cargo bench -p leadrelay-shared --bench stage_logic`. Prints figures; asserts no timing.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use http::{HeaderMap, HeaderValue};
use jiff::{SignedDuration, Timestamp};
use leadrelay_geoip::Geoip;
use leadrelay_shared::config::GeoipConfig;
use leadrelay_shared::config::{Config, SourceConfig};
use leadrelay_shared::enrichment::Providers;
use leadrelay_shared::model::{Lead, LeadState};
use leadrelay_shared::render::{self, Alert};
use leadrelay_shared::routing::{Router, Snapshot};
use leadrelay_shared::rulebook::Rulebook;
use leadrelay_shared::signature::{
    self, Delivery, Scheme, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use leadrelay_shared::validate;

/// Where the samples are posted; the Standard Webhooks scheme does not sign it.
const URL: &str = "https://leads.example.com/webhooks/website";

/// The per-lead budget the summary line is read against.
const BUDGET_MICROS: f64 = 20.0;
/// Iterations of the plain timed loop behind the summary line.
const SUMMARY_ITERATIONS: usize = 20_000;

/// One sample webhook, signed once up front as its sender would.
struct Sample {
    name: String,
    body: Vec<u8>,
    headers: HeaderMap,
}

/// Everything the stage logic reads: the configuration, compiled once, and the signed samples.
struct Fixture {
    config: Config,
    rulebook: Rulebook,
    router: Router,
    scheme: Scheme,
    /// The instant the samples were signed at and are verified at, so the tolerance never bites.
    now: Timestamp,
    samples: Vec<Sample>,
}

impl Fixture {
    fn load() -> Fixture {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config =
            Config::load(&root.join("config/leadrelay.toml")).expect("config/leadrelay.toml loads");
        let rulebook = Rulebook::new(&config);
        let router = Router::new(&config);
        let source = config
            .source("website")
            .expect("the config has a website source");
        let scheme = source.signature_scheme();
        // A fixed weekday afternoon, so the shipped working hours give the same decisions (and
        // the same figures) whenever the benchmark runs.
        let now: Timestamp = "2026-11-17T15:00:00Z".parse().expect("a valid instant");

        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("events/webhooks"))
            .expect("events/webhooks exists")
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no sample events in events/webhooks");
        let samples = files
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let body = std::fs::read(path).expect("readable sample event");
                let headers = signed(source, &format!("msg_bench_{i:02}"), now, &body);
                Sample {
                    name: path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    body,
                    headers,
                }
            })
            .collect();
        let fixture = Fixture {
            config,
            rulebook,
            router,
            scheme,
            now,
            samples,
        };
        // Every sample must make it through the whole chain, or the figures mean nothing.
        for sample in &fixture.samples {
            let alert = fixture.chain(sample);
            assert!(!alert.text.is_empty(), "{}: empty alert", sample.name);
        }
        fixture
    }

    fn source(&self) -> &SourceConfig {
        self.config.source("website").expect("website source")
    }

    /// Ingest's CPU work: verify, parse, validate and build the lead as `Pipeline::ingest` does.
    fn ingest(&self, sample: &Sample) -> Lead {
        let delivery = Delivery::post(URL, &sample.headers, &sample.body);
        let verified = signature::verify(&self.scheme, &self.source().keys, &delivery, self.now)
            .expect("the sample's signature verifies");
        let capture = validate::parse_capture(&sample.body).expect("the sample parses");
        let flags = validate::check(&capture, &self.config.validation)
            .expect("the sample passes the gates");
        Lead::captured(
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().simple().to_string(),
            "website".to_owned(),
            verified.event_id.expect("Standard Webhooks has an id"),
            capture,
            flags,
            self.now,
        )
    }

    /// The enrich and route stages' decisions, applied to the lead as the stages apply them.
    fn decide(&self, lead: &mut Lead) {
        lead.enrichment = Some(self.rulebook.enrich(lead));
        lead.state = LeadState::Enriched;
        lead.timeline.enriched_at = Some(self.now);

        let qualification = self.rulebook.qualify(lead);
        lead.timeline.sla_due_at = self
            .now
            .checked_add(SignedDuration::from_mins(i64::from(
                qualification.sla_minutes,
            )))
            .ok();
        lead.qualification = Some(qualification);
        // Routing as the route stage does it, over an empty store: plan, read, choose.
        let plan = self.router.plan(lead, self.now);
        let needs = self.router.needs(&plan);
        let snapshot = Snapshot::new(
            &needs,
            vec![0; needs.reps.len()],
            vec![Default::default(); needs.ledgers.len()],
        );
        let decision = self.router.choose(&plan, &snapshot);
        black_box(&decision.effects);
        lead.assignment = Some(decision.assignment);
        lead.state = LeadState::Routed;
        lead.timeline.routed_at = Some(self.now);
    }

    /// The notify stage's rendering.
    fn render(&self, lead: &Lead) -> Alert {
        let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
        render::render(lead, self.rulebook.tier_label(tier))
    }

    /// The whole chain for one lead.
    fn chain(&self, sample: &Sample) -> Alert {
        let mut lead = self.ingest(sample);
        self.decide(&mut lead);
        self.render(&lead)
    }
}

/// The Standard Webhooks headers a sender would attach.
fn signed(source: &SourceConfig, event_id: &str, now: Timestamp, body: &[u8]) -> HeaderMap {
    let key = source
        .keys
        .first()
        .expect("the website source has a secret");
    let timestamp = now.as_second();
    let mut headers = HeaderMap::new();
    headers.insert(
        HEADER_ID,
        HeaderValue::from_str(event_id).expect("ascii id"),
    );
    headers.insert(HEADER_TIMESTAMP, HeaderValue::from(timestamp));
    headers.insert(
        HEADER_SIGNATURE,
        HeaderValue::from_str(&signature::sign_standard(key, event_id, timestamp, body))
            .expect("ascii signature"),
    );
    headers
}

fn benches(c: &mut Criterion, fx: &Fixture) {
    let samples = &fx.samples;
    let n = samples.len();
    // Each iteration is one lead; the samples take turns so the figure is the mix's average.
    let mut group = c.benchmark_group("stage_logic");

    group.bench_function("chain_per_lead", |b| {
        let mut i = 0;
        b.iter(|| {
            let alert = fx.chain(&samples[i % n]);
            i += 1;
            alert
        })
    });

    group.bench_function("verify", |b| {
        let mut i = 0;
        let keys = &fx.source().keys;
        b.iter(|| {
            let sample = &samples[i % n];
            i += 1;
            let delivery = Delivery::post(URL, black_box(&sample.headers), black_box(&sample.body));
            signature::verify(&fx.scheme, keys, &delivery, fx.now).expect("verifies")
        })
    });

    group.bench_function("parse_validate", |b| {
        let mut i = 0;
        b.iter(|| {
            let sample = &samples[i % n];
            i += 1;
            let capture = validate::parse_capture(black_box(&sample.body)).expect("parses");
            let flags = validate::check(&capture, &fx.config.validation).expect("passes");
            (capture, flags)
        })
    });

    // Enrich, qualify and route need a lead to write into: each iteration gets a fresh clone of
    // the captured lead, made outside the timed part.
    let captured: Vec<Lead> = samples.iter().map(|s| fx.ingest(s)).collect();
    // Enrichment from local data and qualification alone, without routing.
    group.bench_function("enrich_qualify", |b| {
        b.iter_batched_ref(
            copies_in_turn(&captured),
            |lead| {
                lead.enrichment = Some(fx.rulebook.enrich(lead));
                black_box(fx.rulebook.qualify(lead))
            },
            BatchSize::SmallInput,
        )
    });
    // The same with the local providers of a real deployment: the geoip provider over a
    // MaxMind-format database (the test fixture), run through the provider orchestration with
    // its budgets, as the enrich stage runs it.
    let geoip = GeoipConfig {
        database: "geoip-test.mmdb".into(),
        budget_ms: Some(50),
        resolved: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../adapters/geoip/tests/fixtures/geoip-test.mmdb"),
        ),
    };
    let providers = Providers::new(vec![Geoip::budgeted(&geoip, 50).expect("fixture opens")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    group.bench_function("enrich_qualify_with_geoip", |b| {
        b.iter_batched_ref(
            copies_in_turn(&captured),
            |lead| {
                let local = fx.rulebook.enrich(lead);
                let (enrichment, _) =
                    runtime.block_on(providers.enrich(lead, local, Duration::from_millis(800)));
                lead.enrichment = Some(enrichment);
                black_box(fx.rulebook.qualify(lead))
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("enrich_qualify_route", |b| {
        b.iter_batched_ref(
            copies_in_turn(&captured),
            |lead| fx.decide(lead),
            BatchSize::SmallInput,
        )
    });

    let routed: Vec<Lead> = captured
        .into_iter()
        .map(|mut lead| {
            fx.decide(&mut lead);
            lead
        })
        .collect();
    group.bench_function("render", |b| {
        let mut i = 0;
        b.iter(|| {
            let lead = &routed[i % n];
            i += 1;
            fx.render(black_box(lead))
        })
    });
    // Terminal + Slack as above, plus the Teams card and the outbound webhook's summary (the
    // notify stage renders those only for leads that have such a destination).
    group.bench_function("render_with_teams", |b| {
        let mut i = 0;
        let options = render::RenderOptions {
            teams: true,
            ..render::RenderOptions::default()
        };
        b.iter(|| {
            let lead = &routed[i % n];
            i += 1;
            let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
            render::render_with(black_box(lead), fx.rulebook.tier_label(tier), &options)
        })
    });
    group.bench_function("render_all_formats", |b| {
        let mut i = 0;
        let options = render::RenderOptions::default().all_formats();
        b.iter(|| {
            let lead = &routed[i % n];
            i += 1;
            let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
            render::render_with(black_box(lead), fx.rulebook.tier_label(tier), &options)
        })
    });

    group.finish();
}

/// Fresh copies of `leads`, one after the other, made outside the timed part by criterion's
/// set-up: the stages under test write into the lead they are given.
fn copies_in_turn(leads: &[Lead]) -> impl FnMut() -> Lead + '_ {
    let mut next = 0;
    move || {
        let lead = leads[next % leads.len()].clone();
        next += 1;
        lead
    }
}

/// One plain line for CI logs, from a plain timed loop over the whole chain.
fn summary(fx: &Fixture, iterations: usize) {
    let n = fx.samples.len();
    // A short warm-up so the first touches of the allocator and caches are not counted.
    for i in 0..iterations.min(1_000) {
        black_box(fx.chain(&fx.samples[i % n]));
    }
    let started = Instant::now();
    for i in 0..iterations {
        black_box(fx.chain(black_box(&fx.samples[i % n])));
    }
    let per_lead = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!(
        "stage logic: {per_lead:.1} µs per lead (budget {BUDGET_MICROS:.0} µs; {iterations} leads over {n} sample events)"
    );
}

fn main() {
    let fixture = Fixture::load();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut criterion, &fixture);
    criterion.final_summary();
    // `cargo test --benches` passes no `--bench`; `cargo bench -- --test` passes `--test`.
    let args: Vec<String> = std::env::args().collect();
    let test_mode =
        args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench");
    summary(&fixture, if test_mode { 100 } else { SUMMARY_ITERATIONS });
}

//! `cargo bench -p leadrelay --bench report`: `leadrelay report` over 100,000 leads in a temp
//! SQLite store (REPORT_BENCH_LEADS to change), against the baseline of reading the facts
//! alone in the same run. The target is under a second for the whole report. Then each of the
//! console's pages over the same leads, served over loopback HTTP, beside the bare facts read
//! of the 180 days the 90-day dashboard reads (target: under 100 ms a page). The dashboard is
//! timed on its first build (no report buckets: every hour built from its facts and stored
//! back), cold with the buckets built (a new console over the same store: its figure cache is
//! empty) and warm (the same request again, from the figure cache).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay::report::{print, Format};
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{
    Assignment, CaptureEvent, Claim, Enrichment, EventKind, Lead, LeadState, Metadata, Owner,
    Qualification,
};
use leadrelay_shared::ports::{ConsoleStore, LeadStore, NoChannels, SystemClock};
use leadrelay_shared::report::{Dimension, Directory, Hours};
use leadrelay_shared::routing::effects::Effects;
use leadrelay_shared::stages::report::{speed_to_lead, ReportQuery};
use leadrelay_shared::stages::Pipeline;

const REPS: [&str; 6] = ["alice", "dana", "bruno", "fatima", "chen", "erin"];
const PAGES: [&str; 4] = ["/pricing", "/demo", "/docs/api", "/blog/launch"];

/// Lead `n` of the bench: captured over the last six days, most worked, some not yet.
fn lead(n: u64, now: Timestamp) -> Lead {
    let captured = now - SignedDuration::from_secs((n * 5) as i64 % (6 * 86_400) + 60);
    let after = |secs: u64| captured + SignedDuration::from_secs(secs as i64);
    let rep = REPS[(n % REPS.len() as u64) as usize].to_owned();
    let tier = (n % 3) as u8 + 1;
    let mut lead = Lead::captured(
        format!("bench-{n}"),
        format!("trace-{n}"),
        if n.is_multiple_of(4) {
            "forms"
        } else {
            "website"
        }
        .into(),
        format!("evt-{n}"),
        CaptureEvent {
            event: Some(EventKind::LeadCapture),
            captured_email: Some(format!("p{n}@example.org")),
            name: Some("Pat Doe".into()),
            trigger_query: (!n.is_multiple_of(5)).then(|| "Can we get a quote?".into()),
            metadata: Metadata {
                source_url: Some(PAGES[(n % PAGES.len() as u64) as usize].into()),
                ..Metadata::default()
            },
            ..CaptureEvent::default()
        },
        Vec::new(),
        captured,
    );
    lead.state = LeadState::Notified;
    lead.enrichment = Some(Enrichment {
        company: Some("Example Org".into()),
        ..Enrichment::default()
    });
    lead.qualification = Some(Qualification {
        tier,
        score: 50,
        sla_minutes: [5, 15, 1440][usize::from(tier - 1)],
        breakdown: Vec::new(),
    });
    lead.assignment = Some(Assignment {
        owner: Owner::Rep(rep.clone()),
        owner_name: rep.clone(),
        rule: ["EMEA", "Americas", "APAC"][(n % 3) as usize].into(),
        reason: "bench".into(),
        pool: None,
        held_until: None,
        trace: None,
    });
    let t = &mut lead.timeline;
    t.routed_at = Some(after(1));
    t.notified_at = Some(after(2));
    if !n.is_multiple_of(10) {
        let claimed = after(30 + n % 900);
        t.claimed_at = Some(claimed);
        lead.state = LeadState::Claimed;
        lead.claim = Some(Claim {
            rep: rep.clone(),
            at: claimed,
            via: "slack".into(),
            routed_to: Some(format!("rep:{rep}")),
            allowed: None,
        });
        if !n.is_multiple_of(7) {
            lead.timeline.first_touch_at = Some(after(60 + n % 20_000));
        }
        if n.is_multiple_of(4) {
            lead.timeline.meeting_booked_at = Some(after(3_600 + n % 86_400));
        }
        if n.is_multiple_of(6) {
            lead.state = LeadState::Closed;
            lead.timeline.closed_at = Some(after(90_000));
            lead.close_reason = Some(if n.is_multiple_of(12) { "won" } else { "lost" }.into());
        }
    }
    lead
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: u64 = std::env::var("REPORT_BENCH_LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("config/leadrelay.toml")).expect("config");
    let config = Config::parse(&text, "leadrelay.toml", &|_| None).expect("config");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Sqlite::open(
        dir.path(),
        QueueSettings {
            max_receives: 5,
            visibility_timeout: std::time::Duration::from_secs(30),
        },
    )
    .expect("store");
    let now = Timestamp::now();
    let store: Arc<dyn LeadStore> = Arc::new(db.clone());
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|n| {
            let store = store.clone();
            async move {
                store.create_lead(&lead(n, now)).await.expect("created");
            }
        })
        .buffer_unordered(256)
        .count()
        .await;
    println!("{count} leads written in {:?}", started.elapsed());

    for round in 1..=3 {
        let from = now - SignedDuration::from_hours(7 * 24);
        let started = Instant::now();
        let facts = store.lead_facts(from, now).await.expect("facts");
        let read = started.elapsed();

        let started = Instant::now();
        let query = ReportQuery {
            since: "7d".into(),
            until: None,
            by: Dimension::Rep,
            hours: Hours::Working,
        };
        let report = speed_to_lead(store.as_ref(), &config, &query, now)
            .await
            .expect("report");
        let mut out = Vec::new();
        print(&report, Format::Table, &mut out).expect("printed");
        let whole = started.elapsed();
        assert_eq!(report.totals.leads, facts.len() as u64);
        println!(
            "round {round}: read the facts of {} leads (baseline) {read:?}; \
             `leadrelay report --since 7d --by rep --hours working` {whole:?} (target < 1 s)",
            facts.len()
        );
    }

    dashboard(&text, &config, db, now).await;
}

/// A console over `db` on a loopback port, and a signed-in operator's session cookie: a new
/// one per round, so the dashboard's first request computes its figures (its cache is empty).
async fn console_server(config_text: &str, db: &Sqlite) -> (String, String, reqwest::Client) {
    // The shipped configuration's demo operator (its password is public, in the file).
    let config = Config::parse(config_text, "leadrelay.toml", &|_| None).expect("config");
    let pipeline = Arc::new(Pipeline::new(
        Arc::new(config),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(NoChannels),
        Arc::new(SystemClock),
    ));
    let console_store: Arc<dyn ConsoleStore> = Arc::new(db.clone());
    let app = leadrelay_console::router(leadrelay_console::Console::new(
        pipeline,
        console_store,
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let http =
        leadrelay_https::client(|b| b.redirect(reqwest::redirect::Policy::none())).expect("client");
    let cookie = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .find(|pair| pair.starts_with(name))
            .map(str::to_owned)
            .expect("cookie")
    };
    let form = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .expect("sign-in form");
    let login = cookie(&form, "__Host-leadrelay-login=");
    let token = login
        .split_once('=')
        .map(|(_, t)| t.to_owned())
        .expect("token");
    let signed_in = http
        .post(format!("{base}/console/login"))
        .header("cookie", &login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "login=ops%40yourco.example&password=leadrelay-demo-operator&login_csrf={token}"
        ))
        .send()
        .await
        .expect("sign in");
    let session = cookie(&signed_in, "__Host-leadrelay-session=");
    (base, session, http)
}

/// One page: its time from request to the whole body, and its size; fails unless 200.
async fn timed(http: &reqwest::Client, base: &str, session: &str, path: &str) -> (Duration, usize) {
    let started = Instant::now();
    let response = http
        .get(format!("{base}{path}"))
        .header("cookie", session)
        .send()
        .await
        .expect("page");
    let status = response.status();
    let page = response.text().await.expect("page");
    let whole = started.elapsed();
    assert!(status.is_success(), "{path}: {status}");
    (whole, page.len())
}

/// Waits until every report hour of `[from, to)` holds a bucket built at its generation under
/// `fingerprint` (the dashboard stores the buckets it built in the background).
async fn buckets_stored(store: &dyn LeadStore, from: Timestamp, to: Timestamp, fingerprint: u64) {
    for _ in 0..3000 {
        let hours = store
            .report_hours(from, to)
            .await
            .expect("report hours")
            .expect("SQLite keeps report buckets");
        if hours.iter().all(|h| {
            h.bucket
                .as_ref()
                .is_some_and(|b| b.generation == h.generation && b.fingerprint == fingerprint)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the dashboard's report buckets were never stored");
}

/// Writes every lead captured in the last `hours` hours again as it is (a new revision, its
/// facts written again): their report hours go stale. Returns how many.
async fn rewrite_recent(store: &dyn LeadStore, now: Timestamp, hours: i64) -> usize {
    let leads = store
        .recent_leads(now - SignedDuration::from_hours(hours), usize::MAX)
        .await
        .expect("recent leads");
    for lead in &leads {
        store
            .advance_lead(lead, lead.state, &Effects::default())
            .await
            .expect("written again");
    }
    leads.len()
}

/// Each console page as an operator, three rounds, beside the baseline of the bare facts read
/// the 90-day dashboard would make (the 90 days and the 90 before them). Each dashboard is
/// timed on its first build (buckets dropped first, then a new console), cold with the
/// buckets built (another new console, so its figure cache is empty) and, for 90 days, warm.
async fn dashboard(config_text: &str, config: &Config, db: Sqlite, now: Timestamp) {
    let store: Arc<dyn LeadStore> = Arc::new(db.clone());
    let fingerprint = Directory::new(config).fingerprint();
    let newest = store
        .recent_leads(now - SignedDuration::from_hours(24), 1)
        .await
        .expect("newest lead");
    let lead_path = format!(
        "/console/leads/{}",
        newest.first().map_or("-", |l| l.id.as_str())
    );
    let day = SignedDuration::from_hours(24);
    for round in 1..=3 {
        let started = Instant::now();
        let facts = store.lead_facts(now - day * 180, now).await.expect("facts");
        let read = started.elapsed();
        let mut cold = Vec::new();
        for (path, days) in [
            ("/console/dashboard?days=90", 90),
            ("/console/dashboard?days=7&hours=working", 7),
        ] {
            db.forget_report_buckets().await.expect("buckets dropped");
            let (base, session, http) = console_server(config_text, &db).await;
            let (first, size) = timed(&http, &base, &session, path).await;
            let read_from = Timestamp::now() - day * (2 * days);
            buckets_stored(store.as_ref(), read_from, Timestamp::now(), fingerprint).await;
            let (base, session, http) = console_server(config_text, &db).await;
            let (built, _) = timed(&http, &base, &session, path).await;
            let (warm, _) = timed(&http, &base, &session, path).await;
            cold.push((first, built, warm, size));
        }
        // A busy day: every lead of the last 24 hours written again since the buckets were
        // built (as claims, touches and closes do), so those hours are stale and rebuilt.
        let rewritten = rewrite_recent(store.as_ref(), now, 24).await;
        let (base, session, http) = console_server(config_text, &db).await;
        let (stale90, _) = timed(&http, &base, &session, "/console/dashboard?days=90").await;
        let (base, session, http) = console_server(config_text, &db).await;
        let (live, live_size) = timed(&http, &base, &session, "/console/leads?hours=72").await;
        let (lead, _) = timed(&http, &base, &session, &lead_path).await;
        let (people, _) = timed(&http, &base, &session, "/console/people").await;
        let [(first90, built90, warm90, size), (first7, built7, _, _)] = cold[..] else {
            unreachable!("two dashboards timed");
        };
        println!(
            "round {round}: read the facts of {} leads over 180 days (baseline) {read:?}; \
             GET /console/dashboard?days=90 ({} KB) first build {first90:?}, cold with buckets \
             {built90:?}, warm {warm90:?}; days=7&hours=working first build {first7:?}, cold \
             with buckets {built7:?}; days=90 cold after the last 24 h's {rewritten} leads were \
             written again {stale90:?}; /console/leads?hours=72 ({} KB) {live:?}; a lead \
             {lead:?}; /console/people {people:?} (target < 100 ms each)",
            facts.len(),
            size / 1024,
            live_size / 1024,
        );
    }
}

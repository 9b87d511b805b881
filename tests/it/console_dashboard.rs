//! The console's speed-to-lead dashboard, end to end over the console's router on SQLite (and,
//! for the report buckets, on DynamoDB with the table's stream): a hand-held clock drives leads through route → notify → claim → touch with the real stage
//! code (as the report tests do), people sign in as an operator, a manager and a rep, and the
//! page and the CSV must show exactly the figures worked out by hand below, each for the
//! viewer's own leads only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use jiff::{SignedDuration, Timestamp};
use lambda_http::tower::ServiceExt as _;
use leadrelay::embedded::Sqlite;
use leadrelay_channels::Channels;
use leadrelay_console::{hash_password, router, Console};
use leadrelay_shared::model::{ActivityKind, Lead, Outcome, Owner};
use leadrelay_shared::ports::{BuiltHour, ConsoleStore, LeadStore, ReportBucket, ReportHour};
use leadrelay_shared::report::{Directory, Records};
use leadrelay_shared::stages::claim::{claim, ClaimVia};
use leadrelay_shared::stages::Pipeline;

use crate::support::{
    example_config, human_activity, initech_lead, open_store, parse_config_with_env, HandClock,
    Terminal,
};

/// Monday 2026-11-23 10:00 UTC.
const T0: &str = "2026-11-23T10:00:00Z";

fn t0_plus(secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().expect("time") + SignedDuration::from_secs(secs)
}

/// The dashboard is looked at a day after T0: the last 7 days are T0 - 6 d .. T0 + 1 d.
fn now() -> Timestamp {
    t0_plus(86_400)
}

/// The example configuration (no hours: nothing is held), Chen's name made to look like a
/// spreadsheet formula, and an operator, EMEA's manager and the rep Chen as console accounts.
fn config_text(hash: &str) -> String {
    let text = example_config().replace("name = \"Chen Wei\"", "name = \"=Chen, \\\"Wei\\\"\"");
    assert!(text.contains("=Chen"), "the example config names Chen Wei");
    // The shipped configuration has a [console] section with demo accounts: these join them.
    let section = if text.contains("\n[console]\n") {
        ""
    } else {
        "[console]\n"
    };
    format!(
        "{text}\n{section}\
         [[console.accounts]]\nlogin = \"ops\"\nrole = \"operator\"\npassword_hash = \"{hash}\"\n\
         [[console.accounts]]\nlogin = \"emea-lead\"\nrole = \"manager\"\nteam = \"emea\"\npassword_hash = \"{hash}\"\n\
         [[console.accounts]]\nlogin = \"chen\"\nrole = \"rep\"\nrep = \"chen\"\npassword_hash = \"{hash}\"\n"
    )
}

struct Harness {
    pipeline: Arc<Pipeline>,
    clock: Arc<HandClock>,
    app: axum::Router,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

/// The store the console runs on.
#[derive(Clone)]
enum Backend {
    Sqlite(Sqlite),
    /// The table keeping report buckets as the console function does (kept at once: no
    /// settle time), its stream handed to the report-hours function's code by [`Harness::settle`].
    Dynamo {
        store: leadrelay_aws::DynamoStore,
        queues: leadrelay_aws::SqsQueues,
        stream: Box<crate::support::aws::ReportStream>,
    },
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_store(dir.path());
        let clock = Arc::new(HandClock::new(now()));
        Harness::over(Backend::Sqlite(db), clock, Some(dir), &|text| text)
    }

    async fn on_moto() -> Harness {
        let deployment = crate::support::aws::moto().await.deploy(5, 30).await;
        let backend = Backend::Dynamo {
            store: deployment.store.with_report_buckets(Duration::ZERO),
            queues: deployment.queues,
            stream: Box::new(deployment.report_stream),
        };
        Harness::over(backend, Arc::new(HandClock::new(now())), None, &|text| text)
    }

    /// Another console over the same store and clock, its configuration edited by `edit`.
    fn reconfigured(&self, edit: &dyn Fn(String) -> String) -> Harness {
        Harness::over(self.backend.clone(), self.clock.clone(), None, edit)
    }

    fn over(
        backend: Backend,
        clock: Arc<HandClock>,
        dir: Option<tempfile::TempDir>,
        edit: &dyn Fn(String) -> String,
    ) -> Harness {
        let channels =
            Channels::new(Duration::from_secs(1), Box::new(Terminal::default())).expect("channels");
        let hash = hash_password("pw").expect("hash");
        let (leads, console, queue): (
            Arc<dyn LeadStore>,
            Arc<dyn ConsoleStore>,
            Arc<dyn leadrelay_shared::ports::Queue>,
        ) = match &backend {
            Backend::Sqlite(db) => (
                Arc::new(db.clone()),
                Arc::new(db.clone()),
                Arc::new(db.clone()),
            ),
            Backend::Dynamo { store, queues, .. } => (
                Arc::new(store.clone()),
                Arc::new(store.clone()),
                Arc::new(queues.clone()),
            ),
        };
        let pipeline = Arc::new(Pipeline::new(
            Arc::new(parse_config_with_env(&edit(config_text(&hash)), &[])),
            leads,
            queue,
            Arc::new(channels),
            clock.clone(),
        ));
        let app = router(Console::new(pipeline.clone(), console, None));
        Harness {
            pipeline,
            clock,
            app,
            backend,
            _dir: dir,
        }
    }

    /// Lets the writes so far reach the report hours (on DynamoDB, through the stream).
    async fn settle(&self) {
        if let Backend::Dynamo { stream, .. } = &self.backend {
            stream.pump().await;
        }
    }

    /// The report hours of the 7-day dashboard's read (two weeks), once every one of them
    /// holds a bucket built at its generation under this console's configuration (the
    /// dashboard stores them in the background).
    async fn buckets_kept(&self) -> Vec<ReportHour> {
        let (from, to) = (now() - SignedDuration::from_hours(14 * 24), now());
        let fingerprint = Directory::new(&self.pipeline.config).fingerprint();
        for _ in 0..500 {
            self.settle().await;
            let hours = self
                .store()
                .report_hours(from, to)
                .await
                .expect("report hours")
                .expect("the store keeps buckets");
            let built = |h: &ReportHour| {
                h.bucket
                    .as_ref()
                    .is_some_and(|b| b.generation == h.generation && b.fingerprint == fingerprint)
            };
            if !hours.is_empty() && hours.iter().all(built) {
                return hours;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the dashboard's buckets were never stored");
    }

    /// The CSV's headline row of the current window, as cells.
    async fn current_row(&self, query: &str, session: &str) -> Vec<String> {
        self.settle().await;
        self.clock.set(now());
        let csv = self
            .get(&format!("/console/dashboard.csv{query}"), Some(session))
            .await;
        assert_eq!(csv.status, StatusCode::OK);
        let row = csv.text.split("\r\n").nth(1).expect("current row");
        assert!(row.starts_with("current,(all),"), "{row}");
        row.split(',').map(str::to_owned).collect()
    }

    fn store(&self) -> &dyn LeadStore {
        self.pipeline.store.as_ref()
    }

    /// Captured at `captured`, routed and alerted `alert_after` seconds later; returns the
    /// owning rep.
    async fn capture(
        &self,
        id: &str,
        captured: Timestamp,
        alert_after: i64,
        edit: impl FnOnce(&mut Lead),
    ) -> String {
        self.clock.set(captured);
        let mut lead = initech_lead(id, &format!("{id}@initech.co.uk"), captured);
        edit(&mut lead);
        self.store().create_lead(&lead).await.expect("created");
        self.clock
            .set(captured + SignedDuration::from_secs(alert_after));
        crate::support::route_and_notify(&self.pipeline, id).await;
        self.settle().await;
        let lead = self
            .store()
            .get_lead(id)
            .await
            .expect("read")
            .expect("lead");
        match lead.assignment.expect("routed").owner {
            Owner::Rep(rep) => rep,
            other => panic!("{id} went to {other}, not a rep"),
        }
    }

    async fn claim(&self, id: &str, rep: &str, when: Timestamp) {
        self.clock.set(when);
        claim(&self.pipeline, id, rep, ClaimVia::Slack)
            .await
            .expect("claimed");
        self.settle().await;
    }

    async fn activity(&self, id: &str, kind: ActivityKind, when: Timestamp) {
        self.clock.set(when);
        self.pipeline
            .record_activity(&human_activity(id, kind, when))
            .await
            .expect("recorded");
        self.settle().await;
    }

    /// Signs `login` in through the sign-in form; returns the session cookie.
    async fn sign_in(&self, login: &str) -> String {
        self.clock.set(now());
        let form = self.get("/console/login", None).await;
        assert_eq!(form.status, StatusCode::OK);
        let login_cookie = cookie_pair(&form.cookies, "__Host-leadrelay-login");
        let token = login_cookie
            .split_once('=')
            .map(|(_, v)| v.to_owned())
            .expect("token");
        let body = format!("login={login}&password=pw&login_csrf={token}&next=%2Fconsole%2Fleads");
        let request = Request::post("/console/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, login_cookie)
            .body(Body::from(body))
            .expect("request");
        let answer = self.send(request).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{login} signs in");
        cookie_pair(&answer.cookies, "__Host-leadrelay-session")
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(cookie) = session {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).expect("request"))
            .await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let headers = response.headers().clone();
        let cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            cookies,
            text: String::from_utf8(body.to_vec()).expect("UTF-8"),
        }
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    cookies: Vec<String>,
    text: String,
}

/// `name=value` of the Set-Cookie named `name`.
fn cookie_pair(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
        .to_owned()
}

/// The text of the table `id` on the page, tags stripped, one line per row, cells split by
/// ` | `: what a screen reader reads of it.
fn table(page: &str, id: &str) -> Vec<String> {
    let start = page
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = start + page[start..].find("</table>").expect("table end");
    page[start..end]
        .split("</tr>")
        .map(|row| {
            row.split("</td>")
                .flat_map(|cell| cell.split("</th>"))
                .map(strip_tags)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .filter(|row| !row.is_empty())
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

/// No chart coordinate came out of a division by zero.
fn assert_finite(page: &str) {
    for bad in ["NaN", "=\"inf", "=\"-inf", "inf,", ",inf"] {
        assert!(!page.contains(bad), "{bad} in the page");
    }
}

/// The headline figure `label` and its previous-period value, as the page shows them.
fn headline(page: &str, label: &str) -> (String, String) {
    let at = page
        .find(&format!("<div class=\"label\">{label}</div>"))
        .unwrap_or_else(|| panic!("no headline {label}"));
    let rest = &page[at..];
    let value = rest
        .split("<div class=\"value\">")
        .nth(1)
        .and_then(|v| v.split("</div>").next())
        .expect("value");
    let previous = rest
        .split("<div class=\"muted\">")
        .nth(1)
        .and_then(|v| v.split("</div>").next())
        .expect("previous");
    (strip_tags(value), strip_tags(previous))
}

/// The leads, each step in seconds after its capture:
///
/// | lead | owner | captured | alerted | claimed | first touch | meeting booked |
/// |---|---|---|---|---|---|---|
/// | p1 | EMEA (bruno or fatima) | T0 - 8 d (the previous period) | 20 | 300 | 600 (e-mail) | - |
/// | e1 | EMEA | T0 | 20 | 120 | 240 (call) | 3600 |
/// | e2 | EMEA | T0 + 600 | 30 | 600 | 1200 (e-mail) | - |
/// | e3 | EMEA | T0 + 1200 | 10 | - | - | - |
/// | a1 | chen (APAC, Australia) | T0 + 1800 | 15 | 1200 | 7200 (call) | - |
///
/// All tier 2 (15 min SLA): p1, e1 and e2 met it, e3 (never answered) and a1 (claimed at
/// 20 min) missed it.
async fn drive(h: &Harness) {
    let p1_at = t0_plus(-8 * 86_400);
    let p1 = h.capture("p1", p1_at, 20, |_| {}).await;
    h.claim("p1", &p1, p1_at + SignedDuration::from_secs(300))
        .await;
    h.activity(
        "p1",
        ActivityKind::Emailed,
        p1_at + SignedDuration::from_secs(600),
    )
    .await;

    let e1 = h.capture("e1", t0_plus(0), 20, |_| {}).await;
    let e2 = h.capture("e2", t0_plus(600), 30, |_| {}).await;
    let e3 = h.capture("e3", t0_plus(1200), 10, |_| {}).await;
    let a1 = h
        .capture("a1", t0_plus(1800), 15, |lead| {
            let enrichment = lead.enrichment.as_mut().expect("enriched");
            enrichment.country = Some("AU".into());
            enrichment.domain = Some("wallaby.com.au".into());
            enrichment.company = Some("Wallaby Freight".into());
            lead.capture.captured_email = Some("a1@wallaby.com.au".into());
        })
        .await;
    for (lead, owner) in [("p1", &p1), ("e1", &e1), ("e2", &e2), ("e3", &e3)] {
        assert!(
            ["bruno", "fatima"].contains(&owner.as_str()),
            "{lead} went to {owner}"
        );
    }
    assert_eq!(a1, "chen");

    h.claim("e1", &e1, t0_plus(120)).await;
    h.activity("e1", ActivityKind::Called, t0_plus(240)).await;
    h.activity("e1", ActivityKind::MeetingBooked, t0_plus(3600))
        .await;
    h.claim("e2", &e2, t0_plus(1200)).await;
    h.activity("e2", ActivityKind::Emailed, t0_plus(1800)).await;
    h.claim("a1", "chen", t0_plus(3000)).await;
    h.activity("a1", ActivityKind::Called, t0_plus(9000)).await;
}

const CSV_HEADER: &str = "period,rep,name,leads,contacted,contact_rate,meetings_booked,\
meeting_booked_rate,sla_met,sla_missed,sla_pending,sla_compliance,first_response_p50_secs,\
first_response_p90_secs,system_p50_secs,system_p90_secs,acknowledgement_p50_secs,\
acknowledgement_p90_secs,human_p50_secs,human_p90_secs,time_to_meeting_p50_secs,won_rate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_every_figure_of_all_leads() {
    let h = Harness::new();
    drive(&h).await;
    let session = h.sign_in("ops").await;
    let page = h.get("/console/dashboard", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = &page.text;

    // First response: e1 240 s, e2 1200 s, a1 7200 s (e3 never) → p50 rank 2, p90 rank 3;
    // the period before: p1's 600 s.
    assert_eq!(
        headline(text, "Speed to lead p50"),
        ("20m 00s".into(), "previous 7 days: 10m 00s".into())
    );
    assert_eq!(
        headline(text, "Speed to lead p90"),
        ("2h 00m".into(), "previous 7 days: 10m 00s".into())
    );
    assert_eq!(
        headline(text, "SLA compliance"),
        ("50%".into(), "previous 7 days: 100%".into())
    );
    assert_eq!(
        headline(text, "Contact rate"),
        ("75%".into(), "previous 7 days: 100%".into())
    );
    assert_eq!(
        headline(text, "Meeting rate"),
        ("25%".into(), "previous 7 days: 0%".into())
    );

    assert_eq!(
        table(text, "bucket-table"),
        [
            "First response | Leads | Share | Won rate",
            "< 5 min | 1 | 25% | –",
            "5-15 min | 0 | 0% | –",
            "15-30 min | 1 | 25% | –",
            "30-60 min | 0 | 0% | –",
            "1-4 h | 1 | 25% | –",
            "4-24 h | 0 | 0% | –",
            "> 24 h | 0 | 0% | –",
            "never | 1 | 25% | –",
        ]
    );
    // System 20 30 10 15; acknowledgement 100 570 1185; human 120 600 6000.
    assert_eq!(
        table(text, "chart-delays-table"),
        [
            "Figure | Leads measured | p50 | p90",
            "System | 4 | 15s | 30s",
            "Acknowledgement | 3 | 9m 30s | 19m 45s",
            "Human | 3 | 10m 00s | 1h 40m",
        ]
    );
    assert_eq!(
        table(text, "chart-meeting-table"),
        [
            "Figure | Leads measured | p50 | p90",
            "Time to meeting | 1 | 1h 00m | 1h 00m",
        ]
    );
    // One row a day, each from 10:00 (the window ends at T0 + 1 d): every lead of the window
    // was captured on the last day.
    let sla = table(text, "sla-table");
    assert_eq!(sla.len(), 1 + 7);
    assert_eq!(sla[0], "Day (UTC, from) | Tier 2 met / answered");
    assert_eq!(sla[1], "2026-11-17 10:00 | –");
    assert_eq!(sla[6], "2026-11-22 10:00 | –");
    assert_eq!(sla[7], "2026-11-23 10:00 | 2 / 4 (50%)");
    assert_eq!(text.matches("class=\"dot tier-2\"").count(), 1);
    assert_finite(text);

    let reps = table(text, "rep-table");
    let chen = reps
        .iter()
        .find(|row| row.starts_with("=Chen"))
        .expect("Chen's row");
    assert_eq!(
        chen,
        "=Chen, \"Wei\" | 1 | 1 | 0 | 1 | 0% | 2h 00m | 2h 00m | 19m 45s | 0 | –"
    );
    let emea_leads: u64 = reps
        .iter()
        .filter(|row| row.starts_with("Bruno") || row.starts_with("Fatima"))
        .map(|row| {
            row.split(" | ")
                .nth(1)
                .expect("leads")
                .parse::<u64>()
                .expect("n")
        })
        .sum();
    assert_eq!(emea_leads, 3);

    let csv = h.get("/console/dashboard.csv", Some(&session)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"leadrelay-dashboard-7d-2026-11-24.csv\""
    );
    let lines: Vec<&str> = csv.text.split("\r\n").collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(
        lines[1],
        "current,(all),,4,3,0.7500,1,0.2500,2,2,0,0.5000,1200,7200,15,30,570,1185,600,6000,3600,"
    );
    assert_eq!(
        lines[2],
        "previous,(all),,1,1,1.0000,0,0.0000,1,0,0,1.0000,600,600,20,20,280,280,300,300,,"
    );
    // The formula-looking name goes out as text, quoted.
    assert!(
        lines.contains(
            &"current,chen,\"'=Chen, \"\"Wei\"\"\",1,1,1.0000,0,0.0000,0,1,0,0.0000,7200,7200,15,15,1185,1185,6000,6000,,"
        ),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 3 + reps.len() - 1 + 1, "{lines:?}");
    assert_eq!(lines.last(), Some(&""));

    // Filters: a source without leads gives the empty state, not a broken chart.
    let empty = h
        .get("/console/dashboard?days=30&source=forms", Some(&session))
        .await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.text.contains("No leads in this window"));
    assert_finite(&empty.text);
    assert_eq!(
        headline(&empty.text, "Speed to lead p50"),
        ("–".into(), "previous 30 days: –".into())
    );
    assert_eq!(table(&empty.text, "sla-table").len(), 1 + 30);
    // A team filter narrows to the team's leads.
    let apac = h.get("/console/dashboard?team=apac", Some(&session)).await;
    assert_eq!(headline(&apac.text, "Speed to lead p50").0, "2h 00m");
    for bad in ["days=14", "hours=fast", "team=nowhere"] {
        let answer = h
            .get(&format!("/console/dashboard?{bad}"), Some(&session))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sees_only_their_teams_figures() {
    let h = Harness::new();
    drive(&h).await;
    let session = h.sign_in("emea-lead").await;
    let page = h.get("/console/dashboard", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    // e1, e2, e3 only: a1 (APAC) does not count. First response 240, 1200.
    assert_eq!(headline(&page.text, "Speed to lead p50").0, "4m 00s");
    assert_eq!(headline(&page.text, "Speed to lead p90").0, "20m 00s");
    assert_eq!(headline(&page.text, "Contact rate").0, "67%");
    let buckets = table(&page.text, "bucket-table");
    assert_eq!(buckets[5], "1-4 h | 0 | 0% | –");
    assert_eq!(buckets[8], "never | 1 | 33% | –");
    assert!(
        !page.text.contains("Chen"),
        "another team's rep never appears"
    );

    let csv = h.get("/console/dashboard.csv", Some(&session)).await;
    let lines: Vec<&str> = csv.text.split("\r\n").collect();
    assert!(lines[1].starts_with("current,(all),,3,2,"), "{}", lines[1]);
    assert!(!csv.text.contains("chen"));

    for other in [
        "/console/dashboard?team=apac",
        "/console/dashboard.csv?team=apac",
    ] {
        let refused = h.get(other, Some(&session)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{other}");
        assert!(!refused.text.contains("2h 00m"));
    }
    assert_eq!(
        h.get("/console/dashboard?team=emea", Some(&session))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_sees_only_their_own_leads() {
    let h = Harness::new();
    drive(&h).await;
    let session = h.sign_in("chen").await;
    let page = h.get("/console/dashboard", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(headline(&page.text, "Speed to lead p50").0, "2h 00m");
    assert_eq!(headline(&page.text, "SLA compliance").0, "0%");
    assert_eq!(
        headline(&page.text, "Contact rate"),
        ("100%".into(), "previous 7 days: –".into())
    );
    let buckets = table(&page.text, "bucket-table");
    assert_eq!(buckets[1], "< 5 min | 0 | 0% | –");
    assert_eq!(buckets[5], "1-4 h | 1 | 100% | –");
    let reps = table(&page.text, "rep-table");
    assert_eq!(reps.len(), 2, "{reps:?}");
    assert!(reps[1].starts_with("=Chen"));
    assert!(!page.text.contains("Bruno") && !page.text.contains("Fatima"));

    // Signed out: sent to sign in, nothing shown.
    let anonymous = h.get("/console/dashboard", None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.headers[header::LOCATION]
        .to_str()
        .expect("ascii")
        .starts_with("/console/login?next="));
}

/// Cells of the CSV's current row ([`CSV_HEADER`]).
const LEADS: usize = 3;
const CONTACTED: usize = 4;
const SLA_MET: usize = 8;
const SLA_MISSED: usize = 9;
const SLA_COMPLIANCE: usize = 11;
const SYSTEM_P50: usize = 14;
const SYSTEM_P90: usize = 15;
const WON_RATE: usize = 21;

async fn the_dashboard_is_read_from_its_stored_buckets_with_the_same_figures(h: Harness) {
    drive(&h).await;
    let session = h.sign_in("ops").await;
    let csv = h.get("/console/dashboard.csv", Some(&session)).await;
    let page = h.get("/console/dashboard", Some(&session)).await;
    let hours = h.buckets_kept().await;
    // p1's hour eight days back, and T0's hour holding the four leads of the window.
    assert_eq!(hours.len(), 2, "{hours:?}");

    // From the buckets now: the same page and CSV as from the facts, to the byte.
    h.clock.set(now());
    let again = h.get("/console/dashboard.csv", Some(&session)).await;
    assert_eq!(again.text, csv.text);
    assert!(again.text.contains(
        "current,(all),,4,3,0.7500,1,0.2500,2,2,0,0.5000,1200,7200,15,30,570,1185,600,6000,3600,"
    ));
    let page_again = h.get("/console/dashboard", Some(&session)).await;
    assert_eq!(page_again.text, page.text);

    // They are what is read: T0's hour replaced by an empty bucket at its generation leaves
    // the window without leads, the period before unchanged.
    let t0_hour = hours.last().expect("T0's hour");
    let empty = Records::default().encode().expect("encoded");
    let fingerprint = Directory::new(&h.pipeline.config).fingerprint();
    let kept = h
        .store()
        .put_report_hours(&[BuiltHour {
            hour: t0_hour.hour,
            bucket: ReportBucket {
                generation: t0_hour.generation,
                fingerprint,
                bytes: empty,
            },
        }])
        .await
        .expect("put");
    assert_eq!(kept, 1);
    let row = h.current_row("", &session).await;
    assert_eq!(row[LEADS], "0");
    h.clock.set(now());
    let emptied = h.get("/console/dashboard.csv", Some(&session)).await;
    assert_eq!(
        emptied.text.split("\r\n").nth(2),
        csv.text.split("\r\n").nth(2),
        "the previous period"
    );
}

async fn a_claim_a_touch_and_a_close_make_their_hour_stale_and_show_at_once(h: Harness) {
    drive(&h).await;
    let session = h.sign_in("ops").await;
    let row = h.current_row("", &session).await;
    assert_eq!(
        (&row[SLA_MET][..], &row[SLA_MISSED][..], &row[CONTACTED][..]),
        ("2", "2", "3")
    );
    let stale = |hours: &[ReportHour]| {
        hours
            .iter()
            .filter(|h| {
                h.bucket
                    .as_ref()
                    .is_some_and(|b| b.generation != h.generation)
            })
            .count()
    };
    let e3_owner = match h.store().get_lead("e3").await.expect("read").expect("e3") {
        Lead {
            assignment: Some(assignment),
            ..
        } => assignment.owner.id().to_owned(),
        _ => panic!("e3 was routed"),
    };

    // e3 (captured at T0 + 20 min, 15 min SLA, never answered) claimed at 10 minutes: met.
    h.buckets_kept().await;
    h.claim("e3", &e3_owner, t0_plus(1800)).await;
    h.settle().await;
    let hours = h
        .store()
        .report_hours(now() - SignedDuration::from_hours(14 * 24), now())
        .await
        .expect("hours")
        .expect("kept");
    assert_eq!(stale(&hours), 1, "T0's hour is stale: {hours:?}");
    let row = h.current_row("", &session).await;
    assert_eq!(
        (
            &row[SLA_MET][..],
            &row[SLA_MISSED][..],
            &row[SLA_COMPLIANCE][..]
        ),
        ("3", "1", "0.7500")
    );

    // Its first touch: contacted.
    h.buckets_kept().await;
    h.activity("e3", ActivityKind::Called, t0_plus(2400)).await;
    assert_eq!(h.current_row("", &session).await[CONTACTED], "4");

    // Closed won: the only outcome of the window.
    h.buckets_kept().await;
    assert_eq!(h.current_row("", &session).await[WON_RATE], "");
    h.activity("e3", ActivityKind::Closed(Outcome::Won), t0_plus(3000))
        .await;
    assert_eq!(h.current_row("", &session).await[WON_RATE], "1.0000");
}

async fn a_changed_configuration_rebuilds_the_buckets(h: Harness) {
    drive(&h).await;
    let session = h.sign_in("ops").await;
    // No working hours configured: the working clock is the wall clock.
    let row = h.current_row("?hours=working", &session).await;
    assert_eq!((&row[SYSTEM_P50][..], &row[SYSTEM_P90][..]), ("15", "30"));
    let before = h.buckets_kept().await;

    // EMEA now opens at noon (London, and Berlin for Bruno: 12:00 and 11:00 UTC in November):
    // e1, e2 and e3, alerted at 10:00-10:21 by EMEA's reps, took no working time; Chen (APAC,
    // no hours) still 15 s.
    let emea_late = |text: String| {
        text.replacen(
            "id = \"emea\"\n",
            "id = \"emea\"\nhours = [\"mon-fri 12:00-17:30\"]\n",
            1,
        )
    };
    let later = h.reconfigured(&emea_late);
    let session_later = later.sign_in("ops").await;
    let row = later.current_row("?hours=working", &session_later).await;
    assert_eq!((&row[SYSTEM_P50][..], &row[SYSTEM_P90][..]), ("0", "15"));
    let after = later.buckets_kept().await;
    assert_eq!(after.len(), before.len());
    let fingerprint = |hours: &[ReportHour]| {
        hours
            .iter()
            .map(|h| h.bucket.as_ref().expect("kept").fingerprint)
            .collect::<Vec<_>>()
    };
    assert!(fingerprint(&after)
        .iter()
        .all(|f| !fingerprint(&before).contains(f)));

    // And back: the first configuration's figures again (signed in again on that console).
    let session = h.sign_in("ops").await;
    let row = h.current_row("?hours=working", &session).await;
    assert_eq!((&row[SYSTEM_P50][..], &row[SYSTEM_P90][..]), ("15", "30"));
}

/// The report-bucket checks on both stores: SQLite moves an hour in the write, DynamoDB once
/// the table's stream reached the report-hours function.
mod report_buckets {
    use super::Harness;

    macro_rules! both {
        ($($check:ident),* $(,)?) => {
            mod on_sqlite {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(Harness::new()).await;
                })*
                use super::Harness;
            }
            mod on_dynamodb {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(Harness::on_moto().await).await;
                })*
                use super::Harness;
            }
        };
    }
    both!(
        the_dashboard_is_read_from_its_stored_buckets_with_the_same_figures,
        a_claim_a_touch_and_a_close_make_their_hour_stale_and_show_at_once,
        a_changed_configuration_rebuilds_the_buckets,
    );
}

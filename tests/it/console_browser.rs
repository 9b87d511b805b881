//! The console end to end in a real headless Chromium over WebDriver: signing in through the
//! form, the live list refreshing itself and its SLA clocks ticking (the page's script), a
//! claim, out-of-office, a dead letter replayed, a dashboard figure moving, what a rep may not
//! see, and a forged CSRF token refused. `screenshots` (ignored; `make screenshots`) writes
//! one PNG per page to `LEADRELAY_SCREENSHOTS`.
//!
//! Needs chromedriver and Chromium (`scripts/install-browser.sh`); see support/browser.rs.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{ConsoleStore, DeadLetters, LeadStore};
use leadrelay_shared::routing::away_until_counter;
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::browser::{self, Browser, Tools};
use crate::support::{eventually, example_config, with_retry_schedule, Edit, Server};

/// One Chromium at a time: several at once on a small CI machine make the live list's
/// 5-second refresh and the clock's tick late for every test.
static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

/// The console's accounts: login, role, rep, team. Each password is `<login>-pw`.
const ACCOUNTS: [(&str, &str, Option<&str>, Option<&str>); 4] = [
    ("olivia", "operator", None, None),
    // Manages the Americas team (Alice, Dana, Sam, herself).
    ("maria", "manager", Some("maria"), Some("amer")),
    ("alice", "rep", Some("alice"), None),
    // EMEA: another team.
    ("bruno", "rep", Some("bruno"), None),
];

fn password(login: &str) -> String {
    format!("{login}-pw")
}

/// `[console]` with the four accounts, their passwords hashed as the CLI would.
fn console_section() -> String {
    let mut text = String::from("\n[console]\n");
    for (login, role, rep, team) in ACCOUNTS {
        let hash = leadrelay_console::hash_password(&password(login)).expect("hash");
        text.push_str(&format!(
            "\n[[console.accounts]]\nlogin = \"{login}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\"\n"
        ));
        if let Some(rep) = rep {
            text.push_str(&format!("rep = \"{rep}\"\n"));
        }
        if let Some(team) = team {
            text.push_str(&format!("team = \"{team}\"\n"));
        }
    }
    text
}

/// The example configuration (no working hours: the tests run at any hour) with these
/// accounts in place of the shipped demo accounts.
fn config() -> String {
    without_console(&example_config()) + &console_section()
}

/// `config` without its `[console]` section and accounts.
fn without_console(config: &str) -> String {
    let mut in_console = false;
    let mut found = false;
    let kept: Vec<&str> = config
        .lines()
        .filter(|line| {
            let header = line.trim_start();
            if header.starts_with('[') {
                in_console =
                    header.starts_with("[console]") || header.starts_with("[[console.accounts]]");
                found |= in_console;
            }
            !in_console
        })
        .collect();
    assert!(
        found,
        "the example configuration has no [console] section to replace"
    );
    kept.join("\n") + "\n"
}

/// A browser test's machine: the one-Chromium slot, the server, the browser. `None` when
/// browser tests are skipped on request.
struct Session {
    server: Server,
    browser: Browser,
    _slot: MutexGuard<'static, ()>,
}

async fn session(config_text: &str) -> Option<Session> {
    let tools: Tools = browser::tools()?;
    let slot = ONE_BROWSER.lock().await;
    let server = Server::start_with(config_text).await;
    let browser = Browser::start(&tools, &server.base).await;
    Some(Session {
        server,
        browser,
        _slot: slot,
    })
}

impl Session {
    async fn end(self) {
        self.browser.close().await;
        self.server.stop().await;
    }
}

/// A chatbot capture from `email` on the pricing page: tier 1, a 5-minute SLA.
fn capture(email: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "lead_capture",
        "timestamp": Timestamp::now().to_string(),
        "captured_email": email,
        "name": name,
        "trigger_query": "Can we get a quote for the Team plan?",
        "metadata": { "source_url": "/pricing" },
    }))
    .expect("json")
}

/// Sends a capture and waits until its alert is out; its lead id.
async fn notified(server: &Server, email: &str, name: &str) -> String {
    let answer = server
        .send("website", &format!("evt-{email}"), &capture(email, name))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&id, "notified").await;
    id
}

/// Acme Robotics is an existing customer: its leads go to Alice, its account owner.
const ACME: &str = "acme-robotics.com";
/// Initech UK is in EMEA: its leads go to the EMEA pool (Bruno first).
const INITECH: &str = "initech.co.uk";

async fn stored(server: &Server, id: &str) -> leadrelay_shared::model::Lead {
    server
        .db
        .get_lead(id)
        .await
        .expect("store")
        .expect("the lead is stored")
}

async fn audit_actions(server: &Server) -> Vec<(String, String, String)> {
    let since = Timestamp::now() - 1.hour();
    server
        .db
        .actions_since(since, 100)
        .await
        .expect("audit log")
        .into_iter()
        .map(|a| (a.login, a.action, a.target))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_signs_in_watches_a_lead_arrive_with_its_clock_ticking_and_claims_it() {
    let Some(s) = session(&config()).await else {
        return;
    };
    let b = &s.browser;
    // Any console page sends a stranger to the sign-in form, and back after it.
    b.open("/console/leads").await;
    b.wait_for_path("/console/login?next=%2Fconsole%2Fleads")
        .await;
    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    assert!(b.text("header.top .who").await.contains("alice · rep"));
    b.wait_for_text("No leads in this window.", Duration::from_secs(5))
        .await;
    // Marks this page: if it is still there when the lead shows, the list refreshed itself.
    b.run("window.leadrelayPage = 'first load'; return null;", vec![])
        .await;

    let id = notified(&s.server, &format!("jordan.lee@{ACME}"), "Jordan Lee").await;
    let row = format!("tr[data-lead='{id}']");
    let started = std::time::Instant::now();
    while !b.has(&row).await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "lead {id} never appeared in the live list; it shows:\n{}",
            b.body_text().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        b.run("return window.leadrelayPage || null;", vec![]).await,
        json!("first load"),
        "the row came by the live refresh, not a reload"
    );
    assert!(b.text(&row).await.contains("Jordan Lee"));

    // The SLA clock ticks in the page.
    let clock = format!("{row} [data-due]");
    let first = b.text(&clock).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = b.text(&clock).await;
    assert!(first.starts_with("due in "), "{first}");
    assert_ne!(first, second, "the SLA clock did not tick");

    // Open the lead and claim it.
    b.click(&format!("{row} a")).await;
    b.wait_for_path(&format!("/console/leads/{id}")).await;
    assert!(b.text("main h1").await.contains("Jordan Lee"));
    b.click(&format!(
        "form[action='/console/leads/{id}/claim'] button[type=submit]"
    ))
    .await;
    b.wait_for_path(&format!("/console/leads/{id}?done=claimed"))
        .await;
    assert!(b.text("p.notice").await.contains("You claimed this lead"));
    assert!(b.text(".figures").await.contains("claimed"));
    assert!(
        !b.has(&format!("form[action='/console/leads/{id}/claim']"))
            .await
    );

    let lead = stored(&s.server, &id).await;
    assert!(lead.timeline.claimed_at.is_some(), "claimed_at is set");
    assert_eq!(lead.claim.as_ref().map(|c| c.rep.as_str()), Some("alice"));
    let audit = audit_actions(&s.server).await;
    assert!(
        audit.contains(&("alice".into(), "claim".into(), id.clone())),
        "{audit:?}"
    );
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_sets_out_of_office_and_the_next_lead_skips_them() {
    let Some(s) = session(&config()).await else {
        return;
    };
    let b = &s.browser;
    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    b.open("/console/people").await;
    let until = (Timestamp::now() + jiff::SignedDuration::from_hours(7 * 24))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let form = "form[action='/console/people/alice/away']";
    let field = format!("{form} input[name=until]");
    // A date input's typing order follows the locale; set it as the date picker would.
    let kind = b.find(&field).await.attr("type").await.expect("type");
    if kind.as_deref() == Some("date") {
        b.run(
            "document.querySelector(arguments[0]).value = arguments[1]; return null;",
            vec![json!(field), json!(until.to_string())],
        )
        .await;
    } else {
        b.type_into(&field, &until.to_string()).await;
    }
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_path("/console/people").await;
    b.find("form[action='/console/people/alice/back']").await;
    assert!(b.body_text().await.contains("Away until"));
    let away = s
        .server
        .db
        .counter(&away_until_counter("alice"))
        .await
        .expect("counter");
    assert!(away > Timestamp::now().as_second(), "away until {away}");

    // Alice's account's next lead goes to her backup; the routing trace says why.
    let id = notified(&s.server, &format!("sam.rivera@{ACME}"), "Sam Rivera").await;
    let lead = stored(&s.server, &id).await;
    let owner = lead.assignment.as_ref().map(|a| a.owner.id().to_owned());
    assert_eq!(owner.as_deref(), Some("dana"), "{:?}", lead.assignment);

    // Her manager sees it, and the candidates name Alice as out of office.
    b.sign_out().await;
    b.sign_in("maria", &password("maria"), "/console/leads")
        .await;
    b.open(&format!("/console/leads/{id}")).await;
    let routing = b.text("section[aria-labelledby=routing]").await;
    let alice = routing
        .lines()
        .find(|line| line.starts_with("rep:alice"))
        .unwrap_or_else(|| panic!("alice is not among the candidates:\n{routing}"));
    assert!(
        alice.contains("out of office until") && alice.contains("(set in the console)"),
        "{routing}"
    );
    s.end().await;
}

/// The example configuration with a Slack webhook for Bruno at `slack` and two quick
/// attempts: a Slack outage dead-letters his alert within the test.
fn config_with_failing_slack(slack: &MockServer) -> String {
    let config = config().edit(
        "email = \"bruno@yourco.example\"",
        &format!(
            "email = \"bruno@yourco.example\"\nslack_webhook_url = \"{}/services/T000/B000/XXXX\"",
            slack.uri()
        ),
    );
    with_retry_schedule(&config, &["10ms"], 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_dead_letter_after_a_preview() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal_error"))
        .mount(&slack)
        .await;
    let Some(s) = session(&config_with_failing_slack(&slack)).await else {
        return;
    };
    let answer = s
        .server
        .send(
            "website",
            "evt-dead",
            &capture(&format!("tom.baker@{INITECH}"), "Tom Baker"),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let letter = eventually(Duration::from_secs(15), "a dead letter", || async {
        let dead = s
            .server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .ok()?;
        dead.into_iter()
            .find(|d| d.lead_id.as_deref() == Some(id.as_str()))
    })
    .await;
    // Slack is back.
    slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    let b = &s.browser;
    b.sign_in("olivia", &password("olivia"), "/console/leads")
        .await;
    b.open("/console/operations").await;
    let listed = b.wait_for_text(&id, Duration::from_secs(5)).await;
    assert!(listed.contains("slack answered 500"), "{listed}");

    // The letter's own replay button: a preview first, nothing replayed yet.
    let replay = format!(
        "form[action='/console/operations/replay']:has(input[value='{}']) button[type=submit]",
        letter.message_id
    );
    b.click(&replay).await;
    let preview = b.wait_for_text("Replay 1", Duration::from_secs(10)).await;
    assert!(preview.contains(&id), "{preview}");
    assert_eq!(
        s.server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("dlq")
            .len(),
        1,
        "a preview replays nothing"
    );
    b.click(
        "form[action='/console/operations/replay']:has(input[name=confirm]) button[type=submit]",
    )
    .await;
    b.wait_for_path("/console/operations?replayed=1").await;

    s.server.wait_for_state(&id, "notified").await;
    assert!(s
        .server
        .db
        .list(Stage::Notify, 10, Duration::ZERO)
        .await
        .expect("dlq")
        .is_empty());
    let audit = audit_actions(&s.server).await;
    assert!(
        audit
            .iter()
            .any(|(login, action, _)| login == "olivia" && action == "replay"),
        "{audit:?}"
    );
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_figure_moves_when_a_lead_is_claimed() {
    let Some(s) = session(&config()).await else {
        return;
    };
    let id = notified(&s.server, &format!("kim.ng@{ACME}"), "Kim Ng").await;
    let b = &s.browser;
    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    // Alice's one lead is waiting, its deadline ahead: neither met nor missed.
    b.open("/console/dashboard?days=7").await;
    assert_eq!(b.figure("SLA compliance").await, "–");

    b.open(&format!("/console/leads/{id}")).await;
    b.click(&format!(
        "form[action='/console/leads/{id}/claim'] button[type=submit]"
    ))
    .await;
    b.wait_for_path(&format!("/console/leads/{id}?done=claimed"))
        .await;

    // Claimed within its five minutes: met. (Another window than before: figures that were
    // slow to compute are served again for a minute per filters, and a loaded machine may be
    // slow.)
    b.open("/console/dashboard?days=30").await;
    assert_eq!(b.figure("SLA compliance").await, "100%");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_sees_neither_another_teams_lead_nor_the_operations_page() {
    let Some(s) = session(&config()).await else {
        return;
    };
    let theirs = notified(&s.server, &format!("tom.baker@{INITECH}"), "Tom Baker").await;
    let owner = stored(&s.server, &theirs)
        .await
        .assignment
        .map(|a| a.owner.id().to_owned());
    assert!(
        matches!(owner.as_deref(), Some("bruno" | "fatima")),
        "an EMEA lead: {owner:?}"
    );
    let b = &s.browser;
    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    b.open("/console/leads?hours=72").await;
    assert!(!b.has(&format!("tr[data-lead='{theirs}']")).await);
    assert!(!b.body_text().await.contains("Tom Baker"));

    b.open(&format!("/console/leads/{theirs}")).await;
    assert_eq!(b.text("main h1").await, "Not found");
    let page = b.body_text().await;
    assert!(
        page.contains("No lead with this id is yours to see."),
        "{page}"
    );
    assert!(!page.contains("Tom Baker"), "{page}");
    assert_eq!(b.status_of(&format!("/console/leads/{theirs}")).await, 404);

    // No link to it, and typed in: 403.
    assert!(!b.has("nav a[href='/console/operations']").await);
    b.open("/console/operations").await;
    assert_eq!(b.text("main h1").await, "Not yours");
    assert_eq!(b.status_of("/console/operations").await, 403);

    // Bruno, whose lead it is (or whose pool's), sees it.
    b.sign_out().await;
    b.sign_in("bruno", &password("bruno"), "/console/leads")
        .await;
    if owner.as_deref() == Some("bruno") {
        b.open(&format!("/console/leads/{theirs}")).await;
        assert!(b.text("main h1").await.contains("Tom Baker"));
    }
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_a_forged_csrf_token_is_refused_and_changes_nothing() {
    let Some(s) = session(&config()).await else {
        return;
    };
    let id = notified(&s.server, &format!("lee.park@{ACME}"), "Lee Park").await;
    let b = &s.browser;
    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    b.open(&format!("/console/leads/{id}")).await;
    let form = format!("form[action='/console/leads/{id}/claim']");
    let changed = b
        .run(
            "const input = document.querySelector(arguments[0] + ' input[name=csrf]'); \
             const genuine = input.value; \
             input.value = genuine.replace(/./g, c => c === 'a' ? 'b' : 'a'); \
             return input.value !== genuine;",
            vec![json!(form)],
        )
        .await;
    assert_eq!(changed, json!(true));
    b.click(&format!("{form} button[type=submit]")).await;

    let page = b
        .wait_for_text(
            "did not come from your current session",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(b.text("main h1").await, "Form expired", "{page}");
    let lead = stored(&s.server, &id).await;
    assert!(lead.claim.is_none(), "{:?}", lead.claim);
    assert_eq!(lead.timeline.claimed_at, None);
    assert_eq!(s.server.lead(&id).await.body["state"], "notified");
    let audit = audit_actions(&s.server).await;
    assert!(
        !audit.iter().any(|(_, action, _)| action == "claim"),
        "{audit:?}"
    );

    // The genuine form still works.
    b.open(&format!("/console/leads/{id}")).await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_path(&format!("/console/leads/{id}?done=claimed"))
        .await;
    s.end().await;
}

/// `make screenshots`: one PNG per console page, `WIDTH`x`HEIGHT`, in the directory
/// `LEADRELAY_SCREENSHOTS` names (relative to the workspace). A page not served yet (404) is
/// left out and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/console/*.png: run by `make screenshots`"]
async fn screenshots() {
    let dir = std::env::var_os("LEADRELAY_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .expect("LEADRELAY_SCREENSHOTS names the directory for the PNGs");
    let dir = crate::support::root().join(dir);
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let Some(s) = session(&config()).await else {
        return;
    };
    // A morning's leads: one claimed, some waiting, one of another team.
    let claimed = notified(&s.server, &format!("jordan.lee@{ACME}"), "Jordan Lee").await;
    notified(&s.server, &format!("kim.ng@{ACME}"), "Kim Ng").await;
    notified(&s.server, &format!("tom.baker@{INITECH}"), "Tom Baker").await;
    notified(&s.server, "anna.k@maple-software.ca", "Anna Kowalski").await;

    let b = &s.browser;
    let mut skipped = Vec::new();
    let save = |name: &str, png: Vec<u8>| {
        // A PNG's IHDR chunk: width and height, big-endian, at bytes 16..24.
        let size = png.get(16..24).map(|ihdr| {
            let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            (word(&ihdr[..4]), word(&ihdr[4..]))
        });
        assert_eq!(size, Some((browser::WIDTH, browser::HEIGHT)), "{name}.png");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("wrote {}", path.display());
    };
    b.open("/console/login").await;
    save("login", b.screenshot().await);

    b.sign_in("alice", &password("alice"), "/console/leads")
        .await;
    b.open(&format!("/console/leads/{claimed}")).await;
    b.click(&format!(
        "form[action='/console/leads/{claimed}/claim'] button[type=submit]"
    ))
    .await;
    b.wait_for_path(&format!("/console/leads/{claimed}?done=claimed"))
        .await;
    b.sign_out().await;

    b.sign_in("olivia", &password("olivia"), "/console/leads")
        .await;
    let pages = [
        ("leads", "/console/leads".to_owned()),
        ("lead", format!("/console/leads/{claimed}")),
        ("dashboard", "/console/dashboard".to_owned()),
        ("people", "/console/people".to_owned()),
        ("operations", "/console/operations".to_owned()),
        ("audit", "/console/audit".to_owned()),
    ];
    for (name, path) in pages {
        if b.status_of(&path).await == 404 {
            skipped.push(path);
            continue;
        }
        b.open(&path).await;
        save(name, b.screenshot().await);
    }
    if !skipped.is_empty() {
        eprintln!("not served yet, no screenshot: {}", skipped.join(", "));
    }
    s.end().await;
}

//! The routing commands RevOps relies on: the shipped cases pass, `rules diff` reports exactly
//! the leads a territory change moves (and writes nothing), `explain` names why a rep was
//! skipped, and the route stage stores the same explanation on the lead.

use std::time::Duration;

use crate::support::{
    example_config, initech_lead, open_store, parse_config, root, shipped_example_config, Edit,
    ManualPipeline,
};
use jiff::Timestamp;
use leadrelay::embedded::Sqlite;
use leadrelay::rules;
use leadrelay_shared::model::{LeadState, Owner, Stage};
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::replay::{self, Rules};
use leadrelay_shared::routing::{away_until_counter, open_leads_counter, Router};
use leadrelay_shared::rulebook::Rulebook;

#[test]
fn the_shipped_routing_cases_pass() {
    let config = parse_config(&shipped_example_config());
    let results =
        rules::run_cases(&config, &root().join("config/routing-cases.toml")).expect("cases run");
    assert!(results.len() >= 15, "the example team ships its cases");
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} -> {}\n{}", r.name, r.got, r.explanation))
        .collect();
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
}

#[test]
fn a_case_that_expects_the_wrong_owner_fails_with_its_explanation() {
    let config = parse_config(&shipped_example_config());
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        r#"
at = "2026-11-24T15:00:00Z"
[[cases]]
name = "wrong on purpose"
expect = "rep:chen"
[cases.capture]
event = "lead_capture"
timestamp = "2026-11-24T15:00:00Z"
captured_email = "lee@maple-software.ca"
"#,
    )
    .expect("write cases");
    let mut out = Vec::new();
    let error =
        rules::test_cases(&config, &cases, false, &mut out).expect_err("a failing case fails");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(error.to_string().contains("1 routing case(s) failed"));
    assert!(
        out.contains("FAIL  wrong on purpose  ->  got rep:"),
        "{out}"
    );
    assert!(out.contains("MATCH \"Americas\""), "{out}");
}

/// Stores `email`'s lead as the pipeline would have: enriched, captured at `at`.
async fn stored_lead(
    db: &Sqlite,
    config: &leadrelay_shared::config::Config,
    n: usize,
    email: &str,
    at: Timestamp,
) -> String {
    let body = serde_json::json!({
        "event": "lead_capture",
        "timestamp": at.to_string(),
        "captured_email": email,
    });
    let rulebook = Rulebook::new(config);
    let mut lead =
        rules::lead_from_capture(config, &rulebook, None, body.to_string().as_bytes(), at)
            .expect("lead");
    lead.id = format!("lead-{n:02}");
    lead.event_id = format!("evt-{n}");
    lead.qualification = None;
    db.create_lead(&lead).await.expect("stored");
    lead.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_diff_on_a_moved_territory_reports_exactly_the_leads_it_moves() {
    // Stored leads are from the last two days of the real clock: hours taken out, so that
    // what moves depends on the rules alone.
    let current = parse_config(&example_config());
    // The new rules move Canada from the Americas to... EMEA, say, for a reorganisation.
    let moved_text = example_config()
        .edit("NA = [\"US\", \"CA\"]", "NA = [\"US\"]")
        .edit("EMEA = [\"GB\",", "EMEA = [\"CA\", \"GB\",");
    let new = parse_config(&moved_text);

    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    let now = Timestamp::now();
    let mut canadian = Vec::new();
    for (n, email) in [
        "lee@maple-software.ca",
        "tom@initech.co.uk",
        "aiko@sakura-analytics.jp",
        "pat@maple-software.ca",
        "k@umbrella-health.de",
        "ops@acme-robotics.com",
        "someone@gmail.com",
        "kim@maple-software.ca",
    ]
    .into_iter()
    .enumerate()
    {
        let at = now - jiff::SignedDuration::from_hours(48)
            + jiff::SignedDuration::from_mins(n as i64 * 7);
        let id = stored_lead(&db, &current, n, email, at).await;
        if email.ends_with(".ca") {
            canadian.push(id);
        }
    }
    // One lead outside the window is never replayed.
    stored_lead(
        &db,
        &current,
        99,
        "old@maple-software.ca",
        now - jiff::SignedDuration::from_hours(24 * 30),
    )
    .await;

    let leads = db
        .leads_since(now - jiff::SignedDuration::from_hours(24 * 7), 1000)
        .await
        .expect("leads");
    assert_eq!(leads.len(), 8);
    let (book_now, router_now) = (Rulebook::new(&current), Router::new(&current));
    let (book_new, router_new) = (Rulebook::new(&new), Router::new(&new));
    let report = replay::diff(
        Rules {
            rulebook: &book_now,
            router: &router_now,
        },
        Rules {
            rulebook: &book_new,
            router: &router_new,
        },
        &leads,
    );
    let moved: Vec<&str> = report.moved.iter().map(|m| m.lead_id.as_str()).collect();
    assert_eq!(
        moved,
        canadian.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for m in &report.moved {
        assert_eq!(
            (m.before.as_str(), m.after.as_str()),
            ("pool:amer-ae", "pool:emea-ae")
        );
    }
    assert_eq!(
        report.destinations["pool:amer-ae"].1 + 3,
        report.destinations["pool:amer-ae"].0
    );

    // The command prints the same, and writes nothing.
    let before: Vec<_> = leads
        .iter()
        .map(|l| (l.id.clone(), l.state, l.assignment.clone()))
        .collect();
    let mut out = Vec::new();
    rules::diff(
        &current,
        &new,
        &db,
        jiff::SignedDuration::from_hours(24 * 7),
        &mut out,
    )
    .await
    .expect("diff");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.contains("3 lead(s) would change destination"), "{out}");
    for id in &canadian {
        assert!(out.contains(&format!("{id} ")), "{out}");
    }
    let after: Vec<_> = db
        .leads_since(now - jiff::SignedDuration::from_hours(24 * 7), 1000)
        .await
        .expect("leads")
        .into_iter()
        .map(|l| (l.id.clone(), l.state, l.assignment.clone()))
        .collect();
    assert_eq!(before, after, "rules diff changed stored leads");
    assert_eq!(
        db.counter(&open_leads_counter(&Owner::Rep("alice".into())))
            .await
            .expect("counter"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_why_each_candidate_was_skipped() {
    let config = parse_config(&shipped_example_config());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("lead.json");
    std::fs::write(
        &file,
        r#"{"event": "lead_capture", "timestamp": "2026-11-24T15:00:00Z", "captured_email": "aiko@sakura-analytics.jp"}"#,
    )
    .expect("write lead");
    let mut out = Vec::new();
    // 02:00 in Sydney: Chen is off shift; Bruno (his backup, in Berlin) takes it.
    rules::explain_file(
        &config,
        &file,
        None,
        "2026-11-24T15:00:00Z".parse().expect("at"),
        None,
        &mut out,
    )
    .await
    .expect("explain");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.contains("MATCH \"APAC\""), "{out}");
    // The score with the signal behind each point.
    assert!(
        out.contains("Score 35: finished the conversation +30, company of 200-999 employees +15, flag: missing_fields -10"),
        "{out}"
    );
    assert!(
        out.contains("- chen         outside working hours; back Wed 2026-11-25 09:00 AEDT"),
        "{out}"
    );
    assert!(
        out.contains("+ bruno        available, 0/30 open leads"),
        "{out}"
    );
    assert!(out.contains("Owner: Bruno Keller (rep bruno)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_lead_frees_the_capacity_it_held_and_pools_show_the_ledger() {
    use leadrelay_channels::Channels;
    use leadrelay_shared::model::{Envelope, Stage};
    use leadrelay_shared::ports::SystemClock;
    use leadrelay_shared::stages::{close::close_lead, Pipeline};
    use std::sync::Arc;

    // Bruno can hold one open lead.
    let text = example_config().edit(
        "capacity = 30\nbackup = \"fatima\"",
        "capacity = 1\nbackup = \"fatima\"",
    );
    let config = parse_config(&text);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    let pipeline = Pipeline::new(
        Arc::new(parse_config(&text)),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(
            Channels::new(
                Duration::from_secs(1),
                Box::new(crate::support::Terminal::default()),
            )
            .expect("channels"),
        ),
        Arc::new(SystemClock),
    );
    let now = Timestamp::now();
    let mut owners = Vec::new();
    for n in 0..2 {
        // Two people: the same address twice would merge into the first lead.
        let email = format!("tom{n}@initech.co.uk");
        let id = stored_lead(&db, &config, n, &email, now).await;
        let route = Envelope::new(&id, Stage::Route, "t").to_json();
        pipeline.handle(Stage::Route, &route).await.expect("routed");
        let lead = db.get_lead(&id).await.expect("read").expect("lead");
        owners.push((id, lead.assignment.expect("owner").owner.key()));
    }
    // Bruno (weight 2) first, then at his cap of 1 the rotation skips him.
    assert_eq!(owners[0].1, "rep:bruno");
    assert_eq!(owners[1].1, "rep:fatima");
    let bruno = open_leads_counter(&Owner::Rep("bruno".into()));
    assert_eq!(db.counter(&bruno).await.expect("counter"), 1);

    let mut out = Vec::new();
    rules::pools(&config, &db, now, &mut out)
        .await
        .expect("pools");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("pool emea-ae (EMEA account executives): round_robin"),
        "{out}"
    );
    let bruno_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("bruno"))
        .expect("bruno row");
    assert!(
        bruno_row.contains("at capacity 1/1 open leads"),
        "{bruno_row}"
    );
    assert!(bruno_row.contains("67%"), "{bruno_row}");

    let closed = close_lead(&db, Timestamp::now(), &owners[0].0, "won")
        .await
        .expect("closed");
    assert_eq!(closed.state, LeadState::Closed);
    assert_eq!(
        db.counter(&bruno).await.expect("counter"),
        0,
        "capacity freed"
    );
    // Closing again changes nothing.
    close_lead(&db, Timestamp::now(), &owners[0].0, "won")
        .await
        .expect("idempotent");
    assert_eq!(db.counter(&bruno).await.expect("counter"), 0);

    let id = stored_lead(&db, &config, 2, "tom2@initech.co.uk", now).await;
    pipeline
        .handle(
            Stage::Route,
            &Envelope::new(&id, Stage::Route, "t").to_json(),
        )
        .await
        .expect("routed");
    // Bruno is a candidate again (no longer skipped at his cap); Fatima, still owed a third
    // of a lead from the first turn, gets this one, and the weights even out from there.
    let lead = db.get_lead(&id).await.expect("read").expect("lead");
    let assignment = lead.assignment.expect("owner");
    assert_eq!(assignment.owner.key(), "rep:fatima");
    let step = &assignment.trace.expect("trace").steps[0];
    let bruno_now = step
        .candidates
        .iter()
        .find(|c| c.rep == "bruno")
        .expect("bruno considered");
    assert!(
        bruno_now.reason.starts_with("not their turn"),
        "{}",
        bruno_now.reason
    );
}

/// A rep's out-of-office set in the console is the `away_until` counter in the store: the
/// next lead skips them, saying so in its stored trace, and clearing it puts them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_out_of_office_in_the_console_is_skipped_until_it_is_cleared() {
    // Tuesday 10:00 in London: EMEA is open, and Bruno (weight 2) has the first turn of the
    // emea-ae pool he shares with Fatima.
    let at: Timestamp = "2026-11-24T10:00:00Z".parse().expect("time");
    let manual = ManualPipeline::new(parse_config(&shipped_example_config()), at);
    let db = &manual.db;
    let back: Timestamp = "2026-11-26T10:00:00Z".parse().expect("time");
    db.set_counter(&away_until_counter("bruno"), back.as_second())
        .await
        .expect("away");

    db.create_lead(&initech_lead("while-away", "tom@initech.co.uk", at))
        .await
        .expect("stored");
    manual.handle(Stage::Route, "while-away").await;
    let assignment = manual.lead("while-away").await.assignment.expect("owner");
    assert_eq!(assignment.owner.key(), "rep:fatima");
    let trace = assignment.trace.expect("trace");
    let bruno = trace
        .steps
        .iter()
        .flat_map(|step| &step.candidates)
        .find(|c| c.rep == "bruno")
        .expect("bruno considered");
    // In Bruno's own time zone (Berlin).
    assert_eq!(
        bruno.reason,
        "out of office until Thu 2026-11-26 11:00 CET (set in the console)"
    );

    // Back early: cleared in the console, Bruno takes the next lead.
    db.set_counter(&away_until_counter("bruno"), 0)
        .await
        .expect("back");
    db.create_lead(&initech_lead("after-return", "ann@initech.co.uk", at))
        .await
        .expect("stored");
    manual.handle(Stage::Route, "after-return").await;
    let assignment = manual.lead("after-return").await.assignment.expect("owner");
    assert_eq!(assignment.owner.key(), "rep:bruno");
}

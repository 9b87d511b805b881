//! The operator's controls: the dead-letter queues (with a replay that previews first), the
//! handoff audit, the configuration as loaded (secrets never shown), the what-if of a changed
//! configuration over recent leads, and the console's own audit log. Every route here is an
//! operator's: anyone else gets 403.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::config::Config;
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::DeadLetters;
use leadrelay_shared::replay::DiffReport;
use leadrelay_shared::report::Audit;
use leadrelay_shared::stages::dead_letters::{self, Filter, Listed};
use leadrelay_shared::stages::{report, rules_diff};
use maud::{html, Markup};
use serde::Deserialize;
use tracing::error;

use crate::auth::{Action, Signed};
use crate::page::{self, csrf, shell, when};
use crate::{Console, Refusal};

/// The audit log page reads this far back...
const AUDIT_LOG_DAYS: i64 = 30;
/// ...and at most this many entries.
const AUDIT_LOG_LIMIT: usize = 500;
/// The handoff audit's window when none is asked for, and the longest it offers.
const DEFAULT_AUDIT_DAYS: i64 = 7;
const MAX_AUDIT_DAYS: i64 = 90;
/// The what-if replays the leads of at most this many days.
const MAX_WHAT_IF_DAYS: i64 = 30;
/// The most moved leads a what-if lists (the summary counts them all).
const MAX_MOVED_SHOWN: usize = 1000;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/operations", get(operations_page))
        .route("/console/operations/replay", post(replay))
        .route("/console/operations/what-if", post(what_if))
        .route("/console/audit", get(audit_log))
}

/// Lets operators through; everyone else is refused with 403.
fn operator_only(signed: &Signed) -> Result<(), Refusal> {
    if signed.viewer.is_operator() {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "Only an operator can use the operations pages and the audit log.",
        ))
    }
}

/// A link to the lead's page, when its id can stand in a path as it is (a dead letter made by
/// hand may carry anything); else the id as text.
fn lead_link(lead_id: Option<&str>) -> Markup {
    match lead_id {
        Some(id)
            if !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            html! { a href=(format!("/console/leads/{id}")) { (id) } }
        }
        Some(id) => html! { code { (id) } },
        None => html! { span.none { "?" } },
    }
}

#[derive(Debug, Default, Deserialize)]
struct OperationsQuery {
    days: Option<i64>,
    replayed: Option<usize>,
}

async fn operations_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<OperationsQuery>,
) -> Result<Response, Refusal> {
    operator_only(&signed)?;
    let now = console.pipeline.clock.now();
    let days = query
        .days
        .unwrap_or(DEFAULT_AUDIT_DAYS)
        .clamp(1, MAX_AUDIT_DAYS);
    let letters = dead_letter_section(&console, &signed, now).await;
    let audit = report::audit(
        console.pipeline.store.as_ref(),
        &format!("{days}d"),
        None,
        now,
    )
    .await
    .map_err(|e| {
        error!(error = %e, "console: handoff audit unavailable");
        Refusal::Unavailable
    })?;
    let body = html! {
        @if let Some(count) = query.replayed {
            p.notice role="status" {
                "Replayed " (count) " message(s): they are back on their stage's queue."
            }
        }
        section.card aria-labelledby="dead-letters" {
            h2 #dead-letters { "Dead letters" }
            (letters)
        }
        section.card aria-labelledby="handoff" {
            h2 #handoff { "Handoff audit" }
            form.filters method="get" action="/console/operations" {
                label { "Leads captured in the last"
                    select name="days" {
                        @for (value, label) in [(1, "day"), (7, "7 days"), (14, "14 days"), (30, "30 days"), (90, "90 days")] {
                            option value=(value) selected[days == value] { (label) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            (handoff(&audit, now))
        }
        section.card aria-labelledby="configuration" {
            h2 #configuration { "Configuration" }
            p.muted {
                "As loaded at start, parsed and written out again: comments are left out and "
                "every secret value reads " code { (leadrelay_shared::config::SECRET) } "."
            }
            pre { code { (console.config().shown_text()) } }
        }
        section.card aria-labelledby="what-if" {
            h2 #what-if { "What-if" }
            (what_if_form(&signed, "", DEFAULT_AUDIT_DAYS))
        }
    };
    Ok(shell(&signed, "/console/operations", "Operations", body).into_response())
}

/// Every stage's dead letters with their error, or why they cannot be shown. The survey
/// releases each letter it lists: looking hides nothing on SQS.
async fn dead_letter_section(console: &Console, signed: &Signed, now: Timestamp) -> Markup {
    let Some(dead) = &console.dead_letters else {
        return html! { p.muted { "This process cannot reach the dead-letter queues." } };
    };
    let store = console.pipeline.store.as_ref();
    let stages = match dead_letters::survey(dead.as_ref(), store, &Filter::default(), now).await {
        Ok(stages) => stages,
        Err(e) => {
            error!(error = %e, "console: dead-letter queues unavailable");
            return html! {
                p.problem { "The dead-letter queues did not answer. Try again in a moment." }
            };
        }
    };
    html! {
        p.muted {
            "Messages a stage gave up on, with the error that stopped them. Replay shows what "
            "it would replay first."
        }
        @for (stage, letters) in &stages {
            h3 { (stage.as_str()) ": " (letters.len()) }
            @if letters.is_empty() {
                p.muted { "No dead letters." }
            } @else {
                (letter_table(letters, now, Some(signed)))
                form.inline method="post" action="/console/operations/replay" {
                    (csrf(signed))
                    input type="hidden" name="stage" value=(stage.as_str());
                    button.secondary type="submit" {
                        "Replay all " (letters.len()) " in " (stage.as_str()) "…"
                    }
                }
            }
        }
    }
}

/// The letters as a table; with `signed`, each row has its own replay button (to the preview).
fn letter_table(letters: &[Listed], now: Timestamp, signed: Option<&Signed>) -> Markup {
    html! {
        table {
            thead { tr {
                th { "Message" } th { "Lead" } th.num { "Received" } th { "Sent" } th { "Error" }
                @if signed.is_some() { th { span.muted { "Action" } } }
            } }
            tbody {
                @for listed in letters {
                    tr {
                        td { code { (listed.letter.message_id) } }
                        td { (lead_link(listed.letter.lead_id.as_deref())) }
                        td.num { (listed.letter.receive_count) "×" }
                        td { (when(listed.letter.sent_at, now)) }
                        td { (listed.error) }
                        @if let Some(signed) = signed {
                            td {
                                form.inline method="post" action="/console/operations/replay" {
                                    (csrf(signed))
                                    input type="hidden" name="stage" value=(listed.stage.as_str());
                                    input type="hidden" name="message_id" value=(listed.letter.message_id);
                                    button.secondary type="submit" aria-label=(format!("Replay {}", listed.letter.message_id)) { "Replay…" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A replay request: a stage, optionally one message of it; `ids` pins a confirmed replay to
/// what its preview listed; `confirm=yes` replays, anything else previews.
#[derive(Debug, Default, Deserialize)]
struct ReplayForm {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    ids: String,
    #[serde(default)]
    confirm: String,
}

impl ReplayForm {
    /// The dead letters this request takes.
    fn filter(&self) -> Result<Filter, Refusal> {
        let stage = Stage::parse(self.stage.trim()).ok_or_else(|| {
            Refusal::BadRequest("Choose a stage: enrich, route or notify.".into())
        })?;
        let mut ids: Vec<String> = self
            .ids
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        let one = self.message_id.trim();
        if !one.is_empty() {
            if !ids.is_empty() && !ids.iter().any(|id| id == one) {
                return Err(Refusal::BadRequest(
                    "The listed messages are not the selected one. Go back and preview again."
                        .into(),
                ));
            }
            ids = vec![one.to_owned()];
        }
        Ok(Filter {
            stage: Some(stage),
            message_ids: ids,
            ..Filter::default()
        })
    }
}

async fn replay(
    State(console): State<Console>,
    action: Action<ReplayForm>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    operator_only(&signed)?;
    let Some(dead) = console.dead_letters.clone() else {
        return Err(Refusal::NotFound(
            "This process cannot reach the dead-letter queues.",
        ));
    };
    let form = action.form;
    let filter = form.filter()?;
    let now = console.pipeline.clock.now();
    if form.confirm != "yes" {
        return preview(&console, &signed, dead.as_ref(), &form, &filter, now).await;
    }
    let mut replayed = Vec::new();
    let outcome = dead_letters::replay(
        dead.as_ref(),
        &filter,
        now,
        false,
        Duration::ZERO,
        |_, letter| replayed.push(letter.message_id.clone()),
    )
    .await;
    let stage = filter.stage.map_or("all", Stage::as_str);
    let mut detail = format!("replayed {}: {}", replayed.len(), replayed.join(", "));
    if let Err(e) = &outcome {
        detail.push_str(&format!("; stopped: {e}"));
    }
    console
        .audit(&signed.viewer.login, "replay", stage, detail)
        .await;
    if let Err(e) = outcome {
        error!(error = %e, "console: replay stopped");
        return Err(Refusal::BadRequest(format!(
            "The replay stopped after {} message(s): a queue did not answer. Try again; what \
             was replayed stays replayed.",
            replayed.len()
        )));
    }
    Ok(Redirect::to(&format!("/console/operations?replayed={}", replayed.len())).into_response())
}

/// The dry run: exactly what a confirmed replay would take, and the form that confirms it.
async fn preview(
    console: &Console,
    signed: &Signed,
    dead: &dyn DeadLetters,
    form: &ReplayForm,
    filter: &Filter,
    now: Timestamp,
) -> Result<Response, Refusal> {
    let store = console.pipeline.store.as_ref();
    let letters: Vec<Listed> = dead_letters::survey(dead, store, filter, now)
        .await
        .map_err(|e| {
            error!(error = %e, "console: dead-letter queues unavailable");
            Refusal::Unavailable
        })?
        .into_iter()
        .flat_map(|(_, letters)| letters)
        .collect();
    let ids = letters
        .iter()
        .map(|l| l.letter.message_id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let count = letters.len();
    let body = html! {
        p {
            "Nothing has been replayed yet. Replaying is safe: every stage is idempotent, so a "
            "replayed message never gives a lead a second owner or sends a second alert on a "
            "channel; a stage the lead has already passed just forwards it."
        }
        @if letters.is_empty() {
            p.problem { "Nothing to replay: the selected dead letters are no longer there." }
        } @else {
            (letter_table(&letters, now, None))
            form.inline method="post" action="/console/operations/replay" {
                (csrf(signed))
                input type="hidden" name="stage" value=(form.stage.trim());
                @if !form.message_id.trim().is_empty() {
                    input type="hidden" name="message_id" value=(form.message_id.trim());
                }
                input type="hidden" name="ids" value=(ids);
                input type="hidden" name="confirm" value="yes";
                button type="submit" { "Replay " (count) " message" @if count != 1 { "s" } }
            }
        }
        p { a href="/console/operations#dead-letters" { "Back to the dead letters" } }
    };
    Ok(shell(signed, "/console/operations", "Replay dead letters?", body).into_response())
}

fn handoff(audit: &Audit, now: Timestamp) -> Markup {
    html! {
        p.muted {
            "Leads captured from " (page::clock(audit.from, now)) " to "
            (page::clock(audit.to, now)) " UTC (what " code { "leadrelay report audit" } " prints)."
        }
        h3 { "Assigned, past their SLA and never touched: " (audit.untouched.len()) }
        @if !audit.untouched.is_empty() {
            table {
                thead { tr {
                    th { "Lead" } th { "Owner" } th { "State" } th { "Tier" } th { "Claimed by" }
                    th { "Overdue" }
                } }
                tbody {
                    @for u in &audit.untouched {
                        tr {
                            td { (lead_link(Some(&u.lead_id))) }
                            td { (u.owner) }
                            td { (u.state.as_str()) }
                            td { (u.tier.map(|t| t.to_string()).unwrap_or_else(|| "–".into())) }
                            td { (u.claimed_by.as_deref().unwrap_or("–")) }
                            td.bad { (page::span(SignedDuration::from_secs(u.overdue_secs))) }
                        }
                    }
                }
            }
        }
        h3 { "Said not mine: " (audit.misrouted.len()) }
        @if !audit.misrouted.is_empty() {
            table {
                thead { tr { th { "Lead" } th { "Not mine" } th { "Owner now" } th { "Touched" } } }
                tbody {
                    @for m in &audit.misrouted {
                        tr {
                            td { (lead_link(Some(&m.lead_id))) }
                            td { (m.misroutes.join("; ")) }
                            td { (m.owner.as_deref().unwrap_or("–")) }
                            td { @if m.touched { span.ok { "yes" } } @else { span.bad { "no" } } }
                        }
                    }
                }
            }
        }
        h3 { "Activity events that matched no lead: " (audit.unmatched.len()) }
        @if !audit.unmatched.is_empty() {
            table {
                thead { tr {
                    th { "Received" } th { "Event" } th { "Via" } th { "By" } th { "Lead id" }
                    th { "E-mail" }
                } }
                tbody {
                    @for u in &audit.unmatched {
                        tr {
                            td { (when(Some(u.received_at), now)) }
                            td { (u.kind) }
                            td { (u.via) }
                            td { (u.by.as_deref().unwrap_or("–")) }
                            td { (u.lead_id.as_deref().unwrap_or("–")) }
                            td { (u.email.as_deref().unwrap_or("–")) }
                        }
                    }
                }
            }
        }
    }
}

fn what_if_form(signed: &Signed, text: &str, days: i64) -> Markup {
    html! {
        p.muted {
            "Paste a changed configuration (the whole file) to see where the leads of the last "
            "days would have gone under it. Nothing is written. Variables named by "
            code { "*_env" } " keys are read as at start."
        }
        form.stacked method="post" action="/console/operations/what-if" {
            (csrf(signed))
            label for="what-if-config" { "Changed configuration (TOML)" }
            textarea #what-if-config name="config" rows="16" required spellcheck="false" { (text) }
            label for="what-if-days" { "Leads captured in the last (days, 1 to 30)" }
            input #what-if-days type="number" name="days" min="1" max=(MAX_WHAT_IF_DAYS) value=(days) required;
            div { button type="submit" { "Show what would change" } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct WhatIfForm {
    #[serde(default)]
    config: String,
    #[serde(default)]
    days: String,
}

async fn what_if(
    State(console): State<Console>,
    action: Action<WhatIfForm>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    operator_only(&signed)?;
    let form = action.form;
    let days = match form.days.trim().parse::<i64>() {
        Ok(days) if (1..=MAX_WHAT_IF_DAYS).contains(&days) => days,
        _ => {
            return Err(Refusal::BadRequest(
                "Days must be a whole number from 1 to 30.".into(),
            ))
        }
    };
    let login = signed.viewer.login.as_str();
    // `*_env` names resolve as the loader resolves them at start: the process environment.
    let env = |name: &str| (console.secrets)(name);
    let new = match Config::parse(&form.config, "pasted configuration", &env) {
        Ok(config) => config,
        Err(e) => {
            console
                .audit(
                    login,
                    "what-if",
                    "configuration",
                    "refused: not a valid configuration",
                )
                .await;
            let body = html! {
                p.problem role="alert" { "This configuration does not load:" }
                pre { code { (e.to_string()) } }
                (what_if_form(&signed, &form.config, days))
            };
            let page = shell(&signed, "/console/operations", "What-if", body);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let now = console.pipeline.clock.now();
    let from = now - SignedDuration::from_hours(24 * days);
    let leads = rules_diff::leads_since(console.pipeline.store.as_ref(), from).await?;
    let current = console.pipeline.config.clone();
    // Routing thousands of leads twice is CPU work: off the async workers.
    let report = tokio::task::spawn_blocking(move || rules_diff::diff(&current, &new, &leads))
        .await
        .map_err(|e| {
            error!(error = %e, "console: what-if failed");
            Refusal::Unavailable
        })?;
    console
        .audit(
            login,
            "what-if",
            "configuration",
            format!(
                "last {days} day(s): {} lead(s) replayed, {} would move",
                report.leads,
                report.moved.len()
            ),
        )
        .await;
    let body = html! {
        (diff_report(&report, days, now))
        section.card aria-labelledby="again" {
            h2 #again { "Try another change" }
            (what_if_form(&signed, &form.config, days))
        }
    };
    Ok(shell(&signed, "/console/operations", "What-if", body).into_response())
}

fn share(count: u64, total: usize) -> String {
    format!("{:.1}%", count as f64 * 100.0 / total.max(1) as f64)
}

fn diff_report(report: &DiffReport, days: i64, now: Timestamp) -> Markup {
    html! {
        p.notice role="status" {
            "Replayed " (report.leads) " lead(s) captured in the last " (days)
            " day(s) through the current and the pasted configuration. Nothing was written."
        }
        div.figures {
            div.figure { div.label { "Leads replayed" } div.value { (report.leads) } }
            div.figure { div.label { "Would change destination" } div.value { (report.moved.len()) } }
            div.figure { div.label { "Same pool, another member" } div.value { (report.reshuffled) } }
        }
        section.card aria-labelledby="moved" {
            h2 #moved { "Leads that would change owner" }
            @if report.moved.is_empty() {
                p.muted { "No lead would change destination." }
            } @else {
                table {
                    thead { tr {
                        th { "Lead" } th { "Captured" } th { "Owner now" } th { "Rule now" }
                        th { "New owner" } th { "New rule" }
                    } }
                    tbody {
                        @for moved in report.moved.iter().take(MAX_MOVED_SHOWN) {
                            tr {
                                td { (lead_link(Some(&moved.lead_id))) }
                                td { (when(moved.captured_at, now)) }
                                td { (moved.before) }
                                td { (moved.before_rule) }
                                td { strong { (moved.after) } }
                                td { (moved.after_rule) }
                            }
                        }
                    }
                }
                @if report.moved.len() > MAX_MOVED_SHOWN {
                    p.muted { (report.moved.len() - MAX_MOVED_SHOWN) " more not listed." }
                }
            }
            @if report.reshuffled > 0 {
                p.muted {
                    (report.reshuffled) " more lead(s) stay in their pool but reach another "
                    "member: the rotation shifts."
                }
            }
        }
        div.grid {
            section.card aria-labelledby="destinations" {
                h2 #destinations { "Destinations" }
                table {
                    thead { tr { th { "Destination" } th.num { "Now" } th.num { "New" } th.num { "Change" } } }
                    tbody {
                        @for (destination, (before, after)) in &report.destinations {
                            tr {
                                td { (destination) }
                                td.num { (before) " (" (share(*before, report.leads)) ")" }
                                td.num { (after) " (" (share(*after, report.leads)) ")" }
                                td.num { (format!("{:+}", *after as i64 - *before as i64)) }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="rep-load" {
                h2 #rep-load { "Rep load" }
                table {
                    thead { tr { th { "Rep" } th.num { "Now" } th.num { "New" } th.num { "Change" } } }
                    tbody {
                        @for (rep, (before, after)) in &report.reps {
                            tr {
                                td { (rep) }
                                td.num { (before) }
                                td.num { (after) }
                                td.num { (format!("{:+}", *after as i64 - *before as i64)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The console's audit log: the last 30 days, newest first, at most 500 entries.
async fn audit_log(State(console): State<Console>, signed: Signed) -> Result<Response, Refusal> {
    operator_only(&signed)?;
    let now = console.pipeline.clock.now();
    let since = now - SignedDuration::from_hours(24 * AUDIT_LOG_DAYS);
    let entries = console.store.actions_since(since, AUDIT_LOG_LIMIT).await?;
    let body = html! {
        p.muted {
            "Everything done through the console in the last " (AUDIT_LOG_DAYS) " days, newest "
            "first" @if entries.len() == AUDIT_LOG_LIMIT { " (the latest " (AUDIT_LOG_LIMIT) ")" } "."
        }
        table {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Detail" } } }
            tbody {
                @if entries.is_empty() {
                    tr { td colspan="5" .muted { "Nothing recorded in this window." } }
                }
                @for entry in &entries {
                    tr {
                        td { (when(Some(entry.at), now)) }
                        td { (entry.login) }
                        td { (entry.action) }
                        td { code { (entry.target) } }
                        td { (entry.detail) }
                    }
                }
            }
        }
    };
    Ok(shell(&signed, "/console/audit", "Audit log", body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_selection_is_a_stage_and_optionally_its_listed_messages() {
        let form = |stage: &str, one: &str, ids: &str| ReplayForm {
            stage: stage.into(),
            message_id: one.into(),
            ids: ids.into(),
            confirm: String::new(),
        };
        let whole = form("notify", "", "").filter().expect("a stage");
        assert_eq!(whole.stage, Some(Stage::Notify));
        assert!(whole.message_ids.is_empty());
        let pinned = form("notify", "", "a, b,").filter().expect("listed");
        assert_eq!(pinned.message_ids, ["a", "b"]);
        let one = form("route", "b", "b").filter().expect("one");
        assert_eq!(one.message_ids, ["b"]);
        assert!(form("route", "c", "a,b").filter().is_err());
        assert!(form("ingest", "", "").filter().is_err());
    }

    #[test]
    fn only_plain_lead_ids_become_links() {
        assert!(lead_link(Some("01JABC-x_1"))
            .into_string()
            .contains("href=\"/console/leads/01JABC-x_1\""));
        let odd = lead_link(Some("<!channel> & co")).into_string();
        assert!(!odd.contains("href"));
        assert!(odd.contains("&lt;!channel&gt; &amp; co"));
    }
}

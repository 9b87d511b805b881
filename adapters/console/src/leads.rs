//! Live leads (the last hours' leads as they arrive and move, refreshed every few seconds) and
//! one lead's page: its timeline, conversation, routing trace, alerts and activity, with the
//! actions the viewer may take (claim; re-route and close for operators and the team's
//! manager).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::config::Config;
use leadrelay_shared::console::access;
use leadrelay_shared::model::{Envelope, Lead, LeadState, Outcome, Stage};
use leadrelay_shared::ports::{DeliveryReceipt, PostedMessage};
use leadrelay_shared::stages::claim::{claim, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::close::close_lead;
use leadrelay_shared::stages::reroute::{HandBack, NotMineError};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::{Action, Signed};
use crate::page::{self, csrf, shell, when};
use crate::{Console, Refusal};

/// The most leads the live list reads at once.
const LIVE_LIMIT: usize = 500;
/// The longest look-back the live list offers.
const MAX_HOURS: i64 = 72;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/leads", get(live_page))
        .route("/console/leads/rows", get(live_rows))
        .route("/console/leads/{id}", get(lead_page))
        .route("/console/leads/{id}/claim", post(claim_lead))
        .route("/console/leads/{id}/reroute", post(reroute_lead))
        .route("/console/leads/{id}/close", post(close))
}

/// The live list's filters, all optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    hours: Option<i64>,
    state: Option<String>,
    tier: Option<String>,
    team: Option<String>,
    source: Option<String>,
}

impl Filters {
    fn hours(&self) -> i64 {
        self.hours.unwrap_or(4).clamp(1, MAX_HOURS)
    }

    fn chosen(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|v| !v.is_empty())
    }

    fn takes(&self, lead: &Lead, config: &Config) -> bool {
        let state = Self::chosen(&self.state).is_none_or(|s| match s {
            "open" => lead.state.is_open(),
            "waiting" => matches!(lead.state, LeadState::Routed | LeadState::Notified),
            other => lead.state.as_str() == other,
        });
        let tier = Self::chosen(&self.tier).is_none_or(|t| {
            lead.qualification
                .as_ref()
                .is_some_and(|q| q.tier.to_string() == t)
        });
        let team = Self::chosen(&self.team)
            .is_none_or(|t| access::lead_teams(lead, config).any(|team| team == t));
        let source = Self::chosen(&self.source).is_none_or(|s| lead.source == s);
        state && tier && team && source
    }

    fn query(&self) -> String {
        serde_urlencoded::to_string([
            ("hours", Some(self.hours().to_string())),
            ("state", self.state.clone()),
            ("tier", self.tier.clone()),
            ("team", self.team.clone()),
            ("source", self.source.clone()),
        ])
        .unwrap_or_default()
    }
}

/// The leads of the window the viewer may see, newest first.
async fn visible_leads(
    console: &Console,
    signed: &Signed,
    filters: &Filters,
) -> Result<Vec<Lead>, Refusal> {
    let now = console.pipeline.clock.now();
    let since = now - SignedDuration::from_hours(filters.hours());
    let mut leads = console
        .pipeline
        .store
        .recent_leads(since, LIVE_LIMIT)
        .await?;
    let config = console.config();
    leads.retain(|lead| signed.viewer.sees_lead(lead, config) && filters.takes(lead, config));
    Ok(leads)
}

async fn live_page(
    State(console): State<Console>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Result<Response, Refusal> {
    let leads = visible_leads(&console, &signed, &filters).await?;
    let now = console.pipeline.clock.now();
    let config = console.config();
    let body = html! {
        form.filters method="get" action="/console/leads" {
            label { "Window"
                select name="hours" {
                    @for (hours, label) in [(1, "last hour"), (4, "last 4 hours"), (24, "last 24 hours"), (72, "last 3 days")] {
                        option value=(hours) selected[filters.hours() == hours] { (label) }
                    }
                }
            }
            label { "State"
                select name="state" {
                    @for (value, label) in [("", "any"), ("waiting", "waiting for a claim"), ("open", "open"), ("claimed", "claimed"), ("escalated", "escalated"), ("closed", "closed")] {
                        option value=(value) selected[filters.state.as_deref().unwrap_or("") == value] { (label) }
                    }
                }
            }
            label { "Tier"
                select name="tier" {
                    option value="" { "any" }
                    @for tier in &config.qualification.tiers {
                        @let value = tier.tier.to_string();
                        option value=(value) selected[filters.tier.as_deref() == Some(value.as_str())] { "Tier " (value) }
                    }
                }
            }
            label { "Team"
                select name="team" {
                    option value="" { "any" }
                    @for team in &config.teams {
                        @let team = team.get_ref();
                        option value=(team.id) selected[filters.team.as_deref() == Some(team.id.as_str())] { (team.name) }
                    }
                }
            }
            label { "Source"
                select name="source" {
                    option value="" { "any" }
                    @for source in &config.sources {
                        @let id = &source.get_ref().id;
                        option value=(id) selected[filters.source.as_deref() == Some(id.as_str())] { (id) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        p #live-status aria-live="polite" { (leads.len()) " leads · refreshes every 5 seconds" }
        table #leads {
            thead { tr {
                th { "Captured" } th { "Lead" } th { "Source" } th { "Tier" }
                th { "Owner" } th { "State" } th { "SLA" }
            } }
            tbody data-live=(format!("/console/leads/rows?{}", filters.query())) {
                (rows(&leads, now, config))
            }
        }
    };
    Ok(shell(&signed, "/console/leads", "Live leads", body).into_response())
}

/// Only the table's rows, for the script that keeps the list live.
async fn live_rows(
    State(console): State<Console>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Result<Response, Refusal> {
    let leads = visible_leads(&console, &signed, &filters).await?;
    let now = console.pipeline.clock.now();
    Ok(page::fragment(rows(&leads, now, console.config())).into_response())
}

fn rows(leads: &[Lead], now: Timestamp, config: &Config) -> Markup {
    html! {
        @if leads.is_empty() {
            tr { td colspan="7" .muted { "No leads in this window." } }
        }
        @for lead in leads {
            tr data-lead=(lead.id) {
                td { (when(lead.timeline.captured_at, now)) }
                td { a href=(format!("/console/leads/{}", lead.id)) { (headline(lead)) } }
                td { (lead.source) }
                td { (tier(lead)) }
                td { (owner(lead, config)) }
                td { (state(lead)) }
                td { (sla_clock(lead, now)) }
            }
        }
    }
}

/// Who the lead is: the person and company, else their e-mail, else the lead id.
fn headline(lead: &Lead) -> String {
    let capture = &lead.capture;
    let company = capture
        .company
        .clone()
        .or_else(|| lead.enrichment.as_ref().and_then(|e| e.company.clone()));
    match (&capture.name, company, &capture.captured_email) {
        (Some(name), Some(company), _) => format!("{name} · {company}"),
        (Some(name), None, _) => name.clone(),
        (None, Some(company), _) => company,
        (None, None, Some(email)) => email.clone(),
        (None, None, None) => lead.id.clone(),
    }
}

fn tier(lead: &Lead) -> Markup {
    match &lead.qualification {
        Some(q) => html! { span class=(format!("badge tier-{}", q.tier)) { "T" (q.tier) } },
        None => html! { span.none { "–" } },
    }
}

fn owner(lead: &Lead, config: &Config) -> Markup {
    match (&lead.claim, &lead.assignment) {
        (Some(claim), _) => {
            let name = config
                .rep(&claim.rep)
                .map_or(claim.rep.as_str(), |r| r.name.as_str());
            html! { (name) span.muted { " (claimed)" } }
        }
        (None, Some(a)) => html! { (a.owner_name) },
        (None, None) => html! { span.none { "not routed yet" } },
    }
}

fn state(lead: &Lead) -> Markup {
    let escalated = !lead.escalations.is_empty() && lead.state.is_open() && lead.claim.is_none();
    let label = if escalated {
        "escalated"
    } else {
        lead.state.as_str()
    };
    html! { span class=(format!("badge state-{label}")) { (label) } }
}

/// The SLA clock of a lead still waiting for its owner: due or overdue, ticking in the page.
fn sla_clock(lead: &Lead, now: Timestamp) -> Markup {
    let waiting = matches!(lead.state, LeadState::Routed | LeadState::Notified);
    match (waiting, lead.timeline.sla_due_at) {
        (true, Some(due)) => {
            let left = due.duration_since(now);
            let text = if left.is_negative() {
                format!("overdue {}", page::span(left))
            } else {
                format!("due in {}", page::span(left))
            };
            html! { span.clock.overdue[left.is_negative()] data-due=(due.to_string()) { (text) } }
        }
        _ => match (lead.timeline.claimed_at, lead.timeline.captured_at) {
            (Some(claimed), Some(captured)) => {
                html! { span.ok { "claimed in " (page::span(claimed.duration_since(captured))) } }
            }
            _ => html! { span.none { "–" } },
        },
    }
}

/// Reads a lead the viewer may see; one they may not is answered as if it did not exist.
async fn readable(console: &Console, signed: &Signed, id: &str) -> Result<Lead, Refusal> {
    let lead = console.pipeline.store.get_lead(id).await?;
    lead.filter(|lead| signed.viewer.sees_lead(lead, console.config()))
        .ok_or(Refusal::NotFound("No lead with this id is yours to see."))
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn lead_page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, Refusal> {
    let lead = readable(&console, &signed, &id).await?;
    let now = console.pipeline.clock.now();
    let config = console.config();
    let posted = console.pipeline.store.posted_messages(&lead.id).await?;
    let receipts = console.pipeline.store.delivery_receipts(&lead.id).await?;
    let alert = (lead.assignment.is_some())
        .then(|| leadrelay_shared::stages::chat_alert_for(&console.pipeline, &lead).text);
    let viewer = &signed.viewer;
    let can_claim =
        viewer.rep.is_some() && matches!(lead.state, LeadState::Routed | LeadState::Notified);
    let can_act = viewer.acts_on_lead(&lead, config) && lead.state.is_open();
    let body = html! {
        @if let Some(done) = notice.done.as_deref().and_then(notice_text) {
            p.notice role="status" { (done) }
        }
        div.figures {
            div.figure { div.label { "State" } div.value { (state(&lead)) } }
            div.figure { div.label { "Tier" } div.value { (tier(&lead)) } }
            div.figure { div.label { "Owner" } div.value { (owner(&lead, config)) } }
            div.figure { div.label { "SLA" } div.value { (sla_clock(&lead, now)) } }
        }
        @if can_claim || can_act {
            section.card aria-labelledby="actions" {
                h2 #actions { "Actions" }
                @if can_claim {
                    form.inline method="post" action=(format!("/console/leads/{}/claim", lead.id)) {
                        (csrf(&signed))
                        button type="submit" { "Claim this lead" }
                    }
                }
                @if can_act {
                    form.inline method="post" action=(format!("/console/leads/{}/reroute", lead.id)) {
                        (csrf(&signed))
                        label for="reroute-reason" { "Re-route because" }
                        input #reroute-reason name="reason" required maxlength="500" placeholder="wrong territory";
                        button.secondary type="submit" { "Re-route" }
                    }
                    form.inline method="post" action=(format!("/console/leads/{}/close", lead.id)) {
                        (csrf(&signed))
                        label for="close-outcome" { "Close as" }
                        select #close-outcome name="outcome" {
                            @for outcome in ["won", "lost", "disqualified", "nurture"] {
                                option value=(outcome) { (outcome) }
                            }
                        }
                        button.danger type="submit" { "Close" }
                    }
                }
            }
        }
        div.grid {
            section.card aria-labelledby="timeline" {
                h2 #timeline { "Timeline" }
                (timeline(&lead, now))
            }
            section.card aria-labelledby="prospect" {
                h2 #prospect { "Prospect" }
                (prospect(&lead))
            }
        }
        section.card aria-labelledby="conversation" {
            h2 #conversation { "Conversation" }
            @if let Some(question) = &lead.capture.trigger_query {
                p { strong { "Asked: " } (question) }
            }
            @if lead.capture.transcript.is_empty() {
                p.muted { "No transcript came with this lead." }
            } @else {
                div.transcript {
                    @for turn in &lead.capture.transcript {
                        div { strong { (turn.role) ": " } (turn.text) }
                    }
                }
            }
        }
        section.card aria-labelledby="routing" {
            h2 #routing { "Why this owner" }
            (routing(&lead))
        }
        div.grid {
            section.card aria-labelledby="alerts" {
                h2 #alerts { "Alerts" }
                (alerts(&lead, &receipts, &posted, alert.as_deref(), now))
            }
            section.card aria-labelledby="activity" {
                h2 #activity { "Activity" }
                (activity(&lead, now))
            }
        }
    };
    let title = headline(&lead);
    Ok(shell(&signed, "/console/leads", &title, body).into_response())
}

fn notice_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "claimed" => "You claimed this lead: the SLA clock has stopped.",
        "rerouted" => "The lead is back with routing; its new owner is alerted as a new round.",
        "closed" => "The lead is closed and its owner's capacity is free.",
        _ => return None,
    })
}

fn timeline(lead: &Lead, now: Timestamp) -> Markup {
    let t = &lead.timeline;
    let mut events: Vec<(Timestamp, String)> = [
        (t.captured_at, "captured"),
        (t.enriched_at, "enriched"),
        (t.routed_at, "routed"),
        (t.notified_at, "alert delivered"),
        (t.claimed_at, "claimed"),
        (t.first_touch_at, "first human touch"),
        (t.meeting_booked_at, "meeting booked"),
        (t.meeting_held_at, "meeting held"),
        (t.escalation_stopped_at, "escalation ladder ended"),
        (t.closed_at, "closed"),
    ]
    .into_iter()
    .filter_map(|(at, what)| at.map(|at| (at, what.to_owned())))
    .collect();
    for step in &lead.escalations {
        events.push((
            step.at,
            format!(
                "escalated (level {}) from {} to {}",
                step.level,
                step.from.key(),
                step.to.key()
            ),
        ));
    }
    for misroute in &lead.misroutes {
        events.push((
            misroute.at,
            format!("{} said not mine: {}", misroute.rep, misroute.reason),
        ));
    }
    for reroute in &lead.reroutes {
        events.push((
            reroute.at,
            format!(
                "re-routed by {} from {}: {}",
                reroute.by, reroute.from, reroute.reason
            ),
        ));
    }
    if let Some(claim) = &lead.claim {
        if let Some(entry) = events.iter_mut().find(|(_, what)| what == "claimed") {
            entry.1 = format!("claimed by {} via {}", claim.rep, claim.via);
        }
    }
    if let Some(reason) = &lead.close_reason {
        if let Some(entry) = events.iter_mut().find(|(_, what)| what == "closed") {
            entry.1 = format!("closed: {reason}");
        }
    }
    events.sort_by_key(|(at, _)| *at);
    let captured = t.captured_at;
    html! {
        ol.timeline {
            @for (at, what) in &events {
                li {
                    span { (when(Some(*at), now)) }
                    span {
                        (what)
                        @if let Some(captured) = captured {
                            @if *at > captured {
                                span.muted { " · +" (page::span(at.duration_since(captured))) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(due) = t.sla_due_at {
            p.muted { "SLA due " (when(Some(due), now)) }
        }
        @if let Some(failure) = &lead.last_failure {
            p.problem { "Last failure in " (failure.stage.as_str()) ": " (failure.error) }
        }
    }
}

fn prospect(lead: &Lead) -> Markup {
    let c = &lead.capture;
    let rows: Vec<(&str, Option<String>)> = vec![
        ("Name", c.name.clone()),
        ("E-mail", c.captured_email.clone()),
        ("Company", c.company.clone()),
        ("Job title", c.job_title.clone()),
        ("Phone", c.phone.clone()),
        ("Source", Some(lead.source.clone())),
        ("Lead id", Some(lead.id.clone())),
    ];
    html! {
        dl.facts {
            @for (label, value) in rows {
                @if let Some(value) = value {
                    dt { (label) } dd { (value) }
                }
            }
            @for (field, value) in &c.form_fields {
                dt { (field) }
                dd { @match value { serde_json::Value::String(text) => (text), other => (other.to_string()) } }
            }
        }
        @if let Some(q) = &lead.qualification {
            h2 { "Qualification" }
            p { "Tier " (q.tier) ", score " (q.score) ", SLA " (q.sla_minutes) " min" }
            ul {
                @for item in &q.breakdown {
                    li { (item.signal) ": " (item.points) }
                }
            }
        }
    }
}

fn routing(lead: &Lead) -> Markup {
    let Some(assignment) = &lead.assignment else {
        return html! { p.muted { "Not routed yet." } };
    };
    html! {
        p { strong { (assignment.owner_name) } " by rule " code { (assignment.rule) } ": " (assignment.reason) }
        @if let Some(trace) = &assignment.trace {
            @if !trace.topics.is_empty() {
                p { "Topics: " (trace.topics.join(", ")) }
            }
            h2 { "Rules tried" }
            ol {
                @for trial in &trace.rules {
                    li {
                        code { (trial.rule) } " "
                        @if trial.matched { span.ok { "matched" } } @else { span.muted { "did not match" } }
                        ": " (trial.detail)
                    }
                }
            }
            @if trace.rules_omitted > 0 {
                p.muted { (trace.rules_omitted) " more rules tried, not kept." }
            }
            @if let Some(note) = &trace.after_hours {
                p { "After hours (" (note.team) ", " (note.policy) "): " (note.detail) }
            }
            h2 { "Candidates" }
            table {
                thead { tr { th { "Step" } th { "Rep" } th { "Outcome" } } }
                tbody {
                    @for step in &trace.steps {
                        @if step.candidates.is_empty() {
                            tr { td { (step.target) } td.muted { "–" } td { (step.outcome) } }
                        }
                        @for candidate in &step.candidates {
                            tr {
                                td { (step.target) }
                                td { (candidate.rep) }
                                td {
                                    @if candidate.picked {
                                        strong.ok { (candidate.reason) }
                                    } @else {
                                        (candidate.reason)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alerts(
    lead: &Lead,
    receipts: &[DeliveryReceipt],
    posted: &[PostedMessage],
    text: Option<&str>,
    now: Timestamp,
) -> Markup {
    html! {
        @match lead.timeline.notified_at {
            Some(at) => p { "First alert delivered " (when(Some(at), now)) },
            None => p.muted { "No alert delivered yet." },
        }
        @if let Some(held) = lead.assignment.as_ref().and_then(|a| a.held_until) {
            p { "Held for the owner's hours until " (when(Some(held), now)) }
        }
        @if !receipts.is_empty() {
            table {
                caption.muted { "Delivery receipts, one per channel and alert round" }
                thead { tr { th { "Channel" } th { "Receipt" } } }
                tbody {
                    @for receipt in receipts {
                        tr {
                            td { code { (receipt.channel) } }
                            td {
                                @match (receipt.delivered_at, receipt.lease_until) {
                                    (Some(at), _) => span.ok { "delivered " (when(Some(at), now)) },
                                    (None, Some(until)) => span { "being delivered (lease until " (when(Some(until), now)) ")" },
                                    (None, None) => span.bad { "not delivered (the attempt was given up or is retried)" },
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !posted.is_empty() {
            table {
                caption.muted { "Slack messages posted (edited in place on claim and close)" }
                thead { tr { th { "Slack channel" } th { "Message ts" } } }
                tbody {
                    @for message in posted {
                        tr { td { (message.channel) } td { code { (message.ts) } } }
                    }
                }
            }
        }
        @if let Some(text) = text {
            details {
                summary { "The alert as its text version reads" }
                pre { (text) }
            }
        }
    }
}

fn activity(lead: &Lead, now: Timestamp) -> Markup {
    html! {
        @if lead.activities.is_empty() {
            p.muted { "Nothing recorded after the alert yet." }
        } @else {
            table {
                thead { tr { th { "When" } th { "What" } th { "By" } th { "Via" } } }
                tbody {
                    @for event in &lead.activities {
                        tr {
                            td { (when(Some(event.at), now)) }
                            td {
                                (event.kind.name())
                                @if let Some(detail) = &event.detail { span.muted { " · " (detail) } }
                                @if event.automated { span.muted { " (automated)" } }
                            }
                            td { (event.by.as_deref().unwrap_or("–")) }
                            td { (event.via) }
                        }
                    }
                }
            }
        }
    }
}

fn back_to(lead_id: &str, done: &str) -> Response {
    Redirect::to(&format!("/console/leads/{lead_id}?done={done}")).into_response()
}

async fn claim_lead(
    State(console): State<Console>,
    Path(id): Path<String>,
    action: Action<crate::auth::Empty>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let lead = readable(&console, &signed, &id).await?;
    let Some(rep) = signed.viewer.rep.clone() else {
        return Err(Refusal::Forbidden(
            "Only an account that is a rep can claim leads.",
        ));
    };
    let outcome = claim(&console.pipeline, &lead.id, &rep, ClaimVia::Console)
        .await
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    // Why it was refused, if it was.
    let refused = match &outcome {
        ClaimOutcome::Won { .. } | ClaimOutcome::AlreadyYours { .. } => None,
        ClaimOutcome::OwnedBy { rep, .. } => Some(format!("{rep} claimed it first")),
        ClaimOutcome::Refused { why, .. } => Some(why.clone()),
    };
    let detail = match (&outcome, &refused) {
        (_, Some(why)) => format!("refused: {why}"),
        (ClaimOutcome::AlreadyYours { .. }, None) => "already theirs".to_owned(),
        _ => "claimed".to_owned(),
    };
    console
        .audit(&signed.viewer.login, "claim", &lead.id, &detail)
        .await;
    match refused {
        None => Ok(back_to(&lead.id, "claimed")),
        Some(why) => Err(Refusal::BadRequest(format!("Not claimed: {why}"))),
    }
}

#[derive(Deserialize)]
struct RerouteForm {
    #[serde(default)]
    reason: String,
}

async fn reroute_lead(
    State(console): State<Console>,
    Path(id): Path<String>,
    action: Action<RerouteForm>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let lead = readable(&console, &signed, &id).await?;
    if !signed.viewer.acts_on_lead(&lead, console.config()) {
        return Err(Refusal::Forbidden(
            "Only an operator, or the manager of the lead's team, can re-route it.",
        ));
    }
    let login = signed.viewer.login.as_str();
    match console
        .pipeline
        .hand_back(&lead.id, HandBack::Console { login }, &action.form.reason)
        .await
    {
        Ok(_) => {
            console
                .audit(login, "reroute", &lead.id, action.form.reason.trim())
                .await;
            Ok(back_to(&lead.id, "rerouted"))
        }
        Err(NotMineError::Store(e)) => Err(e.into()),
        Err(refused) => Err(Refusal::BadRequest(refused.to_string())),
    }
}

#[derive(Deserialize)]
struct CloseForm {
    #[serde(default)]
    outcome: String,
}

async fn close(
    State(console): State<Console>,
    Path(id): Path<String>,
    action: Action<CloseForm>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let lead = readable(&console, &signed, &id).await?;
    if !signed.viewer.acts_on_lead(&lead, console.config()) {
        return Err(Refusal::Forbidden(
            "Only an operator, or the manager of the lead's team, can close it here.",
        ));
    }
    let Some(outcome) = Outcome::parse(&action.form.outcome) else {
        return Err(Refusal::BadRequest(
            "Choose an outcome: won, lost, disqualified or nurture.".into(),
        ));
    };
    let now = console.pipeline.clock.now();
    let closed = close_lead(
        console.pipeline.store.as_ref(),
        now,
        &lead.id,
        outcome.as_str(),
    )
    .await
    .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    // The notify stage edits the lead's posted alerts to say it is closed (as the CLI's close).
    let envelope = Envelope::new(&closed.id, Stage::Notify, &closed.trace_id);
    if let Err(e) = console.pipeline.queue.send(Stage::Notify, &envelope).await {
        tracing::warn!(lead_id = %closed.id, error = %e,
            "closed; its posted alerts keep their old text");
    }
    console
        .audit(&signed.viewer.login, "close", &lead.id, outcome.as_str())
        .await;
    Ok(back_to(&lead.id, "closed"))
}

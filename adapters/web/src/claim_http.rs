//! The claim endpoints, served by the embedded server and by the claim Lambda alike:
//!
//! - `GET /claim/{lead}?rep=..&expires=..&sig=..`: the signed link from an e-mail or SMS
//!   opens a page with a Claim button. Opening the link claims nothing: mail scanners and
//!   link previews fetch links, and must not claim leads for anyone.
//! - `POST` to the same URL: claims it.
//! - `POST /claim/{lead}/activity` and `/claim/{lead}/not-mine` (same signed query): the
//!   page's buttons for what happened next (Called, E-mailed, Meeting booked, Not a fit) and
//!   "Not mine" with its reason.
//! - `POST /slack/interactivity`: the alert's buttons in Slack (a signed `block_actions`
//!   request): Claim, the same progress buttons, and the "Not mine" menu. The pressed message
//!   is updated in place; a later clicker is told who owns the lead.

use axum::body::{to_bytes, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::Timestamp;
use serde_json::{json, Value};
use tracing::{error, warn};

use crate::Api;
use leadrelay_shared::claim_link;
use leadrelay_shared::model::{ActivityKind, Lead, Owner};
use leadrelay_shared::render::{self, slack_escape};
use leadrelay_shared::signature;
use leadrelay_shared::stages::activity::{RepActivity, RepActivityError};
use leadrelay_shared::stages::claim::{self, claimed_status, ClaimError, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::reroute::NotMineError;
use leadrelay_shared::stages::{chat_alert_for, claim_policy};
use leadrelay_shared::url_prefix::UrlPrefix;

/// Slack interactivity payloads are small; anything larger is not Slack.
const MAX_SLACK_BODY: usize = 64 * 1024;
/// The `block_id` of the alert's buttons, replaced by the claim's outcome.
pub use leadrelay_shared::render::SLACK_ACTIONS_BLOCK as ACTIONS_BLOCK;
pub use leadrelay_shared::stages::claim::response_line;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/claim/{lead_id}", get(claim_page).post(claim_by_link))
        .route("/claim/{lead_id}/activity", post(activity_by_link))
        .route("/claim/{lead_id}/not-mine", post(not_mine_by_link))
        .route("/slack/interactivity", post(slack_interactivity))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = html_escape::encode_text(title);
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
             <body style=\"font-family:sans-serif;max-width:32em;margin:2em auto\">\
             <h1>{title}</h1>{body}</body></html>"
        )),
    )
        .into_response()
}

fn refused() -> Response {
    // Which check failed goes to the log only.
    page(
        StatusCode::FORBIDDEN,
        "Link not valid",
        "<p>This claim link is not valid or has expired. Claim the lead from a newer alert.</p>",
    )
}

/// The lead's claim policy does not let this rep claim it: who owns it, and why not.
fn not_yours(why: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Not yours to claim",
        &format!("<p>{}</p>", html_escape::encode_text(why)),
    )
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>leadrelay could not reach its store. Try again in a moment.</p>",
    )
}

fn owned_by(rep: &str, at: Timestamp) -> String {
    format!(
        "Already claimed by {rep} at {}.",
        at.strftime("%Y-%m-%d %H:%M UTC")
    )
}

/// Checks the link and reads the lead; `Err` is the page to answer with.
async fn verified(
    api: &Api,
    lead_id: &str,
    query: Option<&str>,
) -> Result<(String, Lead), Response> {
    let keys = &api.pipeline.config.claim.link_keys;
    let now = api.pipeline.clock.now();
    let rep = claim_link::verify(keys, lead_id, query.unwrap_or(""), now).map_err(|reason| {
        warn!(lead_id, %reason, "claim link refused");
        refused()
    })?;
    match api.pipeline.store.get_lead(lead_id).await {
        Ok(Some(lead)) => Ok((rep, lead)),
        Ok(None) => Err(page(
            StatusCode::NOT_FOUND,
            "No such lead",
            "<p>This lead does not exist (any more).</p>",
        )),
        Err(e) => {
            error!(lead_id, error = %e, "could not read the lead to claim");
            Err(unavailable())
        }
    }
}

async fn claim_page(
    State(api): State<Api>,
    Path(lead_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (rep, lead) = match verified(&api, &lead_id, query.as_deref()).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let headline = describe(&api, &lead);
    let signed = query.as_deref().unwrap_or_default();
    if let Some(claim) = &lead.claim {
        let (text, forms) = if claim.rep == rep {
            (
                "You claimed this lead.".to_owned(),
                progress_forms(&lead_id, signed, &lead),
            )
        } else {
            (owned_by(&claim.rep, claim.at), String::new())
        };
        return page(
            StatusCode::OK,
            "Lead claimed",
            &format!(
                "<p>{headline}</p><p>{}</p>{forms}",
                html_escape::encode_text(&text)
            ),
        );
    }
    // No button for a rep the lead's claim policy would refuse.
    if let Err(refusal) =
        claim_policy::check(&api.pipeline.config, &api.pipeline.router, &lead, &rep)
    {
        return not_yours(&refusal.why);
    }
    // The form posts to this very URL (path and signed query), escaped for the attribute.
    let action = format!(
        "/claim/{}?{signed}",
        url::form_urlencoded::byte_serialize(lead_id.as_bytes()).collect::<String>(),
    );
    // The rep it was routed to may hand it back without claiming it first.
    let routed_to_rep = lead
        .assignment
        .as_ref()
        .is_some_and(|a| a.owner == Owner::Rep(rep.clone()));
    let not_mine = if routed_to_rep {
        not_mine_form(&lead_id, signed)
    } else {
        String::new()
    };
    page(
        StatusCode::OK,
        "Claim this lead?",
        &format!(
            "<p>{headline}</p><form method=\"post\" action=\"{}\">\
             <button type=\"submit\" style=\"font-size:1.2em;padding:.5em 1.5em\">Claim it</button>\
             </form>{not_mine}",
            html_escape::encode_double_quoted_attribute(&action)
        ),
    )
}

/// `/claim/{lead}{suffix}?{signed query}`, escaped for an attribute.
fn link_action(lead_id: &str, suffix: &str, signed: &str) -> String {
    let url = format!(
        "/claim/{}{suffix}?{signed}",
        url::form_urlencoded::byte_serialize(lead_id.as_bytes()).collect::<String>()
    );
    html_escape::encode_double_quoted_attribute(&url).into_owned()
}

/// What the rep did, as buttons (one form each, so it works without JavaScript), then "Not
/// mine"; nothing once the lead is closed.
fn progress_forms(lead_id: &str, signed: &str, lead: &Lead) -> String {
    if lead.state == leadrelay_shared::model::LeadState::Closed {
        return String::new();
    }
    let action = link_action(lead_id, "/activity", signed);
    let buttons: String = render::PROGRESS_BUTTONS
        .iter()
        .map(|(kind, label)| {
            format!(
                "<form method=\"post\" action=\"{action}\" style=\"display:inline\">\
                 <input type=\"hidden\" name=\"kind\" value=\"{kind}\">\
                 <button type=\"submit\">{label}</button></form> "
            )
        })
        .collect();
    format!(
        "<h2>What happened?</h2><p>{buttons}</p>{}",
        not_mine_form(lead_id, signed)
    )
}

/// "Not mine", with the reason it needs.
fn not_mine_form(lead_id: &str, signed: &str) -> String {
    let options: String = render::NOT_MINE_REASONS
        .iter()
        .map(|(code, reason)| format!("<option value=\"{code}\">{reason}</option>"))
        .collect();
    format!(
        "<h2>Not yours?</h2><form method=\"post\" action=\"{}\">\
         <label for=\"reason\">Why</label> <select id=\"reason\" name=\"reason\" required>\
         <option value=\"\">Choose a reason</option>{options}</select> \
         <button type=\"submit\">Not mine: route it again</button></form>",
        link_action(lead_id, "/not-mine", signed)
    )
}

/// The `name` field of a small urlencoded form body.
async fn form_field(body: axum::body::Body, name: &str) -> Option<String> {
    let bytes = to_bytes(body, MAX_FORM_BODY).await.ok()?;
    url::form_urlencoded::parse(&bytes)
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.into_owned())
}

/// The page's forms post a word or two; anything larger is not them.
const MAX_FORM_BODY: usize = 4 * 1024;

async fn activity_by_link(
    State(api): State<Api>,
    Path(lead_id): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let rep = match verified(&api, &lead_id, query.as_deref()).await {
        Ok((rep, _)) => rep,
        Err(page) => return page,
    };
    let kind = form_field(request.into_body(), "kind")
        .await
        .filter(|k| render::PROGRESS_BUTTONS.iter().any(|(name, _)| name == k))
        .and_then(|k| ActivityKind::parse(&k));
    let Some(kind) = kind else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "<p>Use the buttons on the lead's page.</p>",
        );
    };
    match api
        .pipeline
        .rep_activity(&lead_id, &rep, kind, ClaimVia::Link)
        .await
    {
        Ok(RepActivity::Recorded { lead, .. }) => {
            let done = if lead.state == leadrelay_shared::model::LeadState::Closed {
                "The lead is closed: its place in your open leads is free."
            } else {
                "Recorded."
            };
            let forms = progress_forms(&lead_id, query.as_deref().unwrap_or_default(), &lead);
            page(
                StatusCode::OK,
                "Recorded",
                &format!(
                    "<p>{}: {}</p>{forms}",
                    html_escape::encode_text(activity_label(kind)),
                    done
                ),
            )
        }
        Ok(RepActivity::NotYours { why }) => not_yours(&why),
        Err(RepActivityError::Claim(ClaimError::NotFound(_))) => {
            page(StatusCode::NOT_FOUND, "No such lead", "")
        }
        Err(failure) => {
            error!(lead_id, error = %failure, "activity by link failed");
            unavailable()
        }
    }
}

async fn not_mine_by_link(
    State(api): State<Api>,
    Path(lead_id): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let rep = match verified(&api, &lead_id, query.as_deref()).await {
        Ok((rep, _)) => rep,
        Err(page) => return page,
    };
    let reason = form_field(request.into_body(), "reason")
        .await
        .and_then(|code| render::not_mine_reason(&code));
    let Some(reason) = reason else {
        return page(
            StatusCode::BAD_REQUEST,
            "A reason is needed",
            "<p>Choose why the lead is not yours: it is counted against the rule that sent it.</p>",
        );
    };
    match api.pipeline.not_mine(&lead_id, &rep, reason).await {
        Ok(_) => page(
            StatusCode::OK,
            "Handed back",
            "<p>The lead is being routed again, past you. Thanks for saying why.</p>",
        ),
        Err(refusal) => not_mine_refused(&lead_id, refusal).0,
    }
}

/// A refused "not mine" as a page and as the text for Slack.
fn not_mine_refused(lead_id: &str, refusal: NotMineError) -> (Response, String) {
    let text = refusal.to_string();
    let response = match &refusal {
        NotMineError::NotYours { .. } => not_yours(&text),
        NotMineError::NotFound(_) => page(StatusCode::NOT_FOUND, "No such lead", ""),
        NotMineError::NoReason | NotMineError::NotOpen { .. } => page(
            StatusCode::CONFLICT,
            "Not handed back",
            &format!("<p>{}</p>", html_escape::encode_text(&text)),
        ),
        NotMineError::Busy(_) | NotMineError::Store(_) => {
            error!(lead_id, error = %refusal, "not mine failed");
            return (
                unavailable(),
                "leadrelay could not hand the lead back just now. Try again.".into(),
            );
        }
    };
    (response, text)
}

/// The button's label for an activity kind.
fn activity_label(kind: ActivityKind) -> &'static str {
    render::PROGRESS_BUTTONS
        .iter()
        .find(|(name, _)| *name == kind.name())
        .map(|(_, label)| *label)
        .unwrap_or("Done")
}

async fn claim_by_link(
    State(api): State<Api>,
    Path(lead_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let rep = match verified(&api, &lead_id, query.as_deref()).await {
        Ok((rep, _)) => rep,
        Err(page) => return page,
    };
    match claim::claim(&api.pipeline, &lead_id, &rep, ClaimVia::Link).await {
        Ok(ClaimOutcome::Won { first_response, .. }) => page(
            StatusCode::OK,
            "It is yours",
            &format!(
                "<p>You own this lead now. {}</p>",
                html_escape::encode_text(&response_line(&first_response))
            ),
        ),
        Ok(ClaimOutcome::AlreadyYours { .. }) => page(
            StatusCode::OK,
            "It is yours",
            "<p>You had already claimed this lead.</p>",
        ),
        Ok(ClaimOutcome::OwnedBy { rep, at, .. }) => page(
            StatusCode::CONFLICT,
            "Already claimed",
            &format!("<p>{}</p>", html_escape::encode_text(&owned_by(&rep, at))),
        ),
        Ok(ClaimOutcome::Refused { why, .. }) => not_yours(&why),
        Err(failure) => claim_failed(&lead_id, failure),
    }
}

/// The alert's headline, then who the prospect is and what they asked, HTML-escaped.
fn describe(api: &Api, lead: &Lead) -> String {
    let capture = &lead.capture;
    let company = lead
        .enrichment
        .as_ref()
        .and_then(|e| e.company.as_deref())
        .or(capture.company.as_deref());
    let who = [
        capture.name.as_deref(),
        company,
        capture.captured_email.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let question = capture
        .trigger_query
        .as_deref()
        .map(|q| {
            format!(
                "<br>\u{201c}{}\u{201d}",
                html_escape::encode_text(&leadrelay_shared::render::truncate(q, 300))
            )
        })
        .unwrap_or_default();
    format!(
        "{}</p><p><strong>{}</strong>{question}",
        html_escape::encode_text(&chat_alert_for(&api.pipeline, lead).headline),
        html_escape::encode_text(&who)
    )
}

fn claim_failed(lead_id: &str, failure: ClaimError) -> Response {
    match failure {
        ClaimError::NotFound(_) => page(StatusCode::NOT_FOUND, "No such lead", ""),
        ClaimError::UnknownRep(_) => refused(),
        ClaimError::NotClaimable { state, .. } => page(
            StatusCode::CONFLICT,
            "Not claimable",
            &format!("<p>This lead is {state}: there is nothing to claim.</p>"),
        ),
        ClaimError::Busy(_) | ClaimError::Store(_) => {
            error!(lead_id, error = %failure, "claim failed");
            unavailable()
        }
    }
}

/// The parts of a Slack `block_actions` request a claim needs.
#[derive(Debug, PartialEq, Eq)]
pub struct SlackClaim {
    pub user: String,
    pub lead_id: String,
    pub response_url: Option<String>,
}

/// Which of the alert's controls was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackAction {
    Claim,
    /// A progress button: Called, E-mailed, Meeting booked, Not a fit.
    Activity(ActivityKind),
    /// The "Not mine" menu, with the reason picked.
    NotMine(&'static str),
}

/// A press of one of the alert's controls.
#[derive(Debug, PartialEq, Eq)]
pub struct SlackPress {
    pub user: String,
    pub lead_id: String,
    pub response_url: Option<String>,
    pub action: SlackAction,
}

/// Reads the `payload` form field's JSON; `None` when it is not a Claim button press.
/// Public for the fuzz targets (`fuzz/`), which feed it arbitrary bodies.
pub fn parse_slack_claim(body: &[u8]) -> Option<SlackClaim> {
    let press = parse_slack_press(body)?;
    (press.action == SlackAction::Claim).then_some(SlackClaim {
        user: press.user,
        lead_id: press.lead_id,
        response_url: press.response_url,
    })
}

/// Reads the `payload` form field's JSON; `None` when it is none of the alert's controls
/// (an Open in CRM link, another app's interaction).
pub fn parse_slack_press(body: &[u8]) -> Option<SlackPress> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())?;
    let payload: Value = serde_json::from_str(&payload).ok()?;
    if payload["type"] != "block_actions" {
        return None;
    }
    let (action, lead_id) = payload["actions"].as_array()?.iter().find_map(|a| {
        let id = a["action_id"].as_str()?;
        if id == "claim" {
            return Some((SlackAction::Claim, a["value"].as_str()?.to_owned()));
        }
        if id == render::SLACK_NOT_MINE_ACTION {
            let picked = a["selected_option"]["value"].as_str()?;
            let (code, lead) = picked.split_once(':')?;
            return Some((
                SlackAction::NotMine(render::not_mine_reason(code)?),
                lead.to_owned(),
            ));
        }
        let kind = id.strip_prefix(render::SLACK_ACTIVITY_ACTION_PREFIX)?;
        render::PROGRESS_BUTTONS
            .iter()
            .find(|(name, _)| *name == kind)?;
        Some((
            SlackAction::Activity(ActivityKind::parse(kind)?),
            a["value"].as_str()?.to_owned(),
        ))
    })?;
    Some(SlackPress {
        user: payload["user"]["id"].as_str()?.to_owned(),
        lead_id,
        response_url: payload["response_url"].as_str().map(str::to_owned),
        action,
    })
}

async fn slack_interactivity(State(api): State<Api>, request: Request) -> Response {
    let config = &api.pipeline.config;
    if config.claim.slack_keys.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "Slack interactivity is not configured",
        )
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let body: Bytes = match to_bytes(body, MAX_SLACK_BODY).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let now = api.pipeline.clock.now();
    if let Err(reason) =
        signature::verify_slack(&config.claim.slack_keys, &parts.headers, &body, now)
    {
        warn!(%reason, "Slack request signature refused");
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let Some(press) = parse_slack_press(&body) else {
        // Another button or interaction: acknowledged, nothing to do.
        return StatusCode::OK.into_response();
    };
    let Some(rep) = slack_rep(&api, &press.user).await else {
        return ephemeral(
            "Your Slack account is not linked to a leadrelay rep: ask an admin to set \
             slack_user_id for you.",
        );
    };
    match press.action {
        SlackAction::Claim => {}
        SlackAction::Activity(kind) => return slack_activity(&api, &press, &rep, kind).await,
        SlackAction::NotMine(reason) => return slack_not_mine(&api, &press, &rep, reason).await,
    }
    let outcome = match claim::claim(&api.pipeline, &press.lead_id, &rep, ClaimVia::Slack).await {
        Ok(outcome) => outcome,
        Err(ClaimError::NotClaimable { state, .. }) => {
            return ephemeral(&format!("This lead is {state}: there is nothing to claim."))
        }
        Err(ClaimError::NotFound(_)) => return ephemeral("This lead does not exist (any more)."),
        Err(failure) => {
            error!(lead_id = %press.lead_id, error = %failure, "Slack claim failed");
            return ephemeral("leadrelay could not claim the lead just now. Try again.");
        }
    };
    match &outcome {
        ClaimOutcome::Won {
            lead,
            first_response,
        } => {
            // The pressed message at once; the lead's other messages (a queue's channel, its
            // manager's DM, each member of a broadcast pool) through the notify stage, which
            // the claim sent the lead to.
            if let Some(url) = &press.response_url {
                let text = claimed_status(lead, &rep, first_response);
                let message = claimed_message(&api, lead, &text);
                api.slack.respond(url, &message).await;
            }
            StatusCode::OK.into_response()
        }
        ClaimOutcome::AlreadyYours { .. } => ephemeral("You had already claimed this lead."),
        ClaimOutcome::OwnedBy { rep, at, .. } => ephemeral(&owned_by(rep, *at)),
        ClaimOutcome::Refused { why, .. } => ephemeral(why),
    }
}

/// A progress button in Slack: recorded for the rep (claiming the lead first when nobody
/// had), and the pressed message shows it, keeping the buttons while the lead is open.
async fn slack_activity(api: &Api, press: &SlackPress, rep: &str, kind: ActivityKind) -> Response {
    match api
        .pipeline
        .rep_activity(&press.lead_id, rep, kind, ClaimVia::Slack)
        .await
    {
        Ok(RepActivity::Recorded { lead, .. }) => {
            if let Some(url) = &press.response_url {
                let alert = chat_alert_for(&api.pipeline, &lead).slack;
                let done = format!(
                    "*{}* recorded by {}.",
                    activity_label(kind),
                    slack_escape(&api.pipeline.router.owner_name(&Owner::Rep(rep.to_owned())))
                );
                let mut message = if lead.state == leadrelay_shared::model::LeadState::Closed {
                    render::slack_with_status(alert, &format!(":lock: Closed: {done}"))
                } else {
                    let claimed = lead
                        .claim
                        .as_ref()
                        .map(|c| claimed_status(&lead, &c.rep, &claim::FirstResponse::of(&lead)))
                        .unwrap_or_default();
                    render::slack_with_progress(alert, &format!("{claimed} {done}"), &lead.id)
                };
                message["replace_original"] = json!(true);
                api.slack.respond(url, &message).await;
            }
            StatusCode::OK.into_response()
        }
        Ok(RepActivity::NotYours { why }) => ephemeral(&why),
        Err(RepActivityError::Claim(ClaimError::NotFound(_))) => {
            ephemeral("This lead does not exist (any more).")
        }
        Err(failure) => {
            error!(lead_id = %press.lead_id, error = %failure, "Slack activity failed");
            ephemeral("leadrelay could not record that just now. Try again.")
        }
    }
}

/// The "Not mine" menu in Slack: the lead is routed again past the rep, and the pressed
/// message says so (its buttons gone).
async fn slack_not_mine(api: &Api, press: &SlackPress, rep: &str, reason: &str) -> Response {
    match api.pipeline.not_mine(&press.lead_id, rep, reason).await {
        Ok(lead) => {
            if let Some(url) = &press.response_url {
                let text = format!(
                    ":leftwards_arrow_with_hook: You handed it back: {}. Routing it again.",
                    slack_escape(reason)
                );
                let mut message =
                    render::slack_with_status(chat_alert_for(&api.pipeline, &lead).slack, &text);
                message["replace_original"] = json!(true);
                api.slack.respond(url, &message).await;
            }
            StatusCode::OK.into_response()
        }
        Err(refusal) => ephemeral(&not_mine_refused(&press.lead_id, refusal).1),
    }
}

/// The rep who pressed a Slack button: by their configured `slack_user_id`, else (with the
/// Slack app) by the e-mail address Slack has for them.
async fn slack_rep(api: &Api, member: &str) -> Option<String> {
    let reps = || api.pipeline.config.reps.iter().map(|r| r.get_ref());
    if let Some(rep) = reps().find(|r| r.slack_user_id.as_deref() == Some(member)) {
        return Some(rep.id.clone());
    }
    let email = match api.pipeline.notifier.slack_member_email(member).await {
        Ok(email) => email?,
        Err(e) => {
            warn!(error = %e, "the Slack member's e-mail address could not be read");
            return None;
        }
    };
    reps()
        .find(|r| {
            r.slack_user_id.is_none()
                && r.email
                    .as_deref()
                    .is_some_and(|own| own.eq_ignore_ascii_case(&email))
        })
        .map(|r| r.id.clone())
}

/// The alert as it was, with its Claim button replaced by who claimed it and the buttons
/// that record what happened next (for `response_url`).
fn claimed_message(api: &Api, lead: &Lead, text: &str) -> Value {
    let alert = chat_alert_for(&api.pipeline, lead).slack;
    let mut message = render::slack_with_progress(alert, text, &lead.id);
    message["replace_original"] = json!(true);
    message
}

/// An answer only the clicker sees (Slack shows a 200 response body to the user).
fn ephemeral(text: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": slack_escape(text),
        })),
    )
        .into_response()
}

/// Posts message updates to Slack's `response_url`, only to Slack's own host.
#[derive(Clone)]
pub struct SlackResponder {
    /// `None` when no client could be built (logged at start): messages stay as posted.
    http: Option<reqwest::Client>,
    /// `[claim] slack_response_url_prefix`, parsed; `None` (an invalid prefix, which config
    /// loading refuses) calls nothing.
    allowed: Option<UrlPrefix>,
}

impl SlackResponder {
    pub fn new(allowed_prefix: &str) -> Self {
        let allowed = match UrlPrefix::parse(allowed_prefix) {
            Ok(prefix) => Some(prefix),
            Err(error) => {
                warn!(%error, "claim.slack_response_url_prefix is invalid; Slack messages will not be updated");
                None
            }
        };
        let http = leadrelay_https::client(|builder| {
            builder
                .timeout(std::time::Duration::from_secs(3))
                // The URL came from a request: a redirect would re-post the claimed alert,
                // with the prospect's details, wherever it points.
                .redirect(reqwest::redirect::Policy::none())
        })
        .inspect_err(|error| warn!(%error, "no HTTP client; Slack messages will not be updated"))
        .ok();
        SlackResponder { http, allowed }
    }

    /// Posts nothing: where no claim route is served.
    pub fn none() -> Self {
        SlackResponder {
            http: None,
            allowed: None,
        }
    }

    /// Best effort: the claim stands whether or not Slack takes the update.
    pub async fn respond(&self, url: &str, message: &Value) {
        if !self.allowed.as_ref().is_some_and(|p| p.contains(url)) {
            warn!("Slack response_url is not on Slack's host; message not updated");
            return;
        }
        let Some(http) = &self.http else { return };
        match http.post(url).json(message).send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) if response.status().is_redirection() => warn!(
                status = response.status().as_u16(),
                "Slack answered the message update with a redirect; not followed"
            ),
            Ok(response) => warn!(
                status = response.status().as_u16(),
                "Slack refused the message update"
            ),
            Err(e) => warn!(
                timeout = e.is_timeout(),
                "could not reach Slack to update the message"
            ),
        }
    }
}

/// For tests and tools: the headers Slack would send with `body` at `timestamp`.
pub fn slack_headers(key: &signature::SigningKey, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let signature = signature::sign_slack(key, timestamp, body);
    if let (Ok(ts), Ok(sig)) = (timestamp.to_string().parse(), signature.parse()) {
        headers.insert("x-slack-request-timestamp", ts);
        headers.insert("x-slack-signature", sig);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(payload: &Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    #[test]
    fn a_claim_press_is_read_from_slacks_block_actions_payload() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U123", "username": "alice"},
            "response_url": "https://hooks.slack.com/actions/T1/1/abc",
            "actions": [{"action_id": "open_crm"}, {"action_id": "claim", "value": "lead-9"}]
        });
        assert_eq!(
            parse_slack_claim(&form(&payload)),
            Some(SlackClaim {
                user: "U123".into(),
                lead_id: "lead-9".into(),
                response_url: Some("https://hooks.slack.com/actions/T1/1/abc".into()),
            })
        );
    }

    #[test]
    fn other_interactions_and_garbage_are_not_claims() {
        let other = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "open_crm", "value": "x"}]});
        assert_eq!(parse_slack_claim(&form(&other)), None);
        let modal = json!({"type": "view_submission", "user": {"id": "U1"}});
        assert_eq!(parse_slack_claim(&form(&modal)), None);
        assert_eq!(parse_slack_claim(b"payload=%7Bnot json"), None);
        assert_eq!(parse_slack_claim(b"token=x"), None);
    }
}

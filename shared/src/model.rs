//! The lead and everything that travels with it.
//!
//! A lead is written once at capture and then advanced by each stage; queue messages carry only
//! an [`Envelope`] naming the lead, so a retried or replayed message always acts on the lead's
//! current state.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The chatbot's capture event, as posted to `POST /webhooks/{source}`.
///
/// Required fields are `Option` here on purpose: the validation gates name a missing field in a
/// clear 400 instead of serde's generic "missing field" message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureEvent {
    pub event: Option<EventKind>,
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_transcript_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Turn>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub form_fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// What the chatbot says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A full capture: the visitor finished the conversation and left their details.
    LeadCapture,
    /// The bot could not answer a (usually high-value) question and captured the visitor instead.
    LeadCaptureFallback,
    /// Contact details given, conversation abandoned: kept and flagged incomplete, never dropped.
    LeadCapturePartial,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LeadCapture => "lead_capture",
            EventKind::LeadCaptureFallback => "lead_capture_fallback",
            EventKind::LeadCapturePartial => "lead_capture_partial",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One turn of the chatbot conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// Where and how the visitor reached the bot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Anything else the chatbot sends (pages visited, UTM tags, ...), kept as given.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// The path of `source_url`, which page rules and hand-raiser globs are written against:
    /// `https://x.com/pricing/enterprise?a=1` → `/pricing/enterprise`. A bare path (some
    /// widgets send only that) is taken as is, without its query or fragment.
    pub fn page_path(&self) -> Option<String> {
        let raw = self.source_url.as_deref()?.trim();
        if raw.is_empty() {
            return None;
        }
        match url::Url::parse(raw) {
            Ok(url) => Some(url.path().to_owned()),
            Err(_) => Some(raw.split(['?', '#']).next().unwrap_or(raw).to_owned()),
        }
    }
}

/// Where a lead is in the pipeline. The order is the pipeline's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadState {
    Captured,
    Enriched,
    Routed,
    Notified,
    /// A rep claimed it (Claim button, signed link): the SLA clock stopped, nobody escalates.
    Claimed,
    /// Worked and done (won, lost, disqualified): it no longer counts toward its owner's load.
    Closed,
}

impl LeadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeadState::Captured => "captured",
            LeadState::Enriched => "enriched",
            LeadState::Routed => "routed",
            LeadState::Notified => "notified",
            LeadState::Claimed => "claimed",
            LeadState::Closed => "closed",
        }
    }

    /// Routed to an owner and not yet closed: it holds a place in its owner's load.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            LeadState::Routed | LeadState::Notified | LeadState::Claimed
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            LeadState::Captured,
            LeadState::Enriched,
            LeadState::Routed,
            LeadState::Notified,
            LeadState::Claimed,
            LeadState::Closed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

impl fmt::Display for LeadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a validation gate noticed but was configured to let through, and what the gate
/// does with the lead because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub code: String,
    pub detail: String,
    /// Flags stored before gates had actions read as `flag`.
    #[serde(default)]
    pub action: GateAction,
}

/// What a gate does with an accepted lead that failed it (a refused one is never stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAction {
    /// Routed to `[validation] review_queue` instead of by the rules.
    Review,
    /// Qualified into the lowest tier, then routed by the rules.
    Nurture,
    /// Flagged only: the alert shows it and it costs score points.
    #[default]
    Flag,
}

impl GateAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GateAction::Review => "review",
            GateAction::Nurture => "nurture",
            GateAction::Flag => "flag",
        }
    }
}

/// What enrichment learned about the lead's company.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    /// The registrable domain of the e-mail address (`sales.eu.acme.co.uk` → `acme.co.uk`),
    /// lower-cased, internationalised names in punycode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The prospect's name, cleaned ([`crate::cleaning::clean_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The prospect's phone number in E.164, when it could be read as a valid number; the text
    /// as typed stays in the capture either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_e164: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The rep who already owns this account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_owner: Option<String>,
    /// Where the visitor was when they chatted (IP geolocation), ISO 3166-1 alpha-2. It also
    /// fills `country` when no provider knows the company's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_country: Option<String>,
    pub free_mail: bool,
    /// Which provider answered (`domain_table`, ...), or why nothing did.
    pub sources: Vec<String>,
    /// Fields routing would have liked but nobody could fill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Whether every provider that was asked answered (leads enriched before providers existed
    /// read as complete).
    #[serde(default)]
    pub status: EnrichmentStatus,
    /// What each configured provider did for this lead, in the order they were tried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderReport>,
    /// Where each routing input came from (`country` → `form field "Country"`, `employees` →
    /// `domain_table`, ...), for `explain` and the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origins: BTreeMap<String, String>,
}

impl Enrichment {
    /// Recomputes `missing`: the company fields routing would have liked but nobody filled.
    pub fn note_missing(&mut self) {
        self.missing.clear();
        if self.domain.is_none() {
            self.missing.push("company".into());
            if self.country.is_none() {
                self.missing.push("country".into());
            }
            return;
        }
        for (field, known) in [
            ("company", self.company.is_some()),
            ("employees", self.employees.is_some()),
            ("country", self.country.is_some()),
        ] {
            if !known {
                self.missing.push(field.into());
            }
        }
    }
}

/// `complete`: every provider asked gave an answer (a "no match" is an answer). `partial`: at
/// least one failed, timed out or was cut off, but something was learned. `failed`: providers
/// failed and nothing was learned about the company.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    #[default]
    Complete,
    Partial,
    Failed,
}

impl EnrichmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentStatus::Complete => "complete",
            EnrichmentStatus::Partial => "partial",
            EnrichmentStatus::Failed => "failed",
        }
    }
}

/// One provider's part in a lead's enrichment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderReport {
    pub provider: String,
    pub outcome: ProviderOutcome,
    /// What it filled, or why it failed or was skipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderOutcome {
    /// It filled at least one field.
    Answered,
    /// It answered and knew nothing more.
    NoMatch,
    /// Nothing it could fill was missing, or it had nothing to look up.
    Skipped,
    /// It ran out of its time budget or the lead's.
    TimedOut,
    /// It failed (HTTP error, bad answer, ...).
    Failed,
    /// Its circuit breaker is open after repeated failures: not called.
    CircuitOpen,
}

impl ProviderOutcome {
    /// Whether the provider failed to give an answer it might have had.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ProviderOutcome::TimedOut | ProviderOutcome::Failed | ProviderOutcome::CircuitOpen
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderOutcome::Answered => "answered",
            ProviderOutcome::NoMatch => "no match",
            ProviderOutcome::Skipped => "skipped",
            ProviderOutcome::TimedOut => "timed out",
            ProviderOutcome::Failed => "failed",
            ProviderOutcome::CircuitOpen => "circuit open",
        }
    }
}

/// How hot the lead is and how fast a human must act.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qualification {
    pub tier: u8,
    pub score: i32,
    /// Minutes from capture until a human must have claimed the lead.
    pub sla_minutes: u32,
    /// Which signal gave how many points, for the alert and for explanations.
    pub breakdown: Vec<ScoreItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreItem {
    pub signal: String,
    pub points: i32,
}

/// Who owns a lead: a named rep, a team queue, or a broadcast pool whose members were all
/// alerted (the first to claim becomes the owner). Always exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    Rep(String),
    Queue(String),
    Pool(String),
}

impl Owner {
    pub fn id(&self) -> &str {
        match self {
            Owner::Rep(id) | Owner::Queue(id) | Owner::Pool(id) => id,
        }
    }

    /// `rep:alice`, `queue:sdr`, `pool:se`: the form routing tests and diffs use.
    pub fn key(&self) -> String {
        match self {
            Owner::Rep(id) => format!("rep:{id}"),
            Owner::Queue(id) => format!("queue:{id}"),
            Owner::Pool(id) => format!("pool:{id}"),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Rep(id) => write!(f, "rep {id}"),
            Owner::Queue(id) => write!(f, "queue {id}"),
            Owner::Pool(id) => write!(f, "pool {id}"),
        }
    }
}

/// The routing decision, with the reason that a person can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub owner: Owner,
    /// Display name of the owner at routing time.
    pub owner_name: String,
    /// The rule that matched, or `fallback`.
    pub rule: String,
    pub reason: String,
    /// The pool the rep was picked from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The rep's alert waits until this instant (after-hours policy `hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Timestamp>,
    /// Every step of the decision, so "why did X get this lead?" has an answer weeks later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<RoutingTrace>,
}

/// How a routing decision was reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingTrace {
    pub decided_at: Option<Timestamp>,
    /// Topics detected in the trigger question and transcript.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// The rules tried, in order, up to the one that matched.
    pub rules: Vec<RuleTrial>,
    /// Rules tried but not kept in `rules` (long rule sets keep the first ones only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rules_omitted: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_hours: Option<AfterHoursNote>,
    /// The fallback chain as walked: each target and what happened there.
    pub steps: Vec<StepTrace>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTrial {
    pub rule: String,
    pub matched: bool,
    /// Why it matched, or the condition that failed.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AfterHoursNote {
    pub team: String,
    /// `fallback`, `on_call` or `hold`.
    pub policy: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// `rep:alice`, `pool:emea`, `queue:sdr`.
    pub target: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateTrace>,
}

/// One rep considered at a step, and why they were or were not picked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateTrace {
    pub rep: String,
    pub picked: bool,
    pub reason: String,
}

/// Every timestamp the pipeline records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub captured_at: Option<Timestamp>,
    pub enriched_at: Option<Timestamp>,
    pub routed_at: Option<Timestamp>,
    pub notified_at: Option<Timestamp>,
    pub sla_due_at: Option<Timestamp>,
    /// When the first claim won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Timestamp>,
    /// When the lead last climbed the escalation ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Timestamp>,
    /// When it passed the deadline of the ladder's last step: left with its owner, unwatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    /// The first time a human reached the prospect (a call, an e-mail, a reply, a meeting
    /// held): the end of the speed-to-lead clock. Automated sends never set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch_at: Option<Timestamp>,
    /// When the first meeting was booked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_booked_at: Option<Timestamp>,
    /// When the first meeting took place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_held_at: Option<Timestamp>,
}

/// The last failure a stage hit on this lead, kept so the DLQ can be read with its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFailure {
    pub stage: Stage,
    pub error: String,
    pub at: Timestamp,
}

/// A lead as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: String,
    /// The configured sender that posted it.
    pub source: String,
    /// The sender's event id (`webhook-id`); with `source` it is the dedupe key.
    pub event_id: String,
    /// Carried through every stage and log line.
    pub trace_id: String,
    pub state: LeadState,
    pub capture: CaptureEvent,
    /// Set for `lead_capture_partial`: contact details without a finished conversation.
    pub incomplete: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<Enrichment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<Qualification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    pub timeline: Timeline,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<StageFailure>,
    /// Why the lead was closed (`won`, `lost`, `disqualified`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// The open lead of the same person this one was merged into (same owner, no new count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Who claimed it, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// Each step up the escalation ladder, oldest first; its length is the escalation level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
    /// What happened after the alert (touches, meetings, outcomes), in the order received, at
    /// most [`MAX_ACTIVITIES`]; each event once, by its key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activities: Vec<Activity>,
    /// Each rep who said "not mine", and the rule that had chosen them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misroutes: Vec<Misroute>,
    /// Each time someone in the console sent the lead back to routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reroutes: Vec<Reroute>,
    /// Bumped by the store on every write; a write carrying an older revision is refused, so a
    /// claim and an escalation racing on one lead cannot overwrite each other.
    #[serde(default)]
    pub revision: u64,
}

/// The most activities a lead lists (a DynamoDB item holds 400 KB). Past it, events still
/// stamp the timeline; they are only not listed.
pub const MAX_ACTIVITIES: usize = 100;

/// Something that happened to a lead after its alert: a rep's call, a booked meeting, an
/// outcome. It comes from a button in the alert, the claim page, the CLI, or a signed event
/// from a calendar, chat or CRM platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: ActivityKind,
    /// When it happened, as its sender says (else when it was received).
    pub at: Timestamp,
    pub received_at: Timestamp,
    /// The rep (id) or the platform's actor who did it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Where it came from: `slack`, `link`, `cli`, or a source's name.
    pub via: String,
    /// Sent by a machine (a sequence, an auto-reply, a bot): listed, but it never stops the
    /// clock or counts as contact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automated: bool,
    /// The dedupe key: the same event received twice is recorded once.
    pub key: String,
    /// Free text: a CRM status, a reason, a meeting title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an [`Activity`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// A call to the prospect.
    Called,
    /// An e-mail to the prospect.
    Emailed,
    /// A reply in the conversation the prospect started (chat, e-mail thread).
    Replied,
    MeetingBooked,
    MeetingHeld,
    MeetingNoShow,
    MeetingCancelled,
    /// A lead status or deal stage changed in the CRM (the new value in `detail`).
    StatusChanged,
    /// The lead is closed with this outcome (frees its owner's capacity).
    Closed(Outcome),
}

impl ActivityKind {
    pub const ALL_NAMES: [&'static str; 12] = [
        "called",
        "emailed",
        "replied",
        "meeting_booked",
        "meeting_held",
        "meeting_no_show",
        "meeting_cancelled",
        "status_changed",
        "won",
        "lost",
        "disqualified",
        "nurture",
    ];

    /// `called`, `meeting_booked`, `won`: the names configs, buttons and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            ActivityKind::Called => "called",
            ActivityKind::Emailed => "emailed",
            ActivityKind::Replied => "replied",
            ActivityKind::MeetingBooked => "meeting_booked",
            ActivityKind::MeetingHeld => "meeting_held",
            ActivityKind::MeetingNoShow => "meeting_no_show",
            ActivityKind::MeetingCancelled => "meeting_cancelled",
            ActivityKind::StatusChanged => "status_changed",
            ActivityKind::Closed(outcome) => outcome.as_str(),
        }
    }

    pub fn parse(name: &str) -> Option<ActivityKind> {
        Some(match name {
            "called" => ActivityKind::Called,
            "emailed" => ActivityKind::Emailed,
            "replied" => ActivityKind::Replied,
            "meeting_booked" => ActivityKind::MeetingBooked,
            "meeting_held" => ActivityKind::MeetingHeld,
            "meeting_no_show" => ActivityKind::MeetingNoShow,
            "meeting_cancelled" => ActivityKind::MeetingCancelled,
            "status_changed" => ActivityKind::StatusChanged,
            other => ActivityKind::Closed(Outcome::parse(other)?),
        })
    }

    /// Whether a human doing this reached the prospect: it ends the speed-to-lead clock.
    pub fn is_touch(self) -> bool {
        matches!(
            self,
            ActivityKind::Called
                | ActivityKind::Emailed
                | ActivityKind::Replied
                | ActivityKind::MeetingHeld
        )
    }
}

/// How a lead ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Won,
    Lost,
    Disqualified,
    /// Not now: handed to marketing to nurture.
    Nurture,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
            Outcome::Disqualified => "disqualified",
            Outcome::Nurture => "nurture",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Won,
            Outcome::Lost,
            Outcome::Disqualified,
            Outcome::Nurture,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// An activity event that found no lead: kept and listed in the handoff audit, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedActivity {
    /// The lead id the event carried, if any (unknown to the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    /// The prospect's e-mail the event carried, if any (no lead of theirs in the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub activity: Activity,
}

/// A rep's "not mine": the lead went to the wrong person, and which rule sent it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misroute {
    pub rep: String,
    /// The rule whose decision was wrong (the assignment's rule).
    pub rule: String,
    pub reason: String,
    pub at: Timestamp,
}

/// A lead sent back to routing by someone running the console (not its owner's "not mine":
/// no rule is blamed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reroute {
    /// The console login that asked for it.
    pub by: String,
    /// Who held the lead then (`rep:alice`, `queue:sdr`).
    pub from: String,
    pub reason: String,
    pub at: Timestamp,
}

/// The winning claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub rep: String,
    pub at: Timestamp,
    /// `slack` (the Claim button) or `link` (a signed claim link).
    pub via: String,
    /// Who routing gave the lead to (`rep:alice`, `queue:sdr`), before any escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_to: Option<String>,
    /// Why this rep was allowed to claim it: the policy, where it was set, and the rep's part
    /// (`owner (pool "amer-ae"): their backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

/// One step up the escalation ladder: who let the SLA pass, and who has the lead now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// 1 for the first step.
    pub level: u32,
    pub at: Timestamp,
    /// The owner whose deadline passed.
    pub from: Owner,
    pub to: Owner,
    /// The channels the ladder step alerts (`None`: all the new owner has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The deadline that passed.
    pub missed: Timestamp,
}

impl Lead {
    /// A lead as ingest makes it from a verified, validated capture: nothing decided yet.
    pub fn captured(
        id: String,
        trace_id: String,
        source: String,
        event_id: String,
        capture: CaptureEvent,
        flags: Vec<Flag>,
        captured_at: Timestamp,
    ) -> Lead {
        Lead {
            id,
            trace_id,
            source,
            event_id,
            state: LeadState::Captured,
            incomplete: capture.event == Some(EventKind::LeadCapturePartial),
            capture,
            flags,
            enrichment: None,
            qualification: None,
            assignment: None,
            timeline: Timeline {
                captured_at: Some(captured_at),
                ..Timeline::default()
            },
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

    /// When sla-watch must next look at this lead: the opening a held alert waits for, else
    /// its SLA deadline (or the current escalation step's) while it waits for a claim; `None`
    /// once claimed, touched by a human, closed, merged into another lead (whose own deadline covers the person),
    /// past the top of the escalation ladder, or before it is routed. The store
    /// indexes only leads that have one (the sparse due index).
    pub fn sla_watch_at(&self) -> Option<Timestamp> {
        if !matches!(self.state, LeadState::Routed | LeadState::Notified)
            || self.merged_into.is_some()
            || self.claim.is_some()
            || self.timeline.first_touch_at.is_some()
            || self.timeline.escalation_stopped_at.is_some()
        {
            return None;
        }
        match (self.alert_held_until(), self.timeline.sla_due_at) {
            (Some(held), Some(due)) => Some(held.min(due)),
            (held, due) => held.or(due),
        }
    }

    /// The opening an after-hours alert waits for, while it has not gone out: sla-watch
    /// releases it then (the notify stage's own delayed re-check is the fallback).
    pub fn alert_held_until(&self) -> Option<Timestamp> {
        if self.state != LeadState::Routed || self.timeline.notified_at.is_some() {
            return None;
        }
        self.assignment.as_ref().and_then(|a| a.held_until)
    }

    /// How many times the lead climbed the escalation ladder.
    pub fn escalation_level(&self) -> u32 {
        self.escalations.len() as u32
    }

    /// The prefix of this alert round's delivery receipts: empty for the first alert,
    /// `esc1:` after the first escalation, so each round reaches its recipients once.
    pub fn alert_round(&self) -> String {
        // A lead re-routed after a "not mine" or from the console alerts its new owner as a
        // new round too.
        let rerouted = match self.misroutes.len() + self.reroutes.len() {
            0 => String::new(),
            n => format!("re{n}:"),
        };
        match self.escalations.len() {
            0 => rerouted,
            n => format!("{rerouted}esc{n}:"),
        }
    }

    /// The event kind; validation guarantees it is present on every stored lead.
    pub fn event(&self) -> EventKind {
        self.capture.event.unwrap_or(EventKind::LeadCapture)
    }

    pub fn email(&self) -> &str {
        self.capture.captured_email.as_deref().unwrap_or("")
    }
}

/// A pipeline stage that consumes a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Enrich,
    Route,
    Notify,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Enrich, Stage::Route, Stage::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Enrich => "enrich",
            Stage::Route => "route",
            Stage::Notify => "notify",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == text)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A prospect's reply on its way to the lead's owner, carried in the notify stage's message (the
/// queue is its only durable copy until it is sent). Everything in it is the prospect's and
/// untrusted: the renderer escapes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedReply {
    /// Hex SHA-256 of the message's `Message-Id`: the delivery receipt `reply:<this>` makes a
    /// redelivered message go out once.
    pub message_key: String,
    /// The prospect's address, as the `From` header gave it (`Tom <tom@initech.example>`).
    pub from: String,
    pub subject: String,
    /// The reply without quoted parts (`stripped-text`), else the whole text (`body-plain`),
    /// cut to a bounded length.
    pub text: String,
}

// Prospect PII: never printed by `{:?}` in a log line.
impl std::fmt::Debug for ForwardedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedReply")
            .field("message_key", &self.message_key)
            .finish_non_exhaustive()
    }
}

/// How often a digest is sent: daily (over the previous local day) or weekly (over the previous
/// seven local days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    Daily,
    Weekly,
}

impl Cadence {
    pub fn name(self) -> &'static str {
        match self {
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
        }
    }
}

/// The digest a notify message asks for: its cadence and the local day it was scheduled on
/// (the period ends at that day's midnight in `[reports.digest] timezone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRequest {
    pub cadence: Cadence,
    pub date: jiff::civil::Date,
}

impl DigestRequest {
    /// `weekly:2026-11-30`: the key of this digest's receipts.
    pub fn key(&self) -> String {
        format!("{}:{}", self.cadence.name(), self.date)
    }
}

/// The message that travels between stages: small, versioned, never the lead itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    pub lead_id: String,
    pub stage: Stage,
    pub trace_id: String,
    /// A prospect's reply for the lead's current owner (notify only; version
    /// [`Envelope::REPLY_VERSION`]): the one message that carries more than the lead's id, as
    /// the queue is the reply's only durable copy until it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ForwardedReply>,
    /// A scheduled digest to send (notify only; version [`Envelope::DIGEST_VERSION`]; the
    /// `lead_id` is then [`Envelope::DIGEST_ID`], no lead's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestRequest>,
}

impl Envelope {
    pub const VERSION: u8 = 1;
    /// An envelope with a reply: a version of its own, so that a worker which cannot forward
    /// replies refuses it (retried, then dead-lettered and replayable) instead of dropping it.
    pub const REPLY_VERSION: u8 = 2;
    /// A digest request: a version of its own, so that a worker which cannot send digests
    /// refuses it (retried, then dead-lettered) instead of looking for a lead called `digest`.
    pub const DIGEST_VERSION: u8 = 3;
    /// The pseudo lead id of digest messages and of their delivery receipts.
    pub const DIGEST_ID: &'static str = "digest";

    pub fn new(lead_id: &str, stage: Stage, trace_id: &str) -> Self {
        Envelope {
            v: Self::VERSION,
            lead_id: lead_id.to_owned(),
            stage,
            trace_id: trace_id.to_owned(),
            reply: None,
            digest: None,
        }
    }

    /// The notify stage's message that builds and sends one digest.
    pub fn digest(request: DigestRequest) -> Self {
        Envelope {
            v: Self::DIGEST_VERSION,
            digest: Some(request),
            ..Envelope::new(
                Self::DIGEST_ID,
                Stage::Notify,
                &format!("digest:{}", request.key()),
            )
        }
    }

    /// The notify stage's message that forwards `reply` to the lead's current owner.
    pub fn reply(lead_id: &str, trace_id: &str, reply: ForwardedReply) -> Self {
        Envelope {
            v: Self::REPLY_VERSION,
            reply: Some(reply),
            ..Envelope::new(lead_id, Stage::Notify, trace_id)
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(body: &str) -> Result<Self, EnvelopeError> {
        let envelope: Envelope =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let expected = match (&envelope.reply, &envelope.digest) {
            (Some(_), None) => Self::REPLY_VERSION,
            (None, Some(_)) => Self::DIGEST_VERSION,
            (None, None) => Self::VERSION,
            (Some(_), Some(_)) => {
                return Err(EnvelopeError::Malformed(
                    "a reply and a digest in one message".into(),
                ))
            }
        };
        if envelope.v != expected {
            return Err(EnvelopeError::UnsupportedVersion(envelope.v));
        }
        Ok(envelope)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_path_is_the_path_of_a_full_url_or_a_bare_path() {
        let path = |url: &str| {
            Metadata {
                source_url: Some(url.to_owned()),
                ..Metadata::default()
            }
            .page_path()
        };
        assert_eq!(
            path("https://www.acme.example/pricing/enterprise?utm=x#top").as_deref(),
            Some("/pricing/enterprise")
        );
        assert_eq!(path("https://acme.example").as_deref(), Some("/"));
        assert_eq!(path("/pricing?plan=team").as_deref(), Some("/pricing"));
        assert_eq!(path("  ").as_deref(), None);
        assert_eq!(Metadata::default().page_path(), None);
    }

    #[test]
    fn envelope_round_trips_and_rejects_other_versions() {
        let envelope = Envelope::new("lead-1", Stage::Route, "trace-1");
        assert_eq!(Envelope::from_json(&envelope.to_json()), Ok(envelope));
        let future = r#"{"v":2,"lead_id":"x","stage":"route","trace_id":"t"}"#;
        assert_eq!(
            Envelope::from_json(future),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Envelope::from_json("{}"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn a_digest_envelope_has_its_own_version() {
        let request = DigestRequest {
            cadence: Cadence::Weekly,
            date: jiff::civil::date(2026, 11, 30),
        };
        let envelope = Envelope::digest(request);
        let json = envelope.to_json();
        assert_eq!(
            json,
            r#"{"v":3,"lead_id":"digest","stage":"notify","trace_id":"digest:weekly:2026-11-30","digest":{"cadence":"weekly","date":"2026-11-30"}}"#
        );
        assert_eq!(Envelope::from_json(&json), Ok(envelope));
        // A digest under the lead version is refused, not taken for a lead called "digest".
        let downgraded = json.replace(r#""v":3"#, r#""v":1"#);
        assert_eq!(
            Envelope::from_json(&downgraded),
            Err(EnvelopeError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn sample_payload_from_the_contract_parses() {
        let body = r#"{"event": "lead_capture_fallback", "timestamp": "2023-10-27T10:00:00Z",
            "visitor_id": "anon-f8a9b2c1", "conversation_id": "conv-12345",
            "captured_email": "potential.lead@example.com",
            "trigger_query": "Does your API support batch processing for over 1 million records?",
            "conversation_transcript_url": "https://api.chatbot.example/transcripts/conv-12345",
            "metadata": {"source_url": "/pricing/enterprise", "ip_address": "203.0.113.1",
                         "user_agent": "Mozilla/5.0 ...", "pages_visited": 4}}"#;
        let event: CaptureEvent = serde_json::from_str(body).expect("parses");
        assert_eq!(event.event, Some(EventKind::LeadCaptureFallback));
        assert_eq!(
            event.metadata.source_url.as_deref(),
            Some("/pricing/enterprise")
        );
        assert_eq!(event.metadata.extra["pages_visited"], 4);
    }
}

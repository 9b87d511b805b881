//! Alerts: what the owner reads, rendered once per lead for every channel.
//!
//! Everything the prospect typed is untrusted: it is escaped for Slack mrkdwn, and stripped of
//! control characters for the terminal, so a visitor can never ping `@channel`, inject a link,
//! or move a terminal's cursor.
//!
//! Rendering is on every lead's path, so strings are written in place: facts are borrowed from
//! the lead, escaping happens while writing, and text is copied again only when cut.
//!
//! The e-mails (a rep's alert, the prospect's acknowledgement) are rendered by [`email`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use jiff::tz::Offset;
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::model::{EnrichmentStatus, Lead, Turn};

mod crm_note;
pub mod email;
mod outbound;
mod teams;

pub use crm_note::{crm_note, CrmNote};
pub use email::check_acknowledgement_template;
pub use outbound::{sms_text, Contact, SmsFacts, SMS_LIMIT};
pub use teams::{with_claim as teams_with_claim, TEAMS_PAYLOAD_LIMIT};

/// Turns of the transcript shown inline; the rest is behind the transcript link.
const INLINE_TURNS: usize = 4;
/// Slack refuses section text over 3,000 characters.
const SLACK_SECTION_LIMIT: usize = 3000;
/// Slack refuses header text over 150 characters.
const SLACK_HEADER_LIMIT: usize = 150;
const TURN_LIMIT: usize = 400;
/// The prospect's name in a headline is cut to this many characters.
const NAME_LIMIT: usize = 80;
/// Form fields shown in an alert; the rest stay on the lead (`leadrelay lead`).
const FORM_FIELDS_SHOWN: usize = 12;
/// The most characters the form takes in a Slack alert.
const SLACK_FORM_LIMIT: usize = 1_500;
/// The longest form answer shown.
const FORM_ANSWER_LIMIT: usize = 200;

/// The form fields an alert shows, in the order the lead keeps them (by name): each name and
/// answer as plain text, cut; lists joined with ", ", objects left out. Escaping is the
/// caller's, per format.
pub(crate) fn form_answers(lead: &Lead) -> Vec<(String, String)> {
    lead.capture
        .form_fields
        .iter()
        .filter_map(|(name, value)| {
            let answer = crate::json_path::text_of(value)?;
            Some((
                truncated(name, 40).into_owned(),
                truncated(&answer, FORM_ANSWER_LIMIT).into_owned(),
            ))
        })
        .take(FORM_FIELDS_SHOWN)
        .collect()
}
/// Labels of the plain-text alert are padded to this width.
const LABEL_WIDTH: usize = 10;

/// `format!` into a buffer sized for a typical alert line: `format!` guesses small and regrows.
macro_rules! format_sized {
    ($($arg:tt)*) => {{
        let mut out = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = out.write_fmt(format_args!($($arg)*));
        out
    }};
}

/// A rendered alert for one lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub lead_id: String,
    /// One line: who, how hot, how fast.
    pub headline: String,
    /// The full plain-text alert (terminal, logs of the alert itself, e-mail text part).
    pub text: String,
    /// A Slack incoming-webhook payload (Block Kit, with a plain-text fallback).
    pub slack: Value,
    /// A Teams Workflows webhook message holding one Adaptive Card; the Claim action (the
    /// recipient's own signed link) is added per recipient by [`teams::with_claim`]. Rendered
    /// only when asked for ([`RenderOptions::teams`]): it is the costliest format.
    pub teams: Option<Value>,
    /// What the SMS alert says, already plain text; [`sms_text`] fits it around the link.
    pub sms: SmsFacts,
    /// The outbound webhook's `data` (lead summary, owner, tier, SLA deadline); the claim
    /// link is added per delivery. Rendered only when asked for ([`RenderOptions::summary`]).
    pub summary: Option<Value>,
    /// The prospect as a CRM contact.
    pub contact: Contact,
    /// The note and task a CRM keeps of this round; set by the notify stage when a CRM
    /// destination will write them ([`crm_note()`]).
    pub crm_note: Option<CrmNote>,
    /// The alert round (`""`, `esc1:`, ...), for ids that receivers dedupe on.
    pub round: String,
    pub tier: u8,
}

/// What rendering needs besides the lead, read from the configuration by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// `[notify] crm_url`: the "Open in CRM" link template.
    pub crm_url: Option<&'a str>,
    /// The display name of the owner whose SLA passed at the lead's last escalation.
    pub escalated_from: Option<&'a str>,
    /// Render the Teams card (a Teams destination will deliver it).
    pub teams: bool,
    /// Render the outbound webhook's summary.
    pub summary: bool,
}

impl RenderOptions<'_> {
    /// Every format, for callers that show or store the whole alert.
    pub fn all_formats(mut self) -> Self {
        self.teams = true;
        self.summary = true;
        self
    }
}

/// The "Open in CRM" link: the template with `{email}` and `{lead_id}` URL-encoded.
pub fn crm_link(template: &str, lead: &Lead) -> String {
    let encode =
        |text: &str| -> String { url::form_urlencoded::byte_serialize(text.as_bytes()).collect() };
    template
        .replace(
            "{email}",
            &encode(lead.capture.captured_email.as_deref().unwrap_or("")),
        )
        .replace("{lead_id}", &encode(&lead.id))
}

/// `6 min`, `2 h 5 min`: how long a lead waited.
struct Age(i64);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.0.max(0);
        match (minutes / 60, minutes % 60) {
            (0, m) => write!(f, "{m} min"),
            (h, 0) => write!(f, "{h} h"),
            (h, m) => write!(f, "{h} h {m} min"),
        }
    }
}

/// "Escalated to you (level 1): unclaimed 6 min, Alice's SLA passed", for a lead that climbed
/// the ladder; `None` for a lead that never did.
fn escalation_line(lead: &Lead, from_name: Option<&str>) -> Option<String> {
    let step = lead.escalations.last()?;
    let age = lead
        .timeline
        .captured_at
        .map(|captured| step.at.duration_since(captured).as_mins())
        .unwrap_or(0);
    let from = from_name.unwrap_or(step.from.id());
    Some(format_sized!(
        "Escalated to you (level {}): unclaimed {}, {}'s SLA passed",
        step.level,
        Age(age),
        from
    ))
}

/// Escapes text for Slack mrkdwn: `&`, `<` and `>` only, as Slack documents.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", SlackEscaped(text));
    out
}

/// Replaces control characters (ANSI escapes, bells, carriage returns) with spaces.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = write!(out, "{}", TerminalSafe(text));
    out
}

/// Cuts `text` to at most `limit` characters, marking the cut.
pub fn truncate(text: &str, limit: usize) -> String {
    truncated(text, limit).into_owned()
}

/// Displays its text escaped for Slack mrkdwn, without an intermediate `String`.
struct SlackEscaped<'a>(&'a str);

impl fmt::Display for SlackEscaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Most text has none of the three. (`fold` rather than `any`: without the early exit
        // the check compiles to SIMD.)
        if !self
            .0
            .bytes()
            .fold(false, |found, b| found | is_slack_special(b))
        {
            return f.write_str(self.0);
        }
        // The three characters are ASCII, so any byte position of one is a character boundary;
        // the runs between them are written whole.
        let mut rest = self.0;
        while let Some(at) = rest.bytes().position(is_slack_special) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                _ => "&gt;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

fn is_slack_special(byte: u8) -> bool {
    matches!(byte, b'&' | b'<' | b'>')
}

/// Displays its text with control characters replaced by spaces.
struct TerminalSafe<'a>(&'a str);

impl fmt::Display for TerminalSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Printable ASCII, the usual case, has nothing to replace (`fold`: see SlackEscaped).
        if self
            .0
            .bytes()
            .fold(true, |printable, b| printable & (b' '..=b'~').contains(&b))
        {
            return f.write_str(self.0);
        }
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| c.is_control()) {
            f.write_str(&rest[..at])?;
            f.write_char(' ')?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `text` cut to at most `limit` characters, borrowed when it already fits.
fn truncated(text: &str, limit: usize) -> Cow<'_, str> {
    match cut_at(text, limit) {
        None => Cow::Borrowed(text),
        Some(end) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// Like [`truncate`], cutting the owned `text` in place.
fn truncate_owned(mut text: String, limit: usize) -> String {
    if let Some(end) = cut_at(&text, limit) {
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `None` if `text` has at most `limit` characters; else the byte offset that keeps
/// `limit - 1` of them, leaving room for the `…` mark.
fn cut_at(text: &str, limit: usize) -> Option<usize> {
    // A character takes at least one byte, so a text this short needs no counting.
    if text.len() <= limit || text.chars().nth(limit).is_none() {
        return None;
    }
    let keep = limit.saturating_sub(1);
    Some(text.char_indices().nth(keep).map_or(0, |(at, _)| at))
}

/// An SLA as the owner reads it: whole hours from two hours up, else minutes.
struct Sla(u32);

impl fmt::Display for Sla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.0;
        if minutes >= 120 && minutes.is_multiple_of(60) {
            write!(f, "{} h", minutes / 60)
        } else {
            write!(f, "{minutes} min")
        }
    }
}

/// What the alert says, worked out once for both renderings. Strings are raw (unescaped):
/// each rendering makes them safe its own way.
struct Facts<'a> {
    owner: &'a str,
    tier: u8,
    tier_label: &'a str,
    sla: Sla,
    due: String,
    prospect: String,
    company: String,
    why: String,
    score: String,
    page: &'a str,
    flags: String,
    missing: String,
}

/// The prospect's cleaned name when enrichment produced one, else what was typed.
fn prospect_name(lead: &Lead) -> &str {
    lead.enrichment
        .as_ref()
        .and_then(|e| e.name.as_deref())
        .or(lead.capture.name.as_deref())
        .unwrap_or("Unknown visitor")
}

fn facts<'a>(lead: &'a Lead, tier_label: &'a str) -> Facts<'a> {
    let qualification = lead.qualification.as_ref();
    let enrichment = lead.enrichment.as_ref();
    let capture = &lead.capture;

    // "Name <e-mail, phone>"
    // The cleaned name and E.164 number when enrichment produced them, else what was typed.
    let name = prospect_name(lead);
    let phone = enrichment
        .and_then(|e| e.phone_e164.as_deref())
        .or(capture.phone.as_deref());
    let contacts = [capture.captured_email.as_deref(), phone];
    let mut prospect = String::with_capacity(name.len() + 64);
    prospect.push_str(name);
    prospect.push_str(" <");
    push_joined(&mut prospect, contacts.into_iter().flatten());
    prospect.push('>');

    // "Company (employees, industry, country, free-mail address)", details only if known.
    let mut company = String::with_capacity(96);
    company.push_str(
        enrichment
            .and_then(|e| e.company.as_deref())
            .unwrap_or("company unknown"),
    );
    if let Some(e) = enrichment {
        let employees = e.employees.map(|n| format_sized!("{n} employees"));
        let details = [
            employees.as_deref(),
            e.industry.as_deref(),
            e.country.as_deref(),
            e.free_mail.then_some("free-mail address"),
        ];
        if details.iter().any(Option::is_some) {
            company.push_str(" (");
            push_joined(&mut company, details.into_iter().flatten());
            company.push(')');
        }
    }

    let why = lead
        .assignment
        .as_ref()
        .map(|a| {
            let mut why = format_sized!("rule \"{}\": {}", a.rule, a.reason);
            if let Some(pool) = &a.pool {
                let _ = write!(why, "; picked from pool {pool}");
            }
            if let Some(until) = a.held_until {
                let _ = write!(why, "; alert held after hours until {until}");
            }
            why
        })
        .unwrap_or_default();

    // "100 (signal +40, other -5)"
    let score = qualification
        .map(|q| {
            let mut score = String::with_capacity(16 + 40 * q.breakdown.len());
            let _ = write!(score, "{} (", q.score);
            for (i, item) in q.breakdown.iter().enumerate() {
                let separator = if i == 0 { "" } else { ", " };
                let _ = write!(score, "{separator}{} {:+}", item.signal, item.points);
            }
            score.push(')');
            score
        })
        .unwrap_or_default();

    let mut flags = String::new();
    let codes = lead.flags.iter().map(|flag| flag.code.as_str());
    push_joined(
        &mut flags,
        codes.chain(lead.incomplete.then_some("incomplete")),
    );

    let mut missing = String::new();
    if let Some(e) = enrichment {
        push_joined(&mut missing, e.missing.iter().map(String::as_str));
        // Say why, so the rep knows the gap is an outage and not an unknown company.
        if e.status != EnrichmentStatus::Complete {
            let failed = e.providers.iter().filter(|r| r.outcome.is_failure());
            let _ = write!(missing, " (enrichment {}: ", e.status.as_str());
            for (i, report) in failed.enumerate() {
                let separator = if i == 0 { "" } else { ", " };
                let _ = write!(
                    missing,
                    "{separator}{} {}",
                    report.provider,
                    report.outcome.as_str()
                );
            }
            missing.push(')');
        }
    }

    Facts {
        owner: lead
            .assignment
            .as_ref()
            .map_or("unassigned", |a| a.owner_name.as_str()),
        tier: qualification.map_or(0, |q| q.tier),
        tier_label,
        sla: Sla(qualification.map_or(0, |q| q.sla_minutes)),
        due: lead
            .timeline
            .sla_due_at
            .map(format_time)
            .unwrap_or_default(),
        prospect,
        company,
        why,
        score,
        page: capture.metadata.source_url.as_deref().unwrap_or(""),
        flags,
        missing,
    }
}

/// Appends `items` separated by ", ", as `join(", ")` would.
fn push_joined<'s>(out: &mut String, items: impl IntoIterator<Item = &'s str>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
}

/// `2026-11-23 10:05:07 UTC`, as `strftime("%Y-%m-%d %H:%M:%S UTC")` writes it, digit by digit:
/// strftime parses its format string on every call, and `{:02}` padding is slower still.
fn format_time(at: Timestamp) -> String {
    let t = Offset::UTC.to_datetime(at);
    let Ok(year) = u16::try_from(t.year()) else {
        // Years before 0 never occur in practice; %Y writes them with their sign.
        return at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    };
    let mut out = String::with_capacity(23);
    push_digits(&mut out, year, 4);
    for (separator, value) in [
        ('-', t.month()),
        ('-', t.day()),
        (' ', t.hour()),
        (':', t.minute()),
        (':', t.second()),
    ] {
        out.push(separator);
        push_digits(&mut out, value.unsigned_abs().into(), 2);
    }
    out.push_str(" UTC");
    out
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u16, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10u16.pow(place) % 10) as u8;
        out.push(char::from(b'0' + digit));
    }
}

/// Renders the alert the owner of `lead` receives.
pub fn render(lead: &Lead, tier_label: &str) -> Alert {
    render_with(lead, tier_label, &RenderOptions::default())
}

/// Renders the alert with the configured extras (CRM link, escalation names).
pub fn render_with(lead: &Lead, tier_label: &str, options: &RenderOptions) -> Alert {
    let f = facts(lead, tier_label);
    let headline = match &lead.merged_into {
        // The owner already has this person's open lead: say so first, so it is not read as
        // new work.
        Some(open) => format_sized!(
            "Same person again: {} sent another request; merged into lead {} owned by you ({})",
            TerminalSafe(&truncated(prospect_name(lead), NAME_LIMIT)),
            open,
            f.owner
        ),
        None => format_sized!(
            "New tier-{} lead ({}) for {}: claim within {} (by {})",
            f.tier,
            f.tier_label,
            f.owner,
            f.sla,
            f.due
        ),
    };
    // An escalated lead says so first, so the new owner knows the clock already ran.
    let headline = match escalation_line(lead, options.escalated_from) {
        Some(escalated) => format_sized!("{escalated}; {headline}"),
        None => headline,
    };
    let turns = &lead.capture.transcript;
    let shown = &turns[turns.len().saturating_sub(INLINE_TURNS)..];
    let crm = options.crm_url.map(|template| crm_link(template, lead));

    Alert {
        lead_id: lead.id.clone(),
        text: plain_text(lead, &f, &headline, shown),
        slack: slack_payload(lead, &f, &headline, shown, crm.as_deref()),
        teams: options
            .teams
            .then(|| teams::message(lead, &f, &headline, shown, crm.as_deref())),
        sms: outbound::sms_facts(lead, &f),
        summary: options
            .summary
            .then(|| outbound::summary(lead, &f, &headline)),
        contact: outbound::contact(lead),
        crm_note: None,
        round: lead.alert_round(),
        tier: f.tier,
        headline,
    }
}

/// The plain-text alert: every prospect-supplied string goes through [`TerminalSafe`].
fn plain_text(lead: &Lead, f: &Facts, headline: &str, shown: &[Turn]) -> String {
    let lines = [
        ("Prospect", f.prospect.as_str()),
        ("Company", &f.company),
        ("Asked", lead.capture.trigger_query.as_deref().unwrap_or("")),
        ("Page", f.page),
        ("Why you", &f.why),
        ("Score", &f.score),
        ("Flags", &f.flags),
        ("Missing", &f.missing),
    ];
    // Sized for the usual alert up front, so it is written without reallocating.
    let inline: usize = lines
        .iter()
        .map(|(_, value)| value.len() + 16)
        .sum::<usize>()
        + shown
            .iter()
            .map(|t| t.role.len() + t.text.len().min(4 * TURN_LIMIT) + 8)
            .sum::<usize>();
    let mut text = String::with_capacity(headline.len() + inline + 256);

    text.push_str(headline);
    text.push('\n');
    for (label, value) in lines {
        if !value.is_empty() {
            // "  Label      value", padded by hand: `{label:<10}` is notably slower.
            text.push_str("  ");
            text.push_str(label);
            for _ in label.len()..LABEL_WIDTH {
                text.push(' ');
            }
            let _ = writeln!(text, " {}", TerminalSafe(value));
        }
    }
    let form = form_answers(lead);
    if !form.is_empty() {
        text.push_str("  Form:\n");
        for (name, answer) in &form {
            let _ = writeln!(text, "    {}: {}", TerminalSafe(name), TerminalSafe(answer));
        }
    }
    if !shown.is_empty() {
        let _ = writeln!(
            text,
            "  Transcript (last {} of {} turns):",
            shown.len(),
            lead.capture.transcript.len()
        );
        for turn in shown {
            let _ = writeln!(
                text,
                "    {}: {}",
                TerminalSafe(&turn.role),
                TerminalSafe(&truncated(&turn.text, TURN_LIMIT))
            );
        }
    }
    if let Some(url) = &lead.capture.conversation_transcript_url {
        let _ = writeln!(text, "  Full transcript: {}", TerminalSafe(url));
    }
    let _ = writeln!(text, "  Lead id: {}", lead.id);
    text
}

/// A JSON object from its fields. (`json!` would serialise every value into a new one, and
/// collecting into a map would sort through a temporary `Vec`.)
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

/// A Block Kit section of mrkdwn, cut to Slack's limit.
fn section(text: String) -> Value {
    let text = truncate_owned(text, SLACK_SECTION_LIMIT);
    object([
        ("type", "section".into()),
        (
            "text",
            object([("type", "mrkdwn".into()), ("text", text.into())]),
        ),
    ])
}

/// The Slack payload: every prospect-supplied string goes through [`SlackEscaped`].
fn slack_payload(
    lead: &Lead,
    f: &Facts,
    headline: &str,
    shown: &[Turn],
    crm: Option<&str>,
) -> Value {
    let mut blocks = Vec::with_capacity(8);

    // Plain text, not mrkdwn: nothing to escape.
    let title = match (&lead.merged_into, lead.escalations.last()) {
        (Some(open), _) => format_sized!("Same person again: merged into lead {open}"),
        (None, Some(step)) => format_sized!(
            "Escalated (level {}): tier-{} lead for {}",
            step.level,
            f.tier,
            f.owner
        ),
        (None, None) => format_sized!("Tier-{} lead for {}", f.tier, f.owner),
    };
    blocks.push(object([
        ("type", "header".into()),
        (
            "text",
            object([
                ("type", "plain_text".into()),
                ("text", truncate_owned(title, SLACK_HEADER_LIMIT).into()),
            ]),
        ),
    ]));

    blocks.push(section(format_sized!(
        "*{}*\n{}\n*SLA:* claim within {} (by {})",
        SlackEscaped(&f.prospect),
        SlackEscaped(&f.company),
        f.sla,
        slack_date(lead.timeline.sla_due_at, &f.due)
    )));

    if let Some(question) = &lead.capture.trigger_query {
        blocks.push(section(format_sized!(
            "*Asked:* {}",
            SlackEscaped(question)
        )));
    }

    let mut context = format_sized!(
        "*Why you:* {}\n*Score:* {}",
        SlackEscaped(&f.why),
        SlackEscaped(&f.score)
    );
    for (label, value) in [
        ("Page", f.page),
        ("Flags", &f.flags),
        ("Missing", &f.missing),
    ] {
        if !value.is_empty() {
            let _ = write!(context, "\n*{label}:* {}", SlackEscaped(value));
        }
    }
    blocks.push(section(context));

    let form = form_answers(lead);
    if !form.is_empty() {
        let mut lines = String::from("*Form*");
        for (name, answer) in &form {
            let _ = write!(
                lines,
                "\n*{}:* {}",
                SlackEscaped(name),
                SlackEscaped(answer)
            );
        }
        // The form is context, not the alert: a smaller share of the message than the chat.
        blocks.push(section(truncate_owned(lines, SLACK_FORM_LIMIT)));
    }

    if !shown.is_empty() {
        let mut turns = String::with_capacity(512);
        for (i, turn) in shown.iter().enumerate() {
            let separator = if i == 0 { "" } else { "\n" };
            let _ = write!(
                turns,
                "{separator}*{}:* {}",
                SlackEscaped(&turn.role),
                SlackEscaped(&truncated(&turn.text, TURN_LIMIT))
            );
        }
        blocks.push(section(turns));
    }

    if let Some(url) = &lead.capture.conversation_transcript_url {
        if url.starts_with("https://") {
            // Inside <url|label> only the three entities matter; a `|` would split the link.
            let mut link = format_sized!("<{}", SlackEscaped(url));
            if link.contains('|') {
                link = link.replace('|', "%7C");
            }
            link.push_str("|Full transcript>");
            blocks.push(section(link));
        }
    }

    blocks.push(object([
        ("type", "context".into()),
        (
            "elements",
            Value::Array(vec![object([
                ("type", "mrkdwn".into()),
                ("text", format_sized!("lead `{}`", lead.id).into()),
            ])]),
        ),
    ]));
    blocks.push(slack_actions(&lead.id, crm));
    object([
        ("text", slack_escape(headline).into()),
        ("blocks", Value::Array(blocks)),
    ])
}

/// A moment in Slack's date formatting, so that each reader sees it in their own time zone
/// (`Nov 23, 2026 11:05 AM`), with the UTC text as the fallback where Slack cannot format it.
fn slack_date(at: Option<Timestamp>, utc: &str) -> String {
    match at {
        Some(at) => format_sized!(
            "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
            at.as_second(),
            SlackEscaped(utc)
        ),
        None => slack_escape(utc),
    }
}

/// Slack's longest button URL and value.
const SLACK_BUTTON_URL_LIMIT: usize = 3000;
const SLACK_BUTTON_VALUE_LIMIT: usize = 2000;

/// The Claim button (the claim endpoint replaces this block, found by its `block_id`, once
/// someone claims) and, when configured, an "Open in CRM" link button.
fn slack_actions(lead_id: &str, crm: Option<&str>) -> Value {
    let button = |text: &str, action_id: &str| {
        object([
            ("type", "button".into()),
            ("action_id", action_id.into()),
            (
                "text",
                object([("type", "plain_text".into()), ("text", text.into())]),
            ),
        ])
    };
    let mut elements = Vec::with_capacity(2);
    if lead_id.len() <= SLACK_BUTTON_VALUE_LIMIT {
        let mut claim = button("Claim", "claim");
        if let Value::Object(map) = &mut claim {
            map.insert("style".into(), "primary".into());
            map.insert("value".into(), lead_id.into());
        }
        elements.push(claim);
    }
    // A link Slack would refuse is left out rather than losing the whole message.
    if let Some(url) = crm.filter(|u| u.len() <= SLACK_BUTTON_URL_LIMIT) {
        let mut open = button("Open in CRM", "open_crm");
        if let Value::Object(map) = &mut open {
            map.insert("url".into(), url.into());
        }
        elements.push(open);
    }
    elements.extend(not_mine_menu(lead_id));
    object([
        ("type", "actions".into()),
        ("block_id", SLACK_ACTIONS_BLOCK.into()),
        ("elements", Value::Array(elements)),
    ])
}

/// Why a rep says a lead is not theirs, as the alert's "Not mine" menu offers it: the code the
/// menu sends, and the reason recorded against the rule that chose them.
pub const NOT_MINE_REASONS: [(&str, &str); 4] = [
    ("wrong_region", "Wrong region or territory"),
    ("wrong_segment", "Wrong segment or company size"),
    ("has_owner", "Someone else owns the account"),
    (
        "not_sales",
        "Not a sales lead (support, job seeker, partner)",
    ),
];

/// The reason a "Not mine" menu code stands for.
pub fn not_mine_reason(code: &str) -> Option<&'static str> {
    NOT_MINE_REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, reason)| *reason)
}

/// Slack's longest option value.
const SLACK_OPTION_VALUE_LIMIT: usize = 150;

/// The "Not mine" menu: picking a reason hands the lead back (option values `code:lead id`).
fn not_mine_menu(lead_id: &str) -> Option<Value> {
    let options: Vec<Value> = NOT_MINE_REASONS
        .iter()
        .map(|(code, reason)| {
            object([
                (
                    "text",
                    object([("type", "plain_text".into()), ("text", (*reason).into())]),
                ),
                ("value", format!("{code}:{lead_id}").into()),
            ])
        })
        .collect();
    let fits = NOT_MINE_REASONS
        .iter()
        .all(|(code, _)| code.len() + 1 + lead_id.len() <= SLACK_OPTION_VALUE_LIMIT);
    fits.then(|| {
        object([
            ("type", "static_select".into()),
            ("action_id", SLACK_NOT_MINE_ACTION.into()),
            (
                "placeholder",
                object([("type", "plain_text".into()), ("text", "Not mine…".into())]),
            ),
            ("options", Value::Array(options)),
        ])
    })
}

/// The action id of the "Not mine" menu.
pub const SLACK_NOT_MINE_ACTION: &str = "not_mine";

/// The prefix of the action ids of the buttons that record what the rep did
/// (`activity:called`); the rest is an activity kind's name.
pub const SLACK_ACTIVITY_ACTION_PREFIX: &str = "activity:";

/// The buttons an open lead's alert keeps once someone owns it: what happened next.
pub const SLACK_PROGRESS_BLOCK: &str = "lead_progress";

/// What the progress buttons record, and their labels.
pub const PROGRESS_BUTTONS: [(&str, &str); 4] = [
    ("called", "Called"),
    ("emailed", "E-mailed"),
    ("meeting_booked", "Meeting booked"),
    ("disqualified", "Not a fit"),
];

fn slack_progress_actions(lead_id: &str) -> Value {
    let mut elements: Vec<Value> = Vec::new();
    if lead_id.len() <= SLACK_BUTTON_VALUE_LIMIT {
        elements.extend(PROGRESS_BUTTONS.iter().map(|(kind, label)| {
            let mut fields = serde_json::Map::new();
            fields.insert("type".into(), "button".into());
            fields.insert(
                "action_id".into(),
                format!("{SLACK_ACTIVITY_ACTION_PREFIX}{kind}").into(),
            );
            fields.insert(
                "text".into(),
                object([("type", "plain_text".into()), ("text", (*label).into())]),
            );
            fields.insert("value".into(), lead_id.into());
            if *kind == "disqualified" {
                fields.insert("style".into(), "danger".into());
            }
            Value::Object(fields)
        }));
    }
    elements.extend(not_mine_menu(lead_id));
    object([
        ("type", "actions".into()),
        ("block_id", SLACK_PROGRESS_BLOCK.into()),
        ("elements", Value::Array(elements)),
    ])
}

/// The block id of a Slack alert's buttons (Claim, Open in CRM).
pub const SLACK_ACTIONS_BLOCK: &str = "lead_actions";

/// A posted Slack alert of a lead someone owns now: `status` under it, and the buttons that
/// record what happened next (Called, E-mailed, Meeting booked, Not a fit, Not mine).
pub fn slack_with_progress(message: Value, status: &str, lead_id: &str) -> Value {
    let mut message = slack_with_status(message, status);
    if let Some(blocks) = message.get_mut("blocks").and_then(Value::as_array_mut) {
        blocks.push(slack_progress_actions(lead_id));
    }
    message
}

/// A posted Slack alert as it reads once the lead moved on: its buttons gone (nobody is left
/// with a live Claim button) and `status` (Slack mrkdwn, escaped by the caller) under it.
pub fn slack_with_status(mut message: Value, status: &str) -> Value {
    if let Some(blocks) = message.get_mut("blocks").and_then(Value::as_array_mut) {
        blocks.retain(|b| {
            b["block_id"] != SLACK_ACTIONS_BLOCK && b["block_id"] != SLACK_PROGRESS_BLOCK
        });
        blocks.push(object([
            ("type", "context".into()),
            ("block_id", "status".into()),
            (
                "elements",
                Value::Array(vec![object([
                    ("type", "mrkdwn".into()),
                    ("text", status.into()),
                ])]),
            ),
        ]));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escape_handles_only_the_three_characters() {
        assert_eq!(
            slack_escape("<!channel> & <https://evil.example|click> \"quoted\" 'x'"),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; \"quoted\" 'x'"
        );
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        assert_eq!(terminal_safe("a\x1b[2Jb\rc\x07"), "a [2Jb c ");
        // C1 controls are two bytes in UTF-8; printable non-ASCII stays.
        assert_eq!(terminal_safe("é\u{85}x\u{9b}"), "é x ");
    }

    #[test]
    fn format_time_writes_what_strftime_writes() {
        for at in [
            "2026-11-23T10:05:07.999Z",
            "0005-01-01T00:00:00Z",
            "-000001-03-04T05:06:07Z",
            "9999-12-30T21:59:59Z",
        ] {
            let at: Timestamp = at.parse().expect("valid timestamp");
            let expected = at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
            assert_eq!(format_time(at), expected);
        }
    }

    #[test]
    fn the_prospect_is_shown_with_the_cleaned_name_and_phone_when_known() {
        let lead = |enrichment: &str| -> Lead {
            let text = format!(
                r#"{{"id":"lead-1","source":"website","event_id":"e","trace_id":"t",
                "state":"enriched","incomplete":false,"timeline":{{}},
                "capture":{{"event":"lead_capture","captured_email":"jane@acme.co.uk",
                            "name":"  jane   DOE & <co> ","phone":"020 7946 0958"}}
                {enrichment}}}"#
            );
            serde_json::from_str(&text).expect("a lead")
        };
        let cleaned = lead(
            r#","enrichment":{"name":"Jane Doe & <Co>","phone_e164":"+442079460958",
                "free_mail":false,"sources":[]}"#,
        );
        let alert = render(&cleaned, "hot");
        assert!(
            alert
                .text
                .contains("Jane Doe & <Co> <jane@acme.co.uk, +442079460958>"),
            "{}",
            alert.text
        );
        let slack = alert.slack.to_string();
        assert!(
            slack.contains("Jane Doe &amp; &lt;Co&gt; &lt;jane@acme.co.uk, +442079460958&gt;"),
            "{slack}"
        );

        // Enriched before cleaning existed: what was typed, as before.
        let older = render(&lead(""), "hot");
        assert!(
            older
                .text
                .contains("jane   DOE & <co>  <jane@acme.co.uk, 020 7946 0958>"),
            "{}",
            older.text
        );
    }

    /// Every string of mrkdwn in a Slack payload: section texts and context elements.
    fn mrkdwn_texts(payload: &Value) -> Vec<String> {
        let mut texts = Vec::new();
        for block in payload["blocks"].as_array().into_iter().flatten() {
            if let Some(text) = block["text"]["text"].as_str() {
                texts.push(text.to_owned());
            }
            for element in block["elements"].as_array().into_iter().flatten() {
                if let Some(text) = element["text"].as_str() {
                    texts.push(text.to_owned());
                }
            }
        }
        texts
    }

    #[test]
    fn hostile_and_huge_prospect_text_renders_inert_and_inside_slacks_limits() {
        let hostile =
            "<!channel> *bold* <https://evil.example|click> <script>alert(1)</script> &amp; \
             [x](https://evil.example) <at>all</at>";
        let long_question = format!("{hostile} {}", "why ".repeat(5_000));
        let turns: Vec<Value> = (0..100)
            .map(|i| {
                serde_json::json!({
                    "role": if i % 2 == 0 { "visitor" } else { "bot" },
                    "text": format!("{hostile} turn {i} {}", "x".repeat(2_000)),
                })
            })
            .collect();
        let lead: Lead = serde_json::from_value(serde_json::json!({
            "id": "lead-1", "source": "website", "event_id": "e", "trace_id": "t",
            "state": "routed", "incomplete": false, "timeline": {},
            "capture": {
                "event": "lead_capture_fallback",
                "captured_email": "jane@acme.co.uk",
                "name": format!("{hostile} {}", "n".repeat(5_000)),
                "trigger_query": long_question,
                "conversation_transcript_url": "https://transcripts.example/c/1",
                "transcript": turns,
                "form_fields": (0..30)
                    .map(|i| (format!("{hostile} q{i:02}"), Value::String(format!("{hostile} {}", "a".repeat(3_000)))))
                    .collect::<Map<String, Value>>(),
                "metadata": {"source_url": format!("https://acme.example/{}", "p".repeat(4_000))}
            }
        }))
        .expect("a lead");
        let alert = render_with(&lead, "hot", &RenderOptions::default().all_formats());
        // Form answers: at most FORM_FIELDS_SHOWN of them, each cut, in every format.
        let form = alert
            .text
            .split("  Form:\n")
            .nth(1)
            .and_then(|rest| rest.split("  Transcript").next())
            .expect("a form section");
        assert_eq!(form.lines().count(), FORM_FIELDS_SHOWN);
        assert!(form.lines().all(|l| l.chars().count() < 300), "answers cut");
        let payload = &alert.slack;

        let blocks = payload["blocks"].as_array().expect("blocks");
        assert!(blocks.len() <= 50, "{} blocks", blocks.len());
        let texts = mrkdwn_texts(payload);
        for text in &texts {
            let chars = text.chars().count();
            assert!(
                chars <= SLACK_SECTION_LIMIT,
                "a section of {chars} characters"
            );
            // Inert: no raw Slack control sequence, link or markup from the prospect survives.
            assert!(!text.contains("<!channel>"), "{text}");
            assert!(!text.contains("<https://evil"), "{text}");
            assert!(!text.contains("<script>"), "{text}");
        }
        // Escaped, not entity-encoded twice or beyond the three characters Slack names.
        let all = texts.concat();
        assert!(all.contains("&lt;!channel&gt; *bold* &lt;https://evil.example|click&gt;"));
        assert!(all.contains("&amp;amp;"), "a typed &amp; shows as typed");
        assert!(
            !all.contains("&quot;") && !all.contains("&#"),
            "only & < > are encoded"
        );
        // Long text is cut with a mark; the transcript shows its last turns, each cut, and
        // links to the whole.
        assert!(all.contains('…'));
        assert!(
            all.contains("turn 99") && !all.contains("turn 95 "),
            "the last turns"
        );
        assert!(all.contains("<https://transcripts.example/c/1|Full transcript>"));
        let total: usize = texts.iter().map(|t| t.chars().count()).sum::<usize>()
            + payload["text"].as_str().map_or(0, |t| t.chars().count());
        assert!(total <= 13_000, "{total} characters in all");

        // The plain text has no platform limit: the whole question stays readable there.
        assert!(alert.text.contains(&"why ".repeat(5_000)));

        // Teams: prospect text only in text runs (never markdown), cut, inside the limit.
        let card = alert.teams.as_ref().expect("rendered");
        let teams = teams_with_claim(card, Some("https://relay.example/claim/x"));
        let size = teams.to_string().len();
        assert!(size <= 28_000, "{size} bytes");
        let card = &teams["attachments"][0]["content"];
        for element in card["body"].as_array().expect("body") {
            if element["type"] == "TextBlock" {
                // Markdown is parsed here: only our own fixed texts.
                let text = element["text"].as_str().unwrap_or_default();
                assert!(
                    text.starts_with("Transcript (last") || text.starts_with("lead lead-1"),
                    "{text}"
                );
            } else {
                assert_eq!(element["type"], "RichTextBlock");
                for run in element["inlines"].as_array().expect("inlines") {
                    assert_eq!(run["type"], "TextRun");
                    let text = run["text"].as_str().unwrap_or_default();
                    assert!(text.chars().count() <= 1_500, "a run of {}", text.len());
                }
            }
        }
        let actions = card["actions"].as_array().expect("actions");
        assert_eq!(actions[0]["title"], "Claim");
        assert!(
            actions
                .iter()
                .all(|a| !a["url"].to_string().contains("evil")),
            "no link from the prospect becomes an action"
        );

        // SMS: plain, one segment, the link whole.
        let link = "https://relay.example/claim/lead-1?rep=bruno&expires=1&sig=ab";
        let sms = sms_text(&alert.sms, Some(link));
        assert!(sms.chars().count() <= SMS_LIMIT, "{sms}");
        assert!(sms.ends_with(&format!(" Claim: {link}")), "{sms}");
        for inert in ["<", ">", "https://evil", "[", "]"] {
            assert!(!sms[..sms.len() - link.len()].contains(inert), "{sms}");
        }
    }

    #[test]
    fn an_escalated_lead_says_so_in_every_format_and_slack_carries_the_buttons() {
        let mut lead: Lead = serde_json::from_value(serde_json::json!({
            "id": "lead-9", "source": "website", "event_id": "e", "trace_id": "t",
            "state": "notified", "incomplete": false,
            "timeline": {"captured_at": "2026-11-23T10:00:00Z"},
            "capture": {"event": "lead_capture", "captured_email": "jane+x@acme.co.uk",
                        "name": "Jane Doe", "trigger_query": "[x](https://evil) *now*"},
            "qualification": {"tier": 1, "score": 80, "sla_minutes": 5, "breakdown": []},
            "assignment": {"owner": {"kind": "rep", "id": "dana"}, "owner_name": "Dana Whitfield",
                           "rule": "escalation", "reason": "backup"},
            "escalations": [{"level": 1, "at": "2026-11-23T10:06:00Z",
                             "from": {"kind": "rep", "id": "alice"},
                             "to": {"kind": "rep", "id": "dana"},
                             "missed": "2026-11-23T10:05:00Z"}]
        }))
        .expect("a lead");
        let options = RenderOptions {
            crm_url: Some("https://crm.example/c?email={email}&lead={lead_id}"),
            escalated_from: Some("Alice Martin"),
            ..RenderOptions::default()
        }
        .all_formats();
        let alert = render_with(&lead, "hot", &options);
        let line = "Escalated to you (level 1): unclaimed 6 min, Alice Martin's SLA passed";
        assert!(alert.headline.starts_with(line), "{}", alert.headline);
        assert!(alert.text.starts_with(line));
        assert!(alert.slack["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(line)));
        assert_eq!(
            alert.slack["blocks"][0]["text"]["text"],
            "Escalated (level 1): tier-1 lead for Dana Whitfield"
        );
        assert!(alert
            .teams
            .as_ref()
            .is_some_and(|t| t.to_string().contains(line)));
        let summary = alert.summary.as_ref().expect("rendered");
        assert_eq!(summary["headline"].as_str(), Some(alert.headline.as_str()));
        assert_eq!(summary["escalation_level"], 1);
        assert_eq!(alert.round, "esc1:");

        let blocks = alert.slack["blocks"].as_array().expect("blocks");
        let actions = blocks.last().expect("actions");
        assert_eq!(actions["block_id"], "lead_actions");
        assert_eq!(actions["elements"][0]["action_id"], "claim");
        assert_eq!(actions["elements"][0]["value"], "lead-9");
        assert_eq!(
            actions["elements"][1]["url"],
            "https://crm.example/c?email=jane%2Bx%40acme.co.uk&lead=lead-9"
        );

        // Without a CRM template, the Claim button and the "Not mine" menu.
        lead.escalations.clear();
        let plain = render(&lead, "hot");
        assert!(plain.headline.starts_with("New tier-1 lead"));
        let actions = plain.slack["blocks"]
            .as_array()
            .and_then(|b| b.last().cloned())
            .expect("the actions block");
        let elements = actions["elements"].as_array().expect("elements");
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[1]["action_id"], SLACK_NOT_MINE_ACTION);
        assert_eq!(
            elements[1]["options"][0]["value"], "wrong_region:lead-9",
            "each reason carries the lead"
        );
    }

    #[test]
    fn a_merged_lead_tells_its_owner_it_is_the_same_person() {
        // Stored before merging existed (no `merged_into`): still reads, as a new lead.
        let text = r#"{"id":"lead-2","source":"website","event_id":"e","trace_id":"t",
            "state":"routed","incomplete":false,"timeline":{},
            "capture":{"event":"lead_capture","captured_email":"jane@acme.co.uk",
                       "name":"Jane <b>\u001b[2J"},
            "assignment":{"owner":{"kind":"rep","id":"bruno"},"owner_name":"Bruno Diaz",
                          "rule":"duplicate","reason":"same person"}}"#;
        let mut lead: Lead = serde_json::from_str(text).expect("a lead");
        assert_eq!(lead.merged_into, None);
        assert!(render(&lead, "hot").headline.starts_with("New tier-"));

        lead.merged_into = Some("lead-1".into());
        let alert = render(&lead, "hot");
        assert_eq!(
            alert.headline,
            "Same person again: Jane <b> [2J sent another request; merged into lead lead-1 \
             owned by you (Bruno Diaz)"
        );
        assert!(alert.text.starts_with(&alert.headline));
        let slack = alert.slack.to_string();
        assert!(
            slack.contains("Same person again: Jane &lt;b&gt;"),
            "{slack}"
        );
        assert!(slack.contains("merged into lead lead-1"), "{slack}");
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
    }
}

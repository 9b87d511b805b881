//! E-mail rendering, pure: a rep's alert (plain text and HTML with the same context as the
//! Slack alert, and the rep's signed claim link) and the prospect's acknowledgement.
//!
//! Everything the prospect typed is untrusted. In HTML it is escaped by `html-escape`; in
//! headers it is made one line (no CR/LF, no control characters) and cut, and the e-mail adapter
//! encodes what is left; links to a prospect-supplied URL are made only for `https://`.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::email::{Mailbox, OutgoingEmail};
use crate::model::{Lead, Turn};
use html_escape::{encode_double_quoted_attribute, encode_text};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The most recent turns shown, whole, within this many characters in all.
const TRANSCRIPT_BUDGET: usize = 3_000;
/// And at most this many turns.
const TRANSCRIPT_TURNS: usize = 6;
/// The trigger question is cut beyond this.
const QUESTION_LIMIT: usize = 2_000;
/// Names and companies in a subject or a display name.
const HEADER_PART_LIMIT: usize = 60;
/// Any other single-line field.
const FIELD_LIMIT: usize = 300;

/// The parties of one message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Mailbox,
    pub to: Mailbox,
    pub reply_to: Option<Mailbox>,
}

/// One line, safe in a header: control characters (CR, LF, tabs, escapes) become spaces, runs
/// of white space one space, and the result is cut to `limit` characters.
pub fn one_line(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit * 4));
    for word in text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    crate::render::truncate(&out, limit)
}

/// A mailbox with a display name made header-safe; `None` if `address` is not one.
pub fn mailbox(name: Option<&str>, address: &str) -> Option<Mailbox> {
    let name = name
        .map(|n| one_line(n, HEADER_PART_LIMIT))
        .filter(|n| !n.is_empty());
    Mailbox::new(name, address).ok()
}

/// `<lead-id.tag@domain>`: the same for every attempt at one delivery.
fn message_id(lead_id: &str, tag: &str, from: &Mailbox) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    };
    format!("<{}.{}@{}>", clean(lead_id), clean(tag), from.domain())
}

/// The prospect's name: cleaned by enrichment when it could, else as typed.
fn prospect_name(lead: &Lead) -> &str {
    lead.enrichment
        .as_ref()
        .and_then(|e| e.name.as_deref())
        .or(lead.capture.name.as_deref())
        .unwrap_or("Unknown visitor")
}

/// An SLA as a rep reads it.
fn sla(minutes: u32) -> String {
    if minutes >= 120 && minutes.is_multiple_of(60) {
        format!("{} h", minutes / 60)
    } else {
        format!("{minutes} min")
    }
}

/// The most recent turns that fit [`TRANSCRIPT_BUDGET`] whole, oldest first, and how many
/// earlier turns were left out. Only a last turn longer than the whole budget is cut.
fn recent_turns(turns: &[Turn]) -> (Vec<(&str, Cow<'_, str>)>, usize) {
    let mut used = 0;
    let mut first = turns.len();
    for (i, turn) in turns.iter().enumerate().rev() {
        let length = turn.text.chars().count();
        if turns.len() - i > TRANSCRIPT_TURNS || used + length > TRANSCRIPT_BUDGET {
            break;
        }
        used += length;
        first = i;
    }
    if first == turns.len() {
        return match turns.last() {
            Some(last) => (
                vec![(
                    last.role.as_str(),
                    Cow::Owned(crate::render::truncate(&last.text, TRANSCRIPT_BUDGET)),
                )],
                turns.len() - 1,
            ),
            None => (Vec::new(), 0),
        };
    }
    let shown = turns[first..]
        .iter()
        .map(|t| (t.role.as_str(), Cow::Borrowed(t.text.as_str())))
        .collect();
    (shown, first)
}

/// The labelled facts of a rep alert, shared by both parts. Values are raw (unescaped).
struct Facts {
    title: String,
    rows: Vec<(&'static str, String)>,
}

fn facts(lead: &Lead, tier_label: &str) -> Facts {
    let q = lead.qualification.as_ref();
    let e = lead.enrichment.as_ref();
    let a = lead.assignment.as_ref();
    let capture = &lead.capture;
    let name = one_line(prospect_name(lead), 120);

    let mut contact = String::new();
    let phone = e
        .and_then(|e| e.phone_e164.as_deref())
        .or(capture.phone.as_deref());
    for part in [capture.captured_email.as_deref(), phone]
        .into_iter()
        .flatten()
    {
        if !contact.is_empty() {
            contact.push_str(", ");
        }
        contact.push_str(&one_line(part, FIELD_LIMIT));
    }
    if let Some(title) = capture.job_title.as_deref() {
        let _ = write!(contact, " ({})", one_line(title, 120));
    }

    let mut company = e
        .and_then(|e| e.company.as_deref())
        .or(capture.company.as_deref())
        .map(|c| one_line(c, 120))
        .unwrap_or_else(|| "company unknown".into());
    if let Some(e) = e {
        let employees = e.employees.map(|n| format!("{n} employees"));
        let details: Vec<&str> = [
            employees.as_deref(),
            e.industry.as_deref(),
            e.country.as_deref(),
            e.free_mail.then_some("free-mail address"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            let _ = write!(company, " ({})", details.join(", "));
        }
    }

    let tier = q.map_or(0, |q| q.tier);
    let mut deadline = format!(
        "tier {tier} ({tier_label}): claim within {}",
        sla(q.map_or(0, |q| q.sla_minutes))
    );
    if let Some(due) = lead.timeline.sla_due_at {
        let _ = write!(deadline, ", by {}", due.strftime("%Y-%m-%d %H:%M UTC"));
    }

    let score = q.map(|q| {
        let items: Vec<String> = q
            .breakdown
            .iter()
            .map(|i| format!("{} {:+}", i.signal, i.points))
            .collect();
        format!("{} ({})", q.score, items.join(", "))
    });
    let topics = a
        .and_then(|a| a.trace.as_ref())
        .map(|t| t.topics.join(", "))
        .filter(|t| !t.is_empty());
    let why = a.map(|a| {
        let mut why = format!("rule \"{}\": {}", a.rule, a.reason);
        if let Some(pool) = &a.pool {
            let _ = write!(why, "; picked from pool {pool}");
        }
        if let Some(until) = a.held_until {
            let _ = write!(
                why,
                "; held after hours until {}",
                until.strftime("%Y-%m-%d %H:%M UTC")
            );
        }
        why
    });
    let flags: Vec<&str> = lead.flags.iter().map(|f| f.code.as_str()).collect();

    let title = match &lead.merged_into {
        Some(open) => format!(
            "Same person again: {name} sent another request, merged into lead {open} (yours)"
        ),
        None => format!(
            "New tier-{tier} lead for {}: {name}",
            a.map_or("unassigned", |a| a.owner_name.as_str())
        ),
    };
    let mut rows = vec![
        ("Prospect", format!("{name} <{contact}>")),
        ("Company", company),
        ("SLA", deadline),
    ];
    if let Some(question) = capture.trigger_query.as_deref() {
        rows.push(("Asked", crate::render::truncate(question, QUESTION_LIMIT)));
    }
    rows.extend(score.map(|s| ("Score", s)));
    rows.extend(topics.map(|t| ("Topics", t)));
    rows.extend(why.map(|w| ("Why you", w)));
    if let Some(page) = capture.metadata.source_url.as_deref() {
        rows.push(("Page", one_line(page, FIELD_LIMIT)));
    }
    if !flags.is_empty() {
        rows.push(("Flags", flags.join(", ")));
    }
    Facts { title, rows }
}

/// A link target from the prospect, only if it is plain `https://`.
fn safe_link(url: Option<&str>) -> Option<&str> {
    url.filter(|u| u.starts_with("https://") && !u.chars().any(|c| c.is_control() || c == ' '))
}

/// The e-mail a rep (or queue manager) gets for a lead, with their own claim link.
pub fn rep_alert(
    lead: &Lead,
    tier_label: &str,
    claim_url: Option<&str>,
    envelope: Envelope,
    receipt: &str,
) -> OutgoingEmail {
    let f = facts(lead, tier_label);
    let q = lead.qualification.as_ref();
    let company = lead
        .enrichment
        .as_ref()
        .and_then(|e| e.company.as_deref())
        .or(lead.capture.company.as_deref());
    let who = match company {
        Some(company) => format!(
            "{}, {}",
            one_line(prospect_name(lead), HEADER_PART_LIMIT),
            one_line(company, HEADER_PART_LIMIT)
        ),
        None => one_line(prospect_name(lead), HEADER_PART_LIMIT),
    };
    let subject = match &lead.merged_into {
        Some(_) => format!("[Same person again] {who}"),
        None => format!(
            "[Tier {} · SLA {}] {who}",
            q.map_or(0, |q| q.tier),
            sla(q.map_or(0, |q| q.sla_minutes))
        ),
    };
    let (turns, omitted) = recent_turns(&lead.capture.transcript);
    let transcript_url = safe_link(lead.capture.conversation_transcript_url.as_deref());

    // Plain text: the prospect's text as typed (a text part is never interpreted).
    let mut text = String::with_capacity(2_048);
    let _ = writeln!(text, "{}\n", f.title);
    if let Some(url) = claim_url {
        let _ = writeln!(text, "Claim this lead: {url}\n");
    }
    for (label, value) in &f.rows {
        let _ = writeln!(text, "{label}: {value}");
    }
    let form = crate::render::form_answers(lead);
    if !form.is_empty() {
        text.push_str("\nForm:\n");
        for (name, answer) in &form {
            let _ = writeln!(text, "  {}: {}", one_line(name, 40), one_line(answer, 200));
        }
    }
    if !turns.is_empty() {
        let _ = writeln!(
            text,
            "\nTranscript (last {} of {} turns):",
            turns.len(),
            lead.capture.transcript.len()
        );
        for (role, turn) in &turns {
            let _ = writeln!(text, "  {role}: {turn}");
        }
        if omitted > 0 {
            let _ = writeln!(text, "  ({omitted} earlier turns not shown)");
        }
    }
    if let Some(url) = transcript_url {
        let _ = writeln!(text, "Full transcript: {url}");
    }
    let _ = writeln!(text, "\nLead id: {}", lead.id);

    // HTML: every value escaped; links only to our claim URL and an https transcript.
    let mut html = String::with_capacity(4_096);
    html.push_str(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:14px;color:#222\">",
    );
    let _ = write!(
        html,
        "<h2 style=\"font-size:18px\">{}</h2>",
        encode_text(&f.title)
    );
    if let Some(url) = claim_url {
        let _ = write!(
            html,
            "<p><a href=\"{}\" style=\"display:inline-block;padding:10px 18px;background:#1a73e8;\
             color:#fff;text-decoration:none;border-radius:4px\">Claim this lead</a></p>",
            encode_double_quoted_attribute(url)
        );
    }
    html.push_str("<table cellpadding=\"4\" style=\"border-collapse:collapse\">");
    for (label, value) in &f.rows {
        let _ = write!(
            html,
            "<tr><th align=\"left\" valign=\"top\">{label}</th>\
             <td style=\"white-space:pre-wrap\">{}</td></tr>",
            encode_text(value)
        );
    }
    for (name, answer) in &form {
        let _ = write!(
            html,
            "<tr><th align=\"left\" valign=\"top\">{}</th>\
             <td style=\"white-space:pre-wrap\">{}</td></tr>",
            encode_text(name),
            encode_text(answer)
        );
    }
    html.push_str("</table>");
    if !turns.is_empty() {
        let _ = write!(
            html,
            "<h3 style=\"font-size:15px\">Transcript (last {} of {} turns)</h3>",
            turns.len(),
            lead.capture.transcript.len()
        );
        for (role, turn) in &turns {
            let _ = write!(
                html,
                "<p style=\"white-space:pre-wrap\"><b>{}:</b> {}</p>",
                encode_text(&one_line(role, 40)),
                encode_text(turn)
            );
        }
        if omitted > 0 {
            let _ = write!(html, "<p><i>{omitted} earlier turns not shown</i></p>");
        }
    }
    if let Some(url) = transcript_url {
        let _ = write!(
            html,
            "<p><a href=\"{}\">Full transcript</a></p>",
            encode_double_quoted_attribute(url)
        );
    }
    let _ = write!(
        html,
        "<p style=\"color:#888;font-size:12px\">Lead {}</p></body></html>",
        encode_text(&lead.id)
    );

    OutgoingEmail {
        message_id: message_id(&lead.id, receipt, &envelope.from),
        from: envelope.from,
        to: envelope.to,
        reply_to: envelope.reply_to,
        subject: one_line(&subject, 200),
        text,
        html,
    }
}

/// When the prospect may expect an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// During hours: within the tier's SLA.
    Within { minutes: u32 },
    /// After hours: at the owner's next opening, told in the owner's time zone.
    Opening { at: Timestamp, tz: TimeZone },
}

impl Expectation {
    /// The promise in words, as a prospect reads it: "within 5 minutes", "when we are back on
    /// Monday at 08:30 (London time)".
    pub fn words(&self, now: Timestamp) -> String {
        match self {
            Expectation::Within { minutes } => match *minutes {
                0 | 1 => "within a minute".into(),
                m if m < 60 => format!("within {m} minutes"),
                60 => "within an hour".into(),
                m if m < 1_440 && m.is_multiple_of(60) => format!("within {} hours", m / 60),
                m if m < 1_440 => format!("within {} hours", m.div_ceil(60)),
                1_440 => "within a day".into(),
                m => format!("within {} days", m.div_ceil(1_440)),
            },
            Expectation::Opening { at, tz } => {
                let local = at.to_zoned(tz.clone());
                let today = now.to_zoned(tz.clone()).date();
                let days = (local.date() - today).get_days();
                let day = match days {
                    i32::MIN..=0 => "today".to_owned(),
                    1 => "tomorrow".to_owned(),
                    2..=6 => format!("on {}", local.strftime("%A")),
                    _ => format!("on {}", local.strftime("%A %-d %B")),
                };
                format!(
                    "when we are back {day} at {} ({})",
                    local.strftime("%H:%M"),
                    zone_words(tz)
                )
            }
        }
    }
}

/// `Europe/London` → "London time"; UTC → "UTC".
fn zone_words(tz: &TimeZone) -> String {
    match tz.iana_name() {
        Some(name) if name != "UTC" && name.contains('/') => {
            let city = name.rsplit('/').next().unwrap_or(name).replace('_', " ");
            format!("{city} time")
        }
        _ => "UTC".into(),
    }
}

/// The first word of a name, if it looks like one (letters, `-`, `'`, `.`).
pub fn first_name(name: &str) -> Option<String> {
    let word = one_line(name, 200);
    let word = word.split(' ').next()?;
    let plausible = !word.is_empty()
        && word.chars().count() <= 40
        && word
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '.'));
    plausible.then(|| word.to_owned())
}

/// The acknowledgement a prospect gets when their lead is routed.
///
/// It echoes nothing the visitor typed beyond a plausible first name, and names their company
/// only as enrichment found it: a form filled with someone else's address cannot use it to
/// deliver a message of the attacker's choosing.
pub fn acknowledgement(
    lead: &Lead,
    owner_first_name: Option<&str>,
    expectation: &Expectation,
    now: Timestamp,
    envelope: Envelope,
    wording: Option<Wording<'_>>,
) -> OutgoingEmail {
    let first = first_name(prospect_name(lead));
    if let Some(wording) = wording {
        let facts = AckFacts::new(first.as_deref(), lead, owner_first_name, expectation, now);
        match (facts.render(wording.subject), facts.render(wording.text)) {
            (Ok(subject), Ok(text)) => return ack_email(lead, envelope, &subject, text),
            (Err(error), _) | (_, Err(error)) => tracing::warn!(lead_id = %lead.id, %error,
                "the acknowledgement template failed; the built-in wording is sent"),
        }
    }
    let company = lead
        .enrichment
        .as_ref()
        .filter(|e| !e.free_mail)
        .and_then(|e| e.company.as_deref())
        .map(|c| one_line(c, HEADER_PART_LIMIT));
    let greeting = match &first {
        Some(first) => format!("Hi {first},"),
        None => "Hello,".to_owned(),
    };
    let thanks = match &company {
        Some(company) => format!("Thank you for getting in touch on behalf of {company}."),
        None => "Thank you for getting in touch.".to_owned(),
    };
    let who = match owner_first_name {
        Some(owner) => format!("{owner} from our team"),
        None => "Someone from our team".to_owned(),
    };
    let promise = format!("{who} will get back to you {}.", expectation.words(now));
    let reply = match owner_first_name {
        Some(owner) => format!("If you want to add anything, just reply: it goes to {owner}."),
        None => "If you want to add anything, just reply to this e-mail.".to_owned(),
    };
    let subject = match &first {
        Some(first) => format!("Thanks, {first}: we have your request"),
        None => "Thanks: we have your request".to_owned(),
    };
    let text = format!("{greeting}\n\n{thanks}\n{promise}\n\n{reply}\n");
    ack_email(lead, envelope, &subject, text)
}

/// An acknowledgement template's subject and plain text (Jinja), as configured.
#[derive(Debug, Clone, Copy)]
pub struct Wording<'a> {
    pub subject: &'a str,
    pub text: &'a str,
}

/// The acknowledgement from its subject and plain text: the HTML part is the text, escaped,
/// a paragraph per blank-line-separated block.
fn ack_email(lead: &Lead, envelope: Envelope, subject: &str, text: String) -> OutgoingEmail {
    let mut html = String::with_capacity(1_024);
    html.push_str("<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:14px\">");
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let escaped = encode_text(paragraph).replace('\n', "<br>");
        let _ = write!(html, "<p>{escaped}</p>");
    }
    html.push_str("</body></html>");
    OutgoingEmail {
        message_id: message_id(&lead.id, "ack", &envelope.from),
        from: envelope.from,
        to: envelope.to,
        reply_to: envelope.reply_to,
        subject: one_line(subject, 200),
        text,
        html,
    }
}

/// A prospect's reply, forwarded to the lead's current owner: `Re: <subject>`, Reply-To the
/// prospect (in `envelope`), their text as they wrote it, then a line naming the lead with a
/// link to it. All of the reply is the prospect's: escaped in HTML, one line in headers.
pub fn forwarded_reply(
    lead: &Lead,
    reply: &crate::reply_relay::ForwardedReply,
    link: Option<&str>,
    envelope: Envelope,
) -> OutgoingEmail {
    let subject = one_line(&reply.subject, 200);
    let subject = if subject.is_empty() {
        "Re: your request".to_owned()
    } else if subject
        .get(..3)
        .is_some_and(|re| re.eq_ignore_ascii_case("re:"))
    {
        subject
    } else {
        format!("Re: {subject}")
    };
    let who = one_line(prospect_name(lead), HEADER_PART_LIMIT);
    let from = one_line(&reply.from, FIELD_LIMIT);
    let lead_line = format!("Lead {} ({who})", lead.id);

    let mut text = String::with_capacity(reply.text.len() + 256);
    let _ = writeln!(text, "{from} replied to the acknowledgement:\n");
    text.push_str(reply.text.trim_end());
    text.push_str("\n\n-- \n");
    match link {
        Some(url) => {
            let _ = writeln!(text, "{lead_line}: {url}");
        }
        None => {
            let _ = writeln!(text, "{lead_line}");
        }
    }
    text.push_str("Reply to this e-mail to answer the prospect.\n");

    let mut html = String::with_capacity(reply.text.len() * 2 + 512);
    html.push_str("<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:14px\">");
    let _ = write!(
        html,
        "<p><b>{}</b> replied to the acknowledgement:</p>\
         <blockquote style=\"white-space:pre-wrap;border-left:3px solid #ccc;margin:0;padding-left:10px\">{}</blockquote>",
        encode_text(&from),
        encode_text(reply.text.trim_end())
    );
    match link {
        Some(url) => {
            let _ = write!(
                html,
                "<p style=\"color:#555\">{}: <a href=\"{}\">open the lead</a></p>",
                encode_text(&lead_line),
                encode_double_quoted_attribute(url)
            );
        }
        None => {
            let _ = write!(
                html,
                "<p style=\"color:#555\">{}</p>",
                encode_text(&lead_line)
            );
        }
    }
    html.push_str("<p style=\"color:#888;font-size:12px\">Reply to this e-mail to answer the prospect.</p></body></html>");
    OutgoingEmail {
        message_id: message_id(
            &lead.id,
            &format!("reply-{}", reply.message_key),
            &envelope.from,
        ),
        from: envelope.from,
        to: envelope.to,
        reply_to: envelope.reply_to,
        subject: one_line(&subject, 200),
        text,
        html,
    }
}

/// What an acknowledgement template can say: only what the built-in wording says (a plausible
/// first name, the company as enrichment found it, the owner's first name, the promise), never
/// other text the visitor typed.
struct AckFacts {
    first_name: Option<String>,
    company: Option<String>,
    owner_first_name: Option<String>,
    /// The tier's SLA in minutes, during hours.
    within_minutes: Option<u32>,
    /// After hours: the owner's next opening, in their time zone.
    opening_date: Option<String>,
    opening_time: Option<String>,
    opening_weekday: Option<String>,
    time_zone: Option<String>,
    /// The built-in English promise ("within 15 minutes", "when we are back tomorrow at 08:30
    /// (London time)").
    promise: String,
}

impl AckFacts {
    fn new(
        first: Option<&str>,
        lead: &Lead,
        owner_first_name: Option<&str>,
        expectation: &Expectation,
        now: Timestamp,
    ) -> AckFacts {
        let company = lead
            .enrichment
            .as_ref()
            .filter(|e| !e.free_mail)
            .and_then(|e| e.company.as_deref())
            .map(|c| one_line(c, HEADER_PART_LIMIT));
        let mut facts = AckFacts {
            first_name: first.map(str::to_owned),
            company,
            owner_first_name: owner_first_name.map(str::to_owned),
            within_minutes: None,
            opening_date: None,
            opening_time: None,
            opening_weekday: None,
            time_zone: None,
            promise: expectation.words(now),
        };
        match expectation {
            Expectation::Within { minutes } => facts.within_minutes = Some(*minutes),
            Expectation::Opening { at, tz } => {
                let local = at.to_zoned(tz.clone());
                facts.opening_date = Some(local.strftime("%Y-%m-%d").to_string());
                facts.opening_time = Some(local.strftime("%H:%M").to_string());
                facts.opening_weekday = Some(local.strftime("%A").to_string());
                facts.time_zone = tz.iana_name().map(str::to_owned);
            }
        }
        facts
    }

    fn render(&self, template: &str) -> Result<String, minijinja::Error> {
        let value = |v: &Option<String>| minijinja::Value::from(v.clone());
        ack_environment().render_str(
            template,
            minijinja::context! {
                first_name => value(&self.first_name),
                company => value(&self.company),
                owner_first_name => value(&self.owner_first_name),
                within_minutes => minijinja::Value::from(self.within_minutes),
                opening_date => value(&self.opening_date),
                opening_time => value(&self.opening_time),
                opening_weekday => value(&self.opening_weekday),
                time_zone => value(&self.time_zone),
                promise => self.promise.clone(),
            },
        )
    }
}

/// Plain text, no escaping (the HTML part is escaped after), and an unknown variable is an
/// error rather than an empty string: a typo is found when the configuration is loaded.
fn ack_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks an acknowledgement template when the configuration is loaded: its syntax, and that
/// it renders both during hours and after hours with nothing known about the prospect (every
/// variable it names exists).
pub fn check_acknowledgement_template(template: &str) -> Result<(), String> {
    let during = AckFacts {
        first_name: Some("Jane".into()),
        company: Some("Acme".into()),
        owner_first_name: Some("Bruno".into()),
        within_minutes: Some(15),
        opening_date: None,
        opening_time: None,
        opening_weekday: None,
        time_zone: None,
        promise: "within 15 minutes".into(),
    };
    let after = AckFacts {
        first_name: None,
        company: None,
        owner_first_name: None,
        within_minutes: None,
        opening_date: Some("2026-11-27".into()),
        opening_time: Some("08:30".into()),
        opening_weekday: Some("Friday".into()),
        time_zone: Some("Europe/London".into()),
        promise: "when we are back tomorrow at 08:30 (London time)".into(),
    };
    for facts in [during, after] {
        facts.render(template).map_err(|error| {
            let mut message = error.to_string();
            if let Some(detail) = error.detail() {
                message = format!("{message}: {detail}");
            }
            format!(
                "{message} (the variables: first_name, company, owner_first_name, \
                 within_minutes, opening_date, opening_time, opening_weekday, time_zone, promise)"
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(value: serde_json::Value) -> Lead {
        let mut base = serde_json::json!({
            "id": "lead-1", "source": "website", "event_id": "e", "trace_id": "t",
            "state": "routed", "incomplete": false, "timeline": {},
            "capture": {"event": "lead_capture", "captured_email": "jane@acme-robotics.com",
                        "name": "Jane Doe"},
            "enrichment": {"company": "Acme Robotics", "employees": 250, "country": "GB",
                           "free_mail": false, "sources": []},
            "qualification": {"tier": 1, "score": 80, "sla_minutes": 5,
                              "breakdown": [{"signal": "pricing page", "points": 30}]},
            "assignment": {"owner": {"kind": "rep", "id": "bruno"}, "owner_name": "Bruno Diaz",
                           "rule": "EMEA", "reason": "country GB",
                           "trace": {"topics": ["pricing"], "rules": [], "steps": []}}
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).expect("a lead")
    }

    fn envelope() -> Envelope {
        Envelope {
            from: mailbox(Some("leadrelay"), "alerts@yourco.example").expect("from"),
            to: mailbox(Some("Bruno Diaz"), "bruno@yourco.example").expect("to"),
            reply_to: None,
        }
    }

    #[test]
    fn the_subject_names_tier_sla_prospect_and_company_on_one_line() {
        let mut l = lead(serde_json::json!({}));
        let email = rep_alert(
            &l,
            "hot",
            Some("https://x/claim"),
            envelope(),
            "email:rep:bruno",
        );
        assert_eq!(
            email.subject,
            "[Tier 1 · SLA 5 min] Jane Doe, Acme Robotics"
        );
        assert_eq!(email.message_id, "<lead-1.email-rep-bruno@yourco.example>");
        l.capture.name = Some("Jane\r\nBcc: victim@evil.example\r\n\r\nbody".into());
        l.enrichment = None;
        let email = rep_alert(&l, "hot", None, envelope(), "r");
        assert!(!email.subject.contains(['\r', '\n']), "{}", email.subject);
        assert_eq!(
            email.subject,
            "[Tier 1 · SLA 5 min] Jane Bcc: victim@evil.example body"
        );
    }

    #[test]
    fn the_transcript_keeps_whole_recent_turns_within_its_budget() {
        let turn = |i: usize, n: usize| Turn {
            role: "visitor".into(),
            text: format!("t{i} {}", "x".repeat(n)),
            at: None,
        };
        let turns: Vec<Turn> = (0..10).map(|i| turn(i, 900)).collect();
        let (shown, omitted) = recent_turns(&turns);
        // Three turns of ~903 characters fit 3,000; the fourth would not.
        assert_eq!(shown.len(), 3);
        assert_eq!(omitted, 7);
        assert!(shown[0].1.starts_with("t7 ") && shown[2].1.starts_with("t9 "));
        assert!(shown.iter().all(|(_, t)| !t.contains('…')));
        // One huge last turn: the only case cut inside a turn.
        let huge = [turn(0, 10), turn(1, 20_000)];
        let (shown, omitted) = recent_turns(&huge);
        assert_eq!((shown.len(), omitted), (1, 1));
        assert_eq!(shown[0].1.chars().count(), TRANSCRIPT_BUDGET);
        // At most six turns however short.
        let short: Vec<Turn> = (0..20).map(|i| turn(i, 1)).collect();
        assert_eq!(recent_turns(&short).0.len(), TRANSCRIPT_TURNS);
    }

    #[test]
    fn prospect_facing_promises_read_naturally() {
        let now: Timestamp = "2026-11-20T22:00:00Z".parse().expect("friday night");
        assert_eq!(
            Expectation::Within { minutes: 5 }.words(now),
            "within 5 minutes"
        );
        assert_eq!(
            Expectation::Within { minutes: 1440 }.words(now),
            "within a day"
        );
        let london = TimeZone::get("Europe/London").expect("tz");
        let monday: Timestamp = "2026-11-23T08:30:00Z".parse().expect("monday");
        assert_eq!(
            Expectation::Opening {
                at: monday,
                tz: london.clone()
            }
            .words(now),
            "when we are back on Monday at 08:30 (London time)"
        );
        let saturday: Timestamp = "2026-11-21T09:00:00Z".parse().expect("saturday");
        assert_eq!(
            Expectation::Opening {
                at: saturday,
                tz: TimeZone::get("America/New_York").expect("tz")
            }
            .words(now),
            "when we are back tomorrow at 04:00 (New York time)"
        );
    }

    #[test]
    fn first_names_are_taken_only_when_plausible() {
        assert_eq!(first_name("  jane  DOE "), Some("jane".into()));
        assert_eq!(first_name("Jean-Luc Picard"), Some("Jean-Luc".into()));
        assert_eq!(first_name("<script>alert(1)</script>"), None);
        assert_eq!(first_name("https://spam.example"), None);
        assert_eq!(first_name(""), None);
    }
}

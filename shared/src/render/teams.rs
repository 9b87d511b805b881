//! The Microsoft Teams alert: one Adaptive Card posted through a Teams Workflows webhook.
//!
//! Every text that can hold the prospect's words (the headline included) is a `RichTextBlock`
//! text run, which Adaptive Cards render without markdown: a visitor cannot make a link, bold
//! text, a list or a mention, and nothing needs escaping (an escape would show). Only our own
//! fixed texts use `TextBlock`. Control characters are replaced, fields are cut, and the whole
//! message stays under Teams' size limit.

use serde_json::{json, Value};

use super::{object, truncated, Facts, TerminalSafe, TURN_LIMIT};
use crate::model::{Lead, Turn};

/// Teams refuses a message over about 28 KB ("Request Entity Too Large"); keep a margin for
/// the Claim action added per recipient.
pub const TEAMS_PAYLOAD_LIMIT: usize = 26_000;
/// Longest prospect field on the card, in characters.
const FIELD_LIMIT: usize = 500;
/// The trigger question may be longer: it is often the reason for the alert.
const QUESTION_LIMIT: usize = 1_500;

/// Plain text for a text run: no control characters, cut to `limit` characters.
fn plain(text: &str, limit: usize) -> String {
    TerminalSafe(&truncated(text, limit)).to_string()
}

/// A labelled line: the label bold, the value a plain run (never markdown). Built by hand:
/// `json!` would copy every interpolated value through the serializer.
fn labelled(label: &str, value: String) -> Value {
    object([
        ("type", "RichTextBlock".into()),
        (
            "inlines",
            Value::Array(vec![
                object([
                    ("type", "TextRun".into()),
                    ("text", format!("{label}: ").into()),
                    ("weight", "Bolder".into()),
                ]),
                object([("type", "TextRun".into()), ("text", Value::String(value))]),
            ]),
        ),
    ])
}

/// Bytes of JSON an element adds besides its texts (keys, types, punctuation), with room.
const ELEMENT_OVERHEAD: usize = 160;
/// The longest URL put on a button; a longer one is left out.
const URL_LIMIT: usize = 2_000;

/// The Teams message for `lead`, without the Claim action (see [`with_claim`]).
pub(super) fn message(
    lead: &Lead,
    f: &Facts,
    headline: &str,
    shown: &[Turn],
    crm: Option<&str>,
) -> Value {
    // Text bytes written so far: the size check serialises only when these could come near
    // the limit (JSON escaping at most doubles a text: control characters are gone).
    let mut bytes = 0;
    let mut text = |value: &str, limit: usize| {
        let value = plain(value, limit);
        bytes += value.len();
        value
    };
    let mut body = Vec::with_capacity(16 + shown.len());
    let headline = text(headline, FIELD_LIMIT);
    body.push(object([
        ("type", "RichTextBlock".into()),
        (
            "inlines",
            Value::Array(vec![object([
                ("type", "TextRun".into()),
                ("text", Value::String(headline)),
                ("weight", "Bolder".into()),
                ("size", "Medium".into()),
            ])]),
        ),
    ]));
    let sla = format!("claim within {} (by {})", f.sla, f.due);
    let lines = [
        ("Prospect", f.prospect.as_str(), FIELD_LIMIT),
        ("Company", &f.company, FIELD_LIMIT),
        ("SLA", &sla, FIELD_LIMIT),
        (
            "Asked",
            lead.capture.trigger_query.as_deref().unwrap_or(""),
            QUESTION_LIMIT,
        ),
        ("Why you", &f.why, FIELD_LIMIT),
        ("Score", &f.score, FIELD_LIMIT),
        ("Page", f.page, FIELD_LIMIT),
        ("Flags", &f.flags, FIELD_LIMIT),
        ("Missing", &f.missing, FIELD_LIMIT),
    ];
    for (label, value, limit) in lines {
        if !value.is_empty() {
            body.push(labelled(label, text(value, limit)));
        }
    }
    for (name, answer) in super::form_answers(lead) {
        body.push(labelled(&plain(&name, 40), plain(&answer, FIELD_LIMIT)));
    }
    let fields = body.len();
    if !shown.is_empty() {
        body.push(json!({
            "type": "TextBlock",
            "text": format!(
                "Transcript (last {} of {} turns)",
                shown.len(),
                lead.capture.transcript.len()
            ),
            "weight": "Bolder",
            "wrap": true,
            "separator": true,
        }));
        for turn in shown {
            let role = text(&turn.role, 40);
            body.push(labelled(&role, text(&turn.text, TURN_LIMIT)));
        }
    }
    let footer = json!({
        "type": "TextBlock",
        "text": format!("lead {}", lead.id),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    });
    let mut actions = Vec::with_capacity(3);
    let transcript_url = lead
        .capture
        .conversation_transcript_url
        .as_deref()
        .filter(|u| u.starts_with("https://"));
    for (title, url) in [("Open in CRM", crm), ("Full transcript", transcript_url)] {
        if let Some(url) = url.filter(|u| u.len() <= URL_LIMIT) {
            bytes += url.len();
            actions.push(open_url(title, url));
        }
    }
    let estimate = 2 * bytes + ELEMENT_OVERHEAD * (body.len() + actions.len() + 4);
    if estimate <= TEAMS_PAYLOAD_LIMIT {
        body.push(footer);
        return card(body, actions);
    }
    // Near the limit: measure. The fields are cut, so this rarely bites; if it does, the
    // inline transcript goes and its link stays.
    let mut whole = body.clone();
    whole.push(footer.clone());
    let message = card(whole, actions.clone());
    if message.to_string().len() <= TEAMS_PAYLOAD_LIMIT {
        return message;
    }
    body.truncate(fields);
    body.push(footer);
    card(body, actions)
}

fn open_url(title: &str, url: &str) -> Value {
    json!({"type": "Action.OpenUrl", "title": title, "url": url})
}

/// The message shape a Teams Workflows webhook takes: an activity with one card attachment.
/// The body and actions are moved in, not copied (see [`labelled`]).
fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let content = object([
        (
            "$schema",
            "http://adaptivecards.io/schemas/adaptive-card.json".into(),
        ),
        ("type", "AdaptiveCard".into()),
        ("version", "1.4".into()),
        ("msteams", object([("width", "Full".into())])),
        ("body", Value::Array(body)),
        ("actions", Value::Array(actions)),
    ]);
    object([
        ("type", "message".into()),
        (
            "attachments",
            Value::Array(vec![object([
                (
                    "contentType",
                    "application/vnd.microsoft.card.adaptive".into(),
                ),
                ("contentUrl", Value::Null),
                ("content", content),
            ])]),
        ),
    ])
}

/// The message with a Claim button first, opening the recipient's signed claim link.
pub fn with_claim(message: &Value, claim_link: Option<&str>) -> Value {
    let mut message = message.clone();
    if let (Some(link), Some(actions)) = (
        claim_link,
        message
            .pointer_mut("/attachments/0/content/actions")
            .and_then(Value::as_array_mut),
    ) {
        actions.insert(0, open_url("Claim", link));
    }
    message
}

//! The alert as a CRM keeps it: a note on the contact (the question, the transcript, the tier,
//! the score breakdown, why this owner) and a task due at the SLA deadline. HTML, as HubSpot's
//! `hs_note_body` and `hs_task_body` take it: every string the prospect supplied is escaped
//! (`html-escape`), and the only link is an https transcript URL.

use std::fmt::Write as _;

use html_escape::{encode_double_quoted_attribute, encode_text};
use jiff::Timestamp;

use super::{facts, form_answers, prospect_name, terminal_safe, truncated};
use crate::model::Lead;

/// HubSpot keeps at most 65,536 characters of a note; the rest of this room is left for the
/// lines the CRM adapter adds (the owner decision, the marker).
const NOTE_BUDGET: usize = 60_000;
/// The longest turn kept whole in a note.
const NOTE_TURN_LIMIT: usize = 2_000;
/// The task's subject is a title: kept short.
const SUBJECT_LIMIT: usize = 200;

/// What a CRM records for one alert round of a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmNote {
    /// The note's body (HTML).
    pub html: String,
    /// The task's title (plain text, control characters removed).
    pub task_subject: String,
    /// The task's body (HTML): the question, why this owner, the deadline.
    pub task_html: String,
    /// When the round began: the escalation, else the capture.
    pub at: Option<Timestamp>,
    /// The SLA deadline: when the task is due.
    pub due: Option<Timestamp>,
    /// The company's domain, for a business e-mail address (never a free-mail provider's).
    pub company_domain: Option<String>,
    /// Plain ASCII text unique to the lead and the alert round, written into both bodies: a
    /// repeat finds a note or task an earlier attempt may have created by it.
    pub marker: String,
}

/// The note and task for the alert whose `headline` was rendered for `lead`.
pub fn crm_note(lead: &Lead, tier_label: &str, headline: &str) -> CrmNote {
    let f = facts(lead, tier_label);
    let capture = &lead.capture;
    let mut html = String::with_capacity(4_096);
    let _ = write!(html, "<p><strong>{}</strong></p>", encode_text(headline));
    if let Some(question) = capture.trigger_query.as_deref() {
        let _ = write!(
            html,
            "<p><strong>Asked:</strong> {}</p>",
            encode_text(question)
        );
    }
    let _ = write!(
        html,
        "<p><strong>Prospect:</strong> {}<br><strong>Company:</strong> {}</p>",
        encode_text(&f.prospect),
        encode_text(&f.company)
    );
    let _ = write!(
        html,
        "<p><strong>Tier:</strong> {} ({})",
        f.tier,
        encode_text(f.tier_label)
    );
    if let Some(q) = lead.qualification.as_ref() {
        let _ = write!(html, "<br><strong>Score:</strong> {}", q.score);
    }
    html.push_str("</p>");
    if let Some(q) = lead
        .qualification
        .as_ref()
        .filter(|q| !q.breakdown.is_empty())
    {
        html.push_str("<ul>");
        for item in &q.breakdown {
            let _ = write!(
                html,
                "<li>{} {:+}</li>",
                encode_text(&item.signal),
                item.points
            );
        }
        html.push_str("</ul>");
    }
    let _ = write!(
        html,
        "<p><strong>Why this owner:</strong> {}<br><strong>Owner:</strong> {}; claim within {} \
         (by {})</p>",
        encode_text(&f.why),
        encode_text(f.owner),
        f.sla,
        encode_text(&f.due)
    );
    for (label, value) in [
        ("Page", f.page),
        ("Flags", f.flags.as_str()),
        ("Missing", f.missing.as_str()),
    ] {
        if !value.is_empty() {
            let _ = write!(
                html,
                "<p><strong>{label}:</strong> {}</p>",
                encode_text(value)
            );
        }
    }
    let form = form_answers(lead);
    if !form.is_empty() {
        html.push_str("<p><strong>Form</strong></p><ul>");
        for (name, answer) in &form {
            let _ = write!(
                html,
                "<li><strong>{}:</strong> {}</li>",
                encode_text(name),
                encode_text(answer)
            );
        }
        html.push_str("</ul>");
    }
    let transcript_url = capture
        .conversation_transcript_url
        .as_deref()
        .filter(|u| u.starts_with("https://") && !u.chars().any(|c| c.is_control() || c == ' '));
    let turns = &capture.transcript;
    if !turns.is_empty() {
        let _ = write!(
            html,
            "<p><strong>Transcript</strong> ({} turns)</p><ul>",
            turns.len()
        );
        // The whole conversation while it fits; then the count of what was left out.
        for (shown, turn) in turns.iter().enumerate() {
            let mut item = String::with_capacity(turn.text.len().min(NOTE_TURN_LIMIT) + 64);
            let _ = write!(
                item,
                "<li><strong>{}:</strong> {}</li>",
                encode_text(&truncated(&turn.role, 40)),
                encode_text(&truncated(&turn.text, NOTE_TURN_LIMIT))
            );
            if html.len() + item.len() > NOTE_BUDGET {
                let _ = write!(
                    html,
                    "<li>({} more turns not shown)</li>",
                    turns.len() - shown
                );
                break;
            }
            html.push_str(&item);
        }
        html.push_str("</ul>");
    }
    if let Some(url) = transcript_url {
        let _ = write!(
            html,
            "<p><a href=\"{}\">Full transcript</a></p>",
            encode_double_quoted_attribute(url)
        );
    }
    let _ = write!(html, "<p>Lead id: {}</p>", encode_text(&lead.id));

    let name = terminal_safe(&truncated(prospect_name(lead), 80));
    let task_subject = truncated(
        &format!(
            "Respond to {name}: tier-{} lead ({}), claim within {}",
            f.tier,
            terminal_safe(f.tier_label),
            f.sla
        ),
        SUBJECT_LIMIT,
    )
    .into_owned();
    let mut task_html = String::with_capacity(512);
    if let Some(question) = capture.trigger_query.as_deref() {
        let _ = write!(
            task_html,
            "<p><strong>Asked:</strong> {}</p>",
            encode_text(&truncated(question, NOTE_TURN_LIMIT))
        );
    }
    let _ = write!(
        task_html,
        "<p><strong>Why this owner:</strong> {}<br><strong>Due:</strong> {}</p>",
        encode_text(&f.why),
        encode_text(&f.due)
    );

    let round = lead.alert_round();
    let marker = format!(
        "[leadrelay {} {}]",
        lead.id,
        match round.trim_end_matches(':') {
            "" => "alert",
            escalation => escalation,
        }
    );
    CrmNote {
        html,
        task_subject,
        task_html,
        at: lead
            .escalations
            .last()
            .map(|step| step.at)
            .or(lead.timeline.captured_at),
        due: lead.timeline.sla_due_at,
        company_domain: lead
            .enrichment
            .as_ref()
            .filter(|e| !e.free_mail)
            .and_then(|e| e.domain.clone()),
        marker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(extra: serde_json::Value) -> Lead {
        let mut value = serde_json::json!({
            "id": "lead-7", "source": "website", "event_id": "e", "trace_id": "t",
            "state": "routed", "incomplete": false,
            "timeline": {"captured_at": "2026-11-23T10:00:00Z",
                         "sla_due_at": "2026-11-23T10:05:00Z"},
            "capture": {"event": "lead_capture", "captured_email": "jane@acme.co.uk",
                        "name": "Jane <script>alert(1)</script> Doe",
                        "trigger_query": "Price for <b>40</b> seats & SSO?",
                        "conversation_transcript_url": "https://t.example/c?a=1&b=\"2\"",
                        "transcript": [
                            {"role": "visitor", "text": "<img src=x onerror=alert(1)>"},
                            {"role": "bot", "text": "Sure & welcome"}]},
            "enrichment": {"domain": "acme.co.uk", "company": "Acme & Co", "free_mail": false,
                           "sources": []},
            "qualification": {"tier": 1, "score": 85, "sla_minutes": 5,
                              "breakdown": [{"signal": "pricing page", "points": 40},
                                            {"signal": "<free mail>", "points": -5}]},
            "assignment": {"owner": {"kind": "rep", "id": "bruno"}, "owner_name": "Bruno Keller",
                           "rule": "EMEA", "reason": "territory <GB>"}
        });
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (key, field) in extra {
                base.insert(key.clone(), field.clone());
            }
        }
        serde_json::from_value(value).expect("a lead")
    }

    #[test]
    fn the_note_carries_the_context_with_everything_the_prospect_typed_escaped() {
        let note = crm_note(&lead(serde_json::json!({})), "hot", "New tier-1 lead <x>");
        let html = &note.html;
        for expected in [
            "<p><strong>New tier-1 lead &lt;x&gt;</strong></p>",
            "<strong>Asked:</strong> Price for &lt;b&gt;40&lt;/b&gt; seats &amp; SSO?",
            "Jane &lt;script&gt;alert(1)&lt;/script&gt; Doe &lt;jane@acme.co.uk&gt;",
            "<strong>Company:</strong> Acme &amp; Co",
            "<strong>Tier:</strong> 1 (hot)<br><strong>Score:</strong> 85",
            "<li>pricing page +40</li><li>&lt;free mail&gt; -5</li>",
            "<strong>Why this owner:</strong> rule \"EMEA\": territory &lt;GB&gt;",
            "<strong>Owner:</strong> Bruno Keller; claim within 5 min (by 2026-11-23 10:05:00 UTC)",
            "<p><strong>Transcript</strong> (2 turns)</p>",
            "<li><strong>visitor:</strong> &lt;img src=x onerror=alert(1)&gt;</li>",
            "<li><strong>bot:</strong> Sure &amp; welcome</li>",
            "<a href=\"https://t.example/c?a=1&amp;b=&quot;2&quot;\">Full transcript</a>",
            "<p>Lead id: lead-7</p>",
        ] {
            assert!(html.contains(expected), "{expected:?} not in {html}");
        }
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert_eq!(
            note.task_subject,
            "Respond to Jane <script>alert(1)</script> Doe: tier-1 lead (hot), claim within 5 min"
        );
        assert!(note
            .task_html
            .contains("<strong>Asked:</strong> Price for &lt;b&gt;40&lt;/b&gt; seats &amp; SSO?"));
        assert!(note
            .task_html
            .contains("<strong>Due:</strong> 2026-11-23 10:05:00 UTC"));
        assert_eq!(note.marker, "[leadrelay lead-7 alert]");
        assert_eq!(note.company_domain.as_deref(), Some("acme.co.uk"));
        assert_eq!(note.due, "2026-11-23T10:05:00Z".parse().ok());
        assert_eq!(note.at, "2026-11-23T10:00:00Z".parse().ok());
    }

    #[test]
    fn an_escalation_round_has_its_own_marker_and_a_free_mail_domain_is_no_company() {
        let note = crm_note(
            &lead(serde_json::json!({
                "enrichment": {"domain": "gmail.com", "free_mail": true, "sources": []},
                "escalations": [{"level": 1, "at": "2026-11-23T10:06:00Z",
                                 "from": {"kind": "rep", "id": "bruno"},
                                 "to": {"kind": "rep", "id": "dana"},
                                 "missed": "2026-11-23T10:05:00Z"}]
            })),
            "hot",
            "Escalated",
        );
        assert_eq!(note.marker, "[leadrelay lead-7 esc1]");
        assert_eq!(note.company_domain, None);
        assert_eq!(note.at, "2026-11-23T10:06:00Z".parse().ok());
    }

    #[test]
    fn a_long_conversation_stays_within_hubspots_note_limit() {
        let turns: Vec<serde_json::Value> = (0..200)
            .map(|n| serde_json::json!({"role": "visitor", "text": format!("{n} {}", "<&>".repeat(700))}))
            .collect();
        let mut value = lead(serde_json::json!({}));
        value.capture.transcript =
            serde_json::from_value(serde_json::Value::Array(turns)).expect("turns");
        let note = crm_note(&value, "hot", "h");
        let chars = note.html.chars().count();
        assert!(chars <= NOTE_BUDGET + 200, "{chars}");
        assert!(
            note.html.contains("more turns not shown)</li>"),
            "cut marked"
        );
        assert!(note.html.ends_with("<p>Lead id: lead-7</p>"));
    }
}

//! What the machine-facing and short channels carry: the SMS text, the outbound webhook's
//! lead summary and the CRM contact. Plain data; each channel adds the recipient's claim link.

use serde::Serialize;
use serde_json::{json, Value};

use super::{prospect_name, Facts};
use crate::model::Lead;

/// Characters of the prospect's part kept however long the link: enough to recognise a name.
const MIN_ABOUT: usize = 20;

/// One SMS segment of GSM-7 characters.
pub const SMS_LIMIT: usize = 160;

/// The prospect-supplied parts of an SMS, already plain text (see [`sms_plain`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmsFacts {
    pub lead_id: String,
    pub tier: u8,
    pub name: String,
    pub company: String,
    pub question: String,
}

/// The prospect as a CRM contact (HubSpot property names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub email: Option<String>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub jobtitle: Option<String>,
}

/// GSM-7's basic characters beyond printable ASCII (each one septet); the ASCII characters
/// that need the escape table (`[]{}\~^|`) are left out, since each costs two.
const GSM_EXTRA: &str = "£¥èéùìòÇØøÅåÄÖÑÜßäöñüàÉÆæ¡¿§";

/// Plain text for an SMS: GSM-7 basic characters only, markup brackets and URL schemes
/// broken up, whitespace collapsed. Anything else becomes `?`, so the message stays one
/// GSM-7 segment instead of switching to UCS-2 (70 characters).
fn sms_plain(text: &str) -> String {
    let text = text.replace("://", " ");
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            c if c.is_whitespace() || c.is_control() => ' ',
            '<' | '>' | '[' | ']' | '{' | '}' | '\\' | '~' | '^' | '|' | '`' => ' ',
            c if c.is_ascii_graphic() || GSM_EXTRA.contains(c) => c,
            _ => '?',
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Cuts `text` to `limit` characters with `...` (GSM-7 has no ellipsis character).
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let keep: String = text.chars().take(limit.saturating_sub(3)).collect();
    format!("{}...", keep.trim_end())
}

pub(super) fn sms_facts(lead: &Lead, f: &Facts) -> SmsFacts {
    SmsFacts {
        lead_id: lead.id.clone(),
        tier: f.tier,
        name: sms_plain(prospect_name(lead)),
        company: sms_plain(
            lead.enrichment
                .as_ref()
                .and_then(|e| e.company.as_deref())
                .or(lead.capture.company.as_deref())
                .unwrap_or(""),
        ),
        question: sms_plain(lead.capture.trigger_query.as_deref().unwrap_or("")),
    }
}

/// The SMS a rep gets: who, from where, what they asked, and the claim link (or the lead id
/// when there is no link). The prospect's text is cut to keep one segment; the link never is.
pub fn sms_text(facts: &SmsFacts, claim_link: Option<&str>) -> String {
    let tail = match claim_link {
        Some(link) => format!(" Claim: {link}"),
        None => format!(" Lead {}", facts.lead_id),
    };
    let head = format!("Tier {}: ", facts.tier);
    let room = SMS_LIMIT.saturating_sub(head.chars().count() + tail.chars().count());
    let mut who = facts.name.clone();
    if !facts.company.is_empty() {
        who = format!("{who} ({})", facts.company);
    }
    let about = if facts.question.is_empty() {
        who
    } else {
        format!("{who}: {}", facts.question)
    };
    // Even a long link leaves the rep a name to recognise (the SMS then takes two segments).
    let about = cut(&about, room.max(MIN_ABOUT));
    format!("{head}{about}{tail}")
}

pub(super) fn contact(lead: &Lead) -> Contact {
    let capture = &lead.capture;
    let enrichment = lead.enrichment.as_ref();
    let name = enrichment
        .and_then(|e| e.name.as_deref())
        .or(capture.name.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let (firstname, lastname) = match name.map(|n| n.split_once(char::is_whitespace)) {
        Some(Some((first, last))) => (Some(first.to_owned()), Some(last.trim().to_owned())),
        Some(None) => (name.map(str::to_owned), None),
        None => (None, None),
    };
    Contact {
        email: capture.captured_email.clone(),
        firstname,
        lastname,
        company: enrichment
            .and_then(|e| e.company.clone())
            .or_else(|| capture.company.clone()),
        phone: enrichment
            .and_then(|e| e.phone_e164.clone())
            .or_else(|| capture.phone.clone()),
        jobtitle: capture.job_title.clone(),
    }
}

/// The lead as an outbound webhook's receiver reads it (JSON: no escaping beyond JSON's).
pub(super) fn summary(lead: &Lead, f: &Facts, headline: &str) -> Value {
    let enrichment = lead.enrichment.as_ref();
    let qualification = lead.qualification.as_ref();
    json!({
        "lead_id": lead.id,
        "headline": headline,
        "prospect": contact(lead),
        "company": {
            "name": enrichment.and_then(|e| e.company.as_deref()),
            "domain": enrichment.and_then(|e| e.domain.as_deref()),
            "employees": enrichment.and_then(|e| e.employees),
            "industry": enrichment.and_then(|e| e.industry.as_deref()),
            "country": enrichment.and_then(|e| e.country.as_deref()),
        },
        "tier": f.tier,
        "tier_label": f.tier_label,
        "score": qualification.map(|q| q.score),
        "score_breakdown": qualification.map(|q| &q.breakdown),
        "sla_minutes": qualification.map(|q| q.sla_minutes),
        "sla_due_at": lead.timeline.sla_due_at,
        "captured_at": lead.timeline.captured_at,
        "trigger_question": lead.capture.trigger_query,
        "transcript_url": lead.capture.conversation_transcript_url,
        "escalation_level": lead.escalations.len(),
        "owner": {
            "kind": lead.assignment.as_ref().map(|a| match a.owner {
                crate::model::Owner::Rep(_) => "rep",
                crate::model::Owner::Queue(_) => "queue",
                crate::model::Owner::Pool(_) => "pool",
            }),
            "id": lead.assignment.as_ref().map(|a| a.owner.id()),
            "name": lead.assignment.as_ref().map(|a| a.owner_name.as_str()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_text_is_plain_gsm7_and_keeps_the_link_whole() {
        let facts = SmsFacts {
            lead_id: "lead-1".into(),
            tier: 1,
            name: sms_plain("<!channel> José *Ng* 😀"),
            company: sms_plain("Acme <script>"),
            question: sms_plain(&format!("[x](https://evil) {}", "why ".repeat(5_000))),
        };
        assert_eq!(facts.name, "!channel José *Ng* ?");
        let link = "https://relay.example/claim/lead-1?rep=bruno&expires=1&sig=abcdef";
        let text = sms_text(&facts, Some(link));
        assert!(text.ends_with(&format!(" Claim: {link}")), "{text}");
        assert!(text.chars().count() <= SMS_LIMIT, "{}", text.len());
        assert!(text.starts_with("Tier 1: !channel José"), "{text}");
        assert!(
            !text.contains("https://evil") && !text.contains('<'),
            "{text}"
        );
        assert!(text.contains("..."), "{text}");
    }
}

//! Alerts: what the owner reads, rendered once per lead for every channel.
//!
//! Everything the prospect typed is untrusted: it is escaped for Slack mrkdwn, and stripped of
//! control characters for the terminal, so a visitor can never ping `@channel`, inject a link,
//! or move a terminal's cursor.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::model::Lead;

/// Turns of the transcript shown inline; the rest is behind the transcript link.
const INLINE_TURNS: usize = 4;
/// Slack refuses section text over 3,000 characters.
const SLACK_SECTION_LIMIT: usize = 3000;
const TURN_LIMIT: usize = 400;

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
}

/// Escapes text for Slack mrkdwn: `&`, `<` and `>` only, as Slack documents.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Replaces control characters (ANSI escapes, bells, carriage returns) with spaces.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Cuts `text` to at most `limit` characters, marking the cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

struct Facts {
    owner: String,
    tier: u8,
    tier_label: String,
    sla_minutes: u32,
    due: String,
    prospect: String,
    company: String,
    why: String,
    score: String,
    page: String,
    flags: String,
    missing: String,
}

fn facts(lead: &Lead, tier_label: &str) -> Facts {
    let qualification = lead.qualification.as_ref();
    let enrichment = lead.enrichment.clone().unwrap_or_default();
    let owner = lead
        .assignment
        .as_ref()
        .map(|a| a.owner_name.clone())
        .unwrap_or_else(|| "unassigned".into());
    let name = lead.capture.name.as_deref().unwrap_or("Unknown visitor");
    let contact = [
        lead.capture.captured_email.as_deref(),
        lead.capture.phone.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let mut company = enrichment
        .company
        .clone()
        .unwrap_or_else(|| "company unknown".into());
    let details: Vec<String> = [
        enrichment.employees.map(|n| format!("{n} employees")),
        enrichment.industry.clone(),
        enrichment.country.clone(),
        enrichment.free_mail.then(|| "free-mail address".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        company = format!("{company} ({})", details.join(", "));
    }
    let why = lead
        .assignment
        .as_ref()
        .map(|a| format!("rule \"{}\": {}", a.rule, a.reason))
        .unwrap_or_default();
    let score = qualification
        .map(|q| {
            let parts: Vec<String> = q
                .breakdown
                .iter()
                .map(|item| format!("{} {:+}", item.signal, item.points))
                .collect();
            format!("{} ({})", q.score, parts.join(", "))
        })
        .unwrap_or_default();
    Facts {
        owner,
        tier: qualification.map(|q| q.tier).unwrap_or(0),
        tier_label: tier_label.to_owned(),
        sla_minutes: qualification.map(|q| q.sla_minutes).unwrap_or(0),
        due: lead
            .timeline
            .sla_due_at
            .map(format_time)
            .unwrap_or_default(),
        prospect: format!("{name} <{contact}>"),
        company,
        why,
        score,
        page: lead.capture.metadata.source_url.clone().unwrap_or_default(),
        flags: lead
            .flags
            .iter()
            .map(|f| f.code.clone())
            .chain(lead.incomplete.then(|| "incomplete".to_owned()))
            .collect::<Vec<_>>()
            .join(", "),
        missing: enrichment.missing.join(", "),
    }
}

fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn sla_text(minutes: u32) -> String {
    if minutes >= 120 && minutes.is_multiple_of(60) {
        format!("{} h", minutes / 60)
    } else {
        format!("{minutes} min")
    }
}

/// Renders the alert the owner of `lead` receives.
pub fn render(lead: &Lead, tier_label: &str) -> Alert {
    let f = facts(lead, tier_label);
    let headline = format!(
        "New tier-{} lead ({}) for {}: claim within {} (by {})",
        f.tier,
        f.tier_label,
        f.owner,
        sla_text(f.sla_minutes),
        f.due
    );
    let turns = &lead.capture.transcript;
    let shown = &turns[turns.len().saturating_sub(INLINE_TURNS)..];

    // Plain text: every prospect-supplied string goes through terminal_safe.
    let mut text = String::new();
    text.push_str(&headline);
    text.push('\n');
    let mut line = |label: &str, value: &str| {
        if !value.is_empty() {
            text.push_str(&format!("  {label:<10} {}\n", terminal_safe(value)));
        }
    };
    line("Prospect", &f.prospect);
    line("Company", &f.company);
    line("Asked", lead.capture.trigger_query.as_deref().unwrap_or(""));
    line("Page", &f.page);
    line("Why you", &f.why);
    line("Score", &f.score);
    line("Flags", &f.flags);
    line("Missing", &f.missing);
    if !shown.is_empty() {
        text.push_str(&format!(
            "  Transcript (last {} of {} turns):\n",
            shown.len(),
            turns.len()
        ));
        for turn in shown {
            text.push_str(&format!(
                "    {}: {}\n",
                terminal_safe(&turn.role),
                terminal_safe(&truncate(&turn.text, TURN_LIMIT))
            ));
        }
    }
    if let Some(url) = &lead.capture.conversation_transcript_url {
        text.push_str(&format!("  Full transcript: {}\n", terminal_safe(url)));
    }
    text.push_str(&format!("  Lead id: {}\n", lead.id));

    Alert {
        lead_id: lead.id.clone(),
        slack: slack_payload(lead, &f, &headline, shown),
        headline,
        text,
    }
}

fn slack_payload(lead: &Lead, f: &Facts, headline: &str, shown: &[crate::model::Turn]) -> Value {
    let section = |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_SECTION_LIMIT)}});
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("Tier-{} lead for {}", f.tier, f.owner), 150)}}),
        section(format!(
            "*{}*\n{}\n*SLA:* claim within {} (by {})",
            slack_escape(&f.prospect),
            slack_escape(&f.company),
            sla_text(f.sla_minutes),
            slack_escape(&f.due)
        )),
    ];
    if let Some(question) = &lead.capture.trigger_query {
        blocks.push(section(format!("*Asked:* {}", slack_escape(question))));
    }
    let mut context = vec![
        format!("*Why you:* {}", slack_escape(&f.why)),
        format!("*Score:* {}", slack_escape(&f.score)),
    ];
    if !f.page.is_empty() {
        context.push(format!("*Page:* {}", slack_escape(&f.page)));
    }
    if !f.flags.is_empty() {
        context.push(format!("*Flags:* {}", slack_escape(&f.flags)));
    }
    if !f.missing.is_empty() {
        context.push(format!("*Missing:* {}", slack_escape(&f.missing)));
    }
    blocks.push(section(context.join("\n")));
    if !shown.is_empty() {
        let turns: Vec<String> = shown
            .iter()
            .map(|t| {
                format!(
                    "*{}:* {}",
                    slack_escape(&t.role),
                    slack_escape(&truncate(&t.text, TURN_LIMIT))
                )
            })
            .collect();
        blocks.push(section(turns.join("\n")));
    }
    if let Some(url) = &lead.capture.conversation_transcript_url {
        if url.starts_with("https://") {
            // Inside <url|label> only the three entities matter; a `|` would split the link.
            blocks.push(section(format!(
                "<{}|Full transcript>",
                slack_escape(url).replace('|', "%7C")
            )));
        }
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("lead `{}`", lead.id)}]}));
    json!({"text": slack_escape(headline), "blocks": blocks})
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
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
    }
}

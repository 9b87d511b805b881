//! A routing decision as a person reads it: each rule tried and why it did or did not match,
//! the after-hours policy, and for each step of the fallback chain every candidate rep with
//! the reason they were or were not picked.

use std::fmt::Write;

use crate::model::{Assignment, Lead};

pub fn explain_text(lead: &Lead, assignment: &Assignment) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_explanation(&mut out, lead, assignment);
    out
}

fn write_explanation(out: &mut String, lead: &Lead, a: &Assignment) -> std::fmt::Result {
    let e = lead.enrichment.clone().unwrap_or_default();
    let q = lead.qualification.as_ref();
    writeln!(
        out,
        "Lead {}: {} from {}, tier {} (score {}), company {}, country {}, employees {}, industry {}",
        lead.id,
        lead.event(),
        lead.source,
        q.map(|q| q.tier.to_string()).unwrap_or_else(|| "?".into()),
        q.map(|q| q.score.to_string()).unwrap_or_else(|| "?".into()),
        e.company.as_deref().unwrap_or("unknown"),
        e.country.as_deref().unwrap_or("unknown"),
        e.employees.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into()),
        e.industry.as_deref().unwrap_or("unknown"),
    )?;
    // Where the routing inputs came from: the table, a provider, or the prospect's form.
    if !e.origins.is_empty() {
        let items: Vec<String> = e
            .origins
            .iter()
            .map(|(field, origin)| format!("{field} from {origin}"))
            .collect();
        writeln!(out, "Inputs: {}", items.join(", "))?;
    }
    // Why it scored what it did, and what enrichment could and could not learn.
    if let Some(q) = q {
        let items: Vec<String> = q
            .breakdown
            .iter()
            .map(|item| format!("{} {:+}", item.signal, item.points))
            .collect();
        writeln!(out, "Score {}: {}", q.score, items.join(", "))?;
    }
    if !e.providers.is_empty() || !e.missing.is_empty() {
        write!(out, "Enrichment {}", e.status.as_str())?;
        if !e.missing.is_empty() {
            write!(out, ", missing {}", e.missing.join(", "))?;
        }
        writeln!(out)?;
        for report in &e.providers {
            let detail = if report.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", report.detail)
            };
            writeln!(
                out,
                "  {} {}{detail} ({} ms)",
                report.provider,
                report.outcome.as_str(),
                report.elapsed_ms
            )?;
        }
    }
    let Some(trace) = &a.trace else {
        writeln!(
            out,
            "Owner: {} ({}) by rule {:?}: {}",
            a.owner_name, a.owner, a.rule, a.reason
        )?;
        return writeln!(out, "(routed before decisions were traced)");
    };
    if let Some(at) = trace.decided_at {
        writeln!(out, "Decided at {at}")?;
    }
    if !trace.topics.is_empty() {
        writeln!(out, "Topics: {}", trace.topics.join(", "))?;
    }
    writeln!(out, "\nRules, in order (first match wins):")?;
    for trial in &trace.rules {
        let mark = if trial.matched { "MATCH" } else { "no   " };
        writeln!(out, "  {mark} {:?}: {}", trial.rule, trial.detail)?;
    }
    if trace.rules_omitted > 0 {
        writeln!(
            out,
            "  ... and {} more rules (not kept on the lead)",
            trace.rules_omitted
        )?;
    }
    if let Some(open) = &lead.merged_into {
        writeln!(
            out,
            "  -> not tried: the same person's lead {open} is open; merged into it ({})",
            a.reason
        )?;
    }
    if a.rule == "fallback" {
        writeln!(out, "  -> no rule matched: the default queue")?;
    }
    if let Some(note) = &trace.after_hours {
        writeln!(
            out,
            "\nAfter hours (team {}, policy {}): {}",
            note.team, note.policy, note.detail
        )?;
    }
    writeln!(out, "\nFallback chain:")?;
    for step in &trace.steps {
        writeln!(out, "  {}: {}", step.target, step.outcome)?;
        for c in &step.candidates {
            let mark = if c.picked { "+" } else { "-" };
            writeln!(out, "      {mark} {:<12} {}", c.rep, c.reason)?;
        }
    }
    write!(out, "\nOwner: {} ({})", a.owner_name, a.owner)?;
    if let Some(pool) = &a.pool {
        write!(out, " from pool {pool}")?;
    }
    writeln!(out, ", by rule {:?}", a.rule)?;
    if let Some(until) = a.held_until {
        writeln!(out, "Alert held until {until}; the SLA clock starts then.")?;
    }
    Ok(())
}

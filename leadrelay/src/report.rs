//! `leadrelay report` and `leadrelay report audit`: the figures of
//! [`leadrelay_shared::report`] as an aligned table, CSV or JSON.

use std::io::Write;

use anyhow::Context as _;
use leadrelay_shared::report::{Audit, Group, SpeedToLead, Spread};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// A duration for people: `42s`, `4m10s`, `1h05m`, `2d03h`.
pub fn human(secs: Option<i64>) -> String {
    let Some(secs) = secs else {
        return "-".into();
    };
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn spread(s: &Spread) -> String {
    format!("{} / {}", human(s.p50_secs), human(s.p90_secs))
}

/// Rows of cells printed as columns padded to their widest cell.
fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            // The first column (the group) reads left-aligned, figures right-aligned.
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

const GROUP_HEADER: [&str; 14] = [
    "leads",
    "contacted",
    "SLA met",
    "system p50/p90",
    "ack p50/p90",
    "human p50/p90",
    "first resp. p50/p90",
    "to meeting p50",
    "booked",
    "held",
    "escalated",
    "reassigned",
    "misrouted",
    "won",
];

fn group_row(g: &Group) -> Vec<String> {
    vec![
        g.key.clone(),
        g.leads.to_string(),
        percent(g.contact_rate),
        percent(g.sla_compliance),
        spread(&g.system),
        spread(&g.acknowledgement),
        spread(&g.human),
        spread(&g.first_response),
        human(g.time_to_meeting.p50_secs),
        percent(g.meeting_booked_rate),
        percent(g.meeting_held_rate),
        g.escalated.to_string(),
        g.reassigned.to_string(),
        g.misrouted.to_string(),
        percent(g.won_rate),
    ]
}

/// Prints the report in `format`.
pub fn print(report: &SpeedToLead, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        Format::Csv => write_csv(report, out)?,
        Format::Table => write_table(report, out)?,
    }
    Ok(())
}

fn write_table(r: &SpeedToLead, out: &mut dyn Write) -> anyhow::Result<()> {
    let by = serde_json::to_value(r.by)?;
    let hours = serde_json::to_value(r.hours)?;
    writeln!(
        out,
        "Speed to lead, leads captured {} to {} ({} hours), by {}",
        r.from,
        r.to,
        hours.as_str().unwrap_or_default(),
        by.as_str().unwrap_or_default()
    )?;
    if r.merged_excluded > 0 {
        writeln!(
            out,
            "{} merged lead(s) left out (counted with the lead they joined)",
            r.merged_excluded
        )?;
    }
    writeln!(out)?;
    let mut rows = vec![std::iter::once(by.as_str().unwrap_or_default().to_owned())
        .chain(GROUP_HEADER.iter().map(|h| (*h).to_owned()))
        .collect::<Vec<_>>()];
    rows.extend(r.groups.iter().map(group_row));
    rows.push(group_row(&r.totals));
    table(out, &rows)?;

    writeln!(
        out,
        "\nSLA compliance by tier (first claim or touch within the tier's SLA)"
    )?;
    let mut rows = vec![[
        "tier",
        "SLA",
        "leads",
        "met",
        "missed",
        "pending",
        "compliance",
    ]
    .map(str::to_owned)
    .to_vec()];
    for t in &r.sla_by_tier {
        rows.push(vec![
            t.tier
                .map(|t| t.to_string())
                .unwrap_or_else(|| "(none)".into()),
            t.sla_minutes
                .map(|m| format!("{m} min"))
                .unwrap_or_else(|| "-".into()),
            t.leads.to_string(),
            t.met.to_string(),
            t.missed.to_string(),
            t.pending.to_string(),
            percent(t.compliance),
        ]);
    }
    table(out, &rows)?;

    writeln!(
        out,
        "\nFirst response (capture to first touch) and won rate"
    )?;
    let mut rows = vec![[
        "response",
        "leads",
        "share",
        "with outcome",
        "won",
        "won rate",
    ]
    .map(str::to_owned)
    .to_vec()];
    for b in &r.response_buckets {
        rows.push(vec![
            b.bucket.to_owned(),
            b.leads.to_string(),
            percent(b.share),
            b.outcomes.to_string(),
            b.won.to_string(),
            percent(b.won_rate),
        ]);
    }
    table(out, &rows)?;

    writeln!(
        out,
        "\nRouting accuracy (1 - misrouted / routed by the rule)"
    )?;
    let mut rows = vec![["rule", "leads", "misrouted", "accuracy"]
        .map(str::to_owned)
        .to_vec()];
    for a in &r.routing_accuracy {
        rows.push(vec![
            a.rule.clone(),
            a.leads.to_string(),
            a.misrouted.to_string(),
            percent(a.accuracy),
        ]);
    }
    table(out, &rows)?;

    let h = &r.handoff;
    writeln!(
        out,
        "\nHandoff completeness: {} of {} notified lead(s) had {} ({})",
        h.complete,
        h.notified,
        h.fields.join(", "),
        percent(h.completeness)
    )?;
    for (field, missing) in h.missing.iter().filter(|(_, n)| **n > 0) {
        writeln!(out, "  without {field}: {missing}")?;
    }
    Ok(())
}

fn write_csv(r: &SpeedToLead, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    let spreads = [
        "system",
        "acknowledgement",
        "human",
        "first_response",
        "time_to_meeting",
    ];
    let mut header: Vec<String> = [
        "group",
        "leads",
        "notified",
        "claimed",
        "contacted",
        "meetings_booked",
        "meetings_held",
        "contact_rate",
        "meeting_booked_rate",
        "meeting_held_rate",
        "sla_met",
        "sla_missed",
        "sla_pending",
        "sla_compliance",
        "escalated",
        "reassigned",
        "misrouted",
        "outcomes",
        "won",
        "won_rate",
    ]
    .map(str::to_owned)
    .to_vec();
    for name in spreads {
        for part in ["count", "p50_secs", "p90_secs"] {
            header.push(format!("{name}_{part}"));
        }
    }
    writer.write_record(&header)?;
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    let secs = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for g in r.groups.iter().chain(std::iter::once(&r.totals)) {
        let mut row = vec![
            g.key.clone(),
            g.leads.to_string(),
            g.notified.to_string(),
            g.claimed.to_string(),
            g.contacted.to_string(),
            g.meetings_booked.to_string(),
            g.meetings_held.to_string(),
            opt(g.contact_rate),
            opt(g.meeting_booked_rate),
            opt(g.meeting_held_rate),
            g.sla_met.to_string(),
            g.sla_missed.to_string(),
            g.sla_pending.to_string(),
            opt(g.sla_compliance),
            g.escalated.to_string(),
            g.reassigned.to_string(),
            g.misrouted.to_string(),
            g.outcomes.to_string(),
            g.won.to_string(),
            opt(g.won_rate),
        ];
        for s in [
            &g.system,
            &g.acknowledgement,
            &g.human,
            &g.first_response,
            &g.time_to_meeting,
        ] {
            row.extend([s.count.to_string(), secs(s.p50_secs), secs(s.p90_secs)]);
        }
        writer.write_record(&row)?;
    }
    writer.flush().context("writing CSV")?;
    Ok(())
}

/// Prints the handoff audit in `format`.
pub fn print_audit(audit: &Audit, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, audit)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(["finding", "lead_id", "owner", "detail", "at"])?;
            for u in &audit.untouched {
                writer.write_record([
                    "untouched",
                    &u.lead_id,
                    &u.owner,
                    &format!("overdue {}", human(Some(u.overdue_secs))),
                    &u.sla_deadline.to_string(),
                ])?;
            }
            for m in &audit.misrouted {
                writer.write_record([
                    "misrouted",
                    &m.lead_id,
                    m.owner.as_deref().unwrap_or(""),
                    &m.misroutes.join("; "),
                    "",
                ])?;
            }
            for u in &audit.unmatched {
                writer.write_record([
                    "unmatched",
                    u.lead_id.as_deref().unwrap_or(""),
                    "",
                    &format!("{} via {}", u.kind, u.via),
                    &u.received_at.to_string(),
                ])?;
            }
            writer.flush().context("writing CSV")?;
        }
        Format::Table => {
            writeln!(
                out,
                "Handoff audit, leads captured {} to {}",
                audit.from, audit.to
            )?;
            writeln!(
                out,
                "\nAssigned, past their SLA and never touched: {}",
                audit.untouched.len()
            )?;
            let mut rows = vec![["lead", "owner", "state", "tier", "claimed by", "overdue"]
                .map(str::to_owned)
                .to_vec()];
            for u in &audit.untouched {
                rows.push(vec![
                    u.lead_id.clone(),
                    u.owner.clone(),
                    u.state.to_string(),
                    u.tier.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                    u.claimed_by.clone().unwrap_or_else(|| "-".into()),
                    human(Some(u.overdue_secs)),
                ]);
            }
            table(out, &rows)?;
            writeln!(
                out,
                "\nMis-routed (\"not mine\"): {}",
                audit.misrouted.len()
            )?;
            let mut rows = vec![["lead", "not mine", "owner now", "touched"]
                .map(str::to_owned)
                .to_vec()];
            for m in &audit.misrouted {
                rows.push(vec![
                    m.lead_id.clone(),
                    m.misroutes.join("; "),
                    m.owner.clone().unwrap_or_else(|| "-".into()),
                    if m.touched { "yes" } else { "no" }.into(),
                ]);
            }
            table(out, &rows)?;
            writeln!(
                out,
                "\nActivity events that matched no lead: {}",
                audit.unmatched.len()
            )?;
            let mut rows = vec![["received", "kind", "via", "lead id", "e-mail"]
                .map(str::to_owned)
                .to_vec()];
            for u in &audit.unmatched {
                rows.push(vec![
                    u.received_at.to_string(),
                    u.kind.to_owned(),
                    u.via.clone(),
                    u.lead_id.clone().unwrap_or_else(|| "-".into()),
                    u.email.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            table(out, &rows)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_for_people() {
        assert_eq!(human(None), "-");
        assert_eq!(human(Some(42)), "42s");
        assert_eq!(human(Some(250)), "4m10s");
        assert_eq!(human(Some(3900)), "1h05m");
        assert_eq!(human(Some(2 * 86_400 + 3 * 3600)), "2d03h");
    }

    #[test]
    fn tables_are_aligned() {
        let mut out = Vec::new();
        table(
            &mut out,
            &[
                vec!["rep".into(), "leads".into()],
                vec!["alice".into(), "7".into()],
            ],
        )
        .expect("written");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "rep    leads\nalice      7\n"
        );
    }
}

//! The scheduled speed-to-lead digest: when one is due, the periods it covers, its figures
//! (from two [`SpeedToLead`] reports and the audit's counts) and its renderings for Slack and
//! e-mail. Pure: the stage reads the facts and sends the result.
//!
//! A digest names reps, counts and durations only: never a prospect's address, name or
//! company, so it can go to a channel or a list wider than the lead's owner.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use serde::Serialize;

use super::figures::{Dimension, SpeedToLead};
use crate::config::DigestConfig;
use crate::model::{Cadence, DigestRequest};
use crate::render::slack_escape;

/// A digest found due this long after its scheduled time is not sent: a server down for days
/// sends no stale digest when it comes back.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_hours(12);

/// `[from, to)`: the leads captured in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// What one digest covers, and the period before it (for the changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub current: Window,
    pub previous: Window,
    /// The local days the current period covers, first and last.
    pub first_day: Date,
    pub last_day: Date,
}

fn days(cadence: Cadence) -> i64 {
    match cadence {
        Cadence::Daily => 1,
        Cadence::Weekly => 7,
    }
}

fn days_before(date: Date, n: i64) -> Result<Date, jiff::Error> {
    date.checked_sub(Span::new().days(n))
}

/// Local midnight of `date` (where midnight does not exist, the day's first instant).
fn midnight(date: Date, tz: &TimeZone) -> Result<Timestamp, jiff::Error> {
    Ok(date.to_zoned(tz.clone())?.start_of_day()?.timestamp())
}

/// The periods of `request`: daily, the previous local day; weekly, the seven local days
/// before the scheduled day. Each ends at the scheduled day's local midnight, so a day that
/// gains or loses an hour to daylight saving counts what the clock really ran.
pub fn periods(request: &DigestRequest, tz: &TimeZone) -> Result<Periods, jiff::Error> {
    let n = days(request.cadence);
    let end = request.date;
    let start = days_before(end, n)?;
    let before = days_before(end, 2 * n)?;
    Ok(Periods {
        current: Window {
            from: midnight(start, tz)?,
            to: midnight(end, tz)?,
        },
        previous: Window {
            from: midnight(before, tz)?,
            to: midnight(start, tz)?,
        },
        first_day: start,
        last_day: days_before(end, 1)?,
    })
}

/// The latest scheduled instant of `cadence` at or before `now`, with its local day.
fn latest(
    weekday: Option<Weekday>,
    time: Time,
    tz: &TimeZone,
    now: Timestamp,
) -> Option<(Date, Timestamp)> {
    let today = now.to_zoned(tz.clone()).date();
    (0..=7).find_map(|back| {
        let day = days_before(today, back).ok()?;
        if weekday.is_some_and(|w| day.weekday() != w) {
            return None;
        }
        // A time in a spring-forward gap runs at the first instant after it; in an autumn
        // fold, at the first of the two.
        let at = day.to_datetime(time).to_zoned(tz.clone()).ok()?.timestamp();
        (at <= now).then_some((day, at))
    })
}

/// The digests whose latest scheduled time is past at `now` and at most [`STALE_AFTER`] ago,
/// with that time. Whether each was queued already is the caller's (a receipt per digest).
pub fn due(config: &DigestConfig, now: Timestamp) -> Vec<(DigestRequest, Timestamp)> {
    let schedules = [
        config.daily_at.map(|time| (Cadence::Daily, None, time)),
        config
            .weekly_at
            .map(|(day, time)| (Cadence::Weekly, Some(day), time)),
    ];
    schedules
        .into_iter()
        .flatten()
        .filter_map(|(cadence, weekday, time)| {
            let (date, at) = latest(weekday, time, &config.tz, now)?;
            (now.duration_since(at) <= STALE_AFTER).then_some((DigestRequest { cadence, date }, at))
        })
        .collect()
}

/// The audit's counts a digest shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditCounts {
    /// Leads of the period with an owner, past their SLA and never touched.
    pub untouched: u64,
    /// Activity events received in the period that matched no lead.
    pub unmatched: u64,
}

/// A rep among the slowest to respond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlowRep {
    pub rep: String,
    pub name: String,
    /// Leads with a first response (the median is over these).
    pub responses: u64,
    pub p50_secs: i64,
}

/// The digest's figures. Changes are against the period before; `None` where either period
/// lacks the figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub cadence: Cadence,
    pub first_day: Date,
    pub last_day: Date,
    pub timezone: String,
    pub leads: u64,
    /// The previous period's leads; `None` when it had none (nothing to compare with).
    pub previous_leads: Option<u64>,
    /// (leads − previous) / previous.
    pub leads_change: Option<f64>,
    pub first_response_p50_secs: Option<i64>,
    pub first_response_p50_change_secs: Option<i64>,
    pub first_response_p90_secs: Option<i64>,
    pub first_response_p90_change_secs: Option<i64>,
    pub sla_compliance: Option<f64>,
    /// In percentage points.
    pub sla_compliance_change: Option<f64>,
    pub tier1_compliance: Option<f64>,
    pub tier1_compliance_change: Option<f64>,
    pub contact_rate: Option<f64>,
    pub meetings_booked: u64,
    /// Leads that missed their SLA.
    pub sla_breaches: u64,
    pub slowest: Vec<SlowRep>,
    pub untouched: u64,
    pub unmatched: u64,
}

/// The fewest first responses a rep needs to be ranked among the slowest: a median of one or
/// two responses says little.
pub const SLOWEST_MIN_RESPONSES: u64 = 3;

fn tier1(report: &SpeedToLead) -> Option<f64> {
    report
        .sla_by_tier
        .iter()
        .find(|t| t.tier == Some(1))
        .and_then(|t| t.compliance)
}

fn points(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some((now? - before?) * 100.0)
}

fn secs_change(now: Option<i64>, before: Option<i64>) -> Option<i64> {
    Some(now? - before?)
}

/// The digest of `current` against `previous` (both cut by rep, on the wall clock; a previous
/// period without leads, or none, gives no changes). `rep_name` names a configured rep and
/// answers `None` for anything else (a queue, a pool, an unassigned lead), which is never
/// ranked among the slowest.
pub fn digest(
    request: &DigestRequest,
    current: &SpeedToLead,
    previous: Option<&SpeedToLead>,
    audit: AuditCounts,
    config: &DigestConfig,
    rep_name: &dyn Fn(&str) -> Option<String>,
) -> Digest {
    let previous = previous.filter(|p| p.totals.leads > 0);
    let now = &current.totals;
    let before = previous.map(|p| &p.totals);
    let mut slowest: Vec<SlowRep> = if current.by == Dimension::Rep {
        current
            .groups
            .iter()
            .filter(|g| g.first_response.count >= SLOWEST_MIN_RESPONSES)
            .filter_map(|g| {
                Some(SlowRep {
                    name: rep_name(&g.key)?,
                    rep: g.key.clone(),
                    responses: g.first_response.count,
                    p50_secs: g.first_response.p50_secs?,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    slowest.sort_by(|a, b| b.p50_secs.cmp(&a.p50_secs).then(a.rep.cmp(&b.rep)));
    slowest.truncate(config.slowest);
    let n = days(request.cadence);
    Digest {
        cadence: request.cadence,
        first_day: days_before(request.date, n).unwrap_or(request.date),
        last_day: days_before(request.date, 1).unwrap_or(request.date),
        timezone: config.timezone.clone(),
        leads: now.leads,
        previous_leads: before.map(|b| b.leads),
        leads_change: before.map(|b| (now.leads as f64 - b.leads as f64) / b.leads as f64),
        first_response_p50_secs: now.first_response.p50_secs,
        first_response_p50_change_secs: secs_change(
            now.first_response.p50_secs,
            before.and_then(|b| b.first_response.p50_secs),
        ),
        first_response_p90_secs: now.first_response.p90_secs,
        first_response_p90_change_secs: secs_change(
            now.first_response.p90_secs,
            before.and_then(|b| b.first_response.p90_secs),
        ),
        sla_compliance: now.sla_compliance,
        sla_compliance_change: points(now.sla_compliance, before.and_then(|b| b.sla_compliance)),
        tier1_compliance: tier1(current),
        tier1_compliance_change: points(tier1(current), previous.and_then(tier1)),
        contact_rate: now.contact_rate,
        meetings_booked: now.meetings_booked,
        sla_breaches: now.sla_missed,
        slowest,
        untouched: audit.untouched,
        unmatched: audit.unmatched,
    }
}

/// `45 s`, `12 min`, `2 h 5 min`, `2 d 13 h`.
pub fn short_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", (s + 30) / 60),
        s if s < 86_400 => {
            let minutes = (s + 30) / 60;
            match minutes % 60 {
                0 => format!("{} h", minutes / 60),
                m => format!("{} h {m} min", minutes / 60),
            }
        }
        s => {
            let hours = (s + 1800) / 3600;
            match hours % 24 {
                0 => format!("{} d", hours / 24),
                h => format!("{} d {h} h", hours / 24),
            }
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn signed_duration(secs: i64) -> String {
    match secs {
        0 => "no change".into(),
        s if s > 0 => format!("+{}", short_duration(s)),
        s => format!("-{}", short_duration(-s)),
    }
}

impl Digest {
    fn title(&self) -> &'static str {
        match self.cadence {
            Cadence::Daily => "Daily speed-to-lead digest",
            Cadence::Weekly => "Weekly speed-to-lead digest",
        }
    }

    fn previous_name(&self) -> &'static str {
        match self.cadence {
            Cadence::Daily => "the day before",
            Cadence::Weekly => "the week before",
        }
    }

    /// `Wed 25 Nov 2026`, or `Mon 23 Nov to Sun 29 Nov 2026`.
    pub fn period(&self) -> String {
        let day = |d: Date| d.strftime("%a %-d %b").to_string();
        let year = self.last_day.strftime("%Y");
        if self.first_day == self.last_day {
            format!("{} {year}", day(self.last_day))
        } else if self.first_day.year() == self.last_day.year() {
            format!("{} to {} {year}", day(self.first_day), day(self.last_day))
        } else {
            format!(
                "{} {} to {} {year}",
                day(self.first_day),
                self.first_day.strftime("%Y"),
                day(self.last_day)
            )
        }
    }

    /// `Mon 23 Nov to Sun 29 Nov 2026 (Europe/Berlin), compared with the week before`.
    fn context(&self) -> String {
        let comparison = match self.previous_leads {
            Some(_) => format!("compared with {}", self.previous_name()),
            None => format!("no leads {} to compare with", self.previous_name()),
        };
        format!("{} ({}), {comparison}", self.period(), self.timezone)
    }

    /// The figures as (label, value) rows, values in plain text; empty when there were no
    /// leads (the digest says so instead).
    fn rows(&self) -> Vec<(&'static str, String)> {
        if self.leads == 0 {
            return Vec::new();
        }
        let with = |value: String, change: Option<String>| match change {
            Some(change) => format!("{value} ({change})"),
            None => value,
        };
        let duration = |secs: Option<i64>, change: Option<i64>| match secs {
            Some(secs) => with(short_duration(secs), change.map(signed_duration)),
            None => "none yet".to_owned(),
        };
        let rate = |value: Option<f64>, change: Option<f64>, none: &str| match value {
            Some(value) => with(
                percent(value),
                change.map(|points| format!("{points:+.0} pts")),
            ),
            None => none.to_owned(),
        };
        vec![
            (
                "Leads",
                with(
                    self.leads.to_string(),
                    self.leads_change
                        .map(|change| format!("{:+.0}%", change * 100.0)),
                ),
            ),
            (
                "Median first response",
                duration(
                    self.first_response_p50_secs,
                    self.first_response_p50_change_secs,
                ),
            ),
            (
                "90th percentile first response",
                duration(
                    self.first_response_p90_secs,
                    self.first_response_p90_change_secs,
                ),
            ),
            (
                "SLA compliance",
                rate(
                    self.sla_compliance,
                    self.sla_compliance_change,
                    "none decided yet",
                ),
            ),
            (
                "Tier 1 SLA compliance",
                rate(
                    self.tier1_compliance,
                    self.tier1_compliance_change,
                    "no tier 1 lead decided",
                ),
            ),
            (
                "Contact rate",
                self.contact_rate.map(percent).unwrap_or_default(),
            ),
            ("Meetings booked", self.meetings_booked.to_string()),
            ("SLA breaches", self.sla_breaches.to_string()),
        ]
    }

    /// The audit's counts, shown whether or not there were leads.
    fn audit_rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Untouched past SLA", self.untouched.to_string()),
            ("Unmatched activity events", self.unmatched.to_string()),
        ]
    }

    fn no_leads(&self) -> String {
        match self.cadence {
            Cadence::Daily => "No leads were captured that day.".into(),
            Cadence::Weekly => "No leads were captured that week.".into(),
        }
    }

    /// The slowest reps as lines (the name as configured: escape before use).
    fn slowest_lines(&self) -> Vec<(String, String)> {
        self.slowest
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    format!(
                        "{} over {} responded leads",
                        short_duration(r.p50_secs),
                        r.responses
                    ),
                )
            })
            .collect()
    }

    fn summary(&self) -> String {
        let mut text = format!("{}, {}: ", self.title(), self.period());
        if self.leads == 0 {
            text.push_str(&self.no_leads());
        } else {
            text.push_str(&format!("{} leads", self.leads));
            if let Some(p50) = self.first_response_p50_secs {
                text.push_str(&format!(", median first response {}", short_duration(p50)));
            }
            if let Some(sla) = self.sla_compliance {
                text.push_str(&format!(", SLA {}", percent(sla)));
            }
        }
        text
    }

    /// The `chat.postMessage` payload without its channel: Block Kit with a plain fallback.
    /// Every configured name is escaped for mrkdwn.
    pub fn slack(&self) -> serde_json::Value {
        use serde_json::json;
        let field = |label: &str, value: &str| json!({ "type": "mrkdwn", "text": format!("*{label}*\n{}", slack_escape(value)) });
        let mut blocks = vec![
            json!({ "type": "header", "text": { "type": "plain_text", "text": self.title() } }),
            json!({ "type": "context", "elements": [
                { "type": "mrkdwn", "text": slack_escape(&self.context()) }
            ] }),
        ];
        if self.leads == 0 {
            blocks.push(
                json!({ "type": "section", "text": { "type": "mrkdwn", "text": self.no_leads() } }),
            );
        }
        let fields: Vec<serde_json::Value> = self
            .rows()
            .iter()
            .chain(self.audit_rows().iter())
            .map(|(label, value)| field(label, value))
            .collect();
        // A section holds at most ten fields.
        for chunk in fields.chunks(10) {
            blocks.push(json!({ "type": "section", "fields": chunk }));
        }
        if !self.slowest.is_empty() {
            let lines: Vec<String> = self
                .slowest_lines()
                .iter()
                .enumerate()
                .map(|(i, (name, figure))| format!("{}. {}: {}", i + 1, slack_escape(name), figure))
                .collect();
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn",
                "text": format!("*Slowest to respond (median first response)*\n{}", lines.join("\n")) } }));
        }
        json!({ "text": slack_escape(&self.summary()), "blocks": blocks })
    }

    pub fn email_subject(&self) -> String {
        format!("[leadrelay] {}: {}", self.title(), self.period())
    }

    /// The e-mail's plain-text part.
    pub fn email_text(&self) -> String {
        let mut text = format!("{}\n{}\n\n", self.title(), self.context());
        if self.leads == 0 {
            text.push_str(&self.no_leads());
            text.push_str("\n\n");
        }
        for (label, value) in self.rows().iter().chain(self.audit_rows().iter()) {
            text.push_str(&format!("{label}: {value}\n"));
        }
        if !self.slowest.is_empty() {
            text.push_str("\nSlowest to respond (median first response):\n");
            for (i, (name, figure)) in self.slowest_lines().iter().enumerate() {
                text.push_str(&format!("{}. {name}: {figure}\n", i + 1));
            }
        }
        text
    }

    /// The e-mail's HTML part; every text is escaped.
    pub fn email_html(&self) -> String {
        let e = |text: &str| html_escape::encode_text(text).into_owned();
        let mut html = format!(
            "<h2>{}</h2>\n<p>{}</p>\n",
            e(self.title()),
            e(&self.context())
        );
        if self.leads == 0 {
            html.push_str(&format!("<p>{}</p>\n", e(&self.no_leads())));
        }
        html.push_str("<table>\n");
        for (label, value) in self.rows().iter().chain(self.audit_rows().iter()) {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
                e(label),
                e(value)
            ));
        }
        html.push_str("</table>\n");
        if !self.slowest.is_empty() {
            html.push_str("<p>Slowest to respond (median first response):</p>\n<ol>\n");
            for (name, figure) in self.slowest_lines() {
                html.push_str(&format!("<li>{}: {}</li>\n", e(&name), e(&figure)));
            }
            html.push_str("</ol>\n");
        }
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeadState, Owner};
    use crate::report::{audit, speed_to_lead, Directory, Hours, LeadFacts, Params};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn berlin_weekly() -> DigestConfig {
        DigestConfig {
            daily: None,
            weekly: Some("mon 08:00".into()),
            timezone: "Europe/Berlin".into(),
            slack_channel: Some("C0DIGEST".into()),
            emails: Vec::new(),
            slowest: 3,
            daily_at: None,
            weekly_at: Some((Weekday::Monday, jiff::civil::time(8, 0, 0, 0))),
            tz: TimeZone::get("Europe/Berlin").expect("tz"),
        }
    }

    fn weekly(date: Date) -> DigestRequest {
        DigestRequest {
            cadence: Cadence::Weekly,
            date,
        }
    }

    #[test]
    fn periods_are_local_days_ending_at_the_scheduled_midnight() {
        let tz = TimeZone::get("Europe/Berlin").expect("tz");
        let week = periods(&weekly(jiff::civil::date(2026, 11, 30)), &tz).expect("periods");
        // Berlin is UTC+1 in November: local midnight is 23:00 UTC the day before.
        assert_eq!(
            week.current,
            Window {
                from: at("2026-11-22T23:00:00Z"),
                to: at("2026-11-29T23:00:00Z"),
            }
        );
        assert_eq!(
            week.previous,
            Window {
                from: at("2026-11-15T23:00:00Z"),
                to: at("2026-11-22T23:00:00Z"),
            }
        );
        assert_eq!(
            (week.first_day, week.last_day),
            (
                jiff::civil::date(2026, 11, 23),
                jiff::civil::date(2026, 11, 29)
            )
        );
        // Sunday 25 October 2026 gains an hour (CEST → CET): that day is 25 hours long.
        let day = DigestRequest {
            cadence: Cadence::Daily,
            date: jiff::civil::date(2026, 10, 26),
        };
        let day = periods(&day, &tz).expect("periods");
        assert_eq!(day.current.from, at("2026-10-24T22:00:00Z"));
        assert_eq!(day.current.to, at("2026-10-25T23:00:00Z"));
        assert_eq!(day.previous.from, at("2026-10-23T22:00:00Z"));
        assert_eq!(
            day.current.to.duration_since(day.current.from),
            SignedDuration::from_hours(25)
        );
    }

    #[test]
    fn a_digest_is_due_from_its_local_time_for_twelve_hours() {
        let config = berlin_weekly();
        let monday = jiff::civil::date(2026, 11, 30);
        // Monday 08:00 in Berlin is 07:00 UTC.
        assert_eq!(due(&config, at("2026-11-30T06:59:59Z")), []);
        assert_eq!(
            due(&config, at("2026-11-30T07:00:00Z")),
            [(weekly(monday), at("2026-11-30T07:00:00Z"))]
        );
        assert_eq!(
            due(&config, at("2026-11-30T19:00:00Z")),
            [(weekly(monday), at("2026-11-30T07:00:00Z"))]
        );
        // Down until the evening: no stale digest.
        assert_eq!(due(&config, at("2026-11-30T19:00:01Z")), []);
        assert_eq!(due(&config, at("2026-12-03T12:00:00Z")), []);

        // A daily time in the spring-forward gap (02:30 on 29 March 2026 does not exist in
        // Berlin) runs at the first instant after it, 03:30 CEST = 01:30 UTC.
        let daily = DigestConfig {
            daily_at: Some(jiff::civil::time(2, 30, 0, 0)),
            weekly_at: None,
            ..berlin_weekly()
        };
        assert_eq!(due(&daily, at("2026-03-29T01:29:59Z")), []);
        let sunday = DigestRequest {
            cadence: Cadence::Daily,
            date: jiff::civil::date(2026, 3, 29),
        };
        assert_eq!(
            due(&daily, at("2026-03-29T01:30:00Z")),
            [(sunday, at("2026-03-29T01:30:00Z"))]
        );
        // The day after, 02:30 CEST is 00:30 UTC.
        assert_eq!(
            due(&daily, at("2026-03-30T00:30:00Z"))
                .first()
                .map(|(r, at)| (r.date, *at)),
            Some((jiff::civil::date(2026, 3, 30), at("2026-03-30T00:30:00Z")))
        );
    }

    /// A lead `offset` seconds after `base`, owned by `owner`, responded to (first touch) or
    /// claimed after the given seconds.
    #[allow(clippy::too_many_arguments)]
    fn fact(
        id: &str,
        owner: Owner,
        tier: u8,
        base: Timestamp,
        offset: i64,
        touched: Option<i64>,
        claimed: Option<i64>,
        booked: Option<i64>,
    ) -> LeadFacts {
        let captured = base + SignedDuration::from_secs(offset);
        let after = |secs: Option<i64>| secs.map(|s| captured + SignedDuration::from_secs(s));
        LeadFacts {
            id: id.into(),
            source: "website".into(),
            state: LeadState::Notified,
            tier: Some(tier),
            sla_minutes: Some(if tier == 1 { 5 } else { 15 }),
            owner: Some(owner),
            rule: Some("UK".into()),
            routed_to: None,
            claimed_by: None,
            page: None,
            captured_at: Some(captured),
            held_until: None,
            notified_at: Some(captured + SignedDuration::from_secs(10)),
            claimed_at: after(claimed),
            first_touch_at: after(touched),
            meeting_booked_at: after(booked),
            meeting_held_at: None,
            closed_at: None,
            escalations: 0,
            reassigned: false,
            misroutes: Vec::new(),
            outcome: None,
            handoff: Vec::new(),
            merged: false,
        }
    }

    fn rep(id: &str) -> Owner {
        Owner::Rep(id.into())
    }

    /// Eight leads in the week of 23 November, four in the week before (see the table in
    /// each assertion's comment).
    fn two_weeks() -> Vec<LeadFacts> {
        let now = at("2026-11-24T10:00:00Z");
        let before = at("2026-11-17T10:00:00Z");
        let h = 3600;
        vec![
            // First responses 120, 600, 2400 (alice); 60, none (claimed), 900, 300 (bob);
            // 100 (a queue's). SLA missed: a3 (15 min), b3 (tier 1, 5 min).
            fact("a1", rep("alice"), 1, now, 0, Some(120), None, Some(h)),
            fact("a2", rep("alice"), 2, now, h, Some(600), None, None),
            fact("a3", rep("alice"), 2, now, 2 * h, Some(2400), None, None),
            fact("b1", rep("bob"), 2, now, 3 * h, Some(60), None, None),
            fact("b2", rep("bob"), 2, now, 4 * h, None, Some(120), None),
            fact("b3", rep("bob"), 1, now, 5 * h, Some(900), None, None),
            fact("b4", rep("bob"), 2, now, 6 * h, Some(300), None, None),
            fact(
                "q1",
                Owner::Queue("inbox".into()),
                2,
                now,
                7 * h,
                Some(100),
                None,
                None,
            ),
            // The week before: 300 met, 1200 missed, tier 1 240 met, never answered (missed).
            fact("p1", rep("alice"), 2, before, 0, Some(300), None, None),
            fact("p2", rep("bob"), 2, before, h, Some(1200), None, None),
            fact("p3", rep("bob"), 1, before, 2 * h, Some(240), None, None),
            fact("p4", rep("alice"), 2, before, 3 * h, None, None, None),
        ]
    }

    fn names(rep: &str) -> Option<String> {
        match rep {
            "alice" => Some("Alice <Ops> & Co".into()),
            "bob" => Some("Bob".into()),
            _ => None,
        }
    }

    fn report(facts: &[LeadFacts], window: Window, now: Timestamp) -> SpeedToLead {
        let params = Params {
            from: window.from,
            to: window.to,
            by: Dimension::Rep,
            hours: Hours::Wall,
            now,
        };
        speed_to_lead(facts, &params, &Directory::default(), &[])
    }

    fn built(
        facts: &[LeadFacts],
        with_previous: bool,
        config: &DigestConfig,
    ) -> (Digest, AuditCounts) {
        let request = weekly(jiff::civil::date(2026, 11, 30));
        let p = periods(&request, &config.tz).expect("periods");
        let now = at("2026-11-30T07:00:00Z");
        let current = report(facts, p.current, now);
        let previous = report(facts, p.previous, now);
        let audit = audit(facts, &[], p.current.from, p.current.to, now);
        let counts = AuditCounts {
            untouched: audit.untouched.len() as u64,
            unmatched: 2,
        };
        let previous = with_previous.then_some(&previous);
        (
            digest(&request, &current, previous, counts, config, &names),
            counts,
        )
    }

    #[test]
    fn the_figures_match_the_hand_computed_values() {
        let (d, counts) = built(&two_weeks(), true, &berlin_weekly());
        assert_eq!(
            counts.untouched, 1,
            "b2: claimed, never touched, past its SLA"
        );
        assert_eq!((d.leads, d.previous_leads), (8, Some(4)));
        assert_eq!(d.leads_change, Some(1.0));
        // Sorted 60 100 120 300 600 900 2400: p50 rank 4 = 300, p90 rank 7 = 2400. The week
        // before, 240 300 1200: p50 rank 2 = 300, p90 rank 3 = 1200.
        assert_eq!(
            (d.first_response_p50_secs, d.first_response_p50_change_secs),
            (Some(300), Some(0))
        );
        assert_eq!(
            (d.first_response_p90_secs, d.first_response_p90_change_secs),
            (Some(2400), Some(1200))
        );
        // 6 met of 8 (b2's claim counts); the week before 2 of 4.
        assert_eq!(d.sla_compliance, Some(0.75));
        assert_eq!(d.sla_compliance_change, Some(25.0));
        // Tier 1: a1 met, b3 missed; the week before p3 met.
        assert_eq!(d.tier1_compliance, Some(0.5));
        assert_eq!(d.tier1_compliance_change, Some(-50.0));
        assert_eq!(d.contact_rate, Some(0.875));
        assert_eq!((d.meetings_booked, d.sla_breaches), (1, 2));
        assert_eq!((d.untouched, d.unmatched), (1, 2));
        // alice 120 600 2400 → 600; bob 60 300 900 → 300; the queue is no rep.
        let slowest: Vec<(&str, i64, u64)> = d
            .slowest
            .iter()
            .map(|r| (r.rep.as_str(), r.p50_secs, r.responses))
            .collect();
        assert_eq!(slowest, [("alice", 600, 3), ("bob", 300, 3)]);
        let one = DigestConfig {
            slowest: 1,
            ..berlin_weekly()
        };
        assert_eq!(built(&two_weeks(), true, &one).0.slowest.len(), 1);

        let text = d.email_text();
        assert_eq!(
            text,
            "Weekly speed-to-lead digest\n\
             Mon 23 Nov to Sun 29 Nov 2026 (Europe/Berlin), compared with the week before\n\n\
             Leads: 8 (+100%)\n\
             Median first response: 5 min (no change)\n\
             90th percentile first response: 40 min (+20 min)\n\
             SLA compliance: 75% (+25 pts)\n\
             Tier 1 SLA compliance: 50% (-50 pts)\n\
             Contact rate: 88%\n\
             Meetings booked: 1\n\
             SLA breaches: 2\n\
             Untouched past SLA: 1\n\
             Unmatched activity events: 2\n\n\
             Slowest to respond (median first response):\n\
             1. Alice <Ops> & Co: 10 min over 3 responded leads\n\
             2. Bob: 5 min over 3 responded leads\n"
        );
        assert_eq!(
            d.email_subject(),
            "[leadrelay] Weekly speed-to-lead digest: Mon 23 Nov to Sun 29 Nov 2026"
        );
        let html = d.email_html();
        assert!(
            html.contains("<li>Alice &lt;Ops&gt; &amp; Co: 10 min over 3 responded leads</li>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><th align=\"left\">Leads</th><td>8 (+100%)</td></tr>"),
            "{html}"
        );

        let slack = d.slack();
        assert_eq!(
            slack["text"],
            "Weekly speed-to-lead digest, Mon 23 Nov to Sun 29 Nov 2026: 8 leads, median first \
             response 5 min, SLA 75%"
        );
        assert_eq!(
            slack["blocks"][0]["text"]["text"],
            "Weekly speed-to-lead digest"
        );
        let fields = &slack["blocks"][2]["fields"];
        assert_eq!(fields[0]["text"], "*Leads*\n8 (+100%)");
        assert_eq!(fields[3]["text"], "*SLA compliance*\n75% (+25 pts)");
        assert_eq!(fields[9]["text"], "*Unmatched activity events*\n2");
        assert_eq!(
            slack["blocks"][3]["text"]["text"],
            "*Slowest to respond (median first response)*\n\
             1. Alice &lt;Ops&gt; &amp; Co: 10 min over 3 responded leads\n\
             2. Bob: 5 min over 3 responded leads"
        );
        // Reps, counts and durations only: no lead id reaches a digest.
        let all = format!("{slack}{text}{html}");
        for id in ["a1", "b2", "q1", "p4", "inbox"] {
            assert!(!all.contains(&format!("{id}\"")) && !all.contains(&format!(" {id}")));
        }
    }

    #[test]
    fn without_a_previous_period_there_are_no_changes() {
        let (d, _) = built(&two_weeks(), false, &berlin_weekly());
        assert_eq!(d.previous_leads, None);
        assert_eq!(
            (
                d.leads_change,
                d.first_response_p50_change_secs,
                d.sla_compliance_change,
                d.tier1_compliance_change
            ),
            (None, None, None, None)
        );
        let text = d.email_text();
        assert!(
            text.contains("(Europe/Berlin), no leads the week before to compare with\n"),
            "{text}"
        );
        assert!(text.contains("\nLeads: 8\n"), "{text}");
        assert!(text.contains("\nSLA compliance: 75%\n"), "{text}");
        // A previous week with no leads compares with nothing either.
        let current_only: Vec<LeadFacts> = two_weeks()
            .into_iter()
            .filter(|f| !f.id.starts_with('p'))
            .collect();
        let (d, _) = built(&current_only, true, &berlin_weekly());
        assert_eq!((d.previous_leads, d.leads_change), (None, None));
    }

    #[test]
    fn a_period_without_leads_says_so() {
        let (d, counts) = built(&[], true, &berlin_weekly());
        assert_eq!(counts.untouched, 0);
        assert_eq!((d.leads, d.previous_leads), (0, None));
        assert_eq!(
            (d.first_response_p50_secs, d.sla_compliance, d.contact_rate),
            (None, None, None)
        );
        assert!(d.slowest.is_empty());
        assert_eq!(
            d.email_text(),
            "Weekly speed-to-lead digest\n\
             Mon 23 Nov to Sun 29 Nov 2026 (Europe/Berlin), no leads the week before to \
             compare with\n\n\
             No leads were captured that week.\n\n\
             Untouched past SLA: 0\n\
             Unmatched activity events: 2\n"
        );
        let slack = d.slack();
        assert_eq!(
            slack["text"],
            "Weekly speed-to-lead digest, Mon 23 Nov to Sun 29 Nov 2026: No leads were \
             captured that week."
        );
        assert_eq!(
            slack["blocks"][2]["text"]["text"],
            "No leads were captured that week."
        );
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(short_duration(45), "45 s");
        assert_eq!(short_duration(600), "10 min");
        assert_eq!(short_duration(2 * 3600 + 5 * 60), "2 h 5 min");
        assert_eq!(short_duration(3600), "1 h");
        assert_eq!(short_duration(61 * 3600), "2 d 13 h");
        assert_eq!(signed_duration(-300), "-5 min");
    }
}

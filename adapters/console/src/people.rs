//! Fairness and people: each pool's ledger as a chart (share of leads against weight), and the
//! reps with their open leads, caps, breach streaks, pause and out-of-office. A rep sets their
//! own out-of-office here, a manager anyone's in their team, an operator anyone's: the end
//! date goes to the store (`away_until` counter), and routing honours it from the next lead
//! on, on every instance, with no configuration change or restart.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use leadrelay_shared::calendar::parse_time_zone;
use leadrelay_shared::config::Config;
use leadrelay_shared::console::Viewer;
use leadrelay_shared::routing::{
    away_until_counter, sla_streak_counter, Needs, PoolReport, Snapshot,
};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::{Action, Empty, Signed};
use crate::page::{csrf, shell, when};
use crate::{Console, Refusal};

/// The furthest ahead an out-of-office can be set.
const MAX_AWAY_DAYS: i64 = 366;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/people", get(people_page))
        .route("/console/people/{rep}/away", post(set_away))
        .route("/console/people/{rep}/back", post(set_back))
        .route("/console/people/{rep}/resume", post(resume))
}

/// The pools the viewer may see: an operator all, a manager their team's, a rep the pools
/// they are a member of.
fn visible_pools<'a>(viewer: &Viewer, config: &'a Config) -> Vec<&'a str> {
    config
        .pools
        .iter()
        .map(|p| p.get_ref())
        .filter(|pool| match viewer.role {
            leadrelay_shared::config::Role::Operator => true,
            leadrelay_shared::config::Role::Manager => {
                pool.team.is_some() && pool.team == viewer.team
            }
            leadrelay_shared::config::Role::Rep => pool
                .members
                .iter()
                .any(|m| Some(&m.get_ref().rep) == viewer.rep.as_ref()),
        })
        .map(|pool| pool.id.as_str())
        .collect()
}

/// One rep's row: what routing sees of them now.
struct RepRow<'a> {
    id: &'a str,
    name: &'a str,
    team: Option<&'a str>,
    open: i64,
    capacity: Option<u32>,
    streak: i64,
    away_until: Option<Timestamp>,
    /// `Ok` when routing could give them a lead now, else why not.
    now: Result<(), String>,
}

async fn people_page(State(console): State<Console>, signed: Signed) -> Result<Response, Refusal> {
    let config = console.config();
    let pipeline = &console.pipeline;
    let now = pipeline.clock.now();
    let reps = signed.viewer.visible_reps(config);
    let needs = Needs {
        reps: reps.iter().map(|r| (*r).to_owned()).collect(),
        streaks: reps.iter().map(|r| (*r).to_owned()).collect(),
        away: reps.iter().map(|r| (*r).to_owned()).collect(),
        ledgers: Vec::new(),
    };
    let counters = pipeline.store.counters(&needs.counter_names()).await?;
    let snapshot = Snapshot::new(&needs, counters, Vec::new());
    let rows: Vec<RepRow> = reps
        .iter()
        .filter_map(|id| config.rep(id))
        .map(|rep| RepRow {
            id: &rep.id,
            name: &rep.name,
            team: rep.team.as_deref(),
            open: snapshot.open.get(&rep.id).copied().unwrap_or(0),
            capacity: rep.capacity,
            streak: snapshot.streaks.get(&rep.id).copied().unwrap_or(0),
            away_until: snapshot.away_until(&rep.id, now),
            now: pipeline.router.can_take(&rep.id, now, &snapshot),
        })
        .collect();
    let mut pools = Vec::new();
    for pool in visible_pools(&signed.viewer, config) {
        let needs = pipeline.router.pool_needs(pool, now);
        let counters = pipeline.store.counters(&needs.counter_names()).await?;
        let mut ledgers = Vec::with_capacity(needs.ledgers.len());
        for (pool, period) in &needs.ledgers {
            ledgers.push(pipeline.store.ledger(pool, period).await?);
        }
        let snapshot = Snapshot::new(&needs, counters, ledgers);
        if let Some(report) = pipeline.router.pool_report(pool, now, &snapshot) {
            pools.push(report);
        }
    }
    let pause_after = i64::from(config.escalation.pause_after_breaches);
    let body = html! {
        section aria-labelledby="reps" {
            h2 #reps { "Reps" }
            table {
                thead { tr {
                    th { "Rep" } th { "Team" } th.num { "Open leads" } th.num { "Cap" }
                    th.num { "Missed SLAs in a row" } th { "Now" } th { "Out of office" }
                } }
                tbody {
                    @for row in &rows {
                        tr #{"rep-" (row.id)} {
                            td { (row.name) span.muted { " (" (row.id) ")" } }
                            td { (row.team.unwrap_or("–")) }
                            td.num { (row.open) }
                            td.num { @match row.capacity { Some(cap) => (cap), None => "–" } }
                            td.num {
                                (row.streak)
                                @if pause_after > 0 && row.streak >= pause_after { " " span.badge.bad { "paused" } }
                            }
                            td {
                                @match &row.now {
                                    Ok(()) => span.ok { "can take leads" },
                                    Err(why) => span.muted { (why) },
                                }
                            }
                            td { (availability_forms(&signed, row, now)) }
                        }
                    }
                }
            }
        }
        @for pool in &pools {
            section.card aria-labelledby=(format!("pool-{}", pool.pool)) {
                h2 #{"pool-" (pool.pool)} { "Pool " (pool.name) }
                p.muted {
                    "Period " (pool.period) " · " (format!("{:?}", pool.strategy).to_lowercase())
                    @if pool.catch_up { " · catch-up on" }
                }
                (ledger_chart(pool))
                table {
                    thead { tr {
                        th { "Rep" } th.num { "Weight" } th.num { "Expected share" }
                        th.num { "Leads this period" } th.num { "Actual share" } th.num { "Owed" } th { "Now" }
                    } }
                    tbody {
                        @let total: u64 = pool.members.iter().map(|m| m.received).sum();
                        @for member in &pool.members {
                            tr {
                                td { (member.name) }
                                td.num { (member.weight) }
                                td.num { (format!("{:.0} %", member.share_percent)) }
                                td.num { (member.received) }
                                td.num { (share_text(member.received, total)) }
                                td.num { (format!("{:.2}", member.owed)) }
                                td { (member.now) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&signed, "/console/people", "People and fairness", body).into_response())
}

fn share_text(received: u64, total: u64) -> String {
    if total == 0 {
        "–".into()
    } else {
        format!("{:.0} %", received as f64 * 100.0 / total as f64)
    }
}

/// The out-of-office forms for a rep the viewer manages; a plain note for the others.
fn availability_forms(signed: &Signed, row: &RepRow, now: Timestamp) -> Markup {
    // `visible_reps` holds only reps the viewer manages, so every row gets the forms.
    html! {
        @if let Some(until) = row.away_until {
            p { "Away until " (when(Some(until), now)) }
            form.inline method="post" action=(format!("/console/people/{}/back", row.id)) {
                (csrf(signed))
                button.secondary type="submit" { "Back now" }
            }
        } @else {
            form.inline method="post" action=(format!("/console/people/{}/away", row.id)) {
                (csrf(signed))
                label for=(format!("until-{}", row.id)) { "Away through" }
                input type="date" id=(format!("until-{}", row.id)) name="until" required;
                button.secondary type="submit" { "Set away" }
            }
        }
        @if signed.viewer.role != leadrelay_shared::config::Role::Rep && row.streak > 0 {
            form.inline method="post" action=(format!("/console/people/{}/resume", row.id)) {
                (csrf(signed))
                button.secondary type="submit" { "Reset missed SLAs" }
            }
        }
    }
}

/// The pool's ledger as bars: each member's share of this period's leads beside the share
/// their weight entitles them to.
fn ledger_chart(pool: &PoolReport) -> Markup {
    let total: u64 = pool.members.iter().map(|m| m.received).sum();
    let row_height = 34.0;
    let label_width = 150.0;
    let chart_width = 560.0;
    let height = 30.0 + row_height * pool.members.len() as f64;
    let x = |percent: f64| label_width + chart_width * percent.clamp(0.0, 100.0) / 100.0;
    html! {
        svg.chart viewBox=(format!("0 0 {} {height}", label_width + chart_width + 60.0)) role="img"
            aria-label=(format!("Share of leads against weight in pool {}", pool.name)) {
            title { "Share of this period's leads (blue) against the share each weight entitles (orange)" }
            @for tick in [0.0, 25.0, 50.0, 75.0, 100.0] {
                line.grid x1=(x(tick)) x2=(x(tick)) y1="0" y2=(height - 20.0) {}
                text x=(x(tick) - 8.0) y=(height - 5.0) { (format!("{tick:.0}%")) }
            }
            @for (n, member) in pool.members.iter().enumerate() {
                @let y = 6.0 + row_height * n as f64;
                @let actual = if total == 0 { 0.0 } else { member.received as f64 * 100.0 / total as f64 };
                text x="4" y=(y + 17.0) { (member.name) }
                rect.bar x=(label_width) y=(y) width=(x(actual) - label_width) height="12" {
                    title { (member.name) ": " (format!("{actual:.0}")) "% of leads" }
                }
                rect.bar.alt x=(label_width) y=(y + 14.0) width=(x(member.share_percent) - label_width) height="8" {
                    title { (member.name) ": " (format!("{:.0}", member.share_percent)) "% by weight" }
                }
            }
        }
        p.legend { span { i.bar-blue {} "share of leads this period" } span { i.bar-orange {} "share by weight" } }
    }
}

/// The rep named in the path, if the viewer may set their availability.
fn managed<'a>(console: &'a Console, signed: &Signed, rep: &str) -> Result<&'a str, Refusal> {
    let config = console.config();
    match config.rep(rep) {
        Some(found) if signed.viewer.manages_rep(rep, config) => Ok(found.id.as_str()),
        Some(_) => Err(Refusal::Forbidden(
            "You can set the availability of yourself (a rep) or your team (a manager) only.",
        )),
        None => Err(Refusal::NotFound("No such rep.")),
    }
}

/// The zone a rep's days are counted in: theirs, else their team's, else UTC.
fn rep_zone(config: &Config, rep: &str) -> TimeZone {
    let rep = config.rep(rep);
    rep.and_then(|r| r.timezone.clone())
        .or_else(|| {
            rep.and_then(|r| r.team.as_deref())
                .and_then(|t| config.team(t))
                .map(|t| t.timezone.clone())
        })
        .and_then(|name| parse_time_zone(&name).ok())
        .unwrap_or(TimeZone::UTC)
}

#[derive(Deserialize)]
struct AwayForm {
    #[serde(default)]
    until: String,
}

/// The end of an out-of-office through `until` (inclusive) in `tz`: the next day's start.
fn away_end(until: &str, tz: &TimeZone, now: Timestamp) -> Result<Timestamp, String> {
    let date: Date = until
        .trim()
        .parse()
        .map_err(|_| format!("{until:?} is not a date such as 2026-12-24"))?;
    let today = now.to_zoned(tz.clone()).date();
    if date < today {
        return Err(format!("{date} has passed: choose today or a later day"));
    }
    if (date - today).get_days() as i64 > MAX_AWAY_DAYS {
        return Err("an out-of-office can be set at most a year ahead".into());
    }
    date.tomorrow()
        .and_then(|next| next.to_zoned(tz.clone()))
        .map(|zoned| zoned.timestamp())
        .map_err(|e| format!("{date}: {e}"))
}

async fn set_away(
    State(console): State<Console>,
    Path(rep): Path<String>,
    action: Action<AwayForm>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let rep = managed(&console, &signed, &rep)?;
    let now = console.pipeline.clock.now();
    let end = away_end(&action.form.until, &rep_zone(console.config(), rep), now)
        .map_err(Refusal::BadRequest)?;
    console
        .pipeline
        .store
        .set_counter(&away_until_counter(rep), end.as_second())
        .await?;
    console
        .audit(
            &signed.viewer.login,
            "away",
            rep,
            format!("away until {end}"),
        )
        .await;
    Ok(Redirect::to(&format!("/console/people#rep-{rep}")).into_response())
}

async fn set_back(
    State(console): State<Console>,
    Path(rep): Path<String>,
    action: Action<Empty>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let rep = managed(&console, &signed, &rep)?;
    console
        .pipeline
        .store
        .set_counter(&away_until_counter(rep), 0)
        .await?;
    console
        .audit(&signed.viewer.login, "back", rep, "available again")
        .await;
    Ok(Redirect::to(&format!("/console/people#rep-{rep}")).into_response())
}

async fn resume(
    State(console): State<Console>,
    Path(rep): Path<String>,
    action: Action<Empty>,
) -> Result<Response, Refusal> {
    let signed = action.signed;
    let rep = managed(&console, &signed, &rep)?;
    if signed.viewer.role == leadrelay_shared::config::Role::Rep {
        return Err(Refusal::Forbidden(
            "A manager or an operator resets a rep's missed SLAs.",
        ));
    }
    let counter = sla_streak_counter(rep);
    let missed = console.pipeline.store.counter(&counter).await?;
    console.pipeline.store.reset_counter(&counter).await?;
    console
        .audit(
            &signed.viewer.login,
            "resume",
            rep,
            format!("missed-SLA run of {missed} reset"),
        )
        .await;
    Ok(Redirect::to(&format!("/console/people#rep-{rep}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_through_a_day_ends_at_the_next_local_midnight() {
        let tz = TimeZone::get("Europe/Berlin").expect("zone");
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().expect("instant");
        let end = away_end("2026-11-30", &tz, now).expect("end");
        assert_eq!(end.to_string(), "2026-11-30T23:00:00Z");
        assert!(away_end("2026-11-25", &tz, now).is_err());
        assert!(away_end("2028-01-01", &tz, now).is_err());
        assert!(away_end("next week", &tz, now).is_err());
    }
}

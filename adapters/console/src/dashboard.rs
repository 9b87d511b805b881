//! The speed-to-lead dashboard: the report's figures (`leadrelay_shared::report`, defined once
//! there and in docs/reports.md) for the viewer's own scope, as inline SVG charts built here
//! with maud, each with its numbers in a table; and the same headline and per-rep rows as CSV.
//!
//! One read per request: the report records of the chosen window and of the period of the
//! same length before it, never a full lead. On a store that keeps hourly report buckets
//! (SQLite) those are read, and any hour missing, stale or built under another configuration
//! is rebuilt from its facts and stored back; elsewhere (DynamoDB) the facts are read and made
//! records. Who counts is decided on the records the way `console::access` decides who sees a
//! lead (see [`Scope`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::config::{Config, Role};
use leadrelay_shared::console::access;
use leadrelay_shared::model::Owner;
use leadrelay_shared::ports::{BuiltHour, LeadStore, ReportBucket, StoreError};
use leadrelay_shared::report::rollup::{self, Holder, HolderKind, Strings};
use leadrelay_shared::report::{
    Dimension, Directory, Group, Hours, LeadFacts, Params, Records, ReportRecord, SpeedToLead,
    Spread, TierSla,
};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::Signed;
use crate::page::{self, shell};
use crate::{Console, Refusal};

/// The windows the dashboard offers, in days.
const WINDOWS: [i64; 3] = [7, 30, 90];

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/dashboard", get(dashboard_page))
        .route("/console/dashboard.csv", get(dashboard_csv))
}

/// The query as sent: every field optional and read by hand, so a bad value gets the
/// console's own 400 page naming it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFilters {
    days: Option<String>,
    team: Option<String>,
    source: Option<String>,
    hours: Option<String>,
}

/// The dashboard's filters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filters {
    days: i64,
    team: Option<String>,
    source: Option<String>,
    hours: Hours,
}

impl Filters {
    fn read(raw: &RawFilters, config: &Config) -> Result<Filters, Refusal> {
        let days = match chosen(&raw.days) {
            None => WINDOWS[0],
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|d| WINDOWS.contains(d))
                .ok_or_else(|| Refusal::BadRequest("days must be 7, 30 or 90".into()))?,
        };
        let hours = match chosen(&raw.hours) {
            None => Hours::Wall,
            Some(text) => Hours::parse(text)
                .ok_or_else(|| Refusal::BadRequest("hours must be wall or working".into()))?,
        };
        let team = chosen(&raw.team).map(str::to_owned);
        if let Some(team) = &team {
            if !config.teams.iter().any(|t| &t.get_ref().id == team) {
                return Err(Refusal::BadRequest("team: no such team".into()));
            }
        }
        Ok(Filters {
            days,
            team,
            source: chosen(&raw.source).map(str::to_owned),
            hours,
        })
    }

    fn query(&self) -> String {
        let hours = match self.hours {
            Hours::Wall => "wall",
            Hours::Working => "working",
        };
        serde_urlencoded::to_string([
            ("days", Some(self.days.to_string())),
            ("team", self.team.clone()),
            ("source", self.source.clone()),
            ("hours", Some(hours.to_owned())),
        ])
        .unwrap_or_default()
    }
}

/// A parameter's value, unless absent or blank.
fn chosen(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The owners of one team, as `access::owner_team` assigns owners to teams.
#[derive(Debug, Default)]
struct TeamOwners<'a> {
    reps: HashSet<&'a str>,
    pools: HashSet<&'a str>,
    queues: HashSet<&'a str>,
}

/// Holders in the interned form of one set of records.
type Holders = HashSet<Holder>;

impl<'a> TeamOwners<'a> {
    fn of(team: &str, config: &'a Config) -> TeamOwners<'a> {
        let of_team = |owner: Owner| access::owner_team(&owner, config) == Some(team);
        let reps = config.reps.iter().map(|r| r.get_ref().id.as_str());
        let pools = config.pools.iter().map(|p| p.get_ref().id.as_str());
        let queues = config
            .teams
            .iter()
            .filter_map(|t| t.get_ref().queue.as_deref());
        TeamOwners {
            reps: reps
                .filter(|id| of_team(Owner::Rep((*id).to_owned())))
                .collect(),
            pools: pools
                .filter(|id| of_team(Owner::Pool((*id).to_owned())))
                .collect(),
            queues: queues
                .filter(|id| of_team(Owner::Queue((*id).to_owned())))
                .collect(),
        }
    }

    /// The team's owners among the strings of some records (those no record names left out).
    fn interned(&self, strings: &Strings) -> Holders {
        let of = |kind: HolderKind, ids: &HashSet<&str>| {
            ids.iter()
                .filter_map(|id| Some((kind, strings.id(id)?)))
                .collect::<Vec<_>>()
        };
        of(HolderKind::Rep, &self.reps)
            .into_iter()
            .chain(of(HolderKind::Pool, &self.pools))
            .chain(of(HolderKind::Queue, &self.queues))
            .collect()
    }
}

/// Whether any of the record's holders (owner, claimer, routed owner: see
/// [`ReportRecord::holders`]) is one of `owners`. Owners between the first and the last step
/// of an escalation ladder are not in the facts, so a lead that only passed through a viewer
/// mid-ladder is not counted for them.
fn held_by(record: &ReportRecord, owners: &Holders) -> bool {
    record.holders().any(|h| owners.contains(&h))
}

/// Whose leads count for the viewer: an operator's all, a manager's their team's, a rep's
/// those they held. A manager without a team or a rep account without a rep counts nothing.
enum Scope<'a> {
    All,
    Team(TeamOwners<'a>),
    Rep(&'a str),
    Nothing,
}

impl Scope<'_> {
    /// The holders whose leads count among records interning `strings`; `None`: all count.
    fn holders(&self, strings: &Strings) -> Option<Holders> {
        match self {
            Scope::All => None,
            Scope::Team(owners) => Some(owners.interned(strings)),
            Scope::Rep(rep) => Some(
                strings
                    .id(rep)
                    .map(|id| (HolderKind::Rep, id))
                    .into_iter()
                    .collect(),
            ),
            Scope::Nothing => Some(Holders::new()),
        }
    }
}

/// The scope of this viewer with these filters; a manager asking for another team is refused.
fn scope<'a>(
    signed: &'a Signed,
    filters: &Filters,
    config: &'a Config,
) -> Result<Scope<'a>, Refusal> {
    let viewer = &signed.viewer;
    Ok(match viewer.role {
        Role::Operator => Scope::All,
        Role::Manager => {
            let Some(team) = viewer.team.as_deref() else {
                return Ok(Scope::Nothing);
            };
            if filters.team.as_deref().is_some_and(|t| t != team) {
                return Err(Refusal::Forbidden(
                    "A manager sees the figures of their own team only.",
                ));
            }
            Scope::Team(TeamOwners::of(team, config))
        }
        Role::Rep => match viewer.rep.as_deref() {
            Some(rep) => Scope::Rep(rep),
            None => Scope::Nothing,
        },
    })
}

/// SLA compliance per tier over one day of the window.
#[derive(Debug, Clone)]
struct Day {
    start: Timestamp,
    tiers: BTreeMap<u8, TierSla>,
}

/// Everything the page and the CSV show.
#[derive(Debug, Clone)]
struct Dashboard {
    current: SpeedToLead,
    previous: SpeedToLead,
    days: Vec<Day>,
    /// Tiers with an SLA seen in the window, for the lines of the compliance chart.
    tiers: Vec<u8>,
}

/// The figures over `records` (already narrowed to the viewer's scope and the filters, and
/// sorted by capture): the window of `days` days ending at `now`, the period before it, and
/// each day's SLA compliance per tier. One pass over each period, and one over the window for
/// the days.
fn compute(
    records: &Records,
    days: i64,
    hours: Hours,
    now: Timestamp,
    config: &Config,
) -> Dashboard {
    let directory = Directory::new(config);
    let handoff = &config.reports.handoff_fields;
    let length = SignedDuration::from_hours(24 * days);
    let from = now - length;
    let before = from - length;
    let figures = |from: Timestamp, to: Timestamp| {
        let params = Params {
            from,
            to,
            by: Dimension::Rep,
            hours,
            now,
        };
        rollup::figures(
            records,
            records.captured_in(from, to),
            &params,
            &directory,
            handoff,
        )
    };
    let current = figures(from, now);
    let previous = figures(before, from);
    // SLA compliance is measured on the wall clock whatever `hours` says (docs/reports.md).
    let days: Vec<Day> = (0..days)
        .map(|n| {
            let start = from + SignedDuration::from_hours(24 * n);
            let end = start + SignedDuration::from_hours(24);
            let tiers = rollup::sla_by_tier(records.captured_in(start, end), start, end, now)
                .into_iter()
                .filter_map(|row| Some((row.tier?, row)))
                .collect();
            Day { start, tiers }
        })
        .collect();
    let tiers = current
        .sla_by_tier
        .iter()
        .filter(|row| row.sla_minutes.is_some())
        .filter_map(|row| row.tier)
        .collect();
    Dashboard {
        current,
        previous,
        days,
        tiers,
    }
}

/// The report records of the leads captured in `[from, to)` (and, from buckets, of the rest of
/// the hours the window's ends fall in), sorted by capture. From the store's hourly buckets
/// where it keeps them: an hour without a bucket, with a bucket built at an older generation
/// (a lead of it was written since) or under another [`Directory::fingerprint`] is rebuilt
/// from its facts, used, and stored back (in the background: only if the hour did not move
/// meanwhile). From the window's facts on a store without buckets. Says which: figures from
/// buckets are never kept for later ([`FigureCache`]).
pub(crate) async fn read_records(
    store: &Arc<dyn LeadStore>,
    from: Timestamp,
    to: Timestamp,
    directory: &Directory,
) -> Result<(Records, Read), StoreError> {
    let Some(hours) = store.report_hours(from, to).await? else {
        let facts = store.lead_facts(from, to).await?;
        let mut records = Records::of(&facts, directory);
        records.sort_by_capture();
        return Ok((records, Read::Facts));
    };
    let fingerprint = directory.fingerprint();
    let mut records = Records::default();
    // Hours to rebuild, by hour, with the generation read before their facts are.
    let mut stale = BTreeMap::new();
    for hour in hours {
        let kept = hour
            .bucket
            .as_ref()
            .filter(|b| b.generation == hour.generation && b.fingerprint == fingerprint)
            .and_then(|b| match Records::decode(&b.bytes) {
                Ok(records) => Some(records),
                Err(error) => {
                    tracing::warn!(hour = hour.hour, %error, "rebuilding an unreadable report bucket");
                    None
                }
            });
        match kept {
            Some(kept) => records.append(kept),
            None => {
                stale.insert(hour.hour, hour.generation);
            }
        }
    }
    let mut built = Vec::new();
    // One facts read per run of consecutive stale hours (a first build is one run), split
    // back into hours. The generations were read before these facts: a write in between
    // leaves them stale.
    for (first, last) in runs(stale.keys().copied()) {
        let (Some(start), Some(end)) = (rollup::hour_start(first), rollup::hour_start(last + 1))
        else {
            continue;
        };
        let mut by_hour: BTreeMap<i64, Vec<LeadFacts>> = BTreeMap::new();
        for facts in store.lead_facts(start, end).await? {
            if let Some(at) = facts.captured_at {
                by_hour.entry(rollup::hour_of(at)).or_default().push(facts);
            }
        }
        // A run holds stale hours only.
        for (&hour, &generation) in stale.range(first..=last) {
            let facts = by_hour.remove(&hour).unwrap_or_default();
            let mut rebuilt = Records::of(&facts, directory);
            rebuilt.sort_by_capture();
            match rebuilt.encode() {
                Ok(bytes) => built.push(BuiltHour {
                    hour,
                    bucket: ReportBucket {
                        generation,
                        fingerprint,
                        bytes,
                    },
                }),
                Err(error) => tracing::warn!(hour, %error, "report bucket not kept"),
            }
            records.append(rebuilt);
        }
    }
    if !built.is_empty() {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.put_report_hours(&built).await {
                tracing::warn!(%error, "report buckets not kept");
            }
        });
    }
    // Buckets and runs come in no common order, each sorted: one merge sort of sorted runs.
    records.sort_by_capture();
    Ok((records, Read::Buckets))
}

/// Where [`read_records`] read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// The store's report buckets: cheap to read again, so figures are always current.
    Buckets,
    /// The window's facts (a store without buckets): slow on a large store.
    Facts,
}

/// Consecutive values as `(first, last)` runs: `1, 2, 3, 7` → `(1, 3), (7, 7)`.
fn runs(sorted: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for value in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == value => *last = value,
            _ => runs.push((value, value)),
        }
    }
    runs
}

/// How long computed figures are served again, on a store without report buckets: the facts
/// of 100,000 leads take longer to read than a page may (docs/benchmarks.md), and a dashboard
/// a minute old is still the dashboard. From buckets, figures are computed at every view.
const FRESH_FOR: SignedDuration = SignedDuration::from_secs(60);
/// Figures that took at least this long to compute are kept for [`FRESH_FOR`].
const SLOW: std::time::Duration = std::time::Duration::from_millis(50);
/// The most sets of figures kept (one per viewer scope and filters).
const CACHED_AT_MOST: usize = 64;

/// Slow figures computed in the last minute, per viewer scope and filters, so that a manager
/// switching between views or reloading does not read every fact again.
#[derive(Default)]
pub(crate) struct FigureCache(Mutex<HashMap<String, (Timestamp, Arc<Dashboard>)>>);

impl FigureCache {
    fn get(&self, key: &str, now: Timestamp) -> Option<(Timestamp, Arc<Dashboard>)> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < FRESH_FOR && *at <= now)
            .cloned()
    }

    fn put(&self, key: String, now: Timestamp, dashboard: Arc<Dashboard>) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| now.duration_since(*at) < FRESH_FOR);
        if cache.len() >= CACHED_AT_MOST {
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, (now, dashboard));
    }
}

/// The figures for this viewer and filters: from the cache when computed in the last minute
/// (with when they were computed), else read and computed now.
async fn load(
    console: &Console,
    signed: &Signed,
    raw: &RawFilters,
) -> Result<(Filters, Timestamp, Arc<Dashboard>), Refusal> {
    let config = console.config();
    let filters = Filters::read(raw, config)?;
    // Checked before the cache: a refused scope is refused whatever was computed for others.
    scope(signed, &filters, config)?;
    let viewer = &signed.viewer;
    let key = format!(
        "{}|{:?}|{:?}|{}",
        viewer.role.as_str(),
        viewer.team,
        viewer.rep,
        filters.query()
    );
    let now = console.pipeline.clock.now();
    if let Some((at, dashboard)) = console.figures.get(&key, now) {
        return Ok((filters, at, dashboard));
    }
    let started = std::time::Instant::now();
    let (dashboard, read) = compute_for(console, signed, &filters).await?;
    let dashboard = Arc::new(dashboard);
    // Only figures that were slow to compute from the facts are kept: a small store, and a
    // store with buckets, is always current.
    if read == Read::Facts && started.elapsed() >= SLOW {
        console.figures.put(key, now, dashboard.clone());
    }
    Ok((filters, now, dashboard))
}

/// Reads the records of both periods once and computes the dashboard for this viewer.
async fn compute_for(
    console: &Console,
    signed: &Signed,
    filters: &Filters,
) -> Result<(Dashboard, Read), Refusal> {
    let config = console.config();
    let viewer_scope = scope(signed, filters, config)?;
    let team = filters.team.as_deref().map(|t| TeamOwners::of(t, config));
    let now = console.pipeline.clock.now();
    let length = SignedDuration::from_hours(24 * filters.days);
    let directory = Directory::new(config);
    let (mut records, read) = read_records(
        &console.pipeline.store,
        now - length - length,
        now,
        &directory,
    )
    .await?;
    let strings = records.strings();
    let viewer = viewer_scope.holders(strings);
    let team = team.map(|t| t.interned(strings));
    // A source no record names matches none.
    let source = filters.source.as_deref().map(|s| strings.id(s));
    records.retain(|r| {
        viewer.as_ref().is_none_or(|h| held_by(r, h))
            && team.as_ref().is_none_or(|h| held_by(r, h))
            && source.is_none_or(|s| s == Some(r.source))
    });
    Ok((
        compute(&records, filters.days, filters.hours, now, config),
        read,
    ))
}

async fn dashboard_page(
    State(console): State<Console>,
    signed: Signed,
    Query(raw): Query<RawFilters>,
) -> Result<Response, Refusal> {
    let (filters, computed_at, dashboard) = load(&console, &signed, &raw).await?;
    let now = console.pipeline.clock.now();
    let body = html! {
        (page_body(&signed, &filters, &dashboard, console.config()))
        @if computed_at < now {
            p.muted { "Figures computed at " (page::when(Some(computed_at), now))
                " (a large window is computed at most once a minute)." }
        }
    };
    Ok(shell(&signed, "/console/dashboard", "Speed to lead", body).into_response())
}

async fn dashboard_csv(
    State(console): State<Console>,
    signed: Signed,
    Query(raw): Query<RawFilters>,
) -> Result<Response, Refusal> {
    let (filters, _, dashboard) = load(&console, &signed, &raw).await?;
    let day = dashboard.current.to.strftime("%Y-%m-%d");
    let disposition = format!(
        "attachment; filename=\"leadrelay-dashboard-{}d-{day}.csv\"",
        filters.days
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv(&dashboard, console.config()),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// The page

fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() => format!("{:.0}%", r * 100.0),
        _ => "–".to_owned(),
    }
}

fn secs(value: Option<i64>) -> String {
    value
        .map(|s| page::span(SignedDuration::from_secs(s)))
        .unwrap_or_else(|| "–".to_owned())
}

fn rep_name<'a>(key: &'a str, config: &'a Config) -> &'a str {
    config.rep(key).map_or(key, |r| r.name.as_str())
}

fn page_body(signed: &Signed, filters: &Filters, d: &Dashboard, config: &Config) -> Markup {
    let viewer = &signed.viewer;
    let (now, all, before) = (d.current.to, &d.current.totals, &d.previous.totals);
    let whose = match viewer.role {
        Role::Operator => "all leads".to_owned(),
        Role::Manager => format!(
            "the leads of team {}",
            viewer.team.as_deref().unwrap_or("–")
        ),
        Role::Rep => "the leads you held".to_owned(),
    };
    let headline = [
        (
            "Speed to lead p50",
            secs(all.first_response.p50_secs),
            secs(before.first_response.p50_secs),
        ),
        (
            "Speed to lead p90",
            secs(all.first_response.p90_secs),
            secs(before.first_response.p90_secs),
        ),
        (
            "SLA compliance",
            percent(all.sla_compliance),
            percent(before.sla_compliance),
        ),
        (
            "Contact rate",
            percent(all.contact_rate),
            percent(before.contact_rate),
        ),
        (
            "Meeting rate",
            percent(all.meeting_booked_rate),
            percent(before.meeting_booked_rate),
        ),
    ];
    html! {
        form.filters method="get" action="/console/dashboard" {
            label { "Window"
                select name="days" {
                    @for days in WINDOWS {
                        option value=(days) selected[filters.days == days] { "last " (days) " days" }
                    }
                }
            }
            @if viewer.role != Role::Rep {
                label { "Team"
                    select name="team" {
                        @if viewer.is_operator() { option value="" { "all" } }
                        @for team in &config.teams {
                            @let team = team.get_ref();
                            @if viewer.is_operator() || viewer.team.as_deref() == Some(team.id.as_str()) {
                                option value=(team.id) selected[filters.team.as_deref() == Some(team.id.as_str())] { (team.name) }
                            }
                        }
                    }
                }
            }
            label { "Source"
                select name="source" {
                    option value="" { "all" }
                    @for source in &config.sources {
                        @let id = &source.get_ref().id;
                        option value=(id) selected[filters.source.as_deref() == Some(id.as_str())] { (id) }
                    }
                }
            }
            label { "Clock"
                select name="hours" {
                    option value="wall" selected[filters.hours == Hours::Wall] { "wall clock" }
                    option value="working" selected[filters.hours == Hours::Working] { "working hours" }
                }
            }
            button type="submit" { "Show" }
            a.button.secondary href=(format!("/console/dashboard.csv?{}", filters.query())) { "Download CSV" }
        }
        p.muted {
            "Figures over " (whose) " captured from " (page::when(Some(d.current.from), now))
            " to " (page::when(Some(now), now)) " (" (all.leads) " leads), beside the "
            (filters.days) " days before (" (before.leads) " leads)."
            @if d.current.merged_excluded > 0 {
                " " (d.current.merged_excluded) " merged leads are left out."
            }
        }
        section aria-labelledby="headline" {
            h2 #headline { "Headline" }
            div.figures {
                @for (label, value, previous) in &headline {
                    div.figure {
                        div.label { (label) }
                        div.value { (value) }
                        div.muted { "previous " (filters.days) " days: " (previous) }
                    }
                }
            }
        }
        div.grid {
            section.card aria-labelledby="buckets" {
                h2 #buckets { "Response time" }
                (buckets_chart(&d.current))
            }
            section.card aria-labelledby="delays" {
                h2 #delays { "Where the time goes" }
                (delays_chart(all))
            }
        }
        section.card aria-labelledby="sla-days" {
            h2 #sla-days { "SLA compliance per day" }
            (sla_chart(d))
        }
        div.grid {
            section.card aria-labelledby="meetings" {
                h2 #meetings { "Time to meeting" }
                (meeting_chart(all))
            }
        }
        section.card aria-labelledby="by-rep" {
            h2 #by-rep { "By rep" }
            (rep_table(&d.current.groups, config))
        }
    }
}

/// An empty-state line inside a chart.
fn empty_note(frame: &Frame, text: &str) -> Markup {
    html! {
        text x=(coord(frame.left + frame.plot_width() / 2.0)) y=(coord(frame.top + frame.plot_height() / 2.0))
            text-anchor="middle" class="empty" { (text) }
    }
}

/// The value axis: grid lines at 0, half and the top, labelled by `label`.
fn value_axis(frame: &Frame, top: f64, label: &dyn Fn(f64) -> String) -> Markup {
    html! {
        @for step in 0..=2 {
            @let value = top * f64::from(step) / 2.0;
            @let y = frame.y_of(value, top);
            line.grid x1=(coord(frame.left)) x2=(coord(frame.width - frame.right)) y1=(coord(y)) y2=(coord(y)) {}
            text x=(coord(frame.left - 6.0)) y=(coord(y + 4.0)) text-anchor="end" { (label(value)) }
        }
        line.axis x1=(coord(frame.left)) x2=(coord(frame.width - frame.right))
            y1=(coord(frame.top + frame.plot_height())) y2=(coord(frame.top + frame.plot_height())) {}
    }
}

fn svg_open(frame: &Frame, id: &str, title: &str, desc: &str, body: Markup) -> Markup {
    let (title_id, desc_id) = (format!("{id}-title"), format!("{id}-desc"));
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox=(format!("0 0 {} {}", coord(frame.width), coord(frame.height)))
            aria-labelledby=(format!("{title_id} {desc_id}")) {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            (body)
        }
    }
}

fn buckets_chart(r: &SpeedToLead) -> Markup {
    let frame = Frame::standard();
    let counts: Vec<f64> = r.response_buckets.iter().map(|b| b.leads as f64).collect();
    let top = nice_ceiling(counts.iter().copied().fold(0.0, f64::max));
    let bars = bars(&counts, top, &frame);
    let desc = r
        .response_buckets
        .iter()
        .map(|b| format!("{}: {}", b.bucket, b.leads))
        .collect::<Vec<_>>()
        .join(", ");
    let body = html! {
        (value_axis(&frame, top, &|v| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }))
        @for (bar, row) in bars.iter().zip(&r.response_buckets) {
            rect class=(if row.bucket == "never" { "bar bad" } else { "bar" })
                x=(coord(bar.x)) y=(coord(bar.y)) width=(coord(bar.width)) height=(coord(bar.height)) {
                title { (row.bucket) ": " (row.leads) " leads" }
            }
            @if row.leads > 0 {
                text x=(coord(bar.x + bar.width / 2.0)) y=(coord(bar.y - 4.0)) text-anchor="middle" { (row.leads) }
            }
            text.tick x=(coord(bar.x + bar.width / 2.0)) y=(coord(frame.height - 8.0)) text-anchor="middle" { (row.bucket) }
        }
        @if r.totals.leads == 0 { (empty_note(&frame, "No leads in this window")) }
    };
    html! {
        (svg_open(&frame, "chart-buckets", "Leads by first-response time", &desc, body))
        details {
            summary { "The numbers" }
            table #bucket-table {
                thead { tr { th { "First response" } th.num { "Leads" } th.num { "Share" } th.num { "Won rate" } } }
                tbody {
                    @for row in &r.response_buckets {
                        tr { td { (row.bucket) } td.num { (row.leads) } td.num { (percent(row.share)) } td.num { (percent(row.won_rate)) } }
                    }
                }
            }
        }
    }
}

/// Paired p50 / p90 bars for some spreads, on a duration axis.
fn spread_bars(id: &str, title: &str, spreads: &[(&str, &Spread)]) -> Markup {
    let frame = Frame::standard();
    let values: Vec<f64> = spreads
        .iter()
        .flat_map(|(_, s)| [s.p50_secs, s.p90_secs])
        .map(|v| v.unwrap_or(0) as f64)
        .collect();
    let top = duration_ceiling(values.iter().copied().fold(0.0, f64::max));
    let bars = bars(&values, top, &frame);
    let desc = spreads
        .iter()
        .map(|(name, s)| format!("{name}: p50 {}, p90 {}", secs(s.p50_secs), secs(s.p90_secs)))
        .collect::<Vec<_>>()
        .join("; ");
    let measured: u64 = spreads.iter().map(|(_, s)| s.count).sum();
    let body = html! {
        (value_axis(&frame, top, &|v| page::span(SignedDuration::from_secs(v.round() as i64))))
        @for (n, (name, spread)) in spreads.iter().enumerate() {
            @for (k, (which, value)) in [("p50", spread.p50_secs), ("p90", spread.p90_secs)].into_iter().enumerate() {
                @if let Some(bar) = bars.get(2 * n + k) {
                    rect class=(if k == 0 { "bar" } else { "bar alt" })
                        x=(coord(bar.x)) y=(coord(bar.y)) width=(coord(bar.width)) height=(coord(bar.height)) {
                        title { (name) " " (which) ": " (secs(value)) }
                    }
                }
            }
            @if let (Some(left), Some(right)) = (bars.get(2 * n), bars.get(2 * n + 1)) {
                text x=(coord((left.x + right.x + right.width) / 2.0)) y=(coord(frame.height - 8.0)) text-anchor="middle" { (name) }
            }
        }
        @if measured == 0 { (empty_note(&frame, "Nothing measured in this window")) }
    };
    html! {
        (svg_open(&frame, id, title, &desc, body))
        p.legend { span { i.bar-blue {} "p50" } span { i.bar-orange {} "p90" } }
        details {
            summary { "The numbers" }
            table id=(format!("{id}-table")) {
                thead { tr { th { "Figure" } th.num { "Leads measured" } th.num { "p50" } th.num { "p90" } } }
                tbody {
                    @for (name, s) in spreads {
                        tr { td { (name) } td.num { (s.count) } td.num { (secs(s.p50_secs)) } td.num { (secs(s.p90_secs)) } }
                    }
                }
            }
        }
    }
}

fn delays_chart(all: &Group) -> Markup {
    spread_bars(
        "chart-delays",
        "System, acknowledgement and human delay, p50 and p90",
        &[
            ("System", &all.system),
            ("Acknowledgement", &all.acknowledgement),
            ("Human", &all.human),
        ],
    )
}

fn meeting_chart(all: &Group) -> Markup {
    html! {
        (spread_bars("chart-meeting", "Time to meeting, p50 and p90", &[("Time to meeting", &all.time_to_meeting)]))
        p.muted {
            (all.meetings_booked) " meetings booked, " (all.meetings_held) " held. "
            "Start to booking; the report keeps no distribution of it beyond p50 and p90."
        }
    }
}

fn sla_chart(d: &Dashboard) -> Markup {
    let frame = Frame::wide();
    let n = d.days.len();
    let series: Vec<(u8, Vec<Option<f64>>)> = d
        .tiers
        .iter()
        .map(|tier| {
            let points = d
                .days
                .iter()
                .map(|day| day.tiers.get(tier).and_then(|row| row.compliance))
                .collect();
            (*tier, points)
        })
        .collect();
    let desc = if series.is_empty() {
        "No lead with an SLA in this window.".to_owned()
    } else {
        series
            .iter()
            .map(|(tier, points)| {
                let known: Vec<f64> = points.iter().flatten().copied().collect();
                format!(
                    "Tier {tier}: {} days with a figure, overall {}",
                    known.len(),
                    percent(tier_compliance(&d.current, *tier))
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Date labels on about seven days, the last one always.
    let every = n.div_ceil(7).max(1);
    let body = html! {
        (value_axis(&frame, 1.0, &|v| format!("{:.0}%", v * 100.0)))
        @for (i, day) in d.days.iter().enumerate() {
            @if (n - 1 - i).is_multiple_of(every) {
                text x=(coord(frame.x_at(i, n))) y=(coord(frame.height - 8.0)) text-anchor="middle" {
                    (day.start.strftime("%m-%d").to_string())
                }
            }
        }
        @for (tier, points) in &series {
            @for segment in segments(points, &frame, 1.0) {
                @if segment.len() > 1 {
                    polyline class=(format!("line tier-{tier}")) points=(polyline_points(&segment)) {}
                }
            }
            @for (i, point) in points.iter().enumerate() {
                @if let Some(value) = point {
                    circle class=(format!("dot tier-{tier}")) r="3"
                        cx=(coord(frame.x_at(i, n))) cy=(coord(frame.y_of(*value, 1.0))) {
                        title { "Tier " (tier) ", " (d.days[i].start.strftime("%Y-%m-%d").to_string()) ": " (percent(Some(*value))) }
                    }
                }
            }
        }
        @if series.is_empty() { (empty_note(&frame, "No lead with an SLA in this window")) }
    };
    html! {
        (svg_open(&frame, "chart-sla", "SLA compliance per day and tier", &desc, body))
        p.legend {
            @for (tier, _) in &series {
                span { i class=(format!("tier-{tier}")) {} "Tier " (tier) " (" (percent(tier_compliance(&d.current, *tier))) " over the window)" }
            }
        }
        details {
            summary { "The numbers" }
            table #sla-table {
                thead { tr {
                    th { "Day (UTC, from)" }
                    @for tier in &d.tiers { th.num { "Tier " (tier) " met / answered" } }
                } }
                tbody {
                    @for day in &d.days {
                        tr {
                            td { (day.start.strftime("%Y-%m-%d %H:%M").to_string()) }
                            @for tier in &d.tiers {
                                td.num { (sla_cell(day.tiers.get(tier))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `met / answered (compliance)` of one tier on one day; a dash when nothing was answered.
fn sla_cell(row: Option<&TierSla>) -> String {
    match row {
        Some(row) if row.met + row.missed > 0 => format!(
            "{} / {} ({})",
            row.met,
            row.met + row.missed,
            percent(row.compliance)
        ),
        _ => "–".to_owned(),
    }
}

fn tier_compliance(r: &SpeedToLead, tier: u8) -> Option<f64> {
    r.sla_by_tier
        .iter()
        .find(|row| row.tier == Some(tier))
        .and_then(|row| row.compliance)
}

fn rep_table(groups: &[Group], config: &Config) -> Markup {
    html! {
        @if groups.is_empty() {
            p.muted { "No leads in this window." }
        } @else {
            table #rep-table {
                thead { tr {
                    th { "Rep" } th.num { "Leads" } th.num { "Contacted" } th.num { "SLA met" }
                    th.num { "SLA missed" } th.num { "SLA compliance" } th.num { "Speed to lead p50" }
                    th.num { "p90" } th.num { "Acknowledgement p50" } th.num { "Meetings booked" }
                    th.num { "Won rate" }
                } }
                tbody {
                    @for g in groups {
                        tr {
                            td { (rep_name(&g.key, config)) }
                            td.num { (g.leads) } td.num { (g.contacted) } td.num { (g.sla_met) }
                            td.num { (g.sla_missed) } td.num { (percent(g.sla_compliance)) }
                            td.num { (secs(g.first_response.p50_secs)) } td.num { (secs(g.first_response.p90_secs)) }
                            td.num { (secs(g.acknowledgement.p50_secs)) } td.num { (g.meetings_booked) }
                            td.num { (percent(g.won_rate)) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The CSV

const CSV_HEADER: [&str; 22] = [
    "period",
    "rep",
    "name",
    "leads",
    "contacted",
    "contact_rate",
    "meetings_booked",
    "meeting_booked_rate",
    "sla_met",
    "sla_missed",
    "sla_pending",
    "sla_compliance",
    "first_response_p50_secs",
    "first_response_p90_secs",
    "system_p50_secs",
    "system_p90_secs",
    "acknowledgement_p50_secs",
    "acknowledgement_p90_secs",
    "human_p50_secs",
    "human_p90_secs",
    "time_to_meeting_p50_secs",
    "won_rate",
];

/// The headline (this window's totals and the previous period's) then one row per rep, as
/// the report's CSV writes figures: rates to four places, durations in seconds.
fn csv(d: &Dashboard, config: &Config) -> String {
    let rate = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    let secs = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let row = |period: &str, rep: &str, name: &str, g: &Group| {
        let cells = [
            csv_text(period),
            csv_text(rep),
            csv_text(name),
            g.leads.to_string(),
            g.contacted.to_string(),
            rate(g.contact_rate),
            g.meetings_booked.to_string(),
            rate(g.meeting_booked_rate),
            g.sla_met.to_string(),
            g.sla_missed.to_string(),
            g.sla_pending.to_string(),
            rate(g.sla_compliance),
            secs(g.first_response.p50_secs),
            secs(g.first_response.p90_secs),
            secs(g.system.p50_secs),
            secs(g.system.p90_secs),
            secs(g.acknowledgement.p50_secs),
            secs(g.acknowledgement.p90_secs),
            secs(g.human.p50_secs),
            secs(g.human.p90_secs),
            secs(g.time_to_meeting.p50_secs),
            rate(g.won_rate),
        ];
        cells.join(",") + "\r\n"
    };
    let mut out = CSV_HEADER.join(",") + "\r\n";
    out += &row("current", "(all)", "", &d.current.totals);
    out += &row("previous", "(all)", "", &d.previous.totals);
    for g in &d.current.groups {
        let name = config.rep(&g.key).map_or("", |r| r.name.as_str());
        out += &row("current", &g.key, name, g);
    }
    out
}

/// One text cell: a leading `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'` so
/// a spreadsheet reads a formula-looking rep name or source as text, then the cell is quoted
/// (quotes doubled) when it holds a separator, a quote or a line break.
fn csv_text(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

// ---------------------------------------------------------------------------------------
// Chart geometry: pure, finite whatever the data (zero leads, one day, a missing figure).

/// A chart's size and the margins around its plot, in SVG user units.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn standard() -> Frame {
        Frame {
            width: 520.0,
            height: 260.0,
            left: 56.0,
            right: 12.0,
            top: 20.0,
            bottom: 30.0,
        }
    }

    fn wide() -> Frame {
        Frame {
            width: 900.0,
            ..Frame::standard()
        }
    }

    fn plot_width(&self) -> f64 {
        (self.width - self.left - self.right).max(0.0)
    }

    fn plot_height(&self) -> f64 {
        (self.height - self.top - self.bottom).max(0.0)
    }

    /// The y of `value` on an axis from 0 to `top` (the baseline when `top` is not positive).
    fn y_of(&self, value: f64, top: f64) -> f64 {
        self.top + self.plot_height() - scaled(value, top, self.plot_height())
    }

    /// The x of point `i` of `n` spread over the plot's width; a lone point in the middle.
    fn x_at(&self, i: usize, n: usize) -> f64 {
        if n <= 1 {
            return self.left + self.plot_width() / 2.0;
        }
        self.left + self.plot_width() * i as f64 / (n - 1) as f64
    }
}

/// `value` of `top` as a length of `extent`: 0 for a non-positive or non-finite `top` or
/// value, at most `extent`.
fn scaled(value: f64, top: f64, extent: f64) -> f64 {
    if !(top > 0.0 && top.is_finite() && value.is_finite()) {
        return 0.0;
    }
    (value / top).clamp(0.0, 1.0) * extent
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `max`; 1 when there is nothing to show.
fn nice_ceiling(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// The top of a duration axis in seconds: the smallest round span (seconds, minutes, hours,
/// days) at or above `max`, so the axis and its half read as people say durations.
fn duration_ceiling(max: f64) -> f64 {
    // Each step's half is a whole second or more, so the middle tick never repeats an end.
    const STEPS: [f64; 19] = [
        2.0,
        10.0,
        30.0,
        60.0,
        120.0,
        300.0,
        600.0,
        900.0,
        1800.0,
        3600.0,
        7200.0,
        14_400.0,
        21_600.0,
        43_200.0,
        86_400.0,
        172_800.0,
        432_000.0,
        864_000.0,
        2_592_000.0,
    ];
    if !(max > 0.0 && max.is_finite()) {
        return 60.0;
    }
    STEPS
        .into_iter()
        .find(|step| *step >= max)
        .unwrap_or_else(|| nice_ceiling(max / 86_400.0) * 86_400.0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

/// One bar per value, side by side in equal slots, standing on the baseline.
fn bars(values: &[f64], top: f64, frame: &Frame) -> Vec<Bar> {
    if values.is_empty() {
        return Vec::new();
    }
    let slot = frame.plot_width() / values.len() as f64;
    let width = slot * 0.7;
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let height = scaled(*value, top, frame.plot_height());
            Bar {
                x: frame.left + slot * i as f64 + (slot - width) / 2.0,
                y: frame.top + frame.plot_height() - height,
                width,
                height,
            }
        })
        .collect()
}

/// The runs of known points of a daily series as plot coordinates: a day without a figure
/// breaks the line rather than drawing it at zero.
fn segments(points: &[Option<f64>], frame: &Frame, top: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    for (i, point) in points.iter().enumerate() {
        match point {
            Some(value) => run.push((frame.x_at(i, points.len()), frame.y_of(*value, top))),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

fn polyline_points(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{},{}", coord(*x), coord(*y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A coordinate as SVG text: one decimal, and 0 rather than `NaN` or `inf`.
fn coord(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "0".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_hours_are_read_in_runs_of_consecutive_hours() {
        assert_eq!(runs([1, 2, 3, 7, 9, 10]), [(1, 3), (7, 7), (9, 10)]);
        assert_eq!(runs([]), []);
    }

    #[test]
    fn nothing_to_show_scales_to_zero_never_nan() {
        let frame = Frame::standard();
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(scaled(5.0, 0.0, 100.0), 0.0);
        assert_eq!(scaled(f64::NAN, 10.0, 100.0), 0.0);
        let zero = bars(&[0.0; 8], nice_ceiling(0.0), &frame);
        assert_eq!(zero.len(), 8);
        assert!(zero.iter().all(|b| b.height == 0.0
            && b.y == frame.top + frame.plot_height()
            && [b.x, b.y, b.width].iter().all(|v| v.is_finite())));
        assert!(bars(&[], 1.0, &frame).is_empty());
        assert_eq!(coord(f64::NAN), "0");
        assert_eq!(coord(f64::INFINITY), "0");
        assert_eq!(coord(12.345), "12.3");
    }

    #[test]
    fn axes_round_up_to_one_two_or_five() {
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(200.0), 200.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn duration_axes_end_on_a_round_span() {
        assert_eq!(duration_ceiling(0.0), 60.0);
        assert_eq!(duration_ceiling(f64::NAN), 60.0);
        assert_eq!(duration_ceiling(30.0), 30.0);
        assert_eq!(duration_ceiling(1185.0), 1800.0);
        assert_eq!(duration_ceiling(6000.0), 7200.0);
        assert_eq!(duration_ceiling(218_380.0), 432_000.0);
        assert_eq!(duration_ceiling(40.0 * 86_400.0), 50.0 * 86_400.0);
    }

    #[test]
    fn bars_share_the_plot_and_stand_on_the_baseline() {
        let frame = Frame::standard();
        let plot = frame.plot_height();
        let base = frame.top + plot;
        let b = bars(&[10.0, 5.0, 0.0, 20.0], 20.0, &frame);
        assert_eq!(b[0].height, plot / 2.0);
        assert_eq!(b[1].height, plot / 4.0);
        assert_eq!(b[2].height, 0.0);
        assert_eq!(b[3].height, plot);
        assert!(b.iter().all(|bar| (bar.y + bar.height - base).abs() < 1e-9));
        let slot = frame.plot_width() / 4.0;
        assert!((b[1].x - b[0].x - slot).abs() < 1e-9);
        assert!(b[0].x >= frame.left);
        assert!(b[3].x + b[3].width <= frame.left + frame.plot_width() + 1e-9);
        // A value above the axis top is clipped to the plot.
        assert_eq!(bars(&[50.0], 20.0, &frame)[0].height, plot);
    }

    #[test]
    fn a_missing_day_breaks_the_line() {
        let frame = Frame::wide();
        let points = [Some(1.0), Some(0.5), None, None, Some(0.0)];
        let runs = segments(&points, &frame, 1.0);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].len(), 2);
        assert_eq!(runs[0][0], (frame.left, frame.top));
        assert_eq!(runs[0][1].1, frame.top + frame.plot_height() / 2.0);
        assert_eq!(
            runs[1],
            vec![(
                frame.left + frame.plot_width(),
                frame.top + frame.plot_height()
            )]
        );
        assert!(segments(&[None, None], &frame, 1.0).is_empty());
        // One day: its point in the middle, not a division by zero.
        assert_eq!(
            segments(&[Some(1.0)], &frame, 1.0)[0][0].0,
            frame.left + frame.plot_width() / 2.0
        );
        assert_eq!(
            polyline_points(&[(1.0, 2.25), (3.0, 4.0)]),
            "1.0,2.2 3.0,4.0"
        );
    }

    #[test]
    fn csv_cells_cannot_become_formulas_or_break_rows() {
        assert_eq!(csv_text("alice"), "alice");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("+1"), "'+1");
        assert_eq!(csv_text("-2"), "'-2");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("O'Brien, Erin"), "\"O'Brien, Erin\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text(""), "");
    }

    #[test]
    fn holders_follow_access_after_a_claim() {
        use leadrelay_shared::report::LeadFacts;
        // The holders of a lead as its report record names them.
        let holders = |f: &LeadFacts| -> Vec<(HolderKind, String)> {
            let records = Records::of(std::slice::from_ref(f), &Directory::default());
            let record = records.records().first().expect("captured");
            record
                .holders()
                .map(|(kind, id)| (kind, records.strings().get(id).to_owned()))
                .collect()
        };
        let rep = |id: &str| (HolderKind::Rep, id.to_owned());
        let base = LeadFacts {
            id: "l".into(),
            source: "website".into(),
            state: leadrelay_shared::model::LeadState::Claimed,
            tier: None,
            sla_minutes: None,
            owner: Some(Owner::Rep("bruno".into())),
            rule: None,
            routed_to: Some("rep:fatima".into()),
            claimed_by: Some("bruno".into()),
            page: None,
            captured_at: Some("2026-11-23T10:00:00Z".parse().expect("time")),
            held_until: None,
            notified_at: None,
            claimed_at: None,
            first_touch_at: None,
            meeting_booked_at: None,
            meeting_held_at: None,
            closed_at: None,
            escalations: 0,
            reassigned: true,
            misroutes: Vec::new(),
            outcome: None,
            handoff: Vec::new(),
            merged: false,
        };
        // Claimed away from the routed rep: the claim replaced her on the assignment.
        assert_eq!(holders(&base), [rep("bruno"), rep("bruno")]);
        // Escalated first: she stays on the ladder, as `access::holds` sees it.
        let escalated = LeadFacts {
            escalations: 1,
            ..base.clone()
        };
        assert!(holders(&escalated).contains(&rep("fatima")));
        // Not claimed: whoever routing chose.
        let waiting = LeadFacts {
            owner: Some(Owner::Queue("sales-inbox".into())),
            routed_to: Some("queue:sales-inbox".into()),
            claimed_by: None,
            ..base
        };
        assert!(holders(&waiting)
            .iter()
            .all(|h| *h == (HolderKind::Queue, "sales-inbox".to_owned())));
    }
}

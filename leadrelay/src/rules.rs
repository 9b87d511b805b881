//! The routing commands RevOps runs before and after changing rules: `explain` (why a lead
//! goes where it goes), `rules test` (a file of cases), `rules diff` (what a new configuration
//! would have done to last week's leads) and `pools` (each pool's ledger).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::config::Config;
use leadrelay_shared::mapping::Mapped;
use leadrelay_shared::model::{Assignment, Lead, LeadState, Owner};
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::replay::Replay;
use leadrelay_shared::routing::explain::explain_text;
use leadrelay_shared::routing::{open_leads_counter, Router, Snapshot};
use leadrelay_shared::rulebook::Rulebook;
use leadrelay_shared::stages::rules_diff;
use leadrelay_shared::validate;
use serde::Deserialize;

/// Builds the lead a capture payload becomes: validated, enriched and qualified as the
/// pipeline would, captured at `at`.
pub fn lead_from_capture(
    config: &Config,
    rulebook: &Rulebook,
    source: Option<&str>,
    body: &[u8],
    at: Timestamp,
) -> anyhow::Result<Lead> {
    let source = match source {
        Some(id) => config
            .source(id)
            .with_context(|| format!("unknown source {id:?}"))?,
        None => config
            .sources
            .first()
            .map(|s| s.get_ref())
            .context("no sources configured")?,
    };
    let capture = match validate::read_payload(source.payload.as_ref(), body, at)
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?
    {
        Mapped::Lead { capture, .. } => *capture,
        Mapped::Activity { activity, .. } => anyhow::bail!(
            "source {} takes event {:?} as activity ({}), not as a lead",
            source.id,
            activity.event,
            activity.kind.name()
        ),
        Mapped::Ignored { event } => anyhow::bail!(
            "source {} ignores event {event:?}: it is not one of its lead events",
            source.id
        ),
    };
    let flags = validate::check(&capture, &config.validation)
        .map_err(|e| anyhow::anyhow!("ingest would refuse this lead: {e}"))?;
    let mut lead = Lead::captured(
        "what-if".into(),
        "what-if".into(),
        source.id.clone(),
        "what-if".into(),
        capture,
        flags,
        at,
    );
    lead.state = LeadState::Enriched;
    lead.enrichment = Some(rulebook.enrich(&lead));
    lead.qualification = Some(rulebook.qualify(&lead));
    Ok(lead)
}

/// A refusal with the JSON path it names.
pub fn describe(rejection: &validate::Rejection) -> String {
    match &rejection.field {
        Some(field) => format!("{} (at {field})", rejection.error),
        None => rejection.error.clone(),
    }
}

/// Routes `lead` at `at` on the store's current figures (open leads, ledgers) when there is a
/// store, or on empty ones; writes nothing.
pub async fn what_if(
    router: &Router,
    lead: &Lead,
    at: Timestamp,
    store: Option<&dyn LeadStore>,
) -> anyhow::Result<Assignment> {
    let plan = router.plan(lead, at);
    let needs = router.needs(&plan);
    let snapshot = match store {
        Some(store) => {
            let counters = store.counters(&needs.counter_names()).await?;
            let mut ledgers = Vec::new();
            for (pool, period) in &needs.ledgers {
                ledgers.push(store.ledger(pool, period).await?);
            }
            Snapshot::new(&needs, counters, ledgers)
        }
        None => Snapshot::new(
            &needs,
            vec![0; needs.reps.len()],
            vec![Default::default(); needs.ledgers.len()],
        ),
    };
    Ok(router.choose(&plan, &snapshot).assignment)
}

/// `leadrelay explain FILE`: the decision for a capture payload, and why.
pub async fn explain_file(
    config: &Config,
    file: &Path,
    source: Option<&str>,
    at: Timestamp,
    store: Option<&dyn LeadStore>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let rulebook = Rulebook::new(config);
    let router = Router::new(config);
    let mut lead = lead_from_capture(config, &rulebook, source, &body, at)?;
    let assignment = what_if(&router, &lead, at, store).await?;
    lead.id = file.display().to_string();
    writeln!(out, "{}", explain_text(&lead, &assignment))?;
    if store.is_none() {
        writeln!(
            out,
            "(no data directory: open leads and pool ledgers taken as empty)"
        )?;
    }
    Ok(())
}

/// `leadrelay explain --lead ID`: the decision as it was made and stored.
pub async fn explain_stored(
    store: &dyn LeadStore,
    id: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let lead = store
        .get_lead(id)
        .await?
        .with_context(|| format!("no lead {id}"))?;
    let Some(assignment) = &lead.assignment else {
        bail!("lead {id} is {} and has not been routed yet", lead.state);
    };
    writeln!(out, "{}", explain_text(&lead, assignment))?;
    Ok(())
}

/// A routing test file: leads in, expected owners out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// When the cases are routed, unless a case says otherwise (RFC 3339).
    #[serde(default)]
    pub at: Option<Timestamp>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// A capture payload file, relative to the case file.
    #[serde(default)]
    pub lead: Option<PathBuf>,
    /// Or the payload inline, with the same fields the chatbot posts.
    #[serde(default)]
    pub capture: Option<toml::Table>,
    #[serde(default)]
    pub source: Option<String>,
    /// What enrichment would find, when the firmographics table does not know the company.
    #[serde(default)]
    pub enrichment: Option<EnrichmentOverride>,
    /// Open leads per rep before the case is routed (capacity cases).
    #[serde(default)]
    pub open: BTreeMap<String, i64>,
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// `rep:ID`, `queue:ID` or `pool:ID` (any member of the pool, or the pool itself).
    pub expect: String,
    /// Whether the alert is held until the team opens.
    #[serde(default)]
    pub held: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentOverride {
    pub company: Option<String>,
    pub country: Option<String>,
    pub employees: Option<u32>,
    pub industry: Option<String>,
    pub account_owner: Option<String>,
}

/// How a case went.
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub got: String,
    pub explanation: String,
}

/// Runs every case of a file against a configuration.
pub fn run_cases(config: &Config, path: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: CaseFile = toml::from_str(&text)
        .with_context(|| format!("{}: not a routing test file", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rulebook = Rulebook::new(config);
    let router = Router::new(config);
    let mut results = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let at = case.at.or(file.at).unwrap_or_else(Timestamp::now);
        let body = match (&case.lead, &case.capture) {
            (Some(lead), None) => std::fs::read(base.join(lead))
                .with_context(|| format!("case {:?}: reading {}", case.name, lead.display()))?,
            (None, Some(capture)) => serde_json::to_vec(capture)?,
            _ => bail!(
                "case {:?}: give exactly one of `lead` (a file) or `capture` (inline)",
                case.name
            ),
        };
        let mut lead = lead_from_capture(config, &rulebook, case.source.as_deref(), &body, at)
            .with_context(|| format!("case {:?}", case.name))?;
        if let Some(o) = &case.enrichment {
            let e = lead.enrichment.get_or_insert_with(Default::default);
            if o.company.is_some() {
                e.company = o.company.clone();
            }
            if let Some(country) = &o.country {
                e.country = Some(country.to_ascii_uppercase());
            }
            e.employees = o.employees.or(e.employees);
            e.industry = o.industry.clone().or(e.industry.take());
            e.account_owner = o.account_owner.clone().or(e.account_owner.take());
            lead.qualification = Some(rulebook.qualify(&lead));
        }
        let mut figures = Replay::new();
        for (rep, open) in &case.open {
            figures = figures.with_counter(&open_leads_counter(&Owner::Rep(rep.clone())), *open);
        }
        let assignment = figures.route(&router, &lead, at);
        let owner = assignment.owner.key();
        let in_pool = assignment.pool.as_ref().map(|p| format!("pool:{p}"));
        let destination_ok = case.expect == owner || Some(&case.expect) == in_pool.as_ref();
        let held_ok = case
            .held
            .is_none_or(|held| held == assignment.held_until.is_some());
        lead.id = case.name.clone();
        results.push(CaseResult {
            name: case.name.clone(),
            passed: destination_ok && held_ok,
            got: match (&in_pool, assignment.held_until) {
                (Some(pool), Some(until)) => format!("{owner} (from {pool}, held until {until})"),
                (Some(pool), None) => format!("{owner} (from {pool})"),
                (None, Some(until)) => format!("{owner} (held until {until})"),
                (None, None) => owner,
            },
            explanation: explain_text(&lead, &assignment),
        });
    }
    Ok(results)
}

/// `leadrelay rules test FILE`: prints each case; fails if any case fails.
pub fn test_cases(
    config: &Config,
    path: &Path,
    verbose: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let results = run_cases(config, path)?;
    let failed = results.iter().filter(|r| !r.passed).count();
    for result in &results {
        if result.passed {
            writeln!(out, "ok    {}  ->  {}", result.name, result.got)?;
            if verbose {
                writeln!(out, "{}", indent(&result.explanation))?;
            }
        } else {
            writeln!(out, "FAIL  {}  ->  got {}", result.name, result.got)?;
            writeln!(out, "{}", indent(&result.explanation))?;
        }
    }
    writeln!(
        out,
        "\n{} case(s): {} passed, {failed} failed",
        results.len(),
        results.len() - failed
    )?;
    if failed > 0 {
        bail!("{failed} routing case(s) failed");
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `leadrelay rules diff NEW --since 7d`: replays the stored leads of the window through the
/// current and the new configuration; writes nothing.
pub async fn diff(
    current: &Config,
    new: &Config,
    store: &dyn LeadStore,
    since: SignedDuration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let from = Timestamp::now()
        .checked_sub(since)
        .context("--since reaches before the start of time")?;
    let leads = rules_diff::leads_since(store, from).await?;
    let report = rules_diff::diff(current, new, &leads);
    writeln!(
        out,
        "Replayed {} lead(s) captured since {from} through both configurations (nothing written).",
        report.leads
    )?;
    if report.moved.is_empty() {
        writeln!(out, "No lead would change destination.")?;
    } else {
        writeln!(
            out,
            "\n{} lead(s) would change destination:",
            report.moved.len()
        )?;
        for moved in &report.moved {
            writeln!(
                out,
                "  {}  {}  {} (rule {:?})  ->  {} (rule {:?})",
                moved.lead_id,
                moved.captured_at.map(|t| t.to_string()).unwrap_or_default(),
                moved.before,
                moved.before_rule,
                moved.after,
                moved.after_rule
            )?;
        }
    }
    if report.reshuffled > 0 {
        writeln!(
            out,
            "{} more lead(s) stay in their pool but reach another member: the rotation shifts.",
            report.reshuffled
        )?;
    }
    let total = report.leads.max(1) as f64;
    writeln!(out, "\nDestinations (share of leads, before -> after):")?;
    for (destination, (before, after)) in &report.destinations {
        writeln!(
            out,
            "  {destination:<28} {before:>5} ({:>5.1}%) -> {after:>5} ({:>5.1}%)  {:+}",
            *before as f64 * 100.0 / total,
            *after as f64 * 100.0 / total,
            *after as i64 - *before as i64
        )?;
    }
    writeln!(out, "\nRep load (leads, before -> after):")?;
    for (rep, (before, after)) in &report.reps {
        writeln!(
            out,
            "  {rep:<16} {before:>5} -> {after:>5}  {:+}",
            *after as i64 - *before as i64
        )?;
    }
    Ok(())
}

/// `leadrelay pools`: each pool's ledger for the current period.
pub async fn pools(
    config: &Config,
    store: &dyn LeadStore,
    at: Timestamp,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let router = Router::new(config);
    for pool in router.pool_ids() {
        let needs = router.pool_needs(&pool, at);
        let counters = store.counters(&needs.counter_names()).await?;
        let mut ledgers = Vec::new();
        for (id, period) in &needs.ledgers {
            ledgers.push(store.ledger(id, period).await?);
        }
        let Some(report) = router.pool_report(&pool, at, &Snapshot::new(&needs, counters, ledgers))
        else {
            continue;
        };
        writeln!(
            out,
            "pool {} ({}): {}, reset {:?} (period {}, ledger v{}), catch-up {}, account-owned leads count: {}",
            report.pool,
            report.name,
            report.strategy.as_str(),
            report.reset,
            report.period,
            report.version,
            if report.catch_up { "yes" } else { "no" },
            if report.count_account_owned { "yes" } else { "no" },
        )?;
        writeln!(
            out,
            "  {:<10} {:>6} {:>6} {:>9} {:>8} {:>8} {:>9}  now",
            "rep", "weight", "share", "received", "by acct", "owed", "open/cap"
        )?;
        for m in &report.members {
            let open = match (m.open, m.capacity) {
                (Some(open), Some(cap)) => format!("{open}/{cap}"),
                (Some(open), None) => open.to_string(),
                (None, _) => "?".into(),
            };
            writeln!(
                out,
                "  {:<10} {:>6} {:>5.0}% {:>9} {:>8} {:>8.2} {:>9}  {}",
                m.rep, m.weight, m.share_percent, m.received, m.account_owned, m.owed, open, m.now
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

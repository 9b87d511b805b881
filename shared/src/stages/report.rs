//! Reading a report for the CLI and the JSON API alike: the window's lead facts from the
//! store, the figures from [`crate::report`].

use jiff::Timestamp;

use crate::config::Config;
use crate::ports::{LeadStore, StoreError};
use crate::report::{self, Audit, Dimension, Directory, Hours, Params, SpeedToLead, WindowError};

/// The most unmatched activity events one audit lists.
pub const MAX_UNMATCHED: usize = 10_000;

/// A report as asked for: `since` and `until` as ages (`7d`) or RFC 3339 instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub since: String,
    pub until: Option<String>,
    pub by: Dimension,
    pub hours: Hours,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The speed-to-lead report over the leads captured in the query's window, as of `now`.
pub async fn speed_to_lead(
    store: &dyn LeadStore,
    config: &Config,
    query: &ReportQuery,
    now: Timestamp,
) -> Result<SpeedToLead, ReportError> {
    let (from, to) = report::window(&query.since, query.until.as_deref(), now)?;
    let facts = store.lead_facts(from, to).await?;
    let params = Params {
        from,
        to,
        by: query.by,
        hours: query.hours,
        now,
    };
    Ok(report::speed_to_lead(
        &facts,
        &params,
        &Directory::new(config),
        &config.reports.handoff_fields,
    ))
}

/// The handoff audit of the leads captured, and the unmatched events received, in the window.
pub async fn audit(
    store: &dyn LeadStore,
    since: &str,
    until: Option<&str>,
    now: Timestamp,
) -> Result<Audit, ReportError> {
    let (from, to) = report::window(since, until, now)?;
    let facts = store.lead_facts(from, to).await?;
    let unmatched = store.unmatched_since(from, MAX_UNMATCHED).await?;
    Ok(report::audit(&facts, &unmatched, from, to, now))
}

//! The enrichment provider port and the code that runs providers: each is tried in the
//! configured order within strict time budgets. The providers that do I/O (an HTTP
//! firmographics API, the transcript behind a URL, IP geolocation) are adapters, in the
//! `leadrelay-providers` and `leadrelay-geoip` crates.
//!
//! The local, pure part of enrichment (cleaning, free-mail and the domain table) runs first in
//! [`crate::rulebook::Rulebook::enrich`]; providers then fill only what is still missing. A
//! provider that fails, times out or has its circuit open is recorded on the lead and costs no
//! more than its budget: the lead goes on to routing with what is known.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;

use crate::model::{Enrichment, EnrichmentStatus, Lead, ProviderOutcome, ProviderReport, Turn};

/// What a provider is asked about: the lead as captured and what is known so far.
pub struct LookupRequest<'a> {
    pub lead: &'a Lead,
    pub enrichment: &'a Enrichment,
}

impl LookupRequest<'_> {
    /// The registrable domain of the prospect's e-mail, unless it is a free-mail address
    /// (gmail.com says nothing about the prospect's company).
    pub fn company_domain(&self) -> Option<&str> {
        if self.enrichment.free_mail {
            return None;
        }
        self.enrichment.domain.as_deref()
    }

    /// The visitor's IP address, when the chatbot sent a valid one.
    pub fn visitor_ip(&self) -> Option<IpAddr> {
        self.lead
            .capture
            .metadata
            .ip_address
            .as_deref()
            .and_then(|ip| ip.trim().parse().ok())
    }
}

/// What a provider learned. Only fields still unknown are taken from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub company: Option<String>,
    pub employees: Option<u32>,
    pub industry: Option<String>,
    /// The company's country, ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// Where the visitor was, ISO 3166-1 alpha-2.
    pub visitor_country: Option<String>,
    pub account_owner: Option<String>,
    /// The conversation, fetched from `conversation_transcript_url`.
    pub transcript: Vec<Turn>,
    /// What the provider found, in words, for the lead's report (`explain`): which record
    /// answered, or why an answer was not taken. Never a secret.
    pub note: Option<String>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        *self == Findings::default()
    }
}

/// Why a provider gave no answer. The text is recorded on the lead: it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("timed out after {0} ms")]
    TimedOut(u64),
    #[error("circuit open after repeated failures; retried after {0}")]
    CircuitOpen(String),
    #[error("{0}")]
    Failed(String),
}

/// One enrichment provider.
#[async_trait]
pub trait EnrichmentProvider: Send + Sync {
    /// The name the configuration and the lead's report use.
    fn name(&self) -> &str;

    /// Whether there is anything for this provider to do for the lead as known so far, and if
    /// not, why (recorded as `skipped`).
    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String>;

    /// Looks the lead up. `budget` is what is left of the provider's own budget and the
    /// lead's; the caller also cancels the call when it runs out, so a provider that retries
    /// must fit its retries inside it.
    async fn lookup(
        &self,
        request: &LookupRequest<'_>,
        budget: Duration,
    ) -> Result<Findings, ProviderError>;
}

/// A provider and the most it may take for one lead.
#[derive(Clone)]
pub struct Budgeted {
    pub provider: Arc<dyn EnrichmentProvider>,
    pub budget: Duration,
}

/// The configured providers, in order.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Budgeted>,
}

impl Providers {
    pub fn new(list: Vec<Budgeted>) -> Self {
        Providers { list }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|b| b.provider.name())
    }

    /// Runs each provider in order on what the local step found, within `lead_budget` in all.
    /// Never fails: every failure becomes a [`ProviderReport`] and the status says how complete
    /// the result is. Returns the enrichment and a transcript, if one was fetched.
    pub async fn enrich(
        &self,
        lead: &Lead,
        mut enrichment: Enrichment,
        lead_budget: Duration,
    ) -> (Enrichment, Vec<Turn>) {
        let started = Instant::now();
        let mut transcript = Vec::new();
        let mut any_failed = false;
        for Budgeted { provider, budget } in &self.list {
            let call_started = Instant::now();
            let report = |outcome: ProviderOutcome, detail: String| ProviderReport {
                provider: provider.name().to_owned(),
                outcome,
                detail,
                elapsed_ms: millis(call_started.elapsed()),
            };
            let left = lead_budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                any_failed = true;
                enrichment.providers.push(report(
                    ProviderOutcome::TimedOut,
                    format!(
                        "not tried: the lead's enrichment budget of {} ms was spent",
                        millis(lead_budget)
                    ),
                ));
                continue;
            }
            let request = LookupRequest {
                lead,
                enrichment: &enrichment,
            };
            if let Err(why) = provider.wanted(&request) {
                enrichment
                    .providers
                    .push(report(ProviderOutcome::Skipped, why));
                continue;
            }
            let allowed = (*budget).min(left);
            let answer =
                match tokio::time::timeout(allowed, provider.lookup(&request, allowed)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(ProviderError::TimedOut(millis(allowed))),
                };
            let entry = match answer {
                Ok(mut findings) => {
                    let note = findings.note.take();
                    let filled = merge(&mut enrichment, &mut transcript, findings);
                    if filled.is_empty() {
                        report(ProviderOutcome::NoMatch, note.unwrap_or_default())
                    } else {
                        enrichment.sources.push(provider.name().to_owned());
                        for field in &filled {
                            enrichment
                                .origins
                                .insert((*field).to_owned(), provider.name().to_owned());
                        }
                        let detail = match note {
                            Some(note) => format!("{} ({note})", filled.join(", ")),
                            None => filled.join(", "),
                        };
                        report(ProviderOutcome::Answered, detail)
                    }
                }
                Err(error) => {
                    any_failed = true;
                    let outcome = match error {
                        ProviderError::TimedOut(_) => ProviderOutcome::TimedOut,
                        ProviderError::CircuitOpen(_) => ProviderOutcome::CircuitOpen,
                        ProviderError::Failed(_) => ProviderOutcome::Failed,
                    };
                    tracing::warn!(lead_id = %lead.id, provider = provider.name(),
                        outcome = outcome.as_str(), error = %error, "enrichment provider gave no answer");
                    report(outcome, error.to_string())
                }
            };
            enrichment.providers.push(entry);
        }
        enrichment.note_missing();
        enrichment.status = if !any_failed {
            EnrichmentStatus::Complete
        } else if enrichment.company.is_some() || enrichment.country.is_some() {
            EnrichmentStatus::Partial
        } else {
            EnrichmentStatus::Failed
        };
        (enrichment, transcript)
    }
}

/// Why the configured providers could not be built (a database file that cannot be read, an
/// HTTP client that cannot be made): the process refuses to start rather than run without them.
#[derive(Debug, thiserror::Error)]
#[error("enrichment provider {provider}: {message}")]
pub struct SetupError {
    pub provider: String,
    pub message: String,
}

/// Takes what `findings` knows and `enrichment` does not; returns the names of the fields
/// filled. Earlier providers win: the configured order is the order of trust.
fn merge(
    enrichment: &mut Enrichment,
    transcript: &mut Vec<Turn>,
    findings: Findings,
) -> Vec<&'static str> {
    let mut filled = Vec::new();
    fn fill<T>(
        slot: &mut Option<T>,
        value: Option<T>,
        name: &'static str,
        filled: &mut Vec<&'static str>,
    ) {
        if slot.is_none() && value.is_some() {
            *slot = value;
            filled.push(name);
        }
    }
    fill(
        &mut enrichment.company,
        findings.company,
        "company",
        &mut filled,
    );
    fill(
        &mut enrichment.employees,
        findings.employees,
        "employees",
        &mut filled,
    );
    fill(
        &mut enrichment.industry,
        findings.industry,
        "industry",
        &mut filled,
    );
    fill(
        &mut enrichment.account_owner,
        findings.account_owner,
        "account_owner",
        &mut filled,
    );
    fill(
        &mut enrichment.visitor_country,
        findings.visitor_country.clone(),
        "visitor_country",
        &mut filled,
    );
    // The company's own country first; where it is unknown, where the visitor is.
    let country = findings.country.or(findings.visitor_country);
    fill(&mut enrichment.country, country, "country", &mut filled);
    if transcript.is_empty() && !findings.transcript.is_empty() {
        *transcript = findings.transcript;
        filled.push("transcript");
    }
    filled
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

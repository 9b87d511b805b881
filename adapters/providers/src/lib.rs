//! leadrelay's enrichment providers that call out over HTTP: a firmographics API
//! ([`http_api`], shaped like Clearbit's company lookup), the conversation behind a
//! transcript URL ([`transcript`]) and the prospect's existing owner in HubSpot or Salesforce
//! ([`crm_lookup`]). Adapter layer: they implement the core's
//! [`EnrichmentProvider`](leadrelay_shared::enrichment::EnrichmentProvider) port.

pub mod breaker;
pub mod crm_lookup;
pub mod http_api;
pub mod transcript;

use std::sync::Arc;

use leadrelay_shared::config::{providers, Config};
use leadrelay_shared::enrichment::{Budgeted, Providers, SetupError};
use leadrelay_shared::ports::EnrichmentCache;

/// Builds the providers `[enrichment] providers` lists, in that order, each with its budget.
/// `cache` keeps what providers cache (the HTTP provider's per-domain answers): the lead store.
/// `geoip` is the GeoIP provider when the runtime has one (`leadrelay-geoip`, opened by the
/// embedded binary); a configuration that lists it without one is refused.
pub fn from_config(
    config: &Config,
    cache: Arc<dyn EnrichmentCache>,
    mut geoip: Option<Budgeted>,
) -> Result<Providers, SetupError> {
    let enrichment = &config.enrichment;
    let mut list = Vec::with_capacity(enrichment.providers.len());
    for name in &enrichment.providers {
        let name = name.get_ref();
        // Validation already refused a name that is not configured.
        let default_ms = enrichment.provider_budget_ms;
        let built = match (name.as_str(), &enrichment.transcript) {
            (providers::GEOIP, _) => Some(geoip.take().ok_or_else(|| SetupError {
                provider: name.clone(),
                message: "this runtime has no GeoIP database reader".into(),
            })?),
            (providers::TRANSCRIPT, Some(c)) => Some(transcript::TranscriptFetcher::budgeted(
                config,
                c.get_ref(),
                default_ms,
            )?),
            (providers::CRM, _) => crm_lookup::from_config(config, &cache)?,
            _ => http_api::from_config(enrichment, name, &cache)?,
        };
        list.push(built.ok_or_else(|| SetupError {
            provider: name.clone(),
            message: "not configured".into(),
        })?);
    }
    Ok(Providers::new(list))
}

//! What a configuration change would have done to stored leads: `leadrelay rules diff` and
//! the console's what-if. The window's leads are read once and replayed through both
//! configurations by [`crate::replay::diff`]; nothing is written.

use jiff::Timestamp;

use crate::config::Config;
use crate::model::Lead;
use crate::ports::{LeadStore, StoreError};
use crate::replay::{self, DiffReport, Rules};
use crate::routing::Router;
use crate::rulebook::Rulebook;

/// The most leads one diff replays.
pub const MAX_LEADS: usize = 1_000_000;

/// The leads captured since `from` that a diff replays: the enriched ones (qualification and
/// routing start from the stored enrichment), in captured order.
pub async fn leads_since(store: &dyn LeadStore, from: Timestamp) -> Result<Vec<Lead>, StoreError> {
    Ok(store
        .leads_since(from, MAX_LEADS)
        .await?
        .into_iter()
        .filter(|lead| lead.enrichment.is_some())
        .collect())
}

/// Replays `leads` through the `current` and the `new` configuration.
pub fn diff(current: &Config, new: &Config, leads: &[Lead]) -> DiffReport {
    let (book_now, router_now) = (Rulebook::new(current), Router::new(current));
    let (book_new, router_new) = (Rulebook::new(new), Router::new(new));
    replay::diff(
        Rules {
            rulebook: &book_now,
            router: &router_now,
        },
        Rules {
            rulebook: &book_new,
            router: &router_new,
        },
        leads,
    )
}

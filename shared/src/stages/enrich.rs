//! The enrich stage: the local table first, then the providers that do I/O within the lead's
//! tier budget.

use std::time::Duration;

use tracing::info;

use super::{Outcome, Pipeline, StageError};
use crate::model::{Enrichment, Lead, LeadState, Stage};
use crate::routing::effects::Effects;

impl Pipeline {
    pub(super) async fn enrich(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state > LeadState::Captured {
            self.forward(&lead, Stage::Route).await?;
            return Ok(Outcome {
                skipped_as_done: true,
                ..Outcome::default()
            });
        }
        let local = self.rulebook.enrich(&lead);
        let enrichment = if self.providers.is_empty() {
            local
        } else {
            let budget = self.enrichment_budget(&lead, &local);
            let (enrichment, transcript) = self.providers.enrich(&lead, local, budget).await;
            // A transcript fetched from its URL is kept as if the chatbot had sent it inline.
            if lead.capture.transcript.is_empty() {
                lead.capture.transcript = transcript;
            }
            enrichment
        };
        lead.enrichment = Some(enrichment);
        lead.state = LeadState::Enriched;
        lead.timeline.enriched_at = Some(self.clock.now());
        let applied = self
            .advance_and_forward(&lead, LeadState::Captured, &Effects::none(), Stage::Route)
            .await?;
        if applied {
            let e = lead.enrichment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "enrich",
                sources = ?e.map(|e| &e.sources), missing = ?e.map(|e| &e.missing), "enriched");
        }
        Ok(Outcome {
            skipped_as_done: !applied,
            ..Outcome::default()
        })
    }

    /// How long providers may take for this lead: its tier's budget, the tier read from what
    /// the local step found (the final tier is decided at routing, with everything known).
    fn enrichment_budget(&self, lead: &Lead, local: &Enrichment) -> Duration {
        let tier = self.rulebook.qualify_with(lead, local).tier;
        self.config
            .tier(tier)
            .map(|t| t.enrichment_budget())
            .unwrap_or(Duration::from_secs(1))
    }
}

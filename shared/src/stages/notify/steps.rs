//! The steps of one multi-step delivery (a CRM write: the note, the task), recorded as
//! delivery receipts of their own under the delivery's receipt (`hubspot:note`,
//! `esc1:hubspot:task`), so that a retry or a dead-letter replay does only what is missing.
//!
//! A step's attempt is its lease, written durably before the call: a finished step is
//! delivered, a step refused for sure is released, and a step whose outcome is unknown (a
//! timeout, a 5xx, a crash) keeps its lease, which the next attempt reads as "look before
//! doing it again" ([`StepStart::Uncertain`]). The lease is long on purpose: it is not there
//! to keep workers apart (the delivery's own receipt does that), but to remember the attempt.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{Clock, DeliveryStart, DeliverySteps, LeadStore, StepStart, StoreError};

/// How long an unsettled step is remembered as such: past any retry schedule and replay.
const STEP_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The store-backed steps of one delivery: `receipt` is the delivery's, round included.
pub(super) struct StepReceipts<'a> {
    pub store: &'a dyn LeadStore,
    pub clock: &'a dyn Clock,
    pub lead_id: &'a str,
    pub receipt: &'a str,
}

impl StepReceipts<'_> {
    fn key(&self, step: &str) -> String {
        format!("{}:{step}", self.receipt)
    }
}

#[async_trait]
impl DeliverySteps for StepReceipts<'_> {
    async fn begin(&self, step: &str) -> Result<StepStart, StoreError> {
        let key = self.key(step);
        let start = self
            .store
            .begin_delivery(self.lead_id, &key, self.clock.now(), STEP_MEMORY)
            .await?;
        Ok(match start {
            DeliveryStart::Proceed => StepStart::New,
            DeliveryStart::AlreadyDelivered => StepStart::Done,
            DeliveryStart::InFlight { .. } => StepStart::Uncertain,
        })
    }

    async fn finish(&self, step: &str) -> Result<(), StoreError> {
        self.store
            .finish_delivery(self.lead_id, &self.key(step), self.clock.now())
            .await
    }

    async fn release(&self, step: &str) -> Result<(), StoreError> {
        self.store
            .release_delivery(self.lead_id, &self.key(step))
            .await
    }
}

//! The ingest stage: `POST /webhooks/{source}` verified, validated, deduplicated, stored and
//! queued for enrichment; and the door's load shedding.

use std::time::Duration;

use http::HeaderMap;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{Accepted, IngestError, Intake, Overloaded, Pipeline};
use crate::mapping::Mapped;
use crate::model::{Envelope, Lead, LeadState, Stage};
use crate::ports::{Created, Outgoing, ReplayGuard, StoreError};
use crate::signature::{self, Delivery};
use crate::validate;

impl Pipeline {
    /// Whether ingest may take another webhook: not while the queues hold more than
    /// `[pipeline] max_backlog` messages. Shedding at the door keeps the delay of the leads
    /// already accepted bounded; senders retry on 429 (Standard Webhooks senders do).
    pub fn admit(&self) -> Result<(), Overloaded> {
        let limit = self.config.pipeline.max_backlog;
        let Some(backlog) = self.queue.backlog() else {
            return Ok(());
        };
        if limit == 0 || backlog.waiting <= limit {
            return Ok(());
        }
        let excess = (backlog.waiting - limit) as f64;
        let seconds = (excess / backlog.drained_per_sec.max(1.0))
            .ceil()
            .clamp(1.0, 60.0);
        Err(Overloaded {
            waiting: backlog.waiting,
            limit,
            retry_after: Duration::from_secs_f64(seconds),
        })
    }

    /// A `POST` of `body` with `headers` to `/webhooks/{source}`, which must make a lead (an
    /// event the source's mapping ignores is [`IngestError::Ignored`]): for callers that
    /// post leads, such as tests and benchmarks.
    pub async fn ingest(
        &self,
        source_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let url = format!("https://leadrelay.invalid/webhooks/{source_id}");
        match self
            .receive(source_id, &Delivery::post(&url, headers, body))
            .await?
        {
            Intake::Lead(accepted) => Ok(accepted),
            Intake::Ignored { event } => Err(IngestError::Ignored(event)),
        }
    }

    /// `POST /webhooks/{source}`: verify, map the platform's payload (or parse leadrelay's
    /// own), validate, dedupe, store, enqueue. Nothing is written unless every check passed,
    /// and nothing at all for an event the mapping does not take as a lead.
    pub async fn receive(
        &self,
        source_id: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Intake, IngestError> {
        let source = self
            .config
            .source(source_id)
            .ok_or_else(|| IngestError::UnknownSource(source_id.to_owned()))?;
        let now = self.clock.now();
        let body = delivery.body;
        let verified = signature::verify(&source.verifier, &source.keys, delivery, now)?;
        let (capture, payload_id) = match validate::read_payload(
            source.payload.as_ref(),
            body,
            now,
        )? {
            Mapped::Ignored { event } => {
                info!(source = source_id, event = %event, stage = "ingest", "ignored: not a lead event");
                return Ok(Intake::Ignored { event });
            }
            Mapped::Lead { capture, event_id } => (*capture, event_id),
        };
        let flags = validate::check(&capture, &self.config.validation)?;
        // The platform's own id from the signed body first (a header id may be per delivery
        // attempt), then a header id, then the body's hash.
        let event_id = payload_id
            .or(verified.event_id)
            .unwrap_or_else(|| signature::body_event_id(body));

        // A scheme that signs no timestamp leaves the event id unsigned: the signed body itself
        // is remembered for the source's window, so a captured request sent again with a
        // fresh id is the same lead (design invariant 9).
        let replay = source.replay_window().map(|window| ReplayGuard {
            body_sha256: hex::encode(Sha256::digest(body)),
            now,
            expires_at: now.saturating_add(window).unwrap_or(Timestamp::MAX),
        });
        let lead_id = uuid::Uuid::now_v7().to_string();
        let lead = Lead::captured(
            lead_id,
            uuid::Uuid::now_v7().simple().to_string(),
            source_id.to_owned(),
            event_id,
            capture,
            flags,
            now,
        );
        let first = Outgoing {
            stage: Stage::Enrich,
            envelope: Envelope::new(&lead.id, Stage::Enrich, &lead.trace_id),
        };
        let created = match self
            .store
            .create_lead_and_send(&lead, replay.as_ref(), &first)
            .await
        {
            // Only the earlier lead stored under this event id can be unreadable (this one
            // was just encoded): the event is a duplicate of a quarantined lead. Answering it
            // as one stops the sender retrying into a 5xx for ever.
            Err(StoreError::Undecodable { lead_id, reason }) => {
                warn!(lead_id = %lead_id, source = source_id, %reason, "duplicate event id of a quarantined lead");
                return Ok(Intake::Lead(Accepted {
                    lead_id,
                    duplicate: true,
                }));
            }
            other => other?,
        };
        match created {
            (Created::New, sent) => {
                if !sent {
                    self.queue.send(Stage::Enrich, &first.envelope).await?;
                }
                info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "ingest", source = source_id, event = %lead.event(), "captured");
                Ok(Intake::Lead(Accepted {
                    lead_id: lead.id,
                    duplicate: false,
                }))
            }
            (Created::Duplicate(existing), _) => {
                // The first attempt may have died between storing and enqueuing: enqueue again
                // while the lead has not moved on. Downstream stages are idempotent.
                if existing.state == LeadState::Captured {
                    self.queue
                        .send(
                            Stage::Enrich,
                            &Envelope::new(&existing.id, Stage::Enrich, &existing.trace_id),
                        )
                        .await?;
                }
                let why = if existing.event_id == lead.event_id {
                    "duplicate event id"
                } else {
                    "same signed body within the replay window"
                };
                info!(lead_id = %existing.id, trace_id = %existing.trace_id, stage = "ingest", source = source_id, "duplicate: {why}");
                Ok(Intake::Lead(Accepted {
                    lead_id: existing.id,
                    duplicate: true,
                }))
            }
        }
    }
}

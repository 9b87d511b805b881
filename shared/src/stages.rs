//! The stage code: ingest, enrich, route and notify, written once against the ports.
//!
//! Every stage is idempotent under at-least-once delivery: it reads the lead's current state,
//! does its work only if the lead has not moved past it, writes conditionally, and forwards the
//! envelope either way (so a crash between "advanced" and "forwarded" heals on retry).

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use tracing::{info, warn};

use crate::config::Config;
use crate::model::{
    Envelope, EnvelopeError, Lead, LeadState, Owner, Stage, StageFailure, Timeline,
};
use crate::ports::{
    Clock, Created, DeliveryStart, Destination, LeadStore, Notifier, NotifyError, Queue,
    QueueError, Received, StoreError,
};
use crate::render::{self, Alert};
use crate::rulebook::Rulebook;
use crate::signature;
use crate::validate::{self, Rejection};

/// Everything a stage needs: the configuration and the ports.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub rulebook: Rulebook,
    pub store: Arc<dyn LeadStore>,
    pub queue: Arc<dyn Queue>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
}

/// Why ingest refused a webhook. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// The detail is for the log only; the caller learns nothing about which check failed.
    #[error("signature refused: {0}")]
    Unauthorized(#[from] signature::SignatureError),
    #[error("{0}")]
    Invalid(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A webhook that was accepted (new) or recognised (duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub lead_id: String,
    pub duplicate: bool,
}

/// Why a stage could not finish a message; the message is retried, then dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("envelope for stage {found} arrived on the {expected} queue")]
    WrongStage { expected: Stage, found: Stage },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("delivery failed: {0}")]
    Notify(#[from] NotifyError),
    #[error("{channel} delivery is in flight elsewhere until {until}")]
    DeliveryInFlight { channel: String, until: Timestamp },
}

/// What the notify stage delivered, for the caller's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub skipped_as_done: bool,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn LeadStore>,
        queue: Arc<dyn Queue>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Pipeline {
            rulebook: Rulebook::new(&config),
            config,
            store,
            queue,
            notifier,
            clock,
        }
    }

    /// `POST /webhooks/{source}`: verify, parse, validate, dedupe, store, enqueue.
    /// Nothing is written unless every check passed.
    pub async fn ingest(
        &self,
        source_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let source = self
            .config
            .source(source_id)
            .ok_or_else(|| IngestError::UnknownSource(source_id.to_owned()))?;
        let now = self.clock.now();
        let verified =
            signature::verify(&source.signature_scheme(), &source.keys, headers, body, now)?;
        let capture = validate::parse_capture(body)?;
        let flags = validate::check(&capture, &self.config.validation)?;

        let lead_id = uuid::Uuid::now_v7().to_string();
        let lead = Lead {
            trace_id: uuid::Uuid::now_v7().simple().to_string(),
            source: source_id.to_owned(),
            event_id: verified.event_id,
            state: LeadState::Captured,
            incomplete: capture.event == Some(crate::model::EventKind::LeadCapturePartial),
            capture,
            flags,
            enrichment: None,
            qualification: None,
            assignment: None,
            timeline: Timeline {
                captured_at: Some(now),
                ..Timeline::default()
            },
            last_failure: None,
            id: lead_id,
        };
        match self.store.create_lead(&lead).await? {
            Created::New => {
                self.queue
                    .send(
                        Stage::Enrich,
                        &Envelope::new(&lead.id, Stage::Enrich, &lead.trace_id),
                    )
                    .await?;
                info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "ingest", source = source_id, event = %lead.event(), "captured");
                Ok(Accepted {
                    lead_id: lead.id,
                    duplicate: false,
                })
            }
            Created::Duplicate(existing) => {
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
                info!(lead_id = %existing.id, trace_id = %existing.trace_id, stage = "ingest", source = source_id, "duplicate event id");
                Ok(Accepted {
                    lead_id: existing.id,
                    duplicate: true,
                })
            }
        }
    }

    /// Handles one message body from `stage`'s queue.
    pub async fn handle(&self, stage: Stage, body: &str) -> Result<Outcome, StageError> {
        let envelope = Envelope::from_json(body)?;
        if envelope.stage != stage {
            return Err(StageError::WrongStage {
                expected: stage,
                found: envelope.stage,
            });
        }
        let lead = self
            .store
            .get_lead(&envelope.lead_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(envelope.lead_id.clone()))?;
        match stage {
            Stage::Enrich => self.enrich(lead).await,
            Stage::Route => self.route(lead).await,
            Stage::Notify => self.notify(lead).await,
        }
    }

    /// Runs a received message through its stage, then deletes it, or schedules a retry and
    /// records the failure on the lead. The queue dead-letters it after too many receives.
    pub async fn consume(&self, stage: Stage, message: &Received) -> Result<(), QueueError> {
        match self.handle(stage, &message.body).await {
            Ok(_) => self.queue.delete(stage, &message.receipt).await,
            Err(error) => self.defer(stage, message, &error).await,
        }
    }

    /// After a failure: records it on the lead and makes the message visible again after a
    /// backoff. The queue's redrive dead-letters it after too many receives.
    pub async fn defer(
        &self,
        stage: Stage,
        message: &Received,
        error: &StageError,
    ) -> Result<(), QueueError> {
        let text = error.to_string();
        warn!(stage = %stage, message_id = %message.message_id, receive_count = message.receive_count, error = %text, "stage failed; will retry");
        if let Ok(envelope) = Envelope::from_json(&message.body) {
            let failure = StageFailure {
                stage,
                error: text.clone(),
                at: self.clock.now(),
            };
            if let Err(e) = self.store.record_failure(&envelope.lead_id, &failure).await {
                warn!(stage = %stage, error = %e, "could not record the failure on the lead");
            }
        }
        self.queue
            .retry_later(
                stage,
                &message.receipt,
                self.retry_delay(message.receive_count),
                &text,
            )
            .await
    }

    /// Exponential backoff from the configured base, capped at the visibility timeout.
    pub fn retry_delay(&self, receive_count: u32) -> Duration {
        let pipeline = &self.config.pipeline;
        let base = Duration::from_millis(pipeline.retry_delay_ms);
        let cap = Duration::from_secs(pipeline.visibility_timeout_secs);
        base.saturating_mul(1u32 << receive_count.saturating_sub(1).min(16))
            .min(cap)
    }

    async fn forward(&self, lead: &Lead, next: Stage) -> Result<(), StageError> {
        self.queue
            .send(next, &Envelope::new(&lead.id, next, &lead.trace_id))
            .await?;
        Ok(())
    }

    /// Writes `next` if the lead is still in `from`; a lost race means another worker did the
    /// same work, which is fine.
    async fn advance(
        &self,
        next: &Lead,
        from: LeadState,
        increment: &[String],
    ) -> Result<bool, StageError> {
        match self.store.advance_lead(next, from, increment).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { actual, .. }) if actual > from => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    async fn enrich(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state > LeadState::Captured {
            self.forward(&lead, Stage::Route).await?;
            return Ok(Outcome {
                skipped_as_done: true,
            });
        }
        let enrichment = self.rulebook.enrich(&lead);
        lead.enrichment = Some(enrichment);
        lead.state = LeadState::Enriched;
        lead.timeline.enriched_at = Some(self.clock.now());
        let applied = self.advance(&lead, LeadState::Captured, &[]).await?;
        if applied {
            let e = lead.enrichment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "enrich",
                sources = ?e.map(|e| &e.sources), missing = ?e.map(|e| &e.missing), "enriched");
        }
        self.forward(&lead, Stage::Route).await?;
        Ok(Outcome {
            skipped_as_done: !applied,
        })
    }

    async fn route(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state > LeadState::Enriched {
            self.forward(&lead, Stage::Notify).await?;
            return Ok(Outcome {
                skipped_as_done: true,
            });
        }
        if lead.state < LeadState::Enriched {
            // An envelope that overtook its predecessor: fail, so it is retried after enrich.
            return Err(StoreError::Conflict {
                lead_id: lead.id,
                expected: LeadState::Enriched,
                actual: lead.state,
            }
            .into());
        }
        let qualification = self.rulebook.qualify(&lead);
        let captured_at = lead
            .timeline
            .captured_at
            .unwrap_or_else(|| self.clock.now());
        lead.timeline.sla_due_at = captured_at
            .checked_add(SignedDuration::from_mins(i64::from(
                qualification.sla_minutes,
            )))
            .ok();
        lead.qualification = Some(qualification);
        let assignment = self.rulebook.route(&lead);
        let counter = open_leads_counter(&assignment.owner);
        lead.assignment = Some(assignment);
        lead.state = LeadState::Routed;
        lead.timeline.routed_at = Some(self.clock.now());
        // The owner and its open-lead counter change in one conditional write: a retry can
        // neither pick a second owner nor count the lead twice.
        let applied = self.advance(&lead, LeadState::Enriched, &[counter]).await?;
        if applied {
            let q = lead.qualification.as_ref();
            let a = lead.assignment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "route",
                owner = %a.map(|a| a.owner.to_string()).unwrap_or_default(),
                rule = a.map(|a| a.rule.as_str()).unwrap_or(""),
                tier = q.map(|q| q.tier), score = q.map(|q| q.score), "routed");
        }
        self.forward(&lead, Stage::Notify).await?;
        Ok(Outcome {
            skipped_as_done: !applied,
        })
    }

    async fn notify(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state >= LeadState::Notified {
            return Ok(Outcome {
                skipped_as_done: true,
            });
        }
        if lead.state < LeadState::Routed {
            return Err(StoreError::Conflict {
                lead_id: lead.id,
                expected: LeadState::Routed,
                actual: lead.state,
            }
            .into());
        }
        let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
        let alert = render::render(&lead, self.rulebook.tier_label(tier));
        let lease = Duration::from_secs(self.config.pipeline.visibility_timeout_secs);
        let mut delivered = Vec::new();
        for destination in self.destinations(&lead) {
            let channel = destination.channel();
            match self
                .store
                .begin_delivery(&lead.id, channel, self.clock.now(), lease)
                .await?
            {
                DeliveryStart::AlreadyDelivered => continue,
                DeliveryStart::InFlight { until } => {
                    return Err(StageError::DeliveryInFlight {
                        channel: channel.to_owned(),
                        until,
                    })
                }
                DeliveryStart::Proceed => {}
            }
            if let Err(failure) = self.notifier.deliver(&destination, &alert).await {
                self.store.release_delivery(&lead.id, channel).await?;
                return Err(failure.into());
            }
            self.store
                .finish_delivery(&lead.id, channel, self.clock.now())
                .await?;
            delivered.push(channel);
        }
        lead.state = LeadState::Notified;
        lead.timeline.notified_at = Some(self.clock.now());
        let applied = self.advance(&lead, LeadState::Routed, &[]).await?;
        if applied {
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                channels = ?delivered, "notified");
        }
        Ok(Outcome {
            skipped_as_done: !applied,
        })
    }

    /// The channels the owner watches: the terminal when enabled, and the Slack webhook of the
    /// rep, or of the queue and its manager.
    fn destinations(&self, lead: &Lead) -> Vec<Destination> {
        let mut destinations = Vec::new();
        if self.config.notify.terminal {
            destinations.push(Destination::Terminal);
        }
        let slack: Option<&SecretString> = match lead.assignment.as_ref().map(|a| &a.owner) {
            Some(Owner::Rep(id)) => self
                .config
                .rep(id)
                .and_then(|r| r.slack_webhook_url.as_ref()),
            Some(Owner::Queue(id)) => self.config.queue(id).and_then(|q| {
                q.slack_webhook_url.as_ref().or_else(|| {
                    q.manager
                        .as_ref()
                        .and_then(|m| self.config.rep(m.get_ref()))
                        .and_then(|r| r.slack_webhook_url.as_ref())
                })
            }),
            None => None,
        };
        if let Some(url) = slack {
            destinations.push(Destination::SlackWebhook { url: url.clone() });
        }
        destinations
    }
}

/// The per-owner counter of open leads.
pub fn open_leads_counter(owner: &Owner) -> String {
    match owner {
        Owner::Rep(id) => format!("open_leads:rep:{id}"),
        Owner::Queue(id) => format!("open_leads:queue:{id}"),
    }
}

/// The alert a lead's owner gets, for callers outside the notify stage (CLI, tests).
pub fn alert_for(pipeline: &Pipeline, lead: &Lead) -> Alert {
    let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
    render::render(lead, pipeline.rulebook.tier_label(tier))
}

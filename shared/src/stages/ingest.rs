//! The ingest stage: `POST /webhooks/{source}` verified, validated, deduplicated, stored and
//! queued for enrichment; and the door's load shedding.

use std::time::Duration;

use http::HeaderMap;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::activity::{ActivityEvent, Recorded};
use super::{Accepted, ActivityStatus, IngestError, Intake, Overloaded, Pipeline};
use crate::activity;
use crate::mapping::{Mapped, MappedActivity};
use crate::model::{Activity, Envelope, Lead, LeadState, Stage};
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
            Intake::Activity { status, .. } => Err(IngestError::NotALead(status.as_str().into())),
        }
    }

    /// `POST /webhooks/{source}`: verify, map the platform's payload (or parse leadrelay's
    /// own), validate, dedupe, store, enqueue. Nothing is written unless every check passed,
    /// and nothing at all for an event the mapping does not take as a lead or activity.
    ///
    /// An activity event (`[mapping.activity]`) is recorded on the lead it finds, or kept as
    /// unmatched. One that is a lead event too (a booking) is recorded when it finds a lead,
    /// else it becomes a lead as any other, its activity stamped on it (so the same event
    /// again is that lead's duplicate).
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
        let ignored = |event: String| {
            info!(source = source_id, event = %event, stage = "ingest", "ignored: not a lead event");
            Ok(Intake::Ignored { event })
        };
        let (capture, payload_id, booking) =
            match validate::read_payload(source.payload.as_ref(), body, now)? {
                Mapped::Ignored { event } => return ignored(event),
                Mapped::Lead { capture, event_id } => (*capture, event_id, None),
                Mapped::Activity {
                    activity,
                    also_lead,
                } => {
                    let mut event = activity_event(source_id, *activity, body, now);
                    if !also_lead {
                        return self.intake_activity(&event).await;
                    }
                    if let Some(lead_id) = self.find_lead(&event, now).await? {
                        event.lead_id = Some(lead_id);
                        return self.intake_activity(&event).await;
                    }
                    match validate::read_lead(source.payload.as_ref(), body, now)? {
                        Mapped::Lead { capture, event_id } => {
                            (*capture, event_id, Some(event.activity))
                        }
                        Mapped::Ignored { event } => return ignored(event),
                        // `read_lead` maps no activity.
                        Mapped::Activity { activity, .. } => return ignored(activity.event),
                    }
                }
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
        let mut lead = Lead::captured(
            lead_id,
            uuid::Uuid::now_v7().simple().to_string(),
            source_id.to_owned(),
            event_id,
            capture,
            flags,
            now,
        );
        // A booking that found no lead is a lead booked from the start: its meeting is
        // stamped, and its key makes the same event again a duplicate on the activity path.
        if let Some(booking) = booking {
            if let Some((stamped, what)) = activity::record(&lead, &booking) {
                if what.closes.is_none() {
                    lead = stamped;
                }
            }
        }
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

impl Pipeline {
    /// Records an activity event from a webhook; the answer names the lead it was recorded on.
    async fn intake_activity(&self, event: &ActivityEvent) -> Result<Intake, IngestError> {
        let (status, lead_id) = match self.record_activity(event).await? {
            Recorded::Applied { lead, .. } => (ActivityStatus::Recorded, Some(lead.id)),
            Recorded::Duplicate { lead_id } => (ActivityStatus::Duplicate, Some(lead_id)),
            Recorded::Unmatched { .. } => (ActivityStatus::Unmatched, None),
        };
        Ok(Intake::Activity { status, lead_id })
    }
}

/// The activity a webhook of `source` reports. Its key is the platform's event id, else the
/// signed body's hash, under the source and event name: two platforms' ids (or a booking's
/// created and cancelled events, which share the booking's id) never collide.
fn activity_event(
    source: &str,
    mapped: MappedActivity,
    body: &[u8],
    now: Timestamp,
) -> ActivityEvent {
    let key = mapped.key.unwrap_or_else(|| signature::body_event_id(body));
    ActivityEvent {
        lead_id: mapped.lead_id,
        email: mapped.email,
        activity: Activity {
            kind: mapped.kind,
            at: mapped.at.unwrap_or(now),
            received_at: now,
            by: mapped.by,
            via: source.to_owned(),
            automated: mapped.automated,
            key: format!("{source}:{}:{key}", mapped.event),
            detail: mapped.detail,
        },
    }
}

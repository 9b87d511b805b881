//! The stage code: ingest, enrich, route and notify, written once against the ports.
//!
//! Every stage is idempotent under at-least-once delivery: it reads the lead's current state,
//! does its work only if the lead has not moved past it, writes conditionally, and forwards the
//! envelope either way (so a crash between "advanced" and "forwarded" heals on retry).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::claim_link;
use crate::config::{Config, QueueConfig, RepConfig};
use crate::enrichment::Providers;
use crate::model::{
    Enrichment, Envelope, EnvelopeError, Lead, LeadState, Owner, Stage, StageFailure,
};
use crate::ports::{
    Clock, ContactWrite, Created, DeliveryStart, Destination, Effects, LeadStore, Notifier,
    NotifyError, Queue, QueueError, Received, ReplayGuard, StoreError,
};
use crate::render::{self, Alert};
pub use crate::routing::open_leads_counter;
use crate::routing::{duplicates, Decision, Router, Snapshot};
use crate::rulebook::Rulebook;
use crate::signature;
use crate::validate::{self, Rejection};

pub mod claim;
mod notify;
pub mod sla;

/// Everything a stage needs: the configuration and the ports.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub rulebook: Rulebook,
    pub router: Router,
    pub store: Arc<dyn LeadStore>,
    pub queue: Arc<dyn Queue>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    /// Enrichment providers that do I/O, tried after the local table; none by default.
    pub providers: Providers,
    /// Deliveries this process is making right now.
    in_progress: InProgress,
}

/// The deliveries (lead and receipt) this process is making right now. A store lease can run
/// out while its delivery still runs here (its receipt's write waiting behind a busy
/// committer); another worker of this process then waits for it instead of sending the alert
/// a second time. Only a crash can leave a lease without its receipt.
#[derive(Default)]
struct InProgress(Mutex<HashSet<String>>);

/// One delivery claimed in [`InProgress`], given back when dropped (also when its task is
/// cancelled).
pub(crate) struct Claimed<'a> {
    set: &'a InProgress,
    key: String,
}

impl InProgress {
    fn claim(&self, lead_id: &str, receipt: &str) -> Option<Claimed<'_>> {
        let key = format!("{lead_id}/{receipt}");
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Not `then_some`: it would build (and drop, under this lock) a claim for a refusal.
        if set.insert(key.clone()) {
            Some(Claimed { set: self, key })
        } else {
            None
        }
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
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

/// Ingest is shedding load: the stage queues hold more than `[pipeline] max_backlog`.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{waiting} messages are waiting in the stage queues (limit {limit})")]
pub struct Overloaded {
    pub waiting: u64,
    pub limit: u64,
    /// When the backlog should be down to the limit at the recent drain rate (1 s to 1 min).
    pub retry_after: Duration,
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
    /// Several channels failed for now (each is retried; the others were delivered).
    #[error("deliveries failed: {}", join_errors(.0))]
    Deliveries(Vec<NotifyError>),
    #[error("{channel} delivery is in flight elsewhere until {until}")]
    DeliveryInFlight { channel: String, until: Timestamp },
}

fn join_errors(errors: &[NotifyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl StageError {
    /// The delivery receipts (`slack:rep:bruno`) or channels this failure is about; empty for a
    /// failure that is not a delivery's.
    pub fn channels(&self) -> Vec<&str> {
        match self {
            StageError::Notify(error) => vec![error.channel()],
            StageError::Deliveries(errors) => errors.iter().map(NotifyError::channel).collect(),
            StageError::DeliveryInFlight { channel, .. } => vec![channel.as_str()],
            _ => Vec::new(),
        }
    }
}

/// What became of a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Offered again after this wait (the next step of the retry schedule).
    Retrying(Duration),
    /// The schedule is spent: moved to the stage's dead-letter queue (nothing left to delete).
    DeadLettered,
}

/// Why a lead could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("no lead {0}")]
    NotFound(String),
    #[error("lead {lead_id} is {state}: only a routed or notified lead can be closed")]
    NotOpen { lead_id: String, state: LeadState },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the notify stage delivered, for the caller's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub skipped_as_done: bool,
    /// The stage finished but recorded a failure that retrying cannot fix (a channel parked
    /// in the dead-letter queue): the lead keeps it as its `last_failure`.
    pub failed_for_good: bool,
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
            router: Router::new(&config),
            config,
            store,
            queue,
            notifier,
            clock,
            providers: Providers::default(),
            in_progress: InProgress::default(),
        }
    }

    /// The same pipeline with its alert channels.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// The same pipeline with enrichment providers (see [`crate::enrichment`]).
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.providers = providers;
        self
    }

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
            verified.event_id,
            capture,
            flags,
            now,
        );
        let created = match self.store.create_lead_guarded(&lead, replay.as_ref()).await {
            // Only the earlier lead stored under this event id can be unreadable (this one
            // was just encoded): the event is a duplicate of a quarantined lead. Answering it
            // as one stops the sender retrying into a 5xx for ever.
            Err(StoreError::Undecodable { lead_id, reason }) => {
                warn!(lead_id = %lead_id, source = source_id, %reason, "duplicate event id of a quarantined lead");
                return Ok(Accepted {
                    lead_id,
                    duplicate: true,
                });
            }
            other => other?,
        };
        match created {
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
                let why = if existing.event_id == lead.event_id {
                    "duplicate event id"
                } else {
                    "same signed body within the replay window"
                };
                info!(lead_id = %existing.id, trace_id = %existing.trace_id, stage = "ingest", source = source_id, "duplicate: {why}");
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
        let lead = match self.store.get_lead(&envelope.lead_id).await {
            Ok(Some(lead)) => lead,
            Ok(None) => return Err(StoreError::NotFound(envelope.lead_id.clone()).into()),
            Err(error @ StoreError::Undecodable { .. }) => {
                return self.quarantine(stage, &envelope, &error).await;
            }
            Err(error) => return Err(error.into()),
        };
        let seen = lead.last_failure.clone();
        let outcome = match stage {
            Stage::Enrich => self.enrich(lead).await,
            Stage::Route => self.route(lead).await,
            Stage::Notify => self.notify(lead).await,
        }?;
        // A success after a failure of this stage (or an earlier one): the lead is no longer
        // held up by it. A duplicate of an earlier stage's message clears nothing later.
        if let Some(failure) = seen.filter(|f| f.stage <= stage && !outcome.failed_for_good) {
            if let Err(e) = self.store.clear_failure(&envelope.lead_id, &failure).await {
                warn!(lead_id = %envelope.lead_id, stage = %stage, error = %e,
                    "could not clear the lead's last failure");
            }
        }
        Ok(outcome)
    }

    /// A lead this version cannot read: retrying cannot fix it, so the message goes straight
    /// to the dead-letter queue with the error (replayable once the lead is repaired or the
    /// version that reads it is deployed), and counts as handled.
    async fn quarantine(
        &self,
        stage: Stage,
        envelope: &Envelope,
        error: &StoreError,
    ) -> Result<Outcome, StageError> {
        let text = error.to_string();
        warn!(lead_id = %envelope.lead_id, trace_id = %envelope.trace_id, stage = %stage, error = %text, "quarantined lead: message dead-lettered");
        self.queue.dead_letter(stage, envelope, &text).await?;
        let failure = StageFailure {
            stage,
            error: text,
            at: self.clock.now(),
        };
        // The failure has its own column/attribute: recording it never needs the body read.
        if let Err(e) = self.store.record_failure(&envelope.lead_id, &failure).await {
            warn!(lead_id = %envelope.lead_id, stage = %stage, error = %e, "could not record the failure on the quarantined lead");
        }
        Ok(Outcome::default())
    }

    /// Runs a received message through its stage, then deletes it; or records the failure
    /// and retries it on the schedule, or dead-letters it once the schedule is spent.
    pub async fn consume(&self, stage: Stage, message: &Received) -> Result<(), QueueError> {
        match self.handle(stage, &message.body).await {
            Ok(_) => self.queue.delete(stage, &message.receipt).await,
            Err(error) => self.defer(stage, message, &error).await.map(|_| ()),
        }
    }

    /// After a failure: records it on the lead, then makes the message visible again after the
    /// retry schedule's next wait; once the schedule is spent, moves it to the stage's
    /// dead-letter queue and logs that at error level (lead, stage, channel). The queue's own
    /// receive limit (`max_receives`) is only a backstop behind the schedule.
    pub async fn defer(
        &self,
        stage: Stage,
        message: &Received,
        error: &StageError,
    ) -> Result<Deferred, QueueError> {
        let text = error.to_string();
        let lead_id = Envelope::from_json(&message.body).ok().map(|e| e.lead_id);
        let channel = error.channels().join(",");
        if let Some(lead_id) = &lead_id {
            let failure = StageFailure {
                stage,
                error: text.clone(),
                at: self.clock.now(),
            };
            if let Err(e) = self.store.record_failure(lead_id, &failure).await {
                warn!(lead_id = %lead_id, stage = %stage, error = %e, "could not record the failure on the lead");
            }
        }
        let receives = message.receive_count;
        match self.retry_delay(receives) {
            Some(delay) => {
                warn!(lead_id = lead_id.as_deref(), stage = %stage, channel = %channel,
                    message_id = %message.message_id, receive_count = receives,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %text, "stage failed; will retry");
                self.queue
                    .retry_later(stage, &message.receipt, delay, &text)
                    .await?;
                Ok(Deferred::Retrying(delay))
            }
            None => {
                let reason = format!(
                    "gave up after {receives} attempts over {}: {text}",
                    jiff::SignedDuration::try_from(self.config.pipeline.retry_span())
                        .map(|d| format!("{d:#}"))
                        .unwrap_or_default()
                );
                self.queue.give_up(stage, message, &reason).await?;
                error!(lead_id = lead_id.as_deref(), stage = %stage, channel = %channel,
                    message_id = %message.message_id, receive_count = receives,
                    error = %text, "dead-lettered: the retry schedule is spent");
                Ok(Deferred::DeadLettered)
            }
        }
    }

    /// The wait after the `receive_count`-th receive of a message failed, from
    /// `[pipeline] retry_schedule`; `None` once the schedule is spent.
    pub fn retry_delay(&self, receive_count: u32) -> Option<Duration> {
        self.config.pipeline.retry_delay(receive_count)
    }

    /// Takes the lease on delivering `receipt` for a lead: first among this process's own
    /// workers, then in the store (a durable record of the attempt). The claim is held until
    /// the caller drops it, after writing the receipt or giving the lease back.
    pub(crate) async fn begin_delivery(
        &self,
        lead_id: &str,
        receipt: &str,
    ) -> Result<(DeliveryStart, Option<Claimed<'_>>), StoreError> {
        let now = self.clock.now();
        let lease = Duration::from_secs(self.config.pipeline.visibility_timeout_secs);
        let Some(claim) = self.in_progress.claim(lead_id, receipt) else {
            let until = now
                .checked_add(SignedDuration::try_from(lease).unwrap_or(SignedDuration::ZERO))
                .unwrap_or(now);
            return Ok((DeliveryStart::InFlight { until }, None));
        };
        let start = self
            .store
            .begin_delivery(lead_id, receipt, now, lease)
            .await?;
        Ok((start, Some(claim)))
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
        effects: &Effects,
    ) -> Result<bool, StageError> {
        match self.store.advance_lead(next, from, effects).await {
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
            .advance(&lead, LeadState::Captured, &Effects::none())
            .await?;
        if applied {
            let e = lead.enrichment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "enrich",
                sources = ?e.map(|e| &e.sources), missing = ?e.map(|e| &e.missing), "enriched");
        }
        self.forward(&lead, Stage::Route).await?;
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

    async fn route(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state > LeadState::Enriched {
            self.forward(&lead, Stage::Notify).await?;
            return Ok(Outcome {
                skipped_as_done: true,
                ..Outcome::default()
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
        let sla_minutes = qualification.sla_minutes;
        lead.qualification = Some(qualification);
        let now = self.clock.now();
        let plan = self.router.plan(&lead, now);
        let mut attempt = 0;
        let applied = loop {
            attempt += 1;
            // Capacity and rotation guards fail when another router moved first: read the
            // figures again and decide again; after a few rounds, the default queue.
            let decision = if attempt > ROUTE_ATTEMPTS {
                lead.merged_into = None;
                self.router.last_resort(&plan)
            } else {
                self.decide_or_merge(&mut lead, &plan, now).await?
            };
            let assignment = decision.assignment;
            // The SLA clock starts at capture, or at the opening when the alert is held. A
            // capture stamped after now was stamped by a clock since stepped back: counting
            // from it would postpone the deadline by the step, so the SLA runs from now.
            let sla_from = assignment
                .held_until
                .or(lead.timeline.captured_at.map(|captured| captured.min(now)))
                .unwrap_or(now);
            lead.timeline.sla_due_at = sla_from
                .checked_add(SignedDuration::from_mins(i64::from(sla_minutes)))
                .ok();
            lead.assignment = Some(assignment);
            lead.state = LeadState::Routed;
            lead.timeline.routed_at = Some(now);
            // The owner, its open-lead counter and the pool ledger change in one conditional
            // write: a retry can neither pick a second owner nor count the lead twice.
            match self
                .store
                .advance_lead(&lead, LeadState::Enriched, &decision.effects)
                .await
            {
                Ok(()) => break true,
                Err(StoreError::Conflict { actual, .. }) if actual > LeadState::Enriched => {
                    break false
                }
                Err(StoreError::Contended(what)) if attempt <= ROUTE_ATTEMPTS => {
                    info!(lead_id = %lead.id, stage = "route", attempt, contended = %what, "deciding again");
                    // Routers that collided back off by a random, growing pause, so they do
                    // not collide again in lockstep.
                    let ceiling_ms = (1u64 << attempt.min(6)).min(MAX_CONTENTION_PAUSE_MS);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=ceiling_ms))).await;
                }
                Err(other) => return Err(other.into()),
            }
        };
        if applied {
            let q = lead.qualification.as_ref();
            let a = lead.assignment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "route",
                owner = %a.map(|a| a.owner.to_string()).unwrap_or_default(),
                rule = a.map(|a| a.rule.as_str()).unwrap_or(""),
                merged_into = lead.merged_into.as_deref(),
                tier = q.map(|q| q.tier), score = q.map(|q| q.score),
                held_until = ?a.and_then(|a| a.held_until), "routed");
        }
        self.forward(&lead, Stage::Notify).await?;
        Ok(Outcome {
            skipped_as_done: !applied,
            ..Outcome::default()
        })
    }

    /// A second lead from a person whose lead is still open (within the merge window) goes to
    /// that lead's owner, merged into it; any other lead is routed by the plan and, when it
    /// has an e-mail address, becomes its contact's open lead in the same write.
    async fn decide_or_merge(
        &self,
        lead: &mut Lead,
        plan: &crate::routing::Plan,
        now: Timestamp,
    ) -> Result<Decision, StageError> {
        let contact = self
            .config
            .routing
            .merge_window()
            .zip(duplicates::contact_key(lead));
        let Some((window, contact)) = contact else {
            lead.merged_into = None;
            return self.decide(plan).await;
        };
        let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
        let lookup = self.store.open_lead_for_contact(&contact, since).await?;
        let merged = lookup
            .open
            .as_deref()
            .filter(|open| open.id != lead.id)
            .and_then(|open| Some((open.id.clone(), duplicates::merge(open, now)?)));
        if let Some((into, decision)) = merged {
            lead.merged_into = Some(into);
            return Ok(decision);
        }
        lead.merged_into = None;
        let mut decision = self.decide(plan).await?;
        decision.effects.contact = Some(ContactWrite {
            contact,
            lead_id: lead.id.clone(),
            routed_at: now,
            replaces: lookup.indexed,
        });
        Ok(decision)
    }

    /// Reads the figures the plan needs and decides on them.
    async fn decide(&self, plan: &crate::routing::Plan) -> Result<Decision, StageError> {
        let needs = self.router.needs(plan);
        let counters = self.store.counters(&needs.counter_names()).await?;
        let mut ledgers = Vec::with_capacity(needs.ledgers.len());
        for (pool, period) in &needs.ledgers {
            ledgers.push(self.store.ledger(pool, period).await?);
        }
        Ok(self
            .router
            .choose(plan, &Snapshot::new(&needs, counters, ledgers)))
    }

    async fn notify(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        // The prospect's acknowledgement goes out as soon as the lead is routed, before any
        // after-hours hold; a transient failure of it is returned only after the rep alerts.
        let acknowledged = match lead.state {
            LeadState::Routed | LeadState::Notified => self.acknowledge(&lead).await,
            _ => Ok(()),
        };
        // A claimed or closed lead needs no alert. A notified one is worked again: a replay
        // from the dead-letter queue delivers the channels of its round that failed, and the
        // receipts skip the rest.
        if lead.state >= LeadState::Claimed {
            acknowledged?;
            return Ok(Outcome {
                skipped_as_done: true,
                ..Outcome::default()
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
        // After-hours `hold`: the alert waits for the opening. A fresh delayed message per
        // step (SQS delays stop at 15 minutes) keeps the receive count from dead-lettering it.
        let now = self.clock.now();
        if let Some(until) = lead.assignment.as_ref().and_then(|a| a.held_until) {
            if until > now && lead.state == LeadState::Routed {
                acknowledged?;
                let wait = Duration::try_from(until.duration_since(now))
                    .unwrap_or(MAX_QUEUE_DELAY)
                    .min(MAX_QUEUE_DELAY);
                self.queue
                    .send_delayed(
                        Stage::Notify,
                        &Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
                        wait,
                    )
                    .await?;
                return Ok(Outcome::default());
            }
        }
        let mut destinations = self.destinations(&lead, now);
        destinations.extend(self.email_destinations(&lead));
        // The costlier formats only when a destination needs them.
        let alert = render_alert(
            self,
            &lead,
            destinations
                .iter()
                .any(|d| matches!(d, Destination::TeamsWebhook { .. })),
            destinations
                .iter()
                .any(|d| matches!(d, Destination::Webhook { .. })),
        );
        let round = lead.alert_round();
        let mut delivered = Vec::new();
        // The owner counts as told at the first delivery on the best kind of channel they
        // have: a person's own channel (Slack, Teams, SMS, e-mail) where there is one, else an
        // integration (webhook, HubSpot), else the terminal. No channel at all: nothing to wait for.
        let counting = destinations.iter().map(reach).max();
        let mut told = counting.is_none();
        let mut permanent: Vec<NotifyError> = Vec::new();
        let mut transient: Vec<NotifyError> = Vec::new();
        let mut in_flight: Option<StageError> = None;
        // Every channel is tried whatever another one did: one broken channel never keeps
        // the owner from hearing of the lead on the others.
        for destination in destinations {
            // Each escalation round alerts its recipients once, even the same people again;
            // e-mail destinations carry the round in their receipt already (their Message-ID).
            let receipt = match &destination {
                Destination::Email { receipt, .. } => receipt.clone(),
                other => format!("{round}{}", other.receipt()),
            };
            let counts = Some(reach(&destination)) == counting;
            let (start, _claim) = self.begin_delivery(&lead.id, &receipt).await?;
            match start {
                DeliveryStart::AlreadyDelivered => {
                    told |= counts;
                    continue;
                }
                // Another worker is delivering this round: leave the rest to it, rather than
                // split the channels between two workers that would then both retry.
                DeliveryStart::InFlight { until } => {
                    in_flight = Some(StageError::DeliveryInFlight {
                        channel: receipt,
                        until,
                    });
                    break;
                }
                DeliveryStart::Proceed => {}
            }
            match self.notifier.deliver(&destination, &alert).await {
                Ok(()) => {
                    // Written (fsync'd) at once: the window in which a crash sends this
                    // channel again is this one write.
                    self.store
                        .finish_delivery(&lead.id, &receipt, self.clock.now())
                        .await?;
                    told |= counts;
                    delivered.push(receipt);
                }
                Err(failure) => {
                    self.store.release_delivery(&lead.id, &receipt).await?;
                    warn!(lead_id = %lead.id, stage = "notify", channel = %receipt,
                        permanent = failure.is_permanent(), error = %failure, "delivery failed");
                    if failure.is_permanent() {
                        permanent.push(failure);
                    } else {
                        transient.push(failure);
                    }
                }
            }
        }
        // Notified as soon as the owner was told, whatever failed besides: the failed channels
        // are retried (or parked) on their own, and their receipts skip the rest.
        let mut applied = false;
        if lead.state == LeadState::Routed && told {
            lead.state = LeadState::Notified;
            // The first alert's delivery: where first-response time splits (an escalation's
            // alert goes out later, and is not the system's first response).
            lead.timeline.notified_at.get_or_insert(self.clock.now());
            applied = self
                .advance(&lead, LeadState::Routed, &Effects::none())
                .await?;
        }
        if applied || !delivered.is_empty() {
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                channels = ?delivered, "notified");
        }
        // A transient failure: the queue retries the whole message on the retry schedule
        // (receipts skip what was delivered), then dead-letters it once the schedule is spent.
        if let Some(error) = in_flight {
            return Err(error);
        }
        match transient.len() {
            0 => {}
            1 => return Err(StageError::Notify(transient.remove(0))),
            _ => return Err(StageError::Deliveries(transient)),
        }
        acknowledged?;
        if !permanent.is_empty() {
            // Retrying cannot fix these: park a copy in the dead-letter queue, naming each
            // channel, for a replay once the endpoint or the configuration is fixed.
            let error = join_errors(&permanent);
            let text = format!("permanent delivery failure: {error}");
            self.queue
                .dead_letter(
                    Stage::Notify,
                    &Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
                    &text,
                )
                .await?;
            let channels: Vec<&str> = permanent.iter().map(NotifyError::channel).collect();
            error!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                channel = %channels.join(","), error = %error,
                "dead-lettered: permanent delivery failure");
            let failure = StageFailure {
                stage: Stage::Notify,
                error: text,
                at: self.clock.now(),
            };
            self.store.record_failure(&lead.id, &failure).await?;
        }
        Ok(Outcome {
            skipped_as_done: !applied && delivered.is_empty(),
            failed_for_good: !permanent.is_empty(),
        })
    }

    /// The display name of an owner (a rep's or a queue's name), for alert texts.
    fn owner_name<'a>(&'a self, owner: &'a Owner) -> &'a str {
        match owner {
            Owner::Rep(id) => self.config.rep(id).map_or(id.as_str(), |r| r.name.as_str()),
            Owner::Queue(id) => self
                .config
                .queue(id)
                .map_or(id.as_str(), |q| q.name.as_str()),
            Owner::Pool(id) => id,
        }
    }

    /// The channels the owner watches: the terminal when enabled; for each recipient (the
    /// rep, each alerted member of a broadcast pool, or the queue and its manager: a lead in
    /// a queue has no single owner yet, so the manager always hears of it) their Slack and
    /// Teams webhooks and, for a tier-1 lead, an SMS; then each outbound webhook and HubSpot.
    /// After an escalation, only the channels its ladder step names (the terminal always).
    fn destinations(&self, lead: &Lead, now: Timestamp) -> Vec<Destination> {
        let config = &self.config;
        let mut destinations = Vec::new();
        if config.notify.terminal {
            destinations.push(Destination::Terminal);
        }
        let owner = lead.assignment.as_ref().map(|a| &a.owner);
        // (recipient key, the rep when it is one, the queue when it is one)
        let mut recipients: Vec<(String, Option<&RepConfig>, Option<&QueueConfig>)> = Vec::new();
        let rep = |id: &str| config.rep(id).map(|r| (format!("rep:{id}"), Some(r), None));
        match owner {
            Some(Owner::Rep(id)) => recipients.extend(rep(id)),
            Some(Owner::Queue(id)) => {
                if let Some(queue) = config.queue(id) {
                    recipients.push((format!("queue:{id}"), None, Some(queue)));
                    recipients.extend(queue.manager.as_ref().and_then(|m| rep(m.get_ref())));
                }
            }
            // Broadcast: every member the routing step alerted, each on their own channels.
            Some(Owner::Pool(_)) => {
                recipients.extend(broadcast_members(lead).into_iter().filter_map(rep))
            }
            None => {}
        }
        let tier = lead.qualification.as_ref().map_or(0, |q| q.tier);
        let link = |rep: &RepConfig| claim_link::url_for(config, &lead.id, &rep.id, now);
        for (recipient, rep, queue) in &recipients {
            let slack = rep
                .and_then(|r| r.slack_webhook_url.as_ref())
                .or(queue.and_then(|q| q.slack_webhook_url.as_ref()));
            // One message per webhook, even if a queue and its manager share a channel.
            if let Some(url) = slack.filter(|url| !shares_url(&destinations, url)) {
                destinations.push(Destination::SlackWebhook {
                    recipient: recipient.clone(),
                    url: url.clone(),
                });
            }
            let teams = rep
                .and_then(|r| r.teams_webhook_url.as_ref())
                .or(queue.and_then(|q| q.teams_webhook_url.as_ref()));
            if let Some(url) = teams.filter(|url| !shares_url(&destinations, url)) {
                destinations.push(Destination::TeamsWebhook {
                    recipient: recipient.clone(),
                    url: url.clone(),
                    claim_link: rep.and_then(link),
                });
            }
            // SMS interrupts: only the hottest leads.
            if let (Some(rep), Some(_), 1) = (rep, &config.notify.sms, tier) {
                if let Some(phone) = &rep.phone {
                    destinations.push(Destination::Sms {
                        recipient: recipient.clone(),
                        to: phone.clone(),
                        claim_link: link(rep),
                    });
                }
            }
        }
        let owner_rep = match owner {
            Some(Owner::Rep(id)) => config.rep(id),
            _ => None,
        };
        for hook in &config.notify.webhooks {
            if let Some(key) = &hook.key {
                destinations.push(Destination::Webhook {
                    name: hook.name.clone(),
                    url: hook.url.clone(),
                    key: key.clone(),
                    claim_link: owner_rep.and_then(link),
                    owner_email: owner_rep.and_then(|r| r.email.clone()),
                });
            }
        }
        // HubSpot matches the contact by e-mail and needs the owner's HubSpot id.
        if config.notify.hubspot.is_some() && lead.capture.captured_email.is_some() {
            if let Some(owner_id) = owner_rep.and_then(|r| r.hubspot_owner_id.clone()) {
                destinations.push(Destination::Hubspot { owner_id });
            }
        }
        if let Some(channels) = lead.escalations.last().and_then(|e| e.channels.as_ref()) {
            destinations.retain(|d| {
                matches!(d, Destination::Terminal) || channels.iter().any(|c| c == d.channel())
            });
        }
        destinations
    }
}

/// How directly a channel tells the owner: 2 for a person's own channel (Slack, Teams, SMS,
/// e-mail), 1 for an integration that feeds another system (outbound webhook, HubSpot), 0 for
/// the terminal of `leadrelay serve`. The lead is notified by a delivery on the highest kind
/// its owner has.
fn reach(destination: &Destination) -> u8 {
    match destination {
        Destination::Terminal => 0,
        Destination::Webhook { .. } | Destination::Hubspot { .. } => 1,
        Destination::SlackWebhook { .. }
        | Destination::TeamsWebhook { .. }
        | Destination::Sms { .. }
        | Destination::Email { .. } => 2,
    }
}

/// Whether a Slack or Teams destination already posts to `url`.
fn shares_url(destinations: &[Destination], url: &SecretString) -> bool {
    destinations.iter().any(|d| match d {
        Destination::SlackWebhook { url: seen, .. }
        | Destination::TeamsWebhook { url: seen, .. } => {
            seen.expose_secret() == url.expose_secret()
        }
        _ => false,
    })
}

/// Closes a worked lead (won, lost, disqualified): it leaves its owner's open-lead count in
/// the same atomic write, so the capacity it held is free at once. Closing twice is a no-op.
pub async fn close_lead(
    store: &dyn LeadStore,
    now: Timestamp,
    lead_id: &str,
    reason: &str,
) -> Result<Lead, CloseError> {
    // Cleared if the owner's counter already reads 0 (reset by hand): close all the same.
    let mut release = true;
    loop {
        let lead = store
            .get_lead(lead_id)
            .await?
            .ok_or_else(|| CloseError::NotFound(lead_id.to_owned()))?;
        let from = lead.state;
        // A merged lead never added to its owner's count, so closing it takes nothing off.
        let merged = lead.merged_into.is_some();
        match from {
            LeadState::Closed => return Ok(lead),
            LeadState::Routed | LeadState::Notified | LeadState::Claimed => {}
            state => {
                return Err(CloseError::NotOpen {
                    lead_id: lead.id,
                    state,
                })
            }
        }
        let mut closed = lead.clone();
        closed.state = LeadState::Closed;
        closed.timeline.closed_at = Some(now);
        closed.close_reason = Some(reason.to_owned());
        let effects = Effects {
            releases: lead
                .assignment
                .iter()
                .filter(|_| release && !merged)
                .map(|a| open_leads_counter(&a.owner))
                .collect(),
            ..Effects::none()
        };
        match store.advance_lead(&closed, from, &effects).await {
            Ok(()) => {
                info!(lead_id = %closed.id, trace_id = %closed.trace_id, stage = "close", reason, "closed");
                return Ok(closed);
            }
            // Notified in the meantime, or closed by someone else: look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::Contended(_)) if release => {
                release = false;
                continue;
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// Rounds of read-decide-write before routing gives up on contention and uses the default
/// queue (which has no guard).
const ROUTE_ATTEMPTS: u32 = 8;
/// The longest pause between two routing attempts after a collision.
const MAX_CONTENTION_PAUSE_MS: u64 = 50;

/// SQS's longest message delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// The members a broadcast pool alerted, from the routing trace.
pub(crate) fn broadcast_members(lead: &Lead) -> Vec<&str> {
    lead.assignment
        .as_ref()
        .and_then(|a| a.trace.as_ref())
        .and_then(|t| t.steps.last())
        .map(|step| {
            step.candidates
                .iter()
                .filter(|c| c.picked)
                .map(|c| c.rep.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The alert a lead's owner gets, in every format, for callers outside the notify stage (CLI,
/// tests).
pub fn alert_for(pipeline: &Pipeline, lead: &Lead) -> Alert {
    render_alert(pipeline, lead, true, true)
}

/// The alert in the formats every lead has (text, Slack), without the Teams card and the
/// webhook summary: what the claim page and the claimed Slack message need.
pub fn chat_alert_for(pipeline: &Pipeline, lead: &Lead) -> Alert {
    render_alert(pipeline, lead, false, false)
}

fn render_alert(pipeline: &Pipeline, lead: &Lead, teams: bool, summary: bool) -> Alert {
    let tier = lead.qualification.as_ref().map(|q| q.tier).unwrap_or(0);
    let options = render::RenderOptions {
        crm_url: pipeline.config.notify.crm_url.as_deref(),
        escalated_from: lead
            .escalations
            .last()
            .map(|step| pipeline.owner_name(&step.from)),
        teams,
        summary,
    };
    render::render_with(lead, pipeline.rulebook.tier_label(tier), &options)
}

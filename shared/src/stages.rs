//! The stage code: ingest, enrich, route and notify, written once against the ports.
//!
//! Every stage is idempotent under at-least-once delivery: it reads the lead's current state,
//! does its work only if the lead has not moved past it, writes conditionally, and forwards the
//! envelope either way (so a crash between "advanced" and "forwarded" heals on retry).

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};

use crate::claim_link;
use crate::config::{Config, QueueConfig, RepConfig};
use crate::enrichment::Providers;
use crate::model::{
    Enrichment, Envelope, EnvelopeError, Lead, LeadState, Owner, Stage, StageFailure,
};
use crate::ports::{
    Clock, ContactWrite, Created, DeliveryStart, Destination, Effects, LeadStore, Notifier,
    NotifyError, Queue, QueueError, Received, StoreError,
};
use crate::render::{self, Alert};
pub use crate::routing::open_leads_counter;
use crate::routing::{duplicates, Decision, Router, Snapshot};
use crate::rulebook::Rulebook;
use crate::signature;
use crate::validate::{self, Rejection};

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
        }
    }

    /// The same pipeline with enrichment providers (see [`crate::enrichment`]).
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.providers = providers;
        self
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
        let lead = Lead::captured(
            lead_id,
            uuid::Uuid::now_v7().simple().to_string(),
            source_id.to_owned(),
            verified.event_id,
            capture,
            flags,
            now,
        );
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
                return Ok(Outcome {
                    skipped_as_done: false,
                });
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
        let lease = Duration::from_secs(self.config.pipeline.visibility_timeout_secs);
        let round = lead.alert_round();
        let mut delivered = Vec::new();
        // Whether the owner has the alert on a channel they watch (the terminal is not one).
        let mut reached = false;
        let mut permanent: Vec<NotifyError> = Vec::new();
        let mut transient: Option<StageError> = None;
        // Every channel is tried whatever another one did: one broken channel never keeps
        // the owner from hearing of the lead on the others.
        for destination in destinations {
            // Each escalation round alerts its recipients once, even the same people again;
            // e-mail destinations carry the round in their receipt already (their Message-ID).
            let receipt = match &destination {
                Destination::Email { receipt, .. } => receipt.clone(),
                other => format!("{round}{}", other.receipt()),
            };
            match self
                .store
                .begin_delivery(&lead.id, &receipt, self.clock.now(), lease)
                .await?
            {
                DeliveryStart::AlreadyDelivered => {
                    reached |= !matches!(destination, Destination::Terminal);
                    continue;
                }
                // Another worker is delivering this round: leave the rest to it, rather than
                // split the channels between two workers that would then both retry.
                DeliveryStart::InFlight { until } => {
                    transient.get_or_insert(StageError::DeliveryInFlight {
                        channel: receipt,
                        until,
                    });
                    break;
                }
                DeliveryStart::Proceed => {}
            }
            match self.notifier.deliver(&destination, &alert).await {
                Ok(()) => {
                    self.store
                        .finish_delivery(&lead.id, &receipt, self.clock.now())
                        .await?;
                    reached |= !matches!(destination, Destination::Terminal);
                    delivered.push(receipt);
                }
                Err(failure) => {
                    self.store.release_delivery(&lead.id, &receipt).await?;
                    warn!(lead_id = %lead.id, stage = "notify", channel = %receipt,
                        permanent = failure.is_permanent(), error = %failure, "delivery failed");
                    if failure.is_permanent() {
                        permanent.push(failure);
                    } else {
                        transient.get_or_insert(failure.into());
                    }
                }
            }
        }
        // Notified once every channel is done, or, when some failed for good, once the owner
        // has it on another channel; a transient failure keeps the lead routed while the
        // queue retries, as before.
        let done = transient.is_none() && (permanent.is_empty() || reached);
        let mut applied = false;
        if lead.state == LeadState::Routed && done {
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
        // A transient failure: the queue retries the whole message later (receipts skip what
        // was delivered), and dead-letters it after too many receives.
        if let Some(error) = transient {
            return Err(error);
        }
        acknowledged?;
        if !permanent.is_empty() {
            // Retrying cannot fix these: park a copy in the dead-letter queue, naming each
            // channel, for a replay once the endpoint or the configuration is fixed.
            let error = permanent
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let text = format!("permanent delivery failure: {error}");
            self.queue
                .dead_letter(
                    Stage::Notify,
                    &Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
                    &text,
                )
                .await?;
            let failure = StageFailure {
                stage: Stage::Notify,
                error: text,
                at: self.clock.now(),
            };
            self.store.record_failure(&lead.id, &failure).await?;
        }
        Ok(Outcome {
            skipped_as_done: !applied && delivered.is_empty(),
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

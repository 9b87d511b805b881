//! The stage code, written once against the ports: one file per stage, as the Lambda
//! functions are one per stage.
//!
//! - [`Pipeline::ingest`] (`ingest.rs`): verify, validate, dedupe, store, enqueue.
//! - `enrich.rs`, `route.rs`, `notify.rs` (with its e-mail part, `notify/email.rs`): the queued
//!   stages, reached through [`Pipeline::handle`] and [`Pipeline::consume`].
//! - [`claim`]: the first claim wins; [`sla`]: sla-watch escalates what nobody claimed;
//!   [`close`]: a worked lead leaves its owner's count; [`activity`]: touches, meetings and
//!   outcomes after the alert; [`report`]: the speed-to-lead report and the handoff audit;
//!   [`dead_letters`]: listing and replaying dead letters; [`rules_diff`]: what a configuration
//!   change would have done to stored leads;
//!   `digest.rs`: the scheduled digest, queued by sla-watch and sent by the notify stage.
//!
//! This file holds the [`Pipeline`], the errors, the dispatch and retry schedule, and the helpers
//! the stages share.
//!
//! Every stage is idempotent under at-least-once delivery: it reads the lead's current state,
//! does its work only if the lead has not moved past it, writes conditionally, and forwards the
//! envelope either way (so a crash between "advanced" and "forwarded" heals on retry).

pub mod activity;
pub mod claim;
pub mod claim_policy;
pub mod close;
pub mod dead_letters;
mod digest;
mod enrich;
mod inbound;
pub use inbound::{InboundError, InboundPost, ReplyIntake, REPLY_TEXT_LIMIT};
mod ingest;
mod notify;
pub mod report;
pub mod reroute;
mod route;
pub mod rules_diff;
pub use route::RoutedBatch;
pub mod sla;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::{error, warn};

use crate::config::Config;
use crate::enrichment::Providers;
use crate::model::{Envelope, EnvelopeError, Lead, LeadState, Owner, Stage, StageFailure};
use crate::ports::{
    Clock, DeliveryStart, LeadStore, Notifier, NotifyError, Outgoing, Queue, QueueError, Received,
    StoreError,
};
use crate::render::{self, Alert};
use crate::routing::effects::Effects;
pub use crate::routing::open_leads_counter;
use crate::routing::Router;
use crate::rulebook::Rulebook;
use crate::signature;
use crate::validate::Rejection;

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
    /// The source's mapping does not take this event as a lead (answered 200, nothing stored).
    #[error("event {0:?} is not a lead event for this source")]
    Ignored(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The lead an activity event names kept changing while it was recorded (answered 503:
    /// the platform sends it again).
    #[error("lead {0} kept changing while an activity was recorded on it")]
    Busy(String),
    /// [`Pipeline::ingest`] only: the webhook was an activity event, not a lead.
    #[error("event {0:?} is an activity event, not a lead")]
    NotALead(String),
}

impl From<activity::ActivityError> for IngestError {
    fn from(error: activity::ActivityError) -> Self {
        match error {
            activity::ActivityError::Busy(lead_id) => IngestError::Busy(lead_id),
            activity::ActivityError::Store(error) => IngestError::Store(error),
        }
    }
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

/// What a webhook was: a lead, or an event the source's mapping ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    Lead(Accepted),
    /// An activity event after the alert: recorded on its lead, a duplicate of one recorded
    /// before, or kept as unmatched (`lead_id` is then `None`).
    Activity {
        status: ActivityStatus,
        lead_id: Option<String>,
    },
    Ignored {
        event: String,
    },
}

/// What became of an activity event; the webhook's answer says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityStatus {
    Recorded,
    Duplicate,
    Unmatched,
}

impl ActivityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Recorded => "recorded",
            ActivityStatus::Duplicate => "duplicate",
            ActivityStatus::Unmatched => "unmatched",
        }
    }
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

/// How a round of deliveries ends while some of it may still go out on a retry: a delivery
/// another worker still holds, else the transient failures (the queue retries the message on
/// the retry schedule, receipts skipping what went out); `Ok` when nothing is left to retry.
fn settle_retries(
    in_flight: Option<StageError>,
    mut transient: Vec<NotifyError>,
) -> Result<(), StageError> {
    if let Some(error) = in_flight {
        return Err(error);
    }
    match transient.len() {
        0 => Ok(()),
        1 => Err(StageError::Notify(transient.remove(0))),
        _ => Err(StageError::Deliveries(transient)),
    }
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
        // Said once at start, where the operator reads the log: what a weak source cannot stop.
        for source in config.sources.iter().map(|s| s.get_ref()) {
            if source.strength() == crate::config::Strength::TokenOnly {
                warn!(source = %source.id, "{}", source.strength().describe());
            }
        }
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

    /// Handles one message body from `stage`'s queue. A caller that serves one stage only (a
    /// Lambda function) calls that stage's own entry instead ([`Pipeline::handle_enrich`],
    /// [`Pipeline::handle_route`], [`Pipeline::handle_notify`]): this dispatch on a run-time
    /// stage links every stage's code into the binary.
    pub async fn handle(&self, stage: Stage, body: &str) -> Result<Outcome, StageError> {
        match stage {
            Stage::Enrich => self.handle_enrich(body).await,
            Stage::Route => self.handle_route(body).await,
            Stage::Notify => self.handle_notify(body).await,
        }
    }

    /// Handles one message body from the enrich queue.
    pub async fn handle_enrich(&self, body: &str) -> Result<Outcome, StageError> {
        self.handle_with(Stage::Enrich, body, Pipeline::enrich)
            .await
    }

    /// Handles one message body from the route queue.
    pub async fn handle_route(&self, body: &str) -> Result<Outcome, StageError> {
        self.handle_with(Stage::Route, body, Pipeline::route).await
    }

    /// Handles one message body from the notify queue: the lead's alerts, a prospect's
    /// reply for its current owner, or a scheduled digest (no lead's).
    pub async fn handle_notify(&self, body: &str) -> Result<Outcome, StageError> {
        let envelope = Envelope::from_json(body)?;
        if let Some(request) = &envelope.digest {
            if envelope.stage != Stage::Notify {
                return Err(StageError::WrongStage {
                    expected: Stage::Notify,
                    found: envelope.stage,
                });
            }
            return self.send_digest(&envelope, request).await;
        }
        if let Some(reply) = &envelope.reply {
            return self
                .handle_with(Stage::Notify, body, async |pipeline, lead| {
                    pipeline.forward_reply(&lead, &envelope, reply).await
                })
                .await;
        }
        self.handle_with(Stage::Notify, body, Pipeline::notify)
            .await
    }

    /// What every queued stage does around its own work (`run`): read the envelope, check it
    /// is for this stage, load the lead (quarantining one this version cannot read), and once
    /// the stage succeeded, clear the failure it recovered from.
    async fn handle_with(
        &self,
        stage: Stage,
        body: &str,
        run: impl AsyncFnOnce(&Pipeline, Lead) -> Result<Outcome, StageError>,
    ) -> Result<Outcome, StageError> {
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
        let outcome = run(self, lead).await?;
        self.recovered(stage, &envelope.lead_id, seen, &outcome)
            .await;
        Ok(outcome)
    }

    /// A success after a failure of this stage (or an earlier one): the lead is no longer
    /// held up by it. A duplicate of an earlier stage's message clears nothing later.
    async fn recovered(
        &self,
        stage: Stage,
        lead_id: &str,
        seen: Option<StageFailure>,
        outcome: &Outcome,
    ) {
        if let Some(failure) = seen.filter(|f| f.stage <= stage && !outcome.failed_for_good) {
            if let Err(e) = self.store.clear_failure(lead_id, &failure).await {
                warn!(lead_id = %lead_id, stage = %stage, error = %e,
                    "could not clear the lead's last failure");
            }
        }
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
        // A digest's message is no lead's: there is no lead to record the failure on.
        let lead_id = Envelope::from_json(&message.body)
            .ok()
            .filter(|e| e.digest.is_none())
            .map(|e| e.lead_id);
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

    /// Writes `next` if the lead is still in `from` and sends its message to `stage`, in the
    /// same write where the store holds the queues too. A lost race means another worker did
    /// the same work, which is fine: the message is sent again (downstream is idempotent), in
    /// case that worker died between its write and its send.
    async fn advance_and_forward(
        &self,
        next: &Lead,
        from: LeadState,
        effects: &Effects,
        stage: Stage,
    ) -> Result<bool, StageError> {
        let outgoing = Outgoing {
            stage,
            envelope: Envelope::new(&next.id, stage, &next.trace_id),
        };
        let (applied, sent) = match self
            .store
            .advance_lead_and_send(next, from, effects, &outgoing)
            .await
        {
            Ok(sent) => (true, sent),
            Err(StoreError::Conflict { actual, .. }) if actual > from => (false, false),
            Err(other) => return Err(other.into()),
        };
        if !sent {
            self.queue.send(stage, &outgoing.envelope).await?;
        }
        Ok(applied)
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

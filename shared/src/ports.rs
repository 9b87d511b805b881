//! The ports the stage code talks to; the stage code never knows which adapter it has.
//!
//! - [`LeadStore`], [`EnrichmentCache`], [`Queue`], [`DeadLetters`]: SQLite in the embedded
//!   mode (`leadrelay-sqlite`); DynamoDB and SQS on AWS (`leadrelay-aws`).
//! - [`Notifier`]: the alert channels (`leadrelay-channels`), which send e-mail through a
//!   [`Mailer`] (SMTP in `leadrelay-email`, SES in `leadrelay-aws`) and, on AWS, SMS through an
//!   [`SmsSender`] (SNS); [`NoChannels`] in a process that runs no notify stage.
//! - [`Clock`]: [`SystemClock`], or a clock a test holds still.
//! - [`ConsoleStore`]: the console's sessions and audit log, beside the leads in each store.
//!
//! The enrichment provider port is [`crate::enrichment::EnrichmentProvider`]. What a store
//! writes with a lead is described by [`crate::routing::effects`]; the contact index answers
//! with a [`ContactLookup`]. Ports build on the domain (model, routing, render, e-mail values)
//! and only the stages build on them.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::console::{ConsoleAction, Session};
use crate::email::OutgoingEmail;
use crate::model::{Envelope, Lead, LeadState, Stage, StageFailure, UnmatchedActivity};
use crate::render::Alert;
use crate::report::LeadFacts;
use crate::routing::duplicates::ContactLookup;
use crate::routing::effects::Effects;
use crate::routing::ledger::PoolLedger;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the lead was not in the state the writer expected.
    #[error("lead {lead_id} is {actual}, expected {expected}")]
    Conflict {
        lead_id: String,
        expected: LeadState,
        actual: LeadState,
    },
    /// A conditional write lost: the lead is in the expected state but another writer changed
    /// it since it was read (its revision moved). Read it again and decide again.
    #[error("lead {0} changed since it was read")]
    Stale(String),
    #[error("lead {0} not found")]
    NotFound(String),
    /// A guard on a counter or a pool ledger did not hold (a rep reached their cap, or another
    /// router moved the rotation first): nothing was written; decide again on fresh figures.
    #[error("contended: {0}")]
    Contended(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A stored lead this version cannot decode (written by an older version, or damaged).
    /// It is quarantined: its stage messages go to the dead-letter queue, listings skip it
    /// with a warning naming it, and `GET /leads/{id}` says so.
    #[error("lead {lead_id} is quarantined: its stored form cannot be read ({reason})")]
    Undecodable { lead_id: String, reason: String },
    /// The store could not do it (down, full, locked, throttled). `context` says what failed in
    /// words an operator can act on (it is what logs show); `source` keeps the adapter's own
    /// error for whoever needs to tell its kinds apart.
    #[error("store unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] caused by `source`, described by its own text.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable {
            context: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// [`StoreError::Unavailable`] with no error underneath (a limit the adapter enforces).
    pub fn unavailable_because(context: impl Into<String>) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }
}

/// Decodes a stored lead's body and its separately stored last failure. A body that does not
/// decode is [`StoreError::Undecodable`], naming the lead; the reason gives serde's position
/// and category but never a value, which may be prospect data.
pub fn decode_stored_lead(
    lead_id: &str,
    body: &str,
    failure: Option<&str>,
) -> Result<Lead, StoreError> {
    let undecodable = |error: serde_json::Error| StoreError::Undecodable {
        lead_id: lead_id.to_owned(),
        reason: decode_reason(&error),
    };
    let mut lead: Lead = serde_json::from_str(body).map_err(undecodable)?;
    if let Some(failure) = failure {
        lead.last_failure = Some(serde_json::from_str(failure).map_err(undecodable)?);
    }
    Ok(lead)
}

/// serde_json's message for syntax errors (fixed texts such as "recursion limit exceeded");
/// for a data error only its position, as the message may quote the value.
fn decode_reason(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Data => format!(
            "a value of the wrong type or shape at line {} column {}",
            error.line(),
            error.column()
        ),
        _ => error.to_string(),
    }
}

/// The readable leads of a listing, in order. An undecodable lead is skipped with a warning
/// naming it, so one quarantined lead never stops a report over the whole store; any other
/// error still fails the listing.
pub fn skip_undecodable(
    leads: impl IntoIterator<Item = Result<Lead, StoreError>>,
) -> Result<Vec<Lead>, StoreError> {
    let mut readable = Vec::new();
    for lead in leads {
        match lead {
            Ok(lead) => readable.push(lead),
            Err(StoreError::Undecodable { lead_id, reason }) => {
                tracing::warn!(lead_id = %lead_id, %reason, "skipping a quarantined lead: its stored form cannot be read");
            }
            Err(other) => return Err(other),
        }
    }
    Ok(readable)
}

/// A message for a lead's next stage, written with the lead when the store can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub stage: Stage,
    pub envelope: Envelope,
}

/// One lead's write in [`LeadStore::advance_leads_and_send`]: the arguments of
/// [`LeadStore::advance_lead_and_send`].
#[derive(Debug, Clone, Copy)]
pub struct Advance<'a> {
    pub lead: &'a Lead,
    pub from: LeadState,
    pub effects: &'a Effects,
    pub next: &'a Outgoing,
}

/// What [`LeadStore::advance_leads_and_send`] wrote.
#[derive(Debug, Default)]
pub struct Advanced {
    /// One entry per write applied, in order: whether the store queued its `next` with it.
    pub sent: Vec<bool>,
    /// Why the write after those stopped the batch; it and the rest changed nothing.
    pub stopped: Option<StoreError>,
}

/// What `create_lead` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The lead was written.
    New,
    /// A lead with the same source and event id already exists; nothing was written.
    Duplicate(Box<Lead>),
}

/// Remembers a signed body for a while, for a source whose scheme signs no timestamp: the same
/// bytes again within the window are a duplicate of the first lead, whatever event id they
/// carry (a captured request replayed with a fresh, unsigned id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    /// Hex SHA-256 of the raw body as signed.
    pub body_sha256: String,
    /// Now, by the pipeline's clock: a record that expires at or before it is gone.
    pub now: Timestamp,
    /// When the record of this body expires.
    pub expires_at: Timestamp,
}

/// What `begin_delivery` found for one lead and channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStart {
    /// Nobody has delivered, or an earlier attempt's lease ran out: go ahead.
    Proceed,
    /// Already delivered: never send again.
    AlreadyDelivered,
    /// Another attempt holds the lease until then.
    InFlight { until: Timestamp },
}

/// One UTC capture hour as a store keeps it for reports ([`LeadStore::report_hours`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportHour {
    /// Hours since the epoch ([`crate::report::rollup::hour_of`]).
    pub hour: i64,
    /// Moves with every write of the facts of a lead captured in this hour.
    pub generation: u64,
    /// The hour's report records as last stored, if any.
    pub bucket: Option<ReportBucket>,
}

/// An hour's encoded [`crate::report::Records`], with what they were built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBucket {
    /// The hour's generation when its facts were read to build it.
    pub generation: u64,
    /// [`crate::report::Directory::fingerprint`] of the configuration that measured it.
    pub fingerprint: u64,
    pub bytes: Vec<u8>,
}

/// A bucket to keep for `hour` ([`LeadStore::put_report_hours`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltHour {
    pub hour: i64,
    pub bucket: ReportBucket,
}

/// Lead state and SLA timestamps, idempotency records, counters and pool ledgers.
#[async_trait]
pub trait LeadStore: Send + Sync {
    /// Writes a new lead unless one exists for its `(source, event_id)`.
    async fn create_lead(&self, lead: &Lead) -> Result<Created, StoreError> {
        self.create_lead_guarded(lead, None).await
    }

    /// Like [`LeadStore::create_lead`]; with `replay`, also unless an unexpired record of the
    /// same body from the same source names a lead (that lead is the duplicate; the event id
    /// is checked first). The lead, its event record and its body record (expiring at
    /// `replay.expires_at`, replacing an expired one) are written in one atomic write, or none.
    async fn create_lead_guarded(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
    ) -> Result<Created, StoreError>;

    /// [`LeadStore::create_lead_guarded`], and the new lead's first message enqueued in the
    /// same atomic write when this store also holds the queues (the embedded store: a refused
    /// webhook then leaves nothing behind, and one commit instead of two). Returns whether it
    /// enqueued `next` (never for a duplicate); when it did not (the default, and DynamoDB
    /// beside SQS), the caller sends it after the write.
    async fn create_lead_and_send(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
        next: &Outgoing,
    ) -> Result<(Created, bool), StoreError> {
        let _ = next;
        self.create_lead_guarded(lead, replay)
            .await
            .map(|created| (created, false))
    }

    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, StoreError>;

    /// Replaces the stored lead with `lead` only if it is still in state `from` and at
    /// `lead.revision` (the revision it was read at), and applies `effects` in the same atomic
    /// write; the stored lead's revision becomes `lead.revision + 1`. A lead in another state
    /// or revision fails with [`StoreError::Conflict`]; a counter at its limit or a ledger
    /// whose version moved fails with [`StoreError::Contended`]. Either way nothing is written.
    /// The SLA due index follows [`Lead::sla_watch_at`].
    async fn advance_lead(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
    ) -> Result<(), StoreError>;

    /// [`LeadStore::advance_lead`], and the lead's message to its next stage enqueued in the
    /// same atomic write when this store also holds the queues (the embedded store: one
    /// commit instead of two, and no moment where the lead moved on but its message is not
    /// yet queued). Returns whether it enqueued `next`; when it did not (the default, and
    /// DynamoDB beside SQS), the caller sends it after the write.
    async fn advance_lead_and_send(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
        next: &Outgoing,
    ) -> Result<bool, StoreError> {
        let _ = next;
        self.advance_lead(lead, from, effects).await.map(|()| false)
    }

    /// Each of `writes` in order, as [`LeadStore::advance_lead_and_send`] would write it,
    /// stopping at the first that fails (it and those after it change nothing). The
    /// embedded store writes them all in one commit; the default writes one at a time.
    async fn advance_leads_and_send(&self, writes: &[Advance<'_>]) -> Advanced {
        let mut advanced = Advanced::default();
        for write in writes {
            match self
                .advance_lead_and_send(write.lead, write.from, write.effects, write.next)
                .await
            {
                Ok(sent) => advanced.sent.push(sent),
                Err(error) => {
                    advanced.stopped = Some(error);
                    break;
                }
            }
        }
        advanced
    }

    /// Records the latest stage failure on the lead, whatever its state.
    async fn record_failure(&self, lead_id: &str, failure: &StageFailure)
        -> Result<(), StoreError>;

    /// Removes the lead's recorded failure after a stage succeeded, only if it is still
    /// `seen` (the one read before the stage ran): a failure recorded since then stays.
    async fn clear_failure(&self, lead_id: &str, seen: &StageFailure) -> Result<(), StoreError>;

    /// Takes a lease on delivering `channel` for a lead, unless it was delivered already: the
    /// record of an attempt, written (durably) before the channel is called.
    async fn begin_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<DeliveryStart, StoreError>;

    /// Marks a channel delivered (the receipt, written durably as soon as the channel
    /// answered); later `begin_delivery` calls answer `AlreadyDelivered`.
    async fn finish_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Gives up the lease after a failed attempt, so the next retry may deliver at once.
    async fn release_delivery(&self, lead_id: &str, channel: &str) -> Result<(), StoreError>;

    /// Keeps the message a delivery posted (under its receipt key), so that a claim can edit
    /// it in place. The default keeps nothing: a store without it leaves messages as posted.
    async fn record_posted(
        &self,
        lead_id: &str,
        receipt: &str,
        message: &PostedMessage,
    ) -> Result<(), StoreError> {
        let _ = (lead_id, receipt, message);
        Ok(())
    }

    /// Every channel's delivery record for a lead, in channel order: what the console shows
    /// as the alert's receipts.
    async fn delivery_receipts(&self, lead_id: &str) -> Result<Vec<DeliveryReceipt>, StoreError>;

    /// The messages [`LeadStore::record_posted`] kept for a lead, in no particular order.
    async fn posted_messages(&self, lead_id: &str) -> Result<Vec<PostedMessage>, StoreError> {
        let _ = lead_id;
        Ok(Vec::new())
    }

    async fn counter(&self, name: &str) -> Result<i64, StoreError>;

    /// Several counters at once (0 for one never written), in the order asked.
    async fn counters(&self, names: &[String]) -> Result<Vec<i64>, StoreError> {
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            values.push(self.counter(name).await?);
        }
        Ok(values)
    }

    /// A pool's ledger for one period; an empty ledger at version 0 if none was written yet.
    async fn ledger(&self, pool: &str, period: &str) -> Result<PoolLedger, StoreError>;

    /// Leads captured at or after `since`, oldest first, at most `limit` (for `rules diff`).
    async fn leads_since(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError>;

    /// Leads captured at or after `since`, newest first, at most `limit`: the console's live
    /// list. Read from the capture-time index, never a scan of every lead.
    async fn recent_leads(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError>;

    /// The [`LeadFacts`] of the leads captured at or after `from` and before `to`, in no
    /// particular order: what a report reads. Stores keep the facts beside each lead and read
    /// them from a capture-time index, never decoding full leads; this default (for a store
    /// without them) derives them from [`LeadStore::leads_since`].
    async fn lead_facts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LeadFacts>, StoreError> {
        Ok(self
            .leads_since(from, usize::MAX)
            .await?
            .iter()
            .filter(|lead| lead.timeline.captured_at.is_some_and(|at| at < to))
            .map(LeadFacts::of)
            .collect())
    }

    /// The capture hours overlapping `[from, to)` that ever held a lead, oldest first, each
    /// with its generation and its stored report bucket; an hour not listed holds no lead.
    /// `None` (the default, and DynamoDB) when the store keeps no buckets: the caller reads
    /// [`LeadStore::lead_facts`] instead.
    async fn report_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Vec<ReportHour>>, StoreError> {
        let _ = (from, to);
        Ok(None)
    }

    /// Keeps each bucket only where its hour's generation is still `bucket.generation` (the
    /// one read before its facts were): a write since then leaves the hour stale, to be rebuilt
    /// by the next reader. Returns how many were kept; the default keeps none.
    async fn put_report_hours(&self, built: &[BuiltHour]) -> Result<usize, StoreError> {
        let _ = built;
        Ok(0)
    }

    /// Leads whose [`Lead::sla_watch_at`] is at or before `now`, earliest first, at most
    /// `limit`: read from the sparse due index, never a scan of all leads.
    async fn due_leads(&self, now: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError>;

    /// Sets a counter to zero (resuming a paused rep).
    async fn reset_counter(&self, name: &str) -> Result<(), StoreError>;

    /// Sets a counter to `value`, creating it if needed (a rep's availability, set in the
    /// console: [`crate::routing::away_until_counter`]).
    async fn set_counter(&self, name: &str, value: i64) -> Result<(), StoreError>;

    /// Keeps an activity event that matched no lead, once per activity key; whether it was
    /// new (a replay of a kept event changes nothing).
    async fn keep_unmatched(&self, event: &UnmatchedActivity) -> Result<bool, StoreError>;

    /// Unmatched activity events received at or after `since`, oldest first, at most `limit`.
    async fn unmatched_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<UnmatchedActivity>, StoreError>;

    /// The contact's indexed lead (see [`Effects::contact`]), and that lead as a merge target
    /// when it is still open and was routed at or after `since`.
    async fn open_lead_for_contact(
        &self,
        contact: &str,
        since: Timestamp,
    ) -> Result<ContactLookup, StoreError>;
}

/// Short-lived answers kept between leads, each with an expiry: the enrichment providers'
/// answers per domain. A separate port from [`LeadStore`] so that a provider needs only this.
#[async_trait]
pub trait EnrichmentCache: Send + Sync {
    /// The value cached under `key`, unless it expired at or before `now` (enrichment answers
    /// per domain). Expired entries are never returned, whenever the store removes them.
    async fn cached(&self, key: &str, now: Timestamp) -> Result<Option<String>, StoreError>;

    /// Caches `value` under `key` until `expires_at`, replacing what was there.
    async fn cache(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("receipt {0} is not valid (the message was received again or deleted)")]
    StaleReceipt(String),
}

/// A message taken from a queue and hidden from other consumers until its visibility ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// Needed to delete the message or change its visibility.
    pub receipt: String,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// The work waiting in the stage queues, as an adapter last measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Messages visible now across the stage queues (not in flight, not delayed, not dead).
    pub waiting: u64,
    /// Messages the stages finished per second, recently.
    pub drained_per_sec: f64,
}

/// One queue per stage, each with a dead-letter queue, with SQS's semantics.
#[async_trait]
pub trait Queue: Send + Sync {
    /// The backlog, where the adapter can tell it without a round trip: the embedded store
    /// samples it; SQS cannot, and scales the consumers out instead. Ingest sheds load on it.
    fn backlog(&self) -> Option<Backlog> {
        None
    }

    async fn send(&self, stage: Stage, envelope: &Envelope) -> Result<(), QueueError>;

    /// Sends a message that becomes visible only after `delay` (at most 15 minutes, as on SQS).
    async fn send_delayed(
        &self,
        stage: Stage,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Up to `max` visible messages. A message received more than the configured maximum
    /// number of times is moved to the stage's dead-letter queue instead of being returned.
    async fn receive(&self, stage: Stage, max: u32) -> Result<Vec<Received>, QueueError>;

    /// Called only after the stage succeeded.
    async fn delete(&self, stage: Stage, receipt: &str) -> Result<(), QueueError>;

    /// Deletes several messages whose stage succeeded; adapters may do it in one request.
    async fn delete_many(&self, stage: Stage, receipts: &[String]) -> Result<(), QueueError> {
        for receipt in receipts {
            self.delete(stage, receipt).await?;
        }
        Ok(())
    }

    /// Makes a failed message visible again after `delay`, noting why it failed.
    async fn retry_later(
        &self,
        stage: Stage,
        receipt: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError>;

    /// Moves a received message to `stage`'s dead-letter queue with `error`, when the stage
    /// gives up on it (its retry schedule is spent). Its receipt is spent with it: nothing is
    /// left to delete. A crash half-way may leave the message in both queues, never in none.
    async fn give_up(
        &self,
        stage: Stage,
        message: &Received,
        error: &str,
    ) -> Result<(), QueueError>;

    /// Puts a copy of `envelope` straight into `stage`'s dead-letter queue with `error` (a
    /// permanent failure that retrying cannot fix), where an operator finds and replays it.
    async fn dead_letter(
        &self,
        stage: Stage,
        envelope: &Envelope,
        error: &str,
    ) -> Result<(), QueueError>;
}

/// Why a delivery failed. Details never hold a URL, a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{channel} answered {status}: {detail}")]
    Rejected {
        channel: String,
        status: u16,
        detail: String,
    },
    #[error("{channel} unreachable: {detail}")]
    Unreachable { channel: String, detail: String },
    /// Refused for good (an SMTP 5xx reply, SES `MessageRejected`): retrying the same message
    /// cannot succeed, so delivery rules dead-letter it at once.
    #[error("{channel} refused the message for good: {detail}")]
    Permanent { channel: String, detail: String },
    /// The channel cannot work as configured (no provider, no token): retrying cannot help.
    #[error("{channel} is not configured: {detail}")]
    Misconfigured { channel: String, detail: String },
    /// The store could not record how far a multi-step delivery got ([`DeliverySteps`]):
    /// transient, the next attempt picks up from the last recorded step.
    #[error("{channel}: the delivery's progress could not be recorded: {source}")]
    Progress {
        channel: String,
        #[source]
        source: StoreError,
    },
}

impl NotifyError {
    /// A failure that retrying cannot fix: a 4xx other than 408 (timeout) and 429 (rate
    /// limited), or a bad configuration. The other channels are still delivered and the
    /// message goes to the dead-letter queue for a replay once it is fixed.
    pub fn is_permanent(&self) -> bool {
        match self {
            NotifyError::Rejected { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            NotifyError::Unreachable { .. } | NotifyError::Progress { .. } => false,
            NotifyError::Permanent { .. } | NotifyError::Misconfigured { .. } => true,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            NotifyError::Rejected { channel, .. }
            | NotifyError::Unreachable { channel, .. }
            | NotifyError::Permanent { channel, .. }
            | NotifyError::Misconfigured { channel, .. }
            | NotifyError::Progress { channel, .. } => channel,
        }
    }
}

/// Where one alert goes. URLs are secrets; `recipient` is `rep:bruno` or `queue:sdr`.
#[derive(Debug, Clone)]
pub enum Destination {
    /// The terminal running the embedded server.
    Terminal,
    /// A Slack incoming webhook of one recipient.
    SlackWebhook {
        recipient: String,
        url: secrecy::SecretString,
    },
    /// A message posted by the `[notify.slack]` app: in `channel` when one is set (a team's or
    /// queue's channel, with `mention` @-mentioned), else in `mention`'s DM with the app.
    SlackApp {
        recipient: String,
        channel: Option<String>,
        mention: Option<SlackUser>,
    },
    /// One rendered e-mail (a rep's alert or the prospect's acknowledgement), with its delivery
    /// receipt key (`email:rep:bruno`, `esc1:email:rep:erin`, `ack:prospect`).
    Email {
        receipt: String,
        email: Box<OutgoingEmail>,
    },
    /// A Teams Workflows webhook of one recipient; the card's Claim button opens
    /// `claim_link` (the recipient's signed link) when there is one.
    TeamsWebhook {
        recipient: String,
        url: secrecy::SecretString,
        claim_link: Option<String>,
    },
    /// An SMS to one rep's phone (E.164) through `[notify.sms]`.
    Sms {
        recipient: String,
        to: String,
        claim_link: Option<String>,
    },
    /// A `[[notify.webhooks]]` receiver, signed with the Standard Webhooks scheme.
    Webhook {
        name: String,
        url: secrecy::SecretString,
        key: crate::signature::SigningKey,
        claim_link: Option<String>,
        owner_email: Option<String>,
    },
    /// The prospect's HubSpot contact (found or created by e-mail, its owner set as
    /// `[notify.hubspot] owner_policy` allows), with the alert as a note and a task.
    Hubspot { target: HubspotTarget },
    /// The prospect's Salesforce Lead, upserted on its external id with its owner, and the
    /// Task of this alert round.
    Salesforce(Box<crate::salesforce::SalesforceWrite>),
}

/// Whom a HubSpot write gives the contact and the task to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubspotTarget {
    /// The HubSpot owner id of the lead's owner now: the rep's, the queue's, else
    /// `[notify.hubspot] default_owner_id`.
    pub owner_id: Option<String>,
    /// The queue's HubSpot team id.
    pub team_id: Option<String>,
    /// Whether this is an escalation round's alert.
    pub escalation: bool,
    /// On an escalation: the HubSpot owner id of the owner the lead escalated from, the owner
    /// leadrelay itself gave the contact before.
    pub previous_owner_id: Option<String>,
}

impl Destination {
    /// The channel's name in logs and errors (never the URL).
    pub fn channel(&self) -> &'static str {
        match self {
            Destination::Terminal => "terminal",
            Destination::SlackWebhook { .. } | Destination::SlackApp { .. } => "slack",
            Destination::Email { .. } => "email",
            Destination::TeamsWebhook { .. } => "teams",
            Destination::Sms { .. } => "sms",
            Destination::Webhook { .. } => "webhook",
            Destination::Hubspot { .. } => "hubspot",
            Destination::Salesforce(_) => "salesforce",
        }
    }

    /// The delivery receipt's key: one per channel and recipient, so that a broadcast or a
    /// queue and its manager each get their message exactly once. The notify stage prefixes
    /// it with the alert round, so each escalation round alerts once more.
    pub fn receipt(&self) -> String {
        match self {
            Destination::Terminal => "terminal".to_owned(),
            // One Slack message per recipient, whether a webhook or the app posts it.
            Destination::SlackWebhook { recipient, .. }
            | Destination::SlackApp { recipient, .. } => format!("slack:{recipient}"),
            Destination::Email { receipt, .. } => receipt.clone(),
            Destination::TeamsWebhook { recipient, .. } => format!("teams:{recipient}"),
            Destination::Sms { recipient, .. } => format!("sms:{recipient}"),
            Destination::Webhook { name, .. } => format!("webhook:{name}"),
            Destination::Hubspot { .. } => "hubspot".to_owned(),
            // The Lead and the Task in one receipt: the Lead is upserted on its external id
            // (a retry updates the same record) and the Task is created last, so a retry after
            // any failure repeats nothing that succeeded but the idempotent upsert.
            Destination::Salesforce(_) => "salesforce".to_owned(),
        }
    }
}

/// Where one step of a multi-step delivery stands (see [`DeliverySteps::begin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStart {
    /// No earlier attempt of the step: go ahead.
    New,
    /// An earlier attempt began and neither finished nor was refused (a timeout, a 5xx, a
    /// crash): it may have taken effect, so look before doing it again.
    Uncertain,
    /// Done in an earlier attempt: skip it.
    Done,
}

/// How far earlier attempts of one delivery got, step by step (a CRM write: the note, the
/// task), so that a retry or a replay redoes only what is missing. Steps are keyed within
/// the delivery's receipt, so each alert round has its own.
#[async_trait]
pub trait DeliverySteps: Send + Sync {
    /// Where `step` stands, and a durable record that it is being attempted now.
    async fn begin(&self, step: &str) -> Result<StepStart, StoreError>;
    /// The step took effect: later attempts skip it.
    async fn finish(&self, step: &str) -> Result<(), StoreError>;
    /// The attempt certainly had no effect (refused before it was applied): the next attempt
    /// starts the step afresh.
    async fn release(&self, step: &str) -> Result<(), StoreError>;
}

/// Steps recorded nowhere: every step is new. For a delivery outside the notify stage.
pub struct NoSteps;

#[async_trait]
impl DeliverySteps for NoSteps {
    async fn begin(&self, _step: &str) -> Result<StepStart, StoreError> {
        Ok(StepStart::New)
    }
    async fn finish(&self, _step: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn release(&self, _step: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A rep as the Slack app knows them: their member id when configured, else the e-mail address
/// to look it up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    pub id: Option<String>,
    pub email: Option<String>,
}

/// Sends one text message; the HTTP provider of `[notify.sms]` or Amazon SNS on Lambda.
#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send_sms(&self, to: &str, text: &str) -> Result<(), NotifyError>;
}

/// Sends one e-mail. Transient failures are [`NotifyError::Unreachable`] or
/// [`NotifyError::Rejected`] (retried with the message); a refusal that no retry can change is
/// [`NotifyError::Permanent`].
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), NotifyError>;
}

/// One channel's delivery record for a lead: delivered (the receipt), or attempted and not
/// yet delivered (a lease, or neither after a released attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// The receipt's channel key (`slack:rep:alice`, `esc1:email:...`).
    pub channel: String,
    pub delivered_at: Option<Timestamp>,
    /// While an attempt is in progress: when its lease ends.
    pub lease_until: Option<Timestamp>,
}

/// A message a channel posted and can edit later: the Slack app's conversation id and the
/// message's `ts`, as `chat.postMessage` answered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
}

/// Delivers an alert to one destination.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn deliver(&self, destination: &Destination, alert: &Alert) -> Result<(), NotifyError>;

    /// [`Notifier::deliver`], and the message it posted when the channel can edit it later
    /// (the Slack app); `None` for the others.
    async fn deliver_posted(
        &self,
        destination: &Destination,
        alert: &Alert,
    ) -> Result<Option<PostedMessage>, NotifyError> {
        self.deliver(destination, alert).await.map(|()| None)
    }

    /// [`Notifier::deliver_posted`] for a delivery of several steps (HubSpot: the contact, a
    /// note, a task), recording each step in `steps` so that a retry or a replay does only
    /// what is missing. Single-step channels ignore `steps`.
    async fn deliver_steps(
        &self,
        destination: &Destination,
        alert: &Alert,
        steps: &dyn DeliverySteps,
    ) -> Result<Option<PostedMessage>, NotifyError> {
        let _ = steps;
        self.deliver_posted(destination, alert).await
    }

    /// The e-mail address of a Slack member (`users.info`), to know a rep who presses Claim
    /// without a configured `slack_user_id`. `None` when this process has no Slack app.
    async fn slack_member_email(&self, member: &str) -> Result<Option<String>, NotifyError> {
        let _ = member;
        Ok(None)
    }

    /// Replaces a posted message with `message` (a Slack Block Kit payload: `text`, `blocks`).
    /// The default cannot: a process without the Slack app.
    async fn update_posted(
        &self,
        posted: &PostedMessage,
        message: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        let _ = (posted, message);
        Err(NotifyError::Misconfigured {
            channel: "slack".into(),
            detail: "this process cannot edit Slack messages".into(),
        })
    }

    /// Posts `message` (a Block Kit payload: `text`, `blocks`) in `channel` with the
    /// `[notify.slack]` app: a message that is no lead's alert (the digest). The default
    /// cannot: a process without the Slack app.
    async fn post_to_channel(
        &self,
        channel: &str,
        message: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        let _ = (channel, message);
        Err(NotifyError::Misconfigured {
            channel: "slack".into(),
            detail: "this process cannot post to Slack channels".into(),
        })
    }

    /// Sends an e-mail that is no lead's alert (the digest) through the [`Mailer`]. The
    /// default cannot: a process without a mail transport.
    async fn send_email(&self, email: &OutgoingEmail) -> Result<(), NotifyError> {
        let _ = email;
        Err(NotifyError::Misconfigured {
            channel: "email".into(),
            detail: "this process has no mail transport".into(),
        })
    }

    /// Posts `text` (Slack mrkdwn) in the thread of a posted message. The default cannot: a
    /// process without the Slack app.
    async fn reply_in_thread(&self, posted: &PostedMessage, text: &str) -> Result<(), NotifyError> {
        let _ = (posted, text);
        Err(NotifyError::Misconfigured {
            channel: "slack".into(),
            detail: "this process cannot post in Slack threads".into(),
        })
    }
}

/// The notifier of a process that runs no notify stage (the AWS functions other than notify,
/// which link no channel code): every delivery is refused for good, so a message that reached
/// the wrong process can never pass for delivered.
pub struct NoChannels;

#[async_trait]
impl Notifier for NoChannels {
    async fn deliver(&self, destination: &Destination, _alert: &Alert) -> Result<(), NotifyError> {
        Err(NotifyError::Permanent {
            channel: destination.channel().to_owned(),
            detail: "this process has no alert channels (the notify stage runs elsewhere)".into(),
        })
    }
}

/// Wall-clock time, a port so that tests can hold it still.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A message parked in a stage's dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    /// Needed to move or delete it; valid while the listing holds the message.
    pub receipt: String,
    pub body: String,
    pub lead_id: Option<String>,
    /// Receives before it was dead-lettered.
    pub receive_count: u32,
    pub last_error: Option<String>,
    /// When it was first sent to its stage's queue.
    pub sent_at: Option<Timestamp>,
}

/// What an operator does with dead letters; replaying is safe because every stage is idempotent.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Up to `max` messages of `stage`'s dead-letter queue, oldest first where the queue knows.
    /// On SQS the listed messages stay hidden for `hold` so they can be replayed by receipt.
    async fn list(
        &self,
        stage: Stage,
        max: usize,
        hold: Duration,
    ) -> Result<Vec<DeadLetter>, QueueError>;

    /// Puts the message back on `stage`'s queue, then removes it from the dead-letter queue
    /// (in that order: a crash in between duplicates, which the stages absorb, never loses).
    async fn replay(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError>;

    /// Deletes one dead letter for good.
    async fn discard(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError>;

    /// Makes listed-but-untouched messages visible again at once (SQS); a no-op elsewhere.
    async fn release(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError>;
}

/// The web console's sessions and audit log. Kept in the same store as the leads (SQLite; the
/// DynamoDB table), so a session works on every instance that serves the console.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Keeps a new session under its [`Session::key`].
    async fn start_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session stored under `key`, if any and if it has not expired at `now`.
    async fn session(&self, key: &str, now: Timestamp) -> Result<Option<Session>, StoreError>;

    /// Ends a session (sign-out); ending one that is gone is not an error.
    async fn end_session(&self, key: &str) -> Result<(), StoreError>;

    /// Appends one entry to the audit log.
    async fn record_action(&self, action: &ConsoleAction) -> Result<(), StoreError>;

    /// Audit entries at or after `since`, newest first, at most `limit`.
    async fn actions_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConsoleAction>, StoreError>;
}

//! The notify stage's e-mail part: who gets an alert e-mail, and the prospect's
//! acknowledgement. The messages themselves are rendered by
//! [`crate::render::email`].

use jiff::tz::TimeZone;
use jiff::Timestamp;
use tracing::{info, warn};

use crate::email::{Mailbox, OutgoingEmail};
use crate::model::{Lead, Owner};
use crate::ports::{DeliveryStart, Destination};
use crate::render::email::{self as render, Envelope, Expectation};
use crate::stages::{Pipeline, StageError};

/// The acknowledgement's delivery receipt: once per lead, whatever the escalation round.
pub const ACK_RECEIPT: &str = "ack:prospect";

/// Flags that still allow an acknowledgement: they say nothing against the address.
const HARMLESS_FLAGS: &[&str] = &["missing_fields"];

impl Pipeline {
    /// E-mail alerts for this round: the owning rep, a queue's manager, or each alerted member
    /// of a broadcast pool, when they have `alert_email = true` (and the latest escalation step,
    /// if it names channels, names `email`). Each carries the rep's own
    /// signed claim link; receipts are `email:rep:<id>` prefixed by the alert round.
    pub fn email_destinations(&self, lead: &Lead) -> Vec<Destination> {
        let Some(from) = self.email_sender() else {
            return Vec::new();
        };
        // An escalation step that names its channels alerts on those only.
        let excluded = lead
            .escalations
            .last()
            .and_then(|step| step.channels.as_ref())
            .is_some_and(|channels| !channels.iter().any(|c| c == "email"));
        if excluded {
            return Vec::new();
        }
        let mut reps: Vec<&str> = match lead.assignment.as_ref().map(|a| &a.owner) {
            Some(Owner::Rep(id)) => vec![id.as_str()],
            Some(Owner::Queue(id)) => self
                .config
                .queue(id)
                .and_then(|q| q.manager.as_ref())
                .map(|m| vec![m.get_ref().as_str()])
                .unwrap_or_default(),
            Some(Owner::Pool(_)) => super::broadcast_members(lead),
            None => Vec::new(),
        };
        reps.dedup();
        let tier = lead.qualification.as_ref().map_or(0, |q| q.tier);
        let tier_label = self.rulebook.tier_label(tier);
        let now = self.clock.now();
        let round = lead.alert_round();
        reps.into_iter()
            .filter_map(|id| {
                let rep = self.config.rep(id).filter(|r| r.alert_email)?;
                let to = render::mailbox(Some(&rep.name), rep.email.as_deref()?)?;
                let receipt = format!("{round}email:rep:{id}");
                let claim = crate::claim_link::url_for(&self.config, &lead.id, id, now);
                let envelope = Envelope {
                    from: from.clone(),
                    to,
                    reply_to: None,
                };
                let email =
                    render::rep_alert(lead, tier_label, claim.as_deref(), envelope, &receipt);
                Some(Destination::Email {
                    receipt,
                    email: Box::new(email),
                })
            })
            .collect()
    }

    /// Sends the prospect's acknowledgement once, if it is due. A permanent refusal (the
    /// address does not exist) is logged and settled, never retried; a transient failure is
    /// returned so the message is retried (callers deliver the rep alerts first regardless).
    pub async fn acknowledge(&self, lead: &Lead) -> Result<(), StageError> {
        let now = self.clock.now();
        let Some(email) = self.acknowledgement(lead, now) else {
            return Ok(());
        };
        let (start, _claim) = self.begin_delivery(&lead.id, ACK_RECEIPT).await?;
        match start {
            DeliveryStart::AlreadyDelivered => return Ok(()),
            DeliveryStart::InFlight { until } => {
                return Err(StageError::DeliveryInFlight {
                    channel: ACK_RECEIPT.into(),
                    until,
                })
            }
            DeliveryStart::Proceed => {}
        }
        let destination = Destination::Email {
            receipt: ACK_RECEIPT.into(),
            email: Box::new(email),
        };
        // The e-mail carries its own content; the notifier takes the lead's alert all the same.
        let alert = crate::stages::alert_for(self, lead);
        match self.notifier.deliver(&destination, &alert).await {
            Ok(()) => {
                self.store
                    .finish_delivery(&lead.id, ACK_RECEIPT, self.clock.now())
                    .await?;
                info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify", "prospect acknowledged");
                Ok(())
            }
            Err(error) if error.is_permanent() => {
                // Settled: the receipt stops every later attempt. The reply text may quote the
                // prospect's address, so only the fact is logged.
                self.store
                    .finish_delivery(&lead.id, ACK_RECEIPT, self.clock.now())
                    .await?;
                warn!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                    "acknowledgement refused for good by the mail system; not retried");
                Ok(())
            }
            Err(error) => {
                self.store.release_delivery(&lead.id, ACK_RECEIPT).await?;
                Err(error.into())
            }
        }
    }

    /// The acknowledgement for a routed lead, or `None` when none is due: e-mail or the switch
    /// off (globally or for the lead's source), a merged duplicate (its person already got
    /// one), a flagged address (junk, disposable, reserved, role or competitor: nobody to
    /// thank, or nobody who asked), or no usable address.
    pub fn acknowledgement(&self, lead: &Lead, now: Timestamp) -> Option<OutgoingEmail> {
        let config = self
            .config
            .notify
            .email
            .as_ref()
            .filter(|e| e.acknowledge)?;
        let source = self.config.source(&lead.source).filter(|s| s.acknowledge)?;
        if lead.merged_into.is_some()
            || lead
                .flags
                .iter()
                .any(|f| !HARMLESS_FLAGS.contains(&f.code.as_str()))
        {
            return None;
        }
        let assignment = lead.assignment.as_ref()?;
        let name = lead
            .enrichment
            .as_ref()
            .and_then(|e| e.name.as_deref())
            .or(lead.capture.name.as_deref());
        let to = render::mailbox(name, lead.capture.captured_email.as_deref()?)?;
        let from: Mailbox = config.from.parse().ok()?;

        // The owner's first name and address, when the owner is one person.
        let owner = match &assignment.owner {
            Owner::Rep(id) => self.config.rep(id),
            Owner::Queue(_) | Owner::Pool(_) => None,
        };
        let owner_first = owner.and_then(|r| render::first_name(&r.name));
        // With a reply relay, replies come back through it and follow the lead's owner;
        // without, they go to the owner at the time of sending.
        let reply_to = match self.reply_address(&lead.id) {
            Some(relay) => render::mailbox(owner.map(|r| r.name.as_str()), &relay),
            None => owner.and_then(|r| render::mailbox(Some(&r.name), r.email.as_deref()?)),
        };

        let schedule = self.router.owner_schedule(&assignment.owner);
        let tz = || {
            self.router
                .owner_time_zone(&assignment.owner)
                .unwrap_or(TimeZone::UTC)
        };
        let opening = match assignment.held_until.filter(|until| *until > now) {
            Some(until) => Some(until),
            None => schedule
                .filter(|s| s.closed_at(now).is_some())
                .and_then(|s| s.next_opening(now)),
        };
        let expectation = match opening {
            Some(at) => Expectation::Opening { at, tz: tz() },
            None => Expectation::Within {
                minutes: lead.qualification.as_ref().map_or(0, |q| q.sla_minutes),
            },
        };
        // The lead's own language first, else its source's.
        let language = crate::stated::language(lead).or_else(|| source.language.clone());
        let wording = config
            .acknowledgements
            .iter()
            .find(|t| t.matches(&lead.source, language.as_deref()))
            .map(|t| render::Wording {
                subject: &t.subject,
                text: &t.text,
            });
        Some(render::acknowledgement(
            lead,
            owner_first.as_deref(),
            &expectation,
            now,
            Envelope { from, to, reply_to },
            wording,
        ))
    }

    /// The lead's reply address (`replies+<token>@in.example.com`), when
    /// `[notify.email.replies]` is configured.
    pub fn reply_address(&self, lead_id: &str) -> Option<String> {
        let replies = self.config.notify.email.as_ref()?.replies.as_ref()?;
        let key = self.config.claim.link_keys.first()?;
        Some(replies.relay()?.for_lead(key, lead_id))
    }

    /// The configured sender, when e-mail is on.
    fn email_sender(&self) -> Option<Mailbox> {
        self.config.notify.email.as_ref()?.from.parse().ok()
    }
}

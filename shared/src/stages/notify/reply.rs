//! A prospect's reply, forwarded to whoever owns the lead now: the rep who claimed it, else the
//! owner after the latest escalation, else the routed owner (the assignment's owner is rewritten
//! by each). A queue's reply goes to its manager, a broadcast pool's to the manager of its
//! team's queue; where that has no address, to `[operations] email`.
//!
//! Sent once per message (receipt `reply:<sha256 of Message-Id>`), from the configured sender,
//! Reply-To the prospect. A reply that cannot be sent for good (nobody to send it to, a
//! permanent refusal) is parked in the notify dead-letter queue, where the message (the reply's
//! only copy) waits for a replay once the address is fixed.

use tracing::{error, info};

use super::super::{Outcome, Pipeline, StageError};
use crate::email::Mailbox;
use crate::model::{Envelope, Lead, Owner};
use crate::ports::{DeliveryStart, Destination};
use crate::render::email::{self as render, Envelope as Parties};
use crate::reply_relay::ForwardedReply;

impl Pipeline {
    /// Forwards `reply` (carried by `envelope`) to the lead's current owner.
    pub(in crate::stages) async fn forward_reply(
        &self,
        lead: &Lead,
        envelope: &Envelope,
        reply: &ForwardedReply,
    ) -> Result<Outcome, StageError> {
        let receipt = format!("reply:{}", reply.message_key);
        let Some((to, rep)) = self.reply_recipient(lead) else {
            return self
                .park_reply(lead, envelope, "nobody to forward the reply to: the owner, their queue's manager and [operations] email have no address")
                .await;
        };
        let (Some(from), Ok(prospect)) = (self.email_from(), reply.from.parse::<Mailbox>()) else {
            return self
                .park_reply(
                    lead,
                    envelope,
                    "the reply cannot be addressed: no [notify.email] sender or prospect address",
                )
                .await;
        };
        let (start, _claim) = self.begin_delivery(&lead.id, &receipt).await?;
        match start {
            DeliveryStart::AlreadyDelivered => {
                return Ok(Outcome {
                    skipped_as_done: true,
                    ..Outcome::default()
                })
            }
            DeliveryStart::InFlight { until } => {
                return Err(StageError::DeliveryInFlight {
                    channel: receipt,
                    until,
                })
            }
            DeliveryStart::Proceed => {}
        }
        let link = match (&self.config.notify.crm_url, rep) {
            (Some(template), _) => Some(crate::render::crm_link(template, lead)),
            (None, Some(rep)) => {
                crate::claim_link::url_for(&self.config, &lead.id, rep, self.clock.now())
            }
            (None, None) => None,
        };
        let email = render::forwarded_reply(
            lead,
            reply,
            link.as_deref(),
            Parties {
                from,
                to,
                reply_to: Some(prospect),
            },
        );
        let destination = Destination::Email {
            receipt: receipt.clone(),
            email: Box::new(email),
        };
        let alert = crate::stages::alert_for(self, lead);
        match self.notifier.deliver(&destination, &alert).await {
            Ok(()) => {
                self.store
                    .finish_delivery(&lead.id, &receipt, self.clock.now())
                    .await?;
                info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                    owner = rep.unwrap_or("(address)"), "prospect reply forwarded to the lead's owner");
                Ok(Outcome::default())
            }
            Err(error) if error.is_permanent() => {
                self.store.release_delivery(&lead.id, &receipt).await?;
                self.park_reply(lead, envelope, &error.to_string()).await
            }
            Err(error) => {
                self.store.release_delivery(&lead.id, &receipt).await?;
                Err(error.into())
            }
        }
    }

    /// Whom a reply goes to now, and the rep's id when it is a rep.
    fn reply_recipient<'a>(&'a self, lead: &'a Lead) -> Option<(Mailbox, Option<&'a str>)> {
        let rep_mailbox = |id: &'a str| {
            let rep = self.config.rep(id)?;
            Some((
                render::mailbox(Some(&rep.name), rep.email.as_deref()?)?,
                Some(id),
            ))
        };
        let manager_of = |queue: &str| {
            let manager = self.config.queue(queue)?.manager.as_ref()?;
            rep_mailbox(manager.get_ref().as_str())
        };
        let owner = match (&lead.claim, lead.assignment.as_ref().map(|a| &a.owner)) {
            (Some(claim), _) => Some(Owner::Rep(claim.rep.clone())),
            (None, owner) => owner.cloned(),
        };
        let found = match &owner {
            Some(Owner::Rep(id)) => self
                .config
                .rep(id)
                .map(|r| r.id.as_str())
                .and_then(rep_mailbox)
                .or_else(|| manager_of(self.router.team_queue_of(id))),
            Some(Owner::Queue(queue)) => manager_of(queue),
            Some(Owner::Pool(pool)) => self
                .config
                .pool(pool)
                .and_then(|p| p.team.as_deref())
                .and_then(|team| self.config.team(team))
                .and_then(|team| team.queue.as_deref())
                .and_then(manager_of),
            None => None,
        };
        found.or_else(|| {
            let operations = self.config.operations.email.as_deref()?;
            Some((render::mailbox(None, operations)?, None))
        })
    }

    /// The configured sender, when e-mail is on.
    fn email_from(&self) -> Option<Mailbox> {
        self.config.notify.email.as_ref()?.from.parse().ok()
    }

    /// A reply that retrying cannot send: its message goes to the notify dead-letter queue (the
    /// reply's only copy) with the reason, and the lead records the failure.
    async fn park_reply(
        &self,
        lead: &Lead,
        envelope: &Envelope,
        reason: &str,
    ) -> Result<Outcome, StageError> {
        let text = format!("reply not forwarded: {reason}");
        self.park(envelope, text.clone()).await?;
        error!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify", channel = "email",
            error = %text, "dead-lettered: a prospect reply that cannot be forwarded");
        Ok(Outcome {
            failed_for_good: true,
            ..Outcome::default()
        })
    }
}

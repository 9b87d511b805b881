//! The notify stage: the prospect's acknowledgement, then the owner's alert on every channel
//! they watch, each delivered once per alert round (a receipt per channel and recipient).
//! The e-mail part (who gets an alert e-mail, the acknowledgement) is in `notify/email.rs`.

mod announce;
mod email;
mod reply;
mod steps;

use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use tracing::{error, info, warn};

use super::{join_errors, render_alert, settle_retries, Outcome, Pipeline, StageError};
use crate::claim_link;
use crate::config::{QueueConfig, RepConfig};
use crate::model::{Envelope, Lead, LeadState, Owner, Stage, StageFailure};
use crate::ports::{DeliveryStart, Destination, HubspotTarget, NotifyError, SlackUser, StoreError};
use crate::render::Alert;
use crate::routing::effects::Effects;

/// SQS's longest message delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

impl Pipeline {
    pub(super) async fn notify(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        // News of a claim, a close or an escalation goes on the alerts already posted first
        // (before an escalation's new round is posted beside them).
        self.announce(&lead).await?;
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
        // The CRM write last: its several calls never delay a person's alert.
        destinations.sort_by_key(|d| matches!(d, Destination::Hubspot { .. }));
        // The costlier formats only when a destination needs them.
        let mut alert = render_alert(
            self,
            &lead,
            destinations
                .iter()
                .any(|d| matches!(d, Destination::TeamsWebhook { .. })),
            destinations
                .iter()
                .any(|d| matches!(d, Destination::Webhook { .. })),
        );
        if destinations
            .iter()
            .any(|d| matches!(d, Destination::Hubspot { .. }))
        {
            let tier_label = self.rulebook.tier_label(alert.tier);
            alert.crm_note = Some(crate::render::crm_note(&lead, tier_label, &alert.headline));
        }
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
        // the owner from hearing of the lead on the others. The leases are taken in order...
        let mut attempts = Vec::new();
        for destination in destinations {
            // Each escalation round alerts its recipients once, even the same people again;
            // e-mail destinations carry the round in their receipt already (their Message-ID).
            let receipt = match &destination {
                Destination::Email { receipt, .. } => receipt.clone(),
                other => format!("{round}{}", other.receipt()),
            };
            let counts = Some(reach(&destination)) == counting;
            let (start, claim) = self.begin_delivery(&lead.id, &receipt).await?;
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
                DeliveryStart::Proceed => attempts.push((destination, receipt, counts, claim)),
            }
        }
        // ...then every channel is called at once: the owner's alert never waits behind
        // another channel's call and receipt (a second Slack post, a slow SMS gateway).
        let lead_id = lead.id.as_str();
        let alert = &alert;
        let results = futures::future::join_all(attempts.into_iter().map(
            |(destination, receipt, counts, claim)| async move {
                let result = self
                    .deliver_one(lead_id, &destination, &receipt, alert)
                    .await;
                drop(claim);
                (receipt, counts, result)
            },
        ))
        .await;
        // When the owner was first told: the earliest delivery on a channel that counts.
        let mut told_at: Option<Timestamp> = None;
        let mut store_error = None;
        for (receipt, counts, result) in results {
            match result {
                Ok(Ok(at)) => {
                    if counts {
                        told = true;
                        told_at = Some(told_at.map_or(at, |t| t.min(at)));
                    }
                    delivered.push(receipt);
                }
                Ok(Err(failure)) if failure.is_permanent() => permanent.push(failure),
                Ok(Err(failure)) => transient.push(failure),
                Err(error) => store_error = Some(error),
            }
        }
        if let Some(error) = store_error {
            return Err(error.into());
        }
        // Notified as soon as the owner was told, whatever failed besides: the failed channels
        // are retried (or parked) on their own, and their receipts skip the rest.
        let mut applied = false;
        if lead.state == LeadState::Routed && told {
            lead.state = LeadState::Notified;
            // The first alert's delivery: where first-response time splits (an escalation's
            // alert goes out later, and is not the system's first response).
            lead.timeline
                .notified_at
                .get_or_insert(told_at.unwrap_or_else(|| self.clock.now()));
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
        settle_retries(in_flight, transient)?;
        acknowledged?;
        if !permanent.is_empty() {
            // Retrying cannot fix these: park a copy in the dead-letter queue, naming each
            // channel, for a replay once the endpoint or the configuration is fixed.
            let error = join_errors(&permanent);
            let envelope = Envelope::new(&lead.id, Stage::Notify, &lead.trace_id);
            self.park(&envelope, format!("permanent delivery failure: {error}"))
                .await?;
            let channels: Vec<&str> = permanent.iter().map(NotifyError::channel).collect();
            error!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "notify",
                channel = %channels.join(","), error = %error,
                "dead-lettered: permanent delivery failure");
        }
        Ok(Outcome {
            skipped_as_done: !applied && delivered.is_empty(),
            failed_for_good: !permanent.is_empty(),
        })
    }

    /// Calls one channel whose lease is taken, then writes its receipt (when it answered) or
    /// gives the lease back (when it failed). The inner result is the channel's: when it
    /// delivered, or why not.
    async fn deliver_one(
        &self,
        lead_id: &str,
        destination: &Destination,
        receipt: &str,
        alert: &Alert,
    ) -> Result<Result<Timestamp, NotifyError>, StoreError> {
        // A CRM write of several steps records each, so that a retry does only the rest.
        let steps = steps::StepReceipts {
            store: &*self.store,
            clock: &*self.clock,
            lead_id,
            receipt,
        };
        match self
            .notifier
            .deliver_steps(destination, alert, &steps)
            .await
        {
            Ok(posted) => {
                let at = self.clock.now();
                // Written (fsync'd) at once: the window in which a crash sends this channel
                // again is this one write.
                self.store.finish_delivery(lead_id, receipt, at).await?;
                // For the claim to edit it in place; losing it only leaves it as posted.
                if let Some(posted) = posted {
                    if let Err(e) = self.store.record_posted(lead_id, receipt, &posted).await {
                        warn!(lead_id = %lead_id, stage = "notify", channel = %receipt,
                            error = %e, "the posted message was not kept");
                    }
                }
                Ok(Ok(at))
            }
            Err(failure) => {
                self.store.release_delivery(lead_id, receipt).await?;
                warn!(lead_id = %lead_id, stage = "notify", channel = %receipt,
                    permanent = failure.is_permanent(), error = %failure, "delivery failed");
                Ok(Err(failure))
            }
        }
    }

    /// The channels the owner watches: the terminal when enabled; for each recipient (the
    /// rep, each alerted member of a broadcast pool, or the queue and its manager: a lead in
    /// a queue has no single owner yet, so the manager always hears of it) their Slack and
    /// Teams webhooks and, for a tier-1 lead, an SMS; then each outbound webhook, HubSpot and
    /// Salesforce.
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
            if let Some(url) = slack {
                // One message per webhook, even if a queue and its manager share a channel.
                if !shares_url(&destinations, url) {
                    destinations.push(Destination::SlackWebhook {
                        recipient: recipient.clone(),
                        url: url.clone(),
                    });
                }
            } else if config.notify.slack.is_some() {
                // The app covers whoever has no webhook of their own: a rep in their team's
                // (or own) channel with a mention, else in their DM; a queue in its channel.
                let channel = match (rep, queue) {
                    (Some(rep), _) => rep.slack_channel.clone().or_else(|| {
                        rep.team
                            .as_deref()
                            .and_then(|t| config.team(t))
                            .and_then(|t| t.slack_channel.clone())
                    }),
                    (None, Some(queue)) => queue.slack_channel.clone(),
                    (None, None) => None,
                };
                let mention = rep
                    .filter(|r| r.slack_user_id.is_some() || r.email.is_some())
                    .map(|r| SlackUser {
                        id: r.slack_user_id.clone(),
                        email: r.email.clone(),
                    });
                if channel.is_some() || mention.is_some() {
                    destinations.push(Destination::SlackApp {
                        recipient: recipient.clone(),
                        channel,
                        mention,
                    });
                }
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
        // HubSpot matches the contact by e-mail. Whoever owns the lead (a rep, a queue, else
        // the default owner) gets the task, and the contact as `owner_policy` allows.
        if let Some(hubspot) = config.notify.hubspot.as_ref().filter(|h| h.write_back) {
            if lead.capture.captured_email.is_some() {
                let hubspot_owner = |owner: &Owner| match owner {
                    Owner::Rep(id) => config.rep(id).and_then(|r| r.hubspot_owner_id.clone()),
                    Owner::Queue(id) => config.queue(id).and_then(|q| q.hubspot_owner_id.clone()),
                    Owner::Pool(_) => None,
                };
                let or_default =
                    |id: Option<String>| id.or_else(|| hubspot.default_owner_id.clone());
                let escalated = lead.escalations.last();
                destinations.push(Destination::Hubspot {
                    target: HubspotTarget {
                        owner_id: or_default(owner.and_then(hubspot_owner)),
                        team_id: match owner {
                            Some(Owner::Queue(id)) => {
                                config.queue(id).and_then(|q| q.hubspot_team_id.clone())
                            }
                            _ => None,
                        },
                        escalation: escalated.is_some(),
                        previous_owner_id: escalated
                            .and_then(|step| or_default(hubspot_owner(&step.from))),
                    },
                });
            }
        }
        if let Some(salesforce) = config.notify.salesforce.as_ref().filter(|s| s.write_back) {
            let tier_label = self.rulebook.tier_label(tier);
            if let Some(write) = crate::salesforce::write_for(config, salesforce, lead, tier_label)
            {
                destinations.push(Destination::Salesforce(Box::new(write)));
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
/// e-mail), 1 for an integration that feeds another system (outbound webhook, HubSpot,
/// Salesforce), 0 for
/// the terminal of `leadrelay serve`. The lead is notified by a delivery on the highest kind
/// its owner has.
fn reach(destination: &Destination) -> u8 {
    match destination {
        Destination::Terminal => 0,
        Destination::Webhook { .. } | Destination::Hubspot { .. } | Destination::Salesforce(_) => 1,
        Destination::SlackWebhook { .. }
        | Destination::SlackApp { .. }
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

/// The members a broadcast pool alerted, from the routing trace.
fn broadcast_members(lead: &Lead) -> Vec<&str> {
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

impl Pipeline {
    /// Parks `envelope` in the notify dead-letter queue with `text` (replayable once the cause
    /// is fixed) and keeps `text` as its lead's last failure, so the lead and the dead-letter
    /// listing both say why.
    async fn park(&self, envelope: &Envelope, text: String) -> Result<(), StageError> {
        self.queue
            .dead_letter(Stage::Notify, envelope, &text)
            .await?;
        let failure = StageFailure {
            stage: Stage::Notify,
            error: text,
            at: self.clock.now(),
        };
        self.store
            .record_failure(&envelope.lead_id, &failure)
            .await?;
        Ok(())
    }
}

//! The scheduled digest in the pipeline. sla-watch's sweep queues a digest once its scheduled
//! time has come (at most [`digest::STALE_AFTER`] late), marked by a receipt so that it is queued once;
//! the notify stage reads the two periods' lead facts, builds the digest and sends it to each
//! configured destination once (a receipt per destination), retried through the queue like
//! any delivery.
//!
//! The markers and receipts are delivery records of the pseudo lead [`Envelope::DIGEST_ID`]:
//! `queued:weekly:2026-11-30`, then `weekly:2026-11-30:slack` and
//! `weekly:2026-11-30:email:<address>`.

use jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use tracing::{error, info, warn};

use super::report::MAX_UNMATCHED;
use super::{join_errors, settle_retries, Outcome, Pipeline, StageError};
use crate::email::{Mailbox, OutgoingEmail};
use crate::model::{DigestRequest, Envelope, Stage};
use crate::ports::{DeliveryStart, NotifyError};
use crate::report::digest::{self, AuditCounts, Window};
use crate::report::{self, Dimension, Directory, Hours, Params};

const ID: &str = Envelope::DIGEST_ID;

/// One destination of a digest.
enum Target {
    Slack(String),
    Email(Mailbox),
}

impl Pipeline {
    /// Queues each digest that is due at `now` and was not queued yet; the keys queued
    /// (`weekly:2026-11-30`).
    pub(super) async fn queue_due_digests(
        &self,
        now: Timestamp,
    ) -> Result<Vec<String>, StageError> {
        let Some(config) = self.config.reports.digest.as_ref() else {
            return Ok(Vec::new());
        };
        let mut queued = Vec::new();
        for (request, scheduled) in digest::due(config, now) {
            let marker = format!("queued:{}", request.key());
            let (start, _claim) = self.begin_delivery(ID, &marker).await?;
            if start != DeliveryStart::Proceed {
                continue;
            }
            // A crash before the marker is written lets the lease run out and the next sweep
            // queue it again: the notify stage's receipts still send each destination once.
            if let Err(error) = self
                .queue
                .send(Stage::Notify, &Envelope::digest(request))
                .await
            {
                self.store.release_delivery(ID, &marker).await?;
                return Err(error.into());
            }
            self.store.finish_delivery(ID, &marker, now).await?;
            info!(stage = "sla", digest = %request.key(), %scheduled, "digest queued");
            queued.push(request.key());
        }
        Ok(queued)
    }

    /// Builds the digest `request` asks for and sends it to every configured destination that
    /// has not had it yet.
    pub(super) async fn send_digest(
        &self,
        envelope: &Envelope,
        request: &DigestRequest,
    ) -> Result<Outcome, StageError> {
        let key = request.key();
        let Some(config) = self.config.reports.digest.as_ref() else {
            // Queued before the digest was taken out of the configuration: nobody wants it.
            warn!(stage = "notify", digest = %key, "no [reports.digest] any more: digest dropped");
            return Ok(Outcome {
                skipped_as_done: true,
                ..Outcome::default()
            });
        };
        let periods = match digest::periods(request, &config.tz) {
            Ok(periods) => periods,
            Err(e) => {
                return self
                    .park_digest(envelope, &format!("no period for {key}: {e}"))
                    .await
            }
        };
        let mut targets: Vec<(String, Target)> = Vec::new();
        if let Some(channel) = &config.slack_channel {
            targets.push((format!("{key}:slack"), Target::Slack(channel.clone())));
        }
        for address in &config.emails {
            if let Some(to) = crate::render::email::mailbox(None, address) {
                let receipt = format!("{key}:email:{}", address.to_ascii_lowercase());
                targets.push((receipt, Target::Email(to)));
            }
        }
        // Leases first: a digest every destination has had is not even built.
        let mut leased = Vec::new();
        let mut in_flight = None;
        for (receipt, target) in targets {
            let (start, claim) = self.begin_delivery(ID, &receipt).await?;
            match start {
                DeliveryStart::AlreadyDelivered => {}
                DeliveryStart::InFlight { until } => {
                    in_flight = Some(StageError::DeliveryInFlight {
                        channel: receipt,
                        until,
                    });
                }
                DeliveryStart::Proceed => leased.push((receipt, target, claim)),
            }
        }
        if leased.is_empty() {
            return match in_flight {
                Some(error) => Err(error),
                None => Ok(Outcome {
                    skipped_as_done: true,
                    ..Outcome::default()
                }),
            };
        }
        let built = match self.build_digest(request, config, periods).await {
            Ok(built) => built,
            Err(error) => {
                for (receipt, _, _) in &leased {
                    self.store.release_delivery(ID, receipt).await?;
                }
                return Err(error);
            }
        };
        let mut permanent: Vec<NotifyError> = Vec::new();
        let mut transient: Vec<NotifyError> = Vec::new();
        for (receipt, target, claim) in leased {
            let sent = match &target {
                Target::Slack(channel) => {
                    self.notifier.post_to_channel(channel, &built.slack()).await
                }
                Target::Email(to) => match self.digest_email(&built, request, to) {
                    Some(email) => self.notifier.send_email(&email).await,
                    None => Err(NotifyError::Misconfigured {
                        channel: "email".into(),
                        detail: "no [notify.email] sender".into(),
                    }),
                },
            };
            match sent {
                Ok(()) => {
                    self.store
                        .finish_delivery(ID, &receipt, self.clock.now())
                        .await?;
                    info!(stage = "notify", digest = %key, channel = %receipt, "digest sent");
                }
                Err(failure) => {
                    self.store.release_delivery(ID, &receipt).await?;
                    warn!(stage = "notify", digest = %key, channel = %receipt,
                        permanent = failure.is_permanent(), error = %failure, "digest delivery failed");
                    if failure.is_permanent() {
                        permanent.push(failure);
                    } else {
                        transient.push(failure);
                    }
                }
            }
            drop(claim);
        }
        settle_retries(in_flight, transient)?;
        if !permanent.is_empty() {
            return self
                .park_digest(
                    envelope,
                    &format!("permanent delivery failure: {}", join_errors(&permanent)),
                )
                .await;
        }
        Ok(Outcome::default())
    }

    /// The digest's figures: both periods' facts in one read, by rep on the wall clock, and
    /// the current period's audit counts, as of now.
    async fn build_digest(
        &self,
        request: &DigestRequest,
        config: &crate::config::DigestConfig,
        periods: digest::Periods,
    ) -> Result<digest::Digest, StageError> {
        let now = self.clock.now();
        let facts = self
            .store
            .lead_facts(periods.previous.from, periods.current.to)
            .await?;
        let unmatched = self
            .store
            .unmatched_since(periods.current.from, MAX_UNMATCHED)
            .await?;
        let directory = Directory::new(&self.config);
        let figures = |window: Window| {
            let params = Params {
                from: window.from,
                to: window.to,
                by: Dimension::Rep,
                hours: Hours::Wall,
                now,
            };
            report::speed_to_lead(
                &facts,
                &params,
                &directory,
                &self.config.reports.handoff_fields,
            )
        };
        let (current, previous) = (figures(periods.current), figures(periods.previous));
        let audit = report::audit(
            &facts,
            &unmatched,
            periods.current.from,
            periods.current.to,
            now,
        );
        let counts = AuditCounts {
            untouched: audit.untouched.len() as u64,
            unmatched: audit.unmatched.len() as u64,
        };
        let rep_name = |id: &str| self.config.rep(id).map(|r| r.name.clone());
        Ok(digest::digest(
            request,
            &current,
            Some(&previous),
            counts,
            config,
            &rep_name,
        ))
    }

    /// The digest e-mail to `to`, from the configured sender; its Message-ID is the same on
    /// every attempt, so a resent copy is recognised as one.
    fn digest_email(
        &self,
        built: &digest::Digest,
        request: &DigestRequest,
        to: &Mailbox,
    ) -> Option<OutgoingEmail> {
        let from: Mailbox = self.config.notify.email.as_ref()?.from.parse().ok()?;
        let recipient = hex::encode(&Sha256::digest(to.address().to_ascii_lowercase())[..8]);
        Some(OutgoingEmail {
            message_id: format!(
                "<digest.{}.{}.{recipient}@{}>",
                request.cadence.name(),
                request.date,
                from.domain()
            ),
            from,
            to: to.clone(),
            reply_to: None,
            subject: built.email_subject(),
            text: built.email_text(),
            html: built.email_html(),
        })
    }

    /// A digest that retrying cannot send: its message goes to the notify dead-letter queue
    /// with the reason, for a replay once the destination is fixed (the receipts keep the
    /// destinations that had it from having it twice).
    async fn park_digest(&self, envelope: &Envelope, reason: &str) -> Result<Outcome, StageError> {
        let text = format!("digest not sent: {reason}");
        self.queue
            .dead_letter(Stage::Notify, envelope, &text)
            .await?;
        error!(stage = "notify", digest = ?envelope.digest.map(|d| d.key()), error = %text,
            "dead-lettered: a digest that cannot be sent");
        Ok(Outcome {
            failed_for_good: true,
            ..Outcome::default()
        })
    }
}

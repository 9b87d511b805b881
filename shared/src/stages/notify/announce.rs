//! What the Slack app's posted alerts say once the lead moves on: claimed, escalated or
//! closed. Each message the app posted for the lead is edited in place (`chat.update`: its
//! buttons replaced by the news, so nobody is left with a live Claim button) and gets the news
//! as a reply in its thread.
//!
//! The notify stage does it because it is the one stage that holds the Slack app in both
//! runtimes: a claim and a close send the lead there, and an escalation does anyway (to alert
//! the new owner, after the news reached the old round's messages). Once per event (a receipt
//! per event, taken before the calls), and best effort: a refused edit or reply is logged, and
//! the lead moves on regardless.

use tracing::{info, warn};

use super::super::claim::{claimed_status, human_duration, FirstResponse};
use super::super::{chat_alert_for, Pipeline, StageError};
use crate::model::{Lead, LeadState};
use crate::ports::DeliveryStart;
use crate::render::{slack_escape, slack_with_progress, slack_with_status};

/// One piece of news about a lead, and the receipt that makes it go out once.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct News {
    pub receipt: String,
    /// Slack mrkdwn, escaped.
    pub text: String,
}

impl Pipeline {
    /// The news the lead's posted messages should carry now, if any: its close, its claim, or
    /// its latest escalation (announced on the earlier rounds' messages, before the new round
    /// is posted).
    pub(super) fn news(&self, lead: &Lead) -> Option<News> {
        match lead.state {
            LeadState::Closed => Some(News {
                receipt: "announce:closed".into(),
                text: format!(
                    ":lock: Closed: {}.",
                    slack_escape(lead.close_reason.as_deref().unwrap_or("closed"))
                ),
            }),
            LeadState::Claimed => {
                let claim = lead.claim.as_ref()?;
                // A lead handed back is claimed again by its next owner: news of its own.
                let round = match lead.misroutes.len() {
                    0 => String::new(),
                    n => format!("re{n}:"),
                };
                Some(News {
                    receipt: format!("announce:{round}claimed"),
                    text: claimed_status(lead, &claim.rep, &FirstResponse::of(lead)),
                })
            }
            LeadState::Routed | LeadState::Notified
                if lead.misroutes.last().map(|m| m.at) > lead.escalations.last().map(|e| e.at) =>
            {
                let misroute = lead.misroutes.last()?;
                let now_with = lead
                    .assignment
                    .as_ref()
                    .map(|a| format!(" Now with *{}*.", slack_escape(&a.owner_name)))
                    .unwrap_or_default();
                Some(News {
                    receipt: format!("announce:re{}", lead.misroutes.len()),
                    text: format!(
                        ":leftwards_arrow_with_hook: Handed back by *{}*: {}.{now_with}",
                        slack_escape(
                            &self
                                .router
                                .owner_name(&crate::model::Owner::Rep(misroute.rep.clone()))
                        ),
                        slack_escape(&misroute.reason),
                    ),
                })
            }
            LeadState::Routed | LeadState::Notified => {
                let escalation = lead.escalations.last()?;
                let waited = escalation
                    .missed
                    .duration_since(lead.timeline.captured_at.unwrap_or(escalation.missed));
                Some(News {
                    receipt: format!("announce:esc{}", escalation.level),
                    text: format!(
                        ":alarm_clock: Escalated to *{}*: nobody claimed it within {} of capture \
                         ({}'s deadline).",
                        slack_escape(&self.router.owner_name(&escalation.to)),
                        human_duration(waited),
                        slack_escape(&self.router.owner_name(&escalation.from)),
                    ),
                })
            }
            _ => None,
        }
    }

    /// Puts the lead's news on every message the Slack app posted for it, once. Only a store
    /// failure is an error (the message is retried); Slack's refusals are logged.
    pub(super) async fn announce(&self, lead: &Lead) -> Result<(), StageError> {
        let Some(news) = self.news(lead) else {
            return Ok(());
        };
        let posted = self.store.posted_messages(&lead.id).await?;
        if posted.is_empty() {
            return Ok(());
        }
        let (start, _claim) = self.begin_delivery(&lead.id, &news.receipt).await?;
        if start != DeliveryStart::Proceed {
            return Ok(());
        }
        let alert = chat_alert_for(self, lead).slack;
        // A claimed lead's messages keep the buttons that record what happened next.
        let message = match lead.state {
            LeadState::Claimed => slack_with_progress(alert, &news.text, &lead.id),
            _ => slack_with_status(alert, &news.text),
        };
        let mut refused = 0;
        for one in &posted {
            let edited = self.notifier.update_posted(one, &message).await;
            let replied = match &edited {
                Ok(()) => self.notifier.reply_in_thread(one, &news.text).await,
                Err(_) => Ok(()),
            };
            if let Err(error) = edited.and(replied) {
                refused += 1;
                warn!(lead_id = %lead.id, stage = "notify", news = %news.receipt, %error,
                    "a posted Slack message was not updated");
            }
        }
        // Done either way: a second attempt would reply twice in the threads that took it.
        self.store
            .finish_delivery(&lead.id, &news.receipt, self.clock.now())
            .await?;
        info!(lead_id = %lead.id, stage = "notify", news = %news.receipt,
            messages = posted.len(), refused, "posted Slack messages updated");
        Ok(())
    }
}

//! Telling the people who run leadrelay that a dead-letter queue holds messages: the embedded
//! mode's counterpart of the CloudWatch DLQ alarms. The notice names the stage, the count,
//! the age of the oldest message and lead ids: nothing the prospect wrote, and no error text
//! (a remote server's answer may quote an address). It goes out through the alert channels'
//! own Slack webhook and e-mail code.

use std::sync::Arc;

use jiff::Timestamp;
use leadrelay_shared::email::Mailbox;
use secrecy::SecretString;

use crate::Channels;
use leadrelay_shared::config::Config;
use leadrelay_shared::email::OutgoingEmail;
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::NotifyError;
use leadrelay_shared::render::email::mailbox;
use leadrelay_shared::render::slack_escape;

/// One dead-letter queue found non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterNotice {
    pub stage: Stage,
    pub count: i64,
    /// When the oldest message was first sent to its stage.
    pub oldest: Option<Timestamp>,
    /// The oldest few messages' lead ids.
    pub lead_ids: Vec<String>,
    /// The queue was already reported and is still not empty.
    pub reminder: bool,
}

impl DeadLetterNotice {
    fn headline(&self) -> String {
        let messages = if self.count == 1 {
            "1 message".to_owned()
        } else {
            format!("{} messages", self.count)
        };
        format!("{messages} in the {} dead-letter queue", self.stage)
    }

    fn commands(&self) -> (String, String) {
        (
            format!("leadrelay dlq list --stage {}", self.stage),
            format!("leadrelay dlq replay --stage {}", self.stage),
        )
    }

    fn more(&self) -> String {
        let shown = i64::try_from(self.lead_ids.len()).unwrap_or(i64::MAX);
        match self.count.saturating_sub(shown) {
            n if n > 0 => format!(" and {n} more"),
            _ => String::new(),
        }
    }

    fn since(&self) -> String {
        self.oldest
            .map(|t| {
                format!(
                    " (the oldest first sent {})",
                    t.strftime("%Y-%m-%d %H:%M UTC")
                )
            })
            .unwrap_or_default()
    }

    /// The Slack message's mrkdwn text; everything read from a queue is escaped (a hand-made
    /// message may carry any lead id).
    pub fn slack_text(&self) -> String {
        let leads = self
            .lead_ids
            .iter()
            .map(|id| format!("`{}`", slack_escape(id)))
            .collect::<Vec<_>>()
            .join(", ");
        let (list, replay) = self.commands();
        format!(
            ":rotating_light: {}*leadrelay*: {}{}: leads that have not reached their owner. \
             Leads: {leads}{}. Inspect with `{list}`; fix the cause, then `{replay}`.",
            if self.reminder {
                "Still not empty: "
            } else {
                ""
            },
            self.headline(),
            self.since(),
            self.more(),
        )
    }

    /// The same notice as plain text, for e-mail.
    pub fn plain_text(&self) -> String {
        let (list, replay) = self.commands();
        format!(
            "{}leadrelay: {}{}: leads that have not reached their owner.\n\nLeads: {}{}.\n\n\
             Inspect with: {list}\nFix the cause, then: {replay}\n",
            if self.reminder {
                "Still not empty: "
            } else {
                ""
            },
            self.headline(),
            self.since(),
            self.lead_ids.join(", "),
            self.more(),
        )
    }

    fn subject(&self) -> String {
        format!(
            "[leadrelay] {}{}",
            if self.reminder { "Still: " } else { "" },
            self.headline()
        )
    }
}

/// Where `[operations]` sends notices, through the alert channels.
pub struct OperationsChannel {
    channels: Arc<Channels>,
    slack: Option<SecretString>,
    /// The sender (`[notify.email] from`) and the operations address.
    email: Option<(Mailbox, Mailbox)>,
}

impl OperationsChannel {
    /// The destinations `[operations]` configures; `None` when it names none.
    pub fn from_config(config: &Config, channels: Arc<Channels>) -> Option<Self> {
        let operations = &config.operations;
        let email = operations.email.as_deref().and_then(|to| {
            let from = config.notify.email.as_ref()?.from.parse::<Mailbox>().ok()?;
            Some((from, mailbox(None, to)?))
        });
        let slack = operations.slack_webhook_url.clone();
        (slack.is_some() || email.is_some()).then_some(OperationsChannel {
            channels,
            slack,
            email,
        })
    }

    /// Sends the notice to every destination; succeeds when at least one took it, else
    /// returns each destination's failure.
    pub async fn tell(
        &self,
        notice: &DeadLetterNotice,
        now: Timestamp,
    ) -> Result<(), Vec<NotifyError>> {
        let mut failures = Vec::new();
        let mut told = false;
        if let Some(url) = &self.slack {
            match self
                .channels
                .post_slack_text(url, &notice.slack_text())
                .await
            {
                Ok(()) => told = true,
                Err(e) => failures.push(e),
            }
        }
        if let Some((from, to)) = &self.email {
            let text = notice.plain_text();
            let email = OutgoingEmail {
                from: from.clone(),
                to: to.clone(),
                reply_to: None,
                subject: notice.subject(),
                message_id: format!(
                    "<dlq.{}.{}@{}>",
                    notice.stage,
                    now.as_millisecond(),
                    from.domain()
                ),
                html: format!("<pre>{}</pre>", html_escape::encode_text(&text)),
                text,
            };
            match self.channels.send_email(&email).await {
                Ok(()) => told = true,
                Err(e) => failures.push(e),
            }
        }
        if told {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(lead_ids: &[&str], count: i64, reminder: bool) -> DeadLetterNotice {
        DeadLetterNotice {
            stage: Stage::Notify,
            count,
            oldest: Some("2026-05-04T09:30:00Z".parse().expect("time")),
            lead_ids: lead_ids.iter().map(|s| (*s).to_owned()).collect(),
            reminder,
        }
    }

    #[test]
    fn the_notice_names_the_queue_the_leads_and_the_commands_escaped_for_mrkdwn() {
        let text = notice(&["0192-a", "<!channel> & co"], 3, false).slack_text();
        assert_eq!(
            text,
            ":rotating_light: *leadrelay*: 3 messages in the notify dead-letter queue (the \
             oldest first sent 2026-05-04 09:30 UTC): leads that have not reached their owner. \
             Leads: `0192-a`, `&lt;!channel&gt; &amp; co` and 1 more. Inspect with \
             `leadrelay dlq list --stage notify`; fix the cause, then \
             `leadrelay dlq replay --stage notify`."
        );
        let reminder = notice(&["0192-a"], 1, true);
        assert!(reminder
            .slack_text()
            .starts_with(":rotating_light: Still not empty: *leadrelay*: 1 message in"));
        assert!(reminder.plain_text().contains("Leads: 0192-a.\n"));
        assert_eq!(
            reminder.subject(),
            "[leadrelay] Still: 1 message in the notify dead-letter queue"
        );
    }
}

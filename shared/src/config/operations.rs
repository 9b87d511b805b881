//! `[operations]`: where the embedded mode tells the people who run it that a dead-letter queue
//! holds messages (on AWS the template's CloudWatch alarms do this). The message names the
//! stage, the count and the lead ids, never anything the prospect wrote.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Interval;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationsConfig {
    /// A Slack incoming webhook for the operations channel (inline: for a demo).
    pub slack_webhook_url: Option<SecretString>,
    /// An environment variable holding that webhook URL.
    pub slack_webhook_url_env: Option<String>,
    /// An address for the same alert by e-mail; needs `[notify.email]` (its sender and SMTP).
    pub email: Option<String>,
    /// How often the dead-letter queues are looked at.
    pub check_every: Interval,
    /// While a dead-letter queue stays non-empty, the alert is repeated this often.
    pub remind_every: Interval,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        OperationsConfig {
            slack_webhook_url: None,
            slack_webhook_url_env: None,
            email: None,
            check_every: Interval::from_secs(60),
            remind_every: Interval::from_secs(4 * 3600),
        }
    }
}

impl OperationsConfig {
    /// Whether anyone is to be told (without a destination, dead letters are only logged).
    pub fn has_destination(&self) -> bool {
        self.slack_webhook_url.is_some() || self.email.is_some()
    }

    /// Resolves the webhook from the environment and checks the rest; the error names the
    /// key, never the URL.
    pub(super) fn resolve(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        has_email: bool,
    ) -> Result<(), (String, String)> {
        let key = |name: &str| format!("operations.{name}");
        match (&self.slack_webhook_url, &self.slack_webhook_url_env) {
            (Some(_), Some(_)) => {
                return Err((
                    key("slack_webhook_url_env"),
                    "set slack_webhook_url or slack_webhook_url_env, not both".into(),
                ))
            }
            (None, Some(name)) => {
                let url = env(name).ok_or_else(|| {
                    (
                        key("slack_webhook_url_env"),
                        format!("environment variable {name} is not set"),
                    )
                })?;
                self.slack_webhook_url = Some(SecretString::from(url));
            }
            _ => {}
        }
        if let Some(url) = &self.slack_webhook_url {
            let url = url.expose_secret();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err((key("slack_webhook_url"), "must be an http(s) URL".into()));
            }
        }
        if let Some(address) = &self.email {
            if crate::email::Mailbox::new(None, address).is_err() {
                return Err((
                    key("email"),
                    format!("{address:?} is not an e-mail address"),
                ));
            }
            if !has_email {
                return Err((
                    key("email"),
                    "needs a [notify.email] section (its sender and SMTP server)".into(),
                ));
            }
        }
        if self.check_every.0.is_zero() {
            return Err((key("check_every"), "must be above 0".into()));
        }
        if self.remind_every.0.is_zero() {
            return Err((key("remind_every"), "must be above 0".into()));
        }
        Ok(())
    }
}

//! `[operations]`: where the embedded mode tells the people who run it that a dead-letter queue
//! holds messages (on AWS the template's CloudWatch alarms do this). The message names the
//! stage, the count and the lead ids, never anything the prospect wrote.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::load::Env;
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
        env: Env<'_>,
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
                let url = env
                    .require(name)
                    .map_err(|message| (key("slack_webhook_url_env"), message))?;
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::tests::{no_env, parse, MINIMAL};
    use crate::config::Config;

    #[test]
    fn the_operations_alert_resolves_its_webhook_and_needs_mail_for_email() {
        let with = |section: &str, env: &dyn Fn(&str) -> Option<String>| {
            Config::parse(
                &format!("{MINIMAL}\n[operations]\n{section}"),
                "leadrelay.toml",
                env,
            )
        };
        let env = |name: &str| (name == "OPS_HOOK").then(|| "https://hooks.slack.com/x".to_owned());
        let config = with(
            "slack_webhook_url_env = \"OPS_HOOK\"\nremind_every = \"2h\"",
            &env,
        )
        .expect("valid");
        let ops = &config.operations;
        assert!(ops.has_destination());
        assert_eq!(
            ops.slack_webhook_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned()),
            Some("https://hooks.slack.com/x".into())
        );
        assert_eq!(ops.remind_every, Interval::from_secs(7200));
        assert_eq!(ops.check_every, Interval::from_secs(60));
        assert!(!parse(MINIMAL).expect("valid").operations.has_destination());

        let error = |section: &str| with(section, &no_env).expect_err(section).to_string();
        let message = error("slack_webhook_url_env = \"NOPE\"");
        assert!(
            message
                .contains("operations.slack_webhook_url_env: environment variable NOPE is not set"),
            "{message}"
        );
        let message = error("email = \"oncall@yourco.example\"");
        assert!(
            message.contains("operations.email: needs a [notify.email] section"),
            "{message}"
        );
        let message = error("email = \"not an address\"");
        assert!(message.contains("operations.email"), "{message}");
    }
}

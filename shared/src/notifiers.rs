//! The notifier adapter: the terminal, Slack incoming webhooks and e-mail (through a
//! [`Mailer`]).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use crate::email::Mailer;
use crate::ports::{Destination, Notifier, NotifyError};
use crate::render::Alert;

/// Delivers alerts over plain HTTPS (Slack) and to a terminal writer.
pub struct Channels {
    http: reqwest::Client,
    terminal: Mutex<Box<dyn Write + Send>>,
    /// SMTP (embedded) or SES (AWS); `None` when `[notify.email]` is absent.
    mailer: Option<Arc<dyn Mailer>>,
}

impl Channels {
    /// Alerts for the terminal go to `terminal` (stdout in `leadrelay serve`).
    pub fn new(timeout: Duration, terminal: Box<dyn Write + Send>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("leadrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Channels {
            http,
            terminal: Mutex::new(terminal),
            mailer: None,
        })
    }

    /// The same channels, sending e-mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }
}

#[async_trait]
impl Notifier for Channels {
    async fn deliver(&self, destination: &Destination, alert: &Alert) -> Result<(), NotifyError> {
        match destination {
            Destination::Terminal => {
                let mut out = self
                    .terminal
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                writeln!(out, "{}", alert.text)
                    .and_then(|_| out.flush())
                    .map_err(|e| NotifyError::Unreachable {
                        channel: "terminal".into(),
                        detail: e.to_string(),
                    })
            }
            Destination::SlackWebhook { url, .. } => {
                let response = self
                    .http
                    .post(url.expose_secret())
                    .json(&alert.slack)
                    .send()
                    .await
                    // reqwest's error text can include the URL, which is a secret: keep the kind.
                    .map_err(|e| NotifyError::Unreachable {
                        channel: "slack".into(),
                        detail: if e.is_timeout() {
                            "timed out".into()
                        } else if e.is_connect() {
                            "connection failed".into()
                        } else {
                            "request failed".into()
                        },
                    })?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let body = response.text().await.unwrap_or_default();
                Err(NotifyError::Rejected {
                    channel: "slack".into(),
                    status: status.as_u16(),
                    detail: crate::render::truncate(body.trim(), 200),
                })
            }
            Destination::Email { email, .. } => match &self.mailer {
                Some(mailer) => mailer.send(email).await,
                // Configuration is checked at start-up, so this is a wiring mistake: no retry
                // would deliver it.
                None => Err(NotifyError::Permanent {
                    channel: "email".into(),
                    detail: "no mail transport is configured".into(),
                }),
            },
        }
    }
}

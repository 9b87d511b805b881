//! leadrelay's alert channels, the [`Notifier`] adapter: the terminal, Slack and Teams webhooks, SMS, signed outbound
//! webhooks, HubSpot and Salesforce, one module per channel; [`delivery`] holds the rules every HTTP
//! channel shares (retries, backoff, `Retry-After`, rate limits).

mod delivery;
mod hubspot;
pub mod operations;
mod salesforce;
mod slack_app;
mod sms;
mod webhook;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use leadrelay_shared::config::{ConfigError, HubspotConfig, NotifyConfig, SmsConfig, SmsProvider};
use leadrelay_shared::ports::{
    DeliverySteps, Destination, Mailer, NoSteps, Notifier, NotifyError, PostedMessage, SmsSender,
};
use leadrelay_shared::render::Alert;

pub use delivery::{DeliveryPolicy, RateLimits};
pub use salesforce::Salesforce;
pub use slack_app::SlackApp;

/// Why the channels could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTPS client.
    #[error(transparent)]
    Http(#[from] leadrelay_https::ClientError),
    /// A setting checked only where it is used: a Salesforce JWT key that cannot sign. Said
    /// as the configuration check says its other mistakes.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Delivers alerts over HTTPS and to a terminal writer.
pub struct Channels {
    http: reqwest::Client,
    terminal: Mutex<Box<dyn Write + Send>>,
    policy: DeliveryPolicy,
    limits: RateLimits,
    sms: Option<SmsConfig>,
    /// The SMS sender when it is not the HTTP provider (Amazon SNS on Lambda).
    sms_sender: Option<Arc<dyn SmsSender>>,
    hubspot: Option<HubspotConfig>,
    /// `[notify.slack]`: the bot token's client, with its user and DM caches.
    slack_app: Option<SlackApp>,
    /// SMTP (embedded) or SES (Lambda), for the e-mail channel.
    mailer: Option<Arc<dyn Mailer>>,
    /// `[notify.salesforce]`: the REST client with its cached access token.
    salesforce: Option<Salesforce>,
}

impl Channels {
    /// Alerts for the terminal go to `terminal` (stdout in `leadrelay serve`); Slack, Teams
    /// and webhooks work, SMS and HubSpot need [`Channels::from_config`].
    pub fn new(
        timeout: Duration,
        terminal: Box<dyn Write + Send>,
    ) -> Result<Self, leadrelay_https::ClientError> {
        let http = leadrelay_https::client(|builder| {
            builder
                .timeout(timeout)
                .user_agent(concat!("leadrelay/", env!("CARGO_PKG_VERSION")))
        })?;
        Ok(Channels {
            http,
            terminal: Mutex::new(terminal),
            policy: DeliveryPolicy::default(),
            limits: RateLimits::documented(),
            sms: None,
            sms_sender: None,
            hubspot: None,
            slack_app: None,
            mailer: None,
            salesforce: None,
        })
    }

    /// Every channel `[notify]` configures, with its delivery budget and attempts.
    pub fn from_config(
        config: &NotifyConfig,
        terminal: Box<dyn Write + Send>,
    ) -> Result<Self, SetupError> {
        let mut channels = Channels::new(Duration::from_millis(config.http_timeout_ms), terminal)?;
        channels.policy = DeliveryPolicy {
            budget: Duration::from_millis(config.delivery_budget_ms),
            max_attempts: config.max_attempts,
            ..DeliveryPolicy::default()
        };
        channels.limits = RateLimits::from_config(&config.rates);
        channels.sms = config.sms.clone();
        channels.hubspot = config.hubspot.clone();
        channels.slack_app = config.slack.as_ref().and_then(SlackApp::from_config);
        channels.salesforce = config
            .salesforce
            .as_ref()
            .map(Salesforce::from_config)
            .transpose()?;
        Ok(channels)
    }

    /// The same channels, sending e-mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Sends SMS through `sender` (`[notify.sms] provider = "sns"`).
    pub fn with_sms_sender(mut self, sender: Arc<dyn SmsSender>) -> Self {
        self.sms_sender = Some(sender);
        self
    }

    /// The same channels reading time from `clock` where they keep time (Salesforce's token
    /// lifetime and JWT expiry): tests hold it still or move it.
    pub fn with_clock(mut self, clock: Arc<dyn leadrelay_shared::ports::Clock>) -> Self {
        if let Some(salesforce) = &mut self.salesforce {
            salesforce.set_clock(clock);
        }
        self
    }

    /// The same channels with other retry rules (tests use a short backoff).
    pub fn with_policy(mut self, policy: DeliveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Posts a plain Slack incoming-webhook message, `{"text": text}` (mrkdwn, escaped by the
    /// caller), under the same delivery rules as alerts: for the operations channel.
    pub async fn post_slack_text(
        &self,
        url: &secrecy::SecretString,
        text: &str,
    ) -> Result<(), NotifyError> {
        let body = serde_json::json!({ "text": text });
        let key = delivery::url_key(url.expose_secret());
        delivery::send(&self.policy, &self.limits, "slack", &key, || {
            self.http.post(url.expose_secret()).json(&body)
        })
        .await
    }

    /// Sends one e-mail through the configured transport (SMTP in the embedded mode).
    pub async fn send_email(
        &self,
        email: &leadrelay_shared::email::OutgoingEmail,
    ) -> Result<(), NotifyError> {
        match &self.mailer {
            Some(mailer) => mailer.send(email).await,
            None => Err(NotifyError::Misconfigured {
                channel: "email".into(),
                detail: "no mail transport is configured".into(),
            }),
        }
    }

    fn slack_app(&self) -> Result<&SlackApp, NotifyError> {
        self.slack_app
            .as_ref()
            .ok_or_else(|| NotifyError::Misconfigured {
                channel: "slack".into(),
                detail: "no [notify.slack] bot token".into(),
            })
    }

    fn hubspot_client<'a>(&'a self, alert: &'a Alert) -> Result<hubspot::Client<'a>, NotifyError> {
        hubspot::Client::new(
            &self.http,
            &self.policy,
            &self.limits,
            self.hubspot.as_ref(),
            alert,
        )
    }

    fn print(&self, alert: &Alert) -> Result<(), NotifyError> {
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
}

/// The stage renders each format only for the destinations it has; this one was left out.
fn not_rendered(channel: &str) -> NotifyError {
    NotifyError::Misconfigured {
        channel: channel.into(),
        detail: "the alert was rendered without this channel's format".into(),
    }
}

#[async_trait]
impl Notifier for Channels {
    async fn deliver_posted(
        &self,
        destination: &Destination,
        alert: &Alert,
    ) -> Result<Option<PostedMessage>, NotifyError> {
        match destination {
            Destination::SlackApp {
                channel, mention, ..
            } => self
                .slack_app()?
                .post_alert(
                    &self.http,
                    &self.policy,
                    &self.limits,
                    channel.as_deref(),
                    mention.as_ref(),
                    alert,
                )
                .await
                .map(Some),
            other => self.deliver(other, alert).await.map(|()| None),
        }
    }

    async fn deliver_steps(
        &self,
        destination: &Destination,
        alert: &Alert,
        steps: &dyn DeliverySteps,
    ) -> Result<Option<PostedMessage>, NotifyError> {
        match destination {
            Destination::Hubspot { target } => {
                let client = self.hubspot_client(alert)?;
                hubspot::deliver(client, target, alert, steps)
                    .await
                    .map(|()| None)
            }
            other => self.deliver_posted(other, alert).await,
        }
    }

    async fn slack_member_email(&self, member: &str) -> Result<Option<String>, NotifyError> {
        match &self.slack_app {
            Some(app) => app.member_email(&self.http, &self.policy, member).await,
            None => Ok(None),
        }
    }

    async fn update_posted(
        &self,
        posted: &PostedMessage,
        message: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        self.slack_app()?
            .update(&self.http, &self.policy, &self.limits, posted, message)
            .await
    }

    async fn post_to_channel(
        &self,
        channel: &str,
        message: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        self.slack_app()?
            .post_to_channel(&self.http, &self.policy, &self.limits, channel, message)
            .await
    }

    async fn send_email(
        &self,
        email: &leadrelay_shared::email::OutgoingEmail,
    ) -> Result<(), NotifyError> {
        // The transport's own method (the operations notices use it too).
        Channels::send_email(self, email).await
    }

    async fn reply_in_thread(&self, posted: &PostedMessage, text: &str) -> Result<(), NotifyError> {
        self.slack_app()?
            .reply(&self.http, &self.policy, &self.limits, posted, text)
            .await
    }

    async fn deliver(&self, destination: &Destination, alert: &Alert) -> Result<(), NotifyError> {
        let channel = destination.channel();
        let key = delivery::rate_key(destination);
        match destination {
            Destination::Terminal => self.print(alert),
            Destination::SlackWebhook { url, .. } => {
                let body = &alert.slack;
                delivery::send(&self.policy, &self.limits, channel, &key, || {
                    self.http.post(url.expose_secret()).json(body)
                })
                .await
            }
            Destination::SlackApp {
                channel: to,
                mention,
                ..
            } => self
                .slack_app()?
                .post_alert(
                    &self.http,
                    &self.policy,
                    &self.limits,
                    to.as_deref(),
                    mention.as_ref(),
                    alert,
                )
                .await
                .map(|_posted| ()),
            Destination::TeamsWebhook {
                url, claim_link, ..
            } => {
                let card = alert.teams.as_ref().ok_or_else(|| not_rendered(channel))?;
                let body = leadrelay_shared::render::teams_with_claim(card, claim_link.as_deref());
                delivery::send(&self.policy, &self.limits, channel, &key, || {
                    self.http.post(url.expose_secret()).json(&body)
                })
                .await
            }
            Destination::Sms { to, claim_link, .. } => {
                let config = self
                    .sms
                    .as_ref()
                    .ok_or_else(|| NotifyError::Misconfigured {
                        channel: channel.into(),
                        detail: "no [notify.sms] provider".into(),
                    })?;
                let text = leadrelay_shared::render::sms_text(&alert.sms, claim_link.as_deref());
                if config.provider == SmsProvider::Sns {
                    let sender =
                        self.sms_sender
                            .as_ref()
                            .ok_or_else(|| NotifyError::Misconfigured {
                                channel: channel.into(),
                                detail: "provider sns needs the Lambda deployment".into(),
                            })?;
                    // The SDK retries throttling itself; the rate limit still applies.
                    return delivery::send_with(&self.policy, &self.limits, channel, &key, || {
                        sender.send_sms(to, &text)
                    })
                    .await;
                }
                let (url, token, body) = sms::request(config, to, &text)?;
                // The same on every attempt, retry and replay of this round's SMS to this
                // recipient: a provider that honours it sends the text once.
                let idempotency_key =
                    format!("{}:{}{}", alert.lead_id, alert.round, destination.receipt());
                delivery::send(&self.policy, &self.limits, channel, &key, || {
                    self.http
                        .post(url)
                        .bearer_auth(token.expose_secret())
                        .header("idempotency-key", &idempotency_key)
                        .json(&body)
                })
                .await
            }
            Destination::Webhook {
                url,
                key: signing,
                claim_link,
                owner_email,
                ..
            } => {
                let summary = alert
                    .summary
                    .as_ref()
                    .ok_or_else(|| not_rendered(channel))?;
                let signed = webhook::Signed::new(
                    signing,
                    alert,
                    summary,
                    claim_link.as_deref(),
                    owner_email.as_deref(),
                    jiff::Timestamp::now(),
                );
                delivery::send(&self.policy, &self.limits, channel, &key, || {
                    signed.apply(self.http.post(url.expose_secret()))
                })
                .await
            }
            // Outside the notify stage no step is recorded: each call writes the whole round.
            Destination::Hubspot { target } => {
                hubspot::deliver(self.hubspot_client(alert)?, target, alert, &NoSteps).await
            }
            Destination::Salesforce(write) => {
                let salesforce =
                    self.salesforce
                        .as_ref()
                        .ok_or_else(|| NotifyError::Misconfigured {
                            channel: channel.into(),
                            detail: "no [notify.salesforce] settings".into(),
                        })?;
                salesforce.write(&self.http, &self.policy, write).await
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

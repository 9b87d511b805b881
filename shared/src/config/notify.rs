//! `[notify]`: the alert channels (SMS, signed webhooks, HubSpot, the CRM link), their rate
//! limits and delivery budget. `[notify.email]` has its own module, [`super::email`], and
//! `[notify.salesforce]` [`super::salesforce`].

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::load::Env;
use super::{ConfigError, EmailConfig, PipelineConfig, Validator};
use crate::signature::SigningKey;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Print every alert on the terminal that runs `leadrelay serve`.
    pub terminal: bool,
    /// Per-request timeout for outbound channels.
    pub http_timeout_ms: u64,
    /// `[notify.email]`: e-mail alerts and the prospect acknowledgement.
    pub email: Option<EmailConfig>,
    /// How long one delivery may spend on one channel, retries and waits included; a
    /// `Retry-After` that does not fit is left to the queue's retry.
    pub delivery_budget_ms: u64,
    /// Attempts per delivery on 408/429/5xx, timeouts and connection errors.
    pub max_attempts: u32,
    /// An "Open in CRM" link, e.g. `https://crm.example/contacts?email={email}&lead={lead_id}`;
    /// each placeholder is URL-encoded.
    pub crm_url: Option<String>,
    /// `[notify.sms]`: a generic HTTP SMS provider, for tier-1 leads.
    pub sms: Option<SmsConfig>,
    /// `[[notify.webhooks]]`: signed outbound webhooks (n8n, Zapier, a CRM).
    pub webhooks: Vec<WebhookConfig>,
    /// `[notify.hubspot]`: the contact, its owner, a note and a task in HubSpot.
    pub hubspot: Option<HubspotConfig>,
    /// `[notify.slack]`: Slack as an app (a bot token and the Web API), for the reps and
    /// queues without an incoming webhook of their own.
    pub slack: Option<SlackAppConfig>,
    /// `[notify.salesforce]`: upsert the prospect as a Lead with its owner, and a Task.
    pub salesforce: Option<super::SalesforceConfig>,
    /// `[notify.rates]`: messages per second per webhook or recipient.
    pub rates: RateConfig,
}

/// `[notify.rates]`: the most messages per second each channel sends to one webhook (Slack,
/// Teams) or one recipient (SMS, webhook receiver, HubSpot account). The defaults are the
/// platforms' documented limits; raise one only for a stand-in server or a negotiated limit.
/// 0 means no limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    pub slack: u32,
    pub teams: u32,
    pub sms: u32,
    pub webhook: u32,
    pub hubspot: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            slack: 1,
            teams: 4,
            sms: 1,
            webhook: 10,
            hubspot: 10,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            terminal: true,
            http_timeout_ms: 5_000,
            email: None,
            delivery_budget_ms: 10_000,
            max_attempts: 4,
            crm_url: None,
            sms: None,
            webhooks: Vec::new(),
            hubspot: None,
            slack: None,
            salesforce: None,
            rates: RateConfig::default(),
        }
    }
}

/// How SMS alerts leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    /// A generic HTTP provider: `POST url` with `{from, to, text}` and a bearer token.
    #[default]
    Http,
    /// Amazon SNS `Publish` to a phone number (the Lambda deployment only).
    Sns,
}

/// `[notify.sms]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default)]
    pub provider: SmsProvider,
    /// The HTTP provider's endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the HTTP provider's bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The sender number or alphanumeric id (SNS: the sender id, where the country allows one).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(skip)]
    pub token: Option<SecretString>,
}

/// One `[[notify.webhooks]]`: signed with the Standard Webhooks scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the receipt (`webhook:<name>`) and the logs.
    pub name: String,
    pub url: SecretString,
    /// `whsec_<base64>`; inline is for the demo, use `secret_env`.
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(skip)]
    pub key: Option<SigningKey>,
}

/// `[notify.hubspot]`: a private app's token (scopes `crm.objects.contacts.read` and
/// `crm.objects.contacts.write`, plus `crm.objects.companies.read` for `company = "search"`).
/// Each alert round finds or creates the prospect's contact by e-mail, sets its owner as
/// `owner_policy` allows, and adds a note with the alert's context and a task due at the SLA
/// deadline (docs/alerts.md, "HubSpot").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubspotConfig {
    pub token_env: String,
    /// Write each lead to HubSpot (contact, owner, note, task). `false`: the token serves the
    /// CRM owner lookup only (`[enrichment.crm]`), for a team whose HubSpot is fed otherwise.
    #[serde(default = "write_back")]
    pub write_back: bool,
    #[serde(default = "default_hubspot_url")]
    pub base_url: String,
    /// Whether leadrelay may set the contact's owner (`hubspot_owner_id`, and the queue's
    /// `hubspot_team_id`).
    #[serde(default)]
    pub owner_policy: OwnerPolicy,
    /// Whether an escalation moves the contact to the escalation target's owner id. Off: an
    /// escalation never changes the owner of an existing contact. On: `owner_policy` applies
    /// again, and the owner the lead escalated from counts as leadrelay's to replace.
    #[serde(default)]
    pub owner_on_escalation: bool,
    /// The HubSpot owner id for a lead whose owner has none (a queue without
    /// `hubspot_owner_id`, a broadcast pool, a rep without one).
    #[serde(default)]
    pub default_owner_id: Option<String>,
    /// How the contact, note and task meet the prospect's company.
    #[serde(default)]
    pub company: CompanyAssociation,
    #[serde(skip)]
    pub token: Option<SecretString>,
}

/// `[notify.hubspot] owner_policy`: what leadrelay does with the owner of a contact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerPolicy {
    /// The owner is set only on a contact leadrelay creates; an existing contact keeps its
    /// owner, or its lack of one (HubSpot's own assignment rules stay in charge).
    #[default]
    KeepExisting,
    /// Also set on an existing contact that has no owner; never replaces one.
    FillEmpty,
    /// Always set to the lead's owner, replacing whoever owned the contact.
    Overwrite,
}

impl OwnerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerPolicy::KeepExisting => "keep_existing",
            OwnerPolicy::FillEmpty => "fill_empty",
            OwnerPolicy::Overwrite => "overwrite",
        }
    }
}

/// `[notify.hubspot] company`: how the prospect's company is associated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompanyAssociation {
    /// Find the company by the lead's company domain (a business e-mail address's domain) and
    /// associate the contact, the note and the task with it; a company is never created.
    #[default]
    Search,
    /// Leave it to HubSpot's "create and associate companies with contacts" setting, which
    /// matches the contact's e-mail domain itself: no company calls, no companies scope.
    Auto,
}

/// `[notify.slack]`: a Slack app's bot token (`xoxb-...`, scopes `chat:write`, `im:write`,
/// `users:read`, `users:read.email`). Each rep is alerted in their DM with the app, or in their
/// team's channel with an @-mention; a rep without `slack_user_id` is found by e-mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackAppConfig {
    /// The environment variable holding the bot token.
    pub bot_token_env: String,
    /// The Web API's base URL: https, or plain http to a loopback stand-in.
    #[serde(default = "default_slack_api")]
    pub api_base_url: String,
    /// How long a rep's Slack user id, found by e-mail, is kept before it is looked up again.
    #[serde(default = "default_user_cache_ttl")]
    pub user_cache_ttl: super::Interval,
    #[serde(skip)]
    pub token: Option<SecretString>,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

fn default_user_cache_ttl() -> super::Interval {
    super::Interval::from_secs(3600)
}

impl SlackAppConfig {
    /// The API base is https (plain http only for a loopback host: a test's stand-in), and the
    /// token is read from its variable.
    fn resolve(&mut self, env: Env<'_>) -> Result<(), Problem> {
        let key = "notify.slack.api_base_url".to_owned();
        let url = url::Url::parse(&self.api_base_url)
            .map_err(|e| (key.clone(), format!("not a valid URL: {e}")))?;
        let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
            || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            scheme => {
                return Err((
                    key,
                    format!(
                    "scheme {scheme:?}: https is required (plain http only for a loopback host)"
                ),
                ))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err((key, "the URL carries credentials: use bot_token_env".into()));
        }
        self.api_base_url = self.api_base_url.trim_end_matches('/').to_owned();
        self.token = Some(variable(
            env,
            "notify.slack.bot_token_env",
            &self.bot_token_env,
        )?);
        Ok(())
    }
}

fn write_back() -> bool {
    true
}

fn default_hubspot_url() -> String {
    "https://api.hubapi.com".into()
}

/// A key and its problem, placed by the validator.
type Problem = (String, String);

impl NotifyConfig {
    /// The channels resolved and checked; then a delivery must fit in the pipeline's
    /// visibility timeout.
    pub(super) fn check(
        &mut self,
        v: &Validator<'_>,
        pipeline: &PipelineConfig,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        self.resolve(env)
            .map_err(|(key, message)| v.invalid(v.section("notify"), key, message))?;
        if let Some(salesforce) = &mut self.salesforce {
            salesforce.place_key(v);
        }
        // A channel's delivery receipt is leased for the visibility timeout: a delivery that
        // could outlast it might be started again by another worker.
        let longest = self.delivery_budget_ms.saturating_add(self.http_timeout_ms);
        if longest >= pipeline.visibility_timeout_secs.saturating_mul(1000) {
            // Named by whichever of the two is written (the budget when both are).
            let key = ["notify.delivery_budget_ms", "notify.http_timeout_ms"]
                .into_iter()
                .find(|key| v.document.is_written(key))
                .unwrap_or("notify.delivery_budget_ms");
            return Err(v.invalid(
                v.section("notify"),
                key,
                format!(
                    "delivery_budget_ms + http_timeout_ms ({longest} ms) must stay below \
                     pipeline.visibility_timeout_secs ({} s)",
                    pipeline.visibility_timeout_secs
                ),
            ));
        }
        Ok(())
    }

    /// Checks the channel settings and resolves their secrets; the error names the key, never
    /// a secret.
    fn resolve(&mut self, env: Env<'_>) -> Result<(), Problem> {
        if self.max_attempts == 0 {
            return Err(("notify.max_attempts".into(), "must be at least 1".into()));
        }
        if let Some(template) = &self.crm_url {
            let probe = template.replace("{email}", "x").replace("{lead_id}", "x");
            if !matches!(url::Url::parse(&probe), Ok(u) if matches!(u.scheme(), "http" | "https")) {
                return Err((
                    "notify.crm_url".into(),
                    "must be an http(s) URL template (placeholders {email} and {lead_id})".into(),
                ));
            }
        }
        if let Some(sms) = &mut self.sms {
            sms.resolve(env)?;
        }
        if let Some(hubspot) = &mut self.hubspot {
            check_url(Some(&SecretString::from(hubspot.base_url.clone())))
                .map_err(|m| ("notify.hubspot.base_url".to_owned(), m))?;
            hubspot.token = Some(variable(
                env,
                "notify.hubspot.token_env",
                &hubspot.token_env,
            )?);
            if let Some(id) = &hubspot.default_owner_id {
                check_hubspot_id(id).map_err(|m| ("notify.hubspot.default_owner_id".into(), m))?;
            }
        }
        if let Some(slack) = &mut self.slack {
            slack.resolve(env)?;
        }
        if let Some(salesforce) = &mut self.salesforce {
            salesforce.resolve(env)?;
        }
        let mut names = HashSet::new();
        for (n, hook) in self.webhooks.iter_mut().enumerate() {
            let key = format!("notify.webhooks[{n}]");
            if hook.name.is_empty() || !names.insert(hook.name.clone()) {
                return Err((
                    format!("{key}.name"),
                    "each webhook needs its own non-empty name".into(),
                ));
            }
            hook.resolve(env, &key)?;
        }
        Ok(())
    }
}

impl SmsConfig {
    /// The HTTP provider needs its URL, token and sender; SNS needs nothing here.
    fn resolve(&mut self, env: Env<'_>) -> Result<(), Problem> {
        if self.provider != SmsProvider::Http {
            return Ok(());
        }
        let missing = |key: &str| {
            (
                format!("notify.sms.{key}"),
                "the HTTP provider needs url, token_env and from".to_owned(),
            )
        };
        let url = self.url.clone().ok_or_else(|| missing("url"))?;
        check_url(Some(&SecretString::from(url))).map_err(|m| ("notify.sms.url".to_owned(), m))?;
        let name = self.token_env.clone().ok_or_else(|| missing("token_env"))?;
        self.token = Some(variable(env, "notify.sms.token_env", &name)?);
        self.from.as_ref().ok_or_else(|| missing("from"))?;
        Ok(())
    }
}

impl WebhookConfig {
    /// The URL, and exactly one of `secret` and `secret_env` parsed into the signing key;
    /// `key` names the webhook (`notify.webhooks[0]`).
    fn resolve(&mut self, env: Env<'_>, key: &str) -> Result<(), Problem> {
        check_url(Some(&self.url)).map_err(|m| (format!("{key}.url"), m))?;
        let (secret_key, secret) = match (&self.secret, &self.secret_env) {
            (Some(_), Some(_)) => {
                return Err((
                    format!("{key}.secret_env"),
                    "set secret or secret_env, not both".into(),
                ))
            }
            (Some(secret), None) => (format!("{key}.secret"), secret.clone()),
            (None, Some(name)) => {
                let named = format!("{key}.secret_env");
                let secret = variable(env, &named, name)?;
                (named, secret)
            }
            (None, None) => {
                return Err((
                    format!("{key}.secret"),
                    "no secret: set secret or secret_env (whsec_...)".into(),
                ))
            }
        };
        self.key = Some(
            SigningKey::standard(secret.expose_secret())
                .map_err(|e| (secret_key, e.to_string()))?,
        );
        Ok(())
    }
}

/// The secret the variable `name` holds; `key` names the setting that names it.
fn variable(env: Env<'_>, key: &str, name: &str) -> Result<SecretString, Problem> {
    env.require(name)
        .map(SecretString::from)
        .map_err(|message| (key.to_owned(), message))
}

/// A HubSpot owner or team id: its digits, as HubSpot's owners API lists them.
pub(super) fn check_hubspot_id(id: &str) -> Result<(), String> {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a HubSpot id (digits, as GET /crm/v3/owners lists them)"
        ))
    }
}

/// An outbound channel's URL, when set, is http(s).
pub(super) fn check_url(url: Option<&SecretString>) -> Result<(), String> {
    match url {
        None => Ok(()),
        Some(url) => {
            let url = url.expose_secret();
            if url.starts_with("https://") || url.starts_with("http://") {
                Ok(())
            } else {
                Err("must be an http(s) URL".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::{parse, MINIMAL};
    use crate::config::{Config, Interval};

    #[test]
    fn alert_channels_are_checked_at_load_and_their_secrets_resolved() {
        let with_rep = |extra: &str| {
            MINIMAL.replace(
                "name = \"Alice\"\n",
                &format!("name = \"Alice\"\n{extra}\n"),
            )
        };
        let config = parse(&with_rep(
            "phone = \"+4915123456789\"\nteams_webhook_url = \"https://x.example/w\"\nhubspot_owner_id = \"7\"",
        ))
        .expect("valid");
        assert_eq!(
            config.rep("alice").and_then(|r| r.phone.as_deref()),
            Some("+4915123456789")
        );
        for bad in [
            "+49 151 23456789",
            "015123456789",
            "+1555",
            "+4915123456789x",
        ] {
            let error = parse(&with_rep(&format!("phone = \"{bad}\"")))
                .expect_err(bad)
                .to_string();
            assert!(
                error.contains("reps[0].phone") && error.contains("E.164"),
                "{error}"
            );
        }
        let error = parse(&with_rep(
            "teams_webhook_url = \"https://x.example\"\nteams_webhook_url_env = \"T\"",
        ))
        .expect_err("both")
        .to_string();
        assert!(
            error.contains("set teams_webhook_url or teams_webhook_url_env"),
            "{error}"
        );

        let notify = |section: &str| format!("{MINIMAL}\n[notify]\n{section}\n");
        let env = |name: &str| (name == "SMS_TOKEN").then(|| "t0ken".to_owned());
        let config = Config::parse(
            &notify("[notify.sms]\nurl = \"https://sms.example/send\"\ntoken_env = \"SMS_TOKEN\"\nfrom = \"Relay\"\n[[notify.webhooks]]\nname = \"n8n\"\nurl = \"https://n8n.example/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""),
            "leadrelay.toml",
            &env,
        )
        .expect("valid");
        assert!(config
            .notify
            .sms
            .as_ref()
            .is_some_and(|s| s.token.is_some()));
        assert!(config.notify.webhooks[0].key.is_some());
        let slack_env = |name: &str| (name == "SLACK_BOT_TOKEN").then(|| "xoxb-1".to_owned());
        for base in [
            "https://slack.com/api",
            "http://127.0.0.1:9/api",
            "http://[::1]:9/api",
            "http://localhost:9/api",
        ] {
            let config = Config::parse(
                &notify(&format!("[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\napi_base_url = \"{base}\"")),
                "leadrelay.toml",
                &slack_env,
            )
            .expect(base);
            let slack = config.notify.slack.expect("the app");
            assert!(slack.token.is_some() && slack.api_base_url == base);
            assert_eq!(slack.user_cache_ttl, Interval::from_secs(3600));
        }
        // A channel is an id, and needs the app.
        let with_channel = |channel: &str, app: bool| {
            let text = with_rep(&format!("slack_channel = \"{channel}\""));
            let text = if app {
                format!("{text}\n[notify]\n[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\n")
            } else {
                text
            };
            Config::parse(&text, "leadrelay.toml", &slack_env)
        };
        assert!(with_channel("C0123ABCD", true).is_ok());
        for (channel, app, problem) in [
            ("C0123ABCD", false, "needs a [notify.slack] section"),
            ("#sales", true, "is not a Slack channel id"),
            ("c0123", true, "is not a Slack channel id"),
        ] {
            let error = with_channel(channel, app).expect_err(channel).to_string();
            assert!(
                error.contains("reps[0].slack_channel") && error.contains(problem),
                "{error}"
            );
        }
        let sns = parse(&notify("[notify.sms]\nprovider = \"sns\"")).expect("SNS needs no URL");
        assert_eq!(sns.notify.sms.map(|s| s.provider), Some(SmsProvider::Sns));
        let error = parse(&notify("[notify.sms]\nfrom = \"Relay\""))
            .expect_err("HTTP needs a URL")
            .to_string();
        assert!(error.contains("notify.sms.url"), "{error}");
        for (section, key) in [
            ("[notify.hubspot]\ntoken_env = \"NOPE\"", "notify.hubspot.token_env"),
            ("[[notify.webhooks]]\nname = \"a\"\nurl = \"https://a.example\"", "notify.webhooks[0].secret"),
            ("[[notify.webhooks]]\nname = \"a\"\nurl = \"https://a.example\"\nsecret = \"plain-secret\"", "notify.webhooks[0].secret"),
            ("crm_url = \"crm.example/{email}\"", "notify.crm_url"),
            ("delivery_budget_ms = 30000", "notify.delivery_budget_ms"),
            // The bot token goes only to https, or to a loopback stand-in over http.
            ("[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\napi_base_url = \"http://slack.example/api\"", "notify.slack.api_base_url"),
            ("[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\napi_base_url = \"http://127.0.0.2.example/api\"", "notify.slack.api_base_url"),
            ("[notify.slack]\nbot_token_env = \"NOPE\"", "notify.slack.bot_token_env"),
        ] {
            let error = parse(&notify(section)).expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
            assert!(!error.contains("plain-secret"), "{error}");
        }
    }

    #[test]
    fn hubspot_owner_settings_are_read_with_their_defaults_and_checked() {
        let env = |name: &str| (name == "HUBSPOT_TOKEN").then(|| "pat-secret".to_owned());
        let load = |extra: &str, queue: &str| {
            let text = MINIMAL.replace(
                "manager = \"alice\"\n",
                &format!("manager = \"alice\"\n{queue}\n"),
            );
            Config::parse(
                &format!(
                    "{text}\n[notify]\n[notify.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"\n{extra}\n"
                ),
                "leadrelay.toml",
                &env,
            )
        };
        let config = load("", "").expect("valid");
        let hubspot = config.notify.hubspot.expect("hubspot");
        assert_eq!(hubspot.owner_policy, OwnerPolicy::KeepExisting);
        assert!(!hubspot.owner_on_escalation);
        assert_eq!(hubspot.default_owner_id, None);
        assert_eq!(hubspot.company, CompanyAssociation::Search);

        let config = load(
            "owner_policy = \"fill_empty\"\nowner_on_escalation = true\n\
             default_owner_id = \"987\"\ncompany = \"auto\"",
            "hubspot_owner_id = \"555\"\nhubspot_team_id = \"66\"",
        )
        .expect("valid");
        let hubspot = config.notify.hubspot.as_ref().expect("hubspot");
        assert_eq!(hubspot.owner_policy, OwnerPolicy::FillEmpty);
        assert!(hubspot.owner_on_escalation);
        assert_eq!(hubspot.default_owner_id.as_deref(), Some("987"));
        assert_eq!(hubspot.company, CompanyAssociation::Auto);
        let queue = config.queue("inbox").expect("queue");
        assert_eq!(queue.hubspot_owner_id.as_deref(), Some("555"));
        assert_eq!(queue.hubspot_team_id.as_deref(), Some("66"));
        assert_eq!(
            load("owner_policy = \"overwrite\"", "")
                .expect("valid")
                .notify
                .hubspot
                .map(|h| h.owner_policy),
            Some(OwnerPolicy::Overwrite)
        );

        for (extra, queue, key) in [
            (
                "owner_policy = \"steal\"",
                "",
                "notify.hubspot.owner_policy",
            ),
            ("company = \"create\"", "", "notify.hubspot.company"),
            (
                "default_owner_id = \"bruno\"",
                "",
                "notify.hubspot.default_owner_id",
            ),
            (
                "default_owner_id = \"\"",
                "",
                "notify.hubspot.default_owner_id",
            ),
            (
                "",
                "hubspot_owner_id = \"12 34\"",
                "queues[0].hubspot_owner_id",
            ),
            ("", "hubspot_team_id = \"sdr\"", "queues[0].hubspot_team_id"),
        ] {
            let error = load(extra, queue).expect_err(key).to_string();
            assert!(error.contains(key), "{key}: {error}");
            assert!(!error.contains("pat-secret"), "{error}");
        }
        let error = parse(&MINIMAL.replace(
            "name = \"Alice\"\n",
            "name = \"Alice\"\nhubspot_owner_id = \"owner-7\"\n",
        ))
        .expect_err("not an id")
        .to_string();
        assert!(error.contains("reps[0].hubspot_owner_id"), "{error}");
    }

    #[test]
    fn the_commented_channel_examples_in_the_shipped_config_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
        let text = std::fs::read_to_string(&path).expect("config/leadrelay.toml exists");
        // From [notify] to [claim]: every commented `key = value` or table header, not prose.
        let mut inside = false;
        let mut uncommented = Vec::new();
        for line in text.lines() {
            match line {
                "[notify]" => inside = true,
                "[claim]" => inside = false,
                _ => {}
            }
            let rest = line.strip_prefix("# ").filter(|_| inside);
            let setting = rest.filter(|rest| {
                rest.starts_with("[notify.")
                    || rest.starts_with("[[notify.")
                    || *rest == "[operations]"
                    || *rest == "[reports]"
                    || rest.starts_with("[reports.")
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            });
            uncommented.push(setting.unwrap_or(line));
        }
        let env = |name: &str| match name {
            "SMS_API_TOKEN" | "HUBSPOT_TOKEN" | "SLACK_BOT_TOKEN" => Some("token".to_owned()),
            "SALESFORCE_CLIENT_ID" | "SALESFORCE_CLIENT_SECRET" => Some("sf".to_owned()),
            "LEADRELAY_SMTP_USERNAME" | "LEADRELAY_SMTP_PASSWORD" => Some("smtp".to_owned()),
            "N8N_WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
            "LEADRELAY_OPS_SLACK_WEBHOOK" => Some("https://hooks.slack.com/services/T/B/X".into()),
            "MAILGUN_WEBHOOK_SIGNING_KEY" => Some("key-3ax6xnjp29jd6fds4gc373sgvjxteol0".into()),
            "LEADRELAY_REPORT_TOKEN" => Some("report-token-0123456789".into()),
            _ => None,
        };
        let config = Config::parse(&uncommented.join("\n"), "leadrelay.toml", &env)
            .expect("the uncommented examples validate");
        let operations = &config.operations;
        assert!(operations.slack_webhook_url.is_some() && operations.email.is_some());
        assert_eq!(operations.remind_every, Interval::from_secs(4 * 3600));
        assert!(config.reports.digest.is_some());
        let notify = &config.notify;
        assert!(notify.sms.is_some() && notify.hubspot.is_some() && notify.crm_url.is_some());
        let replies = notify.email.as_ref().and_then(|e| e.replies.as_ref());
        assert_eq!(
            replies.and_then(|r| r.relay()).map(|r| r.base()).as_deref(),
            Some("replies@in.yourco.example")
        );
        let hubspot = notify.hubspot.as_ref().expect("hubspot");
        assert_eq!(hubspot.owner_policy, OwnerPolicy::KeepExisting);
        assert_eq!(hubspot.default_owner_id.as_deref(), Some("87654321"));
        assert!(notify.slack.is_some());
        let salesforce = notify.salesforce.as_ref().expect("the Salesforce example");
        assert_eq!(
            salesforce.owner_policy,
            crate::config::SalesforceOwnerPolicy::KeepExisting
        );
        assert!(salesforce.client_secret.is_some());
        assert_eq!(notify.webhooks.len(), 1);
        assert_eq!(notify.max_attempts, 4);
        assert_eq!(notify.rates.slack, 1);
    }
}

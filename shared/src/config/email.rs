//! `[notify.email]`: the sender, the SMTP server of the embedded mode (on AWS the notify
//! function sends through Amazon SES instead), and the prospect acknowledgement switch.

use secrecy::SecretString;
use serde::Deserialize;

use super::load::Env;
use crate::reply_relay::RelayAddress;
use crate::signature::SigningKey;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same machine or a test server.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// `[notify.email]`. Present: reps with `alert_email = true` get e-mail alerts and prospects
/// get an acknowledgement (unless switched off); absent: no e-mail at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The sender of every e-mail, `"Name <address>"` or a bare address. On AWS it must be an
    /// SES-verified identity; the notify function's `LEADRELAY_SES_FROM` overrides it.
    pub from: String,
    /// The SMTP server (embedded mode). Without it the embedded mode sends no e-mail and says so
    /// at start-up; on AWS it is ignored (SES).
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// Defaults by `smtp_tls`: 25, 587 or 465.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_tls: SmtpTls,
    /// Environment variables holding the SMTP user name and password (both or neither).
    #[serde(default)]
    pub smtp_username_env: Option<String>,
    #[serde(default)]
    pub smtp_password_env: Option<String>,
    /// Per-message time limit for the SMTP conversation.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Send prospects an acknowledgement when their lead is routed (per source:
    /// `[[sources]] acknowledge = false`).
    #[serde(default = "yes")]
    pub acknowledge: bool,
    /// `[[notify.email.acknowledgements]]`: the acknowledgement's wording per source and
    /// language; the first that matches a lead is used, else the built-in English one.
    #[serde(default)]
    pub acknowledgements: Vec<AcknowledgementTemplate>,
    /// `[notify.email.replies]`: the prospect's replies to the acknowledgement come back
    /// through an inbound address and go to whoever owns the lead by then.
    #[serde(default)]
    pub replies: Option<RepliesConfig>,
    /// Resolved at load from the `*_env` variables.
    #[serde(skip)]
    pub smtp_credentials: Option<SmtpCredentials>,
}

/// `[notify.email.replies]`: the inbound domain the team points at an inbound-mail provider
/// (Mailgun), whose route posts each reply to `POST /inbound/email`. The acknowledgement's
/// Reply-To becomes `<local>+<token>@<domain>`, the token signed with the claim-link key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// `replies@in.example.com`: leadrelay issues `replies+<token>@in.example.com`.
    pub address: String,
    /// The provider's webhook signing key(s) (the first signs nothing here; all verify, for
    /// rotation). Inline is for the demo; use `signing_keys_env`.
    #[serde(default)]
    pub signing_keys: Vec<SecretString>,
    /// An environment variable (on AWS: an SSM SecureString) holding the signing key(s),
    /// separated by spaces or commas.
    #[serde(default)]
    pub signing_keys_env: Option<String>,
    /// Resolved at load.
    #[serde(skip)]
    pub relay: Option<RelayAddress>,
    #[serde(skip)]
    pub keys: Vec<SigningKey>,
}

impl RepliesConfig {
    /// The parsed inbound address (always set once the configuration loaded).
    pub fn relay(&self) -> Option<&RelayAddress> {
        self.relay.as_ref()
    }

    fn resolve(&mut self, env: Env<'_>, has_link_key: bool) -> Result<(), (String, String)> {
        let key = |name: &str| format!("notify.email.replies.{name}");
        let relay = RelayAddress::parse(&self.address)
            .map_err(|e| (key("address"), format!("{:?}: {e}", self.address)))?;
        self.relay = Some(relay);
        self.keys = super::alerts::keys(
            &self.signing_keys,
            self.signing_keys_env.as_deref(),
            "notify.email.replies.signing_keys",
            env,
        )?;
        if self.keys.is_empty() {
            return Err((
                key("signing_keys_env"),
                "the inbound provider's webhook signing key is needed to accept replies: set \
                 signing_keys_env (or signing_keys)"
                    .into(),
            ));
        }
        if !has_link_key {
            // The reply addresses are signed with the claim-link key.
            return Err((
                key("address"),
                "reply addresses are signed with the claim-link key: set [claim] link_secrets_env \
                 (or link_secrets)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// One wording of the prospect acknowledgement: a subject and a plain-text body in Jinja
/// syntax (`{{ first_name }}`, `{% if company %}…{% endif %}`), for leads from `sources` in
/// `languages` (either list empty: any).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgementTemplate {
    #[serde(default)]
    pub sources: Vec<String>,
    /// Language tags as the lead states them (`de`, `pt-BR`); `de` also takes `de-AT`.
    #[serde(default)]
    pub languages: Vec<String>,
    pub subject: String,
    pub text: String,
}

impl AcknowledgementTemplate {
    /// Whether this wording is for a lead from `source` in `language`.
    pub fn matches(&self, source: &str, language: Option<&str>) -> bool {
        let source_ok = self.sources.is_empty() || self.sources.iter().any(|s| s == source);
        let language_ok = self.languages.is_empty()
            || language.is_some_and(|tag| self.languages.iter().any(|l| language_covers(l, tag)));
        source_ok && language_ok
    }
}

/// Whether the configured tag `wanted` covers the lead's `tag`: the same tag, or its primary
/// language (`de` covers `de-AT`), case and `_`/`-` aside.
pub fn language_covers(wanted: &str, tag: &str) -> bool {
    let norm = |t: &str| t.trim().replace('_', "-").to_ascii_lowercase();
    let (wanted, tag) = (norm(wanted), norm(tag));
    tag == wanted
        || tag
            .strip_prefix(&wanted)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// SMTP login, read from the environment; never logged.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpCredentials { .. }")
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn yes() -> bool {
    true
}

impl EmailConfig {
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
            .unwrap_or_else(|| self.smtp_tls.default_port())
    }

    /// Checks the sender and resolves the SMTP credentials; the error names the key, never a
    /// secret.
    pub(super) fn resolve(
        &mut self,
        env: Env<'_>,
        has_link_key: bool,
    ) -> Result<(), (String, String)> {
        if self.from.parse::<crate::email::Mailbox>().is_err() {
            return Err((
                "notify.email.from".into(),
                format!(
                    "{:?} is not an e-mail address (\"Name <address>\" or an address)",
                    self.from
                ),
            ));
        }
        if let Some(host) = &self.smtp_host {
            if host.trim().is_empty() || host.contains(['/', ' ']) {
                return Err((
                    "notify.email.smtp_host".into(),
                    "must be a host name".into(),
                ));
            }
        }
        if self.timeout_ms == 0 {
            return Err((
                "notify.email.timeout_ms".into(),
                "must be at least 1".into(),
            ));
        }
        let variable = |name: &Option<String>, key: &str| -> Result<_, (String, String)> {
            name.as_deref()
                .map(|name| {
                    env.require(name)
                        .map_err(|message| (format!("notify.email.{key}"), message))
                })
                .transpose()
        };
        let username = variable(&self.smtp_username_env, "smtp_username_env")?;
        let password = variable(&self.smtp_password_env, "smtp_password_env")?;
        self.smtp_credentials = match (username, password) {
            (Some(username), Some(password)) => Some(SmtpCredentials {
                username,
                password: SecretString::from(password),
            }),
            (None, None) => None,
            _ => {
                return Err((
                    "notify.email.smtp_password_env".into(),
                    "set smtp_username_env and smtp_password_env together".into(),
                ))
            }
        };
        for (n, template) in self.acknowledgements.iter().enumerate() {
            let key = |field: &str| format!("notify.email.acknowledgements[{n}].{field}");
            if let Some(bad) = template.languages.iter().find(|l| !is_language_tag(l)) {
                return Err((
                    key("languages"),
                    format!("{bad:?} is not a language tag (such as \"de\" or \"pt-BR\")"),
                ));
            }
        }
        if let Some(replies) = &mut self.replies {
            replies.resolve(env, has_link_key)?;
        }
        if self.smtp_credentials.is_some() && self.smtp_tls == SmtpTls::None {
            // A password over plain text would cross the network readable.
            return Err((
                "notify.email.smtp_tls".into(),
                "a login needs smtp_tls = \"starttls\" or \"tls\"".into(),
            ));
        }
        Ok(())
    }
}

impl super::check::Validator<'_> {
    /// Each acknowledgement template through `renders` ([`super::DeepChecks::acknowledgements`]):
    /// a typo in a variable's name is found when the configuration is loaded, not at the first
    /// prospect.
    pub(super) fn check_acknowledgements(
        &self,
        config: &super::Config,
        renders: fn(&str) -> Result<(), String>,
    ) -> Result<(), super::ConfigError> {
        let Some(email) = &config.notify.email else {
            return Ok(());
        };
        for (n, template) in email.acknowledgements.iter().enumerate() {
            for (field, text) in [("subject", &template.subject), ("text", &template.text)] {
                renders(text).map_err(|message| {
                    self.invalid(
                        self.section("notify.email"),
                        format!("notify.email.acknowledgements[{n}].{field}"),
                        message,
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// A BCP 47-like tag: a 2–3 letter language, then subtags of letters and digits.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::MINIMAL;
    use crate::config::Config;

    const EMAIL: &str = "\n[notify.email]\nfrom = \"leadrelay <alerts@acme.example>\"\n";
    const CLAIM: &str = "\n[claim]\nlink_secrets = [\"claim-link-secret-0123456789\"]\n";

    fn parse(extra: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        Config::parse(&format!("{MINIMAL}{extra}"), "leadrelay.toml", &lookup)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_reply_relay_reads_its_address_and_signing_key_from_the_environment() {
        let replies = "[notify.email.replies]\naddress = \"Replies@In.Acme.example\"\n\
                       signing_keys_env = \"MAILGUN_KEY\"\n";
        let config = parse(
            &format!("{CLAIM}{EMAIL}{replies}"),
            &[("MAILGUN_KEY", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0")],
        )
        .expect("valid");
        let replies = config
            .notify
            .email
            .as_ref()
            .and_then(|e| e.replies.as_ref());
        let replies = replies.expect("[notify.email.replies]");
        assert_eq!(
            replies.relay().map(|r| r.base()).as_deref(),
            Some("replies@in.acme.example")
        );
        assert_eq!(replies.keys.len(), 1);
        // Without the section, nothing changes.
        let plain = parse(&format!("{CLAIM}{EMAIL}"), &[]).expect("valid");
        assert!(plain
            .notify
            .email
            .as_ref()
            .is_some_and(|e| e.replies.is_none()));
    }

    #[test]
    fn a_reply_relay_without_its_keys_or_with_a_bad_address_stops_the_start() {
        let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
        for (extra, env, named, says) in [
            (
                format!("{CLAIM}{EMAIL}[notify.email.replies]\naddress = \"replies@in.acme.example\"\nsigning_keys_env = \"MAILGUN_KEY\"\n"),
                vec![],
                "notify.email.replies.signing_keys_env",
                "MAILGUN_KEY is not set",
            ),
            (
                format!("{CLAIM}{EMAIL}[notify.email.replies]\naddress = \"replies@in.acme.example\"\n"),
                vec![],
                "notify.email.replies.signing_keys_env",
                "signing key",
            ),
            (
                format!("{EMAIL}[notify.email.replies]\naddress = \"replies@in.acme.example\"\nsigning_keys_env = \"MAILGUN_KEY\"\n"),
                vec![("MAILGUN_KEY", key)],
                "notify.email.replies.address",
                "claim-link key",
            ),
            (
                format!("{CLAIM}{EMAIL}[notify.email.replies]\naddress = \"replies+x@in.acme.example\"\nsigning_keys_env = \"MAILGUN_KEY\"\n"),
                vec![("MAILGUN_KEY", key)],
                "notify.email.replies.address",
                "no '+'",
            ),
            (
                format!("{CLAIM}{EMAIL}[notify.email.replies]\naddress = \"replies\"\nsigning_keys_env = \"MAILGUN_KEY\"\n"),
                vec![("MAILGUN_KEY", key)],
                "notify.email.replies.address",
                "must be an address",
            ),
        ] {
            let error = parse(&extra, &env).expect_err(named);
            assert!(error.contains(named), "{named}: {error}");
            assert!(error.contains(says), "{says}: {error}");
            assert!(!error.contains(key), "no secret in {error}");
        }
    }
}

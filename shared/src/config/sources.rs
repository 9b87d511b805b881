//! `[[sources]]`: who may post webhooks and how they sign them. Secrets become keys at load, so
//! a bad or missing secret stops the start, named by its position and never by its value.

use std::collections::HashSet;
use std::ops::Range;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;

use super::load::Env;
use super::{ConfigError, Validator};
use crate::signature::{Scheme, SigningKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    StandardWebhooks,
    BodyHmac,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub id: String,
    pub scheme: SchemeName,
    /// Inline secrets (fine for the demo; use `secrets_env` in production).
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// An environment variable holding the secrets, separated by spaces or commas.
    #[serde(default)]
    pub secrets_env: Option<String>,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    #[serde(default)]
    pub signature_header: Option<String>,
    #[serde(default)]
    pub signature_prefix: Option<String>,
    #[serde(default)]
    pub event_id_header: Option<String>,
    /// For a scheme that signs no timestamp (`body_hmac`): how long a signed body is
    /// remembered, so that the same bytes again with a fresh event id are a duplicate of the
    /// first lead. Default [`DEFAULT_REPLAY_WINDOW_HOURS`].
    #[serde(default)]
    pub replay_window_hours: Option<u32>,
    /// The exact host names this source's `conversation_transcript_url` may point at (the
    /// transcript fetcher in `leadrelay-providers`); none by default, so no URL is fetched.
    #[serde(default)]
    pub transcript_hosts: Vec<String>,
    /// Whether prospects from this source get the acknowledgement e-mail (when
    /// `[notify.email] acknowledge` is on).
    #[serde(default = "default_true")]
    pub acknowledge: bool,
    /// Resolved at load: the parsed keys, newest first as written.
    #[serde(skip)]
    pub keys: Vec<SigningKey>,
}

fn default_tolerance() -> u64 {
    300
}

/// How long a body-only signed request is remembered when `replay_window_hours` is not set.
pub const DEFAULT_REPLAY_WINDOW_HOURS: u32 = 7 * 24;

fn default_true() -> bool {
    true
}

impl SourceConfig {
    pub fn signature_scheme(&self) -> Scheme {
        match self.scheme {
            SchemeName::StandardWebhooks => Scheme::StandardWebhooks {
                tolerance_secs: self.tolerance_secs,
            },
            SchemeName::BodyHmac => Scheme::BodyHmac {
                header: self
                    .signature_header
                    .clone()
                    .unwrap_or_else(|| "x-hub-signature-256".into())
                    .to_ascii_lowercase(),
                prefix: self
                    .signature_prefix
                    .clone()
                    .unwrap_or_else(|| "sha256=".into()),
                id_header: self.event_id_header.clone(),
            },
        }
    }

    /// How long a signed body is deduped on, for a scheme whose signature covers no timestamp
    /// (nothing else stops a captured request from being sent again with a fresh event id);
    /// `None` for Standard Webhooks, whose signed timestamp and id already do.
    pub fn replay_window(&self) -> Option<jiff::SignedDuration> {
        match self.scheme {
            SchemeName::StandardWebhooks => None,
            SchemeName::BodyHmac => {
                let hours = self
                    .replay_window_hours
                    .unwrap_or(DEFAULT_REPLAY_WINDOW_HOURS);
                Some(jiff::SignedDuration::from_hours(i64::from(hours)))
            }
        }
    }

    /// Resolves the secrets into `keys` and checks the replay window; `key` names the source
    /// (`sources[0]`).
    fn check(
        &mut self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(v.invalid(
                span,
                format!("{key}.id"),
                "must be letters, digits, - or _ (it is part of the webhook URL)",
            ));
        }
        self.keys = self.signing_keys(v, span.clone(), key, env)?;
        match (self.scheme, self.replay_window_hours) {
            (SchemeName::StandardWebhooks, Some(_)) => Err(v.invalid(
                span,
                format!("{key}.replay_window_hours"),
                "applies to body_hmac sources only: standard_webhooks signs a timestamp \
                 (tolerance_secs) and the event id, which already stop replays",
            )),
            (SchemeName::BodyHmac, Some(0)) => Err(v.invalid(
                span,
                format!("{key}.replay_window_hours"),
                "must be at least 1: a body-only signature has nothing else that stops \
                 a replay",
            )),
            _ => Ok(()),
        }
    }

    /// The inline secrets, then the variable's, each parsed for the scheme.
    fn signing_keys(
        &self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<Vec<SigningKey>, ConfigError> {
        // Each secret with the key that names it: its place in `secrets`, or the variable.
        let mut secrets: Vec<(String, String)> = self
            .secrets
            .iter()
            .enumerate()
            .map(|(n, s)| (format!("{key}.secrets[{n}]"), s.expose_secret().to_owned()))
            .collect();
        if let Some(name) = &self.secrets_env {
            let named = format!("{key}.secrets_env");
            let values = env
                .secrets(name)
                .map_err(|message| v.invalid(span.clone(), named.clone(), message))?;
            secrets.extend(values.into_iter().map(|s| (named.clone(), s)));
        }
        if secrets.is_empty() {
            return Err(v.invalid(
                span,
                format!("{key}.secrets"),
                "no secret configured: set secrets or secrets_env",
            ));
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for (n, (secret_key, secret)) in secrets.iter().enumerate() {
            let parsed = match self.scheme {
                SchemeName::StandardWebhooks => SigningKey::standard(secret),
                SchemeName::BodyHmac => SigningKey::plain(secret),
            };
            // The error names the position of the secret, never its value.
            keys.push(parsed.map_err(|e| {
                v.invalid(
                    span.clone(),
                    secret_key.clone(),
                    format!("secret {} of this source: {e}", n + 1),
                )
            })?);
        }
        Ok(keys)
    }
}

/// At least one source; ids unique and URL-safe; secrets resolved into keys.
pub(super) fn check(
    v: &Validator<'_>,
    sources: &mut [Spanned<SourceConfig>],
    env: Env<'_>,
) -> Result<(), ConfigError> {
    if sources.is_empty() {
        return Err(v.invalid(0..0, "sources", "at least one [[sources]] is required"));
    }
    let mut seen = HashSet::new();
    for (index, source) in sources.iter_mut().enumerate() {
        let span = source.span();
        let key = format!("sources[{index}]");
        let source = source.get_mut();
        if !seen.insert(source.id.clone()) {
            return Err(v.invalid(
                span,
                format!("{key}.id"),
                format!("duplicate source id {:?}", source.id),
            ));
        }
        source.check(v, span, &key, env)?;
    }
    Ok(())
}

/// Each `transcript_hosts` entry is one exact host (checked with the transcript provider).
pub(super) fn check_transcript_hosts(
    v: &Validator<'_>,
    sources: &[Spanned<SourceConfig>],
) -> Result<(), ConfigError> {
    for (index, source) in sources.iter().enumerate() {
        for (n, host) in source.get_ref().transcript_hosts.iter().enumerate() {
            check_host(host).map_err(|message| {
                v.invalid(
                    source.span(),
                    format!("sources[{index}].transcript_hosts[{n}]"),
                    format!("{host:?}: {message}"),
                )
            })?;
        }
    }
    Ok(())
}

/// A `transcript_hosts` entry: one exact host name or IP address, as a URL's host reads.
fn check_host(host: &str) -> Result<(), String> {
    let bare = "must be a bare host name such as transcripts.chatbot.example \
                (no scheme, port or path)";
    if host.contains('*') {
        return Err("exact host names only, no wildcards".into());
    }
    match url::Host::parse(host) {
        Ok(parsed) if parsed.to_string() == host.to_ascii_lowercase() => Ok(()),
        _ => Err(bare.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{no_env, parse, MINIMAL};
    use crate::config::Config;

    #[test]
    fn a_bad_secret_is_named_by_position_not_value() {
        let text = MINIMAL.replace(
            "whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=",
            "not-a-secret-value",
        );
        let error = parse(&text).expect_err("bad secret").to_string();
        assert!(error.contains("sources[0].secrets[0]"), "{error}");
        assert!(!error.contains("not-a-secret-value"), "{error}");
    }

    #[test]
    fn secrets_can_come_from_the_environment() {
        let text = MINIMAL.replace(
            "secrets = [\"whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=\"]",
            "secrets_env = \"WEBSITE_SECRETS\"",
        );
        let env = |name: &str| {
            (name == "WEBSITE_SECRETS").then(|| {
                "whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=,whsec_YW5vdGhlci1zZWNyZXQtMDEyMzQ1Njc4OQ==".to_owned()
            })
        };
        let config = Config::parse(&text, "x.toml", &env).expect("valid");
        assert_eq!(config.source("website").map(|s| s.keys.len()), Some(2));
        let error = Config::parse(&text, "x.toml", &no_env).expect_err("unset");
        assert!(error.to_string().contains("WEBSITE_SECRETS is not set"));
    }

    #[test]
    fn a_body_signed_source_dedupes_on_its_body_for_a_week_unless_told_otherwise() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "[[reps]]",
                &format!(
                    "[[sources]]\nid = \"forms\"\nscheme = \"body_hmac\"\n\
                     secrets = [\"forms-secret-0123456789\"]\n{extra}\n\n[[reps]]"
                ),
            )
        };
        let window = |text: &str, id: &str| {
            parse(text)
                .expect("valid")
                .source(id)
                .and_then(SourceConfig::replay_window)
        };
        let hours = jiff::SignedDuration::from_hours;
        assert_eq!(window(&with(""), "forms"), Some(hours(168)));
        assert_eq!(window(&with(""), "website"), None, "signs a timestamp");
        assert_eq!(
            window(&with("replay_window_hours = 2"), "forms"),
            Some(hours(2))
        );
        let error = parse(&with("replay_window_hours = 0"))
            .expect_err("zero")
            .to_string();
        assert!(error.contains("sources[1].replay_window_hours"), "{error}");
        let error = parse(&MINIMAL.replace(
            "scheme = \"standard_webhooks\"",
            "scheme = \"standard_webhooks\"\nreplay_window_hours = 24",
        ))
        .expect_err("not for standard webhooks")
        .to_string();
        assert!(
            error.contains("sources[0].replay_window_hours: applies to body_hmac sources only"),
            "{error}"
        );
    }
}

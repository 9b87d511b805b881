//! `[reports]`: what the speed-to-lead report counts as a complete handoff, and the token that
//! opens its JSON API. (Scheduled digests will be configured here too.)

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::load::Env;

/// The handoff fields a report can require, as `[reports] handoff_fields` names them.
pub const HANDOFF_FIELDS: [&str; 10] = [
    "email",
    "name",
    "company",
    "question",
    "phone",
    "job_title",
    "transcript",
    "country",
    "employees",
    "page",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// What a rep must find in the alert for a handoff to count as complete (see
    /// [`HANDOFF_FIELDS`]).
    pub handoff_fields: Vec<String>,
    /// The environment variable holding the bearer token of `GET /reports/...`; without it the
    /// report API is not served (404).
    pub api_token_env: Option<String>,
    /// The token, read from `api_token_env` at load.
    #[serde(skip)]
    pub api_token: Option<SecretString>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            handoff_fields: ["email", "name", "company", "question"]
                .map(str::to_owned)
                .to_vec(),
            api_token_env: None,
            api_token: None,
        }
    }
}

impl ReportsConfig {
    /// Reads the API token and checks the field names; the error names the key, never the
    /// token.
    pub(super) fn resolve(&mut self, env: Env<'_>) -> Result<(), (String, String)> {
        for field in &self.handoff_fields {
            if !HANDOFF_FIELDS.contains(&field.as_str()) {
                return Err((
                    "reports.handoff_fields".into(),
                    format!(
                        "{field:?} is not a handoff field (one of {})",
                        HANDOFF_FIELDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(name) = &self.api_token_env {
            let key = || "reports.api_token_env".to_owned();
            let token = env.require(name).map_err(|message| (key(), message))?;
            if token.trim().len() < 16 {
                return Err((
                    key(),
                    format!("{name} must hold a token of at least 16 characters"),
                ));
            }
            self.api_token = Some(SecretString::from(token.trim().to_owned()));
        }
        Ok(())
    }

    /// Whether `presented` is the API token, compared in constant time: each side keys an
    /// HMAC over the same text, so neither the length nor a matching prefix shows in the
    /// time taken. `false` when no token is configured.
    pub fn api_token_matches(&self, presented: &str) -> bool {
        let Some(token) = &self.api_token else {
            return false;
        };
        const PROBE: &[u8] = b"leadrelay report token check";
        let tag = |key: &[u8]| {
            // HMAC takes a key of any length.
            <Hmac<Sha256>>::new_from_slice(key).map(|mut mac| {
                mac.update(PROBE);
                mac
            })
        };
        let (Ok(offered), Ok(expected)) = (
            tag(presented.as_bytes()),
            tag(token.expose_secret().as_bytes()),
        ) else {
            return false;
        };
        expected
            .verify_slice(&offered.finalize().into_bytes())
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> ReportsConfig {
        let mut config = ReportsConfig {
            api_token_env: Some("REPORT_TOKEN".into()),
            ..ReportsConfig::default()
        };
        let lookup = |name: &str| (name == "REPORT_TOKEN").then(|| token.to_owned());
        config.resolve(Env::new(&lookup)).expect("resolves");
        config
    }

    #[test]
    fn only_the_configured_token_matches() {
        let config = with_token("s3cret-token-0123456789");
        assert!(config.api_token_matches("s3cret-token-0123456789"));
        assert!(!config.api_token_matches("s3cret-token-012345678"));
        assert!(!config.api_token_matches(""));
        assert!(!ReportsConfig::default().api_token_matches(""));
    }

    #[test]
    fn unknown_handoff_fields_and_short_tokens_are_refused() {
        let mut config = ReportsConfig {
            handoff_fields: vec!["email".into(), "budget".into()],
            ..ReportsConfig::default()
        };
        let none = |_: &str| None;
        let (key, message) = config.resolve(Env::new(&none)).expect_err("unknown field");
        assert_eq!(key, "reports.handoff_fields");
        assert!(message.contains("\"budget\""), "{message}");
        let mut config = ReportsConfig {
            api_token_env: Some("T".into()),
            ..ReportsConfig::default()
        };
        let short = |_: &str| Some("short".to_owned());
        let (_, message) = config.resolve(Env::new(&short)).expect_err("short");
        assert!(
            !message.contains("short\""),
            "the token is never shown: {message}"
        );
    }
}

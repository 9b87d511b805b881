//! `[claim]` (how reps claim a lead: signed links, Slack buttons) and `[escalation]` (what
//! happens to a lead nobody claims by its SLA deadline).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::load::Env;
use crate::signature::SigningKey;

/// `[claim]`: where claim links point and the secrets that sign and check them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimConfig {
    /// The public base URL of `leadrelay serve` or of the API; claim links are
    /// `{public_url}/claim/{lead_id}?rep=..&expires=..&sig=..`. Without it, alerts carry no link.
    pub public_url: Option<String>,
    /// Keys that sign claim links (the first signs; all verify, for rotation). Inline is for
    /// the demo; use `link_secrets_env`.
    pub link_secrets: Vec<SecretString>,
    /// An environment variable (on AWS: an SSM SecureString) holding the link secrets,
    /// separated by spaces or commas.
    pub link_secrets_env: Option<String>,
    /// How long a claim link works.
    pub link_ttl_hours: u32,
    /// The Slack app's signing secret(s), for the Claim button (interactivity requests).
    pub slack_signing_secrets: Vec<SecretString>,
    pub slack_signing_secrets_env: Option<String>,
    /// Where Slack's `response_url` (to update a claimed alert in place) must point; anything
    /// else is not called. Compared parsed (scheme, host, port, whole path segments); must be an
    /// https URL ending in `/`. Change it only for Slack's government cloud
    /// (`https://hooks.slack-gov.com/`).
    pub slack_response_url_prefix: String,
    /// Who may claim a lead when neither where it sits (its queue or pool) nor its rule says:
    /// `owner`, `team` or `anyone`. Left out: `owner` for a lead a rep owns, `anyone` for one
    /// in a queue or a broadcast pool.
    pub default: Option<ClaimPolicy>,
    #[serde(skip)]
    pub link_keys: Vec<SigningKey>,
    #[serde(skip)]
    pub slack_keys: Vec<SigningKey>,
}

impl Default for ClaimConfig {
    fn default() -> Self {
        ClaimConfig {
            public_url: None,
            link_secrets: Vec::new(),
            link_secrets_env: None,
            link_ttl_hours: 72,
            slack_signing_secrets: Vec::new(),
            slack_signing_secrets_env: None,
            slack_response_url_prefix: "https://hooks.slack.com/".to_owned(),
            default: None,
            link_keys: Vec::new(),
            slack_keys: Vec::new(),
        }
    }
}

/// Who may claim a lead (`claim = "..."` on a rule, pool or queue; `[claim] default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimPolicy {
    /// The owner (as routed, and each escalation target since), their backup, and the
    /// manager of their team queue; for a queue its manager, for a pool its members.
    Owner,
    /// Those, and every rep of the owner's team (a queue's: every team whose queue it is).
    Team,
    /// Any configured rep: the first to claim owns the lead.
    Anyone,
}

impl ClaimPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimPolicy::Owner => "owner",
            ClaimPolicy::Team => "team",
            ClaimPolicy::Anyone => "anyone",
        }
    }
}

impl ClaimConfig {
    /// Resolves the secrets into keys; the error names the key, never a secret.
    pub(super) fn resolve(&mut self, env: Env<'_>) -> Result<(), (String, String)> {
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ("claim.public_url".to_owned(), format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(("claim.public_url".into(), "must be an http(s) URL".into()));
            }
        }
        crate::url_prefix::UrlPrefix::parse(&self.slack_response_url_prefix).map_err(|e| {
            (
                "claim.slack_response_url_prefix".to_owned(),
                format!("{e}, as in \"https://hooks.slack.com/\""),
            )
        })?;
        self.link_keys = keys(
            &self.link_secrets,
            self.link_secrets_env.as_deref(),
            "claim.link_secrets",
            env,
        )?;
        self.slack_keys = keys(
            &self.slack_signing_secrets,
            self.slack_signing_secrets_env.as_deref(),
            "claim.slack_signing_secrets",
            env,
        )?;
        if self.public_url.is_some() && self.link_keys.is_empty() {
            return Err((
                "claim.link_secrets".into(),
                "public_url is set but no link secret: set link_secrets or link_secrets_env".into(),
            ));
        }
        if self.link_ttl_hours == 0 {
            return Err(("claim.link_ttl_hours".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

pub(super) fn keys(
    inline: &[SecretString],
    variable: Option<&str>,
    key: &str,
    env: Env<'_>,
) -> Result<Vec<SigningKey>, (String, String)> {
    // Each secret with the key that names it: its place in the list, or the variable.
    let mut secrets: Vec<(String, String)> = inline
        .iter()
        .enumerate()
        .map(|(n, s)| (format!("{key}[{n}]"), s.expose_secret().to_owned()))
        .collect();
    if let Some(name) = variable {
        let named = format!("{key}_env");
        let values = env
            .secrets(name)
            .map_err(|message| (named.clone(), message))?;
        secrets.extend(values.into_iter().map(|s| (named.clone(), s)));
    }
    secrets
        .iter()
        .enumerate()
        .map(|(n, (named, secret))| {
            SigningKey::plain(secret).map_err(|e| (named.clone(), format!("secret {}: {e}", n + 1)))
        })
        .collect()
}

/// Where one step of the escalation ladder sends a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalateTo {
    /// The current owner's backup rep (when available and not paused), else the team queue.
    Backup,
    /// The owner's team queue; its manager is alerted with it.
    Queue,
    /// The manager of the owner's team queue, as the owner.
    Manager,
    /// The same owner again, on this step's channels (say, SMS after Slack).
    Owner,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub to: EscalateTo,
    /// The channels alerted at this step (`slack`, `teams`, `email`, `sms`, `terminal`, ...);
    /// all the recipient has when left out. The terminal always shows every alert.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// How long the new owner has before the next step; the tier's SLA when left out.
    #[serde(default)]
    pub sla_minutes: Option<u32>,
}

/// `[escalation]`: a lead nobody claims by its SLA deadline climbs the ladder, one step per
/// missed deadline, and stops at the last step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// How often the embedded timer looks for due leads (on AWS, the schedule's rate).
    pub check_every_secs: u64,
    /// A rep who lets this many leads in a row pass their SLA unclaimed is paused from new
    /// assignments until resumed (`leadrelay reps resume <id>`); 0 never pauses.
    pub pause_after_breaches: u32,
    /// The ladder, in order; its length is the escalation limit. Empty: breaches are recorded
    /// and counted, nobody else is alerted.
    pub ladder: Vec<EscalationStep>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            check_every_secs: 30,
            pause_after_breaches: 3,
            ladder: vec![
                EscalationStep {
                    to: EscalateTo::Backup,
                    channels: None,
                    sla_minutes: None,
                },
                EscalationStep {
                    to: EscalateTo::Queue,
                    channels: None,
                    sla_minutes: None,
                },
            ],
        }
    }
}

impl EscalationConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.check_every_secs == 0 {
            return Err((
                "escalation.check_every_secs".into(),
                "must be at least 1".into(),
            ));
        }
        for (n, step) in self.ladder.iter().enumerate() {
            if step.sla_minutes == Some(0) {
                return Err((
                    format!("escalation.ladder[{n}].sla_minutes"),
                    "must be at least 1".into(),
                ));
            }
            if step.channels.as_ref().is_some_and(Vec::is_empty) {
                return Err((
                    format!("escalation.ladder[{n}].channels"),
                    "leave it out for every channel; an empty list alerts nobody".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, MINIMAL};

    #[test]
    fn the_claim_default_is_one_of_owner_team_or_anyone() {
        use crate::config::ClaimPolicy;
        assert_eq!(parse(MINIMAL).expect("valid").claim.default, None);
        let with = |value: &str| format!("{MINIMAL}\n[claim]\ndefault = \"{value}\"\n");
        assert_eq!(
            parse(&with("team")).expect("valid").claim.default,
            Some(ClaimPolicy::Team)
        );
        let error = parse(&with("everyone"))
            .expect_err("not a policy")
            .to_string();
        assert!(error.contains("claim.default"), "{error}");
        assert!(error.contains("owner"), "names the choices: {error}");
    }

    #[test]
    fn a_slack_response_url_prefix_must_be_a_clean_https_url_ending_in_a_slash() {
        let with = |prefix: &str| {
            format!("{MINIMAL}\n[claim]\nslack_response_url_prefix = \"{prefix}\"\n")
        };
        assert_eq!(
            parse(MINIMAL)
                .expect("valid")
                .claim
                .slack_response_url_prefix,
            "https://hooks.slack.com/"
        );
        parse(&with("https://hooks.slack-gov.com/")).expect("Slack's government cloud");
        for bad in [
            "https://hooks.slack.com",
            "https://hooks.slack.com/actions",
            "http://hooks.slack.com/",
            "https://me:pw@hooks.slack.com/",
            "https://hooks.slack.com/?a=b",
            "hooks.slack.com/",
        ] {
            let error = parse(&with(bad)).expect_err(bad).to_string();
            assert!(
                error.contains("claim.slack_response_url_prefix"),
                "{bad}: {error}"
            );
        }
        let error = parse(&with("https://hooks.slack.com"))
            .expect_err("no slash")
            .to_string();
        assert!(error.contains("must end with '/'"), "{error}");
    }
}

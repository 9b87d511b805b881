//! `[reports]`: what the speed-to-lead report counts as a complete handoff, the token that
//! opens its JSON API, and `[reports.digest]`: the scheduled digest to managers.

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
    /// `[reports.digest]`: the daily and weekly digest to managers; none when absent.
    pub digest: Option<DigestConfig>,
}

/// `[reports.digest]`: when the digest is sent (local time in `timezone`) and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// `"08:00"`: every day at that local time, over the previous local day.
    pub daily: Option<String>,
    /// `"mon 08:00"`: every week on that day and time, over the previous seven local days.
    pub weekly: Option<String>,
    /// An IANA zone (`Europe/Berlin`); UTC when absent.
    #[serde(default = "utc")]
    pub timezone: String,
    /// A Slack channel id, posted to by the `[notify.slack]` app.
    pub slack_channel: Option<String>,
    /// Addresses sent the digest by e-mail (needs `[notify.email]`).
    #[serde(default)]
    pub emails: Vec<String>,
    /// How many of the slowest reps the digest names.
    #[serde(default = "three")]
    pub slowest: usize,
    /// `daily`, read at load.
    #[serde(skip)]
    pub daily_at: Option<jiff::civil::Time>,
    /// `weekly`, read at load.
    #[serde(skip)]
    pub weekly_at: Option<(jiff::civil::Weekday, jiff::civil::Time)>,
    /// `timezone`, read at load.
    #[serde(skip, default = "utc_zone")]
    pub tz: jiff::tz::TimeZone,
}

fn utc() -> String {
    "UTC".into()
}

fn three() -> usize {
    3
}

fn utc_zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

/// `HH:MM`, 24-hour.
fn parse_time(text: &str) -> Option<jiff::civil::Time> {
    let (hour, minute) = text.trim().split_once(':')?;
    let number = |part: &str, below: i8| {
        let valid = (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        part.parse::<i8>().ok().filter(|n| valid && *n < below)
    };
    jiff::civil::Time::new(number(hour, 24)?, number(minute, 60)?, 0, 0).ok()
}

/// `mon 08:00` (a weekday's first three letters or its full name, any case).
fn parse_weekly(text: &str) -> Option<(jiff::civil::Weekday, jiff::civil::Time)> {
    use jiff::civil::Weekday;
    let (day, time) = text.trim().split_once(char::is_whitespace)?;
    let day = day.to_ascii_lowercase();
    let weekday = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ]
    .into_iter()
    .find(|(short, long, _)| day == *short || day == *long)
    .map(|(_, _, weekday)| weekday)?;
    Some((weekday, parse_time(time)?))
}

impl DigestConfig {
    /// Reads the times and the zone, and checks that each destination can be reached.
    fn resolve(&mut self, has_slack_app: bool, has_email: bool) -> Result<(), (String, String)> {
        let key = |name: &str| format!("reports.digest.{name}");
        if let Some(daily) = &self.daily {
            self.daily_at = Some(parse_time(daily).ok_or_else(|| {
                (
                    key("daily"),
                    format!("{daily:?} is not a time of day such as \"08:00\""),
                )
            })?);
        }
        if let Some(weekly) = &self.weekly {
            self.weekly_at = Some(parse_weekly(weekly).ok_or_else(|| {
                (
                    key("weekly"),
                    format!("{weekly:?} is not a weekday and a time such as \"mon 08:00\""),
                )
            })?);
        }
        if self.daily.is_none() && self.weekly.is_none() {
            return Err((
                key("daily"),
                "set daily, weekly or both: without either no digest is ever sent".into(),
            ));
        }
        self.tz = crate::calendar::parse_time_zone(&self.timezone)
            .map_err(|message| (key("timezone"), message))?;
        if let Some(channel) = &self.slack_channel {
            if !has_slack_app {
                return Err((
                    key("slack_channel"),
                    "needs a [notify.slack] section (the Slack app posts the digest)".into(),
                ));
            }
            if !super::team::is_slack_id(channel) {
                return Err((
                    key("slack_channel"),
                    format!("{channel:?} is not a Slack channel id such as C0123ABCD"),
                ));
            }
        }
        for address in &self.emails {
            if crate::email::Mailbox::new(None, address).is_err() {
                return Err((
                    key("emails"),
                    format!("{address:?} is not an e-mail address"),
                ));
            }
        }
        if !self.emails.is_empty() && !has_email {
            return Err((
                key("emails"),
                "needs a [notify.email] section (its sender and mail server)".into(),
            ));
        }
        if self.slack_channel.is_none() && self.emails.is_empty() {
            return Err((
                key("slack_channel"),
                "set slack_channel, emails or both: the digest needs somewhere to go".into(),
            ));
        }
        Ok(())
    }
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            handoff_fields: ["email", "name", "company", "question"]
                .map(str::to_owned)
                .to_vec(),
            api_token_env: None,
            api_token: None,
            digest: None,
        }
    }
}

impl ReportsConfig {
    /// Reads the API token, checks the field names and the digest (which needs the Slack app
    /// for a channel, `[notify.email]` for addresses); the error names the key, never the
    /// token.
    pub(super) fn resolve(
        &mut self,
        env: Env<'_>,
        has_slack_app: bool,
        has_email: bool,
    ) -> Result<(), (String, String)> {
        if let Some(digest) = self.digest.as_mut() {
            digest.resolve(has_slack_app, has_email)?;
        }
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
        config
            .resolve(Env::new(&lookup), false, false)
            .expect("resolves");
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
        let (key, message) = config
            .resolve(Env::new(&none), false, false)
            .expect_err("unknown field");
        assert_eq!(key, "reports.handoff_fields");
        assert!(message.contains("\"budget\""), "{message}");
        let mut config = ReportsConfig {
            api_token_env: Some("T".into()),
            ..ReportsConfig::default()
        };
        let short = |_: &str| Some("short".to_owned());
        let (_, message) = config
            .resolve(Env::new(&short), false, false)
            .expect_err("short");
        assert!(
            !message.contains("short\""),
            "the token is never shown: {message}"
        );
    }

    mod digest {
        use crate::config::tests::MINIMAL;
        use crate::config::Config;

        const SLACK: &str = "[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\n";
        const EMAIL: &str = "[notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
                             smtp_host = \"127.0.0.1\"\n";

        fn load(sections: &str, digest: &str) -> Result<Config, String> {
            let env = |name: &str| (name == "SLACK_BOT_TOKEN").then(|| "xoxb-1-2-3".to_owned());
            Config::parse(
                &format!("{MINIMAL}\n{sections}\n[reports.digest]\n{digest}"),
                "leadrelay.toml",
                &env,
            )
            .map_err(|e| e.to_string())
        }

        #[test]
        fn a_digest_reads_its_times_and_zone() {
            let config = load(
                &format!("{SLACK}{EMAIL}"),
                "daily = \"07:30\"\nweekly = \"Mon 08:00\"\ntimezone = \"Europe/Berlin\"\n\
                 slack_channel = \"C0DIGEST\"\nemails = [\"vp@yourco.example\"]\n",
            )
            .expect("valid");
            let digest = config.reports.digest.expect("digest");
            assert_eq!(digest.daily_at, Some(jiff::civil::time(7, 30, 0, 0)));
            assert_eq!(
                digest.weekly_at,
                Some((jiff::civil::Weekday::Monday, jiff::civil::time(8, 0, 0, 0)))
            );
            assert_eq!(digest.tz.iana_name(), Some("Europe/Berlin"));
            assert_eq!(digest.slowest, 3);
            let utc = load(
                SLACK,
                "weekly = \"sunday 18:05\"\nslack_channel = \"C0DIGEST\"\n",
            )
            .expect("valid")
            .reports
            .digest
            .expect("digest");
            assert_eq!(utc.tz, jiff::tz::TimeZone::UTC);
            assert_eq!(utc.daily_at, None);
        }

        #[test]
        fn digest_mistakes_are_named() {
            let cases = [
                (
                    SLACK,
                    "daily = \"8am\"\nslack_channel = \"C0D\"",
                    "reports.digest.daily",
                    "\"8am\" is not a time of day",
                ),
                (
                    SLACK,
                    "daily = \"24:00\"\nslack_channel = \"C0D\"",
                    "reports.digest.daily",
                    "not a time of day",
                ),
                (
                    SLACK,
                    "weekly = \"mo 08:00\"\nslack_channel = \"C0D\"",
                    "reports.digest.weekly",
                    "not a weekday and a time",
                ),
                (
                    SLACK,
                    "slack_channel = \"C0D\"",
                    "reports.digest.daily",
                    "set daily, weekly or both",
                ),
                (
                    SLACK,
                    "daily = \"08:00\"\ntimezone = \"Mars/Olympus\"\nslack_channel = \"C0D\"",
                    "reports.digest.timezone",
                    "not a known IANA time zone",
                ),
                (
                    "",
                    "daily = \"08:00\"\nslack_channel = \"C0D\"",
                    "reports.digest.slack_channel",
                    "needs a [notify.slack] section",
                ),
                (
                    SLACK,
                    "daily = \"08:00\"\nslack_channel = \"#sales\"",
                    "reports.digest.slack_channel",
                    "not a Slack channel id",
                ),
                (
                    SLACK,
                    "daily = \"08:00\"\nemails = [\"vp@yourco.example\"]",
                    "reports.digest.emails",
                    "needs a [notify.email] section",
                ),
                (
                    EMAIL,
                    "daily = \"08:00\"\nemails = [\"not an address\"]",
                    "reports.digest.emails",
                    "is not an e-mail address",
                ),
                (
                    SLACK,
                    "daily = \"08:00\"",
                    "reports.digest.slack_channel",
                    "the digest needs somewhere to go",
                ),
            ];
            for (sections, digest, key, problem) in cases {
                let error = load(sections, digest).expect_err(digest);
                assert!(
                    error.contains(key) && error.contains(problem),
                    "{digest}: {error}"
                );
            }
        }
    }
}

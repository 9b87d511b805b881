//! The checks that run once the text has deserialised. Each section checks itself in its own
//! module; [`Validator::check`] runs them in a fixed order and stops at the first error, which
//! it places at the line of the key it names.

use std::collections::HashSet;
use std::ops::Range;

use super::load::Env;
use super::rules::Known;
use super::{line_of, locate, sources, Config, ConfigError};

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a str,
    pub(super) document: locate::Document<'a>,
}

impl Validator<'_> {
    /// An error at the line of the key it names (or of its deepest written ancestor; `span`
    /// only when none is written).
    pub(super) fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let key = key.into();
        let at = self.document.locate(&key).unwrap_or(span);
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: line_of(self.text, at.start),
            key,
            message: message.into(),
        }
    }

    /// Where a `[section]` header is, for errors about a section serde does not span.
    pub(super) fn section(&self, name: &str) -> Range<usize> {
        let header = format!("[{name}]");
        let start = self
            .text
            .lines()
            .scan(0, |offset, line| {
                let at = *offset;
                *offset += line.len() + 1;
                Some((at, line))
            })
            .find(|(_, line)| line.trim() == header)
            .map(|(at, _)| at)
            .unwrap_or(0);
        start..start
    }

    /// Every section, in the order the errors have always been found in: a configuration with
    /// several mistakes is told about the same one first. Later sections rely on what earlier
    /// ones resolved (secrets, ids, tiers).
    pub(super) fn check(&self, config: &mut Config, env: Env<'_>) -> Result<(), ConfigError> {
        sources::check(self, &mut config.sources, env)?;
        config
            .claim
            .resolve(env)
            .and_then(|()| config.escalation.check())
            .and_then(|()| config.server.check())
            .map_err(|(key, message)| {
                let section = key.split('.').next().unwrap_or_default();
                self.invalid(self.section(section), key, message)
            })?;
        let has_link_key = !config.claim.link_keys.is_empty();
        if let Some(email) = config.notify.email.as_mut() {
            email.resolve(env, has_link_key).map_err(|(key, message)| {
                self.invalid(self.section("notify.email"), key, message)
            })?;
        }
        self.resolve_channels(config, env)?;
        config.notify.check(self, &config.pipeline, env)?;
        self.check_salesforce_ids(config)?;
        let rep_ids = self.check_rep_ids(&config.reps)?;
        let queue_ids = self.check_queue_ids(&config.queues, &rep_ids)?;
        config.routing.check_fallback(self, &queue_ids)?;
        config.validation.check(self, &queue_ids)?;
        config.routing.check_merge_window(self)?;
        config.enrichment.check(self, &rep_ids, env)?;
        config.enrichment.check_crm(self, &config.notify)?;
        sources::check_transcript_hosts(self, &config.sources)?;
        sources::check_conversations(self, &config.sources, &config.enrichment)?;
        let tiers = config.qualification.check(self)?;
        let pool_ids: HashSet<String> = config
            .pools
            .iter()
            .map(|p| p.get_ref().id.clone())
            .collect();
        let known = Known {
            reps: &rep_ids,
            pools: &pool_ids,
            queues: &queue_ids,
        };
        self.check_team(config, &known)?;
        self.check_rules(config, &known, &tiers)?;
        config.pipeline.check(self)?;
        let email = config.notify.email.is_some();
        let slack_app = config.notify.slack.is_some();
        config
            .operations
            .resolve(env, email)
            .map_err(|(key, message)| self.invalid(self.section("operations"), key, message))?;
        config
            .activity
            .check()
            .map_err(|(key, message)| self.invalid(self.section("activity"), key, message))?;
        config
            .reports
            .resolve(env, slack_app, email)
            .map_err(|(key, message)| self.invalid(self.section("reports"), key, message))?;
        if let Some(console) = &config.console {
            console
                .check(
                    |rep| rep_ids.contains(rep),
                    |team| config.team(team).is_some(),
                )
                .map_err(|(key, message)| self.invalid(self.section("console"), key, message))?;
        }
        Ok(())
    }
}

//! The one configuration file: sources and their secrets, validation gates, enrichment data,
//! tiers, reps, queues and routing rules.
//!
//! Loading validates everything up front; every error names the line and the key, so a RevOps
//! engineer editing rules never has to guess. Each section has its own module (its types,
//! defaults and checks); [`Config::load`] in `load` is the only part that reads files or the
//! environment, and this module turns text into a checked [`Config`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod activity;
mod alerts;
mod check;
mod console;
mod email;
mod enrichment;
mod load;
mod locate;
#[cfg(test)]
mod mistakes;
mod notify;
mod operations;
mod phone;
mod pipeline;
pub mod providers;
mod qualification;
mod redact;
mod reports;
mod rules;
mod salesforce;
mod server;
mod sources;
mod team;
mod validation;

pub use activity::ActivityConfig;
pub use alerts::{ClaimConfig, ClaimPolicy, EscalateTo, EscalationConfig, EscalationStep};
pub use console::{ConsoleAccount, ConsoleConfig, Role};
pub use email::{
    language_covers, AcknowledgementTemplate, EmailConfig, RepliesConfig, SmtpCredentials, SmtpTls,
};
pub use enrichment::{CompanyRecord, EnrichmentConfig, StatedFieldsConfig, StatedTrust};
pub use notify::{
    CompanyAssociation, HubspotConfig, NotifyConfig, OwnerPolicy, RateConfig, SlackAppConfig,
    SmsConfig, SmsProvider, WebhookConfig,
};
pub use operations::OperationsConfig;
pub use pipeline::{PipelineConfig, MAX_RETRY_STEP};
pub use providers::{
    CrmLookupConfig, CrmSource, FieldPointers, GeoipConfig, HttpProviderConfig, TranscriptConfig,
};
pub use qualification::{BehaviourConfig, QualificationConfig, SeniorityLevel, TierConfig};
pub use redact::{redacted, SECRET};
pub use reports::{DigestConfig, ReportsConfig, HANDOFF_FIELDS};
pub use rules::{
    Conditions, NamedAccount, RoutingConfig, RuleConfig, TargetConfig, DEFAULT_MERGE_WINDOW_HOURS,
    MAX_MERGE_WINDOW_HOURS,
};
pub use salesforce::{
    is_owner_id as is_salesforce_owner_id, is_queue_id as is_salesforce_queue_id, PrivateKeyPem,
    SalesforceAuth, SalesforceConfig, SalesforceOwnerPolicy,
};
pub use server::ServerConfig;
pub use sources::{
    ConversationApi, ConversationConfig, Preset, SchemeName, SourceConfig, Strength,
    DEFAULT_REPLAY_WINDOW_HOURS,
};
pub use team::{
    AfterHoursPolicy, MemberConfig, PoolConfig, QueueConfig, RepConfig, ResetPeriod, Strategy,
    TeamConfig,
};
pub use validation::{ContactField, GatePolicy, ValidationConfig};

use check::Validator;
use load::Env;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Syntax {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub pipeline: PipelineConfig,
    pub sources: Vec<Spanned<SourceConfig>>,
    #[serde(default)]
    pub validation: ValidationConfig,
    #[serde(default)]
    pub enrichment: EnrichmentConfig,
    #[serde(default)]
    pub qualification: QualificationConfig,
    /// Phrase sets detected in the trigger question and transcript; built-in sets if absent.
    #[serde(default = "crate::topics::default_topics")]
    pub topics: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub teams: Vec<Spanned<TeamConfig>>,
    #[serde(default)]
    pub reps: Vec<Spanned<RepConfig>>,
    #[serde(default)]
    pub pools: Vec<Spanned<PoolConfig>>,
    #[serde(default)]
    pub queues: Vec<Spanned<QueueConfig>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
    pub routing: RoutingConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub claim: ClaimConfig,
    #[serde(default)]
    pub escalation: EscalationConfig,
    /// The embedded HTTP server's timeouts and connection limit.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[operations]`: where the embedded mode tells the operator about dead letters.
    #[serde(default)]
    pub operations: OperationsConfig,
    /// `[activity]`: how touches, meetings and outcomes find their lead.
    #[serde(default)]
    pub activity: ActivityConfig,
    /// `[reports]`: handoff fields the report checks, and the report API's token.
    #[serde(default)]
    pub reports: ReportsConfig,
    /// `[console]`: the web console's accounts; the console is not served without it.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// The text this configuration was read from, shown only with its secrets replaced
    /// ([`Config::shown_text`]).
    #[serde(skip)]
    loaded: redact::Loaded,
}

/// A duration written the friendly way: `"250ms"`, `"5s"`, `"2m"`, `"1h 30m"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl Interval {
    pub const fn from_secs(secs: u64) -> Self {
        Interval(Duration::from_secs(secs))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let text = String::deserialize(deserializer)?;
        let invalid = || {
            D::Error::custom(format!(
                "{text:?} is not a duration such as \"500ms\", \"30s\", \"10m\" or \"2h\""
            ))
        };
        let span: jiff::Span = text.parse().map_err(|_| invalid())?;
        let signed = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(|_| invalid())?;
        Duration::try_from(signed)
            .map(Interval)
            .map_err(|_| D::Error::custom(format!("{text:?} is negative")))
    }
}

/// Reads a file the configuration names, relative to it: the path to name in errors, and the
/// text.
type ReadFile<'a> = &'a dyn Fn(&str) -> Result<(String, String), ConfigError>;

/// The checks [`Config::parse`] leaves out because they need code most functions never run
/// otherwise. Each is a function pointer, so that a binary links a check only where it names
/// one: the Lambda functions name those whose code they link anyway, and the embedded binary
/// ([`Config::load`]) and `leadrelay config check` make them all.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeepChecks {
    /// Each rep's phone number against its country's numbering plan (the phone metadata and a
    /// regular-expression engine); without it, only its E.164 shape.
    pub phones: Option<fn(&str) -> bool>,
    /// Each acknowledgement template rendered in hours and after hours with nothing known of
    /// the prospect (the template engine); without it, only its language tags.
    pub acknowledgements: Option<RendersTemplate>,
}

/// A template checker: `Err` says what is wrong with the template.
pub type RendersTemplate = fn(&str) -> Result<(), String>;

impl DeepChecks {
    pub fn all() -> DeepChecks {
        DeepChecks {
            phones: Some(phone::in_numbering_plan),
            acknowledgements: Some(crate::render::check_acknowledgement_template),
        }
    }

    /// The phone numbers only: for what links the phone metadata to clean prospects' numbers.
    pub fn phones() -> DeepChecks {
        DeepChecks {
            phones: Some(phone::in_numbering_plan),
            ..DeepChecks::default()
        }
    }

    /// The acknowledgement templates only: for what renders them.
    pub fn acknowledgements() -> DeepChecks {
        DeepChecks {
            acknowledgements: Some(crate::render::check_acknowledgement_template),
            ..DeepChecks::default()
        }
    }
}

impl Config {
    /// Parses and validates configuration text; `env` resolves the `*_env` names. Files the
    /// configuration names (`companies_csv`) are read by [`Config::load`] only, which also
    /// parses the Salesforce JWT key; here its PEM is checked without parsing the key
    /// ([`SalesforceConfig::signing_key`] does, where tokens are signed).
    ///
    /// The checks that need code of their own are left out: see [`DeepChecks`].
    pub fn parse(
        text: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, env, DeepChecks::default())
    }

    /// [`Config::parse`] and the [`DeepChecks`] named.
    pub fn parse_with(
        text: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
        checks: DeepChecks,
    ) -> Result<Config, ConfigError> {
        Config::from_text(text, path, Env::new(env), None, checks)
    }

    /// Text to a checked configuration, without I/O of its own: `env` looks up the `*_env`
    /// names, `files`, when given, reads the files the configuration names, and `checks` says
    /// which checks beyond the common ones to make.
    fn from_text(
        text: &str,
        path: &str,
        env: Env<'_>,
        files: Option<ReadFile<'_>>,
        checks: DeepChecks,
    ) -> Result<Config, ConfigError> {
        let table = toml::de::DeTable::parse(text).map_err(|_| syntax_error(text, path))?;
        let document = locate::Document::new(table.clone());
        let mut config = Config::deserialize(toml::de::Deserializer::from(table))
            .map_err(|error| deserialize_error(text, path, &document, &error))?;
        let validator = Validator {
            text,
            path,
            document,
        };
        validator.check(&mut config, env)?;
        if let Some(valid) = checks.phones {
            validator.check_phones(&config, valid)?;
        }
        if let Some(renders) = checks.acknowledgements {
            validator.check_acknowledgements(&config, renders)?;
        }
        config.loaded = redact::Loaded::new(text);
        if let (Some(read), Some(file)) = (files, config.enrichment.companies_csv.as_deref()) {
            let (shown, csv) = read(file)?;
            config.enrichment.imported = config.import_companies(&csv, &shown)?;
        }
        Ok(config)
    }

    pub fn source(&self, id: &str) -> Option<&SourceConfig> {
        self.sources
            .iter()
            .map(Spanned::get_ref)
            .find(|source| source.id == id)
    }

    pub fn rep(&self, id: &str) -> Option<&RepConfig> {
        self.reps
            .iter()
            .map(Spanned::get_ref)
            .find(|rep| rep.id == id)
    }

    pub fn queue(&self, id: &str) -> Option<&QueueConfig> {
        self.queues
            .iter()
            .map(Spanned::get_ref)
            .find(|queue| queue.id == id)
    }

    pub fn team(&self, id: &str) -> Option<&TeamConfig> {
        self.teams
            .iter()
            .map(Spanned::get_ref)
            .find(|team| team.id == id)
    }

    pub fn pool(&self, id: &str) -> Option<&PoolConfig> {
        self.pools
            .iter()
            .map(Spanned::get_ref)
            .find(|pool| pool.id == id)
    }

    pub fn tier(&self, tier: u8) -> Option<&TierConfig> {
        self.qualification.tiers.iter().find(|t| t.tier == tier)
    }
}

/// A deserialisation error, placed by its span: the value, the unknown key, or the table
/// missing a key.
fn deserialize_error(
    text: &str,
    path: &str,
    document: &locate::Document<'_>,
    error: &toml::de::Error,
) -> ConfigError {
    let at = error.span().map_or(0, |span| span.start);
    let mut key = document
        .steps_at(at)
        .map(|steps| document.render(&steps))
        .unwrap_or_default();
    let message = plain_numbers(error.message().trim());
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
    }
    ConfigError::Invalid {
        path: path.to_owned(),
        line: line_of(text, at),
        key: if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        message,
    }
}

/// The first TOML syntax error, at its line, naming the key written there.
fn syntax_error(text: &str, path: &str) -> ConfigError {
    let (document, errors) = locate::Document::recover(text);
    let Some(error) = errors.first() else {
        return ConfigError::Syntax {
            path: path.to_owned(),
            line: 1,
            key: "(top level)".into(),
            message: "not a TOML document".into(),
        };
    };
    let at = error.span().map_or(0, |span| span.start);
    let line = line_of(text, at);
    let on_header = text
        .lines()
        .nth(line - 1)
        .is_some_and(|l| l.trim_start().starts_with('['));
    let steps = document
        .steps_at(at)
        .filter(|_| !on_header)
        .unwrap_or_else(|| locate::steps_on_line(text, line));
    let key = document.render(&steps);
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        key: if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        message: error.message().trim().to_owned(),
    }
}

/// serde names Rust's integer types (`expected u32`); a configuration's reader wants the range.
fn plain_numbers(message: &str) -> String {
    let ranges = [
        ("u8", "0 to 255"),
        ("u16", "0 to 65535"),
        ("u32", "0 to 4294967295"),
        ("u64", "0 to 18446744073709551615"),
        ("i32", "-2147483648 to 2147483647"),
        ("i64", "-9223372036854775808 to 9223372036854775807"),
    ];
    for (name, range) in ranges {
        if let Some(start) = message.strip_suffix(&format!("expected {name}")) {
            return format!("{start}expected a whole number from {range}");
        }
    }
    message.to_owned()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|before| before.matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;

    pub(crate) const MINIMAL: &str = r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]

[[reps]]
id = "alice"
name = "Alice"

[[queues]]
id = "inbox"
name = "Sales inbox"
manager = "alice"

[[rules]]
name = "UK"
when.countries = ["GB"]
assign.rep = "alice"

[routing]
fallback_queue = "inbox"
"#;

    pub(super) fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "leadrelay.toml", &no_env)
    }

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.source("website").map(|s| s.keys.len()), Some(1));
        assert_eq!(config.pipeline.max_receives, 15);
        assert_eq!(config.pipeline.attempts(), 11);
        assert_eq!(config.tier(1).map(|t| t.sla_minutes), Some(5));
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let text = MINIMAL.replace("name = \"Alice\"", "name = Alice");
        let error = parse(&text).expect_err("bad toml").to_string();
        assert!(error.starts_with("leadrelay.toml:9:"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let text = MINIMAL.replace("name = \"Alice\"", "name = \"Alice\"\nslack = \"x\"");
        let error = parse(&text).expect_err("unknown key").to_string();
        assert!(error.contains("unknown field `slack`"), "{error}");
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
        let text = std::fs::read_to_string(&path).expect("config/leadrelay.toml exists");
        parse(&text).expect("the example config validates");
    }
}

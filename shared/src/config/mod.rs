//! The one configuration file: sources and their secrets, validation gates, enrichment data,
//! tiers, reps, queues and routing rules.
//!
//! Loading validates everything up front; every error names the line and the key, so a RevOps
//! engineer editing rules never has to guess.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;

use crate::model::EventKind;
use crate::signature::{Scheme, SigningKey};

mod alerts;
mod email;
mod locate;
#[cfg(test)]
mod mistakes;
mod operations;
pub mod providers;
mod server;
mod team;

pub use alerts::{ClaimConfig, EscalateTo, EscalationConfig, EscalationStep};
pub use email::{EmailConfig, SmtpCredentials, SmtpTls};
pub use operations::OperationsConfig;
pub use providers::{FieldPointers, GeoipConfig, HttpProviderConfig, TranscriptConfig};
pub use server::ServerConfig;
pub use team::{
    AfterHoursPolicy, Conditions, MemberConfig, NamedAccount, PoolConfig, ResetPeriod,
    RoutingConfig, RuleConfig, Strategy, TargetConfig, TeamConfig, DEFAULT_MERGE_WINDOW_HOURS,
    MAX_MERGE_WINDOW_HOURS,
};

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

/// What a validation gate does with a lead that fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePolicy {
    /// Answer 400 and store nothing.
    Refuse,
    /// Accept, flag, and route to `review_queue` instead of by the rules.
    Review,
    /// Accept, flag, and qualify into the lowest tier; routed by the rules.
    Nurture,
    /// Accept, and flag the lead so the alert and routing can see it.
    Flag,
    /// Skip the check.
    Allow,
}

impl GatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            GatePolicy::Refuse => "refuse",
            GatePolicy::Review => "review",
            GatePolicy::Nurture => "nurture",
            GatePolicy::Flag => "flag",
            GatePolicy::Allow => "allow",
        }
    }
}

/// A contact field `[validation] required_fields` may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactField {
    Name,
    Phone,
    Company,
    JobTitle,
}

impl ContactField {
    /// The capture field it names, as the chatbot posts it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactField::Name => "name",
            ContactField::Phone => "phone",
            ContactField::Company => "company",
            ContactField::JobTitle => "job_title",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    StandardWebhooks,
    BodyHmac,
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

/// The longest wait one retry step may ask for: SQS holds a received message invisible for at
/// most 12 hours (ChangeMessageVisibility).
pub const MAX_RETRY_STEP: Duration = Duration::from_secs(12 * 3600);

/// Queue semantics shared by every stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The queue's own limit: a message received this many times goes to its stage's
    /// dead-letter queue, whatever the stage did. At least one more than the retry schedule's
    /// steps, so that the schedule runs out first (the spare receives absorb crashes and
    /// throttled invocations).
    pub max_receives: u32,
    /// How long a received message stays invisible to other consumers.
    pub visibility_timeout_secs: u64,
    /// The wait before each retry of a failed message: the first step after the first
    /// failure, and so on. When the steps run out, the stage moves the message to its
    /// dead-letter queue (and logs it at error level). Each step is at most 12 hours.
    pub retry_schedule: Vec<Interval>,
    /// The old single delay, replaced by `retry_schedule`: refused at load, naming the new key.
    #[serde(rename = "retry_delay_ms")]
    pub(crate) legacy_retry_delay_ms: Option<u64>,
    /// Messages a stage worker takes per receive.
    pub batch_size: u32,
    /// Past this many messages waiting in the stage queues, ingest answers 429 with
    /// `Retry-After` instead of letting the capture-to-alert delay grow (0: never). Only
    /// adapters that can measure their backlog cheaply (the embedded store) apply it.
    pub max_backlog: u64,
}

/// Seconds, then minutes, then hours (as Svix and Stripe retry webhooks): about 23 h 42 min
/// in all, long enough for a real outage of Slack or a CRM.
const DEFAULT_RETRY_SCHEDULE: [u64; 10] =
    [5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800];

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_receives: 15,
            visibility_timeout_secs: 30,
            retry_schedule: DEFAULT_RETRY_SCHEDULE
                .into_iter()
                .map(Interval::from_secs)
                .collect(),
            legacy_retry_delay_ms: None,
            batch_size: 10,
            max_backlog: 5_000,
        }
    }
}

impl PipelineConfig {
    /// How many times a failing message is tried: once, then once per schedule step.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.retry_schedule.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait after the `receive_count`-th receive failed; `None` once the schedule is
    /// spent (the message then goes to the dead-letter queue).
    pub fn retry_delay(&self, receive_count: u32) -> Option<Duration> {
        let step = usize::try_from(receive_count.max(1) - 1).ok()?;
        self.retry_schedule.get(step).map(|interval| interval.0)
    }

    /// The whole schedule's length: how long a failing message is retried before it is
    /// dead-lettered (plus the time its attempts take).
    pub fn retry_span(&self) -> Duration {
        self.retry_schedule.iter().map(|i| i.0).sum()
    }
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
    /// The exact host names this source's `conversation_transcript_url` may point at (see
    /// [`crate::enrichment::transcript`]); none by default, so no URL is fetched.
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// RFC 2606 / 6761 names such as example.com or *.test.
    pub reserved_domains: GatePolicy,
    pub disposable_domains: GatePolicy,
    /// Obvious junk such as test@test.com.
    pub junk_addresses: GatePolicy,
    /// Disposable-mailbox domains beyond the maintained list that is always checked.
    pub disposable_domain_list: Vec<String>,
    pub junk_address_list: Vec<String>,
    /// Addresses of a role or a group (info@, sales@, noreply@, ...) rather than a person.
    pub role_addresses: GatePolicy,
    /// Local parts beyond the maintained list ([`crate::lists`]) that count as roles.
    pub role_address_list: Vec<String>,
    /// Local parts on the maintained list that this team treats as people (`ceo`, say).
    pub role_address_exempt: Vec<String>,
    /// Competitors' domains (`competitor_domain_list`; subdomains count).
    pub competitor_domains: GatePolicy,
    pub competitor_domain_list: Vec<String>,
    /// Our own company's domains (`own_domain_list`; subdomains count): colleagues testing
    /// the chatbot, not prospects.
    pub own_domains: GatePolicy,
    pub own_domain_list: Vec<String>,
    /// E-mail domains with a label that mixes scripts (a Cyrillic `а` among Latin letters):
    /// look-alikes of a real company's domain.
    pub mixed_script_domains: GatePolicy,
    /// Captures without one of `required_fields`.
    pub missing_fields: GatePolicy,
    pub required_fields: Vec<ContactField>,
    /// Where `review` sends a lead instead of to a rep; must be a configured queue, and is
    /// required once any gate is set to `review`.
    pub review_queue: Option<Spanned<String>>,
}

impl ValidationConfig {
    /// Each gate's key and policy, for the checks that apply to every gate.
    pub fn policies(&self) -> [(&'static str, GatePolicy); 8] {
        [
            ("reserved_domains", self.reserved_domains),
            ("disposable_domains", self.disposable_domains),
            ("junk_addresses", self.junk_addresses),
            ("role_addresses", self.role_addresses),
            ("competitor_domains", self.competitor_domains),
            ("own_domains", self.own_domains),
            ("mixed_script_domains", self.mixed_script_domains),
            ("missing_fields", self.missing_fields),
        ]
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            reserved_domains: GatePolicy::Flag,
            disposable_domains: GatePolicy::Refuse,
            junk_addresses: GatePolicy::Refuse,
            disposable_domain_list: Vec::new(),
            junk_address_list: ["test@test.com", "asdf@asdf.com", "foo@bar.com"]
                .map(String::from)
                .to_vec(),
            // No default sends anything to review: that needs a review queue, which a
            // configuration without one would then fail to load for.
            role_addresses: GatePolicy::Flag,
            role_address_list: Vec::new(),
            role_address_exempt: Vec::new(),
            competitor_domains: GatePolicy::Flag,
            competitor_domain_list: Vec::new(),
            own_domains: GatePolicy::Refuse,
            own_domain_list: Vec::new(),
            mixed_script_domains: GatePolicy::Flag,
            missing_fields: GatePolicy::Flag,
            required_fields: Vec::new(),
            review_queue: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    /// Free-mail domains beyond the maintained list that is always checked
    /// ([`crate::lists`]); a listed domain covers its subdomains.
    pub free_mail_domains: Vec<String>,
    pub companies: Vec<Spanned<CompanyRecord>>,
    /// The CRM export RevOps keeps (`domain,company,employees,industry,country,account_owner`),
    /// relative to the configuration file; read by [`Config::load`].
    pub companies_csv: Option<String>,
    /// The rows of `companies_csv`, validated.
    #[serde(skip)]
    pub imported: Vec<CompanyRecord>,
    /// The providers that do I/O, in the order they are tried after the local table (see
    /// [`crate::enrichment`]). Each name must be configured below.
    pub providers: Vec<Spanned<String>>,
    /// The most one provider may take for one lead, unless its own section says otherwise.
    pub provider_budget_ms: u64,
    /// `[enrichment.geoip]`: the visitor's country from their IP address.
    pub geoip: Option<Spanned<GeoipConfig>>,
    /// `[enrichment.transcript]`: the conversation fetched from `conversation_transcript_url`.
    pub transcript: Option<Spanned<TranscriptConfig>>,
    /// `[[enrichment.http]]`: firmographics APIs looked up by company domain.
    pub http: Vec<Spanned<HttpProviderConfig>>,
}

impl EnrichmentConfig {
    /// The provider names `providers` may list: every provider section configured.
    pub fn configured_providers(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.geoip.is_some() {
            names.push(providers::GEOIP.to_owned());
        }
        if self.transcript.is_some() {
            names.push(providers::TRANSCRIPT.to_owned());
        }
        names.extend(self.http.iter().map(|h| h.get_ref().name.clone()));
        names
    }

    /// The `[[enrichment.http]]` section called `name`.
    pub fn http_provider(&self, name: &str) -> Option<&HttpProviderConfig> {
        self.http
            .iter()
            .map(Spanned::get_ref)
            .find(|h| h.name == name)
    }

    /// Every known company: the inline table, then the imported CSV.
    pub fn all_companies(&self) -> impl Iterator<Item = &CompanyRecord> {
        self.companies
            .iter()
            .map(|c| c.get_ref())
            .chain(self.imported.iter())
    }
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig {
            free_mail_domains: Vec::new(),
            companies: Vec::new(),
            companies_csv: None,
            imported: Vec::new(),
            providers: Vec::new(),
            provider_budget_ms: 500,
            geoip: None,
            transcript: None,
            http: Vec::new(),
        }
    }
}

/// One row of the firmographics table RevOps keeps (a CRM export).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyRecord {
    pub domain: String,
    pub name: String,
    #[serde(default)]
    pub employees: Option<u32>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub account_owner: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualificationConfig {
    pub tiers: Vec<TierConfig>,
    /// The tier each event kind starts from.
    pub event_tiers: BTreeMap<EventKind, u8>,
    /// Pages (globs over `metadata.source_url`) that make a full capture a tier-1 hand-raiser.
    pub hand_raiser_pages: Vec<String>,
    /// Points for each concept of `[topics]` found in what the prospect said, once per concept.
    pub topic_points: i32,
    /// Seniority read from the job title, the first level (in this order) whose titles match.
    pub seniority: Vec<SeniorityLevel>,
    /// Visitor behaviour the chatbot sends in `metadata`: score points only, never the tier.
    pub behaviour: BehaviourConfig,
}

/// Behaviour signals read from the chatbot's free-form `metadata` (top-level keys). Each signal
/// takes the first of its keys holding a usable value (a wrong type is ignored) and scores its
/// points once the figure reaches its minimum; 0 points turns a signal off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// A page count, or an array of the pages visited (its length counts).
    pub pages_visited_keys: Vec<String>,
    pub pages_visited_min: u64,
    pub pages_visited_points: i32,
    /// Seconds spent on the pricing page.
    pub time_on_pricing_keys: Vec<String>,
    pub time_on_pricing_min_secs: u64,
    pub time_on_pricing_points: i32,
    /// `true`, or a visit count (this visit included) of at least `return_visit_min_visits`.
    pub return_visit_keys: Vec<String>,
    pub return_visit_min_visits: u64,
    pub return_visit_points: i32,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        let keys = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        BehaviourConfig {
            pages_visited_keys: keys(&["pages_visited", "page_views"]),
            pages_visited_min: 5,
            pages_visited_points: 10,
            time_on_pricing_keys: keys(&["time_on_pricing_secs", "pricing_time_secs"]),
            time_on_pricing_min_secs: 60,
            time_on_pricing_points: 10,
            return_visit_keys: keys(&["returning_visitor", "return_visit", "visit_count"]),
            return_visit_min_visits: 2,
            return_visit_points: 10,
        }
    }
}

/// One seniority level: its points and the title words that place someone there (matched on
/// word boundaries, case- and plural-insensitive: "VP" matches "VP of Sales", not "MVP").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeniorityLevel {
    pub level: String,
    pub points: i32,
    pub titles: Vec<String>,
}

fn default_seniority() -> Vec<SeniorityLevel> {
    let level = |level: &str, points: i32, titles: &[&str]| SeniorityLevel {
        level: level.to_owned(),
        points,
        titles: titles.iter().map(|t| (*t).to_owned()).collect(),
    };
    vec![
        // Juniors first, so that "Intern in the CEO's office" is an intern.
        level(
            "junior",
            -10,
            &["intern", "student", "trainee", "apprentice"],
        ),
        level(
            "executive",
            15,
            &[
                "ceo",
                "cto",
                "cfo",
                "coo",
                "cio",
                "ciso",
                "cmo",
                "cro",
                "chief",
                "founder",
                "co-founder",
                "owner",
                "president",
                "vp",
                "vice president",
                "svp",
                "evp",
                "head of",
                "director",
                "partner",
            ],
        ),
        level("manager", 8, &["manager", "lead", "principal"]),
    ]
}

impl Default for QualificationConfig {
    fn default() -> Self {
        QualificationConfig {
            tiers: vec![
                TierConfig {
                    tier: 1,
                    label: "hand-raiser".into(),
                    sla_minutes: 5,
                    enrichment_budget_ms: None,
                },
                TierConfig {
                    tier: 2,
                    label: "high intent".into(),
                    sla_minutes: 15,
                    enrichment_budget_ms: None,
                },
                TierConfig {
                    tier: 3,
                    label: "nurture".into(),
                    sla_minutes: 24 * 60,
                    enrichment_budget_ms: None,
                },
            ],
            event_tiers: BTreeMap::from([
                (EventKind::LeadCaptureFallback, 1),
                (EventKind::LeadCapture, 2),
                (EventKind::LeadCapturePartial, 3),
            ]),
            hand_raiser_pages: vec!["/pricing*".into(), "/demo*".into(), "/trial*".into()],
            topic_points: 10,
            seniority: default_seniority(),
            behaviour: BehaviourConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub tier: u8,
    pub label: String,
    pub sla_minutes: u32,
    /// The most enrichment providers may take, in all, for a lead of this tier.
    #[serde(default)]
    pub enrichment_budget_ms: Option<u64>,
}

impl TierConfig {
    /// The tier's enrichment budget: as configured, else 800 ms for tier 1, 2 s for tier 2 and
    /// 5 s below, so that the hottest leads wait least.
    pub fn enrichment_budget(&self) -> std::time::Duration {
        let default = match self.tier {
            0 | 1 => 800,
            2 => 2_000,
            _ => 5_000,
        };
        std::time::Duration::from_millis(self.enrichment_budget_ms.unwrap_or(default))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Alert the rep (and, as a queue manager, their queues' leads) by e-mail at `email`;
    /// needs `[notify.email]`.
    #[serde(default)]
    pub alert_email: bool,
    #[serde(default)]
    pub slack_webhook_url: Option<SecretString>,
    /// An environment variable (on AWS: an SSM SecureString) holding the Slack webhook URL.
    #[serde(default)]
    pub slack_webhook_url_env: Option<String>,
    /// The rep's Slack member id (`U0123ABCD`): who they are when they press Claim.
    #[serde(default)]
    pub slack_user_id: Option<String>,
    /// A Teams Workflows ("Post to a channel when a webhook request is received") URL.
    #[serde(default)]
    pub teams_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub teams_webhook_url_env: Option<String>,
    /// The rep's mobile number in E.164 (`+447700900123`), for tier-1 SMS alerts.
    #[serde(default)]
    pub phone: Option<String>,
    /// The rep's HubSpot owner id, set on the contact when `[notify.hubspot]` is configured.
    #[serde(default)]
    pub hubspot_owner_id: Option<String>,
    /// The team whose hours, holidays, after-hours policy and queue apply.
    #[serde(default)]
    pub team: Option<String>,
    /// The rep's own IANA time zone; defaults to the team's.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The rep's own working hours (`["mon-thu 08:00-16:00"]`); default to the team's.
    #[serde(default)]
    pub hours: Option<Vec<String>>,
    /// Most open leads the rep holds at once; skipped by routing at the cap.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Who takes the rep's leads while they cannot.
    #[serde(default)]
    pub backup: Option<String>,
    /// Dates away, each `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD` (inclusive, rep's time zone).
    #[serde(default)]
    pub out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub id: String,
    pub name: String,
    /// The rep alerted when a lead lands in this queue.
    #[serde(default)]
    pub manager: Option<Spanned<String>>,
    #[serde(default)]
    pub slack_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub slack_webhook_url_env: Option<String>,
    #[serde(default)]
    pub teams_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub teams_webhook_url_env: Option<String>,
}

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
    /// `[notify.hubspot]`: create or update the contact with its owner.
    pub hubspot: Option<HubspotConfig>,
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

/// `[notify.hubspot]`: a private app's token, with the `crm.objects.contacts.write` scope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubspotConfig {
    pub token_env: String,
    #[serde(default = "default_hubspot_url")]
    pub base_url: String,
    #[serde(skip)]
    pub token: Option<SecretString>,
}

fn default_hubspot_url() -> String {
    "https://api.hubapi.com".into()
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })?;
        if let Some(file) = config.enrichment.companies_csv.clone() {
            let csv_path = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&csv_path).map_err(|source| ConfigError::Read {
                path: csv_path.display().to_string(),
                source,
            })?;
            config.enrichment.imported =
                config.import_companies(&text, &csv_path.display().to_string())?;
        }
        // Opened when the providers are built, so that a bad file fails the start naming it.
        if let Some(geoip) = config.enrichment.geoip.as_mut() {
            let geoip = geoip.get_mut();
            geoip.resolved = Some(
                path.parent()
                    .unwrap_or(Path::new("."))
                    .join(&geoip.database),
            );
        }
        Ok(config)
    }

    /// Reads the firmographics CSV (a header row, then one company per row; empty cells are
    /// unknown). Every error names the file, the line and the column.
    pub fn import_companies(
        &self,
        text: &str,
        path: &str,
    ) -> Result<Vec<CompanyRecord>, ConfigError> {
        #[derive(Deserialize)]
        struct Row {
            domain: String,
            company: String,
            employees: Option<u32>,
            industry: Option<String>,
            country: Option<String>,
            account_owner: Option<String>,
        }
        let invalid = |line: u64, key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: usize::try_from(line).unwrap_or(usize::MAX),
            key: key.to_owned(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|error| invalid(1, "header", error.to_string()))?
            .clone();
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|error| {
                let line = error.position().map(|p| p.line()).unwrap_or(1);
                invalid(line, "companies_csv", error.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(1);
            let row: Row = record.deserialize(Some(&headers)).map_err(|error| {
                match error.kind() {
                    // Named by its column header, as RevOps sees it in their spreadsheet.
                    csv::ErrorKind::Deserialize { err, .. } => {
                        let column = err
                            .field()
                            .and_then(|i| headers.get(usize::try_from(i).ok()?))
                            .unwrap_or("companies_csv");
                        invalid(line, column, err.kind().to_string())
                    }
                    _ => invalid(line, "companies_csv", error.to_string()),
                }
            })?;
            if row.domain.is_empty() || !row.domain.contains('.') {
                return Err(invalid(
                    line,
                    "domain",
                    format!("{:?} is not a domain", row.domain),
                ));
            }
            if let Some(country) = row.country.as_deref().filter(|c| !team::is_country_code(c)) {
                return Err(invalid(
                    line,
                    "country",
                    format!("{country:?} is not an ISO 3166-1 alpha-2 country code"),
                ));
            }
            if let Some(owner) = row
                .account_owner
                .as_deref()
                .filter(|o| self.rep(o).is_none())
            {
                return Err(invalid(
                    line,
                    "account_owner",
                    format!("unknown rep {owner:?}"),
                ));
            }
            records.push(CompanyRecord {
                domain: row.domain,
                name: row.company,
                employees: row.employees,
                industry: row.industry,
                country: row.country,
                account_owner: row.account_owner,
            });
        }
        Ok(records)
    }

    /// Parses and validates configuration text; `env` resolves `secrets_env` names.
    pub fn parse(
        text: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let table = toml::de::DeTable::parse(text).map_err(|_| syntax_error(text, path))?;
        let document = locate::Document::new(table.clone());
        let mut config =
            Config::deserialize(toml::de::Deserializer::from(table)).map_err(|error| {
                // Placed by its span: the value, the unknown key, or the table missing a key.
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
            })?;
        Validator {
            text,
            path,
            document,
        }
        .check(&mut config, env)?;
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

struct Validator<'a> {
    text: &'a str,
    path: &'a str,
    document: locate::Document<'a>,
}

impl Validator<'_> {
    /// An error at the line of the key it names (or of its deepest written ancestor; `span`
    /// only when none is written).
    fn invalid(
        &self,
        span: std::ops::Range<usize>,
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
    fn section(&self, name: &str) -> std::ops::Range<usize> {
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

    /// An inline URL, or the one the named variable holds.
    fn resolve_url(
        &self,
        inline: Option<SecretString>,
        variable: Option<&str>,
        span: std::ops::Range<usize>,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SecretString>, ConfigError> {
        match (inline, variable) {
            (Some(_), Some(_)) => {
                let inline = key.strip_suffix("_env").unwrap_or(key);
                let inline = inline.rsplit('.').next().unwrap_or(inline);
                Err(self.invalid(span, key, format!("set {inline} or {inline}_env, not both")))
            }
            (inline, None) => Ok(inline),
            (None, Some(name)) => env(name)
                .map(|url| Some(SecretString::from(url)))
                .ok_or_else(|| {
                    self.invalid(span, key, format!("environment variable {name} is not set"))
                }),
        }
    }

    fn check(
        &self,
        config: &mut Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if config.sources.is_empty() {
            return Err(self.invalid(0..0, "sources", "at least one [[sources]] is required"));
        }
        let mut seen = HashSet::new();
        for (index, source) in config.sources.iter_mut().enumerate() {
            let span = source.span();
            let key = format!("sources[{index}]");
            let source = source.get_mut();
            if !seen.insert(source.id.clone()) {
                return Err(self.invalid(
                    span,
                    format!("{key}.id"),
                    format!("duplicate source id {:?}", source.id),
                ));
            }
            if source.id.is_empty()
                || !source
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(self.invalid(
                    span,
                    format!("{key}.id"),
                    "must be letters, digits, - or _ (it is part of the webhook URL)",
                ));
            }
            // Each secret with the key that names it: its place in `secrets`, or the variable.
            let mut secrets: Vec<(String, String)> = source
                .secrets
                .iter()
                .enumerate()
                .map(|(n, s)| (format!("{key}.secrets[{n}]"), s.expose_secret().to_owned()))
                .collect();
            if let Some(name) = &source.secrets_env {
                let value = env(name).ok_or_else(|| {
                    self.invalid(
                        span.clone(),
                        format!("{key}.secrets_env"),
                        format!("environment variable {name} is not set"),
                    )
                })?;
                secrets.extend(
                    value
                        .split([',', ' ', '\n'])
                        .filter(|s| !s.is_empty())
                        .map(|s| (format!("{key}.secrets_env"), s.to_owned())),
                );
            }
            if secrets.is_empty() {
                return Err(self.invalid(
                    span,
                    format!("{key}.secrets"),
                    "no secret configured: set secrets or secrets_env",
                ));
            }
            let mut keys = Vec::with_capacity(secrets.len());
            for (n, (secret_key, secret)) in secrets.iter().enumerate() {
                let parsed = match source.scheme {
                    SchemeName::StandardWebhooks => SigningKey::standard(secret),
                    SchemeName::BodyHmac => SigningKey::plain(secret),
                };
                // The error names the position of the secret, never its value.
                keys.push(parsed.map_err(|e| {
                    self.invalid(
                        span.clone(),
                        secret_key.clone(),
                        format!("secret {} of this source: {e}", n + 1),
                    )
                })?);
            }
            source.keys = keys;
            match (source.scheme, source.replay_window_hours) {
                (SchemeName::StandardWebhooks, Some(_)) => {
                    return Err(self.invalid(
                        span,
                        format!("{key}.replay_window_hours"),
                        "applies to body_hmac sources only: standard_webhooks signs a timestamp \
                         (tolerance_secs) and the event id, which already stop replays",
                    ));
                }
                (SchemeName::BodyHmac, Some(0)) => {
                    return Err(self.invalid(
                        span,
                        format!("{key}.replay_window_hours"),
                        "must be at least 1: a body-only signature has nothing else that stops \
                         a replay",
                    ));
                }
                _ => {}
            }
        }

        config
            .claim
            .resolve(env)
            .and_then(|()| config.escalation.check())
            .and_then(|()| config.server.check())
            .map_err(|(key, message)| {
                let section = key.split('.').next().unwrap_or_default();
                self.invalid(self.section(section), key, message)
            })?;
        if let Some(email) = config.notify.email.as_mut() {
            email.resolve(env).map_err(|(key, message)| {
                self.invalid(self.section("notify.email"), key, message)
            })?;
        }
        for (index, rep) in config.reps.iter().enumerate() {
            let r = rep.get_ref();
            if !r.alert_email {
                continue;
            }
            let key = format!("reps[{index}].alert_email");
            if config.notify.email.is_none() {
                return Err(self.invalid(rep.span(), key, "needs a [notify.email] section"));
            }
            let valid = r
                .email
                .as_deref()
                .is_some_and(|e| crate::email::Mailbox::new(None, e).is_ok());
            if !valid {
                return Err(self.invalid(rep.span(), key, "needs a valid `email` for the rep"));
            }
        }
        for (index, rep) in config.reps.iter_mut().enumerate() {
            let span = rep.span();
            let rep = rep.get_mut();
            rep.slack_webhook_url = self.resolve_url(
                rep.slack_webhook_url.take(),
                rep.slack_webhook_url_env.as_deref(),
                span.clone(),
                &format!("reps[{index}].slack_webhook_url_env"),
                env,
            )?;
            rep.teams_webhook_url = self.resolve_url(
                rep.teams_webhook_url.take(),
                rep.teams_webhook_url_env.as_deref(),
                span.clone(),
                &format!("reps[{index}].teams_webhook_url_env"),
                env,
            )?;
            check_url(rep.teams_webhook_url.as_ref()).map_err(|m| {
                self.invalid(span.clone(), format!("reps[{index}].teams_webhook_url"), m)
            })?;
            if let Some(phone) = &rep.phone {
                if !is_e164(phone) {
                    return Err(self.invalid(
                        span,
                        format!("reps[{index}].phone"),
                        format!("{phone:?} is not a valid E.164 number such as +447700900123"),
                    ));
                }
            }
        }
        for (index, queue) in config.queues.iter_mut().enumerate() {
            let span = queue.span();
            let queue = queue.get_mut();
            queue.slack_webhook_url = self.resolve_url(
                queue.slack_webhook_url.take(),
                queue.slack_webhook_url_env.as_deref(),
                span.clone(),
                &format!("queues[{index}].slack_webhook_url_env"),
                env,
            )?;
            queue.teams_webhook_url = self.resolve_url(
                queue.teams_webhook_url.take(),
                queue.teams_webhook_url_env.as_deref(),
                span.clone(),
                &format!("queues[{index}].teams_webhook_url_env"),
                env,
            )?;
            check_url(queue.teams_webhook_url.as_ref())
                .map_err(|m| self.invalid(span, format!("queues[{index}].teams_webhook_url"), m))?;
        }
        config
            .notify
            .resolve(env)
            .map_err(|(key, message)| self.invalid(self.section("notify"), key, message))?;
        // A channel's delivery receipt is leased for the visibility timeout: a delivery that
        // could outlast it might be started again by another worker.
        let longest = config
            .notify
            .delivery_budget_ms
            .saturating_add(config.notify.http_timeout_ms);
        if longest >= config.pipeline.visibility_timeout_secs.saturating_mul(1000) {
            // Named by whichever of the two is written (the budget when both are).
            let key = ["notify.delivery_budget_ms", "notify.http_timeout_ms"]
                .into_iter()
                .find(|key| self.document.is_written(key))
                .unwrap_or("notify.delivery_budget_ms");
            return Err(self.invalid(
                self.section("notify"),
                key,
                format!(
                    "delivery_budget_ms + http_timeout_ms ({longest} ms) must stay below \
                     pipeline.visibility_timeout_secs ({} s)",
                    config.pipeline.visibility_timeout_secs
                ),
            ));
        }
        let mut rep_ids = HashSet::new();
        for (index, rep) in config.reps.iter().enumerate() {
            if !rep_ids.insert(rep.get_ref().id.clone()) {
                return Err(self.invalid(
                    rep.span(),
                    format!("reps[{index}].id"),
                    format!("duplicate rep id {:?}", rep.get_ref().id),
                ));
            }
            check_url(rep.get_ref().slack_webhook_url.as_ref()).map_err(|m| {
                self.invalid(rep.span(), format!("reps[{index}].slack_webhook_url"), m)
            })?;
        }
        let mut queue_ids = HashSet::new();
        for (index, queue) in config.queues.iter().enumerate() {
            let q = queue.get_ref();
            if !queue_ids.insert(q.id.clone()) {
                return Err(self.invalid(
                    queue.span(),
                    format!("queues[{index}].id"),
                    format!("duplicate queue id {:?}", q.id),
                ));
            }
            if let Some(manager) = &q.manager {
                if !rep_ids.contains(manager.get_ref()) {
                    return Err(self.invalid(
                        manager.span(),
                        format!("queues[{index}].manager"),
                        format!("unknown rep {:?}", manager.get_ref()),
                    ));
                }
            }
            check_url(q.slack_webhook_url.as_ref()).map_err(|m| {
                self.invalid(
                    queue.span(),
                    format!("queues[{index}].slack_webhook_url"),
                    m,
                )
            })?;
        }
        let fallback = &config.routing.fallback_queue;
        if !queue_ids.contains(fallback.get_ref()) {
            return Err(self.invalid(
                fallback.span(),
                "routing.fallback_queue",
                format!("unknown queue {:?}", fallback.get_ref()),
            ));
        }
        self.check_validation(&mut config.validation, &queue_ids)?;
        if let Some(hours) = &config.routing.merge_window_hours {
            if *hours.get_ref() > team::MAX_MERGE_WINDOW_HOURS {
                return Err(self.invalid(
                    hours.span(),
                    "routing.merge_window_hours",
                    format!(
                        "{} hours is longer than the contact index is kept ({} hours); 0 turns \
                         merging off",
                        hours.get_ref(),
                        team::MAX_MERGE_WINDOW_HOURS
                    ),
                ));
            }
        }
        for (index, company) in config.enrichment.companies.iter().enumerate() {
            if let Some(owner) = &company.get_ref().account_owner {
                if !rep_ids.contains(owner) {
                    return Err(self.invalid(
                        company.span(),
                        format!("enrichment.companies[{index}].account_owner"),
                        format!("unknown rep {owner:?}"),
                    ));
                }
            }
        }
        self.check_http_providers(config, env)?;
        let known = config.enrichment.configured_providers();
        let mut listed = HashSet::new();
        for (index, name) in config.enrichment.providers.iter().enumerate() {
            let key = format!("enrichment.providers[{index}]");
            if !known.contains(name.get_ref()) {
                let message = if known.is_empty() {
                    format!(
                        "unknown provider {:?}: no provider is configured",
                        name.get_ref()
                    )
                } else {
                    format!(
                        "unknown provider {:?}; configured: {}",
                        name.get_ref(),
                        known.join(", ")
                    )
                };
                return Err(self.invalid(name.span(), key, message));
            }
            if !listed.insert(name.get_ref().as_str()) {
                return Err(self.invalid(name.span(), key, "listed twice"));
            }
        }
        if config.enrichment.provider_budget_ms == 0 {
            return Err(self.invalid(0..0, "enrichment.provider_budget_ms", "must be above 0"));
        }
        if let Some(geoip) = &config.enrichment.geoip {
            if geoip.get_ref().database.trim().is_empty() {
                return Err(self.invalid(
                    geoip.span(),
                    "enrichment.geoip.database",
                    "must name a .mmdb file",
                ));
            }
            if geoip.get_ref().budget_ms == Some(0) {
                return Err(self.invalid(
                    geoip.span(),
                    "enrichment.geoip.budget_ms",
                    "must be above 0 (leave it out for provider_budget_ms)",
                ));
            }
        }
        if let Some(transcript) = &config.enrichment.transcript {
            if transcript.get_ref().budget_ms == Some(0) {
                return Err(self.invalid(
                    transcript.span(),
                    "enrichment.transcript.budget_ms",
                    "must be above 0 (leave it out for provider_budget_ms)",
                ));
            }
            if transcript.get_ref().max_bytes == 0 {
                return Err(self.invalid(
                    transcript.span(),
                    "enrichment.transcript.max_bytes",
                    "must be above 0",
                ));
            }
        }
        for (index, source) in config.sources.iter().enumerate() {
            for (n, host) in source.get_ref().transcript_hosts.iter().enumerate() {
                check_host(host).map_err(|message| {
                    self.invalid(
                        source.span(),
                        format!("sources[{index}].transcript_hosts[{n}]"),
                        format!("{host:?}: {message}"),
                    )
                })?;
            }
        }

        let tiers: HashSet<u8> = config.qualification.tiers.iter().map(|t| t.tier).collect();
        if tiers.is_empty() {
            return Err(self.invalid(0..0, "qualification.tiers", "at least one tier is required"));
        }
        for (index, tier) in config.qualification.tiers.iter().enumerate() {
            let key = format!("qualification.tiers[{index}]");
            if tier.enrichment_budget_ms == Some(0) {
                return Err(self.invalid(
                    0..0,
                    format!("{key}.enrichment_budget_ms"),
                    format!(
                        "tier {}: must be above 0 (leave it out for the default)",
                        tier.tier
                    ),
                ));
            }
            if tier.sla_minutes == 0 {
                return Err(self.invalid(
                    0..0,
                    format!("{key}.sla_minutes"),
                    format!("tier {}: must be above 0", tier.tier),
                ));
            }
        }
        for (event, tier) in &config.qualification.event_tiers {
            if !tiers.contains(tier) {
                return Err(self.invalid(
                    0..0,
                    format!("qualification.event_tiers.{event}"),
                    format!("tier {tier} is not defined"),
                ));
            }
        }
        for (index, pattern) in config.qualification.hand_raiser_pages.iter().enumerate() {
            glob::Pattern::new(pattern).map_err(|e| {
                self.invalid(
                    0..0,
                    format!("qualification.hand_raiser_pages[{index}]"),
                    format!("{pattern:?}: {e}"),
                )
            })?;
        }

        let behaviour = &config.qualification.behaviour;
        for (key, value, least) in [
            ("pages_visited_min", behaviour.pages_visited_min, 1),
            (
                "time_on_pricing_min_secs",
                behaviour.time_on_pricing_min_secs,
                1,
            ),
            // One visit is this one: a return needs two.
            (
                "return_visit_min_visits",
                behaviour.return_visit_min_visits,
                2,
            ),
        ] {
            if value < least {
                return Err(self.invalid(
                    0..0,
                    format!("qualification.behaviour.{key}"),
                    format!("must be at least {least}"),
                ));
            }
        }
        for (key, keys) in [
            ("pages_visited_keys", &behaviour.pages_visited_keys),
            ("time_on_pricing_keys", &behaviour.time_on_pricing_keys),
            ("return_visit_keys", &behaviour.return_visit_keys),
        ] {
            if keys.iter().any(|k| k.trim().is_empty()) {
                return Err(self.invalid(
                    0..0,
                    format!("qualification.behaviour.{key}"),
                    "a key must not be empty",
                ));
            }
        }

        self.check_team(config, &rep_ids, &queue_ids, &tiers)?;
        for (key, value) in [
            ("max_receives", config.pipeline.max_receives),
            ("batch_size", config.pipeline.batch_size),
        ] {
            if value == 0 {
                return Err(self.invalid(0..0, format!("pipeline.{key}"), "must be above 0"));
            }
        }
        self.check_retries(&config.pipeline)?;
        let email = config.notify.email.is_some();
        config
            .operations
            .resolve(env, email)
            .map_err(|(key, message)| self.invalid(self.section("operations"), key, message))?;
        Ok(())
    }

    /// The retry schedule: present, each step within SQS's 12 hours, and spent before the
    /// queue's own receive limit dead-letters the message.
    fn check_retries(&self, pipeline: &PipelineConfig) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, message: String| self.invalid(self.section("pipeline"), key, message);
        if pipeline.legacy_retry_delay_ms.is_some() {
            return Err(invalid(
                "pipeline.retry_delay_ms",
                "replaced by retry_schedule, the wait before each retry, e.g. \
                 retry_schedule = [\"5s\", \"30s\", \"2m\", \"10m\", \"30m\", \"1h\"] \
                 (see docs/architecture.md)"
                    .into(),
            ));
        }
        if pipeline.retry_schedule.is_empty() {
            return Err(invalid(
                "pipeline.retry_schedule",
                "needs at least one wait, e.g. [\"5s\", \"30s\", \"2m\"]".into(),
            ));
        }
        if let Some(n) = pipeline
            .retry_schedule
            .iter()
            .position(|step| step.0 > MAX_RETRY_STEP)
        {
            return Err(invalid(
                &format!("pipeline.retry_schedule[{n}]"),
                "must be at most 12h (the longest an SQS message can stay hidden)".into(),
            ));
        }
        let attempts = pipeline.attempts();
        if pipeline.max_receives < attempts {
            return Err(invalid(
                "pipeline.max_receives",
                format!(
                    "must be at least {attempts}: the first attempt plus one per \
                     retry_schedule step, or the queue dead-letters a message before its \
                     schedule ends"
                ),
            ));
        }
        Ok(())
    }
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

impl Validator<'_> {
    /// The review queue exists and is set when a gate needs it; the lists are lower-cased and
    /// trimmed once here, so that the gates compare exactly on the hot path.
    fn check_validation(
        &self,
        validation: &mut ValidationConfig,
        queue_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        match &validation.review_queue {
            Some(queue) if !queue_ids.contains(queue.get_ref()) => {
                return Err(self.invalid(
                    queue.span(),
                    "validation.review_queue",
                    format!("unknown queue {:?}", queue.get_ref()),
                ));
            }
            Some(_) => {}
            None => {
                if let Some((gate, _)) = validation
                    .policies()
                    .into_iter()
                    .find(|(_, policy)| *policy == GatePolicy::Review)
                {
                    return Err(self.invalid(
                        0..0,
                        format!("validation.{gate}"),
                        "\"review\" needs validation.review_queue, the queue such leads go to",
                    ));
                }
            }
        }
        let domain_lists = [
            (
                "disposable_domain_list",
                &mut validation.disposable_domain_list,
            ),
            (
                "competitor_domain_list",
                &mut validation.competitor_domain_list,
            ),
            ("own_domain_list", &mut validation.own_domain_list),
        ];
        for (key, list) in domain_lists {
            for (index, entry) in list.iter_mut().enumerate() {
                // In the form the gates compare e-mail domains in (IDNA to ASCII, lower case).
                match crate::cleaning::normalise_host(entry) {
                    Some(host) if host.contains('.') => *entry = host,
                    _ => {
                        return Err(self.invalid(
                            0..0,
                            format!("validation.{key}[{index}]"),
                            format!("{:?} is not a domain", entry.trim()),
                        ))
                    }
                }
            }
        }
        // Entries in the form the gates compare addresses in (crate::cleaning).
        for entry in validation.junk_address_list.iter_mut() {
            let trimmed = entry.trim();
            *entry = match trimmed.rsplit_once('@') {
                Some((local, domain)) => format!(
                    "{}@{}",
                    crate::cleaning::normalise_local_part(local),
                    crate::cleaning::normalise_host(domain)
                        .unwrap_or_else(|| domain.to_lowercase())
                ),
                None => trimmed.to_lowercase(),
            };
        }
        for list in [
            &mut validation.role_address_list,
            &mut validation.role_address_exempt,
        ] {
            for entry in list.iter_mut() {
                *entry = crate::cleaning::normalise_local_part(entry.trim());
            }
        }
        Ok(())
    }
}

impl Validator<'_> {
    /// `[[enrichment.http]]`: each section valid, names unique, API keys resolved (errors name
    /// the variable, never its value).
    fn check_http_providers(
        &self,
        config: &mut Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (index, section) in config.enrichment.http.iter_mut().enumerate() {
            let span = section.span();
            let key = format!("enrichment.http[{index}]");
            let section = section.get_mut();
            section.problems().map_err(|(field, message)| {
                self.invalid(span.clone(), format!("{key}.{field}"), message)
            })?;
            if !names.insert(section.name.clone()) {
                return Err(self.invalid(
                    span,
                    format!("{key}.name"),
                    format!("duplicate provider name {:?}", section.name),
                ));
            }
            if let Some(variable) = &section.api_key_env {
                let value = env(variable)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        self.invalid(
                            span.clone(),
                            format!("{key}.api_key_env"),
                            format!("environment variable {variable} is not set"),
                        )
                    })?;
                section.api_key = Some(SecretString::from(value.trim().to_owned()));
            }
        }
        Ok(())
    }
}

/// A number written in E.164 (`+` and the digits) that `phonenumber` finds valid.
fn is_e164(phone: &str) -> bool {
    phone.starts_with('+')
        && phone[1..].chars().all(|c| c.is_ascii_digit())
        && phonenumber::parse(None, phone).is_ok_and(|n| phonenumber::is_valid(&n))
}

impl NotifyConfig {
    /// Checks the channel settings and resolves their secrets; the error names the key, never
    /// a secret.
    fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), (String, String)> {
        let variable = |key: &str, name: &str| {
            env(name).map(SecretString::from).ok_or_else(|| {
                (
                    key.to_owned(),
                    format!("environment variable {name} is not set"),
                )
            })
        };
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
            if sms.provider == SmsProvider::Http {
                let missing = |key: &str| {
                    (
                        format!("notify.sms.{key}"),
                        "the HTTP provider needs url, token_env and from".to_owned(),
                    )
                };
                let url = sms.url.clone().ok_or_else(|| missing("url"))?;
                check_url(Some(&SecretString::from(url)))
                    .map_err(|m| ("notify.sms.url".to_owned(), m))?;
                let name = sms.token_env.clone().ok_or_else(|| missing("token_env"))?;
                sms.token = Some(variable("notify.sms.token_env", &name)?);
                sms.from.as_ref().ok_or_else(|| missing("from"))?;
            }
        }
        if let Some(hubspot) = &mut self.hubspot {
            check_url(Some(&SecretString::from(hubspot.base_url.clone())))
                .map_err(|m| ("notify.hubspot.base_url".to_owned(), m))?;
            hubspot.token = Some(variable("notify.hubspot.token_env", &hubspot.token_env)?);
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
            check_url(Some(&hook.url)).map_err(|m| (format!("{key}.url"), m))?;
            let (secret_key, secret) = match (&hook.secret, &hook.secret_env) {
                (Some(_), Some(_)) => {
                    return Err((
                        format!("{key}.secret_env"),
                        "set secret or secret_env, not both".into(),
                    ))
                }
                (Some(secret), None) => (format!("{key}.secret"), secret.clone()),
                (None, Some(name)) => {
                    let named = format!("{key}.secret_env");
                    let secret = variable(&named, name)?;
                    (named, secret)
                }
                (None, None) => {
                    return Err((
                        format!("{key}.secret"),
                        "no secret: set secret or secret_env (whsec_...)".into(),
                    ))
                }
            };
            hook.key = Some(
                SigningKey::standard(secret.expose_secret())
                    .map_err(|e| (secret_key, e.to_string()))?,
            );
        }
        Ok(())
    }
}

fn check_url(url: Option<&SecretString>) -> Result<(), String> {
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
    use super::*;

    const MINIMAL: &str = r#"
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

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "leadrelay.toml", &no_env)
    }

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
        ] {
            let error = parse(&notify(section)).expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
            assert!(!error.contains("plain-secret"), "{error}");
        }
    }

    #[test]
    fn the_firmographics_csv_is_imported_and_each_bad_cell_names_its_line() {
        let config = parse(MINIMAL).expect("valid");
        let csv = "domain,company,employees,industry,country,account_owner\n\
                   acme.co.uk, Acme UK ,250,Manufacturing,gb,alice\n\
                   \n\
                   \"initech.com\",\"Initech, Inc.\",,,,\n";
        let rows = config
            .import_companies(csv, "companies.csv")
            .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "Acme UK");
        assert_eq!(rows[0].employees, Some(250));
        assert_eq!(rows[0].account_owner.as_deref(), Some("alice"));
        assert_eq!(rows[1].name, "Initech, Inc.");
        assert_eq!(
            (rows[1].employees, rows[1].country.as_deref()),
            (None, None)
        );

        let header = "domain,company,employees,industry,country,account_owner\n";
        let refused = |body: &str| {
            config
                .import_companies(&format!("{header}ok.com,Ok,,,,\n{body}"), "companies.csv")
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused("bad.com,Bad,lots,,,\n"),
            "companies.csv:3: employees: invalid digit found in string"
        );
        assert_eq!(
            refused("uk.com,UK Ltd,,,UK,\n"),
            "companies.csv:3: country: \"UK\" is not an ISO 3166-1 alpha-2 country code"
        );
        assert_eq!(
            refused("bob.com,Bob,,,,bob\n"),
            "companies.csv:3: account_owner: unknown rep \"bob\""
        );
        assert!(refused("nodomain,X,,,,\n").contains("companies.csv:3: domain"));
    }

    #[test]
    fn the_example_csv_imports_against_the_shipped_team() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let config = Config::load(&root.join("leadrelay.toml")).expect("shipped config");
        let text = std::fs::read_to_string(root.join("companies.example.csv")).expect("csv");
        let rows = config
            .import_companies(&text, "companies.example.csv")
            .expect("valid example");
        assert!(rows
            .iter()
            .any(|r| r.account_owner.as_deref() == Some("erin")));
    }

    #[test]
    fn load_reads_the_csv_beside_the_config_and_enrichment_uses_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = MINIMAL.replace(
            "[routing]",
            "[enrichment]\ncompanies_csv = \"crm/companies.csv\"\n\n[routing]",
        );
        std::fs::write(dir.path().join("leadrelay.toml"), toml).expect("write");
        std::fs::create_dir(dir.path().join("crm")).expect("mkdir");
        std::fs::write(
            dir.path().join("crm/companies.csv"),
            "domain,company,employees,industry,country,account_owner\nacme.co.uk,Acme UK,250,,GB,alice\n",
        )
        .expect("write");
        let config = Config::load(&dir.path().join("leadrelay.toml")).expect("loads");
        let rulebook = crate::rulebook::Rulebook::new(&config);
        let lead: crate::model::Lead = serde_json::from_value(serde_json::json!({
            "id": "l", "source": "website", "event_id": "e", "trace_id": "t", "state": "captured",
            "capture": {"event": "lead_capture", "captured_email": "jo@sales.acme.co.uk"},
            "incomplete": false, "flags": [], "timeline": {}
        }))
        .expect("lead");
        let enrichment = rulebook.enrich(&lead);
        assert_eq!(enrichment.company.as_deref(), Some("Acme UK"));
        assert_eq!(enrichment.account_owner.as_deref(), Some("alice"));

        std::fs::remove_file(dir.path().join("crm/companies.csv")).expect("rm");
        let error = Config::load(&dir.path().join("leadrelay.toml")).expect_err("missing csv");
        assert!(error.to_string().contains("companies.csv"), "{error}");
    }

    const HTTP_PROVIDER: &str = r#"
[[enrichment.http]]
name = "clearbit"
url = "https://company.example/v2/companies/find?domain={domain}"
api_key_env = "CLEARBIT_KEY"
budget_ms = 300
"#;

    fn with_provider(section: &str) -> String {
        MINIMAL.replace(
            "[[reps]]",
            "[enrichment]\nproviders = [\"clearbit\"]\n\n[[reps]]",
        ) + section
    }

    #[test]
    fn an_http_provider_is_configured_with_defaults_and_its_key_from_the_environment() {
        let env = |name: &str| (name == "CLEARBIT_KEY").then(|| "sk_test_123".to_owned());
        let config = Config::parse(&with_provider(HTTP_PROVIDER), "x.toml", &env).expect("valid");
        assert_eq!(config.enrichment.configured_providers(), vec!["clearbit"]);
        let http = config
            .enrichment
            .http_provider("clearbit")
            .expect("section");
        assert_eq!(http.budget_ms, Some(300));
        assert_eq!((http.retries, http.cache_ttl_hours), (1, 24));
        assert_eq!((http.breaker_failures, http.breaker_cooldown_secs), (5, 30));
        assert_eq!(http.fields.company.as_deref(), Some("/name"));
        assert_eq!(http.fields.country.as_deref(), Some("/geo/countryCode"));
        assert_eq!(
            http.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            Some("sk_test_123".into())
        );
        assert!(!format!("{http:?}").contains("sk_test_123"));
    }

    #[test]
    fn an_http_provider_error_names_the_line_and_key_never_the_secret() {
        let text = with_provider(HTTP_PROVIDER);
        let error = parse(&text).expect_err("unset key").to_string();
        assert!(error.starts_with("leadrelay.toml:30:"), "{error}");
        assert!(
            error.contains(
                "enrichment.http[0].api_key_env: environment variable CLEARBIT_KEY is not set"
            ),
            "{error}"
        );

        let text = with_provider(&HTTP_PROVIDER.replace("?domain={domain}", ""));
        let env = |_: &str| Some("sk_test_123".to_owned());
        let error = Config::parse(&text, "x.toml", &env)
            .expect_err("no {domain}")
            .to_string();
        assert!(
            error.contains("enrichment.http[0].url: must contain {domain}"),
            "{error}"
        );
        assert!(!error.contains("sk_test_123"));

        let text = with_provider(&format!(
            "{HTTP_PROVIDER}[enrichment.http.fields]\ncountry = \"geo.countryCode\"\n"
        ));
        let error = Config::parse(&text, "x.toml", &env)
            .expect_err("bad pointer")
            .to_string();
        assert!(
            error.contains("enrichment.http[0].fields.country"),
            "{error}"
        );

        let listed_twice = with_provider(&format!("{HTTP_PROVIDER}{HTTP_PROVIDER}"));
        let error = Config::parse(&listed_twice, "x.toml", &env)
            .expect_err("twice")
            .to_string();
        assert!(
            error.contains("duplicate provider name \"clearbit\""),
            "{error}"
        );
    }

    #[test]
    fn a_listed_provider_must_be_configured() {
        let error = parse(&with_provider(""))
            .expect_err("not configured")
            .to_string();
        assert!(
            error.contains("unknown provider \"clearbit\": no provider is configured"),
            "{error}"
        );
    }

    #[test]
    fn the_geoip_database_is_found_beside_the_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = MINIMAL.replace(
            "[routing]",
            "[enrichment]\nproviders = [\"geoip\"]\n\n[enrichment.geoip]\n\
             database = \"geo/country.mmdb\"\nbudget_ms = 20\n\n[routing]",
        );
        std::fs::write(dir.path().join("leadrelay.toml"), toml).expect("write");
        let config = Config::load(&dir.path().join("leadrelay.toml")).expect("loads");
        let geoip = config.enrichment.geoip.as_ref().expect("configured");
        assert_eq!(geoip.get_ref().path(), dir.path().join("geo/country.mmdb"));
        assert_eq!(config.enrichment.configured_providers(), ["geoip"]);
        // The file itself is opened (and named when missing) by `leadrelay-geoip`.
    }

    #[test]
    fn provider_sections_are_validated() {
        let with = |section: &str| {
            parse(&MINIMAL.replace("[routing]", &format!("{section}\n\n[routing]")))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let error =
            with("[enrichment.geoip]\ndatabase = \"x.mmdb\"\nbudget_ms = 0").expect_err("0");
        assert!(
            error.contains("enrichment.geoip.budget_ms: must be above 0"),
            "{error}"
        );
        let error = with("[enrichment.transcript]\nmax_bytes = 0").expect_err("0");
        assert!(
            error.contains("enrichment.transcript.max_bytes: must be above 0"),
            "{error}"
        );
        let error = with("[enrichment]\nproviders = [\"transcript\"]").expect_err("unconfigured");
        assert!(error.contains("no provider is configured"), "{error}");
        with("[enrichment]\nproviders = [\"transcript\"]\n\n[enrichment.transcript]")
            .expect("an empty section takes the defaults");
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
    fn the_retry_schedule_spans_an_outage_and_is_spent_before_the_queue_limit() {
        let config = parse(MINIMAL).expect("valid");
        let pipeline = &config.pipeline;
        // Seconds, then minutes, then hours: close to a day in all.
        assert_eq!(pipeline.retry_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(pipeline.retry_delay(2), Some(Duration::from_secs(30)));
        assert_eq!(
            pipeline.retry_delay(10),
            Some(Duration::from_secs(8 * 3600))
        );
        assert_eq!(pipeline.retry_delay(11), None);
        let span = pipeline.retry_span();
        assert!(span > Duration::from_secs(23 * 3600) && span <= Duration::from_secs(24 * 3600));

        let with = |pipeline: &str| parse(&format!("[pipeline]\n{pipeline}\n{MINIMAL}"));
        let custom =
            with("retry_schedule = [\"250ms\", \"2m\", \"1h 30m\", \"12h\"]\nmax_receives = 5")
                .expect("friendly durations");
        assert_eq!(
            custom.pipeline.retry_schedule,
            [
                Interval(Duration::from_millis(250)),
                Interval(Duration::from_secs(120)),
                Interval(Duration::from_secs(5400)),
                Interval(Duration::from_secs(43_200)),
            ]
        );
        let error = |text: &str| with(text).expect_err(text).to_string();
        let message = error("retry_schedule = [\"5s\", \"30s\"]\nmax_receives = 2");
        assert!(
            message.contains("pipeline.max_receives: must be at least 3"),
            "{message}"
        );
        let message = error("retry_schedule = [\"5s\", \"13h\"]");
        assert!(
            message.contains("pipeline.retry_schedule[1]: must be at most 12h"),
            "{message}"
        );
        let message = error("retry_schedule = [\"soon\"]");
        assert!(message.contains("\"soon\" is not a duration"), "{message}");
        let message = error("retry_schedule = []");
        assert!(message.contains("needs at least one wait"), "{message}");
        // A configuration written for the old single delay says what replaced it.
        let message = error("retry_delay_ms = 200");
        assert!(
            message.contains("pipeline.retry_delay_ms: replaced by retry_schedule"),
            "{message}"
        );
    }

    #[test]
    fn the_operations_alert_resolves_its_webhook_and_needs_mail_for_email() {
        let with = |section: &str, env: &dyn Fn(&str) -> Option<String>| {
            Config::parse(
                &format!("{MINIMAL}\n[operations]\n{section}"),
                "leadrelay.toml",
                env,
            )
        };
        let env = |name: &str| (name == "OPS_HOOK").then(|| "https://hooks.slack.com/x".to_owned());
        let config = with(
            "slack_webhook_url_env = \"OPS_HOOK\"\nremind_every = \"2h\"",
            &env,
        )
        .expect("valid");
        let ops = &config.operations;
        assert!(ops.has_destination());
        assert_eq!(
            ops.slack_webhook_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned()),
            Some("https://hooks.slack.com/x".into())
        );
        assert_eq!(ops.remind_every, Interval::from_secs(7200));
        assert_eq!(ops.check_every, Interval::from_secs(60));
        assert!(!parse(MINIMAL).expect("valid").operations.has_destination());

        let error = |section: &str| with(section, &no_env).expect_err(section).to_string();
        let message = error("slack_webhook_url_env = \"NOPE\"");
        assert!(
            message
                .contains("operations.slack_webhook_url_env: environment variable NOPE is not set"),
            "{message}"
        );
        let message = error("email = \"oncall@yourco.example\"");
        assert!(
            message.contains("operations.email: needs a [notify.email] section"),
            "{message}"
        );
        let message = error("email = \"not an address\"");
        assert!(message.contains("operations.email"), "{message}");
    }

    #[test]
    fn an_unknown_rep_in_a_rule_names_the_line_and_key() {
        let text = MINIMAL.replace("assign.rep = \"alice\"", "assign.rep = \"bob\"");
        let error = parse(&text).expect_err("unknown rep").to_string();
        assert!(error.starts_with("leadrelay.toml:19:"), "{error}");
        assert!(
            error.contains("rules[0] (\"UK\").assign.rep: unknown rep \"bob\""),
            "{error}"
        );
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

    #[test]
    fn the_fallback_queue_must_exist() {
        let text = MINIMAL.replace("fallback_queue = \"inbox\"", "fallback_queue = \"nowhere\"");
        let error = parse(&text).expect_err("unknown queue").to_string();
        assert!(
            error.contains("routing.fallback_queue: unknown queue \"nowhere\""),
            "{error}"
        );
    }

    #[test]
    fn the_merge_window_defaults_to_a_day_and_is_bounded() {
        let day = jiff::SignedDuration::from_hours(24);
        assert_eq!(
            parse(MINIMAL).expect("valid").routing.merge_window(),
            Some(day)
        );
        let with = |hours: &str| {
            MINIMAL.replace(
                "fallback_queue = \"inbox\"",
                &format!("fallback_queue = \"inbox\"\nmerge_window_hours = {hours}"),
            )
        };
        assert_eq!(
            parse(&with("0")).expect("valid").routing.merge_window(),
            None
        );
        assert_eq!(
            parse(&with("2")).expect("valid").routing.merge_window(),
            Some(jiff::SignedDuration::from_hours(2))
        );
        let error = parse(&with("721")).expect_err("too long").to_string();
        assert!(error.contains("routing.merge_window_hours"), "{error}");
        parse(&with("-1")).expect_err("negative");
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

    #[test]
    fn the_server_section_has_safe_defaults_and_refuses_zero() {
        let server = parse(MINIMAL).expect("valid").server;
        assert_eq!(server.header_read_timeout_secs, 10);
        assert_eq!(server.request_timeout_secs, 30);
        assert_eq!(server.max_connections, 10_000);
        let with = |line: &str| format!("{MINIMAL}\n[server]\n{line}\n");
        let server = parse(&with("header_read_timeout_secs = 2\nmax_connections = 50"))
            .expect("valid")
            .server;
        assert_eq!(
            (server.header_read_timeout_secs, server.max_connections),
            (2, 50)
        );
        for key in [
            "header_read_timeout_secs",
            "request_timeout_secs",
            "max_connections",
        ] {
            let error = parse(&with(&format!("{key} = 0")))
                .expect_err(key)
                .to_string();
            assert!(error.contains(&format!("server.{key}")), "{error}");
        }
        let error = parse(&with("idle_secs = 5"))
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("idle_secs"), "{error}");
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
        let text = std::fs::read_to_string(&path).expect("config/leadrelay.toml exists");
        parse(&text).expect("the example config validates");
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
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            });
            uncommented.push(setting.unwrap_or(line));
        }
        let env = |name: &str| match name {
            "SMS_API_TOKEN" | "HUBSPOT_TOKEN" => Some("token".to_owned()),
            "LEADRELAY_SMTP_USERNAME" | "LEADRELAY_SMTP_PASSWORD" => Some("smtp".to_owned()),
            "N8N_WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
            "LEADRELAY_OPS_SLACK_WEBHOOK" => Some("https://hooks.slack.com/services/T/B/X".into()),
            _ => None,
        };
        let config = Config::parse(&uncommented.join("\n"), "leadrelay.toml", &env)
            .expect("the uncommented examples validate");
        let operations = &config.operations;
        assert!(operations.slack_webhook_url.is_some() && operations.email.is_some());
        assert_eq!(operations.remind_every, Interval::from_secs(4 * 3600));
        let notify = &config.notify;
        assert!(notify.sms.is_some() && notify.hubspot.is_some() && notify.crm_url.is_some());
        assert_eq!(notify.webhooks.len(), 1);
        assert_eq!(notify.max_attempts, 4);
        assert_eq!(notify.rates.slack, 1);
    }

    #[test]
    fn the_commented_provider_examples_in_the_shipped_config_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml");
        let text = std::fs::read_to_string(&path).expect("config/leadrelay.toml exists");
        // The [enrichment] block from the provider order to the HTTP provider's last pointer,
        // and the lines of the geoip and transcript sections and the source's allowed hosts.
        let keys = [
            "transcript_hosts =",
            "[enrichment.geoip]",
            "database =",
            "budget_ms =",
            "[enrichment.transcript]",
            "max_bytes =",
        ];
        let mut inside = false;
        let mut uncommented = Vec::new();
        for line in text.lines() {
            if line.starts_with("# providers = [") {
                inside = true;
            }
            let rest = line.strip_prefix('#').map(str::trim_start);
            let keep = match rest {
                Some(rest) if inside => rest,
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
                _ => line,
            };
            uncommented.push(keep);
            if line.starts_with("# country = ") {
                inside = false;
            }
        }
        let env = |name: &str| (name == "CLEARBIT_API_KEY").then(|| "key".to_owned());
        let config = Config::parse(&uncommented.join("\n"), "leadrelay.toml", &env)
            .expect("the uncommented examples validate");
        assert_eq!(
            config.enrichment.configured_providers(),
            ["geoip", "transcript", "clearbit"]
        );
        assert_eq!(config.enrichment.providers.len(), 3);
        assert_eq!(
            config.source("website").map(|s| s.transcript_hosts.clone()),
            Some(vec!["transcripts.chatbot.example".to_owned()])
        );
        assert_eq!(
            config.enrichment.companies.len(),
            parse(&text).map_or(0, |c| c.enrichment.companies.len())
        );
    }
}

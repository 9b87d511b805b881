//! The enrichment providers' sections: `[[enrichment.http]]`, `[enrichment.geoip]` and
//! `[enrichment.transcript]`. The providers themselves do I/O and live in adapter crates
//! (`leadrelay-providers`, `leadrelay-geoip`); their settings and checks are here, with the
//! rest of the configuration.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// The name `[enrichment] providers` lists for the GeoIP provider.
pub const GEOIP: &str = "geoip";
/// The name `[enrichment] providers` lists for the transcript fetcher.
pub const TRANSCRIPT: &str = "transcript";
/// The name `[enrichment] providers` lists for the CRM owner lookup.
pub const CRM: &str = "crm";

/// `[enrichment.crm] source`: the CRM the prospect is looked up in, with the credentials its
/// write-back section already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmSource {
    /// `[notify.hubspot]`'s private app token: the contact by e-mail, then the company by
    /// domain (CRM search API); owners matched to the reps' `hubspot_owner_id`.
    Hubspot,
    /// `[notify.salesforce]`'s connected app: the Contact (its Account's owner), then an
    /// unconverted Lead by e-mail, then the Account by website domain (SOQL); owners matched to
    /// the reps' `salesforce_user_id`.
    Salesforce,
}

impl CrmSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmSource::Hubspot => "hubspot",
            CrmSource::Salesforce => "salesforce",
        }
    }
}

/// `[enrichment.crm]`: the existing owner of the prospect's contact or company, looked up in
/// the CRM within the lead's enrichment budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmLookupConfig {
    pub source: CrmSource,
    /// The most the lookup (every query of it) may take per lead; `[enrichment]
    /// provider_budget_ms` if unset.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// How long the CRM's answer to one question (the contact with this e-mail address, the
    /// company with this domain; "none" too) is kept in the lead store; `"0s"` turns caching
    /// off. Owners change: keep it short.
    #[serde(default = "default_crm_cache_ttl")]
    pub cache_ttl: super::Interval,
    /// Whether the company (account) is looked up by the e-mail's domain when the contact
    /// gives no owner.
    #[serde(default = "yes")]
    pub company: bool,
    /// Consecutive failed lookups that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call.
    #[serde(default = "default_breaker_cooldown_secs")]
    pub breaker_cooldown_secs: u64,
}

fn default_crm_cache_ttl() -> super::Interval {
    super::Interval::from_secs(600)
}

fn yes() -> bool {
    true
}

/// One `[[enrichment.http]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProviderConfig {
    /// The name `[enrichment] providers` lists and the lead's report shows.
    pub name: String,
    /// The lookup URL; `{domain}` is replaced by the company domain, percent-encoded.
    pub url: String,
    /// An environment variable (on AWS: an SSM SecureString) holding the bearer token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Resolved at load from `api_key_env`.
    #[serde(skip)]
    pub api_key: Option<SecretString>,
    /// The most this provider may take per lead; `[enrichment] provider_budget_ms` if unset.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// Attempts after the first, while the budget lasts.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long an answer (or a 404) is kept per domain; 0 turns caching off.
    #[serde(default = "default_cache_ttl_hours")]
    pub cache_ttl_hours: u64,
    /// Consecutive failed lookups that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call.
    #[serde(default = "default_breaker_cooldown_secs")]
    pub breaker_cooldown_secs: u64,
    #[serde(default)]
    pub fields: FieldPointers,
}

fn default_retries() -> u32 {
    1
}
fn default_cache_ttl_hours() -> u64 {
    24
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_secs() -> u64 {
    30
}

/// Where each of our fields sits in the answer, as JSON pointers (RFC 6901). The defaults
/// read Clearbit's company shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldPointers {
    pub company: Option<String>,
    pub employees: Option<String>,
    pub industry: Option<String>,
    pub country: Option<String>,
    /// A rep id the API keeps for the account (off unless configured).
    pub account_owner: Option<String>,
}

impl Default for FieldPointers {
    fn default() -> Self {
        FieldPointers {
            company: Some("/name".into()),
            employees: Some("/metrics/employees".into()),
            industry: Some("/category/industry".into()),
            country: Some("/geo/countryCode".into()),
            account_owner: None,
        }
    }
}

impl FieldPointers {
    pub fn all(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("company", self.company.as_deref()),
            ("employees", self.employees.as_deref()),
            ("industry", self.industry.as_deref()),
            ("country", self.country.as_deref()),
            ("account_owner", self.account_owner.as_deref()),
        ]
    }
}

impl HttpProviderConfig {
    /// What is wrong with the section, as (key under the section, message). Never looks at
    /// the API key's value.
    pub fn problems(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_owned(), message));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("name", "must be letters, digits, - or _".into());
        }
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return bad("url", "must be an http(s) URL".into());
        }
        if !self.url.contains("{domain}") {
            return bad("url", "must contain {domain}".into());
        }
        // The lead's domain may only fill the path or query: in the host it would let a
        // prospect choose where the request, API key and all, goes.
        const MARK: &str = "leadrelay-domain.example";
        match url::Url::parse(&self.url.replace("{domain}", MARK)) {
            Err(e) => return bad("url", format!("not a valid URL: {e}")),
            Ok(url)
                if url.host_str().is_some_and(|h| h.contains(MARK))
                    || url.username().contains(MARK)
                    || url.password().is_some_and(|p| p.contains(MARK)) =>
            {
                return bad(
                    "url",
                    "{domain} must be in the path or query, not the host".into(),
                );
            }
            Ok(_) => {}
        }
        if self.budget_ms == Some(0) {
            return bad(
                "budget_ms",
                "must be above 0 (leave it out for the default)".into(),
            );
        }
        if self.breaker_failures == 0 {
            return bad("breaker_failures", "must be above 0".into());
        }
        for (field, pointer) in self.fields.all() {
            if let Some(pointer) = pointer {
                if !pointer.starts_with('/') {
                    return bad(
                        &format!("fields.{field}"),
                        format!("{pointer:?} is not a JSON pointer (it starts with /)"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// `[enrichment.geoip]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// The `.mmdb` file, relative to the configuration file.
    pub database: String,
    /// The most one lookup may take; `[enrichment] provider_budget_ms` if absent.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// `database` resolved against the configuration file's directory by
    /// [`super::Config::load`]; `database` as written when parsed from text.
    #[serde(skip)]
    pub resolved: Option<PathBuf>,
}

impl GeoipConfig {
    /// The file the reader opens.
    pub fn path(&self) -> PathBuf {
        self.resolved
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.database))
    }
}

/// `[enrichment.transcript]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptConfig {
    /// The most one fetch may take; `[enrichment] provider_budget_ms` if absent.
    pub budget_ms: Option<u64>,
    /// The largest body read; a larger one is refused.
    pub max_bytes: u64,
}

impl Default for TranscriptConfig {
    fn default() -> Self {
        TranscriptConfig {
            budget_ms: None,
            max_bytes: 256 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_names_the_key_at_fault() {
        let section = |extra: &str| -> HttpProviderConfig {
            toml::from_str(&format!(
                "name = \"clearbit\"\nurl = \"https://company.example/v2/find?domain={{domain}}\"\n{extra}"
            ))
            .expect("parses")
        };
        assert!(section("").problems().is_ok());
        let no_domain: HttpProviderConfig =
            toml::from_str("name = \"x\"\nurl = \"https://a.example/find\"").expect("parses");
        assert_eq!(no_domain.problems().err().map(|p| p.0), Some("url".into()));
        for in_host in [
            "https://{domain}/find",
            "https://api.{domain}/find",
            "https://{domain}@company.example/find",
        ] {
            let templated: HttpProviderConfig =
                toml::from_str(&format!("name = \"x\"\nurl = \"{in_host}\"")).expect("parses");
            let problem = templated.problems().expect_err(in_host);
            assert_eq!(problem.0, "url");
            assert!(problem.1.contains("not the host"), "{}", problem.1);
        }
        assert_eq!(
            section("budget_ms = 0").problems().err().map(|p| p.0),
            Some("budget_ms".into())
        );
        assert_eq!(
            section("[fields]\ncompany = \"name\"")
                .problems()
                .err()
                .map(|p| p.0),
            Some("fields.company".into())
        );
    }
}

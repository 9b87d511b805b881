//! The CRM as a routing source: the prospect's existing owner, looked up in HubSpot or
//! Salesforce within the lead's enrichment budget and mapped to a rep, so the
//! `account_owner` rules work without a CSV export.
//!
//! The questions, in order; the first whose record has an owner that is a rep answers:
//!
//! - HubSpot (`POST /crm/v3/objects/{contacts,companies}/search`): the contact whose `email`
//!   is the prospect's, then the oldest company whose `domain` is the e-mail's company domain.
//!   Owners are `hubspot_owner_id`, matched to the reps' `hubspot_owner_id`.
//! - Salesforce (SOQL, `GET /services/data/vXX.X/query`): the Contact with the e-mail address
//!   (its Account's owner, else its own), then an unconverted Lead with it, then the oldest
//!   Account whose `Website` has the company domain as its host (or a parent of it). Owners are
//!   user ids matched to the reps' `salesforce_user_id` (15- or 18-character, either way); a
//!   queue owner (`00G…`) is no rep.
//!
//! A record whose owner is no rep's is reported (in the note and the log) and the next
//! question is asked: an owner is never guessed. Each answer ("none" too) is cached per
//! question in the lead store for `cache_ttl`. A failed query fails the lookup (routing goes on
//! as if the CRM had no answer); the circuit breaker stops asking a CRM that keeps failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use leadrelay_crm::{hubspot, salesforce, CallError};
use leadrelay_shared::config::{Config, CrmLookupConfig, CrmSource};
use leadrelay_shared::enrichment::{
    Budgeted, EnrichmentProvider, Findings, LookupRequest, ProviderError, SetupError,
};
use leadrelay_shared::ports::{Clock, EnrichmentCache, SystemClock};

use crate::breaker::{Breaker, Permit};

/// The name in `[enrichment] providers` and in the lead's report.
const NAME: &str = leadrelay_shared::config::providers::CRM;
/// The most a cache read or write may take out of the budget.
const CACHE_SHARE: u32 = 4;
/// Accounts whose `Website` contains the domain, read to find one whose host is it.
const ACCOUNT_CANDIDATES: u32 = 5;

/// Builds the lookup `[enrichment.crm]` configures, if it does.
pub fn from_config(
    config: &Config,
    store: &Arc<dyn EnrichmentCache>,
) -> Result<Option<Budgeted>, SetupError> {
    let Some(section) = config.enrichment.crm.as_ref().map(|s| s.get_ref()) else {
        return Ok(None);
    };
    let budget = Duration::from_millis(
        section
            .budget_ms
            .unwrap_or(config.enrichment.provider_budget_ms),
    );
    let lookup = CrmLookup::new(config, section, Some(store.clone()))?;
    Ok(Some(Budgeted {
        provider: Arc::new(lookup),
        budget,
    }))
}

/// The CRM and its credentials.
enum Backend {
    Hubspot(hubspot::Api),
    // Boxed: the token cache holds the whole [notify.salesforce] section.
    Salesforce(Box<salesforce::Tokens>),
}

/// The provider.
pub struct CrmLookup {
    backend: Backend,
    /// (CRM owner id, rep id), from the reps' `hubspot_owner_id` or `salesforce_user_id`.
    owners: Vec<(String, String)>,
    company: bool,
    cache_ttl: Duration,
    http: reqwest::Client,
    breaker: Breaker,
    store: Option<Arc<dyn EnrichmentCache>>,
    clock: Arc<dyn Clock>,
}

/// One question put to the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// HubSpot's contact, or Salesforce's Contact, by e-mail address.
    Contact,
    /// Salesforce's unconverted Lead by e-mail address.
    Lead,
    /// HubSpot's company, or Salesforce's Account, by company domain.
    Company,
}

impl Question {
    fn key(self) -> &'static str {
        match self {
            Question::Contact => "contact",
            Question::Lead => "lead",
            Question::Company => "company",
        }
    }
}

/// The CRM's answer to one question, as cached: the record found (in words, for the lead's
/// report) and its owner id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl CrmLookup {
    /// The lookup for `section`, with the credentials of `[notify.hubspot]` or
    /// `[notify.salesforce]` (validation made sure the one it needs is there).
    pub fn new(
        config: &Config,
        section: &CrmLookupConfig,
        store: Option<Arc<dyn EnrichmentCache>>,
    ) -> Result<Self, SetupError> {
        let setup = |message: String| SetupError {
            provider: NAME.into(),
            message,
        };
        let reps = config.reps.iter().map(|r| r.get_ref());
        let (backend, owners) = match section.source {
            CrmSource::Hubspot => {
                let notify = config
                    .notify
                    .hubspot
                    .as_ref()
                    .ok_or_else(|| setup("no [notify.hubspot] settings".into()))?;
                let api = hubspot::Api::from_config(notify).map_err(|e| setup(e.to_string()))?;
                let owners = reps
                    .filter_map(|r| Some((r.hubspot_owner_id.clone()?, r.id.clone())))
                    .collect();
                (Backend::Hubspot(api), owners)
            }
            CrmSource::Salesforce => {
                let notify = config
                    .notify
                    .salesforce
                    .as_ref()
                    .ok_or_else(|| setup("no [notify.salesforce] settings".into()))?;
                let owners = reps
                    .filter_map(|r| Some((r.salesforce_user_id.clone()?, r.id.clone())))
                    .collect();
                // A JWT key that cannot sign stops the start, naming its setting.
                let tokens =
                    salesforce::Tokens::from_config(notify).map_err(|e| setup(e.to_string()))?;
                (Backend::Salesforce(Box::new(tokens)), owners)
            }
        };
        let http = leadrelay_https::client(|builder| {
            builder
                .user_agent(concat!("leadrelay/", env!("CARGO_PKG_VERSION")))
                // The CRM's API never redirects; an answer that does is not followed.
                .redirect(reqwest::redirect::Policy::none())
        })
        .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(CrmLookup {
            backend,
            owners,
            company: section.company,
            cache_ttl: section.cache_ttl.0,
            http,
            breaker: Breaker::new(
                section.breaker_failures,
                Duration::from_secs(section.breaker_cooldown_secs),
            ),
            store,
            clock: Arc::new(SystemClock),
        })
    }

    /// The wall clock that dates cache entries and Salesforce tokens (tests hold it still).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        if let Backend::Salesforce(tokens) = &mut self.backend {
            tokens.set_clock(clock.clone());
        }
        self.clock = clock;
        self
    }

    fn source(&self) -> &'static str {
        match self.backend {
            Backend::Hubspot(_) => "HubSpot",
            Backend::Salesforce(_) => "Salesforce",
        }
    }

    fn questions(&self) -> &'static [Question] {
        match self.backend {
            Backend::Hubspot(_) => &[Question::Contact, Question::Company],
            Backend::Salesforce(_) => &[Question::Contact, Question::Lead, Question::Company],
        }
    }

    /// The rep whose CRM id `owner` is.
    fn rep_of(&self, owner: &str) -> Option<&str> {
        self.owners
            .iter()
            .find(|(id, _)| match self.backend {
                Backend::Hubspot(_) => id == owner,
                Backend::Salesforce(_) => salesforce::same_id(id, owner),
            })
            .map(|(_, rep)| rep.as_str())
    }

    fn owner_field(&self) -> &'static str {
        match self.backend {
            Backend::Hubspot(_) => "hubspot_owner_id",
            Backend::Salesforce(_) => "salesforce_user_id",
        }
    }

    fn cache_key(&self, question: Question, value: &str) -> String {
        let source = match self.backend {
            Backend::Hubspot(_) => "hubspot",
            Backend::Salesforce(_) => "salesforce",
        };
        format!(
            "{NAME}:{source}:{}:{}",
            question.key(),
            value.to_lowercase()
        )
    }

    /// The cached answer to a question, if there is one (a cache that fails or is slow is
    /// passed over: the CRM is asked instead).
    async fn cached(&self, key: &str, allowed: Duration) -> Option<Option<Record>> {
        let store = self.store.as_ref().filter(|_| !self.cache_ttl.is_zero())?;
        match tokio::time::timeout(allowed, store.cached(key, self.clock.now())).await {
            Ok(Ok(Some(text))) => match serde_json::from_str(&text) {
                Ok(answer) => Some(answer),
                Err(e) => {
                    tracing::warn!(provider = NAME, error = %e, "unreadable cache entry ignored");
                    None
                }
            },
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(provider = NAME, error = %e, "enrichment cache read failed");
                None
            }
            Err(_) => {
                tracing::warn!(provider = NAME, "enrichment cache read timed out");
                None
            }
        }
    }

    /// Caches an answer within `allowed`; the answer stands whether or not the write made it.
    async fn remember(&self, key: &str, answer: &Option<Record>, allowed: Duration) {
        let Some(store) = self.store.as_ref().filter(|_| !self.cache_ttl.is_zero()) else {
            return;
        };
        if allowed.is_zero() {
            return;
        }
        let Ok(text) = serde_json::to_string(answer) else {
            return;
        };
        let expires_at = self
            .clock
            .now()
            .checked_add(self.cache_ttl)
            .unwrap_or(Timestamp::MAX);
        match tokio::time::timeout(allowed, store.cache(key, &text, expires_at)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(provider = NAME, error = %e, "enrichment cache write failed")
            }
            Err(_) => tracing::warn!(provider = NAME, "enrichment cache write timed out"),
        }
    }

    /// Asks the CRM one question.
    async fn ask(&self, question: Question, value: &str) -> Result<Option<Record>, CallError> {
        match &self.backend {
            Backend::Hubspot(api) => self.ask_hubspot(api, question, value).await,
            Backend::Salesforce(tokens) => self.ask_salesforce(tokens, question, value).await,
        }
    }

    async fn ask_hubspot(
        &self,
        api: &hubspot::Api,
        question: Question,
        value: &str,
    ) -> Result<Option<Record>, CallError> {
        let (object, property, label, email) = match question {
            Question::Company => ("companies", "domain", "company", ""),
            _ => ("contacts", "email", "contact", value),
        };
        let mut body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": property, "operator": "EQ", "value": value}
            ]}],
            "properties": [property, "hubspot_owner_id"],
            "limit": 1,
        });
        if question == Question::Company {
            // Several companies may share a domain: the oldest is the account.
            body["sorts"] = json!([{"propertyName": "createdate", "direction": "ASCENDING"}]);
        }
        let results = api.search(&self.http, object, &body, email).await?;
        Ok(results.first().and_then(|record| {
            let id = hubspot::object_id(record)?;
            Some(Record {
                what: format!("HubSpot {label} {id}"),
                owner: text(record.pointer("/properties/hubspot_owner_id")),
            })
        }))
    }

    async fn ask_salesforce(
        &self,
        tokens: &salesforce::Tokens,
        question: Question,
        value: &str,
    ) -> Result<Option<Record>, CallError> {
        let unusable = || CallError::Misconfigured("a value SOQL cannot quote".into());
        let soql = match question {
            Question::Contact => format!(
                "SELECT Id, OwnerId, AccountId, Account.OwnerId FROM Contact WHERE Email = {} \
                 ORDER BY LastModifiedDate DESC LIMIT 1",
                salesforce::literal(value).ok_or_else(unusable)?
            ),
            Question::Lead => format!(
                "SELECT Id, OwnerId FROM Lead WHERE Email = {} AND IsConverted = false \
                 ORDER BY LastModifiedDate DESC LIMIT 1",
                salesforce::literal(value).ok_or_else(unusable)?
            ),
            Question::Company => format!(
                "SELECT Id, OwnerId, Website FROM Account WHERE Website LIKE {} \
                 ORDER BY CreatedDate ASC LIMIT {ACCOUNT_CANDIDATES}",
                salesforce::like_literal(value).ok_or_else(unusable)?
            ),
        };
        let records = tokens.query(&self.http, &soql).await?;
        let record = match question {
            // LIKE found the domain anywhere in the field: keep an account whose host it is.
            Question::Company => records.iter().find(|r| {
                r["Website"]
                    .as_str()
                    .is_some_and(|site| website_has_domain(site, value))
            }),
            _ => records.first(),
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let Some(id) = text(record.get("Id")) else {
            return Ok(None);
        };
        Ok(Some(match question {
            Question::Contact => match (
                text(record.get("AccountId")),
                text(record.pointer("/Account/OwnerId")),
            ) {
                // The account's owner is the account owner; the contact's own is second best.
                (Some(account), Some(owner)) => Record {
                    what: format!("Salesforce Contact {id} (Account {account})"),
                    owner: Some(owner),
                },
                _ => Record {
                    what: format!("Salesforce Contact {id}"),
                    owner: text(record.get("OwnerId")),
                },
            },
            Question::Lead => Record {
                what: format!("Salesforce Lead {id}"),
                owner: text(record.get("OwnerId")),
            },
            Question::Company => Record {
                what: format!("Salesforce Account {id}"),
                owner: text(record.get("OwnerId")),
            },
        }))
    }
}

/// A JSON string, trimmed, unless empty.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Whether a `Website` value (`https://www.acme.io/`, `acme.io`, `eu.acme.io/contact`) is on
/// `domain` or one of its subdomains.
fn website_has_domain(site: &str, domain: &str) -> bool {
    let site = site.trim();
    let with_scheme = if site.contains("://") {
        site.to_owned()
    } else {
        format!("https://{site}")
    };
    let Some(host) = url::Url::parse(&with_scheme)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    let host = host.trim_end_matches('.');
    let domain = domain.to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(domain.as_str())
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The prospect's e-mail address, when it is one the CRM could hold.
fn email_of<'a>(request: &LookupRequest<'a>) -> Option<&'a str> {
    request
        .lead
        .capture
        .captured_email
        .as_deref()
        .map(str::trim)
        .filter(|e| e.contains('@') && !e.chars().any(char::is_control))
}

/// A failed query as the lead's report and the log say it: never the address, never a token.
fn failed(source: &str, question: Question, error: &CallError) -> ProviderError {
    let what = match question {
        Question::Contact => "contact lookup",
        Question::Lead => "lead lookup",
        Question::Company => "company lookup",
    };
    match error {
        CallError::Unreachable { detail } if detail == "timed out" => {
            ProviderError::Failed(format!("{source} {what} timed out"))
        }
        _ => ProviderError::Failed(format!("{source} {what} failed: {error}")),
    }
}

#[async_trait]
impl EnrichmentProvider for CrmLookup {
    fn name(&self) -> &str {
        NAME
    }

    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String> {
        if request.enrichment.account_owner.is_some() {
            return Err("the account owner is already known".into());
        }
        let domain = request.company_domain().filter(|_| self.company);
        if email_of(request).is_none() && domain.is_none() {
            return Err("no e-mail address or company domain to look up".into());
        }
        Ok(())
    }

    async fn lookup(
        &self,
        request: &LookupRequest<'_>,
        budget: Duration,
    ) -> Result<Findings, ProviderError> {
        let deadline = Instant::now() + budget;
        let source = self.source();
        let email = email_of(request);
        let domain = request.company_domain().filter(|_| self.company);
        let mut permit: Option<Permit<'_>> = None;
        let mut notes = Vec::new();
        for &question in self.questions() {
            let value = match question {
                Question::Contact | Question::Lead => email,
                Question::Company => domain,
            };
            let Some(value) = value else {
                continue;
            };
            let key = self.cache_key(question, value);
            let answer = match self.cached(&key, budget / CACHE_SHARE).await {
                Some(answer) => answer,
                None => {
                    if permit.is_none() {
                        permit = Some(self.breaker.permit(Instant::now()).map_err(|refused| {
                            let wait = refused.until.saturating_duration_since(Instant::now());
                            ProviderError::CircuitOpen(format!("{} s", wait.as_secs().max(1)))
                        })?);
                    }
                    match self.ask(question, value).await {
                        Ok(answer) => {
                            let left = deadline.saturating_duration_since(Instant::now()) / 2;
                            self.remember(&key, &answer, left.min(budget / CACHE_SHARE))
                                .await;
                            answer
                        }
                        Err(error) => {
                            if let Some(permit) = permit.take() {
                                permit.failed(Instant::now());
                            }
                            return Err(failed(source, question, &error));
                        }
                    }
                }
            };
            let subject = match question {
                Question::Contact => "contact with this e-mail address",
                Question::Lead => "unconverted Lead with this e-mail address",
                Question::Company => "company with this domain",
            };
            let Some(record) = answer else {
                notes.push(format!("no {source} {subject}"));
                continue;
            };
            let Some(owner) = record.owner.as_deref() else {
                notes.push(format!("{} has no owner", record.what));
                continue;
            };
            match self.rep_of(owner) {
                Some(rep) => {
                    notes.push(format!(
                        "{} is owned by {source} owner {owner}: rep {rep}",
                        record.what
                    ));
                    if let Some(permit) = permit.take() {
                        permit.succeeded();
                    }
                    return Ok(Findings {
                        account_owner: Some(rep.to_owned()),
                        note: Some(notes.join("; ")),
                        ..Findings::default()
                    });
                }
                None => {
                    // Reported, never guessed: the rep list lacks this owner's id.
                    tracing::warn!(lead_id = %request.lead.id, provider = NAME, crm = source,
                        record = %record.what, owner, "the CRM owner is no rep's {}", self.owner_field());
                    notes.push(format!(
                        "{} is owned by {source} owner {owner}, which is no rep's {}",
                        record.what,
                        self.owner_field()
                    ));
                }
            }
        }
        if let Some(permit) = permit.take() {
            permit.succeeded();
        }
        Ok(Findings {
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            ..Findings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_website_matches_its_domain_and_subdomains_only() {
        for site in [
            "https://www.initech.co.uk/",
            "initech.co.uk",
            "http://eu.initech.co.uk/contact",
            "www.INITECH.co.uk",
        ] {
            assert!(website_has_domain(site, "initech.co.uk"), "{site}");
        }
        for site in [
            "https://notinitech.co.uk",
            "https://initech.co.uk.evil.example",
            "",
            "https://example.com/?initech.co.uk",
        ] {
            assert!(!website_has_domain(site, "initech.co.uk"), "{site}");
        }
    }
}

//! HubSpot write-back, one alert round at a time (CRM API v3, a private app's bearer token):
//!
//! 1. **The contact**, read by e-mail (`GET /crm/v3/objects/contacts/{email}?idProperty=email`,
//!    404 when there is none), then created (`POST /crm/v3/objects/contacts`; a 409 means
//!    someone created it meanwhile: read again) or updated (`PATCH .../contacts/{id}`) with
//!    only the properties it lacks. Its owner (`hubspot_owner_id`, and a queue's
//!    `hubspot_team_id`) is written only as `[notify.hubspot] owner_policy` allows: see
//!    [`decide`].
//! 2. **The company** (`company = "search"`): found by the lead's company domain
//!    (`POST /crm/v3/objects/companies/search`, `domain EQ`) and associated with the contact
//!    (`PUT /crm/v4/objects/contacts/{id}/associations/default/companies/{companyId}`).
//! 3. **A note** (`POST /crm/v3/objects/notes`) with the alert's context, associated with the
//!    contact (and company), and **a task** (`POST /crm/v3/objects/tasks`) due at the SLA
//!    deadline, assigned to the lead's owner.
//!
//! Reads, the contact write and the association are safe to repeat. The note and the task are
//! not (HubSpot has no idempotency key for creates), so each is a step of its own
//! ([`DeliverySteps`]): done steps are skipped on a retry or a replay; a create whose outcome is
//! unknown (a timeout, a 5xx, a crash) is not repeated within the delivery, and the next attempt
//! first searches the contact's notes (or tasks) for the round's marker text.

use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

use leadrelay_shared::config::{CompanyAssociation, HubspotConfig, OwnerPolicy};
use leadrelay_shared::ports::{DeliverySteps, HubspotTarget, NotifyError, StepStart, StoreError};
use leadrelay_shared::render::{Alert, CrmNote};

use super::delivery::{self, DeliveryPolicy, Failure, RateLimits};

const CHANNEL: &str = "hubspot";

// HubSpot-defined association type ids (category HUBSPOT_DEFINED).
const NOTE_TO_CONTACT: u32 = 202;
const NOTE_TO_COMPANY: u32 = 190;
const TASK_TO_CONTACT: u32 = 204;
const TASK_TO_COMPANY: u32 = 192;

/// The contact properties leadrelay fills from the lead, never overwriting a value HubSpot has.
const CONTACT_FIELDS: [&str; 5] = ["firstname", "lastname", "company", "phone", "jobtitle"];

/// How many of a contact's newest notes (or tasks) are searched for a marker.
const MARKER_SEARCH_LIMIT: u32 = 100;

/// Writes one alert round to HubSpot, recording the note and the task in `steps`.
pub(super) async fn deliver(
    client: Client<'_>,
    target: &HubspotTarget,
    alert: &Alert,
    steps: &dyn DeliverySteps,
) -> Result<(), NotifyError> {
    let note = alert
        .crm_note
        .as_ref()
        .ok_or_else(|| NotifyError::Misconfigured {
            channel: CHANNEL.into(),
            detail: "the alert was rendered without its CRM note".into(),
        })?;
    let contact = client.contact(alert, target).await?;
    let company = match (client.config.company, note.company_domain.as_deref()) {
        (CompanyAssociation::Search, Some(domain)) => client.company(domain).await?,
        _ => None,
    };
    if let Some(company) = &company {
        client.associate_company(&contact.id, company).await?;
    }
    let company = company.as_deref();
    let owner_line = format!(
        "<p><strong>HubSpot contact owner:</strong> {}</p>",
        html_escape::encode_text(&contact.owner_said)
    );
    let marker = format!("<p>{}</p>", html_escape::encode_text(&note.marker));
    let note_body = format!("{}{owner_line}{marker}", note.html);
    let mut associations = vec![association(&contact.id, NOTE_TO_CONTACT)];
    associations.extend(company.map(|id| association(id, NOTE_TO_COMPANY)));
    let at = note.at.unwrap_or_else(jiff::Timestamp::now);
    let request = json!({
        "properties": {"hs_timestamp": at.to_string(), "hs_note_body": note_body},
        "associations": associations,
    });
    let made = Made {
        step: "note",
        object: "notes",
        body_property: "hs_note_body",
    };
    client
        .create_once(steps, &made, &contact.id, note, &request)
        .await?;

    let mut properties = Map::new();
    let due = note.due.or(note.at).unwrap_or_else(jiff::Timestamp::now);
    for (name, value) in [
        ("hs_timestamp", due.to_string()),
        ("hs_task_subject", note.task_subject.clone()),
        ("hs_task_body", format!("{}{marker}", note.task_html)),
        ("hs_task_status", "NOT_STARTED".into()),
        ("hs_task_priority", priority(alert.tier).into()),
        ("hs_task_type", "TODO".into()),
    ] {
        properties.insert(name.into(), value.into());
    }
    if let Some(owner) = &target.owner_id {
        properties.insert("hubspot_owner_id".into(), owner.clone().into());
    }
    let mut associations = vec![association(&contact.id, TASK_TO_CONTACT)];
    associations.extend(company.map(|id| association(id, TASK_TO_COMPANY)));
    let request = json!({"properties": properties, "associations": associations});
    let made = Made {
        step: "task",
        object: "tasks",
        body_property: "hs_task_body",
    };
    client
        .create_once(steps, &made, &contact.id, note, &request)
        .await
}

/// Tier 1 is the hottest.
fn priority(tier: u8) -> &'static str {
    match tier {
        1 => "HIGH",
        2 => "MEDIUM",
        _ => "LOW",
    }
}

fn association(id: &str, type_id: u32) -> Value {
    json!({
        "to": {"id": id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    })
}

/// What leadrelay does with the contact's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Write the lead's owner (and team).
    Write,
    /// Nothing to write: no HubSpot owner or team for the lead, or the contact has it already.
    Nothing,
    /// The contact keeps its owner, or its lack of one: `owner_policy` says so.
    KeepByPolicy,
    /// An escalation leaves the owner alone (`owner_on_escalation = false`).
    KeepOnEscalation,
}

/// The owner decision. `contact` is `None` for a contact leadrelay creates, else the owner
/// the existing contact has (`None` or empty: none).
///
/// - A new contact always gets the lead's owner.
/// - `keep_existing`: an existing contact is never given another owner (not even when it has
///   none: HubSpot's own assignment stays in charge).
/// - `fill_empty`: an existing contact without an owner gets one; an owner is never replaced.
/// - `overwrite`: the lead's owner replaces whoever owns the contact.
/// - An escalation round changes nothing on an existing contact unless `owner_on_escalation`;
///   with it, the policy applies again and the owner the lead escalated from (leadrelay's own
///   earlier choice) counts as replaceable.
pub(super) fn decide(
    policy: OwnerPolicy,
    owner_on_escalation: bool,
    contact: Option<Option<&str>>,
    target: &HubspotTarget,
) -> Decision {
    if target.owner_id.is_none() && target.team_id.is_none() {
        return Decision::Nothing;
    }
    let Some(current) = contact else {
        return Decision::Write;
    };
    let current = current.filter(|id| !id.is_empty());
    if current.is_some() && current == target.owner_id.as_deref() {
        return Decision::Nothing;
    }
    if target.escalation && !owner_on_escalation {
        return Decision::KeepOnEscalation;
    }
    let ours =
        target.escalation && current.is_some() && current == target.previous_owner_id.as_deref();
    let allowed = match policy {
        OwnerPolicy::KeepExisting => ours,
        OwnerPolicy::FillEmpty => current.is_none() || ours,
        OwnerPolicy::Overwrite => true,
    };
    if allowed {
        Decision::Write
    } else {
        Decision::KeepByPolicy
    }
}

/// The contact as this round left it.
struct Contact {
    id: String,
    /// What happened to its owner, for the note.
    owner_said: String,
}

/// A create step: the receipt step's name, the object type and the property the marker is in.
struct Made {
    step: &'static str,
    object: &'static str,
    body_property: &'static str,
}

/// What HubSpot answered a request.
enum Reply {
    /// 2xx and its JSON body (`Null` when it had none).
    Json(Value),
    /// 404 or 409, which some calls expect, with HubSpot's message.
    Status(u16, String),
}

/// Whether a request may be repeated after an answer that leaves its outcome unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    /// A create: repeated only after a refusal that certainly applied nothing (429, a
    /// connection that never opened).
    Unsafe,
}

/// A failed request; `settled` when it certainly had no effect.
struct Failed {
    error: NotifyError,
    settled: bool,
}

impl From<Failed> for NotifyError {
    fn from(failed: Failed) -> Self {
        failed.error
    }
}

/// One attempt's failure.
struct AttemptFailed {
    error: NotifyError,
    retry_after: Option<Duration>,
    settled: bool,
}

/// A HubSpot API client for one delivery: every call shares the delivery's budget and waits its
/// turn under the account's rate limit.
pub(super) struct Client<'a> {
    pub http: &'a reqwest::Client,
    pub policy: &'a DeliveryPolicy,
    pub limits: &'a RateLimits,
    pub config: &'a HubspotConfig,
    pub token: &'a SecretString,
    pub base: url::Url,
    pub started: Instant,
    /// The prospect's address: the contact's key, and never part of an error.
    pub email: &'a str,
}

impl<'a> Client<'a> {
    /// The client for `config`, or why the channel cannot work.
    pub fn new(
        http: &'a reqwest::Client,
        policy: &'a DeliveryPolicy,
        limits: &'a RateLimits,
        config: Option<&'a HubspotConfig>,
        alert: &'a Alert,
    ) -> Result<Self, NotifyError> {
        let misconfigured = |detail: &str| NotifyError::Misconfigured {
            channel: CHANNEL.into(),
            detail: detail.into(),
        };
        let config = config.ok_or_else(|| misconfigured("no [notify.hubspot] settings"))?;
        let token = config
            .token
            .as_ref()
            .ok_or_else(|| misconfigured("no token (notify.hubspot.token_env)"))?;
        let email = alert
            .contact
            .email
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| misconfigured("the lead has no e-mail address to match the contact"))?;
        let base = url::Url::parse(&config.base_url)
            .ok()
            .filter(|url| !url.cannot_be_a_base())
            .ok_or_else(|| misconfigured("notify.hubspot.base_url is not a base URL"))?;
        Ok(Client {
            http,
            policy,
            limits,
            config,
            token,
            base,
            started: Instant::now(),
            email,
        })
    }

    /// `base_url` with these path segments (each percent-encoded).
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Finds or creates the contact and applies the owner policy.
    async fn contact(&self, alert: &Alert, target: &HubspotTarget) -> Result<Contact, NotifyError> {
        let existing = match self.read_contact().await? {
            Some(found) => found,
            None => match self.create_contact(alert, target).await? {
                Ok(id) => {
                    let owner_said = match decide(
                        self.config.owner_policy,
                        self.config.owner_on_escalation,
                        None,
                        target,
                    ) {
                        Decision::Write => format!("{} (new contact)", describe(target)),
                        _ => "none (new contact; no HubSpot owner id for this lead's owner)"
                            .to_owned(),
                    };
                    return Ok(Contact { id, owner_said });
                }
                // Created by someone else since the read: it is an existing contact after all.
                Err(()) => self.read_contact().await?.ok_or_else(|| {
                    unexpected("the contact was reported to exist, and then not found")
                })?,
            },
        };
        let (id, properties) = existing;
        let text = |name: &str| {
            properties
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let current = text("hubspot_owner_id");
        let decision = decide(
            self.config.owner_policy,
            self.config.owner_on_escalation,
            Some(current),
            target,
        );
        // Only what the contact lacks: what HubSpot knows is never replaced by what was typed.
        let mut update = Map::new();
        for (name, value) in contact_fields(alert) {
            if text(name).is_none() {
                update.insert(name.into(), value.into());
            }
        }
        if decision == Decision::Write {
            owner_properties(&mut update, target);
        }
        let current_said = current.unwrap_or("none");
        let owner_said = match decision {
            Decision::Write => format!(
                "{} (was {current_said}; owner_policy = {})",
                describe(target),
                self.config.owner_policy.as_str()
            ),
            Decision::Nothing => current_said.to_owned(),
            Decision::KeepByPolicy => format!(
                "{current_said}, kept (owner_policy = {})",
                self.config.owner_policy.as_str()
            ),
            Decision::KeepOnEscalation => format!(
                "{current_said}, kept: an escalation does not change it (owner_on_escalation = \
                 false)"
            ),
        };
        if !update.is_empty() {
            let url = self.url(&["crm", "v3", "objects", "contacts", &id]);
            let body = json!({ "properties": update });
            match self
                .call(Method::PATCH, url, Some(&body), Repeat::Safe)
                .await?
            {
                Reply::Json(_) => {}
                Reply::Status(status, detail) => return Err(refused(status, detail)),
            }
        }
        Ok(Contact { id, owner_said })
    }

    /// The contact with this e-mail address: its id and the properties leadrelay looks at.
    async fn read_contact(&self) -> Result<Option<(String, Map<String, Value>)>, NotifyError> {
        let mut url = self.url(&["crm", "v3", "objects", "contacts", self.email]);
        let mut asked = vec!["hubspot_owner_id", "hubspot_team_id"];
        asked.extend(CONTACT_FIELDS);
        url.query_pairs_mut()
            .append_pair("idProperty", "email")
            .append_pair("properties", &asked.join(","));
        match self.call(Method::GET, url, None, Repeat::Safe).await? {
            Reply::Json(body) => {
                let id = object_id(&body)?;
                let properties = match body.get("properties") {
                    Some(Value::Object(map)) => map.clone(),
                    _ => Map::new(),
                };
                Ok(Some((id, properties)))
            }
            Reply::Status(404, _) => Ok(None),
            Reply::Status(status, detail) => Err(refused(status, detail)),
        }
    }

    /// Creates the contact with the lead's owner; `Err(())` when it exists already (409).
    async fn create_contact(
        &self,
        alert: &Alert,
        target: &HubspotTarget,
    ) -> Result<Result<String, ()>, NotifyError> {
        let mut properties = Map::new();
        properties.insert("email".into(), self.email.into());
        for (name, value) in contact_fields(alert) {
            properties.insert(name.into(), value.into());
        }
        owner_properties(&mut properties, target);
        let url = self.url(&["crm", "v3", "objects", "contacts"]);
        let body = json!({ "properties": properties });
        // Safe to repeat: the e-mail address is unique, a second create answers 409.
        match self
            .call(Method::POST, url, Some(&body), Repeat::Safe)
            .await?
        {
            Reply::Json(body) => Ok(Ok(object_id(&body)?)),
            Reply::Status(409, _) => Ok(Err(())),
            Reply::Status(status, detail) => Err(refused(status, detail)),
        }
    }

    /// The oldest company with this domain, if HubSpot has one.
    async fn company(&self, domain: &str) -> Result<Option<String>, NotifyError> {
        let url = self.url(&["crm", "v3", "objects", "companies", "search"]);
        let body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "domain", "operator": "EQ", "value": domain}
            ]}],
            "properties": ["domain", "name"],
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "limit": 1,
        });
        match self
            .call(Method::POST, url, Some(&body), Repeat::Safe)
            .await?
        {
            Reply::Json(body) => Ok(body
                .get("results")
                .and_then(Value::as_array)
                .and_then(|results| results.first())
                .and_then(|company| object_id(company).ok())),
            Reply::Status(status, detail) => Err(refused(status, detail)),
        }
    }

    /// The contact's default (unlabelled) association with the company; repeating it is a no-op.
    async fn associate_company(&self, contact: &str, company: &str) -> Result<(), NotifyError> {
        let url = self.url(&[
            "crm",
            "v4",
            "objects",
            "contacts",
            contact,
            "associations",
            "default",
            "companies",
            company,
        ]);
        match self.call(Method::PUT, url, None, Repeat::Safe).await? {
            Reply::Json(_) => Ok(()),
            Reply::Status(status, detail) => Err(refused(status, detail)),
        }
    }

    /// Creates `made` once per alert round: skipped when done; after an attempt whose outcome
    /// is unknown, searched for by the round's marker first.
    async fn create_once(
        &self,
        steps: &dyn DeliverySteps,
        made: &Made,
        contact: &str,
        note: &CrmNote,
        request: &Value,
    ) -> Result<(), NotifyError> {
        match steps.begin(made.step).await.map_err(progress)? {
            StepStart::Done => return Ok(()),
            StepStart::Uncertain => {
                if self.find_marked(made, contact, &note.marker).await? {
                    return steps.finish(made.step).await.map_err(progress);
                }
            }
            StepStart::New => {}
        }
        let url = self.url(&["crm", "v3", "objects", made.object]);
        let failed = match self
            .call(Method::POST, url, Some(request), Repeat::Unsafe)
            .await
        {
            Ok(Reply::Json(_)) => return steps.finish(made.step).await.map_err(progress),
            Ok(Reply::Status(status, detail)) => Failed {
                error: refused(status, detail),
                settled: true,
            },
            Err(failed) => failed,
        };
        // Refused for sure: the next attempt creates it afresh. Otherwise the step stays
        // begun, and the next attempt looks for it first.
        if failed.settled {
            steps.release(made.step).await.map_err(progress)?;
        }
        Err(failed.error)
    }

    /// Whether one of the contact's newest notes (or tasks) carries `marker`.
    async fn find_marked(
        &self,
        made: &Made,
        contact: &str,
        marker: &str,
    ) -> Result<bool, NotifyError> {
        let url = self.url(&["crm", "v3", "objects", made.object, "search"]);
        let body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "associations.contact", "operator": "EQ", "value": contact}
            ]}],
            "properties": [made.body_property],
            "sorts": [{"propertyName": "hs_createdate", "direction": "DESCENDING"}],
            "limit": MARKER_SEARCH_LIMIT,
        });
        let marker = html_escape::encode_text(marker);
        match self
            .call(Method::POST, url, Some(&body), Repeat::Safe)
            .await?
        {
            Reply::Json(body) => {
                Ok(body
                    .get("results")
                    .and_then(Value::as_array)
                    .is_some_and(|results| {
                        results.iter().any(|result| {
                            result
                                .pointer(&format!("/properties/{}", made.body_property))
                                .and_then(Value::as_str)
                                .is_some_and(|text| text.contains(marker.as_ref()))
                        })
                    }))
            }
            Reply::Status(status, detail) => Err(refused(status, detail)),
        }
    }

    /// One API call under the delivery rules: rate limited, retried on 429 (after its
    /// `Retry-After`), 5xx, timeouts and connection errors within the delivery's budget,
    /// except that an unsafe call is not repeated once its outcome is unknown.
    async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<Reply, Failed> {
        let outcome = delivery::retrying(
            self.policy,
            self.started,
            Some((self.limits, CHANNEL)),
            CHANNEL,
            || async {
                match self.once(&method, &url, body).await {
                    Ok(reply) => Ok(Ok(reply)),
                    Err(failed) if !failed.settled && repeat == Repeat::Unsafe => {
                        Ok(Err(failed.error))
                    }
                    Err(failed) => Err(Failure {
                        error: failed.error,
                        retry_after: failed.retry_after,
                    }),
                }
            },
        )
        .await;
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(Failed {
                error,
                settled: false,
            }),
            // An unsafe call is retried only after settled failures, so its last one is too.
            Err(error) => Err(Failed {
                error,
                settled: repeat == Repeat::Unsafe,
            }),
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &url::Url,
        body: Option<&Value>,
    ) -> Result<Reply, AttemptFailed> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        // reqwest's error text can hold the URL, with the prospect's e-mail: keep the kind.
        let response = request.send().await.map_err(|e| AttemptFailed {
            error: NotifyError::Unreachable {
                channel: CHANNEL.into(),
                detail: if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                }
                .into(),
            },
            retry_after: None,
            // A connection that never opened carried nothing.
            settled: e.is_connect() && !e.is_timeout(),
        })?;
        let status = response.status().as_u16();
        let retry_after = delivery::retry_after(response.headers());
        let text = response.text().await.map_err(|_| AttemptFailed {
            error: NotifyError::Unreachable {
                channel: CHANNEL.into(),
                detail: format!("answered {status}, and the answer could not be read"),
            },
            retry_after: None,
            settled: false,
        })?;
        match status {
            200..=299 => Ok(Reply::Json(
                serde_json::from_str(&text).unwrap_or(Value::Null),
            )),
            404 | 409 => Ok(Reply::Status(
                status,
                leadrelay_crm::hubspot::error_detail(&text, self.email),
            )),
            _ => Err(AttemptFailed {
                error: NotifyError::Rejected {
                    channel: CHANNEL.into(),
                    status,
                    detail: leadrelay_crm::hubspot::error_detail(&text, self.email),
                },
                retry_after,
                // A 4xx was refused before anything was applied (429 included); a 408 or
                // 5xx may have been applied.
                settled: (400..500).contains(&status) && status != 408,
            }),
        }
    }
}

/// The contact properties the lead knows, non-empty (an empty value would clear HubSpot's).
fn contact_fields(alert: &Alert) -> Vec<(&'static str, &str)> {
    let contact = &alert.contact;
    let values = [
        contact.firstname.as_deref(),
        contact.lastname.as_deref(),
        contact.company.as_deref(),
        contact.phone.as_deref(),
        contact.jobtitle.as_deref(),
    ];
    CONTACT_FIELDS
        .into_iter()
        .zip(values)
        .filter_map(|(name, value)| Some((name, value.filter(|v| !v.is_empty())?)))
        .collect()
}

fn owner_properties(properties: &mut Map<String, Value>, target: &HubspotTarget) {
    if let Some(owner) = &target.owner_id {
        properties.insert("hubspot_owner_id".into(), owner.clone().into());
    }
    if let Some(team) = &target.team_id {
        properties.insert("hubspot_team_id".into(), team.clone().into());
    }
}

/// "owner 123" / "team 9" / "owner 123, team 9", for the note.
fn describe(target: &HubspotTarget) -> String {
    let parts: Vec<String> = [("owner", &target.owner_id), ("team", &target.team_id)]
        .into_iter()
        .filter_map(|(what, id)| id.as_ref().map(|id| format!("{what} {id}")))
        .collect();
    parts.join(", ")
}

/// A record's `id`, as HubSpot answers it.
fn object_id(body: &Value) -> Result<String, NotifyError> {
    leadrelay_crm::hubspot::object_id(body)
        .ok_or_else(|| unexpected("an answer without the record's id"))
}

fn unexpected(detail: &str) -> NotifyError {
    NotifyError::Unreachable {
        channel: CHANNEL.into(),
        detail: detail.into(),
    }
}

/// A 404 or 409 where none was expected: refused for good.
fn refused(status: u16, detail: String) -> NotifyError {
    NotifyError::Rejected {
        channel: CHANNEL.into(),
        status,
        detail,
    }
}

fn progress(source: StoreError) -> NotifyError {
    NotifyError::Progress {
        channel: CHANNEL.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(owner: Option<&str>, escalation: bool, previous: Option<&str>) -> HubspotTarget {
        HubspotTarget {
            owner_id: owner.map(str::to_owned),
            team_id: None,
            escalation,
            previous_owner_id: previous.map(str::to_owned),
        }
    }

    #[test]
    fn the_owner_policies_decide_as_documented() {
        use Decision::*;
        use OwnerPolicy::*;
        let first = target(Some("12"), false, None);
        // (policy, the contact's owner: None = a new contact, Some(None) = existing, no owner)
        for (policy, contact, expected) in [
            (KeepExisting, None, Write),
            (KeepExisting, Some(None), KeepByPolicy),
            (KeepExisting, Some(Some("")), KeepByPolicy),
            (KeepExisting, Some(Some("77")), KeepByPolicy),
            (KeepExisting, Some(Some("12")), Nothing),
            (FillEmpty, None, Write),
            (FillEmpty, Some(None), Write),
            (FillEmpty, Some(Some("")), Write),
            (FillEmpty, Some(Some("77")), KeepByPolicy),
            (Overwrite, None, Write),
            (Overwrite, Some(None), Write),
            (Overwrite, Some(Some("77")), Write),
            (Overwrite, Some(Some("12")), Nothing),
        ] {
            assert_eq!(
                decide(policy, false, contact, &first),
                expected,
                "{policy:?} {contact:?}"
            );
        }
        // No HubSpot id for the lead's owner: nothing to write, even on a new contact.
        assert_eq!(
            decide(Overwrite, true, None, &target(None, false, None)),
            Nothing
        );
        let team_only = HubspotTarget {
            team_id: Some("9".into()),
            ..HubspotTarget::default()
        };
        assert_eq!(decide(FillEmpty, false, Some(None), &team_only), Write);
        assert_eq!(
            decide(FillEmpty, false, Some(Some("77")), &team_only),
            KeepByPolicy
        );
    }

    #[test]
    fn an_escalation_changes_the_owner_only_when_configured() {
        use Decision::*;
        use OwnerPolicy::*;
        // Escalated from 12 (leadrelay's earlier choice) to 34.
        let escalated = target(Some("34"), true, Some("12"));
        for policy in [KeepExisting, FillEmpty, Overwrite] {
            for contact in [Some(None), Some(Some("12")), Some(Some("77"))] {
                assert_eq!(
                    decide(policy, false, contact, &escalated),
                    KeepOnEscalation,
                    "{policy:?} {contact:?}"
                );
            }
            // A contact created in the escalation round has no owner to rewrite.
            assert_eq!(decide(policy, false, None, &escalated), Write);
        }
        for (policy, contact, expected) in [
            (KeepExisting, Some(Some("12")), Write),
            (KeepExisting, Some(Some("77")), KeepByPolicy),
            (KeepExisting, Some(None), KeepByPolicy),
            (FillEmpty, Some(Some("12")), Write),
            (FillEmpty, Some(None), Write),
            (FillEmpty, Some(Some("77")), KeepByPolicy),
            (Overwrite, Some(Some("77")), Write),
            (Overwrite, Some(Some("34")), Nothing),
        ] {
            assert_eq!(
                decide(policy, true, contact, &escalated),
                expected,
                "{policy:?} {contact:?}"
            );
        }
    }
}

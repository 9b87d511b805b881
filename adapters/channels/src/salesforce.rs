//! Salesforce: the prospect upserted as a Lead on an external id field, with its owner, and a
//! Task for the owner (REST API, `/services/data/vXX.X/sobjects/...`).
//!
//! **Tokens.** An OAuth 2.0 client-credentials or JWT bearer grant at `{login_url}/services/
//! oauth2/token` answers `access_token`, `instance_url`, `token_type`, `issued_at` (and `id`,
//! `scope`, `signature`) but no expiry: the session lasts as long as the org's timeout allows.
//! The token is kept for `token_lifetime`, and a call answered `401 INVALID_SESSION_ID` gets a
//! new token once and is sent again. A refused grant (`invalid_client`, `invalid_grant`, ...)
//! is a permanent misconfiguration: the notify stage dead-letters the lead's message and the
//! operations alarm reports it.
//!
//! **The Lead.** `PATCH /sobjects/Lead/{external_id_field}/{value}` creates (201) or updates
//! (200, or 204 before API 46.0) the one Lead with that value, so a retry never makes a second.
//! An upsert cannot set a field on insert only, so unless `owner_policy` is `overwrite`, the
//! Lead's owner is read first (`GET .../Lead/{field}/{value}?fields=Id,OwnerId`) and `OwnerId`
//! is sent only when the policy allows. Every write carries `Sforce-Auto-Assign: FALSE`: the
//! REST API otherwise runs the org's active assignment rules on every create *and update*,
//! which would replace the owner leadrelay chose (or kept).
//!
//! **The Task.** `POST /sobjects/Task` with `WhoId` the Lead's id, last in the delivery: every
//! step before it is an idempotent upsert, so a retry after any failure repeats only those,
//! and the delivery's receipt keeps a delivered round from being sent again. With
//! `task_external_id_field` the Task is upserted on it too, which also covers a retry whose
//! answer was lost.
//!
//! **Errors** come as `[{"message", "errorCode", "fields"}]`: `REQUEST_LIMIT_EXCEEDED` (403),
//! 429 and 5xx are retried with backoff; other 4xx (`INVALID_FIELD`, `REQUIRED_FIELD_MISSING`,
//! `DUPLICATES_DETECTED`, ...) and 300 (the external id matches several records) are
//! permanent. Details keep the error code and Salesforce's message with any e-mail address in
//! it masked, and never a token.

use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

use leadrelay_shared::config::{
    is_salesforce_owner_id, is_salesforce_queue_id, SalesforceAuth, SalesforceConfig,
    SalesforceOwnerPolicy,
};
use leadrelay_shared::ports::{Clock, NotifyError, SystemClock};
use leadrelay_shared::salesforce::SalesforceWrite;

use crate::delivery::{self, DeliveryPolicy, Failure};

const CHANNEL: &str = "salesforce";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The JWT's validity: Salesforce wants `exp` within 3 minutes.
const ASSERTION_LIFETIME: SignedDuration = SignedDuration::from_secs(120);
/// Characters of Salesforce's own error text kept in a failure.
const DETAIL_LIMIT: usize = 300;

/// An access token and the instance it works on.
#[derive(Clone)]
struct Token {
    access: SecretString,
    /// `instance_url` from the token answer: the REST API's base.
    instance: String,
    /// When it is no longer used (by the clock, `token_lifetime` after it was issued).
    expires_at: Timestamp,
}

/// The `[notify.salesforce]` client, with its cached token.
pub struct Salesforce {
    config: SalesforceConfig,
    clock: Arc<dyn Clock>,
    /// One token for every delivery; the lock also makes concurrent refreshes one request.
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Salesforce {
    pub fn from_config(config: &SalesforceConfig) -> Self {
        Salesforce {
            config: config.clone(),
            clock: Arc::new(SystemClock),
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// The clock token lifetimes and JWT expiries are read from.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    /// Upserts the Lead (with the owner `write.owner_policy` allows), then the Task.
    pub async fn write(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        write: &SalesforceWrite,
    ) -> Result<(), NotifyError> {
        let call = Call {
            sf: self,
            http,
            policy,
            started: Instant::now(),
        };
        let sobjects = format!("/services/data/v{}/sobjects", self.config.api_version);
        let lead_path = format!(
            "{sobjects}/Lead/{}/{}",
            self.config.external_id_field,
            segment(&write.external_id)
        );
        let existing = match write.owner_policy {
            SalesforceOwnerPolicy::Overwrite => None,
            _ => call.existing_lead(&lead_path).await?,
        };
        let set_owner = match (&existing, write.owner_policy) {
            (None, _) | (_, SalesforceOwnerPolicy::Overwrite) => true,
            (Some(_), SalesforceOwnerPolicy::KeepExisting) => false,
            (Some(lead), SalesforceOwnerPolicy::ReplaceQueue) => {
                lead.owner.as_deref().is_some_and(is_salesforce_queue_id)
            }
        };
        let mut body = write.lead.clone();
        if set_owner {
            body.insert("OwnerId".into(), write.owner.clone().into());
        }
        let answer = call
            .rest(
                Method::PATCH,
                &lead_path,
                Some(&Value::Object(body)),
                Missing::Fails,
                "Lead upsert",
            )
            .await?;
        let created = answer.status == 201;
        tracing::info!(channel = CHANNEL, external_id = %write.external_id, created,
            owner_set = set_owner, "Salesforce Lead upserted");
        let Some(task) = &write.task else {
            return Ok(());
        };
        // 200 and 201 name the record; a 204 (API versions before 46.0) does not.
        let lead_id = match record_id(&answer.body).or(existing.map(|l| l.id)) {
            Some(id) => id,
            None => call
                .existing_lead(&lead_path)
                .await?
                .map(|l| l.id)
                .ok_or_else(|| NotifyError::Permanent {
                    channel: CHANNEL.into(),
                    detail: "the upserted Lead cannot be read back by its external id".into(),
                })?,
        };
        let mut fields: Map<String, Value> = task.fields.clone();
        fields.insert("WhoId".into(), lead_id.into());
        let body = Value::Object(fields);
        match &self.config.task_external_id_field {
            Some(field) => {
                let path = format!("{sobjects}/Task/{field}/{}", segment(&task.external_id));
                call.rest(
                    Method::PATCH,
                    &path,
                    Some(&body),
                    Missing::Fails,
                    "Task upsert",
                )
                .await?;
            }
            None => {
                let path = format!("{sobjects}/Task");
                call.rest(
                    Method::POST,
                    &path,
                    Some(&body),
                    Missing::Fails,
                    "Task create",
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The cached token while it is fresh, else a new one.
    async fn token(&self, http: &reqwest::Client) -> Result<Token, Failure> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if self.clock.now() < token.expires_at {
                return Ok(token.clone());
            }
        }
        let token = self.request_token(http).await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// A new token in place of `refused`, unless another call replaced it meanwhile.
    async fn refresh(&self, http: &reqwest::Client, refused: &Token) -> Result<Token, Failure> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if token.access.expose_secret() != refused.access.expose_secret()
                && self.clock.now() < token.expires_at
            {
                return Ok(token.clone());
            }
        }
        *slot = None;
        let token = self.request_token(http).await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// The grant, posted as a form to the token endpoint.
    async fn request_token(&self, http: &reqwest::Client) -> Result<Token, Failure> {
        let config = &self.config;
        let now = self.clock.now();
        let body = self.grant(now)?;
        let url = format!("{}/services/oauth2/token", config.login_url);
        let response = http
            .post(&url)
            .header(CONTENT_TYPE, FORM)
            .header(ACCEPT, JSON)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = delivery::retry_after(response.headers());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            // OAuth's own error shape: {"error": "invalid_grant", "error_description": "..."}.
            let code = answer["error"].as_str().unwrap_or("unknown_error");
            let description = answer["error_description"].as_str().unwrap_or_default();
            let detail = format!(
                "token request refused ({status}): {code}: {}",
                mask(description)
            );
            let error = if status >= 500 || status == 429 || status == 408 {
                NotifyError::Rejected {
                    channel: CHANNEL.into(),
                    status,
                    detail: leadrelay_shared::render::truncate(&detail, DETAIL_LIMIT),
                }
            } else {
                // A wrong key, secret, user or app setting: no retry can fix it.
                NotifyError::Misconfigured {
                    channel: CHANNEL.into(),
                    detail: leadrelay_shared::render::truncate(&detail, DETAIL_LIMIT),
                }
            };
            return Err(Failure { error, retry_after });
        }
        let access = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| misconfigured("the token answer has no access_token"))?;
        let instance = answer["instance_url"]
            .as_str()
            .and_then(instance_base)
            .ok_or_else(|| {
                misconfigured("the token answer has no usable instance_url (https required)")
            })?;
        Ok(Token {
            access: SecretString::from(access.to_owned()),
            instance,
            expires_at: now
                + SignedDuration::try_from(config.token_lifetime.0).unwrap_or(SignedDuration::ZERO),
        })
    }

    /// The token request's form: the client-credentials grant, or the JWT bearer grant with
    /// its assertion signed now.
    fn grant(&self, now: Timestamp) -> Result<String, Failure> {
        let config = &self.config;
        let client_id = config
            .client_id
            .as_ref()
            .ok_or_else(|| misconfigured("no client id (notify.salesforce.client_id_env)"))?;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match config.auth {
            SalesforceAuth::ClientCredentials => {
                let secret = config.client_secret.as_ref().ok_or_else(|| {
                    misconfigured("no client secret (notify.salesforce.client_secret_env)")
                })?;
                form.append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id.expose_secret())
                    .append_pair("client_secret", secret.expose_secret());
            }
            SalesforceAuth::JwtBearer => {
                let key = config.private_key.as_ref().ok_or_else(|| {
                    misconfigured("no private key (notify.salesforce.private_key_env)")
                })?;
                let claims = json!({
                    "iss": client_id.expose_secret(),
                    "sub": config.username.as_deref().unwrap_or_default(),
                    "aud": config.audience(),
                    "exp": (now + ASSERTION_LIFETIME).as_second(),
                });
                let assertion = leadrelay_shared::jwt::sign_rs256(key, &claims)
                    .map_err(|e| misconfigured(&e.to_string()))?;
                form.append_pair("grant_type", JWT_BEARER)
                    .append_pair("assertion", &assertion);
            }
        }
        Ok(form.finish())
    }
}

/// A failure no retry can fix: the configuration or the org's setup is wrong.
fn misconfigured(detail: &str) -> Failure {
    Failure {
        error: NotifyError::Misconfigured {
            channel: CHANNEL.into(),
            detail: detail.into(),
        },
        retry_after: None,
    }
}

/// The Lead as it stands in Salesforce.
struct ExistingLead {
    id: String,
    owner: Option<String>,
}

/// What a 404 means to a call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The record may not exist yet: 404 is an answer.
    IsAnswer,
    Fails,
}

/// A successful answer.
struct Answer {
    status: u16,
    body: Value,
}

/// One delivery's calls, sharing its budget.
struct Call<'a> {
    sf: &'a Salesforce,
    http: &'a reqwest::Client,
    policy: &'a DeliveryPolicy,
    started: Instant,
}

impl Call<'_> {
    /// The Lead with this external id, if there is one.
    async fn existing_lead(&self, lead_path: &str) -> Result<Option<ExistingLead>, NotifyError> {
        let path = format!("{lead_path}?fields=Id,OwnerId");
        let answer = self
            .rest(Method::GET, &path, None, Missing::IsAnswer, "Lead lookup")
            .await?;
        if answer.status == 404 {
            return Ok(None);
        }
        let id = record_id(&answer.body).ok_or_else(|| NotifyError::Permanent {
            channel: CHANNEL.into(),
            detail: "Lead lookup: the answer has no record Id".into(),
        })?;
        let owner = answer.body["OwnerId"]
            .as_str()
            .filter(|o| is_salesforce_owner_id(o))
            .map(str::to_owned);
        Ok(Some(ExistingLead { id, owner }))
    }

    /// One REST call under the delivery rules: retried while transient, within the budget.
    async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        missing: Missing,
        what: &str,
    ) -> Result<Answer, NotifyError> {
        delivery::retrying(self.policy, self.started, None, CHANNEL, || {
            self.attempt(method.clone(), path, body, missing, what)
        })
        .await
    }

    /// One attempt: with the cached token, and once more with a new one if it was refused.
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        missing: Missing,
        what: &str,
    ) -> Result<Answer, Failure> {
        let token = self.sf.token(self.http).await?;
        let mut response = self.send(&method, path, body, &token).await?;
        if response.status().as_u16() == 401 {
            tracing::info!(
                channel = CHANNEL,
                "the access token was refused; asking for a new one"
            );
            let token = self.sf.refresh(self.http, &token).await?;
            response = self.send(&method, path, body, &token).await?;
        }
        judge(response, missing, what).await
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        token: &Token,
    ) -> Result<reqwest::Response, Failure> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.access.expose_secret()))
            .map_err(|_| Failure {
                error: NotifyError::Misconfigured {
                    channel: CHANNEL.into(),
                    detail: "the access token is not a valid header value".into(),
                },
                retry_after: None,
            })?;
        bearer.set_sensitive(true);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", token.instance))
            .header(AUTHORIZATION, bearer)
            .header(ACCEPT, JSON);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, JSON)
                // Leadrelay's owner decision stands: no assignment rule re-runs on the write.
                .header("Sforce-Auto-Assign", "FALSE")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        request.send().await.map_err(unreachable)
    }
}

/// An answer judged: success, a missing record where that is an answer, or a failure that is
/// transient (limits, Salesforce's own trouble) or permanent (the request itself is wrong).
async fn judge(
    response: reqwest::Response,
    missing: Missing,
    what: &str,
) -> Result<Answer, Failure> {
    let status = response.status().as_u16();
    let retry_after = delivery::retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (200..300).contains(&status) || (status == 404 && missing == Missing::IsAnswer) {
        return Ok(Answer { status, body });
    }
    let (code, detail) = salesforce_error(&body);
    let detail = format!("{what}: {detail}");
    let failure = |error| Failure { error, retry_after };
    if status == 300 {
        return Err(failure(NotifyError::Permanent {
            channel: CHANNEL.into(),
            detail: format!(
                "{what}: the external id matches several records (HTTP 300): make the field Unique"
            ),
        }));
    }
    if status == 403 && code == "REQUEST_LIMIT_EXCEEDED" {
        // The org's API limits: transient, retried with backoff, then by the queue.
        return Err(failure(NotifyError::Unreachable {
            channel: CHANNEL.into(),
            detail: format!("API request limit exceeded (403): {detail}"),
        }));
    }
    if status == 401 {
        return Err(failure(NotifyError::Rejected {
            channel: CHANNEL.into(),
            status,
            detail: format!("{detail} (even with a new access token)"),
        }));
    }
    // 4xx but 408/429 permanent, 408/429/5xx transient: NotifyError::is_permanent decides.
    Err(failure(NotifyError::Rejected {
        channel: CHANNEL.into(),
        status,
        detail,
    }))
}

/// The first error of Salesforce's `[{"message", "errorCode", "fields"}]` as
/// `(errorCode, "errorCode: message (fields ...)")`, e-mail addresses masked and cut.
fn salesforce_error(body: &Value) -> (String, String) {
    let first = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    let code = first["errorCode"]
        .as_str()
        .unwrap_or("UNKNOWN_ERROR")
        .to_owned();
    let mut detail = format!("{code}: {}", mask(first["message"].as_str().unwrap_or("")));
    if let Some(fields) = first["fields"].as_array().filter(|f| !f.is_empty()) {
        let names: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
        detail.push_str(&format!(" (fields {})", names.join(", ")));
    }
    let extra = body.as_array().map_or(0, |a| a.len().saturating_sub(1));
    if extra > 0 {
        detail.push_str(&format!(" and {extra} more"));
    }
    (
        code,
        leadrelay_shared::render::truncate(&detail, DETAIL_LIMIT),
    )
}

/// Salesforce's messages may quote a value (an invalid address, a duplicate's e-mail): any
/// word with an `@` is masked, so the prospect's address never reaches logs or dead letters.
fn mask(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains('@') { "[e-mail]" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A record id from an answer (`id` from an upsert or create, `Id` from a record).
fn record_id(body: &Value) -> Option<String> {
    body["id"]
        .as_str()
        .or(body["Id"].as_str())
        .filter(|id| matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
}

/// `instance_url` as a REST base: https (plain http only on a loopback host), no credentials.
fn instance_base(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    (scheme_ok && url.username().is_empty() && url.password().is_none() && url.query().is_none())
        .then(|| text.trim_end_matches('/').to_owned())
}

/// A value as one URL path segment.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        // form encoding writes a space as `+`, which a path would keep as a plus.
        .replace('+', "%20")
}

/// A request that got no answer: reqwest's text can hold the URL, so only its kind is kept.
fn unreachable(e: reqwest::Error) -> Failure {
    let detail = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Failure {
        error: NotifyError::Unreachable {
            channel: CHANNEL.into(),
            detail: detail.into(),
        },
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_code_and_fields_and_mask_addresses() {
        let body = json!([
            {"message": "Email: invalid email address: tom@@initech.example", "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]},
            {"message": "second", "errorCode": "X", "fields": []}
        ]);
        let (code, detail) = salesforce_error(&body);
        assert_eq!(code, "INVALID_EMAIL_ADDRESS");
        assert_eq!(
            detail,
            "INVALID_EMAIL_ADDRESS: Email: invalid email address: [e-mail] (fields Email) and 1 more"
        );
        assert_eq!(salesforce_error(&Value::Null).0, "UNKNOWN_ERROR");
    }

    #[test]
    fn instance_urls_and_path_segments_are_safe() {
        assert_eq!(
            instance_base("https://acme.my.salesforce.com/").as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert!(instance_base("http://acme.my.salesforce.com").is_none());
        assert!(instance_base("http://127.0.0.1:9").is_some());
        assert!(instance_base("https://u:p@acme.example").is_none());
        assert_eq!(segment("a/b c+d"), "a%2Fb%20c%2Bd");
        assert_eq!(
            record_id(&json!({"id": "00Q5e00000AbCdEAAV"})).as_deref(),
            Some("00Q5e00000AbCdEAAV")
        );
        assert!(record_id(&json!({"id": "../x"})).is_none());
    }
}

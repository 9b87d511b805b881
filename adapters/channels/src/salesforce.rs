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

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{Map, Value};

use leadrelay_crm::salesforce::{error_detail as salesforce_error, Token, Tokens};
use leadrelay_crm::CallError;
use leadrelay_shared::config::{
    is_salesforce_owner_id, is_salesforce_queue_id, ConfigError, SalesforceConfig,
    SalesforceOwnerPolicy,
};
use leadrelay_shared::ports::{Clock, NotifyError};
use leadrelay_shared::salesforce::SalesforceWrite;

use crate::delivery::{self, DeliveryPolicy, Failure};

const CHANNEL: &str = "salesforce";
const JSON: &str = "application/json";

/// The `[notify.salesforce]` client, with its cached token.
pub struct Salesforce {
    config: SalesforceConfig,
    /// One token for every delivery (`leadrelay-crm` keeps and refreshes it).
    tokens: Tokens,
}

impl Salesforce {
    /// Fails on a JWT bearer key that cannot sign (see [`Tokens::from_config`]).
    pub fn from_config(config: &SalesforceConfig) -> Result<Self, ConfigError> {
        Ok(Salesforce {
            config: config.clone(),
            tokens: Tokens::from_config(config)?,
        })
    }

    /// The clock token lifetimes and JWT expiries are read from.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.tokens.set_clock(clock);
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
}

/// A token failure under the delivery rules: a refused grant is a misconfiguration, a 5xx,
/// 408 or 429 passes on a retry, no answer is unreachable.
fn token_failure(error: CallError) -> Failure {
    let (error, retry_after) = match error {
        CallError::Unreachable { detail } => (
            NotifyError::Unreachable {
                channel: CHANNEL.into(),
                detail,
            },
            None,
        ),
        CallError::Refused {
            status,
            detail,
            retry_after,
        } => (
            NotifyError::Rejected {
                channel: CHANNEL.into(),
                status,
                detail,
            },
            retry_after,
        ),
        CallError::Misconfigured(detail) => (
            NotifyError::Misconfigured {
                channel: CHANNEL.into(),
                detail,
            },
            None,
        ),
    };
    Failure { error, retry_after }
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
        let token = self
            .sf
            .tokens
            .token(self.http)
            .await
            .map_err(token_failure)?;
        let mut response = self.send(&method, path, body, &token).await?;
        if response.status().as_u16() == 401 {
            tracing::info!(
                channel = CHANNEL,
                "the access token was refused; asking for a new one"
            );
            let token = self
                .sf
                .tokens
                .refresh(self.http, &token)
                .await
                .map_err(token_failure)?;
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
        let bearer = token.bearer().map_err(token_failure)?;
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
        request
            .send()
            .await
            .map_err(|e| token_failure(leadrelay_crm::unreachable(&e)))
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

/// A record id from an answer (`id` from an upsert or create, `Id` from a record).
fn record_id(body: &Value) -> Option<String> {
    body["id"]
        .as_str()
        .or(body["Id"].as_str())
        .filter(|id| matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
}

/// A value as one URL path segment.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        // form encoding writes a space as `+`, which a path would keep as a plus.
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments_and_record_ids_are_safe() {
        assert_eq!(segment("a/b c+d"), "a%2Fb%20c%2Bd");
        assert_eq!(
            record_id(&json!({"id": "00Q5e00000AbCdEAAV"})).as_deref(),
            Some("00Q5e00000AbCdEAAV")
        );
        assert!(record_id(&json!({"id": "../x"})).is_none());
    }
}

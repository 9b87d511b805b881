//! Slack as an app: alerts posted with a bot token through the Web API (`chat.postMessage`),
//! in the rep's DM with the app (`conversations.open`) or in a team's channel with the owner
//! @-mentioned. A rep without a configured member id is found by e-mail
//! (`users.lookupByEmail`), and the answer kept in memory for `user_cache_ttl`.
//!
//! Slack answers most failures with HTTP 200 and `{"ok": false, "error": "..."}`: rate limits
//! (`ratelimited`, HTTP 429 with `Retry-After`) and Slack's own outages are transient and
//! retried under the delivery rules; every other error (`token_revoked`, `invalid_auth`,
//! `account_inactive`, `channel_not_found`, `is_archived`, `not_in_channel`, ...) is permanent:
//! the notify stage parks the lead's message in the dead-letter queue (which the operations
//! alarm reports) while the owner's other channels are delivered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use leadrelay_shared::config::SlackAppConfig;
use leadrelay_shared::ports::{NotifyError, PostedMessage, SlackUser};
use leadrelay_shared::render::Alert;

use crate::delivery::{self, DeliveryPolicy, Failure, RateLimits};

const CHANNEL: &str = "slack";

/// Slack's error codes that a later attempt may not get (its own outages and rate limits).
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// A method's arguments: JSON for the methods that take it, a form for those that do not
/// (`users.lookupByEmail` takes only `application/x-www-form-urlencoded`).
enum Arguments {
    Json(Vec<u8>),
    Form(String),
}

/// The bot token's client, with its caches.
pub struct SlackApp {
    base: String,
    token: SecretString,
    ttl: Duration,
    /// Lower-cased e-mail address to member id, with when it was looked up.
    users: Mutex<HashMap<String, (String, Instant)>>,
    /// Member id to the id of their DM with the app (a DM's id does not change).
    dms: Mutex<HashMap<String, String>>,
    /// Member id to their e-mail address, with when it was learnt.
    emails: Mutex<HashMap<String, (String, Instant)>>,
}

impl SlackApp {
    /// The app `[notify.slack]` configures; `None` before its token was resolved.
    pub fn from_config(config: &SlackAppConfig) -> Option<Self> {
        Some(SlackApp {
            base: config.api_base_url.trim_end_matches('/').to_owned(),
            token: config.token.clone()?,
            ttl: config.user_cache_ttl.0,
            users: Mutex::new(HashMap::new()),
            dms: Mutex::new(HashMap::new()),
            emails: Mutex::new(HashMap::new()),
        })
    }

    /// Posts `alert` to `channel`, or to `mention`'s DM when no channel is given; `mention` is
    /// @-mentioned at the top of the message.
    pub async fn post_alert(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        limits: &RateLimits,
        channel: Option<&str>,
        mention: Option<&SlackUser>,
        alert: &Alert,
    ) -> Result<PostedMessage, NotifyError> {
        let started = Instant::now();
        let call = Call {
            app: self,
            http,
            policy,
            started,
        };
        let user = match (mention, channel) {
            (Some(user), None) => Some(call.user_id(user).await?),
            // In a channel, a rep Slack does not know is posted without a mention rather than
            // not at all; a transient failure is still retried.
            (Some(user), Some(_)) => match call.user_id(user).await {
                Ok(id) => Some(id),
                Err(error) if error.is_permanent() => {
                    tracing::warn!(channel = CHANNEL, error = %error, "posting without a mention");
                    None
                }
                Err(error) => return Err(error),
            },
            (None, _) => None,
        };
        let target = match (channel, &user) {
            (Some(channel), _) => channel.to_owned(),
            (None, Some(user)) => call.dm(user).await?,
            (None, None) => {
                return Err(NotifyError::Misconfigured {
                    channel: CHANNEL.into(),
                    detail: "no channel and no user to message".into(),
                })
            }
        };
        let body = message(alert, &target, user.as_deref());
        let answer = call
            .method(
                "chat.postMessage",
                Some((limits, &format!("app:{target}"))),
                &Arguments::Json(json_bytes(&body)),
            )
            .await?;
        Ok(PostedMessage {
            channel: slack_id(&answer["channel"]).unwrap_or(target),
            ts: answer["ts"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// A member's e-mail address: learnt from a lookup by e-mail, else asked with `users.info`
    /// (scope `users:read.email`); `None` when Slack shows none (a bot, a guest, a hidden
    /// address).
    pub async fn member_email(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        member: &str,
    ) -> Result<Option<String>, NotifyError> {
        {
            let emails = self.emails.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((email, at)) = emails.get(member) {
                if at.elapsed() < self.ttl {
                    return Ok(Some(email.clone()));
                }
            }
        }
        let call = Call {
            app: self,
            http,
            policy,
            started: Instant::now(),
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("user", member)
            .finish();
        let answer = call
            .method("users.info", None, &Arguments::Form(form))
            .await?;
        let email = answer["user"]["profile"]["email"]
            .as_str()
            .filter(|e| !e.is_empty())
            .map(str::to_owned);
        if let Some(email) = &email {
            self.emails
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(member.to_owned(), (email.clone(), Instant::now()));
        }
        Ok(email)
    }

    /// Posts `message` (Block Kit: its `text` fallback and `blocks`) in `channel`: the same
    /// `chat.postMessage` request as an alert's, under the channel's rate limit.
    pub async fn post_to_channel(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        limits: &RateLimits,
        channel: &str,
        message: &Value,
    ) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "channel": channel,
            "text": message["text"],
            "blocks": message["blocks"],
        });
        self.in_channel(http, policy, limits, channel, "chat.postMessage", &body)
            .await
    }

    /// Posts `text` (Slack mrkdwn, escaped by the caller) as a reply in the thread of a message
    /// the app posted (`chat.postMessage` with `thread_ts`).
    pub async fn reply(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        limits: &RateLimits,
        posted: &PostedMessage,
        text: &str,
    ) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "channel": posted.channel,
            "thread_ts": posted.ts,
            "text": text,
        });
        self.in_channel(
            http,
            policy,
            limits,
            &posted.channel,
            "chat.postMessage",
            &body,
        )
        .await
    }

    /// Replaces a message the app posted (`chat.update`) with `message`'s `text` and
    /// `blocks`.
    pub async fn update(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        limits: &RateLimits,
        posted: &PostedMessage,
        message: &Value,
    ) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "channel": posted.channel,
            "ts": posted.ts,
            "text": message["text"],
            "blocks": message["blocks"],
        });
        self.in_channel(http, policy, limits, &posted.channel, "chat.update", &body)
            .await
    }

    /// Calls `method` with `body` in `channel` (a message to post there, or one the app posted
    /// there), under that channel's rate limit.
    async fn in_channel(
        &self,
        http: &reqwest::Client,
        policy: &DeliveryPolicy,
        limits: &RateLimits,
        channel: &str,
        method: &str,
        body: &Value,
    ) -> Result<(), NotifyError> {
        let call = Call {
            app: self,
            http,
            policy,
            started: Instant::now(),
        };
        call.method(
            method,
            Some((limits, &format!("app:{channel}"))),
            &Arguments::Json(json_bytes(body)),
        )
        .await
        .map(|_| ())
    }
}

/// The alert's Block Kit payload for `chat.postMessage`: `channel` added, and the mention (when
/// there is one) first in the fallback text and in a section under the header.
fn message(alert: &Alert, channel: &str, user: Option<&str>) -> Value {
    let mut body = alert.slack.clone();
    if let Value::Object(map) = &mut body {
        map.insert("channel".into(), channel.into());
        if let Some(user) = user {
            let mention = format!("<@{user}>");
            let text = map.get("text").and_then(Value::as_str).unwrap_or_default();
            let text = format!("{mention} {text}");
            map.insert("text".into(), text.into());
            if let Some(Value::Array(blocks)) = map.get_mut("blocks") {
                let section = serde_json::json!({
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": format!("For {mention}") },
                });
                // After the header, so the mention reads as the message's addressee.
                blocks.insert(blocks.len().min(1), section);
            }
        }
    }
    body
}

fn json_bytes(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A member, channel or DM id from Slack's answer, when it looks like one (it is written into
/// later requests).
fn slack_id(value: &Value) -> Option<String> {
    let id = value.as_str()?;
    let mut chars = id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && id.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    valid.then(|| id.to_owned())
}

/// One delivery's calls, sharing its budget.
struct Call<'a> {
    app: &'a SlackApp,
    http: &'a reqwest::Client,
    policy: &'a DeliveryPolicy,
    started: Instant,
}

impl Call<'_> {
    /// The member id: configured, cached, or looked up by e-mail.
    async fn user_id(&self, user: &SlackUser) -> Result<String, NotifyError> {
        if let Some(id) = &user.id {
            return Ok(id.clone());
        }
        let email = user
            .email
            .as_deref()
            .ok_or_else(|| NotifyError::Misconfigured {
                channel: CHANNEL.into(),
                detail: "the rep has neither slack_user_id nor email".into(),
            })?;
        let key = email.to_ascii_lowercase();
        {
            let users = self.app.users.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, at)) = users.get(&key) {
                if at.elapsed() < self.app.ttl {
                    return Ok(id.clone());
                }
            }
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("email", email)
            .finish();
        let answer = self
            .method("users.lookupByEmail", None, &Arguments::Form(form))
            .await?;
        let id =
            slack_id(&answer["user"]["id"]).ok_or_else(|| unreadable("users.lookupByEmail"))?;
        let now = Instant::now();
        self.app
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (id.clone(), now));
        self.app
            .emails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (email.to_owned(), now));
        Ok(id)
    }

    /// The id of `user`'s DM with the app, opened once.
    async fn dm(&self, user: &str) -> Result<String, NotifyError> {
        if let Some(dm) = self
            .app
            .dms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return Ok(dm.clone());
        }
        let body = serde_json::json!({ "users": user });
        let answer = self
            .method(
                "conversations.open",
                None,
                &Arguments::Json(json_bytes(&body)),
            )
            .await?;
        let dm =
            slack_id(&answer["channel"]["id"]).ok_or_else(|| unreadable("conversations.open"))?;
        self.app
            .dms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_owned(), dm.clone());
        Ok(dm)
    }

    /// Calls one Web API method under the delivery rules; the answer when `ok` is true.
    async fn method(
        &self,
        name: &str,
        turn: Option<(&RateLimits, &str)>,
        arguments: &Arguments,
    ) -> Result<Value, NotifyError> {
        let url = format!("{}/{name}", self.app.base);
        delivery::retrying(self.policy, self.started, turn, CHANNEL, || async {
            let request = self
                .http
                .post(&url)
                .bearer_auth(self.app.token.expose_secret());
            let request = match arguments {
                Arguments::Json(body) => request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )
                    .body(body.clone()),
                Arguments::Form(body) => request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body.clone()),
            };
            attempt(name, request).await
        })
        .await
    }
}

fn unreadable(method: &str) -> NotifyError {
    NotifyError::Unreachable {
        channel: CHANNEL.into(),
        detail: format!("{method}: an answer without the expected id"),
    }
}

/// One request, judged by Slack's rules: HTTP 429 and 5xx, and the transient error codes, are
/// worth another attempt; other error codes are permanent. Details name the method and Slack's
/// error code, never the token or anything else the answer holds.
async fn attempt(method: &str, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
    let transient = |detail: String, retry_after| Failure {
        error: NotifyError::Unreachable {
            channel: CHANNEL.into(),
            detail,
        },
        retry_after,
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Err(transient(format!("{method}: {kind}"), None));
        }
    };
    let status = response.status();
    let retry_after = delivery::retry_after(response.headers());
    let answer: Option<Value> = response
        .bytes()
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let code = answer
        .as_ref()
        .and_then(|a| a["error"].as_str())
        .map(error_code);
    if !status.is_success() {
        let error = NotifyError::Rejected {
            channel: CHANNEL.into(),
            status: status.as_u16(),
            detail: format!("{method}: {}", code.as_deref().unwrap_or("no error code")),
        };
        return Err(Failure { error, retry_after });
    }
    let Some(answer) = answer else {
        return Err(transient(
            format!("{method}: an answer that is not JSON"),
            None,
        ));
    };
    if answer["ok"] == Value::Bool(true) {
        return Ok(answer);
    }
    let code = code.unwrap_or_else(|| "no error code".into());
    if TRANSIENT_ERRORS.contains(&code.as_str()) {
        return Err(transient(format!("{method}: {code}"), retry_after));
    }
    Err(Failure {
        error: NotifyError::Permanent {
            channel: CHANNEL.into(),
            detail: format!("{method}: {code}{}", hint(&code)),
        },
        retry_after: None,
    })
}

/// Slack's error code as written into our errors: its own alphabet only, and short.
fn error_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// What the operator does about a permanent error.
fn hint(code: &str) -> &'static str {
    match code {
        "token_revoked" | "invalid_auth" | "not_authed" | "account_inactive" | "token_expired" => {
            " (the bot token no longer works: reinstall the Slack app and update the token's variable)"
        }
        "channel_not_found" | "not_in_channel" => {
            " (invite the app to the channel, or fix the slack_channel id)"
        }
        "is_archived" => " (the channel is archived: set another slack_channel)",
        "users_not_found" => " (no Slack user has the rep's e-mail: set slack_user_id)",
        "missing_scope" => " (add the scope the manifest lists and reinstall the app)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_keep_only_slacks_alphabet() {
        assert_eq!(error_code("token_revoked"), "token_revoked");
        assert_eq!(error_code("<b>xoxb-1</b>"), "bxoxb1b");
    }

    #[test]
    fn ids_from_answers_must_look_like_ids() {
        assert_eq!(slack_id(&"D0123ABC".into()).as_deref(), Some("D0123ABC"));
        assert_eq!(slack_id(&"d01".into()), None);
        assert_eq!(slack_id(&"C01|x".into()), None);
        assert_eq!(slack_id(&Value::Null), None);
    }
}

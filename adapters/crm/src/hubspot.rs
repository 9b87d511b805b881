//! HubSpot's CRM API v3 with a private app's bearer token: the search call and HubSpot's
//! error shape (`{"status", "message", "correlationId", "category", "errors"}`).
//!
//! The write-back (`leadrelay-channels`) calls HubSpot under its delivery rules (rate limits,
//! retries, step receipts); the owner lookup (`leadrelay-providers`) calls [`Api::search`]
//! once per question within the lead's enrichment budget.

use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use leadrelay_shared::config::HubspotConfig;

use crate::{unreachable, CallError};

/// The API at `[notify.hubspot] base_url` with its token.
#[derive(Clone)]
pub struct Api {
    base: url::Url,
    token: SecretString,
}

impl Api {
    /// The API `[notify.hubspot]` names, or why it cannot be called.
    pub fn from_config(config: &HubspotConfig) -> Result<Self, CallError> {
        let token = config.token.clone().ok_or_else(|| {
            CallError::Misconfigured("no token (notify.hubspot.token_env)".into())
        })?;
        let base = url::Url::parse(&config.base_url)
            .ok()
            .filter(|url| !url.cannot_be_a_base())
            .ok_or_else(|| {
                CallError::Misconfigured("notify.hubspot.base_url is not a base URL".into())
            })?;
        Ok(Api { base, token })
    }

    /// `base_url` with these path segments (each percent-encoded).
    pub fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `POST /crm/v3/objects/{object}/search` with `body`: the answer's `results`. `email` is
    /// masked out of any error HubSpot sends back. One attempt: the caller owns the budget.
    pub async fn search(
        &self,
        http: &reqwest::Client,
        object: &str,
        body: &Value,
        email: &str,
    ) -> Result<Vec<Value>, CallError> {
        let url = self.url(&["crm", "v3", "objects", object, "search"]);
        let response = http
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .header(ACCEPT, "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let retry_after = crate::retry_after(response.headers());
        let text = response.text().await.map_err(|e| unreachable(&e))?;
        if !(200..300).contains(&status) {
            return Err(CallError::Refused {
                status,
                detail: error_detail(&text, email),
                retry_after,
            });
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| CallError::Refused {
            status,
            detail: "the search answer is not JSON".into(),
            retry_after: None,
        })?;
        match answer.get("results") {
            Some(Value::Array(results)) => Ok(results.clone()),
            _ => Err(CallError::Refused {
                status,
                detail: "the search answer has no results list".into(),
                retry_after: None,
            }),
        }
    }
}

/// A record's `id`, as HubSpot answers it (a string; a number is read too).
pub fn object_id(record: &Value) -> Option<String> {
    match record.get("id")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// HubSpot's error as the logs and the dead-letter queue keep it: its category, message
/// and the scopes it asks for, without the prospect's e-mail address.
pub fn error_detail(body: &str, email: &str) -> String {
    let detail = match serde_json::from_str::<Value>(body) {
        Ok(error) => {
            let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or("");
            let mut detail = match (field("category"), field("message")) {
                ("", message) => message.to_owned(),
                (category, message) => format!("{category}: {message}"),
            };
            let scopes: Vec<&str> = error
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.pointer("/context/requiredGranularScopes"))
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !scopes.is_empty() {
                detail.push_str(&format!(" (required scopes: {})", scopes.join(", ")));
            }
            detail
        }
        Err(_) => body.trim().to_owned(),
    };
    let detail = without(&detail, email);
    leadrelay_shared::render::truncate(&detail, 300)
}

/// `text` with every occurrence of `secret` (ASCII case ignored) replaced.
pub fn without(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    // ASCII lower-casing keeps byte offsets, so positions found in the copy hold in `text`.
    let (haystack, needle) = (text.to_ascii_lowercase(), secret.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = haystack[at..].find(&needle) {
        out.push_str(&text[at..at + found]);
        out.push_str("<the prospect's e-mail>");
        at += found + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hubspots_errors_keep_their_category_message_and_missing_scopes() {
        let forbidden = json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call.",
            "correlationId": "b7e9d4f2-1c3a-4f5e-9d8b-6a7c5e4d3b2a",
            "errors": [{"message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": ["crm.objects.contacts.read"]}}],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES",
        });
        assert_eq!(
            error_detail(&forbidden.to_string(), "tom@x.example"),
            "MISSING_SCOPES: This app hasn't been granted all required scopes to make this call. \
             (required scopes: crm.objects.contacts.read)"
        );
        assert_eq!(
            error_detail(
                "<html>Bad gateway for tom@x.example</html>",
                "tom@x.example"
            ),
            "<html>Bad gateway for <the prospect's e-mail></html>"
        );
    }

    #[test]
    fn errors_never_carry_the_prospects_address() {
        assert_eq!(
            without(
                "Tom.Baker@x.example is bad; tom.baker@X.example!",
                "tom.baker@x.example"
            ),
            "<the prospect's e-mail> is bad; <the prospect's e-mail>!"
        );
        assert_eq!(without("nothing here", "a@b.c"), "nothing here");
    }
}

//! Salesforce's REST API: the OAuth 2.0 token, SOQL queries and Salesforce's error shape.
//!
//! **Tokens.** A client-credentials or JWT bearer grant at `{login_url}/services/oauth2/token`
//! answers `access_token`, `instance_url`, `token_type`, `issued_at` (and `id`, `scope`,
//! `signature`) but no expiry: the session lasts as long as the org's timeout allows. The
//! token is kept for `token_lifetime`; a caller whose call is answered 401
//! (`INVALID_SESSION_ID`) asks [`Tokens::refresh`] for a new one once. A refused grant
//! (`invalid_client`, `invalid_grant`, ...) is a misconfiguration no retry fixes.
//!
//! **Queries.** `GET /services/data/vXX.X/query?q=<SOQL>` answers `{"totalSize", "done",
//! "records": [...]}`. Values are put into SOQL only through [`literal`] (and [`like_literal`]
//! for `LIKE` patterns), which escape every character SOQL gives a meaning inside quotes.
//!
//! **Errors** come as `[{"message", "errorCode", "fields"}]`; [`error_detail`] keeps the code
//! and the message with any e-mail address masked, and never a token.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use leadrelay_shared::config::{ConfigError, SalesforceAuth, SalesforceConfig};
use leadrelay_shared::jwt::RsaKey;
use leadrelay_shared::ports::{Clock, SystemClock};

use crate::{unreachable, CallError};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The JWT's validity: Salesforce wants `exp` within 3 minutes.
const ASSERTION_LIFETIME: SignedDuration = SignedDuration::from_secs(120);
/// Characters of Salesforce's own error text kept in a failure.
pub const DETAIL_LIMIT: usize = 300;

/// An access token and the instance it works on.
#[derive(Clone)]
pub struct Token {
    pub access: SecretString,
    /// `instance_url` from the token answer: the REST API's base.
    pub instance: String,
    /// When it is no longer used (by the clock, `token_lifetime` after it was issued).
    expires_at: Timestamp,
}

impl Token {
    /// `Authorization: Bearer ...`, marked sensitive so it never shows in Debug output.
    pub fn bearer(&self) -> Result<HeaderValue, CallError> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.access.expose_secret()))
            .map_err(|_| {
                CallError::Misconfigured("the access token is not a valid header value".into())
            })?;
        bearer.set_sensitive(true);
        Ok(bearer)
    }
}

/// The `[notify.salesforce]` app's access token, cached: one token for every call of the
/// process; the lock also makes concurrent refreshes one request.
pub struct Tokens {
    config: SalesforceConfig,
    /// The JWT bearer flow's key, parsed once here (the configuration check only looks at
    /// its PEM: the functions that never sign do not parse it).
    key: Option<RsaKey>,
    clock: Arc<dyn Clock>,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Tokens {
    /// Fails on a JWT key that cannot sign, with the configuration error naming
    /// `notify.salesforce.private_key_env`: built at start, that stops the start.
    pub fn from_config(config: &SalesforceConfig) -> Result<Self, ConfigError> {
        Ok(Tokens {
            config: config.clone(),
            key: config.signing_key()?,
            clock: Arc::new(SystemClock),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The clock token lifetimes and JWT expiries are read from.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub fn config(&self) -> &SalesforceConfig {
        &self.config
    }

    /// The cached token while it is fresh, else a new one.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Token, CallError> {
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
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refused: &Token,
    ) -> Result<Token, CallError> {
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
    async fn request_token(&self, http: &reqwest::Client) -> Result<Token, CallError> {
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
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let retry_after = crate::retry_after(response.headers());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            // OAuth's own error shape: {"error": "invalid_grant", "error_description": "..."}.
            let code = answer["error"].as_str().unwrap_or("unknown_error");
            let description = answer["error_description"].as_str().unwrap_or_default();
            let detail = leadrelay_shared::render::truncate(
                &format!(
                    "token request refused ({status}): {code}: {}",
                    mask(description)
                ),
                DETAIL_LIMIT,
            );
            return Err(if status >= 500 || status == 429 || status == 408 {
                CallError::Refused {
                    status,
                    detail,
                    retry_after,
                }
            } else {
                // A wrong key, secret, user or app setting: no retry can fix it.
                CallError::Misconfigured(detail)
            });
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
    fn grant(&self, now: Timestamp) -> Result<String, CallError> {
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
                let key = self.key.as_ref().ok_or_else(|| {
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

    /// Runs one SOQL query (`GET /services/data/vXX.X/query?q=...`): the answer's `records`.
    /// A 401 gets a new token once and is asked again. One attempt otherwise: the caller owns
    /// the budget. Put values into `soql` only through [`literal`] or [`like_literal`].
    pub async fn query(&self, http: &reqwest::Client, soql: &str) -> Result<Vec<Value>, CallError> {
        let token = self.token(http).await?;
        let mut response = self.get_query(http, soql, &token).await?;
        if response.status().as_u16() == 401 {
            tracing::info!("the Salesforce access token was refused; asking for a new one");
            let token = self.refresh(http, &token).await?;
            response = self.get_query(http, soql, &token).await?;
        }
        let status = response.status().as_u16();
        let retry_after = crate::retry_after(response.headers());
        let text = response.text().await.map_err(|e| unreachable(&e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let (_, detail) = error_detail(&body);
            return Err(CallError::Refused {
                status,
                detail,
                retry_after,
            });
        }
        match body.get("records") {
            Some(Value::Array(records)) => Ok(records.clone()),
            _ => Err(CallError::Refused {
                status,
                detail: "the query answer has no records list".into(),
                retry_after: None,
            }),
        }
    }

    async fn get_query(
        &self,
        http: &reqwest::Client,
        soql: &str,
        token: &Token,
    ) -> Result<reqwest::Response, CallError> {
        let mut url = url::Url::parse(&format!(
            "{}/services/data/v{}/query",
            token.instance, self.config.api_version
        ))
        .map_err(|_| misconfigured("the instance URL and API version make no valid URL"))?;
        url.query_pairs_mut().append_pair("q", soql);
        http.get(url)
            .header(AUTHORIZATION, token.bearer()?)
            .header(ACCEPT, JSON)
            .send()
            .await
            .map_err(|e| unreachable(&e))
    }
}

fn misconfigured(detail: &str) -> CallError {
    CallError::Misconfigured(detail.into())
}

/// `value` as a SOQL string literal, quotes included: the backslash first, then the quotes and
/// the escapes SOQL knows (`\n \r \t \b \f`). `None` for another control character, which SOQL
/// cannot carry and no e-mail address or domain holds.
pub fn literal(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// `%value%` as a SOQL `LIKE` pattern literal: as [`literal`], with `%` and `_` escaped so
/// they match themselves.
pub fn like_literal(value: &str) -> Option<String> {
    let escaped = value.replace('\\', "\\\\");
    let escaped = escaped.replace('%', "\\%").replace('_', "\\_");
    // `literal` would double the backslashes just written: quote the rest by hand.
    let mut out = String::with_capacity(escaped.len() + 4);
    out.push_str("'%");
    for c in escaped.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    out.push_str("%'");
    Some(out)
}

/// The first error of Salesforce's `[{"message", "errorCode", "fields"}]` as
/// `(errorCode, "errorCode: message (fields ...)")`, e-mail addresses masked and cut.
pub fn error_detail(body: &Value) -> (String, String) {
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

/// Salesforce's messages may quote a value (an invalid address, a duplicate's e-mail, a
/// query's literal): any word with an `@` is masked, so the prospect's address never reaches
/// logs or dead letters.
pub fn mask(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains('@') { "[e-mail]" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `instance_url` as a REST base: https (plain http only on a loopback host), no credentials.
fn instance_base(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    crate::is_api_base(&url).then(|| text.trim_end_matches('/').to_owned())
}

/// Whether two Salesforce ids name the same record: an 18-character id is the 15-character
/// (case-sensitive) one with a 3-character case checksum added, and either form may be
/// configured.
pub fn same_id(a: &str, b: &str) -> bool {
    matches!(a.len(), 15 | 18) && matches!(b.len(), 15 | 18) && a.get(..15) == b.get(..15)
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
        let (code, detail) = error_detail(&body);
        assert_eq!(code, "INVALID_EMAIL_ADDRESS");
        assert_eq!(
            detail,
            "INVALID_EMAIL_ADDRESS: Email: invalid email address: [e-mail] (fields Email) and 1 more"
        );
        assert_eq!(error_detail(&Value::Null).0, "UNKNOWN_ERROR");
    }

    #[test]
    fn instance_urls_are_safe() {
        assert_eq!(
            instance_base("https://acme.my.salesforce.com/").as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert!(instance_base("http://acme.my.salesforce.com").is_none());
        assert!(instance_base("http://127.0.0.1:9").is_some());
        assert!(instance_base("https://u:p@acme.example").is_none());
    }

    #[test]
    fn soql_literals_escape_backslashes_then_quotes() {
        assert_eq!(literal("jo@acme.io").as_deref(), Some("'jo@acme.io'"));
        assert_eq!(
            literal("x'OR Email!='@a.example").as_deref(),
            Some(r"'x\'OR Email!=\'@a.example'")
        );
        // A backslash before a quote cannot undo the quote's escape.
        assert_eq!(literal(r"a\'b").as_deref(), Some(r"'a\\\'b'"));
        assert_eq!(literal("a\"b\nc").as_deref(), Some(r#"'a\"b\nc'"#));
        assert_eq!(literal("a\u{0}b"), None);
        assert_eq!(
            like_literal("acme_co.io").as_deref(),
            Some(r"'%acme\_co.io%'")
        );
        assert_eq!(like_literal(r"100%\'").as_deref(), Some(r"'%100\%\\\'%'"));
    }

    #[test]
    fn ids_match_in_either_length() {
        assert!(same_id("0055e000001AbCd", "0055e000001AbCdAAK"));
        assert!(same_id("0055e000001AbCdAAK", "0055e000001AbCdAAK"));
        assert!(!same_id("0055e000001abcd", "0055e000001AbCdAAK"));
        assert!(!same_id("005", "005"));
    }
}

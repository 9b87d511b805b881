//! `[[sources]]`: who may post webhooks, how they sign them, and (for a platform's own
//! payload) how the body maps to a lead. A source may name a shipped `preset` and override any
//! of its keys. Secrets become keys at load, so a bad or missing secret stops the start, named
//! by its position and never by its value.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;

use super::enrichment::EnrichmentConfig;
use super::load::{self, Env};
use super::providers::TRANSCRIPT;
use super::{ConfigError, Validator};
use crate::mapping::{Mapping, MappingConfig, TurnPaths, TurnReader};
use crate::model::Turn;
use crate::signature::declared::{
    Algorithm, Encoding, HeaderFields, HmacScheme, Template, TimeUnit, TokenPlace, TokenScheme,
};
use crate::signature::{Scheme, SigningKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    StandardWebhooks,
    BodyHmac,
    /// An HMAC described in `[sources.signature]`.
    Hmac,
    /// A static token described in `[sources.signature]`: no signature at all.
    Token,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub id: String,
    /// A shipped platform preset (`leadrelay sources presets` lists them): its scheme,
    /// signature and mapping, under this source's own keys.
    #[serde(default)]
    pub preset: Option<String>,
    /// Required unless the preset sets it.
    #[serde(default)]
    pub scheme: Option<SchemeName>,
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
    /// For `hmac` and `token`: how the platform signs, as data (`SignatureConfig`).
    #[serde(default)]
    pub signature: Option<toml::Table>,
    /// How the platform's payload becomes a lead ([`MappingConfig`]); without one the body
    /// must be leadrelay's own capture event.
    #[serde(default)]
    pub mapping: Option<toml::Table>,
    /// The webhook URL exactly as entered on the platform, for schemes that sign the URL
    /// (`{url}`) when a proxy changes the host or scheme; by default the URL is rebuilt from
    /// the request.
    #[serde(default)]
    pub url: Option<String>,
    /// For a scheme that signs no timestamp (`body_hmac`, `token`, many `hmac` platforms):
    /// how long a signed body is remembered, so that the same bytes again with a fresh event
    /// id are a duplicate of the first lead. Default [`DEFAULT_REPLAY_WINDOW_HOURS`].
    #[serde(default)]
    pub replay_window_hours: Option<u32>,
    /// The exact host names this source's `conversation_transcript_url` may point at (the
    /// transcript fetcher in `leadrelay-providers`); none by default, so no URL is fetched.
    #[serde(default)]
    pub transcript_hosts: Vec<String>,
    /// `[sources.conversation]`: the platform's API that returns the conversation a webhook
    /// only names by id ([`ConversationConfig`]). A preset's section is inactive until the
    /// source sets `token_env`.
    #[serde(default)]
    pub conversation: Option<toml::Table>,
    /// Whether prospects from this source get the acknowledgement e-mail (when
    /// `[notify.email] acknowledge` is on).
    #[serde(default = "default_true")]
    pub acknowledge: bool,
    /// The language of this source's leads when a lead does not state one (a German-only
    /// form): picks the acknowledgement's wording (`[[notify.email.acknowledgements]]`).
    #[serde(default)]
    pub language: Option<String>,
    /// Resolved at load: the parsed keys, newest first as written.
    #[serde(skip)]
    pub keys: Vec<SigningKey>,
    /// Resolved at load: how requests are verified.
    #[serde(skip, default = "unresolved")]
    pub verifier: Scheme,
    /// Resolved at load: the payload mapping, if any.
    #[serde(skip)]
    pub payload: Option<Mapping>,
    /// Resolved at load: the conversation API, when `[sources.conversation]` is active.
    #[serde(skip)]
    pub conversation_api: Option<ConversationApi>,
}

/// `[sources.conversation]` as written (after the preset's is merged under it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationConfig {
    /// The API's URL; `{conversation_id}` is replaced by the lead's, percent-encoded.
    pub url: String,
    /// The environment variable (on AWS: the SSM parameter) holding the API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The header the token is sent in...
    #[serde(default = "authorization")]
    pub header: String,
    /// ...after this text.
    #[serde(default = "bearer")]
    pub prefix: String,
    /// Fixed headers sent with every request (`Intercom-Version`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Where the messages are in the answer, as `[sources.mapping.transcript]` reads them.
    pub list: String,
    /// A message read before the list (Intercom's opening message, `source`).
    #[serde(default)]
    pub first: Option<String>,
    #[serde(default)]
    pub role: Vec<String>,
    pub text: Vec<String>,
    /// When each message was sent (RFC 3339, Unix seconds or milliseconds).
    #[serde(default)]
    pub at: Vec<String>,
    /// The texts are HTML: tags are dropped and entities decoded.
    #[serde(default)]
    pub html: bool,
}

fn authorization() -> String {
    "Authorization".into()
}

fn bearer() -> String {
    "Bearer ".into()
}

/// What `{conversation_id}` is replaced by while the template is checked.
const ID_MARK: &str = "leadrelay-conversation-id";

/// A source's conversation API, checked: the URL's host comes from the configuration only.
#[derive(Debug, Clone)]
pub struct ConversationApi {
    url: String,
    host: String,
    header: String,
    /// The prefix and the token: sent, never logged or stored.
    credential: SecretString,
    token_env: String,
    headers: Vec<(String, String)>,
    reader: TurnReader,
}

impl ConversationApi {
    /// The URL for one conversation, its id percent-encoded so it cannot leave its place in
    /// the path or query.
    pub fn url_for(&self, conversation_id: &str) -> Result<url::Url, String> {
        let id = conversation_id.trim();
        if id.is_empty() {
            return Err("no conversation_id".into());
        }
        let url = url::Url::parse(&self.url.replace("{conversation_id}", &percent_encode(id)))
            .map_err(|e| format!("the conversation URL is not valid ({e})"))?;
        // The encoding above keeps the id out of the host; checked again all the same.
        if url.host_str().map(str::to_ascii_lowercase).as_deref() != Some(self.host.as_str()) {
            return Err("the conversation URL's host changed".into());
        }
        Ok(url)
    }

    /// The header the token goes in (lower case), and its value.
    pub fn credential(&self) -> (&str, &SecretString) {
        (&self.header, &self.credential)
    }

    /// The variable the token came from, to name in errors.
    pub fn token_env(&self) -> &str {
        &self.token_env
    }

    /// The fixed headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The turns in the API's answer.
    pub fn turns(&self, answer: &serde_json::Value) -> Vec<Turn> {
        self.reader.turns(answer)
    }
}

/// Every byte but the unreserved characters of RFC 3986, percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn is_loopback_name(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// The URL template: https (plain http only to a loopback host, for tests), no credentials,
/// `{conversation_id}` in the path or query and no other placeholder. Returns the host.
fn check_conversation_url(template: &str) -> Result<String, String> {
    let mut rest = template;
    let mut has_id = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("an unclosed {")?;
        match &after[..close] {
            "conversation_id" => has_id = true,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}}: only {{conversation_id}} is filled in; \
                     write the value itself (your agent's or workspace's id) into the url"
                ))
            }
        }
        rest = &after[close + 1..];
    }
    if !has_id {
        return Err("must contain {conversation_id}".into());
    }
    let url = url::Url::parse(&template.replace("{conversation_id}", ID_MARK))
        .map_err(|e| format!("not a valid URL: {e}"))?;
    let host = url
        .host_str()
        .ok_or("the URL has no host")?
        .to_ascii_lowercase();
    if host.contains(ID_MARK) {
        return Err("{conversation_id} must be in the path or query, not the host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL carries credentials: use token_env".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_name(&host) => {}
        scheme => {
            return Err(format!(
                "scheme {scheme:?}: https is required (plain http only for a loopback host)"
            ))
        }
    }
    Ok(host)
}

fn unresolved() -> Scheme {
    Scheme::StandardWebhooks { tolerance_secs: 0 }
}

fn default_tolerance() -> u64 {
    300
}

/// How long a body-only signed request is remembered when `replay_window_hours` is not set.
pub const DEFAULT_REPLAY_WINDOW_HOURS: u32 = 7 * 24;

fn default_true() -> bool {
    true
}

/// What a source's verification proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// The body and a fresh timestamp are signed: a replay is refused after the tolerance.
    SignedWithTimestamp,
    /// Only the body is signed: replays are stopped by the event id and the body's hash
    /// within the replay window.
    SignedBody,
    /// A static token: anyone who saw one request can write new ones.
    TokenOnly,
}

impl Strength {
    pub fn describe(self) -> &'static str {
        match self {
            Strength::SignedWithTimestamp => "signed, with a timestamp",
            Strength::SignedBody => {
                "signed body, no timestamp: replays deduped on event id and body hash within the window"
            }
            Strength::TokenOnly => {
                "WEAKER: a static token, no signature: whoever sees one request can forge others; \
                 limit senders with allow_ips where the platform publishes its addresses"
            }
        }
    }
}

/// `[sources.signature]` (after the preset's is merged under it): an HMAC or a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    #[serde(default = "sha256")]
    pub algorithm: Algorithm,
    #[serde(default = "hex")]
    pub encoding: Encoding,
    /// The header holding the signature (hmac) or the token (token).
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the signature or token (`sha256=`, `Bearer `).
    #[serde(default)]
    pub prefix: String,
    /// When the header holds `t=<ts>,v1=<sig>` pairs: the name of the signature entry...
    #[serde(default)]
    pub signature_field: Option<String>,
    /// ...and of the timestamp entry.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// A header holding the timestamp, when it is not in the signature header.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    #[serde(default)]
    pub timestamp_unit: TimeUnit,
    /// What is signed: `{body}`, `{timestamp}.{body}`, `{method}{url}{body}{timestamp}`, ...
    #[serde(default = "body_template")]
    pub signed: String,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    #[serde(default)]
    pub event_id_header: Option<String>,
    /// token: the query parameter holding it.
    #[serde(default)]
    pub query: Option<String>,
    /// token: the JSON path of the body field holding it.
    #[serde(default)]
    pub body_field: Option<String>,
    /// token: the sender addresses (CIDR) allowed; any when empty.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// hmac: characters whose percent-escapes the platform decodes in `{url}` before signing.
    #[serde(default)]
    pub url_unescape: Vec<String>,
}

fn sha256() -> Algorithm {
    Algorithm::Sha256
}

fn hex() -> Encoding {
    Encoding::Hex
}

fn body_template() -> String {
    "{body}".into()
}

/// `b` over `a`, table by table: a source's own keys over its preset's.
fn merge(mut a: toml::Table, b: toml::Table) -> toml::Table {
    for (key, value) in b {
        match (a.get_mut(&key), value) {
            (Some(toml::Value::Table(under)), toml::Value::Table(over)) => {
                let merged = merge(std::mem::take(under), over);
                *under = merged;
            }
            (_, value) => {
                a.insert(key, value);
            }
        }
    }
    a
}

/// A shipped preset as written in its file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The platform's name as people write it.
    pub title: String,
    /// The setup page in the docs.
    #[serde(default)]
    pub docs: Option<String>,
    pub scheme: SchemeName,
    #[serde(default)]
    pub signature: Option<toml::Table>,
    #[serde(default)]
    pub mapping: Option<toml::Table>,
    /// The platform's conversation API; inactive until the source sets `token_env`.
    #[serde(default)]
    pub conversation: Option<toml::Table>,
}

impl Preset {
    /// The shipped preset called `name`.
    pub fn load(name: &str) -> Result<Option<Preset>, String> {
        crate::presets::find(name)
            .map(|text| toml::from_str(text).map_err(|e| format!("preset {name:?}: {e}")))
            .transpose()
    }
}

impl SourceConfig {
    pub fn signature_scheme(&self) -> Scheme {
        self.verifier.clone()
    }

    /// How long a signed body is deduped on, for a scheme whose signature covers no timestamp
    /// (nothing else stops a captured request from being sent again with a fresh event id);
    /// `None` for one that signs a timestamp, which already does.
    pub fn replay_window(&self) -> Option<jiff::SignedDuration> {
        if self.verifier.signs_timestamp() {
            return None;
        }
        let hours = self
            .replay_window_hours
            .unwrap_or(DEFAULT_REPLAY_WINDOW_HOURS);
        Some(jiff::SignedDuration::from_hours(i64::from(hours)))
    }

    /// How much a verified request proves, weakest last: `leadrelay sources list` and the
    /// start-up log say it, and the docs explain each.
    pub fn strength(&self) -> Strength {
        match &self.verifier {
            Scheme::Token(_) => Strength::TokenOnly,
            scheme if scheme.signs_timestamp() => Strength::SignedWithTimestamp,
            _ => Strength::SignedBody,
        }
    }

    /// Applies the preset, then builds the verifier and the mapping.
    fn resolve(
        &mut self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
    ) -> Result<(), ConfigError> {
        let invalid =
            |sub: &str, message: String| v.invalid(span.clone(), format!("{key}.{sub}"), message);
        if let Some(name) = &self.preset {
            let preset = Preset::load(name)
                .map_err(|message| invalid("preset", message))?
                .ok_or_else(|| {
                    invalid(
                        "preset",
                        format!(
                            "unknown preset {name:?}; shipped: {}",
                            crate::presets::names().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
            self.scheme.get_or_insert(preset.scheme);
            if let Some(table) = preset.signature {
                self.signature = Some(merge(table, self.signature.take().unwrap_or_default()));
            }
            if let Some(table) = preset.mapping {
                self.mapping = Some(merge(table, self.mapping.take().unwrap_or_default()));
            }
            if let Some(table) = preset.conversation {
                self.conversation =
                    Some(merge(table, self.conversation.take().unwrap_or_default()));
            }
        }
        let scheme = self.scheme.ok_or_else(|| {
            invalid(
                "scheme",
                "missing: set scheme (standard_webhooks, body_hmac, hmac or token) or a preset"
                    .into(),
            )
        })?;
        let signature = match (&self.signature, scheme) {
            (Some(table), SchemeName::Hmac | SchemeName::Token) => Some(
                SignatureConfig::deserialize(table.clone())
                    .map_err(|e| invalid("signature", e.to_string()))?,
            ),
            (Some(_), _) => {
                return Err(invalid(
                    "signature",
                    "applies to the hmac and token schemes only".into(),
                ))
            }
            (None, SchemeName::Hmac | SchemeName::Token) => {
                return Err(invalid(
                    "signature",
                    "missing: the hmac and token schemes are described in [sources.signature]"
                        .into(),
                ))
            }
            (None, _) => None,
        };
        self.verifier = match (scheme, signature) {
            (SchemeName::StandardWebhooks, _) => Scheme::StandardWebhooks {
                tolerance_secs: self.tolerance_secs,
            },
            (SchemeName::BodyHmac, _) => Scheme::Hmac(HmacScheme::body_sha256_hex(
                self.signature_header
                    .as_deref()
                    .unwrap_or("x-hub-signature-256"),
                self.signature_prefix.as_deref().unwrap_or("sha256="),
                self.event_id_header.as_deref(),
            )),
            (SchemeName::Hmac, Some(s)) => Scheme::Hmac(
                hmac_scheme(s)
                    .map_err(|(sub, message)| invalid(&format!("signature.{sub}"), message))?,
            ),
            (SchemeName::Token, Some(s)) => Scheme::Token(
                token_scheme(s)
                    .map_err(|(sub, message)| invalid(&format!("signature.{sub}"), message))?,
            ),
            (SchemeName::Hmac | SchemeName::Token, None) => unreachable!("checked above"),
        };
        if let Some(table) = &self.mapping {
            let config = MappingConfig::deserialize(table.clone())
                .map_err(|e| invalid("mapping", e.to_string()))?;
            let mapping = config
                .compile(&format!("{key}.mapping"))
                .map_err(|e| v.invalid(span.clone(), e.key, e.message))?;
            self.payload = Some(mapping);
        }
        Ok(())
    }

    /// Resolves the secrets into `keys` and checks the replay window; `key` names the source
    /// (`sources[0]`).
    fn check(
        &mut self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(v.invalid(
                span,
                format!("{key}.id"),
                "must be letters, digits, - or _ (it is part of the webhook URL)",
            ));
        }
        // Whether the source wrote [sources.conversation] itself, before its preset's merges in.
        let own_conversation = self.conversation.is_some();
        self.resolve(v, span.clone(), key)?;
        self.keys = self.signing_keys(v, span.clone(), key, env)?;
        self.conversation_api =
            self.conversation_api(v, span.clone(), key, env, own_conversation)?;
        match (self.verifier.signs_timestamp(), self.replay_window_hours) {
            (true, Some(_)) => Err(v.invalid(
                span,
                format!("{key}.replay_window_hours"),
                "applies only to schemes that sign no timestamp: this one signs a timestamp \
                 (tolerance_secs), which already stops replays",
            )),
            (false, Some(0)) => Err(v.invalid(
                span,
                format!("{key}.replay_window_hours"),
                "must be at least 1: a body-only signature has nothing else that stops \
                 a replay",
            )),
            _ => Ok(()),
        }
    }

    /// `[sources.conversation]`, checked and its token read. A preset's section without
    /// `token_env` is inactive (every source of the preset would otherwise need a token); one
    /// the source wrote itself must name it.
    fn conversation_api(
        &self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
        own: bool,
    ) -> Result<Option<ConversationApi>, ConfigError> {
        let Some(table) = &self.conversation else {
            return Ok(None);
        };
        let here = format!("{key}.conversation");
        let invalid = |sub: &str, message: String| {
            let key = if sub.is_empty() {
                here.clone()
            } else {
                format!("{here}.{sub}")
            };
            v.invalid(span.clone(), key, message)
        };
        if !table.contains_key("token_env") {
            return if own {
                Err(invalid(
                    "token_env",
                    "missing: the environment variable holding the platform's API token".into(),
                ))
            } else {
                Ok(None)
            };
        }
        let config = ConversationConfig::deserialize(table.clone())
            .map_err(|e| invalid("", e.to_string()))?;
        let host = check_conversation_url(&config.url).map_err(|m| invalid("url", m))?;
        check_header_name(&config.header).map_err(|m| invalid("header", m))?;
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            check_header_name(name).map_err(|m| invalid("headers", m))?;
            http::HeaderValue::from_str(value)
                .map_err(|_| invalid("headers", format!("the value of {name:?} cannot be sent")))?;
            headers.push((name.clone(), value.clone()));
        }
        let variable = config.token_env.clone().unwrap_or_default();
        let token = env
            .get(&variable)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("token_env", load::unset(&variable)))?;
        let credential = format!("{}{token}", config.prefix);
        // Named by its variable, never by its value.
        http::HeaderValue::from_str(&credential).map_err(|_| {
            invalid(
                "token_env",
                format!("the value of {variable} cannot be sent in a header"),
            )
        })?;
        let reader = TurnReader::compile(
            &here,
            TurnPaths {
                list: &config.list,
                first: config.first.as_deref(),
                role: &config.role,
                text: &config.text,
                at: &config.at,
                html: config.html,
            },
        )
        .map_err(|e| v.invalid(span.clone(), e.key, e.message))?;
        Ok(Some(ConversationApi {
            url: config.url,
            host,
            header: config.header.to_ascii_lowercase(),
            credential: SecretString::from(credential),
            token_env: variable,
            headers,
            reader,
        }))
    }

    /// The inline secrets, then the variable's, each parsed for the scheme.
    fn signing_keys(
        &self,
        v: &Validator<'_>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<Vec<SigningKey>, ConfigError> {
        // Each secret with the key that names it: its place in `secrets`, or the variable.
        let mut secrets: Vec<(String, String)> = self
            .secrets
            .iter()
            .enumerate()
            .map(|(n, s)| (format!("{key}.secrets[{n}]"), s.expose_secret().to_owned()))
            .collect();
        if let Some(name) = &self.secrets_env {
            let named = format!("{key}.secrets_env");
            let values = env
                .secrets(name)
                .map_err(|message| v.invalid(span.clone(), named.clone(), message))?;
            secrets.extend(values.into_iter().map(|s| (named.clone(), s)));
        }
        if secrets.is_empty() {
            return Err(v.invalid(
                span,
                format!("{key}.secrets"),
                "no secret configured: set secrets or secrets_env",
            ));
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for (n, (secret_key, secret)) in secrets.iter().enumerate() {
            let parsed = match self.verifier {
                Scheme::StandardWebhooks { .. } => SigningKey::standard(secret),
                Scheme::Hmac(_) | Scheme::Token(_) => SigningKey::plain(secret),
            };
            // The error names the position of the secret, never its value.
            keys.push(parsed.map_err(|e| {
                v.invalid(
                    span.clone(),
                    secret_key.clone(),
                    format!("secret {} of this source: {e}", n + 1),
                )
            })?);
        }
        Ok(keys)
    }
}

/// `[sources.signature]` of an hmac source, checked; errors name the key under `signature`.
fn hmac_scheme(s: SignatureConfig) -> Result<HmacScheme, (&'static str, String)> {
    let header = s.header.ok_or((
        "header",
        "missing: the header that carries the signature".to_owned(),
    ))?;
    check_header_name(&header).map_err(|m| ("header", m))?;
    let signed = Template::parse(&s.signed).map_err(|m| ("signed", m))?;
    let fields = match (s.signature_field, s.timestamp_field) {
        (Some(signature), timestamp) => Some(HeaderFields {
            signature,
            timestamp,
        }),
        (None, Some(_)) => {
            return Err((
                "timestamp_field",
                "needs signature_field: both name entries of a t=...,v1=... header".into(),
            ))
        }
        (None, None) => None,
    };
    let has_timestamp =
        s.timestamp_header.is_some() || fields.as_ref().is_some_and(|f| f.timestamp.is_some());
    if signed.signs_timestamp() && !has_timestamp {
        return Err((
            "signed",
            "signs {timestamp}: set timestamp_header or timestamp_field".into(),
        ));
    }
    if !signed.signs_timestamp() && has_timestamp {
        return Err((
            "signed",
            "a timestamp is read but not signed, so it proves nothing: add {timestamp} to \
             signed or drop the timestamp"
                .into(),
        ));
    }
    if s.query.is_some() || s.body_field.is_some() || !s.allow_ips.is_empty() {
        return Err((
            "query",
            "query, body_field and allow_ips belong to the token scheme".into(),
        ));
    }
    let url_unescape = s
        .url_unescape
        .iter()
        .map(|c| {
            let mut chars = c.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii() => Ok(c),
                _ => Err(("url_unescape", format!("{c:?} is not one ASCII character"))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(HmacScheme {
        url_unescape,
        algorithm: s.algorithm,
        encoding: s.encoding,
        header: header.to_ascii_lowercase(),
        prefix: s.prefix,
        fields,
        timestamp_header: s.timestamp_header.map(|h| h.to_ascii_lowercase()),
        timestamp_unit: s.timestamp_unit,
        tolerance_secs: s.tolerance_secs,
        signed,
        id_header: s.event_id_header.map(|h| h.to_ascii_lowercase()),
    })
}

/// `[sources.signature]` of a token source: exactly one place for the token.
fn token_scheme(s: SignatureConfig) -> Result<TokenScheme, (&'static str, String)> {
    let place = match (s.header, s.query, s.body_field) {
        (Some(name), None, None) => {
            check_header_name(&name).map_err(|m| ("header", m))?;
            TokenPlace::Header {
                name: name.to_ascii_lowercase(),
                prefix: s.prefix,
            }
        }
        (None, Some(name), None) => TokenPlace::Query(name),
        (None, None, Some(path)) => TokenPlace::BodyField(
            crate::json_path::JsonPath::parse(&path).map_err(|e| ("body_field", e.to_string()))?,
        ),
        _ => {
            return Err((
                "header",
                "set exactly one of header, query or body_field: where the token is".into(),
            ))
        }
    };
    let allow_ips = s
        .allow_ips
        .iter()
        .map(|net| {
            net.parse::<ipnet::IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    (
                        "allow_ips",
                        format!("{net:?} is not an address or CIDR block"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(TokenScheme {
        place,
        allow_ips,
        id_header: s.event_id_header.map(|h| h.to_ascii_lowercase()),
    })
}

fn check_header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

/// At least one source; ids unique and URL-safe; secrets resolved into keys.
pub(super) fn check(
    v: &Validator<'_>,
    sources: &mut [Spanned<SourceConfig>],
    env: Env<'_>,
) -> Result<(), ConfigError> {
    if sources.is_empty() {
        return Err(v.invalid(0..0, "sources", "at least one [[sources]] is required"));
    }
    let mut seen = HashSet::new();
    for (index, source) in sources.iter_mut().enumerate() {
        let span = source.span();
        let key = format!("sources[{index}]");
        let source = source.get_mut();
        if !seen.insert(source.id.clone()) {
            return Err(v.invalid(
                span,
                format!("{key}.id"),
                format!("duplicate source id {:?}", source.id),
            ));
        }
        source.check(v, span, &key, env)?;
    }
    Ok(())
}

/// Each `transcript_hosts` entry is one exact host (checked with the transcript provider).
pub(super) fn check_transcript_hosts(
    v: &Validator<'_>,
    sources: &[Spanned<SourceConfig>],
) -> Result<(), ConfigError> {
    for (index, source) in sources.iter().enumerate() {
        for (n, host) in source.get_ref().transcript_hosts.iter().enumerate() {
            check_host(host).map_err(|message| {
                v.invalid(
                    source.span(),
                    format!("sources[{index}].transcript_hosts[{n}]"),
                    format!("{host:?}: {message}"),
                )
            })?;
        }
    }
    Ok(())
}

/// A source's conversation API is called by the transcript provider, so it must be on.
pub(super) fn check_conversations(
    v: &Validator<'_>,
    sources: &[Spanned<SourceConfig>],
    enrichment: &EnrichmentConfig,
) -> Result<(), ConfigError> {
    let on = enrichment.transcript.is_some()
        && enrichment
            .providers
            .iter()
            .any(|p| p.get_ref() == TRANSCRIPT);
    for (index, source) in sources.iter().enumerate() {
        if source.get_ref().conversation_api.is_some() && !on {
            return Err(v.invalid(
                source.span(),
                format!("sources[{index}].conversation"),
                "the conversation is fetched by the transcript provider, which is off: add \
                 [enrichment.transcript] and list \"transcript\" in [enrichment] providers",
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{no_env, parse, MINIMAL};
    use crate::config::Config;

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

    fn with_source(lines: &str) -> String {
        MINIMAL.replace(
            "[[reps]]",
            &format!("[[sources]]\nid = \"p\"\n{lines}\n\n[[reps]]"),
        )
    }

    #[test]
    fn every_shipped_preset_loads_with_a_mapping() {
        let names: Vec<&str> = crate::presets::names().collect();
        assert!(names.len() >= 12, "{names:?}");
        for name in names {
            let text = with_source(&format!(
                "preset = \"{name}\"\nsecrets = [\"preset-secret-0123456789\"]"
            ));
            let config = parse(&text).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            let source = config.source("p").expect("the source");
            assert!(source.payload.is_some(), "preset {name} maps payloads");
            let preset = Preset::load(name).expect("parses").expect("exists");
            assert!(!preset.title.is_empty());
            let docs = preset.docs.expect("every preset names its docs page");
            let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(&docs);
            assert!(page.exists(), "preset {name}: {docs} is missing");
        }
    }

    #[test]
    fn a_source_overrides_its_presets_keys() {
        let text = with_source(
            "preset = \"intercom\"\nsecrets = [\"preset-secret-0123456789\"]\n\
             [sources.signature]\nheader = \"X-Other-Signature\"\n\
             [sources.mapping.fields]\ncompany = \"data.item.companies.data[0].name\"",
        );
        let config = parse(&text).expect("valid");
        let source = config.source("p").expect("the source");
        match &source.verifier {
            Scheme::Hmac(hmac) => {
                assert_eq!(hmac.header, "x-other-signature");
                assert_eq!(hmac.prefix, "sha1=", "the preset's other keys stay");
            }
            other => panic!("not an hmac: {other:?}"),
        }
        let error = parse(&with_source(
            "preset = \"intercomm\"\nsecrets = [\"preset-secret-0123456789\"]",
        ))
        .expect_err("unknown preset")
        .to_string();
        assert!(
            error.contains("sources[1].preset: unknown preset \"intercomm\""),
            "{error}"
        );
        assert!(
            error.contains("intercom, "),
            "lists the shipped ones: {error}"
        );
    }

    #[test]
    fn signature_mistakes_are_named_by_key() {
        let bad = |lines: &str| {
            parse(&with_source(&format!(
                "scheme = \"hmac\"\nsecrets = [\"preset-secret-0123456789\"]\n[sources.signature]\n{lines}"
            )))
            .expect_err(lines)
            .to_string()
        };
        assert!(bad("signed = \"{body}\"").contains("sources[1].signature.header: missing"));
        assert!(bad("header = \"x-sig\"\nsigned = \"{timestamp}.{body}\"")
            .contains("set timestamp_header or timestamp_field"));
        assert!(bad("header = \"x-sig\"\ntimestamp_header = \"x-ts\"")
            .contains("a timestamp is read but not signed"));
        assert!(bad("header = \"x-sig\"\nsigned = \"{bdy}\"").contains("unknown placeholder {bdy}"));
        assert!(bad("header = \"x-sig\"\nalgorithm = \"md5\"").contains("sources[1].signature"));
        let token = |lines: &str| {
            parse(&with_source(&format!(
                "scheme = \"token\"\nsecrets = [\"preset-secret-0123456789\"]\n[sources.signature]\n{lines}"
            )))
        };
        assert!(
            token("header = \"x-token\"\nallow_ips = [\"192.0.2.0/24\", \"2001:db8::1\"]").is_ok()
        );
        let error = token("header = \"x-token\"\nquery = \"key\"")
            .expect_err("two places")
            .to_string();
        assert!(
            error.contains("exactly one of header, query or body_field"),
            "{error}"
        );
        let error = token("query = \"key\"\nallow_ips = [\"10.0.0.0/33\"]")
            .expect_err("bad net")
            .to_string();
        assert!(error.contains("sources[1].signature.allow_ips"), "{error}");
        let short = parse(&with_source(
            "scheme = \"token\"\nsecrets = [\"short\"]\n[sources.signature]\nquery = \"key\"",
        ))
        .expect_err("short token")
        .to_string();
        assert!(short.contains("shorter than 16 bytes"), "{short}");
    }

    const TRANSCRIPT_ON: &str =
        "\n[enrichment]\nproviders = [\"transcript\"]\n[enrichment.transcript]\n";
    const TOKEN: &str = "dG9rOmFjY2Vzcy10b2tlbi12YWx1ZQ==";

    /// The minimal config with source `p` written as `lines`, the transcript provider on and
    /// INTERCOM_ACCESS_TOKEN set.
    fn conversation(lines: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!("{}{TRANSCRIPT_ON}", with_source(lines));
        let env = |name: &str| (name == "INTERCOM_ACCESS_TOKEN").then(|| TOKEN.to_owned());
        Config::parse(&text, "leadrelay.toml", &env)
    }

    const INTERCOM: &str = "preset = \"intercom\"\nsecrets = [\"preset-secret-0123456789\"]";

    #[test]
    fn a_presets_conversation_section_is_inactive_until_the_source_names_its_token() {
        let config = conversation(INTERCOM).expect("valid");
        let source = config.source("p").expect("the source");
        assert!(source.conversation_api.is_none(), "no token_env: inactive");

        let config = conversation(&format!(
            "{INTERCOM}\n[sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\""
        ))
        .expect("valid");
        let api = config
            .source("p")
            .and_then(|s| s.conversation_api.as_ref())
            .expect("active");
        assert_eq!(
            api.url_for("21321941764").expect("url").as_str(),
            "https://api.intercom.io/conversations/21321941764"
        );
        // An id cannot leave its path segment, nor reach another host.
        assert_eq!(
            api.url_for("../../admins?x=1#y").expect("url").as_str(),
            "https://api.intercom.io/conversations/..%2F..%2Fadmins%3Fx%3D1%23y"
        );
        assert_eq!(
            api.url_for("@evil.example").expect("url").host_str(),
            Some("api.intercom.io")
        );
        let (header, credential) = api.credential();
        assert_eq!(header, "authorization");
        assert_eq!(credential.expose_secret(), format!("Bearer {TOKEN}"));
        assert_eq!(
            api.headers(),
            [("Intercom-Version".to_owned(), "2.11".to_owned())]
        );
        assert!(!format!("{config:?}").contains(TOKEN), "Debug redacts it");
    }

    #[test]
    fn conversation_mistakes_are_named_by_key_and_never_show_the_token() {
        let bad = |lines: &str| {
            conversation(&format!(
                "{INTERCOM}\n[sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\"\n{lines}"
            ))
            .expect_err(lines)
            .to_string()
        };
        for (lines, key, why) in [
            (
                "url = \"http://api.intercom.io/conversations/{conversation_id}\"",
                "url",
                "https is required",
            ),
            (
                "url = \"https://{conversation_id}.intercom.io/c\"",
                "url",
                "not the host",
            ),
            ("url = \"https://api.intercom.io/c\"", "url", "must contain"),
            (
                "url = \"https://u:pw@api.intercom.io/c/{conversation_id}\"",
                "url",
                "credentials",
            ),
            ("header = \"Bad Header\"", "header", "not a valid header"),
            ("list = \"a..b\"", "list", "at position"),
            ("text = []", "text", "names no path"),
        ] {
            let error = bad(lines);
            assert!(
                error.contains(&format!("sources[1].conversation.{key}")) && error.contains(why),
                "{lines}: {error}"
            );
            assert!(!error.contains(TOKEN));
        }
        // Plain http is for a loopback stand-in only.
        assert!(conversation(&format!(
            "{INTERCOM}\n[sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\"\n\
             url = \"http://127.0.0.1:8080/conversations/{{conversation_id}}\""
        ))
        .is_ok());
        // Written by the source itself, a section must name its token...
        let error = conversation(&format!(
            "{INTERCOM}\n[sources.conversation]\nheaders = {{ \"Intercom-Version\" = \"2.10\" }}"
        ))
        .expect_err("no token_env")
        .to_string();
        assert!(
            error.contains("sources[1].conversation.token_env: missing"),
            "{error}"
        );
        // ...which must be set.
        let error = conversation(&format!(
            "{INTERCOM}\n[sources.conversation]\ntoken_env = \"DRIFT_TOKEN\""
        ))
        .expect_err("unset")
        .to_string();
        assert!(
            error.contains(
                "sources[1].conversation.token_env: environment variable DRIFT_TOKEN is not set"
            ),
            "{error}"
        );
        // Chatbase's URL needs the agent's id written in.
        let error = conversation(
            "preset = \"chatbase\"\nsecrets = [\"preset-secret-0123456789\"]\n\
             [sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\"",
        )
        .expect_err("placeholder")
        .to_string();
        assert!(
            error.contains("sources[1].conversation.url: unknown placeholder {agent_id}"),
            "{error}"
        );
    }

    #[test]
    fn a_conversation_api_needs_the_transcript_provider() {
        let text = with_source(&format!(
            "{INTERCOM}\n[sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\""
        ));
        let env = |name: &str| (name == "INTERCOM_ACCESS_TOKEN").then(|| TOKEN.to_owned());
        let error = Config::parse(&text, "leadrelay.toml", &env)
            .expect_err("provider off")
            .to_string();
        assert!(
            error.contains(
                "sources[1].conversation: the conversation is fetched by the transcript provider"
            ),
            "{error}"
        );
    }

    #[test]
    fn an_intercom_conversation_reads_its_opening_message_then_its_parts_as_text() {
        let config = conversation(&format!(
            "{INTERCOM}\n[sources.conversation]\ntoken_env = \"INTERCOM_ACCESS_TOKEN\""
        ))
        .expect("valid");
        let api = config
            .source("p")
            .and_then(|s| s.conversation_api.as_ref())
            .expect("active");
        let answer = serde_json::json!({
            "type": "conversation", "id": "2132",
            "source": {"author": {"type": "lead"}, "body": "<p>Hi, volume pricing?</p>"},
            "conversation_parts": {"conversation_parts": [
                {"part_type": "assignment", "author": {"type": "bot"}, "body": null},
                {"part_type": "comment", "author": {"type": "admin"}, "created_at": 1553290260,
                 "body": "<p>Yes &amp; we&#39;d love to help.</p><p>How many <b>seats</b>?</p>"}
            ]}
        });
        let turns: Vec<(String, String)> = api
            .turns(&answer)
            .into_iter()
            .map(|t| (t.role, t.text))
            .collect();
        assert_eq!(
            turns,
            [
                ("lead".to_owned(), "Hi, volume pricing?".to_owned()),
                (
                    "admin".to_owned(),
                    "Yes & we'd love to help.\nHow many seats?".to_owned()
                )
            ]
        );
        assert!(api.turns(&serde_json::json!({"errors": []})).is_empty());
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
            error.contains(
                "sources[0].replay_window_hours: applies only to schemes that sign no timestamp"
            ),
            "{error}"
        );
    }
}

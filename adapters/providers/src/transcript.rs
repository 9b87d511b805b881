//! The conversation behind `conversation_transcript_url`, for chatbots that send a link rather
//! than the turns inline; and, for a source with `[sources.conversation]` (Intercom, Drift,
//! Chatbase), the conversation its webhook only names by `conversation_id`, from the
//! platform's API with the source's token.
//!
//! The URL comes from the webhook body, so it is untrusted: it is fetched only from the exact
//! host names the lead's source lists in `transcript_hosts`, over https (plain http only for an
//! allowed loopback host), without credentials in the URL, without following redirects, and
//! no more than `max_bytes` of it is ever read. A conversation API's host comes from the
//! configuration alone (the id is percent-encoded into its path or query); the same client,
//! limits and budget apply, and the token is sent only there, marked sensitive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::Value;

use secrecy::ExposeSecret;

use leadrelay_shared::config::{Config, ConversationApi, TranscriptConfig};
use leadrelay_shared::enrichment::{
    Budgeted, EnrichmentProvider, Findings, LookupRequest, ProviderError, SetupError,
};
use leadrelay_shared::model::Turn;

/// The name `[enrichment] providers` lists.
pub use leadrelay_shared::config::providers::TRANSCRIPT as NAME;

/// The most turns kept from one transcript: enough for any chat a rep reads before calling.
pub const MAX_TURNS: usize = 200;

/// Why a transcript URL is not fetched or its answer not used. Recorded on the lead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("answered HTTP {0}{1}")]
    Status(u16, &'static str),
    #[error("refused: the body is larger than max_bytes ({0})")]
    TooLarge(u64),
    #[error("request failed: {0}")]
    Request(String),
    /// The client's own timeout (the budget) passed before the answer was read.
    #[error("timed out after {0} ms")]
    TimedOut(u64),
    #[error("not a transcript: {0}")]
    Unreadable(String),
    /// The conversation API refused the token (401, 403): named by its variable, never its value.
    #[error("answered HTTP {status}: the token in {env} was refused")]
    TokenRefused { status: u16, env: String },
}

impl From<TranscriptError> for ProviderError {
    fn from(error: TranscriptError) -> Self {
        match error {
            TranscriptError::TimedOut(ms) => ProviderError::TimedOut(ms),
            other => ProviderError::Failed(other.to_string()),
        }
    }
}

/// The provider: one HTTP client that never follows redirects, and each source's allowed hosts.
pub struct TranscriptFetcher {
    http: reqwest::Client,
    /// Source id → the host names its transcripts may come from, lower case.
    hosts: HashMap<String, Vec<String>>,
    /// Source id → its conversation API, for the sources that have one.
    apis: HashMap<String, ConversationApi>,
    max_bytes: u64,
}

impl TranscriptFetcher {
    pub fn new(config: &Config, transcript: &TranscriptConfig) -> Result<Self, SetupError> {
        // A redirect could lead anywhere, including inside the network: never followed.
        let http =
            leadrelay_https::client(|builder| builder.redirect(reqwest::redirect::Policy::none()))
                .map_err(|error| SetupError {
                    provider: NAME.into(),
                    message: format!("cannot build the HTTP client: {error}"),
                })?;
        let hosts = config
            .sources
            .iter()
            .map(|source| {
                let source = source.get_ref();
                let hosts = source
                    .transcript_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect();
                (source.id.clone(), hosts)
            })
            .collect();
        let apis = config
            .sources
            .iter()
            .filter_map(|source| {
                let source = source.get_ref();
                let api = source.conversation_api.clone()?;
                Some((source.id.clone(), api))
            })
            .collect();
        Ok(TranscriptFetcher {
            http,
            hosts,
            apis,
            max_bytes: transcript.max_bytes,
        })
    }

    /// The provider with its budget, as [`from_config`] lists it.
    pub fn budgeted(
        config: &Config,
        transcript: &TranscriptConfig,
        default_budget_ms: u64,
    ) -> Result<Budgeted, SetupError> {
        Ok(Budgeted {
            provider: Arc::new(TranscriptFetcher::new(config, transcript)?),
            budget: Duration::from_millis(transcript.budget_ms.unwrap_or(default_budget_ms)),
        })
    }

    /// The URL, if `source` may fetch it; otherwise why not. Makes no request.
    pub fn check_url(&self, source: &str, raw: &str) -> Result<url::Url, TranscriptError> {
        let refused = |why: String| TranscriptError::Refused(why);
        let url =
            url::Url::parse(raw.trim()).map_err(|error| refused(format!("not a URL ({error})")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(refused(format!(
                "scheme {:?} (only https is fetched)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("the URL carries credentials".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| refused("the URL has no host".into()))?
            .to_ascii_lowercase();
        let allowed = self.hosts.get(source).map(Vec::as_slice).unwrap_or(&[]);
        if !allowed.contains(&host) {
            return Err(refused(format!(
                "host {host:?} is not in the transcript_hosts of source {source:?}"
            )));
        }
        if url.scheme() == "http" && !is_loopback_name(&host) {
            return Err(refused(format!(
                "plain http to {host:?} (https is required except for a loopback host)"
            )));
        }
        Ok(url)
    }

    /// Fetches and reads the transcript, within `budget` and `max_bytes`.
    async fn fetch(&self, url: url::Url, budget: Duration) -> Result<Vec<Turn>, TranscriptError> {
        let request = self.http.get(url).header(
            reqwest::header::ACCEPT,
            "application/json, text/plain;q=0.9",
        );
        let (body, plain) = self.read(request, budget, None).await?;
        if plain {
            let text = String::from_utf8(body)
                .map_err(|_| TranscriptError::Unreadable("the text is not UTF-8".into()))?;
            Ok(parse_plain(&text))
        } else {
            parse_json(&body)
        }
    }

    /// Asks the source's conversation API for the conversation `id`, within `budget` and
    /// `max_bytes`, and reads the turns where its section says they are.
    async fn fetch_conversation(
        &self,
        api: &ConversationApi,
        id: &str,
        budget: Duration,
    ) -> Result<Vec<Turn>, TranscriptError> {
        let url = api.url_for(id).map_err(TranscriptError::Refused)?;
        let (name, credential) = api.credential();
        let mut value = reqwest::header::HeaderValue::from_str(credential.expose_secret())
            // Checked at load; never says what the value was.
            .map_err(|_| TranscriptError::Refused("the token cannot be sent".into()))?;
        // Kept out of any debug output of the request.
        value.set_sensitive(true);
        let mut request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(name, value);
        for (name, value) in api.headers() {
            request = request.header(name.as_str(), value.as_str());
        }
        let (body, _) = self.read(request, budget, Some(api.token_env())).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|error| TranscriptError::Unreadable(format!("invalid JSON: {error}")))?;
        let mut turns = api.turns(&answer);
        turns.truncate(MAX_TURNS);
        Ok(turns)
    }

    /// Sends `request` and reads its body: a success only, no redirect followed, no more than
    /// `max_bytes`. Returns the body and whether it is plain text. `token_env` names the
    /// variable whose token was sent, for a refusal.
    async fn read(
        &self,
        request: reqwest::RequestBuilder,
        budget: Duration,
        token_env: Option<&str>,
    ) -> Result<(Vec<u8>, bool), TranscriptError> {
        let request_failed = |error: reqwest::Error| {
            if error.is_timeout() {
                return TranscriptError::TimedOut(
                    u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                );
            }
            // Without the URL: it may carry a token in its query.
            TranscriptError::Request(error.without_url().to_string())
        };
        let mut response = request
            .timeout(budget)
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(TranscriptError::Status(
                status.as_u16(),
                " (a redirect, not followed)",
            ));
        }
        if let (Some(env), 401 | 403) = (token_env, status.as_u16()) {
            return Err(TranscriptError::TokenRefused {
                status: status.as_u16(),
                env: env.to_owned(),
            });
        }
        if !status.is_success() {
            return Err(TranscriptError::Status(status.as_u16(), ""));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes)
        {
            return Err(TranscriptError::TooLarge(self.max_bytes));
        }
        let plain = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/plain")
            });
        // Read in chunks and stop as soon as the limit is passed: a server that lies about its
        // length, or sends none, cannot make us hold more than max_bytes.
        let limit = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_failed)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(TranscriptError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, plain))
    }
}

#[async_trait]
impl EnrichmentProvider for TranscriptFetcher {
    fn name(&self) -> &str {
        NAME
    }

    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String> {
        let capture = &request.lead.capture;
        if !capture.transcript.is_empty() {
            return Err("the transcript came inline".into());
        }
        if has_text(capture.conversation_transcript_url.as_deref()) {
            return Ok(());
        }
        if !self.apis.contains_key(&request.lead.source) {
            return Err("no conversation_transcript_url".into());
        }
        if has_text(capture.conversation_id.as_deref()) {
            Ok(())
        } else {
            Err("no conversation_transcript_url or conversation_id".into())
        }
    }

    async fn lookup(
        &self,
        request: &LookupRequest<'_>,
        budget: Duration,
    ) -> Result<Findings, ProviderError> {
        let capture = &request.lead.capture;
        // A link the chatbot sent first; otherwise the conversation its id names.
        let turns = match (
            capture.conversation_transcript_url.as_deref(),
            self.apis.get(&request.lead.source),
        ) {
            (Some(raw), _) if has_text(Some(raw)) => {
                let url = self.check_url(&request.lead.source, raw)?;
                self.fetch(url, budget).await?
            }
            (_, Some(api)) => {
                let id = capture.conversation_id.as_deref().unwrap_or_default();
                self.fetch_conversation(api, id, budget).await?
            }
            _ => {
                return Err(
                    TranscriptError::Refused("no conversation_transcript_url".into()).into(),
                )
            }
        };
        Ok(Findings {
            transcript: turns,
            ..Findings::default()
        })
    }
}

fn has_text(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.trim().is_empty())
}

fn is_loopback_name(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// A JSON transcript: an array of turns, or an object holding one under `turns`, `messages`
/// or `transcript`. A turn is `{role, text, at?}`; `content` is read as `text`, `sender` and
/// `author` as `role`. Entries without text are left out.
pub fn parse_json(body: &[u8]) -> Result<Vec<Turn>, TranscriptError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| TranscriptError::Unreadable(format!("invalid JSON: {error}")))?;
    let entries = match &value {
        Value::Array(entries) => entries,
        Value::Object(object) => ["turns", "messages", "transcript"]
            .iter()
            .find_map(|key| object.get(*key).and_then(Value::as_array))
            .ok_or_else(|| {
                TranscriptError::Unreadable(
                    "an object without a turns, messages or transcript array".into(),
                )
            })?,
        _ => {
            return Err(TranscriptError::Unreadable(
                "neither an array of turns nor an object holding one".into(),
            ))
        }
    };
    let text_of = |entry: &Value, keys: &[&str]| {
        keys.iter()
            .find_map(|key| entry.get(*key).and_then(Value::as_str))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(entries
        .iter()
        .filter_map(|entry| {
            let text = text_of(entry, &["text", "content"])?;
            Some(Turn {
                role: text_of(entry, &["role", "sender", "author"])
                    .unwrap_or_else(|| "unknown".into()),
                text,
                // A timestamp we cannot read is dropped, not the turn.
                at: entry
                    .get("at")
                    .and_then(Value::as_str)
                    .and_then(|at| at.parse::<Timestamp>().ok()),
            })
        })
        .take(MAX_TURNS)
        .collect())
}

/// A plain-text transcript: one `role: text` per line. A line without a role prefix continues
/// the turn before it (a message that spans lines).
pub fn parse_plain(text: &str) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let prefixed = line.split_once(':').and_then(|(role, rest)| {
            let role = role.trim();
            // "visitor", "bot", "Sales Agent"; not "Also, we need SSO for: ...".
            let plausible = !role.is_empty()
                && role.len() <= 32
                && role.split_whitespace().count() <= 2
                && role
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-');
            plausible.then(|| (role.to_owned(), rest.trim().to_owned()))
        });
        match (prefixed, turns.last_mut()) {
            (Some((role, text)), _) => {
                if turns.len() == MAX_TURNS {
                    break;
                }
                turns.push(Turn {
                    role,
                    text,
                    at: None,
                });
            }
            (None, Some(last)) => {
                last.text.push('\n');
                last.text.push_str(line);
            }
            (None, None) => turns.push(Turn {
                role: "unknown".into(),
                text: line.to_owned(),
                at: None,
            }),
        }
    }
    turns.retain(|t| !t.text.is_empty());
    turns
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use leadrelay_shared::enrichment::Providers;
    use leadrelay_shared::model::{Enrichment, Lead, ProviderOutcome};

    fn config(hosts: &str, section: &str) -> Config {
        let text = format!(
            r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]
transcript_hosts = [{hosts}]

[[reps]]
id = "alice"
name = "Alice"

[[queues]]
id = "inbox"
name = "Sales inbox"

[enrichment]
providers = ["transcript"]

[enrichment.transcript]
{section}

[routing]
fallback_queue = "inbox"
"#
        );
        Config::parse(&text, "test.toml", &|_| None).expect("valid config")
    }

    fn lead(url: &str) -> Lead {
        serde_json::from_value(serde_json::json!({
            "id": "l", "source": "website", "event_id": "e", "trace_id": "t", "state": "captured",
            "capture": {"event": "lead_capture", "captured_email": "jo@acme.io",
                        "conversation_transcript_url": url},
            "incomplete": false, "flags": [], "timeline": {}
        }))
        .expect("lead")
    }

    async fn enrich(config: &Config, lead: &Lead) -> (Enrichment, Vec<Turn>) {
        // As `from_config` builds it (that path is covered end to end in tests/).
        let section = config.enrichment.transcript.as_ref().expect("configured");
        let budgeted = TranscriptFetcher::budgeted(
            config,
            section.get_ref(),
            config.enrichment.provider_budget_ms,
        )
        .expect("builds");
        Providers::new(vec![budgeted])
            .enrich(lead, Enrichment::default(), Duration::from_secs(10))
            .await
    }

    fn report(enrichment: &Enrichment) -> (ProviderOutcome, String) {
        let report = enrichment.providers.first().expect("a report");
        (report.outcome, report.detail.clone())
    }

    const TURNS: &str = r#"{"conversation_id": "c1", "messages": [
        {"sender": "visitor", "content": "Are you SOC 2 compliant?", "at": "2026-11-23T10:00:00Z"},
        {"sender": "bot", "content": "Yes, type II."},
        {"sender": "bot"}
    ]}"#;

    #[tokio::test]
    async fn an_allowed_host_is_fetched_and_its_turns_returned() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/transcripts/c1"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(TURNS, "application/json"))
            .expect(1)
            .mount(&server)
            .await;
        let config = config(r#""127.0.0.1""#, "");
        let (enrichment, turns) =
            enrich(&config, &lead(&format!("{}/transcripts/c1", server.uri()))).await;
        assert_eq!(
            report(&enrichment),
            (ProviderOutcome::Answered, "transcript".into())
        );
        assert_eq!(turns.len(), 2, "{turns:?}");
        assert_eq!(turns[0].role, "visitor");
        assert_eq!(turns[0].text, "Are you SOC 2 compliant?");
        assert!(turns[0].at.is_some());
        assert_eq!(turns[1].role, "bot");
    }

    #[tokio::test]
    async fn a_host_not_allowed_is_refused_without_a_request() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(TURNS, "application/json"))
            .expect(0)
            .mount(&server)
            .await;
        // The source allows another host; "localhost" is the same server by another name.
        let config = config(r#""transcripts.chatbot.example""#, "");
        let url = server.uri().replace("127.0.0.1", "localhost");
        let (enrichment, turns) = enrich(&config, &lead(&format!("{url}/t"))).await;
        let (outcome, detail) = report(&enrichment);
        assert_eq!(outcome, ProviderOutcome::Failed);
        assert_eq!(
            detail,
            "refused: host \"localhost\" is not in the transcript_hosts of source \"website\""
        );
        assert!(turns.is_empty());
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        let config = config(r#""transcripts.chatbot.example", "127.0.0.1""#, "");
        let fetcher = TranscriptFetcher::new(&config, &TranscriptConfig::default()).expect("new");
        let check = |url: &str| fetcher.check_url("website", url).map(|u| u.to_string());
        assert!(check("https://transcripts.chatbot.example/c/1?token=x").is_ok());
        assert!(check("https://TRANSCRIPTS.chatbot.example./c/1").is_err());
        assert!(check("http://127.0.0.1:8080/c/1").is_ok());
        for (url, why) in [
            ("http://transcripts.chatbot.example/c/1", "plain http"),
            ("file:///etc/passwd", "scheme \"file\""),
            ("ftp://transcripts.chatbot.example/c", "scheme \"ftp\""),
            (
                "https://user:pw@transcripts.chatbot.example/c",
                "credentials",
            ),
            (
                "https://transcripts.chatbot.example@169.254.169.254/latest",
                "credentials",
            ),
            ("https://169.254.169.254/latest/meta-data", "not in the"),
            (
                "https://evil.example/transcripts.chatbot.example",
                "not in the",
            ),
            ("not a url", "not a URL"),
        ] {
            let error = check(url).expect_err(url).to_string();
            assert!(
                error.starts_with("refused: ") && error.contains(why),
                "{url}: {error}"
            );
        }
        // Another source allows nothing.
        assert!(fetcher
            .check_url("chat", "https://transcripts.chatbot.example/c/1")
            .is_err());
    }

    #[tokio::test]
    async fn an_oversize_body_is_refused() {
        let server = MockServer::start().await;
        let big = format!(
            r#"[{{"role": "visitor", "text": "{}"}}]"#,
            "x".repeat(4_000)
        );
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
            .mount(&server)
            .await;
        let config = config(r#""127.0.0.1""#, "max_bytes = 1024");
        let (enrichment, turns) = enrich(&config, &lead(&format!("{}/big", server.uri()))).await;
        assert_eq!(
            report(&enrichment),
            (
                ProviderOutcome::Failed,
                "refused: the body is larger than max_bytes (1024)".into()
            )
        );
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/moved"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/target", server.uri())),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/target"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(TURNS, "application/json"))
            .expect(0)
            .mount(&server)
            .await;
        let config = config(r#""127.0.0.1""#, "");
        let (enrichment, turns) = enrich(&config, &lead(&format!("{}/moved", server.uri()))).await;
        assert_eq!(
            report(&enrichment),
            (
                ProviderOutcome::Failed,
                "answered HTTP 302 (a redirect, not followed)".into()
            )
        );
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_server_that_hangs_times_out_within_the_budget() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(TURNS, "application/json")
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let config = config(r#""127.0.0.1""#, "budget_ms = 200");
        let started = Instant::now();
        let (enrichment, turns) = enrich(&config, &lead(&format!("{}/slow", server.uri()))).await;
        // Generous: the point is that 30 s were not waited.
        assert!(started.elapsed() < Duration::from_secs(10));
        let (outcome, _) = report(&enrichment);
        assert!(
            matches!(outcome, ProviderOutcome::TimedOut | ProviderOutcome::Failed),
            "{outcome:?}"
        );
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_plain_text_transcript_is_read_line_by_line() {
        let server = MockServer::start().await;
        let body =
            "visitor: Do you support SSO?\nAnd SCIM too, for 400 seats.\n\nbot: Yes, both.\n";
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(body, "text/plain; charset=utf-8"),
            )
            .mount(&server)
            .await;
        let config = config(r#""127.0.0.1""#, "");
        let (_, turns) = enrich(&config, &lead(&format!("{}/c.txt", server.uri()))).await;
        let read: Vec<(&str, &str)> = turns
            .iter()
            .map(|t| (t.role.as_str(), t.text.as_str()))
            .collect();
        assert_eq!(
            read,
            [
                (
                    "visitor",
                    "Do you support SSO?\nAnd SCIM too, for 400 seats."
                ),
                ("bot", "Yes, both.")
            ]
        );
    }

    #[test]
    fn the_json_shapes_and_aliases_are_read_and_turns_capped() {
        let array = parse_json(br#"[{"role": "visitor", "text": "hi"}]"#).expect("array");
        assert_eq!(array[0].text, "hi");
        let nested =
            parse_json(br#"{"transcript": [{"author": "bot", "content": "hello"}]}"#).expect("obj");
        assert_eq!(
            (nested[0].role.as_str(), nested[0].text.as_str()),
            ("bot", "hello")
        );
        let turns = parse_json(br#"{"turns": [{"role": "v", "text": "a", "at": "yesterday"}]}"#)
            .expect("turns");
        assert_eq!(turns[0].at, None);
        assert!(parse_json(b"{\"nothing\": 1}").is_err());
        assert!(parse_json(b"42").is_err());
        assert!(parse_json(b"<html>").is_err());
        let many: Vec<Value> = (0..500)
            .map(|i| serde_json::json!({"role": "visitor", "text": format!("turn {i}")}))
            .collect();
        let body = serde_json::to_vec(&many).expect("json");
        assert_eq!(parse_json(&body).expect("many").len(), MAX_TURNS);
        let plain: String = (0..500).map(|i| format!("visitor: turn {i}\n")).collect();
        assert_eq!(parse_plain(&plain).len(), MAX_TURNS);
    }

    #[tokio::test]
    async fn an_inline_transcript_or_no_url_is_skipped() {
        let config = config(r#""127.0.0.1""#, "");
        let mut inline = lead("https://127.0.0.1/x");
        inline.capture.transcript.push(Turn {
            role: "visitor".into(),
            text: "hi".into(),
            at: None,
        });
        let (enrichment, _) = enrich(&config, &inline).await;
        assert_eq!(
            report(&enrichment),
            (
                ProviderOutcome::Skipped,
                "the transcript came inline".into()
            )
        );
        let mut none = lead("");
        none.capture.conversation_transcript_url = None;
        let (enrichment, _) = enrich(&config, &none).await;
        assert_eq!(report(&enrichment).0, ProviderOutcome::Skipped);
    }

    #[test]
    fn transcript_hosts_must_be_bare_exact_host_names() {
        for (host, why) in [
            ("https://transcripts.chatbot.example", "bare host name"),
            ("transcripts.chatbot.example:443", "bare host name"),
            ("transcripts.chatbot.example/path", "bare host name"),
            ("*.chatbot.example", "no wildcards"),
            ("", "bare host name"),
        ] {
            let error = Config::parse(
                &TEMPLATE.replace("HOSTS", &format!("{host:?}")),
                "t.toml",
                &|_| None,
            )
            .expect_err(host)
            .to_string();
            assert!(
                error.contains("sources[0].transcript_hosts") && error.contains(why),
                "{host}: {error}"
            );
        }
    }

    const TEMPLATE: &str = r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]
transcript_hosts = [HOSTS]

[[queues]]
id = "inbox"
name = "Sales inbox"

[routing]
fallback_queue = "inbox"
"#;
}

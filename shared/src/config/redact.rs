//! The configuration as loaded, for people to read (the console's operations page): the text
//! parsed as TOML and written out again, every secret value replaced by [`SECRET`]. Comments
//! are dropped with the parse (a commented-out secret is not shown either).
//!
//! Deny by default: a string is shown only if nothing about it says secret.
//! - its key names no secret ([`SECRET_WORDS`]: `secret`, `token`, `password`, `key`, `url`,
//!   `webhook`, `hash`, ...), unless the key is one of the few known to hold none
//!   ([`SHOWN`]) or names an environment variable (`*_env`: a name, never a value);
//! - it is not under a table of free-form values that may carry credentials (`headers`);
//! - its value does not look like one: a known secret prefix (`whsec_`, `xoxb-`, ...), a PEM
//!   block, an Argon2 hash, a URL with credentials, a token in its query, or a Slack or Teams
//!   webhook's host.
//!
//! Numbers, booleans and dates are shown: no secret is one.

use toml::{Table, Value};

use super::Config;

/// What a secret value is shown as.
pub const SECRET: &str = "(secret)";

/// A key containing any of these (lower case) holds a secret unless [`SHOWN`] says otherwise.
const SECRET_WORDS: [&str; 14] = [
    "secret",
    "token",
    "password",
    "passwd",
    "key",
    "private",
    "hash",
    "credential",
    "auth",
    "signing",
    "cookie",
    "pem",
    "webhook",
    "url",
];

/// Keys (dotted paths, array positions left out) that contain a word of [`SECRET_WORDS`] but
/// hold no secret: addresses of public APIs and this service, names of metadata keys.
const SHOWN: [&str; 10] = [
    "claim.public_url",
    "claim.slack_response_url_prefix",
    "notify.salesforce.login_url",
    "notify.salesforce.auth",
    "notify.slack.api_base_url",
    "notify.hubspot.base_url",
    "qualification.behaviour.pages_visited_keys",
    "qualification.behaviour.time_on_pricing_keys",
    "qualification.behaviour.return_visit_keys",
    "sources.signature.url_unescape",
];

/// Tables whose values are free-form and may carry credentials: every string under them is
/// hidden.
const HIDDEN_TABLES: [&str; 1] = ["headers"];

/// Values that start like these are secrets whatever their key.
const SECRET_PREFIXES: [&str; 12] = [
    "whsec_", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xapp-", "sk_live_", "sk_test_", "rk_live_",
    "$argon2", "ghp_", "glpat-",
];

/// Query parameters that carry a credential in a URL.
const SECRET_PARAMETERS: [&str; 8] = [
    "key",
    "token",
    "secret",
    "sig",
    "signature",
    "password",
    "auth",
    "code",
];

/// Hosts whose URLs are themselves the credential (incoming webhooks).
const WEBHOOK_HOSTS: [&str; 5] = [
    "hooks.slack.com",
    "hooks.slack-gov.com",
    "webhook.office.com",
    "logic.azure.com",
    "powerplatform.com",
];

/// The text a configuration was read from. Only [`Config::shown_text`] reads it, and its
/// `Debug` names its size, never its content.
#[derive(Default, Clone)]
pub(super) struct Loaded(String);

impl Loaded {
    pub(super) fn new(text: &str) -> Self {
        Loaded(text.to_owned())
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({} bytes)", self.0.len())
    }
}

impl Config {
    /// The configuration as loaded, as TOML with every secret value replaced by [`SECRET`].
    pub fn shown_text(&self) -> String {
        redacted(&self.loaded.0)
    }
}

/// `text` (a TOML document) parsed, its secrets replaced, written out again. Text that is not
/// TOML is shown as a note, never as itself.
pub fn redacted(text: &str) -> String {
    let Ok(mut table) = text.parse::<Table>() else {
        return "# (the configuration could not be shown: it is not a TOML document)\n".into();
    };
    redact_table(&mut Vec::new(), false, &mut table);
    toml::to_string(&table)
        .unwrap_or_else(|_| "# (the configuration could not be written out)\n".into())
}

fn redact_table(path: &mut Vec<String>, hidden: bool, table: &mut Table) {
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        let hidden = hidden || HIDDEN_TABLES.contains(&key.as_str());
        redact_value(path, hidden || secret_key(path), value);
        path.pop();
    }
}

/// Redacts the strings of `value`; `secret` says the key holding them names a secret.
fn redact_value(path: &mut Vec<String>, secret: bool, value: &mut Value) {
    match value {
        Value::String(text) => {
            if secret || looks_secret(text) {
                *text = SECRET.to_owned();
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_value(path, secret, item);
            }
        }
        // A table's own keys decide for its values; a hidden table hides all of them.
        Value::Table(table) => {
            let hidden = path.iter().any(|k| HIDDEN_TABLES.contains(&k.as_str()));
            redact_table(path, hidden, table);
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {}
    }
}

/// Whether the last key of `path` names a secret.
fn secret_key(path: &[String]) -> bool {
    let Some(key) = path.last() else {
        return false;
    };
    let key = key.to_ascii_lowercase();
    if key.ends_with("_env") || SHOWN.contains(&path.join(".").as_str()) {
        return false;
    }
    SECRET_WORDS.iter().any(|word| key.contains(word))
}

/// Whether a value looks like a secret whatever its key.
fn looks_secret(text: &str) -> bool {
    let trimmed = text.trim();
    if SECRET_PREFIXES.iter().any(|p| trimmed.starts_with(p)) || trimmed.contains("-----BEGIN") {
        return true;
    }
    if !trimmed.contains("://") {
        return false;
    }
    let Ok(url) = url::Url::parse(trimmed) else {
        // Something URL-like that does not parse: not worth the risk.
        return true;
    };
    let credentials = !url.username().is_empty() || url.password().is_some();
    let webhook_host = url.host_str().is_some_and(|host| {
        let host = host.to_ascii_lowercase();
        WEBHOOK_HOSTS
            .iter()
            .any(|w| host == *w || host.ends_with(&format!(".{w}")))
    });
    let secret_query = url.query_pairs().any(|(name, _)| {
        let name = name.to_ascii_lowercase();
        SECRET_PARAMETERS.iter().any(|p| name.contains(p))
    });
    credentials || webhook_host || secret_query
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;

    /// Every secret the configuration takes inline (the shipped example and the docs), and
    /// secrets where only their shape gives them away.
    const SECRETS: [&str; 16] = [
        "whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=",
        "forms-hmac-inline-secret-1",
        "claim-link-inline-secret-2",
        "slack-signing-inline-secret-3",
        "https://hooks.slack.com/services/T000/B000/REPSECRET4",
        "https://acme.webhook.office.com/webhookb2/TEAMSSECRET5",
        "https://hooks.slack.com/services/T000/B000/QUEUESECRET6",
        "https://prod-01.westus.logic.azure.com/workflows/QTEAMSSECRET7",
        "https://hooks.slack.com/services/T000/B000/OPSSECRET8",
        "https://n8n.example/webhook/SECRETPATH9",
        "whsec_b3V0Ym91bmQtd2ViaG9vay1zZWNyZXQtMTA=",
        "mailgun-signing-inline-key-11",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$HASHSECRET12",
        "https://enrich.example/v1/find?domain={domain}&api_key=APIKEYSECRET13",
        "Bearer HEADERSECRET14",
        "https://sms.example/v1/messages?token=SMSSECRET15",
    ];

    fn everything_inline() -> String {
        let s = SECRETS;
        MINIMAL
            .replace(
                "secrets = [\"whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=\"]",
                &format!(
                    "secrets = [\"{}\"]\n\n\
                     [sources.conversation]\n\
                     url = \"https://api.chat.example/conversations/{{conversation_id}}\"\n\
                     token_env = \"CHAT_TOKEN\"\n\
                     headers = {{ \"Chat-Version\" = \"2.11\", \"X-Extra-Auth\" = \"{}\" }}\n\
                     list = \"/messages\"\n\
                     text = [\"/body\"]\n\n\
                     [[sources]]\n\
                     id = \"forms\"\n\
                     scheme = \"body_hmac\"\n\
                     secrets = [\"{}\"]\n\
                     signature_header = \"X-Hub-Signature-256\"\n\
                     signature_prefix = \"sha256=\"\n\n\
                     [[sources]]\n\
                     id = \"intercom\"\n\
                     scheme = \"standard_webhooks\"\n\
                     secrets_env = \"INTERCOM_CLIENT_SECRET\"",
                    s[0], s[14], s[1]
                ),
            )
            .replace(
                "name = \"Alice\"\n",
                &format!(
                    "name = \"Alice\"\nslack_webhook_url = \"{}\"\nteams_webhook_url = \"{}\"\n",
                    s[4], s[5]
                ),
            )
            .replace(
                "manager = \"alice\"\n",
                &format!(
                    "manager = \"alice\"\nslack_webhook_url = \"{}\"\nteams_webhook_url = \"{}\"\n",
                    s[6], s[7]
                ),
            )
            + &format!(
                "\n[claim]\npublic_url = \"https://leads.yourco.example\"\n\
                 link_secrets = [\"{}\"]\nslack_signing_secrets = [\"{}\"]\n\n\
                 [operations]\nslack_webhook_url = \"{}\"\n\n\
                 [notify.sms]\nurl = \"{}\"\ntoken_env = \"SMS_TOKEN\"\nfrom = \"LeadRelay\"\n\n\
                 [[notify.webhooks]]\nname = \"n8n\"\nurl = \"{}\"\nsecret = \"{}\"\n\n\
                 [notify.email]\nfrom = \"alerts@yourco.example\"\nsmtp_host = \"smtp.yourco.example\"\n\n\
                 [notify.email.replies]\naddress = \"replies@in.yourco.example\"\nsigning_keys = [\"{}\"]\n\n\
                 [enrichment]\nproviders = [\"clearbit\", \"transcript\"]\n\n\
                 [enrichment.transcript]\nbudget_ms = 1500\n\n\
                 [[enrichment.http]]\nname = \"clearbit\"\nurl = \"{}\"\n\n\
                 [console]\n[[console.accounts]]\nlogin = \"ops@yourco.example\"\n\
                 role = \"operator\"\npassword_hash = \"{}\"\n",
                s[2], s[3], s[8], s[15], s[9], s[10], s[11], s[13], s[12]
            )
    }

    #[test]
    fn no_inline_secret_is_shown_and_the_rest_is() {
        let text = everything_inline();
        let env = |name: &str| match name {
            "INTERCOM_CLIENT_SECRET" => Some("whsec_aW50ZXJjb20tc2VjcmV0LWZyb20tZW52LTAw".into()),
            "CHAT_TOKEN" | "SMS_TOKEN" => Some("token-from-the-environment".into()),
            _ => None,
        };
        let config = Config::parse(&text, "leadrelay.toml", &env).expect("a valid configuration");
        let shown = config.shown_text();
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        // A fragment is enough to leak: the distinctive part of each.
        for fragment in [
            "bGVhZHJlbGF5LXRlc3Qt",
            "forms-hmac-inline",
            "claim-link-inline",
            "slack-signing-inline",
            "REPSECRET4",
            "TEAMSSECRET5",
            "QUEUESECRET6",
            "QTEAMSSECRET7",
            "OPSSECRET8",
            "SECRETPATH9",
            "b3V0Ym91bmQt",
            "mailgun-signing-inline",
            "c2FsdHNhbHRzYWx0",
            "APIKEYSECRET13",
            "HEADERSECRET14",
            "SMSSECRET15",
        ] {
            assert!(!shown.contains(fragment), "{fragment} shown:\n{shown}");
        }
        assert!(!shown.contains("from-the-environment"));
        // What is not secret is still there to read.
        for visible in [
            "INTERCOM_CLIENT_SECRET",
            "SMS_TOKEN",
            "https://leads.yourco.example",
            "Sales inbox",
            "X-Hub-Signature-256",
            // A header's name is shown; every header value is hidden (free-form).
            "Chat-Version",
            "ops@yourco.example",
            "n8n",
            "fallback_queue",
        ] {
            assert!(shown.contains(visible), "{visible} hidden:\n{shown}");
        }
        assert!(shown.matches(SECRET).count() >= SECRETS.len());
        // What is shown is still a configuration a person can read as TOML.
        assert!(shown.parse::<Table>().is_ok());
    }

    #[test]
    fn a_value_shaped_like_a_secret_is_hidden_under_any_key() {
        for value in [
            "xoxb-1234-5678-abcdef",
            "https://user:pass@crm.example/",
            "https://crm.example/?access_token=abc",
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
        ] {
            let shown = redacted(&format!("note = {value:?}\n"));
            assert_eq!(shown.trim(), "note = \"(secret)\"", "{value}");
        }
        let shown = redacted("label = \"https://www.yourco.example/pricing\"\n");
        assert!(shown.contains("https://www.yourco.example/pricing"));
    }

    #[test]
    fn the_loaded_text_stays_out_of_debug_output() {
        let config = crate::config::tests::parse(MINIMAL).expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="));
    }
}

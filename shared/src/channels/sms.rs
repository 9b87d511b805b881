//! SMS through a generic HTTP provider: `POST {url}` with a bearer token and
//! `{"from", "to", "text"}`.

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::config::SmsConfig;
use crate::ports::NotifyError;
use crate::render::{sms_text, Alert};

/// The URL, token and body of one SMS.
pub(super) fn request<'a>(
    config: &'a SmsConfig,
    to: &str,
    alert: &Alert,
    claim_link: Option<&str>,
) -> Result<(&'a str, &'a SecretString, Value), NotifyError> {
    let token = config
        .token
        .as_ref()
        .ok_or_else(|| NotifyError::Misconfigured {
            channel: "sms".into(),
            detail: "no token (notify.sms.token_env)".into(),
        })?;
    let body = json!({
        "from": config.from,
        "to": to,
        "text": sms_text(&alert.sms, claim_link),
    });
    Ok((config.url.as_str(), token, body))
}

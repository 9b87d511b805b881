//! SMS through a generic HTTP provider: `POST {url}` with a bearer token and
//! `{"from", "to", "text"}`. (Amazon SNS is an [`leadrelay_shared::ports::SmsSender`] in the `aws` crate.)

use secrecy::SecretString;
use serde_json::{json, Value};

use leadrelay_shared::config::SmsConfig;
use leadrelay_shared::ports::NotifyError;

/// The URL, token and body of one SMS.
pub(super) fn request<'a>(
    config: &'a SmsConfig,
    to: &str,
    text: &str,
) -> Result<(&'a str, &'a SecretString, Value), NotifyError> {
    let misconfigured = |detail: &str| NotifyError::Misconfigured {
        channel: "sms".into(),
        detail: detail.into(),
    };
    let token = config
        .token
        .as_ref()
        .ok_or_else(|| misconfigured("no token (notify.sms.token_env)"))?;
    let url = config
        .url
        .as_deref()
        .ok_or_else(|| misconfigured("no url (notify.sms.url)"))?;
    let body = json!({"from": config.from, "to": to, "text": text});
    Ok((url, token, body))
}

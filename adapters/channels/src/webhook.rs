//! Outbound webhooks signed with the Standard Webhooks scheme, for n8n, Zapier or a CRM.
//!
//! `webhook-id` is the same for every attempt and replay of one lead's alert round, so a
//! receiver dedupes on it; each attempt is signed afresh with its own timestamp.

use jiff::Timestamp;
use serde_json::Value;

use leadrelay_shared::render::Alert;
use leadrelay_shared::signature::{sign_standard, SigningKey};

/// One webhook delivery: its id and body, signed per attempt.
pub(super) struct Signed<'a> {
    key: &'a SigningKey,
    id: String,
    body: Vec<u8>,
}

/// `lead_<id>` for the first alert, `lead_<id>_esc1` for the first escalation, ...
pub fn webhook_id(alert: &Alert) -> String {
    let round = alert.round.trim_end_matches(':');
    if round.is_empty() {
        format!("lead_{}", alert.lead_id)
    } else {
        format!("lead_{}_{round}", alert.lead_id)
    }
}

impl<'a> Signed<'a> {
    pub(super) fn new(
        key: &'a SigningKey,
        alert: &Alert,
        summary: &Value,
        claim_link: Option<&str>,
        owner_email: Option<&str>,
        now: Timestamp,
    ) -> Self {
        let mut data = summary.clone();
        if let Some(map) = data.as_object_mut() {
            map.insert("claim_url".into(), claim_link.into());
        }
        if let Some(owner) = data.get_mut("owner").and_then(Value::as_object_mut) {
            owner.insert("email".into(), owner_email.into());
        }
        let body = serde_json::json!({
            "type": "lead.assigned",
            "timestamp": now,
            "data": data,
        });
        Signed {
            key,
            id: webhook_id(alert),
            body: body.to_string().into_bytes(),
        }
    }

    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let timestamp = Timestamp::now().as_second();
        request
            .header("content-type", "application/json")
            .header("webhook-id", &self.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign_standard(self.key, &self.id, timestamp, &self.body),
            )
            .body(self.body.clone())
    }
}

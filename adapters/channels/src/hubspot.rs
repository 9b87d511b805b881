//! HubSpot: creates or updates the prospect's contact by e-mail, with its owner, in one call
//! (`POST /crm/v3/objects/contacts/batch/upsert`, `idProperty: email`).

use secrecy::SecretString;
use serde_json::{json, Map, Value};

use leadrelay_shared::config::HubspotConfig;
use leadrelay_shared::ports::NotifyError;
use leadrelay_shared::render::Alert;

pub(super) fn request<'a>(
    config: &'a HubspotConfig,
    alert: &Alert,
    owner_id: &str,
) -> Result<(String, &'a SecretString, Value), NotifyError> {
    let misconfigured = |detail: &str| NotifyError::Misconfigured {
        channel: "hubspot".into(),
        detail: detail.into(),
    };
    let token = config
        .token
        .as_ref()
        .ok_or_else(|| misconfigured("no token (notify.hubspot.token_env)"))?;
    let contact = &alert.contact;
    let email = contact
        .email
        .as_deref()
        .ok_or_else(|| misconfigured("the lead has no e-mail address to match the contact"))?;
    let mut properties = Map::new();
    let fields = [
        ("email", Some(email)),
        ("firstname", contact.firstname.as_deref()),
        ("lastname", contact.lastname.as_deref()),
        ("company", contact.company.as_deref()),
        ("phone", contact.phone.as_deref()),
        ("jobtitle", contact.jobtitle.as_deref()),
        ("hubspot_owner_id", Some(owner_id)),
    ];
    // Unknown fields are left out, never sent empty: an empty string would clear what the
    // CRM already knows.
    for (name, value) in fields {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            properties.insert(name.into(), value.into());
        }
    }
    let body = json!({
        "inputs": [{"idProperty": "email", "id": email, "properties": properties}],
    });
    let url = format!(
        "{}/crm/v3/objects/contacts/batch/upsert",
        config.base_url.trim_end_matches('/')
    );
    Ok((url, token, body))
}

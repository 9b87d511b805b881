//! The chat platforms' presets (Tidio, Zendesk, Drift, Crisp website and plugin hooks,
//! Chatbase, Landbot), each fed its platform's documented payload over HTTP against the
//! embedded mode. Signatures are computed here as each platform's docs describe them, with the
//! `hmac`/`sha1`/`sha2` crates rather than leadrelay's own signing code, so these tests check
//! the verifier against the documented algorithm, not against itself.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use jiff::Timestamp;
use leadrelay_shared::model::EventKind;
use leadrelay_shared::signature::{self, Delivery, SignatureError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::platform::{
    duplicate_of, fixture, hmac_sha1, hmac_sha256, ignored, post_accepted, refused,
};
use crate::support::{example_config, parse_config, Edit, Server};

const TIDIO_SECRET: &str = "whsec_example_tidio";
const ZENDESK_SECRET: &str = "zendesk-signing-secret-0123456789";
/// The verification token in `drift.json`'s `token` field: Drift sends the same in the header.
const DRIFT_TOKEN: &str = "3a0b9c7e5d1f4e2a8b6c0d9e7f1a2b3c";
const CRISP_KEY: &str = "crisp-website-hook-key-0123";
const CRISP_PLUGIN_SECRET: &str = "crisp_example_secret";
const CHATBASE_SECRET: &str = "chatbase-chatbot-secret-0123";
const LANDBOT_TOKEN: &str = "landbot-hook-token-0123456789";
const WRONG_SECRET: &str = "somebody-elses-secret-0123456789";

const EMAIL: &str = "jane.prospect@example.com";

/// The example configuration with one source per chat preset, each with an inline secret.
fn config() -> String {
    let sources = format!(
        r#"
[[sources]]
id = "tidio"
preset = "tidio"
secrets = ["{TIDIO_SECRET}"]

[[sources]]
id = "zendesk"
preset = "zendesk"
secrets = ["{ZENDESK_SECRET}"]

[[sources]]
id = "drift"
preset = "drift"
secrets = ["{DRIFT_TOKEN}"]

[[sources]]
id = "crisp"
preset = "crisp"
secrets = ["{CRISP_KEY}"]

[[sources]]
id = "crisp-plugin"
preset = "crisp-plugin"
secrets = ["{CRISP_PLUGIN_SECRET}"]

[[sources]]
id = "chatbase"
preset = "chatbase"
secrets = ["{CHATBASE_SECRET}"]

[[sources]]
id = "landbot"
preset = "landbot"
secrets = ["{LANDBOT_TOKEN}"]
"#
    );
    example_config().edit_first(
        "# replay_window_hours = 168\n",
        &format!("# replay_window_hours = 168\n{sources}"),
    )
}

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

/// `text` with `find` replaced, as bytes: a body changed after it was signed.
fn tampered(body: &[u8], find: &str, with: &str) -> Vec<u8> {
    std::str::from_utf8(body)
        .expect("UTF-8 fixture")
        .edit(find, with)
        .into_bytes()
}

/// The JSON `body` with `pointer` set to `value`, written compactly.
fn with(body: &[u8], pointer: &str, value: Value) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(body).expect("JSON fixture");
    *json
        .pointer_mut(pointer)
        .expect("the field is in the fixture") = value;
    serde_json::to_vec(&json).expect("serialise")
}

/// Runs the source's verifier directly on `headers` and `body` at the instant `at`.
fn verify_at(
    source: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: Timestamp,
) -> Result<(), SignatureError> {
    let config = parse_config(&config());
    let source = config.source(source).expect("configured source");
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    let delivery = Delivery::post("https://leads.example.com/webhooks/x", &map, body);
    signature::verify(&source.verifier, &source.keys, &delivery, at).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Tidio: x-tidio-signature: t=<unix seconds>,s=<hex HMAC-SHA256 of body + "_" + t>[,s=...]

fn tidio_signature(secret: &str, body: &[u8], t: &str) -> String {
    hex::encode(hmac_sha256(secret, &[body, b"_", t.as_bytes()]))
}

fn tidio_headers(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let t = t.to_string();
    let s = tidio_signature(secret, body, &t);
    vec![header("x-tidio-signature", format!("t={t},s={s}"))]
}

#[tokio::test]
async fn tidio_contact_created_signed_over_body_underscore_timestamp_becomes_a_lead() {
    let body = fixture("tidio.json");
    // The test vector in the platform notes: the documented algorithm over the fixture's bytes.
    const VECTOR: &str = "c0ce8b24b2d9cd4bced78901fdca347a85dcf2c98dba8bbd3cc5fef4455f8355";
    assert_eq!(tidio_signature(TIDIO_SECRET, &body, "1687177446"), VECTOR);
    let vector_header = format!("t=1687177446,s={VECTOR}");
    let at_vector = Timestamp::from_second(1_687_177_446).expect("valid");
    assert_eq!(
        verify_at(
            "tidio",
            &[("x-tidio-signature", &vector_header)],
            &body,
            at_vector
        ),
        Ok(())
    );
    assert!(matches!(
        verify_at(
            "tidio",
            &[("x-tidio-signature", &vector_header)],
            &body,
            Timestamp::now()
        ),
        Err(SignatureError::Stale { .. })
    ));

    let server = Server::start_with(&config()).await;
    let signed = tidio_headers(TIDIO_SECRET, &body, now());
    let lead = post_accepted(&server, "tidio", &signed, &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.phone.as_deref(), Some("123 456 789"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.visitor_id.as_deref(), Some("123456"));
    assert_eq!(
        capture.form_fields.get("company"),
        Some(&json!("Example Corp"))
    );
    assert_eq!(
        capture.timestamp.map(|t| t.as_second()),
        Some(1_687_177_445)
    );
    assert_eq!(lead.event_id, "7307ac4d-2c74-4d32-b7f9-f7d037ed2ebb");

    // One s= per active secret (rotation): a stale secret's entry beside the good one is fine,
    // and the same webhook_id again is the same lead.
    let t = now().to_string();
    let rotated = format!(
        "t={t},s={},s={}",
        tidio_signature(WRONG_SECRET, &body, &t),
        tidio_signature(TIDIO_SECRET, &body, &t)
    );
    duplicate_of(
        &server,
        "tidio",
        &[header("x-tidio-signature", rotated)],
        &body,
        &lead.id,
    )
    .await;

    let changed = tampered(&body, "jane.prospect@", "eve@");
    refused(&server, "tidio", &signed, &changed, "tampered body").await;
    let wrong = tidio_headers(WRONG_SECRET, &body, now());
    refused(&server, "tidio", &wrong, &body, "wrong secret").await;
    let stale = tidio_headers(TIDIO_SECRET, &body, now() - 600);
    refused(&server, "tidio", &stale, &body, "stale timestamp").await;
    let no_t = format!(
        "s={}",
        tidio_signature(TIDIO_SECRET, &body, &now().to_string())
    );
    refused(
        &server,
        "tidio",
        &[header("x-tidio-signature", no_t)],
        &body,
        "no t=",
    )
    .await;
    refused(&server, "tidio", &[], &body, "no signature header").await;

    let updated = fixture("tidio-contact.updated.json");
    let signed = tidio_headers(TIDIO_SECRET, &updated, now());
    ignored(&server, "tidio", &signed, &updated, "contact.updated").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Zendesk: X-Zendesk-Webhook-Signature: base64 HMAC-SHA256 of timestamp + body, the timestamp
// being X-Zendesk-Webhook-Signature-Timestamp as sent (RFC 3339).

fn zendesk_headers(secret: &str, body: &[u8], at: i64) -> Vec<(String, String)> {
    let timestamp = Timestamp::from_second(at).expect("valid").to_string();
    let signature = BASE64.encode(hmac_sha256(secret, &[timestamp.as_bytes(), body]));
    vec![
        header("X-Zendesk-Webhook-Signature", signature),
        header("X-Zendesk-Webhook-Signature-Timestamp", timestamp),
        header("X-Zendesk-Webhook-Id", "01HQZENDESKWEBHOOK0000000000"),
    ]
}

#[tokio::test]
async fn zendesk_trigger_ticket_signed_over_timestamp_and_body_becomes_a_lead() {
    let server = Server::start_with(&config()).await;
    let body = fixture("zendesk-trigger-ticket.json");
    let signed = zendesk_headers(ZENDESK_SECRET, &body, now());
    assert!(
        signed[1].1.ends_with('Z') && signed[1].1.contains('T'),
        "Zendesk's timestamp is RFC 3339 text: {}",
        signed[1].1
    );
    let lead = post_accepted(&server, "zendesk", &signed, &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(capture.conversation_id.as_deref(), Some("35436"));
    assert_eq!(
        capture.form_fields.get("ticket_url"),
        Some(&json!("example.zendesk.com/agent/tickets/35436"))
    );
    assert_eq!(capture.form_fields.get("channel"), Some(&json!("web_form")));
    assert_eq!(
        capture.timestamp,
        Some("2026-01-10T04:41:58Z".parse().expect("RFC 3339"))
    );
    assert_eq!(lead.event_id, "35436");

    // Zendesk sends no event id: the ticket id is the key, so a redelivery (signed afresh) of
    // the same ticket is the same lead.
    let again = zendesk_headers(ZENDESK_SECRET, &body, now());
    duplicate_of(&server, "zendesk", &again, &body, &lead.id).await;

    let changed = tampered(&body, "jane.prospect@", "eve@");
    refused(&server, "zendesk", &signed, &changed, "tampered body").await;
    let wrong = zendesk_headers(WRONG_SECRET, &body, now());
    refused(&server, "zendesk", &wrong, &body, "wrong secret").await;
    let stale = zendesk_headers(ZENDESK_SECRET, &body, now() - 600);
    refused(&server, "zendesk", &stale, &body, "stale timestamp").await;
    refused(
        &server,
        "zendesk",
        &signed[1..],
        &body,
        "no signature header",
    )
    .await;
    let no_timestamp = [signed[0].clone(), signed[2].clone()];
    refused(
        &server,
        "zendesk",
        &no_timestamp,
        &body,
        "no timestamp header",
    )
    .await;

    // The trigger decides what is a lead, so the preset has no event name to ignore; a
    // "Zendesk events" webhook pointed at this source by mistake gets a 400 naming the field
    // it lacks, and nothing is stored.
    let event = fixture("zendesk-user.active_changed.json");
    let before = server.counts().await.leads;
    let answer = server
        .post(
            "zendesk",
            &zendesk_headers(ZENDESK_SECRET, &event, now()),
            &event,
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["field"], "requester_email", "{:?}", answer.body);
    assert_eq!(server.counts().await.leads, before);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Drift: no signature; the app's verification token in X-Verification-Token (and in the body).

#[tokio::test]
async fn drift_contact_identified_with_the_verification_token_becomes_a_lead() {
    let server = Server::start_with(&config()).await;
    let body = fixture("drift.json");
    let token = [header("X-Verification-Token", DRIFT_TOKEN)];
    let lead = post_accepted(&server, "drift", &token, &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(capture.visitor_id.as_deref(), Some("349999553"));
    assert_eq!(capture.company, None, "Drift's contact carries no company");
    assert_eq!(
        capture.timestamp.map(|t| t.as_millisecond()),
        Some(1_506_971_031_434)
    );
    // Drift sends no event id: the key is the body's hash.
    assert_eq!(
        lead.event_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&body)))
    );
    let stored = serde_json::to_string(&lead).expect("serialise");
    assert!(
        !stored.contains(DRIFT_TOKEN),
        "the body's token is not kept on the lead"
    );

    // The same delivery again (a retry, or a captured request replayed) is the same lead.
    duplicate_of(&server, "drift", &token, &body, &lead.id).await;

    let wrong = [header("X-Verification-Token", WRONG_SECRET)];
    refused(&server, "drift", &wrong, &body, "wrong token").await;
    // The token in the body alone is not enough: the preset reads the header.
    refused(&server, "drift", &[], &body, "no token header").await;

    let updated = fixture("drift-contact_updated.json");
    ignored(&server, "drift", &token, &updated, "contact_updated").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Crisp website hooks: unsigned; the secret goes in the hook URL's `key` query parameter.

#[tokio::test]
async fn crisp_website_hook_with_the_key_in_its_url_becomes_a_partial_lead() {
    let server = Server::start_with(&config()).await;
    let body = fixture("crisp.json");
    let with_key = format!("crisp?key={CRISP_KEY}");
    let lead = post_accepted(&server, &with_key, &[], &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapturePartial));
    assert!(
        lead.incomplete,
        "an e-mail set in the chatbox is a partial capture"
    );
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    let session = "session_36ba3566-9651-4790-afc8-ffedbccc317f";
    assert_eq!(capture.conversation_id.as_deref(), Some(session));
    assert_eq!(capture.visitor_id.as_deref(), Some(session));
    assert_eq!(
        capture.timestamp.map(|t| t.as_millisecond()),
        Some(1_768_020_119_616)
    );
    assert_eq!(
        lead.event_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&body)))
    );

    duplicate_of(&server, &with_key, &[], &body, &lead.id).await;

    refused(
        &server,
        &format!("crisp?key={WRONG_SECRET}"),
        &[],
        &body,
        "wrong key",
    )
    .await;
    refused(&server, "crisp", &[], &body, "no key").await;
    let in_header = [header("key", CRISP_KEY)];
    refused(&server, "crisp", &in_header, &body, "key as a header").await;

    let message = fixture("crisp-message-send.json");
    ignored(&server, &with_key, &[], &message, "message:send").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Crisp plugin hooks: X-Crisp-Signature: hex HMAC-SHA256 of "[" + timestamp + ";" +
// JSON.stringify(body) + "]", X-Crisp-Request-Timestamp in milliseconds.

/// `JSON.stringify` of `crisp.json` (compact, keys in the order sent), as Crisp posts it.
const CRISP_SET_EMAIL: &str = r#"{"website_id":"42286ab3-b29a-4fde-8538-da0ae501d825","event":"session:set_email","data":{"website_id":"42286ab3-b29a-4fde-8538-da0ae501d825","session_id":"session_36ba3566-9651-4790-afc8-ffedbccc317f","email":"jane.prospect@example.com"},"timestamp":1768020119616}"#;
/// `JSON.stringify` of `crisp-message-send.json`.
const CRISP_MESSAGE_SEND: &str = r#"{"website_id":"42286ab3-b29a-4fde-8538-da0ae501d825","event":"message:send","data":{"website_id":"42286ab3-b29a-4fde-8538-da0ae501d825","session_id":"session_36ba3566-9651-4790-afc8-ffedbccc317f","type":"text","content":"Hey :)","from":"user","origin":"chat","stamped":true,"timestamp":1506985696616,"fingerprint":150698569649423,"user":{"nickname":"visitor493603","user_id":"session_36ba3566-9651-4790-afc8-ffedbccc317f"}},"timestamp":1506985696616}"#;

fn crisp_signature(secret: &str, stringified: &str, timestamp: &str) -> String {
    let message = format!("[{timestamp};{stringified}]");
    hex::encode(hmac_sha256(secret, &[message.as_bytes()]))
}

fn crisp_headers(secret: &str, stringified: &str, at_ms: i64) -> Vec<(String, String)> {
    let timestamp = at_ms.to_string();
    vec![
        header(
            "X-Crisp-Signature",
            crisp_signature(secret, stringified, &timestamp),
        ),
        header("X-Crisp-Request-Timestamp", timestamp),
    ]
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

#[tokio::test]
async fn crisp_plugin_hook_signed_over_its_stringified_body_becomes_a_partial_lead() {
    // The literals are the fixtures, stringified.
    for (literal, name) in [
        (CRISP_SET_EMAIL, "crisp.json"),
        (CRISP_MESSAGE_SEND, "crisp-message-send.json"),
    ] {
        let parsed: Value = serde_json::from_str(literal).expect("JSON");
        let file: Value = serde_json::from_slice(&fixture(name)).expect("JSON");
        assert_eq!(parsed, file, "{name}");
    }
    // The notes' vector; and the verifier takes it for the fixture as committed (indented),
    // since it signs the body as JSON.stringify writes it.
    const VECTOR: &str = "6954b47d4f61ea2bbfd5123db6496fbcb34507b703c259b8d887d67b7c078958";
    assert_eq!(
        crisp_signature(CRISP_PLUGIN_SECRET, CRISP_SET_EMAIL, "1768020119700"),
        VECTOR
    );
    let vector_headers = [
        ("X-Crisp-Signature", VECTOR),
        ("X-Crisp-Request-Timestamp", "1768020119700"),
    ];
    let at_vector = Timestamp::from_millisecond(1_768_020_119_700).expect("valid");
    assert_eq!(
        verify_at(
            "crisp-plugin",
            &vector_headers,
            &fixture("crisp.json"),
            at_vector
        ),
        Ok(())
    );
    assert!(matches!(
        verify_at(
            "crisp-plugin",
            &vector_headers,
            CRISP_SET_EMAIL.as_bytes(),
            Timestamp::now()
        ),
        Err(SignatureError::Stale { .. })
    ));

    let server = Server::start_with(&config()).await;
    let body = CRISP_SET_EMAIL.as_bytes();
    let signed = crisp_headers(CRISP_PLUGIN_SECRET, CRISP_SET_EMAIL, now_ms());
    let lead = post_accepted(&server, "crisp-plugin", &signed, body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapturePartial));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(
        capture.conversation_id.as_deref(),
        Some("session_36ba3566-9651-4790-afc8-ffedbccc317f")
    );

    // Crisp sends no event id: a retry, signed afresh over the same body, is the same lead.
    let retry = crisp_headers(CRISP_PLUGIN_SECRET, CRISP_SET_EMAIL, now_ms());
    duplicate_of(&server, "crisp-plugin", &retry, body, &lead.id).await;

    let changed = tampered(body, "jane.prospect@", "eve@");
    refused(&server, "crisp-plugin", &signed, &changed, "tampered body").await;
    let wrong = crisp_headers(WRONG_SECRET, CRISP_SET_EMAIL, now_ms());
    refused(&server, "crisp-plugin", &wrong, body, "wrong secret").await;
    let stale = crisp_headers(CRISP_PLUGIN_SECRET, CRISP_SET_EMAIL, now_ms() - 20 * 60_000);
    refused(&server, "crisp-plugin", &stale, body, "stale timestamp").await;
    refused(
        &server,
        "crisp-plugin",
        &signed[1..],
        body,
        "no signature header",
    )
    .await;
    refused(
        &server,
        "crisp-plugin",
        &signed[..1],
        body,
        "no timestamp header",
    )
    .await;

    let message = crisp_headers(CRISP_PLUGIN_SECRET, CRISP_MESSAGE_SEND, now_ms());
    ignored(
        &server,
        "crisp-plugin",
        &message,
        CRISP_MESSAGE_SEND.as_bytes(),
        "message:send",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Chatbase: x-chatbase-signature: hex HMAC-SHA1 of the raw body.

fn chatbase_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![header(
        "x-chatbase-signature",
        hex::encode(hmac_sha1(secret, body)),
    )]
}

/// Chatbase's payload carries no time at all, and a mapping has nothing else to fill the
/// capture's required timestamp with: until the core falls back to the time received, a
/// genuine `leads.submit` is answered 400 `timestamp`.
#[tokio::test]
async fn chatbase_leads_submit_signed_with_hmac_sha1_becomes_a_lead() {
    let server = Server::start_with(&config()).await;
    let body = fixture("chatbase.json");
    let signed = chatbase_headers(CHATBASE_SECRET, &body);
    let lead = post_accepted(&server, "chatbase", &signed, &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(
        capture.conversation_id.as_deref(),
        Some("b7f9c2de-1a3b-4c5d-8e9f-0a1b2c3d4e5f")
    );

    // No event id and no timestamp: the same delivery again is the same lead.
    duplicate_of(&server, "chatbase", &signed, &body, &lead.id).await;
    server.stop().await;
}

#[tokio::test]
async fn chatbase_hmac_sha1_signature_is_checked_and_other_events_are_ignored() {
    let body = fixture("chatbase.json");
    let signed = chatbase_headers(CHATBASE_SECRET, &body);
    assert_eq!(signed[0].1.len(), 40, "a SHA-1 digest in hex");
    let now = Timestamp::now();
    assert_eq!(
        verify_at(
            "chatbase",
            &[("x-chatbase-signature", &signed[0].1)],
            &body,
            now
        ),
        Ok(())
    );

    let server = Server::start_with(&config()).await;
    let changed = tampered(&body, "jane.prospect@", "eve@");
    refused(&server, "chatbase", &signed, &changed, "tampered body").await;
    let wrong = chatbase_headers(WRONG_SECRET, &body);
    refused(&server, "chatbase", &wrong, &body, "wrong secret").await;
    let sha256 = [header(
        "x-chatbase-signature",
        hex::encode(hmac_sha256(CHATBASE_SECRET, &[&body])),
    )];
    refused(
        &server,
        "chatbase",
        &sha256,
        &body,
        "SHA-256 instead of SHA-1",
    )
    .await;
    refused(&server, "chatbase", &[], &body, "no signature header").await;

    let other = with(&body, "/eventType", json!("conversations.created"));
    let signed_other = chatbase_headers(CHATBASE_SECRET, &other);
    ignored(
        &server,
        "chatbase",
        &signed_other,
        &other,
        "conversations.created",
    )
    .await;

    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Landbot message hooks: no signature; the hook's token as "Authorization: Token <token>".

/// Landbot's message timestamp is fractional Unix seconds (`1768020119.482913`), which a
/// mapping cannot read as a time, and there is no other: until the core reads it (or falls
/// back to the time received), a customer message is answered 400 `timestamp`.
#[tokio::test]
async fn landbot_customer_message_with_the_hook_token_becomes_one_lead_per_customer() {
    let server = Server::start_with(&config()).await;
    let body = fixture("landbot.json");
    let token = [header("Authorization", format!("Token {LANDBOT_TOKEN}"))];
    let lead = post_accepted(&server, "landbot", &token, &body).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(capture.captured_email.as_deref(), Some(EMAIL));
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(
        capture.metadata.source_url.as_deref(),
        Some("https://www.example.com/pricing")
    );
    assert_eq!(
        capture.form_fields.get("country"),
        Some(&json!("United States"))
    );
    assert_eq!(capture.visitor_id.as_deref(), Some("1234567"));
    assert_eq!(lead.event_id, "1234567");

    // Landbot posts every message: the same one again, or the customer's next one, is the
    // same lead.
    duplicate_of(&server, "landbot", &token, &body, &lead.id).await;
    let next = with(&body, "/messages/0/data/body", json!("Do you offer SSO?"));
    duplicate_of(&server, "landbot", &token, &next, &lead.id).await;
    server.stop().await;
}

#[tokio::test]
async fn landbot_hook_token_is_checked_and_other_senders_are_ignored() {
    let body = fixture("landbot.json");
    let good = format!("Token {LANDBOT_TOKEN}");
    let now = Timestamp::now();
    assert_eq!(
        verify_at("landbot", &[("authorization", &good)], &body, now),
        Ok(())
    );

    let server = Server::start_with(&config()).await;
    let token = [header("Authorization", good)];
    let wrong = [header("Authorization", format!("Token {WRONG_SECRET}"))];
    refused(&server, "landbot", &wrong, &body, "wrong token").await;
    let bearer = [header("Authorization", format!("Bearer {LANDBOT_TOKEN}"))];
    refused(
        &server,
        "landbot",
        &bearer,
        &body,
        "Bearer instead of Token",
    )
    .await;
    refused(&server, "landbot", &[], &body, "no Authorization header").await;

    let bot = with(&body, "/messages/0/sender/type", json!("bot"));
    ignored(&server, "landbot", &token, &bot, "bot").await;

    // A customer message before the bot has asked for an e-mail or phone is not a lead yet:
    // 200 ignored (a 400 would be retried by Landbot), nothing stored.
    let mut early: Value = serde_json::from_slice(&body).expect("JSON");
    let customer = early["messages"][0]["customer"]
        .as_object_mut()
        .expect("customer object");
    customer.remove("email");
    customer.remove("phone");
    let early = serde_json::to_vec(&early).expect("serialise");
    let before = server.counts().await.leads;
    let answer = server.post("landbot", &token, &early).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "ignored", "{:?}", answer.body);
    assert_eq!(server.counts().await.leads, before);
    server.stop().await;
}

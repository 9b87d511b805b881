//! The shipped presets for forms, CRMs and schedulers (Intercom, HubSpot, Typeform, Tally,
//! Calendly, Cal.com) against each platform's documented signature and example payloads.
//!
//! Every request here is signed as the platform's docs describe, with the `hmac`, `sha1`,
//! `sha2`, `base64` and `hex` crates directly, never with leadrelay's own signing code: the
//! tests check the verifier against the documented algorithm, not against itself. Each fixture
//! becomes a lead with the fields its payload carries; a tampered, mis-keyed, stale or
//! unsigned delivery is 401 and stores nothing; another event is 200 ignored and stores
//! nothing; the same delivery again is a duplicate of the first lead. Last, a property test:
//! no shipped preset's mapping panics on any JSON.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use jiff::Timestamp;
use leadrelay_shared::mapping::{Mapped, MAX_ACTIVITY_TEXT};
use leadrelay_shared::model::EventKind;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::platform::{
    accepted_lead, duplicate_of, fixture, hmac_sha1, hmac_sha256, ignored, refused,
};
use crate::support::{example_config, parse_config, root, Edit, Server};

/// The source's secret, as pasted into the platform (at least 16 bytes).
const SECRET: &str = "platform-preset-secret-0123456789";
/// A secret of the same length that is not the source's.
const WRONG_SECRET: &str = "somebody-elses-secret-0123456789a";

/// The example configuration plus one source `id` using `preset`, with `extra` keys.
fn config_with(id: &str, preset: &str, secret: &str, extra: &str) -> String {
    format!(
        "{}\n\n[[sources]]\nid = \"{id}\"\npreset = \"{preset}\"\nsecrets = [\"{secret}\"]\n{extra}\n",
        example_config()
    )
}

/// `body` with `find` replaced by `with` (the first occurrence; it must be there).
fn edited(body: &[u8], find: &str, with: &str) -> Vec<u8> {
    std::str::from_utf8(body)
        .expect("UTF-8 fixture")
        .edit_first(find, with)
        .into_bytes()
}

fn header(name: &str, value: String) -> Vec<(String, String)> {
    vec![(name.to_owned(), value)]
}

fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

// ---------------------------------------------------------------------------------------------
// Intercom: X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body>, keyed by the app's client
// secret; no timestamp. https://developers.intercom.com/docs/webhooks/webhook-notifications

fn intercom_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    header(
        "X-Hub-Signature",
        format!("sha1={}", hex::encode(hmac_sha1(secret, body))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_contact_topics_become_leads_and_only_a_valid_sha1_signature_is_taken() {
    let server = Server::start_with(&config_with("intercom", "intercom", SECRET, "")).await;
    let body = fixture("intercom.json");

    let answer = server
        .post("intercom", &intercom_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    // contact.lead.created: a visitor became a lead, often before finishing a conversation.
    assert_eq!(capture.event, Some(EventKind::LeadCapturePartial));
    assert!(lead.incomplete);
    assert_eq!(lead.event_id, "notif_204d32ad-f47a-4276-8074-e5ce789d2987");
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(
        capture.metadata.source_url.as_deref(),
        Some("https://www.example.com/pricing")
    );
    assert_eq!(
        capture.visitor_id.as_deref(),
        Some("6961d897719c606240178da8")
    );
    assert_eq!(
        capture.form_fields.get("country"),
        Some(&json!("United States"))
    );
    assert_eq!(
        capture.company, None,
        "Intercom's webhook carries no company name"
    );
    assert_eq!(
        capture.timestamp,
        Timestamp::from_second(1_768_020_119).ok()
    );

    // Forged or broken deliveries change nothing.
    let forged = edited(&body, "Jane Prospect", "Eve Prospect");
    refused(
        &server,
        "intercom",
        &intercom_signed(SECRET, &body),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "intercom",
        &intercom_signed(WRONG_SECRET, &body),
        &body,
        "wrong secret",
    )
    .await;
    refused(&server, "intercom", &[], &body, "no signature header").await;
    let sha256 = header(
        "X-Hub-Signature",
        format!("sha1={}", hex::encode(hmac_sha256(SECRET, &[&body[..]]))),
    );
    refused(&server, "intercom", &sha256, &body, "SHA-256 under sha1=").await;

    // Intercom retries a notification with the same id and a higher delivery_attempts, so
    // other bytes, validly signed: the same lead.
    let retry = edited(
        &body,
        "\"delivery_attempts\": 1",
        "\"delivery_attempts\": 2",
    );
    duplicate_of(
        &server,
        "intercom",
        &intercom_signed(SECRET, &retry),
        &retry,
        &lead.id,
    )
    .await;
    duplicate_of(
        &server,
        "intercom",
        &intercom_signed(SECRET, &body),
        &body,
        &lead.id,
    )
    .await;

    // The test request ("ping", id null) and any topic not listed as a lead are ignored.
    let ping = fixture("intercom-ping.json");
    ignored(
        &server,
        "intercom",
        &intercom_signed(SECRET, &ping),
        &ping,
        "ping",
    )
    .await;
    let replied = edited(&body, "contact.lead.created", "conversation.user.replied");
    let replied = edited(&replied, "notif_204d", "notif_304d");
    ignored(
        &server,
        "intercom",
        &intercom_signed(SECRET, &replied),
        &replied,
        "conversation.user.replied",
    )
    .await;

    // contact.user.created is a full lead.
    let user = fixture("intercom-contact.user.created.json");
    let answer = server
        .post("intercom", &intercom_signed(SECRET, &user), &user)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    assert_eq!(lead.capture.event, Some(EventKind::LeadCapture));
    assert_eq!(lead.event_id, "notif_c47f7aeb-bdeb-4d35-8fc7-eb945334fdad");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercom_conversation_brings_the_question_the_contact_and_the_conversation_id() {
    let server = Server::start_with(&config_with("intercom", "intercom", SECRET, "")).await;
    let body = fixture("intercom-conversation.user.created.json");
    let answer = server
        .post("intercom", &intercom_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(lead.event_id, "notif_3ac27816-d27c-45fd-a65a-bbaf021cf780");
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    // Intercom sends the message as HTML; the rep reads its text.
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("Hi, do you offer volume pricing for 50 seats?")
    );
    assert_eq!(
        capture.metadata.source_url.as_deref(),
        Some("https://www.example.com/pricing")
    );
    // data.item.id is the conversation's id here; the visitor is the contact who wrote.
    assert_eq!(
        capture.visitor_id.as_deref(),
        Some("5c9553cb27e377f24eed49f7")
    );
    assert_eq!(capture.conversation_id.as_deref(), Some("21321941764"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HubSpot, signature v3: X-HubSpot-Signature-v3 = base64 HMAC-SHA256 of
// method + URI + body + timestamp, keyed by the app's client secret; X-HubSpot-Request-Timestamp
// in milliseconds, refused after five minutes. In the URI, only twelve escapes are decoded.
// https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation

/// The URI as HubSpot signs it: these escapes decoded, every other escape kept.
fn hubspot_uri(uri: &str) -> String {
    const DECODED: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    DECODED
        .iter()
        .fold(uri.to_owned(), |uri, (escape, c)| uri.replace(escape, c))
}

fn hubspot_v3(secret: &str, uri: &str, body: &[u8], timestamp_ms: &str) -> String {
    let mut message = Vec::new();
    message.extend_from_slice(b"POST");
    message.extend_from_slice(hubspot_uri(uri).as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp_ms.as_bytes());
    BASE64.encode(hmac_sha256(secret, &[&message[..]]))
}

fn hubspot_signed(
    secret: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: i64,
) -> Vec<(String, String)> {
    let timestamp = timestamp_ms.to_string();
    vec![
        (
            "X-HubSpot-Signature-v3".into(),
            hubspot_v3(secret, uri, body, &timestamp),
        ),
        ("X-HubSpot-Request-Timestamp".into(), timestamp),
    ]
}

#[test]
fn the_hubspot_v3_test_vector_holds() {
    assert_eq!(
        hubspot_uri("https://www.example.com/webhook_uri?source=hubspot&tag=a%3Ab%20c%2B"),
        "https://www.example.com/webhook_uri?source=hubspot&tag=a:b%20c%2B"
    );
    assert_eq!(
        hubspot_v3(
            "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            "https://www.example.com/webhook_uri?source=hubspot&tag=a%3Ab",
            br#"{"email":"jane.prospect@example.com"}"#,
            "1768020119000",
        ),
        "Jb0RvRTiZ6sT7bIn3hoNidWXFpxlO9h8cKFsCoCGZa8="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_workflow_contact_becomes_a_lead_under_a_fresh_v3_signature() {
    let server = Server::start_with(&config_with("hubspot", "hubspot", SECRET, "")).await;
    // No `url` configured: leadrelay signs the URL the request reached, as HubSpot called it.
    let uri = format!("{}/webhooks/hubspot", server.base);
    let body = fixture("hubspot.json");
    let now_ms = now_secs() * 1000;

    let answer = server
        .post(
            "hubspot",
            &hubspot_signed(SECRET, &uri, &body, now_ms),
            &body,
        )
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+1 555 555 0123"));
    assert_eq!(capture.job_title.as_deref(), Some("Head of Operations"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(
        capture.metadata.source_url.as_deref(),
        Some("https://www.example.com/pricing")
    );
    assert_eq!(capture.visitor_id.as_deref(), Some("3234574"));
    // When the form was submitted.
    assert_eq!(
        capture.timestamp,
        Timestamp::from_millisecond(1_768_020_119_000).ok()
    );
    assert_eq!(
        capture.form_fields.get("company_size"),
        Some(&json!("25-50"))
    );
    assert_eq!(
        capture.form_fields.get("industry"),
        Some(&json!("Software"))
    );
    // Every contact property is kept as a form field.
    assert_eq!(
        capture.form_fields.get("lifecyclestage"),
        Some(&json!("lead"))
    );
    assert_eq!(
        capture.form_fields.get("ip_country"),
        Some(&json!("united states"))
    );

    let forged = edited(&body, "Example Corp", "Evil Corp");
    refused(
        &server,
        "hubspot",
        &hubspot_signed(SECRET, &uri, &body, now_ms),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "hubspot",
        &hubspot_signed(WRONG_SECRET, &uri, &body, now_ms),
        &body,
        "wrong secret",
    )
    .await;
    let stale = now_ms - 10 * 60 * 1000;
    refused(
        &server,
        "hubspot",
        &hubspot_signed(SECRET, &uri, &body, stale),
        &body,
        "ten minutes old",
    )
    .await;
    let other_url = uri.replace("http://", "https://");
    refused(
        &server,
        "hubspot",
        &hubspot_signed(SECRET, &other_url, &body, now_ms),
        &body,
        "another URL",
    )
    .await;
    let signed = hubspot_signed(SECRET, &uri, &body, now_ms);
    refused(
        &server,
        "hubspot",
        &signed[1..],
        &body,
        "no signature header",
    )
    .await;
    refused(
        &server,
        "hubspot",
        &signed[..1],
        &body,
        "no timestamp header",
    )
    .await;

    // HubSpot sends no event id and every workflow delivery is a lead (no event to ignore):
    // the same contact posted again, freshly signed, is the same lead.
    let again = hubspot_signed(SECRET, &uri, &body, now_ms + 1000);
    duplicate_of(&server, "hubspot", &again, &body, &lead.id).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_hubspot_signs_the_configured_url_with_its_reserved_escapes_decoded() {
    let secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    let config = config_with(
        "hubspot",
        "hubspot",
        secret,
        "url = \"https://www.example.com/webhook_uri\"",
    );
    let server = Server::start_with(&config).await;
    // The workflow's URL as entered in HubSpot, query included.
    let public = "https://www.example.com/webhook_uri?source=hubspot&tag=a%3Ab";
    let path = "hubspot?source=hubspot&tag=a%3Ab";
    let now_ms = now_secs() * 1000;
    // "Customize request body": a flat object of the properties the user picked. Without a
    // date property the lead's time is when leadrelay received it.
    let undated = fixture("hubspot-custom-body.json");
    let before = Timestamp::now();
    let answer = server
        .post(
            path,
            &hubspot_signed(secret, public, &undated, now_ms),
            &undated,
        )
        .await;
    let lead = accepted_lead(&server, &answer).await;
    assert!(
        lead.capture.timestamp.is_some_and(|t| t
            >= before
                .saturating_sub(jiff::SignedDuration::from_secs(1))
                .expect("in range")),
        "received time: {:?}",
        lead.capture.timestamp
    );
    // With lastmodifieddate picked too, as docs/platforms/hubspot.md says.
    let body = edited(
        &undated,
        "\"hs_object_id\"",
        "\"lastmodifieddate\": \"1768020119000\",\n  \"hs_object_id\"",
    );

    // Signed over the URL with %3A left escaped, which HubSpot does not do: refused.
    let mut message = format!("POST{public}").into_bytes();
    message.extend_from_slice(&body);
    message.extend_from_slice(now_ms.to_string().as_bytes());
    let undecoded = vec![
        (
            "X-HubSpot-Signature-v3".to_owned(),
            BASE64.encode(hmac_sha256(secret, &[&message[..]])),
        ),
        ("X-HubSpot-Request-Timestamp".to_owned(), now_ms.to_string()),
    ];
    refused(&server, path, &undecoded, &body, "%3A left encoded").await;
    // The host the request reached is not what HubSpot signed.
    let reached = format!("{}/webhooks/{path}", server.base);
    refused(
        &server,
        path,
        &hubspot_signed(secret, &reached, &body, now_ms),
        &body,
        "local URL",
    )
    .await;

    let answer = server
        .post(path, &hubspot_signed(secret, public, &body, now_ms), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(
        capture.timestamp,
        Timestamp::from_millisecond(1_768_020_119_000).ok()
    );
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+1 555 555 0123"));
    assert_eq!(capture.job_title.as_deref(), Some("Head of Operations"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspots_api_key_option_is_the_preset_with_a_token_scheme() {
    // The workflow's "API key" authentication: a header named by the user, holding a secret.
    let config = config_with(
        "hubspot",
        "hubspot",
        SECRET,
        "scheme = \"token\"\n[sources.signature]\nheader = \"X-Leadrelay-Token\"",
    );
    let server = Server::start_with(&config).await;
    let body = fixture("hubspot.json");
    refused(&server, "hubspot", &[], &body, "no token").await;
    let wrong = header("X-Leadrelay-Token", WRONG_SECRET.into());
    refused(&server, "hubspot", &wrong, &body, "wrong token").await;
    let token = header("X-Leadrelay-Token", SECRET.into());
    let answer = server.post("hubspot", &token, &body).await;
    let lead = accepted_lead(&server, &answer).await;
    assert_eq!(lead.capture.name.as_deref(), Some("Jane Prospect"));
    // A token signs nothing: the same body again is the same lead.
    duplicate_of(&server, "hubspot", &token, &body, &lead.id).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Typeform: Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>; no timestamp.
// https://www.typeform.com/developers/webhooks/secure-your-webhooks/

fn typeform_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    header(
        "Typeform-Signature",
        format!("sha256={}", BASE64.encode(hmac_sha256(secret, &[body]))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typeform_response_maps_its_answers_by_ref_and_only_a_valid_signature_is_taken() {
    let server = Server::start_with(&config_with("typeform", "typeform", SECRET, "")).await;
    let body = fixture("typeform.json");

    let answer = server
        .post("typeform", &typeform_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(lead.event_id, "01HQZ8J4K9W3B6C2D5E7F8G9HA");
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(
        capture.metadata.source_url.as_deref(),
        Some("https://www.example.com/pricing")
    );
    assert_eq!(
        capture.visitor_id.as_deref(),
        Some("a3a12ec67a1365927098a606107fac15")
    );
    assert_eq!(
        capture.form_fields.get("company_size"),
        Some(&json!("11-50"))
    );
    assert_eq!(capture.form_fields.get("consent"), Some(&json!(true)));
    assert_eq!(
        capture.form_fields.get("utm_source"),
        Some(&json!("google"))
    );
    assert_eq!(
        capture.timestamp,
        "2026-01-10T04:41:59Z".parse::<Timestamp>().ok()
    );

    let forged = edited(&body, "Example Corp", "Evil Corp");
    refused(
        &server,
        "typeform",
        &typeform_signed(SECRET, &body),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "typeform",
        &typeform_signed(WRONG_SECRET, &body),
        &body,
        "wrong secret",
    )
    .await;
    refused(&server, "typeform", &[], &body, "no signature header").await;
    let hex_encoded = header(
        "Typeform-Signature",
        format!("sha256={}", hex::encode(hmac_sha256(SECRET, &[&body[..]]))),
    );
    refused(&server, "typeform", &hex_encoded, &body, "hex, not base64").await;

    duplicate_of(
        &server,
        "typeform",
        &typeform_signed(SECRET, &body),
        &body,
        &lead.id,
    )
    .await;

    let partial = edited(&body, "\"form_response\",", "\"form_response_partial\",");
    ignored(
        &server,
        "typeform",
        &typeform_signed(SECRET, &partial),
        &partial,
        "form_response_partial",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typeforms_documented_example_maps_by_answer_type_when_no_ref_is_set() {
    let server = Server::start_with(&config_with("typeform", "typeform", SECRET, "")).await;
    let body = fixture("typeform-example-payload.json");
    let answer = server
        .post("typeform", &typeform_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(lead.event_id, "LtWXD3crgy");
    assert_eq!(capture.captured_email.as_deref(), Some("laura@example.com"));
    // The long-text question, found by its question type.
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some(
            "It's cold right now! I live in an older medium-sized city with a university. \
             Geographically, the area is hilly."
        )
    );
    // Answers without a ref are kept under the question's id.
    assert_eq!(
        capture.form_fields.get("JwWggjAKtOkA"),
        Some(&json!("Laura"))
    );
    assert_eq!(
        capture.form_fields.get("user_id"),
        Some(&json!("abc123456"))
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Tally: Tally-Signature = base64 HMAC-SHA256 of JSON.stringify(the parsed body), no prefix, no
// timestamp. Tally sends compact JSON, so that is the body as sent. https://tally.so/help/webhooks

/// The fixture as Tally sends it: compact JSON.
fn tally_body(name: &str) -> Vec<u8> {
    let parsed: Value = serde_json::from_slice(&fixture(name)).expect("JSON fixture");
    serde_json::to_vec(&parsed).expect("serialise")
}

fn tally_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    // JSON.stringify(JSON.parse(body)) of a compact body is the body itself.
    header(
        "Tally-Signature",
        BASE64.encode(hmac_sha256(secret, &[body])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tally_response_maps_its_fields_by_label_and_type_and_only_a_valid_signature_is_taken() {
    let server = Server::start_with(&config_with("tally", "tally", SECRET, "")).await;
    let body = tally_body("tally.json");

    let answer = server
        .post("tally", &tally_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(lead.event_id, "a4cb511e-d513-4fa5-baee-b815d718dfd1");
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(capture.visitor_id.as_deref(), Some("dwQKYm"));
    assert_eq!(
        capture.form_fields.get("utm_source"),
        Some(&json!("google"))
    );
    assert_eq!(
        capture.form_fields.get("Work email"),
        Some(&json!("jane.prospect@example.com"))
    );
    // A choice question carries the chosen options' ids; the preset keeps their texts, under
    // the question's label, where the company size reaches routing from.
    assert_eq!(
        capture.form_fields.get("Company size"),
        Some(&json!(["11-50"]))
    );
    assert_eq!(
        capture.timestamp,
        "2026-01-10T04:41:59.889Z".parse::<Timestamp>().ok()
    );

    let forged = edited(&body, "Example Corp", "Evil Corp");
    refused(
        &server,
        "tally",
        &tally_signed(SECRET, &body),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "tally",
        &tally_signed(WRONG_SECRET, &body),
        &body,
        "wrong secret",
    )
    .await;
    refused(&server, "tally", &[], &body, "no signature header").await;

    duplicate_of(
        &server,
        "tally",
        &tally_signed(SECRET, &body),
        &body,
        &lead.id,
    )
    .await;

    let other = edited(&body, "\"FORM_RESPONSE\"", "\"FORM_DELETED\"");
    ignored(
        &server,
        "tally",
        &tally_signed(SECRET, &other),
        &other,
        "FORM_DELETED",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Calendly: Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">,
// keyed by the subscription's signing key; the docs' example refuses after three minutes.
// https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures

fn calendly_signed(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    header(
        "Calendly-Webhook-Signature",
        format!(
            "t={t},v1={}",
            hex::encode(hmac_sha256(secret, &[&message[..]]))
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendly_booking_becomes_a_lead_and_only_a_fresh_valid_signature_is_taken() {
    let server = Server::start_with(&config_with("calendly", "calendly", SECRET, "")).await;
    let body = fixture("calendly.json");
    let now = now_secs();

    let answer = server
        .post("calendly", &calendly_signed(SECRET, &body, now), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(
        lead.event_id,
        "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA"
    );
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(capture.phone.as_deref(), Some("+15555550123"));
    // Calendly's default last question on every event type.
    assert_eq!(
        capture.trigger_query.as_deref(),
        Some("We need pricing for 50 seats, can someone call me this week?")
    );
    assert_eq!(
        capture.form_fields.get("meeting"),
        Some(&json!("2026-01-12T16:00:00.000000Z"))
    );
    assert_eq!(
        capture.form_fields.get("utm_source"),
        Some(&json!("google"))
    );
    assert_eq!(
        capture.form_fields.get("Company name"),
        Some(&json!("Example Corp"))
    );

    let forged = edited(&body, "Example Corp", "Evil Corp");
    refused(
        &server,
        "calendly",
        &calendly_signed(SECRET, &body, now),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "calendly",
        &calendly_signed(WRONG_SECRET, &body, now),
        &body,
        "wrong secret",
    )
    .await;
    refused(
        &server,
        "calendly",
        &calendly_signed(SECRET, &body, now - 240),
        &body,
        "four minutes old",
    )
    .await;
    refused(&server, "calendly", &[], &body, "no signature header").await;
    let signed = calendly_signed(SECRET, &body, now);
    let without_t = header(
        "Calendly-Webhook-Signature",
        signed[0].1.replace(&format!("t={now},"), ""),
    );
    refused(&server, "calendly", &without_t, &body, "no t=").await;
    // The signature over another time than the one sent.
    let moved = header(
        "Calendly-Webhook-Signature",
        signed[0]
            .1
            .replace(&format!("t={now}"), &format!("t={}", now - 1)),
    );
    refused(&server, "calendly", &moved, &body, "t changed").await;

    // No event id: the invitee's URI is unique per booking, so a redelivery is the same lead.
    duplicate_of(
        &server,
        "calendly",
        &calendly_signed(SECRET, &body, now + 1),
        &body,
        &lead.id,
    )
    .await;

    // An event that is neither a lead nor activity (activity: tests/it/activity_intake.rs).
    let deleted = edited(
        &fixture("calendly-invitee_no_show.created.json"),
        "invitee_no_show.created",
        "invitee_no_show.deleted",
    );
    ignored(
        &server,
        "calendly",
        &calendly_signed(SECRET, &deleted, now),
        &deleted,
        "invitee_no_show.deleted",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendly_routing_form_submission_finds_the_email_among_its_answers() {
    let server = Server::start_with(&config_with("calendly", "calendly", SECRET, "")).await;
    let body = fixture("calendly-routing_form_submission.created.json");
    let answer = server
        .post(
            "calendly",
            &calendly_signed(SECRET, &body, now_secs()),
            &body,
        )
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(
        lead.event_id,
        "https://api.calendly.com/routing_form_submissions/AAAAAAAAAAAAAAAA"
    );
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(
        capture.form_fields.get("company_size"),
        Some(&json!("11-50"))
    );
    assert_eq!(
        capture.form_fields.get("utm_source"),
        Some(&json!("google"))
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Cal.com: X-Cal-Signature-256 = hex HMAC-SHA256 of the raw body, no prefix, no timestamp;
// "no-secret-provided" when the webhook has no secret.
// https://cal.com/docs/developing/guides/automation/webhooks

fn calcom_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    header(
        "X-Cal-Signature-256",
        hex::encode(hmac_sha256(secret, &[body])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calcom_booking_becomes_a_lead_and_only_a_valid_signature_is_taken() {
    let server = Server::start_with(&config_with("calcom", "calcom", SECRET, "")).await;
    let body = fixture("calcom.json");

    let answer = server
        .post("calcom", &calcom_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert_eq!(lead.event_id, "bFJeNb2uX8ANpT3JL5EfXw");
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("john.doe@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("John Doe"));
    // The example booking left its notes empty.
    assert_eq!(capture.trigger_query, None);
    assert_eq!(
        capture.form_fields.get("meeting"),
        Some(&json!("2023-05-25T09:30:00Z"))
    );
    assert_eq!(capture.form_fields.get("event_type"), Some(&json!("60min")));
    assert_eq!(
        capture.form_fields.get("location"),
        Some(&json!({"optionValue": "", "value": "inPerson"}))
    );
    assert_eq!(
        capture.timestamp,
        "2023-05-24T09:30:00.538Z".parse::<Timestamp>().ok()
    );

    let forged = edited(&body, "John Doe", "Eve Doe");
    refused(
        &server,
        "calcom",
        &calcom_signed(SECRET, &body),
        &forged,
        "tampered",
    )
    .await;
    refused(
        &server,
        "calcom",
        &calcom_signed(WRONG_SECRET, &body),
        &body,
        "wrong secret",
    )
    .await;
    refused(&server, "calcom", &[], &body, "no signature header").await;
    let unsigned = header("X-Cal-Signature-256", "no-secret-provided".into());
    refused(
        &server,
        "calcom",
        &unsigned,
        &body,
        "webhook without a secret",
    )
    .await;

    duplicate_of(
        &server,
        "calcom",
        &calcom_signed(SECRET, &body),
        &body,
        &lead.id,
    )
    .await;

    // An event that is neither a lead nor activity (activity: tests/it/activity_intake.rs).
    let rejected = edited(
        &fixture("calcom-BOOKING_CANCELLED.json"),
        "BOOKING_CANCELLED",
        "BOOKING_REJECTED",
    );
    ignored(
        &server,
        "calcom",
        &calcom_signed(SECRET, &rejected),
        &rejected,
        "BOOKING_REJECTED",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calcom_routing_form_submission_without_an_id_is_deduped_on_its_body() {
    let server = Server::start_with(&config_with("calcom", "calcom", SECRET, "")).await;
    let body = fixture("calcom-FORM_SUBMITTED.json");

    let answer = server
        .post("calcom", &calcom_signed(SECRET, &body), &body)
        .await;
    let lead = accepted_lead(&server, &answer).await;
    let capture = &lead.capture;
    assert_eq!(capture.event, Some(EventKind::LeadCapture));
    assert!(lead.event_id.starts_with("sha256:"), "{}", lead.event_id);
    assert_eq!(
        capture.captured_email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(capture.name.as_deref(), Some("Jane Prospect"));
    assert_eq!(capture.company.as_deref(), Some("Example Corp"));
    assert_eq!(
        capture.form_fields.get("company_size"),
        Some(&json!("11-50"))
    );
    assert_eq!(
        capture.form_fields.get("company-size"),
        Some(&json!("11-50"))
    );

    duplicate_of(
        &server,
        "calcom",
        &calcom_signed(SECRET, &body),
        &body,
        &lead.id,
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Every shipped preset's mapping, on arbitrary JSON: it never panics, and what it calls a lead
// has a way to reach the prospect.

/// The words a mapping looks for (keys, field values, event names), so that generated
/// payloads reach past the first step of its paths.
fn words(value: &toml::Value, into: &mut BTreeSet<String>) {
    fn add(text: &str, into: &mut BTreeSet<String>) {
        into.insert(text.to_owned());
        for word in text.split(['.', '[', ']', '=', '"']) {
            if !word.trim().is_empty() {
                into.insert(word.to_owned());
            }
        }
    }
    match value {
        toml::Value::String(text) => add(text, into),
        toml::Value::Array(items) => items.iter().for_each(|item| words(item, into)),
        toml::Value::Table(table) => {
            for (key, item) in table {
                add(key, into);
                words(item, into);
            }
        }
        _ => {}
    }
}

/// The `n`th node of `value` in pre-order (modulo their count) replaced by `with`.
fn replace_nth(value: &mut Value, n: usize, with: Value) {
    fn count(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(members) => members.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(value: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if *n == 0 {
            if let Some(with) = with.take() {
                *value = with;
            }
            return;
        }
        *n -= 1;
        let children: Vec<&mut Value> = match value {
            Value::Array(items) => items.iter_mut().collect(),
            Value::Object(members) => members.values_mut().collect(),
            _ => Vec::new(),
        };
        for child in children {
            if with.is_none() {
                return;
            }
            walk(child, n, with);
        }
    }
    let mut n = n % count(value);
    walk(value, &mut n, &mut Some(with));
}

fn arbitrary_json(words: Vec<String>) -> BoxedStrategy<Value> {
    let word = prop_oneof![3 => prop::sample::select(words), 1 => ".{0,10}"].boxed();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        word.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 128, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(word.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

#[test]
fn no_shipped_presets_mapping_panics_on_arbitrary_json() {
    let mut mappings = Vec::new();
    let mut vocabulary = BTreeSet::new();
    for name in leadrelay_shared::presets::names() {
        let config = parse_config(&config_with("preset", name, SECRET, ""));
        let mapping = config
            .source("preset")
            .and_then(|source| source.payload.clone())
            .unwrap_or_else(|| panic!("preset {name} has a mapping"));
        mappings.push((name, mapping));
        let text = leadrelay_shared::presets::find(name).expect("shipped");
        let preset: toml::Table = toml::from_str(text).expect("preset TOML");
        words(&preset["mapping"], &mut vocabulary);
    }
    assert!(mappings.len() >= 6, "{} presets", mappings.len());
    // Every platform's example payload, to mutate: most lead paths start from one of them.
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/it/fixtures/platforms")).expect("fixtures") {
        let path = entry.expect("entry").path();
        let text = std::fs::read(&path).expect("fixture");
        examples.push(serde_json::from_slice::<Value>(&text).expect("JSON fixture"));
    }
    let arbitrary = arbitrary_json(vocabulary.into_iter().collect());
    let mutated = (
        prop::sample::select(examples),
        prop::collection::vec((any::<usize>(), arbitrary.clone()), 1..4),
    )
        .prop_map(|(mut example, changes)| {
            for (n, with) in changes {
                replace_nth(&mut example, n, with);
            }
            example
        });
    let payloads = prop_oneof![arbitrary, mutated];

    let leads = std::cell::Cell::new(0usize);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&payloads, |payload| {
        let bytes = serde_json::to_vec(&payload).expect("serialise");
        for (name, mapping) in &mappings {
            let from_value = mapping.apply_value(&payload);
            let from_bytes = mapping.apply(&bytes);
            prop_assert_eq!(&from_value, &from_bytes, "{}", name);
            match from_value {
                Ok(Mapped::Lead { capture, .. }) => {
                    prop_assert!(
                        capture.captured_email.is_some() || capture.phone.is_some(),
                        "{name}: a lead without e-mail or phone"
                    );
                    leads.set(leads.get() + 1);
                }
                Ok(Mapped::Ignored { event }) => {
                    prop_assert!(!event.is_empty(), "{name}: an unnamed event")
                }
                Ok(Mapped::Activity {
                    activity,
                    also_lead,
                }) => {
                    prop_assert!(!activity.event.is_empty(), "{name}: an unnamed event");
                    for text in [&activity.by, &activity.detail].into_iter().flatten() {
                        prop_assert!(text.chars().count() <= MAX_ACTIVITY_TEXT, "{name}");
                    }
                    // A booking that finds no lead is read again as a lead only: never as
                    // activity a second time.
                    if also_lead {
                        prop_assert!(
                            !matches!(mapping.apply_lead(&bytes), Ok(Mapped::Activity { .. })),
                            "{name}"
                        );
                    }
                }
                Err(error) => prop_assert!(!error.message.is_empty(), "{name}"),
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The generator reaches past the event names: some payloads are leads.
    assert!(leads.get() > 0, "no generated payload was a lead");
}

//! For the platform preset tests: the platforms' example payloads, their HMACs computed here
//! (as each platform documents, independently of leadrelay's own signing code), and the
//! answers a webhook can get, each checked with what it must leave in the store.

use hmac::{Hmac, Mac};
use leadrelay_shared::model::Lead;
use leadrelay_shared::ports::LeadStore;
use serde_json::json;
use sha1::Sha1;
use sha2::Sha256;

use super::app::Answer;
use super::{root, Server};

/// A platform's example payload (`tests/it/fixtures/platforms/`), byte for byte.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/it/fixtures/platforms").join(name)).expect("platform fixture")
}

pub fn hmac_sha1(key: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha1>>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `parts` one after the other.
pub fn hmac_sha256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `answer` must be `202 accepted`; the lead it names, as stored.
pub async fn accepted_lead(server: &Server, answer: &Answer) -> Lead {
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "accepted", "{:?}", answer.body);
    let id = answer.body["lead_id"].as_str().expect("a lead id");
    server
        .db
        .get_lead(id)
        .await
        .expect("store readable")
        .expect("the accepted lead is stored")
}

/// Posts and expects `401 invalid signature`, with nothing stored.
pub async fn refused(
    server: &Server,
    source: &str,
    headers: &[(String, String)],
    body: &[u8],
    why: &str,
) {
    let before = server.counts().await.leads;
    let answer = server.post(source, headers, body).await;
    assert_eq!(answer.status, 401, "{source}, {why}: {:?}", answer.body);
    assert_eq!(answer.body, json!({"error": "invalid signature"}), "{why}");
    assert_eq!(
        server.counts().await.leads,
        before,
        "{source}, {why}: nothing stored"
    );
}

/// Posts and expects `200 ignored` naming `event`, with nothing stored.
pub async fn ignored(
    server: &Server,
    source: &str,
    headers: &[(String, String)],
    body: &[u8],
    event: &str,
) {
    let before = server.counts().await.leads;
    let answer = server.post(source, headers, body).await;
    assert_eq!(answer.status, 200, "{source}: {:?}", answer.body);
    assert_eq!(answer.body, json!({"status": "ignored", "event": event}));
    assert_eq!(
        server.counts().await.leads,
        before,
        "{source}, {event}: an ignored event stores nothing"
    );
}

/// Posts and expects `200 duplicate` of `lead_id`, with nothing more stored.
pub async fn duplicate_of(
    server: &Server,
    source: &str,
    headers: &[(String, String)],
    body: &[u8],
    lead_id: &str,
) {
    let before = server.counts().await.leads;
    let answer = server.post(source, headers, body).await;
    assert_eq!(answer.status, 200, "{source}: {:?}", answer.body);
    assert_eq!(
        answer.body,
        json!({"lead_id": lead_id, "status": "duplicate"})
    );
    assert_eq!(
        server.counts().await.leads,
        before,
        "{source}: a duplicate adds no lead"
    );
}

/// Posts and expects `202 accepted`; the lead as stored.
pub async fn post_accepted(
    server: &Server,
    source: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Lead {
    accepted_lead(server, &server.post(source, headers, body).await).await
}

//! Slack interactivity: the request-signature check and the `payload=` form body parser that
//! `POST /slack/interactivity` runs before anything is claimed.
//!
//! The input is the raw form body. Properties checked:
//! - a body signed as Slack signs it verifies, and only within Slack's five minutes;
//! - headers taken from the input itself (its first two lines) never verify, and never panic;
//! - the parser never panics, and a claim it reads names a non-empty lead id and user taken
//!   from a `block_actions` payload.
#![no_main]

use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use leadrelay_shared::signature::{self, SigningKey, SLACK_SIGNATURE, SLACK_TIMESTAMP};
use leadrelay_web::claim_http::parse_slack_claim;
use libfuzzer_sys::fuzz_target;

const NOW_SECS: i64 = 1_800_000_000;

fuzz_target!(|body: &[u8]| {
    let key = SigningKey::plain("8f742231b10e8888abcd99yyyzzz85a5").expect("non-empty");
    let keys = std::slice::from_ref(&key);
    let now = Timestamp::from_second(NOW_SECS).expect("in range");
    let skew = body
        .get(..2)
        .map_or(0, |b| i64::from(i16::from_le_bytes([b[0], b[1]])));

    let sent_at = NOW_SECS + skew;
    let mut headers = HeaderMap::new();
    headers.insert(SLACK_TIMESTAMP, HeaderValue::from(sent_at));
    headers.insert(
        SLACK_SIGNATURE,
        HeaderValue::from_str(&signature::sign_slack(&key, sent_at, body)).expect("hex"),
    );
    let verified = signature::verify_slack(keys, &headers, body, now);
    if skew.unsigned_abs() <= signature::SLACK_TOLERANCE_SECS {
        assert_eq!(verified, Ok(()), "a body signed as Slack signs was refused");
    } else {
        assert!(
            matches!(verified, Err(signature::SignatureError::Stale { .. })),
            "a signature {skew}s off was not refused as stale: {verified:?}"
        );
    }

    let mut lines = body.split(|b| *b == b'\n');
    let mut next = || lines.next().and_then(|l| HeaderValue::from_bytes(l).ok());
    if let (Some(timestamp), Some(signature)) = (next(), next()) {
        let mut forged = HeaderMap::new();
        forged.insert(SLACK_TIMESTAMP, timestamp);
        forged.insert(SLACK_SIGNATURE, signature);
        assert!(
            signature::verify_slack(keys, &forged, body, now).is_err(),
            "headers made from the body verified"
        );
    }

    if let Some(claim) = parse_slack_claim(body) {
        let payload = url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| value.into_owned())
            .expect("a claim comes from a payload field");
        let payload: serde_json::Value =
            serde_json::from_str(&payload).expect("a claim comes from JSON");
        assert_eq!(payload["type"], "block_actions");
        assert_eq!(payload["user"]["id"], claim.user.as_str());
        assert!(payload["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["action_id"] == "claim" && a["value"] == claim.lead_id.as_str()));
    }
});

//! The webhook path up to the store, as `Pipeline::ingest` runs it: signature verification,
//! parsing and the validation gates, over the example configuration's sources.
//!
//! The input is the raw request body. Properties checked:
//! - a body signed as each source's sender signs it verifies (whatever the bytes), and only
//!   while the signed timestamp is within the source's tolerance;
//! - headers taken from the input itself (its first lines) never verify, and never panic;
//! - a capture that passes parsing and the gates becomes a `Lead` whose stored JSON decodes
//!   back to the same lead and re-encodes to the same text (invariant 7: nothing is answered
//!   202 that the store cannot read back).
#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::Lead;
use leadrelay_shared::signature::{self, Scheme, SigningKey};
use leadrelay_shared::validate;
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::parse(
        include_str!("../../config/leadrelay.toml"),
        "config/leadrelay.toml",
        &|_| None,
    )
    .expect("the example configuration is valid")
});

/// A fixed "now": the run must not depend on the wall clock.
const NOW_SECS: i64 = 1_800_000_000;

fuzz_target!(|body: &[u8]| {
    let config = &*CONFIG;
    let now = Timestamp::from_second(NOW_SECS).expect("in range");
    // The signed timestamp's skew comes from the input, so both sides of the tolerance are hit.
    let skew = body
        .get(..2)
        .map_or(0, |b| i64::from(i16::from_le_bytes([b[0], b[1]])));

    let mut event_id = None;
    for source in &config.sources {
        let source = source.get_ref();
        let scheme = source.signature_scheme();
        let key = source.keys.first().expect("every source has a key");
        let (headers, in_tolerance) = signed(&scheme, key, body, NOW_SECS + skew);
        let verified = signature::verify(&scheme, &source.keys, &headers, body, now);
        if in_tolerance {
            let verified = verified
                .unwrap_or_else(|e| panic!("a body signed for {} was refused: {e}", source.id));
            assert!(!verified.event_id.is_empty());
            event_id.get_or_insert(verified.event_id);
        } else {
            assert!(
                matches!(verified, Err(signature::SignatureError::Stale { .. })),
                "a signature {skew}s off was not refused as stale: {verified:?}"
            );
        }
        if let Some(forged) = forged(&scheme, body) {
            let result = signature::verify(&scheme, &source.keys, &forged, body, now);
            assert!(result.is_err(), "headers made from the body verified");
        }
    }

    let Ok(capture) = validate::parse_capture(body) else {
        return;
    };
    let Ok(flags) = validate::check(&capture, &config.validation) else {
        return;
    };
    let lead = Lead::captured(
        "0190a5b2-0000-7000-8000-000000000000".into(),
        "0190a5b200007000800000000000000a".into(),
        "website".into(),
        event_id.unwrap_or_else(|| "msg_fuzz".into()),
        capture,
        flags,
        now,
    );
    // As both stores write it (leads.body, the DynamoDB item's body attribute).
    let stored = serde_json::to_string(&lead).expect("a validated lead serialises");
    let decoded: Lead = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("a stored lead does not decode: {e}\n{stored}"));
    let again = serde_json::to_string(&decoded).expect("a decoded lead serialises");
    assert_eq!(
        stored, again,
        "the stored lead changed on a read-write round trip"
    );
});

/// Headers as the source's sender would send them, and whether `sent_at` is within tolerance.
fn signed(scheme: &Scheme, key: &SigningKey, body: &[u8], sent_at: i64) -> (HeaderMap, bool) {
    let mut headers = HeaderMap::new();
    match scheme {
        Scheme::StandardWebhooks { tolerance_secs } => {
            let id = "msg_2q8fHcVYfx9yJSmGkzA1";
            let signature = signature::sign_standard(key, id, sent_at, body);
            headers.insert(signature::HEADER_ID, HeaderValue::from_static(id));
            headers.insert(signature::HEADER_TIMESTAMP, HeaderValue::from(sent_at));
            headers.insert(
                signature::HEADER_SIGNATURE,
                HeaderValue::from_str(&signature).expect("base64 is a header value"),
            );
            let in_tolerance = (sent_at - NOW_SECS).unsigned_abs() <= *tolerance_secs;
            (headers, in_tolerance)
        }
        Scheme::BodyHmac { header, prefix, .. } => {
            let value = signature::sign_body_hmac(key, prefix, body);
            headers.insert(
                HeaderName::from_bytes(header.as_bytes()).expect("a configured header name"),
                HeaderValue::from_str(&value).expect("hex is a header value"),
            );
            // Body HMACs sign no timestamp.
            (headers, true)
        }
    }
}

/// The input's first lines as the signature headers, when they are valid header values.
fn forged(scheme: &Scheme, body: &[u8]) -> Option<HeaderMap> {
    let mut lines = body.split(|b| *b == b'\n');
    let mut next = || lines.next().and_then(|l| HeaderValue::from_bytes(l).ok());
    let mut headers = HeaderMap::new();
    match scheme {
        Scheme::StandardWebhooks { .. } => {
            headers.insert(signature::HEADER_ID, next()?);
            headers.insert(signature::HEADER_TIMESTAMP, next()?);
            headers.insert(signature::HEADER_SIGNATURE, next()?);
        }
        Scheme::BodyHmac {
            header, id_header, ..
        } => {
            headers.insert(HeaderName::from_bytes(header.as_bytes()).ok()?, next()?);
            if let Some(id_header) = id_header {
                headers.insert(HeaderName::from_bytes(id_header.as_bytes()).ok()?, next()?);
            }
        }
    }
    Some(headers)
}

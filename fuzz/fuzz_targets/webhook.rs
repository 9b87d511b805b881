//! The webhook path up to the store, as `Pipeline::ingest` runs it: signature verification,
//! parsing and the validation gates, over the example configuration's sources.
//!
//! The input is the raw request body. Properties checked:
//! - a body signed as each source's sender signs it verifies (whatever the bytes), and only
//!   while the signed timestamp is within the source's tolerance;
//! - headers taken from the input itself (its first lines) never verify, and never panic;
//! - a capture that passes parsing (leadrelay's capture event, or a platform's payload through
//!   a shipped preset's mapping) and the gates becomes a `Lead` whose stored JSON decodes back
//!   to the same lead and re-encodes to the same text (invariant 7: nothing is answered 202
//!   that the store cannot read back).
#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use leadrelay_shared::config::Config;
use leadrelay_shared::mapping::Mapped;
use leadrelay_shared::model::Lead;
use leadrelay_shared::signature::{self, Delivery, Scheme, SigningKey};
use leadrelay_shared::{presets, validate};
use libfuzzer_sys::fuzz_target;

/// The example configuration with a source for every shipped platform preset, so each
/// preset's signature scheme and payload mapping are fuzzed too.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let mut text = include_str!("../../config/leadrelay.toml").to_owned();
    for preset in presets::names() {
        text.push_str(&format!(
            "\n[[sources]]\nid = \"{preset}\"\npreset = \"{preset}\"\n\
             secrets = [\"fuzz-platform-secret-0123456789\"]\n"
        ));
    }
    Config::parse(&text, "config/leadrelay.toml", &|_| None)
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
        let (headers, url, in_tolerance) = signed(&scheme, key, body, NOW_SECS + skew);
        let delivery = Delivery::post(&url, &headers, body);
        let verified = signature::verify(&scheme, &source.keys, &delivery, now);
        if in_tolerance {
            let verified = verified
                .unwrap_or_else(|e| panic!("a body signed for {} was refused: {e}", source.id));
            let id = verified
                .event_id
                .unwrap_or_else(|| signature::body_event_id(body));
            assert!(!id.is_empty());
            event_id.get_or_insert(id);
        } else {
            assert!(
                matches!(verified, Err(signature::SignatureError::Stale { .. })),
                "a signature {skew}s off was not refused as stale: {verified:?}"
            );
        }
        if let Some(forged) = forged(&scheme, body) {
            let delivery = Delivery::post(URL, &forged, body);
            let result = signature::verify(&scheme, &source.keys, &delivery, now);
            assert!(result.is_err(), "headers made from the body verified");
        }
    }

    // Every source reads the body its own way (leadrelay's capture event, or a platform's
    // payload through its preset's mapping); whatever it accepts must survive the store.
    for source in config.sources.iter().map(|s| s.get_ref()) {
        let Ok(Mapped::Lead { capture, .. }) =
            validate::read_payload(source.payload.as_ref(), body, now)
        else {
            continue;
        };
        let Ok(flags) = validate::check(&capture, &config.validation) else {
            continue;
        };
        let lead = Lead::captured(
            "0190a5b2-0000-7000-8000-000000000000".into(),
            "0190a5b200007000800000000000000a".into(),
            source.id.clone(),
            event_id.clone().unwrap_or_else(|| "msg_fuzz".into()),
            *capture,
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
    }
});

const URL: &str = "https://leads.example.com/webhooks/fuzz";

/// Headers and URL as the source's sender would send them, and whether `sent_at` is within
/// tolerance.
fn signed(
    scheme: &Scheme,
    key: &SigningKey,
    body: &[u8],
    sent_at: i64,
) -> (HeaderMap, String, bool) {
    let at = Timestamp::from_second(sent_at).expect("in range");
    let request = signature::sign_request(scheme, key, URL, body, "msg_2q8fHcVYfx9yJSmGkzA1", at)
        .expect("the example sources sign in headers");
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("a configured header name"),
            HeaderValue::from_str(&value).expect("signatures are header values"),
        );
    }
    let tolerance = match scheme {
        Scheme::StandardWebhooks { tolerance_secs } => Some(*tolerance_secs),
        Scheme::Hmac(hmac) if hmac.signed.signs_timestamp() => Some(hmac.tolerance_secs),
        Scheme::Hmac(_) | Scheme::Token(_) => None,
    };
    let in_tolerance = tolerance.is_none_or(|t| (sent_at - NOW_SECS).unsigned_abs() <= t);
    (headers, request.url, in_tolerance)
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
        Scheme::Hmac(hmac) => {
            headers.insert(
                HeaderName::from_bytes(hmac.header.as_bytes()).ok()?,
                next()?,
            );
            for extra in [&hmac.timestamp_header, &hmac.id_header]
                .into_iter()
                .flatten()
            {
                headers.insert(HeaderName::from_bytes(extra.as_bytes()).ok()?, next()?);
            }
        }
        Scheme::Token(_) => return None,
    }
    Some(headers)
}

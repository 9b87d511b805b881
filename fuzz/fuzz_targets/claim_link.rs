//! The claim-link verifier (`GET`/`POST /claim/{lead}?rep=..&expires=..&sig=..`).
//!
//! The input is `<lead id>\n<query string>` (no newline: the whole input is the query).
//! Properties checked:
//! - verifying any query never panics, and what it accepts names a non-empty rep;
//! - a link signed for the input's lead and rep (the query's `rep`, with an expiry taken from
//!   the input) verifies to that rep until it expires, and never for another lead.
#![no_main]

use jiff::Timestamp;
use leadrelay_shared::claim_link::{self, ClaimLinkError};
use leadrelay_shared::signature::SigningKey;
use libfuzzer_sys::fuzz_target;

const NOW_SECS: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (lead_id, query) = text.split_once('\n').unwrap_or(("lead-1", &text));
    let key = SigningKey::plain("claim-links-demo-secret-change-me").expect("non-empty");
    let keys = std::slice::from_ref(&key);
    let now = Timestamp::from_second(NOW_SECS).expect("in range");

    if let Ok(rep) = claim_link::verify(keys, lead_id, query, now) {
        assert!(!rep.is_empty(), "a link was accepted for an empty rep");
    }

    // A genuine link for this lead and the query's rep, expiring up to ~9 hours either side.
    let rep = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "rep")
        .map(|(_, value)| value.into_owned())
        .filter(|rep| !rep.is_empty())
        .unwrap_or_else(|| "alice".into());
    let offset = data
        .get(..2)
        .map_or(0, |b| i64::from(i16::from_le_bytes([b[0], b[1]])));
    let expires = Timestamp::from_second(NOW_SECS + offset).expect("in range");
    let link = claim_link::sign(&key, lead_id, &rep, expires);
    let verified = claim_link::verify(keys, lead_id, &link, now);
    if now > expires {
        assert_eq!(verified, Err(ClaimLinkError::Expired(expires)));
    } else {
        assert_eq!(verified.as_deref(), Ok(rep.as_str()));
    }
    let other = format!("{lead_id}x");
    assert_eq!(
        claim_link::verify(keys, &other, &link, now),
        Err(ClaimLinkError::BadSignature),
        "a link verified for another lead"
    );
});

//! Signed claim links: a URL in an e-mail or SMS alert that lets one rep claim one lead without
//! logging in. The signature binds the lead, the rep and the expiry, so a link cannot be
//! reused for another lead, handed to another rep, or used after it expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use jiff::{SignedDuration, Timestamp};

use crate::config::Config;

use crate::signature::SigningKey;

/// Why a claim link was refused. Logged; the caller only learns that the link is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimLinkError {
    #[error("the link has no {0}")]
    Missing(&'static str),
    #[error("the link's {0} is not valid")]
    Malformed(&'static str),
    #[error("the link expired at {0}")]
    Expired(Timestamp),
    #[error("the link's signature does not match")]
    BadSignature,
}

/// Bytes of the HMAC-SHA256 tag a link carries: 128 bits (RFC 2104 allows truncating to at
/// least half the hash), written as 22 base64url characters, so that an SMS with its link fits
/// one 160-character segment more often.
const TAG_BYTES: usize = 16;

/// The query parameters of a claim link for `lead_id`, as `rep=..&expires=..&sig=..`.
pub fn sign(key: &SigningKey, lead_id: &str, rep: &str, expires: Timestamp) -> String {
    let expires = expires.as_second();
    let full = tag(key, lead_id, rep, expires).finalize().into_bytes();
    let tag = URL_SAFE_NO_PAD.encode(&full[..TAG_BYTES]);
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rep", rep)
        .append_pair("expires", &expires.to_string())
        .append_pair("sig", &tag)
        .finish()
}

/// The claim link one rep gets for one lead, valid for `[claim] link_ttl_hours` from `now`;
/// `None` when `[claim] public_url` is not set (alerts then carry no link).
pub fn url_for(config: &Config, lead_id: &str, rep: &str, now: Timestamp) -> Option<String> {
    let base = config.claim.public_url.as_deref()?;
    let key = config.claim.link_keys.first()?;
    let expires = now
        .checked_add(SignedDuration::from_hours(i64::from(
            config.claim.link_ttl_hours,
        )))
        .unwrap_or(Timestamp::MAX);
    let lead: String = url::form_urlencoded::byte_serialize(lead_id.as_bytes()).collect();
    Some(format!(
        "{}/claim/{lead}?{}",
        base.trim_end_matches('/'),
        sign(key, lead_id, rep, expires)
    ))
}

/// Checks a claim link's query string for `lead_id` (taken from the path); returns the rep it
/// was issued to.
pub fn verify(
    keys: &[SigningKey],
    lead_id: &str,
    query: &str,
    now: Timestamp,
) -> Result<String, ClaimLinkError> {
    let mut rep = None;
    let mut expires = None;
    let mut sig = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "rep" => rep = Some(value.into_owned()),
            "expires" => expires = Some(value.into_owned()),
            "sig" => sig = Some(value.into_owned()),
            _ => {}
        }
    }
    let rep = rep
        .filter(|r| !r.is_empty())
        .ok_or(ClaimLinkError::Missing("rep"))?;
    let expires: i64 = expires
        .ok_or(ClaimLinkError::Missing("expires"))?
        .parse()
        .map_err(|_| ClaimLinkError::Malformed("expires"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig.ok_or(ClaimLinkError::Missing("sig"))?)
        .ok()
        .filter(|sig| sig.len() == TAG_BYTES)
        .ok_or(ClaimLinkError::Malformed("sig"))?;
    // The signature first, so an attacker learns nothing from which check failed.
    let matched = keys.iter().any(|key| {
        tag(key, lead_id, &rep, expires)
            .verify_truncated_left(&sig)
            .is_ok()
    });
    if !matched {
        return Err(ClaimLinkError::BadSignature);
    }
    let expiry =
        Timestamp::from_second(expires).map_err(|_| ClaimLinkError::Malformed("expires"))?;
    if now > expiry {
        return Err(ClaimLinkError::Expired(expiry));
    }
    Ok(rep)
}

/// The MAC over a versioned, unambiguous string: lead ids and rep ids never hold a newline.
fn tag(key: &SigningKey, lead_id: &str, rep: &str, expires: i64) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = key.mac();
    mac.update(format!("leadrelay-claim-v1\n{lead_id}\n{rep}\n{expires}").as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> SigningKey {
        SigningKey::plain(secret).expect("key")
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    #[test]
    fn a_link_claims_its_lead_for_its_rep_until_it_expires() {
        let keys = [key("claim-secret-0123456789")];
        let query = sign(&keys[0], "lead-1", "alice", at(2_000));
        assert!(query.starts_with("rep=alice&expires=2000&sig="), "{query}");
        assert_eq!(
            verify(&keys, "lead-1", &query, at(1_000)),
            Ok("alice".to_owned())
        );
        assert_eq!(
            verify(&keys, "lead-1", &query, at(2_000)),
            Ok("alice".to_owned())
        );
        assert_eq!(
            verify(&keys, "lead-1", &query, at(2_001)),
            Err(ClaimLinkError::Expired(at(2_000)))
        );
    }

    #[test]
    fn a_link_is_useless_for_another_lead_rep_expiry_or_key() {
        let keys = [key("claim-secret-0123456789")];
        let query = sign(&keys[0], "lead-1", "alice", at(2_000));
        assert_eq!(
            verify(&keys, "lead-2", &query, at(1_000)),
            Err(ClaimLinkError::BadSignature)
        );
        let other_rep = query.replace("rep=alice", "rep=bob");
        assert_eq!(
            verify(&keys, "lead-1", &other_rep, at(1_000)),
            Err(ClaimLinkError::BadSignature)
        );
        let later = query.replace("expires=2000", "expires=9000");
        assert_eq!(
            verify(&keys, "lead-1", &later, at(1_000)),
            Err(ClaimLinkError::BadSignature)
        );
        assert_eq!(
            verify(
                &[key("rotated-away-0123456789")],
                "lead-1",
                &query,
                at(1_000)
            ),
            Err(ClaimLinkError::BadSignature)
        );
        // During a rotation the old key still verifies.
        let rotating = [key("new-secret-0123456789"), key("claim-secret-0123456789")];
        assert_eq!(
            verify(&rotating, "lead-1", &query, at(1_000)),
            Ok("alice".to_owned())
        );
    }

    #[test]
    fn malformed_links_are_refused_by_name() {
        let keys = [key("claim-secret-0123456789")];
        assert_eq!(
            verify(&keys, "lead-1", "expires=1&sig=00", at(0)),
            Err(ClaimLinkError::Missing("rep"))
        );
        assert_eq!(
            verify(&keys, "lead-1", "rep=a&expires=soon&sig=00", at(0)),
            Err(ClaimLinkError::Malformed("expires"))
        );
        assert_eq!(
            verify(&keys, "lead-1", "rep=a&expires=1&sig=xyz", at(0)),
            Err(ClaimLinkError::Malformed("sig"))
        );
        assert_eq!(
            verify(&keys, "lead-1", "rep=a&expires=1", at(0)),
            Err(ClaimLinkError::Missing("sig"))
        );
    }

    #[test]
    fn rep_ids_with_reserved_characters_round_trip() {
        let keys = [key("claim-secret-0123456789")];
        let query = sign(&keys[0], "lead-1", "anne marie&co", at(2_000));
        assert_eq!(
            verify(&keys, "lead-1", &query, at(1_000)),
            Ok("anne marie&co".to_owned())
        );
    }

    #[test]
    fn the_shipped_config_makes_links_that_verify_for_their_lead_and_rep() {
        let config = Config::parse(
            include_str!("../../config/leadrelay.toml"),
            "leadrelay.toml",
            &|_| None,
        )
        .expect("config");
        let now = at(1_800_000_000);
        let url = url_for(&config, "lead 1/x", "bruno", now).expect("a link");
        let (path, query) = url.split_once('?').expect("query");
        assert_eq!(path, "http://127.0.0.1:8080/claim/lead+1%2Fx");
        // A 128-bit tag in base64url: short enough for an SMS.
        let sig = query.rsplit_once("sig=").expect("sig").1;
        assert_eq!(sig.len(), 22, "{sig}");
        let keys = &config.claim.link_keys;
        assert_eq!(verify(keys, "lead 1/x", query, now), Ok("bruno".to_owned()));
        let after_ttl = at(1_800_000_000 + 72 * 3600 + 1);
        assert!(matches!(
            verify(keys, "lead 1/x", query, after_ttl),
            Err(ClaimLinkError::Expired(_))
        ));
    }

    #[test]
    fn no_public_url_no_link_and_a_url_without_a_secret_is_refused() {
        let base = "[[sources]]\nid = \"w\"\nscheme = \"body_hmac\"\nsecrets = [\"forms-secret-0123456789\"]\n[[queues]]\nid = \"q\"\nname = \"Q\"\n[routing]\nfallback_queue = \"q\"\n";
        let config = Config::parse(base, "t.toml", &|_| None).expect("config");
        assert_eq!(url_for(&config, "lead-1", "alice", at(0)), None);
        let error = Config::parse(
            &format!("{base}[claim]\npublic_url = \"https://leads.example\"\n"),
            "t.toml",
            &|_| None,
        )
        .expect_err("no secret");
        let text = error.to_string();
        assert!(text.contains("claim.link_secrets"), "{text}");
        assert!(text.starts_with("t.toml:10:"), "{text}");
    }
}

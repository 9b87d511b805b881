//! Replies that follow the lead's owner: the acknowledgement's Reply-To is an address leadrelay
//! issued for the lead (`replies+<token>@in.example.com`), the team's inbound-mail provider
//! (Mailgun) posts the prospect's reply to `POST /inbound/email`, and the notify stage forwards
//! it to whoever owns the lead by then.
//!
//! The token carries the lead id and a truncated HMAC-SHA256 of it under the claim-link key,
//! lowercase only (mail systems may lowercase local parts), so only addresses leadrelay issued
//! are taken. The provider's own signature (Mailgun: hex HMAC-SHA256 of `timestamp + token`
//! under its webhook signing key) is checked here too, in constant time. A leaf module: it
//! imports [`crate::signature`] only.

use data_encoding::BASE32_DNSSEC;
use hmac::Mac;
use jiff::Timestamp;

use crate::signature::{SignatureError, SigningKey};

/// Bytes of the HMAC-SHA256 tag in a relay address: 80 bits, 16 base32 characters. Each guess
/// costs an attacker an e-mail through the provider, so this is far beyond reach online.
const TAG_BYTES: usize = 10;
/// Base32 characters of the tag.
const TAG_CHARS: usize = 16;
/// Marks a lead id that is not a UUID, spelled out as base32 of its bytes. Outside the base32
/// alphabet (`0-9a-v`), so it never starts an encoded UUID.
const TEXT_ID: char = 'x';

/// How far a provider's signed timestamp may be from now, as for the webhook sources.
pub const TOLERANCE_SECS: u64 = 300;

/// The configured inbound address, split: replies come to `<local>+<token>@<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddress {
    local: String,
    domain: String,
}

/// Why a configured relay address is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayAddressError {
    #[error("must be an address such as \"replies@in.example.com\"")]
    NotAnAddress,
    #[error("the part before @ must be letters, digits, '.', '_' or '-' (no '+': leadrelay adds +<token>)")]
    BadLocalPart,
}

/// Why an inbound recipient is not an address leadrelay issued. Logged only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no recipient is a reply address of this relay")]
    NotOurs,
    #[error("the reply address's token is malformed")]
    Malformed,
    #[error("the reply address's tag does not match")]
    BadTag,
}

impl RelayAddress {
    /// Parses `replies@in.example.com`; both parts are kept lowercase.
    pub fn parse(address: &str) -> Result<Self, RelayAddressError> {
        let (local, domain) = address
            .trim()
            .rsplit_once('@')
            .ok_or(RelayAddressError::NotAnAddress)?;
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local.is_empty() || !domain_ok {
            return Err(RelayAddressError::NotAnAddress);
        }
        let local_ok = !local.is_empty()
            && local.len() <= 24
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !local.starts_with('.')
            && !local.ends_with('.');
        if !local_ok {
            return Err(RelayAddressError::BadLocalPart);
        }
        Ok(RelayAddress {
            local: local.to_ascii_lowercase(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The address as configured (`replies@in.example.com`), for a provider's route filter.
    pub fn base(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The reply address of one lead: `replies+<token>@in.example.com`.
    pub fn for_lead(&self, key: &SigningKey, lead_id: &str) -> String {
        format!("{}+{}@{}", self.local, token(key, lead_id), self.domain)
    }

    /// The lead a recipient list (Mailgun's `recipient`: one address, or several separated by
    /// commas) names through an address this relay issued, checked against every key (the
    /// first signs; all verify, for rotation).
    pub fn lead_of(&self, keys: &[SigningKey], recipients: &str) -> Result<String, TokenError> {
        let mut found = Err(TokenError::NotOurs);
        for recipient in recipients.split(',') {
            let recipient = recipient
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase();
            let Some((local, domain)) = recipient.rsplit_once('@') else {
                continue;
            };
            let Some(token) = local
                .strip_prefix(self.local.as_str())
                .and_then(|rest| rest.strip_prefix('+'))
            else {
                continue;
            };
            if domain != self.domain {
                continue;
            }
            found = verify_token(keys, token);
            if found.is_ok() {
                break;
            }
        }
        found
    }
}

/// `<lead id>-<tag>`: the lead id as base32 of a UUID's 16 bytes (26 characters), or `x` and
/// base32 of any other id's bytes; the tag is base32 of the truncated HMAC.
pub fn token(key: &SigningKey, lead_id: &str) -> String {
    let id = match uuid::Uuid::try_parse(lead_id) {
        // Only the canonical spelling round-trips to the same lead id.
        Ok(uuid) if uuid.hyphenated().to_string() == lead_id => {
            BASE32_DNSSEC.encode(uuid.as_bytes())
        }
        _ => format!("{TEXT_ID}{}", BASE32_DNSSEC.encode(lead_id.as_bytes())),
    };
    let full = tag(key, lead_id).finalize().into_bytes();
    format!("{id}-{}", BASE32_DNSSEC.encode(&full[..TAG_BYTES]))
}

/// The lead id a token names, if its tag verifies under one of `keys` (in constant time).
pub fn verify_token(keys: &[SigningKey], token: &str) -> Result<String, TokenError> {
    let (id, tag_text) = token.rsplit_once('-').ok_or(TokenError::Malformed)?;
    if tag_text.len() != TAG_CHARS {
        return Err(TokenError::Malformed);
    }
    let given = BASE32_DNSSEC
        .decode(tag_text.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    let lead_id = match id.strip_prefix(TEXT_ID) {
        Some(text) => {
            let bytes = BASE32_DNSSEC
                .decode(text.as_bytes())
                .map_err(|_| TokenError::Malformed)?;
            String::from_utf8(bytes).map_err(|_| TokenError::Malformed)?
        }
        None => {
            let bytes = BASE32_DNSSEC
                .decode(id.as_bytes())
                .map_err(|_| TokenError::Malformed)?;
            uuid::Uuid::from_slice(&bytes)
                .map_err(|_| TokenError::Malformed)?
                .hyphenated()
                .to_string()
        }
    };
    if lead_id.is_empty() {
        return Err(TokenError::Malformed);
    }
    let matched = keys
        .iter()
        .any(|key| tag(key, &lead_id).verify_truncated_left(&given).is_ok());
    if matched {
        Ok(lead_id)
    } else {
        Err(TokenError::BadTag)
    }
}

/// The MAC over a versioned string, apart from the claim links' (`leadrelay-claim-v1`), so a
/// tag of one can never stand for the other.
fn tag(key: &SigningKey, lead_id: &str) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = key.mac();
    mac.update(format!("leadrelay-reply-v1\n{lead_id}").as_bytes());
    mac
}

/// What a provider signed about one inbound post: Mailgun's `timestamp`, `token` and
/// `signature` fields.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSignature<'a> {
    pub timestamp: &'a str,
    pub token: &'a str,
    pub signature: &'a str,
}

/// Checks Mailgun's signature (hex HMAC-SHA256 of `timestamp` followed by `token`, under the
/// webhook signing key) against every key, in constant time, then the timestamp against
/// [`TOLERANCE_SECS`]. The signature first, so a forger learns nothing from which check failed.
pub fn verify_mailgun(
    keys: &[SigningKey],
    signed: &ProviderSignature<'_>,
    now: Timestamp,
) -> Result<(), SignatureError> {
    if signed.token.is_empty() {
        return Err(SignatureError::MissingHeader("token"));
    }
    let given = hex::decode(signed.signature.trim())
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::MalformedHeader("signature"))?;
    let matched = keys.iter().any(|key| {
        let mut mac = key.mac();
        mac.update(signed.timestamp.as_bytes());
        mac.update(signed.token.as_bytes());
        // verify_slice compares in constant time and refuses a tag of the wrong length.
        mac.verify_slice(&given).is_ok()
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    let sent_at: i64 = signed
        .timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedHeader("timestamp"))?;
    let skew_secs = now.as_second().saturating_sub(sent_at);
    if skew_secs.unsigned_abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale {
            skew_secs,
            tolerance_secs: TOLERANCE_SECS,
        });
    }
    Ok(())
}

pub use crate::model::ForwardedReply;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> SigningKey {
        SigningKey::plain(secret).expect("key")
    }

    const LEAD: &str = "01936f4e-8a2b-7c3d-9e4f-0123456789ab";

    fn relay() -> RelayAddress {
        RelayAddress::parse("Replies@In.Example.com").expect("address")
    }

    #[test]
    fn a_uuid_lead_gets_a_short_lowercase_address_that_names_it() {
        let k = key("claim-link-secret-0123456789");
        let address = relay().for_lead(&k, LEAD);
        let (local, domain) = address.split_once('@').expect("@");
        assert_eq!(domain, "in.example.com");
        assert!(local.starts_with("replies+"), "{address}");
        // RFC 5321 local parts stop at 64 characters.
        assert!(local.len() <= 64, "{} characters: {address}", local.len());
        assert_eq!(address, address.to_ascii_lowercase());
        assert_eq!(relay().lead_of(&[k], &address), Ok(LEAD.to_owned()));
    }

    #[test]
    fn any_lead_id_round_trips_and_upper_case_is_the_same_address() {
        let k = key("claim-link-secret-0123456789");
        for id in [
            "lead-1",
            "Lead_With.Case",
            LEAD,
            "01936F4E-8A2B-7C3D-9E4F-0123456789AB",
        ] {
            let address = relay().for_lead(&k, id);
            assert_eq!(
                relay().lead_of(std::slice::from_ref(&k), &address),
                Ok(id.to_owned())
            );
            // A mail system that upper-cases (or a prospect who retypes it) changes nothing.
            assert_eq!(
                relay().lead_of(std::slice::from_ref(&k), &address.to_ascii_uppercase()),
                Ok(id.to_owned())
            );
        }
    }

    #[test]
    fn only_addresses_this_relay_issued_are_taken() {
        let k = key("claim-link-secret-0123456789");
        let keys = std::slice::from_ref(&k);
        let address = relay().for_lead(&k, LEAD);
        let token = address
            .strip_prefix("replies+")
            .and_then(|t| t.strip_suffix("@in.example.com"))
            .expect("token");
        // Another lead's id with this lead's tag.
        let other = relay().for_lead(&k, "01936f4e-8a2b-7c3d-9e4f-0123456789ac");
        let other_id = other.split('-').next().expect("id part");
        let (_, tag) = token.rsplit_once('-').expect("tag");
        let swapped = format!("{other_id}-{tag}@in.example.com");
        assert_eq!(relay().lead_of(keys, &swapped), Err(TokenError::BadTag));
        // One character of the tag changed.
        let mut flipped = token.to_owned();
        let last = flipped.pop().expect("char");
        flipped.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(
            relay().lead_of(keys, &format!("replies+{flipped}@in.example.com")),
            Err(TokenError::BadTag)
        );
        // Signed with another key (a claim-link key of another deployment).
        let stranger = relay().for_lead(&key("another-deployments-secret"), LEAD);
        assert_eq!(relay().lead_of(keys, &stranger), Err(TokenError::BadTag));
        // Our token at another domain or mailbox, or no token at all.
        for wrong in [
            format!("replies+{token}@evil.example"),
            format!("sales+{token}@in.example.com"),
            "replies@in.example.com".to_owned(),
        ] {
            assert_eq!(
                relay().lead_of(keys, &wrong),
                Err(TokenError::NotOurs),
                "{wrong}"
            );
        }
        for malformed in [
            "replies+@in.example.com",
            "replies+abc@in.example.com",
            "replies+zz-zz@in.example.com",
        ] {
            assert_eq!(
                relay().lead_of(keys, malformed),
                Err(TokenError::Malformed),
                "{malformed}"
            );
        }
        // Several recipients: the one that is ours counts.
        assert_eq!(
            relay().lead_of(keys, &format!("sales@in.example.com, <{address}>")),
            Ok(LEAD.to_owned())
        );
    }

    #[test]
    fn a_rotated_key_still_opens_addresses_the_old_one_issued() {
        let old = key("old-claim-link-secret-0123");
        let new = key("new-claim-link-secret-4567");
        let issued = relay().for_lead(&old, LEAD);
        assert_eq!(relay().lead_of(&[new, old], &issued), Ok(LEAD.to_owned()));
    }

    #[test]
    fn a_relay_address_is_checked() {
        assert_eq!(relay().base(), "replies@in.example.com");
        for bad in [
            "replies",
            "replies@",
            "@in.example.com",
            "replies@localhost",
        ] {
            assert_eq!(
                RelayAddress::parse(bad),
                Err(RelayAddressError::NotAnAddress),
                "{bad}"
            );
        }
        for bad in [
            "re plies@in.example.com",
            "replies+x@in.example.com",
            ".r@in.example.com",
        ] {
            assert_eq!(
                RelayAddress::parse(bad),
                Err(RelayAddressError::BadLocalPart),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_reply_travels_in_a_versioned_notify_envelope() {
        use crate::model::{Envelope, EnvelopeError, Stage};
        let reply = ForwardedReply {
            message_key: "ab".repeat(32),
            from: "Tom <tom@initech.example>".into(),
            subject: "Re: quote".into(),
            text: "50 seats".into(),
        };
        let envelope = Envelope::reply(LEAD, "trace", reply.clone());
        assert_eq!(envelope.stage, Stage::Notify);
        assert_eq!(envelope.v, Envelope::REPLY_VERSION);
        let json = envelope.to_json();
        assert_eq!(Envelope::from_json(&json), Ok(envelope));
        // A plain envelope's JSON is as it was: no reply key, version 1.
        let plain = Envelope::new(LEAD, Stage::Notify, "trace").to_json();
        assert!(
            !plain.contains("reply") && plain.contains("\"v\":1"),
            "{plain}"
        );
        // A reply under version 1 (or none under 2) is refused, never taken as a plain message.
        assert_eq!(
            Envelope::from_json(&json.replace("\"v\":2", "\"v\":1")),
            Err(EnvelopeError::UnsupportedVersion(1))
        );
        assert_eq!(
            Envelope::from_json(&plain.replace("\"v\":1", "\"v\":2")),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        // Its Debug shows no prospect data.
        assert!(!format!("{reply:?}").contains("tom@"));
    }

    /// Mailgun's scheme, computed independently: hex HMAC-SHA256(key, timestamp + token).
    fn mailgun_signature(secret: &str, timestamp: &str, token: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{timestamp}{token}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn mailgun_signatures_are_checked_signature_first_then_age() {
        let secret = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
        let keys = [key(secret)];
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().expect("time");
        let at = now.as_second().to_string();
        let token = "a".repeat(50);
        let good = mailgun_signature(secret, &at, &token);
        let check = |timestamp: &str, token: &str, signature: &str| {
            verify_mailgun(
                &keys,
                &ProviderSignature {
                    timestamp,
                    token,
                    signature,
                },
                now,
            )
        };
        assert_eq!(check(&at, &token, &good), Ok(()));
        assert_eq!(check(&at, &token, &good.to_ascii_uppercase()), Ok(()));
        assert_eq!(
            check(&at, &"b".repeat(50), &good),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(&at, &token, &good[..32]),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(&at, &token, "not hex"),
            Err(SignatureError::MalformedHeader("signature"))
        );
        assert_eq!(
            check(&at, "", &good),
            Err(SignatureError::MissingHeader("token"))
        );
        // Validly signed, but ten minutes old: a captured post replayed later.
        let old = (now.as_second() - 600).to_string();
        let stale = mailgun_signature(secret, &old, &token);
        assert_eq!(
            check(&old, &token, &stale),
            Err(SignatureError::Stale {
                skew_secs: 600,
                tolerance_secs: TOLERANCE_SECS
            })
        );
        // A forged stale post is told apart from a stale genuine one only in the log: both fail.
        assert_eq!(check(&old, &token, &good), Err(SignatureError::NoMatch));
    }
}

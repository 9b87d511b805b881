//! Webhook signatures: the Standard Webhooks scheme, and the schemes a source declares as data
//! ([`declared`]: any HMAC over a template of what is signed, or a static token).
//!
//! Each verifies over the raw body bytes, tries every active secret (rotation) against every
//! signature the sender offers, and compares in constant time through `Mac::verify_slice`.
//! Why a check failed is returned for the log, never for the HTTP answer.

pub mod declared;

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Standard Webhooks header names.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

pub use declared::{HmacScheme, TokenScheme};

/// How a source signs its webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over `id.timestamp.body`.
    StandardWebhooks { tolerance_secs: u64 },
    /// An HMAC in a header, over what the scheme's template says is signed (`body_hmac` is
    /// `<prefix><hex HMAC-SHA256 of the body>`, e.g. `X-Hub-Signature-256: sha256=...`).
    Hmac(HmacScheme),
    /// A static token: no signature at all.
    Token(TokenScheme),
}

impl Scheme {
    /// Whether a signed timestamp bounds how long a captured request can be replayed; without
    /// one, only the body and the event id in it can.
    pub fn signs_timestamp(&self) -> bool {
        match self {
            Scheme::StandardWebhooks { .. } => true,
            Scheme::Hmac(hmac) => hmac.signed.signs_timestamp(),
            Scheme::Token(_) => false,
        }
    }
}

/// A webhook request as the signature schemes see it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Upper case, as sent: `POST`.
    pub method: &'a str,
    /// The URL the sender posted to, as it would have signed it: scheme, host, path, query.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The address the request came from, when the transport knows it.
    pub peer: Option<IpAddr>,
}

impl<'a> Delivery<'a> {
    /// A `POST` to `url` with no known peer: how tests and the CLI describe a request.
    pub fn post(url: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Delivery {
            method: "POST",
            url,
            headers,
            body,
            peer: None,
        }
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?')?.1;
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// An HMAC key; its bytes never reach a log or an error.
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a Standard Webhooks secret must be written whsec_<base64>")]
    MissingPrefix,
    #[error("the part after whsec_ is not valid base64")]
    BadBase64,
    #[error("the secret is empty")]
    Empty,
    /// The length is not told: it would say something about the secret.
    #[error("the secret is shorter than {MIN_KEY_BYTES} bytes (after decoding a whsec_ secret): use at least {MIN_KEY_BYTES} random bytes")]
    TooShort,
}

/// The shortest HMAC key accepted: a short shared secret can be guessed offline from a single
/// signed request.
pub const MIN_KEY_BYTES: usize = 16;

impl SigningKey {
    /// A Standard Webhooks secret: `whsec_` followed by the base64 of the key.
    pub fn standard(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .ok_or(KeyError::MissingPrefix)?;
        let key = BASE64.decode(encoded).map_err(|_| KeyError::BadBase64)?;
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        Ok(SigningKey(key.into()))
    }

    /// A plain shared secret, used as the HMAC key byte for byte (GitHub-style).
    pub fn plain(secret: &str) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        Ok(SigningKey(secret.as_bytes().to_vec().into()))
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length")
    }
}

/// Why a signature was refused. Logged; never sent to the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not valid")]
    MalformedHeader(&'static str),
    #[error("timestamp outside the {tolerance_secs}s tolerance ({skew_secs}s off)")]
    Stale { skew_secs: i64, tolerance_secs: u64 },
    #[error("no signature matched any active secret")]
    NoMatch,
    #[error("the sender's address is not on the source's allow_ips list")]
    AddressNotAllowed,
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's event id from a header, when the scheme has one (Standard Webhooks always
    /// does); otherwise the payload's own id or the body's hash is the dedupe key.
    pub event_id: Option<String>,
}

/// Checks `delivery` for a source with these `keys`.
pub fn verify(
    scheme: &Scheme,
    keys: &[SigningKey],
    delivery: &Delivery<'_>,
    now: Timestamp,
) -> Result<Verified, SignatureError> {
    match scheme {
        Scheme::StandardWebhooks { tolerance_secs } => {
            verify_standard(*tolerance_secs, keys, delivery.headers, delivery.body, now)
        }
        Scheme::Hmac(hmac) => hmac.verify(keys, delivery, now),
        Scheme::Token(token) => token.verify(keys, delivery),
    }
}

/// The dedupe key of a body that carries no event id: its SHA-256.
pub fn body_event_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    headers
        .get(name)
        .ok_or(SignatureError::MissingHeader(name))?
        .to_str()
        .map_err(|_| SignatureError::MalformedHeader(name))
}

fn verify_standard(
    tolerance_secs: u64,
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<Verified, SignatureError> {
    let id = header(headers, HEADER_ID)?;
    let timestamp = header(headers, HEADER_TIMESTAMP)?;
    let signatures = header(headers, HEADER_SIGNATURE)?;
    if id.is_empty() {
        return Err(SignatureError::MalformedHeader(HEADER_ID));
    }
    let sent_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(HEADER_TIMESTAMP))?;
    let skew_secs = now.as_second().saturating_sub(sent_at);
    if skew_secs.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            skew_secs,
            tolerance_secs,
        });
    }

    // The header is a space-separated list of `version,signature`; only v1 is HMAC-SHA256.
    // Empty or undecodable entries (`v1,`) are skipped, so they can never match.
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        .filter(|signature| !signature.is_empty())
        .collect();

    for key in keys {
        let mut mac = key.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        for candidate in &candidates {
            // verify_slice compares in constant time and refuses a tag of the wrong length.
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(Verified {
                    event_id: Some(id.to_owned()),
                });
            }
        }
    }
    Err(SignatureError::NoMatch)
}

/// Slack's request-signing header names.
pub const SLACK_SIGNATURE: &str = "x-slack-signature";
pub const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
/// Slack's documented tolerance for `X-Slack-Request-Timestamp`.
pub const SLACK_TOLERANCE_SECS: u64 = 300;

/// Checks a request from Slack (interactivity, slash commands) against the app's signing
/// secrets: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">`, with the
/// timestamp within five minutes of `now`.
pub fn verify_slack(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), SignatureError> {
    let timestamp = header(headers, SLACK_TIMESTAMP)?.trim();
    let signature = header(headers, SLACK_SIGNATURE)?.trim();
    let sent_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(SLACK_TIMESTAMP))?;
    let skew_secs = now.as_second().saturating_sub(sent_at);
    if skew_secs.unsigned_abs() > SLACK_TOLERANCE_SECS {
        return Err(SignatureError::Stale {
            skew_secs,
            tolerance_secs: SLACK_TOLERANCE_SECS,
        });
    }
    let candidate = signature
        .strip_prefix("v0=")
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .filter(|bytes| !bytes.is_empty())
        .ok_or(SignatureError::MalformedHeader(SLACK_SIGNATURE))?;
    let matched = keys.iter().any(|key| {
        let mut mac = key.mac();
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.verify_slice(&candidate).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// Signs like Slack does: returns the `X-Slack-Signature` value.
pub fn sign_slack(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Signs like a Standard Webhooks sender: returns the `webhook-signature` value.
pub fn sign_standard(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// A request as a sender of `scheme` would make it: the headers to add, and the URL (a token
/// scheme may carry the token in the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub headers: Vec<(String, String)>,
    pub url: String,
}

/// Why a request could not be signed for a scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("this source's token travels in the body field {0}: write it into the event file")]
    TokenInBody(String),
}

/// Signs a `POST` of `body` to `url` the way a sender using `scheme` and `key` does, at `now`,
/// with `event_id` where the scheme carries one in a header. For `leadrelay sign`/`send`.
pub fn sign_request(
    scheme: &Scheme,
    key: &SigningKey,
    url: &str,
    body: &[u8],
    event_id: &str,
    now: Timestamp,
) -> Result<SignedRequest, SignError> {
    let mut headers = Vec::new();
    let mut url = url.to_owned();
    match scheme {
        Scheme::StandardWebhooks { .. } => {
            let timestamp = now.as_second();
            headers.push((HEADER_ID.to_owned(), event_id.to_owned()));
            headers.push((HEADER_TIMESTAMP.to_owned(), timestamp.to_string()));
            headers.push((
                HEADER_SIGNATURE.to_owned(),
                sign_standard(key, event_id, timestamp, body),
            ));
        }
        Scheme::Hmac(hmac) => {
            let timestamp = match hmac.timestamp_unit {
                declared::TimeUnit::Seconds => now.as_second(),
                declared::TimeUnit::Milliseconds => now.as_millisecond(),
            }
            .to_string();
            let empty = HeaderMap::new();
            let delivery = Delivery::post(&url, &empty, body);
            headers.push((hmac.header.clone(), hmac.sign(key, &delivery, &timestamp)));
            if let Some(name) = &hmac.timestamp_header {
                headers.push((name.clone(), timestamp));
            }
            if let Some(name) = &hmac.id_header {
                headers.push((name.clone(), event_id.to_owned()));
            }
        }
        Scheme::Token(token) => {
            let text = String::from_utf8_lossy(key.0.expose_secret()).into_owned();
            match &token.place {
                declared::TokenPlace::Header { name, prefix } => {
                    headers.push((name.clone(), format!("{prefix}{text}")));
                }
                declared::TokenPlace::Query(name) => {
                    let pair: String = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair(name, &text)
                        .finish();
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&pair);
                }
                declared::TokenPlace::BodyField(path) => {
                    return Err(SignError::TokenInBody(path.to_string()))
                }
            }
            if let Some(name) = &token.id_header {
                headers.push((name.clone(), event_id.to_owned()));
            }
        }
    }
    Ok(SignedRequest { headers, url })
}

/// Signs like a body-HMAC sender: returns `<prefix><hex>`.
pub fn sign_body_hmac(key: &SigningKey, prefix: &str, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(body);
    format!("{prefix}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // "whsec_" + base64("leadrelay-test-secret-0123456789")
    const SECRET: &str = "whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=";
    const OTHER: &str = "whsec_b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbg==";
    const BODY: &[u8] = br#"{"event":"lead_capture"}"#;
    const STANDARD: Scheme = Scheme::StandardWebhooks {
        tolerance_secs: 300,
    };

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid")
    }

    fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, HeaderValue::from_str(id).expect("ascii"));
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from(ts));
        headers.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(signature).expect("ascii"),
        );
        headers
    }

    fn key(secret: &str) -> SigningKey {
        SigningKey::standard(secret).expect("valid secret")
    }

    /// `verify` for a POST with these headers and body.
    fn verify(
        scheme: &Scheme,
        keys: &[SigningKey],
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let delivery = Delivery::post("https://leads.example.com/webhooks/s", headers, body);
        super::verify(scheme, keys, &delivery, now)
    }

    #[test]
    fn accepts_a_valid_signature_and_returns_the_event_id() {
        let ts = now().as_second();
        let signature = sign_standard(&key(SECRET), "msg_1", ts, BODY);
        let verified = verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &signature),
            BODY,
            now(),
        );
        assert_eq!(
            verified,
            Ok(Verified {
                event_id: Some("msg_1".into())
            })
        );
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign_standard(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_a_forged_signature() {
        let ts = now().as_second();
        let forged = sign_standard(&key(OTHER), "msg_1", ts, BODY);
        let result = verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &forged),
            BODY,
            now(),
        );
        assert_eq!(result, Err(SignatureError::NoMatch));
    }

    #[test]
    fn refuses_a_body_changed_after_signing() {
        let ts = now().as_second();
        let signature = sign_standard(&key(SECRET), "msg_1", ts, BODY);
        let result = verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &signature),
            br#"{"event": "lead_capture"}"#,
            now(),
        );
        assert_eq!(result, Err(SignatureError::NoMatch));
    }

    #[test]
    fn refuses_empty_and_truncated_signatures() {
        let ts = now().as_second();
        let good = sign_standard(&key(SECRET), "msg_1", ts, BODY);
        let truncated = &good[..good.len() - 8];
        for signature in ["v1,", "v1", "", "v1,=", truncated, "v1,AAAA"] {
            let result = verify(
                &STANDARD,
                &[key(SECRET)],
                &headers("msg_1", ts, signature),
                BODY,
                now(),
            );
            assert_eq!(
                result,
                Err(SignatureError::NoMatch),
                "signature {signature:?}"
            );
        }
    }

    #[test]
    fn accepts_a_list_where_only_one_entry_is_valid() {
        let ts = now().as_second();
        let good = sign_standard(&key(SECRET), "msg_1", ts, BODY);
        let bad = sign_standard(&key(OTHER), "msg_1", ts, BODY);
        let list = format!("v1, {bad} v2,abc {good}");
        let result = verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &list),
            BODY,
            now(),
        );
        assert!(result.is_ok());
    }

    #[test]
    fn any_active_secret_verifies_during_rotation() {
        let ts = now().as_second();
        let signature = sign_standard(&key(OTHER), "msg_1", ts, BODY);
        let result = verify(
            &STANDARD,
            &[key(SECRET), key(OTHER)],
            &headers("msg_1", ts, &signature),
            BODY,
            now(),
        );
        assert!(result.is_ok());
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        for skew in [-301, 301, 86_400] {
            let ts = now().as_second() + skew;
            let signature = sign_standard(&key(SECRET), "msg_1", ts, BODY);
            let result = verify(
                &STANDARD,
                &[key(SECRET)],
                &headers("msg_1", ts, &signature),
                BODY,
                now(),
            );
            assert!(
                matches!(result, Err(SignatureError::Stale { .. })),
                "skew {skew}"
            );
        }
        let ts = now().as_second() - 299;
        let signature = sign_standard(&key(SECRET), "msg_1", ts, BODY);
        assert!(verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &signature),
            BODY,
            now()
        )
        .is_ok());
    }

    #[test]
    fn verifies_non_utf8_bodies_over_their_raw_bytes() {
        let body: &[u8] = &[0xff, 0xfe, b'{', 0x80];
        let ts = now().as_second();
        let signature = sign_standard(&key(SECRET), "msg_1", ts, body);
        let result = verify(
            &STANDARD,
            &[key(SECRET)],
            &headers("msg_1", ts, &signature),
            body,
            now(),
        );
        assert!(result.is_ok());
    }

    #[test]
    fn missing_headers_are_refused() {
        let result = verify(&STANDARD, &[key(SECRET)], &HeaderMap::new(), BODY, now());
        assert_eq!(result, Err(SignatureError::MissingHeader(HEADER_ID)));
    }

    #[test]
    fn body_hmac_accepts_valid_and_refuses_forged_or_empty() {
        let scheme = Scheme::Hmac(HmacScheme::body_sha256_hex(
            "X-Hub-Signature-256",
            "sha256=",
            Some("x-request-id"),
        ));
        let key = SigningKey::plain("shared-secret-0123456789").expect("long enough");
        let other = SigningKey::plain("other-secret-0123456789").expect("long enough");
        let with = |signature: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-hub-signature-256",
                HeaderValue::from_str(signature).expect("ascii"),
            );
            headers.insert("x-request-id", HeaderValue::from_static("req-9"));
            headers
        };
        let good = sign_body_hmac(&key, "sha256=", BODY);
        assert_eq!(
            verify(
                &scheme,
                std::slice::from_ref(&key),
                &with(&good),
                BODY,
                now()
            ),
            Ok(Verified {
                event_id: Some("req-9".into())
            })
        );
        let forged = sign_body_hmac(&other, "sha256=", BODY);
        assert_eq!(
            verify(
                &scheme,
                std::slice::from_ref(&key),
                &with(&forged),
                BODY,
                now()
            ),
            Err(SignatureError::NoMatch)
        );
        for bad in ["sha256=", "sha256=zz", "md5=abcd", &good[..20]] {
            assert!(
                verify(&scheme, std::slice::from_ref(&key), &with(bad), BODY, now()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_must_be_well_formed_and_never_print() {
        assert_eq!(
            SigningKey::standard("bGVhZA==").err(),
            Some(KeyError::MissingPrefix)
        );
        assert_eq!(
            SigningKey::standard("whsec_!!!").err(),
            Some(KeyError::BadBase64)
        );
        assert_eq!(SigningKey::standard("whsec_").err(), Some(KeyError::Empty));
        // Two bytes, and fifteen: too short to resist an offline guess. Sixteen will do.
        assert_eq!(
            SigningKey::standard("whsec_AAE=").err(),
            Some(KeyError::TooShort)
        );
        assert_eq!(
            SigningKey::plain("fifteen-bytes!!").err(),
            Some(KeyError::TooShort)
        );
        assert!(SigningKey::plain("sixteen-bytes!!!").is_ok());
        assert!(!KeyError::TooShort.to_string().contains("fifteen"));
        assert_eq!(format!("{:?}", key(SECRET)), "SigningKey(<redacted>)");
    }

    // The worked example of Slack's "Verifying requests from Slack" guide.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TIMESTAMP_EXAMPLE: i64 = 1531420618;
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE_EXAMPLE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn slack_headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            SLACK_TIMESTAMP,
            HeaderValue::from_str(timestamp).expect("ascii"),
        );
        headers.insert(
            SLACK_SIGNATURE,
            HeaderValue::from_str(signature).expect("ascii"),
        );
        headers
    }

    #[test]
    fn slacks_published_example_verifies() {
        let keys = [SigningKey::plain(SLACK_SECRET).expect("key")];
        let at = Timestamp::from_second(SLACK_TIMESTAMP_EXAMPLE + 60).expect("time");
        let headers = slack_headers("1531420618", SLACK_SIGNATURE_EXAMPLE);
        assert_eq!(
            verify_slack(&keys, &headers, SLACK_BODY.as_bytes(), at),
            Ok(())
        );
        assert_eq!(
            sign_slack(&keys[0], SLACK_TIMESTAMP_EXAMPLE, SLACK_BODY.as_bytes()),
            SLACK_SIGNATURE_EXAMPLE
        );
    }

    #[test]
    fn slack_requests_that_are_stale_tampered_or_malformed_are_refused() {
        let keys = [SigningKey::plain(SLACK_SECRET).expect("key")];
        let body = SLACK_BODY.as_bytes();
        let headers = slack_headers("1531420618", SLACK_SIGNATURE_EXAMPLE);
        let late = Timestamp::from_second(SLACK_TIMESTAMP_EXAMPLE + 301).expect("time");
        assert!(matches!(
            verify_slack(&keys, &headers, body, late),
            Err(SignatureError::Stale { skew_secs: 301, .. })
        ));
        let at = Timestamp::from_second(SLACK_TIMESTAMP_EXAMPLE).expect("time");
        let tampered = SLACK_BODY.replace("roadrunner", "coyote");
        assert_eq!(
            verify_slack(&keys, &headers, tampered.as_bytes(), at),
            Err(SignatureError::NoMatch)
        );
        let other = [SigningKey::plain("another-secret-0123456789").expect("key")];
        assert_eq!(
            verify_slack(&other, &headers, body, at),
            Err(SignatureError::NoMatch)
        );
        for bad in ["a2114d57", "v0=", "v0=zz", "v1=a2114d57"] {
            assert_eq!(
                verify_slack(&keys, &slack_headers("1531420618", bad), body, at),
                Err(SignatureError::MalformedHeader(SLACK_SIGNATURE)),
                "{bad}"
            );
        }
        assert_eq!(
            verify_slack(&keys, &HeaderMap::new(), body, at),
            Err(SignatureError::MissingHeader(SLACK_TIMESTAMP))
        );
    }
}

//! Signature schemes declared as data, so a platform is supported by configuration rather than
//! code: an HMAC (SHA-1 or SHA-256, hex or base64) over a template of what is signed
//! (`{body}`, `{timestamp}.{body}`, `{method}{url}{body}{timestamp}`, ...), read from a header
//! either whole (`sha256=<sig>`) or as `t=<ts>,v1=<sig>` pairs; or, for platforms that sign
//! nothing, a static token in a header, the query or a body field.
//!
//! Every comparison is constant-time (`Mac::verify_slice`); every active secret is tried
//! (rotation); a timestamp that is part of the signed text is checked against a tolerance.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha1::Sha1;
use sha2::Sha256;

use super::{Delivery, SignatureError, SigningKey, Verified};
use crate::json_path::JsonPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Sha1,
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Hex,
    Base64,
}

/// How a numeric timestamp counts; text that is not a number is read as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    #[default]
    Seconds,
    Milliseconds,
}

/// One piece of the signed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// The raw body bytes.
    Body,
    /// The body with the whitespace between JSON tokens removed, for platforms that sign a
    /// compact serialisation rather than the bytes they send.
    CompactJson,
    /// The timestamp exactly as the sender wrote it.
    Timestamp,
    /// The HTTP method, upper case.
    Method,
    /// The URL the sender posted to: scheme, host, path and query.
    Url,
}

/// What is signed, parsed from a template such as `"{timestamp}.{body}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    pub const PLACEHOLDERS: &'static str = "{body}, {compact_json}, {timestamp}, {method}, {url}";

    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|n| open + n)
                .ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
            parts.push(match &rest[open + 1..close] {
                "body" => Part::Body,
                "compact_json" => Part::CompactJson,
                "timestamp" => Part::Timestamp,
                "method" => Part::Method,
                "url" => Part::Url,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in {text:?}; known: {}",
                        Self::PLACEHOLDERS
                    ))
                }
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if !parts
            .iter()
            .any(|p| matches!(p, Part::Body | Part::CompactJson))
        {
            return Err(format!(
                "{text:?} does not sign the body: include {{body}} or {{compact_json}}"
            ));
        }
        Ok(Template(parts))
    }

    pub fn signs_timestamp(&self) -> bool {
        self.0.contains(&Part::Timestamp)
    }

    pub fn signs_url(&self) -> bool {
        self.0.contains(&Part::Url)
    }
}

/// Where the signature header keeps its parts when it holds several: `t=<ts>,v1=<sig>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFields {
    /// The name of the entry holding a signature (`v1`); several such entries may be present.
    pub signature: String,
    /// The name of the entry holding the timestamp (`t`), if the header carries it.
    pub timestamp: Option<String>,
}

/// An HMAC scheme read from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Lower-case header name holding the signature.
    pub header: String,
    /// Text before the signature (`sha256=`), stripped before decoding.
    pub prefix: String,
    pub fields: Option<HeaderFields>,
    /// Lower-case header holding the timestamp, when it is not inside the signature header.
    pub timestamp_header: Option<String>,
    pub timestamp_unit: TimeUnit,
    pub tolerance_secs: u64,
    pub signed: Template,
    /// Lower-case header carrying the sender's event id, if any.
    pub id_header: Option<String>,
    /// Characters whose percent-escapes the sender decodes in `{url}` before signing (HubSpot
    /// decodes twelve reserved ones and leaves every other escape as it is).
    pub url_unescape: Vec<char>,
}

impl HmacScheme {
    /// `<header>: <prefix><hex HMAC-SHA256 of the body>` (GitHub style): the `body_hmac` scheme.
    pub fn body_sha256_hex(header: &str, prefix: &str, id_header: Option<&str>) -> HmacScheme {
        HmacScheme {
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            header: header.to_ascii_lowercase(),
            prefix: prefix.to_owned(),
            fields: None,
            timestamp_header: None,
            timestamp_unit: TimeUnit::Seconds,
            tolerance_secs: 0,
            signed: Template(vec![Part::Body]),
            id_header: id_header.map(str::to_ascii_lowercase),
            url_unescape: Vec::new(),
        }
    }

    pub(super) fn verify(
        &self,
        keys: &[SigningKey],
        delivery: &Delivery<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let value = text_header(delivery, &self.header)?;
        let (encoded, timestamp): (Vec<&str>, Option<&str>) = match &self.fields {
            None => (vec![value.trim()], None),
            Some(fields) => {
                let pairs: Vec<(&str, &str)> = value
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .collect();
                let signatures = pairs
                    .iter()
                    .filter(|(k, _)| *k == fields.signature)
                    .map(|(_, v)| *v)
                    .collect();
                let timestamp = fields
                    .timestamp
                    .as_ref()
                    .and_then(|name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v));
                (signatures, timestamp)
            }
        };
        let timestamp = match (&self.timestamp_header, timestamp) {
            (Some(name), None) => Some(text_header(delivery, name)?.trim()),
            (_, found) => found,
        };
        if self.signed.signs_timestamp() {
            let sent = timestamp.ok_or(SignatureError::MissingHeader("timestamp"))?;
            self.check_fresh(sent, now)?;
        }
        let candidates: Vec<Vec<u8>> = encoded
            .iter()
            .filter_map(|e| e.strip_prefix(self.prefix.as_str()))
            .filter_map(|e| self.decode(e))
            .filter(|sig| !sig.is_empty())
            .collect();
        if candidates.is_empty() {
            return Err(SignatureError::MalformedHeader("signature"));
        }
        let message = self.message(delivery, timestamp.unwrap_or_default());
        let matched = keys.iter().any(|key| {
            let mac = SchemeMac::new(self.algorithm, key, &message);
            candidates.iter().any(|c| mac.verifies(c))
        });
        if !matched {
            return Err(SignatureError::NoMatch);
        }
        Ok(Verified {
            event_id: header_id(delivery, self.id_header.as_deref()),
        })
    }

    /// The signed text the template describes, for verifying and for signing alike.
    fn message(&self, delivery: &Delivery<'_>, timestamp: &str) -> Vec<u8> {
        let url = unescape(delivery.url, &self.url_unescape);
        let mut message = Vec::with_capacity(delivery.body.len() + 64);
        for part in &self.signed.0 {
            match part {
                Part::Literal(text) => message.extend_from_slice(text.as_bytes()),
                Part::Body => message.extend_from_slice(delivery.body),
                Part::CompactJson => message.extend_from_slice(&compact_json(delivery.body)),
                Part::Timestamp => message.extend_from_slice(timestamp.as_bytes()),
                Part::Method => message.extend_from_slice(delivery.method.as_bytes()),
                Part::Url => message.extend_from_slice(url.as_bytes()),
            }
        }
        message
    }

    fn decode(&self, encoded: &str) -> Option<Vec<u8>> {
        match self.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            // Some stacks turn a `+` in a header into a space; base64 has no spaces.
            Encoding::Base64 => BASE64.decode(encoded.replace(' ', "+")).ok(),
        }
    }

    fn check_fresh(&self, sent: &str, now: Timestamp) -> Result<(), SignatureError> {
        let sent_at = match sent.parse::<i64>() {
            Ok(n) => match self.timestamp_unit {
                TimeUnit::Seconds => n,
                TimeUnit::Milliseconds => n.div_euclid(1000),
            },
            Err(_) => sent
                .parse::<Timestamp>()
                .map_err(|_| SignatureError::MalformedHeader("timestamp"))?
                .as_second(),
        };
        let skew_secs = now.as_second().saturating_sub(sent_at);
        if skew_secs.unsigned_abs() > self.tolerance_secs {
            return Err(SignatureError::Stale {
                skew_secs,
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok(())
    }

    /// Signs `delivery` as the platform would and returns the signature header's value; the
    /// timestamp, if the scheme signs one, is `timestamp` written in the scheme's unit.
    pub fn sign(&self, key: &SigningKey, delivery: &Delivery<'_>, timestamp: &str) -> String {
        let message = self.message(delivery, timestamp);
        let tag = SchemeMac::new(self.algorithm, key, &message).tag();
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => BASE64.encode(tag),
        };
        match &self.fields {
            None => format!("{}{encoded}", self.prefix),
            Some(fields) => match &fields.timestamp {
                Some(t) => format!(
                    "{t}={timestamp},{}={}{encoded}",
                    fields.signature, self.prefix
                ),
                None => format!("{}={}{encoded}", fields.signature, self.prefix),
            },
        }
    }
}

/// An HMAC over one signed text, in the scheme's algorithm.
enum SchemeMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
}

impl SchemeMac {
    fn new(algorithm: Algorithm, key: &SigningKey, message: &[u8]) -> SchemeMac {
        match algorithm {
            Algorithm::Sha256 => {
                let mut mac = key.mac();
                mac.update(message);
                SchemeMac::Sha256(mac)
            }
            Algorithm::Sha1 => {
                let mut mac = <Hmac<Sha1>>::new_from_slice(key.0.expose_secret())
                    .expect("HMAC takes any key length");
                mac.update(message);
                SchemeMac::Sha1(mac)
            }
        }
    }

    /// Compares in constant time (`verify_slice`); a tag of the wrong length never matches.
    fn verifies(&self, candidate: &[u8]) -> bool {
        match self {
            SchemeMac::Sha1(mac) => mac.clone().verify_slice(candidate).is_ok(),
            SchemeMac::Sha256(mac) => mac.clone().verify_slice(candidate).is_ok(),
        }
    }

    fn tag(self) -> Vec<u8> {
        match self {
            SchemeMac::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
            SchemeMac::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
        }
    }
}

/// Where a static token is sent, for platforms that sign nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlace {
    /// A header, after an optional prefix (`Authorization: Bearer <token>`).
    Header { name: String, prefix: String },
    /// A query parameter of the webhook URL.
    Query(String),
    /// A field of the JSON body.
    BodyField(JsonPath),
}

/// A shared token compared in constant time, optionally with the sender's addresses limited.
/// It proves only that the sender knows the token: anyone who sees one request can send more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScheme {
    pub place: TokenPlace,
    /// When not empty, requests from other addresses are refused before the token is read.
    pub allow_ips: Vec<ipnet::IpNet>,
    pub id_header: Option<String>,
}

impl TokenScheme {
    pub(super) fn verify(
        &self,
        keys: &[SigningKey],
        delivery: &Delivery<'_>,
    ) -> Result<Verified, SignatureError> {
        if !self.allow_ips.is_empty() {
            let allowed = delivery
                .peer
                .is_some_and(|ip: IpAddr| self.allow_ips.iter().any(|net| net.contains(&ip)));
            if !allowed {
                return Err(SignatureError::AddressNotAllowed);
            }
        }
        let presented: String = match &self.place {
            TokenPlace::Header { name, prefix } => text_header(delivery, name)?
                .trim()
                .strip_prefix(prefix.as_str())
                .ok_or(SignatureError::MalformedHeader("token"))?
                .trim()
                .to_owned(),
            TokenPlace::Query(name) => delivery
                .query_param(name)
                .ok_or(SignatureError::MissingHeader("token"))?,
            TokenPlace::BodyField(path) => serde_json::from_slice(delivery.body)
                .ok()
                .and_then(|body| path.text(&body))
                .ok_or(SignatureError::MissingHeader("token"))?,
        };
        // Each side is an HMAC key over the same fixed text: comparing the two tags in
        // constant time compares the tokens without leaking their length or a prefix.
        const PROBE: &[u8] = b"leadrelay token check";
        let mut offered = <Hmac<Sha256>>::new_from_slice(presented.as_bytes())
            .expect("HMAC takes any key length");
        offered.update(PROBE);
        let offered = offered.finalize().into_bytes();
        let matched = keys.iter().any(|key| {
            let mut mac = key.mac();
            mac.update(PROBE);
            mac.verify_slice(&offered).is_ok()
        });
        if !matched {
            return Err(SignatureError::NoMatch);
        }
        Ok(Verified {
            event_id: header_id(delivery, self.id_header.as_deref()),
        })
    }
}

/// `url` with the escapes of `chars` decoded (`%3A` → `:`); other escapes stay as they are.
fn unescape<'a>(url: &'a str, chars: &[char]) -> std::borrow::Cow<'a, str> {
    if chars.is_empty() || !url.contains('%') {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map(char::from)
            .filter(|c| chars.contains(c));
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

fn text_header<'a>(delivery: &'a Delivery<'_>, name: &str) -> Result<&'a str, SignatureError> {
    delivery
        .headers
        .get(name)
        .ok_or(SignatureError::MissingHeader("signature"))?
        .to_str()
        .map_err(|_| SignatureError::MalformedHeader("signature"))
}

fn header_id(delivery: &Delivery<'_>, name: Option<&str>) -> Option<String> {
    name.and_then(|name| delivery.headers.get(name))
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The body with whitespace outside JSON strings removed (what `JSON.stringify` of the parsed
/// body writes, byte for byte, when the sender's serialiser kept key order and escapes).
pub fn compact_json(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            in_string = byte == b'"';
            out.push(byte);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const KEY: &str = "platform-secret-0123456789";

    fn key() -> SigningKey {
        SigningKey::plain(KEY).expect("valid")
    }

    fn delivery<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            method: "POST",
            url: "https://leads.example.com/webhooks/platform?x=1",
            headers,
            body,
            peer: None,
        }
    }

    fn scheme(template: &str) -> HmacScheme {
        HmacScheme {
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Base64,
            header: "x-signature".into(),
            prefix: String::new(),
            fields: None,
            timestamp_header: Some("x-timestamp".into()),
            timestamp_unit: TimeUnit::Seconds,
            tolerance_secs: 300,
            signed: Template::parse(template).expect("valid"),
            id_header: None,
            url_unescape: Vec::new(),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid")
    }

    /// Signs with `scheme` and returns the headers a platform would send.
    fn signed(scheme: &HmacScheme, body: &[u8], timestamp: &str) -> HeaderMap {
        let empty = HeaderMap::new();
        let value = scheme.sign(&key(), &delivery(&empty, body), timestamp);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(scheme.header.as_bytes()).expect("name"),
            HeaderValue::from_str(&value).expect("ascii"),
        );
        headers.insert(
            "x-timestamp",
            HeaderValue::from_str(timestamp).expect("ascii"),
        );
        headers
    }

    #[test]
    fn templates_name_known_parts_and_must_sign_the_body() {
        assert!(Template::parse("{timestamp}.{body}").is_ok());
        assert!(Template::parse("{method}{url}{body}{timestamp}").is_ok());
        assert!(Template::parse("[{timestamp};{compact_json}]").is_ok());
        let error = Template::parse("{timestamp}.{bdy}").expect_err("typo");
        assert!(error.contains("{bdy}"), "{error}");
        let error = Template::parse("{timestamp}").expect_err("no body");
        assert!(error.contains("does not sign the body"), "{error}");
        assert!(Template::parse("{body").is_err());
    }

    #[test]
    fn each_part_of_the_template_is_covered_by_the_signature() {
        let body = br#"{"email": "ada@acme.example"}"#;
        let s = scheme("{method}{url}{body}{timestamp}");
        let headers = signed(&s, body, "1700000000");
        let ok = delivery(&headers, body);
        assert!(s.verify(&[key()], &ok, now()).is_ok());
        // Another URL, method, body or timestamp than the one signed fails.
        let other_url = Delivery {
            url: "https://leads.example.com/webhooks/platform?x=2",
            ..ok
        };
        assert_eq!(
            s.verify(&[key()], &other_url, now()),
            Err(SignatureError::NoMatch)
        );
        let other_method = Delivery {
            method: "PUT",
            ..ok
        };
        assert!(s.verify(&[key()], &other_method, now()).is_err());
        let changed = delivery(&headers, br#"{"email": "eve@acme.example"}"#);
        assert!(s.verify(&[key()], &changed, now()).is_err());
        let mut moved = headers.clone();
        moved.insert("x-timestamp", HeaderValue::from_static("1700000001"));
        assert!(s.verify(&[key()], &delivery(&moved, body), now()).is_err());
    }

    #[test]
    fn stale_future_and_unreadable_timestamps_are_refused() {
        let body = b"{}";
        let s = scheme("{timestamp}.{body}");
        for (timestamp, refused) in [
            ("1700000000", false),
            ("1699999800", false),
            ("1699999000", true),
            ("1700000900", true),
            ("2023-11-14T22:13:20Z", false),
            ("2023-11-14T20:00:00Z", true),
            ("soon", true),
        ] {
            let headers = signed(&s, body, timestamp);
            let result = s.verify(&[key()], &delivery(&headers, body), now());
            assert_eq!(result.is_err(), refused, "{timestamp}: {result:?}");
        }
        let millis = HmacScheme {
            timestamp_unit: TimeUnit::Milliseconds,
            ..s.clone()
        };
        let headers = signed(&millis, body, "1700000000123");
        assert!(millis
            .verify(&[key()], &delivery(&headers, body), now())
            .is_ok());
    }

    #[test]
    fn pair_headers_carry_the_timestamp_and_several_signatures() {
        let body = br#"{"event":"invitee.created"}"#;
        let s = HmacScheme {
            encoding: Encoding::Hex,
            header: "calendly-webhook-signature".into(),
            fields: Some(HeaderFields {
                signature: "v1".into(),
                timestamp: Some("t".into()),
            }),
            timestamp_header: None,
            ..scheme("{timestamp}.{body}")
        };
        let empty = HeaderMap::new();
        let good = s.sign(&key(), &delivery(&empty, body), "1700000000");
        assert!(good.starts_with("t=1700000000,v1="), "{good}");
        // A stale signature next to the good one: any entry may match.
        let value = format!("{},v1=00ff", good);
        let mut headers = HeaderMap::new();
        headers.insert(
            "calendly-webhook-signature",
            HeaderValue::from_str(&value).expect("ascii"),
        );
        assert!(s.verify(&[key()], &delivery(&headers, body), now()).is_ok());
        let mut no_t = HeaderMap::new();
        let without_t = good.replace("t=1700000000,", "");
        no_t.insert(
            "calendly-webhook-signature",
            HeaderValue::from_str(&without_t).expect("ascii"),
        );
        assert_eq!(
            s.verify(&[key()], &delivery(&no_t, body), now()),
            Err(SignatureError::MissingHeader("timestamp"))
        );
    }

    #[test]
    fn sha1_hex_with_a_prefix_and_key_rotation() {
        let body = br#"{"topic":"contact.lead.created"}"#;
        let s = HmacScheme {
            algorithm: Algorithm::Sha1,
            encoding: Encoding::Hex,
            header: "x-hub-signature".into(),
            prefix: "sha1=".into(),
            timestamp_header: None,
            ..scheme("{body}")
        };
        let headers = signed(&s, body, "");
        let value = headers["x-hub-signature"].to_str().expect("ascii");
        assert!(
            value.starts_with("sha1=") && value.len() == 5 + 40,
            "{value}"
        );
        let old = SigningKey::plain("the-previous-secret-0123").expect("valid");
        assert!(s
            .verify(&[old.clone(), key()], &delivery(&headers, body), now())
            .is_ok());
        assert_eq!(
            s.verify(&[old], &delivery(&headers, body), now()),
            Err(SignatureError::NoMatch)
        );
        // The same digest under SHA-256's name, or without the prefix, is refused.
        let mut bare = HeaderMap::new();
        bare.insert(
            "x-hub-signature",
            HeaderValue::from_str(value.trim_start_matches("sha1=")).expect("ascii"),
        );
        assert!(s.verify(&[key()], &delivery(&bare, body), now()).is_err());
    }

    #[test]
    fn only_the_listed_escapes_are_decoded_in_the_signed_url() {
        let reserved = [':', '/', '?', '@', '!', '$', '\'', '(', ')', '*', ',', ';'];
        assert_eq!(
            unescape(
                "https://x.example/h?tag=a%3Ab&q=%20%2B%26%2f%zz%",
                &reserved
            ),
            "https://x.example/h?tag=a:b&q=%20%2B%26/%zz%"
        );
        assert_eq!(
            unescape("https://x.example/a%3A", &[]),
            "https://x.example/a%3A"
        );
    }

    #[test]
    fn compact_json_keeps_strings_and_order() {
        let body = b"{ \"b\" : 1,\n \"a\": \"x y\\\" z\" , \"c\": [1, 2] }";
        assert_eq!(
            compact_json(body),
            br#"{"b":1,"a":"x y\" z","c":[1,2]}"#.to_vec()
        );
    }

    #[test]
    fn tokens_match_in_any_place_and_addresses_can_be_limited() {
        let token = SigningKey::plain("static-token-0123456789").expect("valid");
        let body = br#"{"token": "static-token-0123456789", "data": {}}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer static-token-0123456789"),
        );
        let header = TokenScheme {
            place: TokenPlace::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            allow_ips: Vec::new(),
            id_header: None,
        };
        let ok = delivery(&headers, body);
        assert!(header.verify(std::slice::from_ref(&token), &ok).is_ok());
        let field = TokenScheme {
            place: TokenPlace::BodyField(JsonPath::parse("token").expect("path")),
            ..header.clone()
        };
        assert!(field.verify(std::slice::from_ref(&token), &ok).is_ok());
        let query = TokenScheme {
            place: TokenPlace::Query("x".into()),
            ..header.clone()
        };
        assert_eq!(
            query.verify(std::slice::from_ref(&token), &ok),
            Err(SignatureError::NoMatch),
            "x=1 is not the token"
        );
        let wrong = SigningKey::plain("static-token-0123456780").expect("valid");
        assert_eq!(header.verify(&[wrong], &ok), Err(SignatureError::NoMatch));

        let limited = TokenScheme {
            allow_ips: vec!["192.0.2.0/24".parse().expect("net")],
            ..header
        };
        assert_eq!(
            limited.verify(std::slice::from_ref(&token), &ok),
            Err(SignatureError::AddressNotAllowed),
            "no peer known"
        );
        let inside = Delivery {
            peer: Some("192.0.2.7".parse().expect("ip")),
            ..ok
        };
        assert!(limited
            .verify(std::slice::from_ref(&token), &inside)
            .is_ok());
        let outside = Delivery {
            peer: Some("198.51.100.7".parse().expect("ip")),
            ..ok
        };
        assert!(limited.verify(&[token], &outside).is_err());
    }
}

//! RS256 JSON Web Tokens as the OAuth 2.0 JWT bearer grant (RFC 7523) sends them: an RSA
//! private key read from PEM, and a claims set signed in the compact serialisation
//! (`base64url(header) . base64url(claims) . base64url(signature)`).
//!
//! Two steps: [`check_pem`] (PEM, base64, no encryption) runs in every configuration check;
//! [`RsaKey::from_pem`] parses the key where tokens are signed, at the start of that process,
//! so a key that cannot sign is still a start-up error naming its setting rather than a failed
//! delivery later, and a process that never signs does not parse a key it has no use for.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::Value;

/// Why a PEM text is not a usable RSA private key. Never quotes the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")]
    NotPem,
    #[error("the private key is encrypted: export it without a passphrase")]
    Encrypted,
    #[error("the PEM body is not valid base64")]
    Base64,
    #[error("not an RSA private key ring can sign with: {0}")]
    Rejected(String),
}

/// Signing failed (ring refuses only on a broken key or random source).
#[derive(Debug, thiserror::Error)]
#[error("RS256 signing failed")]
pub struct SignError;

/// An RSA private key for RS256. Cloning shares it; `Debug` never shows it.
#[derive(Clone)]
pub struct RsaKey(Arc<RsaKeyPair>);

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaKey([redacted])")
    }
}

impl RsaKey {
    /// A PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` and OpenSSL 3 write) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) PEM key. A value whose line breaks were written as `\n`
    /// (common where a variable holds one line) is read as if they were line breaks.
    pub fn from_pem(text: &str) -> Result<RsaKey, KeyError> {
        let (label, der) = pem_der(text)?;
        let pair = match label {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            _ => RsaKeyPair::from_der(&der),
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(RsaKey(Arc::new(pair)))
    }

    /// `message` signed with RSASSA-PKCS1-v1_5 over SHA-256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignError)?;
        Ok(signature)
    }
}

/// Whether `text` is an unencrypted PKCS#8 or PKCS#1 PEM private key whose body decodes: what
/// can be told without parsing the key itself (no ring). [`RsaKey::from_pem`] does the rest.
pub fn check_pem(text: &str) -> Result<(), KeyError> {
    pem_der(text).map(|_| ())
}

/// The PEM label and the DER it holds. A value whose line breaks were written as `\n` is read
/// as if they were line breaks.
fn pem_der(text: &str) -> Result<(&'static str, Vec<u8>), KeyError> {
    let text = if !text.contains('\n') && text.contains("\\n") {
        text.replace("\\n", "\n")
    } else {
        text.to_owned()
    };
    // PKCS#8 encrypted, or a PKCS#1 key with OpenSSL's encryption headers.
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(KeyError::Encrypted);
    }
    let (label, body) = ["PRIVATE KEY", "RSA PRIVATE KEY"]
        .into_iter()
        .find_map(|label| pem_body(&text, label).map(|body| (label, body)))
        .ok_or(KeyError::NotPem)?;
    let der = STANDARD.decode(body).map_err(|_| KeyError::Base64)?;
    Ok((label, der))
}

/// The base64 between `-----BEGIN {label}-----` and its END line, whitespace removed.
fn pem_body(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    Some(
        text[start..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

/// `claims` as a compact JWT signed with RS256, under the header `{"alg":"RS256"}` (the header
/// Salesforce's JWT bearer flow documents).
pub fn sign_rs256(key: &RsaKey, claims: &Value) -> Result<String, SignError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    const PKCS8: &str = include_str!("../../tests/it/fixtures/salesforce/jwt-test-key.pem");
    const PKCS1: &str = include_str!("../../tests/it/fixtures/salesforce/jwt-test-key-pkcs1.pem");
    const PUBLIC: &str = include_str!("../../tests/it/fixtures/salesforce/jwt-test-key.pub.pem");

    fn public_der() -> Vec<u8> {
        STANDARD
            .decode(pem_body(PUBLIC, "RSA PUBLIC KEY").expect("PEM"))
            .expect("base64")
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_key_in_either_pem_form() {
        let claims = serde_json::json!({"iss": "client", "sub": "u@x.example", "aud": "https://login.salesforce.com", "exp": 1_700_000_000});
        let one_line = PKCS8.replace('\n', "\\n");
        for pem in [PKCS8, PKCS1, one_line.as_str()] {
            let key = RsaKey::from_pem(pem).expect("a valid key");
            let token = sign_rs256(&key, &claims).expect("signed");
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "{token}");
            assert_eq!(
                URL_SAFE_NO_PAD.decode(parts[0]).expect("b64"),
                br#"{"alg":"RS256"}"#
            );
            let decoded: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64"))
                    .expect("JSON");
            assert_eq!(decoded, claims);
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
            let input = format!("{}.{}", parts[0], parts[1]);
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_der())
                .verify(input.as_bytes(), &signature)
                .expect("the signature verifies");
        }
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_without_quoting_them() {
        assert_eq!(
            RsaKey::from_pem("not a key").expect_err("no PEM"),
            KeyError::NotPem
        );
        assert_eq!(
            RsaKey::from_pem(PUBLIC).expect_err("a public key"),
            KeyError::NotPem
        );
        assert_eq!(
            RsaKey::from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
            )
            .expect_err("encrypted"),
            KeyError::Encrypted
        );
        assert_eq!(
            RsaKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
                .expect_err("bad base64"),
            KeyError::Base64
        );
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
        let error = RsaKey::from_pem(not_a_key).expect_err("not a key");
        assert!(matches!(error, KeyError::Rejected(_)), "{error}");
        // The check without ring finds every mistake but the last, which only parsing finds.
        assert_eq!(check_pem("not a key"), Err(KeyError::NotPem));
        assert_eq!(check_pem(PUBLIC), Err(KeyError::NotPem));
        assert_eq!(
            check_pem("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n-----END RSA PRIVATE KEY-----"),
            Err(KeyError::Encrypted)
        );
        assert_eq!(
            check_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"),
            Err(KeyError::Base64)
        );
        assert_eq!(check_pem(not_a_key), Ok(()));
        for pem in [PKCS8, PKCS1, PKCS8.replace('\n', "\\n").as_str()] {
            assert_eq!(check_pem(pem), Ok(()));
        }
        assert!(!format!("{:?}", RsaKey::from_pem(PKCS8).expect("key")).contains("MII"));
    }
}

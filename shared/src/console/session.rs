//! A signed-in person's session, as the store keeps it.
//!
//! The browser holds a random session id in an `HttpOnly` cookie; the store holds only its
//! SHA-256 ([`Session::key`]), so a copy of the store opens no session. Each session carries its
//! own random CSRF token, which every form of the console echoes back.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the cookie's session id: how the store finds the session.
    pub key: String,
    /// The account's login (`[[console.accounts]] login`).
    pub login: String,
    /// The token every form of this session must carry (hex, 256 bits).
    pub csrf: String,
    pub created_at: Timestamp,
    /// Signed out after this instant, whatever happens in between.
    pub expires_at: Timestamp,
}

impl Session {
    /// The store key of a cookie's session id.
    pub fn key(session_id: &str) -> String {
        hex(&Sha256::digest(session_id.as_bytes()))
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_key_is_the_ids_digest_not_the_id() {
        let key = Session::key("secret-session-id");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("secret"));
        assert_eq!(key, Session::key("secret-session-id"));
        assert_ne!(key, Session::key("secret-session-iD"));
    }
}

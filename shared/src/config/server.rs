//! `[server]`: how long the embedded HTTP server (`leadrelay serve`) waits for a client and how
//! many connections it holds at once. On AWS, API Gateway holds the client connections and
//! these keys do nothing.

use serde::Deserialize;

/// `[server]`: timeouts and the connection limit of `leadrelay serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A connection must deliver a request's complete headers within this long, counted from
    /// when it opens or its previous response was sent: a client that sends half a request,
    /// or an idle keep-alive connection, is closed after it.
    pub header_read_timeout_secs: u64,
    /// A request, its body included, must be answered within this long; otherwise 408 and
    /// the connection is closed.
    pub request_timeout_secs: u64,
    /// Connections held at once; beyond it new ones wait in the kernel's listen backlog until
    /// one closes (never refused by the server). Capped by the open-file limit.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 10_000,
        }
    }
}

impl ServerConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            (
                "server.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("server.request_timeout_secs", self.request_timeout_secs),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.max_connections == 0 {
            return Err(("server.max_connections".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, MINIMAL};

    #[test]
    fn the_server_section_has_safe_defaults_and_refuses_zero() {
        let server = parse(MINIMAL).expect("valid").server;
        assert_eq!(server.header_read_timeout_secs, 10);
        assert_eq!(server.request_timeout_secs, 30);
        assert_eq!(server.max_connections, 10_000);
        let with = |line: &str| format!("{MINIMAL}\n[server]\n{line}\n");
        let server = parse(&with("header_read_timeout_secs = 2\nmax_connections = 50"))
            .expect("valid")
            .server;
        assert_eq!(
            (server.header_read_timeout_secs, server.max_connections),
            (2, 50)
        );
        for key in [
            "header_read_timeout_secs",
            "request_timeout_secs",
            "max_connections",
        ] {
            let error = parse(&with(&format!("{key} = 0")))
                .expect_err(key)
                .to_string();
            assert!(error.contains(&format!("server.{key}")), "{error}");
        }
        let error = parse(&with("idle_secs = 5"))
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("idle_secs"), "{error}");
    }
}

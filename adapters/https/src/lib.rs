//! The outbound HTTPS client every adapter builds on: reqwest over rustls with the `ring`
//! crypto provider and the platform's certificate roots.
//!
//! Why one place: the AWS SDK's client already runs on `ring`, and a second provider
//! (reqwest's default, aws-lc-rs) would link a second TLS crypto library into each binary
//! that calls out over HTTPS. Building every reqwest client from [`client_builder`] keeps
//! one, and keeps certificate checking the same everywhere.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ClientConfig;
use rustls_platform_verifier::BuilderVerifierExt as _;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS settings (for example, the platform's certificate roots are unreadable).
    #[error("TLS client settings: {0}")]
    Tls(#[source] rustls::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The TLS settings: TLS 1.2 and 1.3 with ring's cipher suites, the platform's verifier,
/// HTTP/2 offered before HTTP/1.1 (reqwest negotiates by ALPN).
pub fn tls_config() -> Result<ClientConfig, ClientError> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_platform_verifier()
        .map_err(ClientError::Tls)?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client with [`tls_config`] and what `configure` adds (timeouts, redirect policy,
/// user agent).
pub fn client(
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, ClientError> {
    let builder = reqwest::Client::builder().tls_backend_preconfigured(tls_config()?);
    Ok(configure(builder).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_settings_use_ring_and_offer_h2_then_http1() {
        let config = tls_config().expect("tls settings");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let ring_suites = ring::default_provider().cipher_suites;
        assert_eq!(
            config.crypto_provider().cipher_suites.len(),
            ring_suites.len()
        );
    }

    /// A real handshake: the client negotiates with a local TLS server (ALPN picks h2) and
    /// refuses its self-signed certificate, as the platform's verifier must.
    #[tokio::test]
    async fn a_server_with_an_unknown_certificate_is_refused_after_a_real_handshake() {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let server_config = {
            let cert = key.cert.der().clone();
            let private =
                rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der())
                    .expect("key");
            let mut config =
                rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(vec![cert], private)
                    .expect("server config");
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut connection = rustls::ServerConnection::new(server_config).expect("server");
            // Runs until the client aborts the handshake with its alert.
            while connection.is_handshaking() {
                if connection.complete_io(&mut socket).is_err() {
                    break;
                }
            }
            connection.alpn_protocol().map(<[u8]>::to_vec)
        });

        let http =
            client(|builder| builder.timeout(std::time::Duration::from_secs(5))).expect("client");
        let error = http
            .get(format!("https://localhost:{port}/"))
            .send()
            .await
            .expect_err("an unknown issuer is refused");
        let mut chain = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&error);
        while let Some(e) = cause {
            chain.push(e.to_string());
            cause = e.source();
        }
        assert!(
            chain.iter().any(|m| m.contains("certificate")),
            "refused for its certificate: {chain:?}"
        );
        assert_eq!(server.join().expect("server thread"), Some(b"h2".to_vec()));
    }
}

//! The AWS SDK's HTTP transport: the SDK's requests sent with reqwest over HTTP/1.1, with the
//! TLS settings of every other outbound client (`leadrelay_https`: rustls over ring, the
//! platform's roots).
//!
//! Why not the SDK's own client (`aws-smithy-http-client`): it always links HTTP/2 (`h2`, about
//! 0.5 MB of code) and a TLS connector of its own into every function, and DynamoDB, SQS, SSM,
//! SES and SNS are spoken over HTTP/1.1 anyway. Over reqwest, the functions that call out
//! (Slack, CRMs, enrichment providers) share one HTTP stack with the SDK.
//!
//! What the SDK expects of a transport, and this one does: connect and read timeouts from its
//! settings, one connection pool per setting, no redirect followed, no proxy (the SDK's client
//! configures none by default either), and failures classified the way its retry strategy
//! reads them: a timeout as a timeout, a refused or broken connection as I/O (both retried).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;

/// The SDK's HTTP client: one reqwest client (and so one connection pool) per distinct pair of
/// timeouts the SDK asks for, built at the first request that asks.
#[derive(Debug, Default)]
pub struct ReqwestTransport {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

/// [`ReqwestTransport`] as the SDK's configuration takes it.
pub fn shared() -> SharedHttpClient {
    SharedHttpClient::new(ReqwestTransport::default())
}

impl HttpClient for ReqwestTransport {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(Connector::new(key)))
            .clone()
    }
}

/// Sends requests with one reqwest client; `None` when it could not be built (the TLS
/// settings), in which case every request fails with that reason.
#[derive(Debug)]
struct Connector {
    http: Result<reqwest::Client, Arc<leadrelay_https::ClientError>>,
}

impl Connector {
    fn new((connect, read): Timeouts) -> Connector {
        let http = leadrelay_https::client(|builder| {
            let builder = builder
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            let builder = match connect {
                Some(timeout) => builder.connect_timeout(timeout),
                None => builder,
            };
            match read {
                Some(timeout) => builder.read_timeout(timeout),
                None => builder,
            }
        })
        .map_err(Arc::new);
        Connector { http }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = match &self.http {
            Ok(http) => http.clone(),
            Err(error) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::other(
                    Box::new(BuildFailed(error.clone())),
                    None,
                )))
            }
        };
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            // The SDK's request bodies for these services are in memory (JSON, query strings);
            // a streaming one (an S3 upload) is not something leadrelay sends.
            let body = body
                .bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ConnectorError::user("a streaming request body".into()))?;
            let response = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let bytes = response.bytes().await.map_err(classify)?;
            let answer = answer
                .body(SdkBody::from(bytes))
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The transport's client could not be built (kept so each request can say why).
#[derive(Debug, thiserror::Error)]
#[error("the AWS SDK's HTTPS client could not be built: {0}")]
struct BuildFailed(#[source] Arc<leadrelay_https::ClientError>);

/// A reqwest failure as the SDK's retry strategy classifies transport failures: timeouts and
/// connection-level I/O (refused, reset, closed before the answer) are transient and retried;
/// anything else is left to the SDK as "other".
fn classify(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        return ConnectorError::timeout(error.into());
    }
    let closed_early = chain(&error).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_closed() || h.is_canceled() || h.is_incomplete_message())
    });
    let io = chain(&error).any(|e| e.is::<std::io::Error>());
    if error.is_connect() || io || closed_early {
        return ConnectorError::io(error.into());
    }
    if error.is_body() || error.is_decode() {
        return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
    }
    ConnectorError::other(error.into(), None)
}

/// `error` and its sources.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    fn connector(read_timeout: Option<Duration>) -> Connector {
        Connector::new((Some(Duration::from_secs(2)), read_timeout))
    }

    fn post(url: &str) -> HttpRequest {
        let request = http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "DynamoDB_20120810.GetItem")
            .body(SdkBody::from(r#"{"TableName":"leads"}"#))
            .expect("request");
        HttpRequest::try_from(request).expect("smithy request")
    }

    /// What the server read of one request, and its canned answer sent back.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("\"leads\"}") {
                let n = socket.read(&mut buffer).expect("read");
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
            }
            socket.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&seen).into_owned()
        });
        (url, server)
    }

    #[tokio::test]
    async fn a_request_goes_out_as_http1_with_its_headers_and_body_and_the_answer_comes_back() {
        let (url, server) = serve_once(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
             x-amzn-requestid: r-1\r\ncontent-length: 28\r\nconnection: close\r\n\r\n\
             {\"__type\":\"ValidationError\"}",
        );
        let response = connector(None).call(post(&url)).await.expect("answered");
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
        assert_eq!(
            response.body().bytes(),
            Some(&b"{\"__type\":\"ValidationError\"}"[..])
        );
        let seen = server.join().expect("server");
        assert!(seen.starts_with("POST / HTTP/1.1\r\n"), "{seen}");
        let lower = seen.to_ascii_lowercase();
        assert!(
            lower.contains("x-amz-target: dynamodb_20120810.getitem"),
            "{seen}"
        );
        assert!(lower.contains("content-length: 21"), "{seen}");
        assert!(seen.ends_with("{\"TableName\":\"leads\"}"), "{seen}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_and_a_silent_server_a_timeout_both_retryable() {
        // A port nothing listens on: bind, note it, close.
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", closed.local_addr().expect("addr"));
        drop(closed);
        let error = connector(None).call(post(&url)).await.expect_err("refused");
        assert!(error.is_io(), "{error:?}");

        // A server that reads the request and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let _silent = std::thread::spawn(move || {
            let (socket, _) = listener.accept().expect("accept");
            std::thread::sleep(Duration::from_secs(3));
            drop(socket);
        });
        let error = connector(Some(Duration::from_millis(200)))
            .call(post(&url))
            .await
            .expect_err("timed out");
        assert!(error.is_timeout(), "{error:?}");
    }

    #[tokio::test]
    async fn a_redirect_is_handed_back_not_followed() {
        let (url, server) = serve_once(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n",
        );
        let response = connector(None).call(post(&url)).await.expect("answered");
        assert_eq!(response.status().as_u16(), 307);
        server.join().expect("server");
    }
}

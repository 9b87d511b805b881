//! The embedded app in this process: opened ([`EmbeddedApp`]) or serving ([`Server`]).

use std::time::Duration;

use leadrelay::cli::signed_headers;
use leadrelay::embedded::{Embedded, Sqlite};
use leadrelay_shared::config::Config;
use leadrelay_sqlite::Counts;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{eventually, example_config, parse_config_with_env, Terminal};

/// The embedded app opened on a fresh data directory, neither serving nor working: the test
/// drives its pipeline and store itself. [`Server`] serves one.
pub struct EmbeddedApp {
    pub embedded: Embedded,
    /// What the terminal channel printed.
    pub terminal: Terminal,
    pub dir: tempfile::TempDir,
}

impl EmbeddedApp {
    pub fn open(config: Config) -> EmbeddedApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let terminal = Terminal::default();
        let embedded =
            Embedded::open(config, dir.path(), Box::new(terminal.clone())).expect("open embedded");
        EmbeddedApp {
            embedded,
            terminal,
            dir,
        }
    }
}

/// The embedded app serving HTTP on a free loopback port with its workers running, as
/// `leadrelay serve` does, in this process: how a test starts the app unless it needs the
/// real binary ([`super::process`]) or to run the stages itself ([`EmbeddedApp`],
/// [`super::ManualPipeline`]).
pub struct Server {
    pub base: String,
    pub db: Sqlite,
    pub terminal: Terminal,
    pub config: Config,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A response: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&example_config()).await
    }

    pub async fn start_with(config_text: &str) -> Server {
        Server::start_with_env(config_text, &[]).await
    }

    /// Like [`Server::start_with`], with these environment variables visible to the config
    /// (tokens and secrets named by `*_env` keys).
    pub async fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Server {
        let EmbeddedApp {
            embedded,
            terminal,
            dir,
        } = EmbeddedApp::open(parse_config_with_env(config_text, env));
        let db = embedded.db.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            embedded
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        let server = Server {
            base,
            db,
            terminal,
            config: parse_config_with_env(config_text, env),
            http: super::http_client(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        let health = format!("{}/healthz", server.base);
        let http = server.http.clone();
        eventually(Duration::from_secs(5), "healthz", || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                let response = http.get(&health).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        server
    }

    /// The loopback port it serves on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the base URL")
    }

    /// Posts `body` to `/webhooks/{source}` with exactly these headers.
    pub async fn post(&self, source: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/webhooks/{source}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// Signs `body` for `source` with its first secret and posts it.
    pub async fn send(&self, source: &str, event_id: &str, body: &[u8]) -> Answer {
        let headers = self.signed(source, event_id, body);
        self.post(source, &headers, body).await
    }

    pub fn signed(&self, source: &str, event_id: &str, body: &[u8]) -> Vec<(String, String)> {
        let source = self.config.source(source).expect("configured source");
        signed_headers(source, event_id, body).expect("sign")
    }

    pub async fn lead(&self, lead_id: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}/leads/{lead_id}", self.base))
            .send()
            .await
            .expect("request");
        Answer {
            status: response.status().as_u16(),
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    /// Waits until the lead reaches `state` and returns its summary.
    pub async fn wait_for_state(&self, lead_id: &str, state: &str) -> Value {
        eventually(
            Duration::from_secs(10),
            &format!("lead {lead_id} {state}"),
            || async {
                let answer = self.lead(lead_id).await;
                (answer.body["state"] == state).then_some(answer.body)
            },
        )
        .await
    }

    pub async fn counts(&self) -> Counts {
        self.db.counts().await.expect("counts")
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

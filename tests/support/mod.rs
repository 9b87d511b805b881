//! Test support: an embedded leadrelay on a free loopback port with its own data directory,
//! signed requests, and polling with a deadline (never fixed sleeps).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrelay::cli::signed_headers;
use leadrelay::embedded::sqlite::Counts;
use leadrelay::embedded::{Embedded, Sqlite};
use leadrelay_shared::config::Config;
use serde_json::Value;
use tokio::sync::oneshot;

pub mod runtime_api;
pub mod smtp;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The example configuration that `make run` uses, exactly as shipped.
pub fn shipped_example_config() -> String {
    std::fs::read_to_string(root().join("config/leadrelay.toml")).expect("example config")
}

/// The example configuration as text to adjust per test, with working hours, holidays and
/// leave taken out: tests that run on the real clock must not depend on the hour they run at.
/// (Hours are covered by the routing tests, which hold the clock.)
pub fn example_config() -> String {
    shipped_example_config()
        .lines()
        .filter(|line| {
            let key = line.trim_start();
            !(key.starts_with("hours =")
                || key.starts_with("holidays =")
                || key.starts_with("out_of_office ="))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `config` with `[pipeline] retry_schedule` set to `steps` and `max_receives` to
/// `max_receives`: tests must not wait the shipped schedule's seconds and hours for a retry.
pub fn with_retry_schedule(config: &str, steps: &[&str], max_receives: u32) -> String {
    let schedule = steps
        .iter()
        .map(|step| format!("{step:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    config
        .lines()
        .map(|line| {
            if line.starts_with("retry_schedule =") {
                format!("retry_schedule = [{schedule}]")
            } else if line.starts_with("max_receives =") {
                format!("max_receives = {max_receives}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Tom Baker of Initech UK (340 employees, GB; EMEA's territory), asking for a quote: a lead
/// as the enrich stage leaves it, for tests that drive the route and notify stages directly.
pub fn initech_lead(
    id: &str,
    email: &str,
    captured_at: jiff::Timestamp,
) -> leadrelay_shared::model::Lead {
    use leadrelay_shared::model::{CaptureEvent, Enrichment, EventKind, Lead, LeadState};
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        timestamp: Some(captured_at),
        captured_email: Some(email.into()),
        name: Some("Tom Baker".into()),
        trigger_query: Some("Can we get a quote?".into()),
        ..CaptureEvent::default()
    };
    let mut lead = Lead::captured(
        id.into(),
        format!("trace-{id}"),
        "website".into(),
        format!("evt-{id}"),
        capture,
        Vec::new(),
        captured_at,
    );
    lead.state = LeadState::Enriched;
    lead.enrichment = Some(Enrichment {
        domain: Some("initech.co.uk".into()),
        company: Some("Initech UK".into()),
        employees: Some(340),
        country: Some("GB".into()),
        ..Enrichment::default()
    });
    lead
}

/// A sample webhook body from `events/webhooks/`.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("events/webhooks").join(name)).expect("sample event")
}

pub fn parse_config(text: &str) -> Config {
    Config::parse(text, "test.toml", &|_| None).expect("test config is valid")
}

/// Parses with these environment variables visible to `*_env` keys.
pub fn parse_config_with_env(text: &str, env: &[(&str, &str)]) -> Config {
    Config::parse(text, "test.toml", &|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("test config is valid")
}

/// Polls `check` every 10 ms until it yields a value or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Collects what the terminal notifier prints.
#[derive(Clone, Default)]
pub struct Terminal(Arc<Mutex<Vec<u8>>>);

impl Write for Terminal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Terminal {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }

    /// How many alerts mention this lead id.
    pub fn alerts_for(&self, lead_id: &str) -> usize {
        self.text()
            .matches(&format!("Lead id: {lead_id}\n"))
            .count()
    }
}

/// An embedded leadrelay serving on a free loopback port.
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
        let dir = tempfile::tempdir().expect("temp dir");
        let terminal = Terminal::default();
        let embedded = Embedded::open(
            parse_config_with_env(config_text, env),
            dir.path(),
            Box::new(terminal.clone()),
        )
        .expect("open embedded");
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
            http: reqwest::Client::new(),
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

/// The real `leadrelay` binary as a child process, for crash and log tests.
pub mod process {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::{eventually, root};

    /// `target/debug/leadrelay`, built by `make test` before the tests run.
    pub fn binary() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let binary = target.join("debug/leadrelay");
        assert!(
            binary.exists(),
            "{} is missing: run `make test` (it builds the binary first)",
            binary.display()
        );
        binary
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// `leadrelay serve` on 127.0.0.1:`port`, stdout discarded, stderr appended to `log`.
    pub fn spawn_serve(
        config: &Path,
        data_dir: &Path,
        port: u16,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn leadrelay serve")
    }

    pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
        eventually(Duration::from_secs(20), "healthz", || async {
            let response = http.get(format!("{base}/healthz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }
}

/// The AWS adapters against moto server (started by `make test` through scripts/with-moto.sh).
pub mod aws {
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_dynamodb::config::Credentials;
    use leadrelay_aws::provision::{create_queues, create_table};
    use leadrelay_aws::{DynamoStore, QueueUrls, SqsQueues};

    /// A moto server to talk to.
    pub struct Moto {
        pub sdk: SdkConfig,
        pub endpoint: String,
    }

    /// A fresh table and fresh queues (unique names), ready for the adapters.
    pub struct Deployment {
        pub table: String,
        pub urls: QueueUrls,
        pub store: DynamoStore,
        pub queues: SqsQueues,
    }

    /// Connects to the moto server named by LEADRELAY_MOTO_URL, with fixed dummy credentials
    /// (the credential chain never probes a metadata address).
    pub async fn moto() -> Moto {
        let endpoint = std::env::var("LEADRELAY_MOTO_URL").unwrap_or_else(|_| {
            panic!(
                "LEADRELAY_MOTO_URL is not set: run the suite with `make test`, which installs \
                 and starts moto server (or scripts/with-moto.sh cargo test)"
            )
        });
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await;
        Moto { sdk, endpoint }
    }

    impl Moto {
        pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
            aws_sdk_dynamodb::Client::new(&self.sdk)
        }

        pub fn sqs(&self) -> aws_sdk_sqs::Client {
            aws_sdk_sqs::Client::new(&self.sdk)
        }

        pub fn ssm(&self) -> aws_sdk_ssm::Client {
            aws_sdk_ssm::Client::new(&self.sdk)
        }

        pub async fn deploy(&self, max_receives: u32, visibility_secs: u32) -> Deployment {
            let name = format!("leadrelay-{}", uuid::Uuid::new_v4().simple());
            create_table(&self.dynamodb(), &name).await.expect("table");
            let urls = create_queues(&self.sqs(), &name, max_receives, visibility_secs)
                .await
                .expect("queues");
            Deployment {
                store: DynamoStore::new(self.dynamodb(), &name),
                queues: SqsQueues::new(self.sqs(), urls.clone()),
                table: name,
                urls,
            }
        }
    }
}

//! The embedded server under sustained load on loopback, with Slack on.
//!
//! For each offered rate it starts the real `leadrelay serve` as a child process over a fresh
//! data directory, with every rep and queue alerted in Slack through a local stand-in (the
//! load generator, this process, is never the server). It offers signed webhooks at a fixed
//! rate with a bounded number of requests in flight, waits until the queues have drained, stops
//! the server and reads every lead's timeline once from its store. It prints the accepted rate,
//! the webhook→202 latency the client saw, capture→alert latency (the alert's delivery to
//! Slack, as the server recorded it), the drain rate through every stage, peak RSS and CPU.
//!
//! Beside those, a baseline from the same run: the same generator against a floor server (this
//! bench re-run as a process that answers 202 without doing anything), so a reader can tell the
//! machine's speed from the pipeline's. It prints figures; it asserts no timing.
//!
//! `cargo bench -p leadrelay --bench embedded_load`; `LOAD_RATES` (webhooks/s, comma-separated,
//! default 1000,1500,2000) and `LOAD_SECONDS` (default 10) change the offered load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use jiff::Timestamp;
use leadrelay::cli::signed_headers;
use leadrelay_shared::config::{Config, SourceConfig};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const DEFAULT_RATES: &str = "1000,1500,2000";
const DEFAULT_SECONDS: f64 = 10.0;
/// Never offer more than this many webhooks in one run, whatever the environment says.
const MAX_WEBHOOKS: f64 = 1_000_000.0;
/// Webhooks in flight at once; when all are taken, the next send waits (and is counted late).
const IN_FLIGHT: usize = 64;
/// A send that could not start within this of its slot is counted as late.
const LATE_AFTER: Duration = Duration::from_millis(5);
/// Sending stops this long after the offered window even if the generator fell behind.
const SEND_GRACE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long the queues may take to drain after the last send before the run is cut off.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
const DRAIN_POLL: Duration = Duration::from_millis(100);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const SOURCE: &str = "website";
/// The argument that turns this bench into the baseline's floor server.
const FLOOR_ARG: &str = "--floor-server";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == FLOOR_ARG) {
        let address = args.get(at + 1).cloned().unwrap_or_default();
        if let Err(error) = floor_server(&address) {
            eprintln!("floor server failed: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a load run has no
    // place in a test run.
    if !args.iter().any(|arg| arg == "--bench") {
        println!(
            "embedded_load: skipped (run it with `cargo bench -p leadrelay --bench embedded_load`)"
        );
        return;
    }
    if let Err(error) = run() {
        eprintln!("embedded_load failed: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let seconds = env_number("LOAD_SECONDS", DEFAULT_SECONDS)?;
    let rates = env_rates()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config_path = root.join("config/leadrelay.toml");
    let config =
        Config::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let source = config
        .source(SOURCE)
        .with_context(|| format!("no source {SOURCE:?} in {}", config_path.display()))?;
    let bodies = sample_events(&root.join("events/webhooks"))?;
    let slack = SlackStandIn::start()?;
    let config_text = with_slack(&config_path, &slack.base)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let http = leadrelay_https::client(|builder| {
        builder
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(IN_FLIGHT)
    })
    .context("building the HTTP client")?;

    let mut summary = Vec::new();
    for rate in rates {
        let plan = Plan::new(rate, seconds)?;
        // The baseline first, at the same rate: the floor server does no work at all.
        let floor = {
            let mut floor = Server::floor()?;
            runtime.block_on(async {
                floor.wait_ready(&http, "/healthz").await?;
                drive(&http, &floor.base, source, &bodies, &plan).await
            })?
        };
        let mut server = Server::start(&config_text)?;
        slack.reset();
        let generator_cpu_before = cpu_seconds("self");
        let load = runtime.block_on(async {
            server.wait_ready(&http, "/healthz").await?;
            drive(&http, &server.base, source, &bodies, &plan).await
        })?;
        let generator_cpu = cpu_seconds("self")
            .zip(generator_cpu_before)
            .map(|(after, before)| after - before);
        let drained = server.wait_drained();
        let peak_rss_kib = server.peak_rss_kib();
        let server_cpu = cpu_seconds(&server.pid.to_string());
        let server_threads = cpu_by_thread(server.pid);
        let exit = server.stop();
        let logs = server.log_counts();
        let leads = server.read_leads()?;
        let report = Report {
            plan: &plan,
            samples: bodies.len(),
            load: &load,
            floor: &floor,
            leads: &leads,
            drained,
            slack_posts: slack.posts(),
            peak_rss_kib,
            server_cpu,
            server_threads,
            generator_cpu,
            exit,
            logs,
        };
        summary.push(report.print());
        if !drained {
            eprintln!("server log (last lines):\n{}", server.stderr_tail(20));
        }
    }
    println!();
    println!("summary (Slack on; baseline = the same generator against a 202-only floor server, same run)");
    println!(
        "  {:>8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "offered",
        "accepted",
        "drained",
        "alert p50",
        "alert p99",
        "202 p99",
        "floor p99",
        "peak RSS"
    );
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

fn env_rates() -> anyhow::Result<Vec<f64>> {
    let text = std::env::var("LOAD_RATES")
        .or_else(|_| std::env::var("LOAD_RATE"))
        .unwrap_or_else(|_| DEFAULT_RATES.to_owned());
    text.split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0)
                .with_context(|| format!("LOAD_RATES: {r:?} is not a positive number"))
        })
        .collect()
}

fn env_number(name: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(text) => {
            let value: f64 = text
                .trim()
                .parse()
                .with_context(|| format!("{name}={text:?} is not a number"))?;
            if !value.is_finite() || value <= 0.0 {
                bail!("{name} must be a positive number, not {text:?}");
            }
            Ok(value)
        }
        Err(_) => Ok(default),
    }
}

/// The sample capture events, in file-name order.
fn sample_events(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no sample events in {}", dir.display());
    }
    files
        .iter()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .collect()
}

/// The sample with its address made unique (`load17.jane@acme...`): the same person writing
/// again within the merge window would be merged into their open lead, a shorter path than the
/// one this bench measures. The domain, and so the company, stays the same.
fn as_new_person(body: &[u8], k: usize) -> anyhow::Result<Vec<u8>> {
    let mut event: serde_json::Value =
        serde_json::from_slice(body).context("a sample event is not JSON")?;
    if let Some(email) = event.get("captured_email").and_then(|e| e.as_str()) {
        event["captured_email"] = format!("load{k}.{email}").into();
    }
    serde_json::to_vec(&event).context("writing the sample event")
}

/// The `leadrelay serve` child process (or the floor server), its directory and its log.
struct Server {
    child: Option<Child>,
    pid: u32,
    base: String,
    stderr_path: PathBuf,
    data_dir: PathBuf,
    /// Declared last: removed after `drop` has stopped the child.
    _dir: tempfile::TempDir,
}

impl Server {
    /// `leadrelay serve` with `config_text` over a fresh data directory.
    fn start(config_text: &str) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("leadrelay-load-")
            .tempdir()
            .context("creating the temporary directory")?;
        let config = dir.path().join("leadrelay.toml");
        std::fs::write(&config, config_text).context("writing the configuration")?;
        let data_dir = dir.path().join("data");
        let address = format!("127.0.0.1:{}", free_port()?);
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadrelay"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(&address)
            .arg("--data-dir")
            .arg(&data_dir);
        Server::spawn(command, dir, data_dir, address)
    }

    /// This bench re-run as the floor server: it answers every request 202 and does nothing.
    fn floor() -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("leadrelay-floor-")
            .tempdir()
            .context("creating the temporary directory")?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let mut command =
            Command::new(std::env::current_exe().context("finding the bench's own binary")?);
        command.arg(FLOOR_ARG).arg(&address);
        let data_dir = dir.path().join("data");
        Server::spawn(command, dir, data_dir, address)
    }

    fn spawn(
        mut command: Command,
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        address: String,
    ) -> anyhow::Result<Server> {
        let stderr_path = dir.path().join("server.log");
        let stderr = File::create(&stderr_path).context("creating the server log")?;
        let child = command
            .env("RUST_LOG", "warn")
            .env_remove("LEADRELAY_LOG_FORMAT")
            .stdin(Stdio::null())
            // The terminal notifier writes every alert to stdout.
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting the server process")?;
        Ok(Server {
            pid: child.id(),
            child: Some(child),
            base: format!("http://{address}"),
            stderr_path,
            data_dir,
            _dir: dir,
        })
    }

    async fn wait_ready(&mut self, http: &reqwest::Client, path: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("{}{path}", self.base);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the server exited with {status} before answering {path}:\n{}",
                    self.stderr_tail(20)
                );
            }
            let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
            if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "{path} did not answer 200 within {READY_DEADLINE:?}:\n{}",
                    self.stderr_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no lead is left mid-pipeline: every lead is notified, held for the
    /// opening (after-hours `hold`), or further on. Reads the store's file from this process
    /// (one indexed count per poll), so the server answers no polling requests.
    fn wait_drained(&self) -> bool {
        let path = self.data_dir.join("leadrelay.db");
        let started = Instant::now();
        while started.elapsed() < DRAIN_DEADLINE {
            let left = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM leads WHERE state IN ('captured', 'enriched')
                       OR (state = 'routed'
                           AND json_extract(body, '$.assignment.held_until') IS NULL)",
                    [],
                    |row| row.get::<_, i64>(0),
                )
            });
            if left.is_ok_and(|n| n == 0) {
                return true;
            }
            std::thread::sleep(DRAIN_POLL);
        }
        false
    }

    /// Every lead's timeline, read once from the stopped server's store.
    fn read_leads(&self) -> anyhow::Result<Vec<LeadTimes>> {
        let conn = rusqlite::Connection::open_with_flags(
            self.data_dir.join("leadrelay.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .context("opening the server's store")?;
        let mut statement = conn.prepare("SELECT body FROM leads")?;
        let bodies = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies
            .iter()
            .map(|body| {
                let lead: Value = serde_json::from_str(body).context("a stored lead")?;
                Ok(LeadTimes::read(&lead))
            })
            .collect()
    }

    /// `VmHWM` from /proc: the most resident memory the server ever had.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it lingers; always reaps the child.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let asked = Instant::now();
        while asked.elapsed() < STOP_DEADLINE {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// (warnings, errors) in the server's log.
    fn log_counts(&self) -> (usize, usize) {
        let Ok(file) = File::open(&self.stderr_path) else {
            return (0, 0);
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .fold((0, 0), |(warn, error), line| {
                (
                    warn + usize::from(line.contains("WARN")),
                    error + usize::from(line.contains("ERROR")),
                )
            })
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The floor server: `GET /healthz` and every `POST` answered at once, 202 with a lead id.
fn floor_server(address: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the floor server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        let next = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(axum::routing::post(move || {
                let id = next.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        axum::http::StatusCode::ACCEPTED,
                        axum::Json(
                            serde_json::json!({"lead_id": id.to_string(), "status": "accepted"}),
                        ),
                    )
                }
            }));
        axum::serve(listener, app).await.context("serving")
    })
}

/// Slack as the pipeline sees it: an incoming-webhook endpoint per rep and queue on loopback,
/// in its own thread, answering `ok` and counting posts per recipient and lead (the lead from
/// the Claim button's value).
struct SlackStandIn {
    base: String,
    posts: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl SlackStandIn {
    fn start() -> anyhow::Result<SlackStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the Slack stand-in")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let posts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let counted = posts.clone();
        std::thread::Builder::new()
            .name("slack-stand-in".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(axum::routing::post(
                        move |uri: axum::http::Uri, body: axum::body::Bytes| {
                            let counted = counted.clone();
                            async move {
                                let lead = serde_json::from_slice::<Value>(&body)
                                    .ok()
                                    .and_then(|post| claim_value(&post))
                                    .unwrap_or_else(|| "?".into());
                                // One alert per recipient and lead; a second is a repeat.
                                *counted
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .entry(format!("{} {lead}", uri.path()))
                                    .or_insert(0) += 1;
                                "ok"
                            }
                        },
                    ));
                    let _ = axum::serve(listener, app).await;
                });
            })
            .context("starting the Slack stand-in")?;
        Ok(SlackStandIn { base, posts })
    }

    fn reset(&self) {
        self.posts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// (posts, distinct recipient-and-lead pairs).
    fn posts(&self) -> (usize, usize) {
        let posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        (posts.values().sum(), posts.len())
    }
}

/// The lead id a Slack alert carries in its action buttons, if any.
fn claim_value(post: &Value) -> Option<String> {
    post["blocks"].as_array()?.iter().find_map(|block| {
        block["elements"]
            .as_array()?
            .iter()
            .find_map(|element| element["value"].as_str().map(str::to_owned))
    })
}

/// The shipped example configuration with every rep and queue alerted in Slack through the
/// stand-in, and Slack's per-webhook rate limit off (the stand-in has none; at 1,000 leads/s
/// no real Slack workspace would take one post per second per rep either). Working hours,
/// holidays and leave are taken out, as the tests do: otherwise the hour the bench runs at
/// decides how many alerts are held for the opening instead of sent.
fn with_slack(config_path: &Path, slack_base: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let mut config: toml::Table = text.parse().context("parsing the example configuration")?;
    for list in ["reps", "queues"] {
        let Some(entries) = config.get_mut(list).and_then(|v| v.as_array_mut()) else {
            bail!("the example configuration has no [[{list}]]");
        };
        for entry in entries.iter_mut() {
            let Some(table) = entry.as_table_mut() else {
                bail!("a [[{list}]] entry is not a table");
            };
            let id = table
                .get("id")
                .and_then(|v| v.as_str())
                .context("a rep or queue without an id")?
                .to_owned();
            for key in ["hours", "holidays", "out_of_office"] {
                table.remove(key);
            }
            table.insert(
                "slack_webhook_url".into(),
                format!("{slack_base}/services/{id}").into(),
            );
        }
    }
    if let Some(teams) = config.get_mut("teams").and_then(|v| v.as_array_mut()) {
        for team in teams.iter_mut().filter_map(|t| t.as_table_mut()) {
            for key in ["hours", "holidays"] {
                team.remove(key);
            }
        }
    }
    let notify = config
        .entry("notify")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .context("[notify] is not a table")?;
    let rates = notify
        .entry("rates")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .context("[notify.rates] is not a table")?;
    rates.insert("slack".into(), 0.into());
    toml::to_string(&config).context("writing the configuration")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now (the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// (command name, user seconds, system seconds) from a /proc `stat` file.
fn cpu_times(stat_path: &str) -> Option<(String, f64, f64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    // The fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| {
        let per_second = per_second as f64;
        (
            name.to_owned(),
            user as f64 / per_second,
            system as f64 / per_second,
        )
    })
}

/// User + system CPU seconds of a process (`self` or a pid).
fn cpu_seconds(pid: &str) -> Option<f64> {
    cpu_times(&format!("/proc/{pid}/stat")).map(|(_, user, system)| user + system)
}

/// A process's CPU time by thread name (tokio workers, the SQLite committer, ...), busiest first.
fn cpu_by_thread(pid: u32) -> Vec<(String, f64, f64)> {
    let mut by_name: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.filter_map(Result::ok) {
        let path = task.path().join("stat");
        if let Some((name, user, system)) = path.to_str().and_then(cpu_times) {
            let entry = by_name.entry(name).or_default();
            entry.0 += user;
            entry.1 += system;
        }
    }
    let mut threads: Vec<(String, f64, f64)> = by_name
        .into_iter()
        .map(|(name, (user, system))| (name, user, system))
        .collect();
    threads.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
    threads
}

struct Plan {
    rate: f64,
    window: Duration,
    total: usize,
}

impl Plan {
    fn new(rate: f64, seconds: f64) -> anyhow::Result<Plan> {
        let total = (rate * seconds).round();
        if !(1.0..=MAX_WEBHOOKS).contains(&total) {
            bail!(
                "rate × LOAD_SECONDS must give between 1 and {MAX_WEBHOOKS} webhooks, not {total}"
            );
        }
        Ok(Plan {
            rate,
            window: Duration::from_secs_f64(seconds),
            total: total as usize,
        })
    }
}

/// One webhook's answer as the client saw it.
struct Answer {
    /// `None` when the request failed before an HTTP answer (connect error, timeout).
    status: Option<u16>,
    latency: Duration,
    /// When the answer arrived, since the first send.
    answered_at: Duration,
}

struct Load {
    answers: Vec<Answer>,
    /// Webhooks never sent because the generator ran past the window and its grace.
    skipped: usize,
    /// Sends that started more than `LATE_AFTER` after their slot (every in-flight slot taken).
    late: usize,
    transport_errors: BTreeMap<String, usize>,
}

/// Offers `plan.total` signed webhooks at `plan.rate` per second, at most `IN_FLIGHT` at once.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    source: &SourceConfig,
    bodies: &[Vec<u8>],
    plan: &Plan,
) -> anyhow::Result<Load> {
    let url = Arc::new(format!("{base}/webhooks/{}", source.id));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks: JoinSet<Result<Answer, String>> = JoinSet::new();
    let mut answers = Vec::with_capacity(plan.total);
    let mut transport_errors = BTreeMap::new();
    let mut collect = |done: Result<Result<Answer, String>, tokio::task::JoinError>| match done {
        Ok(Ok(answer)) => answers.push(answer),
        Ok(Err(error)) => *transport_errors.entry(error).or_insert(0) += 1,
        Err(error) => {
            *transport_errors
                .entry(format!("task failed: {error}"))
                .or_insert(0) += 1
        }
    };
    let (mut skipped, mut late) = (0, 0);
    let start = tokio::time::Instant::now();
    let stop_sending = start + plan.window + SEND_GRACE;

    for k in 0..plan.total {
        let slot = start + Duration::from_secs_f64(k as f64 / plan.rate);
        tokio::time::sleep_until(slot).await;
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .context("the semaphore closed")?;
        let now = tokio::time::Instant::now();
        if now > stop_sending {
            skipped = plan.total - k;
            break;
        }
        if now.duration_since(slot) > LATE_AFTER {
            late += 1;
        }
        let body = as_new_person(&bodies[k % bodies.len()], k)?;
        let headers = signed_headers(source, &format!("msg_load_{run}_{k}"), &body)?;
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let mut request = http
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let sent = Instant::now();
            let response = request.send().await.map_err(|e| transport_error(&e))?;
            let status = response.status().as_u16();
            // The whole answer is read, as a sender would.
            let _ = response.bytes().await;
            let latency = sent.elapsed();
            Ok(Answer {
                status: Some(status),
                latency,
                answered_at: start.elapsed(),
            })
        });
        while let Some(done) = tasks.try_join_next() {
            collect(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(done);
    }
    Ok(Load {
        answers,
        skipped,
        late,
        transport_errors,
    })
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect error".into()
    } else {
        format!("transport error: {error}")
    }
}

/// The timestamps the server recorded for one lead.
struct LeadTimes {
    captured: Option<Timestamp>,
    enriched: Option<Timestamp>,
    routed: Option<Timestamp>,
    notified: Option<Timestamp>,
    /// After-hours `hold`: the alert waits for the opening, by design.
    held: bool,
}

impl LeadTimes {
    fn read(lead: &Value) -> LeadTimes {
        let at =
            |field: &str| -> Option<Timestamp> { lead["timeline"][field].as_str()?.parse().ok() };
        LeadTimes {
            captured: at("captured_at"),
            enriched: at("enriched_at"),
            routed: at("routed_at"),
            notified: at("notified_at"),
            held: lead["assignment"]["held_until"].is_string(),
        }
    }
}

/// `to - from` as a (non-negative) `Duration`.
fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_secs_f64(to.duration_since(from).as_secs_f64().max(0.0))
}

struct Report<'a> {
    plan: &'a Plan,
    samples: usize,
    load: &'a Load,
    /// The same generator against the floor server, at the same rate.
    floor: &'a Load,
    leads: &'a [LeadTimes],
    drained: bool,
    /// (posts, distinct recipient-and-lead pairs) the Slack stand-in received.
    slack_posts: (usize, usize),
    peak_rss_kib: Option<u64>,
    server_cpu: Option<f64>,
    /// (thread name, user s, system s), busiest first; threads that ended are not counted.
    server_threads: Vec<(String, f64, f64)>,
    generator_cpu: Option<f64>,
    exit: Option<ExitStatus>,
    logs: (usize, usize),
}

/// The answers by status (and transport errors), and the 202s' latencies.
fn answers(load: &Load) -> (String, Vec<Duration>, Duration) {
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for answer in &load.answers {
        if let Some(status) = answer.status {
            *by_status.entry(status).or_insert(0) += 1;
        }
    }
    let mut line: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    line.extend(
        load.transport_errors
            .iter()
            .map(|(e, n)| format!("{e}: {n}")),
    );
    let accepted: Vec<&Answer> = load
        .answers
        .iter()
        .filter(|a| a.status == Some(202))
        .collect();
    let window = accepted
        .iter()
        .map(|a| a.answered_at)
        .max()
        .unwrap_or_default();
    (
        line.join(", "),
        accepted.iter().map(|a| a.latency).collect(),
        window,
    )
}

impl Report<'_> {
    /// Prints the run's figures; returns its line for the summary table.
    fn print(&self) -> String {
        let (answers_line, mut webhook_latency, accept_window) = answers(self.load);
        let (floor_line, mut floor_latency, floor_window) = answers(self.floor);
        let accepted = webhook_latency.len();
        let sent = self.plan.total - self.load.skipped;
        let alerted: Vec<&LeadTimes> = self.leads.iter().filter(|l| l.notified.is_some()).collect();
        let held = self
            .leads
            .iter()
            .filter(|l| l.held && l.notified.is_none())
            .count();
        let span = |from: fn(&LeadTimes) -> Option<Timestamp>,
                    to: fn(&LeadTimes) -> Option<Timestamp>|
         -> Vec<Duration> {
            self.leads
                .iter()
                .filter(|l| !l.held)
                .filter_map(|l| Some(between(from(l)?, to(l)?)))
                .collect()
        };
        let mut to_alert = span(|l| l.captured, |l| l.notified);
        let mut to_enriched = span(|l| l.captured, |l| l.enriched);
        let mut to_routed = span(|l| l.enriched, |l| l.routed);
        let mut routed_to_alert = span(|l| l.routed, |l| l.notified);
        // Drain: leads through every stage (alerted, or routed and held) per second, from
        // the first capture to the last of them leaving the pipeline.
        let first_capture = self.leads.iter().filter_map(|l| l.captured).min();
        let last_out = self
            .leads
            .iter()
            .filter_map(|l| if l.held { l.routed } else { l.notified })
            .max();
        let through = alerted.len() + held;
        let drain = first_capture
            .zip(last_out)
            .map(|(first, last)| rate(through, last.duration_since(first).as_secs_f64()));

        let row = |label: &str, value: String| println!("  {label:<24} {value}");
        println!();
        println!(
            "embedded load, Slack on: leadrelay serve on 127.0.0.1, {} in flight, {} sample events, {} CPUs",
            IN_FLIGHT,
            self.samples,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        row(
            "offered",
            format!(
                "{:.0} webhooks/s for {:.1} s ({} webhooks)",
                self.plan.rate,
                self.plan.window.as_secs_f64(),
                self.plan.total
            ),
        );
        row(
            "sent",
            format!(
                "{sent} ({} skipped past the window, {} late by > {} ms: all {IN_FLIGHT} slots busy)",
                self.load.skipped,
                self.load.late,
                LATE_AFTER.as_millis()
            ),
        );
        row("answers", answers_line);
        row(
            "accepted rate",
            format!(
                "{:.1} leads/s ({accepted} in {:.2} s, first send to last 202)",
                rate(accepted, accept_window.as_secs_f64()),
                accept_window.as_secs_f64()
            ),
        );
        row("webhook → 202", percentiles(&mut webhook_latency.clone()));
        row(
            "  baseline: floor → 202",
            format!(
                "{} ({floor_line}; {:.1}/s)",
                percentiles(&mut floor_latency.clone()),
                rate(floor_latency.len(), floor_window.as_secs_f64())
            ),
        );
        row("capture → Slack alert", percentiles(&mut to_alert.clone()));
        row("  capture → enriched", percentiles(&mut to_enriched));
        row("  enriched → routed", percentiles(&mut to_routed));
        row("  routed → alerted", percentiles(&mut routed_to_alert));
        row(
            "through the pipeline",
            format!(
                "{} alerted + {held} held for the opening (after-hours hold) of {} stored; {}",
                alerted.len(),
                self.leads.len(),
                if self.drained {
                    "drained".to_owned()
                } else {
                    format!("NOT drained within {} s", DRAIN_DEADLINE.as_secs())
                }
            ),
        );
        row(
            "drain rate",
            drain.map_or("n/a".into(), |d| {
                format!("{d:.1} leads/s through every stage (first capture to the last out)")
            }),
        );
        row(
            "Slack posts",
            format!(
                "{} ({} distinct recipient and lead; {} repeated)",
                self.slack_posts.0,
                self.slack_posts.1,
                self.slack_posts.0.saturating_sub(self.slack_posts.1)
            ),
        );
        row(
            "server peak RSS",
            self.peak_rss_kib.map_or("n/a".into(), |kib| {
                format!("{:.1} MiB (VmHWM)", kib as f64 / 1024.0)
            }),
        );
        row(
            "CPU time",
            format!(
                "server {}, load generator {}",
                cpu_text(self.server_cpu, accepted),
                cpu_text(self.generator_cpu, accepted)
            ),
        );
        row(
            "server CPU by thread",
            self.server_threads
                .iter()
                .map(|(name, user, system)| format!("{name} {user:.2} s user + {system:.2} s sys"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row(
            "server",
            format!(
                "{} after SIGTERM; log: {} warnings, {} errors",
                self.exit.map_or("no exit status".into(), |s| s.to_string()),
                self.logs.0,
                self.logs.1
            ),
        );
        let ms = |values: &mut Vec<Duration>, p: f64| {
            percentile(values, p)
                .map_or("n/a".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        };
        format!(
            "  {:>8.0} {:>10.1} {:>10} {:>12} {:>12} {:>12} {:>12} {:>9}",
            self.plan.rate,
            rate(accepted, accept_window.as_secs_f64()),
            drain.map_or("n/a".into(), |d| format!("{d:.1}")),
            ms(&mut to_alert, 50.0),
            ms(&mut to_alert, 99.0),
            ms(&mut webhook_latency, 99.0),
            ms(&mut floor_latency, 99.0),
            self.peak_rss_kib.map_or("n/a".into(), |kib| format!(
                "{:.1} MiB",
                kib as f64 / 1024.0
            )),
        )
    }
}

/// The nearest-rank percentile.
fn percentile(values: &mut [Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn cpu_text(seconds: Option<f64>, leads: usize) -> String {
    match seconds {
        Some(s) if leads > 0 => format!("{s:.2} s ({:.0} µs/lead)", s * 1e6 / leads as f64),
        Some(s) => format!("{s:.2} s"),
        None => "n/a".into(),
    }
}

/// p50/p95/p99/max by nearest rank, in milliseconds.
fn percentiles(values: &mut [Duration]) -> String {
    if values.is_empty() {
        return "n/a".into();
    }
    let mut ms = |p: f64| percentile(values, p).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let (p50, p95, p99, max) = (ms(50.0), ms(95.0), ms(99.0), ms(100.0));
    format!("p50 {p50:>8.2} ms   p95 {p95:>8.2} ms   p99 {p99:>8.2} ms   max {max:>8.2} ms")
}

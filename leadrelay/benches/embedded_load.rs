//! The embedded server under sustained load on loopback.
//!
//! Starts the real `leadrelay serve` as a child process over a fresh data directory, offers
//! signed webhooks at a fixed rate with a bounded number of requests in flight, waits until
//! every accepted lead is notified, and prints the accepted rate, the webhook→202 latency seen
//! by the client, the capture→notify latency the server recorded, the end-to-end throughput and
//! the server's peak RSS. It prints figures; it asserts no timing.
//!
//! `cargo bench -p leadrelay --bench embedded_load`; `LOAD_RATE` (webhooks/s, default 2000) and
//! `LOAD_SECONDS` (default 10) change the offered load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::stream::{self, StreamExt as _};
use jiff::Timestamp;
use leadrelay::cli::signed_headers;
use leadrelay_shared::config::{Config, SourceConfig};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const DEFAULT_RATE: f64 = 2_000.0;
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
const NOTIFY_DEADLINE: Duration = Duration::from_secs(60);
const POLL_CONCURRENCY: usize = 8;
const POLL_PAUSE: Duration = Duration::from_millis(200);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const SOURCE: &str = "website";

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a 10-second load run
    // has no place in a test run.
    if !std::env::args().any(|arg| arg == "--bench") {
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
    let rate = env_number("LOAD_RATE", DEFAULT_RATE)?;
    let seconds = env_number("LOAD_SECONDS", DEFAULT_SECONDS)?;
    let total = (rate * seconds).round();
    if !(1.0..=MAX_WEBHOOKS).contains(&total) {
        bail!(
            "LOAD_RATE × LOAD_SECONDS must give between 1 and {MAX_WEBHOOKS} webhooks, not {total}"
        );
    }
    let plan = Plan {
        rate,
        window: Duration::from_secs_f64(seconds),
        total: total as usize,
    };

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config_path = root.join("config/leadrelay.toml");
    let config =
        Config::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let source = config
        .source(SOURCE)
        .with_context(|| format!("no source {SOURCE:?} in {}", config_path.display()))?;
    let bodies = sample_events(&root.join("events/webhooks"))?;

    // The server stops and its directory goes when `server` is dropped, on every path out.
    let mut server = Server::start(&config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let generator_cpu_before = cpu_seconds("self");
    let (load, follow) = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .context("building the HTTP client")?;
        server.wait_ready(&http).await?;
        let load = drive(&http, &server.base, source, &bodies, &plan).await?;
        let ids: Vec<String> = load
            .answers
            .iter()
            .filter_map(|a| a.lead_id.clone())
            .collect();
        let follow = follow_leads(&http, &server.base, ids).await;
        anyhow::Ok((load, follow))
    })?;
    let generator_cpu = cpu_seconds("self")
        .zip(generator_cpu_before)
        .map(|(after, before)| after - before);
    let peak_rss_kib = server.peak_rss_kib();
    let server_cpu = cpu_seconds(&server.pid.to_string());
    let server_threads = cpu_by_thread(server.pid);
    let exit = server.stop();
    let logs = server.log_counts();

    report(&Report {
        plan: &plan,
        samples: bodies.len(),
        load: &load,
        follow: &follow,
        peak_rss_kib,
        server_cpu,
        server_threads,
        generator_cpu,
        exit,
        logs,
    });
    if follow.pending > 0 {
        eprintln!("server log (last lines):\n{}", server.stderr_tail(20));
    }
    Ok(())
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

/// The `leadrelay serve` child process, its temporary directory and its log.
struct Server {
    child: Option<Child>,
    pid: u32,
    base: String,
    stderr_path: PathBuf,
    /// Declared last: removed after `drop` has stopped the child.
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config_path: &Path) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("leadrelay-load-")
            .tempdir()
            .context("creating the temporary directory")?;
        let config = dir.path().join("leadrelay.toml");
        std::fs::copy(config_path, &config).context("copying the configuration")?;
        let data_dir = dir.path().join("data");
        let stderr_path = dir.path().join("server.log");
        let stderr = File::create(&stderr_path).context("creating the server log")?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let child = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(&address)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("LEADRELAY_LOG_FORMAT")
            .stdin(Stdio::null())
            // The terminal notifier writes every alert to stdout.
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting leadrelay serve")?;
        Ok(Server {
            pid: child.id(),
            child: Some(child),
            base: format!("http://{address}"),
            stderr_path,
            _dir: dir,
        })
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("{}/healthz", self.base);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "leadrelay serve exited with {status} before answering /healthz:\n{}",
                    self.stderr_tail(20)
                );
            }
            let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
            if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "/healthz did not answer 200 within {READY_DEADLINE:?}:\n{}",
                    self.stderr_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// One webhook's answer as the client saw it.
struct Answer {
    /// `None` when the request failed before an HTTP answer (connect error, timeout).
    status: Option<u16>,
    latency: Duration,
    /// When the answer arrived, since the first send.
    answered_at: Duration,
    lead_id: Option<String>,
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
            let answer: Option<Value> = response.json().await.ok();
            let latency = sent.elapsed();
            Ok(Answer {
                status: Some(status),
                latency,
                answered_at: start.elapsed(),
                lead_id: (status == 202)
                    .then(|| answer.as_ref()?.get("lead_id")?.as_str().map(str::to_owned))
                    .flatten(),
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

struct Follow {
    /// The timeline of every lead seen notified.
    notified: Vec<Timeline>,
    /// Accepted leads not notified by the deadline, by their last seen state.
    pending: usize,
    pending_states: BTreeMap<String, usize>,
    with_failure: usize,
    unreadable: usize,
    requests: usize,
    elapsed: Duration,
}

/// Polls `GET /leads/{id}` until every accepted lead is notified or the deadline passes.
async fn follow_leads(http: &reqwest::Client, base: &str, ids: Vec<String>) -> Follow {
    let started = Instant::now();
    let deadline = started + NOTIFY_DEADLINE;
    let mut requests = 0;
    // The queues are first in, first out: wait for the last accepted lead alone first, so the
    // bulk sweep does not compete with the pipeline for the CPU while it drains.
    if let Some(last) = ids.last() {
        while Instant::now() < deadline {
            requests += 1;
            match get_lead(http, base, last).await {
                Ok(lead) if lead["state"] == "notified" => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let mut notified = Vec::with_capacity(ids.len());
    let mut pending = ids;
    let mut pending_states = BTreeMap::new();
    let mut unreadable = 0;
    let mut with_failure;
    loop {
        requests += pending.len();
        let checks: Vec<(String, anyhow::Result<Value>)> =
            stream::iter(std::mem::take(&mut pending))
                .map(|id| async move {
                    let lead = get_lead(http, base, &id).await;
                    (id, lead)
                })
                .buffer_unordered(POLL_CONCURRENCY)
                .collect()
                .await;
        pending_states.clear();
        with_failure = 0;
        for (id, lead) in checks {
            let state = match &lead {
                Ok(lead) => lead["state"].as_str().unwrap_or("?").to_owned(),
                Err(_) => "unreadable".to_owned(),
            };
            if let (Ok(lead), "notified") = (&lead, state.as_str()) {
                match Timeline::read(lead) {
                    Some(timeline) => notified.push(timeline),
                    None => unreadable += 1,
                }
                continue;
            }
            if lead.as_ref().is_ok_and(|l| !l["last_failure"].is_null()) {
                with_failure += 1;
            }
            *pending_states.entry(state).or_insert(0) += 1;
            pending.push(id);
        }
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    Follow {
        notified,
        pending: pending.len(),
        pending_states,
        with_failure,
        unreadable,
        requests,
        elapsed: started.elapsed(),
    }
}

async fn get_lead(http: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Value> {
    let response = http.get(format!("{base}/leads/{id}")).send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET /leads/{id} answered {status}");
    }
    Ok(response.json().await?)
}

/// The timestamps the server recorded for a notified lead.
struct Timeline {
    captured: Timestamp,
    enriched: Timestamp,
    routed: Timestamp,
    notified: Timestamp,
}

impl Timeline {
    fn read(lead: &Value) -> Option<Timeline> {
        let at =
            |field: &str| -> Option<Timestamp> { lead["timeline"][field].as_str()?.parse().ok() };
        Some(Timeline {
            captured: at("captured_at")?,
            enriched: at("enriched_at")?,
            routed: at("routed_at")?,
            notified: at("notified_at")?,
        })
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
    follow: &'a Follow,
    peak_rss_kib: Option<u64>,
    server_cpu: Option<f64>,
    /// (thread name, user s, system s), busiest first; threads that ended are not counted.
    server_threads: Vec<(String, f64, f64)>,
    generator_cpu: Option<f64>,
    exit: Option<ExitStatus>,
    logs: (usize, usize),
}

fn report(r: &Report) {
    let load = r.load;
    let accepted: Vec<&Answer> = load
        .answers
        .iter()
        .filter(|a| a.status == Some(202))
        .collect();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for answer in &load.answers {
        if let Some(status) = answer.status {
            *by_status.entry(status).or_insert(0) += 1;
        }
    }
    let mut answers_line: Vec<String> =
        by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    answers_line.extend(
        load.transport_errors
            .iter()
            .map(|(e, n)| format!("{e}: {n}")),
    );
    let sent = r.plan.total - load.skipped;
    let accept_window = accepted
        .iter()
        .map(|a| a.answered_at)
        .max()
        .unwrap_or_default();

    let mut webhook_latency: Vec<Duration> = accepted.iter().map(|a| a.latency).collect();
    let leads = &r.follow.notified;
    let span = |from: fn(&Timeline) -> Timestamp,
                to: fn(&Timeline) -> Timestamp|
     -> Vec<Duration> { leads.iter().map(|t| between(from(t), to(t))).collect() };
    let mut notify_latency = span(|t| t.captured, |t| t.notified);
    let mut to_enriched = span(|t| t.captured, |t| t.enriched);
    let mut to_routed = span(|t| t.enriched, |t| t.routed);
    let mut to_notified = span(|t| t.routed, |t| t.notified);
    let first_capture = leads.iter().map(|t| t.captured).min();
    let last_notify = leads.iter().map(|t| t.notified).max();
    let e2e_span = first_capture
        .zip(last_notify)
        .map(|(first, last)| last.duration_since(first).as_secs_f64());

    let row = |label: &str, value: String| println!("  {label:<24} {value}");
    println!();
    println!(
        "embedded load: leadrelay serve on 127.0.0.1, {} in flight, {} sample events, {} CPUs",
        IN_FLIGHT,
        r.samples,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    row(
        "offered",
        format!(
            "{:.0} webhooks/s for {:.1} s ({} webhooks)",
            r.plan.rate,
            r.plan.window.as_secs_f64(),
            r.plan.total
        ),
    );
    row(
        "sent",
        format!(
            "{sent} ({} skipped past the window, {} late by > {} ms: all {IN_FLIGHT} slots busy)",
            load.skipped,
            load.late,
            LATE_AFTER.as_millis()
        ),
    );
    row("answers", answers_line.join(", "));
    row(
        "accepted rate",
        format!(
            "{:.1} leads/s ({} in {:.2} s, first send to last 202)",
            rate(accepted.len(), accept_window.as_secs_f64()),
            accepted.len(),
            accept_window.as_secs_f64()
        ),
    );
    row("webhook → 202", percentiles(&mut webhook_latency));
    row("capture → notified", percentiles(&mut notify_latency));
    row("  capture → enriched", percentiles(&mut to_enriched));
    row("  enriched → routed", percentiles(&mut to_routed));
    row("  routed → notified", percentiles(&mut to_notified));
    row(
        "notified",
        format!(
            "{} of {} accepted ({} GET /leads polls, {:.1} s after the last send)",
            r.follow.notified.len(),
            accepted.len(),
            r.follow.requests,
            r.follow.elapsed.as_secs_f64()
        ),
    );
    if r.follow.pending > 0 || r.follow.unreadable > 0 {
        row(
            "NOT notified",
            format!(
                "{} within {} s (last states {:?}, {} with a recorded failure, {} unreadable)",
                r.follow.pending,
                NOTIFY_DEADLINE.as_secs(),
                r.follow.pending_states,
                r.follow.with_failure,
                r.follow.unreadable
            ),
        );
    }
    row(
        "end-to-end throughput",
        match e2e_span {
            Some(span) => format!(
                "{:.1} leads/s notified (first capture to last notify: {:.2} s)",
                rate(r.follow.notified.len(), span),
                span
            ),
            None => "n/a (nothing notified)".into(),
        },
    );
    row(
        "server peak RSS",
        r.peak_rss_kib.map_or("n/a".into(), |kib| {
            format!("{:.1} MiB (VmHWM)", kib as f64 / 1024.0)
        }),
    );
    row(
        "CPU time",
        format!(
            "server {}, load generator {}",
            cpu_text(r.server_cpu, accepted.len()),
            cpu_text(r.generator_cpu, accepted.len())
        ),
    );
    row(
        "server CPU by thread",
        r.server_threads
            .iter()
            .map(|(name, user, system)| format!("{name} {user:.2} s user + {system:.2} s sys"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    row(
        "server",
        format!(
            "{} after SIGTERM; log: {} warnings, {} errors",
            r.exit.map_or("no exit status".into(), |s| s.to_string()),
            r.logs.0,
            r.logs.1
        ),
    );
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
    values.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:>8.2} ms   p95 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        ms(at(50.0)),
        ms(at(95.0)),
        ms(at(99.0)),
        ms(values[values.len() - 1])
    )
}

//! Cold start of the six Lambda functions, measured on this machine.
//!
//! Each function's real release `bootstrap` is started as a fresh process with the environment
//! Lambda gives it (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_*`, region, credentials, the
//! template's `LEADRELAY_*`), with `AWS_ENDPOINT_URL` pointing at moto, against a local Lambda
//! Runtime API (`support::runtime_api`). Per cold start it measures:
//!
//! - init: process spawn → the runtime's first `GET /runtime/invocation/next` (clients built,
//!   configuration and secrets read from SSM, the runtime started);
//! - first invocation: the event handed out → the response posted, with a realistic event
//!   that must succeed (checked: the answer, and the lead's state in the table);
//! - peak RSS (`VmHWM` from /proc before the process is stopped) and CPU time (user + system
//!   of every thread, from `wait4` once it is stopped).
//!
//! Every run builds a fresh deployment on moto (table, queues) and drives one lead through
//! the chain as AWS would: ingest gets a signed webhook (API Gateway HTTP API v2 event); the
//! enrich, route and notify functions each get the SQS event of the message the previous
//! function sent; claim gets a signed claim link for the lead's owner; sla gets the scheduled
//! event with one lead past its deadline (brought there in this process by the same adapters,
//! on a clock half an hour back). Slack is a local stand-in; nothing leaves the machine.
//!
//! Beside the functions, a floor in the same run: this bench re-run as a process that makes
//! one raw `GET /next` and nothing else, so a reader sees how much of init is process start.
//! It prints figures and asserts none; it fails only when something does not work (a function
//! that cannot start, an invocation that fails).
//!
//! `make bench-lambda` (scripts/bench-lambda.sh) builds the binaries and starts moto.
//! `BOOTSTRAP_DIR` (default `target/release`) holds the binaries (`ingest` or
//! `ingest/bootstrap`, ...); `COLD_START_RUNS` (default 5) is the number of cold starts per
//! function.

// The integration tests' support code (moto, the Runtime API stand-in, fixtures), shared as
// source: the tests are one binary with no library target. The bench uses part of it.
#[allow(dead_code, unused_imports)]
#[path = "../it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use leadrelay_aws::bootstrap;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::Clock;
use leadrelay_shared::signature::{sign_standard, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use leadrelay_shared::stages::Pipeline;
use serde_json::{json, Value};
use support::aws::{moto, Deployment, Moto};
use support::runtime_api::{Call, Invocation, RuntimeApi};
use tokio::sync::oneshot;

const DEFAULT_RUNS: usize = 5;
const MAX_RUNS: usize = 100;
/// The budgets the figures are read against (printed, never asserted).
const INIT_BUDGET_MS: f64 = 25.0;
const MEMORY_SIZE_MB: u64 = 128;
/// The argument that turns this bench into the floor: one raw `GET /next`, then wait.
const FLOOR_ARG: &str = "--runtime-api-floor";
/// Longest one cold start may take (init, first invocation, the next `GET /next`).
const COLD_START_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a message may take to show up in its queue.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(10);
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// The template's queues: MaxReceiveCount default and visibility (6 × the 20 s timeout).
const MAX_RECEIVES: u32 = 15;
const VISIBILITY_SECS: u32 = 120;
const SAMPLE: &str = "02-capture-emea-pricing.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Function {
    Ingest,
    Enrich,
    Route,
    Notify,
    Claim,
    Console,
    Sla,
    ReportHours,
}

impl Function {
    const ALL: [Function; 8] = [
        Function::Ingest,
        Function::Enrich,
        Function::Route,
        Function::Notify,
        Function::Claim,
        Function::Console,
        Function::Sla,
        Function::ReportHours,
    ];

    fn binary(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Enrich => "enrich",
            Function::Route => "route",
            Function::Notify => "notify",
            Function::Claim => "claim",
            Function::Console => "console",
            Function::Sla => "sla",
            Function::ReportHours => "report-hours",
        }
    }

    /// The template's `Timeout`.
    fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            Function::Ingest | Function::Claim => 10,
            Function::Console => 15,
            Function::Enrich | Function::Route | Function::Notify | Function::ReportHours => 20,
            Function::Sla => 60,
        })
    }

    /// The template's per-function `Environment` on top of the globals.
    fn extra_env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Function::Sla => &[("LEADRELAY_METRICS", "emf")],
            _ => &[],
        }
    }

    fn name(self) -> String {
        format!("leadrelay-{}", self.binary())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == FLOOR_ARG) {
        if let Err(error) = floor() {
            eprintln!("runtime API floor failed: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and cold starts against
    // an emulator have no place in a test run.
    if !args.iter().any(|arg| arg == "--bench") {
        println!("lambda_cold_start: skipped (run it with `make bench-lambda`)");
        return;
    }
    if let Err(error) = run() {
        eprintln!("lambda_cold_start failed: {error:#}");
        std::process::exit(1);
    }
}

/// The floor: connect to the Runtime API, ask for the next invocation, wait to be stopped.
/// No async runtime, no configuration, no clients: what any process pays to get this far.
fn floor() -> anyhow::Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API")?;
    let mut stream =
        std::net::TcpStream::connect(&api).with_context(|| format!("connecting to {api}"))?;
    write!(
        stream,
        "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let runs = env_runs()?;
    let dir = bootstrap_dir()?;
    let binaries = Function::ALL
        .iter()
        .map(|&function| Ok((function, find_binary(&dir, function)?)))
        .collect::<anyhow::Result<BTreeMap<Function, PathBuf>>>()?;
    let moto_url = std::env::var("LEADRELAY_MOTO_URL").context(
        "LEADRELAY_MOTO_URL is not set: run `make bench-lambda`, which starts moto \
         (scripts/with-moto.sh)",
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the bench's runtime")?;
    runtime.block_on(bench(runs, &dir, &binaries, &moto_url))
}

fn env_runs() -> anyhow::Result<usize> {
    match std::env::var("COLD_START_RUNS") {
        Err(_) => Ok(DEFAULT_RUNS),
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|runs| (1..=MAX_RUNS).contains(runs))
            .with_context(|| {
                format!("COLD_START_RUNS={text:?} is not a number from 1 to {MAX_RUNS}")
            }),
    }
}

/// `BOOTSTRAP_DIR`, else the workspace's `target/release` (or `$CARGO_TARGET_DIR/release`).
fn bootstrap_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("BOOTSTRAP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| support::root().join("target"))
            .join("release"),
    };
    dir.canonicalize()
        .with_context(|| format!("BOOTSTRAP_DIR {} does not exist", dir.display()))
}

/// `<dir>/<binary>` (cargo's layout) or `<dir>/<binary>/bootstrap` (cargo-lambda's).
fn find_binary(dir: &Path, function: Function) -> anyhow::Result<PathBuf> {
    let flat = dir.join(function.binary());
    if flat.is_file() {
        return Ok(flat);
    }
    let lambda = flat.join("bootstrap");
    if lambda.is_file() {
        return Ok(lambda);
    }
    bail!(
        "no {} binary in {} (neither {} nor {}): build it with \
         `cargo build --release -p leadrelay-{}` or run `make bench-lambda`",
        function.binary(),
        dir.display(),
        flat.display(),
        lambda.display(),
        function.binary()
    )
}

/// One cold start's figures.
#[derive(Debug, Clone)]
struct Sample {
    init: Duration,
    /// Event handed out → response posted (none for the floor).
    invocation: Option<Duration>,
    peak_rss_kib: u64,
    cpu: Duration,
    /// `init_ms` as the function logged it (building the pipeline, inside the process).
    logged_init_ms: Option<f64>,
    log_warnings: usize,
    log_errors: usize,
}

/// What a cold start answered, with its figures.
struct ColdStart {
    sample: Sample,
    response: Vec<u8>,
}

async fn bench(
    runs: usize,
    dir: &Path,
    binaries: &BTreeMap<Function, PathBuf>,
    moto_url: &str,
) -> anyhow::Result<()> {
    let load_before = load_average();
    let moto = moto().await;
    let slack = SlackStandIn::start().await?;
    let (config_text, secrets) = lambda_config(&slack.base)?;
    let parse_started = Instant::now();
    let config = Config::parse(&config_text, "bench", &|name| secrets.get(name).cloned())
        .context("the configuration adapted for Lambda does not load")?;
    let config_parse = parse_started.elapsed();
    let prefix = format!("/leadrelay-bench/{}", uuid::Uuid::new_v4().simple());
    let parameters = Parameters::put(&moto, &prefix, &config_text, &secrets).await?;
    let floor_exe = std::env::current_exe().context("finding the bench's own binary")?;

    println!(
        "lambda_cold_start: {runs} cold starts per function, each a fresh process; binaries \
         from {}; moto at {moto_url}",
        dir.display()
    );
    println!(
        "configuration: {} bytes in SSM ({}), {} secrets under {}",
        config_text.len(),
        parameters.config,
        secrets.len(),
        parameters.secrets_path
    );

    let mut samples: BTreeMap<Function, Vec<Sample>> = BTreeMap::new();
    let mut floors = Vec::new();
    let mut ssm_reads = Vec::new();
    for run in 1..=runs {
        ssm_reads.push(parameters.time_reads(&moto).await?);
        let floor_env = lambda_env(Function::Ingest, moto_url, &BTreeMap::new());
        let floor = cold_start(&floor_exe, &[FLOOR_ARG], &floor_env, None).await?;
        floors.push(floor.sample);

        let stack = Stack::deploy(&moto, &parameters, moto_url).await?;
        let chain = drive_chain(&stack, &config, &slack, binaries, run).await?;
        print!("run {run}:");
        for (function, sample) in &chain {
            print!(
                " {} {:.1}/{:.1} ms",
                function.binary(),
                ms(sample.init),
                sample.invocation.map(ms).unwrap_or_default()
            );
            if sample.log_warnings + sample.log_errors > 0 {
                print!(
                    " ({} warnings, {} errors logged)",
                    sample.log_warnings, sample.log_errors
                );
            }
        }
        println!(
            " (init/first invocation); floor {:.1} ms",
            ms(floors[run - 1].init)
        );
        for (function, sample) in chain {
            samples.entry(function).or_default().push(sample);
        }
    }
    let load_after = load_average();

    println!();
    println!(
        "cold starts, {runs} per function (budget: init ≤ {INIT_BUDGET_MS} ms, \
         MemorySize {MEMORY_SIZE_MB} MB)"
    );
    println!(
        "  {:<14} {:>9} | {:>8} {:>8} {:>8} | {:>9} | {:>11} | {:>9} | {:>10}",
        "function",
        "binary",
        "init p50",
        "min",
        "max",
        "logged",
        "1st invoke",
        "CPU p50",
        "peak RSS"
    );
    println!(
        "  {:<14} {:>9} | {:>8} {:>8} {:>8} | {:>9} | {:>11} | {:>9} | {:>10}",
        "", "", "", "", "", "init_ms", "p50", "", "max"
    );
    print_row(
        "floor (no-op)",
        std::fs::metadata(&floor_exe).map(|m| m.len()).ok(),
        &floors,
    );
    for (function, path) in binaries {
        print_row(
            function.binary(),
            std::fs::metadata(path).map(|m| m.len()).ok(),
            samples.get(function).map(Vec::as_slice).unwrap_or_default(),
        );
    }
    println!();
    println!(
        "init is spawn → first GET /next; \"logged init_ms\" is the function's own figure for \
         building its pipeline (clients, SSM reads, configuration); CPU is user + system time \
         of the whole process (init, first invocation); peak RSS is VmHWM."
    );
    println!(
        "context, same run: SSM reads from the bench's warm client (GetParametersByPath over \
         {} secrets + GetParameter) p50 {:.1} ms; the configuration's first parse and validation \
         in the bench (one sample) {:.1} ms; load average {} before, {} after",
        secrets.len(),
        median(&ssm_reads).map(ms).unwrap_or_default(),
        ms(config_parse),
        load_before,
        load_after
    );
    Ok(())
}

fn print_row(name: &str, size: Option<u64>, samples: &[Sample]) {
    let inits: Vec<Duration> = samples.iter().map(|s| s.init).collect();
    let invocations: Vec<Duration> = samples.iter().filter_map(|s| s.invocation).collect();
    let cpus: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    let logged: Vec<Duration> = samples
        .iter()
        .filter_map(|s| s.logged_init_ms)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    let rss = samples.iter().map(|s| s.peak_rss_kib).max();
    let millis = |value: Option<Duration>| {
        value
            .map(|d| format!("{:.1} ms", ms(d)))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  {:<14} {:>9} | {:>8} {:>8} {:>8} | {:>9} | {:>11} | {:>9} | {:>10}",
        name,
        size.map(mib).unwrap_or_else(|| "?".into()),
        millis(median(&inits)),
        millis(inits.iter().min().copied()),
        millis(inits.iter().max().copied()),
        millis(median(&logged)),
        millis(median(&invocations)),
        millis(median(&cpus)),
        rss.map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            .unwrap_or_else(|| "-".into()),
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".into())
}

// --- the deployment on moto ----------------------------------------------------------------

/// The configuration and the secrets in SSM, shared by every run.
struct Parameters {
    config: String,
    secrets_path: String,
}

impl Parameters {
    /// The configuration as a String parameter (Advanced tier: over 4 KB, as docs/aws.md says)
    /// and each secret as a SecureString under the secrets path.
    async fn put(
        moto: &Moto,
        prefix: &str,
        config_text: &str,
        secrets: &BTreeMap<String, String>,
    ) -> anyhow::Result<Parameters> {
        let ssm = moto.ssm();
        let parameters = Parameters {
            config: format!("{prefix}/config"),
            secrets_path: format!("{prefix}/secrets/"),
        };
        ssm.put_parameter()
            .name(&parameters.config)
            .value(config_text)
            .r#type(ParameterType::String)
            .tier(ParameterTier::Advanced)
            .send()
            .await
            .context("putting the configuration parameter")?;
        for (name, value) in secrets {
            ssm.put_parameter()
                .name(format!("{}{name}", parameters.secrets_path))
                .value(value)
                .r#type(ParameterType::SecureString)
                .send()
                .await
                .with_context(|| format!("putting the secret {name}"))?;
        }
        Ok(parameters)
    }

    /// The two SSM reads every function makes at start, from this process's warm client: how
    /// much of init is the emulator's answering.
    async fn time_reads(&self, moto: &Moto) -> anyhow::Result<Duration> {
        let ssm = moto.ssm();
        let started = Instant::now();
        bootstrap::load_secrets(&ssm, &self.secrets_path).await?;
        ssm.get_parameter()
            .name(&self.config)
            .with_decryption(true)
            .send()
            .await
            .context("reading the configuration parameter")?;
        Ok(started.elapsed())
    }
}

/// One run's deployment: a fresh table and queues, the functions' environment, and the same
/// adapters in this process for setting up and checking state.
struct Stack {
    deployment: Deployment,
    /// The template's environment, as every function gets it.
    env: BTreeMap<String, String>,
    pipeline: Arc<Pipeline>,
    sqs: aws_sdk_sqs::Client,
    moto_url: String,
}

impl Stack {
    async fn deploy(moto: &Moto, parameters: &Parameters, moto_url: &str) -> anyhow::Result<Stack> {
        let deployment = moto.deploy(MAX_RECEIVES, VISIBILITY_SECS).await;
        let mut env = BTreeMap::from([
            (bootstrap::ENV_TABLE.to_owned(), deployment.table.clone()),
            (
                bootstrap::ENV_CONFIG_PARAMETER.to_owned(),
                parameters.config.clone(),
            ),
            (
                bootstrap::ENV_SECRETS_PATH.to_owned(),
                parameters.secrets_path.clone(),
            ),
            ("LEADRELAY_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ]);
        // As the template: every work queue, and the notify DLQ (notify parks messages there).
        for stage in Stage::ALL {
            let url = deployment
                .urls
                .work
                .get(&stage)
                .with_context(|| format!("no {stage} queue"))?;
            env.insert(bootstrap::queue_env(stage, false), url.clone());
        }
        let notify_dlq = deployment
            .urls
            .dead
            .get(&Stage::Notify)
            .context("no notify DLQ")?;
        env.insert(
            bootstrap::queue_env(Stage::Notify, true),
            notify_dlq.clone(),
        );
        let function_env = bootstrap::Deployment::from_env(|name| env.get(name).cloned())?;
        let pipeline = bootstrap::every_stage_pipeline(&moto.sdk, &function_env)
            .await
            .context("building the pipeline from SSM in the bench")?;
        Ok(Stack {
            deployment,
            env,
            pipeline,
            sqs: moto.sqs(),
            moto_url: moto_url.to_owned(),
        })
    }

    async fn lead(&self, lead_id: &str) -> anyhow::Result<leadrelay_shared::model::Lead> {
        self.pipeline
            .store
            .get_lead(lead_id)
            .await
            .map_err(|e| anyhow::anyhow!("reading lead {lead_id}: {e}"))?
            .with_context(|| format!("lead {lead_id} is not in the table"))
    }

    /// The message for `lead_id` in `stage`'s queue, received as the event source mapping
    /// receives it (system attributes included); others are left for their visibility timeout.
    async fn take_message(&self, stage: Stage, lead_id: &str) -> anyhow::Result<Message> {
        let url = &self.deployment.urls.work[&stage];
        let started = Instant::now();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .with_context(|| format!("receiving from the {stage} queue"))?;
            let found = received.messages().iter().find(|message| {
                message
                    .body()
                    .and_then(|body| Envelope::from_json(body).ok())
                    .is_some_and(|envelope| envelope.lead_id == lead_id && envelope.stage == stage)
            });
            if let Some(message) = found {
                return Ok(message.clone());
            }
            ensure!(
                started.elapsed() < MESSAGE_DEADLINE,
                "no {stage} message for lead {lead_id} within {MESSAGE_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes a message whose invocation succeeded, as the event source mapping does.
    async fn delete(&self, stage: Stage, message: &Message) -> anyhow::Result<()> {
        self.sqs
            .delete_message()
            .queue_url(&self.deployment.urls.work[&stage])
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await
            .with_context(|| format!("deleting the {stage} message"))?;
        Ok(())
    }

    fn queue_arn(&self, stage: Stage) -> String {
        let url = &self.deployment.urls.work[&stage];
        let name = url.rsplit('/').next().unwrap_or(url);
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
    }
}

// --- the chain ------------------------------------------------------------------------------

/// One lead through the six functions, each a cold start; every invocation is checked.
async fn drive_chain(
    stack: &Stack,
    config: &Config,
    slack: &SlackStandIn,
    binaries: &BTreeMap<Function, PathBuf>,
    run: usize,
) -> anyhow::Result<Vec<(Function, Sample)>> {
    let mut samples = Vec::new();
    let start = |function: Function, event: Vec<u8>| {
        let binary = &binaries[&function];
        let env = lambda_env(function, &stack.moto_url, &stack.env);
        let invocation = Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            event,
            function_arn: format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
                function.name()
            ),
            trace_id: format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                Timestamp::now().as_second(),
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            timeout: function.timeout(),
        };
        async move {
            cold_start(binary, &[], &env, Some(invocation))
                .await
                .with_context(|| format!("the {} function", function.binary()))
        }
    };

    // ingest: a signed webhook from a new person, as API Gateway delivers it.
    let body = as_new_person(&support::sample(SAMPLE), &format!("bench{run}"))?;
    let event_id = format!("msg_bench_{}", uuid::Uuid::new_v4().simple());
    let ingest = start(Function::Ingest, ingest_event(config, &body, &event_id)?).await?;
    let (status, text) = http_answer(&ingest.response)?;
    ensure!(status == 202, "ingest answered {status}: {text}");
    let answer: Value = serde_json::from_str(&text).context("ingest's answer is not JSON")?;
    let lead_id = answer["lead_id"]
        .as_str()
        .with_context(|| format!("ingest's answer has no lead_id: {text}"))?
        .to_owned();
    samples.push((Function::Ingest, ingest.sample));

    // enrich, route, notify: the message the previous function sent, as an SQS event.
    for (function, stage, state) in [
        (Function::Enrich, Stage::Enrich, "enriched"),
        (Function::Route, Stage::Route, "routed"),
        (Function::Notify, Stage::Notify, "notified"),
    ] {
        let message = stack.take_message(stage, &lead_id).await?;
        let event = sqs_event(&message, &stack.queue_arn(stage))?;
        let posts = slack.posts();
        let consumed = start(function, event).await?;
        let answer: Value = serde_json::from_slice(&consumed.response)
            .with_context(|| format!("{}'s answer is not JSON", function.binary()))?;
        let failures = answer["batchItemFailures"].as_array().with_context(|| {
            format!(
                "{}'s answer has no batchItemFailures: {answer}",
                function.binary()
            )
        })?;
        ensure!(
            failures.is_empty(),
            "{} reported failed messages: {answer}",
            function.binary()
        );
        stack.delete(stage, &message).await?;
        // An empty batchItemFailures also covers a message the stage dead-lettered: the lead
        // must have moved on, with no failure recorded.
        let lead = stack.lead(&lead_id).await?;
        ensure!(
            lead.state.as_str() == state && lead.last_failure.is_none(),
            "after {}, lead {lead_id} is {} (expected {state}); last failure: {:?}",
            function.binary(),
            lead.state.as_str(),
            lead.last_failure
        );
        if function == Function::Notify {
            ensure!(
                slack.posts() > posts,
                "notify succeeded without posting to Slack"
            );
        }
        samples.push((function, consumed.sample));
    }

    // claim: the owner opens their signed claim link and claims the lead.
    let lead = stack.lead(&lead_id).await?;
    let owner = lead
        .assignment
        .as_ref()
        .map(|a| a.owner.id().to_owned())
        .with_context(|| format!("lead {lead_id} has no owner"))?;
    let link = leadrelay_shared::claim_link::url_for(config, &lead_id, &owner, Timestamp::now())
        .context("the configuration makes no claim links")?;
    let query = link
        .split_once('?')
        .map(|(_, query)| query.to_owned())
        .context("a claim link without a query")?;
    let claim = start(Function::Claim, claim_event(&lead_id, &query)?).await?;
    let (status, html) = http_answer(&claim.response)?;
    ensure!(
        status == 200 && html.contains("You own this lead now"),
        "claim answered {status}: {html}"
    );
    let claimed = stack.lead(&lead_id).await?;
    ensure!(
        claimed.claim.as_ref().map(|c| c.rep.as_str()) == Some(owner.as_str()),
        "the claim answered 200 but lead {lead_id} is not claimed by {owner}"
    );
    samples.push((Function::Claim, claim.sample));

    // console: the sign-in page, as a browser first opens it.
    let console = start(Function::Console, console_event()?).await?;
    let (status, html) = http_answer(&console.response)?;
    ensure!(
        status == 200 && html.contains("Sign in to leadrelay"),
        "console answered {status}: {html}"
    );
    samples.push((Function::Console, console.sample));

    // sla: the schedule fires with one lead past its deadline.
    let due = due_lead(stack, config, run).await?;
    let sla = start(Function::Sla, sla_event()?).await?;
    let report: Value =
        serde_json::from_slice(&sla.response).context("sla's answer is not JSON")?;
    let escalated = report["escalated"]
        .as_array()
        .with_context(|| format!("sla's answer has no escalated list: {report}"))?;
    ensure!(
        escalated.contains(&json!([due, 1])),
        "sla did not escalate the due lead {due}: {report}"
    );
    samples.push((Function::Sla, sla.sample));

    // report-hours: the table's stream since the stack was made (every write above), as its
    // event source mapping hands a batch over; the lead's capture hour must move.
    let captured = lead
        .timeline
        .captured_at
        .with_context(|| format!("lead {lead_id} has no capture time"))?;
    let hour_of_lead = |store: leadrelay_aws::DynamoStore| async move {
        let hours = leadrelay_shared::ports::LeadStore::report_hours(
            &store.with_report_buckets(Duration::ZERO),
            captured,
            captured + SignedDuration::from_secs(1),
        )
        .await?
        .context("a store with buckets lists hours")?;
        anyhow::Ok(hours.first().map(|h| h.generation))
    };
    let before = hour_of_lead(stack.deployment.store.clone()).await?;
    let event = stack
        .deployment
        .report_stream
        .next_event(1000)
        .await
        .context("the table's stream has no records")?;
    let report_hours = start(Function::ReportHours, serde_json::to_vec(&event)?).await?;
    let after = hour_of_lead(stack.deployment.store.clone()).await?;
    ensure!(
        after > before,
        "report-hours did not move the lead's hour ({before:?} -> {after:?})"
    );
    samples.push((Function::ReportHours, report_hours.sample));
    Ok(samples)
}

/// The sample with its address made unique: each lead a new person (the same person again
/// within the merge window would be merged into their open lead, a different path).
fn as_new_person(body: &[u8], tag: &str) -> anyhow::Result<Vec<u8>> {
    let mut event: Value = serde_json::from_slice(body).context("the sample is not JSON")?;
    if let Some(email) = event.get("captured_email").and_then(Value::as_str) {
        event["captured_email"] = format!("{tag}.{email}").into();
    }
    serde_json::to_vec(&event).context("writing the sample")
}

/// A clock standing at one instant.
struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A lead captured, enriched, routed and notified half an hour ago (through the same adapters,
/// in this process, on a clock held back), so its SLA deadline has passed.
async fn due_lead(stack: &Stack, config: &Config, run: usize) -> anyhow::Result<String> {
    let then = Timestamp::now() - SignedDuration::from_mins(30);
    let p = &stack.pipeline;
    let earlier = Pipeline::new(
        p.config.clone(),
        p.store.clone(),
        p.queue.clone(),
        p.notifier.clone(),
        Arc::new(FixedClock(then)),
    );
    let body = as_new_person(&support::sample(SAMPLE), &format!("sla{run}"))?;
    let source = config.source("website").context("no website source")?;
    let key = source
        .keys
        .first()
        .context("the website source has no key")?;
    let event_id = format!("msg_due_{}", uuid::Uuid::new_v4().simple());
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in [
        (HEADER_ID, event_id.clone()),
        (HEADER_TIMESTAMP, then.as_second().to_string()),
        (
            HEADER_SIGNATURE,
            sign_standard(key, &event_id, then.as_second(), &body),
        ),
    ] {
        headers.insert(
            name,
            value
                .parse::<axum::http::HeaderValue>()
                .context("a header value")?,
        );
    }
    let accepted = earlier
        .ingest("website", &headers, &body)
        .await
        .map_err(|e| anyhow::anyhow!("ingesting the due lead: {e}"))?;
    for stage in [Stage::Enrich, Stage::Route, Stage::Notify] {
        let message = stack.take_message(stage, &accepted.lead_id).await?;
        let _outcome = earlier
            .handle(stage, message.body().unwrap_or_default())
            .await
            .map_err(|e| anyhow::anyhow!("the due lead's {stage} stage: {e}"))?;
        stack.delete(stage, &message).await?;
    }
    let lead = stack.lead(&accepted.lead_id).await?;
    let due_at = lead.timeline.sla_due_at;
    ensure!(
        lead.state.as_str() == "notified" && due_at.is_some_and(|due| due < Timestamp::now()),
        "the due lead is {} with deadline {due_at:?}",
        lead.state.as_str()
    );
    Ok(accepted.lead_id)
}

// --- events, as AWS sends them --------------------------------------------------------------

fn fixture(name: &str) -> anyhow::Result<Value> {
    let path = support::root().join("events/aws").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// API Gateway HTTP API (payload 2.0) `POST /webhooks/website` with a freshly signed body.
fn ingest_event(config: &Config, body: &[u8], event_id: &str) -> anyhow::Result<Vec<u8>> {
    let mut event = fixture("apigw-http-webhook.json")?;
    let source = config.source("website").context("no website source")?;
    for (name, value) in leadrelay::cli::signed_headers(source, event_id, body)? {
        event["headers"][name] = value.into();
    }
    event["body"] = String::from_utf8(body.to_vec())
        .context("the sample is not UTF-8")?
        .into();
    stamp_request(&mut event);
    serde_json::to_vec(&event).context("writing the event")
}

/// `POST /claim/{lead_id}?<signed query>`, as the claim link's form posts it.
fn claim_event(lead_id: &str, query: &str) -> anyhow::Result<Vec<u8>> {
    let mut event = fixture("apigw-http-webhook.json")?;
    let path = format!("/claim/{lead_id}");
    event["routeKey"] = "POST /claim/{lead_id}".into();
    event["rawPath"] = path.clone().into();
    event["rawQueryString"] = query.into();
    event["requestContext"]["routeKey"] = "POST /claim/{lead_id}".into();
    event["requestContext"]["http"]["method"] = "POST".into();
    event["requestContext"]["http"]["path"] = path.into();
    event["pathParameters"] = json!({ "lead_id": lead_id });
    event["headers"] = json!({
        "content-type": "application/x-www-form-urlencoded",
        "host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "user-agent": "Mozilla/5.0",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
    });
    event["body"] = "".into();
    stamp_request(&mut event);
    serde_json::to_vec(&event).context("writing the event")
}

/// `GET /console/login`, as a browser opens the console.
fn console_event() -> anyhow::Result<Vec<u8>> {
    let mut event = fixture("apigw-http-webhook.json")?;
    event["routeKey"] = "GET /console/{proxy+}".into();
    event["rawPath"] = "/console/login".into();
    event["rawQueryString"] = "".into();
    event["requestContext"]["routeKey"] = "GET /console/{proxy+}".into();
    event["requestContext"]["http"]["method"] = "GET".into();
    event["requestContext"]["http"]["path"] = "/console/login".into();
    event["pathParameters"] = json!({ "proxy": "login" });
    event["headers"] = json!({
        "host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "user-agent": "Mozilla/5.0",
        "x-forwarded-proto": "https",
    });
    event["body"] = Value::Null;
    event["isBase64Encoded"] = false.into();
    stamp_request(&mut event);
    serde_json::to_vec(&event).context("writing the event")
}

fn stamp_request(event: &mut Value) {
    let now = Timestamp::now();
    event["requestContext"]["requestId"] = uuid::Uuid::new_v4().to_string().into();
    event["requestContext"]["timeEpoch"] = now.as_millisecond().into();
}

/// The EventBridge schedule's event, stamped now.
fn sla_event() -> anyhow::Result<Vec<u8>> {
    let mut event = fixture("eventbridge-sla-schedule.json")?;
    event["id"] = uuid::Uuid::new_v4().to_string().into();
    event["time"] = Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .into();
    serde_json::to_vec(&event).context("writing the event")
}

/// An SQS event with this one record, shaped as the event source mapping sends it.
fn sqs_event(message: &Message, queue_arn: &str) -> anyhow::Result<Vec<u8>> {
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
                .collect()
        })
        .unwrap_or_default();
    let event = json!({
        "Records": [{
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }]
    });
    serde_json::to_vec(&event).context("writing the event")
}

/// Status and body of an API Gateway HTTP API (v2) response.
fn http_answer(response: &[u8]) -> anyhow::Result<(u16, String)> {
    let answer: Value =
        serde_json::from_slice(response).context("the function's answer is not JSON")?;
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .with_context(|| format!("no statusCode in {answer}"))?;
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .context("a base64 body that does not decode")?;
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

// --- the process ----------------------------------------------------------------------------

/// The environment Lambda gives `function` (provided.al2023), with the template's variables
/// and AWS_ENDPOINT_URL pointing at moto.
fn lambda_env(
    function: Function,
    moto_url: &str,
    template: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let name = function.name();
    let stream = format!(
        "{}/[$LATEST]{}",
        Timestamp::now().strftime("%Y/%m/%d"),
        uuid::Uuid::new_v4().simple()
    );
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            MEMORY_SIZE_MB.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_SESSION_TOKEN", "testing".into()),
        ("AWS_ENDPOINT_URL", moto_url.into()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("_HANDLER", "bootstrap".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    env.extend(template.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(
        function
            .extra_env()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// How the process ended, from `wait4`.
struct Exit {
    status: libc::c_int,
    usage: libc::rusage,
}

impl Exit {
    fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit code {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("status {}", self.status)
        }
    }

    fn cpu(&self) -> Duration {
        let time = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or_default())
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or_default())
        };
        time(self.usage.ru_utime) + time(self.usage.ru_stime)
    }
}

/// A spawned process. A thread waits for its exit without reaping it (`waitid` with
/// `WNOWAIT`), so the pid stays ours until [`Process::reap`] collects its rusage with `wait4`:
/// a kill can never reach a reused pid. Killed and reaped if dropped before that.
struct Process {
    pid: libc::pid_t,
    /// Fires once the process has exited (it is a zombie until reaped).
    exited: Option<oneshot::Receiver<()>>,
    reaped: bool,
}

impl Process {
    fn spawn(mut command: Command) -> anyhow::Result<Process> {
        let child = command.spawn().context("starting the process")?;
        let pid = libc::pid_t::try_from(child.id()).context("a pid out of range")?;
        // The std handle is dropped without waiting: this type reaps the process.
        drop(child);
        let (tx, exited) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || {
                wait_exited(pid);
                let _ = tx.send(());
            })
            .context("starting the exit watcher")?;
        Ok(Process {
            pid,
            exited: Some(exited),
            reaped: false,
        })
    }

    /// Waits until the process has exited (cancel-safe: the receiver stays for the next call).
    async fn exited(&mut self) {
        if let Some(exited) = self.exited.as_mut() {
            let _ = exited.await;
            self.exited = None;
        }
    }

    /// Collects the exited process's status and rusage.
    fn reap(&mut self) -> anyhow::Result<Exit> {
        let exit = wait4(self.pid).context("wait4")?;
        self.reaped = true;
        Ok(exit)
    }

    /// SIGKILL (the environment is torn down; nothing graceful on Lambda either), then reaps.
    async fn kill(&mut self) -> anyhow::Result<Exit> {
        self.signal_kill();
        self.exited().await;
        self.reap()
    }

    fn signal_kill(&self) {
        // SAFETY: kill(2) on our own child, not yet reaped: its pid cannot have been reused.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_kill();
            let _ = wait4(self.pid);
        }
    }
}

/// Blocks until `pid` has exited, leaving it to be reaped.
fn wait_exited(pid: libc::pid_t) {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return;
    };
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a local; WNOWAIT leaves the child to be reaped later.
        let done =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

fn wait4(pid: libc::pid_t) -> std::io::Result<Exit> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; all zeroes is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; waits for our own child only.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok(Exit { status, usage });
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Starts `program` against a fresh Runtime API serving `invocation` and times it: spawn →
/// first `GET /next`; the invocation handed out → its response posted; then waits for the
/// runtime's next `GET /next` (the invocation is over), stops the process and reads its
/// rusage. Without an invocation (the floor), it stops after the first `GET /next`.
async fn cold_start(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    invocation: Option<Invocation>,
) -> anyhow::Result<ColdStart> {
    let expected_request = invocation.as_ref().map(|i| i.request_id.clone());
    let mut api = RuntimeApi::start(invocation)
        .await
        .context("starting the Runtime API")?;
    let log = tempfile::NamedTempFile::new().context("creating the process log")?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .stdin(Stdio::null())
        .stdout(log.reopen().context("the process log")?)
        .stderr(log.reopen().context("the process log")?);
    let spawned = Instant::now();
    let mut process =
        Process::spawn(command).with_context(|| format!("starting {}", program.display()))?;
    let tail = || log_tail(log.path(), 20);

    let watched = tokio::time::timeout(COLD_START_DEADLINE, async {
        let mut ready = None;
        let mut handed_out = None;
        let mut answered = None;
        loop {
            let call = tokio::select! {
                call = api.call() => call.context("the Runtime API stopped")?,
                () = process.exited() => {
                    let exit = process.reap()?;
                    bail!("the process ended ({}) before it finished:\n{}", exit.describe(), tail());
                }
            };
            match call {
                Call::Next { at } => match (ready, &expected_request, answered.take()) {
                    (None, None, _) => return Ok((at - spawned, None, Vec::new())),
                    (None, Some(_), _) => ready = Some(at),
                    (Some(_), _, Some((at_answer, body))) => {
                        let handed: Instant = handed_out.context("answered before handed out")?;
                        let init: Instant = ready.context("no first GET /next")?;
                        return Ok((init - spawned, Some(at_answer - handed), body));
                    }
                    (Some(_), _, None) => bail!("a second GET /next before any response"),
                },
                Call::HandedOut { at, .. } => handed_out = Some(at),
                Call::Response {
                    at,
                    request_id,
                    body,
                } => {
                    ensure!(
                        Some(&request_id) == expected_request.as_ref(),
                        "a response for request {request_id}, not the one handed out"
                    );
                    answered = Some((at, body.to_vec()));
                }
                Call::InvocationError {
                    error_type, body, ..
                } => bail!(
                    "the invocation failed ({}): {}\n{}",
                    error_type.unwrap_or_default(),
                    String::from_utf8_lossy(&body),
                    tail()
                ),
                Call::InitError {
                    error_type, body, ..
                } => bail!(
                    "init failed ({}): {}\n{}",
                    error_type.unwrap_or_default(),
                    String::from_utf8_lossy(&body),
                    tail()
                ),
                Call::Unexpected { method, uri } => {
                    bail!("a call outside the Runtime API: {method} {uri}")
                }
            }
        }
    })
    .await;
    let (init, invocation, response) = match watched {
        Ok(result) => result?,
        Err(_) => bail!("no answer within {COLD_START_DEADLINE:?}:\n{}", tail()),
    };
    // VmHWM, not wait4's ru_maxrss: exec records the spawning process's own peak into the
    // child's ru_maxrss (std spawns with vfork semantics), so ru_maxrss reads as at least this
    // bench's RSS whatever the function used.
    let peak_rss_kib = vm_hwm_kib(process.pid)?;
    let exit = process.kill().await?;
    let (logged_init_ms, log_warnings, log_errors) = read_log(log.path());
    Ok(ColdStart {
        sample: Sample {
            init,
            invocation,
            peak_rss_kib,
            cpu: exit.cpu(),
            logged_init_ms,
            log_warnings,
            log_errors,
        },
        response,
    })
}

/// `VmHWM` from /proc: the most resident memory the process has had.
fn vm_hwm_kib(pid: libc::pid_t) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in {path}"))
}

/// The function's own `init_ms` and its warning and error lines (JSON logs).
fn read_log(path: &Path) -> (Option<f64>, usize, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut init_ms = None;
    let (mut warnings, mut errors) = (0, 0);
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(ms) = entry["init_ms"].as_f64() {
            init_ms = Some(ms);
        }
        match entry["level"].as_str() {
            Some("WARN") => warnings += 1,
            Some("ERROR") => errors += 1,
            _ => {}
        }
    }
    (init_ms, warnings, errors)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// --- configuration, secrets, Slack -----------------------------------------------------------

/// The example configuration as a Lambda deployment would hold it in SSM: no secret inline
/// (webhook secrets, claim-link secrets and every rep's and queue's Slack webhook are
/// SecureStrings named by `*_env` keys), nothing read from a file (no companies_csv, no
/// geoip), no terminal channel, Slack pointing at the local stand-in. Working hours, holidays
/// and leave are out (as in the tests), so the hour the bench runs at never holds an alert.
fn lambda_config(slack_base: &str) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let mut config: toml::Table = support::example_config()
        .parse()
        .context("parsing the example configuration")?;
    let mut secrets = BTreeMap::new();
    let env_name = |id: &str, suffix: &str| {
        format!(
            "{}{suffix}",
            id.to_ascii_uppercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    };
    let joined = |value: toml::Value| -> anyhow::Result<String> {
        let list = value
            .as_array()
            .context("a secret list that is not a list")?;
        Ok(list
            .iter()
            .filter_map(toml::Value::as_str)
            .collect::<Vec<_>>()
            .join(","))
    };

    for source in tables(&mut config, "sources")? {
        let id = table_id(source)?;
        if let Some(list) = source.remove("secrets") {
            let name = env_name(&id, "_WEBHOOK_SECRETS");
            secrets.insert(name.clone(), joined(list)?);
            source.insert("secrets_env".into(), name.into());
        }
    }
    if let Some(claim) = config.get_mut("claim").and_then(toml::Value::as_table_mut) {
        if let Some(list) = claim.remove("link_secrets") {
            secrets.insert("CLAIM_LINK_SECRETS".into(), joined(list)?);
            claim.insert("link_secrets_env".into(), "CLAIM_LINK_SECRETS".into());
        }
    }
    for list in ["reps", "queues"] {
        for entry in tables(&mut config, list)? {
            let id = table_id(entry)?;
            let name = env_name(&format!("slack_{id}"), "");
            secrets.insert(name.clone(), format!("{slack_base}/services/{id}"));
            entry.remove("slack_webhook_url");
            entry.insert("slack_webhook_url_env".into(), name.into());
        }
    }
    if let Some(enrichment) = config
        .get_mut("enrichment")
        .and_then(toml::Value::as_table_mut)
    {
        enrichment.remove("companies_csv");
        enrichment.remove("geoip");
        if let Some(providers) = enrichment
            .get_mut("providers")
            .and_then(toml::Value::as_array_mut)
        {
            providers.retain(|p| p.as_str() != Some("geoip"));
        }
    }
    config
        .entry("notify")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .context("[notify] is not a table")?
        .insert("terminal".into(), false.into());
    let text = toml::to_string(&config).context("writing the configuration")?;
    Ok((text, secrets))
}

fn tables<'a>(
    config: &'a mut toml::Table,
    key: &str,
) -> anyhow::Result<impl Iterator<Item = &'a mut toml::Table>> {
    let entries = config
        .get_mut(key)
        .and_then(toml::Value::as_array_mut)
        .with_context(|| format!("the example configuration has no [[{key}]]"))?;
    Ok(entries.iter_mut().filter_map(toml::Value::as_table_mut))
}

fn table_id(table: &toml::Table) -> anyhow::Result<String> {
    table
        .get("id")
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .context("an entry without an id")
}

/// Slack's incoming webhooks as the notify function sees them: `ok` to every post, counted.
struct SlackStandIn {
    base: String,
    posts: Arc<AtomicUsize>,
}

impl SlackStandIn {
    async fn start() -> anyhow::Result<SlackStandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Slack stand-in")?;
        let base = format!("http://{}", listener.local_addr()?);
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = posts.clone();
        let app = axum::Router::new().fallback(axum::routing::post(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { "ok" }
        }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SlackStandIn { base, posts })
    }

    fn posts(&self) -> usize {
        self.posts.load(Ordering::Relaxed)
    }
}

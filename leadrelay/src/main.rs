//! `leadrelay`: run the embedded pipeline, send a signed test webhook, inspect a lead, explain
//! and test routing, read pool ledgers, replay dead letters.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use leadrelay::embedded::Embedded;
use leadrelay::{cli, dlq, report, rules};
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore};
use leadrelay_shared::stages::close::close_lead;
use leadrelay_shared::stages::report as report_stage;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "leadrelay",
    version,
    about = "Speed-to-lead: signed chatbot webhooks to an owned, notified lead in under a second"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "LEADRELAY_CONFIG",
        default_value = "config/leadrelay.toml"
    )]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "LEADRELAY_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum SourcesAction {
    /// Each configured source: its preset or mapping, and what its verification proves.
    List,
    /// List the presets: Intercom, HubSpot, Typeform, ... and their setup pages.
    Presets,
    /// Verify (with --header), map and validate a platform's payload for a source, and print
    /// the lead it would make and the route it would take. Stores nothing.
    Test {
        /// The payload, as the platform posts it.
        file: PathBuf,
        /// The source whose signature scheme and mapping apply.
        #[arg(long)]
        source: String,
        /// A request header as the platform sent it, `Name: value` (repeat for each).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The URL the platform posted to, for schemes that sign it (HubSpot).
        #[arg(long)]
        url: Option<String>,
        /// As if received at this instant (RFC 3339), for signed timestamps and hours.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage and the HTTP API in this process over the embedded store.
    Serve {
        #[arg(long, env = "LEADRELAY_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, env = "LEADRELAY_DATA_DIR", default_value = ".leadrelay/data")]
        data_dir: PathBuf,
    },
    /// Sign event files with the source's secret and post them.
    Send {
        /// Event JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, env = "LEADRELAY_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Source id (default: the first in the configuration).
        #[arg(long)]
        source: Option<String>,
        /// Event id to sign with (default: a new one per file); reuse one to see dedupe.
        #[arg(long)]
        event_id: Option<String>,
        /// Follow each lead until it is notified and print its owner, tier and SLA.
        #[arg(long)]
        wait: bool,
    },
    /// Print a ready, signed curl command for an event file.
    Sign {
        file: PathBuf,
        #[arg(long, env = "LEADRELAY_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        source: Option<String>,
    },
    /// Inspect and replay dead letters (embedded store, or SQS with --sqs).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// The embedded store's data directory.
        #[arg(
            long,
            global = true,
            env = "LEADRELAY_DATA_DIR",
            default_value = ".leadrelay/data"
        )]
        data_dir: PathBuf,
        /// Work on the SQS dead-letter queues and DynamoDB table named by LEADRELAY_TABLE and
        /// LEADRELAY_<STAGE>_QUEUE_URL / _DLQ_URL (needs a build with `--features aws`).
        #[arg(long, global = true)]
        sqs: bool,
    },
    /// Show a stored lead and its timeline.
    Lead {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The web console's accounts.
    Console {
        #[command(subcommand)]
        action: ConsoleAction,
    },
    /// Close a worked lead (won, lost, disqualified): frees the capacity it held.
    Close {
        id: String,
        #[arg(long, default_value = "closed")]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Why a lead goes where it goes: each rule tried, the after-hours policy, every candidate.
    Explain {
        /// A capture payload (as the chatbot posts it) to route as a what-if.
        #[arg(required_unless_present = "lead", conflicts_with = "lead")]
        file: Option<PathBuf>,
        /// A stored lead: the decision as it was made.
        #[arg(long)]
        lead: Option<String>,
        /// The source the payload comes from (default: the first configured).
        #[arg(long)]
        source: Option<String>,
        /// Route as if at this instant (RFC 3339), for hours and holidays. Default: now.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// Open leads and pool ledgers are read from the store when it exists.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The shipped platform presets, and trying a platform's payload before going live.
    Sources {
        #[command(subcommand)]
        action: SourcesAction,
    },
    /// Test routing rules before launch, and see what a change would move.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Each rep's open leads and run of missed SLAs, and who is paused; `reps resume ID`
    /// resumes a paused rep.
    Reps {
        #[command(subcommand)]
        action: Option<RepsAction>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Speed-to-lead figures of the leads captured in a window, grouped by rep, team, tier,
    /// source, rule or page; `report audit` lists what fell through the handoff.
    Report {
        #[command(subcommand)]
        action: Option<ReportAction>,
        /// The window's start: an age (30m, 12h, 7d) or an RFC 3339 instant.
        #[arg(long, default_value = "7d")]
        since: String,
        /// The window's end (default: now), as --since.
        #[arg(long)]
        until: Option<String>,
        /// What each row of the table is.
        #[arg(long, default_value = "rep", value_parser = leadrelay_shared::report::Dimension::NAMES)]
        by: String,
        #[arg(long, value_enum, default_value = "table")]
        format: report::Format,
        /// Durations in elapsed time, or in the owner's working hours only.
        #[arg(long, default_value = "wall", value_parser = ["wall", "working"])]
        hours: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Each pool's ledger: per member, weight, leads this period, share, open leads, now.
    Pools {
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the stored leads are, for every command that reads or changes them: the embedded
/// store's data directory, or the DynamoDB table.
#[derive(clap::Args)]
struct StoreArgs {
    /// The embedded store's data directory.
    #[arg(
        long,
        global = true,
        env = "LEADRELAY_DATA_DIR",
        default_value = ".leadrelay/data"
    )]
    data_dir: PathBuf,
    /// Use the DynamoDB table named by LEADRELAY_TABLE instead (a build with `--features aws`).
    #[arg(long, global = true)]
    dynamodb: bool,
}

impl StoreArgs {
    /// The store, or `None` when the data directory holds none yet (never creates one).
    async fn open(&self, config: &Config) -> anyhow::Result<Option<Box<dyn LeadStore>>> {
        if self.dynamodb {
            return dynamo_store().await.map(Some);
        }
        if !self.data_dir.join("leadrelay.db").exists() {
            return Ok(None);
        }
        Ok(Some(Box::new(embedded_store(config, &self.data_dir)?)))
    }

    /// The store of a deployment that has stored leads; `what` says why one is needed.
    async fn require(&self, config: &Config, what: &str) -> anyhow::Result<Box<dyn LeadStore>> {
        self.open(config)
            .await?
            .with_context(|| format!("no data in {}: {what}", self.data_dir.display()))
    }
}

/// The embedded store in `data_dir` with the configuration's queue settings.
fn embedded_store(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<leadrelay_sqlite::Sqlite> {
    let settings = leadrelay_sqlite::QueueSettings::from_config(&config.pipeline);
    Ok(leadrelay_sqlite::Sqlite::open(data_dir, settings)?)
}

#[derive(Subcommand)]
enum ReportAction {
    /// Leads assigned but never touched past their SLA, mis-routed leads, and activity events
    /// that matched no lead.
    Audit {
        /// The window's start: an age (30m, 12h, 7d) or an RFC 3339 instant.
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: report::Format,
    },
}

#[derive(Subcommand)]
enum RepsAction {
    /// Resume a rep paused for missed SLAs: they get new leads again.
    Resume { rep: String },
}

#[derive(Subcommand)]
enum RulesAction {
    /// Run a routing test file (cases: lead in, expected owner out); fails on any mismatch.
    Test {
        file: PathBuf,
        /// Print every case's explanation, not only the failures'.
        #[arg(long)]
        verbose: bool,
    },
    /// Replay stored leads through a new configuration and show who would change owner.
    Diff {
        new_config: PathBuf,
        /// The window of stored leads (30m, 2h, 7d).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Where the stored leads to replay are.
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Per stage: count, oldest, and each message's lead, receive count and last error.
    List {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// One dead letter in full.
    Show { message_id: String },
    /// Put dead letters back on their stage's queue (safe: every stage is idempotent).
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print what would be replayed and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages per second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// On SQS, with no lead or age filter: let SQS move the messages (StartMessageMoveTask).
        #[arg(long)]
        native: bool,
    },
    /// Delete dead letters for good (asks for confirmation).
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ConsoleAction {
    /// Read a password (twice, not echoed) and print its Argon2id hash for a
    /// `[[console.accounts]] password_hash`.
    HashPassword {
        /// Read one line from standard input instead of asking (for scripts).
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Only this stage (enrich, route, notify).
    #[arg(long)]
    stage: Option<String>,
    /// Only messages for this lead.
    #[arg(long)]
    lead: Option<String>,
    /// Only messages first sent at least this long ago (30m, 2h, 7d).
    #[arg(long)]
    older_than: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<dlq::Filter> {
        let stage =
            match &self.stage {
                Some(name) => Some(Stage::parse(name).with_context(|| {
                    format!("unknown stage {name:?}: use enrich, route or notify")
                })?),
                None => None,
            };
        Ok(dlq::Filter {
            stage,
            lead_id: self.lead.clone(),
            older_than: self.older_than.as_deref().map(dlq::parse_age).transpose()?,
            message_ids: Vec::new(),
        })
    }
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    // Needs no configuration: it makes a value for one.
    if let Command::Console {
        action: ConsoleAction::HashPassword { stdin },
    } = cli.command
    {
        return cli::hash_password(stdin);
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve { listen, data_dir } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let embedded = Embedded::open(config, &data_dir, Box::new(std::io::stdout()))?;
            embedded.serve(listener, shutdown_signal()).await
        }
        Command::Send {
            files,
            url,
            source,
            event_id,
            wait,
        } => {
            cli::send(
                &config,
                source.as_deref(),
                &url,
                event_id.as_deref(),
                &files,
                wait,
            )
            .await
        }
        Command::Sign { file, url, source } => {
            println!(
                "{}",
                cli::curl_line(&config, source.as_deref(), &url, &file)?
            );
            Ok(())
        }
        Command::Lead { id, store } => {
            let store = store.require(&config, "no stored leads").await?;
            cli::show_lead(store.as_ref(), &id).await
        }
        Command::Console { .. } => unreachable!("answered before the configuration is read"),
        Command::Close {
            id,
            reason,
            store: where_,
        } => {
            let store = where_.require(&config, "no stored leads").await?;
            let lead = close_lead(store.as_ref(), jiff::Timestamp::now(), &id, &reason).await?;
            // The running server's notify stage edits the lead's posted Slack alerts ("Closed").
            if !where_.dynamodb {
                use leadrelay_shared::ports::Queue as _;
                let queue = embedded_store(&config, &where_.data_dir)?;
                let envelope = Envelope::new(&lead.id, Stage::Notify, &lead.trace_id);
                if let Err(error) = queue.send(Stage::Notify, &envelope).await {
                    eprintln!("the close was not announced in Slack: {error}");
                }
            }
            let owner = lead.assignment.as_ref().map(|a| a.owner.to_string());
            println!(
                "lead {} closed ({}); {} has one open lead fewer",
                lead.id,
                lead.close_reason.as_deref().unwrap_or(""),
                owner.as_deref().unwrap_or("nobody")
            );
            Ok(())
        }
        Command::Sources { action } => match action {
            SourcesAction::List => {
                leadrelay::sources::list_sources(&config, &mut std::io::stdout())
            }
            SourcesAction::Presets => leadrelay::sources::list_presets(&mut std::io::stdout()),
            SourcesAction::Test {
                file,
                source,
                headers,
                url,
                at,
            } => {
                let trial = leadrelay::sources::Trial {
                    source: &source,
                    file: &file,
                    headers: &headers,
                    url: url.as_deref(),
                    at: at.unwrap_or_else(jiff::Timestamp::now),
                };
                leadrelay::sources::test_payload(&config, &trial, &mut std::io::stdout()).await
            }
        },
        Command::Explain {
            file,
            lead,
            source,
            at,
            store: where_stored,
        } => {
            let mut out = std::io::stdout();
            let store = where_stored.open(&config).await?;
            match (file, lead) {
                (_, Some(id)) => {
                    let store = where_stored
                        .require(&config, "nothing stored to explain")
                        .await?;
                    rules::explain_stored(store.as_ref(), &id, &mut out).await
                }
                (Some(file), None) => {
                    let at = at.unwrap_or_else(jiff::Timestamp::now);
                    rules::explain_file(
                        &config,
                        &file,
                        source.as_deref(),
                        at,
                        store.as_deref(),
                        &mut out,
                    )
                    .await
                }
                (None, None) => anyhow::bail!("give a lead file or --lead ID"),
            }
        }
        Command::Rules { action } => match action {
            RulesAction::Test { file, verbose } => {
                rules::test_cases(&config, &file, verbose, &mut std::io::stdout())
            }
            RulesAction::Diff {
                new_config,
                since,
                store,
            } => {
                let new = Config::load(&new_config)?;
                let store = store.require(&config, "no stored leads to replay").await?;
                let since = dlq::parse_age(&since)?;
                rules::diff(&config, &new, store.as_ref(), since, &mut std::io::stdout()).await
            }
        },
        Command::Reps { action, store } => {
            let store = store
                .require(&config, "start `leadrelay serve` first")
                .await?;
            let mut out = std::io::stdout();
            match action {
                None => cli::reps(&config, store.as_ref(), &mut out).await,
                Some(RepsAction::Resume { rep }) => {
                    cli::resume(&config, store.as_ref(), &rep, &mut out).await
                }
            }
        }
        Command::Report {
            action,
            since,
            until,
            by,
            format,
            hours,
            store,
        } => {
            let store = store
                .require(&config, "no stored leads to report on")
                .await?;
            let now = jiff::Timestamp::now();
            let mut out = std::io::stdout().lock();
            match action {
                Some(ReportAction::Audit {
                    since,
                    until,
                    format,
                }) => {
                    let audit =
                        report_stage::audit(store.as_ref(), &since, until.as_deref(), now).await?;
                    report::print_audit(&audit, format, &mut out)
                }
                None => {
                    let query = report_stage::ReportQuery {
                        since,
                        until,
                        by: leadrelay_shared::report::Dimension::parse(&by)
                            .with_context(|| format!("--by {by:?}: unknown"))?,
                        hours: leadrelay_shared::report::Hours::parse(&hours)
                            .with_context(|| format!("--hours {hours:?}: unknown"))?,
                    };
                    let figures =
                        report_stage::speed_to_lead(store.as_ref(), &config, &query, now).await?;
                    report::print(&figures, format, &mut out)
                }
            }
        }
        Command::Pools { at, store } => {
            let store = store
                .require(&config, "start `leadrelay serve` first")
                .await?;
            let at = at.unwrap_or_else(jiff::Timestamp::now);
            rules::pools(&config, store.as_ref(), at, &mut std::io::stdout()).await
        }
        Command::Dlq {
            action,
            data_dir,
            sqs,
        } => {
            if sqs {
                run_dlq_on_sqs(action).await
            } else {
                let db = embedded_store(&config, &data_dir)?;
                run_dlq(action, &db, &db).await
            }
        }
    }
}

#[cfg(feature = "aws")]
async fn dynamo_store() -> anyhow::Result<Box<dyn LeadStore>> {
    let table = std::env::var("LEADRELAY_TABLE").context("LEADRELAY_TABLE is not set")?;
    let sdk = leadrelay_aws::sdk_config().await;
    Ok(Box::new(leadrelay_aws::DynamoStore::new(
        aws_sdk_dynamodb_client(&sdk),
        &table,
    )))
}

#[cfg(not(feature = "aws"))]
async fn dynamo_store() -> anyhow::Result<Box<dyn LeadStore>> {
    anyhow::bail!(
        "this leadrelay was built without AWS support: cargo build --release -p leadrelay --features aws"
    )
}

async fn run_dlq(
    action: DlqAction,
    dead: &dyn DeadLetters,
    store: &dyn LeadStore,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    match action {
        DlqAction::List { filter } => {
            let total = dlq::list(dead, store, &filter.filter()?, &mut out).await?;
            println!("{total} dead letter(s) in all");
        }
        DlqAction::Show { message_id } => dlq::show(dead, store, &message_id, &mut out).await?,
        DlqAction::Replay {
            filter,
            dry_run,
            rate,
            native: _,
        } => {
            let count = dlq::replay(dead, &filter.filter()?, dry_run, rate, &mut out).await?;
            println!(
                "{count} message(s) {}",
                if dry_run {
                    "would be replayed"
                } else {
                    "replayed"
                }
            );
        }
        DlqAction::Purge { filter, yes } => {
            let filter = filter.filter()?;
            if !yes {
                use std::io::BufRead as _;
                dlq::list(dead, store, &filter, &mut out).await?;
                println!("Delete these for good? Type 'purge' to confirm:");
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if answer.trim() != "purge" {
                    println!("nothing deleted");
                    return Ok(());
                }
            }
            let count = dlq::purge(dead, &filter, &mut out).await?;
            println!("{count} message(s) purged");
        }
    }
    Ok(())
}

#[cfg(feature = "aws")]
async fn run_dlq_on_sqs(action: DlqAction) -> anyhow::Result<()> {
    use leadrelay_aws::bootstrap::Deployment;
    let deployment = Deployment::from_env(|name| std::env::var(name).ok())?;
    let sdk = leadrelay_aws::sdk_config().await;
    let store = leadrelay_aws::DynamoStore::new(aws_sdk_dynamodb_client(&sdk), &deployment.table);
    let queues = leadrelay_aws::SqsQueues::new(aws_sdk_sqs_client(&sdk), deployment.queues);
    if let DlqAction::Replay {
        filter,
        dry_run: false,
        rate,
        native: true,
    } = &action
    {
        let filter = filter.filter()?;
        if !filter.is_everything() {
            anyhow::bail!("--native moves whole queues: drop --lead and --older-than");
        }
        let stages = filter
            .stage
            .map_or_else(|| Stage::ALL.to_vec(), |s| vec![s]);
        for stage in stages {
            let task = queues
                .start_move_task(stage, i32::try_from(*rate).unwrap_or(500))
                .await?;
            println!("{stage}: SQS is moving the dead letters back (task {task})");
        }
        return Ok(());
    }
    run_dlq(action, &queues, &store).await
}

#[cfg(feature = "aws")]
fn aws_sdk_dynamodb_client(sdk: &aws_config::SdkConfig) -> leadrelay_aws::dynamo::Client {
    leadrelay_aws::dynamo::Client::new(sdk)
}

#[cfg(feature = "aws")]
fn aws_sdk_sqs_client(sdk: &aws_config::SdkConfig) -> leadrelay_aws::sqs::Client {
    leadrelay_aws::sqs::Client::new(sdk)
}

#[cfg(not(feature = "aws"))]
async fn run_dlq_on_sqs(_action: DlqAction) -> anyhow::Result<()> {
    anyhow::bail!(
        "this leadrelay was built without AWS support: cargo build --release -p leadrelay --features aws"
    )
}

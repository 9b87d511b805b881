//! `leadrelay`: run the embedded pipeline, send a signed test webhook, inspect a lead.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use leadrelay::embedded::Embedded;
use leadrelay::{cli, dlq};
use leadrelay_shared::config::Config;
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{DeadLetters, LeadStore};
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
        #[arg(long, env = "LEADRELAY_DATA_DIR", default_value = ".leadrelay/data")]
        data_dir: PathBuf,
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
        Command::Lead { id, data_dir } => cli::show_lead(&config, &data_dir, &id).await,
        Command::Dlq {
            action,
            data_dir,
            sqs,
        } => {
            if sqs {
                run_dlq_on_sqs(action).await
            } else {
                let db = leadrelay::embedded::Sqlite::open(
                    &data_dir,
                    leadrelay::embedded::QueueSettings {
                        max_receives: config.pipeline.max_receives,
                        visibility_timeout: std::time::Duration::from_secs(
                            config.pipeline.visibility_timeout_secs,
                        ),
                    },
                )?;
                run_dlq(action, &db, &db).await
            }
        }
    }
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
    let sdk = aws_config::load_from_env().await;
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

//! `leadrelay`: run the embedded pipeline, send a signed test webhook, inspect a lead.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use leadrelay::cli;
use leadrelay::embedded::Embedded;
use leadrelay_shared::config::Config;
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
    /// Show a stored lead and its timeline.
    Lead {
        id: String,
        #[arg(long, env = "LEADRELAY_DATA_DIR", default_value = ".leadrelay/data")]
        data_dir: PathBuf,
    },
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
    }
}

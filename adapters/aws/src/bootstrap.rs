//! Building the pipeline inside a Lambda container: configuration from environment variables
//! set by the template, the TOML configuration and the secrets from SSM Parameter Store, AWS
//! clients built once per container.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use aws_types::SdkConfig;
use leadrelay_shared::config::{Config, DeepChecks};
use leadrelay_shared::email::Mailbox;
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{NoChannels, SystemClock};
use leadrelay_shared::stages::Pipeline;
use tracing_subscriber::filter::{LevelFilter, Targets};

use crate::dynamo::DynamoStore;
use crate::sqs::{QueueUrls, SqsQueues};

pub const ENV_TABLE: &str = "LEADRELAY_TABLE";
pub const ENV_CONFIG_PARAMETER: &str = "LEADRELAY_CONFIG_PARAMETER";
pub const ENV_SECRETS_PATH: &str = "LEADRELAY_SECRETS_PATH";
/// Overrides `[notify.email] from`: the SES-verified sender of this deployment.
pub const ENV_SES_FROM: &str = "LEADRELAY_SES_FROM";
/// `true` where the report-hours function consumes the table's stream: the console then
/// keeps its report buckets in the table ([`DynamoStore::with_report_buckets`]).
pub const ENV_REPORT_HOURS_STREAM: &str = "LEADRELAY_REPORT_HOURS_STREAM";
/// How old an hour's last generation move must be before its bucket is kept: well past the
/// capture index's usual lag behind the write the move followed (under a second).
pub const REPORT_BUCKET_SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// `LEADRELAY_<STAGE>_QUEUE_URL` and `LEADRELAY_<STAGE>_DLQ_URL`.
pub fn queue_env(stage: Stage, dead: bool) -> String {
    format!(
        "LEADRELAY_{}_{}_URL",
        stage.as_str().to_ascii_uppercase(),
        if dead { "DLQ" } else { "QUEUE" }
    )
}

/// Where a deployment keeps its state, read from the environment.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub table: String,
    pub queues: QueueUrls,
    /// Needed by the functions; the DLQ tool works without it.
    pub config_parameter: Option<String>,
    pub secrets_path: Option<String>,
    /// The sender for SES, overriding the configuration's.
    pub ses_from: Option<String>,
    /// The report-hours function moves the report hours' generations from the table's stream.
    pub report_hours_stream: bool,
}

impl Deployment {
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let required = |name: &str| {
            env(name).with_context(|| format!("environment variable {name} is not set"))
        };
        let mut queues = QueueUrls::default();
        for stage in Stage::ALL {
            if let Some(url) = env(&queue_env(stage, false)) {
                queues.work.insert(stage, url);
            }
            if let Some(url) = env(&queue_env(stage, true)) {
                queues.dead.insert(stage, url);
            }
        }
        Ok(Deployment {
            table: required(ENV_TABLE)?,
            queues,
            config_parameter: env(ENV_CONFIG_PARAMETER).filter(|p| !p.is_empty()),
            secrets_path: env(ENV_SECRETS_PATH).filter(|p| !p.is_empty()),
            ses_from: env(ENV_SES_FROM).filter(|f| !f.is_empty()),
            report_hours_stream: match env(ENV_REPORT_HOURS_STREAM).as_deref().map(str::trim) {
                None | Some("" | "false") => false,
                Some("true") => true,
                Some(other) => {
                    anyhow::bail!("{ENV_REPORT_HOURS_STREAM} must be true or false, not {other:?}")
                }
            },
        })
    }
}

/// Every SecureString under `path`, by the last segment of its name (`/x/prod/WEBSITE_SECRETS`
/// → `WEBSITE_SECRETS`); the configuration's `*_env` keys name them.
pub async fn load_secrets(
    ssm: &aws_sdk_ssm::Client,
    path: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let mut secrets = HashMap::new();
    let mut pages = ssm
        .get_parameters_by_path()
        .path(path)
        .recursive(true)
        .with_decryption(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        // The error names the path, never a value.
        let page = page.with_context(|| format!("reading secrets under {path}"))?;
        for parameter in page.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                let short = name.rsplit('/').next().unwrap_or(name);
                secrets.insert(short.to_owned(), value.to_owned());
            }
        }
    }
    Ok(secrets)
}

/// The configuration text from its SSM parameter, with secrets resolved from `secrets`.
pub async fn load_config(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
    secrets: &HashMap<String, String>,
    checks: DeepChecks,
) -> anyhow::Result<Config> {
    let output = ssm
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .with_context(|| format!("reading the configuration parameter {parameter}"))?;
    let text = output
        .parameter()
        .and_then(|p| p.value())
        .with_context(|| format!("parameter {parameter} has no value"))?;
    let config = Config::parse_with(
        text,
        &format!("ssm:{parameter}"),
        &|name| secrets.get(name).cloned(),
        checks,
    )?;
    // A file beside the configuration does not exist in a Lambda container; refuse rather than
    // enrich silently without the table.
    if let Some(file) = &config.enrichment.companies_csv {
        anyhow::bail!(
            "parameter {parameter}: enrichment.companies_csv ({file}) is read from a file, which \
             the Lambda deployment does not have; list the companies inline as \
             [[enrichment.companies]] instead"
        );
    }
    // The same holds for the geolocation database: refuse rather than start without it.
    if let Some(geoip) = &config.enrichment.geoip {
        anyhow::bail!(
            "parameter {parameter}: enrichment.geoip.database ({}) is read from a file, which \
             the Lambda deployment does not have; remove [enrichment.geoip] and \"geoip\" from \
             enrichment.providers (the embedded mode supports it)",
            geoip.get_ref().database
        );
    }
    Ok(config)
}

/// What every function builds first: the configuration, the table and the queues. A function
/// adds only the adapters its stage calls (see the `*_pipeline` builders), so the others do
/// not link them.
struct Base {
    config: Config,
    store: Arc<DynamoStore>,
    queues: SqsQueues,
    /// The SSM secrets the configuration's `*_env` names were read from.
    secrets: HashMap<String, String>,
}

impl Base {
    async fn load(
        sdk: &SdkConfig,
        deployment: &Deployment,
        checks: DeepChecks,
    ) -> anyhow::Result<Self> {
        let ssm = aws_sdk_ssm::Client::new(sdk);
        let secrets = match &deployment.secrets_path {
            Some(path) => load_secrets(&ssm, path).await?,
            None => HashMap::new(),
        };
        let parameter = deployment
            .config_parameter
            .as_deref()
            .with_context(|| format!("environment variable {ENV_CONFIG_PARAMETER} is not set"))?;
        let mut config = load_config(&ssm, parameter, &secrets, checks).await?;
        if let (Some(email), Some(from)) = (config.notify.email.as_mut(), &deployment.ses_from) {
            from.parse::<Mailbox>()
                .with_context(|| format!("{ENV_SES_FROM} is not an e-mail address"))?;
            email.from = from.clone();
        }
        Ok(Base {
            config,
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &deployment.table,
            )),
            queues: SqsQueues::new(aws_sdk_sqs::Client::new(sdk), deployment.queues.clone()),
            secrets,
        })
    }

    /// The enrichment providers the configuration lists (GeoIP needs a database file, which
    /// `load_config` already refused).
    #[cfg(feature = "enrich")]
    fn providers(&self) -> anyhow::Result<leadrelay_shared::enrichment::Providers> {
        Ok(leadrelay_providers::from_config(
            &self.config,
            self.store.clone(),
            None,
        )?)
    }

    /// The pipeline without alert channels: a delivery attempted here is refused (only the
    /// notify function delivers).
    fn pipeline(self) -> Pipeline {
        Pipeline::new(
            Arc::new(self.config),
            self.store,
            Arc::new(self.queues),
            Arc::new(NoChannels),
            Arc::new(SystemClock),
        )
    }
}

/// The pipeline over DynamoDB and SQS as ingest, route, claim and sla build it once per
/// container: no enrichment providers and no alert channels, so they link neither.
pub async fn pipeline(sdk: &SdkConfig, deployment: &Deployment) -> anyhow::Result<Arc<Pipeline>> {
    Ok(Arc::new(
        Base::load(sdk, deployment, DeepChecks::default())
            .await?
            .pipeline(),
    ))
}

/// The enrich function's pipeline: with the enrichment providers the configuration lists. It
/// checks the reps' phone numbers against their numbering plans ([`DeepChecks::phones`]): it
/// links the phone metadata anyway, to clean the prospects' numbers, and the other functions
/// check only their shape.
#[cfg(feature = "enrich")]
pub async fn enrich_pipeline(
    sdk: &SdkConfig,
    deployment: &Deployment,
) -> anyhow::Result<Arc<Pipeline>> {
    let base = Base::load(sdk, deployment, DeepChecks::phones()).await?;
    let providers = base.providers()?;
    Ok(Arc::new(base.pipeline().with_providers(providers)))
}

/// The notify function's pipeline: the alert channels, with e-mail through Amazon SES when
/// the configuration has `[notify.email]` (its SMTP settings are ignored here) and SMS through
/// Amazon SNS for `provider = "sns"`. It renders the acknowledgement templates, so it checks
/// them at its start ([`DeepChecks::acknowledgements`]); the other functions link no template
/// engine.
#[cfg(feature = "notify")]
pub async fn notify_pipeline(
    sdk: &SdkConfig,
    deployment: &Deployment,
) -> anyhow::Result<Arc<Pipeline>> {
    let base = Base::load(sdk, deployment, DeepChecks::acknowledgements()).await?;
    let channels = channels(sdk, &base.config)?;
    Ok(Arc::new(base.pipeline().with_notifier(channels)))
}

/// Every stage in one pipeline, as the end-to-end tests run the functions' code in one process.
#[cfg(all(feature = "enrich", feature = "notify"))]
pub async fn every_stage_pipeline(
    sdk: &SdkConfig,
    deployment: &Deployment,
) -> anyhow::Result<Arc<Pipeline>> {
    let base = Base::load(sdk, deployment, DeepChecks::all()).await?;
    let providers = base.providers()?;
    let channels = channels(sdk, &base.config)?;
    Ok(Arc::new(
        base.pipeline()
            .with_providers(providers)
            .with_notifier(channels),
    ))
}

#[cfg(feature = "notify")]
fn channels(sdk: &SdkConfig, config: &Config) -> anyhow::Result<Arc<leadrelay_channels::Channels>> {
    use leadrelay_shared::config::SmsProvider;

    let mut channels = leadrelay_channels::Channels::from_config(
        &config.notify,
        // On Lambda the "terminal" is the function's log stream.
        Box::new(std::io::stdout()),
    )?;
    if let Some(sms) = config
        .notify
        .sms
        .as_ref()
        .filter(|s| s.provider == SmsProvider::Sns)
    {
        channels = channels.with_sms_sender(Arc::new(crate::sns::SnsSms::new(
            aws_sdk_sns::Client::new(sdk),
            sms.from.clone(),
        )));
    }
    if config.notify.email.is_some() {
        channels = channels.with_mailer(Arc::new(crate::ses::SesMailer::new(
            aws_sdk_sesv2::Client::new(sdk),
        )));
    }
    Ok(Arc::new(channels))
}

/// What the console function serves from: the pipeline (its queues replay dead letters), the
/// table as the console's store, and the SQS dead-letter queues.
pub struct ConsoleParts {
    pub pipeline: Arc<Pipeline>,
    pub store: Arc<DynamoStore>,
    pub dead_letters: Arc<SqsQueues>,
    /// The SSM secrets, by the names `*_env` keys use: what a pasted configuration (the
    /// console's what-if) is read with.
    pub secrets: HashMap<String, String>,
}

/// The console function's start-up: the same pipeline as claim's, and the table and queues
/// as the console's store and dead letters.
pub async fn console_from_environment() -> anyhow::Result<ConsoleParts> {
    start(|sdk, deployment| async move {
        let mut base = Base::load(&sdk, &deployment, DeepChecks::default()).await?;
        if deployment.report_hours_stream {
            // The dashboard reads through the pipeline's store.
            base.store = Arc::new(
                (*base.store)
                    .clone()
                    .with_report_buckets(REPORT_BUCKET_SETTLE),
            );
        }
        let store = base.store.clone();
        let dead_letters = Arc::new(base.queues.clone());
        let secrets = base.secrets.clone();
        Ok(ConsoleParts {
            pipeline: Arc::new(base.pipeline()),
            store,
            dead_letters,
            secrets,
        })
    })
    .await
}

/// The report-hours function's start-up: the table alone. It counts lead writes per hour
/// from the stream's records, so it needs no configuration or secrets.
pub async fn report_hours_from_environment() -> anyhow::Result<DynamoStore> {
    start(|sdk, deployment| async move {
        Ok(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &deployment.table,
        ))
    })
    .await
}

/// The start-up of ingest, route, claim and sla: [`pipeline`] from the environment.
pub async fn from_environment() -> anyhow::Result<Arc<Pipeline>> {
    start(|sdk, deployment| async move { pipeline(&sdk, &deployment).await }).await
}

/// The enrich function's start-up: [`enrich_pipeline`] from the environment.
#[cfg(feature = "enrich")]
pub async fn enrich_from_environment() -> anyhow::Result<Arc<Pipeline>> {
    start(|sdk, deployment| async move { enrich_pipeline(&sdk, &deployment).await }).await
}

/// The notify function's start-up: [`notify_pipeline`] from the environment.
#[cfg(feature = "notify")]
pub async fn notify_from_environment() -> anyhow::Result<Arc<Pipeline>> {
    start(|sdk, deployment| async move { notify_pipeline(&sdk, &deployment).await }).await
}

/// AWS configuration from the environment ([`crate::lambda_sdk_config`]), then `build`, timed: the log line gives the init a
/// cold start pays. Generic, so each function links only the builder it names.
async fn start<T, F, Fut>(build: F) -> anyhow::Result<T>
where
    F: FnOnce(SdkConfig, Deployment) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = std::time::Instant::now();
    let sdk = crate::lambda_sdk_config(|name| std::env::var(name).ok())?;
    let deployment = Deployment::from_env(|name| std::env::var(name).ok())?;
    let built = build(sdk, deployment).await?;
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1000.0,
        "clients built, configuration and secrets loaded"
    );
    Ok(built)
}

/// Structured JSON logs, as CloudWatch Logs Insights reads them best.
pub fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .without_time() // CloudWatch stamps every line
        .finish()
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .init();
}

/// The levels `RUST_LOG` sets: `target=level` directives and a bare default level, as
/// `info,leadrelay_aws=debug`; `info` when it is unset or unreadable. Not `EnvFilter`: its
/// span and field filters link a regular-expression engine into every function.
fn log_filter(directives: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let Some(directives) = directives else {
        return info();
    };
    // Empty directives are skipped, as `EnvFilter` skips them (`info,` is `info`).
    let directives: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return info();
    }
    directives.join(",").parse().unwrap_or_else(|_| info())
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    use super::{log_filter, Deployment, ENV_REPORT_HOURS_STREAM, ENV_TABLE};

    #[test]
    fn report_buckets_are_kept_only_where_the_template_says_its_stream_is_consumed() {
        let with = |value: Option<&str>| {
            Deployment::from_env(|name| match name {
                ENV_TABLE => Some("leads".to_owned()),
                ENV_REPORT_HOURS_STREAM => value.map(str::to_owned),
                _ => None,
            })
        };
        assert!(!with(None).expect("unset").report_hours_stream);
        assert!(!with(Some("false")).expect("false").report_hours_stream);
        assert!(with(Some("true")).expect("true").report_hours_stream);
        let error = with(Some("yes")).expect_err("not a bool");
        assert!(
            error.to_string().contains(ENV_REPORT_HOURS_STREAM),
            "{error}"
        );
    }

    fn default_level(filter: &Targets) -> Option<LevelFilter> {
        filter.default_level()
    }

    #[test]
    fn the_log_filter_is_info_unless_rust_log_says_otherwise() {
        for unset in [
            None,
            Some(""),
            Some(" , "),
            Some("leadrelay=loud"),
            Some("a[{x}]=info=2"),
        ] {
            let filter = log_filter(unset);
            assert_eq!(default_level(&filter), Some(LevelFilter::INFO), "{unset:?}");
            assert!(filter.would_enable("leadrelay_aws::dynamo", &Level::INFO));
            assert!(!filter.would_enable("leadrelay_aws::dynamo", &Level::DEBUG));
        }
    }

    #[test]
    fn the_log_filter_reads_a_default_and_per_target_levels() {
        let filter = log_filter(Some("warn,leadrelay_aws=debug,"));
        assert_eq!(default_level(&filter), Some(LevelFilter::WARN));
        assert!(filter.would_enable("leadrelay_aws::sqs", &Level::DEBUG));
        assert!(!filter.would_enable("leadrelay_shared::stages", &Level::INFO));
        assert!(filter.would_enable("leadrelay_shared::stages", &Level::WARN));
        let off = log_filter(Some("off"));
        assert!(!off.would_enable("leadrelay_aws", &Level::ERROR));
    }
}

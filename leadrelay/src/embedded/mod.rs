//! The embedded mode: every stage in one process over one SQLite file, with the same stage code
//! as the Lambda functions and SQS's queue semantics.

pub mod ops;
pub mod server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use leadrelay_channels::operations::OperationsChannel;
use leadrelay_channels::Channels;
use leadrelay_email::SmtpMailer;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{Queue as _, Received, SystemClock};
use leadrelay_shared::stages::sla;
use leadrelay_shared::stages::{Deferred, Outcome, Pipeline, StageError};
use leadrelay_web::{router, Api};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use leadrelay_sqlite::{QueueSettings, Sqlite};
pub use ops::DeadLetterAlarm;

/// How long an idle worker sleeps before looking again for messages whose retry delay ended.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Workers per stage; each takes a batch and works it (route: in order; the others at once).
/// Notify waits on channels and on durable receipts, not on the CPU: more leads in flight.
pub fn workers_for(stage: Stage) -> usize {
    match stage {
        Stage::Notify => 6,
        Stage::Enrich | Stage::Route => 2,
    }
}

/// A running pipeline: its store and the stage code over it.
pub struct Embedded {
    pub db: Sqlite,
    pub pipeline: Arc<Pipeline>,
    /// Reports non-empty dead-letter queues (to `[operations]`, and in the log).
    alarm: Arc<DeadLetterAlarm>,
}

impl Embedded {
    /// Opens the store in `data_dir` and wires the stage code to it; alerts for the terminal
    /// go to `terminal`.
    pub fn open(
        config: Config,
        data_dir: &Path,
        terminal: Box<dyn std::io::Write + Send>,
    ) -> anyhow::Result<Self> {
        let db = Sqlite::open(data_dir, QueueSettings::from_config(&config.pipeline))
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let channels = Channels::from_config(&config.notify, terminal)
            .context("building the alert channels")?;
        // E-mail over SMTP; a [notify.email] without a server fails the start, naming the key.
        let channels = match &config.notify.email {
            Some(email) => channels.with_mailer(Arc::new(SmtpMailer::new(email)?)),
            None => channels,
        };
        // GeoIP reads a database file, which only this runtime has (`load` resolved its path).
        let geoip = match &config.enrichment.geoip {
            Some(geoip) => Some(leadrelay_geoip::Geoip::budgeted(
                geoip.get_ref(),
                config.enrichment.provider_budget_ms,
            )?),
            None => None,
        };
        let providers = leadrelay_providers::from_config(&config, Arc::new(db.clone()), geoip)?;
        let channels = Arc::new(channels);
        let alarm = Arc::new(DeadLetterAlarm::new(
            db.clone(),
            OperationsChannel::from_config(&config, channels.clone()),
            config.operations.remind_every.0,
        ));
        let pipeline = Arc::new(
            Pipeline::new(
                Arc::new(config),
                Arc::new(db.clone()),
                Arc::new(db.clone()),
                channels,
                Arc::new(SystemClock),
            )
            .with_providers(providers),
        );
        Ok(Embedded {
            db,
            pipeline,
            alarm,
        })
    }

    /// The dead-letter alarm, for a check on demand (tests, a future CLI).
    pub fn alarm(&self) -> &DeadLetterAlarm {
        &self.alarm
    }

    /// Starts the stage workers; they run until the returned set is dropped or aborted.
    pub fn start_workers(&self) -> JoinSet<()> {
        let mut workers = JoinSet::new();
        let db = self.db.clone();
        workers.spawn(async move {
            match db.requeue_orphans().await {
                Ok(0) => {}
                Ok(n) => info!(requeued = n, "queued captured leads a crash left unqueued"),
                Err(error) => warn!(%error, "could not look for unqueued leads"),
            }
        });
        for stage in Stage::ALL {
            for _ in 0..workers_for(stage) {
                workers.spawn(work(self.pipeline.clone(), self.db.clone(), stage));
            }
        }
        workers.spawn(watch_slas(self.pipeline.clone()));
        workers.spawn(sample_backlog(
            self.db.clone(),
            self.pipeline.config.pipeline.max_backlog,
        ));
        workers.spawn(watch_dead_letters(
            self.alarm.clone(),
            self.pipeline.config.operations.check_every.0,
        ));
        workers
    }

    /// Serves the HTTP API on `listener` with the workers running, until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut workers = self.start_workers();
        let ready = Arc::new(AtomicBool::new(true));
        // The console (when `[console]` is configured) on the same server, over the same store.
        let console = leadrelay_console::Console::new(
            self.pipeline.clone(),
            Arc::new(self.db.clone()),
            Some(Arc::new(self.db.clone())),
        );
        let app = router(Api::new(self.pipeline.clone(), ready.clone()))
            .merge(leadrelay_console::router(console));
        let address: SocketAddr = listener.local_addr()?;
        let open_files = server::raise_open_file_limit();
        let limits = server::Limits::new(&self.pipeline.config.server, open_files);
        info!(
            %address,
            open_files = open_files.unwrap_or_default(),
            max_connections = limits.max_connections,
            "leadrelay listening"
        );
        server::serve(listener, app, limits, shutdown)
            .await
            .context("serving HTTP")?;
        ready.store(false, Ordering::Release);
        // Messages in flight reappear after their visibility timeout: nothing is lost.
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        info!("leadrelay stopped");
        Ok(())
    }
}

/// sla-watch on a timer, as the EventBridge schedule runs it on AWS: escalates leads left
/// unclaimed past their SLA and releases held alerts at the opening.
async fn watch_slas(pipeline: Arc<Pipeline>) {
    let every = Duration::from_secs(pipeline.config.escalation.check_every_secs);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = sla::sweep(&pipeline).await {
            warn!(stage = "sla", %error, "sla-watch run failed; the next run tries again");
        }
    }
}

/// How often the backlog that ingest sheds load on is measured.
const BACKLOG_SAMPLE: Duration = Duration::from_millis(100);

/// Measures the stage queues' backlog for ingest's admission check, and logs when shedding
/// starts and stops (the 429s themselves are logged at debug only).
async fn sample_backlog(db: Sqlite, limit: u64) {
    let mut shedding = false;
    let mut ticks = tokio::time::interval(BACKLOG_SAMPLE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let waiting = match db.sample_backlog().await {
            Ok(backlog) => backlog.waiting,
            Err(error) => {
                warn!(%error, "could not measure the queue backlog");
                continue;
            }
        };
        let over = limit > 0 && waiting > limit;
        if over != shedding {
            shedding = over;
            if over {
                warn!(
                    waiting,
                    limit,
                    "backlog over [pipeline] max_backlog: ingest answers 429 until it drains"
                );
            } else {
                info!(
                    waiting,
                    limit, "backlog back under [pipeline] max_backlog: ingest accepts again"
                );
            }
        }
    }
}

/// The dead-letter alarm on a timer, as CloudWatch watches the DLQs on AWS.
async fn watch_dead_letters(alarm: Arc<DeadLetterAlarm>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = alarm.check(jiff::Timestamp::now()).await {
            warn!(%error, "could not look at the dead-letter queues; the next check tries again");
        }
    }
}

/// One stage worker. Route takes a batch and works it in order; the other stages keep up to
/// `batch_size` messages in flight and take another as soon as one finishes, so a slow lead
/// (a channel retrying, an fsync) never holds up the leads received with it.
async fn work(pipeline: Arc<Pipeline>, db: Sqlite, stage: Stage) {
    if stage == Stage::Route {
        work_in_order(pipeline, db).await
    } else {
        work_streaming(pipeline, db, stage).await
    }
}

/// Routing decisions read and guard the same counters and pool ledgers: run at once, all but
/// one would lose the guard and decide again, so a route batch is decided in order, on one
/// read of the figures, and written in one commit (`Pipeline::handle_route_batch`).
async fn work_in_order(pipeline: Arc<Pipeline>, db: Sqlite) {
    let stage = Stage::Route;
    let batch = pipeline.config.pipeline.batch_size;
    loop {
        let Some(messages) = receive_or_wait(&db, stage, batch).await else {
            continue;
        };
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let routed = pipeline.handle_route_batch(&bodies).await;
        let mut done = Vec::with_capacity(messages.len());
        for (message, outcome) in messages.iter().zip(routed.outcomes) {
            if let Some(receipt) = settle(&pipeline, stage, message, outcome).await {
                done.push(receipt);
            }
        }
        delete_finished(&db, stage, &done).await;
    }
}

/// Up to `batch_size` messages at once, refilled once half of them have finished (or after
/// the idle poll), so a slow lead never holds up the rest; the finished ones are deleted in one
/// write just before each refill. Refilling on every finish or every send would double the
/// committer's work (a receive is a write).
async fn work_streaming(pipeline: Arc<Pipeline>, db: Sqlite, stage: Stage) {
    use futures::stream::{FuturesUnordered, StreamExt as _};
    let capacity = pipeline.config.pipeline.batch_size.max(1) as usize;
    let refill_at = capacity / 2;
    let pipeline_ref = pipeline.as_ref();
    let mut running = FuturesUnordered::new();
    let mut done = Vec::new();
    let mut polled = true;
    loop {
        if running.len() <= refill_at || polled {
            delete_finished(&db, stage, &done).await;
            done.clear();
            let room = u32::try_from(capacity - running.len()).unwrap_or(u32::MAX);
            let received = if running.is_empty() {
                receive_or_wait(&db, stage, room).await
            } else if room > 0 {
                match db.receive(stage, room).await {
                    Ok(messages) => Some(messages),
                    Err(error) => {
                        warn!(stage = %stage, %error, "receive failed");
                        None
                    }
                }
            } else {
                None
            };
            for message in received.unwrap_or_default() {
                running.push(async move {
                    let outcome = pipeline_ref.handle(stage, &message.body).await;
                    (message, outcome)
                });
            }
        }
        if running.is_empty() {
            continue;
        }
        // The next to finish, or the idle poll (to take new messages while the rest are slow).
        let mut finished = tokio::select! {
            finished = running.next() => finished,
            _ = tokio::time::sleep(IDLE_POLL) => None,
        };
        polled = finished.is_none();
        while let Some((message, outcome)) = finished {
            if let Some(receipt) = settle(&pipeline, stage, &message, outcome).await {
                done.push(receipt);
            }
            // Whatever else has finished meanwhile is settled now too.
            finished = futures::FutureExt::now_or_never(running.next()).flatten();
        }
        if running.is_empty() {
            delete_finished(&db, stage, &done).await;
            done.clear();
        }
    }
}

/// Up to `max` messages; `None` (after waiting for a send or the idle poll) when there are none.
async fn receive_or_wait(db: &Sqlite, stage: Stage, max: u32) -> Option<Vec<Received>> {
    match db.receive(stage, max).await {
        Ok(messages) if !messages.is_empty() => return Some(messages),
        Ok(_) => {}
        Err(error) => {
            warn!(stage = %stage, %error, "receive failed");
            tokio::time::sleep(IDLE_POLL).await;
            return None;
        }
    }
    tokio::select! {
        _ = db.sent_to(stage) => {}
        _ = tokio::time::sleep(IDLE_POLL) => {}
    }
    None
}

/// The receipt to delete after a success; after a failure, the retry (or, once the retry
/// schedule is spent, the dead letter) is arranged here and there is nothing to delete.
async fn settle(
    pipeline: &Pipeline,
    stage: Stage,
    message: &Received,
    outcome: Result<Outcome, StageError>,
) -> Option<String> {
    match outcome {
        Ok(_) => Some(message.receipt.clone()),
        Err(failure) => {
            match pipeline.defer(stage, message, &failure).await {
                Ok(Deferred::Retrying(_) | Deferred::DeadLettered) => {}
                Err(error) => warn!(stage = %stage, %error, "could not defer a failed message"),
            }
            None
        }
    }
}

async fn delete_finished(db: &Sqlite, stage: Stage, done: &[String]) {
    if done.is_empty() {
        return;
    }
    if let Err(error) = db.delete_many(stage, done).await {
        warn!(stage = %stage, %error, "could not delete finished messages; they will be redelivered");
    }
}

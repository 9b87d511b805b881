//! The stage code over a real SQLite store on a hand-moved clock, with no workers: the test
//! runs each stage itself, at the times it chooses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_channels::Channels;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{Envelope, Lead, Stage};
use leadrelay_shared::ports::{LeadStore, Queue};
use leadrelay_shared::stages::sla;
use leadrelay_shared::stages::Pipeline;

use super::{HandClock, Terminal};

/// The store in `dir` with the example's queue settings: 5 receives, a 30 s visibility timeout.
pub fn open_store(dir: &Path) -> Sqlite {
    Sqlite::open(
        dir,
        QueueSettings {
            max_receives: 5,
            visibility_timeout: Duration::from_secs(30),
        },
    )
    .expect("open store")
}

/// A pipeline the test works by hand: the store, the stage code over it, the clock it reads
/// and what the terminal channel printed.
pub struct ManualPipeline {
    pub db: Sqlite,
    pub pipeline: Arc<Pipeline>,
    pub clock: Arc<HandClock>,
    pub terminal: Terminal,
    _dir: tempfile::TempDir,
}

impl ManualPipeline {
    /// `config` with the clock at `at`, alerting on the terminal (1 s HTTP timeout).
    pub fn new(config: Config, at: Timestamp) -> ManualPipeline {
        ManualPipeline::with_channels(config, at, Duration::from_secs(1), |channels| channels)
    }

    /// Like [`ManualPipeline::new`], with this HTTP timeout for the channels and `more` added
    /// to them (a mailer, say).
    pub fn with_channels(
        config: Config,
        at: Timestamp,
        http_timeout: Duration,
        more: impl FnOnce(Channels) -> Channels,
    ) -> ManualPipeline {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_store(dir.path());
        let clock = Arc::new(HandClock::new(at));
        let terminal = Terminal::default();
        let channels = Channels::new(http_timeout, Box::new(terminal.clone())).expect("channels");
        let pipeline = Arc::new(Pipeline::new(
            Arc::new(config),
            Arc::new(db.clone()),
            Arc::new(db.clone()),
            Arc::new(more(channels)),
            clock.clone(),
        ));
        ManualPipeline {
            db,
            pipeline,
            clock,
            terminal,
            _dir: dir,
        }
    }

    pub async fn lead(&self, id: &str) -> Lead {
        self.db.get_lead(id).await.expect("read").expect("stored")
    }

    /// Runs sla-watch, then the notify stage for whatever it sent.
    pub async fn sweep(&self) -> sla::SweepReport {
        let report = sla::sweep(&self.pipeline).await.expect("sla-watch");
        for message in self.db.receive(Stage::Notify, 50).await.expect("receive") {
            self.pipeline
                .handle(Stage::Notify, &message.body)
                .await
                .expect("notify");
            self.db
                .delete(Stage::Notify, &message.receipt)
                .await
                .expect("delete");
        }
        report
    }

    /// Works every message waiting in any stage's queue until none is left.
    pub async fn drain(&self) {
        loop {
            let mut worked = false;
            for stage in Stage::ALL {
                for message in self.db.receive(stage, 10).await.expect("receive") {
                    worked = true;
                    self.pipeline
                        .consume(stage, &message)
                        .await
                        .expect("consumed");
                }
            }
            if !worked {
                break;
            }
        }
    }

    /// Runs `stage` on the lead, as its worker would; panics, naming it, if it fails.
    pub async fn handle(&self, stage: Stage, id: &str) {
        let envelope = Envelope::new(id, stage, &format!("trace-{id}")).to_json();
        self.pipeline
            .handle(stage, &envelope)
            .await
            .unwrap_or_else(|e| panic!("{stage} failed for {id}: {e}"));
    }
}

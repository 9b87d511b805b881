//! The embedded store and queues in one SQLite file (WAL).
//!
//! Every write goes through one committer thread that groups whatever writes are waiting into a
//! single transaction. Each write runs in its own savepoint, so one failed write never undoes
//! its batch-mates. A durable write (the lead behind a 202, a delivery receipt) is answered only
//! once the WAL holding its commit is fsync'd, by a syncer thread: one fsync serves every durable
//! write committed since the last, and the committer goes on committing meanwhile. Reads use
//! their own connections and see only committed data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use leadrelay_shared::config::PipelineConfig;
use leadrelay_shared::console::{ConsoleAction, Session};
use leadrelay_shared::model::{Envelope, Lead, LeadState, Stage, StageFailure, UnmatchedActivity};
use leadrelay_shared::ports::{
    decode_stored_lead, skip_undecodable, Advance, Advanced, Backlog, BuiltHour, ConsoleStore,
    Created, DeadLetter, DeadLetters, DeliveryReceipt, DeliveryStart, EnrichmentCache, LeadStore,
    Outgoing, PostedMessage, Queue, QueueError, Received, ReplayGuard, ReportBucket, ReportHour,
    StoreError,
};
use leadrelay_shared::report::{rollup, LeadFacts};
use leadrelay_shared::routing::duplicates::ContactLookup;
use leadrelay_shared::routing::effects::{ContactWrite, CounterBump, Effects, LedgerWrite};
use leadrelay_shared::routing::ledger::PoolLedger;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::error;

/// Writes waiting longer than this many in one transaction are left for the next.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS leads (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    state        TEXT NOT NULL,
    captured_at  INTEGER NOT NULL,
    sla_due_at   INTEGER,
    body         TEXT NOT NULL,
    last_failure TEXT,
    -- The lead's report facts (LeadFacts as JSON), written with every body; NULL for a row
    -- written before they existed, until a report reads it.
    facts        TEXT,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS leads_captured ON leads (captured_at);
-- One row per UTC capture hour that ever held a lead (hour = floor(captured_at / 3,600,000)).
-- generation moves in the same transaction as every write of the facts of a lead captured in
-- that hour; bucket is the hour's report records (encoded, versioned) as built from its facts
-- read at built_generation, under the configuration fingerprint. A bucket whose
-- built_generation is not the generation is stale.
CREATE TABLE IF NOT EXISTS report_hours (
    hour             INTEGER PRIMARY KEY,
    generation       INTEGER NOT NULL,
    built_generation INTEGER,
    fingerprint      INTEGER,
    bucket           BLOB
);
-- Sparse in spirit: only leads with an open SLA carry a deadline.
CREATE INDEX IF NOT EXISTS leads_sla_due ON leads (sla_due_at) WHERE sla_due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- One round-robin ledger per pool and reset period; body is the PoolLedger as JSON.
CREATE TABLE IF NOT EXISTS ledgers (
    pool    TEXT NOT NULL,
    period  TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (pool, period)
);
-- The contact index: each person's (normalised e-mail) latest lead routed normally, which
-- a second lead from them within the merge window joins.
CREATE TABLE IF NOT EXISTS contacts (
    contact   TEXT PRIMARY KEY,
    lead_id   TEXT NOT NULL,
    routed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    lead_id      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    lease_until  INTEGER,
    delivered_at INTEGER,
    PRIMARY KEY (lead_id, channel)
);
-- The messages a delivery posted and a claim edits in place (the Slack app's channel and ts),
-- one per delivery receipt.
CREATE TABLE IF NOT EXISTS posted_messages (
    lead_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts      TEXT NOT NULL,
    PRIMARY KEY (lead_id, receipt)
);
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    lead_id       TEXT,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    last_error    TEXT,
    dead_at       INTEGER
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at);
-- Enrichment answers per domain; expires_at in milliseconds, expired rows pruned on write.
CREATE TABLE IF NOT EXISTS cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_expiry ON cache (expires_at);
-- Signed bodies of sources whose scheme signs no timestamp, each naming the lead it made, for
-- the source's replay window: expires_at in milliseconds, checked on read, pruned on write.
CREATE TABLE IF NOT EXISTS bodies (
    source     TEXT NOT NULL,
    digest     TEXT NOT NULL,
    lead_id    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (source, digest)
);
CREATE INDEX IF NOT EXISTS bodies_expiry ON bodies (expires_at);
-- Activity events (touches, meetings, outcomes) that matched no lead: kept for the handoff
-- audit, once per activity key.
CREATE TABLE IF NOT EXISTS unmatched_activity (
    key         TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS unmatched_activity_received ON unmatched_activity (received_at);
-- One row per dead-letter queue the operations alert has reported non-empty.
CREATE TABLE IF NOT EXISTS alarms (
    name        TEXT PRIMARY KEY,
    raised_at   INTEGER NOT NULL,
    notified_at INTEGER NOT NULL
);
-- The console's signed-in sessions under the SHA-256 of their cookie's id; body is the
-- Session as JSON; expires_at in milliseconds, checked on read, pruned when a session starts.
CREATE TABLE IF NOT EXISTS console_sessions (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
-- The console's audit log: at in milliseconds, body the ConsoleAction as JSON; id orders the
-- entries of one millisecond. Entries older than the audit retention are pruned on write.
CREATE TABLE IF NOT EXISTS console_audit (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_audit_at ON console_audit (at);
"#;

/// The capture hour of a `leads` row in SQL: `captured_at` (ms) floored to whole hours, as
/// [`leadrelay_shared::report::rollup::hour_of`] does (SQLite's `/` truncates toward zero).
const CAPTURE_HOUR: &str =
    "(captured_at - ((captured_at % 3600000) + 3600000) % 3600000) / 3600000";

/// Moves the report generation of the capture hour of lead `?1`: in the transaction of every
/// write of its facts column, so a report bucket built before it is seen to be stale.
fn bump_report_hour(conn: &Connection, lead_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        &format!(
            "INSERT INTO report_hours (hour, generation)
             SELECT {CAPTURE_HOUR}, 1 FROM leads WHERE id = ?1
             ON CONFLICT (hour) DO UPDATE SET generation = generation + 1"
        ),
        params![lead_id],
    )
    .map_err(StoreError::unavailable)?;
    Ok(())
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![name],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Brings a database made by an earlier version up to [`SCHEMA`]: columns added since.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_facts: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('leads') WHERE name = 'facts'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_facts {
        // Existing rows keep NULL facts; `lead_facts` fills them from the body on first read.
        conn.execute_batch("ALTER TABLE leads ADD COLUMN facts TEXT")?;
    }
    Ok(())
}

/// The lead's report facts as stored beside its body.
fn encode_facts(lead: &Lead) -> Result<String, StoreError> {
    serde_json::to_string(&LeadFacts::of(lead)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The name of a stage's dead-letter queue in the `messages` table.
pub fn dlq_name(stage: Stage) -> String {
    format!("{}-dlq", stage.as_str())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// The group commit's outcome, shared by every write in the group.
type Committed = Result<(), CommitFailed>;

/// Why a group commit did not become durable; every write in the group gets it as the source
/// of its [`StoreError::Unavailable`].
#[derive(Debug, Clone, thiserror::Error)]
enum CommitFailed {
    #[error("{0}")]
    Sql(Arc<rusqlite::Error>),
    #[error("syncing the WAL: {0}")]
    Sync(Arc<std::io::Error>),
    #[error("the WAL syncer has stopped")]
    SyncerStopped,
}
type Reply = Box<dyn FnOnce(Committed) + Send>;
/// Runs the write on the connection, inside the batch's transaction; given `None`, runs
/// nothing and answers that the write was not made.
type Work = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// A write for the committer, and whether its commit must reach the disk before the answer.
struct Job {
    durable: bool,
    work: Work,
}

/// Which writes are fsync'd before they are acknowledged.
///
/// Every commit is atomic and survives a crash of the process (WAL). A commit marked durable
/// also survives power loss: the lead behind a 202, and a delivery's attempt (its lease,
/// taken before the channel is called) and receipt (written as soon as it answered), so that
/// a power cut cannot erase what was sent and send it again. The others (queue moves, stage
/// progress) may roll back to an earlier consistent point after power loss; the stages then
/// redo idempotent work, and captured leads without a message are queued again at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Fsync,
    Atomic,
}

/// One measurement of the stage queues' backlog, and the finished count it was taken at.
#[derive(Debug, Clone, Copy)]
struct BacklogSample {
    at: Instant,
    finished: u64,
    backlog: Backlog,
}

/// Queue settings the SQS redrive policy would hold.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub max_receives: u32,
    pub visibility_timeout: Duration,
}

impl QueueSettings {
    /// The settings `[pipeline]` configures.
    pub fn from_config(pipeline: &PipelineConfig) -> Self {
        QueueSettings {
            max_receives: pipeline.max_receives,
            visibility_timeout: Duration::from_secs(pipeline.visibility_timeout_secs),
        }
    }
}

/// The SQLite database behind both the lead store and the queues.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    settings: QueueSettings,
    wakeups: HashMap<Stage, Notify>,
    /// Messages the stages finished (deleted) since the store opened.
    finished: AtomicU64,
    /// The last backlog sample (see `sample_backlog`); none before the first.
    sample: Mutex<Option<BacklogSample>>,
    /// When the store opened: the first sample's drain rate counts from here.
    opened: Instant,
    /// Dropped with the store, which stops the checkpointer thread.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
}

fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Room for every statement this adapter runs: an evicted statement is parsed again.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

impl Sqlite {
    /// Opens (creating if needed) `leadrelay.db` in `data_dir` and starts the committer thread.
    pub fn open(data_dir: &Path, settings: QueueSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::unavailable)?;
        let path = data_dir.join("leadrelay.db");
        let writer = open(&path, false).map_err(StoreError::unavailable)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(StoreError::unavailable)?;
        let had_report_hours =
            has_table(&writer, "report_hours").map_err(StoreError::unavailable)?;
        writer
            .execute_batch(SCHEMA)
            .map_err(StoreError::unavailable)?;
        migrate(&writer).map_err(StoreError::unavailable)?;
        if !had_report_hours {
            // Leads written before the table existed: their hours are listed (no bucket yet),
            // since an hour without a row is read as holding no lead.
            writer
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO report_hours (hour, generation)
                         SELECT DISTINCT {CAPTURE_HOUR}, 1 FROM leads"
                    ),
                    [],
                )
                .map_err(StoreError::unavailable)?;
        }

        let (jobs, receiver) = mpsc::channel::<Job>(8192);
        let (syncer, to_sync) = std::sync::mpsc::channel::<Vec<Reply>>();
        let wal = data_dir.join("leadrelay.db-wal");
        std::thread::Builder::new()
            .name("sqlite-syncer".into())
            .spawn(move || sync_loop(wal, to_sync))
            .map_err(StoreError::unavailable)?;
        // Checkpoints copy the WAL into the database on their own connection and thread, so
        // the committer never stops to do one (SQLite's automatic checkpoint is off above).
        let checkpoints = open(&path, false).map_err(StoreError::unavailable)?;
        let (stop_checkpoints, stop) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || checkpoint_loop(checkpoints, stop))
            .map_err(StoreError::unavailable)?;
        std::thread::Builder::new()
            .name("sqlite-committer".into())
            .spawn(move || commit_loop(writer, receiver, syncer))
            .map_err(StoreError::unavailable)?;
        Ok(Sqlite {
            inner: Arc::new(Inner {
                path,
                jobs,
                readers: Mutex::new(Vec::new()),
                settings,
                wakeups: Stage::ALL.into_iter().map(|s| (s, Notify::new())).collect(),
                finished: AtomicU64::new(0),
                sample: Mutex::new(None),
                opened: Instant::now(),
                _stop_checkpoints: stop_checkpoints,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Drops every stored report bucket (the hours and their generations stay): the next
    /// dashboard rebuilds them from the facts. Returns how many were dropped.
    pub async fn forget_report_buckets(&self) -> Result<usize, StoreError> {
        self.write(Durability::Atomic, |conn| {
            exec(
                conn,
                "UPDATE report_hours SET built_generation = NULL, fingerprint = NULL,
                                         bucket = NULL
                 WHERE bucket IS NOT NULL",
                [],
            )
            .map_err(StoreError::unavailable)
        })
        .await
    }

    pub fn settings(&self) -> QueueSettings {
        self.inner.settings
    }

    /// Runs `work` inside the next group commit and answers once it is durable.
    async fn write<R, F>(&self, durability: Durability, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work: Work = Box::new(move |conn: Option<&Connection>| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, work),
                None => Err(StoreError::unavailable_because(
                    "the write's transaction was rolled back by the database; retry",
                )),
            };
            Box::new(move |committed: Committed| {
                let committed = committed.map_err(StoreError::unavailable);
                let _ = tx.send(committed.and(result));
            })
        });
        let job = Job {
            durable: durability == Durability::Fsync,
            work,
        };
        self.inner
            .jobs
            .send(job)
            .await
            .map_err(|_| StoreError::unavailable_because("the committer has stopped"))?;
        rx.await
            .map_err(|_| StoreError::unavailable_because("the committer dropped a write"))?
    }

    /// Runs `work` on a read connection (committed data only), on the calling thread.
    ///
    /// A read is a few index lookups in pages the OS has cached (tens of microseconds): cheaper
    /// than handing it to a blocking-pool thread and waking the task again, which under load
    /// cost more CPU than the reads themselves and put a scheduler wait inside every stage.
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open(&self.inner.path, true).map_err(StoreError::unavailable)?,
        };
        let result = work(&conn);
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }

    /// Counts the messages visible now in the stage queues, and the drain rate since the last
    /// sample: the answer of [`Queue::backlog`] until the next sample. One indexed count per
    /// stage on a read connection: cheap enough to run every 100 ms.
    pub async fn sample_backlog(&self) -> Result<Backlog, StoreError> {
        let waiting = self
            .read(|conn| {
                let now = now_ms();
                let mut total = 0u64;
                for stage in Stage::ALL {
                    let n: i64 = query_row(
                        conn,
                        "SELECT count(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2",
                        params![stage.as_str(), now],
                        |row| row.get(0),
                    )
                    .map_err(StoreError::unavailable)?;
                    total += u64::try_from(n).unwrap_or(0);
                }
                Ok(total)
            })
            .await?;
        let at = Instant::now();
        let finished = self.inner.finished.load(Ordering::Relaxed);
        let mut last = self.inner.sample.lock().unwrap_or_else(|p| p.into_inner());
        let (since, finished_then, rate_then) = match last.as_ref() {
            Some(last) => (last.at, last.finished, last.backlog.drained_per_sec),
            None => (self.inner.opened, 0, 0.0),
        };
        let seconds = at.duration_since(since).as_secs_f64();
        let drained_per_sec = if seconds > 0.0 {
            finished.saturating_sub(finished_then) as f64 / seconds
        } else {
            rate_then
        };
        let backlog = Backlog {
            waiting,
            drained_per_sec,
        };
        *last = Some(BacklogSample {
            at,
            finished,
            backlog,
        });
        Ok(backlog)
    }

    /// A new lead (unless its event id or, with `replay`, its signed body is known), and with
    /// `next` its first message: one committer job, all or nothing.
    async fn create(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
        next: Option<&Outgoing>,
    ) -> Result<Created, StoreError> {
        let body = encode_lead(lead)?;
        let facts = encode_facts(lead)?;
        let lead = lead.clone();
        let replay = replay.cloned();
        let message = next.map(|n| (n.stage, n.envelope.to_json()));
        // One writer runs these steps in one savepoint: no other write comes in between.
        self.write(Durability::Fsync, move |conn| {
            if let Some(replay) = &replay {
                // The event id first, so a retry of one event names its own lead.
                if let Some(existing) = lead_for_event(conn, &lead.source, &lead.event_id)? {
                    return Ok(Created::Duplicate(Box::new(existing)));
                }
                let now = replay.now.as_millisecond();
                exec(
                    conn,
                    "DELETE FROM bodies WHERE expires_at <= ?1",
                    params![now],
                )
                .map_err(StoreError::unavailable)?;
                let seen: Option<String> = query_row(
                    conn,
                    "SELECT lead_id FROM bodies
                     WHERE source = ?1 AND digest = ?2 AND expires_at > ?3",
                    params![lead.source, replay.body_sha256, now],
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::unavailable)?;
                if let Some(first) = seen {
                    let existing = lead_row(conn, &first)?.ok_or_else(|| {
                        StoreError::Corrupt(format!("body record names a missing lead {first}"))
                    })?;
                    return Ok(Created::Duplicate(Box::new(existing)));
                }
            }
            let inserted = exec(
                conn,
                "INSERT INTO leads (id, source, event_id, state, captured_at, body, facts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (source, event_id) DO NOTHING",
                params![
                    lead.id,
                    lead.source,
                    lead.event_id,
                    lead.state.as_str(),
                    lead.timeline
                        .captured_at
                        .map(|t| t.as_millisecond())
                        .unwrap_or_else(now_ms),
                    body,
                    facts
                ],
            )
            .map_err(StoreError::unavailable)?;
            if inserted == 0 {
                let existing = lead_for_event(conn, &lead.source, &lead.event_id)?
                    .ok_or_else(|| StoreError::Corrupt("event id taken by no lead".into()))?;
                return Ok(Created::Duplicate(Box::new(existing)));
            }
            bump_report_hour(conn, &lead.id)?;
            if let Some(replay) = &replay {
                exec(
                    conn,
                    "INSERT INTO bodies (source, digest, lead_id, expires_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (source, digest) DO UPDATE SET lead_id = excluded.lead_id,
                                                                expires_at = excluded.expires_at",
                    params![
                        lead.source,
                        replay.body_sha256,
                        lead.id,
                        replay.expires_at.as_millisecond()
                    ],
                )
                .map_err(StoreError::unavailable)?;
            }
            if let Some((stage, envelope)) = &message {
                insert_message(conn, *stage, envelope, &lead.id, 0)?;
            }
            Ok(Created::New)
        })
        .await
    }

    /// The lead's conditional write with its effects and, when given, its next stage's
    /// message: all or nothing, in one committer job.
    async fn advance(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
        next: Option<&Outgoing>,
    ) -> Result<(), StoreError> {
        let prepared = PreparedAdvance::new(lead, from, effects, next)?;
        // The job's savepoint rolls the lead and every effect back if any guard fails.
        self.write(Durability::Atomic, move |conn| prepared.write(conn))
            .await
    }

    fn wake(&self, stage: Stage) {
        if let Some(notify) = self.inner.wakeups.get(&stage) {
            notify.notify_one();
        }
    }

    /// Resolves when a message was sent to `stage`'s queue (or spuriously); never misses one
    /// sent after the last receive.
    pub async fn sent_to(&self, stage: Stage) {
        if let Some(notify) = self.inner.wakeups.get(&stage) {
            notify.notified().await;
        }
    }

    /// Queues an enrich message for every captured lead that has none: a crash between
    /// storing a lead and queueing it leaves exactly that, and the sender got no 202 for it.
    pub async fn requeue_orphans(&self) -> Result<usize, StoreError> {
        let requeued = self
            .write(Durability::Atomic, |conn| {
                exec(
                    conn,
                    "INSERT INTO messages (queue, body, lead_id, sent_at, visible_at)
                     SELECT 'enrich',
                            json_object('v', 1, 'lead_id', id, 'stage', 'enrich',
                                        'trace_id', json_extract(body, '$.trace_id')),
                            id, ?1, ?1
                     FROM leads
                     WHERE state = 'captured'
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.lead_id = leads.id)",
                    params![now_ms()],
                )
                .map_err(StoreError::unavailable)
            })
            .await?;
        if requeued > 0 {
            self.wake(Stage::Enrich);
        }
        Ok(requeued)
    }

    /// How many leads, live messages and dead letters the store holds.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.read(|conn| {
            query_row(
                conn,
                "SELECT (SELECT COUNT(*) FROM leads),
                        (SELECT COUNT(*) FROM messages WHERE queue NOT LIKE '%-dlq'),
                        (SELECT COUNT(*) FROM messages WHERE queue LIKE '%-dlq')",
                [],
                |row| {
                    Ok(Counts {
                        leads: row.get(0)?,
                        messages: row.get(1)?,
                        dead_letters: row.get(2)?,
                    })
                },
            )
            .map_err(StoreError::unavailable)
        })
        .await
    }

    /// Caps the database at `pages` pages (SQLite's `max_page_count`, on the writer connection
    /// only, until the process ends): a write that needs more fails as it does on a full disk.
    /// A cap below the current size holds the file at its current size (0 changes nothing).
    /// Returns the cap in force. No configuration key sets it: it lets the fault tests fill
    /// the "disk" and free it again without privileges.
    #[doc(hidden)]
    pub async fn cap_pages(&self, pages: u32) -> Result<u32, StoreError> {
        self.write(Durability::Atomic, move |conn| {
            conn.pragma_update_and_check(None, "max_page_count", pages, |row| row.get(0))
                .map_err(StoreError::unavailable)
        })
        .await
    }
}

/// What one dead-letter queue holds, for the operations alert: no message bodies, no errors
/// (they may quote what a remote server answered), only ids and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    pub count: i64,
    /// When the oldest dead letter was first sent to its stage.
    pub oldest: Option<Timestamp>,
    /// The lead ids of the oldest few.
    pub lead_ids: Vec<String>,
}

/// A raised operations alarm: when it was raised and when someone was last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    pub raised_at: Timestamp,
    pub notified_at: Timestamp,
}

impl Sqlite {
    /// `stage`'s dead-letter queue: its size, its oldest message and up to `sample` lead ids.
    pub async fn dead_letter_summary(
        &self,
        stage: Stage,
        sample: usize,
    ) -> Result<DeadLetterSummary, StoreError> {
        let queue = dlq_name(stage);
        let sample = i64::try_from(sample).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let snapshot = conn
                .unchecked_transaction()
                .map_err(StoreError::unavailable)?;
            let (count, oldest): (i64, Option<i64>) = query_row(
                &snapshot,
                "SELECT COUNT(*), MIN(sent_at) FROM messages WHERE queue = ?1",
                params![queue],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(StoreError::unavailable)?;
            let mut statement = snapshot
                .prepare_cached(
                    "SELECT COALESCE(lead_id, '') FROM messages WHERE queue = ?1
                     ORDER BY sent_at, id LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let lead_ids = statement
                .query_map(params![queue, sample], |row| row.get(0))
                .map_err(StoreError::unavailable)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(StoreError::unavailable)?;
            Ok(DeadLetterSummary {
                count,
                oldest: oldest.and_then(|ms| Timestamp::from_millisecond(ms).ok()),
                lead_ids,
            })
        })
        .await
    }

    /// The alarm raised under `name`, if any.
    pub async fn alarm(&self, name: &str) -> Result<Option<Alarm>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row: Option<(i64, i64)> = query_row(
                conn,
                "SELECT raised_at, notified_at FROM alarms WHERE name = ?1",
                params![name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(StoreError::unavailable)?;
            Ok(row.map(|(raised, notified)| Alarm {
                raised_at: Timestamp::from_millisecond(raised).unwrap_or_default(),
                notified_at: Timestamp::from_millisecond(notified).unwrap_or_default(),
            }))
        })
        .await
    }

    /// Records that the alarm `name` was raised, or that its people were reminded.
    pub async fn set_alarm(&self, name: &str, alarm: Alarm) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(Durability::Fsync, move |conn| {
            exec(
                conn,
                "INSERT INTO alarms (name, raised_at, notified_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET notified_at = excluded.notified_at",
                params![
                    name,
                    alarm.raised_at.as_millisecond(),
                    alarm.notified_at.as_millisecond()
                ],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    /// Forgets the alarm `name` (its queue is empty again), so the next message raises it anew.
    pub async fn clear_alarm(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(Durability::Atomic, move |conn| {
            exec(conn, "DELETE FROM alarms WHERE name = ?1", params![name])
                .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }
}

/// Sizes of the store, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub leads: i64,
    pub messages: i64,
    pub dead_letters: i64,
}

/// Runs a statement through the connection's statement cache (no SQL parsing per call).
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

fn query_row<T, P, F>(conn: &Connection, sql: &str, params: P, map: F) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    conn.prepare_cached(sql)?.query_row(params, map)
}

fn in_savepoint<R>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    exec(conn, "SAVEPOINT job", []).map_err(StoreError::unavailable)?;
    let result = work(conn);
    let finish = if result.is_ok() {
        exec(conn, "RELEASE job", [])
    } else {
        exec(conn, "ROLLBACK TO job", []).and_then(|_| exec(conn, "RELEASE job", []))
    };
    finish.map_err(StoreError::unavailable)?;
    result
}

/// The committer: take every waiting write, run them in one transaction, commit, answer all.
fn commit_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>, syncer: SyncSender) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE", []) {
            let failed = CommitFailed::Sql(Arc::new(e));
            for job in batch {
                (job.work)(None)(Err(failed.clone()));
            }
            continue;
        }
        // SQLite rolls a whole transaction back on some errors (a full disk, an I/O error), and
        // the connection is then outside any transaction: a later write of the batch would
        // commit on its own, then be answered as failed with the rest. Once that happened,
        // the rest of the batch is not run (and the failed COMMIT answers the earlier ones).
        let mut rolled_back = false;
        let replies: Vec<(bool, Reply)> = batch
            .into_iter()
            .map(|job| {
                let reply = (job.work)((!rolled_back).then_some(&conn));
                rolled_back = rolled_back || conn.is_autocommit();
                (job.durable, reply)
            })
            .collect();
        let committed = exec(&conn, "COMMIT", [])
            .map(|_| ())
            .map_err(|e| CommitFailed::Sql(Arc::new(e)));
        if committed.is_err() {
            let _ = exec(&conn, "ROLLBACK", []);
        }
        // Atomic writes are answered now; durable ones once the WAL is on disk, by the syncer,
        // while this thread commits the next batch (the fsync never holds up the writer).
        let mut to_sync = Vec::new();
        for (durable, reply) in replies {
            if durable && committed.is_ok() {
                to_sync.push(reply);
            } else {
                reply(committed.clone());
            }
        }
        if !to_sync.is_empty() {
            if let Err(std::sync::mpsc::SendError(replies)) = syncer.send(to_sync) {
                for reply in replies {
                    reply(Err(CommitFailed::SyncerStopped));
                }
            }
        }
    }
}

type SyncSender = std::sync::mpsc::Sender<Vec<Reply>>;

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Passive checkpoints (they never block the writer or a reader) on a timer, until the store
/// is dropped (its end of `stop` with it). After a checkpoint that caught up, the next commit
/// starts the WAL over.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = result {
            tracing::warn!(%error, "WAL checkpoint failed; the next one tries again");
        }
    }
}

/// The syncer: fsyncs the WAL once for every durable write committed since the last fsync,
/// then answers them. In WAL mode a committed transaction is its frames in the WAL file, so
/// once that file is synced the commit survives power loss, as `synchronous = FULL` would
/// make it; the committer meanwhile runs with `synchronous = NORMAL` and never waits for it.
fn sync_loop(wal: PathBuf, waiting: std::sync::mpsc::Receiver<Vec<Reply>>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(mut replies) = waiting.recv() {
        while let Ok(more) = waiting.try_recv() {
            replies.extend(more);
        }
        let synced = sync_wal(&wal, &mut file).map_err(|e| CommitFailed::Sync(Arc::new(e)));
        for reply in replies {
            reply(synced.clone());
        }
    }
}

/// fdatasync on the WAL file, reopened if SQLite replaced it since the last sync.
fn sync_wal(path: &Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let current = std::fs::metadata(path)?.ino();
    let open = match file.take() {
        Some(open) if open.metadata()?.ino() == current => open,
        _ => std::fs::File::open(path)?,
    };
    let synced = open.sync_data();
    *file = Some(open);
    synced
}

/// A row of `SELECT id, body, last_failure FROM leads`.
type LeadRow = (String, String, Option<String>);

fn lead_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<LeadRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn decode_lead((id, body, failure): LeadRow) -> Result<Lead, StoreError> {
    decode_stored_lead(&id, &body, failure.as_deref())
}

fn encode_lead(lead: &Lead) -> Result<String, StoreError> {
    encode_lead_at(lead, lead.revision)
}

/// The lead's body as stored at `revision`.
fn encode_lead_at(lead: &Lead, revision: u64) -> Result<String, StoreError> {
    // last_failure lives in its own column so that recording one never races a stage's write.
    let mut copy = lead.clone();
    copy.last_failure = None;
    copy.revision = revision;
    serde_json::to_string(&copy).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The lead stored for a source's event id, if any.
fn lead_for_event(
    conn: &Connection,
    source: &str,
    event_id: &str,
) -> Result<Option<Lead>, StoreError> {
    query_row(
        conn,
        "SELECT id, body, last_failure FROM leads WHERE source = ?1 AND event_id = ?2",
        params![source, event_id],
        lead_columns,
    )
    .optional()
    .map_err(StoreError::unavailable)?
    .map(decode_lead)
    .transpose()
}

fn lead_row(conn: &Connection, id: &str) -> Result<Option<Lead>, StoreError> {
    query_row(
        conn,
        "SELECT id, body, last_failure FROM leads WHERE id = ?1",
        params![id],
        lead_columns,
    )
    .optional()
    .map_err(StoreError::unavailable)?
    .map(decode_lead)
    .transpose()
}

#[async_trait]
impl LeadStore for Sqlite {
    async fn create_lead_guarded(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
    ) -> Result<Created, StoreError> {
        self.create(lead, replay, None).await
    }

    async fn create_lead_and_send(
        &self,
        lead: &Lead,
        replay: Option<&ReplayGuard>,
        next: &Outgoing,
    ) -> Result<(Created, bool), StoreError> {
        let created = self.create(lead, replay, Some(next)).await?;
        let sent = created == Created::New;
        if sent {
            self.wake(next.stage);
        }
        Ok((created, sent))
    }
    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| lead_row(conn, &id)).await
    }

    async fn advance_lead(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        self.advance(lead, from, effects, None).await
    }

    async fn advance_lead_and_send(
        &self,
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
        next: &Outgoing,
    ) -> Result<bool, StoreError> {
        self.advance(lead, from, effects, Some(next)).await?;
        self.wake(next.stage);
        Ok(true)
    }

    async fn advance_leads_and_send(&self, writes: &[Advance<'_>]) -> Advanced {
        let mut prepared = Vec::with_capacity(writes.len());
        let mut stopped = None;
        for write in writes {
            match PreparedAdvance::new(write.lead, write.from, write.effects, Some(write.next)) {
                Ok(one) => prepared.push(one),
                Err(error) => {
                    stopped = Some(error);
                    break;
                }
            }
        }
        let stages: Vec<Stage> = writes.iter().map(|w| w.next.stage).collect();
        // One committer job: each write in its own savepoint inside the job's, so a write
        // whose guard fails is rolled back alone and those before it commit.
        let written = self
            .write(Durability::Atomic, move |conn| {
                let mut applied = 0;
                for one in &prepared {
                    match in_savepoint(conn, |conn| one.write(conn)) {
                        Ok(()) => applied += 1,
                        Err(error) => return Ok((applied, Some(error))),
                    }
                }
                Ok((applied, None))
            })
            .await;
        match written {
            Ok((applied, failed)) => {
                for stage in stages.iter().take(applied) {
                    self.wake(*stage);
                }
                Advanced {
                    sent: vec![true; applied],
                    stopped: failed.or(stopped),
                }
            }
            Err(error) => Advanced {
                sent: Vec::new(),
                stopped: Some(error),
            },
        }
    }

    async fn record_failure(
        &self,
        lead_id: &str,
        failure: &StageFailure,
    ) -> Result<(), StoreError> {
        let text =
            serde_json::to_string(failure).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = lead_id.to_owned();
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "UPDATE leads SET last_failure = ?1 WHERE id = ?2",
                params![text, id],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn clear_failure(&self, lead_id: &str, seen: &StageFailure) -> Result<(), StoreError> {
        let id = lead_id.to_owned();
        let seen = seen.clone();
        self.write(Durability::Atomic, move |conn| {
            let stored: Option<Option<String>> = query_row(
                conn,
                "SELECT last_failure FROM leads WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::unavailable)?;
            let Some(Some(text)) = stored else {
                return Ok(());
            };
            // Compared decoded, inside the write: a failure recorded since the read stays.
            let stored: StageFailure =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if stored == seen {
                exec(
                    conn,
                    "UPDATE leads SET last_failure = NULL WHERE id = ?1",
                    params![id],
                )
                .map_err(StoreError::unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn begin_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<DeliveryStart, StoreError> {
        let (lead_id, channel) = (lead_id.to_owned(), channel.to_owned());
        let now = now.as_millisecond();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        // Durable before the channel is called: after a power cut the attempt is still known,
        // and its lease holds off a second send until it expires.
        self.write(Durability::Fsync, move |conn| {
            let existing: Option<(Option<i64>, Option<i64>)> = query_row(
                conn,
                    "SELECT lease_until, delivered_at FROM deliveries WHERE lead_id = ?1 AND channel = ?2",
                    params![lead_id, channel],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(StoreError::unavailable)?;
            match existing {
                Some((_, Some(_))) => return Ok(DeliveryStart::AlreadyDelivered),
                Some((Some(lease_until), None)) if lease_until > now => {
                    return Ok(DeliveryStart::InFlight {
                        until: Timestamp::from_millisecond(lease_until).unwrap_or_default(),
                    })
                }
                _ => {}
            }
            exec(
    conn,
                "INSERT INTO deliveries (lead_id, channel, lease_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (lead_id, channel) DO UPDATE SET lease_until = excluded.lease_until",
                params![lead_id, channel, until],
            )
            .map_err(StoreError::unavailable)?;
            Ok(DeliveryStart::Proceed)
        })
        .await
    }

    async fn finish_delivery(
        &self,
        lead_id: &str,
        channel: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (lead_id, channel) = (lead_id.to_owned(), channel.to_owned());
        self.write(Durability::Fsync, move |conn| {
            exec(
                conn,
                "UPDATE deliveries SET delivered_at = ?1, lease_until = NULL
                 WHERE lead_id = ?2 AND channel = ?3",
                params![at.as_millisecond(), lead_id, channel],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn release_delivery(&self, lead_id: &str, channel: &str) -> Result<(), StoreError> {
        let (lead_id, channel) = (lead_id.to_owned(), channel.to_owned());
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "UPDATE deliveries SET lease_until = NULL
                 WHERE lead_id = ?1 AND channel = ?2 AND delivered_at IS NULL",
                params![lead_id, channel],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn record_posted(
        &self,
        lead_id: &str,
        receipt: &str,
        message: &PostedMessage,
    ) -> Result<(), StoreError> {
        let (lead_id, receipt) = (lead_id.to_owned(), receipt.to_owned());
        let (channel, ts) = (message.channel.clone(), message.ts.clone());
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "INSERT OR REPLACE INTO posted_messages (lead_id, receipt, channel, ts)
                 VALUES (?1, ?2, ?3, ?4)",
                params![lead_id, receipt, channel, ts],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delivery_receipts(&self, lead_id: &str) -> Result<Vec<DeliveryReceipt>, StoreError> {
        let lead_id = lead_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT channel, delivered_at, lease_until FROM deliveries
                     WHERE lead_id = ?1 ORDER BY channel",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![lead_id], |row| {
                    let at = |millis: Option<i64>| {
                        millis.and_then(|m| Timestamp::from_millisecond(m).ok())
                    };
                    Ok(DeliveryReceipt {
                        channel: row.get(0)?,
                        delivered_at: at(row.get(1)?),
                        lease_until: at(row.get(2)?),
                    })
                })
                .map_err(StoreError::unavailable)?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::unavailable)
        })
        .await
    }

    async fn posted_messages(&self, lead_id: &str) -> Result<Vec<PostedMessage>, StoreError> {
        let lead_id = lead_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT channel, ts FROM posted_messages WHERE lead_id = ?1")
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![lead_id], |row| {
                    Ok(PostedMessage {
                        channel: row.get(0)?,
                        ts: row.get(1)?,
                    })
                })
                .map_err(StoreError::unavailable)?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::unavailable)
        })
        .await
    }

    async fn counter(&self, name: &str) -> Result<i64, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(StoreError::unavailable)
        })
        .await
    }

    async fn counters(&self, names: &[String]) -> Result<Vec<i64>, StoreError> {
        let names = names.to_vec();
        self.read(move |conn| {
            // One read transaction: every value comes from the same snapshot.
            let snapshot = conn
                .unchecked_transaction()
                .map_err(StoreError::unavailable)?;
            let mut statement = snapshot
                .prepare_cached("SELECT value FROM counters WHERE name = ?1")
                .map_err(StoreError::unavailable)?;
            let values = names
                .iter()
                .map(|name| {
                    statement
                        .query_row(params![name], |r| r.get(0))
                        .optional()
                        .map(Option::unwrap_or_default)
                        .map_err(StoreError::unavailable)
                })
                .collect();
            values
        })
        .await
    }

    async fn ledger(&self, pool: &str, period: &str) -> Result<PoolLedger, StoreError> {
        let (pool, period) = (pool.to_owned(), period.to_owned());
        self.read(move |conn| {
            let stored: Option<(i64, String)> = query_row(
                conn,
                "SELECT version, body FROM ledgers WHERE pool = ?1 AND period = ?2",
                params![pool, period],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(StoreError::unavailable)?;
            let Some((version, body)) = stored else {
                return Ok(PoolLedger::default());
            };
            let mut ledger: PoolLedger = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("ledger {pool}/{period}: {e}")))?;
            // The column is what the version guard compares, so it is the one to trust.
            ledger.version = u64::try_from(version).map_err(|_| {
                StoreError::Corrupt(format!("ledger {pool}/{period} has version {version}"))
            })?;
            Ok(ledger)
        })
        .await
    }

    async fn open_lead_for_contact(
        &self,
        contact: &str,
        since: Timestamp,
    ) -> Result<ContactLookup, StoreError> {
        let contact = contact.to_owned();
        self.read(move |conn| {
            // One read transaction: the index entry and its lead from the same snapshot.
            let snapshot = conn
                .unchecked_transaction()
                .map_err(StoreError::unavailable)?;
            let indexed: Option<String> = query_row(
                &snapshot,
                "SELECT lead_id FROM contacts WHERE contact = ?1",
                params![contact],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::unavailable)?;
            // A quarantined lead is no merge target: the new lead routes on its own.
            let lead = match &indexed {
                Some(id) => skip_undecodable(lead_row(&snapshot, id).transpose())?.pop(),
                None => None,
            };
            Ok(ContactLookup::judge(indexed, lead, since))
        })
        .await
    }

    async fn due_leads(&self, now: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        let now = now.as_millisecond();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, body, last_failure FROM leads
                     WHERE sla_due_at IS NOT NULL AND sla_due_at <= ?1
                     ORDER BY sla_due_at LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![now, limit], lead_columns)
                .map_err(StoreError::unavailable)?;
            skip_undecodable(
                rows.map(|row| row.map_err(StoreError::unavailable).and_then(decode_lead)),
            )
        })
        .await
    }

    async fn reset_counter(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "UPDATE counters SET value = 0 WHERE name = ?1",
                params![name],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn set_counter(&self, name: &str, value: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn keep_unmatched(&self, event: &UnmatchedActivity) -> Result<bool, StoreError> {
        let key = event.activity.key.clone();
        let received_at = event.activity.received_at.as_millisecond();
        let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(Durability::Atomic, move |conn| {
            let inserted = exec(
                conn,
                "INSERT INTO unmatched_activity (key, received_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO NOTHING",
                params![key, received_at, body],
            )
            .map_err(StoreError::unavailable)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn unmatched_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<UnmatchedActivity>, StoreError> {
        let since = since.as_millisecond();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT body FROM unmatched_activity WHERE received_at >= ?1
                     ORDER BY received_at, key LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![since, limit], |row| row.get::<_, String>(0))
                .map_err(StoreError::unavailable)?;
            rows.map(|row| {
                let body = row.map_err(StoreError::unavailable)?;
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
        })
        .await
    }

    async fn leads_since(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        // captured_at is stored in milliseconds, so `since` counts to the millisecond.
        let since = since.as_millisecond();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, body, last_failure FROM leads WHERE captured_at >= ?1
                     ORDER BY captured_at, id LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![since, limit], lead_columns)
                .map_err(StoreError::unavailable)?;
            skip_undecodable(
                rows.map(|row| row.map_err(StoreError::unavailable).and_then(decode_lead)),
            )
        })
        .await
    }

    async fn recent_leads(&self, since: Timestamp, limit: usize) -> Result<Vec<Lead>, StoreError> {
        let since = since.as_millisecond();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, body, last_failure FROM leads INDEXED BY leads_captured
                     WHERE captured_at >= ?1 ORDER BY captured_at DESC, id DESC LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![since, limit], lead_columns)
                .map_err(StoreError::unavailable)?;
            skip_undecodable(
                rows.map(|row| row.map_err(StoreError::unavailable).and_then(decode_lead)),
            )
        })
        .await
    }

    /// The facts column over the `leads_captured` index; a row written before facts existed
    /// is read from its body once, and its facts are written back for the next report.
    async fn lead_facts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LeadFacts>, StoreError> {
        let (from, to) = (from.as_millisecond(), to.as_millisecond());
        let (facts, missing) = self
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT id, facts, body, last_failure FROM leads INDEXED BY leads_captured
                         WHERE captured_at >= ?1 AND captured_at < ?2",
                    )
                    .map_err(StoreError::unavailable)?;
                let mut rows = statement
                    .query(params![from, to])
                    .map_err(StoreError::unavailable)?;
                let mut facts = Vec::new();
                let mut missing = Vec::new();
                while let Some(row) = rows.next().map_err(StoreError::unavailable)? {
                    let id: String = row.get(0).map_err(StoreError::unavailable)?;
                    let stored: Option<String> = row.get(1).map_err(StoreError::unavailable)?;
                    if let Some(stored) = &stored {
                        match serde_json::from_str::<LeadFacts>(stored) {
                            Ok(one) => {
                                facts.push(one);
                                continue;
                            }
                            // Unreadable facts are rebuilt from the body, like missing ones.
                            Err(error) => tracing::warn!(lead_id = %id, %error,
                                "rebuilding a lead's report facts from its body"),
                        }
                    }
                    let body: String = row.get(2).map_err(StoreError::unavailable)?;
                    let failure: Option<String> = row.get(3).map_err(StoreError::unavailable)?;
                    let Some(lead) = skip_undecodable([decode_lead((id, body, failure))])?.pop()
                    else {
                        continue;
                    };
                    let one = LeadFacts::of(&lead);
                    missing.push((lead.id.clone(), stored, encode_facts(&lead)?));
                    facts.push(one);
                }
                Ok((facts, missing))
            })
            .await?;
        if !missing.is_empty() {
            // Only where the facts are still those read: a lead write since the read
            // brought its own.
            self.write(Durability::Atomic, move |conn| {
                for (id, read, facts) in &missing {
                    let filled = exec(
                        conn,
                        "UPDATE leads SET facts = ?1 WHERE id = ?2 AND facts IS ?3",
                        params![facts, id, read],
                    )
                    .map_err(StoreError::unavailable)?;
                    if filled > 0 {
                        bump_report_hour(conn, id)?;
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok(facts)
    }

    async fn report_hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Vec<ReportHour>>, StoreError> {
        let (first, end) = rollup::hours_overlapping(from, to);
        let hours = self
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT hour, generation, built_generation, fingerprint, bucket
                         FROM report_hours WHERE hour >= ?1 AND hour < ?2 ORDER BY hour",
                    )
                    .map_err(StoreError::unavailable)?;
                let mut rows = statement
                    .query(params![first, end])
                    .map_err(StoreError::unavailable)?;
                let mut hours = Vec::new();
                while let Some(row) = rows.next().map_err(StoreError::unavailable)? {
                    let get = |i| -> Result<Option<i64>, StoreError> {
                        row.get(i).map_err(StoreError::unavailable)
                    };
                    let hour = get(0)?.unwrap_or_default();
                    let generation = get(1)?.unwrap_or_default() as u64;
                    let bytes: Option<Vec<u8>> = row.get(4).map_err(StoreError::unavailable)?;
                    let bucket = match (get(2)?, get(3)?, bytes) {
                        (Some(built), Some(fingerprint), Some(bytes)) => Some(ReportBucket {
                            generation: built as u64,
                            fingerprint: fingerprint as u64,
                            bytes,
                        }),
                        _ => None,
                    };
                    hours.push(ReportHour {
                        hour,
                        generation,
                        bucket,
                    });
                }
                Ok(hours)
            })
            .await?;
        Ok(Some(hours))
    }

    async fn put_report_hours(&self, built: &[BuiltHour]) -> Result<usize, StoreError> {
        if built.is_empty() {
            return Ok(0);
        }
        let built = built.to_vec();
        // A cache fill: no fsync; a crash loses only buckets the next reader rebuilds.
        self.write(Durability::Atomic, move |conn| {
            let mut kept = 0;
            for one in &built {
                // The bit pattern of the u64s is what is kept (SQLite integers are signed).
                kept += exec(
                    conn,
                    "UPDATE report_hours
                     SET built_generation = ?2, fingerprint = ?3, bucket = ?4
                     WHERE hour = ?1 AND generation = ?2",
                    params![
                        one.hour,
                        one.bucket.generation as i64,
                        one.bucket.fingerprint as i64,
                        one.bucket.bytes
                    ],
                )
                .map_err(StoreError::unavailable)?;
            }
            Ok(kept)
        })
        .await
    }
}

#[async_trait]
impl EnrichmentCache for Sqlite {
    async fn cached(&self, key: &str, now: Timestamp) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        let now = now.as_millisecond();
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT value FROM cache WHERE key = ?1 AND expires_at > ?2",
                params![key, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::unavailable)
        })
        .await
    }

    async fn cache(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        let expires_at = expires_at.as_millisecond();
        // A lost cache entry costs one lookup: no fsync.
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "DELETE FROM cache WHERE expires_at <= ?1",
                params![now_ms()],
            )
            .map_err(StoreError::unavailable)?;
            exec(
                conn,
                "INSERT INTO cache (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                 expires_at = excluded.expires_at",
                params![key, value, expires_at],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }
}

/// Sessions and audit entries are written like counters and stage progress (atomic, not
/// fsync'd): a power cut may sign someone out, or lose the last audit entries as it may lose
/// the last lead moves; it never leaves a half-written one.
#[async_trait]
impl ConsoleStore for Sqlite {
    async fn start_session(&self, session: &Session) -> Result<(), StoreError> {
        let body =
            serde_json::to_string(session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = session.key.clone();
        let expires_at = session.expires_at.as_millisecond();
        self.write(Durability::Atomic, move |conn| {
            // Sessions nobody signed out of end here, a sign-in at a time.
            exec(
                conn,
                "DELETE FROM console_sessions WHERE expires_at <= ?1",
                params![now_ms()],
            )
            .map_err(StoreError::unavailable)?;
            exec(
                conn,
                "INSERT INTO console_sessions (key, expires_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at,
                                                 body = excluded.body",
                params![key, expires_at, body],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, key: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        let key = key.to_owned();
        let body: Option<String> = self
            .read(move |conn| {
                query_row(
                    conn,
                    "SELECT body FROM console_sessions WHERE key = ?1",
                    params![key],
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::unavailable)
            })
            .await?;
        let Some(body) = body else {
            return Ok(None);
        };
        let session: Session = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("console session: {e}")))?;
        // Expiry is checked on the session itself, to the instant, not on the rounded column.
        Ok(session.is_live(now).then_some(session))
    }

    async fn end_session(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "DELETE FROM console_sessions WHERE key = ?1",
                params![key],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn record_action(&self, action: &ConsoleAction) -> Result<(), StoreError> {
        let body = serde_json::to_string(action).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at = action.at.as_millisecond();
        self.write(Durability::Atomic, move |conn| {
            let oldest_kept = Timestamp::now()
                .checked_sub(leadrelay_shared::console::audit::KEPT_FOR)
                .map_or(i64::MIN, |t| t.as_millisecond());
            exec(
                conn,
                "DELETE FROM console_audit WHERE at < ?1",
                params![oldest_kept],
            )
            .map_err(StoreError::unavailable)?;
            exec(
                conn,
                "INSERT INTO console_audit (at, body) VALUES (?1, ?2)",
                params![at, body],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn actions_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConsoleAction>, StoreError> {
        // `at` is stored in milliseconds: rows are read from `since`'s millisecond, and the
        // entries of that millisecond before `since` are skipped (after the limit is not
        // enough: within one millisecond rows come in insertion order, not by instant).
        let from = since.as_millisecond();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT body FROM console_audit WHERE at >= ?1 ORDER BY at DESC, id DESC",
                )
                .map_err(StoreError::unavailable)?;
            let mut rows = statement
                .query(params![from])
                .map_err(StoreError::unavailable)?;
            let mut actions = Vec::new();
            while actions.len() < limit {
                let Some(row) = rows.next().map_err(StoreError::unavailable)? else {
                    break;
                };
                let body: String = row.get(0).map_err(StoreError::unavailable)?;
                let action: ConsoleAction = serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("console audit entry: {e}")))?;
                if action.at >= since {
                    actions.push(action);
                }
            }
            Ok(actions)
        })
        .await
    }
}

/// Points a contact at its new open lead inside the current job, only if the index still
/// holds the lead id the router read.
fn write_contact(conn: &Connection, contact: &ContactWrite) -> Result<(), StoreError> {
    let routed_at = contact.routed_at.as_millisecond();
    let written = match &contact.replaces {
        None => exec(
            conn,
            "INSERT INTO contacts (contact, lead_id, routed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (contact) DO NOTHING",
            params![contact.contact, contact.lead_id, routed_at],
        ),
        Some(replaces) => exec(
            conn,
            "UPDATE contacts SET lead_id = ?2, routed_at = ?3 WHERE contact = ?1 AND lead_id = ?4",
            params![contact.contact, contact.lead_id, routed_at, replaces],
        ),
    }
    .map_err(StoreError::unavailable)?;
    if written == 0 {
        return Err(StoreError::Contended(format!(
            "contact {} got another open lead",
            contact.contact
        )));
    }
    Ok(())
}

/// Queues a message for `stage`, visible `delay_ms` from now: every send, on its own or in a
/// lead's write.
fn insert_message(
    conn: &Connection,
    stage: Stage,
    body: &str,
    lead_id: &str,
    delay_ms: i64,
) -> Result<(), StoreError> {
    let now = now_ms();
    exec(
        conn,
        "INSERT INTO messages (queue, body, lead_id, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![stage.as_str(), body, lead_id, now, now.saturating_add(delay_ms)],
    )
    .map_err(StoreError::unavailable)?;
    Ok(())
}

/// Adds one to a counter inside the current job, refusing when a limit is reached.
fn bump_counter(conn: &Connection, bump: &CounterBump) -> Result<(), StoreError> {
    let Some(limit) = bump.limit else {
        exec(
            conn,
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1",
            params![bump.name],
        )
        .map_err(StoreError::unavailable)?;
        return Ok(());
    };
    let at_limit = || StoreError::Contended(format!("counter {} at its limit {limit}", bump.name));
    let bumped = exec(
        conn,
        "UPDATE counters SET value = value + 1 WHERE name = ?1 AND value < ?2",
        params![bump.name, limit],
    )
    .map_err(StoreError::unavailable)?;
    if bumped == 1 {
        return Ok(());
    }
    // Nothing updated: either the counter is at its limit, or it does not exist yet (0).
    let exists = query_row(
        conn,
        "SELECT 1 FROM counters WHERE name = ?1",
        params![bump.name],
        |_| Ok(()),
    )
    .optional()
    .map_err(StoreError::unavailable)?
    .is_some();
    if exists || limit <= 0 {
        return Err(at_limit());
    }
    exec(
        conn,
        "INSERT INTO counters (name, value) VALUES (?1, 1)",
        params![bump.name],
    )
    .map_err(StoreError::unavailable)?;
    Ok(())
}

/// A lead's conditional write ([`LeadStore::advance_lead`]) with its effects and next
/// message, encoded before it reaches the committer thread.
struct PreparedAdvance {
    id: String,
    state: LeadState,
    from: LeadState,
    revision: i64,
    body: String,
    facts: String,
    sla_due: Option<i64>,
    counters: Vec<CounterBump>,
    ledgers: Vec<EncodedLedger>,
    releases: Vec<String>,
    contact: Option<ContactWrite>,
    resets: Vec<String>,
    message: Option<(Stage, String)>,
}

impl PreparedAdvance {
    fn new(
        lead: &Lead,
        from: LeadState,
        effects: &Effects,
        next: Option<&Outgoing>,
    ) -> Result<Self, StoreError> {
        let revision = i64::try_from(lead.revision)
            .map_err(|_| StoreError::Corrupt(format!("lead {} revision overflows", lead.id)))?;
        Ok(PreparedAdvance {
            id: lead.id.clone(),
            state: lead.state,
            from,
            revision,
            body: encode_lead_at(lead, lead.revision + 1)?,
            facts: encode_facts(lead)?,
            // Indexed only while sla-watch must look at the lead.
            sla_due: lead.sla_watch_at().map(|t| t.as_millisecond()),
            counters: effects.counters.clone(),
            ledgers: effects
                .ledgers
                .iter()
                .map(EncodedLedger::new)
                .collect::<Result<Vec<_>, _>>()?,
            releases: effects.releases.clone(),
            contact: effects.contact.clone(),
            resets: effects.resets.clone(),
            message: next.map(|n| (n.stage, n.envelope.to_json())),
        })
    }

    /// Inside the caller's savepoint: an error leaves writes made here for it to roll back.
    fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        let (id, from) = (&self.id, self.from);
        let updated = exec(
            conn,
            "UPDATE leads SET state = ?1, body = ?2, sla_due_at = ?3, facts = ?7
                 WHERE id = ?4 AND state = ?5
                   AND COALESCE(json_extract(body, '$.revision'), 0) = ?6",
            params![
                self.state.as_str(),
                self.body,
                self.sla_due,
                id,
                from.as_str(),
                self.revision,
                self.facts
            ],
        )
        .map_err(StoreError::unavailable)?;
        if updated == 0 {
            let actual: Option<String> = query_row(
                conn,
                "SELECT state FROM leads WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::unavailable)?;
            return Err(match actual.as_deref().and_then(LeadState::parse) {
                Some(actual) if actual == from => StoreError::Stale(id.clone()),
                Some(actual) => StoreError::Conflict {
                    lead_id: id.clone(),
                    expected: from,
                    actual,
                },
                None => StoreError::NotFound(id.clone()),
            });
        }
        bump_report_hour(conn, id)?;
        for bump in &self.counters {
            bump_counter(conn, bump)?;
        }
        for ledger in &self.ledgers {
            write_ledger(conn, ledger)?;
        }
        for name in &self.releases {
            let released = exec(
                conn,
                "UPDATE counters SET value = value - 1 WHERE name = ?1 AND value > 0",
                params![name],
            )
            .map_err(StoreError::unavailable)?;
            if released == 0 {
                return Err(StoreError::Contended(format!(
                    "counter {name} is already 0"
                )));
            }
        }
        if let Some(contact) = &self.contact {
            write_contact(conn, contact)?;
        }
        for name in &self.resets {
            exec(
                conn,
                "UPDATE counters SET value = 0 WHERE name = ?1",
                params![name],
            )
            .map_err(StoreError::unavailable)?;
        }
        if let Some((stage, body)) = &self.message {
            insert_message(conn, *stage, body, id, 0)?;
        }
        Ok(())
    }
}

/// A ledger write checked and serialized before it reaches the committer thread.
struct EncodedLedger {
    pool: String,
    period: String,
    expected: i64,
    version: i64,
    body: String,
}

impl EncodedLedger {
    fn new(write: &LedgerWrite) -> Result<Self, StoreError> {
        let (pool, period) = (&write.pool, &write.period);
        let version = i64::try_from(write.ledger.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                StoreError::unavailable_because(format!(
                    "invalid request: ledger {pool}/{period} written at version {}; a write \
                     carries the version read plus one",
                    write.ledger.version
                ))
            })?;
        let body = serde_json::to_string(&write.ledger)
            .map_err(|e| StoreError::Corrupt(format!("ledger {pool}/{period}: {e}")))?;
        Ok(EncodedLedger {
            pool: pool.clone(),
            period: period.clone(),
            expected: version - 1,
            version,
            body,
        })
    }
}

/// Replaces a ledger inside the current job, only if its stored version is the one read.
fn write_ledger(conn: &Connection, ledger: &EncodedLedger) -> Result<(), StoreError> {
    let written = if ledger.expected == 0 {
        // A missing ledger is version 0; an existing one never is.
        exec(
            conn,
            "INSERT INTO ledgers (pool, period, version, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pool, period) DO NOTHING",
            params![ledger.pool, ledger.period, ledger.version, ledger.body],
        )
    } else {
        exec(
            conn,
            "UPDATE ledgers SET version = ?3, body = ?4
             WHERE pool = ?1 AND period = ?2 AND version = ?5",
            params![
                ledger.pool,
                ledger.period,
                ledger.version,
                ledger.body,
                ledger.expected
            ],
        )
    }
    .map_err(StoreError::unavailable)?;
    if written == 0 {
        return Err(StoreError::Contended(format!(
            "ledger {}/{} moved since version {}",
            ledger.pool, ledger.period, ledger.expected
        )));
    }
    Ok(())
}

fn queue_error(error: StoreError) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

/// A receipt is `<message id>.<token>`; the token changes on every receive.
fn parse_receipt(receipt: &str) -> Result<(i64, String), QueueError> {
    receipt
        .split_once('.')
        .and_then(|(id, token)| Some((id.parse().ok()?, token.to_owned())))
        .ok_or_else(|| QueueError::StaleReceipt(receipt.to_owned()))
}

#[async_trait]
impl Queue for Sqlite {
    fn backlog(&self) -> Option<Backlog> {
        self.inner
            .sample
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|sample| sample.backlog)
    }

    async fn send(&self, stage: Stage, envelope: &Envelope) -> Result<(), QueueError> {
        let body = envelope.to_json();
        let lead_id = envelope.lead_id.clone();
        self.write(Durability::Atomic, move |conn| {
            insert_message(conn, stage, &body, &lead_id, 0)
        })
        .await
        .map_err(queue_error)?;
        self.wake(stage);
        Ok(())
    }

    async fn send_delayed(
        &self,
        stage: Stage,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let body = envelope.to_json();
        let lead_id = envelope.lead_id.clone();
        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.write(Durability::Atomic, move |conn| {
            insert_message(conn, stage, &body, &lead_id, delay)
        })
        .await
        .map_err(queue_error)
    }

    async fn receive(&self, stage: Stage, max: u32) -> Result<Vec<Received>, QueueError> {
        let QueueSettings {
            max_receives,
            visibility_timeout,
        } = self.inner.settings;
        let visibility = i64::try_from(visibility_timeout.as_millis()).unwrap_or(i64::MAX);
        self.write(Durability::Atomic, move |conn| {
            let now = now_ms();
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, body, receive_count, lead_id, last_error FROM messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                )
                .map_err(StoreError::unavailable)?;
            let candidates = statement
                .query_map(params![stage.as_str(), now, max], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(StoreError::unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::unavailable)?;
            let mut received = Vec::with_capacity(candidates.len());
            for (id, body, count, lead_id, last_error) in candidates {
                if count >= max_receives {
                    // SQS's redrive: a message past maxReceiveCount moves to the dead-letter
                    // queue. The stage gives up first on its own schedule; this catches the
                    // receives it never saw end (crashes).
                    exec(
                        conn,
                        "UPDATE messages SET queue = ?1, dead_at = ?2, receipt = NULL WHERE id = ?3",
                        params![dlq_name(stage), now, id],
                    )
                    .map_err(StoreError::unavailable)?;
                    error!(lead_id = lead_id.as_deref(), stage = %stage, receive_count = count,
                        error = last_error.as_deref(), "dead-lettered: received too many times");
                    continue;
                }
                let token = uuid::Uuid::new_v4().simple().to_string();
                exec(
    conn,
                    "UPDATE messages SET receive_count = receive_count + 1, visible_at = ?1, receipt = ?2 WHERE id = ?3",
                    params![now.saturating_add(visibility), token, id],
                )
                .map_err(StoreError::unavailable)?;
                received.push(Received {
                    message_id: id.to_string(),
                    receipt: format!("{id}.{token}"),
                    body,
                    receive_count: count + 1,
                });
            }
            Ok(received)
        })
        .await
        .map_err(queue_error)
    }

    async fn delete(&self, stage: Stage, receipt: &str) -> Result<(), QueueError> {
        let (id, token) = parse_receipt(receipt)?;
        let deleted = self
            .write(Durability::Atomic, move |conn| {
                exec(
                    conn,
                    "DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
                    params![id, stage.as_str(), token],
                )
                .map_err(StoreError::unavailable)
            })
            .await
            .map_err(queue_error)?;
        if deleted == 0 {
            return Err(QueueError::StaleReceipt(receipt.to_owned()));
        }
        self.inner.finished.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn delete_many(&self, stage: Stage, receipts: &[String]) -> Result<(), QueueError> {
        let parsed = receipts
            .iter()
            .map(|r| parse_receipt(r))
            .collect::<Result<Vec<_>, _>>()?;
        // One write for the whole batch; a stale receipt is skipped, as SQS would.
        let deleted = self
            .write(Durability::Atomic, move |conn| {
                let mut deleted = 0;
                for (id, token) in &parsed {
                    deleted += exec(
                        conn,
                        "DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
                        params![id, stage.as_str(), token],
                    )
                    .map_err(StoreError::unavailable)?;
                }
                Ok(deleted)
            })
            .await
            .map_err(queue_error)?;
        self.inner
            .finished
            .fetch_add(deleted as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn retry_later(
        &self,
        stage: Stage,
        receipt: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        let (id, token) = parse_receipt(receipt)?;
        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let error = error.to_owned();
        let updated = self
            .write(Durability::Atomic, move |conn| {
                exec(
                    conn,
                    "UPDATE messages SET visible_at = ?1, last_error = ?2
                     WHERE id = ?3 AND queue = ?4 AND receipt = ?5",
                    params![
                        now_ms().saturating_add(delay),
                        error,
                        id,
                        stage.as_str(),
                        token
                    ],
                )
                .map_err(StoreError::unavailable)
            })
            .await
            .map_err(queue_error)?;
        if updated == 0 {
            return Err(QueueError::StaleReceipt(receipt.to_owned()));
        }
        Ok(())
    }

    async fn give_up(
        &self,
        stage: Stage,
        message: &Received,
        error: &str,
    ) -> Result<(), QueueError> {
        let (id, token) = parse_receipt(&message.receipt)?;
        let error = error.to_owned();
        // One update: the message moves with its receive count, as SQS's redrive would.
        let moved = self
            .write(Durability::Atomic, move |conn| {
                exec(
                    conn,
                    "UPDATE messages SET queue = ?1, dead_at = ?2, receipt = NULL, last_error = ?3
                     WHERE id = ?4 AND queue = ?5 AND receipt = ?6",
                    params![dlq_name(stage), now_ms(), error, id, stage.as_str(), token],
                )
                .map_err(StoreError::unavailable)
            })
            .await
            .map_err(queue_error)?;
        if moved == 0 {
            return Err(QueueError::StaleReceipt(message.receipt.clone()));
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        stage: Stage,
        envelope: &Envelope,
        error: &str,
    ) -> Result<(), QueueError> {
        let body = envelope.to_json();
        let lead_id = envelope.lead_id.clone();
        let error = error.to_owned();
        self.write(Durability::Atomic, move |conn| {
            let now = now_ms();
            exec(
                conn,
                "INSERT INTO messages (queue, body, lead_id, sent_at, visible_at, receive_count, last_error, dead_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5, ?4)",
                params![dlq_name(stage), body, lead_id, now, error],
            )
            .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
        .map_err(queue_error)
    }
}

#[async_trait]
impl DeadLetters for Sqlite {
    async fn list(
        &self,
        stage: Stage,
        max: usize,
        _hold: Duration,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let queue = dlq_name(stage);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare(
                    "SELECT id, lead_id, body, receive_count, last_error, sent_at
                     FROM messages WHERE queue = ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(StoreError::unavailable)?;
            let rows = statement
                .query_map(params![queue, max], |row| {
                    let id: i64 = row.get(0)?;
                    Ok(DeadLetter {
                        message_id: id.to_string(),
                        receipt: id.to_string(),
                        lead_id: row.get(1)?,
                        body: row.get(2)?,
                        receive_count: row.get(3)?,
                        last_error: row.get(4)?,
                        sent_at: Timestamp::from_millisecond(row.get(5)?).ok(),
                    })
                })
                .map_err(StoreError::unavailable)?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::unavailable)
        })
        .await
        .map_err(queue_error)
    }

    async fn replay(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError> {
        let id: i64 = letter
            .receipt
            .parse()
            .map_err(|_| QueueError::StaleReceipt(letter.receipt.clone()))?;
        // One transaction moves it back with a fresh receive count: nothing to duplicate.
        let moved = self
            .write(Durability::Atomic, move |conn| {
                exec(
                    conn,
                    "UPDATE messages SET queue = ?1, receive_count = 0, visible_at = ?2,
                            receipt = NULL, dead_at = NULL
                     WHERE id = ?3 AND queue = ?4",
                    params![stage.as_str(), now_ms(), id, dlq_name(stage)],
                )
                .map_err(StoreError::unavailable)
            })
            .await
            .map_err(queue_error)?;
        if moved == 0 {
            return Err(QueueError::StaleReceipt(letter.receipt.clone()));
        }
        self.wake(stage);
        Ok(())
    }

    async fn discard(&self, stage: Stage, letter: &DeadLetter) -> Result<(), QueueError> {
        let id: i64 = letter
            .receipt
            .parse()
            .map_err(|_| QueueError::StaleReceipt(letter.receipt.clone()))?;
        self.write(Durability::Atomic, move |conn| {
            exec(
                conn,
                "DELETE FROM messages WHERE id = ?1 AND queue = ?2",
                params![id, dlq_name(stage)],
            )
            .map_err(StoreError::unavailable)
        })
        .await
        .map_err(queue_error)?;
        Ok(())
    }

    async fn release(&self, _stage: Stage, _letter: &DeadLetter) -> Result<(), QueueError> {
        // Listing hides nothing here.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite rolls the whole transaction back on some errors (a full disk). A later write of
    /// the same batch must then not run outside any transaction: it would commit on its own,
    /// and be answered as failed with the rest (a 503 whose lead was stored).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_the_database_rolled_a_batch_back_no_later_write_of_it_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = QueueSettings {
            max_receives: 3,
            visibility_timeout: Duration::from_secs(30),
        };
        let db = Sqlite::open(dir.path(), settings).expect("open");
        // The committer is held inside a first write until both writes below are queued, so
        // that they share the next batch. Waiting for it to be inside matters: a write queued
        // before the blocker's would let the committer take the rollback alone, and the
        // later write would rightly commit in a batch of its own.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(Durability::Atomic, move |_| {
                    let _ = entered.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || inside.recv())
            .await
            .expect("waiting")
            .expect("the committer runs the blocker");
        let (rolled_back, after, ()) = tokio::join!(
            // What a full disk does to the transaction, done by hand.
            db.write(Durability::Atomic, |conn| {
                conn.execute_batch("ROLLBACK")
                    .map_err(StoreError::unavailable)
            }),
            db.write(Durability::Atomic, |conn| {
                exec(
                    conn,
                    "INSERT INTO counters (name, value) VALUES ('after-rollback', 1)",
                    [],
                )
                .map(|_| ())
                .map_err(StoreError::unavailable)
            }),
            async {
                tokio::task::yield_now().await;
                release.send(()).expect("the blocker waits");
            },
        );
        let _ = blocker.await.expect("blocker task");
        assert!(rolled_back.is_err(), "{rolled_back:?}");
        assert!(after.is_err(), "answered as not written: {after:?}");
        assert_eq!(
            db.counter("after-rollback").await.expect("read"),
            0,
            "and not written"
        );
        // The committer goes on with the next batch as usual.
        db.write(Durability::Atomic, |conn| {
            exec(
                conn,
                "INSERT INTO counters (name, value) VALUES ('next', 1)",
                [],
            )
            .map(|_| ())
            .map_err(StoreError::unavailable)
        })
        .await
        .expect("the next write commits");
        assert_eq!(db.counter("next").await.expect("read"), 1);
    }

    #[test]
    fn an_unavailable_store_keeps_the_error_underneath() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A data directory that is a file cannot be opened: the I/O error stays the source.
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").expect("write");
        let settings = QueueSettings {
            max_receives: 3,
            visibility_timeout: Duration::from_secs(30),
        };
        let error = Sqlite::open(&file.join("data"), settings)
            .err()
            .expect("refused");
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
        let source = std::error::Error::source(&error).expect("a source");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
        assert!(
            error.to_string().starts_with("store unavailable: "),
            "{error}"
        );
    }
}

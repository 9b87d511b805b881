//! SIGKILL in the middle of a burst of webhooks, then a restart on the same data directory:
//! every lead answered 202 ends notified, once in the store, and reaches its owner's channel;
//! the test prints how many alerts the kill made go out twice. And the one window that allows
//! it, a crash between a channel's answer and its receipt, forced on purpose: the alert goes out
//! at most once more, after the lease, and the lead ends notified.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::process::{serve, ServeFiles};
use crate::support::serial;
use crate::support::{
    eventually, example_config, parse_config, sample, signed_header_map, with_retry_schedule, Edit,
    EmbeddedApp, HandClock, Terminal,
};
use jiff::Timestamp;
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_channels::Channels;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{Envelope, LeadState, Owner, Stage};
use leadrelay_shared::ports::{Destination, LeadStore, Notifier, NotifyError};
use leadrelay_shared::render::Alert;
use leadrelay_shared::stages::{open_leads_counter, Pipeline, StageError};
use serde_json::Value;
use tokio::sync::Mutex;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A webhook body and the headers that sign it.
type SignedRequest = (Vec<u8>, Vec<(String, String)>);

const BURST: usize = 400;
const KILL_AFTER_ACCEPTED: usize = 120;
/// The most notify messages a process works at once (notify workers × the example's batch
/// size of 10): the only deliveries a SIGKILL can catch between "Slack answered" and
/// "receipt written".
fn max_in_flight_deliveries() -> usize {
    leadrelay::embedded::workers_for(leadrelay_shared::model::Stage::Notify) * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_accepted_lead() {
    let _heavy = serial::heavy().await; // a burst of 400 webhooks at a child it kills mid-burst
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    // Every rep has a Slack webhook (queues alert their manager); short visibility so that
    // messages caught mid-work by the kill come back quickly.
    let hook = format!("{}/services/T/B/X", slack.uri());
    let config_text = example_config()
        // Each rep's `email = "…@yourco.example"` line (not the commented examples).
        .edit(
            "@yourco.example\"\n",
            &format!("@yourco.example\"\nslack_webhook_url = \"{hook}\"\n"),
        )
        .edit(
            "visibility_timeout_secs = 30",
            "visibility_timeout_secs = 2",
        )
        // A delivery must end within the receipt's lease (the visibility timeout).
        .edit(
            "http_timeout_ms = 5000",
            "http_timeout_ms = 500\ndelivery_budget_ms = 1000",
        )
        // Every rep shares the one stand-in webhook: Slack's 1 per second would spread the
        // burst over minutes, which is not what this test is about.
        .edit("\n[claim]\n", "\n[notify.rates]\nslack = 0\n\n[claim]\n");
    // A message the dead process held comes back soon, and its retries too.
    let config_text = with_retry_schedule(
        &config_text,
        &["200ms", "400ms", "800ms", "1600ms", "3200ms"],
        15,
    );
    let config = parse_config(&config_text);
    let files = ServeFiles::new(&config_text);

    let http =
        leadrelay_https::client(|builder| builder.timeout(Duration::from_secs(5))).expect("client");
    let mut child = serve(&files).spawn().await;
    let base = child.base.clone();

    // The burst: 8 senders, each recording the leads answered 202.
    let source = config.source("website").expect("source");
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let samples = [
        sample("01-fallback-named-account.json"),
        sample("02-capture-emea-pricing.json"),
        sample("03-capture-enterprise.json"),
        sample("04-partial-free-mail.json"),
    ];
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (http, base, accepted, answered) = (
            http.clone(),
            base.clone(),
            accepted.clone(),
            answered.clone(),
        );
        let requests: Vec<SignedRequest> = (sender..BURST)
            .step_by(8)
            .map(|n| {
                let body = samples[n % samples.len()].clone();
                let id = format!("msg_crash_{n}");
                let headers = leadrelay::cli::signed_headers(source, &id, &body).expect("sign");
                (body, headers)
            })
            .collect();
        senders.push(tokio::spawn(async move {
            for (body, headers) in requests {
                let mut request = http.post(format!("{base}/webhooks/website")).body(body);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                // After the kill, requests fail: those were never answered 202.
                let Ok(response) = request.send().await else {
                    return;
                };
                if response.status().as_u16() == 202 {
                    let answer: Value = response.json().await.unwrap_or_default();
                    if let Some(id) = answer["lead_id"].as_str() {
                        accepted.lock().await.push(id.to_owned());
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    eventually(
        Duration::from_secs(20),
        "the burst to be under way",
        || async { (answered.load(Ordering::SeqCst) >= KILL_AFTER_ACCEPTED).then_some(()) },
    )
    .await;
    child.kill();
    for sender in senders {
        sender.await.expect("sender finished");
    }
    let accepted = accepted.lock().await.clone();
    assert!(accepted.len() >= KILL_AFTER_ACCEPTED);
    assert!(
        accepted.len() < BURST,
        "the kill should land mid-burst ({} of {BURST} accepted)",
        accepted.len()
    );

    // Restart on the same data directory; everything accepted must come out notified.
    let mut child = serve(&files).spawn().await;
    let db = Sqlite::open(
        &files.data_dir,
        QueueSettings {
            max_receives: 5,
            visibility_timeout: Duration::from_secs(2),
        },
    )
    .expect("open the store beside the running server");
    eventually(
        Duration::from_secs(60),
        "every accepted lead notified and the queues drained",
        || async {
            let counts = db.counts().await.ok()?;
            if counts.messages > 0 {
                return None;
            }
            for lead_id in &accepted {
                let lead = db.get_lead(lead_id).await.ok()??;
                if lead.state.as_str() != "notified" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    child.kill();

    // Once in the store: one owner, one open-lead count per lead.
    let counts = db.counts().await.expect("counts");
    let mut open_leads = 0;
    let owners = config
        .reps
        .iter()
        .map(|r| Owner::Rep(r.get_ref().id.clone()))
        .chain(
            config
                .queues
                .iter()
                .map(|q| Owner::Queue(q.get_ref().id.clone())),
        )
        .chain(
            config
                .pools
                .iter()
                .map(|p| Owner::Pool(p.get_ref().id.clone())),
        );
    for owner in owners {
        open_leads += db
            .counter(&open_leads_counter(&owner))
            .await
            .expect("counter");
    }
    // The senders repeat four people, so most leads merge into a person's open lead: a merged
    // lead is the same piece of work and never counts.
    let stored = db
        .leads_since(jiff::Timestamp::UNIX_EPOCH, usize::MAX)
        .await
        .expect("leads");
    assert_eq!(stored.len() as i64, counts.leads);
    let new_work = stored.iter().filter(|l| l.merged_into.is_none()).count() as i64;
    assert_eq!(
        open_leads, new_work,
        "each stored lead that is not merged counted once toward its owner"
    );
    assert_eq!(counts.dead_letters, 0);

    // At the owner's channel: every accepted lead arrived, always for the one owner; a repeat
    // is possible only for a delivery the kill caught between Slack's answer and the receipt.
    let mut per_lead: HashMap<String, Vec<String>> = HashMap::new();
    for request in slack.received_requests().await.expect("recorded") {
        let payload: Value = serde_json::from_slice(&request.body).expect("json");
        let text = payload.to_string();
        // By the alert's own lead line: a merged lead's alert also names the lead it joined.
        if let Some(id) = accepted
            .iter()
            .find(|id| text.contains(&format!("lead `{id}`")))
        {
            let header = payload["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            per_lead.entry(id.clone()).or_default().push(header);
        }
    }
    for lead_id in &accepted {
        let alerts = per_lead.get(lead_id).map(Vec::as_slice).unwrap_or_default();
        assert!(!alerts.is_empty(), "lead {lead_id} never reached Slack");
        assert!(
            alerts.iter().all(|header| header == &alerts[0]),
            "lead {lead_id} was alerted for two owners: {alerts:?}"
        );
    }
    let repeats: usize = per_lead.values().map(|alerts| alerts.len() - 1).sum();
    let doubled = per_lead.values().filter(|alerts| alerts.len() > 1).count();
    println!(
        "accepted before the kill: {}, stored: {}; double alerts caused by the kill: {doubled} \
         of {} leads ({:.2} %), {repeats} repeat(s) in all",
        accepted.len(),
        counts.leads,
        accepted.len(),
        100.0 * doubled as f64 / accepted.len() as f64,
    );
    // Each delivery in flight at the kill can go out once more, and no other.
    assert!(repeats <= max_in_flight_deliveries(), "{repeats} repeats");
}

/// Delivers through the real channels, but the first time `channel` has delivered it says so
/// and then does not return until `release` (never, for a crash): the moment between a
/// channel's answer and its receipt. Later deliveries go straight through.
struct StopsAfter {
    inner: Channels,
    channel: &'static str,
    delivered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    stopped: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Notifier for StopsAfter {
    async fn deliver(&self, destination: &Destination, alert: &Alert) -> Result<(), NotifyError> {
        self.inner.deliver(destination, alert).await?;
        if destination.channel() == self.channel
            && !self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.delivered.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
}

/// A store with bruno's lead routed (Slack and an outbound webhook), the stand-in channels,
/// and what building a pipeline over that store needs.
struct Fault {
    stand_in: MockServer,
    config: Arc<Config>,
    db: Sqlite,
    terminal: Terminal,
    lead_id: String,
    clock: Arc<HandClock>,
    t0: Timestamp,
    _dir: tempfile::TempDir,
}

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Fault {
    async fn new() -> Fault {
        let stand_in = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&stand_in)
            .await;
        let url = stand_in.uri();
        let text = example_config()
            .edit(
                "email = \"bruno@yourco.example\"",
                &format!("email = \"bruno@yourco.example\"\nslack_webhook_url = \"{url}/slack\""),
            )
            .edit(
                "\n[claim]\n",
                &format!(
                    "\n[[notify.webhooks]]\nname = \"n8n\"\nurl = \"{url}/webhook\"\n\
                     secret = \"{WEBHOOK_SECRET}\"\n\n[claim]\n"
                ),
            );
        let config = parse_config(&text);
        // The receipt's lease is the visibility timeout.
        assert_eq!(config.pipeline.visibility_timeout_secs, 30);
        let app = EmbeddedApp::open(parse_config(&text));
        let pipeline = app.embedded.pipeline.clone();
        let body = sample("02-capture-emea-pricing.json"); // routes to bruno
        let headers = signed_header_map(&config, "website", "msg_fault", &body);
        let lead_id = pipeline
            .ingest("website", &headers, &body)
            .await
            .expect("accepted")
            .lead_id;
        for stage in [Stage::Enrich, Stage::Route] {
            pipeline
                .handle(stage, &Envelope::new(&lead_id, stage, "t").to_json())
                .await
                .expect("stage");
        }
        let t0 = Timestamp::now();
        Fault {
            stand_in,
            config: Arc::new(config),
            db: app.embedded.db.clone(),
            terminal: app.terminal,
            lead_id,
            clock: Arc::new(HandClock::new(t0)),
            t0,
            _dir: app.dir,
        }
    }

    fn channels(&self) -> Channels {
        Channels::from_config(&self.config.notify, Box::new(self.terminal.clone()))
            .expect("channels")
    }

    /// A pipeline over the store, as a process (re)started on it would build one.
    fn pipeline(&self, notifier: Arc<dyn Notifier>) -> Arc<Pipeline> {
        Arc::new(Pipeline::new(
            self.config.clone(),
            Arc::new(self.db.clone()),
            Arc::new(self.db.clone()),
            notifier,
            self.clock.clone(),
        ))
    }

    async fn notify(&self, pipeline: &Pipeline) -> Result<(), StageError> {
        pipeline
            .handle(
                Stage::Notify,
                &Envelope::new(&self.lead_id, Stage::Notify, "t").to_json(),
            )
            .await
            .map(|_| ())
    }

    async fn requests(&self, at: &str) -> Vec<wiremock::Request> {
        self.stand_in
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == at)
            .collect()
    }

    async fn state(&self) -> String {
        let lead = self.db.get_lead(&self.lead_id).await.expect("read");
        lead.expect("stored").state.as_str().to_owned()
    }

    /// Delivers until `channel` answered, then kills that "process" before the receipt.
    async fn crash_after(&self, channel: &'static str) {
        let delivered = Arc::new(tokio::sync::Notify::new());
        let crashing = self.pipeline(Arc::new(StopsAfter {
            inner: self.channels(),
            channel,
            delivered: delivered.clone(),
            release: Arc::new(tokio::sync::Notify::new()),
            stopped: Default::default(),
        }));
        let body = Envelope::new(&self.lead_id, Stage::Notify, "t").to_json();
        let task = tokio::spawn(async move { crashing.handle(Stage::Notify, &body).await });
        tokio::time::timeout(Duration::from_secs(10), delivered.notified())
            .await
            .expect("the channel answered");
        // The process dies: the pipeline goes with it, the receipt is never written.
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
    }

    /// How many calls of a channel (its receipt key starting with `prefix`) the crashed
    /// process may have made that no receipt records: 1 while its lease is all the store has
    /// (the request may have gone out, and may even reach the stand-in after the abort),
    /// else 0. So after the restart the channel has been called at least once and at most
    /// once more than this.
    async fn unrecorded_calls(&self, prefix: &str) -> usize {
        let receipts = self
            .db
            .delivery_receipts(&self.lead_id)
            .await
            .expect("receipts");
        let leased = receipts.iter().any(|r| {
            r.channel.starts_with(prefix) && r.delivered_at.is_none() && r.lease_until.is_some()
        });
        usize::from(leased)
    }

    fn at(&self, secs: i64) -> Timestamp {
        self.t0 + jiff::SignedDuration::from_secs(secs)
    }
}

#[tokio::test]
async fn a_crash_between_a_delivery_and_its_receipt_sends_that_alert_at_most_once_more() {
    let fault = Fault::new().await;
    fault.crash_after("slack").await;
    assert_eq!(fault.requests("/slack").await.len(), 1);
    assert_eq!(fault.terminal.alerts_for(&fault.lead_id), 1);
    // The channels are called at once: the webhook may have been called (and even have its
    // receipt) before the crash, or not yet.
    let webhooks_before = fault.requests("/webhook").await.len();
    assert!(webhooks_before <= 1);
    let unrecorded = fault.unrecorded_calls("webhook:").await;

    // Restarted within the lease (the visibility timeout): the channel is in flight for all
    // the store knows, so nothing is sent; the message is retried later.
    let restarted = fault.pipeline(Arc::new(fault.channels()));
    fault.clock.set(fault.at(10));
    let error = fault.notify(&restarted).await.expect_err("in flight");
    assert!(
        matches!(&error, StageError::DeliveryInFlight { channel, .. } if channel == "slack:rep:bruno"),
        "{error}"
    );
    assert_eq!(fault.requests("/slack").await.len(), 1);
    assert_eq!(fault.state().await, "routed");

    // Past the lease: the alert goes out once more, the rest of the round with it (each
    // channel at most once more than before the crash).
    fault.clock.set(fault.at(31));
    fault.notify(&restarted).await.expect("delivered");
    assert_eq!(fault.requests("/slack").await.len(), 2);
    let webhooks = fault.requests("/webhook").await.len();
    assert!(
        (1..=1 + unrecorded).contains(&webhooks),
        "{webhooks} webhook(s); {webhooks_before} seen before the crash, {unrecorded} unrecorded"
    );
    assert_eq!(fault.state().await, "notified");
    // And never again: the receipts hold.
    fault.clock.set(fault.at(3600));
    fault.notify(&restarted).await.expect("nothing left");
    assert_eq!(fault.requests("/slack").await.len(), 2);
    assert_eq!(fault.requests("/webhook").await.len(), webhooks);
    assert_eq!(fault.terminal.alerts_for(&fault.lead_id), 1);
}

#[tokio::test]
async fn a_webhook_sent_again_after_a_crash_carries_the_same_webhook_id() {
    let fault = Fault::new().await;
    fault.crash_after("webhook").await;
    let first = fault.requests("/webhook").await;
    assert_eq!(first.len(), 1);
    let slack_before = fault.requests("/slack").await.len();
    let unrecorded = fault.unrecorded_calls("slack:").await;

    let restarted = fault.pipeline(Arc::new(fault.channels()));
    fault.clock.set(fault.at(31));
    fault.notify(&restarted).await.expect("delivered");
    let hooks = fault.requests("/webhook").await;
    assert_eq!(hooks.len(), 2);
    // The receiver sees the same id twice and keeps one (Standard Webhooks).
    let id = |r: &wiremock::Request| r.headers.get("webhook-id").map(|v| v.as_bytes().to_vec());
    assert_eq!(
        id(&hooks[0]),
        Some(format!("lead_{}", fault.lead_id).into_bytes())
    );
    assert_eq!(id(&hooks[1]), id(&hooks[0]));
    // Slack, called at the same time as the webhook: at most once more than before.
    let slack = fault.requests("/slack").await.len();
    assert!(
        (1..=1 + unrecorded).contains(&slack),
        "{slack} Slack post(s); {slack_before} seen before the crash, {unrecorded} unrecorded"
    );
    assert_eq!(fault.state().await, "notified");
}

#[tokio::test]
async fn a_lease_that_runs_out_while_this_process_still_delivers_is_not_taken_over() {
    let fault = Fault::new().await;
    let (delivered, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let pipeline = fault.pipeline(Arc::new(StopsAfter {
        inner: fault.channels(),
        channel: "slack",
        delivered: delivered.clone(),
        release: release.clone(),
        stopped: Default::default(),
    }));
    let slow = {
        let (pipeline, body) = (
            pipeline.clone(),
            Envelope::new(&fault.lead_id, Stage::Notify, "t").to_json(),
        );
        tokio::spawn(async move { pipeline.handle(Stage::Notify, &body).await })
    };
    tokio::time::timeout(Duration::from_secs(10), delivered.notified())
        .await
        .expect("Slack answered");
    // Slack answered, the receipt is not written yet and the store's lease has run out (its
    // write waits behind a busy committer, say): a second worker of the process waits.
    fault.clock.set(fault.at(31));
    let error = fault.notify(&pipeline).await.expect_err("in flight here");
    assert!(
        matches!(error, StageError::DeliveryInFlight { .. }),
        "{error}"
    );
    assert_eq!(fault.requests("/slack").await.len(), 1);

    release.notify_one();
    slow.await.expect("finished").expect("delivered");
    fault.notify(&pipeline).await.expect("nothing left");
    assert_eq!(fault.requests("/slack").await.len(), 1);
    assert_eq!(fault.state().await, "notified");
}

/// Slack answers at once; the webhook, called at the same time, answers five minutes later
/// (by the pipeline's clock), and only once Slack has answered.
struct SlowWebhook {
    inner: Channels,
    clock: Arc<HandClock>,
    later: Timestamp,
    slack_answered: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Notifier for SlowWebhook {
    async fn deliver(&self, destination: &Destination, alert: &Alert) -> Result<(), NotifyError> {
        if destination.channel() == "webhook" {
            self.slack_answered.notified().await;
            self.clock.set(self.later);
            return self.inner.deliver(destination, alert).await;
        }
        let delivered = self.inner.deliver(destination, alert).await;
        if destination.channel() == "slack" {
            self.slack_answered.notify_one();
        }
        delivered
    }
}

/// The owner is told when their own channel answers: `notified_at` (where speed-to-lead is
/// measured) is that delivery's time, not when the slowest channel of the round finished.
#[tokio::test]
async fn notified_at_is_when_the_owners_channel_answered_not_when_the_slowest_one_did() {
    let fault = Fault::new().await;
    fault.clock.set(fault.at(0));
    let pipeline = fault.pipeline(Arc::new(SlowWebhook {
        inner: fault.channels(),
        clock: fault.clock.clone(),
        later: fault.at(300),
        slack_answered: tokio::sync::Notify::new(),
    }));
    fault.notify(&pipeline).await.expect("delivered");
    assert_eq!(fault.requests("/slack").await.len(), 1);
    assert_eq!(fault.requests("/webhook").await.len(), 1);
    let lead = fault
        .db
        .get_lead(&fault.lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(lead.state, LeadState::Notified);
    assert_eq!(lead.timeline.notified_at, Some(fault.at(0)));
}

//! The scheduled digest end to end, on both stores: a hand-held clock drives leads through
//! route → notify → claim → touch over two weeks with the real stage code; at Monday 08:00 in
//! Berlin sla-watch queues the weekly digest once, and the notify stage posts it to a Slack
//! stand-in and e-mails it through a local SMTP server, each once, with the figures worked
//! out by hand below.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use leadrelay_channels::Channels;
use leadrelay_email::SmtpMailer;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{ActivityKind, Cadence, DigestRequest, Envelope, Owner, Stage};
use leadrelay_shared::ports::{LeadStore, Queue};
use leadrelay_shared::stages::claim::{claim, ClaimVia};
use leadrelay_shared::stages::sla;
use leadrelay_shared::stages::Pipeline;
use mail_parser::MessageParser;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::aws::moto;
use crate::support::smtp::SmtpSink;
use crate::support::{
    commented_example, example_config, initech_lead, open_store, parse_config_with_env, Edit,
    HandClock, Terminal,
};

const TOKEN: &str = "xoxb-1111-2222-SeCrEtBoTtOkEn";
const CHANNEL: &str = "CDIGEST1";
const DIRECTOR: &str = "sales-director@yourco.example";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// The example configuration with every EMEA lead Bruno's (a pool of one).
fn base_config() -> String {
    example_config().edit(
        "members = [{ rep = \"bruno\", weight = 2 }, { rep = \"fatima\", weight = 1 }]",
        "members = [{ rep = \"bruno\" }]",
    )
}

/// The same with the Slack app at the stand-in, e-mail through the local SMTP server and the
/// weekly digest on Mondays at 08:00 in Berlin.
fn digest_config(slack: &MockServer, smtp_port: u16) -> Config {
    let text = base_config().edit(
        "\n[claim]\n",
        &format!(
            "\n[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\napi_base_url = \"{}/api\"\n\n\
             [notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
             smtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nsmtp_tls = \"none\"\n\n\
             [reports.digest]\nweekly = \"mon 08:00\"\ntimezone = \"Europe/Berlin\"\n\
             slack_channel = \"{CHANNEL}\"\nemails = [\"{DIRECTOR}\"]\n\n[claim]\n",
            slack.uri()
        ),
    );
    parse_config_with_env(&text, &[("SLACK_BOT_TOKEN", TOKEN)])
}

struct Harness {
    /// Drives the leads (terminal alerts only).
    leads: Pipeline,
    /// Runs sla-watch and the digest, with the Slack app and e-mail.
    digest: Pipeline,
    clock: Arc<HandClock>,
    slack: MockServer,
    smtp: SmtpSink,
    _keep: Option<tempfile::TempDir>,
}

impl Harness {
    async fn new(
        store: Arc<dyn LeadStore>,
        queue: Arc<dyn Queue>,
        keep: Option<tempfile::TempDir>,
    ) -> Harness {
        let clock = Arc::new(HandClock::new(at("2026-11-16T00:00:00Z")));
        let slack = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(header("content-type", "application/json; charset=utf-8"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": CHANNEL, "ts": "1764486000.000100"
            })))
            .mount(&slack)
            .await;
        let smtp = SmtpSink::start().await;
        let terminal = || Box::new(Terminal::default());
        let leads = Pipeline::new(
            Arc::new(parse_config_with_env(&base_config(), &[])),
            store.clone(),
            queue.clone(),
            Arc::new(Channels::new(Duration::from_secs(1), terminal()).expect("channels")),
            clock.clone(),
        );
        let config = digest_config(&slack, smtp.port);
        let mailer = SmtpMailer::new(config.notify.email.as_ref().expect("[notify.email]"))
            .expect("smtp transport");
        let channels = Channels::from_config(&config.notify, terminal())
            .expect("channels")
            .with_mailer(Arc::new(mailer));
        let digest = Pipeline::new(
            Arc::new(config),
            store,
            queue,
            Arc::new(channels),
            clock.clone(),
        );
        Harness {
            leads,
            digest,
            clock,
            slack,
            smtp,
            _keep: keep,
        }
    }

    fn store(&self) -> &dyn LeadStore {
        self.leads.store.as_ref()
    }

    /// Captured at `captured`, routed and alerted `notified` seconds later (to Bruno).
    async fn capture(&self, id: &str, captured: Timestamp, notified: i64, pricing: bool) {
        self.clock.set(captured);
        let mut lead = initech_lead(id, &format!("{id}@initech.co.uk"), captured);
        if pricing {
            // The pricing page makes it tier 1 (a 5-minute SLA; tier 2 has 15).
            lead.capture.metadata.source_url = Some("https://yourco.example/pricing".into());
        }
        self.store().create_lead(&lead).await.expect("created");
        self.clock
            .set(captured + SignedDuration::from_secs(notified));
        crate::support::route_and_notify(&self.leads, id).await;
        let lead = self
            .store()
            .get_lead(id)
            .await
            .expect("read")
            .expect("lead");
        assert_eq!(
            lead.assignment.map(|a| a.owner),
            Some(Owner::Rep("bruno".into()))
        );
    }

    async fn claim(&self, id: &str, when: Timestamp) {
        self.clock.set(when);
        claim(&self.leads, id, "bruno", ClaimVia::Slack)
            .await
            .expect("claimed");
    }

    async fn activity(&self, id: &str, kind: ActivityKind, when: Timestamp) {
        self.clock.set(when);
        let event = crate::support::human_activity(id, kind, when);
        self.leads.record_activity(&event).await.expect("recorded");
    }

    async fn sweep(&self, now: &str) -> sla::SweepReport {
        self.clock.set(at(now));
        sla::sweep(&self.digest).await.expect("sla-watch")
    }

    /// Every digest message waiting on the notify queue (the leads' own notify messages,
    /// left there by the route stage, are taken off and dropped).
    async fn queued_digests(&self) -> Vec<String> {
        let queue = self.digest.queue.clone();
        let mut digests = Vec::new();
        loop {
            let received = queue.receive(Stage::Notify, 10).await.expect("receive");
            if received.is_empty() {
                return digests;
            }
            for message in received {
                let envelope = Envelope::from_json(&message.body).expect("envelope");
                if envelope.digest.is_some() {
                    digests.push(message.body.clone());
                }
                queue
                    .delete(Stage::Notify, &message.receipt)
                    .await
                    .expect("delete");
            }
        }
    }

    async fn slack_posts(&self) -> Vec<Value> {
        self.slack
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r: &&Request| r.url.path() == "/api/chat.postMessage")
            .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
            .collect()
    }

    /// The text parts of the mails the director received.
    fn mails(&self) -> Vec<(String, String)> {
        self.smtp
            .mails_to(DIRECTOR)
            .iter()
            .map(|mail| {
                let message = MessageParser::default()
                    .parse(mail.data.as_bytes())
                    .expect("a MIME message");
                (
                    message.subject().expect("Subject").to_owned(),
                    message.body_text(0).expect("text part").into_owned(),
                )
            })
            .collect()
    }
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    Harness::new(Arc::new(db.clone()), Arc::new(db), Some(dir)).await
}

async fn on_moto() -> Harness {
    let deployment = moto().await.deploy(5, 30).await;
    Harness::new(
        Arc::new(deployment.store),
        Arc::new(deployment.queues),
        None,
    )
    .await
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// Two weeks of Bruno's leads, in Berlin's weeks (UTC+1):
///
/// | lead | week | captured (UTC) | claimed | first touch | SLA |
/// |---|---|---|---|---|---|
/// | p1 | before | Tue 17 Nov 10:00 | +2 min | +5 min (call) | met |
/// | p2 | before | Wed 18 Nov 10:00 | +20 min | +30 min (call) | missed |
/// | c4 | this | Sun 22 Nov 23:30 (Mon 00:30 in Berlin) | +1 min | - | met; untouched |
/// | c1 | this, tier 1 | Tue 24 Nov 10:00 | +1 min | +2 min (call), meeting booked +1 h | met |
/// | c2 | this | Tue 24 Nov 11:00 | +5 min | +10 min (e-mail) | met |
/// | c3 | this | Wed 25 Nov 09:00 | - | +40 min (e-mail) | missed |
/// | n1 | next | Sun 29 Nov 23:30 (Mon 00:30 in Berlin) | +1 min | +2 min | - |
///
/// and one activity event (Wed 25 Nov) that matched no lead.
async fn drive(h: &Harness) {
    let t = at;
    h.capture("p1", t("2026-11-17T10:00:00Z"), 20, false).await;
    h.claim("p1", t("2026-11-17T10:02:00Z")).await;
    h.activity("p1", ActivityKind::Called, t("2026-11-17T10:05:00Z"))
        .await;
    h.capture("p2", t("2026-11-18T10:00:00Z"), 20, false).await;
    h.claim("p2", t("2026-11-18T10:20:00Z")).await;
    h.activity("p2", ActivityKind::Called, t("2026-11-18T10:30:00Z"))
        .await;

    h.capture("c4", t("2026-11-22T23:30:00Z"), 15, false).await;
    h.claim("c4", t("2026-11-22T23:31:00Z")).await;
    let c1 = t("2026-11-24T10:00:00Z");
    h.capture("c1", c1, 20, true).await;
    h.claim("c1", c1 + secs(60)).await;
    h.activity("c1", ActivityKind::Called, c1 + secs(120)).await;
    h.activity("c1", ActivityKind::MeetingBooked, c1 + secs(3600))
        .await;
    let c2 = t("2026-11-24T11:00:00Z");
    h.capture("c2", c2, 30, false).await;
    h.claim("c2", c2 + secs(300)).await;
    h.activity("c2", ActivityKind::Emailed, c2 + secs(600))
        .await;
    let c3 = t("2026-11-25T09:00:00Z");
    h.capture("c3", c3, 10, false).await;
    h.activity("c3", ActivityKind::Emailed, c3 + secs(2400))
        .await;
    h.activity("nobody", ActivityKind::Called, t("2026-11-25T12:00:00Z"))
        .await;

    let n1 = t("2026-11-29T23:30:00Z");
    h.capture("n1", n1, 10, false).await;
    h.claim("n1", n1 + secs(60)).await;
    h.activity("n1", ActivityKind::Called, n1 + secs(120)).await;
}

/// What the week's digest says, worked out from the table: 4 leads (2 the week before);
/// first responses 120, 600, 2400 s → p50 600, p90 2400 (before: 300, 1800 → 300, 1800);
/// SLA 3 of 4 (before 1 of 2); tier 1: c1 met; contact 3 of 4; c4 untouched; Bruno's median
/// over his 3 responded leads 10 min.
const WEEK: &str = "Weekly speed-to-lead digest\n\
    Mon 23 Nov to Sun 29 Nov 2026 (Europe/Berlin), compared with the week before\n\n\
    Leads: 4 (+100%)\n\
    Median first response: 10 min (+5 min)\n\
    90th percentile first response: 40 min (+10 min)\n\
    SLA compliance: 75% (+25 pts)\n\
    Tier 1 SLA compliance: 100%\n\
    Contact rate: 75%\n\
    Meetings booked: 1\n\
    SLA breaches: 1\n\
    Untouched past SLA: 1\n\
    Unmatched activity events: 1\n\n\
    Slowest to respond (median first response):\n\
    1. Bruno Keller: 10 min over 3 responded leads\n";

async fn the_weekly_digest_is_queued_once_and_sent_once_per_destination(h: Harness) {
    drive(&h).await;

    // Monday 30 November, 07:59 in Berlin: not yet.
    let early = h.sweep("2026-11-30T06:59:00Z").await;
    assert!(early.digests.is_empty(), "{early:?}");
    assert_eq!(
        early.breaches, 0,
        "every lead was answered: nothing to escalate"
    );
    // 08:00 in Berlin: the week's digest, once.
    let due = h.sweep("2026-11-30T07:00:00Z").await;
    assert_eq!(due.digests, ["weekly:2026-11-30"]);
    let again = h.sweep("2026-11-30T07:01:00Z").await;
    assert!(again.digests.is_empty(), "{again:?}");
    let queued = h.queued_digests().await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let body = &queued[0];
    assert_eq!(
        Envelope::from_json(body).expect("envelope").digest,
        Some(DigestRequest {
            cadence: Cadence::Weekly,
            date: jiff::civil::date(2026, 11, 30),
        })
    );

    // The notify stage sends it: one Slack post in the channel, one e-mail.
    h.clock.set(at("2026-11-30T07:01:30Z"));
    let outcome = h
        .digest
        .handle(Stage::Notify, body)
        .await
        .expect("digest sent");
    assert!(!outcome.skipped_as_done && !outcome.failed_for_good);
    let posts = h.slack_posts().await;
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post["channel"], CHANNEL);
    assert_eq!(
        post["text"],
        "Weekly speed-to-lead digest, Mon 23 Nov to Sun 29 Nov 2026: 4 leads, median first \
         response 10 min, SLA 75%"
    );
    let blocks = post["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["text"]["text"], "Weekly speed-to-lead digest");
    assert_eq!(
        blocks[1]["elements"][0]["text"],
        "Mon 23 Nov to Sun 29 Nov 2026 (Europe/Berlin), compared with the week before"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        fields,
        [
            "*Leads*\n4 (+100%)",
            "*Median first response*\n10 min (+5 min)",
            "*90th percentile first response*\n40 min (+10 min)",
            "*SLA compliance*\n75% (+25 pts)",
            "*Tier 1 SLA compliance*\n100%",
            "*Contact rate*\n75%",
            "*Meetings booked*\n1",
            "*SLA breaches*\n1",
            "*Untouched past SLA*\n1",
            "*Unmatched activity events*\n1",
        ]
    );
    assert_eq!(
        blocks[3]["text"]["text"],
        "*Slowest to respond (median first response)*\n\
         1. Bruno Keller: 10 min over 3 responded leads"
    );
    // No prospect's address or name reaches a digest.
    let raw = post.to_string();
    assert!(
        !raw.contains("initech") && !raw.contains("Tom Baker"),
        "{raw}"
    );
    let mails = h.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].0,
        "[leadrelay] Weekly speed-to-lead digest: Mon 23 Nov to Sun 29 Nov 2026"
    );
    assert_eq!(mails[0].1.replace("\r\n", "\n"), WEEK);

    // Redelivered (a retry, a replay): the receipts send nothing twice.
    let outcome = h
        .digest
        .handle(Stage::Notify, body)
        .await
        .expect("redelivered");
    assert!(outcome.skipped_as_done);
    assert_eq!(h.slack_posts().await.len(), 1);
    assert_eq!(h.mails().len(), 1);
    // A later sweep the same day queues nothing more.
    assert!(h.sweep("2026-11-30T18:00:00Z").await.digests.is_empty());
    assert!(h.queued_digests().await.is_empty());

    // A week without leads says so (and there is no week before to compare with).
    let empty = Envelope::digest(DigestRequest {
        cadence: Cadence::Weekly,
        date: jiff::civil::date(2026, 11, 16),
    });
    h.digest
        .handle(Stage::Notify, &empty.to_json())
        .await
        .expect("empty digest sent");
    let posts = h.slack_posts().await;
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[1]["text"],
        "Weekly speed-to-lead digest, Mon 9 Nov to Sun 15 Nov 2026: No leads were captured \
         that week."
    );
    let mails = h.mails();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].1.replace("\r\n", "\n"),
        "Weekly speed-to-lead digest\n\
         Mon 9 Nov to Sun 15 Nov 2026 (Europe/Berlin), no leads the week before to compare \
         with\n\n\
         No leads were captured that week.\n\n\
         Untouched past SLA: 0\n\
         Unmatched activity events: 0\n"
    );
}

/// A destination that fails for now fails the message (the queue retries it); the retry
/// sends only what is missing.
async fn a_failed_destination_is_retried_alone(h: Harness) {
    h.smtp.refuse(DIRECTOR, "451 4.3.0 try again later", 1);
    let body = Envelope::digest(DigestRequest {
        cadence: Cadence::Weekly,
        date: jiff::civil::date(2026, 11, 30),
    })
    .to_json();
    h.clock.set(at("2026-11-30T07:01:00Z"));
    let error = h
        .digest
        .handle(Stage::Notify, &body)
        .await
        .expect_err("the mail server said later");
    assert!(error.to_string().contains("email"), "{error}");
    assert_eq!(h.slack_posts().await.len(), 1);
    assert!(h.mails().is_empty());
    h.digest
        .handle(Stage::Notify, &body)
        .await
        .expect("retried");
    assert_eq!(h.slack_posts().await.len(), 1, "Slack had it already");
    assert_eq!(h.mails().len(), 1);
}

#[test]
fn the_commented_digest_example_in_the_shipped_config_validates_when_uncommented() {
    let shipped = crate::support::shipped_example_config();
    let block = commented_example(&shipped, "[reports]");
    assert!(block.contains("[reports.digest]"), "{block}");
    let channels = "[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\n\n\
                    [notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
                    smtp_host = \"127.0.0.1\"\n\n";
    let text = shipped.edit_first("# [reports]", &format!("{channels}{block}\n# "));
    let config = Config::parse(&text, "t.toml", &|name| {
        Some(format!("{name}-value-0123456789"))
    })
    .expect("the uncommented example is valid");
    let digest = config.reports.digest.expect("[reports.digest]");
    assert_eq!(digest.tz.iana_name(), Some("Europe/London"));
    assert!(digest.daily_at.is_some() && digest.weekly_at.is_some());
}

mod embedded_store {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_destination_is_retried_alone() {
        super::a_failed_destination_is_retried_alone(super::embedded().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_weekly_digest_is_queued_once_and_sent_once_per_destination() {
        super::the_weekly_digest_is_queued_once_and_sent_once_per_destination(
            super::embedded().await,
        )
        .await;
    }
}

mod dynamodb_on_moto {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_weekly_digest_is_queued_once_and_sent_once_per_destination() {
        super::the_weekly_digest_is_queued_once_and_sent_once_per_destination(
            super::on_moto().await,
        )
        .await;
    }
}

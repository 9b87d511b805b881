//! Replies follow the lead's owner: the acknowledgement's Reply-To is a reply address leadrelay
//! signed, Mailgun posts the prospect's reply to `POST /inbound/email`, and the notify stage
//! forwards it to whoever owns the lead by then (a rep who claimed it, an escalation target),
//! over the embedded store and a local SMTP server. Replays, forgeries, stale posts, addresses
//! leadrelay did not issue and oversized bodies send nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hmac::Mac;
use jiff::Timestamp;
use lambda_http::tower::ServiceExt as _;
use leadrelay_email::SmtpMailer;
use leadrelay_shared::model::{Envelope, Lead, Owner, Stage};
use leadrelay_shared::ports::{Clock, DeadLetters as _, LeadStore, Queue as _};
use leadrelay_shared::reply_relay::RelayAddress;
use leadrelay_shared::stages::claim::{self, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::StageError;
use leadrelay_web::{router, Api};
use mail_parser::{Address, MessageParser};
use serde_json::Value;

use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{initech_lead, parse_config, shipped_example_config, Edit, ManualPipeline};

/// Tuesday 10:00 in London: EMEA is open.
const DAY: &str = "2026-11-24T10:00:00Z";
/// Mailgun's HTTP webhook signing key, as configured.
const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";

/// The shipped configuration with e-mail (EMEA reps alerted by e-mail), the reply relay, and
/// teammates allowed to claim each other's leads.
fn config_text(port: u16) -> String {
    let mut text = shipped_example_config();
    for rep in ["bruno", "fatima"] {
        let line = format!("email = \"{rep}@yourco.example\"\n");
        text = text.edit(&line, &format!("{line}alert_email = true\n"));
    }
    let notify = "http_timeout_ms = 5000\n";
    text.edit(
        notify,
        &format!(
            "{notify}\n[notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
             smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\n\n\
             [notify.email.replies]\naddress = \"replies@in.yourco.example\"\n\
             signing_keys = [\"{MAILGUN_KEY}\"]\n"
        ),
    )
    .edit("# default = \"owner\"", "default = \"team\"")
}

struct Harness {
    manual: ManualPipeline,
    sink: SmtpSink,
}

impl std::ops::Deref for Harness {
    type Target = ManualPipeline;

    fn deref(&self) -> &ManualPipeline {
        &self.manual
    }
}

async fn harness() -> Harness {
    let sink = SmtpSink::start().await;
    let config = parse_config(&config_text(sink.port));
    let mailer = SmtpMailer::new(config.notify.email.as_ref().expect("[notify.email]"))
        .expect("smtp transport");
    let manual = ManualPipeline::with_channels(
        config,
        DAY.parse().expect("time"),
        Duration::from_secs(1),
        |channels| channels.with_mailer(Arc::new(mailer)),
    );
    Harness { manual, sink }
}

/// A form post as Mailgun's route `forward()` sends it.
struct Post {
    recipient: String,
    from: String,
    subject: String,
    body_plain: String,
    stripped_text: String,
    message_id: String,
    timestamp: i64,
    token: String,
    /// Signed with this key (Mailgun's, unless a forgery).
    key: &'static str,
}

impl Post {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let timestamp = self.timestamp.to_string();
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_bytes()).expect("any key");
        mac.update(format!("{timestamp}{}", self.token).as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        vec![
            ("recipient", self.recipient.clone()),
            ("sender", "bounce@initech.co.uk".to_owned()),
            ("from", self.from.clone()),
            ("subject", self.subject.clone()),
            ("body-plain", self.body_plain.clone()),
            ("stripped-text", self.stripped_text.clone()),
            ("Message-Id", self.message_id.clone()),
            ("timestamp", timestamp),
            ("token", self.token.clone()),
            ("signature", signature),
        ]
    }

    fn urlencoded(&self) -> (String, Vec<u8>) {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.fields() {
            form.append_pair(name, &value);
        }
        (
            "application/x-www-form-urlencoded".to_owned(),
            form.finish().into_bytes(),
        )
    }

    /// As Mailgun sends a message with attachments: multipart, with a file part.
    fn multipart(&self) -> (String, Vec<u8>) {
        self.multipart_with(b"%PDF-1.4 not read")
    }

    /// Multipart, with `attachment` as the file part's content.
    fn multipart_with(&self, attachment: &[u8]) -> (String, Vec<u8>) {
        let boundary = "----mailgun-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = String::new();
        for (name, value) in self.fields() {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"attachment-1\"; \
             filename=\"quote.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
        ));
        let mut body = body.into_bytes();
        body.extend_from_slice(attachment);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

impl Harness {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Stores the lead, routes it and runs notify: the owner's alert and the acknowledgement.
    async fn route_and_notify(&self, lead: &Lead) {
        self.db.create_lead(lead).await.expect("stored");
        self.handle(Stage::Route, &lead.id).await;
        self.handle(Stage::Notify, &lead.id).await;
    }

    /// The acknowledgement's Reply-To for the prospect at `address`.
    fn reply_to(&self, prospect: &str) -> String {
        let acks = self.sink.mails_to(prospect);
        assert_eq!(acks.len(), 1, "one acknowledgement to {prospect}");
        let message = MessageParser::default()
            .parse(acks[0].data.as_bytes())
            .expect("MIME");
        first_address(message.reply_to()).expect("a Reply-To")
    }

    fn post(&self, recipient: &str, message_id: &str, token: &str) -> Post {
        Post {
            recipient: recipient.to_owned(),
            from: "Tom Baker <tom@initech.co.uk>".to_owned(),
            subject: "Thanks, Tom: we have your request".to_owned(),
            body_plain: "Quoted history that is not shown\n> earlier text".to_owned(),
            stripped_text: "Can you also quote <b>50 seats</b>? <script>alert(1)</script> & more"
                .to_owned(),
            message_id: message_id.to_owned(),
            timestamp: self.now().as_second(),
            token: token.to_owned(),
            key: MAILGUN_KEY,
        }
    }

    /// Posts to `/inbound/email` through the router the embedded server and the claim Lambda
    /// serve; the status and the JSON answer.
    async fn send(&self, (content_type, body): (String, Vec<u8>)) -> (u16, Value) {
        let request = Request::builder()
            .method("POST")
            .uri("/inbound/email")
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(Body::from(body))
            .expect("request");
        let app = router(Api::new(
            self.pipeline.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
        ));
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Runs the notify stage on every waiting notify message (the replies among them).
    async fn drain_notify(&self) -> Vec<Result<(), StageError>> {
        let mut results = Vec::new();
        for message in self.db.receive(Stage::Notify, 50).await.expect("receive") {
            results.push(
                self.pipeline
                    .handle(Stage::Notify, &message.body)
                    .await
                    .map(|_| ()),
            );
            self.db
                .delete(Stage::Notify, &message.receipt)
                .await
                .expect("delete");
        }
        results
    }

    fn owner_of(&self, lead: &Lead) -> Owner {
        lead.assignment.as_ref().expect("assigned").owner.clone()
    }
}

fn first_address(address: Option<&Address>) -> Option<String> {
    address
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_owned)
}

/// The forwarded replies the sink received for `rep` (their alert e-mails left out).
fn replies_to(sink: &SmtpSink, address: &str) -> Vec<Mail> {
    sink.mails_to(address)
        .into_iter()
        .filter(|m| m.data.contains("replied to the acknowledgement"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_rep_who_claimed_the_lead_once_and_escaped() {
    let h = harness().await;
    let lead = initech_lead("relay-claim", "tom@initech.co.uk", h.now());
    h.route_and_notify(&lead).await;
    let routed = h.lead("relay-claim").await;
    assert_eq!(h.owner_of(&routed), Owner::Rep("bruno".into()));

    // The acknowledgement's Reply-To is a signed reply address for this lead, not Bruno's.
    let reply_to = h.reply_to("tom@initech.co.uk");
    assert!(
        reply_to.starts_with("replies+") && reply_to.ends_with("@in.yourco.example"),
        "{reply_to}"
    );
    let relay = RelayAddress::parse("replies@in.yourco.example").expect("address");
    assert_eq!(
        relay.lead_of(&h.pipeline.config.claim.link_keys, &reply_to),
        Ok("relay-claim".to_owned())
    );

    // Priya, Bruno's teammate, claims it.
    let outcome = claim::claim(&h.pipeline, "relay-claim", "priya", ClaimVia::Link)
        .await
        .expect("claim");
    assert!(matches!(outcome, ClaimOutcome::Won { .. }), "{outcome:?}");
    h.drain_notify().await;
    let bruno_before = h.sink.mails_to("bruno@yourco.example").len();

    // Mailgun posts the reply (to the address as a mail system may have upper-cased it).
    let post = h.post(
        &reply_to.to_ascii_uppercase(),
        "<CAF=reply-1@mail.initech.co.uk>",
        &"t".repeat(50),
    );
    let (status, body) = h.send(post.urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "forwarded");
    assert_eq!(body["lead_id"], "relay-claim");
    // Nothing is sent inline: the reply waits in the notify queue.
    assert!(replies_to(&h.sink, "priya@yourco.example").is_empty());
    assert!(h.drain_notify().await.iter().all(Result::is_ok));

    let forwarded = replies_to(&h.sink, "priya@yourco.example");
    assert_eq!(
        forwarded.len(),
        1,
        "the reply reaches the rep who claimed it"
    );
    assert_eq!(forwarded[0].to, vec!["priya@yourco.example".to_owned()]);
    assert_eq!(
        h.sink.mails_to("bruno@yourco.example").len(),
        bruno_before,
        "not the routed owner"
    );
    let message = MessageParser::default()
        .parse(forwarded[0].data.as_bytes())
        .expect("MIME");
    assert_eq!(
        first_address(message.from()).as_deref(),
        Some("alerts@yourco.example")
    );
    assert_eq!(
        first_address(message.to()).as_deref(),
        Some("priya@yourco.example")
    );
    assert_eq!(
        first_address(message.reply_to()).as_deref(),
        Some("tom@initech.co.uk"),
        "the rep's answer goes to the prospect"
    );
    assert_eq!(
        message.subject(),
        Some("Re: Thanks, Tom: we have your request")
    );
    let text = message.body_text(0).expect("text").into_owned();
    let html = message.body_html(0).expect("html").into_owned();
    // The stripped text, not the quoted history.
    assert!(
        text.contains("Can you also quote <b>50 seats</b>?"),
        "{text}"
    );
    assert!(!text.contains("Quoted history"), "{text}");
    assert!(
        text.contains(
            "Lead relay-claim (Tom Baker): http://127.0.0.1:8080/claim/relay-claim?rep=priya"
        ),
        "{text}"
    );
    assert!(
        html.contains("Can you also quote &lt;b&gt;50 seats&lt;/b&gt;? &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("<b>50"),
        "{html}"
    );

    // The same post again (a replay within the tolerance): a duplicate, nothing queued.
    let (status, body) = h.send(post.urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert!(h.drain_notify().await.is_empty(), "nothing queued");
    // Mailgun redelivering the message under a fresh token, as multipart: queued again, but the
    // receipt of its Message-Id sends nothing twice.
    let again = h.post(
        &reply_to,
        "<CAF=reply-1@mail.initech.co.uk>",
        &"u".repeat(50),
    );
    let (status, body) = h.send(again.multipart()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "forwarded");
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    assert_eq!(replies_to(&h.sink, "priya@yourco.example").len(), 1);

    // A second reply, with an attachment (multipart): forwarded, the attachment not read.
    let second = h.post(
        &reply_to,
        "<CAF=reply-2@mail.initech.co.uk>",
        &"v".repeat(50),
    );
    let (status, body) = h.send(second.multipart()).await;
    assert_eq!(status, 200, "{body}");
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    assert_eq!(replies_to(&h.sink, "priya@yourco.example").len(), 2);

    // A third, with a 3 MiB attachment (past the 256 KiB webhook limit): still forwarded,
    // the attachment streamed past.
    let third = h.post(
        &reply_to,
        "<CAF=reply-3@mail.initech.co.uk>",
        &"w".repeat(50),
    );
    let (status, body) = h
        .send(third.multipart_with(&vec![b'%'; 3 * 1024 * 1024]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    assert_eq!(replies_to(&h.sink, "priya@yourco.example").len(), 3);
    assert!(replies_to(&h.sink, "bruno@yourco.example").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_escalation_the_reply_reaches_the_new_owner() {
    let h = harness().await;
    let lead = initech_lead("relay-esc", "tom@initech.co.uk", h.now());
    h.route_and_notify(&lead).await;
    let reply_to = h.reply_to("tom@initech.co.uk");
    assert_eq!(
        h.owner_of(&h.lead("relay-esc").await),
        Owner::Rep("bruno".into())
    );

    // Nobody claims it within its 15 minutes: sla-watch hands it to Bruno's backup.
    h.clock.set("2026-11-24T10:16:00Z".parse().expect("time"));
    let report = h.sweep().await;
    assert_eq!(report.escalated, vec![("relay-esc".to_owned(), 1)]);
    let escalated = h.lead("relay-esc").await;
    let Owner::Rep(new_owner) = h.owner_of(&escalated) else {
        panic!("escalated to a rep: {:?}", escalated.assignment);
    };
    assert_eq!(new_owner, "fatima");
    assert!(escalated.claim.is_none());

    let (status, body) = h
        .send(
            h.post(&reply_to, "<esc-1@mail.initech.co.uk>", &"e".repeat(50))
                .urlencoded(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    let forwarded = replies_to(&h.sink, "fatima@yourco.example");
    assert_eq!(forwarded.len(), 1, "the escalation target gets the reply");
    assert!(replies_to(&h.sink, "bruno@yourco.example").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_unissued_and_oversized_posts_are_refused_and_send_nothing() {
    let h = harness().await;
    let lead = initech_lead("relay-refuse", "tom@initech.co.uk", h.now());
    h.route_and_notify(&lead).await;
    let reply_to = h.reply_to("tom@initech.co.uk");
    h.drain_notify().await;
    let mails_before = h.sink.mails().len();

    // Signed with a key that is not Mailgun's.
    let mut forged = h.post(&reply_to, "<f@x>", &"f".repeat(50));
    forged.key = "key-not-the-mailgun-signing-key";
    assert_eq!(h.send(forged.urlencoded()).await.0, 401);
    // A genuine signature with the fields changed under it (the signature covers the
    // timestamp and token only; a new token needs a new signature).
    let genuine = h.post(&reply_to, "<g@x>", &"g".repeat(50));
    let mut fields = genuine.fields();
    for (name, value) in &mut fields {
        if *name == "token" {
            *value = "h".repeat(50);
        }
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &fields {
        form.append_pair(name, value);
    }
    let tampered = (
        "application/x-www-form-urlencoded".to_owned(),
        form.finish().into_bytes(),
    );
    assert_eq!(h.send(tampered).await.0, 401);
    // Unsigned.
    let unsigned = (
        "application/x-www-form-urlencoded".to_owned(),
        format!("recipient={reply_to}&from=tom%40initech.co.uk&stripped-text=hi").into_bytes(),
    );
    assert_eq!(h.send(unsigned).await.0, 401);

    // Validly signed, ten minutes ago: stale.
    let mut stale = h.post(&reply_to, "<s@x>", &"s".repeat(50));
    stale.timestamp -= 600;
    assert_eq!(h.send(stale.urlencoded()).await.0, 401);

    // Validly signed, to an address leadrelay did not issue: 406, so Mailgun stops retrying.
    let (local, domain) = reply_to.split_once('@').expect("@");
    let mut wrong_mac = local.to_owned();
    let last = wrong_mac.pop().expect("char");
    wrong_mac.push(if last == 'a' { 'b' } else { 'a' });
    for recipient in [
        format!("{wrong_mac}@{domain}"),
        format!("{local}@elsewhere.example"),
        "replies@in.yourco.example".to_owned(),
    ] {
        let (status, body) = h
            .send(h.post(&recipient, "<w@x>", &"w".repeat(50)).urlencoded())
            .await;
        assert_eq!(status, 406, "{recipient}: {body}");
    }
    // A well-signed address of a lead that does not exist.
    let key = h.pipeline.config.claim.link_keys.first().expect("link key");
    let relay = RelayAddress::parse("replies@in.yourco.example").expect("address");
    let ghost = relay.for_lead(key, "no-such-lead");
    assert_eq!(
        h.send(h.post(&ghost, "<n@x>", &"n".repeat(50)).urlencoded())
            .await
            .0,
        406
    );

    // Over the 256 KiB webhook limit.
    let mut big = h.post(&reply_to, "<b@x>", &"b".repeat(50));
    big.stripped_text = "x".repeat(300 * 1024);
    assert_eq!(h.send(big.urlencoded()).await.0, 413);
    assert_eq!(h.send(big.multipart()).await.0, 413);
    // Past 10 MiB in all, attachments included.
    let huge = h.post(&reply_to, "<h@x>", &"h".repeat(50));
    assert_eq!(
        h.send(huge.multipart_with(&vec![b'%'; 11 * 1024 * 1024]))
            .await
            .0,
        413
    );

    // Not a form.
    let json = ("application/json".to_owned(), b"{}".to_vec());
    assert_eq!(h.send(json).await.0, 415);

    // Nothing was queued or sent.
    assert!(h.drain_notify().await.is_empty(), "nothing queued");
    assert_eq!(h.sink.mails().len(), mails_before, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_nobody_can_receive_is_parked_in_the_dead_letter_queue() {
    let h = harness().await;
    let lead = initech_lead("relay-park", "tom@initech.co.uk", h.now());
    h.route_and_notify(&lead).await;
    let reply_to = h.reply_to("tom@initech.co.uk");
    h.drain_notify().await;
    let post = h.post(&reply_to, "<p@x>", &"p".repeat(50));
    // The forward's SMTP recipient is refused for good: the reply (the message is its only
    // copy) waits in the dead-letter queue, with the lead's failure recorded.
    h.sink
        .refuse("bruno@yourco.example", "550 5.1.1 no such user", 1);
    assert_eq!(h.send(post.urlencoded()).await.0, 200);
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    let letters =
        h.db.list(Stage::Notify, 10, Duration::from_secs(1))
            .await
            .expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let parked = Envelope::from_json(&letters[0].body).expect("envelope");
    assert_eq!(parked.lead_id, "relay-park");
    assert!(parked.reply.is_some(), "the reply travels with it");
    assert!(h.lead("relay-park").await.last_failure.is_some());

    // Replayed once the address works: forwarded, once.
    h.db.replay(Stage::Notify, &letters[0])
        .await
        .expect("replay");
    assert!(h.drain_notify().await.iter().all(Result::is_ok));
    assert_eq!(replies_to(&h.sink, "bruno@yourco.example").len(), 1);
}

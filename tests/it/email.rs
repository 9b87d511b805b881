//! The e-mail channel end to end over the embedded store and a local SMTP server: the rep's
//! alert (both parts, inert prospect text, a claim link that verifies), the prospect's
//! acknowledgement (once, at once even when the alert is held, never when opted out, merged or
//! flagged), and how SMTP refusals are told apart (permanent vs retried).

use std::sync::Arc;
use std::time::Duration;

use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{
    commented_example, eventually, example_config, initech_lead, parse_config, sample,
    shipped_example_config, Edit, ManualPipeline, Server, Terminal,
};
use jiff::Timestamp;
use leadrelay_email::SmtpMailer;
use leadrelay_shared::claim_link;
use leadrelay_shared::config::{Config, DeepChecks};
use leadrelay_shared::model::{
    Envelope, Escalation, Flag, GateAction, Lead, LeadState, Owner, Stage, Turn,
};
use leadrelay_shared::ports::{Clock, DeadLetters as _, DeliveryStart, LeadStore};
use leadrelay_shared::stages::StageError;
use mail_parser::{Address, MessageParser};

/// Tuesday 10:00 in London: EMEA is open.
const DAY: &str = "2026-11-24T10:00:00Z";
/// Tuesday 20:00 in London: EMEA is closed and holds alerts until Wednesday 08:30.
const NIGHT: &str = "2026-11-24T20:00:00Z";

const PROSPECT: &str = "tom@initech.co.uk";

/// The shipped configuration with e-mail on: the EMEA reps alerted by e-mail, the sender and
/// the local SMTP server; `extra` is applied as (from, to) replacements.
fn config_text(port: u16, extra: &[(&str, &str)]) -> String {
    with_email(shipped_example_config(), port, extra)
}

fn with_email(mut text: String, port: u16, extra: &[(&str, &str)]) -> String {
    for rep in ["bruno", "fatima"] {
        let line = format!("email = \"{rep}@yourco.example\"\n");
        text = text.edit(&line, &format!("{line}alert_email = true\n"));
    }
    let notify = "http_timeout_ms = 5000\n";
    text = text.edit(
        notify,
        &format!(
            "{notify}\n[notify.email]\nfrom = \"leadrelay <alerts@yourco.example>\"\n\
             smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\n"
        ),
    );
    for (from, to) in extra {
        text = text.edit_first(from, to);
    }
    text
}

/// The stage code worked by hand, alerting by e-mail through the local SMTP server.
struct Harness {
    manual: ManualPipeline,
    sink: SmtpSink,
    config: Arc<Config>,
}

impl std::ops::Deref for Harness {
    type Target = ManualPipeline;

    fn deref(&self) -> &ManualPipeline {
        &self.manual
    }
}

async fn harness(at: &str, extra: &[(&str, &str)]) -> Harness {
    let sink = SmtpSink::start().await;
    let config = parse_config(&config_text(sink.port, extra));
    let mailer = SmtpMailer::new(config.notify.email.as_ref().expect("[notify.email]"))
        .expect("smtp transport");
    let manual = ManualPipeline::with_channels(
        config,
        at.parse().expect("time"),
        Duration::from_secs(1),
        |channels| channels.with_mailer(Arc::new(mailer)),
    );
    Harness {
        config: manual.pipeline.config.clone(),
        manual,
        sink,
    }
}

/// An enriched UK lead (the EMEA rule) from `email`.
impl Harness {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Stores the lead and runs route, then notify, as the workers would.
    async fn route_and_notify(&self, lead: &Lead) -> Result<(), StageError> {
        self.db.create_lead(lead).await.expect("stored");
        let route = Envelope::new(&lead.id, Stage::Route, &lead.trace_id).to_json();
        self.pipeline
            .handle(Stage::Route, &route)
            .await
            .expect("routed");
        self.notify(&lead.id).await
    }

    async fn notify(&self, lead_id: &str) -> Result<(), StageError> {
        let body = Envelope::new(lead_id, Stage::Notify, &format!("trace-{lead_id}")).to_json();
        self.pipeline.handle(Stage::Notify, &body).await.map(|_| ())
    }

    /// The owning rep's id and address.
    async fn owner(&self, id: &str) -> (String, String) {
        let lead = self.lead(id).await;
        let owner = lead.assignment.expect("owned").owner;
        let rep = self.config.rep(owner.id()).expect("a rep owns it");
        (rep.id.clone(), rep.email.clone().expect("address"))
    }
}

/// The parts of a received message the assertions read.
struct Read {
    headers: String,
    from: String,
    to: String,
    reply_to: Option<String>,
    subject: String,
    text: String,
    html: String,
}

fn first_address(address: Option<&Address>) -> Option<String> {
    address
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_owned)
}

fn read(mail: &Mail) -> Read {
    let message = MessageParser::default()
        .parse(mail.data.as_bytes())
        .expect("a MIME message");
    let headers = mail
        .data
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        headers.contains("Content-Type: multipart/alternative"),
        "{headers}"
    );
    Read {
        from: first_address(message.from()).expect("From"),
        to: first_address(message.to()).expect("To"),
        reply_to: first_address(message.reply_to()),
        subject: message.subject().expect("Subject").to_owned(),
        text: message.body_text(0).expect("text part").into_owned(),
        html: message.body_html(0).expect("html part").into_owned(),
        headers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_alert_email_carries_the_context_inert_with_a_claim_link_that_verifies() {
    let h = harness(DAY, &[]).await;
    let hostile = "Jane \"JD\" <script>alert(1)</script> <img src=x onerror=alert(2)>";
    let mut lead = initech_lead("hostile", PROSPECT, h.now());
    lead.capture.name = Some(format!("{hostile}\r\nBcc: victim@evil.example\r\n\r\nbody"));
    lead.enrichment.as_mut().expect("enriched").name = None;
    // A bare "." line would end DATA early if it were not dot-stuffed (SMTP smuggling).
    lead.capture.trigger_query = Some(format!(
        "Pricing? <img src=x onerror=alert(3)>\r\n.\r\nRSET\r\nMAIL FROM:<x@evil.example>\r\n {}",
        "why ".repeat(5_000)
    ));
    lead.capture.conversation_transcript_url = Some("https://transcripts.example/c/1".into());
    lead.capture.metadata.source_url = Some("javascript:alert(4)".into());
    lead.capture.transcript = (0..10)
        .map(|i| Turn {
            role: if i % 2 == 0 { "visitor" } else { "bot" }.into(),
            text: format!("turn {i} <b>\"{i}\"</b> {}", "x".repeat(900)),
            at: None,
        })
        .collect();
    h.route_and_notify(&lead).await.expect("notified");
    let (rep, address) = h.owner("hostile").await;

    let alerts = h.sink.mails_to(&address);
    assert_eq!(alerts.len(), 1, "one alert e-mail for the owner");
    let mail = &alerts[0];
    // The envelope names the owner only: the CR/LF in the name added no recipient.
    assert_eq!(mail.from, "alerts@yourco.example");
    assert_eq!(mail.to, vec![address.clone()]);
    assert!(h
        .sink
        .mails()
        .iter()
        .all(|m| m.to.iter().all(|t| !t.contains("evil"))));
    let m = read(mail);
    assert_eq!(m.from, "alerts@yourco.example");
    assert_eq!(m.to, address);
    assert_eq!(m.reply_to, None);
    assert!(
        m.subject
            .starts_with("[Tier 2 · SLA 15 min] Jane \"JD\" <script>"),
        "{}",
        m.subject
    );
    assert!(m.subject.ends_with(", Initech UK"), "{}", m.subject);
    assert!(!m.subject.contains(['\r', '\n']));
    // No header line was injected: Bcc only ever appears inside the encoded Subject.
    assert!(
        !m.headers.lines().any(|l| l.starts_with("Bcc:")),
        "{}",
        m.headers
    );

    // The HTML part: every piece of prospect text escaped, no markup of theirs survives.
    for raw in ["<script", "<img", "<b>\"", "href=\"javascript"] {
        assert!(!m.html.contains(raw), "{raw} in {}", m.html);
    }
    assert!(m.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(m.html.contains("&lt;img src=x onerror=alert(3)&gt;"));
    assert!(
        m.text.contains("MAIL FROM:<x@evil.example>"),
        "smuggled text stays text"
    );
    assert_eq!(
        h.sink.mails().len(),
        2,
        "the alert and the acknowledgement, nothing more"
    );
    assert!(m.html.contains("&lt;b&gt;\"9\"&lt;/b&gt;"));
    // A prospect URL that is not https is shown as text, never linked.
    assert!(m.html.contains(">javascript:alert(4)</td>"));
    assert!(m
        .html
        .contains("<a href=\"https://transcripts.example/c/1\">Full transcript</a>"));

    // Same context in both parts: company and enrichment, tier and SLA deadline, the
    // question (cut), score breakdown and topics, why this rep.
    for part in [&m.text, &m.html] {
        assert!(
            part.contains("Initech UK (340 employees, GB)"),
            "{part:.600}"
        );
        assert!(
            part.contains("tier 2 (high intent): claim within 15 min, by 2026-11-24 10:15 UTC"),
            "{part:.900}"
        );
        assert!(part.contains("Score"), "score row");
        assert!(part.contains("Why you"), "why row");
        assert!(part.contains("rule \"EMEA\""), "{part:.900}");
        assert!(part.contains('…'), "the 20k question is cut");
        assert!(!part.contains(&"why ".repeat(1_000)));
        // The transcript: the last whole turns within the budget, cut at a turn boundary.
        assert!(part.contains("Transcript (last 3 of 10 turns)"));
        assert!(part.contains("turn 9 ") && part.contains(&"x".repeat(900)));
        assert!(part.contains("turn 7 ") && !part.contains("turn 6 "));
        assert!(part.contains("7 earlier turns not shown"));
    }
    assert!(
        m.text.contains("turn 9 <b>\"9\"</b>"),
        "text shows it as typed"
    );

    // The acknowledgement to the same hostile prospect: no injected header, no echo of
    // their markup: only the plausible first name is used.
    let acks = h.sink.mails_to(PROSPECT);
    assert_eq!(acks.len(), 1);
    let ack = read(&acks[0]);
    assert!(
        !ack.headers.lines().any(|l| l.starts_with("Bcc:")),
        "{}",
        ack.headers
    );
    assert_eq!(ack.subject, "Thanks, Jane: we have your request");
    assert!(ack.text.starts_with("Hi Jane,"), "{}", ack.text);
    for part in [&ack.text, &ack.html] {
        assert!(
            !part.contains("script") && !part.contains("onerror"),
            "{part}"
        );
    }

    // The claim link, in both parts, verifies for this lead and this rep.
    let link = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Claim this lead: "))
        .expect("claim link in the text part")
        .to_owned();
    assert!(m
        .html
        .contains(&format!("<a href=\"{}\"", link.replace('&', "&amp;"))));
    let (path, query) = link.split_once('?').expect("query");
    assert_eq!(path, "http://127.0.0.1:8080/claim/hostile");
    assert_eq!(
        claim_link::verify(&h.config.claim.link_keys, "hostile", query, h.now()),
        Ok(rep.clone())
    );
    assert!(claim_link::verify(&h.config.claim.link_keys, "other-lead", query, h.now()).is_err());

    // A replayed notify message sends nothing again.
    h.notify("hostile").await.expect("replay");
    assert_eq!(h.sink.mails_to(&address).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acknowledgement_goes_once_and_at_once_even_while_the_alert_is_held() {
    let h = harness(NIGHT, &[]).await;
    h.route_and_notify(&initech_lead("held", PROSPECT, h.now()))
        .await
        .expect("held");
    let lead = h.lead("held").await;
    assert_eq!(lead.state, LeadState::Routed, "the rep's alert is held");
    assert_eq!(
        lead.assignment.as_ref().and_then(|a| a.held_until),
        Some("2026-11-25T08:30:00Z".parse().expect("time"))
    );
    assert!(h.sink.mails_to("bruno@yourco.example").is_empty());

    let acks = h.sink.mails_to(PROSPECT);
    assert_eq!(acks.len(), 1, "acknowledged at once");
    let m = read(&acks[0]);
    assert_eq!(m.from, "alerts@yourco.example");
    assert_eq!(m.to, PROSPECT);
    assert_eq!(m.reply_to.as_deref(), Some("bruno@yourco.example"));
    assert_eq!(m.subject, "Thanks, Tom: we have your request");
    for part in [&m.text, &m.html] {
        assert!(part.contains("Hi Tom,"), "{part}");
        assert!(part.contains("on behalf of Initech UK"), "{part}");
        assert!(
            part.contains(
                "Bruno from our team will get back to you when we are back tomorrow at 08:30 \
                 (London time)."
            ),
            "{part}"
        );
        // Nothing the visitor typed beyond the first name is echoed.
        assert!(!part.contains("quote"), "{part}");
    }

    // Replayed at night: no second acknowledgement.
    h.notify("held").await.expect("held again");
    assert_eq!(h.sink.mails_to(PROSPECT).len(), 1);

    // At the opening the rep's alert goes out; the acknowledgement still once.
    h.clock.set("2026-11-25T08:30:01Z".parse().expect("time"));
    h.notify("held").await.expect("notified");
    h.notify("held").await.expect("replayed");
    assert_eq!(h.sink.mails_to("bruno@yourco.example").len(), 1);
    assert_eq!(h.sink.mails_to(PROSPECT).len(), 1);
    assert_eq!(h.lead("held").await.state, LeadState::Notified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_hours_the_acknowledgement_promises_the_tiers_sla() {
    let h = harness(DAY, &[]).await;
    h.route_and_notify(&initech_lead("day", PROSPECT, h.now()))
        .await
        .expect("notified");
    let acks = h.sink.mails_to(PROSPECT);
    assert_eq!(acks.len(), 1);
    let (_, address) = h.owner("day").await;
    let m = read(&acks[0]);
    assert!(
        m.text
            .contains("from our team will get back to you within 15 minutes."),
        "{}",
        m.text
    );
    assert_eq!(m.reply_to.as_deref(), Some(address.as_str()));
}

/// A German wording for leads in German (stated by the lead, or its source's language).
const GERMAN: &str = r#"smtp_tls = "none"

[[notify.email.acknowledgements]]
languages = ["de"]
subject = "Danke{% if first_name %}, {{ first_name }}{% endif %}: wir haben Ihre Anfrage"
text = """
Hallo{% if first_name %} {{ first_name }}{% endif %},

{% if within_minutes %}{{ owner_first_name or "Jemand aus unserem Team" }} meldet sich innerhalb von {{ within_minutes }} Minuten.{% else %}Wir melden uns am {{ opening_date }} um {{ opening_time }} ({{ time_zone }}).{% endif %}
"""
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acknowledgement_is_worded_for_the_leads_language_or_its_sources() {
    let h = harness(DAY, &[("smtp_tls = \"none\"\n", GERMAN)]).await;
    // In German, as the lead says (a regional tag is covered by its language).
    let mut german = initech_lead("de", PROSPECT, h.now());
    german
        .capture
        .metadata
        .extra
        .insert("language".into(), serde_json::json!("de-AT"));
    h.route_and_notify(&german).await.expect("notified");
    let acks = h.sink.mails_to(PROSPECT);
    assert_eq!(acks.len(), 1);
    let m = read(&acks[0]);
    assert_eq!(m.subject, "Danke, Tom: wir haben Ihre Anfrage");
    assert!(m.text.starts_with("Hallo Tom,"), "{}", m.text);
    assert!(m.text.contains("innerhalb von 15 Minuten."), "{}", m.text);
    assert!(m.html.contains("<p>Hallo Tom,</p>"), "{}", m.html);
    // No language stated, none for the source: the built-in English wording.
    h.route_and_notify(&initech_lead("en", "ann@initech.co.uk", h.now()))
        .await
        .expect("notified");
    let m = read(&h.sink.mails_to("ann@initech.co.uk")[0]);
    assert!(m.text.contains("within 15 minutes."), "{}", m.text);

    // A German-only source: its leads are German unless they say otherwise.
    let h = harness(
        DAY,
        &[
            ("smtp_tls = \"none\"\n", GERMAN),
            (
                "id = \"website\"\n",
                "id = \"website\"\nlanguage = \"de\"\n",
            ),
        ],
    )
    .await;
    h.route_and_notify(&initech_lead("source-de", PROSPECT, h.now()))
        .await
        .expect("notified");
    let m = read(&h.sink.mails_to(PROSPECT)[0]);
    assert_eq!(m.subject, "Danke, Tom: wir haben Ihre Anfrage");
}

/// The checks as the embedded binary (`Config::load`) and the notify function make them: the
/// templates rendered. The functions that never render one (`Config::parse`) check only the
/// language tags, and so link no template engine.
#[test]
fn an_acknowledgement_template_is_checked_at_load_naming_its_key() {
    let with = |checks: DeepChecks, extra: &str| {
        Config::parse_with(
            &config_text(2525, &[("smtp_tls = \"none\"\n", extra)]),
            "t.toml",
            &|_| None,
            checks,
        )
        .map(|_| ())
    };
    let parse = |extra: &str| with(DeepChecks::all(), extra);
    parse(GERMAN).expect("valid");
    let typo = GERMAN.replace("{{ first_name }}}", "{{ firstname }}");
    let typo = typo.replacen("{{ first_name }}", "{{ firstname }}", 1);
    let error = parse(&typo).expect_err("an unknown variable").to_string();
    assert!(
        error.contains("notify.email.acknowledgements[0].subject") && error.contains("first_name"),
        "{error}"
    );
    let notify = with(DeepChecks::acknowledgements(), &typo).expect_err("notify checks them");
    assert!(notify.to_string().contains("acknowledgements[0].subject"));
    with(DeepChecks::default(), &typo).expect("not rendered where nothing renders them");
    with(DeepChecks::phones(), &typo).expect("nor where only phone numbers are checked");
    let broken = GERMAN.replacen("{% endif %}", "", 1);
    let error = parse(&broken).expect_err("bad syntax").to_string();
    assert!(
        error.contains("notify.email.acknowledgements[0]"),
        "{error}"
    );
    let bad_tag = GERMAN.replace("languages = [\"de\"]", "languages = [\"German\"]");
    let error = parse(&bad_tag).expect_err("not a tag").to_string();
    assert!(
        error.contains("notify.email.acknowledgements[0].languages"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_when_the_source_opts_out_or_switched_off() {
    let source = "id = \"website\"\n";
    let h = harness(DAY, &[(source, "id = \"website\"\nacknowledge = false\n")]).await;
    h.route_and_notify(&initech_lead("quiet", PROSPECT, h.now()))
        .await
        .expect("notified");
    let (_, address) = h.owner("quiet").await;
    assert_eq!(h.sink.mails_to(&address).len(), 1, "the rep is alerted");
    assert!(h.sink.mails_to(PROSPECT).is_empty(), "the source opted out");

    let h = harness(
        DAY,
        &[(
            "smtp_tls = \"none\"\n",
            "smtp_tls = \"none\"\nacknowledge = false\n",
        )],
    )
    .await;
    h.route_and_notify(&initech_lead("off", PROSPECT, h.now()))
        .await
        .expect("notified");
    assert!(
        h.sink.mails_to(PROSPECT).is_empty(),
        "switched off globally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_duplicate_or_a_flagged_address_gets_no_acknowledgement() {
    let h = harness(DAY, &[]).await;
    h.route_and_notify(&initech_lead("first", PROSPECT, h.now()))
        .await
        .expect("notified");
    h.route_and_notify(&initech_lead("again", PROSPECT, h.now()))
        .await
        .expect("notified");
    assert_eq!(
        h.lead("again").await.merged_into.as_deref(),
        Some("first"),
        "the same person within the merge window"
    );
    assert_eq!(h.sink.mails_to(PROSPECT).len(), 1, "one per person");
    let (_, address) = h.owner("first").await;
    // The owner hears of both, the second as the same person again.
    let alerts = h.sink.mails_to(&address);
    assert_eq!(alerts.len(), 2);
    assert!(alerts
        .iter()
        .any(|m| read(m).subject.starts_with("[Same person again] Tom Baker")));

    let mut role = initech_lead("role", "info@initech.co.uk", h.now());
    role.flags.push(Flag {
        code: "role_address".into(),
        detail: "a role address".into(),
        action: GateAction::Flag,
    });
    h.route_and_notify(&role).await.expect("notified");
    assert!(h.sink.mails_to("info@initech.co.uk").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_refusals_are_permanent_on_5xx_and_retried_on_4xx() {
    let h = harness(DAY, &[]).await;
    // The prospect's address does not exist: settled, never retried, and the rep is alerted.
    h.sink.refuse(PROSPECT, "550 5.1.1 no such user", 1);
    h.route_and_notify(&initech_lead("bounce", PROSPECT, h.now()))
        .await
        .expect("a refused acknowledgement fails nothing");
    let (_, address) = h.owner("bounce").await;
    assert_eq!(h.sink.mails_to(&address).len(), 1);
    assert_eq!(h.lead("bounce").await.state, LeadState::Notified);
    let before = h.sink.connections();
    h.notify("bounce").await.expect("replay");
    assert_eq!(h.sink.connections(), before, "not attempted again");
    assert!(h.sink.mails_to(PROSPECT).is_empty());

    // Greylisted: the rep's alert goes first, the stage reports the failure, the retry sends
    // the acknowledgement and nothing twice.
    let other = "ann@initech.co.uk";
    h.sink.refuse(other, "451 4.7.1 greylisted, try again", 1);
    let error = h
        .route_and_notify(&initech_lead("grey", other, h.now()))
        .await
        .expect_err("retried");
    match &error {
        StageError::Notify(e) => assert!(!e.is_permanent(), "{e}"),
        other => panic!("unexpected {other}"),
    }
    let (_, address) = h.owner("grey").await;
    let alerts_for = |h: &Harness| {
        h.sink
            .mails_to(&address)
            .iter()
            .filter(|m| m.data.contains("grey"))
            .count()
    };
    assert_eq!(alerts_for(&h), 1, "the rep's alert did not wait");
    assert_eq!(h.lead("grey").await.state, LeadState::Notified);
    h.notify("grey").await.expect("retried");
    assert_eq!(h.sink.mails_to(other).len(), 1);
    assert_eq!(alerts_for(&h), 1);

    // The rep's own address refused for good: permanent, so the delivery rules park a copy of
    // the message in the notify dead-letter queue, naming the channel, instead of retrying.
    h.sink
        .refuse("bruno@yourco.example", "550 5.1.1 mailbox gone", 5);
    h.sink
        .refuse("fatima@yourco.example", "550 5.1.1 mailbox gone", 5);
    h.route_and_notify(&initech_lead("gone", "zoe@initech.co.uk", h.now()))
        .await
        .expect("a permanent failure is parked, not retried");
    let failure = h.lead("gone").await.last_failure.expect("recorded");
    assert!(
        failure.error.contains("email") && failure.error.contains("550"),
        "{}",
        failure.error
    );
    let parked =
        h.db.list(Stage::Notify, 10, std::time::Duration::from_secs(1))
            .await
            .expect("dead letters");
    assert!(
        parked.iter().any(|l| l.lead_id.as_deref() == Some("gone")),
        "{parked:?}"
    );
}

#[test]
fn email_settings_are_checked_at_load() {
    let port = 2525;
    let parse = |text: &str| Config::parse(text, "t.toml", &|_| None).map(|_| ());
    parse(&config_text(port, &[])).expect("valid");
    // alert_email needs [notify.email].
    let without = shipped_example_config().edit(
        "email = \"bruno@yourco.example\"\n",
        "email = \"bruno@yourco.example\"\nalert_email = true\n",
    );
    let error = parse(&without).expect_err("no [notify.email]").to_string();
    assert!(
        error.contains("alert_email") && error.contains("[notify.email]"),
        "{error}"
    );
    // A sender that is not an address.
    let error = parse(&config_text(
        port,
        &[(
            "from = \"leadrelay <alerts@yourco.example>\"",
            "from = \"alerts\"",
        )],
    ))
    .expect_err("bad from")
    .to_string();
    assert!(error.contains("notify.email.from"), "{error}");
    // A login over plain text is refused; a missing variable is named.
    let error = parse(&config_text(
        port,
        &[(
            "smtp_tls = \"none\"\n",
            "smtp_tls = \"none\"\nsmtp_username_env = \"U\"\nsmtp_password_env = \"P\"\n",
        )],
    ))
    .expect_err("unset variables")
    .to_string();
    assert!(
        error.contains("environment variable U is not set"),
        "{error}"
    );
    let with_env = |name: &str| Some(format!("{name}-value"));
    let error = Config::parse(
        &config_text(
            port,
            &[(
                "smtp_tls = \"none\"\n",
                "smtp_tls = \"none\"\nsmtp_username_env = \"U\"\nsmtp_password_env = \"P\"\n",
            )],
        ),
        "t.toml",
        &with_env,
    )
    .expect_err("login over plain text")
    .to_string();
    assert!(error.contains("smtp_tls"), "{error}");
    assert!(!error.contains("P-value"), "never the secret");
}

#[test]
fn the_commented_email_example_in_the_shipped_config_validates_when_uncommented() {
    let shipped = shipped_example_config();
    let block = commented_example(&shipped, "[notify.email]");
    assert!(block.contains("smtp_host"), "{block}");
    let text = shipped.edit_first("# [notify.email]", &format!("{block}\n# "));
    let config = Config::parse(&text, "t.toml", &|name| Some(format!("{name}-value")))
        .expect("the uncommented example is valid");
    assert!(config.notify.email.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_sends_its_email_over_smtp() {
    let sink = SmtpSink::start().await;
    let server = Server::start_with(&with_email(example_config(), sink.port, &[])).await;
    let answer = server
        .send(
            "website",
            "evt-email-e2e",
            &sample("02-capture-emea-pricing.json"),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    let summary = server.wait_for_state(&lead_id, "notified").await;
    let prospect = "tom.baker@sales.initech.co.uk";
    let owner = summary["owner"].as_str().unwrap_or_default().to_owned();
    let sent = eventually(Duration::from_secs(10), "two e-mails", || {
        let sink = sink.clone();
        async move { (sink.mails().len() >= 2).then(|| sink.mails()) }
    })
    .await;
    assert_eq!(sent.len(), 2, "{owner}: the alert and the acknowledgement");
    assert_eq!(sink.mails_to(prospect).len(), 1);
    let alert = sent
        .iter()
        .find(|m| !m.to.contains(&prospect.to_owned()))
        .expect("the rep's alert");
    assert!(
        ["bruno@yourco.example", "fatima@yourco.example"].contains(&alert.to[0].as_str()),
        "{:?}",
        alert.to
    );
    assert!(read(alert).text.contains(&lead_id));
    server.stop().await;
}

#[test]
fn the_embedded_mode_refuses_to_start_with_email_but_no_smtp_server() {
    let text = with_email(example_config(), 25, &[("smtp_host = \"127.0.0.1\"\n", "")]);
    let dir = tempfile::tempdir().expect("temp dir");
    let error = leadrelay::embedded::Embedded::open(
        parse_config(&text),
        dir.path(),
        Box::new(Terminal::default()),
    )
    .err()
    .expect("no SMTP server configured")
    .to_string();
    assert!(error.contains("notify.email.smtp_host"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_round_has_its_own_receipts_and_honours_its_channels() {
    let h = harness(DAY, &[]).await;
    let step = |channels: &[&str]| Escalation {
        level: 1,
        at: h.now(),
        from: Owner::Rep("fatima".into()),
        to: Owner::Rep("bruno".into()),
        channels: Some(channels.iter().map(|c| c.to_string()).collect()),
        missed: h.now(),
    };
    let mut lead = initech_lead("escalated", "amy@initech.co.uk", h.now());
    lead.escalations.push(step(&["slack", "email"]));
    h.route_and_notify(&lead).await.expect("notified");
    let (rep, address) = h.owner("escalated").await;
    assert_eq!(h.sink.mails_to(&address).len(), 1);
    // The round's receipt is taken: this round never sends again.
    let receipt = format!("esc1:email:rep:{rep}");
    let start =
        h.db.begin_delivery("escalated", &receipt, h.now(), Duration::from_secs(1))
            .await
            .expect("receipt");
    assert_eq!(start, DeliveryStart::AlreadyDelivered, "{receipt}");

    let mut lead = initech_lead("slack-only", "ben@initech.co.uk", h.now());
    lead.escalations.push(step(&["slack"]));
    h.route_and_notify(&lead).await.expect("notified");
    let (_, address) = h.owner("slack-only").await;
    let alerts = h.sink.mails_to(&address);
    assert!(
        alerts.iter().all(|m| !m.data.contains("slack-only")),
        "a step naming only slack sends no e-mail"
    );
    // The acknowledgement is per lead, not per round.
    assert_eq!(h.sink.mails_to("ben@initech.co.uk").len(), 1);
}

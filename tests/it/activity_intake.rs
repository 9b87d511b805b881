//! Activity after the alert through the intake machinery: each platform's documented event,
//! signed as the platform documents (with the `hmac`, `sha1`, `sha2` and `base64` crates, never
//! leadrelay's own signing code), posted through the HTTP router to a pipeline on a hand clock,
//! stamps the right step on a lead that went through every stage first. A replay changes
//! nothing (the lead's revision stays), a bot's reply or a sequence's e-mail is listed as
//! automated and leaves the SLA clock running, an event that finds no lead is kept as
//! unmatched (once), a forged signature is 401 and records nothing, and a lead id finds its
//! lead after the e-mail match window has passed.
//!
//! Fixtures in `tests/it/fixtures/platforms/`: `calcom-MEETING_ENDED.json` is the docs' booking
//! example under another trigger; `calcom-BOOKING_NO_SHOW_UPDATED.json` is assembled from
//! Cal.com's source (the no-show handler's `{message, attendees: [{email, noShow}]}` with the
//! booking's uid and id); `calendly-invitee_no_show.created.json` is the invitee payload with
//! its `no_show` set; `intercom-conversation.admin.replied.json` is the conversation
//! notification with the admin's new part; `hubspot-activity.json` and `salesforce-flow-*.json`
//! are the bodies docs/platforms/hubspot.md and salesforce-flow.md tell the user to configure.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use lambda_http::tower::ServiceExt as _;
use leadrelay_shared::model::{ActivityKind, Lead, LeadState, Outcome};
use leadrelay_shared::ports::LeadStore;
use leadrelay_web::{router, Api};
use serde_json::{json, Value};

use crate::support::platform::{fixture, hmac_sha1, hmac_sha256};
use crate::support::{example_config, parse_config, sample, signed_header_map, ManualPipeline};

/// The platforms' signing secret, as pasted into each (at least 16 bytes).
const SECRET: &str = "platform-preset-secret-0123456789";
const WRONG_SECRET: &str = "somebody-elses-secret-0123456789a";
const TOKEN: &str = "salesforce-flow-token-0123456789";
/// The prospect: Tom Baker of Initech UK, whom routing gives to an EMEA rep.
const TOM: &str = "tom.baker@sales.initech.co.uk";
/// A Monday morning in London: the EMEA reps are on shift.
const MONDAY: &str = "2026-11-23T10:00:00Z";
/// The host the router is called on (HubSpot signs the URL).
const HOST: &str = "leadrelay.test";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn config() -> String {
    let mut text = example_config();
    for (id, preset) in [
        ("calcom", "calcom"),
        ("calendly", "calendly"),
        ("intercom", "intercom"),
        ("hubspot", "hubspot"),
    ] {
        text.push_str(&format!(
            "\n[[sources]]\nid = \"{id}\"\npreset = \"{preset}\"\nsecrets = [\"{SECRET}\"]\n"
        ));
    }
    text.push_str(&format!(
        "\n[[sources]]\nid = \"salesforce\"\npreset = \"salesforce-flow\"\nsecrets = [\"{TOKEN}\"]\n"
    ));
    text
}

/// The stage code on a hand clock at Monday morning, with a lead from Tom that went through
/// every stage (captured, enriched, routed, alerted).
struct Setup {
    manual: ManualPipeline,
    lead: Lead,
}

/// An answer through the HTTP router: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

impl Setup {
    async fn new() -> Setup {
        let manual = ManualPipeline::new(parse_config(&config()), at(MONDAY));
        let lead = capture(&manual, "evt-tom", MONDAY).await;
        Setup { manual, lead }
    }

    /// Posts `body` with `headers` to `/webhooks/{source}` through the router.
    async fn post(&self, source: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
        let mut request = Request::post(format!("/webhooks/{source}"))
            .header("host", HOST)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Body::from(body.to_vec())).expect("request");
        let app = router(Api::new(
            self.manual.pipeline.clone(),
            Arc::new(true.into()),
        ));
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Posts and expects `200 {"status": status, "lead_id": lead_id}`.
    async fn expect(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: &[u8],
        status: &str,
        lead_id: Option<&str>,
    ) {
        let answer = self.post(source, headers, body).await;
        assert_eq!(answer.status, 200, "{source}: {:?}", answer.body);
        assert_eq!(
            answer.body,
            json!({"status": status, "lead_id": lead_id}),
            "{source}"
        );
    }

    async fn lead(&self) -> Lead {
        self.manual.lead(&self.lead.id).await
    }

    async fn leads(&self) -> i64 {
        self.manual.db.counts().await.expect("counts").leads
    }

    async fn unmatched(&self) -> Vec<leadrelay_shared::model::UnmatchedActivity> {
        self.manual
            .db
            .unmatched_since(Timestamp::UNIX_EPOCH, 100)
            .await
            .expect("unmatched")
    }

    fn now(&self) -> Timestamp {
        use leadrelay_shared::ports::Clock as _;
        self.manual.clock.now()
    }
}

/// Tom's lead from the website's form (a body-signed source), captured at `when`, worked
/// through every stage; as stored.
async fn capture(manual: &ManualPipeline, event_id: &str, when: &str) -> Lead {
    let mut body: Value =
        serde_json::from_slice(&sample("02-capture-emea-pricing.json")).expect("sample");
    body["captured_email"] = json!(TOM);
    body["timestamp"] = json!(when);
    let body = serde_json::to_vec(&body).expect("JSON");
    let headers = signed_header_map(&manual.pipeline.config, "forms", event_id, &body);
    let accepted = manual
        .pipeline
        .ingest("forms", &headers, &body)
        .await
        .expect("accepted");
    manual.drain().await;
    let lead = manual.lead(&accepted.lead_id).await;
    assert_eq!(lead.state, LeadState::Notified, "alerted");
    lead
}

/// `body` as JSON with `edit` applied.
fn edited(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("JSON fixture");
    edit(&mut value);
    serde_json::to_vec(&value).expect("JSON")
}

/// The platform fixture `name` with the prospect's address made Tom's.
fn fixture_for_tom(name: &str, prospect: &str) -> Vec<u8> {
    String::from_utf8(fixture(name))
        .expect("UTF-8")
        .replace(prospect, TOM)
        .into_bytes()
}

fn header(name: &str, value: String) -> Vec<(String, String)> {
    vec![(name.to_owned(), value)]
}

fn kinds(lead: &Lead) -> Vec<(ActivityKind, bool)> {
    lead.activities
        .iter()
        .map(|a| (a.kind, a.automated))
        .collect()
}

// Cal.com: X-Cal-Signature-256 = hex HMAC-SHA256 of the raw body, no timestamp.
fn calcom_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    header(
        "X-Cal-Signature-256",
        hex::encode(hmac_sha256(secret, &[body])),
    )
}

fn calcom(name: &str, created_at: &str, lead_id: Option<&str>) -> Vec<u8> {
    edited(&fixture_for_tom(name, "john.doe@example.com"), |v| {
        v["createdAt"] = json!(created_at);
        if let Some(id) = lead_id {
            // The booking link's ?metadata[leadrelay_lead_id]=<id>.
            v["payload"]["metadata"]["leadrelay_lead_id"] = json!(id);
        }
    })
}

#[tokio::test]
async fn calcom_bookings_meetings_no_shows_and_cancels_are_stamped_on_the_lead_they_name() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    let booking = calcom("calcom.json", "2026-11-23T10:04:00Z", Some(&id));

    // A forged booking records nothing.
    let forged = edited(&booking, |v| v["payload"]["title"] = json!("Eve's meeting"));
    let answer = s
        .post("calcom", &calcom_signed(SECRET, &booking), &forged)
        .await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    let answer = s
        .post("calcom", &calcom_signed(WRONG_SECRET, &booking), &booking)
        .await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert_eq!(s.lead().await.revision, s.lead.revision, "nothing recorded");
    assert!(s.unmatched().await.is_empty());

    // BOOKING_CREATED is a lead event too: naming a lead, it is recorded on it instead.
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &booking),
        &booking,
        "recorded",
        Some(&id),
    )
    .await;
    let booked = s.lead().await;
    assert_eq!(
        booked.timeline.meeting_booked_at,
        Some(at("2026-11-23T10:04:00Z"))
    );
    assert_eq!(
        booked.timeline.first_touch_at, None,
        "a booking is no touch"
    );
    let activity = &booked.activities[0];
    assert_eq!(activity.via, "calcom");
    assert_eq!(activity.by.as_deref(), Some("pro@example.com"));
    assert_eq!(
        activity.detail.as_deref(),
        Some("60min between Pro Example and John Doe")
    );
    assert_eq!(s.leads().await, 1, "no second lead");

    // The same delivery again changes nothing.
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &booking),
        &booking,
        "duplicate",
        Some(&id),
    )
    .await;
    assert_eq!(s.lead().await.revision, booked.revision);

    let ended = calcom(
        "calcom-MEETING_ENDED.json",
        "2026-11-24T10:31:00Z",
        Some(&id),
    );
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &ended),
        &ended,
        "recorded",
        Some(&id),
    )
    .await;
    let held = s.lead().await;
    assert_eq!(
        held.timeline.meeting_held_at,
        Some(at("2026-11-24T10:31:00Z"))
    );
    assert_eq!(
        held.timeline.first_touch_at,
        Some(at("2026-11-24T10:31:00Z"))
    );

    // Marked no-show: found by the attendee's e-mail (the payload carries no metadata).
    let no_show = calcom(
        "calcom-BOOKING_NO_SHOW_UPDATED.json",
        "2026-11-24T10:45:00Z",
        None,
    );
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &no_show),
        &no_show,
        "recorded",
        Some(&id),
    )
    .await;
    // Taken back: not activity.
    let unmarked = edited(&no_show, |v| {
        v["payload"]["attendees"][0]["noShow"] = json!(false);
        v["payload"]["message"] = json!("x_unmarked_as_no_show");
    });
    let answer = s
        .post("calcom", &calcom_signed(SECRET, &unmarked), &unmarked)
        .await;
    assert_eq!(
        (answer.status, answer.body),
        (
            200,
            json!({"status": "ignored", "event": "BOOKING_NO_SHOW_UPDATED"})
        )
    );

    let cancelled = calcom(
        "calcom-BOOKING_CANCELLED.json",
        "2026-11-24T11:00:00Z",
        Some(&id),
    );
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &cancelled),
        &cancelled,
        "recorded",
        Some(&id),
    )
    .await;
    assert_eq!(
        kinds(&s.lead().await),
        [
            (ActivityKind::MeetingBooked, false),
            (ActivityKind::MeetingHeld, false),
            (ActivityKind::MeetingNoShow, false),
            (ActivityKind::MeetingCancelled, false),
        ]
    );
    assert_eq!(s.leads().await, 1);
    assert!(s.unmatched().await.is_empty());
}

#[tokio::test]
async fn a_lead_id_finds_a_lead_older_than_the_window_and_an_email_alone_makes_a_new_lead() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    // Forty days on: past the 30-day e-mail match window.
    s.manual.clock.set(
        at(MONDAY)
            .saturating_add(SignedDuration::from_hours(40 * 24))
            .expect("time"),
    );
    let booking = calcom("calcom.json", "2027-01-02T10:00:00Z", Some(&id));
    s.expect(
        "calcom",
        &calcom_signed(SECRET, &booking),
        &booking,
        "recorded",
        Some(&id),
    )
    .await;
    assert_eq!(
        s.lead().await.timeline.meeting_booked_at,
        Some(at("2027-01-02T10:00:00Z"))
    );

    // Another booking from Tom without the lead id: no lead in the window, so it is a lead
    // as any booking is, its meeting booked from the start.
    let other = edited(&calcom("calcom.json", "2027-01-02T11:00:00Z", None), |v| {
        v["payload"]["uid"] = json!("second-booking-uid")
    });
    let answer = s
        .post("calcom", &calcom_signed(SECRET, &other), &other)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let new_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    assert_ne!(new_id, id);
    let new_lead = s.manual.lead(&new_id).await;
    assert_eq!(
        new_lead.timeline.meeting_booked_at,
        Some(at("2027-01-02T11:00:00Z"))
    );
    assert_eq!(s.leads().await, 2);
    // Sent again, it is that lead's duplicate.
    let answer = s
        .post("calcom", &calcom_signed(SECRET, &other), &other)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "duplicate");
    assert_eq!(answer.body["lead_id"], json!(new_id));
    assert_eq!(s.leads().await, 2);
}

// Calendly: Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">.
fn calendly_signed(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    header(
        "Calendly-Webhook-Signature",
        format!(
            "t={t},v1={}",
            hex::encode(hmac_sha256(secret, &[&message[..]]))
        ),
    )
}

#[tokio::test]
async fn calendly_bookings_no_shows_and_cancels_and_an_unknown_invitee_is_kept_unmatched() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    let t = s.now().as_second();
    let booking = edited(
        &fixture_for_tom("calendly.json", "jane.prospect@example.com"),
        |v| {
            // The booking link's ?utm_content=<lead id>.
            v["payload"]["tracking"]["utm_content"] = json!(id);
            v["payload"]["created_at"] = json!("2026-11-23T10:06:00.000000Z");
        },
    );
    let stale = calendly_signed(SECRET, &booking, t - 240);
    assert_eq!(s.post("calendly", &stale, &booking).await.status, 401);
    assert_eq!(s.lead().await.revision, s.lead.revision);

    s.expect(
        "calendly",
        &calendly_signed(SECRET, &booking, t),
        &booking,
        "recorded",
        Some(&id),
    )
    .await;
    let booked = s.lead().await;
    assert_eq!(
        booked.timeline.meeting_booked_at,
        Some(at("2026-11-23T10:06:00Z"))
    );
    s.expect(
        "calendly",
        &calendly_signed(SECRET, &booking, t + 1),
        &booking,
        "duplicate",
        Some(&id),
    )
    .await;
    assert_eq!(s.lead().await.revision, booked.revision);

    let no_show = fixture_for_tom(
        "calendly-invitee_no_show.created.json",
        "jane.prospect@example.com",
    );
    s.expect(
        "calendly",
        &calendly_signed(SECRET, &no_show, t),
        &no_show,
        "recorded",
        Some(&id),
    )
    .await;
    let canceled = fixture_for_tom(
        "calendly-invitee.canceled.json",
        "jane.prospect@example.com",
    );
    s.expect(
        "calendly",
        &calendly_signed(SECRET, &canceled, t),
        &canceled,
        "recorded",
        Some(&id),
    )
    .await;
    assert_eq!(
        kinds(&s.lead().await),
        [
            (ActivityKind::MeetingBooked, false),
            (ActivityKind::MeetingNoShow, false),
            (ActivityKind::MeetingCancelled, false),
        ]
    );

    // A cancel from someone leadrelay has no lead for: kept, answered 200, listed once.
    let stranger = fixture("calendly-invitee.canceled.json");
    for _ in 0..2 {
        s.expect(
            "calendly",
            &calendly_signed(SECRET, &stranger, t),
            &stranger,
            "unmatched",
            None,
        )
        .await;
    }
    let unmatched = s.unmatched().await;
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(
        unmatched[0].email.as_deref(),
        Some("jane.prospect@example.com")
    );
    assert_eq!(unmatched[0].activity.kind, ActivityKind::MeetingCancelled);
    assert_eq!(s.leads().await, 1);
}

// Intercom: X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body>.
fn intercom_signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    header(
        "X-Hub-Signature",
        format!("sha1={}", hex::encode(hmac_sha1(secret, body))),
    )
}

#[tokio::test]
async fn an_intercom_admin_reply_is_a_touch_and_a_bot_reply_is_listed_as_automated() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    let sla = s.lead.sla_watch_at();
    assert!(sla.is_some(), "the SLA clock runs after the alert");
    let reply_at = at("2026-11-23T10:03:00Z").as_second();
    let reply = edited(
        &fixture_for_tom(
            "intercom-conversation.admin.replied.json",
            "jane.prospect@example.com",
        ),
        |v| {
            v["data"]["item"]["conversation_parts"]["conversation_parts"][0]["created_at"] =
                json!(reply_at)
        },
    );
    let bot = edited(&reply, |v| {
        let part = &mut v["data"]["item"]["conversation_parts"]["conversation_parts"][0];
        part["id"] = json!("4412736020");
        part["author"] = json!({"id": "6827949", "type": "bot", "name": "Fin Bot",
            "email": "operator+i6wc9ipe@intercom.io"});
    });

    s.expect(
        "intercom",
        &intercom_signed(SECRET, &bot),
        &bot,
        "recorded",
        Some(&id),
    )
    .await;
    let after_bot = s.lead().await;
    assert_eq!(kinds(&after_bot), [(ActivityKind::Replied, true)]);
    assert_eq!(after_bot.timeline.first_touch_at, None);
    assert_eq!(after_bot.sla_watch_at(), sla, "the bot stops no clock");

    let tampered = String::from_utf8(reply.clone())
        .expect("UTF-8")
        .replace("Bruno Costa", "Mallory")
        .into_bytes();
    assert_eq!(
        s.post("intercom", &intercom_signed(SECRET, &reply), &tampered)
            .await
            .status,
        401
    );
    assert_eq!(s.lead().await.revision, after_bot.revision);

    s.expect(
        "intercom",
        &intercom_signed(SECRET, &reply),
        &reply,
        "recorded",
        Some(&id),
    )
    .await;
    let replied = s.lead().await;
    assert_eq!(
        replied.timeline.first_touch_at,
        Timestamp::from_second(reply_at).ok()
    );
    assert_eq!(
        replied.sla_watch_at(),
        None,
        "a human reply ends the SLA watch"
    );
    assert_eq!(
        replied.activities[1].by.as_deref(),
        Some("bruno@yourco.example")
    );
    s.expect(
        "intercom",
        &intercom_signed(SECRET, &reply),
        &reply,
        "duplicate",
        Some(&id),
    )
    .await;
    assert_eq!(s.lead().await.revision, replied.revision);

    // Closing a conversation is not activity.
    let closed = edited(&reply, |v| v["topic"] = json!("conversation.admin.closed"));
    let answer = s
        .post("intercom", &intercom_signed(SECRET, &closed), &closed)
        .await;
    assert_eq!(
        answer.body,
        json!({"status": "ignored", "event": "conversation.admin.closed"})
    );
}

// HubSpot: signature v3, base64 HMAC-SHA256 of method + URL + body + timestamp (ms).
fn hubspot_signed(uri: &str, body: &[u8], timestamp_ms: i64) -> Vec<(String, String)> {
    let timestamp = timestamp_ms.to_string();
    let mut message = b"POST".to_vec();
    message.extend_from_slice(uri.as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    vec![
        (
            "X-HubSpot-Signature-v3".into(),
            BASE64.encode(hmac_sha256(SECRET, &[&message[..]])),
        ),
        ("X-HubSpot-Request-Timestamp".into(), timestamp),
    ]
}

#[tokio::test]
async fn hubspot_workflow_activity_sequences_are_automated_and_a_won_deal_closes_the_lead() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    let uri = format!("http://{HOST}/webhooks/hubspot");
    let ms = s.now().as_millisecond();
    let body = |edit: &dyn Fn(&mut Value)| {
        edited(
            &fixture_for_tom("hubspot-activity.json", "jane.prospect@example.com"),
            |v| edit(v),
        )
    };

    let sequence = body(&|v| {
        v["leadrelay_event"] = json!("email");
        v["in_sequence"] = json!("true");
        v["occurred_at"] = json!("1795428060000"); // 2026-11-23T10:01:00Z
    });
    s.expect(
        "hubspot",
        &hubspot_signed(&uri, &sequence, ms),
        &sequence,
        "recorded",
        Some(&id),
    )
    .await;
    let after = s.lead().await;
    assert_eq!(kinds(&after), [(ActivityKind::Emailed, true)]);
    assert_eq!(after.timeline.first_touch_at, None);
    assert!(after.sla_watch_at().is_some(), "the SLA clock still runs");

    let call = body(&|v| v["occurred_at"] = json!("1795428300000")); // 10:05
    let stale = hubspot_signed(&uri, &call, ms - 10 * 60 * 1000);
    assert_eq!(s.post("hubspot", &stale, &call).await.status, 401);
    s.expect(
        "hubspot",
        &hubspot_signed(&uri, &call, ms),
        &call,
        "recorded",
        Some(&id),
    )
    .await;
    let called = s.lead().await;
    assert_eq!(
        called.timeline.first_touch_at,
        Some(at("2026-11-23T10:05:00Z"))
    );
    assert_eq!(
        called.activities[1].by.as_deref(),
        Some("bruno@yourco.example")
    );
    // Freshly signed, the same body is the same event.
    s.expect(
        "hubspot",
        &hubspot_signed(&uri, &call, ms + 1000),
        &call,
        "duplicate",
        Some(&id),
    )
    .await;
    assert_eq!(s.lead().await.revision, called.revision);

    let won = body(&|v| {
        v["leadrelay_event"] = json!("deal_stage");
        v["detail"] = json!("closedwon");
        v["leadrelay_lead_id"] = json!(id);
        v["email"] = json!("");
        v["occurred_at"] = json!("1795942800000");
    });
    s.expect(
        "hubspot",
        &hubspot_signed(&uri, &won, ms),
        &won,
        "recorded",
        Some(&id),
    )
    .await;
    let closed = s.lead().await;
    assert_eq!(closed.state, LeadState::Closed);
    assert_eq!(closed.close_reason.as_deref(), Some("won"));
    assert_eq!(
        closed.activities[2].kind,
        ActivityKind::Closed(Outcome::Won)
    );

    // A lead id and an address leadrelay does not know: kept, once.
    let stranger = body(&|v| {
        v["leadrelay_lead_id"] = json!("0190a5b2-0000-7000-8000-00000000dead");
        v["email"] = json!("nobody@elsewhere.example");
    });
    for _ in 0..2 {
        s.expect(
            "hubspot",
            &hubspot_signed(&uri, &stranger, ms),
            &stranger,
            "unmatched",
            None,
        )
        .await;
    }
    let unmatched = s.unmatched().await;
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(
        unmatched[0].lead_id.as_deref(),
        Some("0190a5b2-0000-7000-8000-00000000dead")
    );
    assert_eq!(unmatched[0].activity.via, "hubspot");
    assert_eq!(s.leads().await, 1);
}

#[tokio::test]
async fn a_salesforce_flow_call_and_a_closed_lead_status_arrive_with_the_token_only() {
    let s = Setup::new().await;
    let id = s.lead.id.clone();
    let token = |t: &str| header("X-Leadrelay-Token", t.to_owned());
    let call = fixture_for_tom("salesforce-flow-call.json", "jane.prospect@example.com");

    let answer = s.post("salesforce", &token(WRONG_SECRET), &call).await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert_eq!(s.post("salesforce", &[], &call).await.status, 401);
    assert_eq!(s.lead().await.revision, s.lead.revision);

    s.expect("salesforce", &token(TOKEN), &call, "recorded", Some(&id))
        .await;
    let called = s.lead().await;
    assert_eq!(
        called.timeline.first_touch_at,
        Some(at("2026-11-23T10:12:00Z"))
    );
    assert_eq!(
        called.activities[0].detail.as_deref(),
        Some("Call: pricing for 50 seats")
    );

    let status = fixture_for_tom(
        "salesforce-flow-lead_status.json",
        "jane.prospect@example.com",
    );
    s.expect("salesforce", &token(TOKEN), &status, "recorded", Some(&id))
        .await;
    let lost = s.lead().await;
    assert_eq!(lost.state, LeadState::Closed);
    assert_eq!(lost.close_reason.as_deref(), Some("lost"));
    s.expect("salesforce", &token(TOKEN), &status, "duplicate", Some(&id))
        .await;
    assert_eq!(s.lead().await.revision, lost.revision);

    let working = edited(&status, |v| {
        v["status"] = json!("Working - Contacted");
        v["occurred_at"] = json!("2026-11-30T17:00:00.000Z");
    });
    s.expect("salesforce", &token(TOKEN), &working, "recorded", Some(&id))
        .await;
    assert_eq!(
        s.lead().await.activities[2].kind,
        ActivityKind::StatusChanged
    );
    assert_eq!(
        s.lead().await.activities[2].detail.as_deref(),
        Some("Working - Contacted")
    );
}

#[tokio::test]
async fn sources_test_says_what_an_activity_payload_would_record_storing_nothing() {
    let config = parse_config(&config());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ended.json");
    std::fs::write(&file, fixture("calcom-MEETING_ENDED.json")).expect("write");
    let trial = leadrelay::sources::Trial {
        source: "calcom",
        file: &file,
        headers: &[],
        url: None,
        at: at(MONDAY),
    };
    let mut out = Vec::new();
    leadrelay::sources::test_payload(&config, &trial, &mut out)
        .await
        .expect("the payload passes");
    let out = String::from_utf8(out).expect("UTF-8");
    assert!(
        out.contains("event \"MEETING_ENDED\" is activity: meeting_held"),
        "{out}"
    );
    assert!(
        out.contains("found by e-mail \"john.doe@example.com\""),
        "{out}"
    );
}

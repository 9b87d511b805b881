//! Salesforce write-back against a stand-in of a Salesforce org: its OAuth token endpoint and
//! the REST API's sObject resources, answering in Salesforce's shapes (upsert 201/200, records,
//! `[{"message", "errorCode", "fields"}]` errors) and refusing what Salesforce refuses (an
//! unknown or expired session, a missing required field, the external id in the body). The
//! tests check each request as the REST API documents it, on a clock the test moves.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use leadrelay::embedded::Sqlite;
use leadrelay_channels::{Channels, DeliveryPolicy};
use leadrelay_shared::model::{
    CaptureEvent, Envelope, EventKind, Lead, LeadState, Metadata, Stage,
};
use leadrelay_shared::ports::{Clock, DeadLetters, LeadStore, Queue};
use leadrelay_shared::stages::{sla, Outcome, Pipeline, StageError};
use serde_json::{json, Map, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::process::{serve, ServeFiles};
use crate::support::{
    eventually, example_config, open_store, parse_config_with_env, sample, shipped_example_config,
    signed_webhook, Edit, HandClock, Server,
};

/// Tuesday 13:00 in New York: Alice is working.
const TUESDAY_AFTERNOON: &str = "2026-11-24T18:00:00Z";
const CLIENT_ID: &str = "3MVG9leadrelayTestConsumerKey";
const CLIENT_SECRET: &str = "Cl1entS3cretNeverLogged";
const API: &str = "/services/data/v62.0/sobjects";
const ALICE: &str = "0055e000001AliceAA";
const DANA: &str = "0055e000001DanaWAA";
const BRUNO: &str = "0055e000001BrunoAA";
const MARIA: &str = "0055e000001MariaAA";
const SDR_QUEUE: &str = "00G5e000000SdrQuAA";
const INBOX_QUEUE: &str = "00G5e000000InboxAA";
/// Who owns what the API creates without an owner: the integration user.
const API_USER: &str = "0055e000000ApiUsrA";
const PRIVATE_KEY: &str = include_str!("fixtures/salesforce/jwt-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/salesforce/jwt-test-key.pub.pem");

// ---------------------------------------------------------------------------------------------
// The stand-in org.

/// A record as the stand-in keeps it.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    fields: Map<String, Value>,
}

/// What the org holds and how it will misbehave next.
#[derive(Default)]
struct Org {
    tokens_issued: u32,
    valid_tokens: HashSet<String>,
    /// Leads by external id value.
    leads: BTreeMap<String, Record>,
    tasks: Vec<Record>,
    /// Task index by its external id value (`task_external_id_field`).
    task_keys: BTreeMap<String, usize>,
    /// The token endpoint's next answer instead of a token.
    token_error: Option<(u16, Value)>,
    /// Canned answers for the next requests whose method and path match, before any work.
    faults: Vec<Fault>,
    /// The next Task write is done, then answered 503 (the answer lost on the way).
    lose_next_task_answer: bool,
}

struct Fault {
    method: &'static str,
    path_contains: &'static str,
    status: u16,
    body: Value,
    times: usize,
}

/// Salesforce's error array.
fn sf_error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!([{"message": message, "errorCode": code, "fields": fields}])
}

#[derive(Clone)]
struct StandIn {
    org: Arc<Mutex<Org>>,
    base: String,
}

impl StandIn {
    async fn start() -> (MockServer, StandIn) {
        let server = MockServer::start().await;
        let stand_in = StandIn {
            org: Arc::new(Mutex::new(Org::default())),
            base: server.uri(),
        };
        Mock::given(any())
            .respond_with(stand_in.clone())
            .mount(&server)
            .await;
        (server, stand_in)
    }

    fn org(&self) -> std::sync::MutexGuard<'_, Org> {
        self.org.lock().expect("not poisoned")
    }

    fn fault(
        &self,
        method: &'static str,
        path_contains: &'static str,
        status: u16,
        body: Value,
        times: usize,
    ) {
        self.org().faults.push(Fault {
            method,
            path_contains,
            status,
            body,
            times,
        });
    }

    /// Ends every session, as an admin revoking them or a timeout would.
    fn expire_sessions(&self) {
        self.org().valid_tokens.clear();
    }

    fn lead(&self, external_id: &str) -> Option<Record> {
        self.org().leads.get(external_id).cloned()
    }

    fn tasks(&self) -> Vec<Record> {
        self.org().tasks.clone()
    }

    fn token(&self, form: &BTreeMap<String, String>) -> ResponseTemplate {
        let mut org = self.org();
        if let Some((status, body)) = org.token_error.take() {
            return ResponseTemplate::new(status).set_body_json(body);
        }
        org.tokens_issued += 1;
        let token = format!("00D5e0000000001!AQ-token-{}", org.tokens_issued);
        org.valid_tokens.insert(token.clone());
        let mut answer = json!({
            "access_token": token,
            "scope": "api",
            "instance_url": self.base,
            "id": format!("https://login.salesforce.com/id/00D5e0000000001EAA/{API_USER}"),
            "token_type": "Bearer",
        });
        // The client-credentials answer also carries issued_at and a signature; neither flow
        // says when the token expires.
        if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
            answer["issued_at"] = json!("1764007200000");
            answer["signature"] = json!("c2lnbmF0dXJl");
        }
        ResponseTemplate::new(200).set_body_json(answer)
    }

    fn rest(&self, request: &Request) -> ResponseTemplate {
        let mut org = self.org();
        let bearer = header(request, "authorization");
        let valid = bearer
            .strip_prefix("Bearer ")
            .is_some_and(|t| org.valid_tokens.contains(t));
        if !valid {
            return ResponseTemplate::new(401).set_body_json(sf_error(
                "INVALID_SESSION_ID",
                "Session expired or invalid",
                &[],
            ));
        }
        let method = request.method.as_str();
        let path = request.url.path().to_owned();
        if let Some(at) = org
            .faults
            .iter()
            .position(|f| f.method == method && path.contains(f.path_contains))
        {
            let fault = &mut org.faults[at];
            let answer = ResponseTemplate::new(fault.status).set_body_json(fault.body.clone());
            fault.times -= 1;
            if fault.times == 0 {
                org.faults.remove(at);
            }
            return answer;
        }
        let Some(rest) = path.strip_prefix(API) else {
            return ResponseTemplate::new(404).set_body_json(sf_error(
                "NOT_FOUND",
                "The requested resource does not exist",
                &[],
            ));
        };
        let segments: Vec<String> = rest
            .trim_start_matches('/')
            .split('/')
            .map(|s| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .collect();
        let body: Option<Map<String, Value>> = serde_json::from_slice(&request.body).ok();
        if matches!(method, "PATCH" | "POST")
            && header(request, "content-type") != "application/json"
        {
            return ResponseTemplate::new(415).set_body_json(sf_error(
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
                &[],
            ));
        }
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (method, segments.as_slice()) {
            ("GET", ["Lead", "Leadrelay_Id__c", value]) => match org.leads.get(*value) {
                Some(lead) => ResponseTemplate::new(200).set_body_json(json!({
                    "attributes": {"type": "Lead", "url": format!("/services/data/v62.0/sobjects/Lead/{}", lead.id)},
                    "Id": lead.id,
                    "OwnerId": lead.fields["OwnerId"],
                })),
                None => not_found(),
            },
            ("PATCH", ["Lead", "Leadrelay_Id__c", value]) => {
                let Some(fields) = body else {
                    return ResponseTemplate::new(400)
                        .set_body_json(sf_error("JSON_PARSER_ERROR", "not JSON", &[]));
                };
                if fields.contains_key("Leadrelay_Id__c") {
                    return ResponseTemplate::new(400).set_body_json(sf_error(
                        "INVALID_FIELD",
                        "The external ID field can't be set in the request body",
                        &["Leadrelay_Id__c"],
                    ));
                }
                match org.leads.get_mut(*value) {
                    Some(lead) => {
                        lead.fields.extend(fields);
                        ResponseTemplate::new(200).set_body_json(json!({
                            "id": lead.id, "success": true, "errors": [], "created": false
                        }))
                    }
                    None => {
                        for required in ["LastName", "Company"] {
                            if !fields.contains_key(required) {
                                return ResponseTemplate::new(400).set_body_json(sf_error(
                                    "REQUIRED_FIELD_MISSING",
                                    &format!("Required fields are missing: [{required}]"),
                                    &[required],
                                ));
                            }
                        }
                        let id = format!("00Q5e00000LEAD{:04}", org.leads.len() + 1);
                        let mut record = Record {
                            id: id.clone(),
                            fields,
                        };
                        record
                            .fields
                            .entry("OwnerId")
                            .or_insert_with(|| API_USER.into());
                        org.leads.insert((*value).to_owned(), record);
                        ResponseTemplate::new(201).set_body_json(json!({
                            "id": id, "success": true, "errors": [], "created": true
                        }))
                    }
                }
            }
            ("POST", ["Task"]) | ("PATCH", ["Task", "Leadrelay_Task_Id__c", _]) => {
                let Some(fields) = body else {
                    return ResponseTemplate::new(400)
                        .set_body_json(sf_error("JSON_PARSER_ERROR", "not JSON", &[]));
                };
                let who = fields["WhoId"].as_str().unwrap_or_default();
                if !org.leads.values().any(|l| l.id == who) {
                    return ResponseTemplate::new(400).set_body_json(sf_error(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "Name ID: id value of incorrect type",
                        &["WhoId"],
                    ));
                }
                if !fields["OwnerId"].as_str().is_some_and(|o| o.starts_with("005")) {
                    return ResponseTemplate::new(400).set_body_json(sf_error(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "Assigned To ID: owner cannot be blank or a queue",
                        &["OwnerId"],
                    ));
                }
                let key = segments.get(2).map(|s| (*s).to_owned());
                let existing = key.as_ref().and_then(|k| org.task_keys.get(k).copied());
                let (status, id, created) = match existing {
                    Some(index) => {
                        org.tasks[index].fields.extend(fields);
                        (200, org.tasks[index].id.clone(), false)
                    }
                    None => {
                        let id = format!("00T5e00000TASK{:04}", org.tasks.len() + 1);
                        org.tasks.push(Record {
                            id: id.clone(),
                            fields,
                        });
                        if let Some(key) = key {
                            let index = org.tasks.len() - 1;
                            org.task_keys.insert(key, index);
                        }
                        (201, id, true)
                    }
                };
                if std::mem::take(&mut org.lose_next_task_answer) {
                    return ResponseTemplate::new(503)
                        .set_body_json(sf_error("SERVER_UNAVAILABLE", "try again", &[]));
                }
                let mut answer = json!({"id": id, "success": true, "errors": []});
                if segments.len() > 1 {
                    answer["created"] = json!(created);
                }
                ResponseTemplate::new(status).set_body_json(answer)
            }
            _ => not_found(),
        }
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(sf_error(
        "NOT_FOUND",
        "The requested resource does not exist",
        &[],
    ))
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn form(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

impl Respond for StandIn {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // The operations channel's Slack webhook, on the same server.
        if request.url.path() == "/ops" {
            return ResponseTemplate::new(200);
        }
        if request.url.path() == "/services/oauth2/token" {
            if request.method.as_str() != "POST"
                || header(request, "content-type") != "application/x-www-form-urlencoded"
            {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "error": "invalid_request", "error_description": "must use HTTP POST"
                }));
            }
            return self.token(&form(request));
        }
        self.rest(request)
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline, worked by hand.

/// The shipped example with Salesforce ids for Alice, Dana, Maria and two queues, and
/// `[notify.salesforce]` at the stand-in with `settings` added.
fn config_text(stand_in: &StandIn, settings: &str) -> String {
    with_salesforce(shipped_example_config(), stand_in, settings)
}

/// For the real clock (no working hours): Bruno the only member of the EMEA pool, with his
/// Salesforce id, and the operations alarm posting to the stand-in's `/ops`.
fn served_config(stand_in: &StandIn) -> String {
    let text = example_config()
        .edit(
            "members = [{ rep = \"bruno\", weight = 2 }, { rep = \"fatima\", weight = 1 }]",
            "members = [{ rep = \"bruno\" }]",
        )
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!("email = \"bruno@yourco.example\"\nsalesforce_user_id = \"{BRUNO}\""),
        );
    let operations = format!(
        "{CLIENT_CREDENTIALS}\n\n[operations]\nslack_webhook_url = \"{}/ops\"\ncheck_every = \"50ms\"\nremind_every = \"1h\"",
        stand_in.base
    );
    with_salesforce(text, stand_in, &operations)
}

const SERVED_ENV: &[(&str, &str)] = &[
    ("SF_CLIENT_ID", CLIENT_ID),
    ("SF_CLIENT_SECRET", CLIENT_SECRET),
];

/// Tom Baker of Initech UK, tier 1, EMEA: Bruno's.
const TOM: &str = "02-capture-emea-pricing.json";

fn with_salesforce(text: String, stand_in: &StandIn, settings: &str) -> String {
    text.edit(
        "email = \"alice@yourco.example\"",
        &format!("email = \"alice@yourco.example\"\nsalesforce_user_id = \"{ALICE}\""),
    )
    .edit(
        "email = \"dana@yourco.example\"",
        &format!("email = \"dana@yourco.example\"\nsalesforce_user_id = \"{DANA}\""),
    )
    .edit(
        "email = \"maria@yourco.example\"",
        &format!("email = \"maria@yourco.example\"\nsalesforce_user_id = \"{MARIA}\""),
    )
    .edit(
        "name = \"SDR queue\"\n",
        &format!("name = \"SDR queue\"\nsalesforce_queue_id = \"{SDR_QUEUE}\"\n"),
    )
    .edit(
        "name = \"Sales inbox\"\n",
        &format!("name = \"Sales inbox\"\nsalesforce_queue_id = \"{INBOX_QUEUE}\"\n"),
    )
    .edit(
        "\n[claim]\n",
        &format!(
            "\n[notify.salesforce]\nlogin_url = \"{}\"\n{settings}\n\n[claim]\n",
            stand_in.base
        ),
    )
}

const CLIENT_CREDENTIALS: &str = "auth = \"client_credentials\"\nclient_id_env = \"SF_CLIENT_ID\"\nclient_secret_env = \"SF_CLIENT_SECRET\"";

struct Harness {
    db: Sqlite,
    pipeline: Arc<Pipeline>,
    clock: Arc<HandClock>,
    start: Timestamp,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// One attempt per call inside a delivery unless `attempts` says more, with a short backoff.
    fn new(config_text: &str, attempts: u32) -> Harness {
        let config = parse_config_with_env(
            config_text,
            &[
                ("SF_CLIENT_ID", CLIENT_ID),
                ("SF_CLIENT_SECRET", CLIENT_SECRET),
                ("SF_PRIVATE_KEY", PRIVATE_KEY),
            ],
        );
        let start: Timestamp = TUESDAY_AFTERNOON.parse().expect("time");
        let clock = Arc::new(HandClock::new(start));
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_store(dir.path());
        let channels = Channels::from_config(&config.notify, Box::new(std::io::sink()))
            .expect("channels")
            .with_clock(clock.clone())
            .with_policy(DeliveryPolicy {
                max_attempts: attempts,
                base_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
                ..DeliveryPolicy::default()
            });
        let pipeline = Arc::new(Pipeline::new(
            Arc::new(config),
            Arc::new(db.clone()),
            Arc::new(db.clone()),
            Arc::new(channels),
            clock.clone(),
        ));
        Harness {
            db,
            pipeline,
            clock,
            start,
            _dir: dir,
        }
    }

    fn at(&self, minutes: i64, seconds: i64) {
        self.clock.set(
            self.start + SignedDuration::from_mins(minutes) + SignedDuration::from_secs(seconds),
        );
    }

    async fn lead(&self, id: &str) -> Lead {
        self.db.get_lead(id).await.expect("read").expect("stored")
    }

    async fn stage(&self, stage: Stage, id: &str) -> Result<Outcome, StageError> {
        let envelope = Envelope::new(id, stage, &format!("trace-{id}")).to_json();
        self.pipeline.handle(stage, &envelope).await
    }

    /// A tier-1 lead from Alice's named account, Acme Robotics, through enrich and route, and
    /// the notify stage's first run (its result returned). `incomplete` leaves the name out.
    async fn capture(&self, id: &str, named: bool) -> Result<Outcome, StageError> {
        let capture = CaptureEvent {
            event: Some(if named {
                EventKind::LeadCaptureFallback
            } else {
                EventKind::LeadCapturePartial
            }),
            captured_email: Some(format!("{id}@acme-robotics.com")),
            name: named.then(|| "Pat Quinn".to_owned()),
            trigger_query: Some("Can someone call me about pricing?".into()),
            metadata: Metadata {
                source_url: Some("https://www.yourco.example/pricing".into()),
                ..Metadata::default()
            },
            ..CaptureEvent::default()
        };
        let lead = Lead::captured(
            id.into(),
            format!("trace-{id}"),
            "website".into(),
            format!("evt-{id}"),
            capture,
            Vec::new(),
            self.clock.now(),
        );
        self.db.create_lead(&lead).await.expect("stored");
        for stage in [Stage::Enrich, Stage::Route] {
            self.stage(stage, id).await.expect("enriched and routed");
        }
        // The messages enrich and route sent: the test runs notify itself.
        for stage in [Stage::Route, Stage::Notify] {
            while !self
                .db
                .receive(stage, 50)
                .await
                .expect("receive")
                .is_empty()
            {}
        }
        self.stage(Stage::Notify, id).await
    }

    /// sla-watch at the clock's time, then notify for each lead it escalated.
    async fn sweep(&self) -> sla::SweepReport {
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
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

/// The requests to the REST API (not the token endpoint), as `METHOD path?query`.
async fn rest_calls(server: &MockServer) -> Vec<String> {
    requests(server)
        .await
        .into_iter()
        .filter(|r| r.url.path().starts_with("/services/data/"))
        .map(|r| match r.url.query() {
            Some(q) => format!("{} {}?{q}", r.method, r.url.path()),
            None => format!("{} {}", r.method, r.url.path()),
        })
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn lead_path(id: &str) -> String {
    format!("{API}/Lead/Leadrelay_Id__c/{id}")
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn a_lead_is_upserted_on_its_external_id_with_its_owner_and_a_task_as_the_rest_api_documents()
{
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 1);
    h.capture("sf-new", true).await.expect("notified");
    assert_eq!(h.lead("sf-new").await.state, LeadState::Notified);

    let all = requests(&server).await;
    // The client-credentials grant: a form post with the app's key and secret.
    let token = &all[0];
    assert_eq!(token.method.as_str(), "POST");
    assert_eq!(token.url.path(), "/services/oauth2/token");
    assert_eq!(
        header(token, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let grant = form(token);
    assert_eq!(
        grant,
        BTreeMap::from([
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), CLIENT_ID.to_owned()),
            ("client_secret".to_owned(), CLIENT_SECRET.to_owned()),
        ])
    );
    // Then: the Lead's owner read by its external id, the upsert, the Task.
    assert_eq!(
        rest_calls(&server).await,
        vec![
            format!("GET {}?fields=Id,OwnerId", lead_path("sf-new")),
            format!("PATCH {}", lead_path("sf-new")),
            format!("POST {API}/Task"),
        ]
    );
    let bearer = "Bearer 00D5e0000000001!AQ-token-1";
    for call in &all[1..] {
        assert_eq!(header(call, "authorization"), bearer);
        assert_eq!(header(call, "accept"), "application/json");
    }
    let upsert = &all[2];
    assert_eq!(header(upsert, "content-type"), "application/json");
    assert_eq!(header(upsert, "sforce-auto-assign"), "FALSE");
    assert_eq!(
        body(upsert),
        json!({
            "FirstName": "Pat", "LastName": "Quinn", "Company": "Acme Robotics",
            "Email": "sf-new@acme-robotics.com", "LeadSource": "Web",
            "Description": "Can someone call me about pricing?", "OwnerId": ALICE,
        })
    );
    let lead = sf.lead("sf-new").expect("the Lead exists");
    assert_eq!(lead.fields["OwnerId"], ALICE);

    let task_call = &all[3];
    assert_eq!(header(task_call, "content-type"), "application/json");
    let task = body(task_call);
    let due = h
        .lead("sf-new")
        .await
        .timeline
        .sla_due_at
        .expect("a deadline");
    assert_eq!(due, h.start + SignedDuration::from_mins(5));
    assert_eq!(task["WhoId"], lead.id.as_str());
    assert_eq!(task["OwnerId"], ALICE);
    assert_eq!(
        task["Subject"],
        "Follow up Pat Quinn (Acme Robotics): tier 1 lead"
    );
    assert_eq!(task["Priority"], "High");
    assert_eq!(task["Status"], "Not Started");
    assert_eq!(task["ActivityDate"], "2026-11-24");
    assert_eq!(task["ReminderDateTime"], due.to_string());
    assert_eq!(task["IsReminderSet"], true);
    let description = task["Description"].as_str().expect("text");
    for part in [
        "Asked: Can someone call me about pricing?",
        "Tier 1",
        "Why this owner: Alice Martin",
        &format!("Claim by: {due} (SLA 5 min)"),
        "Page: https://www.yourco.example/pricing",
        "leadrelay lead sf-new",
    ] {
        assert!(description.contains(part), "{part:?} in {description}");
    }
    assert_eq!(sf.tasks().len(), 1);

    // A replay of the notify message (a redelivery, a dead-letter replay): nothing is sent.
    let before = requests(&server).await.len();
    h.stage(Stage::Notify, "sf-new").await.expect("replayed");
    assert_eq!(requests(&server).await.len(), before);
    assert_eq!(sf.org().leads.len(), 1);
    assert_eq!(sf.tasks().len(), 1);
}

#[tokio::test]
async fn a_retry_after_a_failed_task_updates_the_same_lead_and_creates_one_task() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 1);
    // Salesforce is unavailable for the Task: the delivery fails for now.
    sf.fault(
        "POST",
        "/Task",
        503,
        sf_error("SERVER_UNAVAILABLE", "Server unavailable", &[]),
        1,
    );
    let error = h.capture("sf-retry", true).await.expect_err("transient");
    assert!(
        error.to_string().contains("salesforce answered 503"),
        "{error}"
    );
    assert_eq!(sf.org().leads.len(), 1, "the Lead was written");
    assert!(sf.tasks().is_empty());

    // The queue's retry: the same Lead is found and updated (its owner left alone), one Task.
    h.stage(Stage::Notify, "sf-retry").await.expect("delivered");
    let calls = rest_calls(&server).await;
    assert_eq!(
        calls[3..],
        [
            format!("GET {}?fields=Id,OwnerId", lead_path("sf-retry")),
            format!("PATCH {}", lead_path("sf-retry")),
            format!("POST {API}/Task"),
        ]
    );
    let patches: Vec<Value> = requests(&server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .map(body)
        .collect();
    assert_eq!(
        patches[0]["OwnerId"], ALICE,
        "set when the Lead was created"
    );
    assert!(
        patches[1].get("OwnerId").is_none(),
        "not sent again: {}",
        patches[1]
    );
    assert_eq!(sf.org().leads.len(), 1);
    assert_eq!(sf.tasks().len(), 1);
    assert_eq!(h.lead("sf-retry").await.state, LeadState::Notified);

    // Replayed once delivered: nothing more.
    let before = requests(&server).await.len();
    h.stage(Stage::Notify, "sf-retry").await.expect("replayed");
    assert_eq!(requests(&server).await.len(), before);
    assert_eq!(sf.tasks().len(), 1);
}

#[tokio::test]
async fn with_a_task_external_id_a_lost_answer_cannot_make_a_second_task() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(
        &config_text(
            &sf,
            &format!("{CLIENT_CREDENTIALS}\ntask_external_id_field = \"Leadrelay_Task_Id__c\""),
        ),
        1,
    );
    // Salesforce writes the Task, but its answer never arrives.
    sf.org().lose_next_task_answer = true;
    h.capture("sf-lost", true)
        .await
        .expect_err("the answer was lost");
    assert_eq!(sf.tasks().len(), 1);
    h.stage(Stage::Notify, "sf-lost").await.expect("delivered");
    let task_path = format!("{API}/Task/Leadrelay_Task_Id__c/sf-lost");
    let upserts: Vec<String> = rest_calls(&server)
        .await
        .into_iter()
        .filter(|c| c.contains("/Task"))
        .collect();
    assert_eq!(
        upserts,
        vec![format!("PATCH {task_path}"), format!("PATCH {task_path}")]
    );
    assert_eq!(sf.tasks().len(), 1, "the retry updated the same Task");
    let task = &sf.tasks()[0].fields;
    assert!(
        task.get("Leadrelay_Task_Id__c").is_none(),
        "never in the body"
    );
    assert_eq!(task["OwnerId"], ALICE);
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_a_refused_one_is_refreshed_once() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(
        &config_text(
            &sf,
            &format!("{CLIENT_CREDENTIALS}\ntoken_lifetime = \"30m\""),
        ),
        1,
    );
    let token_requests = || async {
        requests(&server)
            .await
            .iter()
            .filter(|r| r.url.path() == "/services/oauth2/token")
            .count()
    };
    h.capture("sf-t1", true).await.expect("notified");
    // 29 minutes on, the token is still used.
    h.at(29, 0);
    h.capture("sf-t2", true).await.expect("notified");
    assert_eq!(token_requests().await, 1, "the token is cached");
    // 31 minutes on, past its lifetime: a new token before the first call.
    h.at(31, 0);
    let seen = requests(&server).await.len();
    h.capture("sf-t3", true).await.expect("notified");
    assert_eq!(token_requests().await, 2);
    let after: Vec<Request> = requests(&server).await[seen..].to_vec();
    assert_eq!(after[0].url.path(), "/services/oauth2/token", "asked first");
    assert!(after[1..]
        .iter()
        .all(|r| header(r, "authorization") == "Bearer 00D5e0000000001!AQ-token-2"));

    // Salesforce ends the session early (INVALID_SESSION_ID): one new token, the call again.
    sf.expire_sessions();
    let seen = requests(&server).await.len();
    h.capture("sf-t4", true).await.expect("notified");
    let after: Vec<Request> = requests(&server).await[seen..].to_vec();
    let summary: Vec<String> = after
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.url.path(),
                header(r, "authorization")
            )
        })
        .collect();
    assert_eq!(
        summary[..3],
        [
            format!(
                "GET {} Bearer 00D5e0000000001!AQ-token-2",
                lead_path("sf-t4")
            ),
            "POST /services/oauth2/token ".to_owned(),
            format!(
                "GET {} Bearer 00D5e0000000001!AQ-token-3",
                lead_path("sf-t4")
            ),
        ],
        "{summary:#?}"
    );
    assert_eq!(token_requests().await, 3);
    assert!(sf.lead("sf-t4").is_some());

    // A token refused even when new is a failure, not a loop of refreshes.
    sf.fault(
        "GET",
        "/Lead/",
        401,
        sf_error("INVALID_SESSION_ID", "Session expired or invalid", &[]),
        2,
    );
    let outcome = h.capture("sf-t5", true).await.expect("parked");
    assert!(outcome.failed_for_good);
    assert_eq!(token_requests().await, 4);
    let failure = h.lead("sf-t5").await.last_failure.expect("recorded").error;
    assert!(
        failure.contains("salesforce answered 401: Lead lookup: INVALID_SESSION_ID"),
        "{failure}"
    );
}

#[tokio::test]
async fn the_jwt_bearer_assertion_is_signed_and_claimed_as_documented() {
    let (server, sf) = StandIn::start().await;
    let settings = "auth = \"jwt_bearer\"\nclient_id_env = \"SF_CLIENT_ID\"\nusername = \"leadrelay@yourco.example\"\nprivate_key_env = \"SF_PRIVATE_KEY\"\naudience = \"https://test.salesforce.com\"";
    let h = Harness::new(&config_text(&sf, settings), 1);
    h.capture("sf-jwt", true).await.expect("notified");
    assert!(sf.lead("sf-jwt").is_some());

    let all = requests(&server).await;
    let token = &all[0];
    assert_eq!(token.url.path(), "/services/oauth2/token");
    assert_eq!(
        header(token, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let grant = form(token);
    assert_eq!(
        grant.keys().collect::<Vec<_>>(),
        ["assertion", "grant_type"],
        "nothing else, no client secret"
    );
    assert_eq!(
        grant["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let parts: Vec<&str> = grant["assertion"].split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).expect("base64url");
    let header_json: Value = serde_json::from_slice(&decode(parts[0])).expect("JSON");
    assert_eq!(header_json, json!({"alg": "RS256"}));
    let claims: Value = serde_json::from_slice(&decode(parts[1])).expect("JSON");
    assert_eq!(
        claims,
        json!({
            "iss": CLIENT_ID,
            "sub": "leadrelay@yourco.example",
            "aud": "https://test.salesforce.com",
            "exp": (h.start + SignedDuration::from_secs(120)).as_second(),
        })
    );
    // Signed with the private key: the public half verifies it.
    let public = PUBLIC_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let public = STANDARD.decode(public).expect("base64");
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &decode(parts[2]),
        )
        .expect("the signature verifies with the test key's public half");
    assert!(all[1..]
        .iter()
        .all(|r| header(r, "authorization") == "Bearer 00D5e0000000001!AQ-token-1"));
}

#[tokio::test]
async fn a_queues_lead_is_owned_by_the_salesforce_queue_and_its_task_by_the_manager() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 1);
    // A partial capture (no name) goes to the SDR queue.
    h.capture("sf-partial", false).await.expect("notified");
    let lead = h.lead("sf-partial").await;
    assert_eq!(
        lead.assignment.as_ref().map(|a| a.owner.key()).as_deref(),
        Some("queue:sdr")
    );
    let record = sf.lead("sf-partial").expect("the Lead");
    assert_eq!(record.fields["OwnerId"], SDR_QUEUE);
    assert_eq!(
        record.fields["LastName"], "sf-partial",
        "the e-mail's local part"
    );
    assert!(record.fields.get("FirstName").is_none());
    let tasks = sf.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].fields["OwnerId"], MARIA,
        "a Task is a user's: the manager's"
    );
    assert_eq!(tasks[0].fields["WhoId"], record.id.as_str());
    assert_eq!(rest_calls(&server).await.len(), 3);
}

#[tokio::test]
async fn an_escalation_leaves_the_salesforce_owner_alone_unless_configured_to_reassign() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 1);
    h.capture("sf-esc", true).await.expect("notified");
    assert_eq!(sf.lead("sf-esc").expect("Lead").fields["OwnerId"], ALICE);
    let first = rest_calls(&server).await.len();

    // 5:01: Alice's SLA passed; Dana has it in leadrelay. 10:02: the team queue.
    h.at(5, 1);
    assert_eq!(h.sweep().await.escalated, vec![("sf-esc".to_owned(), 1)]);
    h.at(10, 2);
    assert_eq!(h.sweep().await.escalated, vec![("sf-esc".to_owned(), 2)]);
    let calls = rest_calls(&server).await[first..].to_vec();
    let lookup = format!("GET {}?fields=Id,OwnerId", lead_path("sf-esc"));
    let upsert = format!("PATCH {}", lead_path("sf-esc"));
    assert_eq!(calls, vec![lookup.clone(), upsert.clone(), lookup, upsert]);
    for patch in requests(&server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .skip(1)
    {
        assert!(body(patch).get("OwnerId").is_none(), "{}", body(patch));
    }
    assert_eq!(sf.lead("sf-esc").expect("Lead").fields["OwnerId"], ALICE);
    assert_eq!(sf.tasks().len(), 1, "no Task for the escalation");

    // Configured to reassign: each escalation moves the Lead and gives its new owner a Task.
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(
        &config_text(
            &sf,
            &format!("{CLIENT_CREDENTIALS}\nescalation_reassigns = true"),
        ),
        1,
    );
    h.capture("sf-move", true).await.expect("notified");
    h.at(5, 1);
    h.sweep().await;
    assert_eq!(sf.lead("sf-move").expect("Lead").fields["OwnerId"], DANA);
    h.at(10, 2);
    h.sweep().await;
    assert_eq!(
        sf.lead("sf-move").expect("Lead").fields["OwnerId"],
        INBOX_QUEUE
    );
    let tasks = sf.tasks();
    let owners: Vec<&Value> = tasks.iter().map(|t| &t.fields["OwnerId"]).collect();
    assert_eq!(owners, [ALICE, DANA, MARIA]);
    assert!(tasks[1].fields["Subject"]
        .as_str()
        .is_some_and(|s| s.starts_with("Escalated: ")));
    let escalated_due = h
        .lead("sf-move")
        .await
        .timeline
        .sla_due_at
        .expect("deadline");
    assert_eq!(
        tasks[2].fields["ReminderDateTime"],
        escalated_due.to_string()
    );
    // Overwriting needs no lookup first.
    assert!(!rest_calls(&server).await[3..]
        .iter()
        .any(|c| c.starts_with("GET ")));
}

#[tokio::test]
async fn request_limit_exceeded_is_retried_with_backoff_and_delivers_once() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 3);
    sf.fault(
        "PATCH",
        "/Lead/",
        403,
        sf_error(
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        ),
        1,
    );
    h.capture("sf-limit", true)
        .await
        .expect("delivered on the retry");
    let patches: Vec<Request> = requests(&server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "retried once");
    assert_eq!(body(&patches[0]), body(&patches[1]), "the same upsert");
    assert_eq!(sf.org().leads.len(), 1);
    assert_eq!(sf.tasks().len(), 1);
    assert!(h.lead("sf-limit").await.last_failure.is_none());

    // Still over the limit after every attempt: handed back to the queue's retry, never parked.
    sf.fault(
        "PATCH",
        "/Lead/",
        403,
        sf_error(
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        ),
        3,
    );
    let error = h.capture("sf-limit-2", true).await.expect_err("transient");
    assert!(
        error
            .to_string()
            .contains("API request limit exceeded (403): Lead upsert: REQUEST_LIMIT_EXCEEDED"),
        "{error}"
    );
    assert!(h
        .db
        .list(Stage::Notify, 10, Duration::ZERO)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn refused_grants_and_invalid_records_are_permanent_and_say_why_without_secrets() {
    let (_server, sf) = StandIn::start().await;
    let h = Harness::new(&config_text(&sf, CLIENT_CREDENTIALS), 3);
    // The app's secret was rotated: Salesforce refuses the grant.
    sf.org().token_error = Some((
        400,
        json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
    ));
    let outcome = h.capture("sf-grant", true).await.expect("parked");
    assert!(outcome.failed_for_good);
    assert_eq!(sf.org().tokens_issued, 0, "asked once, not retried");
    let failure = h
        .lead("sf-grant")
        .await
        .last_failure
        .expect("recorded")
        .error;
    assert!(
        failure.contains("salesforce is not configured: token request refused (400): invalid_client: invalid client credentials"),
        "{failure}"
    );
    let letters =
        h.db.list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("list");
    assert_eq!(letters.len(), 1, "dead-lettered for the operations alarm");
    assert_eq!(letters[0].lead_id.as_deref(), Some("sf-grant"));

    // A duplicate rule blocks the Lead: permanent, Salesforce's message kept, the address not.
    sf.fault(
        "PATCH",
        "/Lead/",
        400,
        sf_error(
            "DUPLICATES_DETECTED",
            "Use one of these records? sf-dup@acme-robotics.com is already a Lead",
            &[],
        ),
        1,
    );
    let outcome = h.capture("sf-dup", true).await.expect("parked");
    assert!(outcome.failed_for_good);
    let failure = h.lead("sf-dup").await.last_failure.expect("recorded").error;
    assert!(
        failure.contains("salesforce answered 400: Lead upsert: DUPLICATES_DETECTED: Use one of these records? [e-mail] is already a Lead"),
        "{failure}"
    );
    let letters =
        h.db.list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("list");
    for text in [failure, format!("{letters:?}")] {
        assert!(!text.contains("sf-dup@acme-robotics.com"), "{text}");
        assert!(
            !text.contains(CLIENT_SECRET) && !text.contains("AQ-token"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_refused_grant_is_dead_lettered_and_operations_hear_of_it() {
    let (server, sf) = StandIn::start().await;
    sf.org().token_error = Some((
        400,
        json!({"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}),
    ));
    let app = Server::start_with_env(&served_config(&sf), SERVED_ENV).await;
    let answer = app.send("website", "msg_sf_grant", &sample(TOM)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let ops = eventually(Duration::from_secs(10), "the operations alert", || async {
        let ops: Vec<Request> = requests(&server)
            .await
            .into_iter()
            .filter(|r| r.url.path() == "/ops")
            .collect();
        (!ops.is_empty()).then_some(ops)
    })
    .await;
    let notice = body(&ops[0]);
    let text = notice["text"].as_str().expect("text");
    assert!(
        text.contains("notify dead-letter queue") && text.contains(&lead_id),
        "{notice}"
    );
    let lead = app.lead(&lead_id).await.body;
    let failure = lead["last_failure"]["error"].as_str().expect("a failure");
    assert!(
        failure.contains(
            "token request refused (400): invalid_grant: user hasn't approved this consumer"
        ),
        "{failure}"
    );
    assert!(!failure.contains(CLIENT_SECRET), "{failure}");
    assert!(sf.org().leads.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn leadrelay_serve_refuses_a_jwt_key_it_cannot_sign_with_naming_the_setting() {
    let (_server, sf) = StandIn::start().await;
    let jwt = "auth = \"jwt_bearer\"\nclient_id_env = \"SF_CLIENT_ID\"\nusername = \"leadrelay@yourco.example\"\nprivate_key_env = \"SF_PRIVATE_KEY\"";
    let config_text = served_config(&sf).replace(CLIENT_CREDENTIALS, jwt);
    let files = ServeFiles::new(&config_text);
    // Well-formed PEM, but an EC key: RS256 cannot sign with it.
    let ec_key = include_str!("fixtures/salesforce/ec-p256-key.pem");
    let (status, log) = serve(&files)
        .env("SF_CLIENT_ID", CLIENT_ID)
        .env("SF_PRIVATE_KEY", ec_key)
        .refused()
        .await;
    assert!(!status.success(), "{log}");
    let line = 1 + config_text
        .lines()
        .position(|l| l.starts_with("private_key_env"))
        .expect("written");
    let expected = format!(
        "{}:{line}: notify.salesforce.private_key_env: SF_PRIVATE_KEY: not an RSA private key \
         ring can sign with: ",
        files.config.display()
    );
    assert!(log.contains(&expected), "{log}");
    assert!(
        !log.contains("BEGIN") && !log.contains(ec_key.lines().nth(1).expect("body")),
        "{log}"
    );
}

#[tokio::test]
async fn no_secret_or_token_is_ever_logged() {
    let (_server, sf) = StandIn::start().await;
    let config_text = served_config(&sf);
    let config = parse_config_with_env(&config_text, SERVED_ENV);
    let files = ServeFiles::new(&config_text);
    let mut child = serve(&files)
        .env("SF_CLIENT_ID", CLIENT_ID)
        .env("SF_CLIENT_SECRET", CLIENT_SECRET)
        .env("LEADRELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .spawn()
        .await;
    let http = crate::support::http_client();
    let send = |event_id: &'static str, body: Vec<u8>| {
        let request = signed_webhook(&http, &child.base, &config, "website", event_id, &body);
        async move {
            let answer = request.send().await.expect("sent");
            assert_eq!(answer.status().as_u16(), 202);
        }
    };
    // Delivered with the first token.
    send("msg_sf_log_1", sample(TOM)).await;
    eventually(Duration::from_secs(10), "the Lead", || async {
        (!sf.org().leads.is_empty()).then_some(())
    })
    .await;
    // The session ends: refreshed; then a duplicate rule refuses the Lead for good.
    sf.expire_sessions();
    sf.fault(
        "PATCH",
        "/Lead/",
        400,
        sf_error(
            "DUPLICATES_DETECTED",
            "Use one of these records? ann.lee@sales.initech.co.uk",
            &[],
        ),
        1,
    );
    let other = String::from_utf8(sample(TOM))
        .expect("UTF-8")
        .replace(
            "tom.baker@sales.initech.co.uk",
            "ann.lee@sales.initech.co.uk",
        )
        .replace("Tom Baker", "Ann Lee")
        .replace("+44 20 7946 0321", "+44 20 7946 0999")
        .replace("anon-77c1d2e0", "anon-88d2e3f1")
        .replace("conv-12377", "conv-12388");
    send("msg_sf_log_2", other.into_bytes()).await;
    eventually(
        Duration::from_secs(10),
        "the dead-letter log line",
        || async { files.log_text().contains("dead-lettered").then_some(()) },
    )
    .await;
    child.kill();
    let log = files.log_text();
    assert_eq!(sf.org().tokens_issued, 2, "refreshed once");
    assert!(log.contains("Salesforce Lead upserted"), "{log}");
    assert!(
        log.contains("DUPLICATES_DETECTED: Use one of these records? [e-mail]"),
        "{log}"
    );
    for secret in [CLIENT_SECRET, "AQ-token"] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    for line in log.lines().filter(|l| l.contains("DUPLICATES_DETECTED")) {
        assert!(
            !line.contains("ann.lee@"),
            "the address in an error: {line}"
        );
    }
}

#[tokio::test]
async fn an_update_answered_204_as_before_api_46_finds_the_leads_id_for_the_task() {
    let (server, sf) = StandIn::start().await;
    let h = Harness::new(
        &config_text(
            &sf,
            &format!("{CLIENT_CREDENTIALS}\nowner_policy = \"overwrite\""),
        ),
        1,
    );
    // The Lead exists (written before), owned by a queue; the update answers 204, no body.
    sf.org().leads.insert(
        "sf-204".into(),
        Record {
            id: "00Q5e00000LEAD0099".into(),
            fields: Map::from_iter([("OwnerId".to_owned(), json!(SDR_QUEUE))]),
        },
    );
    sf.fault("PATCH", "/Lead/", 204, Value::Null, 1);
    h.capture("sf-204", true).await.expect("notified");
    assert_eq!(
        rest_calls(&server).await,
        vec![
            format!("PATCH {}", lead_path("sf-204")),
            format!("GET {}?fields=Id,OwnerId", lead_path("sf-204")),
            format!("POST {API}/Task"),
        ]
    );
    assert_eq!(sf.tasks()[0].fields["WhoId"], "00Q5e00000LEAD0099");
}

#[tokio::test]
async fn replace_queue_takes_a_lead_from_a_queue_and_leaves_a_users_alone() {
    let (_server, sf) = StandIn::start().await;
    let h = Harness::new(
        &config_text(
            &sf,
            &format!("{CLIENT_CREDENTIALS}\nowner_policy = \"replace_queue\""),
        ),
        1,
    );
    for (external_id, owner) in [("sf-queued", SDR_QUEUE), ("sf-owned", MARIA)] {
        let id = format!("00Q5e00000LEAD{:04}", 90 + sf.org().leads.len());
        sf.org().leads.insert(
            external_id.into(),
            Record {
                id,
                fields: Map::from_iter([("OwnerId".to_owned(), json!(owner))]),
            },
        );
    }
    h.capture("sf-queued", true).await.expect("notified");
    h.capture("sf-owned", true).await.expect("notified");
    assert_eq!(sf.lead("sf-queued").expect("Lead").fields["OwnerId"], ALICE);
    assert_eq!(sf.lead("sf-owned").expect("Lead").fields["OwnerId"], MARIA);
    // Each still gets its Task for the rep leadrelay alerted.
    assert_eq!(sf.tasks().len(), 2);
}

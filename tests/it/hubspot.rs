//! HubSpot write-back end to end, at a stand-in of `api.hubapi.com` that checks each request as
//! the CRM API documents it (method, path, query, `Authorization: Bearer`, JSON body with its
//! properties and HUBSPOT_DEFINED association type ids) and answers in HubSpot's shapes: the
//! owner policy (keep an existing owner, fill an empty one, overwrite), escalations that leave
//! the owner alone, the note and the task written once however often the notify message is
//! delivered, queue-owned leads, and HubSpot's errors (429 with Retry-After, 401, 400).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{eventually, example_config, sample, with_retry_schedule, Edit, Server};
use leadrelay_shared::model::{Envelope, Escalation, Lead, LeadState, Owner, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore, Queue};
use leadrelay_shared::routing::effects::Effects;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // tier 1, EMEA: routes to bruno
const PARTIAL: &str = "04-partial-free-mail.json"; // incomplete: the SDR queue
pub(crate) const TOKEN: &str = "pat-na1-0f1e2d3c-SeCrEt-4b5a-6978";
const BEARER: &str = "Bearer pat-na1-0f1e2d3c-SeCrEt-4b5a-6978";
const EMAIL: &str = "tom.baker@sales.initech.co.uk";
const CONTACTS: &str = "/hubspot/crm/v3/objects/contacts";
const NOTES: &str = "/hubspot/crm/v3/objects/notes";
const TASKS: &str = "/hubspot/crm/v3/objects/tasks";
const COMPANY_SEARCH: &str = "/hubspot/crm/v3/objects/companies/search";
/// What leadrelay asks of an existing contact.
const READ_PROPERTIES: &str =
    "hubspot_owner_id,hubspot_team_id,firstname,lastname,company,phone,jobtitle";

/// The example config with bruno the only member of the EMEA pool (so every EMEA lead is his,
/// with HubSpot owner 12345), dana HubSpot owner 34, `[notify.hubspot]` at the stand-in with
/// `settings` added, and a quick retry schedule.
pub(crate) fn config(stand_in: &MockServer, settings: &str) -> String {
    let text = example_config()
        .edit(
            "members = [{ rep = \"bruno\", weight = 2 }, { rep = \"fatima\", weight = 1 }]",
            "members = [{ rep = \"bruno\" }]",
        )
        .edit(
            "email = \"bruno@yourco.example\"",
            "email = \"bruno@yourco.example\"\nhubspot_owner_id = \"12345\"",
        )
        .edit(
            "email = \"dana@yourco.example\"",
            "email = \"dana@yourco.example\"\nhubspot_owner_id = \"34\"",
        )
        .edit(
            "\n[claim]\n",
            &format!(
                "\n[notify.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"\nbase_url = \"{}/hubspot\"\n\
                 {settings}\n\n[claim]\n",
                stand_in.uri()
            ),
        );
    with_retry_schedule(&text, &["10ms", "20ms", "40ms", "80ms"], 15)
}

async fn start(config: &str) -> Server {
    Server::start_with_env(config, &[("HUBSPOT_TOKEN", TOKEN)]).await
}

/// A CRM record as HubSpot's v3 object endpoints answer it.
fn record(id: &str, properties: Value) -> Value {
    let mut all = json!({
        "createdate": "2026-01-05T09:00:00.000Z",
        "hs_object_id": id,
        "lastmodifieddate": "2026-11-20T12:00:00.000Z",
    });
    if let (Some(all), Some(given)) = (all.as_object_mut(), properties.as_object()) {
        for (key, value) in given {
            all.insert(key.clone(), value.clone());
        }
    }
    json!({
        "id": id,
        "properties": all,
        "createdAt": "2026-01-05T09:00:00.000Z",
        "updatedAt": "2026-11-20T12:00:00.000Z",
        "archived": false,
    })
}

/// HubSpot's error body.
fn error(status: &str, message: &str, category: &str) -> Value {
    json!({
        "status": status,
        "message": message,
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": category,
    })
}

/// `GET /crm/v3/objects/contacts/{email}?idProperty=email&properties=...` answers `reply`.
async fn mount_read(stand_in: &MockServer, email: &str, reply: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("{CONTACTS}/{email}")))
        .and(header("authorization", BEARER))
        .and(query_param("idProperty", "email"))
        .and(query_param("properties", READ_PROPERTIES))
        .respond_with(reply)
        .mount(stand_in)
        .await;
}

/// The contact exists, as contact 501 with these properties.
async fn mount_existing(stand_in: &MockServer, properties: Value) {
    let mut properties = properties;
    properties["email"] = EMAIL.into();
    mount_read(
        stand_in,
        EMAIL,
        ResponseTemplate::new(200).set_body_json(record("501", properties)),
    )
    .await;
}

/// No contact has the address until leadrelay creates it (as contact 901): HubSpot's 404,
/// then the created contact; a second create answers HubSpot's 409.
pub(crate) async fn mount_absent(stand_in: &MockServer, email: &str) {
    let created: Arc<Mutex<Option<Value>>> = Arc::default();
    let known = created.clone();
    Mock::given(method("GET"))
        .and(path(format!("{CONTACTS}/{email}")))
        .and(header("authorization", BEARER))
        .and(query_param("idProperty", "email"))
        .and(query_param("properties", READ_PROPERTIES))
        .respond_with(
            move |_: &Request| match known.lock().expect("not poisoned").clone() {
                Some(properties) => {
                    ResponseTemplate::new(200).set_body_json(record("901", properties))
                }
                None => ResponseTemplate::new(404).set_body_json(error(
                    "error",
                    "resource not found",
                    "OBJECT_NOT_FOUND",
                )),
            },
        )
        .mount(stand_in)
        .await;
    Mock::given(method("POST"))
        .and(path(CONTACTS))
        .and(header("authorization", BEARER))
        .and(header("content-type", "application/json"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let mut created = created.lock().expect("not poisoned");
            if created.is_some() {
                return ResponseTemplate::new(409).set_body_json(error(
                    "error",
                    "Contact already exists. Existing ID: 901",
                    "CONFLICT",
                ));
            }
            *created = Some(body["properties"].clone());
            ResponseTemplate::new(201).set_body_json(record("901", body["properties"].clone()))
        })
        .mount(stand_in)
        .await;
}

/// The writes answer as HubSpot does: contact updates, notes (7001), tasks (8001), the
/// initech.co.uk company (512) and the contact's association with it.
pub(crate) async fn mount_writes(stand_in: &MockServer) {
    let created = |id: &str| {
        let id = id.to_owned();
        move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(record(&id, body["properties"].clone()))
        }
    };
    for (verb, at, reply) in [
        ("POST", NOTES.to_owned(), created("7001")),
        ("POST", TASKS.to_owned(), created("8001")),
    ] {
        Mock::given(method(verb))
            .and(path(at))
            .and(header("authorization", BEARER))
            .and(header("content-type", "application/json"))
            .respond_with(reply)
            .mount(stand_in)
            .await;
    }
    for id in ["501", "901"] {
        Mock::given(method("PATCH"))
            .and(path(format!("{CONTACTS}/{id}")))
            .and(header("authorization", BEARER))
            .and(header("content-type", "application/json"))
            .respond_with(move |request: &Request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                ResponseTemplate::new(200).set_body_json(record(id, body["properties"].clone()))
            })
            .mount(stand_in)
            .await;
        Mock::given(method("PUT"))
            .and(path(format!(
                "/hubspot/crm/v4/objects/contacts/{id}/associations/default/companies/512"
            )))
            .and(header("authorization", BEARER))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": "COMPLETE",
                "results": [{
                    "from": {"id": id}, "to": {"id": "512"},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                        "associationTypeId": 279}
                }],
                "startedAt": "2026-11-23T10:01:01.000Z",
                "completedAt": "2026-11-23T10:01:01.050Z"
            })))
            .mount(stand_in)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(COMPANY_SEARCH))
        .and(header("authorization", BEARER))
        .and(body_json(json!({
            "filterGroups": [{"filters": [
                {"propertyName": "domain", "operator": "EQ", "value": "initech.co.uk"}
            ]}],
            "properties": ["domain", "name"],
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "limit": 1,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total": 1,
            "results": [record("512", json!({"domain": "initech.co.uk", "name": "Initech"}))],
        })))
        .mount(stand_in)
        .await;
}

/// The requests `stand_in` received for `verb` on `at`, in order.
pub(crate) async fn requests(stand_in: &MockServer, verb: &str, at: &str) -> Vec<Request> {
    stand_in
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .collect()
}

pub(crate) async fn bodies(stand_in: &MockServer, verb: &str, at: &str) -> Vec<Value> {
    requests(stand_in, verb, at)
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
        .collect()
}

/// Every request carried the private app's token, and nothing else was asked.
async fn every_request_was_authorized(stand_in: &MockServer) {
    for request in stand_in.received_requests().await.unwrap_or_default() {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default()),
            Some(BEARER),
            "{} {}",
            request.method,
            request.url
        );
    }
}

/// Sends the sample lead and waits until it is notified (HubSpot is bruno's only channel
/// besides the terminal, so notified means written).
async fn send_lead(server: &Server, event_id: &str) -> Lead {
    let answer = server.send("website", event_id, &sample(LEAD)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    stored(server, &lead_id).await
}

async fn stored(server: &Server, lead_id: &str) -> Lead {
    server
        .db
        .get_lead(lead_id)
        .await
        .expect("read")
        .expect("stored")
}

fn association(id: &str, type_id: u32) -> Value {
    json!({"to": {"id": id},
           "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]})
}

#[tokio::test]
async fn keep_existing_never_overwrites_an_existing_owner_and_writes_the_context_once() {
    let stand_in = MockServer::start().await;
    // Someone else owns Tom in HubSpot, with his first name as they know it.
    mount_existing(
        &stand_in,
        json!({"hubspot_owner_id": "777", "hubspot_team_id": null, "firstname": "Thomas",
               "lastname": null, "company": "", "phone": null, "jobtitle": null}),
    )
    .await;
    mount_writes(&stand_in).await;
    // No owner_policy: keep_existing is the default.
    let server = start(&config(&stand_in, "")).await;
    let lead = send_lead(&server, "msg_hs_keep").await;

    // The owner stays 777; only what the contact lacks is filled, the first name stays.
    let patches = bodies(&stand_in, "PATCH", &format!("{CONTACTS}/501")).await;
    assert_eq!(patches.len(), 1);
    let update = &patches[0]["properties"];
    assert_eq!(update.get("hubspot_owner_id"), None, "{update}");
    assert_eq!(update.get("firstname"), None, "{update}");
    assert_eq!(update["lastname"], "Baker");
    assert_eq!(update["phone"], "+442079460321");
    assert!(update["company"].is_string(), "{update}");
    assert!(requests(&stand_in, "POST", CONTACTS).await.is_empty());

    // The company found by the e-mail's domain, associated with the contact.
    assert_eq!(
        requests(
            &stand_in,
            "PUT",
            "/hubspot/crm/v4/objects/contacts/501/associations/default/companies/512"
        )
        .await
        .len(),
        1
    );

    // The note: the question, the transcript, tier, score breakdown, why this owner, and what
    // happened to the HubSpot owner; associated with the contact (202) and company (190).
    let notes = bodies(&stand_in, "POST", NOTES).await;
    assert_eq!(notes.len(), 1);
    let note = &notes[0];
    assert_eq!(
        note["associations"],
        json!([association("501", 202), association("512", 190)])
    );
    let properties = note["properties"].as_object().expect("properties");
    assert_eq!(properties.len(), 2, "{properties:?}");
    let captured = lead.timeline.captured_at.expect("captured");
    assert_eq!(note["properties"]["hs_timestamp"], captured.to_string());
    let html = note["properties"]["hs_note_body"].as_str().expect("a body");
    let qualification = lead.qualification.as_ref().expect("qualified");
    let assignment = lead.assignment.as_ref().expect("routed");
    for expected in [
        "<strong>Asked:</strong> Can we get a quote for 40 seats with SSO?".to_owned(),
        "<p><strong>Transcript</strong> (3 turns)</p>".to_owned(),
        "<li><strong>visitor:</strong> Looking at the Team plan for ~40 people.</li>".to_owned(),
        "<li><strong>bot:</strong> Team includes SSO. Want a quote?</li>".to_owned(),
        "<strong>Tier:</strong> 1 (hand-raiser)".to_owned(),
        format!("<strong>Score:</strong> {}", qualification.score),
        format!(
            "<strong>Why this owner:</strong> rule \"{}\": {}",
            assignment.rule, assignment.reason
        ),
        "<strong>Owner:</strong> Bruno Keller; claim within 5 min".to_owned(),
        "<strong>HubSpot contact owner:</strong> 777, kept (owner_policy = keep_existing)"
            .to_owned(),
        format!("<p>[leadrelay {} alert]</p>", lead.id),
    ] {
        assert!(html.contains(&expected), "{expected:?} not in {html}");
    }
    for item in &qualification.breakdown {
        let line = format!("<li>{} {:+}</li>", item.signal, item.points);
        assert!(html.contains(&line), "{line} not in {html}");
    }

    // The task: due at the SLA deadline, bruno's, not started, tied to contact (204) and
    // company (192).
    let tasks = bodies(&stand_in, "POST", TASKS).await;
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(
        task["associations"],
        json!([association("501", 204), association("512", 192)])
    );
    let due = lead.timeline.sla_due_at.expect("a deadline");
    let properties = &task["properties"];
    assert_eq!(properties["hs_timestamp"], due.to_string());
    assert_eq!(properties["hs_task_status"], "NOT_STARTED");
    assert_eq!(properties["hubspot_owner_id"], "12345");
    assert_eq!(properties["hs_task_priority"], "HIGH");
    assert_eq!(properties["hs_task_type"], "TODO");
    assert_eq!(
        properties["hs_task_subject"],
        "Respond to Tom Baker: tier-1 lead (hand-raiser), claim within 5 min"
    );
    let body = properties["hs_task_body"].as_str().expect("a body");
    assert!(
        body.contains("<strong>Asked:</strong> Can we get a quote for 40 seats with SSO?"),
        "{body}"
    );

    // Delivered twice more (a retry, a second worker): nothing more is written.
    for _ in 0..2 {
        server
            .db
            .send(
                Stage::Notify,
                &Envelope::new(&lead.id, Stage::Notify, "dup"),
            )
            .await
            .expect("send");
    }
    eventually(Duration::from_secs(10), "the copies worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    assert_eq!(requests(&stand_in, "POST", NOTES).await.len(), 1);
    assert_eq!(requests(&stand_in, "POST", TASKS).await.len(), 1);
    every_request_was_authorized(&stand_in).await;
    server.stop().await;
}

/// The contact update under `policy` when Tom's contact has `owner`.
async fn owner_written(policy: &str, owner: Value) -> Option<Value> {
    let stand_in = MockServer::start().await;
    mount_existing(
        &stand_in,
        json!({"hubspot_owner_id": owner, "firstname": "Tom", "lastname": "Baker",
               "company": "Initech", "phone": "+442079460321", "jobtitle": "CTO"}),
    )
    .await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, &format!("owner_policy = \"{policy}\""))).await;
    let lead = send_lead(&server, &format!("msg_hs_{policy}")).await;
    let note = bodies(&stand_in, "POST", NOTES).await;
    assert_eq!(note.len(), 1, "{policy}");
    assert!(note[0]["properties"]["hs_note_body"]
        .as_str()
        .is_some_and(|b| b.contains(&format!("[leadrelay {} alert]", lead.id))));
    let patches = bodies(&stand_in, "PATCH", &format!("{CONTACTS}/501")).await;
    server.stop().await;
    // Every other property is known: a PATCH is only ever the owner.
    assert!(patches.len() <= 1, "{patches:?}");
    patches
        .first()
        .map(|p| p["properties"]["hubspot_owner_id"].clone())
}

#[tokio::test]
async fn fill_empty_sets_a_missing_owner_and_overwrite_replaces_one() {
    let set = Some(Value::from("12345"));
    // fill_empty: an empty owner is filled, an existing one kept.
    assert_eq!(owner_written("fill_empty", Value::Null).await, set);
    assert_eq!(owner_written("fill_empty", "".into()).await, set);
    assert_eq!(owner_written("fill_empty", "777".into()).await, None);
    // keep_existing: not even an empty owner is filled.
    assert_eq!(owner_written("keep_existing", Value::Null).await, None);
    // overwrite: replaced.
    assert_eq!(owner_written("overwrite", "777".into()).await, set);
}

#[tokio::test]
async fn a_new_contact_is_created_with_its_owner_under_every_policy() {
    let stand_in = MockServer::start().await;
    mount_absent(&stand_in, EMAIL).await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, "")).await;
    let lead = send_lead(&server, "msg_hs_new").await;
    let created = bodies(&stand_in, "POST", CONTACTS).await;
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0],
        json!({"properties": {
            "email": EMAIL, "firstname": "Tom", "lastname": "Baker",
            "company": created[0]["properties"]["company"].clone(),
            "phone": "+442079460321", "hubspot_owner_id": "12345",
        }})
    );
    assert!(created[0]["properties"]["company"].is_string());
    assert!(requests(&stand_in, "PATCH", &format!("{CONTACTS}/901"))
        .await
        .is_empty());
    let notes = bodies(&stand_in, "POST", NOTES).await;
    assert_eq!(
        notes[0]["associations"],
        json!([association("901", 202), association("512", 190)])
    );
    let html = notes[0]["properties"]["hs_note_body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        html.contains("<strong>HubSpot contact owner:</strong> owner 12345 (new contact)"),
        "{html}"
    );
    assert_eq!(
        bodies(&stand_in, "POST", TASKS).await[0]["associations"],
        json!([association("901", 204), association("512", 192)])
    );
    assert!(lead.timeline.notified_at.is_some());
    every_request_was_authorized(&stand_in).await;
    server.stop().await;
}

/// Escalates the notified lead from bruno to dana (HubSpot owner 34) and waits for the round's
/// task.
async fn escalate_to_dana(server: &Server, stand_in: &MockServer, lead_id: &str) -> Lead {
    let mut lead = stored(server, lead_id).await;
    let captured = lead.timeline.captured_at.expect("captured");
    let at = |mins| {
        captured
            .checked_add(jiff::SignedDuration::from_mins(mins))
            .expect("time")
    };
    lead.escalations.push(Escalation {
        level: 1,
        at: at(6),
        from: Owner::Rep("bruno".into()),
        to: Owner::Rep("dana".into()),
        channels: None,
        missed: at(5),
    });
    if let Some(assignment) = lead.assignment.as_mut() {
        assignment.owner = Owner::Rep("dana".into());
        assignment.owner_name = "Dana Whitfield".into();
    }
    lead.timeline.sla_due_at = Some(at(11));
    server
        .db
        .advance_lead(&lead, LeadState::Notified, &Effects::none())
        .await
        .expect("escalated");
    server
        .db
        .send(Stage::Notify, &Envelope::new(lead_id, Stage::Notify, "esc"))
        .await
        .expect("send");
    eventually(Duration::from_secs(10), "the escalation's task", || async {
        (requests(stand_in, "POST", TASKS).await.len() >= 2).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the round worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    stored(server, lead_id).await
}

#[tokio::test]
async fn an_escalation_never_rewrites_the_owner_unless_configured() {
    for (settings, owner_after) in [
        // overwrite set bruno's owner at the first alert; the escalation leaves it.
        ("owner_policy = \"overwrite\"", None),
        // Configured: leadrelay's own earlier owner (12345) moves to dana's (34).
        (
            "owner_policy = \"fill_empty\"\nowner_on_escalation = true",
            Some(Value::from("34")),
        ),
    ] {
        let stand_in = MockServer::start().await;
        mount_existing(
            &stand_in,
            json!({"hubspot_owner_id": "12345", "firstname": "Tom", "lastname": "Baker",
                   "company": "Initech", "phone": "+442079460321", "jobtitle": "CTO"}),
        )
        .await;
        mount_writes(&stand_in).await;
        let server = start(&config(&stand_in, settings)).await;
        let lead = send_lead(&server, "msg_hs_escalated").await;
        // The first round: the contact already is bruno's, nothing to change.
        assert!(requests(&stand_in, "PATCH", &format!("{CONTACTS}/501"))
            .await
            .is_empty());

        let lead = escalate_to_dana(&server, &stand_in, &lead.id).await;
        let patches = bodies(&stand_in, "PATCH", &format!("{CONTACTS}/501")).await;
        assert_eq!(
            patches
                .first()
                .map(|p| p["properties"]["hubspot_owner_id"].clone()),
            owner_after,
            "{settings}: {patches:?}"
        );
        // The escalation round has its own note and task, the task dana's and due at the new
        // deadline.
        let notes = bodies(&stand_in, "POST", NOTES).await;
        assert_eq!(notes.len(), 2, "{settings}");
        let html = notes[1]["properties"]["hs_note_body"]
            .as_str()
            .unwrap_or_default();
        assert!(
            html.contains(&format!("[leadrelay {} esc1]", lead.id)),
            "{html}"
        );
        assert!(html.contains("Escalated to you (level 1)"), "{html}");
        if owner_after.is_none() {
            assert!(
                html.contains(
                    "12345, kept: an escalation does not change it (owner_on_escalation = false)"
                ),
                "{html}"
            );
        }
        let tasks = bodies(&stand_in, "POST", TASKS).await;
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1]["properties"]["hubspot_owner_id"], "34");
        assert_eq!(
            tasks[1]["properties"]["hs_timestamp"],
            lead.timeline.sla_due_at.expect("due").to_string()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_dlq_replay_creates_no_second_note_and_errors_keep_the_address_out() {
    let stand_in = MockServer::start().await;
    mount_absent(&stand_in, EMAIL).await;
    // The task is refused (HubSpot's validation error quotes the contact's address).
    let refused = Mock::given(method("POST"))
        .and(path(TASKS))
        .respond_with(ResponseTemplate::new(400).set_body_json(error(
            "error",
            &format!("Property values were not valid: hs_task_subject for {EMAIL}"),
            "VALIDATION_ERROR",
        )))
        .mount_as_scoped(&stand_in)
        .await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, "")).await;
    let answer = server.send("website", "msg_hs_dlq", &sample(LEAD)).await;
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let letters = eventually(Duration::from_secs(10), "the dead letter", || async {
        let letters = server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("list");
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let error = letters[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("hubspot answered 400: VALIDATION_ERROR: Property values were not valid"),
        "{error}"
    );
    assert!(!error.contains(EMAIL) && !error.contains(TOKEN), "{error}");
    assert!(error.contains("<the prospect's e-mail>"), "{error}");
    // A 400 is not retried; the note was written before it.
    assert_eq!(requests(&stand_in, "POST", TASKS).await.len(), 1);
    assert_eq!(requests(&stand_in, "POST", NOTES).await.len(), 1);
    assert_eq!(stored(&server, &lead_id).await.state, LeadState::Routed);

    // Fixed, then replayed: the task is written, the note not again.
    drop(refused);
    server
        .db
        .replay(Stage::Notify, &letters[0])
        .await
        .expect("replay");
    server.wait_for_state(&lead_id, "notified").await;
    eventually(Duration::from_secs(10), "the replay worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    let tasks = requests(&stand_in, "POST", TASKS).await;
    assert_eq!(tasks.len(), 2, "the refused one and the replayed one");
    assert_eq!(requests(&stand_in, "POST", NOTES).await.len(), 1);
    // The contact was created once; the replay found it.
    assert_eq!(requests(&stand_in, "POST", CONTACTS).await.len(), 1);
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

/// Answers `first` to the first request, then `then`, recording when each arrived.
struct FirstThen {
    first: ResponseTemplate,
    then: ResponseTemplate,
    seen: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for FirstThen {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.push(Instant::now());
        if seen.len() == 1 {
            self.first.clone()
        } else {
            self.then.clone()
        }
    }
}

#[tokio::test]
async fn a_note_whose_create_timed_out_is_looked_up_by_its_marker_not_created_again() {
    let stand_in = MockServer::start().await;
    mount_absent(&stand_in, EMAIL).await;
    // The first create answers 503, but HubSpot wrote the note: its search finds it.
    let written: Arc<Mutex<Option<Value>>> = Arc::default();
    let kept = written.clone();
    Mock::given(method("POST"))
        .and(path(NOTES))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let mut kept = kept.lock().expect("not poisoned");
            if kept.is_none() {
                *kept = Some(body["properties"]["hs_note_body"].clone());
                return ResponseTemplate::new(503).set_body_json(error(
                    "error",
                    "internal error",
                    "INTERNAL_ERROR",
                ));
            }
            ResponseTemplate::new(201).set_body_json(record("7002", body["properties"].clone()))
        })
        .mount(&stand_in)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{NOTES}/search")))
        .and(header("authorization", BEARER))
        .and(body_json(json!({
            "filterGroups": [{"filters": [
                {"propertyName": "associations.contact", "operator": "EQ", "value": "901"}
            ]}],
            "properties": ["hs_note_body"],
            "sorts": [{"propertyName": "hs_createdate", "direction": "DESCENDING"}],
            "limit": 100,
        })))
        .respond_with(move |_: &Request| {
            let body = written.lock().expect("not poisoned").clone();
            ResponseTemplate::new(200).set_body_json(json!({
                "total": 2,
                "results": [
                    record("7001", json!({"hs_note_body": body})),
                    record("6000", json!({"hs_note_body": "an older note"})),
                ],
            }))
        })
        .mount(&stand_in)
        .await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, "")).await;
    let answer = server
        .send("website", "msg_hs_unknown", &sample(LEAD))
        .await;
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    // One create (not repeated within the delivery), then the search on the next attempt
    // found it; the task followed.
    assert_eq!(requests(&stand_in, "POST", NOTES).await.len(), 1);
    assert_eq!(
        requests(&stand_in, "POST", &format!("{NOTES}/search"))
            .await
            .len(),
        1
    );
    assert_eq!(requests(&stand_in, "POST", TASKS).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_owned_lead_reaches_hubspot_with_the_queues_owner_and_team() {
    for (queue, settings, owner) in [
        (
            "hubspot_owner_id = \"555\"\nhubspot_team_id = \"66\"",
            "",
            "555",
        ),
        // No owner of its own: the default owner, with the queue's team.
        (
            "hubspot_team_id = \"66\"",
            "default_owner_id = \"999\"",
            "999",
        ),
    ] {
        let stand_in = MockServer::start().await;
        let email = "sam.rivera@gmail.com";
        mount_absent(&stand_in, email).await;
        mount_writes(&stand_in).await;
        let text = config(&stand_in, settings).edit(
            "id = \"sdr\"\nname = \"SDR queue\"\n",
            &format!("id = \"sdr\"\nname = \"SDR queue\"\n{queue}\n"),
        );
        let server = start(&text).await;
        let answer = server
            .send("website", "msg_hs_queue", &sample(PARTIAL))
            .await;
        let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
        server.wait_for_state(&lead_id, "notified").await;
        let lead = stored(&server, &lead_id).await;
        assert_eq!(
            lead.assignment.as_ref().map(|a| &a.owner),
            Some(&Owner::Queue("sdr".into()))
        );
        let created = bodies(&stand_in, "POST", CONTACTS).await;
        assert_eq!(
            created,
            vec![json!({"properties": {
                "email": email, "hubspot_owner_id": owner, "hubspot_team_id": "66",
            }})],
            "{queue}"
        );
        let tasks = bodies(&stand_in, "POST", TASKS).await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["properties"]["hubspot_owner_id"], owner);
        // A free-mail address names no company: none is searched.
        assert_eq!(tasks[0]["associations"], json!([association("901", 204)]));
        assert!(requests(&stand_in, "POST", COMPANY_SEARCH).await.is_empty());
        server.stop().await;
    }
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_the_note_is_written_once() {
    let stand_in = MockServer::start().await;
    mount_absent(&stand_in, EMAIL).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    // HubSpot's rate limit refuses the create before it applies it: safe to send again.
    Mock::given(method("POST"))
        .and(path(NOTES))
        .respond_with(FirstThen {
            first: ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
                    "policyName": "SECONDLY",
                })),
            then: ResponseTemplate::new(201).set_body_json(record("7001", json!({}))),
            seen: seen.clone(),
        })
        .mount(&stand_in)
        .await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, "")).await;
    let lead = send_lead(&server, "msg_hs_429").await;
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), 2, "retried once, within the delivery");
    let gap = seen[1] - seen[0];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(requests(&stand_in, "POST", TASKS).await.len(), 1);
    assert!(lead.last_failure.is_none());
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_a_permanent_failure_tried_once() {
    let stand_in = MockServer::start().await;
    mount_read(
        &stand_in,
        EMAIL,
        ResponseTemplate::new(401).set_body_json(error(
            "error",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            "INVALID_AUTHENTICATION",
        )),
    )
    .await;
    mount_writes(&stand_in).await;
    let server = start(&config(&stand_in, "")).await;
    let answer = server.send("website", "msg_hs_401", &sample(LEAD)).await;
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let letters = eventually(Duration::from_secs(10), "the dead letter", || async {
        let letters = server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("list");
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let error = letters[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("hubspot answered 401: INVALID_AUTHENTICATION"),
        "{error}"
    );
    assert!(!error.contains(TOKEN) && !error.contains(EMAIL), "{error}");
    // Not retried, nothing written.
    let all = stand_in.received_requests().await.unwrap_or_default();
    assert_eq!(all.len(), 1, "{all:?}");
    let lead = stored(&server, &lead_id).await;
    assert!(lead
        .last_failure
        .as_ref()
        .is_some_and(|f| f.error.contains("hubspot answered 401")));
    server.stop().await;
}

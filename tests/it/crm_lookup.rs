//! The CRM as a routing source: `[enrichment.crm]` looks the prospect up in HubSpot (CRM search
//! API) or Salesforce (SOQL) within the lead's enrichment budget, and the existing owner, mapped
//! to a rep, takes the lead by the account-owner rule ("Existing customers stay with their
//! account owner"). Stand-ins check each request as the APIs document it (method, path,
//! `Authorization`, the search body or the SOQL text) and answer in their shapes. A CRM that is
//! slow, failing or names an owner who is no rep leaves routing as it was (Bruno, by the EMEA
//! pool), and `explain` says what the CRM answered.

use std::time::{Duration, Instant};

use crate::hubspot::{self, TOKEN};
use crate::support::{example_config, sample, serial, Edit, Server};
use leadrelay_shared::model::{Lead, Owner, ProviderOutcome, ProviderReport};
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::routing::explain::explain_text;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Tom Baker (tom.baker@sales.initech.co.uk) of Initech UK, tier 1, EMEA: Bruno's by the pool.
const LEAD: &str = "02-capture-emea-pricing.json";
const EMAIL: &str = "tom.baker@sales.initech.co.uk";
const BEARER: &str = "Bearer pat-na1-0f1e2d3c-SeCrEt-4b5a-6978";
const CONTACT_SEARCH: &str = "/hubspot/crm/v3/objects/contacts/search";
const COMPANY_SEARCH: &str = "/hubspot/crm/v3/objects/companies/search";
const ACCOUNT_RULE: &str = "Existing customers stay with their account owner";

// ---------------------------------------------------------------------------------------------
// HubSpot.

/// The HubSpot write-back test config (Bruno the EMEA pool's only member, HubSpot owner 12345;
/// Dana owner 34) with the CRM lookup on, within `budget_ms`.
fn hubspot_config(stand_in: &MockServer, budget_ms: u64) -> String {
    hubspot::config(stand_in, "")
        .edit_first("[enrichment]\n", "[enrichment]\nproviders = [\"crm\"]\n")
        + &format!("\n[enrichment.crm]\nsource = \"hubspot\"\nbudget_ms = {budget_ms}\n")
}

/// The contact search leadrelay sends for Tom, as HubSpot documents it.
fn contact_search() -> Value {
    json!({
        "filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "EQ", "value": EMAIL}
        ]}],
        "properties": ["email", "hubspot_owner_id"],
        "limit": 1,
    })
}

/// The company search for Tom's company domain: the oldest company with it.
fn company_search() -> Value {
    json!({
        "filterGroups": [{"filters": [
            {"propertyName": "domain", "operator": "EQ", "value": "initech.co.uk"}
        ]}],
        "properties": ["domain", "hubspot_owner_id"],
        "limit": 1,
        "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
    })
}

/// A search answer as HubSpot sends it: `total`, `results` with each record's properties.
fn found(id: &str, properties: Value) -> Value {
    let mut all = json!({
        "createdate": "2025-03-05T09:00:00.000Z",
        "hs_object_id": id,
        "lastmodifieddate": "2026-11-20T12:00:00.000Z",
    });
    if let (Some(all), Some(given)) = (all.as_object_mut(), properties.as_object()) {
        for (key, value) in given {
            all.insert(key.clone(), value.clone());
        }
    }
    json!({
        "total": 1,
        "results": [{
            "id": id,
            "properties": all,
            "createdAt": "2025-03-05T09:00:00.000Z",
            "updatedAt": "2026-11-20T12:00:00.000Z",
            "archived": false,
        }],
    })
}

fn nothing_found() -> Value {
    json!({"total": 0, "results": []})
}

/// `POST {at}` with exactly `body` and the private app's token answers `reply`, `times` times.
async fn mount_search(
    stand_in: &MockServer,
    at: &str,
    body: Value,
    reply: ResponseTemplate,
    times: u64,
) {
    Mock::given(method("POST"))
        .and(path(at))
        .and(header("authorization", BEARER))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(reply)
        .expect(times)
        .mount(stand_in)
        .await;
}

/// The HubSpot write-back's calls, answered, so the lead's alert round completes.
async fn mount_write_back(stand_in: &MockServer) {
    hubspot::mount_absent(stand_in, EMAIL).await;
    hubspot::mount_writes(stand_in).await;
}

async fn start_hubspot(stand_in: &MockServer, budget_ms: u64) -> Server {
    Server::start_with_env(
        &hubspot_config(stand_in, budget_ms),
        &[("HUBSPOT_TOKEN", TOKEN)],
    )
    .await
}

/// Sends Tom's lead and waits until it is routed; returns it as stored and the time from the
/// webhook to the routing decision being readable.
async fn send_and_route(server: &Server, event_id: &str) -> (Lead, Duration) {
    let started = Instant::now();
    let answer = server.send("website", event_id, &sample(LEAD)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let lead = crate::support::eventually(Duration::from_secs(10), "routed", || async {
        let lead = server.db.get_lead(&lead_id).await.ok()??;
        lead.assignment.is_some().then_some(lead)
    })
    .await;
    (lead, started.elapsed())
}

fn crm_report(lead: &Lead) -> ProviderReport {
    lead.enrichment
        .as_ref()
        .and_then(|e| e.providers.iter().find(|r| r.provider == "crm"))
        .cloned()
        .expect("the CRM lookup's report")
}

fn explained(lead: &Lead) -> String {
    explain_text(lead, lead.assignment.as_ref().expect("routed"))
}

/// Routing as it is without the CRM: the EMEA pool's only member.
fn assert_routed_as_without_crm(lead: &Lead) {
    let assignment = lead.assignment.as_ref().expect("routed");
    assert_eq!(
        assignment.owner,
        Owner::Rep("bruno".into()),
        "{assignment:?}"
    );
    assert_eq!(assignment.rule, "EMEA", "{assignment:?}");
    assert_eq!(
        lead.enrichment
            .as_ref()
            .and_then(|e| e.account_owner.clone()),
        None
    );
}

#[tokio::test]
async fn hubspot_a_contact_with_an_owner_routes_to_that_rep_and_the_trace_says_so() {
    let stand_in = MockServer::start().await;
    mount_write_back(&stand_in).await;
    // Tom is contact 501, owned by HubSpot owner 34: Dana. Asked once: the second lead reads
    // the cached answer. The company is not asked about: the contact answered.
    mount_search(
        &stand_in,
        CONTACT_SEARCH,
        contact_search(),
        ResponseTemplate::new(200).set_body_json(found(
            "501",
            json!({"email": EMAIL, "hubspot_owner_id": "34"}),
        )),
        1,
    )
    .await;
    mount_search(
        &stand_in,
        COMPANY_SEARCH,
        company_search(),
        ResponseTemplate::new(200).set_body_json(nothing_found()),
        0,
    )
    .await;
    let server = start_hubspot(&stand_in, 2000).await;

    let (lead, _) = send_and_route(&server, "msg_crm_contact").await;
    let assignment = lead.assignment.as_ref().expect("routed");
    assert_eq!(
        assignment.owner,
        Owner::Rep("dana".into()),
        "{assignment:?}"
    );
    assert_eq!(assignment.rule, ACCOUNT_RULE);
    let report = crm_report(&lead);
    assert_eq!(report.outcome, ProviderOutcome::Answered, "{report:?}");
    assert_eq!(
        report.detail,
        "account_owner (HubSpot contact 501 is owned by HubSpot owner 34: rep dana)"
    );
    let why = explained(&lead);
    assert!(why.contains("account_owner from crm"), "{why}");
    assert!(
        why.contains("crm answered: account_owner (HubSpot contact 501 is owned by HubSpot owner 34: rep dana)"),
        "{why}"
    );
    assert!(
        why.contains(&format!(
            "MATCH {ACCOUNT_RULE:?}: existing account owned by dana"
        )),
        "{why}"
    );

    // The same prospect again: the cached answer, no second search.
    let (again, _) = send_and_route(&server, "msg_crm_contact_again").await;
    assert_eq!(crm_report(&again).outcome, ProviderOutcome::Answered);
    assert_eq!(
        again
            .enrichment
            .as_ref()
            .and_then(|e| e.account_owner.clone())
            .as_deref(),
        Some("dana")
    );
    server.stop().await;
    stand_in.verify().await;
}

/// `write_back = false`: the token serves the lookup only; nothing is written to HubSpot.
#[tokio::test]
async fn hubspot_lookup_only_routes_by_the_owner_and_writes_nothing_back() {
    let stand_in = MockServer::start().await;
    mount_search(
        &stand_in,
        CONTACT_SEARCH,
        contact_search(),
        ResponseTemplate::new(200).set_body_json(found(
            "501",
            json!({"email": EMAIL, "hubspot_owner_id": "34"}),
        )),
        1,
    )
    .await;
    let config = hubspot::config(&stand_in, "write_back = false")
        .edit_first("[enrichment]\n", "[enrichment]\nproviders = [\"crm\"]\n")
        + "\n[enrichment.crm]\nsource = \"hubspot\"\nbudget_ms = 2000\n";
    let server = Server::start_with_env(&config, &[("HUBSPOT_TOKEN", TOKEN)]).await;
    let (lead, _) = send_and_route(&server, "msg_crm_lookup_only").await;
    assert_eq!(
        lead.assignment.as_ref().map(|a| a.owner.clone()),
        Some(Owner::Rep("dana".into()))
    );
    server.wait_for_state(&lead.id, "notified").await;
    let paths: Vec<String> = stand_in
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, vec![CONTACT_SEARCH.to_owned()], "only the lookup");
    server.stop().await;
    stand_in.verify().await;
}

#[tokio::test]
async fn hubspot_no_contact_but_a_company_with_an_owner_routes_to_the_companys_owner() {
    let stand_in = MockServer::start().await;
    mount_write_back(&stand_in).await;
    mount_search(
        &stand_in,
        CONTACT_SEARCH,
        contact_search(),
        ResponseTemplate::new(200).set_body_json(nothing_found()),
        1,
    )
    .await;
    mount_search(
        &stand_in,
        COMPANY_SEARCH,
        company_search(),
        ResponseTemplate::new(200).set_body_json(found(
            "512",
            json!({"domain": "initech.co.uk", "hubspot_owner_id": "34"}),
        )),
        1,
    )
    .await;
    let server = start_hubspot(&stand_in, 2000).await;

    let (lead, _) = send_and_route(&server, "msg_crm_company").await;
    let assignment = lead.assignment.as_ref().expect("routed");
    assert_eq!(
        (&assignment.owner, assignment.rule.as_str()),
        (&Owner::Rep("dana".into()), ACCOUNT_RULE)
    );
    assert_eq!(
        crm_report(&lead).detail,
        "account_owner (no HubSpot contact with this e-mail address; HubSpot company 512 is \
         owned by HubSpot owner 34: rep dana)"
    );
    server.stop().await;
    stand_in.verify().await;
}

#[tokio::test]
async fn hubspot_nothing_found_leaves_routing_unchanged() {
    let stand_in = MockServer::start().await;
    mount_write_back(&stand_in).await;
    for (at, body) in [
        (CONTACT_SEARCH, contact_search()),
        (COMPANY_SEARCH, company_search()),
    ] {
        mount_search(
            &stand_in,
            at,
            body,
            ResponseTemplate::new(200).set_body_json(nothing_found()),
            1,
        )
        .await;
    }
    let server = start_hubspot(&stand_in, 2000).await;

    let (lead, _) = send_and_route(&server, "msg_crm_nothing").await;
    assert_routed_as_without_crm(&lead);
    let report = crm_report(&lead);
    assert_eq!(report.outcome, ProviderOutcome::NoMatch);
    assert_eq!(
        report.detail,
        "no HubSpot contact with this e-mail address; no HubSpot company with this domain"
    );
    let why = explained(&lead);
    assert!(
        why.contains("crm no match: no HubSpot contact with this e-mail address"),
        "{why}"
    );
    server.stop().await;
    stand_in.verify().await;
}

#[tokio::test]
async fn hubspot_an_owner_who_is_no_rep_is_reported_not_guessed() {
    let stand_in = MockServer::start().await;
    mount_write_back(&stand_in).await;
    // Owner 99 left the team: no rep has that hubspot_owner_id, nor has the company's 98.
    mount_search(
        &stand_in,
        CONTACT_SEARCH,
        contact_search(),
        ResponseTemplate::new(200).set_body_json(found(
            "501",
            json!({"email": EMAIL, "hubspot_owner_id": "99"}),
        )),
        1,
    )
    .await;
    mount_search(
        &stand_in,
        COMPANY_SEARCH,
        company_search(),
        ResponseTemplate::new(200).set_body_json(found(
            "512",
            json!({"domain": "initech.co.uk", "hubspot_owner_id": "98"}),
        )),
        1,
    )
    .await;
    let server = start_hubspot(&stand_in, 2000).await;

    let (lead, _) = send_and_route(&server, "msg_crm_unmapped").await;
    assert_routed_as_without_crm(&lead);
    let report = crm_report(&lead);
    assert_eq!(report.outcome, ProviderOutcome::NoMatch);
    assert_eq!(
        report.detail,
        "HubSpot contact 501 is owned by HubSpot owner 99, which is no rep's hubspot_owner_id; \
         HubSpot company 512 is owned by HubSpot owner 98, which is no rep's hubspot_owner_id"
    );
    server.stop().await;
    stand_in.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_a_lookup_slower_than_its_budget_leaves_routing_unchanged_within_the_budget() {
    let _heavy = serial::heavy().await; // a bound on the time from webhook to routing
    const BUDGET_MS: u64 = 300;
    let stand_in = MockServer::start().await;
    mount_write_back(&stand_in).await;
    mount_search(
        &stand_in,
        CONTACT_SEARCH,
        contact_search(),
        ResponseTemplate::new(200)
            .set_body_json(found("501", json!({"hubspot_owner_id": "34"})))
            .set_delay(Duration::from_secs(5)),
        1,
    )
    .await;
    let server = start_hubspot(&stand_in, BUDGET_MS).await;

    let (lead, took) = send_and_route(&server, "msg_crm_slow").await;
    assert_routed_as_without_crm(&lead);
    let report = crm_report(&lead);
    assert_eq!(report.outcome, ProviderOutcome::TimedOut, "{report:?}");
    assert_eq!(report.detail, format!("timed out after {BUDGET_MS} ms"));
    // The lookup cost its budget (and scheduling slack), not the CRM's 5 s.
    assert!(report.elapsed_ms < BUDGET_MS + 200, "{report:?}");
    assert!(
        took < Duration::from_secs(4),
        "webhook to routing took {took:?}"
    );
    println!("slow CRM: webhook to routing in {took:?} (lookup budget {BUDGET_MS} ms)");
    let why = explained(&lead);
    assert!(
        why.contains("crm timed out: timed out after 300 ms"),
        "{why}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hubspot_errors_leave_routing_unchanged_and_say_why() {
    for (status, body, expected) in [
        (
            503,
            json!({"status": "error", "message": "Service Unavailable", "category": "INTERNAL_ERROR"}),
            "HubSpot contact lookup failed: answered 503: INTERNAL_ERROR: Service Unavailable",
        ),
        (
            401,
            json!({"status": "error", "message": "Authentication credentials not found.",
                   "correlationId": "4c9a7b0e", "category": "INVALID_AUTHENTICATION"}),
            "HubSpot contact lookup failed: answered 401: INVALID_AUTHENTICATION: \
             Authentication credentials not found.",
        ),
    ] {
        let stand_in = MockServer::start().await;
        mount_write_back(&stand_in).await;
        mount_search(
            &stand_in,
            CONTACT_SEARCH,
            contact_search(),
            ResponseTemplate::new(status).set_body_json(body),
            1,
        )
        .await;
        let server = start_hubspot(&stand_in, 2000).await;
        let (lead, _) = send_and_route(&server, &format!("msg_crm_{status}")).await;
        assert_routed_as_without_crm(&lead);
        let report = crm_report(&lead);
        assert_eq!(report.outcome, ProviderOutcome::Failed, "{report:?}");
        assert_eq!(report.detail, expected);
        assert!(!report.detail.contains(EMAIL));
        let why = explained(&lead);
        assert!(why.contains(&format!("crm failed: {expected}")), "{why}");
        server.stop().await;
        stand_in.verify().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Salesforce.

const CLIENT_ID: &str = "3MVG9leadrelayTestConsumerKey";
const CLIENT_SECRET: &str = "Cl1entS3cretNeverLogged";
const ACCESS_TOKEN: &str = "00D5e0000000001!AQcAQLookupTokenNeverLogged";
const QUERY: &str = "/services/data/v62.0/query";
const BRUNO_SF: &str = "0055e000001BrunoAA";
/// Dana is configured by her 15-character id; SOQL answers the 18-character form.
const DANA_SF_15: &str = "0055e000001Dana";
const DANA_SF_18: &str = "0055e000001DanaWAA";

fn salesforce_config(stand_in: &MockServer) -> String {
    example_config()
        .edit(
            "members = [{ rep = \"bruno\", weight = 2 }, { rep = \"fatima\", weight = 1 }]",
            "members = [{ rep = \"bruno\" }]",
        )
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!("email = \"bruno@yourco.example\"\nsalesforce_user_id = \"{BRUNO_SF}\""),
        )
        .edit(
            "email = \"dana@yourco.example\"",
            &format!("email = \"dana@yourco.example\"\nsalesforce_user_id = \"{DANA_SF_15}\""),
        )
        .edit(
            "\n[claim]\n",
            &format!(
                "\n[notify.salesforce]\nlogin_url = \"{}\"\nauth = \"client_credentials\"\n\
                 client_id_env = \"SF_CLIENT_ID\"\nclient_secret_env = \"SF_CLIENT_SECRET\"\n\
                 create_task = false\n\n[claim]\n",
                stand_in.uri()
            ),
        )
        .edit_first("[enrichment]\n", "[enrichment]\nproviders = [\"crm\"]\n")
        + "\n[enrichment.crm]\nsource = \"salesforce\"\nbudget_ms = 2000\n"
}

/// The org's token endpoint (client credentials, as documented) and the write-back's Lead
/// upsert, answered.
async fn mount_org(stand_in: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(wiremock::matchers::body_string(format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN,
            "instance_url": stand_in.uri(),
            "id": "https://login.salesforce.com/id/00D5e0000000001EAA/0055e000000ApiUsrA",
            "token_type": "Bearer",
            "issued_at": "1764150000000",
            "signature": "c2lnbmF0dXJl",
        })))
        .mount(stand_in)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "00Q5e00000LeadAAA", "success": true, "errors": [], "created": true
        })))
        .mount(stand_in)
        .await;
}

/// `GET /services/data/v62.0/query?q=<soql>` with the access token answers `records`.
async fn mount_query(stand_in: &MockServer, soql: &str, records: Value) {
    let total = records.as_array().map_or(0, Vec::len);
    Mock::given(method("GET"))
        .and(path(QUERY))
        .and(query_param("q", soql))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": total, "done": true, "records": records,
        })))
        .expect(1)
        .mount(stand_in)
        .await;
}

async fn start_salesforce(stand_in: &MockServer) -> Server {
    Server::start_with_env(
        &salesforce_config(stand_in),
        &[
            ("SF_CLIENT_ID", CLIENT_ID),
            ("SF_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await
}

#[tokio::test]
async fn salesforce_a_contacts_account_owner_takes_the_lead() {
    let stand_in = MockServer::start().await;
    mount_org(&stand_in).await;
    mount_query(
        &stand_in,
        &format!(
            "SELECT Id, OwnerId, AccountId, Account.OwnerId FROM Contact WHERE Email = '{EMAIL}' \
             ORDER BY LastModifiedDate DESC LIMIT 1"
        ),
        json!([{
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/0035e00000TomBkAAA"},
            "Id": "0035e00000TomBkAAA",
            "OwnerId": BRUNO_SF,
            "AccountId": "0015e00000InitchAAA",
            "Account": {
                "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/0015e00000InitchAAA"},
                "OwnerId": DANA_SF_18
            }
        }]),
    )
    .await;
    let server = start_salesforce(&stand_in).await;

    let (lead, _) = send_and_route(&server, "msg_sf_contact").await;
    let assignment = lead.assignment.as_ref().expect("routed");
    assert_eq!(
        (&assignment.owner, assignment.rule.as_str()),
        (&Owner::Rep("dana".into()), ACCOUNT_RULE)
    );
    assert_eq!(
        crm_report(&lead).detail,
        format!(
            "account_owner (Salesforce Contact 0035e00000TomBkAAA (Account 0015e00000InitchAAA) \
             is owned by Salesforce owner {DANA_SF_18}: rep dana)"
        )
    );
    server.stop().await;
    stand_in.verify().await;
}

#[tokio::test]
async fn salesforce_quotes_in_the_address_are_escaped_and_the_account_by_domain_answers() {
    // A valid address (RFC 5322 allows ' and = in the local part) that would end the string
    // literal and add a condition if it were pasted into the SOQL.
    let injected = "x'OR'1'='1@initech.co.uk";
    let escaped = r"'x\'OR\'1\'=\'1@initech.co.uk'";
    let stand_in = MockServer::start().await;
    mount_org(&stand_in).await;
    mount_query(
        &stand_in,
        &format!(
            "SELECT Id, OwnerId, AccountId, Account.OwnerId FROM Contact WHERE Email = {escaped} \
             ORDER BY LastModifiedDate DESC LIMIT 1"
        ),
        json!([]),
    )
    .await;
    mount_query(
        &stand_in,
        &format!(
            "SELECT Id, OwnerId FROM Lead WHERE Email = {escaped} AND IsConverted = false \
             ORDER BY LastModifiedDate DESC LIMIT 1"
        ),
        json!([]),
    )
    .await;
    // The first account only mentions the domain in its path; the second is on it.
    mount_query(
        &stand_in,
        "SELECT Id, OwnerId, Website FROM Account WHERE Website LIKE '%initech.co.uk%' \
         ORDER BY CreatedDate ASC LIMIT 5",
        json!([
            {"attributes": {"type": "Account"}, "Id": "0015e00000ResellAAA",
             "OwnerId": BRUNO_SF, "Website": "https://reseller.example/initech.co.uk"},
            {"attributes": {"type": "Account"}, "Id": "0015e00000InitchAAA",
             "OwnerId": DANA_SF_18, "Website": "https://www.initech.co.uk/"}
        ]),
    )
    .await;
    let server = start_salesforce(&stand_in).await;

    let body = String::from_utf8(sample(LEAD))
        .expect("utf-8")
        .edit(EMAIL, injected)
        .into_bytes();
    let answer = server.send("website", "msg_sf_injection", &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    let lead = crate::support::eventually(Duration::from_secs(10), "routed", || async {
        let lead = server.db.get_lead(&lead_id).await.ok()??;
        lead.assignment.is_some().then_some(lead)
    })
    .await;
    let assignment = lead.assignment.as_ref().expect("routed");
    assert_eq!(
        (&assignment.owner, assignment.rule.as_str()),
        (&Owner::Rep("dana".into()), ACCOUNT_RULE)
    );
    assert_eq!(
        crm_report(&lead).detail,
        format!(
            "account_owner (no Salesforce contact with this e-mail address; no Salesforce \
             unconverted Lead with this e-mail address; Salesforce Account 0015e00000InitchAAA \
             is owned by Salesforce owner {DANA_SF_18}: rep dana)"
        )
    );
    server.stop().await;
    stand_in.verify().await;
}

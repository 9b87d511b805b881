//! Platform payloads through a source's mapping: what a prospect states in a form (country,
//! company size, industry, any answer) feeds routing and qualification in the documented order
//! of trust, `explain` says where each routing input came from, `leadrelay sources test` tries a
//! payload without storing it, and hostile payloads change nothing.

use jiff::Timestamp;
use leadrelay_shared::model::{Lead, Owner};
use leadrelay_shared::routing::explain::explain_text as explain;
use leadrelay_shared::stages::Intake;
use serde_json::json;

use crate::support::{example_config, parse_config, signed_header_map, ManualPipeline};

/// A Monday morning in London: every EMEA rep is on shift.
const MONDAY_MORNING_LONDON: &str = "2026-11-23T10:00:00Z";

/// The example configuration with a Typeform source, and `extra` appended.
fn config_with(extra: &str) -> String {
    format!(
        "{}\n[[sources]]\nid = \"typeform\"\npreset = \"typeform\"\n\
         secrets = [\"typeform-secret-0123456789\"]\n{extra}\n",
        example_config()
    )
}

/// A Typeform response from `email`, with these answers by ref.
fn response(email: &str, answers: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut list = vec![
        json!({"type": "email", "email": email, "field": {"id": "e1", "ref": "email", "type": "email"}}),
    ];
    for (reference, answer) in answers {
        list.push(json!({"type": "choice", "choice": {"label": answer}, "field": {"id": reference, "ref": reference, "type": "multiple_choice"}}));
    }
    serde_json::to_vec(&json!({
        "event_id": format!("01J{email}"),
        "event_type": "form_response",
        "form_response": {"form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15",
            "submitted_at": "2026-11-23T09:59:00Z", "answers": list}
    }))
    .expect("JSON")
}

async fn route(manual: &ManualPipeline, body: &[u8]) -> Lead {
    let headers = signed_header_map(&manual.pipeline.config, "typeform", "unused", body);
    let accepted = manual
        .pipeline
        .ingest("typeform", &headers, body)
        .await
        .expect("accepted");
    manual.drain().await;
    manual.lead(&accepted.lead_id).await
}

fn at() -> Timestamp {
    MONDAY_MORNING_LONDON.parse().expect("timestamp")
}

fn owner(lead: &Lead) -> String {
    match &lead.assignment.as_ref().expect("routed").owner {
        Owner::Rep(rep) => rep.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn a_uk_prospect_with_only_a_form_country_routes_to_emea() {
    let manual = ManualPipeline::new(parse_config(&config_with("")), at());
    // An unknown company domain: no table row, no provider; only the form says where it is.
    let lead = route(
        &manual,
        &response(
            "ada@lovelace-analytics.example",
            &[("country", json!("United Kingdom"))],
        ),
    )
    .await;
    let enrichment = lead.enrichment.as_ref().expect("enriched");
    assert_eq!(enrichment.country.as_deref(), Some("GB"));
    assert_eq!(
        enrichment.origins.get("country").map(String::as_str),
        Some("form field \"country\"")
    );
    assert!(
        ["bruno", "fatima"].contains(&owner(&lead).as_str()),
        "an EMEA account executive, not {}",
        owner(&lead)
    );
    let trace = explain(&lead, lead.assignment.as_ref().expect("routed"));
    assert!(
        trace.contains("country from form field \"country\""),
        "{trace}"
    );

    // Without the form's answer the same prospect does not reach EMEA.
    let unknown = route(&manual, &response("grace@hopper-labs.example", &[])).await;
    assert_ne!(
        unknown.enrichment.as_ref().and_then(|e| e.country.clone()),
        Some("GB".into())
    );
    assert!(!["bruno", "fatima"].contains(&owner(&unknown).as_str()));
}

#[tokio::test]
async fn the_crm_export_wins_over_the_form_unless_configured_otherwise() {
    // globex-logistics.com is in the example table: a US company of 5,200.
    let body = response(
        "peter@globex-logistics.com",
        &[
            ("country", json!("Deutschland")),
            ("company_size", json!("1,000–5,000")),
        ],
    );
    let table_first = ManualPipeline::new(parse_config(&config_with("")), at());
    let lead = route(&table_first, &body).await;
    let e = lead.enrichment.as_ref().expect("enriched");
    assert_eq!(e.country.as_deref(), Some("US"), "the CRM export wins");
    assert_eq!(e.employees, Some(5200));
    assert_eq!(
        e.origins.get("country").map(String::as_str),
        Some("domain_table")
    );

    let form_first = ManualPipeline::new(
        parse_config(&config_with("").replacen(
            "\n[enrichment]\n",
            "\n[enrichment]\nform_fields.trust = \"first\"\n",
            1,
        )),
        at(),
    );
    let lead = route(&form_first, &body).await;
    let e = lead.enrichment.as_ref().expect("enriched");
    assert_eq!(
        e.country.as_deref(),
        Some("DE"),
        "the prospect's answer wins"
    );
    assert_eq!(e.employees, Some(1000), "the band's lower bound");
    assert_eq!(
        e.origins.get("employees").map(String::as_str),
        Some("form field \"company_size\"")
    );
}

#[tokio::test]
async fn rules_can_test_any_form_field_by_name() {
    let config = config_with("").replacen(
        "\n[[rules]]\n",
        "\n[[rules]]\nname = \"Partners\"\nwhen.form_fields = { \"Partner program\" = [\"yes\"] }\nassign.rep = \"chen\"\n\n[[rules]]\n",
        1,
    );
    let manual = ManualPipeline::new(parse_config(&config), at());
    let partner = route(
        &manual,
        &response(
            "ada@lovelace-analytics.example",
            &[("partner_program", json!("Yes"))],
        ),
    )
    .await;
    assert_eq!(owner(&partner), "chen");
    let trace = explain(&partner, partner.assignment.as_ref().expect("routed"));
    assert!(
        trace.contains("form field \"Partner program\" yes in yes"),
        "{trace}"
    );
    let other = route(
        &manual,
        &response(
            "grace@hopper-labs.example",
            &[("partner_program", json!("No"))],
        ),
    )
    .await;
    assert_ne!(owner(&other), "chen");
}

#[tokio::test]
async fn an_event_the_mapping_ignores_stores_nothing() {
    let manual = ManualPipeline::new(parse_config(&config_with("")), at());
    let mut body: serde_json::Value =
        serde_json::from_slice(&response("ada@lovelace-analytics.example", &[])).expect("JSON");
    body["event_type"] = json!("form_response_partial");
    let body = serde_json::to_vec(&body).expect("JSON");
    let headers = signed_header_map(&manual.pipeline.config, "typeform", "unused", &body);
    let url = "https://leads.example.com/webhooks/typeform";
    let delivery = leadrelay_shared::signature::Delivery::post(url, &headers, &body);
    let intake = manual
        .pipeline
        .receive("typeform", &delivery)
        .await
        .expect("answered");
    assert_eq!(
        intake,
        Intake::Ignored {
            event: "form_response_partial".into()
        }
    );
    assert_eq!(manual.db.counts().await.expect("counts").leads, 0);
}

#[tokio::test]
async fn sources_test_verifies_maps_and_routes_a_payload_storing_nothing() {
    let config = parse_config(&config_with(""));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("response.json");
    let body = response(
        "ada@lovelace-analytics.example",
        &[("country", json!("United Kingdom"))],
    );
    std::fs::write(&file, &body).expect("write");
    let headers: Vec<String> = signed_header_map(&config, "typeform", "unused", &body)
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().expect("ascii")))
        .collect();
    let run = |headers: Vec<String>| {
        let config = &config;
        let file = file.clone();
        async move {
            let trial = leadrelay::sources::Trial {
                source: "typeform",
                file: &file,
                headers: &headers,
                url: None,
                at: at(),
            };
            let mut out = Vec::new();
            let result = leadrelay::sources::test_payload(config, &trial, &mut out).await;
            (result, String::from_utf8(out).expect("UTF-8"))
        }
    };
    let (result, out) = run(headers.clone()).await;
    result.expect("the payload passes");
    assert!(out.contains("signature: verified"), "{out}");
    assert!(
        out.contains("\"captured_email\": \"ada@lovelace-analytics.example\""),
        "{out}"
    );
    assert!(out.contains("country from form field \"country\""), "{out}");
    assert!(out.contains("Owner: "), "{out}");

    let forged: Vec<String> = headers
        .iter()
        .map(|h| h.replace("sha256=", "sha256=AAAA"))
        .collect();
    let (result, _) = run(forged).await;
    let error = result.expect_err("a forged signature").to_string();
    assert!(error.contains("would get 401"), "{error}");
}

#[tokio::test]
async fn hostile_payloads_through_a_mapping_are_refused_naming_the_field_and_store_nothing() {
    let manual = ManualPipeline::new(parse_config(&config_with("")), at());
    let post = |body: Vec<u8>| {
        let manual = &manual;
        async move {
            let headers = signed_header_map(&manual.pipeline.config, "typeform", "unused", &body);
            manual.pipeline.ingest("typeform", &headers, &body).await
        }
    };
    // An answer nested far deeper than a lead may be stored: kept as a form field it would be
    // unreadable, so it is refused by name.
    let mut deep = json!("bottom");
    for _ in 0..60 {
        deep = json!({ "x": deep });
    }
    let nested = response("ada@lovelace-analytics.example", &[("notes", json!("ok"))]);
    let mut nested: serde_json::Value = serde_json::from_slice(&nested).expect("JSON");
    nested["form_response"]["answers"][1]["choice"]["label"] = deep;
    let error = post(serde_json::to_vec(&nested).expect("JSON"))
        .await
        .expect_err("too deep");
    assert!(error.to_string().contains("nested deeper than"), "{error}");

    // Past serde_json's own limit the body is not JSON it will read: a 400, not a panic.
    let abyss = format!(
        "{{\"event_type\":\"form_response\",\"form_response\":{}{}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let error = post(abyss.into_bytes())
        .await
        .expect_err("too deep for serde");
    assert!(error.to_string().contains("not valid JSON"), "{error}");

    // More answers than one list may hold.
    let many: Vec<(String, serde_json::Value)> =
        (0..300).map(|n| (format!("q{n}"), json!("a"))).collect();
    let refs: Vec<(&str, serde_json::Value)> =
        many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let error = post(response("ada@lovelace-analytics.example", &refs))
        .await
        .expect_err("too many");
    assert!(error.to_string().contains("more than"), "{error}");

    // A look-alike event name is not the lead event.
    let mut lookalike: serde_json::Value =
        serde_json::from_slice(&response("ada@lovelace-analytics.example", &[])).expect("JSON");
    lookalike["event_type"] = json!("form_respоnse"); // Cyrillic "о"
    let error = post(serde_json::to_vec(&lookalike).expect("JSON"))
        .await
        .expect_err("ignored");
    assert!(
        matches!(error, leadrelay_shared::stages::IngestError::Ignored(_)),
        "{error}"
    );

    assert_eq!(manual.db.counts().await.expect("counts").leads, 0);
}

#[tokio::test]
async fn a_platform_probing_the_webhook_url_with_head_gets_an_answer() {
    let server = crate::support::Server::start_with(&config_with("")).await;
    let head = |source: &str| {
        server
            .http
            .head(format!("{}/webhooks/{source}", server.base))
            .send()
    };
    assert_eq!(head("typeform").await.expect("HEAD").status().as_u16(), 200);
    assert_eq!(head("nobody").await.expect("HEAD").status().as_u16(), 404);
    assert_eq!(server.counts().await.leads, 0);
    server.stop().await;
}

#[tokio::test]
async fn on_aws_a_token_source_allows_only_its_listed_addresses_as_api_gateway_saw_them() {
    use lambda_http::tower::ServiceExt as _;
    use leadrelay_web::{intake_router, Api, Peer};

    const TOKEN: &str = "landbot-hook-token-0123456789";
    let config = format!(
        "{}\n[[sources]]\nid = \"hooks\"\nscheme = \"token\"\nsecrets = [\"{TOKEN}\"]\n\
         [sources.signature]\nheader = \"X-Hook-Token\"\nallow_ips = [\"203.0.113.0/24\"]\n",
        example_config()
    );
    let manual = ManualPipeline::new(parse_config(&config), at());
    let fixture =
        std::fs::read_to_string(crate::support::root().join("events/aws/apigw-http-webhook.json"))
            .expect("fixture");
    let post = |source_ip: &str, email: &str| {
        let mut event: serde_json::Value = serde_json::from_str(&fixture).expect("JSON");
        event["rawPath"] = json!("/webhooks/hooks");
        event["pathParameters"]["source"] = json!("hooks");
        event["requestContext"]["http"]["path"] = json!("/webhooks/hooks");
        event["requestContext"]["http"]["sourceIp"] = json!(source_ip);
        // A client-set forwarding header is not the address API Gateway saw.
        event["headers"] = json!({
            "content-type": "application/json",
            "x-hook-token": TOKEN,
            "x-forwarded-for": "203.0.113.50",
        });
        event["body"] = json!(format!(
            r#"{{"event":"lead_capture","timestamp":"2026-11-23T09:59:00Z","captured_email":"{email}"}}"#
        ));
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("API Gateway event");
        let app = intake_router(Api::for_intake(
            manual.pipeline.clone(),
            std::sync::Arc::new(true.into()),
        ))
        .map_request(Peer::from_api_gateway);
        async move {
            app.oneshot(request)
                .await
                .expect("infallible")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post("203.0.113.9", "ada@lovelace-analytics.example").await,
        202
    );
    assert_eq!(post("198.51.100.1", "grace@hopper-labs.example").await, 401);
    assert_eq!(manual.db.counts().await.expect("counts").leads, 1);
}

#[tokio::test]
async fn the_embedded_server_checks_allow_ips_against_the_connections_address() {
    const TOKEN: &str = "crisp-website-key-0123456789";
    let config = |allowed: &str| {
        format!(
            "{}\n[[sources]]\nid = \"hooks\"\nscheme = \"token\"\nsecrets = [\"{TOKEN}\"]\n\
             [sources.signature]\nquery = \"key\"\nallow_ips = [\"{allowed}\"]\n",
            example_config()
        )
    };
    let body = br#"{"event":"lead_capture","timestamp":"2026-11-23T09:59:00Z","captured_email":"ada@lovelace-analytics.example"}"#;
    for (allowed, status) in [("127.0.0.0/8", 202), ("10.0.0.0/8", 401)] {
        let server = crate::support::Server::start_with(&config(allowed)).await;
        let answer = server
            .http
            .post(format!("{}/webhooks/hooks?key={TOKEN}", server.base))
            .header("content-type", "application/json")
            .header("x-forwarded-for", "10.1.2.3")
            .body(&body[..])
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status().as_u16(), status, "allow_ips = {allowed}");
        server.stop().await;
    }
}

/// Every shipped preset's mapping, compiled as a source naming it would get it.
fn preset_mappings() -> Vec<(&'static str, leadrelay_shared::mapping::Mapping)> {
    use leadrelay_shared::config::Preset;
    use leadrelay_shared::mapping::MappingConfig;
    leadrelay_shared::presets::names()
        .filter_map(|name| {
            let preset = Preset::load(name).expect("preset parses")?;
            let table = preset.mapping?;
            let config: MappingConfig = table.try_into().expect("preset mapping deserializes");
            Some((name, config.compile(name).expect("preset mapping compiles")))
        })
        .collect()
}

/// The platforms' documented payloads: the property test mutates these, so its inputs reach
/// as deep into a mapping's paths as real payloads do.
fn platform_payloads() -> Vec<serde_json::Value> {
    let dir = crate::support::root().join("tests/it/fixtures/platforms");
    let mut payloads: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .expect("platform fixtures")
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("fixture"))
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    payloads.sort_by_key(|v| v.to_string());
    payloads
}

fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        // Look-alike and control characters, empty strings, HTML.
        "[a-zA-Z0-9@._<>&;/ \u{0430}\u{0435}\u{200b}\u{0}-\u{1f}]{0,24}"
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_.\\[\\]=]{0,10}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the subtree `steps` leads to (each step picks a member or an item) with `with`.
fn graft(value: &mut serde_json::Value, steps: &[usize], with: serde_json::Value) {
    let child = match (steps.split_first(), &mut *value) {
        (Some((step, rest)), serde_json::Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned();
            key.and_then(|k| map.get_mut(&k)).map(|child| (child, rest))
        }
        (Some((step, rest)), serde_json::Value::Array(items)) if !items.is_empty() => {
            let len = items.len();
            items.get_mut(step % len).map(|child| (child, rest))
        }
        _ => None,
    };
    match child {
        Some((child, rest)) => graft(child, rest, with),
        None => *value = with,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// No JSON makes a shipped preset's mapping panic: arbitrary documents, and each platform's
    /// documented payload with any part of it replaced by arbitrary JSON.
    #[test]
    fn no_json_makes_a_preset_mapping_panic(
        seed in 0usize..64,
        steps in proptest::collection::vec(0usize..16, 0..8),
        with in any_json(),
    ) {
        let payloads = platform_payloads();
        let mut mutated = payloads[seed % payloads.len()].clone();
        graft(&mut mutated, &steps, with.clone());
        for (_name, mapping) in preset_mappings() {
            let _ = mapping.apply_value(&with);
            let _ = mapping.apply_value(&mutated);
            let _ = mapping.apply(mutated.to_string().as_bytes());
            // A booking's second reading, as a lead only (ingest's, when it finds no lead).
            let _ = mapping.apply_lead(mutated.to_string().as_bytes());
        }
    }
}

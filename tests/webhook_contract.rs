//! Every answer of `POST /webhooks/{source}`, over HTTP against the embedded mode, each with the
//! store checked unchanged where the contract says nothing may change.

use jiff::Timestamp;
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::signature::{sign_standard, SigningKey};
use leadrelay_tests::{example_config, sample, Server};

const LEAD: &str = "02-capture-emea-pricing.json";

#[tokio::test]
async fn a_signed_capture_is_accepted_and_flows_to_a_notified_lead() {
    let server = Server::start().await;
    let answer = server.send("website", "msg_accept_1", &sample(LEAD)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "accepted");
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();

    let lead = server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(lead["owner"]["id"], "bruno");
    assert_eq!(lead["tier"], 1);
    assert_eq!(lead["sla_minutes"], 5);
    for step in [
        "captured_at",
        "enriched_at",
        "routed_at",
        "notified_at",
        "sla_due_at",
    ] {
        let at: Timestamp = lead["timeline"][step]
            .as_str()
            .unwrap_or_else(|| panic!("{step} missing in {lead}"))
            .parse()
            .expect("RFC 3339");
        assert!(at > Timestamp::UNIX_EPOCH);
    }
    // No prospect data over the unauthenticated status endpoint.
    assert!(!lead.to_string().contains("tom.baker"));
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_same_event_id_again_is_a_duplicate_with_the_same_lead() {
    let server = Server::start().await;
    let first = server.send("website", "msg_dup_1", &sample(LEAD)).await;
    assert_eq!(first.status, 202);
    let lead_id = first.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    let before = server.counts().await;

    let again = server.send("website", "msg_dup_1", &sample(LEAD)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["lead_id"], lead_id.as_str());
    assert_eq!(server.counts().await, before, "a duplicate writes nothing");
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_401_without_saying_why_and_change_nothing() {
    let server = Server::start().await;
    let body = sample(LEAD);
    let now = Timestamp::now().as_second();
    let key = SigningKey::standard("whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE=")
        .expect("demo key");
    let wrong = SigningKey::standard("whsec_c29tZWJvZHktZWxzZS1lbnRpcmVseQ==").expect("other key");
    let headers = |id: &str, ts: i64, sig: String| {
        vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), ts.to_string()),
            ("webhook-signature".to_owned(), sig),
        ]
    };
    let good = sign_standard(&key, "msg_401", now, &body);
    let cases = vec![
        ("missing", vec![]),
        (
            "forged",
            headers("msg_401", now, sign_standard(&wrong, "msg_401", now, &body)),
        ),
        (
            "stale",
            headers(
                "msg_401",
                now - 600,
                sign_standard(&key, "msg_401", now - 600, &body),
            ),
        ),
        (
            "future",
            headers(
                "msg_401",
                now + 600,
                sign_standard(&key, "msg_401", now + 600, &body),
            ),
        ),
        ("empty v1,", headers("msg_401", now, "v1,".to_owned())),
        (
            "truncated",
            headers("msg_401", now, good[..good.len() - 10].to_owned()),
        ),
        ("other id", headers("msg_other", now, good.clone())),
    ];
    let before = server.counts().await;
    for (case, headers) in cases {
        let answer = server.post("website", &headers, &body).await;
        assert_eq!(answer.status, 401, "{case}: {:?}", answer.body);
        assert_eq!(answer.body["error"], "invalid signature", "{case}");
    }
    // The body signed by the real key is accepted, so the refusals above were the signature's.
    assert_eq!(
        server
            .post("website", &headers("msg_401", now, good), &body)
            .await
            .status,
        202
    );
    let after = server.counts().await;
    assert_eq!(after.leads, before.leads + 1);
    server.stop().await;
}

#[tokio::test]
async fn a_body_hmac_source_verifies_over_the_raw_bytes() {
    let server = Server::start().await;
    let body = sample(LEAD);
    let answer = server.send("forms", "req-1", &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    // Re-serialised JSON has different bytes: the original signature no longer matches.
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).expect("json"))
            .expect("json");
    let headers = server.signed("forms", "req-2", &body);
    assert_eq!(
        server.post("forms", &headers, &reserialised).await.status,
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_json_and_failed_gates_get_400_naming_the_problem() {
    let server = Server::start().await;
    let before = server.counts().await;
    let cases: Vec<(&str, &[u8], Option<&str>)> = vec![
        ("not json", b"{\"event\": ", None),
        ("non-UTF-8 body", &[0xff, 0xfe, 0x7b, 0x80], None),
        ("wrong type", br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":42}"#, Some("captured_email")),
        ("unknown event", br#"{"event":"signup","timestamp":"2026-11-23T10:00:00Z"}"#, Some("event")),
        ("missing email", br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z"}"#, Some("captured_email")),
        ("missing timestamp", br#"{"event":"lead_capture","captured_email":"a@acme-robotics.com"}"#, Some("timestamp")),
        ("bad email", br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"nobody"}"#, Some("captured_email")),
        ("junk address", br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"test@test.com"}"#, Some("captured_email")),
        ("disposable", br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"x@mailinator.com"}"#, Some("captured_email")),
    ];
    for (n, (case, body, field)) in cases.into_iter().enumerate() {
        let answer = server.send("website", &format!("msg_400_{n}"), body).await;
        assert_eq!(answer.status, 400, "{case}: {:?}", answer.body);
        assert!(
            answer.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{case}"
        );
        assert_eq!(
            answer.body["field"].as_str(),
            field,
            "{case}: {:?}",
            answer.body
        );
    }
    assert_eq!(
        server.counts().await,
        before,
        "refused events write nothing"
    );

    // A reserved domain is flagged, not refused, by the example configuration.
    let flagged = server
        .send("website", "msg_flag", &sample("05-contract-sample.json"))
        .await;
    assert_eq!(flagged.status, 202);
    let lead = server
        .wait_for_state(flagged.body["lead_id"].as_str().expect("id"), "notified")
        .await;
    assert_eq!(lead["flags"][0], "reserved_domain");
    server.stop().await;
}

#[tokio::test]
async fn refused_gates_name_the_field_and_store_nothing_and_review_leads_reach_the_review_queue() {
    // Role addresses, competitors and missing names refused in this variant; our own domain
    // is refused as shipped.
    let text = example_config()
        .replace("role_addresses = \"review\"", "role_addresses = \"refuse\"")
        .replace(
            "competitor_domains = \"review\"",
            "competitor_domains = \"refuse\"",
        )
        .replace("missing_fields = \"flag\"", "missing_fields = \"refuse\"");
    let server = Server::start_with(&text).await;
    let before = server.counts().await;
    let capture = |email: &str, name: &str| {
        format!(
            r#"{{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"{email}"{name}}}"#
        )
    };
    let named = r#","name":"Jo Smith""#;
    for (n, (case, body, field, says)) in [
        (
            "role address",
            capture("Info@acme-robotics.com", named),
            "captured_email",
            "info@",
        ),
        (
            "competitor",
            capture("jo@eu.rivalrouter.example", named),
            "captured_email",
            "rivalrouter.example",
        ),
        (
            "own domain",
            capture("jo@yourco.example", named),
            "captured_email",
            "yourco.example",
        ),
        (
            "missing name",
            capture("jo@acme-robotics.com", ""),
            "name",
            "missing required field",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = server
            .send("website", &format!("msg_gate_{n}"), body.as_bytes())
            .await;
        assert_eq!(answer.status, 400, "{case}: {:?}", answer.body);
        assert_eq!(answer.body["field"], field, "{case}: {:?}", answer.body);
        assert!(
            answer.body["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{case}: {:?}",
            answer.body
        );
    }
    assert_eq!(
        server.counts().await,
        before,
        "refused events write nothing"
    );
    server.stop().await;

    // As shipped, a role address is accepted and owned by the review queue, and the alert
    // says which gate sent it there.
    let server = Server::start().await;
    let body = capture("info@acme-robotics.com", r#","name":"Acme front desk""#);
    let answer = server.send("website", "msg_review", body.as_bytes()).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    let lead = server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(lead["owner"]["kind"], "queue", "{lead}");
    assert_eq!(lead["owner"]["id"], "review", "{lead}");
    assert_eq!(lead["rule"], "validation review", "{lead}");
    assert_eq!(lead["flags"][0], "role_address", "{lead}");
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    let alerts = server.terminal.text();
    assert!(
        alerts.contains("validation gate set to review: role_address"),
        "{alerts}"
    );
    let stored = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.flags[0].action,
        leadrelay_shared::model::GateAction::Review
    );
    server.stop().await;
}

#[tokio::test]
async fn a_partial_capture_is_kept_and_flagged_incomplete() {
    let server = Server::start().await;
    let answer = server
        .send(
            "website",
            "msg_partial",
            &sample("04-partial-free-mail.json"),
        )
        .await;
    assert_eq!(answer.status, 202);
    let lead = server
        .wait_for_state(answer.body["lead_id"].as_str().expect("id"), "notified")
        .await;
    assert_eq!(lead["incomplete"], true);
    assert_eq!(lead["owner"]["id"], "sdr");
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_an_unknown_source_404() {
    let server = Server::start().await;
    let before = server.counts().await;
    let mut big = br#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"a@acme-robotics.com","trigger_query":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 256 * 1024));
    big.extend(br#""}"#);
    let answer = server.send("website", "msg_big", &big).await;
    assert_eq!(answer.status, 413);

    // Without a Content-Length (chunked), the limit still holds.
    let headers = server.signed("website", "msg_big_chunked", &big);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let mut request = server
        .http
        .post(format!("{}/webhooks/website", server.base))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.expect("sent").status().as_u16(), 413);

    let unknown = server.send("website", "msg_404", &sample(LEAD)).await;
    assert_eq!(unknown.status, 202);
    let answer = server
        .post(
            "nobody",
            &server.signed("website", "msg_404b", &sample(LEAD)),
            &sample(LEAD),
        )
        .await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["error"], "unknown source");
    assert_eq!(server.counts().await.leads, before.leads + 1);
    server.stop().await;
}

#[tokio::test]
async fn lead_status_and_health_answer() {
    let server = Server::start().await;
    assert_eq!(server.lead("no-such-lead").await.status, 404);
    let health = server
        .http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    server.stop().await;
}

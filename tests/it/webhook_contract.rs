//! Every answer of `POST /webhooks/{source}`, over HTTP against the embedded mode, each with the
//! store checked unchanged where the contract says nothing may change.

use crate::support::{example_config, sample, signed_webhook, Edit, EmbeddedApp, Server};
use jiff::Timestamp;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore, Queue};
use leadrelay_shared::signature::{sign_standard, SigningKey};
use proptest::prelude::*;

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
    // The lead is notified a moment before its worker deletes the notify message: wait for
    // the queues to settle so that the comparison below sees only the duplicate's writes.
    let before = crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the notify message deleted",
        || async {
            let counts = server.counts().await;
            (counts.messages == 0).then_some(counts)
        },
    )
    .await;

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
        .edit("role_addresses = \"review\"", "role_addresses = \"refuse\"")
        .edit(
            "competitor_domains = \"review\"",
            "competitor_domains = \"refuse\"",
        )
        .edit("missing_fields = \"flag\"", "missing_fields = \"refuse\"");
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

/// Past `[pipeline] max_backlog` waiting messages, ingest answers 429 with `Retry-After` before
/// reading the body and stores nothing; once the backlog is measured under the limit again, the
/// same webhook is accepted. The stages are not started, so the backlog stays where it is put.
#[tokio::test]
async fn past_the_backlog_limit_ingest_sheds_load_with_429_and_retry_after() {
    use leadrelay_shared::model::{Envelope, Stage};
    use leadrelay_shared::ports::Queue;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let config = example_config().edit("batch_size = 10", "batch_size = 10\nmax_backlog = 3");
    let app = EmbeddedApp::open(crate::support::parse_config(&config));
    let embedded = &app.embedded;
    let db = embedded.db.clone();
    for n in 0..4 {
        let envelope = Envelope::new(&format!("waiting-{n}"), Stage::Enrich, "trace");
        db.send(Stage::Enrich, &envelope).await.expect("queued");
    }
    db.sample_backlog().await.expect("sampled");
    assert_eq!(db.backlog().map(|b| b.waiting), Some(4));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = leadrelay_web::router(leadrelay_web::Api::new(
        embedded.pipeline.clone(),
        Arc::new(AtomicBool::new(true)),
    ));
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    // Signed once: the sender's retry is the same request.
    let request = signed_webhook(
        &crate::support::http_client(),
        &base,
        &embedded.pipeline.config,
        "website",
        "msg_shed_1",
        &sample(LEAD),
    );
    let post = || request.try_clone().expect("a buffered body").send();

    let shed = post().await.expect("answered");
    assert_eq!(shed.status().as_u16(), 429);
    let retry_after: u64 = shed.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let error: serde_json::Value = shed.json().await.expect("JSON error");
    assert_eq!(error["error"], "overloaded, retry later");
    assert_eq!(
        db.counts().await.expect("counts").leads,
        0,
        "nothing stored"
    );

    // The backlog drains; the next sample lets the same webhook in.
    let waiting = db.receive(Stage::Enrich, 10).await.expect("received");
    let receipts: Vec<String> = waiting.iter().map(|m| m.receipt.clone()).collect();
    db.delete_many(Stage::Enrich, &receipts)
        .await
        .expect("deleted");
    db.sample_backlog().await.expect("sampled");
    assert_eq!(db.backlog().map(|b| b.waiting), Some(0));
    let accepted = post().await.expect("answered");
    assert_eq!(accepted.status().as_u16(), 202);
    assert_eq!(db.counts().await.expect("counts").leads, 1);
    serving.abort();
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

/// A capture with `extra` spliced in as further top-level fields (raw JSON).
fn capture_with(extra: &str) -> Vec<u8> {
    format!(
        r#"{{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"jo@acme-robotics.com","name":"Jo Smith",{extra}}}"#
    )
    .into_bytes()
}

/// `depth` arrays around a number.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn deeply_nested_or_oversized_free_form_fields_get_400_naming_the_field_and_store_nothing() {
    let server = Server::start().await;
    let before = server.counts().await;
    // 125 levels inside the field parse (serde_json stops at 128), but the stored lead wraps
    // them deeper still: accepted, such a lead could never be read back.
    let cases = [
        (
            "form_fields",
            format!(r#""form_fields":{{"a":{}}}"#, nested(125)),
        ),
        ("metadata", format!(r#""metadata":{{"a":{}}}"#, nested(125))),
        (
            "form_fields",
            format!(r#""form_fields":{{"a":{}}}"#, nested(16)),
        ),
        (
            "metadata",
            format!(r#""metadata":{{"utm":{{"a":{}}}}}"#, nested(20)),
        ),
        (
            "form_fields",
            format!(r#""form_fields":{{"a":[{}]}}"#, vec!["0"; 300].join(",")),
        ),
        (
            "transcript",
            format!(
                r#""transcript":[{}]"#,
                vec![r#"{"role":"bot","text":"hi"}"#; 501].join(",")
            ),
        ),
    ];
    for (n, (field, extra)) in cases.iter().enumerate() {
        let answer = server
            .send("website", &format!("msg_deep_{n}"), &capture_with(extra))
            .await;
        assert_eq!(answer.status, 400, "{field}: {:?}", answer.body);
        assert_eq!(answer.body["field"], *field, "{:?}", answer.body);
        assert!(
            answer.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(
        server.counts().await,
        before,
        "refused events write nothing"
    );

    // Within the bounds, nested form fields are kept and the lead reads back and is alerted.
    let within = format!(
        r#""form_fields":{{"a":{}}},"metadata":{{"utm":{{"s":"x"}}}}"#,
        nested(15)
    );
    let answer = server
        .send("website", "msg_deep_ok", &capture_with(&within))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    let stored = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("reads")
        .expect("stored");
    assert!(stored.capture.form_fields.contains_key("a"));
    server.stop().await;
}

/// Sends `request` over a raw TCP connection, half-closes it, and returns the status code of
/// the answer (the connection is read until the server closes it).
async fn raw_exchange(server: &Server, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    // The client has nothing more to send: the server sees the body end early.
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn a_body_that_cannot_be_read_is_400_and_only_a_body_over_the_limit_is_413() {
    let server = Server::start().await;
    let before = server.counts().await;
    let body = sample(LEAD);
    let head = |framing: &str| {
        format!(
            "POST /webhooks/website HTTP/1.1\r\nHost: leadrelay\r\nContent-Type: application/json\r\n{framing}\r\n"
        )
        .into_bytes()
    };

    // Fewer bytes than the Content-Length promises, then the client half-closes.
    let mut short = head(&format!("Content-Length: {}\r\n", body.len() + 100));
    short.extend_from_slice(&body);
    let (status, text) = raw_exchange(&server, &short).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("could not read the request body"), "{text}");

    // A chunk size that is not hexadecimal.
    let mut chunked = head("Transfer-Encoding: chunked\r\n");
    chunked.extend_from_slice(b"zz\r\n{\"event\":\r\n0\r\n\r\n");
    let (status, text) = raw_exchange(&server, &chunked).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("could not read the request body"), "{text}");

    // A chunked body that really is over the limit is still 413.
    let mut big = head("Transfer-Encoding: chunked\r\n");
    for _ in 0..5 {
        big.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        big.extend(std::iter::repeat_n(b'x', 64 * 1024));
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_exchange(&server, &big).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("body over 256 KiB"), "{text}");

    assert_eq!(server.counts().await, before, "nothing was stored");
    server.stop().await;
}

#[tokio::test]
async fn look_alike_addresses_meet_the_gates_of_the_domain_they_imitate() {
    let server = Server::start().await;
    let before = server.counts().await;
    let capture = |email: &str| {
        format!(
            r#"{{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"{email}","name":"Jo Smith"}}"#
        )
    };
    // Refused as shipped: our own domain, disposable mailboxes, junk. Fullwidth letters
    // (U+FF41...) and upper case are the same domain to every gate, as to enrichment.
    for (n, (email, says)) in [
        ("jo@ｙourco.example", "yourco.example"),
        ("jo@sales.ＹＯＵＲＣＯ.example", "yourco.example"),
        ("x@ｍａｉｌｉｎａｔｏｒ.com", "disposable"),
        ("x@MAILINATOR.COM", "disposable"),
        ("ｔｅｓｔ@ｔｅｓｔ.com", "junk"),
        ("jo@yourco.example.", "not a valid e-mail address"),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = server
            .send(
                "website",
                &format!("msg_alike_{n}"),
                capture(email).as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 400, "{email}: {:?}", answer.body);
        assert_eq!(answer.body["field"], "captured_email", "{email}");
        assert!(
            answer.body["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{email}: {:?}",
            answer.body
        );
    }
    assert_eq!(
        server.counts().await,
        before,
        "refused events write nothing"
    );

    // A competitor written with a fullwidth letter still goes to review; a role address in
    // fullwidth letters is still a role.
    for (n, (email, flag)) in [
        ("jo@ｒivalrouter.example", "competitor_domain"),
        ("ｉｎｆｏ@acme-robotics.com", "role_address"),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = server
            .send(
                "website",
                &format!("msg_review_{n}"),
                capture(email).as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 202, "{email}: {:?}", answer.body);
        let lead = server
            .wait_for_state(answer.body["lead_id"].as_str().expect("id"), "notified")
            .await;
        let flags = lead["flags"].as_array().expect("flags");
        assert!(flags.iter().any(|f| f == flag), "{email}: {lead}");
        assert_eq!(lead["owner"]["id"], "review", "{email}: {lead}");
    }

    // A Cyrillic `а` in an otherwise Latin label has no ASCII twin: kept, flagged, and the
    // alert says so.
    let answer = server
        .send(
            "website",
            "msg_mixed",
            capture("jo@аcme-robotics.com").as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    let lead = server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(lead["flags"][0], "mixed_script_domain", "{lead}");
    let alerts = server.terminal.text();
    assert!(
        alerts.contains("Flags      mixed_script_domain"),
        "{alerts}"
    );
    server.stop().await;
}

/// Writes a lead row as an older version might have: readable columns, a body this version
/// cannot decode (form fields 127 levels deep), an open SLA already due.
fn insert_undecodable_lead(server: &Server, id: &str, event_id: &str) {
    let lead = crate::support::initech_lead(id, "tom.baker@initech.co.uk", Timestamp::now());
    let mut body = serde_json::to_value(&lead).expect("encodes");
    body["capture"]["form_fields"] = serde_json::json!({"deep": "DEEP"});
    let body = body.to_string().replace(r#""DEEP""#, &nested(127));
    let db = rusqlite::Connection::open(server.db.path()).expect("open the store");
    db.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    let now = Timestamp::now().as_millisecond();
    db.execute(
        "INSERT INTO leads (id, source, event_id, state, captured_at, sla_due_at, body)
         VALUES (?1, 'website', ?2, 'captured', ?3, ?4, ?5)",
        rusqlite::params![id, event_id, now - 1_000, now - 1_000, body],
    )
    .expect("insert");
}

#[tokio::test]
async fn an_undecodable_stored_lead_is_quarantined_and_skipped_never_fatal() {
    let server = Server::start().await;
    let good = server.send("website", "msg_good", &sample(LEAD)).await;
    assert_eq!(good.status, 202);
    let good_id = good.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&good_id, "notified").await;
    insert_undecodable_lead(&server, "old-lead-1", "msg_old_1");

    // The listing behind `rules diff --since` skips it and still returns the rest.
    let since = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let leads = server.db.leads_since(since, 100).await.expect("listing");
    let ids: Vec<&str> = leads.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, [good_id.as_str()]);
    let due = server
        .db
        .due_leads(Timestamp::now(), 100)
        .await
        .expect("due listing");
    assert!(due.iter().all(|l| l.id != "old-lead-1"));
    let mut report = Vec::new();
    leadrelay::rules::diff(
        &server.config,
        &server.config,
        &server.db,
        jiff::SignedDuration::from_hours(1),
        &mut report,
    )
    .await
    .expect("rules diff runs over the readable leads");
    let report = String::from_utf8(report).expect("utf-8");
    assert!(report.contains("Replayed 1 lead(s)"), "{report}");

    // Asked for by id: a clear answer naming it, not "retry later".
    let answer = server.lead("old-lead-1").await;
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert_eq!(answer.body["lead_id"], "old-lead-1");
    assert_eq!(answer.body["state"], "quarantined");
    assert!(
        answer.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("quarantined")),
        "{:?}",
        answer.body
    );
    let shown = leadrelay::cli::show_lead(&server.db, "old-lead-1")
        .await
        .expect_err("cannot be shown");
    assert!(
        shown.to_string().contains("old-lead-1 is quarantined"),
        "{shown:#}"
    );

    // The sender's retry of its event is a duplicate of that lead, not a 5xx for ever.
    let retry = server.send("website", "msg_old_1", &sample(LEAD)).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.body["lead_id"], "old-lead-1");

    // Its stage message goes straight to the dead-letter queue with the error.
    server
        .db
        .send(
            Stage::Enrich,
            &Envelope::new("old-lead-1", Stage::Enrich, "trace-old"),
        )
        .await
        .expect("enqueue");
    let letter = crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the quarantined lead's message dead-lettered",
        || async {
            server
                .db
                .list(Stage::Enrich, 10, std::time::Duration::ZERO)
                .await
                .expect("list")
                .into_iter()
                .find(|l| l.lead_id.as_deref() == Some("old-lead-1"))
        },
    )
    .await;
    assert!(
        letter
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("quarantined")),
        "{letter:?}"
    );
    server.stop().await;
}

/// Arbitrary JSON: odd strings and numbers, arrays and objects a few levels deep.
fn odd_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    // Rarely a text at the length bound or just past it.
    let long = prop_oneof![Just(16 * 1024), Just(16 * 1024 + 1)]
        .prop_map(|n| Value::String("é".repeat(n / 2) + &"x".repeat(n % 2)));
    let leaf = prop_oneof![
        2 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        4 => any::<i64>().prop_map(Value::from),
        4 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        8 => ".{0,24}".prop_map(Value::String),
        1 => long,
    ];
    leaf.prop_recursive(4, 64, 12, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..12)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `value` inside `depth` levels of arrays and objects, alternating.
fn deep(value: serde_json::Value, depth: usize) -> serde_json::Value {
    (0..depth).fold(value, |inner, level| {
        if level % 2 == 0 {
            serde_json::Value::Array(vec![inner])
        } else {
            serde_json::json!({ "k": inner })
        }
    })
}

/// A free-form field: a few odd entries and, sometimes, one nested close to serde_json's
/// recursion limit, or past the bounds.
fn free_form() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
    (
        prop::collection::btree_map("[a-z_]{1,8}", odd_json(), 0..4),
        prop::option::of((prop_oneof![0usize..24, 120usize..130], odd_json())),
    )
        .prop_map(|(entries, nested)| {
            let mut map: serde_json::Map<_, _> = entries.into_iter().collect();
            if let Some((depth, leaf)) = nested {
                map.insert("nested".into(), deep(leaf, depth));
            }
            map
        })
}

fn transcript() -> impl Strategy<Value = serde_json::Value> {
    let turn = (".{0,12}", ".{0,40}")
        .prop_map(|(role, text)| serde_json::json!({"role": role, "text": text}));
    prop_oneof![
        prop::collection::vec(turn.clone(), 0..6),
        prop::collection::vec(turn, 495..505),
    ]
    .prop_map(serde_json::Value::Array)
}

#[test]
fn whatever_ingest_accepts_reads_back_from_the_store_and_is_processed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(Server::start());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let outcome = runner.run(
        &(free_form(), free_form(), transcript()),
        |(form_fields, metadata, transcript)| {
            let body = serde_json::json!({
                "event": "lead_capture",
                "timestamp": "2026-11-23T10:00:00Z",
                "captured_email": "jo@acme-robotics.com",
                "name": "Jo Smith",
                "form_fields": form_fields,
                "metadata": metadata,
                "transcript": transcript,
            })
            .to_string();
            let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let before = server.counts().await;
                let answer = server
                    .send("website", &format!("msg_prop_{n}"), body.as_bytes())
                    .await;
                let too_large = body.len() > 256 * 1024;
                if answer.status == 400 || (answer.status == 413 && too_large) {
                    // Refused: nothing stored, and the answer names the problem.
                    prop_assert!(answer.body["error"].is_string(), "{:?}", answer.body);
                    prop_assert_eq!(server.counts().await.leads, before.leads);
                    return Ok(());
                }
                prop_assert_eq!(answer.status, 202, "{:?}", answer.body);
                let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
                // Accepted: it reads back from the store...
                let stored = server.db.get_lead(&lead_id).await;
                prop_assert!(
                    matches!(stored, Ok(Some(_))),
                    "lead {} accepted but unreadable: {:?}",
                    lead_id,
                    stored.err()
                );
                // ...and reaches its owner's alert, or the dead-letter queue with its error.
                let done = crate::support::eventually(
                    std::time::Duration::from_secs(10),
                    "the accepted lead processed",
                    || async {
                        let summary = server.lead(&lead_id).await.body;
                        if summary["state"] == "notified" {
                            return Some(true);
                        }
                        for stage in Stage::ALL {
                            let parked = server
                                .db
                                .list(stage, 1_000, std::time::Duration::ZERO)
                                .await
                                .ok()?
                                .into_iter()
                                .any(|l| {
                                    l.lead_id.as_deref() == Some(lead_id.as_str())
                                        && l.last_error.is_some()
                                });
                            if parked {
                                return Some(true);
                            }
                        }
                        None
                    },
                )
                .await;
                prop_assert!(done);
                Ok(())
            })
        },
    );
    runtime.block_on(server.stop());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

//! The queue functions' batch handler: one bad message (an error or a panic) never fails or
//! re-runs its batch-mates, and only the failed messages are reported, never with an empty id.

use std::sync::Arc;

use crate::support::{example_config, open_store, parse_config, root, sample};
use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{Destination, Notifier, NotifyError, SystemClock};
use leadrelay_shared::render::Alert;
use leadrelay_shared::stages::Pipeline;
use serde_json::{json, Value};

/// A notifier that panics for one lead, standing in for a bug in a channel adapter.
struct PanicsFor(std::sync::Mutex<Option<String>>);

#[async_trait]
impl Notifier for PanicsFor {
    async fn deliver(&self, _: &Destination, alert: &Alert) -> Result<(), NotifyError> {
        let victim = self.0.lock().expect("lock").clone();
        if victim.as_deref() == Some(alert.lead_id.as_str()) {
            panic!("adapter bug");
        }
        Ok(())
    }
}

fn record(id: &str, body: &str) -> Value {
    // The shape of events/aws/sqs-route-batch.json, as AWS sends it.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/aws/sqs-route-batch.json")).expect("fixture"),
    )
    .expect("json");
    let mut record = fixture["Records"][0].clone();
    record["messageId"] = id.into();
    record["body"] = body.into();
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_message_is_reported_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    let notifier = Arc::new(PanicsFor(Default::default()));
    let pipeline = Arc::new(Pipeline::new(
        Arc::new(parse_config(&example_config())),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        notifier.clone(),
        Arc::new(SystemClock),
    ));

    // Two leads brought to `routed` through the real stages.
    let mut leads = Vec::new();
    for n in 0..2 {
        let source = pipeline.config.source("website").expect("source");
        let body = sample("02-capture-emea-pricing.json");
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in
            leadrelay::cli::signed_headers(source, &format!("msg_batch_{n}"), &body).expect("sign")
        {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        let accepted = pipeline
            .ingest("website", &headers, &body)
            .await
            .expect("ingest");
        for stage in [Stage::Enrich, Stage::Route] {
            for message in leadrelay_shared::ports::Queue::receive(&db, stage, 10)
                .await
                .expect("receive")
            {
                pipeline.consume(stage, &message).await.expect("consume");
            }
        }
        leads.push(accepted.lead_id);
    }
    *notifier.0.lock().expect("lock") = Some(leads[1].clone());

    let event: SqsEvent = serde_json::from_value(json!({
        "Records": [
            record("good", &Envelope::new(&leads[0], Stage::Notify, "t").to_json()),
            record("panics", &Envelope::new(&leads[1], Stage::Notify, "t").to_json()),
            record("garbage", "{not an envelope"),
            // The notify function's entry handles the notify stage only.
            record("misrouted", &Envelope::new("no-such-lead", Stage::Route, "t").to_json()),
        ]
    }))
    .expect("event");
    let response = leadrelay_aws::lambda::notify_batch(pipeline.clone(), event)
        .await
        .expect("the batch itself succeeds");
    let mut failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, ["garbage", "misrouted", "panics"]);
    let good = pipeline
        .store
        .get_lead(&leads[0])
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(good.state.as_str(), "notified");

    // A record without a messageId cannot be reported alone: the batch fails as a whole.
    let mut nameless = record("x", &Envelope::new(&leads[0], Stage::Notify, "t").to_json());
    nameless["messageId"] = Value::Null;
    let event: SqsEvent = serde_json::from_value(json!({ "Records": [nameless] })).expect("event");
    assert!(
        leadrelay_aws::lambda::handle_batch(pipeline, Stage::Notify, event)
            .await
            .is_err()
    );
}

/// The isolation above needs unwinding in the deployed binaries. cargo-lambda builds with
/// `panic = "abort"` unless the release profile says otherwise, and with abort one panicking
/// message would kill the process and send its whole batch back to the queue again and again.
/// Each function is built from its own directory (template.yaml's CodeUri), where cargo lays
/// the function's `.cargo/config.toml` over `functions/.cargo/config.toml` over `Cargo.toml`.
#[test]
fn the_batch_functions_are_built_to_unwind_so_a_panic_stays_with_its_message() {
    let release_panic = |path: std::path::PathBuf| -> Option<String> {
        let text = std::fs::read_to_string(&path).ok()?;
        let table: toml::Table = text.parse().expect("TOML parses");
        let panic = table.get("profile")?.get("release")?.get("panic")?;
        Some(panic.as_str().expect("panic is a string").to_owned())
    };
    for function in ["enrich", "route", "notify", "sla", "report-hours"] {
        let layers = [
            root().join("Cargo.toml"),
            root().join("functions/.cargo/config.toml"),
            root().join(format!("functions/{function}/.cargo/config.toml")),
        ];
        // The deepest layer that says it wins.
        let panic = layers.into_iter().rev().find_map(release_panic);
        assert_eq!(
            panic.as_deref(),
            Some("unwind"),
            "{function}: its release build must say panic = \"unwind\" (cargo-lambda's default is abort)"
        );
    }
}

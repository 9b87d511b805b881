//! One conformance suite for the ports, run against the embedded SQLite adapters and against
//! the AWS adapters (DynamoDB, SQS) talking to moto server: the real SDK calls, conditional
//! writes, transactions and redrive included.
//!
//! `make test` starts moto (scripts/with-moto.sh) and exports LEADRELAY_MOTO_URL.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_shared::model::{
    Assignment, CaptureEvent, Envelope, EventKind, Lead, LeadState, Metadata, Owner, Stage,
    StageFailure, Timeline,
};
use leadrelay_shared::ports::{
    Created, DeadLetters, DeliveryStart, LeadStore, Queue, Received, StoreError,
};
use leadrelay_tests::aws::moto;

const MAX_RECEIVES: u32 = 3;
const VISIBILITY: Duration = Duration::from_secs(30);

struct Adapters {
    store: Arc<dyn LeadStore>,
    queue: Arc<dyn Queue>,
    dead: Arc<dyn DeadLetters>,
    _dir: Option<tempfile::TempDir>,
}

async fn embedded() -> Adapters {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Sqlite::open(
        dir.path(),
        QueueSettings {
            max_receives: MAX_RECEIVES,
            visibility_timeout: VISIBILITY,
        },
    )
    .expect("open");
    Adapters {
        store: Arc::new(db.clone()),
        queue: Arc::new(db.clone()),
        dead: Arc::new(db),
        _dir: Some(dir),
    }
}

async fn aws() -> Adapters {
    let deployment = moto()
        .await
        .deploy(MAX_RECEIVES, VISIBILITY.as_secs() as u32)
        .await;
    Adapters {
        store: Arc::new(deployment.store),
        queue: Arc::new(deployment.queues.clone()),
        dead: Arc::new(deployment.queues),
        _dir: None,
    }
}

/// Runs one conformance check against both adapter sets.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded_adapters {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(super::embedded().await).await;
            })*
        }
        mod aws_adapters_on_moto {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(super::aws().await).await;
            })*
        }
    };
}

conformance!(
    dedupe_under_concurrent_writes,
    single_owner_under_concurrent_routing,
    counters_add_up_under_concurrency,
    conditional_failures_are_typed,
    failures_are_recorded_beside_the_lead,
    delivery_receipts_lease_and_expire,
    queue_receive_hide_retry_delete,
    a_batch_is_deleted_at_once,
    redrive_to_the_dead_letter_queue_and_replay,
);

fn lead(id: &str, event_id: &str) -> Lead {
    Lead {
        id: id.to_owned(),
        source: "website".into(),
        event_id: event_id.to_owned(),
        trace_id: format!("trace-{id}"),
        state: LeadState::Captured,
        capture: CaptureEvent {
            event: Some(EventKind::LeadCapture),
            timestamp: Some(Timestamp::now()),
            visitor_id: None,
            conversation_id: None,
            captured_email: Some("jane@acme-robotics.com".into()),
            name: None,
            company: None,
            phone: None,
            job_title: None,
            trigger_query: None,
            conversation_transcript_url: None,
            transcript: vec![],
            form_fields: Default::default(),
            metadata: Metadata::default(),
        },
        incomplete: false,
        flags: vec![],
        enrichment: None,
        qualification: None,
        assignment: None,
        timeline: Timeline {
            captured_at: Some(Timestamp::now()),
            ..Timeline::default()
        },
        last_failure: None,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A lead stored and enriched, ready to be routed.
async fn enriched_lead(store: &dyn LeadStore) -> Lead {
    let mut lead = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store.create_lead(&lead).await.expect("create"),
        Created::New
    );
    lead.state = LeadState::Enriched;
    store
        .advance_lead(&lead, LeadState::Captured, &[])
        .await
        .expect("enrich");
    lead
}

async fn dedupe_under_concurrent_writes(adapters: Adapters) {
    let event_id = unique("evt");
    let attempts = (0..8).map(|n| {
        let store = adapters.store.clone();
        let candidate = lead(&unique(&format!("lead{n}")), &event_id);
        tokio::spawn(async move {
            let outcome = store.create_lead(&candidate).await.expect("create");
            (candidate.id, outcome)
        })
    });
    let outcomes: Vec<(String, Created)> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| *o == Created::New)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one write wins: {outcomes:?}");
    for (id, outcome) in &outcomes {
        match outcome {
            Created::New => {}
            Created::Duplicate(existing) => {
                assert_eq!(&existing.id, winners[0], "a duplicate names the winner");
                assert!(
                    adapters.store.get_lead(id).await.expect("read").is_none(),
                    "a losing write stored nothing"
                );
            }
        }
    }
}

async fn single_owner_under_concurrent_routing(adapters: Adapters) {
    let lead = enriched_lead(adapters.store.as_ref()).await;
    let reps: Vec<String> = (0..6).map(|n| format!("rep{n}-{}", lead.id)).collect();
    let attempts = reps.iter().map(|rep| {
        let store = adapters.store.clone();
        let mut routed = lead.clone();
        routed.state = LeadState::Routed;
        routed.assignment = Some(Assignment {
            owner: Owner::Rep(rep.clone()),
            owner_name: rep.clone(),
            rule: "test".into(),
            reason: "race".into(),
        });
        let counter = format!("open_leads:rep:{rep}");
        tokio::spawn(async move {
            store
                .advance_lead(&routed, LeadState::Enriched, &[counter])
                .await
        })
    });
    let results: Vec<Result<(), StoreError>> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(
                    error,
                    StoreError::Conflict {
                        actual: LeadState::Routed,
                        ..
                    }
                ),
                "{error}"
            );
        }
    }
    let stored = adapters
        .store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    let owner = stored.assignment.expect("owner").owner.id().to_owned();
    for rep in &reps {
        let count = adapters
            .store
            .counter(&format!("open_leads:rep:{rep}"))
            .await
            .expect("counter");
        assert_eq!(count, i64::from(*rep == owner), "{rep}");
    }
}

async fn counters_add_up_under_concurrency(adapters: Adapters) {
    let counter = unique("open_leads:queue");
    let mut leads = Vec::new();
    for _ in 0..12 {
        leads.push(enriched_lead(adapters.store.as_ref()).await);
    }
    let attempts = leads.into_iter().map(|mut lead| {
        let store = adapters.store.clone();
        let counter = counter.clone();
        lead.state = LeadState::Routed;
        tokio::spawn(async move {
            store
                .advance_lead(&lead, LeadState::Enriched, &[counter])
                .await
        })
    });
    for result in futures::future::join_all(attempts).await {
        result.expect("task").expect("routed");
    }
    assert_eq!(adapters.store.counter(&counter).await.expect("read"), 12);
    assert_eq!(
        adapters
            .store
            .counter(&unique("never"))
            .await
            .expect("read"),
        0
    );
}

async fn conditional_failures_are_typed(adapters: Adapters) {
    let mut lead = enriched_lead(adapters.store.as_ref()).await;
    lead.state = LeadState::Notified;
    let error = adapters
        .store
        .advance_lead(&lead, LeadState::Routed, &[])
        .await
        .expect_err("the lead is enriched, not routed");
    assert!(
        matches!(
            error,
            StoreError::Conflict {
                expected: LeadState::Routed,
                actual: LeadState::Enriched,
                ..
            }
        ),
        "{error}"
    );
    let ghost = lead.clone();
    let ghost = Lead {
        id: unique("ghost"),
        ..ghost
    };
    let error = adapters
        .store
        .advance_lead(&ghost, LeadState::Captured, &[unique("c")])
        .await
        .expect_err("no such lead");
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
    // A lost conditional write changed nothing.
    let stored = adapters
        .store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.state, LeadState::Enriched);
}

async fn failures_are_recorded_beside_the_lead(adapters: Adapters) {
    let lead = enriched_lead(adapters.store.as_ref()).await;
    let failure = StageFailure {
        stage: Stage::Route,
        error: "boom".into(),
        at: Timestamp::now(),
    };
    adapters
        .store
        .record_failure(&lead.id, &failure)
        .await
        .expect("recorded");
    // Advancing the lead afterwards keeps the failure (it lives in its own attribute).
    let mut routed = lead.clone();
    routed.state = LeadState::Routed;
    adapters
        .store
        .advance_lead(&routed, LeadState::Enriched, &[])
        .await
        .expect("routed");
    let stored = adapters
        .store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.last_failure.map(|f| f.error), Some("boom".into()));
}

async fn delivery_receipts_lease_and_expire(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let lead = unique("lead");
    let now = Timestamp::now();
    let lease = Duration::from_secs(30);
    assert_eq!(
        store
            .begin_delivery(&lead, "slack", now, lease)
            .await
            .expect("begin"),
        DeliveryStart::Proceed
    );
    assert!(matches!(
        store
            .begin_delivery(&lead, "slack", now, lease)
            .await
            .expect("begin"),
        DeliveryStart::InFlight { .. }
    ));
    // Another channel of the same lead is independent.
    assert_eq!(
        store
            .begin_delivery(&lead, "terminal", now, lease)
            .await
            .expect("begin"),
        DeliveryStart::Proceed
    );
    // A worker that died mid-delivery never blocks the retry past its lease.
    let later = now + jiff::SignedDuration::from_secs(31);
    assert_eq!(
        store
            .begin_delivery(&lead, "slack", later, lease)
            .await
            .expect("begin"),
        DeliveryStart::Proceed
    );
    store
        .release_delivery(&lead, "slack")
        .await
        .expect("release");
    assert_eq!(
        store
            .begin_delivery(&lead, "slack", later, lease)
            .await
            .expect("begin"),
        DeliveryStart::Proceed
    );
    store
        .finish_delivery(&lead, "slack", later)
        .await
        .expect("finish");
    let much_later = now + jiff::SignedDuration::from_secs(3600);
    assert_eq!(
        store
            .begin_delivery(&lead, "slack", much_later, lease)
            .await
            .expect("begin"),
        DeliveryStart::AlreadyDelivered
    );
    store
        .release_delivery(&lead, "slack")
        .await
        .expect("release is harmless");
    assert_eq!(
        store
            .begin_delivery(&lead, "slack", much_later, lease)
            .await
            .expect("begin"),
        DeliveryStart::AlreadyDelivered
    );
}

async fn receive_one(queue: &dyn Queue, stage: Stage) -> Option<Received> {
    // SQS may need more than one short poll to return a message.
    for _ in 0..20 {
        if let Some(message) = queue.receive(stage, 10).await.expect("receive").pop() {
            return Some(message);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

async fn queue_receive_hide_retry_delete(adapters: Adapters) {
    let queue = adapters.queue.as_ref();
    let envelope = Envelope::new(&unique("lead"), Stage::Route, "trace");
    queue.send(Stage::Route, &envelope).await.expect("send");

    let first = receive_one(queue, Stage::Route).await.expect("received");
    assert_eq!(
        Envelope::from_json(&first.body).expect("envelope"),
        envelope
    );
    assert_eq!(first.receive_count, 1);
    assert!(!first.message_id.is_empty() && !first.receipt.is_empty());
    // Hidden while its visibility lasts.
    assert!(queue
        .receive(Stage::Route, 10)
        .await
        .expect("receive")
        .is_empty());

    queue
        .retry_later(Stage::Route, &first.receipt, Duration::ZERO, "transient")
        .await
        .expect("retry");
    let second = receive_one(queue, Stage::Route)
        .await
        .expect("visible again");
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    queue
        .delete(Stage::Route, &second.receipt)
        .await
        .expect("delete");
    assert!(queue
        .receive(Stage::Route, 10)
        .await
        .expect("receive")
        .is_empty());
    // Another stage's queue never saw it.
    assert!(queue
        .receive(Stage::Notify, 10)
        .await
        .expect("receive")
        .is_empty());
}

async fn redrive_to_the_dead_letter_queue_and_replay(adapters: Adapters) {
    let queue = adapters.queue.as_ref();
    let lead_id = unique("lead");
    let envelope = Envelope::new(&lead_id, Stage::Notify, "trace");
    queue.send(Stage::Notify, &envelope).await.expect("send");
    for attempt in 1..=MAX_RECEIVES {
        let message = receive_one(queue, Stage::Notify)
            .await
            .unwrap_or_else(|| panic!("receive {attempt}"));
        assert_eq!(message.receive_count, attempt);
        queue
            .retry_later(
                Stage::Notify,
                &message.receipt,
                Duration::ZERO,
                "slack answered 500",
            )
            .await
            .expect("retry");
    }
    // One receive past maxReceiveCount moves it to the dead-letter queue.
    assert!(queue
        .receive(Stage::Notify, 10)
        .await
        .expect("receive")
        .is_empty());
    let letters = adapters
        .dead
        .list(Stage::Notify, 10, Duration::from_secs(30))
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].lead_id.as_deref(), Some(lead_id.as_str()));
    assert!(letters[0].receive_count >= MAX_RECEIVES, "{letters:?}");

    adapters
        .dead
        .replay(Stage::Notify, &letters[0])
        .await
        .expect("replay");
    let replayed = receive_one(queue, Stage::Notify).await.expect("replayed");
    assert_eq!(
        Envelope::from_json(&replayed.body).expect("envelope"),
        envelope
    );
    queue
        .delete(Stage::Notify, &replayed.receipt)
        .await
        .expect("delete");
    assert!(adapters
        .dead
        .list(Stage::Notify, 10, Duration::from_secs(1))
        .await
        .expect("list")
        .is_empty());
}

async fn a_batch_is_deleted_at_once(adapters: Adapters) {
    let queue = adapters.queue.as_ref();
    for n in 0..3 {
        queue
            .send(
                Stage::Enrich,
                &Envelope::new(&format!("lead-{n}"), Stage::Enrich, "t"),
            )
            .await
            .expect("send");
    }
    let mut receipts = Vec::new();
    for _ in 0..20 {
        receipts.extend(
            queue
                .receive(Stage::Enrich, 10)
                .await
                .expect("receive")
                .into_iter()
                .map(|m| m.receipt),
        );
        if receipts.len() == 3 {
            break;
        }
    }
    assert_eq!(receipts.len(), 3);
    queue
        .delete_many(Stage::Enrich, &receipts)
        .await
        .expect("delete");
    queue
        .retry_later(Stage::Enrich, &receipts[0], Duration::ZERO, "late")
        .await
        .expect_err("a deleted message cannot be retried");
    assert!(queue
        .receive(Stage::Enrich, 10)
        .await
        .expect("receive")
        .is_empty());
}

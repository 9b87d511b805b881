//! One conformance suite for the ports, run against the embedded SQLite adapters and against
//! the AWS adapters (DynamoDB, SQS) talking to moto server: the real SDK calls, conditional
//! writes, transactions and redrive included.
//!
//! `make test` starts moto (scripts/with-moto.sh) and exports LEADRELAY_MOTO_URL.

use std::sync::Arc;
use std::time::Duration;

use crate::support::aws::moto;
use jiff::Timestamp;
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_shared::console::{ConsoleAction, Session};
use leadrelay_shared::model::{
    Assignment, CaptureEvent, Envelope, EventKind, Lead, LeadState, Metadata, Owner, Stage,
    StageFailure, Timeline,
};
use leadrelay_shared::ports::{
    Advance, BuiltHour, ConsoleStore, Created, DeadLetters, DeliveryReceipt, DeliveryStart,
    EnrichmentCache, LeadStore, Outgoing, PostedMessage, Queue, Received, ReplayGuard,
    ReportBucket, ReportHour, StoreError,
};
use leadrelay_shared::routing::duplicates::ContactLookup;
use leadrelay_shared::routing::effects::{ContactWrite, CounterBump, Effects, LedgerWrite};
use leadrelay_shared::routing::ledger::PoolLedger;

const MAX_RECEIVES: u32 = 3;
const VISIBILITY: Duration = Duration::from_secs(30);

struct Adapters {
    store: Arc<dyn LeadStore>,
    cache: Arc<dyn EnrichmentCache>,
    queue: Arc<dyn Queue>,
    dead: Arc<dyn DeadLetters>,
    console: Arc<dyn ConsoleStore>,
    /// The store underneath the adapter, to write what an older version might have left.
    raw: RawStore,
    _dir: Option<tempfile::TempDir>,
}

enum RawStore {
    Sqlite(std::path::PathBuf),
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
        stream: crate::support::aws::ReportStream,
    },
}

impl Adapters {
    /// Lets the writes so far reach the report hours: on DynamoDB the table's stream goes to
    /// the report-hours function's code (SQLite moved them in the writes themselves).
    async fn settle(&self) {
        if let RawStore::Dynamo { stream, .. } = &self.raw {
            stream.pump().await;
        }
    }
}

impl RawStore {
    /// Replaces a stored lead's body behind the adapter's back.
    async fn overwrite_body(&self, lead_id: &str, body: &str) {
        match self {
            RawStore::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).expect("open");
                db.busy_timeout(Duration::from_secs(5))
                    .expect("busy timeout");
                let updated = db
                    .execute(
                        "UPDATE leads SET body = ?1 WHERE id = ?2",
                        rusqlite::params![body, lead_id],
                    )
                    .expect("update");
                assert_eq!(updated, 1);
            }
            RawStore::Dynamo { client, table, .. } => {
                use aws_sdk_dynamodb::types::AttributeValue;
                client
                    .update_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(format!("LEAD#{lead_id}")))
                    .key("sk", AttributeValue::S("LEAD".into()))
                    .update_expression("SET body = :body")
                    .expression_attribute_values(":body", AttributeValue::S(body.into()))
                    .send()
                    .await
                    .expect("update");
            }
        }
    }
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
        cache: Arc::new(db.clone()),
        queue: Arc::new(db.clone()),
        console: Arc::new(db.clone()),
        raw: RawStore::Sqlite(db.path().to_path_buf()),
        dead: Arc::new(db),
        _dir: Some(dir),
    }
}

async fn aws() -> Adapters {
    let moto = moto().await;
    let deployment = moto.deploy(MAX_RECEIVES, VISIBILITY.as_secs() as u32).await;
    // Report buckets as the console function keeps them, kept at once (no settle time).
    let store = Arc::new(deployment.store.with_report_buckets(Duration::ZERO));
    Adapters {
        store: store.clone(),
        console: store.clone(),
        cache: store,
        queue: Arc::new(deployment.queues.clone()),
        dead: Arc::new(deployment.queues),
        raw: RawStore::Dynamo {
            client: moto.dynamodb(),
            table: deployment.table,
            stream: deployment.report_stream,
        },
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
    a_capped_counter_stops_at_its_limit_under_concurrency,
    a_stale_ledger_write_is_refused_and_changes_nothing,
    pool_ledgers_round_trip,
    leads_since_in_captured_order,
    recent_leads_newest_first_from_the_capture_index,
    closing_releases_a_counter_but_never_below_zero,
    conditional_failures_are_typed,
    failures_are_recorded_beside_the_lead,
    a_failure_is_cleared_only_while_it_is_the_one_read,
    a_given_up_message_moves_to_the_dead_letter_queue_with_its_count_and_error,
    delivery_receipts_lease_and_expire,
    queue_receive_hide_retry_delete,
    a_batch_is_deleted_at_once,
    redrive_to_the_dead_letter_queue_and_replay,
    a_permanent_failure_is_parked_in_the_dead_letter_queue_with_its_error,
    cache_entries_expire_and_are_replaced,
    a_write_from_a_stale_read_is_refused_and_changes_nothing,
    the_due_index_holds_only_leads_waiting_for_a_claim,
    resets_zero_counters_with_the_lead,
    an_undecodable_lead_is_named_by_id_and_skipped_by_listings,
    a_replayed_body_is_a_duplicate_within_its_window_only,
    a_refused_create_writes_neither_its_event_nor_its_body_record,
    replayed_bodies_dedupe_under_concurrent_writes,
    a_lead_and_its_next_message_are_written_together_or_not_at_all,
    a_new_lead_and_its_first_message_are_written_together_and_a_duplicate_sends_nothing,
    a_batch_of_lead_writes_applies_in_order_and_stops_at_the_first_refused,
    posted_messages_are_kept_per_receipt_and_read_back_per_lead,
    a_claim_moves_its_counters_and_rotation_turn_together_or_not_at_all,
    lead_facts_follow_every_write_and_are_read_by_capture_window,
    every_write_of_a_leads_facts_moves_its_report_hour,
    a_report_bucket_is_kept_only_at_the_generation_it_was_built_from,
);

/// The contact index (duplicate merging) on both adapter sets, kept apart from the list above.
mod contact_index {
    macro_rules! both {
        ($($check:ident),* $(,)?) => {
            mod embedded_adapters {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(super::super::embedded().await).await;
                })*
            }
            mod aws_adapters_on_moto {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(super::super::aws().await).await;
                })*
            }
        };
    }
    both!(
        a_contact_points_at_its_open_lead_within_the_window,
        a_stale_contact_write_is_refused_and_changes_nothing,
    );
}

/// The console's store (sessions, audit log) and the availability counter it sets, on both
/// adapter sets.
mod console_store {
    macro_rules! both {
        ($($check:ident),* $(,)?) => {
            mod embedded_adapters {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(super::super::embedded().await).await;
                })*
            }
            mod aws_adapters_on_moto {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::super::$check(super::super::aws().await).await;
                })*
            }
        };
    }
    both!(
        a_console_session_round_trips_until_it_expires_or_ends,
        audit_entries_come_back_newest_first_from_since_up_to_limit,
        a_set_counter_overwrites_and_reads_back,
    );
}

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
        close_reason: None,
        merged_into: None,
        claim: None,
        escalations: Vec::new(),
        activities: Vec::new(),
        misroutes: Vec::new(),
        reroutes: Vec::new(),
        revision: 0,
    }
}

/// Adds one to each counter, without a limit.
fn bump(names: &[&str]) -> Effects {
    Effects {
        counters: names
            .iter()
            .map(|name| CounterBump {
                name: (*name).to_owned(),
                limit: None,
            })
            .collect(),
        ..Effects::none()
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
        .advance_lead(&lead, LeadState::Captured, &Effects::none())
        .await
        .expect("enrich");
    // As stored: at its new revision.
    store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored")
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

/// A body record for `body` seen at `now`, kept for an hour. Whole seconds: DynamoDB's TTL
/// attribute is in seconds.
fn replay(body: &str, now: Timestamp) -> ReplayGuard {
    ReplayGuard {
        body_sha256: body.to_owned(),
        now,
        expires_at: now + jiff::SignedDuration::from_hours(1),
    }
}

fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).expect("in range")
}

async fn a_replayed_body_is_a_duplicate_within_its_window_only(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let t0 = whole_seconds(Timestamp::now());
    let minutes = |m: i64| t0 + jiff::SignedDuration::from_mins(m);
    let body = unique("digest");
    let first = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store
            .create_lead_guarded(&first, Some(&replay(&body, t0)))
            .await
            .expect("create"),
        Created::New
    );

    // The same body with a fresh event id, within the hour: the first lead, nothing written.
    let replayed = lead(&unique("lead"), &unique("evt"));
    match store
        .create_lead_guarded(&replayed, Some(&replay(&body, minutes(59))))
        .await
        .expect("create")
    {
        Created::Duplicate(existing) => assert_eq!(existing.id, first.id),
        Created::New => panic!("a replayed body made a second lead"),
    }
    assert!(store.get_lead(&replayed.id).await.expect("read").is_none());

    // Another body, or the same body from another source, is a lead of its own.
    let other = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store
            .create_lead_guarded(&other, Some(&replay(&unique("digest"), minutes(59))))
            .await
            .expect("create"),
        Created::New
    );
    let mut elsewhere = lead(&unique("lead"), &unique("evt"));
    elsewhere.source = "forms".into();
    assert_eq!(
        store
            .create_lead_guarded(&elsewhere, Some(&replay(&body, minutes(59))))
            .await
            .expect("create"),
        Created::New
    );

    // At the expiry the record is gone (whether or not the store deleted it yet): a new lead,
    // whose record then holds for its own hour.
    let later = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store
            .create_lead_guarded(&later, Some(&replay(&body, minutes(60))))
            .await
            .expect("create"),
        Created::New
    );
    let again = lead(&unique("lead"), &unique("evt"));
    match store
        .create_lead_guarded(&again, Some(&replay(&body, minutes(90))))
        .await
        .expect("create")
    {
        Created::Duplicate(existing) => assert_eq!(existing.id, later.id),
        Created::New => panic!("the renewed record was not written"),
    }

    // Without a guard (a scheme that signs its timestamp) bodies are not looked at.
    let unguarded = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store.create_lead(&unguarded).await.expect("create"),
        Created::New
    );
}

async fn a_refused_create_writes_neither_its_event_nor_its_body_record(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let t0 = whole_seconds(Timestamp::now());
    let first_event = unique("evt");
    let first = lead(&unique("lead"), &first_event);
    let body = unique("digest");
    assert_eq!(
        store
            .create_lead_guarded(&first, Some(&replay(&body, t0)))
            .await
            .expect("create"),
        Created::New
    );

    // A retry of the first event with other bytes: the event id wins, and the new body's
    // record was not written.
    let fresh_body = unique("digest");
    let retry = lead(&unique("lead"), &first_event);
    match store
        .create_lead_guarded(&retry, Some(&replay(&fresh_body, t0)))
        .await
        .expect("create")
    {
        Created::Duplicate(existing) => assert_eq!(existing.id, first.id),
        Created::New => panic!("a second lead for one event id"),
    }
    let with_fresh_body = lead(&unique("lead"), &unique("evt"));
    assert_eq!(
        store
            .create_lead_guarded(&with_fresh_body, Some(&replay(&fresh_body, t0)))
            .await
            .expect("create"),
        Created::New,
        "a refused create left a body record behind"
    );

    // A replay refused on its body: its event id was not recorded either.
    let replay_event = unique("evt");
    let replayed = lead(&unique("lead"), &replay_event);
    assert!(matches!(
        store
            .create_lead_guarded(&replayed, Some(&replay(&body, t0)))
            .await
            .expect("create"),
        Created::Duplicate(_)
    ));
    let same_event = lead(&unique("lead"), &replay_event);
    assert_eq!(
        store
            .create_lead_guarded(&same_event, Some(&replay(&unique("digest"), t0)))
            .await
            .expect("create"),
        Created::New,
        "a refused create left an event record behind"
    );
}

async fn replayed_bodies_dedupe_under_concurrent_writes(adapters: Adapters) {
    let body = unique("digest");
    let now = whole_seconds(Timestamp::now());
    let attempts = (0..8).map(|n| {
        let store = adapters.store.clone();
        let candidate = lead(&unique(&format!("lead{n}")), &unique("evt"));
        let guard = replay(&body, now);
        tokio::spawn(async move {
            let outcome = store
                .create_lead_guarded(&candidate, Some(&guard))
                .await
                .expect("create");
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
        if let Created::Duplicate(existing) = outcome {
            assert_eq!(&existing.id, winners[0], "a duplicate names the winner");
            assert!(
                adapters.store.get_lead(id).await.expect("read").is_none(),
                "a losing write stored nothing"
            );
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
            pool: None,
            held_until: None,
            trace: None,
        });
        let effects = bump(&[&format!("open_leads:rep:{rep}")]);
        tokio::spawn(async move {
            store
                .advance_lead(&routed, LeadState::Enriched, &effects)
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
        let effects = bump(&[&counter]);
        lead.state = LeadState::Routed;
        tokio::spawn(async move {
            store
                .advance_lead(&lead, LeadState::Enriched, &effects)
                .await
        })
    });
    for result in futures::future::join_all(attempts).await {
        result.expect("task").expect("routed");
    }
    assert_eq!(adapters.store.counter(&counter).await.expect("read"), 12);
    let never = unique("never");
    assert_eq!(adapters.store.counter(&never).await.expect("read"), 0);
    // Several at once, in the order asked, repeats and unknown names included.
    assert_eq!(
        adapters
            .store
            .counters(&[counter.clone(), never, counter])
            .await
            .expect("read"),
        vec![12, 0, 12]
    );
}

/// A close takes one from the owner's counter with the lead, and a counter already at zero
/// refuses the release (the caller closes without it) instead of going negative.
async fn closing_releases_a_counter_but_never_below_zero(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let counter = unique("open");
    let lead = enriched_lead(store).await;
    route_with(store, &lead, &bump(&[&counter]))
        .await
        .expect("routed");
    assert_eq!(store.counter(&counter).await.expect("read"), 1);

    let release = Effects {
        releases: vec![counter.clone()],
        ..Effects::none()
    };
    let mut closed = lead.clone();
    closed.state = LeadState::Closed;
    closed.revision += 1; // routing wrote it once
    store
        .advance_lead(&closed, LeadState::Routed, &release)
        .await
        .expect("closed");
    assert_eq!(store.counter(&counter).await.expect("read"), 0);

    let other = enriched_lead(store).await;
    route_with(store, &other, &Effects::none())
        .await
        .expect("routed");
    let mut closed_other = other.clone();
    closed_other.state = LeadState::Closed;
    closed_other.revision += 1;
    match store
        .advance_lead(&closed_other, LeadState::Routed, &release)
        .await
    {
        Err(StoreError::Contended(what)) => assert!(what.contains(&counter), "{what}"),
        other => panic!("a release below zero must be refused, got {other:?}"),
    }
    assert_eq!(store.counter(&counter).await.expect("read"), 0);
    assert_eq!(
        state_of(store, &other.id).await,
        LeadState::Routed,
        "nothing written"
    );
}

/// Routes `lead` from Enriched with `effects`.
async fn route_with(
    store: &dyn LeadStore,
    lead: &Lead,
    effects: &Effects,
) -> Result<(), StoreError> {
    let mut routed = lead.clone();
    routed.state = LeadState::Routed;
    store
        .advance_lead(&routed, LeadState::Enriched, effects)
        .await
}

async fn state_of(store: &dyn LeadStore, id: &str) -> LeadState {
    store
        .get_lead(id)
        .await
        .expect("read")
        .expect("stored")
        .state
}

fn capped(name: &str, limit: i64) -> Effects {
    Effects {
        counters: vec![CounterBump {
            name: name.to_owned(),
            limit: Some(limit),
        }],
        ..Effects::none()
    }
}

async fn a_capped_counter_stops_at_its_limit_under_concurrency(adapters: Adapters) {
    const CAP: i64 = 5;
    let counter = unique("open_leads:rep:alice");
    let mut leads = Vec::new();
    for _ in 0..12 {
        leads.push(enriched_lead(adapters.store.as_ref()).await);
    }
    let attempts = leads.iter().cloned().map(|lead| {
        let store = adapters.store.clone();
        let effects = capped(&counter, CAP);
        tokio::spawn(async move {
            let outcome = route_with(store.as_ref(), &lead, &effects).await;
            (lead.id, outcome)
        })
    });
    let outcomes: Vec<(String, Result<(), StoreError>)> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let routed = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(routed, 5, "exactly the cap is routed: {outcomes:?}");
    assert_eq!(adapters.store.counter(&counter).await.expect("read"), CAP);
    let mut refused = Vec::new();
    for (id, outcome) in &outcomes {
        let state = state_of(adapters.store.as_ref(), id).await;
        match outcome {
            Ok(()) => assert_eq!(state, LeadState::Routed),
            Err(StoreError::Contended(why)) => {
                assert!(why.contains(&counter) && why.contains("limit 5"), "{why}");
                assert_eq!(
                    state,
                    LeadState::Enriched,
                    "a refused write changed nothing"
                );
                refused.push(id.clone());
            }
            Err(other) => panic!("expected Contended, got {other}"),
        }
    }

    // The lead's own state is checked first: a routed lead is a Conflict even at the cap.
    let (winner, _) = outcomes.iter().find(|(_, r)| r.is_ok()).expect("a winner");
    let winner = leads.iter().find(|l| &l.id == winner).expect("winner lead");
    let error = route_with(adapters.store.as_ref(), winner, &capped(&counter, CAP))
        .await
        .expect_err("already routed");
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");

    // A missing counter counts as 0: a cap of 0 refuses it, a cap of 1 starts it.
    let loser = leads
        .iter()
        .find(|l| l.id == refused[0])
        .expect("loser lead");
    let fresh = unique("open_leads:rep:bob");
    let error = route_with(adapters.store.as_ref(), loser, &capped(&fresh, 0))
        .await
        .expect_err("cap of 0");
    assert!(matches!(error, StoreError::Contended(_)), "{error}");
    assert_eq!(adapters.store.counter(&fresh).await.expect("read"), 0);
    route_with(adapters.store.as_ref(), loser, &capped(&fresh, 1))
        .await
        .expect("below the cap");
    assert_eq!(adapters.store.counter(&fresh).await.expect("read"), 1);
}

/// A ledger with one rep's turn recorded on top of `base`, at the next version.
fn next_ledger(base: &PoolLedger, rep: &str) -> PoolLedger {
    let mut ledger = base.clone();
    ledger.accrue(&[("alice", 2), ("bob", 1)]);
    ledger.record_turn(rep, Timestamp::now());
    ledger.version = base.version + 1;
    ledger
}

fn ledger_effects(pool: &str, period: &str, ledger: PoolLedger, counters: &[&str]) -> Effects {
    Effects {
        ledgers: vec![LedgerWrite {
            pool: pool.to_owned(),
            period: period.to_owned(),
            ledger,
        }],
        ..bump(counters)
    }
}

async fn pool_ledgers_round_trip(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let pool = unique("emea");
    let missing = store.ledger(&pool, "2026-W48").await.expect("read");
    assert_eq!(
        missing,
        PoolLedger::default(),
        "a missing ledger is empty at version 0"
    );

    let first = next_ledger(&missing, "alice");
    assert_eq!(first.version, 1);
    let lead = enriched_lead(store).await;
    route_with(
        store,
        &lead,
        &ledger_effects(&pool, "2026-W48", first.clone(), &[]),
    )
    .await
    .expect("first write");
    assert_eq!(store.ledger(&pool, "2026-W48").await.expect("read"), first);
    // Periods and pools are separate ledgers.
    assert_eq!(
        store.ledger(&pool, "2026-W49").await.expect("read"),
        PoolLedger::default()
    );
    assert_eq!(
        store
            .ledger(&unique("apac"), "2026-W48")
            .await
            .expect("read"),
        PoolLedger::default()
    );

    let second = next_ledger(&first, "bob");
    let lead = enriched_lead(store).await;
    route_with(
        store,
        &lead,
        &ledger_effects(&pool, "2026-W48", second.clone(), &[]),
    )
    .await
    .expect("second write");
    assert_eq!(store.ledger(&pool, "2026-W48").await.expect("read"), second);
}

async fn a_stale_ledger_write_is_refused_and_changes_nothing(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let (pool, period) = (unique("emea"), "2026-W48");
    let counter = unique("open_leads:rep:alice");
    let read = store.ledger(&pool, period).await.expect("read");
    let first = next_ledger(&read, "alice");
    let winner = enriched_lead(store).await;
    route_with(
        store,
        &winner,
        &ledger_effects(&pool, period, first.clone(), &[&counter]),
    )
    .await
    .expect("first router wins");

    // A second router decided on the same version 0 read: its write must not land.
    let stale = next_ledger(&read, "bob");
    let loser = enriched_lead(store).await;
    let error = route_with(
        store,
        &loser,
        &ledger_effects(&pool, period, stale, &[&counter]),
    )
    .await
    .expect_err("stale version");
    match &error {
        StoreError::Contended(why) => assert!(why.contains(&pool) && why.contains(period), "{why}"),
        other => panic!("expected Contended, got {other}"),
    }
    assert_eq!(state_of(store, &loser.id).await, LeadState::Enriched);
    assert_eq!(store.ledger(&pool, period).await.expect("read"), first);
    assert_eq!(
        store.counter(&counter).await.expect("read"),
        1,
        "the refused write's counter bump was rolled back"
    );

    // Deciding again on fresh figures succeeds.
    let fresh = next_ledger(&first, "bob");
    route_with(
        store,
        &loser,
        &ledger_effects(&pool, period, fresh.clone(), &[&counter]),
    )
    .await
    .expect("retry on the fresh version");
    assert_eq!(store.ledger(&pool, period).await.expect("read"), fresh);
    assert_eq!(store.counter(&counter).await.expect("read"), 2);
}

/// A claim taking a lead from the rep the rotation picked: the release, the claimer's bump and
/// the ledger's turn moved in one write, refused whole when the ledger moved since it was read.
async fn a_claim_moves_its_counters_and_rotation_turn_together_or_not_at_all(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let (pool, period) = (unique("amer"), "2026-W48");
    let (alice, dana) = (
        unique("open_leads:rep:alice"),
        unique("open_leads:rep:dana"),
    );
    let read = store.ledger(&pool, period).await.expect("read");
    let routed_ledger = next_ledger(&read, "alice");
    let lead = enriched_lead(store).await;
    route_with(
        store,
        &lead,
        &ledger_effects(&pool, period, routed_ledger.clone(), &[&alice]),
    )
    .await
    .expect("routed to alice");
    let routed = store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    let mut claimed = routed.clone();
    claimed.state = LeadState::Claimed;
    // Alice's turn given back, Dana's counted, the open lead moved from Alice to Dana.
    let claim_effects = |base: &PoolLedger| {
        let mut moved = base.clone();
        if let Some(tally) = moved.members.get_mut("alice") {
            tally.received -= 1;
        }
        moved.record_turn("dana", Timestamp::now());
        moved.version = base.version + 1;
        let effects = Effects {
            releases: vec![alice.clone()],
            ..ledger_effects(&pool, period, moved.clone(), &[&dana])
        };
        (moved, effects)
    };
    let (_, stale) = claim_effects(&routed_ledger);

    // Another router writes the ledger first: the claim changes nothing.
    let other = next_ledger(&routed_ledger, "bob");
    let bystander = enriched_lead(store).await;
    route_with(
        store,
        &bystander,
        &ledger_effects(&pool, period, other.clone(), &[]),
    )
    .await
    .expect("the other router");
    let error = store
        .advance_lead(&claimed, LeadState::Routed, &stale)
        .await
        .expect_err("the ledger moved");
    assert!(matches!(error, StoreError::Contended(_)), "{error}");
    assert_eq!(state_of(store, &lead.id).await, LeadState::Routed);
    assert_eq!(store.counter(&alice).await.expect("read"), 1);
    assert_eq!(store.counter(&dana).await.expect("read"), 0);
    assert_eq!(store.ledger(&pool, period).await.expect("read"), other);

    // Decided again on the fresh ledger: all of it lands.
    let (moved, fresh) = claim_effects(&other);
    store
        .advance_lead(&claimed, LeadState::Routed, &fresh)
        .await
        .expect("claim");
    assert_eq!(state_of(store, &lead.id).await, LeadState::Claimed);
    assert_eq!(store.counter(&alice).await.expect("read"), 0);
    assert_eq!(store.counter(&dana).await.expect("read"), 1);
    let stored = store.ledger(&pool, period).await.expect("read");
    assert_eq!(stored, moved);
    assert_eq!(stored.tally("alice").received, 0);
    assert_eq!(stored.tally("dana").received, 1);
}

async fn leads_since_in_captured_order(adapters: Adapters) {
    let store = adapters.store.as_ref();
    // In the future and whole milliseconds (the stores keep milliseconds): no other lead is
    // captured at or after it.
    let base = Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let base = Timestamp::from_millisecond(base.as_millisecond()).expect("timestamp");
    let at = |n: i64| base + jiff::SignedDuration::from_secs(n);
    let mut ids = vec![String::new(); 5];
    // Created out of order, so the answer's order comes from captured times.
    for n in [3, 0, 4, 1, 2] {
        let mut lead = lead(&unique(&format!("lead{n}")), &unique("evt"));
        lead.timeline.captured_at = Some(at(n));
        assert_eq!(
            store.create_lead(&lead).await.expect("create"),
            Created::New
        );
        ids[usize::try_from(n).expect("index")] = lead.id;
    }
    let since = |from: i64, limit: usize| async move {
        store
            .leads_since(at(from), limit)
            .await
            .expect("leads_since")
            .into_iter()
            .map(|lead| lead.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(since(0, 10).await, ids);
    assert_eq!(since(2, 10).await, ids[2..], "since is inclusive");
    assert_eq!(since(1, 2).await, ids[1..3], "at most limit, oldest first");
    assert!(since(5, 10).await.is_empty());
    assert!(since(0, 0).await.is_empty());
}

async fn recent_leads_newest_first_from_the_capture_index(adapters: Adapters) {
    let store = adapters.store.as_ref();
    // A day ahead, as above: no other test's lead is captured at or after it. Across a UTC
    // midnight, so the DynamoDB read walks two days of its index.
    let tomorrow = (Timestamp::now() + jiff::SignedDuration::from_hours(24))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let midnight = tomorrow
        .tomorrow()
        .expect("a date")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("midnight")
        .timestamp();
    let at = |n: i64| midnight + jiff::SignedDuration::from_secs(n);
    let mut ids = Vec::new();
    for n in [-2, 1, -1, 2, 0] {
        let mut lead = lead(&unique(&format!("recent{n}")), &unique("evt"));
        lead.timeline.captured_at = Some(at(n));
        lead.capture.timestamp = Some(at(n));
        store.create_lead(&lead).await.expect("create");
        ids.push((n, lead.id));
    }
    ids.sort();
    let newest_first: Vec<String> = ids.iter().rev().map(|(_, id)| id.clone()).collect();
    let recent = |from: i64, limit: usize| async move {
        store
            .recent_leads(at(from), limit)
            .await
            .expect("recent_leads")
            .into_iter()
            .map(|lead| lead.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(recent(-2, 10).await, newest_first);
    assert_eq!(
        recent(-1, 10).await,
        newest_first[..4],
        "since is inclusive"
    );
    assert_eq!(recent(-2, 3).await, newest_first[..3], "the newest `limit`");
    assert!(recent(3, 10).await.is_empty());
}

async fn conditional_failures_are_typed(adapters: Adapters) {
    let mut lead = enriched_lead(adapters.store.as_ref()).await;
    lead.state = LeadState::Notified;
    let error = adapters
        .store
        .advance_lead(&lead, LeadState::Routed, &Effects::none())
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
        .advance_lead(&ghost, LeadState::Captured, &bump(&[&unique("c")]))
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
        .advance_lead(&routed, LeadState::Enriched, &Effects::none())
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

async fn a_failure_is_cleared_only_while_it_is_the_one_read(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let lead = enriched_lead(store).await;
    let failure = |error: &str| StageFailure {
        stage: Stage::Notify,
        error: error.into(),
        at: Timestamp::now(),
    };
    let read = |id: String| async move {
        store
            .get_lead(&id)
            .await
            .expect("read")
            .expect("stored")
            .last_failure
    };
    let first = failure("slack answered 500");
    store
        .record_failure(&lead.id, &first)
        .await
        .expect("recorded");
    let seen = read(lead.id.clone()).await.expect("a failure");
    assert_eq!(seen, first, "read back exactly as recorded");
    // Another attempt failed after the read: clearing what was read leaves the newer one.
    let newer = failure("slack answered 503");
    store
        .record_failure(&lead.id, &newer)
        .await
        .expect("recorded");
    store.clear_failure(&lead.id, &seen).await.expect("cleared");
    assert_eq!(read(lead.id.clone()).await, Some(newer.clone()));
    // The stage succeeded after the newest failure: it is gone, and clearing again is harmless.
    let seen = read(lead.id.clone()).await.expect("a failure");
    store.clear_failure(&lead.id, &seen).await.expect("cleared");
    assert_eq!(read(lead.id.clone()).await, None);
    store
        .clear_failure(&lead.id, &seen)
        .await
        .expect("harmless");
    store
        .clear_failure(&unique("no-such-lead"), &seen)
        .await
        .expect("harmless for a missing lead");
}

async fn a_given_up_message_moves_to_the_dead_letter_queue_with_its_count_and_error(
    adapters: Adapters,
) {
    let queue = adapters.queue.as_ref();
    let lead_id = unique("lead");
    let envelope = Envelope::new(&lead_id, Stage::Notify, "trace");
    queue.send(Stage::Notify, &envelope).await.expect("send");
    let first = receive_one(queue, Stage::Notify).await.expect("received");
    queue
        .retry_later(
            Stage::Notify,
            &first.receipt,
            Duration::ZERO,
            "slack answered 500",
        )
        .await
        .expect("retry");
    let second = receive_one(queue, Stage::Notify)
        .await
        .expect("received again");
    assert_eq!(second.receive_count, 2);
    let error = "gave up after 2 attempts over 0s: delivery failed: slack answered 500";
    queue
        .give_up(Stage::Notify, &second, error)
        .await
        .expect("given up");
    // Out of the stage's queue for good (not hidden: gone), whatever the visibility timeout.
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
    assert_eq!(letters[0].receive_count, 2);
    assert_eq!(letters[0].last_error.as_deref(), Some(error));
    assert_eq!(
        Envelope::from_json(&letters[0].body).expect("envelope"),
        envelope
    );
    // Replayed like any dead letter.
    adapters
        .dead
        .replay(Stage::Notify, &letters[0])
        .await
        .expect("replay");
    let replayed = receive_one(queue, Stage::Notify).await.expect("replayed");
    queue
        .delete(Stage::Notify, &replayed.receipt)
        .await
        .expect("delete");
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
    // The receipts as the console lists them: slack delivered, terminal still leased.
    let millis = |at: Timestamp| Timestamp::from_millisecond(at.as_millisecond()).expect("ms");
    let receipts = store.delivery_receipts(&lead).await.expect("receipts");
    assert_eq!(
        receipts,
        vec![
            DeliveryReceipt {
                channel: "slack".into(),
                delivered_at: Some(millis(later)),
                lease_until: None,
            },
            DeliveryReceipt {
                channel: "terminal".into(),
                delivered_at: None,
                lease_until: Some(millis(now + jiff::SignedDuration::from_secs(30))),
            },
        ]
    );
    assert!(store
        .delivery_receipts(&unique("no-such-lead"))
        .await
        .expect("receipts")
        .is_empty());
}

/// `advance_lead_and_send`: a store that also holds the queues enqueues the next stage's
/// message in the lead's own write; one that does not says so and enqueues nothing. A write
/// refused by its guard enqueues nothing either way.
async fn a_lead_and_its_next_message_are_written_together_or_not_at_all(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let queue = adapters.queue.as_ref();
    let mut lead = enriched_lead(store).await;
    let next = Outgoing {
        stage: Stage::Notify,
        envelope: Envelope::new(&lead.id, Stage::Notify, "trace"),
    };
    lead.state = LeadState::Routed;
    let sent = store
        .advance_lead_and_send(&lead, LeadState::Enriched, &Effects::none(), &next)
        .await
        .expect("routed");
    let queued = receive_one(queue, Stage::Notify).await;
    match (&adapters.raw, sent) {
        (RawStore::Sqlite(_), true) => {
            let message = queued.expect("queued with the lead");
            assert_eq!(message.body, next.envelope.to_json());
            queue
                .delete(Stage::Notify, &message.receipt)
                .await
                .expect("delete");
        }
        (RawStore::Dynamo { .. }, false) => assert!(queued.is_none(), "the caller sends it"),
        (_, sent) => panic!("unexpected: sent = {sent}"),
    }
    assert_eq!(state_of(store, &lead.id).await, LeadState::Routed);

    // The same write again: the guard refuses it, and no second message appears.
    let refused = store
        .advance_lead_and_send(&lead, LeadState::Enriched, &Effects::none(), &next)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert!(receive_one(queue, Stage::Notify).await.is_none());
}

/// `create_lead_and_send`: the embedded store queues a new lead's enrich message in the
/// lead's own write (so a refused webhook leaves neither behind); DynamoDB says it did not,
/// and the caller sends. A duplicate event queues nothing.
async fn a_new_lead_and_its_first_message_are_written_together_and_a_duplicate_sends_nothing(
    adapters: Adapters,
) {
    let store = adapters.store.as_ref();
    let queue = adapters.queue.as_ref();
    let lead = lead(&unique("lead"), &unique("evt"));
    let first = Outgoing {
        stage: Stage::Enrich,
        envelope: Envelope::new(&lead.id, Stage::Enrich, "trace"),
    };
    let (created, sent) = store
        .create_lead_and_send(&lead, None, &first)
        .await
        .expect("created");
    assert_eq!(created, Created::New);
    let queued = receive_one(queue, Stage::Enrich).await;
    match (&adapters.raw, sent) {
        (RawStore::Sqlite(_), true) => {
            let message = queued.expect("queued with the lead");
            assert_eq!(message.body, first.envelope.to_json());
            queue
                .delete(Stage::Enrich, &message.receipt)
                .await
                .expect("delete");
        }
        (RawStore::Dynamo { .. }, false) => assert!(queued.is_none(), "the caller sends it"),
        (_, sent) => panic!("unexpected: sent = {sent}"),
    }

    // The same event again, under a fresh lead id: the first lead, and no second message.
    let mut again = lead.clone();
    again.id = unique("lead");
    let (created, sent) = store
        .create_lead_and_send(&again, None, &first)
        .await
        .expect("duplicate");
    assert!(
        matches!(&created, Created::Duplicate(existing) if existing.id == lead.id),
        "{created:?}"
    );
    assert!(!sent);
    assert!(receive_one(queue, Stage::Enrich).await.is_none());
}

/// `advance_leads_and_send`: the writes before a refused one apply (with their messages),
/// the refused one and those after it change nothing, and the store says which.
async fn a_batch_of_lead_writes_applies_in_order_and_stops_at_the_first_refused(
    adapters: Adapters,
) {
    let store = adapters.store.as_ref();
    let queue = adapters.queue.as_ref();
    let mut leads = Vec::new();
    for _ in 0..3 {
        let mut lead = enriched_lead(store).await;
        lead.state = LeadState::Routed;
        leads.push(lead);
    }
    // The second was routed meanwhile by someone else: its write is refused.
    store
        .advance_lead(&leads[1], LeadState::Enriched, &Effects::none())
        .await
        .expect("routed elsewhere");
    let nexts: Vec<Outgoing> = leads
        .iter()
        .map(|lead| Outgoing {
            stage: Stage::Notify,
            envelope: Envelope::new(&lead.id, Stage::Notify, "trace"),
        })
        .collect();
    let none = Effects::none();
    let writes: Vec<Advance<'_>> = leads
        .iter()
        .zip(&nexts)
        .map(|(lead, next)| Advance {
            lead,
            from: LeadState::Enriched,
            effects: &none,
            next,
        })
        .collect();
    let advanced = store.advance_leads_and_send(&writes).await;
    assert_eq!(advanced.sent.len(), 1, "{advanced:?}");
    assert!(
        matches!(advanced.stopped, Some(StoreError::Conflict { .. })),
        "{advanced:?}"
    );
    assert_eq!(state_of(store, &leads[0].id).await, LeadState::Routed);
    assert_eq!(state_of(store, &leads[2].id).await, LeadState::Enriched);
    let queued = receive_one(queue, Stage::Notify).await;
    match (&adapters.raw, advanced.sent[0]) {
        (RawStore::Sqlite(_), true) => {
            let message = queued.expect("the first write's message");
            assert_eq!(message.body, nexts[0].envelope.to_json());
            queue
                .delete(Stage::Notify, &message.receipt)
                .await
                .expect("delete");
            assert!(receive_one(queue, Stage::Notify).await.is_none());
        }
        (RawStore::Dynamo { .. }, false) => assert!(queued.is_none(), "the caller sends it"),
        (_, sent) => panic!("unexpected: sent = {sent}"),
    }
}

/// The Slack app's posted messages, for editing them later (a claim, an escalation): kept
/// under their delivery receipt (a retry replaces, never adds), read back per lead, on both
/// stores (the Lambda notify function posts; the claim and sla functions edit).
async fn posted_messages_are_kept_per_receipt_and_read_back_per_lead(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let lead = enriched_lead(store).await;
    let other = enriched_lead(store).await;
    assert!(store
        .posted_messages(&lead.id)
        .await
        .expect("read")
        .is_empty());
    let dm = PostedMessage {
        channel: "D0DM".into(),
        ts: "1764150000.000100".into(),
    };
    let team = PostedMessage {
        channel: "C0TEAM".into(),
        ts: "1764150000.000200".into(),
    };
    for (receipt, message) in [
        ("slack-app:rep:bruno", &dm),
        ("slack-app:team:emea", &team),
        // A retry of the first delivery posts again: its receipt keeps the newest.
        ("slack-app:rep:bruno", &dm),
    ] {
        store
            .record_posted(&lead.id, receipt, message)
            .await
            .expect("kept");
    }
    store
        .record_posted(&other.id, "slack-app:rep:dana", &team)
        .await
        .expect("kept");
    let mut posted = store.posted_messages(&lead.id).await.expect("read");
    posted.sort_by(|a, b| a.ts.cmp(&b.ts));
    assert_eq!(posted, vec![dm, team]);
    assert_eq!(
        store.posted_messages(&other.id).await.expect("read").len(),
        1
    );
    // The lead itself still reads as it was.
    assert_eq!(state_of(store, &lead.id).await, LeadState::Enriched);
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

async fn a_permanent_failure_is_parked_in_the_dead_letter_queue_with_its_error(adapters: Adapters) {
    let queue = adapters.queue.as_ref();
    let lead_id = unique("lead");
    let envelope = Envelope::new(&lead_id, Stage::Notify, "trace");
    queue
        .dead_letter(
            Stage::Notify,
            &envelope,
            "permanent delivery failure: teams answered 400: Bad payload",
        )
        .await
        .expect("dead-letter");
    // Parked, not offered to the stage.
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
    assert_eq!(
        letters[0].last_error.as_deref(),
        Some("permanent delivery failure: teams answered 400: Bad payload")
    );
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

// ---------------------------------------------------------------------------------------------
// The contact index: a person's open lead, found by their normalised e-mail address.

/// Routes `lead` at `at` and makes it the contact's open lead, if the index still holds
/// `replaces`; the owner's counter moves in the same write.
async fn route_for_contact(
    store: &dyn LeadStore,
    lead: &Lead,
    contact: &str,
    replaces: Option<&str>,
    at: Timestamp,
    counter: &str,
) -> Result<(), StoreError> {
    let mut routed = lead.clone();
    routed.timeline.routed_at = Some(at);
    let effects = Effects {
        contact: Some(ContactWrite {
            contact: contact.to_owned(),
            lead_id: lead.id.clone(),
            routed_at: at,
            replaces: replaces.map(str::to_owned),
        }),
        ..bump(&[counter])
    };
    route_with(store, &routed, &effects).await
}

fn open_id(lookup: &ContactLookup) -> Option<&str> {
    lookup.open.as_ref().map(|lead| lead.id.as_str())
}

async fn a_contact_points_at_its_open_lead_within_the_window(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let contact = format!("{}@acme.example", unique("jane"));
    let counter = unique("open");
    let hour = jiff::SignedDuration::from_hours(1);
    let routed_at = Timestamp::now();
    let window_start = routed_at - hour;

    let nothing = store
        .open_lead_for_contact(&contact, window_start)
        .await
        .expect("read");
    assert_eq!(nothing, ContactLookup::default());

    let first = enriched_lead(store).await;
    route_for_contact(store, &first, &contact, None, routed_at, &counter)
        .await
        .expect("routed");
    let found = store
        .open_lead_for_contact(&contact, window_start)
        .await
        .expect("read");
    assert_eq!(found.indexed.as_deref(), Some(first.id.as_str()));
    assert_eq!(open_id(&found), Some(first.id.as_str()));
    assert_eq!(store.counter(&counter).await.expect("read"), 1);

    // Routed before the window opened: indexed, but not a merge target.
    let later = store
        .open_lead_for_contact(&contact, routed_at + hour)
        .await
        .expect("read");
    assert_eq!(later.indexed.as_deref(), Some(first.id.as_str()));
    assert_eq!(open_id(&later), None);

    // Notified is still open; closed is not.
    let mut notified = store
        .get_lead(&first.id)
        .await
        .expect("read")
        .expect("stored");
    notified.state = LeadState::Notified;
    store
        .advance_lead(&notified, LeadState::Routed, &Effects::none())
        .await
        .expect("notified");
    let found = store
        .open_lead_for_contact(&contact, window_start)
        .await
        .expect("read");
    assert_eq!(open_id(&found), Some(first.id.as_str()));
    let mut closed = notified.clone();
    closed.state = LeadState::Closed;
    closed.revision += 1;
    store
        .advance_lead(&closed, LeadState::Notified, &Effects::none())
        .await
        .expect("closed");
    let after_close = store
        .open_lead_for_contact(&contact, window_start)
        .await
        .expect("read");
    assert_eq!(after_close.indexed.as_deref(), Some(first.id.as_str()));
    assert_eq!(open_id(&after_close), None);

    // The person's next lead takes the entry over from the one read.
    let second = enriched_lead(store).await;
    route_for_contact(
        store,
        &second,
        &contact,
        Some(&first.id),
        routed_at,
        &counter,
    )
    .await
    .expect("routed");
    let found = store
        .open_lead_for_contact(&contact, window_start)
        .await
        .expect("read");
    assert_eq!(open_id(&found), Some(second.id.as_str()));
    let stored = found.open.expect("open");
    assert_eq!(stored.state, LeadState::Routed);
    assert_eq!(stored.timeline.routed_at, Some(routed_at));

    // Another person's address is another entry.
    let other = store
        .open_lead_for_contact(&format!("other-{contact}"), window_start)
        .await
        .expect("read");
    assert_eq!(other, ContactLookup::default());
}

/// Two leads from one person routed at once cannot both become the open lead: the write that
/// read a stale entry is refused with nothing written (lead, counter, entry), so its router
/// decides again and merges.
async fn a_stale_contact_write_is_refused_and_changes_nothing(adapters: Adapters) {
    let store = adapters.store.clone();
    let contact = format!("{}@acme.example", unique("jane"));
    let counter = unique("open");
    let at = Timestamp::now();
    let since = at - jiff::SignedDuration::from_hours(1);

    let racers: Vec<Lead> = {
        let mut leads = Vec::new();
        for _ in 0..4 {
            leads.push(enriched_lead(store.as_ref()).await);
        }
        leads
    };
    let attempts = racers.iter().cloned().map(|lead| {
        let (store, contact, counter) = (store.clone(), contact.clone(), counter.clone());
        tokio::spawn(async move {
            let result =
                route_for_contact(store.as_ref(), &lead, &contact, None, at, &counter).await;
            (lead.id, result)
        })
    });
    let results: Vec<(String, Result<(), StoreError>)> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (id, result) in &results {
        if let Err(error) = result {
            assert!(matches!(error, StoreError::Contended(_)), "{error}");
            assert_eq!(state_of(store.as_ref(), id).await, LeadState::Enriched);
        }
    }
    assert_eq!(store.counter(&counter).await.expect("read"), 1);
    let found = store
        .open_lead_for_contact(&contact, since)
        .await
        .expect("read");
    assert_eq!(open_id(&found), Some(winners[0].as_str()));

    // Replacing an entry that names another lead is refused too.
    let late = racers
        .iter()
        .find(|lead| &lead.id != winners[0])
        .expect("a loser");
    let refused = route_for_contact(
        store.as_ref(),
        late,
        &contact,
        Some("some-other-lead"),
        at,
        &counter,
    )
    .await
    .expect_err("stale");
    assert!(matches!(refused, StoreError::Contended(_)), "{refused}");
    assert_eq!(
        state_of(store.as_ref(), &late.id).await,
        LeadState::Enriched
    );
    assert_eq!(store.counter(&counter).await.expect("read"), 1);
    let found = store
        .open_lead_for_contact(&contact, since)
        .await
        .expect("read");
    assert_eq!(found.indexed.as_deref(), Some(winners[0].as_str()));
}

async fn cache_entries_expire_and_are_replaced(adapters: Adapters) {
    let store = adapters.cache;
    let now = Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let (fresh, stale) = (unique("cache-fresh"), unique("cache-stale"));

    assert_eq!(store.cached(&fresh, now).await.expect("read"), None);
    store
        .cache(&fresh, r#"{"company":"Acme"}"#, now + hour)
        .await
        .expect("write");
    store
        .cache(&stale, "{}", now - hour)
        .await
        .expect("write expired");
    assert_eq!(
        store.cached(&fresh, now).await.expect("read").as_deref(),
        Some(r#"{"company":"Acme"}"#)
    );
    // Expired entries are never answered, whether or not the store has removed them yet.
    assert_eq!(store.cached(&stale, now).await.expect("read"), None);
    assert_eq!(
        store.cached(&fresh, now + hour + hour).await.expect("read"),
        None,
        "read after its expiry"
    );

    // A new answer replaces the old one and its expiry.
    store
        .cache(&fresh, "{}", now + hour + hour + hour)
        .await
        .expect("replace");
    assert_eq!(
        store
            .cached(&fresh, now + hour + hour)
            .await
            .expect("read")
            .as_deref(),
        Some("{}")
    );
}

/// Two writers read the same lead; the second to write loses even though the lead is still in
/// the state it expects (a claim and an escalation racing), and nothing of it is written.
async fn a_write_from_a_stale_read_is_refused_and_changes_nothing(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let lead = enriched_lead(store).await;
    route_with(store, &lead, &Effects::none())
        .await
        .expect("routed");
    let read = store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        read.revision,
        lead.revision + 1,
        "every write bumps the revision"
    );

    let mut first = read.clone();
    first.close_reason = Some("first writer".into());
    store
        .advance_lead(&first, LeadState::Routed, &Effects::none())
        .await
        .expect("the first writer wins");
    let counter = unique("never-bumped");
    let mut second = read.clone();
    second.state = LeadState::Notified;
    match store
        .advance_lead(&second, LeadState::Routed, &bump(&[&counter]))
        .await
    {
        Err(StoreError::Stale(id)) => assert_eq!(id, lead.id),
        other => panic!("a write from a stale read must be refused, got {other:?}"),
    }
    let stored = store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.state, LeadState::Routed);
    assert_eq!(stored.close_reason.as_deref(), Some("first writer"));
    assert_eq!(stored.revision, read.revision + 1);
    assert_eq!(
        store.counter(&counter).await.expect("read"),
        0,
        "no effect applied"
    );
}

/// sla-watch reads the sparse due index: routed and notified leads past their deadline, in
/// deadline order; never a claimed, closed or merged lead, nor one not yet due.
async fn the_due_index_holds_only_leads_waiting_for_a_claim(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let now = Timestamp::now();
    let minutes = |m: i64| now + jiff::SignedDuration::from_mins(m);
    let routed_at_due = |due: Timestamp| {
        let due = Some(due);
        move |mut lead: Lead| {
            lead.state = LeadState::Routed;
            lead.timeline.sla_due_at = due;
            lead
        }
    };
    let mut ids = Vec::new();
    for due in [minutes(-3), minutes(-10), minutes(5)] {
        let lead = enriched_lead(store).await;
        let routed = routed_at_due(due)(lead.clone());
        store
            .advance_lead(&routed, LeadState::Enriched, &Effects::none())
            .await
            .expect("routed");
        ids.push(lead.id);
    }
    let due_ids = |leads: Vec<Lead>| leads.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        due_ids(store.due_leads(now, 10).await.expect("due")),
        vec![ids[1].clone(), ids[0].clone()],
        "due ones only, earliest first"
    );
    assert_eq!(
        due_ids(store.due_leads(now, 1).await.expect("due")),
        vec![ids[1].clone()]
    );

    // Claimed: out of the index.
    let mut claimed = store
        .get_lead(&ids[1])
        .await
        .expect("read")
        .expect("stored");
    claimed.state = LeadState::Claimed;
    claimed.claim = Some(leadrelay_shared::model::Claim {
        rep: "alice".into(),
        at: now,
        via: "link".into(),
        routed_to: None,
        allowed: None,
    });
    store
        .advance_lead(&claimed, LeadState::Routed, &Effects::none())
        .await
        .expect("claimed");
    // Merged into another lead: never watched on its own.
    let merged = enriched_lead(store).await;
    let mut merged = routed_at_due(minutes(-20))(merged);
    merged.merged_into = Some(ids[0].clone());
    store
        .advance_lead(&merged, LeadState::Enriched, &Effects::none())
        .await
        .expect("merged");
    assert_eq!(
        due_ids(store.due_leads(now, 10).await.expect("due")),
        vec![ids[0].clone()]
    );
    // Escalated: the new deadline replaces the old one in the index.
    let mut moved = store
        .get_lead(&ids[0])
        .await
        .expect("read")
        .expect("stored");
    moved.timeline.sla_due_at = Some(minutes(4));
    store
        .advance_lead(&moved, LeadState::Routed, &Effects::none())
        .await
        .expect("moved");
    assert!(store.due_leads(now, 10).await.expect("due").is_empty());
    let later = due_ids(store.due_leads(minutes(6), 10).await.expect("due"));
    assert_eq!(later, vec![ids[0].clone(), ids[2].clone()]);
    // Closed: out.
    let mut closed = store
        .get_lead(&ids[2])
        .await
        .expect("read")
        .expect("stored");
    closed.state = LeadState::Closed;
    store
        .advance_lead(&closed, LeadState::Routed, &Effects::none())
        .await
        .expect("closed");
    assert_eq!(
        due_ids(store.due_leads(minutes(6), 10).await.expect("due")),
        vec![ids[0].clone()]
    );
}

/// A claim sets its rep's run of missed SLAs back to zero in the lead's own write; an operator
/// resumes a paused rep the same way.
async fn resets_zero_counters_with_the_lead(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let streak = unique("sla_streak:rep");
    let lead = enriched_lead(store).await;
    route_with(store, &lead, &bump(&[&streak]))
        .await
        .expect("routed");
    let other = enriched_lead(store).await;
    route_with(store, &other, &bump(&[&streak]))
        .await
        .expect("routed");
    assert_eq!(store.counter(&streak).await.expect("read"), 2);
    let mut claimed = store
        .get_lead(&lead.id)
        .await
        .expect("read")
        .expect("stored");
    claimed.state = LeadState::Claimed;
    let reset = Effects {
        resets: vec![streak.clone()],
        ..Effects::none()
    };
    store
        .advance_lead(&claimed, LeadState::Routed, &reset)
        .await
        .expect("claimed");
    assert_eq!(store.counter(&streak).await.expect("read"), 0);

    route_with(store, &enriched_lead(store).await, &bump(&[&streak]))
        .await
        .expect("routed");
    assert_eq!(store.counter(&streak).await.expect("read"), 1);
    store.reset_counter(&streak).await.expect("reset");
    assert_eq!(store.counter(&streak).await.expect("read"), 0);
}

/// A lead this version cannot decode (here, form fields nested past serde_json's recursion
/// limit, as an older version accepted them): reading it by id names it; the listings skip it
/// and return the rest; a retry of its event finds it.
async fn an_undecodable_lead_is_named_by_id_and_skipped_by_listings(adapters: Adapters) {
    let store = adapters.store.as_ref();
    // In the future and whole milliseconds, as in leads_since_in_captured_order.
    let base = Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let base = Timestamp::from_millisecond(base.as_millisecond()).expect("timestamp");
    let now = Timestamp::now();
    let mut leads = Vec::new();
    for n in 0..3 {
        let mut lead = lead(&unique(&format!("lead{n}")), &unique("evt"));
        lead.timeline.captured_at = Some(base + jiff::SignedDuration::from_secs(n));
        assert_eq!(
            store.create_lead(&lead).await.expect("create"),
            Created::New
        );
        let mut routed = lead.clone();
        routed.state = LeadState::Routed;
        routed.timeline.sla_due_at = Some(now - jiff::SignedDuration::from_mins(10 - n));
        store
            .advance_lead(&routed, LeadState::Captured, &Effects::none())
            .await
            .expect("routed");
        leads.push(lead);
    }
    let bad = &leads[1];
    let mut body =
        serde_json::to_value(store.get_lead(&bad.id).await.expect("read")).expect("json");
    body["capture"]["form_fields"] = serde_json::json!({"deep": "DEEP"});
    let deep = format!("{}1{}", "[".repeat(127), "]".repeat(127));
    let body = body.to_string().replace(r#""DEEP""#, &deep);
    adapters.raw.overwrite_body(&bad.id, &body).await;

    match store.get_lead(&bad.id).await {
        Err(StoreError::Undecodable { lead_id, reason }) => {
            assert_eq!(lead_id, bad.id);
            assert!(reason.contains("recursion limit"), "{reason}");
        }
        other => panic!("expected the lead named as undecodable, got {other:?}"),
    }
    let readable = vec![leads[0].id.clone(), leads[2].id.clone()];
    let ids = |found: Vec<Lead>| found.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.leads_since(base, 10).await.expect("leads_since")),
        readable
    );
    assert_eq!(
        ids(store.due_leads(now, 10).await.expect("due_leads")),
        readable
    );
    // The sender's retry of the quarantined lead's event: the store names that lead.
    match store.create_lead(bad).await {
        Err(StoreError::Undecodable { lead_id, .. }) => assert_eq!(lead_id, bad.id),
        other => panic!("expected the existing lead named, got {other:?}"),
    }
}

/// What a report reads: each lead's facts as of its last write, only for the leads captured in
/// the window asked, whatever day or shard they fall in; on SQLite a row written before facts
/// existed is rebuilt from its body.
async fn lead_facts_follow_every_write_and_are_read_by_capture_window(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let day = |d: &str| -> Timestamp { d.parse().expect("timestamp") };
    let mut ids = Vec::new();
    // Three days, several leads a day (spread over the shards), and one on each side.
    for (n, captured) in [
        "2026-11-19T23:59:59.999Z",
        "2026-11-20T00:00:00Z",
        "2026-11-20T12:00:00Z",
        "2026-11-21T08:00:00Z",
        "2026-11-21T09:00:00Z",
        "2026-11-21T10:00:00Z",
        "2026-11-22T23:59:59.999Z",
        "2026-11-23T00:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let mut lead = lead(&format!("facts-{n}"), &format!("evt-facts-{n}"));
        lead.timeline.captured_at = Some(day(captured));
        assert_eq!(
            store.create_lead(&lead).await.expect("create"),
            Created::New
        );
        ids.push(lead.id);
    }
    // A later write carries its facts: routed to Alice by a rule.
    let mut routed = store
        .get_lead("facts-3")
        .await
        .expect("read")
        .expect("lead");
    routed.state = LeadState::Routed;
    routed.assignment = Some(Assignment {
        owner: Owner::Rep("alice".into()),
        owner_name: "Alice".into(),
        rule: "EMEA".into(),
        reason: "test".into(),
        pool: None,
        held_until: None,
        trace: None,
    });
    store
        .advance_lead(&routed, LeadState::Captured, &Effects::none())
        .await
        .expect("advance");

    let mut facts = store
        .lead_facts(day("2026-11-20T00:00:00Z"), day("2026-11-23T00:00:00Z"))
        .await
        .expect("facts");
    facts.sort_by(|a, b| a.id.cmp(&b.id));
    let found: Vec<&str> = facts.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        found,
        ids[1..7].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let three = &facts[2];
    assert_eq!(three.owner, Some(Owner::Rep("alice".into())));
    assert_eq!(three.rule.as_deref(), Some("EMEA"));
    assert_eq!(three.state, LeadState::Routed);
    assert_eq!(three.captured_at, Some(day("2026-11-21T08:00:00Z")));
    assert_eq!(facts[0].owner, None);

    if let RawStore::Sqlite(path) = &adapters.raw {
        // As an earlier version left it: no facts. Read from the body, then kept.
        let db = rusqlite::Connection::open(path).expect("open");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        db.execute("UPDATE leads SET facts = NULL WHERE id = 'facts-3'", [])
            .expect("update");
        let again = store
            .lead_facts(day("2026-11-21T00:00:00Z"), day("2026-11-22T00:00:00Z"))
            .await
            .expect("facts");
        assert!(again
            .iter()
            .any(|f| f.id == "facts-3" && f.rule.as_deref() == Some("EMEA")));
        let kept: Option<String> = db
            .query_row("SELECT facts FROM leads WHERE id = 'facts-3'", [], |row| {
                row.get(0)
            })
            .expect("row");
        assert!(kept.is_some_and(|text| text.contains("EMEA")), "backfilled");
    }
}

fn console_session(login: &str, created_at: Timestamp, expires_at: Timestamp) -> Session {
    Session {
        key: Session::key(&unique("session-id")),
        login: login.to_owned(),
        csrf: "c5".repeat(32),
        created_at,
        expires_at,
    }
}

/// Whether the embedded store still holds a session row (None on DynamoDB, where TTL
/// deletes expired sessions in the background).
fn sqlite_session_row(raw: &RawStore, key: &str) -> Option<bool> {
    let RawStore::Sqlite(path) = raw else {
        return None;
    };
    let db = rusqlite::Connection::open(path).expect("open");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let rows: i64 = db
        .query_row(
            "SELECT count(*) FROM console_sessions WHERE key = ?1",
            rusqlite::params![key],
            |row| row.get(0),
        )
        .expect("count");
    Some(rows == 1)
}

async fn a_console_session_round_trips_until_it_expires_or_ends(adapters: Adapters) {
    let console = adapters.console.as_ref();
    let now = Timestamp::now();
    let hours = jiff::SignedDuration::from_hours;

    // An expired session is stored as it is given, and never returned.
    let stale = console_session("ana", now - hours(9), now - hours(1));
    console.start_session(&stale).await.expect("start stale");
    assert_eq!(console.session(&stale.key, now).await.expect("read"), None);

    let live = console_session("ana", now, now + hours(8));
    console.start_session(&live).await.expect("start");
    assert_eq!(
        console.session(&live.key, now).await.expect("read"),
        Some(live.clone()),
        "round-trips whole"
    );
    // Live until its last instant, then gone, whatever the store still holds.
    let last = live.expires_at - jiff::SignedDuration::from_nanos(1);
    assert_eq!(
        console.session(&live.key, last).await.expect("read"),
        Some(live.clone())
    );
    assert_eq!(
        console
            .session(&live.key, live.expires_at)
            .await
            .expect("read"),
        None
    );
    // Starting a session prunes the expired ones where the store does not expire them.
    if let Some(kept) = sqlite_session_row(&adapters.raw, &stale.key) {
        assert!(!kept, "the expired session's row was deleted");
    }
    assert!(sqlite_session_row(&adapters.raw, &live.key).unwrap_or(true));

    // Another session of the same login is its own.
    let other = console_session("ana", now, now + hours(8));
    console.start_session(&other).await.expect("start other");
    assert_eq!(
        console
            .session("0".repeat(64).as_str(), now)
            .await
            .expect("read"),
        None,
        "an unknown key opens nothing"
    );

    console.end_session(&live.key).await.expect("sign out");
    assert_eq!(console.session(&live.key, now).await.expect("read"), None);
    assert_eq!(
        console.session(&other.key, now).await.expect("read"),
        Some(other),
        "ending one session ends only that one"
    );
    // Signing out twice, or with a session that never was, is not an error.
    console.end_session(&live.key).await.expect("again");
    console
        .end_session(&Session::key(&unique("never")))
        .await
        .expect("unknown");
}

fn console_action(at: Timestamp, action: &str, target: &str) -> ConsoleAction {
    ConsoleAction {
        at,
        login: "ana".into(),
        action: action.into(),
        target: target.into(),
        detail: format!("{action} {target}"),
    }
}

fn targets(actions: &[ConsoleAction]) -> Vec<&str> {
    actions.iter().map(|a| a.target.as_str()).collect()
}

async fn audit_entries_come_back_newest_first_from_since_up_to_limit(adapters: Adapters) {
    let console = adapters.console.as_ref();
    let now = Timestamp::now();
    let mins = jiff::SignedDuration::from_mins;
    // Whole milliseconds, then two entries 100 and 700 microseconds into one millisecond.
    let base = Timestamp::from_millisecond(now.as_millisecond()).expect("ms") - mins(60);
    let same_ms = base + mins(3);
    let early = console_action(
        same_ms + jiff::SignedDuration::from_micros(100),
        "claim",
        "same-ms-early",
    );
    let late = console_action(
        same_ms + jiff::SignedDuration::from_micros(700),
        "close",
        "same-ms-late",
    );
    let a = console_action(base, "sign-in", "a");
    let b = console_action(base + mins(1), "reroute", "b");
    let c = console_action(base + mins(2), "away", "c");
    // Three days back: another UTC day, read only when `since` reaches it.
    let old = console_action(now - jiff::SignedDuration::from_hours(72), "replay", "old");
    // Recorded out of order: the log is ordered by when things happened.
    for action in [&c, &late, &a, &old, &early, &b] {
        console.record_action(action).await.expect("record");
    }

    let recent = console
        .actions_since(base - mins(1), 100)
        .await
        .expect("read");
    assert_eq!(recent.len(), 5, "{:?}", targets(&recent));
    let mut first_two = targets(&recent[..2]).to_vec();
    first_two.sort_unstable();
    assert_eq!(
        first_two,
        ["same-ms-early", "same-ms-late"],
        "both entries of one millisecond are kept"
    );
    assert_eq!(targets(&recent[2..]), ["c", "b", "a"]);
    assert!(
        recent.contains(&early) && recent.contains(&late),
        "whole entries"
    );

    // `since` is inclusive, to the instant.
    let from_b = console.actions_since(b.at, 100).await.expect("read");
    assert_eq!(from_b.len(), 4);
    assert_eq!(from_b.last(), Some(&b));
    let after_b = console
        .actions_since(b.at + jiff::SignedDuration::from_millis(1), 100)
        .await
        .expect("read");
    assert_eq!(after_b.len(), 3);
    assert_eq!(after_b.last(), Some(&c));
    assert_eq!(
        console.actions_since(late.at, 100).await.expect("read"),
        vec![late.clone()],
        "an entry earlier in since's millisecond is left out"
    );

    // The newest `limit`, across days.
    let newest = console
        .actions_since(base - mins(1), 3)
        .await
        .expect("read");
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[2], c);
    let all = console
        .actions_since(now - jiff::SignedDuration::from_hours(96), 100)
        .await
        .expect("read");
    assert_eq!(all.len(), 6);
    assert_eq!(all.last(), Some(&old));
    let all_but_the_oldest = console
        .actions_since(now - jiff::SignedDuration::from_hours(96), 5)
        .await
        .expect("read");
    assert_eq!(all_but_the_oldest, recent);
    assert!(console
        .actions_since(base, 0)
        .await
        .expect("read")
        .is_empty());
}

async fn a_set_counter_overwrites_and_reads_back(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let away = unique("away_until:rep");
    let never = unique("away_until:rep");
    assert_eq!(store.counter(&away).await.expect("read"), 0);

    store.set_counter(&away, 1_900_000_000).await.expect("set");
    assert_eq!(store.counter(&away).await.expect("read"), 1_900_000_000);
    store.set_counter(&away, 42).await.expect("overwrite");
    assert_eq!(
        store
            .counters(&[never.clone(), away.clone()])
            .await
            .expect("read"),
        vec![0, 42]
    );

    // A counter that routing added to is overwritten too, and can go back to 0.
    let bumped = unique("open_leads:rep");
    route_with(store, &enriched_lead(store).await, &bump(&[&bumped]))
        .await
        .expect("routed");
    assert_eq!(store.counter(&bumped).await.expect("read"), 1);
    store.set_counter(&bumped, 5).await.expect("set");
    store.set_counter(&away, 0).await.expect("clear");
    assert_eq!(
        store
            .counters(&[away.clone(), bumped.clone(), never])
            .await
            .expect("read"),
        vec![0, 5, 0]
    );
}

/// The capture hour of `at` and the window of exactly that hour.
fn report_hour(at: Timestamp) -> (i64, Timestamp, Timestamp) {
    let hour = leadrelay_shared::report::rollup::hour_of(at);
    let start = leadrelay_shared::report::rollup::hour_start(hour).expect("hour");
    (hour, start, start + jiff::SignedDuration::from_hours(1))
}

/// The generation of `at`'s capture hour once the writes so far reached it (`None`: no lead
/// was ever written in it).
async fn generation_at(adapters: &Adapters, at: Timestamp) -> Option<u64> {
    adapters.settle().await;
    let (hour, start, end) = report_hour(at);
    let hours = adapters
        .store
        .report_hours(start, end)
        .await
        .expect("report hours")
        .expect("this store keeps buckets");
    assert!(hours.iter().all(|h| h.hour == hour), "{hours:?}");
    hours.first().map(|h| h.generation)
}

/// An hour's generation moves with every change of the facts of a lead captured in it
/// (creation, any later write, facts filled in from an old row's body), and only then: on
/// SQLite in the same write, on DynamoDB once the table's stream reached the report-hours
/// function.
async fn every_write_of_a_leads_facts_moves_its_report_hour(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let at: Timestamp = "2026-11-21T09:15:00Z".parse().expect("time");
    let (_, start, end) = report_hour(at);
    assert_eq!(
        generation_at(&adapters, at).await,
        None,
        "no lead in the hour yet"
    );
    let mut lead = lead(&unique("hour"), &unique("evt"));
    lead.timeline.captured_at = Some(at);
    assert_eq!(
        store.create_lead(&lead).await.expect("create"),
        Created::New
    );
    let created = generation_at(&adapters, at)
        .await
        .expect("the hour is listed");

    // A duplicate writes nothing, nor does a refused write.
    assert!(matches!(
        store.create_lead(&lead).await.expect("create"),
        Created::Duplicate(_)
    ));
    let mut stale = lead.clone();
    stale.state = LeadState::Enriched;
    stale.revision = 7;
    assert!(store
        .advance_lead(&stale, LeadState::Captured, &Effects::none())
        .await
        .is_err());
    assert_eq!(generation_at(&adapters, at).await, Some(created));

    // A lead of the next hour moves its own hour, not this one.
    let next_hour = at + jiff::SignedDuration::from_hours(1);
    let mut other = self::lead(&unique("hour"), &unique("evt"));
    other.timeline.captured_at = Some(next_hour);
    store.create_lead(&other).await.expect("create");
    assert_eq!(generation_at(&adapters, at).await, Some(created));
    assert!(generation_at(&adapters, next_hour).await.is_some());

    // Every later write of the lead (here: enriched, then merged into the other) moves it.
    let mut enriched = lead.clone();
    enriched.state = LeadState::Enriched;
    store
        .advance_lead(&enriched, LeadState::Captured, &Effects::none())
        .await
        .expect("enrich");
    let after_enrich = generation_at(&adapters, at).await.expect("listed");
    assert!(after_enrich > created);
    let mut merged = store.get_lead(&lead.id).await.expect("read").expect("lead");
    merged.merged_into = Some(other.id.clone());
    store
        .advance_lead(&merged, LeadState::Enriched, &Effects::none())
        .await
        .expect("merge");
    let after_merge = generation_at(&adapters, at).await.expect("listed");
    assert!(after_merge > after_enrich);
    assert!(store
        .lead_facts(start, end)
        .await
        .expect("facts")
        .iter()
        .any(|f| f.id == lead.id && f.merged));

    // An old row without facts: a report read fills them in, and the hour moves with it.
    if let RawStore::Sqlite(path) = &adapters.raw {
        let db = rusqlite::Connection::open(path).expect("open");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        let cleared = db
            .execute(
                "UPDATE leads SET facts = NULL WHERE id = ?1",
                rusqlite::params![lead.id],
            )
            .expect("update");
        assert_eq!(cleared, 1);
        assert_eq!(store.lead_facts(start, end).await.expect("facts").len(), 1);
        assert!(generation_at(&adapters, at).await.expect("listed") > after_merge);
    }
}

/// A bucket is kept only while its hour's generation is the one it was built at: a write in
/// between leaves the hour stale (its old bucket, if any, stays and reads as stale).
async fn a_report_bucket_is_kept_only_at_the_generation_it_was_built_from(adapters: Adapters) {
    let store = adapters.store.as_ref();
    let at: Timestamp = "2026-11-22T14:40:00Z".parse().expect("time");
    let (hour, start, end) = report_hour(at);
    let bucket = |generation: u64, bytes: &[u8]| BuiltHour {
        hour,
        bucket: ReportBucket {
            generation,
            fingerprint: 42,
            bytes: bytes.to_vec(),
        },
    };
    // How many of one bucket the store kept, and the window's hours as listed.
    let put =
        |built: BuiltHour| async move { store.put_report_hours(&[built]).await.expect("put") };
    let adapters = &adapters;
    let listed = || async move {
        adapters.settle().await;
        store
            .report_hours(start, end)
            .await
            .expect("hours")
            .expect("kept")
    };
    let mut lead = lead(&unique("bucket"), &unique("evt"));
    lead.timeline.captured_at = Some(at);
    store.create_lead(&lead).await.expect("create");
    let hours = listed().await;
    let [ReportHour {
        generation: read,
        bucket: None,
        ..
    }] = hours.as_slice()
    else {
        panic!("one hour, no bucket yet: {hours:?}");
    };
    let read = *read;
    // An hour that never held a lead keeps nothing.
    let empty = BuiltHour {
        hour: hour + 5,
        ..bucket(read, b"none")
    };
    assert_eq!(put(empty).await, 0);
    assert_eq!(put(bucket(read, b"first")).await, 1);
    let kept = listed().await;
    assert_eq!(
        kept,
        [ReportHour {
            hour,
            generation: read,
            bucket: Some(bucket(read, b"first").bucket),
        }]
    );

    // A write of the lead after the read: the hour moved, a bucket built from the old read is
    // refused and the one kept reads as stale.
    let mut enriched = lead.clone();
    enriched.state = LeadState::Enriched;
    store
        .advance_lead(&enriched, LeadState::Captured, &Effects::none())
        .await
        .expect("enrich");
    adapters.settle().await;
    assert_eq!(put(bucket(read, b"late")).await, 0);
    let now = listed().await;
    assert!(now[0].generation > read);
    assert_eq!(now[0].bucket, Some(bucket(read, b"first").bucket));
    let moved = now[0].generation;
    assert_eq!(put(bucket(moved, b"fresh")).await, 1);
    let fresh = listed().await;
    assert_eq!(fresh[0].bucket, Some(bucket(moved, b"fresh").bucket));
    // Hours are listed only within the window asked for.
    assert!(store
        .report_hours(end, end + jiff::SignedDuration::from_hours(1))
        .await
        .expect("hours")
        .expect("kept")
        .is_empty());
}

/// What only the DynamoDB store's report hours do: the stream moves them, months of leads
/// older than the stream are listed from the capture index once, and a bucket waits for its
/// hour's last move to settle.
mod report_hours_on_dynamodb {
    use std::time::Duration;

    use leadrelay_shared::ports::{BuiltHour, LeadStore, ReportBucket};

    use super::{lead, moto, report_hour, unique, Timestamp};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leads_older_than_the_stream_are_listed_once_per_month_and_later_ones_by_the_stream() {
        let deployment = moto().await.deploy(5, 30).await;
        let store = deployment.store.clone().with_report_buckets(Duration::ZERO);
        let at: Timestamp = "2026-10-14T08:20:00Z".parse().expect("time");
        let (hour, start, end) = report_hour(at);
        // Written before anything read the stream (as on a table from before the upgrade).
        for _ in 0..3 {
            let mut old = lead(&unique("old"), &unique("evt"));
            old.timeline.captured_at = Some(at);
            store.create_lead(&old).await.expect("create");
        }
        let month = |from, to| {
            let store = store.clone();
            async move {
                store
                    .report_hours(from, to)
                    .await
                    .expect("hours")
                    .expect("kept")
            }
        };
        let listed = month(start, end).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].hour, hour);
        let first = listed[0].generation;
        assert!(first > 0);

        // The month is listed once: a lead written later (the stream not read yet) is not
        // listed from the index again, so its new hour is missing and the old hour unmoved.
        let later_at = at + jiff::SignedDuration::from_hours(3);
        let mut later = lead(&unique("later"), &unique("evt"));
        later.timeline.captured_at = Some(later_at);
        store.create_lead(&later).await.expect("create");
        let (later_hour, _, later_end) = report_hour(later_at);
        assert_eq!(
            month(start, later_end).await.len(),
            1,
            "listed from the index once only"
        );

        // The stream carries every write, the old ones too: each hour moves.
        assert!(deployment.report_stream.pump().await >= 4);
        let hours = month(start, later_end).await;
        let found: Vec<i64> = hours.iter().map(|h| h.hour).collect();
        assert_eq!(found, [hour, later_hour]);
        assert!(hours[0].generation > first);

        // A bucket built now is kept (no settle time here), and the oversized one is not.
        let bucket = |bytes: Vec<u8>| BuiltHour {
            hour,
            bucket: ReportBucket {
                generation: hours[0].generation,
                fingerprint: 7,
                bytes,
            },
        };
        let too_large = bucket(vec![
            0;
            leadrelay_aws::dynamo::report_hours::MAX_BUCKET_BYTES
                + 1
        ]);
        assert_eq!(store.put_report_hours(&[too_large]).await.expect("put"), 0);
        assert_eq!(
            store
                .put_report_hours(&[bucket(vec![1, 2, 3])])
                .await
                .expect("put"),
            1
        );
        let kept = month(start, end).await;
        assert_eq!(
            kept[0].bucket.as_ref().map(|b| b.bytes.clone()),
            Some(vec![1, 2, 3])
        );
    }

    /// The stream event as Lambda delivers it (events/aws/dynamodb-stream-lead-writes.json):
    /// a lead's creation and its next write move its hour by two; its delivery receipt (same
    /// `pk`) does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_documented_stream_event_moves_the_hour_of_each_lead_write() {
        use leadrelay_aws::dynamo::report_hours::lead_writes_per_hour;
        let path = crate::support::root().join("events/aws/dynamodb-stream-lead-writes.json");
        let text = std::fs::read_to_string(&path).expect("the fixture");
        let event: aws_lambda_events::dynamodb::Event =
            serde_json::from_str(&text).expect("a DynamoDB stream event");
        let at: Timestamp = "2026-11-23T10:05:00Z".parse().expect("time");
        let (hour, start, end) = report_hour(at);
        let hours = lead_writes_per_hour(&event);
        assert_eq!(hours, std::collections::BTreeMap::from([(hour, 2)]));

        let deployment = moto().await.deploy(5, 30).await;
        let store = deployment.store.clone().with_report_buckets(Duration::ZERO);
        let listed = || async {
            store
                .report_hours(start, end)
                .await
                .expect("hours")
                .expect("kept")
        };
        assert!(listed().await.is_empty(), "no lead in the table");
        store
            .bump_report_hours(&hours, Timestamp::now())
            .await
            .expect("bumped");
        let moved = listed().await;
        assert_eq!((moved[0].hour, moved[0].generation), (hour, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bucket_is_not_kept_while_its_hours_last_move_is_younger_than_the_settle_time() {
        let deployment = moto().await.deploy(5, 30).await;
        let settling = deployment
            .store
            .clone()
            .with_report_buckets(Duration::from_secs(3600));
        let at: Timestamp = "2026-11-02T11:00:00Z".parse().expect("time");
        let (hour, start, end) = report_hour(at);
        // The month is listed (empty) before the lead, so only the stream moves its hour.
        assert!(settling
            .report_hours(start, end)
            .await
            .expect("hours")
            .expect("kept")
            .is_empty());
        let mut fresh = lead(&unique("fresh"), &unique("evt"));
        fresh.timeline.captured_at = Some(at);
        settling.create_lead(&fresh).await.expect("create");
        deployment.report_stream.pump().await;
        let hours = settling
            .report_hours(start, end)
            .await
            .expect("hours")
            .expect("kept");
        let built = [BuiltHour {
            hour,
            bucket: ReportBucket {
                generation: hours[0].generation,
                fingerprint: 7,
                bytes: vec![9],
            },
        }];
        // Moved a moment ago: the capture index may still lag the write, so not kept.
        assert_eq!(settling.put_report_hours(&built).await.expect("put"), 0);
        // The same bucket under no settle time is kept: only the age refused it.
        let settled = deployment.store.clone().with_report_buckets(Duration::ZERO);
        assert_eq!(settled.put_report_hours(&built).await.expect("put"), 1);
        // A store without buckets lists none and keeps none.
        assert!(deployment
            .store
            .report_hours(start, end)
            .await
            .expect("hours")
            .is_none());
        assert_eq!(
            deployment
                .store
                .put_report_hours(&built)
                .await
                .expect("put"),
            0
        );
    }
}

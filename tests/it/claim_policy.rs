//! Who may claim: `owner`, `team` or `anyone` per rule, pool or queue (and `[claim] default`).
//! A refused claimer is told who owns the lead and why, and nothing changes; a claim that
//! takes a lead from the rep the rotation gave it to moves the open-lead counters and the
//! pool's turn with it, in the claim's own write.

use crate::support::{parse_config, shipped_example_config, Edit, ManualPipeline};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::config::ClaimPolicy;
use leadrelay_shared::model::{CaptureEvent, Escalation, EventKind, Lead, Metadata, Owner, Stage};
use leadrelay_shared::ports::{Clock, LeadStore};
use leadrelay_shared::routing::ledger::PoolLedger;
use leadrelay_shared::routing::open_leads_counter;
use leadrelay_shared::stages::claim::{self, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::claim_policy;

/// Tuesday 13:00 in New York: the Americas team is working.
const TUESDAY_AFTERNOON: &str = "2026-11-24T18:00:00Z";

/// The shipped example with the Americas pool's claim policy set, and Sam (not a pool member,
/// nobody's backup) as Alice's backup swapped out for nobody: Dana is then only Alice's
/// teammate and fellow pool member, Sam only a teammate.
fn config(pool_policy: Option<&str>) -> String {
    let text = shipped_example_config().edit(
        "capacity = 25\nbackup = \"dana\"\n",
        "capacity = 25\nbackup = \"grace\"\n",
    );
    match pool_policy {
        Some(policy) => text.edit(
            "members = [{ rep = \"alice\" }, { rep = \"dana\" }]\n",
            &format!(
                "members = [{{ rep = \"alice\" }}, {{ rep = \"dana\" }}]\nclaim = \"{policy}\"\n"
            ),
        ),
        None => text,
    }
}

fn manual(config_text: &str) -> ManualPipeline {
    let start: Timestamp = TUESDAY_AFTERNOON.parse().expect("time");
    ManualPipeline::new(parse_config(config_text), start)
}

/// A lead from Maple Software (Canada, 60 people: the Americas pool), taken through enrich,
/// route and notify.
async fn alert(m: &ManualPipeline, id: &str) -> Lead {
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCaptureFallback),
        captured_email: Some(format!("{id}@maple-software.ca")),
        name: Some("Pat Quinn".into()),
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
        m.clock.now(),
    );
    m.db.create_lead(&lead).await.expect("stored");
    for stage in [Stage::Enrich, Stage::Route, Stage::Notify] {
        m.handle(stage, id).await;
    }
    m.lead(id).await
}

fn owner(lead: &Lead) -> Owner {
    lead.assignment.as_ref().expect("owned").owner.clone()
}

async fn open(m: &ManualPipeline, rep: &str) -> i64 {
    m.db.counter(&open_leads_counter(&Owner::Rep(rep.into())))
        .await
        .expect("counter")
}

async fn ledger(m: &ManualPipeline) -> PoolLedger {
    let period = m
        .pipeline
        .router
        .pool_period("amer-ae", m.clock.now())
        .expect("a pool");
    m.db.ledger("amer-ae", &period).await.expect("ledger")
}

/// Each rep, and whether they may claim.
type Expected = &'static [(&'static str, bool)];

fn allowed(m: &ManualPipeline, lead: &Lead, rep: &str) -> bool {
    claim_policy::check(&m.pipeline.config, &m.pipeline.router, lead, rep).is_ok()
}

#[tokio::test]
async fn each_policy_allows_the_owner_their_backup_escalation_targets_and_manager_only_as_set() {
    // Alice (routed owner), Grace (her backup), Maria (manager of the Americas team queue),
    // Dana and Sam (Alice's teammates), Bruno (EMEA: an outsider).
    let table: [(Option<&str>, Expected); 4] = [
        (
            None,
            &[
                ("alice", true),
                ("grace", true),
                ("maria", true),
                ("dana", false),
                ("sam", false),
                ("bruno", false),
            ],
        ),
        (
            Some("owner"),
            &[
                ("alice", true),
                ("grace", true),
                ("maria", true),
                ("dana", false),
                ("sam", false),
                ("bruno", false),
            ],
        ),
        (
            Some("team"),
            &[
                ("alice", true),
                ("grace", true),
                ("maria", true),
                ("dana", true),
                ("sam", true),
                ("bruno", false),
            ],
        ),
        (
            Some("anyone"),
            &[
                ("alice", true),
                ("dana", true),
                ("sam", true),
                ("bruno", true),
                ("erin", true),
            ],
        ),
    ];
    for (policy, expected) in table {
        let m = manual(&config(policy));
        let lead = alert(&m, "who").await;
        assert_eq!(owner(&lead), Owner::Rep("alice".into()), "{policy:?}");
        let (found, set_by) = claim_policy::policy_for(&m.pipeline.config, &lead);
        match policy {
            None => {
                assert_eq!(
                    found,
                    ClaimPolicy::Owner,
                    "a rep-owned lead defaults to owner"
                );
                assert!(set_by.contains("default"), "{set_by}");
            }
            Some(p) => {
                assert_eq!(found.as_str(), p);
                assert_eq!(set_by, "pool \"amer-ae\"");
            }
        }
        for (rep, may) in expected {
            assert_eq!(allowed(&m, &lead, rep), *may, "{policy:?}: {rep}");
        }
    }

    // After an escalation from Alice to Erin and on to the enterprise queue, under `owner`:
    // Erin (an escalation target) and the queue's manager may, Alice (as routed) still may.
    let m = manual(&config(Some("owner")));
    let mut lead = alert(&m, "climbed").await;
    assert!(!allowed(&m, &lead, "erin"));
    let at = m.clock.now();
    lead.escalations = vec![
        Escalation {
            level: 1,
            at,
            from: Owner::Rep("alice".into()),
            to: Owner::Rep("erin".into()),
            channels: None,
            missed: at,
        },
        Escalation {
            level: 2,
            at,
            from: Owner::Rep("erin".into()),
            to: Owner::Queue("enterprise".into()),
            channels: None,
            missed: at,
        },
    ];
    lead.assignment.as_mut().expect("owned").owner = Owner::Queue("enterprise".into());
    for (rep, may) in [
        ("alice", true),
        ("erin", true),
        ("grace", true),
        ("maria", true),
        ("sam", false),
        ("bruno", false),
    ] {
        assert_eq!(allowed(&m, &lead, rep), may, "escalated: {rep}");
    }
    // Where the lead sits decides first: a queue set to `anyone` opens it to everyone.
    let m = manual(&config(Some("owner")).edit(
        "id = \"enterprise\"\nname = \"Enterprise team queue\"\n",
        "id = \"enterprise\"\nname = \"Enterprise team queue\"\nclaim = \"anyone\"\n",
    ));
    assert!(allowed(&m, &lead, "bruno"));
    assert_eq!(
        claim_policy::policy_for(&m.pipeline.config, &lead),
        (ClaimPolicy::Anyone, "queue \"enterprise\"".to_owned())
    );
}

#[tokio::test]
async fn a_queue_lead_is_anyones_by_default_and_a_rule_or_the_global_default_can_say_otherwise() {
    // A partial capture goes to the SDR queue.
    let partial = |m: &ManualPipeline| {
        let mut lead = Lead::captured(
            "partial".into(),
            "trace-partial".into(),
            "website".into(),
            "evt-partial".into(),
            CaptureEvent {
                event: Some(EventKind::LeadCapturePartial),
                captured_email: Some("pat@maple-software.ca".into()),
                ..CaptureEvent::default()
            },
            Vec::new(),
            m.clock.now(),
        );
        lead.incomplete = true;
        lead
    };
    for (text, bruno, set_by) in [
        (
            config(None),
            true,
            "the default for a lead in a queue or pool",
        ),
        (
            config(None).edit(
                "assign.queue = \"sdr\"\n",
                "assign.queue = \"sdr\"\nclaim = \"owner\"\n",
            ),
            false,
            "rule \"Partial captures go to the SDR queue\"",
        ),
        (
            config(None).edit(
                "link_ttl_hours = 72\n",
                "link_ttl_hours = 72\ndefault = \"team\"\n",
            ),
            false,
            "[claim] default",
        ),
    ] {
        let m = manual(&text);
        let lead = partial(&m);
        m.db.create_lead(&lead).await.expect("stored");
        for stage in [Stage::Enrich, Stage::Route] {
            m.handle(stage, "partial").await;
        }
        let lead = m.lead("partial").await;
        assert_eq!(owner(&lead), Owner::Queue("sdr".into()));
        assert_eq!(
            claim_policy::policy_for(&m.pipeline.config, &lead).1,
            set_by
        );
        assert_eq!(allowed(&m, &lead, "bruno"), bruno, "{set_by}");
        assert!(allowed(&m, &lead, "maria"), "the queue's manager: {set_by}");
    }
}

#[tokio::test]
async fn a_refused_claim_names_the_owner_and_changes_nothing() {
    let m = manual(&config(None));
    let lead = alert(&m, "refused").await;
    let ledger_before = ledger(&m).await;
    m.clock.set(m.clock.now() + SignedDuration::from_mins(1));
    let outcome = claim::claim(&m.pipeline, "refused", "bruno", ClaimVia::Link)
        .await
        .expect("claim");
    let ClaimOutcome::Refused { owner, why, .. } = outcome else {
        panic!("bruno is refused: {outcome:?}");
    };
    assert_eq!(owner, "Alice Martin");
    assert!(why.starts_with("Alice Martin owns this lead."), "{why}");
    assert!(why.contains("claim = \"owner\""), "{why}");
    assert_eq!(m.lead("refused").await, lead, "the lead is untouched");
    assert_eq!(open(&m, "alice").await, 1);
    assert_eq!(open(&m, "bruno").await, 0);
    assert_eq!(ledger(&m).await, ledger_before);
}

#[tokio::test]
async fn a_teammates_claim_under_team_moves_the_counters_and_the_rotation_turn() {
    let m = manual(&config(Some("team")));
    let lead = alert(&m, "moved").await;
    assert_eq!(owner(&lead), Owner::Rep("alice".into()));
    assert_eq!((open(&m, "alice").await, open(&m, "dana").await), (1, 0));
    let before = ledger(&m).await;
    assert_eq!(before.tally("alice").received, 1);
    assert_eq!(before.tally("dana").received, 0);

    // Dana, Alice's teammate and a member of the pool, claims it.
    m.clock.set(m.clock.now() + SignedDuration::from_mins(1));
    let outcome = claim::claim(&m.pipeline, "moved", "dana", ClaimVia::Slack)
        .await
        .expect("claim");
    assert!(matches!(outcome, ClaimOutcome::Won { .. }), "{outcome:?}");
    let claimed = m.lead("moved").await;
    assert_eq!(owner(&claimed), Owner::Rep("dana".into()));
    let record = claimed.claim.expect("recorded");
    assert_eq!(record.routed_to.as_deref(), Some("rep:alice"));
    assert_eq!(
        record.allowed.as_deref(),
        Some("team (pool \"amer-ae\"): a member of Americas sales")
    );
    // The open lead moved, and Alice's turn went back to her: Dana's is counted instead.
    assert_eq!((open(&m, "alice").await, open(&m, "dana").await), (0, 1));
    let after = ledger(&m).await;
    assert_eq!(after.tally("alice").received, 0);
    assert_eq!(after.tally("dana").received, 1);
    assert_eq!(after.version, before.version + 1);
    // So the rotation's next lead is Alice's.
    assert_eq!(owner(&alert(&m, "next").await), Owner::Rep("alice".into()));

    // Sam, a teammate outside the pool: the routed rep's turn is given back, no turn is
    // counted for Sam.
    let third = alert(&m, "third").await;
    let Owner::Rep(routed) = owner(&third) else {
        panic!("a pool member owns it");
    };
    let before = ledger(&m).await;
    let routed_open = open(&m, &routed).await;
    let outcome = claim::claim(&m.pipeline, "third", "sam", ClaimVia::Link)
        .await
        .expect("claim");
    assert!(matches!(outcome, ClaimOutcome::Won { .. }), "{outcome:?}");
    let after = ledger(&m).await;
    assert_eq!(
        after.tally(&routed).received,
        before.tally(&routed).received - 1
    );
    assert!(!after.members.contains_key("sam"));
    assert_eq!(open(&m, "sam").await, 1);
    assert_eq!(open(&m, &routed).await, routed_open - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_under_team_give_exactly_one_owner_and_refuse_the_outsider() {
    let m = manual(&config(Some("team")));
    alert(&m, "contested").await;
    let attempts = (0..9).map(|n| {
        let pipeline = m.pipeline.clone();
        let rep = ["dana", "sam", "bruno"][n % 3];
        tokio::spawn(async move {
            (
                rep,
                claim::claim(&pipeline, "contested", rep, ClaimVia::Link).await,
            )
        })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let winners: Vec<&str> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(ClaimOutcome::Won { .. })))
        .map(|(rep, _)| *rep)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0];
    for (rep, result) in &results {
        match result.as_ref().expect("no errors") {
            ClaimOutcome::Refused { .. } => assert_eq!(*rep, "bruno"),
            ClaimOutcome::Won { .. } | ClaimOutcome::AlreadyYours { .. } => {
                assert_eq!(*rep, winner)
            }
            // Once claimed, anyone (Bruno too) is told who was first.
            ClaimOutcome::OwnedBy { rep: owner, .. } => {
                assert_ne!(rep, &winner);
                assert_eq!(owner, winner);
            }
        }
    }
    assert_eq!(owner(&m.lead("contested").await), Owner::Rep(winner.into()));
    assert_eq!(open(&m, "alice").await, 0);
    assert_eq!(open(&m, winner).await, 1);
    assert_eq!(open(&m, "bruno").await, 0);
    let ledger = ledger(&m).await;
    assert_eq!(ledger.tally("alice").received, 0);
    assert_eq!(
        ledger.tally("dana").received,
        u64::from(winner == "dana"),
        "one turn counted, once"
    );
}

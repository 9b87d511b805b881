//! The lead's life after the alert: what a touch, a meeting or an outcome does to it.
//!
//! Each step is stamped once: the earliest time any event reports counts, so events arriving
//! late or out of order, or sent again, change nothing once a step is stamped. Only humans stop
//! the clock: an automated event (a sequence's e-mail, a bot's reply) is listed on the lead and
//! stamps nothing.

use jiff::Timestamp;

use crate::model::{Activity, ActivityKind, Lead, Outcome, MAX_ACTIVITIES};

/// What recording an activity changed on the lead, besides listing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamped {
    /// The timeline steps this activity set or moved earlier (`first_touch`, `meeting_booked`,
    /// `meeting_held`).
    pub steps: Vec<&'static str>,
    /// The outcome the lead is to be closed with (the caller closes it: that frees capacity,
    /// which needs the store).
    pub closes: Option<Outcome>,
}

/// The lead with `activity` recorded, and what it stamped; `None` when this event (its key)
/// was recorded before, so a replayed event changes nothing.
pub fn record(lead: &Lead, activity: &Activity) -> Option<(Lead, Stamped)> {
    if lead.activities.iter().any(|a| a.key == activity.key) {
        return None;
    }
    let mut next = lead.clone();
    if next.activities.len() < MAX_ACTIVITIES {
        next.activities.push(activity.clone());
    }
    let mut stamped = Stamped::default();
    if activity.automated {
        return Some((next, stamped));
    }
    let timeline = &mut next.timeline;
    let at = activity.at;
    if activity.kind.is_touch() && earliest(&mut timeline.first_touch_at, at) {
        stamped.steps.push("first_touch");
    }
    match activity.kind {
        ActivityKind::MeetingBooked if earliest(&mut timeline.meeting_booked_at, at) => {
            stamped.steps.push("meeting_booked");
        }
        ActivityKind::MeetingHeld if earliest(&mut timeline.meeting_held_at, at) => {
            stamped.steps.push("meeting_held");
        }
        ActivityKind::Closed(outcome) if lead.state.is_open() => {
            stamped.closes = Some(outcome);
        }
        _ => {}
    }
    Some((next, stamped))
}

/// Sets `slot` to `at` if it is empty or later; whether it changed.
fn earliest(slot: &mut Option<Timestamp>, at: Timestamp) -> bool {
    match slot {
        Some(stamped) if *stamped <= at => false,
        _ => {
            *slot = Some(at);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaptureEvent, LeadState};

    fn lead(state: LeadState) -> Lead {
        let mut lead = Lead::captured(
            "lead-1".into(),
            "trace".into(),
            "web".into(),
            "evt".into(),
            CaptureEvent::default(),
            Vec::new(),
            at("2026-11-23T10:00:00Z"),
        );
        lead.state = state;
        lead
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn activity(kind: ActivityKind, when: &str, key: &str) -> Activity {
        Activity {
            kind,
            at: at(when),
            received_at: at(when),
            by: Some("alice".into()),
            via: "slack".into(),
            automated: false,
            key: key.into(),
            detail: None,
        }
    }

    #[test]
    fn the_earliest_touch_counts_whatever_the_order_events_arrive_in() {
        let start = lead(LeadState::Claimed);
        let (late, stamped) = record(
            &start,
            &activity(ActivityKind::Emailed, "2026-11-23T10:30:00Z", "a"),
        )
        .expect("new");
        assert_eq!(stamped.steps, ["first_touch"]);
        let (early, stamped) = record(
            &late,
            &activity(ActivityKind::Called, "2026-11-23T10:10:00Z", "b"),
        )
        .expect("new");
        assert_eq!(stamped.steps, ["first_touch"]);
        assert_eq!(
            early.timeline.first_touch_at,
            Some(at("2026-11-23T10:10:00Z"))
        );
        let (later, stamped) = record(
            &early,
            &activity(ActivityKind::Called, "2026-11-23T11:00:00Z", "c"),
        )
        .expect("new");
        assert!(stamped.steps.is_empty());
        assert_eq!(
            later.timeline.first_touch_at,
            Some(at("2026-11-23T10:10:00Z"))
        );
        assert_eq!(later.activities.len(), 3);
    }

    #[test]
    fn the_same_event_twice_changes_nothing() {
        let once = record(
            &lead(LeadState::Notified),
            &activity(ActivityKind::MeetingBooked, "2026-11-23T10:30:00Z", "k"),
        )
        .expect("new")
        .0;
        let again = activity(ActivityKind::MeetingBooked, "2026-11-23T09:00:00Z", "k");
        assert_eq!(record(&once, &again), None);
    }

    #[test]
    fn an_automated_event_is_listed_but_stops_no_clock() {
        let mut sequence = activity(ActivityKind::Emailed, "2026-11-23T10:01:00Z", "seq");
        sequence.automated = true;
        let mut notified = lead(LeadState::Notified);
        notified.timeline.sla_due_at = Some(at("2026-11-23T10:05:00Z"));
        let (after, stamped) = record(&notified, &sequence).expect("new");
        assert_eq!(stamped, Stamped::default());
        assert_eq!(after.timeline.first_touch_at, None);
        assert_eq!(after.activities, [sequence]);
        assert_eq!(after.sla_watch_at(), Some(at("2026-11-23T10:05:00Z")));
    }

    #[test]
    fn a_held_meeting_is_a_touch_and_a_booking_is_not() {
        let (booked, stamped) = record(
            &lead(LeadState::Notified),
            &activity(ActivityKind::MeetingBooked, "2026-11-23T10:05:00Z", "b"),
        )
        .expect("new");
        assert_eq!(stamped.steps, ["meeting_booked"]);
        assert_eq!(booked.timeline.first_touch_at, None);
        let (held, stamped) = record(
            &booked,
            &activity(ActivityKind::MeetingHeld, "2026-11-24T10:00:00Z", "h"),
        )
        .expect("new");
        assert_eq!(stamped.steps, ["first_touch", "meeting_held"]);
        assert_eq!(
            held.timeline.meeting_held_at,
            Some(at("2026-11-24T10:00:00Z"))
        );
    }

    #[test]
    fn an_outcome_closes_an_open_lead_only() {
        let won = activity(
            ActivityKind::Closed(Outcome::Won),
            "2026-11-30T10:00:00Z",
            "w",
        );
        let (_, stamped) = record(&lead(LeadState::Claimed), &won).expect("new");
        assert_eq!(stamped.closes, Some(Outcome::Won));
        let (_, stamped) = record(&lead(LeadState::Closed), &won).expect("new");
        assert_eq!(stamped.closes, None);
    }

    #[test]
    fn the_list_is_bounded_but_steps_are_still_stamped() {
        let mut full = lead(LeadState::Notified);
        for i in 0..MAX_ACTIVITIES {
            let mut auto = activity(
                ActivityKind::Emailed,
                "2026-11-23T10:00:00Z",
                &i.to_string(),
            );
            auto.automated = true;
            full.activities.push(auto);
        }
        let (after, stamped) = record(
            &full,
            &activity(ActivityKind::Called, "2026-11-23T10:20:00Z", "call"),
        )
        .expect("new");
        assert_eq!(after.activities.len(), MAX_ACTIVITIES);
        assert_eq!(stamped.steps, ["first_touch"]);
    }

    #[test]
    fn a_human_touch_stops_the_sla_clock() {
        let mut notified = lead(LeadState::Notified);
        notified.timeline.sla_due_at = Some(at("2026-11-23T10:05:00Z"));
        assert!(notified.sla_watch_at().is_some());
        let (touched, _) = record(
            &notified,
            &activity(ActivityKind::Called, "2026-11-23T10:02:00Z", "c"),
        )
        .expect("new");
        assert_eq!(touched.sla_watch_at(), None);
    }
}

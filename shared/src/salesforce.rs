//! Salesforce write-back, decided from the lead: the Lead record to upsert on its external id,
//! the owner it may get, and the Task for whoever is to act on it. The notify stage builds a
//! [`SalesforceWrite`] per alert round; the channel adapter (`leadrelay-channels`) sends it.
//!
//! - **The Lead**: `LastName` and `Company` are required by Salesforce. A prospect who gave no
//!   name gets the local part of their e-mail address as `LastName` (`tom.baker` for
//!   `tom.baker@initech.example`), else `Unknown`; a one-word name is the `LastName`. Without a
//!   company name the e-mail's domain stands in (not a free-mail domain), else `Unknown`.
//!   Fields leadrelay does not know are left out, never sent empty, so nothing Salesforce
//!   already holds is cleared.
//! - **The owner**: the rep's `salesforce_user_id`, the queue's `salesforce_queue_id`, else
//!   `default_owner_id`; without any, the lead is not written. The first alert applies
//!   `owner_policy`; an escalation never changes an existing Lead's owner unless
//!   `escalation_reassigns` is set (then it overwrites it with the new owner).
//! - **The Task**: one with the first alert, for the owner (a queue's manager for a queue,
//!   as Tasks are assigned to users), due at the SLA deadline; another only for an
//!   escalation that reassigns the Lead.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::config::{
    is_salesforce_queue_id, Config, RepConfig, SalesforceConfig, SalesforceOwnerPolicy,
};
use crate::model::{Lead, Owner};

/// Salesforce's field lengths (Lead and Task), so a long value is cut rather than refused
/// with `STRING_TOO_LONG`.
const FIRST_NAME: usize = 40;
const LAST_NAME: usize = 80;
const COMPANY: usize = 255;
const EMAIL: usize = 80;
const PHONE: usize = 40;
const TITLE: usize = 128;
const PICKLIST: usize = 255;
const SUBJECT: usize = 255;
const LONG_TEXT: usize = 32_000;

/// One alert round's write: the Lead, the owner it may get, and a Task.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceWrite {
    /// The Lead's external id value: the leadrelay lead id, or for a lead merged into the same
    /// person's open lead, that lead's id (one Salesforce Lead per person and request thread).
    pub external_id: String,
    /// The Lead's fields by API name, without `OwnerId` and the external id field (Salesforce
    /// refuses the external id field in an upsert's body).
    pub lead: Map<String, Value>,
    /// The Lead's owner: a user (`005…`) or queue (`00G…`) id.
    pub owner: String,
    /// When `owner` is written over an existing Lead's owner.
    pub owner_policy: SalesforceOwnerPolicy,
    pub task: Option<TaskWrite>,
}

/// The Task of one alert round.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    /// The value for `task_external_id_field`, when one is configured: the round and the lead
    /// id (`lead-1`, `esc1:lead-1`).
    pub external_id: String,
    /// The Task's fields by API name (`OwnerId` included), without `WhoId`: the Lead's record
    /// id is known only once it is upserted.
    pub fields: Map<String, Value>,
}

/// What `[notify.salesforce]` writes for this alert round of `lead`, or `None` when its owner
/// maps to no Salesforce owner (and there is no `default_owner_id`).
pub fn write_for(
    config: &Config,
    salesforce: &SalesforceConfig,
    lead: &Lead,
    tier_label: &str,
) -> Option<SalesforceWrite> {
    let assignment = lead.assignment.as_ref()?;
    let (owner_rep, owner_queue) = match &assignment.owner {
        Owner::Rep(id) => (config.rep(id), None),
        Owner::Queue(id) => (None, config.queue(id)),
        Owner::Pool(_) => (None, None),
    };
    let owner = owner_rep
        .and_then(|r| r.salesforce_user_id.clone())
        .or_else(|| owner_queue.and_then(|q| q.salesforce_queue_id.clone()))
        .or_else(|| salesforce.default_owner_id.clone())?;
    let escalated = !lead.escalations.is_empty();
    let owner_policy = match (escalated, salesforce.escalation_reassigns) {
        (false, _) => salesforce.owner_policy,
        (true, true) => SalesforceOwnerPolicy::Overwrite,
        // A new Lead still gets the current owner; an existing one keeps its own.
        (true, false) => SalesforceOwnerPolicy::KeepExisting,
    };
    // Who acts on it: the rep, or the manager of the queue; a user id only.
    let task_user = match (owner_rep, owner_queue) {
        (Some(rep), _) => rep.salesforce_user_id.clone(),
        (None, Some(queue)) => queue
            .manager
            .as_ref()
            .and_then(|m| config.rep(m.get_ref()))
            .and_then(|m| m.salesforce_user_id.clone()),
        (None, None) => None,
    }
    .or_else(|| Some(owner.clone()).filter(|id| !is_salesforce_queue_id(id)));
    let task_rep = owner_rep.or_else(|| {
        owner_queue
            .and_then(|q| q.manager.as_ref())
            .and_then(|m| config.rep(m.get_ref()))
    });
    let task = match task_user {
        Some(user) if salesforce.create_task && (!escalated || salesforce.escalation_reassigns) => {
            Some(TaskWrite {
                external_id: format!("{}{}", lead.alert_round(), lead.id),
                fields: task_fields(config, salesforce, lead, tier_label, &user, task_rep),
            })
        }
        _ => None,
    };
    Some(SalesforceWrite {
        external_id: lead.merged_into.clone().unwrap_or_else(|| lead.id.clone()),
        lead: lead_fields(salesforce, lead),
        owner,
        owner_policy,
        task,
    })
}

/// The prospect's name as enrichment cleaned it, else as typed; blank is none.
fn prospect_name(lead: &Lead) -> Option<&str> {
    lead.enrichment
        .as_ref()
        .and_then(|e| e.name.as_deref())
        .or(lead.capture.name.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// `(FirstName, LastName)`: the first word and the rest; one word is the last name; no name,
/// the e-mail's local part; else `Unknown`.
fn names(lead: &Lead) -> (Option<String>, String) {
    match prospect_name(lead).map(|n| n.split_once(char::is_whitespace)) {
        Some(Some((first, last))) => (Some(first.to_owned()), last.trim().to_owned()),
        Some(None) => (None, prospect_name(lead).unwrap_or_default().to_owned()),
        None => {
            let local = lead
                .capture
                .captured_email
                .as_deref()
                .and_then(|e| e.split_once('@'))
                .map(|(local, _)| local.trim())
                .filter(|l| !l.is_empty());
            (None, local.unwrap_or("Unknown").to_owned())
        }
    }
}

/// The company's name, else the e-mail's domain unless it is a free-mail one, else `Unknown`.
fn company(lead: &Lead) -> String {
    let enrichment = lead.enrichment.as_ref();
    let named = enrichment
        .and_then(|e| e.company.as_deref())
        .or(lead.capture.company.as_deref())
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(name) = named {
        return name.to_owned();
    }
    let domain = enrichment
        .and_then(|e| e.domain.clone())
        .or_else(|| {
            lead.capture
                .captured_email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.trim().to_ascii_lowercase())
        })
        .filter(|d| !d.is_empty());
    let free = enrichment.is_some_and(|e| e.free_mail);
    match domain {
        Some(d) if !free && !crate::lists::is_free_mail_domain(&d) => d,
        _ => "Unknown".to_owned(),
    }
}

fn lead_fields(salesforce: &SalesforceConfig, lead: &Lead) -> Map<String, Value> {
    let capture = &lead.capture;
    let enrichment = lead.enrichment.as_ref();
    let (first, last) = names(lead);
    let phone = enrichment
        .and_then(|e| e.phone_e164.as_deref())
        .or(capture.phone.as_deref());
    // An address too long for the field is left out: cut, it would be another address.
    let email = capture
        .captured_email
        .as_deref()
        .filter(|e| e.chars().count() <= EMAIL);
    let mut fields = Map::new();
    let mut put = |name: &str, value: Option<&str>, limit: usize| {
        if let Some(value) = value.map(plain).filter(|v| !v.trim().is_empty()) {
            fields.insert(name.to_owned(), Value::String(cut(value.trim(), limit)));
        }
    };
    put("FirstName", first.as_deref(), FIRST_NAME);
    put("LastName", Some(&last), LAST_NAME);
    put("Company", Some(&company(lead)), COMPANY);
    put("Email", email, EMAIL);
    put("Phone", phone, PHONE);
    put("Title", capture.job_title.as_deref(), TITLE);
    put("LeadSource", Some(&salesforce.lead_source), PICKLIST);
    put("Description", capture.trigger_query.as_deref(), LONG_TEXT);
    fields
}

fn task_fields(
    config: &Config,
    salesforce: &SalesforceConfig,
    lead: &Lead,
    tier_label: &str,
    user: &str,
    rep: Option<&RepConfig>,
) -> Map<String, Value> {
    let tier = lead.qualification.as_ref().map_or(0, |q| q.tier);
    let who = prospect_name(lead)
        .map(str::to_owned)
        .unwrap_or_else(|| names(lead).1);
    let escalated = if lead.escalations.is_empty() {
        ""
    } else {
        "Escalated: "
    };
    let subject = format!(
        "{escalated}Follow up {} ({}): tier {tier} lead",
        plain(&who),
        plain(&company(lead))
    );
    let priority = match tier {
        1 => "High",
        2 => "Normal",
        _ => "Low",
    };
    let mut fields = Map::new();
    fields.insert("OwnerId".into(), user.into());
    fields.insert("Subject".into(), cut(&subject, SUBJECT).into());
    fields.insert(
        "Description".into(),
        cut(&context(lead, tier_label), LONG_TEXT).into(),
    );
    fields.insert("Status".into(), salesforce.task_status.clone().into());
    fields.insert("Priority".into(), priority.into());
    if let Some(due) = lead.timeline.sla_due_at {
        // A date for the owner's calendar day, a reminder at the deadline itself.
        let zone = rep
            .and_then(|r| time_zone(config, r))
            .unwrap_or(TimeZone::UTC);
        let day = due.to_zoned(zone).date();
        fields.insert("ActivityDate".into(), day.to_string().into());
        fields.insert("ReminderDateTime".into(), due.to_string().into());
        fields.insert("IsReminderSet".into(), true.into());
    }
    fields
}

/// The rep's own time zone, else their team's.
fn time_zone(config: &Config, rep: &RepConfig) -> Option<TimeZone> {
    let name = rep.timezone.as_deref().or_else(|| {
        rep.team
            .as_deref()
            .and_then(|t| config.team(t))
            .map(|t| t.timezone.as_str())
    })?;
    crate::calendar::parse_time_zone(name).ok()
}

/// The Task's description: what was asked, how hot, why this owner, the deadline and the
/// transcript, as plain text.
fn context(lead: &Lead, tier_label: &str) -> String {
    let capture = &lead.capture;
    let mut text = String::with_capacity(1024);
    if let Some(question) = capture.trigger_query.as_deref() {
        let _ = writeln!(text, "Asked: {}", plain(question.trim()));
    }
    if let Some(q) = &lead.qualification {
        let label = if tier_label.is_empty() {
            String::new()
        } else {
            format!(" ({tier_label})")
        };
        let _ = write!(text, "Tier {}{label}, score {}", q.tier, q.score);
        for (i, item) in q.breakdown.iter().enumerate() {
            let separator = if i == 0 { " (" } else { ", " };
            let _ = write!(text, "{separator}{} {:+}", plain(&item.signal), item.points);
        }
        if !q.breakdown.is_empty() {
            text.push(')');
        }
        text.push('\n');
    }
    if let Some(a) = &lead.assignment {
        let _ = write!(
            text,
            "Why this owner: {} (rule \"{}\": {})",
            plain(&a.owner_name),
            plain(&a.rule),
            plain(&a.reason)
        );
        if let Some(pool) = &a.pool {
            let _ = write!(text, "; picked from pool {pool}");
        }
        text.push('\n');
    }
    if let Some(step) = lead.escalations.last() {
        let _ = writeln!(
            text,
            "Escalated from {} after its deadline {} passed",
            step.from.key(),
            step.missed
        );
    }
    if let (Some(due), Some(q)) = (lead.timeline.sla_due_at, &lead.qualification) {
        let _ = writeln!(text, "Claim by: {due} (SLA {} min)", q.sla_minutes);
    }
    if let Some(page) = capture.metadata.source_url.as_deref() {
        let _ = writeln!(text, "Page: {}", plain(page));
    }
    if !capture.transcript.is_empty() {
        let _ = writeln!(text, "\nTranscript ({} turns):", capture.transcript.len());
        for turn in &capture.transcript {
            let _ = writeln!(text, "{}: {}", plain(&turn.role), plain(turn.text.trim()));
        }
    }
    if let Some(url) = capture.conversation_transcript_url.as_deref() {
        let _ = writeln!(text, "Full transcript: {}", plain(url));
    }
    let _ = write!(text, "\nleadrelay lead {}", lead.id);
    text
}

/// Control characters other than line breaks and tabs removed: Salesforce stores text, and
/// some control characters are refused in its XML-based APIs and reports.
fn plain(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

/// At most `limit` characters.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MINIMAL;
    use crate::model::{
        Assignment, CaptureEvent, Enrichment, Escalation, Qualification, ScoreItem, Turn,
    };
    use jiff::Timestamp;

    fn config(extra_rep: &str, extra_queue: &str, section: &str) -> Config {
        let text = MINIMAL
            .replace(
                "name = \"Alice\"\n",
                &format!("name = \"Alice\"\ntimezone = \"America/New_York\"\n{extra_rep}\n"),
            )
            .replace(
                "name = \"Sales inbox\"\n",
                &format!("name = \"Sales inbox\"\n{extra_queue}\n"),
            );
        let text = format!(
            "{text}\n[notify]\n[notify.salesforce]\nauth = \"client_credentials\"\nlogin_url = \"https://acme.my.salesforce.com\"\nclient_id_env = \"ID\"\nclient_secret_env = \"SECRET\"\n{section}\n"
        );
        Config::parse(&text, "leadrelay.toml", &|_| Some("x".into())).expect("valid")
    }

    const ALICE: &str = "salesforce_user_id = \"0055e000001AliceAA\"";

    fn lead(owner: Owner) -> Lead {
        let capture = CaptureEvent {
            captured_email: Some("tom.baker@initech.example".into()),
            name: Some("Tom Baker".into()),
            phone: Some("+44 20 7946 0321".into()),
            job_title: Some("Head of Ops".into()),
            trigger_query: Some("Can we get a quote?\u{7}".into()),
            transcript: vec![
                Turn {
                    role: "visitor".into(),
                    text: "Hi".into(),
                    at: None,
                },
                Turn {
                    role: "bot".into(),
                    text: "Hello!".into(),
                    at: None,
                },
            ],
            ..CaptureEvent::default()
        };
        let at: Timestamp = "2026-11-25T03:00:00Z".parse().expect("time");
        let mut lead = Lead::captured(
            "lead-1".into(),
            "t".into(),
            "website".into(),
            "e".into(),
            capture,
            Vec::new(),
            at,
        );
        lead.enrichment = Some(Enrichment {
            company: Some("Initech UK".into()),
            domain: Some("initech.example".into()),
            phone_e164: Some("+442079460321".into()),
            ..Enrichment::default()
        });
        lead.qualification = Some(Qualification {
            tier: 1,
            score: 90,
            sla_minutes: 5,
            breakdown: vec![ScoreItem {
                signal: "pricing page".into(),
                points: 40,
            }],
        });
        lead.timeline.sla_due_at = Some(at + jiff::SignedDuration::from_mins(5));
        lead.assignment = Some(Assignment {
            owner,
            owner_name: "Alice".into(),
            rule: "UK".into(),
            reason: "country GB".into(),
            pool: None,
            held_until: None,
            trace: None,
        });
        lead
    }

    #[test]
    fn a_reps_lead_is_their_lead_and_task_with_the_context() {
        let config = config(ALICE, "", "");
        let sf = config.notify.salesforce.as_ref().expect("section");
        let write =
            write_for(&config, sf, &lead(Owner::Rep("alice".into())), "hot").expect("a write");
        assert_eq!(write.external_id, "lead-1");
        assert_eq!(write.owner, "0055e000001AliceAA");
        assert_eq!(write.owner_policy, SalesforceOwnerPolicy::KeepExisting);
        let expected = serde_json::json!({
            "FirstName": "Tom", "LastName": "Baker", "Company": "Initech UK",
            "Email": "tom.baker@initech.example", "Phone": "+442079460321",
            "Title": "Head of Ops", "LeadSource": "Web", "Description": "Can we get a quote?",
        });
        assert_eq!(Value::Object(write.lead.clone()), expected);
        let task = write.task.expect("a task");
        assert_eq!(task.external_id, "lead-1");
        let f = &task.fields;
        assert_eq!(f["OwnerId"], "0055e000001AliceAA");
        assert_eq!(
            f["Subject"],
            "Follow up Tom Baker (Initech UK): tier 1 lead"
        );
        assert_eq!(f["Priority"], "High");
        assert_eq!(f["Status"], "Not Started");
        // 03:05 UTC is still the 24th in New York, Alice's zone.
        assert_eq!(f["ActivityDate"], "2026-11-24");
        assert_eq!(f["ReminderDateTime"], "2026-11-25T03:05:00Z");
        assert_eq!(f["IsReminderSet"], true);
        let description = f["Description"].as_str().expect("text");
        for part in [
            "Asked: Can we get a quote?\n",
            "Tier 1 (hot), score 90 (pricing page +40)",
            "Why this owner: Alice (rule \"UK\": country GB)",
            "Claim by: 2026-11-25T03:05:00Z (SLA 5 min)",
            "Transcript (2 turns):\nvisitor: Hi\nbot: Hello!",
            "leadrelay lead lead-1",
        ] {
            assert!(description.contains(part), "{part:?} in {description}");
        }
    }

    #[test]
    fn the_required_fields_have_fallbacks() {
        let config = config(ALICE, "", "lead_source = \"\"");
        let sf = config.notify.salesforce.as_ref().expect("section");
        let mut nameless = lead(Owner::Rep("alice".into()));
        nameless.capture.name = None;
        nameless.enrichment = None;
        let write = write_for(&config, sf, &nameless, "").expect("a write");
        assert_eq!(write.lead["LastName"], "tom.baker");
        assert!(!write.lead.contains_key("FirstName"));
        assert_eq!(write.lead["Company"], "initech.example", "the domain");
        assert!(!write.lead.contains_key("LeadSource"), "left unset");

        let mut anonymous = nameless.clone();
        anonymous.capture.captured_email = Some("x@gmail.com".into());
        anonymous.capture.name = Some("Cher".into());
        let write = write_for(&config, sf, &anonymous, "").expect("a write");
        assert_eq!(write.lead["LastName"], "Cher");
        assert_eq!(
            write.lead["Company"], "Unknown",
            "no free-mail domain as company"
        );
        anonymous.capture.captured_email = None;
        anonymous.capture.name = None;
        let write = write_for(&config, sf, &anonymous, "").expect("a write");
        assert_eq!(write.lead["LastName"], "Unknown");
        assert!(!write.lead.contains_key("Email"));
    }

    #[test]
    fn queues_managers_defaults_and_escalations() {
        let queue = "salesforce_queue_id = \"00G5e000000InboxAA\"";
        let config = config(ALICE, queue, "");
        let sf = config.notify.salesforce.as_ref().expect("section");
        // A queue's Lead is the queue's; its Task is the manager's (Alice).
        let write = write_for(&config, sf, &lead(Owner::Queue("inbox".into())), "").expect("w");
        assert_eq!(write.owner, "00G5e000000InboxAA");
        assert_eq!(
            write.task.expect("task").fields["OwnerId"],
            "0055e000001AliceAA"
        );
        // Without the manager's id no Task (a queue cannot be assigned one).
        let config_no_manager = self::config("", queue, "");
        let sf2 = config_no_manager.notify.salesforce.as_ref().expect("s");
        let write = write_for(
            &config_no_manager,
            sf2,
            &lead(Owner::Queue("inbox".into())),
            "",
        )
        .expect("w");
        assert!(write.task.is_none());
        // No Salesforce owner at all: nothing is written, unless there is a default owner.
        assert!(write_for(
            &config_no_manager,
            sf2,
            &lead(Owner::Rep("alice".into())),
            ""
        )
        .is_none());
        let with_default = self::config("", "", "default_owner_id = \"00G5e000000DefltAA\"");
        let sf3 = with_default.notify.salesforce.as_ref().expect("s");
        let write = write_for(&with_default, sf3, &lead(Owner::Pool("p".into())), "").expect("w");
        assert_eq!(write.owner, "00G5e000000DefltAA");
        assert!(write.task.is_none());

        // An escalation keeps an existing owner and adds no Task by default...
        let mut escalated = lead(Owner::Queue("inbox".into()));
        escalated.escalations.push(Escalation {
            level: 1,
            at: Timestamp::UNIX_EPOCH,
            from: Owner::Rep("alice".into()),
            to: Owner::Queue("inbox".into()),
            channels: None,
            missed: Timestamp::UNIX_EPOCH,
        });
        let write = write_for(&config, sf, &escalated, "").expect("w");
        assert_eq!(write.owner_policy, SalesforceOwnerPolicy::KeepExisting);
        assert!(write.task.is_none());
        // ...and overwrites it, with a Task of its own, when configured to.
        let reassigning = self::config(
            ALICE,
            queue,
            "escalation_reassigns = true\nowner_policy = \"keep_existing\"",
        );
        let sf4 = reassigning.notify.salesforce.as_ref().expect("s");
        let write = write_for(&reassigning, sf4, &escalated, "").expect("w");
        assert_eq!(write.owner_policy, SalesforceOwnerPolicy::Overwrite);
        let task = write.task.expect("task");
        assert_eq!(task.external_id, "esc1:lead-1");
        assert!(task.fields["Subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("Escalated: ")));

        // The same person again: their open lead's Salesforce Lead.
        let mut merged = lead(Owner::Rep("alice".into()));
        merged.merged_into = Some("lead-0".into());
        assert_eq!(
            write_for(&config, sf, &merged, "").expect("w").external_id,
            "lead-0"
        );
    }
}

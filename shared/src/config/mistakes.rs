//! One of each kind of mistake, made in the shipped example configuration: every error is
//! reported at the line of the offending key, names that key in full, and for a choice lists
//! the accepted values.

use std::path::Path;

use super::{Config, ConfigError};

/// `text` with the first `find` replaced by `with`. Panics when `find` is missing, so that a
/// change to the example can never quietly turn a case into a valid configuration.
fn edit(text: &str, find: &str, with: &str) -> String {
    assert!(
        text.contains(find),
        "config/leadrelay.toml no longer contains {find:?}: update this case"
    );
    text.replacen(find, with, 1)
}

struct Case {
    /// What kind of mistake.
    what: &'static str,
    find: &'static str,
    with: &'static str,
    /// Text on the offending key's line, found once in the edited configuration.
    at: &'static str,
    /// The key the error must name, exactly.
    key: &'static str,
    /// What else the message must say (the accepted values of a choice, say).
    says: &'static [&'static str],
}

const GATES: &[&str] = &["`refuse`", "`review`", "`nurture`", "`flag`", "`allow`"];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // TOML syntax.
    Case { what: "unquoted string", find: "name = \"Alice Martin\"", with: "name = Alice Martin",
        at: "name = Alice Martin", key: "reps[0] (\"alice\").name", says: &["quoted"] },
    Case { what: "unclosed table header", find: "[routing.regions]", with: "[routing.regions",
        at: "[routing.regions", key: "routing.regions", says: &["`]`"] },
    Case { what: "key written twice", find: "capacity = 25\nbackup = \"dana\"",
        with: "capacity = 25\ncapacity = 31\nbackup = \"dana\"",
        at: "capacity = 31", key: "reps[0] (\"alice\").capacity", says: &["duplicate key"] },
    // Wrong types and out-of-range numbers.
    Case { what: "string for a number", find: "capacity = 25\nbackup = \"dana\"",
        with: "capacity = \"25\"\nbackup = \"dana\"",
        at: "capacity = \"25\"", key: "reps[0] (\"alice\").capacity", says: &["whole number"] },
    Case { what: "negative capacity", find: "capacity = 25\nbackup = \"dana\"",
        with: "capacity = -1\nbackup = \"dana\"",
        at: "capacity = -1", key: "reps[0] (\"alice\").capacity", says: &["-1", "0 to 4294967295"] },
    Case { what: "zero capacity", find: "capacity = 25\nbackup = \"dana\"",
        with: "capacity = 0\nbackup = \"dana\"",
        at: "capacity = 0", key: "reps[0] (\"alice\").capacity", says: &["above 0"] },
    Case { what: "fraction for a count", find: "batch_size = 10", with: "batch_size = 10.5",
        at: "batch_size = 10.5", key: "pipeline.batch_size", says: &["10.5"] },
    Case { what: "zero receives", find: "max_receives = 15 ", with: "max_receives = 0 ",
        at: "max_receives = 0", key: "pipeline.max_receives", says: &["above 0"] },
    Case { what: "negative weight", find: "{ rep = \"fatima\", weight = 1 }",
        with: "{ rep = \"fatima\", weight = -2 }",
        at: "weight = -2", key: "pools[1] (\"emea-ae\").members[1].weight", says: &["-2"] },
    Case { what: "zero weight", find: "{ rep = \"fatima\", weight = 1 }",
        with: "{ rep = \"fatima\", weight = 0 }",
        at: "weight = 0", key: "pools[1] (\"emea-ae\").members[1].weight", says: &["above 0"] },
    Case { what: "zero SLA", find: "sla_minutes = 15", with: "sla_minutes = 0",
        at: "sla_minutes = 0", key: "qualification.tiers[1].sla_minutes", says: &["tier 2"] },
    Case { what: "zero link lifetime", find: "link_ttl_hours = 72", with: "link_ttl_hours = 0",
        at: "link_ttl_hours = 0", key: "claim.link_ttl_hours", says: &["at least 1"] },
    Case { what: "alert budget past the visibility timeout", find: "http_timeout_ms = 5000",
        with: "http_timeout_ms = 30000",
        at: "http_timeout_ms = 30000", key: "notify.http_timeout_ms", says: &["visibility_timeout_secs"] },
    Case { what: "zero replay window", find: "event_id_header = \"X-Request-Id\"",
        with: "event_id_header = \"X-Request-Id\"\nreplay_window_hours = 0",
        at: "replay_window_hours = 0", key: "sources[1].replay_window_hours", says: &["at least 1"] },
    // Unknown choices: the message lists the accepted values.
    Case { what: "unknown after-hours policy", find: "after_hours = \"on_call\"",
        with: "after_hours = \"sometimes\"",
        at: "after_hours = \"sometimes\"", key: "teams[0] (\"amer\").after_hours",
        says: &["`sometimes`", "`fallback`", "`on_call`", "`hold`"] },
    Case { what: "unknown pool strategy", find: "strategy = \"least_loaded\"",
        with: "strategy = \"random\"",
        at: "strategy = \"random\"", key: "pools[2] (\"enterprise-ae\").strategy",
        says: &["`round_robin`", "`least_loaded`", "`broadcast`"] },
    Case { what: "unknown signature scheme", find: "scheme = \"body_hmac\"", with: "scheme = \"hmac_sha1\"",
        at: "scheme = \"hmac_sha1\"", key: "sources[1].scheme",
        says: &["`standard_webhooks`", "`body_hmac`", "`hmac`", "`token`"] },
    Case { what: "unknown gate action", find: "role_addresses = \"review\"",
        with: "role_addresses = \"maybe\"",
        at: "role_addresses = \"maybe\"", key: "validation.role_addresses", says: GATES },
    Case { what: "unknown required field", find: "required_fields = [\"name\"]",
        with: "required_fields = [\"name\", \"fax\"]",
        at: "required_fields = [\"name\", \"fax\"]", key: "validation.required_fields[1]",
        says: &["`name`", "`phone`", "`company`", "`job_title`"] },
    Case { what: "unknown escalation target", find: "to = \"backup\"", with: "to = \"ceo\"",
        at: "to = \"ceo\"", key: "escalation.ladder[0].to",
        says: &["`backup`", "`queue`", "`manager`", "`owner`"] },
    Case { what: "unknown event in event_tiers", find: "lead_capture = 2 ", with: "lead_captur = 2 ",
        at: "lead_captur = 2", key: "qualification.event_tiers.lead_captur",
        says: &["`lead_capture`", "`lead_capture_fallback`", "`lead_capture_partial`"] },
    Case { what: "undefined tier in event_tiers", find: "lead_capture = 2 ", with: "lead_capture = 9 ",
        at: "lead_capture = 9", key: "qualification.event_tiers.lead_capture",
        says: &["tier 9 is not defined"] },
    Case { what: "string tier in event_tiers", find: "lead_capture = 2 ",
        with: "lead_capture = \"two\" ",
        at: "lead_capture = \"two\"", key: "qualification.event_tiers.lead_capture",
        says: &["0 to 255"] },
    // Secrets: at least 16 bytes, and never printed.
    Case { what: "2-byte whsec secret",
        find: "secrets = [\"whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE=\"]",
        with: "secrets = [\"whsec_AAE=\"]",
        at: "whsec_AAE=", key: "sources[0].secrets[0]", says: &["16 bytes"] },
    Case { what: "short body-HMAC secret", find: "secrets = [\"forms-demo-secret-change-me\"]",
        with: "secrets = [\"forms-secret\"]",
        at: "\"forms-secret\"", key: "sources[1].secrets[0]", says: &["16 bytes"] },
    Case { what: "short claim-link secret",
        find: "link_secrets = [\"claim-links-demo-secret-change-me\"]",
        with: "link_secrets = [\"claim-links-demo-secret-change-me\",\n    \"tiny-secret\"]",
        at: "\"tiny-secret\"", key: "claim.link_secrets[1]", says: &["16 bytes"] },
    // References that do not resolve.
    Case { what: "unknown rep in a rule", find: "assign.rep = \"chen\"", with: "assign.rep = \"chan\"",
        at: "assign.rep = \"chan\"", key: "rules[7] (\"APAC\").assign.rep", says: &["unknown rep \"chan\""] },
    Case { what: "unknown pool in a rule", find: "assign.pool = \"amer-ae\"",
        with: "assign.pool = \"amer\"",
        at: "assign.pool = \"amer\"", key: "rules[5] (\"Americas\").assign.pool", says: &["unknown pool"] },
    Case { what: "unknown region in a rule", find: "when.regions = [\"EMEA\"]",
        with: "when.regions = [\"EU\"]",
        at: "when.regions = [\"EU\"]", key: "rules[6] (\"EMEA\").when.regions", says: &["unknown region \"EU\""] },
    Case { what: "unknown backup", find: "backup = \"fatima\"", with: "backup = \"fatma\"",
        at: "backup = \"fatma\"", key: "reps[2] (\"bruno\").backup", says: &["unknown rep"] },
    Case { what: "unknown pool member", find: "{ rep = \"priya\" }, { rep = \"sam\" }",
        with: "{ rep = \"priya\" }, { rep = \"samuel\" }",
        at: "\"samuel\"", key: "pools[3] (\"solutions\").members[1]", says: &["unknown rep"] },
    Case { what: "unknown on-call pool", find: "on_call.pool = \"follow-the-sun\"",
        with: "on_call.pool = \"follow\"",
        at: "on_call.pool = \"follow\"", key: "teams[0] (\"amer\").on_call.pool", says: &["unknown pool"] },
    Case { what: "unknown fallback queue", find: "fallback_queue = \"sales-inbox\"",
        with: "fallback_queue = \"sales\"",
        at: "fallback_queue = \"sales\"", key: "routing.fallback_queue", says: &["unknown queue"] },
    Case { what: "unknown review queue", find: "review_queue = \"review\"",
        with: "review_queue = \"reviews\"",
        at: "review_queue = \"reviews\"", key: "validation.review_queue", says: &["unknown queue"] },
    Case { what: "duplicate rep id", find: "id = \"sam\"", with: "id = \"priya\"\n# sam",
        at: "id = \"priya\"\n# sam", key: "reps[8].id", says: &["duplicate rep id"] },
    // Values that do not parse.
    Case { what: "bad time zone", find: "timezone = \"Europe/London\"",
        with: "timezone = \"Europe/Lundon\"",
        at: "Europe/Lundon", key: "teams[1] (\"emea\").timezone", says: &["Europe/Lundon"] },
    Case { what: "bad hours", find: "hours = [\"mon-fri 08:30-17:30\"]",
        with: "hours = [\"mon-fri 8.30-17\"]",
        at: "8.30-17", key: "teams[1] (\"emea\").hours", says: &[] },
    Case { what: "bad holiday", find: "\"2026-12-28\", \"2027-01-01\"]\nqueue = \"sales-inbox\"\nafter_hours = \"hold\"",
        with: "\"2026-13-28\", \"2027-01-01\"]\nqueue = \"sales-inbox\"\nafter_hours = \"hold\"",
        at: "2026-13-28", key: "teams[1] (\"emea\").holidays[1]", says: &[] },
    Case { what: "bad country code", find: "NA = [\"US\", \"CA\"]", with: "NA = [\"US\", \"UK\"]",
        at: "NA = [\"US\", \"UK\"]", key: "routing.regions.NA[1]", says: &["\"UK\""] },
    Case { what: "bad page glob", find: "\"/trial*\"]", with: "\"/trial[*\"]",
        at: "/trial[*", key: "qualification.hand_raiser_pages[2]", says: &["/trial[*"] },
    Case { what: "wildcard transcript host", find: "tolerance_secs = 300",
        with: "tolerance_secs = 300\ntranscript_hosts = [\"*.chatbot.example\"]",
        at: "*.chatbot.example", key: "sources[0].transcript_hosts[0]", says: &["wildcard"] },
    Case { what: "bad phone number", find: "name = \"Alice Martin\"",
        with: "name = \"Alice Martin\"\nphone = \"0151 2345\"",
        at: "0151 2345", key: "reps[0].phone", says: &["E.164"] },
    // Keys that do not exist, or are missing.
    Case { what: "unknown key", find: "name = \"Alice Martin\"",
        with: "name = \"Alice Martin\"\nslak_webhook_url = \"https://hooks.example/x\"",
        at: "slak_webhook_url", key: "reps[0] (\"alice\").slak_webhook_url",
        says: &["unknown field", "`slack_webhook_url`"] },
    Case { what: "missing required key", find: "[[reps]]\nid = \"maria\"\nname = \"Maria Santos (sales manager)\"\n",
        with: "[[reps]] # Maria\nid = \"maria\"\n",
        at: "[[reps]] # Maria", key: "reps[9] (\"maria\").name", says: &["missing field"] },
];

#[test]
fn each_mistake_is_reported_at_its_key_naming_it() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/leadrelay.toml"),
    )
    .expect("config/leadrelay.toml");
    Config::parse(&shipped, "leadrelay.toml", &|_| None).expect("the shipped config is valid");
    assert!(CASES.len() >= 30);
    // Every case is checked, and every wrong one reported, before the test fails.
    let mut wrong = Vec::new();
    for case in CASES {
        let text = edit(&shipped, case.find, case.with);
        let found: Vec<usize> = text.match_indices(case.at).map(|(at, _)| at).collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {:?} must occur once",
            case.what,
            case.at
        );
        let expected_line = text[..found[0]].matches('\n').count() + 1;
        let Err(error) = Config::parse(&text, "leadrelay.toml", &|_| None) else {
            wrong.push(format!("{}: accepted", case.what));
            continue;
        };
        let shown = error.to_string();
        let (line, key) = match &error {
            ConfigError::Syntax { line, key, .. } | ConfigError::Invalid { line, key, .. } => {
                (*line, key.as_str())
            }
            ConfigError::Read { .. } => (0, ""),
        };
        let prefix = format!("leadrelay.toml:{expected_line}: {}: ", case.key);
        let missing: Vec<&str> = case
            .says
            .iter()
            .copied()
            .filter(|said| !shown.contains(said))
            .collect();
        let leaked = ["whsec_AAE=", "forms-secret", "tiny-secret"]
            .iter()
            .any(|secret| shown.contains(secret));
        if (line, key) != (expected_line, case.key)
            || !shown.starts_with(&prefix)
            || !missing.is_empty()
            || leaked
        {
            wrong.push(format!(
                "{}: expected line {expected_line} key {:?}{}, got: {shown}",
                case.what,
                case.key,
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" saying {missing:?}")
                }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

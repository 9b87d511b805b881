//! Metrics as CloudWatch embedded metric format (EMF) log lines: on Lambda, CloudWatch Logs
//! turns each line into a metric with no API call and no extra permission. Enabled by
//! `LEADRELAY_METRICS=emf` (the template sets it); elsewhere the stage's own log line says
//! the same.

use std::sync::OnceLock;

use serde_json::json;

/// The CloudWatch namespace of every leadrelay metric.
pub const NAMESPACE: &str = "leadrelay";

fn emf_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("LEADRELAY_METRICS").is_ok_and(|v| v == "emf"))
}

/// The EMF document for one SLA breach: metric `SlaBreaches` (count 1), with the tier as a
/// dimension and once in all (the alarm's metric).
pub fn sla_breach_document(tier: u8, lead_id: &str, at_ms: i64) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[], ["Tier"]],
                "Metrics": [{ "Name": "SlaBreaches", "Unit": "Count" }]
            }]
        },
        "Tier": tier.to_string(),
        "SlaBreaches": 1,
        "lead_id": lead_id,
    })
}

/// Counts one lead that passed its SLA unclaimed.
pub fn sla_breach(tier: u8, lead_id: &str) {
    if emf_enabled() {
        // A line of its own: CloudWatch reads EMF only from a log event that is the document.
        println!(
            "{}",
            sla_breach_document(tier, lead_id, jiff::Timestamp::now().as_millisecond())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breach_document_is_valid_emf() {
        let doc = sla_breach_document(1, "lead-1", 1_800_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "leadrelay");
        assert_eq!(directive["Metrics"][0]["Name"], "SlaBreaches");
        // Every dimension and metric named in the directive is a top-level member.
        for dimension in directive["Dimensions"][1].as_array().expect("dimensions") {
            let name = dimension.as_str().expect("name");
            assert!(doc[name].is_string(), "{name} must be a string member");
        }
        assert_eq!(doc["SlaBreaches"], 1);
        assert_eq!(doc["_aws"]["Timestamp"], 1_800_000_000_000i64);
    }
}

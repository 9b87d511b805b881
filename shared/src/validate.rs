//! Parsing the capture event and the validation gates it must pass before it becomes a lead.
//!
//! A refusal names the field; nothing is stored for a refused event.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;

use email_address::EmailAddress;
use serde::Serialize;

use crate::config::{GatePolicy, ValidationConfig};
use crate::model::{CaptureEvent, EventKind, Flag};

/// Why an event was refused: becomes `400 {"error": ..., "field": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Rejection {
    fn new(error: impl Into<String>, field: &str) -> Self {
        Rejection {
            error: error.into(),
            field: (!field.is_empty()).then(|| field.to_owned()),
        }
    }
}

/// Parses the raw body; a type error names the JSON path that holds it.
pub fn parse_capture(body: &[u8]) -> Result<CaptureEvent, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // A syntax error has no meaningful field; a type error names the JSON path.
        if inner.is_syntax() || inner.is_eof() {
            return Rejection::new(format!("body is not valid JSON: {inner}"), "");
        }
        let field = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        let message = format!("invalid value: {inner}");
        Rejection::new(message, &field)
    })
}

/// Runs the gates; returns the flags to keep on the lead, or the refusal.
pub fn check(event: &CaptureEvent, gates: &ValidationConfig) -> Result<Vec<Flag>, Rejection> {
    let kind = event
        .event
        .ok_or_else(|| Rejection::new("missing required field", "event"))?;
    if event.timestamp.is_none() {
        return Err(Rejection::new("missing required field", "timestamp"));
    }
    let email = event
        .captured_email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let phone = event
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let mut flags = Vec::new();
    let email = match (email, kind) {
        (Some(email), _) => email,
        // A partial capture may carry only a phone number: keep it, flagged.
        (None, EventKind::LeadCapturePartial) if phone.is_some() => {
            flags.push(Flag {
                code: "no_email".into(),
                detail: "partial capture with a phone number only".into(),
            });
            return Ok(flags);
        }
        (None, _) => return Err(Rejection::new("missing required field", "captured_email")),
    };

    let parsed = EmailAddress::from_str(email).map_err(|e| {
        Rejection::new(format!("not a valid e-mail address: {e}"), "captured_email")
    })?;
    let domain = parsed.domain().to_ascii_lowercase();
    if !domain.contains('.') || domain.starts_with('[') {
        return Err(Rejection::new(
            "e-mail domain must be a public host name",
            "captured_email",
        ));
    }
    let address = email.to_ascii_lowercase();

    let junk = gates.junk_address_list.contains(&address)
        || (parsed.local_part().eq_ignore_ascii_case("test")
            && domain.split('.').next() == Some("test"));
    apply(
        gates.junk_addresses,
        junk,
        "junk_address",
        "looks like a test or junk address",
        &mut flags,
    )?;
    apply(
        gates.reserved_domains,
        is_reserved(&domain),
        "reserved_domain",
        "e-mail domain is reserved for documentation or testing",
        &mut flags,
    )?;
    let disposable = is_disposable(&domain, &gates.disposable_domain_list);
    apply(
        gates.disposable_domains,
        disposable,
        "disposable_domain",
        "e-mail domain is a disposable mailbox provider",
        &mut flags,
    )?;
    Ok(flags)
}

/// The maintained list of disposable-mailbox domains (the `mailchecker` crate, thousands of
/// providers), hashed once: the crate's own check scans the whole list for every address.
static DISPOSABLE_DOMAINS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| mailchecker::blacklist().into_iter().collect());

/// Whether `domain` or a parent of it is a disposable-mailbox provider, on the maintained list
/// or on the configuration's own `disposable_domain_list`.
fn is_disposable(domain: &str, configured: &[String]) -> bool {
    crate::cleaning::domain_and_parents(domain).any(|candidate| {
        DISPOSABLE_DOMAINS.contains(candidate) || configured.iter().any(|d| d == candidate)
    })
}

fn apply(
    policy: GatePolicy,
    failed: bool,
    code: &str,
    message: &str,
    flags: &mut Vec<Flag>,
) -> Result<(), Rejection> {
    match (failed, policy) {
        (false, _) | (true, GatePolicy::Allow) => Ok(()),
        (true, GatePolicy::Refuse) => Err(Rejection::new(message, "captured_email")),
        (true, GatePolicy::Flag) => {
            flags.push(Flag {
                code: code.into(),
                detail: message.into(),
            });
            Ok(())
        }
    }
}

/// RFC 2606 and RFC 6761 names that never belong to a real prospect.
fn is_reserved(domain: &str) -> bool {
    const NAMES: [&str; 3] = ["example.com", "example.net", "example.org"];
    const SUFFIXES: [&str; 4] = ["test", "example", "invalid", "localhost"];
    NAMES
        .iter()
        .any(|n| domain == *n || domain.ends_with(&format!(".{n}")))
        || domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| SUFFIXES.contains(&tld))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> CaptureEvent {
        parse_capture(json.as_bytes()).expect("parses")
    }

    fn with_email(email: &str) -> CaptureEvent {
        event(&format!(
            r#"{{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z","captured_email":"{email}"}}"#
        ))
    }

    #[test]
    fn invalid_json_is_refused_with_a_clear_message() {
        let rejection = parse_capture(b"{not json").expect_err("bad json");
        assert!(rejection.error.starts_with("body is not valid JSON"));
        assert_eq!(rejection.field, None);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let rejection = parse_capture(br#"{"event":"lead_capture","metadata":{"source_url":5}}"#)
            .expect_err("wrong type");
        assert_eq!(rejection.field.as_deref(), Some("metadata.source_url"));
        let rejection = parse_capture(br#"{"event":"signup"}"#).expect_err("unknown event");
        assert_eq!(rejection.field.as_deref(), Some("event"));
        assert!(rejection.error.contains("lead_capture_partial"));
    }

    #[test]
    fn required_fields_are_named() {
        let gates = ValidationConfig::default();
        let missing = event(r#"{"timestamp":"2026-11-23T10:00:00Z"}"#);
        assert_eq!(
            check(&missing, &gates).unwrap_err().field.as_deref(),
            Some("event")
        );
        let missing = event(r#"{"event":"lead_capture","timestamp":"2026-11-23T10:00:00Z"}"#);
        assert_eq!(
            check(&missing, &gates).unwrap_err().field.as_deref(),
            Some("captured_email")
        );
    }

    #[test]
    fn email_syntax_is_checked() {
        let gates = ValidationConfig::default();
        for bad in ["not-an-email", "a@b", "two@@signs.com", "@acme.com"] {
            let rejection = check(&with_email(bad), &gates).expect_err(bad);
            assert_eq!(rejection.field.as_deref(), Some("captured_email"), "{bad}");
        }
        assert_eq!(
            check(&with_email("jane.doe@acme-robotics.com"), &gates),
            Ok(vec![])
        );
    }

    #[test]
    fn gates_refuse_or_flag_as_configured() {
        let mut gates = ValidationConfig::default();
        assert!(check(&with_email("test@test.com"), &gates).is_err());
        assert!(check(&with_email("x@mailinator.com"), &gates).is_err());
        let flags = check(&with_email("potential.lead@example.com"), &gates).expect("flagged");
        assert_eq!(flags[0].code, "reserved_domain");

        gates.reserved_domains = GatePolicy::Refuse;
        assert!(check(&with_email("someone@shop.test"), &gates).is_err());
        gates.junk_addresses = GatePolicy::Flag;
        // test.com also hosts throwaway mailboxes: flagged twice once both gates flag.
        gates.disposable_domains = GatePolicy::Flag;
        let flags = check(&with_email("test@test.com"), &gates).expect("flagged");
        let codes: Vec<&str> = flags.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["junk_address", "disposable_domain"]);
    }

    #[test]
    fn disposable_mailboxes_come_from_the_maintained_list_and_the_config() {
        let mut gates = ValidationConfig::default();
        // On the maintained list only, and a subdomain of a listed provider.
        for address in [
            "x@guerrillamailblock.com",
            "x@inbox.33mail.com",
            "x@YOPMAIL.com",
        ] {
            let refusal = check(&with_email(address), &gates).expect_err(address);
            assert!(refusal.error.contains("disposable"), "{address}: {refusal}");
        }
        // Real companies and free-mail providers are not disposable.
        for address in [
            "jane@globex-logistics.com",
            "sam@gmail.com",
            "tom@sales.initech.co.uk",
        ] {
            assert_eq!(
                check(&with_email(address), &gates),
                Ok(Vec::new()),
                "{address}"
            );
        }
        // A team adds a provider the list does not know yet.
        gates.disposable_domain_list = vec!["throwaway.example.org".into()];
        assert!(check(&with_email("a@b.throwaway.example.org"), &gates).is_err());
    }

    #[test]
    fn a_partial_capture_with_only_a_phone_is_kept_and_flagged() {
        let gates = ValidationConfig::default();
        let partial = event(
            r#"{"event":"lead_capture_partial","timestamp":"2026-11-23T10:00:00Z","phone":"+44 20 7946 0000"}"#,
        );
        let flags = check(&partial, &gates).expect("kept");
        assert_eq!(flags[0].code, "no_email");
    }
}

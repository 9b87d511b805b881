//! What the provider benches share: the lead they enrich, and what local enrichment found
//! for it before any provider ran.

use jiff::Timestamp;
use leadrelay_shared::model::{CaptureEvent, Enrichment, EventKind, Lead};

/// A captured lead from ana@newco.io.
pub fn lead() -> Lead {
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        captured_email: Some("ana@newco.io".into()),
        ..CaptureEvent::default()
    };
    Lead::captured(
        "lead-1".into(),
        "trace-1".into(),
        "website".into(),
        "evt-1".into(),
        capture,
        Vec::new(),
        Timestamp::UNIX_EPOCH,
    )
}

/// Local enrichment's findings: the domain, and every firmographic field missing.
pub fn local() -> Enrichment {
    let mut enrichment = Enrichment {
        domain: Some("newco.io".into()),
        ..Enrichment::default()
    };
    enrichment.note_missing();
    enrichment
}

//! `leadrelay sources`: the shipped platform presets, and trying a platform's payload against a
//! source before going live (verify, map, validate, route) without storing anything.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use leadrelay_shared::config::{Config, Preset};
use leadrelay_shared::mapping::Mapped;
use leadrelay_shared::routing::explain::explain_text;
use leadrelay_shared::routing::Router;
use leadrelay_shared::rulebook::Rulebook;
use leadrelay_shared::signature::{self, Delivery};
use leadrelay_shared::{model::Lead, model::LeadState, presets, validate};

use crate::rules::{describe, what_if};

/// `leadrelay sources presets`: every shipped preset, its scheme and its setup page.
pub fn list_presets(out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<14} {:<22} {:<6} setup",
        "preset", "platform", "scheme"
    )?;
    for name in presets::names() {
        let preset = Preset::load(name)
            .map_err(|e| anyhow::anyhow!(e))?
            .with_context(|| format!("preset {name} vanished"))?;
        let scheme = format!("{:?}", preset.scheme).to_lowercase();
        writeln!(
            out,
            "{name:<14} {:<22} {scheme:<6} {}",
            preset.title,
            preset.docs.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `leadrelay sources list`: each configured source, how it is verified and what that proves.
pub fn list_sources(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    for source in config.sources.iter().map(|s| s.get_ref()) {
        let payload = match (&source.preset, &source.payload) {
            (Some(preset), _) => format!("preset {preset}"),
            (None, Some(_)) => "own mapping".to_owned(),
            (None, None) => "leadrelay capture event".to_owned(),
        };
        let window = source
            .replay_window()
            .map(|w| format!(", replay window {}h", w.as_hours()))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<16} {payload}: {}{window}",
            source.id,
            source.strength().describe()
        )?;
    }
    Ok(())
}

/// What `leadrelay sources test` was given.
pub struct Trial<'a> {
    pub source: &'a str,
    pub file: &'a Path,
    /// `Name: value` lines as the platform sent them; without them the signature is not checked.
    pub headers: &'a [String],
    /// The URL the platform posted to (for schemes that sign it).
    pub url: Option<&'a str>,
    pub at: Timestamp,
}

/// `leadrelay sources test`: verifies (when headers are given), maps and validates a payload,
/// then prints the lead it would make and the route it would take. Stores nothing.
pub async fn test_payload(
    config: &Config,
    trial: &Trial<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let source = config
        .source(trial.source)
        .with_context(|| format!("no source {:?} in the configuration", trial.source))?;
    let body =
        std::fs::read(trial.file).with_context(|| format!("reading {}", trial.file.display()))?;
    let default_url = format!("https://leadrelay.invalid/webhooks/{}", source.id);
    let url = trial.url.unwrap_or(&default_url);

    let mut event_id = None;
    if trial.headers.is_empty() {
        writeln!(
            out,
            "signature: not checked (give the request's headers with --header)"
        )?;
    } else {
        let headers = header_map(trial.headers)?;
        let delivery = Delivery::post(url, &headers, &body);
        match signature::verify(&source.verifier, &source.keys, &delivery, trial.at) {
            Ok(verified) => {
                writeln!(out, "signature: verified")?;
                event_id = verified.event_id;
            }
            Err(why) => anyhow::bail!("signature: refused ({why}); the webhook would get 401"),
        }
    }

    let (capture, payload_id) = match validate::read_payload(
        source.payload.as_ref(),
        &body,
        trial.at,
    )
    .map_err(|e| anyhow::anyhow!("mapping: {}; the webhook would get 400", describe(&e)))?
    {
        Mapped::Ignored { event } => {
            writeln!(out, "event {event:?} is not a lead event for this source: answered 200 ignored, nothing stored")?;
            return Ok(());
        }
        Mapped::Lead { capture, event_id } => (*capture, event_id),
        Mapped::Activity {
            activity,
            also_lead,
        } => {
            let find = match (&activity.lead_id, &activity.email) {
                (Some(id), _) => format!("lead id {id:?}"),
                (None, Some(email)) => format!("e-mail {email:?} within [activity] match_window"),
                (None, None) => "nothing (no lead id or e-mail): kept as unmatched".into(),
            };
            writeln!(
                out,
                "event {:?} is activity: {}{}{}, found by {find}{}; answered 200 recorded, \
                 duplicate or unmatched",
                activity.event,
                activity.kind.name(),
                if activity.automated {
                    " (automated)"
                } else {
                    ""
                },
                activity
                    .detail
                    .as_deref()
                    .map(|d| format!(" [{d}]"))
                    .unwrap_or_default(),
                if also_lead {
                    "; a lead event too: a new lead when it finds none"
                } else {
                    ""
                },
            )?;
            return Ok(());
        }
    };
    let flags = validate::check(&capture, &config.validation)
        .map_err(|e| anyhow::anyhow!("gates: {}; the webhook would get 400", describe(&e)))?;
    let event_id = payload_id
        .or(event_id)
        .unwrap_or_else(|| signature::body_event_id(&body));
    writeln!(out, "event id: {event_id}")?;
    writeln!(out, "capture:\n{}", serde_json::to_string_pretty(&capture)?)?;

    let rulebook = Rulebook::new(config);
    let router = Router::new(config);
    let mut lead = Lead::captured(
        trial.file.display().to_string(),
        "sources-test".into(),
        source.id.clone(),
        event_id,
        capture,
        flags,
        trial.at,
    );
    lead.state = LeadState::Enriched;
    lead.enrichment = Some(rulebook.enrich(&lead));
    lead.qualification = Some(rulebook.qualify(&lead));
    let assignment = what_if(&router, &lead, trial.at, None).await?;
    writeln!(out, "{}", explain_text(&lead, &assignment))?;
    writeln!(
        out,
        "(nothing stored; open leads and pool ledgers taken as empty)"
    )?;
    Ok(())
}

fn header_map(lines: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("--header {line:?}: write it as 'Name: value'"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {line:?}: not a header name"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {line:?}: not a header value"))?,
        );
    }
    Ok(headers)
}

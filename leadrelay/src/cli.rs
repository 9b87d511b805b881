//! The operator commands behind `leadrelay send`, `leadrelay sign` and `leadrelay lead`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use jiff::Timestamp;
use leadrelay_shared::config::{Config, SourceConfig};
use leadrelay_shared::model::{Lead, LeadState, Owner};
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::render::terminal_safe;
use leadrelay_shared::routing::{open_leads_counter, sla_streak_counter};
use leadrelay_shared::signature::{self, SignedRequest};
use leadrelay_shared::stages::claim::human_duration;
use serde_json::Value;

/// The headers that sign a post of `body` to `url` for `source`, as (name, value) pairs, and
/// the URL to post to (a token may travel in its query).
pub fn signed_request(
    source: &SourceConfig,
    event_id: &str,
    url: &str,
    body: &[u8],
) -> anyhow::Result<SignedRequest> {
    let key = source
        .keys
        .first()
        .with_context(|| format!("source {} has no secret", source.id))?;
    Ok(signature::sign_request(
        &source.verifier,
        key,
        url,
        body,
        event_id,
        Timestamp::now(),
    )?)
}

/// The signing headers alone, for a post whose URL the scheme does not sign (or the URL
/// `Pipeline::ingest` assumes): tests and benchmarks.
pub fn signed_headers(
    source: &SourceConfig,
    event_id: &str,
    body: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    let url = format!("https://leadrelay.invalid/webhooks/{}", source.id);
    Ok(signed_request(source, event_id, &url, body)?.headers)
}

fn pick_source<'a>(config: &'a Config, source: Option<&str>) -> anyhow::Result<&'a SourceConfig> {
    match source {
        Some(id) => config
            .source(id)
            .with_context(|| format!("no source {id:?} in the configuration")),
        None => config
            .sources
            .first()
            .map(|s| s.get_ref())
            .context("the configuration has no source"),
    }
}

fn new_event_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Signs and posts each event file; with `wait`, follows each lead until it is notified.
pub async fn send(
    config: &Config,
    source: Option<&str>,
    url: &str,
    event_id: Option<&str>,
    files: &[PathBuf],
    wait: bool,
) -> anyhow::Result<()> {
    let source = pick_source(config, source)?;
    let http = leadrelay_https::client(|builder| builder.timeout(Duration::from_secs(10)))?;
    let base = url.trim_end_matches('/');
    let mut accepted = Vec::new();
    for file in files {
        let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let id = event_id.map(str::to_owned).unwrap_or_else(new_event_id);
        let signed = signed_request(
            source,
            &id,
            &format!("{base}/webhooks/{}", source.id),
            &body,
        )?;
        let mut request = http
            .post(&signed.url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        let sent_at = Instant::now();
        let response = request
            .send()
            .await
            .with_context(|| format!("posting to {base} (is `leadrelay serve` running?)"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        println!("{}  →  {} {}", file.display(), status.as_u16(), answer);
        if let Some(lead_id) = answer.get("lead_id").and_then(Value::as_str) {
            accepted.push((file.clone(), lead_id.to_owned(), sent_at));
        }
    }
    if wait {
        for (file, lead_id, sent_at) in accepted {
            let summary =
                wait_until_notified(&http, base, &lead_id, Duration::from_secs(10)).await?;
            println!(
                "{}: {} (answered 202, notified {} ms after sending)",
                file.display(),
                summary,
                sent_at.elapsed().as_millis()
            );
        }
    }
    Ok(())
}

async fn wait_until_notified(
    http: &reqwest::Client,
    base: &str,
    lead_id: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let lead: Value = http
            .get(format!("{base}/leads/{lead_id}"))
            .send()
            .await?
            .json()
            .await?;
        let held = lead["alert_held_until"].as_str();
        if lead["state"] == "notified" || (lead["state"] == "routed" && held.is_some()) {
            let mut summary = format!(
                "owner {} ({}: {}) by rule \"{}\", tier {}, SLA {} min, due {}",
                lead["owner_name"].as_str().unwrap_or("?"),
                lead["owner"]["kind"].as_str().unwrap_or("?"),
                lead["owner"]["id"].as_str().unwrap_or("?"),
                lead["rule"].as_str().unwrap_or("?"),
                lead["tier"],
                lead["sla_minutes"],
                lead["timeline"]["sla_due_at"].as_str().unwrap_or("?"),
            );
            if let Some(until) = held {
                summary.push_str(&format!("; after hours: the alert is held until {until}"));
            }
            return Ok(summary);
        }
        if started.elapsed() > deadline {
            bail!("lead {lead_id} not notified after {deadline:?}: {lead}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ready `curl` line that posts `file` signed for `source` (valid within the tolerance).
pub fn curl_line(
    config: &Config,
    source: Option<&str>,
    url: &str,
    file: &Path,
) -> anyhow::Result<String> {
    let source = pick_source(config, source)?;
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let target = format!("{}/webhooks/{}", url.trim_end_matches('/'), source.id);
    let signed = signed_request(source, &new_event_id(), &target, &body)?;
    let mut line = format!(
        "curl -sS -X POST '{}' -H 'content-type: application/json'",
        signed.url
    );
    for (name, value) in signed.headers {
        line.push_str(&format!(" -H '{name}: {value}'"));
    }
    line.push_str(&format!(" --data-binary @{}", file.display()));
    Ok(line)
}

/// The stored lead and its timeline.
pub async fn show_lead(store: &dyn LeadStore, id: &str) -> anyhow::Result<()> {
    let lead = store
        .get_lead(id)
        .await?
        .with_context(|| format!("no lead {id} in the store"))?;
    // writeln! instead of println!: `leadrelay lead X | head` ends quietly on a closed pipe.
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", timeline(&lead)).and_then(|_| {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&lead).unwrap_or_default()
        )
    });
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One line per recorded step, with the time since capture.
pub fn timeline(lead: &Lead) -> String {
    let t = &lead.timeline;
    let mut out = format!("lead {} is {}\n", lead.id, lead.state);
    let Some(captured) = t.captured_at else {
        return out;
    };
    for (step, at) in [
        ("captured", t.captured_at),
        ("enriched", t.enriched_at),
        ("routed", t.routed_at),
        ("notified", t.notified_at),
        ("escalated", t.escalated_at),
        ("claimed", t.claimed_at),
        ("sla due", t.sla_due_at),
    ] {
        if let Some(at) = at {
            let since = at.duration_since(captured);
            out.push_str(&format!(
                "  {step:<9} {at}  (+{:.1} ms)\n",
                since.as_secs_f64() * 1000.0
            ));
        }
    }
    if let Some(a) = &lead.assignment {
        out.push_str(&format!(
            "  owner     {} ({}) by rule \"{}\": {}\n",
            a.owner_name, a.owner, a.rule, a.reason
        ));
        if let Some(until) = a.held_until {
            out.push_str(&format!(
                "  held      alert held until {until} (after hours)\n"
            ));
        }
        out.push_str(&format!(
            "  (why: `leadrelay explain --lead {}`)\n",
            lead.id
        ));
    }
    for step in &lead.escalations {
        out.push_str(&format!(
            "  level {}   {}: {} -> {} (deadline {} passed)\n",
            step.level, step.at, step.from, step.to, step.missed
        ));
    }
    if let Some(stopped) = t.escalation_stopped_at {
        out.push_str(&format!(
            "  top of the escalation ladder at {stopped}: no longer watched\n"
        ));
    }
    if let Some(claim) = &lead.claim {
        let first = leadrelay_shared::stages::claim::FirstResponse::of(lead);
        out.push_str(&format!(
            "  claimed   by {} via {}. {}\n",
            claim.rep,
            claim.via,
            leadrelay_web::claim_http::response_line(&first)
        ));
    }
    // What happened after the alert: minutes and hours, not milliseconds.
    for (step, at) in [
        ("touched", t.first_touch_at),
        ("meeting", t.meeting_booked_at),
        ("met", t.meeting_held_at),
        ("closed", t.closed_at),
    ] {
        if let Some(at) = at {
            out.push_str(&format!(
                "  {step:<9} {at}  ({} after capture)\n",
                human_duration(at.duration_since(captured))
            ));
        }
    }
    if let Some(reason) = &lead.close_reason {
        out.push_str(&format!("  outcome   {}\n", terminal_safe(reason)));
    }
    for a in &lead.activities {
        out.push_str(&format!(
            "  activity  {} {}{} via {}{}{}\n",
            a.at,
            a.kind.name(),
            a.by.as_deref()
                .map(|by| format!(" by {}", terminal_safe(by)))
                .unwrap_or_default(),
            terminal_safe(&a.via),
            if a.automated { " (automated)" } else { "" },
            a.detail
                .as_deref()
                .map(|d| format!(": {}", terminal_safe(d)))
                .unwrap_or_default(),
        ));
    }
    for m in &lead.misroutes {
        out.push_str(&format!(
            "  not mine  {} said {} at {} (rule \"{}\")\n",
            m.rep,
            terminal_safe(&m.reason),
            m.at,
            m.rule
        ));
    }
    if let Some(f) = &lead.last_failure {
        out.push_str(&format!(
            "  last failure in {} at {}: {}\n",
            f.stage, f.at, f.error
        ));
    }
    if lead.state < LeadState::Notified && lead.last_failure.is_some() {
        out.push_str("  (see `leadrelay dlq` if it stays stuck)\n");
    }
    out
}

/// Each rep's open leads and run of missed SLAs, and whether it paused them.
pub async fn reps(
    config: &Config,
    store: &dyn LeadStore,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let pause_after = i64::from(config.escalation.pause_after_breaches);
    writeln!(
        out,
        "{:<12} {:>10} {:>12}  status",
        "rep", "open leads", "missed SLAs"
    )?;
    for rep in config.reps.iter().map(|r| r.get_ref()) {
        let names = [
            open_leads_counter(&Owner::Rep(rep.id.clone())),
            sla_streak_counter(&rep.id),
        ];
        let values = store.counters(&names).await?;
        let (open, missed) = (values[0], values[1]);
        let status = if pause_after > 0 && missed >= pause_after {
            format!("PAUSED (leadrelay reps resume {})", rep.id)
        } else {
            "active".to_owned()
        };
        let cap = rep.capacity.map(|c| format!("/{c}")).unwrap_or_default();
        writeln!(
            out,
            "{:<12} {:>10} {:>12}  {status}",
            rep.id,
            format!("{open}{cap}"),
            missed
        )?;
    }
    Ok(())
}

/// Resumes a rep paused for missed SLAs: their run starts again at zero.
pub async fn resume(
    config: &Config,
    store: &dyn LeadStore,
    rep: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if config.rep(rep).is_none() {
        bail!("no rep {rep:?} in the configuration");
    }
    let counter = sla_streak_counter(rep);
    let missed = store.counter(&counter).await?;
    store.reset_counter(&counter).await?;
    writeln!(
        out,
        "{rep} resumed (had missed {missed} SLAs in a row); new leads reach them again"
    )?;
    Ok(())
}

/// `leadrelay console hash-password`: the Argon2id hash of a password, for the configuration.
pub fn hash_password(from_stdin: bool) -> anyhow::Result<()> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ; nothing printed");
        }
        first
    };
    if password.chars().count() < 12 {
        bail!("use at least 12 characters");
    }
    let hash = leadrelay_console::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    println!("{hash}");
    Ok(())
}

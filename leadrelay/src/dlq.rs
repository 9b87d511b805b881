//! `leadrelay dlq`: list, show, replay and purge dead letters, on the embedded store or on SQS.
//! Replaying is safe by the pipeline's idempotency: a replayed message never double-notifies
//! or double-assigns.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context as _};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{DeadLetters, LeadStore, StoreError};
use leadrelay_shared::stages::dead_letters::{
    self, last_error, release_all, survey, HOLD, MAX_PER_STAGE,
};

/// Which dead letters a replay or purge takes (the core's, shared with the console).
pub use leadrelay_shared::stages::dead_letters::Filter;

/// Parses `30m`, `2h`, `7d` and friends.
pub fn parse_age(text: &str) -> anyhow::Result<SignedDuration> {
    let friendly: jiff::Span = text
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 30m, 2h or 7d"))?;
    friendly
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .with_context(|| format!("{text:?} is not a fixed duration"))
}

/// `dlq list`: per stage the count and oldest message, then one line per message.
pub async fn list(
    dead: &dyn DeadLetters,
    store: &dyn LeadStore,
    filter: &Filter,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let mut total = 0;
    for (stage, taken) in survey(dead, store, filter, Timestamp::now()).await? {
        let oldest = taken
            .iter()
            .filter_map(|l| l.letter.sent_at)
            .min()
            .map(|t| format!("oldest sent {t}"))
            .unwrap_or_default();
        writeln!(out, "{stage}: {} dead letter(s) {oldest}", taken.len())?;
        for listed in &taken {
            writeln!(
                out,
                "  {}  lead {}  received {}x  last error: {}",
                listed.letter.message_id,
                listed.letter.lead_id.as_deref().unwrap_or("?"),
                listed.letter.receive_count,
                listed.error
            )?;
        }
        total += taken.len();
    }
    Ok(total)
}

/// `dlq show <message id>`: the message, its envelope and the lead's last failure.
pub async fn show(
    dead: &dyn DeadLetters,
    store: &dyn LeadStore,
    message_id: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for stage in Stage::ALL {
        let letters = dead.list(stage, MAX_PER_STAGE, HOLD).await?;
        let found = letters.iter().find(|l| l.message_id == message_id).cloned();
        release_all(dead, stage, &letters).await;
        if let Some(letter) = found {
            writeln!(out, "message   {}", letter.message_id)?;
            writeln!(out, "stage     {stage}")?;
            writeln!(
                out,
                "lead      {}",
                letter.lead_id.as_deref().unwrap_or("?")
            )?;
            writeln!(out, "received  {}x", letter.receive_count)?;
            if let Some(sent) = letter.sent_at {
                writeln!(out, "sent      {sent}")?;
            }
            writeln!(out, "error     {}", last_error(store, &letter).await)?;
            writeln!(out, "body      {}", letter.body)?;
            if let Some(lead_id) = &letter.lead_id {
                match store.get_lead(lead_id).await {
                    Ok(Some(lead)) => writeln!(
                        out,
                        "lead now  {} (owner: {})",
                        lead.state,
                        lead.assignment
                            .map(|a| a.owner.to_string())
                            .unwrap_or_else(|| "none".into())
                    )?,
                    Ok(None) => {}
                    // The letter is shown all the same: it is how an operator finds the lead.
                    Err(quarantined @ StoreError::Undecodable { .. }) => {
                        writeln!(out, "lead now  {quarantined}")?
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            return Ok(());
        }
    }
    bail!("no dead letter {message_id}")
}

/// `dlq replay`: back onto each stage's queue, at most `per_second` messages a second.
pub async fn replay(
    dead: &dyn DeadLetters,
    filter: &Filter,
    dry_run: bool,
    per_second: u32,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let mut written = Ok(());
    let verb = if dry_run { "would replay" } else { "replayed" };
    let count = dead_letters::replay(
        dead,
        filter,
        Timestamp::now(),
        dry_run,
        pause,
        |stage, letter| {
            if written.is_ok() {
                written = writeln!(
                    out,
                    "{verb} {} (lead {}) to {stage}",
                    letter.message_id,
                    letter.lead_id.as_deref().unwrap_or("?")
                );
            }
        },
    )
    .await?;
    written?;
    Ok(count)
}

/// `dlq purge`: deletes the selected dead letters for good.
pub async fn purge(
    dead: &dyn DeadLetters,
    filter: &Filter,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let now = Timestamp::now();
    let mut purged = 0;
    for stage in filter.stages() {
        let letters = dead.list(stage, MAX_PER_STAGE, HOLD).await?;
        for letter in &letters {
            if filter.takes(letter, now) {
                dead.discard(stage, letter).await?;
                writeln!(
                    out,
                    "purged {} (lead {})",
                    letter.message_id,
                    letter.lead_id.as_deref().unwrap_or("?")
                )?;
                purged += 1;
            } else {
                let _ = dead.release(stage, letter).await;
            }
        }
    }
    Ok(purged)
}

//! `leadrelay dlq`: list, show, replay and purge dead letters, on the embedded store or on SQS.
//! Replaying is safe by the pipeline's idempotency: a replayed message never double-notifies
//! or double-assigns.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context as _};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::{DeadLetter, DeadLetters, LeadStore, StoreError};

/// How long SQS hides listed messages while a command works on them.
const HOLD: Duration = Duration::from_secs(60);
/// At most this many dead letters per stage per command.
const MAX_PER_STAGE: usize = 1000;

/// Which dead letters a replay or purge takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stage: Option<Stage>,
    pub lead_id: Option<String>,
    /// Only messages first sent at least this long ago.
    pub older_than: Option<SignedDuration>,
}

impl Filter {
    fn stages(&self) -> Vec<Stage> {
        self.stage.map_or_else(|| Stage::ALL.to_vec(), |s| vec![s])
    }

    fn takes(&self, letter: &DeadLetter, now: Timestamp) -> bool {
        let lead_matches = self
            .lead_id
            .as_ref()
            .is_none_or(|id| letter.lead_id.as_ref() == Some(id));
        let old_enough = self.older_than.is_none_or(|age| {
            letter
                .sent_at
                .is_some_and(|sent| now.duration_since(sent) >= age)
        });
        lead_matches && old_enough
    }

    pub fn is_everything(&self) -> bool {
        self.lead_id.is_none() && self.older_than.is_none()
    }
}

/// Parses `30m`, `2h`, `7d` and friends.
pub fn parse_age(text: &str) -> anyhow::Result<SignedDuration> {
    let friendly: jiff::Span = text
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 30m, 2h or 7d"))?;
    friendly
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .with_context(|| format!("{text:?} is not a fixed duration"))
}

async fn last_error(store: &dyn LeadStore, letter: &DeadLetter) -> String {
    if let Some(error) = &letter.last_error {
        return error.clone();
    }
    // SQS keeps no error text: the stage recorded it on the lead.
    let Some(lead_id) = &letter.lead_id else {
        return "-".into();
    };
    match store.get_lead(lead_id).await {
        Ok(Some(lead)) => lead
            .last_failure
            .map(|f| f.error)
            .unwrap_or_else(|| "-".into()),
        Ok(None) => "lead not found".into(),
        Err(e) => format!("cannot read lead: {e}"),
    }
}

async fn release_all(dead: &dyn DeadLetters, stage: Stage, letters: &[DeadLetter]) {
    for letter in letters {
        let _ = dead.release(stage, letter).await;
    }
}

/// `dlq list`: per stage the count and oldest message, then one line per message.
pub async fn list(
    dead: &dyn DeadLetters,
    store: &dyn LeadStore,
    filter: &Filter,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let now = Timestamp::now();
    let mut total = 0;
    for stage in filter.stages() {
        let letters = dead.list(stage, MAX_PER_STAGE, HOLD).await?;
        let (taken, _): (Vec<_>, Vec<_>) = letters.iter().partition(|l| filter.takes(l, now));
        let oldest = taken
            .iter()
            .filter_map(|l| l.sent_at)
            .min()
            .map(|t| format!("oldest sent {t}"))
            .unwrap_or_default();
        writeln!(out, "{stage}: {} dead letter(s) {oldest}", taken.len())?;
        for letter in &taken {
            writeln!(
                out,
                "  {}  lead {}  received {}x  last error: {}",
                letter.message_id,
                letter.lead_id.as_deref().unwrap_or("?"),
                letter.receive_count,
                last_error(store, letter).await
            )?;
        }
        total += taken.len();
        release_all(dead, stage, &letters).await;
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
    let now = Timestamp::now();
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let mut replayed = 0;
    for stage in filter.stages() {
        let letters = dead.list(stage, MAX_PER_STAGE, HOLD).await?;
        for letter in &letters {
            if !filter.takes(letter, now) {
                let _ = dead.release(stage, letter).await;
                continue;
            }
            if dry_run {
                writeln!(
                    out,
                    "would replay {} (lead {}) to {stage}",
                    letter.message_id,
                    letter.lead_id.as_deref().unwrap_or("?")
                )?;
                let _ = dead.release(stage, letter).await;
            } else {
                dead.replay(stage, letter)
                    .await
                    .with_context(|| format!("replaying {}", letter.message_id))?;
                writeln!(
                    out,
                    "replayed {} (lead {}) to {stage}",
                    letter.message_id,
                    letter.lead_id.as_deref().unwrap_or("?")
                )?;
                tokio::time::sleep(pause).await;
            }
            replayed += 1;
        }
    }
    Ok(replayed)
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

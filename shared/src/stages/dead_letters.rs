//! Dead letters for an operator, the same for `leadrelay dlq` and the console's operations
//! page: which letters a command takes ([`Filter`]), the error each one died of
//! ([`last_error`]), and the replay. Replaying is safe: every stage is idempotent, so a replayed
//! message never double-notifies or double-assigns.
//!
//! On SQS a listed message stays hidden for [`HOLD`]: whatever lists letters gives back every
//! one it does not act on ([`release_all`]), so a look at the queue hides nothing.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::model::Stage;
use crate::ports::{DeadLetter, DeadLetters, LeadStore, QueueError};

/// How long SQS hides listed messages while a command works on them.
pub const HOLD: Duration = Duration::from_secs(60);
/// At most this many dead letters per stage per command.
pub const MAX_PER_STAGE: usize = 1000;

/// Which dead letters a list, replay or purge takes; the default takes every one.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stage: Option<Stage>,
    pub lead_id: Option<String>,
    /// Only messages first sent at least this long ago.
    pub older_than: Option<SignedDuration>,
    /// Only these messages (the console's replay of what its preview listed); any when empty.
    pub message_ids: Vec<String>,
}

impl Filter {
    /// The stages the filter looks at, in pipeline order.
    pub fn stages(&self) -> Vec<Stage> {
        self.stage.map_or_else(|| Stage::ALL.to_vec(), |s| vec![s])
    }

    pub fn takes(&self, letter: &DeadLetter, now: Timestamp) -> bool {
        let lead_matches = self
            .lead_id
            .as_ref()
            .is_none_or(|id| letter.lead_id.as_ref() == Some(id));
        let old_enough = self.older_than.is_none_or(|age| {
            letter
                .sent_at
                .is_some_and(|sent| now.duration_since(sent) >= age)
        });
        let listed = self.message_ids.is_empty() || self.message_ids.contains(&letter.message_id);
        lead_matches && old_enough && listed
    }

    /// Whether the filter takes every letter of its stages.
    pub fn is_everything(&self) -> bool {
        self.lead_id.is_none() && self.older_than.is_none() && self.message_ids.is_empty()
    }
}

/// The error a letter died of. SQS keeps no error text: the stage recorded it on the lead as
/// its `last_failure`, so it is read from there.
pub async fn last_error(store: &dyn LeadStore, letter: &DeadLetter) -> String {
    if let Some(error) = &letter.last_error {
        return error.clone();
    }
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

/// Makes listed letters visible again at once (SQS). Best effort: a letter not released
/// reappears by itself when [`HOLD`] ends.
pub async fn release_all(dead: &dyn DeadLetters, stage: Stage, letters: &[DeadLetter]) {
    for letter in letters {
        let _ = dead.release(stage, letter).await;
    }
}

/// One dead letter as an operator sees it: the letter and the error it died of.
#[derive(Debug, Clone)]
pub struct Listed {
    pub stage: Stage,
    pub letter: DeadLetter,
    pub error: String,
}

/// The letters the filter takes, stage by stage (pipeline order), each with its error. Every
/// listed letter is released before this returns: it only looks.
pub async fn survey(
    dead: &dyn DeadLetters,
    store: &dyn LeadStore,
    filter: &Filter,
    now: Timestamp,
) -> Result<Vec<(Stage, Vec<Listed>)>, QueueError> {
    let mut stages = Vec::new();
    for stage in filter.stages() {
        let letters = dead.list(stage, MAX_PER_STAGE, HOLD).await?;
        let mut taken = Vec::new();
        for letter in letters.iter().filter(|l| filter.takes(l, now)) {
            taken.push(Listed {
                stage,
                letter: letter.clone(),
                error: last_error(store, letter).await,
            });
        }
        release_all(dead, stage, &letters).await;
        stages.push((stage, taken));
    }
    Ok(stages)
}

/// A replay that stopped: the message it stopped at, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("listing the {stage} dead letters: {source}")]
    List { stage: Stage, source: QueueError },
    #[error("replaying {message_id}: {source}")]
    Replay {
        message_id: String,
        source: QueueError,
    },
}

/// Puts the letters the filter takes back on their stage's queue, waiting `pause` after each
/// (a rate for a large replay), and releases the others; with `dry_run` it releases them all
/// instead. `each` hears of every letter taken, after it was replayed. Returns how many were
/// taken.
pub async fn replay(
    dead: &dyn DeadLetters,
    filter: &Filter,
    now: Timestamp,
    dry_run: bool,
    pause: Duration,
    mut each: impl FnMut(Stage, &DeadLetter),
) -> Result<usize, ReplayError> {
    let mut taken = 0;
    for stage in filter.stages() {
        let letters = dead
            .list(stage, MAX_PER_STAGE, HOLD)
            .await
            .map_err(|source| ReplayError::List { stage, source })?;
        for (index, letter) in letters.iter().enumerate() {
            if !filter.takes(letter, now) {
                let _ = dead.release(stage, letter).await;
                continue;
            }
            if dry_run {
                let _ = dead.release(stage, letter).await;
            } else {
                if let Err(source) = dead.replay(stage, letter).await {
                    // The rest of the listing goes back at once rather than after the hold.
                    release_all(dead, stage, &letters[index + 1..]).await;
                    return Err(ReplayError::Replay {
                        message_id: letter.message_id.clone(),
                        source,
                    });
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            each(stage, letter);
            taken += 1;
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, lead: &str) -> DeadLetter {
        DeadLetter {
            message_id: id.into(),
            receipt: String::new(),
            body: String::new(),
            lead_id: Some(lead.into()),
            receive_count: 3,
            last_error: None,
            sent_at: None,
        }
    }

    #[test]
    fn listed_ids_narrow_the_selection() {
        let now = Timestamp::UNIX_EPOCH;
        let filter = Filter {
            message_ids: vec!["m1".into()],
            ..Filter::default()
        };
        assert!(filter.takes(&letter("m1", "a"), now));
        assert!(!filter.takes(&letter("m2", "a"), now));
        assert!(!filter.is_everything());
        assert!(Filter::default().takes(&letter("m2", "a"), now));
    }
}

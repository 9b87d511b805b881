//! The dead-letter alarm of the embedded mode, as the CloudWatch DLQ alarms are on AWS: a
//! dead-letter queue that goes from empty to non-empty is logged at error level and reported
//! to `[operations]` once, then again every `remind_every` while it stays non-empty. What was
//! reported is kept in the store, so a restart does not report it again.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use leadrelay_channels::operations::{DeadLetterNotice, OperationsChannel};
use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::StoreError;
use tracing::{error, info, warn};

use leadrelay_sqlite::{Alarm, Sqlite};

/// Lead ids a notice lists; the count says how many more there are.
const LEADS_LISTED: usize = 10;

pub struct DeadLetterAlarm {
    db: Sqlite,
    channel: Option<OperationsChannel>,
    remind_every: Duration,
}

impl DeadLetterAlarm {
    /// Watches `db`'s dead-letter queues; without a `channel` it only logs.
    pub fn new(db: Sqlite, channel: Option<OperationsChannel>, remind_every: Duration) -> Self {
        DeadLetterAlarm {
            db,
            channel,
            remind_every,
        }
    }

    /// Looks at each dead-letter queue once: raises the alarm of a queue found non-empty, or
    /// reminds when the last notice is `remind_every` old; forgets the alarm of a queue found
    /// empty. Returns the notices given. A notice no destination took is tried again at the
    /// next check.
    pub async fn check(&self, now: Timestamp) -> Result<Vec<DeadLetterNotice>, StoreError> {
        let mut given = Vec::new();
        for stage in Stage::ALL {
            let name = format!("dlq:{stage}");
            let summary = self.db.dead_letter_summary(stage, LEADS_LISTED).await?;
            let alarm = self.db.alarm(&name).await?;
            if summary.count == 0 {
                if alarm.is_some() {
                    self.db.clear_alarm(&name).await?;
                    info!(stage = %stage, "dead-letter queue empty again");
                }
                continue;
            }
            let reminder = match alarm {
                None => false,
                Some(alarm) if self.due(alarm, now) => true,
                Some(_) => continue,
            };
            let notice = DeadLetterNotice {
                stage,
                count: summary.count,
                oldest: summary.oldest,
                lead_ids: summary.lead_ids,
                reminder,
            };
            error!(stage = %stage, dead_letters = notice.count, lead_ids = ?notice.lead_ids,
                reminder, "dead-letter queue not empty: leads have not reached their owner");
            if let Some(channel) = &self.channel {
                if let Err(failures) = channel.tell(&notice, now).await {
                    let errors: Vec<String> = failures.iter().map(ToString::to_string).collect();
                    warn!(stage = %stage, errors = ?errors,
                        "could not tell operations about the dead letters; trying again at the next check");
                    continue;
                }
            }
            let raised_at = alarm.map_or(now, |a| a.raised_at);
            self.db
                .set_alarm(
                    &name,
                    Alarm {
                        raised_at,
                        notified_at: now,
                    },
                )
                .await?;
            given.push(notice);
        }
        Ok(given)
    }

    fn due(&self, alarm: Alarm, now: Timestamp) -> bool {
        let every = SignedDuration::try_from(self.remind_every).unwrap_or(SignedDuration::MAX);
        alarm
            .notified_at
            .checked_add(every)
            .is_ok_and(|next| next <= now)
    }
}

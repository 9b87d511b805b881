//! `[pipeline]`: the queue semantics every stage shares, above all the retry schedule, which
//! must run out before the queue's own receive limit dead-letters a message.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Interval, Validator};

/// The longest wait one retry step may ask for: SQS holds a received message invisible for at
/// most 12 hours (ChangeMessageVisibility).
pub const MAX_RETRY_STEP: Duration = Duration::from_secs(12 * 3600);

/// Queue semantics shared by every stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The queue's own limit: a message received this many times goes to its stage's
    /// dead-letter queue, whatever the stage did. At least one more than the retry schedule's
    /// steps, so that the schedule runs out first (the spare receives absorb crashes and
    /// throttled invocations).
    pub max_receives: u32,
    /// How long a received message stays invisible to other consumers.
    pub visibility_timeout_secs: u64,
    /// The wait before each retry of a failed message: the first step after the first
    /// failure, and so on. When the steps run out, the stage moves the message to its
    /// dead-letter queue (and logs it at error level). Each step is at most 12 hours.
    pub retry_schedule: Vec<Interval>,
    /// The old single delay, replaced by `retry_schedule`: refused at load, naming the new key.
    #[serde(rename = "retry_delay_ms")]
    pub(crate) legacy_retry_delay_ms: Option<u64>,
    /// Messages a stage worker takes per receive.
    pub batch_size: u32,
    /// Past this many messages waiting in the stage queues, ingest answers 429 with
    /// `Retry-After` instead of letting the capture-to-alert delay grow (0: never). Only
    /// adapters that can measure their backlog cheaply (the embedded store) apply it.
    pub max_backlog: u64,
}

/// Seconds, then minutes, then hours (as Svix and Stripe retry webhooks): about 23 h 42 min
/// in all, long enough for a real outage of Slack or a CRM.
const DEFAULT_RETRY_SCHEDULE: [u64; 10] =
    [5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800];

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_receives: 15,
            visibility_timeout_secs: 30,
            retry_schedule: DEFAULT_RETRY_SCHEDULE
                .into_iter()
                .map(Interval::from_secs)
                .collect(),
            legacy_retry_delay_ms: None,
            batch_size: 10,
            max_backlog: 5_000,
        }
    }
}

impl PipelineConfig {
    /// How many times a failing message is tried: once, then once per schedule step.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.retry_schedule.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait after the `receive_count`-th receive failed; `None` once the schedule is
    /// spent (the message then goes to the dead-letter queue).
    pub fn retry_delay(&self, receive_count: u32) -> Option<Duration> {
        let step = usize::try_from(receive_count.max(1) - 1).ok()?;
        self.retry_schedule.get(step).map(|interval| interval.0)
    }

    /// The whole schedule's length: how long a failing message is retried before it is
    /// dead-lettered (plus the time its attempts take).
    pub fn retry_span(&self) -> Duration {
        self.retry_schedule.iter().map(|i| i.0).sum()
    }

    pub(super) fn check(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        for (key, value) in [
            ("max_receives", self.max_receives),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return Err(v.invalid(0..0, format!("pipeline.{key}"), "must be above 0"));
            }
        }
        self.check_retries(v)
    }

    /// The retry schedule: present, each step within SQS's 12 hours, and spent before the
    /// queue's own receive limit dead-letters the message.
    fn check_retries(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| v.invalid(v.section("pipeline"), key, message);
        if self.legacy_retry_delay_ms.is_some() {
            return Err(invalid(
                "pipeline.retry_delay_ms",
                "replaced by retry_schedule, the wait before each retry, e.g. \
                 retry_schedule = [\"5s\", \"30s\", \"2m\", \"10m\", \"30m\", \"1h\"] \
                 (see docs/architecture.md)"
                    .into(),
            ));
        }
        if self.retry_schedule.is_empty() {
            return Err(invalid(
                "pipeline.retry_schedule",
                "needs at least one wait, e.g. [\"5s\", \"30s\", \"2m\"]".into(),
            ));
        }
        if let Some(n) = self
            .retry_schedule
            .iter()
            .position(|step| step.0 > MAX_RETRY_STEP)
        {
            return Err(invalid(
                &format!("pipeline.retry_schedule[{n}]"),
                "must be at most 12h (the longest an SQS message can stay hidden)".into(),
            ));
        }
        let attempts = self.attempts();
        if self.max_receives < attempts {
            return Err(invalid(
                "pipeline.max_receives",
                format!(
                    "must be at least {attempts}: the first attempt plus one per \
                     retry_schedule step, or the queue dead-letters a message before its \
                     schedule ends"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{parse, MINIMAL};

    #[test]
    fn the_retry_schedule_spans_an_outage_and_is_spent_before_the_queue_limit() {
        let config = parse(MINIMAL).expect("valid");
        let pipeline = &config.pipeline;
        // Seconds, then minutes, then hours: close to a day in all.
        assert_eq!(pipeline.retry_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(pipeline.retry_delay(2), Some(Duration::from_secs(30)));
        assert_eq!(
            pipeline.retry_delay(10),
            Some(Duration::from_secs(8 * 3600))
        );
        assert_eq!(pipeline.retry_delay(11), None);
        let span = pipeline.retry_span();
        assert!(span > Duration::from_secs(23 * 3600) && span <= Duration::from_secs(24 * 3600));

        let with = |pipeline: &str| parse(&format!("[pipeline]\n{pipeline}\n{MINIMAL}"));
        let custom =
            with("retry_schedule = [\"250ms\", \"2m\", \"1h 30m\", \"12h\"]\nmax_receives = 5")
                .expect("friendly durations");
        assert_eq!(
            custom.pipeline.retry_schedule,
            [
                Interval(Duration::from_millis(250)),
                Interval(Duration::from_secs(120)),
                Interval(Duration::from_secs(5400)),
                Interval(Duration::from_secs(43_200)),
            ]
        );
        let error = |text: &str| with(text).expect_err(text).to_string();
        let message = error("retry_schedule = [\"5s\", \"30s\"]\nmax_receives = 2");
        assert!(
            message.contains("pipeline.max_receives: must be at least 3"),
            "{message}"
        );
        let message = error("retry_schedule = [\"5s\", \"13h\"]");
        assert!(
            message.contains("pipeline.retry_schedule[1]: must be at most 12h"),
            "{message}"
        );
        let message = error("retry_schedule = [\"soon\"]");
        assert!(message.contains("\"soon\" is not a duration"), "{message}");
        let message = error("retry_schedule = []");
        assert!(message.contains("needs at least one wait"), "{message}");
        // A configuration written for the old single delay says what replaced it.
        let message = error("retry_delay_ms = 200");
        assert!(
            message.contains("pipeline.retry_delay_ms: replaced by retry_schedule"),
            "{message}"
        );
    }
}

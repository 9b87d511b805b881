//! The delivery rules every HTTP channel shares.
//!
//! One delivery retries on 408, 429, 5xx, timeouts and connection errors, with exponential
//! backoff and full jitter, honouring `Retry-After` (seconds) when it fits the delivery's
//! budget; whatever does not fit is left to the queue's own retry. Other 4xx answers are
//! permanent and returned at once. Each recipient's requests are spaced to its platform's
//! documented rate.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use secrecy::ExposeSecret;

use leadrelay_shared::config::RateConfig;
use leadrelay_shared::ports::{Destination, NotifyError};

/// How hard one delivery tries before giving the failure back to the queue.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Time for all attempts and waits of one delivery.
    pub budget: Duration,
    pub max_attempts: u32,
    /// The first backoff's ceiling; it doubles per attempt, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            budget: Duration::from_secs(10),
            max_attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl DeliveryPolicy {
    /// Full jitter: a random wait up to the attempt's ceiling, so that senders which failed
    /// together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// One keyed limiter per channel, keyed by webhook or recipient; `None`: no limit.
pub struct RateLimits {
    slack: Option<DefaultKeyedRateLimiter<String>>,
    teams: Option<DefaultKeyedRateLimiter<String>>,
    sms: Option<DefaultKeyedRateLimiter<String>>,
    webhook: Option<DefaultKeyedRateLimiter<String>>,
    hubspot: Option<DefaultKeyedRateLimiter<String>>,
}

/// `n` per second, in a burst of at most `burst`.
fn limiter(n: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    let n = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new(burst.min(n.get())).unwrap_or(NonZeroU32::MIN);
    Some(RateLimiter::keyed(Quota::per_second(n).allow_burst(burst)))
}

impl RateLimits {
    /// The platforms' documented rates (the defaults of `[notify.rates]`):
    /// - Slack incoming webhooks: 1 message per second per webhook (short bursts tolerated;
    ///   we do not rely on them).
    /// - Teams webhooks: Microsoft throttles a connector above 4 requests per second.
    /// - HubSpot private apps: 100 requests per 10 seconds (Free and Starter), as a burst of
    ///   10 refilled at 10 per second.
    /// - SMS: 1 message per second per recipient, the usual long-code rate.
    /// - Outbound webhooks have no platform limit: 10 per second per receiver, to be polite.
    pub fn documented() -> Self {
        RateLimits::from_config(&RateConfig::default())
    }

    /// Each channel's rate from `[notify.rates]`; only HubSpot's may come in a burst.
    pub fn from_config(rates: &RateConfig) -> Self {
        RateLimits {
            slack: limiter(rates.slack, 1),
            teams: limiter(rates.teams, 1),
            sms: limiter(rates.sms, 1),
            webhook: limiter(rates.webhook, 1),
            hubspot: limiter(rates.hubspot, rates.hubspot),
        }
    }

    fn for_channel(&self, channel: &str) -> Option<&DefaultKeyedRateLimiter<String>> {
        match channel {
            "slack" => self.slack.as_ref(),
            "teams" => self.teams.as_ref(),
            "sms" => self.sms.as_ref(),
            "webhook" => self.webhook.as_ref(),
            "hubspot" => self.hubspot.as_ref(),
            _ => None,
        }
    }
}

/// Like [`send`] for a channel that is not an HTTP request of ours (an SDK call): rate limited,
/// one attempt per try, retried while the error is transient and the budget allows.
pub(super) async fn send_with<F, Fut>(
    policy: &DeliveryPolicy,
    limits: &RateLimits,
    channel: &str,
    key: &str,
    attempt_once: F,
) -> Result<(), NotifyError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), NotifyError>>,
{
    let started = Instant::now();
    let key = key.to_owned();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(limiter) = limits.for_channel(channel) {
            wait_turn(
                limiter,
                &key,
                policy.budget.saturating_sub(started.elapsed()),
                channel,
            )
            .await?;
        }
        let error = match attempt_once().await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_permanent() => return Err(error),
            Err(error) => error,
        };
        let wait = policy.backoff(attempt);
        if attempt >= policy.max_attempts || started.elapsed() + wait > policy.budget {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
}

/// A failed attempt of [`retrying`]: the error, and how long the server asked to wait.
pub(super) struct Failure {
    pub error: NotifyError,
    pub retry_after: Option<Duration>,
}

/// One call of an API whose answers are not judged by HTTP status alone (Slack's Web API
/// answers 200 with `"ok": false`): `attempt_once` judges them. Retried like [`send`] while the
/// failure is transient, `Retry-After` honoured when it fits, all within the budget counted
/// from `started` (a delivery of several calls shares one budget). When `turn` names a rate
/// limit key, each attempt waits for the channel's turn first.
pub(super) async fn retrying<T, F, Fut>(
    policy: &DeliveryPolicy,
    started: Instant,
    turn: Option<(&RateLimits, &str)>,
    channel: &str,
    attempt_once: F,
) -> Result<T, NotifyError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some((limits, key)) = turn {
            if let Some(limiter) = limits.for_channel(channel) {
                let left = policy.budget.saturating_sub(started.elapsed());
                wait_turn(limiter, &key.to_owned(), left, channel).await?;
            }
        }
        let Failure { error, retry_after } = match attempt_once().await {
            Ok(value) => return Ok(value),
            Err(failure) if failure.error.is_permanent() => return Err(failure.error),
            Err(failure) => failure,
        };
        if attempt >= policy.max_attempts {
            return Err(error);
        }
        let wait = retry_after.unwrap_or_else(|| policy.backoff(attempt));
        // A wait past the budget is the queue's job: its retry comes back later.
        if started.elapsed() + wait > policy.budget {
            return Err(error);
        }
        tracing::info!(channel, attempt, wait_ms = wait.as_millis() as u64, error = %error, "delivery failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// A `Retry-After` header in seconds.
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The rate limit's key: a webhook's platform limits the webhook itself, which several
/// recipients may share, so Slack and Teams are keyed by a digest of the URL (the URL is a
/// secret and never kept as such); the others by recipient.
pub(super) fn rate_key(destination: &Destination) -> String {
    match destination {
        Destination::SlackWebhook { url, .. } | Destination::TeamsWebhook { url, .. } => {
            url_key(url.expose_secret())
        }
        other => other.receipt(),
    }
}

/// A webhook's rate-limit key: a digest of its URL, which is a secret.
pub(super) fn url_key(url: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(url.as_bytes())[..16])
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth another attempt, after `retry_after` when the server said so.
    Transient {
        error: NotifyError,
        retry_after: Option<Duration>,
    },
    Permanent(NotifyError),
}

/// Sends the request `build` makes (once per attempt) under `policy`, waiting for `key`'s
/// turn under `channel`'s rate before each attempt.
pub(super) async fn send(
    policy: &DeliveryPolicy,
    limits: &RateLimits,
    channel: &str,
    key: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(), NotifyError> {
    let started = Instant::now();
    let limiter = limits.for_channel(channel);
    let key = key.to_owned();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(limiter) = limiter {
            wait_turn(
                limiter,
                &key,
                policy.budget.saturating_sub(started.elapsed()),
                channel,
            )
            .await?;
        }
        let (error, retry_after) = match try_once(channel, build()).await {
            Attempt::Delivered => return Ok(()),
            Attempt::Permanent(error) => return Err(error),
            Attempt::Transient { error, retry_after } => (error, retry_after),
        };
        if attempt >= policy.max_attempts {
            return Err(error);
        }
        let wait = retry_after.unwrap_or_else(|| policy.backoff(attempt));
        // A wait past the budget is the queue's job: its retry comes back later.
        if started.elapsed() + wait > policy.budget {
            return Err(error);
        }
        tracing::info!(channel, attempt, wait_ms = wait.as_millis() as u64, error = %error, "delivery failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// Waits for `key`'s turn, but not past `left` of the budget: the delivery holds its channel's
/// lease while it waits, so a long queue of alerts for one webhook is handed back to the
/// message queue (a transient failure, retried later) instead of outliving the lease.
async fn wait_turn(
    limiter: &DefaultKeyedRateLimiter<String>,
    key: &String,
    left: Duration,
    channel: &str,
) -> Result<(), NotifyError> {
    use governor::clock::Clock as _;
    let started = Instant::now();
    loop {
        let wait = match limiter.check_key(key) {
            Ok(()) => return Ok(()),
            Err(not_until) => not_until.wait_time_from(limiter.clock().now()),
        };
        if started.elapsed() + wait > left {
            return Err(NotifyError::Unreachable {
                channel: channel.into(),
                detail: "rate limit: no turn within the delivery budget".into(),
            });
        }
        tokio::time::sleep(wait).await;
    }
}

async fn try_once(channel: &str, request: reqwest::RequestBuilder) -> Attempt {
    let response = match request.send().await {
        Ok(response) => response,
        // reqwest's error text can include the URL, which is a secret: keep the kind.
        Err(e) => {
            let detail = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Attempt::Transient {
                error: NotifyError::Unreachable {
                    channel: channel.into(),
                    detail: detail.into(),
                },
                retry_after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let error = NotifyError::Rejected {
        channel: channel.into(),
        status: status.as_u16(),
        detail: leadrelay_shared::render::truncate(body.trim(), 200),
    };
    if error.is_permanent() {
        Attempt::Permanent(error)
    } else {
        Attempt::Transient { error, retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_and_stops_at_its_cap() {
        let policy = DeliveryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (250u64 << (attempt - 1)).min(4_000);
            let wait = policy.backoff(attempt);
            assert!(
                wait <= Duration::from_millis(ceiling),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn only_4xx_other_than_408_and_429_is_permanent() {
        let rejected = |status| NotifyError::Rejected {
            channel: "teams".into(),
            status,
            detail: String::new(),
        };
        assert!(rejected(400).is_permanent());
        assert!(rejected(404).is_permanent());
        assert!(!rejected(408).is_permanent());
        assert!(!rejected(429).is_permanent());
        assert!(!rejected(503).is_permanent());
    }
}

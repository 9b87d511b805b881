//! A circuit breaker for one provider, in process memory (one per Lambda container or
//! embedded process).
//!
//! Closed: calls go through; `failures` consecutive failures open it. Open: calls fail fast
//! until the cooldown ends. Half-open: exactly one trial call goes through; its success closes
//! the breaker, its failure opens it for another cooldown. Time is passed in, so tests drive
//! it without sleeping. (`failsafe` was considered: it lets every call through while half-open
//! and reads the clock itself.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; the rest are refused until it reports.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// Why a call was not let through: the breaker is open (or its trial is out) until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub until: Instant,
}

/// Leave to make one call. Report how it went; a permit dropped without a report (the call
/// was cancelled when the lead's budget ran out) counts as a failure.
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    reported: bool,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (at least 1), for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere never leaves the state half-written: every update is one store.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, or says until when it is refused.
    pub fn permit(&self, now: Instant) -> Result<Permit<'_>, Refused> {
        let mut state = self.state();
        let trial = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => return Err(Refused { until }),
            State::Open { .. } => {
                *state = State::HalfOpen;
                true
            }
            // The trial reports within its own budget; until then nobody else goes.
            State::HalfOpen => {
                return Err(Refused {
                    until: now + self.cooldown,
                })
            }
        };
        Ok(Permit {
            breaker: self,
            trial,
            reported: false,
        })
    }

    /// Whether calls are currently refused (for logs and tests).
    pub fn is_open(&self, now: Instant) -> bool {
        match *self.state() {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen => true,
        }
    }

    fn record(&self, trial: bool, success: bool, now: Instant) {
        let mut state = self.state();
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            // A failed trial, or the last of `threshold` failures in a row.
            (State::HalfOpen, false) if trial => State::Open {
                until: now + self.cooldown,
            },
            (State::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    State::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    State::Closed { failures }
                }
            }
            // A late report from a call let through before the breaker opened changes nothing.
            (other, false) => other,
        };
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.trial, true, Instant::now());
    }

    pub fn failed(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(self.trial, false, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record(self.trial, false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn fail(breaker: &Breaker, now: Instant) {
        breaker.permit(now).expect("let through").failed(now);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3, COOLDOWN);
        let t0 = Instant::now();
        fail(&breaker, t0);
        fail(&breaker, t0);
        // A success in between starts the count again.
        breaker.permit(t0).expect("closed").succeeded();
        fail(&breaker, t0);
        fail(&breaker, t0);
        assert!(!breaker.is_open(t0));
        fail(&breaker, t0);
        assert!(breaker.is_open(t0));
        let refused = breaker.permit(t0 + Duration::from_secs(1)).err();
        assert_eq!(
            refused,
            Some(Refused {
                until: t0 + COOLDOWN
            })
        );
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_success_closes() {
        let breaker = Breaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        fail(&breaker, t0);
        let later = t0 + COOLDOWN;
        let trial = breaker.permit(later).expect("trial after the cooldown");
        assert!(breaker.permit(later).is_err(), "only one trial at a time");
        trial.succeeded();
        assert!(!breaker.is_open(later));
        breaker.permit(later).expect("closed again").succeeded();
    }

    #[test]
    fn a_failed_trial_opens_for_another_cooldown() {
        let breaker = Breaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        fail(&breaker, t0);
        let later = t0 + COOLDOWN + Duration::from_secs(5);
        breaker.permit(later).expect("trial").failed(later);
        assert_eq!(
            breaker.permit(later + Duration::from_secs(29)).err(),
            Some(Refused {
                until: later + COOLDOWN
            })
        );
        assert!(breaker.permit(later + COOLDOWN).is_ok());
    }

    #[test]
    fn a_cancelled_trial_counts_as_a_failure_and_never_wedges_the_breaker() {
        let breaker = Breaker::new(1, Duration::ZERO);
        let t0 = Instant::now();
        fail(&breaker, t0);
        drop(breaker.permit(t0).expect("trial"));
        // Open again (zero cooldown): the next call is the next trial.
        breaker
            .permit(Instant::now())
            .expect("next trial")
            .succeeded();
        assert!(!breaker.is_open(Instant::now()));
    }
}

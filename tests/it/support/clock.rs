//! A clock the test moves by hand.

use std::sync::Mutex;

use jiff::Timestamp;
use leadrelay_shared::ports::Clock;

/// Stands where the test last set it: forwards, backwards, or still.
pub struct HandClock(Mutex<Timestamp>);

impl HandClock {
    pub fn new(at: Timestamp) -> HandClock {
        HandClock(Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("not poisoned") = at;
    }
}

impl Clock for HandClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("not poisoned")
    }
}

//! The enrichment cache in memory, for the HTTP provider's tests
//! and bench (the cache on the real adapters is proven by tests/conformance.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use leadrelay_shared::ports::{EnrichmentCache, StoreError};

#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (String, Timestamp)>>,
    /// Every cache call fails while set, as a store outage would.
    pub broken: AtomicBool,
}

impl MemoryCache {
    pub fn entries(&self) -> usize {
        self.entries.lock().expect("not poisoned").len()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::unavailable_because("the store is down"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EnrichmentCache for MemoryCache {
    async fn cached(&self, key: &str, now: Timestamp) -> Result<Option<String>, StoreError> {
        self.check()?;
        let entries = self.entries.lock().expect("not poisoned");
        Ok(entries
            .get(key)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(value, _)| value.clone()))
    }
    async fn cache(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.check()?;
        self.entries
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), (value.to_owned(), expires_at));
        Ok(())
    }
}

//! A lead store that keeps only the enrichment cache, in memory, for the HTTP provider's tests
//! and bench (the cache on the real adapters is proven by tests/conformance.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use leadrelay_shared::model::{Lead, LeadState, StageFailure};
use leadrelay_shared::ports::{
    ContactLookup, Created, DeliveryStart, Effects, LeadStore, StoreError,
};
use leadrelay_shared::routing::ledger::PoolLedger;

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
            Err(StoreError::Unavailable("the store is down".into()))
        } else {
            Ok(())
        }
    }
}

fn unused() -> StoreError {
    StoreError::Unavailable("not kept by the memory cache".into())
}

#[async_trait]
impl LeadStore for MemoryCache {
    async fn create_lead(&self, _: &Lead) -> Result<Created, StoreError> {
        Err(unused())
    }
    async fn get_lead(&self, _: &str) -> Result<Option<Lead>, StoreError> {
        Err(unused())
    }
    async fn advance_lead(&self, _: &Lead, _: LeadState, _: &Effects) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn record_failure(&self, _: &str, _: &StageFailure) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn begin_delivery(
        &self,
        _: &str,
        _: &str,
        _: Timestamp,
        _: Duration,
    ) -> Result<DeliveryStart, StoreError> {
        Err(unused())
    }
    async fn finish_delivery(&self, _: &str, _: &str, _: Timestamp) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn release_delivery(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn counter(&self, _: &str) -> Result<i64, StoreError> {
        Err(unused())
    }
    async fn ledger(&self, _: &str, _: &str) -> Result<PoolLedger, StoreError> {
        Err(unused())
    }
    async fn leads_since(&self, _: Timestamp, _: usize) -> Result<Vec<Lead>, StoreError> {
        Err(unused())
    }
    async fn open_lead_for_contact(
        &self,
        _: &str,
        _: Timestamp,
    ) -> Result<ContactLookup, StoreError> {
        Err(unused())
    }
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

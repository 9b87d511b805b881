//! The one integration-test binary runs its tests on parallel threads. A test that loads the
//! machine (a burst of hundreds of webhooks, thousands of open sockets, two servers at once)
//! or that asserts a deadline takes [`heavy`] for its whole run, so that no two such tests
//! overlap: one of them never shares the machine with another, only with light tests.

use tokio::sync::{Mutex, MutexGuard};

static HEAVY: Mutex<()> = Mutex::const_new(());

/// Waits until no other heavy test runs, then holds the machine's heavy slot until dropped.
/// (tokio's lock: a test that fails holding it does not poison it for the next.)
pub async fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().await
}

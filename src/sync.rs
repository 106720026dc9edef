//! The one poison-tolerant lock helper: a panic in another thread while it held a lock leaves
//! data that is still consistent for our uses (counters, logs, scripts), so we go on with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data even if a panicking thread poisoned it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

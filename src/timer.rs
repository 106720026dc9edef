//! [`Timer`]: how the runner waits and tells the time (rate-limit pacing, retry back-off,
//! per-request timeouts, mock latency) without tying the crate to one async runtime.
//!
//! With the `tokio` feature, [`TokioTimer`] uses `tokio::time` (and so Tokio's paused clock in
//! tests). On another runtime, implement `Timer` with its sleep function in three lines.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A boxed future that completes after a delay.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Sleeps and tells the time. Implemented for `&T`, `Box<T>` and `Arc<T>`.
///
/// `now` must be the clock `sleep` waits on: a timer over a simulated clock overrides both.
pub trait Timer: Send + Sync + Debug {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// The current instant on this timer's clock. Default: [`Instant::now`].
    fn now(&self) -> Instant {
        Instant::now()
    }
}

impl<T: Timer + ?Sized> Timer for &T {
    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<T: Timer + ?Sized> Timer for Box<T> {
    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<T: Timer + ?Sized> Timer for Arc<T> {
    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
}

const _: Option<&dyn Timer> = None;

/// `tokio::time::sleep` and `tokio::time::Instant::now`, so Tokio's paused clock drives it in
/// tests; needs a Tokio runtime with the time driver enabled.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

//! An answer worth reusing for a moment: the readiness checks and the database-backed gauges of
//! `/metrics` are asked for by anyone, as often as they like, and must neither pile queries onto
//! the database nor wait with a database that does not answer.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

/// The last answer of one computation, reused while it is younger than a TTL; one computation
/// at a time, however many callers ask: they share its answer.
pub struct CachedAnswer<T> {
    slot: Mutex<Slot<T>>,
}

enum Slot<T> {
    Idle,
    Running(Shared<BoxFuture<'static, T>>),
    Done(Instant, T),
}

impl<T> Default for CachedAnswer<T> {
    fn default() -> Self {
        CachedAnswer { slot: Mutex::new(Slot::Idle) }
    }
}

impl<T: Clone + Send + Sync + 'static> CachedAnswer<T> {
    /// The answer younger than `ttl`, else the one being computed, else a new one from
    /// `compute`; `None` when it does not come within `timeout`. A computation that hangs keeps
    /// its place (callers meanwhile get `None` after `timeout`), so a database that accepts and
    /// never answers gets one query, not one per caller.
    pub async fn get(&self, ttl: Duration, timeout: Duration, compute: impl FnOnce() -> BoxFuture<'static, T>) -> Option<T> {
        let running = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Slot::Done(at, answer) if at.elapsed() < ttl => return Some(answer.clone()),
                Slot::Running(computation) => computation.clone(),
                _ => {
                    let computation = compute().shared();
                    *slot = Slot::Running(computation.clone());
                    computation
                }
            }
        };
        let answer = tokio::time::timeout(timeout, running.clone()).await.ok()?;
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(&*slot, Slot::Running(computation) if computation.ptr_eq(&running)) {
            *slot = Slot::Done(Instant::now(), answer.clone());
        }
        Some(answer)
    }
}

//! Keeping rayon's workers awake through a pass: [`on_pool`].
//!
//! A forward or backward pass is a chain of short parallel ops, each a fork and a join.
//! An idle rayon worker goes to sleep within microseconds, and waking it costs tens of
//! microseconds, about as much as a small op's work. Running the whole pass through
//! [`on_pool`] keeps the other workers spinning, ready for the next op, until it ends.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `f` on a worker thread of the current rayon pool (inline when already on one)
/// and returns its result. Wrap a whole forward or backward pass in it.
///
/// While `f` runs, every other worker of the pool stays awake: it runs a task that takes
/// whatever work appears (`rayon::yield_now`) and spins in between, until `f` returns. A
/// worker that is itself inside an `on_pool` body does not spin for another one (two such
/// workers could each wait for the other's body to finish); it returns to its own work.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if IN_POOL_BODY.get() > 0 {
        // Already inside a body on this thread: the other workers are spinning for it.
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            scope.spawn(move |_| {
                if IN_POOL_BODY.get() > 0 {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if let Some(rayon::Yield::Idle) = rayon::yield_now() {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Set on the way out even if `f` panics, or the spinning workers would never stop.
        let _stop = StopOnDrop(&done);
        IN_POOL_BODY.set(IN_POOL_BODY.get() + 1);
        let _depth = LeaveBodyOnDrop;
        f()
    })
}

thread_local! {
    /// How many `on_pool` bodies this thread is running (nested ones count).
    static IN_POOL_BODY: Cell<usize> = const { Cell::new(0) };
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Leaves an `on_pool` body when dropped.
struct LeaveBodyOnDrop;

impl Drop for LeaveBodyOnDrop {
    fn drop(&mut self) {
        IN_POOL_BODY.set(IN_POOL_BODY.get() - 1);
    }
}

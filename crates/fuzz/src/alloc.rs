//! The allocation bound: a global allocator over the system one that treats any single
//! allocation above a limit, while an input is being read, as a failure of that input.
//! A loader that trusts a size from its file ("allocates without bound") is then caught
//! at its first oversized request, before the machine runs out of memory, not only when
//! it panics.
//!
//! The same bound applies to the bytes live at once (counted across all threads), so a
//! loop of small allocations that grows without end is caught too.
//!
//! An allocator must not unwind, so a failure cannot become a panic that the loop
//! catches: the hook the runner installs saves the input and prints its reproducer, and
//! the process aborts, as libFuzzer does for `-malloc_limit_mb`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The default bound: 1 GiB in one allocation.
pub const DEFAULT_LIMIT: usize = 1 << 30;

/// The bound while armed; `usize::MAX` when disarmed (outside an input, or while the
/// failure is being reported).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes allocated and not yet freed, all threads together.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// What to call with the oversized request before aborting (a `fn(usize)`), or null.
static HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Set while this thread reports a failure, so that the report's own allocations pass.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, with the bound checked on every request.
pub struct BoundedAlloc;

/// Starts refusing single allocations above `limit` bytes (all threads).
pub fn arm(limit: usize) {
    LIMIT.store(limit, Ordering::SeqCst);
}

/// Stops checking.
pub fn disarm() {
    LIMIT.store(usize::MAX, Ordering::SeqCst);
}

/// Bytes allocated and not yet freed.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Sets what runs, with the requested size (or the live total it would make), when an allocation passes the bound; the
/// process aborts after it returns.
pub fn set_hook(hook: fn(usize)) {
    HOOK.store(hook as *mut (), Ordering::SeqCst);
}

/// Counts `size` more live bytes and checks the request, and the live total, against
/// the bound. The total is allowed twice the bound: a loader may hold its input and the
/// value built from it at once.
#[inline]
fn check(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed).saturating_add(size);
    let limit = LIMIT.load(Ordering::Relaxed);
    if (size > limit || live / 2 > limit) && !REPORTING.with(Cell::get) {
        over_limit(size.max(live));
    }
}

#[inline]
fn release(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
}

#[cold]
fn over_limit(size: usize) -> ! {
    REPORTING.with(|r| r.set(true));
    disarm();
    let hook = HOOK.load(Ordering::SeqCst);
    if !hook.is_null() {
        // SAFETY: HOOK only ever holds a `fn(usize)` stored by `set_hook`.
        let hook: fn(usize) = unsafe { std::mem::transmute::<*mut (), fn(usize)>(hook) };
        hook(size);
    }
    std::process::abort()
}

// SAFETY: every request goes to `System` unchanged; the check only reads atomics and a
// const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        release(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        release(layout.size());
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

//! Per-op timing, for `bench --profile`: [`Tape::set_profiling`] turns it on and
//! [`Tape::profile`] reads it.
//!
//! Forward time is measured from one record to the next, so it includes the caller's work
//! between ops; backward time is measured around each op's backward. With profiling off
//! (the default) the tape reads no clock.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::tape::Tape;

/// Wall time spent in each kind of op, forward and backward, summed over steps.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// (op name, forward time, backward time, calls), in first-seen order.
    pub ops: Vec<(&'static str, Duration, Duration, u64)>,
    last_record: Option<Instant>,
}

impl Profile {
    fn entry(&mut self, name: &'static str) -> &mut (&'static str, Duration, Duration, u64) {
        let i = match self.ops.iter().position(|e| e.0 == name) {
            Some(i) => i,
            None => {
                self.ops.push((name, Duration::ZERO, Duration::ZERO, 0));
                self.ops.len() - 1
            }
        };
        &mut self.ops[i]
    }
}

/// A tape's profile, present while profiling is on. Behind a mutex so that
/// `Tape::backward(&self)` can add to it.
#[derive(Default)]
pub(crate) struct Profiler(Mutex<Option<Profile>>);

impl Profiler {
    fn get_mut(&mut self) -> Option<&mut Profile> {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner()).as_mut()
    }

    /// A step starts: the next record's forward time counts from now.
    pub(crate) fn restart(&mut self) {
        if let Some(p) = self.get_mut() {
            p.last_record = Some(Instant::now());
        }
    }

    /// An op of kind `name` was recorded: charges it the time since the previous record.
    pub(crate) fn forward(&mut self, name: &'static str) {
        if let Some(p) = self.get_mut() {
            let now = Instant::now();
            let since = now - p.last_record.unwrap_or(now);
            let e = p.entry(name);
            e.1 += since;
            e.3 += 1;
            p.last_record = Some(now);
        }
    }

    /// Holds the profile for one backward pass; see [`BackwardTimer`].
    pub(crate) fn backward_pass(&self) -> BackwardTimer<'_> {
        BackwardTimer(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Times each op's backward during one backward pass. When it is dropped, at the end of
/// the pass, the next record's forward time starts counting.
pub(crate) struct BackwardTimer<'a>(MutexGuard<'a, Option<Profile>>);

impl BackwardTimer<'_> {
    /// Runs the backward of an op of kind `name`, charging it the time `f` takes.
    pub(crate) fn time<R>(&mut self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let Some(p) = self.0.as_mut() else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        p.entry(name).2 += start.elapsed();
        result
    }
}

impl Drop for BackwardTimer<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0.as_mut() {
            p.last_record = Some(Instant::now());
        }
    }
}

impl Tape {
    /// Turns per-op timing on (with an empty profile) or off. Forward time is measured
    /// from one record to the next (so it includes the caller's work between ops);
    /// backward time per op.
    pub fn set_profiling(&mut self, on: bool) {
        let profile = on.then(|| Profile { last_record: Some(Instant::now()), ..Profile::default() });
        self.profiler = Profiler(Mutex::new(profile));
    }

    /// A copy of the profile gathered so far, when profiling is on.
    pub fn profile(&self) -> Option<Profile> {
        self.profiler.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

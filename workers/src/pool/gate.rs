//! Which app threads take jobs when the app runs one call at a time however many threads
//! call it (a Python app: the GIL). The pool ([`super`]) owns the threads and the job
//! channel and runs the turns; this module keeps the count of who may take jobs.
//!
//! With the GIL, a second thread holding a job does not run it: it waits for the GIL and,
//! after CPython's switch interval (5 ms), forces the running thread to hand it over in
//! the middle of that thread's request. Jobs taken that way wait longer than jobs queued
//! after them, and every hand-over costs context switches. So one thread, the runner,
//! takes jobs, and the others stand by. One of them, the lookout, waits for the GIL
//! itself while a job runs, holding no job:
//! - if it gets the GIL before the switch interval is over, the runner let go of it on
//!   its own: the app is waiting (on I/O, a lock, a slow client), so the lookout becomes
//!   a taker too, and the next job runs meanwhile;
//! - if it has to force the hand-over, the runner was busy: the lookout gives the GIL
//!   straight back and waits again. The runner loses microseconds, not a request's worth;
//! - a job running for [`LONG_JOB`] lets the lookout in anyway, so a slow request holds
//!   up the short ones behind it no longer than that.
//!
//! The lookout only watches while jobs wait: with none queued there is nothing to let
//! in. A taker that is not the last steps back when it finds no job, and after a job, one
//! taker per [`STEP_BACK_EVERY`] (a thread waiting for the GIL looks like one waiting on I/O,
//! so takers cannot tell whether the others are needed: they shed one at a time, and the
//! lookout lets back in the ones that are). While no job runs, the lookout sleeps
//! without the GIL: an idle worker does not wake.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A job running this long lets another thread in even though it keeps the app busy: a
/// hand-over in the middle of it is then worth its price.
pub const LONG_JOB: Duration = Duration::from_millis(20);

/// Takers step back after a job one at a time, this far apart at least (see
/// [`Gate::step_back_after_job`]).
pub const STEP_BACK_EVERY: Duration = Duration::from_millis(20);

/// How long the lookout stays away from the app's lock after holding it, before it
/// waits for it again (see [`Gate::wait`]).
pub const SETTLE: Duration = Duration::from_millis(1);

/// What a standby is to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Take jobs.
    Take,
    /// Watch the job that runs: wait for the app's lock (the GIL) and see how soon it comes.
    Watch,
}

/// Whether the lookout, which waited `waited` for the app's lock while a job ran, should
/// take jobs too: yes if the lock came sooner than a forced hand-over (`hand_over`), so
/// the job let go of it and waits; or if a job has run for [`LONG_JOB`] (`oldest`).
pub fn let_lookout_in(waited: Duration, hand_over: Duration, oldest: Duration) -> bool {
    waited < hand_over || oldest >= LONG_JOB
}

pub struct Gate {
    /// Whether jobs wait in the queue.
    queued: Box<dyn Fn() -> bool + Send + Sync>,
    state: Mutex<State>,
    /// Standbys that are not the lookout wait here.
    turn: Condvar,
    /// The lookout waits here while no job runs.
    lookout: Condvar,
    /// Threads allowed to take jobs (changed under `state`'s lock).
    takers: AtomicUsize,
    /// Takers inside a job.
    busy: AtomicUsize,
    /// When a taker last stepped back after a job (nanoseconds since `epoch`; 0: never).
    last_step_back: AtomicU64,
    /// The lookout sleeps: the first job to start wakes it.
    asleep: AtomicBool,
    /// When each thread's current job started (nanoseconds since `epoch`, plus one); 0
    /// between jobs.
    since: Vec<AtomicU64>,
    epoch: Instant,
    /// How long the app's lock is held before a waiting thread forces a hand-over
    /// (CPython's switch interval).
    hand_over: Duration,
}

struct State {
    /// A standby is the lookout.
    lookout: bool,
    /// The pool is stopping: standbys leave.
    closed: bool,
}

impl Gate {
    /// A gate for `threads` threads of an app whose lock changes hands after `hand_over`.
    pub fn new(
        threads: usize,
        hand_over: Duration,
        queued: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Gate {
        Gate {
            queued,
            state: Mutex::new(State {
                lookout: false,
                closed: false,
            }),
            turn: Condvar::new(),
            lookout: Condvar::new(),
            takers: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            last_step_back: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            since: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            hand_over,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A standby's wait, run without the app's lock (in `Idle::during`): until it may
    /// take jobs (always, once the pool stops), or, as the lookout (`lookout` says it was already), until a job runs
    /// and the lock is worth waiting for. `held`: this thread let go of the lock just now.
    pub fn wait(&self, mut lookout: bool, mut held: bool) -> Turn {
        let mut st = self.lock();
        loop {
            if st.closed || self.takers.load(Ordering::SeqCst) == 0 {
                self.let_in(&mut st, lookout);
                return Turn::Take;
            }
            if !lookout && !st.lookout {
                st.lookout = true;
                lookout = true;
            }
            if !lookout {
                st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
                held = false;
                continue;
            }
            // `asleep` is set before `busy` and the queue are read, and a job queued or
            // started reads `asleep` after: one of the two sees the other.
            self.asleep.store(true, Ordering::SeqCst);
            let running = self.busy.load(Ordering::SeqCst) > 0;
            let worth_it = running && (self.queued)();
            if worth_it && !held {
                self.asleep.store(false, Ordering::SeqCst);
                return Turn::Watch;
            }
            st = if !running {
                // Until a job starts.
                self.lookout.wait(st).unwrap_or_else(|p| p.into_inner())
            } else if !worth_it {
                // A job runs and none waits: nothing to let in until one is queued (a
                // wake-up this sleep missed is made good after a long job's time).
                self.lookout
                    .wait_timeout(st, LONG_JOB)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            } else {
                // Time for the job waiting for the lock this thread let go of to get it,
                // or the next wait would take it at once and look like the job let go.
                self.lookout
                    .wait_timeout(st, SETTLE)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            };
            self.asleep.store(false, Ordering::SeqCst);
            held = false;
        }
    }

    /// The lookout waited `waited` for the app's lock while a job ran: whether it now
    /// takes jobs too (then it is a taker, and another standby becomes the lookout).
    pub fn looked(&self, waited: Duration) -> bool {
        if self.busy.load(Ordering::SeqCst) == 0
            || !let_lookout_in(waited, self.hand_over, self.oldest_job())
        {
            return false;
        }
        let mut st = self.lock();
        self.let_in(&mut st, true);
        true
    }

    fn let_in(&self, st: &mut State, was_lookout: bool) {
        self.takers.fetch_add(1, Ordering::SeqCst);
        if was_lookout {
            st.lookout = false;
            self.turn.notify_one();
        }
    }

    /// Whether this taker, not the last, steps back now that its job is done. One taker
    /// steps back per [`STEP_BACK_EVERY`] at most: for an app that waits on I/O the
    /// takers are all needed, and the lookout would only let them in again.
    pub fn step_back_after_job(&self) -> bool {
        if self.takers.load(Ordering::SeqCst) <= 1 {
            return false;
        }
        let now = self.now().max(1);
        let last = self.last_step_back.load(Ordering::Relaxed);
        let every = u64::try_from(STEP_BACK_EVERY.as_nanos()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_step_back
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && self.step_back()
    }

    /// A taker steps back, unless it is the last or the pool stops (then false, and it
    /// stays a taker).
    pub fn step_back(&self) -> bool {
        let st = self.lock();
        // Checked under the lock: two takers must not both leave the last place.
        if st.closed || self.takers.load(Ordering::SeqCst) <= 1 {
            return false;
        }
        self.takers.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Thread `me` starts a job.
    pub fn begin(&self, me: usize) {
        if let Some(since) = self.since.get(me) {
            since.store(self.now().saturating_add(1), Ordering::SeqCst);
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.wake_lookout();
    }

    /// A job was queued.
    pub fn queued(&self) {
        self.wake_lookout();
    }

    /// Wake a sleeping lookout when a job runs and another waits: there is something to
    /// watch.
    fn wake_lookout(&self) {
        if self.asleep.load(Ordering::SeqCst)
            && self.busy.load(Ordering::SeqCst) > 0
            && (self.queued)()
        {
            let _st = self.lock();
            self.lookout.notify_one();
        }
    }

    /// Thread `me` is done with its job.
    pub fn end(&self, me: usize) {
        if let Some(since) = self.since.get(me) {
            since.store(0, Ordering::SeqCst);
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// How long the oldest job in progress has run.
    fn oldest_job(&self) -> Duration {
        let now = self.now();
        let oldest = self
            .since
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .filter(|&s| s != 0)
            .min();
        oldest.map_or(Duration::ZERO, |s| {
            Duration::from_nanos(now.saturating_sub(s - 1))
        })
    }

    /// The pool stops: every standby becomes a taker, to help finish the jobs still
    /// queued (takers leave when the job channel is closed and empty).
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.turn.notify_all();
        self.lookout.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_lookout_goes_in_when_the_lock_came_free_or_a_job_is_long() {
        let hand_over = 5 * MS;
        // The job let go of the GIL (I/O): in at once.
        assert!(let_lookout_in(MS / 10, hand_over, MS));
        assert!(let_lookout_in(4 * MS, hand_over, MS));
        // The hand-over was forced: the job is busy, the lookout gives it back.
        assert!(!let_lookout_in(5 * MS, hand_over, 6 * MS));
        assert!(!let_lookout_in(7 * MS, hand_over, 19 * MS));
        // A long job lets it in all the same.
        assert!(let_lookout_in(5 * MS, hand_over, 20 * MS));
    }

    #[test]
    fn one_taker_first_then_a_lookout_and_the_last_taker_never_steps_back() {
        let queue = std::sync::Arc::new(AtomicBool::new(true));
        let queued = std::sync::Arc::clone(&queue);
        let gate = Gate::new(3, 5 * MS, Box::new(move || queued.load(Ordering::SeqCst)));
        assert_eq!(gate.wait(false, true), Turn::Take);
        assert!(!gate.step_back_after_job());
        assert!(!gate.step_back());
        // A job runs: the next standby becomes the lookout and watches it.
        gate.begin(0);
        assert_eq!(gate.wait(false, false), Turn::Watch);
        // A forced hand-over on a short job: it stays out.
        assert!(!gate.looked(5 * MS));
        // The lock came free: it goes in, and is an extra taker.
        assert!(gate.looked(MS));
        assert!(gate.step_back_after_job());
        assert!(gate.looked(MS));
        // One step back per STEP_BACK_EVERY.
        assert!(!gate.step_back_after_job());
        assert!(gate.step_back());
        assert!(!gate.step_back());
        gate.end(0);
        // Nothing runs: the lookout would sleep; once the pool stops, all take jobs, and
        // none steps back (it would be let in again at once, round and round).
        gate.close();
        assert_eq!(gate.wait(true, true), Turn::Take);
        assert_eq!(gate.wait(false, false), Turn::Take);
        assert!(!gate.step_back());
        assert!(!gate.step_back_after_job());
    }
}

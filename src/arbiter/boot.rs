//! Worker boot failures (exit 3: cannot boot, exit 4: the app cannot load): by default
//! the master halts at the first, as gunicorn does. With `boot_retries = N` it retries
//! up to N failures in a row, waiting 1 s, 2 s, 4 s... (at most 30 s) before forking
//! again, so a dependency that is briefly down at start (a database an app connects to
//! at import) does not stop the server. A worker forked after the last failure that
//! boots (it beats "booted" into its slot) wipes the count. The decisions are here, pure;
//! the arbiter ([`super`]) acts on them.

use std::time::{Duration, Instant};

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to do about a worker that exited 3 or 4.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BootVerdict {
    /// Fork again after `wait`; this is retry number `attempt`.
    Retry { attempt: u32, wait: Duration },
    /// Another worker of the same failed round: the retry is already scheduled.
    AlreadyWaiting,
    /// Out of retries (or none allowed): halt with the worker's code.
    Halt,
}

#[derive(Debug, Default)]
pub(super) struct BootRetry {
    pub(super) max: u32,
    failures: u32,
    /// The age of the newest worker that failed: only a younger one proves a recovery.
    failed_age: u64,
    /// No worker is forked before this.
    wait_until: Option<Instant>,
}

impl BootRetry {
    pub(super) fn new(max: u32) -> BootRetry {
        BootRetry {
            max,
            ..BootRetry::default()
        }
    }

    /// Worker `age` exited 3 or 4 at `now`.
    pub(super) fn failed(&mut self, age: u64, now: Instant) -> BootVerdict {
        self.failed_age = self.failed_age.max(age);
        if self.wait_until.is_some_and(|t| now < t) {
            // Workers forked together fail together: one round is one failure.
            return BootVerdict::AlreadyWaiting;
        }
        if self.failures >= self.max {
            return BootVerdict::Halt;
        }
        self.failures += 1;
        let wait = backoff(self.failures);
        self.wait_until = Some(now + wait);
        BootVerdict::Retry {
            attempt: self.failures,
            wait,
        }
    }

    /// May the master fork workers now?
    pub(super) fn may_fork(&mut self, now: Instant) -> bool {
        match self.wait_until {
            Some(t) if now < t => false,
            Some(_) => {
                self.wait_until = None;
                true
            }
            None => true,
        }
    }

    /// Worker `age` booted. Returns whether that ended a run of failures.
    pub(super) fn booted(&mut self, age: u64) -> bool {
        if self.failures > 0 && age > self.failed_age {
            self.failures = 0;
            return true;
        }
        false
    }
}

/// 1 s before the first retry, doubling, at most [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_retries_the_first_failure_halts() {
        let mut boot = BootRetry::new(0);
        assert_eq!(boot.failed(1, Instant::now()), BootVerdict::Halt);
    }

    #[test]
    fn retries_back_off_then_halt() {
        let mut boot = BootRetry::new(3);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for age in 1..=3 {
            match boot.failed(age, now) {
                BootVerdict::Retry { attempt, wait } => {
                    assert_eq!(u64::from(attempt), age);
                    assert!(!boot.may_fork(now));
                    now += wait;
                    assert!(boot.may_fork(now));
                    waits.push(wait.as_secs());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [1, 2, 4]);
        assert_eq!(boot.failed(4, now), BootVerdict::Halt);
    }

    #[test]
    fn one_round_of_workers_failing_together_is_one_failure() {
        let mut boot = BootRetry::new(1);
        let now = Instant::now();
        assert!(matches!(boot.failed(1, now), BootVerdict::Retry { .. }));
        assert_eq!(boot.failed(2, now), BootVerdict::AlreadyWaiting);
        assert_eq!(boot.failed(3, now), BootVerdict::AlreadyWaiting);
    }

    #[test]
    fn only_a_worker_younger_than_the_failure_resets_the_count() {
        let mut boot = BootRetry::new(1);
        let now = Instant::now();
        assert!(matches!(boot.failed(5, now), BootVerdict::Retry { .. }));
        // An old worker that was already serving proves nothing.
        assert!(!boot.booted(2));
        assert!(boot.booted(6));
        let later = now + Duration::from_secs(60);
        assert!(matches!(boot.failed(7, later), BootVerdict::Retry { .. }));
    }

    #[test]
    fn the_backoff_is_bounded() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}

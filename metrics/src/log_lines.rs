//! Error-log lines by level (gunicorn's statsd `gunicorn.log.<level>` counters), counted
//! where they are written: the master's and the workers' logger (`rgunicorn_workers::log`)
//! and the front's (`src/front/log.rs`) call [`count`] for every line at warning level
//! or above. Each process names, once, the cells its lines go into ([`count_into`]): the
//! master its own, a worker its slot's (kept for the slot's next worker, as its other
//! counters are), the front its block. Until then, and whenever nothing counts
//! (neither `--metrics-bind` nor `--statsd-host`), [`count`] is one load and a branch:
//! no lock, no allocation, no syscall, so it can sit on any log path.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// The levels counted, as gunicorn's statsd logger counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    Critical = 0,
    Error = 1,
    Warning = 2,
    /// An error with its traceback (gunicorn's `log.exception`: an app that raised or
    /// panicked): written as an `ERROR` line, counted apart from the other errors.
    Exception = 3,
}

pub const LEVELS: usize = 4;

impl Logged {
    pub const ALL: [Logged; LEVELS] = [
        Logged::Critical,
        Logged::Error,
        Logged::Warning,
        Logged::Exception,
    ];

    /// gunicorn's name for the level (`gunicorn.log.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Logged::Critical => "critical",
            Logged::Error => "error",
            Logged::Warning => "warning",
            Logged::Exception => "exception",
        }
    }
}

/// One process's (or one worker slot's) count of lines by level, in the shared table.
#[repr(C)]
pub struct LogCells {
    pub(crate) lines: [AtomicU64; LEVELS],
}

impl LogCells {
    pub(crate) fn read(&self) -> [u64; LEVELS] {
        [0, 1, 2, 3].map(|i| self.lines[i].load(Ordering::Relaxed))
    }
}

/// The cells this process counts into; null: it counts nothing.
static CELLS: AtomicPtr<LogCells> = AtomicPtr::new(ptr::null_mut());

/// Count this process's lines into `cells` from now on (`None`: stop counting). A forked
/// child inherits its parent's choice, so every child that counts apart says so first.
pub fn count_into(cells: Option<&'static LogCells>) {
    let ptr = cells.map_or(ptr::null_mut(), |c| ptr::from_ref(c).cast_mut());
    CELLS.store(ptr, Ordering::Release);
}

/// A line at `level` was logged.
pub fn count(level: Logged) {
    let ptr = CELLS.load(Ordering::Acquire);
    if ptr.is_null() {
        return;
    }
    // SAFETY: a non-null pointer here was stored by `count_into` from a `&'static
    // LogCells`: cells of the shared table, which is never unmapped, and only ever
    // touched through atomics.
    let cells = unsafe { &*ptr };
    cells.lines[level as usize].fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;

    #[test]
    fn lines_go_to_the_cells_named_last_and_nowhere_when_none_are() {
        let table = Table::map().expect("mmap");
        let slot = table.claim().expect("a slot");
        count(Logged::Error);
        assert_eq!(table.master_log().read(), [0; LEVELS], "not counting yet");
        count_into(Some(table.master_log()));
        count(Logged::Error);
        count(Logged::Warning);
        count_into(Some(table.worker(slot).log()));
        count(Logged::Exception);
        count(Logged::Exception);
        count_into(None);
        count(Logged::Critical);
        assert_eq!(table.master_log().read(), [0, 1, 1, 0]);
        assert_eq!(table.worker(slot).log().read(), [0, 0, 0, 2]);
        for (i, level) in Logged::ALL.iter().enumerate() {
            assert_eq!(*level as usize, i);
        }
    }
}

//! The shared table: its layout, its mapping, and the master's handing out of worker
//! slots. Every cell is an `AtomicU64` in zero-filled shared memory, so a cell nobody
//! has written reads as 0 and no process needs to initialise anything.
//!
//! - The master's cells ([`Header`]): its own heartbeat, how many workers it wants,
//!   whether it is stopping, the count of worker restarts by reason, and its error-log
//!   lines by level ([`crate::log_lines`]; the front and every worker slot count theirs).
//! - The front's cells ([`FrontCells`]): one block all of its event loops add to.
//! - One [`WorkerCells`] per worker slot. The master claims a free slot before each
//!   fork and releases it when it reaps the worker; the next worker takes it and goes on
//!   adding to the same counters, so nothing is lost when a worker restarts, and a HUP
//!   (new workers, old ones retired) resets nothing. A released slot keeps its counters;
//!   only its gauges (requests in flight, busy threads, open connections) go back to 0,
//!   since the worker that held them is gone. The slot also carries the worker's
//!   heartbeat (its beat, "booted", "retiring"), which the master judges.
//!
//! What reads the table sums it ([`crate::snapshot`]). Slots are page-aligned, so one
//! worker's writes never share a cache line with another's, and only pages of slots ever
//! used are touched (the rest of the mapping costs no memory).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::log_lines::LogCells;

/// Worker slots: the most workers alive at once, retiring ones included (a HUP briefly
/// doubles them). Untouched slots cost no memory.
pub const SLOTS: usize = 1024;
/// Method classes counted ([`crate::Method`]).
pub const METHODS: usize = 8;
/// Status classes: 1xx to 5xx.
pub const CLASSES: usize = 5;
/// Exact statuses counted (100 to 599), for statsd's `gunicorn.request.status.N`.
pub const STATUSES: usize = 500;
/// Upper bounds of the request duration histogram, in microseconds (Prometheus `le`);
/// one more bucket holds everything slower.
pub const BOUNDS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Why a worker was replaced (`rgunicorn_worker_restarts_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Its heartbeat was late (`--timeout`), or a request overran `--request-timeout`.
    Timeout,
    /// It served `--max-requests`.
    MaxRequests,
    /// It passed `--max-worker-memory`.
    Memory,
    /// It died without being asked to (a crash, a signal, a failed event loop).
    Crash,
    /// A HUP replaced it.
    Reload,
}

impl Restart {
    pub const ALL: [Restart; 5] = [
        Restart::Timeout,
        Restart::MaxRequests,
        Restart::Memory,
        Restart::Crash,
        Restart::Reload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Restart::Timeout => "timeout",
            Restart::MaxRequests => "max_requests",
            Restart::Memory => "memory",
            Restart::Crash => "crash",
            Restart::Reload => "reload",
        }
    }
}

/// Why a worker began to retire on its own (it writes this into its slot; the master
/// starts the replacement at once and counts the restart by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retiring {
    MaxRequests = 1,
    /// An app thread overran `--request-timeout`.
    StuckRequest = 2,
}

impl Retiring {
    fn from_cell(value: u64) -> Option<Retiring> {
        match value {
            0 => None,
            2 => Some(Retiring::StuckRequest),
            _ => Some(Retiring::MaxRequests),
        }
    }

    /// The restart this retirement is counted as.
    pub fn restart(self) -> Restart {
        match self {
            Retiring::MaxRequests => Restart::MaxRequests,
            Retiring::StuckRequest => Restart::Timeout,
        }
    }
}

/// The master's cells.
#[repr(C, align(4096))]
pub struct Header {
    pub(crate) master_pid: AtomicU64,
    pub(crate) master_beat_ms: AtomicU64,
    pub(crate) target_workers: AtomicU64,
    pub(crate) draining: AtomicU64,
    pub(crate) front_configured: AtomicU64,
    pub(crate) worker_timeout_ms: AtomicU64,
    /// One past the highest slot ever claimed: readers look no further.
    pub(crate) high_water: AtomicU64,
    pub(crate) restarts: [AtomicU64; Restart::ALL.len()],
    pub(crate) log: LogCells,
}

/// The TLS front's cells; every event loop of the front adds to them.
#[repr(C, align(4096))]
pub struct FrontCells {
    pub(crate) pid: AtomicU64,
    /// Set by a front that counts into these cells (its metrics are shown from then on).
    pub(crate) counting: AtomicU64,
    pub(crate) open_conns: AtomicU64,
    /// Full, resumed, failed.
    pub(crate) handshakes: [AtomicU64; 3],
    /// 502, 504.
    pub(crate) upstream_errors: [AtomicU64; 2],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) log: LogCells,
}

/// One worker slot.
#[repr(C, align(4096))]
pub struct WorkerCells {
    // Life, written by the master (pid, stopping) and the worker (the rest).
    pub(crate) pid: AtomicU64,
    pub(crate) beat_ms: AtomicU64,
    pub(crate) booted: AtomicU64,
    pub(crate) retiring: AtomicU64,
    /// The master told it to stop (HUP, TTOU, memory, a stop): it no longer counts as ready.
    pub(crate) stopping: AtomicU64,
    pub(crate) threads: AtomicU64,
    // Gauges, reset when the slot is released.
    pub(crate) in_flight: AtomicU64,
    pub(crate) busy_threads: AtomicU64,
    pub(crate) open_conns: AtomicU64,
    // Counters, kept for the slot's next worker.
    pub(crate) requests: [[AtomicU64; CLASSES]; METHODS],
    pub(crate) statuses: [AtomicU64; STATUSES],
    pub(crate) duration_count: [AtomicU64; BUCKETS],
    pub(crate) duration_us: [AtomicU64; BUCKETS],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) log: LogCells,
}

#[repr(C)]
pub(crate) struct Layout {
    pub(crate) header: Header,
    pub(crate) front: FrontCells,
    pub(crate) workers: [WorkerCells; SLOTS],
}

/// A worker slot's number (also the `worker` label of per-worker metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u32);

/// The mapped table. `Copy`: every handle names the same memory, which is never
/// unmapped (it lives as long as the process, and every child inherits it).
#[derive(Clone, Copy)]
pub struct Table {
    layout: &'static Layout,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}

impl Table {
    /// Map a fresh, zeroed table. The master does this once, before its first fork.
    pub fn map() -> io::Result<Table> {
        let len = std::mem::size_of::<Layout>();
        // SAFETY: an anonymous mapping with no address hint touches no existing memory;
        // the result is checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<Layout>()).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: the mapping is page-aligned (Layout's alignment is a page), at least
        // `size_of::<Layout>()` long, zero-filled (every AtomicU64 in it is valid at 0),
        // shared only through atomics, and never unmapped, so a 'static reference is sound.
        let layout: &'static Layout = unsafe { ptr.as_ref() };
        Ok(Table { layout })
    }

    pub(crate) fn layout(&self) -> &'static Layout {
        self.layout
    }

    pub fn front(&self) -> &'static FrontCells {
        &self.layout.front
    }

    pub fn worker(&self, slot: SlotId) -> &'static WorkerCells {
        &self.layout.workers[slot.0 as usize]
    }

    /// Where the master counts its error-log lines.
    pub fn master_log(&self) -> &'static LogCells {
        &self.layout.header.log
    }

    // The master's side.

    /// Stamp the master's heartbeat (every turn of its loop), with its pid.
    pub fn master_beat(&self, pid: u32) {
        let h = &self.layout.header;
        h.master_pid.store(u64::from(pid), Relaxed);
        h.master_beat_ms.store(monotonic_ms(), Relaxed);
    }

    /// What readiness and health are judged against: the workers wanted, the worker
    /// timeout, and whether a front must be running.
    pub fn set_plan(&self, workers: usize, timeout: Duration, front: bool) {
        let h = &self.layout.header;
        h.target_workers.store(workers as u64, Relaxed);
        h.worker_timeout_ms.store(
            timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
        h.front_configured.store(u64::from(front), Relaxed);
    }

    /// A graceful stop has begun: not ready any more.
    pub fn set_draining(&self) {
        self.layout.header.draining.store(1, Relaxed);
    }

    pub fn count_restart(&self, why: Restart) {
        let i = Restart::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.layout.header.restarts[i].fetch_add(1, Relaxed);
    }

    /// A free slot for the next worker (the lowest, so few pages are ever touched),
    /// stamped as beating now: its boot time counts towards the timeout. `None` when
    /// [`SLOTS`] workers are alive.
    pub fn claim(&self) -> Option<SlotId> {
        let i = self
            .layout
            .workers
            .iter()
            .position(|w| w.pid.load(Relaxed) == 0)?;
        let cells = &self.layout.workers[i];
        // Reserved until the fork tells the pid.
        cells.pid.store(u64::MAX, Relaxed);
        cells.booted.store(0, Relaxed);
        cells.retiring.store(0, Relaxed);
        cells.stopping.store(0, Relaxed);
        cells.beat();
        self.layout
            .header
            .high_water
            .fetch_max(i as u64 + 1, Relaxed);
        Some(SlotId(i as u32))
    }

    /// The worker in `slot` was forked as `pid`.
    pub fn assign(&self, slot: SlotId, pid: u32) {
        self.worker(slot).pid.store(u64::from(pid), Relaxed);
    }

    /// The worker in `slot` is gone: its gauges go back to 0 and the slot is free. Its
    /// counters stay, for the next worker to add to.
    pub fn release(&self, slot: SlotId) {
        let w = self.worker(slot);
        for gauge in [&w.in_flight, &w.busy_threads, &w.open_conns, &w.threads] {
            gauge.store(0, Relaxed);
        }
        for life in [&w.booted, &w.retiring, &w.stopping] {
            life.store(0, Relaxed);
        }
        w.pid.store(0, Relaxed);
    }

    /// The front was forked as `pid`.
    pub fn front_started(&self, pid: u32) {
        self.layout.front.pid.store(u64::from(pid), Relaxed);
    }

    /// The front is gone: its open connections with it.
    pub fn front_gone(&self) {
        let f = &self.layout.front;
        f.open_conns.store(0, Relaxed);
        f.pid.store(0, Relaxed);
    }
}

impl WorkerCells {
    /// Stamp the clock: the worker is alive.
    pub fn beat(&self) {
        self.beat_ms.store(monotonic_ms(), Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = self.beat_ms.load(Relaxed);
        Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    /// The app is loaded and the worker is about to accept.
    pub fn set_booted(&self) {
        self.booted.store(1, Relaxed);
    }

    pub fn is_booted(&self) -> bool {
        self.booted.load(Relaxed) != 0
    }

    /// The worker retires on its own, and why.
    pub fn set_retiring(&self, why: Retiring) {
        self.retiring.store(why as u64, Relaxed);
    }

    pub fn retiring(&self) -> Option<Retiring> {
        Retiring::from_cell(self.retiring.load(Relaxed))
    }

    /// The master told this worker to stop.
    pub fn set_stopping(&self) {
        self.stopping.store(1, Relaxed);
    }

    /// How many app threads the worker runs (0 for an app that runs on the loop).
    pub fn set_threads(&self, n: usize) {
        self.threads.store(n as u64, Relaxed);
    }

    /// Where the worker in this slot counts its error-log lines (a counter: the slot's
    /// next worker goes on adding to it).
    pub fn log(&self) -> &LogCells {
        &self.log
    }
}

impl FrontCells {
    /// Where the front counts its error-log lines.
    pub fn log(&self) -> &LogCells {
        &self.log
    }
}

/// CLOCK_MONOTONIC in milliseconds (system-wide, the same in every process).
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own; CLOCK_MONOTONIC
    // always exists on Linux, so it cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_claimed_lowest_first_and_reused_with_their_counters() {
        let table = Table::map().expect("mmap");
        let a = table.claim().expect("a slot");
        let b = table.claim().expect("a slot");
        assert_eq!((a, b), (SlotId(0), SlotId(1)));
        table.assign(a, 100);
        table.worker(a).bytes_in.fetch_add(7, Relaxed);
        table.worker(a).in_flight.fetch_add(2, Relaxed);
        table.worker(a).set_booted();
        table.release(a);
        let c = table.claim().expect("a slot");
        assert_eq!(c, a, "the freed slot is taken again");
        let w = table.worker(c);
        assert_eq!(w.bytes_in.load(Relaxed), 7, "counters survive");
        assert_eq!(w.in_flight.load(Relaxed), 0, "gauges do not");
        assert!(!w.is_booted());
        assert!(w.silent_for() < Duration::from_secs(1));
    }

    #[test]
    fn a_write_from_a_forked_child_reaches_the_parent() {
        let table = Table::map().expect("mmap");
        let slot = table.claim().expect("a slot");
        table.worker(slot).beat_ms.store(0, Relaxed);
        assert!(table.worker(slot).silent_for() > Duration::from_secs(1));
        // SAFETY: the child only stores into the shared table and calls _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            let w = table.worker(slot);
            w.beat();
            w.set_retiring(Retiring::StuckRequest);
            w.requests[0][1].fetch_add(3, Relaxed);
            // SAFETY: _exit skips the test harness's atexit handlers in the child.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(child, &mut status, 0) };
        let w = table.worker(slot);
        assert!(w.silent_for() < Duration::from_secs(1));
        assert_eq!(w.retiring(), Some(Retiring::StuckRequest));
        assert_eq!(w.requests[0][1].load(Relaxed), 3);
    }

    #[test]
    fn the_table_is_page_aligned_and_small_where_it_is_touched() {
        assert_eq!(std::mem::align_of::<WorkerCells>(), 4096);
        assert!(std::mem::size_of::<WorkerCells>() <= 8192);
    }
}

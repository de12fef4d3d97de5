//! The table read once: every slot's counters summed (slots of workers long gone
//! included, which is how counters survive restarts), and the live workers' gauges and
//! heartbeats listed. The Prometheus page, statsd's deltas and the health answers are
//! all computed from one of these, never from the live table, so each is consistent
//! with itself.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::log_lines::LEVELS;
use crate::table::{monotonic_ms, Restart, SlotId, Table, BUCKETS, CLASSES, METHODS, STATUSES};

/// Counters summed over every slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub requests: [[u64; CLASSES]; METHODS],
    pub statuses: [u64; STATUSES],
    pub duration_count: [u64; BUCKETS],
    pub duration_us: [u64; BUCKETS],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub accepted: u64,
    /// Error-log lines by level ([`crate::log_lines::Logged`]).
    pub log_lines: [u64; LEVELS],
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            requests: [[0; CLASSES]; METHODS],
            statuses: [0; STATUSES],
            duration_count: [0; BUCKETS],
            duration_us: [0; BUCKETS],
            bytes_in: 0,
            bytes_out: 0,
            accepted: 0,
            log_lines: [0; LEVELS],
        }
    }
}

impl Totals {
    pub fn requests(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }
}

/// One live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    pub slot: SlotId,
    pub pid: u32,
    pub beat_age_ms: u64,
    pub booted: bool,
    /// Retiring on its own, or told to stop by the master.
    pub leaving: bool,
    pub threads: u64,
    pub busy_threads: u64,
    pub in_flight: u64,
    pub open_conns: u64,
}

/// The front's cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontView {
    pub configured: bool,
    pub running: bool,
    /// The front counts into the table (its metrics are shown).
    pub counting: bool,
    pub open_conns: u64,
    pub handshakes: [u64; 3],
    pub upstream_errors: [u64; 2],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub log_lines: [u64; LEVELS],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub master_pid: u32,
    pub master_beat_age_ms: u64,
    pub target_workers: u64,
    pub draining: bool,
    /// The worker timeout (0 = not judged).
    pub worker_timeout_ms: u64,
    pub restarts: [u64; Restart::ALL.len()],
    /// The master's error-log lines by level (the workers' are in `totals`).
    pub master_log_lines: [u64; LEVELS],
    pub workers: Vec<WorkerView>,
    pub totals: Totals,
    pub front: FrontView,
}

fn get(cell: &AtomicU64) -> u64 {
    cell.load(Relaxed)
}

/// A gauge that may have dipped below zero for a moment (a decrement seen before its
/// increment) reads as 0.
fn gauge(cell: &AtomicU64) -> u64 {
    let v = get(cell);
    if v > u64::MAX / 2 {
        0
    } else {
        v
    }
}

impl Snapshot {
    pub fn read(table: &Table) -> Snapshot {
        let layout = table.layout();
        let now = monotonic_ms();
        let h = &layout.header;
        let mut snap = Snapshot {
            master_pid: get(&h.master_pid) as u32,
            master_beat_age_ms: now.saturating_sub(get(&h.master_beat_ms)),
            target_workers: get(&h.target_workers),
            draining: get(&h.draining) != 0,
            worker_timeout_ms: get(&h.worker_timeout_ms),
            master_log_lines: h.log.read(),
            ..Snapshot::default()
        };
        for (i, cell) in h.restarts.iter().enumerate() {
            snap.restarts[i] = get(cell);
        }
        let used = (get(&h.high_water) as usize).min(layout.workers.len());
        let t = &mut snap.totals;
        for (i, w) in layout.workers[..used].iter().enumerate() {
            for (m, row) in w.requests.iter().enumerate() {
                for (c, cell) in row.iter().enumerate() {
                    t.requests[m][c] += get(cell);
                }
            }
            for (s, cell) in w.statuses.iter().enumerate() {
                t.statuses[s] += get(cell);
            }
            for b in 0..BUCKETS {
                t.duration_count[b] += get(&w.duration_count[b]);
                t.duration_us[b] += get(&w.duration_us[b]);
            }
            t.bytes_in += get(&w.bytes_in);
            t.bytes_out += get(&w.bytes_out);
            t.accepted += get(&w.accepted);
            for (sum, n) in t.log_lines.iter_mut().zip(w.log.read()) {
                *sum += n;
            }
            let pid = get(&w.pid);
            if pid == 0 || pid == u64::MAX {
                continue; // free, or claimed for a fork not yet done
            }
            snap.workers.push(WorkerView {
                slot: SlotId(i as u32),
                pid: pid as u32,
                beat_age_ms: now.saturating_sub(get(&w.beat_ms)),
                booted: get(&w.booted) != 0,
                leaving: get(&w.retiring) != 0 || get(&w.stopping) != 0,
                threads: get(&w.threads),
                busy_threads: gauge(&w.busy_threads),
                in_flight: gauge(&w.in_flight),
                open_conns: gauge(&w.open_conns),
            });
        }
        let f = &layout.front;
        snap.front = FrontView {
            configured: get(&h.front_configured) != 0,
            running: get(&f.pid) != 0,
            counting: get(&f.counting) != 0,
            open_conns: gauge(&f.open_conns),
            handshakes: [0, 1, 2].map(|i| get(&f.handshakes[i])),
            upstream_errors: [0, 1].map(|i| get(&f.upstream_errors[i])),
            bytes_in: get(&f.bytes_in),
            bytes_out: get(&f.bytes_out),
            log_lines: f.log.read(),
        };
        snap
    }

    pub fn in_flight(&self) -> u64 {
        self.workers.iter().map(|w| w.in_flight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Method, Recorder};
    use std::time::Duration;

    #[test]
    fn counters_of_a_released_slot_still_count_and_its_gauges_do_not() {
        let table = Table::map().expect("mmap");
        let a = table.claim().expect("slot");
        table.assign(a, 41);
        let b = table.claim().expect("slot");
        table.assign(b, 42);
        let ra = Recorder::new(table.worker(a));
        let rb = Recorder::new(table.worker(b));
        ra.started();
        ra.answered(Method::Get, 200, Duration::from_micros(50), true);
        ra.started();
        table.worker(a).log().lines[1].fetch_add(2, Relaxed);
        rb.started();
        rb.answered(Method::Post, 503, Duration::from_millis(3), true);
        let snap = Snapshot::read(&table);
        assert_eq!(snap.totals.requests(), 2);
        assert_eq!(snap.in_flight(), 1);
        table.release(a);
        let snap = Snapshot::read(&table);
        assert_eq!(
            snap.totals.requests(),
            2,
            "a gone worker's requests still count"
        );
        assert_eq!(snap.in_flight(), 0, "its in-flight request does not");
        assert_eq!(snap.totals.log_lines, [0, 2, 0, 0], "nor do its log lines");
        assert_eq!(snap.workers.len(), 1);
        assert_eq!(snap.totals.statuses[403], 1, "status 503");
        assert_eq!(snap.totals.requests[Method::Post as usize][4], 1);
        assert_eq!(snap.totals.duration_count[0], 1);
        assert_eq!(snap.totals.duration_us[0], 50);
    }
}

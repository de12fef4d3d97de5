//! The hot path: what a worker and the front call as they serve. Each call is one or
//! two relaxed atomic adds to the process's own page of the table: no syscall, no lock,
//! no allocation. A worker's event loop and its app threads share the worker's slot;
//! the front's event loops share the front's cells.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::log_lines::LogCells;
use crate::table::{FrontCells, WorkerCells, BOUNDS_US, CLASSES};

/// The request methods counted apart; every other method is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    #[default]
    Other,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
        Method::Other,
    ];

    pub fn of(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// The duration histogram's bucket for `us` microseconds (Prometheus `le`: the first
/// bound at or above it).
pub fn bucket_of(us: u64) -> usize {
    BOUNDS_US.partition_point(|bound| *bound < us)
}

/// Status class index: 1xx is 0, 5xx (and anything out of range) is 4.
pub fn class_of(status: u16) -> usize {
    (usize::from(status / 100).saturating_sub(1)).min(CLASSES - 1)
}

fn add(cell: &AtomicU64, n: u64) {
    cell.fetch_add(n, Relaxed);
}

fn sub(cell: &AtomicU64, n: u64) {
    // Wraps below zero rather than panicking; readers clamp a gauge at 0.
    cell.fetch_sub(n, Relaxed);
}

/// A worker's handle on its slot.
#[derive(Clone, Copy)]
pub struct Recorder {
    cells: &'static WorkerCells,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    pub fn new(cells: &'static WorkerCells) -> Recorder {
        Recorder { cells }
    }

    pub fn connection_opened(&self) {
        add(&self.cells.open_conns, 1);
        add(&self.cells.accepted, 1);
    }

    pub fn connection_closed(&self) {
        sub(&self.cells.open_conns, 1);
    }

    /// Bytes read from a client.
    pub fn received(&self, n: usize) {
        add(&self.cells.bytes_in, n as u64);
    }

    /// Bytes written to a client.
    pub fn sent(&self, n: usize) {
        add(&self.cells.bytes_out, n as u64);
    }

    /// A request went to the app: it is in flight until [`Recorder::answered`].
    pub fn started(&self) {
        add(&self.cells.in_flight, 1);
    }

    /// A response was framed. `in_flight`: it answers a request counted by
    /// [`Recorder::started`] (an error the server answers before the app ran is not).
    pub fn answered(&self, method: Method, status: u16, took: Duration, in_flight: bool) {
        let c = self.cells;
        if in_flight {
            sub(&c.in_flight, 1);
        }
        add(&c.requests[method as usize][class_of(status)], 1);
        if let Some(cell) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| c.statuses.get(i))
        {
            add(cell, 1);
        }
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = bucket_of(us);
        add(&c.duration_count[bucket], 1);
        add(&c.duration_us[bucket], us);
    }

    /// A request counted by [`Recorder::started`] will never be answered: its connection
    /// is gone. It is no longer in flight (and no response is counted).
    pub fn abandoned(&self) {
        sub(&self.cells.in_flight, 1);
    }

    /// Where this worker counts its error-log lines ([`crate::log_lines::count_into`]).
    pub fn log_cells(&self) -> &'static LogCells {
        self.cells.log()
    }

    /// How many app threads this worker runs (0: the app runs on the event loop).
    pub fn set_threads(&self, n: usize) {
        self.cells.set_threads(n);
    }

    /// An app thread took a job.
    pub fn thread_busy(&self) {
        add(&self.cells.busy_threads, 1);
    }

    /// An app thread is free again.
    pub fn thread_idle(&self) {
        sub(&self.cells.busy_threads, 1);
    }
}

/// How a TLS handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Full = 0,
    Resumed = 1,
    Failed = 2,
}

/// The front's handle on its cells.
#[derive(Clone, Copy)]
pub struct FrontRecorder {
    cells: &'static FrontCells,
}

impl std::fmt::Debug for FrontRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrontRecorder")
    }
}

impl FrontRecorder {
    pub fn new(cells: &'static FrontCells) -> FrontRecorder {
        cells.counting.store(1, Relaxed);
        FrontRecorder { cells }
    }

    pub fn connection_opened(&self) {
        add(&self.cells.open_conns, 1);
    }

    pub fn connection_closed(&self) {
        sub(&self.cells.open_conns, 1);
    }

    pub fn handshake(&self, how: Handshake) {
        add(&self.cells.handshakes[how as usize], 1);
    }

    /// The front answered 502 (workers unreachable) or 504 (no answer in time) itself.
    pub fn upstream_error(&self, status: u16) {
        let i = if status == 504 { 1 } else { 0 };
        add(&self.cells.upstream_errors[i], 1);
    }

    pub fn received(&self, n: usize) {
        add(&self.cells.bytes_in, n as u64);
    }

    pub fn sent(&self, n: usize) {
        add(&self.cells.bytes_out, n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_prometheus_le() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100), 0, "le is inclusive");
        assert_eq!(bucket_of(101), 1);
        assert_eq!(bucket_of(60_000_000), BOUNDS_US.len() - 1);
        assert_eq!(bucket_of(60_000_001), BOUNDS_US.len(), "+Inf");
    }

    #[test]
    fn classes_and_methods() {
        assert_eq!(class_of(101), 0);
        assert_eq!(class_of(204), 1);
        assert_eq!(class_of(404), 3);
        assert_eq!(class_of(599), 4);
        assert_eq!(class_of(999), 4);
        assert_eq!(class_of(42), 0);
        assert_eq!(Method::of("PATCH"), Method::Patch);
        assert_eq!(
            Method::of("get"),
            Method::Other,
            "methods are case-sensitive"
        );
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
    }
}

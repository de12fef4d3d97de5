//! The counters every rgunicorn process shares: one table of atomics in memory mapped
//! (anonymous, `MAP_SHARED`) by the master before its first fork, so workers forked
//! later, the TLS front and the master all write and read the same cells, with no
//! syscall per request. It depends on no other rgunicorn crate, so the master, the
//! workers and the front can all use it.
//!
//! - [`table`]: the memory and its layout: the master's cells, the front's, and one slot
//!   per worker (its heartbeat too), handed out by the master and reused by the next
//!   worker, so counters survive a worker's restart and a HUP.
//! - [`record`]: what the worker and the front call on their hot paths.
//! - [`log_lines`]: error-log lines by level, counted by whichever process writes them.
//! - [`snapshot`]: the table read once and summed: what the views below render.
//! - [`prometheus`], [`statsd`], [`health`]: the views.

pub mod health;
pub mod log_lines;
pub mod prometheus;
pub mod record;
pub mod snapshot;
pub mod statsd;
pub mod table;

pub use record::{FrontRecorder, Method, Recorder};
pub use snapshot::Snapshot;
pub use table::{monotonic_ms, Restart, Retiring, SlotId, Table, WorkerCells};

//! Worker liveness: each worker's slot in the shared table (`rgunicorn_metrics::Table`),
//! which the master maps before its first fork, so the master and every worker see the
//! same memory. The worker stamps the monotonic clock into its slot on every tick of its
//! event loop and flags there that it is retiring (and why); the master reads it on its
//! own tick. No file, no descriptor, no syscall per beat (gunicorn fchmods a temp file
//! per beat, which stalls on a slow /tmp). The same slot holds the worker's counters,
//! which its replacement keeps adding to. The worker side is the [`WorkerHooks`] impl
//! below; the decisions the master takes from a slot are in the arbiter.

use std::io;
use std::time::Duration;

use rgunicorn_metrics::{Retiring, SlotId, Table, WorkerCells};
use rgunicorn_workers::worker::{Retire, WorkerHooks};

/// One worker's slot, from the master's side. The master releases it when it reaps the
/// worker ([`Slot::release`]); the worker's copy (inherited through fork) lives as long
/// as the worker.
pub struct Slot {
    table: Table,
    id: SlotId,
}

impl Slot {
    /// Claim a free slot, stamped now (boot time counts towards the timeout).
    pub fn claim(table: Table) -> io::Result<Slot> {
        match table.claim() {
            Some(id) => Ok(Slot { table, id }),
            None => Err(io::Error::other(format!(
                "every one of the {} worker slots is taken",
                rgunicorn_metrics::table::SLOTS
            ))),
        }
    }

    pub fn id(&self) -> SlotId {
        self.id
    }

    fn cells(&self) -> &'static WorkerCells {
        self.table.worker(self.id)
    }

    /// The worker was forked as `pid`.
    pub fn assign(&self, pid: u32) {
        self.table.assign(self.id, pid);
    }

    /// The worker is gone: the slot is free for the next one (its counters stay).
    pub fn release(self) {
        self.table.release(self.id);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        self.cells().silent_for()
    }

    /// Why the worker retires on its own, if it does.
    pub fn retiring(&self) -> Option<Retiring> {
        self.cells().retiring()
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring().is_some()
    }

    pub fn is_booted(&self) -> bool {
        self.cells().is_booted()
    }

    /// The master told the worker to stop: it no longer counts as ready.
    pub fn set_stopping(&self) {
        self.cells().set_stopping();
    }
}

/// The worker's side: beats on every loop tick, and says when (and why) it retires by
/// itself.
pub struct Beat {
    pub cells: &'static WorkerCells,
}

impl WorkerHooks for Beat {
    fn heartbeat(&mut self) {
        self.cells.beat();
    }

    fn retiring(&mut self, why: Retire) {
        self.cells.set_retiring(match why {
            Retire::MaxRequests => Retiring::MaxRequests,
            Retire::StuckRequest => Retiring::StuckRequest,
        });
    }

    fn post_worker_init(&mut self) {
        self.cells.set_booted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_slot_is_not_silent_and_says_why_its_worker_retires() {
        let table = Table::map().expect("mmap");
        let slot = Slot::claim(table).expect("slot");
        assert!(slot.silent_for() < Duration::from_secs(1));
        assert!(!slot.is_retiring());
        let mut beat = Beat {
            cells: table.worker(slot.id()),
        };
        beat.retiring(Retire::StuckRequest);
        assert_eq!(slot.retiring(), Some(Retiring::StuckRequest));
        assert!(!slot.is_booted());
        beat.post_worker_init();
        assert!(slot.is_booted());
        let id = slot.id();
        slot.release();
        let again = Slot::claim(table).expect("slot");
        assert_eq!(again.id(), id, "a released slot is taken again");
        assert!(!again.is_retiring() && !again.is_booted());
    }
}

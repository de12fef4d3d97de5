//! `/healthz` and `/readyz`, judged from a [`Snapshot`] (pure functions, so the rules
//! are tested here without processes).
//!
//! - **Live**: the master is running (its loop stamped the table recently) and at least
//!   one booted worker answers its heartbeat: a restart of the whole server would help
//!   only if neither holds.
//! - **Ready**: not stopping (a graceful stop sets that before it closes anything),
//!   at least as many booted, serving workers as the master wants, and the front running
//!   when there is one: a load balancer should send here.

use crate::snapshot::Snapshot;

/// How old a heartbeat may be when `--timeout` is 0 (not judged by the master).
const DEFAULT_STALE_MS: u64 = 30_000;

fn stale_after(snap: &Snapshot) -> u64 {
    if snap.worker_timeout_ms == 0 {
        DEFAULT_STALE_MS
    } else {
        snap.worker_timeout_ms
    }
}

/// `Ok` when live; otherwise why not, in one line.
pub fn live(snap: &Snapshot) -> Result<(), String> {
    let stale = stale_after(snap);
    if snap.master_pid == 0 || snap.master_beat_age_ms > stale {
        return Err(format!(
            "the master has not run its loop for {} ms",
            snap.master_beat_age_ms
        ));
    }
    let answering = snap
        .workers
        .iter()
        .filter(|w| w.booted && w.beat_age_ms <= stale)
        .count();
    if answering == 0 {
        return Err("no worker answers its heartbeat".into());
    }
    Ok(())
}

/// `Ok` when ready; otherwise why not, in one line.
pub fn ready(snap: &Snapshot) -> Result<(), String> {
    if snap.draining {
        return Err("stopping".into());
    }
    live(snap)?;
    let stale = stale_after(snap);
    let serving = snap
        .workers
        .iter()
        .filter(|w| w.booted && !w.leaving && w.beat_age_ms <= stale)
        .count() as u64;
    if serving < snap.target_workers {
        return Err(format!(
            "{serving} of {} workers booted",
            snap.target_workers
        ));
    }
    if snap.front.configured && !snap.front.running {
        return Err("the TLS front is not running".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::WorkerView;
    use crate::table::SlotId;

    fn worker(booted: bool, leaving: bool, beat_age_ms: u64) -> WorkerView {
        WorkerView {
            slot: SlotId(0),
            pid: 7,
            beat_age_ms,
            booted,
            leaving,
            threads: 4,
            busy_threads: 0,
            in_flight: 0,
            open_conns: 0,
        }
    }

    fn two_workers() -> Snapshot {
        Snapshot {
            master_pid: 1,
            master_beat_age_ms: 100,
            target_workers: 2,
            worker_timeout_ms: 30_000,
            workers: vec![worker(true, false, 200), worker(true, false, 300)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn two_booted_workers_are_live_and_ready() {
        let snap = two_workers();
        assert_eq!(live(&snap), Ok(()));
        assert_eq!(ready(&snap), Ok(()));
    }

    #[test]
    fn a_graceful_stop_is_not_ready_but_still_live() {
        let mut snap = two_workers();
        snap.draining = true;
        assert_eq!(live(&snap), Ok(()));
        assert_eq!(ready(&snap), Err("stopping".into()));
    }

    #[test]
    fn a_worker_still_booting_or_leaving_is_not_ready() {
        let mut snap = two_workers();
        snap.workers[1].booted = false;
        assert!(ready(&snap).is_err());
        assert_eq!(
            live(&snap),
            Ok(()),
            "one worker answering is enough to be live"
        );
        snap.workers[1] = worker(true, true, 0);
        assert!(ready(&snap).is_err());
    }

    #[test]
    fn a_stuck_master_or_silent_workers_are_not_live() {
        let mut snap = two_workers();
        snap.master_beat_age_ms = 31_000;
        assert!(live(&snap).is_err());
        let mut snap = two_workers();
        for w in &mut snap.workers {
            w.beat_age_ms = 40_000;
        }
        assert!(live(&snap).is_err());
        assert!(ready(&snap).is_err());
    }

    #[test]
    fn a_configured_front_must_run() {
        let mut snap = two_workers();
        snap.front.configured = true;
        assert!(ready(&snap).is_err());
        snap.front.running = true;
        assert_eq!(ready(&snap), Ok(()));
    }
}

//! A worker whose app threads are all held up: every thread is on a request (or has one
//! queued for it), and none has answered or been free for [`STALL_AFTER`]. gunicorn's
//! sync worker takes no connection while its one request runs, so a slow request holds
//! up only itself. Here the event loop goes on taking requests, and a request queued
//! behind a slow one would wait for it while other workers idle (with one thread, a 1 s
//! request held up about half of the front's requests for that second). So while it is
//! stalled:
//!
//! - the worker takes no new connections (they wait in the backlog for another worker);
//! - requests the front offered to take back (`rgunicorn_http::resend`: whole requests
//!   without a body, from the front's user over a unix socket) go back to it unstarted,
//!   both those already queued and those that arrive; the front sends each again on a
//!   new connection, which another worker takes.
//!
//! An answer or a free thread ends the stall, and the worker takes the connections that
//! waited. Nothing changes for clients other than the front, or for a worker whose
//! threads keep answering (one slow request among several threads).

use std::time::{Duration, Instant};

use super::Worker;

/// How long app threads that are all busy may go without answering before the worker
/// counts as stalled: well above a Python app's usual request (about a millisecond) and
/// its garbage collector's pauses, and short, because every request queued behind a slow
/// one waits this long (with one thread and one slow request, the others' p99 was 42-51
/// ms at 50 ms and 15-25 ms at 20 ms; 10 ms gave no more).
pub const STALL_AFTER: Duration = Duration::from_millis(20);

impl Worker {
    /// When the loop must look again because the threads may have stalled by then.
    pub(super) fn stall_due(&self) -> Option<Instant> {
        let threads = self.pool.as_ref()?.threads();
        (!self.cx.stalled && self.busy_threads >= threads).then(|| self.progress_at + STALL_AFTER)
    }

    /// Enter or leave the stall, as the threads' progress says at `now`: `freed`, a
    /// thread let go of its job in this turn.
    pub(super) fn note_progress(&mut self, now: Instant, freed: bool) {
        let Some(pool) = &self.pool else {
            return;
        };
        if freed || self.busy_threads < pool.threads() {
            self.progress_at = now;
        }
        let stalled = now.saturating_duration_since(self.progress_at) >= STALL_AFTER;
        if stalled == self.cx.stalled {
            return;
        }
        self.cx.stalled = stalled;
        if stalled {
            crate::log_debug!(
                "app threads held up for {} ms: new connections wait for other workers, queued requests go back to the front",
                STALL_AFTER.as_millis()
            );
            self.hand_back_queued();
        } else if self.accepting.is_open() && self.stop_by.is_none() {
            self.accept_all();
        }
    }

    /// Give the front back every queued request it may have back; queue the others
    /// again, in their order.
    fn hand_back_queued(&mut self) {
        let Some(jobs) = self.pool.as_ref().map(|pool| pool.take_queued()) else {
            return;
        };
        for job in jobs {
            let key = job.ticket.key;
            match self.conns.get_mut(key) {
                Some(conn) if conn.takes_back(&job) => {
                    let outcome = conn.hand_back_queued(job, &mut self.cx);
                    self.busy_threads = self.busy_threads.saturating_sub(1);
                    self.settle(key, outcome);
                }
                _ => {
                    let queued = self
                        .pool
                        .as_ref()
                        .is_some_and(|pool| pool.submit(job).is_ok());
                    if !queued {
                        // The threads are gone: the connection's answer never comes.
                        self.busy_threads = self.busy_threads.saturating_sub(1);
                        self.close(key);
                    }
                }
            }
        }
    }
}

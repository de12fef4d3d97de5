//! How the master stops (TERM gracefully; INT, QUIT or a halt at once): the listening
//! sockets close first so new connections are refused at once, then the front, then the
//! workers, bounded, and whatever is left is killed. The decision of which stop a batch
//! of signals asks for is [`Stop::asked_in`]; the loop that calls this is in [`super`].

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use rgunicorn_workers::{log_info, log_warning};

use super::{front, upgrade, Arbiter, WorkerState};

/// How the master stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// TERM: in-flight requests finish within graceful_timeout.
    Graceful,
    /// INT, QUIT, or a halt: at once.
    Fast,
}

impl Stop {
    /// A stop asked for in one batch of signals, and by which: a fast one wins over a
    /// graceful one, and a stop over everything else in the batch.
    pub(super) fn asked_in(batch: &[Signal]) -> Option<(Stop, Signal)> {
        let fast = [Signal::SIGINT, Signal::SIGQUIT];
        if let Some(sig) = batch.iter().find(|s| fast.contains(s)) {
            Some((Stop::Fast, *sig))
        } else if batch.contains(&Signal::SIGTERM) {
            Some((Stop::Graceful, Signal::SIGTERM))
        } else {
            None
        }
    }

    /// What the children are sent.
    fn signal(self) -> Signal {
        match self {
            Stop::Graceful => Signal::SIGTERM,
            Stop::Fast => Signal::SIGQUIT,
        }
    }
}

/// How gunicorn names a signal in its log: `term`, `hup`.
pub(super) fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}

impl Arbiter {
    /// Stop. The listening sockets close first (the master's copies here, each child's
    /// own when it gets the signal), so new connections are refused at once instead of
    /// queueing where nobody will accept them; then the children finish, bounded.
    ///
    /// Graceful (TERM): the front first. Its sockets close and it finishes its
    /// in-flight requests while every worker still serves what it forwards (stopping
    /// the workers first left it proxying into closed listeners: 502s). Then the
    /// workers' sockets and the workers, which take what is already queued, answer what
    /// they hold, and exit, within what is left of graceful_timeout (at least 1 s).
    /// Fast (INT, QUIT, a halt): all at once, 1 s. An INT or QUIT during a graceful stop
    /// makes it fast. What is left at the end is killed. Returns the exit code.
    pub(super) fn stop(&mut self, how: Stop, code: i32) -> i32 {
        // Not ready from now on (`/readyz` says 503), before anything closes.
        self.table.set_draining();
        upgrade::sd_notify("STOPPING=1");
        let how = self.shutdown_delay(how);
        let wait = match how {
            Stop::Graceful => self.settings.worker.graceful_timeout,
            Stop::Fast => Duration::from_secs(1),
        };
        let deadline = Instant::now() + wait;
        if let Some(front) = self.front.as_mut() {
            front.stop(how.signal());
        }
        let mut how = how;
        if how == Stop::Graceful {
            how = self.wait_for_children(how, deadline, |a| !a.front_is_alive());
        }
        self.close_listeners();
        for (pid, w) in self.workers.iter_mut() {
            if w.state == WorkerState::Running {
                w.state = WorkerState::Retiring;
            }
            let _ = kill(*pid, how.signal());
        }
        let floor = Instant::now() + Duration::from_secs(1).min(wait);
        self.wait_for_children(how, deadline.max(floor), |a| {
            a.workers.is_empty() && !a.front_is_alive()
        });
        self.kill_the_rest();
        // Last, so /readyz said 503 through the whole drain.
        self.ops.stop();
        if let Some(pidfile) = self.pidfile.take() {
            pidfile.remove();
        }
        log_info!("Shutting down: Master");
        self.hook(|h, s| h.on_exit(s));
        code
    }

    /// `--shutdown-delay`: before a graceful stop closes anything, keep serving for that
    /// long while `/readyz` says 503, so a load balancer that polls it stops sending
    /// here first. An INT or QUIT meanwhile ends the wait and makes the stop fast.
    fn shutdown_delay(&mut self, how: Stop) -> Stop {
        let delay = self.settings.ops.shutdown_delay;
        if how != Stop::Graceful || delay.is_zero() {
            return how;
        }
        log_info!(
            "Not ready: closing the listeners in {} s (shutdown_delay)",
            delay.as_secs()
        );
        let until = Instant::now() + delay;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            let batch = self.signals.wait(left.min(super::TICK));
            if Stop::asked_in(&batch).is_some_and(|(s, _)| s == Stop::Fast) {
                log_info!("Stopping now: a fast stop was asked for during the shutdown delay");
                return Stop::Fast;
            }
            self.reap();
            self.check_workers();
            self.manage_workers();
            self.beat();
        }
        how
    }

    fn front_is_alive(&self) -> bool {
        self.front.as_ref().is_some_and(front::Front::is_alive)
    }

    /// Close the master's copies of the workers' sockets (unix socket files go too,
    /// unless an upgraded master serves them now).
    fn close_listeners(&mut self) {
        let keep_files = self.new_master.is_some();
        for l in self.listeners.drain(..) {
            if keep_files {
                l.socket.close_keeping_file();
            }
        }
    }

    /// Reap children until `done` or `deadline`. Returns how the stop goes on: an INT or
    /// QUIT meanwhile turns a graceful stop fast (and is passed on to the children).
    fn wait_for_children(
        &mut self,
        mut how: Stop,
        deadline: Instant,
        done: fn(&Arbiter) -> bool,
    ) -> Stop {
        while !done(self) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let batch = self.signals.wait(left.min(Duration::from_millis(50)));
            if how == Stop::Graceful && Stop::asked_in(&batch).is_some_and(|(s, _)| s == Stop::Fast)
            {
                log_info!("Stopping now: a fast stop was asked for during the graceful one");
                how = Stop::Fast;
                let pids = self.workers.keys().copied();
                for pid in pids.chain(self.front.as_ref().and_then(front::Front::pid)) {
                    let _ = kill(pid, Signal::SIGQUIT);
                }
            }
            self.reap();
            self.beat();
        }
        how
    }

    /// SIGKILL every child still there and reap it.
    fn kill_the_rest(&mut self) {
        let front = self.front.as_ref().and_then(front::Front::pid);
        if !self.workers.is_empty() {
            log_warning!(
                "Killing {} worker(s) still running at the end of the stop",
                self.workers.len()
            );
        }
        for pid in self.workers.keys().copied().chain(front) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let mut front = front;
        while !self.workers.is_empty() || front.is_some() {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    self.workers.remove(&pid);
                    if front == Some(pid) {
                        front = None;
                    }
                }
                Err(Errno::EINTR) | Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_stop_wins_and_a_stop_wins_over_the_rest_of_the_batch() {
        use Signal::*;
        assert_eq!(Stop::asked_in(&[SIGHUP, SIGTTIN]), None);
        assert_eq!(
            Stop::asked_in(&[SIGHUP, SIGTERM]),
            Some((Stop::Graceful, SIGTERM))
        );
        assert_eq!(
            Stop::asked_in(&[SIGQUIT, SIGTERM]),
            Some((Stop::Fast, SIGQUIT))
        );
        assert_eq!(
            Stop::asked_in(&[SIGINT, SIGUSR1]),
            Some((Stop::Fast, SIGINT))
        );
        assert_eq!(signal_name(SIGTERM), "term");
    }
}

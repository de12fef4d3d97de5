//! Signals, the same way in every process: signal-hook's handlers record which signals
//! arrived and wake a socket pair; the process's own loop reads them back with
//! [`Signals::pending`] (after `poll`/mio says the socket is readable) or
//! [`Signals::wait`] (the master, which has no mio loop). No process logic ever runs in a
//! handler, and there is no `unsafe` here but the fork.
//!
//! A kind of signal that arrives again before the loop has read it counts once (as the
//! kernel itself merges a signal still pending); one batch comes back in signal-number
//! order, and the caller decides what in it comes first.
//!
//! Forking: [`Signals::fork`] blocks, across the fork, both this process's signals and
//! the ones the child will handle itself. The child drops this process's handlers, then
//! keeps its own signals blocked until it calls [`Signals::install`], so one sent to it
//! in between (a TERM right after a fork) waits for its handlers instead of reaching the
//! parent's queue or being lost.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// The signals the master acts on (SIGNALS.md, "Master").
pub const MASTER: [Signal; 10] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];
/// The signals a worker acts on (SIGNALS.md, "Worker"); the others are ignored there.
pub const WORKER: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
];
/// The signals the TLS front acts on.
pub const FRONT: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
];

/// The signals one process handles, queued for its loop.
pub struct Signals {
    /// `None` once dropped in a forked child.
    delivery: Option<SignalDelivery<UnixStream, SignalOnly>>,
    handled: Vec<Signal>,
}

/// Which side of [`Signals::fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent(Pid),
}

impl Signals {
    /// Handle `signals` from now on, and unblock them (a parent may have forked this
    /// process with them blocked; one that came meanwhile is delivered now).
    pub fn install(signals: &[Signal]) -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let delivery =
            SignalDelivery::with_pipe(read, write, SignalOnly, signals.iter().map(|s| *s as i32))?;
        set_of(signals).thread_unblock().map_err(io::Error::from)?;
        Ok(Signals {
            delivery: Some(delivery),
            handled: signals.to_vec(),
        })
    }

    /// The signals that arrived since the last call, in signal-number order; each kind
    /// once. Never blocks.
    pub fn pending(&mut self) -> Vec<Signal> {
        match self.delivery.as_mut() {
            Some(delivery) => delivery
                .pending()
                .filter_map(|n| Signal::try_from(n).ok())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Wait up to `timeout` for a signal, then return what [`Signals::pending`] does.
    pub fn wait(&mut self, timeout: Duration) -> Vec<Signal> {
        if let Some(delivery) = self.delivery.as_ref() {
            let mut fds = [PollFd::new(delivery.get_read().as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            // An error (EINTR: a signal came) only ends the wait early.
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        self.pending()
    }

    /// Fork a child that will handle `child_signals` itself, with this process's signals
    /// and those blocked across the fork (see the module header). In the child, this
    /// process's handlers are gone when it returns ([`Forked::Child`]).
    ///
    /// # Safety
    ///
    /// As [`nix::unistd::fork`]: the calling process must be single-threaded (no other
    /// thread may hold a lock the child needs), and the child must leave through
    /// `std::process::exit` (or exec) rather than return into code that assumes it is
    /// the parent.
    pub unsafe fn fork(&mut self, child_signals: &[Signal]) -> io::Result<Forked> {
        let mut held = set_of(&self.handled);
        for sig in child_signals {
            held.add(*sig);
        }
        let before = held
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .map_err(io::Error::from)?;
        // SAFETY: the caller upholds fork's contract (this function's # Safety).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Unregisters this process's handlers and closes its socket pair: the
                // child's signals are its own from here.
                self.delivery = None;
                // The parent's signals go back to what they were (their handlers are
                // gone, so they are ignored); the child's own stay blocked until it
                // installs its handlers. sigprocmask cannot fail with a valid set.
                let mut mask = before;
                for sig in child_signals {
                    mask.add(*sig);
                }
                let _ = mask.thread_set_mask();
                Ok(Forked::Child)
            }
            Ok(ForkResult::Parent { child }) => {
                let _ = before.thread_set_mask();
                Ok(Forked::Parent(child))
            }
            Err(err) => {
                let _ = before.thread_set_mask();
                Err(err.into())
            }
        }
    }

    fn read_fd(&self) -> io::Result<RawFd> {
        self.delivery
            .as_ref()
            .map(|d| d.get_read().as_raw_fd())
            .ok_or_else(|| io::Error::other("signal handling was dropped in this child"))
    }
}

/// A mio loop registers [`Signals`] as one source and calls [`Signals::pending`] when it
/// is readable (it drains the socket, as edge-triggered readiness needs).
impl Source for Signals {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.read_fd()?).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.read_fd()?).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.read_fd()?).deregister(registry)
    }
}

fn set_of(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for sig in signals {
        set.add(*sig);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::raise;

    // One test: signal handlers are process-wide, so tests that install them must not
    // run concurrently in the same test binary.
    #[test]
    fn signals_arrive_once_per_kind_in_number_order_and_wake_a_wait() {
        let mut signals = Signals::install(&[Signal::SIGUSR2, Signal::SIGUSR1]).expect("install");
        assert!(signals.wait(Duration::from_millis(10)).is_empty());
        raise(Signal::SIGUSR2).expect("raise");
        raise(Signal::SIGUSR1).expect("raise");
        raise(Signal::SIGUSR2).expect("raise");
        assert_eq!(
            signals.wait(Duration::from_secs(5)),
            vec![Signal::SIGUSR1, Signal::SIGUSR2]
        );
        assert!(signals.pending().is_empty());

        // Through mio, as the worker and the front read them.
        let mut poll = mio::Poll::new().expect("poll");
        poll.registry()
            .register(&mut signals, Token(7), Interest::READABLE)
            .expect("register");
        raise(Signal::SIGUSR1).expect("raise");
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert_eq!(signals.pending(), vec![Signal::SIGUSR1]);
    }
}

//! The master's signal queue: handlers only write the signal number into a socket pair,
//! and the loop in [`super`] reads them back in order and dispatches them with one
//! `match` (no master logic ever runs in a handler).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::signal::*;
use signal_hook::SigId;

const HANDLED: [i32; 10] = [
    SIGHUP, SIGQUIT, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
];

/// The queue of signals: handlers write the signal number, the loop reads it.
pub(super) struct SignalQueue {
    read_end: UnixStream,
    ids: Vec<SigId>,
}

impl SignalQueue {
    pub(super) fn install() -> io::Result<SignalQueue> {
        let (read_end, write_end) = UnixStream::pair()?;
        read_end.set_nonblocking(true)?;
        write_end.set_nonblocking(true)?;
        let fd = write_end.as_raw_fd();
        // The write end lives as long as the process: handlers may run at any time.
        std::mem::forget(write_end);
        let mut ids = Vec::with_capacity(HANDLED.len());
        for sig in HANDLED {
            let byte = [sig as u8];
            // SAFETY: the handler only calls write(2), which is async-signal-safe, on an
            // fd that is never closed in this process; a full pipe just drops the byte.
            let id = unsafe {
                signal_hook::low_level::register(sig, move || {
                    libc::write(fd, byte.as_ptr().cast(), 1);
                })
            }?;
            ids.push(id);
        }
        Ok(SignalQueue { read_end, ids })
    }

    /// Wait up to `timeout` for signals; return those queued, in order.
    pub(super) fn wait(&mut self, timeout: Duration) -> Vec<i32> {
        let mut fds = [nix::poll::PollFd::new(
            self.read_end.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        let mut buf = [0u8; 64];
        let mut sigs = Vec::new();
        loop {
            match self.read_end.read(&mut buf) {
                Ok(n) if n > 0 => sigs.extend(buf[..n].iter().map(|&b| i32::from(b))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        sigs
    }

    /// In a new child: drop the master's handlers so its signals are its own.
    pub(super) fn forget_in_child(&self) {
        for id in &self.ids {
            signal_hook::low_level::unregister(*id);
        }
    }
}

/// The signals a worker acts on: blocked across the fork until the worker has its own
/// handlers (`rgunicorn_workers::worker` unblocks them).
pub(super) fn worker_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
    ] {
        set.add(sig);
    }
    set
}

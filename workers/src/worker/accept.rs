//! Accepting connections, and the two reasons to pause it: the worker holds
//! `--worker-connections` (the rest stay in the backlog for the other workers,
//! gthread's back-pressure), or the process is out of descriptors or kernel memory. The
//! second pauses briefly and retries by itself, with one log line when an episode begins
//! and one, with its count, when it ends, and no busy loop in between: a listener's
//! readiness is edge-triggered, so an ignored event does not come back.

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::{Worker, CONN_BASE};
use crate::conn::Conn;
use crate::environ::ConnInfo;

/// How long accepting pauses when the process is out of descriptors, unless a
/// connection closes first.
const STARVED_RETRY: Duration = Duration::from_millis(250);

/// Whether the loop takes new connections now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Accepting {
    Open,
    /// The worker holds `--worker-connections`: resumes when one closes.
    Full,
    /// `accept` failed for want of descriptors or memory: resumes when a connection
    /// closes, or tries again at `retry`.
    Starved {
        since: Instant,
        retry: Instant,
        failures: u64,
    },
}

impl Accepting {
    pub fn is_open(&self) -> bool {
        matches!(self, Accepting::Open)
    }

    /// When the loop must wake to try accepting again.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Accepting::Starved { retry, .. } => Some(*retry),
            _ => None,
        }
    }

    pub fn retry_due(&self, now: Instant) -> bool {
        self.retry_at().is_some_and(|retry| now >= retry)
    }
}

/// Errors that say the process or the kernel is out of something, not that one
/// connection went wrong.
fn out_of_resources(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Errors about the one connection being accepted (gone before we took it, refused by
/// a firewall rule): the next one may be fine.
fn about_one_connection(err: &io::Error) -> bool {
    err.kind() == ErrorKind::ConnectionAborted
        || matches!(err.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

impl Worker {
    /// Try every listener after a pause, unless the worker is stalled ([`super::stall`]):
    /// it tries again when the stall ends.
    pub(super) fn accept_all(&mut self) {
        if !self.cx.stalled {
            self.drain_listeners();
        }
    }

    /// Take what waits on every listener, stalled or not: before they are closed.
    pub(super) fn drain_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
    }

    /// Accept from listener `index` until its queue is empty or accepting must pause.
    pub(super) fn accept(&mut self, index: usize) {
        loop {
            if self.conns.len() >= self.cx.cfg.worker_connections.max(1) {
                // Full: leave the rest in the backlog for the other workers.
                if self.accepting.is_open() {
                    self.accepting = Accepting::Full;
                }
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer, local)) => {
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let mut info = ConnInfo::new(peer, local);
                    info.trusted_unix_peer = stream
                        .peer_uid()
                        .is_some_and(|uid| self.cx.cfg.trusted_unix_uids.contains(&uid));
                    let mut conn = Conn::new(key, stream, info, self.cx.cfg.metrics);
                    if let Err(err) = self.poll.registry().register(
                        &mut conn.stream,
                        Token(CONN_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        crate::log_error!("cannot register connection: {err}");
                        continue;
                    }
                    entry.insert(conn);
                    if let Some(metrics) = self.cx.cfg.metrics {
                        metrics.connection_opened();
                    }
                }
                // The queue is drained, and accept(2) takes a descriptor before it
                // looks at the queue, so one was free: the worker has caught up. (A
                // successful accept alone ends nothing: freeing one descriptor and
                // taking it again is still the same shortage.)
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.accepting_again();
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if about_one_connection(&e) => continue,
                Err(e) if out_of_resources(&e) => {
                    self.starved(&e);
                    return;
                }
                Err(e) => {
                    crate::log_error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn starved(&mut self, err: &io::Error) {
        let now = Instant::now();
        match &mut self.accepting {
            Accepting::Starved {
                retry, failures, ..
            } => {
                *failures += 1;
                *retry = now + STARVED_RETRY;
            }
            _ => {
                crate::log_error!(
                    "cannot accept connections: {err}: pausing accept, retrying every {} ms \
                     or when a connection closes",
                    STARVED_RETRY.as_millis()
                );
                self.accepting = Accepting::Starved {
                    since: now,
                    retry: now + STARVED_RETRY,
                    failures: 1,
                };
            }
        }
    }

    /// The accept queue is drained: end a pause, saying how long it lasted.
    fn accepting_again(&mut self) {
        if let Accepting::Starved {
            since, failures, ..
        } = self.accepting
        {
            crate::log_info!(
                "accepting connections again after {:.1} s ({failures} accept attempt(s) \
                 failed for want of descriptors or memory)",
                since.elapsed().as_secs_f64()
            );
        }
        self.accepting = Accepting::Open;
    }
}

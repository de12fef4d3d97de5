//! One event loop (one per thread): its own TLS listener (SO_REUSEPORT, so the kernel
//! spreads connections evenly over the loops), optionally the redirect listener, a
//! `Waker` through which the control thread ([`super::control`]) sends [`Control`]
//! messages, and the [`Relay`] holding every connection.
//!
//! Each pass: poll, tell the relay about every event first (so a pooled upstream
//! connection the worker closed leaves the pool before anyone sends on it), accept, then
//! let the relay drive what moved. Deadlines are enforced by a sweep every [`TICK`].
//! Out of descriptors, accepting pauses for [`ACCEPT_PAUSE`] at a time, with one log
//! line per episode.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll};

use super::context::{Ctx, Key, LISTENER, REDIRECT, WAKER};
use super::log::Logger;
use super::relay::Relay;
use super::Runtime;

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(200);
/// How long accepting pauses when the process is out of descriptors (or memory).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// An out-of-descriptors episode ends after this long without a failed accept.
const EPISODE_QUIET: Duration = Duration::from_secs(2);
/// A long episode is reported this often while it lasts.
const EPISODE_REPORT: Duration = Duration::from_secs(60);

/// Messages from the control thread.
pub enum Control {
    /// TERM: stop accepting, finish in-flight requests until the deadline.
    Drain { deadline: Instant },
    /// INT/QUIT: stop now.
    Stop,
    /// HUP: new settings and certificate for new connections.
    Reload(Arc<Runtime>),
}

/// How the loop ended.
pub enum Exit {
    Drained,
    Stopped,
}

/// Accepting failed for lack of resources: since when, how often, why.
struct Starved {
    since: Instant,
    failures: u64,
    error: io::Error,
    last_failure: Instant,
    /// While paused: when to try again (listener events are ignored until then).
    resume_at: Option<Instant>,
}

pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    redirect: Option<TcpListener>,
    relay: Relay,
    runtime: Arc<Runtime>,
    log: Arc<Logger>,
    control: Receiver<Control>,
    drain_deadline: Option<Instant>,
    /// Accepting stopped at worker_connections with connections maybe still queued.
    accept_paused: bool,
    starved: Option<Starved>,
}

impl EventLoop {
    pub fn new(
        poll: Poll,
        listener: std::net::TcpListener,
        redirect: Option<std::net::TcpListener>,
        runtime: Arc<Runtime>,
        log: Arc<Logger>,
        control: Receiver<Control>,
    ) -> io::Result<EventLoop> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let redirect = match redirect {
            Some(l) => {
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, REDIRECT, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            redirect,
            relay: Relay::default(),
            runtime,
            log,
            control,
            drain_deadline: None,
            accept_paused: false,
            starved: None,
        })
    }

    pub fn run(mut self) -> Exit {
        let exit = self.serve();
        self.log.flush_access();
        exit
    }

    fn serve(&mut self) -> Exit {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            if let Err(err) = self.poll.poll(&mut events, Some(TICK)) {
                if err.kind() != io::ErrorKind::Interrupted {
                    self.log.error(&format!("event loop: poll failed: {err}"));
                    return Exit::Stopped;
                }
            }
            let now = Instant::now();
            let mut accept = [false; 2];
            let mut control = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept[0] = true,
                    REDIRECT => accept[1] = true,
                    WAKER => control = true,
                    token => {
                        if let Some(key) = Key::of(token) {
                            self.relay.note(key, event);
                        }
                    }
                }
            }
            if control {
                if let Some(exit) = self.handle_control() {
                    return exit;
                }
            }
            if self
                .starved
                .as_ref()
                .and_then(|s| s.resume_at)
                .is_some_and(|at| now >= at)
            {
                accept = [true, self.redirect.is_some()];
            }
            if self.accept_paused
                && self.relay.connections() < self.runtime.settings.worker_connections
            {
                self.accept_paused = false;
                accept[0] = true;
            }
            if accept[0] {
                self.accept(false, now);
            }
            if accept[1] {
                self.accept(true, now);
            }
            let (ctx, relay) = self.split(now);
            relay.run(&ctx);
            if now >= next_sweep {
                next_sweep = now + TICK;
                relay.sweep(&ctx);
                self.log.flush_access();
                self.report_starved(now);
            }
            if let Some(deadline) = self.drain_deadline {
                if self.relay.connections() == 0 || now >= deadline {
                    return Exit::Drained;
                }
            }
        }
    }

    /// What a handler may touch, beside the relay that holds the connections.
    fn split(&mut self, now: Instant) -> (Ctx<'_>, &mut Relay) {
        let ctx = Ctx {
            registry: self.poll.registry(),
            rt: &self.runtime,
            log: &self.log,
            draining: self.drain_deadline.is_some(),
            now,
        };
        (ctx, &mut self.relay)
    }

    fn accept(&mut self, redirect: bool, now: Instant) {
        if let Some(at) = self.starved.as_ref().and_then(|s| s.resume_at) {
            if now < at {
                return; // paused: the queued connections wait in the backlog
            }
        }
        loop {
            if self.relay.connections() >= self.runtime.settings.worker_connections {
                self.accept_paused = true;
                return;
            }
            let listener = if redirect {
                &self.redirect
            } else {
                &self.listener
            };
            let Some(listener) = listener else {
                return;
            };
            let (sock, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if starving(&e) => {
                    self.starve(e, now);
                    return;
                }
                // A connection that died in the backlog (ECONNABORTED and friends).
                Err(_) => continue,
            };
            if let Some(s) = &mut self.starved {
                s.resume_at = None;
            }
            let tls = self.runtime.tls.clone();
            let (ctx, relay) = self.split(now);
            let added = if redirect {
                relay.add_redirect(sock, peer, &ctx)
            } else {
                relay.add_client(sock, peer, tls, &ctx)
            };
            if let Err(err) = added {
                ctx.log
                    .error(&format!("cannot set up a connection from {peer}: {err}"));
            }
        }
    }

    /// Accepting failed for lack of descriptors or memory: pause, counting.
    fn starve(&mut self, error: io::Error, now: Instant) {
        let resume_at = Some(now + ACCEPT_PAUSE);
        match &mut self.starved {
            Some(s) => {
                s.failures += 1;
                s.last_failure = now;
                s.resume_at = resume_at;
                s.error = error;
            }
            None => {
                self.starved = Some(Starved {
                    since: now,
                    failures: 1,
                    error,
                    last_failure: now,
                    resume_at,
                })
            }
        }
    }

    /// One line per episode: when accepting has worked for a while again (or once a
    /// minute while it lasts), with how many accepts failed.
    fn report_starved(&mut self, now: Instant) {
        let Some(s) = &mut self.starved else {
            return;
        };
        let over = now.saturating_duration_since(s.last_failure) >= EPISODE_QUIET;
        if !over && now.saturating_duration_since(s.since) < EPISODE_REPORT {
            return;
        }
        self.log.error(&format!(
            "accept() failed {} times in {:.1} s ({}): out of file descriptors or memory; {}",
            s.failures,
            s.last_failure
                .saturating_duration_since(s.since)
                .as_secs_f64(),
            s.error,
            if over {
                "accepting again"
            } else {
                "still pausing accepts"
            }
        ));
        if over {
            self.starved = None;
        } else {
            s.since = now;
            s.failures = 0;
        }
    }

    /// Returns how to exit when the message ends the loop.
    fn handle_control(&mut self) -> Option<Exit> {
        while let Ok(message) = self.control.try_recv() {
            match message {
                Control::Stop => return Some(Exit::Stopped),
                Control::Drain { deadline } => {
                    self.drain_deadline = Some(deadline);
                    // Stop accepting: the kernel hands new connections to nobody; the
                    // master (or the next front) owns the listening sockets.
                    if let Some(mut l) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                    if let Some(mut l) = self.redirect.take() {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                    let (ctx, relay) = self.split(Instant::now());
                    relay.clear_pool();
                    relay.sweep(&ctx);
                }
                Control::Reload(runtime) => {
                    self.runtime = runtime;
                    self.relay.clear_pool();
                }
            }
        }
        None
    }
}

/// Errors that say the process (or the system) is out of something accepting needs.
fn starving(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

//! One event loop (one per thread): its own TLS listener (SO_REUSEPORT, so the kernel
//! spreads connections evenly over the loops), optionally the redirect listener, the
//! connections, the upstream pool, and a `Waker` through which the control thread
//! ([`super::control`]) sends [`Control`] messages.
//!
//! Each connection has two tokens (client socket, upstream socket) derived from its slab
//! key. Deadlines are enforced by a sweep every [`TICK`].

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token};

use super::conn::Client;
use super::log::Logger;
use super::redirect::Redirect;
use super::upstream::Pool;
use super::Runtime;

const LISTENER: Token = Token(0);
const REDIRECT: Token = Token(1);
pub const WAKER: Token = Token(2);
const FIRST_CONN: usize = 16;
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(200);

pub fn client_token(key: usize) -> Token {
    Token(FIRST_CONN + 2 * key)
}

pub fn upstream_token(key: usize) -> Token {
    Token(FIRST_CONN + 2 * key + 1)
}

fn key_of(token: Token) -> Option<usize> {
    token.0.checked_sub(FIRST_CONN).map(|n| n / 2)
}

/// Messages from the control thread.
pub enum Control {
    /// TERM: stop accepting, finish in-flight requests until the deadline.
    Drain { deadline: Instant },
    /// INT/QUIT: stop now.
    Stop,
    /// HUP: new settings and certificate for new connections.
    Reload(Arc<Runtime>),
}

/// What a connection handler leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Closed,
}

/// What a connection handler may touch.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub rt: &'a Runtime,
    pub log: &'a Logger,
    pub pool: &'a mut Pool,
    pub draining: bool,
    pub now: Instant,
}

enum Conn {
    Tls(Box<Client>),
    Redirect(Box<Redirect>),
}

impl Conn {
    fn drive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        match self {
            Conn::Tls(c) => c.drive(ctx),
            Conn::Redirect(r) => r.drive(ctx),
        }
    }

    fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        match self {
            Conn::Tls(c) => c.check_timeouts(ctx),
            Conn::Redirect(r) => r.check_timeouts(ctx),
        }
    }
}

/// A minimal slab: stable keys, reused after removal.
struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn vacant_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key).and_then(Option::as_mut)
    }

    fn remove(&mut self, key: usize) {
        if let Some(slot) = self.entries.get_mut(key) {
            if slot.take().is_some() {
                self.len -= 1;
                self.free.push(key);
            }
        }
    }

    fn keys(&self) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|_| k))
            .collect()
    }
}

/// How the loop ended.
pub enum Exit {
    Drained,
    Stopped,
}

pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    redirect: Option<TcpListener>,
    conns: Slab<Conn>,
    pool: Pool,
    runtime: Arc<Runtime>,
    log: Arc<Logger>,
    control: Receiver<Control>,
    drain_deadline: Option<Instant>,
    /// Accepting stopped at worker_connections with connections maybe still queued.
    accept_paused: bool,
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
            conns: Slab::new(),
            pool: Pool::default(),
            runtime,
            log,
            control,
            drain_deadline: None,
            accept_paused: false,
        })
    }

    pub fn run(mut self) -> Exit {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            if let Err(err) = self.poll.poll(&mut events, Some(TICK)) {
                if err.kind() != io::ErrorKind::Interrupted {
                    self.log.error(&format!("event loop: poll failed: {err}"));
                    return Exit::Stopped;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(false),
                    REDIRECT => self.accept(true),
                    WAKER => {
                        if let Some(exit) = self.handle_control() {
                            return exit;
                        }
                    }
                    token => {
                        if let Some(key) = key_of(token) {
                            if let Some(Conn::Tls(client)) = self.conns.get_mut(key) {
                                client.note_event(
                                    token == upstream_token(key),
                                    event.is_read_closed(),
                                );
                            }
                            self.with_conn(key, Conn::drive);
                        }
                    }
                }
            }
            if self.accept_paused && self.conns.len < self.runtime.settings.worker_connections {
                self.accept_paused = false;
                self.accept(false);
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + TICK;
                self.sweep();
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.len == 0 || now >= deadline {
                    return Exit::Drained;
                }
            }
        }
    }

    fn with_conn(&mut self, key: usize, f: fn(&mut Conn, &mut Ctx<'_>) -> Outcome) {
        let Some(conn) = self.conns.get_mut(key) else {
            return; // a stale event for a connection already closed
        };
        let mut ctx = Ctx {
            registry: self.poll.registry(),
            rt: &self.runtime,
            log: &self.log,
            pool: &mut self.pool,
            draining: self.drain_deadline.is_some(),
            now: Instant::now(),
        };
        if f(conn, &mut ctx) == Outcome::Closed {
            self.conns.remove(key);
        }
    }

    fn sweep(&mut self) {
        for key in self.conns.keys() {
            self.with_conn(key, Conn::check_timeouts);
        }
        self.pool
            .expire(self.runtime.settings.upstream_keepalive_timeout);
    }

    fn accept(&mut self, redirect: bool) {
        loop {
            if self.conns.len >= self.runtime.settings.worker_connections {
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
                Err(e) => {
                    // EMFILE and friends: log, and retry on the next sweep's event.
                    self.log.error(&format!("accept() failed: {e}"));
                    return;
                }
            };
            let key = self.conns.vacant_key();
            let ctx = Ctx {
                registry: self.poll.registry(),
                rt: &self.runtime,
                log: &self.log,
                pool: &mut self.pool,
                draining: false,
                now: Instant::now(),
            };
            let conn = if redirect {
                Redirect::new(sock, peer, key, &ctx).map(|r| Conn::Redirect(Box::new(r)))
            } else {
                Client::new(sock, peer, key, self.runtime.tls.clone(), &ctx)
                    .map(|c| Conn::Tls(Box::new(c)))
            };
            match conn {
                Ok(conn) => {
                    self.conns.insert(conn);
                }
                Err(err) => self
                    .log
                    .error(&format!("cannot set up a connection from {peer}: {err}")),
            }
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
                    self.pool.clear();
                    self.sweep();
                }
                Control::Reload(runtime) => {
                    self.runtime = runtime;
                    self.pool.clear();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0, 1, 7, 1000] {
            assert_eq!(key_of(client_token(key)), Some(key));
            assert_eq!(key_of(upstream_token(key)), Some(key));
            assert_ne!(client_token(key), upstream_token(key));
        }
        assert_eq!(key_of(WAKER), None);
    }

    #[test]
    fn slab_reuses_keys() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        slab.remove(a);
        assert_eq!(slab.vacant_key(), a);
        assert_eq!(slab.insert("c"), a);
        assert_eq!(slab.keys(), vec![a, b]);
        assert_eq!(slab.len, 2);
    }
}

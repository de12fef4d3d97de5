//! The worker process: one mio event loop that owns the inherited listeners, the
//! connections and the wake-ups from app threads and signals, and a pool of app threads
//! when the app may block. Entered in the child right after fork; never returns into
//! the master's code (the caller exits with the code `run` gives).

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
use rgunicorn_process::{signals as roles, Signals};
use slab::Slab;

use crate::app::{self, App, Mode};
use crate::config::WorkerConfig;
use crate::conn::{Conn, Cx, Outcome};
use crate::environ::ConnInfo;
use crate::log::AccessLog;
use crate::pool::{Pool, Wake};
use crate::stream::{Listener, MioListener};

/// Exit codes between worker and master (gunicorn's contract).
pub const EXIT_OK: i32 = 0;
pub const EXIT_BOOT_ERROR: i32 = 3;
pub const EXIT_APP_LOAD_ERROR: i32 = 4;

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER_BASE: usize = 16;
const CONN_BASE: usize = 1 << 20;
/// The loop looks at deadlines, the parent and the heartbeat at least this often.
const TICK: Duration = Duration::from_millis(500);
const SCRATCH: usize = 64 * 1024;
/// How long a stopping worker waits for the first request of a connection it accepted.
const FRESH_GRACE: Duration = Duration::from_secs(1);

/// What a connection borrows from the worker while it is driven. A macro rather than a
/// method, so the borrow of `self.conns` (the connection) and of these fields stay apart.
macro_rules! worker_cx {
    ($w:expr, $key:expr, $stopping:expr) => {
        Cx {
            key: $key,
            app: &$w.app,
            mode: $w.mode,
            pool: $w.pool.as_ref(),
            cfg: &$w.cfg,
            access: $w.access.as_ref(),
            scratch: &mut $w.scratch,
            stopping: $stopping,
            requests: &mut $w.requests,
        }
    };
}

/// Signals the worker reacts to (received as the master and the front receive theirs),
/// kept until the loop acts on them.
struct SignalFlags {
    graceful: bool,
    fast: bool,
    reopen: bool,
    signals: Signals,
}

impl SignalFlags {
    /// The master forks with these signals blocked so none is lost before this point;
    /// one that came meanwhile is delivered now.
    fn install() -> io::Result<SignalFlags> {
        Ok(SignalFlags {
            graceful: false,
            fast: false,
            reopen: false,
            signals: Signals::install(&roles::WORKER)?,
        })
    }

    /// Note what arrived (the loop saw the signal source readable).
    fn read(&mut self) {
        for signal in self.signals.pending() {
            match signal {
                Signal::SIGTERM => self.graceful = true,
                Signal::SIGINT | Signal::SIGQUIT => self.fast = true,
                Signal::SIGUSR1 => self.reopen = true,
                _ => {}
            }
        }
    }
}

/// Hooks a worker calls into, filled by the master's process (heartbeat, lifecycle).
pub trait WorkerHooks {
    /// Called every loop iteration at most once per tick: prove the worker is alive.
    fn heartbeat(&mut self) {}
    /// The worker began to retire on its own (max_requests, a stuck request): the
    /// master can start its replacement now rather than when it exits.
    fn retiring(&mut self) {}
    /// The app is loaded and the loop is about to accept (gunicorn's `post_worker_init`).
    fn post_worker_init(&mut self) {}
    /// Told to stop fast (`INT`/`QUIT`), just before the worker returns (`worker_int`).
    fn worker_int(&mut self) {}
}

/// No hooks: what a worker run on its own (tests, embedding) uses.
pub struct NoHooks;
impl WorkerHooks for NoHooks {}

struct Worker {
    poll: Poll,
    listeners: Vec<Option<MioListener>>,
    conns: Slab<Conn>,
    app: Arc<dyn App>,
    mode: Mode,
    pool: Option<Pool>,
    wake: Arc<Wake>,
    cfg: WorkerConfig,
    access: Option<AccessLog>,
    scratch: Vec<u8>,
    requests: u64,
    accept_paused: bool,
    /// Set once the worker begins its graceful stop: when it must be gone.
    stop_by: Option<Instant>,
    parent: nix::unistd::Pid,
    /// Connections whose request is on an app thread, and since when (threaded apps).
    in_app: HashMap<usize, Instant>,
    /// An app thread outlived request_timeout: it may never return, so do not join it.
    stuck: bool,
    /// Connections accepted that have not started a request yet, and since when. A
    /// stopping worker does not close these as idle at once: their first request is
    /// likely on the wire, and closing would reset it (a failed request across HUP).
    fresh: HashMap<usize, Instant>,
}

/// Run a worker until it is told to stop. Returns the process exit code.
/// `app` is the app an embedding program gave; without one, the APP named in `cfg` is
/// loaded here, after the fork.
pub fn run(
    listeners: Vec<Listener>,
    cfg: WorkerConfig,
    app: Option<Arc<dyn App>>,
    hooks: &mut dyn WorkerHooks,
) -> i32 {
    let app = match app.map(Ok).unwrap_or_else(|| app::load(&cfg.app)) {
        Ok(app) => app,
        Err(err) => {
            crate::log_error!("Exception in worker process: {err}");
            return EXIT_APP_LOAD_ERROR;
        }
    };
    match Worker::boot(listeners, cfg, app) {
        Ok((mut worker, mut signals)) => worker.serve(&mut signals, hooks),
        Err(err) => {
            crate::log_error!("worker failed to boot: {err}");
            EXIT_BOOT_ERROR
        }
    }
}

impl Worker {
    fn boot(
        listeners: Vec<Listener>,
        cfg: WorkerConfig,
        app: Arc<dyn App>,
    ) -> io::Result<(Worker, SignalFlags)> {
        let poll = Poll::new()?;
        let wake = Arc::new(Wake::new(mio::Waker::new(poll.registry(), WAKER)?));
        let mut signals = SignalFlags::install()?;
        poll.registry()
            .register(&mut signals.signals, SIGNALS, Interest::READABLE)?;
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut listener = MioListener::from_std(listener);
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE + i),
                Interest::READABLE,
            )?;
            mio_listeners.push(Some(listener));
        }
        let access = match &cfg.access_log {
            Some(target) => Some(AccessLog::start(target, &cfg.access_log_format)?),
            None => None,
        };
        let mode = app.mode();
        let pool = match mode {
            Mode::Threaded => Some(Pool::start(
                cfg.threads.max(1),
                cfg.worker_connections.max(1),
                Arc::clone(&app),
                Arc::clone(&wake),
                cfg.server_software.clone(),
                access.clone(),
                cfg.timeout.max(Duration::from_secs(30)),
            )?),
            Mode::Inline => None,
        };
        let worker = Worker {
            poll,
            listeners: mio_listeners,
            conns: Slab::with_capacity(64),
            app,
            mode,
            pool,
            wake,
            cfg,
            access,
            scratch: vec![0; SCRATCH],
            requests: 0,
            accept_paused: false,
            stop_by: None,
            parent: nix::unistd::getppid(),
            in_app: HashMap::new(),
            stuck: false,
            fresh: HashMap::new(),
        };
        Ok((worker, signals))
    }

    fn serve(&mut self, signals: &mut SignalFlags, hooks: &mut dyn WorkerHooks) -> i32 {
        crate::log_info!("Booting worker with pid: {}", std::process::id());
        hooks.post_worker_init();
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            let timeout = next_tick.saturating_duration_since(now);
            self.wake.going_to_sleep();
            let pending = self.pool.as_ref().is_some_and(|p| !p.done.is_empty());
            let result = self.poll.poll(
                &mut events,
                Some(if pending { Duration::ZERO } else { timeout }),
            );
            self.wake.woke_up();
            if let Err(err) = result {
                if err.kind() != ErrorKind::Interrupted {
                    crate::log_error!("poll failed: {err}");
                    return EXIT_BOOT_ERROR;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => signals.read(),
                    Token(t) if (LISTENER_BASE..CONN_BASE).contains(&t) => {
                        self.accept(t - LISTENER_BASE)
                    }
                    Token(t) => {
                        let key = t - CONN_BASE;
                        if let Some(conn) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            if event.is_writable() || event.is_write_closed() || event.is_error() {
                                conn.writable = true;
                            }
                            self.drive(key);
                        }
                    }
                }
            }
            self.take_answers();

            if signals.fast {
                hooks.worker_int();
                return EXIT_OK;
            }
            if std::mem::take(&mut signals.reopen) {
                let _ = crate::log::reopen();
                if let Some(access) = &self.access {
                    access.reopen();
                }
            }
            if signals.graceful && self.stop_by.is_none() {
                self.begin_stop("Worker exiting");
            }
            if self.cfg.max_requests > 0
                && self.requests >= self.cfg.max_requests
                && self.stop_by.is_none()
            {
                hooks.retiring();
                self.begin_stop("Autorestarting worker after current request.");
            }

            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                hooks.heartbeat();
                if nix::unistd::getppid() != self.parent {
                    crate::log_info!("Parent changed, shutting down: {}", std::process::id());
                    return EXIT_OK;
                }
                self.check_deadlines(now);
                if self.stop_by.is_some() {
                    self.close_idle();
                }
                if self.check_request_time(now) && self.stop_by.is_none() {
                    hooks.retiring();
                    self.begin_stop("Retiring: an app thread is stuck on a request");
                }
            }
            if let Some(stop_by) = self.stop_by {
                if self.conns.is_empty() {
                    break;
                }
                if now >= stop_by {
                    crate::log_warning!(
                        "graceful timeout: closing {} connection(s) still open",
                        self.conns.len()
                    );
                    break;
                }
            }
        }
        if let Some(pool) = self.pool.take() {
            // A stuck thread would never be joined; the process exit ends it.
            if self.conns.is_empty() && !self.stuck {
                pool.shutdown();
            }
        }
        EXIT_OK
    }

    fn drive(&mut self, key: usize) {
        let before = self.requests;
        self.drive_conn(key);
        self.track_dispatch(key, before);
    }

    /// A connection started a request: it is no longer fresh, and with a threaded app
    /// the request's clock starts.
    fn track_dispatch(&mut self, key: usize, requests_before: u64) {
        if self.requests > requests_before {
            self.fresh.remove(&key);
            if self.pool.is_some() && self.conns.contains(key) {
                self.in_app.insert(key, Instant::now());
            }
        }
    }

    /// Closed as idle by a stopping worker: idle and not waiting for its first request.
    fn closable_when_stopping(&self, key: usize, conn: &Conn) -> bool {
        self.stop_by.is_some() && conn.is_idle() && !self.fresh.contains_key(&key)
    }

    fn drive_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut cx = worker_cx!(self, key, self.stop_by.is_some());
        let outcome = conn.drive(&mut cx);
        if outcome == Outcome::Close || self.closable_when_stopping(key, &self.conns[key]) {
            self.close(key);
        }
    }

    fn take_answers(&mut self) {
        let Some(pool) = self.pool.as_ref() else {
            return;
        };
        let answers: Vec<_> = pool.done.try_iter().collect();
        for done in answers {
            self.in_app.remove(&done.key);
            let before = self.requests;
            let Some(conn) = self.conns.get_mut(done.key) else {
                continue;
            };
            let mut cx = worker_cx!(self, done.key, self.stop_by.is_some());
            let outcome = conn.answered(done.out, done.answer, &mut cx);
            if outcome == Outcome::Close
                || self.closable_when_stopping(done.key, &self.conns[done.key])
            {
                self.close(done.key);
            }
            // A pipelined request may have gone to the app at once.
            self.track_dispatch(done.key, before);
        }
        // Streams fed by app threads: drive every connection waiting on one.
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.waits_on_app_stream())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.drive(key);
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            if self.conns.len() >= self.cfg.worker_connections {
                // Full: leave the rest in the backlog for the other workers.
                self.accept_paused = true;
                return;
            }
            let Some(Some(listener)) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer, local)) => {
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let mut conn = Conn::new(stream, ConnInfo::new(peer, local));
                    if let Err(err) = self.poll.registry().register(
                        &mut conn.stream,
                        Token(CONN_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        crate::log_error!("cannot register connection: {err}");
                        continue;
                    }
                    entry.insert(conn);
                    self.fresh.insert(key, Instant::now());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE and friends: back off until a connection closes.
                    crate::log_error!("accept failed: {e}");
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    fn resume_accepting(&mut self) {
        if self.accept_paused
            && self.stop_by.is_none()
            && self.conns.len() < self.cfg.worker_connections
        {
            self.accept_paused = false;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    fn close(&mut self, key: usize) {
        self.in_app.remove(&key);
        self.fresh.remove(&key);
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.resume_accepting();
    }

    fn check_deadlines(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let mut cx = worker_cx!(self, key, self.stop_by.is_some());
            if conn.check_deadline(now, &mut cx) == Outcome::Close {
                self.close(key);
            }
        }
    }

    /// Answer 504 and close every connection whose request has been on an app thread
    /// longer than `request_timeout` (the connection queues the 504 behind what it still
    /// has to send). Returns whether any had: the worker must retire, since that thread
    /// may never come back. Its late answer, if it ever comes, is dropped.
    fn check_request_time(&mut self, now: Instant) -> bool {
        let limit = self.cfg.request_timeout;
        if limit.is_zero() {
            return false;
        }
        let late: Vec<usize> = self
            .in_app
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= limit)
            .map(|(key, _)| *key)
            .collect();
        for key in &late {
            self.in_app.remove(key);
            let Some(conn) = self.conns.get_mut(*key) else {
                continue;
            };
            crate::log_error!(
                "request timeout: the app spent over {}s on a request: answering 504",
                limit.as_secs()
            );
            let mut cx = worker_cx!(self, *key, true);
            if conn.gateway_timeout(&mut cx) == Outcome::Close {
                self.close(*key);
            }
        }
        if !late.is_empty() {
            self.stuck = true;
        }
        !late.is_empty()
    }

    /// Stop accepting, close idle connections, and let the rest finish.
    fn begin_stop(&mut self, why: &str) {
        crate::log_info!("{why} (pid: {})", std::process::id());
        // Take what already waits in the accept queue: with --reuse-port the queue is this
        // worker's own and closing the socket would reset those connections.
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
        self.stop_by = Some(Instant::now() + self.cfg.graceful_timeout);
        self.wake.set_retiring();
        for listener in self.listeners.iter_mut() {
            if let Some(mut l) = listener.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        self.close_idle();
    }

    /// A stopping worker closes idle keep-alive connections, and fresh ones that stayed
    /// silent for FRESH_GRACE (a preconnect that would otherwise hold the worker).
    fn close_idle(&mut self) {
        let now = Instant::now();
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(k, c)| {
                c.is_idle()
                    && self
                        .fresh
                        .get(k)
                        .map_or(true, |t| now.saturating_duration_since(*t) >= FRESH_GRACE)
            })
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key);
        }
    }
}

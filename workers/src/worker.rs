//! The worker process: one mio event loop that owns the inherited listeners, the
//! connections and the wake-ups from app threads and signals, and a pool of app threads
//! when the app may block. Entered in the child right after fork; never returns into
//! the master's code (the caller exits with the code `run` gives).
//!
//! Each connection keeps its own state ([`crate::conn`]); the loop routes socket events,
//! app-thread messages ([`crate::pool::Msg`]) and clock ticks to it, and acts on the
//! [`Outcome`] it gives. Signals are read in one place ([`signals`]); accepting, with its
//! pauses, in [`accept`]; app threads that are all held up, in [`stall`].

mod accept;
mod signals;
mod stall;

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rgunicorn_process::exit;
use slab::Slab;

use crate::app::{App, Mode};
use crate::config::WorkerConfig;
use crate::conn::{Conn, Context, Outcome};
use crate::log::AccessLog;
use crate::pool::{Msg, Pool, Wake};
use crate::stream::{Listener, MioListener};
use accept::Accepting;
use signals::{Asked, SignalFlags};

/// Exit codes between worker and master (gunicorn's contract, and one of ours); the
/// protocol lives in [`rgunicorn_process::exit`].
pub const EXIT_OK: i32 = exit::OK;
/// The worker could not boot: the master halts rather than respawn forever.
pub const EXIT_BOOT_ERROR: i32 = exit::BOOT_ERROR;
/// The app could not be loaded: the master halts.
pub const EXIT_APP_LOAD_ERROR: i32 = exit::APP_LOAD_ERROR;
/// The worker's event loop failed while serving (`poll` returned an error): the worker
/// booted fine, so the master respawns it rather than halting.
pub const EXIT_LOOP_FAILED: i32 = exit::RUNTIME_ERROR;

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER_BASE: usize = 16;
const CONN_BASE: usize = 1 << 20;
/// The loop looks at deadlines, the parent and the heartbeat at least this often.
const TICK: Duration = Duration::from_millis(500);
const SCRATCH: usize = 64 * 1024;
/// App-thread messages handled per loop turn before socket events get their turn.
const MSGS_PER_TURN: usize = 1024;
/// How long an exiting worker waits for app threads to let go of abandoned streams.
const THREADS_LET_GO: Duration = Duration::from_secs(1);

/// Hooks a worker calls into, filled by the master's process (heartbeat, lifecycle).
pub trait WorkerHooks {
    /// Called every loop iteration at most once per tick: prove the worker is alive.
    fn heartbeat(&mut self) {}
    /// The worker began to retire on its own (max_requests, a stuck request): the
    /// master can start its replacement now rather than when it exits.
    fn retiring(&mut self, _why: Retire) {}
    /// The app is loaded and the loop is about to accept (gunicorn's `post_worker_init`).
    fn post_worker_init(&mut self) {}
    /// Told to stop fast (`INT`/`QUIT`), just before the worker returns (`worker_int`).
    fn worker_int(&mut self) {}
}

/// Why a worker retires on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// It served `--max-requests`.
    MaxRequests,
    /// An app thread overran `--request-timeout` and may never come back.
    StuckRequest,
}

/// No hooks: what a worker run on its own (tests, embedding) uses.
pub struct NoHooks;
impl WorkerHooks for NoHooks {}

struct Worker {
    poll: Poll,
    /// Emptied when the worker begins to retire.
    listeners: Vec<MioListener>,
    accepting: Accepting,
    conns: Slab<Conn>,
    /// The keys of the connections, listed for a pass over them all (each tick): kept,
    /// so a tick allocates nothing.
    keys: Vec<usize>,
    /// What every connection borrows while it is driven.
    cx: Context,
    pool: Option<Pool>,
    wake: Arc<Wake>,
    /// Jobs an app thread holds: submitted and not yet let go (see [`Msg::frees_thread`]).
    busy_threads: usize,
    /// When an app thread last answered or was free: long ago means the worker is
    /// stalled ([`stall`]).
    progress_at: Instant,
    /// Set once the worker begins its graceful stop: when it must be gone.
    stop_by: Option<Instant>,
    parent: nix::unistd::Pid,
}

/// Run a worker until it is told to stop. Returns the process exit code. The app was
/// made by the caller (`AppSpec::instantiate`, after the fork), which also wraps hooks.
pub fn run(
    listeners: Vec<Listener>,
    cfg: WorkerConfig,
    app: Arc<dyn App>,
    hooks: &mut dyn WorkerHooks,
) -> i32 {
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
            .register(&mut signals.source, SIGNALS, Interest::READABLE)?;
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut listener = MioListener::from_std(listener);
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE + i),
                Interest::READABLE,
            )?;
            mio_listeners.push(listener);
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
                cfg.metrics,
            )?),
            Mode::Inline => None,
        };
        if let Some(metrics) = cfg.metrics {
            metrics.set_threads(pool.as_ref().map_or(0, Pool::threads));
        }
        // Only now, so that the app threads spawned above keep the normal policy.
        if let Err(err) = rgunicorn_process::sched::batch_this_thread() {
            crate::log_debug!("event loop keeps the normal scheduling policy: {err}");
        }
        let worker = Worker {
            poll,
            listeners: mio_listeners,
            accepting: Accepting::Open,
            conns: Slab::with_capacity(64),
            keys: Vec::new(),
            cx: Context {
                app,
                mode,
                cfg,
                access,
                scratch: vec![0; SCRATCH],
                requests: 0,
                retiring: false,
                stalled: false,
            },
            pool,
            wake,
            busy_threads: 0,
            progress_at: Instant::now(),
            stop_by: None,
            parent: nix::unistd::getppid(),
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
            let mut wake_at = next_tick;
            if let Some(retry) = self.accepting.retry_at() {
                wake_at = wake_at.min(retry);
            }
            if let Some(stall) = self.stall_due() {
                wake_at = wake_at.min(stall);
            }
            let until_tick = wake_at.saturating_duration_since(now);
            let pace = (self.pool.as_ref())
                .filter(|pool| !pool.has_msgs())
                .and_then(Pool::pace);
            let result = match pace {
                // Two jobs or more wait for each thread: take what arrives in one turn
                // after a pause (`Pool::pace`). The threads do not wake the loop meanwhile
                // (it counts as awake), and sockets and signals wait for the turn.
                Some(pause) => {
                    std::thread::sleep(pause.min(until_tick));
                    self.poll.poll(&mut events, Some(Duration::ZERO))
                }
                None => {
                    self.wake.going_to_sleep();
                    let pending = self.pool.as_ref().is_some_and(Pool::has_msgs);
                    let timeout = if pending { Duration::ZERO } else { until_tick };
                    let result = self.poll.poll(&mut events, Some(timeout));
                    self.wake.woke_up();
                    result
                }
            };
            if let Err(err) = result {
                if err.kind() != ErrorKind::Interrupted {
                    crate::log_error!("worker event loop failed: poll: {err}");
                    return EXIT_LOOP_FAILED;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => signals.read(),
                    Token(t) if (LISTENER_BASE..CONN_BASE).contains(&t) => {
                        // A stalled worker leaves new connections to the others; it
                        // takes what waited once it is not (`note_progress`).
                        if self.accepting.is_open() && !self.cx.stalled {
                            self.accept(t - LISTENER_BASE);
                        }
                    }
                    Token(t) => {
                        let key = t - CONN_BASE;
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue;
                        };
                        if event.is_error() || event.is_write_closed() {
                            // Reset, or closed both ways: nothing can reach the client any
                            // more. Dropping the connection also lets an app thread that
                            // pulls its stream let go at once.
                            self.close(key);
                            continue;
                        }
                        if event.is_readable() {
                            conn.readable = true;
                        }
                        if event.is_writable() {
                            conn.writable = true;
                        }
                        let outcome = if event.is_read_closed() {
                            conn.client_shut(&mut self.cx)
                        } else {
                            conn.drive(&mut self.cx)
                        };
                        self.settle(key, outcome);
                    }
                }
            }
            let freed = self.take_msgs();

            loop {
                match signals.take() {
                    Asked::Nothing => break,
                    Asked::StopFast => {
                        hooks.worker_int();
                        return EXIT_OK;
                    }
                    Asked::ReopenLogs => {
                        let _ = crate::log::reopen();
                        if let Some(access) = &self.cx.access {
                            access.reopen();
                        }
                    }
                    Asked::StopGracefully => {
                        if self.stop_by.is_none() {
                            self.begin_stop("Worker exiting");
                        }
                    }
                }
            }
            let max = self.cx.cfg.max_requests;
            if max > 0 && self.cx.requests >= max && self.stop_by.is_none() {
                hooks.retiring(Retire::MaxRequests);
                self.begin_stop("Autorestarting worker after current request.");
            }

            let now = Instant::now();
            self.note_progress(now, freed);
            if self.accepting.retry_due(now) {
                self.accept_all();
            }
            if now >= next_tick {
                next_tick = now + TICK;
                hooks.heartbeat();
                if nix::unistd::getppid() != self.parent {
                    crate::log_info!("Parent changed, shutting down: {}", std::process::id());
                    return EXIT_OK;
                }
                let stuck = self.check_deadlines(now);
                if stuck > 0 {
                    self.replace_stuck(stuck);
                    if self.stop_by.is_none() {
                        hooks.retiring(Retire::StuckRequest);
                        self.begin_stop("Retiring: an app thread is stuck on a request");
                    }
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
        self.let_threads_go();
        EXIT_OK
    }

    /// Act on what driving connection `key` gave.
    fn settle(&mut self, key: usize, outcome: Outcome) {
        match outcome {
            Outcome::Open => {}
            Outcome::Close => self.close(key),
            Outcome::Dispatched(job) => {
                let submitted = match &self.pool {
                    Some(pool) => pool.submit(job).is_ok(),
                    None => false,
                };
                if submitted {
                    self.busy_threads += 1;
                    return;
                }
                crate::log_error!("app threads are gone: answering 503");
                if let Some(conn) = self.conns.get_mut(key) {
                    let outcome = conn.refused(&mut self.cx);
                    self.settle(key, outcome);
                }
            }
        }
    }

    /// Route what the app threads said to the connections they concern. Returns whether
    /// a thread let go of its job (the threads made progress).
    fn take_msgs(&mut self) -> bool {
        let mut freed = false;
        for _ in 0..MSGS_PER_TURN {
            let Some(msg) = self.pool.as_ref().and_then(Pool::next_msg) else {
                return freed;
            };
            if msg.frees_thread() {
                self.busy_threads = self.busy_threads.saturating_sub(1);
                freed = true;
            }
            let key = msg.ticket().key;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let outcome = match msg {
                Msg::Done {
                    ticket,
                    environ,
                    response,
                } => conn.answered(ticket, environ, response, &mut self.cx),
                Msg::StreamReady(ticket) | Msg::StreamEnd(ticket) => {
                    conn.stream_ready(ticket, &mut self.cx)
                }
            };
            self.settle(key, outcome);
        }
        freed
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(metrics) = self.cx.cfg.metrics {
                metrics.connection_closed();
            }
        }
        // A connection fewer, a descriptor free: accepting may go on.
        if !self.accepting.is_open() {
            self.accept_all();
        }
    }

    /// Enforce every connection's deadlines, and `--request-timeout` on the requests the
    /// app threads hold. Returns how many app threads overran: the worker must retire,
    /// since they may never come back.
    fn check_deadlines(&mut self, now: Instant) -> usize {
        let limit = self.cx.cfg.request_timeout;
        let mut overran = 0;
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend(self.conns.iter().map(|(k, _)| k));
        for &key in &keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let outcome = if !limit.is_zero() && conn.app_overran(now, limit) {
                crate::log_error!(
                    "request timeout: the app spent over {}s on a request: giving up on it",
                    limit.as_secs()
                );
                overran += 1;
                conn.abandon_app(&mut self.cx)
            } else {
                conn.check_deadline(now, &mut self.cx)
            };
            self.settle(key, outcome);
        }
        self.keys = keys;
        overran
    }

    /// `stuck` app threads were given up on: start as many in their place, so that the
    /// requests queued behind them are answered (`Pool::replace_stuck`).
    fn replace_stuck(&mut self, stuck: usize) {
        let Some(pool) = &mut self.pool else {
            return;
        };
        let started = pool.replace_stuck(stuck);
        if started > 0 {
            crate::log_warning!(
                "started {started} app thread(s) in place of stuck ones, for the requests queued behind them"
            );
        }
    }

    /// Stop accepting, then let every connection answer what it has received and close.
    fn begin_stop(&mut self, why: &str) {
        crate::log_info!("{why} (pid: {})", std::process::id());
        // Take what already waits in the accept queue: with --reuse-port the queue is this
        // worker's own and closing the socket would reset those connections.
        self.drain_listeners();
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.stop_by = Some(Instant::now() + self.cx.cfg.graceful_timeout);
        self.cx.retiring = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                let outcome = conn.retire(&mut self.cx);
                self.settle(key, outcome);
            }
        }
    }

    /// On the way out: drop the connections (an app thread pulling a stream for one lets
    /// go at once), give the threads a moment to do so, and join them if none is still
    /// busy. A thread stuck in the app is not waited for; the process exit ends it.
    fn let_threads_go(&mut self) {
        if let Some(metrics) = self.cx.cfg.metrics {
            for _ in 0..self.conns.len() {
                metrics.connection_closed();
            }
        }
        self.conns.clear();
        let Some(pool) = self.pool.take() else {
            return;
        };
        let mut deadline = Instant::now() + THREADS_LET_GO;
        if let Some(stop_by) = self.stop_by {
            deadline = deadline.min(stop_by);
        }
        while self.busy_threads > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match pool.wait_msg(left) {
                Some(msg) if msg.frees_thread() => self.busy_threads -= 1,
                Some(_) => {}
                None => break,
            }
        }
        if self.busy_threads == 0 {
            pool.shutdown();
        } else {
            crate::log_warning!(
                "{} app thread(s) still busy at exit: not waited for",
                self.busy_threads
            );
        }
    }
}

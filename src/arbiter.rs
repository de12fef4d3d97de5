//! The master process (gunicorn's arbiter): binds every listener, forks the workers,
//! keeps their number up, reaps every child, and reacts to signals. Single-threaded;
//! signal handlers only queue the signal number on a pipe, and one `match` dispatches.
//! It never runs application code and never parses HTTP.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use signal_hook::consts::signal::*;
use signal_hook::SigId;

use crate::config::Settings;
use crate::listeners::{self, Bound};
use crate::pidfile::Pidfile;
use rgunicorn_workers::worker::{self, NoHooks, EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR};
use rgunicorn_workers::{log_error, log_info, log_warning, App};

/// Exit codes of the master.
pub const EXIT_OK: i32 = 0;
/// Binding or another start-up step failed (gunicorn exits 1 then).
pub const EXIT_START_ERROR: i32 = 1;

const HANDLED: [i32; 10] = [
    SIGHUP, SIGQUIT, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
];
/// The master wakes at least this often to restore the worker count.
const TICK: Duration = Duration::from_millis(500);

/// The queue of signals: handlers write the signal number, the loop reads it.
struct SignalQueue {
    read_end: UnixStream,
    ids: Vec<SigId>,
}

impl SignalQueue {
    fn install() -> io::Result<SignalQueue> {
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
    fn wait(&mut self, timeout: Duration) -> Vec<i32> {
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
    fn forget_in_child(&self) {
        for id in &self.ids {
            signal_hook::low_level::unregister(*id);
        }
    }
}

/// One worker the master knows about.
struct WorkerSlot {
    age: u64,
    /// Sent TERM to retire it; it no longer counts towards `workers`.
    retiring: bool,
}

pub struct Arbiter {
    settings: Settings,
    /// The app an embedding program passed in; otherwise workers load the named APP.
    app: Option<Arc<dyn App>>,
    listeners: Vec<Bound>,
    workers: HashMap<Pid, WorkerSlot>,
    signals: SignalQueue,
    num_workers: usize,
    worker_age: u64,
    pidfile: Option<Pidfile>,
    /// Why the master must stop: a worker's boot failure code.
    halt: Option<(i32, String)>,
}

/// Run the server until it is stopped; returns the exit code.
pub fn run(settings: Settings, app: Option<Arc<dyn App>>) -> i32 {
    let listeners = match listeners::bind_all(
        &settings.binds,
        settings.backlog,
        settings.umask,
        settings.reuse_port,
    ) {
        Ok(listeners) => listeners,
        Err(err) => {
            log_error!("{err}");
            return EXIT_START_ERROR;
        }
    };
    let pidfile = match &settings.pidfile {
        Some(path) => match Pidfile::create(path) {
            Ok(p) => Some(p),
            Err(err) => {
                log_error!("{err}");
                return EXIT_START_ERROR;
            }
        },
        None => None,
    };
    let signals = match SignalQueue::install() {
        Ok(s) => s,
        Err(err) => {
            log_error!("cannot install signal handlers: {err}");
            return EXIT_START_ERROR;
        }
    };
    let mut arbiter = Arbiter {
        num_workers: settings.workers,
        settings,
        app,
        listeners,
        workers: HashMap::new(),
        signals,
        worker_age: 0,
        pidfile,
        halt: None,
    };
    arbiter.start_log();
    arbiter.serve()
}

impl Arbiter {
    fn start_log(&self) {
        log_info!("Starting rgunicorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            log_info!("Listening at: {} ({})", l.describe(), std::process::id());
        }
        let app = &self.settings.worker.app;
        if self.app.is_some() {
            log_info!("Serving the app this program embeds");
        } else if app == rgunicorn_workers::app::DEFAULT_APP {
            log_info!("Serving the built-in welcome app (no APP given)");
        } else {
            log_info!("Serving app: {app}");
        }
        log_info!(
            "Using worker: native event loop, {} app thread(s) for blocking apps",
            self.settings.worker.threads
        );
    }

    fn serve(&mut self) -> i32 {
        self.manage_workers();
        loop {
            for sig in self.signals.wait(TICK) {
                match sig {
                    SIGCHLD => self.reap(),
                    SIGTERM => return self.stop(true, EXIT_OK),
                    SIGINT | SIGQUIT => return self.stop(false, EXIT_OK),
                    SIGTTIN => {
                        self.num_workers += 1;
                        log_info!("Number of workers: {}", self.num_workers);
                    }
                    SIGTTOU if self.num_workers > 1 => {
                        self.num_workers -= 1;
                        log_info!("Number of workers: {}", self.num_workers);
                    }
                    SIGUSR1 => self.reopen_logs(),
                    SIGHUP => self.reload(),
                    SIGWINCH => log_info!("SIGWINCH ignored: not daemonized"),
                    SIGUSR2 => {
                        log_warning!("SIGUSR2 (binary upgrade) is not supported yet: ignored")
                    }
                    _ => {}
                }
            }
            // A signal may have been coalesced: reap on every tick as well.
            self.reap();
            if let Some((code, why)) = self.halt.take() {
                log_error!("Shutting down: {why}");
                return self.stop(false, code);
            }
            self.manage_workers();
        }
    }

    /// Fork workers until the live (not retiring) count is `num_workers`; retire extras.
    fn manage_workers(&mut self) {
        let live = self.workers.values().filter(|w| !w.retiring).count();
        for _ in live..self.num_workers {
            if let Err(err) = self.spawn_worker() {
                log_error!("cannot fork a worker: {err}");
                break;
            }
        }
        if live > self.num_workers {
            let mut by_age: Vec<(u64, Pid)> = self
                .workers
                .iter()
                .filter(|(_, w)| !w.retiring)
                .map(|(pid, w)| (w.age, *pid))
                .collect();
            by_age.sort();
            for (_, pid) in by_age.into_iter().take(live - self.num_workers) {
                self.retire(pid);
            }
        }
    }

    fn retire(&mut self, pid: Pid) {
        if let Some(slot) = self.workers.get_mut(&pid) {
            slot.retiring = true;
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    fn spawn_worker(&mut self) -> io::Result<()> {
        self.worker_age += 1;
        let mut cfg = self.settings.worker.clone();
        if cfg.max_requests > 0 && self.settings.max_requests_jitter > 0 {
            cfg.max_requests += jitter(self.settings.max_requests_jitter, self.worker_age);
        }
        // Duplicate the listeners before forking so the child only takes ownership.
        let listeners = self
            .listeners
            .iter()
            .map(Bound::for_worker)
            .collect::<io::Result<Vec<_>>>()?;
        // SAFETY: the master is single-threaded (no other thread can hold a lock the
        // child would need), and the child leaves through process::exit, never returning.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                self.signals.forget_in_child();
                let code = worker::run(listeners, cfg, self.app.clone(), &mut NoHooks);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                self.workers.insert(
                    child,
                    WorkerSlot {
                        age: self.worker_age,
                        retiring: false,
                    },
                );
                Ok(())
            }
        }
    }

    /// Reap every child that has exited, ours or orphans (the master may be PID 1).
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.worker_died(pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.worker_died(pid, None, Some(sig)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    log_error!("waitpid failed: {err}");
                    break;
                }
            }
        }
    }

    fn worker_died(&mut self, pid: Pid, code: Option<i32>, sig: Option<Signal>) {
        let Some(slot) = self.workers.remove(&pid) else {
            return; // an orphan we adopted as PID 1
        };
        match (code, sig) {
            (Some(EXIT_BOOT_ERROR), _) => {
                self.halt = Some((EXIT_BOOT_ERROR, "Worker failed to boot.".into()));
            }
            (Some(EXIT_APP_LOAD_ERROR), _) => {
                self.halt = Some((EXIT_APP_LOAD_ERROR, "App failed to load.".into()));
            }
            (Some(0), _) if slot.retiring => {}
            (Some(0), _) => log_info!("Worker exiting (pid: {pid})"),
            (Some(code), _) => log_error!("Worker (pid:{pid}) exited with code {code}"),
            (_, Some(Signal::SIGKILL)) => {
                log_error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
            }
            (_, Some(sig)) => log_error!("Worker (pid:{pid}) was sent {sig}!"),
            (None, None) => {}
        }
    }

    fn reopen_logs(&mut self) {
        if let Err(err) = rgunicorn_workers::log::reopen() {
            log_error!("cannot reopen error log: {err}");
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGUSR1);
        }
    }

    /// HUP: start a full set of new workers, then retire the old ones gracefully.
    fn reload(&mut self) {
        log_info!("Hang up: Master");
        let old: Vec<Pid> = self.workers.keys().copied().collect();
        for _ in 0..self.num_workers {
            if let Err(err) = self.spawn_worker() {
                log_error!("cannot fork a worker during reload: {err}");
                return;
            }
        }
        for pid in old {
            self.retire(pid);
        }
    }

    /// Stop every worker: TERM and wait up to graceful_timeout (graceful), or QUIT and a
    /// short wait (fast); then KILL what is left. Returns the master's exit code.
    fn stop(&mut self, graceful: bool, code: i32) -> i32 {
        log_info!("Handling signal: {}", if graceful { "term" } else { "int" });
        let (sig, wait) = if graceful {
            (Signal::SIGTERM, self.settings.worker.graceful_timeout)
        } else {
            (Signal::SIGQUIT, Duration::from_secs(1))
        };
        for pid in self.workers.keys() {
            let _ = kill(*pid, sig);
        }
        let deadline = Instant::now() + wait;
        while !self.workers.is_empty() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let sigs = self.signals.wait(left.min(Duration::from_millis(50)));
            self.reap();
            if graceful && sigs.iter().any(|s| *s == SIGINT || *s == SIGQUIT) {
                // A fast stop asked for during a graceful one wins.
                for pid in self.workers.keys() {
                    let _ = kill(*pid, Signal::SIGQUIT);
                }
            }
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        while !self.workers.is_empty() {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    self.workers.remove(&pid);
                }
                Err(Errno::EINTR) | Ok(_) => continue,
                Err(_) => break,
            }
        }
        self.listeners.clear();
        if let Some(pidfile) = self.pidfile.take() {
            pidfile.remove();
        }
        log_info!("Shutting down: Master");
        code
    }
}

/// A spread of extra requests per worker so they do not all restart together.
fn jitter(max: u64, seed: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(std::process::id()))
        .wrapping_add(rgunicorn_workers::clock::unix_now());
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % (max + 1)
}

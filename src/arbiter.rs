//! The master process (gunicorn's arbiter): binds every listener, forks the workers (and
//! the TLS front when configured), keeps their number up, reaps every child, kills the
//! ones whose heartbeat is late, and reacts to signals. Single-threaded; signal handlers
//! only record the signal (`rgunicorn_process::Signals`, the same scheme as the workers'
//! and the front's), and one `match` dispatches. It never runs application code and never
//! parses HTTP. SIGNALS.md is the specification.
//!
//! Neighbours: [`heartbeat`] (the memory a worker beats into),
//! `health` and `boot` (the decisions about a worker: late, too big, failed to boot),
//! `child` (a forked child until it is a worker), [`ops`] (the metrics listener's
//! process and statsd, fed by the shared table), [`upgrade`] (USR2, systemd sockets,
//! sd_notify), `front` (supervising the TLS front), `stop` (TERM, INT, QUIT: in which
//! order sockets and children go), [`crate::listeners`],
//! [`crate::hooks`] (the embedding program's hooks, called from here).

mod boot;
mod child;
mod front;
mod health;
pub mod heartbeat;
pub mod ops;
mod stop;
mod title;
pub mod upgrade;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rgunicorn_process::{exit, signals as roles, Forked, Signals};

use crate::config::{self, Command, Settings};
use crate::hooks::{Hooks, ServerInfo, WorkerInfo};
use crate::listeners::{self, BindOptions, ListenError, Listening};
use crate::pidfile::Pidfile;
use boot::{BootRetry, BootVerdict};
use health::{jitter, judge, rss_bytes, Death, Ending, Health, Verdict};
use heartbeat::Slot;
use rgunicorn_metrics::{Recorder, Restart, Table};
use rgunicorn_workers::app::Mode;
use rgunicorn_workers::{log_error, log_info, log_warning, App};
use stop::{signal_name, Stop};
use upgrade::Inherited;

/// Exit codes of the master.
pub const EXIT_OK: i32 = 0;
/// Binding or another start-up step failed (gunicorn exits 1 then).
pub const EXIT_START_ERROR: i32 = 1;

/// The master wakes at least this often to check heartbeats and the worker count.
const TICK: Duration = Duration::from_millis(500);

/// One worker the master knows about.
struct WorkerSlot {
    age: u64,
    state: WorkerState,
    /// Its slot in the shared table: its heartbeat and its counters.
    heartbeat: Slot,
    /// Why the master retired it, when that makes its exit a restart.
    retired_for: Option<Restart>,
}

/// Where a worker is in its life, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    /// Serving: it counts towards `num_workers`.
    Running,
    /// Told to stop gracefully, or said it retires by itself: it no longer counts, and
    /// its exit is expected.
    Retiring,
    /// Sent SIGABRT for a late heartbeat: SIGKILL on the next check if still there.
    Aborted,
}

pub struct Arbiter {
    /// The command line as started, re-read on HUP and re-executed on USR2.
    args: Vec<OsString>,
    /// The binary as it was named at start: USR2 runs what is at that path now.
    exe: Option<PathBuf>,
    settings: Settings,
    /// The app an embedding program passed in; otherwise workers load the named APP.
    app: Option<Arc<dyn App>>,
    /// The embedding program's server hooks.
    hooks: Option<Arc<dyn Hooks>>,
    listeners: Vec<Listening>,
    workers: HashMap<Pid, WorkerSlot>,
    signals: Signals,
    num_workers: usize,
    worker_age: u64,
    pidfile: Option<Pidfile>,
    /// Worker boot failures and their retries (`boot_retries`).
    boot: BootRetry,
    /// Why the master must stop: a worker's boot failure code.
    halt: Option<(i32, String)>,
    front: Option<front::Front>,
    /// The new master a USR2 started, while it runs.
    new_master: Option<Pid>,
    /// Set in a master started by USR2: the old master's pid, until it is gone.
    old_master: Option<Pid>,
    /// The shared table (heartbeats and counters), mapped before the first fork.
    table: Table,
    /// The metrics listener's process and statsd.
    ops: ops::Ops,
    /// The listening sockets are systemd's (LISTEN_FDS): a HUP keeps them whatever the
    /// binds say, as gunicorn does, and their unix socket files are systemd's to remove.
    systemd_sockets: bool,
}

/// Run the server until it is stopped; returns the exit code.
pub fn run(settings: Settings, app: Option<Arc<dyn App>>, hooks: Option<Arc<dyn Hooks>>) -> i32 {
    if let Some(hooks) = &hooks {
        hooks.on_starting(&ServerInfo {
            pid: std::process::id(),
            proc_name: settings.worker.proc_name.clone(),
            listeners: Vec::new(),
            num_workers: settings.workers,
        });
    }
    let inherited = Inherited::take_from_env();
    let old_master = inherited.is_upgrade().then(nix::unistd::getppid);
    if old_master.is_some() {
        // The old master still serves the unix socket files: a new master that fails
        // to start, or is stopped to roll back, must not remove them (until it is gone).
        listeners::keep_socket_files();
    } else {
        listeners::own_socket_files();
    }
    let opts = bind_options(&settings);
    let systemd_sockets = !inherited.systemd.is_empty();
    let bound = if systemd_sockets {
        log_info!("Using the sockets systemd passed (LISTEN_FDS); binds are not used");
        listeners::keep_socket_files();
        listeners::adopt_all(&inherited.systemd)
    } else {
        listeners::adopt_fds(&inherited.upgrade)
            .and_then(|adopted| listeners::bind_all(&settings.binds, opts, adopted))
    };
    let listeners = match bound {
        Ok(listeners) => listeners,
        Err(err) => {
            log_error!("{err}");
            return EXIT_START_ERROR;
        }
    };
    // Before the pidfile, so a new master that cannot take the front leaves no PIDFILE.2.
    let mut front = match &settings.front {
        Some(front_settings) => {
            match front::Front::bind(front_settings.clone(), &inherited.front) {
                Ok(f) => Some(f),
                Err(err) => {
                    log_error!("{err}");
                    return EXIT_START_ERROR;
                }
            }
        }
        None => {
            front::Front::close_inherited(&inherited.front);
            None
        }
    };
    if let (Some(front), Some(app)) = (front.as_mut(), &app) {
        front.serve_embedded(app.mode() == Mode::Threaded);
    }
    let pidfile = match &settings.pidfile {
        Some(path) => {
            // After USR2 the old master still owns PIDFILE: write PIDFILE.2 until it is gone.
            let path = match old_master {
                Some(_) => second_pidfile(path),
                None => path.clone(),
            };
            match Pidfile::create(&path) {
                Ok(p) => Some(p),
                Err(err) => {
                    log_error!("{err}");
                    return EXIT_START_ERROR;
                }
            }
        }
        None => None,
    };
    let signals = match Signals::install(&roles::MASTER) {
        Ok(s) => s,
        Err(err) => {
            log_error!("cannot install signal handlers: {err}");
            return EXIT_START_ERROR;
        }
    };
    // Before the first fork: every worker, the front and the metrics process share it.
    let table = match Table::map() {
        Ok(table) => table,
        Err(err) => {
            log_error!("cannot map the shared table of heartbeats and counters: {err}");
            return EXIT_START_ERROR;
        }
    };
    let ops = match ops::Ops::start(table, &settings.ops) {
        Ok(ops) => ops,
        Err(err) => {
            log_error!("{err}");
            return EXIT_START_ERROR;
        }
    };
    table.set_plan(
        settings.workers,
        settings.worker.timeout,
        settings.front.is_some(),
    );
    if let (Some(front), true) = (front.as_mut(), settings.ops.counting()) {
        front.count_into(table.front());
    }
    let settings_boot_retries = settings.boot_retries;
    let mut arbiter = Arbiter {
        args: std::env::args_os().collect(),
        exe: std::env::current_exe().ok(),
        num_workers: settings.workers,
        settings,
        app,
        hooks,
        listeners,
        workers: HashMap::new(),
        signals,
        worker_age: 0,
        boot: BootRetry::new(settings_boot_retries),
        pidfile,
        halt: None,
        front,
        new_master: None,
        old_master,
        table,
        ops,
        systemd_sockets,
    };
    arbiter.start_log();
    title::set(&format!(
        "rgunicorn: master [{}]",
        arbiter.settings.worker.proc_name
    ));
    arbiter.serve()
}

fn bind_options(settings: &Settings) -> BindOptions {
    BindOptions {
        backlog: settings.backlog,
        umask: settings.umask.unwrap_or(crate::config::UNIX_SOCKET_UMASK),
        reuse_port: settings.reuse_port,
        owner: (settings.uid, settings.gid),
    }
}

fn second_pidfile(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".2");
    PathBuf::from(name)
}

impl Arbiter {
    /// What hooks are told about the master.
    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            pid: std::process::id(),
            proc_name: self.settings.worker.proc_name.clone(),
            listeners: self.listeners.iter().map(|l| l.socket.describe()).collect(),
            num_workers: self.num_workers,
        }
    }

    /// Call a master-side hook, if the program set hooks.
    fn hook(&self, call: impl FnOnce(&dyn Hooks, &ServerInfo)) {
        if let Some(hooks) = &self.hooks {
            call(hooks.as_ref(), &self.server_info());
        }
    }

    /// The number of workers changes: say so in the log and to the hook.
    fn set_num_workers(&mut self, new: usize) {
        let old = self.num_workers;
        if new != old {
            self.num_workers = new;
            self.plan();
            log_info!("Number of workers: {new}");
            self.hook(|h, s| h.nworkers_changed(s, new, old));
        }
    }

    /// Tell the shared table what readiness is judged against.
    fn plan(&self) {
        self.table.set_plan(
            self.num_workers,
            self.settings.worker.timeout,
            self.front.is_some(),
        );
    }

    /// The master's part of every turn of its loop: its own heartbeat, the front's pid,
    /// and the metrics process and statsd.
    fn beat(&mut self) {
        self.table.master_beat(std::process::id());
        match self.front.as_ref().and_then(front::Front::pid) {
            Some(pid) => self.table.front_started(pid.as_raw().unsigned_abs()),
            None => self.table.front_gone(),
        }
        self.ops.tick(&mut self.signals, &self.settings);
    }

    fn start_log(&self) {
        log_info!("Starting rgunicorn {}", env!("CARGO_PKG_VERSION"));
        for l in &self.listeners {
            log_info!(
                "Listening at: {} ({})",
                l.socket.describe(),
                std::process::id()
            );
        }
        let app = &self.settings.worker.app;
        if self.app.is_some() && self.settings.preload_app {
            log_info!("Serving app: {app} (preloaded: HUP keeps this code)");
        } else if self.app.is_some() {
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
        self.hook(|h, s| h.when_ready(s));
        self.manage_workers();
        self.start_front_if_due();
        self.beat();
        upgrade::sd_notify("READY=1");
        loop {
            let batch = self.signals.wait(TICK);
            if let Some((how, sig)) = Stop::asked_in(&batch) {
                log_info!("Handling signal: {}", signal_name(sig));
                return self.stop(how, EXIT_OK);
            }
            for sig in batch {
                match sig {
                    Signal::SIGCHLD => self.reap(),
                    Signal::SIGTTIN => self.set_num_workers(self.num_workers + 1),
                    Signal::SIGTTOU if self.num_workers > 1 => {
                        self.set_num_workers(self.num_workers - 1)
                    }
                    Signal::SIGUSR1 => self.reopen_logs(),
                    Signal::SIGHUP => self.reload(),
                    Signal::SIGUSR2 => self.upgrade(),
                    Signal::SIGWINCH => self.winch(),
                    _ => {}
                }
            }
            // A signal may have been coalesced: reap on every tick as well.
            self.reap();
            if let Some((code, why)) = self.halt.take() {
                log_error!("Shutting down: {why}");
                return self.stop(Stop::Fast, code);
            }
            self.check_workers();
            self.manage_workers();
            self.start_front_if_due();
            self.adopt_pidfile();
            self.beat();
        }
    }

    /// Fork the front when it is configured, not running, and its restart is due.
    fn start_front_if_due(&mut self) {
        if let Some(front) = self.front.as_mut() {
            front.start_if_due(&mut self.signals, &self.args);
        }
    }

    /// Fork workers until the live (not retiring) count is `num_workers`; retire extras.
    fn manage_workers(&mut self) {
        let live = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Running)
            .count();
        let forks = if self.boot.may_fork(Instant::now()) {
            self.num_workers.saturating_sub(live)
        } else {
            0 // waiting out a boot failure's backoff
        };
        for _ in 0..forks {
            if let Err(err) = self.spawn_worker() {
                log_error!("cannot fork a worker: {err}");
                break;
            }
        }
        if live > self.num_workers {
            let mut by_age: Vec<(u64, Pid)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.state == WorkerState::Running)
                .map(|(pid, w)| (w.age, *pid))
                .collect();
            by_age.sort();
            for (_, pid) in by_age.into_iter().take(live - self.num_workers) {
                self.retire(pid, None);
            }
        }
    }

    /// Heartbeats, self-retirement and memory: what each worker's slot says.
    fn check_workers(&mut self) {
        let timeout = self.settings.worker.timeout;
        let max_memory = self.settings.max_worker_memory;
        let verdicts: Vec<(Pid, Verdict)> = self
            .workers
            .iter()
            .map(|(pid, w)| {
                let health = Health {
                    silent_for: w.heartbeat.silent_for(),
                    state: w.state,
                    says_retiring: w.heartbeat.is_retiring(),
                    rss: (max_memory > 0).then(|| rss_bytes(*pid)).flatten(),
                };
                (*pid, judge(&health, timeout, max_memory))
            })
            .collect();
        let booted: Vec<u64> = self
            .workers
            .values()
            .filter(|w| w.heartbeat.is_booted())
            .map(|w| w.age)
            .collect();
        for age in booted {
            if self.boot.booted(age) {
                log_info!("A worker booted: the count of boot failures starts over");
            }
        }
        for (pid, verdict) in verdicts {
            match verdict {
                Verdict::Fine => {}
                Verdict::Abort => {
                    log_critical_timeout(pid);
                    let _ = kill(pid, Signal::SIGABRT);
                    if let Some(w) = self.workers.get_mut(&pid) {
                        w.state = WorkerState::Aborted;
                    }
                }
                Verdict::Kill => {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                Verdict::Replace => {
                    if let Some(w) = self.workers.get_mut(&pid) {
                        w.state = WorkerState::Retiring;
                    }
                }
                Verdict::TooBig(rss) => {
                    log_info!(
                        "Worker (pid:{pid}) uses {} MiB, over max_worker_memory: recycling",
                        rss >> 20
                    );
                    self.retire(pid, Some(Restart::Memory));
                }
            }
        }
    }

    /// Stop a worker gracefully (an aborted one is past that: it is being killed).
    /// `why`: the restart its exit will count as (none when the count just shrinks).
    fn retire(&mut self, pid: Pid, why: Option<Restart>) {
        if let Some(slot) = self.workers.get_mut(&pid) {
            if slot.state == WorkerState::Running {
                slot.state = WorkerState::Retiring;
                slot.retired_for = why;
            }
            slot.heartbeat.set_stopping();
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
            .map(|l| l.socket.for_worker())
            .collect::<io::Result<Vec<_>>>()?;
        let heartbeat = Slot::claim(self.table)?;
        if self.settings.ops.counting() {
            cfg.metrics = Some(Recorder::new(self.table.worker(heartbeat.id())));
        }
        let age = self.worker_age;
        let master = Pid::this();
        self.hook(|h, s| h.pre_fork(s, age));
        // The worker's stop signals are blocked across the fork and stay pending until
        // its own handlers exist (a TERM right after the fork is not lost).
        // With a preloaded Python app, CPython's before/after-fork protocol runs around it.
        let forked = rgunicorn_workers::app::fork_with(
            // SAFETY: the master is single-threaded (no other thread can hold a lock the
            // child would need), and the child leaves through process::exit, never returning.
            || unsafe { self.signals.fork(&roles::WORKER) },
            |r| matches!(r, Ok(Forked::Child)),
        );
        let forked = match forked {
            Ok(forked) => forked,
            Err(err) => {
                heartbeat.release();
                return Err(err);
            }
        };
        match forked {
            Forked::Child => self.become_worker(master, listeners, cfg, &heartbeat, age),
            Forked::Parent(child) => {
                heartbeat.assign(child.as_raw().unsigned_abs());
                self.workers.insert(
                    child,
                    WorkerSlot {
                        age: self.worker_age,
                        state: WorkerState::Running,
                        heartbeat,
                        retired_for: None,
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
                Ok(WaitStatus::Exited(pid, code)) => self.child_died(pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.child_died(pid, None, Some(sig)),
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

    fn child_died(&mut self, pid: Pid, code: Option<i32>, sig: Option<Signal>) {
        if self.ops.died(pid) {
            return;
        }
        if self.new_master == Some(pid) {
            log_warning!("The upgraded master (pid:{pid}) exited: this master keeps serving");
            self.new_master = None;
            listeners::own_socket_files();
            return;
        }
        if let Some(front) = self.front.as_mut() {
            if front.pid() == Some(pid) {
                if let Some(why) = front.died(code, sig) {
                    self.halt = Some((exit::BOOT_ERROR, why));
                }
                return;
            }
        }
        let Some(slot) = self.workers.remove(&pid) else {
            return; // an orphan we adopted as PID 1
        };
        let age = slot.age;
        self.hook(|h, s| {
            h.child_exit(
                s,
                &WorkerInfo {
                    pid: pid.as_raw().unsigned_abs(),
                    age,
                },
            )
        });
        let how = Ending::of(code, sig);
        let death = health::death(how, slot.state, slot.heartbeat.is_retiring());
        if let Some(why) = restart_reason(&slot, &death) {
            self.table.count_restart(why);
        }
        slot.heartbeat.release();
        match death {
            Death::Expected => {}
            Death::BootFailure(code) => self.boot_failed(pid, slot.age, code),
            Death::Unexpected(why) => log_error!("Worker (pid:{pid}) {why}"),
        }
    }

    /// A worker exited 3 or 4: retry after a backoff while `boot_retries` allows, else halt.
    fn boot_failed(&mut self, pid: Pid, age: u64, code: i32) {
        let what = if code == exit::BOOT_ERROR {
            "Worker failed to boot."
        } else {
            "App failed to load."
        };
        match self.boot.failed(age, Instant::now()) {
            BootVerdict::Retry { attempt, wait } => log_warning!(
                "{what} (pid:{pid}) Retry {attempt} of {} in {} s",
                self.boot.max,
                wait.as_secs()
            ),
            BootVerdict::AlreadyWaiting => log_warning!("{what} (pid:{pid})"),
            BootVerdict::Halt if self.boot.max > 0 => {
                self.halt = Some((code, format!("{what} (after {} retries)", self.boot.max)));
            }
            BootVerdict::Halt => self.halt = Some((code, what.into())),
        }
    }

    /// USR1: reopen the master's error log, create the workers' log files (before they
    /// reopen theirs, as a user that may not create files there), then tell them and the
    /// front. A failure is an error line (the error log writes its own), and nothing
    /// says the logs were reopened.
    fn reopen_logs(&mut self) {
        let mut reopened = rgunicorn_workers::log::reopen().is_ok();
        if let Err(err) = crate::startup::open_log_files(&self.settings) {
            log_error!("Handling signal: usr1: {err}");
            reopened = false;
        }
        if reopened {
            log_info!("Handling signal: usr1: logs reopened");
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGUSR1);
        }
        if let Some(pid) = self.front.as_ref().and_then(front::Front::pid) {
            let _ = kill(pid, Signal::SIGUSR1);
        }
    }

    /// HUP: load the configuration again; if it is good, re-bind what changed, start a
    /// full set of new workers, then retire the old ones gracefully. If it is not, say so
    /// in one line and keep everything as it is.
    fn reload(&mut self) {
        log_info!("Handling signal: hup");
        upgrade::sd_notify("RELOADING=1");
        self.hook(|h, s| h.on_reload(s));
        match self.load_again() {
            Ok(settings) => self.apply(settings),
            Err(why) => log_error!("Reload refused, the old workers keep serving: {why}"),
        }
        if let Some(pid) = self.front.as_ref().and_then(front::Front::pid) {
            let _ = kill(pid, Signal::SIGHUP);
        }
        upgrade::sd_notify("READY=1");
    }

    fn load_again(&self) -> Result<Settings, String> {
        let settings = match config::load(&self.args, &|key| std::env::var(key).ok()) {
            Ok(Command::Run(s) | Command::CheckConfig(s) | Command::PrintConfig(s)) => s,
            Err(err) => return Err(err.to_string()),
        };
        if self.app.is_none() {
            crate::startup::check(&settings).map_err(|e| e.to_string())?;
        }
        crate::startup::prepare(&settings).map_err(|e| e.to_string())?;
        Ok(settings)
    }

    fn apply(&mut self, settings: Settings) {
        if !self.systemd_sockets {
            if let Err(err) = self.rebind(&settings) {
                log_error!("Reload refused, the old workers keep serving: {err}");
                return;
            }
        }
        if settings.pidfile != self.settings.pidfile {
            if let Some(old) = self.pidfile.take() {
                old.remove();
            }
            self.pidfile = settings
                .pidfile
                .as_deref()
                .and_then(|p| Pidfile::create(p).map_err(|err| log_error!("{err}")).ok());
        }
        let workers = settings.workers;
        self.boot.max = settings.boot_retries;
        self.ops.reload(&settings.ops);
        self.settings = settings;
        self.set_num_workers(workers);
        self.plan();
        let old: Vec<Pid> = self.workers.keys().copied().collect();
        for _ in 0..self.num_workers {
            if let Err(err) = self.spawn_worker() {
                log_error!("cannot fork a worker during reload: {err}");
                break;
            }
        }
        for pid in old {
            self.retire(pid, Some(Restart::Reload));
        }
    }

    /// Bind what the new settings add and close what they no longer name.
    fn rebind(&mut self, settings: &Settings) -> Result<(), ListenError> {
        let mut current = std::mem::take(&mut self.listeners);
        match listeners::rebind(&mut current, &settings.binds, bind_options(settings)) {
            Ok(next) => {
                for gone in current {
                    log_info!("Closing {} (no longer bound)", gone.socket.describe());
                }
                for l in next.iter().filter(|l| !self.had_bind(&l.bind)) {
                    log_info!(
                        "Listening at: {} ({})",
                        l.socket.describe(),
                        std::process::id()
                    );
                }
                self.listeners = next;
                Ok(())
            }
            Err(err) => {
                self.listeners = current;
                Err(err)
            }
        }
    }

    fn had_bind(&self, bind: &config::BindAddr) -> bool {
        self.settings.binds.contains(bind)
    }

    /// USR2: re-execute the binary with our listening sockets.
    fn upgrade(&mut self) {
        log_info!("Handling signal: usr2");
        if let Some(pid) = self.new_master {
            log_warning!("USR2 ignored: an upgraded master (pid:{pid}) is already running");
            return;
        }
        if self.old_master.is_some() {
            log_warning!("USR2 ignored: this master's own upgrade is not finished");
            return;
        }
        let Some(exe) = self.exe.clone() else {
            log_error!("USR2 ignored: cannot tell which binary this is");
            return;
        };
        let fds: Vec<RawFd> = self.listeners.iter().map(|l| l.socket.raw_fd()).collect();
        // The front's sockets too: the new master's front accepts from the same queues
        // (a port bound again without SO_REUSEPORT would fail, and with it a new queue
        // would start empty while the old one's connections die with the old master).
        let front_fds = self
            .front
            .as_ref()
            .map(front::Front::handover)
            .unwrap_or_default();
        let args = self.args.get(1..).unwrap_or_default();
        self.hook(|h, s| h.pre_exec(s));
        match upgrade::spawn_new_master(&exe, args, &fds, &front_fds) {
            Ok(pid) => {
                let front_count = front_fds.tls.len() + usize::from(front_fds.redirect.is_some());
                let front_part = match front_count {
                    0 => String::new(),
                    n => format!(" and the front's {n}"),
                };
                log_info!(
                    "Started the upgraded master (pid:{pid}) with {} socket(s){front_part}",
                    fds.len()
                );
                self.new_master = Some(pid);
                // The new master serves the unix socket files too: do not unlink them.
                listeners::keep_socket_files();
            }
            Err(err) => log_error!("USR2: cannot start {}: {err}", exe.display()),
        }
    }

    /// WINCH: with an upgraded master running, stop our workers (keep the master, so the
    /// operator can still go back with HUP); otherwise ignore it (a terminal resize).
    fn winch(&mut self) {
        if self.new_master.is_none() {
            log_info!("SIGWINCH ignored: no upgraded master is running");
            return;
        }
        log_info!("Handling signal: winch: stopping the workers gracefully");
        self.set_num_workers(0);
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.retire(pid, None);
        }
    }

    /// In a master started by USR2: once the old master is gone, take over PIDFILE.
    fn adopt_pidfile(&mut self) {
        let Some(old) = self.old_master else {
            return;
        };
        if nix::unistd::getppid() == old {
            return;
        }
        self.old_master = None;
        log_info!("The old master (pid:{old}) is gone: this master takes over");
        listeners::own_socket_files();
        if let (Some(pidfile), Some(path)) = (self.pidfile.take(), self.settings.pidfile.clone()) {
            self.pidfile = match pidfile.rename(&path) {
                Ok(p) => Some(p),
                Err(err) => {
                    log_error!("{err}");
                    None
                }
            };
        }
    }
}

/// The restart a worker's end counts as, if it was one: the master's reason for
/// retiring it, the worker's own (max_requests, a stuck request), a late heartbeat, or a
/// crash. A worker let go because the count shrank or the server stops is none.
fn restart_reason(slot: &WorkerSlot, death: &Death) -> Option<Restart> {
    match (slot.state, death) {
        (WorkerState::Aborted, _) => Some(Restart::Timeout),
        (_, Death::Unexpected(_) | Death::BootFailure(_)) => Some(Restart::Crash),
        (_, Death::Expected) => slot
            .retired_for
            .or_else(|| slot.heartbeat.retiring().map(|r| r.restart())),
    }
}

fn log_critical_timeout(pid: Pid) {
    rgunicorn_workers::log_critical!("WORKER TIMEOUT (pid:{pid}): sending SIGABRT");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_pidfile_is_the_pidfile_dot_2() {
        assert_eq!(
            second_pidfile(std::path::Path::new("/run/app.pid")),
            PathBuf::from("/run/app.pid.2")
        );
    }
}
